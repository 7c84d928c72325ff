"""The energy model: a descriptor, per-type fitting nets and optional physical terms, on an edge list.

Symbols and variables
---------------------
======================  =====================  ===========================================
symbol                  variable               meaning (units)
======================  =====================  ===========================================
R_i                     ``positions``          real-atom positions [N, 3] (Å)
S_i                     ``spins``              magnetic moments [N, 3] (μB), 0 if non-magnetic
eta_t                   ``virtual_scale``      pseudo-atom distance per moment, per type (Å/μB)
R_i + eta S_i           pseudo-atom position   neighbour of type ``t + n_types`` (never a centre)
E = sum_i E_i           ``energy``             per frame (eV); E_i atomic energies of real atoms
F = -dE/dR              ``forces``             eV/Å
omega = -dE/dS          ``torques``            full gradient, eV/μB (zero on non-magnetic atoms)
W = -dE/d(strain)       ``virial``             per frame [B, 3, 3] (eV), spins held fixed
======================  =====================  ===========================================

The energy is computed in one place, :meth:`DeepSpinModel.atomic_energies` (TorchScript-compatible):
the descriptor (``config.descriptor``: ``"pseudo_atom"``, DeepSPIN's se_e2_a over real and pseudo-atoms,
:mod:`~ase_deepspin.model.pseudo_atom`; or ``"spin_invariant"``, :mod:`~ase_deepspin.model.spin_invariant`)
gives features per centre, the fitting net of the centre's type and its energy bias the atomic
energy, and the spin baseline and ZBL wall add theirs. :meth:`DeepSpinModel.forward` builds the edge
vectors from the package's graph, :class:`~ase_deepspin.io.torchscript.LammpsModel` from LAMMPS's
list; both call it. The model is a pure ``torch.nn.Module``: tensors in, tensors out.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import List

import torch
from torch import nn

from .baseline import SpinBaseline, check_form
from .descriptor import mlp
from .pseudo_atom import PseudoAtomDescriptor
from .spin_invariant import SpinInvariantDescriptor
from .zbl import ZBLWall, check_short_range

FORMAT_VERSION = 5
# version 2 added the optional ``compression`` and ``embedding_resnet_dt``, version 3 ``spin_baseline``,
# version 4 ``time_reversal`` (files of earlier versions have none) and ``short_range``, version 5
# ``descriptor``, ``magnetic`` and the descriptor as a submodule (state-dict keys ``descriptor.*``)
READABLE_VERSIONS = (1, 2, 3, 4, 5)
DESCRIPTORS = {"pseudo_atom": PseudoAtomDescriptor, "spin_invariant": SpinInvariantDescriptor}


@dataclass
class ModelConfig:
    """Hyper-parameters of a model (names as in DeePMD-kit's se_e2_a spin input where it has them).

    ``descriptor`` is ``"pseudo_atom"`` (DeepSPIN: pseudo-atoms at R + ηS, ``virtual_scale`` η > 0 on
    magnetic types) or ``"spin_invariant"`` (exact under rotating the spins alone; ``virtual_scale`` all 0,
    ``magnetic`` names the magnetic types, ``gate_neuron`` the hidden widths of the spin gates and
    ``moment_floor`` (μB) regularises the spin cosine; ``correlation_rcut`` (Å, default ``rcut``) bounds the
    neighbours whose spins correlate in the B_i B_iᵀ readout). ``magnetic`` defaults to ``virtual_scale > 0``.
    ``sel`` may be one int, one int per real type or (pseudo-atom descriptor) one per doubled type
    (real types, then pseudo-types). ``resnet_dt`` is the fitting net's (DeePMD-kit
    ``fitting_net.resnet_dt``), ``embedding_resnet_dt`` the embedding nets' (``descriptor.resnet_dt``).
    ``spin_baseline`` (``{"n_basis": K, "onsite_order": P, "form": "landau" | "deviation"}``, optionally
    ``"biquadratic": true``) adds the
    Heisenberg–Landau term of :mod:`ase_deepspin.model.baseline` to the network energy (not a DeePMD-kit
    feature; without a form, "deviation", the rigid-moment form of files written before forms existed).
    ``time_reversal`` makes the network even in the spins, E_net = ½[E(R, S) + E(R, −S)], as
    physics without an external field is (exactly, to round-off; not a DeePMD-kit feature).
    ``short_range`` (``{"type": "zbl", "charges": [T], "r_inner": [[T×T]], "r_outer": [[T×T]]}``,
    Å) adds the switched ZBL wall of :mod:`ase_deepspin.model.zbl`. ``data_ranges`` records what
    the training frames held (see :mod:`ase_deepspin.model.ranges`); calculators warn beyond it.
    """

    type_map: list[str]
    virtual_scale: list[float]
    rcut: float = 5.6
    rcut_smth: float = 5.4
    sel: list[int] | int = 60
    neuron: list[int] = field(default_factory=lambda: [25, 50, 100])
    axis_neuron: int = 16
    fitting_neuron: list[int] = field(default_factory=lambda: [240, 240, 240])
    resnet_dt: bool = True
    embedding_resnet_dt: bool = False
    env_protection: float = 0.01
    seed: int = 1
    compression: dict | None = None  # tabulated embedding nets: tolerance, min_distance, n_knots per net
    spin_baseline: dict | None = None  # Heisenberg–Landau baseline: n_basis, onsite_order, form
    time_reversal: bool = True  # network energy symmetrised under S -> -S
    short_range: dict | None = None  # ZBL wall: nuclear charges, r_inner, r_outer per type pair (Å)
    data_ranges: dict | None = None  # training data: moment range per type (μB), shortest distance per pair (Å),
    # first-shell spin alignment range per type (model.ranges.spin_alignment)
    descriptor: str = "pseudo_atom"
    magnetic: list[bool] | None = None  # default: virtual_scale > 0
    gate_neuron: list[int] = field(default_factory=lambda: [32])  # spin_invariant only
    moment_floor: float = 0.1  # μB, spin_invariant only
    correlation_rcut: float | None = None  # Å, spin_invariant only: neighbours of the B_i B_iᵀ readout (None: rcut)
    spin_orbit: bool = False  # spin_invariant only: a time-reversal-symmetric pseudo-atom branch added on top

    def __post_init__(self):
        n = len(self.type_map)
        if n == 0 or len(set(self.type_map)) != n:
            raise ValueError(f"type_map must list distinct elements, got {self.type_map}")
        if len(self.virtual_scale) != n:
            raise ValueError(f"virtual_scale needs one value per type ({n}), got {self.virtual_scale}")
        if any(v < 0 for v in self.virtual_scale):
            raise ValueError(f"virtual_scale must be >= 0 (Å/μB), got {self.virtual_scale}")
        if not 0.0 < self.rcut_smth < self.rcut:
            raise ValueError(f"need 0 < rcut_smth < rcut, got rcut_smth={self.rcut_smth}, rcut={self.rcut}")
        if self.descriptor not in DESCRIPTORS:
            raise ValueError(f"descriptor must be one of {sorted(DESCRIPTORS)}, got {self.descriptor!r}")
        pseudo = self.descriptor == "pseudo_atom"
        if self.magnetic is None:
            self.magnetic = [v > 0 for v in self.virtual_scale]
        if len(self.magnetic) != n or not all(isinstance(m, bool) for m in self.magnetic):
            raise ValueError(f"magnetic needs one true/false per type ({n}), got {self.magnetic}")
        self.magnetic = list(self.magnetic)
        if pseudo and self.magnetic != [v > 0 for v in self.virtual_scale]:
            raise ValueError(f"with pseudo-atoms the magnetic types are those with virtual_scale > 0; got magnetic "
                             f"{self.magnetic} and virtual_scale {self.virtual_scale}")
        if not isinstance(self.spin_orbit, bool) or (self.spin_orbit and pseudo):
            raise ValueError(f"spin_orbit (true or false) adds pseudo-atoms to a spin_invariant descriptor; got "
                             f"{self.spin_orbit!r} with descriptor {self.descriptor!r}")
        if self.spin_orbit and [v > 0 for v in self.virtual_scale] != self.magnetic:
            raise ValueError(f"spin_orbit places pseudo-atoms at R + ηS: virtual_scale η must be > 0 exactly on "
                             f"the magnetic types {self.magnetic}, got {self.virtual_scale}")
        if not pseudo and not self.spin_orbit and any(v != 0 for v in self.virtual_scale):
            raise ValueError(f"the {self.descriptor} descriptor has no pseudo-atoms (without spin_orbit): "
                             f"virtual_scale must be 0 for every type, got {self.virtual_scale}")
        n_blocks = 2 * n if pseudo else n
        sel = [self.sel] * n_blocks if isinstance(self.sel, int) else list(self.sel)
        if len(sel) == n and n_blocks == 2 * n:
            sel = sel + sel
        if len(sel) != n_blocks or any(int(s) < 0 for s in sel):
            raise ValueError(f"sel needs 1{f', {n}' if n_blocks != n else ''} or {n_blocks} non-negative ints, "
                             f"got {self.sel}")
        self.sel = [int(s) for s in sel]
        self.gate_neuron = [int(v) for v in self.gate_neuron]
        if any(v < 1 for v in self.gate_neuron) or not self.moment_floor > 0:
            raise ValueError(f"need gate_neuron widths >= 1 and moment_floor > 0 μB, got {self.gate_neuron}, "
                             f"{self.moment_floor}")
        self.moment_floor = float(self.moment_floor)
        if self.correlation_rcut is not None:
            if not (self.rcut - self.rcut_smth) < self.correlation_rcut <= self.rcut or pseudo:
                raise ValueError(f"correlation_rcut (spin_invariant only) must lie in ({self.rcut - self.rcut_smth:g}, "
                                 f"{self.rcut:g}] Å (above the switch width, at most rcut), got "
                                 f"{self.correlation_rcut} with descriptor {self.descriptor!r}")
            self.correlation_rcut = float(self.correlation_rcut)
        if not 0 < self.axis_neuron <= self.neuron[-1]:
            raise ValueError(f"axis_neuron must be in 1..{self.neuron[-1]}, got {self.axis_neuron}")
        self.type_map = list(self.type_map)
        self.virtual_scale = [float(v) for v in self.virtual_scale]
        self.neuron = [int(v) for v in self.neuron]
        self.fitting_neuron = [int(v) for v in self.fitting_neuron]
        if self.compression is not None:
            knots = self.compression.get("n_knots")
            if not isinstance(knots, list) or len(knots) != n * n_blocks or any(int(k) < 2 for k in knots):
                raise ValueError(f"compression.n_knots needs {n * n_blocks} counts >= 2, got {knots}")
        if self.spin_baseline is not None:
            unknown = set(self.spin_baseline) - {"n_basis", "onsite_order", "form", "biquadratic"}
            if unknown:
                raise ValueError(f"unknown spin_baseline keys {sorted(unknown)} "
                                 "(known: n_basis, onsite_order, form, biquadratic)")
            biquadratic = self.spin_baseline.get("biquadratic", False)
            if not isinstance(biquadratic, bool):
                raise ValueError(f"spin_baseline biquadratic must be true or false, got {biquadratic!r}")
            self.spin_baseline = {"n_basis": int(self.spin_baseline.get("n_basis", 8)),
                                  "onsite_order": int(self.spin_baseline.get("onsite_order", 4)),
                                  "form": check_form(self.spin_baseline.get("form", "deviation")),
                                  # only when on, so files written before the option keep their config
                                  **({"biquadratic": True} if biquadratic else {})}
        if not isinstance(self.time_reversal, bool):
            raise ValueError(f"time_reversal must be true or false, got {self.time_reversal!r}")
        if not pseudo and not self.time_reversal:
            raise ValueError(f"the {self.descriptor} descriptor is even in S by construction: time_reversal "
                             "cannot be false")
        if self.short_range is not None:
            self.short_range = check_short_range(self.short_range, n, self.rcut)
        if self.data_ranges is not None and (not {"moment", "shortest"} <= set(self.data_ranges)
                                             or not set(self.data_ranges) <= {"moment", "shortest", "alignment"}
                                             or any(len(v) != n for v in self.data_ranges.values())):
            raise ValueError(f"data_ranges needs 'moment' (one [lo, hi] or null per type) and 'shortest' "
                             f"({n}×{n}), and may hold 'alignment' (one [lo, hi] or null per type), got "
                             f"{self.data_ranges}")

    @property
    def n_types(self) -> int:
        return len(self.type_map)

    @property
    def symmetry(self) -> str:
        """What the energy is exactly invariant under, beyond rotating lattice and spins together."""
        if self.descriptor == "spin_invariant" and not self.spin_orbit:
            return "spin rotation and time reversal"
        return "time reversal" if self.time_reversal else "none"

    def spin_orbit_branch(self) -> "ModelConfig":
        """The config of the pseudo-atom branch of a ``spin_orbit`` model: the same sizes and η, time-reversal
        symmetric, real and pseudo-type ``sel`` both the model's, never compressed."""
        return ModelConfig(**{**asdict(self), "descriptor": "pseudo_atom", "spin_orbit": False, "compression": None,
                              "sel": list(self.sel) * (2 if len(self.sel) == self.n_types else 1),
                              "spin_baseline": None, "short_range": None, "data_ranges": None})

    def to_json(self) -> str:
        return json.dumps(asdict(self))


class NetworkEnergy(nn.Module):
    """A descriptor (``self.descriptor``) read by per-type fitting nets (``self.fitting``) plus a per-type
    energy bias (``self.energy_bias``, eV): the learnt part of the energy, shared by the model and by the
    spin-orbit branch."""

    def network_energies(self, spins: torch.Tensor, atom_types: torch.Tensor, centers: torch.Tensor,
                         neighbors: torch.Tensor, lattice: torch.Tensor, pseudo: torch.Tensor, real: torch.Tensor,
                         first: int, n_centres: int, members_of: List[torch.Tensor],
                         twice_differentiable: bool) -> torch.Tensor:
        """Atomic energies (eV) of centres ``first .. first + n_centres − 1``: the fitting net of each centre's
        type averaged over the descriptor's feature sets, plus the type's bias."""
        features = self.descriptor(spins, atom_types, centers, neighbors, lattice, pseudo, real, first, n_centres,
                                   members_of, twice_differentiable)
        energies = lattice.new_zeros(n_centres)
        for t, fitting in enumerate(self.fitting):
            sets = features[t]
            if sets.shape[1] > 0:
                network = fitting(sets.reshape(-1, sets.shape[2])).view(sets.shape[0], sets.shape[1]).mean(0)
                energies = energies.index_put((members_of[t],), network + self.energy_bias[t])
        return energies


class DeepSpinModel(NetworkEnergy):
    """Energy model on an edge list: descriptor, per-type fitting nets and energy bias, optional spin
    baseline and ZBL wall (DeepSPIN: Yang et al., Phys. Rev. B 110, 064427 (2024), with the pseudo-atom
    descriptor).

    Build with ``DeepSpinModel(ModelConfig(...))``; evaluate with :meth:`forward` on tensors
    (the ASE adaptor is :class:`ase_deepspin.DeepSpinCalculator`). Parameters are float64 unless
    ``dtype`` says otherwise; the descriptor's statistics and the per-type energy bias (``energy_bias``,
    eV) are buffers saved with the weights.
    """

    __jit_unused_properties__ = ["dtype", "device", "compressed"]

    def __init__(self, config: ModelConfig, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.config = config
        self.provenance = {}  # what the model was made from, kept by model files (see model.io)
        n = config.n_types
        self.n_types = n
        self.rcut = float(config.rcut)
        gen = torch.Generator().manual_seed(config.seed)
        self.descriptor = DESCRIPTORS[config.descriptor](config, gen, dtype)
        self.fitting = nn.ModuleList(
            mlp([self.descriptor.n_features, *config.fitting_neuron, 1], timestep=config.resnet_dt,
                linear_output=True, generator=gen, dtype=dtype)
            for _ in range(n)
        )
        self.register_buffer("energy_bias", torch.zeros(n, dtype=dtype))
        self.spin_orbit = None
        if config.spin_orbit:
            self.spin_orbit = SpinOrbitBranch(config.spin_orbit_branch(), gen, dtype)
        self.baseline = None
        if config.spin_baseline is not None:
            self.baseline = SpinBaseline(n, config.magnetic, config.rcut, config.rcut_smth,
                                         config.spin_baseline["n_basis"], config.spin_baseline["onsite_order"], dtype,
                                         config.spin_baseline["form"], config.spin_baseline.get("biquadratic", False))
        self.wall = None
        if config.short_range is not None:
            wall = config.short_range
            self.wall = ZBLWall(wall["charges"], wall["r_inner"], wall["r_outer"], dtype)

    @property
    def dtype(self) -> torch.dtype:
        return self.energy_bias.dtype

    @property
    def device(self) -> torch.device:
        return self.energy_bias.device

    @property
    def compressed(self) -> bool:
        """Whether the embedding nets are tabulated (:func:`~ase_deepspin.model.compress_model`)."""
        return self.descriptor.tables is not None

    def block_names(self) -> List[str]:
        """The descriptor's neighbour blocks (element names; pseudo-types ``Ni_spin`` with pseudo-atoms)."""
        return self.descriptor.block_names()

    # ------------------------------------------------------------------ the energy core
    def atomic_energies(self, spins: torch.Tensor, atom_types: torch.Tensor, centers: torch.Tensor,
                        neighbors: torch.Tensor, lattice: torch.Tensor, pseudo: torch.Tensor, first: int,
                        n_centres: int, twice_differentiable: bool = True) -> torch.Tensor:
        """Atomic energies (eV, model dtype) of centres ``first .. first + n_centres − 1`` from their edges.

        spins [N, 3] μB (model dtype); atom_types [N]; centers, neighbors [E]; lattice [E, 3] Å: the
        edge's R_j + n·cell − R_i (strained where a strain applies) in the model dtype; pseudo [E]: the
        neighbour is a pseudo-atom candidate (the descriptor keeps those within rcut). Real edges
        beyond rcut are ignored, so a list with a skin may be passed. The one place where the energy
        is written: Python and LAMMPS both call it.
        """
        real = ~pseudo & (torch.linalg.vector_norm(lattice.detach(), dim=-1) < self.rcut)
        local_types = atom_types[first:first + n_centres]
        members_of: List[torch.Tensor] = []
        for t in range(self.n_types):
            members_of.append((local_types == t).nonzero().squeeze(-1))
        energies = self.network_energies(spins, atom_types, centers, neighbors, lattice, pseudo, real, first,
                                         n_centres, members_of, twice_differentiable)
        spin_orbit = self.spin_orbit
        if spin_orbit is not None:
            energies = energies + spin_orbit.network_energies(spins, atom_types, centers, neighbors, lattice, pseudo,
                                                              real, first, n_centres, members_of,
                                                              twice_differentiable)
        baseline = self.baseline
        wall = self.wall
        if baseline is not None or wall is not None:
            edges = real.nonzero().squeeze(-1)
            c, j, vectors = centers.index_select(0, edges), neighbors.index_select(0, edges), lattice.index_select(0, edges)
            if baseline is not None:
                energies = energies + baseline.atomic_energies(spins, atom_types, c, j, vectors, first, n_centres)
            if wall is not None:
                energies = energies + wall.atomic_energies(atom_types, c, j, vectors, first, n_centres)
        return energies

    @torch.jit.unused
    def lattice_vectors(self, positions, centers, neighbors, offsets, strain=None, edge_frames=None):
        """Edge lattice vectors [E, 3] (Å, model dtype): R_j + n·cell − R_i, strained by ``strain`` [B, 3, 3].

        Formed in the dtype of ``positions`` and ``offsets`` (float64 from :mod:`ase_deepspin.system`) and
        cast afterwards: differences of large coordinates lose no digits, so float32 models are as accurate
        at 10⁴ Å as at the origin. Spins are not lengths: pseudo-atom offsets are never strained.
        (index_select rather than advanced indexing: several times faster on CPU.)
        """
        lattice = positions.index_select(0, neighbors) - positions.index_select(0, centers) + offsets.to(positions.dtype)
        if strain is not None and len(strain) == 1:
            lattice = lattice + lattice @ strain[0]
        elif strain is not None:
            lattice = lattice + torch.bmm(lattice.unsqueeze(1), strain.index_select(0, edge_frames)).squeeze(1)
        return lattice.to(self.dtype)

    @torch.no_grad()
    @torch.jit.unused
    def set_environment_statistics(self, frames) -> None:
        """Set the descriptor's statistics from frames (dicts of :meth:`forward` inputs), as DeePMD-kit
        does for se_e2_a (see :meth:`~ase_deepspin.model.descriptor.RadialEmbeddings.set_statistics`);
        a spin-invariant descriptor also takes its moment scales from them."""
        frames = list(frames)
        descriptors = [self.descriptor] + ([] if self.spin_orbit is None else [self.spin_orbit.descriptor])
        edges = [[] for _ in descriptors]  # per descriptor, per frame: the edge sets its statistics are taken over
        for f in frames:
            lattice = self.lattice_vectors(f["positions"], f["centers"], f["neighbors"], f["offsets"])
            for k, descriptor in enumerate(descriptors):
                edges[k].append({"atom_types": f["atom_types"], "edge_sets": descriptor.edge_sets(
                    f["spins"].to(self.dtype), f["atom_types"], f["centers"], f["neighbors"], lattice, f["pseudo"])})
        for descriptor, per_frame in zip(descriptors, edges):
            descriptor.set_statistics(per_frame)
        if isinstance(self.descriptor, SpinInvariantDescriptor):
            self.descriptor.set_moment_scale(frames)

    @torch.jit.ignore
    def forward(self, positions, spins, atom_types, centers, neighbors, offsets, pseudo,
                atom_frames=None, n_frames: int = 1, *, forces: bool = True, torques: bool = True,
                virial: bool = False, create_graph: bool = False, max_edges_per_chunk: int | None = None):
        """Energies and their derivatives for one or more frames concatenated atom-wise.

        Parameters
        ----------
        positions : [N, 3] Å (float64 recommended whatever the model dtype, see :meth:`edge_vectors`);
        spins : [N, 3] μB; atom_types : [N] int64 (index into type_map)
        centers, neighbors : [E] int64 edge ends, sorted by centre (see ``neighbors.py``)
        offsets : [E, 3] Å, Cartesian lattice shift of each neighbour image (n @ cell), dtype of positions
        pseudo : [E] bool, neighbour is the pseudo-atom of atom ``neighbors``
        atom_frames : [N] int64 frame of each atom (default: all in frame 0); n_frames : B
        forces, torques, virial : which derivatives to return
        create_graph : keep the graph of the derivatives (training on forces and torques)
        max_edges_per_chunk : evaluate centres in chunks of about this many edges, so that
            peak memory is bounded; results are exact (the energy is a sum over centres).

        Returns
        -------
        dict with ``energy`` [B] eV (float64), ``atomic_energies`` [N] eV and, as requested, ``forces``
        [N, 3] eV/Å (dtype of positions), ``torques`` [N, 3] eV/μB, ``virial`` [B, 3, 3] eV.
        """
        n_atoms = positions.shape[0]
        if atom_frames is None:
            atom_frames = torch.zeros(n_atoms, dtype=torch.int64, device=positions.device)
        inputs = {}
        if forces:
            positions = positions.detach().requires_grad_(True) if not positions.requires_grad else positions
            inputs["forces"] = positions
        if torques:
            spins = spins.detach().requires_grad_(True) if not spins.requires_grad else spins
            inputs["torques"] = spins
        strain = None
        if virial:
            strain = torch.zeros(n_frames, 3, 3, dtype=positions.dtype, device=positions.device,
                                 requires_grad=True)
            inputs["virial"] = strain

        chunks = self._chunks(centers, n_atoms, max_edges_per_chunk)
        atomic, grads = [], {k: None for k in inputs}
        with torch.enable_grad():
            for first, stop, e0, e1 in chunks:
                edge_frames = atom_frames.index_select(0, centers[e0:e1]) if virial and n_frames > 1 else None
                lattice = self.lattice_vectors(positions, centers[e0:e1], neighbors[e0:e1], offsets[e0:e1], strain,
                                               edge_frames)
                energies = self.atomic_energies(spins.to(self.dtype), atom_types, centers[e0:e1], neighbors[e0:e1],
                                                lattice, pseudo[e0:e1], first, stop - first, create_graph)
                if inputs:
                    got = torch.autograd.grad(energies.sum(), list(inputs.values()), create_graph=create_graph,
                                              retain_graph=create_graph, allow_unused=True)
                    for k, g in zip(inputs, got):
                        if g is not None:
                            grads[k] = g if grads[k] is None else grads[k] + g
                    if not create_graph:
                        energies = energies.detach()
                atomic.append(energies)
        atomic = torch.cat(atomic)
        # frame energies are accumulated in float64 even for float32 models (10^4 atoms × ~5 eV)
        energy = atomic.new_zeros(n_frames, dtype=torch.float64).index_add(0, atom_frames, atomic.double())
        out = {"energy": energy, "atomic_energies": atomic}
        for k, t in inputs.items():
            g = grads[k] if grads[k] is not None else torch.zeros_like(t)
            out[k] = -g
        return out

    @staticmethod
    @torch.jit.unused
    def _chunks(centers, n_atoms, max_edges):
        """Contiguous (first_atom, stop_atom, first_edge, stop_edge) ranges of about max_edges edges."""
        if max_edges is None or len(centers) <= max_edges:
            return [(0, n_atoms, 0, len(centers))]
        if bool((centers[1:] < centers[:-1]).any()):
            raise ValueError("chunked evaluation needs edges sorted by centre (as the neighbour lists of "
                             "ase_deepspin.neighbors are); sort them or pass max_edges_per_chunk=None")
        starts = torch.searchsorted(centers, torch.arange(n_atoms + 1, device=centers.device))
        chunk_of_atom = starts[:-1] // max_edges
        ends = centers.new_tensor([0]), centers.new_tensor([n_atoms])
        bounds = torch.cat([ends[0], (chunk_of_atom[1:] != chunk_of_atom[:-1]).nonzero().squeeze(-1) + 1,
                            ends[1]]).tolist()
        starts = starts.tolist()
        return [(a, b, starts[a], starts[b]) for a, b in zip(bounds[:-1], bounds[1:])]


class SpinOrbitBranch(NetworkEnergy):
    """Spin-orbit terms for a model of spin invariants: the pseudo-atom descriptor (symmetrised under time
    reversal, so it adds DMI and anisotropy but keeps E(−S) = E(S)) and its own fitting nets, whose energy is
    added to the model's. The fitting nets' last layers start at zero and the bias stays zero: a new branch
    adds nothing until trained.
    """

    def __init__(self, config: ModelConfig, generator: torch.Generator, dtype: torch.dtype):
        super().__init__()
        self.descriptor = PseudoAtomDescriptor(config, generator, dtype)
        self.fitting = nn.ModuleList(
            mlp([self.descriptor.n_features, *config.fitting_neuron, 1], timestep=config.resnet_dt,
                linear_output=True, generator=generator, dtype=dtype)
            for _ in range(config.n_types)
        )
        self.register_buffer("energy_bias", torch.zeros(config.n_types, dtype=dtype))
        with torch.no_grad():
            for net in self.fitting:
                net[-1].weight.zero_()
                net[-1].bias.zero_()

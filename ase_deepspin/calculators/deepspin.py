"""ASE calculator for DeepSPIN models.

Spins come from ``atoms.get_initial_magnetic_moments()`` as an (N, 3) array in μB (zero rows on
non-magnetic atoms); ASE's change tracking of ``initial_magmoms`` makes a change of spins
recompute. Magnetism is decided by element (the model's ``virtual_scale > 0``): a magnetic atom
needs a non-zero moment and a non-magnetic atom carrying one is an error
(:func:`ase_deepspin.system.read_spins`). Results follow the spin-calculator contract of the
package:

=====================  ==========  ==================================================
property               units       meaning
=====================  ==========  ==================================================
``energy``             eV          total energy (``free_energy`` is the same)
``energies``           eV          atomic energies of the real atoms
``forces``             eV/Å        −∂E/∂R
``stress``             eV/Å³       (1/V) ∂E/∂ε at fixed spins, ASE Voigt order (periodic cells)
``magnetic_torques``   eV/μB       −∂E/∂S, full gradient; zero on non-magnetic atoms
``magmoms``            μB          the (N, 3) moments the results belong to (``magmom``: their sum)
=====================  ==========  ==================================================
"""

from __future__ import annotations

import copy
import os
import sys
import warnings

import ase

import numpy as np
import torch

from ..model import DeepSpinModel, compress_model
from .contract import SpinCalculatorBase
from ..io import load_model
from ..io.model_file import resolve_model_path
from ..model.ranges import LENGTH_SPREAD, ExtrapolationWarning, fixed_length_types, outside_data
from ..neighbors import NeighborSearch
from ..system import atoms_graph, periodic_for, read_spins
from ..threads import SERIAL_BELOW, serial_below, thread_scope

_LIBRARY_DIRS = tuple(os.path.dirname(m.__file__) + os.sep for m in (ase, sys.modules[__package__]))


def _user_stacklevel() -> int:
    """``stacklevel`` that makes a warning name the first frame outside ase-deepspin and ASE: the user's line,
    however deep the call came (ASE's ``get_property``, an optimizer, a dynamics class)."""
    frame, level = sys._getframe(1), 1  # level 1: the function that calls warnings.warn
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_LIBRARY_DIRS):
        frame, level = frame.f_back, level + 1
    return level

__all__ = ["DeepSpinCalculator", "committee_deviations"]

_CALCULATOR_KEYWORDS = ("restart", "ignore_bad_restart_file", "label", "atoms", "directory")


DEVIATION_PROPERTIES = ("forces_deviation", "torques_deviation", "energy_deviation", "model_deviation")


def _check_committee(models) -> None:
    """Members must see the same neighbours and pseudo-atoms: one neighbour list serves them all."""
    first = models[0].config
    for k, model in enumerate(models[1:], start=1):
        cfg = model.config
        for name in ("type_map", "magnetic", "rcut", "virtual_scale", "time_reversal"):
            if getattr(cfg, name) != getattr(first, name):
                raise ValueError(f"committee member {k} has {name} {getattr(cfg, name)!r} but member 0 has "
                                 f"{getattr(first, name)!r}; members must share type_map, magnetic, rcut, "
                                 "virtual_scale and time_reversal (as members of one `train --ensemble` run do)")


def _spread(values: np.ndarray) -> np.ndarray:
    """RMS distance from the members' mean, sqrt(mean_k |x_k − <x>|²), over the first axis (members) and the
    last (components). Written through pairwise differences, Σ_{k<l} |x_k − x_l|² / K², which is the same
    number and exactly zero for identical members."""
    n = len(values)
    total = sum(((values[k] - values[l]) ** 2).sum(-1) for k in range(n) for l in range(k + 1, n))
    return np.sqrt(total / n**2)


def committee_deviations(members: list[dict], magnetic: np.ndarray, volume: float | None = None) -> dict:
    """DeePMD-kit's model deviation of a committee from its members' results (one dict per member with
    energy eV, forces (N, 3) eV/Å, magnetic_torques (N, 3) eV/μB and, for periodic cells, stress (6,) eV/Å³
    with the cell's ``volume`` Å³); ``magnetic`` (N,) bool.

    Returns ``forces_deviation`` (N,) eV/Å, ``torques_deviation`` (N,) eV/μB (zero on non-magnetic atoms),
    ``energy_deviation`` eV/atom (the members' standard deviation of E/N) and ``model_deviation``: max, min
    and mean over atoms of the force deviation (``max_devi_f`` ...), over magnetic atoms of the torque
    deviation (``max_devi_fm`` ...), ``devi_e``, and for periodic cells over the nine components of the
    virial per atom (``max_devi_v`` ..., eV), as ``dp model-devi`` and ``pair_style deepspin`` report them.
    """
    n_atoms = len(members[0]["forces"])
    forces = _spread(np.array([m["forces"] for m in members]))
    torques = _spread(np.array([m["magnetic_torques"] for m in members]))
    torques[~magnetic] = 0.0
    energy = float(_spread(np.array([[m["energy"] / n_atoms] for m in members])))
    summary = {"max_devi_f": forces.max(), "min_devi_f": forces.min(), "avg_devi_f": forces.mean()}
    on_magnetic = torques[magnetic] if magnetic.any() else np.zeros(1)
    summary.update(max_devi_fm=on_magnetic.max(), min_devi_fm=on_magnetic.min(), avg_devi_fm=on_magnetic.mean(),
                   devi_e=energy)
    if volume is not None and "stress" in members[0]:
        # virial per atom W/N = −σV/N, each of its nine components' spread over members
        voigt = np.array([m["stress"] for m in members])
        full = voigt[:, [0, 5, 4, 5, 1, 3, 4, 3, 2]] * (-volume / n_atoms)
        virial = _spread(full[:, :, None])
        summary.update(max_devi_v=virial.max(), min_devi_v=virial.min(), avg_devi_v=virial.mean())
    return {"forces_deviation": forces, "torques_deviation": torques, "energy_deviation": energy,
            "model_deviation": {k: float(v) for k, v in summary.items()}}


def _torch_dtype(dtype) -> torch.dtype:
    table = {"float64": torch.float64, "float32": torch.float32, torch.float64: torch.float64,
             torch.float32: torch.float32}
    if dtype not in table:
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    return table[dtype]


def _check_device(device) -> torch.device:
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device '{device}' requested but CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RuntimeError(f"device '{device}' requested but only {torch.cuda.device_count()} CUDA devices exist")
    return device


class DeepSpinCalculator(SpinCalculatorBase):
    """Energy, forces, stress and magnetic torques from a DeepSPIN model.

    Parameters
    ----------
    model : path, :class:`~ase_deepspin.model.DeepSpinModel`, or the name of a shipped model
        (``"nio"``; ``"nio.pt"`` also resolves to it when no such file exists here). A model
        object is used as it is when its dtype and device already match; otherwise the
        calculator works on a converted copy and the caller's object is left unchanged.
        A list of them is a committee (same type_map, rcut, virtual_scale, time_reversal): every
        property is the members' mean, computed on one neighbour list, and DeePMD-kit's model
        deviation comes with it: ``forces_deviation`` (N,) eV/Å and ``torques_deviation`` (N,) eV/μB,
        each atom's RMS distance of the members from their mean (zero on non-magnetic atoms);
        ``energy_deviation`` eV/atom; ``model_deviation``, a dict of their max/min/mean
        (``max_devi_f``, ``max_devi_fm``, ``devi_e``, ``max_devi_v`` ...; see :func:`committee_deviations`).
    device : torch device, default ``"cpu"``.
    dtype : ``"float64"`` (default) or ``"float32"`` (faster; on the NiO grain boundary, against
        float64: energy 6e-9 relative, forces 6e-5 relative (0.3 meV/Å at most), torques 6e-6).
        Edge vectors are always formed in float64 before the cast, so float32 accuracy does not
        depend on where the atoms sit.
    max_edges_per_chunk : centres are evaluated in chunks of about this many edges to bound
        peak memory on large systems (about 2 kB per edge in float64).
    compress : tabulate the embedding nets on loading (:func:`~ase_deepspin.model.compress_model`):
        ``True`` with its defaults, or a dict of its options (``tolerance``, ``min_distance``).
        Several times faster on large systems, results within ~1e-7 relative of the plain model;
        a file written by ``ase-deepspin compress`` is already compressed and loads as it is.
    neighbor_skin : Å. Pair candidates of the neighbour search are kept between calls and reused
        while no atom has moved more than half this skin (and the cell is unchanged), so spin-only
        updates and small steps skip the search; 0 searches again whenever positions change.
    serial_below : atoms; calls on fewer run torch and the compiled kernels on one thread (restored
        afterwards), calls on more on ``torch.get_num_threads()`` threads: on shared cores a small cell
        on two threads waits for scheduler slices (:mod:`ase_deepspin.threads`). 0: never serial.

    Notes
    -----
    ``calc.todict()`` (and so ASE trajectories) records the model, dtype, device, compression and
    skin.

    Where a structure leaves the model's training data (moment lengths outside the trained range, a
    pair closer than any in the data, a spin order unlike the data's: see
    :mod:`ase_deepspin.model.ranges`), the first such calculation raises an ``ExtrapolationWarning``
    per kind; ``calc.outside_data`` ({kind: message with counts}) says it for the latest calculation
    every time, so long runs can log it per step. A committee's ``model_deviation`` is the
    signal for everything else.

    Example
    -------
    >>> atoms.calc = DeepSpinCalculator("nio")
    >>> atoms.get_potential_energy(), atoms.calc.get_property("magnetic_torques", atoms)
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "magnetic_torques",
                              "magmoms", "magmom"]

    def __init__(self, model, device="cpu", dtype="float64", max_edges_per_chunk: int = 200_000,
                 compress: bool | dict = False, neighbor_skin: float = 0.5, serial_below: int = SERIAL_BELOW,
                 **kwargs):
        unknown = sorted(set(kwargs) - set(_CALCULATOR_KEYWORDS))
        if unknown:
            raise TypeError(f"DeepSpinCalculator got unknown keyword arguments {unknown}; it takes model, device, "
                            "dtype, max_edges_per_chunk, compress, neighbor_skin, serial_below and ASE's "
                            f"{', '.join(_CALCULATOR_KEYWORDS)}")
        if not isinstance(serial_below, int) or serial_below < 0:
            raise ValueError(f"serial_below takes a number of atoms >= 0, got {serial_below!r}")
        super().__init__(**kwargs)
        self.serial_below = serial_below
        self.device = _check_device(device)
        torch_dtype = _torch_dtype(dtype)
        committee = isinstance(model, (list, tuple))
        if committee and len(model) < 2:
            raise ValueError(f"a committee needs at least two models, got {len(model)}")
        loaded = [self._load(m, torch_dtype, compress) for m in (model if committee else [model])]
        self.models = [m for m, _ in loaded]
        if committee:
            _check_committee(self.models)
            self.implemented_properties = self.implemented_properties + list(DEVIATION_PROPERTIES)
        self.model = self.models[0]  # the neighbour list, checks and data ranges: shared by every member
        if not (isinstance(max_edges_per_chunk, int) and max_edges_per_chunk >= 1):
            raise ValueError(f"max_edges_per_chunk must be a positive integer, got {max_edges_per_chunk!r}")
        self.max_edges_per_chunk = max_edges_per_chunk
        self.neighbor_search = NeighborSearch(self.model.config.rcut, skin=neighbor_skin)
        self.extrapolation_warned = set()  # kinds of ExtrapolationWarning already given
        self.outside_data: dict[str, str] = {}  # where the latest calculation left the training data
        sources = [source for _, source in loaded]
        self.parameters.update(model=sources if committee else sources[0], device=str(self.device),
                               dtype=str(torch_dtype).removeprefix("torch."),
                               compressed=self.model.compressed, neighbor_skin=float(neighbor_skin),
                               max_edges_per_chunk=max_edges_per_chunk)

    def _load(self, model, torch_dtype, compress):
        """(model in the calculator's dtype and device, a description of where it came from)."""
        if isinstance(model, DeepSpinModel):
            source = f"<DeepSpinModel {'+'.join(model.config.type_map)}>"
        elif isinstance(model, (str, os.PathLike)):
            path = resolve_model_path(model)
            source = str(path)
            # tables are built in float64 and then cast, exactly as a compressed file is loaded
            model = load_model(path, dtype=torch.float64 if compress else torch_dtype)
        else:
            raise TypeError(f"model must be a path, a shipped model name, a DeepSpinModel or a list of them (a "
                            f"committee), got {type(model).__name__}")
        if isinstance(compress, dict) or (compress and not model.compressed):
            model = compress_model(model, **(compress if isinstance(compress, dict) else {}))
        if model.dtype != torch_dtype or model.device != self.device:
            model = copy.deepcopy(model).to(device=self.device, dtype=torch_dtype)
        model.eval()
        return model, source

    def get_property(self, name, atoms=None, allow_calculation=True):
        if name == "stress" and "stress" not in self.extrapolation_warned and any(
                "training" in m.provenance for m in self.models):
            self.extrapolation_warned.add("stress")
            warnings.warn("this model was trained by ase-deepspin, whose loss fits energies, forces and torques "
                          "only: its stress is the exact strain derivative of that energy but was never compared "
                          "with data (the shipped NiO model's data hold one cell: it expands NiO from a = 4.17 to "
                          "4.27 Å); check it before relaxing cells", ExtrapolationWarning, stacklevel=_user_stacklevel())
        return super().get_property(name, atoms, allow_calculation)

    @property
    def spin_rotation_invariant(self) -> bool:
        """Whether the energy is exactly unchanged when the spins alone rotate (a model of spin invariants:
        no spin-orbit terms, so no DMI or anisotropy; :mod:`ase_deepspin.analysis.exchange` reads it)."""
        return all(m.config.symmetry == "spin rotation and time reversal" for m in self.models)

    def _graph(self, atoms):
        return atoms_graph(self.model, atoms, self.device, search=self.neighbor_search)

    def _calculate(self, properties):
        with serial_below(self.serial_below), thread_scope(len(self.atoms)):
            self._evaluate(properties)

    def _evaluate(self, properties):
        atoms = self.atoms
        periodic = periodic_for(atoms, properties)
        graph = self._graph(atoms)
        self._warn_outside_data(graph)
        members = []
        for model in self.models:  # one neighbour list for every member of a committee
            out = model(**graph.inputs(), virial=periodic, max_edges_per_chunk=self.max_edges_per_chunk)
            member = {"energy": float(out["energy"].sum()),
                      "energies": out["atomic_energies"].detach().cpu().double().numpy(),
                      "forces": out["forces"].detach().cpu().double().numpy(),
                      "magnetic_torques": out["torques"].detach().cpu().double().numpy()}
            if periodic:
                virial = out["virial"][0].detach().cpu().double().numpy()
                member["stress"] = (-0.5 * (virial + virial.T) / atoms.get_volume()).flat[[0, 4, 8, 5, 2, 1]]
            members.append(member)
        self.results = {key: members[0][key] if len(members) == 1 else np.mean([m[key] for m in members], axis=0)
                        for key in members[0]}
        self.results["energy"] = float(self.results["energy"])
        self.results["free_energy"] = self.results["energy"]
        # the moments the energy was computed for (μB), so that ASE's get_magnetic_moment(s) and files work
        self.results["magmoms"] = graph.spins.cpu().double().numpy().copy()
        self.results["magmom"] = self.results["magmoms"].sum(axis=0)
        if len(members) > 1:
            magnetic = (graph.spins != 0).any(-1).cpu().numpy()
            self.results.update(committee_deviations(members, magnetic, atoms.get_volume() if periodic else None))

    def _warn_outside_data(self, graph) -> None:
        """One :class:`ExtrapolationWarning` per calculator and kind (a type's moments or spin order, a
        pair's distance); ``self.outside_data`` holds every kind found in the latest calculation, warned or not."""
        ranges = self.model.config.data_ranges
        self.outside_data = {} if ranges is None else outside_data(ranges, self.model.config.type_map, graph)
        for kind, message in self.outside_data.items():
            if kind not in self.extrapolation_warned:
                self.extrapolation_warned.add(kind)
                warnings.warn(f"{message}: predictions there are extrapolation", ExtrapolationWarning,
                              stacklevel=_user_stacklevel())

    def check_longitudinal(self, atoms) -> None:
        """Raise ValueError if a magnetic element of ``atoms`` had moments of one length in the model's
        training data (see :func:`~ase_deepspin.model.ranges.fixed_length_types`): the model's torque
        along S is then a guess, and dynamics or relaxations that change moment lengths refuse it."""
        config = self.model.config
        spins = read_spins(atoms, config.type_map, config.magnetic)
        present = sorted(set(np.asarray(atoms.get_chemical_symbols())[(spins != 0).any(axis=1)].tolist()))
        fixed = fixed_length_types(config.data_ranges, config.type_map, present)
        if not fixed:
            return
        bounds = dict(zip(config.type_map, (config.data_ranges or {}).get("moment") or []))
        seen = "; ".join(f"{el}: {bounds[el][0]:.4g}–{bounds[el][1]:.4g} μB" if bounds.get(el) else f"{el}: no range "
                         "recorded" for el in fixed)
        raise ValueError(f"this model's training data do not determine the moment lengths of {fixed} (trained on "
                         f"{seen}; lengths must spread by ≥ {LENGTH_SPREAD:.0%}): keep |S| fixed "
                         "(SpinLatticeDynamics, relax='both') or train on data whose moment lengths vary")

    def spin_hessian_vector_products(self, atoms, vectors) -> tuple[np.ndarray, np.ndarray]:
        """Products of the spin Hessian with ``vectors``, by double backpropagation (positions fixed).

        ``vectors`` [K, N, 3] (μB) at the current spins of ``atoms``. Returns
        ``products`` [K, N, 3] = (∂²E/∂S∂S) · vectors[k] in eV/μB² (times μB: eV/μB per vector) and
        the torques −∂E/∂S [N, 3] in eV/μB. Analysis code (exchange tensors) uses this instead of
        finite differences when a calculator offers it.
        """
        vectors = np.asarray(vectors, dtype=np.float64)
        if vectors.ndim != 3 or vectors.shape[1:] != (len(atoms), 3):
            raise ValueError(f"vectors must have shape [K, {len(atoms)}, 3], got {vectors.shape}")
        with serial_below(self.serial_below), thread_scope(len(atoms)):
            return self._spin_hessian_vector_products(atoms, vectors)

    def _spin_hessian_vector_products(self, atoms, vectors):
        graph = self._graph(atoms)
        products = np.zeros_like(vectors)
        torques_sum = np.zeros((len(atoms), 3))
        for model in self.models:  # a committee's energy is its members' mean, and so are these
            spins = graph.spins.clone().requires_grad_(True)
            inputs = graph.inputs() | {"spins": spins}
            torques = model(**inputs, forces=False, create_graph=True)["torques"]
            for k, v in enumerate(vectors):
                (hv,) = torch.autograd.grad(torques, spins, grad_outputs=-torch.as_tensor(
                    v, dtype=torques.dtype, device=torques.device), retain_graph=k + 1 < len(vectors))
                products[k] += hv.detach().cpu().double().numpy()
            torques_sum += torques.detach().cpu().double().numpy()
        return products / len(self.models), torques_sum / len(self.models)

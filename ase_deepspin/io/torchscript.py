"""The model as a TorchScript module for LAMMPS: DeePMD-kit's ``pair_style deepspin`` runs it.

DeePMD-kit's LAMMPS plugin (``pair_style deepspin MODEL.pth``, PyTorch backend, DeePMD-kit ≥ 3.1)
loads a ``torch.jit`` module and only calls methods on it: at load ``has_message_passing``,
``get_rcut``, ``get_ntypes``, ``get_dim_fparam``, ``get_dim_aparam``, ``is_aparam_nall``,
``has_default_fparam`` and ``get_type_map``; on every force call

    forward_lower(extended_coord [1, nall, 3] Å, extended_atype [1, nall], extended_spin [1, nall, 3] μB,
                  nlist [1, nloc, nnei], mapping=None, fparam=None, aparam=None, do_atom_virial=False)

with the ``nloc`` local atoms first, ghosts after them, and ``nlist`` LAMMPS's full list of real
neighbours within rcut + skin (any order, padded with −1). It returns ``energy`` [1, 1] eV (float64),
``extended_force`` [1, nall, 3] eV/Å = −∂E/∂x, ``extended_force_mag`` [1, nall, 3] eV/μB = −∂E/∂S,
``virial`` [1, 9] eV = Σ_a x_a ⊗ F_a (LAMMPS's sign, symmetrised) and, with ``do_atom_virial``, ``atom_energy``
[1, nall, 1] and ``extended_virial`` [1, nall, 9]; LAMMPS adds the ghosts' forces to their owners.

:class:`LammpsModel` evaluates exactly the energy of :class:`~ase_deepspin.model.DeepSpinModel` on
that input: it holds the model and calls its energy core,
:meth:`~ase_deepspin.model.DeepSpinModel.atomic_energies`, the code the calculator runs (the embedding
tables through their autograd spline path, the fused CPU kernels being numba code that TorchScript
cannot hold). For the pseudo-atom descriptor the candidates are, for a local centre i, its own
pseudo-atom and those of the real atoms in its list; the descriptor keeps those within rcut.

The neighbour-list rule: LAMMPS lists only real atoms, so a pseudo-atom within rcut of i is seen only
if its atom is in i's list. With pseudo-atoms up to η|S|max from their atoms this needs
``neighbor`` skin ≥ η|S|max plus the usual margin for motion between rebuilds. The module checks
what it can: the farthest listed pair must reach rcut + η|S|max (true of any list built with such a
skin in condensed matter; a cluster smaller than that in vacuum would be refused too).

Centres are evaluated in chunks of list rows (``max_edges_per_chunk``), each with its own backward
pass, so memory per rank is bounded whatever the number of atoms.
"""

from __future__ import annotations

import copy
import json
import warnings
import zipfile
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch import nn


EXPORT_NAME = "ase_deepspin.json"  # extra file of the .pth: what was exported, and from what


def _angstrom(value: float) -> str:
    """A distance for an error message, to 0.001 Å (TorchScript has no format specifiers)."""
    return str(float(int(value * 1000.0 + 0.5)) / 1000.0)


class LammpsModel(nn.Module):
    """A :class:`~ase_deepspin.model.DeepSpinModel` behind the ``forward_lower`` contract of DeePMD-kit's
    spin models (module docstring). Build from a model (its dtype is kept: float64 or float32, inputs
    and energies stay float64); script with :func:`torch.jit.script` or write with :func:`write_lammps_model`.
    """

    def __init__(self, model, max_edges_per_chunk: int = 200_000):
        super().__init__()
        cfg = model.config
        self.model = model
        self.type_map: List[str] = list(cfg.type_map)
        self.n_types = cfg.n_types
        self.rcut = float(cfg.rcut)
        self.pseudo_atoms = any(v > 0 for v in cfg.virtual_scale)
        self.max_edges_per_chunk = int(max_edges_per_chunk)
        self.register_buffer("virtual_scale", torch.tensor(cfg.virtual_scale, dtype=model.dtype))
        self.register_buffer("magnetic", torch.tensor(cfg.magnetic, dtype=torch.bool))
        self.register_buffer("probe", torch.zeros((), dtype=model.dtype))  # carries the model dtype

    # ---------------------------------------------------------------- what the plugin asks at load
    @torch.jit.export
    def get_rcut(self) -> float:
        return self.rcut

    @torch.jit.export
    def get_ntypes(self) -> int:
        return self.n_types

    @torch.jit.export
    def get_type_map(self) -> List[str]:
        return self.type_map

    @torch.jit.export
    def get_dim_fparam(self) -> int:
        return 0

    @torch.jit.export
    def get_dim_aparam(self) -> int:
        return 0

    @torch.jit.export
    def is_aparam_nall(self) -> bool:
        return False

    @torch.jit.export
    def has_default_fparam(self) -> bool:
        return False

    @torch.jit.export
    def has_message_passing(self) -> bool:
        return False

    # ---------------------------------------------------------------- energy
    def _check(self, coord: torch.Tensor, atype: torch.Tensor, spin: torch.Tensor, nlist: torch.Tensor,
               fparam: Optional[torch.Tensor], aparam: Optional[torch.Tensor]):
        if fparam is not None or aparam is not None:
            raise RuntimeError("ase-deepspin model: this model takes no frame or atomic parameters "
                               "(fparam/aparam given); remove fparam/aparam from the pair_style line")
        if coord.dim() != 3 or coord.shape[0] != 1 or spin.shape != coord.shape or atype.shape != coord.shape[:2] \
                or nlist.dim() != 3 or nlist.shape[0] != 1 or nlist.shape[1] > coord.shape[1]:
            raise RuntimeError("ase-deepspin model: expected coord [1, nall, 3], atype [1, nall], spin [1, nall, 3] "
                               "and nlist [1, nloc, nnei] with nloc <= nall (one frame)")
        if atype.numel() > 0 and (int(atype.min()) < 0 or int(atype.max()) >= self.n_types):
            raise RuntimeError("ase-deepspin model: atom type index outside 0.." + str(self.n_types - 1)
                               + "; this model knows the elements " + str(self.type_map)
                               + " (map every LAMMPS type to one of them in pair_coeff)")
        if not bool(torch.isfinite(coord).all()) or not bool(torch.isfinite(spin).all()):
            raise RuntimeError("ase-deepspin model: non-finite coordinates or spins")
        if nlist.shape[2] > 0 and int(nlist.max()) >= coord.shape[1]:
            raise RuntimeError("ase-deepspin model: neighbour index beyond the extended atoms")
        nloc = nlist.shape[1]
        length = torch.linalg.vector_norm(spin[0, :nloc], dim=-1)
        magnetic = self.magnetic[atype[0, :nloc]]
        if bool((magnetic & (length == 0)).any()):
            raise RuntimeError("ase-deepspin model: a magnetic atom (types " + str(self.magnetic_names())
                               + ") has a zero spin; give every magnetic atom its moment (set ... spin/atom)")
        if bool((~magnetic & (length != 0)).any()):
            raise RuntimeError("ase-deepspin model: a non-magnetic atom carries a moment; only "
                               + str(self.magnetic_names()) + " have spins in this model")

    def magnetic_names(self) -> List[str]:
        names: List[str] = []
        for t in range(self.n_types):
            if bool(self.magnetic[t]):
                names.append(self.type_map[t])
        return names

    def _check_reach(self, coord: torch.Tensor, atype: torch.Tensor, spin: torch.Tensor, nlist: torch.Tensor):
        """Refuse a list too short to hold every pseudo-atom within rcut (module docstring)."""
        offset = self.virtual_scale[atype] * torch.linalg.vector_norm(spin, dim=-1).to(self.virtual_scale.dtype)
        longest = float(offset.max()) if offset.numel() > 0 else 0.0
        valid = nlist >= 0
        if longest == 0.0 or not bool(valid.any()):
            return
        centres = torch.arange(nlist.shape[0], device=nlist.device).unsqueeze(1).expand_as(nlist)[valid]
        reach = float(torch.linalg.vector_norm(coord[nlist[valid]] - coord[centres], dim=-1).max())
        if reach < self.rcut + longest:
            raise RuntimeError("ase-deepspin model: the neighbour list reaches " + _angstrom(reach)
                               + " A but pseudo-atoms sit up to eta|S| = " + _angstrom(longest)
                               + " A from their atoms, so it must reach rcut + eta|S| = "
                               + _angstrom(self.rcut + longest) + " A: set 'neighbor SKIN bin' with SKIN >= "
                               + _angstrom(longest) + " A plus a margin for motion between rebuilds")

    def _chunk_energies(self, coord: torch.Tensor, atype: torch.Tensor, spin: torch.Tensor, nlist: torch.Tensor,
                        first: int) -> torch.Tensor:
        """Atomic energies (eV, model dtype) of the local centres first .. first + len(nlist) − 1.

        The edges handed to the energy core: every listed pair (the core ignores real pairs beyond rcut)
        and, with pseudo-atoms, the pseudo-atom candidates of every listed magnetic atom and the centre's own.
        """
        dtype = self.probe.dtype
        n_centres = nlist.shape[0]
        valid = nlist >= 0
        local = torch.arange(first, first + n_centres, device=nlist.device)
        centers = local.unsqueeze(1).expand_as(nlist)[valid]
        neighbors = nlist[valid]
        lattice = coord.index_select(0, neighbors) - coord.index_select(0, centers)  # float64, then cast
        pseudo = torch.zeros_like(neighbors, dtype=torch.bool)
        if self.pseudo_atoms:
            magnetic_listed = self.magnetic[atype.index_select(0, neighbors)]
            own = local[self.magnetic[atype.index_select(0, local)]]
            centers = torch.cat([centers, centers[magnetic_listed], own])
            neighbors = torch.cat([neighbors, neighbors[magnetic_listed], own])
            lattice = torch.cat([lattice, lattice[magnetic_listed], lattice.new_zeros(own.shape[0], 3)])
            pseudo = torch.cat([pseudo, torch.ones(centers.shape[0] - pseudo.shape[0], dtype=torch.bool,
                                                   device=pseudo.device)])
        return self.model.atomic_energies(spin.to(dtype), atype, centers, neighbors, lattice.to(dtype), pseudo,
                                          first, n_centres, False)

    def forward_lower(self, extended_coord: torch.Tensor, extended_atype: torch.Tensor,
                      extended_spin: torch.Tensor, nlist: torch.Tensor, mapping: Optional[torch.Tensor] = None,
                      fparam: Optional[torch.Tensor] = None, aparam: Optional[torch.Tensor] = None,
                      do_atom_virial: bool = False) -> Dict[str, torch.Tensor]:
        """Energy, forces, magnetic forces and virial of the local atoms (module docstring); ``mapping`` is unused."""
        self._check(extended_coord, extended_atype, extended_spin, nlist, fparam, aparam)
        coord = extended_coord[0].to(torch.float64).detach().requires_grad_(True)
        spin = extended_spin[0].to(torch.float64).detach().requires_grad_(True)
        atype = extended_atype[0].to(torch.int64)
        neighbours = nlist[0].to(torch.int64)
        self._check_reach(coord.detach(), atype, spin.detach(), neighbours)
        nloc, nall = neighbours.shape[0], coord.shape[0]
        per_row = max(1, neighbours.shape[1])
        rows_per_chunk = max(1, self.max_edges_per_chunk // ((2 if self.pseudo_atoms else 1) * per_row))
        force = torch.zeros(nall, 3, dtype=torch.float64, device=coord.device)
        force_mag = torch.zeros(nall, 3, dtype=torch.float64, device=coord.device)
        atom_energy = torch.zeros(nall, dtype=torch.float64, device=coord.device)
        for first in range(0, nloc, rows_per_chunk):
            stop = min(nloc, first + rows_per_chunk)
            energies = self._chunk_energies(coord, atype, spin, neighbours[first:stop], first)
            grads = torch.autograd.grad([energies.sum()], [coord, spin], allow_unused=True)
            grad_coord, grad_spin = grads[0], grads[1]
            if grad_coord is not None:
                force = force - grad_coord
            if grad_spin is not None:
                force_mag = force_mag - grad_spin
            atom_energy[first:stop] = energies.detach().to(torch.float64)
        # x ⊗ F per extended atom, symmetrised as the calculator's stress is (spins held fixed under strain
        # give W an antisymmetric part, and LAMMPS would take its lower triangle as the off-diagonal)
        outer = coord.detach().unsqueeze(-1) * force.unsqueeze(-2)
        atom_virial = (0.5 * (outer + outer.transpose(1, 2))).reshape(nall, 9)
        out: Dict[str, torch.Tensor] = {
            "energy": atom_energy.sum().view(1, 1),
            "extended_force": force.unsqueeze(0),
            "extended_force_mag": force_mag.unsqueeze(0),
            "virial": atom_virial.sum(0).view(1, 9),
        }
        if do_atom_virial:
            out["atom_energy"] = atom_energy.view(1, nall, 1)
            out["extended_virial"] = atom_virial.unsqueeze(0)
        return out

    def forward(self, extended_coord: torch.Tensor, extended_atype: torch.Tensor, extended_spin: torch.Tensor,
                nlist: torch.Tensor) -> Dict[str, torch.Tensor]:
        """:meth:`forward_lower` without the optional arguments."""
        return self.forward_lower(extended_coord, extended_atype, extended_spin, nlist)


def scripted_model(model, max_edges_per_chunk: int = 200_000) -> torch.jit.ScriptModule:
    """:class:`LammpsModel` of ``model`` compiled by TorchScript (what :func:`write_lammps_model` saves)."""
    with warnings.catch_warnings():
        # torch >= 2.10 marks torch.jit deprecated; DeePMD-kit's C++ plugin loads nothing else
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(LammpsModel(model, max_edges_per_chunk))


def write_lammps_model(model, path, dtype: torch.dtype | None = None, max_edges_per_chunk: int = 200_000) -> Path:
    """Write ``model`` as a TorchScript file (``.pth``) for DeePMD-kit's ``pair_style deepspin``.

    dtype : torch.float64 or torch.float32 (default: the model's); coordinates, spins and energies
        stay float64 at the interface either way.
    max_edges_per_chunk : edges (real and pseudo-atom candidates) per chunk of centres; bounds memory
        per LAMMPS rank (about 2 kB per edge in float64).

    The file records what it was exported from (``info`` shows it). Returns the path written.
    """
    from ..version import __version__

    path = Path(path)
    source = copy.deepcopy(model).cpu()
    if dtype is not None:
        source = source.to(dtype)
    scripted = scripted_model(source, max_edges_per_chunk)

    record = {"format": "ase-deepspin TorchScript module for DeePMD-kit pair_style deepspin",
              "package_version": __version__, "dtype": str(source.dtype).replace("torch.", ""),
              "max_edges_per_chunk": int(max_edges_per_chunk), "config": json.loads(source.config.to_json()),
              "provenance": model.provenance}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(scripted, str(path), _extra_files={EXPORT_NAME: json.dumps(record)})
    return path


def read_export_record(path) -> dict | None:
    """What :func:`write_lammps_model` recorded in a ``.pth`` file, or None if it is not such a file."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("extra/" + EXPORT_NAME)), None)
            return None if name is None else json.loads(archive.read(name))
    except (zipfile.BadZipFile, OSError, ValueError):
        return None


def read_lammps_model(path):
    """The :class:`~ase_deepspin.model.DeepSpinModel` (float64) inside a file of :func:`write_lammps_model`."""
    from ..model.deepspin import DeepSpinModel, ModelConfig

    record = read_export_record(path)
    if record is None:
        raise ValueError(f"{path} is not a TorchScript export of ase-deepspin")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        state = torch.jit.load(str(path), map_location="cpu").state_dict()
    model = DeepSpinModel(ModelConfig(**record["config"]))
    # the scripted module holds the model under "model." beside buffers of its own
    model.load_state_dict({key: (state["model." + key].double() if state["model." + key].is_floating_point()
                                 else state["model." + key]) for key in model.state_dict()})
    model.provenance = record.get("provenance", {})
    return model

"""The one road from ASE atoms (or training frames) to model inputs.

Everything that turns a structure into what a DeepSPIN model evaluates goes through here: the
calculator, the trainer, the LAMMPS writer, the analytic Hamiltonian and, through them, every
optimizer, integrator and analysis.

- :func:`type_indices` and :func:`check_structure`: elements against a model's type map, finite
  coordinates, a usable cell.
- :func:`validate_spins` / :func:`read_spins`: the (N, 3) spins in μB, with one meaning of
  "magnetic". When the magnetic types are known (a model's ``virtual_scale > 0``, a Hamiltonian's
  rules), magnetic is decided by type: a magnetic atom needs a non-zero moment and a non-magnetic
  atom with a moment is an error, never silently ignored. Without that knowledge an atom is
  magnetic when its moment is non-zero (:func:`magnetic_mask`).
- :class:`Graph` and :func:`build_graph`: the edge list of real and pseudo-atom neighbours with
  positions and lattice offsets kept in float64, so that edge vectors R_j − R_i + n·cell are
  formed in float64 by the model and only then cast to its dtype (float32 accuracy does not
  depend on where the atoms sit).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from ase.calculators.calculator import PropertyNotImplementedError
from ase.data import atomic_numbers, chemical_symbols

from .neighbors import NeighborSearch, build_neighbor_list


def type_indices(numbers, type_map: list[str]) -> np.ndarray:
    """Index into ``type_map`` of each atomic number, −1 for elements not in it."""
    lookup = np.full(len(chemical_symbols), -1, dtype=np.int64)
    for k, name in enumerate(type_map):
        if name in atomic_numbers:
            lookup[atomic_numbers[name]] = k
    return lookup[np.asarray(numbers)]


def symbol_types(symbols, type_map: list[str], where: str = "") -> np.ndarray:
    """Type indices of element ``symbols``; raises naming the elements not in ``type_map``."""
    index = {t: k for k, t in enumerate(type_map)}
    unknown = sorted(set(map(str, symbols)) - set(index))
    if unknown:
        raise ValueError(f"{where + ': ' if where else ''}elements {unknown} are not in the model's "
                         f"type_map {type_map}")
    return np.array([index[str(s)] for s in symbols], dtype=np.int64)


def known_types(numbers, type_map: list[str]) -> np.ndarray:
    """:func:`type_indices` of atomic ``numbers``; raises naming the elements not in ``type_map``."""
    types = type_indices(numbers, type_map)
    if (types < 0).any():
        unknown = sorted({chemical_symbols[z] for z in np.unique(np.asarray(numbers)[types < 0])})
        raise ValueError(f"elements {unknown} are not in the model's type_map {type_map}")
    return types


def check_structure(atoms, type_map: list[str]) -> np.ndarray:
    """Type indices of ``atoms``; raises on unknown elements, no atoms, non-finite coordinates, singular cells."""
    if len(atoms) == 0:
        raise ValueError("the structure has no atoms")
    types = known_types(atoms.numbers, type_map)
    if not np.isfinite(atoms.positions).all():
        raise ValueError("positions contain NaN or inf")
    cell = np.asarray(atoms.cell)
    if not np.isfinite(cell).all():
        raise ValueError("cell contains NaN or inf")
    pbc = atoms.pbc
    if pbc.any():
        if pbc.all() and abs(np.linalg.det(cell)) < 1e-6:
            raise ValueError(f"periodic cell is singular (volume {np.linalg.det(cell):.3g} Å^3)")
        lengths = np.linalg.norm(cell, axis=1)
        if (lengths[pbc] < 1e-6).any():
            raise ValueError(f"periodic axes {np.flatnonzero(pbc & (lengths < 1e-6)).tolist()} have zero-length "
                             "cell vectors")
    return types


def _indices(mask: np.ndarray) -> str:
    idx = np.flatnonzero(mask)
    return f"{idx[:10].tolist()}{' ...' if len(idx) > 10 else ''}"


def validate_spins(spins, is_magnetic: np.ndarray | None = None, symbols=None, where: str = "") -> np.ndarray:
    """Checked (N, 3) float64 spins in μB.

    ``is_magnetic`` [N] bool says which atoms are magnetic by type (None: unknown, then any atom
    may carry a moment). Raises on a wrong shape, NaN/inf, a magnetic atom with zero moment and a
    non-magnetic atom with a non-zero moment. ``symbols`` and ``where`` only improve the messages.
    """
    prefix = f"{where}: " if where else ""
    spins = np.asarray(spins, dtype=np.float64)
    n = len(spins) if is_magnetic is None else len(is_magnetic)
    if spins.shape != (n, 3):
        raise ValueError(f"{prefix}spins must be non-collinear (N, 3) = ({n}, 3) moments in μB, got shape "
                         f"{spins.shape}" + ("; collinear (N,) moments carry no direction" if spins.shape == (n,)
                                             else ""))
    if not np.isfinite(spins).all():
        raise ValueError(f"{prefix}spins contain NaN or inf")
    if is_magnetic is None:
        return spins
    has_spin = np.any(spins != 0.0, axis=1)
    zero = is_magnetic & ~has_spin
    if zero.any():
        raise ValueError(f"{prefix}magnetic atoms with zero spin at indices {_indices(zero)}: every magnetic atom "
                         "needs a non-zero moment")
    stray = ~is_magnetic & has_spin
    if stray.any():
        names = "" if symbols is None else f" ({', '.join(sorted(set(np.asarray(symbols)[stray].tolist())))})"
        raise ValueError(f"{prefix}non-magnetic atoms{names} carry spins at indices {_indices(stray)}: their "
                         "moments would be ignored; set them to zero")
    return spins


def read_spins(atoms, type_map: list[str] | None = None, magnetic=None) -> np.ndarray:
    """The (N, 3) spins of ``atoms`` in μB (its initial magnetic moments), validated.

    With ``type_map`` and ``magnetic`` (one bool per type, e.g. a model's ``config.magnetic``) or
    ``magnetic`` as a set of element symbols (an analytic Hamiltonian's rules), magnetism is
    decided by element (see :func:`validate_spins`); otherwise an atom is magnetic when its
    moment is non-zero. Atoms without moments read as zeros (an error if any type is magnetic).
    """
    is_magnetic = None
    if isinstance(magnetic, (set, frozenset)):
        is_magnetic = np.isin(atoms.get_chemical_symbols(), sorted(magnetic)) if magnetic else None
    elif magnetic is not None:
        is_magnetic = np.asarray(magnetic, dtype=bool)[known_types(atoms.numbers, type_map)]
    return _atoms_spins(atoms, is_magnetic)


def _atoms_spins(atoms, is_magnetic: np.ndarray | None) -> np.ndarray:
    """The initial magnetic moments of ``atoms`` checked by :func:`validate_spins` (zeros if it has none)."""
    symbols = np.asarray(atoms.get_chemical_symbols())
    if not atoms.has("initial_magmoms"):
        if is_magnetic is not None and is_magnetic.any():
            raise ValueError("atoms carry no spins: set (N, 3) moments in μB with "
                             "atoms.set_initial_magnetic_moments(...) for the magnetic elements "
                             f"{sorted(set(symbols[is_magnetic].tolist()))}")
        return np.zeros((len(atoms), 3))
    return validate_spins(atoms.get_initial_magnetic_moments(), is_magnetic, symbols)


def periodic_for(atoms, properties) -> bool:
    """Whether ``atoms`` is periodic in all three directions, the condition for a stress (and a virial);
    asking for ``"stress"`` of any other cell is an error, as in ASE's own calculators."""
    periodic = bool(atoms.pbc.all())
    if "stress" in properties and not periodic:
        raise PropertyNotImplementedError("stress needs a cell periodic in all three directions")
    return periodic


def magnetic_mask(spins: np.ndarray) -> np.ndarray:
    """[N] bool: atoms with a non-zero moment.

    Consumers (dynamics, minimisers, NEB, exchange, magnons) use this on spins that a calculator
    has accepted; since calculators reject moments on non-magnetic elements (:func:`read_spins`),
    it agrees with magnetism by type.
    """
    return np.any(np.asarray(spins) != 0.0, axis=1)


# ---------------------------------------------------------------------------------------------- graphs
@dataclass(frozen=True)
class Graph:
    """Model inputs of one (or several concatenated) frames, as tensors.

    ``positions`` [N, 3] Å and ``offsets`` [E, 3] Å (the Cartesian lattice shift n·cell of each
    neighbour image) stay float64 whatever the model computes in: the model forms
    R_j − R_i + n·cell in their dtype and casts afterwards. ``spins`` [N, 3] μB follow the model
    dtype. ``centers``/``neighbors`` [E] int64 are sorted by centre; ``pseudo`` [E] bool marks
    pseudo-atom neighbours; ``atom_types`` [N] int64 index the model's type map.
    """

    positions: torch.Tensor
    spins: torch.Tensor
    atom_types: torch.Tensor
    centers: torch.Tensor
    neighbors: torch.Tensor
    offsets: torch.Tensor
    pseudo: torch.Tensor

    def to(self, device=None, dtype: torch.dtype | None = None) -> Graph:
        """Copy on ``device`` with spins in ``dtype`` (positions and offsets stay float64)."""
        moved = {f.name: getattr(self, f.name).to(device) for f in fields(self)}
        if dtype is not None:
            moved["spins"] = moved["spins"].to(dtype)
        return replace(self, **moved)

    def inputs(self) -> dict:
        """Keyword arguments of :meth:`DeepSpinModel.forward`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def n_edges(self) -> int:
        return len(self.centers)


def build_graph(positions, cell, pbc, types, spins, virtual_scale, rcut: float, device="cpu",
                dtype: torch.dtype = torch.float64, search: NeighborSearch | None = None,
                both_signs: bool = False) -> Graph:
    """Neighbour list of real and pseudo-atoms and the model's input tensors (one frame, NumPy in).

    positions [N, 3] Å, cell [3, 3] Å, pbc, types [N] ints into the model's type map, spins
    [N, 3] μB, ``virtual_scale`` η per type (Å/μB), ``rcut`` Å. Raises if an atom overlaps another
    atom or a pseudo-atom. ``search`` (a :class:`~ase_deepspin.neighbors.NeighborSearch` with
    cutoff ``rcut``) reuses pair candidates across calls; by default a fresh search is made.
    ``both_signs`` keeps pseudo-atom edges within ``rcut`` for S or −S (time-reversal-symmetric models).
    """
    types = np.asarray(types, dtype=np.int64)
    spins = np.asarray(spins, dtype=np.float64)
    eta = np.asarray(virtual_scale, dtype=np.float64)[types]
    pseudo_offsets = eta[:, None] * spins
    if search is None:
        nl = build_neighbor_list(positions, cell, pbc, pseudo_offsets, rcut, both_signs)
    elif search.cutoff != rcut:
        raise ValueError(f"neighbour search cutoff {search.cutoff} Å differs from the model's rcut {rcut} Å")
    else:
        nl = search(positions, cell, pbc, pseudo_offsets, both_signs)

    def tensor(x, dt):
        return torch.as_tensor(x, dtype=dt, device=device)

    return Graph(positions=tensor(positions, torch.float64), spins=tensor(spins, dtype),
                 atom_types=tensor(types, torch.int64), centers=tensor(nl.centers, torch.int64),
                 neighbors=tensor(nl.neighbors, torch.int64), offsets=tensor(nl.offsets, torch.float64),
                 pseudo=tensor(nl.pseudo, torch.bool))


def model_graph(model, positions, cell, pbc, types, spins, device="cpu",
                search: NeighborSearch | None = None) -> Graph:
    """:func:`build_graph` with a model's virtual scales, cutoff, dtype and spin symmetry."""
    cfg = model.config
    return build_graph(positions, cell, pbc, types, spins, cfg.virtual_scale, cfg.rcut, device, model.dtype, search,
                       cfg.time_reversal)


def atoms_graph(model, atoms, device="cpu", search: NeighborSearch | None = None) -> Graph:
    """Graph of ``atoms`` for ``model``, its structure and spins checked (:func:`check_structure`, :func:`read_spins`,
    :func:`check_within_model_bounds`)."""
    cfg = model.config
    types = check_structure(atoms, cfg.type_map)
    spins = _atoms_spins(atoms, np.asarray(cfg.magnetic, dtype=bool)[types])
    check_within_model_bounds(cfg, atoms, types, spins)
    return model_graph(model, atoms.positions, atoms.cell.array, atoms.pbc, types, spins, device, search)


# What a model may be asked, checked before any neighbour search (where a pseudo-atom η|S| away or a cell
# packed beyond reason makes the search itself run out of memory or time):
MOMENT_LIMIT_FACTOR = 4.0  # moments up to this many times the longest of the type in the training data
MOMENT_LIMIT = 20.0  # μB, whatever the data: no atom carries more
NEIGHBOUR_LIMIT_FACTOR = 10.0  # expected neighbours per atom within rcut, in units of the model's sel total


def check_within_model_bounds(cfg, atoms, types: np.ndarray, spins: np.ndarray) -> None:
    """Raise ValueError, naming the atom, if a moment is longer than the model can be asked (``MOMENT_LIMIT_FACTOR``
    times the type's longest training moment, at most ``MOMENT_LIMIT`` μB and, with pseudo-atoms, within the
    cut-off: η|S| < rcut), or if a periodic cell is packed so densely that each atom would have more than
    ``NEIGHBOUR_LIMIT_FACTOR`` times ``sum(sel)`` neighbours (a cell in the wrong units, atoms on top of each other)."""
    lengths = np.linalg.norm(spins, axis=1)
    ranges = (cfg.data_ranges or {}).get("moment") or [None] * len(cfg.type_map)
    limits = np.array([min(MOMENT_LIMIT, MOMENT_LIMIT_FACTOR * r[1]) if r else MOMENT_LIMIT for r in ranges])
    if cfg.descriptor == "pseudo_atom" or cfg.spin_orbit:
        scale = np.asarray(cfg.virtual_scale)
        limits = np.where(scale > 0, np.minimum(limits, cfg.rcut / np.where(scale > 0, scale, 1.0)), limits)
    over = np.flatnonzero(lengths > limits[types])
    if len(over):
        i = int(over[np.argmax(lengths[over])])
        t = int(types[i])
        seen = f"its training moments reach {ranges[t][1]:.4g} μB" if ranges[t] else "no training range is recorded"
        raise ValueError(f"atom {i} ({cfg.type_map[t]}) has a moment of length {lengths[i]:.4g} μB, beyond what this "
                         f"model can be asked ({seen}; the limit is {limits[t]:.4g} μB)" + (
                             f"; {len(over)} atoms in all" if len(over) > 1 else ""))
    if atoms.pbc.all() and len(atoms):
        volume = abs(float(np.linalg.det(atoms.cell.array)))
        expected = len(atoms) / max(volume, 1e-300) * 4.0 / 3.0 * np.pi * cfg.rcut ** 3
        if expected > NEIGHBOUR_LIMIT_FACTOR * sum(cfg.sel):
            raise ValueError(f"the cell holds {len(atoms)} atoms in {volume:.4g} Å³: about {expected:.3g} neighbours "
                             f"per atom within rcut {cfg.rcut} Å, where the model takes at most {sum(cfg.sel)} "
                             "(is the cell in Å?)")


def model_inputs(model, positions, cell, pbc, types, spins, device="cpu", search: NeighborSearch | None = None) -> dict:
    """Keyword arguments of :meth:`DeepSpinModel.forward` for one frame (see :func:`model_graph`)."""
    return model_graph(model, positions, cell, pbc, types, spins, device, search).inputs()

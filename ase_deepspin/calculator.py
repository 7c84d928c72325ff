"""ASE calculator for DeepSPIN models.

Spins come from ``atoms.get_initial_magnetic_moments()`` as an (N, 3) array in μB (zero rows on
non-magnetic atoms); ASE's change tracking of ``initial_magmoms`` makes a change of spins
recompute. Results follow the spin-calculator contract of the package:

=====================  ==========  ==================================================
property               units       meaning
=====================  ==========  ==================================================
``energy``             eV          total energy (``free_energy`` is the same)
``energies``           eV          atomic energies of the real atoms
``forces``             eV/Å        −∂E/∂R
``stress``             eV/Å³       (1/V) ∂E/∂ε at fixed spins, ASE Voigt order (periodic cells)
``magnetic_torques``   eV/μB       −∂E/∂S, full gradient; zero on non-magnetic atoms
=====================  ==========  ==================================================
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.data import atomic_numbers, chemical_symbols

from .model import DeepSpinModel, compress_model, load_model
from .neighbors import NeighborSearch, build_neighbor_list

PRETRAINED_DIR = Path(__file__).parent / "pretrained"


def pretrained_models() -> list[str]:
    """Names of the models shipped with the package (usable as ``DeepSpinCalculator(name)``)."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.pt"))


def resolve_model_path(name: str | os.PathLike) -> Path:
    """A model file path: an existing file, else a shipped model named ``name`` (with or without .pt)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = PRETRAINED_DIR / (path.name if path.suffix == ".pt" else f"{path.name}.pt")
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    raise FileNotFoundError(f"no model file '{name}' and no shipped model of that name "
                            f"(shipped: {', '.join(pretrained_models()) or 'none'})")


def _torch_dtype(dtype) -> torch.dtype:
    table = {"float64": torch.float64, "float32": torch.float32, torch.float64: torch.float64,
             torch.float32: torch.float32}
    if dtype not in table:
        raise ValueError(f"dtype must be float64 or float32, got {dtype!r}")
    return table[dtype]


def _check_device(device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device '{device}' requested but CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RuntimeError(f"device '{device}' requested but only {torch.cuda.device_count()} CUDA devices exist")
    return device


def type_indices(numbers: np.ndarray, type_map: list[str]) -> np.ndarray:
    """Index into ``type_map`` of each atomic number, −1 for elements not in it."""
    lookup = np.full(len(chemical_symbols), -1, dtype=np.int64)
    for k, name in enumerate(type_map):
        if name in atomic_numbers:
            lookup[atomic_numbers[name]] = k
    return lookup[np.asarray(numbers)]


def spins_of(atoms, type_map: list[str], magnetic: list[bool]) -> np.ndarray:
    """Validated (N, 3) spins in μB of ``atoms`` for a model with this type map."""
    n = len(atoms)
    types = type_indices(atoms.numbers, type_map)
    if (types < 0).any():
        raise ValueError(f"elements {sorted(set(np.asarray(atoms.get_chemical_symbols())[types < 0]))} are not in "
                         f"the model's type_map {type_map}")
    is_magnetic = np.asarray(magnetic, dtype=bool)[types]
    if not atoms.has("initial_magmoms"):
        if is_magnetic.any():
            raise ValueError("atoms carry no spins: set (N, 3) moments in μB with "
                             "atoms.set_initial_magnetic_moments(...) for the magnetic elements "
                             f"{sorted({t for t, m in zip(type_map, magnetic) if m})}")
        return np.zeros((n, 3))
    spins = np.asarray(atoms.get_initial_magnetic_moments(), dtype=np.float64)
    if spins.shape != (n, 3):
        raise ValueError(f"spins must be non-collinear (N, 3) = ({n}, 3) moments in μB, got shape {spins.shape}"
                         + ("; collinear (N,) moments carry no direction" if spins.shape == (n,) else ""))
    if not np.isfinite(spins).all():
        raise ValueError("spins contain NaN or inf")
    zero = is_magnetic & ~np.any(spins != 0.0, axis=1)
    if zero.any():
        raise ValueError(f"magnetic atoms with zero spin at indices {np.flatnonzero(zero)[:10].tolist()}"
                         f"{' ...' if zero.sum() > 10 else ''}: every magnetic atom needs a non-zero moment")
    return spins


def check_structure(atoms, type_map: list[str]) -> np.ndarray:
    """Type indices of ``atoms``; raises on unknown elements, non-finite coordinates, singular cells."""
    types = type_indices(atoms.numbers, type_map)
    if (types < 0).any():
        unknown = sorted({chemical_symbols[z] for z in np.unique(atoms.numbers[types < 0])})
        raise ValueError(f"elements {unknown} are not in the model's type_map {type_map}")
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


def model_inputs(model: DeepSpinModel, positions, cell, pbc, types, spins, device="cpu",
                 search: NeighborSearch | None = None) -> dict:
    """Neighbour list and tensors for :meth:`DeepSpinModel.forward` (one frame, NumPy in).

    positions [N, 3] Å, cell [3, 3] Å, pbc, types [N] ints into the model's type map,
    spins [N, 3] μB. Raises if an atom overlaps another atom or a pseudo-atom. ``search`` (a
    :class:`~ase_deepspin.neighbors.NeighborSearch` with the model's cutoff) reuses pair
    candidates across calls; by default a fresh search is made.
    """
    cfg = model.config
    eta = np.asarray(cfg.virtual_scale)[types]
    offsets = eta[:, None] * spins
    if search is None:
        nl = build_neighbor_list(positions, cell, pbc, offsets, cfg.rcut)
    elif search.cutoff != cfg.rcut:
        raise ValueError(f"neighbour search cutoff {search.cutoff} Å differs from the model's rcut {cfg.rcut} Å")
    else:
        nl = search(positions, cell, pbc, offsets)
    dtype = model.dtype

    def tensor(x, dt):
        return torch.as_tensor(x, dtype=dt, device=device)

    return dict(positions=tensor(positions, dtype), spins=tensor(spins, dtype), atom_types=tensor(types, torch.int64),
                centers=tensor(nl.centers, torch.int64), neighbors=tensor(nl.neighbors, torch.int64),
                offsets=tensor(nl.offsets, dtype), pseudo=tensor(nl.pseudo, torch.bool))


class DeepSpinCalculator(Calculator):
    """Energy, forces, stress and magnetic torques from a DeepSPIN model.

    Parameters
    ----------
    model : path, :class:`~ase_deepspin.model.DeepSpinModel`, or the name of a shipped model
        (``"nio"``; ``"nio.pt"`` also resolves to it when no such file exists here).
    device : torch device, default ``"cpu"``.
    dtype : ``"float64"`` (default) or ``"float32"`` (faster; on the NiO grain boundary, against
        float64: energy 6e-9 relative, forces 6e-5 relative (0.3 meV/Å at most), torques 6e-6).
    max_edges_per_chunk : centres are evaluated in chunks of about this many edges to bound
        peak memory on large systems (about 2 kB per edge in float64).
    compress : tabulate the embedding nets on loading (:func:`~ase_deepspin.model.compress_model`):
        ``True`` with its defaults, or a dict of its options (``tolerance``, ``min_distance``).
        Several times faster on large systems, results within ~1e-7 relative of the plain model;
        a file written by ``ase-deepspin compress`` is already compressed and loads as it is.
    neighbor_skin : Å. Pair candidates of the neighbour search are kept between calls and reused
        while no atom has moved more than half this skin (and the cell is unchanged), so spin-only
        updates and small steps skip the search; 0 searches again whenever positions change.

    Example
    -------
    >>> atoms.calc = DeepSpinCalculator("nio")
    >>> atoms.get_potential_energy(), atoms.calc.get_property("magnetic_torques", atoms)
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "magnetic_torques"]

    def __init__(self, model, device="cpu", dtype="float64", max_edges_per_chunk: int = 200_000,
                 compress: bool | dict = False, neighbor_skin: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.device = _check_device(device)
        torch_dtype = _torch_dtype(dtype)
        if not isinstance(model, DeepSpinModel):
            # tables are built in float64 and then cast, exactly as a compressed file is loaded
            model = load_model(resolve_model_path(model), dtype=torch.float64 if compress else torch_dtype)
        if isinstance(compress, dict) or (compress and model.tables is None):
            model = compress_model(model, **(compress if isinstance(compress, dict) else {}))
        self.model = model.to(device=self.device, dtype=torch_dtype)
        self.model.eval()
        self.max_edges_per_chunk = max_edges_per_chunk
        self.neighbor_search = NeighborSearch(self.model.config.rcut, skin=neighbor_skin)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        cfg = self.model.config
        types = check_structure(atoms, cfg.type_map)
        spins = spins_of(atoms, cfg.type_map, cfg.magnetic)
        periodic = bool(atoms.pbc.all())
        if "stress" in properties and not periodic:
            raise PropertyNotImplementedError("stress needs a cell periodic in all three directions")
        inputs = model_inputs(self.model, atoms.positions, atoms.cell.array, atoms.pbc, types, spins, self.device,
                              search=self.neighbor_search)
        out = self.model(**inputs, virial=periodic, max_edges_per_chunk=self.max_edges_per_chunk)
        energy = float(out["energy"].sum())
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": out["atomic_energies"].detach().cpu().double().numpy(),
            "forces": out["forces"].detach().cpu().double().numpy(),
            "magnetic_torques": out["torques"].detach().cpu().double().numpy(),
        }
        if periodic:
            virial = out["virial"][0].detach().cpu().double().numpy()
            stress = -0.5 * (virial + virial.T) / atoms.get_volume()
            self.results["stress"] = stress.flat[[0, 4, 8, 5, 2, 1]]

    def get_magnetic_torques(self, atoms=None) -> np.ndarray:
        """Magnetic torques −∂E/∂S (N, 3) in eV/μB."""
        return self.get_property("magnetic_torques", atoms)

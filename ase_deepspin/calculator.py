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
=====================  ==========  ==================================================
"""

from __future__ import annotations

import copy
import os
import warnings

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from .model import DeepSpinModel, compress_model, load_model
from .model.io import pretrained_models, resolve_model_path
from .model.ranges import ExtrapolationWarning, outside_data
from .neighbors import NeighborSearch
from .system import atoms_graph, check_structure, model_inputs, read_spins, type_indices

# names kept for code written against earlier versions
spins_of = read_spins
__all__ = ["DeepSpinCalculator", "check_structure", "model_inputs", "pretrained_models", "read_spins",
           "resolve_model_path", "spins_of", "type_indices"]

_CALCULATOR_KEYWORDS = ("restart", "ignore_bad_restart_file", "label", "atoms", "directory")


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


class DeepSpinCalculator(Calculator):
    """Energy, forces, stress and magnetic torques from a DeepSPIN model.

    Parameters
    ----------
    model : path, :class:`~ase_deepspin.model.DeepSpinModel`, or the name of a shipped model
        (``"nio"``; ``"nio.pt"`` also resolves to it when no such file exists here). A model
        object is used as it is when its dtype and device already match; otherwise the
        calculator works on a converted copy and the caller's object is left unchanged.
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

    ``calc.todict()`` (and so ASE trajectories) records the model, dtype, device, compression and
    skin.

    Example
    -------
    >>> atoms.calc = DeepSpinCalculator("nio")
    >>> atoms.get_potential_energy(), atoms.calc.get_property("magnetic_torques", atoms)
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "magnetic_torques"]

    def __init__(self, model, device="cpu", dtype="float64", max_edges_per_chunk: int = 200_000,
                 compress: bool | dict = False, neighbor_skin: float = 0.5, **kwargs):
        unknown = sorted(set(kwargs) - set(_CALCULATOR_KEYWORDS))
        if unknown:
            raise TypeError(f"DeepSpinCalculator got unknown keyword arguments {unknown}; it takes model, device, "
                            "dtype, max_edges_per_chunk, compress, neighbor_skin and ASE's "
                            f"{', '.join(_CALCULATOR_KEYWORDS)}")
        super().__init__(**kwargs)
        self.device = _check_device(device)
        torch_dtype = _torch_dtype(dtype)
        if isinstance(model, DeepSpinModel):
            source = f"<DeepSpinModel {'+'.join(model.config.type_map)}>"
        elif isinstance(model, (str, os.PathLike)):
            path = resolve_model_path(model)
            source = str(path)
            # tables are built in float64 and then cast, exactly as a compressed file is loaded
            model = load_model(path, dtype=torch.float64 if compress else torch_dtype)
        else:
            raise TypeError(f"model must be a path, a shipped model name or a DeepSpinModel, got {type(model).__name__}")
        if isinstance(compress, dict) or (compress and model.tables is None):
            model = compress_model(model, **(compress if isinstance(compress, dict) else {}))
        if model.dtype != torch_dtype or model.device != self.device:
            model = copy.deepcopy(model).to(device=self.device, dtype=torch_dtype)
        self.model = model
        self.model.eval()
        self.max_edges_per_chunk = max_edges_per_chunk
        self.neighbor_search = NeighborSearch(self.model.config.rcut, skin=neighbor_skin)
        self.extrapolation_warned = set()  # kinds of ExtrapolationWarning already given
        self.parameters.update(model=source, device=str(self.device), dtype=str(torch_dtype).removeprefix("torch."),
                               compressed=self.model.tables is not None, neighbor_skin=float(neighbor_skin),
                               max_edges_per_chunk=max_edges_per_chunk)

    def _graph(self, atoms):
        return atoms_graph(self.model, atoms, self.device, search=self.neighbor_search)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        periodic = bool(atoms.pbc.all())
        if "stress" in properties and not periodic:
            raise PropertyNotImplementedError("stress needs a cell periodic in all three directions")
        graph = self._graph(atoms)
        self._warn_outside_data(graph)
        out = self.model(**graph.inputs(), virial=periodic, max_edges_per_chunk=self.max_edges_per_chunk)
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

    def _warn_outside_data(self, graph) -> None:
        """One :class:`ExtrapolationWarning` per calculator and kind (a type's moments, a pair's distance)."""
        ranges = self.model.config.data_ranges
        if ranges is None:
            return
        for kind, message in outside_data(ranges, self.model.config.type_map, graph).items():
            if kind not in self.extrapolation_warned:
                self.extrapolation_warned.add(kind)
                warnings.warn(f"{message}: predictions there are extrapolation", ExtrapolationWarning, stacklevel=4)

    def get_magnetic_torques(self, atoms=None) -> np.ndarray:
        """Magnetic torques −∂E/∂S (N, 3) in eV/μB."""
        return self.get_property("magnetic_torques", atoms)

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
        graph = self._graph(atoms)
        spins = graph.spins.clone().requires_grad_(True)
        inputs = graph.inputs() | {"spins": spins}
        torques = self.model(**inputs, forces=False, create_graph=True)["torques"]
        products = np.zeros_like(vectors)
        for k, v in enumerate(vectors):
            (hv,) = torch.autograd.grad(torques, spins, grad_outputs=-torch.as_tensor(v, dtype=torques.dtype,
                                                                                      device=torques.device),
                                        retain_graph=k + 1 < len(vectors))
            products[k] = hv.detach().cpu().double().numpy()
        return products, torques.detach().cpu().double().numpy()

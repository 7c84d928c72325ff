"""Phonons at fixed magnetic order: a phonopy driver for atoms with spins.

Phonopy builds the supercell and its displaced copies; this module carries the spins into them,
evaluates forces with any spin calculator (the spins held fixed, or relaxed at each displacement)
and hands the forces back, so the returned :class:`phonopy.Phonopy` does the rest (band structures,
DOS, thermal properties, ``save``).

Symmetry. The spins are given to phonopy as magnetic moments, so its symmetry search (spglib's
magnetic space group; non-collinear spins as axial vectors, time reversal allowed) keeps only the
operations that leave the magnetic order invariant, and phonopy applies their spatial parts to the
force constants. They are symmetries of the force constants when the calculator's energy is
invariant under them, as a physical spin Hamiltonian without a field is. A calculator that breaks
some (a Zeeman field; the shipped DeepSPIN model, whose pseudo-atoms at R + ηS make it not exactly
time-reversal even) should be used on a structure relaxed with it at fixed spins, whose positions
then carry the calculator's own lower symmetry, or with ``use_symmetry=False``.

Frequencies are in THz (phonopy's unit for eV, Å and amu); ``THZ_TO_MEV`` converts to meV.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from ase import Atoms, units
from phonopy import Phonopy
from phonopy.phonon.band_structure import get_band_qpoints
from phonopy.structure.atoms import PhonopyAtoms
from tqdm.auto import tqdm

from ..dynamics.minimize import relax_spins
from ..spins import spin_angles, unit_vectors

THZ_TO_MEV = units._hplanck / units._e * 1e15  # h × 1 THz in meV (4.1357)


def _spins(atoms: Atoms) -> np.ndarray | None:
    """Spins of ``atoms``: [N, 3] or collinear [N] in μB, or None without any (none set, or all zero)."""
    if not atoms.has("initial_magmoms"):
        return None
    spins = np.asarray(atoms.get_initial_magnetic_moments(), dtype=float)
    if spins.shape not in ((len(atoms), 3), (len(atoms),)):
        raise ValueError(f"spins must be (N, 3) or collinear (N,) moments in μB for N = {len(atoms)} atoms, "
                         f"got shape {spins.shape}")
    if not np.isfinite(spins).all():
        raise ValueError("spins contain NaN or inf")
    return spins if spins.any() else None


def phonopy_atoms(atoms: Atoms) -> PhonopyAtoms:
    """:class:`PhonopyAtoms` of ``atoms``: cell and positions (Å), ASE masses (amu), spins (μB).

    The spins become phonopy's magnetic moments, non-collinear [N, 3] (or collinear [N], as ASE's
    ``bulk("Ni")`` sets them), which its symmetry search respects; atoms without spins (none set,
    or all zero) get no moments.
    """
    return PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=atoms.cell.array,
                        scaled_positions=atoms.get_scaled_positions(wrap=False), masses=atoms.get_masses(),
                        magnetic_moments=_spins(atoms))


def supercell_spins(phonon: Phonopy) -> np.ndarray | None:
    """Spins [N_supercell, 3] (or collinear [N_supercell]) in μB of ``phonon.supercell``, or None.

    Each supercell atom takes the spin of the primitive-cell atom that phonopy's supercell→primitive
    map (``primitive.s2p_map``, ``primitive.p2s_map``) assigns it to, so the supercell repeats the
    primitive cell's magnetic order lattice translation by lattice translation.
    """
    primitive = phonon.primitive
    if primitive.magnetic_moments is None:
        return None
    moments = np.asarray(primitive.magnetic_moments, dtype=float)
    primitive_index = np.full(len(phonon.supercell), -1)
    primitive_index[primitive.p2s_map] = np.arange(len(primitive))
    return moments[primitive_index[primitive.s2p_map]]


def _supercell_atoms(cell: PhonopyAtoms, spins: np.ndarray | None) -> Atoms:
    atoms = Atoms(symbols=cell.symbols, cell=cell.cell, positions=cell.positions, masses=cell.masses, pbc=True)
    if spins is not None:
        atoms.set_initial_magnetic_moments(spins)
    return atoms


def _evaluate(atoms: Atoms, calculator, relax_spins_tmax: float | None = None, spin_steps: int = 2000):
    """Forces [N, 3] (eV/Å), energy (eV) and spins [N, 3] (μB) of one supercell; a pure task for ``map``."""
    atoms.calc = calculator
    # displaced supercells keep the reference order: no minimum check (2M Hessian products per displacement)
    if relax_spins_tmax is not None and not relax_spins(atoms, tmax=relax_spins_tmax, steps=spin_steps,
                                                        check_minimum=False):
        raise RuntimeError(f"spin relaxation did not reach max torque {relax_spins_tmax:g} eV/μB in "
                           f"{spin_steps} steps: raise spin_steps or spin_tmax")
    spins = atoms.get_initial_magnetic_moments() if atoms.has("initial_magmoms") else None
    return atoms.get_forces(), atoms.get_potential_energy(), spins


def compute_phonons(atoms: Atoms, supercell_matrix, calculator=None, *, primitive_matrix=None,
                    distance: float = 0.01, adiabatic: bool = False, spin_tmax: float = 1e-4,
                    spin_steps: int = 2000, subtract_residual_forces: bool = True, symmetrize: bool = True,
                    use_symmetry: bool = True, symprec: float = 1e-5, map_fn=map,
                    progress: bool = True) -> Phonopy:
    """Harmonic phonons of ``atoms`` at its magnetic order by finite displacements with phonopy.

    Parameters
    ----------
    atoms : periodic cell with spins ``atoms.get_initial_magnetic_moments()`` [N, 3] in μB (the
        magnetic cell: the order must repeat with this cell), or none for a non-magnetic crystal.
    supercell_matrix : (3,) or (3, 3) integers in phonopy's convention: the supercell's lattice
        vectors as columns are ``cell.T @ supercell_matrix`` (rows: ``supercell_matrix.T @ cell``).
    calculator : spin calculator for the supercells (default ``atoms.calc``).
    primitive_matrix : phonopy's primitive matrix relative to ``atoms.cell``; default None takes
        ``atoms`` as the primitive cell. A primitive cell smaller than the magnetic cell is an error.
    distance : displacement length, Å.
    adiabatic : False: forces at the spins of ``atoms`` held fixed. True: the spins of every supercell
        (undisplaced and displaced) are relaxed with ``relax_spins`` (directions only) to max torque
        ``spin_tmax`` (eV/μB) in at most ``spin_steps`` steps before the forces are taken.
    subtract_residual_forces : subtract the undisplaced supercell's forces from the displaced ones
        (removes the linear error of a not fully relaxed structure).
    symmetrize : impose translational invariance and index symmetry on the force constants
        (phonopy's ``symmetrize_force_constants``), which makes acoustic frequencies vanish at Γ.
    use_symmetry : let phonopy reduce the displacements by the magnetic space group (see the module
        docstring); False displaces every primitive atom along ±x, ±y, ±z.
    symprec : symmetry tolerance, Å.
    map_fn : ``map``-like callable ``map_fn(task, supercells)`` returning results in order; the
        displacements are independent, so ``concurrent.futures.ProcessPoolExecutor().map`` works (the
        task and the calculator are pickled to the workers; with ``adiabatic`` the undisplaced supercell
        runs here first, so the calculator must still pickle after use, which ASE's EMT does not).
        Threads would share one calculator: avoid.
    progress : tqdm progress bar over the displacements.

    Returns
    -------
    phonopy.Phonopy with its displacement dataset, forces, supercell energies and force constants
    set: call ``run_band_structure``, ``run_mesh``, ``run_thermal_properties``, ``save``... on it.

    Example
    -------
    >>> from ase.build import bulk
    >>> from ase.calculators.emt import EMT
    >>> phonon = compute_phonons(bulk("Cu"), [4, 4, 4], EMT(), progress=False)
    >>> phonon.run_qpoints([[0.5, 0.5, 0.0]]).frequencies  # THz
    """
    calculator = calculator if calculator is not None else atoms.calc
    if calculator is None:
        raise ValueError("no calculator: pass one or attach it to atoms.calc")
    if not atoms.pbc.all():
        raise ValueError(f"phonons need a cell periodic in all three directions, got pbc={atoms.pbc.tolist()}")
    if not distance > 0:
        raise ValueError(f"displacement distance must be positive (Å), got {distance}")
    matrix = np.asarray(supercell_matrix)
    if matrix.shape not in ((3,), (3, 3)) or not np.allclose(matrix, np.rint(matrix)):
        raise ValueError(f"supercell_matrix must be 3 or 3×3 integers, got {matrix.tolist()}")
    matrix = np.rint(np.diag(matrix) if matrix.shape == (3,) else matrix).astype(int)
    if np.linalg.det(matrix) < 0.5:
        raise ValueError(f"supercell_matrix must have a positive determinant, got {matrix.tolist()}")
    if adiabatic and (_spins(atoms) is None or _spins(atoms).ndim != 2):
        raise ValueError("adiabatic phonons need non-collinear (N, 3) spins on the atoms")

    phonon = Phonopy(phonopy_atoms(atoms), supercell_matrix=matrix,
                     primitive_matrix="P" if primitive_matrix is None else primitive_matrix,
                     symprec=symprec, is_symmetry=use_symmetry)
    spins = supercell_spins(phonon)
    if spins is not None and not np.allclose(spins, phonon.supercell.magnetic_moments, atol=1e-8):
        raise ValueError("the primitive cell is smaller than the magnetic cell: atoms that the "
                         "primitive_matrix makes equivalent carry different spins")
    phonon.generate_displacements(distance=distance)

    relax_tmax = spin_tmax if adiabatic else None
    task = partial(_evaluate, calculator=calculator, relax_spins_tmax=relax_tmax, spin_steps=spin_steps)
    reference = _supercell_atoms(phonon.supercell, spins)
    displaced = phonon.supercells_with_displacements
    if adiabatic:
        # the displaced supercells start from the relaxed spins of the undisplaced one
        reference_result = task(reference)
        angle = np.degrees(spin_angles(unit_vectors(spins)[0], unit_vectors(reference_result[2])[0]))
        if angle.max() > 1.0:
            warnings.warn(f"relaxing the spins of the undisplaced supercell turned them by up to {angle.max():.1f}°: "
                          "the symmetry found from the input spins may not hold; relax the spins of "
                          "`atoms` first or pass use_symmetry=False", stacklevel=2)
        spins = reference_result[2]
        supercells = [_supercell_atoms(cell, spins) for cell in displaced]
    else:
        # the undisplaced supercell goes through map_fn too, so the calculator is first used there
        supercells = [reference] + [_supercell_atoms(cell, spins) for cell in displaced]
    results = list(tqdm(map_fn(task, supercells), total=len(supercells), desc="displacements",
                        disable=not progress))
    if not adiabatic:
        reference_result, results = results[0], results[1:]
    forces = np.array([r[0] for r in results])
    if subtract_residual_forces:
        forces = forces - reference_result[0]
    phonon.forces = forces
    phonon.supercell_energies = np.array([r[1] for r in results])
    phonon.produce_force_constants()
    if symmetrize:
        phonon.symmetrize_force_constants()
    return phonon


@dataclass(frozen=True)
class BandPath:
    """A band-structure path in the primitive cell's reciprocal basis (fractional coordinates).

    ``qpoints``: segments [n_k, 3]; ``segments``: (start, end) label of each; ``points``: label →
    fractional coordinates of the special points. ``labels`` and ``connections`` give phonopy's layout.
    """

    qpoints: list
    segments: list
    points: dict

    @property
    def connections(self) -> list[bool]:
        return [a[1] == b[0] for a, b in zip(self.segments, self.segments[1:])] + [False]

    @property
    def labels(self) -> list[str]:
        labels = []
        for k, (start, end) in enumerate(self.segments):
            if k == 0 or not self.connections[k - 1]:
                labels.append(start)
            labels.append(end)
        return labels

    def tick_labels(self) -> list[str]:
        """One label per segment boundary: "U|K" where the path jumps."""
        ticks = [self.segments[0][0]]
        for (start, end), nxt in zip(self.segments, [*self.segments[1:], None]):
            ticks.append(end if nxt is None or nxt[0] == end else f"{end}|{nxt[0]}")
        return ticks


def _pretty(label: str) -> str:
    return {"GAMMA": "Γ", "SIGMA": "Σ", "DELTA": "Δ", "LAMBDA": "Λ"}.get(label, label).replace("_", "")


def band_path(cell: Atoms | PhonopyAtoms | Phonopy, points: dict, segments, npoints: int = 51) -> BandPath:
    """A path through ``points`` (label → fractional coordinates in the reciprocal basis of ``cell``,
    a Phonopy object: its primitive cell) along ``segments``: lists of labels, each list a
    connected run, e.g. ``[["Γ", "X", "W"], ["K", "Γ", "L"]]``. About ``npoints`` points on the
    longest segment, the others in proportion.
    """
    lattice = _lattice(cell)
    pairs = [(run[k], run[k + 1]) for run in segments for k in range(len(run) - 1)]
    unknown = sorted({label for pair in pairs for label in pair} - set(points))
    if unknown or not pairs:
        raise ValueError(f"band path segments {segments} need at least two points each, all in points; "
                         f"unknown: {unknown}")
    points = {label: np.asarray(q, dtype=float) for label, q in points.items()}
    qpoints = get_band_qpoints([[points[a], points[b]] for a, b in pairs], npoints=npoints,
                               rec_lattice=np.linalg.inv(lattice))
    return BandPath(qpoints=qpoints, segments=pairs, points=points)


def _lattice(cell) -> np.ndarray:
    if isinstance(cell, Phonopy):
        cell = cell.primitive
    return np.asarray(cell.cell.array if isinstance(cell, Atoms) else cell.cell, dtype=float)


def seekpath_band_path(cell: Atoms | PhonopyAtoms | Phonopy, npoints: int = 51, symprec: float = 1e-3) -> BandPath:
    """Seekpath's standard path for the lattice of ``cell`` (a Phonopy object: its primitive cell).

    The spins are ignored, so a magnetic cell that is a supercell of the chemical one gets the
    chemical lattice's path and labels (NiO's magnetic cell: the fcc Γ–X–U|K–Γ–L–W–X), written in
    the magnetic cell's reciprocal basis. ``symprec`` (Å) is loose enough by default to see the
    ideal lattice through small relaxations.
    """
    import seekpath
    from seekpath.getpaths import SupercellWarning

    if isinstance(cell, Phonopy):
        cell = cell.primitive
    if isinstance(cell, Atoms):
        structure = (cell.cell.array, cell.get_scaled_positions(), cell.numbers)
    else:
        structure = (cell.cell, cell.scaled_positions, cell.numbers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SupercellWarning)
        path = seekpath.get_path_orig_cell(structure, with_time_reversal=True, symprec=symprec)
    points = {_pretty(k): v for k, v in path["point_coords"].items()}
    runs = []
    for a, b in path["path"]:
        if runs and runs[-1][-1] == _pretty(a):
            runs[-1].append(_pretty(b))
        else:
            runs.append([_pretty(a), _pretty(b)])
    return band_path(cell, points, runs, npoints)


def run_bands(phonon: Phonopy, path: BandPath | None = None):
    """Run ``phonon``'s band structure along ``path`` (default: seekpath's) and return phonopy's result.

    ``result.distances`` (1/Å, cumulative) and ``result.frequencies`` (THz) hold one array per segment.
    """
    path = path if path is not None else seekpath_band_path(phonon)
    phonon.run_band_structure(path.qpoints, path_connections=path.connections, labels=path.labels,
                              is_legacy_plot=False)
    return phonon.band_structure


def plot_phonons(phonons: Phonopy | dict, filename: str | Path, path: BandPath | None = None,
                 unit: str = "meV", mesh=(16, 16, 16), title: str | None = None) -> Path:
    """Band structure and total DOS (PNG); several spectra overlaid for comparing magnetic orders.

    Parameters
    ----------
    phonons : a Phonopy object, or {label: Phonopy} for an overlay (same primitive lattice).
    filename : PNG path.
    path : band path (default: seekpath's for the first spectrum).
    unit : "meV" or "THz" on the left axis; the other unit is on the right axis.
    mesh : q mesh of the DOS, or None for bands only.

    Runs the band structure (and mesh and DOS) on each Phonopy object.
    """
    from ..figures import new_figure

    if unit not in ("meV", "THz"):
        raise ValueError(f"unit must be 'meV' or 'THz', got {unit!r}")
    spectra = phonons if isinstance(phonons, dict) else {"": phonons}
    if not spectra:
        raise ValueError("no phonon spectra to plot")
    path = path if path is not None else seekpath_band_path(next(iter(spectra.values())))
    scale = THZ_TO_MEV if unit == "meV" else 1.0
    other, factor = ("THz", 1.0 / THZ_TO_MEV) if unit == "meV" else ("meV", THZ_TO_MEV)

    widths = [4, 1] if mesh is not None else [1]
    fig = new_figure(figsize=(8 if mesh is not None else 6.5, 4.5))
    axes = fig.subplots(1, len(widths), sharey=True, gridspec_kw={"width_ratios": widths}, squeeze=False)
    bands_ax = axes[0, 0]
    colors = ["k"] if len(spectra) == 1 else [f"C{i}" for i in (3, 0, 2, 1, 4, 5)]
    distances = None
    lowest, highest = 0.0, 0.0
    for (label, phonon), color in zip(spectra.items(), colors):
        bands = run_bands(phonon, path)
        lowest = min(lowest, min(float(np.min(f)) for f in bands.frequencies) * scale)
        highest = max(highest, max(float(np.max(f)) for f in bands.frequencies) * scale)
        # one abscissa for all: the first lattice's path length, as slightly different cells differ
        distances = distances if distances is not None else bands.distances
        for x, f in zip(distances, bands.frequencies):
            bands_ax.plot(x, f * scale, color=color, lw=1.0)
        if label:
            bands_ax.plot([], [], color=color, lw=1.0, label=label)
        if mesh is not None:
            phonon.run_mesh(mesh, is_gamma_center=True)
            phonon.run_total_dos()
            axes[0, 1].plot(phonon.total_dos.dos / scale, phonon.total_dos.frequency_points * scale, color=color,
                            lw=1.0)
    ends = [x[0] for x in distances] + [distances[-1][-1]]
    bands_ax.set_xticks(ends, path.tick_labels())
    for x in ends:
        bands_ax.axvline(x, color="0.7", lw=0.6)
    bands_ax.axhline(0.0, color="0.7", lw=0.6)
    bands_ax.set_xlim(ends[0], ends[-1])
    # from the lowest band (imaginary modes, plotted negative, stay in view) to the highest: the DOS's
    # smearing tails must not stretch the axis below zero
    margin = 0.03 * (highest - lowest)
    bands_ax.set_ylim(lowest - margin, highest + margin)
    bands_ax.set_ylabel(f"frequency ({unit})")
    if title:
        bands_ax.set_title(title)
    if len(spectra) > 1:
        bands_ax.legend(loc="lower right", framealpha=0.9)
    last = axes[0, -1]
    if mesh is not None:
        last.set_xlabel(f"DOS (states/{unit})")
        last.set_xlim(left=0.0)
    last.secondary_yaxis("right", functions=(lambda y: y * factor, lambda y: y / factor)).set_ylabel(
        f"frequency ({other})")
    fig.savefig(filename, dpi=130)
    return Path(filename)

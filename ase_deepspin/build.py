"""Builders of magnetic structures used by examples, tests and benchmarks."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import bulk, make_supercell


def nio_afm(a: float = 4.17, moment: float = 1.27, repeat=(1, 1, 1), cubic: bool = False,
            axis=(1.0, 1.0, -2.0)) -> Atoms:
    """Rock-salt NiO with type-II antiferromagnetic order (ferromagnetic {111} planes, alternating).

    Parameters
    ----------
    a : cubic lattice constant, Å (experiment: 4.17).
    moment : Ni moment, μB (DeltaSpin labels of the shipped data: about 1.27).
    repeat : repetition of the magnetic cell.
    cubic : False gives the 4-atom rhombohedral magnetic cell (2 Ni + 2 O) as the unit;
        True gives the 64-atom 2×2×2 conventional cube.
    axis : spin direction of the "up" planes (normalised; NiO's easy axis lies in the (111) plane).

    Spins are set with ``set_initial_magnetic_moments`` as an (N, 3) array, zero on O.
    """
    if cubic:
        atoms = bulk("NiO", "rocksalt", a=a, cubic=True).repeat((2, 2, 2))
    else:
        # lattice vectors (in units of a/2) whose index sums are multiples of 4 keep the order periodic
        atoms = make_supercell(bulk("NiO", "rocksalt", a=a),
                               np.array([[1, -1, 0], [0, 1, -1], [1, 1, 2]]) @ np.linalg.inv(
                                   [[0, 1, 1], [1, 0, 1], [1, 1, 0]]).round(6) * 1.0)
    atoms = atoms.repeat(repeat)
    direction = np.asarray(axis, dtype=float)
    direction /= np.linalg.norm(direction)
    plane = np.rint(2.0 * atoms.positions.sum(axis=1) / a).astype(int) // 2  # (111) plane index
    sign = np.where(plane % 2 == 0, 1.0, -1.0)
    is_ni = np.array(atoms.get_chemical_symbols()) == "Ni"
    atoms.set_initial_magnetic_moments(np.where(is_ni[:, None], moment * sign[:, None] * direction, 0.0))
    return atoms


def fcc_fe_afmd(a: float = 3.5495, moment: float = 1.3, repeat=(1, 1, 2), axis=(0.0, 0.0, 1.0)) -> Atoms:
    """FCC Fe with double-layer antiferromagnetic (AFMD) order: (001) planes stacked ↑↑↓↓ along z.

    Parameters
    ----------
    a : cubic lattice constant, Å (3.5495: the 32-atom DeltaSpin cells of ``fe-deltaspin``, 7.099 / 2).
    moment : moment length, μB (the DeltaSpin bulk moments: 1.0–1.6, mean about 1.3).
    repeat : repetitions of the 4-atom conventional cube; ``repeat[2]`` must be even (the order's
        period along z is 2a). The default, (1, 1, 2), is the smallest cell of the order (8 atoms).
    axis : spin direction of the ↑ planes (normalised).

    Notes
    -----
    The (001) plane index of an atom is its z in units of a/2; planes 0, 1 point along ``axis``,
    planes 2, 3 against it, and so on.
    """
    repeat = tuple(int(r) for r in np.broadcast_to(repeat, 3))
    if repeat[2] % 2:
        raise ValueError(f"AFMD order repeats every 2 conventional cells along z: repeat[2] must be even, got {repeat}")
    atoms = bulk("Fe", "fcc", a=a, cubic=True).repeat(repeat)
    direction = np.asarray(axis, dtype=float)
    direction /= np.linalg.norm(direction)
    atoms.set_initial_magnetic_moments(moment * afmd_signs(atoms.positions, a)[:, None] * direction)
    return atoms


def afmd_signs(positions: np.ndarray, a: float = 3.5495) -> np.ndarray:
    """±1 per atom [N]: the ↑↑↓↓ sign of its (001) plane, whose index is z in units of a/2 (Å)."""
    plane = np.rint(2.0 * positions[:, 2] / a).astype(int)
    return np.where((plane // 2) % 2 == 0, 1.0, -1.0)


def afmd_order(atoms: Atoms, a: float = 3.5495) -> float:
    """AFMD order parameter |Σ_i σ_i S_i| / N (μB) with σ_i = ±1 the ↑↑↓↓ sign of atom i's (001) plane.

    ``a`` (Å) is the lattice constant the plane index is read with (positions may be perturbed by
    less than a/4). Equal to the moment length in perfect AFMD order, near 0 for disordered spins.
    """
    sign = afmd_signs(atoms.positions, a)
    return float(np.linalg.norm((sign[:, None] * atoms.get_initial_magnetic_moments()).mean(axis=0)))


def tilt_spins(spins: np.ndarray, max_angle: float = 90.0, rng=None) -> np.ndarray:
    """Each spin turned away from its own direction by an angle uniform in [0, ``max_angle``) degrees, about a
    uniformly random azimuth; lengths (μB) and zero moments are kept. (With 90°: the random start of the
    DeepSPIN authors' 4,000-atom FCC-Fe relaxation, github.com/hztttt/Synergistic_Optimization.)"""
    rng = np.random.default_rng(rng)
    spins = np.asarray(spins, dtype=float)
    lengths = np.linalg.norm(spins, axis=1, keepdims=True)
    axis = np.divide(spins, lengths, out=np.zeros_like(spins), where=lengths > 0)
    helper = np.where(np.abs(axis[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    e1 = np.cross(axis, helper)
    e1 /= np.maximum(np.linalg.norm(e1, axis=1, keepdims=True), 1e-300)
    e2 = np.cross(axis, e1)
    theta = np.radians(rng.uniform(0.0, max_angle, len(spins)))[:, None]
    phi = rng.uniform(0.0, 2 * np.pi, len(spins))[:, None]
    return lengths * (np.cos(theta) * axis + np.sin(theta) * (np.cos(phi) * e1 + np.sin(phi) * e2))


def simple_cubic_spins(n: int, a: float = 2.5, moment: float = 2.0, element: str = "Fe", seed: int = 0) -> Atoms:
    """Periodic n×n×n simple-cubic lattice (spacing ``a`` Å) with random spins of ``moment`` μB."""
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), axis=-1).reshape(-1, 3) * a
    atoms = Atoms(f"{element}{n ** 3}", positions=grid, cell=[n * a] * 3, pbc=True)
    spins = np.random.default_rng(seed).normal(size=(n**3, 3))
    atoms.set_initial_magnetic_moments(moment * spins / np.linalg.norm(spins, axis=1, keepdims=True))
    return atoms


# R3c BiFeO3 at 298 K, hexagonal setting: Palewicz, Przeniosło, Sosnowska and Hewat, Acta Cryst. B63,
# 537 (2007), neutron powder diffraction (CIF block BiFeO3_298K of their supporting information).
BIFEO3_R3C_298K = {
    "cellpar": (5.57882, 5.57882, 13.86932, 90.0, 90.0, 120.0),  # a, b, c (Å), α, β, γ (°)
    "basis": {"Bi": (0.0, 0.0, 0.0), "Fe": (0.0, 0.0, 0.22021), "O": (0.4469, 0.0181, 0.95183)},  # 6a, 6a, 18b
}
NOMINAL_CHARGES = {"Bi": 3.0, "Fe": 3.0, "O": -2.0}  # formal ionic charges, e
E_PER_A2_IN_UC_PER_CM2 = 1602.176634  # 1 e/Å² = 1602.18 μC/cm²


def triangular_lattice(size=(12, 12), a: float = 2.5, element: str = "Fe", vacuum: float = 10.0) -> Atoms:
    """A periodic triangular lattice of ``size`` (n1, n2) sites, spacing ``a`` (Å), in the xy plane with a
    ``vacuum``-Å cell height; unit spins (1 μB) along z. Site (i, j) is atom i·n2 + j at i a1 + j a2,
    a1 = (a, 0, 0), a2 = (a/2, a√3/2, 0)."""
    n1, n2 = (int(v) for v in size)
    if n1 < 1 or n2 < 1 or not a > 0:
        raise ValueError(f"need positive sizes and spacing, got size {size}, a {a} Å")
    a1, a2 = np.array([a, 0.0, 0.0]), np.array([a / 2, a * np.sqrt(3) / 2, 0.0])
    i, j = np.divmod(np.arange(n1 * n2), n2)
    positions = i[:, None] * a1 + j[:, None] * a2
    atoms = Atoms(f"{element}{n1 * n2}", positions=positions, cell=[n1 * a1, n2 * a2, [0.0, 0.0, vacuum]], pbc=True)
    atoms.set_initial_magnetic_moments(np.tile([0.0, 0.0, 1.0], (n1 * n2, 1)))
    return atoms


def tetrahedral_spins(size=(12, 12)) -> np.ndarray:
    """Unit spins (N, 3) of the four-sublattice tetrahedral (triple-Q) order on :func:`triangular_lattice`:
    sublattice (i mod 2, j mod 2) points to one vertex of a regular tetrahedron (neighbours at 109.5°,
    uniform scalar chirality). Needs even sizes."""
    n1, n2 = (int(v) for v in size)
    if n1 % 2 or n2 % 2:
        raise ValueError(f"the tetrahedral order repeats every 2 sites along both axes: even sizes needed, got {size}")
    vertices = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)
    i, j = np.divmod(np.arange(n1 * n2), n2)
    return vertices[i % 2 + 2 * (j % 2)]


def bifeo3_r3c(moment: float = 4.1, axis=(1.0, 0.0, 0.0), hexagonal: bool = False, repeat=(1, 1, 1)) -> Atoms:
    """Ferroelectric R3c BiFeO3 with G-type antiferromagnetic Fe spins (the +P variant).

    Structure: space group R3c (161), hexagonal setting, lattice and Wyckoff positions at 298 K
    from Palewicz et al., Acta Cryst. B63, 537 (2007) (``BIFEO3_R3C_298K``): a = 5.57882 Å,
    c = 13.86932 Å, Bi 6a (0, 0, 0), Fe 6a (0, 0, 0.22021), O 18b (0.4469, 0.0181, 0.95183).
    The hexagonal c axis (the pseudocubic [111], the polar axis, +P along +c) is Cartesian z.

    Parameters
    ----------
    moment : Fe moment, μB (4.1: a typical DFT+U value; experiment about 3.7–4.1).
    axis : Fe spin direction (normalised); the default x lies in the plane perpendicular to P,
        where the moments of BiFeO3 lie. The long-period cycloid of bulk BiFeO3 is not modelled.
    hexagonal : the 30-atom hexagonal cell instead of the 10-atom rhombohedral primitive cell.
    repeat : repetition of the cell.

    G-type order: every Fe is antiparallel to its six nearest Fe neighbours, i.e. ferromagnetic
    (111)_pc planes (perpendicular to c, spaced c/6) alternating in sign. Spins are (N, 3) initial
    magnetic moments, zero on Bi and O.
    """
    from ase.spacegroup import crystal

    if moment <= 0:
        raise ValueError(f"Fe moment must be positive (μB), got {moment}")
    direction = np.asarray(axis, dtype=float)
    if direction.shape != (3,) or np.linalg.norm(direction) == 0:
        raise ValueError("spin axis must be a non-zero 3-vector")
    direction /= np.linalg.norm(direction)
    basis = BIFEO3_R3C_298K["basis"]
    atoms = crystal(list(basis), basis=list(basis.values()), spacegroup=161,
                    cellpar=BIFEO3_R3C_298K["cellpar"], primitive_cell=not hexagonal).repeat(repeat)
    is_fe = atoms.numbers == 26
    layer_spacing = BIFEO3_R3C_298K["cellpar"][2] / 6.0
    layer = np.rint((atoms.positions[:, 2] - atoms.positions[is_fe][0, 2]) / layer_spacing).astype(int)
    sign = np.where(layer % 2 == 0, 1.0, -1.0)
    atoms.set_initial_magnetic_moments(np.where(is_fe[:, None], moment * sign[:, None] * direction, 0.0))
    return atoms


def inverted_variant(atoms: Atoms, center, max_shift: float = 1.5) -> Atoms:
    """The image of ``atoms`` under inversion through ``center`` (Å), atoms kept in their order and spins kept.

    Each atom goes to the nearest inverted atom of its element (minimum image), so a polar
    structure becomes its opposite-polarity twin with the smallest displacements; the net
    mass-weighted translation is removed. Raises ValueError when an atom finds no partner within
    ``max_shift`` Å or two atoms claim the same one. For R3c BiFeO3, inversion through an Fe site
    (a centre of the paraelectric R-3c parent) maps +P onto −P with the same octahedral tilts.
    """
    from ase.neighborlist import neighbor_list

    n = len(atoms)
    inverted = 2.0 * np.asarray(center, dtype=float) - atoms.positions
    both = Atoms(numbers=np.concatenate([atoms.numbers, atoms.numbers]), positions=np.vstack([atoms.positions, inverted]),
                 cell=atoms.cell, pbc=atoms.pbc)
    i, j, shift = neighbor_list("ijD", both, max_shift)
    keep = (i < n) & (j >= n) & (both.numbers[i] == both.numbers[j])
    i, j, shift = i[keep], j[keep] - n, shift[keep]
    nearest = np.lexsort((np.linalg.norm(shift, axis=1), i))
    first = np.unique(i[nearest], return_index=True)[1]
    i, j, shift = i[nearest][first], j[nearest][first], shift[nearest][first]
    if len(i) != n or len(np.unique(j)) != n:
        raise ValueError(f"inversion does not map every atom onto a distinct atom of its element within "
                         f"{max_shift} Å: the structure is not close to centrosymmetric about {center}")
    displacement = np.zeros((n, 3))
    displacement[i] = shift
    masses = atoms.get_masses()
    displacement -= masses @ displacement / masses.sum()
    twin = atoms.copy()
    twin.positions = atoms.positions + displacement
    return twin


def bifeo3_switching_endpoints(**kwargs) -> tuple[Atoms, Atoms]:
    """(+P, −P) R3c BiFeO3 (``bifeo3_r3c(**kwargs)``) with the same atom order and the same Fe spins.

    −P is the inversion image of +P through the first Fe (``inverted_variant``): polar
    displacements reverse along c, octahedral tilts and the G-type magnetic order stay.
    """
    plus = bifeo3_r3c(**kwargs)
    return plus, inverted_variant(plus, plus.positions[np.flatnonzero(plus.numbers == 26)[0]])


def polarization(atoms: Atoms, reference: Atoms, born_charges=None) -> np.ndarray:
    """Polarization P = (e/V) Σ_i Z*_i (R_i − R_i^ref) in μC/cm² (3,), relative to a centrosymmetric reference.

    Parameters
    ----------
    atoms, reference : same atoms in the same order (e.g. an NEB image and the midpoint of the
        +P and −P endpoints); displacements use the minimum image.
    born_charges : None for ``NOMINAL_CHARGES``, {element: charge or 3×3 tensor} or an (N, 3, 3)
        array, in units of e. The charges must sum to zero (acoustic sum rule), otherwise P would
        depend on the origin.
    """
    from ase.geometry import find_mic

    if len(atoms) != len(reference) or np.any(atoms.numbers != reference.numbers):
        raise ValueError("atoms and reference must hold the same atoms in the same order")
    n = len(atoms)
    if born_charges is None:
        born_charges = NOMINAL_CHARGES
    if isinstance(born_charges, dict):
        missing = sorted(set(atoms.get_chemical_symbols()) - set(born_charges))
        if missing:
            raise ValueError(f"no Born charge for elements {missing}")
        symbols = np.array(atoms.get_chemical_symbols())
        Z = np.zeros((n, 3, 3))
        for element in set(symbols):
            charge = np.asarray(born_charges[element], dtype=float)
            if charge.shape not in ((), (3, 3)):
                raise ValueError(f"Born charge of {element} must be a number or a 3×3 tensor, got shape {charge.shape}")
            Z[symbols == element] = charge * np.eye(3) if charge.ndim == 0 else charge
    else:
        Z = np.asarray(born_charges, dtype=float)
    if Z.shape != (n, 3, 3):
        raise ValueError(f"Born charges must be per element or an (N, 3, 3) = ({n}, 3, 3) array, got shape {Z.shape}")
    if np.abs(Z.sum(axis=0)).max() > 1e-6 * n:
        raise ValueError(f"Born charges do not sum to zero (Σ Z* = {Z.sum(axis=0).round(4).tolist()} e): "
                         "the polarization would depend on the origin")
    displacement, _ = find_mic(atoms.positions - reference.positions, atoms.cell, atoms.pbc)
    return E_PER_A2_IN_UC_PER_CM2 * np.einsum("iab,ib->a", Z, displacement) / atoms.get_volume()

"""Phonopy driver at fixed magnetic order: plain-phonopy equality, spin-dependent force constants
against finite differences, spins carried into supercells, band paths, plots, bad input."""

from concurrent.futures import ProcessPoolExecutor

import numpy as np
import phonopy
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator
from ase.calculators.emt import EMT
from phonopy import Phonopy
from phonopy.structure.atoms import PhonopyAtoms

from ase_deepspin.analysis.phonons import (
    THZ_TO_MEV,
    compute_phonons,
    plot_phonons,
    seekpath_band_path,
    supercell_spins,
)
from ase_deepspin.build import nio_afm
from ase_deepspin.calculators.hamiltonian import DMI, Anisotropy, BetheSlater, SpinHamiltonian

NI_A = 3.52  # Å
# nearest-neighbour (2.49 Å) J ≈ 16 meV with a steep r-dependence, second shell ≈ 0
NI_EXCHANGE = BetheSlater(alpha=0.05, gamma=0.2, delta=1.5, cutoff=3.8)
# the 4-atom NiO magnetic cell (rows (a/2)[1-10], (a/2)[01-1], (a/2)[112]) to the 128-atom
# supercell 2a[011], 2a[101], 2a[110] (an fcc superlattice of the chemical cell), in phonopy's
# column convention
NIO_128 = (np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]]) @ np.rint(
    4 * np.linalg.inv([[1, -1, 0], [0, 1, -1], [1, 1, 2]])).astype(int)).T


def frequencies(phonon, q) -> np.ndarray:
    """Frequencies (THz) at one q-point (fractional coordinates of the primitive reciprocal basis)."""
    return phonon.run_qpoints([q]).frequencies[0]


def plain_phonopy_bands(atoms, supercell, path, distance=0.01):
    """The textbook phonopy workflow with ASE forces (no spins): frequencies (THz) along ``path``."""
    unitcell = PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=atoms.cell.array,
                            scaled_positions=atoms.get_scaled_positions())
    phonon = Phonopy(unitcell, supercell_matrix=supercell, primitive_matrix="P")
    phonon.generate_displacements(distance=distance)
    forces = []
    for cell in phonon.supercells_with_displacements:
        displaced = Atoms(cell.symbols, cell=cell.cell, positions=cell.positions, pbc=True)
        displaced.calc = EMT()
        forces.append(displaced.get_forces())
    phonon.forces = forces
    phonon.produce_force_constants()
    phonon.run_band_structure(path.qpoints, path_connections=path.connections, labels=path.labels)
    return np.concatenate(phonon.band_structure.frequencies)


def test_copper_emt_bands_equal_plain_phonopy_and_acoustic_modes_vanish():
    cu = bulk("Cu", "fcc", a=3.6)
    path = seekpath_band_path(cu, npoints=11)
    phonon = compute_phonons(cu, [3, 3, 3], EMT(), symmetrize=False, subtract_residual_forces=False,
                             progress=False)
    phonon.run_band_structure(path.qpoints, path_connections=path.connections, labels=path.labels)
    ours = np.concatenate(phonon.band_structure.frequencies)  # [n_q, 3] THz, Γ first
    plain = plain_phonopy_bands(cu, [3, 3, 3], path)
    # the acoustic triplet at Γ is the square root of round-off (~1e-6 THz) in both runs, compared apart
    at_gamma = np.all(np.concatenate(path.qpoints) == 0.0, axis=1)
    assert at_gamma.sum() == 3  # Γ–X, K–Γ, Γ–L
    assert np.abs(ours[~at_gamma] - plain[~at_gamma]).max() < 1e-8
    assert np.abs(ours[at_gamma]).max() < 1e-5 and np.abs(plain[at_gamma]).max() < 1e-5
    assert ours.max() > 5.0  # THz: a real spectrum, not zeros

    symmetrized = compute_phonons(cu, [3, 3, 3], EMT(), distance=0.03, progress=False)
    assert np.abs(frequencies(symmetrized, [0.0, 0.0, 0.0])).max() <= 1e-3


def test_process_pool_map_gives_the_serial_force_constants():
    cu = bulk("Cu", "fcc", a=3.6)
    serial = compute_phonons(cu, [2, 2, 2], EMT(), use_symmetry=False, progress=False)
    with ProcessPoolExecutor(max_workers=2) as pool:
        parallel = compute_phonons(cu, [2, 2, 2], EMT(), use_symmetry=False, map_fn=pool.map, progress=False)
    assert len(serial.displacements) == 6
    np.testing.assert_allclose(parallel.force_constants, serial.force_constants, atol=1e-12)


def nickel(order: str) -> Atoms:
    """Conventional fcc Ni (4 atoms) with ferromagnetic or layered (001) antiferromagnetic spins."""
    atoms = bulk("Ni", "fcc", a=NI_A, cubic=True)
    atoms.set_initial_magnetic_moments(None)  # drop ASE's collinear default
    sign = np.ones(4) if order == "FM" else np.where(np.rint(2 * atoms.positions[:, 2] / NI_A) % 2 == 0, 1.0, -1.0)
    atoms.set_initial_magnetic_moments(0.6 * sign[:, None] * np.array([0.0, 0.0, 1.0]))
    return atoms


def spin_hamiltonian():
    return SpinHamiltonian(exchange={("Ni", "Ni"): NI_EXCHANGE}, lattice=EMT())


def test_ferro_and_antiferro_force_constants_differ_by_the_finite_difference_exchange_hessian(tmp_path):
    h = 1e-3  # Å, for the driver and the direct finite differences alike
    phonons = {order: compute_phonons(nickel(order), [2, 2, 2], spin_hamiltonian(), distance=h,
                                      symmetrize=False, progress=False) for order in ("FM", "AFM")}
    driver = phonons["FM"].force_constants - phonons["AFM"].force_constants  # [N_s, N_s, 3, 3] eV/Å²

    # direct central differences in the same supercell, spins from the layer rule, no phonopy symmetry
    supercell = phonons["FM"].supercell
    base = Atoms(supercell.symbols, cell=supercell.cell, positions=supercell.positions, pbc=True)
    layer = np.where(np.rint(2 * base.positions[:, 2] / NI_A) % 2 == 0, 1.0, -1.0)
    spins = {"FM": np.tile([0.0, 0.0, 0.6], (len(base), 1)), "AFM": 0.6 * layer[:, None] * [0.0, 0.0, 1.0]}
    calc = spin_hamiltonian()

    def forces(order, displacement):
        atoms = base.copy()
        atoms.positions += displacement
        atoms.set_initial_magnetic_moments(spins[order])
        atoms.calc = calc
        return atoms.get_forces()

    for i in phonons["FM"].primitive.p2s_map:
        for alpha in range(3):
            step = np.zeros((len(base), 3))
            step[i, alpha] = h
            spin_forces = {sign: forces("FM", sign * step) - forces("AFM", sign * step) for sign in (1, -1)}
            reference = -(spin_forces[1] - spin_forces[-1]) / (2 * h)  # [N_s, 3]
            assert np.abs(driver[i, :, alpha, :] - reference).max() < 1e-3 * np.abs(reference).max()
    assert np.abs(driver).max() > 0.05  # eV/Å²: the magnetic order changes the force constants
    q = [0.5, 0.0, 0.0]
    assert np.abs(frequencies(phonons["FM"], q) - frequencies(phonons["AFM"], q)).max() > 0.02  # THz

    # the spins survive phonopy's own file format
    phonons["AFM"].save(tmp_path / "afm.yaml")
    loaded = phonopy.load(tmp_path / "afm.yaml")
    np.testing.assert_allclose(loaded.supercell.magnetic_moments, supercell_spins(phonons["AFM"]))
    np.testing.assert_allclose(frequencies(loaded, q), frequencies(phonons["AFM"], q), atol=1e-8)


def full_matrix(force_constants: np.ndarray) -> np.ndarray:
    """[N, N, 3, 3] force constants as a [3N, 3N] matrix."""
    n = len(force_constants)
    return force_constants.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n)


@pytest.mark.parametrize("dmi", [0.0, 0.02])
def test_adiabatic_force_constants_are_the_schur_complement_of_the_spin_lattice_hessian(dmi):
    """Relaxing spins at each displacement gives Φ_ad = Φ − C H⁻¹ Cᵀ: C = ∂F/∂θ (forces against spin
    angles), H = ∂²E/∂θ² (spin Hessian) at the ferromagnetic minimum, both by direct finite
    differences. DMI couples displacements to spin tilts; without it the collinear state feels no
    torque and the two force constants coincide."""
    calc = SpinHamiltonian(exchange={("Ni", "Ni"): NI_EXCHANGE}, anisotropy={"Ni": Anisotropy(K=0.002)},
                           dmi={("Ni", "Ni"): DMI(D=dmi, cutoff=2.7)} if dmi else None, lattice=EMT())
    moment = 0.6
    atoms = bulk("Ni", "fcc", a=NI_A)
    atoms.set_initial_magnetic_moments(None)
    atoms.set_initial_magnetic_moments([[0.0, 0.0, moment]])
    # interfacial DMI breaks the inversion that the lattice and the spins have: no symmetry
    options = {"use_symmetry": False, "symmetrize": False, "progress": False}
    fixed = compute_phonons(atoms, [3, 3, 3], calc, **options)
    adiabatic = compute_phonons(atoms, [3, 3, 3], calc, adiabatic=True, spin_tmax=1e-8, **options)
    if not dmi:
        np.testing.assert_allclose(adiabatic.force_constants, fixed.force_constants, atol=1e-10)
        return

    supercell = fixed.supercell
    base = Atoms(supercell.symbols, cell=supercell.cell, positions=supercell.positions, pbc=True)
    n, h = len(base), 1e-4  # h: rad
    coupling = np.zeros((n, 3, n, 2))  # ∂F_iα/∂θ_kb, eV/Å/rad
    hessian = np.zeros((n, 2, n, 2))  # ∂²E/∂θ_ia∂θ_kb, eV/rad²
    for k in range(n):
        for b in range(2):  # tilt spin k from z towards x or y
            result = {}
            for sign in (1, -1):
                spins = np.tile([0.0, 0.0, moment], (n, 1))
                spins[k] = moment * np.array([0.0, 0.0, np.cos(h)]) + moment * np.sin(sign * h) * np.eye(3)[b]
                trial = base.copy()
                trial.set_initial_magnetic_moments(spins)
                trial.calc = calc
                result[sign] = trial.get_forces(), calc.get_property("magnetic_torques", trial)
            coupling[:, :, k, b] = (result[1][0] - result[-1][0]) / (2 * h)
            # ∂E/∂θ_ia = −|S| ω_i·e_a (ω ⟂ S to first order)
            hessian[:, :, k, b] = -moment * (result[1][1][:, :2] - result[-1][1][:, :2]) / (2 * h)
    coupling, hessian = coupling.reshape(3 * n, 2 * n), hessian.reshape(2 * n, 2 * n)
    correction = coupling @ np.linalg.solve(0.5 * (hessian + hessian.T), coupling.T)
    expected = full_matrix(fixed.force_constants) - correction
    assert np.abs(correction).max() > 0.01  # eV/Å²: the spins soften the lattice measurably
    # rows of the displaced (primitive) atom: the ones the driver computes
    assert np.abs(full_matrix(adiabatic.force_constants)[:3] - expected[:3]).max() < 1e-3 * np.abs(correction).max()


class SpinRecorder(Calculator):
    """Zero energy and forces; remembers the spins of every structure it is given."""

    implemented_properties = ("energy", "forces")

    def __init__(self):
        super().__init__()
        self.spins = []

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        self.spins.append(self.atoms.get_initial_magnetic_moments())
        self.results = {"energy": 0.0, "forces": np.zeros((len(self.atoms), 3))}


def test_supercell_spins_repeat_the_primitive_antiferromagnetic_order():
    a = 4.17
    atoms = nio_afm(a=a)
    recorder = SpinRecorder()
    phonon = compute_phonons(atoms, NIO_128, recorder, progress=False)
    spins = supercell_spins(phonon)
    positions = phonon.supercell.positions
    assert len(positions) == 128

    # type-II order, read off the supercell's own positions: sign alternates between (111) planes
    ni = np.array(phonon.supercell.symbols) == "Ni"
    plane = np.rint(2 * positions.sum(axis=1) / a).astype(int) // 2
    up = atoms.get_initial_magnetic_moments()[0]
    expected = np.where(ni[:, None], np.where(plane % 2 == 0, 1.0, -1.0)[:, None] * up, 0.0)
    np.testing.assert_allclose(spins, expected, atol=1e-12)
    assert np.abs(spins.sum(axis=0)).max() < 1e-12  # no net moment
    # every structure handed to the calculator carried exactly these spins
    assert len(recorder.spins) == len(phonon.supercells_with_displacements) + 1
    for recorded in recorder.spins:
        np.testing.assert_array_equal(recorded, spins)


def test_primitive_cell_smaller_than_the_magnetic_cell_is_refused():
    atoms = nio_afm()
    chemical = 0.5 * 4.17 * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]])
    primitive_matrix = (chemical @ np.linalg.inv(atoms.cell.array)).T
    with pytest.raises(ValueError, match="smaller than the magnetic cell"):
        compute_phonons(atoms, NIO_128, SpinRecorder(), primitive_matrix=primitive_matrix, progress=False)


def test_seekpath_path_of_the_magnetic_cell_is_the_fcc_path():
    a = 4.17
    atoms = nio_afm(a=a)
    path = seekpath_band_path(atoms)
    assert path.segments[:2] == [("Γ", "X"), ("X", "U")]
    reciprocal = 2 * np.pi * np.linalg.inv(atoms.cell.array).T  # rows b_i, 1/Å
    length = {label: np.linalg.norm(q @ reciprocal) * a / (2 * np.pi) for label, q in path.points.items()}
    assert length["X"] == pytest.approx(1.0)
    assert length["L"] == pytest.approx(np.sqrt(3) / 2)
    assert length["W"] == pytest.approx(np.sqrt(5) / 2)
    assert path.labels == ["Γ", "X", "U", "K", "Γ", "L", "W", "X"]
    assert path.tick_labels() == ["Γ", "X", "U|K", "Γ", "L", "W", "X"]


def test_overlay_plot_and_unit_check(tmp_path):
    cu = bulk("Cu", "fcc", a=3.6)
    spectra = {"a = 3.60 Å": compute_phonons(cu, [2, 2, 2], EMT(), progress=False),
               "a = 3.65 Å": compute_phonons(bulk("Cu", "fcc", a=3.65), [2, 2, 2], EMT(), progress=False)}
    out = plot_phonons(spectra, tmp_path / "overlay.png", mesh=(6, 6, 6))
    assert out.stat().st_size > 10_000
    with pytest.raises(ValueError, match="unit"):
        plot_phonons(spectra, tmp_path / "bad.png", unit="cm-1")
    assert THZ_TO_MEV == pytest.approx(4.135667, rel=1e-6)


@pytest.mark.parametrize("change, message", [
    (lambda atoms: atoms.set_pbc([True, True, False]), "periodic"),
    (lambda atoms: atoms.set_initial_magnetic_moments(np.ones((2, 2))), "moments"),
])
def test_bad_structures_are_refused(change, message):
    atoms = bulk("Cu", "fcc", a=3.6).repeat((2, 1, 1))
    change(atoms)
    with pytest.raises(ValueError, match=message):
        compute_phonons(atoms, [2, 2, 2], EMT(), progress=False)


def test_bad_arguments_are_refused():
    cu = bulk("Cu", "fcc", a=3.6)
    with pytest.raises(ValueError, match="integers"):
        compute_phonons(cu, [2.5, 2, 2], EMT(), progress=False)
    with pytest.raises(ValueError, match="determinant"):
        compute_phonons(cu, -np.eye(3), EMT(), progress=False)
    with pytest.raises(ValueError, match="distance"):
        compute_phonons(cu, [2, 2, 2], EMT(), distance=0.0, progress=False)
    with pytest.raises(ValueError, match="calculator"):
        compute_phonons(cu, [2, 2, 2], progress=False)
    with pytest.raises(ValueError, match="adiabatic"):
        compute_phonons(cu, [2, 2, 2], EMT(), adiabatic=True, progress=False)


def test_adiabatic_run_warns_when_the_spins_relax_away_from_the_given_order():
    calc = SpinHamiltonian(exchange={("Ni", "Ni"): NI_EXCHANGE}, anisotropy={"Ni": Anisotropy(K=0.002)},
                           lattice=EMT())
    atoms = bulk("Ni", "fcc", a=NI_A)
    atoms.set_initial_magnetic_moments(None)
    atoms.set_initial_magnetic_moments([[0.3, 0.0, 0.52]])  # 30° off the easy axis z
    with pytest.warns(UserWarning, match="turned them by up to 30"):
        compute_phonons(atoms, [2, 2, 2], calc, adiabatic=True, progress=False)


def test_symmetry_found_on_the_relaxed_nio_structure_holds_for_the_shipped_model():
    """Phonopy finds the magnetic space group from positions and spins. A calculator may break some
    of its operations (a DeepSPIN model's pseudo-atoms at R + ηS make it not exactly time-reversal
    even), so the workflow relaxes the positions with the calculator at fixed spins first: they then
    carry its own symmetry, and the symmetry-reduced force constants equal those of displacing every
    atom (to the O(h²) error of displacements along different directions). Nothing here depends on
    the trained numbers: the agreement is relative to the force constants, and the symmetry is used."""
    from ase.optimize import BFGS

    from ase_deepspin import DeepSpinCalculator

    atoms = nio_afm(a=4.1857)
    atoms.calc = DeepSpinCalculator("nio")
    assert BFGS(atoms, logfile=None).run(fmax=1e-5, steps=200)
    options = {"distance": 1e-3, "progress": False}
    reduced = compute_phonons(atoms, [2, 2, 2], **options)
    every_atom = compute_phonons(atoms, [2, 2, 2], use_symmetry=False, **options)
    assert len(reduced.displacements) < len(every_atom.displacements) == 24
    scale = np.abs(every_atom.force_constants).max()  # eV/Å²
    assert np.abs(reduced.force_constants - every_atom.force_constants).max() < 1e-4 * scale

"""The analytic spin Hamiltonian: derivatives, closed forms, symmetry, errors."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.morse import MorsePotential
from vesin import ase_neighbor_list
from scipy.spatial.transform import Rotation

from ase_deepspin.calculators import check_spin_calculator
from ase_deepspin.calculators.hamiltonian import DMI, Anisotropy, BetheSlater, ShellExchange, SpinHamiltonian
from ase_deepspin.units import MU_B_EV_PER_T


STEP = 1e-5


def rattled_bcc(seed=0, spins_random=True):
    atoms = bulk("Fe", "bcc", a=2.87, cubic=True).repeat((2, 2, 2))
    rng = np.random.default_rng(seed)
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + rng.normal(scale=0.01, size=(3, 3))), scale_atoms=True)
    s = rng.normal(size=(len(atoms), 3)) if spins_random else np.tile([0, 0, 1.0], (len(atoms), 1))
    atoms.arrays.pop("initial_magmoms", None)
    atoms.set_initial_magnetic_moments(2.2 * s / np.linalg.norm(s, axis=1, keepdims=True))
    return atoms


def full_hamiltonian(lattice=None):
    return SpinHamiltonian(
        exchange={("Fe", "Fe"): BetheSlater(alpha=0.03, gamma=0.2, delta=1.9, cutoff=3.6)},
        dmi={("Fe", "Fe"): DMI(D=0.004, cutoff=2.6, rule="interfacial")},
        anisotropy={"Fe": Anisotropy(K=0.001, axis=(1, 1, 0), K_cubic=0.0005)},
        field_T=(0.3, -1.0, 2.0), lattice=lattice)


def energy(calc, atoms, positions=None, spins=None, strain=None):
    a = atoms.copy()
    if strain is not None:
        a.set_cell(a.cell.array @ (np.eye(3) + strain), scale_atoms=True)
    if positions is not None:
        a.positions = positions
    if spins is not None:
        a.set_initial_magnetic_moments(spins)
    a.calc = calc
    return a.get_potential_energy()


@pytest.mark.parametrize("lattice", [None, MorsePotential(neighbor_list=ase_neighbor_list, epsilon=0.4, r0=2.48, rho0=6.0, rcut1=4.0, rcut2=5.0)])
def test_the_spin_calculator_contract(lattice):
    """Every term: derivatives by central differences (fixed anisotropy axis and field: no joint rotation)."""
    atoms = rattled_bcc()
    check_spin_calculator(full_hamiltonian(lattice), atoms, step=STEP, rtol=1e-7, entries=12, joint_rotation=False)
    isotropic = SpinHamiltonian(exchange={("Fe", "Fe"): BetheSlater(alpha=0.03, gamma=0.2, delta=1.9, cutoff=3.6)},
                                lattice=lattice)
    check_spin_calculator(isotropic, atoms, step=STEP, rtol=1e-7)


def ordered(structure, a, afm):
    atoms = bulk("Fe", structure, a=a, cubic=True).repeat((2, 2, 2))
    atoms.arrays.pop("initial_magmoms", None)
    half = np.rint(2 * atoms.positions / a).astype(int)  # coordinates in units of a/2
    if afm != "planes":
        sign = np.ones(len(atoms))
    elif structure == "sc":  # checkerboard (G-type)
        sign = (-1.0) ** (half.sum(axis=1) // 2)
    elif structure == "bcc":  # corner vs body-centre sublattice
        sign = (-1.0) ** half[:, 0]
    else:  # fcc: alternating (001) planes
        sign = (-1.0) ** half[:, 2]
    atoms.set_initial_magnetic_moments(np.outer(sign, [0.0, 0.0, 2.0]))
    return atoms


@pytest.mark.parametrize("structure, a, z, afm_neighbour_sum", [
    ("sc", 2.5, 6, -6), ("bcc", 2.87, 8, -8), ("fcc", 3.6, 12, -4)])
def test_fm_and_afm_energies_are_z_J_per_spin(structure, a, z, afm_neighbour_sum):
    J = 0.012
    nn = {"sc": a, "bcc": a * np.sqrt(3) / 2, "fcc": a / np.sqrt(2)}[structure]
    calc = SpinHamiltonian(exchange={("Fe", "Fe"): ShellExchange(J=(J,), radii=(nn,), tolerance=0.05)})
    fm, afm = ordered(structure, a, "fm"), ordered(structure, a, "planes")
    # E per spin = −(1/2) Σ_j J ŝ_i·ŝ_j over the z nearest neighbours
    assert energy(calc, fm) / len(fm) == pytest.approx(-0.5 * z * J, rel=1e-12)
    assert energy(calc, afm) / len(afm) == pytest.approx(-0.5 * afm_neighbour_sum * J, rel=1e-12)


def spiral_chain(q, n=24, spacing=2.5):
    atoms = Atoms("Fe" * n, positions=[[k * spacing, 0, 0] for k in range(n)], cell=[n * spacing, 20, 20],
                  pbc=True)
    phase = q * np.arange(n)
    atoms.set_initial_magnetic_moments(2.0 * np.stack([np.cos(phase), np.sin(phase), np.zeros(n)], axis=1))
    return atoms


def test_spin_spiral_energy_follows_J_of_q_with_dmi():
    J1, J2, D = 0.01, -0.004, 0.003
    calc = SpinHamiltonian(
        exchange={("Fe", "Fe"): ShellExchange(J=(J1, J2), radii=(2.5, 5.0), tolerance=0.05)},
        dmi={("Fe", "Fe"): DMI(D=D, cutoff=2.6, rule="constant", normal=(0, 0, 1), axis=(1, 0, 0))})
    n = 24
    for m in range(n):
        q = 2 * np.pi * m / n
        # spiral in the xy plane: ŝ_k·ŝ_{k+1} = cos q, (ŝ_k × ŝ_{k+1})·z = sin q
        expected = -J1 * np.cos(q) - J2 * np.cos(2 * q) + D * np.sin(q)
        assert energy(calc, spiral_chain(q, n)) / n == pytest.approx(expected, abs=1e-14)


def test_isotropic_exchange_is_invariant_under_spin_rotation_dmi_and_anisotropy_are_not():
    atoms = rattled_bcc(seed=3)
    rot = Rotation.from_rotvec([0.4, 0.9, -0.3]).as_matrix()
    spins = atoms.get_initial_magnetic_moments()
    exchange = SpinHamiltonian(exchange={("Fe", "Fe"): BetheSlater(0.03, 0.2, 1.9, 3.6)})
    assert energy(exchange, atoms, spins=spins @ rot.T) == pytest.approx(energy(exchange, atoms), rel=1e-12)
    for other in (SpinHamiltonian(dmi={("Fe", "Fe"): DMI(0.004, 2.6)}),
                  SpinHamiltonian(anisotropy={"Fe": Anisotropy(K=0.001)})):
        assert abs(energy(other, atoms, spins=spins @ rot.T) - energy(other, atoms)) > 1e-6


def test_dmi_and_anisotropy_transform_with_joint_rotation_of_their_axes():
    atoms = rattled_bcc(seed=4)
    rot = Rotation.from_rotvec([0.0, 0.0, np.pi / 2]).as_matrix()  # maps the cube onto itself
    turned = atoms.copy()
    turned.set_cell(atoms.cell.array @ rot.T, scale_atoms=False)
    turned.positions = atoms.positions @ rot.T
    turned.set_initial_magnetic_moments(atoms.get_initial_magnetic_moments() @ rot.T)
    calc = SpinHamiltonian(dmi={("Fe", "Fe"): DMI(0.004, 2.6, rule="interfacial")},  # normal z is kept
                           anisotropy={"Fe": Anisotropy(K=0.001, axis=(0, 0, 1), K_cubic=0.002)})
    assert energy(calc, turned) == pytest.approx(energy(calc, atoms), rel=1e-12)
    turned.calc = calc
    atoms.calc = calc
    assert np.allclose(calc.get_magnetic_torques(turned), calc.get_magnetic_torques(atoms) @ rot.T, atol=1e-14)


def test_zeeman_energy_and_torque():
    atoms = Atoms("Fe", positions=[[0, 0, 0]])
    atoms.set_initial_magnetic_moments([[0.0, 0.0, 2.0]])
    calc = SpinHamiltonian(field_T=(0, 0, 1.5))
    atoms.calc = calc
    assert atoms.get_potential_energy() == pytest.approx(-2.0 * 1.5 * MU_B_EV_PER_T)
    assert np.allclose(calc.get_magnetic_torques(atoms), [[0, 0, 1.5 * MU_B_EV_PER_T]])


@pytest.mark.parametrize("make, message", [
    (lambda: BetheSlater(0.1, 0.1, 1.0, cutoff=-1.0), "positive cutoff"),
    (lambda: ShellExchange(J=(0.1,), radii=(-2.0,)), "positive"),
    (lambda: SpinHamiltonian(exchange={("Fe", "Xx"): ShellExchange((0.1,), (2.0,))}), "unknown element 'Xx'"),
    (lambda: DMI(D=0.1, cutoff=3.0, normal=(0, 0, 0)), "zero length"),
    (lambda: DMI(D=0.1, cutoff=3.0, rule="constant"), "bond axis"),
    (lambda: Anisotropy(K=0.1, axis=(0, 0, 0)), "zero length"),
])
def test_bad_parameters(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_magnetic_atom_without_spin():
    atoms = rattled_bcc()
    spins = atoms.get_initial_magnetic_moments()
    spins[3] = 0
    atoms.set_initial_magnetic_moments(spins)
    with pytest.raises(ValueError, match=r"zero spin at indices \[3\]"):
        energy(full_hamiltonian(), atoms)

"""Physics and contract tests of the DeepSPIN model behind DeepSpinCalculator (float64).

Every test taking ``model`` runs three times: on a plain model, on its tabulated ("compressed")
copy and on a model with a (randomly set) Heisenberg–Landau spin baseline.
"""

import copy

import numpy as np
import pytest
from ase import Atoms
from scipy.spatial.transform import Rotation

from ase_deepspin import DeepSpinCalculator, compress_model
from ase_deepspin.calculators import check_spin_calculator
from conftest import NIO_DATA, invariant_model, needs_nio_data, small_model, with_random_baseline

FD_STEP = 1e-4
FD_RTOL = 1e-6


@pytest.fixture(scope="module")
def compressed_small_model():
    return compress_model(small_model())


@pytest.fixture(params=["plain", "compressed", "baseline", "spin_invariant", "spin_invariant compressed"])
def model(request, compressed_small_model):
    if request.param == "baseline":
        return with_random_baseline(small_model(spin_baseline={"n_basis": 6, "onsite_order": 3}))
    if request.param.startswith("spin_invariant"):
        model = invariant_model()
        return compress_model(model) if request.param.endswith("compressed") else model
    return small_model() if request.param == "plain" else copy.deepcopy(compressed_small_model)


def energy_at(atoms, calc, positions=None, spins=None, cell=None):
    trial = atoms.copy()
    if positions is not None:
        trial.positions = positions
    if cell is not None:
        trial.set_cell(cell, scale_atoms=False)
    if spins is not None:
        trial.set_initial_magnetic_moments(spins)
    trial.calc = calc
    return trial.get_potential_energy()


def relative_error(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def test_the_spin_calculator_contract(model, nio):
    """Forces, torques (zero on O) and stress are derivatives of the energy; joint rotations; no stale results."""
    report = check_spin_calculator(DeepSpinCalculator(model), nio, step=FD_STEP, rtol=FD_RTOL, entries=12)
    assert set(report) == {"forces", "torques", "stress", "rotation"}


def test_the_contract_check_catches_a_broken_calculator(nio):
    """A calculator whose torques have the wrong sign fails the check, naming the torques."""

    class WrongSign(DeepSpinCalculator):
        def calculate(self, *args, **kwargs):
            super().calculate(*args, **kwargs)
            self.results["magnetic_torques"] = -self.results["magnetic_torques"]

    with pytest.raises(AssertionError, match="torques differ"):
        check_spin_calculator(WrongSign(small_model()), nio)


def test_rotating_spins_alone_changes_energy(model, nio):
    """Spin-lattice coupling: the pseudo-atoms make the energy depend on spin orientation."""
    if model.config.descriptor == "spin_invariant":
        pytest.skip("invariant under rotating the spins alone by construction (tests/test_spin_invariant.py)")
    calc = DeepSpinCalculator(model)
    e0 = energy_at(nio, calc)
    rot = Rotation.from_rotvec([0.0, 0.0, 0.9]).as_matrix()
    assert abs(energy_at(nio, calc, spins=nio.get_initial_magnetic_moments() @ rot.T) - e0) > 1e-6


def test_translation_and_permutation_invariance(model, nio):
    calc = DeepSpinCalculator(model)
    nio.calc = calc
    e0, f0, w0 = nio.get_potential_energy(), nio.get_forces(), calc.get_magnetic_torques(nio)
    shifted = nio.copy()
    shifted.positions += [1.3, -0.4, 2.2]
    shifted.calc = calc
    assert abs(shifted.get_potential_energy() - e0) <= 1e-10 * abs(e0)
    perm = np.random.default_rng(1).permutation(len(nio))
    permuted = nio[perm]
    permuted.calc = calc
    assert abs(permuted.get_potential_energy() - e0) <= 1e-10 * abs(e0)
    assert relative_error(permuted.get_forces(), f0[perm]) < 1e-10
    assert relative_error(calc.get_magnetic_torques(permuted), w0[perm]) < 1e-10


def test_supercell_is_extensive(model, nio):
    calc = DeepSpinCalculator(model)
    e1 = energy_at(nio, calc)
    big = nio.repeat((2, 2, 1))
    big.calc = calc
    assert abs(big.get_potential_energy() - 4 * e1) <= 1e-10 * abs(4 * e1)
    assert np.allclose(big.get_stress(), energy_and_stress(nio, calc), rtol=1e-9, atol=1e-12)


def energy_and_stress(atoms, calc):
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_stress()


def dimer(distance, spin_a=(0.0, 0.0, 1.2), spin_b=(0.0, 0.0, 1.2), second="Ni"):
    atoms = Atoms(["Ni", second], positions=[[0, 0, 0], [distance, 0, 0]])
    atoms.set_initial_magnetic_moments([spin_a, spin_b if second == "Ni" else (0, 0, 0)])
    return atoms


def test_stress_of_a_cell_not_periodic_everywhere_is_refused(model):
    from ase.calculators.calculator import PropertyNotImplementedError

    from ase_deepspin.calculators.hamiltonian import ShellExchange, SpinHamiltonian

    for calc in (DeepSpinCalculator(model), SpinHamiltonian(exchange={("Ni", "Ni"): ShellExchange(J=(0.01,), radii=(2.5,))})):
        atoms = dimer(2.5)
        atoms.calc = calc
        assert np.isfinite(atoms.get_potential_energy())
        with pytest.raises(PropertyNotImplementedError, match="periodic in all three"):
            atoms.get_stress()


@pytest.mark.parametrize("second", ["Ni", "O"])
def test_energy_is_smooth_as_a_real_neighbour_crosses_the_cutoff(model, second):
    calc = DeepSpinCalculator(model)
    rcut = model.config.rcut
    far = energy_at(dimer(rcut + 1.0, second=second), calc)
    eps = 1e-4
    inside = dimer(rcut - eps, second=second)
    inside.calc = calc
    # the quintic switch leaves E − E(far) = O(eps^3) and F = O(eps^2) just inside rcut
    assert abs(inside.get_potential_energy() - far) < 1e-9
    assert np.abs(inside.get_forces()).max() < 1e-6
    near = energy_at(dimer(rcut - 0.5, second=second), calc)
    assert abs(near - far) > 1e-6  # the neighbour does matter when inside


def test_energy_is_smooth_as_a_pseudo_atom_crosses_the_cutoff(model):
    """Pseudo-atom of B at distance rcut ± eps from A while the real B stays inside."""
    if model.config.descriptor == "spin_invariant":
        pytest.skip("no pseudo-atoms")
    calc = DeepSpinCalculator(model)
    rcut, eta = model.config.rcut, model.config.virtual_scale[0]
    moment = 1.2
    d = rcut - 0.5 * eta * moment
    pseudo_distance = lambda atoms: np.linalg.norm(atoms.positions[1] + eta * atoms.get_initial_magnetic_moments()[1])

    def at(offset):
        # choose the spin angle of B so that its pseudo-atom lies at distance rcut + offset from A
        cos = ((rcut + offset) ** 2 - d**2 - (eta * moment) ** 2) / (2 * d * eta * moment)
        spin_b = moment * np.array([cos, np.sqrt(1 - cos**2), 0.0])
        atoms = dimer(d, spin_b=spin_b)
        atoms.calc = calc
        return atoms

    def gap(eps):
        inside, outside = at(-eps), at(+eps)
        assert pseudo_distance(inside) < rcut < pseudo_distance(outside)
        return abs(inside.get_potential_energy() - outside.get_potential_energy())

    # the spin turns between the two sides, so E changes smoothly (gap ∝ eps); a jump would not shrink
    assert gap(1e-7) < 0.02 * gap(1e-4) + 1e-13
    assert abs(at(-0.3).get_potential_energy() - at(1e-4).get_potential_energy()) > 1e-7


def test_changing_one_spin_recomputes(model, nio):
    nio.calc = DeepSpinCalculator(model)
    e0 = nio.get_potential_energy()
    spins = nio.get_initial_magnetic_moments()
    spins[0] = -spins[0]
    nio.set_initial_magnetic_moments(spins)
    assert nio.get_potential_energy() != e0


def spin_calculators(model):
    from ase_deepspin.calculators.hamiltonian import ShellExchange, SpinHamiltonian

    return (DeepSpinCalculator(model), SpinHamiltonian(exchange={("Ni", "Ni"): ShellExchange(J=(0.01,), radii=(2.95,))}))


def test_torques_are_those_of_the_atoms_as_they_are_now(model, nio):
    """The documented call, calc.get_magnetic_torques(atoms), after the spins or positions change equals a fresh
    calculator's answer; without the atoms (which could only give the previous state's torques) it is refused."""
    for calc in spin_calculators(model):
        nio.calc = calc
        calc.get_magnetic_torques(nio)
        spins = nio.get_initial_magnetic_moments()
        spins[0] = -spins[0]
        nio.set_initial_magnetic_moments(spins)
        nio.positions[1] += 0.05
        fresh = nio.copy()
        fresh.calc = copy.deepcopy(calc)
        fresh.calc.reset()
        assert np.array_equal(calc.get_magnetic_torques(nio), fresh.calc.get_magnetic_torques(fresh))
        with pytest.raises(TypeError, match=r"get_magnetic_torques\(atoms\)"):
            calc.get_magnetic_torques()


def test_a_failed_call_leaves_no_state_behind(model, nio):
    for calc in spin_calculators(model):
        bad = nio.copy()
        moments = np.array(nio.get_initial_magnetic_moments(), dtype=object)
        moments[0, 0] = "x"
        bad.arrays["initial_magmoms"] = moments
        bad.calc = calc
        with pytest.raises(ValueError):
            bad.get_potential_energy()
        nio.calc = calc
        fresh = nio.copy()
        fresh.calc = copy.deepcopy(calc)
        assert nio.get_potential_energy() == fresh.get_potential_energy()
        assert np.array_equal(calc.get_magnetic_torques(nio), fresh.calc.get_magnetic_torques(fresh))


def test_chunked_evaluation_equals_single_pass(model, nio):
    whole = DeepSpinCalculator(model)
    chunked = DeepSpinCalculator(model, max_edges_per_chunk=150)
    for calc in (whole, chunked):
        calc.calculate(nio, ["energy", "forces", "stress", "magnetic_torques"])
    for key in ("energy", "energies", "forces", "stress", "magnetic_torques"):
        assert np.allclose(whole.results[key], chunked.results[key], rtol=1e-12, atol=1e-14)


def test_float32_agrees_with_float64(model, nio):
    r64, r32 = DeepSpinCalculator(model, dtype="float64"), DeepSpinCalculator(copy.deepcopy(model), dtype="float32")
    for calc in (r64, r32):
        calc.calculate(nio, ["energy", "forces", "magnetic_torques"])
    assert abs(r32.results["energy"] - r64.results["energy"]) < 1e-5 * abs(r64.results["energy"])
    assert relative_error(r32.results["forces"], r64.results["forces"]) < 1e-3


def test_saved_and_loaded_model_gives_identical_results(model, nio, tmp_path):
    from ase_deepspin import load_model, save_model

    save_model(model, tmp_path / "m.pt")
    a, b = DeepSpinCalculator(model), DeepSpinCalculator(str(tmp_path / "m.pt"))
    assert a.get_potential_energy(nio) == b.get_potential_energy(nio)
    assert load_model(tmp_path / "m.pt").config == model.config


@needs_nio_data
def test_real_nio_frame_finite_differences_of_torques(model):
    """A DeltaSpin frame of the shipped data (32 atoms, spins of 1.27 μB)."""
    from ase_deepspin.io.frames import read_deepmd_npy

    atoms = read_deepmd_npy(NIO_DATA / "data_0")[5].to_atoms()
    calc = DeepSpinCalculator(model)
    atoms.calc = calc
    torques = calc.get_magnetic_torques(atoms)
    spins = atoms.get_initial_magnetic_moments()
    for i, k in [(0, 0), (3, 2), (9, 1)]:
        s = spins.copy()
        s[i, k] += FD_STEP
        ep = energy_at(atoms, calc, spins=s)
        s[i, k] -= 2 * FD_STEP
        em = energy_at(atoms, calc, spins=s)
        assert abs(torques[i, k] + (ep - em) / (2 * FD_STEP)) < FD_RTOL * np.abs(torques).max()


@pytest.mark.parametrize("suffix", ["traj", "extxyz"])
def test_ase_files_keep_torques_and_moments(tmp_path, nio, model, suffix):
    """ase.io.write keeps what the calculator computed, torques and moments included, and the file is
    labelled data for the package's readers (``ase-deepspin test``)."""
    from ase.io import read, write

    from ase_deepspin.io.frames import read_frames, register_torques_with_ase

    register_torques_with_ase()
    nio.calc = DeepSpinCalculator(model)
    energy, forces, torques = nio.get_potential_energy(), nio.get_forces(), nio.calc.get_magnetic_torques(nio)
    assert np.array_equal(nio.get_magnetic_moments(), nio.get_initial_magnetic_moments())
    assert np.allclose(nio.get_magnetic_moment(), nio.get_initial_magnetic_moments().sum(0))
    write(tmp_path / f"out.{suffix}", nio)
    back = read(tmp_path / f"out.{suffix}")
    digits = 1e-12 if suffix == "traj" else 1e-8  # extxyz columns are written with 8 decimals
    assert np.allclose(back.calc.results["magnetic_torques"], torques, rtol=0, atol=digits)
    assert np.allclose(back.get_magnetic_moments(), nio.get_initial_magnetic_moments(), rtol=0, atol=digits)
    if suffix == "extxyz":
        (frame,) = read_frames(tmp_path / "out.extxyz")
        assert frame.energy == pytest.approx(energy) and np.allclose(frame.forces, forces, atol=digits)
        assert np.allclose(frame.torques, torques, atol=digits)


def test_stress_of_a_model_trained_here_comes_with_a_warning_once(nio, model):
    """The trainer fits no stress: a trained model's calculator says so when stress is asked for (once)."""
    import warnings

    from ase_deepspin.model.ranges import ExtrapolationWarning

    trained = copy.deepcopy(model)
    trained.provenance = {"training": {"steps": 1}}
    nio.calc = DeepSpinCalculator(trained)
    nio.get_potential_energy()
    with pytest.warns(ExtrapolationWarning, match="never compared with data"):
        nio.get_stress()
    nio.rattle(0.01, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExtrapolationWarning)
        nio.get_stress()  # once per calculator
        nio.calc = DeepSpinCalculator(model)  # no training record (a DeePMD-kit file, a test model): silent
        nio.get_stress()


def test_importing_the_package_leaves_ase_untouched():
    """ASE's property registries are changed only by an explicit call (a fresh interpreter, so that no other
    test's call is seen)."""
    import subprocess
    import sys

    code = ("from ase import outputs; from ase.calculators.calculator import all_properties as p; "
            "before = (list(p), sorted(outputs.all_outputs)); import ase_deepspin, ase_deepspin.io.frames; "
            "assert (list(p), sorted(outputs.all_outputs)) == before; "
            "ase_deepspin.io.frames.register_torques_with_ase(); assert 'magnetic_torques' in p")
    subprocess.run([sys.executable, "-c", code], check=True)

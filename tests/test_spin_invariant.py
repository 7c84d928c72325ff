"""The descriptor of spin invariants (model.spin_invariant): exact symmetries, smoothness through S = 0,
compression, LAMMPS export, training; and that a descriptor is a component (a toy one plugs in)."""

import copy

import numpy as np
import pytest
import torch
from conftest import invariant_model, minus_gradient, needs_nio_data, with_random_baseline
from scipy.spatial.transform import Rotation

from ase_deepspin import DeepSpinCalculator, compress_model
from ase_deepspin.model import DeepSpinModel, ModelConfig
from ase_deepspin.model.deepspin import DESCRIPTORS
from ase_deepspin.model.descriptor import RadialEmbeddings
from ase_deepspin.system import model_inputs


@pytest.fixture(params=["plain", "baseline", "compressed"])
def model(request):
    if request.param == "baseline":
        return with_random_baseline(invariant_model(spin_baseline={"n_basis": 4, "onsite_order": 2, "form": "landau",
                                                                   "biquadratic": True}))
    model = invariant_model()
    return compress_model(model) if request.param == "compressed" else model


def evaluate(model, atoms, spins=None):
    trial = atoms.copy()
    if spins is not None:
        trial.set_initial_magnetic_moments(spins)
    calc = DeepSpinCalculator(model)
    trial.calc = calc
    return (trial.get_potential_energy(), trial.get_forces(), trial.get_stress(voigt=False),
            calc.get_magnetic_torques(trial))


def scale(x):
    return max(np.abs(x).max(), 1e-300)


@pytest.mark.parametrize("rotvec", [[0.0, 0.0, 0.9], [0.4, -1.3, 2.2]])
def test_rotating_the_spins_alone_rotates_only_the_torques(model, nio, rotvec):
    """Lattice fixed, every spin turned by R: E, F and stress unchanged, ω → Rω, to round-off."""
    e0, f0, s0, w0 = evaluate(model, nio)
    rot = Rotation.from_rotvec(rotvec).as_matrix()
    e1, f1, s1, w1 = evaluate(model, nio, nio.get_initial_magnetic_moments() @ rot.T)
    assert abs(e1 - e0) <= 1e-12 * abs(e0)
    assert np.abs(f1 - f0).max() <= 1e-11 * scale(f0)
    assert np.abs(s1 - s0).max() <= 1e-11 * scale(s0)
    assert np.abs(w1 - w0 @ rot.T).max() <= 1e-11 * scale(w0)


def test_an_improper_rotation_of_the_spins_is_a_symmetry_too(model, nio):
    """S → −S (time reversal) and a mirror of the spins alone: E unchanged, ω transformed with the spins."""
    e0, f0, _, w0 = evaluate(model, nio)
    for matrix in (-np.eye(3), np.diag([1.0, -1.0, 1.0])):
        e1, f1, _, w1 = evaluate(model, nio, nio.get_initial_magnetic_moments() @ matrix.T)
        assert abs(e1 - e0) <= 1e-12 * abs(e0)
        assert np.abs(f1 - f0).max() <= 1e-11 * scale(f0)
        assert np.abs(w1 - w0 @ matrix.T).max() <= 1e-11 * scale(w0)


def test_collinear_spins_have_no_transverse_torque(model, nio):
    """Spins along ±z with different lengths: every torque is parallel to its spin."""
    spins = nio.get_initial_magnetic_moments()
    magnetic = spins.any(axis=1)
    rng = np.random.default_rng(1)
    spins[magnetic] = np.outer(rng.choice([-1.0, 1.0], magnetic.sum()) * rng.uniform(0.5, 1.6, magnetic.sum()),
                               [0.0, 0.0, 1.0])
    _, _, _, torques = evaluate(model, nio, spins)
    assert np.abs(torques[magnetic, 2]).max() > 1e-4  # there are torques, along the spins
    assert np.abs(torques[:, :2]).max() <= 1e-13 * scale(torques)


def model_energy_and_torques(model, atoms, spins):
    """E (eV) and ω (eV/μB) from the model itself: the calculator refuses a zero moment on a magnetic atom."""
    types = np.array([model.config.type_map.index(s) for s in atoms.get_chemical_symbols()])
    inputs = model_inputs(model, atoms.positions, atoms.cell.array, atoms.pbc, types, spins)
    out = model(**inputs, forces=False, torques=True)
    return float(out["energy"][0]), out["torques"].detach().numpy()


def test_torques_are_finite_and_continuous_through_a_vanishing_moment(model, nio):
    """One Ni moment at exactly zero: its torque is finite, equals central differences of E, and is the
    limit of the torques on small moments from either side (Fe has moments of 0.03 μB at the vacancy)."""
    spins = nio.get_initial_magnetic_moments()
    spins[0] = 0.0
    _, torques = model_energy_and_torques(model, nio, spins)
    assert np.all(np.isfinite(torques)) and np.abs(torques[0]).max() > 1e-5
    fd = minus_gradient(lambda s: model_energy_and_torques(model, nio, s)[0], spins, 1e-5, rows=[0])
    assert np.abs(fd[0] - torques[0]).max() < 1e-7 * scale(torques[0]) + 1e-12
    direction = np.array([0.6, -0.8, 0.0])
    for sign in (1.0, -1.0):
        near = spins.copy()
        near[0] = sign * 1e-6 * direction
        assert np.abs(model_energy_and_torques(model, nio, near)[1][0] - torques[0]).max() < 1e-4 * scale(torques[0])


def test_compressed_equals_plain_within_the_table_tolerance(nio):
    plain = invariant_model()
    packed = compress_model(plain, tolerance=1e-9)
    e0, f0, s0, w0 = evaluate(plain, nio)
    e1, f1, s1, w1 = evaluate(packed, nio)
    assert abs(e1 - e0) < 1e-8 * abs(e0)
    for a, b in ((f1, f0), (s1, s0), (w1, w0)):
        assert np.abs(a - b).max() < 1e-6 * scale(b)


def test_a_new_model_starts_from_zero_spin_gates():
    model = DeepSpinModel(ModelConfig(type_map=["Fe"], virtual_scale=[0.0], magnetic=[True],
                                      descriptor="spin_invariant", rcut=4.0, rcut_smth=3.0, sel=40))
    assert all(float(gate[-1].weight.detach().abs().max()) == 0.0 for gate in model.descriptor.gates)


@pytest.mark.parametrize("bad, message", [
    (dict(virtual_scale=[0.3, 0.0]), "has no pseudo-atoms"),
    (dict(time_reversal=False), "even in S by construction"),
    (dict(magnetic=[True]), "magnetic needs one"),
    (dict(moment_floor=0.0), "moment_floor"),
    (dict(sel=[30, 30, 30, 30]), "sel needs"),
])
def test_bad_configurations_are_refused(bad, message):
    params = dict(type_map=["Ni", "O"], virtual_scale=[0.0, 0.0], magnetic=[True, False], descriptor="spin_invariant")
    params.update(bad)
    with pytest.raises(ValueError, match=message):
        ModelConfig(**params)


def test_file_round_trip_and_info(nio, tmp_path, capsys):
    from ase_deepspin.cli import main
    from ase_deepspin.io import load_model, save_model

    model = invariant_model()
    save_model(model, tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.config == model.config
    assert evaluate(loaded, nio)[0] == evaluate(model, nio)[0]
    assert main(["info", str(tmp_path / "m.pt")]) == 0
    assert "spin symmetry   spin rotation and time reversal" in capsys.readouterr().out


def test_deepmd_export_refuses_it_by_name(tmp_path):
    from ase_deepspin.io import DeepMDFormatError, write_deepmd

    with pytest.raises(DeepMDFormatError, match="spin_invariant"):
        write_deepmd(invariant_model(), tmp_path / "m.dp")


@needs_nio_data
@pytest.mark.parametrize("compressed", [False, True])
def test_lammps_module_equals_the_calculator(compressed):
    """The TorchScript module for pair_style deepspin runs the same energy core: E, F, ω to 1e-10."""
    from test_deepmd_convert import nio_frames
    from test_torchscript import compare

    from ase_deepspin.io.torchscript import scripted_model

    # the compressed one also bounds the spin correlations (correlation_rcut): the fused kernel's path in Python
    model = with_random_baseline(invariant_model(spin_baseline={"n_basis": 4, "onsite_order": 2},
                                                 correlation_rcut=2.6 if compressed else None))
    if compressed:
        model = compress_model(model, min_distance=1.0)
    module = scripted_model(model)
    for seed, atoms in enumerate(nio_frames(2)):
        atoms.rattle(0.05, seed=seed)
        result = compare(module, model, atoms, model.config.rcut + 0.5, seed)
        for key in ("energy", "forces", "torques"):
            assert result[key] < 1e-10, (key, result[key])


class RadialOnly(RadialEmbeddings):
    """A toy descriptor for the test below: Σ_j G(d_ij[0]) s_ij over real neighbours, no spins at all."""

    def __init__(self, config, generator, dtype):
        super().__init__(config, config.n_types, list(config.sel)[: config.n_types], list(config.type_map),
                         generator, dtype)

    @property
    def n_features(self) -> int:
        return self.width

    def forward(self, spins, atom_types, centers, neighbors, lattice, pseudo, real, first: int, n_centres: int,
                members_of: list, twice_differentiable: bool) -> list:
        net_of = atom_types[centers] * self.n_types + atom_types[neighbors]
        idx, c, bounds = self.sorted_edges(real.nonzero().squeeze(-1), net_of, centers, first, n_centres)
        rank_of = torch.zeros(n_centres, dtype=torch.int64)
        for members in members_of:
            rank_of[members] = torch.arange(len(members))
        out = []
        for t, members in enumerate(members_of):
            total = lattice.new_zeros(len(members), self.width)
            for b in range(self.n_types):
                p = t * self.n_types + b
                lo, hi = (0 if p == 0 else bounds[p - 1]), bounds[p]
                rows = self.standardised_rows(lattice[idx[lo:hi]], t)
                total = total.index_add(0, rank_of[c[lo:hi]], self.radial(p, rows[:, 0]) * (rows[:, :1] + 1.0))
            out.append(total.unsqueeze(0))
        return out

    def edge_sets(self, spins, atom_types, centers, neighbors, lattice, pseudo):
        return [(centers[~pseudo], lattice[~pseudo])]


@needs_nio_data
def test_a_second_descriptor_plugs_in_and_trains(tmp_path, monkeypatch):
    """A descriptor defined here, registered by name, runs in the calculator and trains a few steps: no
    edits to the model, calculator or trainer."""
    from conftest import NIO_DATA

    from ase_deepspin.io import load_model
    from ase_deepspin.training.config import LossConfig, TrainConfig
    from ase_deepspin.training.train import train

    monkeypatch.setitem(DESCRIPTORS, "radial_only", RadialOnly)
    config = ModelConfig(type_map=["Ni", "O"], virtual_scale=[0.0, 0.0], magnetic=[True, False],
                         descriptor="radial_only", rcut=4.0, rcut_smth=3.0, sel=[30, 30], neuron=[4, 8],
                         axis_neuron=4, fitting_neuron=[8])
    cfg = TrainConfig(model=config, systems=[str(NIO_DATA / "data_0")], batch_size=2, numb_steps=6, start_lr=3e-3,
                      stop_lr=1e-3, decay_steps=3, n_validation=4, disp_freq=3, save_freq=3,
                      output_dir=str(tmp_path / "run"), loss=LossConfig())
    path = train(cfg, progress=False, log=lambda *a: None)
    model = load_model(path)
    assert isinstance(model.descriptor, RadialOnly)
    from ase_deepspin.build import nio_afm

    atoms = nio_afm()
    atoms.calc = DeepSpinCalculator(copy.deepcopy(model))
    assert np.isfinite(atoms.get_potential_energy())


def test_exchange_tensors_of_an_invariant_model_are_isotropic_and_match_all_orientations():
    """compute_exchange reads the calculator's symmetry: one state gives every coupling, and the tensors it
    returns equal those measured from three orientations (which see DMI and anisotropy if there were any)."""
    from ase_deepspin.analysis.exchange import compute_exchange
    from ase_deepspin.build import nio_afm

    class Unaware(DeepSpinCalculator):  # the same model, its symmetry not declared
        spin_rotation_invariant = False

    model = invariant_model()
    atoms = nio_afm(cubic=True)
    atoms.calc = DeepSpinCalculator(model)
    assert atoms.calc.spin_rotation_invariant
    fast = compute_exchange(atoms, (1, 1, 1))
    atoms.calc = Unaware(model)
    full = compute_exchange(atoms, (1, 1, 1), orientations="rotations")
    assert np.abs(full.dmi).max() < 1e-7 * np.abs(full.J).max()
    assert np.abs(full.J - fast.J).max() < 1e-6 * np.abs(full.J).max()
    assert np.all(fast.A == 0) and np.abs(fast.J[:, 0, 1]).max() == 0


def spin_orbit_model():
    """A spin-invariant model with the pseudo-atom branch of spin-orbit terms, its fitting drawn at random."""
    model = invariant_model(virtual_scale=[0.5, 0.0], spin_orbit=True)
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for net in model.spin_orbit.fitting:
            net[-1].weight.copy_(torch.randn(net[-1].weight.shape, generator=gen, dtype=torch.float64))
    return model


def test_spin_orbit_branch_keeps_time_reversal_and_the_contract_but_not_spin_rotations(nio):
    """With the branch, rotating the spins alone changes E (DMI and anisotropy can be learnt), S → −S does not,
    and forces, torques and stress stay derivatives of the energy."""
    from ase_deepspin.calculators import check_spin_calculator

    model = spin_orbit_model()
    assert model.config.symmetry == "time reversal"
    e0, f0, _, w0 = evaluate(model, nio)
    e1, f1, _, w1 = evaluate(model, nio, -nio.get_initial_magnetic_moments())
    assert abs(e1 - e0) <= 1e-12 * abs(e0) and np.abs(w1 + w0).max() <= 1e-11 * scale(w0)
    rot = Rotation.from_rotvec([0.4, -1.3, 2.2]).as_matrix()
    assert abs(evaluate(model, nio, nio.get_initial_magnetic_moments() @ rot.T)[0] - e0) > 1e-6
    check_spin_calculator(DeepSpinCalculator(model), nio, entries=8)
    assert not DeepSpinCalculator(model).spin_rotation_invariant


@needs_nio_data
def test_spin_orbit_branch_in_the_lammps_module_and_files(tmp_path):
    from test_deepmd_convert import nio_frames
    from test_torchscript import compare

    from ase_deepspin.io import load_model, save_model
    from ase_deepspin.io.torchscript import scripted_model

    model = spin_orbit_model()
    save_model(model, tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt")
    atoms = nio_frames(1)[0]
    result = compare(scripted_model(loaded), model, atoms, model.config.rcut + 1.2)
    for key in ("energy", "forces", "torques"):
        assert result[key] < 1e-10, (key, result[key])


def test_a_committee_of_invariant_models_keeps_the_symmetry(nio):
    """Members of one architecture make a committee; its mean and deviations are invariant too."""
    calc = DeepSpinCalculator([invariant_model(seed=3), invariant_model(seed=4)])
    atoms = nio.copy()
    atoms.calc = calc
    e0, deviation = atoms.get_potential_energy(), calc.get_property("torques_deviation", atoms)
    rot = Rotation.from_rotvec([0.3, 0.2, -1.0]).as_matrix()
    atoms.set_initial_magnetic_moments(nio.get_initial_magnetic_moments() @ rot.T)
    assert abs(atoms.get_potential_energy() - e0) <= 1e-12 * abs(e0)
    assert np.abs(calc.get_property("torques_deviation", atoms) - deviation).max() <= 1e-10 * deviation.max()
    assert deviation.max() > 0


@pytest.mark.parametrize("correlation_rcut", [None, 2.6])
@pytest.mark.parametrize("min_distance", [0.5, 2.2])  # 2.2 Å: the nearest Ni–O edges fall outside the tables
def test_fused_gated_kernels_equal_the_torch_path(nio, monkeypatch, correlation_rcut, min_distance):
    from ase_deepspin.model import fused

    model = compress_model(invariant_model(correlation_rcut=correlation_rcut), tolerance=1e-6,
                           min_distance=min_distance)
    calls = []
    apply = fused.FusedGatedContraction.apply
    monkeypatch.setattr(fused.FusedGatedContraction, "apply", lambda *args: calls.append(1) or apply(*args))
    kernels = evaluate(model, nio)
    assert len(calls) == 3  # the gated blocks Ni–Ni, Ni–O and O–Ni
    with fused.disabled():
        torch_path = evaluate(model, nio)
    assert len(calls) == 3
    assert abs(kernels[0] - torch_path[0]) < 1e-12 * abs(torch_path[0])
    for a, b in zip(kernels[1:], torch_path[1:]):
        assert np.abs(a - b).max() < 1e-11 * scale(b)


def test_fused_gated_kernels_in_float32_equal_the_torch_path(nio):
    """The kernels run their loops over M in the table's precision: float32 results stay float32-accurate."""
    from ase_deepspin.model import fused

    model = compress_model(invariant_model(correlation_rcut=2.6), tolerance=1e-6, min_distance=0.5)

    def in_float32():
        trial = nio.copy()
        trial.calc = calc = DeepSpinCalculator(model, dtype="float32")
        return trial.get_potential_energy(), trial.get_forces(), calc.get_magnetic_torques(trial)

    kernels = in_float32()
    with fused.disabled():
        torch_path = in_float32()
    reference = evaluate(model, nio)  # float64
    assert abs(kernels[0] - torch_path[0]) < 1e-6 * abs(torch_path[0])
    for a, b, exact in zip(kernels[1:], torch_path[1:], (reference[1], reference[3])):
        assert np.abs(a - b).max() < 1e-4 * scale(b)
        assert np.abs(a - exact).max() < 1e-4 * scale(exact)


def test_correlation_rcut_bounds_how_far_apart_spins_couple():
    """At a collinear state only B'B'ᵀ couples the turning of two spins that are not each other's
    neighbours (the gates' cosines are stationary there): none beyond 2·correlation_rcut."""
    from ase_deepspin.analysis.stability import spin_stability
    from ase_deepspin.build import nio_afm

    atoms = nio_afm(a=4.186, cubic=True)  # 32 atoms; Ni–Ni 5.92 Å (beyond rcut 5.6) has 2 images in the cell
    ni = np.nonzero(atoms.numbers == 28)[0]
    distances = atoms.get_distances(ni[0], ni, mic=True)
    far = ni[np.abs(distances - 4.186 * np.sqrt(2)) < 1e-6]
    assert len(far) > 0
    couplings = {}
    for radius in (None, 2.6):
        atoms.calc = DeepSpinCalculator(invariant_model(correlation_rcut=radius))
        hessian = spin_stability(atoms).hessian.reshape(len(ni), 2, len(ni), 2)
        couplings[radius] = np.abs(hessian[0][:, np.searchsorted(ni, far)]).max()
        scale_of = np.abs(hessian).max()
    assert couplings[None] > 1e-4 * scale_of
    assert couplings[2.6] < 1e-12 * scale_of


def test_correlation_rcut_is_refused_outside_its_range():
    for radius, descriptor in ((0.1, "spin_invariant"), (6.0, "spin_invariant"), (2.6, "pseudo_atom")):
        with pytest.raises(ValueError, match="correlation_rcut"):
            ModelConfig(type_map=["Ni", "O"], virtual_scale=[0.0 if descriptor != "pseudo_atom" else 1.0, 0.0],
                        magnetic=[True, False], descriptor=descriptor, correlation_rcut=radius)

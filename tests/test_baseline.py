"""The Heisenberg–Landau spin baseline: closed form, least-squares fit, training options, export."""

import numpy as np
import pytest
import torch
from ase import Atoms

from ase_deepspin import DeepSpinCalculator
from ase_deepspin.io import DeepMDFormatError, write_deepmd
from ase_deepspin.model.baseline import fit_spin_baseline
from conftest import NIO_DATA, needs_nio_data, small_model, with_random_baseline

BASELINE = {"n_basis": 6, "onsite_order": 3}


def network_silenced(model):
    """Zero the fitting nets' output layers: the network's energy is the constant bias, its gradients 0."""
    for net in model.fitting:
        net[-1].weight.data.zero_()
        net[-1].bias.data.zero_()
    return model


def switch(r, r_smth, r_cut):
    u = np.clip((r - r_smth) / (r_cut - r_smth), 0.0, 1.0)
    return 1.0 + u**3 * (-6.0 * u**2 + 15.0 * u - 10.0)


def test_dimer_energy_is_the_closed_form():
    model = network_silenced(with_random_baseline(small_model(spin_baseline=BASELINE)))
    base, cfg = model.baseline, model.config
    a = base.onsite[0].numpy()
    coeffs = 0.5 * (base.exchange + base.exchange.transpose(1, 2))[:, 0, 0].numpy()  # [2, n]
    centres, width = np.arange(1, 7) * cfg.rcut / 6, cfg.rcut / 6
    m = float(base.moment_ref[0])
    calc = DeepSpinCalculator(model)
    reference_energy = 2 * float(model.energy_bias[0])
    for r, theta, lengths in [(2.9, 0.3, (1.25, 1.1)), (4.2, 2.0, (1.3, 1.2)), (3.9, np.pi, (1.2, 1.2))]:
        dimer = Atoms("Ni2", positions=[[0, 0, 0], [r, 0, 0]], pbc=False)
        dimer.set_initial_magnetic_moments([[0, 0, lengths[0]],
                                            [lengths[1] * np.sin(theta), 0, lengths[1] * np.cos(theta)]])
        dimer.calc = calc
        phi = np.exp(-(((r - centres) / width) ** 2)) * switch(r, cfg.rcut_smth, cfg.rcut)
        j, k = coeffs @ phi
        deltas = np.array(lengths) - m
        onsite = sum((a * d ** np.arange(1, 4)).sum() for d in deltas)
        expected = onsite + (j + k * deltas.sum()) * np.cos(theta)
        assert dimer.get_potential_energy() - reference_energy == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_least_squares_fit_recovers_a_known_baseline(nio):
    """Torques of a known baseline are reproduced by the coefficients fitted to them, on new spins too."""
    from ase_deepspin.system import model_inputs

    truth = network_silenced(with_random_baseline(small_model(spin_baseline=BASELINE)))
    fitted = network_silenced(small_model(spin_baseline=BASELINE))
    types = np.array([0 if s == "Ni" else 1 for s in nio.get_chemical_symbols()])
    rng = np.random.default_rng(0)

    def frame(spins):
        inputs = model_inputs(truth, nio.positions, nio.cell.array, nio.pbc, types, spins)
        torques = truth(**inputs)["torques"].detach()
        return inputs | {"torques_label": torques, "magnetic": torch.as_tensor(types == 0)}

    base_spins = nio.get_initial_magnetic_moments()
    magnetic = base_spins.any(axis=1)

    def canted():
        spins = base_spins.copy()
        spins[magnetic] += rng.normal(scale=0.4, size=spins[magnetic].shape)
        return spins

    items = [frame(canted()) for _ in range(6)]
    # the fit centres the polynomials on the frames' mean moment, not the truth's: still exact
    result = fit_spin_baseline(fitted, items, ridge=1e-14)
    assert result["after"] < 1e-8 * result["before"]
    new = frame(canted())
    predicted = fitted(**{k: v for k, v in new.items() if k not in ("torques_label", "magnetic")})["torques"]
    assert torch.allclose(predicted, new["torques_label"], rtol=0, atol=1e-8 * float(new["torques_label"].abs().max()))


def test_deepmd_export_refuses_a_baseline(tmp_path):
    with pytest.raises(DeepMDFormatError, match="spin baseline"):
        write_deepmd(small_model(spin_baseline=BASELINE), tmp_path / "m.dp")


def test_unknown_baseline_option_is_named():
    with pytest.raises(ValueError, match="n_basiz"):
        small_model(spin_baseline={"n_basiz": 4})


@needs_nio_data
def test_excluded_frames_must_each_name_one_training_frame(tmp_path):
    from ase_deepspin.model import ModelConfig
    from ase_deepspin.training.config import TrainConfig
    from ase_deepspin.training.train import train

    cfg = TrainConfig(model=ModelConfig(type_map=["Ni", "O"], virtual_scale=[0.314, 0.0], rcut=4.0, rcut_smth=3.0,
                                        sel=[30, 30], neuron=[4, 8], axis_neuron=4, fitting_neuron=[8]),
                      systems=[str(NIO_DATA / "data_0")], numb_steps=1, n_validation=8,
                      exclude_frames=["set.000#"], output_dir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="exclude_frames"):
        train(cfg, progress=False, log=lambda *a: None)


def test_compression_keeps_the_baseline(nio):
    from ase_deepspin import compress_model

    model = with_random_baseline(small_model(spin_baseline=BASELINE))
    results = []
    for m in (model, compress_model(model)):
        calc = DeepSpinCalculator(m)
        calc.calculate(nio, ["energy", "forces", "magnetic_torques"])
        results.append(calc.results)
    plain, compressed = results
    assert compressed["energy"] == pytest.approx(plain["energy"], rel=1e-9)
    for key in ("forces", "magnetic_torques"):
        assert np.abs(compressed[key] - plain[key]).max() < 1e-6 * np.abs(plain[key]).max()


LANDAU = {"n_basis": 6, "onsite_order": 2, "form": "landau"}


@pytest.mark.parametrize("biquadratic", [False, True])
def test_landau_dimer_energy_is_the_closed_form_and_smooth_at_zero_moment(biquadratic):
    """E = Σ a_p |S|^{2p} + [J + K(|S_1|² + |S_2|²)] S_1·S_2 (+ B (S_1·S_2)²), its torques −∂E/∂S in closed
    form; the torque of a vanishing moment vanishes."""
    model = network_silenced(with_random_baseline(small_model(spin_baseline=LANDAU | {"biquadratic": biquadratic})))
    base, cfg = model.baseline, model.config
    a = base.onsite[0].numpy()
    coeffs = 0.5 * (base.exchange + base.exchange.transpose(1, 2))[:, 0, 0].numpy()
    assert len(coeffs) == (3 if biquadratic else 2)
    centres, width = np.arange(1, 7) * cfg.rcut / 6, cfg.rcut / 6
    calc = DeepSpinCalculator(model)
    reference_energy = 2 * float(model.energy_bias[0])
    for r, s1, s2 in [(2.9, [0, 0, 1.25], [0.3, 0, 1.0]), (3.7, [0.2, 0.1, 0.05], [-1.1, 0.4, 0.2])]:
        s1, s2 = np.array(s1), np.array(s2)
        dimer = Atoms("Ni2", positions=[[0, 0, 0], [r, 0, 0]], pbc=False)
        dimer.set_initial_magnetic_moments([s1, s2])
        dimer.calc = calc
        j, k, *b = coeffs @ (np.exp(-(((r - centres) / width) ** 2)) * switch(r, cfg.rcut_smth, cfg.rcut))
        b = b[0] if biquadratic else 0.0
        onsite = sum((a * (s @ s) ** np.arange(1, 3)).sum() for s in (s1, s2))
        expected = onsite + (j + k * (s1 @ s1 + s2 @ s2)) * (s1 @ s2) + b * (s1 @ s2) ** 2
        assert dimer.get_potential_energy() - reference_energy == pytest.approx(expected, rel=1e-12, abs=1e-12)
        torque_1 = -(2 * a[0] * s1 + 4 * a[1] * (s1 @ s1) * s1 + (j + k * (s1 @ s1 + s2 @ s2)) * s2
                     + 2 * k * (s1 @ s2) * s1 + 2 * b * (s1 @ s2) * s2)
        assert np.allclose(calc.get_property("magnetic_torques", dimer)[0], torque_1, rtol=1e-10, atol=1e-14)
    lone = Atoms("Ni", positions=[[0, 0, 0]], pbc=False)
    lone.calc = calc
    for length in (1e-1, 1e-3, 1e-6):
        spin = np.array([0.0, 0.6, 0.8]) * length
        lone.set_initial_magnetic_moments([spin])
        expected = -(2 * a[0] + 4 * a[1] * length**2) * spin  # −∂E/∂S, vanishing with S
        assert np.allclose(lone.calc.get_property("magnetic_torques", lone)[0], expected, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("form", [BASELINE, LANDAU | {"biquadratic": True}, BASELINE | {"biquadratic": True}])
def test_joint_fit_to_forces_and_torques_recovers_a_known_baseline(nio, form):
    """Forces and torques of a known baseline (either form, with or without biquadratic exchange), weighed
    relatively, are both reproduced by the joint fit."""
    from ase_deepspin.system import model_inputs

    truth = network_silenced(with_random_baseline(small_model(spin_baseline=form)))
    fitted = network_silenced(small_model(spin_baseline=form))
    types = np.array([0 if s == "Ni" else 1 for s in nio.get_chemical_symbols()])
    rng = np.random.default_rng(2)
    spins = nio.get_initial_magnetic_moments()
    magnetic = spins.any(axis=1)
    items = []
    for _ in range(4):
        canted = spins.copy()
        canted[magnetic] += rng.normal(scale=0.3, size=canted[magnetic].shape)
        positions = nio.positions + rng.normal(scale=0.05, size=nio.positions.shape)
        inputs = model_inputs(truth, positions, nio.cell.array, nio.pbc, types, canted)
        out = truth(**inputs)
        items.append(inputs | {"torques_label": out["torques"].detach(), "forces_label": out["forces"].detach(),
                               "magnetic": torch.as_tensor(types == 0)})
    result = fit_spin_baseline(fitted, items, ridge=1e-14, forces=True, relative_f=0.1, relative_fm=0.01)
    assert result["after"] < 1e-8 * result["before"]
    assert result["forces_after"] < 1e-8 * result["forces_before"]


def test_fit_keeps_the_onsite_term_bounded_below(nio):
    """Torques of an on-site term with a negative leading coefficient: the fit drops that order."""
    from ase_deepspin.system import model_inputs

    truth = network_silenced(with_random_baseline(small_model(spin_baseline=LANDAU)))
    truth.baseline.onsite[0] = torch.tensor([0.3, -0.05], dtype=truth.baseline.onsite.dtype)
    fitted = network_silenced(small_model(spin_baseline=LANDAU))
    types = np.array([0 if s == "Ni" else 1 for s in nio.get_chemical_symbols()])
    rng = np.random.default_rng(1)
    spins = nio.get_initial_magnetic_moments()
    magnetic = spins.any(axis=1)
    varied = [spins.copy() for _ in range(3)]
    for v in varied:
        v[magnetic] *= rng.uniform(0.5, 1.5, size=(magnetic.sum(), 1))

    def labelled():
        items = []
        for v in varied:
            inputs = model_inputs(truth, nio.positions, nio.cell.array, nio.pbc, types, v)
            items.append(inputs | {"torques_label": truth(**inputs)["torques"].detach(),
                                   "magnetic": torch.as_tensor(types == 0)})
        return items

    result = fit_spin_baseline(fitted, labelled(), ridge=1e-14)
    onsite = fitted.baseline.onsite[0]
    assert float(onsite[1]) == 0.0 and float(onsite[0]) > 0.0
    assert result["after"] > 1e-6 * result["before"]  # the truth itself is not bounded below: not reproducible
    truth.baseline.onsite[0, 1] = 0.05
    result = fit_spin_baseline(fitted, labelled(), ridge=1e-14)
    assert result["after"] < 1e-8 * result["before"]
    assert float(fitted.baseline.onsite[0, 1]) > 0.0


def test_held_out_systems_and_blocks():
    from ase_deepspin.io.frames import Frame, hold_out

    frames = [Frame(symbols=np.array(["Fe"]), positions=np.zeros((1, 3)), cell=np.eye(3), pbc=np.ones(3, bool),
                    spins=np.ones((1, 3)), source=f"/d/{name}/set.000#{k}") for name in ("a", "b") for k in range(5)]
    kept, held = hold_out(frames, ["a", "b#3:"])
    assert [f.source for f in held] == [f"/d/a/set.000#{k}" for k in range(5)] + ["/d/b/set.000#3", "/d/b/set.000#4"]
    assert len(kept) == 3
    with pytest.raises(ValueError, match="names no system"):
        hold_out(frames, ["c"])
    with pytest.raises(ValueError, match="range"):
        hold_out(frames, ["a#x"])

"""Shared fixtures: small seeded models with realistic statistics, real NiO frames."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ase_deepspin import DeepSpinModel, ModelConfig
from ase_deepspin.system import model_inputs

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
NIO_DATA = SHARED_DATA / "nio-deltaspin"
needs_nio_data = pytest.mark.skipif(not NIO_DATA.is_dir(), reason="../shared/data/nio-deltaspin not present")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # parallel test workers already fill the cores: more threads per worker would only contend
    torch.set_num_threads(1)


def small_model(seed: int = 3, dtype=torch.float64, **overrides) -> DeepSpinModel:
    """A seeded NiO-like model, small enough for finite differences, with statistics from data.

    Random weights are scaled up so the energy landscape has structure on the Å scale.
    """
    params = dict(type_map=["Ni", "O"], virtual_scale=[0.314, 0.0], rcut=4.5, rcut_smth=3.5, sel=[30, 30],
                  neuron=[6, 12, 24], axis_neuron=4, fitting_neuron=[16, 16], seed=seed)
    params.update(overrides)
    model = DeepSpinModel(ModelConfig(**params), dtype=dtype)
    from ase_deepspin.build import nio_afm

    atoms = nio_afm(repeat=(2, 2, 1))
    atoms.rattle(0.1, seed=seed)
    types = np.array([0 if s == "Ni" else 1 for s in atoms.get_chemical_symbols()])
    model.set_environment_statistics([model_inputs(model, atoms.positions, atoms.cell.array, atoms.pbc, types,
                                                   atoms.get_initial_magnetic_moments())])
    return model


def invariant_model(seed: int = 3, dtype=torch.float64, **overrides) -> DeepSpinModel:
    """:func:`small_model` with the descriptor of spin invariants, its spin gates drawn at random (a new
    model's start at zero) so that every spin path carries weight."""
    params = dict(descriptor="spin_invariant", virtual_scale=[0.0, 0.0], magnetic=[True, False], gate_neuron=[8])
    params.update(overrides)
    model = small_model(seed, dtype, **params)
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for gate in model.descriptor.gates:
            gate[-1].weight.copy_(torch.randn(gate[-1].weight.shape, generator=gen, dtype=dtype))
            gate[-1].bias.copy_(0.3 * torch.randn(gate[-1].bias.shape, generator=gen, dtype=dtype))
    return model


def with_random_baseline(model: DeepSpinModel, seed: int = 5) -> DeepSpinModel:
    """Give a model built with ``spin_baseline`` random coefficients of realistic size in place.

    On-site a_p ~ 0.1–1 eV/μB^p (the leading one positive), J ~ 0.1 eV, K ~ 0.3 eV/μB, B ~ 0.05, so the baseline
    shapes forces, torques and stress as much as the network does and contract tests see it.
    """
    base = model.baseline
    gen = torch.Generator().manual_seed(seed)
    base.moment_ref.copy_(torch.where(base.magnetic, torch.tensor(1.2, dtype=base.moment_ref.dtype), 0.0))
    onsite = torch.randn(base.onsite.shape, generator=gen, dtype=base.onsite.dtype) \
        * torch.tensor([0.1, 1.0, 1.0, 1.0][: base.onsite.shape[1]], dtype=base.onsite.dtype)
    if onsite.shape[1]:
        onsite[:, -1] = onsite[:, -1].abs()  # bounded below, as fits are kept
    base.onsite.copy_(onsite)
    exchange = torch.randn(base.exchange.shape, generator=gen, dtype=base.exchange.dtype)
    exchange[0] *= 0.1
    exchange[1] *= 0.3
    exchange[2:] *= 0.05  # biquadratic B, where the model has it
    base.exchange.copy_(exchange)
    return model


def count_calculations(calc) -> dict:
    """Make ``calc`` count its evaluations in the returned dict's ``"n"`` (reset it by assigning 0)."""
    calls = {"n": 0}
    original = calc.calculate

    def counting(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    calc.calculate = counting
    return calls


@pytest.fixture
def model():
    return small_model()


@pytest.fixture
def nio():
    """A rattled, spin-canted 16-atom NiO cell (triclinic), spins in μB."""
    from ase_deepspin.build import nio_afm

    atoms = nio_afm(repeat=(2, 2, 1))
    rng = np.random.default_rng(7)
    atoms.positions += rng.normal(scale=0.08, size=atoms.positions.shape)
    atoms.cell = atoms.cell.array @ (np.eye(3) + rng.normal(scale=0.01, size=(3, 3)))
    spins = atoms.get_initial_magnetic_moments()
    spins[spins.any(axis=1)] += rng.normal(scale=0.3, size=spins[spins.any(axis=1)].shape)
    atoms.set_initial_magnetic_moments(spins)
    return atoms


def minus_gradient(energy_of, values: np.ndarray, step: float, rows=None) -> np.ndarray:
    """Central differences of −E with respect to each entry of ``values`` [N, 3] (rows: which rows).

    ``energy_of(trial)`` returns the energy for a modified copy of ``values``.
    """
    result = np.zeros_like(values)
    for i in range(len(values)) if rows is None else rows:
        for k in range(3):
            trial = values.copy()
            trial[i, k] += step
            plus = energy_of(trial)
            trial[i, k] -= 2 * step
            result[i, k] = -(plus - energy_of(trial)) / (2 * step)
    return result

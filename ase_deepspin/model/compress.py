"""Compression of a model: its embedding nets replaced by quintic-spline tables.

The tables and how they are evaluated are described in :mod:`~ase_deepspin.model.tabulation`;
this module builds them for every embedding net of a model's descriptor
over the range of standardised radial entries that the model's neighbours can reach.
"""

from __future__ import annotations

import copy
from dataclasses import asdict

import torch

from .deepspin import DeepSpinModel, ModelConfig
from .descriptor import smooth_switch
from .tabulation import EmbeddingTable


def compress_model(model: DeepSpinModel, tolerance: float = 1e-8, min_distance: float = 0.5,
                   initial_step: float = 0.5) -> DeepSpinModel:
    """A copy of ``model`` whose embedding nets are tabulated (see :mod:`~ase_deepspin.model.tabulation`).

    Parameters
    ----------
    tolerance : largest deviation of a table from its net at the test points (units of G, absolute).
    min_distance : Å; the tables cover neighbours from this distance out to the cutoff (every
        x from the empty-neighbour value to that of ``min_distance``); closer neighbours are
        evaluated by the net itself.
    initial_step : starting knot spacing in x before adaptive refinement.

    Notes
    -----
    Tables are built in float64 from the nets; the copy has the dtype and device of ``model``.
    """
    cfg = model.config
    if not 0.0 < min_distance < cfg.rcut:
        raise ValueError(f"min_distance must lie in (0, rcut={cfg.rcut}) Å, got {min_distance}")
    if not tolerance > 0.0:
        raise ValueError(f"tolerance must be positive, got {tolerance}")
    source = copy.deepcopy(model).to(device="cpu", dtype=torch.float64)
    descriptor = source.descriptor
    tables = []
    for net, t, _ in descriptor.radial_nets():
        mean, std = descriptor.env_mean[t, 0], descriptor.env_std[t, 0]
        lower = float(-mean / std)  # every empty slot and every neighbour at r >= rcut
        radial = smooth_switch(torch.tensor(min_distance, dtype=torch.float64), cfg.rcut_smth, cfg.rcut)
        upper = float((radial / (min_distance + cfg.env_protection) - mean) / std)
        margin = 1e-3 * max(1.0, abs(lower))  # room for the rounding of x in float32
        tables.append(EmbeddingTable.from_net(net, lower - margin, upper, tolerance, initial_step))
    compression = {"tolerance": tolerance, "min_distance": min_distance, "n_knots": [len(t.knots) for t in tables]}
    compressed = DeepSpinModel(ModelConfig(**{**asdict(cfg), "compression": compression}))
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("descriptor.tables.")}
    state.update({f"descriptor.tables.{p}.{k}": v for p, t in enumerate(tables) for k, v in t.state_dict().items()})
    compressed.load_state_dict(state)
    compressed.provenance = {**model.provenance, "compression": {"tolerance": tolerance, "min_distance": min_distance}}
    return compressed.to(device=model.device, dtype=model.dtype)

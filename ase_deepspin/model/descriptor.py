"""The se_e2_a (DeepPot-SE) descriptor over real and pseudo-atom neighbours.

For a centre i and neighbour j at vector r (Å), the environment row is

    d_ij = s(r) * (1, x, y, z) / (r + p) ** (1, 2, 2, 2)

with the smooth switch s(r) (1 below ``rcut_smth``, 0 beyond ``rcut``, a quintic polynomial in
between) and the protection distance p (``env_protection``, Å). Rows are standardised with
per-centre-type mean and standard deviation, ``(d - mean) / std``. Embedding nets G, one per
(centre type, neighbour block), map the standardised radial entry to ``M = neuron[-1]``
features; the descriptor of i is

    T_i = sum_j d_ij^T G(d_ij[0]) / N_c              (4 x M)
    D_i = T_i^T T_i[:, :axis_neuron]                 (M x axis_neuron)

where ``N_c = sum(sel)`` counts every neighbour slot, filled or not. As in DeePMD-kit, an empty
slot is not masked: after standardisation it is the row ``-mean/std`` of a neighbour beyond the
cutoff, so it contributes a constant per (centre type, block) times the number of empty slots.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def smooth_switch(r: torch.Tensor, rcut_smth: float, rcut: float) -> torch.Tensor:
    """Switch s(r): 1 for r <= rcut_smth, 0 for r >= rcut, C2-continuous quintic in between."""
    u = ((r - rcut_smth) / (rcut - rcut_smth)).clamp(0.0, 1.0)
    return u * u * u * (-6.0 * u * u + 15.0 * u - 10.0) + 1.0


def environment_rows(vectors: torch.Tensor, rcut_smth: float, rcut: float, protection: float) -> torch.Tensor:
    """Unstandardised environment rows (s/r, s x/r², s y/r², s z/r²) of edge vectors.

    vectors: [E, 3] Å. Returns [E, 4] with units (1/Å, 1/Å, 1/Å, 1/Å).
    """
    r = torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)  # [E, 1]
    weight = smooth_switch(r, rcut_smth, rcut)
    inv = 1.0 / (r + protection)
    return torch.cat([weight * inv, weight * vectors * inv * inv], dim=-1)


class DenseLayer(nn.Module):
    """y = act(x W + b) [* timestep] [+ x or + (x, x)], DeePMD-kit's layer rule.

    The residual is added when the layer keeps its width (x) or doubles it (x concatenated with
    itself); ``timestep`` is a trainable per-neuron scale of the update (``resnet_dt``).
    """

    def __init__(self, n_in: int, n_out: int, *, activation: bool, resnet: bool, timestep: bool,
                 generator: torch.Generator, dtype: torch.dtype):
        super().__init__()
        std = 1.0 / math.sqrt(n_in + n_out)
        self.weight = nn.Parameter(torch.randn(n_in, n_out, generator=generator, dtype=dtype) * std)
        self.bias = nn.Parameter(torch.randn(n_out, generator=generator, dtype=dtype))
        self.timestep = (
            nn.Parameter(0.1 + 0.001 * torch.randn(n_out, generator=generator, dtype=dtype)) if timestep else None
        )
        self.activation = activation
        self.residual = resnet and n_out in (n_in, 2 * n_in)
        self.doubles = n_out == 2 * n_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.addmm(self.bias, x, self.weight)
        if self.activation:
            y = torch.tanh(y)
        if self.timestep is not None:
            y = y * self.timestep
        if self.residual:
            y = y + (torch.cat([x, x], dim=-1) if self.doubles else x)
        return y


def mlp(widths: list[int], *, timestep: bool, linear_output: bool, generator, dtype) -> nn.Sequential:
    """Residual tanh MLP through ``widths``; with ``linear_output`` the last layer is affine."""
    layers = []
    for k, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        last = k == len(widths) - 2
        if last and linear_output:
            layers.append(DenseLayer(n_in, n_out, activation=False, resnet=False, timestep=False,
                                     generator=generator, dtype=dtype))
        else:
            layers.append(DenseLayer(n_in, n_out, activation=True, resnet=True, timestep=timestep,
                                     generator=generator, dtype=dtype))
    return nn.Sequential(*layers)

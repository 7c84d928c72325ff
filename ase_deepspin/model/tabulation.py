"""Tabulated embedding nets ("compression", as DeePMD-kit's ``dp compress``).

An embedding net G maps the standardised radial entry x of an environment row to M features. Its
table stores G, G' and G'' (per feature) at knots x_0 < x_1 < ... < x_K; between two knots G is the
quintic Hermite interpolant of those six values, so the tabulated G is C2 (value, first and second
derivative continuous) and forces, torques and stress remain exact derivatives of the tabulated
energy. Knots are placed adaptively: starting from a coarse uniform grid, an interval is halved
until the interpolant matches the net to ``tolerance`` (absolute, in units of G) at test points
inside it; trained nets have sharp features near the neighbour shells of the training data and
smooth tails elsewhere, so this needs far fewer knots than a uniform grid of the same accuracy.

The table never materialises per-edge features. On an interval b of width h, with τ = (x − x_b)/h,

    G(x) = Σ_{l=0..5} w_l(τ, h) · C[3b + l]       (C rows: G_b, G'_b, G''_b, G_{b+1}, G'_{b+1}, G''_{b+1})

so the se_e2_a moment T_i = Σ_j d_jᵀ G(x_j) of a centre is Σ_c A_i[c]ᵀ C[c] with
A_i[c] = Σ_{j: c ∈ 3b_j..3b_j+5} w(τ_j) d_j: each edge scatters 6 × 4 numbers, and one matrix
product per (centre type, neighbour block) applies the coefficients (Ct · A, no [E, M] tensor).

Outside [x_0, x_K] (neighbours closer than the ``min_distance`` the table was built for) the net
itself is evaluated for those edges: results there are exact, only slower; never extrapolated.
"""

from __future__ import annotations

import torch
from torch import nn

# Quintic Hermite basis on τ ∈ [0, 1] as polynomial coefficients (rows: τ^0 .. τ^5; columns:
# value/first/second derivative at the left knot, then at the right knot).
_HERMITE = torch.tensor([
    [1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.5, 0.0, 0.0, 0.0],
    [-10.0, -6.0, -1.5, 10.0, -4.0, 0.5],
    [15.0, 8.0, 1.5, -15.0, 7.0, -1.0],
    [-6.0, -3.0, -0.5, 6.0, -3.0, 0.5],
], dtype=torch.float64)


def net_derivatives(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """G, dG/dx and d²G/dx² of a scalar-input embedding net at points x [K]; returns [K, 3, M].

    Propagates (value, first, second derivative) through DeePMD-kit's layer rule (see
    :class:`~ase_deepspin.model.descriptor.DenseLayer`): affine map, tanh, timestep, residual.
    """
    with torch.no_grad():
        y = x.reshape(-1, 1)
        dy, d2y = torch.ones_like(y), torch.zeros_like(y)
        for layer in net:
            z, dz, d2z = torch.addmm(layer.bias, y, layer.weight), dy @ layer.weight, d2y @ layer.weight
            if layer.activation:
                a = torch.tanh(z)
                slope = 1.0 - a * a
                z, dz, d2z = a, slope * dz, slope * d2z - 2.0 * a * slope * dz * dz
            if layer.timestep is not None:
                z, dz, d2z = z * layer.timestep, dz * layer.timestep, d2z * layer.timestep
            if layer.residual:
                repeat = 2 if layer.doubles else 1
                z, dz, d2z = z + y.repeat(1, repeat), dz + dy.repeat(1, repeat), d2z + d2y.repeat(1, repeat)
            y, dy, d2y = z, dz, d2z
    return torch.stack([y, dy, d2y], dim=1)


def hermite_weights(tau: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """Weights [E, 6] of the six knot coefficients (G, G', G'' left; G, G', G'' right) at τ ∈ [0, 1]."""
    powers = torch.stack([torch.ones_like(tau), tau, tau ** 2, tau ** 3, tau ** 4, tau ** 5], dim=-1)
    w = powers @ _HERMITE.to(tau)
    h = width.unsqueeze(-1)
    scale = torch.cat([torch.ones_like(h), h, h * h], dim=-1).repeat(1, 2)  # derivatives carry h, h²
    return w * scale


class EmbeddingTable(nn.Module):
    """Piecewise quintic Hermite table of one embedding net on [knots[0], knots[-1]].

    Buffers: ``knots`` [K + 1] (units of the standardised radial entry x), ``coefficients``
    [3 (K + 1), M] (G, G', G'' per knot) and ``max_error`` (largest deviation from the net found
    at the test points when the table was built).
    """

    def __init__(self, n_knots: int, width: int, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.register_buffer("knots", torch.zeros(n_knots, dtype=dtype))
        self.register_buffer("coefficients", torch.zeros(3 * n_knots, width, dtype=dtype))
        self.register_buffer("max_error", torch.zeros((), dtype=dtype))

    @classmethod
    def from_net(cls, net: nn.Module, lower: float, upper: float, tolerance: float = 1e-8,
                 initial_step: float = 0.1, max_knots: int = 20_000) -> "EmbeddingTable":
        """Tabulate ``net`` on [lower, upper] to ``tolerance`` by adaptive interval halving (fp64)."""
        if not upper > lower:
            raise ValueError(f"table range must have upper > lower, got [{lower}, {upper}]")
        net = net.double()
        n0 = max(int(round((upper - lower) / initial_step)), 1)
        knots = torch.linspace(lower, upper, n0 + 1, dtype=torch.float64)
        probe = torch.linspace(0.05, 0.95, 10, dtype=torch.float64)
        while True:
            table = cls._build(net, knots)
            left, width = knots[:-1], knots[1:] - knots[:-1]
            x = (left.unsqueeze(1) + probe * width.unsqueeze(1)).reshape(-1)
            with torch.no_grad():
                exact = net(x.unsqueeze(1))
            error = (table.evaluate(x) - exact).abs().amax(dim=1).reshape(len(width), -1).amax(dim=1)
            bad = error > tolerance
            if not bool(bad.any()):
                table.max_error.fill_(float(error.max()))
                return table
            if len(knots) + int(bad.sum()) > max_knots:
                raise ValueError(f"the embedding net needs more than {max_knots} knots for tolerance "
                                 f"{tolerance:g} on [{lower:.3f}, {upper:.3f}]; loosen the tolerance")
            knots = torch.sort(torch.cat([knots, left[bad] + 0.5 * width[bad]])).values

    @classmethod
    def _build(cls, net, knots):
        derivatives = net_derivatives(net, knots)  # [K + 1, 3, M]
        table = cls(len(knots), derivatives.shape[-1])
        table.knots.copy_(knots)
        table.coefficients.copy_(derivatives.reshape(-1, derivatives.shape[-1]))
        return table

    @property
    def lower(self) -> float:
        return float(self.knots[0])

    @property
    def upper(self) -> float:
        return float(self.knots[-1])

    def inside(self, x: torch.Tensor) -> torch.Tensor:
        """Mask of the points that the table covers."""
        return (x >= self.knots[0]) & (x <= self.knots[-1])

    def locate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Interval index [E] and Hermite weights [E, 6] of points inside the table."""
        last = len(self.knots) - 2
        interval = (torch.searchsorted(self.knots, x.detach().contiguous(), right=True) - 1).clamp(0, last)
        left = self.knots[interval]
        width = self.knots[interval + 1] - left
        return interval, hermite_weights((x - left) / width, width)

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        """Tabulated G at points x [E] inside the table, [E, M] (for tests and error checks)."""
        interval, w = self.locate(x)
        rows = 3 * interval.unsqueeze(-1) + torch.arange(6, device=x.device)  # [E, 6]
        return torch.einsum("el,elm->em", w, self.coefficients[rows])

    def moment(self, rows: torch.Tensor, rank: torch.Tensor, n_rank: int) -> torch.Tensor:
        """Σ_j d_jᵀ G(x_j) per centre, [n_rank, 4, M], for standardised rows [E, 4] inside the table.

        ``rank`` [E] numbers each edge's centre among the ``n_rank`` centres of this table's type.
        """
        interval, w = self.locate(rows[:, 0])
        n_cols = self.coefficients.shape[0]
        column = 3 * interval.unsqueeze(-1) + torch.arange(6, device=rows.device)  # [E, 6]
        target = (column * n_rank + rank.unsqueeze(-1)).reshape(-1)
        values = (w.unsqueeze(-1) * rows.unsqueeze(1)).reshape(-1, 4)  # [E * 6, 4]
        scattered = rows.new_zeros(n_cols * n_rank, 4).index_add(0, target, values)
        product = self.coefficients.T @ scattered.view(n_cols, n_rank * 4)  # [M, n_rank * 4]
        return product.view(-1, n_rank, 4).permute(1, 2, 0)


def compress_model(model, tolerance: float = 1e-8, min_distance: float = 0.5, initial_step: float = 0.5):
    """A copy of ``model`` whose embedding nets are tabulated (see the module docstring).

    tolerance : largest deviation of a table from its net at the test points (units of G, absolute).
    min_distance : Å; the tables cover neighbours from this distance out to the cutoff (every
        x from the empty-neighbour value to that of ``min_distance``); closer neighbours are
        evaluated by the net itself.
    initial_step : starting knot spacing in x before adaptive refinement.

    Tables are built in float64 from the nets; the copy has the dtype and device of ``model``.
    """
    import copy
    from dataclasses import asdict

    from .deepspin import DeepSpinModel, ModelConfig
    from .descriptor import smooth_switch

    cfg = model.config
    if not 0.0 < min_distance < cfg.rcut:
        raise ValueError(f"min_distance must lie in (0, rcut={cfg.rcut}) Å, got {min_distance}")
    if not tolerance > 0.0:
        raise ValueError(f"tolerance must be positive, got {tolerance}")
    source = copy.deepcopy(model).to(device="cpu", dtype=torch.float64)
    n_blocks = 2 * cfg.n_types
    tables = []
    for p, net in enumerate(source.embedding):
        mean, std = source.env_mean[p // n_blocks, 0], source.env_std[p // n_blocks, 0]
        lower = float(-mean / std)  # every empty slot and every neighbour at r >= rcut
        radial = smooth_switch(torch.tensor(min_distance, dtype=torch.float64), cfg.rcut_smth, cfg.rcut)
        upper = float((radial / (min_distance + cfg.env_protection) - mean) / std)
        margin = 1e-3 * max(1.0, abs(lower))  # room for the rounding of x in float32
        tables.append(EmbeddingTable.from_net(net, lower - margin, upper, tolerance, initial_step))
    compression = {"tolerance": tolerance, "min_distance": min_distance, "n_knots": [len(t.knots) for t in tables]}
    compressed = DeepSpinModel(ModelConfig(**{**asdict(cfg), "compression": compression}))
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("tables.")}
    state.update({f"tables.{p}.{k}": v for p, t in enumerate(tables) for k, v in t.state_dict().items()})
    compressed.load_state_dict(state)
    return compressed.to(device=model.device, dtype=model.dtype)

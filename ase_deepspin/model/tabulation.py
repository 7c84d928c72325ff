"""Tabulated embedding nets ("compression", as DeePMD-kit's ``dp compress``).

An embedding net G maps the standardised radial entry x of an environment row to M features. Its
table is a quintic spline: on knots x_0 < x_1 < ... < x_K, G(x) = Σ_c C[c] N_c(x) with the K + 5
quintic B-splines N_c of those knots (continued by five equal steps beyond each end) and
coefficients C [K + 5, M] fitted to the net by least squares. The tabulated G is C4 (value and
first four derivatives continuous), so forces, torques and stress remain exact derivatives of the
tabulated energy. Knots are placed adaptively: starting from a coarse uniform grid, an interval is
halved until the spline matches the net to ``tolerance`` (absolute, in units of G) at test points
inside it. Trained nets have sharp features near the neighbour shells of the training data and
smooth tails elsewhere, so this needs far fewer knots than a uniform grid of the same accuracy.
(Per degree of freedom a spline beats DeePMD-kit's piecewise quintic Hermite tables, which carry
G, G' and G'' at every knot: three times the columns for a similar error.)

The table never materialises per-edge features. On an interval b only N_b .. N_{b+5} are
non-zero; with τ = (x − x_b)/(x_{b+1} − x_b) their values are quintic polynomials w_l(τ) stored per
interval, so the se_e2_a contraction of a centre, T_i = Σ_j d_jᵀ G(x_j), is Σ_c A_i[c]ᵀ C[c] with
A_i[c] = Σ_{j: c = b_j + l} w_l(τ_j) d_j: each edge scatters 6 × 4 numbers, and one matrix product
per (centre type, neighbour block) applies the coefficients (no [E, M] tensor is formed). On
CPU, outside training, :mod:`~ase_deepspin.model.fused` computes the same sums (and their
gradient) in one compiled loop per table; the torch code here serves training and GPUs.

Outside [x_0, x_K] (neighbours closer than the ``min_distance`` the table was built for) the net
itself is evaluated for those edges: results there are exact, only slower; never extrapolated.
:func:`~ase_deepspin.model.compress.compress_model` builds the tables of a whole model.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

DEGREE = 5


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


def spline_knots(breaks: np.ndarray) -> np.ndarray:
    """Full knot vector: the interval ends plus five equal steps beyond each end."""
    lo, hi = breaks[1] - breaks[0], breaks[-1] - breaks[-2]
    return np.concatenate([breaks[0] - lo * np.arange(DEGREE, 0, -1), breaks, breaks[-1] + hi * np.arange(1, DEGREE + 1)])


def interval_polynomials(breaks: np.ndarray) -> np.ndarray:
    """[K, 6, 6]: on interval b, B-spline N_{b+l} = Σ_q P[b, l, q] τ^q for τ in [0, 1]."""
    from scipy.interpolate import BSpline

    knots = spline_knots(breaks)
    nodes = 0.5 - 0.5 * np.cos(np.pi * (np.arange(DEGREE + 1) + 0.5) / (DEGREE + 1))  # Chebyshev, well posed
    left, width = breaks[:-1], np.diff(breaks)
    x = (left[:, None] + width[:, None] * nodes).reshape(-1)
    design = BSpline.design_matrix(np.clip(x, breaks[0], breaks[-1]), knots, DEGREE).toarray()
    n = len(left)
    cols = np.arange(n)[:, None] + np.arange(DEGREE + 1)
    values = design.reshape(n, DEGREE + 1, -1)[np.arange(n)[:, None, None], np.arange(DEGREE + 1)[None, :, None],
                                               cols[:, None, :]]  # [K, node, l]
    vandermonde = nodes[:, None] ** np.arange(DEGREE + 1)  # [node, q]
    return np.linalg.solve(vandermonde, values).transpose(0, 2, 1)  # [K, l, q]


class EmbeddingTable(nn.Module):
    """Quintic-spline table of one embedding net on [knots[0], knots[-1]].

    Buffers: ``knots`` [K + 1] (interval ends, units of the standardised radial entry x),
    ``polynomials`` [K, 6, 6] (the six non-zero B-splines of each interval as polynomials in τ),
    ``coefficients`` [K + 5, M] and ``max_error`` (largest deviation from the net found at the test
    points when the table was built).
    """

    def __init__(self, n_knots: int, width: int, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.register_buffer("knots", torch.zeros(n_knots, dtype=dtype))
        self.register_buffer("polynomials", torch.zeros(n_knots - 1, DEGREE + 1, DEGREE + 1, dtype=dtype))
        self.register_buffer("coefficients", torch.zeros(n_knots + DEGREE - 1, width, dtype=dtype))
        self.register_buffer("max_error", torch.zeros((), dtype=dtype))

    @classmethod
    def from_net(cls, net: nn.Module, lower: float, upper: float, tolerance: float = 1e-8,
                 initial_step: float = 0.5, max_knots: int = 20_000) -> "EmbeddingTable":
        """Tabulate ``net`` on [lower, upper] to ``tolerance`` by adaptive interval halving (float64)."""
        from scipy.interpolate import make_lsq_spline

        if not upper > lower:
            raise ValueError(f"table range must have upper > lower, got [{lower}, {upper}]")

        def exact(x):
            return net_derivatives(net, torch.as_tensor(x, dtype=torch.float64))[:, 0].numpy()

        breaks = np.linspace(lower, upper, max(int(round((upper - lower) / initial_step)), 2) + 1)
        samples = (np.arange(8) + 0.5) / 8
        probes = np.linspace(0.03, 0.97, 11)
        while True:
            left, width = breaks[:-1], np.diff(breaks)
            x = np.concatenate([breaks, (left[:, None] + width[:, None] * samples).reshape(-1)])
            x.sort()
            spline = make_lsq_spline(x, exact(x), spline_knots(breaks), k=DEGREE)
            test = (left[:, None] + width[:, None] * probes).reshape(-1)
            error = np.abs(spline(test) - exact(test)).max(axis=1).reshape(len(width), -1).max(axis=1)
            bad = error > tolerance
            if not bad.any():
                break
            if len(breaks) + int(bad.sum()) > max_knots:
                raise ValueError(f"the embedding net needs more than {max_knots} knots for tolerance "
                                 f"{tolerance:g} on [{lower:.3f}, {upper:.3f}]; loosen the tolerance")
            breaks = np.sort(np.concatenate([breaks, left[bad] + 0.5 * width[bad]]))
        table = cls(len(breaks), spline.c.shape[-1])
        table.knots.copy_(torch.from_numpy(breaks))
        table.polynomials.copy_(torch.from_numpy(interval_polynomials(breaks)))
        table.coefficients.copy_(torch.from_numpy(spline.c))
        table.max_error.fill_(float(error.max()))
        return table

    def horner_coefficients(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per power q, contiguous [K, 6] coefficients of the weights (q = 0..5) and of dw/dτ (q = 0..4)."""
        key = (self.polynomials.data_ptr(), self.polynomials.dtype, self.polynomials.device,
               self.polynomials._version)
        if getattr(self, "_horner_key", None) != key:
            by_power = self.polynomials.permute(2, 0, 1)  # [q, K, l]
            self._horner = ([c.contiguous() for c in by_power],
                            [q * by_power[q].contiguous() for q in range(1, DEGREE + 1)])
            self._horner_key = key
        return self._horner

    @property
    def lower(self) -> float:
        return float(self.knots[0])

    @property
    def upper(self) -> float:
        return float(self.knots[-1])

    def inside(self, x: torch.Tensor) -> torch.Tensor:
        """Mask of the points that the table covers."""
        return (x >= self.knots[0]) & (x <= self.knots[-1])

    def weights(self, interval: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """Values [E, 6] of the B-splines N_{b+l}, l = 0..5, on interval b at τ ∈ [0, 1]."""
        powers = torch.stack([torch.ones_like(tau), tau, tau * tau, tau ** 3, tau ** 4, tau ** 5], dim=-1)
        return torch.einsum("eq,elq->el", powers, self.polynomials[interval])

    def locate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Interval index [E] and B-spline weights [E, 6] of points inside the table."""
        last = len(self.knots) - 2
        interval = (torch.searchsorted(self.knots, x.detach().contiguous(), right=True) - 1).clamp(0, last)
        left = self.knots[interval]
        return interval, self.weights(interval, (x - left) / (self.knots[interval + 1] - left))

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        """Tabulated G at points x [E] inside the table, [E, M] (twice differentiable, TorchScript-compatible)."""
        interval, w = self.locate(x)
        rows = interval.unsqueeze(-1) + torch.arange(6, device=x.device)  # [E, 6] (DEGREE + 1, for TorchScript)
        return torch.einsum("el,elm->em", w, self.coefficients[rows])

    def contraction(self, rows: torch.Tensor, rank: torch.Tensor, n_rank: int, twice_differentiable: bool = False):
        """Σ_j d_jᵀ G(x_j) per centre, [n_rank, 4, M], for standardised rows [E, 4] inside the table.

        ``rank`` [E] numbers each edge's centre among the ``n_rank`` centres of this table's type.
        By default a fused first-derivative rule is used (faster); ``twice_differentiable`` builds
        the result from plain autograd operations instead, so that derivatives can be differentiated
        again (training on forces, Hessian products).
        """
        if not twice_differentiable:
            return _TableContraction.apply(rows, rank, n_rank, self)
        return self.spline_contraction(rows, rank, n_rank)

    def spline_contraction(self, rows: torch.Tensor, rank: torch.Tensor, n_rank: int) -> torch.Tensor:
        """:meth:`contraction` from plain autograd operations (twice differentiable; TorchScript-compatible)."""
        interval, w = self.locate(rows[:, 0])
        target = spline_targets(interval, rank, n_rank)
        values = (w.unsqueeze(-1) * rows.unsqueeze(1)).reshape(-1, 4)  # [E * 6, 4]
        n_cols = self.coefficients.shape[0]
        scattered = rows.new_zeros(n_cols * n_rank, 4).index_add(0, target, values)
        product = self.coefficients.T @ scattered.view(n_cols, n_rank * 4)  # [M, n_rank * 4]
        return product.view(-1, n_rank, 4).permute(1, 2, 0)


def spline_targets(interval: torch.Tensor, rank: torch.Tensor, n_rank: int) -> torch.Tensor:
    """Rows of the scattered [n_cols * n_rank, 4] matrix that each edge's six weights go to."""
    # the DEGREE + 1 = 6 non-zero B-splines, as a literal: TorchScript cannot read module-level ints
    column = interval.unsqueeze(-1) + torch.arange(6, device=interval.device)  # [E, 6]
    return (column * n_rank + rank.unsqueeze(-1)).reshape(-1)


class _TableContraction(torch.autograd.Function):
    """T = Σ_j rows_jᵀ G(x_j) with a hand-written backward (rows [E, 4] → T [n_rank, 4, M]).

    With w_l the spline weights and Q = C · ∂L/∂T evaluated at each edge's six columns,
    ∂L/∂rows_j = Σ_l w_l Q_jl, plus (Σ_l w_l' Q_jl · rows_j) on x_j = rows_j[0]: one matrix
    product and one gather instead of autograd's chain through every elementwise step.
    """

    @staticmethod
    def forward(ctx, rows, rank, n_rank, table):
        with torch.no_grad():
            x = rows[:, 0].contiguous()
            last = len(table.knots) - 2
            interval = (torch.searchsorted(table.knots, x, right=True) - 1).clamp(0, last)
            left = table.knots[interval]
            width = table.knots[interval + 1] - left
            tau = (x - left).div_(width).unsqueeze(-1)
            # Horner on gathered [E, 6] rows: cheaper than a batched [E, 2, 6] x [E, 6, 6] product
            value_coeffs, slope_coeffs = table.horner_coefficients()
            w = value_coeffs[DEGREE].index_select(0, interval)
            for q in range(DEGREE - 1, -1, -1):
                w = torch.addcmul(value_coeffs[q].index_select(0, interval), w, tau)
            dw = slope_coeffs[DEGREE - 1].index_select(0, interval)
            for q in range(DEGREE - 2, -1, -1):
                dw = torch.addcmul(slope_coeffs[q].index_select(0, interval), dw, tau)
            dw = dw.div_(width.unsqueeze(-1))  # d/dx
            target = spline_targets(interval, rank, n_rank)
            n_cols = table.coefficients.shape[0]
            values = (w.unsqueeze(-1) * rows.unsqueeze(1)).reshape(-1, 4)
            scattered = rows.new_zeros(n_cols * n_rank, 4).index_add_(0, target, values)
            product = table.coefficients.T @ scattered.view(n_cols, n_rank * 4)
        ctx.save_for_backward(rows, w, dw, target, table.coefficients)
        ctx.n_rank = n_rank
        return product.view(-1, n_rank, 4).permute(1, 2, 0)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        rows, w, dw, target, coefficients = ctx.saved_tensors
        n_rank = ctx.n_rank
        per_column = coefficients @ grad.permute(2, 0, 1).reshape(coefficients.shape[1], n_rank * 4)
        q = per_column.view(-1, 4).index_select(0, target).view(-1, DEGREE + 1, 4)  # [E, 6, 4]
        grad_rows = torch.bmm(w.unsqueeze(1), q).squeeze(1)  # Σ_l w_l Q_jl
        slope = torch.bmm(dw.unsqueeze(1), q).squeeze(1)  # Σ_l w_l' Q_jl
        grad_rows[:, 0] += (slope * rows).sum(-1)
        return grad_rows, None, None, None

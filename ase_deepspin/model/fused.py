"""Fused CPU kernels (numba) for the se_e2_a contraction of tabulated embedding nets, plain and gated.

For one embedding table (centre type t, neighbour block b) the contraction of centre i is
T_i = Σ_j d_jᵀ G(d_j[0]) with d_j the standardised environment row of edge vector v_j (see
:mod:`~ase_deepspin.model.descriptor`) and G the quintic-spline table of
:mod:`~ase_deepspin.model.tabulation`, so that T_i = A_iᵀ C with A_i[c] = Σ_j w_l(τ_j) d_j
summed over the six spline columns c = b_j + l that edge j touches.

In plain torch each stage (norm, switch, standardisation, interval search, spline weights, the
scatter into A) is a separate pass over all edges that writes an [E, ...] intermediate, and
autograd walks them back one by one. Here one loop over centres computes A straight from the
edge vectors, and one loop computes ∂L/∂v_j from Q = ∂L/∂T Cᵀ by the chain rule written out:
edges are read twice in all and nothing per edge is stored. The result is the same function as
the torch path (to rounding), with first derivatives only: training, which differentiates forces
again, uses the torch path. Both loops run serially on small inputs and in parallel on large ones
(:mod:`~ase_deepspin.threads`).

The gated blocks of the spin-invariant descriptor (:mod:`~ase_deepspin.model.spin_invariant`), where
each edge's radial row is multiplied by its own gate, g_j = G(d_j0) ⊙ (1 + s_j Γ_j), cannot use the
column trick: :class:`FusedGatedContraction` evaluates G per edge from the table and accumulates A,
the spin vectors B and B' in one loop, and its gradient loop returns ∂L/∂v, ∂L/∂Γ and ∂L/∂m (the gate
net itself stays in torch). Both loops are compiled with ``fastmath`` so that the sums over the M
columns vectorise (reassociation only changes rounding), and run those sums in the table's precision:
for float32 models twice the SIMD width of float64 (measured on the grain boundary: the two gated
loops from 0.55 to 0.32 s per call).

On GPUs the torch path runs.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from functools import partial
from contextvars import ContextVar

import numpy as np
import torch
from numba import njit, prange

from ..threads import Kernel

DEGREE = 5
_enabled = ContextVar("fused_kernels", default=True)


@contextmanager
def disabled():
    """Inside the block, tabulated contractions are evaluated by the torch path (for comparisons and timings)."""
    token = _enabled.set(False)
    try:
        yield
    finally:
        _enabled.reset(token)


def usable(tensor: torch.Tensor, twice_differentiable: bool) -> bool:
    """Whether the fused kernels can evaluate a contraction on ``tensor``'s device and dtype."""
    return (_enabled.get() and not twice_differentiable and tensor.device.type == "cpu"
            and tensor.dtype in (torch.float32, torch.float64))


@njit(cache=True, inline="always")
def _switch(dist, smth, cut):
    """Quintic switch of :func:`~ase_deepspin.model.descriptor.smooth_switch` and its r-derivative."""
    u = (dist - smth) / (cut - smth)
    if u <= 0.0:
        return 1.0, 0.0
    if u >= 1.0:
        return 0.0, 0.0
    return u * u * u * (-6.0 * u * u + 15.0 * u - 10.0) + 1.0, u * u * (-30.0 * u * u + 60.0 * u - 30.0) / (cut - smth)


@njit(cache=True, inline="always")
def _environment(vx, vy, vz, geometry, mean, inv_std):
    """Standardised row (d0..d3) of one edge vector, and the distance, switch and its derivative."""
    rcut_smth, rcut, protection = geometry[0], geometry[1], geometry[2]
    dist = math.sqrt(vx * vx + vy * vy + vz * vz)
    switch, slope = _switch(dist, rcut_smth, rcut)
    inv = 1.0 / (dist + protection)
    radial = switch * inv
    angular = radial * inv
    d0 = (radial - mean[0]) * inv_std[0]
    d1 = (angular * vx - mean[1]) * inv_std[1]
    d2 = (angular * vy - mean[2]) * inv_std[2]
    d3 = (angular * vz - mean[3]) * inv_std[3]
    return d0, d1, d2, d3, dist, switch, slope, inv


@njit(cache=True, inline="always")
def _locate(knots, x):
    """Knot interval b holding x (inside the table), its width and τ = (x − knots[b]) / width."""
    lo, hi = 0, knots.shape[0] - 2
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if knots[mid] <= x:
            lo = mid
        else:
            hi = mid - 1
    width = knots[lo + 1] - knots[lo]
    return lo, width, (x - knots[lo]) / width


@njit(cache=True, inline="always")
def _spline_weight(polynomials, b, col, tau):
    """B-spline N_{b+col} on interval b at τ, and its τ-derivative (Horner)."""
    w = polynomials[b, col, DEGREE]
    dw = DEGREE * w
    for q in range(DEGREE - 1, 0, -1):
        w = w * tau + polynomials[b, col, q]
        dw = dw * tau + q * polynomials[b, col, q]
    return w * tau + polynomials[b, col, 0], dw


@njit(cache=True, inline="always")
def _radial_row(coefficients, polynomials, b, tau, radial, radial_slope, weights):
    """G(x) [M] on knot interval b at τ (Σ over the six B-splines touching b) and, if ``radial_slope``
    has M entries, its τ-derivative; ``weights`` [12] is scratch in the table's precision, so that the
    loops over M run in it (float32 tables: twice the SIMD width)."""
    slope = radial_slope.shape[0] > 0
    for col in range(DEGREE + 1):
        w, dw = _spline_weight(polynomials, b, col, tau)
        weights[col] = w
        weights[DEGREE + 1 + col] = dw
    radial[:] = 0.0
    for col in range(DEGREE + 1):
        w = weights[col]
        for m in range(radial.shape[0]):
            radial[m] += w * coefficients[b + col, m]
    if slope:
        radial_slope[:] = 0.0
        for col in range(DEGREE + 1):
            dw = weights[DEGREE + 1 + col]
            for m in range(radial.shape[0]):
                radial_slope[m] += dw * coefficients[b + col, m]


@Kernel
def _contraction_kernel(vectors, start, knots, polynomials, geometry, mean, inv_std, scattered, outside):
    """A[r, k, c] += w_l(τ) d_k over the edges of each centre r (edges start[r]..start[r+1])."""
    lower, upper = knots[0], knots[knots.shape[0] - 1]
    for r in prange(start.shape[0] - 1):
        for e in range(start[r], start[r + 1]):
            d0, d1, d2, d3, _, _, _, _ = _environment(vectors[e, 0], vectors[e, 1], vectors[e, 2],
                                                      geometry, mean, inv_std)
            if not (d0 >= lower and d0 <= upper):
                outside[e] = True
                continue
            b, _, tau = _locate(knots, d0)
            for col in range(DEGREE + 1):
                w, _ = _spline_weight(polynomials, b, col, tau)
                scattered[r, 0, b + col] += w * d0
                scattered[r, 1, b + col] += w * d1
                scattered[r, 2, b + col] += w * d2
                scattered[r, 3, b + col] += w * d3


@Kernel
def _contraction_gradient_kernel(vectors, start, knots, polynomials, geometry, mean, inv_std, q_rows, outside,
                            grad_vectors):
    """∂L/∂v_e from Q[r, k, c] = Σ_m ∂L/∂T[r, k, m] C[c, m], by the chain rule through the row."""
    for r in prange(start.shape[0] - 1):
        for e in range(start[r], start[r + 1]):
            if outside[e]:
                grad_vectors[e, 0] = grad_vectors[e, 1] = grad_vectors[e, 2] = 0.0
                continue
            vx, vy, vz = vectors[e, 0], vectors[e, 1], vectors[e, 2]
            d0, d1, d2, d3, dist, switch, slope, inv = _environment(vx, vy, vz, geometry, mean, inv_std)
            b, width, tau = _locate(knots, d0)
            g0 = g1 = g2 = g3 = gx = 0.0
            for col in range(DEGREE + 1):
                w, dw = _spline_weight(polynomials, b, col, tau)
                c = b + col
                q0, q1, q2, q3 = q_rows[r, 0, c], q_rows[r, 1, c], q_rows[r, 2, c], q_rows[r, 3, c]
                g0 += w * q0
                g1 += w * q1
                g2 += w * q2
                g3 += w * q3
                gx += dw * (d0 * q0 + d1 * q1 + d2 * q2 + d3 * q3)
            g0 += gx / width  # the table's argument is d0
            # back through the standardisation and e = s/(r+p) · (1, v/(r+p))
            ge0, ge1, ge2, ge3 = g0 * inv_std[0], g1 * inv_std[1], g2 * inv_std[2], g3 * inv_std[3]
            angular = switch * inv * inv
            radial_slope = slope * inv - switch * inv * inv  # d(s/(r+p))/dr
            angular_slope = slope * inv * inv - 2.0 * switch * inv * inv * inv  # d(s/(r+p)²)/dr
            along = (ge0 * radial_slope + (ge1 * vx + ge2 * vy + ge3 * vz) * angular_slope) / dist
            grad_vectors[e, 0] = ge1 * angular + along * vx
            grad_vectors[e, 1] = ge2 * angular + along * vy
            grad_vectors[e, 2] = ge3 * angular + along * vz


class FusedContraction(torch.autograd.Function):
    """T [n_rank, 4, M] of one table from edge vectors [E, 3] grouped by centre (see the module docstring).

    ``start`` [n_rank + 1] (int64) delimits each centre's edges; ``constants`` holds float64 NumPy
    arrays: ``knots``, ``polynomials`` [K, 6, 6], ``geometry`` (rcut_smth, rcut, protection),
    ``mean`` and ``inv_std`` [4]. Returns T and a mask of the edges outside the table (left out of
    T, to be evaluated by the net).
    """

    @staticmethod
    def forward(ctx, vectors, start, coefficients, constants):
        vectors = vectors.detach().contiguous()
        n_rank, n_cols = len(start) - 1, coefficients.shape[0]
        scattered = vectors.new_zeros(n_rank, 4, n_cols)
        outside = torch.zeros(len(vectors), dtype=torch.bool)
        _contraction_kernel(n_rank, vectors.numpy(), start.numpy(), constants["knots"], constants["polynomials"],
                       constants["geometry"], constants["mean"], constants["inv_std"], scattered.numpy(),
                       outside.numpy())
        contraction = (scattered.view(n_rank * 4, n_cols) @ coefficients).view(n_rank, 4, -1)
        ctx.save_for_backward(vectors, start, coefficients, outside)
        ctx.constants = constants
        ctx.mark_non_differentiable(outside)
        return contraction, outside

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad, _):
        vectors, start, coefficients, outside = ctx.saved_tensors
        c = ctx.constants
        n_rank = len(start) - 1
        q_rows = (grad.reshape(n_rank * 4, -1) @ coefficients.T).view(n_rank, 4, -1)
        grad_vectors = torch.empty_like(vectors)
        _contraction_gradient_kernel(n_rank, vectors.numpy(), start.numpy(), c["knots"], c["polynomials"],
                                c["geometry"], c["mean"], c["inv_std"], q_rows.numpy(), outside.numpy(),
                                grad_vectors.numpy())
        return grad_vectors, None, None, None


def table_constants(table, mean: torch.Tensor, std: torch.Tensor, geometry: tuple[float, float, float]) -> dict:
    """float64 NumPy constants of one table for :class:`FusedContraction` (cached on the table)."""
    key = (table.knots._version, table.polynomials._version, table.knots.dtype, tuple(mean.tolist()),
           tuple(std.tolist()), geometry)
    cached = getattr(table, "_fused_constants", None)
    if cached is None or cached[0] != key:
        constants = {"knots": table.knots.detach().double().numpy().copy(),
                     "polynomials": table.polynomials.detach().double().numpy().copy(),
                     "geometry": np.asarray(geometry, dtype=np.float64),
                     "mean": mean.detach().double().numpy().copy(),
                     "inv_std": 1.0 / std.detach().double().numpy()}
        table._fused_constants = cached = (key, constants)
    return cached[1]


# ------------------------------------------------------------------ gated blocks of the spin-invariant descriptor
@partial(Kernel, fastmath=True)
def _gated_kernel(vectors, start, knots, polynomials, coefficients, geometry, mean, inv_std, near, gate, moments,
                  contraction, spin_vectors, near_vectors, outside):
    """Per centre r: A[r] = Σ_j d_jᵀ g_j, B[r] = Σ_j s_j g_j[:a] ⊗ m_j and B'[r] (also switched by s'_j), with
    g_j = G(d_j0) ⊙ (1 + s_j Γ_j) (Γ = ``gate`` [E, M]); a = B's first dimension.

    Per-edge scalars are computed in float64 and cast to the table's precision (through ``scalars``)
    before the loops over M, which then stay in that precision."""
    lower, upper = knots[0], knots[knots.shape[0] - 1]
    width, axis = coefficients.shape[1], spin_vectors.shape[1]
    for r in prange(start.shape[0] - 1):
        radial = np.empty(width, dtype=coefficients.dtype)
        no_slope = np.empty(0, dtype=coefficients.dtype)
        weights = np.empty(2 * DEGREE + 2, dtype=coefficients.dtype)
        scalars = np.empty(6, dtype=coefficients.dtype)
        for e in range(start[r], start[r + 1]):
            d0, d1, d2, d3, dist, s, _, _ = _environment(vectors[e, 0], vectors[e, 1], vectors[e, 2],
                                                         geometry, mean, inv_std)
            if not (d0 >= lower and d0 <= upper):
                outside[e] = True
                continue
            sn, _ = _switch(dist, near[0], near[1])
            b, _, tau = _locate(knots, d0)
            _radial_row(coefficients, polynomials, b, tau, radial, no_slope, weights)
            scalars[0], scalars[1], scalars[2], scalars[3], scalars[4], scalars[5] = d0, d1, d2, d3, s, s * sn
            c0, c1, c2, c3, cs, csn = scalars[0], scalars[1], scalars[2], scalars[3], scalars[4], scalars[5]
            for m in range(width):
                g = radial[m] + cs * radial[m] * gate[e, m]
                contraction[r, 0, m] += c0 * g
                contraction[r, 1, m] += c1 * g
                contraction[r, 2, m] += c2 * g
                contraction[r, 3, m] += c3 * g
            for x in range(3):
                sx, snx = cs * moments[e, x], csn * moments[e, x]
                for m in range(axis):
                    g = radial[m] + cs * radial[m] * gate[e, m]
                    spin_vectors[r, m, x] += sx * g
                    near_vectors[r, m, x] += snx * g


@partial(Kernel, fastmath=True)  # lets the sums over the M columns vectorise (reassociated: round-off only)
def _gated_gradient_kernel(vectors, start, knots, polynomials, coefficients, geometry, mean, inv_std, near, gate,
                           moments, q_contraction, q_spin, q_near, grad_vectors, grad_gate, grad_moments):
    """∂L/∂v_e, ∂L/∂Γ_e and ∂L/∂m_e from ∂L/∂A, ∂L/∂B, ∂L/∂B' (the chain rule of :func:`_gated_kernel`);
    the loops over M run in the table's precision, as there."""
    width, axis = coefficients.shape[1], q_spin.shape[1]
    for r in prange(start.shape[0] - 1):
        radial = np.empty(width, dtype=coefficients.dtype)
        radial_slope = np.empty(width, dtype=coefficients.dtype)
        h = np.empty(width, dtype=coefficients.dtype)
        dg = np.empty(width, dtype=coefficients.dtype)
        weights = np.empty(2 * DEGREE + 2, dtype=coefficients.dtype)
        scalars = np.empty(8, dtype=coefficients.dtype)
        qa = q_contraction[r]
        for e in range(start[r], start[r + 1]):
            vx, vy, vz = vectors[e, 0], vectors[e, 1], vectors[e, 2]
            d0, d1, d2, d3, dist, s, slope, inv = _environment(vx, vy, vz, geometry, mean, inv_std)
            sn, slope_n = _switch(dist, near[0], near[1])
            b, span, tau = _locate(knots, d0)
            _radial_row(coefficients, polynomials, b, tau, radial, radial_slope, weights)
            scalars[0], scalars[1], scalars[2], scalars[3], scalars[4], scalars[5] = d0, d1, d2, d3, s, sn
            scalars[6], scalars[7] = 1.0, 0.0
            c0, c1, c2, c3, cs, csn, one, zero = (scalars[0], scalars[1], scalars[2], scalars[3], scalars[4],
                                                  scalars[5], scalars[6], scalars[7])
            mx, my, mz = moments[e, 0], moments[e, 1], moments[e, 2]
            for m in range(width):
                h[m] = one + cs * gate[e, m]
                dg[m] = c0 * qa[0, m] + c1 * qa[1, m] + c2 * qa[2, m] + c3 * qa[3, m]  # ∂L/∂g
            g_s = g_sn = zero
            gmx = gmy = gmz = zero
            for m in range(axis):  # B and B' hold the first a columns of g
                g_m = radial[m] * h[m]
                qbx = q_spin[r, m, 0] + csn * q_near[r, m, 0]
                qby = q_spin[r, m, 1] + csn * q_near[r, m, 1]
                qbz = q_spin[r, m, 2] + csn * q_near[r, m, 2]
                u = qbx * mx + qby * my + qbz * mz  # ∂L/∂(s g)
                dg[m] += cs * u
                g_s += u * g_m
                g_sn += cs * g_m * (q_near[r, m, 0] * mx + q_near[r, m, 1] * my + q_near[r, m, 2] * mz)
                gmx += cs * g_m * qbx
                gmy += cs * g_m * qby
                gmz += cs * g_m * qbz
            grad_moments[e, 0] += gmx
            grad_moments[e, 1] += gmy
            grad_moments[e, 2] += gmz
            g0 = g1 = g2 = g3 = g_arg = zero
            for m in range(width):
                grad_gate[e, m] = dg[m] * radial[m] * cs
                g_m = radial[m] * h[m]
                g0 += qa[0, m] * g_m
                g1 += qa[1, m] * g_m
                g2 += qa[2, m] * g_m
                g3 += qa[3, m] * g_m
                g_s += dg[m] * radial[m] * gate[e, m]
                g_arg += dg[m] * h[m] * radial_slope[m]
            g0 += g_arg / span  # the table's argument is d0
            ge0, ge1, ge2, ge3 = g0 * inv_std[0], g1 * inv_std[1], g2 * inv_std[2], g3 * inv_std[3]
            angular = s * inv * inv
            radial_r = slope * inv - s * inv * inv  # d(s/(r+p))/dr
            angular_r = slope * inv * inv - 2.0 * s * inv * inv * inv  # d(s/(r+p)²)/dr
            along = (ge0 * radial_r + (ge1 * vx + ge2 * vy + ge3 * vz) * angular_r + g_s * slope
                     + g_sn * slope_n) / dist
            grad_vectors[e, 0] = ge1 * angular + along * vx
            grad_vectors[e, 1] = ge2 * angular + along * vy
            grad_vectors[e, 2] = ge3 * angular + along * vz


class FusedGatedContraction(torch.autograd.Function):
    """A [n_rank, 4, M], B and B' [n_rank, a, 3] of one gated block of the spin-invariant descriptor.

    Inputs: edge vectors [E, 3] (Å) grouped by centre (``start`` [n_rank + 1]), the gate values Γ
    [E, M], the neighbours' scaled moments m_j [E, 3] (zero rows for non-magnetic neighbours), the
    table's ``coefficients`` [n_cols, M], ``constants`` of :func:`table_constants` and ``near``
    (float64 [2]: start and end of the correlation switch s', Å); ``axis`` a. Returns A, B, B' and a
    mask of the edges outside the table (the caller then evaluates the block by the torch path).
    """

    @staticmethod
    def forward(ctx, vectors, gate, moments, start, coefficients, constants, near, axis):
        vectors, gate, moments = vectors.detach().contiguous(), gate.detach().contiguous(), moments.detach().contiguous()
        n_rank, width = len(start) - 1, coefficients.shape[1]
        contraction = vectors.new_zeros(n_rank, 4, width)
        spin_vectors = vectors.new_zeros(n_rank, axis, 3)
        near_vectors = vectors.new_zeros(n_rank, axis, 3)
        outside = torch.zeros(len(vectors), dtype=torch.bool)
        table = coefficients.detach().to(vectors.dtype).contiguous()
        _gated_kernel(n_rank, vectors.numpy(), start.numpy(), constants["knots"], constants["polynomials"],
                      table.numpy(), constants["geometry"], constants["mean"], constants["inv_std"], near,
                      gate.numpy(), moments.numpy(), contraction.numpy(), spin_vectors.numpy(), near_vectors.numpy(),
                      outside.numpy())
        ctx.save_for_backward(vectors, gate, moments, start, table)
        ctx.constants, ctx.near = constants, near
        ctx.mark_non_differentiable(outside)
        return contraction, spin_vectors, near_vectors, outside

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, q_contraction, q_spin, q_near, _):
        vectors, gate, moments, start, table = ctx.saved_tensors
        c = ctx.constants
        grad_vectors, grad_gate, grad_moments = torch.empty_like(vectors), torch.empty_like(gate), torch.zeros_like(moments)
        _gated_gradient_kernel(len(start) - 1, vectors.numpy(), start.numpy(), c["knots"], c["polynomials"],
                               table.numpy(), c["geometry"], c["mean"], c["inv_std"], ctx.near, gate.numpy(),
                               moments.numpy(), q_contraction.contiguous().numpy(), q_spin.contiguous().numpy(),
                               q_near.contiguous().numpy(), grad_vectors.numpy(), grad_gate.numpy(),
                               grad_moments.numpy())
        return grad_vectors, grad_gate, grad_moments, None, None, None, None, None

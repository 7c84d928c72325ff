"""Heisenberg–Landau spin baseline added to the DeepSPIN network energy (optional).

Two forms, over magnetic atoms only, with radial functions of the pair's types
J(r) = s(r) sum_k c_k φ_k(r), K(r) likewise (the descriptor's smooth switch s; Gaussians φ_k at
μ_k = k·rcut/n, k = 1..n, of width rcut/n); S in μB, r in Å:

``form: "landau"`` (for moments whose length varies, down to zero):

    E_base = sum_i sum_{p=1..P} a_{t_i,p} |S_i|^{2p}  +  1/2 sum_{i≠j} [J(r_ij) + K(r_ij)(|S_i|² + |S_j|²)] S_i·S_j

a polynomial in the components of S (a in eV/μB^{2p}, J in eV/μB², K in eV/μB⁴): smooth at S = 0,
where the torque of a vanishing moment vanishes, as a Landau expansion requires.

``form: "deviation"`` (rigid moments; files without a form have this one):

    E_base = sum_i sum_{p=1..P} a_{t_i,p} δ_i^p  +  1/2 sum_{i≠j} [J(r_ij) + K(r_ij) (δ_i + δ_j)] ŝ_i·ŝ_j

with δ_i = |S_i| − m_{t_i} the deviation of the moment's length from its reference and ŝ_i = S_i/|S_i|
(a in eV/μB^p, J in eV, K in eV/μB). To first order in δ it contains the Heisenberg form J' S_i·S_j
(J = J' m², K = J' m); a free K lets the longitudinal torque depend on the neighbours' orientation more
strongly than S_i·S_j allows, as DeltaSpin data of NiO show (about 3.6 times). It is singular at S = 0
(ŝ is undefined there), so it suits moments that stay near m.

``biquadratic: true`` (either form) adds the biquadratic exchange of itinerant magnets,

    1/2 sum_{i≠j} B(r_ij) (S_i·S_j)²     (landau: B in eV/μB⁴)  or  1/2 sum_{i≠j} B(r_ij) (ŝ_i·ŝ_j)²  (deviation: eV),

on the same radial Gaussians. Itinerant moments are not Heisenberg ones: on FCC-Fe DeltaSpin data the
landau form fitted alone (as training fits it, ``benchmarks/bench_fe_accuracy.py --baseline-only``)
leaves held-out torque RMSE of 18.6 meV/μB near equilibrium and 35.3 at the defect (labels 30.6 and
35.4); with B(r) it leaves 12.1 and 24.3, and its training-torque RMSE falls from 81 to 57 meV/μB.

Both are smooth at rcut, invariant under joint rotations and even in S (time reversal), like the
network. The fit keeps the on-site polynomial bounded below (its leading coefficient positive, see
:func:`fit_spin_baseline`): where the data do not determine it, a free fit can turn it over.

Why: DeltaSpin torques of near-collinear magnets are dominated by exchange (the transverse part) and
by the stiffness of the moment's length (the longitudinal part), both nearly linear in S. The
se_e2_a network sees them only through pseudo-atom geometry, at second order in the virtual scale,
and learns them slowly and imprecisely; with this baseline fitted first, it learns the residual.
The coefficients are fixed before training by linear least squares on the training torques
(:func:`fit_spin_baseline`) and are buffers, not trained parameters: they stay where the fit put
them (Adam's steps, of the size of the learning rate, would swamp couplings of order 10 meV/μB²).

DeePMD-kit has no such term, so models with a baseline cannot be exported to it.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .descriptor import smooth_switch

FORMS = ("deviation", "landau")


def check_form(form: str) -> str:
    """``form`` if it names a baseline form (:data:`FORMS`), else a ValueError naming the choices."""
    if form not in FORMS:
        raise ValueError(f"spin_baseline form must be one of {FORMS}, got {form!r}")
    return form


class SpinBaseline(nn.Module):
    """On-site Landau polynomial and radial Heisenberg exchange (see the module docstring).

    Saved buffers: ``moment_ref`` [T] μB (the mean training moment; m of the deviation form), ``onsite``
    [T, P], ``exchange`` [R, T, T, n] (J, K and with ``biquadratic`` B, so R = 2 or 3; symmetrised in the
    types on use; units per form as in the module docstring); ``magnetic`` and the Gaussian ``centres``
    follow from the config.
    """

    def __init__(self, n_types: int, magnetic: list[bool], rcut: float, rcut_smth: float, n_basis: int,
                 onsite_order: int, dtype: torch.dtype, form: str = "deviation", biquadratic: bool = False):
        super().__init__()
        if n_basis < 1 or onsite_order < 0:
            raise ValueError(f"spin_baseline needs n_basis >= 1 and onsite_order >= 0, got {n_basis}, {onsite_order}")
        self.landau = check_form(form) == "landau"
        self.biquadratic = bool(biquadratic)
        self.rcut, self.rcut_smth = float(rcut), float(rcut_smth)
        self.register_buffer("moment_ref", torch.zeros(n_types, dtype=dtype))
        self.register_buffer("onsite", torch.zeros(n_types, onsite_order, dtype=dtype))
        self.register_buffer("exchange", torch.zeros(3 if biquadratic else 2, n_types, n_types, n_basis, dtype=dtype))
        self.register_buffer("magnetic", torch.tensor(magnetic, dtype=torch.bool), persistent=False)
        self.register_buffer("centres", torch.arange(1, n_basis + 1, dtype=dtype) * (rcut / n_basis), persistent=False)

    def couplings(self, r: torch.Tensor, ti: torch.Tensor, tj: torch.Tensor,
                  exchange: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(J, K[, B]) [R, E] for distances r [E] (Å) and type pairs (units per form: module docstring)."""
        exchange = self.exchange if exchange is None else exchange
        sym = 0.5 * (exchange + exchange.transpose(1, 2))
        width = self.rcut / len(self.centres)
        basis = torch.exp(-(((r.unsqueeze(-1) - self.centres) / width) ** 2))  # [E, n]
        return smooth_switch(r, self.rcut_smth, self.rcut) * (basis * sym[:, ti, tj]).sum(-1)

    def atomic_energies(self, spins, atom_types, centers, neighbors, lattice_vectors, first: int, n_centres: int,
                        onsite: Optional[torch.Tensor] = None, exchange: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Baseline energy (eV) of centres ``first .. first + n_centres − 1`` from their real-atom edges.

        ``lattice_vectors`` [E, 3] Å are the edges' R_j − R_i (strained if a strain is applied);
        ``onsite``/``exchange`` override the stored coefficients (used by the least-squares fit).
        """
        onsite = self.onsite if onsite is None else onsite
        local_types = atom_types[first : first + n_centres]
        energies = spins.new_zeros(n_centres)
        magnetic_centres = self.magnetic[local_types]
        if onsite.shape[1] and bool(magnetic_centres.any()):
            idx = magnetic_centres.nonzero().squeeze(-1)
            if self.landau:
                variable = (spins[first + idx] ** 2).sum(-1)
            else:
                variable = torch.linalg.vector_norm(spins[first + idx], dim=-1) - self.moment_ref[local_types[idx]]
            powers = variable.unsqueeze(-1) ** torch.arange(1, onsite.shape[1] + 1, device=variable.device)
            energies = energies.index_add(0, idx, (powers * onsite[local_types[idx]]).sum(-1))
        ti, tj = atom_types.index_select(0, centers), atom_types.index_select(0, neighbors)
        both = self.magnetic[ti] & self.magnetic[tj]
        if bool(both.any()):
            c, n, ti, tj = centers[both], neighbors[both], ti[both], tj[both]
            r = torch.linalg.vector_norm(lattice_vectors[both], dim=-1)
            couplings = self.couplings(r, ti, tj, exchange)
            j_pair, k_pair = couplings[0], couplings[1]
            dot = (spins[c] * spins[n]).sum(-1)
            if self.landau:
                pair = (j_pair + k_pair * ((spins[c] ** 2).sum(-1) + (spins[n] ** 2).sum(-1))) * dot
            else:
                length_i = torch.linalg.vector_norm(spins[c], dim=-1)
                length_j = torch.linalg.vector_norm(spins[n], dim=-1)
                deviations = length_i - self.moment_ref[ti] + length_j - self.moment_ref[tj]
                dot = dot / (length_i * length_j)
                pair = (j_pair + k_pair * deviations) * dot
            if self.biquadratic:
                pair = pair + couplings[2] * dot * dot
            energies = energies.index_add(0, c - first, 0.5 * pair)
        return energies


def relative_weights(labels: torch.Tensor, shift: Optional[float]) -> torch.Tensor:
    """Per-atom weights 1/(|label_i| + shift) [N, 1] of a relative error (DeePMD-kit's ``relative_f``;
    ``labels`` [N, 3]); ones when ``shift`` is None."""
    if shift is None:
        return torch.ones(len(labels), 1, dtype=labels.dtype)
    return 1.0 / (torch.linalg.vector_norm(labels, dim=-1, keepdim=True) + shift)


@torch.no_grad()
def fit_spin_baseline(model, items: list[dict], ridge: float = 1e-8, forces: bool = False,
                      relative_f: Optional[float] = None, relative_fm: Optional[float] = None) -> dict:
    """Set ``model.baseline`` by least squares of its torques (and optionally forces) on the labels of ``items``.

    ``items`` are prepared training frames (``ase_deepspin.training.train.PreparedFrames.items``: model
    inputs plus ``torques_label`` eV/μB, ``forces_label`` eV/Å and ``magnetic``). ``moment_ref``
    becomes the mean moment length of each magnetic type. The on-site polynomial of each type is kept
    bounded below in |S|: if its leading coefficient fits ≤ 0, that order is dropped (set to 0) and the
    fit repeated. Torques and forces are linear in the coefficients, so the design matrix is their
    Jacobian: its columns are the outputs at unit coefficient vectors. With ``forces``, force rows
    join the torque rows: the radial
    derivatives of J(r) and K(r) are then fitted too instead of left to chance. Each atom's rows are
    divided by |label| + ``relative_fm`` (torques) or + ``relative_f`` (forces) where given, as the
    training loss weighs them; a block without one is divided by its label RMS, so the two blocks
    count alike. ``ridge`` (relative to the mean diagonal) keeps coefficients of basis functions at
    distances no pair visits at zero. Returns the RMSE (eV/μB) of the labelled torques before and
    after the fit, and with ``forces`` also ``forces_before``/``forces_after`` (eV/Å).
    """
    base = model.baseline
    n_types = len(base.moment_ref)
    moments = {t: [] for t in range(n_types)}
    for f in items:
        norms = torch.linalg.vector_norm(f["spins"], dim=-1)
        for t in range(n_types):
            if bool(base.magnetic[t]):
                moments[t].append(norms[f["atom_types"] == t])
    for t, values in moments.items():
        if values:
            base.moment_ref[t] = torch.cat(values).mean()
    shapes = [base.onsite.shape, base.exchange.shape]
    sizes = [base.onsite.numel(), base.exchange.numel()]

    def outputs(flat, f):
        onsite, exchange = (v.reshape(s) for v, s in zip(torch.split(flat, sizes), shapes))
        with torch.enable_grad():
            spins = f["spins"].detach().requires_grad_(True)
            positions = f["positions"].detach().requires_grad_(True)
            real = ~f["pseudo"]
            c, n = f["centers"][real], f["neighbors"][real]
            vectors = model.lattice_vectors(positions, c, n, f["offsets"][real])
            energy = base.atomic_energies(spins, f["atom_types"], c, n, vectors, 0, len(spins), onsite, exchange)
            grad_s, grad_r = torch.autograd.grad(energy.sum(), (spins, positions))
        return -grad_s[f["magnetic"]], -grad_r

    unit = torch.eye(sum(sizes), dtype=base.onsite.dtype)
    blocks = {"m": relative_fm, "f": relative_f} if forces else {"m": relative_fm}  # block -> its shift
    rows = {key: ([], []) for key in blocks}  # design rows, labels
    for f in items:
        # outputs are linear in the coefficients: their value at each unit vector is a column of the Jacobian
        columns = [outputs(e, f) for e in unit]
        labels = {"m": f["torques_label"][f["magnetic"]], "f": f.get("forces_label")}
        for k, key in enumerate(("m", "f")):
            if key == "f" and "has_forces" in f and not bool(f["has_forces"].all()):
                continue  # a frame without force labels
            if key == "m" and "has_torques" in f and (not bool(f["has_torques"][f["magnetic"]].all())
                                                      or bool(f["transverse_only"].any())):
                continue  # a frame without full torque labels
            if key in blocks:
                rows[key][0].append(torch.stack([c[k] for c in columns], dim=-1).reshape(-1, len(unit)))
                rows[key][1].append(labels[key])
    design = {key: torch.cat(d) for key, (d, _) in rows.items()}
    target = {key: torch.cat(t) for key, (_, t) in rows.items()}  # [atoms, 3]
    weighted, weighted_target = [], []
    for key, shift in blocks.items():
        w = relative_weights(target[key], shift).expand(-1, 3).reshape(-1)
        if shift is None:
            w = w / target[key].pow(2).mean().sqrt().clamp(min=1e-30)
        weighted.append(design[key] * w.unsqueeze(-1))
        weighted_target.append(target[key].reshape(-1) * w)
    weighted, weighted_target = torch.cat(weighted), torch.cat(weighted_target)
    normal = weighted.T @ weighted
    normal = normal + ridge * normal.diagonal().mean().clamp(min=1e-30) * torch.eye(len(normal), dtype=normal.dtype)
    rhs = weighted.T @ weighted_target
    # bounded below: each magnetic type's highest free on-site order must come out positive; one that does not
    # is fixed at zero and the fit repeated, so the next order down leads (none left: no on-site term)
    order = base.onsite.shape[1]
    free = torch.ones(len(normal), dtype=torch.bool)
    while True:
        coeffs = torch.zeros_like(rhs)
        coeffs[free] = torch.linalg.solve(normal[free][:, free], rhs[free])
        turned = []
        for t in range(n_types):
            columns = [t * order + p for p in range(order) if bool(free[t * order + p])]
            if bool(base.magnetic[t]) and columns and float(coeffs[columns[-1]]) <= 0.0:
                turned.append(columns[-1])
        if not turned:
            break
        free[turned] = False
    onsite, exchange = (v.reshape(s) for v, s in zip(torch.split(coeffs, sizes), shapes))
    base.onsite.copy_(onsite)
    base.exchange.copy_(0.5 * (exchange + exchange.transpose(1, 2)))
    rmse = lambda v: float(v.pow(2).mean().sqrt())  # noqa: E731
    result = {}
    for key, name in (("m", ""), ("f", "forces_")):
        if key in blocks:
            t = target[key].reshape(-1)
            result |= {f"{name}before": rmse(t), f"{name}after": rmse(design[key] @ coeffs - t)}
    return result

"""Exchange tensors J_ij from any spin calculator: second derivatives of E over spin directions.

Convention (that of :class:`~ase_deepspin.calculators.hamiltonian.SpinHamiltonian`; ŝ unit spin directions,
energies in eV, each pair counted once):

    E = E_0 − Σ_{pairs (i, j, R)} ŝ_i^T J_ij(R) ŝ_{j,R} − Σ_i ŝ_i^T A_i ŝ_i   (+ higher orders)

=================  ==========================================================================
quantity           meaning
=================  ==========================================================================
J_ij(R)            3×3 (eV) between site i of cell 0 and site j of cell R; J_ji(−R) = J_ij(R)^T
isotropic J        tr J_ij / 3; J > 0 ferromagnetic (SpinHamiltonian's ``ShellExchange`` J)
DMI vector D       from the antisymmetric part, −ŝ_i^T J^a ŝ_j = D·(ŝ_i × ŝ_j) (SpinHamiltonian's DMI)
anisotropic Γ      symmetric traceless part of J_ij (two-site anisotropy)
A_i                3×3 (eV) single-ion tensor, traceless (the trace does not change E on the sphere);
                   uniaxial −K (ŝ·n)² is A = K (n n^T − 1/3)
=================  ==========================================================================

How: in a supercell of the magnetic cell at a reference (ground) state, each spin of one cell is
turned by ±δ along its two tangent directions, one at a time, and the change of every spin's
tangent torque gives a column of the Hessian ∂²E/∂x∂x over the tangent coordinates x (central
differences; translational symmetry gives the rest). A calculator that offers exact spin
Hessian-vector products (``spin_hessian_vector_products``, as DeepSpinCalculator does by double
backpropagation) gives the same columns without differences. A single collinear state only sees the
transverse 2×2 block of each J_ij, so the whole state is also turned rigidly to two more
orientations (its axis onto the two other axes of a frame); the off-diagonal Hessian blocks of a
bilinear energy do not depend on the state, and the 12 numbers per pair give the 9 of J_ij by
least squares. The on-site blocks give A_i once the exchange field is known.

Each supercell pair is assigned to its shortest image; a pair with m equally short images is
shared equally among them (phonopy's rule for force constants), which keeps J(q) exact on the
supercell's q grid. Couplings that reach round the supercell alias onto shorter pairs: converge
the supercell size (a DeepSPIN model's energy is many-body, so spins interact up to about twice
its cut-off radius).

A model trained on small cantings of one magnetic order is trustworthy only near that order: use
``orientations="ground-state"`` for it (see :func:`compute_exchange`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..spins import tangent_frames, unit_vectors
from ..system import magnetic_mask

__all__ = ["ExchangeModel", "compute_exchange"]


@dataclass(frozen=True)
class ExchangeModel:
    """Bilinear spin model of a magnetic cell (convention in the module docstring).

    Attributes
    ----------
    cell : (3, 3) Å, lattice vectors (rows) of the magnetic cell.
    positions : (L, 3) Å, the L magnetic sites of cell 0.
    moments : (L, 3) μB, the reference (ground-state) moments of those sites.
    i, j : (P,) site indices of each ordered pair (both orders are listed).
    R : (P, 3) int, lattice translation of site j.
    J : (P, 3, 3) eV, exchange tensors.
    A : (L, 3, 3) eV, single-ion tensors.
    atom_indices : (L,) indices of the sites in the Atoms they were computed from.
    """

    cell: np.ndarray
    positions: np.ndarray
    moments: np.ndarray
    i: np.ndarray
    j: np.ndarray
    R: np.ndarray
    J: np.ndarray
    A: np.ndarray
    atom_indices: np.ndarray

    def __post_init__(self):
        L, P = len(self.positions), len(self.i)
        shapes = {"cell": (3, 3), "positions": (L, 3), "moments": (L, 3), "j": (P,), "R": (P, 3),
                  "J": (P, 3, 3), "A": (L, 3, 3), "atom_indices": (L,)}
        for name, shape in shapes.items():
            if np.shape(getattr(self, name)) != shape:
                raise ValueError(f"ExchangeModel.{name} must have shape {shape}, got {np.shape(getattr(self, name))}")
        if P and (min(self.i.min(), self.j.min()) < 0 or max(self.i.max(), self.j.max()) >= L):
            raise ValueError(f"pair site indices must lie in 0..{L - 1}")
        if np.any(np.linalg.norm(self.moments, axis=1) == 0):
            raise ValueError("every site of an ExchangeModel needs a non-zero moment")

    @property
    def bond_vectors(self) -> np.ndarray:
        """(P, 3) Å, from site i in cell 0 to site j in cell R."""
        return self.positions[self.j] + self.R @ self.cell - self.positions[self.i]

    @property
    def distances(self) -> np.ndarray:
        """(P,) Å."""
        return np.linalg.norm(self.bond_vectors, axis=1)

    @property
    def isotropic(self) -> np.ndarray:
        """(P,) eV, J = tr J_ij / 3 (> 0 ferromagnetic)."""
        return np.trace(self.J, axis1=1, axis2=2) / 3.0

    @property
    def dmi(self) -> np.ndarray:
        """(P, 3) eV, D with −ŝ_i^T J^a ŝ_j = D·(ŝ_i × ŝ_j)."""
        J = self.J
        return -0.5 * np.stack([J[:, 1, 2] - J[:, 2, 1], J[:, 2, 0] - J[:, 0, 2], J[:, 0, 1] - J[:, 1, 0]], axis=1)

    @property
    def symmetric_anisotropy(self) -> np.ndarray:
        """(P, 3, 3) eV, the symmetric traceless part Γ of J_ij."""
        sym = 0.5 * (self.J + self.J.transpose(0, 2, 1))
        return sym - self.isotropic[:, None, None] * np.eye(3)

    def unique_pairs(self) -> np.ndarray:
        """Indices of one order of each pair (i < j, or i == j with R > 0 lexicographically)."""
        R = self.R
        positive = (R[:, 0] > 0) | ((R[:, 0] == 0) & ((R[:, 1] > 0) | ((R[:, 1] == 0) & (R[:, 2] > 0))))
        return np.flatnonzero((self.i < self.j) | ((self.i == self.j) & positive))

    def shells(self, tolerance: float = 1e-3) -> list[np.ndarray]:
        """Unique pairs grouped by distance (Å tolerance), nearest first: a list of index arrays."""
        idx = self.unique_pairs()
        idx = idx[np.argsort(self.distances[idx], kind="stable")]
        d = self.distances[idx]
        breaks = np.flatnonzero(np.diff(d) > tolerance) + 1
        return np.split(idx, breaks)

    def isotropic_part(self) -> ExchangeModel:
        """The Heisenberg part of the model: J_ij → (tr J_ij / 3) 1, no single-ion term."""
        return replace(self, J=self.isotropic[:, None, None] * np.eye(3), A=np.zeros_like(self.A))

    def shell_averaged(self, tolerance: float = 1e-3) -> ExchangeModel:
        """Heisenberg model with one J per distance shell (Å tolerance): the mean isotropic J of its
        pairs, no single-ion term. The usual J1, J2, ... of a model whose tensors vary within a shell."""
        order = np.argsort(self.distances, kind="stable")
        d = self.distances[order]
        shell = np.empty(len(d), dtype=int)
        shell[order] = np.concatenate([[0], np.cumsum(np.diff(d) > tolerance)])
        means = np.bincount(shell, self.isotropic) / np.bincount(shell)
        return replace(self, J=means[shell][:, None, None] * np.eye(3), A=np.zeros_like(self.A))

    def table(self, max_distance: float | None = None) -> str:
        """Text table of the unique pairs (TB2J-like): sites, R, distance (Å), J and |D| (meV)."""
        idx = self.unique_pairs()
        idx = idx[np.argsort(self.distances[idx], kind="stable")]
        if max_distance is not None:
            idx = idx[self.distances[idx] <= max_distance]
        lines = [(f"{'i':>4s} {'j':>4s} {'R':>12s} {'d (Å)':>9s} {'J (meV)':>11s} {'|D| (meV)':>10s} "
                 f"{'D (meV)':>30s}")]
        Jiso, D, dist = 1e3 * self.isotropic, 1e3 * self.dmi, self.distances
        for p in idx:
            R = "({:d},{:d},{:d})".format(*self.R[p])
            lines.append(f"{self.i[p]:4d} {self.j[p]:4d} {R:>12s} {dist[p]:9.4f} {Jiso[p]:11.5f} "
                         f"{np.linalg.norm(D[p]):10.5f} {D[p][0]:10.5f}{D[p][1]:10.5f}{D[p][2]:10.5f}")
        lines.append("|D|: the antisymmetric part of each fitted tensor. On a bond with an inversion centre at its middle "
                     "(Moriya) a DMI must vanish: there |D| measures the model's noise, not a physical DMI.")
        lines.append("single-ion A (meV, traceless; E = −ŝ^T A ŝ), eigenvalues per site:")
        for s, a in enumerate(self.A):
            lines.append(f"{s:4d} " + " ".join(f"{v:10.5f}" for v in 1e3 * np.linalg.eigvalsh(a)))
        return "\n".join(lines)


def _default_orientations(unit: np.ndarray) -> list[np.ndarray]:
    """Identity and the two rigid rotations taking the first spin's axis onto the other two axes of
    a frame (cyclic permutations of the frame): a collinear state then shows every component."""
    axis = unit[:1]
    e1, e2 = tangent_frames(axis)
    frame = np.stack([axis[0], e1[0], e2[0]], axis=1)  # columns
    cycle = frame @ np.roll(np.eye(3), 1, axis=0) @ frame.T
    rotations = [np.eye(3), cycle, cycle @ cycle]
    collinear = np.abs(np.abs(unit @ axis[0]) - 1.0).max() < 1e-8
    if not collinear:
        # a non-collinear state needs more orientations to see every component of every pair
        from scipy.spatial.transform import Rotation

        rotations += list(Rotation.from_euler("zyz", [[0.3, 1.1, 2.0], [2.5, 0.7, -1.2]]).as_matrix())
    return rotations


def _shortest_images(d_frac: np.ndarray, periodic: np.ndarray, supercell: np.ndarray, cell: np.ndarray):
    """All equally short supercell images of fractional (primitive-cell) pair vectors [P, 3].

    Returns (pair index [Q], primitive-cell translation shift [Q, 3], multiplicity [Q]): a pair
    with m equally short images appears m times (phonopy's rule for force constants).
    """
    ranges = [np.arange(-1, 2) if p else np.zeros(1, int) for p in periodic]
    images = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, 3) * supercell  # [M, 3]
    # centre the difference first so that one ring of supercell images suffices
    shift0 = -np.rint(d_frac / supercell).astype(int) * supercell * periodic
    lengths = np.linalg.norm((d_frac[:, None, :] + shift0[:, None, :] + images[None]) @ cell, axis=-1)  # [P, M]
    shortest = lengths < lengths.min(axis=1, keepdims=True) + 1e-6
    pair, image = np.nonzero(shortest)
    return pair, shift0[pair] + images[image], shortest.sum(axis=1)[pair]


def _symmetric_basis() -> np.ndarray:
    """Frobenius-orthonormal basis [6, 3, 3] of symmetric 3×3 matrices."""
    basis = np.zeros((6, 3, 3))
    for n, (m, l) in enumerate([(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]):
        basis[n, m, l] = basis[n, l, m] = 1.0 if m == l else np.sqrt(0.5)
    return basis


# rows (on the 9 components of J, row-major) of J − (tr J/3) 1 = 0: the isotropic completion
_ISOTROPIC_ROWS = np.array([np.eye(9)[c] for c in (1, 2, 3, 5, 6, 7)]
                           + [np.eye(9)[0] - np.eye(9)[4], np.eye(9)[4] - np.eye(9)[8], np.eye(9)[8] - np.eye(9)[0]])


def _hessian_columns(calc, big, big_magnetic, spins_magnetic, directions):
    """Spin-Hessian columns from the calculator's exact Hessian-vector products.

    At the spins ``spins_magnetic`` [Nm, 3] (μB) of the magnetic atoms ``big_magnetic`` of ``big``
    (set on it), returns (columns [L, 2, Nm, 3] = (∂²E/∂S ∂S) v in eV/μB for v = ``directions``
    [L, 2, 3] (μB) placed on the first L spins, restricted to the spins; torques [Nm, 3] eV/μB).
    """
    spins = np.zeros((len(big), 3))
    spins[big_magnetic] = spins_magnetic
    big.set_initial_magnetic_moments(spins)
    L = len(directions)
    vectors = np.zeros((L, 2, len(big), 3))
    vectors[np.arange(L), :, big_magnetic[:L]] = directions  # site s of cell 0 is supercell atom big_magnetic[s]
    products, torques = calc.spin_hessian_vector_products(big, vectors.reshape(2 * L, len(big), 3))
    return products.reshape(L, 2, len(big), 3)[:, :, big_magnetic], torques[big_magnetic]


def compute_exchange(atoms, supercell, step_rad: float = 1e-4, drop_below_meV: float = 1e-7,
                     orientations="rotations", method: str = "auto") -> ExchangeModel:
    """Exchange and single-ion tensors of ``atoms`` at its current spins, from ``atoms.calc``.

    Parameters
    ----------
    atoms : the magnetic cell with its reference (ground-state) spins as (N, 3) initial magnetic
        moments (μB) and a spin calculator providing ``magnetic_torques``.
    supercell : (n1, n2, n3) repetitions used for the finite differences (1 on non-periodic axes).
    step_rad : turning angle δ of a spin (rad); the error is O(δ²).
    drop_below_meV : pairs whose tensor has no element larger than this (meV) are left out.
    orientations : ``"rotations"`` (default): the reference state and rigid rotations of it, so that
        every tensor component is measured (exact for a bilinear energy such as SpinHamiltonian's).
        ``"ground-state"``: the reference state only, for models that are trustworthy only near it
        (a DeepSPIN model trained on small cantings of one order): the tensors reproduce the
        Hessian and torques there exactly, which is all LSWT uses, and the components that state
        cannot see are completed isotropically (J's longitudinal part = the mean of its two
        transverse diagonal ones, no mixed components). Or a list of 3×3 rotation matrices.
    method : ``"auto"`` (default): ``"autograd"`` when the calculator offers it, finite differences
        otherwise. ``"autograd"``: the calculator's exact spin Hessian-vector products
        (``calc.spin_hessian_vector_products``; DeepSpinCalculator: one forward pass and 2 backward
        passes per magnetic atom of ``atoms`` and orientation). ``"finite-differences"`` of torques
        (any spin calculator).

    A calculator whose energy is invariant under rotating the spins alone (``calc.spin_rotation_invariant``
    true, as DeepSpinCalculator has for a model of spin invariants) has no DMI, two-site or single-ion
    anisotropy: its tensors are isotropic, J_ij = J 1 and A_i = 0, measured exactly from the reference
    state alone whatever ``orientations`` says.

    Returns
    -------
    ExchangeModel with tensors in eV. Finite differences cost (4 × magnetic atoms in ``atoms`` + 1)
    × orientations torque evaluations of the supercell.
    """
    calc = atoms.calc
    if calc is None:
        raise ValueError("atoms has no calculator: attach a spin calculator providing magnetic_torques")
    supercell = np.asarray(supercell, dtype=int).reshape(-1)
    if supercell.shape != (3,) or (supercell < 1).any():
        raise ValueError(f"supercell must be three positive integers, got {supercell.tolist()}")
    if (supercell[~atoms.pbc] != 1).any():
        raise ValueError("supercell must be 1 along non-periodic axes")
    if method not in ("auto", "finite-differences", "autograd"):
        raise ValueError(f"method must be 'auto', 'finite-differences' or 'autograd', got {method!r}")
    exact = hasattr(calc, "spin_hessian_vector_products")
    if method == "autograd" and not exact:
        raise ValueError("method='autograd' needs a calculator with spin_hessian_vector_products (such as "
                         "DeepSpinCalculator); use finite differences for other calculators")
    exact = exact and method != "finite-differences"
    if not 0 < step_rad < 0.1:
        raise ValueError(f"step_rad must be a small positive angle (rad), got {step_rad}")
    spins = np.asarray(atoms.get_initial_magnetic_moments(), dtype=float) if atoms.has("initial_magmoms") else None
    if spins is None or spins.shape != (len(atoms), 3):
        raise ValueError("atoms need non-collinear (N, 3) spins in μB (set_initial_magnetic_moments)")
    magnetic = np.flatnonzero(magnetic_mask(spins))
    if len(magnetic) == 0:
        raise ValueError("no atom carries a spin")

    n_prim = len(atoms)
    big = atoms.repeat(tuple(supercell))
    big.calc = calc
    prim_of = np.arange(len(big)) % n_prim
    cell = atoms.cell.array
    translation = np.rint((big.positions - atoms.positions[prim_of]) @ np.linalg.inv(cell)).astype(int)
    site_of_prim = -np.ones(n_prim, dtype=int)
    site_of_prim[magnetic] = np.arange(len(magnetic))
    big_magnetic = np.flatnonzero(site_of_prim[prim_of] >= 0)  # supercell indices of spins
    sites = site_of_prim[prim_of[big_magnetic]]  # [Nm] site of each
    L, Nm = len(magnetic), len(big_magnetic)
    moments_big = big.get_initial_magnetic_moments()
    unit0, lengths = unit_vectors(moments_big[big_magnetic])
    isotropic = bool(getattr(calc, "spin_rotation_invariant", False))
    if isotropic:
        orientations = "ground-state"  # one state sees every isotropic coupling
    complete_isotropically = isinstance(orientations, str) and orientations == "ground-state"
    if isinstance(orientations, str):
        if orientations not in ("rotations", "ground-state"):
            raise ValueError(f"orientations must be 'rotations', 'ground-state' or a list of 3×3 rotations, "
                             f"got {orientations!r}")
        rotations = [np.eye(3)] if complete_isotropically else _default_orientations(unit0)
    else:
        rotations = [np.asarray(r, dtype=float) for r in orientations]
        if any(r.shape != (3, 3) or not np.allclose(r @ r.T, np.eye(3), atol=1e-10) for r in rotations):
            raise ValueError("orientations must be 3×3 rotation matrices")

    def tangent_gradient(trial, e):
        """∂E/∂x_{k,a} [Nm, 2] with the torques at unit spins ``trial`` and the frames ``e`` of the
        reference: ∂E/∂S_k · |S_k| ∂ŝ_k/∂x_{k,a}, with ∂ŝ/∂x_a = e_a − x_a ŝ0/√(1 − x²) (the
        caller adds the second term)."""
        full = np.zeros_like(moments_big)
        full[big_magnetic] = trial * lengths[:, None]
        big.set_initial_magnetic_moments(full)
        torque = calc.get_property("magnetic_torques", big)[big_magnetic]
        return -lengths[:, None] * np.einsum("kc,kac->ka", torque, e), torque

    # hessian[r][k, a, s, b] = ∂²E/∂x_{k,a} ∂x_{s,b}, s a site of cell 0 (supercell index s: cell 0
    # holds the first atoms of the supercell, in order); gradient[r][k, a] = ∂E/∂x_{k,a}
    hessians, gradients, frames, units = [], [], [], []
    for rot in rotations:
        unit = unit0 @ rot.T
        e = np.stack(tangent_frames(unit), axis=1)  # [Nm, 2, 3]
        if exact:
            # exact columns: |S_k| e_ka·(∂²E/∂S_k ∂S_s)|S_s| e_sb + δ_ks δ_ab |S_s| τ_s·ŝ_s
            columns, torque = _hessian_columns(calc, big, big_magnetic, unit * lengths[:, None],
                                               lengths[:L, None, None] * e[:L])
            hess = lengths[:, None, None, None] * np.einsum("kac,sbkc->kasb", e, columns)
            for s in range(L):
                hess[s, :, s, :] += np.eye(2) * lengths[s] * (torque[s] @ unit[s])
            gradients.append(-lengths[:, None] * np.einsum("kc,kac->ka", torque, e))
        else:
            gradients.append(tangent_gradient(unit, e)[0])
            hess = np.zeros((Nm, 2, L, 2))
            for s in range(L):
                for b in range(2):
                    grads = []
                    for sign in (1.0, -1.0):
                        trial = unit.copy()
                        trial[s] = sign * step_rad * e[s, b] + np.sqrt(1.0 - step_rad**2) * unit[s]
                        grad, torque = tangent_gradient(trial, e)
                        grad[s, b] += lengths[s] * sign * step_rad / np.sqrt(1.0 - step_rad**2) * (torque[s] @ unit[s])
                        grads.append(grad)
                    hess[:, :, s, b] = (grads[0] - grads[1]) / (2.0 * step_rad)
        hessians.append(hess)
        frames.append(e)
        units.append(unit)
    big.set_initial_magnetic_moments(moments_big)

    # pairs (s in cell 0, k in the supercell, k ≠ s): e_{s,b}^T J e_{k,a} = −H[k, a, s, b]
    s_idx, k_idx = np.meshgrid(np.arange(L), np.arange(Nm), indexing="ij")
    s_idx, k_idx = s_idx.ravel(), k_idx.ravel()
    off = k_idx != s_idx
    s_idx, k_idx = s_idx[off], k_idx[off]
    coef = np.concatenate([np.einsum("pbm,pan->pbamn", e[s_idx], e[k_idx]).reshape(len(s_idx), 4, 9)
                           for e in frames], axis=1)  # [P, 4 n_rot, 9]
    rhs = np.concatenate([-h[k_idx, :, s_idx, :].transpose(0, 2, 1).reshape(len(s_idx), 4) for h in hessians], axis=1)
    if complete_isotropically:
        # a weak pull towards isotropy fixes only what the reference state cannot see
        weight = 1e-4
        coef = np.concatenate([coef, np.broadcast_to(weight * _ISOTROPIC_ROWS, (len(coef), 9, 9))], axis=1)
        rhs = np.concatenate([rhs, np.zeros((len(rhs), 9))], axis=1)
    normal = np.einsum("pem,pen->pmn", coef, coef)
    if np.linalg.eigvalsh(normal).min() < (1e-9 if complete_isotropically else 1e-6):
        raise ValueError("the sampled orientations do not determine every exchange tensor component; "
                         "pass more rigid rotations in `orientations`")
    J_big = np.linalg.solve(normal, np.einsum("pem,pe->pm", coef, rhs)[..., None])[..., 0].reshape(-1, 3, 3)

    # single-ion tensors (traceless symmetric, 5 unknowns) from each orientation's on-site block,
    # H_ab = −2 e_a^T A e_b + δ_ab ŝ^T (h + 2 A ŝ), and gradient, −∂E/∂x_a = e_a^T (h + 2 A ŝ),
    # with the exchange field h = Σ_k J_sk ŝ_k
    basis = _symmetric_basis()
    A = np.zeros((L, 3, 3))
    for s in range(L):
        rows, values = [], []
        mine = s_idx == s
        for h, g, e, unit in zip(hessians, gradients, frames, units):
            field = np.einsum("pmn,pn->m", J_big[mine], unit[k_idx[mine]])
            block = 0.5 * (h[s, :, s, :] + h[s, :, s, :].T)
            for a, b in ((0, 0), (0, 1), (1, 1)):
                rows.append(-2.0 * np.einsum("m,nml,l->n", e[s, a], basis, e[s, b])
                            + (a == b) * 2.0 * np.einsum("m,nml,l->n", unit[s], basis, unit[s]))
                values.append(block[a, b] - (a == b) * unit[s] @ field)
            for a in range(2):
                rows.append(2.0 * np.einsum("m,nml,l->n", e[s, a], basis, unit[s]))
                values.append(-g[s, a] - e[s, a] @ field)
        # min-norm least squares: the trace (no effect on the sphere) comes out zero
        coeffs = np.linalg.lstsq(np.array(rows), np.array(values), rcond=None)[0]
        A[s] = np.einsum("n,nml->ml", coeffs, basis)

    # map supercell pairs to (i, j, R) with the shortest image; symmetrise J_ij(R) with J_ji(−R)^T
    prim_s, prim_k = magnetic[s_idx], prim_of[big_magnetic[k_idx]]
    d_frac = ((atoms.positions[prim_k] - atoms.positions[prim_s]) @ np.linalg.inv(cell)
              + translation[big_magnetic[k_idx]])
    pair, shift, multiplicity = _shortest_images(d_frac, atoms.pbc, supercell, cell)
    R = translation[big_magnetic[k_idx]][pair] + shift
    i, j = s_idx[pair], sites[k_idx][pair]
    J = J_big[pair] / multiplicity[:, None, None]
    key = np.concatenate([np.stack([i, j], 1), R], axis=1)
    reverse = np.concatenate([np.stack([j, i], 1), -R], axis=1)
    _, inverse = np.unique(np.concatenate([key, reverse]), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    partner = np.full(inverse.max() + 1, -1)
    partner[inverse[: len(key)]] = np.arange(len(key))
    mate = partner[inverse[len(key):]]
    if (mate < 0).any():
        raise ValueError("exchange pairs are not symmetric between sites: the reference state is not "
                         "periodic in the given cell")
    J = 0.5 * (J + J[mate].transpose(0, 2, 1))
    kept = np.abs(J).max(axis=(1, 2)) > 1e-3 * drop_below_meV  # eV
    kept &= kept[mate]
    model = ExchangeModel(cell=cell.copy(), positions=atoms.positions[magnetic].copy(), moments=spins[magnetic].copy(),
                          i=i[kept], j=j[kept], R=R[kept], J=J[kept], A=A, atom_indices=magnetic)
    return model.isotropic_part() if isotropic else model

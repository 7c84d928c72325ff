"""Magnons from any spin energy: linear spin-wave theory (LSWT) and S(q, ω) from LLG trajectories.

LSWT works on an :class:`~ase_deepspin.analysis.exchange.ExchangeModel` (bilinear tensors J_ij, A_i
in eV, unit spin directions, E = −Σ_pairs ŝ_i^T J_ij ŝ_j − Σ_i ŝ_i^T A_i ŝ_i). The classical
energy of unit vectors is mapped onto quantum spins of length S_i = |S_i| μ_B / (ħγ) (|S_i| the
moment in μB, γ the gyromagnetic ratio of the LLG integrator, so S ≈ |S|/2): J̃_ij = J_ij/(S_i S_j),
Ã_i = A_i/S_i². The harmonic (Holstein–Primakoff) spectrum is then exactly the linearised LLG
spectrum of :mod:`ase_deepspin.dynamics.llg` with the same moments; pass ``spin_lengths`` to use
another S (e.g. the ionic spin of a compound).

Closed forms in this convention (J(q) = Σ_R J(R) e^{iq·R} over all neighbours, S = |S|μ_B/ħγ):
ferromagnet ħω = (J(0) − J(q)) / S, i.e. ω = 2S (J̃(0) − J̃(q)) with J̃ = J/(2S²) in the
"−Σ_{i≠j} J̃ S_i·S_j" (each pair twice) convention; two-sublattice antiferromagnet with
inter-sublattice J_AB(q) only: ħω = √(J_AB(0)² − |J_AB(q)|²) / S.

Method (Toth and Lake, J. Phys.: Condens. Matter 27, 166002 (2015)): each spin gets a local
right-handed frame (e1, e2, ŝ) with u = e1 + i e2; S ≈ √(S/2)(ū a + u a†) + ŝ (S − a†a). A single-q
state ŝ_{i,R} = R_n(k·R) ŝ_i is handled in the rotating frame: every bond tensor becomes
J_ij(R) R_n(k·R), translation invariant when the tensors commute with rotations about n (checked).
The bosonic Bogoliubov problem H = ½ Σ_q X_q† h(q) X_q, X = (a_q, a†_{−q}), is solved by Colpa's
method: h = K†K (Cholesky), the eigenvalues of K g K† (g = diag(1, −1)) are ω_n(q) and −ω_n(−q).

Wave vectors are Cartesian, in 1/Å including 2π (phases e^{iq·r} with r in Å); magnon energies ħω
in meV.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..units import GAMMA_RAD_PER_FS_T, HBAR_EV_FS, MU_B_EV_PER_T
# rotation_about and tangent_frames moved to ase_deepspin.spins; their names stay importable from here
from ..spins import rotation_about, tangent_frames, unit_vectors
from ..system import magnetic_mask
from .exchange import ExchangeModel

__all__ = ["LinearSpinWaves", "SpinRecorder", "band_path", "dynamical_structure_factor", "magnon_dos",
           "monkhorst_pack_cart", "plot_magnon_bands", "plot_structure_factor"]



class LinearSpinWaves:
    """Linear spin-wave spectrum of an ordered (collinear or single-q) state of an ExchangeModel.

    Parameters
    ----------
    model : ExchangeModel (tensors in eV).
    moments : (L, 3) μB, the ordered state's moments in cell 0 (default: ``model.moments``).
    ordering_vector : (3,) Cartesian 1/Å (with 2π), k of a single-q state ŝ_{i,R} = R_n(k·R) ŝ_i.
    rotation_axis : (3,) n, needed when k ≠ 0.
    spin_lengths : (L,) spin quantum numbers S_i; default |S_i| μ_B/(ħγ).
    gamma : gyromagnetic ratio, rad/(fs·T), used only for the default spin lengths.
    stationarity_tolerance_meV : largest transverse exchange field (meV) accepted on a spin; above
        it the state is not an extremum of the model and LSWT does not apply.

    Example
    -------
    >>> lswt = LinearSpinWaves(compute_exchange(atoms, (4, 4, 4)))
    >>> energies_meV = lswt.energies(q_cart)          # [n_q, L]
    """

    def __init__(self, model: ExchangeModel, moments=None, ordering_vector=(0.0, 0.0, 0.0), rotation_axis=None,
                 spin_lengths=None, gamma: float = GAMMA_RAD_PER_FS_T, stationarity_tolerance_meV: float = 1e-3):
        self.model = model
        moments = model.moments if moments is None else np.asarray(moments, dtype=float)
        L = len(model.positions)
        if moments.shape != (L, 3) or np.any(np.linalg.norm(moments, axis=1) == 0):
            raise ValueError(f"moments must be (L, 3) = ({L}, 3) non-zero vectors in μB, got shape {moments.shape}")
        self.unit, lengths = unit_vectors(moments)
        if spin_lengths is None:
            spin_lengths = lengths * MU_B_EV_PER_T / (HBAR_EV_FS * gamma)
        self.S = np.broadcast_to(np.asarray(spin_lengths, dtype=float), (L,)).copy()
        if (self.S <= 0).any():
            raise ValueError("spin lengths must be positive")
        self.k = np.asarray(ordering_vector, dtype=float)
        if self.k.shape != (3,):
            raise ValueError(f"ordering_vector must be a Cartesian 3-vector in 1/Å, got shape {self.k.shape}")
        bonds = model.bond_vectors - (model.positions[model.j] - model.positions[model.i])  # R @ cell
        phase = bonds @ self.k
        incommensurate_like = np.abs(np.exp(1j * phase) - 1).max(initial=0.0) > 1e-12
        if incommensurate_like:
            if rotation_axis is None:
                raise ValueError("a non-zero ordering vector needs the spins' rotation_axis")
            self.n = np.asarray(rotation_axis, dtype=float) / np.linalg.norm(rotation_axis)
            self._check_rotation_symmetry()
            rot = rotation_about(self.n, phase)
        else:
            self.n = None
            rot = np.broadcast_to(np.eye(3), (len(phase), 3, 3))
        self.bond_J = model.J @ rot  # rotating-frame tensors J_ij(R) R_n(k·R)  [P, 3, 3]
        self._check_stationary(stationarity_tolerance_meV)
        self._build_coefficients()

    def _check_rotation_symmetry(self):
        probe = rotation_about(self.n, np.array([0.7]))[0]
        scale = max(np.abs(self.model.J).max(initial=0), np.abs(self.model.A).max(initial=0))
        for name, T in (("exchange", self.model.J), ("single-ion", self.model.A)):
            if len(T) and np.abs(probe @ T @ probe.T - T).max() > 1e-9 * scale:
                raise ValueError(f"the {name} tensors are not symmetric under rotations about the rotation axis "
                                 f"{self.n.round(4).tolist()}: a single-q state needs a commensurate supercell here")

    def _check_stationary(self, tolerance_meV):
        m, u = self.model, self.unit
        field = np.zeros((len(u), 3))
        np.add.at(field, m.i, np.einsum("pab,pb->pa", self.bond_J, u[m.j]))
        field += 2.0 * np.einsum("sab,sb->sa", m.A, u)
        transverse = field - np.einsum("sa,sa->s", field, u)[:, None] * u
        worst = np.linalg.norm(transverse, axis=1).max()
        if 1e3 * worst > tolerance_meV:
            raise ValueError(f"the moments are not a stationary state of the exchange model: transverse exchange "
                             f"field up to {1e3 * worst:.3g} meV (tolerance {tolerance_meV} meV); relax the spins "
                             "first, or give the ordering vector and rotation axis of a spiral")
        self.local_field = np.einsum("sa,sa->s", field, u)  # eV, > 0 where the spin is along its field

    def _build_coefficients(self):
        m, S, L = self.model, self.S, len(self.S)
        e1, e2 = tangent_frames(self.unit)
        u, v = e1 + 1j * e2, self.unit
        i, j = m.i, m.j
        M = -self.bond_J / (2.0 * S[i] * S[j])[:, None, None]  # quantum-spin bond matrices, eV
        c = 0.5 * np.sqrt(S[i] * S[j])
        self._t_ij = c * np.einsum("pa,pab,pb->p", u[i], M, u[j].conj())  # a_i† a_j e^{iq·R}
        self._t_ji = c * np.einsum("pa,pab,pb->p", u[i].conj(), M, u[j])  # a_j† a_i e^{−iq·R}
        self._p_ij = c * np.einsum("pa,pab,pb->p", u[i], M, u[j])  # a_i,q† a_j,−q† e^{iq·R}
        longitudinal = np.einsum("pa,pab,pb->p", v[i], M, v[j])
        diag = np.zeros(L, dtype=complex)
        np.add.at(diag, i, -S[j] * longitudinal)
        np.add.at(diag, j, -S[i] * longitudinal)
        ion = -m.A / (S**2)[:, None, None]
        diag += S * (np.einsum("sa,sab,sb->s", e1, ion, e1) + np.einsum("sa,sab,sb->s", e2, ion, e2)) \
            - 2.0 * S * np.einsum("sa,sab,sb->s", v, ion, v)
        self._diag = diag
        self._p_diag = 0.5 * S * np.einsum("sa,sab,sb->s", u, ion, u)
        self._R_cart = m.R @ m.cell

    def hamiltonian(self, q_cart) -> np.ndarray:
        """The bosonic matrices h(q) [n_q, 2L, 2L] (eV) of H = ½ Σ_q X_q† h(q) X_q."""
        q = np.atleast_2d(np.asarray(q_cart, dtype=float))
        L, m = len(self.S), self.model
        flat_ij, flat_ji = m.i * L + m.j, m.j * L + m.i

        def blocks(qs):
            phase = np.exp(1j * qs @ self._R_cart.T)  # [n_q, P]
            A = np.zeros((len(qs), L * L), dtype=complex)
            P = np.zeros((len(qs), L * L), dtype=complex)
            np.add.at(A.T, flat_ij, (self._t_ij * phase).T)
            np.add.at(A.T, flat_ji, (self._t_ji * phase.conj()).T)
            np.add.at(P.T, flat_ij, (self._p_ij * phase).T)
            A, P = A.reshape(-1, L, L), P.reshape(-1, L, L)
            A[:, np.arange(L), np.arange(L)] += self._diag
            P[:, np.arange(L), np.arange(L)] += self._p_diag
            return A, P

        A_p, P_p = blocks(q)
        A_m, P_m = blocks(-q)
        B = P_p + P_m.transpose(0, 2, 1)
        top = np.concatenate([A_p, B], axis=2)
        bottom = np.concatenate([B.conj().transpose(0, 2, 1), A_m.transpose(0, 2, 1)], axis=2)
        return np.concatenate([top, bottom], axis=1)

    def energies(self, q_cart) -> np.ndarray:
        """Magnon energies ħω_n(q) [n_q, L] in meV, descending, in the rotating frame for a spiral
        (see :meth:`lab_energies`). Where the state is unstable (h(q) not positive semi-definite)
        the imaginary frequencies come out as negative numbers, as in phonopy."""
        h = self.hamiltonian(q_cart)
        L = len(self.S)
        g = np.concatenate([np.ones(L), -np.ones(L)])
        tolerance = 1e-6 * (np.abs(self.bond_J).max(initial=0.0) + np.abs(self.model.A).max(initial=0.0)) / self.S.min()
        out = np.empty((len(h), L))
        for n, hq in enumerate(h):
            try:
                K = np.linalg.cholesky(hq).conj().T  # h = K† K
                out[n] = np.sort(np.linalg.eigvalsh(K @ (g[:, None] * K.conj().T)))[::-1][:L]
                continue
            except np.linalg.LinAlgError:
                pass
            # Goldstone modes (h only semi-definite) or an instability: the eigenvalues of g h are
            # ω_n(q) and −ω_n(−q), or pairs ±iγ for unstable modes
            lam = np.linalg.eigvals(g[:, None] * hq)
            imaginary = np.abs(lam.imag) > tolerance
            keep = np.where(imaginary, lam.imag > 0, lam.real > -tolerance)
            values = np.where(imaginary, -np.abs(lam.imag), lam.real)[keep]
            out[n] = np.sort(values)[::-1][:L]
        return 1e3 * out

    def lab_energies(self, q_cart) -> np.ndarray:
        """Energies [n_q, 3L] (meV) seen at lab-frame wave vector q for a spiral: ω(q − k), ω(q), ω(q + k)
        (components in the rotation plane carry ±k); equal to :meth:`energies` for k = 0."""
        q = np.atleast_2d(np.asarray(q_cart, dtype=float))
        if self.n is None:
            return self.energies(q)
        return np.concatenate([self.energies(q - self.k), self.energies(q), self.energies(q + self.k)], axis=1)


def monkhorst_pack_cart(cell: np.ndarray, mesh) -> np.ndarray:
    """Γ-centred mesh of Cartesian wave vectors (1/Å, with 2π) in the reciprocal cell of ``cell``."""
    grid = np.stack(np.meshgrid(*[np.arange(n) / n for n in mesh], indexing="ij"), axis=-1).reshape(-1, 3)
    return grid @ (2 * np.pi * np.linalg.inv(cell).T)


def magnon_dos(lswt: LinearSpinWaves, mesh=(16, 16, 16), sigma_meV: float = 1.0, energies_meV=None,
               chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Magnon density of states (states per meV per magnetic cell, L modes in all) on a Γ-centred
    mesh of the model's cell, with Gaussian broadening ``sigma_meV``. Returns (energies_meV, dos)."""
    if sigma_meV <= 0:
        raise ValueError(f"sigma_meV must be positive, got {sigma_meV}")
    q = monkhorst_pack_cart(lswt.model.cell, mesh)
    bands = np.concatenate([lswt.energies(q[s:s + chunk]) for s in range(0, len(q), chunk)])
    if energies_meV is None:
        energies_meV = np.linspace(0.0, bands.max() + 5 * sigma_meV, 400)
    energies_meV = np.asarray(energies_meV, dtype=float)
    dos = np.zeros_like(energies_meV)
    norm = 1.0 / (len(q) * sigma_meV * np.sqrt(2 * np.pi))
    for b in bands.T:
        dos += norm * np.exp(-0.5 * ((energies_meV[:, None] - b[None]) / sigma_meV) ** 2).sum(axis=1)
    return energies_meV, dos


def band_path(atoms, reference_distance: float = 0.025, symprec: float = 1e-3) -> dict:
    """A seekpath band path for the crystal ``atoms`` (its symmetry; spins are ignored).

    Returns a dict: ``q_cart`` [n, 3] Cartesian wave vectors (1/Å, with 2π) in the frame of
    ``atoms``; ``distance`` [n] the path coordinate (1/Å); ``ticks`` [(distance, label)].
    """
    import seekpath

    structure = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
    path = seekpath.get_explicit_k_path(structure, reference_distance=reference_distance, symprec=symprec)
    # seekpath works in a rotated standard frame: v_standard = rotation_matrix @ v_original
    q_cart = np.asarray(path["explicit_kpoints_abs"]) @ np.asarray(path["rotation_matrix"])
    distance = np.asarray(path["explicit_kpoints_linearcoord"])
    labels = path["explicit_kpoints_labels"]
    ticks = [(distance[n], "Γ" if lab == "GAMMA" else lab) for n, lab in enumerate(labels) if lab]
    return {"q_cart": q_cart, "distance": distance, "ticks": ticks}


# ---------------------------------------------------------------- S(q, ω) from dynamics
class SpinRecorder:
    """Observer storing the unit spins of the magnetic atoms at each call (attach to a dynamics).

    Example::

        recorder = SpinRecorder(atoms); md.attach(recorder, interval=5); md.run(n)
        recorder.frames    # [n_frames, n_magnetic, 3]
    """

    def __init__(self, atoms):
        self.atoms = atoms
        self.magnetic = np.flatnonzero(magnetic_mask(atoms.get_initial_magnetic_moments()))
        self._frames = []

    def __call__(self):
        unit, _ = unit_vectors(self.atoms.get_initial_magnetic_moments()[self.magnetic])
        self._frames.append(unit)

    @property
    def frames(self) -> np.ndarray:
        return np.array(self._frames)

    @property
    def positions(self) -> np.ndarray:
        """Å, of the recorded (magnetic) atoms."""
        return self.atoms.positions[self.magnetic]


def dynamical_structure_factor(frames: np.ndarray, positions: np.ndarray, dt_fs: float, q_cart,
                               components: str = "all") -> tuple[np.ndarray, np.ndarray]:
    """Classical S(q, ω) of a spin trajectory by a space–time Fourier transform.

    S(q, ω) = Σ_α |Σ_t w(t) e^{iωt} m_α(q, t)|² / Σ_t w²,
    m_α(q, t) = N^{−1/2} Σ_i δŝ_iα(t) e^{−iq·r_i}
    (δŝ the deviation from the time average, w a Hann window), folded onto ω ≥ 0 (S(q, ω) + S(q, −ω)).

    Parameters
    ----------
    frames : [T, N, 3] unit spins sampled every ``dt_fs`` fs (see :class:`SpinRecorder`).
    positions : [N, 3] Å.
    q_cart : [n_q, 3] Cartesian wave vectors, 1/Å with 2π.
    components : ``"all"`` or ``"x"``, ``"y"``, ``"z"`` (Cartesian spin components summed).

    Returns
    -------
    energies_meV [T//2 + 1] (resolution 2πħ/(T dt)), S [n_q, T//2 + 1] (arbitrary units).
    """
    frames = np.asarray(frames, dtype=float)
    if frames.ndim != 3 or frames.shape[2] != 3 or frames.shape[1] != len(positions):
        raise ValueError(f"frames must be [T, N, 3] with N = {len(positions)} positions, got {frames.shape}")
    if len(frames) < 8:
        raise ValueError("need at least 8 frames for a time Fourier transform")
    if dt_fs <= 0:
        raise ValueError(f"dt_fs must be positive, got {dt_fs}")
    pick = {"all": [0, 1, 2], "x": [0], "y": [1], "z": [2]}
    if components not in pick:
        raise ValueError(f"components must be 'all', 'x', 'y' or 'z', got {components!r}")
    q = np.atleast_2d(np.asarray(q_cart, dtype=float))
    T = len(frames)
    deviation = frames[:, :, pick[components]] - frames[:, :, pick[components]].mean(axis=0)
    phases = np.exp(-1j * q @ np.asarray(positions, dtype=float).T) / np.sqrt(len(positions))  # [n_q, N]
    m = np.einsum("qn,tna->qta", phases, deviation)  # [n_q, T, α]
    window = np.hanning(T)
    spectrum = np.fft.ifft(m * window[None, :, None], axis=1) * T  # Σ_t e^{+iωt}
    power = (np.abs(spectrum) ** 2).sum(axis=2) / (window**2).sum()  # [n_q, T]
    n_pos = T // 2 + 1
    folded = power[:, :n_pos].copy()
    folded[:, 1:] += power[:, ::-1][:, : n_pos - 1]  # −ω_k is index T − k
    if T % 2 == 0:
        folded[:, -1] = power[:, T // 2]
    energies_meV = 1e3 * HBAR_EV_FS * 2 * np.pi * np.arange(n_pos) / (T * dt_fs)
    return energies_meV, folded


# ---------------------------------------------------------------- figures
def plot_magnon_bands(distance, energies_meV, path: str | Path, ticks=(), dos=None, title: str = "",
                      reference: dict | None = None, label: str = "") -> Path:
    """Band plot (PNG): ``energies_meV`` [n, L] along the path coordinate ``distance`` [n] (1/Å), named
    ``label``; optional ``dos`` = (energies_meV, states/meV) panel and ``reference`` = {label: energies [n, L']}."""
    from ..figures import new_figure

    if dos is not None:
        fig = new_figure(figsize=(8, 4.5))
        ax, ax_dos = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [4, 1]})
    else:
        fig = new_figure(figsize=(6.5, 4.5))
        ax = fig.subplots()
    main = ax.plot(distance, energies_meV, color="C0", lw=1.5)
    main[0].set_label(label)
    for n, (name, values) in enumerate((reference or {}).items()):
        lines = ax.plot(distance, values, color=f"C{n + 1}", lw=1.0, ls="--")
        lines[0].set_label(name)
    if reference or label:  # below the axes: inside, it hides whichever curve runs under it
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=7, frameon=False)
    for x, _ in ticks:
        ax.axvline(x, color="0.8", lw=0.8)
    ax.set_xticks([x for x, _ in ticks], [lab for _, lab in ticks])
    ax.set_xlim(distance[0], distance[-1])
    # imaginary modes (unstable: energies() returns them negative) stay in view below zero, as phonopy plots them
    lowest = min([0.0, float(np.min(energies_meV))] + [float(np.min(v)) for v in (reference or {}).values()])
    imaginary = lowest < -1e-3  # meV; Goldstone modes come out at 0 ± round-off
    ax.set_ylim(bottom=lowest * 1.05 if imaginary else 0)
    if imaginary:
        ax.axhline(0.0, color="k", lw=0.6)
    ax.set_ylabel("ħω (meV); below 0: imaginary (unstable)" if imaginary else "ħω (meV)")
    ax.set_title(title)
    if dos is not None:
        ax_dos.plot(dos[1], dos[0], color="C0")
        ax_dos.set_xlabel("DOS (1/meV)")
        ax_dos.set_title(f"density of states\n({label})" if label else "density of states", fontsize=8)
        ax_dos.set_xlim(left=0)
    fig.savefig(path, dpi=130)
    return Path(path)


def plot_structure_factor(distance, energies_meV, intensity, path: str | Path, ticks=(), bands_meV=None,
                          title: str = "") -> Path:
    """Intensity map (PNG) of S(q, ω) [n_q, n_E] along a path, log colour scale relative to its maximum
    (with a colourbar), optional LSWT bands; the title should say which spin lengths the bands use."""
    from ..figures import new_figure

    fig = new_figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    values = np.log10(np.maximum(intensity, intensity.max() * 1e-6) / intensity.max()).T
    mesh = ax.pcolormesh(distance, energies_meV, values, shading="nearest", cmap="viridis")
    fig.colorbar(mesh, ax=ax, label="log₁₀ S(q, ω) / max")
    if bands_meV is not None:
        ax.plot(distance, bands_meV, color="w", lw=0.8, ls="--")
    for x, _ in ticks:
        ax.axvline(x, color="0.8", lw=0.8)
    ax.set_xticks([x for x, _ in ticks], [lab for _, lab in ticks])
    ax.set_ylabel("ħω (meV)")
    ax.set_title(title or "S(q, ω), log scale")
    fig.savefig(path, dpi=130)
    return Path(path)

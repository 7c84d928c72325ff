"""Analytic classical spin-lattice Hamiltonian as an ASE calculator (reference physics).

    E = E_exchange + E_DMI + E_anisotropy + E_on-site + E_Zeeman (+ E_lattice)

Conventions (S_i the moment in μB, ŝ_i = S_i/|S_i| its direction, pairs counted once):

- exchange     E = −Σ_{i<j} J(r_ij) ŝ_i·ŝ_j,  J in eV (J > 0 ferromagnetic).
  ``ShellExchange``: J(r) = J_k for |r − r_k| < tolerance (no lattice forces);
  ``BetheSlater``: J(r) = 4α (r/δ)² (1 − γ (r/δ)²) exp(−(r/δ)²) for r < cutoff, the form of
  LAMMPS's ``pair_style spin/exchange`` (``pair_coeff * * exchange rc α γ δ``), which also uses
  unit spins.
- DMI          E = Σ_{i<j} D_ij · (ŝ_i × ŝ_j), D_ij = −D_ji from a rule: ``"interfacial"``
  D (r̂_ij × n̂), ``"bulk"`` D r̂_ij, or ``"constant"`` D n̂ sign(r̂_ij·â).
- anisotropy   uniaxial E = −K Σ_i (ŝ_i·n̂)²; cubic E = K_c Σ_i (ŝx²ŝy² + ŝy²ŝz² + ŝz²ŝx²)
  in the crystal axes given by a rotation matrix (rows = cubic axes).
- on-site      ``Landau``: E = Σ_i Σ_k c_k (|S_i| − m₀)^{2k} (eV, |S| in μB): the only term that sets
  moment lengths (the terms above depend on directions alone), so longitudinal dynamics and
  length relaxation need one for every magnetic element (:meth:`SpinHamiltonian.check_longitudinal`).
  m₀ = 0 is the Landau expansion a₁|S|² + a₂|S|⁴ + …, smooth at S = 0.
- Zeeman       E = −Σ_i μ_i B·ŝ_i = −μ_B Σ_i B·S_i, B in Tesla, μ_B = 5.788e-5 eV/T.
- lattice      any ASE calculator (EMT, Morse, EAM...), added to energy, forces and stress.

Derivatives come from one torch autograd pass: forces −∂E/∂R (eV/Å), torques −∂E/∂S (eV/μB,
full gradient: transverse for exchange, DMI and anisotropy, which depend on ŝ only; along S for
the on-site term; Zeeman's is μ_B B), stress (1/V) ∂E/∂ε at fixed spins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from ase.calculators.calculator import PropertyNotImplementedError

from ..neighbors import build_neighbor_list

from ..units import MU_B_EV_PER_T
from ..system import magnetic_mask, periodic_for, read_spins
from .contract import SpinCalculatorBase


@dataclass(frozen=True)
class ShellExchange:
    """Shell constants J_k (eV) at shell radii r_k (Å); a pair within ``tolerance`` Å of r_k gets J_k."""

    J: tuple
    radii: tuple
    tolerance: float = 0.1

    def __post_init__(self):
        if len(self.J) != len(self.radii) or not self.J:
            raise ValueError("ShellExchange needs one radius per J constant")
        if any(r <= 0 for r in self.radii) or self.tolerance <= 0:
            raise ValueError("shell radii and tolerance must be positive (Å)")

    @property
    def cutoff(self) -> float:
        return max(self.radii) + self.tolerance

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        J = torch.zeros_like(r)
        for Jk, rk in zip(self.J, self.radii):
            J = torch.where((r - rk).abs() < self.tolerance, torch.full_like(r, Jk), J)
        return J


@dataclass(frozen=True)
class BetheSlater:
    """J(r) = 4α (r/δ)² (1 − γ (r/δ)²) exp(−(r/δ)²) for r < cutoff (α eV, γ dimensionless, δ Å)."""

    alpha: float
    gamma: float
    delta: float
    cutoff: float

    def __post_init__(self):
        if self.cutoff <= 0 or self.delta <= 0:
            raise ValueError("BetheSlater needs a positive cutoff and delta (Å)")

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        x2 = (r / self.delta) ** 2
        return torch.where(r < self.cutoff, 4 * self.alpha * x2 * (1 - self.gamma * x2) * torch.exp(-x2),
                           torch.zeros_like(r))


@dataclass(frozen=True)
class DMI:
    """Dzyaloshinskii–Moriya pairs within ``cutoff`` (Å) with magnitude D (eV) and a vector rule."""

    D: float
    cutoff: float
    rule: str = "interfacial"
    normal: tuple = (0.0, 0.0, 1.0)
    axis: tuple | None = None

    def __post_init__(self):
        if self.cutoff <= 0:
            raise ValueError("DMI cutoff must be positive (Å)")
        if self.rule not in ("interfacial", "bulk", "constant"):
            raise ValueError(f"DMI rule must be 'interfacial', 'bulk' or 'constant', got {self.rule!r}")
        if np.linalg.norm(self.normal) == 0:
            raise ValueError("DMI rule vector (normal) has zero length")
        if self.rule == "constant" and (self.axis is None or np.linalg.norm(self.axis) == 0):
            raise ValueError("DMI rule 'constant' needs a non-zero bond axis to orient D_ij = −D_ji")

    def vectors(self, unit: torch.Tensor) -> torch.Tensor:
        """D_ij [E, 3] (eV) for bond directions r̂_ij [E, 3]."""
        n = torch.as_tensor(self.normal, dtype=unit.dtype) / float(np.linalg.norm(self.normal))
        if self.rule == "interfacial":
            return self.D * torch.cross(unit, n.expand_as(unit), dim=-1)
        if self.rule == "bulk":
            return self.D * unit
        a = torch.as_tensor(self.axis, dtype=unit.dtype)
        side = torch.sign(unit @ a)
        if bool((side == 0).any()):
            raise ValueError("a DMI bond is perpendicular to the 'constant' rule's axis: D_ij is undefined")
        return self.D * side.unsqueeze(-1) * n


@dataclass(frozen=True)
class Anisotropy:
    """Single-ion anisotropy: uniaxial −K (ŝ·n̂)² (K eV, axis n̂) plus cubic K_c Σ ŝa²ŝb² (eV)."""

    K: float = 0.0
    axis: tuple = (0.0, 0.0, 1.0)
    K_cubic: float = 0.0
    cubic_axes: tuple = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))

    def __post_init__(self):
        if np.linalg.norm(self.axis) == 0:
            raise ValueError("anisotropy axis has zero length")

    def energy(self, unit: torch.Tensor) -> torch.Tensor:
        n = torch.as_tensor(self.axis, dtype=unit.dtype)
        n = n / n.norm()
        e = -self.K * (unit @ n) ** 2
        if self.K_cubic:
            c = unit @ torch.as_tensor(self.cubic_axes, dtype=unit.dtype).T
            c2 = c**2
            e = e + self.K_cubic * (c2[:, 0] * c2[:, 1] + c2[:, 1] * c2[:, 2] + c2[:, 2] * c2[:, 0])
        return e


@dataclass(frozen=True)
class Landau:
    """On-site energy of a moment's length: Σ_k c_k (|S| − center)^{2k}, k = 1, 2, … (c_k in eV/μB^{2k}).

    ``Landau(coefficients=(a, b), center=m)`` is a(|S| − m)² + b(|S| − m)⁴, minimal at |S| = m when
    a, b > 0; ``center=0`` gives the Landau expansion a|S|² + b|S|⁴, which with a < 0 < b has its
    minimum at |S|² = −a/(2b). The highest coefficient must be positive (bounded below).
    """

    coefficients: tuple = (1.0,)
    center: float = 0.0

    def __post_init__(self):
        if not len(self.coefficients) or not self.coefficients[-1] > 0:
            raise ValueError(f"the highest on-site coefficient must be positive (energy bounded below), got "
                             f"{self.coefficients}")
        if self.center < 0:
            raise ValueError(f"the on-site center is a moment length, ≥ 0 μB, got {self.center}")

    def energy(self, lengths: torch.Tensor) -> torch.Tensor:
        delta2 = (lengths - self.center) ** 2
        return sum(c * delta2 ** (k + 1) for k, c in enumerate(self.coefficients))


def _pair_key(a: str, b: str) -> tuple:
    return tuple(sorted((a, b)))


def _edge_pairs(symbols: np.ndarray, nl) -> tuple[np.ndarray, dict]:
    """Integer code of each edge's unordered element pair [E], and the code of each pair key."""
    elements, types = np.unique(symbols, return_inverse=True)
    ti, tj = types[nl.centers], types[nl.neighbors]
    codes = {_pair_key(a, b): min(ka, kb) * len(elements) + max(ka, kb)
             for ka, a in enumerate(elements) for kb, b in enumerate(elements)}
    return np.minimum(ti, tj) * len(elements) + np.maximum(ti, tj), codes


class SpinHamiltonian(SpinCalculatorBase):
    """Classical spin-lattice Hamiltonian with the contract of :class:`DeepSpinCalculator`.

    Parameters
    ----------
    exchange : {(el_a, el_b): ShellExchange | BetheSlater}
    dmi : {(el_a, el_b): DMI}
    anisotropy : {element: Anisotropy}
    onsite : {element: Landau}, the energy of each moment's length
    field_T : (3,) external field B in Tesla (Zeeman term on every atom with a spin)
    lattice : ASE calculator added for the lattice energy (e.g. ``ase.calculators.emt.EMT()``)

    Elements named in a pair, anisotropy or on-site rule are magnetic and need non-zero spins; other
    elements must carry none (with no rules at all, any atom with a moment feels the field).
    LAMMPS SPIN's Zeeman energy is −2 μ_B B |s| (ŝ·n) (a g = 2 factor on |s|): a LAMMPS field
    B with moments |s| equals ``field_T = 2 B`` here for the same |S| = |s|.

    Example
    -------
    >>> calc = SpinHamiltonian(exchange={("Fe", "Fe"): ShellExchange(J=(0.01,), radii=(2.48,))})
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "magnetic_torques"]

    def __init__(self, exchange=None, dmi=None, anisotropy=None, field_T=(0.0, 0.0, 0.0), lattice=None,
                 onsite=None, **kwargs):
        super().__init__(**kwargs)
        self.onsite = dict(onsite or {})
        self.exchange = {_pair_key(*k): v for k, v in (exchange or {}).items()}
        self.dmi = {_pair_key(*k): v for k, v in (dmi or {}).items()}
        self.anisotropy = dict(anisotropy or {})
        self.field_T = np.asarray(field_T, dtype=float)
        if self.field_T.shape != (3,):
            raise ValueError(f"field_T must be a 3-vector in Tesla, got shape {self.field_T.shape}")
        self.lattice = lattice
        from ase.data import chemical_symbols

        for key in [*self.exchange, *self.dmi, *[(k,) for k in [*self.anisotropy, *self.onsite]]]:
            unknown = [el for el in key if el not in chemical_symbols[1:]]
            if unknown:
                raise ValueError(f"unknown element {unknown[0]!r} in a spin Hamiltonian rule {key}")
        self.magnetic_elements = ({el for key in [*self.exchange, *self.dmi] for el in key} | set(self.anisotropy)
                                  | set(self.onsite))
        cutoffs = [t.cutoff for t in self.exchange.values()] + [t.cutoff for t in self.dmi.values()]
        self.cutoff = max(cutoffs, default=0.0)

    def _calculate(self, properties):
        atoms = self.atoms
        periodic = periodic_for(atoms, properties)
        n = len(atoms)
        symbols = np.array(atoms.get_chemical_symbols())
        spins = read_spins(atoms, magnetic=self.magnetic_elements)
        has_spin = magnetic_mask(spins)
        pos = torch.tensor(atoms.positions, dtype=torch.float64, requires_grad=True)
        S = torch.tensor(spins, dtype=torch.float64, requires_grad=True)
        strain = torch.zeros(3, 3, dtype=torch.float64, requires_grad=True)
        norm = S.norm(dim=1, keepdim=True)
        unit = torch.where(torch.as_tensor(has_spin)[:, None], S / torch.where(norm > 0, norm, 1.0), 0.0)
        energies = torch.zeros(n, dtype=torch.float64)

        if self.cutoff > 0:
            nl = build_neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, np.zeros((n, 3)), self.cutoff)
            i, j = torch.as_tensor(nl.centers), torch.as_tensor(nl.neighbors)
            d = pos[j] - pos[i] + torch.as_tensor(nl.shifts @ atoms.cell.array)
            d = d + d @ strain
            r = d.norm(dim=1)
            pair_code, code = _edge_pairs(symbols, nl)
            pair_code = torch.as_tensor(pair_code)
            pair_e = torch.zeros_like(r)
            for rules, kind in ((self.exchange, "exchange"), (self.dmi, "dmi")):
                for key, term in rules.items():
                    if key not in code:
                        continue
                    mask = (pair_code == code[key]) & (r < term.cutoff)
                    if not bool(mask.any()):
                        continue
                    idx = mask.nonzero().squeeze(-1)
                    si, sj = unit[i[idx]], unit[j[idx]]
                    if kind == "exchange":
                        e = -term(r[idx]) * (si * sj).sum(-1)
                    else:
                        e = (term.vectors(d[idx] / r[idx, None]) * torch.cross(si, sj, dim=-1)).sum(-1)
                    pair_e = pair_e.index_add(0, idx, e)
            # full list: each bond twice; give each end half of its bond energy
            energies = energies.index_add(0, i, 0.5 * pair_e)
        for element, term in self.anisotropy.items():
            idx = torch.as_tensor(np.flatnonzero(symbols == element))
            if len(idx):
                energies = energies.index_add(0, idx, term.energy(unit[idx]))
        for element, term in self.onsite.items():
            idx = torch.as_tensor(np.flatnonzero(symbols == element))
            if len(idx):
                energies = energies.index_add(0, idx, term.energy(norm[idx, 0]))
        if self.field_T.any():
            energies = energies - MU_B_EV_PER_T * (S @ torch.as_tensor(self.field_T))
        energy = energies.sum()
        grads = torch.autograd.grad(energy, [pos, S, strain], allow_unused=True)
        grads = [torch.zeros(shape, dtype=torch.float64) if g is None else g
                 for g, shape in zip(grads, [(n, 3), (n, 3), (3, 3)])]
        self.results = {
            "energy": float(energy.detach()), "free_energy": float(energy.detach()),
            "energies": energies.detach().numpy().copy(),
            "forces": -grads[0].numpy(),
            "magnetic_torques": -grads[1].numpy(),
        }
        if periodic:
            w = grads[2].numpy()
            self.results["stress"] = (0.5 * (w + w.T) / atoms.get_volume()).flat[[0, 4, 8, 5, 2, 1]]
        if self.lattice is not None:
            self._add_lattice(atoms, periodic)

    def frozen_lattice_field(self, atoms):
        """Effective-field function for spin dynamics on a fixed lattice (fast path).

        Returns ``field(unit) -> B`` [N, 3] in Tesla, B = −(∂E/∂ŝ)/(|S| μ_B), for unit spins at the
        current positions of ``atoms`` (magnitudes |S| from its moments). Exchange and DMI are
        precomputed as sparse matrices, so a call costs a few sparse products: no neighbour
        search, no autograd. The lattice term does not act on spins and is left out, and so is the
        on-site term, which acts along S only.
        """
        import scipy.sparse as sp

        n = len(atoms)
        symbols = np.array(atoms.get_chemical_symbols())
        moments = np.linalg.norm(atoms.get_initial_magnetic_moments(), axis=1)
        scale = np.divide(-1.0, moments * MU_B_EV_PER_T, out=np.zeros(n), where=moments > 0)[:, None]
        exchange = sp.csr_matrix((n, n))
        dmi = [sp.csr_matrix((n, n)) for _ in range(3)]
        if self.cutoff > 0:
            nl = build_neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, np.zeros((n, 3)), self.cutoff)
            d = atoms.positions[nl.neighbors] - atoms.positions[nl.centers] + nl.shifts @ atoms.cell.array
            r = np.linalg.norm(d, axis=1)
            pair_code, code = _edge_pairs(symbols, nl)
            pair = {k: pair_code == code[k] if k in code else np.zeros(len(r), bool) for k in {*self.exchange, *self.dmi}}
            for key, term in self.exchange.items():
                m = pair[key] & (r < term.cutoff)
                J = term(torch.as_tensor(r[m])).numpy()
                exchange = exchange + sp.csr_matrix((J, (nl.centers[m], nl.neighbors[m])), shape=(n, n))
            for key, term in self.dmi.items():
                m = pair[key] & (r < term.cutoff)
                D = term.vectors(torch.as_tensor(d[m] / r[m, None])).numpy()
                dmi = [dmi[a] + sp.csr_matrix((D[:, a], (nl.centers[m], nl.neighbors[m])), shape=(n, n))
                       for a in range(3)]
        anisotropy = [(np.flatnonzero(symbols == el), term) for el, term in self.anisotropy.items()]
        magnetic = moments > 0
        external = self.field_T

        def field(unit: np.ndarray) -> np.ndarray:
            grad = -(exchange @ unit)  # ∂E/∂ŝ_i = −Σ_j J_ij ŝ_j (each pair once in E, from both ends here)
            if self.dmi:
                sx, sy, sz = unit[:, 0:1], unit[:, 1:2], unit[:, 2:3]
                # Σ_j ŝ_j × D_ij, component by component
                grad = grad + np.hstack([dmi[2] @ sy - dmi[1] @ sz, dmi[0] @ sz - dmi[2] @ sx,
                                         dmi[1] @ sx - dmi[0] @ sy])
            for idx, term in anisotropy:
                u = unit[idx]
                axis = np.asarray(term.axis, float) / np.linalg.norm(term.axis)
                g = -2.0 * term.K * (u @ axis)[:, None] * axis
                if term.K_cubic:
                    R = np.asarray(term.cubic_axes, float)
                    c = u @ R.T
                    c2 = c**2
                    g = g + (2.0 * term.K_cubic * c * (c2.sum(axis=1, keepdims=True) - c2)) @ R
                grad[idx] += g
            grad *= scale
            grad += external
            grad[~magnetic] = 0.0
            return grad

        return field

    def _add_lattice(self, atoms, periodic):
        plain = atoms.copy()
        plain.calc = self.lattice
        e = plain.get_potential_energy()
        for key, value in (("energy", e), ("free_energy", e), ("forces", plain.get_forces())):
            self.results[key] = self.results[key] + value
        try:
            self.results["energies"] = self.results["energies"] + plain.get_potential_energies()
        except (PropertyNotImplementedError, NotImplementedError):
            self.results["energies"] = self.results["energies"] + e / len(atoms)
        if periodic:
            self.results["stress"] = self.results["stress"] + plain.get_stress()

    def check_longitudinal(self, atoms) -> None:
        """Raise ValueError unless every magnetic element of ``atoms`` has an on-site term: without
        one nothing bounds its moment length (the other terms depend on directions only)."""
        spins = read_spins(atoms, magnetic=self.magnetic_elements)
        present = set(np.asarray(atoms.get_chemical_symbols())[magnetic_mask(spins)].tolist())
        missing = sorted(present - set(self.onsite))
        if missing:
            raise ValueError(f"no on-site (Landau) term for {missing}: this Hamiltonian leaves their moment lengths "
                             "unbounded, so they cannot change length; add onsite={element: Landau(...)}")

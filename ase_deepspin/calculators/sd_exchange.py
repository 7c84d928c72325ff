"""The s–d exchange (Kondo-lattice) model: electrons hopping between atoms, coupled to classical spins.

Itinerant electrons (one orbital per atom, spin up and down) hop between atoms closer than ``cutoff``
and feel the classical spin S_i of their atom through the s–d (Hund or Kondo) coupling:

    H = Σ_(ij),σ h(r_ij) c†_iσ c_jσ + J Σ_i S_i · (c†_i σ c_i),     h(r) = −t s(r)

with σ the Pauli matrices, t the hopping (eV), J the coupling (eV/μB: per μB of local moment, so
that unit spins of 1 μB give the usual J of the Kondo-lattice model; J > 0 favours electron spins
antiparallel to S), and s(r) = 1 up to ``cutoff − cutoff_width``, a quintic switch to 0 at
``cutoff`` (so forces exist and are continuous). The 2N × 2N single-particle Hamiltonian is
diagonalised exactly (cost N³; below 256 atoms on one torch thread, as the package's other
calculators). Electrons are Fermi–Dirac occupied at the electronic temperature
``smearing_eV`` = k_B T_e, either at a fixed ``filling`` (the fraction of the 2N states occupied;
the chemical potential μ follows) or at a fixed ``chemical_potential_eV``. The energy is the
corresponding thermodynamic potential, for which the Hellmann–Feynman theorem is exact:

    fixed filling:  F = Σ_n f_n ε_n + k_B T_e Σ_n [f_n ln f_n + (1 − f_n) ln(1 − f_n)]   (Mermin)
    fixed μ:        Ω = −k_B T_e Σ_n ln(1 + exp(−(ε_n − μ)/k_B T_e))

    dE/dλ = Tr(ρ ∂H/∂λ),  ρ = Σ_n f_n |n⟩⟨n|,  so  ω_i = −∂E/∂S_i = −J m_i,  m_i = ⟨c†_i σ c_i⟩

(m_i the local electron spin density), and forces and stress follow from ∂h/∂r the same way.
Non-magnetic elements (``magnetic``) carry no spin and no coupling; their electrons still hop. Without
spin–orbit terms the energy is unchanged when all spins rotate together, lattice fixed.

=========  ==========================  ======================================
symbol     parameter                   units
=========  ==========================  ======================================
t          ``hopping_eV``              eV
J          ``coupling_eV_per_muB``     eV/μB
k_B T_e    ``smearing_eV``             eV (> 0)
μ          ``chemical_potential_eV``   eV (or ``filling``, dimensionless)
=========  ==========================  ======================================
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.special import expit, xlogy

from ..model.descriptor import smooth_switch
from ..neighbors import build_neighbor_list
from ..system import magnetic_mask, read_spins
from ..threads import thread_scope
from .contract import SpinCalculatorBase

PAULI = torch.tensor([[[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]], dtype=torch.complex128)


def fermi_occupations(energies: np.ndarray, mu: float, smearing_eV: float) -> np.ndarray:
    """Fermi–Dirac occupations f = 1/(1 + exp((ε − μ)/k_BT)) of levels ``energies`` (eV)."""
    return expit(-(energies - mu) / smearing_eV)


def chemical_potential(energies: np.ndarray, n_electrons: float, smearing_eV: float) -> float:
    """μ (eV) at which the Fermi–Dirac occupations of ``energies`` hold ``n_electrons``."""
    def excess(mu):
        return fermi_occupations(energies, mu, smearing_eV).sum() - n_electrons

    low, high = energies.min() - 50 * smearing_eV, energies.max() + 50 * smearing_eV
    return float(brentq(excess, low, high, xtol=1e-14, rtol=1e-15, maxiter=500))


class SdExchangeCalculator(SpinCalculatorBase):
    """ASE calculator of the s–d exchange (Kondo-lattice) model of the module docstring.

    Parameters
    ----------
    hopping_eV : t, eV (the hopping amplitude is −t between atoms closer than the switch region).
    coupling_eV_per_muB : J, eV/μB.
    cutoff : Å; atoms closer than this are hopping neighbours.
    cutoff_width : Å; the hopping switches off smoothly over [cutoff − cutoff_width, cutoff].
    filling : fraction of the 2N one-electron states occupied (0 < filling < 1), or None with
        ``chemical_potential_eV`` given instead.
    chemical_potential_eV : μ, eV, for the grand-canonical energy (then ``filling`` is None).
    smearing_eV : k_B T_e, eV; the electronic temperature (> 0; small values approach the ground state).
    magnetic : elements that carry spins (default: every element present).

    Results: ``energy`` = ``free_energy`` (F or Ω, eV), ``forces`` (eV/Å), ``stress`` (eV/Å³, fully
    periodic cells), ``magnetic_torques`` (eV/μB); ``self.chemical_potential`` (eV) and
    ``self.spin_density`` (N, 3) of the latest calculation.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "magnetic_torques"]

    def __init__(self, hopping_eV: float = 1.0, coupling_eV_per_muB: float = 1.0, cutoff: float = 1.2,
                 cutoff_width: float = 0.1, filling: float | None = 0.25, chemical_potential_eV: float | None = None,
                 smearing_eV: float = 0.01, magnetic=None, **kwargs):
        if (filling is None) == (chemical_potential_eV is None):
            raise ValueError("give exactly one of filling (0 < filling < 1) and chemical_potential_eV")
        if filling is not None and not 0.0 < float(filling) < 1.0:
            raise ValueError(f"filling is the fraction of the 2N one-electron states occupied, 0 < filling < 1; got "
                             f"{filling}")
        if not (np.isfinite(smearing_eV) and smearing_eV > 0):
            raise ValueError(f"smearing_eV (k_B T_e, eV) must be positive, got {smearing_eV}")
        if not (cutoff > 0 and 0 < cutoff_width <= cutoff):
            raise ValueError(f"need cutoff > 0 and 0 < cutoff_width <= cutoff (Å), got {cutoff}, {cutoff_width}")
        for name, value in (("hopping_eV", hopping_eV), ("coupling_eV_per_muB", coupling_eV_per_muB)):
            if not np.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value}")
        super().__init__(**kwargs)
        self.hopping_eV, self.coupling_eV_per_muB = float(hopping_eV), float(coupling_eV_per_muB)
        self.cutoff, self.cutoff_width = float(cutoff), float(cutoff_width)
        self.filling = None if filling is None else float(filling)
        self.mu_fixed = None if chemical_potential_eV is None else float(chemical_potential_eV)
        self.smearing_eV = float(smearing_eV)
        self.magnetic = None if magnetic is None else {str(e) for e in magnetic}
        self.chemical_potential = None
        self.spin_density = None

    def _calculate(self, properties):
        # small lattices on one torch thread: on shared cores a 288 × 288 eigh took 0.1–0.3 s on two threads
        # against 0.03–0.05 s on one
        with thread_scope(len(self.atoms)):
            self._diagonalise()

    def _diagonalise(self):
        atoms = self.atoms
        n = len(atoms)
        # magnetism by element, as every spin calculator of the package decides it
        elements = set(atoms.get_chemical_symbols()) if self.magnetic is None else self.magnetic
        spins = read_spins(atoms, magnetic=elements)
        magnetic = magnetic_mask(spins)
        periodic = bool(np.all(atoms.pbc))
        nl = build_neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, np.zeros((n, 3)), self.cutoff)
        # an atom's own periodic images are hopping neighbours (diagonal terms of a Γ-point supercell)
        keep = ~nl.pseudo & ~((nl.centers == nl.neighbors) & ~np.any(nl.shifts, axis=1))
        i, j = torch.as_tensor(nl.centers[keep]), torch.as_tensor(nl.neighbors[keep])
        positions = torch.tensor(atoms.positions, dtype=torch.float64, requires_grad=True)
        S = torch.tensor(spins, dtype=torch.float64, requires_grad=True)
        strain = torch.zeros(3, 3, dtype=torch.float64, requires_grad=True)
        d = positions[j] - positions[i] + torch.as_tensor(nl.shifts[keep] @ atoms.cell.array, dtype=torch.float64)
        d = d + d @ strain
        r = torch.linalg.vector_norm(d, dim=1)
        amplitude = -self.hopping_eV * smooth_switch(r, self.cutoff - self.cutoff_width, self.cutoff)
        # every directed edge (i, j, shift) is listed together with (j, i, −shift): K is symmetric
        hopping = torch.zeros(n, n, dtype=torch.float64).index_put((i, j), amplitude, accumulate=True)
        coupled = S * torch.as_tensor(magnetic, dtype=torch.float64)[:, None]  # no coupling, no torque elsewhere
        onsite = self.coupling_eV_per_muB * torch.einsum("ia,abc->ibc", coupled.to(torch.complex128), PAULI)
        H = torch.kron(hopping.to(torch.complex128), torch.eye(2, dtype=torch.complex128))
        rows = 2 * torch.arange(n)[:, None, None] + torch.arange(2)[None, :, None]  # the 2 × 2 block of each site
        H = H.index_put((rows.expand(n, 2, 2), rows.transpose(1, 2).expand(n, 2, 2)), onsite, accumulate=True)
        levels, vectors = torch.linalg.eigh(H.detach())
        levels = levels.numpy()
        kT = self.smearing_eV
        if self.filling is not None:
            mu = chemical_potential(levels, self.filling * 2 * n, kT)
            f = fermi_occupations(levels, mu, kT)
            energy = float(np.dot(f, levels) + kT * np.sum(xlogy(f, f) + xlogy(1 - f, 1 - f)))
        else:
            mu = self.mu_fixed
            f = fermi_occupations(levels, mu, kT)
            energy = float(-kT * np.sum(np.logaddexp(0.0, -(levels - mu) / kT)))
        density = (vectors * torch.as_tensor(f)) @ vectors.conj().T  # ρ = Σ f |n⟩⟨n|
        # Hellmann–Feynman: dE/dλ = Tr(ρ ∂H/∂λ), by autograd of Tr(ρ H) with ρ held fixed
        trace = (density.T * H).sum().real
        wanted = [positions, S] + ([strain] if periodic else [])
        grads = torch.autograd.grad(trace, wanted, allow_unused=True)
        zeros = torch.zeros(n, 3, dtype=torch.float64)
        forces = -(grads[0] if grads[0] is not None else zeros).numpy()
        torques = -(grads[1] if grads[1] is not None else zeros).numpy()
        blocks = density.reshape(n, 2, n, 2).diagonal(dim1=0, dim2=2).permute(2, 0, 1)  # ρ_ii [N, 2, 2]
        self.spin_density = torch.einsum("ibc,acb->ia", blocks, PAULI).real.numpy()
        self.chemical_potential = mu
        self.results = {"energy": energy, "free_energy": energy, "forces": forces, "magnetic_torques": torques}
        if periodic:
            virial = grads[2].numpy() if grads[2] is not None else np.zeros((3, 3))
            stress = (virial + virial.T) / 2 / atoms.get_volume()
            self.results["stress"] = stress.reshape(9)[[0, 4, 8, 5, 2, 1]]

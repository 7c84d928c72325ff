"""Labels from collinear spin-polarised DFT (GPAW by default, any ASE DFT calculator in its place).

Without spin–orbit coupling a collinear self-consistent state has no transverse torque: every spin
field points along its spin by symmetry. A collinear DFT calculation therefore labels a frame whose
spins are collinear (parallel or antiparallel to one axis) with its energy, forces and stress, and with
torques whose part across each spin is zero — exactly, without a spin constraint. The part along a spin
is no label: the frame's moment lengths are the training data's convention (the model's input), not the
lengths the DFT finds, which :class:`CollinearDFT` records beside them (``label_moments``).

:class:`CollinearDFT` wraps a factory of ASE calculators; :func:`gpaw_labeller` builds one for GPAW
(plane waves, PBE+U). To label with VASP, ABACUS or another code, pass a factory of its ASE calculator
(set up for collinear spin polarisation: ``ispin=2`` in VASP's) and the settings to record; for
non-collinear labels with constrained moments (DeltaSpin in VASP or ABACUS) write the frames as a
DeePMD-kit npy system instead (:func:`ase_deepspin.io.frames.write_deepmd_npy`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from ..io.frames import Frame


def collinear_axis(spins: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The common axis of spins (N, 3) μB: (axis (3,), signed lengths along it (N,) μB, largest angle in
    rad between a nonzero spin and ±axis). The axis is the leading eigenvector of Σ S_i S_iᵀ, its sign
    that of the first nonzero spin."""
    spins = np.asarray(spins, dtype=float)
    if spins.ndim != 2 or spins.shape[1] != 3:
        raise ValueError(f"spins must be (N, 3) μB, got shape {spins.shape}")
    lengths = np.linalg.norm(spins, axis=1)
    magnetic = lengths > 0
    if not magnetic.any():
        raise ValueError("no atom has a spin: a collinear spin-polarised calculation needs a spin order")
    axis = np.linalg.eigh(spins[magnetic].T @ spins[magnetic])[1][:, -1]
    axis *= np.sign(spins[magnetic][0] @ axis) or 1.0
    along = spins @ axis
    # the angle from sine and cosine both: arccos alone loses half the digits near collinear
    angles = np.arctan2(np.linalg.norm(np.cross(spins[magnetic], axis), axis=1), np.abs(along[magnetic]))
    return axis, np.sign(along) * lengths, float(angles.max())


def _projected(atoms):
    """(copy of ``atoms`` with its spins on their common axis, lengths kept; the axis (3,))."""
    axis, signed, _ = collinear_axis(atoms.get_initial_magnetic_moments())
    projected = atoms.copy()
    projected.calc = None
    projected.set_initial_magnetic_moments(signed[:, None] * axis)
    return projected, axis


class CollinearDFT(Calculator):
    """Collinear spin-polarised DFT as a spin calculator and an active-learning labeller.

    Parameters
    ----------
    factory : called without arguments for each frame, returns a fresh ASE calculator that runs
        collinear spin-polarised DFT from the atoms' (N,) initial magnetic moments.
    method : the settings to record in every labelled frame (JSON-able; e.g. code, version,
        functional, cutoff, k-points).
    tolerance_rad : the largest angle between a spin and the frame's axis that still counts as
        collinear (rad). Frames beyond it are refused by :meth:`calculate`; :meth:`label_frame` labels
        their collinear projection instead.

    Results: ``energy`` and ``free_energy`` (eV), ``forces`` (N, 3) eV/Å, ``stress`` (6,) eV/Å³ (only
    when asked for: check a code's stress against the slope of its E(V) before training on it),
    ``magnetic_torques`` (N, 3) eV/μB (zero: see the module) and ``magmoms`` (N,) μB, the moments the
    DFT found, signed along the axis.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "magnetic_torques", "magmoms"]

    def __init__(self, factory: Callable[[], Calculator], method: dict, tolerance_rad: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.factory = factory
        self.method = dict(method)
        self.tolerance_rad = float(tolerance_rad)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        spins = self.atoms.get_initial_magnetic_moments()
        if spins.ndim != 2:
            raise ValueError("spins must be non-collinear (N, 3) magnetic moments in μB, as the package's "
                             "calculators take them")
        axis, signed, angle = collinear_axis(spins)
        if angle > self.tolerance_rad:
            raise ValueError(f"the spins are not collinear (one is {np.degrees(angle):.3g}° off their common "
                             f"axis, tolerance {np.degrees(self.tolerance_rad):.3g}°): collinear DFT cannot "
                             "label this frame; label_frame labels its collinear projection")
        dft_atoms = self.atoms.copy()
        dft_atoms.set_initial_magnetic_moments(None)
        dft_atoms.set_initial_magnetic_moments(signed)
        dft_atoms.calc = self.factory()
        energy = dft_atoms.get_potential_energy()
        self.results = {"energy": energy, "free_energy": dft_atoms.get_potential_energy(force_consistent=True),
                        "forces": dft_atoms.get_forces(),
                        "magnetic_torques": np.zeros((len(dft_atoms), 3)),
                        "magmoms": np.asarray(dft_atoms.calc.get_magnetic_moments(dft_atoms), dtype=float)}
        if "stress" in properties:
            self.results["stress"] = dft_atoms.get_stress()

    def collinear(self, atoms):
        """A copy of ``atoms`` with each spin replaced by its projection on the common axis, length kept
        (the structure :meth:`label_frame` labels)."""
        return _projected(atoms)[0]

    def label_frame(self, atoms) -> Frame:
        """A labelled frame of the collinear projection of ``atoms`` (:meth:`collinear`): energy (eV),
        forces (eV/Å), torques zero across the spins (``torque_labels="transverse"``), the DFT moments as
        ``label_moments`` (N, 3) μB along the axis and the settings as ``labeller``. The energy label is the
        free energy (with the electrons' smearing), the one the forces are derivatives of."""
        projected, axis = _projected(atoms)
        self.calculate(projected, ["energy", "forces"])
        return Frame(symbols=np.array(projected.get_chemical_symbols()), positions=projected.positions.copy(),
                     cell=projected.cell.array.copy(), pbc=projected.pbc.copy(),
                     spins=projected.get_initial_magnetic_moments(), energy=float(self.results["free_energy"]),
                     forces=self.results["forces"].copy(), torques=self.results["magnetic_torques"].copy(),
                     torque_labels="transverse", labeller=self.method,
                     label_moments=self.results["magmoms"][:, None] * axis)


def gpaw_labeller(ecut_eV: float = 400.0, xc: str = "PBE", hubbard_u_eV: dict | None = None,
                  kpoint_density: float = 2.0, kpoints: tuple | None = None, smearing_eV: float = 0.05,
                  force_convergence_eV_per_A: float = 1e-3, txt: str | None = None,
                  tolerance_rad: float = 1e-3) -> CollinearDFT:
    """A :class:`CollinearDFT` labeller running GPAW: plane waves, collinear spin polarisation, DFT+U.

    Parameters
    ----------
    ecut_eV : plane-wave cutoff, eV.
    xc : exchange–correlation functional with PAW setups in GPAW's data (PBE, LDA, RPBE).
    hubbard_u_eV : the U (eV) on the d shell of each element (Dudarev); default ``{"Ni": 6.0}``. An element
        not named has none.
    kpoint_density : Monkhorst–Pack points per Å⁻¹ (Γ-centred), so supercells sample alike.
    kpoints : one Γ-centred grid (n1, n2, n3) for every frame instead. Use it for frames of one cell
        shape: a grid from a density changes as the volume does (a step in E(V)), and one that breaks
        the cell's symmetry gives forces where symmetry has none (0.005–0.012 eV/Å seen on ideal NiO
        with a 5×6×3 grid from 2 points per Å⁻¹; 6×6×3 keeps them at zero).
    smearing_eV : Fermi–Dirac width, eV.
    force_convergence_eV_per_A : the self-consistency loop runs until the forces change by less than this
        between iterations (GPAW's default converges energy and density only: forces of symmetric cells off
        by 0.01 eV/Å were seen).
    txt : GPAW's log file (None: no log).

    Measured for AFM-II NiO in its 4-atom cell at the defaults: ±1.75 μB, about 90 s per calculation on
    one core, 350 MB.
    """
    import gpaw
    from gpaw import GPAW, PW, FermiDirac

    hubbard_u_eV = {"Ni": 6.0} if hubbard_u_eV is None else dict(hubbard_u_eV)
    setups = {element: f":d,{u}" for element, u in hubbard_u_eV.items() if u}
    method = {"code": "gpaw", "version": gpaw.__version__, "spin": "collinear", "mode": "pw", "ecut_eV": ecut_eV,
              "xc": xc, "hubbard_u_eV_d_shell": {k: v for k, v in hubbard_u_eV.items() if v},
              **({"kpoints": [int(n) for n in kpoints]} if kpoints is not None
                 else {"kpoint_density_per_inverse_A": kpoint_density}), "gamma_centred": True,
              "smearing": {"kind": "fermi-dirac", "width_eV": smearing_eV},
              "force_convergence_eV_per_A": force_convergence_eV_per_A}

    def factory():
        grid = {"size": tuple(kpoints)} if kpoints is not None else {"density": kpoint_density}
        return GPAW(mode=PW(ecut_eV), xc=xc, setups=setups, kpts={**grid, "gamma": True},
                    occupations=FermiDirac(smearing_eV), convergence={"forces": force_convergence_eV_per_A}, txt=txt)

    return CollinearDFT(factory, method, tolerance_rad=tolerance_rad)

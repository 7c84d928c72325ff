"""The spin-calculator contract, as code: what every calculator with magnetic torques provides, and a check.

A spin calculator is an ASE calculator that reads spins from ``atoms.get_initial_magnetic_moments()``
((N, 3), μB, zero rows on non-magnetic atoms) and gives

====================  ==========  ===========================================================
property              shape       meaning (units)
====================  ==========  ===========================================================
``energy``            scalar      E (eV)
``forces``            (N, 3)      −∂E/∂R at fixed spins (eV/Å)
``stress``            (6,)        (1/V) ∂E/∂ε at fixed spins, Voigt order (eV/Å³), periodic cells
``magnetic_torques``  (N, 3)      −∂E/∂S, the full gradient (eV/μB), zero on non-magnetic atoms
====================  ==========  ===========================================================

and recomputes whenever positions, cell or spins change. Every consumer of the package (dynamics,
minimisers, NEB, phonons, exchange and magnons) needs only this. :func:`check_spin_calculator` tests
a calculator against it on a structure: the package's own calculators are tested with it, and so can
a user's.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from scipy.spatial.transform import Rotation

__all__ = ["SpinCalculator", "SpinCalculatorBase", "check_spin_calculator"]


@runtime_checkable
class SpinCalculator(Protocol):
    """An ASE calculator that implements ``magnetic_torques`` (see the module docstring)."""

    implemented_properties: list

    def get_property(self, name: str, atoms=None, allow_calculation: bool = True):
        ...


def _evaluate(calc, atoms, positions=None, spins=None, cell=None):
    trial = atoms.copy()
    if cell is not None:
        trial.set_cell(cell, scale_atoms=False)
    if positions is not None:
        trial.positions = positions
    if spins is not None:
        trial.set_initial_magnetic_moments(spins)
    trial.calc = calc
    return trial


def _energy(calc, atoms, **change) -> float:
    return float(_evaluate(calc, atoms, **change).get_potential_energy())


def _relative(got, want) -> float:
    return float(np.abs(np.asarray(got) - want).max() / max(np.abs(want).max(), 1e-300))


def check_spin_calculator(calc, atoms, step: float = 1e-5, rtol: float = 1e-6, rotation_rtol: float = 1e-10,
                          entries: int = 6, joint_rotation: bool = True, seed: int = 0) -> dict:
    """Check ``calc`` against the spin-calculator contract on ``atoms``; raise ``AssertionError`` naming
    the first broken clause, else return the measured errors.

    Checked: the properties exist with their shapes; forces, torques and (for cells periodic in x, y, z)
    stress equal central differences of the energy (``step`` in Å, μB and strain; largest deviation
    relative to the largest value below ``rtol``), on ``entries`` randomly chosen components each (all
    nine strain components); torques vanish on non-magnetic atoms; rotating positions, cell and spins
    together leaves E unchanged and rotates F and ω (``rotation_rtol``; ``joint_rotation=False`` for
    calculators with a fixed axis or field, such as anisotropy or Zeeman terms); changing one spin changes the
    energy (nothing stale is returned). ``atoms`` needs at least one magnetic atom; choose a structure
    away from symmetric points, where derivatives are not accidentally zero.
    """
    if "magnetic_torques" not in calc.implemented_properties:
        raise AssertionError(f"{type(calc).__name__} does not implement magnetic_torques")
    rng = np.random.default_rng(seed)
    n = len(atoms)
    spins = atoms.get_initial_magnetic_moments()
    if spins.shape != (n, 3):
        raise ValueError(f"spins must be (N, 3) initial magnetic moments, got shape {spins.shape}")
    magnetic = np.flatnonzero(np.linalg.norm(spins, axis=1) > 0)
    if len(magnetic) == 0:
        raise ValueError("the structure has no magnetic atom: nothing to check the torques on")
    reference = _evaluate(calc, atoms)
    energy = float(reference.get_potential_energy())
    forces = np.asarray(reference.get_forces())
    torques = np.asarray(calc.get_property("magnetic_torques", reference))
    for name, value in (("forces", forces), ("magnetic_torques", torques)):
        if value.shape != (n, 3) or not np.all(np.isfinite(value)):
            raise AssertionError(f"{name} must be finite with shape ({n}, 3), got {value.shape}")
    report = {}
    # forces: -dE/dR on a few random components
    fd = []
    for i, k in zip(rng.integers(0, n, entries), rng.integers(0, 3, entries)):
        plus, minus = atoms.positions.copy(), atoms.positions.copy()
        plus[i, k] += step
        minus[i, k] -= step
        fd.append((forces[i, k], -(_energy(calc, atoms, positions=plus) - _energy(calc, atoms, positions=minus))
                   / (2 * step)))
    report["forces"] = _relative(*zip(*fd)) if np.abs([w for _, w in fd]).max() > 0 else 0.0
    # torques: -dE/dS on magnetic atoms, zero elsewhere
    fd = []
    for i, k in zip(rng.choice(magnetic, entries), rng.integers(0, 3, entries)):
        plus, minus = spins.copy(), spins.copy()
        plus[i, k] += step
        minus[i, k] -= step
        fd.append((torques[i, k], -(_energy(calc, atoms, spins=plus) - _energy(calc, atoms, spins=minus))
                   / (2 * step)))
    got, want = (np.array(v) for v in zip(*fd))
    report["torques"] = _relative(got, want)
    others = np.setdiff1d(np.arange(n), magnetic)
    if len(others) and np.abs(torques[others]).max() != 0.0:
        raise AssertionError(f"non-magnetic atoms carry torques up to {np.abs(torques[others]).max():.3g} eV/μB")
    # stress: (1/V) dE/d(strain) at fixed spins
    if np.all(atoms.pbc):
        stress = np.asarray(reference.get_stress(voigt=False))
        cell, volume = atoms.cell.array, atoms.get_volume()
        fd_stress = np.zeros((3, 3))
        for a in range(3):
            for b in range(3):
                eps = np.zeros((3, 3))
                eps[a, b] = eps[b, a] = step if a == b else step / 2
                ep = _energy(calc, atoms, positions=atoms.positions @ (np.eye(3) + eps), cell=cell @ (np.eye(3) + eps))
                em = _energy(calc, atoms, positions=atoms.positions @ (np.eye(3) - eps), cell=cell @ (np.eye(3) - eps))
                fd_stress[a, b] = (ep - em) / (2 * step) / volume
        report["stress"] = _relative(stress, fd_stress)
    for name in ("forces", "torques", "stress"):
        if name in report and not report[name] <= rtol:
            raise AssertionError(f"{name} differ from central differences of the energy by {report[name]:.3g} "
                                 f"relative (allowed {rtol:g})")
    if joint_rotation:
        rot = Rotation.from_rotvec(rng.normal(size=3)).as_matrix()
        report.update(_joint_rotation(calc, atoms, rot, energy, forces, torques, rotation_rtol))
    # a spin change is seen
    changed = spins.copy()
    changed[magnetic[0]] = np.roll(changed[magnetic[0]], 1) if np.ptp(changed[magnetic[0]]) > 0 \
        else -changed[magnetic[0]]
    reference.set_initial_magnetic_moments(changed)
    if np.array_equal(np.asarray(calc.get_property("magnetic_torques", reference)), torques) \
            and reference.get_potential_energy() == energy:
        raise AssertionError("changing a spin changed neither the energy nor the torques: stale results")
    return report


def _joint_rotation(calc, atoms, rot, energy, forces, torques, rotation_rtol) -> dict:
    """E unchanged, F and ω rotated when positions, cell and spins turn together by ``rot``."""
    spins = atoms.get_initial_magnetic_moments()
    turned = _evaluate(calc, atoms, positions=atoms.positions @ rot.T, spins=spins @ rot.T,
                       cell=atoms.cell.array @ rot.T)
    error = max(abs(float(turned.get_potential_energy()) - energy) / max(abs(energy), 1e-300),
                _relative(turned.get_forces(), forces @ rot.T),
                _relative(calc.get_property("magnetic_torques", turned), torques @ rot.T))
    if not error <= rotation_rtol:
        raise AssertionError(f"rotating lattice and spins together changes E, F or ω by {error:.3g} relative "
                             f"(allowed {rotation_rtol:g})")
    return {"rotation": error}


class SpinCalculatorBase(Calculator):
    """What the package's spin calculators share beyond ASE's ``Calculator``.

    Subclasses implement ``_calculate(properties)`` on ``self.atoms`` (set by ASE) and fill ``self.results``.
    A call that fails leaves no state behind (no stored copy of bad input poisons later calls), and
    torques are only given for the ``Atoms`` as they are now.
    """

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        try:
            self._calculate(properties)
        except BaseException:
            # the next call then compares its atoms with none and recomputes; a stored copy of bad input
            # (moments that are not numbers) would make every later comparison raise
            self.atoms, self.results = None, {}
            raise

    def _calculate(self, properties) -> None:
        raise NotImplementedError

    def get_magnetic_torques(self, atoms=None) -> np.ndarray:
        """Magnetic torques −∂E/∂S (N, 3) in eV/μB of ``atoms`` as they are now (ASE's ``Atoms`` has no
        method for torques; without the atoms a calculator could only return its previous result)."""
        if atoms is None:
            raise TypeError("get_magnetic_torques needs the Atoms: calc.get_magnetic_torques(atoms) (without them "
                            "the calculator could only return the torques of the state it last computed)")
        return self.get_property("magnetic_torques", atoms)

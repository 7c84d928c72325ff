"""LAMMPS ``atom_style spin`` data files (written here; read with :func:`ase_deepspin.io.frames.read_lammps_spin`)
and the SPIN package's magnetic-force convention.

A spin line is ``id type x y z sx sy sz sp``: (sx, sy, sz) a unit vector ŝ and sp = |S| in μB.
LAMMPS's SPIN package (and DeePMD-kit's ``pair_style deepspin``) report the magnetic force

    fm = −(1/ħ) ∂E/∂ŝ = (|S|/ħ) ω,      ω = −∂E/∂S (eV/μB), ħ = 6.5821191e−4 eV·ps,

in rad/ps; :func:`torques_from_fm` and :func:`fm_from_torques` convert between the two.
Triclinic cells are rotated into LAMMPS's lower-triangular frame with ASE's ``Prism``;
vectors read back (forces, fm) must be rotated with :meth:`~ase.calculators.lammps.Prism.vector_to_ase`.
"""

from __future__ import annotations

import os

import numpy as np
from ase import Atoms, units
from ase.calculators.lammps import Prism
from ase.data import atomic_masses, atomic_numbers

from ..system import check_structure
from ..units import HBAR_EV_PS

BAR_PER_EV_A3 = 1.6021765e6  # LAMMPS metal units: bar per eV/Å³ (its nktv2p, an older CODATA value)
VELOCITY_A_PER_PS = 1000.0 * units.fs  # one ASE velocity unit (Å per ASE time unit) in Å/ps
# per-atom columns of the dumps written here: forces, magnetic forces, spin length and direction, unwrapped positions
DUMP_COLUMNS = "id type fx fy fz " + " ".join(f"c_p[{k}]" for k in range(1, 8)) + " xu yu zu"
PROPERTY_COMPUTE = "compute p all property/atom fmx fmy fmz sp spx spy spz"


def fm_from_torques(torques: np.ndarray, moments: np.ndarray) -> np.ndarray:
    """LAMMPS magnetic forces (N, 3) in rad/ps from torques −∂E/∂S (eV/μB) and moments S (μB)."""
    return torques * np.linalg.norm(moments, axis=1, keepdims=True) / HBAR_EV_PS


def torques_from_fm(fm: np.ndarray, moments: np.ndarray) -> np.ndarray:
    """Torques −∂E/∂S (eV/μB) from LAMMPS magnetic forces (rad/ps); zero where |S| = 0."""
    norm = np.linalg.norm(moments, axis=1, keepdims=True)
    return np.divide(fm * HBAR_EV_PS, norm, out=np.zeros_like(fm, dtype=float), where=norm > 0)


def write_spin_data(path: str | os.PathLike, atoms: Atoms, type_map: list[str]) -> Prism:
    """Write ``atoms`` (spins from the initial magnetic moments, μB) as an ``atom_style spin`` data file.

    LAMMPS type k + 1 is ``type_map[k]``. Returns the :class:`Prism` that maps LAMMPS vectors back to
    the ASE frame. Non-magnetic atoms get ŝ = (0, 0, 1) and sp = 0. Atoms that move (non-zero momenta)
    get a Velocities section in Å/ps.
    """
    if not atoms.pbc.all():
        raise ValueError("write_spin_data writes periodic cells only")
    types = check_structure(atoms, type_map) + 1
    prism = Prism(atoms.cell.array)
    xhi, yhi, zhi, xy, xz, yz = (float(v) for v in prism.get_lammps_prism())
    positions = prism.vector_to_lammps(atoms.positions, wrap=True)
    moments = np.zeros((len(atoms), 3))
    if atoms.has("initial_magmoms"):
        moments = np.asarray(atoms.get_initial_magnetic_moments(), dtype=float).reshape(len(atoms), 3)
    moments = prism.vector_to_lammps(moments)
    size = np.linalg.norm(moments, axis=1)
    direction = np.where(size[:, None] > 0, moments / np.where(size > 0, size, 1.0)[:, None], [0.0, 0.0, 1.0])
    lines = [f"written by ase-deepspin\n\n{len(atoms)} atoms\n{len(type_map)} atom types\n",
             f"0 {xhi!r} xlo xhi\n0 {yhi!r} ylo yhi\n0 {zhi!r} zlo zhi"]
    if prism.is_skewed():
        lines.append(f"{xy!r} {xz!r} {yz!r} xy xz yz")
    lines.append("\nMasses\n")
    lines += [f"{k + 1} {float(atomic_masses[atomic_numbers[t]])!r}" for k, t in enumerate(type_map)]
    lines.append("\nAtoms # spin\n")
    rows = np.column_stack([np.arange(1, len(atoms) + 1), types, positions, direction, size])
    lines += [f"{int(r[0])} {int(r[1])} " + " ".join(repr(float(v)) for v in r[2:]) for r in rows]
    velocities = atoms.get_velocities()
    if velocities is not None and np.any(velocities != 0.0):
        velocities = prism.vector_to_lammps(velocities * VELOCITY_A_PER_PS)
        lines.append("\nVelocities\n")
        lines += [f"{k + 1} " + " ".join(repr(float(v)) for v in row) for k, row in enumerate(velocities)]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return prism


def _deepspin_setup(data_file: str, model_file: str, plugin: str, type_map: list[str], skin: float,
                    restart_file: str | None = None) -> list[str]:
    """Input lines up to the neighbour settings: spin data file (or ``restart_file``, read after the plugin
    whose pair style it names), plugin, ``pair_style deepspin``."""
    system = [f"plugin load {plugin}", f"read_restart {restart_file}"] if restart_file else [
        "units metal", "atom_style spin", "boundary p p p", "atom_modify map array", f"read_data {data_file}",
        f"plugin load {plugin}"]
    return system + [f"pair_style deepspin {model_file}", f"pair_coeff * * {' '.join(type_map)}",
                     f"neighbor {skin!r} bin", "neigh_modify every 1 delay 0 check yes"]


def deepspin_input(data_file: str, model_file: str, plugin: str, type_map: list[str], skin: float,
                   minimize_steps: int = 0, dump_file: str = "deepspin.dump") -> str:
    """LAMMPS input: DeePMD-kit's ``pair_style deepspin`` on a spin data file, energy/forces/fm dump and
    pressure tensor, then optionally ``min_style spin/lbfgs`` for ``minimize_steps`` iterations and a
    second dump (``<dump_file>.min``) with the relaxed spins.

    ``skin`` (Å) must be at least the largest pseudo-atom offset η|S| (plus a margin for motion): the
    pair style only sees the pseudo-atom of an atom that is in LAMMPS's neighbour list (rcut + skin).
    """
    lines = _deepspin_setup(data_file, model_file, plugin, type_map, skin) + [
        PROPERTY_COMPUTE,
        "thermo_style custom step pe press pxx pyy pzz pyz pxz pxy", "thermo_modify format float %.17g",
        f"dump d all custom 1 {dump_file} {DUMP_COLUMNS}",
        "dump_modify d format float %.17g sort id",
        "run 0", 'print "DEEPSPIN_ENERGY $(pe:%.17g)"',
        'print "DEEPSPIN_PRESSURE ' + " ".join(f"$(p{c}:%.17g)" for c in ("xx", "yy", "zz", "yz", "xz", "xy")) + '"',
        "undump d",
    ]
    if minimize_steps > 0:
        lines += [
            "min_style spin/lbfgs", "min_modify line spin_cubic discrete_factor 10.0",
            f"minimize 0.0 1.0e-10 {minimize_steps} {10 * minimize_steps}",
            'print "DEEPSPIN_MIN_ENERGY $(pe:%.17g)"',
            f"write_dump all custom {dump_file}.min {DUMP_COLUMNS} modify format float %.17g sort id",
        ]
    return "\n".join(lines) + "\n"


def spin_lattice_input(data_file: str, model_file: str, plugin: str, sib_plugin: str, type_map: list[str],
                       skin: float, steps: int, dt_fs: float = 0.1, alpha: float = 0.0, temperature_K: float = 0.0,
                       field_T=(0.0, 0.0, 0.0), lattice_friction_per_fs: float = 0.0, lattice: str = "moving",
                       seed: int = 12345, thermo: int = 10, dump_file: str | None = None,
                       restart_file: str | None = None, continue_from: str | None = None) -> str:
    """LAMMPS input for spin-lattice dynamics of ``pair_style deepspin`` with this package's ``fix sib/spin``
    (``sib_plugin``, built by examples/setup_lammps_deepspin.sh from ``lammps/``): the scheme of
    :class:`~ase_deepspin.dynamics.llg.SpinLatticeDynamics` with the same arguments (Gilbert damping
    ``alpha``, spin and lattice baths at ``temperature_K``, lattice friction in 1/fs, Zeeman field
    ``field_T`` in Tesla, ``lattice`` "moving" or "frozen"). Velocities come from the data file (see
    :func:`write_spin_data`). The fix's Zeeman energy counts in pe (``fix_modify energy yes``), as
    ``SpinLatticeDynamics.total_energy`` counts it. Thermo columns: step, time (ps), lattice temperature (K),
    potential, kinetic and total energy (eV). With ``dump_file`` the final state is dumped with
    :data:`DUMP_COLUMNS` (read it with :func:`read_deepspin_dump`); with ``restart_file`` it is also
    written as a LAMMPS restart file, which ``continue_from`` reads instead of ``data_file`` to go on
    (the fix keeps no state of its own: the run continues as if it had not stopped).
    """
    field = " ".join(repr(float(v)) for v in np.asarray(field_T, dtype=float).reshape(3))
    lines = _deepspin_setup(data_file, model_file, plugin, type_map, skin, restart_file=continue_from) + [
        f"plugin load {sib_plugin}",
        f"fix dynamics all sib/spin alpha {alpha!r} temperature {temperature_K!r} "
        f"friction {1000.0 * lattice_friction_per_fs!r} seed {seed} field {field} lattice {lattice}",
        "fix_modify dynamics energy yes", f"timestep {dt_fs / 1000.0!r}", PROPERTY_COMPUTE,
        "thermo_style custom step time temp pe ke etotal", "thermo_modify format float %.17g", f"thermo {thermo}",
        f"run {steps}"]
    if dump_file is not None:
        lines.append(f"write_dump all custom {dump_file} {DUMP_COLUMNS} modify format float %.17g sort id")
    if restart_file is not None:
        lines.append(f"write_restart {restart_file}")
    return "\n".join(lines) + "\n"


def read_deepspin_dump(path: str | os.PathLike, prism: Prism) -> dict:
    """Forces (eV/Å), torques (eV/μB), moments (μB) and unwrapped positions (Å) from a dump written by
    :func:`deepspin_input` or :func:`spin_lattice_input`, rotated back into the ASE frame of ``prism``."""
    table = np.loadtxt(path, skiprows=9, ndmin=2)
    table = table[np.argsort(table[:, 0])]  # DUMP_COLUMNS: id type fx fy fz fmx fmy fmz sp spx spy spz xu yu zu
    moments = prism.vector_to_ase(table[:, 9:12] * table[:, 8:9])
    fm = prism.vector_to_ase(table[:, 5:8])
    return {"forces": prism.vector_to_ase(table[:, 2:5]), "moments": moments,
            "torques": torques_from_fm(fm, moments), "positions": prism.vector_to_ase(table[:, 12:15])}


def lammps_route(root: str | os.PathLike | None = None, required: bool = False) -> dict | None:
    """Where LAMMPS with DeePMD-kit's ``pair_style deepspin`` is (``examples/setup_lammps_deepspin.sh``), or None.

    Read from ``ASE_DEEPSPIN_LMP`` and ``ASE_DEEPSPIN_LMP_LIBRARY_PATH``, else from ``root`` (default: a
    ``.lammps-deepspin`` folder in the working directory or in the source tree of this package). Returns
    ``{"lmp": executable, "plugin": libdeepmd_lmpplugin.so, "sib_plugin": this package's
    libasedeepspin_lmpplugin.so (fix sib/spin) or None, "env": environment to run it in}``; with
    ``required`` a missing route raises FileNotFoundError saying how to build it.
    """
    from pathlib import Path

    lmp, library_path = os.environ.get("ASE_DEEPSPIN_LMP"), os.environ.get("ASE_DEEPSPIN_LMP_LIBRARY_PATH")
    if not (lmp and library_path):
        candidates = [Path(root)] if root else [Path.cwd() / ".lammps-deepspin",
                                                Path(__file__).resolve().parents[1] / ".lammps-deepspin"]
        found = next((c for c in candidates if (c / "lmp" / "bin" / "lmp").is_file()), None)
        if found is None and required:
            raise FileNotFoundError("LAMMPS with pair_style deepspin not found (.lammps-deepspin/ or "
                                    "ASE_DEEPSPIN_LMP): build it with `bash examples/setup_lammps_deepspin.sh`")
        if found is None:
            return None
        lmp, library_path = str(found / "lmp" / "bin" / "lmp"), f"{found / 'lib'}:{found / 'lmp' / 'lib'}"

    def library(name):
        return next((str(Path(p) / name) for p in library_path.split(":") if (Path(p) / name).is_file()), None)

    plugin, sib_plugin = library("libdeepmd_lmpplugin.so"), library("libasedeepspin_lmpplugin.so")
    if plugin is None:
        raise FileNotFoundError(f"no libdeepmd_lmpplugin.so in {library_path}; run examples/setup_lammps_deepspin.sh")
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    env.update(LD_LIBRARY_PATH=library_path, OMP_NUM_THREADS="1", DP_INTRA_OP_PARALLELISM_THREADS="1",
               DP_INTER_OP_PARALLELISM_THREADS="1",
               # a fixed glibc mmap threshold keeps a rank's heap from growing by GBs over many calls on a
               # large system; 64 MB rather than 1 MB: at 1 MB every tensor's pages were fresh on each call,
               # 1.4-1.5x slower (Σ5 boundary, -np 2: 55 s per step at 1.8 GiB per rank against 37.5 s at 3.5)
               MALLOC_MMAP_THRESHOLD_=str(64 << 20))
    return {"lmp": lmp, "plugin": plugin, "sib_plugin": sib_plugin, "env": env}


def run_lammps(input_text: str, workdir: str | os.PathLike, lmp: str, nprocs: int = 1,
               env: dict | None = None, timeout: float = 900.0) -> str:
    """Run ``lmp`` (under ``mpirun -np nprocs`` from the same folder when nprocs > 1) on ``input_text``
    in ``workdir``; returns the screen output and raises ``RuntimeError`` with its tail on failure."""
    import subprocess
    from pathlib import Path

    workdir = Path(workdir)
    (workdir / "in.deepspin").write_text(input_text)
    command = [lmp, "-in", "in.deepspin", "-log", "log.lammps"]
    if nprocs > 1:
        command = [str(Path(lmp).with_name("mpirun")), "-np", str(nprocs), *command]
    done = subprocess.run(command, check=False, cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=timeout)
    output = done.stdout + done.stderr
    if done.returncode != 0 or "ERROR" in output:
        tail = "\n".join(line for line in output.splitlines() if "implib-gen" not in line)[-3000:]
        raise RuntimeError(f"LAMMPS failed (exit {done.returncode}): {' '.join(command)}\n{tail}")
    return output


def printed_values(output: str, key: str) -> list[float]:
    """The numbers LAMMPS printed after ``key`` (see :func:`deepspin_input`)."""
    for line in output.splitlines():
        if line.startswith(key + " "):
            return [float(v) for v in line.split()[1:]]
    raise RuntimeError(f"LAMMPS output has no '{key}' line")


def printed_value(output: str, key: str) -> float:
    """The first number LAMMPS printed after ``key``."""
    return printed_values(output, key)[0]


def stress_from_pressure(pressure_bar, prism: Prism) -> np.ndarray:
    """ASE stress (3, 3) eV/Å³ from LAMMPS's pressure tensor (xx, yy, zz, yz, xz, xy) in bar (metal units;
    without kinetic part), rotated back into the ASE frame of ``prism``."""
    xx, yy, zz, yz, xz, xy = pressure_bar
    tensor = -np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]]) / BAR_PER_EV_A3
    return prism.tensor2_to_ase(tensor)

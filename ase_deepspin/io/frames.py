"""Reading and writing spin-lattice data.

- DeePMD-kit npy systems with spins (DeltaSpin labels): ``type.raw``, ``type_map.raw`` and
  ``set.*/{box,coord,energy,force,spin,force_mag}.npy``.
- Extended XYZ with per-atom ``spins`` (μB) and ``magnetic_torques`` (eV/μB) arrays.
- LAMMPS data files written with ``atom_style spin``.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import vesin
from ase import Atoms


def read_lammps_spin(path: str | os.PathLike, type_map: list[str], delete_overlap: float | None = None,
                     magnetic: list[str] | None = None) -> Atoms:
    """Read a LAMMPS ``atom_style spin`` data file (units metal) into periodic ASE atoms.

    Atom lines are ``id type x y z sx sy sz |s|``; the spin of each atom becomes
    ``|s| * (sx, sy, sz)`` μB, set with ``set_initial_magnetic_moments``. ``type_map[k]`` is the
    element of LAMMPS type k+1. ``delete_overlap`` (Å) removes, as LAMMPS ``delete_atoms overlap``
    does, one atom of every pair closer than that distance (the later one in file order).
    ``magnetic`` lists the elements whose spins are kept (e.g. ``["Ni"]``): ``atom_style spin``
    gives every atom a spin, and files often carry meaningless ones on non-magnetic atoms, which
    calculators reject; the spins of other elements are set to zero. None keeps every spin.
    """
    if magnetic is not None:
        unknown = sorted(set(magnetic) - set(type_map))
        if unknown:
            raise ValueError(f"magnetic elements {unknown} are not in type_map {type_map}")
    lines = Path(path).read_text().splitlines()
    n_atoms = None
    bounds = {}
    tilt = (0.0, 0.0, 0.0)
    atoms_at = None
    for k, line in enumerate(lines):
        words = line.split("#")[0].split()
        if len(words) == 2 and words[1] == "atoms":
            n_atoms = int(words[0])
        elif len(words) == 4 and words[2].endswith("lo") and words[3].endswith("hi"):
            bounds[words[2][0]] = (float(words[0]), float(words[1]))
        elif len(words) == 6 and words[3:] == ["xy", "xz", "yz"]:
            tilt = tuple(float(w) for w in words[:3])
        elif line.strip().startswith("Atoms"):
            atoms_at = k + 1
            break
    if n_atoms is None or atoms_at is None or set(bounds) != {"x", "y", "z"}:
        raise ValueError(f"{path}: not a LAMMPS data file with an atom count, box bounds and an Atoms section")
    rows = []
    for line in lines[atoms_at:]:
        words = line.split()
        if not words:
            if rows:
                break
            continue
        rows.append([float(w) for w in words[:9]])
        if len(rows) == n_atoms:
            break
    table = np.array(rows)
    if table.shape != (n_atoms, 9):
        raise ValueError(f"{path}: expected {n_atoms} atom lines of 'id type x y z sx sy sz |s|', got {table.shape}")
    table = table[np.argsort(table[:, 0])]
    types = table[:, 1].astype(int) - 1
    if types.min() < 0 or types.max() >= len(type_map):
        raise ValueError(f"{path}: atom types {sorted(set(types + 1))} do not fit type_map {type_map}")
    (xlo, xhi), (ylo, yhi), (zlo, zhi) = bounds["x"], bounds["y"], bounds["z"]
    xy, xz, yz = tilt
    cell = np.array([[xhi - xlo, 0, 0], [xy, yhi - ylo, 0], [xz, yz, zhi - zlo]])
    atoms = Atoms(symbols=[type_map[t] for t in types], positions=table[:, 2:5] - [xlo, ylo, zlo], cell=cell,
                  pbc=True)
    spins = table[:, 5:8] * table[:, 8:9]
    if magnetic is not None:
        spins[~np.isin(atoms.get_chemical_symbols(), magnetic)] = 0.0
    atoms.set_initial_magnetic_moments(spins)
    if delete_overlap:
        atoms = delete_overlapping(atoms, delete_overlap)
    return atoms


def delete_overlapping(atoms: Atoms, distance: float) -> Atoms:
    """Copy of ``atoms`` without the later atom of every pair closer than ``distance`` (Å)."""
    i, j = vesin.NeighborList(cutoff=distance, full_list=False).compute(
        atoms.positions, atoms.cell.array, [bool(p) for p in atoms.pbc], quantities="ij")
    deleted = np.zeros(len(atoms), dtype=bool)
    for a, b in sorted(zip(np.minimum(i, j).tolist(), np.maximum(i, j).tolist())):
        if a != b and not deleted[a]:
            deleted[b] = True
    return atoms[~deleted]


TORQUE_LABELS = ("full", "transverse", "none")
LABELLER_FILE = "labeller.json"  # beside type.raw: {"torque_labels": ..., "method": {...}} (DeePMD-kit ignores it)


@dataclass
class Frame:
    """One labelled configuration.

    symbols : (N,) element symbols; positions (N, 3) Å; cell (3, 3) Å; pbc (3,) bool;
    spins (N, 3) μB (zero rows on non-magnetic atoms); energy eV; forces (N, 3) eV/Å;
    torques (N, 3) eV/μB (−∂E/∂S). Labels may be None for unlabelled frames.

    torque_labels says which part of ``torques`` is a label: ``"full"``, ``"transverse"`` (only the part
    across each spin: a collinear DFT state fixes that part, zero by symmetry, but not the part along a spin
    whose length is the data's convention rather than the DFT's own) or ``"none"``. labeller records the
    method and settings that labelled the frame (JSON-able; None where unknown); label_moments (N, 3) μB
    the moments that method found, where they differ from the model's input ``spins``.
    """

    symbols: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    spins: np.ndarray
    energy: float | None = None
    forces: np.ndarray | None = None
    torques: np.ndarray | None = None
    source: str = ""
    torque_labels: str = "full"
    labeller: dict | None = None
    label_moments: np.ndarray | None = None

    def __post_init__(self):
        if self.torque_labels not in TORQUE_LABELS:
            raise ValueError(f"{self.source or 'a frame'}: torque_labels must be one of {TORQUE_LABELS}, "
                             f"got {self.torque_labels!r}")

    def __len__(self) -> int:
        return len(self.symbols)

    def to_atoms(self) -> Atoms:
        """ASE atoms with spins as initial magnetic moments and the labels as calculator results."""
        from ase.calculators.singlepoint import SinglePointCalculator

        atoms = Atoms(symbols=list(self.symbols), positions=self.positions, cell=self.cell, pbc=self.pbc)
        atoms.set_initial_magnetic_moments(self.spins)
        if self.torque_labels != "full":
            atoms.info["torque_labels"] = self.torque_labels
        if self.labeller is not None:
            atoms.info["labeller"] = json.dumps(self.labeller, sort_keys=True)
        if self.label_moments is not None:
            atoms.arrays["label_moments"] = np.asarray(self.label_moments, dtype=float)
        labels = {k: v for k, v in (("energy", self.energy), ("forces", self.forces),
                                    ("magnetic_torques", self.torques)) if v is not None}
        if labels:
            with _torques_known():  # ASE's single-point calculator takes only results it knows by name
                atoms.calc = SinglePointCalculator(atoms, **labels)
        return atoms


def _check_finite(name: str, values, where: str) -> None:
    if values is not None and not np.isfinite(values).all():
        raise ValueError(f"{where}: {name} contains NaN or inf")


def read_deepmd_npy(system: str | os.PathLike) -> list[Frame]:
    """Frames of a DeePMD-kit npy system with spins (all ``set.*`` folders, in order).

    Needs ``type.raw``, ``type_map.raw`` and per set ``box.npy`` (nf, 9) Å, ``coord.npy``
    (nf, 3N) Å, ``spin.npy`` (nf, 3N) μB; labels ``energy.npy`` (nf,) eV, ``force.npy``
    (nf, 3N) eV/Å and ``force_mag.npy`` (nf, 3N) eV/μB are read when present. A ``labeller.json`` beside
    ``type.raw`` (written by :func:`write_deepmd_npy` for frames a labeller made) gives every frame its
    ``torque_labels`` and ``labeller``; ``label_moment.npy`` (nf, 3N) μB its ``label_moments``.
    """
    system = Path(system)
    for name in ("type.raw", "type_map.raw"):
        if not (system / name).is_file():
            raise FileNotFoundError(f"{system}: missing {name} (not a DeePMD-kit npy system)")
    types = np.loadtxt(system / "type.raw", dtype=int, ndmin=1)
    type_map = (system / "type_map.raw").read_text().split()
    if types.min() < 0 or types.max() >= len(type_map):
        raise ValueError(f"{system}: type.raw has types {sorted(set(types))} but type_map.raw lists {type_map}")
    symbols = np.array([type_map[t] for t in types])
    n = len(types)
    sets = sorted(p for p in system.glob("set.*") if p.is_dir())
    if not sets:
        raise FileNotFoundError(f"{system}: no set.* folders")
    record = {}
    if (system / LABELLER_FILE).is_file():
        try:
            record = json.loads((system / LABELLER_FILE).read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{system / LABELLER_FILE} is not valid JSON: {err}") from None
    frames = []
    for s in sets:
        def load(name, width, required):
            path = s / f"{name}.npy"
            if not path.is_file():
                if required:
                    raise FileNotFoundError(f"{path} is missing")
                return None
            values = np.load(path)
            values = values.reshape(len(values), -1) if width else values.reshape(-1)
            if width and values.shape[1] != width:
                raise ValueError(f"{path}: expected {width} values per frame ({n} atoms), got {values.shape[1]}")
            _check_finite(name, values, str(path))
            return values

        box, coord, spin = load("box", 9, True), load("coord", 3 * n, True), load("spin", 3 * n, True)
        energy, force, force_mag = load("energy", 0, False), load("force", 3 * n, False), load("force_mag", 3 * n, False)
        moments = load("label_moment", 3 * n, False)
        nf = len(coord)
        for name, values in [("box", box), ("spin", spin), ("energy", energy), ("force", force), ("force_mag", force_mag),
                             ("label_moment", moments)]:
            if values is not None and len(values) != nf:
                raise ValueError(f"{s}: {name}.npy has {len(values)} frames but coord.npy has {nf}")
        for f in range(nf):
            frames.append(Frame(
                symbols=symbols, positions=coord[f].reshape(n, 3), cell=box[f].reshape(3, 3), pbc=np.ones(3, bool),
                spins=spin[f].reshape(n, 3), energy=None if energy is None else float(energy[f]),
                forces=None if force is None else force[f].reshape(n, 3),
                torques=None if force_mag is None else force_mag[f].reshape(n, 3), source=f"{s}#{f}",
                torque_labels=record.get("torque_labels", "full"),
                labeller=record.get("method"), label_moments=None if moments is None else moments[f].reshape(n, 3),
            ))
    return frames


TORQUES = "magnetic_torques"  # the calculator result's name: (N, 3) eV/μB, −∂E/∂S


def register_torques_with_ase() -> None:
    """Teach ASE the ``magnetic_torques`` result, so that ``ase.io.write`` keeps it in trajectories and
    extended XYZ files (ASE writes only the results it knows by name). Process-wide and explicit: importing
    the package changes nothing in ASE; :func:`write_extxyz` and :func:`read_extxyz` do it for their call only.
    """
    _add_torques_to_ase()


def _add_torques_to_ase() -> list:
    """Add the name to ASE's two registries where missing; returns what was added (for :func:`_torques_known`)."""
    from ase import outputs
    from ase.calculators.calculator import all_properties

    added = []
    if TORQUES not in all_properties:
        all_properties.append(TORQUES)
        added.append("properties")
    if TORQUES not in outputs.all_outputs:
        outputs._defineprop(TORQUES, float, shape=("natoms", 3))  # ASE's own registry; no public way
        added.append("outputs")
    return added


@contextmanager
def _torques_known():
    """ASE knows ``magnetic_torques`` inside the block and, unless it knew it before, not after it."""
    from ase import outputs
    from ase.calculators.calculator import all_properties

    added = _add_torques_to_ase()
    try:
        yield
    finally:
        if "properties" in added:
            all_properties.remove(TORQUES)
        if "outputs" in added:
            del outputs.all_outputs[TORQUES]


def read_extxyz(path: str | os.PathLike) -> list[Frame]:
    """Frames of an extended XYZ file written by :func:`write_extxyz` or by ``ase.io.write`` from a spin
    calculator's results.

    Spins are the ``initial_magmoms`` array (N, 3) μB, torques the ``magnetic_torques`` result (or array).
    """
    from ase.io import read

    with _torques_known():
        images = read(path, index=":", format="extxyz")
    frames = []
    for k, atoms in enumerate(images):
        where = f"{path} frame {k}"
        spins = atoms.arrays.get("initial_magmoms")
        if spins is None:
            spins = np.zeros((len(atoms), 3))
        spins = np.asarray(spins, dtype=float)
        if spins.shape != (len(atoms), 3):
            raise ValueError(f"{where}: spins must be (N, 3), got {spins.shape}")
        results = atoms.calc.results if atoms.calc is not None else {}
        energy, forces = results.get("energy"), results.get("forces")
        # torques: a calculator result (ASE knows the name while reading) or, in files written without it, an array
        torques = results.get("magnetic_torques", atoms.arrays.get("magnetic_torques"))
        for name, values in [("positions", atoms.positions), ("spins", spins), ("energy", energy), ("forces", forces),
                             ("magnetic_torques", torques)]:
            _check_finite(name, values, where)
        labeller = atoms.info.get("labeller")
        moments = atoms.arrays.get("label_moments")
        frames.append(Frame(symbols=np.array(atoms.get_chemical_symbols()), positions=atoms.positions.copy(),
                            cell=atoms.cell.array.copy(), pbc=atoms.pbc.copy(), spins=spins, energy=energy,
                            forces=None if forces is None else np.array(forces),
                            torques=None if torques is None else np.array(torques), source=where,
                            torque_labels=atoms.info.get("torque_labels", "full"),
                            labeller=None if labeller is None else json.loads(labeller),
                            label_moments=None if moments is None else np.array(moments, dtype=float)))
    return frames


def write_deepmd_npy(system: str | os.PathLike, frames: list[Frame], type_map: list[str]) -> Path:
    """Write labelled frames of one composition (same symbols in the same order) as a DeePMD-kit npy system
    with spins (``type.raw``, ``type_map.raw``, ``set.000/{box,coord,spin,energy,force,force_mag}.npy``),
    as :func:`read_deepmd_npy` reads them. Periodic cells only. Frames without forces (spins on a frozen
    lattice) are written without ``force.npy``, when none of them has forces; frames without torque labels
    without ``force_mag.npy``. The frames' ``torque_labels`` and ``labeller`` (one for all of them) go to
    ``labeller.json``, their ``label_moments`` to ``label_moment.npy``. Returns the system folder."""
    system = Path(system)
    if not frames:
        raise ValueError("no frames to write")
    symbols = list(frames[0].symbols)
    for f in frames:
        if list(f.symbols) != symbols:
            raise ValueError(f"frames of one npy system need the same atoms in the same order; {f.source} differs")
        if f.energy is None or (f.torques is None and f.torque_labels != "none"):
            raise ValueError(f"{f.source or 'a frame'} lacks energy or torques: only labelled frames are written")
        for name in ("forces", "torques", "label_moments"):
            if (getattr(f, name) is None) != (getattr(frames[0], name) is None):
                raise ValueError(f"frames of one npy system either all have {name} or none has")
        if (f.torque_labels, f.labeller) != (frames[0].torque_labels, frames[0].labeller):
            raise ValueError("frames of one npy system share one labeller and one kind of torque label; "
                             f"{f.source or 'a frame'} differs")
        if not np.all(f.pbc):
            raise ValueError(f"{f.source or 'a frame'} is not periodic in all directions; npy systems are")
    unknown = sorted(set(symbols) - set(type_map))
    if unknown:
        raise ValueError(f"elements {unknown} are not in type_map {type_map}")
    data = system / "set.000"
    data.mkdir(parents=True, exist_ok=True)
    (system / "type.raw").write_text("\n".join(str(type_map.index(x)) for x in symbols) + "\n")
    (system / "type_map.raw").write_text("\n".join(type_map) + "\n")
    stack = lambda get: np.array([np.asarray(get(f), dtype=float).reshape(-1) for f in frames])  # noqa: E731
    np.save(data / "box.npy", stack(lambda f: f.cell))
    np.save(data / "coord.npy", stack(lambda f: f.positions))
    np.save(data / "spin.npy", stack(lambda f: f.spins))
    np.save(data / "energy.npy", np.array([float(f.energy) for f in frames]))
    if frames[0].forces is not None:
        np.save(data / "force.npy", stack(lambda f: f.forces))
    if frames[0].torques is not None:
        np.save(data / "force_mag.npy", stack(lambda f: f.torques))
    if frames[0].label_moments is not None:
        np.save(data / "label_moment.npy", stack(lambda f: f.label_moments))
    if frames[0].labeller is not None or frames[0].torque_labels != "full":
        record = {"torque_labels": frames[0].torque_labels, "method": frames[0].labeller}
        (system / LABELLER_FILE).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    else:
        (system / LABELLER_FILE).unlink(missing_ok=True)  # a rewrite of the system must not inherit an old record
    return system


def write_extxyz(path: str | os.PathLike, frames: list[Frame]) -> None:
    """Write frames as extended XYZ: spins as ``initial_magmoms``, labels as calculator results (energy,
    forces, ``magnetic_torques``)."""
    from ase.io import write

    with _torques_known():
        write(path, [f.to_atoms() for f in frames], format="extxyz")


def read_frames(path: str | os.PathLike) -> list[Frame]:
    """Frames from a DeePMD-kit npy system folder, a folder of such systems, or an extxyz file."""
    path = Path(path)
    if path.is_file():
        return read_extxyz(path)
    if (path / "type.raw").is_file():
        return read_deepmd_npy(path)
    systems = sorted(p.parent for p in path.glob("**/type.raw"))
    if not systems:
        raise FileNotFoundError(f"{path}: no DeePMD-kit npy system (type.raw) and not an extxyz file")
    return [f for s in systems for f in read_deepmd_npy(s)]


def split_frames(frames: list[Frame], n_validation: int, seed: int = 0) -> tuple[list[Frame], list[Frame]]:
    """Deterministic (train, validation) split: ``n_validation`` frames drawn with ``seed``."""
    if not 0 <= n_validation < len(frames):
        raise ValueError(f"cannot hold out {n_validation} of {len(frames)} frames")
    held = set(np.random.default_rng(seed).permutation(len(frames))[:n_validation].tolist())
    return ([f for k, f in enumerate(frames) if k not in held], [f for k, f in enumerate(frames) if k in held])


def frame_system(frame: Frame) -> str:
    """The system a frame was read from: its source without ``#index`` and without a trailing ``set.*`` folder."""
    where = Path(frame.source.rsplit("#", 1)[0])
    return str(where.parent if where.name.startswith("set.") else where)


def systems_named(systems, name: str, what: str) -> list[str]:
    """The systems (paths as :func:`frame_system` gives them) that ``name``, the end of a path, names;
    raises ValueError, starting with ``what``, when it names none."""
    name = name.rstrip("/")
    named = [s for s in systems if s == name or s.endswith("/" + name)]
    if not named:
        raise ValueError(f"{what} names no system of the data "
                         f"(systems: {', '.join(sorted(Path(s).name for s in systems))})")
    return named


def hold_out(frames: list[Frame], selections: list[str]) -> tuple[list[Frame], list[Frame]]:
    """(kept, held) frames: ``held`` are those of ``selections``, each ``SYSTEM`` or ``SYSTEM#a:b``.

    ``SYSTEM`` is the end of a system's path (e.g. ``FCC_Fe_iter-2``) and holds out every frame of it;
    ``#a:b`` only its frames a .. b−1, counted in the order they are read (a Python slice, so ``#70:``
    is frame 70 to the last). Holding out whole systems (or contiguous blocks of one trajectory) tests a
    model on configurations it has not seen neighbours of, which a random split of correlated frames
    does not. Every selection must match at least one frame.
    """
    by_system: dict[str, list[int]] = {}
    for k, f in enumerate(frames):
        by_system.setdefault(frame_system(f), []).append(k)
    held = set()
    for selection in selections:
        name, _, window = selection.partition("#")
        bounds = window.split(":") if window else ["", ""]
        if len(bounds) != 2 or not all(v.lstrip("-").isdigit() for v in bounds if v):
            raise ValueError(f"held-out selection {selection!r}: the part after # must be a range a:b")
        block = slice(*(int(v) if v else None for v in bounds))
        systems = systems_named(by_system, name, f"held-out selection {selection!r}")
        for system in systems:
            members = by_system[system][block]
            if not members:
                raise ValueError(f"held-out selection {selection!r} selects no frame of {system}")
            held.update(members)
    return ([f for k, f in enumerate(frames) if k not in held], [f for k, f in enumerate(frames) if k in held])

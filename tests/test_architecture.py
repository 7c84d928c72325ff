"""Package structure (no import cycle among ase_deepspin's modules, rooms that import only downward, names
imported from where they are defined, leaf modules for threads and version) and the thread policy of the compiled kernels
(one thread for small inputs, several for large ones, identical results either way)."""

from __future__ import annotations

import ast
from pathlib import Path

import numba
import numpy as np
import pytest
import torch

import ase_deepspin
from ase_deepspin import compress_model, threads
from ase_deepspin.model import fused
from ase_deepspin.neighbors import _count_edges, _fill_edges, build_neighbor_list
from conftest import small_model

PACKAGE_DIR = Path(ase_deepspin.__file__).parent
PACKAGE = "ase_deepspin"


def package_modules() -> dict[str, Path]:
    """Dotted module name -> file for every module of the package (``pkg`` for ``pkg/__init__.py``)."""
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = (PACKAGE,) + path.relative_to(PACKAGE_DIR).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Package modules that module ``name`` imports anywhere in its file (functions included).

    ``from X import y`` imports the submodule ``X.y`` when that is a module of the package,
    otherwise (a name defined in X) the module ``X`` itself. Relative imports resolve against the
    module's package; parent packages that Python initialises along the way are not counted.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a closed path [a, b, ..., a], or None (iterative depth-first search)."""
    state = {}  # absent: unvisited, 1: on the current path, 2: done
    for root in sorted(graph):
        if root in state:
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(child) == 1:
                return path[path.index(child):] + [child]
            elif child not in state:
                state[child] = 1
                path.append(child)
                stack.append(iter(sorted(graph[child])))
    return None


def test_cycle_finder_reports_a_circle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_relative_imports_resolve_to_submodules_and_packages(tmp_path):
    modules = {"ase_deepspin": None, "ase_deepspin.model": None, "ase_deepspin.model.fused": None,
               "ase_deepspin.model.deepspin": None, "ase_deepspin.threads": None, "ase_deepspin.version": None}
    source = tmp_path / "deepspin.py"
    source.write_text("from . import fused\nfrom ..threads import Kernel\n"
                      "def f():\n    from .. import __version__\n    import ase_deepspin.version\n")
    assert imported_modules("ase_deepspin.model.deepspin", source, modules) == {
        "ase_deepspin.model.fused", "ase_deepspin.threads", "ase_deepspin", "ase_deepspin.version"}


def test_no_two_package_modules_import_each_other():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# the rooms, lowest first: a module imports from its own room and rooms below it, never above
LAYERS = (("version", "units", "threads", "spins", "figures"),  # leaves and shared helpers
          ("neighbors", "system", "build"),  # from Atoms to graphs
          ("model",),  # the network alone
          ("io",),  # file formats and converters
          ("calculators",),  # ASE calculators
          ("dynamics", "analysis"),  # consumers: they see energies, forces and torques through ASE only
          ("training",),  # training, evaluation, active learning
          ("cli", ""))  # entry points (and the package itself)


def layer_of(module: str) -> int:
    room = module.split(".")[1] if "." in module else ""
    return next(k for k, rooms in enumerate(LAYERS) if room in rooms)


def test_every_module_has_a_room_and_imports_only_its_room_and_those_below():
    upward = [f"{m} -> {i}" for m, imports in import_graph().items() for i in sorted(imports)
              if layer_of(i) > layer_of(m)]
    assert not upward, "imports from a room above: " + ", ".join(upward)


def test_consumers_never_import_the_model():
    """Dynamics and analysis talk to energies, forces and torques through the ASE calculator interface."""
    graph = import_graph()
    wrong = [f"{m} -> {i}" for m, imports in graph.items() for i in imports
             if m.split(".")[1:2] in (["dynamics"], ["analysis"]) and i.split(".")[1:2] in (["model"], ["io"],
                                                                                           ["calculators"])]
    assert not wrong, ", ".join(wrong)


def test_leaf_modules_import_no_package_module():
    graph = import_graph()
    for leaf in (f"{PACKAGE}.threads", f"{PACKAGE}.version"):
        assert graph[leaf] == set(), f"{leaf} imports {sorted(graph[leaf])}"
    model_modules = {m for m in graph[f"{PACKAGE}.neighbors"] if m.split(".")[:2] == [PACKAGE, "model"]}
    assert model_modules == set(), f"the neighbour list imports {sorted(model_modules)}"


def defined_names(path: Path) -> set[str]:
    """Names a module defines at its top level (functions, classes, assignments), not those it imports."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def test_names_are_imported_from_where_they_are_defined():
    """Only packages (``__init__.py``) gather names from elsewhere: a module exports what it defines, and the
    package, its tests, examples and benchmarks import each name from its module or from a package."""
    modules = package_modules()
    defined = {name: defined_names(path) for name, path in modules.items() if path.name != "__init__.py"}
    wrong = []
    for name, path in modules.items():
        if path.name != "__init__.py":
            exported = next((node.value for node in ast.parse(path.read_text()).body if isinstance(node, ast.Assign)
                             and any(getattr(t, "id", None) == "__all__" for t in node.targets)), None)
            for item in getattr(exported, "elts", []):
                if item.value not in defined[name]:
                    wrong.append(f"{name}.__all__ lists {item.value}, defined elsewhere")
    sources = [(name, path) for name, path in modules.items()] + [
        (None, path) for folder in ("tests", "examples", "benchmarks") for path in (PACKAGE_DIR.parent / folder).glob("*.py")]
    for name, path in sources:
        package = None if name is None else (name if path.name == "__init__.py" else name.rpartition(".")[0])
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package.split(".")
                source = ".".join(base[:len(base) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                source = node.module
            if source not in defined:  # a package, or not ours
                continue
            for alias in node.names:
                if alias.name not in defined[source] and f"{source}.{alias.name}" not in modules:
                    wrong.append(f"{path.relative_to(PACKAGE_DIR.parent)} imports {alias.name} from {source}")
    assert not wrong, "\n".join(wrong)


def test_version_matches_pyproject():
    tomllib = pytest.importorskip("tomllib")
    pyproject = PACKAGE_DIR.parent / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("installed without its source tree")
    assert ase_deepspin.__version__ == tomllib.loads(pyproject.read_text())["project"]["version"]


# thread policy of the compiled kernels

NEIGHBOR_LOOPS = (_count_edges, _fill_edges)
CONTRACTION_LOOPS = (fused._contraction_kernel, fused._contraction_gradient_kernel)


@pytest.fixture
def two_threads():
    """torch (and so the kernels' parallel path) on two threads for the test, then as before."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has a single thread on this machine")
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def record_threads(monkeypatch, kernels) -> list[int]:
    """Numba's thread count at each call of the compiled loops of ``kernels``, appended as they run."""
    seen = []
    for kernel in kernels:
        def spy(*args, compiled=kernel.compiled):
            seen.append(numba.get_num_threads())
            return compiled(*args)
        monkeypatch.setattr(kernel, "compiled", spy)
    return seen


def random_periodic_system(n_atoms: int, seed: int = 0):
    """Random positions at NiO's density (0.11 Å⁻³) in a triclinic cell, pseudo-atoms on half the atoms."""
    rng = np.random.default_rng(seed)
    cell = (n_atoms / 0.11) ** (1 / 3) * (np.eye(3) + rng.normal(scale=0.05, size=(3, 3)))
    positions = rng.uniform(size=(n_atoms, 3)) @ cell
    offsets = np.where((np.arange(n_atoms) % 2 == 0)[:, None], rng.normal(scale=0.3, size=(n_atoms, 3)), 0.0)
    return positions, cell, offsets


def neighbor_list_of(positions, cell, offsets):
    return build_neighbor_list(positions, cell, True, offsets, cutoff=5.0)


@pytest.fixture(scope="module")
def table():
    """The first table of a compressed small model: its coefficients, fused constants and the model's rcut (Å)."""
    model = compress_model(small_model())
    cfg = model.config
    constants = fused.table_constants(model.descriptor.tables[0], model.descriptor.env_mean[0], model.descriptor.env_std[0],
                                      (cfg.rcut_smth, cfg.rcut, cfg.env_protection))
    return model.descriptor.tables[0].coefficients, constants, cfg.rcut


def contraction_and_gradient(table, n_centres: int, edges_per_centre: int = 40):
    """T and ∂(Σ T²)/∂v of ``table`` for random edges grouped by centre, and the mask of edges outside it."""
    coefficients, constants, rcut = table
    gen = torch.Generator().manual_seed(1)
    n_edges = n_centres * edges_per_centre
    directions = torch.nn.functional.normalize(torch.randn(n_edges, 3, generator=gen, dtype=torch.float64), dim=1)
    lengths = 0.3 + (rcut - 0.3) * torch.rand(n_edges, 1, generator=gen, dtype=torch.float64)  # some < 0.5 Å
    vectors = (directions * lengths).requires_grad_(True)
    start = torch.arange(n_centres + 1) * edges_per_centre
    contraction, outside = fused.FusedContraction.apply(vectors, start, coefficients, constants)
    (contraction ** 2).sum().backward()
    return contraction.detach(), outside, vectors.grad


@pytest.mark.parametrize("large", [False, True])
def test_small_inputs_run_the_kernels_on_one_thread_and_large_ones_on_torchs(monkeypatch, two_threads, table, large):
    before = numba.get_num_threads()
    seen = record_threads(monkeypatch, NEIGHBOR_LOOPS + CONTRACTION_LOOPS)
    size = 2 * threads.SERIAL_BELOW if large else 16  # atoms of the neighbour list, centres of the contraction
    neighbor_list_of(*random_periodic_system(size))
    contraction_and_gradient(table, size)
    assert seen == [2 if large else 1] * 4
    assert numba.get_num_threads() == before  # the caller's setting is left as it was


def test_kernels_leave_torchs_thread_count_as_set():
    """numba and torch share libgomp's thread count here, and numba's first call launches its pool, which
    resets it: in a fresh process a calculator call must not undo torch.set_num_threads(1)."""
    import subprocess
    import sys

    script = ("import torch; torch.set_num_threads(1)\n"
              "import numpy as np\n"
              "from ase.build import bulk\n"
              "from ase_deepspin import DeepSpinCalculator\n"
              "atoms = bulk('NiO', 'rocksalt', a=4.17)\n"
              "atoms.set_initial_magnetic_moments([[0, 0, 1.27], [0, 0, 0]])\n"
              "atoms.calc = DeepSpinCalculator('nio')\n"
              "atoms.get_potential_energy()\n"
              "print(torch.get_num_threads())\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1"]


def test_the_threshold_can_be_moved(monkeypatch, two_threads):
    seen = record_threads(monkeypatch, NEIGHBOR_LOOPS)
    system = random_periodic_system(16)
    with threads.serial_below(0):
        neighbor_list_of(*system)
    with threads.serial_below(17):
        neighbor_list_of(*system)
    neighbor_list_of(*system)  # the default again after the blocks
    assert seen == [2, 2, 1, 1, 1, 1]


def test_neighbor_lists_are_identical_on_one_and_two_threads(monkeypatch, two_threads):
    seen = record_threads(monkeypatch, NEIGHBOR_LOOPS)
    system = random_periodic_system(2000)
    with threads.serial_below(10**9):
        serial = neighbor_list_of(*system)
    with threads.serial_below(0):
        parallel = neighbor_list_of(*system)
    assert seen == [1, 1, 2, 2]
    assert len(serial) > 100_000
    for name in ("centers", "neighbors", "shifts", "pseudo", "offsets"):
        assert np.array_equal(getattr(serial, name), getattr(parallel, name)), name


def test_fused_contractions_are_identical_on_one_and_two_threads(monkeypatch, two_threads, table):
    seen = record_threads(monkeypatch, CONTRACTION_LOOPS)
    with threads.serial_below(10**9):
        serial = contraction_and_gradient(table, 500)
    with threads.serial_below(0):
        parallel = contraction_and_gradient(table, 500)
    assert seen == [1, 1, 2, 2]
    assert serial[1].any() and not serial[1].all()  # edges inside and outside the table
    for a, b in zip(serial, parallel):
        assert torch.equal(a, b)


def test_a_small_cell_runs_torch_on_one_thread_and_restores_the_callers_count(two_threads, monkeypatch):
    """Inside a calculator call on fewer atoms than ``serial_below`` torch runs on one thread; the caller's
    count is back afterwards; ``serial_below=0`` keeps the caller's count inside."""
    from ase_deepspin import DeepSpinCalculator
    from ase_deepspin.build import nio_afm

    seen = []
    model = small_model()
    forward = type(model).forward
    monkeypatch.setattr(type(model), "forward", lambda self, *a, **k: seen.append(torch.get_num_threads())
                        or forward(self, *a, **k))
    atoms = nio_afm(repeat=(2, 2, 1))
    for limit in (threads.SERIAL_BELOW, 0):
        atoms.calc = DeepSpinCalculator(model, serial_below=limit)
        atoms.get_potential_energy()
        assert torch.get_num_threads() == 2
    assert seen == [1, 2]

"""The documentation covers the package: every public name in the API reference, every example in the gallery.

The API pages (docs/api/*.md) run autodoc over modules; autodoc shows a public function or class only if it
has a docstring. So: every module of the package is named by an ``automodule`` directive, and every public
name a module defines has a docstring. The gallery (docs/gallery.py) lists every file of examples/, and the
generated references cover every CLI verb. Building the docs with warnings as errors is CI's job (.ci/run).
"""

import importlib
import inspect
import pkgutil
import re
import sys
from pathlib import Path

import ase_deepspin

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def package_modules() -> list[str]:
    """Every module of the package, the verb modules of the command line aside (the CLI reference covers them)."""
    names = ["ase_deepspin"] + [m.name for m in pkgutil.walk_packages(ase_deepspin.__path__, "ase_deepspin.")]
    return sorted(n for n in names if not re.match(r"ase_deepspin\.cli\.", n))


def documented_modules() -> set[str]:
    text = "\n".join(p.read_text() for p in (DOCS / "api").glob("*.md"))
    return set(re.findall(r"^\.\. automodule:: (\S+)", text, flags=re.M))


def public_names(module_name: str):
    """(name, object) of the functions and classes a module defines and does not mark private."""
    module = importlib.import_module(module_name)
    exported = getattr(module, "__all__", None)
    for name, obj in vars(module).items():
        if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if getattr(obj, "__module__", None) != module_name or (exported is not None and name not in exported):
            continue
        yield name, obj


def test_every_module_is_in_the_api_reference():
    missing = sorted(set(package_modules()) - documented_modules())
    assert not missing, f"modules without an automodule directive in docs/api/*.md: {missing}"


def undocumented_names(modules) -> list[str]:
    """Public names of ``modules`` without a docstring (autodoc leaves them out of the reference)."""
    return [f"{module}.{name}" for module in modules for name, obj in public_names(module)
            if not (obj.__doc__ or "").strip()]


def test_every_public_name_has_a_docstring_so_autodoc_shows_it():
    undocumented = undocumented_names(package_modules())
    assert not undocumented, f"public names without a docstring (missing from the API reference): {undocumented}"


def test_a_public_name_without_docstring_is_caught(monkeypatch):
    """The check above can fail: a new undocumented public function in a module is reported, a private one not."""
    module = importlib.import_module("ase_deepspin.spins")

    def undocumented_helper():
        pass

    def _private_helper():
        pass

    for helper in (undocumented_helper, _private_helper):
        helper.__module__ = "ase_deepspin.spins"
        monkeypatch.setattr(module, helper.__name__, helper, raising=False)
    assert undocumented_names(["ase_deepspin.spins"]) == ["ase_deepspin.spins.undocumented_helper"]


def test_every_example_is_in_the_gallery_and_every_verb_in_the_cli_reference():
    sys.path.insert(0, str(DOCS))
    try:
        gallery = importlib.import_module("gallery")
    finally:
        sys.path.remove(str(DOCS))
    files = {p.name for p in (ROOT / "examples").iterdir() if p.is_file()}
    assert files == set(gallery.EXAMPLES), (files ^ set(gallery.EXAMPLES))
    from ase_deepspin.cli import VERBS, build_parser

    import ase_deepspin.cli as cli

    # every verb module on disk is registered (the parser and the generated reference are built from VERBS)
    modules = {m.name for m in pkgutil.iter_modules(cli.__path__)} - {"__main__"}
    assert modules == {v.__name__.rsplit(".", 1)[1] for v in VERBS.values()}
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(subparsers.choices) == set(VERBS)
    assert all(VERBS[v].HELP for v in VERBS)

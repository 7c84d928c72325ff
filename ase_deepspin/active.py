"""Where a model is guessing: committee observers for dynamics and minimisers.

A committee calculator (``DeepSpinCalculator([a, b, ...])``) computes DeePMD-kit's model deviation with
every evaluation (see :func:`ase_deepspin.calculator.committee_deviations`). :class:`DeviationLog`
attached to any ASE dynamics or optimizer (``SpinLatticeDynamics``, ``SpinLBFGS``, ``ase.optimize``)
writes it per step from those results: it never evaluates the model itself, so unused it costs nothing
and used it costs a line of text.
"""

from __future__ import annotations

import os
import sys

import numpy as np

COLUMNS = ("max_devi_f", "avg_devi_f", "max_devi_fm", "avg_devi_fm", "devi_e")


class DeviationLog:
    """Per-call log of a committee's model deviation: ``dyn.attach(DeviationLog(atoms, "devi.log"), interval=10)``.

    Columns: call number, then max/mean force deviation (eV/Å), max/mean torque deviation over magnetic
    atoms (eV/μB) and energy deviation (eV/atom). ``logfile`` is a path, an open file or ``"-"`` (standard
    output). ``history`` keeps the rows as a list of dicts. Raises if ``atoms`` has no committee calculator.
    """

    def __init__(self, atoms, logfile="-"):
        calc = atoms.calc
        if calc is None or "model_deviation" not in getattr(calc, "implemented_properties", ()):
            raise ValueError("DeviationLog needs a committee calculator: DeepSpinCalculator([model_a, model_b, ...])")
        self.atoms = atoms
        self.history = []
        self._owned = isinstance(logfile, (str, os.PathLike)) and logfile != "-"
        self.file = sys.stdout if logfile == "-" else (open(logfile, "w") if self._owned else logfile)
        self.file.write(f"{'call':>8s}" + "".join(f"{c:>14s}" for c in COLUMNS) + "\n")

    def __call__(self):
        # the results of the step just taken (cached by ASE: no new evaluation unless the atoms changed)
        devi = self.atoms.calc.get_property("model_deviation", self.atoms)
        row = {c: float(devi[c]) for c in COLUMNS}
        self.history.append(row)
        self.file.write(f"{len(self.history):8d}" + "".join(f"{row[c]:14.6e}" for c in COLUMNS) + "\n")
        self.file.flush()

    def close(self):
        if self._owned:
            self.file.close()

    def maxima(self) -> dict:
        """Largest value of each column over the logged calls."""
        return {c: float(np.max([r[c] for r in self.history])) for c in COLUMNS}

"""Analyses on top of any spin calculator: plots (and, later, phonons, magnons, NEB)."""

"""The package version, the same string as ``version`` in pyproject.toml (a leaf: imports nothing)."""

__version__ = "0.1.0"

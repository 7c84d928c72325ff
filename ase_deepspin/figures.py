"""Matplotlib figures written as PNG: no screen needed, and the caller's pyplot backend is left alone."""


def new_figure(**kwargs):
    """A matplotlib ``Figure`` made outside pyplot (constrained layout): it renders to files through
    Agg without switching the caller's backend and holds no global state, so nothing needs closing."""
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kwargs)

"""Thread policy of the compiled (numba) kernels: one thread for small inputs, torch's count for large ones.

Every parallel loop of the package (the neighbour loops of :mod:`~ase_deepspin.neighbors`, the
fused contractions of :mod:`~ase_deepspin.model.fused`) is a :class:`Kernel`: a ``prange`` loop over
centres, compiled once with ``parallel=True``. A call passes the number of centres it visits and
runs on one thread below :data:`SERIAL_BELOW` centres, otherwise on ``torch.get_num_threads()``
threads (capped at numba's pool size). On one thread the loop runs on the calling thread alone:
no worker is woken and none is left spinning. The caller's numba thread count is restored after
each call.

Measured (2 cores, numba 0.68 with the OpenMP layer, best of repeated calls, µs; NiO, shipped
model, rcut 5.6 Å: about 146 candidate pairs per atom; fused: the largest table):

========================================  ======  ==========  ===========
loops, input                              1 thr.  2 threads   saving
========================================  ======  ==========  ===========
neighbour count + fill, 16 atoms              35          28      7
neighbour count + fill, 128 atoms            243         136    107
neighbour count + fill, 256 atoms            488         268    220
neighbour count + fill, 2048 atoms          8300        4900   3400
fused contraction + gradient, 8 centres       32          21     11
fused contraction + gradient, 64             231         121    110
fused contraction + gradient, 128            460         246    214
fused contraction + gradient, 1024          3800        2130   1670
========================================  ======  ==========  ===========

On an idle machine two threads always win, but by microseconds on small inputs, while a
parallel region needs every one of its threads scheduled: when the other core is busy (another
process, torch's or numba's OpenMP workers spinning after their last region, a process pool, a
parallel test run) a region waits for a scheduler slice of 4–8 ms. With a busy loop on the second
core the 16-atom neighbour list took 1.2 ms on average (p90 1.2 ms) on one thread against 2.6 ms
(p90 5.0 ms) on two, and a neighbour loop right after a torch operation 66 µs against 1.3 ms; in
one loaded episode (other test runs) the 16-atom list took 20–24 ms per call on two threads
and a compressed 16-atom calculator call 0.7 s (medians), against 0.4–0.55 ms and 60–64 ms
with this policy in the same minutes. The threshold, 256 centres, is where two threads save
about 0.2 ms per pair of loops (1.8×), a few percent of a calculator call of that size; the
saving is 0.1 ms at 128 centres and 7–11 µs at 16.

Spinning threads and other libraries. ``numba.threading_layer()`` is ``"omp"`` here: numba's
OpenMP pool comes from the system libgomp and torch's from its own copy, two pools whose workers
spin after each region before sleeping. On an idle machine a 3×3 ``scipy.linalg.lu_factor`` and
``lu_solve`` right after a parallel numba loop takes as long as after a serial one (55 µs
median); after a torch operation it takes 120–180 µs whatever the wait policy
(``OMP_WAIT_POLICY=passive`` changes nothing there: caches, not spinning). Slow scipy calls in
ASE's cell filters appear only when the cores are oversubscribed, and the serial path removes
numba's share of that for small cells. ``OMP_WAIT_POLICY=passive`` made two-thread numba loops
after torch operations slower (p90 5 ms) and ``NUMBA_THREADING_LAYER=workqueue`` changed a
16-atom cell relaxation by less than the noise, so the package sets neither (environment
variables are process-wide; set them before importing numba and torch if your workload needs).

Torch's own threads are left to the user. A DeepSpinCalculator call (energy, forces, stress,
torques) on an idle machine, 1 → 2 torch threads: 16 atoms 20 → 16 ms (plain) and 13 → 8.5 ms
(compressed); 2048 atoms 2.1 → 1.4 s and 330 → 250 ms. With the second core busy the 16-atom
call averaged 29 ms on one thread against 90 ms on two (plain; compressed 15 against 44 ms), so
where processes share cores (process pools of phonon displacements or NEB images, parallel test
runs) use ``torch.set_num_threads(1)`` in each process.

Torch's own threads follow the same rule inside a calculator call (:func:`thread_scope`, used by
``DeepSpinCalculator``): below the threshold the call runs torch on one thread and restores the
caller's count afterwards; above it, torch's count is the caller's.

The threshold is an option with a narrow scope: ``with serial_below(n):`` (centres; ``0`` always uses
torch's count, a huge value always one thread) applies to the calls inside the block only, and
``DeepSpinCalculator(..., serial_below=n)`` to that calculator's calls.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

import numba
import torch
from numba import njit

SERIAL_BELOW = 256  # centres; default threshold (measured: module docstring)
_serial_below = ContextVar("serial_below", default=SERIAL_BELOW)


@contextmanager
def serial_below(n_centres: int):
    """Inside the block, loops and calculator calls over fewer than ``n_centres`` centres run on one thread."""
    if not isinstance(n_centres, int) or n_centres < 0:
        raise ValueError(f"serial_below takes a number of centres >= 0, got {n_centres!r}")
    token = _serial_below.set(n_centres)
    try:
        yield
    finally:
        _serial_below.reset(token)


@contextmanager
def thread_scope(n_centres: int):
    """Torch on one thread inside the block when ``n_centres`` is below the threshold; the caller's count after."""
    if n_centres >= _serial_below.get() or torch.get_num_threads() == 1:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def kernel_threads(n_centres: int, torch_threads: int | None = None) -> int:
    """Threads for a loop over ``n_centres`` centres: 1 below the threshold, else torch's count.

    Torch's count (``torch_threads``, default ``torch.get_num_threads()``) is capped at numba's pool size.
    """
    if n_centres < _serial_below.get():
        return 1
    torch_threads = torch.get_num_threads() if torch_threads is None else torch_threads
    return max(1, min(torch_threads, numba.config.NUMBA_NUM_THREADS))


class Kernel:
    """A numba ``prange`` loop over centres (compiled ``parallel=True``) run on :func:`kernel_threads` threads.

    ``kernel(n_centres, *args)`` calls the compiled loop with ``args`` on
    ``kernel_threads(n_centres)`` threads and restores the caller's numba and torch thread counts
    afterwards (they share libgomp's setting here, so one would otherwise overwrite the other).
    ``compiled`` is the numba dispatcher.

    One compilation serves both paths: a second, serial compilation of the same function (``prange``
    runs as ``range`` without ``parallel=True``) would share numba's on-disk cache entry, which is
    keyed by function name and line, not by ``parallel`` (the second dispatcher loads the first's
    code), and measured 1.7–2.5× slower than this one on one thread (numba marks the outlined
    parallel loop's arrays ``noalias``).
    """

    def __init__(self, function, fastmath: bool = False):
        self.compiled = njit(parallel=True, cache=True, fastmath=fastmath)(function)
        self.__doc__, self.__name__ = function.__doc__, function.__name__

    def __call__(self, n_centres: int, *args):
        torch_threads = torch.get_num_threads()  # first: numba's first call launches its pool, which resets it
        previous = numba.get_num_threads()
        numba.set_num_threads(kernel_threads(n_centres, torch_threads))
        try:
            return self.compiled(*args)
        finally:
            numba.set_num_threads(previous)
            # numba's OpenMP layer and torch share libgomp's thread count: setting numba's resets torch's
            # (torch.set_num_threads(1) would silently become 2, oversubscribing shared cores)
            if torch.get_num_threads() != torch_threads:
                torch.set_num_threads(torch_threads)

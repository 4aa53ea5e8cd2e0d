r"""The common kernels run on torch's OpenMP threads, for :mod:`softmaxkit.torch`'s CPU tensors.

Why. torch on Linux runs its CPU ops on GNU OpenMP (libgomp), whose threads keep spinning for a few milliseconds
after each parallel region in case another follows. A numba kernel between two torch ops (our softmax, then
torch's ``* w`` and ``.sum()``, then our backward) wakes numba's own threads while torch's are still spinning:
three busy threads on two cores, and the kernel took as long with two threads as with one (1024 x 1000 float32:
0.95 ms after a torch op against 0.65 ms alone and 0.88 ms on one thread; an idle pause of 5 ms between them
restored 0.65). Run on torch's threads instead, the kernel is picked up by the threads that are spinning for
work anyway, and numba's are never woken.

How. ``GOMP_parallel(fn, data, n, 0)`` of torch's libgomp (the entry point GCC compiles ``#pragma omp parallel``
into, stable since GCC 4.9) runs the C function ``fn(data)`` on ``n`` threads of its team, the caller's among
them, and returns when all have. ``fn`` here is a numba ``cfunc`` per operation (:data:`TASKS`), compiled on its
first use and cached on disk as the kernels are; ``data`` is an ``int64`` block (:func:`block`) holding the
addresses and shapes of the arrays, the scalars, and a counter from which each thread claims the next piece of
rows (an atomic add), so that a thread that starts late takes fewer pieces. The pieces are the ones the numba
parallel kernels cut (rows ``ch * n // pieces`` to ``(ch + 1) * n // pieces``, each with scratch and sums of its
own, stored into its row of ``sums`` at the end), computed by the same row functions, so the results are bit for
bit those of the numba kernels.

When. :func:`torch_team` gives the team only where it is safe and useful: torch imported, its parallel backend
OpenMP through a libgomp in torch's own folder that is loaded in this process, more than one torch thread, and
this process not a child forked from one that may have started the team (libgomp's threads do not survive
``fork``: a child that called ``GOMP_parallel`` would wait for them forever; there the numba threads, which
are fork-safe, run the kernel). Everything else (no torch, another OpenMP, Windows and macOS) keeps numba's
threads.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic
from numba.np.numpy_support import carray

from . import _backward, _plain
from ._vmath import jit

__all__ = ["SOURCES_SHA", "TASKS", "Team", "block", "torch_team"]

SOURCES_SHA = "b4250a26b59e87fe"
"""The stamp of ``_rows.py``, ``_vmath.py``, ``_plain.py`` and ``_backward.py``, whose row functions the tasks
compile in: numba keys a cached function on its own file only, and a test fails until this follows them."""

GRAIN = 1 << 15
"""Logits per thread of the team: torch's own grain (``at::internal::GRAIN_SIZE``), as the team is torch's threads
and the calls are torch's. Measured in a training-step loop (``benchmarks/bench_torch_front.py``'s shapes and
between them; 2 cores): CE forward + backward at 256 x 1000 0.20 -> 0.16 ms, log_softmax at 2048 x 100 0.60 ->
0.45 ms, against :data:`._runtime.WORK_PER_THREAD`'s rule (one thread below 2^19 logits); half of it (2^14) made
64 x 1000 slower (0.06 -> 0.09 ms: torch's threads, asleep, wake later than one thread finishes)."""

# the slots of a block
COUNT, PIECES, DTYPE, N, K, NB, X, OUT, MB, G, Y, W, ROWS, NROWS, SUMS, IGNORE, INV = range(17)
SIZE = 17


# ------------------------------------------------------------------------------------------------ intrinsics
_pointer_type: Any = types.CPointer
_intrinsic: Callable[..., Any] = intrinsic


@_intrinsic
def _slots(typingctx: Any, data: Any) -> Any:
    """The block at ``data`` as an ``int64`` pointer."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.IntType(64).as_pointer())

    return _pointer_type(types.int64)(types.voidptr), codegen


@_intrinsic
def _claim(typingctx: Any, data: Any) -> Any:
    """The counter at ``data``'s first slot, incremented atomically: the next piece for this thread."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        count = builder.bitcast(args[0], ir.IntType(64).as_pointer())
        return builder.atomic_rmw("add", count, ir.Constant(ir.IntType(64), 1), "monotonic")

    return types.int64(types.voidptr), codegen


@_intrinsic
def _pointer(typingctx: Any, address: Any, like: Any) -> Any:
    """The integer ``address`` as a pointer to values of ``like``'s type."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.inttoptr(args[0], context.get_value_type(like).as_pointer())

    return _pointer_type(like)(types.int64, like), codegen


@_intrinsic
def _float(typingctx: Any, bits: Any) -> Any:
    """The float64 whose bits are the integer ``bits``."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


# ------------------------------------------------------------------------------------------------ the pieces
@jit(nrt=True)
def _matrix(b: Any, slot: int, rows: int, like: Any) -> Any:
    return carray(_pointer(b[slot], like), (rows, b[K]))


@jit(nrt=True)
def _map_pieces(data: Any, like: Any, op: int) -> None:
    """softmax (op 0), log-softmax (1), logsumexp (2) of the block at ``data``, as :mod:`._plain`'s kernels."""
    b = carray(_slots(data), (SIZE,))
    n, pieces = b[N], b[PIECES]
    x = _matrix(b, X, n, like)
    mb = carray(_pointer(b[MB], like), (pieces, b[NB]))
    ch = _claim(data)
    while ch < pieces:
        r0, r1 = ch * n // pieces, (ch + 1) * n // pieces
        own = np.empty_like(mb[ch])  # this piece's own scratch (_rows: pieces on several threads)
        if op == 0:
            _plain.softmax_chunk(x, _matrix(b, OUT, n, like), own, r0, r1)
        elif op == 1:
            _plain.log_softmax_chunk(x, _matrix(b, OUT, n, like), own, r0, r1)
        else:
            _plain.logsumexp_chunk(x, carray(_pointer(b[OUT], 0.0), (n,)), own, r0, r1)
        ch = _claim(data)


@jit(nrt=True)
def _backward_pieces(data: Any, like: Any, log: int) -> None:
    """The backward of softmax (``log``: log-softmax) of the block at ``data``, as :mod:`._backward`'s kernels."""
    b = carray(_slots(data), (SIZE,))
    n, pieces = b[N], b[PIECES]
    y, g, out = _matrix(b, X, n, like), _matrix(b, G, n, like), _matrix(b, OUT, n, like)
    ch = _claim(data)
    while ch < pieces:
        r0, r1 = ch * n // pieces, (ch + 1) * n // pieces
        if log:
            _backward.log_softmax_chunk(y, g, out, r0, r1)
        else:
            _backward.softmax_chunk(y, g, out, r0, r1)
        ch = _claim(data)


@jit(nrt=True)
def _ce_pieces(data: Any, like: Any, grad_too: int) -> None:
    """Class-index cross-entropy (and its gradient) of the block at ``data``, as :mod:`._plain`'s kernels."""
    b = carray(_slots(data), (SIZE,))
    n, pieces = b[N], b[PIECES]
    x = _matrix(b, X, n, like)
    y = carray(_pointer(b[Y], np.int64(0)), (n,))
    w = carray(_pointer(b[W], like), (b[K],))
    rows = carray(_pointer(b[ROWS], 0.0), (b[NROWS],))
    mb = carray(_pointer(b[MB], like), (pieces, b[NB]))
    sums = carray(_pointer(b[SUMS], 0.0), (pieces, 4))
    ignore, inv_ce = b[IGNORE], _float(b[INV])
    ch = _claim(data)
    while ch < pieces:
        r0, r1 = ch * n // pieces, (ch + 1) * n // pieces
        own, acc = np.empty_like(mb[ch]), np.zeros(4)  # this piece's own scratch and sums (_rows: pieces on threads)
        if grad_too:
            grad = _matrix(b, OUT, n, like)
            _plain.ce_grad_chunk(x, y, ignore, w, inv_ce, grad, rows, own, r0, r1, acc)
        else:
            _plain.ce_loss_chunk(x, y, ignore, w, 1.0, x[:0], rows, own, r0, r1, acc)
        sums[ch, :] = acc
        ch = _claim(data)


# ------------------------------------------------------------------------------------------------ the tasks
def _make(name: str, family: int, arg: int) -> Any:
    """The C function of one operation: the pieces function of ``family`` (0: :func:`_map_pieces`, 1:
    :func:`_backward_pieces`, 2: :func:`_ce_pieces`) with ``arg``, for the block's dtype (float32 and float64
    in one function). A plain Python function here; it becomes a cfunc on its first use (:func:`_task`), so
    that a process compiles only the ones it runs.

    Caching: numba keys a cached closure on its variables' pickles, so they are integers only (a dispatcher's
    pickle differs between processes: never a hit); ``family`` and ``arg`` are constants to numba, which
    compiles only the branch they take. The function's name carries the operation's: numba names a cached
    function's files after it, and the closures of this factory would otherwise share them (as
    ``_vmath.jit``'s ``variant``)."""

    def task(data: Any) -> None:
        f32 = carray(_slots(data), (SIZE,))[DTYPE] == 4
        if family == 0:
            if f32:
                _map_pieces(data, np.float32(0), arg)
            else:
                _map_pieces(data, np.float64(0), arg)
        elif family == 1:
            if f32:
                _backward_pieces(data, np.float32(0), arg)
            else:
                _backward_pieces(data, np.float64(0), arg)
        elif f32:
            _ce_pieces(data, np.float32(0), arg)
        else:
            _ce_pieces(data, np.float64(0), arg)

    task.__name__ = f"task_{name}"
    task.__qualname__ = f"task_{name}"
    return task


TASKS = {
    name: _make(name, family, arg)
    for name, family, arg in (
        ("softmax", 0, 0),
        ("log_softmax", 0, 1),
        ("logsumexp", 0, 2),
        ("softmax_backward", 1, False),
        ("log_softmax_backward", 1, True),
        ("cross_entropy", 2, True),
        ("cross_entropy_loss", 2, False),
    )
}
"""The operations a team runs, by name."""

_compiled: dict[str, Any] = {}
_compile_lock = threading.Lock()


def _task(name: str) -> Any:
    """The cfunc of :data:`TASKS`'s ``name``, compiled (or loaded from the cache) on its first use."""
    task = _compiled.get(name)
    if task is not None:
        return task
    from . import _runtime

    with _compile_lock:
        task = _compiled.get(name)
        if task is None:
            task = _runtime.cfunc(TASKS[name])
            _compiled[name] = task
    return task


# ------------------------------------------------------------------------------------------------ the team
_SLOTS = {"out": OUT, "mb": MB, "g": G, "y": Y, "w": W, "rows": ROWS, "sums": SUMS, "ignore": IGNORE, "inv": INV}


def block(x: np.ndarray, pieces: int, **values: np.ndarray | int | float) -> np.ndarray:
    """The ``int64`` block a task reads for rows ``x`` (C-contiguous ``(n, k)``) cut into ``pieces``: the
    addresses of the arrays (``out``, ``mb``, ``g``, ``y``, ``w``, ``rows``, ``sums``, with ``mb``'s columns and
    ``rows``'s length), integers (``ignore``) and float64 bits (``inv``), the piece counter at 0. The arrays must
    stay alive until the task has run."""
    slots = np.zeros(SIZE, dtype=np.int64)
    n, k = x.shape
    slots[[PIECES, DTYPE, N, K, X]] = pieces, x.itemsize, n, k, x.ctypes.data
    for name, value in values.items():
        slot = _SLOTS[name]
        if isinstance(value, np.ndarray):
            slots[slot] = value.ctypes.data
            if name == "mb":
                slots[NB] = value.shape[1]
            elif name == "rows":
                slots[NROWS] = value.size
        elif isinstance(value, float):
            slots[slot] = np.float64(value).view(np.int64)
        else:
            slots[slot] = value
    return slots


class Team:
    """torch's libgomp, running a task on torch's threads."""

    def __init__(self, lib: ctypes.CDLL, torch: Any) -> None:
        run = lib.GOMP_parallel
        run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        run.restype = None
        self._parallel = run
        self._torch = torch

    def pieces(self, work: int) -> int:
        """The threads a call with ``work`` logits uses: one per :data:`GRAIN` logits, at most torch's thread
        count (``torch.set_num_threads``)."""
        if work < 2 * GRAIN:
            return 1
        return max(1, min(int(self._torch.get_num_threads()), work // GRAIN))

    def run(self, name: str, x: np.ndarray, pieces: int, **values: np.ndarray | int | float) -> None:
        """Run the task ``name`` on ``x`` cut into ``pieces`` (and :func:`block`'s ``values``), one thread per
        piece; ctypes releases the GIL meanwhile."""
        slots = block(x, pieces, **values)
        self._parallel(_task(name).address, slots.ctypes.data, pieces, 0)


_found: list[Team | None] = []
_forked: list[bool] = []


def _after_fork_in_child() -> None:
    _forked.append(True)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _find() -> Team | None:
    torch = sys.modules.get("torch")
    if torch is None or not sys.platform.startswith("linux") or not hasattr(os, "RTLD_NOLOAD"):
        return None
    try:
        if "OpenMP" not in torch.__config__.parallel_info():
            return None
        folder = os.path.join(os.path.dirname(str(torch.__file__)), "lib")
        for path in sorted(glob.glob(os.path.join(folder, "libgomp*.so*"))):
            try:
                lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD)  # only if torch has loaded it
            except OSError:
                continue
            if hasattr(lib, "GOMP_parallel"):
                return Team(lib, torch)
    except Exception:  # an unusual torch build: numba's threads
        return None
    return None


def torch_team() -> Team | None:
    """The team of torch's OpenMP threads where the kernels may run on it (see the module notes), else None."""
    if _forked:
        return None
    if not _found:
        _found.append(_find())
    return _found[0]

r"""The backward of softmax and log-softmax, and a label check, for :mod:`softmaxkit.torch`'s CPU tensors.

For a row with softmax :math:`p`, log-softmax :math:`y` and upstream gradient :math:`g`:

.. math:: \frac{\partial L}{\partial z} = p \odot \Bigl(g - \sum_j g_j p_j\Bigr), \qquad
          \frac{\partial L}{\partial z} = g - e^{y} \sum_j g_j

the formulas of :func:`softmaxkit.softmax`'s vjp, with its special values: a masked entry (:math:`p = 0`,
:math:`y = -\infty`) gets 0 (for log-softmax its :math:`g` is not read: torch hands a finite one, the reference
treats the entry as a constant), a fully masked row gets zeros, a row holding ``nan`` gets ``nan``. Each row is
read twice (the sum, then the result) and written once; nothing else is allocated.

These kernels are imported lazily, as the others (:func:`softmaxkit.kernels.numba.softmax_backward`), with the
same private cache. numba keys a cached kernel on its own file only: :data:`SOURCES_SHA` is the stamp of
``_rows.py`` and ``_vmath.py`` (whose ``vexp`` is compiled in here), as in :mod:`._kernels`, and a test fails
until it follows them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange

from ._rows import label_scan, mean_scale
from ._vmath import jit, vexp, wide

__all__ = [
    "SOURCES_SHA",
    "first_bad_label",
    "label_scale",
    "log_softmax_backward_rows",
    "log_softmax_backward_rows_parallel",
    "log_softmax_chunk",
    "softmax_backward_rows",
    "softmax_backward_rows_parallel",
    "softmax_chunk",
]

SOURCES_SHA = "fff4b3f392b19cae"
"""The stamp of ``_rows.py`` and ``_vmath.py``, as :data:`._kernels.SOURCES_SHA` (this file's cache needs its own)."""

_REASSOC = {"reassoc", "contract"}  # the row sums may be reassociated so that LLVM vectorises them


@jit(fastmath=_REASSOC)
def _dot(a: Any, b: Any) -> float:
    wide()
    s = 0.0
    for j in range(a.size):
        s += float(a[j]) * float(b[j])
    return s


@jit(fastmath=_REASSOC)
def _masked_sum(y: Any, g: Any) -> float:
    """:math:`\\sum_j g_j` over the entries whose ``y`` is not ``-inf`` (their ``g`` is never read)."""
    wide()
    s = 0.0
    for j in range(y.size):
        s += float(g[j]) if y[j] != -np.inf else 0.0
    return s


@jit()
def softmax_chunk(p: Any, g: Any, out: Any, r0: int, r1: int) -> None:
    wide()
    for i in range(r0, r1):
        s = p.dtype.type(_dot(p[i], g[i]))
        pi, gi, oi = p[i], g[i], out[i]
        for j in range(pi.size):
            oi[j] = pi[j] * (gi[j] - s)


@jit()
def log_softmax_chunk(y: Any, g: Any, out: Any, r0: int, r1: int) -> None:
    wide()
    for i in range(r0, r1):
        s = y.dtype.type(_masked_sum(y[i], g[i]))
        yi, gi, oi = y[i], g[i], out[i]
        for j in range(yi.size):
            v = gi[j] - vexp(yi[j]) * s
            oi[j] = v if yi[j] != -np.inf else 0.0


@jit(cache=True)
def softmax_backward_rows(p: Any, g: Any, out: Any) -> None:
    """``out[i] = p[i] * (g[i] - <g[i], p[i]>)`` for every row of the softmax ``p``."""
    softmax_chunk(p, g, out, 0, p.shape[0])


@jit(cache=True, parallel=True)
def softmax_backward_rows_parallel(p: Any, g: Any, out: Any, pieces: int) -> None:
    """:func:`softmax_backward_rows` with the rows cut into ``pieces`` pieces, one per thread."""
    n = p.shape[0]
    for ch in prange(pieces):
        softmax_chunk(p, g, out, ch * n // pieces, (ch + 1) * n // pieces)


@jit(cache=True)
def log_softmax_backward_rows(y: Any, g: Any, out: Any) -> None:
    """``out[i] = g[i] - exp(y[i]) * sum(g[i])`` for every row of the log-softmax ``y``; 0 where ``y`` is ``-inf``."""
    log_softmax_chunk(y, g, out, 0, y.shape[0])


@jit(cache=True, parallel=True)
def log_softmax_backward_rows_parallel(y: Any, g: Any, out: Any, pieces: int) -> None:
    """:func:`log_softmax_backward_rows` with the rows cut into ``pieces`` pieces, one per thread."""
    n = y.shape[0]
    for ch in prange(pieces):
        log_softmax_chunk(y, g, out, ch * n // pieces, (ch + 1) * n // pieces)


@jit(cache=True)
def first_bad_label(y: Any, n_classes: int, ignore: int) -> int:
    """The position of the first class index outside ``[0, n_classes)`` that is not ``ignore``, or -1."""
    bad: int = label_scan(y, n_classes, ignore)[0]
    return bad


@jit(cache=True)
def label_scale(y: Any, n_classes: int, ignore: int, mean: bool) -> Any:
    """:func:`._rows.mean_scale`: ``(bad, kept, inv)`` of class indices ``y`` (the torch front's small calls on
    torch's threads check their labels with it before the team runs)."""
    return mean_scale(y, n_classes, ignore, mean)

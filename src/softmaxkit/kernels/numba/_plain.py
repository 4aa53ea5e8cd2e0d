r"""The common calls' kernels: softmax, log-softmax and lse without options, cross-entropy with default options.

Each is the general kernel of :mod:`._kernels` with its options fixed, and does the same arithmetic in the same
order: its results are the general kernel's up to the last bits, where LLVM contracts an exponential or
reassociates a block's sum differently in another kernel (tests/test_kernels_cpu.py compares them). They exist
for the first call's sake (issue 14, item 7): numba compiles a kernel together with every branch of every
function it calls, and the general kernels' branches for temperatures, softcaps, label smoothing, probability
targets and short rows cost most of a first call's compile time. A call whose options these kernels have fixed,
on rows longer than :data:`._rows.NARROW`, compiles only them; any other call compiles the general kernel.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import prange

from ._rows import (
    BLOCK,
    fill,
    has_nan,
    mean_scale,
    neumaier,
    pass1_plain,
    pass1_plain_store,
    pass1_plain_total,
    reduced,
    shift_minus,
    times_,
)
from ._vmath import jit, vexp, vlog1p

__all__ = [
    "SOURCES_SHA",
    "ce_grad_chunk",
    "ce_loss_chunk",
    "cross_entropy_loss_rows",
    "cross_entropy_loss_rows_parallel",
    "cross_entropy_rows",
    "cross_entropy_rows_parallel",
    "log_softmax_chunk",
    "log_softmax_rows",
    "log_softmax_rows_parallel",
    "logsumexp_chunk",
    "logsumexp_rows",
    "logsumexp_rows_parallel",
    "small_cross_entropy",
    "softmax_chunk",
    "softmax_rows",
    "softmax_rows_parallel",
]

SOURCES_SHA = "fff4b3f392b19cae"
"""The stamp of ``_rows.py`` and ``_vmath.py``, as :data:`._kernels.SOURCES_SHA` (this file's cache needs its own)."""


# ------------------------------------------------------------------------------------ softmax and lse
@jit()
def softmax_chunk(x: Any, out: Any, mb: Any, r0: int, r1: int) -> None:
    """Rows ``r0:r1`` of :func:`softmax_rows`."""
    k = x.shape[1]
    for i in range(r0, r1):
        m, total = pass1_plain_total(x[i], out[i], mb)  # 1 + rest
        if not total < np.inf or m == np.inf:
            fill(out[i], np.nan)
        elif m == -np.inf:  # every entry -inf
            fill(out[i], 0.0)
        else:
            inv = 1.0 / total
            for b in range(mb.size):  # out[i] holds exp(x - mb[b]), block by block, from the first pass
                # (a block summed against the row's maximum, as every single-block row's is: no call to exp)
                f = x.dtype.type(inv if mb[b] == m else math.exp(float(mb[b]) - float(m)) * inv)
                times_(out[i, b * BLOCK : min((b + 1) * BLOCK, k)], f)


@jit(cache=True)
def softmax_rows(x: Any, out: Any, mb: Any) -> None:
    """``out[i] = softmax(x[i])`` for every row: rows longer than :data:`._rows.NARROW`, of at most
    :data:`._rows.STORE` bytes (the first pass keeps the exponentials in ``out``).

    ``mb``: scratch of the caller's, ``(pieces, blocks)`` in ``x``'s dtype, one row per piece of rows (one here):
    the maximum each block of :data:`._rows.BLOCK` entries was summed against. Allocating it here would compile
    NumPy's allocation into the kernel too.
    """
    softmax_chunk(x, out, mb[0], 0, x.shape[0])


@jit(nrt=True, cache=True, parallel=True)
def softmax_rows_parallel(x: Any, out: Any, mb: Any) -> None:
    """:func:`softmax_rows` with the rows cut into pieces, one per row of ``mb`` and thread (each piece
    allocates its own scratch: ``mb`` gives the pieces and the scratch's shape)."""
    n, pieces = x.shape[0], mb.shape[0]
    for ch in prange(pieces):
        own = np.empty_like(mb[ch])  # this piece's own scratch (_rows: pieces on several threads)
        softmax_chunk(x, out, own, ch * n // pieces, (ch + 1) * n // pieces)


@jit()
def log_softmax_chunk(x: Any, out: Any, mb: Any, r0: int, r1: int) -> None:
    """Rows ``r0:r1`` of :func:`log_softmax_rows`."""
    k = x.shape[1]
    for i in range(r0, r1):
        m, rest = pass1_plain(x[i], x[i], mb)  # nothing is stored
        if not rest < np.inf or m == np.inf:
            fill(out[i], np.nan)
        elif m == -np.inf:
            fill(out[i], -np.inf)
        else:
            log_norm = x.dtype.type(vlog1p(rest))
            for b0 in range(0, k, BLOCK):
                shift_minus(x[i, b0 : b0 + BLOCK], m, log_norm, out[i, b0 : b0 + BLOCK])


@jit(cache=True)
def log_softmax_rows(x: Any, out: Any, mb: Any) -> None:
    """``out[i] = log_softmax(x[i])`` for every row, rows longer than :data:`._rows.NARROW` (``mb``: scratch)."""
    log_softmax_chunk(x, out, mb[0], 0, x.shape[0])


@jit(nrt=True, cache=True, parallel=True)
def log_softmax_rows_parallel(x: Any, out: Any, mb: Any) -> None:
    """:func:`log_softmax_rows` with the rows cut into pieces, one per row of ``mb`` and thread (each piece
    allocates its own scratch: ``mb`` gives the pieces and the scratch's shape)."""
    n, pieces = x.shape[0], mb.shape[0]
    for ch in prange(pieces):
        own = np.empty_like(mb[ch])  # this piece's own scratch (_rows: pieces on several threads)
        log_softmax_chunk(x, out, own, ch * n // pieces, (ch + 1) * n // pieces)


@jit()
def logsumexp_chunk(x: Any, out: Any, mb: Any, r0: int, r1: int) -> None:
    """Rows ``r0:r1`` of :func:`logsumexp_rows`."""
    for i in range(r0, r1):
        m, rest = pass1_plain(x[i], x[i], mb)
        if m == np.inf:
            rest = np.nan if has_nan(x[i]) else np.inf
        out[i] = np.float64(m) + vlog1p(rest)


@jit(cache=True)
def logsumexp_rows(x: Any, out: Any, mb: Any) -> None:
    """``out[i] = m + log1p(rest)`` in float64, rows longer than :data:`._rows.NARROW` (``mb``: scratch)."""
    logsumexp_chunk(x, out, mb[0], 0, x.shape[0])


@jit(nrt=True, cache=True, parallel=True)
def logsumexp_rows_parallel(x: Any, out: Any, mb: Any) -> None:
    """:func:`logsumexp_rows` with the rows cut into pieces, one per row of ``mb`` and thread (each piece
    allocates its own scratch: ``mb`` gives the pieces and the scratch's shape)."""
    n, pieces = x.shape[0], mb.shape[0]
    for ch in prange(pieces):
        own = np.empty_like(mb[ch])  # this piece's own scratch (_rows: pieces on several threads)
        logsumexp_chunk(x, out, own, ch * n // pieces, (ch + 1) * n // pieces)


# ------------------------------------------------------------------------------------------ cross-entropy
def _cross_entropy_chunk(grad_too: bool) -> Any:
    """Rows ``r0:r1`` of :func:`cross_entropy_rows` (``grad_too``) or :func:`cross_entropy_loss_rows`.

    ``grad_too`` is a constant of the closure: the loss alone compiles no gradient code, and the gradient
    keeps the first pass's exponentials in its rows (numba compiles only one side of each ``if grad_too``).
    """

    @jit(variant=f"grad_too_{grad_too}")
    def chunk(x: Any, y: Any, ignore: int, w: Any, inv_ce: float, grad: Any, rows: Any, mb: Any, r0: int, r1: int,
              acc: Any) -> None:  # fmt: skip
        k = x.shape[1]
        keep = rows.size > 0
        for i in range(r0, r1):
            yi = y[i]
            if yi == ignore:
                if keep:
                    rows[i] = 0.0
                if grad_too:
                    fill(grad[i], 0.0)
                continue
            if grad_too:
                m, rest = pass1_plain_store(x[i], grad[i], mb)
            else:
                m, rest = pass1_plain(x[i], x[i], mb)
            if m == np.inf:
                rest = np.nan
            meff = m if abs(m) < np.inf else x.dtype.type(0.0)
            dy = np.float64(x[i, yi] - meff)
            coef = np.float64(w[yi])
            log_norm, inv, bad = vlog1p(rest), 1.0 / (1.0 + rest), not rest < np.inf
            # _kernels._ce_finish with kind INDEX, no smoothing, no z-loss
            ce = 0.0 if coef == 0.0 else coef * (log_norm - dy)
            pc, yc = (coef * inv_ce) * inv, coef * inv_ce
            ce = np.nan if bad else ce
            acc[0], acc[1] = neumaier(acc[0], acc[1], ce)
            if keep:
                rows[i] = ce + 0.0
            if not grad_too:
                continue
            if bad:
                fill(grad[i], np.nan)
                continue
            for b in range(mb.size):  # grad[i] holds exp(x - mb[b]): rescale to the row's maximum
                b0, b1 = b * BLOCK, min((b + 1) * BLOCK, k)
                here = mb[b] == m and m > -np.inf  # (summed against the row's maximum: no call to exp)
                f = 1.0 if here else math.exp(np.float64(mb[b]) - np.float64(m)) if m > -np.inf else 0.0
                # the label's entry: exp(x_y - m) is the stored one when its block was summed against m
                ey = grad[i, yi] if here and b0 <= yi < b1 else vexp(x[i, yi] - meff)
                times_(grad[i, b0:b1], x.dtype.type(pc * f))
                if b0 <= yi < b1:
                    grad[i, yi] = np.float64(ey) * pc - yc

    return chunk


ce_grad_chunk = _cross_entropy_chunk(True)
ce_loss_chunk = _cross_entropy_chunk(False)


@jit(cache=True)
def cross_entropy_rows(
    x: Any, y: Any, ignore: int, w: Any, inv_ce: float, grad: Any, rows: Any, mb: Any, sums: Any
) -> None:
    """:func:`._kernels.cross_entropy_rows` for class indices without smoothing, z-loss or softcap, and its
    gradient, on rows longer than :data:`._rows.NARROW` and of at most :data:`._rows.STORE` bytes.

    Arguments as there (``sums[0, 2:]``, the z-loss's, stay 0), and ``mb``, scratch as in :func:`softmax_rows`.
    """
    ce_grad_chunk(x, y, ignore, w, inv_ce, grad, rows, mb[0], 0, x.shape[0], sums[0])


@jit(nrt=True, cache=True, parallel=True)
def cross_entropy_rows_parallel(
    x: Any, y: Any, ignore: int, w: Any, inv_ce: float, grad: Any, rows: Any, mb: Any, sums: Any
) -> None:
    """:func:`cross_entropy_rows` per piece of rows, one piece per row of ``sums`` (its sums in ``sums[piece]``)."""
    n, pieces = x.shape[0], sums.shape[0]
    for ch in prange(pieces):
        r0, r1 = ch * n // pieces, (ch + 1) * n // pieces
        own, acc = np.empty_like(mb[ch]), np.zeros(4)  # this piece's own scratch and sums (_rows: pieces on threads)
        ce_grad_chunk(x, y, ignore, w, inv_ce, grad, rows, own, r0, r1, acc)
        sums[ch, :] = acc


@jit(cache=True)
def cross_entropy_loss_rows(x: Any, y: Any, ignore: int, w: Any, rows: Any, mb: Any, sums: Any) -> None:
    """:func:`cross_entropy_rows` without the gradient, on rows longer than :data:`._rows.NARROW`."""
    ce_loss_chunk(x, y, ignore, w, 1.0, x[:0], rows, mb[0], 0, x.shape[0], sums[0])


@jit(nrt=True, cache=True, parallel=True)
def cross_entropy_loss_rows_parallel(x: Any, y: Any, ignore: int, w: Any, rows: Any, mb: Any, sums: Any) -> None:
    """:func:`cross_entropy_loss_rows` per piece of rows, as :func:`cross_entropy_rows_parallel`."""
    n, pieces = x.shape[0], sums.shape[0]
    for ch in prange(pieces):
        r0, r1 = ch * n // pieces, (ch + 1) * n // pieces
        own, acc = np.empty_like(mb[ch]), np.zeros(4)  # this piece's own scratch and sums (_rows: pieces on threads)
        ce_loss_chunk(x, y, ignore, w, 1.0, x[:0], rows, own, r0, r1, acc)
        sums[ch, :] = acc


@jit(cache=True, nrt=True)
def small_cross_entropy(x: Any, y: Any, ignore: int, grad: Any, mean: bool) -> Any:
    """Class-index cross-entropy without weights, smoothing, z-loss or softcap, checking the labels on the way:
    ``(loss, bad)``, the ``mean`` (else the ``sum``) in float64, or ``(0, position)`` of the first label outside
    ``[0, k)`` that is not ``ignore`` (nothing computed). With ``grad`` of ``x``'s shape (else 0 rows), the
    gradient of that loss is written to it; rows longer than :data:`._rows.NARROW`, at most
    :data:`._rows.STORE` bytes.

    One call on the calling thread, for small calls of ``softmaxkit.torch.cross_entropy``: the general entry
    point checks the labels, adds the label totals and runs the kernel in three calls from Python, each
    allocating its arguments, tens of microseconds at 128 x 100. The arithmetic is :func:`cross_entropy_rows`'s.
    """
    k = x.shape[1]
    bad, kept, inv = mean_scale(y, k, ignore, mean)
    if bad >= 0:
        return 0.0, bad
    w = np.ones(k, x.dtype)
    mb = np.empty((k + BLOCK - 1) // BLOCK, x.dtype)
    acc = np.zeros(2)
    if grad.shape[0] > 0:
        ce_grad_chunk(x, y, ignore, w, inv, grad, acc[:0], mb, 0, x.shape[0], acc)
    else:
        ce_loss_chunk(x, y, ignore, w, 1.0, x[:0], acc[:0], mb, 0, x.shape[0], acc)
    return reduced(acc[0] + acc[1], kept, mean), -1

r"""Numba kernels for softmax, log-softmax, log-sum-exp and cross-entropy on the CPU.

They work on C-contiguous ``(rows, classes)`` arrays of float32 or float64, rows spread over threads with
``prange``; :mod:`softmaxkit.kernels` reshapes the caller's array into that form and back. Formulas and special
values are those of :mod:`softmaxkit.softmax` and :mod:`softmaxkit.cross_entropy`, the oracle these kernels are
tested against.

Why they are shaped this way
----------------------------
Softmax and cross-entropy do a few flops per byte: their speed is the speed at which the logits are read and
the result written, provided the arithmetic keeps up. The exponential is :func:`._vmath.vexp`, vectorised;
what is left is the number of passes over memory.

A row is read once from memory in an *online* max/sum pass (Milakov & Gimelshein, *Online normalizer
calculation for softmax*, 2018; :func:`._rows.pass1`): the running sum of :math:`e^{x_j - m}` is kept relative
to the running maximum :math:`m` and rescaled by :math:`e^{m - m'}` whenever a larger :math:`m'` appears, so the
maximum and the normaliser come out of one read. It goes by blocks of :data:`._rows.BLOCK` entries: the block's
maximum (a vectorised ``maxnum``), at most one rescale, then the block's exponentials while the block is in L1.
A second pass writes the output (softmax, log-softmax, or the cross-entropy gradient :math:`p - q`, scaled).
For rows of up to :data:`._rows.STORE` bytes the first pass already wrote the exponentials into the output,
and the second only rescales them, from cache: one ``exp`` per entry and one read of the logits from memory.
Longer rows recompute them.

Rows of at most :data:`._rows.NARROW` classes are too short to vectorise on their own: tiles of them are
transposed and processed one class at a time across the rows (:func:`._rows.narrow_tile`).

The cross-entropy loss alone never writes an ``N x C`` array; with the gradient it writes the gradient only.

Each operation has two entry points: a serial kernel, run on the calling thread, and a ``_parallel`` one that
cuts the rows into as many pieces as it is given, one per thread (:func:`._runtime.pieces` sizes them from the
work). A row's results do not depend on the piece it falls in, so the two agree except for the last bits of a
cross-entropy ``mean`` or ``sum``, whose per-piece sums are added at the end. A small call compiles only the
serial kernel.

Accuracy is the reference's (Blanchard, Higham & Higham 2021): the normaliser is :math:`1 + s`, :math:`s` the
terms other than one maximum, and :math:`\log(1 + s)` is ``log1p(s)``. The exponentials equal to 1 (the maximum's
own, and ties) are counted apart, so one of them can be left out exactly. Row sums are accumulated in float64,
for float32 logits too, and across blocks and rows with Neumaier's compensated addition; the linear sums of
label smoothing and probability targets, :math:`\sum_j w_j (x_j - m)`, are rescaled with the maximum like the
exponentials and have terms of one sign, so they never cancel.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import prange

from . import _plain as plain
from ._rows import (
    BLOCK,
    CAPPED,
    INDEX,
    NARROW,
    PLAIN,
    PROBS,
    SCALED,
    SMOOTH,
    STORE,
    cap_consts,
    capdiff,
    delta_uncapped,
    exp_,
    exp_into,
    exp_times,
    fill,
    grad_,
    grad_into,
    has_nan,
    mean_scale,
    minus_,
    narrow_out,
    narrow_tile,
    narrow_tile_uncapped,
    neumaier,
    pass1,
    pass1_nocap,
    pass1_uncapped,
    reduced,
    scale_by,
    shift_minus,
    shift_mode,
    shift_scaled,
    times_,
)
from ._vmath import jit, vexp, vlog1p

__all__ = [
    "SOURCES_SHA",
    "cross_entropy_narrow_rows",
    "cross_entropy_narrow_rows_parallel",
    "cross_entropy_nocap_rows",
    "cross_entropy_nocap_rows_parallel",
    "cross_entropy_rows",
    "cross_entropy_rows_parallel",
    "label_totals",
    "label_totals_parallel",
    "logsumexp_narrow_rows",
    "logsumexp_narrow_rows_parallel",
    "logsumexp_rows",
    "logsumexp_rows_parallel",
    "plain",
    "small_cross_entropy_narrow",
    "softmax_narrow_rows",
    "softmax_narrow_rows_parallel",
    "softmax_rows",
    "softmax_rows_parallel",
]

SOURCES_SHA = "fff4b3f392b19cae"
"""First 16 hex digits of the SHA-256 of ``_rows.py`` and ``_vmath.py`` together (tests/test_kernels_cpu.py).

numba's on-disk cache keys a kernel on the source of its own file only: a kernel cached before an edit of those
files would be reused unchanged. A test fails until this stamp is updated, which edits this file and so
invalidates the kernels' cache.
"""


# ------------------------------------------------------------------------------------ softmax and lse
@jit(nrt=True)
def _tile_scratch(x: Any, r0: int, r1: int, n_stats: int) -> Any:
    """The scratch of the narrow tiles of rows ``r0:r1`` of ``x``: ``(buf, mrow, stats)`` of :func:`narrow_tile`
    (``n_stats`` rows of per-row float64 statistics), sized to the rows of the largest tile only. A whole tile's
    would cost a small call more than its work (160 KiB zeroed, the largest part taken from the system and given
    back on every call)."""
    k = x.shape[1]
    span = max(min(BLOCK // k, r1 - r0), 0)
    return np.zeros((3, span * k), x.dtype), np.zeros(span, x.dtype), np.zeros((n_stats, span))


@jit(nrt=True)
def _softmax_narrow(x: Any, out: Any, t: Any, log: bool, r0: int, r1: int) -> None:
    """Rows ``r0:r1`` of :func:`softmax_rows` for rows of at most :data:`._rows.NARROW` classes, by tiles."""
    k = x.shape[1]
    mode = PLAIN if t == 1 else SCALED
    per = BLOCK // k
    buf, mrow, rows = _tile_scratch(x, r0, r1, 6)
    for i0 in range(r0, r1, per):
        i1 = min(i0 + per, r1)
        nr = i1 - i0
        narrow_tile_uncapped(x, i0, i1, mode, t, buf, mrow, rows)
        f = rows[2, :nr]
        for r in range(nr):
            rest = rows[1, r]
            if not rest < np.inf:  # a nan in the row, or a +inf
                f[r] = np.nan
            else:
                f[r] = vlog1p(rest) if log else 1.0 / (1.0 + rest)
        narrow_out(buf[0] if log else buf[1], f, log, out, i0, nr)


@jit(nrt=True)
def _softmax_chunk(x: Any, out: Any, t: Any, log: bool, r0: int, r1: int) -> None:
    """Rows ``r0:r1`` of :func:`softmax_rows`."""
    k = x.shape[1]
    mode = PLAIN if t == 1 else SCALED
    store = (not log) and k * x.itemsize <= STORE
    buf = np.zeros((3, BLOCK), x.dtype)
    mb = np.zeros((k + BLOCK - 1) // BLOCK, x.dtype)
    for i in range(r0, r1):
        m, rest, _, _ = pass1_uncapped(x[i], mode, t, INDEX, x[i], x[i], 0.0, 0.0, store, out[i], mb, buf)
        if not rest < np.inf or m == np.inf:
            fill(out[i], np.nan)
        elif m == -np.inf:  # every entry masked
            fill(out[i], -np.inf if log else 0.0)
        elif log:
            log_norm = x.dtype.type(vlog1p(rest))
            for b0 in range(0, k, BLOCK):
                xb, ob = x[i, b0 : b0 + BLOCK], out[i, b0 : b0 + BLOCK]
                if mode == PLAIN:
                    shift_minus(xb, m, log_norm, ob)
                else:
                    shift_scaled(xb, m, t, ob)
                    minus_(ob, log_norm)
        else:
            inv = 1.0 / (1.0 + rest)
            for b in range(mb.size):
                b0, b1 = b * BLOCK, min((b + 1) * BLOCK, k)
                ob = out[i, b0:b1]
                if store:  # ob holds exp(x - mb[b]) from the first pass
                    times_(ob, x.dtype.type(math.exp(delta_uncapped(mb[b], m, mode, t)) * inv))
                elif mode == PLAIN:
                    exp_times(x[i, b0:b1], m, x.dtype.type(inv), ob)
                else:
                    shift_scaled(x[i, b0:b1], m, t, ob)
                    exp_(ob)
                    times_(ob, x.dtype.type(inv))


@jit(nrt=True, cache=True)
def softmax_rows(x: Any, out: Any, t: Any, log: bool) -> None:
    """``out[i] = softmax(x[i] / t)``, or its log, for every row (special values as the reference).

    Rows of any length, by the online pass; rows of at most :data:`._rows.NARROW` classes are faster in
    :func:`softmax_narrow_rows`, which the dispatcher calls for them (neither kernel compiles the other's path).
    """
    _softmax_chunk(x, out, t, log, 0, x.shape[0])


@jit(nrt=True, cache=True, parallel=True)
def softmax_rows_parallel(x: Any, out: Any, t: Any, log: bool, pieces: int) -> None:
    """:func:`softmax_rows` with the rows cut into ``pieces`` pieces, one per thread."""
    n = x.shape[0]
    for ch in prange(pieces):
        _softmax_chunk(x, out, t, log, ch * n // pieces, (ch + 1) * n // pieces)


@jit(nrt=True, cache=True)
def softmax_narrow_rows(x: Any, out: Any, t: Any, log: bool) -> None:
    """:func:`softmax_rows` for rows of at most :data:`._rows.NARROW` classes, compiling only their path."""
    _softmax_narrow(x, out, t, log, 0, x.shape[0])


@jit(nrt=True, cache=True, parallel=True)
def softmax_narrow_rows_parallel(x: Any, out: Any, t: Any, log: bool, pieces: int) -> None:
    """:func:`softmax_narrow_rows` with the rows cut into ``pieces`` pieces, one per thread."""
    n = x.shape[0]
    for ch in prange(pieces):
        _softmax_narrow(x, out, t, log, ch * n // pieces, (ch + 1) * n // pieces)


@jit(nrt=True)
def _logsumexp_narrow(x: Any, out: Any, r0: int, r1: int) -> None:
    """Rows ``r0:r1`` of :func:`logsumexp_rows` for rows of at most :data:`._rows.NARROW` classes, by tiles."""
    k = x.shape[1]
    one = x.dtype.type(1.0)
    per = BLOCK // k
    buf, mrow, rows = _tile_scratch(x, r0, r1, 6)
    for i0 in range(r0, r1, per):
        i1 = min(i0 + per, r1)
        narrow_tile_uncapped(x, i0, i1, PLAIN, one, buf, mrow, rows)
        for r in range(i1 - i0):
            out[i0 + r] = rows[0, r] + vlog1p(rows[1, r])


@jit(nrt=True)
def _logsumexp_chunk(x: Any, out: Any, r0: int, r1: int) -> None:
    """Rows ``r0:r1`` of :func:`logsumexp_rows`."""
    k = x.shape[1]
    one = x.dtype.type(1.0)
    buf = np.zeros((3, BLOCK), x.dtype)
    mb = np.zeros((k + BLOCK - 1) // BLOCK, x.dtype)
    for i in range(r0, r1):
        m, rest, _, _ = pass1_uncapped(x[i], PLAIN, one, INDEX, x[i], x[i], 0.0, 0.0, False, x[i], mb, buf)
        if m == np.inf:
            rest = np.nan if has_nan(x[i]) else np.inf
        out[i] = np.float64(m) + vlog1p(rest)


@jit(nrt=True, cache=True)
def logsumexp_rows(x: Any, out: Any) -> None:
    """``out[i] = m + log1p(rest)`` in float64: the reference's ``lse`` of every row (any length; rows of at most
    :data:`._rows.NARROW` classes are faster in :func:`logsumexp_narrow_rows`)."""
    _logsumexp_chunk(x, out, 0, x.shape[0])


@jit(nrt=True, cache=True, parallel=True)
def logsumexp_rows_parallel(x: Any, out: Any, pieces: int) -> None:
    """:func:`logsumexp_rows` with the rows cut into ``pieces`` pieces, one per thread."""
    n = x.shape[0]
    for ch in prange(pieces):
        _logsumexp_chunk(x, out, ch * n // pieces, (ch + 1) * n // pieces)


@jit(nrt=True, cache=True)
def logsumexp_narrow_rows(x: Any, out: Any) -> None:
    """:func:`logsumexp_rows` for rows of at most :data:`._rows.NARROW` classes, compiling only their path."""
    _logsumexp_narrow(x, out, 0, x.shape[0])


@jit(nrt=True, cache=True, parallel=True)
def logsumexp_narrow_rows_parallel(x: Any, out: Any, pieces: int) -> None:
    """:func:`logsumexp_narrow_rows` with the rows cut into ``pieces`` pieces, one per thread."""
    n = x.shape[0]
    for ch in prange(pieces):
        _logsumexp_narrow(x, out, ch * n // pieces, (ch + 1) * n // pieces)


# ------------------------------------------------------------------------------------------ cross-entropy
@jit(nrt=True)
def _ce_finish(
    kind: int,
    top: float,
    log_norm: float,
    inv: float,
    dy: float,
    coef: float,
    lin: float,
    mass: float,
    smooth: float,
    wsum: float,
    lam: float,
    inv_ce: float,
    inv_z: float,
    full: bool,
) -> Any:
    r"""One row's loss terms and gradient coefficients, in float64: ``(ce, z, pc, wc, yc)``.

    ``log_norm`` is :math:`L = \operatorname{log1p}(s)` and ``inv`` :math:`1/(1+s)`, :math:`s` the rest of the
    normaliser; :math:`\mathrm{lse} = \mathrm{top} + L` (``top``: the maximum, capped under a softcap).

    * Class index :math:`y` (``coef`` = :math:`(1-\varepsilon) w_y`, ``smooth`` = :math:`\varepsilon / C`):
      :math:`\ell = \mathrm{coef}\,(L - d_y) + \mathrm{smooth}\,(L \sum_c w_c - \sum_{w_c \ne 0} w_c d_c)`.
    * Probabilities: :math:`\ell = L \sum_c (qw)_c - \sum_{(qw)_c \ne 0} (qw)_c d_c`.
    * The linear sums come in as ``lin`` and ``mass``, or, with ``full``, ``lin`` is the whole sum
      :math:`\sum_c w_c (L - d_c)` (smoothing) or :math:`\sum_c (qw)_c (L - d_c)` (probabilities), one rounding
      per term as in the reference (short rows, whose :math:`L` is known before the sum); the z-loss is
      :math:`\lambda\,\mathrm{lse}^2`.

    The gradient is :math:`e_j\,\mathrm{pc} - \mathrm{wc}\,w_j` (smoothing) or :math:`e_j\,\mathrm{pc} -
    \mathrm{wc}\,(qw)_j` (probabilities), minus ``yc`` at the class :math:`y`: ``pc`` folds :math:`1/(1+s)`, the
    mean's divisor and the z-loss's :math:`2\lambda\,\mathrm{lse}\,p`. ``inv_ce`` / ``inv_z`` are the
    reciprocals of the divisors, 0 when the mean has nothing to average (that part's gradient is then 0, the
    reference's policy).
    The caller makes the loss of a row holding a nan (or a +inf without a softcap) nan.
    """
    lse = top + log_norm
    if kind == PROBS:
        row = lin if full else log_norm * mass - lin
        a = mass
    else:
        row = 0.0 if coef == 0.0 else coef * (log_norm - dy)
        a = coef
        if kind == SMOOTH:
            row += smooth * (lin if full else log_norm * wsum - lin)
            a += smooth * wsum
    z_row = lam * lse * lse if lam > 0.0 else 0.0
    pc = a * inv_ce
    if lam > 0.0:
        pc += (2.0 * lam) * (lse if abs(lse) < np.inf else 0.0) * inv_z
    wc = (1.0 if kind == PROBS else smooth) * inv_ce
    return row, z_row, pc * inv, wc, coef * inv_ce


@jit(nrt=True)
def _label_chunk(y: Any, w: Any, ignore: int, r0: int, r1: int, out: Any) -> None:
    s, comp, count = 0.0, 0.0, 0.0
    for i in range(r0, r1):
        if y[i] != ignore:
            s, comp = neumaier(s, comp, np.float64(w[y[i]]))
            count += 1.0
    out[0], out[1], out[2] = s, comp, count


@jit(nrt=True, cache=True)
def label_totals(y: Any, w: Any, ignore: int, out: Any) -> None:
    """The total weight of the rows not ignored and their number, ``out[0] = (sum, comp, n)``.

    The ``mean`` denominators of class-index cross-entropy, added with Neumaier's compensation.
    """
    _label_chunk(y, w, ignore, 0, y.size, out[0])


@jit(nrt=True, cache=True, parallel=True)
def label_totals_parallel(y: Any, w: Any, ignore: int, out: Any) -> None:
    """:func:`label_totals` per piece of rows, ``out[piece]``, one piece per row of ``out``."""
    n, pieces = y.size, out.shape[0]
    for ch in prange(pieces):
        _label_chunk(y, w, ignore, ch * n // pieces, (ch + 1) * n // pieces, out[ch])


@jit(nrt=True)
def _narrow_ce(
    x: Any,
    y: Any,
    ignore: int,
    q: Any,
    w: Any,
    kind: int,
    eps: float,
    lam: float,
    capped: bool,
    inv_ce: float,
    inv_z: float,
    i0: int,
    nr: int,
    buf: Any,
    stats: Any,
    grad: Any,
    rows: Any,
    acc: Any,
) -> None:
    """Cross-entropy of a narrow tile after :func:`narrow_tile`: the rows' terms, then the gradient class by class.

    ``acc`` holds the chunk's compensated sums ``(ce, ce_comp, z, z_comp)``; other arguments as
    :func:`cross_entropy_rows`.
    """
    k = x.shape[1]
    by_index = kind != PROBS
    qa, qb, smooth = 1.0 - eps, eps / k, eps / k
    wsum = 0.0
    for j in range(k):
        wsum += np.float64(w[j])
    d, e, g = buf[0], buf[1], buf[2]
    rests, logs, invs = stats[1, :nr], stats[2, :nr], stats[3, :nr]
    pcs, wcs, ycs, state = stats[4, :nr], stats[5, :nr], stats[6, :nr], stats[7, :nr]
    for r in range(nr):  # vectorised across the rows
        logs[r] = vlog1p(rests[r])
        invs[r] = 1.0 / (1.0 + rests[r])
    for r in range(nr):
        i = i0 + r
        yi = y[i] if by_index else 0
        if by_index and yi == ignore:
            pcs[r], wcs[r], state[r] = 0.0, 0.0, 1.0
            if rows.size > 0:
                rows[i] = 0.0
            continue
        lin, comp, mass, log_norm = 0.0, 0.0, 0.0, logs[r]
        if kind != INDEX:  # the whole sum, term by term as the reference, compensated
            for c in range(k):
                wj = np.float64(w[c])
                if kind == PROBS:
                    wj *= np.float64(q[i, c]) * qa + qb
                    mass += wj
                if wj != 0.0:
                    lin, comp = neumaier(lin, comp, wj * (log_norm - np.float64(d[c * nr + r])))
            lin += comp
        coef = qa * np.float64(w[yi]) if by_index else 0.0
        dy = np.float64(d[yi * nr + r])
        ce, zr, pc, wc, yc = _ce_finish(
            kind, stats[0, r], log_norm, invs[r], dy, coef, lin, mass, smooth, wsum, lam, inv_ce, inv_z, True
        )
        bad = not rests[r] < np.inf
        ce = np.nan if bad else ce
        acc[0], acc[1] = neumaier(acc[0], acc[1], ce)
        if lam > 0.0:
            acc[2], acc[3] = neumaier(acc[2], acc[3], zr)
        if rows.size > 0:
            rows[i] = ce + zr
        pcs[r], wcs[r], ycs[r], state[r] = pc, wc, yc, (2.0 if bad else 0.0)
    if grad.shape[0] == 0:
        return
    gf = grad.reshape(grad.size)
    for c in range(k):
        base = i0 * k + c
        ec, gc = e[c * nr : (c + 1) * nr], g[c * nr : (c + 1) * nr]
        wj = np.float64(w[c])
        if kind == INDEX and not capped:
            for r in range(nr):
                gf[base + r * k] = np.float64(ec[r]) * pcs[r]
        elif kind == INDEX:
            for r in range(nr):
                gf[base + r * k] = np.float64(ec[r]) * pcs[r] * np.float64(gc[r])
        elif kind == SMOOTH:
            for r in range(nr):
                v = np.float64(ec[r]) * pcs[r] - wcs[r] * wj
                gf[base + r * k] = v * np.float64(gc[r]) if capped else v
        else:
            for r in range(nr):
                v = np.float64(ec[r]) * pcs[r] - wcs[r] * ((np.float64(q[i0 + r, c]) * qa + qb) * wj)
                gf[base + r * k] = v * np.float64(gc[r]) if capped else v
    for r in range(nr):
        i = i0 + r
        if state[r] == 1.0:
            fill(grad[i], 0.0)
        elif state[r] == 2.0:
            fill(grad[i], np.nan)
        elif by_index:
            yi = y[i]
            j = yi * nr + r
            v = np.float64(e[j]) * pcs[r] - ycs[r] - (wcs[r] * np.float64(w[yi]) if kind == SMOOTH else 0.0)
            grad[i, yi] = v * np.float64(g[j]) if capped else v


def _ce_narrow_chunk(capped_ok: bool) -> Any:
    """Rows ``r0:r1`` of :func:`cross_entropy_rows` of at most :data:`._rows.NARROW` classes, by tiles; with
    ``capped_ok`` False (a constant of the closure) for calls without a softcap only, whose softcap code numba
    then does not compile (:func:`._rows.narrow_tile_uncapped`)."""
    tile = narrow_tile if capped_ok else narrow_tile_uncapped

    @jit(nrt=True, variant=f"capped_ok_{capped_ok}")
    def ce_narrow(x: Any, y: Any, ignore: int, q: Any, w: Any, kind: int, eps: float, lam: float, cap: Any,
                  capped: bool, inv_ce: float, inv_z: float, grad: Any, rows: Any, r0: int, r1: int,
                  acc: Any) -> None:  # fmt: skip
        k = x.shape[1]
        mode = CAPPED if capped else PLAIN
        per = BLOCK // k
        buf, mrow, stats = _tile_scratch(x, r0, r1, 8)
        for i0 in range(r0, r1, per):
            i1 = min(i0 + per, r1)
            tile(x, i0, i1, mode, cap, buf, mrow, stats)
            _narrow_ce(
                x, y, ignore, q, w, kind, eps, lam, capped, inv_ce, inv_z, i0, i1 - i0, buf, stats, grad, rows, acc
            )

    return ce_narrow


_ce_narrow = _ce_narrow_chunk(True)
_ce_narrow_uncapped = _ce_narrow_chunk(False)


def _ce_chunk(capped_ok: bool) -> Any:
    """Rows ``r0:r1`` of :func:`cross_entropy_rows`; with ``capped_ok`` False (a constant of the closure) of
    :func:`cross_entropy_nocap_rows`, which compiles no softcap code (``tanh``, the cancellation-free
    differences): a first call with label smoothing or probabilities then compiles about half as much."""
    pass_ = pass1 if capped_ok else pass1_nocap
    narrow = _ce_narrow if capped_ok else _ce_narrow_uncapped

    @jit(nrt=True, variant=f"capped_ok_{capped_ok}")
    def chunk(x: Any, y: Any, ignore: int, q: Any, w: Any, kind: int, eps: float, lam: float, cap: Any,
              capped: bool, inv_ce: float, inv_z: float, grad: Any, rows: Any, r0: int, r1: int,
              acc: Any) -> None:  # fmt: skip
        """``acc`` gets the rows' compensated sums."""
        k = x.shape[1]
        want, keep = grad.shape[0] > 0, rows.size > 0
        mode = CAPPED if capped_ok and capped else PLAIN
        by_index = kind != PROBS
        smooth = eps / k
        qa, qb = 1.0 - eps, eps / k
        wsum = 0.0
        for j in range(k):
            wsum += np.float64(w[j])
        if k <= NARROW:
            narrow(x, y, ignore, q, w, kind, eps, lam, cap, capped, inv_ce, inv_z, grad, rows, r0, r1, acc)
            return
        zero = x.dtype.type(0.0)
        store = want and not capped and k * x.itemsize <= STORE
        buf = np.zeros((3, BLOCK), x.dtype)
        mb = np.zeros((k + BLOCK - 1) // BLOCK, x.dtype)
        for i in range(r0, r1):
            yi = y[i if by_index else 0]
            if by_index and yi == ignore:
                if keep:
                    rows[i] = 0.0
                if want:
                    fill(grad[i], 0.0)
                continue
            yi = yi if by_index else 0
            qi = q[i if kind == PROBS else 0]
            e_row = grad[i] if store else buf[1]
            m, rest, lin, mass = pass_(x[i], mode, cap, kind, qi, w, qa, qb, store, e_row, mb, buf)
            if not capped and m == np.inf:
                rest = np.nan
            meff = m if (capped or abs(m) < np.inf) else zero
            top = np.float64(m)
            if capped_ok and capped:
                if m > -np.inf:
                    top = np.float64(cap) * math.tanh(np.float64(m) / np.float64(cap))
                am, tm, em = cap_consts(m, cap)
                dy = np.float64(capdiff(x[i, yi], m, cap, am, tm, em, x.dtype.type(1.0))[0])
            else:
                dy = np.float64(x[i, yi] - meff)
            coef = qa * np.float64(w[yi]) if by_index else 0.0
            log_norm, inv, bad = vlog1p(rest), 1.0 / (1.0 + rest), not rest < np.inf
            ce, zr, pc, wc, yc = _ce_finish(
                kind, top, log_norm, inv, dy, coef, lin, mass, smooth, wsum, lam, inv_ce, inv_z, False
            )
            ce = np.nan if bad else ce
            acc[0], acc[1] = neumaier(acc[0], acc[1], ce)
            acc[2], acc[3] = neumaier(acc[2], acc[3], zr)
            if keep:
                rows[i] = ce + zr
            if not want:
                continue
            if bad:
                fill(grad[i], np.nan)
                continue
            for b in range(mb.size):
                b0, b1 = b * BLOCK, min((b + 1) * BLOCK, k)
                xb, gb = x[i, b0:b1], grad[i, b0:b1]
                db, eb, cb = buf[0, : b1 - b0], buf[1, : b1 - b0], buf[2, : b1 - b0]
                if store:  # gb holds exp(x - mb[b]): rescale to the row's maximum, then subtract the target
                    f = math.exp(np.float64(mb[b]) - np.float64(m)) if m > -np.inf else 0.0
                    if kind == INDEX:
                        times_(gb, x.dtype.type(pc * f))
                    else:
                        grad_(kind, gb, qi[b0:b1], w[b0:b1], qa, qb, pc * f, wc)
                elif mode == PLAIN and kind == INDEX:
                    exp_times(xb, meff, x.dtype.type(pc), gb)
                else:
                    if capped_ok:
                        shift_mode(xb, meff, mode, cap, db, cb)
                    else:
                        shift_scaled(xb, meff, x.dtype.type(1.0), db)
                    exp_into(db, eb)
                    grad_into(kind, eb, qi[b0:b1], w[b0:b1], qa, qb, pc, wc, gb)
                if by_index and b0 <= yi < b1:
                    ey = np.float64(vexp(x[i, yi] - meff)) if mode == PLAIN else np.float64(eb[yi - b0])
                    wy = wc * np.float64(w[yi]) if kind == SMOOTH else 0.0
                    gb[yi - b0] = ey * pc - yc - wy
                if capped_ok and mode == CAPPED:
                    scale_by(gb, cb)

    return chunk


_cross_entropy_chunk = _ce_chunk(True)
_cross_entropy_nocap_chunk = _ce_chunk(False)


@jit(nrt=True, cache=True)
def cross_entropy_rows(
    x: Any,
    y: Any,
    ignore: int,
    q: Any,
    w: Any,
    kind: int,
    eps: float,
    lam: float,
    cap: Any,
    capped: bool,
    inv_ce: float,
    inv_z: float,
    grad: Any,
    rows: Any,
    sums: Any,
) -> None:
    """Cross-entropy of every row, and its gradient if ``grad`` has rows.

    ``kind``: class indices ``y`` (rows equal to ``ignore`` are never read: their terms and gradient are 0),
    the same with label smoothing ``eps``, or probabilities ``q`` (the logits' shape; a dummy otherwise, as
    ``y`` is then). ``w``: class weights (ones when there are none). ``cap``/``capped``: the softcap.
    ``inv_ce``/``inv_z``: reciprocals of the gradient's divisors (see :func:`_ce_finish`). Results: ``rows[i]``
    the row's loss when ``rows`` has rows (``reduction="none"``), and the compensated sums of the cross-entropy
    and z-loss terms, ``sums[0] = (ce, ce_comp, z, z_comp)``.
    """
    n = x.shape[0]
    _cross_entropy_chunk(x, y, ignore, q, w, kind, eps, lam, cap, capped, inv_ce, inv_z, grad, rows, 0, n, sums[0])


@jit(nrt=True, cache=True, parallel=True)
def cross_entropy_rows_parallel(
    x: Any,
    y: Any,
    ignore: int,
    q: Any,
    w: Any,
    kind: int,
    eps: float,
    lam: float,
    cap: Any,
    capped: bool,
    inv_ce: float,
    inv_z: float,
    grad: Any,
    rows: Any,
    sums: Any,
) -> None:
    """:func:`cross_entropy_rows` per piece of rows, one piece per row of ``sums`` (its sums in ``sums[piece]``)."""
    n, pieces = x.shape[0], sums.shape[0]
    for ch in prange(pieces):
        r0, r1 = ch * n // pieces, (ch + 1) * n // pieces
        acc = np.zeros(4)  # this piece's own sums, stored once (_rows: pieces on several threads)
        _cross_entropy_chunk(x, y, ignore, q, w, kind, eps, lam, cap, capped, inv_ce, inv_z, grad, rows, r0, r1, acc)
        sums[ch, :] = acc


@jit(nrt=True, cache=True)
def cross_entropy_nocap_rows(
    x: Any,
    y: Any,
    ignore: int,
    q: Any,
    w: Any,
    kind: int,
    eps: float,
    lam: float,
    cap: Any,
    capped: bool,
    inv_ce: float,
    inv_z: float,
    grad: Any,
    rows: Any,
    sums: Any,
) -> None:
    """:func:`cross_entropy_rows` without a softcap (``cap`` and ``capped`` are not read), compiling no softcap
    code: what a first call with label smoothing, a z-loss or probabilities compiles."""
    n = x.shape[0]
    _cross_entropy_nocap_chunk(x, y, ignore, q, w, kind, eps, lam, cap, False, inv_ce, inv_z, grad, rows, 0, n, sums[0])


@jit(nrt=True, cache=True, parallel=True)
def cross_entropy_nocap_rows_parallel(
    x: Any,
    y: Any,
    ignore: int,
    q: Any,
    w: Any,
    kind: int,
    eps: float,
    lam: float,
    cap: Any,
    capped: bool,
    inv_ce: float,
    inv_z: float,
    grad: Any,
    rows: Any,
    sums: Any,
) -> None:
    """:func:`cross_entropy_nocap_rows` per piece of rows, one piece per row of ``sums``."""
    n, pieces = x.shape[0], sums.shape[0]
    for ch in prange(pieces):
        r0, r1 = ch * n // pieces, (ch + 1) * n // pieces
        acc = np.zeros(4)  # this piece's own sums, stored once (_rows: pieces on several threads)
        _cross_entropy_nocap_chunk(
            x, y, ignore, q, w, kind, eps, lam, cap, False, inv_ce, inv_z, grad, rows, r0, r1, acc
        )
        sums[ch, :] = acc


@jit(nrt=True, cache=True)
def cross_entropy_narrow_rows(
    x: Any,
    y: Any,
    ignore: int,
    q: Any,
    w: Any,
    kind: int,
    eps: float,
    lam: float,
    cap: Any,
    capped: bool,
    inv_ce: float,
    inv_z: float,
    grad: Any,
    rows: Any,
    sums: Any,
) -> None:
    """:func:`cross_entropy_rows` for rows of at most :data:`._rows.NARROW` classes and no softcap (``capped``
    False), compiling only that path."""
    n = x.shape[0]
    _ce_narrow_uncapped(x, y, ignore, q, w, kind, eps, lam, cap, capped, inv_ce, inv_z, grad, rows, 0, n, sums[0])


@jit(nrt=True, cache=True)
def small_cross_entropy_narrow(x: Any, y: Any, ignore: int, grad: Any, mean: bool) -> Any:
    """:func:`._plain.small_cross_entropy` for rows of at most :data:`._rows.NARROW` classes."""
    k = x.shape[1]
    bad, kept, inv = mean_scale(y, k, ignore, mean)
    if bad >= 0:
        return 0.0, bad
    w = np.ones(k, x.dtype)
    acc = np.zeros(4)
    q = np.zeros((1, 1), x.dtype)
    _ce_narrow_uncapped(x, y, ignore, q, w, INDEX, 0.0, 0.0, x.dtype.type(1.0), False, inv, 0.0, grad, acc[:0], 0,
                        x.shape[0], acc)  # fmt: skip
    return reduced(acc[0] + acc[1], kept, mean), -1


@jit(nrt=True, cache=True, parallel=True)
def cross_entropy_narrow_rows_parallel(
    x: Any,
    y: Any,
    ignore: int,
    q: Any,
    w: Any,
    kind: int,
    eps: float,
    lam: float,
    cap: Any,
    capped: bool,
    inv_ce: float,
    inv_z: float,
    grad: Any,
    rows: Any,
    sums: Any,
) -> None:
    """:func:`cross_entropy_narrow_rows` per piece of rows, one piece per row of ``sums``."""
    n, pieces = x.shape[0], sums.shape[0]
    for ch in prange(pieces):
        r0, r1 = ch * n // pieces, (ch + 1) * n // pieces
        acc = np.zeros(4)  # this piece's own sums, stored once (_rows: pieces on several threads)
        _ce_narrow_uncapped(x, y, ignore, q, w, kind, eps, lam, cap, capped, inv_ce, inv_z, grad, rows, r0, r1, acc)
        sums[ch, :] = acc

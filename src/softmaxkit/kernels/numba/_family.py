r"""Numba kernels for sparsemax, 1.5-entmax and α-entmax by bisection on the CPU: the mapping and its VJP.

They work on C-contiguous ``(rows, classes)`` arrays of float32 or float64, rows spread over threads with
``prange`` as the kernels of :mod:`._kernels` are; :mod:`softmaxkit.kernels.numba` reshapes the caller's array
into that form. Formulas and special values are those of :mod:`softmaxkit.family` (its ``_tsallis`` machinery),
the oracle these kernels are tested against: a ``-inf`` (masked) entry gets probability exactly 0, a row of only
``-inf`` is all zeros, a ``nan`` or ``+inf`` makes its row ``nan``.

The threshold without sorting the row
-------------------------------------
Every member is :math:`p_i = [w_i - \tau]_+^{\beta}` on the max-shifted, scaled logits :math:`w` (top entry 0),
with :math:`\tau \in [-1, 0)`: the top entry alone gives mass 1 at :math:`\tau = -1`. So only the entries with
:math:`w_i > -1` can be in the support; one pass copies them (their float64 values, nothing else) into a scratch
row, and the threshold is found on that, usually a few percent of the row. On the copy:

- sparsemax (:math:`\beta = 1`): Michelot's algorithm (1986). :math:`\tau_S = (\sum_S w - 1)/|S|` for a set
  :math:`S` that holds the support is a lower bound of :math:`\tau` (the entries of :math:`S` outside the support
  add :math:`w_i - \tau \le 0`); dropping the entries :math:`\le \tau_S` and repeating ends, exactly, when nothing
  is dropped: then :math:`\tau_S` is the threshold of the sort-based formula.
- 1.5-entmax (:math:`\beta = 2`): the mass :math:`f(\tau) = \sum_i [w_i - \tau]_+^2` is convex and decreasing,
  so Newton's steps from :math:`\tau = -1` stay below the root and drop the entries below them. After each step
  the closed form of Peters et al. (2019, Algorithm 2) on the entries left, :math:`r = \mu - \sqrt{(1 -
  \sigma)/n}`, is the exact threshold as soon as no entry left lies below it (then :math:`f(r) = 1`).
- If either takes more than :data:`ROUNDS` rounds (a row built to defeat it), the entries left are sorted and
  the threshold read off as the generic code does: the result is exact in every case, not an approximation.
- α-entmax: the bisection of :mod:`softmaxkit.family.entmax_bisect` (``n_iter`` halvings of :math:`[-1, 0]`,
  :math:`p` at the lower end divided by its sum), on the copy, which is shortened to the entries above the lower
  end whenever it moves (they are the only ones with mass at any later midpoint).

Everything past the copy is float64 (float32 rows are widened when copied); the output pass computes
:math:`w_i - \tau` in the input's dtype, as the generic code does.

The VJP
-------
From the output :math:`p` (what an autograd Function keeps): :math:`s = p^{2-\alpha}` on the support, 0 off it,
and :math:`g^\top J = s \odot g - s \langle s, g\rangle / \sum_j s_j` (Peters et al. 2019, Prop. 2); ``g`` is
never read where :math:`p = 0`. A row of :math:`p` holding a ``nan`` gives a ``nan`` row. Two passes; the sums
are float64.

The Fenchel–Young loss
----------------------
Per row, :math:`H_\alpha(p) + \langle p, x - m\rangle - (x_y - m)` (clamped at 0, as the generic code does) and
its gradient :math:`p - e_y` times the caller's per-row factor (weight, ``mean`` denominator), from the row's
:math:`p` kept in a scratch row: none of the generic code's :math:`N \times C` intermediates (shifted logits,
:math:`p`, entropy terms, :math:`p - e_y` before scaling) is formed. Rows whose weight is 0 (ignored labels) are
not read. A masked target costs ``inf``, a bad row ``nan``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import prange

from ._vmath import jit, maxnum

__all__ = [
    "BISECT",
    "ENTMAX15",
    "ROUNDS",
    "SOURCES_SHA",
    "SPARSEMAX",
    "loss_rows",
    "loss_rows_parallel",
    "mapping_rows",
    "mapping_rows_parallel",
    "vjp_rows",
    "vjp_rows_parallel",
]

SOURCES_SHA = "58276241c098ab28"
"""First 16 hex digits of the SHA-256 of ``_vmath.py``, the one file compiled into these kernels
(tests/test_kernels_family.py). numba's on-disk cache keys a kernel on its own file only: a test fails until this
stamp follows an edit there, which edits this file and so invalidates its cache."""

SPARSEMAX, ENTMAX15, BISECT = 0, 1, 2
"""The mapping a kernel computes (its ``kind``)."""

ROUNDS = 64
"""Rounds of Michelot's or Newton's iteration before the entries left are sorted instead."""

_REASSOC = {"reassoc", "contract"}  # lets LLVM vectorise sums; only in leaf loops
_ONE, _SQRT, _P, _POW = 0, 1, 2, 3  # s = p^(2 - alpha): 1 on the support, sqrt(p), p, or a power


# ------------------------------------------------------------------------------------------ leaf loops
@jit(nrt=True, fastmath=_REASSOC)
def _scan(x: Any) -> Any:
    """The row's largest entry ignoring nan, and how many nans it holds."""
    m = x.dtype.type(-np.inf)
    nans = 0
    for j in range(x.size):
        v = x[j]
        m = maxnum(m, v)
        nans += 1 if v != v else 0
    return m, nans


@jit(nrt=True)
def _fill(out: Any, value: float) -> None:
    v = out.dtype.type(value)
    for j in range(out.size):
        out[j] = v


@jit(nrt=True)
def _gather(x: Any, m: Any, scale: float, buf: Any) -> int:
    """``buf[:n] = (x - m) * scale`` (float64) for the entries where that exceeds -1; returns ``n``.

    ``x - m`` is rounded in the row's dtype, as the generic code's shifted logits are. Branch-free: every value
    is written, and the count moves on only past the ones kept.
    """
    n = 0
    for j in range(x.size):
        w = np.float64(x[j] - m) * scale
        buf[n] = w
        n += 1 if w > -1.0 else 0
    return n


@jit(nrt=True)
def _keep_above(buf: Any, n: int, bound: float) -> int:
    """Shorten ``buf[:n]`` to its entries above ``bound`` (in order); returns how many."""
    kept = 0
    for j in range(n):
        v = buf[j]
        buf[kept] = v
        kept += 1 if v > bound else 0
    return kept


@jit(nrt=True, fastmath=_REASSOC)
def _sum(buf: Any, n: int) -> float:
    s = 0.0
    for j in range(n):
        s += buf[j]
    return s


@jit(nrt=True, fastmath=_REASSOC)
def _moments(buf: Any, n: int, t: float) -> Any:
    """:math:`\\sum (w - t)`, :math:`\\sum (w - t)^2` and :math:`\\min w` over ``buf[:n]``."""
    s1, s2, low = 0.0, 0.0, np.inf
    for j in range(n):
        v = buf[j] - t
        s1 += v
        s2 += v * v
        low = min(low, buf[j])
    return s1, s2, low


@jit(nrt=True, fastmath=_REASSOC)
def _mass(buf: Any, n: int, t: float, beta: float) -> float:
    """:math:`\\sum_j [w_j - t]_+^\\beta` over ``buf[:n]``."""
    s = 0.0
    if beta == 1.0:
        for j in range(n):
            v = buf[j] - t
            s += v if v > 0.0 else 0.0
    elif beta == 2.0:
        for j in range(n):
            v = buf[j] - t
            s += v * v if v > 0.0 else 0.0
    else:
        for j in range(n):
            v = buf[j] - t
            if v > 0.0:
                s += v**beta
    return s


# ------------------------------------------------------------------------------------------ thresholds
@jit(nrt=True)
def _entmax15_root(buf: Any, n: int) -> float:
    """The smaller root of :math:`\\sum_{j<n} (w_j - \\tau)^2 = 1`: :math:`\\mu - \\sqrt{(1 - \\sigma)/n}`, with
    :math:`\\sigma` summed from the deviations (no cancellation); the discriminant is clamped at 0."""
    mu = _sum(buf, n) / n
    _, sigma, _ = _moments(buf, n, mu)
    rest = 1.0 - sigma
    return mu - math.sqrt((rest if rest > 0.0 else 0.0) / n)


@jit(nrt=True)
def _sorted_threshold(buf: Any, n: int, kind: int) -> float:
    """The threshold of ``buf[:n]`` (a superset of the support) read off its sorted values, as the generic code
    does: the support is the largest ``k`` whose candidate threshold lies below the ``k``-th value."""
    u = np.sort(buf[:n])[::-1]
    c, c2, size = 0.0, 0.0, 1
    for k in range(1, n + 1):
        v = u[k - 1]
        c += v
        if kind == SPARSEMAX:
            if 1.0 + k * v > c:
                size = k
        else:
            c2 += v * v
            mean = c / k
            delta = (1.0 - (c2 - c * mean)) / k
            if mean - math.sqrt(delta if delta > 0.0 else 0.0) <= v:
                size = k
    if kind == SPARSEMAX:
        return (_sum(u, size) - 1.0) / size
    return _entmax15_root(u, size)


@jit(nrt=True)
def _sparsemax_threshold(buf: Any, n: int) -> float:
    """Michelot's iteration on ``buf[:n]`` (module notes)."""
    for _ in range(ROUNDS):
        tau = (_sum(buf, n) - 1.0) / n
        kept = _keep_above(buf, n, tau)
        if kept == n:
            return tau
        n = kept
    return _sorted_threshold(buf, n, SPARSEMAX)


@jit(nrt=True)
def _entmax15_threshold(buf: Any, n: int) -> float:
    """Newton's steps from below with the closed form as the exact finish, on ``buf[:n]`` (module notes)."""
    tau = -1.0
    for _ in range(ROUNDS):
        n = _keep_above(buf, n, tau)
        r = _entmax15_root(buf, n)
        s1, s2, low = _moments(buf, n, tau)
        if r >= tau and low >= r:  # every entry left is in the support at r, and none outside: f(r) = 1
            return r
        step = (s2 - 1.0) / (2.0 * s1)
        if not step > 0.0:  # at the root to rounding, but an entry sits on it: let the sort decide
            break
        tau += step
    return _sorted_threshold(buf, n, ENTMAX15)


@jit(nrt=True)
def _bisect_lower(buf: Any, n: int, beta: float, n_iter: int) -> Any:
    """The lower end of the bracket after ``n_iter`` halvings of [-1, 0], and ``n``: ``buf[:n]`` then holds the
    entries above it."""
    lo, hi = -1.0, 0.0
    for _ in range(n_iter):
        mid = (lo + hi) / 2.0
        if _mass(buf, n, mid, beta) >= 1.0:  # the root lies in [mid, hi]
            lo = mid
            n = _keep_above(buf, n, lo)
        else:
            hi = mid
    return lo, n


# ------------------------------------------------------------------------------------------ output passes
@jit(nrt=True)
def _write_linear(x: Any, m: Any, tau: Any, out: Any) -> None:
    """``out = [(x - m) - tau]_+`` in the row's dtype."""
    zero = out.dtype.type(0.0)
    for j in range(x.size):
        v = (x[j] - m) - tau
        out[j] = v if v > zero else zero


@jit(nrt=True)
def _write_square(x: Any, m: Any, tau: Any, out: Any) -> None:
    """``out = [(x - m)/2 - tau]_+^2`` in the row's dtype."""
    zero, half = out.dtype.type(0.0), out.dtype.type(0.5)
    for j in range(x.size):
        v = (x[j] - m) * half - tau
        out[j] = v * v if v > zero else zero


@jit(nrt=True)
def _write_power(x: Any, m: Any, scale: float, lo: float, beta: float, total: float, out: Any) -> None:
    """``out = [(x - m) scale - lo]_+^beta / total``, in float64 and rounded once."""
    if beta == 1.0:
        for j in range(x.size):
            v = np.float64(x[j] - m) * scale - lo
            out[j] = (v if v > 0.0 else 0.0) / total
    elif beta == 2.0:
        for j in range(x.size):
            v = np.float64(x[j] - m) * scale - lo
            out[j] = (v * v if v > 0.0 else 0.0) / total
    else:
        for j in range(x.size):
            v = np.float64(x[j] - m) * scale - lo
            out[j] = v**beta / total if v > 0.0 else 0.0


# ------------------------------------------------------------------------------------------ the mapping
@jit(nrt=True)
def _mapping_row(row: Any, o: Any, kind: int, alpha: float, n_iter: int, buf: Any) -> Any:
    """``o`` = the mapping of one row; returns the row's maximum (``nan`` for a bad row)."""
    scale = 1.0 if kind == SPARSEMAX else (0.5 if kind == ENTMAX15 else alpha - 1.0)
    beta = 1.0 / scale
    m, nans = _scan(row)
    if nans > 0 or m == np.inf:
        _fill(o, np.nan)
        return row.dtype.type(np.nan)
    if m == -np.inf:  # every entry masked: no distribution
        _fill(o, 0.0)
        return m
    n = _gather(row, m, scale, buf)
    if kind == SPARSEMAX:
        _write_linear(row, m, row.dtype.type(_sparsemax_threshold(buf, n)), o)
    elif kind == ENTMAX15:
        _write_square(row, m, row.dtype.type(_entmax15_threshold(buf, n)), o)
    else:
        lo, n = _bisect_lower(buf, n, beta, n_iter)
        _write_power(row, m, scale, lo, beta, _mass(buf, n, lo, beta), o)
    return m


@jit(nrt=True)
def _mapping_chunk(x: Any, out: Any, kind: int, alpha: float, n_iter: int, r0: int, r1: int) -> None:
    """Rows ``r0:r1`` of :func:`mapping_rows`."""
    buf = np.empty(x.shape[1], np.float64)
    for i in range(r0, r1):
        _mapping_row(x[i], out[i], kind, alpha, n_iter, buf)


@jit(nrt=True, cache=True)
def mapping_rows(x: Any, out: Any, kind: int, alpha: float, n_iter: int) -> None:
    """``out[i]`` = sparsemax, 1.5-entmax or α-entmax (``kind``; ``alpha > 1``, ``n_iter`` for the last) of
    ``x[i]``, for every row."""
    _mapping_chunk(x, out, kind, alpha, n_iter, 0, x.shape[0])


@jit(nrt=True, cache=True, parallel=True)
def mapping_rows_parallel(x: Any, out: Any, kind: int, alpha: float, n_iter: int, pieces: int) -> None:
    """:func:`mapping_rows` with the rows cut into ``pieces`` pieces, one per thread."""
    n = x.shape[0]
    for ch in prange(pieces):
        _mapping_chunk(x, out, kind, alpha, n_iter, ch * n // pieces, (ch + 1) * n // pieces)


# ------------------------------------------------------------------------------------------ the VJP
@jit(nrt=True, fastmath=_REASSOC)
def _vjp_sums(p: Any, g: Any, how: int, e: float) -> Any:
    """:math:`\\sum s`, :math:`\\sum s g` (float64) and the number of nans in ``p``; ``g`` only where p > 0."""
    ss, sg, nans = 0.0, 0.0, 0
    if how == _ONE:
        for j in range(p.size):
            live = p[j] > 0
            ss += 1.0 if live else 0.0
            sg += np.float64(g[j]) if live else 0.0
            nans += 1 if p[j] != p[j] else 0
    elif how == _SQRT:
        for j in range(p.size):
            live = p[j] > 0
            s = math.sqrt(np.float64(p[j])) if live else 0.0
            ss += s
            sg += s * np.float64(g[j]) if live else 0.0
            nans += 1 if p[j] != p[j] else 0
    elif how == _P:
        for j in range(p.size):
            live = p[j] > 0
            s = np.float64(p[j]) if live else 0.0
            ss += s
            sg += s * np.float64(g[j]) if live else 0.0
            nans += 1 if p[j] != p[j] else 0
    else:
        for j in range(p.size):
            if p[j] > 0:
                s = np.float64(p[j]) ** e
                ss += s
                sg += s * np.float64(g[j])
            elif p[j] != p[j]:
                nans += 1
    return ss, sg, nans


@jit(nrt=True)
def _vjp_write(p: Any, g: Any, how: int, e: float, mean: float, out: Any) -> None:
    """``out = s g - s mean`` on the support, 0 off it."""
    zero = out.dtype.type(0.0)
    if how == _ONE:
        c = out.dtype.type(mean)
        for j in range(p.size):
            out[j] = g[j] - c if p[j] > 0 else zero
    else:
        for j in range(p.size):
            if p[j] > 0:
                pj = np.float64(p[j])
                s = math.sqrt(pj) if how == _SQRT else (pj if how == _P else pj**e)
                out[j] = s * np.float64(g[j]) - s * mean
            else:
                out[j] = zero


@jit(nrt=True)
def _vjp_chunk(p: Any, g: Any, out: Any, alpha: float, r0: int, r1: int) -> None:
    """Rows ``r0:r1`` of :func:`vjp_rows`."""
    e = 2.0 - alpha
    how = _ONE if e == 0.0 else (_SQRT if e == 0.5 else (_P if e == 1.0 else _POW))
    for i in range(r0, r1):
        ss, sg, nans = _vjp_sums(p[i], g[i], how, e)
        if nans > 0:
            _fill(out[i], np.nan)
            continue
        _vjp_write(p[i], g[i], how, e, sg / ss if ss > 0.0 else 0.0, out[i])


@jit(nrt=True, cache=True)
def vjp_rows(p: Any, g: Any, out: Any, alpha: float) -> None:
    """``out[i] = g[i]^T J`` for every row, :math:`J` the Jacobian of α-entmax at its output ``p[i]``."""
    _vjp_chunk(p, g, out, alpha, 0, p.shape[0])


@jit(nrt=True, cache=True, parallel=True)
def vjp_rows_parallel(p: Any, g: Any, out: Any, alpha: float, pieces: int) -> None:
    """:func:`vjp_rows` with the rows cut into ``pieces`` pieces, one per thread."""
    n = p.shape[0]
    for ch in prange(pieces):
        _vjp_chunk(p, g, out, alpha, ch * n // pieces, (ch + 1) * n // pieces)


# ------------------------------------------------------------------------------------------ the loss
@jit(nrt=True, fastmath=_REASSOC)
def _fenchel_young_sum(x: Any, m: Any, p: Any, alpha: float) -> float:
    r""":math:`\sum_{p_i > 0} h(p_i) + p_i (x_i - m)` in float64, :math:`h(p) = p (1 - p^{\alpha - 1}) /
    (\alpha(\alpha - 1)) \ge 0` the terms of the Tsallis entropy :math:`H_\alpha`."""
    total = 0.0
    if alpha == 2.0:
        for j in range(x.size):
            q = np.float64(p[j])
            total += q * (1.0 - q) / 2.0 + q * np.float64(x[j] - m) if q > 0.0 else 0.0
    elif alpha == 1.5:
        for j in range(x.size):
            q = np.float64(p[j])
            total += q * (1.0 - math.sqrt(q)) / 0.75 + q * np.float64(x[j] - m) if q > 0.0 else 0.0
    else:
        c = 1.0 / (alpha * (alpha - 1.0))
        for j in range(x.size):
            q = np.float64(p[j])
            if q > 0.0:
                total += q * (1.0 - q ** (alpha - 1.0)) * c + q * np.float64(x[j] - m)
    return total


@jit(nrt=True)
def _loss_chunk(
    x: Any, y: Any, wy: Any, scale: Any, kind: int, alpha: float, n_iter: int, grad: Any, rows: Any, r0: int, r1: int
) -> None:
    """Rows ``r0:r1`` of :func:`loss_rows`."""
    k = x.shape[1]
    buf = np.empty(k, np.float64)
    p = np.empty(k, x.dtype)
    want_grad = grad.shape[0] > 0
    for i in range(r0, r1):
        if not wy[i] > 0:  # ignored or weightless: never read
            rows[i] = 0.0
            if want_grad:
                _fill(grad[i], 0.0)
            continue
        row = x[i]
        m = _mapping_row(row, p, kind, alpha, n_iter, buf)
        label = y[i]
        if m != m:
            rows[i] = np.nan
        elif m == -np.inf:  # every class masked, the target's too
            rows[i] = np.inf
        else:  # (a masked target: d_y = -inf, the loss inf)
            value = _fenchel_young_sum(row, m, p, alpha) - np.float64(row[label] - m)
            rows[i] = value if value > 0.0 else 0.0  # >= 0 in exact arithmetic: below is rounding
        if want_grad:
            g, s = grad[i], x.dtype.type(scale[i])
            for j in range(k):
                g[j] = s * p[j]
            g[label] = s * (p[label] - x.dtype.type(1.0))


@jit(nrt=True, cache=True)
def loss_rows(x: Any, y: Any, wy: Any, scale: Any, kind: int, alpha: float, n_iter: int, grad: Any, rows: Any) -> None:
    """The Fenchel–Young loss of every row: ``rows[i]`` (float64, unweighted) and, unless ``grad`` has no rows,
    ``grad[i] = scale[i] (p - e_{y_i})``; rows with ``wy[i] = 0`` are not read (0 and zeros)."""
    _loss_chunk(x, y, wy, scale, kind, alpha, n_iter, grad, rows, 0, x.shape[0])


@jit(nrt=True, cache=True, parallel=True)
def loss_rows_parallel(
    x: Any, y: Any, wy: Any, scale: Any, kind: int, alpha: float, n_iter: int, grad: Any, rows: Any, pieces: int
) -> None:
    """:func:`loss_rows` with the rows cut into ``pieces`` pieces, one per thread."""
    n = x.shape[0]
    for ch in prange(pieces):
        _loss_chunk(x, y, wy, scale, kind, alpha, n_iter, grad, rows, ch * n // pieces, (ch + 1) * n // pieces)

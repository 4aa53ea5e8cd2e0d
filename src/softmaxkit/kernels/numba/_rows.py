r"""One row at a time: the loops the kernels of :mod:`.cpu` are built from.

Each leaf loop is one simple loop over a row or a block that LLVM vectorises (the reductions among them may be
reassociated for that, ``fastmath={"reassoc"}``; Neumaier's compensated sums, which reassociation would undo,
live only in functions without it); each calls :func:`._vmath.wide` first, so that LLVM gives it the CPU's
widest vectors, and none counts references (``jit``'s ``nrt=False``: the slices cost nothing). :func:`pass1`
is the online max/sum pass over a row; :func:`narrow_tile` does the same for a tile of short rows, transposed.
Special values follow the reference: a masked (``-inf``) entry has ``d = -inf`` and ``e = 0``; an infinite row
maximum is replaced by 0 in ``x - m``; a nan anywhere in a row makes its ``rest`` nan.

These functions are compiled into the kernels that call them and are not cached on their own (numba's cache
keys a function on its own file only; see :mod:`.cpu`).

Pieces on several threads: a chunk function writes its block maxima (``mb``) and its sums (``acc``) once per
row, so each thread gets its own of both (allocated in the parallel loop) and stores its sums into the caller's
``sums[piece]`` at the end. The caller's rows of ``mb`` and ``sums`` lie in the same cache lines (a row of
``sums`` is 32 bytes; a row of ``mb`` at 100 classes, 4): written by two threads row after row, the line moved
between their cores on every row. That made two threads slower than one at 100 classes (class-index CE with its
gradient, 1024 x 100 float32: 0.15 ms on one thread, 0.20 ms on two; 0.12 ms on two with their own).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._vmath import from_sortkey, jit, maxnum, sortkey, vector_span, vexp, vexp_nonpos, vexpm1, wide

BLOCK = 2048
"""Entries per block of the online pass and per tile of short rows; each per-thread buffer holds one."""

NARROW = 32
"""Rows of at most this many classes take the transposed tile path (:func:`narrow_tile`)."""

STORE = 1 << 21
"""Rows of at most this many bytes (2 MiB) keep their exponentials from the first pass, in the output: the
second pass rescales them instead of recomputing ``exp``. They are read back from L2 or L3 (a row and its
output, per thread, fit in the L3 of the CPUs we target), so that costs no memory traffic; longer rows recompute
them (re-reading the logits costs the same traffic as re-reading stored exponentials would, without writing
them twice)."""

# The last window. LLVM's vector loop runs on a multiple of its vector width times its unroll (vector_span: float32,
# 16 x 4 lanes with AVX-512, 8 x 4 with AVX2) and leaves the rest of a loop to scalar code, whose exponential
# costs about ten times a vector lane's. At 100 classes (AVX-512) that rest was 36 entries of every row, and
# softmax took 1.6 ns per logit against 0.65 at 128 (one thread). The plain passes run their loops on the longest
# stretch that is a multiple of the span, then once more on the last span of entries, the ones already done left
# out of the sums by a blend and their exponentials written again with the same values: all vector work. (Copying
# the rest into a padded scratch instead was slower: the vector loads of entries just stored one at a time wait
# for the stores.)

_REASSOC = {"reassoc", "contract"}  # lets LLVM vectorise sums; only in leaf loops (never near Neumaier's sums)
PLAIN, SCALED, CAPPED = 0, 1, 2  # d = x - m, d = (x - m) / t, d = c tanh(x/c) - c tanh(m/c)
INDEX, SMOOTH, PROBS = 0, 1, 2  # cross-entropy targets: class index, class index + smoothing, probabilities


# ------------------------------------------------------------------------------------------ leaf loops
# One simple loop each, which LLVM vectorises; the reductions among them may be reassociated.
@jit()
def _row_maxnum(x: Any) -> Any:
    """:func:`_row_max` as a ``maxnum`` reduction (LLVM vectorises it with one accumulator: latency-bound)."""
    m = x.dtype.type(-np.inf)
    for j in range(x.size):
        m = maxnum(m, x[j])
    return m


@jit()
def _row_max(x: Any) -> Any:
    """Largest entry ignoring nan; ``-inf`` for an empty slice or one of only ``-inf`` and nan.

    The maximum of the entries' :func:`._vmath.sortkey`, which vectorises with several accumulators (three times
    :func:`_row_maxnum`'s speed). A nan with its sign bit clear sorts above ``+inf`` and would win: such a row
    (rare; its results are nan anyway) is reduced again ignoring nan. One with the sign bit set sorts below
    ``-inf`` and never wins.
    """
    wide()
    k = sortkey(x.dtype.type(-np.inf))
    for j in range(x.size):
        kj = sortkey(x[j])
        k = kj if kj > k else k
    m = from_sortkey(k, x.dtype.type(0.0))
    return m if m == m else _row_maxnum(x)


@jit()
def has_nan(x: Any) -> bool:
    """Whether ``x`` holds a nan (an early-exit loop; only for rows already known to be special)."""
    for j in range(x.size):  # noqa: SIM110 (numba compiles loops, not generators)
        if x[j] != x[j]:
            return True
    return False


SUB = 512
"""Entries per partial sum of the exponentials, added in the logits' dtype before the float64 row sum."""


def _part(store: bool, ties_apart: bool, masked: bool) -> Any:
    """``part(x, m, e, skip)``: the sum of ``e = exp(x - m)`` in ``x``'s dtype (at most :data:`SUB` terms).

    ``ties_apart``: ``(sum of e != 1, number of e == 1)``, else ``(sum of every e, 0)``; ``store``: ``e`` kept;
    ``masked``: terms before ``skip`` left out (the last window of :func:`_plain_pass`; they are computed, and left out
    by a blend). Constants of the closure: numba compiles only their side of
    each ``if``.
    """

    @jit(fastmath=_REASSOC, variant=f"{int(store)}{int(ties_apart)}{int(masked)}")
    def part(x: Any, m: Any, e: Any, skip: int) -> Any:
        wide()
        zero, one = x.dtype.type(0.0), x.dtype.type(1.0)
        s, ties = zero, zero
        for j in range(x.size):
            v = vexp_nonpos(x[j] - m)  # m is the running maximum: x - m <= 0 or nan
            if store:
                e[j] = v
            if masked:
                v = zero if j < skip else v
            if ties_apart:
                s += zero if v == one else v
                ties += one if v == one else zero
            else:
                s += v
        return s, ties

    return part


_part_exp = _part(False, True, False)
_part_exp_store = _part(True, True, False)
_part_total_store = _part(True, False, False)
_tail_exp = _part(False, True, True)
_tail_exp_store = _part(True, True, True)
_tail_total_store = _part(True, False, True)


@jit(fastmath=_REASSOC)
def _part_rest(e: Any) -> Any:
    """As :func:`_part_exp`, for exponentials already computed."""
    wide()
    zero, one = e.dtype.type(0.0), e.dtype.type(1.0)
    s, ties = zero, zero
    for j in range(e.size):
        v = e[j]
        s += zero if v == one else v
        ties += one if v == one else zero
    return s, ties


# The terms are added in the logits' dtype, :data:`SUB` at a time, and those partial sums in float64. A float64
# accumulator would make LLVM vectorise the whole fused loop, exponential included, at float64's width (half
# float32's lanes, twice the time). LLVM's vector loop keeps one partial sum per lane and unrolled copy (for
# float32, 16 with AVX2, each of 32 terms of a full SUB), so the error of these sums of positive terms is bounded
# by about 36 units roundoff and is typically a few; the accuracy suite (tests/test_accuracy.py, kernels forced)
# holds. The exact 1s, counted apart, never enter them, so a confident row's small rest keeps its relative
# accuracy.
@jit()
def _sum_exp(x: Any, m: Any) -> Any:
    """Fused ``e = exp(x - m)``, returning the float64 sum of the terms other than 1 and the number of 1s.

    The maximum's own term is exactly 1; counting the ones apart lets the caller leave one of them out of the
    sum exactly (``log1p`` of the rest). A term that rounds to 1 is 1 either way, so ties and near-ties agree.
    """
    s, ties = 0.0, 0.0
    for j0 in range(0, x.size, SUB):
        ps, pt = _part_exp(x[j0 : j0 + SUB], m, x, 0)
        s += np.float64(ps)
        ties += np.float64(pt)
    return s, ties


@jit()
def _sum_exp_store(x: Any, m: Any, e: Any) -> Any:
    """As :func:`_sum_exp`, keeping ``e = exp(x - m)``."""
    s, ties = 0.0, 0.0
    for j0 in range(0, x.size, SUB):
        ps, pt = _part_exp_store(x[j0 : j0 + SUB], m, e[j0 : j0 + SUB], 0)
        s += np.float64(ps)
        ties += np.float64(pt)
    return s, ties


@jit()
def _sum_total_store(x: Any, m: Any, e: Any) -> Any:
    """The float64 sum of every ``e = exp(x - m)``, kept in ``e`` (``(sum, 0)``, as :func:`_sum_exp_store`)."""
    s = 0.0
    for j0 in range(0, x.size, SUB):
        s += np.float64(_part_total_store(x[j0 : j0 + SUB], m, e[j0 : j0 + SUB], 0)[0])
    return s, 0.0


@jit()
def _sum_rest(e: Any) -> Any:
    """As :func:`_sum_exp`, for exponentials already computed."""
    s, ties = 0.0, 0.0
    for j0 in range(0, e.size, SUB):
        ps, pt = _part_rest(e[j0 : j0 + SUB])
        s += np.float64(ps)
        ties += np.float64(pt)
    return s, ties


@jit()
def _shift(x: Any, m: Any, d: Any) -> None:
    wide()
    for j in range(x.size):
        d[j] = x[j] - m


@jit()
def shift_scaled(x: Any, m: Any, t: Any, d: Any) -> None:
    """``d = (x - m) / t``: the maximum is subtracted before dividing, as in the reference."""
    wide()
    for j in range(x.size):
        d[j] = (x[j] - m) / t


@jit(fastmath={"contract"})
def capdiff(z: Any, m: Any, c: Any, am: Any, tm: Any, em: Any, one: Any) -> Any:
    r"""``(c tanh(z/c) - c tanh(m/c), 1/cosh^2(z/c))`` for ``z <= m``, without cancellation.

    The reference's formula (:func:`softmaxkit.cross_entropy._softcap_shifted`): when :math:`a = z/c` and
    :math:`b = m/c` share a sign, :math:`2c\, e^{-2\min(|a|,|b|)} \operatorname{expm1}(-2|z - m|/c) /
    ((1 + e^{-2|a|})(1 + e^{-2|b|}))`, every exponent non-positive; otherwise the plain difference, whose terms
    have opposite signs. ``am = m/c``, ``tm = tanh(am)``, ``em = exp(-2|am|)`` are the row's constants and
    ``one`` fixes the dtype; :math:`\tanh a = -\operatorname{sign}(a) \operatorname{expm1}(-2|a|) /
    (2 + \operatorname{expm1}(-2|a|))` keeps its relative accuracy near 0. ``-inf`` stays ``-inf``.
    """
    zero = one - one
    two = one + one
    a = z / c
    big_a = abs(a)
    e = vexp(-two * big_a)
    e1 = vexpm1(-two * big_a)
    th = -e1 / (two + e1)
    direct = c * ((th if a >= zero else -th) - tm)  # c (tanh a - tanh b); one product, so a == b gives 0
    # one sign, compared by sign (a * am underflows to 0 for a, am near 1e-200) and both finite
    same = ((a > zero and am > zero) or (a < zero and am < zero)) and (big_a - big_a == zero) and (am - am == zero)
    low = e if a > zero else em  # e^{-2 min(|a|, |b|)}: z <= m, so |a| <= |b| when both are positive
    # c last: 2c overflows for c near the dtype's maximum, the bracket is at most 2 in magnitude
    stable = c * ((two * low) * vexpm1(-two * ((m - z) / c)) / ((one + e) * (one + em)))
    d = stable if same else direct
    d = z if (z < zero and z - z != zero) else d  # a -inf logit (a mask) stays -inf; z / c overflowing is not one
    return d, (two * two) * e / ((one + e) * (one + e))


@jit()
def cap_consts(m: Any, c: Any) -> Any:
    """The row constants of :func:`capdiff`: ``(m/c, tanh(m/c), exp(-2|m/c|))`` in the dtype of ``m``."""
    one = c / c
    two = one + one
    am = m / c
    e1 = vexpm1(-two * abs(am))
    th = -e1 / (two + e1)
    return am, (th if am >= one - one else -th), vexp(-two * abs(am))


@jit()
def _shift_capped(x: Any, m: Any, c: Any, d: Any, g: Any) -> None:
    """``d = c tanh(x/c) - c tanh(m/c)`` and ``g = 1/cosh^2(x/c)`` (see :func:`capdiff`)."""
    one = x.dtype.type(1.0)
    am, tm, em = cap_consts(m, c)
    for j in range(x.size):
        dj, gj = capdiff(x[j], m, c, am, tm, em, one)
        d[j] = dj
        g[j] = gj


@jit()
def exp_into(d: Any, e: Any) -> None:
    wide()
    for j in range(d.size):
        e[j] = vexp(d[j])


@jit()
def exp_times(x: Any, m: Any, f: Any, out: Any) -> None:
    """``out = exp(x - m) * f``: softmax, or the plain cross-entropy gradient, in one pass (``m``: the maximum)."""
    wide()
    for j in range(x.size):
        out[j] = vexp_nonpos(x[j] - m) * f


# In-place versions. Passing one array as both the input and the output of a two-array loop would make LLVM's
# run-time overlap check fail and run its scalar version: 5 to 10 times slower.
@jit()
def times_(a: Any, f: Any) -> None:
    """``a *= f``."""
    wide()
    for j in range(a.size):
        a[j] *= f


@jit()
def minus_(a: Any, v: Any) -> None:
    """``a -= v``."""
    wide()
    for j in range(a.size):
        a[j] -= v


@jit()
def exp_(a: Any) -> None:
    """``a = exp(a)``."""
    wide()
    for j in range(a.size):
        a[j] = vexp(a[j])


@jit()
def shift_minus(x: Any, m: Any, log_norm: Any, out: Any) -> None:
    """``out = (x - m) - log_norm``: log-softmax in one pass (never ``x - (m + log_norm)``, which rounds)."""
    wide()
    for j in range(x.size):
        out[j] = (x[j] - m) - log_norm


@jit()
def scale_by(g: Any, f: Any) -> None:
    wide()
    for j in range(g.size):
        g[j] *= f[j]


@jit()
def fill(g: Any, value: float) -> None:
    wide()
    for j in range(g.size):
        g[j] = value


@jit(fastmath=_REASSOC)
def _wdot(w: Any, d: Any) -> Any:
    """``(sum_{w != 0} w d, sum w)`` in float64: label smoothing's linear part (``0 * -inf`` left out)."""
    s, mass = 0.0, 0.0
    for j in range(d.size):
        wj = np.float64(w[j])
        s += 0.0 if wj == 0.0 else wj * np.float64(d[j])
        mass += wj
    return s, mass


@jit(fastmath=_REASSOC)
def _wdot_x(w: Any, x: Any, m: Any) -> Any:
    """:func:`_wdot` of ``d = x - m``, formed on the fly."""
    s, mass = 0.0, 0.0
    for j in range(x.size):
        wj = np.float64(w[j])
        s += 0.0 if wj == 0.0 else wj * np.float64(x[j] - m)
        mass += wj
    return s, mass


@jit(fastmath=_REASSOC)
def _qdot_x(q: Any, w: Any, qa: float, qb: float, x: Any, m: Any) -> Any:
    """:func:`_qdot` of ``d = x - m``, formed on the fly."""
    s, mass = 0.0, 0.0
    for j in range(x.size):
        qw = (np.float64(q[j]) * qa + qb) * np.float64(w[j])
        s += 0.0 if qw == 0.0 else qw * np.float64(x[j] - m)
        mass += qw
    return s, mass


@jit(fastmath=_REASSOC)
def _qdot(q: Any, w: Any, qa: float, qb: float, d: Any) -> Any:
    """``(sum_{qw != 0} qw d, sum qw)``, ``qw = (q qa + qb) w``: the smoothed, weighted probability target."""
    s, mass = 0.0, 0.0
    for j in range(d.size):
        qw = (np.float64(q[j]) * qa + qb) * np.float64(w[j])
        s += 0.0 if qw == 0.0 else qw * np.float64(d[j])
        mass += qw
    return s, mass


@jit(fastmath=_REASSOC)
def _qmass(q: Any, w: Any, qa: float, qb: float) -> float:
    mass = 0.0
    for j in range(q.size):
        mass += (np.float64(q[j]) * qa + qb) * np.float64(w[j])
    return mass


@jit()
def _any_weight(kind: int, q: Any, w: Any, qa: float, qb: float) -> bool:
    """Whether a linear sum weighs any entry here (smoothing: ``w != 0``; probabilities: ``qw != 0``)."""
    for j in range(w.size):
        wj = np.float64(w[j])
        if kind == PROBS:
            wj *= np.float64(q[j]) * qa + qb
        if wj != 0.0:
            return True
    return False


@jit()
def grad_(kind: int, g: Any, q: Any, w: Any, qa: float, qb: float, pc: float, wc: float) -> None:
    """:func:`grad_into` with ``g`` holding the exponentials on entry."""
    if kind == INDEX:
        times_(g, g.dtype.type(pc))
    elif kind == SMOOTH:
        for j in range(g.size):
            g[j] = np.float64(g[j]) * pc - wc * np.float64(w[j])
    else:
        for j in range(g.size):
            g[j] = np.float64(g[j]) * pc - wc * ((np.float64(q[j]) * qa + qb) * np.float64(w[j]))


@jit()
def grad_into(kind: int, e: Any, q: Any, w: Any, qa: float, qb: float, pc: float, wc: float, g: Any) -> None:
    """The gradient before the softcap factor: ``e pc``, minus ``wc w`` (smoothing) or ``wc qw`` (probabilities)."""
    if kind == INDEX:
        f = g.dtype.type(pc)
        for j in range(e.size):
            g[j] = e[j] * f
    elif kind == SMOOTH:
        for j in range(e.size):
            g[j] = np.float64(e[j]) * pc - wc * np.float64(w[j])
    else:
        for j in range(e.size):
            g[j] = np.float64(e[j]) * pc - wc * ((np.float64(q[j]) * qa + qb) * np.float64(w[j]))


# --------------------------------------------------------------------------------------------- rows
@jit()
def mean_scale(y: Any, n_classes: int, ignore: int, mean: bool) -> Any:
    """``(bad, kept, inv)``: :func:`label_scan`'s, and the factor of a class-index cross-entropy's gradient
    without weights: ``1 / kept`` for a ``mean`` (0 when every label is ignored), 1 for a ``sum``."""
    bad, kept = label_scan(y, n_classes, ignore)
    return bad, kept, ((1.0 / kept if kept > 0 else 0.0) if mean else 1.0)


@jit()
def reduced(total: float, kept: int, mean: bool) -> float:
    """The ``mean`` (0 when every label is ignored) or the ``sum`` of a loss whose row total is ``total``."""
    return (total / kept if kept > 0 else 0.0) if mean else total


@jit()
def label_scan(y: Any, n_classes: int, ignore: int) -> Any:
    """``(bad, kept)``: the position of the first class index of ``y`` outside ``[0, n_classes)`` that is not
    ``ignore`` (-1 when there is none; the scan stops there) and the number of labels not ignored before it."""
    kept = 0
    for i in range(y.size):
        v = y[i]
        if v == ignore:
            continue
        if v < 0 or v >= n_classes:
            return i, kept
        kept += 1
    return -1, kept


@jit()
def neumaier(s: float, comp: float, v: float) -> Any:
    """Add ``v`` to the compensated sum ``(s, comp)`` (Neumaier 1974); an infinite or nan sum stays as it is."""
    total = s + v
    if abs(total) < np.inf:
        comp += ((s - total) + v) if abs(s) >= abs(v) else ((v - total) + s)
    return total, comp


@jit()
def shift_mode(x: Any, m: Any, mode: int, t: Any, d: Any, g: Any) -> None:
    """``d`` from ``x`` relative to ``m`` (``t``: the temperature or the softcap; ``g``: the cap's derivative)."""
    if mode == PLAIN:
        _shift(x, m, d)
    elif mode == SCALED:
        shift_scaled(x, m, t, d)
    else:
        _shift_capped(x, m, t, d, g)


@jit()
def delta_uncapped(m_old: Any, m_new: Any, mode: int, t: Any) -> float:
    """:func:`delta` for modes PLAIN and SCALED."""
    a, b = float(m_old), float(m_new)
    return a - b if mode == PLAIN else (a - b) / float(t)


@jit()
def delta(m_old: Any, m_new: Any, mode: int, t: Any) -> float:
    """``d`` of the old maximum relative to the new one, in float64 (``<= 0``)."""
    if mode != CAPPED:
        return delta_uncapped(m_old, m_new, mode, t)
    a, b, tt = float(m_old), float(m_new), float(t)
    am, tm, em = cap_consts(b, tt)
    return float(capdiff(a, b, tt, am, tm, em, 1.0)[0])


def _pass1(general: bool, capped_ok: bool = True) -> Any:
    """:func:`pass1`, or with ``general`` False :data:`pass1_uncapped`: modes PLAIN and SCALED and kind INDEX
    only, what softmax, log-softmax and lse need, so that numba does not compile the softcap's and the linear
    sums' code into their kernels (issue 14, item 7); with ``capped_ok`` False :data:`pass1_nocap`: every kind,
    modes PLAIN and SCALED (cross-entropy without a softcap, which then compiles no ``tanh``). Both are constants
    of the closure (pruned branches).
    """

    @jit(variant=f"general_{general}" + ("" if capped_ok else "_nocap"))
    def pass1(
        x: Any,
        mode: int,
        t: Any,
        kind: int,
        q: Any,
        w: Any,
        qa: float,
        qb: float,
        store: bool,
        e: Any,
        mb: Any,
        buf: Any,
    ) -> Any:
        """The online max/sum pass over one row: ``(m, rest, lin, mass)``.

        ``m``: the row maximum (nan ignored); ``rest``: the float64 sum of :math:`e^{d_j}` over every entry but one
        maximum, nan if the row holds a nan; ``lin``: the linear sum of label smoothing (kind 1, :func:`_wdot`) or
        of a probability target (kind 2, :func:`_qdot`) relative to ``m``; ``mass``: the target mass (kind 2).

        Per block of :data:`BLOCK` entries: its maximum, one rescale of everything summed so far if that grew
        (Milakov & Gimelshein 2018), then the block's terms while it is in L1, added with Neumaier's compensation.
        ``mb[b]`` records the maximum block ``b`` was summed against; with ``store`` its exponentials are kept in
        ``e`` (the caller's output row), to be rescaled by :math:`e^{mb_b - m}` in the second pass. Leading blocks
        of only ``-inf`` (and nan) have no maximum to be relative to: they are checked for nan and for weighted
        entries, whose ``d`` is ``-inf`` whatever the maximum turns out to be, and stored as 0.
        """
        n = x.size
        ninf = x.dtype.type(-np.inf)
        m = ninf
        s, comp, ties = 0.0, 0.0, 0.0
        lin, seen, mass = 0.0, 0.0, 0.0
        lin_inf, nan = False, False
        for b in range((n + BLOCK - 1) // BLOCK):
            b0, b1 = b * BLOCK, min((b + 1) * BLOCK, n)
            xb = x[b0:b1]
            bm = _row_max(xb)
            if general and kind == PROBS:
                mass += _qmass(q[b0:b1], w[b0:b1], qa, qb)
            if bm > m:
                if m > ninf:
                    shift = delta(m, bm, mode, t) if general and capped_ok else delta_uncapped(m, bm, mode, t)
                    f = math.exp(shift)
                    s, comp, ties = (s + ties) * f, comp * f, 0.0  # the old maxima become ordinary terms
                    lin += shift * seen
                m = bm
            mb[b] = m
            if m == ninf:
                nan = nan or has_nan(xb)
                lin_inf = lin_inf or (general and kind != INDEX and _any_weight(kind, q[b0:b1], w[b0:b1], qa, qb))
                if store:
                    fill(e[b0:b1], 0.0)
                continue
            ls, lm = 0.0, 0.0
            if mode == PLAIN:
                bs, bt = _sum_exp_store(xb, m, e[b0:b1]) if store else _sum_exp(xb, m)
                if general and kind == SMOOTH:
                    ls, lm = _wdot_x(w[b0:b1], xb, m)
                elif general and kind == PROBS:
                    ls, lm = _qdot_x(q[b0:b1], w[b0:b1], qa, qb, xb, m)
            else:
                db, eb = buf[0, : b1 - b0], (e[b0:b1] if store else buf[1, : b1 - b0])
                if general and capped_ok:
                    shift_mode(xb, m, mode, t, db, buf[2, : b1 - b0])
                else:
                    shift_scaled(xb, m, t, db)
                exp_into(db, eb)
                bs, bt = _sum_rest(eb)
                if general and kind == SMOOTH:
                    ls, lm = _wdot(w[b0:b1], db)
                elif general and kind == PROBS:
                    ls, lm = _qdot(q[b0:b1], w[b0:b1], qa, qb, db)
            lin += ls
            seen += lm
            s, comp = neumaier(s, comp, bs)
            ties += bt
        rest = (s + comp) + max(ties - 1.0, 0.0)
        return m, (np.nan if nan else rest), (-np.inf if lin_inf else lin), mass

    return pass1


pass1 = _pass1(True)
pass1_uncapped = _pass1(False)
"""``pass1_uncapped(x, mode, t, kind, q, w, qa, qb, store, e, mb, buf)``: :func:`pass1` for modes PLAIN and SCALED
and kind INDEX (``(m, rest, 0, 0)``)."""
pass1_nocap = _pass1(True, capped_ok=False)
""":func:`pass1` for modes PLAIN and SCALED, every kind (no softcap's code compiled)."""


def _plain_pass(store: bool, total: bool = False) -> Any:
    """:func:`pass1` for ``d = x - m`` and no linear sum, ``store`` fixed: ``(m, rest)``, the same arithmetic.

    The common call (softmax, log-softmax, lse without options; cross-entropy of class indices without
    smoothing, z-loss or softcap) compiles one of these instead of :func:`pass1`, whose other modes and targets
    would be compiled too and cost most of a first call's compile time (issue 14, item 7). ``store`` and
    ``total`` are constants of the closure, so numba compiles only their side of each ``if`` (branch pruning).

    With ``total`` (and ``store``) the second value is the whole sum :math:`1 + \text{rest}`, the maximum's own
    1 and any ties included, and no tie is counted: what softmax needs, whose every entry divides by that sum.
    Only a result that keeps ``rest``'s relative accuracy when it is tiny (log-softmax's and the loss's
    ``log1p(rest)`` on a confident row) needs the 1s kept apart; softmax's ``p = e / (1 + rest)`` does not, and
    the count costs a compare and two blends per entry (softmax at 1000 classes about 1.2 times faster without).
    """

    @jit(variant=f"store_{store}" + ("_total" if total else ""))
    def plain_pass(x: Any, e: Any, mb: Any) -> Any:
        n = x.size
        ninf = x.dtype.type(-np.inf)
        m = ninf
        s, comp, ties = 0.0, 0.0, 0.0
        nan = False
        for b in range((n + BLOCK - 1) // BLOCK):
            b0, b1 = b * BLOCK, min((b + 1) * BLOCK, n)
            xb = x[b0:b1]
            span = vector_span(ninf)  # (see "The last window" above)
            cut = xb.size - xb.size % span  # (only the last block has a rest: BLOCK is a multiple of the span)
            window = span <= cut < xb.size  # (a rest and a window of a span of entries to run it in)
            if window:
                xb = xb[:cut]
            bm = _row_max(xb)
            if window:
                bm = max(bm, _row_max(x[b1 - span : b1]))  # (the window's entries are in the block: max is idempotent)
            if bm > m:
                if m > ninf:
                    f = math.exp(float(m) - float(bm))
                    s, comp, ties = (s + ties) * f, comp * f, 0.0  # the old maxima become ordinary terms
                m = bm
            mb[b] = m
            if m == ninf:
                nan = nan or has_nan(x[b0:b1])
                if store:
                    fill(e[b0:b1], 0.0)
                continue
            if total:
                bs, bt = _sum_total_store(xb, m, e[b0 : b0 + xb.size])
            elif store:
                bs, bt = _sum_exp_store(xb, m, e[b0 : b0 + xb.size])
            else:
                bs, bt = _sum_exp(xb, m)
            if window:
                skip, w0 = cut - (b1 - b0 - span), b1 - span
                if total:
                    ps, pt = _tail_total_store(x[w0:b1], m, e[w0:b1], skip)
                elif store:
                    ps, pt = _tail_exp_store(x[w0:b1], m, e[w0:b1], skip)
                else:
                    ps, pt = _tail_exp(x[w0:b1], m, e, skip)
                bs, bt = bs + np.float64(ps), bt + np.float64(pt)
            s, comp = neumaier(s, comp, bs)
            ties += bt
        rest = (s + comp) + (0.0 if total else max(ties - 1.0, 0.0))
        return m, (np.nan if nan else rest)

    return plain_pass


pass1_plain = _plain_pass(False)
"""``pass1_plain(x, e, mb)``: :func:`pass1` of mode PLAIN and kind INDEX, nothing stored (``e`` unused)."""
pass1_plain_store = _plain_pass(True)
"""``pass1_plain_store(x, e, mb)``: as :func:`pass1_plain`, keeping the exponentials in ``e``."""
pass1_plain_total = _plain_pass(True, total=True)
"""``pass1_plain_total(x, e, mb)``: as :func:`pass1_plain_store`, returning ``(m, 1 + rest)``, ties not counted."""


def _narrow_tile(capped_ok: bool) -> Any:
    """:func:`narrow_tile`, or with ``capped_ok`` False the same without the softcap's branch (modes PLAIN and
    SCALED only), which numba then does not compile: the softcap's ``tanh`` and ``expm1`` cost a first call
    seconds of compiling (issue 14, item 7). ``capped_ok`` is a constant of the closure, so the branch is pruned.
    """

    @jit(variant=f"capped_ok_{capped_ok}")
    def narrow_tile(x: Any, i0: int, i1: int, mode: int, t: Any, buf: Any, mrow: Any, rows: Any) -> None:
        """Rows ``i0:i1`` of a narrow ``x`` (``k <= NARROW``), transposed: one vectorised loop per class, across rows.

        A row of 10 classes is too short for a vector loop of its own, so the tile is copied into ``buf`` class by
        class (``buf[0, c*R + r] = x[i0 + r, c]``, ``R = i1 - i0``) and every step then runs across the rows: the
        maxima, the shifted logits ``d`` (``buf[0]``), ``e = exp(d)`` (``buf[1]``), the softcap's derivative
        (``buf[2]``) and the sums. Per row: ``mrow`` (the dtype's) gets the maximum with an infinite one replaced by
        0, as the reference does in ``x - m``; ``rows[0]`` the maximum (capped under a softcap), ``rows[1]`` the rest
        :math:`s` of the normaliser (nan for a row with a nan, inf for one with +inf and no softcap); ``rows[2:6]``
        are scratch. Every row is read, ignored ones too (their results are never used).
        """
        wide()
        k = x.shape[1]
        nr = i1 - i0
        d, e, g = buf[0, : nr * k], buf[1, : nr * k], buf[2, : nr * k]
        top, rest, ties = rows[0, :nr], rows[1, :nr], rows[2, :nr]
        xf = x.reshape(x.size)
        for c in range(k):
            base = i0 * k + c
            for r in range(nr):
                d[c * nr + r] = xf[base + r * k]
        m = mrow[:nr]
        for r in range(nr):
            m[r] = -np.inf
        for c in range(k):
            dc = d[c * nr : (c + 1) * nr]
            for r in range(nr):
                m[r] = maxnum(m[r], dc[r])
        if capped_ok and mode == CAPPED:
            one = x.dtype.type(1.0)
            am, tm, em = rows[3, :nr], rows[4, :nr], rows[5, :nr]
            for r in range(nr):
                am[r], tm[r], em[r] = cap_consts(m[r], t)
                top[r] = -np.inf if m[r] == -np.inf else np.float64(t) * math.tanh(np.float64(m[r]) / np.float64(t))
            for c in range(k):
                for r in range(nr):
                    j = c * nr + r
                    dt = x.dtype.type
                    dj, gj = capdiff(d[j], m[r], t, dt(am[r]), dt(tm[r]), dt(em[r]), one)
                    d[j] = dj
                    g[j] = gj
        else:
            for r in range(nr):
                top[r] = m[r]
                m[r] = m[r] if abs(m[r]) < np.inf else x.dtype.type(0.0)
            for c in range(k):
                dc = d[c * nr : (c + 1) * nr]
                if mode == PLAIN:
                    for r in range(nr):
                        dc[r] = dc[r] - m[r]
                else:
                    for r in range(nr):
                        dc[r] = (dc[r] - m[r]) / t
        exp_into(d, e)
        one = x.dtype.type(1.0)
        for r in range(nr):
            rest[r] = 0.0
            ties[r] = 0.0
        for c in range(k):
            ec = e[c * nr : (c + 1) * nr]
            for r in range(nr):
                v = ec[r]
                rest[r] += 0.0 if v == one else np.float64(v)
                ties[r] += 1.0 if v == one else 0.0
        for r in range(nr):
            rest[r] += max(ties[r] - 1.0, 0.0)

    return narrow_tile


narrow_tile = _narrow_tile(True)
narrow_tile_uncapped = _narrow_tile(False)
"""``narrow_tile_uncapped(x, i0, i1, mode, t, buf, mrow, rows)``: :func:`narrow_tile` for modes PLAIN and SCALED."""


@jit()
def narrow_out(src: Any, f: Any, sub: bool, out: Any, i0: int, nr: int) -> None:
    """Write a transposed tile back: ``out[i0 + r, c] = src[c*nr + r] - f[r]`` (or ``* f[r]``)."""
    wide()
    k = out.shape[1]
    of = out.reshape(out.size)
    for c in range(k):
        base = i0 * k + c
        sc = src[c * nr : (c + 1) * nr]
        if sub:
            for r in range(nr):
                of[base + r * k] = sc[r] - f[r]
        else:
            for r in range(nr):
                of[base + r * k] = sc[r] * f[r]

r"""The private engine every front shares: the row prologue, the max-shift statistics, the online log-sum-exp
state and its merge, and the softcap. Written once, for any array-API namespace ``xp`` (NumPy,
array-api-strict, torch through array-api-compat, ``jax.numpy``, also under ``jax.jit``).

The online log-sum-exp state
----------------------------
Per row, the log-sum-exp of the entries seen so far is kept as :class:`Lse` ``(m, log_norm)``:

.. math:: \operatorname{lse} = m + \text{log\_norm}, \qquad m = \max_j z_j, \qquad
          \text{log\_norm} = \operatorname{log1p}\Bigl(\sum_{j \ne j^*} e^{z_j - m}\Bigr)

with :math:`j^*` one position of the maximum, whose own term (exactly 1) is kept out of the sum. Evaluating
:math:`\log(1 + s)` as ``log1p(s)`` keeps full relative accuracy when :math:`s` is tiny, that is for a confident
row, whose loss *is* ``log_norm`` (Blanchard, Higham & Higham 2021): logits ``[40, 0, 0]`` with target 0 give
:math:`\log(1 + 2e^{-40}) = 8.4967\times10^{-18}`, where ``log(sum)`` rounds to 0. :func:`merge` combines the
states of two disjoint sets of entries without leaving this form (Milakov & Gimelshein 2018 for the online
rescaling), so chunked and vocab-parallel paths keep the accuracy of the one-pass reference. The CPU and GPU
kernels (:mod:`softmaxkit.kernels`) keep the same pair.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import array_api_compat

from . import _validate
from ._array import Array, DType, Namespace, cast, from_last, namespace_of, to_compute, to_last

__all__ = [
    "Entries",
    "Layout",
    "Lse",
    "Rows",
    "Stats",
    "bad_rows",
    "cotangent",
    "dsigmoid",
    "entries",
    "finish",
    "is_one",
    "lay",
    "lse_of_shifted",
    "merge",
    "nan_rows",
    "pool",
    "rows",
    "share",
    "sigmoid",
    "softcap_shifted",
    "softplus",
    "stats",
    "tangent",
    "unlay",
]

_INF = float("inf")
_NAN = float("nan")


# ------------------------------------------------------------------------------------------ row prologue
class Entries(NamedTuple):
    """A mapping's input, checked, in its compute dtype and its own layout."""

    xp: Namespace
    z: Array  # compute dtype, the caller's layout
    mask: Array | None  # ``where`` broadcast to z's shape (caller's layout), or None
    axis: int  # the caller's axis, normalised (0 for a 0-d input, where it is allowed)
    out_dtype: DType  # dtype to return


def entries(
    x: Any, axis: Any, where: Any, name: str = "x", *, scalar: bool = False, others: tuple[Any, ...] = ()
) -> Entries:
    """Check ``x``, ``axis`` and ``where`` and cast ``x`` to its compute dtype (the shared prologue of every
    mapping). With ``scalar`` a 0-d ``x`` is accepted (an elementwise map, whose ``axis`` is then not read).
    ``others`` are the call's other array arguments: a NumPy ``x`` next to a torch or JAX one becomes one of them."""
    xp, x = namespace_of(x, where, *others, name=name)
    ax = 0 if scalar and x.ndim == 0 else _validate.axis(axis, x.ndim)
    z, out_dtype = to_compute(xp, x, name)
    return Entries(xp, z, _validate.mask(xp, x, where), ax, out_dtype)


class Layout(NamedTuple):
    """How several reduced axes (a tuple, or ``None``: all of them) were merged into one last axis."""

    perm: tuple[int, ...]  # the permutation that puts the kept axes first, the reduced ones last
    shape: tuple[int, ...]  # the permuted shape, before the reduced axes are merged
    n: int  # how many axes are reduced


class Rows(NamedTuple):
    """Logits prepared for a reduction along the last axis."""

    xp: Namespace
    z: Array  # compute dtype, reduced axis last, masked entries set to -inf
    axis: Any  # the caller's axis, normalised (an int); a Layout when several=True got a tuple of axes or None
    out_dtype: DType  # dtype to return


def _merge_axes(xp: Namespace, x: Array, axes: tuple[int, ...]) -> tuple[Array, Layout]:
    """``x`` with ``axes`` moved last (in the order given) and merged into one; a 0-d ``x`` becomes ``(1,)``."""
    kept = tuple(i for i in range(x.ndim) if i not in axes)
    perm = kept + axes
    moved = x if perm == tuple(range(x.ndim)) else xp.permute_dims(x, perm)
    shape = tuple(int(s) for s in moved.shape)
    merged = xp.reshape(moved, (*shape[: len(kept)], math.prod(shape[len(kept) :])))
    return merged, Layout(perm, shape, len(axes))


def lay(xp: Namespace, x: Array, axis: Any) -> Array:
    """Lay ``x`` (the shape of the caller's data) out as :func:`rows` laid out the data: reduced axis last."""
    if isinstance(axis, Layout):
        moved = x if axis.perm == tuple(range(x.ndim)) else xp.permute_dims(x, axis.perm)
        return xp.reshape(moved, (*axis.shape[: len(axis.shape) - axis.n], -1) if axis.shape else (1,))
    return to_last(xp, x, axis)


def unlay(xp: Namespace, r: Array, axis: Any, reduced: bool = False) -> Array:
    """Undo :func:`lay`; ``reduced``: ``r``'s last axis has length 1 (keepdims), one per reduced axis."""
    if not isinstance(axis, Layout):
        return from_last(xp, r, axis)
    kept = axis.shape[: len(axis.shape) - axis.n]
    shape = (*kept, *((1,) * axis.n)) if reduced else axis.shape
    r = xp.reshape(r, shape)
    inverse = tuple(sorted(range(len(axis.perm)), key=lambda i: axis.perm[i]))
    return r if inverse == tuple(range(r.ndim)) else xp.permute_dims(r, inverse)


def rows(x: Any, axis: Any, where: Any, *others: Any, name: str = "x", several: bool = False) -> Rows:
    """:func:`entries` with ``axis`` moved last and masked entries set to ``-inf``.

    ``others`` are the call's other array arguments (see :func:`entries`). With ``several``, ``axis`` may also be
    a tuple of axes or ``None`` (every axis, as in SciPy): they are merged into one last axis, and
    ``Rows.axis`` is the :class:`Layout` that :func:`finish` undoes.
    """
    if several and (axis is None or isinstance(axis, tuple)):
        xp, x = namespace_of(x, where, *others, name=name)
        z, out_dtype = to_compute(xp, x, name)
        mask = _validate.mask(xp, x, where)
        if mask is not None:
            z = xp.where(mask, z, -_INF)
        merged, layout = _merge_axes(xp, z, _validate.axes(axis, x.ndim))
        return Rows(xp, merged, layout, out_dtype)
    xp, z, mask, ax, out_dtype = entries(x, axis, where, name, others=others)
    z = to_last(xp, z, ax)
    if mask is not None:
        z = xp.where(to_last(xp, mask, ax), z, -_INF)
    return Rows(xp, z, ax, out_dtype)


def cotangent(xp: Namespace, x: Any, v: Any, name: str, dtype: DType) -> Array:
    """A tangent or cotangent ``v`` of ``x``'s shape, in ``dtype`` (``x``'s layout)."""
    _, xx = namespace_of(x, v)
    vv = _validate.same_shape(xp, xx, v, name)
    return cast(xp, to_compute(xp, vv, name)[0], dtype)


def tangent(r: Rows, v: Any, name: str, x: Any) -> Array:
    """A tangent or cotangent ``v`` of ``x``'s shape, laid out as :func:`rows` laid out ``x``."""
    return lay(r.xp, cotangent(r.xp, x, v, name, r.z.dtype), r.axis)


def finish(xp: Namespace, r: Array, axis: Any, dtype: DType) -> Array:
    """Undo :func:`rows`' layout: the reduced axis back in place, the caller's dtype."""
    return cast(xp, unlay(xp, r, axis), dtype)


# --------------------------------------------------------------------------------------- the lse state
class Lse(NamedTuple):
    """The log-sum-exp of a row, :math:`m + \\text{log\\_norm}` (see the module notes)."""

    m: Array  # row maximum: -inf for an empty or fully masked row, nan / +inf for rows that hold them
    log_norm: Array  # log1p(sum of e^{z - m} over every entry but one maximum), in [0, log C]; 0 when m = -inf


def _shift(xp: Namespace, m: Array) -> Array:
    return xp.where(xp.isfinite(m), m, 0.0)


def _rest(xp: Namespace, e: Array, z: Array) -> Array:
    """Sum of ``e`` along the last axis, without the entry at the (first) maximum of ``z`` (keepdims)."""
    top = xp.argmax(z, axis=-1, keepdims=True)
    is_top = xp.arange(z.shape[-1], device=array_api_compat.device(z)) == top
    return xp.sum(xp.where(is_top, 0.0, e), axis=-1, keepdims=True)


def lse_of_shifted(xp: Namespace, d: Array, m: Array) -> Lse:
    """:class:`Lse` of a block from its shifted logits ``d`` (``z`` minus the row's finite maximum, or minus 0)
    and its row maximum ``m`` (both with the class axis last; ``m`` without it). Ties at the maximum each add
    exactly 1 to the rest."""
    rest = xp.squeeze(_rest(xp, xp.exp(d), d), axis=-1)
    return Lse(m, xp.where(m == -_INF, 0.0, xp.log1p(rest)))


def share(xp: Namespace, part: Lse, m: Array) -> tuple[Array, Array]:
    r"""One partial state's contribution to the rest of a row whose overall maximum is ``m``, and 1 where the part
    holds that maximum (else 0).

    A part holding the maximum contributes its own rest :math:`\operatorname{expm1}(\text{log\_norm})` (its
    maximum's term is the 1 that :func:`pool` takes out), any other its whole sum
    :math:`e^{\text{log\_norm} + m_k - m}`, every exponent :math:`\le 0`. Summing the shares of all parts (in a
    collective, say) and handing the totals to :func:`pool` is :func:`merge` over any number of parts.
    """
    live = m != -_INF
    top = xp.logical_and(part.m == m, live)
    gap = xp.where(live, part.m - _shift(xp, m), -_INF)
    rest = xp.where(top, xp.expm1(part.log_norm), xp.exp(part.log_norm + gap))
    return xp.where(live, rest, 0.0), cast(xp, top, part.log_norm.dtype)


def pool(xp: Namespace, m: Array, rest: Array, tops: Array) -> Lse:
    """The state of a row from the summed :func:`share`\\ s of its parts: ``tops - 1`` extra maxima add 1 each."""
    return Lse(m, xp.log1p(xp.where(m == -_INF, 0.0, rest + (tops - 1.0))))


def merge(xp: Namespace, a: Lse, b: Lse) -> Lse:
    r"""The state of the union of two disjoint sets of entries (the online log-sum-exp).

    :math:`m = \max(m_a, m_b)`; the side holding :math:`m` keeps its rest, the other side's whole sum
    :math:`1 + r` is scaled by :math:`e^{m_{lo} - m} \le 1`, so ``log_norm`` stays ``log1p`` of the terms other
    than one maximum. A side that is all ``-inf`` adds nothing; two such sides give ``(-inf, 0)``.
    """
    m = xp.maximum(a.m, b.m)
    ra, ta = share(xp, a, m)
    rb, tb = share(xp, b, m)
    return pool(xp, m, ra + rb, ta + tb)


def nan_rows(xp: Namespace, bad: Array, r: Array) -> Array:
    """``r`` with ``nan`` where ``bad`` (broadcast), as ``r + where(bad, nan, 0)``.

    Added, not selected, in the derivatives: under ``jax.grad`` (which transposes them) ``where(bad, nan, r)``
    keeps the broadcast nan constant as a residual, which ``jax.debug_nans`` reports even when no row is bad;
    the sum keeps only ``where(bad, nan, 0)``, nan exactly where the result is.
    """
    return r + xp.where(bad, _NAN, xp.zeros_like(r))


def bad_rows(xp: Namespace, m: Array) -> Array:
    """Rows whose result is nan: a nan or a ``+inf`` in the row (their maximum is neither finite nor ``-inf``)."""
    return xp.logical_not(xp.logical_or(xp.isfinite(m), m == -_INF))


# ---------------------------------------------------------------------------------- max-shift statistics
class Stats(NamedTuple):
    """The shared work of softmax, log-softmax and lse along the last axis (all with keepdims)."""

    m: Array  # row maximum; nan for rows with nan, +inf for rows with +inf, -inf for fully masked rows
    d: Array  # (z - m) / T with m replaced by 0 where it is not finite
    p: Array  # softmax
    log_norm: Array  # log1p(sum of exp(d) over all entries but one maximum)
    bad: Array  # rows whose result is nan: a nan or a +inf in the row


def is_one(temperature: Any) -> bool:
    """Whether a temperature is the number 1 (a traced JAX temperature is not known to be)."""
    return isinstance(temperature, float) and temperature == 1.0


def stats(xp: Namespace, z: Array, temperature: Any = 1.0) -> Stats:
    """Max-shifted exponentials with the maximum's own term (exactly 1) kept out of the sum."""
    m = xp.max(z, axis=-1, keepdims=True)
    d = z - _shift(xp, m)
    if not is_one(temperature):
        # only the finite entries are divided: XLA may divide by multiplying with 1/T, which flushes to 0 for T
        # near float32's maximum, and -inf * 0 would be nan; a masked -inf stays -inf, nan and +inf stay
        finite = xp.isfinite(d)
        d = xp.where(finite, xp.where(finite, d, 0.0) / temperature, d)
    e = xp.exp(d)
    rest = _rest(xp, e, z)
    return Stats(m, d, e / (1.0 + rest), xp.log1p(rest), bad_rows(xp, m))


# ----------------------------------------------------------------------------------------------- softcap
def softcap_shifted(xp: Namespace, z: Array, cap: float) -> tuple[Array, Array, Array]:
    r"""Soft-capped logits minus their row maximum, the capped maximum, and the derivative of the cap.

    :math:`c\tanh(z_j/c) - c\tanh(m/c)` is computed without cancellation: when :math:`z_j/c` and
    :math:`m/c` share a sign, from :math:`c \sinh((z_j - m)/c) / (\cosh(z_j/c)\cosh(m/c))` written with
    non-positive exponents only (no overflow in any dtype), so that its error is relative to the difference
    itself, as for :math:`z_j - m` without a cap; otherwise the two tanh have opposite signs and their plain
    difference loses nothing. ``-inf`` stays ``-inf`` (a mask survives the cap).
    """
    m = xp.max(z, axis=-1, keepdims=True)
    a, am = z / cap, m / cap
    t_m = xp.tanh(am)
    direct = cap * xp.tanh(a) - cap * t_m
    # one sign, compared by sign: a * am underflows to 0 for a, am near 1e-200
    same = xp.logical_and(xp.sign(a) * xp.sign(am) > 0, xp.logical_and(xp.isfinite(a), xp.isfinite(am)))
    # For a, b of one sign (|a| = A, |b| = B, z <= m): tanh a - tanh b = sinh(a - b) / (cosh a cosh b)
    #   = 2 e^{-2 min(A, B)} expm1(-2 |a - b|) / ((1 + e^{-2A}) (1 + e^{-2B})),
    # every exponent <= 0 so nothing overflows, and |a - b| comes from z - m, not from two rounded quotients.
    big_a, big_b = xp.abs(a), xp.abs(am)
    lo = xp.where(same, xp.minimum(big_a, big_b), 0.0)
    gap = xp.where(same, xp.abs(z - m) / cap, 0.0)
    den = (1.0 + xp.exp(-2.0 * xp.where(same, big_a, 0.0))) * (1.0 + xp.exp(-2.0 * xp.where(same, big_b, 0.0)))
    stable = cap * (2.0 * xp.exp(-2.0 * lo) * xp.expm1(-2.0 * gap) / den)  # cap last: 2 cap overflows near the max
    d = xp.where(z == -_INF, -_INF, xp.where(same, stable, direct))
    top = xp.where(m == -_INF, -_INF, cap * t_m)
    cosh_a = xp.cosh(a)
    return d, top, 1.0 / (cosh_a * cosh_a)


# ------------------------------------------------------------------------------- elementwise, overflow-free
def softplus(xp: Namespace, z: Array) -> Array:
    r""":math:`\log(1 + e^z) = \max(z, 0) + \operatorname{log1p}(e^{-|z|})`: never overflows, exact at ``±inf``."""
    return xp.maximum(z, 0.0) + xp.log1p(xp.exp(-xp.abs(z)))


def sigmoid(xp: Namespace, z: Array) -> Array:
    r""":math:`\sigma(z)` as :math:`1/(1 + e^{-z})` for :math:`z \ge 0` and :math:`e^z/(1 + e^z)` below."""
    e = xp.exp(-xp.abs(z))  # in (0, 1]: never overflows
    return xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def dsigmoid(xp: Namespace, z: Array) -> Array:
    r""":math:`\sigma'(z) = \sigma(z)\sigma(-z) = e^{-|z|}/(1 + e^{-|z|})^2`, with no cancellation in either tail."""
    e = xp.exp(-xp.abs(z))
    return e / ((1.0 + e) * (1.0 + e))

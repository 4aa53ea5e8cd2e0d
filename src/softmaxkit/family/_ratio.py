r"""Mappings of the form :math:`p_i = f(o_i) / \sum_j f(o_j)` for a positive polynomial :math:`f`, written once.

The Taylor softmax (:math:`f = \sum_{k \le n} o^k / k!`, :mod:`softmaxkit.family.taylor`) and the spherical
softmax (:math:`f = o^2 + \varepsilon`, :mod:`softmaxkit.family.spherical`) differ only in :math:`f`. Everything
else is here: masks and special values, the scaling that keeps large logits from overflowing, the log form,
the derivatives and the :math:`-\log p_y` loss with its gradient.

Scaling
-------
:math:`f` has even degree :math:`n` and grows like :math:`o^n`: :math:`1 + o + o^2/2` overflows float64 for
:math:`|o| \approx 10^{154}` and float32 for :math:`|o| \approx 10^{19}`. Each entry is therefore evaluated with
its own power-of-two scale :math:`s_i = 2^{e_i} \ge |o_i|` (:math:`e_i = 0` for :math:`|o_i| \le 1`), as

.. math:: g_i = \frac{f(o_i)}{s_i^n} = \sum_k a_k\, u_i^k c_i^{\,n-k}, \qquad u_i = o_i / s_i \in [-1, 1],
          \quad c_i = 1 / s_i ,

a homogeneous polynomial in :math:`(u_i, c_i)` whose terms are all at most :math:`|a_k|` (no overflow), and
whose value is bounded below (no underflow; see each module). Dividing by a power of two is exact, so this
costs no accuracy: for :math:`|o_i| \le 1` it *is* the textbook formula. With :math:`e = \max_i e_i`,

.. math:: p_i = \frac{w_i}{\sum_j w_j}, \quad w_i = g_i\, 2^{\,n(e_i - e)}, \qquad
          \log p_i = \log g_i + n (e_i - e) \log 2 - \log \textstyle\sum_j w_j ,

where :math:`2^{n(e_i - e)} \le 1` underflows only for a probability that underflows anyway, and the log form
never does: ``log_taylor_softmax([1e300, 1])`` is finite. For the largest entry, when its probability is at
least 1/2, :math:`\log p_i = -\operatorname{log1p}(\sum_{j \ne i} w_j / w_i)` keeps full relative accuracy as
:math:`p_i \to 1` (the device of Blanchard, Higham & Higham 2021 for log-softmax); the loss :math:`-\log p_y`
uses it at the target.

Derivatives
-----------
.. math:: \frac{\partial p_i}{\partial o_j} = \frac{f'(o_j)}{F} (\delta_{ij} - p_i), \qquad F = \sum_k f(o_k),

that is :math:`J = \operatorname{diag}(q) - p\, q^\top` with :math:`q_j = f'(o_j) / F` (for softmax
:math:`f' = f` and :math:`q = p`). Unlike softmax's, this Jacobian is not symmetric, so the JVP
:math:`q \odot v - p \langle q, v\rangle` and the VJP :math:`q \odot (g - \langle p, g\rangle)` differ. For the
loss, :math:`\partial(-\log p_y)/\partial o_j = q_j - \delta_{jy}\, f'(o_y)/f(o_y)`.

Special values
--------------
``where=False`` entries get probability exactly 0, log-probability ``-inf`` and derivative exactly 0; a fully
masked row gets zeros (log form ``-inf``). ``-inf`` is *not* a mask: :math:`f(\pm\infty) = +\infty` for an
even-degree :math:`f`, and a row holding ``±inf`` or ``nan`` at an unmasked entry is ``nan`` (the ratio
:math:`\infty/\infty` has no value; we do not guess a limit). Other rows are unaffected.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import array_api_compat

from .. import _doc, _engine
from .._array import Array, DType, Namespace, cast, from_last, to_last
from .._loss import finish, prepare

_NAN = float("nan")
_INF = float("inf")
_LN2 = math.log(2.0)

Scaled = Callable[[Array, Array], Array]
"""``(u, c) -> sum_k a_k u^k c^(d - k)``: a polynomial of degree ``d`` at ``o = u / c``, divided by ``c^-d``."""


@dataclass(frozen=True)
class Polynomial:
    """The numerator :math:`f` of a ratio mapping, evaluated in scaled form (see the module notes)."""

    degree: int
    """:math:`n`, even."""
    value: Scaled
    """:math:`f(o) / s^n` from :math:`(u, c) = (o / s, 1 / s)`; must be > 0."""
    slope: Scaled
    """:math:`f'(o) / s^{n-1}` from the same :math:`(u, c)`."""


def horner(coefficients: Sequence[float]) -> Scaled:
    r"""The scaled polynomial :math:`\sum_k a_k u^k c^{d-k}` (``coefficients[k]`` is :math:`a_k`, :math:`d \ge 1`),
    by Horner's rule in :math:`u` with the powers of :math:`c` folded in."""
    *low, a_top = coefficients

    def evaluate(u: Array, c: Array) -> Array:
        acc = u * a_top + c * low[-1]
        c_pow = c
        for a in reversed(low[:-1]):
            c_pow = c_pow * c
            acc = acc * u + c_pow * a
        return acc

    return evaluate


# ---------------------------------------------------------------------------------------------- the rows
class Rows(NamedTuple):
    """A mapping's input, checked and laid out with the class axis last."""

    xp: Namespace
    z: Array  # compute dtype, class axis last (masked entries as given: they are never read)
    active: Array  # bool, class axis last: False where ``where`` is False
    axis: int  # the caller's axis, normalised
    out_dtype: DType


def rows(x: Any, axis: Any, where: Any) -> Rows:
    xp, z, mask, ax, out_dtype = _engine.entries(x, axis, where)
    z = to_last(xp, z, ax)
    active = xp.ones(z.shape, dtype=xp.bool, device=array_api_compat.device(z))
    if mask is not None:
        active = to_last(xp, mask, ax)
    return Rows(xp, z, active, ax, out_dtype)


def tangent(r: Rows, x: Any, v: Any, name: str) -> Array:
    """A tangent / cotangent with ``x``'s shape, in the compute dtype and layout, 0 at masked entries."""
    work = to_last(r.xp, _engine.cotangent(r.xp, x, v, name, r.z.dtype), r.axis)
    return r.xp.where(r.active, work, 0.0)


class Parts(NamedTuple):
    """The shared work of every function of a ratio mapping along the last axis."""

    g: Array  # f(o_i) / s_i^n, per-entry scale (1 at masked entries, never read)
    e: Array  # the exponents e_i of s_i = 2^e_i (0 at masked entries)
    u: Array  # o_i / s_i
    c: Array  # 1 / s_i
    top: Array  # max_i e_i, keepdims
    w: Array  # f(o_i) / 2^(n top): the row-scaled numerators, 0 at masked entries
    total: Array  # sum_i w_i, keepdims; 0 only for a fully masked row
    bad: Array  # keepdims: a nan or an infinity at an unmasked entry


def parts(poly: Polynomial, xp: Namespace, z: Array, active: Array) -> Parts:
    ok = xp.logical_and(active, xp.isfinite(z))
    bad = xp.any(xp.logical_and(active, xp.logical_not(xp.isfinite(z))), axis=-1, keepdims=True)
    zs = xp.where(ok, z, 0.0)
    a = xp.abs(zs)
    big = a > 1.0
    e = xp.where(big, xp.ceil(xp.log2(xp.where(big, a, 1.0))), 0.0)
    # o * 2^-e as (o / 4) * 2^(2 - e): 2^-e itself is subnormal for the largest floats, and JAX flushes
    # subnormals to zero on CPU; both factors here are normal and exact.
    u = xp.where(big, (zs * 0.25) * 2.0 ** (2.0 - e), zs)
    c = 2.0**-e
    g = xp.where(ok, poly.value(u, c), 1.0)
    top = xp.max(e, axis=-1, keepdims=True)
    w = xp.where(ok, g * 2.0 ** (poly.degree * (e - top)), 0.0)
    total = xp.sum(w, axis=-1, keepdims=True)
    return Parts(g, e, u, c, top, w, total, bad)


def _safe(xp: Namespace, total: Array) -> Array:
    return xp.where(total > 0, total, 1.0)


def neg_log_at(poly: Polynomial, xp: Namespace, pt: Parts, pick: Array) -> Array:
    r""":math:`-\log p_i` at the one entry per row where ``pick`` is True (keepdims).

    :math:`\operatorname{log1p}(\sum_{j \ne i} w_j / w_i)` when :math:`p_i \ge 1/2` (accurate as
    :math:`p_i \to 1`), else the difference of logs with the scales' exponents taken out exactly.
    """
    w_i = xp.sum(xp.where(pick, pt.w, 0.0), axis=-1, keepdims=True)
    rest = xp.sum(xp.where(pick, 0.0, pt.w), axis=-1, keepdims=True)
    g_i = xp.sum(xp.where(pick, pt.g, 0.0), axis=-1, keepdims=True)
    e_i = xp.sum(xp.where(pick, pt.e, 0.0), axis=-1, keepdims=True)
    near_one = xp.logical_and(w_i >= rest, w_i > 0)
    small = xp.log1p(rest / xp.where(near_one, w_i, 1.0))
    far = xp.log(_safe(xp, pt.total)) - xp.log(g_i) + (poly.degree * _LN2) * (pt.top - e_i)
    return xp.where(near_one, small, far)


def probabilities(xp: Namespace, pt: Parts) -> Array:
    return xp.where(pt.bad, _NAN, pt.w / _safe(xp, pt.total))


def log_probabilities(poly: Polynomial, xp: Namespace, pt: Parts, active: Array) -> Array:
    top = xp.argmax(pt.w, axis=-1, keepdims=True)
    is_top = xp.arange(pt.w.shape[-1], device=array_api_compat.device(pt.w)) == top
    log_g = xp.log(pt.g) + (poly.degree * _LN2) * (pt.e - pt.top) - xp.log(_safe(xp, pt.total))
    lp = xp.where(is_top, -neg_log_at(poly, xp, pt, is_top), log_g)
    return xp.where(pt.bad, _NAN, xp.where(active, lp, -_INF))


def slopes(poly: Polynomial, xp: Namespace, pt: Parts, active: Array) -> tuple[Array, Array]:
    r""":math:`q_j = f'(o_j) / F` (0 at masked entries) and :math:`r_j = f'(o_j) / f(o_j)`."""
    gp = poly.slope(pt.u, pt.c)
    n = poly.degree
    q = xp.where(active, (gp / _safe(xp, pt.total)) * 2.0 ** ((n - 1) * pt.e - n * pt.top), 0.0)
    return q, (gp / pt.g) * pt.c


# ---------------------------------------------------------------------------------------- public bodies
def mapping(poly: Polynomial, x: Any, axis: Any, where: Any, *, log: bool) -> Array:
    """The probabilities (or their logs) of ``x`` along ``axis``."""
    r = rows(x, axis, where)
    xp = r.xp
    if r.z.shape[-1] == 0:
        return cast(xp, from_last(xp, r.z, r.axis), r.out_dtype)
    pt = parts(poly, xp, r.z, r.active)
    out = log_probabilities(poly, xp, pt, r.active) if log else probabilities(xp, pt)
    return cast(xp, from_last(xp, out, r.axis), r.out_dtype)


def product(poly: Polynomial, x: Any, v: Any, name: str, axis: Any, where: Any, *, transpose: bool) -> Array:
    r"""``J v`` (``transpose=False``) or ``v^T J`` with :math:`J = \operatorname{diag}(q) - p q^\top`."""
    r = rows(x, axis, where)
    xp = r.xp
    vz = tangent(r, x, v, name)
    if r.z.shape[-1] == 0:
        return cast(xp, from_last(xp, r.z, r.axis), r.out_dtype)
    pt = parts(poly, xp, r.z, r.active)
    p = pt.w / _safe(xp, pt.total)
    q, _ = slopes(poly, xp, pt, r.active)
    if transpose:  # (v^T J)_j = q_j (v_j - <p, v>)
        out = q * (vz - xp.sum(p * vz, axis=-1, keepdims=True))
    else:  # (J v)_i = q_i v_i - p_i <q, v>
        out = q * vz - p * xp.sum(q * vz, axis=-1, keepdims=True)
    return cast(xp, from_last(xp, _engine.nan_rows(xp, pt.bad, out), r.axis), r.out_dtype)


def log_product(poly: Polynomial, x: Any, v: Any, name: str, axis: Any, where: Any, *, transpose: bool) -> Array:
    r"""``J v`` (``transpose=False``) or ``v^T J`` of the *log* mapping, :math:`J_{ij} = \delta_{ij} r_i - q_j`
    with :math:`r_i = f'(o_i)/f(o_i)` (:math:`\partial \log p_i / \partial o_j`, finite where :math:`p`
    underflows); 0 at masked entries."""
    r = rows(x, axis, where)
    xp = r.xp
    vz = tangent(r, x, v, name)
    if r.z.shape[-1] == 0:
        return cast(xp, from_last(xp, r.z, r.axis), r.out_dtype)
    pt = parts(poly, xp, r.z, r.active)
    q, ratio = slopes(poly, xp, pt, r.active)
    if transpose:  # (v^T J)_j = r_j v_j - q_j sum_i v_i
        out = ratio * vz - q * xp.sum(vz, axis=-1, keepdims=True)
    else:  # (J v)_i = r_i v_i - <q, v>
        out = ratio * vz - xp.sum(q * vz, axis=-1, keepdims=True)
    out = _engine.nan_rows(xp, pt.bad, xp.where(r.active, out, 0.0))
    return cast(xp, from_last(xp, out, r.axis), r.out_dtype)


def jacobian(poly: Polynomial, x: Any, axis: Any, where: Any) -> Array:
    r""":math:`J_{ij} = \delta_{ij} q_i - p_i q_j` per row, shape ``batch + (K, K)``."""
    r = rows(x, axis, where)
    xp, z = r.xp, r.z
    n = z.shape[-1]
    dev = array_api_compat.device(z)
    if n == 0:
        return cast(xp, xp.zeros((*z.shape, 0), dtype=z.dtype, device=dev), r.out_dtype)
    pt = parts(poly, xp, z, r.active)
    p = probabilities(xp, pt)
    q, _ = slopes(poly, xp, pt, r.active)
    q = xp.where(pt.bad, _NAN, q)
    eye = xp.eye(n, dtype=z.dtype, device=dev)
    jac = eye * xp.expand_dims(q, axis=-1) - xp.expand_dims(p, axis=-1) * xp.expand_dims(q, axis=-2)
    return cast(xp, jac, r.out_dtype)


def loss(
    poly: Polynomial,
    logits: Any,
    target: Any,
    *,
    axis: Any,
    weight: Any,
    ignore_index: Any,
    reduction: Any,
    want_grad: bool,
) -> tuple[Array, Array | None]:
    r""":math:`-\log p_y` per row and its gradient :math:`q - e_y\, f'(o_y)/f(o_y)`, reduced by ``_loss.finish``."""
    t = prepare(logits, target, axis=axis, weight=weight, ignore_index=ignore_index, reduction=reduction)
    xp, z = t.xp, t.z
    if z.shape[-1] == 0:  # no classes: every row is ignored (prepare checked the labels)
        row = xp.zeros(tuple(z.shape[:-1]), dtype=z.dtype, device=array_api_compat.device(z))
        return finish(t, row, xp.zeros_like(z) if want_grad else None)
    active = xp.ones(z.shape, dtype=xp.bool, device=array_api_compat.device(z))
    pt = parts(poly, xp, z, active)
    row = xp.squeeze(xp.where(pt.bad, _NAN, neg_log_at(poly, xp, pt, t.onehot)), axis=-1)
    if not want_grad:
        return finish(t, row, None)
    q, ratio = slopes(poly, xp, pt, active)
    r_y = xp.sum(xp.where(t.onehot, ratio, 0.0), axis=-1, keepdims=True)
    grad_row = xp.where(pt.bad, _NAN, q - xp.where(t.onehot, r_y, 0.0))
    return finish(t, row, grad_row)


# ------------------------------------------------------------------------------------------- docstrings
TABLES = {
    "mapping": """
    ==============================  ============================================
    row                             result
    ==============================  ============================================
    ``where`` False at an entry     exactly 0 there
    all masked                      all zeros
    ``-inf`` entry                  not a mask: see ``±inf``
    contains ``±inf``               ``nan`` for that row (inf/inf)
    contains ``nan``                ``nan`` for that row only
    finite, however large           finite, accurate (power-of-two row scale)
    empty axis                      empty result
    float16 / bfloat16              computed in float32, returned as is
    ==============================  ============================================
""",
    "log": """
    ==============================  ============================================
    row                             result
    ==============================  ============================================
    ``where`` False at an entry     ``-inf`` there
    all masked                      all ``-inf``
    contains ``±inf``               ``nan`` for that row
    contains ``nan``                ``nan`` for that row only
    finite, however large           finite (even where the probability underflows)
    empty axis                      empty result
    float16 / bfloat16              computed in float32, returned as is
    ==============================  ============================================
""",
    "product": """
    ==============================  ====================================
    row                             result
    ==============================  ====================================
    ``where`` False at an entry     exactly 0 there (its input ignored)
    all masked                      zeros
    contains ``±inf`` or ``nan``    ``nan`` for that row only
    empty axis                      empty result
    ==============================  ====================================
""",
    "jacobian": """
    ==============================  ====================================
    row                             result
    ==============================  ====================================
    ``where`` False at an entry     zero row and column
    all masked                      zero matrix
    contains ``±inf`` or ``nan``    ``nan`` matrix for that row
    empty axis                      shape ``batch + (0, 0)``
    ==============================  ====================================
""",
    "loss": """
    ======================================  ==============================================
    case                                    loss (gradient)
    ======================================  ==============================================
    all ignored / zero weight, ``mean``     0 (zeros), as :func:`softmaxkit.cross_entropy`
    empty batch                             0 for mean/sum, empty for none
    row with ``nan`` or ``±inf``            ``nan`` for that row (its gradient row nan)
    ignored row holding ``nan``             0 (zeros): ignored rows are never read
    finite logits, however large            finite loss, accurate (scaled evaluation)
    float16 / bfloat16 logits               computed in float32, returned as is
    ======================================  ==============================================
""",
}

F = TypeVar("F", bound=Callable[..., Any])


def special_values(table: str) -> Callable[[F], F]:
    """Put ``TABLES[table]`` where the docstring says ``{special_values}``."""
    return _doc.special_values(TABLES[table])

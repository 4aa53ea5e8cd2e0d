r"""Softplus, then standard normalisation: :math:`\operatorname{softplus}(o_i) / \sum_j \operatorname{softplus}(o_j)`.

:func:`softplus_normalize` makes any real logits positive first, with
:math:`f(o) = \operatorname{softplus}(o) = \log(1 + e^o)`, and normalises:

.. math:: p_i = \frac{f(o_i)}{\sum_j f(o_j)}, \qquad
          \frac{\partial p_i}{\partial o_j} = \frac{f'(o_j)\,(\delta_{ij} - p_i)}{\sum_k f(o_k)}, \qquad
          f' = \sigma .

Softplus is smooth and never exactly 0 (unlike ReLU, whose zeros give :math:`\log 0 = -\infty` in the
log-loss and a zero gradient that never recovers), so :func:`softplus_normalize_cross_entropy` stays finite and
every logit keeps a gradient. This is the layer the registry names "normalize". It is the "standard
normalisation" member of the family studied by de Brébisson & Vincent, *An exploration of softmax alternatives
belonging to the spherical loss family* (ICLR 2016, arXiv:1511.05042).

Its weakness is the seeds' point. For large logits :math:`\operatorname{softplus}(o) \approx o`, so the output
becomes blind to scale: the ferret/cat logits ``[10, 20]`` give ``[1/3, 2/3]`` just like ``[1, 2]`` would
under plain normalisation, where softmax turns the larger, crisper evidence into confidence
(``softmax([10, 20]) = [4.5e-5, 0.99995]``). To push :math:`p_y` to 1, the other logits must be driven far
negative (where :math:`\operatorname{softplus}(o) \approx e^o`), not merely below the target's.

Numerics
--------
:math:`\operatorname{softplus}(o) = \max(o, 0) + \operatorname{log1p}(e^{-|o|})` never overflows. When every
logit of a row is negative, :math:`e^{m}` (:math:`m` the row maximum) is factored out of the numerator and the
denominator, :math:`\operatorname{softplus}(o) = e^{o}\, r(o)` with :math:`r(o) = \operatorname{log1p}(e^o)/e^o
\in [\log 2, 1]`, so a row of logits below :math:`-745` is still a distribution (close to softmax there) and
not :math:`0/0`; the log form uses :math:`\log \operatorname{softplus}(o) = o + \log r(o)` for :math:`o < 0`.
When the maximum exceeds the square root of the largest float, it is divided out instead, so that the sum of
the softplus values cannot overflow: every finite input gives a finite distribution.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import array_api_compat

from .. import _backend, _doc, _engine, _loss
from .._array import Array, DType, Namespace, cast, from_last, quiet

__all__ = [
    "log_softplus_normalize",
    "softplus_normalize",
    "softplus_normalize_cross_entropy",
    "softplus_normalize_cross_entropy_value_and_grad",
    "softplus_normalize_jacobian",
    "softplus_normalize_jvp",
    "softplus_normalize_vjp",
]

_INF = float("inf")
_NAN = float("nan")


# -------------------------------------------------------------------------- softplus_normalize (any logits)
class _Soft(NamedTuple):
    """The shared work of the softplus-normalisation functions, class axis last (keepdims for row values)."""

    p: Array  # probabilities
    log_f: Array  # log of softplus(z) / scale, the scale e^m (every entry negative), m (m huge) or 1
    log_total: Array  # log of sum_j softplus(z_j) / scale; 0 for rows with every entry -inf
    q: Array  # sigma(z_j) / sum_k softplus(z_k): the common factor of every derivative
    u: Array  # e^{min(z, 0)}
    r: Array  # softplus(z) / e^z for z < 0 (in [log 2, 1]); 1 where e^z underflows
    bad: Array  # rows with a nan or a +inf: nan results


def _soft(xp: Namespace, z: Array) -> _Soft:
    m = xp.max(z, axis=-1, keepdims=True)
    scaled = xp.logical_and(m < 0, m > -_INF)  # every entry negative: factor e^m out of f and its sum
    m0 = xp.where(scaled, m, 0.0)
    # a maximum beyond sqrt(largest float) is divided out, so that the sum of K softplus cannot overflow
    big = xp.logical_and(m > math.sqrt(float(xp.finfo(z.dtype).max)), m < _INF)
    # (m / 2^8, not m: XLA divides as a product with the reciprocal, and 1/m is subnormal near float32's max,
    # flushed to 0 on CPU, which made the row 0/0; 2^8/m is a normal number and f stays <= 2^8)
    mb = xp.where(big, m * 2.0**-8, 1.0)
    u = xp.exp(xp.minimum(z, 0.0))
    r = xp.where(u == 0, 1.0, xp.log1p(u) / xp.where(u == 0, 1.0, u))  # no 0/0 formed (jax.debug_nans)
    e = xp.exp(xp.where(scaled, z - m0, 0.0))
    f = xp.where(scaled, e * r, _engine.softplus(xp, z) / mb)
    total = xp.sum(f, axis=-1, keepdims=True)  # >= log 2 / mb unless every entry is -inf (then 0)
    safe = xp.where(m == -_INF, 1.0, total)
    log_f = xp.where(z < 0, ((z - m0) + xp.log(r)) - xp.log(mb), xp.log(f))
    sig = xp.where(scaled, e / (1.0 + u), _engine.sigmoid(xp, z) / mb)
    bad = xp.any(xp.logical_or(xp.isnan(z), z == _INF), axis=-1, keepdims=True)
    return _Soft(f / safe, log_f, xp.log(safe), sig / safe, u, r, bad)


_SOFT_TABLE = """
    ==============================  ====================================
    row                             result
    ==============================  ====================================
    ``-inf`` or masked entry        {masked}
    all ``-inf`` / all masked       {all_masked}
    every logit below ``-745``      a distribution (close to softmax), not 0/0
    logits near the largest float   a distribution, not inf/inf
    contains ``nan``                ``nan`` for that row only
    contains ``+inf``               ``nan`` for that row (inf/inf)
    empty axis                      empty result
    float16 / bfloat16              computed in float32, returned as is
    ==============================  ====================================
"""


def _soft_result(xp: Namespace, r: Array, st: _Soft, axis: int, dtype: DType) -> Array:
    return cast(xp, from_last(xp, _engine.nan_rows(xp, st.bad, r), axis), dtype)


@_backend.routed
@quiet
def softplus_normalize(x: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    r"""Standard normalisation as an output layer: softplus makes the logits positive, then divide by the sum.

    .. math:: p_i = \frac{\operatorname{softplus}(x_i)}{\sum_j \operatorname{softplus}(x_j)},
              \qquad \operatorname{softplus}(t) = \log(1 + e^t)

    Scale-blind for large logits, where :math:`\operatorname{softplus}(t) \approx t` (module notes; de
    Brébisson & Vincent 2016): ``[10, 20]`` gives about ``[1/3, 2/3]``.

    Parameters
    ----------
    x : array_like
        Real logits; float16/bfloat16 are computed in float32 and returned in their own dtype, integers
        promote to the default floating dtype.
    axis : int
        The axis that holds the classes.
    where : array of bool, optional
        Broadcastable to ``x``. Entries where it is False are left out: probability exactly 0.

    Returns
    -------
    array
        Same shape, array type and (floating) dtype as ``x``; each row sums to one.

    Raises
    ------
    TypeError
        ``x`` boolean or complex; ``where`` not boolean.
    ValueError
        ``axis`` out of range; ``where`` does not broadcast.
    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(np.round(softplus_normalize(np.array([10.0, 20.0])), 4))  # softmax: [0.0000454, 0.9999546]
    [0.3333 0.6667]
    >>> print(softplus_normalize(np.array([-1000.0, -1001.0])))  # tiny logits, still a distribution
    [0.73105858 0.26894142]
    """
    xp, z, ax, out_dtype = _engine.rows(x, axis, where)
    if z.shape[-1] == 0:
        return cast(xp, from_last(xp, z, ax), out_dtype)
    st = _soft(xp, z)
    return _soft_result(xp, st.p, st, ax, out_dtype)


@_backend.routed
@quiet
def log_softplus_normalize(x: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    r"""Logarithm of :func:`softplus_normalize`, accurate where the probabilities underflow.

    .. math:: \log p_i = \log \operatorname{softplus}(x_i) - \log \sum_j \operatorname{softplus}(x_j),

    with :math:`\log \operatorname{softplus}(t) = t + \log\bigl(\operatorname{log1p}(e^t)/e^t\bigr)` for
    :math:`t < 0` (no underflow) and the row maximum factored out of both terms when every logit is negative.

    Parameters
    ----------
    x : array_like
        Real logits, as for :func:`softplus_normalize`.
    axis, where
        As for :func:`softplus_normalize`; masked entries get ``-inf``.

    Returns
    -------
    array
        Same shape, array type and (floating) dtype as ``x``; every entry is ``<= 0``.

    Raises
    ------
    TypeError, ValueError
        As :func:`softplus_normalize`.
    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(log_softplus_normalize(np.array([0.0, -800.0])))  # log p_2 = -800 - log(log 2)
    [   0.         -799.63348708]
    """
    xp, z, ax, out_dtype = _engine.rows(x, axis, where)
    if z.shape[-1] == 0:
        return cast(xp, from_last(xp, z, ax), out_dtype)
    st = _soft(xp, z)
    return _soft_result(xp, st.log_f - st.log_total, st, ax, out_dtype)


def _soft_product(x: Any, v: Any, name: str, axis: Any, where: Any, vjp: bool) -> Array:
    rows = _engine.rows(x, axis, where, v)
    xp, z = rows.xp, rows.z
    vz = _engine.tangent(rows, v, name, x)
    if z.shape[-1] == 0:
        return cast(xp, from_last(xp, z, rows.axis), rows.out_dtype)
    st = _soft(xp, z)
    masked = z == -_INF
    if vjp:  # q_j (g_j - <g, p>)
        inner = xp.sum(xp.where(masked, 0.0, st.p * vz), axis=-1, keepdims=True)
        out = st.q * (vz - inner)
    else:  # q_i v_i - p_i <q, v>
        qv = xp.where(masked, 0.0, st.q * vz)
        out = qv - st.p * xp.sum(qv, axis=-1, keepdims=True)
    return _soft_result(xp, xp.where(masked, 0.0, out), st, rows.axis, rows.out_dtype)


def _log_slope(xp: Namespace, z: Array, st: _Soft) -> Array:
    r""":math:`\sigma(z)/\operatorname{softplus}(z)`, the derivative of :math:`\log\operatorname{softplus}(z)`:
    :math:`1/((1 + e^z) r(z))` for :math:`z < 0`, where both would underflow (no 0/0 formed, even discarded)."""
    neg = z < 0
    zp = xp.where(neg, 1.0, z)
    return xp.where(neg, 1.0 / ((1.0 + st.u) * st.r), _engine.sigmoid(xp, zp) / _engine.softplus(xp, zp))


def _log_soft_product(x: Any, v: Any, name: str, axis: Any, where: Any, vjp: bool) -> Array:
    rows = _engine.rows(x, axis, where, v)
    xp, z = rows.xp, rows.z
    vz = _engine.tangent(rows, v, name, x)
    if z.shape[-1] == 0:
        return cast(xp, from_last(xp, z, rows.axis), rows.out_dtype)
    st = _soft(xp, z)
    masked = z == -_INF
    vz = xp.where(masked, 0.0, vz)
    slope = _log_slope(xp, z, st)
    if vjp:  # slope_j g_j - q_j sum_i g_i
        out = slope * vz - st.q * xp.sum(vz, axis=-1, keepdims=True)
    else:  # slope_i v_i - <q, v>
        out = slope * vz - xp.sum(st.q * vz, axis=-1, keepdims=True)
    return _soft_result(xp, xp.where(masked, 0.0, out), st, rows.axis, rows.out_dtype)


@quiet
def log_softplus_normalize_jvp(x: Array, v: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    r"""Jacobian-vector product of :func:`log_softplus_normalize`,
    :math:`\sigma(x_i) v_i / \operatorname{softplus}(x_i) - \langle q, v\rangle` with
    :math:`q_j = \sigma(x_j)/\sum_k \operatorname{softplus}(x_k)`; finite where the probabilities underflow, 0
    at masked entries. For the framework fronts' autodiff; not exported."""
    return _log_soft_product(x, v, "v", axis, where, vjp=False)


@quiet
def log_softplus_normalize_vjp(x: Array, g: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    r"""Vector-Jacobian product of :func:`log_softplus_normalize` (see :func:`log_softplus_normalize_jvp`).
    For the framework fronts' autodiff; not exported."""
    return _log_soft_product(x, g, "g", axis, where, vjp=True)


@quiet
def softplus_normalize_jvp(x: Array, v: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    r"""Jacobian-vector product of :func:`softplus_normalize`.

    .. math:: (J v)_i = q_i v_i - p_i \langle q, v \rangle, \qquad
              q_j = \frac{\sigma(x_j)}{\sum_k \operatorname{softplus}(x_k)}, \qquad
              J_{ij} = (\delta_{ij} - p_i)\, q_j

    Parameters
    ----------
    x : array_like
        Logits, as for :func:`softplus_normalize`.
    v : array_like
        Tangent, same shape as ``x``; its masked entries are ignored.
    axis, where
        As for :func:`softplus_normalize`.

    Returns
    -------
    array
        Same shape as ``x``; each row sums to zero.

    Raises
    ------
    ValueError
        ``v``'s shape differs from ``x``'s; and as :func:`softplus_normalize`.
    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(softplus_normalize_jvp(np.array([0.0, 0.0]), np.array([1.0, 0.0])))  # sigma(0) / (4 log 2)
    [ 0.18033688 -0.18033688]
    """
    return _soft_product(x, v, "v", axis, where, vjp=False)


@quiet
def softplus_normalize_vjp(x: Array, g: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    r"""Vector-Jacobian product of :func:`softplus_normalize`: the gradient of :math:`\langle g, p \rangle`.

    .. math:: (g^\top J)_j = q_j \bigl(g_j - \langle g, p \rangle\bigr), \qquad
              q_j = \frac{\sigma(x_j)}{\sum_k \operatorname{softplus}(x_k)}

    Parameters
    ----------
    x : array_like
        Logits, as for :func:`softplus_normalize`.
    g : array_like
        Cotangent, same shape as ``x``; its masked entries are ignored.
    axis, where
        As for :func:`softplus_normalize`.

    Returns
    -------
    array
        Same shape as ``x``.

    Raises
    ------
    ValueError
        ``g``'s shape differs from ``x``'s; and as :func:`softplus_normalize`.
    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(softplus_normalize_vjp(np.array([0.0, -np.inf]), np.array([1.0, 5.0])))  # p = [1, 0]
    [0. 0.]
    """
    return _soft_product(x, g, "g", axis, where, vjp=True)


@quiet
def softplus_normalize_jacobian(x: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    r"""The Jacobian of :func:`softplus_normalize` per row: :math:`J_{ij} = (\delta_{ij} - p_i)\, q_j`.

    With :math:`q_j = \sigma(x_j) / \sum_k \operatorname{softplus}(x_k)`: the general rule
    :math:`\partial p_i / \partial x_j = f'(x_j)(\delta_{ij} - p_i)/\sum_k f(x_k)` for :math:`p = f/\sum f`.

    Parameters
    ----------
    x : array_like
        Logits, as for :func:`softplus_normalize`.
    axis, where
        As for :func:`softplus_normalize`.

    Returns
    -------
    array
        Shape ``batch + (K, K)`` where ``batch`` is ``x``'s shape without ``axis`` and ``K = x.shape[axis]``;
        ``J[..., i, j]`` is :math:`\partial p_i / \partial x_j`. Masked rows and columns are 0.

    Raises
    ------
    TypeError, ValueError
        As :func:`softplus_normalize`.

    Special values
    --------------
    As :func:`softplus_normalize_jvp`, for the row's matrix; an empty axis gives shape ``batch + (0, 0)``.

    Examples
    --------
    >>> import numpy as np
    >>> print(softplus_normalize_jacobian(np.array([0.0, 0.0])))
    [[ 0.18033688 -0.18033688]
     [-0.18033688  0.18033688]]
    """
    xp, z, _, out_dtype = _engine.rows(x, axis, where)
    n = z.shape[-1]
    if n == 0:
        return cast(xp, xp.zeros((*z.shape, 0), dtype=z.dtype, device=array_api_compat.device(z)), out_dtype)
    st = _soft(xp, z)
    eye = xp.eye(n, dtype=z.dtype, device=array_api_compat.device(z))
    jac = (eye - xp.expand_dims(st.p, axis=-1)) * xp.expand_dims(st.q, axis=-2)
    return cast(xp, xp.where(xp.expand_dims(st.bad, axis=-1), _NAN, jac), out_dtype)


_LOSS_TABLE = """
    ======================================  ==============================================
    case                                    loss (gradient)
    ======================================  ==============================================
    target's logit is ``-inf``              ``inf`` (gradient :math:`q - e_y`)
    other logit ``-inf``                    probability 0 there (gradient 0 there)
    every logit below ``-745``              finite (the row maximum is factored out)
    logits near the largest float           finite (the row maximum is divided out)
    row with ``nan`` or ``+inf``            ``nan`` for that row (its gradient row nan)
    ignored row holding ``nan``             0 (zeros): ignored rows are never read
    all ignored / zero weight, ``mean``     0 (zeros); torch gives nan
    empty batch                             0 for mean/sum, empty for none
    float16 / bfloat16 logits               computed in float32, returned as is
    ======================================  ==============================================
"""


def _soft_cross_entropy(
    logits: Any, target: Any, *, axis: Any, weight: Any, ignore_index: Any, reduction: Any, want_grad: bool
) -> tuple[Array, Array | None]:
    t = _loss.prepare(logits, target, axis=axis, weight=weight, ignore_index=ignore_index, reduction=reduction)
    xp, z = t.xp, t.z
    if z.shape[-1] == 0:  # no classes: every row is ignored (prepare checked the labels)
        row = xp.zeros(z.shape[:-1], dtype=z.dtype, device=array_api_compat.device(z))
        return _loss.finish(t, row, xp.zeros_like(z) if want_grad else None)
    st = _soft(xp, z)
    log_f_y = xp.sum(xp.where(t.onehot, st.log_f, 0.0), axis=-1)
    row = xp.where(log_f_y == -_INF, _INF, xp.squeeze(st.log_total, axis=-1) - log_f_y)
    bad = xp.squeeze(st.bad, axis=-1)
    row = xp.where(bad, _NAN, row)
    if not want_grad:
        return _loss.finish(t, row, None)
    # d(-log p_y)/dz = q - e_y sigma(z_y) / softplus(z_y)
    grad = st.q - xp.where(t.onehot, _log_slope(xp, z, st), 0.0)
    return _loss.finish(t, row, xp.where(st.bad, _NAN, grad))


@_backend.routed
@quiet
def softplus_normalize_cross_entropy(
    logits: Array,
    target: Array,
    /,
    *,
    axis: int = -1,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Array:
    r"""Cross-entropy of :func:`softplus_normalize`: :math:`-\log p_y`, from the logits.

    .. math:: \ell(o, y) = \log \sum_j \operatorname{softplus}(o_j) - \log \operatorname{softplus}(o_y)

    Finite for every finite logit (softplus is never 0), and computed in the log domain (module notes).
    ``weight``, ``ignore_index`` and ``reduction`` follow :func:`softmaxkit.cross_entropy`.

    Parameters
    ----------
    logits : array_like
        Real logits; ``axis`` holds the ``C`` classes. float16/bfloat16 are computed in float32.
    target : array_like
        Integer class indices with the logits' shape without ``axis``: values in ``[0, C)`` or
        ``ignore_index``.
    axis : int
        The class axis.
    weight : array_like, optional
        Per-class weights, shape ``(C,)``, finite and ``>= 0``; a row weighs ``weight[target]``.
    ignore_index : int
        Rows whose target equals it are skipped entirely.
    reduction : {"mean", "sum", "none"}
        ``mean`` divides by the total weight of the rows not ignored.

    Returns
    -------
    array
        0-d for ``mean``/``sum``, else the per-row losses; the logits' array type and (floating) dtype.

    Raises
    ------
    TypeError
        ``target`` not integer; ``logits`` boolean or complex.
    ValueError
        A class index outside ``[0, C)`` (named with its position); shapes that do not match; an unknown
        ``reduction``; a negative, nan or inf ``weight``.
    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> z = np.array([[10.0, 20.0]])  # cat logit 20: softmax would say 0.99995
    >>> print(round(float(softplus_normalize_cross_entropy(z, np.array([1]))), 4))  # -log(2/3), about
    0.4055
    """
    loss, _ = _soft_cross_entropy(
        logits, target, axis=axis, weight=weight, ignore_index=ignore_index, reduction=reduction, want_grad=False
    )
    return loss


@_backend.routed
@quiet
def softplus_normalize_cross_entropy_value_and_grad(
    logits: Array,
    target: Array,
    /,
    *,
    axis: int = -1,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> tuple[Array, Array]:
    r""":func:`softplus_normalize_cross_entropy` and its gradient with respect to ``logits``, in closed form.

    .. math:: \frac{\partial \ell}{\partial o_j} = \frac{\sigma(o_j)}{\sum_k \operatorname{softplus}(o_k)}
              - [j = y]\, \frac{\sigma(o_y)}{\operatorname{softplus}(o_y)}

    times the row's weight and divided by the ``mean`` denominator.

    Parameters
    ----------
    logits, target, axis, weight, ignore_index, reduction
        As for :func:`softplus_normalize_cross_entropy`.

    Returns
    -------
    loss : array
        Exactly :func:`softplus_normalize_cross_entropy`'s value.
    grad : array
        :math:`\partial\, \text{loss} / \partial\, \text{logits}`, the logits' shape and dtype. With
        ``reduction="none"`` it is the gradient of the summed losses, that is each row's own gradient.

    Raises
    ------
    TypeError, ValueError
        As :func:`softplus_normalize_cross_entropy`.
    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> loss, grad = softplus_normalize_cross_entropy_value_and_grad(np.array([[0.0, 0.0]]), np.array([1]))
    >>> print(round(float(loss), 6), grad)  # log 2, and sigma(0)/(2 log 2) - [0, sigma(0)/log 2]
    0.693147 [[ 0.36067376 -0.36067376]]
    """
    loss, grad = _soft_cross_entropy(
        logits, target, axis=axis, weight=weight, ignore_index=ignore_index, reduction=reduction, want_grad=True
    )
    assert grad is not None
    return loss, grad


_doc.special_values(_SOFT_TABLE, masked="exactly 0", all_masked="all zeros")(softplus_normalize)
_doc.special_values(_SOFT_TABLE, masked="``-inf``", all_masked="all ``-inf``")(log_softplus_normalize)
for _f in (softplus_normalize_jvp, softplus_normalize_vjp):
    _doc.special_values(_SOFT_TABLE, masked="exactly 0", all_masked="zeros")(_f)
for _loss_f in (softplus_normalize_cross_entropy, softplus_normalize_cross_entropy_value_and_grad):
    _doc.special_values(_LOSS_TABLE)(_loss_f)

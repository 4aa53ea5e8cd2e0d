r"""The logistic sigmoid :math:`\sigma(x) = 1/(1 + e^{-x})`: one independent yes/no probability per class.

Why one-vs-rest sigmoids do not make classes compete
----------------------------------------------------
Softmax is the multi-class generalisation of the sigmoid: for two classes,
:math:`\operatorname{softmax}([x, 0])_0 = \sigma(x)`. Used one-vs-rest, on every class at once, sigmoids do not
compete: :math:`\partial \sigma(o_i) / \partial o_j = 0` for :math:`i \ne j`, so raising one class's
probability leaves the others unchanged (the Jacobian is diagonal, where softmax's has the negative
off-diagonal :math:`-p_i p_j`), and the outputs need not sum to one: ``sigmoid([5, 5])`` says "both, almost
surely". That suits multi-label problems (a photo of a cat *and* a dog) and is the wrong model for a single
label among many, where the evidence for one class must be evidence against the others. This is the seeds'
comparison point, after de Brébisson & Vincent, *An exploration of softmax alternatives belonging to the
spherical loss family* (ICLR 2016, arXiv:1511.05042).

The loss
--------
:func:`sigmoid_cross_entropy` is the one-vs-rest binary cross-entropy of class-index targets: the target class
is a "yes" and every other class a "no", and the row loss sums the :math:`C` binary log-losses,

.. math:: \ell(o, y) = \sum_{c=1}^{C} \bigl[\operatorname{softplus}(o_c) - o_c\,[c = y]\bigr]
          = \operatorname{softplus}(-o_y) + \sum_{c \ne y} \operatorname{softplus}(o_c),

with :math:`\operatorname{softplus}(t) = \log(1 + e^t) = -\log \sigma(-t)`, evaluated as
:math:`\max(t, 0) + \operatorname{log1p}(e^{-|t|})` so that nothing overflows and nothing cancels. Every class
is pushed on its own, up at the target and down elsewhere, with gradient :math:`\sigma(o) - e_y`.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

from .. import _backend, _doc, _engine, _loss
from .._array import Array, cast, quiet, to_last

__all__ = [
    "log_sigmoid",
    "sigmoid",
    "sigmoid_cross_entropy",
    "sigmoid_cross_entropy_value_and_grad",
    "sigmoid_jacobian",
    "sigmoid_jvp",
    "sigmoid_vjp",
]

_INF = float("inf")
_NAN = float("nan")


# ------------------------------------------------------------------------------------------------ helpers
_MAPPING_TABLE = """
    ==============================  ====================================
    entry                           result
    ==============================  ====================================
    masked (``where`` False)        {masked}
    ``-inf`` / ``+inf``             {infinities}
    ``nan``                         ``nan`` at that entry only (classes are independent)
    empty array                     empty result
    float16 / bfloat16              computed in float32, returned as is
    ==============================  ====================================
"""


# ------------------------------------------------------------------------------------------------ mappings
@_backend.routed
@quiet
def sigmoid(x: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    r"""Logistic sigmoid, elementwise, accurate in both tails: one-vs-rest class probabilities.

    .. math:: \sigma(x) = \frac{1}{1 + e^{-x}} = \frac{e^{x}}{1 + e^{x}}

    The first form is used for :math:`x \ge 0` and the second for :math:`x < 0`, so that ``exp`` never
    overflows and :math:`\sigma(-745)` is the subnormal :math:`e^{-745}`, not 0 by cancellation.
    Its derivative is :math:`\sigma(x)(1 - \sigma(x))` (:func:`~softmaxkit.family.sigmoid_jvp`). Unlike
    softmax the outputs are not normalised: each lies in :math:`[0, 1]` and a row need not sum to one (module
    notes; de Brébisson & Vincent 2016).

    Parameters
    ----------
    x : array_like
        Real values; float16/bfloat16 are computed in float32 and returned in their own dtype, integers
        promote to the default floating dtype.
    axis : int
        The class axis. The map is elementwise and does not depend on it; it is accepted so that every output
        layer has one signature, and checked to be in range when ``x`` has dimensions.
    where : array of bool, optional
        Broadcastable to ``x``. Entries where it is False are left out: probability exactly 0.

    Returns
    -------
    array
        Same shape, array type and (floating) dtype as ``x``, in ``[0, 1]``.

    Raises
    ------
    TypeError
        ``x`` boolean or complex; ``where`` not boolean.
    ValueError
        ``axis`` out of range; ``where`` does not broadcast to ``x``.
    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(sigmoid(np.array([-np.inf, 0.0, np.inf])))
    [0.  0.5 1. ]
    >>> float(sigmoid(np.array(-745.0)))
    5e-324
    >>> print(sigmoid(np.array([5.0, 5.0])))  # both classes likely: one-vs-rest does not compete
    [0.99330715 0.99330715]
    """
    xp, z, keep, _, out_dtype = _engine.entries(x, axis, where, scalar=True)
    p = _engine.sigmoid(xp, z)
    if keep is not None:
        p = xp.where(keep, p, 0.0)
    return cast(xp, p, out_dtype)


@_backend.routed
@quiet
def log_sigmoid(x: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    r"""Logarithm of :func:`sigmoid`, computed directly: :math:`\log \sigma(x) = -\operatorname{softplus}(-x)`.

    .. math:: \log \sigma(x) = \min(x, 0) - \operatorname{log1p}\bigl(e^{-|x|}\bigr)

    Exact where :math:`\sigma` underflows (:math:`\log\sigma(-800) = -800`) and where it rounds to 1
    (:math:`\log\sigma(40) = -e^{-40}`, not 0).

    Parameters
    ----------
    x : array_like
        Real values, as for :func:`sigmoid`.
    axis, where
        As for :func:`sigmoid`; masked entries get ``-inf``.

    Returns
    -------
    array
        Same shape, array type and (floating) dtype as ``x``; every entry is ``<= 0``.

    Raises
    ------
    TypeError, ValueError
        As :func:`sigmoid`.
    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(log_sigmoid(np.array([-800.0, 0.0, 40.0])))
    [-8.00000000e+02 -6.93147181e-01 -4.24835426e-18]
    """
    xp, z, keep, _, out_dtype = _engine.entries(x, axis, where, scalar=True)
    out = xp.minimum(z, 0.0) - xp.log1p(xp.exp(-xp.abs(z)))
    if keep is not None:
        out = xp.where(keep, out, -_INF)
    return cast(xp, out, out_dtype)


# ------------------------------------------------------------------------------------------------ derivatives
def _diagonal_product(x: Any, v: Any, name: str, axis: Any, where: Any, log: bool = False) -> Array:
    xp, z, keep, _, out_dtype = _engine.entries(x, axis, where, scalar=True)
    vz = _engine.cotangent(xp, x, v, name, z.dtype)
    d = _engine.sigmoid(xp, -z) if log else _engine.dsigmoid(xp, z)  # (log sigma)' = sigma(-x)
    off = d == 0 if keep is None else xp.logical_or(d == 0, xp.logical_not(keep))
    return cast(xp, xp.where(off, 0.0, d * vz), out_dtype)


_DERIVATIVE_TABLE = """
    ==============================  ====================================
    entry                           result
    ==============================  ====================================
    masked / ``±inf``               exactly 0 (whatever the tangent holds)
    ``nan``                         ``nan`` at that entry only
    empty array                     empty result
    ==============================  ====================================
"""


@quiet
def sigmoid_jvp(x: Array, v: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    r"""Jacobian-vector product of :func:`sigmoid`: :math:`\sigma'(x) \odot v`.

    .. math:: J v = \sigma(x) \odot \sigma(-x) \odot v

    The Jacobian is diagonal: a class's probability depends on its own logit only (module notes).
    :math:`\sigma(x)\sigma(-x)` is evaluated as :math:`e^{-|x|}/(1 + e^{-|x|})^2`, accurate in both tails.

    Parameters
    ----------
    x : array_like
        Logits, as for :func:`sigmoid`.
    v : array_like
        Tangent, same shape as ``x``.
    axis, where
        As for :func:`sigmoid`.

    Returns
    -------
    array
        Same shape as ``x``.

    Raises
    ------
    ValueError
        ``v``'s shape differs from ``x``'s; and as :func:`sigmoid`.
    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(sigmoid_jvp(np.array([0.0, 0.0]), np.array([1.0, 2.0])))
    [0.25 0.5 ]
    """
    return _diagonal_product(x, v, "v", axis, where)


@quiet
def sigmoid_vjp(x: Array, g: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    r"""Vector-Jacobian product of :func:`sigmoid`: the gradient of :math:`\langle g, \sigma(x)\rangle`.

    .. math:: g^\top J = \sigma(x) \odot \sigma(-x) \odot g

    (the Jacobian is diagonal, hence symmetric: the same product as :func:`sigmoid_jvp`).

    Parameters
    ----------
    x : array_like
        Logits, as for :func:`sigmoid`.
    g : array_like
        Cotangent, same shape as ``x``.
    axis, where
        As for :func:`sigmoid`.

    Returns
    -------
    array
        Same shape as ``x``.

    Raises
    ------
    ValueError
        ``g``'s shape differs from ``x``'s; and as :func:`sigmoid`.
    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(sigmoid_vjp(np.array([0.0, -np.inf]), np.array([1.0, 5.0])))
    [0.25 0.  ]
    """
    return _diagonal_product(x, g, "g", axis, where)


@quiet
def log_sigmoid_jvp(x: Array, v: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    r"""Jacobian-vector product of :func:`log_sigmoid`, :math:`\sigma(-x) \odot v` (its Jacobian is diagonal, so
    this is also the vector-Jacobian product); 0 at masked entries and at ``+inf``. For the framework fronts'
    autodiff; not exported."""
    return _diagonal_product(x, v, "v", axis, where, log=True)


@quiet
def sigmoid_jacobian(x: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    r"""The Jacobian of :func:`sigmoid` along ``axis``, per row: :math:`\operatorname{diag}(\sigma(x)\sigma(-x))`.

    :math:`J_{ij} = \delta_{ij}\,\sigma(x_i)(1 - \sigma(x_i))`: every off-diagonal entry is 0, because
    one-vs-rest classes do not compete (compare :func:`softmaxkit.softmax.softmax_jacobian`, whose off-diagonal
    :math:`-p_i p_j` moves probability between classes).

    Parameters
    ----------
    x : array_like
        Logits with at least one dimension, as for :func:`sigmoid`.
    axis : int
        The class axis.
    where
        As for :func:`sigmoid`.

    Returns
    -------
    array
        Shape ``batch + (K, K)`` where ``batch`` is ``x``'s shape without ``axis`` and ``K = x.shape[axis]``;
        ``J[..., i, j]`` is :math:`\partial \sigma(x_i) / \partial x_j`.

    Raises
    ------
    TypeError, ValueError
        As :func:`sigmoid`; a 0-d ``x`` has no class axis.

    Special values
    --------------
    ==============================  ====================================
    entry                           result
    ==============================  ====================================
    masked / ``±inf``               zero diagonal entry
    ``nan``                         ``nan`` diagonal entry only
    empty axis                      shape ``batch + (0, 0)``
    ==============================  ====================================

    Examples
    --------
    >>> import numpy as np
    >>> print(sigmoid_jacobian(np.array([0.0, np.log(3.0)])))
    [[0.25   0.    ]
     [0.     0.1875]]
    """
    xp, z, keep, ax, out_dtype = _engine.entries(x, axis, where)
    d = _engine.dsigmoid(xp, z)
    if keep is not None:
        d = xp.where(keep, d, 0.0)
    d = to_last(xp, d, ax)
    n = d.shape[-1]
    eye = xp.eye(n, dtype=d.dtype, device=array_api_compat.device(d))
    col = xp.expand_dims(d, axis=-1)
    # where, not multiplication: a nan stays on its diagonal entry instead of filling its row (0 * nan)
    return cast(xp, xp.where(eye == 1.0, col, 0.0), out_dtype)


# ------------------------------------------------------------------------------------------------------ loss
_LOSS_TABLE = """
    ======================================  ==============================================
    case                                    loss (gradient)
    ======================================  ==============================================
    target's logit ``+inf``                 that class contributes 0 (gradient 0)
    target's logit ``-inf``                 ``inf`` (gradient -1 there)
    other class's logit ``-inf``            contributes 0 (gradient 0): a mask
    other class's logit ``+inf``            ``inf`` (gradient 1 there)
    row with ``nan`` (not ignored)          ``nan`` for that row (its gradient row nan)
    ignored row holding ``nan``             0 (zeros): ignored rows are never read
    all ignored / zero weight, ``mean``     0 (zeros); torch gives nan
    empty batch                             0 for mean/sum, empty for none
    float16 / bfloat16 logits               computed in float32, returned as is
    ======================================  ==============================================
"""


def _sigmoid_cross_entropy(
    logits: Any, target: Any, *, axis: Any, weight: Any, ignore_index: Any, reduction: Any, want_grad: bool
) -> tuple[Array, Array | None]:
    t = _loss.prepare(logits, target, axis=axis, weight=weight, ignore_index=ignore_index, reduction=reduction)
    xp, z = t.xp, t.z
    flipped = xp.where(t.onehot, -z, z)  # softplus(o) - o = softplus(-o) at the target: no inf - inf
    row = cast(xp, xp.sum(cast(xp, _engine.softplus(xp, flipped), t.acc), axis=-1), z.dtype)
    if not want_grad:
        return _loss.finish(t, row, None)
    # sigma(o) - 1 = -sigma(-o) at the target, without cancellation when sigma(o) is close to 1
    s = _engine.sigmoid(xp, flipped)
    grad = xp.where(t.onehot, -s, s)
    bad = xp.any(xp.isnan(z), axis=-1, keepdims=True)
    return _loss.finish(t, row, xp.where(bad, _NAN, grad))


@_backend.routed
@quiet
def sigmoid_cross_entropy(
    logits: Array,
    target: Array,
    /,
    *,
    axis: int = -1,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Array:
    r"""One-vs-rest binary cross-entropy from logits, for class-index targets.

    .. math:: \ell(o, y) = \sum_{c=1}^{C} \bigl[\operatorname{softplus}(o_c) - o_c\,[c = y]\bigr]
              = -\log \sigma(o_y) - \sum_{c \ne y} \log\bigl(1 - \sigma(o_c)\bigr)

    Each class is a separate yes/no problem: the loss sums the :math:`C` binary log-losses, "yes" at the
    target and "no" elsewhere (module notes). It equals ``torch.nn.functional.binary_cross_entropy_with_logits``
    on the one-hot target summed over classes, computed as :math:`\operatorname{softplus}(\mp o_c)` with
    :math:`\operatorname{softplus}(t) = \max(t, 0) + \operatorname{log1p}(e^{-|t|})`, so that it never
    overflows and the target's term keeps its accuracy when :math:`o_y` is large. The per-class terms are
    added in float64 for float32 logits.

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
        ``mean`` divides by the total weight of the rows not ignored, as :func:`softmaxkit.cross_entropy`.

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
        ``reduction``; a negative or nan ``weight``.
    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> z = np.array([[2.0, -1.0, 0.0]])
    >>> print(round(float(sigmoid_cross_entropy(z, np.array([0]))), 6))  # softplus(-2) + softplus(-1) + log 2
    1.133337
    """
    loss, _ = _sigmoid_cross_entropy(
        logits, target, axis=axis, weight=weight, ignore_index=ignore_index, reduction=reduction, want_grad=False
    )
    return loss


@_backend.routed
@quiet
def sigmoid_cross_entropy_value_and_grad(
    logits: Array,
    target: Array,
    /,
    *,
    axis: int = -1,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> tuple[Array, Array]:
    r""":func:`sigmoid_cross_entropy` and its gradient with respect to ``logits``, in closed form.

    .. math:: \frac{\partial \ell}{\partial o_c} = \sigma(o_c) - [c = y]

    each class on its own (at the target, :math:`-\sigma(-o_y)`, computed without cancellation), times the
    row's weight and divided by the ``mean`` denominator.

    Parameters
    ----------
    logits, target, axis, weight, ignore_index, reduction
        As for :func:`sigmoid_cross_entropy`.

    Returns
    -------
    loss : array
        Exactly :func:`sigmoid_cross_entropy`'s value.
    grad : array
        :math:`\partial\, \text{loss} / \partial\, \text{logits}`, the logits' shape and dtype. With
        ``reduction="none"`` it is the gradient of the summed losses, that is each row's own gradient.

    Raises
    ------
    TypeError, ValueError
        As :func:`sigmoid_cross_entropy`.
    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> loss, grad = sigmoid_cross_entropy_value_and_grad(np.array([[0.0, 0.0]]), np.array([1]))
    >>> print(round(float(loss), 6), grad)  # 2 log 2, and sigma(o) - e_y
    1.386294 [[ 0.5 -0.5]]
    """
    loss, grad = _sigmoid_cross_entropy(
        logits, target, axis=axis, weight=weight, ignore_index=ignore_index, reduction=reduction, want_grad=True
    )
    assert grad is not None
    return loss, grad


_doc.special_values(_MAPPING_TABLE, masked="exactly 0", infinities="0 / 1")(sigmoid)
_doc.special_values(_MAPPING_TABLE, masked="``-inf``", infinities="``-inf`` / 0")(log_sigmoid)
for _f in (sigmoid_jvp, sigmoid_vjp):
    _doc.special_values(_DERIVATIVE_TABLE)(_f)
for _loss_f in (sigmoid_cross_entropy, sigmoid_cross_entropy_value_and_grad):
    _doc.special_values(_LOSS_TABLE)(_loss_f)

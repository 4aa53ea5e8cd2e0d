r"""The Taylor softmax: the exponential of softmax replaced by its Taylor polynomial of even order :math:`n`.

.. math:: p_i = \frac{f_n(o_i)}{\sum_j f_n(o_j)}, \qquad f_n(o) = \sum_{k=0}^{n} \frac{o^k}{k!}

(de Brébisson & Vincent, *An Exploration of Softmax Alternatives Belonging to the Spherical Loss Family*,
ICLR 2016, arXiv:1511.05042). Any positive function of the logits, normalised, gives a distribution; the
truncated exponential is positive for every real :math:`o` exactly when :math:`n` is even (an odd-degree
polynomial has a real root). For :math:`n = 2`,

.. math:: f_2(o) = 1 + o + \tfrac{o^2}{2} = \tfrac{(o + 1)^2 + 1}{2} \ge \tfrac12 ,

with its minimum at :math:`o = -1`. Unlike the exponential it is not monotone: :math:`f_2` decreases for
:math:`o < -1`, so a very negative logit gains probability again, and Taylor softmax is not shift invariant.
:math:`f_n` grows polynomially, so the probabilities saturate polynomially rather than exponentially in the
logits. In the authors' experiments the log-Taylor softmax loss beat log-softmax on MNIST and CIFAR-10, but
not on language modelling; Banerjee et al. (2020, arXiv:2011.11538) tried orders up to 10.

The spherical family
--------------------
For :math:`n = 2` the loss of the true class :math:`c` among :math:`K` is

.. math:: -\log p_c = \log\Bigl(K + \sum_j o_j + \tfrac12 \sum_j o_j^2\Bigr) - \log f_2(o_c) ,

a function of :math:`\sum_j o_j`, :math:`\sum_j o_j^2` and :math:`o_c` only: a member of the *spherical
family* of Vincent, de Brébisson & Bouthillier (2015), whose gradient with respect to the output layer can be
computed without forming the :math:`K` outputs, in a time independent of :math:`K`. Higher orders need higher
power sums and leave the family.

Numerics
--------
:math:`f_n(o)` overflows for :math:`|o|` near :math:`10^{154}` (float64, :math:`n = 2`) or :math:`10^{19}`
(float32). Each entry is evaluated as :math:`f_n(o)/s^n` with an exact power-of-two scale
:math:`s = 2^{\lceil \log_2 |o| \rceil}` (1 for :math:`|o| \le 1`), so every finite input gives a finite,
accurate result; the log form subtracts the exponents exactly and stays finite where the probability
underflows (see :mod:`softmaxkit.family._ratio`). For :math:`n = 2` the numerator is computed as
:math:`((u + c)^2 + c^2)/2` (:math:`u = o/s`, :math:`c = 1/s`), a sum of squares: positive in floating point
too, and :math:`\ge 1/2` for :math:`|o| \le 1`, and accurate to a few ulps. Higher orders use Horner's rule;
for negative logits their alternating terms cancel, and the relative error of :math:`f_n` grows with the
condition number :math:`\sum_k |o|^k/k! \,/\, f_n(o)`: measured worst cases (against mpmath, in ulps of the
dtype, float32 and float64 alike) are about 5 for :math:`n = 4`, 13 for 6, 40 for 8, 100 for 10 and
:math:`2 \cdot 10^4` for 20 (near :math:`o = -6.6`; :math:`2 \cdot 10^{-3}` relative in float32, so prefer
float64 for high orders). ``order`` is at most 20: the scaled numerator is at least about :math:`2^{-n}/n!`,
which for larger :math:`n` nears float32's smallest normal number.

A ``-inf`` logit is not a mask (:math:`f_n(-\infty) = +\infty`): rows holding ``±inf`` are ``nan``. Leave
entries out with ``where=``.

Derivatives: :math:`f_n' = f_{n-1}`, so :math:`\partial p_i / \partial o_j = f_{n-1}(o_j)(\delta_{ij} - p_i)
/ \sum_k f_n(o_k)`.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from .. import _backend, _validate
from .._array import Array, quiet
from . import _ratio

__all__ = [
    "log_taylor_softmax",
    "taylor_cross_entropy",
    "taylor_cross_entropy_value_and_grad",
    "taylor_softmax",
    "taylor_softmax_jacobian",
    "taylor_softmax_jvp",
    "taylor_softmax_vjp",
]

MAX_ORDER = 20


def _order(value: Any) -> int:
    n = _validate.integer(value, "order")
    if n < 2 or n > MAX_ORDER or n % 2:
        raise ValueError(
            f"order must be an even int in [2, {MAX_ORDER}] (an odd order makes the numerator negative "
            f"somewhere); got {value!r}"
        )
    return n


def _order_two_value(u: Array, c: Array) -> Array:
    """:math:`f_2(o)/s^2 = ((u + c)^2 + c^2)/2`: a sum of squares, so positive however it rounds."""
    a = u + c
    return (a * a + c * c) * 0.5


def _order_two_slope(u: Array, c: Array) -> Array:
    """:math:`f_2'(o)/s = f_1(o)/s = u + c`."""
    return u + c


@functools.cache
def _polynomial(order: int) -> _ratio.Polynomial:
    if order == 2:
        return _ratio.Polynomial(2, _order_two_value, _order_two_slope)
    inverse_factorials = [1.0 / math.factorial(k) for k in range(order + 1)]
    return _ratio.Polynomial(order, _ratio.horner(inverse_factorials), _ratio.horner(inverse_factorials[:-1]))


@_backend.routed
@quiet
@_ratio.special_values("mapping")
def taylor_softmax(x: Array, /, *, axis: int = -1, order: int = 2, where: Array | None = None) -> Array:
    r"""Taylor softmax along ``axis``: the normalised :math:`n`-th order Taylor polynomial of :math:`e^{o}`.

    .. math:: p_i = \frac{f_n(o_i)}{\sum_j f_n(o_j)}, \qquad f_n(o) = \sum_{k=0}^{n} \frac{o^k}{k!}

    (de Brébisson & Vincent 2016, arXiv:1511.05042). Each entry is evaluated with an exact power-of-two scale,
    so large logits neither overflow nor lose accuracy (module notes).

    Parameters
    ----------
    x : array_like
        Real logits (any array-API array, or a sequence). float16/bfloat16 are computed in float32 and
        returned in their own dtype; integers promote to the default floating dtype.
    axis : int
        The axis that holds the classes.
    order : int
        :math:`n`, even, in ``[2, 20]``; an even order keeps :math:`f_n > 0` (:math:`f_2 \ge 1/2`).
    where : array of bool, optional
        Broadcastable to ``x``. Entries where it is False are left out: probability exactly 0. (``-inf`` is
        not a mask here: :math:`f_n(-\infty) = +\infty`.)

    Returns
    -------
    array
        Same shape, array type and (floating) dtype as ``x``; each row sums to one.

    Raises
    ------
    TypeError
        ``x`` is boolean or complex; ``where`` is not boolean; ``axis`` or ``order`` is not an int.
    ValueError
        ``axis`` out of range; ``order`` odd, below 2 or above 20; ``where`` does not broadcast.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(taylor_softmax(np.array([0.0, 1.0, -1.0])))  # f = 1, 2.5, 0.5
    [0.25  0.625 0.125]
    >>> print(taylor_softmax(np.array([1e200, 0.0])))  # no overflow
    [1. 0.]
    """
    return _ratio.mapping(_polynomial(_order(order)), x, axis, where, log=False)


@_backend.routed
@quiet
@_ratio.special_values("log")
def log_taylor_softmax(x: Array, /, *, axis: int = -1, order: int = 2, where: Array | None = None) -> Array:
    r"""Logarithm of :func:`taylor_softmax`, computed directly: finite wherever the logits are.

    .. math:: \log p_i = \log f_n(o_i) - \log \sum_j f_n(o_j)

    evaluated with the power-of-two scales taken out exactly, and as
    :math:`-\operatorname{log1p}(\sum_{j \ne i} f_n(o_j)/f_n(o_i))` for an entry with :math:`p_i \ge 1/2`
    (accurate as :math:`p_i \to 1`). Its negative at the target is :func:`taylor_cross_entropy`, the
    "log-Taylor softmax" loss of de Brébisson & Vincent (2016).

    Parameters
    ----------
    x : array_like
        Real logits; float16/bfloat16 are computed in float32; integers promote to the default float.
    axis, order, where
        As for :func:`taylor_softmax`; masked entries get ``-inf``.

    Returns
    -------
    array
        Same shape, array type and (floating) dtype as ``x``; every entry is ``<= 0``.

    Raises
    ------
    TypeError, ValueError
        As :func:`taylor_softmax`.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(log_taylor_softmax(np.array([0.0, 1.0, -1.0])))
    [-1.38629436 -0.47000363 -2.07944154]
    >>> lp = log_taylor_softmax(np.array([1e200, 1.0]))  # p_1 = 2.5 / 5e399 = 5e-400 underflows; its log
    >>> print(round(float(lp[1]), 4))
    -919.4246
    """
    return _ratio.mapping(_polynomial(_order(order)), x, axis, where, log=True)


@quiet
@_ratio.special_values("product")
def taylor_softmax_jvp(x: Array, v: Array, /, *, axis: int = -1, order: int = 2, where: Array | None = None) -> Array:
    r"""Jacobian-vector product of :func:`taylor_softmax`: the change of :math:`p` along a change ``v`` of ``x``.

    .. math:: J v = q \odot v - p\, \langle q, v \rangle, \qquad q_j = \frac{f_{n-1}(o_j)}{\sum_k f_n(o_k)}

    since :math:`\partial p_i / \partial o_j = q_j (\delta_{ij} - p_i)` (:math:`f_n' = f_{n-1}`); :math:`O(K)`
    per row, without forming :math:`J`.

    Parameters
    ----------
    x : array_like
        Logits, as for :func:`taylor_softmax`.
    v : array_like
        Tangent, same shape as ``x``; ignored at masked entries.
    axis, order, where
        As for :func:`taylor_softmax`.

    Returns
    -------
    array
        Same shape as ``x``; each row sums to zero.

    Raises
    ------
    ValueError
        ``v``'s shape differs from ``x``'s; and as :func:`taylor_softmax`.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(taylor_softmax_jvp(np.array([0.0, 0.0]), np.array([1.0, 0.0])))  # q = 1/2, p = 1/2
    [ 0.25 -0.25]
    """
    return _ratio.product(_polynomial(_order(order)), x, v, "v", axis, where, transpose=False)


@quiet
@_ratio.special_values("product")
def taylor_softmax_vjp(x: Array, g: Array, /, *, axis: int = -1, order: int = 2, where: Array | None = None) -> Array:
    r"""Vector-Jacobian product of :func:`taylor_softmax`: the gradient of :math:`\langle g, p\rangle`.

    .. math:: g^\top J = q \odot \bigl(g - \langle p, g \rangle\bigr),
              \qquad q_j = \frac{f_{n-1}(o_j)}{\sum_k f_n(o_k)}

    :math:`J` is not symmetric (:math:`q \ne p`), so this is not :func:`taylor_softmax_jvp`.

    Parameters
    ----------
    x : array_like
        Logits, as for :func:`taylor_softmax`.
    g : array_like
        Cotangent (upstream gradient), same shape as ``x``; ignored at masked entries.
    axis, order, where
        As for :func:`taylor_softmax`.

    Returns
    -------
    array
        Same shape as ``x``.

    Raises
    ------
    ValueError
        ``g``'s shape differs from ``x``'s; and as :func:`taylor_softmax`.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(taylor_softmax_vjp(np.array([-1.0, 0.0]), np.array([1.0, 0.0])))  # f_1(-1) = 0: q_0 = 0
    [ 0.   -0.2222222]
    """
    return _ratio.product(_polynomial(_order(order)), x, g, "g", axis, where, transpose=True)


@quiet
@_ratio.special_values("jacobian")
def taylor_softmax_jacobian(x: Array, /, *, axis: int = -1, order: int = 2, where: Array | None = None) -> Array:
    r"""The full Jacobian of :func:`taylor_softmax` per row, :math:`J = \operatorname{diag}(q) - p\,q^\top`.

    .. math:: J_{ij} = \frac{\partial p_i}{\partial o_j} = q_j(\delta_{ij} - p_i),
              \qquad q_j = \frac{f_{n-1}(o_j)}{\sum_k f_n(o_k)}

    Each column sums to zero. Prefer :func:`taylor_softmax_jvp` / :func:`taylor_softmax_vjp` in code: they
    cost :math:`O(K)`, this :math:`O(K^2)`.

    Parameters
    ----------
    x : array_like
        Logits, as for :func:`taylor_softmax`.
    axis, order, where
        As for :func:`taylor_softmax`.

    Returns
    -------
    array
        Shape ``batch + (K, K)`` where ``batch`` is ``x``'s shape without ``axis``;
        ``J[..., i, j]`` is :math:`\partial p_i / \partial x_j`.

    Raises
    ------
    TypeError, ValueError
        As :func:`taylor_softmax`.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(taylor_softmax_jacobian(np.array([0.0, 0.0])))
    [[ 0.25 -0.25]
     [-0.25  0.25]]
    """
    return _ratio.jacobian(_polynomial(_order(order)), x, axis, where)


@_backend.routed
@quiet
def log_taylor_softmax_jvp(
    x: Array, v: Array, /, *, axis: int = -1, order: int = 2, where: Array | None = None
) -> Array:
    r"""Jacobian-vector product of :func:`log_taylor_softmax`, :math:`r \odot v - \langle q, v\rangle` with
    :math:`r_i = f_{n-1}(o_i)/f_n(o_i)` and :math:`q_j = f_{n-1}(o_j)/\sum_k f_n(o_k)`; finite where the
    probabilities underflow, 0 at masked entries. For the framework fronts' autodiff; not exported."""
    return _ratio.log_product(_polynomial(_order(order)), x, v, "v", axis, where, transpose=False)


@quiet
def log_taylor_softmax_vjp(
    x: Array, g: Array, /, *, axis: int = -1, order: int = 2, where: Array | None = None
) -> Array:
    r"""Vector-Jacobian product of :func:`log_taylor_softmax`, :math:`r \odot g - q \sum_i g_i` (see
    :func:`log_taylor_softmax_jvp`). For the framework fronts' autodiff; not exported."""
    return _ratio.log_product(_polynomial(_order(order)), x, g, "g", axis, where, transpose=True)


@quiet
@_ratio.special_values("loss")
def taylor_cross_entropy(
    logits: Array,
    target: Array,
    /,
    *,
    axis: int = -1,
    order: int = 2,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Array:
    r"""The log-Taylor softmax loss: :math:`-\log` of :func:`taylor_softmax` at the target class.

    .. math:: \ell = -\log p_c = \log \sum_j f_n(o_j) - \log f_n(o_c)

    (de Brébisson & Vincent 2016). For :math:`n = 2` it depends only on :math:`\sum_j o_j`,
    :math:`\sum_j o_j^2` and :math:`o_c`, :math:`\ell = \log(K + \sum_j o_j + \frac12 \sum_j o_j^2) -
    \log(1 + o_c + \frac12 o_c^2)`: a member of the spherical family (module notes). ``weight``,
    ``ignore_index`` and ``reduction`` behave exactly as in :func:`softmaxkit.cross_entropy`.

    Parameters
    ----------
    logits : array_like
        Real logits; ``axis`` holds the ``C`` classes. float16/bfloat16 are computed in float32.
    target : array_like
        Integer class indices with the logits' shape without ``axis``, in ``[0, C)`` or ``ignore_index``.
    axis : int
        The class axis.
    order : int
        :math:`n`, even, in ``[2, 20]``.
    weight : array_like, optional
        Per-class weights, shape ``(C,)``, finite and ``>= 0``.
    ignore_index : int
        Rows whose target equals it contribute nothing (loss, denominator, gradient).
    reduction : {"mean", "sum", "none"}
        ``mean`` divides by the total weight of the rows kept.

    Returns
    -------
    array
        0-d for ``mean``/``sum``, else the per-row losses; the logits' array type and (floating) dtype.

    Raises
    ------
    TypeError
        ``target`` not integer; ``logits`` boolean or complex; ``order`` not an int.
    ValueError
        A class index outside ``[0, C)``; shapes that do not match; an unknown ``reduction``; negative or
        nan or infinite ``weight``; a bad ``order``.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(round(float(taylor_cross_entropy(np.array([[0.0, 1.0, -1.0]]), np.array([1]))), 6))  # -log 0.625
    0.470004
    """
    value, _ = _ratio.loss(
        _polynomial(_order(order)),
        logits,
        target,
        axis=axis,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        want_grad=False,
    )
    return value


@_backend.routed
@quiet
@_ratio.special_values("loss")
def taylor_cross_entropy_value_and_grad(
    logits: Array,
    target: Array,
    /,
    *,
    axis: int = -1,
    order: int = 2,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> tuple[Array, Array]:
    r""":func:`taylor_cross_entropy` and its gradient with respect to ``logits``, in closed form.

    .. math:: \frac{\partial \ell}{\partial o_j} = \frac{f_{n-1}(o_j)}{\sum_k f_n(o_k)}
              - \delta_{jc} \frac{f_{n-1}(o_c)}{f_n(o_c)}

    per row, times the row's weight and divided by the ``mean`` denominator.

    Parameters
    ----------
    logits, target, axis, order, weight, ignore_index, reduction
        As for :func:`taylor_cross_entropy`.

    Returns
    -------
    loss : array
        Exactly :func:`taylor_cross_entropy`'s value.
    grad : array
        :math:`\partial\, \text{loss} / \partial\, \text{logits}`, the logits' shape and dtype; with
        ``reduction="none"``, the gradient of the summed losses.

    Raises
    ------
    TypeError, ValueError
        As :func:`taylor_cross_entropy`.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> loss, grad = taylor_cross_entropy_value_and_grad(np.array([[0.0, 0.0]]), np.array([1]))
    >>> print(round(float(loss), 6), grad)  # log 2; q = 1/2, f_1(0)/f_2(0) = 1
    0.693147 [[ 0.5 -0.5]]
    """
    value, grad = _ratio.loss(
        _polynomial(_order(order)),
        logits,
        target,
        axis=axis,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        want_grad=True,
    )
    assert grad is not None
    return value, grad

r"""The spherical softmax: squares instead of exponentials.

.. math:: p_i = \frac{o_i^2 + \varepsilon}{\sum_j (o_j^2 + \varepsilon)}

suggested by Vincent, de Brébisson & Bouthillier (*Efficient Exact Gradient Update for Training Deep Networks
with Very Large Sparse Targets*, NeurIPS 2015) and studied by de Brébisson & Vincent, *An Exploration
of Softmax Alternatives Belonging to the Spherical Loss Family*, ICLR 2016, arXiv:1511.05042. It is symmetric,
:math:`p(o) = p(-o)`, so the sign of a logit carries no information, and it is scale invariant up to
:math:`\varepsilon`: :math:`p(\lambda o) \to p(o)` for :math:`\varepsilon \ll \lambda^2 o^2`.

The spherical family
--------------------
The loss of the true class :math:`c` among :math:`K`,

.. math:: -\log p_c = \log\Bigl(\sum_j o_j^2 + K\varepsilon\Bigr) - \log\bigl(o_c^2 + \varepsilon\bigr),

depends on the outputs only through :math:`\sum_j o_j^2` and :math:`o_c`. Losses that depend only on
:math:`\sum_j o_j`, :math:`\sum_j o_j^2` and :math:`o_c` form the *spherical family* of Vincent et al. (2015),
for which the gradient with respect to the output layer's weights can be computed without forming the
:math:`K` outputs, in a time independent of :math:`K` (with a hidden layer of size :math:`d`, :math:`O(d^2)`
per example instead of :math:`O(Kd)`). That is the point of the mapping for very large :math:`K`.

Why :math:`\varepsilon`, and why ``1e-4``
------------------------------------------
Without :math:`\varepsilon` an all-zero row is :math:`0/0`, and a true class with :math:`o_c = 0` has
probability 0 and an infinite loss. :math:`\varepsilon > 0` makes the all-zero row uniform and floors every
probability at :math:`\varepsilon / (\sum_j o_j^2 + K\varepsilon)`; de Brébisson & Vincent note that the
spherical softmax needs such a constant for numerical stability (the Taylor softmax, positive by construction,
does not). Its size is a trade-off:

* it sets the scale below which the logits say nothing: entries with :math:`o_i^2 \lesssim \varepsilon`
  all look alike, so a large :math:`\varepsilon` dilutes the mapping towards the uniform distribution;
* a small one makes the loss steep at :math:`o_c = 0`: :math:`\partial(-\log(o_c^2 + \varepsilon))/\partial o_c`
  peaks at :math:`1/\sqrt\varepsilon` (at :math:`|o_c| = \sqrt\varepsilon`), and the loss there is
  :math:`\log(\sum_j o_j^2/\varepsilon + K)`.

``eps = 1e-4`` keeps logits of the usual size (order 1) a hundred times above the dilution scale
:math:`\sqrt\varepsilon = 0.01` (the mass moved towards uniform is :math:`\approx K\varepsilon/\sum_j o_j^2`,
about ``1e-4`` relative), bounds that gradient by 100 and the loss at :math:`o_c = 0` by
:math:`9.21 + \log(\sum_j o_j^2 + K\varepsilon)`, and is far above float32's resolution of :math:`o^2 \sim 1`
(``6e-8``), so it is not rounded away at the logits' usual scale. Pass ``eps`` to change it (any finite value
> 0); scale it with the square of your logits' typical size.

Numerics
--------
:math:`o^2` overflows for :math:`|o| > 1.3 \cdot 10^{154}` in float64 (:math:`1.8 \cdot 10^{19}` in float32).
Each entry is evaluated as :math:`(u^2 + \varepsilon c^2)` with :math:`u = o/s`, :math:`c = 1/s` and an exact
power-of-two scale :math:`s \ge |o|`, so every finite input gives a finite, accurate result (a few ulps: the
sum has no cancellation), and the log form stays finite where a probability underflows
(:mod:`softmaxkit.family._ratio`). ``±inf`` is not a mask (:math:`f(\pm\infty) = +\infty`): rows holding it are
``nan``; leave entries out with ``where=``.

Derivatives: :math:`\partial p_i / \partial o_j = 2 o_j (\delta_{ij} - p_i) / \sum_k (o_k^2 + \varepsilon)`.
"""

from __future__ import annotations

import functools
from typing import Any

from .. import _backend, _validate
from .._array import Array, quiet
from . import _ratio

__all__ = [
    "DEFAULT_EPS",
    "log_spherical_softmax",
    "spherical_cross_entropy",
    "spherical_cross_entropy_value_and_grad",
    "spherical_softmax",
    "spherical_softmax_jacobian",
    "spherical_softmax_jvp",
    "spherical_softmax_vjp",
]

DEFAULT_EPS = 1e-4
"""The default :math:`\\varepsilon` of every spherical function (module notes: why this value)."""


def _slope(u: Array, c: Array) -> Array:
    """:math:`f'(o)/s = 2o/s = 2u`."""
    return u * 2.0


@functools.lru_cache(maxsize=64)
def _polynomial(e: float) -> _ratio.Polynomial:
    def value(u: Array, c: Array) -> Array:
        """:math:`(o^2 + \\varepsilon)/s^2 = u^2 + \\varepsilon c^2`."""
        return u * u + (c * c) * e

    return _ratio.Polynomial(2, value, _slope)


def _poly(eps: Any) -> _ratio.Polynomial:
    return _polynomial(_validate.positive(eps, "eps"))


@_backend.routed
@quiet
@_ratio.special_values("mapping")
def spherical_softmax(x: Array, /, *, axis: int = -1, eps: float = DEFAULT_EPS, where: Array | None = None) -> Array:
    r"""Spherical softmax along ``axis``: squares, shifted by :math:`\varepsilon`, normalised.

    .. math:: p_i = \frac{o_i^2 + \varepsilon}{\sum_j (o_j^2 + \varepsilon)}

    (Vincent et al. 2015; de Brébisson & Vincent 2016, arXiv:1511.05042). See the module notes for the
    default :math:`\varepsilon = 10^{-4}` and the power-of-two scaling that keeps large logits accurate.

    Parameters
    ----------
    x : array_like
        Real logits (any array-API array, or a sequence). float16/bfloat16 are computed in float32 and
        returned in their own dtype; integers promote to the default floating dtype.
    axis : int
        The axis that holds the classes.
    eps : float
        :math:`\varepsilon`, finite and > 0: an all-zero row is uniform, and no probability is 0.
    where : array of bool, optional
        Broadcastable to ``x``. Entries where it is False are left out: probability exactly 0.

    Returns
    -------
    array
        Same shape, array type and (floating) dtype as ``x``; each row sums to one.

    Raises
    ------
    TypeError
        ``x`` is boolean or complex; ``where`` is not boolean; ``axis`` not an int; ``eps`` not a number.
    ValueError
        ``axis`` out of range; ``eps`` not a finite number > 0; ``where`` does not broadcast.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(spherical_softmax(np.array([1.0, -2.0, 0.0]), eps=1.0))  # (2, 5, 1) / 8
    [0.25  0.625 0.125]
    >>> print(spherical_softmax(np.zeros(4)))
    [0.25 0.25 0.25 0.25]
    """
    return _ratio.mapping(_poly(eps), x, axis, where, log=False)


@_backend.routed
@quiet
@_ratio.special_values("log")
def log_spherical_softmax(
    x: Array, /, *, axis: int = -1, eps: float = DEFAULT_EPS, where: Array | None = None
) -> Array:
    r"""Logarithm of :func:`spherical_softmax`, computed directly: finite wherever the logits are.

    .. math:: \log p_i = \log(o_i^2 + \varepsilon) - \log \sum_j (o_j^2 + \varepsilon)

    with the power-of-two scales taken out exactly, and as
    :math:`-\operatorname{log1p}(\sum_{j \ne i} (o_j^2 + \varepsilon)/(o_i^2 + \varepsilon))` for an entry with
    :math:`p_i \ge 1/2`. Its negative at the target is :func:`spherical_cross_entropy`.

    Parameters
    ----------
    x : array_like
        Real logits; float16/bfloat16 are computed in float32; integers promote to the default float.
    axis, eps, where
        As for :func:`spherical_softmax`; masked entries get ``-inf``.

    Returns
    -------
    array
        Same shape, array type and (floating) dtype as ``x``; every entry is ``<= 0``.

    Raises
    ------
    TypeError, ValueError
        As :func:`spherical_softmax`.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(log_spherical_softmax(np.array([3.0, 0.0, 1e200])))  # p = 9e-400 and 1e-404: finite logs
    [-918.83680151 -930.24437757   -0.        ]
    """
    return _ratio.mapping(_poly(eps), x, axis, where, log=True)


@quiet
@_ratio.special_values("product")
def spherical_softmax_jvp(
    x: Array, v: Array, /, *, axis: int = -1, eps: float = DEFAULT_EPS, where: Array | None = None
) -> Array:
    r"""Jacobian-vector product of :func:`spherical_softmax`.

    .. math:: J v = q \odot v - p\, \langle q, v \rangle, \qquad q_j = \frac{2 o_j}{\sum_k (o_k^2 + \varepsilon)}

    since :math:`\partial p_i / \partial o_j = q_j (\delta_{ij} - p_i)`; :math:`O(K)` per row.

    Parameters
    ----------
    x : array_like
        Logits, as for :func:`spherical_softmax`.
    v : array_like
        Tangent, same shape as ``x``; ignored at masked entries.
    axis, eps, where
        As for :func:`spherical_softmax`.

    Returns
    -------
    array
        Same shape as ``x``; each row sums to zero.

    Raises
    ------
    ValueError
        ``v``'s shape differs from ``x``'s; and as :func:`spherical_softmax`.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(spherical_softmax_jvp(np.array([1.0, 1.0]), np.array([1.0, 0.0]), eps=1.0))  # q = 1/2, p = 1/2
    [ 0.25 -0.25]
    """
    return _ratio.product(_poly(eps), x, v, "v", axis, where, transpose=False)


@quiet
@_ratio.special_values("product")
def spherical_softmax_vjp(
    x: Array, g: Array, /, *, axis: int = -1, eps: float = DEFAULT_EPS, where: Array | None = None
) -> Array:
    r"""Vector-Jacobian product of :func:`spherical_softmax`: the gradient of :math:`\langle g, p\rangle`.

    .. math:: g^\top J = q \odot \bigl(g - \langle p, g \rangle\bigr),
              \qquad q_j = \frac{2 o_j}{\sum_k (o_k^2 + \varepsilon)}

    Parameters
    ----------
    x : array_like
        Logits, as for :func:`spherical_softmax`.
    g : array_like
        Cotangent (upstream gradient), same shape as ``x``; ignored at masked entries.
    axis, eps, where
        As for :func:`spherical_softmax`.

    Returns
    -------
    array
        Same shape as ``x``.

    Raises
    ------
    ValueError
        ``g``'s shape differs from ``x``'s; and as :func:`spherical_softmax`.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(spherical_softmax_vjp(np.array([0.0, 2.0]), np.array([1.0, 0.0]), eps=1.0))  # q = (0, 2/3)
    [ 0.         -0.11111111]
    """
    return _ratio.product(_poly(eps), x, g, "g", axis, where, transpose=True)


@quiet
@_ratio.special_values("jacobian")
def spherical_softmax_jacobian(
    x: Array, /, *, axis: int = -1, eps: float = DEFAULT_EPS, where: Array | None = None
) -> Array:
    r"""The full Jacobian of :func:`spherical_softmax` per row, :math:`J = \operatorname{diag}(q) - p\,q^\top`.

    .. math:: J_{ij} = \frac{\partial p_i}{\partial o_j} = q_j(\delta_{ij} - p_i),
              \qquad q_j = \frac{2 o_j}{\sum_k (o_k^2 + \varepsilon)}

    Each column sums to zero; the column of a zero logit is zero (:math:`p` is flat in :math:`o_j` there).

    Parameters
    ----------
    x : array_like
        Logits, as for :func:`spherical_softmax`.
    axis, eps, where
        As for :func:`spherical_softmax`.

    Returns
    -------
    array
        Shape ``batch + (K, K)``; ``J[..., i, j]`` is :math:`\partial p_i / \partial x_j`.

    Raises
    ------
    TypeError, ValueError
        As :func:`spherical_softmax`.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(spherical_softmax_jacobian(np.array([1.0, -1.0]), eps=1.0))
    [[ 0.25  0.25]
     [-0.25 -0.25]]
    """
    return _ratio.jacobian(_poly(eps), x, axis, where)


@_backend.routed
@quiet
def log_spherical_softmax_jvp(
    x: Array, v: Array, /, *, axis: int = -1, eps: float = DEFAULT_EPS, where: Array | None = None
) -> Array:
    r"""Jacobian-vector product of :func:`log_spherical_softmax`, :math:`r \odot v - \langle q, v\rangle` with
    :math:`r_i = 2 o_i/(o_i^2 + \varepsilon)` and :math:`q_j = 2 o_j/\sum_k (o_k^2 + \varepsilon)`; finite where
    the probabilities underflow, 0 at masked entries. For the framework fronts' autodiff; not exported."""
    return _ratio.log_product(_poly(eps), x, v, "v", axis, where, transpose=False)


@quiet
def log_spherical_softmax_vjp(
    x: Array, g: Array, /, *, axis: int = -1, eps: float = DEFAULT_EPS, where: Array | None = None
) -> Array:
    r"""Vector-Jacobian product of :func:`log_spherical_softmax`, :math:`r \odot g - q \sum_i g_i` (see
    :func:`log_spherical_softmax_jvp`). For the framework fronts' autodiff; not exported."""
    return _ratio.log_product(_poly(eps), x, g, "g", axis, where, transpose=True)


@quiet
@_ratio.special_values("loss")
def spherical_cross_entropy(
    logits: Array,
    target: Array,
    /,
    *,
    axis: int = -1,
    eps: float = DEFAULT_EPS,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Array:
    r"""The log-spherical softmax loss: :math:`-\log` of :func:`spherical_softmax` at the target class.

    .. math:: \ell = -\log p_c = \log\Bigl(\sum_j o_j^2 + K\varepsilon\Bigr) - \log\bigl(o_c^2 + \varepsilon\bigr)

    It depends on the logits only through :math:`\sum_j o_j^2` and :math:`o_c`: a member of the spherical
    family of Vincent et al. (2015), whose output-layer gradient costs a time independent of the number of
    classes :math:`K` (de Brébisson & Vincent 2016, arXiv:1511.05042; module notes). With the default
    :math:`\varepsilon` a true class with :math:`o_c = 0` costs
    :math:`\log(10^4 \sum_j o_j^2 + K)`, finite. ``weight``, ``ignore_index`` and ``reduction`` behave exactly
    as in :func:`softmaxkit.cross_entropy`.

    Parameters
    ----------
    logits : array_like
        Real logits; ``axis`` holds the ``C`` classes. float16/bfloat16 are computed in float32.
    target : array_like
        Integer class indices with the logits' shape without ``axis``, in ``[0, C)`` or ``ignore_index``.
    axis : int
        The class axis.
    eps : float
        :math:`\varepsilon`, finite and > 0.
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
        ``target`` not integer; ``logits`` boolean or complex; ``eps`` not a number.
    ValueError
        A class index outside ``[0, C)``; shapes that do not match; an unknown ``reduction``; negative or
        nan or infinite ``weight``; ``eps`` not a finite number > 0.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> z = np.array([[3.0, 4.0, 0.0]])
    >>> print(round(float(spherical_cross_entropy(z, np.array([1]))), 6))  # log(25.0003 / 16.0001)
    0.446293
    """
    value, _ = _ratio.loss(
        _poly(eps),
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
def spherical_cross_entropy_value_and_grad(
    logits: Array,
    target: Array,
    /,
    *,
    axis: int = -1,
    eps: float = DEFAULT_EPS,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> tuple[Array, Array]:
    r""":func:`spherical_cross_entropy` and its gradient with respect to ``logits``, in closed form.

    .. math:: \frac{\partial \ell}{\partial o_j} = \frac{2 o_j}{\sum_k o_k^2 + K\varepsilon}
              - \delta_{jc} \frac{2 o_c}{o_c^2 + \varepsilon}

    per row, times the row's weight and divided by the ``mean`` denominator.

    Parameters
    ----------
    logits, target, axis, eps, weight, ignore_index, reduction
        As for :func:`spherical_cross_entropy`.

    Returns
    -------
    loss : array
        Exactly :func:`spherical_cross_entropy`'s value.
    grad : array
        :math:`\partial\, \text{loss} / \partial\, \text{logits}`, the logits' shape and dtype; with
        ``reduction="none"``, the gradient of the summed losses.

    Raises
    ------
    TypeError, ValueError
        As :func:`spherical_cross_entropy`.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> loss, grad = spherical_cross_entropy_value_and_grad(np.array([[1.0, 1.0]]), np.array([0]), eps=1.0)
    >>> print(round(float(loss), 6), grad)  # log 2; q = 1/2, 2 o_0 / (o_0^2 + 1) = 1
    0.693147 [[-0.5  0.5]]
    """
    value, grad = _ratio.loss(
        _poly(eps),
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

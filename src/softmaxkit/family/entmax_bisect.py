r"""α-entmax for any :math:`\alpha \ge 1`, with the threshold found by bisection.

.. math:: \alpha\text{-entmax}(z)_i = \bigl[(\alpha - 1) z_i - \tau\bigr]_+^{1/(\alpha - 1)},
          \qquad \textstyle\sum_i p_i = 1

(Peters, Niculae & Martins, ACL 2019). :math:`\alpha = 1` is softmax, :math:`\alpha = 2` sparsemax, and the
larger :math:`\alpha`, the sparser. The family's Jacobian, Fenchel–Young loss and special values are described in
:mod:`softmaxkit.family.sparsemax`; :mod:`softmaxkit.family.entmax` computes :math:`\alpha = 1.5` exactly.

The bisection
-------------
Shift the row so that its maximum is 0 and let :math:`w = (\alpha - 1)(z - m)`. The mass
:math:`f(\tau) = \sum_i [w_i - \tau]_+^{1/(\alpha-1)}` decreases from :math:`f(-1) \ge 1` (the top entry alone
gives 1) to :math:`f(0) = 0`, so :math:`\tau \in [-1, 0)`, and bisection halves that bracket ``n_iter`` times,
keeping :math:`f(\text{lo}) \ge 1` (the approach of Blondel et al. 2020 and Peters et al. 2019). The default
``n_iter=64`` shrinks the bracket to :math:`2^{-64} \approx 5\cdot10^{-20}`, past float64's resolution of
:math:`\tau` (about :math:`10^{-16}`), so the loop ends at the float64 root. The probabilities are then computed
at the lower end (whose support contains the true one) and divided by their sum, so that the row sums to one;
this also cancels the part of the error of :math:`\tau` that scales every entry alike, which is all of it as
:math:`\alpha \to 1`. For float32 input the masses are added up in float64.

Accuracy
--------
For :math:`1 < \alpha \le 2` the float64 result agrees with the exact one to about :math:`10^{-15}` (the tests
hold it to :math:`10^{-12}` against the ``entmax`` package and an independent JAX solution). It degrades like
:math:`1/(\alpha - 1)` as :math:`\alpha \to 1`, where the exponent :math:`1/(\alpha-1)` amplifies the rounding of
:math:`w_i - \tau`; at :math:`\alpha = 1` exactly, :func:`entmax_bisect` *is* :func:`softmaxkit.softmax` and
:func:`entmax_bisect_loss` *is* :func:`softmaxkit.cross_entropy` (the Shannon-entropy member of the family),
computed as such. For :math:`\alpha > 2` the exponent is below 1 and the derivative
:math:`p_i^{2-\alpha}` grows without bound as :math:`p_i \to 0`: an entry at the edge of the support is
ill-conditioned (changing a logit in its last bit can move it by far more than :math:`10^{-16}`), so there, no
method gives it to full accuracy.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import array_api_compat

from .. import _backend, _validate
from .._array import Array, Namespace, accumulator, cast, quiet
from ._tsallis import (
    JACOBIAN_SPECIAL_VALUES,
    LOSS_SPECIAL_VALUES,
    MAPPING_SPECIAL_VALUES,
    PRODUCT_SPECIAL_VALUES,
    Tsallis,
    check_n_iter,
    fenchel_young,
    fill_docs,
    jacobian,
    mapping,
    product,
)

__all__ = [
    "entmax_bisect",
    "entmax_bisect_jacobian",
    "entmax_bisect_jvp",
    "entmax_bisect_loss",
    "entmax_bisect_loss_value_and_grad",
    "entmax_bisect_vjp",
]

N_ITER = 64
"""Default number of bisection steps: the bracket [-1, 0] shrinks to 2**-64, past float64's resolution."""


def _positive_power(xp: Namespace, t: Array, beta: Any) -> Array:
    pos = xp.where(t > 0, t, 0.0)
    if isinstance(beta, float) and beta == 1.0:
        return pos
    if isinstance(beta, float) and beta == 2.0:
        return pos * pos
    return pos**beta


def bisect_solve(xp: Namespace, d: Array, *, alpha: Any, n_iter: int) -> Array:
    """:math:`[(\\alpha-1) d - \\tau]_+^{1/(\\alpha-1)}`, with :math:`\\tau` by bisection on [-1, 0] and the
    result divided by its sum (module notes). ``alpha`` is a float > 1 or an array of them that broadcasts
    against ``d``'s rows (length 1 along the class axis: the JAX front's learnable α)."""
    beta = 1.0 / (alpha - 1.0)
    w = d * (alpha - 1.0)
    acc = accumulator(xp, w.dtype, w)
    shape = (*w.shape[:-1], 1)
    dev = array_api_compat.device(w)
    lo = xp.full(shape, -1.0, dtype=w.dtype, device=dev)  # mass(lo) >= 1: the top entry alone gives 1
    hi = xp.zeros(shape, dtype=w.dtype, device=dev)  # mass(hi) = 0
    for _ in range(n_iter):
        mid = (lo + hi) / 2.0
        mass = xp.sum(cast(xp, _positive_power(xp, w - mid, beta), acc), axis=-1, keepdims=True)
        right = mass >= 1.0  # the root lies in [mid, hi]
        lo = xp.where(right, mid, lo)
        hi = xp.where(right, hi, mid)
    p = cast(xp, _positive_power(xp, w - lo, beta), acc)
    total = xp.sum(p, axis=-1, keepdims=True)  # >= 1, or 0 for a fully masked row
    return cast(xp, p / xp.where(total > 0, total, 1.0), w.dtype)


def _check_alpha(value: Any) -> float:
    a = _validate.real_scalar(value, "alpha")
    if not (math.isfinite(a) and a >= 1.0):
        raise ValueError(f"alpha must be a finite number >= 1 (1 is softmax, 2 is sparsemax); got {value!r}")
    return a


def _family(alpha: Any, n_iter: Any) -> Tsallis:
    a, n = _check_alpha(alpha), check_n_iter(n_iter)
    return Tsallis(a, functools.partial(bisect_solve, alpha=a, n_iter=n), "entmax_bisect", n)


@_backend.routed
@quiet
def entmax_bisect(
    x: Array, /, *, alpha: float = 1.5, axis: int = -1, n_iter: int = N_ITER, where: Array | None = None
) -> Array:
    r"""α-entmax along ``axis`` for any :math:`\alpha \ge 1`, with the threshold found by bisection.

    .. math:: \alpha\text{-entmax}(x)_i = \bigl[(\alpha - 1) x_i - \tau\bigr]_+^{1/(\alpha - 1)}, \qquad
              \textstyle\sum_i p_i = 1

    (Peters, Niculae & Martins, ACL 2019). :math:`\alpha = 1` is :func:`softmaxkit.softmax` (computed as
    such), :math:`\alpha = 2` is :func:`softmaxkit.sparsemax` and :math:`\alpha = 1.5` is
    :func:`softmaxkit.entmax15` (those two are exact and faster: one sort instead of ``n_iter`` passes).
    Larger :math:`\alpha` is sparser. See the module notes for the bisection and its accuracy.

    Parameters
    ----------
    x : array_like
        Real logits (any array-API array, or a sequence). float16/bfloat16 are computed in float32 and
        returned in their own dtype; integers promote to the default floating dtype.
    alpha : float
        :math:`\alpha \ge 1`, finite.
    axis : int
        The axis that holds the classes.
    n_iter : int
        Bisection steps, ``>= 1``. The default 64 reaches float64's resolution of :math:`\tau \in [-1, 0)`;
        fewer steps leave an error of about :math:`2^{-n}/(\alpha - 1)` in the probabilities.
    where : array of bool, optional
        Broadcastable to ``x``. Entries where it is False are left out: probability exactly 0.

    Returns
    -------
    array
        Same shape, array type and (floating) dtype as ``x``; each row sums to one.

    Raises
    ------
    TypeError
        ``x`` is boolean or complex; ``where`` is not boolean; ``axis``, ``n_iter`` not an int; ``alpha``
        not a real number.
    ValueError
        ``alpha < 1`` or not finite; ``n_iter < 1``; ``axis`` out of range; ``where`` does not broadcast.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([2.0, 1.0, -2.0])
    >>> print(entmax_bisect(x, alpha=1.5))  # = entmax15(x)
    [0.83071891 0.16928109 0.        ]
    >>> print(entmax_bisect(x, alpha=2.0))  # = sparsemax(x)
    [1. 0. 0.]
    """
    return mapping(x, axis, where, _family(alpha, n_iter))


@quiet
def entmax_bisect_jvp(
    x: Array,
    v: Array,
    /,
    *,
    alpha: float = 1.5,
    axis: int = -1,
    n_iter: int = N_ITER,
    where: Array | None = None,
) -> Array:
    r"""Jacobian-vector product of :func:`entmax_bisect`, with :math:`s = p^{2-\alpha}` on the support:

    .. math:: J v = s \odot v - s\, \frac{\langle s, v\rangle}{\sum_j s_j}

    in :math:`O(K)` per row (Peters et al. 2019, Prop. 2); at :math:`\alpha = 1` it is
    :func:`softmaxkit.softmax.softmax_jvp`.

    Parameters
    ----------
    x : array_like
        Logits, as for :func:`entmax_bisect`.
    v : array_like
        Tangent, same shape as ``x``.
    alpha, axis, n_iter, where
        As for :func:`entmax_bisect`.

    Returns
    -------
    array
        Same shape as ``x``; each row sums to zero.

    Raises
    ------
    ValueError
        ``v``'s shape differs from ``x``'s; and as :func:`entmax_bisect`.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(entmax_bisect_jvp(np.array([1.0, 0.5, -1.0]), np.array([1.0, 0.0, 5.0]), alpha=2.0))
    [ 0.5 -0.5  0. ]
    """
    return product(x, v, "v", axis, where, _family(alpha, n_iter))


@quiet
def entmax_bisect_vjp(
    x: Array,
    g: Array,
    /,
    *,
    alpha: float = 1.5,
    axis: int = -1,
    n_iter: int = N_ITER,
    where: Array | None = None,
) -> Array:
    r"""Vector-Jacobian product of :func:`entmax_bisect`: the gradient of :math:`\langle g, p\rangle`.

    .. math:: g^\top J = s \odot g - s\, \frac{\langle s, g\rangle}{\sum_j s_j}, \qquad s = p^{2-\alpha}
              \text{ on the support}

    (:math:`J` is symmetric: the same product as :func:`entmax_bisect_jvp`).

    Parameters
    ----------
    x : array_like
        Logits, as for :func:`entmax_bisect`.
    g : array_like
        Cotangent (upstream gradient), same shape as ``x``.
    alpha, axis, n_iter, where
        As for :func:`entmax_bisect`.

    Returns
    -------
    array
        Same shape as ``x``.

    Raises
    ------
    ValueError
        ``g``'s shape differs from ``x``'s; and as :func:`entmax_bisect`.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(entmax_bisect_vjp(np.array([0.0, 0.0]), np.array([1.0, 0.0]), alpha=1.0))  # softmax's
    [ 0.25 -0.25]
    """
    return product(x, g, "g", axis, where, _family(alpha, n_iter))


@quiet
def entmax_bisect_jacobian(
    x: Array, /, *, alpha: float = 1.5, axis: int = -1, n_iter: int = N_ITER, where: Array | None = None
) -> Array:
    r"""The full Jacobian of :func:`entmax_bisect`, :math:`J = \operatorname{diag}(s) - s s^\top/\sum_j s_j`
    with :math:`s = p^{2-\alpha}` on the support and 0 off it, per row.

    Prefer :func:`entmax_bisect_jvp` / :func:`entmax_bisect_vjp` in code: they cost :math:`O(K)`, this costs
    :math:`O(K^2)` memory.

    Parameters
    ----------
    x : array_like
        Logits, as for :func:`entmax_bisect`.
    alpha, axis, n_iter, where
        As for :func:`entmax_bisect`.

    Returns
    -------
    array
        Shape ``batch + (K, K)`` where ``batch`` is ``x``'s shape without ``axis``; ``J[..., i, j]`` is
        :math:`\partial p_i / \partial x_j`.

    Raises
    ------
    TypeError, ValueError
        As :func:`entmax_bisect`.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(entmax_bisect_jacobian(np.array([0.0, 0.0]), alpha=3.0))  # s = p^-1: (diag(s) - s s^T/4)
    [[ 1. -1.]
     [-1.  1.]]
    """
    return jacobian(x, axis, where, _family(alpha, n_iter))


@_backend.routed
@quiet
def entmax_bisect_loss(
    logits: Array,
    target: Array,
    /,
    *,
    alpha: float = 1.5,
    axis: int = -1,
    n_iter: int = N_ITER,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Array:
    r"""α-entmax loss: the Fenchel–Young loss of the Tsallis α-entropy, from logits and class indices.

    .. math:: \ell = \frac{1}{\alpha(\alpha-1)} \sum_i \bigl(p^\star_i - (p^\star_i)^\alpha\bigr)
              + \langle p^\star - e_y,\, z\rangle, \qquad p^\star = \alpha\text{-entmax}(z)

    (Blondel, Martins & Niculae 2020). :math:`\ell \ge 0`, with equality exactly when :math:`p^\star = e_y`.
    At :math:`\alpha = 1` it is :func:`softmaxkit.cross_entropy`, :math:`\operatorname{lse}(z) - z_y`; at
    :math:`\alpha = 2`, :func:`softmaxkit.sparsemax_loss`. Computed without the gradient; see
    :func:`entmax_bisect_loss_value_and_grad`.

    Parameters
    ----------
    logits : array_like
        Real logits; ``axis`` holds the ``C`` classes. float16/bfloat16 are computed in float32.
    target : array_like
        Integer class indices with the logits' shape without ``axis``: values in ``[0, C)`` or
        ``ignore_index``.
    alpha : float
        :math:`\alpha \ge 1`, finite. For torch tensors and JAX arrays also an array of them (0-d, or one per row,
        each > 1): :func:`softmaxkit.torch.entmax_bisect_loss`, ``softmaxkit.jax.entmax_bisect_loss``.
    axis : int
        The class axis.
    n_iter : int
        Bisection steps, as for :func:`entmax_bisect`.
    weight : array_like, optional
        Per-class weights, shape ``(C,)``, finite and ``>= 0``: row :math:`n` counts :math:`w_{y_n}` times.
    ignore_index : int
        Rows whose target equals it contribute nothing (not even to the ``mean`` denominator).
    reduction : {"mean", "sum", "none"}
        ``mean`` divides by :math:`\sum_n w_{y_n}` over the rows not ignored (as
        :func:`softmaxkit.cross_entropy`); ``none`` returns :math:`w_{y_n} \ell_n` per row.

    Returns
    -------
    array
        0-d for ``mean``/``sum``, else the per-row losses; the logits' array type and (floating) dtype.

    Raises
    ------
    TypeError
        ``target`` not integer; ``logits`` boolean or complex; ``n_iter`` not an int.
    ValueError
        ``alpha < 1``; ``n_iter < 1``; a class index outside ``[0, C)``; shapes that do not match; an
        unknown ``reduction``; a negative, nan or inf ``weight``.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> z = np.array([[0.0, 0.0]])
    >>> print(float(entmax_bisect_loss(z, np.array([0]), alpha=2.0)))  # (1 - 1/2)/2
    0.25
    >>> print(round(float(entmax_bisect_loss(z, np.array([0]), alpha=1.0)), 6))  # log 2
    0.693147
    """
    loss, _ = fenchel_young(
        logits,
        target,
        axis=axis,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        fam=_family(alpha, n_iter),
        want_grad=False,
    )
    return loss


@_backend.routed
@quiet
def entmax_bisect_loss_value_and_grad(
    logits: Array,
    target: Array,
    /,
    *,
    alpha: float = 1.5,
    axis: int = -1,
    n_iter: int = N_ITER,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> tuple[Array, Array]:
    r""":func:`entmax_bisect_loss` and its gradient with respect to ``logits``, in closed form.

    .. math:: \frac{\partial \ell}{\partial z} = \alpha\text{-entmax}(z) - e_y ,

    times :math:`w_y` (and divided by the ``mean`` denominator).

    Parameters
    ----------
    logits, target, alpha, axis, n_iter, weight, ignore_index, reduction
        As for :func:`entmax_bisect_loss`.

    Returns
    -------
    loss : array
        Exactly :func:`entmax_bisect_loss`'s value.
    grad : array
        :math:`\partial\, \text{loss} / \partial\, \text{logits}`, the logits' shape and dtype. With
        ``reduction="none"`` it is the gradient of the summed losses, that is each row's own gradient.

    Raises
    ------
    TypeError, ValueError
        As :func:`entmax_bisect_loss`.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> loss, grad = entmax_bisect_loss_value_and_grad(np.array([[0.0, 0.0]]), np.array([1]), alpha=2.0)
    >>> print(float(loss), grad)
    0.25 [[ 0.5 -0.5]]
    """
    loss, grad = fenchel_young(
        logits,
        target,
        axis=axis,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        fam=_family(alpha, n_iter),
        want_grad=True,
    )
    assert grad is not None
    return loss, grad


fill_docs(
    (entmax_bisect, MAPPING_SPECIAL_VALUES),
    (entmax_bisect_jvp, PRODUCT_SPECIAL_VALUES),
    (entmax_bisect_vjp, PRODUCT_SPECIAL_VALUES),
    (entmax_bisect_jacobian, JACOBIAN_SPECIAL_VALUES),
    (entmax_bisect_loss, LOSS_SPECIAL_VALUES),
    (entmax_bisect_loss_value_and_grad, LOSS_SPECIAL_VALUES),
)

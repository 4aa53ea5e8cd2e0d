r"""1.5-entmax: between softmax and sparsemax, sparse yet smooth, computed exactly with one sort.

Peters, Niculae & Martins (*Sparse sequence-to-sequence models*, ACL 2019) define, for :math:`\alpha \ge 1`,

.. math:: \alpha\text{-entmax}(z) = \operatorname*{arg\,max}_{p \in \Delta} \langle p, z\rangle + H_\alpha(p)
          = \bigl[(\alpha - 1) z - \tau\bigr]_+^{1/(\alpha - 1)},

with the Tsallis entropy :math:`H_\alpha` and the threshold :math:`\tau` that makes the row sum to one (see
:mod:`softmaxkit.family.sparsemax` for the family, its Jacobian and its Fenchel–Young loss, shared by every
member, and :mod:`softmaxkit.family.entmax_bisect` for any :math:`\alpha`). :math:`\alpha = 1` is softmax,
:math:`\alpha = 2` sparsemax; 1.5 keeps exact zeros while the probabilities near the threshold grow
quadratically instead of linearly, so the map is continuously differentiable.

Computing it
------------
With :math:`\alpha = 1.5`, :math:`p_i = [z_i/2 - \tau]_+^2`. On a candidate support made of the :math:`k`
largest values :math:`u_1 \ge \dots \ge u_k` of :math:`z/2`, :math:`\sum_{j\le k} (u_j - \tau)^2 = 1` is a
quadratic in :math:`\tau`, whose smaller root is

.. math:: \tau_k = \mu_k - \sqrt{\frac{1 - \sigma_k}{k}}, \qquad \mu_k = \frac1k\sum_{j\le k} u_j,
          \quad \sigma_k = \sum_{j\le k} (u_j - \mu_k)^2 ,

and the support is the largest :math:`k` with :math:`\tau_k \le u_k` (Peters et al. 2019, Algorithm 2). The
candidates are evaluated for every :math:`k` at once from cumulative sums after one sort; :math:`\tau` is then
recomputed on the chosen support with the two-pass form of :math:`\sigma` (no cancellation), so that the row
sums to one to rounding.

Special values are those of the whole family (:mod:`softmaxkit.family.sparsemax`): ``-inf`` and ``where=False``
entries are masked (probability exactly 0), a fully masked row is all zeros, a ``nan`` or ``+inf`` makes its row
``nan``.
"""

from __future__ import annotations

from .. import _backend
from .._array import Array, Namespace, quiet
from ._tsallis import (
    JACOBIAN_SPECIAL_VALUES,
    LOSS_SPECIAL_VALUES,
    MAPPING_SPECIAL_VALUES,
    PRODUCT_SPECIAL_VALUES,
    Tsallis,
    fenchel_young,
    fill_docs,
    jacobian,
    mapping,
    product,
    sorted_rows,
)

__all__ = [
    "entmax15",
    "entmax15_jacobian",
    "entmax15_jvp",
    "entmax15_loss",
    "entmax15_loss_value_and_grad",
    "entmax15_vjp",
]

_INF = float("inf")


def _entmax15_solve(xp: Namespace, d: Array) -> Array:
    """:math:`[d/2 - \\tau]_+^2` with the exact sort-based threshold (module notes)."""
    w = d / 2.0
    # tau >= -1 (the top entry alone has (0 - tau)^2 <= 1), so an entry below -2 is never in the support: raising
    # it to -2 changes nothing but keeps u * u finite (near float32's max it overflowed, and inf - inf was nan)
    w = xp.where(xp.logical_and(w < -2.0, w > -_INF), -2.0, w)
    u, live, k = sorted_rows(xp, w)
    c = xp.cumulative_sum(u, axis=-1)
    mean = c / k
    spread = xp.cumulative_sum(u * u, axis=-1) - c * mean  # sum of squared deviations, per candidate k
    delta = (1.0 - spread) / k
    tau = mean - xp.sqrt(xp.where(delta > 0, delta, 0.0))
    fits = xp.logical_and(live, tau <= u)
    size = xp.max(xp.where(fits, k, 0.0), axis=-1, keepdims=True)  # 0 for a fully masked row
    top = k <= size
    n = xp.where(size > 0, size, 1.0)
    mu = xp.sum(xp.where(top, u, 0.0), axis=-1, keepdims=True) / n
    dev = xp.where(top, u - mu, 0.0)
    rest = 1.0 - xp.sum(dev * dev, axis=-1, keepdims=True)
    tau = mu - xp.sqrt(xp.where(rest > 0, rest, 0.0) / n)
    gap = w - tau
    return xp.where(gap > 0, gap * gap, 0.0)


_ENTMAX15 = Tsallis(1.5, _entmax15_solve, "entmax15")


@_backend.routed
@quiet
def entmax15(x: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    r"""1.5-entmax along ``axis``: sparse like sparsemax, smooth like softmax, computed exactly.

    .. math:: \operatorname{entmax}_{1.5}(x)_i = \bigl[x_i/2 - \tau\bigr]_+^2, \qquad
              \textstyle\sum_i [x_i/2 - \tau]_+^2 = 1

    (Peters, Niculae & Martins, ACL 2019), with :math:`\tau` from one sort (module notes). It maximises
    :math:`\langle p, x\rangle + H_{1.5}(p)`, :math:`H_{1.5}(p) = \tfrac43 \sum_i (p_i - p_i^{3/2})`.
    Entries with :math:`x_i/2 \le \tau` get probability exactly 0; the map is invariant to shifting ``x``.

    Parameters
    ----------
    x : array_like
        Real logits (any array-API array, or a sequence). float16/bfloat16 are computed in float32 and
        returned in their own dtype; integers promote to the default floating dtype.
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
        ``x`` is boolean or complex; ``where`` is not boolean; ``axis`` is not an int.
    ValueError
        ``axis`` out of range; ``where`` does not broadcast.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(entmax15(np.array([0.0, 0.0])))
    [0.5 0.5]
    >>> print(entmax15(np.array([2.0, 1.0, -2.0])))  # ((sqrt(7) + 1)/4)**2, ((sqrt(7) - 1)/4)**2, 0
    [0.83071891 0.16928109 0.        ]
    """
    return mapping(x, axis, where, _ENTMAX15)


@quiet
def entmax15_jvp(x: Array, v: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    r"""Jacobian-vector product of :func:`entmax15`, with :math:`s = \sqrt{p}`:

    .. math:: J v = s \odot v - s\, \frac{\langle s, v\rangle}{\sum_j s_j}

    in :math:`O(K)` per row (Peters et al. 2019, Prop. 2).

    Parameters
    ----------
    x : array_like
        Logits, as for :func:`entmax15`.
    v : array_like
        Tangent, same shape as ``x``.
    axis, where
        As for :func:`entmax15`.

    Returns
    -------
    array
        Same shape as ``x``; each row sums to zero.

    Raises
    ------
    ValueError
        ``v``'s shape differs from ``x``'s; and as :func:`entmax15`.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(entmax15_jvp(np.array([0.0, 0.0, -9.0]), np.array([1.0, 0.0, 1.0])))
    [ 0.35355339 -0.35355339  0.        ]
    """
    return product(x, v, "v", axis, where, _ENTMAX15)


@quiet
def entmax15_vjp(x: Array, g: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    r"""Vector-Jacobian product of :func:`entmax15`: the gradient of :math:`\langle g, p\rangle` w.r.t. ``x``.

    .. math:: g^\top J = s \odot g - s\, \frac{\langle s, g\rangle}{\sum_j s_j}, \qquad s = \sqrt{p}

    (:math:`J` is symmetric: the same product as :func:`entmax15_jvp`).

    Parameters
    ----------
    x : array_like
        Logits, as for :func:`entmax15`.
    g : array_like
        Cotangent (upstream gradient), same shape as ``x``.
    axis, where
        As for :func:`entmax15`.

    Returns
    -------
    array
        Same shape as ``x``.

    Raises
    ------
    ValueError
        ``g``'s shape differs from ``x``'s; and as :func:`entmax15`.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(entmax15_vjp(np.array([0.0, -np.inf]), np.array([1.0, 5.0])))
    [0. 0.]
    """
    return product(x, g, "g", axis, where, _ENTMAX15)


@quiet
def entmax15_jacobian(x: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    r"""The full Jacobian of :func:`entmax15`, :math:`J = \operatorname{diag}(s) - s s^\top/\sum_j s_j` with
    :math:`s = \sqrt{p}`, per row.

    Symmetric, each row and column sums to zero, zero outside the support. Prefer :func:`entmax15_jvp` /
    :func:`entmax15_vjp` in code: they cost :math:`O(K)`, this costs :math:`O(K^2)` memory.

    Parameters
    ----------
    x : array_like
        Logits, as for :func:`entmax15`.
    axis, where
        As for :func:`entmax15`.

    Returns
    -------
    array
        Shape ``batch + (K, K)`` where ``batch`` is ``x``'s shape without ``axis``; ``J[..., i, j]`` is
        :math:`\partial p_i / \partial x_j`.

    Raises
    ------
    TypeError, ValueError
        As :func:`entmax15`.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(entmax15_jacobian(np.array([0.0, 0.0])))
    [[ 0.35355339 -0.35355339]
     [-0.35355339  0.35355339]]
    """
    return jacobian(x, axis, where, _ENTMAX15)


@_backend.routed
@quiet
def entmax15_loss(
    logits: Array,
    target: Array,
    /,
    *,
    axis: int = -1,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Array:
    r"""1.5-entmax loss: the Fenchel–Young loss of the Tsallis 1.5-entropy, from logits and class indices.

    .. math:: \ell = \tfrac43 \sum_i \bigl(p^\star_i - (p^\star_i)^{3/2}\bigr)
              + \langle p^\star - e_y,\, z\rangle, \qquad p^\star = \operatorname{entmax}_{1.5}(z)

    (Peters et al. 2019; Blondel, Martins & Niculae 2020). :math:`\ell \ge 0`, with equality exactly when
    :math:`p^\star = e_y` (when :math:`z_y` leads every other logit by at least 2). Computed without the
    gradient; see :func:`entmax15_loss_value_and_grad`.

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
        ``target`` not integer; ``logits`` boolean or complex.
    ValueError
        A class index outside ``[0, C)``; shapes that do not match; an unknown ``reduction``; a negative or
        nan or infinite ``weight``.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> z = np.array([[0.0, 0.0], [2.0, 0.0]])
    >>> print(entmax15_loss(z, np.array([0, 0]), reduction="none"))  # 4/3 (1 - 2^-1/2) - 0 + 0, and 0
    [0.39052429 0.        ]
    """
    loss, _ = fenchel_young(
        logits,
        target,
        axis=axis,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        fam=_ENTMAX15,
        want_grad=False,
    )
    return loss


@_backend.routed
@quiet
def entmax15_loss_value_and_grad(
    logits: Array,
    target: Array,
    /,
    *,
    axis: int = -1,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> tuple[Array, Array]:
    r""":func:`entmax15_loss` and its gradient with respect to ``logits``, in closed form.

    .. math:: \frac{\partial \ell}{\partial z} = \operatorname{entmax}_{1.5}(z) - e_y ,

    times :math:`w_y` (and divided by the ``mean`` denominator).

    Parameters
    ----------
    logits, target, axis, weight, ignore_index, reduction
        As for :func:`entmax15_loss`.

    Returns
    -------
    loss : array
        Exactly :func:`entmax15_loss`'s value.
    grad : array
        :math:`\partial\, \text{loss} / \partial\, \text{logits}`, the logits' shape and dtype. With
        ``reduction="none"`` it is the gradient of the summed losses, that is each row's own gradient.

    Raises
    ------
    TypeError, ValueError
        As :func:`entmax15_loss`.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> loss, grad = entmax15_loss_value_and_grad(np.array([[0.0, 0.0]]), np.array([1]))
    >>> print(round(float(loss), 6), grad)
    0.390524 [[ 0.5 -0.5]]
    """
    loss, grad = fenchel_young(
        logits,
        target,
        axis=axis,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        fam=_ENTMAX15,
        want_grad=True,
    )
    assert grad is not None
    return loss, grad


fill_docs(
    (entmax15, MAPPING_SPECIAL_VALUES),
    (entmax15_jvp, PRODUCT_SPECIAL_VALUES),
    (entmax15_vjp, PRODUCT_SPECIAL_VALUES),
    (entmax15_jacobian, JACOBIAN_SPECIAL_VALUES),
    (entmax15_loss, LOSS_SPECIAL_VALUES),
    (entmax15_loss_value_and_grad, LOSS_SPECIAL_VALUES),
)

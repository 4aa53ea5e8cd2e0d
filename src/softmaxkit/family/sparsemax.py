r"""Sparsemax: the Euclidean projection onto the simplex, with exact zeros, and the machinery of its family.

Why sparsemax
-------------
Softmax never gives a class probability 0: every logit, however bad, keeps a share :math:`e^{z_i}/\sum e^{z_j}`.
For attention over long inputs, or for outputs where most classes are plainly wrong, one may want a distribution
that is *sparse*. Martins & Astudillo (*From softmax to sparsemax*, ICML 2016) take the closest point of the
probability simplex :math:`\Delta` to the logits,

.. math:: \operatorname{sparsemax}(z) = \operatorname*{arg\,min}_{p \in \Delta} \|p - z\|^2
          = [z - \tau]_+ ,

where the threshold :math:`\tau(z)` is the unique number with :math:`\sum_i [z_i - \tau]_+ = 1`. Logits more
than :math:`\tau` below the top get probability exactly 0. Sorting the logits, :math:`u_1 \ge u_2 \ge \dots`,
the support is the first :math:`k^*` of them, with

.. math:: k^* = \max\{k : 1 + k u_k > \textstyle\sum_{j \le k} u_j\}, \qquad
          \tau = \frac{\sum_{j \le k^*} u_j - 1}{k^*}

(Held, Wolfe & Crowder 1974; Michelot 1986; Duchi et al. 2008): :math:`O(K \log K)` per row.

The family: Tsallis entropies and α-entmax
------------------------------------------
Softmax and sparsemax are two members of one family (Peters, Niculae & Martins, *Sparse sequence-to-sequence
models*, ACL 2019). With the Tsallis :math:`\alpha`-entropy

.. math:: H_\alpha(p) = \frac{1}{\alpha(\alpha - 1)} \sum_i \bigl(p_i - p_i^\alpha\bigr) \quad (\alpha > 1),
          \qquad H_1(p) = -\sum_i p_i \log p_i ,

:math:`\alpha`-entmax is :math:`\operatorname*{arg\,max}_{p\in\Delta} \langle p, z\rangle + H_\alpha(p)`, whose
solution is

.. math:: p_i = \bigl[(\alpha - 1) z_i - \tau\bigr]_+^{1/(\alpha - 1)}, \qquad \sum_i p_i = 1 .

:math:`\alpha = 1` is softmax (the Shannon entropy), :math:`\alpha = 2` is sparsemax
(:math:`H_2(p) = \tfrac12(1 - \|p\|^2)`), and :math:`\alpha = 1.5` (:mod:`softmaxkit.family.entmax`) lies in
between: sparse, yet smoother than sparsemax. Everything is invariant to shifting the logits, so every row is
shifted by its maximum first: the top entry becomes 0 and :math:`\tau \in [-1, 0)`.

Derivatives (Peters et al. 2019, Prop. 2)
-----------------------------------------
On the support :math:`S = \{i : p_i > 0\}` let :math:`s_i = p_i^{2 - \alpha}` (1 for sparsemax,
:math:`\sqrt{p_i}` for 1.5-entmax, :math:`p_i` for softmax) and :math:`s_i = 0` off it. Then

.. math:: J = \frac{\partial p}{\partial z} = \operatorname{diag}(s) - \frac{s s^\top}{\sum_j s_j},

symmetric, so the JVP and the VJP are one :math:`O(K)` product :math:`s \odot v - s\,\langle s, v\rangle /
\sum_j s_j`. The map is piecewise smooth: at a logit that sits exactly on the threshold (:math:`p_i = 0` at the
edge of the support) it has no derivative, and we return the one-sided one of the support :math:`p_i > 0`.

The Fenchel–Young loss (Blondel, Martins & Niculae, *Learning with Fenchel–Young losses*, JMLR 2020)
----------------------------------------------------------------------------------------------------------
With :math:`\Omega = -H_\alpha` and its convex conjugate :math:`\Omega^*`, the loss of logits :math:`z` for the
class :math:`y` is

.. math:: L(z; y) = \Omega^*(z) + \Omega(e_y) - z_y
          = H_\alpha(p^\star) + \langle p^\star - e_y,\, z \rangle ,
          \qquad p^\star = \alpha\text{-entmax}(z),

using :math:`\Omega^*(z) = \langle p^\star, z\rangle - \Omega(p^\star)` and :math:`\Omega(e_y) = 0`. It is
:math:`\ge 0` (the Fenchel–Young inequality), 0 exactly when :math:`p^\star = e_y`, and its gradient is
:math:`\nabla_z L = p^\star - e_y` (Danskin's theorem), as for cross-entropy, which is the :math:`\alpha = 1`
member. For sparsemax, :math:`L = \tfrac12(1 - \|p^\star\|^2) + \langle p^\star - e_y, z\rangle`, the sparsemax
loss of Martins & Astudillo. (Written with :math:`\Omega(p) = \tfrac12\|p\|^2 - \tfrac12` the entropy term is
:math:`-\Omega(p^\star)`: with a plus sign the loss of ``[0, 0]`` would be :math:`-\tfrac14`.) We evaluate
:math:`H_\alpha` as :math:`\sum_i p_i(1 - p_i^{\alpha-1})/(\alpha(\alpha-1))`, a sum of non-negative terms, and
:math:`\langle p^\star - e_y, z\rangle` on the max-shifted logits; a rounding error that would leave the sum a
few ulp below 0 is clamped to 0.

Special values (shared by every function of the family)
-------------------------------------------------------
A *masked* entry is one that is ``-inf`` or where ``where`` is False: its probability is exactly 0 and it has
no derivative (zero row and column of :math:`J`). A row with every entry masked has no distribution: zeros (and
zero derivatives). A ``nan`` anywhere in a row makes that row ``nan``; so does a ``+inf``, because the shift by
the maximum gives :math:`\infty - \infty` (the limit would be a one-hot on the ``+inf`` entries, which we do not
guess). The losses follow :func:`softmaxkit.cross_entropy`: a target on a ``-inf`` class costs ``inf`` (its
gradient, :math:`p^\star - e_y`, stays finite), ignored rows are never read.
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
    "sparsemax",
    "sparsemax_jacobian",
    "sparsemax_jvp",
    "sparsemax_loss",
    "sparsemax_loss_value_and_grad",
    "sparsemax_vjp",
]


def _sparsemax_solve(xp: Namespace, d: Array) -> Array:
    """:math:`[d - \\tau]_+` with the sort-based threshold (module notes)."""
    u, live, k = sorted_rows(xp, d)
    c = xp.cumulative_sum(u, axis=-1)
    fits = xp.logical_and(live, 1.0 + k * u > c)
    size = xp.max(xp.where(fits, k, 0.0), axis=-1, keepdims=True)  # k*, 0 for a fully masked row
    top = k <= size
    tau = (xp.sum(xp.where(top, u, 0.0), axis=-1, keepdims=True) - 1.0) / xp.where(size > 0, size, 1.0)
    return xp.where(d > tau, d - tau, 0.0)


_SPARSEMAX = Tsallis(2.0, _sparsemax_solve, "sparsemax")


# ---------------------------------------------------------------------------------------------- sparsemax
@_backend.routed
@quiet
def sparsemax(x: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    r"""Sparsemax along ``axis``: the Euclidean projection of the logits onto the probability simplex.

    .. math:: \operatorname{sparsemax}(x) = \operatorname*{arg\,min}_{p \in \Delta} \|p - x\|^2 = [x - \tau]_+,
              \qquad \textstyle\sum_i [x_i - \tau]_+ = 1

    (Martins & Astudillo, ICML 2016), with the exact sort-based threshold :math:`\tau` (see the module notes).
    Entries more than :math:`\tau` below the maximum get probability exactly 0. It is 2-entmax, and it is
    invariant to shifting ``x``.

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
    >>> print(sparsemax(np.array([1.0, 0.5, -1.0])))
    [0.75 0.25 0.  ]
    >>> print(sparsemax(np.array([3.0, 0.0, 0.0])))  # far ahead: one-hot, exact zeros
    [1. 0. 0.]
    """
    return mapping(x, axis, where, _SPARSEMAX)


@quiet
def sparsemax_jvp(x: Array, v: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    r"""Jacobian-vector product of :func:`sparsemax`: on the support :math:`S` of :math:`p`,

    .. math:: (J v)_i = v_i - \frac{1}{|S|}\sum_{j \in S} v_j \quad (i \in S), \qquad 0 \text{ off } S,

    in :math:`O(K)` per row (Martins & Astudillo 2016, eq. 12).

    Parameters
    ----------
    x : array_like
        Logits, as for :func:`sparsemax`.
    v : array_like
        Tangent, same shape as ``x``.
    axis, where
        As for :func:`sparsemax`.

    Returns
    -------
    array
        Same shape as ``x``; each row sums to zero.

    Raises
    ------
    ValueError
        ``v``'s shape differs from ``x``'s; and as :func:`sparsemax`.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(sparsemax_jvp(np.array([1.0, 0.5, -1.0]), np.array([1.0, 0.0, 5.0])))
    [ 0.5 -0.5  0. ]
    """
    return product(x, v, "v", axis, where, _SPARSEMAX)


@quiet
def sparsemax_vjp(x: Array, g: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    r"""Vector-Jacobian product of :func:`sparsemax`: the gradient of :math:`\langle g, p\rangle` w.r.t. ``x``.

    .. math:: (g^\top J)_i = g_i - \frac{1}{|S|}\sum_{j \in S} g_j \quad (i \in S), \qquad 0 \text{ off } S

    (:math:`J` is symmetric: the same product as :func:`sparsemax_jvp`).

    Parameters
    ----------
    x : array_like
        Logits, as for :func:`sparsemax`.
    g : array_like
        Cotangent (upstream gradient), same shape as ``x``.
    axis, where
        As for :func:`sparsemax`.

    Returns
    -------
    array
        Same shape as ``x``.

    Raises
    ------
    ValueError
        ``g``'s shape differs from ``x``'s; and as :func:`sparsemax`.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(sparsemax_vjp(np.array([0.0, 0.0, -5.0]), np.array([1.0, 3.0, 9.0])))
    [-1.  1.  0.]
    """
    return product(x, g, "g", axis, where, _SPARSEMAX)


@quiet
def sparsemax_jacobian(x: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    r"""The full Jacobian of :func:`sparsemax`, :math:`J = \operatorname{diag}(s) - s s^\top / |S|`, per row.

    :math:`s` is the indicator of the support :math:`S = \{i : p_i > 0\}`: :math:`J` is the centering matrix
    on the support and 0 elsewhere (Martins & Astudillo 2016). Prefer :func:`sparsemax_jvp` /
    :func:`sparsemax_vjp` in code: they cost :math:`O(K)`, this costs :math:`O(K^2)` memory.

    Parameters
    ----------
    x : array_like
        Logits, as for :func:`sparsemax`.
    axis, where
        As for :func:`sparsemax`.

    Returns
    -------
    array
        Shape ``batch + (K, K)`` where ``batch`` is ``x``'s shape without ``axis``; ``J[..., i, j]`` is
        :math:`\partial p_i / \partial x_j`.

    Raises
    ------
    TypeError, ValueError
        As :func:`sparsemax`.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(sparsemax_jacobian(np.array([1.0, 0.5, -1.0])))
    [[ 0.5 -0.5  0. ]
     [-0.5  0.5  0. ]
     [ 0.   0.   0. ]]
    """
    return jacobian(x, axis, where, _SPARSEMAX)


@_backend.routed
@quiet
def sparsemax_loss(
    logits: Array,
    target: Array,
    /,
    *,
    axis: int = -1,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Array:
    r"""Sparsemax loss: the Fenchel–Young loss of the Gini entropy, from logits and class indices.

    .. math:: \ell = \tfrac12\bigl(1 - \|p^\star\|^2\bigr) + \langle p^\star - e_y,\, z\rangle,
              \qquad p^\star = \operatorname{sparsemax}(z)

    (Martins & Astudillo 2016; Blondel, Martins & Niculae 2020). :math:`\ell \ge 0`, with equality exactly
    when :math:`p^\star = e_y`, i.e. when :math:`z_y` leads every other logit by at least 1: unlike
    cross-entropy, a confident correct prediction costs exactly nothing. Computed without the gradient;
    see :func:`sparsemax_loss_value_and_grad`.

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
    >>> z = np.array([[1.0, 0.5, -1.0], [3.0, 0.0, 0.0]])
    >>> print(sparsemax_loss(z, np.array([1, 0]), reduction="none"))  # 0.1875 + 0.375, and 0
    [0.5625 0.    ]
    """
    loss, _ = fenchel_young(
        logits,
        target,
        axis=axis,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        fam=_SPARSEMAX,
        want_grad=False,
    )
    return loss


@_backend.routed
@quiet
def sparsemax_loss_value_and_grad(
    logits: Array,
    target: Array,
    /,
    *,
    axis: int = -1,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> tuple[Array, Array]:
    r""":func:`sparsemax_loss` and its gradient with respect to ``logits``, in closed form.

    .. math:: \frac{\partial \ell}{\partial z} = \operatorname{sparsemax}(z) - e_y ,

    times :math:`w_y` (and divided by the ``mean`` denominator); it is exactly 0 once the prediction is
    one-hot on the target.

    Parameters
    ----------
    logits, target, axis, weight, ignore_index, reduction
        As for :func:`sparsemax_loss`.

    Returns
    -------
    loss : array
        Exactly :func:`sparsemax_loss`'s value.
    grad : array
        :math:`\partial\, \text{loss} / \partial\, \text{logits}`, the logits' shape and dtype. With
        ``reduction="none"`` it is the gradient of the summed losses, that is each row's own gradient.

    Raises
    ------
    TypeError, ValueError
        As :func:`sparsemax_loss`.

    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> loss, grad = sparsemax_loss_value_and_grad(np.array([[1.0, 0.5, -1.0]]), np.array([1]))
    >>> print(float(loss), grad)
    0.5625 [[ 0.75 -0.75  0.  ]]
    """
    loss, grad = fenchel_young(
        logits,
        target,
        axis=axis,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        fam=_SPARSEMAX,
        want_grad=True,
    )
    assert grad is not None
    return loss, grad


fill_docs(
    (sparsemax, MAPPING_SPECIAL_VALUES),
    (sparsemax_jvp, PRODUCT_SPECIAL_VALUES),
    (sparsemax_vjp, PRODUCT_SPECIAL_VALUES),
    (sparsemax_jacobian, JACOBIAN_SPECIAL_VALUES),
    (sparsemax_loss, LOSS_SPECIAL_VALUES),
    (sparsemax_loss_value_and_grad, LOSS_SPECIAL_VALUES),
)

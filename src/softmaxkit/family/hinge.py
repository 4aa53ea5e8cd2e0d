r"""Multiclass hinge losses: margins between scores, not probabilities.

Why margins and not probabilities
---------------------------------
A hinge loss asks only that the target's score beat every other score by a margin :math:`\Delta`; once it
does, the loss is exactly 0 and the sample stops pulling on the model. Nothing turns the scores into a
distribution, so there is no "how sure" to read off (a margin of 5 and one of 500 are equally right) and the
layer's output, in the registry of output layers, is the identity: the scores themselves, to be compared by
``argmax``. Cross-entropy never reaches 0 and keeps pushing :math:`p_y` towards 1, which is what makes softmax
outputs usable as probabilities (and what makes them over-confident). This is the seeds' comparison point,
after de Brébisson & Vincent, *An exploration of softmax alternatives belonging to the spherical loss family*
(ICLR 2016, arXiv:1511.05042).

Two multiclass generalisations of the binary SVM hinge :math:`\max(0, 1 - y f(x))`, for scores
:math:`o \in \mathbb{R}^C` and target :math:`y`:

* Crammer & Singer, *On the algorithmic implementation of multiclass kernel-based vector machines*, JMLR 2001:
  only the strongest competitor counts,

  .. math:: \ell_{\mathrm{CS}}(o, y) = \max\Bigl(0,\ \Delta + \max_{j \ne y} o_j - o_y\Bigr);

* Weston & Watkins, *Support vector machines for multi-class pattern recognition*, ESANN 1999: every
  competitor inside the margin counts,

  .. math:: \ell_{\mathrm{WW}}(o, y) = \sum_{j \ne y} \max(0,\ \Delta + o_j - o_y).

  ``torch.nn.functional.multi_margin_loss`` (with ``p=1``) is :math:`\ell_{\mathrm{WW}} / C`.

Subgradients
------------
Both losses are piecewise linear; at a kink we return one particular subgradient, chosen so that a satisfied
constraint never moves the model:

* a violation of exactly 0 (:math:`\Delta + o_j - o_y = 0`) counts as satisfied: its contribution is 0;
* Crammer–Singer, among competitors tied for the maximum, takes the first (lowest class index), giving
  :math:`e_{j^*} - e_y`;
* Weston–Watkins gives :math:`+1` to every violating competitor and :math:`-(\text{their number})` to the target.

Away from kinks these are the gradients.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

from .. import _doc, _loss, _validate
from .._array import Array, cast, quiet

__all__ = ["KINDS", "multiclass_hinge_loss", "multiclass_hinge_loss_value_and_grad"]

KINDS = ("crammer_singer", "weston_watkins")
"""The accepted values of ``kind``."""

_INF = float("inf")
_NAN = float("nan")

_SPECIAL_VALUES = """
    ======================================  ==============================================
    case                                    loss (gradient)
    ======================================  ==============================================
    competitor at ``-inf``                  never a violator (gradient 0 there): a mask
    target at ``-inf``                      ``inf``, if some other class is above ``-inf``
    every class ``-inf``                    0 (zeros): no class can violate
    competitor at ``+inf``                  ``inf`` (subgradient of its linear piece)
    target at ``+inf``, others finite       0 (zeros)
    ``+inf`` at the target and elsewhere    ``nan`` (inf - inf) for that row
    row with ``nan`` (not ignored)          ``nan`` for that row (its gradient row nan)
    ignored row holding ``nan``             0 (zeros): ignored rows are never read
    a single class                          0 (zeros): no competitor
    all ignored / zero weight, ``mean``     0 (zeros); torch gives nan
    empty batch                             0 for mean/sum, empty for none
    float16 / bfloat16 logits               computed in float32, returned as is
    ======================================  ==============================================
"""


def _kind(value: Any) -> str:
    if value not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}; got {value!r}")
    return str(value)


def _hinge(
    logits: Any,
    target: Any,
    *,
    axis: Any,
    kind: Any,
    margin: Any,
    weight: Any,
    ignore_index: Any,
    reduction: Any,
    want_grad: bool,
) -> tuple[Array, Array | None]:
    k = _kind(kind)
    delta = _validate.non_negative(margin, "margin")
    t = _loss.prepare(logits, target, axis=axis, weight=weight, ignore_index=ignore_index, reduction=reduction)
    xp, z, onehot = t.xp, t.z, t.onehot
    dev = array_api_compat.device(z)
    if z.shape[-1] == 0:  # no classes: every row is ignored (prepare checked the labels)
        row = xp.zeros(z.shape[:-1], dtype=z.dtype, device=dev)
        return _loss.finish(t, row, xp.zeros_like(z) if want_grad else None)

    z_y = xp.sum(xp.where(onehot, z, 0.0), axis=-1, keepdims=True)
    # o_j - o_y for the competitors: a -inf competitor never violates, a -inf target is beaten by every other
    diff = xp.where(z == -_INF, -_INF, xp.where(z_y == -_INF, _INF, z - z_y))
    violation = delta + xp.where(onehot, -_INF, diff)  # -inf at the target: it is not its own competitor
    bad = xp.logical_or(
        xp.any(xp.isnan(z), axis=-1, keepdims=True), xp.any(xp.isnan(violation), axis=-1, keepdims=True)
    )
    hit = violation > 0  # a violation of exactly 0 is satisfied (module notes)

    if k == "crammer_singer":
        worst = xp.max(violation, axis=-1, keepdims=True)  # -inf for a single class
        active = worst > 0
        row = xp.where(active, worst, 0.0)
    else:
        terms = xp.where(hit, violation, 0.0)
        row = cast(xp, xp.sum(cast(xp, terms, t.acc), axis=-1, keepdims=True), z.dtype)
    row = xp.squeeze(xp.where(bad, _NAN, row), axis=-1)
    if not want_grad:
        return _loss.finish(t, row, None)

    if k == "crammer_singer":
        first = xp.argmax(violation, axis=-1, keepdims=True)  # the first of tied maxima
        top = xp.arange(z.shape[-1], device=dev) == first
        grad = xp.where(active, cast(xp, top, z.dtype) - cast(xp, onehot, z.dtype), 0.0)
    else:
        ones = cast(xp, hit, z.dtype)
        grad = ones - cast(xp, onehot, z.dtype) * xp.sum(ones, axis=-1, keepdims=True)
    return _loss.finish(t, row, xp.where(bad, _NAN, grad))


@quiet
def multiclass_hinge_loss(
    logits: Array,
    target: Array,
    /,
    *,
    axis: int = -1,
    kind: str = "crammer_singer",
    margin: float = 1.0,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Array:
    r"""Multiclass hinge loss of scores ``logits`` for class-index targets: Crammer–Singer or Weston–Watkins.

    .. math:: \ell_{\mathrm{CS}} = \max\Bigl(0,\ \Delta + \max_{j \ne y} o_j - o_y\Bigr), \qquad
              \ell_{\mathrm{WW}} = \sum_{j \ne y} \max(0,\ \Delta + o_j - o_y)

    (Crammer & Singer 2001; Weston & Watkins 1999). A row whose target beats every competitor by the margin
    :math:`\Delta` costs exactly 0: the loss asks for margins, not probabilities (module notes).
    ``weight``, ``ignore_index`` and ``reduction`` follow :func:`softmaxkit.cross_entropy`. The
    Weston–Watkins terms are added in float64 for float32 logits.

    Parameters
    ----------
    logits : array_like
        Real scores; ``axis`` holds the ``C`` classes. float16/bfloat16 are computed in float32.
    target : array_like
        Integer class indices with the logits' shape without ``axis``: values in ``[0, C)`` or
        ``ignore_index``.
    axis : int
        The class axis.
    kind : {"crammer_singer", "weston_watkins"}
        Only the strongest competitor counts, or every competitor inside the margin.
    margin : float
        :math:`\Delta \ge 0`.
    weight : array_like, optional
        Per-class weights, shape ``(C,)``, finite and ``>= 0``; a row weighs ``weight[target]``.
    ignore_index : int
        Rows whose target equals it are skipped entirely.
    reduction : {"mean", "sum", "none"}
        ``mean`` divides by the total weight of the rows not ignored (``multi_margin_loss`` divides by the
        number of rows, weighted or not).

    Returns
    -------
    array
        0-d for ``mean``/``sum``, else the per-row losses (each ``>= 0``); the logits' array type and
        (floating) dtype.

    Raises
    ------
    TypeError
        ``target`` not integer; ``logits`` boolean or complex; ``margin`` not a real number.
    ValueError
        An unknown ``kind``; ``margin`` negative or not finite; a class index outside ``[0, C)`` (named with
        its position); shapes that do not match; an unknown ``reduction``; a negative, nan or inf ``weight``.
    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> z = np.array([[3.0, 2.5, 0.0], [5.0, 1.0, 0.0]])
    >>> print(multiclass_hinge_loss(z, np.array([0, 0]), reduction="none"))  # 1 + 2.5 - 3; margin met
    [0.5 0. ]
    >>> print(multiclass_hinge_loss(z, np.array([1, 1]), kind="weston_watkins", reduction="none"))
    [1.5 5. ]
    """
    loss, _ = _hinge(
        logits,
        target,
        axis=axis,
        kind=kind,
        margin=margin,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        want_grad=False,
    )
    return loss


@quiet
def multiclass_hinge_loss_value_and_grad(
    logits: Array,
    target: Array,
    /,
    *,
    axis: int = -1,
    kind: str = "crammer_singer",
    margin: float = 1.0,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> tuple[Array, Array]:
    r""":func:`multiclass_hinge_loss` and a subgradient with respect to ``logits``, in closed form.

    .. math:: g_{\mathrm{CS}} = [\ell_{\mathrm{CS}} > 0]\,(e_{j^*} - e_y), \qquad
              g_{\mathrm{WW}} = \sum_{j \ne y} [\Delta + o_j - o_y > 0]\,(e_j - e_y)

    with :math:`j^*` the first competitor of maximal score, times the row's weight and divided by the ``mean``
    denominator. Away from the kinks (a violation of exactly 0, or tied competitors) it is the gradient; at a
    kink it is the subgradient chosen in the module notes.

    Parameters
    ----------
    logits, target, axis, kind, margin, weight, ignore_index, reduction
        As for :func:`multiclass_hinge_loss`.

    Returns
    -------
    loss : array
        Exactly :func:`multiclass_hinge_loss`'s value.
    grad : array
        A subgradient of the loss with respect to ``logits``, the logits' shape and dtype. With
        ``reduction="none"`` it is that of the summed losses, that is each row's own.

    Raises
    ------
    TypeError, ValueError
        As :func:`multiclass_hinge_loss`.
    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> loss, grad = multiclass_hinge_loss_value_and_grad(np.array([[3.0, 2.5, 2.5]]), np.array([0]))
    >>> print(float(loss), grad)  # tied competitors: the first one takes the subgradient
    0.5 [[-1.  1.  0.]]
    """
    loss, grad = _hinge(
        logits,
        target,
        axis=axis,
        kind=kind,
        margin=margin,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        want_grad=True,
    )
    assert grad is not None
    return loss, grad


for _f in (multiclass_hinge_loss, multiclass_hinge_loss_value_and_grad):
    _doc.special_values(_SPECIAL_VALUES)(_f)

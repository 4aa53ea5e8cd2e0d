r"""What every class-index loss shares: target checks, class weights, ``ignore_index`` and the reduction.

A loss of the family (Taylor, spherical, sparsemax, entmax, sigmoid, hinge, normalisation) computes one value
:math:`\ell_n` and one gradient row :math:`g_n = \partial \ell_n / \partial z_n` per sample; this module turns
them into the value and gradient of the reduced loss, with the conventions of :func:`softmaxkit.cross_entropy`:

* a row whose label is ``ignore_index`` contributes nothing, and its gradient is 0 even if its logits are nan;
* a row weighs :math:`w_{y_n}` (``weight[target[n]]``, 1 without ``weight``);
* ``reduction="mean"`` divides by :math:`\sum_n w_{y_n}` over the rows that are not ignored (torch's
  convention); if that sum is 0 the loss is 0 with gradient 0 (our policy, where torch gives nan);
* ``reduction="none"`` returns :math:`w_{y_n} \ell_n` per row (0 for ignored rows), and its gradient is that of
  the sum, so each row gets its own gradient.

Usage::

    t = prepare(logits, target, axis=axis, weight=weight, ignore_index=ignore_index, reduction=reduction)
    row, grad_row = my_loss(t.xp, t.z, t.y, t.onehot)          # class axis last, in t.z.dtype
    return finish(t, row, grad_row)                            # (loss, gradient or None)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import array_api_compat

from . import _validate
from ._array import (
    Array,
    DType,
    Namespace,
    accumulator,
    as_array,
    cast,
    from_last,
    like,
    namespace_of,
    to_compute,
    to_last,
)

__all__ = ["Targets", "finish", "prepare"]


@dataclass(frozen=True)
class Targets:
    """Logits and class-index targets, checked and laid out with the class axis last."""

    xp: Namespace
    x: Array
    """The logits as given (for their shape and device)."""
    z: Array
    """The logits in their compute dtype, class axis last."""
    axis: int
    out_dtype: DType
    acc: DType
    """Dtype in which the batch sums are added up."""
    y: Array
    """Class indices with ignored rows replaced by 0 (safe to index with)."""
    valid: Array
    """Rows that are not ignored."""
    onehot: Array
    """Boolean, ``onehot[..., c]`` is ``c == y``."""
    w_y: Array
    """Per-row weight: ``weight[y]`` (or 1) for kept rows, 0 for ignored ones."""
    w: Array | None
    """The class weights in the compute dtype, or ``None``."""
    reduction: str
    unknown: Array
    """Rows whose label is outside ``[0, C)``: only possible for JAX tracers (unchecked); their loss is nan."""


def prepare(
    logits: Any,
    target: Any,
    *,
    axis: Any = -1,
    weight: Any = None,
    ignore_index: Any = -100,
    reduction: Any = "mean",
) -> Targets:
    """Check the arguments of a class-index loss and lay them out (class axis last).

    Raises ``TypeError`` for non-integer targets, ``ValueError`` for a target shape that is not the logits' shape
    without ``axis``, for a label outside ``[0, C)`` that is not ``ignore_index``, for a ``weight`` that is not
    ``(C,)`` or holds a negative, nan or infinite entry, and for an unknown ``reduction``.
    """
    ignore = _validate.integer(ignore_index, "ignore_index")
    red = _validate.reduction(reduction)
    xp, x = namespace_of(logits, target, weight, name="logits")
    ax = _validate.axis(axis, x.ndim)
    z, out_dtype = to_compute(xp, x, "logits")
    z = to_last(xp, z, ax)
    n_classes = z.shape[-1]
    batch = tuple(z.shape[:-1])
    dev = array_api_compat.device(z)

    expected = f"the logits' shape without axis {ax}, {batch}"
    tgt = _validate.index_target(xp, like(xp, x, target, "target"), batch, expected, f"logits shape {tuple(x.shape)}")
    valid = _validate.kept(xp, tgt, ignore)
    out_of_range = xp.logical_and(valid, xp.logical_or(tgt < 0, tgt >= n_classes))
    _validate.labels(xp, tgt, n_classes, ignore, f"axis {ax}")
    w = None if weight is None else _validate.class_weight(xp, x, weight, n_classes, z.dtype)

    y = xp.where(valid, tgt, xp.zeros_like(tgt))
    onehot = xp.arange(n_classes, device=dev) == xp.expand_dims(y, axis=-1)
    zero = xp.zeros(batch, dtype=z.dtype, device=dev)
    w_y = cast(xp, valid, z.dtype) if w is None else xp.where(valid, xp.sum(xp.where(onehot, w, 0.0), axis=-1), zero)
    return Targets(
        xp=xp,
        x=x,
        z=z,
        axis=ax,
        out_dtype=out_dtype,
        acc=accumulator(xp, z.dtype, z),
        y=y,
        valid=valid,
        onehot=onehot,
        w_y=w_y,
        w=w,
        reduction=red,
        unknown=out_of_range,
    )


def finish(t: Targets, row: Array, grad_row: Array | None) -> tuple[Array, Array | None]:
    """Weight, mask and reduce per-row losses ``row`` (batch shape) and gradients ``grad_row`` (class axis last).

    Returns the loss in the logits' dtype (a 0-d array unless ``reduction="none"``) and, if ``grad_row`` was
    given, the gradient of the reduced loss with the logits' shape, layout and dtype.
    """
    xp = t.xp
    live = t.w_y > 0  # ignored and zero-weight rows are never read, even when they hold nan or inf
    row = xp.where(t.unknown, float("nan"), xp.where(live, t.w_y * row, xp.zeros_like(row)))
    if t.reduction == "none":
        loss = row
        scale = t.w_y
    else:
        total = xp.sum(cast(xp, row, t.acc))
        if t.reduction == "sum":
            loss = total
            scale = t.w_y
        else:
            denom = xp.sum(cast(xp, t.w_y, t.acc))
            div = xp.where(denom > 0, denom, 1.0)  # divide, never multiply by a reciprocal (subnormal weights)
            loss = xp.where(denom > 0, total / div, 0.0)
            scale = t.w_y / cast(xp, div, t.z.dtype)
    loss = as_array(xp, cast(xp, loss, t.out_dtype))
    if grad_row is None:
        return loss, None
    g = xp.where(xp.expand_dims(live, axis=-1), xp.expand_dims(scale, axis=-1) * grad_row, 0.0)
    g = xp.where(xp.expand_dims(t.unknown, axis=-1), float("nan"), g)
    return loss, cast(xp, from_last(xp, g, t.axis), t.out_dtype)

r"""Standard normalisation :math:`x_i / \sum_j x_j`: the "why not just divide by the sum?" alternative.

It needs non-negative scores and is blind to their scale: ``[1, 2]`` and ``[10, 20]`` both give
``[1/3, 2/3]``, whereas softmax grows confident as the evidence grows (``[0.27, 0.73]`` vs
``[0.00005, 0.99995]``). Logits are unconstrained reals, so a network would first have to be forced to
output non-negative numbers, and a zero score could never be revised by a log-loss (its log is ``-inf``).
"""

from __future__ import annotations

from .. import _validate
from .._array import Array, cast, namespace_of, quiet, to_compute

__all__ = ["normalize"]


@quiet
def normalize(x: Array, /, *, axis: int = -1) -> Array:
    r"""Standard normalisation along ``axis``: :math:`x_i / \sum_j x_j` for non-negative scores.

    Parameters
    ----------
    x : array_like
        Non-negative real scores; float16/bfloat16 are computed in float32 and returned in their own dtype,
        integers promote to the default floating dtype.
    axis : int
        The axis to normalise.

    Returns
    -------
    array
        Same shape, array type and (floating) dtype as ``x``; each row sums to one.

    Raises
    ------
    ValueError
        A negative entry, or a row of zeros (no distribution to form); the first offending position is named.
        ``axis`` out of range.
    TypeError
        ``x`` boolean or complex.

    Special values
    --------------
    ==============================  ====================================
    row                             result
    ==============================  ====================================
    negative entry                  ``ValueError`` (position named)
    all zeros                       ``ValueError`` (row named)
    contains ``nan``                ``nan`` for that row only
    contains ``+inf``               ``nan`` for that row (inf/inf)
    empty axis                      empty result
    float16 / bfloat16              computed in float32, returned as is
    ==============================  ====================================

    Examples
    --------
    >>> import numpy as np
    >>> print(normalize(np.array([1.0, 2.0])), normalize(np.array([10.0, 20.0])))
    [0.33333333 0.66666667] [0.33333333 0.66666667]
    """
    xp, x = namespace_of(x)
    ax = _validate.axis(axis, x.ndim)
    z, out_dtype = to_compute(xp, x, "x")
    pos = _validate.first_true(xp, z < 0)
    if pos is not None:
        raise ValueError(f"normalize needs non-negative scores; x has {_validate.item(xp, z, pos)} at position {pos}")
    if z.shape[ax] == 0:
        return cast(xp, z, out_dtype)
    total = xp.sum(z, axis=ax, keepdims=True)
    pos = _validate.first_true(xp, total == 0)
    if pos is not None:
        row = tuple(slice(None) if i == ax else p for i, p in enumerate(pos))
        shown = tuple(":" if isinstance(r, slice) else r for r in row)
        raise ValueError(f"normalize needs a positive sum; the row x[{', '.join(map(str, shown))}] is all zeros")
    # a +inf score leaves no finite proportion: the whole row is nan (inf/inf), not [nan, 0, ...]
    return cast(xp, xp.where(total == float("inf"), float("nan"), z / total), out_dtype)

r"""The logistic sigmoid :math:`\sigma(x) = 1/(1 + e^{-x})`: one independent yes/no probability per class.

Softmax is the multi-class generalisation of the sigmoid: for two classes,
:math:`\operatorname{softmax}([x, 0])_0 = \sigma(x)`. Used one-vs-rest, sigmoids do not compete: raising one
class's probability leaves the others unchanged, and the outputs need not sum to one. That suits multi-label
problems and is wrong for a single label among many.
"""

from __future__ import annotations

from .._array import Array, cast, namespace_of, quiet, to_compute

__all__ = ["sigmoid"]


@quiet
def sigmoid(x: Array, /) -> Array:
    r"""Logistic sigmoid, elementwise, accurate in both tails.

    .. math:: \sigma(x) = \frac{1}{1 + e^{-x}} = \frac{e^{x}}{1 + e^{x}}

    The first form is used for :math:`x \ge 0` and the second for :math:`x < 0`, so that ``exp`` never
    overflows and :math:`\sigma(-745)` is the subnormal :math:`e^{-745}`, not 0 by cancellation.
    Its derivative is :math:`\sigma(x)(1 - \sigma(x))`.

    Parameters
    ----------
    x : array_like
        Real values; float16/bfloat16 are computed in float32 and returned in their own dtype, integers
        promote to the default floating dtype.

    Returns
    -------
    array
        Same shape, array type and (floating) dtype as ``x``, in ``[0, 1]``.

    Raises
    ------
    TypeError
        ``x`` boolean or complex.

    Special values
    --------------
    ==============================  ====================================
    entry                           result
    ==============================  ====================================
    ``+inf`` / ``-inf``             1 / 0
    ``nan``                         ``nan``
    empty array                     empty result
    float16 / bfloat16              computed in float32, returned as is
    ==============================  ====================================

    Examples
    --------
    >>> import numpy as np
    >>> print(sigmoid(np.array([-np.inf, 0.0, np.inf])))
    [0.  0.5 1. ]
    >>> float(sigmoid(np.array(-745.0)))
    5e-324
    """
    xp, x = namespace_of(x)
    z, out_dtype = to_compute(xp, x, "x")
    e = xp.exp(-xp.abs(z))  # in (0, 1]: never overflows
    one = xp.ones_like(e)
    return cast(xp, xp.where(z >= 0, one / (1.0 + e), e / (1.0 + e)), out_dtype)

r"""Standard normalisation :math:`x_i / \sum_j x_j`: the "why not just divide by the sum?" alternative.

Why it is not enough on its own
-------------------------------
Dividing by the sum gives a distribution only for non-negative scores, and network logits are unconstrained
reals: a network would first have to be forced to output non-negative numbers, and a zero score could never be
revised by a log-loss (its log is ``-inf`` and its gradient is lost). :func:`normalize` takes such scores as
they are and refuses negative ones.

The output layer built on it is :mod:`softmaxkit.family.softplus_normalize`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import array_api_compat

from .. import _doc, _engine, _validate
from .._array import Array, DType, Namespace, cast, from_last, quiet, to_last

__all__ = [
    "normalize",
    "normalize_jacobian",
    "normalize_jvp",
    "normalize_vjp",
]

_INF = float("inf")
_NAN = float("nan")


# ---------------------------------------------------------------------------------- normalize (scores >= 0)
class _Scores(NamedTuple):
    """Non-negative scores with the axis last and masked entries set to 0, and their row sums."""

    xp: Namespace
    z: Array
    keep: Array | None
    axis: int
    out_dtype: DType
    total: Array  # keepdims, of z (scaled); 0 only for fully masked rows (an unmasked all-zero row raised)
    scale: Array  # keepdims: the row maximum (1 where it is 0 or not finite); z holds the scores divided by it
    bad: Array  # keepdims; rows whose result is nan: a nan or +inf among the unmasked scores


def _scores(x: Any, axis: Any, where: Any) -> _Scores:
    xp, z, keep, ax, out_dtype = _engine.entries(x, axis, where)
    negative = z < 0 if keep is None else xp.logical_and(z < 0, keep)
    pos = _validate.first_true(xp, negative)
    if pos is not None:
        raise ValueError(f"normalize needs non-negative scores; x has {_validate.item(xp, z, pos)} at position {pos}")
    if keep is not None:
        z = xp.where(keep, z, 0.0)  # masked entries are never read, whatever they hold
        keep = to_last(xp, keep, ax)
    z = to_last(xp, z, ax)
    if z.shape[-1] > 0:
        # scores up to 1e308 sum past the largest float: divide by the row maximum first, so that the sum lies
        # in [1, K] and p = z / sum keeps every digit (the derivatives divide by the scale at the end)
        m = xp.max(z, axis=-1, keepdims=True)
        bad = xp.logical_not(m < _INF)  # nan or +inf in the row
        scale = xp.where(xp.logical_and(m > 0, xp.logical_not(bad)), m, 1.0)
        z = z / scale
    else:
        scale = xp.ones((*z.shape[:-1], 1), dtype=z.dtype, device=array_api_compat.device(z))
        bad = scale == 0
    total = xp.sum(z, axis=-1, keepdims=True)
    if z.shape[-1] > 0:
        zero = total == 0
        if keep is not None:
            zero = xp.logical_and(zero, xp.any(keep, axis=-1, keepdims=True))
        pos = _validate.first_true(xp, zero)
        if pos is not None:
            shown = [str(i) for i in pos[:-1]]
            shown.insert(ax, ":")
            unmasked = "" if keep is None else " where it is not masked"
            raise ValueError(f"normalize needs a positive sum; the row x[{', '.join(shown)}] is all zeros{unmasked}")
    return _Scores(xp, z, keep, ax, out_dtype, total, scale, bad)


def _masked_out(s: _Scores, r: Array) -> Array:
    """``r`` with masked entries 0, nan rows nan, in the caller's layout and dtype."""
    xp = s.xp
    if s.keep is not None:
        r = xp.where(s.keep, r, 0.0)
    return cast(xp, from_last(xp, _engine.nan_rows(xp, s.bad, r), s.axis), s.out_dtype)


_NORMALIZE_TABLE = """
    ==============================  ====================================
    row                             result
    ==============================  ====================================
    negative unmasked entry         ``ValueError`` (position named)
    all unmasked entries zero       ``ValueError`` (row named)
    masked entry (``where``)        {masked}
    all masked                      {all_masked}
    contains ``nan``                ``nan`` for that row only
    contains ``+inf``               ``nan`` for that row (inf/inf)
    empty axis                      empty result
    float16 / bfloat16              computed in float32, returned as is
    ==============================  ====================================
"""


@quiet
def normalize(x: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    r"""Standard normalisation along ``axis``: :math:`x_i / \sum_j x_j` for non-negative scores.

    The scale-blind alternative to softmax (module notes; de Brébisson & Vincent 2016). For unconstrained
    logits use :func:`softplus_normalize`.

    Parameters
    ----------
    x : array_like
        Non-negative real scores; float16/bfloat16 are computed in float32 and returned in their own dtype,
        integers promote to the default floating dtype.
    axis : int
        The axis to normalise.
    where : array of bool, optional
        Broadcastable to ``x``. Entries where it is False are left out (never read): probability exactly 0.

    Returns
    -------
    array
        Same shape, array type and (floating) dtype as ``x``; each row sums to one (fully masked rows: 0).

    Raises
    ------
    ValueError
        A negative entry, or a row of zeros (no distribution to form); the first offending position is named.
        ``axis`` out of range; ``where`` does not broadcast.
    TypeError
        ``x`` boolean or complex; ``where`` not boolean.
    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(normalize(np.array([1.0, 2.0])), normalize(np.array([10.0, 20.0])))
    [0.33333333 0.66666667] [0.33333333 0.66666667]
    """
    s = _scores(x, axis, where)
    if s.z.shape[-1] == 0:
        return _masked_out(s, s.z)
    xp = s.xp
    return _masked_out(s, xp.where(s.total == 0, 0.0, s.z / xp.where(s.total == 0, 1.0, s.total)))


def _normalize_product(x: Any, v: Any, name: str, axis: Any, where: Any, vjp: bool) -> Array:
    s = _scores(x, axis, where)
    xp = s.xp
    vz = to_last(xp, _engine.cotangent(xp, x, v, name, s.z.dtype), s.axis)
    if s.z.shape[-1] == 0:
        return _masked_out(s, s.z)
    if s.keep is not None:
        vz = xp.where(s.keep, vz, 0.0)
    safe = xp.where(s.total == 0, 1.0, s.total)
    p = s.z / safe
    if vjp:  # (g_j - <g, p>) / S
        out = (vz - xp.sum(xp.where(p == 0, 0.0, p * vz), axis=-1, keepdims=True)) / safe
    else:  # (v_i - p_i sum_j v_j) / S
        out = (vz - p * xp.sum(vz, axis=-1, keepdims=True)) / safe
    return _masked_out(s, xp.where(s.total == 0, 0.0, out / s.scale))  # S = scale * total


@quiet
def normalize_jvp(x: Array, v: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    r"""Jacobian-vector product of :func:`normalize`.

    .. math:: (J v)_i = \frac{v_i - p_i \sum_j v_j}{\sum_k x_k}, \qquad
              J_{ij} = \frac{\partial p_i}{\partial x_j} = \frac{\delta_{ij} - p_i}{\sum_k x_k}

    Parameters
    ----------
    x : array_like
        Non-negative scores, as for :func:`normalize`.
    v : array_like
        Tangent, ``x``'s shape (in ``x``'s layout; it is not moved by ``where``).
    axis, where
        As for :func:`normalize`; masked entries of ``v`` are ignored.

    Returns
    -------
    array
        Same shape as ``x``; each row sums to zero.

    Raises
    ------
    ValueError
        ``v``'s shape differs from ``x``'s; and as :func:`normalize`.
    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(normalize_jvp(np.array([1.0, 3.0]), np.array([1.0, 0.0])))
    [ 0.1875 -0.1875]
    """
    return _normalize_product(x, v, "v", axis, where, vjp=False)


@quiet
def normalize_vjp(x: Array, g: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    r"""Vector-Jacobian product of :func:`normalize`: the gradient of :math:`\langle g, p \rangle`.

    .. math:: (g^\top J)_j = \frac{g_j - \langle g, p \rangle}{\sum_k x_k}

    (:math:`J` is not symmetric, so this differs from :func:`normalize_jvp`.)

    Parameters
    ----------
    x : array_like
        Non-negative scores, as for :func:`normalize`.
    g : array_like
        Cotangent, ``x``'s shape.
    axis, where
        As for :func:`normalize`; masked entries of ``g`` are ignored.

    Returns
    -------
    array
        Same shape as ``x``.

    Raises
    ------
    ValueError
        ``g``'s shape differs from ``x``'s; and as :func:`normalize`.
    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> print(normalize_vjp(np.array([1.0, 3.0]), np.array([1.0, 0.0])))
    [ 0.1875 -0.0625]
    """
    return _normalize_product(x, g, "g", axis, where, vjp=True)


@quiet
def normalize_jacobian(x: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    r"""The Jacobian of :func:`normalize` per row: :math:`J_{ij} = (\delta_{ij} - p_i) / \sum_k x_k`.

    Parameters
    ----------
    x : array_like
        Non-negative scores, as for :func:`normalize`.
    axis, where
        As for :func:`normalize`.

    Returns
    -------
    array
        Shape ``batch + (K, K)`` where ``batch`` is ``x``'s shape without ``axis`` and ``K = x.shape[axis]``;
        ``J[..., i, j]`` is :math:`\partial p_i / \partial x_j`. Masked rows and columns are 0.

    Raises
    ------
    TypeError, ValueError
        As :func:`normalize`.

    Special values
    --------------
    As :func:`normalize_jvp`, for the row's matrix; an empty axis gives shape ``batch + (0, 0)``.

    Examples
    --------
    >>> import numpy as np
    >>> print(normalize_jacobian(np.array([1.0, 3.0])))
    [[ 0.1875 -0.0625]
     [-0.1875  0.0625]]
    """
    s = _scores(x, axis, where)
    xp, z = s.xp, s.z
    n = z.shape[-1]
    eye = xp.eye(n, dtype=z.dtype, device=array_api_compat.device(z))
    safe = xp.where(s.total == 0, 1.0, s.total)
    col = xp.expand_dims(z / safe, axis=-1)
    jac = (eye - col) / xp.expand_dims(safe, axis=-1) / xp.expand_dims(s.scale, axis=-1)
    if s.keep is not None:
        both = xp.logical_and(xp.expand_dims(s.keep, axis=-1), xp.expand_dims(s.keep, axis=-2))
        jac = xp.where(both, jac, 0.0)
    jac = xp.where(xp.expand_dims(s.total == 0, axis=-1), 0.0, jac)
    return cast(xp, xp.where(xp.expand_dims(s.bad, axis=-1), _NAN, jac), s.out_dtype)


_doc.special_values(_NORMALIZE_TABLE, masked="exactly 0", all_masked="all zeros")(normalize)
for _f in (normalize_jvp, normalize_vjp):
    _doc.special_values(_NORMALIZE_TABLE, masked="exactly 0", all_masked="zeros")(_f)

"""Argument checks. Each raises ``ValueError`` or ``TypeError`` naming the argument and the offending value.

Value checks that need the data (labels in range, non-negative weights) are skipped for JAX tracers inside
``jax.jit``, where the values are not known; everything that depends only on shapes and dtypes is always checked.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ._array import Array, Namespace, is_traced, like

REDUCTIONS = ("mean", "sum", "none")


def axis(value: Any, ndim: int, name: str = "axis") -> int:
    """Normalise an axis to ``0 <= axis < ndim``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {value!r}")
    if ndim == 0:
        raise ValueError(f"{name}={value} needs an array with at least one dimension; got a 0-d array")
    v = int(value)
    if not -ndim <= v < ndim:
        raise ValueError(f"{name}={v} is out of range for an array with {ndim} dimension(s)")
    return v % ndim


def real_scalar(value: Any, name: str) -> float:
    """A Python real number (not bool), as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {value!r}")
    return float(value)


def positive(value: Any, name: str) -> float:
    """A finite number > 0 (temperature, softcap)."""
    v = real_scalar(value, name)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return v


def non_negative(value: Any, name: str) -> float:
    """A finite number >= 0 (z_loss)."""
    v = real_scalar(value, name)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    return v


def unit_interval(value: Any, name: str) -> float:
    """A number in [0, 1] (label_smoothing)."""
    v = real_scalar(value, name)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1]; got {value!r}")
    return v


def reduction(value: Any) -> str:
    if value not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(map(repr, REDUCTIONS))}; got {value!r}")
    return str(value)


def integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {value!r}")
    return int(value)


def same_shape(xp: Namespace, ref: Array, other: Any, name: str, ref_name: str = "x") -> Array:
    """``other`` as an array of ``xp`` with exactly ``ref``'s shape."""
    arr = like(xp, ref, other)
    if tuple(arr.shape) != tuple(ref.shape):
        raise ValueError(f"{name} must have the shape of {ref_name}, {tuple(ref.shape)}; got shape {tuple(arr.shape)}")
    return arr


def mask(xp: Namespace, ref: Array, where: Any) -> Array | None:
    """A boolean ``where=`` mask broadcast to ``ref``'s shape (``None`` passes through)."""
    if where is None:
        return None
    arr = like(xp, ref, where)
    if arr.dtype != xp.bool:
        raise TypeError(f"where must be a boolean array; got dtype {arr.dtype}")
    try:
        return xp.broadcast_to(arr, tuple(ref.shape))
    except (ValueError, RuntimeError, TypeError) as exc:
        raise ValueError(
            f"where with shape {tuple(arr.shape)} does not broadcast to x's shape {tuple(ref.shape)}"
        ) from exc


def first_true(xp: Namespace, flags: Array) -> tuple[int, ...] | None:
    """Position (as an index tuple) of the first True in ``flags``, or None; None too for JAX tracers."""
    if is_traced(flags) or flags.size == 0:
        return None
    flat = xp.reshape(flags, (-1,))
    if not bool(xp.any(flat)):
        return None
    first = int(xp.nonzero(flat)[0][0])
    return tuple(int(i) for i in np.unravel_index(first, tuple(flags.shape)))


def item(xp: Namespace, x: Array, position: tuple[int, ...]) -> Any:
    """The Python value of ``x`` at ``position``."""
    value = x[position] if position else x
    return float(value) if xp.isdtype(x.dtype, "real floating") else int(value)

"""Argument checks. Each raises ``ValueError`` or ``TypeError`` naming the argument and the offending value.

Value checks that need the data (labels in range, non-negative weights) are skipped for JAX tracers inside
``jax.jit``, where the values are not known; everything that depends only on shapes and dtypes is always checked.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

from ._array import Array, DType, Namespace, cast, is_traced, like, to_compute

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


def axes(value: Any, ndim: int, name: str = "axis") -> tuple[int, ...]:
    """Normalise ``None`` (every axis, as in SciPy) or a tuple of distinct axes to non-negative ints."""
    if value is None:
        return tuple(range(ndim))
    if not isinstance(value, tuple):
        raise TypeError(f"{name} must be an int, a tuple of ints or None; got {value!r}")
    if not value:
        raise ValueError(f"{name}=() names no axis; give at least one, or None for every axis")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} must be an int, a tuple of ints or None; got {value!r}")
        if not -ndim <= int(v) < ndim:
            raise ValueError(f"{name}={value} is out of range for an array with {ndim} dimension(s)")
        out.append(int(v) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{name}={value} repeats an axis")
    return tuple(out)


def temperature(value: Any) -> Any:
    """A temperature: as :func:`positive`, except that a JAX tracer (``jax.jit``) passes unchecked.

    A traced value is used as it is (its value is unknown); a concrete JAX 0-d array is checked as a number.
    """
    if is_traced(value):
        if value.ndim != 0:
            raise ValueError(f"temperature must be a scalar; got a traced array of shape {value.shape}")
        return value
    kind = str(getattr(value, "dtype", ""))
    if getattr(value, "ndim", None) == 0 and ("float" in kind or "int" in kind) and not isinstance(value, numbers.Real):
        value = float(value)  # a concrete 0-d array (JAX, torch, NumPy): checked as the number it holds
    return positive(value, "temperature")


def real_scalar(value: Any, name: str) -> float:
    """A Python real number (not bool), as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {value!r}")
    return float(value)


SCALE_RANGE = (float(np.finfo(np.float32).smallest_normal), float(np.finfo(np.float32).max))
"""Where a scale (temperature, softcap) may lie: float32's normal numbers, about ``[1.2e-38, 3.4e38]``.

float16, bfloat16 and float32 logits are computed in float32: a scale outside its range would be rounded to 0 or
inf there (all-nan rows), and a subnormal one keeps too few digits. One range for every dtype keeps a call's
validity independent of the dtype (float64 could hold more, no use needs it)."""


def positive(value: Any, name: str) -> float:
    """A number > 0 that float32 holds as a normal number (temperature, softcap, eps); see :data:`SCALE_RANGE`."""
    v = real_scalar(value, name)
    if not 0.0 < v < math.inf:  # comparisons, not math.isfinite: torch.compile(dynamic=True) traces them
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    lo, hi = SCALE_RANGE
    if not lo <= v <= hi:
        raise ValueError(
            f"{name} must lie in [{lo:.7g}, {hi:.7g}] (float32's normal range, in which float16/bfloat16/float32 "
            f"logits are computed); got {value!r}"
        )
    return v


def non_negative(value: Any, name: str) -> float:
    """A finite number >= 0 (z_loss)."""
    v = real_scalar(value, name)
    if not 0.0 <= v < math.inf:  # False for nan, as math.isfinite; traceable by torch.compile
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


_reduction = reduction  # for the functions whose argument of that name hides the check



def integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {value!r}")
    return int(value)


def same_shape(xp: Namespace, ref: Array, other: Any, name: str, ref_name: str = "x") -> Array:
    """``other`` as an array of ``xp`` with exactly ``ref``'s shape."""
    arr = like(xp, ref, other, name)
    if tuple(arr.shape) != tuple(ref.shape):
        raise ValueError(f"{name} must have the shape of {ref_name}, {tuple(ref.shape)}; got shape {tuple(arr.shape)}")
    return arr


def mask(xp: Namespace, ref: Array, where: Any) -> Array | None:
    """A boolean ``where=`` mask broadcast to ``ref``'s shape (``None`` passes through)."""
    if where is None:
        return None
    arr = like(xp, ref, where, "where")
    if arr.dtype != xp.bool:
        raise TypeError(f"where must be a boolean array; got dtype {arr.dtype}")
    try:
        return xp.broadcast_to(arr, tuple(ref.shape))
    except (ValueError, RuntimeError, TypeError) as exc:
        raise ValueError(
            f"where with shape {tuple(arr.shape)} does not broadcast to x's shape {tuple(ref.shape)}"
        ) from exc


def kept(xp: Namespace, target: Array, ignore: int) -> Array:
    """``target != ignore``; all True when ``ignore`` lies outside ``target``'s integer dtype (no label equals it).

    Comparing an int32 JAX array with ``2**31``, or a torch int64 tensor with ``2**70``, overflows instead.
    """
    info = xp.iinfo(target.dtype)
    if not info.min <= ignore <= info.max:
        return xp.ones(tuple(target.shape), dtype=xp.bool, device=array_api_compat.device(target))
    return target != ignore


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


# ------------------------------------------------------------------------------- class targets and weights
@dataclass(frozen=True)
class CrossEntropyOptions:
    """The scalar options of a cross-entropy, validated (see :func:`cross_entropy_options`); hashable."""

    ignore_index: int = -100
    label_smoothing: float = 0.0
    reduction: str = "mean"
    z_loss: float = 0.0
    softcap: float | None = None


def cross_entropy_options(
    ignore_index: Any = -100,
    label_smoothing: Any = 0.0,
    reduction: Any = "mean",
    z_loss: Any = 0.0,
    softcap: Any = None,
) -> CrossEntropyOptions:
    """Check the scalar options of a cross-entropy; errors name the argument and its value."""
    return CrossEntropyOptions(
        integer(ignore_index, "ignore_index"),
        unit_interval(label_smoothing, "label_smoothing"),
        _reduction(reduction),
        non_negative(z_loss, "z_loss"),
        None if softcap is None else positive(softcap, "softcap"),
    )


def index_target(xp: Namespace, target: Array, batch: tuple[int, ...], expected: str, context: str = "") -> Array:
    """Class indices: an integer (not boolean) array of shape ``batch``. ``expected`` names that shape for the
    message ("the logits' shape without axis 1, (4,)"), ``context`` adds the data's shape after the one got."""
    if target.dtype == xp.bool or not xp.isdtype(target.dtype, "integral"):
        raise TypeError(f"target must hold integer class indices; got dtype {target.dtype}")
    if tuple(target.shape) != tuple(batch):
        note = f" ({context})" if context else ""
        raise ValueError(f"target (class indices) must have {expected}; got shape {tuple(target.shape)}{note}")
    return target


def labels(xp: Namespace, target: Array, n_classes: int, ignore_index: int, along: str) -> None:
    """Every class index in ``[0, n_classes)`` or ``ignore_index``; the first one that is not is named with its
    position. ``along`` names the class axis for the message ("axis 1", "the vocabulary", ...). Skipped for JAX
    tracers (values unknown)."""
    bad = xp.logical_and(kept(xp, target, ignore_index), xp.logical_or(target < 0, target >= n_classes))
    pos = first_true(xp, bad)
    if pos is not None:
        raise ValueError(
            f"target holds class index {item(xp, target, pos)} at position {pos}, outside [0, {n_classes}) for "
            f"logits with {n_classes} classes along {along} (ignore_index={ignore_index})"
        )


def weight_shape(shape: tuple[int, ...], n_classes: int, name: str = "weight") -> None:
    """Per-class weights have shape ``(n_classes,)`` (plain Python: also inside a traced torch function)."""
    if len(shape) != 1 or shape[0] != n_classes:
        raise ValueError(f"{name} must be a 1-d array with one entry per class ({n_classes}); got shape {shape}")


def class_weight(
    xp: Namespace, ref: Array, weight: Any, n_classes: int, dtype: DType, name: str = "weight", *, values: bool = True
) -> Array:
    """Per-class weights: shape ``(n_classes,)``, real, finite and ``>= 0`` (values only when known, and only
    with ``values``: reading them syncs a device with the host); returned in ``dtype`` on ``ref``'s device."""
    w = like(xp, ref, weight, name)
    weight_shape(tuple(w.shape), n_classes, name)
    w = cast(xp, to_compute(xp, w, name)[0], dtype)
    pos = first_true(xp, xp.logical_not(xp.logical_and(w >= 0, w < math.inf))) if values else None
    if pos is not None:
        raise ValueError(f"{name} must be finite and >= 0; got {item(xp, w, pos)} for class {pos[0]}")
    return w


def probabilities(xp: Namespace, t: Array, layout: str = "") -> None:
    """Probability targets: finite and ``>= 0`` (values only when known); ``layout`` is added to the position
    in the message when the array checked is laid out differently from the caller's."""
    pos = first_true(xp, xp.logical_not(xp.logical_and(t >= 0, t < math.inf)))
    if pos is not None:
        raise ValueError(
            f"target probabilities must be finite and >= 0; got {item(xp, t, pos)} at position {pos}{layout}"
        )

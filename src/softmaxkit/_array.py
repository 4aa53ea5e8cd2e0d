"""Array namespace and dtype policy, kept in one place.

Every public function accepts any array that array-api-compat understands (NumPy, array-api-strict, PyTorch,
JAX, ...) and also plain Python sequences, which become NumPy arrays. The result has the array type of the
input.

The dtype policy, shared by every function of the package:

* float32 / float64 are computed in their own precision;
* float16 / bfloat16 are computed in float32 (their 8 or 11 bits of mantissa are too few for a sum of
  exponentials) and the result is returned in the input's dtype;
* integer inputs are promoted to the namespace's default real floating dtype (float64 for NumPy, the
  torch default dtype for PyTorch, float32 for JAX unless ``jax_enable_x64``);
* booleans and complex numbers are rejected with a ``TypeError``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import array_api_compat
import numpy as np

Array = Any
"""Any array-API array: ``numpy.ndarray``, ``torch.Tensor``, ``jax.Array``, ``array_api_strict.Array``."""

Namespace = Any
"""An array-API namespace (what ``array_api_compat.array_namespace`` returns)."""

DType = Any


def namespace_of(x: Any) -> tuple[Namespace, Array]:
    """Return ``(xp, x)`` for the leading data argument; Python sequences and scalars become NumPy arrays."""
    if not array_api_compat.is_array_api_obj(x):
        x = np.asarray(x)
    return array_api_compat.array_namespace(x), x


def like(xp: Namespace, ref: Array, value: Any) -> Array:
    """Return ``value`` as an array of ``xp`` on ``ref``'s device (``None`` passes through)."""
    if value is None:
        return None
    if array_api_compat.is_array_api_obj(value):
        if array_api_compat.array_namespace(value) is not xp:
            raise TypeError(
                f"all arrays must come from one array library; got {type(ref).__name__} and {type(value).__name__}"
            )
        return value
    return xp.asarray(value, device=array_api_compat.device(ref))


def compute_dtype(xp: Namespace, dtype: DType, name: str) -> DType:
    """The dtype in which an input of ``dtype`` is computed (see the module docstring)."""
    if xp.isdtype(dtype, "real floating"):
        if xp.finfo(dtype).bits < 32:
            return xp.float32
        return dtype
    if xp.isdtype(dtype, "integral"):
        return xp.__array_namespace_info__().default_dtypes()["real floating"]
    raise TypeError(f"{name} must hold real numbers (floating or integer); got dtype {dtype}")


def result_dtype(xp: Namespace, dtype: DType, name: str) -> DType:
    """The dtype returned for an input of ``dtype``: its own if floating, else the computed one."""
    if xp.isdtype(dtype, "real floating"):
        return dtype
    return compute_dtype(xp, dtype, name)


def to_compute(xp: Namespace, x: Array, name: str) -> tuple[Array, DType]:
    """Cast ``x`` to its compute dtype; return it with the dtype the caller must give back."""
    out = result_dtype(xp, x.dtype, name)
    work = compute_dtype(xp, x.dtype, name)
    return (x if x.dtype == work else xp.astype(x, work)), out


def accumulator(xp: Namespace, dtype: DType, ref: Array) -> DType:
    """The dtype in which to add up many terms of ``dtype``: float64 for float32 where the device has it.

    Summing the per-class terms of a loss in float32 costs a few ulps that a float64 accumulator avoids; the
    terms themselves stay in the compute dtype.
    """
    if dtype == xp.float32:
        info = xp.__array_namespace_info__()
        if "float64" in info.dtypes(kind="real floating", device=array_api_compat.device(ref)):
            return xp.float64
    return dtype


def cast(xp: Namespace, x: Array, dtype: DType) -> Array:
    """``astype`` that does nothing when the dtype already matches."""
    return x if x.dtype == dtype else xp.astype(x, dtype)


def is_traced(x: Array) -> bool:
    """True for a JAX tracer: its values are unknown, so value checks must be skipped."""
    if not array_api_compat.is_jax_array(x):
        return False
    import jax

    return isinstance(x, jax.core.Tracer)


def to_last(xp: Namespace, x: Array, axis: int) -> Array:
    """Move ``axis`` (already normalised to be non-negative) to the end."""
    return x if axis == x.ndim - 1 else xp.moveaxis(x, axis, -1)


def from_last(xp: Namespace, x: Array, axis: int) -> Array:
    """Undo :func:`to_last`."""
    return x if axis == x.ndim - 1 else xp.moveaxis(x, -1, axis)


P = ParamSpec("P")
R = TypeVar("R")


def quiet(func: Callable[P, R]) -> Callable[P, R]:
    """Silence NumPy's floating-point warnings inside ``func``.

    Every special value (``0 * inf``, ``log(0)``, ``inf - inf``) is handled on purpose and documented in the
    function's table, so NumPy's ``RuntimeWarning`` would only be noise.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with np.errstate(all="ignore"):
            return func(*args, **kwargs)

    return wrapper

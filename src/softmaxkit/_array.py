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


def _is_numpy(x: Any) -> bool:
    return isinstance(x, (np.ndarray, np.generic))


def _from_python(x: Any, name: str) -> Array:
    """A Python sequence or scalar as a NumPy array of numbers; refuses what holds no numbers, and masked arrays."""
    if isinstance(x, np.ma.MaskedArray):
        # np.asarray would drop the mask and compute with the masked entries' data
        raise TypeError(
            f"{name} is a numpy.ma.MaskedArray, whose mask would be ignored; pass its data with where=~mask "
            f"(softmax, log_softmax, logsumexp) or a filled array"
        )
    if x is None or isinstance(x, (str, bytes, dict, set, frozenset)):
        raise TypeError(f"{name} must be an array or a sequence of numbers; got {type(x).__name__}")
    try:
        arr = np.asarray(x)
    except ValueError as exc:
        raise ValueError(f"{name} is a ragged sequence (its rows differ in length), not an array") from exc
    if arr.dtype.kind not in "biufc":
        raise TypeError(f"{name} must be an array or a sequence of numbers; got {type(x).__name__} of {arr.dtype}")
    return arr


def _dense(x: Any, name: str) -> None:
    """Refuse sparse tensors (torch's sparse layouts): the generic code needs a strided array."""
    layout = getattr(x, "layout", None)
    if layout is not None and array_api_compat.is_torch_array(x) and str(layout) != "torch.strided":
        raise TypeError(f"{name} is a sparse torch tensor ({layout}); pass {name}.to_dense()")


def as_array(xp: Namespace, x: Any) -> Array:
    """``x`` as an array of ``xp``: a NumPy scalar (what NumPy's reductions return) becomes a 0-d array.

    An array is returned as it is (``torch.asarray`` of a tensor that requires grad would warn).
    """
    if isinstance(x, np.generic) or not array_api_compat.is_array_api_obj(x):
        return xp.asarray(x)
    return x


def namespace_of(x: Any, *others: Any, name: str = "x") -> tuple[Namespace, Array]:
    """Return ``(xp, x)`` for the leading data argument ``x``.

    ``xp`` is the library of ``x`` or, when ``x`` is a NumPy array or a Python sequence, that of the first of
    ``others`` (the call's other array arguments) that comes from another library: NumPy arrays and sequences
    next to a JAX array or a torch tensor are converted to it (what a JAX or torch user with a NumPy data loader
    passes). Two different tensor libraries are refused by :func:`like`. Python sequences and scalars become
    NumPy arrays; ``None``, strings, mappings, ragged sequences and NumPy masked arrays are refused, naming
    ``name``.
    """
    given = x
    if not array_api_compat.is_array_api_obj(x) or isinstance(x, np.ma.MaskedArray):
        x = _from_python(x, name)
    _dense(x, name)
    if _is_numpy(x):
        for other in others:
            if array_api_compat.is_array_api_obj(other) and not _is_numpy(other):
                xp = array_api_compat.array_namespace(other)
                # a sequence as given, so that Python floats take xp's default dtype as in xp.asarray
                return xp, xp.asarray(given, device=array_api_compat.device(other))
    return array_api_compat.array_namespace(x), x


def like(xp: Namespace, ref: Array, value: Any, name: str = "value") -> Array:
    """Return ``value`` as an array of ``xp`` on ``ref``'s device (``None`` passes through).

    NumPy arrays and Python sequences are converted to ``xp``; an array of another tensor library is refused.
    """
    if value is None:
        return None
    if array_api_compat.is_array_api_obj(value) and not isinstance(value, np.ma.MaskedArray):
        _dense(value, name)
        if array_api_compat.array_namespace(value) is xp:
            return value
        if not _is_numpy(value):
            raise TypeError(
                f"all arrays must come from one array library (NumPy arrays and sequences are converted to the "
                f"other one); got {type(ref).__name__} and {type(value).__name__} for {name}"
            )
    else:
        _from_python(value, name)  # refuses what is not a sequence of numbers; the sequence goes on as given
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

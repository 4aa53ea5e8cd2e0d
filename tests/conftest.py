"""Shared fixtures and helpers: the array-library fixture ``xp``, the dtype -> tolerance table, seeded generators.

Every reference test that takes the ``xp`` fixture runs on NumPy, array-api-strict, PyTorch (CPU) and JAX
(CPU, with 64-bit enabled so that float64 is tested too), and once more on NumPy with the numba kernels forced
(``numpy-numba``: every NumPy float32/float64 input of any size goes to softmaxkit.kernels).
"""

from __future__ import annotations

import importlib
import math
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")



def _optional(name: str) -> Any:
    """An optional array library, or None where it is not installed (its ``xp`` cases are then skipped)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


array_api_strict = _optional("array_api_strict")
torch = _optional("torch")
jax = _optional("jax")
jnp = None if jax is None else importlib.import_module("jax.numpy")

if torch is None or not torch.cuda.is_available():
    # Triton fixes interpreted-or-compiled when it is imported (and when each kernel is decorated): without a GPU
    # its kernels can only run in the interpreter, so choose it before anything (torch included) imports triton.
    os.environ.setdefault("TRITON_INTERPRET", "1")

if jax is not None:
    jax.config.update("jax_enable_x64", True)

# ------------------------------------------------------------------------------------------ tolerance table
# Unit roundoff-ish epsilon of each dtype we compute in. Accuracy bounds in the tests are written as multiples
# of EPS[dtype]; the multiples come from the conditioning analysis in softmaxkit.softmax's module notes.
EPS: dict[str, float] = {
    "float64": float(np.finfo(np.float64).eps),  # 2.2e-16
    "float32": float(np.finfo(np.float32).eps),  # 1.2e-7
    "float16": float(np.finfo(np.float16).eps),  # 9.8e-4
    "bfloat16": 2.0**-7,  # 7.8e-3
}

# Tolerance for comparing two implementations of the same quantity (backends, autodiff, closed forms),
# as (rtol, atol). Looser than the accuracy bounds because both sides carry rounding error.
TOL: dict[str, tuple[float, float]] = {
    "float64": (1e-12, 1e-13),
    "float32": (2e-5, 2e-6),
    "float16": (4e-3, 1e-3),
    "bfloat16": (3e-2, 1e-2),
}


def dtype_name(dtype: Any) -> str:
    return str(dtype).rsplit(".", 1)[-1].replace("dtype(", "").replace(")", "").strip("'")


def tol(dtype: Any) -> dict[str, float]:
    rtol, atol = TOL[dtype_name(dtype)]
    return {"rtol": rtol, "atol": atol}


def eps(dtype: Any) -> float:
    return EPS[dtype_name(dtype)]


# ------------------------------------------------------------------------------------------ shared helpers
def seeded_rng(*key: object) -> np.random.Generator:
    """A generator seeded by the key, the same in every process (``hash`` of a str is salted)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


FD_STEP = 1e-6
"""Step of the float64 central differences that check analytic derivatives."""


def fd_atol(scale: float) -> float:
    """Absolute accuracy of a float64 central difference of a function of magnitude ``scale``: rounding / h + h^2."""
    return 16 * (EPS["float64"] * (1.0 + scale) / FD_STEP + FD_STEP**2)


# ----------------------------------------------------------------------------------------- array libraries
@dataclass(frozen=True)
class ArrayLibrary:
    """One array library: how to make its arrays from NumPy and read them back."""

    name: str
    xp: Any
    asarray: Callable[[Any, Any], Any]
    dtypes: dict[str, Any]

    def __call__(self, a: Any, dtype: str | None = None) -> Any:
        a = np.asarray(a)
        if dtype is None:
            dtype = {"f": "float64", "i": "int64", "u": "int64", "b": "bool"}[a.dtype.kind]
        return self.asarray(a, self.dtypes[dtype])

    def __repr__(self) -> str:
        return self.name


def _torch_asarray(a: np.ndarray, dtype: Any) -> Any:
    if dtype == torch.bfloat16:
        return torch.asarray(a.astype(np.float32)).to(torch.bfloat16)
    return torch.asarray(a.copy(), dtype=dtype)


_COMMON = ("float64", "float32", "float16", "int64", "int32", "bool")
_NUMPY_DTYPES = {k: np.dtype(k) for k in _COMMON}


def _numpy_asarray(a: np.ndarray, dtype: Any) -> Any:
    return np.asarray(a, dtype=dtype)


LIBRARY_NAMES = ("numpy", "array_api_strict", "torch", "jax", "numpy-numba")
"""Every case of the ``xp`` fixture; the ones whose library is missing are skipped."""

LIBRARIES: dict[str, ArrayLibrary] = {
    "numpy": ArrayLibrary("numpy", np, _numpy_asarray, _NUMPY_DTYPES),
    # NumPy arrays, with the numba kernels forced for the whole test (see the ``xp`` fixture)
    "numpy-numba": ArrayLibrary("numpy-numba", np, _numpy_asarray, _NUMPY_DTYPES),
}
if array_api_strict is not None:
    LIBRARIES["array_api_strict"] = ArrayLibrary(
        "array_api_strict",
        array_api_strict,
        lambda a, d: array_api_strict.asarray(a, dtype=d),
        {k: getattr(array_api_strict, k) for k in _COMMON if k != "float16"},
    )
if torch is not None:
    LIBRARIES["torch"] = ArrayLibrary(
        "torch", torch, _torch_asarray, {**{k: getattr(torch, k) for k in _COMMON}, "bfloat16": torch.bfloat16}
    )
if jnp is not None:
    LIBRARIES["jax"] = ArrayLibrary(
        "jax",
        jnp,
        lambda a, d: jnp.asarray(a, dtype=d),
        {**{k: getattr(jnp, k) for k in _COMMON}, "bfloat16": jnp.bfloat16},
    )
LIBRARIES = {name: LIBRARIES[name] for name in LIBRARY_NAMES if name in LIBRARIES}  # the cases' order

FORCED_BACKENDS = {"numpy-numba": "numba"}
"""Library entries that run under ``softmaxkit.backend(...)``: the name of the softmaxkit backend they force."""


def to_numpy(a: Any) -> np.ndarray:
    """Any backend's array (or a tuple of them) as a NumPy array; bfloat16 becomes float32."""
    if torch is not None and isinstance(a, torch.Tensor):
        a = a.detach().cpu()
        if a.dtype == torch.bfloat16:
            a = a.float()
        return a.numpy()
    if jax is not None and isinstance(a, jax.Array):
        if a.dtype == jnp.bfloat16:
            a = a.astype(jnp.float32)
        return np.asarray(a)
    return np.asarray(a)  # NumPy, array-api-strict (which implements __array__ / dlpack)


@pytest.fixture(params=LIBRARY_NAMES, ids=LIBRARY_NAMES)
def xp(request: pytest.FixtureRequest) -> Iterator[ArrayLibrary]:
    name = str(request.param)
    if name not in LIBRARIES:
        pytest.importorskip(name)
    if name in FORCED_BACKENDS:
        import softmaxkit

        with softmaxkit.backend(FORCED_BACKENDS[name]):
            yield LIBRARIES[name]
    else:
        yield LIBRARIES[name]


@pytest.fixture(params=["float64", "float32"])
def float_dtype(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# ------------------------------------------------------------------ policy cases that several suites pin
def assert_nothing_to_average(loss: Any, grad: Any = None) -> None:
    """Our policy where ``reduction="mean"`` has nothing to average (every label ignored, or a zero total weight):
    the loss is exactly 0 and the gradient all zeros, where torch gives nan (pytorch#70348)."""
    assert float(to_numpy(loss)) == 0.0
    if grad is not None:
        assert not np.any(to_numpy(grad))


CONFIDENT_LOGITS = [math.log(0.999), math.log(0.001)]
"""A row with p = 0.999 at class 0. Liger-Kernel PR #1329: ``p - 1`` with ``p`` rounded to bfloat16 first lost the
whole true-class gradient (100% error); computed in float32 it keeps bfloat16's own relative accuracy."""


def assert_true_class_gradient(grad_y: Any, logits: Any, rtol: float = 2**-8) -> None:
    """``grad_y``, the gradient at the target (class 0) of ``CONFIDENT_LOGITS`` as rounded to bfloat16 (``logits``),
    against ``p_0 - 1`` in float64 from those same rounded logits."""
    z = to_numpy(logits).astype(np.float64).reshape(-1)
    exact = math.exp(z[0] - np.logaddexp.reduce(z)) - 1.0
    assert abs(float(to_numpy(grad_y)) - exact) <= rtol * abs(exact)

"""One adapter per implementation: how the contract suite calls it, and what it does not implement.

Every adapter takes NumPy data (float64 values, class axis last) with the name of the dtype to run in, makes its
own arrays from them, calls the implementation and hands back its results as they come (the suite reads them
with :func:`numpy_of` and checks their dtype with :func:`dtype_of`). A new engine or front needs one entry in
:data:`IMPLS`; the suite then holds it to the whole policy, skipping only what its ``lacks`` names.

What ``lacks`` may name (each marks the cases that use it):

* operations: ``softmax``, ``log_softmax``, ``logsumexp``, ``cross_entropy``;
* options: ``where``, ``temperature``, ``b`` (logsumexp's scale factors), ``return_sign``, ``weight``,
  ``label_smoothing``, ``z_loss``, ``softcap``, ``probabilities`` (probability targets), ``empty`` (a class axis of
  length 0);
* ``axis``: a class axis other than the last (the torch front's Triton path needs it last);
* ``nonfinite``: logits holding ``nan`` or ``inf`` outside ignored rows (a linear layer cannot make them:
  ``inf * 0`` is ``nan`` in the product ``hidden @ I``);
* ``errors``: a bad argument raises ``ValueError``/``TypeError`` naming it. Under ``torch.compile(fullgraph=True)``
  the check still runs while Dynamo traces, but Dynamo re-raises it as ``torch._dynamo.exc.Unsupported``
  ("Observed exception", the original exception with its message as the cause; torch 2.13), so the type differs;
  ``test_compiled_errors_keep_their_message`` (in the cross-entropy suite) checks the cause;
* ``value_checks``: the checks that read values on the host (class indices in range, class weights finite and
  ``>= 0``). Under ``torch.compile`` they are skipped (a host read breaks the graph): an out-of-range class index
  gives ``nan`` for its row (``tests/test_torch_transforms.py``).

``torch-compiled`` runs softmaxkit.torch's functions through ``torch.compile(fullgraph=True, backend="aot_eager")``
(the graph and its autograd without inductor's code generation, which would cost seconds per graph): one compiled
callable per operation and set of scalar options, reused across cases, with Dynamo's automatic dynamic shapes (a
second shape recompiles once with symbolic sizes, after which sizes do not recompile). ``fullgraph=True`` makes a
graph break an error, so every case that passes traced as one graph.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import types
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import array_api_strict
import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.distributed as dist

import softmaxkit as sk
import softmaxkit.jax as skj
import softmaxkit.torch as skt

Array = Any


# ----------------------------------------------------------------------------------------- array libraries
@dataclass(frozen=True)
class Library:
    """Makes one library's arrays from NumPy data."""

    name: str
    make: Callable[[np.ndarray, str], Array]
    dtypes: tuple[str, ...]


def _torch(a: np.ndarray, dtype: str) -> torch.Tensor:
    if dtype == "bfloat16":
        return torch.asarray(np.asarray(a, dtype=np.float32)).to(torch.bfloat16)
    return torch.asarray(np.array(a, dtype=dtype))


NUMPY = Library("numpy", lambda a, d: np.array(a, dtype=d), ("float64", "float32", "float16"))
STRICT = Library(
    "array_api_strict",
    lambda a, d: array_api_strict.asarray(np.array(a, dtype=d)),
    ("float64", "float32"),
)
TORCH = Library("torch", _torch, ("float64", "float32", "float16", "bfloat16"))
JAX = Library("jax", lambda a, d: jnp.asarray(np.asarray(a, dtype=np.float64), dtype=d), TORCH.dtypes)

FLOAT_KINDS = ("float64", "float32", "float16", "bfloat16")


def numpy_of(a: Any) -> np.ndarray:
    """Any library's array as NumPy (bfloat16 as float32; torch tensors detached)."""
    if isinstance(a, torch.Tensor):
        a = a.detach()
        return (a.float() if a.dtype == torch.bfloat16 else a).numpy()
    if isinstance(a, jax.Array):
        return np.asarray(a.astype(jnp.float32) if a.dtype == jnp.bfloat16 else a)
    return np.asarray(a)


def dtype_of(a: Any) -> str:
    """The dtype's name (``float32``, ``bfloat16``, ...) of any library's array."""
    return str(a.dtype).rsplit(".", 1)[-1]


def index_array(lib: Library, t: np.ndarray) -> Array:
    """Class indices (or a weight vector: ``float``) in ``lib``'s array type."""
    t = np.asarray(t)
    if lib is TORCH:
        return torch.asarray(t.copy())
    if lib is JAX:
        return jnp.asarray(t)
    if lib is STRICT:
        return array_api_strict.asarray(t)
    return t.copy()


# ------------------------------------------------------------------------------------------------ adapters
@dataclass(frozen=True)
class Impl:
    """One implementation under contract."""

    name: str
    lib: Library
    lacks: frozenset[str] = frozenset()
    dtypes: tuple[str, ...] | None = None
    """The dtypes it runs (default: its library's)."""
    axis_name: str = "axis"
    """What the implementation calls the class axis in its error messages."""
    map_call: Callable[..., Array] | None = None
    """``map_call(op, x, **options)`` for softmax, log_softmax and logsumexp."""
    ce_call: Callable[..., tuple[Array, Array | None]] | None = None
    """``ce_call(z, target, grad, **options) -> (loss, grad or None)``, class axis last."""
    context: Callable[[], contextlib.AbstractContextManager[Any]] = field(default=contextlib.nullcontext)
    slow: bool = False
    """Runs a few cases of each kind only (Triton's interpreter runs every program as NumPy operations)."""

    @property
    def runs(self) -> tuple[str, ...]:
        return self.dtypes if self.dtypes is not None else self.lib.dtypes

    @property
    def main(self) -> str:
        """The widest dtype it runs: the one the special-value cases use."""
        return next(d for d in FLOAT_KINDS if d in self.runs)

    def can(self, *needs: str) -> bool:
        return not any(n in self.lacks for n in needs)

    def data(self, a: np.ndarray, dtype: str) -> Array:
        return self.lib.make(a, dtype)

    def labels(self, t: np.ndarray) -> Array:
        return index_array(self.lib, t)

    def map(self, op: str, x: Array, **options: Any) -> Array:
        assert self.map_call is not None
        with self.context():
            return self.map_call(op, x, **options)

    def cross_entropy(self, z: Array, target: Array, grad: bool = False, **options: Any) -> tuple[Array, Array | None]:
        assert self.ce_call is not None
        with self.context():
            return self.ce_call(z, target, grad, **options)

    def __repr__(self) -> str:
        return self.name


def _array_front(backend: str | None) -> tuple[Callable[..., Array], Callable[..., tuple[Array, Array | None]]]:
    """softmaxkit's own functions, with ``backend=`` (None: auto)."""

    def map_call(op: str, x: Array, **options: Any) -> Array:
        return getattr(sk, op)(x, backend=backend, **options)

    def ce_call(z: Array, target: Array, grad: bool, **options: Any) -> tuple[Array, Array | None]:
        if grad:
            return sk.cross_entropy_value_and_grad(z, target, backend=backend, **options)
        return sk.cross_entropy(z, target, backend=backend, **options), None

    return map_call, ce_call


def _torch_map(op: str, x: torch.Tensor, **options: Any) -> torch.Tensor:
    axis = options.pop("axis", -1)
    assert not options, options
    fn = skt.logsumexp if op == "logsumexp" else getattr(skt, op)
    return fn(x, axis) if op == "logsumexp" else fn(x, dim=axis)


def _torch_backward(loss: torch.Tensor, z: torch.Tensor) -> torch.Tensor | None:
    (loss.sum() if loss.ndim else loss).backward()
    return z.grad


def _torch_ce(z: torch.Tensor, target: torch.Tensor, grad: bool, **options: Any) -> tuple[Any, Any]:
    z = z.clone().requires_grad_(grad)  # the suite's own tensor is never written (.grad included)
    loss = skt.cross_entropy(z, target, **options)
    return loss, (_torch_backward(loss, z) if grad else None)


def _linear_torch_ce(z: torch.Tensor, target: torch.Tensor, grad: bool, **options: Any) -> tuple[Any, Any]:
    h = z.clone().requires_grad_(grad)
    eye = torch.eye(z.shape[-1], dtype=z.dtype)
    loss = skt.linear_cross_entropy(h, eye, target, **options)
    return loss, (_torch_backward(loss, h) if grad else None)


_COMPILED: dict[Any, Callable[..., Any]] = {}
"""The compiled callables of ``torch-compiled``, by operation and scalar options (compiling is the slow part)."""


def _compiled(key: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` compiled once per ``key``, each with a code object of its own: Dynamo keeps its cache on the code
    object, and closures of one ``def`` share it, so that a second value of a float option would recompile the
    first one's code with that float symbolic (automatic dynamic), as it would for a user's function called with
    changing floats (the options' checks cannot read a symbolic float under ``fullgraph=True``)."""
    if key not in _COMPILED:
        code = fn.__code__.replace(co_name=f"{fn.__name__}_{len(_COMPILED)}")
        own = types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)
        _COMPILED[key] = torch.compile(own, fullgraph=True, backend="aot_eager")
    return _COMPILED[key]


@contextlib.contextmanager
def _compiling() -> Iterator[None]:
    """Room for the recompiles of the suite's many dtypes, shapes and options (Dynamo's default limit of 8 per
    function would fall back to eager after it), and quiet about torch 2.13's own warnings while tracing: every
    traced autograd.Function is instantiated (deprecated), and array_api_compat's ``lru_cache`` helpers are
    traced through."""
    with torch._dynamo.config.patch(recompile_limit=1024, accumulated_recompile_limit=4096), warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*should not be instantiated", DeprecationWarning)
        warnings.filterwarnings("ignore", ".*functools.lru_cache", UserWarning)
        yield


def _compiled_map(op: str, x: torch.Tensor, **options: Any) -> torch.Tensor:
    axis = options.pop("axis", -1)
    assert not options, options
    fn = _compiled(("map", op, axis), lambda a: _torch_map(op, a, axis=axis))
    out: torch.Tensor = fn(x)
    return out


def _compiled_ce(z: torch.Tensor, target: torch.Tensor, grad: bool, **options: Any) -> tuple[Any, Any]:
    """``skt.cross_entropy`` compiled: tensor options (``weight``) are arguments, the scalar ones part of the key."""
    tensors = sorted(k for k, v in options.items() if isinstance(v, torch.Tensor))
    scalars = tuple(sorted((k, v) for k, v in options.items() if k not in tensors))

    def call(zz: torch.Tensor, t: torch.Tensor, *ts: torch.Tensor) -> torch.Tensor:
        return skt.cross_entropy(zz, t, **dict(scalars), **dict(zip(tensors, ts, strict=True)))

    fn = _compiled(("cross_entropy", scalars, tuple(tensors)), call)
    zz = z.clone().requires_grad_(grad)
    loss = fn(zz, target, *(options[k] for k in tensors))
    return loss, (_torch_backward(loss, zz) if grad else None)


@contextlib.contextmanager
def _one_rank() -> Iterator[None]:
    """A torch.distributed world of one process (gloo, an in-memory store), for one call."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _vocab_parallel_ce(z: torch.Tensor, target: torch.Tensor, grad: bool, **options: Any) -> tuple[Any, Any]:
    with _one_rank():
        zz = z.clone().requires_grad_(grad)
        loss = skt.vocab_parallel_cross_entropy(zz, target, **options)
        return loss, (_torch_backward(loss, zz) if grad else None)


def _jax_vjp(f: Callable[[Array], Array], z: Array, grad: bool) -> tuple[Array, Array | None]:
    if not grad:
        return f(z), None
    loss, pullback = jax.vjp(f, z)
    (g,) = pullback(jnp.ones_like(loss))  # reduction="none": the gradient of the summed losses
    return loss, g


def _jax_ce(z: Array, target: Array, grad: bool, **options: Any) -> tuple[Array, Array | None]:
    return _jax_vjp(lambda zz: skj.cross_entropy(zz, target, **options), z, grad)


def _linear_jax_ce(z: Array, target: Array, grad: bool, **options: Any) -> tuple[Array, Array | None]:
    eye = jnp.eye(z.shape[-1], dtype=z.dtype)
    return _jax_vjp(lambda h: skj.linear_cross_entropy(h, eye, target, **options), z, grad)


def _triton_ready() -> str | None:
    """Why the Triton adapters cannot run here, or None."""
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed"
    if torch.cuda.is_available():
        return "CUDA present: the kernels run compiled (tests/test_kernels_gpu_cuda.py), not in the interpreter"
    if os.environ.get("TRITON_INTERPRET") != "1":
        return "TRITON_INTERPRET=1 is not set (tests/conftest.py sets it before triton is imported)"
    return None


TRITON_SKIP = _triton_ready()


@contextlib.contextmanager
def _on_triton() -> Iterator[None]:
    """``softmaxkit.backend("triton")``, with the interpreter's NumPy warnings silenced: it evaluates both sides of
    every ``tl.where`` (a GPU does so silently) and its ``tl.max`` is ``np.nanmax``."""
    with sk.backend("triton"), np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "All-NaN slice encountered", RuntimeWarning)
        yield


_REF_MAP, _REF_CE = _array_front("reference")
_NUMPY_MAP, _NUMPY_CE = _array_front("numpy")
_NUMBA_MAP, _NUMBA_CE = _array_front("numba")
_TRITON_MAP, _TRITON_CE = _array_front("triton")

_CE_ONLY = frozenset({"softmax", "log_softmax", "logsumexp"})
_TORCH_FRONT_LACKS = frozenset({"where", "temperature", "b", "return_sign"})
_LINEAR_LACKS = _CE_ONLY | {"probabilities", "nonfinite", "empty"}

IMPLS: list[Impl] = [
    Impl("reference-numpy", NUMPY, map_call=_REF_MAP, ce_call=_REF_CE),
    Impl("reference-array_api_strict", STRICT, map_call=_REF_MAP, ce_call=_REF_CE),
    Impl("reference-torch", TORCH, map_call=_REF_MAP, ce_call=_REF_CE),
    Impl("reference-jax", JAX, map_call=_REF_MAP, ce_call=_REF_CE),
    Impl(
        "numpy",
        NUMPY,
        lacks=frozenset({"b", "weight", "label_smoothing", "z_loss", "softcap", "probabilities"}),
        map_call=_NUMPY_MAP,
        ce_call=_NUMPY_CE,
    ),
    Impl("numba", NUMPY, lacks=frozenset({"b"}), map_call=_NUMBA_MAP, ce_call=_NUMBA_CE),
    Impl("torch-front", TORCH, lacks=_TORCH_FRONT_LACKS, axis_name="dim", map_call=_torch_map, ce_call=_torch_ce),
    Impl(
        "torch-front-numba",
        TORCH,
        lacks=_TORCH_FRONT_LACKS | {"axis"},
        dtypes=("float64", "float32"),
        axis_name="dim",
        map_call=_torch_map,
        ce_call=_torch_ce,
        context=lambda: sk.backend("numba"),
    ),
    Impl(
        "triton",
        TORCH,
        lacks=_TORCH_FRONT_LACKS | {"axis"},
        dtypes=("float32", "float16", "bfloat16"),
        axis_name="dim",
        map_call=_torch_map,
        ce_call=_torch_ce,
        context=_on_triton,
        slow=True,
    ),
    Impl(
        "triton-array",
        TORCH,
        lacks=frozenset({"temperature", "b"}),
        dtypes=("float32", "float16", "bfloat16"),
        map_call=_TRITON_MAP,
        ce_call=_TRITON_CE,
        context=_on_triton,
        slow=True,
    ),
    Impl(
        "torch-compiled",
        TORCH,
        lacks=_TORCH_FRONT_LACKS | {"errors", "value_checks"},
        axis_name="dim",
        map_call=_compiled_map,
        ce_call=_compiled_ce,
        context=_compiling,
    ),
    Impl("jax-front", JAX, lacks=_CE_ONLY, ce_call=_jax_ce),
    Impl("linear-torch", TORCH, lacks=_LINEAR_LACKS, ce_call=_linear_torch_ce),
    Impl("linear-jax", JAX, lacks=_LINEAR_LACKS, ce_call=_linear_jax_ce),
    Impl(
        "vocab-parallel",
        TORCH,
        lacks=_CE_ONLY | {"probabilities", "empty"},
        dtypes=("float64", "float32"),
        ce_call=_vocab_parallel_ce,
    ),
]


def impls(*needs: str, fast_only: bool = False) -> list[Any]:
    """The ``pytest.param`` objects of the implementations that have everything in ``needs`` (the slow ones are left out
    when ``fast_only``); the Triton ones are skipped where the interpreter cannot run."""
    return [p for impl in IMPLS if (p := _param(impl, (), needs, fast_only)) is not None]


def with_ops(ops: tuple[str, ...], *needs: str, dtypes: tuple[str, ...] = (), fast_only: bool = False) -> list[Any]:
    """``pytest.param(impl, op[, dtype])`` for each implementation, operation (and dtype) it runs."""
    out = []
    for impl in IMPLS:
        for op in ops:
            for dtype in dtypes or (None,):
                if dtype is not None and dtype not in impl.runs:
                    continue
                values = (op,) if dtype is None else (op, dtype)
                p = _param(impl, values, (op, *needs), fast_only)
                if p is not None:
                    out.append(p)
    return out


def _param(impl: Impl, values: tuple[Any, ...], needs: tuple[str, ...], fast_only: bool) -> Any:
    import pytest

    if not impl.can(*needs) or (fast_only and impl.slow):
        return None
    marks = [pytest.mark.skip(reason=TRITON_SKIP)] if TRITON_SKIP and impl.context is _on_triton else []
    return pytest.param(impl, *values, id="-".join([impl.name, *map(str, values)]), marks=marks)

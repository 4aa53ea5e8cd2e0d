"""The dispatcher: which engine runs a call. Every public function asks here, once, at its top.

Engines
-------
==============  ====================================================================================================
``reference``   the generic array-API code (:mod:`softmaxkit.softmax`, :mod:`softmaxkit.cross_entropy`): any array
                library, any dtype, every option. The oracle every other engine is tested against. On the
                :mod:`softmaxkit.torch` front its reference is its own torch code (the ``torch`` engine).
``numpy``       a tight NumPy implementation of the same formulas for float32/float64 ``numpy.ndarray``\\ s
                (:mod:`softmaxkit._lean`): none of the generic code's namespace look-ups, for small inputs.
``numba``       the CPU kernels (:mod:`softmaxkit.kernels.numba`) for float32/float64 NumPy arrays, and for
                softmaxkit.torch's softmax, log_softmax, logsumexp and cross_entropy of CPU float32/float64 tensors;
                for sparsemax, entmax15 and entmax_bisect (:data:`FAMILY`: mapping, VJP, loss) on both fronts.
``triton``      the GPU kernels (:mod:`softmaxkit.kernels.triton.ops`; :mod:`~softmaxkit.kernels.triton.family` for
                softmaxkit.torch's sparsemax, entmax15 and entmax_bisect) for torch tensors on CUDA (on the CPU too
                under ``TRITON_INTERPRET=1``, Triton's interpreter: the tests run them so), float32/float16/bfloat16,
                class axis last with contiguous rows.
``torch``       :mod:`softmaxkit.torch`'s torch operations (autograd Functions with our special values).
==============  ====================================================================================================

``auto`` (the default) picks, from the array type, device, dtype, layout and size: ``triton`` for CUDA tensors it
can take; ``numba`` for NumPy float32/float64 arrays of at least :data:`THRESHOLD` elements when numba is
installed (CPU float32/float64 tensors of the torch front likewise, class dimension last, and softmax,
log_softmax, logsumexp and cross_entropy at every size: a process that imported torch pays numba's load in
passing); ``numpy`` for smaller ones; ``torch`` for the rest of the torch front; ``reference`` for everything
else (other array libraries, float16 and integer inputs on the array front, options only the reference has).

The name in force comes from, in order: the ``backend=`` keyword of a call, the innermost
``with softmaxkit.backend(...)`` block, the ``SOFTMAXKIT_BACKEND`` environment variable, ``auto``. A name that is
not ``auto`` is obeyed or refused: an engine that cannot run the call raises (``ValueError`` saying why;
``ImportError`` when its package is missing), it never falls back silently (softmaxkit.torch's exceptions: a call
traced by ``torch.compile`` follows ``auto``; tensors of :mod:`torch.func` transforms, and cross-entropy with
unchecked labels, take the torch code).

Every engine computes the same formulas with the same special values (``tests/contract/`` holds each to the
whole policy); arguments are validated before an engine runs, so errors are identical.
"""

from __future__ import annotations

import contextvars
import functools
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import numpy as np

from . import _lean  # (NumPy only: imported at once, so that a small call pays no import statement)

ENGINES = ("reference", "numpy", "numba", "triton", "torch")
"""Every engine, in the order of the table above."""

BACKENDS = ("auto", *ENGINES)
"""Every name ``backend=``, :func:`backend` and ``SOFTMAXKIT_BACKEND`` accept."""

THRESHOLD = 4096
"""Smallest NumPy input (in elements) that ``auto`` sends to the numba kernels; smaller ones take ``numpy``.

The first kernel call in a process loads numba and the compiled kernels from the on-disk cache, about half a
second: a program that only ever calls softmax on a few small vectors should not pay that. Below this size the
tight NumPy code costs a few microseconds of Python more than the kernel call; above it the kernels' single pass
and threads win.
"""

FRONTS = ("array", "torch")
"""``array``: :mod:`softmaxkit`'s functions (any array library); ``torch``: :mod:`softmaxkit.torch`'s."""

_NUMPY_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

_LACKS: dict[tuple[str, str], frozenset[str]] = {
    ("numpy", "logsumexp"): frozenset({"b"}),
    ("numpy", "cross_entropy"): frozenset({"weight", "label_smoothing", "z_loss", "softcap", "probabilities"}),
    ("numba", "logsumexp"): frozenset({"b"}),
    ("triton", "softmax"): frozenset({"temperature"}),
    ("triton", "log_softmax"): frozenset({"temperature"}),
    ("triton", "logsumexp"): frozenset({"b"}),
}
"""The options of an operation that an engine does not implement (the reference implements every one)."""

FAMILY = ("sparsemax", "entmax15", "entmax_bisect")
"""The α-entmax mappings the numba kernels compute (forward, and the VJP from their output)."""

_OPS = {
    "numpy": ("softmax", "log_softmax", "logsumexp", "cross_entropy"),
    "numba": ("softmax", "log_softmax", "logsumexp", "cross_entropy", *FAMILY),
    "numba-torch": ("softmax", "log_softmax", "logsumexp", "cross_entropy", *FAMILY),
    "triton-array": ("softmax", "log_softmax", "logsumexp", "cross_entropy"),
    "triton-torch": (
        *("softmax", "log_softmax", "logsumexp", "cross_entropy", "linear_cross_entropy"),
        *FAMILY,  # (kernels/triton/family.py)
    ),
}
"""The operations each engine implements (on the array front; ``numba-torch``: numba on softmaxkit.torch's)."""

TORCH_SOFTMAX = 1 << 19
"""Below this many elements (``auto``), softmaxkit.torch's softmax of a CPU tensor is ``torch.softmax`` itself,
whose values, gradient and special values are ours but on a fully masked row (checked after the call): at these
sizes torch's kernel, on two threads and with no Python ``autograd.Function`` around it, is faster forward and
backward than ours (``benchmarks/bench_torch_front.py``); from it up the kernels are."""

_EVERY_SIZE = frozenset({"softmax", "log_softmax", "logsumexp", "cross_entropy"})
"""The torch front's operations that ``auto`` sends to numba below :data:`THRESHOLD` too (their CPU path is lean)."""

_CHOICE: contextvars.ContextVar[str | None] = contextvars.ContextVar("softmaxkit_backend", default=None)
_GENERIC: contextvars.ContextVar[bool] = contextvars.ContextVar("softmaxkit_generic", default=False)

P = ParamSpec("P")
R = TypeVar("R")


def _checked(value: Any, name: str) -> str:
    if value not in BACKENDS:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, BACKENDS))}; got {value!r}")
    return str(value)


@contextmanager
def backend(name: str) -> Iterator[None]:
    """Run the enclosed calls on one engine (or ``"auto"``).

    The setting is local to the thread (and asyncio task) and is undone on exit; a ``backend=`` keyword on a
    call still wins. A call that the named engine cannot run raises rather than run elsewhere.

    Parameters
    ----------
    name : {"auto", "reference", "numpy", "numba", "triton", "torch"}
        ``reference``: the generic array-API code; ``numpy``: the tight NumPy code (NumPy float32/float64);
        ``numba``: the CPU kernels (NumPy float32/float64); ``triton``: the GPU kernels (torch tensors on CUDA);
        ``torch``: :mod:`softmaxkit.torch`'s torch code; ``auto``: chosen per call from type, device, dtype,
        layout and size.

    Raises
    ------
    ValueError
        ``name`` is not one of these.

    Examples
    --------
    >>> import numpy as np, softmaxkit as sk
    >>> with sk.backend("reference"):
    ...     p = sk.softmax(np.zeros((2, 3)))
    >>> print(p[0])
    [0.33333333 0.33333333 0.33333333]
    """
    token = _CHOICE.set(_checked(name, "backend"))
    try:
        yield
    finally:
        _CHOICE.reset(token)


def resolve(keyword: Any = None) -> str:
    """The name in force for a call whose ``backend=`` keyword is ``keyword`` (None: not given).

    Raises
    ------
    ValueError
        An unknown name (keyword, context or environment variable), naming where it came from.
    """
    if keyword is not None:
        return _checked(keyword, "backend")
    chosen = _CHOICE.get()
    if chosen is not None:
        return chosen
    if _ENV_DATA is not None:
        raw = _ENV_DATA.get(_ENV_KEY)
        env = _decode(raw) if raw else None
    else:
        env = os.environ.get("SOFTMAXKIT_BACKEND")
    if env:
        return _checked(env, "the environment variable SOFTMAXKIT_BACKEND")
    return "auto"


# os.environ's own mapping, which its item assignment and deletion update (monkeypatch.setenv too): one dict
# lookup per call, where os.environ.get, through its encoding and a KeyError, takes 0.5 us when the caches are
# warm and several when a kernel has just run (every torch call asks)
_ENV_DATA: dict[Any, Any] | None = getattr(os.environ, "_data", None)
_ENV_KEY: Any = os.environ.encodekey("SOFTMAXKIT_BACKEND") if hasattr(os.environ, "encodekey") else None
_decode: Any = getattr(os.environ, "decodevalue", lambda value: value)
if _ENV_KEY is None or not isinstance(_ENV_DATA, dict):
    _ENV_DATA = None


# ------------------------------------------------------------------------------------- what each engine takes
@functools.cache
def installed(package: str) -> bool:
    """Whether ``package`` (``"numba"``, ``"triton"``) can be imported, found without importing it."""
    return importlib.util.find_spec(package) is not None


def _is_torch(data: Any) -> bool:
    return type(data).__module__.partition(".")[0] == "torch"


def _is_jax(data: Any) -> bool:
    jax = sys.modules.get("jax")  # a JAX array exists only once jax is imported: never import it here
    return jax is not None and isinstance(data, jax.Array)  # tracers included


def _lacking(engine: str, op: str, options: tuple[str, ...]) -> str | None:
    lacks = _LACKS.get((engine, op))
    if lacks is not None:
        for name in options:
            if name in lacks:
                return f"it does not implement {op}'s {name}"
    return None


def _why_not_numpy(op: str, data: Any, front: str, options: tuple[str, ...], engine: str = "numpy") -> str | None:
    if front != "array":
        return "it runs softmaxkit's array functions only"
    if type(data) is not np.ndarray or data.dtype not in _NUMPY_FLOATS:
        return f"it takes float32/float64 numpy.ndarrays, not {_describe(data)}"
    if op not in _OPS[engine]:
        return f"it does not implement {op}"
    return _lacking(engine, op, options)


def _why_not_numba(op: str, data: Any, front: str, options: tuple[str, ...], last: bool) -> str | None:
    # on the torch front: CPU tensors, read through NumPy views of their memory
    why = _why_not_torch_cpu(op, data, last) if front == "torch" else _why_not_numpy(op, data, front, options, "numba")
    if why is not None:
        return why
    if not installed("numba"):
        raise ImportError("backend='numba' needs numba, which is not installed (pip install numba)")
    return None


def _why_not_torch_cpu(op: str, data: Any, last: bool) -> str | None:
    if not _is_torch(data):
        return f"it takes numpy.ndarrays and CPU torch tensors, not {_describe(data)}"
    import torch

    if data.device.type != "cpu" or data.dtype not in (torch.float32, torch.float64) or data.layout != torch.strided:
        return f"it takes CPU float32/float64 tensors; got one of {data.dtype} on {data.device}"
    if op not in _OPS["numba-torch"]:
        return f"softmaxkit.torch.{op} does not run on it"
    if not last:
        return "it needs the class dimension last"
    return None


def _why_not_triton(op: str, data: Any, front: str, options: tuple[str, ...], rows: bool) -> str | None:
    if not _is_torch(data):
        return f"it takes torch tensors, not {_describe(data)}"
    import torch

    on_device = data.device.type == "cuda" or (data.device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1")
    if not on_device:
        return f"it runs on CUDA tensors (CPU ones only under TRITON_INTERPRET=1); got one on {data.device}"
    if data.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return f"it takes float32/float16/bfloat16 tensors; got {data.dtype}"
    if front == "array" and op not in _OPS["triton-array"]:
        return f"softmaxkit.{op} does not run on it; softmaxkit.torch's does"
    if front == "torch" and op not in _OPS["triton-torch"]:
        return f"softmaxkit.torch.{op} does not run on it"
    lacking = _lacking("triton", op, options)
    if lacking is not None:
        return lacking
    if not rows and not (front == "torch" and op in FAMILY):  # (the family's glue makes its own rows)
        return "it needs the class axis last with evenly strided, contiguous rows (and every tensor on one device)"
    if not installed("triton"):
        raise ImportError("backend='triton' needs triton, which is not installed (pip install triton)")
    return None


def _why_not_torch(op: str, data: Any, front: str) -> str | None:
    if front != "torch":
        return "it runs softmaxkit.torch's functions; softmaxkit's own run torch tensors on 'reference'"
    return None


def _describe(data: Any) -> str:
    dtype = getattr(data, "dtype", None)
    return f"{type(data).__module__}.{type(data).__name__}" + ("" if dtype is None else f" of {dtype}")


def why_not(
    engine: str,
    op: str,
    data: Any,
    *,
    front: str = "array",
    rows: bool = True,
    last: bool = True,
    options: tuple[str, ...] = (),
) -> str | None:
    """Why ``engine`` cannot run this call, or None when it can (arguments as for :func:`choose`).

    Raises
    ------
    ImportError
        The engine can take the call but its package (numba, triton) is not installed.
    """
    if engine == "reference":
        return None
    if engine == "numpy":
        return _why_not_numpy(op, data, front, options)
    if engine == "numba":
        return _why_not_numba(op, data, front, options, last)
    if engine == "triton":
        return _why_not_triton(op, data, front, options, rows)
    return _why_not_torch(op, data, front)


def _auto(op: str, data: Any, front: str, rows: bool, last: bool, options: tuple[str, ...]) -> str:
    if type(data) is np.ndarray:
        if front != "array" or data.dtype not in _NUMPY_FLOATS:
            return "reference"
        if data.size >= THRESHOLD and installed("numba") and _why_not_numpy(op, data, front, options, "numba") is None:
            return "numba"
        return "numpy" if _why_not_numpy(op, data, front, options) is None else "reference"
    fallback = "torch" if front == "torch" else "reference"
    if front == "torch" and data.device.type == "cpu":
        # softmax, log_softmax, logsumexp and CE at every size (torch has already cost more to import than numba)
        big = op in _EVERY_SIZE or data.numel() >= THRESHOLD
        if big and installed("numba") and _why_not_torch_cpu(op, data, last) is None:
            return "numba"
        return fallback
    if _is_torch(data) and data.device.type == "cuda":
        try:
            if _why_not_triton(op, data, front, options, rows) is None:
                return "triton"
        except ImportError:  # auto never insists on a missing package
            pass
    return fallback


def choose(
    op: str,
    data: Any,
    keyword: Any = None,
    *,
    front: str = "array",
    rows: bool = True,
    last: bool = True,
    options: tuple[str, ...] = (),
) -> str:
    """The engine that runs one call: one of :data:`ENGINES`.

    Parameters
    ----------
    op : str
        ``"softmax"``, ``"log_softmax"``, ``"logsumexp"``, ``"cross_entropy"`` or ``"linear_cross_entropy"``.
    data : array
        The call's data as the engine would get it: on the array front the logits in their compute dtype with
        the class axis last; on the torch front the tensor as given.
    keyword : str, optional
        The call's ``backend=`` keyword (None: the context, the environment variable, else ``auto``).
    front : {"array", "torch"}
        Which package's function asks.
    rows : bool
        Whether the layout (and placement) suits a row kernel that reads the data in place (Triton).
    last : bool
        Whether the class axis is the last (numba on the torch front needs it; the array front moves it there).
    options : tuple of str
        The options this call uses (those given a value other than their default: ``"temperature"``, ``"b"``,
        ``"weight"``, ``"label_smoothing"``, ``"z_loss"``, ``"softcap"``, ``"probabilities"`` for probability
        targets); an engine that lacks one of them cannot run the call.

    Raises
    ------
    ValueError
        An unknown name, or a named engine that cannot run the call (the reason is given).
    ImportError
        A named engine whose package is not installed.
    """
    mode = resolve(keyword)
    if mode == "auto":
        return _auto(op, data, front, rows, last, options)
    if mode == "reference" and front == "torch":
        return "torch"
    why = why_not(mode, op, data, front=front, rows=rows, last=last, options=options)
    if why is not None:
        where = "softmaxkit.torch." if front == "torch" else "softmaxkit."
        raise ValueError(f"backend={mode!r} cannot run {where}{op} on this input: {why}")
    return mode


# ---------------------------------------------------------------------------------------------- running one
# The engines' entry points take what the array front prepared: the data in its compute dtype, class axis last,
# masked entries -inf, a non-empty class axis, every argument checked.
def run_softmax(engine: str, z: Any, temperature: float, log: bool) -> Any:
    """Softmax (``log``: log-softmax) of ``z`` along its last axis on ``engine`` (not ``reference``)."""
    if engine == "numpy":
        return _lean.softmax(z, temperature, log)
    if engine == "numba":
        from .kernels import numba as kernels

        return kernels.softmax(z, temperature, log=log)
    from .kernels.triton import ops as gpu  # triton; temperature is 1 (the dispatcher saw to it)

    k = z.shape[-1]
    return gpu.softmax(z.reshape(-1, k).contiguous(), log=log).reshape(z.shape)


def run_family(engine: str, op: str, z: Any, alpha: float = 1.5, n_iter: int = 64) -> Any:
    """``op`` (one of :data:`FAMILY`) of ``z`` along its last axis on ``engine`` (``numba``; NumPy arrays, or
    NumPy views of CPU tensors); ``alpha`` and ``n_iter`` for ``entmax_bisect`` only, checked by the caller."""
    from .kernels import numba as kernels

    if op == "entmax_bisect":
        return kernels.entmax_bisect(z, alpha, n_iter)
    return kernels.sparsemax(z) if op == "sparsemax" else kernels.entmax15(z)


def run_family_vjp(engine: str, op: str, p: Any, g: Any, alpha: float = 1.5) -> Any:
    """``g^T J`` of ``op`` (one of :data:`FAMILY`) at its output ``p``, along the last axis, on ``engine``."""
    from .kernels import numba as kernels

    return kernels.entmax_vjp(p, g, {"sparsemax": 2.0, "entmax15": 1.5}.get(op, alpha))


def run_family_loss(
    engine: str, op: str, z: Any, y: Any, wy: Any, scale: Any, alpha: float, n_iter: int, want_grad: bool
) -> tuple[Any, Any]:
    """The Fenchel–Young loss of ``op`` (one of :data:`FAMILY`) per row of ``z`` (class axis last) for the class
    indices ``y``, on ``engine``: float64 unweighted per-row losses (0 where the row weight ``wy`` is 0) and, with
    ``want_grad``, ``scale[:, None] * (p - onehot(y))`` (see :func:`softmaxkit.kernels.numba.entmax_loss`)."""
    from .kernels import numba as kernels

    kind = {"sparsemax": "sparsemax", "entmax15": "entmax15"}.get(op, "bisect")
    return kernels.entmax_loss(z, y, wy, scale, kind, alpha, n_iter, want_grad)


def run_logsumexp(engine: str, z: Any) -> Any:
    """Log-sum-exp of ``z`` along its last axis, kept with length 1, in ``z``'s dtype, on ``engine``."""
    if engine == "numpy":
        return _lean.logsumexp(z)
    if engine == "numba":
        from .kernels import numba as kernels

        return kernels.logsumexp(z)
    from .kernels.triton import ops as gpu

    k = z.shape[-1]
    return gpu.logsumexp(z.reshape(-1, k).contiguous()).to(z.dtype).reshape(*z.shape[:-1], 1)


def run_cross_entropy(
    engine: str,
    z: Any,
    target: Any,
    weight: Any,
    ignore_index: int,
    label_smoothing: float,
    reduction: str,
    z_loss: float,
    softcap: float | None,
    want_grad: bool,
) -> tuple[Any, Any] | None:
    """Cross-entropy (and its gradient) on ``engine``: ``(loss, grad)`` in ``z``'s dtype and layout, or None where
    the engine leaves the call to the reference (see :func:`softmaxkit.kernels.cross_entropy`)."""
    if engine == "numpy":  # class indices, no weight, smoothing, z-loss or softcap (the dispatcher saw to it)
        valid = target != ignore_index
        return _lean.cross_entropy(z, target, None if valid.all() else valid, reduction, want_grad)
    options = (ignore_index, label_smoothing, reduction, z_loss, softcap)
    if engine == "triton":
        return _triton_cross_entropy(z, target, weight, *options, want_grad)
    from .kernels import numba as kernels

    return kernels.cross_entropy(z, target, weight, *options, want_grad)


def _triton_cross_entropy(
    z: Any,
    target: Any,
    weight: Any,
    ignore_index: int,
    label_smoothing: float,
    reduction: str,
    z_loss: float,
    softcap: float | None,
    want_grad: bool,
) -> tuple[Any, Any]:
    """:func:`softmaxkit.cross_entropy` of torch tensors by the Triton kernel: per-row losses (and the gradient,
    written in the same pass with the reduction's factors) from the kernel, reduced here in float64."""
    import torch

    from .kernels.triton import ops

    k = z.shape[-1]
    rows = z.reshape(-1, k).contiguous()
    n = rows.shape[0]
    if target.is_floating_point():
        t = target.reshape(n, k).contiguous()
        denom = n_valid = torch.tensor(float(n), dtype=torch.float64, device=rows.device)
    else:
        t = target.reshape(n)
        denom, n_valid = ops.label_totals(t, weight, ignore_index, k)
    totals = torch.stack([denom, n_valid])
    live = totals > 0
    both = torch.where(live, totals, 1.0) if reduction == "mean" else torch.ones_like(totals)
    scales, stride, zoff = torch.ones(n, dtype=torch.float32, device=rows.device), 1, 0
    if reduction != "none":  # the mean's factors: each part over its own denominator (0 when that is 0)
        scales, stride, zoff = torch.where(live, 1.0 / both, 0.0).to(torch.float32), 0, 1
    out = ops.cross_entropy(
        rows, t, weight, ignore_index=ignore_index, label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap,
        scales=scales if want_grad else None, scale_stride=stride, scale_zoff=zoff,
    )  # fmt: skip
    assert out.loss is not None  # (asked for: want_loss)
    if reduction == "none":
        loss = (out.loss if out.z_rows is None else out.loss + out.z_rows).reshape(z.shape[:-1])
    else:
        loss = out.loss.sum(dtype=torch.float64)
        z_total = None if out.z_rows is None else out.z_rows.sum(dtype=torch.float64)
        if reduction == "mean":  # divide (never multiply by a rounded reciprocal); nothing to average: 0
            loss = torch.where(live[0], loss / both[0], 0.0)
            z_total = None if z_total is None else torch.where(live[1], z_total / both[1], 0.0)
        loss = loss if z_total is None else loss + z_total
    grad = None if out.grad is None else out.grad.reshape(z.shape)
    return loss.to(z.dtype), grad


# ------------------------------------------------------------------------------------------- the short way
# A plain float32/float64 numpy.ndarray with its class axis last and no ``where`` needs none of the array front's
# preparation (namespace look-up, compute dtype, moved axis, mask): these checks are all it pays before its engine.
def _plain(x: np.ndarray, axis: Any) -> bool:
    return x.dtype.char in "fd" and x.ndim > 0 and x.shape[-1] > 0 and type(axis) is int and axis in (-1, x.ndim - 1)


def short_map(op: str, x: np.ndarray, axis: Any, temperature: Any, keyword: Any) -> np.ndarray | None:
    """``op`` (``softmax``, ``log_softmax``: ``temperature`` checked here; ``logsumexp``: kept axis) of a plain
    array on its engine, or None: the caller's general path then runs (and validates) as usual."""
    if not _plain(x, axis):
        return None
    t = 1.0
    if type(temperature) is not float or temperature != 1.0:
        from ._validate import positive

        t = positive(temperature, "temperature")
    mode = resolve(keyword)
    if mode == "auto":  # what _auto decides for these arrays, without its general checks
        engine = "numba" if x.size >= THRESHOLD and installed("numba") else "numpy"
    else:
        engine = choose(op, x, mode, options=() if t == 1.0 else ("temperature",))
        if engine not in ("numpy", "numba"):
            return None
    out: np.ndarray = run_logsumexp(engine, x) if op == "logsumexp" else run_softmax(engine, x, t, op == "log_softmax")
    return out


def short_cross_entropy(
    logits: Any, target: Any, axis: Any, ignore_index: Any, reduction: Any, keyword: Any, want_grad: bool
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Class-index cross-entropy without weight, smoothing, z-loss or softcap of plain arrays, every label a class
    (none ignored), on its engine; or None: the general path then runs (and validates) as usual."""
    if not (type(logits) is np.ndarray and type(target) is np.ndarray and _plain(logits, axis)):
        return None
    k = logits.shape[-1]
    if target.dtype.kind not in "iu" or target.shape != logits.shape[:-1] or reduction not in ("mean", "sum", "none"):
        return None
    if type(ignore_index) is not int or 0 <= ignore_index < k:
        return None
    if target.size and not (target.min() >= 0 and target.max() < k):
        return None  # ignored rows or a bad label: the general path knows what to do (or to say)
    mode = resolve(keyword)
    if mode == "auto":  # (as in short_map)
        engine = "numba" if logits.size >= THRESHOLD and installed("numba") else "numpy"
    else:
        engine = choose("cross_entropy", logits, mode)
        if engine not in ("numpy", "numba"):
            return None
    return run_cross_entropy(engine, logits, target, None, ignore_index, 0.0, reduction, 0.0, None, want_grad)


# ------------------------------------------------------------------------------------------------ the family
# Every public mapping and loss of softmaxkit.family is wrapped by ``routed``: its first call is ``route``, which
# hands the call to the engine of its data, or answers NotImplemented and the generic code of the module runs.
def route(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``softmaxkit.family.<name>(*args, **kwargs)`` computed by the engine of its data, or ``NotImplemented``:
    then the caller's generic code runs.

    ==========================  ==========================================================================
    data (``args[0]``)          engine
    ==========================  ==========================================================================
    a torch tensor              :func:`softmaxkit.torch.family.route`: autograd Functions whose backward is
                                the analytic derivative (their forward follows :func:`backend`; under
                                ``reference`` it is the generic code), so autograd never differentiates
                                the generic code (a bisection, a sort), whatever the engine
    a JAX array or tracer       :func:`softmaxkit.jax.family.route`: ``jax.custom_jvp`` functions whose rule is
                                the analytic derivative (``jax.grad``, ``jax.jacfwd``, ... inside ``jax.jit``)
    anything else               ``NotImplemented``: the generic code
    ==========================  ==========================================================================

    An engine's entry takes the generic function's name, positional arguments and keywords (``axis=``, not
    torch's ``dim=``), validates them with the generic names and messages, and may itself answer
    ``NotImplemented`` for a name it does not implement. Inside :func:`generic` every call answers
    ``NotImplemented``: an engine that computes its forward with the generic code runs it there.
    """
    if _GENERIC.get():
        return NotImplemented
    data = args[0] if args else None
    if _is_torch(data):
        from .torch import family as torch_family

        return torch_family.route(name, args, kwargs)
    if _is_jax(data):
        from .jax import family as jax_family

        return jax_family.route(name, args, kwargs)
    return NotImplemented


def routed(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator of a public function of :mod:`softmaxkit.family`: :func:`route` first, the function if that
    answers ``NotImplemented``."""
    name = func.__name__

    @functools.wraps(func)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        out = route(name, args, kwargs)
        return func(*args, **kwargs) if out is NotImplemented else out

    return call


@contextmanager
def generic() -> Iterator[None]:
    """Run the enclosed calls of :mod:`softmaxkit.family` on their generic code (:func:`route` answers
    ``NotImplemented``): for an engine that computes with it, and would otherwise be routed back to itself."""
    token = _GENERIC.set(True)
    try:
        yield
    finally:
        _GENERIC.reset(token)

"""Fast paths for NumPy float32/float64 arrays, imported lazily (numba is loaded on the first kernel call).

The generic code in :mod:`softmaxkit.softmax` and :mod:`softmaxkit.cross_entropy` is the oracle: these functions
compute exactly its formulas and special values, faster. They take arrays that the public functions have
already validated and prepared (compute dtype, class axis last) and never import the public API.

Layout: the jitted kernels need C-contiguous ``(rows, classes)`` arrays. An input whose class axis is the last
and contiguous is used as it is (a view); any other layout (class axis not last, strided rows) is copied once
into that form, and results are given back in the caller's layout. Read-only inputs are read in place.

Threads: numba's (``numba.set_num_threads``; all cores by default), rows cut into one piece per thread; small
work runs on the calling thread. Results do not depend on the number of threads, except the last bits of a
``mean`` or ``sum`` of cross-entropy, whose per-piece sums are added at the end.

Compiled code is cached on disk (numba's ``cache=True``) next to the package, or, when that directory is not
writable and ``NUMBA_CACHE_DIR`` is not set, under ``$XDG_CACHE_HOME/softmaxkit/numba`` (``~/.cache``) or, failing
that, the temporary directory. When no location is writable the kernels are compiled in every process.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import importlib.util
import os
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

CACHE = True
"""Whether the kernels are cached on disk (decided when :mod:`.cpu` is first imported)."""


@functools.cache
def available() -> bool:
    """True when numba can be imported (found without importing it)."""
    return importlib.util.find_spec("numba") is not None


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def _fallback_cache_dir() -> Path | None:
    """A user-wide cache directory we can write to, or None."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    uid = getattr(os, "getuid", lambda: "user")()
    for candidate in (Path(base) / "softmaxkit" / "numba", Path(tempfile.gettempdir()) / f"softmaxkit-numba-{uid}"):
        if _writable(candidate):
            return candidate
    return None


@functools.cache
def load_cpu() -> ModuleType:
    """The numba kernels (:mod:`softmaxkit.kernels.numba._kernels`), imported and configured on first use.

    Raises
    ------
    ImportError
        numba is not installed.
    """
    global CACHE
    import numba

    config: Any = numba.config  # its settings are set from the environment at run time, unknown to mypy
    saved = config.CACHE_DIR
    try:
        if not saved and not _writable(Path(__file__).parent / "__pycache__"):
            fallback = _fallback_cache_dir()
            CACHE = fallback is not None
            if fallback is not None:
                # numba reads CACHE_DIR when a cached function is defined; only our functions see this value
                config.CACHE_DIR = str(fallback)
        return importlib.import_module("._kernels", __name__)
    finally:
        config.CACHE_DIR = saved


# ------------------------------------------------------------------------------------ NumPy-side glue
def _threads() -> int:
    import numba

    return int(numba.get_num_threads())


def _readable(a: np.ndarray) -> np.ndarray:
    """A C-contiguous ``a`` as numba's ordinary (writeable) array type, without a copy; only ever read.

    numba compiles a separate specialisation for read-only arrays (JAX's NumPy views, broadcasts, memory maps),
    each costing the full compile time of a kernel; the kernels never write to their inputs, so a read-only
    input is handed over as a writeable alias of the same memory (kept alive by the caller's reference).
    """
    if a.flags.writeable or a.size == 0:
        return a
    memory = memoryview((ctypes.c_char * a.nbytes).from_address(a.ctypes.data)).cast("B")
    return np.frombuffer(memory, dtype=a.dtype).reshape(a.shape)


def _as_rows(z: np.ndarray) -> np.ndarray:
    """``z`` (class axis last) as C-contiguous ``(rows, classes)``: a view when it already is, else one copy."""
    return _readable(np.ascontiguousarray(z).reshape(-1, z.shape[-1]))


def softmax(z: np.ndarray, temperature: float, log: bool) -> np.ndarray:
    """Softmax (or log-softmax) of ``z`` along its last axis; ``z`` is float32/float64, non-empty last axis."""
    x = _as_rows(z)
    out = np.empty(x.shape, dtype=x.dtype)
    load_cpu().softmax_rows(x, out, x.dtype.type(temperature), log, _threads())
    return out.reshape(z.shape)


def logsumexp(z: np.ndarray) -> np.ndarray:
    """``lse`` of ``z`` along its last axis, with that axis kept (length 1), in ``z``'s dtype."""
    x = _as_rows(z)
    out = np.empty(x.shape[0], dtype=np.float64)
    load_cpu().logsumexp_rows(x, out, _threads())
    return out.astype(z.dtype, copy=False).reshape(*z.shape[:-1], 1)


def cross_entropy(
    z: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None,
    ignore_index: int,
    label_smoothing: float,
    reduction: str,
    z_loss: float,
    softcap: float | None,
    want_grad: bool,
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Loss (and gradient) of :func:`softmaxkit.cross_entropy` for validated NumPy inputs, class axis last.

    ``target`` holds integer class indices (the batch shape) or probabilities (``z``'s shape and dtype);
    ``weight`` is in ``z``'s dtype. Returns ``(loss, grad)`` in ``z``'s dtype and layout, or None for the one
    case left to the reference: float64 logits whose ``mean`` denominator (the total weight) is subnormal, so
    that its reciprocal, which the kernel multiplies by, would overflow.
    """
    cpu = load_cpu()
    threads = _threads()
    x = _as_rows(z)
    n, k = x.shape
    dt = x.dtype
    w = np.ones(k, dtype=dt) if weight is None else _readable(np.ascontiguousarray(weight, dtype=dt))
    by_index = target.dtype.kind in "iu"
    if by_index:
        y = _readable(np.ascontiguousarray(target.reshape(-1), dtype=np.int64))
        if not -(2**63) <= ignore_index < 2**63:  # no int64 label equals it: nothing is ignored
            ignore_index = -1
        q = np.zeros((1, 1), dtype=dt)
        kind = 1 if label_smoothing > 0 else 0
        totals = np.zeros((threads, 3))
        cpu.label_totals(y, w, ignore_index, threads, totals)
        denom, n_rows = float(np.sum(totals[:, :2])), float(np.sum(totals[:, 2]))
    else:
        y = np.zeros(1, dtype=np.int64)
        q = _as_rows(target)
        kind = 2
        denom = n_rows = float(n)
    if reduction == "mean":
        if 0.0 < denom < np.finfo(dt).tiny and dt == np.float64:
            return None
        inv_ce = 1.0 / denom if denom > 0 else 0.0
        inv_z = 1.0 / n_rows if n_rows > 0 else 0.0
    else:
        inv_ce = inv_z = 1.0
    grad = np.empty((n if want_grad else 0, k), dtype=dt)
    rows = np.empty(n if reduction == "none" else 0, dtype=np.float64)
    sums = np.zeros((threads, 4))
    cap = dt.type(1.0 if softcap is None else softcap)
    cpu.cross_entropy_rows(
        x, y, ignore_index, q, w, kind, label_smoothing, z_loss, cap, softcap is not None, inv_ce, inv_z,
        grad, rows, sums, threads,
    )  # fmt: skip
    if reduction == "none":
        loss = rows.astype(dt).reshape(z.shape[:-1])
    else:
        ce, zl = float(np.sum(sums[:, :2])), float(np.sum(sums[:, 2:]))
        if reduction == "mean":
            ce = ce / denom if denom > 0 else 0.0
            zl = zl / n_rows if n_rows > 0 else 0.0
        loss = np.asarray(ce + zl, dtype=dt)
    return loss, (grad.reshape(z.shape) if want_grad else None)

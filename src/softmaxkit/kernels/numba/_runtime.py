"""The numba kernels' runtime: which threading layer runs them, how many threads a call gets, where they are cached.

Threading layer
---------------
numba picks its threading layer when its threads are first started, once per process. Its usual pick on Linux,
GNU OpenMP, is not fork-safe: a child forked after a parallel kernel ran aborts on its first parallel region
("fork() called from a process already using GNU OpenMP"), and a ``multiprocessing.Pool`` (a DataLoader with
workers) hangs. Its ``workqueue`` layer is fork-safe but not thread-safe: two threads in a parallel region at once
kill the process. TBB is both, and so it is what this package asks for, through ``tbb`` (a dependency on the
platforms that have its wheels): numba looks for ``libtbb.so.12`` by name, which the loader does not find where
pip puts it (the environment's ``lib/``), so :func:`_preload_tbb` loads it from there first.

Without TBB the layer is ``workqueue``, and :func:`threads` makes it thread-safe: one call at a time holds the
threads, a call that finds them busy runs on its own thread (the results are the same, see :mod:`._kernels`).
So every process gets a layer that survives both fork and threads. A layer chosen by the user
(``NUMBA_THREADING_LAYER`` or ``NUMBA_THREADING_LAYER_PRIORITY``) or already started by other code is kept.

Threads per call
----------------
Starting threads costs microseconds on an idle machine and up to a scheduler time slice (milliseconds) on a busy
one, where a woken thread waits for a core. A call therefore uses one thread per :data:`WORK_PER_THREAD` logits,
at most numba's thread count (``numba.set_num_threads``), and small work runs on the calling thread without
starting any (:func:`pieces`).

Cache
-----
Compiled kernels are cached on disk (numba's ``cache=True``) in one directory, the first of

1. ``SOFTMAXKIT_CACHE_DIR``, if set;
2. ``NUMBA_CACHE_DIR``, if set;
3. ``$XDG_CACHE_HOME/softmaxkit/numba`` (``~/.cache/softmaxkit/numba``);
4. ``softmaxkit-numba-<uid>`` in the temporary directory,

that is usable: a directory (created with mode 0700 when missing) owned by the user, writable by nobody else, and
writable by the user. numba's cache files are pickles, so a directory someone else could write is never read. If
the named directory (1 or 2) is not usable the kernels are compiled in memory, with one warning; if none of 3 and 4
is, silently. A cache file that cannot be read (truncated, garbage, another numba's) is removed and the kernel
compiled again, with one warning per process.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.metadata
import os
import stat
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "CACHE_ENV",
    "WORK_PER_THREAD",
    "cache_dir",
    "caching",
    "cfunc",
    "load",
    "load_extra",
    "pieces",
    "threading_layer",
    "threads",
]

CACHE_ENV = "SOFTMAXKIT_CACHE_DIR"
"""The environment variable naming the cache directory."""

WORK_PER_THREAD = 1 << 18
"""Logits (rows x classes) per thread: a call uses ``work // WORK_PER_THREAD`` threads, at least one.

Below about 2^18 float32 logits (a millisecond's work with one thread, under load) waking a second thread costs
more than it gives on a busy machine (``benchmarks/bench_threads.py``).
"""

_state: dict[str, Any] = {"cache": None, "layer": None, "threadsafe": True, "warned": False}
_load_lock = threading.Lock()
_pool_lock = threading.Lock()


# ------------------------------------------------------------------------------------------------ cache
def _usable(path: Path, create: bool) -> str | None:
    """Why ``path`` cannot be the cache directory, or None when it can (created 0700 if missing)."""
    try:
        if create and not path.exists():
            missing = []
            for parent in (path, *path.parents):
                if parent.exists():
                    break
                missing.append(parent)
            for folder in reversed(missing):
                folder.mkdir(mode=0o700)
        info = path.stat()
    except OSError as exc:
        return f"cannot be created ({exc.strerror or exc})"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if hasattr(os, "getuid"):
        if info.st_uid != os.getuid():
            return f"is owned by uid {info.st_uid}, not by this user"
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return f"is writable by others (mode {stat.S_IMODE(info.st_mode):o})"
    try:
        tempfile.TemporaryFile(dir=path).close()
    except OSError as exc:
        return f"is not writable ({exc.strerror or exc})"
    return None


def _choose_cache_dir() -> Path | None:
    named = [(os.environ.get(var), var) for var in (CACHE_ENV, "NUMBA_CACHE_DIR")]
    for value, var in named:
        if value:
            path = Path(value).expanduser()
            why = _usable(path, create=True)
            if why is None:
                return path
            warnings.warn(
                f"softmaxkit: the cache directory {path} ({var}) {why}; the numba kernels are compiled in memory, "
                "in every process",
                RuntimeWarning,
                stacklevel=2,
            )
            return None
    candidates = []
    with contextlib.suppress(RuntimeError):  # no home directory
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        if base.is_absolute():
            candidates.append(base / "softmaxkit" / "numba")
    uid = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    candidates.append(Path(tempfile.gettempdir()) / f"softmaxkit-numba-{uid}")
    for candidate in candidates:
        if _usable(candidate, create=True) is None:
            return candidate
    return None


def cache_dir() -> Path | None:
    """The directory the kernels are cached in, or None when they are compiled in memory (after :func:`load`)."""
    cache: Path | None = _state["cache"]
    return cache


def caching() -> bool:
    """Whether kernels defined now are cached on disk (read by ``_vmath.jit`` while :func:`load` imports them)."""
    return _state["cache"] is not None


def _warn_once(message: str) -> None:
    if not _state["warned"]:
        _state["warned"] = True
        warnings.warn(message, RuntimeWarning, stacklevel=2)


def _tolerate_damage(dispatcher: Any) -> None:
    """Make a cached kernel treat an unreadable cache file as a miss: removed, compiled again, one warning."""
    cache: Any = getattr(dispatcher, "_cache", None)
    files = getattr(cache, "_cache_file", None)
    if files is None:  # not cached (NullCache)
        return
    load, save = cache.load_overload, cache.save_overload

    def load_overload(sig: Any, target_context: Any) -> Any:
        try:
            return load(sig, target_context)
        except Exception as exc:  # unpickling a damaged file raises almost anything
            _warn_once(
                f"softmaxkit: a numba cache file in {files._cache_path} could not be read ({type(exc).__name__}: "
                f"{exc}); it is removed and the kernels are compiled again"
            )
            with contextlib.suppress(OSError):
                os.unlink(files._index_path)
            return None

    def save_overload(sig: Any, data: Any) -> None:
        try:
            save(sig, data)
        except Exception as exc:  # a full disk, a directory gone: the kernel still runs
            _warn_once(f"softmaxkit: a numba kernel could not be cached in {files._cache_path} ({exc})")

    cache.load_overload = load_overload
    cache.save_overload = save_overload


# ------------------------------------------------------------------------------------------------ threads
def _preload_tbb() -> bool:
    """Load TBB's library so that numba finds it by name; True when it is loaded."""
    name = {"linux": "libtbb.so.12", "darwin": "libtbb.12.dylib", "win32": "tbb12.dll"}.get(sys.platform)
    if name is None:
        return False
    mode = getattr(ctypes, "RTLD_GLOBAL", 0)
    try:
        files = importlib.metadata.files("tbb") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name == name:
            with contextlib.suppress(OSError):
                ctypes.CDLL(str(file.locate()), mode=mode)
                return True
    try:
        ctypes.CDLL(name, mode=mode)  # a system-wide TBB
    except OSError:
        return False
    return True


def _choose_layer(numba: Any) -> None:
    """Ask numba for TBB, else workqueue (never OpenMP), unless the user chose or the threads already run."""
    from numba.np.ufunc import parallel as numba_parallel

    config: Any = numba.config
    chosen = os.environ.get("NUMBA_THREADING_LAYER") or os.environ.get("NUMBA_THREADING_LAYER_PRIORITY")
    if not chosen and not numba_parallel._is_initialized:
        _preload_tbb()
        config.THREADING_LAYER = "default"
        config.THREADING_LAYER_PRIORITY = ["tbb", "workqueue", "omp"]
    numba.get_num_threads()  # starts the threads, so that the layer is known
    layer = str(numba.threading_layer())
    _state["layer"] = layer
    _state["threadsafe"] = layer != "workqueue"


def threading_layer() -> str:
    """The threading layer the kernels run on (after :func:`load`)."""
    layer: str = _state["layer"]
    return layer


def pieces(work: int) -> int:
    """Threads a call with ``work`` logits uses: one per :data:`WORK_PER_THREAD`, at most numba's thread count."""
    if work < 2 * WORK_PER_THREAD:
        return 1
    load()  # the threading layer is chosen before numba's threads start
    import numba

    return max(1, min(int(numba.get_num_threads()), work // WORK_PER_THREAD))


@contextlib.contextmanager
def threads(work: int) -> Iterator[int]:
    """The threads a call with ``work`` logits runs on, held for the ``with`` block: :func:`pieces`, or 1.

    With a thread-safe layer that is :func:`pieces`. With workqueue, only one call at a time may be in a
    parallel region: a call that finds another one there gets 1 and runs its serial kernel on its own thread.
    """
    n = pieces(work)
    if n == 1 or _state["threadsafe"]:
        yield n
        return
    got = _pool_lock.acquire(blocking=False)
    try:
        yield n if got else 1
    finally:
        if got:
            _pool_lock.release()


def _after_fork_in_child() -> None:
    global _pool_lock
    _pool_lock = threading.Lock()  # a lock held by a thread of the parent is never released in the child


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# ------------------------------------------------------------------------------------------------ loading
_loaded: list[ModuleType] = []


def load() -> ModuleType:
    """The jitted kernels (:mod:`._kernels`, :mod:`._plain` as its ``plain``), imported on the first call.

    The threading layer and the cache are chosen first, then the modules are imported.

    Raises
    ------
    ImportError
        numba is not installed.
    """
    if _loaded:
        return _loaded[0]
    with _load_lock:
        if _loaded:
            return _loaded[0]
        import numba
        from numba.core.registry import CPUDispatcher

        _choose_layer(numba)
        _state["cache"] = _choose_cache_dir()
        config: Any = numba.config  # its settings are set from the environment at run time, unknown to mypy
        saved = config.CACHE_DIR
        try:
            if _state["cache"] is not None:
                # numba reads CACHE_DIR when a cached function is defined: only our functions see this value
                config.CACHE_DIR = str(_state["cache"])
            package = __name__.rpartition(".")[0]
            vmath = importlib.import_module("._vmath", package)
            kernels = importlib.import_module("._kernels", package)
        finally:
            config.CACHE_DIR = saved
        for module in (vmath, kernels, kernels.plain):
            for value in vars(module).values():
                if isinstance(value, CPUDispatcher):
                    _tolerate_damage(value)
        _loaded.append(kernels)
        return kernels


_extra: dict[str, ModuleType] = {}


def load_extra(name: str) -> ModuleType:
    """Another module of jitted kernels of this package (``"_family"``), imported on its first call as
    :func:`load` imports its own: after the threading layer and the cache are chosen, cached in the same
    directory, an unreadable cache file treated as a miss.

    Raises
    ------
    ImportError
        numba is not installed.
    """
    module = _extra.get(name)
    if module is not None:
        return module
    load()
    with _load_lock:
        module = _extra.get(name)
        if module is not None:
            return module
        import numba
        from numba.core.registry import CPUDispatcher

        config: Any = numba.config
        saved = config.CACHE_DIR
        try:
            if _state["cache"] is not None:
                config.CACHE_DIR = str(_state["cache"])
            module = importlib.import_module(f".{name}", __name__.rpartition(".")[0])
        finally:
            config.CACHE_DIR = saved
        for value in vars(module).values():
            if isinstance(value, CPUDispatcher):
                _tolerate_damage(value)
        _extra[name] = module
        return module


def cfunc(func: Any) -> Any:
    """``func`` (one ``void *`` argument, see :mod:`._team`) compiled as a C function with the kernels' options,
    cached in the kernels' directory (an unreadable cache file a miss, as for them); after :func:`load`.

    numba's ``cfunc`` decorator, taken apart so that the cache directory is ours while the cache is located and
    a damaged file is tolerated before the first load.
    """
    import numba
    from numba.core.ccallback import CFunc

    options = {"nopython": True, "error_model": "numpy", "_nrt": True}
    from numba.core import sigutils

    normalize: Any = sigutils.normalize_signature
    signature = normalize(numba.types.void(numba.types.voidptr))
    task = CFunc(func, signature, locals={}, options=options)
    if _state["cache"] is not None:
        config: Any = numba.config
        saved = config.CACHE_DIR
        try:
            config.CACHE_DIR = str(_state["cache"])
            task.enable_caching()
        finally:
            config.CACHE_DIR = saved
        _tolerate_damage(task)
    task.compile()
    return task

"""The numba kernels' runtime (softmaxkit.kernels.numba._runtime): fork, threads, a damaged or unusable cache.

What could kill or hang a process runs in a subprocess, so that an abort is a failed test, not a lost session:

* fork after a parallel kernel ran, then a kernel in the child; ``multiprocessing.Pool.map`` with the "fork" start
  method (a DataLoader with workers), under the threading layer the package picks by default;
* 8 threads calling kernels at once, under the default layer and under ``workqueue`` (not thread-safe itself);
* a truncated or garbage cache file, a read-only, missing, foreign-owned or world-writable cache directory, each
  with the cache directory named by ``SOFTMAXKIT_CACHE_DIR``.

The cache tests use the smallest cached kernel (``_vmath.exp_array``), whose compile takes a second, so that each
subprocess starts from an empty cache quickly; the kernels share the cache machinery.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import softmaxkit as sk

pytest.importorskip("numba")
from softmaxkit.kernels.numba import _runtime

SRC = str(Path(sk.__file__).resolve().parents[1])


def run(code: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh Python with this checkout's softmaxkit; warnings are shown, not raised."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_THREADING", "SOFTMAXKIT_"))}
    environ["PYTHONPATH"] = SRC + os.pathsep + environ.get("PYTHONPATH", "")
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=environ, capture_output=True, text=True, timeout=timeout
    )


def assert_printed(done: subprocess.CompletedProcess[str], *lines: str) -> None:
    """``done`` exited with 0 and printed each of ``lines``."""
    assert done.returncode == 0, done.stderr[-3000:]
    for line in lines:
        assert line in done.stdout, done.stdout + done.stderr[-3000:]


# ------------------------------------------------------------------------------------------------ fork
FORK = """
    import multiprocessing, os, sys
    import numpy as np
    import softmaxkit as sk
    from softmaxkit.kernels.numba import _runtime

    x = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)  # 2^20 logits: threads
    assert _runtime.pieces(x.size) > 1 or os.cpu_count() == 1
    want = sk.softmax(x, backend="numba")
    print("layer", _runtime.threading_layer(), flush=True)

    pid = os.fork()
    if pid == 0:
        ok = np.array_equal(sk.softmax(x, backend="numba"), want)
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    print("child", os.waitstatus_to_exitcode(status), flush=True)

    def work(seed):
        z = np.random.default_rng(seed).standard_normal((1024, 1024)).astype(np.float32)
        return float(sk.cross_entropy(z, np.zeros(1024, dtype=np.int64), backend="numba"))

    with multiprocessing.get_context("fork").Pool(2) as pool:
        got = pool.map(work, range(4))
    print("pool", got == [work(s) for s in range(4)], flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_fork_after_a_parallel_kernel_and_pool_map() -> None:
    done = run(FORK, timeout=900)
    assert_printed(done, "child 0", "pool True")
    assert "layer omp" not in done.stdout  # GNU OpenMP aborts a forked child


def test_default_layer_is_fork_and_thread_safe() -> None:
    sk.softmax(np.ones((2, 3)), backend="numba")  # loads the kernels
    assert _runtime.threading_layer() in {"tbb", "workqueue"}


# ------------------------------------------------------------------------------------------------ threads
def in_threads(results: Callable[[int], Any], n: int) -> dict[int, Any]:
    """``results(i)`` computed three times in thread ``i`` of ``n`` started at once; the last of each, after
    asserting that no thread raised."""
    got: dict[int, Any] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for _ in range(3):
                got[i] = results(i)
        except BaseException as exc:  # handed to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return got


def _eight_threads() -> None:
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((512 + 64 * i, 1024)).astype(np.float32) for i in range(8)]
    targets = [rng.integers(0, 1024, len(x)) for x in inputs]

    def results(i: int) -> list[Any]:
        x, t = inputs[i], targets[i]
        loss, grad = sk.cross_entropy_value_and_grad(x, t, backend="numba")
        return [sk.softmax(x, backend="numba"), sk.log_softmax(x, backend="numba"), loss, grad]

    serial = [results(i) for i in range(8)]
    got = in_threads(results, 8)
    for i in range(8):
        for a, b in zip(got[i], serial[i], strict=True):
            # a mean's per-piece sums may be added in another grouping when a call ran serially
            np.testing.assert_allclose(a, b, rtol=2e-7 if np.ndim(a) == 0 else 0, atol=0)


def test_eight_threads_give_the_serial_results() -> None:
    _eight_threads()


def test_eight_threads_under_workqueue() -> None:
    """workqueue aborts the process on concurrent parallel regions; the runtime lets one call at a time in."""
    code = f"""
        import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})
        import test_runtime
        from softmaxkit.kernels.numba import _runtime
        test_runtime._eight_threads()
        print("layer", _runtime.threading_layer())
    """
    done = run(code, env={"NUMBA_THREADING_LAYER": "workqueue"}, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "layer workqueue" in done.stdout


# ------------------------------------------------------------------------------------------------ cache
EXP = """
    import json, warnings
    import numpy as np
    from softmaxkit.kernels.numba import _runtime
    x = np.linspace(-5, 5, 101)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _runtime.load()
        from softmaxkit.kernels.numba import _vmath
        for _ in range(3):
            out = np.empty_like(x)
            _vmath.exp_array(x, out)
    print(json.dumps({"ok": bool(np.allclose(out, np.exp(x), rtol=1e-15)), "cache": str(_runtime.cache_dir()),
                      "warnings": [str(m.message) for m in caught]}))
"""


def exp_run(cache: Path) -> dict[str, Any]:
    done = run(EXP, env={"SOFTMAXKIT_CACHE_DIR": str(cache)})
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ok"]
    return result


def cache_files(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.is_file() and p.name.startswith("_vmath.exp_array")]


LOG_AFTER_SOFTMAX = """
    import sys
    import numpy as np
    from softmaxkit.kernels import numba as kernels
    x = np.random.default_rng(1).standard_normal((8, 40)) * 3
    want = x - np.log(np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True)) - x.max(1, keepdims=True)
    for step in sys.argv[1:] or ["softmax", "log_softmax"]:
        out = kernels.softmax(x, 1.0, step == "log_softmax")
        if step == "log_softmax":
            print(float(np.abs(out - want).max()))
"""


def test_cached_closures_of_one_factory_keep_their_own_code(tmp_path: Path) -> None:
    """softmax compiled by one process, log_softmax by another, both loaded from the cache by a third: the two
    kernels inline different closures of one factory (``_rows._plain_pass``), which carried the same symbol, and
    log_softmax ran softmax's pass (errors of 5.6). ``_vmath.jit(variant=...)`` names them apart."""
    env = {"SOFTMAXKIT_CACHE_DIR": str(tmp_path / "cache")}
    errors = []
    for steps in (["softmax"], ["log_softmax"], ["softmax", "log_softmax"]):
        done = run(LOG_AFTER_SOFTMAX.replace("sys.argv[1:]", repr(steps)), env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        errors += [float(line) for line in done.stdout.split()]
    assert len(errors) == 2, errors
    assert max(errors) < 1e-13, errors


def test_every_closure_factory_names_its_variants() -> None:
    """A ``@jit`` function defined inside another function (a factory of variants) passes ``variant=``: see
    :func:`test_cached_closures_of_one_factory_keep_their_own_code`."""
    import ast

    folder = Path(_runtime.__file__).parent
    unnamed = []
    for path in sorted(folder.glob("*.py")):
        for outer in ast.walk(ast.parse(path.read_text())):
            if not isinstance(outer, ast.FunctionDef):
                continue
            for inner in ast.walk(outer):
                if inner is outer or not isinstance(inner, ast.FunctionDef):
                    continue
                for deco in inner.decorator_list:
                    call = deco if isinstance(deco, ast.Call) else None
                    name = getattr(call.func if call else deco, "id", getattr(call.func if call else deco, "attr", ""))
                    if name in ("jit", "njit") and not any(k.arg == "variant" for k in (call.keywords if call else [])):
                        unnamed.append(f"{path.name}:{inner.lineno} {inner.name}")
    assert not unnamed, unnamed


def test_missing_cache_directory_is_created_private(tmp_path: Path) -> None:
    cache = tmp_path / "a" / "b"
    result = exp_run(cache)
    assert result["warnings"] == []
    assert result["cache"] == str(cache)
    assert cache_files(cache), "nothing was cached"
    if hasattr(os, "getuid"):
        assert stat.S_IMODE(cache.stat().st_mode) == 0o700
        assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_cache_file_is_rebuilt_with_one_warning(tmp_path: Path, damage: str) -> None:
    cache = tmp_path / "cache"
    exp_run(cache)
    files = cache_files(cache)
    assert {p.suffix for p in files} == {".nbi", ".nbc"}
    for p in files:
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2] if damage == "truncated" else os.urandom(len(data)))
    result = exp_run(cache)
    assert len(result["warnings"]) == 1, result["warnings"]
    assert "could not be read" in result["warnings"][0]
    assert exp_run(cache)["warnings"] == []  # rebuilt: the next process loads it


def test_damaged_data_file_alone_is_rebuilt(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    exp_run(cache)
    for p in cache_files(cache):
        if p.suffix == ".nbc":
            p.write_bytes(b"\x80\x04garbage")
    assert len(exp_run(cache)["warnings"]) == 1
    assert exp_run(cache)["warnings"] == []


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() == 0, reason="root writes into read-only folders")
def test_read_only_cache_directory_compiles_in_memory(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o500)
    try:
        result = exp_run(cache)
    finally:
        cache.chmod(0o700)
    assert result["cache"] == "None"
    assert len(result["warnings"]) == 1
    assert "not writable" in result["warnings"][0]


def test_unwritable_cache_directory_compiles_in_memory(tmp_path: Path) -> None:
    """A path that cannot be a directory (under a file) works for root too."""
    (tmp_path / "file").write_text("")
    result = exp_run(tmp_path / "file" / "cache")
    assert result["cache"] == "None"
    assert len(result["warnings"]) == 1
    assert "cannot be created" in result["warnings"][0]


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_cache_directory_others_can_write_is_never_read(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    exp_run(cache)
    planted = cache_files(cache)
    for p in planted:
        p.write_bytes(b"\x80\x04garbage")  # what another user could have put there
    cache.chmod(0o777)
    result = exp_run(cache)
    assert result["cache"] == "None"
    assert len(result["warnings"]) == 1
    assert "writable by others" in result["warnings"][0]
    assert all(p.read_bytes() == b"\x80\x04garbage" for p in planted)  # not read, not rewritten


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX ownership")
def test_cache_directory_of_another_user_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "getuid", lambda: os.stat(tmp_path).st_uid + 1)
    why = _runtime._usable(tmp_path, create=False)
    assert why is not None
    assert "owned by uid" in why


def test_default_cache_directory_is_under_xdg_cache_home(tmp_path: Path) -> None:
    done = run(
        "from softmaxkit.kernels.numba import _runtime; _runtime.load(); print(_runtime.cache_dir())",
        env={"XDG_CACHE_HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == str(tmp_path / "softmaxkit" / "numba")


# ------------------------------------------------------------------------------------------------ threads per call
def test_small_work_runs_on_the_calling_thread() -> None:
    assert _runtime.pieces(64 * 1000) == 1
    assert _runtime.pieces(256 * 1000) == 1
    assert 1 <= _runtime.pieces(1 << 24) <= max(1, os.cpu_count() or 1)


@pytest.mark.parametrize("shape", [(5003, 7), (1100, 31), (40, 1023), (17, 2049), (2, 524289)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_parallel_kernels_equal_the_serial_ones(monkeypatch: pytest.MonkeyPatch, shape: Any, dtype: str) -> None:
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(shape) * 10).astype(dtype)
    x[0, 0] = np.nan
    x[-1, :] = -np.inf
    t = rng.integers(0, shape[1], shape[0])
    t[1 % shape[0]] = -100

    def everything() -> list[Any]:
        out = [sk.softmax(x, backend="numba"), sk.log_softmax(x, backend="numba")]
        out.append(sk.logsumexp(x, backend="numba"))
        for options in ({}, {"label_smoothing": 0.1, "z_loss": 1e-3}, {"softcap": 3.0}):
            out.extend(sk.cross_entropy_value_and_grad(x, t, reduction="none", backend="numba", **options))
        out.extend(sk.cross_entropy_value_and_grad(x, t, backend="numba"))
        return out

    serial = everything()
    monkeypatch.setattr(_runtime, "pieces", lambda work: 3 if work >= 32 else 1)
    parallel = everything()
    for a, b in zip(parallel[:-2], serial[:-2], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(parallel[-2], serial[-2], rtol=1e-6)  # a mean: per-piece sums
    np.testing.assert_array_equal(parallel[-1], serial[-1])

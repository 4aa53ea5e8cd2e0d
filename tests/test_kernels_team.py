"""The common kernels on torch's OpenMP threads (softmaxkit.kernels.numba._team), as softmaxkit.torch runs them.

* every task equals the numba kernel it stands for, bit for bit, float32 and float64, with special rows;
* softmaxkit.torch's CPU path runs them where the work takes more than one thread, and not with one torch thread;
* a child forked after the team ran gets no team and computes the same (libgomp's threads are gone there), and
  a ``fork`` Pool's workers do too; 8 Python threads calling at once get the serial results.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("numba")
torch = pytest.importorskip("torch")

import softmaxkit.torch as skt  # noqa: E402
from softmaxkit.kernels import numba as kernels  # noqa: E402
from test_runtime import assert_printed, in_threads, run  # noqa: E402

TEAM = kernels.torch_team()
needs_team = pytest.mark.skipif(TEAM is None, reason="torch does not run on GNU OpenMP here")

# more than 2 * WORK_PER_THREAD logits, so that two threads take a piece each
SHAPES = ((600, 1000), (150, 4099))


def _logits(n: int, k: int, dtype: Any) -> np.ndarray:
    x = (np.random.default_rng(n + k).standard_normal((n, k)) * 4).astype(dtype)
    x[1] = -np.inf  # fully masked
    x[2, 5] = np.nan
    x[3, 7] = np.inf
    x[4, :3] = -np.inf
    x[5] *= 300  # entries far below the maximum
    return x


@pytest.fixture
def two_torch_threads() -> Any:
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(saved)


@needs_team
@pytest.mark.usefixtures("two_torch_threads")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_tasks_equal_the_numba_kernels(dtype: Any, shape: tuple[int, int]) -> None:
    x = _logits(*shape, dtype)
    assert TEAM is not None
    assert TEAM.pieces(x.size) == 2
    g = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    for log in (False, True):
        want = kernels.softmax(x, 1.0, log)
        np.testing.assert_array_equal(kernels.softmax(x, 1.0, log, TEAM), want)
        np.testing.assert_array_equal(
            kernels.softmax_backward(want, g, log, TEAM), kernels.softmax_backward(want, g, log)
        )
    np.testing.assert_array_equal(kernels.logsumexp(x, TEAM), kernels.logsumexp(x))
    y = np.random.default_rng(2).integers(0, shape[1], shape[0])
    y[6] = -100
    w = np.random.default_rng(3).random(shape[1]).astype(dtype)
    for reduction in ("mean", "sum", "none"):
        for weight in (None, w):
            for grad in (True, False):
                want_ce = kernels.cross_entropy(x, y, weight, -100, 0.0, reduction, 0.0, None, grad)
                got = kernels.cross_entropy(x, y, weight, -100, 0.0, reduction, 0.0, None, grad, TEAM)
                assert want_ce is not None
                assert got is not None
                np.testing.assert_array_equal(got[0], want_ce[0])
                if grad:
                    np.testing.assert_array_equal(got[1], want_ce[1])


def test_tasks_cache_stamp_follows_the_sources() -> None:
    """numba caches a function by its own file: _team.py's stamp of the files whose code it compiles in."""
    from softmaxkit.kernels.numba import _runtime

    folder = Path(kernels.__file__).parent
    digest = hashlib.sha256()
    for name in ("_rows.py", "_vmath.py", "_plain.py", "_backward.py"):
        digest.update((folder / name).read_bytes())
    want = digest.hexdigest()[:16]
    kernels.start()
    got = _runtime.load_extra("_team").SOURCES_SHA
    assert got == want, f"set SOURCES_SHA in softmaxkit/kernels/numba/_team.py to {want!r}"


@needs_team
def test_torch_front_runs_on_the_team(monkeypatch: pytest.MonkeyPatch, two_torch_threads: None) -> None:
    ran: list[str] = []
    run_task = type(TEAM).run

    def spy(self: Any, name: str, *args: Any, **values: Any) -> None:
        ran.append(name)
        run_task(self, name, *args, **values)

    monkeypatch.setattr(type(TEAM), "run", spy)
    x = torch.from_numpy(_logits(600, 1000, np.float32)).nan_to_num(0.0, 30.0, -30.0).requires_grad_(True)
    ref = x.detach().clone().requires_grad_(True)
    w = torch.randn(600, 1000)
    y = torch.randint(0, 1000, (600,))
    for ours, theirs in (
        (lambda a: (skt.softmax(a, dim=1) * w).sum(), lambda a: (torch.softmax(a, 1) * w).sum()),
        (lambda a: (skt.log_softmax(a, dim=1) * w).sum(), lambda a: (torch.log_softmax(a, 1) * w).sum()),
        (lambda a: skt.logsumexp(a, dim=1).sum(), lambda a: torch.logsumexp(a, 1).sum()),
        (lambda a: skt.cross_entropy(a, y), lambda a: torch.nn.functional.cross_entropy(a, y)),
    ):
        x.grad = ref.grad = None
        ours(x).backward()
        theirs(ref).backward()
        torch.testing.assert_close(x.grad, ref.grad, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(skt.cross_entropy(x, y), torch.nn.functional.cross_entropy(x, y))
    assert set(ran) == {
        "softmax", "softmax_backward", "log_softmax", "log_softmax_backward", "logsumexp", "cross_entropy",
        "cross_entropy_loss",
    }  # fmt: skip

    ran.clear()
    torch.set_num_threads(1)
    (skt.softmax(x, dim=1) * w).sum().backward()
    assert ran == []  # one torch thread: the serial kernel on this thread


@needs_team
@pytest.mark.usefixtures("two_torch_threads")
def test_eight_threads_calling_at_once() -> None:
    rng = np.random.default_rng(4)
    inputs = [torch.from_numpy(rng.standard_normal((600, 1000)).astype(np.float32)) for _ in range(8)]
    labels = torch.zeros(600, dtype=torch.int64)

    def results(i: int) -> tuple[Any, Any]:
        return skt.softmax(inputs[i], dim=1), skt.cross_entropy(inputs[i], labels)

    serial = [results(i) for i in range(8)]
    got = in_threads(results, 8)
    for i in range(8):
        torch.testing.assert_close(got[i][0], serial[i][0], rtol=0, atol=0)
        torch.testing.assert_close(got[i][1], serial[i][1], rtol=0, atol=0)


FORK = """
    import multiprocessing, os
    import numpy as np
    import torch
    import softmaxkit.torch as skt
    from softmaxkit.kernels import numba as kernels

    torch.set_num_threads(2)
    x = torch.randn(1024, 1024, generator=torch.Generator().manual_seed(0))
    want = skt.softmax(x, dim=1)
    print("team", kernels.torch_team() is not None, flush=True)

    pid = os.fork()
    if pid == 0:
        # (compared in NumPy: torch's own parallel ops wait forever in a child of a process that ran them)
        ok = kernels.torch_team() is None and np.array_equal(skt.softmax(x, dim=1).numpy(), want.numpy())
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    print("child", os.waitstatus_to_exitcode(status), flush=True)

    def work(seed):
        z = torch.from_numpy(np.random.default_rng(seed).standard_normal((1024, 1024)).astype(np.float32))
        return float(skt.cross_entropy(z, torch.zeros(1024, dtype=torch.int64)))

    with multiprocessing.get_context("fork").Pool(2) as pool:
        got = pool.map(work, range(4))
    print("pool", got == [work(s) for s in range(4)], flush=True)
"""


@needs_team
@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_fork_after_the_team_ran() -> None:
    assert_printed(run(FORK, timeout=900), "team True", "child 0", "pool True")


CACHED = """
    import numpy as np
    import torch
    from softmaxkit.kernels import numba as kernels
    from softmaxkit.kernels.numba import _runtime

    torch.set_num_threads(2)
    x = np.random.default_rng(0).standard_normal((600, 1000)).astype(np.float32)
    got = kernels.logsumexp(x, kernels.torch_team())
    assert np.array_equal(got, kernels.logsumexp(x))
    print("hits", _runtime.load_extra("_team")._compiled["logsumexp"].cache_hits, flush=True)
"""


@needs_team
def test_a_task_is_loaded_from_the_cache_by_the_next_process(tmp_path: Path) -> None:
    """A cached closure is keyed on its variables: a second process must find the first one's task."""
    env = {"SOFTMAXKIT_CACHE_DIR": str(tmp_path / "cache")}
    first, second = run(CACHED, env=env), run(CACHED, env=env)
    assert "hits 0" in first.stdout, first.stdout + first.stderr[-3000:]
    assert "hits 1" in second.stdout, second.stdout + second.stderr[-3000:]

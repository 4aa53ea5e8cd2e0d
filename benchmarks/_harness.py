"""What every script in ``benchmarks/`` shares: the timer, the machine description, the thread count, the JSON.

A script does four things with it::

    from _harness import add_arguments, interleaved, machine_info, set_threads, time_call, write_results

    parser = argparse.ArgumentParser(...)
    add_arguments(parser)                    # --out (benchmarks/results), --threads N (N >= 1), --repeat N
    args = parser.parse_args()
    threads = set_threads(args.threads)      # numba, BLAS/OpenMP (threadpoolctl) and torch, all to N
    t = time_call(lambda: f(x), repeat=args.repeat)   # t.median, t.best, t.times (seconds)
    write_results("bench_name", {"cases": ...}, args.out, threads=threads)

``interleaved`` times several calls round-robin and returns their medians. ``time_call`` times with
:func:`time.perf_counter`, ``time_cuda`` with CUDA events; both run ``warmup`` untimed calls first, call
``before``/``after`` outside the timed region of every repetition, and report the median (the figure scripts
quote) with the best and every time. ``write_results`` writes ``<name>.json`` with a ``machine``
entry (:func:`machine_info`: CPU model and its AVX2/AVX-512 flags, logical CPUs, threads used, the GPU when one
was used, Python and the versions of the libraries compared) next to the script's own results; non-finite floats
become ``null`` so that the file is valid JSON. Results go to ``benchmarks/results/`` (ignored by git) unless
``--out`` says otherwise.

The scripts are run as ``python benchmarks/bench_<what>.py``; Python then puts ``benchmarks/`` on the import path,
which is how they find this module.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
"""The one folder every script writes into by default (``.gitignore`` lists it)."""

LIBRARIES = (
    "softmaxkit",
    "numpy",
    "scipy",
    "numba",
    "torch",
    "jax",
    "scikit-learn",
    "triton",
    "liger-kernel",
    "cut-cross-entropy",
)
"""Distributions whose versions go into every result file (``None`` where not installed)."""


# ----------------------------------------------------------------------------------------------------- timing
@dataclass(frozen=True)
class Timing:
    """Seconds of each timed repetition; ``median`` is the figure to quote, ``best`` the least disturbed run."""

    times: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)

    def as_dict(self) -> dict[str, Any]:
        return {"median_s": self.median, "best_s": self.best, "times_s": list(self.times)}


def time_call(
    call: Callable[[], Any],
    *,
    repeat: int = 7,
    warmup: int = 1,
    before: Callable[[], Any] | None = None,
    after: Callable[[], Any] | None = None,
    budget: float | None = None,
) -> Timing:
    """Wall-clock times of ``repeat`` calls of ``call`` after ``warmup`` untimed ones.

    ``before`` and ``after`` run around every call (warm-up included), outside the timed region: to refresh
    inputs a call overwrites, or to read a memory counter. With ``budget`` (seconds), the repetitions stop once
    that much time has been spent in timed calls (at least one is always timed).
    """
    _positive("repeat", repeat)
    times: list[float] = []
    for i in range(warmup + repeat):
        if before is not None:
            before()
        start = time.perf_counter()
        call()
        elapsed = time.perf_counter() - start
        if after is not None:
            after()
        if i >= warmup:
            times.append(elapsed)
            if budget is not None and sum(times) > budget:
                break
    return Timing(tuple(times))


def interleaved(calls: dict[str, Callable[[], Any]], repeat: int, *, block: float = 5e-3) -> dict[str, float]:
    """Median seconds of each call, timed round-robin: ``repeat`` blocks of each, in turn, of about ``block``
    seconds (several calls per block for short ones), so that a machine shared with other work disturbs them alike.

    Calls of libraries with thread pools of their own are better timed in separate processes: torch's OpenMP
    workers spin for milliseconds after each parallel region and take a core from whatever runs next
    (``bench_targets.py`` runs each library in its own process).
    """
    for call in calls.values():
        call()
    inner = {}
    for name, call in calls.items():
        start = time.perf_counter()
        call()
        inner[name] = max(1, int(block / max(time.perf_counter() - start, 1e-7)))
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeat):
        for name, call in calls.items():
            start = time.perf_counter()
            for _ in range(inner[name]):
                call()
            times[name].append((time.perf_counter() - start) / inner[name])
    return {name: statistics.median(t) for name, t in times.items()}


def time_cuda(
    call: Callable[[], Any],
    *,
    repeat: int = 10,
    warmup: int = 2,
    before: Callable[[], Any] | None = None,
    after: Callable[[], Any] | None = None,
) -> Timing:
    """As :func:`time_call`, timed with CUDA events on the current stream (synchronised after each call)."""
    import torch

    _positive("repeat", repeat)
    times: list[float] = []
    for i in range(warmup + repeat):
        if before is not None:
            before()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        torch.cuda.synchronize()
        if after is not None:
            after()
        if i >= warmup:
            times.append(start.elapsed_time(end) / 1e3)
    return Timing(tuple(times))


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, or ``None`` (``null`` in JSON) when the denominator is 0 (too small to measure)."""
    return numerator / denominator if denominator else None


# ------------------------------------------------------------------------------------------ machine and threads
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``sysctl`` on macOS), else :func:`platform.processor`."""
    for line in _cpuinfo():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    if sys.platform == "darwin":
        import subprocess

        try:
            return subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    return platform.processor() or platform.machine()


def cpu_flags() -> dict[str, bool | None]:
    """Whether the CPU has AVX2 and AVX-512 (foundation, ``avx512f``); ``None`` where this cannot be read."""
    for line in _cpuinfo():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return {"avx2": "avx2" in flags, "avx512f": "avx512f" in flags}
    return {"avx2": None, "avx512f": None}


def _cpuinfo() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return f.readlines()
    except OSError:
        return []


def threads_in_use() -> int:
    """numba's thread count where numba is installed, else the number of logical CPUs."""
    try:
        import numba
    except ImportError:
        return os.cpu_count() or 1
    return int(numba.get_num_threads())


_limits: list[Any] = []  # threadpoolctl's limiter, kept alive so that the limit holds for the whole run


def set_threads(threads: int | None) -> int:
    """Limit numba, the BLAS/OpenMP pools (threadpoolctl) and torch to ``threads``; return the count in use.

    ``None`` leaves every library at its own default and returns numba's count.
    """
    if threads is None:
        return threads_in_use()
    _positive("threads", threads)
    try:
        import numba
    except ImportError:
        pass
    else:
        if threads > numba.config.NUMBA_NUM_THREADS:
            raise ValueError(
                f"threads must be at most numba's NUMBA_NUM_THREADS = {numba.config.NUMBA_NUM_THREADS}, got {threads}"
            )
        numba.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        pass
    else:
        _limits.append(threadpool_limits(threads))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return threads


def gpu_name() -> str | None:
    """The CUDA device's name, when torch is already imported and sees one (never imports torch itself)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return str(torch.cuda.get_device_name())


def versions(names: Sequence[str] = LIBRARIES) -> dict[str, str | None]:
    """Installed versions of ``names`` (distribution names), ``None`` for those not installed."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """The machine a result was measured on: what every result file records under ``machine``."""
    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "threads": threads if threads is not None else threads_in_use(),
        "gpu": gpu_name(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions(),
    }


def describe(machine: dict[str, Any]) -> str:
    """One line for the console: CPU model, its vector flags, threads, and the GPU when there is one."""
    flags = [name for name, on in machine["cpu_flags"].items() if on] or ["no AVX2/AVX-512 flags read"]
    line = f"{machine['cpu']} ({', '.join(flags)}), {machine['threads']} of {machine['logical_cpus']} threads"
    return line + (f", GPU {machine['gpu']}" if machine["gpu"] else "")


# ------------------------------------------------------------------------------------------ arguments and JSON
def positive_int(text: str) -> int:
    """``argparse`` type: an integer of at least 1 (``--threads 0`` or ``--repeat -1`` are usage errors)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser, *, repeat: int | None = 7, threads: bool = True) -> None:
    """``--out DIR`` (default ``benchmarks/results``), ``--threads N`` and ``--repeat N`` (default ``repeat``).

    ``threads=False`` or ``repeat=None`` leave those options out (a GPU script has no CPU thread count to set).
    """
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"folder for the results (default {RESULTS})")
    if threads:
        parser.add_argument(
            "--threads", type=positive_int, default=None, help="threads for numba, BLAS/OpenMP and torch"
        )
    if repeat is not None:
        parser.add_argument("--repeat", type=positive_int, default=repeat, help=f"timed repetitions (default {repeat})")


def write_results(
    name: str, results: dict[str, Any], out: Path | str | None = None, *, threads: int | None = None
) -> Path:
    """Write ``{"benchmark": name, "machine": machine_info(threads), **results}`` to ``out/<name>.json``.

    The file is written whole or not at all (a temporary file renamed into place); the path is returned.
    """
    folder = Path(out) if out is not None else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    payload = {"benchmark": name, "machine": machine_info(threads), **results}
    text = json.dumps(_finite(payload), indent=1, allow_nan=False) + "\n"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def _finite(x: Any) -> Any:
    """``x`` with non-finite floats as ``None`` and tuples, paths and other objects as JSON can hold them."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if x is None or isinstance(x, (bool, int, str)):
        return x
    if hasattr(x, "item"):  # NumPy and torch scalars
        return _finite(x.item())
    return str(x)


def _positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")

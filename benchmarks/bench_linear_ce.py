"""Linear cross-entropy: peak memory and time of softmaxkit against naive torch and torch's own op.

Every method runs in a fresh subprocess (``--method``), so that one method's allocations cannot hide
another's. In that process the inputs are made first (``hidden`` (N, D), ``W`` (V, D), both requiring grad,
and the targets); then, per repetition, the gradients are cleared, the kernel's peak-RSS mark is reset
(``echo 5 > /proc/self/clear_refs``), forward + backward run, and the peak resident set (``VmHWM``) minus the
resident set just before the run is that repetition's *peak extra memory*: every byte the step touched
beyond the inputs, the gradients ``W.grad`` / ``hidden.grad`` included (the naive path needs them too). This
counts what the operating system had to provide, torch's allocations and the BLAS workspaces alike, with no
profiler in the way. The first repetition is a warm-up; the time is the median of the others, memory their
maximum.

Methods: ``naive`` = ``F.cross_entropy(hidden @ W.T, y)`` + backward; ``torch_chunked`` =
``F.linear_cross_entropy(hidden, W, y, options=LinearCrossEntropyOptions())`` (torch's memory-saving path);
``torch_reference`` = the same with ``options=None`` (torch's default, logits in full); ``softmaxkit`` =
:func:`softmaxkit.torch.linear_cross_entropy`.

Usage::

    python benchmarks/bench_linear_ce.py --n 8192 --d 1024 --v 65536 --out bench_linear_ce.json

writes JSON with, per method, ``peak_extra_mib`` and ``time_s`` (median) and ``times_s``, and the ratios the
issue asks for: softmaxkit's memory over naive's (target <= 1/16) and its time over torch's op (target <= 1).
Run it on a quiet machine: the timings are wall-clock.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

METHODS = ("naive", "torch_reference", "torch_chunked", "softmaxkit")


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def run_method(method: str, n: int, d: int, v: int, repeat: int, seed: int) -> dict[str, Any]:
    """One method, in this process: a warm-up and ``repeat`` measured runs."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    hidden = (torch.randn(n, d, generator=g) / d**0.5).requires_grad_()
    weight = torch.randn(v, d, generator=g).requires_grad_()
    target = torch.randint(0, v, (n,), generator=g)

    if method == "naive":

        def step() -> torch.Tensor:
            return F.cross_entropy(hidden @ weight.T, target)
    elif method == "torch_reference":

        def step() -> torch.Tensor:
            return F.linear_cross_entropy(hidden, weight, target)
    elif method == "torch_chunked":
        options = torch.nn.LinearCrossEntropyOptions()

        def step() -> torch.Tensor:
            return F.linear_cross_entropy(hidden, weight, target, options=options)
    elif method == "softmaxkit":
        from softmaxkit.torch import linear_cross_entropy

        def step() -> torch.Tensor:
            return linear_cross_entropy(hidden, weight, target)
    else:
        raise ValueError(f"unknown method {method!r}")

    times, peaks, losses = [], [], []
    exact_peak = True
    for _ in range(repeat + 1):
        hidden.grad = weight.grad = None
        before = _rss_kib("VmRSS")
        # without the reset, VmHWM is the peak of the whole process so far: an upper bound of this step's
        exact_peak = _reset_peak() and exact_peak
        t0 = time.perf_counter()
        loss = step()
        loss.backward()
        elapsed = time.perf_counter() - t0
        peaks.append((_rss_kib("VmHWM") - before) / 1024)
        times.append(elapsed)
        losses.append(float(loss))
        del loss
    return {
        "time_s": statistics.median(times[1:]),
        "times_s": times,
        "peak_extra_mib": max(peaks[1:]),
        "peaks_mib": peaks,
        "loss": losses[-1],
        "threads": torch.get_num_threads(),
        "peak_is_exact": exact_peak,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=8192)
    p.add_argument("--d", type=int, default=1024)
    p.add_argument("--v", type=int, default=65536)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--method", help=argparse.SUPPRESS)  # internal: run one method, print JSON
    p.add_argument("--out", default="bench_linear_ce.json")
    a = p.parse_args()
    if a.method:
        print(json.dumps(run_method(a.method, a.n, a.d, a.v, a.repeat, a.seed)))
        return
    results: dict[str, Any] = {}
    for method in a.methods.split(","):
        cmd = [sys.executable, __file__, "--method", method, "--n", str(a.n), "--d", str(a.d), "--v", str(a.v)]
        cmd += ["--repeat", str(a.repeat), "--seed", str(a.seed)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[method] = json.loads(out.strip().splitlines()[-1])
        r = results[method]
        print(f"{method:15s} peak extra {r['peak_extra_mib']:9.1f} MiB  time {r['time_s']:7.3f} s loss {r['loss']:.6f}")
    report: dict[str, Any] = {
        "size": {"n": a.n, "d": a.d, "v": a.v, "dtype": "float32", "device": "cpu"},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "results": results,
    }
    ours = results.get("softmaxkit")
    if ours:
        ratios = {}
        if "naive" in results:
            ratios["memory_vs_naive"] = ours["peak_extra_mib"] / results["naive"]["peak_extra_mib"]
            ratios["time_vs_naive"] = ours["time_s"] / results["naive"]["time_s"]
        for ref in ("torch_chunked", "torch_reference"):
            if ref in results:
                ratios[f"time_vs_{ref}"] = ours["time_s"] / results[ref]["time_s"]
                ratios[f"memory_vs_{ref}"] = ours["peak_extra_mib"] / results[ref]["peak_extra_mib"]
        report["ratios"] = ratios
        report["targets"] = {"memory_vs_naive": "<= 1/16 = 0.0625", "time_vs_torch_linear_cross_entropy": "<= 1.0"}
        print(json.dumps(ratios, indent=2))
    with open(a.out, "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()

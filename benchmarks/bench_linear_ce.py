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

    python benchmarks/bench_linear_ce.py --n 8192 --d 1024 --v 65536 [--threads N] [--out DIR]

writes ``DIR/bench_linear_ce.json`` (default ``benchmarks/results``; the timer, machine description and JSON are
``benchmarks/_harness.py``'s) with, per method, ``peak_extra_mib``, ``time_s`` (median) and ``times_s``, and the
ratios the issue asks for: softmaxkit's memory over naive's (target <= 1/16) and its time over torch's chunked op
(issue 15: <= 0.8 at N=8192, D=1024, V=65536). Torch's chunked options are its defaults
(``LinearCrossEntropyOptions()``: ``chunking_method="auto"``, ``acc_policy="auto"``; for float32 on CPU these resolve
to ``"aspect_ratio:2"`` and ``"compact"``, i.e. chunks of ``next_pow2(ceil(N / ceil(V / D))) / 2`` rows, 64 at the
target size, with the weight gradient accumulated by ``addmm_``). Each method also reports ``cpu_time_s``, the
median of the process's CPU time per repetition (``time.process_time``): with ``--threads 1`` on a shared machine it
is the steadier figure (``cpu_time_vs_*`` ratios); with more threads it also counts the threads' idle spinning.
The timings are wall-clock otherwise: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

from _harness import add_arguments, describe, machine_info, positive_int, ratio, set_threads, time_call, write_results

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

    peaks: list[float] = []
    cpu: list[float] = []
    losses: list[float] = []
    exact_peak = True
    before_kib = 0

    def before() -> None:
        nonlocal before_kib, exact_peak
        hidden.grad = weight.grad = None
        before_kib = _rss_kib("VmRSS")
        # without the reset, VmHWM is the peak of the whole process so far: an upper bound of this step's
        exact_peak = _reset_peak() and exact_peak

    def call() -> None:
        start = time.process_time()
        loss = step()
        loss.backward()
        cpu.append(time.process_time() - start)
        losses.append(float(loss))

    def after() -> None:
        peaks.append((_rss_kib("VmHWM") - before_kib) / 1024)

    timing = time_call(call, repeat=repeat, warmup=1, before=before, after=after)
    return {
        "time_s": timing.median,
        "cpu_time_s": statistics.median(cpu[1:]),
        "times_s": list(timing.times),
        "peak_extra_mib": max(peaks[1:]),
        "peaks_mib": peaks,
        "loss": losses[-1],
        "threads": torch.get_num_threads(),
        "peak_is_exact": exact_peak,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--n", type=positive_int, default=8192)
    p.add_argument("--d", type=positive_int, default=1024)
    p.add_argument("--v", type=positive_int, default=65536)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--method", help=argparse.SUPPRESS)  # internal: run one method, print JSON
    add_arguments(p, repeat=3)
    a = p.parse_args()
    if a.method:
        import torch  # noqa: F401  (imported first, so that set_threads limits it too)

        set_threads(a.threads)
        print(json.dumps(run_method(a.method, a.n, a.d, a.v, a.repeat, a.seed)))
        return
    threads = set_threads(a.threads)
    print(describe(machine_info(threads)))
    results: dict[str, Any] = {}
    for method in a.methods.split(","):
        cmd = [sys.executable, __file__, "--method", method, "--n", str(a.n), "--d", str(a.d), "--v", str(a.v)]
        cmd += ["--repeat", str(a.repeat), "--seed", str(a.seed)]
        cmd += [] if a.threads is None else ["--threads", str(a.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[method] = json.loads(out.strip().splitlines()[-1])
        r = results[method]
        print(f"{method:15s} peak extra {r['peak_extra_mib']:9.1f} MiB  time {r['time_s']:7.3f} s  "
              f"cpu {r['cpu_time_s']:7.3f} s  loss {r['loss']:.6f}")  # fmt: skip
    report: dict[str, Any] = {
        "size": {"n": a.n, "d": a.d, "v": a.v, "dtype": "float32", "device": "cpu"},
        "results": results,
    }
    ours = results.get("softmaxkit")
    if ours:
        ratios: dict[str, float | None] = {}
        if "naive" in results:
            ratios["memory_vs_naive"] = ratio(ours["peak_extra_mib"], results["naive"]["peak_extra_mib"])
            ratios["time_vs_naive"] = ratio(ours["time_s"], results["naive"]["time_s"])
        for ref in ("torch_chunked", "torch_reference"):
            if ref in results:
                ratios[f"time_vs_{ref}"] = ratio(ours["time_s"], results[ref]["time_s"])
                ratios[f"cpu_time_vs_{ref}"] = ratio(ours["cpu_time_s"], results[ref]["cpu_time_s"])
                ratios[f"memory_vs_{ref}"] = ratio(ours["peak_extra_mib"], results[ref]["peak_extra_mib"])
        report["ratios"] = ratios
        report["targets"] = {"memory_vs_naive": "<= 1/16 = 0.0625", "time_vs_torch_chunked": "<= 0.8"}
        print(json.dumps(ratios, indent=2))
    print(f"wrote {write_results('bench_linear_ce', report, a.out, threads=threads)}")


if __name__ == "__main__":
    main()

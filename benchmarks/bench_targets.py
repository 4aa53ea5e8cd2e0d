"""Issue 14's speed targets for the numba kernels, against torch and SciPy, on AVX-512 and on AVX2.

Against torch, both on the same threads (2 by default): cross-entropy forward + backward at least 5x at
2^20 x 10 and 3x at 8192 x 1000 and 512 x 32768; softmax and log_softmax at least 1.3x from 1024 x 1000 up;
at least 4x SciPy from 64 x 1000 up. ``--isa avx2`` measures the portable path on an AVX-512 machine: numba
compiles for Haswell (``NUMBA_CPU_NAME=haswell``, ``NUMBA_CPU_FEATURES`` without AVX-512) and torch runs its AVX2
kernels (``ATEN_CPU_CAPABILITY=avx2``), set before either is imported (the script runs itself again with them).

Each library is timed in a process of its own (its calls round-robin there), the three processes taking turns
``--rounds`` times, and the medians reported as ratios: run in one process, torch's spinning OpenMP workers and
numba's took the cores from each other's calls (see :func:`measure`). Writes ``bench_targets[_avx2].json``::

    python benchmarks/bench_targets.py [--isa native|avx2] [--threads 2] [--repeat 9] [--rounds 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from _harness import add_arguments, interleaved, set_threads, write_results

AVX2_ENV = {
    "NUMBA_CPU_NAME": "haswell",
    "NUMBA_CPU_FEATURES": "+avx,+avx2,+fma,+f16c,+bmi,+bmi2,+lzcnt,+popcnt,+sse4.2,-avx512f",
    "ATEN_CPU_CAPABILITY": "avx2",
}
SOFTMAX_SHAPES = ((64, 1000), (256, 1000), (1024, 1000), (8192, 1000), (512, 32768))
CE_SHAPES = ((128, 10), (1 << 20, 10), (64, 1000), (8192, 1000), (512, 32768))
LIBRARIES = ("softmaxkit", "torch", "scipy")
TARGETS = {
    "softmax": 1.3,
    "log_softmax": 1.3,
    "cross_entropy": {(1 << 20, 10): 5.0, (8192, 1000): 3.0, (512, 32768): 3.0},
}


def _calls(library: str) -> dict[tuple[str, tuple[int, int]], Callable[[], Any]]:
    """The calls ``library`` is timed on, by ``(op, shape)``: the same data in every process (fixed seeds)."""
    calls: dict[tuple[str, tuple[int, int]], Callable[[], Any]] = {}
    rng = np.random.default_rng(0)
    for op in ("softmax", "log_softmax"):
        for n, k in SOFTMAX_SHAPES:
            x = rng.standard_normal((n, k)).astype(np.float32)
            if library == "softmaxkit":
                import softmaxkit as sk

                f = sk.softmax if op == "softmax" else sk.log_softmax
                calls[op, (n, k)] = lambda x=x, f=f: f(x, backend="numba")
            elif library == "torch":
                import torch

                xt = torch.from_numpy(x)
                g = torch.softmax if op == "softmax" else torch.log_softmax
                calls[op, (n, k)] = lambda xt=xt, g=g: g(xt, dim=-1)
            else:
                import scipy.special

                h = scipy.special.softmax if op == "softmax" else scipy.special.log_softmax
                calls[op, (n, k)] = lambda x=x, h=h: h(x, axis=-1)
    for n, k in CE_SHAPES:
        x = rng.standard_normal((n, k)).astype(np.float32)
        t = rng.integers(0, k, n)
        if library == "softmaxkit":
            import softmaxkit as sk

            calls["cross_entropy", (n, k)] = lambda x=x, t=t: sk.cross_entropy_value_and_grad(x, t, backend="numba")
        elif library == "torch":
            import torch
            import torch.nn.functional as F

            xt, tt = torch.from_numpy(x), torch.from_numpy(t)

            def torch_ce(xt: Any = xt, tt: Any = tt) -> Any:
                z = xt.detach().requires_grad_(True)
                loss = F.cross_entropy(z, tt)
                loss.backward()
                return loss, z.grad

            calls["cross_entropy", (n, k)] = torch_ce
    return calls


def measure_library(library: str, repeat: int, threads: int) -> dict[str, float]:
    """Median seconds of each of ``library``'s calls (``"op NxK"`` keys), timed in this process alone."""
    if library == "softmaxkit":
        from softmaxkit.kernels import numba as kernels

        kernels.start()  # the package's threading layer first
    set_threads(threads)
    calls = _calls(library)
    medians = interleaved({f"{op} {n}x{k}": call for (op, (n, k)), call in calls.items()}, repeat)
    return medians


def measure(repeat: int, threads: int, rounds: int) -> list[dict[str, Any]]:
    """Every library timed in a process of its own, the three processes taking turns ``rounds`` times; a
    call's time is the median over its rounds' medians.

    Each library runs alone: torch's OpenMP workers keep spinning for milliseconds after each parallel region
    (libgomp's default), and numba's workers likewise, so that timing the two in one process measures each
    pool fighting the other for the cores more than either library. Taking turns across processes keeps what
    interleaving gave: a busy spell of the machine falls on every library alike.
    """
    times: dict[str, dict[str, list[float]]] = {lib: {} for lib in LIBRARIES}
    for _ in range(rounds):
        for lib in LIBRARIES:
            command = [sys.executable, __file__, "--library", lib, "--repeat", str(repeat), "--threads", str(threads)]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            for key, t in json.loads(out.splitlines()[-1]).items():
                times[lib].setdefault(key, []).append(t)
    rows: list[dict[str, Any]] = []
    for key in times["softmaxkit"]:
        op, shape = key.split()
        n, k = (int(v) for v in shape.split("x"))
        med = {lib: statistics.median(times[lib][key]) for lib in LIBRARIES if key in times[lib]}
        rows.append(_row(op, (n, k), med))
    return rows


def _row(op: str, shape: tuple[int, int], med: dict[str, float]) -> dict[str, Any]:
    row: dict[str, Any] = {"op": op, "shape": list(shape), "median_s": med}
    row["speedup_vs_torch"] = med["torch"] / med["softmaxkit"]
    if "scipy" in med:
        row["speedup_vs_scipy"] = med["scipy"] / med["softmaxkit"]
    target = TARGETS[op]
    row["target_vs_torch"] = (
        target.get(shape) if isinstance(target, dict) else (target if shape[0] * shape[1] >= 1024 * 1000 else None)
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--isa", choices=("native", "avx2"), default="native")
    parser.add_argument("--rounds", type=int, default=3, help="turns of the three processes")
    parser.add_argument("--library", choices=LIBRARIES, help=argparse.SUPPRESS)  # one library's process
    add_arguments(parser, repeat=9)
    args = parser.parse_args()
    if args.isa == "avx2" and os.environ.get("NUMBA_CPU_NAME") != "haswell":
        env = {**os.environ, **AVX2_ENV}
        return subprocess.call([sys.executable, *sys.argv], env=env)
    threads = args.threads or 2
    if args.library:
        print(json.dumps(measure_library(args.library, args.repeat, threads)))
        return 0
    from softmaxkit.kernels import numba as kernels

    layer = kernels.start()
    threads = set_threads(threads)
    rows = measure(args.repeat, threads, args.rounds)
    for row in rows:
        vs_scipy = f"  x{row['speedup_vs_scipy']:.1f} scipy" if "speedup_vs_scipy" in row else ""
        target = f" (target {row['target_vs_torch']})" if row["target_vs_torch"] else ""
        print(f"{row['op']:>14} {row['shape'][0]:>8}x{row['shape'][1]:<6} x{row['speedup_vs_torch']:.2f} torch{target}"
              f"{vs_scipy}")  # fmt: skip
    env = {k: os.environ.get(k) for k in AVX2_ENV}
    name = "bench_targets" + ("_avx2" if args.isa == "avx2" else "")
    write_results(name, {"isa": args.isa, "env": env, "layer": layer, "rounds": args.rounds, "cases": rows},
                  args.out, threads=threads)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

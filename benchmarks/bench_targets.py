"""Issue 14's speed targets for the numba kernels, against torch and SciPy, on AVX-512 and on AVX2.

Against torch, both on the same threads (2 by default): cross-entropy forward + backward at least 5x at
2^20 x 10 and 3x at 8192 x 1000 and 512 x 32768; softmax and log_softmax at least 1.3x from 1024 x 1000 up;
at least 4x SciPy from 64 x 1000 up. ``--isa avx2`` measures the portable path on an AVX-512 machine: numba
compiles for Haswell (``NUMBA_CPU_NAME=haswell``, ``NUMBA_CPU_FEATURES`` without AVX-512) and torch runs its AVX2
kernels (``ATEN_CPU_CAPABILITY=avx2``), set before either is imported (the script runs itself again with them).

Each shape's implementations are timed interleaved (round-robin), medians reported as ratios, so that a machine
shared with other work disturbs them alike, with a pause of ``SETTLE`` seconds before each block
(``_harness.interleaved``: torch's OpenMP threads spin for milliseconds after each call and would take a core
from the next library's block; ``--settle 0`` measures without it). Writes ``bench_targets[_avx2].json``::

    python benchmarks/bench_targets.py [--isa native|avx2] [--threads 2] [--repeat 9] [--settle 0.02] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
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
SETTLE = 0.02
"""Seconds of pause before each timed block (see the module notes)."""
TARGETS = {
    "softmax": 1.3,
    "log_softmax": 1.3,
    "cross_entropy": {(1 << 20, 10): 5.0, (8192, 1000): 3.0, (512, 32768): 3.0},
}


def measure(repeat: int, settle: float = SETTLE) -> list[dict[str, Any]]:
    import scipy.special
    import torch
    import torch.nn.functional as F

    import softmaxkit as sk

    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng(0)
    for op in ("softmax", "log_softmax"):
        ours_fn = sk.softmax if op == "softmax" else sk.log_softmax
        torch_fn = torch.softmax if op == "softmax" else torch.log_softmax
        scipy_fn = scipy.special.softmax if op == "softmax" else scipy.special.log_softmax
        for n, k in SOFTMAX_SHAPES:
            x = rng.standard_normal((n, k)).astype(np.float32)
            xt = torch.from_numpy(x)
            med = interleaved(
                {
                    "softmaxkit": lambda x=x, f=ours_fn: f(x, backend="numba"),
                    "torch": lambda xt=xt, f=torch_fn: f(xt, dim=-1),
                    "scipy": lambda x=x, f=scipy_fn: f(x, axis=-1),
                },
                repeat,
                settle=settle,
            )
            rows.append(_row(op, (n, k), med))
    for n, k in CE_SHAPES:
        x = rng.standard_normal((n, k)).astype(np.float32)
        t = rng.integers(0, k, n)
        xt, tt = torch.from_numpy(x), torch.from_numpy(t)

        def torch_ce(xt: Any = xt, tt: Any = tt) -> Any:
            z = xt.detach().requires_grad_(True)
            loss = F.cross_entropy(z, tt)
            loss.backward()
            return loss, z.grad

        med = interleaved(
            {"softmaxkit": lambda x=x, t=t: sk.cross_entropy_value_and_grad(x, t, backend="numba"), "torch": torch_ce},
            repeat,
            settle=settle,
        )
        rows.append(_row("cross_entropy", (n, k), med))
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
    parser.add_argument("--settle", type=float, default=SETTLE, help="seconds of pause before each timed block")
    add_arguments(parser, repeat=9)
    args = parser.parse_args()
    if args.isa == "avx2" and os.environ.get("NUMBA_CPU_NAME") != "haswell":
        env = {**os.environ, **AVX2_ENV}
        return subprocess.call([sys.executable, *sys.argv], env=env)
    from softmaxkit.kernels import numba as kernels

    layer = kernels.start()  # the package's threading layer first
    threads = set_threads(args.threads or 2)
    rows = measure(args.repeat, args.settle)
    for row in rows:
        vs_scipy = f"  x{row['speedup_vs_scipy']:.1f} scipy" if "speedup_vs_scipy" in row else ""
        target = f" (target {row['target_vs_torch']})" if row["target_vs_torch"] else ""
        print(f"{row['op']:>14} {row['shape'][0]:>8}x{row['shape'][1]:<6} x{row['speedup_vs_torch']:.2f} torch{target}"
              f"{vs_scipy}")  # fmt: skip
    env = {k: os.environ.get(k) for k in AVX2_ENV}
    name = "bench_targets" + ("_avx2" if args.isa == "avx2" else "")
    write_results(name, {"isa": args.isa, "env": env, "layer": layer, "settle_s": args.settle, "cases": rows},
                  args.out, threads=threads)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

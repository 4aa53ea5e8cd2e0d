"""softmaxkit.torch against torch on CPU float32 tensors: forward + backward, same run, same threads (issue 15).

Usage::

    python benchmarks/bench_torch_front.py [--threads N] [--repeat N] [--out DIR]

For each shape, the median wall-clock time of the forward and ``loss.backward()`` for
``softmaxkit.torch.cross_entropy`` against ``torch.nn.functional.cross_entropy`` (128x10, 256x100, 1024x100,
1024x1000, 8192x1000, 512x32768: the issue's shapes and two between them, where the goal is also 1.0), and of
softmax and log_softmax (backward of a weighted sum) against torch's (the same but 512x32768); ``ratio`` is
torch's time over ours (above 1: ours is faster). The repetitions of ours and torch's alternate (a burst of
load hits both), and each times ``inner`` calls in a row (about 10^7 logits in all, so that a small call's time
is not the timer's).
Writes ``DIR/bench_torch_front.json`` with the harness's machine description (CPU model, AVX2/AVX-512,
threads). The default backend (``auto``) decides which engine runs, as for a user. The timings are wall-clock:
on a shared machine state its load next to the numbers.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

import softmaxkit.torch as skt
from _harness import Timing, add_arguments, describe, machine_info, ratio, set_threads, time_call, write_results
from softmaxkit.kernels import numba as kernels

SHAPES = ((128, 10), (256, 100), (1024, 100), (1024, 1000), (8192, 1000), (512, 32768))
MAPPING_SHAPES = SHAPES[:5]


def _step(loss_of: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, inner: int) -> Callable[[], None]:
    def call() -> None:
        for _ in range(inner):
            x.grad = None
            loss_of(x).backward()

    return call


def _interleaved(calls: tuple[Callable[[], None], ...], repeat: int) -> list[Timing]:
    """Times of each call, their repetitions alternating (after two untimed rounds)."""
    times: list[list[float]] = [[] for _ in calls]
    for i in range(repeat + 2):
        for call, out in zip(calls, times, strict=True):
            t = time_call(call, repeat=1, warmup=0).times[0]
            if i >= 2:
                out.append(t)
    return [Timing(tuple(t)) for t in times]


def _cases(n: int, c: int) -> dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], ...]]:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, c, (n,), generator=g)
    w = torch.randn(n, c, generator=g)  # a cotangent for the mappings, fixed
    return {
        "cross_entropy": (lambda a: skt.cross_entropy(a, y), lambda a: F.cross_entropy(a, y)),
        "softmax": (lambda a: (skt.softmax(a, dim=1) * w).sum(), lambda a: (torch.softmax(a, 1) * w).sum()),
        "log_softmax": (
            lambda a: (skt.log_softmax(a, dim=1) * w).sum(),
            lambda a: (torch.log_softmax(a, 1) * w).sum(),
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_arguments(parser, repeat=15)
    args = parser.parse_args()
    if kernels.available():
        kernels.start()  # the package's threading layer, before set_threads starts numba's threads
    threads = set_threads(args.threads)
    print(describe(machine_info(threads)))
    rows: list[dict[str, Any]] = []
    for n, c in SHAPES:
        x = torch.randn(n, c, generator=torch.Generator().manual_seed(1)) * 3
        inner = max(1, min(200, 10_000_000 // (n * c)))
        for name, (ours, theirs) in _cases(n, c).items():
            if name != "cross_entropy" and (n, c) not in MAPPING_SHAPES:
                continue
            a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
            t_ours, t_theirs = _interleaved((_step(ours, a, inner), _step(theirs, b, inner)), args.repeat)
            row = {
                "op": name,
                "shape": [n, c],
                "inner": inner,
                "ours_s": t_ours.median / inner,
                "torch_s": t_theirs.median / inner,
                "ratio": ratio(t_theirs.median, t_ours.median),
            }
            rows.append(row)
            print(f"{name:14s} {n:5d}x{c:<6d} ours {row['ours_s'] * 1e3:9.3f} ms  torch "
                  f"{row['torch_s'] * 1e3:9.3f} ms  torch/ours {row['ratio']:.2f}", flush=True)  # fmt: skip
    path = write_results("bench_torch_front", {"dtype": "float32", "cases": rows}, args.out, threads=threads)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

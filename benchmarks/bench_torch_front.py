"""softmaxkit.torch against torch on CPU float32 tensors: forward + backward, same run, same threads (issue 15).

Usage::

    python benchmarks/bench_torch_front.py [--threads N] [--repeat N] [--out DIR]

For each shape, the median wall-clock time of ``loss.backward()`` after the forward for
``softmaxkit.torch.cross_entropy`` against ``torch.nn.functional.cross_entropy``, and of softmax and log_softmax
(backward of a weighted sum) against torch's; ``ratio`` is torch's time over ours (above 1: ours is faster).
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
from _harness import add_arguments, describe, machine_info, ratio, set_threads, time_call, write_results
from softmaxkit.kernels import numba as kernels

SHAPES = ((128, 10), (1024, 1000), (8192, 1000), (512, 32768))


def _step(loss_of: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], None]:
    def call() -> None:
        x.grad = None
        loss_of(x).backward()

    return call


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
        for name, (ours, theirs) in _cases(n, c).items():
            a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
            t_ours = time_call(_step(ours, a), repeat=args.repeat, warmup=2)
            t_theirs = time_call(_step(theirs, b), repeat=args.repeat, warmup=2)
            row = {
                "op": name,
                "shape": [n, c],
                "ours_s": t_ours.median,
                "torch_s": t_theirs.median,
                "ratio": ratio(t_theirs.median, t_ours.median),
            }
            rows.append(row)
            print(f"{name:14s} {n:5d}x{c:<6d} ours {t_ours.median * 1e3:9.3f} ms  torch "
                  f"{t_theirs.median * 1e3:9.3f} ms  torch/ours {row['ratio']:.2f}")  # fmt: skip
    path = write_results("bench_torch_front", {"dtype": "float32", "cases": rows}, args.out, threads=threads)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

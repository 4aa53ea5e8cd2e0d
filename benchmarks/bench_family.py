"""softmaxkit.torch's sparsemax, entmax15 and entmax_bisect against the ``entmax`` package on CPU float32 (issue 17).

Usage::

    python benchmarks/bench_family.py [--threads N] [--repeat N] [--out DIR] [--no-losses]

For each shape and mapping, forward + backward (``y = f(x); y.backward(g)``, a fixed cotangent ``g``) through
:mod:`softmaxkit.torch` (its autograd Functions; the default backend ``auto`` picks the engine, as for a user:
the numba kernels for these sizes) and through the ``entmax`` package (``entmax.sparsemax``, ``entmax15``,
``entmax_bisect(alpha=1.5)``). Each library at its own defaults: ``entmax_bisect`` bisects 64 times here (float64's
resolution) and 50 times in the ``entmax`` package. With the losses (the default), the Fenchel–Young losses too
(``sum`` of the per-row losses, then backward).

The two sides are timed interleaved (ours, theirs, ours, ...), one call per turn after two warm-up calls each, so
that a change of load on a shared machine hits both; the medians are reported with ``ratio`` = entmax's time over
ours (above 1: ours is faster; the issue's target is 2) for the wall-clock time and for the process's CPU time.
Writes ``DIR/bench_family.json`` with the harness's machine description (CPU model, AVX2/AVX-512, threads) and
the ``entmax`` version. On a shared machine state its load next to the numbers; ``--threads 1`` compares one
thread with one thread.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

import softmaxkit.torch as skt
from _harness import add_arguments, describe, machine_info, ratio, set_threads, time_call, versions, write_results
from softmaxkit.kernels import numba as kernels

SHAPES = ((64, 1000), (1024, 1000), (8192, 100), (256, 32768))
ALPHA = 1.5


def _mappings(entmax: Any) -> dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], ...]]:
    return {
        "sparsemax": (lambda a: skt.sparsemax(a, dim=-1), lambda a: entmax.sparsemax(a, dim=-1)),
        "entmax15": (lambda a: skt.entmax15(a, dim=-1), lambda a: entmax.entmax15(a, dim=-1)),
        "entmax_bisect": (
            lambda a: skt.entmax_bisect(a, alpha=ALPHA, dim=-1),
            lambda a: entmax.entmax_bisect(a, alpha=ALPHA, dim=-1),
        ),
    }


def _losses(entmax: Any, y: torch.Tensor) -> dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], ...]]:
    return {
        "sparsemax_loss": (
            lambda a: skt.sparsemax_loss(a, y, reduction="sum"),
            lambda a: entmax.sparsemax_loss(a, y).sum(),
        ),
        "entmax15_loss": (
            lambda a: skt.entmax15_loss(a, y, reduction="sum"),
            lambda a: entmax.entmax15_loss(a, y).sum(),
        ),
        "entmax_bisect_loss": (
            lambda a: skt.entmax_bisect_loss(a, y, alpha=ALPHA, reduction="sum"),
            lambda a: entmax.entmax_bisect_loss(a, y, alpha=ALPHA).sum(),
        ),
    }


def _step(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, g: torch.Tensor | None) -> Callable[[], None]:
    def call() -> None:
        x.grad = None
        out = f(x)
        if g is None:
            out.backward()
        else:
            out.backward(g)

    return call


def _interleaved(calls: tuple[Callable[[], None], ...], repeat: int) -> list[tuple[list[float], list[float]]]:
    """Wall-clock and CPU seconds of each call, ``repeat`` turns each, the calls taking turns."""
    for call in calls:  # warm-up (compilation, caches)
        call()
        call()
    times: list[tuple[list[float], list[float]]] = [([], []) for _ in calls]
    for _ in range(repeat):
        for call, (wall, cpu) in zip(calls, times, strict=True):
            start: list[float] = []
            t = time_call(
                call,
                repeat=1,
                warmup=0,
                before=lambda s=start: s.append(time.process_time()),
                after=lambda s=start, c=cpu: c.append(time.process_time() - s[-1]),
            )
            wall.extend(t.times)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_arguments(parser, repeat=7)
    parser.add_argument("--no-losses", action="store_true", help="time the mappings only")
    args = parser.parse_args()
    import entmax

    if kernels.available():
        kernels.start()  # the package's threading layer, before set_threads starts numba's threads
    threads = set_threads(args.threads)
    print(describe(machine_info(threads)), "| entmax", versions(("entmax",))["entmax"])
    rows: list[dict[str, Any]] = []
    for n, c in SHAPES:
        gen = torch.Generator().manual_seed(n * c)
        x = torch.randn(n, c, generator=gen)
        g = torch.randn(n, c, generator=gen)  # the cotangent of the mappings
        y = torch.randint(0, c, (n,), generator=gen)
        cases = [(name, fs, g) for name, fs in _mappings(entmax).items()]
        if not args.no_losses:
            cases += [(name, fs, None) for name, fs in _losses(entmax, y).items()]
        for name, (ours, theirs), cot in cases:
            a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
            (ours_wall, ours_cpu), (theirs_wall, theirs_cpu) = _interleaved(
                (_step(ours, a, cot), _step(theirs, b, cot)), args.repeat
            )
            med = {k: statistics.median(v) for k, v in
                   {"ours_s": ours_wall, "entmax_s": theirs_wall, "ours_cpu_s": ours_cpu,
                    "entmax_cpu_s": theirs_cpu}.items()}  # fmt: skip
            row = {
                "op": name,
                "shape": [n, c],
                **med,
                "ratio": ratio(med["entmax_s"], med["ours_s"]),
                "cpu_ratio": ratio(med["entmax_cpu_s"], med["ours_cpu_s"]),
                "max_abs_grad_diff": float((a.grad - b.grad).abs().max()) if a.grad is not None and b.grad is not None
                else None,
            }  # fmt: skip
            rows.append(row)
            print(f"{name:19s} {n:5d}x{c:<6d} ours {med['ours_s'] * 1e3:9.3f} ms  entmax {med['entmax_s'] * 1e3:9.3f} "
                  f"ms  entmax/ours {row['ratio']:.2f} (cpu {row['cpu_ratio']:.2f})")  # fmt: skip
    results = {
        "dtype": "float32",
        "alpha": ALPHA,
        "n_iter": {"softmaxkit": 64, "entmax": 50},
        "target_ratio": 2.0,
        "entmax_version": versions(("entmax",))["entmax"],
        "cases": rows,
    }
    path = write_results("bench_family", results, args.out, threads=threads)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

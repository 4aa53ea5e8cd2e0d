"""Small calls: what a 1 x 10 softmax costs against SciPy, and a 128 x 10 cross-entropy step against torch.

Usage::

    python benchmarks/bench_small_calls.py [--repeat N] [--threads N] [--out DIR]

Cases (float32): ``softmax``, ``log_softmax`` and ``logsumexp`` at 1 x 10, 1 x 1000 and 64 x 1000 against
``scipy.special``'s, and ``cross_entropy_value_and_grad`` at 128 x 10 against torch's ``F.cross_entropy`` forward
and backward. Targets: a ratio (softmaxkit's time / the peer's) of at most 1.0 for each.

A call of a few microseconds is timed as a loop of ``inner`` calls; softmaxkit and its peer are timed in turns,
round after round, in one process (``--repeat`` rounds), so that a busy spell of the machine hits both alike. The
figure quoted is the median over the rounds of each round's ratio, with the median times. Writes
``DIR/bench_small_calls.json`` with the harness's machine description (CPU model, AVX2/AVX-512, threads).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.special
import torch
import torch.nn.functional as F

import softmaxkit as sk
from _harness import add_arguments, describe, machine_info, set_threads, time_call, write_results

SHAPES = ((1, 10), (1, 1000), (64, 1000))
OPS = ("softmax", "log_softmax", "logsumexp")


def _inner(call: Callable[[], Any], target_s: float = 2e-3) -> int:
    """Calls per timed loop so that one loop takes about ``target_s``."""
    t = time_call(call, repeat=3, warmup=2).median
    return max(1, min(10_000, round(target_s / max(t, 1e-9))))


def _loop(call: Callable[[], Any], inner: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(inner):
            call()

    return run


def compare(ours: Callable[[], Any], peer: Callable[[], Any], rounds: int) -> dict[str, Any]:
    """Median per-call times and the median of the per-round ratios, the two timed in turns."""
    inner = _inner(peer)
    a, b = _loop(ours, inner), _loop(peer, inner)
    a(), b()  # warm both (numba's kernels load on their first call)
    t_ours, t_peer, ratios = [], [], []
    for _ in range(rounds):
        x = time_call(a, repeat=1, warmup=0).median / inner
        y = time_call(b, repeat=1, warmup=0).median / inner
        t_ours.append(x)
        t_peer.append(y)
        ratios.append(x / y)
    return {
        "inner": inner,
        "ours_us": statistics.median(t_ours) * 1e6,
        "peer_us": statistics.median(t_peer) * 1e6,
        "ratio": statistics.median(ratios),
        "ratios": ratios,
    }


def _show(op: str, shape: tuple[int, ...], row: dict[str, Any], peer: str) -> None:
    print(f"{op:12s} {shape!s:12s} {row['ours_us']:9.1f} us  {peer} {row['peer_us']:9.1f} us  {row['ratio']:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_arguments(parser, repeat=21)
    args = parser.parse_args()
    threads = set_threads(args.threads)
    print(describe(machine_info(threads)))
    rng = np.random.default_rng(0)
    cases = []
    for shape in SHAPES:
        x = rng.normal(size=shape).astype(np.float32)
        for op in OPS:
            ours, peer = getattr(sk, op), getattr(scipy.special, op)
            row = {"op": op, "shape": list(shape), "dtype": "float32", "peer": f"scipy.special.{op}"}
            row.update(compare(lambda x=x, f=ours: f(x), lambda x=x, g=peer: g(x, axis=-1), args.repeat))
            cases.append(row)
            print(
                f"{op:12s} {shape!s:12s} {row['ours_us']:9.1f} us  scipy {row['peer_us']:9.1f} us  {row['ratio']:.2f}x"
            )
    z = rng.normal(size=(128, 10)).astype(np.float32)
    y = rng.integers(0, 10, size=128)
    zt, yt = torch.tensor(z, requires_grad=True), torch.tensor(y)

    def torch_step() -> None:
        zt.grad = None
        F.cross_entropy(zt, yt).backward()

    row = {"op": "cross_entropy_value_and_grad", "shape": [128, 10], "dtype": "float32"}
    row["peer"] = "torch F.cross_entropy forward + backward"
    row.update(compare(lambda: sk.cross_entropy_value_and_grad(z, y), torch_step, args.repeat))
    cases.append(row)
    _show("ce v&g", (128, 10), row, "torch")
    path = write_results("bench_small_calls", {"rounds": args.repeat, "cases": cases}, args.out, threads=threads)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

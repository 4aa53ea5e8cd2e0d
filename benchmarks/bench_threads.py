"""Threads per call on a busy machine: the numba kernels at 64x1000 and 256x1000 (and larger) with one busy-looping
process per core, against the same kernel on one thread, the kernel forced onto every thread, and SciPy.

Issue 14's targets: under that load a call takes at most 1.5x the single-thread kernel's time and at most SciPy's.
The three variants and SciPy are timed interleaved (round-robin, one call each per round) so that they see the
same load; medians are reported, idle (no busy loops started here) first, then loaded. Writes
``bench_threads.json``::

    python benchmarks/bench_threads.py [--threads N] [--repeat 15] [--out DIR]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from _harness import add_arguments, interleaved, set_threads, write_results

SHAPES = ((64, 1000), (256, 1000), (1024, 1000), (8192, 1000))


def _spin() -> None:  # pragma: no cover (runs in the busy processes)
    while True:
        pass


def cases(threads: int, repeat: int) -> list[dict[str, Any]]:
    import numba
    import scipy.special

    import softmaxkit as sk
    from softmaxkit.kernels.numba import _runtime

    rows = []
    for n, k in SHAPES:
        x = np.random.default_rng(0).standard_normal((n, k)).astype(np.float32)
        t = np.random.default_rng(1).integers(0, k, n)
        for op in ("softmax", "cross_entropy_value_and_grad"):
            if op == "softmax":

                def ours(x: np.ndarray = x) -> Any:
                    return sk.softmax(x, backend="numba")

                def peer(x: np.ndarray = x) -> Any:
                    return scipy.special.softmax(x, axis=-1)
            else:

                def ours(x: np.ndarray = x, t: np.ndarray = t) -> Any:
                    return sk.cross_entropy_value_and_grad(x, t, backend="numba")

                def peer(x: np.ndarray = x, t: np.ndarray = t) -> Any:  # SciPy has no CE: its softmax, p - onehot
                    p = scipy.special.softmax(x, axis=-1)
                    loss = -np.mean(np.log(p[np.arange(len(t)), t]))
                    p[np.arange(len(t)), t] -= 1.0
                    return loss, p / len(t)

            def single(ours: Callable[[], Any] = ours) -> Any:
                numba.set_num_threads(1)
                try:
                    return ours()
                finally:
                    numba.set_num_threads(threads)

            def forced(ours: Callable[[], Any] = ours, real: Callable[[int], int] = _runtime.pieces) -> Any:
                _runtime.pieces = lambda work: threads  # type: ignore[assignment]
                try:
                    return ours()
                finally:
                    _runtime.pieces = real  # type: ignore[assignment]

            calls = {"work_sized": ours, "one_thread": single, "all_threads": forced, "scipy": peer}
            med = interleaved(calls, repeat, block=2e-3)
            rows.append({"op": op, "shape": [n, k], "pieces": _runtime.pieces(n * k), "median_s": med,
                         "vs_one_thread": med["work_sized"] / med["one_thread"],
                         "vs_scipy": med["work_sized"] / med["scipy"]})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, repeat=15)
    args = parser.parse_args()
    from softmaxkit.kernels import numba as kernels

    layer = kernels.start()  # the package's threading layer, before anything else starts numba's threads
    threads = set_threads(args.threads)
    repeat = args.repeat
    result: dict[str, Any] = {"threading_layer": layer}
    result["work_per_thread"] = kernels._runtime.WORK_PER_THREAD
    result["idle"] = cases(threads, repeat)
    busy = [multiprocessing.get_context("spawn").Process(target=_spin, daemon=True) for _ in range(os.cpu_count() or 1)]
    for p in busy:
        p.start()
    try:
        time.sleep(0.5)
        result["busy"] = cases(threads, repeat)
        result["busy_processes"] = len(busy)
    finally:
        for p in busy:
            p.terminate()
    for state in ("idle", "busy"):
        print(f"-- {state}: work-sized time / one thread, / scipy (targets under load: <= 1.5, <= 1.0)")
        for row in result[state]:
            med = row["median_s"]
            print(f"{row['op']:>30} {row['shape'][0]:>5}x{row['shape'][1]:<5} pieces {row['pieces']}: "
                  f"{med['work_sized'] * 1e6:9.1f} us  x1thread {row['vs_one_thread']:.2f}"
                  f"  xscipy {row['vs_scipy']:.2f}"
                  f"  (all threads {med['all_threads'] / med['one_thread']:.2f}x one thread)")  # fmt: skip
    write_results("bench_threads", result, args.out, threads=threads)


if __name__ == "__main__":
    main()

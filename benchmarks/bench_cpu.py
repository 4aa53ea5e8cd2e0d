"""The CPU kernels against torch, SciPy, JAX and NumPy: ``softmaxkit bench`` as a script.

Usage::

    python benchmarks/bench_cpu.py [--quick] [--threads N] [--out DIR]

writes ``DIR/bench_cpu.json`` (with ``benchmarks/_harness.py``'s machine description: CPU model, AVX2/AVX-512,
threads) and, with matplotlib, ``DIR/bench_cpu.png``; ``DIR`` defaults to ``benchmarks/results``, which git
ignores. The measuring code lives in :mod:`softmaxkit.bench`, installed with the package so that the
``softmaxkit bench`` command has it. Run it on a quiet machine: the timings are wall-clock, and the copy
bandwidth they are set against is measured in the same run.
"""

from __future__ import annotations

import argparse

from _harness import add_arguments, describe, machine_info, set_threads, write_results
from softmaxkit import bench
from softmaxkit.kernels import numba as kernels


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer logits per shape and fewer runs")
    add_arguments(parser, repeat=None)
    args = parser.parse_args()
    if kernels.available():
        kernels.start()  # the package's threading layer, before set_threads starts numba's threads
    threads = set_threads(args.threads)
    machine = machine_info(threads)
    print(describe(machine))
    result = bench.run(quick=args.quick, threads=threads)
    result.pop("machine", None)  # the harness's description replaces softmaxkit bench's shorter one
    path = write_results("bench_cpu", result, args.out, threads=threads)
    print(f"wrote {path}")
    if bench.plot({**result, "machine": {"threads": threads, "processor": machine["cpu"]}}, path.with_suffix(".png")):
        print(f"wrote {path.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

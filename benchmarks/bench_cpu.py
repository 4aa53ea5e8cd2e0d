"""The CPU kernels against torch, SciPy, JAX and NumPy: ``softmaxkit bench`` as a script.

Usage::

    python benchmarks/bench_cpu.py [--quick] [--threads N] [--out DIR]

writes ``DIR/bench_cpu.json`` and, with matplotlib, ``DIR/bench_cpu.png`` (``DIR`` defaults to
``benchmarks/results``, which git ignores). The code lives in :mod:`softmaxkit.bench`, installed with the package
so that the ``softmaxkit bench`` command has it. Run it on a quiet machine: the timings are wall-clock, and the
copy bandwidth they are set against is measured in the same run.
"""

from __future__ import annotations

import sys
from pathlib import Path

from softmaxkit.bench import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--out" not in args:
        args += ["--out", str(Path(__file__).resolve().parent / "results")]
    raise SystemExit(main(args))

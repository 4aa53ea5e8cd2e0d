"""First-call times of the numba kernels on an empty cache, and on the cache that call filled.

Each measurement is a fresh Python process with its own empty cache directory (``SOFTMAXKIT_CACHE_DIR``): the
time of the first ``softmax`` of 64 x 1000 float32 logits (issue 14's target: 3 s), of the first
``cross_entropy_value_and_grad`` (target: 5 s), of a first call large enough to use threads, and of both on
short rows (10 classes: their own kernels) and with an option (a temperature, label smoothing), each after
``import softmaxkit``; then the same process again on the cache it left. Wall-clock and CPU seconds (the
compile runs on one thread, so on a machine busy with other work the CPU time is the idle machine's wall
time). Writes ``bench_cold_start.json``::

    python benchmarks/bench_cold_start.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _harness import add_arguments, write_results

CALLS = {
    "softmax_64x1000": "sk.softmax(np.ones((64, 1000), np.float32))",
    "cross_entropy_64x1000": "sk.cross_entropy_value_and_grad(np.ones((64, 1000), np.float32), np.zeros(64, int))",
    "softmax_1024x1024_threads": "sk.softmax(np.ones((1024, 1024), np.float32))",
    "softmax_64x10": "sk.softmax(np.ones((64, 10), np.float32))",
    "cross_entropy_64x10": "sk.cross_entropy_value_and_grad(np.ones((64, 10), np.float32), np.zeros(64, int))",
    "softmax_temperature_64x1000": "sk.softmax(np.ones((64, 1000), np.float32), temperature=2.0)",
    "cross_entropy_smoothing_64x1000": (
        "sk.cross_entropy_value_and_grad(np.ones((64, 1000), np.float32), np.zeros(64, int), label_smoothing=0.1)"
    ),
}
CODE = """
import time, json
import numpy as np, softmaxkit as sk
start, cpu = time.perf_counter(), time.process_time()
with sk.backend("numba"):
    {call}
print(json.dumps([time.perf_counter() - start, time.process_time() - cpu]))
"""


def first_call(call: str, cache: Path) -> tuple[float, float]:
    """Wall-clock and CPU seconds of ``call`` in a fresh process (CPU time: what a loaded machine does not inflate)."""
    env = {**os.environ, "SOFTMAXKIT_CACHE_DIR": str(cache)}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", CODE.format(call=call)], env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    wall, cpu = json.loads(done.stdout.strip().splitlines()[-1])
    return float(wall), float(cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_arguments(parser, repeat=None, threads=False)
    args = parser.parse_args()
    rows: dict[str, Any] = {}
    for name, call in CALLS.items():
        with tempfile.TemporaryDirectory() as folder:
            cold = first_call(call, Path(folder) / "cache")
            warm = first_call(call, Path(folder) / "cache")
        rows[name] = {"empty_cache_s": cold[0], "empty_cache_cpu_s": cold[1], "warm_cache_s": warm[0],
                      "warm_cache_cpu_s": warm[1]}  # fmt: skip
        print(f"{name:>28}: {cold[0]:6.2f} s ({cold[1]:5.2f} s CPU) on an empty cache, {warm[0]:5.2f} s "
              f"({warm[1]:5.2f} s CPU) on a warm one")  # fmt: skip
    write_results("bench_cold_start", {"first_call": rows}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

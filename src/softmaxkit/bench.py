"""``softmaxkit bench``: the CPU kernels against their peers, in one run, on one machine.

For softmax, log-softmax and cross-entropy forward + backward, on rows of C = 10, 1000, 32768 and 131072 classes
with N·C ≈ 2^26 logits (2^21 with ``--quick``), and a single row of 1000 (latency), it times

* softmaxkit on the numba kernels and on the reference (generic array-API) code,
* ``scipy.special.softmax`` / ``log_softmax``,
* NumPy written naively (``exp(x - max) / sum``; for cross-entropy that plus ``p - onehot``),
* torch on the CPU (``F.softmax``, ``F.log_softmax``, ``F.cross_entropy`` forward + ``backward``),
* JAX on the CPU (``jax.jit`` of ``jax.nn.softmax``, ``log_softmax``, ``value_and_grad`` of the loss),

each only if installed, all with the same number of threads (numba's; torch is set to it, JAX is asked to when
it is imported here first). The speed is in GB/s of logits read (the size of the logits over the time: for
cross-entropy forward + backward that also covers writing the gradient, as a copy covers reading and writing),
set against torch's and against the copy bandwidth measured in the same run: the fastest of a single-thread
``np.copyto`` and a threaded copy into an existing array, source bytes per second. Times are the best of a
few runs after a warm-up, outputs allocated afresh each time, as a user's call would.

Results are printed as a table and written as JSON and, with matplotlib, a PNG.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

OPS = ("softmax", "log_softmax", "cross_entropy")
CLASSES = (10, 1000, 32768, 131072)
LATENCY = (1, 1000)


def _best(call: Callable[[], Any], repeat: int, budget: float) -> float:
    """Best time of ``repeat`` calls after a warm-up, stopping early once ``budget`` seconds are spent."""
    call()
    best, spent = float("inf"), 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        elapsed = time.perf_counter() - start
        best, spent = min(best, elapsed), spent + elapsed
        if spent > budget:
            break
    return best


def copy_bandwidth(n: int, threads: int, repeat: int = 5, threaded: bool = True) -> tuple[float, float]:
    """Source bytes per second of copying ``n`` float32: into an existing array, and into a new one.

    Into an existing array is the memory's bandwidth: the fastest of a single-thread ``np.copyto`` and a copy
    on ``threads`` threads. Into a new array (the fastest of ``x.copy()`` and the threaded copy into
    ``np.empty_like(x)``) adds what every operation returning a new array pays: the operating system zeroes each
    fresh page before the first write. ``threaded=False`` (``--quick``) times the single-thread copies only.
    """
    src = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    dst = np.empty_like(src)
    best = _best(lambda: np.copyto(dst, src), repeat, 5.0)
    fresh = _best(src.copy, repeat, 5.0)
    if not threaded:  # the threaded copy is compiled in every run (seconds): not for --quick
        return src.nbytes / best, src.nbytes / fresh
    try:
        import numba

        @numba.njit(parallel=True, cache=False)
        def parallel_copy(a: Any, b: Any) -> Any:
            for i in numba.prange(a.size):
                b[i] = a[i]
            return b

        numba.set_num_threads(threads)
        best = min(best, _best(lambda: parallel_copy(src, dst), repeat, 5.0))
        fresh = min(fresh, _best(lambda: parallel_copy(src, np.empty_like(src)), repeat, 5.0))
    except ImportError:
        pass
    return src.nbytes / best, src.nbytes / fresh


def _naive(op: str, x: np.ndarray, y: np.ndarray) -> Any:
    with np.errstate(all="ignore"):
        m = np.max(x, axis=-1, keepdims=True)
        e = np.exp(x - m)
        s = np.sum(e, axis=-1, keepdims=True)
        if op == "softmax":
            return e / s
        if op == "log_softmax":
            return x - m - np.log(s)
        p = e / s
        loss = -np.mean(np.log(p[np.arange(len(y)), y]))
        p[np.arange(len(y)), y] -= 1.0
        return loss, p / len(y)


def implementations(threads: int) -> dict[str, Callable[[str, np.ndarray, np.ndarray], Callable[[], Any]]]:
    """``name -> make(op, x, y)`` returning a zero-argument call; only the libraries that are installed."""
    import softmaxkit as sk

    def ours(backend: str) -> Callable[[str, np.ndarray, np.ndarray], Callable[[], Any]]:
        def make(op: str, x: np.ndarray, y: np.ndarray) -> Callable[[], Any]:
            if op == "cross_entropy":
                return lambda: sk.cross_entropy_value_and_grad(x, y, backend=backend)
            f = sk.softmax if op == "softmax" else sk.log_softmax
            return lambda: f(x, backend=backend)

        return make

    impls: dict[str, Callable[[str, np.ndarray, np.ndarray], Callable[[], Any]]] = {}
    from .kernels import numba as kernels

    if kernels.available():
        impls["softmaxkit"] = ours("numba")
    impls["softmaxkit-reference"] = ours("reference")
    try:
        import scipy.special

        def make_scipy(op: str, x: np.ndarray, y: np.ndarray) -> Callable[[], Any]:
            if op == "cross_entropy":
                raise NotImplementedError
            f = scipy.special.softmax if op == "softmax" else scipy.special.log_softmax
            return lambda: f(x, axis=-1)

        impls["scipy"] = make_scipy
    except ImportError:
        pass
    impls["numpy-naive"] = lambda op, x, y: lambda: _naive(op, x, y)
    try:
        import torch
        import torch.nn.functional as F

        torch.set_num_threads(threads)

        def make_torch(op: str, x: np.ndarray, y: np.ndarray) -> Callable[[], Any]:
            tx, ty = torch.from_numpy(x), torch.from_numpy(y)
            if op == "softmax":
                return lambda: F.softmax(tx, dim=-1)
            if op == "log_softmax":
                return lambda: F.log_softmax(tx, dim=-1)

            def step() -> Any:
                z = tx.detach().requires_grad_(True)
                loss = F.cross_entropy(z, ty)
                loss.backward()  # type: ignore[no-untyped-call]
                return loss, z.grad

            return step

        impls["torch"] = make_torch
    except ImportError:
        pass
    try:
        import jax
        import jax.numpy as jnp

        def ce(z: Any, t: Any) -> Any:
            return jnp.mean(jax.nn.logsumexp(z, axis=-1) - jnp.take_along_axis(z, t[:, None], axis=-1)[:, 0])

        jitted = {
            "softmax": jax.jit(lambda z: jax.nn.softmax(z, axis=-1)),
            "log_softmax": jax.jit(lambda z: jax.nn.log_softmax(z, axis=-1)),
            "cross_entropy": jax.jit(jax.value_and_grad(ce)),
        }

        def make_jax(op: str, x: np.ndarray, y: np.ndarray) -> Callable[[], Any]:
            jx, jy = jnp.asarray(x), jnp.asarray(y.astype(np.int32))
            f = jitted[op]
            if op == "cross_entropy":
                return lambda: jax.block_until_ready(f(jx, jy))  # type: ignore[no-untyped-call]
            return lambda: jax.block_until_ready(f(jx))  # type: ignore[no-untyped-call]

        impls["jax"] = make_jax
    except ImportError:
        pass
    return impls


def run(
    quick: bool = False,
    threads: int | None = None,
    out: Callable[[str], None] = print,
    total: int | None = None,
    only: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Time every implementation on every shape; return the results (as written to JSON).

    ``total`` (logits per shape) and ``only`` (implementation names) narrow the run, for tests.
    """
    from .kernels import numba as kernels

    if kernels.available():
        kernels.start()  # the package's threading layer, before numba's threads are started below
    if threads is None:
        try:
            import numba

            threads = int(numba.get_num_threads())
        except ImportError:
            threads = os.cpu_count() or 1
    if "jax" not in sys.modules:  # XLA reads its thread count once, when it starts
        os.environ.setdefault("XLA_FLAGS", f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={threads}")
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    total = total or (2**21 if quick else 2**26)
    repeat, budget = (3, 0.5) if quick else (7, 10.0)
    impls = {k: v for k, v in implementations(threads).items() if only is None or k in only}
    copy, copy_new = copy_bandwidth(total, threads, threaded=not quick)
    out(
        f"threads {threads}; copy bandwidth {copy / 1e9:.1f} GB/s into an existing array, {copy_new / 1e9:.1f} GB/s "
        f"into a new one (source bytes per second); {len(impls)} implementations: {', '.join(impls)}"
    )
    rows: list[dict[str, Any]] = []
    shapes = [(max(1, total // c), c) for c in CLASSES] + [LATENCY]
    rng = np.random.default_rng(0)
    for n, c in shapes:
        x = rng.standard_normal((n, c)).astype(np.float32)
        y = rng.integers(0, c, n)
        for op in OPS:
            measured: dict[str, float] = {}
            for name, make in impls.items():
                try:
                    call = make(op, x, y)
                except NotImplementedError:
                    continue
                measured[name] = _best(call, repeat if (n, c) != LATENCY else 200, budget)
            base = measured.get("torch")
            for name, seconds in measured.items():
                rows.append(
                    {
                        "op": op,
                        "impl": name,
                        "rows": n,
                        "classes": c,
                        "seconds": seconds,
                        "gbps": x.nbytes / seconds / 1e9,
                        "vs_torch": None if base is None else base / seconds,
                        "of_copy": x.nbytes / seconds / copy,
                        "of_copy_new": x.nbytes / seconds / copy_new,
                    }
                )
    result = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "threads": threads,
            "python": platform.python_version(),
        },
        "quick": quick,
        "dtype": "float32",
        "copy_gbps": copy / 1e9,
        "copy_new_gbps": copy_new / 1e9,
        "results": rows,
    }
    out(table(result))
    return result


def table(result: dict[str, Any]) -> str:
    """The results as a text table: one block per operation and shape."""
    lines = [
        f"{'op':<14}{'shape':>16}  {'implementation':<22}{'GB/s':>8}{'time':>12}{'x torch':>9}{'% copy':>8}"
        f"{'% new':>7}",
        f"(GB/s of float32 logits; % copy: of a copy into an existing array, {result['copy_gbps']:.1f} GB/s; "
        f"% new: into a new array, {result['copy_new_gbps']:.1f} GB/s)",
    ]
    key = None
    for r in result["results"]:
        if (r["op"], r["rows"], r["classes"]) != key:
            key = (r["op"], r["rows"], r["classes"])
            lines.append("")
        shape = f"{r['rows']}x{r['classes']}"
        t = r["seconds"]
        when = f"{t * 1e3:.2f} ms" if t >= 1e-3 else f"{t * 1e6:.1f} us"
        ratio = "" if r["vs_torch"] is None else f"{r['vs_torch']:.2f}"
        lines.append(
            f"{r['op']:<14}{shape:>16}  {r['impl']:<22}{r['gbps']:>8.2f}{when:>12}{ratio:>9}"
            f"{100 * r['of_copy']:>7.0f}%{100 * r['of_copy_new']:>6.0f}%"
        )
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> bool:
    """GB/s against the number of classes, one panel per operation; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, len(OPS), figsize=(5 * len(OPS) + 3, 4.5), sharey=True)
    impls = list(dict.fromkeys(r["impl"] for r in result["results"]))
    colours = {impl: f"C{i}" for i, impl in enumerate(impls)}
    for ax, op in zip(axes, OPS, strict=True):
        rows = [r for r in result["results"] if r["op"] == op and (r["rows"], r["classes"]) != LATENCY]
        for impl in impls:
            mine = sorted((r["classes"], r["gbps"]) for r in rows if r["impl"] == impl)
            if mine:
                ax.plot([c for c, _ in mine], [g for _, g in mine], marker="o", color=colours[impl], label=impl)
        ax.axhline(result["copy_gbps"], color="grey", linestyle="--", label="copy into an existing array")
        ax.axhline(result["copy_new_gbps"], color="grey", linestyle=":", label="copy into a new array")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(op.replace("cross_entropy", "cross-entropy fwd+bwd"))
        ax.set_xlabel("classes C (N·C fixed)")
    axes[0].set_ylabel("GB/s of float32 logits")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.suptitle(f"{result['machine']['threads']} threads, {result['machine']['processor'] or 'CPU'}")
    fig.tight_layout()
    fig.subplots_adjust(right=0.84)
    fig.legend(handles, labels, loc="center right", fontsize="small")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> int:
    """``softmaxkit bench [--quick] [--threads N] [--out DIR]``."""
    parser = argparse.ArgumentParser(prog="softmaxkit bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return command(parser.parse_args(argv), out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="2^21 logits per shape and fewer runs (under a minute)")
    parser.add_argument("--threads", type=int, default=None, help="threads for numba, torch and JAX (numba's)")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for bench_cpu.json and bench_cpu.png")


def command(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    result = run(quick=args.quick, threads=args.threads, out=out)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_cpu.json").write_text(json.dumps(result, indent=1))
    out(f"wrote {args.out / 'bench_cpu.json'}")
    if plot(result, args.out / "bench_cpu.png"):
        out(f"wrote {args.out / 'bench_cpu.png'}")
    else:
        out("matplotlib is not installed: no plot (pip install 'softmaxkit[bench]')")
    return 0

"""Triton kernels on a CUDA device: cross-entropy forward + backward, softmax and log-softmax, against peers.

One run checks, then times, everything on the same device:

* the device-to-device copy bandwidth, ``torch.empty_like(x).copy_(x)`` (bytes read + written), the yardstick
  of every memory-bound kernel;
* cross-entropy, loss + gradient of the logits (``reduction="mean"``): softmaxkit (``softmaxkit.torch``, on its
  Triton kernels), torch eager ``F.cross_entropy`` + backward, ``torch.compile`` of the same, and Liger-Kernel's
  ``LigerCrossEntropyFunction`` when ``liger_kernel`` is installed (else that column is skipped with a note);
  Liger writes the gradient into the logits in place, so its inputs are refreshed before each repetition,
  outside the timed region;
* softmax and log-softmax forward: softmaxkit against ``torch.softmax`` / ``torch.log_softmax``.

Bandwidth is counted as the bytes a one-pass algorithm must move: cross-entropy forward + backward reads the
``N x V`` logits twice and writes the gradient once (3 NV elements); softmax reads once and writes once (2 NV).
Each figure is also given as a percentage of the copy bandwidth measured in the same run, and as ratios of
times (peer time / softmaxkit time: above 1 means softmaxkit is faster). Targets on an H100: cross-entropy
>= 85% of copy bandwidth, >= 1.3x torch eager, >= 1.0x Liger; softmax >= 90%.

Before timing, each method's loss and gradient (or output) are compared with torch eager's in float64 on the
same inputs; a method that disagrees is reported and its times are flagged. Times are medians of CUDA-event
timings after warm-up (``benchmarks/_harness.py``'s timer; its machine description and JSON too).

Usage::

    python benchmarks/bench_gpu.py            # float32 and bfloat16, N x V from 4096 x 32000 to 8192 x 256000
    python benchmarks/bench_gpu.py --quick    # one small shape, fewer repetitions
    python benchmarks/bench_gpu.py --out DIR  # JSON into DIR/bench_gpu.json (default benchmarks/results)
    python benchmarks/bench_gpu.py --sweep    # also time softmaxkit under other block configurations

``--sweep`` times softmaxkit's cross-entropy and softmax on the first shape under several settings of
``softmaxkit.kernels.triton.ops.SINGLE_MAX`` / ``BLOCK_WIDE`` / ``NUM_WARPS`` (the block sizes are a first guess, made
without an H100 at hand) and prints them fastest first, to choose the defaults from.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from _harness import add_arguments, describe, machine_info, positive_int, time_cuda, write_results

SHAPES = [(4096, 32000), (8192, 32000), (4096, 128256), (8192, 128256), (8192, 256000)]
QUICK_SHAPES = [(4096, 32000)]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def timed(fn: Callable[[], Any], repeat: int, before: Callable[[], Any] | None = None) -> float:
    """Median seconds of ``fn`` over ``repeat`` CUDA-event timings after two warm-ups (``before`` runs untimed)."""
    return time_cuda(fn, repeat=repeat, warmup=2, before=before).median


def copy_bandwidth(n_bytes: int, repeat: int) -> float:
    """GB/s of ``torch.empty_like(x).copy_(x)`` for ``n_bytes``, counting bytes read + written."""
    x = torch.empty(n_bytes // 4, dtype=torch.float32, device="cuda").uniform_()
    y = torch.empty_like(x)
    t = timed(lambda: y.copy_(x), repeat)
    return 2 * n_bytes / t / 1e9


# ------------------------------------------------------------------------------------------- cross-entropy
def _ce_methods(notes: list[str]) -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    import softmaxkit.torch as skt

    methods: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
        "softmaxkit": lambda x, y: skt.cross_entropy(x, y),
        "torch_eager": lambda x, y: F.cross_entropy(x, y),
        "torch_compile": torch.compile(lambda x, y: F.cross_entropy(x, y), dynamic=False),
    }
    try:
        from liger_kernel.ops.cross_entropy import LigerCrossEntropyFunction
    except ImportError:
        notes.append("liger_kernel is not installed: the Liger column is skipped")
    else:

        def liger(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            out = LigerCrossEntropyFunction.apply(x, y)
            return out[0] if isinstance(out, tuple) else out

        methods["liger"] = liger
    return methods


def bench_cross_entropy(
    n: int, v: int, dtype: torch.dtype, repeat: int, copy_gbps: float, notes: list[str]
) -> list[dict[str, Any]]:
    gen = torch.Generator(device="cuda").manual_seed(0)
    base = (torch.randn(n, v, generator=gen, device="cuda") * 2).to(dtype)
    y = torch.randint(0, v, (n,), generator=gen, device="cuda")
    y[::13] = -100
    ref = base[:256].double().requires_grad_(True)  # the check, on the first rows, in float64
    F.cross_entropy(ref, y[:256], reduction="sum").backward()
    assert ref.grad is not None
    x = base.clone().requires_grad_(True)
    rows = []
    for name, fn in _ce_methods(notes).items():

        def refresh() -> None:
            with torch.no_grad():
                x.copy_(base)  # Liger overwrites the logits with the gradient
            x.grad = None

        def step(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = fn) -> None:
            fn(x, y).backward()

        try:
            refresh()
            loss = fn(x, y)
            loss.backward()
            grad = x.grad if x.grad is not None else x.detach()  # Liger: the gradient is in x itself
            n_valid = int((y != -100).sum())
            got = grad[:256].double() * n_valid  # mean -> sum scale
            ok = torch.allclose(got, ref.grad, rtol=3e-2 if dtype == torch.bfloat16 else 1e-4, atol=1e-3)
            t = timed(step, repeat, before=refresh)
        except Exception as exc:  # a peer that fails on this shape is reported, not fatal
            notes.append(f"cross-entropy {name} {n}x{v} {dtype}: {type(exc).__name__}: {exc}")
            continue
        moved = 3 * n * v * base.element_size()
        rows.append(
            {
                "op": "cross_entropy_fwd_bwd",
                "dtype": str(dtype).split(".")[-1],
                "n": n,
                "v": v,
                "method": name,
                "check": ok,
                "time_s": t,
                "gbps": moved / t / 1e9,
                "pct_copy": 100 * moved / t / 1e9 / copy_gbps,
                "loss": float(loss.detach()),
            }
        )
        x.grad = None
    return rows


# ------------------------------------------------------------------------------------- softmax, log-softmax
def bench_softmax(n: int, v: int, dtype: torch.dtype, repeat: int, copy_gbps: float) -> list[dict[str, Any]]:
    import softmaxkit.torch as skt

    x = (torch.randn(n, v, device="cuda") * 2).to(dtype)
    rows = []
    for op, ours, theirs in (
        ("softmax", skt.softmax, torch.softmax),
        ("log_softmax", skt.log_softmax, torch.log_softmax),
    ):
        want = theirs(x[:256].double(), 1)
        for name, fn in (("softmaxkit", ours), ("torch_eager", theirs)):
            ok = torch.allclose(fn(x[:256], 1).double(), want, rtol=2e-2, atol=1e-3)
            t = timed(lambda fn=fn: fn(x, 1), repeat)
            moved = 2 * n * v * x.element_size()
            rows.append(
                {
                    "op": op,
                    "dtype": str(dtype).split(".")[-1],
                    "n": n,
                    "v": v,
                    "method": name,
                    "check": ok,
                    "time_s": t,
                    "gbps": moved / t / 1e9,
                    "pct_copy": 100 * moved / t / 1e9 / copy_gbps,
                }
            )
    return rows


SWEEP = [  # (SINGLE_MAX, BLOCK_WIDE, NUM_WARPS): rows up to SINGLE_MAX held whole, else walked by BLOCK_WIDE
    (8192, 4096, None),
    (8192, 8192, None),
    (0, 4096, 4),
    (0, 8192, 8),
    (0, 16384, 16),
    (16384, 8192, None),
    (32768, 8192, None),
    (32768, 16384, 32),
]


def sweep(n: int, v: int, dtype: torch.dtype, repeat: int, copy_gbps: float) -> list[dict[str, Any]]:
    import softmaxkit.torch as skt
    from softmaxkit.kernels.triton import ops as gpu

    saved = (gpu.SINGLE_MAX, gpu.BLOCK_WIDE, gpu.NUM_WARPS)
    x = (torch.randn(n, v, device="cuda") * 2).to(dtype).requires_grad_(True)
    y = torch.randint(0, v, (n,), device="cuda")
    rows = []
    try:
        for single_max, block, warps in SWEEP:
            gpu.SINGLE_MAX, gpu.BLOCK_WIDE, gpu.NUM_WARPS = single_max, block, warps
            t_ce = timed(lambda: skt.cross_entropy(x, y).backward(), repeat, before=lambda: setattr(x, "grad", None))
            t_sm = timed(lambda: skt.softmax(x.detach(), 1), repeat)
            size = n * v * x.element_size()
            rows.append(
                {
                    "dtype": str(dtype).split(".")[-1],
                    "n": n,
                    "v": v,
                    "single_max": single_max,
                    "block_wide": block,
                    "num_warps": warps,
                    "ce_time_s": t_ce,
                    "ce_pct_copy": 100 * 3 * size / t_ce / 1e9 / copy_gbps,
                    "softmax_time_s": t_sm,
                    "softmax_pct_copy": 100 * 2 * size / t_sm / 1e9 / copy_gbps,
                }
            )
    finally:
        gpu.SINGLE_MAX, gpu.BLOCK_WIDE, gpu.NUM_WARPS = saved
    return sorted(rows, key=lambda r: r["ce_time_s"])


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """``vs_<peer>``: the peer's time over softmaxkit's, for the same op, dtype and shape."""
    ours = {(r["op"], r["dtype"], r["n"], r["v"]): r for r in rows if r["method"] == "softmaxkit"}
    for r in rows:
        mine = ours.get((r["op"], r["dtype"], r["n"], r["v"]))
        if mine is not None and r["method"] != "softmaxkit":
            mine[f"vs_{r['method']}"] = r["time_s"] / mine["time_s"]


def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'op':<22}{'dtype':<10}{'N x V':>15}  {'method':<14}{'ms':>9}{'GB/s':>8}{'% copy':>8}  ratios"
    lines = [head, "-" * len(head)]
    for r in rows:
        ratios = " ".join(f"{k[3:]}={v:.2f}x" for k, v in r.items() if k.startswith("vs_"))
        flag = "" if r["check"] else "  CHECK FAILED"
        lines.append(
            f"{r['op']:<22}{r['dtype']:<10}{r['n']:>7} x {r['v']:<6}  {r['method']:<14}{1e3 * r['time_s']:>9.3f}"
            f"{r['gbps']:>8.0f}{r['pct_copy']:>7.1f}%  {ratios}{flag}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one small shape, fewer repetitions")
    p.add_argument("--dtypes", default=",".join(DTYPES))
    p.add_argument("--sweep", action="store_true", help="time softmaxkit under other block configurations")
    add_arguments(p, repeat=None, threads=False)
    p.add_argument("--repeat", type=positive_int, default=None, help="timed repetitions (default 10, 5 with --quick)")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/bench_gpu.py needs a CUDA device; none is available", file=sys.stderr)
        return 2
    repeat = args.repeat or (5 if args.quick else 10)
    shapes = QUICK_SHAPES if args.quick else SHAPES
    notes: list[str] = []
    free, _ = torch.cuda.mem_get_info()
    copy_gbps = copy_bandwidth(min(2**30, free // 8), repeat)
    rows: list[dict[str, Any]] = []
    for dname in args.dtypes.split(","):
        dtype = DTYPES[dname]
        for n, v in shapes:
            need = 4 * n * v * torch.finfo(dtype).bits // 8  # logits, gradient and a peer's N x V temporaries
            if need > torch.cuda.mem_get_info()[0]:
                notes.append(f"{n}x{v} {dname}: skipped, needs {need / 2**30:.1f} GiB")
                continue
            rows += bench_cross_entropy(n, v, dtype, repeat, copy_gbps, notes)
            torch.cuda.empty_cache()
            rows += bench_softmax(n, v, dtype, repeat, copy_gbps)
            torch.cuda.empty_cache()
    add_ratios(rows)
    sweeps: list[dict[str, Any]] = []
    if args.sweep:
        for dname in args.dtypes.split(","):
            sweeps += sweep(*shapes[0], DTYPES[dname], repeat, copy_gbps)
            torch.cuda.empty_cache()
    results = {"copy_gbps": copy_gbps, "repeat": repeat, "notes": notes, "rows": rows, "sweep": sweeps}
    path = write_results("bench_gpu", results, args.out)
    print(describe(machine_info()))
    print(f"copy bandwidth {copy_gbps:.0f} GB/s (read + write)")
    for note in notes:
        print("note:", note)
    for r in sweeps:
        print(
            f"sweep {r['dtype']:<9}{r['n']}x{r['v']}  SINGLE_MAX={r['single_max']:<6} BLOCK_WIDE={r['block_wide']:<6}"
            f" NUM_WARPS={r['num_warps']!s:<5} CE {1e3 * r['ce_time_s']:.3f} ms ({r['ce_pct_copy']:.0f}% copy)"
            f"  softmax {1e3 * r['softmax_time_s']:.3f} ms ({r['softmax_pct_copy']:.0f}% copy)"
        )
    print(table(rows))
    print(f"wrote {path}")
    return 0 if all(r["check"] for r in rows if r["method"] == "softmaxkit") else 1


if __name__ == "__main__":
    sys.exit(main())

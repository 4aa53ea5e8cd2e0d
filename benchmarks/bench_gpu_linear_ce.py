"""Linear cross-entropy on a CUDA device: softmaxkit's Triton kernels against naive torch and the fused peers.

Methods, all in one run and one process, each skipped with a note when its package is not installed:

* ``naive``: ``F.cross_entropy(F.linear(hidden, W), y)`` and its backward (the logits in full);
* ``torch``: ``torch.nn.functional.linear_cross_entropy`` (torch >= 2.13);
* ``liger``: Liger-Kernel's ``LigerFusedLinearCrossEntropyLoss`` (``liger-kernel``);
* ``cce``: Cut Cross-Entropy's ``linear_cross_entropy`` (``cut-cross-entropy``) with its default gradient
  filtering (``filter_eps="auto"``, :math:`2^{-12}` in bfloat16), and ``cce_exact`` with ``filter_eps=None``;
* ``softmaxkit``: :func:`softmaxkit.torch.linear_cross_entropy`, exact and fast (atomic) backward;
  ``softmaxkit_det`` with ``deterministic=True``; ``softmaxkit_filter`` with ``grad_threshold=2**-12``
  (Cut Cross-Entropy's filtering threshold).

Per method and size: the time of forward + backward (CUDA events; median of ``--reps`` after ``--warmup``
steps that also compile the kernels), the *peak extra memory*, ``torch.cuda.max_memory_allocated()`` during the
step minus the memory held by the inputs and by the gradients that the step leaves behind (so the gradients
themselves are not counted, their float32 accumulators are), and the largest error of the loss (relative) and
of the gradients of ``hidden`` and ``W`` (relative to the largest entry of each) against a float32 reference
(``F.linear`` + ``F.cross_entropy`` on the inputs upcast to float32, TF32 off).

Usage::

    python benchmarks/bench_gpu_linear_ce.py          # bf16, (8192, 2304, 256000), (16384, 4096, 128256)
    python benchmarks/bench_gpu_linear_ce.py --quick  # small sizes, a minute

writes ``bench_gpu_linear_ce.json`` into ``--out`` (default ``benchmarks/results``; timer, machine description
and JSON from ``benchmarks/_harness.py``) and prints a short table last. Targets (issue 8): peak memory at
most Cut Cross-Entropy's; time at most CCE's and Liger's; errors within bfloat16 tolerance.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from _harness import add_arguments, describe, machine_info, positive_int, time_cuda, write_results

SIZES = [(8192, 2304, 256000), (16384, 4096, 128256)]  # Gemma-2 2B and Llama-3 8B output layers
QUICK = [(2048, 512, 32000), (1024, 1024, 50257)]
METHODS = ("naive", "torch", "liger", "cce", "cce_exact", "softmaxkit", "softmaxkit_det", "softmaxkit_filter")
Step = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def make_step(method: str) -> tuple[Step | None, str]:
    """The loss of ``(hidden, W, y)`` for ``method``, or None and why it is skipped."""
    if method == "naive":
        return (lambda h, w, y: F.cross_entropy(F.linear(h, w), y)), ""
    if method == "torch":
        fn = getattr(F, "linear_cross_entropy", None)
        if fn is None:
            return None, f"torch {torch.__version__} has no torch.nn.functional.linear_cross_entropy (2.13+)"
        return (lambda h, w, y: fn(h, w, y)), ""
    if method == "liger":
        try:
            from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
        except ImportError as e:
            return None, f"liger-kernel not installed ({e})"
        loss = LigerFusedLinearCrossEntropyLoss()
        return (lambda h, w, y: loss(w, h, y)), ""  # Liger takes the weight first
    if method in ("cce", "cce_exact"):
        try:
            from cut_cross_entropy import linear_cross_entropy as cce
        except ImportError as e:
            return None, f"cut-cross-entropy not installed ({e})"
        if method == "cce":
            return (lambda h, w, y: cce(h, w, y)), ""
        return (lambda h, w, y: cce(h, w, y, filter_eps=None)), ""
    if method.startswith("softmaxkit"):
        from softmaxkit.torch import linear_cross_entropy as ours

        kw: dict[str, Any] = {"deterministic": method == "softmaxkit_det"}
        if method == "softmaxkit_filter":
            kw["grad_threshold"] = 2.0**-12
        return (lambda h, w, y: ours(h, w, y, **kw)), ""
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def reference(h: torch.Tensor, w: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Loss and gradients in float32 (TF32 off), from the inputs upcast."""
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        h32 = h.detach().float().requires_grad_()
        w32 = w.detach().float().requires_grad_()
        loss = F.cross_entropy(F.linear(h32, w32), y)
        gh, gw = torch.autograd.grad(loss, (h32, w32))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return float(loss), gh, gw


def _max_rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x.float() - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def measure(step: Step, h: torch.Tensor, w: torch.Tensor, y: torch.Tensor, warmup: int, reps: int) -> dict[str, Any]:
    """Time and peak extra memory of forward + backward; the last step's loss and gradients."""
    grad_bytes = h.numel() * h.element_size() + w.numel() * w.element_size()
    peaks: list[float] = []
    losses: list[torch.Tensor] = []
    base = 0

    def before() -> None:
        nonlocal base
        h.grad = w.grad = None
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated() + grad_bytes  # the inputs, and the gradients the step leaves
        torch.cuda.reset_peak_memory_stats()

    def call() -> None:
        loss = step(h, w, y)
        loss.backward()
        losses[:] = [loss.detach()]

    def after() -> None:
        peaks.append((torch.cuda.max_memory_allocated() - base) / 2**20)

    timing = time_cuda(call, repeat=reps, warmup=warmup, before=before, after=after)
    if h.grad is None or w.grad is None:
        raise RuntimeError("the step left no gradient for hidden or W")
    return {
        "time_ms": 1e3 * timing.median,
        "times_ms": [1e3 * t for t in timing.times],
        "peak_extra_mib": max(peaks[warmup:]),
        "loss": float(losses[-1]),
        "grads": (h.grad.detach().clone(), w.grad.detach().clone()),
    }


def run_size(n: int, d: int, v: int, methods: list[str], dtype: torch.dtype, warmup: int, reps: int) -> dict[str, Any]:
    g = torch.Generator(device="cuda").manual_seed(0)
    h = (torch.randn(n, d, device="cuda", generator=g) / d**0.25).to(dtype).requires_grad_()
    w = (torch.randn(v, d, device="cuda", generator=g) / d**0.25).to(dtype).requires_grad_()
    y = torch.randint(0, v, (n,), device="cuda", generator=g)
    ref_loss, ref_h, ref_w = reference(h, w, y)
    out: dict[str, Any] = {"n": n, "d": d, "v": v, "reference_loss": ref_loss, "methods": {}}
    for method in methods:
        step, note = make_step(method)
        if step is None:
            out["methods"][method] = {"skipped": note}
            print(f"  {method}: skipped: {note}", file=sys.stderr)
            continue
        try:
            r = measure(step, h, w, y, warmup, reps)
        except torch.cuda.OutOfMemoryError as e:
            out["methods"][method] = {"error": f"out of memory: {str(e).splitlines()[0]}"}
            continue
        finally:
            h.grad = w.grad = None
            torch.cuda.empty_cache()
        gh, gw = r.pop("grads")
        r["loss_rel_err"] = abs(r["loss"] - ref_loss) / abs(ref_loss)
        r["grad_hidden_rel_err"] = _max_rel(gh, ref_h)
        r["grad_weight_rel_err"] = _max_rel(gw, ref_w)
        del gh, gw
        out["methods"][method] = r
        print(
            f"  {method}: {r['time_ms']:.2f} ms, {r['peak_extra_mib']:.0f} MiB, loss err {r['loss_rel_err']:.1e}",
            file=sys.stderr,
        )
    return out


def table(results: list[dict[str, Any]]) -> str:
    lines = []
    head = (
        f"{'N x D x V':>22}  {'method':<18}{'fw+bw ms':>10}{'peak MiB':>10}{'loss err':>10}{'dH err':>10}{'dW err':>10}"
    )
    lines.append(head)
    for size in results:
        shape = f"{size['n']} x {size['d']} x {size['v']}"
        for method, r in size["methods"].items():
            if "time_ms" not in r:
                lines.append(f"{shape:>22}  {method:<18}{'-':>10}  {r.get('skipped') or r.get('error')}")
                continue
            lines.append(
                f"{shape:>22}  {method:<18}{r['time_ms']:>10.2f}{r['peak_extra_mib']:>10.0f}"
                f"{r['loss_rel_err']:>10.1e}{r['grad_hidden_rel_err']:>10.1e}{r['grad_weight_rel_err']:>10.1e}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"small sizes {QUICK}")
    p.add_argument("--sizes", help="N,D,V;N,D,V... (overrides the defaults)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--reps", type=positive_int, default=None, help="measured steps (default 10, 3 with --quick)")
    add_arguments(p, repeat=None, threads=False)
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_gpu_linear_ce: needs a CUDA device", file=sys.stderr)
        return 2
    sizes = QUICK if a.quick else SIZES
    if a.sizes:
        sizes = [(int(n), int(d), int(v)) for n, d, v in (s.split(",") for s in a.sizes.split(";"))]
    reps = a.reps if a.reps is not None else (3 if a.quick else 10)
    dtype = getattr(torch, a.dtype)
    methods = [m for m in a.methods.split(",") if m]
    results = []
    for n, d, v in sizes:
        print(f"N={n} D={d} V={v} {a.dtype}", file=sys.stderr)
        results.append(run_size(n, d, v, methods, dtype, a.warmup, reps))
    report = {"dtype": a.dtype, "warmup": a.warmup, "reps": reps, "sizes": results}
    path = write_results("bench_gpu_linear_ce", report, a.out)
    print(describe(machine_info()))
    print(table(results))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

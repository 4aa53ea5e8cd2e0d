r"""The ``torch.autograd.Function`` of cross-entropy (:mod:`softmaxkit.torch.functional` documents it): torch
code, the Triton kernels for CUDA tensors, the numba kernels for CPU ones."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch

from . import _core
from ._core import Options, RowLse
from ._dispatch import kernel_rows, rows_view, save, traceable

Tensor = torch.Tensor


# --------------------------------------------------------------------------------------- cross-entropy
class _CrossEntropy(torch.autograd.Function):
    """Outputs ``(loss, m, log_norm, denom, n_rows, fused, qsum)``; all but the loss are not differentiable:
    the saved row statistics, and on the Triton path the gradient written by the forward and its ``qsum``
    (empty tensors elsewhere)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        logits: Tensor, target: Tensor, weight: Tensor | None, dim: int, opts: Options, fuse: bool
    ) -> tuple[Tensor, ...]:
        k = kernel_rows("cross_entropy", logits, dim)
        # distinct empty tensors: one tensor returned as two outputs confuses torch.compile's wiring of saved tensors
        fused, qsum = logits.new_empty(0), logits.new_empty(0)
        if k is not None:
            loss, lse, denom, n_rows, out = _CrossEntropy._kernel_forward(
                k[0], k[1], logits, target, weight, opts, fuse
            )
            fused = fused if out.grad is None else out.grad
            qsum = qsum if out.qsum is None else out.qsum
        else:
            z = _core.to_compute(logits)
            loss, lse, denom, n_rows = _core.ce_forward(z, target, weight, dim, opts)
        loss = loss.to(_core.result_dtype(logits.dtype))
        if n_rows is denom:  # probability targets: one count, handed out as two distinct outputs
            n_rows = denom.clone()
        return loss, lse.m, lse.log_norm, denom, n_rows, fused, qsum

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        logits, target, weight, dim, opts, _ = inputs
        _, m, log_norm, denom, n_rows, fused, qsum = output
        ctx.mark_non_differentiable(m, log_norm, denom, n_rows, fused, qsum)
        k = kernel_rows("cross_entropy", logits, dim)
        ctx.kernels = None if k is None else k[0]
        ctx.grad = fused if ctx.kernels is not None and fused.numel() else None
        ctx.qsum = qsum if ctx.kernels is not None and qsum.numel() else None
        ctx.dim, ctx.opts = dim, opts
        save(ctx, logits, target, weight, m, log_norm, denom, n_rows)

    @staticmethod
    def _kernel_forward(
        kernels: ModuleType,
        rows: Tensor,
        logits: Tensor,
        target: Tensor,
        weight: Tensor | None,
        opts: Options,
        fuse: bool,
    ) -> tuple[Tensor, RowLse, Tensor, Tensor, Any]:
        """The Triton forward: per-row losses from the kernel, reduced here in float64 as the reference does."""
        n, k = rows.shape
        batch = logits.shape[:-1]
        probs = target.is_floating_point()
        if probs:
            t = rows_view(target, target.ndim - 1)
            t = target.contiguous().view(n, k) if t is None else t
            denom = n_rows = torch.tensor(float(n), dtype=torch.float64, device=rows.device)
        else:
            t = target.reshape(n)
            denom, n_rows = kernels.label_totals(t, weight, opts.ignore_index, k)
        scales = None
        if fuse and opts.reduction != "none":
            scales = torch.ones(2, dtype=torch.float64, device=rows.device)
            if opts.reduction == "mean":
                both = torch.stack([denom, n_rows])
                scales = torch.where(both > 0, 1.0 / torch.where(both > 0, both, 1.0), 0.0)
            scales = scales.to(torch.float32)
        out = kernels.cross_entropy(
            rows, t, weight, ignore_index=opts.ignore_index, label_smoothing=opts.label_smoothing,
            z_loss=opts.z_loss, softcap=opts.softcap, scales=scales,
        )  # fmt: skip
        loss = _core.reduce_rows(out.loss, out.z_rows, denom, n_rows, opts.reduction).to(torch.float32)
        keep = (*batch, 1)
        lse = RowLse(out.m.view(keep), out.log_norm.view(keep))
        return (loss.view(batch) if opts.reduction == "none" else loss), lse, denom, n_rows, out

    @staticmethod
    def backward(ctx: Any, grad: Tensor, *_: Any) -> tuple[Tensor | None, Tensor | None, None, None, None, None]:
        logits, target, weight, m, log_norm, denom, n_rows = ctx.saved_tensors
        want_t = bool(ctx.needs_input_grad[1])
        dz: Tensor | None
        if ctx.kernels is not None and not torch.is_grad_enabled() and not want_t:
            dz = _CrossEntropy._kernel_backward(ctx, logits, target, weight, m, log_norm, denom, n_rows, grad)
            return dz, None, None, None, None, None
        z = _core.to_compute(logits)
        # A double backward differentiates this function: then the lse is recomputed by differentiable ops.
        lse = None if torch.is_grad_enabled() or m.numel() == 0 else RowLse(m, log_norm)
        dz, dt = _core.ce_backward(z, target, weight, ctx.dim, ctx.opts, lse, denom, n_rows, grad, want_t)
        return (
            dz.to(logits.dtype) if ctx.needs_input_grad[0] else None,
            None if dt is None else dt.to(target.dtype),
            None,
            None,
            None,
            None,
        )

    @staticmethod
    @_core.jvp_rule
    def jvp(ctx: Any, t_logits: Tensor | None, t_target: Tensor | None, *_: Any) -> tuple[Tensor | None, ...]:
        logits, target, weight, _, _, denom, n_rows = ctx.saved_tensors
        # the lse recomputed by differentiable ops, not the saved (non-differentiable) one: an outer transform
        # (jacrev(jacfwd(f)), jacfwd(jacfwd(f))) differentiates this tangent through it
        dloss = _core.ce_jvp(logits, target, weight, ctx.dim, ctx.opts, None, denom, n_rows, t_logits, t_target)
        return dloss, None, None, None, None, None, None  # (one tangent per output)

    @staticmethod
    def _kernel_backward(
        ctx: Any,
        logits: Tensor,
        target: Tensor,
        weight: Tensor | None,
        m: Tensor,
        log_norm: Tensor,
        denom: Tensor,
        n_rows: Tensor,
        grad: Tensor,
    ) -> Tensor:
        """The Triton backward: the gradient written by the forward (scaled if the upstream one is not 1), or a
        launch that reads the saved row statistics."""
        fused: Tensor | None = ctx.grad
        ctx.grad = None
        if fused is not None:  # one device-to-host transfer: is the upstream gradient exactly 1?
            if bool(grad == 1):
                return fused.view(logits.shape)
            return (fused.to(torch.float32) * grad.to(torch.float32)).to(logits.dtype).view(logits.shape)
        opts: Options = ctx.opts
        rows = logits.view(-1, logits.shape[-1])
        n, k = rows.shape
        probs = target.is_floating_point()
        t = target.contiguous().view(n, k) if probs else target.reshape(n)
        g = grad.to(torch.float32)
        if opts.reduction == "none":
            scales, stride, zoff = g.reshape(n).contiguous(), 1, 0
        else:
            both = torch.stack([denom, n_rows])
            if opts.reduction == "mean":
                both = torch.where(both > 0, 1.0 / torch.where(both > 0, both, 1.0), 0.0)
            else:
                both = torch.ones_like(both)
            scales, stride, zoff = (g * both).to(torch.float32), 0, 1
        out = ctx.kernels.cross_entropy(
            rows, t, weight, ignore_index=opts.ignore_index, label_smoothing=opts.label_smoothing,
            z_loss=opts.z_loss, softcap=opts.softcap, scales=scales, scale_stride=stride, scale_zoff=zoff,
            saved=(m.reshape(n), log_norm.reshape(n), ctx.qsum), want_loss=False,
        )  # fmt: skip
        dz: Tensor = out.grad.view(logits.shape)
        return dz


CROSS_ENTROPY = traceable(_CrossEntropy)

r"""The ``torch.autograd.Function``\ s of softmax, log_softmax and logsumexp (:mod:`softmaxkit.torch.functional`
documents them): torch code, Triton kernels for CUDA tensors, the numba kernels' forward for CPU ones."""

from __future__ import annotations

import math
from typing import Any

import torch

from . import _core
from ._dispatch import grad_rows, kernel_rows, rows_view, save, traceable

Tensor = torch.Tensor
_INF = math.inf


# --------------------------------------------------------------------------------------------- softmax
# The Functions below are written in the ``setup_context`` style with ``generate_vmap_rule = True``: forward,
# backward and jvp are plain torch code that vmap can batch, so that ``torch.func.grad``, ``vmap`` (per-sample
# gradients), ``jacrev``, ``jacfwd`` and ``torch.autograd.forward_ad`` compose with them.
class _Softmax(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, dim: int) -> Tensor:
        k = kernel_rows("softmax", x, dim)
        if k is not None:
            out: Tensor = k[0].softmax(k[1]).view(x.shape)
            return out
        work = _core.compute_dtype(x.dtype, "input")
        p = torch.softmax(x, dim, dtype=work)
        if x.shape[dim] > 0:  # a fully masked row has no distribution: zeros, not nan
            p = torch.where(x.amax(dim, keepdim=True) == -_INF, 0.0, p)
        return p.to(_core.result_dtype(x.dtype, "input"))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, int], output: Tensor) -> None:
        x, dim = inputs
        k = kernel_rows("softmax", x, dim)
        ctx.dim, ctx.kernels = dim, None if k is None else k[0]
        save(ctx, output)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (out,) = ctx.saved_tensors
        if ctx.kernels is not None and not torch.is_grad_enabled():
            g_rows = grad_rows(grad.to(out.dtype), out.shape[-1])
            dx: Tensor = ctx.kernels.softmax_backward(out.view(-1, out.shape[-1]), g_rows)
            return dx.view(out.shape), None
        return _core.softmax_vjp(out, grad, ctx.dim), None

    @staticmethod
    @_core.jvp_rule
    def jvp(ctx: Any, tangent: Tensor, _dim: None) -> Tensor:
        (out,) = ctx.saved_tensors
        return _core.softmax_jvp(out, tangent, ctx.dim)


SOFTMAX = traceable(_Softmax)


class _LogSoftmax(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, dim: int) -> Tensor:
        k = kernel_rows("log_softmax", x, dim)
        if k is not None:
            out: Tensor = k[0].softmax(k[1], log=True).view(x.shape)
            return out
        z = _core.to_compute(x, "input")
        if z.shape[dim] == 0:  # an empty result, never the input itself (which setup_context could not save)
            return torch.empty_like(x, dtype=_core.result_dtype(x.dtype, "input"))
        lse, d = _core.row_lse(z, dim)
        z = torch.where(_core.bad_rows(lse.m), math.nan, d - lse.log_norm)
        return z.to(_core.result_dtype(x.dtype, "input"))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, int], output: Tensor) -> None:
        x, dim = inputs
        k = kernel_rows("log_softmax", x, dim)
        ctx.dim, ctx.kernels = dim, None if k is None else k[0]
        save(ctx, output)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (out,) = ctx.saved_tensors
        if ctx.kernels is not None and not torch.is_grad_enabled():
            g_rows = grad_rows(grad.to(out.dtype), out.shape[-1])
            dlog: Tensor = ctx.kernels.softmax_backward(out.view(-1, out.shape[-1]), g_rows, log=True)
            return dlog.view(out.shape), None
        return _core.log_softmax_vjp(out, grad, ctx.dim), None

    @staticmethod
    @_core.jvp_rule
    def jvp(ctx: Any, tangent: Tensor, _dim: None) -> Tensor:
        (out,) = ctx.saved_tensors
        return _core.log_softmax_jvp(out, tangent, ctx.dim)


LOG_SOFTMAX = traceable(_LogSoftmax)


class _LogSumExp(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, dim: int, keepdim: bool) -> Tensor:
        k = kernel_rows("logsumexp", x, dim)
        if k is not None:
            value: Tensor = k[0].logsumexp(k[1]).view(*x.shape[:-1], 1).to(_core.result_dtype(x.dtype, "input"))
            return value if keepdim else value.squeeze(dim)
        z = _core.to_compute(x, "input")
        if z.shape[dim] == 0:
            value = torch.full_like(z.sum(dim, keepdim=True), -_INF)
        else:
            lse, _ = _core.row_lse(z, dim)
            value = _core.lse_value(lse)
        out = value.to(_core.result_dtype(x.dtype, "input"))
        return out if keepdim else out.squeeze(dim)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, int, bool], output: Tensor) -> None:
        x, dim, keepdim = inputs
        k = kernel_rows("logsumexp", x, dim)
        ctx.dim, ctx.keepdim, ctx.kernels = dim, keepdim, None if k is None else k[0]
        save(ctx, x, output)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        x, out = ctx.saved_tensors
        rows = None if ctx.kernels is None or torch.is_grad_enabled() else rows_view(x, ctx.dim)
        if rows is not None:
            dx: Tensor = ctx.kernels.logsumexp_backward(rows, grad.reshape(-1))
            return dx.view(x.shape), None, None
        value = out if ctx.keepdim else out.unsqueeze(ctx.dim)
        g = grad if ctx.keepdim else grad.unsqueeze(ctx.dim)
        return _core.logsumexp_vjp(x, value, g, ctx.dim), None, None

    @staticmethod
    @_core.jvp_rule
    def jvp(ctx: Any, tangent: Tensor, _dim: None, _keepdim: None) -> Tensor:
        x, out = ctx.saved_tensors
        dv = _core.logsumexp_jvp(x, out if ctx.keepdim else out.unsqueeze(ctx.dim), tangent, ctx.dim)
        return dv if ctx.keepdim else dv.squeeze(ctx.dim)


LOGSUMEXP = traceable(_LogSumExp)

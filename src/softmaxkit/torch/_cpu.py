r"""The CPU path of :mod:`softmaxkit.torch.functional`: plain CPU tensors of float32/float64 on the numba kernels.

A call takes this path when its tensor is a plain CPU float32/float64 tensor (not traced by ``torch.compile``,
not a tensor of a :mod:`torch.func` transform), its class dimension is the last, and the dispatcher sends it to
``numba`` (:func:`softmaxkit._backend.choose`; on the torch front at every size). The kernels read the tensor's
memory through a NumPy view and their results become tensors without a copy. Where a call's work takes more
than one thread, the common kernels run on torch's own OpenMP threads (``torch.get_num_threads()`` of them,
:mod:`softmaxkit.kernels.numba._team`), not numba's, which would wait for a core while torch's spin after its
last op.

The Functions here are written in the combined ``forward(ctx, ...)`` style, not the ``setup_context`` style of
:mod:`._mappings` and :mod:`._cross_entropy`: torch 2.13's ``Function.apply`` binds the arguments of a
``setup_context`` Function with :func:`inspect.signature` on every call, tens of microseconds, more than a
kernel on a small tensor takes. The transforms that need ``setup_context`` never reach this path.

* softmax and log_softmax: the forward kernel, and in backward :func:`softmaxkit.kernels.numba.softmax_backward`
  (one read of the output and the upstream gradient per row, one write).
* logsumexp: the forward kernel; the backward is the softmax kernel times the upstream gradient, in place.
* cross-entropy: the loss and, when the logits require it, the gradient from one pass; that gradient is handed
  to the first backward (scaled in place when the upstream gradient is not 1), a second backward recomputes.

A backward under ``create_graph=True`` (a double backward) runs the differentiable torch code of
:mod:`._core` instead, and so does forward-mode AD (``jvp``): the values are the same.

Small calls (fewer than :data:`softmaxkit.kernels.numba.SMALL` elements, contiguous): softmax and log-softmax
call :func:`softmaxkit.kernels.numba.small_softmax` and their backward
:func:`softmaxkit.kernels.numba.small_softmax_backward`, cross-entropy with its default options (but
``reduction`` ``mean`` or ``sum``) :func:`softmaxkit.kernels.numba.small_cross_entropy`, which checks the labels
in the same call (:func:`small_cross_entropy`): one kernel call on this thread, without the general path's
checks and engine choice, which at 128 x 10 cost several times the kernel's work. A label out of range sends the
call to the general path, whose check names it.

Softmax below :data:`softmaxkit._backend.TORCH_SOFTMAX` elements (``backend`` ``auto``, no forward-mode AD
level open): torch's own ``torch.softmax``, whose values, gradient and special values are ours for every row but
a fully masked one (torch: ``nan``); a result holding a ``nan`` is computed again by the torch code of
:mod:`._mappings`. At these sizes torch's kernel, on two threads and with no Python ``autograd.Function`` around
it, is faster forward and backward than ours behind one (the Function alone costs about 30 us, and more when the
kernels before it have pushed the interpreter's data out of the caches).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch
from torch.autograd import forward_ad

from .. import _backend
from . import _core
from ._core import Options

Tensor = torch.Tensor
_FLOATS = (torch.float32, torch.float64)


_loaded: list[ModuleType] = []


def _kernels() -> ModuleType:
    """:mod:`softmaxkit.kernels.numba`, imported on the first call (an import statement per call costs more than
    a small kernel's work)."""
    if not _loaded:
        from ..kernels import numba as kernels

        _loaded.append(kernels)
    return _loaded[0]


def _team() -> Any:
    """torch's OpenMP threads, for the kernels to run on (:mod:`softmaxkit.kernels.numba._team`), or None."""
    return _kernels().torch_team()


def eligible(x: Tensor, dim: int) -> bool:
    """Whether ``x`` may take this path at all: a plain CPU float32/float64 tensor, class dimension last and not
    empty, not traced."""
    return (
        x.dtype in _FLOATS
        and x.is_cpu
        and x.ndim > 0
        and dim == x.ndim - 1
        and x.shape[-1] > 0
        and x.layout is torch.strided
        and not torch.compiler.is_compiling()
        and not torch._C._are_functorch_transforms_active()  # (no tensor's memory may be read inside one)
    )


def _numba(op: str, x: Tensor, mode: str) -> bool:
    return _backend.choose(op, x, mode, front="torch", rows=True, last=True) == "numba"


# --------------------------------------------------------------------------------------------- mappings
def _map_forward(ctx: Any, x: Tensor, log: bool, done: Any) -> Tensor:
    # done: the output computed before the call (the small-call branch of mapping), or None
    out = torch.from_numpy(_kernels().softmax(x.detach().numpy(), 1.0, log, _team()) if done is None else done)
    ctx.save_for_backward(out)
    ctx.save_for_forward(out)
    return out


def _map_backward(ctx: Any, grad: Tensor, log: bool) -> tuple[Tensor, None]:
    (out,) = ctx.saved_tensors
    if torch.is_grad_enabled():  # a double backward: differentiable torch code
        return (_core.log_softmax_vjp if log else _core.softmax_vjp)(out, grad, out.ndim - 1), None
    kernels = _kernels()
    y, g = out.detach().numpy(), grad.detach()
    if out.numel() < kernels.SMALL and g.dtype == out.dtype and g.is_contiguous():  # (no check or choice to make)
        return torch.from_numpy(kernels.small_softmax_backward(y, g.numpy(), log, _team())), None
    return torch.from_numpy(kernels.softmax_backward(y, g.numpy(), log, _team())), None


class _Softmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, done: Any = None) -> Tensor:
        return _map_forward(ctx, x, False, done)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return _map_backward(ctx, grad, False)

    @staticmethod
    @_core.jvp_rule
    def jvp(ctx: Any, tangent: Tensor, *_: Any) -> Tensor:
        (out,) = ctx.saved_tensors
        return _core.softmax_jvp(out, tangent, out.ndim - 1)


class _LogSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, done: Any = None) -> Tensor:
        return _map_forward(ctx, x, True, done)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return _map_backward(ctx, grad, True)

    @staticmethod
    @_core.jvp_rule
    def jvp(ctx: Any, tangent: Tensor, *_: Any) -> Tensor:
        (out,) = ctx.saved_tensors
        return _core.log_softmax_jvp(out, tangent, out.ndim - 1)


def mapping(x: Tensor, dim: int, log: bool) -> Tensor | None:
    """softmax (``log``: log_softmax) of ``x`` along ``dim`` on this path, or None when it does not take it."""
    if not eligible(x, dim):
        return None
    mode = _backend.resolve()
    # (not inside a forward-mode AD level: torch's softmax cannot be differentiated in reverse mode through its
    # tangent there, ours can)
    if not log and mode == "auto" and x.numel() < _backend.TORCH_SOFTMAX and forward_ad._current_level < 0:
        p = torch.softmax(x, dim)
        # a fully masked row is nan here, zeros in ours: the torch code then. A row of torch's output holding a
        # nan is nan throughout (its entries are divided by its nan sum), so its first column tells
        return None if bool(p.select(-1, 0).sum().isnan()) else p
    kernels = _kernels()
    small = type(x) is torch.Tensor and x.is_contiguous() and x.numel() < kernels.SMALL
    if small and mode in ("auto", "numba") and kernels.available():  # the kernel here, no other check or choice
        return _core.apply(_LogSoftmax if log else _Softmax, x, kernels.small_softmax(x.detach().numpy(), log, _team()))
    if not _numba("log_softmax" if log else "softmax", x, mode):
        return None
    return _core.apply(_LogSoftmax if log else _Softmax, x)


class _LogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, keepdim: bool) -> Tensor:
        value = torch.from_numpy(_kernels().logsumexp(x.detach().numpy(), _team()))
        out = value if keepdim else value.squeeze(-1)
        ctx.keepdim = keepdim
        ctx.save_for_backward(x, out)
        ctx.save_for_forward(x, out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        x, out = ctx.saved_tensors
        g = grad if ctx.keepdim else grad.unsqueeze(-1)
        if torch.is_grad_enabled():  # a double backward: differentiable torch code
            return _core.logsumexp_vjp(x, out if ctx.keepdim else out.unsqueeze(-1), g, x.ndim - 1), None
        p = torch.from_numpy(_kernels().softmax(x.detach().numpy(), 1.0, False, _team()))  # 0 for fully masked rows
        return p.mul_(g), None

    @staticmethod
    @_core.jvp_rule
    def jvp(ctx: Any, tangent: Tensor, _keepdim: None) -> Tensor:
        x, out = ctx.saved_tensors
        dv = _core.logsumexp_jvp(x, out if ctx.keepdim else out.unsqueeze(-1), tangent, x.ndim - 1)
        return dv if ctx.keepdim else dv.squeeze(-1)


def logsumexp(x: Tensor, dim: int, keepdim: bool) -> Tensor | None:
    """The log-sum-exp of ``x`` along ``dim`` on this path, or None when it does not take it."""
    if not eligible(x, dim) or not _numba("logsumexp", x, _backend.resolve()):
        return None
    return _core.apply(_LogSumExp, x, keepdim)


# ---------------------------------------------------------------------------------------- cross-entropy
class _CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, logits: Tensor, target: Tensor, weight: Tensor | None, opts: Options, fuse: bool, done: Any = None
    ) -> Tensor:
        z = logits.detach()
        res = done  # (loss, grad) computed before the call (small_cross_entropy), or None
        if res is None:
            t = target.detach()
            if t.is_floating_point():
                t = t.to(z.dtype)
            w = None if weight is None else weight.detach().to(z.dtype).numpy()
            res = _kernels().cross_entropy(
                z.numpy(), t.numpy(), w, opts.ignore_index, opts.label_smoothing, opts.reduction, opts.z_loss,
                opts.softcap, fuse, _team(),
            )  # fmt: skip
        ctx.opts, ctx.grad = opts, None
        if res is None:  # the one case the kernels leave to the torch code (a subnormal float64 total weight)
            loss: Tensor = _core.ce_forward(z, target, weight, z.ndim - 1, opts)[0]
        else:
            loss = torch.from_numpy(res[0])
            ctx.grad = None if res[1] is None else torch.from_numpy(res[1])
        ctx.save_for_backward(logits, target, weight)
        ctx.save_for_forward(logits, target, weight)
        return loss

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None, None, None]:
        dz: Tensor | None = ctx.grad
        if dz is not None and not torch.is_grad_enabled():
            ctx.grad = None  # handed over: a second backward recomputes
            if ctx.opts.reduction == "none":
                return dz.mul_(grad.unsqueeze(-1)), None, None, None, None, None
            return (dz if grad.item() == 1.0 else dz.mul_(grad)), None, None, None, None, None
        logits, target, weight = ctx.saved_tensors
        dim, opts = logits.ndim - 1, ctx.opts
        denom, n_rows = _core.denominators(target, weight, dim, opts.ignore_index, logits)
        # lse None: recomputed by differentiable torch code (a double backward differentiates it)
        dz = _core.ce_backward(logits, target, weight, dim, opts, None, denom, n_rows, grad)[0]
        return dz, None, None, None, None, None

    @staticmethod
    @_core.jvp_rule
    def jvp(ctx: Any, t_logits: Tensor | None, *_: Any) -> Tensor:
        logits, target, weight = ctx.saved_tensors
        dim, opts = logits.ndim - 1, ctx.opts
        denom, n_rows = _core.denominators(target, weight, dim, opts.ignore_index, logits)
        return _core.ce_jvp(logits, target, weight, dim, opts, None, denom, n_rows, t_logits, None)


def labels_in_range(target: Tensor, n_classes: int, ignore_index: int) -> bool:
    """True when the numba label check (one pass, no temporary) ran on ``target`` and found every class index in
    ``[0, n_classes)`` or ``ignore_index``; False when it did not run (not a plain CPU int64 tensor, or another
    engine named) or found one outside, for the caller's check to name."""
    if (
        target.dtype != torch.int64
        or target.device.type != "cpu"
        or target.layout != torch.strided
        or torch.compiler.is_compiling()
        or torch._C._are_functorch_transforms_active()  # (no tensor's memory may be read inside one)
        or _backend.resolve() not in ("auto", "numba")
        or not _kernels().available()  # (found once: a lookup per call costs more than the check)
    ):
        return False
    return bool(_kernels().first_bad_label(target.numpy(), n_classes, ignore_index) < 0)


def cross_entropy(x: Tensor, target: Tensor, weight: Tensor | None, dim: int, opts: Options) -> Tensor | None:
    """Cross-entropy on this path for arguments already checked (class indices in range or probabilities that
    do not require a gradient), or None when it does not take it."""
    if not eligible(x, dim) or not _numba("cross_entropy", x, _backend.resolve()):
        return None
    if target.device.type != "cpu" or (weight is not None and weight.device.type != "cpu"):
        return None
    fuse = torch.is_grad_enabled() and x.requires_grad
    return _core.apply(_CrossEntropy, x, target, weight, opts, fuse)


_DEFAULTS = {reduction: Options(-100, 0.0, reduction, 0.0, None) for reduction in ("mean", "sum")}


def small_cross_entropy(x: Any, target: Any, reduction: str) -> Tensor | None:
    """Cross-entropy of a small ``(N, C)`` CPU float32/float64 tensor for int64 class indices, with every option
    at its default but ``reduction`` (``"mean"`` or ``"sum"``), or None when the call is not one of those (then
    the general path checks and runs it, and names a label out of range).

    The common small call of a training loop, in one kernel call that also checks the labels
    (:func:`softmaxkit.kernels.numba.small_cross_entropy`), with no other check than this function's: at
    128 x 10 the general path's checks, engine choice and kernel entry cost several times the kernel's work.
    Its results are the general path's, bit for bit (tests/test_torch_cpu.py)."""
    if not (
        type(x) is torch.Tensor  # (a subclass, a Parameter included: the general path)
        and type(target) is torch.Tensor
        and x.dtype in _FLOATS
        and target.dtype == torch.int64
        and x.ndim == 2
        and target.ndim == 1
        and x.layout == torch.strided
        and target.layout == torch.strided
        and x.device.type == "cpu"
        and target.device.type == "cpu"
        and x.shape[0] == target.shape[0]
        and x.shape[0] > 0
        and x.shape[1] > 0
        and x.is_contiguous()
        and target.is_contiguous()
        and not torch.compiler.is_compiling()
        and not torch._C._are_functorch_transforms_active()  # (no tensor's memory may be read inside one)
        and _backend.resolve() in ("auto", "numba")
    ):
        return None
    kernels = _kernels()
    if x.numel() >= kernels.SMALL or not kernels.available():
        return None
    fuse = torch.is_grad_enabled() and x.requires_grad
    res = kernels.small_cross_entropy(x.detach().numpy(), target.numpy(), reduction == "mean", fuse, _team())
    if res is None:
        return None
    return _core.apply(_CrossEntropy, x, target, None, _DEFAULTS[reduction], fuse, res)

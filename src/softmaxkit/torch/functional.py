r"""``torch.autograd.Function``\ s for softmax, log_softmax, logsumexp and cross-entropy, with torch's signatures.

Drop-in replacements for ``torch.nn.functional.softmax`` / ``log_softmax`` / ``cross_entropy`` and
``torch.logsumexp``: the same arguments, the same values and gradients, except for the special values of the
foundation's policy (below), and two extra keywords of :func:`cross_entropy`, ``z_loss`` and ``softcap``.

What is saved for backward
--------------------------
* softmax and log_softmax save their output (as torch does): :math:`\partial p/\partial z` needs only
  :math:`p`, and :math:`\partial \log p / \partial z` only :math:`e^{\log p}`.
* logsumexp saves its input and output, and recomputes the softmax in backward.
* cross-entropy saves **only the per-row log-sum-exp** (two floats per row, see
  :class:`softmaxkit.torch._core.RowLse`), never the :math:`N \times C` probabilities: the backward recomputes
  :math:`p = e^{(z - m) - \text{log\_norm}}` from the logits it already references. The memory of a training
  step is then the logits plus :math:`O(N)`, instead of twice the logits.

Every backward is written in differentiable torch operations on the saved tensors, so autograd can
differentiate it again: double backward (``create_graph=True``, ``torch.autograd.gradgradcheck``, Hessian-vector
products) works for all four. When it is asked for, cross-entropy's backward recomputes the log-sum-exp by
differentiable operations instead of reading the saved one.

Special values (the deviations from torch)
------------------------------------------
==========================================  ==================================  ==========================
case                                        softmaxkit.torch                    torch
==========================================  ==================================  ==========================
softmax of a row of all ``-inf``            zeros, gradient 0                   nan
log_softmax of a row of all ``-inf``        ``-inf``, gradient 0                nan
logsumexp of a row of all ``-inf``          ``-inf``, gradient 0                ``-inf``, gradient nan
cross-entropy, ``mean``, all ignored        0, gradient 0                       nan
cross-entropy, ``mean``, zero total weight  0, gradient 0                       nan
negative / nan class ``weight``             ``ValueError``                      accepted
class index out of range                    ``ValueError`` naming the value     ``IndexError`` / assert
... unchecked (compile, vmap, no check)     ``nan`` for its row                 ``IndexError`` / assert
``ignore_index`` with probability targets   ``ValueError`` unless -100          ``RuntimeError``
==========================================  ==================================  ==========================

Shared with torch: a ``nan`` in a row makes that row ``nan``; a ``+inf`` makes softmax, log_softmax and
cross-entropy ``nan`` for the row, logsumexp ``+inf``; a target logit of ``-inf`` gives an infinite loss with the
finite gradient :math:`p - q`; ignored rows get a zero gradient (also when they hold ``nan``: they are never
read). float16 and bfloat16 are computed in float32 and returned in their own dtype.

Transforms
----------
The Functions are written in the ``setup_context`` style with ``generate_vmap_rule = True`` and a ``jvp``, so
``torch.func.grad``, ``vmap`` (per-sample gradients), ``jacrev``, ``jacfwd``, ``hessian`` and
``torch.autograd.forward_ad`` work and give torch's own values. ``torch.compile(fullgraph=True)`` traces all
four without a graph break; inside a compiled graph the checks that read values on the host are skipped (see
:func:`cross_entropy`'s ``check_target``), and forward-mode AD is not available there (Dynamo traces no custom
``jvp``).

numba kernels on CPU
--------------------
CPU tensors of float32 or float64 whose class dimension is the last go to :mod:`softmaxkit.kernels.numba` when
the dispatcher sends NumPy arrays of that size there (``softmaxkit.backend``: ``auto`` above its size
threshold, ``numba`` always, ``reference`` never): the kernels read the
tensor's memory through a NumPy view and their results become tensors without a copy. Cross-entropy then
computes the loss and, when the logits require it, the gradient in one pass; that gradient (``N x C``) is held
from the forward to the backward in place of the two floats per row, and handed over to the first backward (a
second one, or a double backward, recomputes). softmax and log_softmax run their forward there. Class indices
that were not checked (``check_target=False``, traced calls), probability targets that require a gradient, and
calls inside ``torch.compile`` or a ``torch.func`` transform take the torch code.

Triton kernels on CUDA
----------------------
A CUDA tensor of float32, float16 or bfloat16 whose class dimension is the last, with contiguous rows (any
``(..., C)`` tensor that views as ``(rows, C)`` without a copy; cross-entropy's ``(N, C)`` and ``(C,)``), goes
through :mod:`softmaxkit.kernels.triton.ops` when :mod:`triton` can be imported: the same values, special values and
gradients, in one or two passes over memory. Other layouts (the class dimension elsewhere, as in
``(N, C, d1, ...)``), float64 and other devices take the torch code. The double backward always does.

Cross-entropy with ``reduction="mean"`` or ``"sum"`` writes the gradient in its forward when the logits require
it (the loss and the gradient from the same reads of the logits); the backward then hands it over, after one
device-to-host transfer that checks whether the upstream gradient is exactly 1 (else it is multiplied in). With
``reduction="none"`` the backward is a separate launch that reads the saved row statistics. That gradient (``N x C``,
the logits' dtype) is held from the forward to the backward, where the torch code keeps two floats per row.
Checking class indices (``check_target=True``, the default) costs one more device-to-host transfer per call.
"""

from __future__ import annotations

import math
import warnings
from types import ModuleType
from typing import Any

import array_api_compat.torch as _xp
import torch

from .. import _backend, _validate
from . import _core
from ._core import Options, RowLse

__all__ = ["cross_entropy", "log_softmax", "logsumexp", "softmax"]

Tensor = torch.Tensor
_INF = math.inf


def _tensor(x: Any, name: str) -> Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
    if x.layout != torch.strided:
        raise TypeError(f"{name} is a sparse tensor ({x.layout}); pass {name}.to_dense()")
    return x


def _implicit_dim(name: str, ndim: int, stacklevel: int) -> int:
    """torch's legacy rule for ``dim=None`` (with its deprecation warning)."""
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated. Change the call to include dim=X as an argument.",
        UserWarning,
        stacklevel=stacklevel,
    )
    return 0 if ndim in (0, 1, 3) else 1


def _dim(x: Tensor, dim: Any, name: str, stacklevel: int) -> int:
    if dim is None:
        return _implicit_dim(name, x.ndim, stacklevel + 1)
    return _validate.axis(dim, max(x.ndim, 1), "dim")


# -------------------------------------------------------------------------------------- Triton dispatch
def _rows(x: Tensor, dim: int) -> Tensor | None:
    """``x`` as a ``(rows, C)`` view whose rows are contiguous, when ``dim`` is its last dimension and no copy is
    needed; else None (the torch code handles it)."""
    if x.ndim == 0 or dim != x.ndim - 1:
        return None
    if x.stride(-1) != 1 and x.shape[-1] > 1:
        return None
    try:
        return x.view(math.prod(x.shape[:-1]), x.shape[-1])
    except RuntimeError:  # rows that are not evenly strided
        return None


def _grad_rows(grad: Tensor, n_cols: int) -> Tensor:
    """The upstream gradient as ``(rows, C)`` with contiguous rows (a copy only when it is not already)."""
    g = _rows(grad, grad.ndim - 1) if grad.ndim else None
    return g if g is not None else grad.contiguous().view(-1, n_cols)


def _in_transform(x: Tensor) -> bool:
    """Whether ``x`` is a tensor of a :mod:`torch.func` transform (vmap's batched tensors and their kin): such a
    tensor takes the torch code (a kernel launch needs the plain tensor) and allows no data-dependent check."""
    return bool(torch._C._functorch.is_functorch_wrapped_tensor(x))


def _traced(*xs: Tensor) -> bool:
    """Whether this call is traced (``torch.compile``, or a :mod:`torch.func` transform of one of ``xs``): then
    no check may read a tensor's values on the host."""
    return bool(torch.compiler.is_compiling()) or any(_in_transform(x) for x in xs)


def _engine(op: str, x: Tensor, dim: int) -> str:
    """The dispatcher's engine for this call (:func:`softmaxkit._backend.choose`): ``triton`` (a CUDA tensor of a
    dtype the kernels take, class dimension last with contiguous rows, Triton installed), ``numba`` (a CPU
    float32/float64 tensor of at least ``THRESHOLD`` elements, class dimension last), else ``torch``; or the one
    ``softmaxkit.backend(...)`` names. Under ``torch.compile`` the choice is ``auto``'s: Dynamo cannot read the
    context (``ContextVar.get``), which would break the graph."""
    keyword = "auto" if torch.compiler.is_compiling() else None
    return _backend.choose(op, x, keyword, front="torch", rows=_rows(x, dim) is not None, last=dim == x.ndim - 1)


def _kernel_rows(op: str, x: Tensor, dim: int) -> tuple[ModuleType, Tensor] | None:
    """The Triton module and ``x`` as ``(rows, C)`` when the Triton kernels take this call, else None. A tensor of
    a :mod:`torch.func` transform always takes the torch code (a kernel launch needs the plain tensor)."""
    if _engine(op, x, dim) != "triton" or _in_transform(x):
        return None
    rows = _rows(x, dim)
    if rows is None:  # (the dispatcher saw to it)
        return None
    from ..kernels.triton import ops as gpu

    return gpu, rows


def _cpu_kernels(op: str, x: Tensor, dim: int) -> ModuleType | None:
    """:mod:`softmaxkit.kernels.numba` when the dispatcher sends this CPU tensor there (float32/float64, class
    dimension last and not empty; ``backend`` and its size threshold as for NumPy arrays) and it is not traced,
    else None.

    The kernels read the tensor through a NumPy view of its memory (no copy when its rows are contiguous) and
    their results become tensors without a copy (``torch.from_numpy``)."""
    if x.ndim == 0 or x.shape[-1] == 0 or _engine(op, x, dim) != "numba" or _traced(x):
        return None
    from ..kernels import numba as kernels

    return kernels


def _save(ctx: Any, *tensors: Tensor | None) -> None:
    """Keep ``tensors`` for backward and for the forward-mode ``jvp`` alike."""
    ctx.save_for_backward(*tensors)
    ctx.save_for_forward(*tensors)


Function = type[torch.autograd.Function]


def _pick(function: tuple[Function, Function]) -> Any:
    """``function[0]``; under ``torch.compile``, ``function[1]``: the same Function without its ``jvp``, which
    Dynamo cannot trace (torch 2.13: "Unsupported custom jvp"; no forward-mode AD inside a compiled graph)."""
    return function[1 if torch.compiler.is_compiling() else 0]


def _apply(function: tuple[Function, Function], *args: Any) -> Tensor:
    out: Tensor = _pick(function).apply(*args)
    return out


def _traceable(function: Function) -> tuple[Function, Function]:
    """``function`` and its jvp-free twin for :func:`_apply` (the same name, so the same ``grad_fn`` name)."""
    twin = type(function.__name__, (function,), {"jvp": staticmethod(torch.autograd.Function.jvp)})
    return function, twin


# --------------------------------------------------------------------------------------------- softmax
# The Functions below are written in the ``setup_context`` style with ``generate_vmap_rule = True``: forward,
# backward and jvp are plain torch code that vmap can batch, so that ``torch.func.grad``, ``vmap`` (per-sample
# gradients), ``jacrev``, ``jacfwd`` and ``torch.autograd.forward_ad`` compose with them.
class _Softmax(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, dim: int) -> Tensor:
        k = _kernel_rows("softmax", x, dim)
        if k is not None:
            out: Tensor = k[0].softmax(k[1]).view(x.shape)
            return out
        cpu = _cpu_kernels("softmax", x, dim)
        if cpu is not None:
            return torch.from_numpy(cpu.softmax(x.detach().numpy(), 1.0, False))
        work = _core.compute_dtype(x.dtype, "input")
        p = torch.softmax(x, dim, dtype=work)
        if x.shape[dim] > 0:  # a fully masked row has no distribution: zeros, not nan
            p = torch.where(x.amax(dim, keepdim=True) == -_INF, 0.0, p)
        return p.to(_core.result_dtype(x.dtype, "input"))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, int], output: Tensor) -> None:
        x, dim = inputs
        k = _kernel_rows("softmax", x, dim)
        ctx.dim, ctx.kernels = dim, None if k is None else k[0]
        _save(ctx, output)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (out,) = ctx.saved_tensors
        if ctx.kernels is not None and not torch.is_grad_enabled():
            g_rows = _grad_rows(grad.to(out.dtype), out.shape[-1])
            dx: Tensor = ctx.kernels.softmax_backward(out.view(-1, out.shape[-1]), g_rows)
            return dx.view(out.shape), None
        p = _core.to_compute(out)
        g = grad.to(p.dtype)
        dx = p * (g - (g * p).sum(ctx.dim, keepdim=True))
        return dx.to(out.dtype), None

    @staticmethod
    def jvp(ctx: Any, tangent: Tensor, _dim: None) -> Tensor:
        (out,) = ctx.saved_tensors
        p = _core.to_compute(out)
        t = torch.where(p == 0, 0.0, tangent.to(p.dtype))  # masked entries are the constant 0
        return (p * (t - (t * p).sum(ctx.dim, keepdim=True))).to(out.dtype)


_SOFTMAX = _traceable(_Softmax)


class _LogSoftmax(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, dim: int) -> Tensor:
        k = _kernel_rows("log_softmax", x, dim)
        if k is not None:
            out: Tensor = k[0].softmax(k[1], log=True).view(x.shape)
            return out
        cpu = _cpu_kernels("log_softmax", x, dim)
        if cpu is not None:
            return torch.from_numpy(cpu.softmax(x.detach().numpy(), 1.0, True))
        z = _core.to_compute(x, "input")
        if z.shape[dim] == 0:  # an empty result, never the input itself (which setup_context could not save)
            return torch.empty_like(x, dtype=_core.result_dtype(x.dtype, "input"))
        lse, d = _core.row_lse(z, dim)
        z = torch.where(_core.bad_rows(lse.m), math.nan, d - lse.log_norm)
        return z.to(_core.result_dtype(x.dtype, "input"))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, int], output: Tensor) -> None:
        x, dim = inputs
        k = _kernel_rows("log_softmax", x, dim)
        ctx.dim, ctx.kernels = dim, None if k is None else k[0]
        _save(ctx, output)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (out,) = ctx.saved_tensors
        if ctx.kernels is not None and not torch.is_grad_enabled():
            g_rows = _grad_rows(grad.to(out.dtype), out.shape[-1])
            dlog: Tensor = ctx.kernels.softmax_backward(out.view(-1, out.shape[-1]), g_rows, log=True)
            return dlog.view(out.shape), None
        y = _core.to_compute(out)
        active = y != -_INF  # masked outputs are the constant -inf: their cotangent is never read
        g = torch.where(active, grad.to(y.dtype), 0.0)
        dx = torch.where(active, g - torch.exp(y) * g.sum(ctx.dim, keepdim=True), 0.0)
        return dx.to(out.dtype), None

    @staticmethod
    def jvp(ctx: Any, tangent: Tensor, _dim: None) -> Tensor:
        (out,) = ctx.saved_tensors
        y = _core.to_compute(out)
        active = y != -_INF  # masked entries are the constant -inf: their tangent is 0 and never read
        t = torch.where(active, tangent.to(y.dtype), 0.0)
        return torch.where(active, t - (torch.exp(y) * t).sum(ctx.dim, keepdim=True), 0.0).to(out.dtype)


_LOGSOFTMAX = _traceable(_LogSoftmax)


class _LogSumExp(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, dim: int, keepdim: bool) -> Tensor:
        k = _kernel_rows("logsumexp", x, dim)
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
        k = _kernel_rows("logsumexp", x, dim)
        ctx.dim, ctx.keepdim, ctx.kernels = dim, keepdim, None if k is None else k[0]
        _save(ctx, x, output)

    @staticmethod
    def _softmax(ctx: Any, x: Tensor, out: Tensor) -> tuple[Tensor, Tensor]:
        """The softmax of ``x`` in the compute dtype (0 for rows whose log-sum-exp is ``-inf``) and that mask."""
        z = _core.to_compute(x, "input")
        value = out if ctx.keepdim else out.unsqueeze(ctx.dim)
        masked = value == -_INF  # every entry -inf (or the axis is empty): gradient 0, not exp(-inf + inf)
        return torch.softmax(torch.where(masked, 0.0, z), ctx.dim), masked

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        x, out = ctx.saved_tensors
        rows = None if ctx.kernels is None or torch.is_grad_enabled() else _rows(x, ctx.dim)
        if rows is not None:
            dx: Tensor = ctx.kernels.logsumexp_backward(rows, grad.reshape(-1))
            return dx.view(x.shape), None, None
        p, masked = _LogSumExp._softmax(ctx, x, out)
        g = grad.to(p.dtype)
        if not ctx.keepdim:
            g = g.unsqueeze(ctx.dim)
        return torch.where(masked, 0.0, g * p).to(x.dtype), None, None

    @staticmethod
    def jvp(ctx: Any, tangent: Tensor, _dim: None, _keepdim: None) -> Tensor:
        x, out = ctx.saved_tensors
        p, masked = _LogSumExp._softmax(ctx, x, out)
        t = torch.where(p == 0, 0.0, tangent.to(p.dtype))
        dv = torch.where(masked, 0.0, (p * t).sum(ctx.dim, keepdim=True))
        return (dv if ctx.keepdim else dv.squeeze(ctx.dim)).to(out.dtype)


_LOGSUMEXP = _traceable(_LogSumExp)


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: torch.dtype | None = None) -> Tensor:
    r"""Softmax along ``dim``, as ``torch.nn.functional.softmax``, with our special values.

    .. math:: \operatorname{softmax}(x)_i = \frac{e^{x_i - m}}{\sum_j e^{x_j - m}}, \qquad m = \max_j x_j

    Parameters
    ----------
    input : Tensor
        Real logits; float16/bfloat16 are computed in float32 and returned in their own dtype.
    dim : int, optional
        The class dimension. ``None`` picks torch's legacy default with torch's deprecation warning.
    _stacklevel : int
        As torch's (where the implicit-``dim`` warning points).
    dtype : torch.dtype, optional
        Cast ``input`` to it first, as torch does.

    Returns
    -------
    Tensor
        ``input``'s shape and (floating) dtype; rows sum to one. Differentiable twice.

    Raises
    ------
    TypeError
        ``input`` is not a tensor, or is boolean or complex.
    ValueError
        ``dim`` out of range.

    Special values
    --------------
    ==============================  =====================================
    row                             result (gradient)
    ==============================  =====================================
    ``-inf`` entry                  exactly 0 there (0)
    all ``-inf``                    zeros (zeros); torch: nan
    contains ``nan`` or ``+inf``    ``nan`` for that row only
    float16 / bfloat16              computed in float32, returned as is
    ==============================  =====================================

    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import softmax
    >>> softmax(torch.tensor([[0.0, 0.0], [-float("inf"), -float("inf")]]), dim=1)
    tensor([[0.5000, 0.5000],
            [0.0000, 0.0000]])
    """
    x = _tensor(input, "input")
    d = _dim(x, dim, "softmax", _stacklevel)
    if dtype is not None:
        x = x.to(dtype)
    if x.ndim == 0:
        return _apply(_SOFTMAX, x.unsqueeze(0), 0).squeeze(0)
    return _apply(_SOFTMAX, x, d)


def log_softmax(
    input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: torch.dtype | None = None
) -> Tensor:
    r"""Log-softmax along ``dim``, as ``torch.nn.functional.log_softmax``, accurate where softmax underflows.

    .. math:: \log \operatorname{softmax}(x)_i = (x_i - m) - \operatorname{log1p}(s),
              \qquad s = \sum_{j \ne j^*} e^{x_j - m}

    with :math:`j^*` a position of the maximum :math:`m` (Blanchard, Higham & Higham 2021): the log-probability
    of a dominant class keeps its relative accuracy (``log1p``), and nothing is ever formed as
    :math:`x_i - \operatorname{lse}(x)`.

    Parameters
    ----------
    input : Tensor
        Real logits.
    dim, _stacklevel, dtype
        As for :func:`softmax`.

    Returns
    -------
    Tensor
        ``input``'s shape and (floating) dtype, every entry ``<= 0``. Differentiable twice.

    Raises
    ------
    TypeError, ValueError
        As :func:`softmax`.

    Special values
    --------------
    ==============================  =====================================
    row                             result (gradient)
    ==============================  =====================================
    ``-inf`` entry                  ``-inf`` there (0)
    all ``-inf``                    ``-inf`` (zeros); torch: nan
    contains ``nan`` or ``+inf``    ``nan`` for that row only
    float16 / bfloat16              computed in float32, returned as is
    ==============================  =====================================

    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import log_softmax
    >>> log_softmax(torch.tensor([0.0, -40.0], dtype=torch.float64), dim=0)  # log1p keeps 4.2e-18
    tensor([-4.2484e-18, -4.0000e+01], dtype=torch.float64)
    """
    x = _tensor(input, "input")
    d = _dim(x, dim, "log_softmax", _stacklevel)
    if dtype is not None:
        x = x.to(dtype)
    if x.ndim == 0:
        return _apply(_LOGSOFTMAX, x.unsqueeze(0), 0).squeeze(0)
    return _apply(_LOGSOFTMAX, x, d)


def logsumexp(input: Tensor, dim: int | tuple[int, ...] | list[int], keepdim: bool = False) -> Tensor:
    r"""Log of the sum of exponentials over ``dim``, as ``torch.logsumexp``.

    .. math:: \operatorname{lse}(x) = m + \operatorname{log1p}\Bigl(\sum_{j \ne j^*} e^{x_j - m}\Bigr)

    The gradient is the softmax, recomputed in backward; for a row of all ``-inf`` it is 0 (torch: nan).

    Parameters
    ----------
    input : Tensor
        Real values.
    dim : int or tuple of ints
        The dimension(s) to reduce.
    keepdim : bool
        Keep the reduced dimensions with length 1.

    Returns
    -------
    Tensor
        ``input``'s shape without ``dim``; differentiable twice.

    Raises
    ------
    TypeError, ValueError
        As :func:`softmax`; a repeated dimension.

    Special values
    --------------
    ==============================  =====================================
    row                             result (gradient)
    ==============================  =====================================
    all ``-inf`` / empty            ``-inf`` (zeros); torch's gradient: nan
    contains ``nan``                ``nan``
    contains ``+inf``               ``+inf``, its exact value
    float16 / bfloat16              computed in float32, returned as is
    ==============================  =====================================

    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import logsumexp
    >>> logsumexp(torch.tensor([1000.0, 1000.0], dtype=torch.float64), dim=0)
    tensor(1000.6931, dtype=torch.float64)
    """
    x = _tensor(input, "input")
    dims = [dim] if not isinstance(dim, (tuple, list)) else list(dim)
    norm = [_validate.axis(d, max(x.ndim, 1), "dim") for d in dims]
    if len(set(norm)) != len(norm):
        raise ValueError(f"dim holds a repeated dimension: {dim!r}")
    if x.ndim == 0:
        out = _apply(_LOGSUMEXP, x.unsqueeze(0), 0, False)
        return out.reshape(())
    if len(norm) == 1:
        return _apply(_LOGSUMEXP, x, norm[0], keepdim)
    rest = [i for i in range(x.ndim) if i not in norm]
    flat = x.permute(*rest, *norm).reshape(*[x.shape[i] for i in rest], -1)
    out = _apply(_LOGSUMEXP, flat, flat.ndim - 1, False)
    if keepdim:
        out = out.reshape([1 if i in norm else x.shape[i] for i in range(x.ndim)])
    return out


# --------------------------------------------------------------------------------------- cross-entropy
class _CrossEntropy(torch.autograd.Function):
    """Outputs ``(loss, m, log_norm, denom, n_rows, fused, qsum)``; all but the loss are not differentiable:
    the saved row statistics, and on the Triton path the gradient written by the forward and its ``qsum``
    (empty tensors elsewhere)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        logits: Tensor, target: Tensor, weight: Tensor | None, dim: int, opts: Options, fuse: bool, cpu: bool
    ) -> tuple[Tensor, ...]:
        if cpu:
            out = _CrossEntropy._cpu_forward(logits, target, weight, opts, fuse)
            if out is not None:
                return out
        k = _kernel_rows("cross_entropy", logits, dim)
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
    def _cpu_forward(
        logits: Tensor, target: Tensor, weight: Tensor | None, opts: Options, fuse: bool
    ) -> tuple[Tensor, ...] | None:
        """The numba kernels on NumPy views: the loss, and with ``fuse`` the gradient from the same pass (for
        ``none``, each row's own). No row statistics (empty ``m``, ``log_norm``): a backward without that
        gradient recomputes them. None for the one case the kernels leave to the reference."""
        from ..kernels import numba as kernels

        t = target.detach().to(logits.dtype) if target.is_floating_point() else target
        w = None if weight is None else weight.detach().to(logits.dtype).numpy()
        res = kernels.cross_entropy(
            logits.detach().numpy(), t.numpy(), w, opts.ignore_index, opts.label_smoothing, opts.reduction,
            opts.z_loss, opts.softcap, fuse,
        )  # fmt: skip
        if res is None:
            return None
        loss, grad = res
        acc = _core.accumulator(logits)
        if target.is_floating_point():
            denom = torch.tensor(float(target.numel() // max(target.shape[-1], 1)), dtype=acc)
            n_rows = denom.clone()
        else:
            valid = target != opts.ignore_index
            w_y = valid.to(acc) if weight is None else torch.where(valid, weight.to(acc)[target.where(valid, 0)], 0.0)
            denom, n_rows = w_y.sum(), valid.sum(dtype=acc)
        none = logits.new_empty(0)
        fused = none.clone() if grad is None else torch.from_numpy(grad)
        return torch.from_numpy(loss), none, none.clone(), denom, n_rows, fused, none.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        logits, target, weight, dim, opts, _, cpu = inputs
        _, m, log_norm, denom, n_rows, fused, qsum = output
        ctx.mark_non_differentiable(m, log_norm, denom, n_rows, fused, qsum)
        ctx.cpu_grad = fused if cpu and fused.numel() else None
        k = _kernel_rows("cross_entropy", logits, dim)
        ctx.kernels = None if k is None else k[0]
        ctx.grad = fused if ctx.kernels is not None and fused.numel() else None
        ctx.qsum = qsum if ctx.kernels is not None and qsum.numel() else None
        ctx.dim, ctx.opts = dim, opts
        _save(ctx, logits, target, weight, m, log_norm, denom, n_rows)

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
            t = _rows(target, target.ndim - 1)
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
    def backward(ctx: Any, grad: Tensor, *_: Any) -> tuple[Tensor | None, Tensor | None, None, None, None, None, None]:
        logits, target, weight, m, log_norm, denom, n_rows = ctx.saved_tensors
        want_t = bool(ctx.needs_input_grad[1])
        dz: Tensor | None
        if ctx.cpu_grad is not None and not torch.is_grad_enabled() and not want_t:
            dz, ctx.cpu_grad = ctx.cpu_grad, None  # handed over (a second backward recomputes)
            if ctx.opts.reduction == "none":
                return dz.mul_(grad.to(dz.dtype).unsqueeze(-1)), None, None, None, None, None, None
            return (dz if bool(grad == 1) else dz.mul_(grad.to(dz.dtype))), None, None, None, None, None, None
        if ctx.kernels is not None and not torch.is_grad_enabled() and not want_t:
            dz = _CrossEntropy._kernel_backward(ctx, logits, target, weight, m, log_norm, denom, n_rows, grad)
            return dz, None, None, None, None, None, None
        z = _core.to_compute(logits)
        # A double backward differentiates this function: then the lse is recomputed by differentiable ops (and
        # so it is where the forward kept none: the CPU kernels' path).
        lse = None if torch.is_grad_enabled() or m.numel() == 0 else RowLse(m, log_norm)
        dz, dt = _core.ce_backward(z, target, weight, ctx.dim, ctx.opts, lse, denom, n_rows, grad, want_t)
        return (
            dz.to(logits.dtype) if ctx.needs_input_grad[0] else None,
            None if dt is None else dt.to(target.dtype),
            None,
            None,
            None,
            None,
            None,
        )

    @staticmethod
    def jvp(ctx: Any, t_logits: Tensor | None, t_target: Tensor | None, *_: Any) -> tuple[Tensor | None, ...]:
        """The loss is a sum of per-row terms, so its tangent is :math:`\\sum \\nabla\\ell \\cdot t` with the
        gradient of the backward for an upstream gradient of ones, summed per row for ``reduction="none"``."""
        logits, target, weight, m, log_norm, denom, n_rows = ctx.saved_tensors
        opts: Options = ctx.opts
        z = _core.to_compute(logits)
        want_t = t_target is not None and target.is_floating_point()
        ones = torch.ones_like(z.sum(ctx.dim)) if opts.reduction == "none" else z.new_ones(())
        lse = None if m.numel() == 0 else RowLse(m, log_norm)  # none kept by the CPU kernels' path: recomputed
        dz, dt = _core.ce_backward(z, target, weight, ctx.dim, opts, lse, denom, n_rows, ones, want_t)
        per_entry = torch.zeros_like(z)
        if t_logits is not None:  # 0 where the loss does not read the entry (ignored rows), whatever the tangent
            per_entry = per_entry + torch.where(dz == 0, 0.0, dz * t_logits.to(z.dtype))
        if dt is not None and t_target is not None:
            per_entry = per_entry + torch.where(dt == 0, 0.0, dt * t_target.to(z.dtype))
        if opts.reduction == "none":
            dloss = per_entry.sum(ctx.dim)
        else:
            dloss = per_entry.sum(dtype=_core.accumulator(per_entry))
        return dloss.to(_core.result_dtype(logits.dtype)), None, None, None, None, None, None

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


_CROSSENTROPY = _traceable(_CrossEntropy)


def _check_target(x: Tensor, target: Any, dim: int, opts: Options, check_values: bool = True) -> Tensor:
    t = _tensor(target, "target")
    if t.dtype == torch.bool or t.dtype.is_complex:
        raise TypeError(f"target must hold integer class indices or floating probabilities; got dtype {t.dtype}")
    batch = tuple(s for i, s in enumerate(x.shape) if i != dim)
    if t.is_floating_point():
        if tuple(t.shape) != tuple(x.shape):
            raise ValueError(
                f"target (probabilities) must have the input's shape {tuple(x.shape)}; got shape {tuple(t.shape)}"
            )
        if opts.ignore_index != -100:
            raise ValueError(
                f"ignore_index={opts.ignore_index} has no meaning for probability targets; leave it at -100"
            )
        if check_values:
            _validate.probabilities(_xp, t)
        return t
    _validate.index_target(
        _xp, t, batch, f"the input's shape without dimension {dim}, {batch}", f"input shape {tuple(x.shape)}"
    )
    if check_values:
        _core.check_labels(t, x.shape[dim], opts.ignore_index, f"dimension {dim}")
    return t


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: float | None = None,
    check_target: bool = True,
) -> Tensor:
    r"""Cross-entropy from logits, as ``torch.nn.functional.cross_entropy``, plus ``z_loss`` and ``softcap``.

    For logits :math:`z` (class dimension 1, or 0 for an unbatched ``(C,)`` input) and class index :math:`y`:

    .. math:: \ell = (1-\varepsilon)\, w_y\,(\operatorname{lse}(z) - z_y)
                   + \frac{\varepsilon}{C}\sum_c w_c\,(\operatorname{lse}(z) - z_c)
                   + \lambda \operatorname{lse}(z)^2

    (probability targets :math:`t`: :math:`\sum_c w_c q_c (\operatorname{lse} - z_c)` with
    :math:`q = (1-\varepsilon)t + \varepsilon/C`), with ``softcap`` :math:`c` replacing :math:`z` by
    :math:`c\tanh(z/c)` first. ``mean`` divides by :math:`\sum_n w_{y_n}` over the rows not ignored (by the row
    count for probability targets), and the z-loss by the number of rows not ignored, as
    :func:`softmaxkit.cross_entropy` (whose module notes hold the derivations).

    Only the per-row log-sum-exp is kept for backward; the backward recomputes the softmax. See the module
    notes.

    Parameters
    ----------
    input : Tensor
        Logits, ``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)``. float16/bfloat16 are computed in float32.
    target : Tensor
        Class indices (integer, the input's shape without ``C``) or class probabilities (floating, the input's
        shape, finite and ``>= 0``; differentiable).
    weight : Tensor, optional
        Per-class weights ``(C,)``, ``>= 0``.
    size_average, reduce
        torch's deprecated arguments, honoured as torch does (with its warning).
    ignore_index : int
        Class-index targets equal to it contribute nothing (loss, denominator, smoothing, gradient).
    reduction : {"mean", "sum", "none"}
    label_smoothing : float
        :math:`\varepsilon \in [0, 1]`.
    z_loss : float
        :math:`\lambda \ge 0` (PaLM, Chowdhery et al. 2022): adds :math:`\lambda \operatorname{lse}^2` per row not
        ignored, not weighted, averaged over the rows not ignored under ``mean``.
    softcap : float, optional
        :math:`c > 0` (Gemma 2): logits become :math:`c \tanh(z/c)`; ``-inf`` stays ``-inf``.
    check_target : bool
        Check the values of ``target`` before computing (class indices in ``[0, C)`` or ``ignore_index``;
        probabilities finite and ``>= 0``; class weights ``>= 0``), raising ``ValueError`` naming the first bad
        one. The check costs one device-to-host transfer (a synchronisation on CUDA) per call. ``False`` skips
        it for trusted targets. The check is also skipped, whatever this says, where it would break a graph or
        a transform: inside ``torch.compile`` and for a target batched by ``torch.func.vmap``. Unchecked, a
        class index out of range gives a ``nan`` loss and gradient for its row (so a ``nan`` ``mean``/``sum``),
        on every path, and nothing is ever read outside the row.

    Returns
    -------
    Tensor
        0-d for ``mean``/``sum``, the target's batch shape for ``none``; the input's (floating) dtype.

    Raises
    ------
    TypeError
        ``input`` or ``target`` not a tensor; boolean target; a non-numeric option.
    ValueError
        A class index outside ``[0, C)`` (value and position named); shapes that do not match; negative or nan
        ``weight``; bad probabilities; an unknown ``reduction``; ``label_smoothing`` outside ``[0, 1]``;
        ``z_loss < 0``; ``softcap`` not a number in float32's normal range (about 1.2e-38 to 3.4e38).

    Special values
    --------------
    ======================================  ==============================================
    case                                    loss (gradient)
    ======================================  ==============================================
    every label ignored, ``mean``           0 (zeros); torch: nan
    zero total weight, ``mean``             0 (zeros); torch: nan
    target's logit is ``-inf``              ``inf`` (finite: :math:`p - q`)
    row with ``nan`` / ``+inf``             ``nan`` for that row
    ignored row holding ``nan``             0 (zeros): ignored rows are never read
    float16 / bfloat16                      computed in float32, returned as is
    under ``torch.autocast``                float16 / bfloat16 logits cast to float32 first,
                                            float32 returned, as torch does
    unchecked class index out of range      ``nan`` for that row (see ``check_target``)
    ======================================  ==============================================

    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import cross_entropy
    >>> z = torch.tensor([[5.0, 2.0, -1.0, 3.0]], requires_grad=True)
    >>> loss = cross_entropy(z, torch.tensor([0]))
    >>> loss
    tensor(0.1719, grad_fn=<_CrossEntropyBackward>)
    >>> loss.backward(); z.grad  # p - y
    tensor([[-0.1580,  0.0419,  0.0021,  0.1140]])
    >>> cross_entropy(z, torch.tensor([-100]))  # every label ignored: 0, not nan
    tensor(0., grad_fn=<_CrossEntropyBackward>)
    """
    x = _tensor(input, "input")
    if size_average is not None or reduce is not None:
        reduction = torch.nn._reduction.legacy_get_string(size_average, reduce)
    opts = _core.options(ignore_index, label_smoothing, reduction, z_loss, softcap)
    if x.ndim == 0:
        raise ValueError("input must have the class dimension: shape (C,), (N, C) or (N, C, d1, ...); got a 0-d tensor")
    _core.compute_dtype(x.dtype, "input")
    if x.dtype in (torch.float16, torch.bfloat16) and torch.is_autocast_enabled(x.device.type):
        x = x.float()  # torch's autocast runs cross-entropy in float32 and returns float32: so do we
    dim = 1 if x.ndim >= 2 else 0
    t = _check_target(x, target, dim, opts, bool(check_target) and not _traced(_tensor(target, "target")))
    if weight is not None:
        w = _tensor(weight, "weight")
        _core.check_weight(w, x.shape[dim], values=not _traced(w))
    if x.shape[dim] == 0:  # no classes: every label was ignored (checked above)
        zero = x.sum(dim) * 0.0
        return zero if opts.reduction == "none" else zero.sum()
    target_grad = t.is_floating_point() and t.requires_grad
    fuse = torch.is_grad_enabled() and x.requires_grad and not target_grad
    # the CPU kernels index the row with the label unchecked: only labels checked here may go there
    checked = t.is_floating_point() or (bool(check_target) and not _traced(t))
    cpu = checked and not target_grad and _cpu_kernels("cross_entropy", x, dim) is not None
    loss: Tensor = _pick(_CROSSENTROPY).apply(x, t, weight, dim, opts, fuse, cpu)[0]
    return loss

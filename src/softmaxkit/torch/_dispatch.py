"""What the Functions of :mod:`softmaxkit.torch.functional` share: argument checks, and which engine runs a call
(Triton for CUDA tensors, the numba kernels for CPU ones, else torch code) with the transform and compile rules."""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import torch

from .. import _backend

Tensor = torch.Tensor
Function = type[torch.autograd.Function]


def checked_tensor(x: Any, name: str) -> Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
    if x.layout != torch.strided:
        raise TypeError(f"{name} is a sparse tensor ({x.layout}); pass {name}.to_dense()")
    return x


# -------------------------------------------------------------------------------------- Triton dispatch
def rows_view(x: Tensor, dim: int) -> Tensor | None:
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


def grad_rows(grad: Tensor, n_cols: int) -> Tensor:
    """The upstream gradient as ``(rows, C)`` with contiguous rows (a copy only when it is not already)."""
    g = rows_view(grad, grad.ndim - 1) if grad.ndim else None
    return g if g is not None else grad.contiguous().view(-1, n_cols)


def in_transform(x: Tensor) -> bool:
    """Whether ``x`` is a tensor of a :mod:`torch.func` transform (vmap's batched tensors and their kin): such a
    tensor takes the torch code (a kernel launch needs the plain tensor) and allows no data-dependent check."""
    return bool(torch._C._functorch.is_functorch_wrapped_tensor(x))


def traced(*xs: Tensor) -> bool:
    """Whether this call is traced (``torch.compile``, or a :mod:`torch.func` transform of one of ``xs``): then
    no check may read a tensor's values on the host."""
    return bool(torch.compiler.is_compiling()) or any(in_transform(x) for x in xs)


def engine(op: str, x: Tensor, dim: int) -> str:
    """The dispatcher's engine for this call (:func:`softmaxkit._backend.choose`): ``triton`` (a CUDA tensor of a
    dtype the kernels take, class dimension last with contiguous rows, Triton installed), ``numba`` (a CPU
    float32/float64 tensor, class dimension last), else ``torch``; or the one ``softmaxkit.backend(...)`` names.
    Under ``torch.compile`` the choice is ``auto``'s (Dynamo cannot read the context, ``ContextVar.get``, which
    would break the graph), and a CPU tensor takes the torch code (no kernel runs on a traced tensor)."""
    compiling = torch.compiler.is_compiling()
    if compiling and x.device.type == "cpu":
        return "torch"
    keyword = "auto" if compiling else None
    return _backend.choose(op, x, keyword, front="torch", rows=rows_view(x, dim) is not None, last=dim == x.ndim - 1)


def kernel_rows(op: str, x: Tensor, dim: int) -> tuple[ModuleType, Tensor] | None:
    """The Triton module and ``x`` as ``(rows, C)`` when the Triton kernels take this call, else None. A tensor of
    a :mod:`torch.func` transform always takes the torch code (a kernel launch needs the plain tensor)."""
    if engine(op, x, dim) != "triton" or in_transform(x):
        return None
    rows = rows_view(x, dim)
    if rows is None:  # (the dispatcher saw to it)
        return None
    from ..kernels.triton import ops as gpu

    return gpu, rows


def cpu_kernels(op: str, x: Tensor, dim: int) -> ModuleType | None:
    """:mod:`softmaxkit.kernels.numba` when the dispatcher sends this CPU tensor there (float32/float64, class
    dimension last and not empty; ``backend`` and its size threshold as for NumPy arrays) and it is not traced,
    else None (the family's Functions ask; softmax, log_softmax, logsumexp and CE take :mod:`._cpu`).

    The kernels read the tensor through a NumPy view of its memory (no copy when its rows are contiguous) and
    their results become tensors without a copy (``torch.from_numpy``)."""
    if x.ndim == 0 or x.shape[-1] == 0 or engine(op, x, dim) != "numba" or traced(x):
        return None
    from ..kernels import numba as kernels

    return kernels


def save(ctx: Any, *tensors: Tensor | None) -> None:
    """Keep ``tensors`` for backward and for the forward-mode ``jvp`` alike."""
    ctx.save_for_backward(*tensors)
    ctx.save_for_forward(*tensors)


def pick(function: tuple[Function, Function]) -> Any:
    """``function[0]``; under ``torch.compile``, ``function[1]``: the same Function without its ``jvp``, which
    Dynamo cannot trace (torch 2.13: "Unsupported custom jvp"; no forward-mode AD inside a compiled graph)."""
    return function[1 if torch.compiler.is_compiling() else 0]


def apply(function: tuple[Function, Function], *args: Any) -> Tensor:
    out: Tensor = pick(function).apply(*args)
    return out


def traceable(function: Function) -> tuple[Function, Function]:
    """``function`` and its jvp-free twin for :func:`apply` (the same name, so the same ``grad_fn`` name)."""
    twin = type(function.__name__, (function,), {"jvp": staticmethod(torch.autograd.Function.jvp)})
    return function, twin

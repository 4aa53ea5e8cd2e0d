r"""The Triton path of :mod:`softmaxkit.torch._family` (sparsemax, 1.5-entmax, α-entmax): when it runs, and the
glue between the Functions' tensors (any shape, the class dimension anywhere, ``where``) and the row kernels of
:mod:`softmaxkit.kernels.triton.family` (imported lazily, only when a kernel is about to run).

The forward goes to the kernels when the dispatcher (:func:`softmaxkit._backend.choose`) says ``triton``: CUDA
tensors of float32/float16/bfloat16 under ``auto``, or ``softmaxkit.backend("triton")`` (which also takes CPU
tensors under ``TRITON_INTERPRET=1``, Triton's interpreter: the tests run them so). The class dimension is moved
last and the rows made contiguous (a copy only when they are not); ``where`` becomes ``-inf``. The backward
(:math:`J^\top g` from the output, and the gradient of a tensor :math:`\alpha`) runs on the kernels for tensors
the kernels take, unless autograd records it (a double backward: the torch operations of
:mod:`softmaxkit.torch._family` then run, which autograd can differentiate), it is traced (``torch.compile``),
or its tensors belong to a :mod:`torch.func` transform.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
import torch

from .. import _backend, _validate
from . import _dispatch

__all__ = ["KERNELS", "backward_on_kernels", "bisect_backward", "mapping", "product"]

Tensor = torch.Tensor

KERNELS = ("sparsemax", "entmax15", "entmax_bisect")
"""The mappings of the family that have Triton kernels."""


def _rows(x: Tensor, dim: int) -> tuple[Tensor, torch.Size]:
    """``x`` as ``(rows, C)`` with the class dimension last and contiguous rows, and the shape to restore."""
    moved = x.movedim(dim, -1)
    rows = moved.reshape(math.prod(moved.shape[:-1]), moved.shape[-1])
    if rows.shape[1] > 1 and rows.stride(1) != 1:
        rows = rows.contiguous()
    return rows, moved.shape


def _back(out: Tensor, shape: torch.Size, dim: int) -> Tensor:
    return out.reshape(shape).movedim(-1, dim)


def _alpha_rows(alpha: Tensor, x: Tensor, dim: int) -> Tensor:
    """A tensor α (broadcastable to ``x`` with ``dim`` of length 1) as one float32 value per row of :func:`_rows`."""
    shape = list(x.shape)
    shape[dim] = 1
    a = alpha.detach().to(device=x.device, dtype=torch.float32)
    return a.reshape((1,) * (x.ndim - a.ndim) + tuple(a.shape)).expand(shape).movedim(dim, -1).reshape(-1)


def _alpha_value(alpha: Any) -> float:
    a = _validate.real_scalar(alpha, "alpha")
    if not (math.isfinite(a) and a >= 1.0):
        raise ValueError(f"alpha must be a finite number >= 1 (1 is softmax, 2 is sparsemax); got {alpha!r}")
    return a


def mapping(name: str, x: Tensor, where: Any, dim: int, options: dict[str, Any]) -> Tensor:
    """``softmaxkit.family.<name>`` of ``x`` along ``dim`` by the kernels (no autograd); ``options``: ``alpha``
    (a float, checked here as the generic code checks it, or a tensor shaped to broadcast with ``dim`` of
    length 1, already checked) and ``n_iter`` for ``entmax_bisect``."""
    from ..kernels.triton import family as fk

    z = x.detach()
    mask = _validate.mask(array_api_compat.array_namespace(z), z, where)
    if mask is not None:
        z = torch.where(mask, z, -math.inf)
    rows, shape = _rows(z, dim)
    if name == "sparsemax":
        out = fk.sparsemax(rows)
    elif name == "entmax15":
        out = fk.entmax15(rows)
    else:
        alpha = options.get("alpha", 1.5)
        a = _alpha_rows(alpha, x, dim) if isinstance(alpha, torch.Tensor) else _alpha_value(alpha)
        n_iter = _validate.integer(options.get("n_iter", 64), "n_iter")
        if n_iter < 1:
            raise ValueError(f"n_iter must be >= 1; got {n_iter!r}")
        out = fk.entmax_bisect(rows, a, n_iter=n_iter)
    return _back(out, shape, dim)


def backward_on_kernels(p: Tensor, g: Tensor) -> bool:
    """Whether :math:`J^\\top g` from the output ``p`` runs on the kernels (module notes)."""
    if torch.is_grad_enabled() or torch.compiler.is_compiling():
        return False
    if _dispatch.in_transform(p) or _dispatch.in_transform(g) or p.dtype != g.dtype:
        return False
    mode = _backend.resolve(None)
    if mode not in ("auto", "triton") or (mode == "auto" and p.device.type != "cuda"):
        return False
    try:
        return _backend.why_not("triton", "sparsemax", p, front="torch") is None
    except ImportError:
        return False


def product(p: Tensor, g: Tensor, dim: int, alpha: float | Tensor) -> Tensor:
    """:math:`J^\\top g` (= :math:`J g`) of the α-entmax member with output ``p``, by the kernels, in ``p``'s
    dtype (``alpha`` a float, or a tensor shaped to broadcast with ``dim`` of length 1)."""
    from ..kernels.triton import family as fk

    pr, shape = _rows(p, dim)
    gr, _ = _rows(g, dim)
    if isinstance(alpha, float) and alpha == 2.0:
        dx = fk.sparsemax_backward(pr, gr)
    elif isinstance(alpha, float) and alpha == 1.5:
        dx = fk.entmax15_backward(pr, gr)
    else:
        a = _alpha_rows(alpha, p, dim) if isinstance(alpha, torch.Tensor) else alpha
        dx = fk.entmax_bisect_backward(pr, gr, a)[0]
    return _back(dx, shape, dim)


def bisect_backward(p: Tensor, g: Tensor, dim: int, alpha: Tensor, want_alpha: bool) -> tuple[Tensor, Tensor | None]:
    """:math:`J^\\top g` of α-entmax with a tensor α and, with ``want_alpha``, :math:`\\langle g, \\partial p /
    \\partial\\alpha\\rangle` along ``dim`` (float32, ``p``'s shape with ``dim`` of length 1), by the kernels."""
    from ..kernels.triton import family as fk

    pr, shape = _rows(p, dim)
    gr, _ = _rows(g, dim)
    dx, da = fk.entmax_bisect_backward(pr, gr, _alpha_rows(alpha, p, dim), want_alpha_grad=want_alpha)
    da_shape = torch.Size((*shape[:-1], 1))
    return _back(dx, shape, dim), None if da is None else _back(da, da_shape, dim)

r"""The autograd Functions of :mod:`softmaxkit.torch.family`, their forward and their derivatives.

The seam for fast kernels: :func:`forward_mapping` and :func:`forward_loss` compute every forward (today the
generic code of :mod:`softmaxkit.family`, on detached tensors), :func:`engine` says which engine runs it; the
Functions keep the analytic backward whatever computed the forward. :func:`route` is the entry of
:func:`softmaxkit._backend.route` for torch tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import array_api_compat.torch as _xp
import numpy as np
import torch

from .. import _backend, _validate
from .. import family as generic
from ..family.entmax_bisect import N_ITER
from . import _core, _dispatch, _family_triton

__all__ = [
    "EntmaxBisectAlpha",
    "Options",
    "alpha_derivative",
    "apply_bisect",
    "apply_loss",
    "apply_mapping",
    "bisect_rows",
    "check_k",
    "check_n_iter",
    "engine",
    "forward_loss",
    "forward_mapping",
    "log_softplus_product",
    "options",
    "route",
    "tsallis_product",
]

Tensor = torch.Tensor
Options = frozenset[tuple[str, Any]]
"""A call's scalar options (``alpha``, ``n_iter``, ``order``, ``eps``, ...) as ``(name, value)`` pairs: a
frozenset, one leaf for :mod:`torch.utils._pytree` (a tuple would be flattened by the vmap rules)."""

_INF = math.inf
_SAVED = object()  # a Function's argument kept in ctx.saved_tensors


# ------------------------------------------------------------------------------------------------ forward
def engine(name: str, x: Tensor) -> str:
    """The engine of this call's forward, as the dispatcher (:func:`softmaxkit._backend.choose`) picks it (it
    raises for a named engine that cannot run the call): ``"triton"``, the family's Triton kernels
    (:mod:`._family_triton`; a tensor of a :mod:`torch.func` transform takes ``"torch"``); else ``"torch"``, the
    generic code on tensors, under ``auto``, ``reference`` and ``torch``. Another name raises: no other kernels
    on this front yet."""
    keyword = "auto" if torch.compiler.is_compiling() else None
    mode = _backend.choose(name, x, keyword, front="torch")
    if mode == "triton":
        return "torch" if _dispatch.in_transform(x) else "triton"
    if mode == "torch" or _backend.resolve(keyword) == "auto":
        return "torch"
    raise ValueError(f"backend={mode!r} cannot run softmaxkit.torch.{name} on this input: it does not implement {name}")


def _on_kernels(op: str, x: Tensor, axis: int, *others: Any) -> bool:
    """Whether this call runs on NumPy views of its tensors, so that :mod:`softmaxkit.family`'s NumPy path and its
    numba kernels compute it: ``op`` has kernels (``_backend.FAMILY``), ``x`` is a CPU float32/float64 tensor that
    the dispatcher sends to ``numba`` (``backend`` and its size threshold as for NumPy arrays; it refuses what
    ``backend("numba")`` cannot run), not traced, and ``others`` (``where``, labels, weights) are CPU tensors,
    NumPy arrays or None."""
    if op not in _backend.FAMILY or _dispatch.cpu_kernels(op, x, axis) is None:
        return False
    tensors = [a for a in others if isinstance(a, Tensor)]
    return all(a.device.type == "cpu" and a.layout == torch.strided for a in tensors) and not _dispatch.traced(*tensors)


def _view(a: Any) -> Any:
    """A tensor as a NumPy view of its memory (other values as they are)."""
    return a.detach().numpy() if isinstance(a, Tensor) else a


def _tensor(a: Any) -> Tensor:
    """A NumPy result as a tensor, without a copy when it is writeable."""
    return torch.from_numpy(np.require(a, requirements="W"))


def forward_mapping(name: str, x: Tensor, where: Any, axis: int, options: Options) -> Tensor:
    """``softmaxkit.family.<name>`` of ``x`` (no autograd), on the engine of :func:`engine`; on the numba kernels
    through NumPy views where :func:`_on_kernels` says so."""
    if _on_kernels(name, x, axis, where):
        if where is None and axis == x.ndim - 1 and not options:  # nothing to prepare: straight to the kernel
            return _tensor(_backend.run_family("numba", name, _view(x)))
        return _tensor(getattr(generic, name)(_view(x), axis=axis, where=_view(where), **dict(options)))
    if engine(name, x) == "triton":
        return _family_triton.mapping(name, x, where, axis, dict(options))
    with _backend.generic(), torch.no_grad():
        out: Tensor = getattr(generic, name)(x.detach(), axis=axis, where=where, **dict(options))
    return out


def forward_loss(
    name: str, logits: Tensor, target: Any, weight: Any, axis: int, ignore_index: Any, reduction: Any, options: Options
) -> tuple[Tensor, Tensor]:
    """``softmaxkit.family.<name>_value_and_grad`` (no autograd): the loss and its gradient (on the numba kernels
    through NumPy views where :func:`_on_kernels` says so)."""
    if _on_kernels(name.removesuffix("_loss"), logits, axis, target, weight):
        loss, grad = getattr(generic, name + "_value_and_grad")(
            _view(logits), _view(target), axis=axis, weight=_view(weight), ignore_index=ignore_index,
            reduction=reduction, **dict(options),
        )  # fmt: skip
        return _tensor(loss), _tensor(grad)
    engine(name, logits)
    with _backend.generic(), torch.no_grad():
        loss, grad = getattr(generic, name + "_value_and_grad")(
            logits.detach(), target, axis=axis, weight=weight, ignore_index=ignore_index, reduction=reduction,
            **dict(options),
        )  # fmt: skip
    return loss, grad


# ------------------------------------------------------------------------------------------- derivatives
def tsallis_product(p: Tensor, v: Tensor, dim: int, alpha: float | Tensor) -> Tensor:
    r""":math:`J v = J^\top v = s \odot v - s \langle s, v\rangle / \sum_j s_j`, :math:`s = p^{2-\alpha}` on the
    support (0 off it), from the output ``p`` alone; in float32 for float16/bfloat16, returned in ``p``'s dtype."""
    if _family_triton.backward_on_kernels(p, v):
        return _family_triton.product(p, v, dim, alpha)
    q = p.float() if p.dtype in (torch.float16, torch.bfloat16) else p
    live = q > 0
    if isinstance(alpha, float) and alpha == 2.0:
        s = live.to(q.dtype)
    elif isinstance(alpha, float) and alpha == 1.5:  # (sqrt of 1 off the support: sqrt's derivative at 0 is inf)
        s = torch.where(live, torch.sqrt(torch.where(live, q, 1.0)), 0.0)
    else:  # (p = 0 replaced by 1 before the power: p**(2 - alpha) is inf there for alpha > 2)
        s = torch.where(live, torch.where(live, q, 1.0) ** (2.0 - alpha), 0.0)
    sv = torch.where(live, s * v.to(q.dtype), 0.0)  # a tangent at a masked entry is never read
    total = s.sum(dim, keepdim=True)
    mean = sv.sum(dim, keepdim=True) / torch.where(total > 0, total, 1.0)
    out = torch.where(live, sv - s * mean, 0.0)
    return torch.where(torch.isnan(q), math.nan, out).to(p.dtype)  # a bad row (p all nan): nan


def log_softplus_product(x: Tensor, out: Tensor, v: Tensor, dim: int, kind: str) -> Tensor:
    r""":math:`J^\top v` (``kind="vjp"``) or :math:`J v` of :math:`\log p`, :math:`p = \operatorname{softplus}(x) /
    \sum \operatorname{softplus}`, from ``x`` and ``out`` :math:`= \log p`. With
    :math:`r = (\log \operatorname{softplus})' = \sigma(x) / \operatorname{softplus}(x)`,
    :math:`J_{ij} = r_j (\delta_{ij} - p_j)`. Autograd through the generic code gives ``nan`` for very negative
    logits (both factors of :math:`r` underflow), where :math:`r \to 1`: below -30 it is 1 to within
    :math:`e^{-30}/2`."""
    z = _core.to_compute(x, "input")
    r = torch.where(z < -30.0, 1.0, torch.sigmoid(z) / torch.nn.functional.softplus(torch.where(z < -30.0, 0.0, z)))
    p = torch.exp(out.to(z.dtype))
    w = v.to(z.dtype)
    if kind == "vjp":
        return (r * (w - p * w.sum(dim, keepdim=True))).to(out.dtype)
    return (r * w - (p * r * w).sum(dim, keepdim=True)).to(out.dtype)


def alpha_derivative(p: Tensor, dim: int, alpha: Tensor) -> Tensor:
    r""":math:`\partial p / \partial \alpha` of α-entmax, from ``p`` alone (``alpha`` > 1, shaped to broadcast).

    On the support, :math:`p_i = u_i^{\beta}` with :math:`u_i = (\alpha-1) z_i - \tau` and
    :math:`\beta = 1/(\alpha-1)`; differentiating, using :math:`\sum_i \partial_\alpha p_i = 0` for
    :math:`\partial_\alpha \tau` and :math:`z_i = \beta(p_i^{\alpha-1} + \tau)` to remove the logits:

    .. math:: \partial_\alpha p_i = \beta^2 (p_i - \hat s_i) - \beta\,(p_i \log p_i - \hat s_i \textstyle\sum_j
              p_j \log p_j), \qquad \hat s = s / \textstyle\sum_j s_j,\ s_i = p_i^{2-\alpha},

    and 0 off the support (the formula of the ``entmax`` package's ``EntmaxBisect``, derived here).
    """
    live = p > 0
    safe = torch.where(live, p, 1.0)
    s = torch.where(live, safe ** (2.0 - alpha), 0.0)
    total = s.sum(dim, keepdim=True)
    s_hat = s / torch.where(total > 0, total, 1.0)
    plogp = torch.where(live, p * torch.log(safe), 0.0)
    beta = 1.0 / (alpha - 1.0)
    return beta * beta * (p - s_hat) - beta * (plogp - s_hat * plogp.sum(dim, keepdim=True))


def bisect_rows(x: Tensor, where: Tensor | None, dim: int, alpha: Tensor, n_iter: int) -> Tensor:
    r"""α-entmax of ``x`` along ``dim`` for a tensor ``alpha`` (> 1, broadcastable with ``dim`` of length 1):
    the bisection of :mod:`softmaxkit.family.entmax_bisect` with one :math:`\alpha` per row, the masses added in
    float64 for float32 input, the result divided by its sum. Special values as the generic one's."""
    work = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    z = x.to(work)
    if where is not None:
        z = torch.where(where, z, -_INF)
    acc = torch.float64 if work == torch.float32 and z.device.type != "mps" else work
    m = z.amax(dim, keepdim=True)
    ok = torch.isfinite(m)
    bad = ~(ok | (m == -_INF))
    a = alpha.to(work)
    w = torch.where(ok, z - torch.where(ok, m, 0.0), -_INF) * (a - 1.0)
    beta = 1.0 / (a - 1.0)
    lo = torch.full_like(m, -1.0)
    hi = torch.zeros_like(m)
    for _ in range(n_iter):
        mid = (lo + hi) / 2.0
        mass = (torch.clamp(w - mid, min=0.0) ** beta).to(acc).sum(dim, keepdim=True)
        right = mass >= 1.0  # the root lies in [mid, hi]
        lo = torch.where(right, mid, lo)
        hi = torch.where(right, hi, mid)
    q = (torch.clamp(w - lo, min=0.0) ** beta).to(acc)
    total = q.sum(dim, keepdim=True)
    p = (q / torch.where(total > 0, total, 1.0)).to(work)
    return torch.where(bad, math.nan, p).to(x.dtype)


def _sum_to(grad: Tensor, shape: torch.Size) -> Tensor:
    """``grad`` summed over the dimensions that broadcasting added to a tensor of ``shape``."""
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(tuple(range(extra)))
    kept = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(kept, keepdim=True) if kept else grad


def _save(ctx: Any, *tensors: Tensor | None) -> None:
    ctx.save_for_backward(*tensors)
    ctx.save_for_forward(*tensors)


# -------------------------------------------------------------------------------------------- Functions
@dataclass(frozen=True)
class _Mapping:
    """One mapping of the family: its generic name, and ``alpha`` when it is a member of the α-entmax family
    (its derivative then comes from the output; else from the family's ``<name>_vjp`` / ``_jvp``)."""

    name: str
    alpha: float | None = None
    log: bool = False

    def product(self, x: Tensor, where: Any, out: Tensor, v: Tensor, dim: int, options: Options, kind: str) -> Tensor:
        alpha = self.alpha if self.alpha is not None else dict(options).get("alpha")
        if alpha is not None:
            plain = kind == "vjp" and not torch.is_grad_enabled()  # (a double backward needs the torch operations)
            if plain and v.dtype == out.dtype and _on_kernels(self.name, out, dim, v):
                return _tensor(_backend.run_family_vjp("numba", self.name, _view(out), _view(v), float(alpha)))
            return tsallis_product(out, v, dim, float(alpha))
        if self.log:
            return self._log_product(x, where, out, v, dim, options, kind)
        with _backend.generic():
            dx: Tensor = getattr(generic, f"{self.name}_{kind}")(x, v, axis=dim, where=where, **dict(options))
        return dx

    def _log_product(
        self, x: Tensor, where: Any, out: Tensor, v: Tensor, dim: int, options: Options, kind: str
    ) -> Tensor:
        """The log mappings (smooth, written for accuracy, without a ``*_vjp`` of their own): the derivative of
        their generic code by :mod:`torch.func` (log softplus-normalize: :func:`log_softplus_product`), 0 at
        masked entries (``-inf`` out), where it would be ``nan``, and the cotangent there unread (as the
        family's ``*_vjp``)."""

        def log_map(t: Tensor) -> Tensor:
            with _backend.generic():
                y: Tensor = getattr(generic, self.name)(t, axis=dim, where=where, **dict(options))
            return y

        masked = out == -_INF
        v = torch.where(masked, 0.0, v)  # a cotangent (tangent) at a masked entry is never read
        if self.name == "log_softplus_normalize":
            return torch.where(masked, 0.0, log_softplus_product(x, out, v, dim, kind))
        if kind == "vjp":
            dx: Tensor = torch.func.vjp(log_map, x)[1](v)[0]
        else:
            dx = torch.func.jvp(log_map, (x,), (v,))[1]
        return torch.where(masked, 0.0, dx)


class _Map(torch.autograd.Function):
    """A mapping of the family with its analytic derivative (subclassed per mapping, for ``grad_fn``'s name)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, where: Any, dim: int, op: _Mapping, options: Options) -> Tensor:
        return forward_mapping(op.name, x, where, dim, options)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x, where, dim, op, options = inputs
        ctx.dim, ctx.op, ctx.options = dim, op, options
        ctx.where = where if not isinstance(where, torch.Tensor) else None
        tensors = (output,) if op.alpha is not None or "alpha" in dict(options) else (output, x)
        if isinstance(where, torch.Tensor):
            tensors = (*tensors, where)
        ctx.has_where = isinstance(where, torch.Tensor)
        _save(ctx, *tensors)

    @staticmethod
    def _unpack(ctx: Any) -> tuple[Tensor, Tensor | None, Any]:
        saved = ctx.saved_tensors
        where = saved[-1] if ctx.has_where else ctx.where
        x = saved[1] if len(saved) - ctx.has_where > 1 else None
        return saved[0], x, where

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None, None]:
        out, x, where = _Map._unpack(ctx)
        dx = ctx.op.product(x, where, out, grad, ctx.dim, ctx.options, "vjp")
        return dx, None, None, None, None

    @staticmethod
    @_core.jvp_rule
    def jvp(ctx: Any, tangent: Tensor, *_: Any) -> Tensor:
        out, x, where = _Map._unpack(ctx)
        dp: Tensor = ctx.op.product(x, where, out, tangent, ctx.dim, ctx.options, "jvp")
        return dp


class EntmaxBisectAlpha(torch.autograd.Function):
    """α-entmax by bisection with a tensor ``alpha`` that gets its gradient."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, alpha: Tensor, where: Tensor | None, dim: int, n_iter: int) -> Tensor:
        if engine("entmax_bisect", x) == "triton":
            return _family_triton.mapping("entmax_bisect", x, where, dim, {"alpha": alpha, "n_iter": n_iter})
        return bisect_rows(x.detach(), where, dim, alpha.detach(), n_iter)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        _, alpha, _, dim, _ = inputs
        ctx.dim, ctx.alpha_shape = dim, alpha.shape
        _save(ctx, output, alpha)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor | None, None, None, None]:
        p, alpha = ctx.saved_tensors
        if _family_triton.backward_on_kernels(p, grad):
            dx, da = _family_triton.bisect_backward(p, grad, ctx.dim, alpha, ctx.needs_input_grad[1])
            dalpha = None if da is None else _sum_to(da, ctx.alpha_shape).to(alpha.dtype)
            return dx, dalpha, None, None, None
        a = alpha.to(torch.float32 if p.dtype in (torch.float16, torch.bfloat16) else p.dtype)
        dx = tsallis_product(p, grad, ctx.dim, a)
        dalpha = None
        if ctx.needs_input_grad[1]:
            q = p.to(a.dtype)
            da = (grad.to(a.dtype) * alpha_derivative(q, ctx.dim, a)).sum(ctx.dim, keepdim=True)
            dalpha = _sum_to(da, ctx.alpha_shape).to(alpha.dtype)
        return dx, dalpha, None, None, None

    @staticmethod
    @_core.jvp_rule
    def jvp(ctx: Any, tx: Tensor, talpha: Tensor | None, *_: Any) -> Tensor:
        p, alpha = ctx.saved_tensors
        a = alpha.to(torch.float32 if p.dtype in (torch.float16, torch.bfloat16) else p.dtype)
        dp = tsallis_product(p, tx, ctx.dim, a)
        if talpha is not None:
            dp = dp + (alpha_derivative(p.to(a.dtype), ctx.dim, a) * talpha.to(a.dtype)).to(dp.dtype)
        return dp


def row_scale(target: Tensor, weight: Any, ignore_index: int, reduction: str, n_classes: int, dtype: Any) -> Tensor:
    r"""The factor :math:`c_n` of each row in the reduced loss :math:`\sum_n c_n \ell_n`: its class weight
    (1 without ``weight``), 0 for an ignored row, divided by the total for ``mean`` (all 0 when that is 0).
    ``target`` has the batch shape; its labels were checked by the forward."""
    kept = target != ignore_index
    if weight is None:
        w_y = kept.to(dtype)
    else:  # (clamping only moves the ignored labels)
        w = torch.as_tensor(weight, device=target.device).to(dtype)
        w_y = torch.where(kept, w[target.clamp(0, n_classes - 1)], 0.0)
    if reduction != "mean":
        return w_y
    denom = w_y.sum()
    return torch.where(denom > 0, w_y / torch.where(denom > 0, denom, 1.0), 0.0)


_LOSS_GRADIENTS = {
    "sparsemax_loss": "sparsemax",
    "entmax15_loss": "entmax15",
    "entmax_bisect_loss": "entmax_bisect",
    "sigmoid_cross_entropy": "sigmoid",
    "taylor_cross_entropy": "log_taylor_softmax",
    "spherical_cross_entropy": "log_spherical_softmax",
    "softplus_normalize_cross_entropy": "log_softplus_normalize",
}
"""The mapping whose derivative is each loss's second derivative: the gradient is :math:`c_n (p - e_y)` with
that mapping's :math:`p` (the Fenchel–Young losses; one-vs-rest sigmoids), or :math:`-c_n J_{\\log p}^\top e_y`
with that log mapping (the cross-entropies of the ratio mappings)."""


def differentiable_grad(logits: Tensor, target: Any, weight: Any, ctx: Any) -> Tensor:
    """Zero, with the derivative of the loss's gradient with respect to ``logits``: added to the gradient the
    forward computed, it makes the backward differentiable (Hessian-vector products, ``torch.func.hessian``)
    through the mappings' analytic derivatives."""
    dim, mapping = ctx.dim, _LOSS_GRADIENTS[ctx.name]
    options = ctx.options  # (each loss's options are its mapping's)
    t = torch.as_tensor(target, device=logits.device)
    k = logits.shape[dim]
    work = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    c = row_scale(t, weight, ctx.ignore_index, ctx.reduction, k, work.dtype).unsqueeze(dim)
    onehot = torch.zeros_like(work).scatter(dim, t.clamp(0, k - 1).unsqueeze(dim).to(torch.int64), 1.0)
    if mapping.startswith("log_"):
        out = apply_mapping(mapping, logits, None, dim, options)  # (differentiable: the product may read it)
        dg = -_MAPS[mapping].product(logits, None, out, onehot.to(logits.dtype), dim, options, "vjp").to(work.dtype)
    else:
        dg = apply_mapping(mapping, logits, None, dim, options).to(work.dtype) - onehot
    live = c != 0  # ignored rows are never read (a nan there stays out)
    full = torch.where(live, c * torch.where(live, dg, 0.0), 0.0)
    return (full - full.detach()).to(logits.dtype)


class _Loss(torch.autograd.Function):
    """A loss of the family; its backward scales the gradient that the forward computed in closed form."""

    @staticmethod
    def forward(
        logits: Tensor, target: Any, weight: Any, dim: int, ignore_index: Any, reduction: Any, name: str,
        options: Options,
    ) -> tuple[Tensor, Tensor]:  # fmt: skip
        return forward_loss(name, logits, target, weight, dim, ignore_index, reduction, options)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
        logits, target, weight, ctx.dim, ctx.ignore_index, ctx.reduction, ctx.name, ctx.options = inputs
        ctx.mark_non_differentiable(output[1])
        ctx.objects = tuple(_SAVED if isinstance(a, torch.Tensor) else a for a in (target, weight))
        tensors = [a for a in (target, weight) if isinstance(a, torch.Tensor)]
        _save(ctx, output[1], logits, *tensors)

    @staticmethod
    def backward(ctx: Any, grad: Tensor, _grad_of_grad: Any) -> tuple[Tensor, None, None, None, None, None, None, None]:
        g, logits, *tensors = ctx.saved_tensors
        if torch.is_grad_enabled() and ctx.needs_input_grad[0]:  # it may be differentiated again
            target, weight = (tensors.pop(0) if obj is _SAVED else obj for obj in ctx.objects)
            g = g + differentiable_grad(logits, target, weight, ctx)
        scale = grad.unsqueeze(ctx.dim) if ctx.reduction == "none" else grad
        return (scale.to(g.dtype) * g), None, None, None, None, None, None, None

    @staticmethod
    def vmap(
        info: Any, in_dims: tuple[int | None, ...], logits: Tensor, target: Any, weight: Any, dim: int,
        ignore_index: Any, reduction: Any, name: str, options: Options,
    ) -> tuple[tuple[Tensor, Tensor], tuple[int, int]]:  # fmt: skip
        """One loss per sample (``torch.func.vmap``; per-sample gradients with ``torch.func.grad``): the batch
        dimension joins the rows, the rows' losses (``reduction="none"``) are reduced per sample. The generic
        code reads the class indices (it checks them), which it cannot do on vmap's batched tensors."""
        if in_dims[2] is not None:
            raise ValueError(f"softmaxkit.torch.{name}: a batched weight under vmap is not supported")
        n = info.batch_size
        z = logits.movedim(in_dims[0], 0) if in_dims[0] is not None else logits.expand(n, *logits.shape)
        t = torch.as_tensor(target, device=z.device)
        t = t.movedim(in_dims[1], 0) if in_dims[1] is not None else t.expand(n, *t.shape)
        rows, grad = forward_loss(name, z, t, weight, dim + 1, ignore_index, "none", options)
        if _validate.reduction(reduction) == "none":
            return (rows, grad), (0, 0)
        within = tuple(range(1, rows.ndim))
        total = rows.to(_core.accumulator(rows)).sum(within)
        if reduction == "mean":  # over each sample's weight of the rows not ignored; nothing to average: 0
            denom = row_scale(t, weight, ignore_index, "sum", z.shape[dim + 1], total.dtype).sum(within)
            safe = torch.where(denom > 0, denom, 1.0)
            total = torch.where(denom > 0, total / safe, 0.0)
            grad = grad / safe.to(grad.dtype).reshape(n, *([1] * (grad.ndim - 1)))
        return (total.to(rows.dtype), grad), (0, 0)

    @staticmethod
    @_core.jvp_rule
    def jvp(ctx: Any, tangent: Tensor, *_: Any) -> tuple[Tensor, None]:
        g, logits, *tensors = ctx.saved_tensors
        # the saved gradient is a constant to an outer transform: add the zero that carries its derivative
        # (jacrev(jacfwd(f)), jacfwd(jacfwd(f)) differentiate this tangent)
        target, weight = (tensors.pop(0) if obj is _SAVED else obj for obj in ctx.objects)
        g = g + differentiable_grad(logits, target, weight, ctx)
        dot = g * tangent.to(g.dtype)
        dloss = dot.sum(ctx.dim) if ctx.reduction == "none" else dot.sum()
        return dloss, None


_MAPS = {
    "sparsemax": _Mapping("sparsemax", 2.0),
    "entmax15": _Mapping("entmax15", 1.5),
    "entmax_bisect": _Mapping("entmax_bisect"),
    "taylor_softmax": _Mapping("taylor_softmax"),
    "spherical_softmax": _Mapping("spherical_softmax"),
    "sigmoid": _Mapping("sigmoid"),
    "softplus_normalize": _Mapping("softplus_normalize"),
    "log_taylor_softmax": _Mapping("log_taylor_softmax", log=True),
    "log_spherical_softmax": _Mapping("log_spherical_softmax", log=True),
    "log_sigmoid": _Mapping("log_sigmoid", log=True),
    "log_softplus_normalize": _Mapping("log_softplus_normalize", log=True),
}
_FUNCTIONS: dict[str, type[torch.autograd.Function]] = {
    name: type(name.title().replace("_", ""), (_Map,), {}) for name in _MAPS
}
_LOSSES = (
    "sparsemax_loss",
    "entmax15_loss",
    "entmax_bisect_loss",
    "taylor_cross_entropy",
    "spherical_cross_entropy",
    "sigmoid_cross_entropy",
    "softplus_normalize_cross_entropy",
)
_LOSS_FUNCTIONS: dict[str, type[torch.autograd.Function]] = {
    name: type(name.title().replace("_", ""), (_Loss,), {}) for name in _LOSSES
}


def options(**values: Any) -> Options:
    """Scalar options as :data:`Options`."""
    return frozenset(values.items())


def apply_mapping(name: str, x: Tensor, where: Any, dim: Any, options: Options, dim_name: str = "dim") -> Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor; got {type(x).__name__}")
    d = _validate.axis(dim, x.ndim, dim_name)
    return _core.apply(_FUNCTIONS[name], x, where, d, _MAPS[name], options)


def apply_loss(
    name: str, logits: Tensor, target: Any, dim: Any, weight: Any, ignore_index: Any, reduction: Any,
    options: Options, dim_name: str = "dim",
) -> tuple[Tensor, Tensor]:  # fmt: skip
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor; got {type(logits).__name__}")
    d = _validate.axis(dim, logits.ndim, dim_name)
    out: tuple[Tensor, Tensor] = _LOSS_FUNCTIONS[name].apply(  # type: ignore[no-untyped-call]
        logits, target, weight, d, ignore_index, reduction, name, options
    )
    return out


def _alpha_tensor(alpha: Tensor, x: Tensor, dim: int) -> Tensor:
    """``alpha`` checked (floating, > 1 where its values may be read) and shaped to broadcast with ``dim`` of
    length 1, as the ``entmax`` package takes it."""
    if not alpha.is_floating_point():
        raise TypeError(f"alpha must be a floating tensor or a float; got a tensor of {alpha.dtype}")
    shape = list(x.shape)
    shape[dim] = 1
    a = alpha.reshape(1) if alpha.ndim == 0 else alpha
    try:
        torch.broadcast_shapes(a.shape, tuple(shape))  # type: ignore[no-untyped-call]
    except RuntimeError:
        raise ValueError(
            f"alpha with shape {tuple(alpha.shape)} does not broadcast to {tuple(shape)} (the input's shape with "
            f"dim={dim} of length 1)"
        ) from None
    traced = torch.compiler.is_compiling() or bool(torch._C._functorch.is_functorch_wrapped_tensor(alpha))
    if not traced and not bool(((a > 1.0) & torch.isfinite(a)).all()):
        raise ValueError(f"alpha must be finite and > 1 (a tensor alpha: 1 is softmax); got {alpha!r}")
    return a if a.ndim == x.ndim else a.reshape((1,) * (x.ndim - a.ndim) + tuple(a.shape))


# ------------------------------------------------------------------------------------------------- routing
def route(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``softmaxkit.family.<name>(*args, **kwargs)`` (its generic signature, ``axis=``) for a torch tensor, by
    this module's Functions; ``NotImplemented`` for a name they do not cover (the generic code then runs).

    Called by :func:`softmaxkit._backend.route`; errors name the generic function's arguments.
    """
    kw = dict(kwargs)
    axis = kw.pop("axis", -1)
    if name in _MAPS and len(args) == 1:
        where = kw.pop("where", None)
        if name == "entmax_bisect" and isinstance(kw.get("alpha"), torch.Tensor):
            unknown = set(kw) - {"alpha", "n_iter"}
            if unknown:
                return NotImplemented  # the generic code names the bad keyword
            return apply_bisect(args[0], kw["alpha"], axis, kw.get("n_iter", N_ITER), where, "axis")
        return apply_mapping(name, args[0], where, axis, options(**kw), "axis")
    base = name.removesuffix("_value_and_grad")
    if name == "entmax_bisect_loss" and len(args) == 2 and isinstance(kw.get("alpha"), torch.Tensor):
        unknown = set(kw) - {"alpha", "n_iter", "weight", "ignore_index", "reduction"}
        if unknown:
            return NotImplemented  # the generic code names the bad keyword
        return bisect_loss_tensor_alpha(
            args[0], args[1], kw["alpha"], axis, kw.get("n_iter", N_ITER), kw.get("weight"),
            kw.get("ignore_index", -100), kw.get("reduction", "mean"),
        )  # fmt: skip
    if base in _LOSSES and len(args) == 2:
        common = {k: kw.pop(k) for k in ("weight", "ignore_index", "reduction") if k in kw}
        loss, grad = apply_loss(
            base, args[0], args[1], axis, common.get("weight"), common.get("ignore_index", -100),
            common.get("reduction", "mean"), options(**kw), "axis",
        )  # fmt: skip
        return (loss, grad) if name != base else loss
    return NotImplemented


def apply_bisect(x: Tensor, alpha: Any, dim: Any, n_iter: Any, where: Any, dim_name: str) -> Tensor:
    if isinstance(alpha, torch.Tensor):
        d = _validate.axis(dim, x.ndim, dim_name)
        n = check_n_iter(n_iter)
        w = None if where is None else torch.as_tensor(where, device=x.device)
        if w is not None and w.dtype != torch.bool:
            raise TypeError(f"where must be a boolean array; got {w.dtype}")
        return _core.apply(EntmaxBisectAlpha, x, _alpha_tensor(alpha, x, d), w, d, n)
    return apply_mapping("entmax_bisect", x, where, dim, options(alpha=alpha, n_iter=n_iter), dim_name)


def bisect_loss_tensor_alpha(
    x: Tensor, target: Any, alpha: Tensor, dim: Any, n_iter: Any, weight: Any, ignore_index: Any, reduction: Any
) -> Tensor:
    r"""The α-entmax loss for a tensor ``alpha`` (one value, or one per row), differentiable in ``x`` and ``alpha``.

    Per row, :math:`\ell = \langle p - e_y, z\rangle + H_\alpha(p)` with :math:`p` = α-entmax of :math:`z`
    (:class:`EntmaxBisectAlpha`, whose analytic derivatives autograd composes here) and
    :math:`H_\alpha(p) = \sum_j p_j (1 - p_j^{\alpha - 1}) / (\alpha(\alpha - 1))`. Its gradient is
    :math:`p - e_y` (the term through :math:`p` is :math:`J^\top(z + \nabla H)`, and :math:`z + \nabla H` is
    constant on the support, which :math:`J^\top` sends to 0) and its α-derivative :math:`\partial_\alpha H` at
    fixed :math:`p` (the envelope theorem); both come out of autograd, and so do second derivatives. Rows scaled as
    the other losses (:func:`row_scale`); an ignored row is replaced by zeros before it is read.
    """
    d = _validate.axis(dim, x.ndim, "dim")
    n = check_n_iter(n_iter)
    red = _validate.reduction(reduction)
    ignore = _validate.integer(ignore_index, "ignore_index")
    if not x.is_floating_point():
        raise TypeError(f"logits must be a floating tensor; got dtype {x.dtype}")
    k = x.shape[d]
    t = torch.as_tensor(target, device=x.device)
    batch = tuple(s for i, s in enumerate(x.shape) if i != d)
    _validate.index_target(_xp, t, batch, f"the input's shape without dim={d}, {batch}")
    _core.check_labels(t, k, ignore, f"dim={d}")
    if weight is not None:
        weight = torch.as_tensor(weight, device=x.device)
        _core.check_weight(weight, k)
    a = _alpha_tensor(alpha, x, d)
    work = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    z = x.to(work)
    c = row_scale(t, weight, ignore, red, k, work).unsqueeze(d)
    live_row = c != 0
    z = torch.where(live_row, z, 0.0)  # ignored (and weightless) rows are never read
    p = _core.apply(EntmaxBisectAlpha, z, a.to(work), None, d, n)
    onehot = torch.zeros_like(z).scatter(d, t.clamp(0, k - 1).unsqueeze(d).to(torch.int64), 1.0)
    aw = a.to(work)
    live = p > 0
    safe = torch.where(live, p, 1.0)
    entropy = p * (1.0 - safe ** (aw - 1.0)) / (aw * (aw - 1.0))  # 0 off the support, and so its derivative
    row = ((p - onehot) * z + entropy).sum(d)
    scaled = torch.where(live_row.squeeze(d), c.squeeze(d) * row, 0.0)
    if red == "none":
        return scaled.to(x.dtype)
    return scaled.to(_core.accumulator(scaled)).sum().to(x.dtype)


def check_n_iter(value: Any) -> int:
    n = _validate.integer(value, "n_iter")
    if n < 1:
        raise ValueError(f"n_iter must be >= 1; got {value!r}")
    return n


def check_k(k: Any) -> None:
    """``k`` of the ``entmax`` package's signatures: None or a positive int."""
    if k is not None and _validate.integer(k, "k") < 1:
        raise ValueError(f"k must be a positive int or None; got {k!r}")

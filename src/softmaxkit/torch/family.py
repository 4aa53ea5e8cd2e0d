r"""``torch.autograd.Function``\ s for the alternatives to softmax (:mod:`softmaxkit.family`), analytic backward.

Why
---
Autograd through the generic code of :mod:`softmaxkit.family` differentiates the *algorithm*: a bisection's
last step, a sort. For :func:`softmaxkit.entmax_bisect` that gradient is wrong (0.27 off at
``x = [0.5, 1.0, -0.2, 0.9]``, :math:`\alpha = 1.5`), and for its loss it is ``nan`` (issue 17). Here each
mapping and loss is one Function whose backward is the family's analytic derivative:

* the α-entmax members (sparsemax, 1.5-entmax, α-entmax by bisection) save their output :math:`p` and compute
  :math:`J^\top g = s \odot g - s \langle s, g\rangle / \sum_j s_j` with :math:`s = p^{2-\alpha}` on the
  support (Peters, Niculae & Martins 2019), :math:`O(K)` per row, in differentiable torch operations (so a
  double backward sees through it); a tensor :math:`\alpha` gets its gradient too (as the ``entmax`` package's
  ``EntmaxBisect``);
* Taylor and spherical softmax, the sigmoids and softplus-normalize save their input and call the family's
  ``*_vjp`` / ``*_jvp``;
* every loss saves the gradient its forward computed with the family's ``*_value_and_grad`` (:math:`p^\star -
  e_y` for the Fenchel–Young losses) and scales it by the upstream gradient.

Each Function has a ``jvp`` (``torch.func.jacfwd``, ``torch.autograd.forward_ad``) and ``generate_vmap_rule``
(``torch.func.vmap``, per-sample gradients with ``torch.func.grad``), as :mod:`softmaxkit.torch.functional`.

The generic functions of :mod:`softmaxkit.family` hand torch tensors to this module (:func:`route`, called by
:func:`softmaxkit._backend.route`), so ``softmaxkit.entmax_bisect(tensor)`` gets these gradients too.

The forward
-----------
One small function per kind of operation (:func:`forward_mapping`, :func:`forward_loss`) computes the forward
on detached tensors. Today it runs the generic code (on every engine: ``softmaxkit.backend("reference")``
asks for exactly that); the backward stays the analytic one whatever computed the forward. float16 and
bfloat16 are computed in float32 and returned in their own dtype.

Special values
--------------
Those of :mod:`softmaxkit.family` (a masked or ``-inf`` entry has probability 0 and gradient 0; a fully masked
row is zeros; a row with ``nan`` or ``+inf`` is ``nan``; ignored rows of a loss are never read), with gradients
that follow them: 0 off the support, ``nan`` on a bad row.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .. import _backend, _doc, _validate
from .. import family as generic
from ..family.entmax_bisect import N_ITER
from ..family.spherical import DEFAULT_EPS
from . import _core

__all__ = [
    "entmax15",
    "entmax15_loss",
    "entmax_bisect",
    "entmax_bisect_loss",
    "route",
    "sigmoid",
    "sigmoid_cross_entropy",
    "softplus_normalize",
    "softplus_normalize_cross_entropy",
    "sparsemax",
    "sparsemax_loss",
    "spherical_cross_entropy",
    "spherical_softmax",
    "taylor_cross_entropy",
    "taylor_softmax",
]

Tensor = torch.Tensor
Options = tuple[tuple[str, Any], ...]
"""A call's scalar options (``alpha``, ``n_iter``, ``order``, ``eps``, ...) as sorted ``(name, value)`` pairs."""

_INF = math.inf


# ------------------------------------------------------------------------------------------------ forward
def engine(name: str, x: Tensor) -> str:
    """The engine of this call's forward: ``"torch"`` (the generic code on tensors), the only one so far, under
    ``auto``, ``reference`` and ``torch``. Another name raises: the family has no kernels on this front yet."""
    mode = _backend.resolve("auto" if torch.compiler.is_compiling() else None)
    if mode in ("auto", "reference", "torch"):
        return "torch"
    raise ValueError(f"backend={mode!r} cannot run softmaxkit.torch.{name} on this input: it does not implement {name}")


def forward_mapping(name: str, x: Tensor, where: Any, axis: int, options: Options) -> Tensor:
    """``softmaxkit.family.<name>`` of ``x`` (no autograd), on the engine of :func:`engine`."""
    engine(name, x)
    with _backend.generic(), torch.no_grad():
        out: Tensor = getattr(generic, name)(x.detach(), axis=axis, where=where, **dict(options))
    return out


def forward_loss(
    name: str, logits: Tensor, target: Any, weight: Any, axis: int, ignore_index: Any, reduction: Any, options: Options
) -> tuple[Tensor, Tensor]:
    """``softmaxkit.family.<name>_value_and_grad`` (no autograd): the loss and its gradient."""
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
    q = p.float() if p.dtype in (torch.float16, torch.bfloat16) else p
    live = q > 0
    if isinstance(alpha, float) and alpha == 2.0:
        s = live.to(q.dtype)
    elif isinstance(alpha, float) and alpha == 1.5:
        s = torch.sqrt(q)
    else:  # (p = 0 replaced by 1 before the power: p**(2 - alpha) is inf there for alpha > 2)
        s = torch.where(live, torch.where(live, q, 1.0) ** (2.0 - alpha), 0.0)
    sv = torch.where(live, s * v.to(q.dtype), 0.0)  # a tangent at a masked entry is never read
    total = s.sum(dim, keepdim=True)
    mean = sv.sum(dim, keepdim=True) / torch.where(total > 0, total, 1.0)
    out = torch.where(live, sv - s * mean, 0.0)
    return torch.where(torch.isnan(q), math.nan, out).to(p.dtype)  # a bad row (p all nan): nan


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

    def product(self, x: Tensor, where: Any, out: Tensor, v: Tensor, dim: int, options: Options, kind: str) -> Tensor:
        alpha = self.alpha if self.alpha is not None else dict(options).get("alpha")
        if alpha is not None:
            return tsallis_product(out, v, dim, float(alpha))
        with _backend.generic():
            dx: Tensor = getattr(generic, f"{self.name}_{kind}")(x, v, axis=dim, where=where, **dict(options))
        return dx


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
    def jvp(ctx: Any, tangent: Tensor, *_: Any) -> Tensor:
        out, x, where = _Map._unpack(ctx)
        dp: Tensor = ctx.op.product(x, where, out, tangent, ctx.dim, ctx.options, "jvp")
        return dp


class EntmaxBisectAlpha(torch.autograd.Function):
    """α-entmax by bisection with a tensor ``alpha`` that gets its gradient."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, alpha: Tensor, where: Tensor | None, dim: int, n_iter: int) -> Tensor:
        engine("entmax_bisect", x)
        return bisect_rows(x.detach(), where, dim, alpha.detach(), n_iter)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        _, alpha, _, dim, _ = inputs
        ctx.dim, ctx.alpha_shape = dim, alpha.shape
        _save(ctx, output, alpha)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor | None, None, None, None]:
        p, alpha = ctx.saved_tensors
        a = alpha.to(torch.float32 if p.dtype in (torch.float16, torch.bfloat16) else p.dtype)
        dx = tsallis_product(p, grad, ctx.dim, a)
        dalpha = None
        if ctx.needs_input_grad[1]:
            q = p.to(a.dtype)
            da = (grad.to(a.dtype) * alpha_derivative(q, ctx.dim, a)).sum(ctx.dim, keepdim=True)
            dalpha = _sum_to(da, ctx.alpha_shape).to(alpha.dtype)
        return dx, dalpha, None, None, None

    @staticmethod
    def jvp(ctx: Any, tx: Tensor, talpha: Tensor | None, *_: Any) -> Tensor:
        p, alpha = ctx.saved_tensors
        a = alpha.to(torch.float32 if p.dtype in (torch.float16, torch.bfloat16) else p.dtype)
        dp = tsallis_product(p, tx, ctx.dim, a)
        if talpha is not None:
            dp = dp + (alpha_derivative(p.to(a.dtype), ctx.dim, a) * talpha.to(a.dtype)).to(dp.dtype)
        return dp


class _Loss(torch.autograd.Function):
    """A loss of the family; its backward scales the gradient that the forward computed in closed form."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        logits: Tensor, target: Any, weight: Any, dim: int, ignore_index: Any, reduction: Any, name: str,
        options: Options,
    ) -> tuple[Tensor, Tensor]:  # fmt: skip
        return forward_loss(name, logits, target, weight, dim, ignore_index, reduction, options)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
        ctx.dim, ctx.reduction = inputs[3], inputs[5]
        ctx.mark_non_differentiable(output[1])
        _save(ctx, output[1])

    @staticmethod
    def backward(ctx: Any, grad: Tensor, _grad_of_grad: Any) -> tuple[Tensor, None, None, None, None, None, None, None]:
        (g,) = ctx.saved_tensors
        scale = grad.unsqueeze(ctx.dim) if ctx.reduction == "none" else grad
        return (scale.to(g.dtype) * g), None, None, None, None, None, None, None

    @staticmethod
    def jvp(ctx: Any, tangent: Tensor, *_: Any) -> tuple[Tensor, None]:
        (g,) = ctx.saved_tensors
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


def _options(**options: Any) -> Options:
    return tuple(sorted(options.items()))


def _map(name: str, x: Tensor, where: Any, dim: Any, options: Options, dim_name: str = "dim") -> Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor; got {type(x).__name__}")
    d = _validate.axis(dim, x.ndim, dim_name)
    return _core.apply(_FUNCTIONS[name], x, where, d, _MAPS[name], options)


def _loss(
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
            return _bisect(args[0], kw["alpha"], axis, kw.get("n_iter", N_ITER), where, "axis")
        return _map(name, args[0], where, axis, _options(**kw), "axis")
    base = name.removesuffix("_value_and_grad")
    if base in _LOSSES and len(args) == 2:
        common = {k: kw.pop(k) for k in ("weight", "ignore_index", "reduction") if k in kw}
        loss, grad = _loss(
            base, args[0], args[1], axis, common.get("weight"), common.get("ignore_index", -100),
            common.get("reduction", "mean"), _options(**kw), "axis",
        )  # fmt: skip
        return (loss, grad) if name != base else loss
    return NotImplemented


def _bisect(x: Tensor, alpha: Any, dim: Any, n_iter: Any, where: Any, dim_name: str) -> Tensor:
    if isinstance(alpha, torch.Tensor):
        d = _validate.axis(dim, x.ndim, dim_name)
        n = _n_iter(n_iter)
        w = None if where is None else torch.as_tensor(where, device=x.device)
        if w is not None and w.dtype != torch.bool:
            raise TypeError(f"where must be a boolean array; got {w.dtype}")
        return _core.apply(EntmaxBisectAlpha, x, _alpha_tensor(alpha, x, d), w, d, n)
    return _map("entmax_bisect", x, where, dim, _options(alpha=alpha, n_iter=n_iter), dim_name)


def _n_iter(value: Any) -> int:
    n = _validate.integer(value, "n_iter")
    if n < 1:
        raise ValueError(f"n_iter must be >= 1; got {value!r}")
    return n


# ---------------------------------------------------------------------------------------- public functions
_MAPPING_TABLE = """
    ==============================  =========================================
    row                             result (gradient)
    ==============================  =========================================
    ``-inf`` or masked entry        exactly 0 there (0)
    all ``-inf`` / all masked       zeros (zeros)
    contains ``nan`` or ``+inf``    ``nan`` for that row only (``nan`` row)
    float16 / bfloat16              computed in float32, returned as is
    ==============================  =========================================
"""

_LOSS_TABLE = """
    ======================================  ==============================================
    case                                    loss (gradient)
    ======================================  ==============================================
    target's logit is ``-inf``              ``inf`` (the finite closed-form gradient)
    all ignored / zero weight, ``mean``     0 (zeros)
    row with ``nan`` / ``+inf`` (kept)      ``nan`` for that row (its gradient row nan)
    ignored row holding ``nan``             0 (zeros): ignored rows are never read
    float16 / bfloat16 logits               computed in float32, returned as is
    ======================================  ==============================================
"""


def sparsemax(input: Tensor, dim: int = -1, *, where: Tensor | None = None) -> Tensor:
    r"""Sparsemax along ``dim`` (:func:`softmaxkit.sparsemax`) with its analytic backward.

    .. math:: \operatorname{sparsemax}(x) = \operatorname*{arg\,min}_{p \in \Delta} \|p - x\|^2 = [x - \tau]_+

    (Martins & Astudillo 2016). The ``entmax`` package's ``sparsemax(X, dim)``, with its gradients.

    Parameters
    ----------
    input : Tensor
        Real logits; float16/bfloat16 are computed in float32 and returned in their own dtype.
    dim : int
        The class dimension.
    where : Tensor of bool, optional
        Broadcastable to ``input``; entries where it is False get probability exactly 0.

    Returns
    -------
    Tensor
        ``input``'s shape and dtype; rows sum to one.

    Raises
    ------
    TypeError
        ``input`` is not a tensor, or is boolean or complex; ``dim`` is not an int.
    ValueError
        ``dim`` out of range; ``where`` does not broadcast.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import sparsemax
    >>> x = torch.tensor([1.0, 0.5, -1.0], requires_grad=True)
    >>> p = sparsemax(x)
    >>> p
    tensor([0.7500, 0.2500, 0.0000], grad_fn=<SparsemaxBackward>)
    >>> p[0].backward(); x.grad
    tensor([ 0.5000, -0.5000,  0.0000])
    """
    return _map("sparsemax", input, where, dim, ())


def entmax15(input: Tensor, dim: int = -1, k: int | None = None, *, where: Tensor | None = None) -> Tensor:
    r"""1.5-entmax along ``dim`` (:func:`softmaxkit.entmax15`, exact, sort-based) with its analytic backward.

    .. math:: \operatorname{entmax}_{1.5}(x)_i = \bigl[x_i/2 - \tau\bigr]_+^2, \qquad \textstyle\sum_i p_i = 1

    (Peters, Niculae & Martins 2019). The ``entmax`` package's ``entmax15(X, dim, k)``, with its gradients.

    Parameters
    ----------
    input : Tensor
        Real logits; float16/bfloat16 are computed in float32 and returned in their own dtype.
    dim : int
        The class dimension.
    k : int, optional
        Accepted for the ``entmax`` package's signature (its partial-sort size); the result is exact
        whatever it is. A positive int or None.
    where : Tensor of bool, optional
        As for :func:`sparsemax`.

    Returns
    -------
    Tensor
        ``input``'s shape and dtype; rows sum to one.

    Raises
    ------
    TypeError, ValueError
        As :func:`sparsemax`; ``k`` not a positive int.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import entmax15
    >>> entmax15(torch.tensor([2.0, 1.0, -2.0]))
    tensor([0.8307, 0.1693, 0.0000])
    """
    check_k(k)
    return _map("entmax15", input, where, dim, ())


def check_k(k: Any) -> None:
    """``k`` of the ``entmax`` package's signatures: None or a positive int."""
    if k is not None and _validate.integer(k, "k") < 1:
        raise ValueError(f"k must be a positive int or None; got {k!r}")


def entmax_bisect(
    input: Tensor,
    alpha: float | Tensor = 1.5,
    dim: int = -1,
    n_iter: int = N_ITER,
    *,
    where: Tensor | None = None,
) -> Tensor:
    r"""α-entmax along ``dim`` by bisection (:func:`softmaxkit.entmax_bisect`), with its analytic backward; a
    tensor ``alpha`` gets its gradient.

    .. math:: \alpha\text{-entmax}(x)_i = \bigl[(\alpha - 1) x_i - \tau\bigr]_+^{1/(\alpha - 1)}, \qquad
              \textstyle\sum_i p_i = 1

    (Peters, Niculae & Martins 2019). The ``entmax`` package's ``entmax_bisect(X, alpha, dim, n_iter)``: the
    same values, and the gradient of the solution (autograd through a bisection gives a wrong one).

    Parameters
    ----------
    input : Tensor
        Real logits; float16/bfloat16 are computed in float32 and returned in their own dtype.
    alpha : float or Tensor
        A float :math:`\ge 1` (1 is softmax). A tensor (floating, every value finite and :math:`> 1`) holds
        one :math:`\alpha` per row: its shape broadcasts to ``input``'s with ``dim`` of length 1; it gets the
        gradient :math:`\sum_i g_i\, \partial p_i/\partial\alpha` (a learnable ``torch.nn.Parameter``).
    dim : int
        The class dimension.
    n_iter : int
        Bisection steps, ``>= 1`` (default 64: float64's resolution; the ``entmax`` package's default is 50).
    where : Tensor of bool, optional
        As for :func:`sparsemax`.

    Returns
    -------
    Tensor
        ``input``'s shape and dtype; rows sum to one.

    Raises
    ------
    TypeError
        As :func:`sparsemax`; ``alpha`` neither a real number nor a floating tensor; ``n_iter`` not an int.
    ValueError
        As :func:`sparsemax`; ``alpha`` < 1 (a tensor: <= 1) or not finite, or not broadcastable;
        ``n_iter`` < 1.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import entmax_bisect
    >>> x = torch.tensor([0.5, 1.0, -0.2, 0.9], dtype=torch.float64, requires_grad=True)
    >>> alpha = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    >>> p = entmax_bisect(x, alpha)
    >>> p.detach().round(decimals=4)
    tensor([0.1730, 0.4434, 0.0043, 0.3793], dtype=torch.float64)
    >>> p[1].backward(); x.grad.round(decimals=4), alpha.grad.round(decimals=4)
    (tensor([-0.1570,  0.4145, -0.0249, -0.2325], dtype=torch.float64), tensor(0.1874, dtype=torch.float64))
    """
    return _bisect(input, alpha, dim, n_iter, where, "dim")


def taylor_softmax(input: Tensor, dim: int = -1, *, order: int = 2, where: Tensor | None = None) -> Tensor:
    r"""Taylor softmax along ``dim`` (:func:`softmaxkit.taylor_softmax`) with its analytic backward.

    .. math:: p_i = \frac{f(x_i)}{\sum_j f(x_j)}, \qquad f(t) = \sum_{k=0}^{n} \frac{t^k}{k!}
              \ (n \text{ even})

    (de Brébisson & Vincent 2016).

    Parameters
    ----------
    input, dim
        As for :func:`sparsemax`.
    order : int
        The even order :math:`n \ge 2` of the expansion.
    where : Tensor of bool, optional
        As for :func:`sparsemax`.

    Returns
    -------
    Tensor
        ``input``'s shape and dtype; rows sum to one.

    Raises
    ------
    TypeError, ValueError
        As :func:`sparsemax`; a bad ``order``.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import taylor_softmax
    >>> taylor_softmax(torch.tensor([0.0, 0.0, 2.0]))
    tensor([0.1429, 0.1429, 0.7143])
    """
    return _map("taylor_softmax", input, where, dim, _options(order=order))


def spherical_softmax(input: Tensor, dim: int = -1, *, eps: float = DEFAULT_EPS, where: Tensor | None = None) -> Tensor:
    r"""Spherical softmax along ``dim`` (:func:`softmaxkit.spherical_softmax`) with its analytic backward.

    .. math:: p_i = \frac{x_i^2 + \varepsilon}{\sum_j (x_j^2 + \varepsilon)}

    (de Brébisson & Vincent 2016).

    Parameters
    ----------
    input, dim
        As for :func:`sparsemax`.
    eps : float
        :math:`\varepsilon > 0`.
    where : Tensor of bool, optional
        As for :func:`sparsemax`.

    Returns
    -------
    Tensor
        ``input``'s shape and dtype; rows sum to one.

    Raises
    ------
    TypeError, ValueError
        As :func:`sparsemax`; a bad ``eps``.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import spherical_softmax
    >>> spherical_softmax(torch.tensor([1.0, -1.0, 2.0]), eps=1e-30)
    tensor([0.1667, 0.1667, 0.6667])
    """
    return _map("spherical_softmax", input, where, dim, _options(eps=eps))


def sigmoid(input: Tensor, dim: int = -1, *, where: Tensor | None = None) -> Tensor:
    r"""One-vs-rest sigmoids (:func:`softmaxkit.sigmoid`) with the family's special values and backward.

    .. math:: p_i = \frac{1}{1 + e^{-x_i}}

    Parameters
    ----------
    input, dim
        As for :func:`sparsemax` (``dim`` names the class dimension, for ``where`` and the checks).
    where : Tensor of bool, optional
        Entries where it is False get exactly 0.

    Returns
    -------
    Tensor
        ``input``'s shape and dtype.

    Raises
    ------
    TypeError, ValueError
        As :func:`sparsemax`.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import sigmoid
    >>> sigmoid(torch.tensor([0.0, 2.0]))
    tensor([0.5000, 0.8808])
    """
    return _map("sigmoid", input, where, dim, ())


def softplus_normalize(input: Tensor, dim: int = -1, *, where: Tensor | None = None) -> Tensor:
    r"""Softplus-normalize along ``dim`` (:func:`softmaxkit.softplus_normalize`) with its analytic backward.

    .. math:: p_i = \frac{\log(1 + e^{x_i})}{\sum_j \log(1 + e^{x_j})}

    Parameters
    ----------
    input, dim, where
        As for :func:`sparsemax`.

    Returns
    -------
    Tensor
        ``input``'s shape and dtype; rows sum to one.

    Raises
    ------
    TypeError, ValueError
        As :func:`sparsemax`.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import softplus_normalize
    >>> softplus_normalize(torch.tensor([0.0, 0.0]))
    tensor([0.5000, 0.5000])
    """
    return _map("softplus_normalize", input, where, dim, ())


# ----------------------------------------------------------------------------------------------- losses
_LOSS_PARAMETERS = """
    input : Tensor
        Real logits; ``dim`` holds the ``C`` classes. float16/bfloat16 are computed in float32.
    target : Tensor
        Integer class indices with ``input``'s shape without ``dim``: values in ``[0, C)`` or
        ``ignore_index``.
    dim : int
        The class dimension (default the last).
    weight : Tensor, optional
        Per-class weights, shape ``(C,)``, finite and ``>= 0`` (no gradient).
    ignore_index : int
        Rows whose target equals it contribute nothing (not even to the ``mean`` denominator).
    reduction : {"mean", "sum", "none"}
        As :func:`softmaxkit.cross_entropy`."""


def _loss_doc(func: Callable[..., Tensor]) -> Callable[..., Tensor]:
    assert func.__doc__ is not None  # (our own docstrings)
    func.__doc__ = func.__doc__.replace("    {parameters}\n", _LOSS_PARAMETERS.lstrip("\n") + "\n")
    return func


@_loss_doc
def sparsemax_loss(
    input: Tensor,
    target: Tensor,
    *,
    dim: int = -1,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""The sparsemax loss (:func:`softmaxkit.sparsemax_loss`); its gradient :math:`p^\star - e_y` is computed
    in the forward, in closed form.

    .. math:: \ell = \tfrac12\bigl(1 - \|p^\star\|^2\bigr) + \langle p^\star - e_y,\, z\rangle

    (Martins & Astudillo 2016). The ``entmax`` package's ``sparsemax_loss`` returns the per-row losses: pass
    ``reduction="none"`` for that (or use :class:`SparsemaxLoss`).

    Parameters
    ----------
    {parameters}

    Returns
    -------
    Tensor
        0-d for ``mean``/``sum``, else the per-row losses.

    Raises
    ------
    TypeError, ValueError
        As :func:`softmaxkit.sparsemax_loss` (a class index out of range, a bad ``weight`` or ``reduction``).

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import sparsemax_loss
    >>> z = torch.tensor([[1.0, 0.5, -1.0], [3.0, 0.0, 0.0]], requires_grad=True)
    >>> sparsemax_loss(z, torch.tensor([1, 0]), reduction="none")
    tensor([0.5625, 0.0000], grad_fn=<SparsemaxLossBackward>)
    """
    return _loss("sparsemax_loss", input, target, dim, weight, ignore_index, reduction, ())[0]


@_loss_doc
def entmax15_loss(
    input: Tensor,
    target: Tensor,
    *,
    dim: int = -1,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""The 1.5-entmax loss (:func:`softmaxkit.entmax15_loss`), gradient :math:`p^\star - e_y` in closed form.

    Parameters
    ----------
    {parameters}

    Returns
    -------
    Tensor
        0-d for ``mean``/``sum``, else the per-row losses.

    Raises
    ------
    TypeError, ValueError
        As :func:`softmaxkit.entmax15_loss`.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import entmax15_loss
    >>> entmax15_loss(torch.tensor([[3.0, 0.0, 0.0]]), torch.tensor([0]))
    tensor(0.)
    """
    return _loss("entmax15_loss", input, target, dim, weight, ignore_index, reduction, ())[0]


@_loss_doc
def entmax_bisect_loss(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 1.5,
    dim: int = -1,
    n_iter: int = N_ITER,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""The α-entmax loss (:func:`softmaxkit.entmax_bisect_loss`), gradient :math:`p^\star - e_y` in closed form
    (autograd through the bisection gives ``nan``).

    Parameters
    ----------
    {parameters}
    alpha : float
        :math:`\alpha \ge 1` (1 is cross-entropy).
    n_iter : int
        Bisection steps, ``>= 1``.

    Returns
    -------
    Tensor
        0-d for ``mean``/``sum``, else the per-row losses.

    Raises
    ------
    TypeError, ValueError
        As :func:`softmaxkit.entmax_bisect_loss`.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import entmax_bisect_loss
    >>> z = torch.tensor([[0.5, 1.0, -0.2, 0.9]], dtype=torch.float64, requires_grad=True)
    >>> entmax_bisect_loss(z, torch.tensor([1])).backward()
    >>> z.grad.round(decimals=4)
    tensor([[ 0.1730, -0.5566,  0.0043,  0.3793]], dtype=torch.float64)
    """
    options = _options(alpha=alpha, n_iter=n_iter)
    return _loss("entmax_bisect_loss", input, target, dim, weight, ignore_index, reduction, options)[0]


@_loss_doc
def taylor_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    dim: int = -1,
    order: int = 2,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Cross-entropy of the Taylor softmax (:func:`softmaxkit.taylor_cross_entropy`), analytic gradient.

    Parameters
    ----------
    {parameters}
    order : int
        As for :func:`taylor_softmax`.

    Returns
    -------
    Tensor
        0-d for ``mean``/``sum``, else the per-row losses.

    Raises
    ------
    TypeError, ValueError
        As :func:`softmaxkit.taylor_cross_entropy`.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import taylor_cross_entropy
    >>> taylor_cross_entropy(torch.zeros(1, 4), torch.tensor([2]))  # log 4
    tensor(1.3863)
    """
    return _loss("taylor_cross_entropy", input, target, dim, weight, ignore_index, reduction, _options(order=order))[0]


@_loss_doc
def spherical_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    dim: int = -1,
    eps: float = DEFAULT_EPS,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Cross-entropy of the spherical softmax (:func:`softmaxkit.spherical_cross_entropy`), analytic gradient.

    Parameters
    ----------
    {parameters}
    eps : float
        As for :func:`spherical_softmax`.

    Returns
    -------
    Tensor
        0-d for ``mean``/``sum``, else the per-row losses.

    Raises
    ------
    TypeError, ValueError
        As :func:`softmaxkit.spherical_cross_entropy`.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import spherical_cross_entropy
    >>> spherical_cross_entropy(torch.ones(1, 4), torch.tensor([2]))  # log 4
    tensor(1.3863)
    """
    return _loss("spherical_cross_entropy", input, target, dim, weight, ignore_index, reduction, _options(eps=eps))[0]


@_loss_doc
def sigmoid_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    dim: int = -1,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""One-vs-rest binary cross-entropy of class indices (:func:`softmaxkit.sigmoid_cross_entropy`), analytic
    gradient :math:`\sigma(z) - e_y`.

    Parameters
    ----------
    {parameters}

    Returns
    -------
    Tensor
        0-d for ``mean``/``sum``, else the per-row losses.

    Raises
    ------
    TypeError, ValueError
        As :func:`softmaxkit.sigmoid_cross_entropy`.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import sigmoid_cross_entropy
    >>> sigmoid_cross_entropy(torch.zeros(1, 2), torch.tensor([0]))  # 2 log 2
    tensor(1.3863)
    """
    return _loss("sigmoid_cross_entropy", input, target, dim, weight, ignore_index, reduction, ())[0]


@_loss_doc
def softplus_normalize_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    dim: int = -1,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Cross-entropy of softplus-normalize (:func:`softmaxkit.softplus_normalize_cross_entropy`), analytic
    gradient.

    Parameters
    ----------
    {parameters}

    Returns
    -------
    Tensor
        0-d for ``mean``/``sum``, else the per-row losses.

    Raises
    ------
    TypeError, ValueError
        As :func:`softmaxkit.softplus_normalize_cross_entropy`.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import softplus_normalize_cross_entropy
    >>> softplus_normalize_cross_entropy(torch.zeros(1, 4), torch.tensor([2]))  # log 4
    tensor(1.3863)
    """
    return _loss("softplus_normalize_cross_entropy", input, target, dim, weight, ignore_index, reduction, ())[0]


for _func in (sparsemax, entmax15, entmax_bisect, taylor_softmax, spherical_softmax, sigmoid, softplus_normalize):
    _doc.special_values(_MAPPING_TABLE)(_func)
for _func in (
    sparsemax_loss, entmax15_loss, entmax_bisect_loss, taylor_cross_entropy, spherical_cross_entropy,
    sigmoid_cross_entropy, softplus_normalize_cross_entropy,
):  # fmt: skip
    _doc.special_values(_LOSS_TABLE)(_func)
del _func

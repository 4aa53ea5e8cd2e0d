r"""The tensor math behind :mod:`softmaxkit.torch`: plain torch functions, no autograd.

This is the seam for fast kernels. :class:`softmaxkit.torch.functional` wraps two functions of this module in a
``torch.autograd.Function``:

* :func:`ce_forward` returns the loss and the per-row log-sum-exp, held as :class:`RowLse` ``(m, log_norm)``
  with :math:`\operatorname{lse} = m + \text{log\_norm}`;
* :func:`ce_backward` returns the gradient from the logits, the targets and that :class:`RowLse`.

A fused kernel (Triton on GPU) that produces the same ``RowLse`` in its forward can replace either side alone.
Nothing here stores a probability: the backward recomputes :math:`p = e^{(z - m) - \text{log\_norm}}` from the
logits, so the memory kept between forward and backward is two floats per row.

Why the log-sum-exp is kept as ``m + log_norm`` and not as one number: for logits near :math:`10^7` in float32,
:math:`\operatorname{lse}` itself is only known to the nearest integer, and :math:`z - \operatorname{lse}` would
lose every digit of the probability. :math:`z - m` is exact and ``log_norm`` :math:`\in [0, \log C]` is accurate
to a few ulps, so :math:`(z - m) - \text{log\_norm}` keeps full accuracy (Blanchard, Higham & Higham 2021).

All functions take the class dimension ``dim`` anywhere (torch's ``(N, C, d1, ...)`` layout is ``dim=1``) and
compute in :func:`compute_dtype` (float32 for float16/bfloat16 inputs).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import array_api_compat.torch as _xp
import torch
from torch.autograd import forward_ad

from .. import _array, _validate

Tensor = torch.Tensor

_INF = math.inf
_NAN = math.nan


class RowLse(NamedTuple):
    """The per-row log-sum-exp :math:`m + \\text{log\\_norm}`, class dimension kept with length 1."""

    m: Tensor  # row maximum: -inf for fully masked rows, nan / +inf for rows that hold them
    log_norm: Tensor  # log1p(sum of e^{z - m} over every entry but one maximum), in [0, log C]


Options = _validate.CrossEntropyOptions
"""The scalar options of cross-entropy, validated (see :func:`options`)."""

options = _validate.cross_entropy_options


def apply(function: Any, *args: Any) -> Tensor:
    """``function.apply(*args)`` for a ``torch.autograd.Function`` subclass, typed."""
    out: Tensor = function.apply(*args)
    return out


class _PrimalContext:
    """A Function's ``ctx`` whose ``saved_tensors`` are the primals of the current forward level (the tangents
    the rule is computing are not read back into it); everything else is the ``ctx``'s."""

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx

    @property
    def saved_tensors(self) -> tuple[Any, ...]:
        return tuple(
            t if not isinstance(t, torch.Tensor) else forward_ad.unpack_dual(t).primal  # type: ignore[no-untyped-call]
            for t in self._ctx.saved_tensors
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)


def jvp_rule(rule: Callable[..., Any]) -> Callable[..., Any]:
    """A ``jvp`` staticmethod whose own operations stay differentiable in forward mode.

    torch runs a Function's ``jvp`` with forward-mode AD switched off, so under nested forward transforms
    (``jacfwd(jacfwd(f))``, ``jvp`` of ``jvp``, third derivatives) the outer level sees the tangent as a
    constant and returns 0 for every higher derivative, without an error (pytorch/pytorch#197867, open). Turning
    it back on inside the rule (as torch.func does around a Function's forward) lets the outer levels
    differentiate the rule's torch operations, which the rules here are written in; the saved tensors are read
    as the current level's primals, so that the tangent being computed carries no tangent of its own level.
    """

    @functools.wraps(rule)
    def differentiable(ctx: Any, *tangents: Any) -> Any:
        primal = _PrimalContext(ctx)
        with forward_ad._set_fwd_grad_enabled(True):
            return rule(primal, *tangents)

    return differentiable


# ------------------------------------------------------------------------------------------------- dtypes
def compute_dtype(dtype: torch.dtype, name: str = "logits") -> torch.dtype:
    """float32 for float16/bfloat16 (and float8), the dtype itself for float32/float64, torch's default for
    integers: :func:`softmaxkit._array.compute_dtype`, the package's one dtype policy."""
    out: torch.dtype = _array.compute_dtype(_xp, dtype, name)
    return out


def result_dtype(dtype: torch.dtype, name: str = "logits") -> torch.dtype:
    """The dtype handed back for an input of ``dtype``: its own if floating, else the computed one."""
    out: torch.dtype = _array.result_dtype(_xp, dtype, name)
    return out


def to_compute(x: Tensor, name: str = "logits") -> Tensor:
    return x.to(compute_dtype(x.dtype, name))


def accumulator_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """float64 for adding up many float32 terms, where the device has it (not MPS); else ``dtype``.

    Decided from the dtype and device directly, not through array_api_compat's device lookup, whose
    ``lru_cache`` helpers torch.compile warns about when it traces them.
    """
    return torch.float64 if dtype == torch.float32 and device.type != "mps" else dtype


def accumulator(x: Tensor) -> torch.dtype:
    """:func:`accumulator_dtype` of ``x``."""
    return accumulator_dtype(x.dtype, x.device)


# --------------------------------------------------------------------------------------- row statistics
def cap(z: Tensor, softcap: float | None) -> tuple[Tensor, Tensor | None]:
    r"""Soft-capped logits :math:`c\tanh(z/c)` (``-inf`` stays ``-inf``) and the derivative :math:`1 - \tanh^2`.

    Without a cap, ``(z, None)``. Differentiable, so that the double backward sees through it.
    """
    if softcap is None:
        return z, None
    t = torch.tanh(z / softcap)
    return torch.where(z == -_INF, -_INF, softcap * t), 1.0 - t * t


def row_lse(z: Tensor, dim: int) -> tuple[RowLse, Tensor]:
    r""":class:`RowLse` of ``z`` along ``dim`` and the shifted logits :math:`d = z - m`.

    The sum :math:`\sum_j e^{d_j}` is :math:`1 + s`, where the 1 is the maximum's own term, and
    :math:`\log(1 + s)` is evaluated as ``log1p(s)``, which keeps its relative accuracy when :math:`s` is tiny
    (a confident, correct prediction, whose loss *is* ``log1p(s)``). Ties at the maximum contribute exactly 1
    each. Rows without a finite maximum get ``m`` replaced by 0 in ``d`` (so that ``-inf`` rows stay ``-inf``).
    """
    m = z.amax(dim, keepdim=True)
    d = z - torch.where(torch.isfinite(m), m, 0.0)
    e = torch.exp(d)
    top = d == 0
    ties = (top.sum(dim, keepdim=True) - 1).clamp_min(0).to(z.dtype)
    rest = torch.where(top, 0.0, e).sum(dim, keepdim=True) + ties
    return RowLse(m, torch.log1p(rest)), d


def bad_rows(m: Tensor) -> Tensor:
    """Rows whose result is nan: a nan or a +inf in the row (their maximum is neither finite nor -inf)."""
    return torch.logical_not(torch.isfinite(m) | (m == -_INF))


def shifted(z: Tensor, lse: RowLse) -> Tensor:
    """:math:`d = z - m` with the saved maximum (0 where it is not finite), as :func:`row_lse` forms it."""
    return z - torch.where(torch.isfinite(lse.m), lse.m, 0.0)


def lse_value(lse: RowLse) -> Tensor:
    return lse.m + lse.log_norm


# ---------------------------------------------------------------------------------------- cross-entropy
def along(v: Tensor, dim: int, ndim: int) -> Tensor:
    """A per-class vector shaped to broadcast along ``dim`` of an ``ndim``-d tensor."""
    shape = [1] * ndim
    shape[dim] = v.shape[0]
    return v.reshape(shape)


class _Targets(NamedTuple):
    """Class-index targets, prepared once."""

    valid: Tensor  # rows not ignored (bool, batch shape)
    wild: Tensor  # rows not ignored whose class index is outside [0, C): nan rows, never read outside the row
    y: Tensor  # the class index, 0 at ignored rows, class dimension kept (for gather / scatter)
    w_y: Tensor  # the weight of the target class, 0 at ignored rows
    w: Tensor | None  # the class weights, shaped along dim
    w_sum: Tensor | float  # sum of the class weights (C without weights)


def _targets(target: Tensor, weight: Tensor | None, dim: int, z: Tensor, ignore_index: int) -> _Targets:
    valid = kept(target, ignore_index)
    # Unchecked labels (check_target=False, or traced by torch.compile / vmap): an index outside [0, C) reads
    # class 0 and its row becomes nan, without a host synchronisation and without a read outside the row.
    wild = valid & ((target < 0) | (target >= z.shape[dim]))
    y = torch.where(valid & ~wild, target, 0).long()
    if weight is None:
        w_y = valid.to(z.dtype)
        return _Targets(valid, wild, y.unsqueeze(dim), w_y, None, float(z.shape[dim]))
    w = weight.to(z.dtype)
    w_y = torch.where(valid, w[y], 0.0)
    return _Targets(valid, wild, y.unsqueeze(dim), w_y, along(w, dim, z.ndim), w.sum())


def reduce_rows(row: Tensor, z_row: Tensor | None, denom: Tensor, n_rows: Tensor, reduction: str) -> Tensor:
    """The reduced loss: ``mean`` divides the CE part by ``denom`` and the z-loss part by ``n_rows``, each 0
    when its denominator is 0 (nothing to average)."""
    if reduction == "none":
        return row if z_row is None else row + z_row
    acc = accumulator(row)
    total = row.sum(dtype=acc)
    z_total = None if z_row is None else z_row.sum(dtype=acc)
    if reduction == "mean":
        total = torch.where(denom > 0, total / torch.where(denom > 0, denom, 1.0), 0.0)
        if z_total is not None:
            z_total = torch.where(n_rows > 0, z_total / torch.where(n_rows > 0, n_rows, 1.0), 0.0)
    return total if z_total is None else total + z_total


def ce_forward(
    z: Tensor, target: Tensor, weight: Tensor | None, dim: int, opts: Options
) -> tuple[Tensor, RowLse, Tensor, Tensor]:
    r"""Cross-entropy of logits ``z`` (class dimension ``dim``), in the compute dtype.

    Returns ``(loss, lse, denom, n_rows)``: the loss (0-d, or per row for ``reduction="none"``), the per-row
    :class:`RowLse`, the CE denominator of ``mean`` (:math:`\sum w_{y_n}` over rows not ignored, or the row
    count for probability targets) and the number of rows not ignored (the z-loss denominator). Targets and
    options are assumed valid. With class indices, per row:

    .. math:: \ell = (1-\varepsilon) w_y (\text{log\_norm} - d_y)
                   + \frac{\varepsilon}{C} \sum_c w_c (\text{log\_norm} - d_c) + \lambda \operatorname{lse}^2
    """
    zc, _ = cap(z, opts.softcap)
    lse, d = row_lse(zc, dim)
    log_norm = lse.log_norm
    n_classes = z.shape[dim]
    eps = opts.label_smoothing
    acc = accumulator(z)
    if target.is_floating_point():
        t = target.to(z.dtype)
        q = t * (1.0 - eps) + eps / n_classes if eps > 0 else t
        qw = q if weight is None else q * along(weight.to(z.dtype), dim, z.ndim)
        row = torch.where(qw == 0, 0.0, qw * (log_norm - d)).sum(dim)
        valid, wild = None, None
        n_rows = torch.tensor(float(row.numel()), dtype=acc, device=z.device)
        denom = n_rows
    else:
        tg = _targets(target, weight, dim, z, opts.ignore_index)
        valid, wild = tg.valid, tg.wild
        coef = (1.0 - eps) * tg.w_y
        d_y = d.gather(dim, tg.y).squeeze(dim)
        ln = log_norm.squeeze(dim)
        row = torch.where(coef == 0, 0.0, coef * (ln - d_y))
        if eps > 0:
            per_class = log_norm - d if tg.w is None else torch.where(tg.w == 0, 0.0, tg.w * (log_norm - d))
            row = row + torch.where(valid, (eps / n_classes) * per_class.sum(dim), 0.0)
        denom = tg.w_y.sum(dtype=acc)
        n_rows = valid.sum(dtype=acc)
    bad = bad_rows(lse.m).squeeze(dim)
    if valid is not None:
        bad = bad & valid
    if wild is not None:
        bad = bad | wild
    row = torch.where(bad, _NAN, row)
    z_row = None
    if opts.z_loss > 0:
        value = lse_value(lse).squeeze(dim)
        z_row = opts.z_loss * value * value
        if valid is not None:
            z_row = torch.where(valid, z_row, 0.0)
    loss = reduce_rows(row, z_row, denom, n_rows, opts.reduction)
    return loss.to(z.dtype), lse, denom, n_rows


def _scales(
    grad: Tensor, denom: Tensor, n_rows: Tensor, reduction: str, dim: int, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """Per-row (or scalar) factors of the CE part and of the z-loss part of the gradient."""
    g = grad.to(dtype)
    if reduction == "none":
        g = g.unsqueeze(dim)
        return g, g
    if reduction == "sum":
        return g, g
    ce = torch.where(denom > 0, g / torch.where(denom > 0, denom, 1.0).to(dtype), 0.0)
    zs = torch.where(n_rows > 0, g / torch.where(n_rows > 0, n_rows, 1.0).to(dtype), 0.0)
    return ce, zs


def _recompute_lse(zc: Tensor, dim: int) -> RowLse:
    """:class:`RowLse` by differentiable torch ops (for the double backward): the maximum is a constant (the
    result does not depend on it), fully masked rows get log_norm 0 without a ``nan`` in any branch."""
    m = zc.detach().amax(dim, keepdim=True)
    masked = m == -_INF
    d = zc - torch.where(torch.isfinite(m), m, 0.0)
    log_norm = torch.logsumexp(torch.where(masked, 0.0, d), dim, keepdim=True)
    return RowLse(m, torch.where(masked, 0.0, log_norm))


def ce_backward(
    z: Tensor,
    target: Tensor,
    weight: Tensor | None,
    dim: int,
    opts: Options,
    lse: RowLse | None,
    denom: Tensor,
    n_rows: Tensor,
    grad: Tensor,
    want_target_grad: bool = False,
) -> tuple[Tensor, Tensor | None]:
    r"""Gradient of :func:`ce_forward`'s loss times ``grad`` (its upstream gradient), for the logits and, if
    asked, for probability targets.

    .. math:: \frac{\partial \ell}{\partial z} = \Bigl(p \sum_c w_c q_c - w \odot q
              + 2 \lambda \operatorname{lse}\, p\Bigr) \odot (1 - \tanh^2(z/c))

    with :math:`p = e^{(z - m) - \text{log\_norm}}` recomputed from the saved :class:`RowLse`. At the target
    class, :math:`(1-\varepsilon) w_y (p_y - 1)` is evaluated as :math:`(1-\varepsilon) w_y\,
    \operatorname{expm1}(\log p_y)`: :math:`p_y` rounded first and then reduced by 1 would lose every digit
    when :math:`p_y \to 1` (Liger-Kernel PR #1329: 100% error at :math:`p = 0.999` in bfloat16).

    With ``lse=None`` everything is recomputed by differentiable torch ops from ``z``, so that autograd can
    differentiate this function again (double backward). Ignored rows get exactly 0, even holding ``nan``.
    """
    n_classes = z.shape[dim]
    eps = opts.label_smoothing
    index_target = not target.is_floating_point()
    tg = _targets(target, weight, dim, z, opts.ignore_index) if index_target else None
    valid_k = None if tg is None else tg.valid.unsqueeze(dim)
    if lse is None:
        if valid_k is not None:  # ignored rows are never read: no nan of theirs reaches a second derivative
            z = torch.where(valid_k, z, 0.0)
        zc, dcap = cap(z, opts.softcap)
        lse = _recompute_lse(zc, dim)
    else:
        zc, dcap = cap(z, opts.softcap)
    log_p = shifted(zc, lse) - lse.log_norm
    p = torch.exp(log_p)
    s_ce, s_z = _scales(grad, denom, n_rows, opts.reduction, dim, z.dtype)
    z_term = None
    if opts.z_loss > 0:
        value = lse_value(lse)
        z_term = (2.0 * opts.z_loss) * torch.where(torch.isfinite(value), value, 0.0) * s_z
    target_grad = None
    if tg is None:
        t = target.to(z.dtype)
        w = None if weight is None else along(weight.to(z.dtype), dim, z.ndim)
        q = t * (1.0 - eps) + eps / n_classes if eps > 0 else t
        qw = q if w is None else q * w
        g = (p * qw.sum(dim, keepdim=True) - qw) * s_ce
        if z_term is not None:
            g = g + z_term * p
        if want_target_grad:  # d loss / d t_c = -(1 - eps) w_c log p_c, where the term is not 0
            scale = (1.0 - eps) * s_ce if w is None else (1.0 - eps) * w * s_ce
            target_grad = torch.where(scale == 0, 0.0, -scale * log_p)
    else:
        coef = ((1.0 - eps) * tg.w_y).unsqueeze(dim) * s_ce
        smooth = (eps / n_classes) * tg.valid.to(z.dtype).unsqueeze(dim) * s_ce
        total = coef + smooth * tg.w_sum
        if z_term is not None:
            total = total + z_term * tg.valid.unsqueeze(dim)
        g = p * total
        if eps > 0:
            g = g - (smooth if tg.w is None else smooth * tg.w)
        # the target column, without the cancellation of p_y - 1
        log_p_y = log_p.gather(dim, tg.y)
        p_y = torch.exp(log_p_y)
        g_y = coef * torch.expm1(log_p_y) + smooth * (tg.w_sum * p_y - tg.w_y.unsqueeze(dim))
        if z_term is not None:
            g_y = g_y + z_term * tg.valid.unsqueeze(dim) * p_y
        g = g.scatter(dim, tg.y, g_y)
    if dcap is not None:
        g = g * dcap
    bad = bad_rows(lse.m)
    if tg is not None and valid_k is not None:
        g = torch.where(valid_k, g, 0.0)
        bad = (bad & valid_k) | tg.wild.unsqueeze(dim)
    g = torch.where(bad, _NAN, g)
    return g, target_grad


def kept(target: Tensor, ignore_index: int) -> Tensor:
    """``target != ignore_index``; all True when ``ignore_index`` does not fit ``target``'s dtype."""
    out: Tensor = _validate.kept(_xp, target, ignore_index)
    return out


def check_labels(target: Tensor, n_classes: int, ignore_index: int, dim_name: str = "the class dimension") -> None:
    """Raise ``ValueError`` naming the first class index outside ``[0, C)`` (not ``ignore_index``)."""
    _validate.labels(_xp, target, n_classes, ignore_index, dim_name)


def check_weight(weight: Tensor, n_classes: int, values: bool = True) -> None:
    """Class weights: 1-d, one per class, floating (as torch asks), finite and ``>= 0`` (the last only with
    ``values``: it reads the weights on the host)."""
    if values:
        _validate.class_weight(_xp, weight, weight, n_classes, weight.dtype)
    else:  # traced (torch.compile): the shape only, in plain Python
        _validate.weight_shape(tuple(weight.shape), n_classes)
    if not weight.is_floating_point():
        raise TypeError(f"weight must be a floating tensor; got dtype {weight.dtype}")


# ------------------------------------------------------------------------------ the mappings' derivatives
# Differentiable torch code, shared by the Functions of every path (their double backward and forward mode).
def softmax_vjp(out: Tensor, grad: Tensor, dim: int) -> Tensor:
    r""":math:`p \odot (g - \langle g, p \rangle)` from softmax's output :math:`p`: 0 at masked entries and rows."""
    p = to_compute(out)
    g = grad.to(p.dtype)
    return (p * (g - (g * p).sum(dim, keepdim=True))).to(out.dtype)


def softmax_jvp(out: Tensor, tangent: Tensor, dim: int) -> Tensor:
    p = to_compute(out)
    t = torch.where(p == 0, 0.0, tangent.to(p.dtype))  # masked entries are the constant 0
    return (p * (t - (t * p).sum(dim, keepdim=True))).to(out.dtype)


def log_softmax_vjp(out: Tensor, grad: Tensor, dim: int) -> Tensor:
    r""":math:`g - e^{y} \sum g` from log-softmax's output :math:`y`; masked entries (``-inf``) get 0 and their
    cotangent is never read."""
    y = to_compute(out)
    active = y != -_INF
    g = torch.where(active, grad.to(y.dtype), 0.0)
    return torch.where(active, g - torch.exp(y) * g.sum(dim, keepdim=True), 0.0).to(out.dtype)


def log_softmax_jvp(out: Tensor, tangent: Tensor, dim: int) -> Tensor:
    y = to_compute(out)
    active = y != -_INF  # masked entries are the constant -inf: their tangent is 0 and never read
    t = torch.where(active, tangent.to(y.dtype), 0.0)
    return torch.where(active, t - (torch.exp(y) * t).sum(dim, keepdim=True), 0.0).to(out.dtype)


def lse_softmax(x: Tensor, value: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """The softmax of ``x`` in the compute dtype (0 for rows whose log-sum-exp ``value``, dimension kept, is
    ``-inf``) and that mask: the derivative of the log-sum-exp."""
    z = to_compute(x, "input")
    masked = value == -_INF  # every entry -inf (or the axis is empty): gradient 0, not exp(-inf + inf)
    return torch.softmax(torch.where(masked, 0.0, z), dim), masked


def logsumexp_vjp(x: Tensor, value: Tensor, grad: Tensor, dim: int) -> Tensor:
    """``grad`` (dimension ``dim`` kept) times the softmax of ``x``; 0 for fully masked rows."""
    p, masked = lse_softmax(x, value, dim)
    return torch.where(masked, 0.0, grad.to(p.dtype) * p).to(x.dtype)


def logsumexp_jvp(x: Tensor, value: Tensor, tangent: Tensor, dim: int) -> Tensor:
    """The tangent of the log-sum-exp (dimension ``dim`` kept)."""
    p, masked = lse_softmax(x, value, dim)
    t = torch.where(p == 0, 0.0, tangent.to(p.dtype))
    return torch.where(masked, 0.0, (p * t).sum(dim, keepdim=True)).to(value.dtype)


def denominators(
    target: Tensor, weight: Tensor | None, dim: int, ignore_index: int, like: Tensor
) -> tuple[Tensor, Tensor]:
    """``mean``'s denominators (:func:`ce_forward`'s ``denom`` and ``n_rows``) from the targets alone: the total
    weight of the rows not ignored and their count (the row count twice for probability targets)."""
    acc = accumulator(like)
    if target.is_floating_point():
        n = torch.tensor(float(target.numel() // max(target.shape[dim], 1)), dtype=acc, device=target.device)
        return n, n.clone()
    valid = kept(target, ignore_index)
    w_y = valid.to(acc) if weight is None else torch.where(valid, weight.to(acc)[torch.where(valid, target, 0)], 0.0)
    return w_y.sum(), valid.sum(dtype=acc)


def ce_jvp(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None,
    dim: int,
    opts: Options,
    lse: RowLse | None,
    denom: Tensor,
    n_rows: Tensor,
    t_logits: Tensor | None,
    t_target: Tensor | None,
) -> Tensor:
    """The tangent of :func:`ce_forward`'s loss. The loss is a sum of per-row terms, so its tangent is
    :math:`\\sum \\nabla\\ell \\cdot t` with :func:`ce_backward`'s gradient for an upstream gradient of ones, summed
    per row for ``reduction="none"``; 0 where the loss does not read an entry (ignored rows), whatever the tangent."""
    z = to_compute(logits)
    want_t = t_target is not None and target.is_floating_point()
    ones = torch.ones_like(z.sum(dim)) if opts.reduction == "none" else z.new_ones(())
    dz, dt = ce_backward(z, target, weight, dim, opts, lse, denom, n_rows, ones, want_t)
    per_entry = torch.zeros_like(z)
    if t_logits is not None:
        per_entry = per_entry + torch.where(dz == 0, 0.0, dz * t_logits.to(z.dtype))
    if dt is not None and t_target is not None:
        per_entry = per_entry + torch.where(dt == 0, 0.0, dt * t_target.to(z.dtype))
    dloss = per_entry.sum(dim) if opts.reduction == "none" else per_entry.sum(dtype=accumulator(per_entry))
    return dloss.to(result_dtype(logits.dtype))

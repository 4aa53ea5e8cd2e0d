r"""Vocab-parallel cross-entropy on ``torch.distributed``: each rank holds a slice of the vocabulary.

In tensor-parallel training the output layer's weight :math:`W` (and so the logits) is split by vocabulary:
rank :math:`r` holds the columns :math:`[s_r, s_r + V_r)` of the logits, for the same tokens as every other rank.
The loss and the gradients must equal those of the whole vocabulary on one process; what each rank can do alone
is summarise its slice per row, and the summaries combine exactly, as the chunks of the online log-sum-exp do
(see :mod:`softmaxkit.torch.linear`):

.. math:: M = \max_r m_r, \qquad S = \sum_r S_r\, e^{m_r - M}, \qquad \operatorname{lse} = M + \log S .

:math:`S` is kept as :math:`1 + r` with the maximum's own term out of :math:`r`, and :math:`\log S` as
``log1p(r)`` (the engine's :class:`softmaxkit._engine.Lse`): a rank holding :math:`M` sends its own :math:`r_k`,
every other rank its whole :math:`S_k e^{m_k - M}`, and a count of the ranks holding :math:`M` adds the extra
maxima back exactly (:func:`softmaxkit._engine.share`, :func:`softmaxkit._engine.pool`).

Two collectives, both in the forward
------------------------------------
1. ``all_reduce(MAX)`` of the row maxima :math:`m_r` gives :math:`M`.
2. One fused ``all_reduce(SUM)`` of a single buffer that holds, per row, the rank's share of :math:`r`,
   whether it holds :math:`M`, the target's shifted logit :math:`z_y - M` (from the rank that holds it, 0
   elsewhere), the target's class weight, and the smoothing sum :math:`\sum_{c} w_c (z_c - M)` over the
   slice; and, once, :math:`V_r` and :math:`\sum_c w_c` of the slice.

After them every rank knows the full-vocabulary row statistics and computes the identical loss. Label smoothing
spreads :math:`\varepsilon` over the **global** vocabulary :math:`V = \sum_r V_r`, read from the same buffer
(Megatron-LM #737 used the local :math:`V_r`, which overweights the smoothing term by the number of ranks).

The backward needs no collective for the local logits: with the saved per-row :math:`(M, \log S)` each rank
forms its own columns of :math:`p - q` (the target column only on the rank that holds it). In the linear variant
the hidden states feed every rank's logits, so their gradient is the sum of the ranks' contributions: one
``all_reduce(SUM)`` in the backward, after which every rank holds the full gradient of its (replicated)
``hidden``.

The same code runs on NCCL (GPUs) and gloo (CPU); the tests spawn 2 and 4 gloo ranks on 127.0.0.1 and compare
with the single-process loss and gradients. In the linear variant a rank's CUDA slice of :math:`W` goes through
the Triton kernels of :func:`softmaxkit.torch.linear_cross_entropy` (its row statistics feed the same two
collectives; its backward is deterministic when ``torch.are_deterministic_algorithms_enabled()``, and exact).
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat.torch as _xp
import torch
import torch.distributed as dist
from torch.autograd.function import once_differentiable

from .. import _engine, _validate
from . import _blocks as blk
from . import _core, _triton
from ._core import Options

__all__ = ["vocab_parallel_cross_entropy", "vocab_parallel_linear_cross_entropy"]

Tensor = torch.Tensor
_INF = math.inf


def _combine(st: blk.RowStats, tg: blk.Targets, group: Any) -> blk.RowStats:
    """Full-vocabulary row statistics from this rank's (two collectives); fills in ``tg``'s global fields.

    ``st`` is relative to this rank's row maxima; the result to the global ones.
    """
    n = st.m.shape[0]
    dt = st.m.dtype
    # 1. the row maxima (one extra -inf entry: no rank ever sends an empty buffer)
    big_m = torch.cat([st.m, st.m.new_full((1,), -_INF)])
    dist.all_reduce(big_m, op=dist.ReduceOp.MAX, group=group)
    m = big_m[:n]
    shift = torch.where(st.m == -_INF, -_INF, st.m - blk.finite_or_zero(m))  # <= 0
    local_bad = torch.isnan(st.m) | (st.m == _INF)  # a nan or +inf here poisons the row on every rank
    own = tg.own
    local_sum = tg.local_w_sum
    rest, tops = _engine.share(_xp, _engine.Lse(st.m, st.log_s), m)
    cols = [
        torch.where(local_bad, math.nan, rest),
        tops,
        torch.where(own, st.d_y + shift, 0.0),
        tg.w_y,
    ]
    if st.wd is not None:
        cols.append(st.wd + local_sum * torch.where(st.m == -_INF, 0.0, shift))
    dev = st.m.device
    scalars = torch.stack(
        [torch.as_tensor(float(tg.vocab), dtype=dt, device=dev), torch.as_tensor(local_sum, dtype=dt, device=dev)]
    )
    # 2. one fused sum: per row S e^{m - M}, z_y - M, w_y (and the smoothing sum); V_r and sum(w) once
    pack = torch.cat([torch.stack(cols).reshape(-1), scalars])
    dist.all_reduce(pack, op=dist.ReduceOp.SUM, group=group)
    k = len(cols)
    rows = pack[: k * n].view(k, n)
    log_s = _engine.pool(_xp, m, rows[0], rows[1]).log_norm
    log_s = torch.where(_engine.bad_rows(_xp, m), math.nan, log_s)
    tg.size = round(float(pack[k * n]))
    tg.w_sum = pack[k * n + 1]
    tg.w_y = rows[3]
    tg.denom = tg.w_y.sum(dtype=blk.accumulator(dt, tg.w_y.device))
    return blk.RowStats(m, log_s, rows[2], rows[4] if st.wd is not None else None)


def _restore(tg: blk.Targets, size: int, w_sum: Tensor, w_y: Tensor) -> None:
    tg.size, tg.w_sum, tg.w_y = size, w_sum, w_y
    tg.denom = w_y.sum(dtype=blk.accumulator(w_y.dtype, w_y.device))


def _valid_rows(x: Tensor, tg: blk.Targets) -> Tensor:
    return x if tg.idx is None else x.index_select(0, tg.idx)


def _statistics(tg: blk.Targets, st: blk.RowStats) -> tuple[Tensor, ...]:
    """What the backward needs of the combined statistics, as tensors (``setup_context`` saves them): the row
    statistics, the global target weights, the global class-weight sum and vocabulary size."""
    size = torch.tensor(tg.size, dtype=torch.int64)
    return st.m, st.log_s, tg.w_y, torch.as_tensor(tg.w_sum, dtype=st.m.dtype, device=st.m.device), size


def _save(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
    """Saves the tensor inputs and the statistics (outputs 1-4, not differentiable); ``ctx.size`` the global
    vocabulary."""
    ctx.mark_non_differentiable(*output[1:])
    ctx.size = int(output[5])
    ctx.save_for_backward(*(x if isinstance(x, Tensor) or x is None else None for x in inputs[:5]), *output[1:5])


class _VocabParallelCrossEntropy(torch.autograd.Function):
    """Outputs ``(loss, m, log_s, w_y, w_sum, size)``; all but the loss are not differentiable (see
    :func:`_statistics`)."""

    @staticmethod
    def forward(
        logits: Tensor, target: Tensor, weight: Tensor | None, opts: Options, start: int, group: Any
    ) -> tuple[Tensor, ...]:
        ct = _core.compute_dtype(logits.dtype)
        vocab = int(logits.shape[1])
        tg = blk.targets(target, weight, vocab, opts, ct, start)
        rows = _valid_rows(logits, tg).to(ct)
        work, _ = _core.cap(rows, opts.softcap)
        if work is logits:
            work = work.clone()  # blk.block_stats_ works in place
        st = _combine(blk.block_stats_(work, tg.y, 0, vocab, tg.cw, opts.label_smoothing > 0), tg, group)
        del work
        _core.check_labels(target, tg.size, opts.ignore_index, "the vocabulary of the group")
        loss = blk.total_loss(tg, st, logits.shape[0]).to(_core.result_dtype(logits.dtype))
        return (loss, *_statistics(tg, st))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        _save(ctx, inputs, output)
        ctx.opts, ctx.start = inputs[3], inputs[4]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
        logits, target, weight, _opts, _start, m, log_s, w_y, w_sum = ctx.saved_tensors
        ct = _core.compute_dtype(logits.dtype)
        vocab = int(logits.shape[1])
        tg = blk.targets(target, weight, vocab, ctx.opts, ct, ctx.start)
        _restore(tg, ctx.size, w_sum, w_y)
        zc, dcap = _core.cap(_valid_rows(logits, tg).to(ct), ctx.opts.softcap)
        e = zc - blk.finite_or_zero(m).unsqueeze(1)
        loc = blk.local_targets(tg.y, 0, vocab)[0]
        d_y = e.gather(1, loc).squeeze(1)
        st = blk.RowStats(m, log_s, d_y, None)
        g = blk.block_grad_(tg, e.exp_(), dcap, tg.y, d_y, 0, vocab, st, tg.w_y, blk.upstream_scale(tg, grad, ct))
        if tg.idx is not None:
            g = torch.zeros(logits.shape, dtype=ct, device=logits.device).index_copy_(0, tg.idx, g)
        return g.to(logits.dtype), None, None, None, None, None


class _VocabParallelLinearCrossEntropy(torch.autograd.Function):
    """Outputs ``(loss, m, log_s, w_y, w_sum, size)``, as :class:`_VocabParallelCrossEntropy`."""

    @staticmethod
    def forward(
        hidden: Tensor,
        lw: Tensor,
        bias: Tensor | None,
        target: Tensor,
        weight: Tensor | None,
        opts: Options,
        plan: blk.Plan,
        start: int,
        group: Any,
    ) -> tuple[Tensor, ...]:
        if _triton.use_triton(hidden, lw):  # the rank's slice by the Triton kernels (CUDA), inputs in their dtype
            tg = blk.targets(target, weight, int(lw.shape[0]), opts, torch.float32, start)
            local = _triton.row_stats(hidden, lw, bias, tg)
        else:
            prob = blk.local_problem(hidden, lw, bias, weight, target, opts, plan, start)
            tg, local = prob.tg, blk.local_stats(prob)
        st = _combine(local, tg, group)
        _core.check_labels(target, tg.size, opts.ignore_index, "the vocabulary of the group")
        return (blk.total_loss(tg, st, hidden.shape[0]).to(hidden.dtype), *_statistics(tg, st))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        _save(ctx, inputs, output)
        hidden, lw = inputs[0], inputs[1]
        ctx.opts, ctx.plan, ctx.start, ctx.group = inputs[5:9]
        ctx.triton = _triton.use_triton(hidden, lw)
        ctx.need = tuple(bool(n) for n in ctx.needs_input_grad[:3])

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
        hidden, lw, bias, target, weight, m, log_s, w_y, w_sum = ctx.saved_tensors
        st = blk.RowStats(m, log_s, m, None)
        if ctx.triton:
            tg = blk.targets(target, weight, int(lw.shape[0]), ctx.opts, torch.float32, ctx.start)
            _restore(tg, ctx.size, w_sum, w_y)
            scale = blk.upstream_scale(tg, grad, torch.float32)
            det = torch.are_deterministic_algorithms_enabled()
            gh, gw, gb = _triton.grads(hidden, lw, bias, tg, st, scale, ctx.need, det, 0.0, torch.float32)
        else:
            prob = blk.local_problem(hidden, lw, bias, weight, target, ctx.opts, ctx.plan, ctx.start)
            _restore(prob.tg, ctx.size, w_sum, w_y)
            scale = blk.upstream_scale(prob.tg, grad, prob.h.dtype)
            grads = blk.recompute(prob, st, scale, hidden.shape[0], ctx.need)
            gh, gw, gb = grads.h, grads.w, grads.b
        if gh is not None:  # every rank's logits depend on the (replicated) hidden states
            dist.all_reduce(gh, op=dist.ReduceOp.SUM, group=ctx.group)
        dtypes = (hidden.dtype, lw.dtype, None if bias is None else bias.dtype)
        outs = [None if t is None else t.to(d) for t, d in zip((gh, gw, gb), dtypes, strict=True)]
        return outs[0], outs[1], outs[2], None, None, None, None, None, None


def _group_start(group: Any, vocab_start: Any, local_vocab: int) -> int:
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "vocab-parallel cross-entropy needs torch.distributed: call torch.distributed.init_process_group "
            "first (a world of one process works too)"
        )
    if vocab_start is None:
        return dist.get_rank(group) * local_vocab
    start = _validate.integer(vocab_start, "vocab_start")
    if start < 0:
        raise ValueError(f"vocab_start must be >= 0; got {start}")
    return start


def _check_target(target: Any, batch: tuple[int, ...], what: str) -> Tensor:
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor; got {type(target).__name__}")
    if target.is_floating_point() or target.dtype == torch.bool or target.dtype.is_complex:
        raise TypeError(f"target must hold integer class indices; got dtype {target.dtype}")
    if tuple(target.shape) != batch:
        raise ValueError(f"target must have {what}, {batch}; got shape {tuple(target.shape)}")
    return target


def vocab_parallel_cross_entropy(
    local_logits: Tensor,
    target: Tensor,
    /,
    *,
    group: Any = None,
    vocab_start: int | None = None,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    z_loss: float = 0.0,
    softcap: float | None = None,
) -> Tensor:
    r"""Cross-entropy of logits split by vocabulary over the ranks of ``group``; equal to the single-process loss.

    Each rank passes its slice of the logits (the last dimension) and the same targets; every rank gets the same
    loss, and the gradient of its own slice. Two collectives in the forward, none in the backward (module
    notes). Options and special values are those of :func:`softmaxkit.torch.cross_entropy` with class-index
    targets.

    Parameters
    ----------
    local_logits : Tensor
        ``(..., V_r)``: this rank's columns of the logits (vocabulary last, as in Megatron's ``(s, b, v)``).
    target : Tensor
        Integer class indices in the **global** vocabulary, ``local_logits``' shape without the last dimension;
        the same on every rank.
    group : ProcessGroup, optional
        The ranks that share the vocabulary (default: the world).
    vocab_start : int, optional
        First global class index of this rank's slice. Default ``rank * V_r`` (equal slices in rank order).
        The slices of the ranks must tile ``[0, V)``.
    weight : Tensor, optional
        This rank's slice of the class weights, ``(V_r,)``.
    ignore_index, label_smoothing, reduction, z_loss, softcap
        As :func:`softmaxkit.torch.cross_entropy`; ``label_smoothing`` spreads over the global vocabulary.

    Returns
    -------
    Tensor
        0-d for ``mean``/``sum``, ``target``'s shape for ``none``; the same on every rank.

    Raises
    ------
    RuntimeError
        ``torch.distributed`` is not initialised.
    TypeError, ValueError
        Bad arguments (named with their values); a class index outside the global vocabulary (after the
        collectives, on every rank alike).

    Examples
    --------
    A world of one process (``HashStore``: no network), which holds the whole vocabulary:

    >>> import torch, torch.distributed as dist
    >>> from softmaxkit.torch import cross_entropy, vocab_parallel_cross_entropy
    >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    >>> z = torch.tensor([[5.0, 2.0, -1.0, 3.0]])
    >>> vocab_parallel_cross_entropy(z, torch.tensor([0]), label_smoothing=0.1)
    tensor(0.4469)
    >>> cross_entropy(z, torch.tensor([0]), label_smoothing=0.1)
    tensor(0.4469)
    >>> dist.destroy_process_group()
    """
    opts = _core.options(ignore_index, label_smoothing, reduction, z_loss, softcap)
    if not isinstance(local_logits, torch.Tensor):
        raise TypeError(f"local_logits must be a torch.Tensor; got {type(local_logits).__name__}")
    if local_logits.ndim < 1:
        raise ValueError("local_logits must have the vocabulary as its last dimension; got a 0-d tensor")
    _core.compute_dtype(local_logits.dtype, "local_logits")
    t = _check_target(target, tuple(local_logits.shape[:-1]), "local_logits' shape without the last dimension")
    local_vocab = int(local_logits.shape[-1])
    if weight is not None:
        _core.check_weight(weight, local_vocab)
    start = _group_start(group, vocab_start, local_vocab)
    z2 = local_logits.reshape(-1, local_vocab)
    loss = blk.apply_all(_VocabParallelCrossEntropy, z2, t.reshape(-1), weight, opts, start, group)[0]
    return loss.reshape(t.shape) if opts.reduction == "none" else loss


def vocab_parallel_linear_cross_entropy(
    hidden: Tensor,
    local_weight: Tensor,
    target: Tensor,
    /,
    *,
    bias: Tensor | None = None,
    group: Any = None,
    vocab_start: int | None = None,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_size: int | tuple[int, int] | None = None,
) -> Tensor:
    r""":func:`softmaxkit.torch.linear_cross_entropy` with the projection split by vocabulary over ``group``.

    Rank :math:`r` holds rows :math:`[s_r, s_r + V_r)` of the output projection (and of the bias); ``hidden``
    and ``target`` are the same on every rank. The logits are formed chunk by chunk as in
    :func:`~softmaxkit.torch.linear_cross_entropy`, summarised per row, and combined with the same two
    collectives as :func:`vocab_parallel_cross_entropy`; the backward recomputes the blocks (the global lse is
    known only after the collectives) and all-reduces the gradient of ``hidden``, which every rank then holds in
    full. ``local_weight``'s and ``bias``' gradients are this rank's slices.

    Parameters
    ----------
    hidden : Tensor
        ``(..., D)``, the same on every rank.
    local_weight : Tensor
        ``(V_r, D)``: this rank's rows of the output projection.
    target : Tensor
        Global class indices, ``hidden``'s shape without ``D``.
    bias : Tensor, optional
        This rank's slice ``(V_r,)``.
    group, vocab_start, weight, ignore_index, label_smoothing, reduction, z_loss, softcap
        As :func:`vocab_parallel_cross_entropy`.
    chunk_size
        As :func:`~softmaxkit.torch.linear_cross_entropy`.

    Returns
    -------
    Tensor
        The loss, the same on every rank.

    Raises
    ------
    RuntimeError, TypeError, ValueError
        As :func:`vocab_parallel_cross_entropy`.

    Examples
    --------
    >>> import torch, torch.distributed as dist
    >>> from softmaxkit.torch import linear_cross_entropy, vocab_parallel_linear_cross_entropy
    >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    >>> h, w = torch.ones(2, 3), torch.arange(12.0).reshape(4, 3) / 10
    >>> y = torch.tensor([3, 1])
    >>> vocab_parallel_linear_cross_entropy(h, w, y, z_loss=1e-3)
    tensor(1.4063)
    >>> linear_cross_entropy(h, w, y, z_loss=1e-3)
    tensor(1.4063)
    >>> dist.destroy_process_group()
    """
    opts = _core.options(ignore_index, label_smoothing, reduction, z_loss, softcap)
    for name, value in (("hidden", hidden), ("local_weight", local_weight)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor; got {type(value).__name__}")
    if local_weight.ndim != 2:
        raise ValueError(f"local_weight must be 2-d (V_r, D); got shape {tuple(local_weight.shape)}")
    if hidden.ndim < 1 or hidden.shape[-1] != local_weight.shape[1]:
        raise ValueError(
            f"hidden must have shape (..., D) with D = local_weight.shape[1] = {local_weight.shape[1]}; got shape "
            f"{tuple(hidden.shape)}"
        )
    if not hidden.is_floating_point() or hidden.dtype != local_weight.dtype:
        raise TypeError(
            f"hidden and local_weight must share one floating dtype; got {hidden.dtype} and {local_weight.dtype}"
        )
    t = _check_target(target, tuple(hidden.shape[:-1]), "hidden's shape without the last dimension")
    local_vocab = int(local_weight.shape[0])
    if bias is not None and (not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (local_vocab,)):
        raise ValueError(f"bias must be a tensor of shape ({local_vocab},); got {getattr(bias, 'shape', bias)!r}")
    if weight is not None:
        _core.check_weight(weight, local_vocab)
    start = _group_start(group, vocab_start, local_vocab)
    h2 = hidden.reshape(-1, hidden.shape[-1])
    buffers = 1 if opts.softcap is None else 2  # the softcap keeps its derivative in a second block
    plan = blk.make_plan(chunk_size, h2.shape[0], local_weight.shape[0], h2.shape[1], buffers)
    args = (h2, local_weight, bias, t.reshape(-1), weight, opts, plan, start, group)
    loss = blk.apply_all(_VocabParallelLinearCrossEntropy, *args)[0]
    return loss.reshape(t.shape) if opts.reduction == "none" else loss

r"""Chunked cross-entropy of a linear layer's output, block by block: the machinery of :mod:`.linear` and
:mod:`.distributed`.

A *block* is ``n`` tokens by ``v`` vocabulary entries of the logits :math:`Z = H W^\top + b`; nothing larger
than one block is ever formed. Per block, :func:`block_stats_` summarises each row (maximum, log of the shifted
sum of exponentials, the target's shifted logit, the weighted logit sum for label smoothing), :func:`merge`
combines the summaries of disjoint column sets exactly (the online log-sum-exp), and :func:`block_grad_` turns a
block into its gradient once the row's final summary is known. :func:`fused` and :func:`recompute` drive them
over all chunks; :mod:`.linear` explains the mathematics and the memory.

The vocabulary may be one rank's slice (:mod:`.distributed`): :class:`Targets` then holds targets in the slice's
coordinates and the class constants of the whole vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import array_api_compat.torch as _xp
import torch

from .. import _engine, _validate
from . import _core
from ._core import Options

Tensor = torch.Tensor
_INF = math.inf

BLOCK_ELEMENTS = 2**24
"""Largest default block: ``n * V`` logits (64 MiB in float32)."""

MIN_ROWS = 64
"""Fewest tokens per default chunk: matrix products with fewer rows run well below the machine's peak on CPU."""

MEMORY_RATIO = 18
"""The default block keeps the step's extra memory this many times below the naive path's (the goal is 16;
the margin covers the :math:`O(N)` per-row numbers)."""


class Plan(NamedTuple):
    rows: int  # tokens per chunk
    cols: int  # vocabulary entries per chunk (>= the local vocabulary: one block per token chunk)


def default_rows(n: int, d: int, v: int, buffers: int = 1) -> int:
    r"""Tokens per chunk when ``chunk_size`` is not given, sized from the problem.

    The naive path (``F.cross_entropy(H @ W.T, y)`` and its backward) holds the logits, their log-softmax and
    their gradient, :math:`3NV` floats, besides the gradients :math:`\nabla_H, \nabla_W` (:math:`(N + V)D`)
    that every method returns. Ours holds the gradients and ``buffers`` blocks of ``rows x V`` (two with a
    softcap). The block gets what is left of :data:`MEMORY_RATIO`-th of the naive total after the gradients,
    at most :data:`BLOCK_ELEMENTS` and at least :data:`MIN_ROWS` rows (where the gradients alone exceed that
    share, as for a large :math:`D` against few tokens, no block size can reach the ratio). At
    :math:`N = 4096, D = 512, V = 32768` that is 136 tokens (17 MiB in float32).
    """
    grads = (n + v) * d
    budget = (3 * n * v + grads) // MEMORY_RATIO - grads
    rows = min(budget // max(buffers, 1), BLOCK_ELEMENTS) // max(v, 1)
    return max(MIN_ROWS, rows // 8 * 8)


def make_plan(chunk_size: Any, n: int, v: int, d: int = 0, buffers: int = 1) -> Plan:
    if chunk_size is None:
        return Plan(max(1, min(default_rows(n, d, v, buffers), n)), max(v, 1))
    if isinstance(chunk_size, tuple):
        if len(chunk_size) != 2:
            raise ValueError(f"chunk_size must be an int or a pair (tokens, vocabulary); got {chunk_size!r}")
        rows, cols = (_validate.integer(c, "chunk_size") for c in chunk_size)
    else:
        rows, cols = _validate.integer(chunk_size, "chunk_size"), v
    if rows < 1 or cols < 1:
        raise ValueError(f"chunk_size must hold positive sizes; got {chunk_size!r}")
    return Plan(max(1, min(rows, n)), max(1, min(cols, v)))


def apply_all(function: Any, *args: Any) -> tuple[Tensor, ...]:
    """``function.apply(*args)`` for a ``torch.autograd.Function`` with several outputs, typed."""
    out: tuple[Tensor, ...] = function.apply(*args)
    return out


accumulator = _core.accumulator_dtype


@dataclass
class Targets:
    """The rows not ignored, their targets, and the class constants of the loss.

    The class weights ``cw`` may be one rank's slice of the vocabulary (see :mod:`.distributed`): ``y`` is then
    in that slice's coordinates (outside ``[0, V_local)`` where another rank holds the target), while ``size``,
    ``w_sum``, ``w_y`` and ``denom`` describe the whole vocabulary.
    """

    opts: Options
    cw: Tensor | None  # (V_local,) class weights, compute dtype
    vocab: int  # entries of the local vocabulary
    idx: Tensor | None  # rows not ignored (None: all rows)
    y: Tensor  # (n_valid,) their targets, local coordinates
    size: int  # entries of the whole vocabulary (label smoothing's C)
    w_sum: Tensor | float  # sum of the class weights over the whole vocabulary
    w_y: Tensor  # (n_valid,) class weight of each target
    denom: Tensor  # mean's CE denominator, sum of w_y (accumulator dtype)

    @property
    def n_valid(self) -> int:
        return int(self.y.shape[0])

    @property
    def local_w_sum(self) -> Tensor | float:
        return float(self.vocab) if self.cw is None else self.cw.sum()

    @property
    def own(self) -> Tensor:
        """Rows whose target lies in the local vocabulary."""
        return (self.y >= 0) & (self.y < self.vocab)


def targets(target: Tensor, weight: Tensor | None, vocab: int, opts: Options, ct: torch.dtype, start: int) -> Targets:
    """The targets as far as this process knows them: final when it holds the whole vocabulary (``start`` 0);
    :mod:`.distributed` replaces ``size``, ``w_sum``, ``w_y`` and ``denom`` after its all-reduce."""
    valid = _core.kept(target, opts.ignore_index)
    n_valid = int(valid.sum())
    idx = None if n_valid == target.shape[0] else torch.nonzero(valid).squeeze(1)
    y = (target if idx is None else target.index_select(0, idx)) - start
    cw = None if weight is None else weight.to(ct)
    tg = Targets(opts, cw, vocab, idx, y, vocab, 0.0, y.new_zeros(0, dtype=ct), y.new_zeros((), dtype=ct))
    if cw is None:
        w_y = tg.own.to(ct)
    else:
        w_y = torch.where(tg.own, cw[y.clamp(0, max(vocab - 1, 0))], 0.0) if vocab else y.new_zeros(y.shape, dtype=ct)
    tg.w_sum, tg.w_y = tg.local_w_sum, w_y
    tg.denom = w_y.sum(dtype=accumulator(ct, target.device))
    return tg


@dataclass
class Problem:
    """:class:`Targets` with the inputs of the projection in the compute dtype and the chunk plan."""

    tg: Targets
    h: Tensor  # (N, D) hidden (the tensor itself when the dtype already matches)
    w: Tensor  # (V_local, D) projection
    b: Tensor | None  # (V_local,)
    plan: Plan

    def rows(self, c0: int, c1: int) -> Tensor:
        """Hidden states of valid rows ``c0:c1``."""
        if self.tg.idx is None:
            return self.h[c0:c1]
        return self.h.index_select(0, self.tg.idx[c0:c1])


def local_problem(
    hidden: Tensor,
    lw: Tensor,
    bias: Tensor | None,
    weight: Tensor | None,
    target: Tensor,
    opts: Options,
    plan: Plan,
    start: int = 0,
) -> Problem:
    """:func:`targets` with the projection's inputs cast to the compute dtype."""
    ct = _core.compute_dtype(hidden.dtype, "hidden")
    tg = targets(target, weight, int(lw.shape[0]), opts, ct, start)
    return Problem(tg, hidden.to(ct), lw.to(ct), None if bias is None else bias.to(ct), plan)


class Buffers:
    """One logits block (and one for the softcap derivative), reused by every chunk."""

    def __init__(self, prob: Problem, need_cap: bool) -> None:
        size = prob.plan.rows * min(prob.plan.cols, max(prob.tg.vocab, 1))
        self.z = torch.empty(size, dtype=prob.h.dtype, device=prob.h.device)
        self.t = torch.empty(size, dtype=prob.h.dtype, device=prob.h.device) if need_cap else None

    def logits(self, prob: Problem, h: Tensor, v0: int, v1: int) -> tuple[Tensor, Tensor | None]:
        """Block ``h @ W[v0:v1].T + b[v0:v1]``, soft-capped; with the cap's derivative 1 - tanh^2 if kept."""
        n, v = h.shape[0], v1 - v0
        z = self.z[: n * v].view(n, v)
        if prob.b is None:
            torch.mm(h, prob.w[v0:v1].t(), out=z)
        else:
            torch.addmm(prob.b[v0:v1], h, prob.w[v0:v1].t(), out=z)
        cap = prob.tg.opts.softcap
        if cap is None:
            return z, None
        z.div_(cap).tanh_()
        t = None
        if self.t is not None:
            t = self.t[: n * v].view(n, v)
            torch.mul(z, z, out=t).neg_().add_(1.0)
        return z.mul_(cap), t


class RowStats(NamedTuple):
    """Per row, relative to the row maximum ``m`` of the (capped) logits seen so far."""

    m: Tensor
    log_s: Tensor  # log sum e^{z - m}, as log1p of the sum without one maximum's term (1)
    d_y: Tensor  # z_y - m (-inf where the target lies elsewhere)
    wd: Tensor | None  # sum_c w_c (z_c - m), for label smoothing


def weighted_row_sum(z: Tensor, cw: Tensor | None) -> Tensor:
    """:math:`\\sum_c w_c z_c` per row; a ``-inf`` logit of weight 0 contributes 0 (not ``0 * inf``)."""
    if cw is None:
        return z.sum(1)
    out = torch.mv(z, cw)
    odd = torch.isnan(out)
    if bool(odd.any()):  # rare: recompute those rows with the masked product
        rows = torch.nonzero(odd).squeeze(1)
        out[rows] = torch.where(cw == 0, 0.0, z.index_select(0, rows) * cw).sum(1)
    return out


def local_targets(y: Tensor, v0: int, v1: int) -> tuple[Tensor, Tensor]:
    """Column of each target inside block ``[v0, v1)`` (clamped) and whether the block holds it."""
    loc = y - v0
    own = (loc >= 0) & (loc < v1 - v0)
    return loc.clamp(0, max(v1 - v0 - 1, 0)).unsqueeze(1), own


def finite_or_zero(m: Tensor) -> Tensor:
    return torch.where(torch.isfinite(m), m, 0.0)


def block_stats_(z: Tensor, y: Tensor, v0: int, v1: int, cw: Tensor | None, smooth: bool) -> RowStats:
    r"""Statistics of one block, which is left holding :math:`e^{z - m}` (``m`` its own row maximum; a row of
    ``-inf`` keeps ``log_s = 0``, so that :math:`e^{d - \text{log\_s}}` is 0 and its loss ``inf``).

    ``log_s`` is :math:`\operatorname{log1p}` of the sum without the maximum's own term, the engine's
    :class:`softmaxkit._engine.Lse` form: summing the 1 in first would round a confident row's loss to 0."""
    if z.shape[1]:
        m, top = z.max(1, keepdim=True)
    else:
        m, top = z.new_full((z.shape[0], 1), -_INF), None
    z.sub_(finite_or_zero(m))
    loc, own = local_targets(y, v0, v1)
    m = m.squeeze(1)
    d_y = torch.where(own, z.gather(1, loc).squeeze(1), -_INF) if z.shape[1] else torch.full_like(m, -_INF)
    wd = weighted_row_sum(z, cw) if smooth else None
    z.exp_()
    if top is None:
        return RowStats(m, torch.zeros_like(m), d_y, wd)
    # the sum without one maximum's term, in place: that entry is set to 0 for the sum and then put back
    kept = z.gather(1, top)
    rest = z.scatter_(1, top, 0.0).sum(1)
    z.scatter_(1, top, kept)
    return RowStats(m, torch.where(m == -_INF, 0.0, torch.log1p(rest)), d_y, wd)


def merge(a: RowStats, b: RowStats, w_a: Tensor | float, w_b: Tensor | float) -> RowStats:
    r"""Combine the statistics of two disjoint sets of columns (the online log-sum-exp).

    ``(m, log_s)`` merge as the engine's :class:`~softmaxkit._engine.Lse` (:func:`softmaxkit._engine.merge`);
    ``d_y`` (finite on the side that holds the target, ``-inf`` on the other) and :math:`\sum w (z - m)` are
    moved to the new maximum; ``w_a``, ``w_b`` are the class-weight sums of the two sides. A row that is
    ``-inf`` everywhere keeps ``log_s = 0`` (its loss is then ``inf``, as for the full logits).
    """
    m, log_s = _engine.merge(_xp, _engine.Lse(a.m, a.log_s), _engine.Lse(b.m, b.log_s))
    safe = finite_or_zero(m)

    def moved(x: RowStats) -> Tensor:
        return torch.where(x.m == -_INF, -_INF, x.m - safe)  # <= 0

    da, db = moved(a), moved(b)
    d_y = torch.maximum(a.d_y + da, b.d_y + db)  # one side holds the target, the other says -inf
    wd = None
    if a.wd is not None and b.wd is not None:
        wd = a.wd + w_a * torch.where(a.m == -_INF, 0.0, da) + b.wd + w_b * torch.where(b.m == -_INF, 0.0, db)
    return RowStats(m, log_s, d_y, wd)


def chunk_stats(prob: Problem, buf: Buffers, h: Tensor, y: Tensor, keep: bool) -> tuple[RowStats, Tensor | None]:
    """Row statistics of one token chunk over the local vocabulary, in one pass (no gradient).

    With ``keep`` and a single vocabulary block, the block is returned holding :math:`e^{z - m}` (and the
    buffer's ``t`` the softcap derivative), ready to become the gradient.
    """
    vocab, step = prob.tg.vocab, prob.plan.cols
    smooth = prob.tg.opts.label_smoothing > 0
    st: RowStats | None = None
    w_seen: Tensor | float = 0.0
    for v0 in range(0, max(vocab, 1), step):
        v1 = min(v0 + step, vocab)
        z, _ = buf.logits(prob, h, v0, v1)
        cw = None if prob.tg.cw is None else prob.tg.cw[v0:v1]
        part = block_stats_(z, y, v0, v1, cw, smooth)
        w_part = float(v1 - v0) if cw is None else cw.sum()
        st = part if st is None else merge(st, part, w_seen, w_part)
        w_seen = w_seen + w_part
        if v1 == vocab and v0 == 0:
            return part, (z if keep else None)
    assert st is not None
    return st, None


def row_loss(tg: Targets, st: RowStats, w_y: Tensor) -> tuple[Tensor, Tensor | None]:
    """Per-row CE loss and z-loss from the row statistics (see :func:`softmaxkit.torch._core.ce_forward`)."""
    o = tg.opts
    eps = o.label_smoothing
    coef = (1.0 - eps) * w_y
    row = torch.where(coef == 0, 0.0, coef * (st.log_s - st.d_y))
    if st.wd is not None:
        row = row + (eps / tg.size) * (tg.w_sum * st.log_s - st.wd)
    if o.z_loss == 0:
        return row, None
    lse = st.m + st.log_s
    return row, o.z_loss * lse * lse


class Scale(NamedTuple):
    """Upstream factors of the CE part and of the z-loss part: 0-d (mean, sum) or one per row (none)."""

    ce: Tensor
    z: Tensor

    def rows(self, c0: int, c1: int) -> Scale:
        return Scale(*(s if s.ndim == 0 else s[c0:c1] for s in self))


class Grads:
    """Accumulators of the gradients in the compute dtype; only those asked for."""

    def __init__(self, prob: Problem, n_rows: int, need: tuple[bool, ...]) -> None:
        like = prob.h
        self.h = torch.zeros((n_rows, like.shape[1]), dtype=like.dtype, device=like.device) if need[0] else None
        self.w = torch.zeros_like(prob.w) if need[1] else None
        self.b = torch.zeros(prob.tg.vocab, dtype=like.dtype, device=like.device) if need[2] else None


def block_grad_(
    tg: Targets,
    e: Tensor,
    t: Tensor | None,
    y: Tensor,
    d_y: Tensor,
    v0: int,
    v1: int,
    st: RowStats,
    w_y: Tensor,
    scale: Scale,
) -> Tensor:
    r"""Turn a block holding :math:`e^{z - m}` (``m`` the row's final maximum) into
    :math:`\partial \ell / \partial z`, in place.

    Per row, with upstream factors :math:`s` and :math:`s_z` (``1/denominator`` under ``mean``, the row's own
    upstream gradient under ``none``), :math:`c_1 = (1-\varepsilon) w_y s`, :math:`c_2 = \varepsilon s / V`,
    :math:`c_z = 2\lambda\operatorname{lse}\, s_z`: :math:`G_c = p_c (c_1 + c_2 \sum w + c_z) - c_2 w_c`, and at
    the target :math:`c_1 \operatorname{expm1}(\log p_y) + c_2 (p_y \sum w - w_y) + c_z p_y` (no cancellation
    as :math:`p_y \to 1`), times :math:`1 - \tanh^2` under a softcap. ``d_y`` is :math:`z_y - m` for the rows
    whose target lies in this block.
    """
    o = tg.opts
    eps = o.label_smoothing
    c1 = (1.0 - eps) * w_y * scale.ce
    c2 = (eps / tg.size) * scale.ce
    total = c1 + c2 * tg.w_sum
    cz = None
    if o.z_loss > 0:
        lse = st.m + st.log_s
        cz = (2.0 * o.z_loss) * torch.where(torch.isfinite(lse), lse, 0.0) * scale.z
        total = total + cz
    e.mul_((total * torch.exp(-st.log_s)).unsqueeze(1))
    if eps > 0:
        c2_rows = c2.expand(e.shape[0]) if c2.ndim == 0 else c2
        if tg.cw is None:
            e.sub_(c2_rows.unsqueeze(1))
        else:
            e.addr_(c2_rows, tg.cw[v0:v1], alpha=-1.0)
    loc, own = local_targets(y, v0, v1)
    # the target column, exactly (rows whose target lies elsewhere write their own value back: no host sync)
    log_p_y = d_y - st.log_s
    p_y = torch.exp(log_p_y)
    g_y = c1 * torch.expm1(log_p_y) + c2 * (tg.w_sum * p_y - w_y)
    if cz is not None:
        g_y = g_y + cz * p_y
    e.scatter_(1, loc, torch.where(own, g_y, e.gather(1, loc).squeeze(1)).unsqueeze(1))
    if t is not None:
        e.mul_(t)
    return e


def accumulate(prob: Problem, grads: Grads, g: Tensor, h: Tensor, v0: int, v1: int, gh: Tensor | None) -> None:
    """Add block ``g``'s share: ``gh += g @ W[j]``, ``grad_W[j] += g.T @ h``, ``grad_b[j] += sum(g)``."""
    if gh is not None:
        gh.addmm_(g, prob.w[v0:v1])
    if grads.w is not None:
        grads.w[v0:v1].addmm_(g.t(), h)
    if grads.b is not None:
        grads.b[v0:v1] += g.sum(0)


def chunk_grad(
    prob: Problem,
    buf: Buffers,
    grads: Grads,
    h: Tensor,
    y: Tensor,
    w_y: Tensor,
    st: RowStats,
    scale: Scale,
    kept: Tensor | None,
) -> Tensor | None:
    """Gradient of one token chunk, from the kept block or from every vocabulary block recomputed against the
    row's final statistics. Returns the chunk's rows of the hidden-state gradient (or None)."""
    vocab, step = prob.tg.vocab, prob.plan.cols
    gh = torch.zeros_like(h) if grads.h is not None else None
    if kept is not None:
        t = None if buf.t is None else buf.t[: kept.numel()].view_as(kept)
        g = block_grad_(prob.tg, kept, t, y, st.d_y, 0, vocab, st, w_y, scale)
        accumulate(prob, grads, g, h, 0, vocab, gh)
        return gh
    m = finite_or_zero(st.m).unsqueeze(1)
    for v0 in range(0, vocab, step):
        v1 = min(v0 + step, vocab)
        z, t = buf.logits(prob, h, v0, v1)
        loc, _ = local_targets(y, v0, v1)
        d_y = z.sub_(m).gather(1, loc).squeeze(1)
        g = block_grad_(prob.tg, z.exp_(), t, y, d_y, v0, v1, st, w_y, scale)
        accumulate(prob, grads, g, h, v0, v1, gh)
    return gh


def store_rows(prob: Problem, grads: Grads, c0: int, c1: int, gh: Tensor | None) -> None:
    if gh is None or grads.h is None:
        return
    if prob.tg.idx is None:
        grads.h[c0:c1] = gh
    else:
        grads.h.index_copy_(0, prob.tg.idx[c0:c1], gh)


def upstream_scale(tg: Targets, grad: Tensor | None, dt: torch.dtype) -> Scale:
    """Upstream factors: ``grad`` over the ``mean`` denominators (0 when there is nothing to average),
    ``grad`` itself for ``sum``, one per valid row for ``none``; ``grad=None`` means 1."""
    g = torch.ones((), dtype=dt, device=tg.y.device) if grad is None else grad.to(dt)
    red = tg.opts.reduction
    if red == "none":
        rows = g.reshape(-1)
        if tg.idx is not None:
            rows = rows.index_select(0, tg.idx)
        return Scale(rows, rows)
    if red == "sum":
        return Scale(g, g)
    ce = torch.where(tg.denom > 0, g / torch.where(tg.denom > 0, tg.denom, 1.0).to(dt), 0.0)
    return Scale(ce, g / tg.n_valid if tg.n_valid else g * 0.0)


def reduce(tg: Targets, ce: Tensor, z: Tensor | None, n_total: int) -> Tensor:
    """The loss from the per-row losses of the rows not ignored: ``mean`` divides the CE part by the total
    target weight and the z-loss part by the number of rows (0 when either is 0); ``none`` scatters the rows
    back among the ignored ones."""
    o = tg.opts
    if o.reduction == "none":
        rows = ce if z is None else ce + z
        if tg.idx is None:
            return rows
        return torch.zeros(n_total, dtype=rows.dtype, device=rows.device).index_copy_(0, tg.idx, rows)
    acc = tg.denom.dtype
    total = ce.sum(dtype=acc)
    z_total = None if z is None else z.sum(dtype=acc)
    if o.reduction == "mean":
        total = torch.where(tg.denom > 0, total / torch.where(tg.denom > 0, tg.denom, 1.0), 0.0)
        if z_total is not None:
            z_total = z_total / tg.n_valid if tg.n_valid else z_total * 0.0
    return (total if z_total is None else total + z_total).to(ce.dtype)


def local_stats(prob: Problem) -> RowStats:
    """Row statistics of every valid row over the local vocabulary (loss pass only)."""
    buf = Buffers(prob, False)
    parts = []
    for c0 in range(0, prob.tg.n_valid, prob.plan.rows):
        c1 = min(c0 + prob.plan.rows, prob.tg.n_valid)
        parts.append(chunk_stats(prob, buf, prob.rows(c0, c1), prob.tg.y[c0:c1], keep=False)[0])
    return cat_stats(prob, parts, prob.tg.opts.label_smoothing > 0)


def cat_stats(prob: Problem, parts: list[RowStats], smooth: bool) -> RowStats:
    if not parts:
        e = prob.h.new_zeros(0)
        return RowStats(e, e, e, e if smooth else None)
    cols = [torch.cat([getattr(p, f) for p in parts]) for f in ("m", "log_s", "d_y")]
    wd = torch.cat([p.wd for p in parts if p.wd is not None]) if smooth else None
    return RowStats(cols[0], cols[1], cols[2], wd)


def fused(prob: Problem, n_total: int, need: tuple[bool, ...]) -> tuple[Tensor, Grads]:
    """Loss and the gradients for a unit upstream gradient, chunk by chunk in one sweep."""
    buf = Buffers(prob, prob.tg.opts.softcap is not None)
    grads = Grads(prob, n_total, need)
    scale = upstream_scale(prob.tg, None, prob.h.dtype)
    ce_rows: list[Tensor] = []
    z_rows: list[Tensor] = []
    for c0 in range(0, prob.tg.n_valid, prob.plan.rows):
        c1 = min(c0 + prob.plan.rows, prob.tg.n_valid)
        h, y, w_y = prob.rows(c0, c1), prob.tg.y[c0:c1], prob.tg.w_y[c0:c1]
        st, kept = chunk_stats(prob, buf, h, y, keep=True)
        ce, z = row_loss(prob.tg, st, w_y)
        ce_rows.append(ce)
        if z is not None:
            z_rows.append(z)
        store_rows(prob, grads, c0, c1, chunk_grad(prob, buf, grads, h, y, w_y, st, scale, kept))
    empty = prob.h.new_zeros(0)
    ce_all = torch.cat(ce_rows) if ce_rows else empty
    z_all = (torch.cat(z_rows) if z_rows else empty) if prob.tg.opts.z_loss > 0 else None
    return reduce(prob.tg, ce_all, z_all, n_total), grads


def all_rows(tg: Targets, x: Tensor, n_total: int) -> Tensor:
    """Per-row values of the rows not ignored spread over all ``n_total`` rows (0 where ignored)."""
    if tg.idx is None:
        return x
    return x.new_zeros(n_total).index_copy_(0, tg.idx, x)


def valid_rows(tg: Targets, x: Tensor) -> Tensor:
    """The inverse of :func:`all_rows`: the entries of the rows not ignored."""
    return x if tg.idx is None else x.index_select(0, tg.idx)


def total_loss(tg: Targets, st: RowStats, n_total: int) -> Tensor:
    ce, z = row_loss(tg, st, tg.w_y)
    return reduce(tg, ce, z, n_total)


def recompute(prob: Problem, st: RowStats, scale: Scale, n_total: int, need: tuple[bool, ...]) -> Grads:
    """Gradients from the saved row statistics (``m``, ``log_s``), every block recomputed."""
    buf = Buffers(prob, prob.tg.opts.softcap is not None)
    grads = Grads(prob, n_total, need)
    for c0 in range(0, prob.tg.n_valid, prob.plan.rows):
        c1 = min(c0 + prob.plan.rows, prob.tg.n_valid)
        h, y, w_y = prob.rows(c0, c1), prob.tg.y[c0:c1], prob.tg.w_y[c0:c1]
        part = RowStats(st.m[c0:c1], st.log_s[c0:c1], st.m[c0:c1], None)  # d_y is read from each block
        store_rows(prob, grads, c0, c1, chunk_grad(prob, buf, grads, h, y, w_y, part, scale.rows(c0, c1), None))
    return grads

r"""Triton kernels for linear cross-entropy: the logits :math:`Z = H W^\top + b` live only in on-chip tiles.

:func:`softmaxkit.torch.linear_cross_entropy` sends CUDA inputs here. The tensor glue (targets, options, the
loss from the row statistics, the reductions) stays in :mod:`softmaxkit.torch._blocks`, shared with the CPU
path; this module computes two things from plain tensors:

* :func:`row_stats`, the forward: per valid row the statistics of :class:`softmaxkit.torch._blocks.RowStats`
  (row maximum :math:`m`, :math:`\log \sum_c e^{z_c - m}`, the target's :math:`z_y - m` and, for label
  smoothing, :math:`\sum_c w_c (z_c - m)`);
* :func:`grads`, the backward: :math:`\nabla_H = G W`, :math:`\nabla_W = G^\top H`, :math:`\nabla_b = \sum_n G_n`
  from per-row coefficients of :math:`G = \partial \ell / \partial Z`.

Triton itself is imported by the first call (:func:`_kernels`), never by importing this module, so that
``import softmaxkit.torch`` works without Triton and ``TRITON_INTERPRET=1`` set by a test before that first call
takes effect (Triton reads it when a kernel is decorated).

Forward: tiles and the online log-sum-exp
-----------------------------------------
The grid is (row block :math:`\times` vocabulary split). A program owns ``BM`` rows and a contiguous range of
vocabulary tiles of ``BV`` columns. For each tile it forms :math:`Z_{tile} = H_{blk} W_{tile}^\top` with
``tl.dot`` over chunks of ``BK`` features, accumulated in float32, adds the bias, applies the softcap
:math:`c \tanh(z / c)` (``-inf`` stays ``-inf``), and merges the tile into the row's running maximum and sum
(Milakov & Gimelshein 2018):

.. math:: m' = \max(m, \max_c z_c), \qquad s' = s\, e^{m - m'} + \textstyle\sum_c e^{z_c - m'},

where a row whose running maximum is still ``-inf`` contributes 0 (no :math:`e^{-\infty + \infty}`). What is
kept is :math:`s - 1`, the sum without one maximum's own term (ties count 1 each, one left out exactly, as in
:func:`softmaxkit.torch._core.row_lse`): a tile's rest is formed relative to its own maximum, and of two partial
results the one with the larger maximum keeps its rest as it is while the other adds all its terms, moved.
:math:`\log s = \operatorname{log1p}(s - 1)` then keeps its relative accuracy when the maximum dominates (the
loss of a confident, correct prediction *is* that number; Blanchard, Higham & Higham 2021). The target
logit is picked from the tile that holds it, and :math:`\sum_c w_c (z_c - m)` moves with the maximum as
:math:`\sum \leftarrow \sum + W_{seen} (m - m')`. Each program writes four floats per row; a tiny torch merge
over the splits (the same merge, vectorised) gives the row statistics. The splits exist to fill the machine:
with :math:`N = 8192` and ``BM = 64`` there are only 128 row blocks for 132 SMs; 16 splits give 2048 programs,
and the launch order (``GROUP_M`` row blocks next to each other, all splits of them) lets concurrent programs
share the tiles of :math:`H` and :math:`W` in L2. No :math:`N \times V` buffer exists at any time; the
memory is :math:`O(N \cdot \text{splits})`.

A logit that is ``nan`` makes its row's sum ``nan``, and one that is ``+inf`` (after the cap) its maximum
``+inf``; :func:`row_stats` returns ``log_s = nan`` for both, so that the loss of that row is ``nan`` and the
other rows are unaffected, as on the CPU path.

Backward: recompute, form :math:`G` on chip, accumulate
-------------------------------------------------------
With the saved :math:`(m, \log s)` a tile's probabilities are :math:`p = e^{(z - m) - \log s}` (the two
differences are taken in this order, see :class:`softmaxkit.torch._core.RowLse`). Per row the host passes
:math:`a` (the coefficient of :math:`p`), :math:`c_1 = (1-\varepsilon) w_y s` and :math:`c_2 = \varepsilon s / V`
and the tile's gradient is

.. math:: G_c = a\, p_c - c_2 w_c, \qquad G_y = c_1 \operatorname{expm1}(\log p_y) + (a - c_1) p_y - c_2 w_y,

times :math:`1 - \tanh^2(z/c)` under a softcap (the formula of :func:`softmaxkit.torch._core.ce_backward`; the
target column through ``expm1`` so that :math:`p_y \to 1` keeps its digits). ``tl`` has no ``expm1`` or
``tanh`` in every version we support, so these kernels use the device functions of
:mod:`softmaxkit.kernels.triton._device`: ``expm1`` (a series near 0, ``exp(x) - 1`` elsewhere) and ``tanh_cap``
(the capped logits and :math:`1 - \tanh^2`, both without cancellation; ``-inf`` stays ``-inf``).

``G`` is rounded to the input dtype for the two products :math:`G W_{tile}` and :math:`G^\top H_{blk}`
(as the forward's operands are), which accumulate in float32 into float32 buffers:

* fast mode (``deterministic=False``): one program per (row block, vocabulary tile) tile recomputes it once and
  adds its share with ``tl.atomic_add``. Three matrix products per tile, but float32 atomics are added in an
  order that changes from run to run: the last bits of the gradients are not reproducible.
* deterministic mode: one kernel whose programs own row blocks and loop over every vocabulary tile (adding into
  their own rows of :math:`\nabla_H`), and one whose programs own vocabulary tiles and loop over every row block
  (:math:`\nabla_W`, :math:`\nabla_b`). No atomics: bit-identical results in every run, for one more
  recomputation of the logits (four products per tile instead of three).

The vocabulary is processed in chunks of :data:`CHUNK_ELEMENTS` accumulator floats (one launch each; for
:math:`D = 2304` about 14 500 entries), so that the float32 accumulator of :math:`\nabla_W` is one chunk's,
rounded into the gradient before the next chunk starts, while :math:`\nabla_H` keeps one float32 accumulator.

Gradient filtering (Wijmans et al. 2024, *Cut Your Losses in Large-Vocabulary Language Models*,
arXiv:2411.09009): most probabilities of a large vocabulary are far below the resolution of bfloat16,
and a tile whose every entry is that small changes the gradients by less than their rounding. With
``threshold > 0`` a tile is skipped when every :math:`|G_{nc}|` in it is below ``threshold`` times the row's
``unit`` (its upstream factor, the larger of the cross-entropy's and the z-loss' when they differ:
:math:`1/\text{denominator}` under ``mean``), i.e. when every per-token :math:`|\partial \ell_n / \partial
z_{nc}|` is below ``threshold``. Cut Cross-Entropy's default is ``torch.finfo(dtype).eps / 32``,
:math:`2^{-12}` for bfloat16. The default here is 0: exact.

Cost (estimates; these kernels have not been timed on a device). Tiles of 64 x 128 were chosen because
``ptxas`` (sm_90a, by ``triton.compile`` without a device) reports no register spills for the forward and few
for the backward with them, against 0.3-1.7 KiB per thread for 128 x 128. The fast backward's float32 atomics
move :math:`4 N V D (1/BV + 1/BM)` bytes through L2 (about 0.45 TB at :math:`N = 8192`, :math:`D = 2304`,
:math:`V = 256000`), which likely bounds its time more than its :math:`3 \cdot 2 N V D` flops do; the
deterministic one reads and writes its accumulators as often. Filtering skips that traffic with the tile.
"""

# mypy: disable-error-code="no-untyped-def, no-untyped-call"
# (the Triton kernels: their parameters are pointers and scalars that Triton types itself)
from __future__ import annotations

import functools
import math
import os
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

Tensor = torch.Tensor

__all__ = ["CHUNK_ELEMENTS", "GROUP_M", "SPLITS", "Config", "config", "grads", "row_stats"]


class Config(NamedTuple):
    """Tile sizes and launch shape of one kernel: rows, vocabulary and features per tile, warps, stages."""

    bm: int
    bv: int
    bk: int
    warps: int = 8
    stages: int = 3


GROUP_M = 8
"""Row blocks launched next to each other (they share the tiles of W in L2)."""
CHUNK_ELEMENTS = 2**25
"""Floats of the float32 accumulator of ``grad W`` per backward launch (128 MiB; see :func:`grads`)."""
SPLITS = 16
"""Vocabulary splits of the forward (at most): 16 x N / 64 programs, enough to fill an H100 from N = 1024."""


def interpreting() -> bool:
    """Whether Triton runs kernels in its interpreter (``TRITON_INTERPRET=1``)."""
    try:
        from triton import knobs  # Triton >= 3.4
    except ImportError:
        return os.environ.get("TRITON_INTERPRET", "0") == "1"
    return bool(knobs.runtime.interpret)


def config(dtype: torch.dtype, kernel: str) -> Config:
    """Tiles of ``kernel`` (``"fwd"``, ``"atomic"``, ``"rows"``, ``"vocab"``) for inputs of ``dtype``.

    16-wide under the interpreter (the tiny tests then straddle every tile edge). On the GPU, the tiles for which
    ``ptxas`` (sm_90a, through ``triton.compile`` without a device) reported the fewest register spills among
    64/128-wide candidates with 8 warps: 128 x 128 tiles spill 0.9-1.3 KiB per thread in the forward and the fast
    backward (every elementwise step of the softmax holds a whole float32 tile in registers), 64 x 128 tiles
    0.2 KiB; float32 halves the feature chunk (shared memory). Not tuned on a device.
    """
    if interpreting():
        return Config(16, 16, 16, 1, 1)
    bk = 32 if dtype == torch.float32 else 64
    if kernel == "vocab":
        return Config(128, 64, bk)
    if kernel == "atomic" and dtype == torch.float32:
        return Config(64, 64, bk)
    return Config(64, 128, bk)


def _dot_precision(dtype: torch.dtype) -> str:
    """float32 products use TF32 only where torch's matmuls may (``torch.backends.cuda.matmul.allow_tf32``).

    Under the interpreter bfloat16 operands are multiplied in float32 ("upcast"): Triton 3.9's interpreter gets
    bfloat16 ``tl.dot`` wrong, and the product of two bfloat16 numbers is exact in float32 anyway.
    """
    if dtype == torch.bfloat16 and interpreting():
        return "upcast"
    if dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee"


@functools.cache
def _kernels() -> SimpleNamespace:
    """Import Triton and compile (lazily) the kernels below, once.

    The kernels are plain functions of this module until then: ``triton.jit`` replaces them here, in the module's
    namespace, where Triton (compiler and interpreter alike) looks up the functions that a kernel calls.
    """
    import triton
    import triton.language

    from . import _device  # the device math both kernel modules share: expm1, and the softcap with its derivative

    space = globals()
    space["tl"] = triton.language
    space["expm1"], space["tanh_cap"] = _device.expm1, _device.tanh_cap
    for name in _JIT:
        space[name] = triton.jit(space[name])
    return SimpleNamespace(**{name: space[name] for name in _JIT})


# --------------------------------------------------------------------------------------------- the kernels
# Parameters without an annotation are tensors (pointers) or runtime scalars, ``tl.constexpr`` ones compile-time
# constants (Triton resolves annotations itself, so there are no others).
if TYPE_CHECKING:
    import triton.language as tl

    from ._device import expm1, tanh_cap
else:
    tl = expm1 = tanh_cap = None  # triton.language and _device's functions, set by _kernels()


def _dot(a, b, acc, PREC: tl.constexpr):
    # acc + a @ b in float32; "upcast" multiplies in float32 (the interpreter's bfloat16 products are wrong)
    if PREC == "upcast":
        out = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    else:
        out = tl.dot(a, b, acc, input_precision=PREC)
    return out


def _logits(
    h_ptr,
    w_ptr,
    b_ptr,
    hrow,
    cols,
    rmask,
    cmask,
    D,
    stride_h,
    stride_w,
    softcap,
    HAS_BIAS: tl.constexpr,
    SOFTCAP: tl.constexpr,
    PREC: tl.constexpr,
    BM: tl.constexpr,
    BV: tl.constexpr,
    BK: tl.constexpr,
):
    # (BM, BV) logits in float32, soft-capped, and the cap's derivative 1 - tanh^2 (1 without a cap)
    acc = tl.zeros((BM, BV), dtype=tl.float32)
    for k0 in range(0, D, BK):
        k = k0 + tl.arange(0, BK)
        km = k < D
        h = tl.load(h_ptr + hrow[:, None] * stride_h + k[None, :], mask=rmask[:, None] & km[None, :], other=0.0)
        w = tl.load(
            w_ptr + cols[None, :].to(tl.int64) * stride_w + k[:, None], mask=cmask[None, :] & km[:, None], other=0.0
        )
        acc = _dot(h, w, acc, PREC)
    if HAS_BIAS:
        acc += tl.load(b_ptr + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
    dcap = tl.full((BM, BV), 1.0, dtype=tl.float32)
    if SOFTCAP:
        acc, dcap = tanh_cap(acc, softcap)
    return acc, dcap


def _row_index(idx_ptr, r, rmask, HAS_IDX: tl.constexpr):
    # the row of H (and of grad H) that valid row r is
    rows = r
    if HAS_IDX:
        rows = tl.load(idx_ptr + r, mask=rmask, other=0)
    return rows.to(tl.int64)


def _fwd_kernel(
    h_ptr,
    w_ptr,
    b_ptr,
    cw_ptr,
    idx_ptr,
    y_ptr,
    out_ptr,
    n_rows,
    V,
    D,
    stride_h,
    stride_w,
    tiles_per_split,
    n_splits,
    softcap,
    HAS_BIAS: tl.constexpr,
    HAS_CW: tl.constexpr,
    HAS_IDX: tl.constexpr,
    SOFTCAP: tl.constexpr,
    SMOOTH: tl.constexpr,
    PREC: tl.constexpr,
    GROUP_M: tl.constexpr,
    BM: tl.constexpr,
    BV: tl.constexpr,
    BK: tl.constexpr,
):
    pid = tl.program_id(0)
    n_m = tl.cdiv(n_rows, BM)
    per_group = GROUP_M * n_splits
    first = (pid // per_group) * GROUP_M
    size = tl.minimum(n_m - first, GROUP_M)
    pid_m = first + (pid % per_group) % size
    pid_s = (pid % per_group) // size
    r = pid_m * BM + tl.arange(0, BM)
    rmask = r < n_rows
    hrow = _row_index(idx_ptr, r, rmask, HAS_IDX)
    y = tl.load(y_ptr + r, mask=rmask, other=-1)
    ninf = -float("inf")
    m = tl.full((BM,), ninf, dtype=tl.float32)
    rest = tl.zeros((BM,), dtype=tl.float32)  # sum of e^{z - m} over every column but one maximum
    zy = tl.full((BM,), ninf, dtype=tl.float32)
    has_y = tl.zeros((BM,), dtype=tl.int32)
    wd = tl.zeros((BM,), dtype=tl.float32)
    w_seen = 0.0
    for t in range(0, tiles_per_split):
        cols = (pid_s * tiles_per_split + t) * BV + tl.arange(0, BV)
        cmask = cols < V
        z, _ = _logits(
            h_ptr,
            w_ptr,
            b_ptr,
            hrow,
            cols,
            rmask,
            cmask,
            D,
            stride_h,
            stride_w,
            softcap,
            HAS_BIAS,
            SOFTCAP,
            PREC,
            BM,
            BV,
            BK,
        )
        z = tl.where(cmask[None, :], z, ninf)
        # the tile's own maximum and rest (ties at the maximum count 1 each, one of them left out exactly)
        tm = tl.max(z, axis=1)
        top = z == tm[:, None]
        e = tl.exp(z - tl.where(tm == ninf, 0.0, tm)[:, None])
        t_rest = tl.sum(tl.where(top, 0.0, e), axis=1) + (tl.sum(top.to(tl.float32), axis=1) - 1.0)
        m_new = tl.maximum(m, tm)
        safe = tl.where(m_new == ninf, 0.0, m_new)
        moved = tl.where(m == ninf, 0.0, m - safe)  # <= 0
        t_moved = tl.where(tm == ninf, 0.0, tm - safe)
        rest = tl.where(
            m >= tm,
            rest + tl.where(tm == ninf, 0.0, (1.0 + t_rest) * tl.exp(t_moved)),
            t_rest + tl.where(m == ninf, 0.0, (1.0 + rest) * tl.exp(moved)),
        )
        c0 = (pid_s * tiles_per_split + t) * BV
        hit = (y >= c0) & (y < c0 + BV) & (y < V)
        zy = tl.where(hit, tl.sum(tl.where(cols[None, :] == y[:, None], z, 0.0), axis=1), zy)
        has_y = has_y | hit.to(tl.int32)
        if SMOOTH:
            wc = tl.load(cw_ptr + cols, mask=cmask, other=0.0) if HAS_CW else cmask.to(tl.float32)
            term = tl.where(wc[None, :] == 0.0, 0.0, wc[None, :] * (z - safe[:, None]))
            wd = wd + w_seen * moved + tl.sum(term, axis=1)
            w_seen += tl.sum(wc, axis=0)
        m = m_new
    safe = tl.where(m == ninf, 0.0, m)
    d_y = tl.where(has_y > 0, zy - safe, ninf)
    base = out_ptr + pid_s * n_rows + r
    step = n_splits * n_rows
    tl.store(base, m, mask=rmask)
    tl.store(base + step, tl.where(m == ninf, 0.0, rest), mask=rmask)
    tl.store(base + 2 * step, d_y, mask=rmask)
    tl.store(base + 3 * step, wd, mask=rmask)


def _grad_tile(
    h_ptr,
    w_ptr,
    b_ptr,
    cw_ptr,
    y_ptr,
    coef_ptr,
    hrow,
    r,
    cols,
    rmask,
    cmask,
    n_rows,
    D,
    stride_h,
    stride_w,
    softcap,
    threshold,
    HAS_BIAS: tl.constexpr,
    HAS_CW: tl.constexpr,
    SOFTCAP: tl.constexpr,
    FILTER: tl.constexpr,
    PREC: tl.constexpr,
    BM: tl.constexpr,
    BV: tl.constexpr,
    BK: tl.constexpr,
):
    # G = dloss/dz of one tile (float32, 0 outside the rows and columns) and whether it is worth adding
    z, dcap = _logits(
        h_ptr,
        w_ptr,
        b_ptr,
        hrow,
        cols,
        rmask,
        cmask,
        D,
        stride_h,
        stride_w,
        softcap,
        HAS_BIAS,
        SOFTCAP,
        PREC,
        BM,
        BV,
        BK,
    )
    m0 = tl.load(coef_ptr + r, mask=rmask, other=0.0)
    log_s = tl.load(coef_ptr + n_rows + r, mask=rmask, other=0.0)
    a = tl.load(coef_ptr + 2 * n_rows + r, mask=rmask, other=0.0)
    c1 = tl.load(coef_ptr + 3 * n_rows + r, mask=rmask, other=0.0)
    c2 = tl.load(coef_ptr + 4 * n_rows + r, mask=rmask, other=0.0)
    y = tl.load(y_ptr + r, mask=rmask, other=-1)
    wc = tl.load(cw_ptr + cols, mask=cmask, other=0.0) if HAS_CW else tl.full((BV,), 1.0, dtype=tl.float32)
    log_p = (z - m0[:, None]) - log_s[:, None]
    p = tl.exp(log_p)
    smooth = c2[:, None] * wc[None, :]
    g = a[:, None] * p - smooth
    g_y = c1[:, None] * expm1(log_p) + (a - c1)[:, None] * p - smooth
    g = tl.where(cols[None, :] == y[:, None], g_y, g)
    if SOFTCAP:
        g = g * dcap
    g = tl.where(rmask[:, None] & cmask[None, :], g, 0.0)
    keep = True
    if FILTER:
        unit = tl.load(coef_ptr + 5 * n_rows + r, mask=rmask, other=0.0)
        over = tl.abs(g) >= threshold * unit[:, None]
        keep = tl.max(tl.max((over | (g != g)).to(tl.int32), axis=1), axis=0) > 0
    return g, keep


def _bwd_atomic_kernel(
    h_ptr,
    w_ptr,
    b_ptr,
    cw_ptr,
    idx_ptr,
    y_ptr,
    coef_ptr,
    dh_ptr,
    dw_ptr,
    db_ptr,
    n_rows,
    V,
    D,
    stride_h,
    stride_w,
    softcap,
    threshold,
    HAS_BIAS: tl.constexpr,
    HAS_CW: tl.constexpr,
    HAS_IDX: tl.constexpr,
    SOFTCAP: tl.constexpr,
    FILTER: tl.constexpr,
    NEED_H: tl.constexpr,
    NEED_W: tl.constexpr,
    NEED_B: tl.constexpr,
    PREC: tl.constexpr,
    GROUP_M: tl.constexpr,
    BM: tl.constexpr,
    BV: tl.constexpr,
    BK: tl.constexpr,
):
    pid = tl.program_id(0)
    n_m = tl.cdiv(n_rows, BM)
    n_v = tl.cdiv(V, BV)
    per_group = GROUP_M * n_v
    first = (pid // per_group) * GROUP_M
    size = tl.minimum(n_m - first, GROUP_M)
    pid_m = first + (pid % per_group) % size
    pid_v = (pid % per_group) // size
    r = pid_m * BM + tl.arange(0, BM)
    rmask = r < n_rows
    hrow = _row_index(idx_ptr, r, rmask, HAS_IDX)
    cols = pid_v * BV + tl.arange(0, BV)
    cmask = cols < V
    g, keep = _grad_tile(
        h_ptr,
        w_ptr,
        b_ptr,
        cw_ptr,
        y_ptr,
        coef_ptr,
        hrow,
        r,
        cols,
        rmask,
        cmask,
        n_rows,
        D,
        stride_h,
        stride_w,
        softcap,
        threshold,
        HAS_BIAS,
        HAS_CW,
        SOFTCAP,
        FILTER,
        PREC,
        BM,
        BV,
        BK,
    )
    if keep:
        gd = g.to(h_ptr.dtype.element_ty)
        for k0 in range(0, D, BK):
            k = k0 + tl.arange(0, BK)
            km = k < D
            if NEED_H:
                w = tl.load(
                    w_ptr + cols[:, None].to(tl.int64) * stride_w + k[None, :],
                    mask=cmask[:, None] & km[None, :],
                    other=0.0,
                )
                tl.atomic_add(
                    dh_ptr + hrow[:, None] * D + k[None, :],
                    _dot(gd, w, tl.zeros((BM, BK), dtype=tl.float32), PREC),
                    mask=rmask[:, None] & km[None, :],
                )
            if NEED_W:
                h = tl.load(h_ptr + hrow[:, None] * stride_h + k[None, :], mask=rmask[:, None] & km[None, :], other=0.0)
                tl.atomic_add(
                    dw_ptr + cols[:, None].to(tl.int64) * D + k[None, :],
                    _dot(tl.trans(gd), h, tl.zeros((BV, BK), dtype=tl.float32), PREC),
                    mask=cmask[:, None] & km[None, :],
                )
        if NEED_B:
            tl.atomic_add(db_ptr + cols, tl.sum(g, axis=0), mask=cmask)


def _bwd_rows_kernel(
    h_ptr,
    w_ptr,
    b_ptr,
    cw_ptr,
    idx_ptr,
    y_ptr,
    coef_ptr,
    dh_ptr,
    n_rows,
    V,
    D,
    stride_h,
    stride_w,
    softcap,
    threshold,
    HAS_BIAS: tl.constexpr,
    HAS_CW: tl.constexpr,
    HAS_IDX: tl.constexpr,
    SOFTCAP: tl.constexpr,
    FILTER: tl.constexpr,
    PREC: tl.constexpr,
    BM: tl.constexpr,
    BV: tl.constexpr,
    BK: tl.constexpr,
):
    # deterministic grad H: this program owns BM rows and visits every vocabulary tile in order
    r = tl.program_id(0) * BM + tl.arange(0, BM)
    rmask = r < n_rows
    hrow = _row_index(idx_ptr, r, rmask, HAS_IDX)
    for v0 in range(0, V, BV):
        cols = v0 + tl.arange(0, BV)
        cmask = cols < V
        g, keep = _grad_tile(
            h_ptr,
            w_ptr,
            b_ptr,
            cw_ptr,
            y_ptr,
            coef_ptr,
            hrow,
            r,
            cols,
            rmask,
            cmask,
            n_rows,
            D,
            stride_h,
            stride_w,
            softcap,
            threshold,
            HAS_BIAS,
            HAS_CW,
            SOFTCAP,
            FILTER,
            PREC,
            BM,
            BV,
            BK,
        )
        if keep:
            gd = g.to(h_ptr.dtype.element_ty)
            tl.debug_barrier()  # the previous tile's stores are visible to every thread
            for k0 in range(0, D, BK):
                k = k0 + tl.arange(0, BK)
                mk = rmask[:, None] & (k < D)[None, :]
                w = tl.load(
                    w_ptr + cols[:, None].to(tl.int64) * stride_w + k[None, :],
                    mask=cmask[:, None] & (k < D)[None, :],
                    other=0.0,
                )
                ptr = dh_ptr + hrow[:, None] * D + k[None, :]
                acc = tl.load(ptr, mask=mk, other=0.0)
                tl.store(ptr, _dot(gd, w, acc, PREC), mask=mk)


def _bwd_vocab_kernel(
    h_ptr,
    w_ptr,
    b_ptr,
    cw_ptr,
    idx_ptr,
    y_ptr,
    coef_ptr,
    dw_ptr,
    db_ptr,
    n_rows,
    V,
    D,
    stride_h,
    stride_w,
    softcap,
    threshold,
    HAS_BIAS: tl.constexpr,
    HAS_CW: tl.constexpr,
    HAS_IDX: tl.constexpr,
    SOFTCAP: tl.constexpr,
    FILTER: tl.constexpr,
    NEED_W: tl.constexpr,
    NEED_B: tl.constexpr,
    PREC: tl.constexpr,
    BM: tl.constexpr,
    BV: tl.constexpr,
    BK: tl.constexpr,
):
    # deterministic grad W and grad b: this program owns BV vocabulary entries and visits every row block
    cols = tl.program_id(0) * BV + tl.arange(0, BV)
    cmask = cols < V
    db = tl.zeros((BV,), dtype=tl.float32)
    for r0 in range(0, n_rows, BM):
        r = r0 + tl.arange(0, BM)
        rmask = r < n_rows
        hrow = _row_index(idx_ptr, r, rmask, HAS_IDX)
        g, keep = _grad_tile(
            h_ptr,
            w_ptr,
            b_ptr,
            cw_ptr,
            y_ptr,
            coef_ptr,
            hrow,
            r,
            cols,
            rmask,
            cmask,
            n_rows,
            D,
            stride_h,
            stride_w,
            softcap,
            threshold,
            HAS_BIAS,
            HAS_CW,
            SOFTCAP,
            FILTER,
            PREC,
            BM,
            BV,
            BK,
        )
        if keep:
            if NEED_B:
                db += tl.sum(g, axis=0)
            if NEED_W:
                gt = tl.trans(g.to(h_ptr.dtype.element_ty))
                tl.debug_barrier()
                for k0 in range(0, D, BK):
                    k = k0 + tl.arange(0, BK)
                    km = (k < D)[None, :]
                    h = tl.load(h_ptr + hrow[:, None] * stride_h + k[None, :], mask=rmask[:, None] & km, other=0.0)
                    ptr = dw_ptr + cols[:, None].to(tl.int64) * D + k[None, :]
                    acc = tl.load(ptr, mask=cmask[:, None] & km, other=0.0)
                    tl.store(ptr, _dot(gt, h, acc, PREC), mask=cmask[:, None] & km)
    if NEED_B:
        tl.store(db_ptr + cols, db, mask=cmask)


_JIT = (
    "_dot",
    "_logits",
    "_row_index",
    "_fwd_kernel",
    "_grad_tile",
    "_bwd_atomic_kernel",
    "_bwd_rows_kernel",
    "_bwd_vocab_kernel",
)


def _inputs(h: Tensor, w: Tensor, b: Tensor | None, cw: Tensor | None, idx: Tensor | None) -> tuple[Tensor, ...]:
    """The operands as the kernels read them: unit stride along D, bias and class weights float32-compatible."""
    h = h if h.stride(-1) == 1 else h.contiguous()
    w = w if w.stride(-1) == 1 else w.contiguous()
    dummy = h.new_zeros(1, dtype=torch.float32)
    bias = dummy if b is None else b.contiguous()
    weights = dummy if cw is None else cw.to(torch.float32).contiguous()
    rows = dummy.to(torch.int64) if idx is None else idx.contiguous()
    return h, w, bias, weights, rows


def _log_norm(m: Tensor, rest: Tensor) -> Tensor:
    r""":math:`\log(1 + \text{rest})` by ``log1p``, accurate when the maximum dominates (Blanchard, Higham &
    Higham 2021); 0 for rows of ``-inf``, ``nan`` for bad rows."""
    log_s = torch.where(m == -math.inf, 0.0, torch.log1p(rest))
    return torch.where(torch.isnan(m) | (m == math.inf), math.nan, log_s)


def row_stats(
    h: Tensor,
    w: Tensor,
    b: Tensor | None,
    cw: Tensor | None,
    idx: Tensor | None,
    y: Tensor,
    *,
    softcap: float | None,
    smooth: bool,
    splits: int | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    r"""Row statistics ``(m, log_s, d_y, wd)`` of the valid rows of :math:`Z = H W^\top + b`, float32.

    ``h`` is ``(N, D)``, ``w`` ``(V, D)`` (same dtype, float16/bfloat16/float32), ``b`` ``(V,)``, ``cw`` the
    class weights ``(V,)``; ``idx`` the rows of ``h`` that are valid (``None``: all) and ``y`` their targets
    in ``[0, V)`` or outside it (the target lies elsewhere: ``d_y = -inf``). ``wd`` (label smoothing's
    :math:`\sum_c w_c (z_c - m)`) only with ``smooth``. ``splits`` bounds the vocabulary splits (tests).
    """
    k = _kernels()
    n, vocab, dim = int(y.shape[0]), int(w.shape[0]), int(w.shape[1])
    cfg = config(h.dtype, "fwd")
    n_tiles = max(1, math.ceil(vocab / cfg.bv))
    limit = (3 if interpreting() else SPLITS) if splits is None else splits
    per_split = math.ceil(n_tiles / max(1, min(limit, n_tiles)))
    n_splits = math.ceil(n_tiles / per_split)
    out = torch.empty((4, n_splits, n), dtype=torch.float32, device=h.device)
    if n:
        hh, ww, bias, weights, rows = _inputs(h, w, b, cw, idx)
        grid = (math.ceil(n / cfg.bm) * n_splits,)
        k._fwd_kernel[grid](
            hh, ww, bias, weights, rows, y.contiguous(), out,
            n, vocab, dim, hh.stride(0), ww.stride(0), per_split, n_splits, float(softcap or 1.0),
            HAS_BIAS=b is not None, HAS_CW=cw is not None, HAS_IDX=idx is not None, SOFTCAP=softcap is not None,
            SMOOTH=smooth, PREC=_dot_precision(h.dtype), GROUP_M=GROUP_M, BM=cfg.bm, BV=cfg.bv, BK=cfg.bk,
            num_warps=cfg.warps, num_stages=cfg.stages,
        )  # fmt: skip
    m_k, rest_k, d_y_k, wd_k = out.unbind(0)
    if n_splits == 1:
        return m_k[0], _log_norm(m_k[0], rest_k[0]), d_y_k[0], (wd_k[0] if smooth else None)
    # merge the splits: the online log-sum-exp, vectorised over them; the split that holds the maximum keeps
    # its rest as it is, the others add all their terms, moved to the maximum
    m = m_k.amax(0)
    safe = torch.where(torch.isfinite(m), m, 0.0)
    moved = torch.where(m_k == -math.inf, -math.inf, m_k - safe)  # <= 0 (nan for bad rows)
    first = torch.arange(n_splits, device=h.device)[:, None] == torch.nan_to_num(m_k, nan=math.inf).argmax(0)
    rest = torch.where(first, rest_k, (1.0 + rest_k) * torch.exp(moved)).sum(0)
    log_s = _log_norm(m, rest)
    d_y = (d_y_k + moved).amax(0)
    wd = None
    if smooth:
        bounds = [(s * per_split * cfg.bv, min((s + 1) * per_split * cfg.bv, vocab)) for s in range(n_splits)]
        if cw is None:
            w_k = torch.tensor([float(e - s) for s, e in bounds], dtype=torch.float32, device=h.device)
        else:
            w_k = torch.stack([cw[s:e].to(torch.float32).sum() for s, e in bounds])
        wd = (wd_k + w_k[:, None] * torch.where(m_k == -math.inf, 0.0, moved)).sum(0)
    return m, log_s, d_y, wd


def grads(
    h: Tensor,
    w: Tensor,
    b: Tensor | None,
    cw: Tensor | None,
    idx: Tensor | None,
    y: Tensor,
    coef: Tensor,
    *,
    n_total: int,
    need: tuple[bool, bool, bool],
    softcap: float | None,
    deterministic: bool,
    threshold: float,
    dtypes: tuple[torch.dtype, torch.dtype] = (torch.float32, torch.float32),
    vocab_chunk: int | None = None,
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    r"""Gradients ``(grad h (n_total, D), grad w (V, D), grad b (V,))``, those not in ``need`` None.

    ``coef`` is ``(6, n_valid)`` float32: per valid row :math:`m` (0 where not finite), :math:`\log s`, and
    the coefficients :math:`a`, :math:`c_1`, :math:`c_2` of the module notes, and the ``unit`` that scales
    ``threshold`` (gradient filtering; 0 disables it). Rows of ``h`` that are not in ``idx`` get 0.

    Everything is accumulated in float32; ``grad h`` and ``grad w`` are returned in ``dtypes`` and ``grad b`` in
    float32. The vocabulary is processed in chunks of ``vocab_chunk`` entries (default: :data:`CHUNK_ELEMENTS`
    accumulator floats), one launch each, so that the float32 accumulator of ``grad w`` is one chunk's, rounded
    into the result before the next: the extra memory is :math:`N D` floats for ``grad h`` and at most
    :data:`CHUNK_ELEMENTS` for ``grad w``, not :math:`V D`.
    """
    k = _kernels()
    n, vocab, dim = int(y.shape[0]), int(w.shape[0]), int(w.shape[1])
    dev = h.device
    dh = torch.zeros((n_total, dim), dtype=torch.float32, device=dev) if need[0] else None
    dw = torch.zeros((vocab, dim), dtype=dtypes[1], device=dev) if need[1] else None
    db = torch.zeros((vocab,), dtype=torch.float32, device=dev) if need[2] else None
    if n and vocab and any(need):
        hh, ww, bias, weights, rows = _inputs(h, w, b, cw, idx)
        dummy = coef.new_zeros(1)
        flags = {
            "HAS_BIAS": b is not None,
            "HAS_CW": cw is not None,
            "HAS_IDX": idx is not None,
            "SOFTCAP": softcap is not None,
            "FILTER": threshold > 0,
            "PREC": _dot_precision(h.dtype),
        }
        scalars = (float(softcap or 1.0), float(threshold))

        def tiles(kernel: str) -> dict[str, int]:
            cfg = config(h.dtype, kernel)
            return {"BM": cfg.bm, "BV": cfg.bv, "BK": cfg.bk, "num_warps": cfg.warps, "num_stages": cfg.stages}

        def operands(v0: int, v1: int) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
            # the kernels see vocabulary [v0, v1) as a vocabulary of its own: targets shifted (those outside
            # never match a column), W, bias and class weights sliced (views)
            yv = y if v0 == 0 else y - v0
            args = (
                hh,
                ww[v0:v1],
                bias[v0:v1] if b is not None else bias,
                weights[v0:v1] if cw is not None else weights,
            )
            sizes = (n, v1 - v0, dim, hh.stride(0), ww.stride(0), *scalars)
            return (*args, rows, yv.contiguous(), coef), sizes

        if deterministic and dh is not None:  # grad h: one pass over the whole vocabulary
            t = tiles("rows")
            common, sizes = operands(0, vocab)
            k._bwd_rows_kernel[(math.ceil(n / t["BM"]),)](*common, dh, *sizes, **flags, **t)
        kind = "vocab" if deterministic else "atomic"
        bv = tiles(kind)["BV"]
        if vocab_chunk is None:
            vocab_chunk = 2 * bv if interpreting() else max(bv, CHUNK_ELEMENTS // max(dim, 1) // bv * bv)
        for v0 in range(0, vocab, vocab_chunk):
            v1 = min(v0 + vocab_chunk, vocab)
            acc = None
            if dw is not None:
                acc = dw[v0:v1] if dw.dtype == torch.float32 else torch.zeros((v1 - v0, dim), device=dev)
            gb = None if db is None else db[v0:v1]
            common, sizes = operands(v0, v1)
            t = tiles(kind)
            if not deterministic:
                grid = (math.ceil(n / t["BM"]) * math.ceil((v1 - v0) / t["BV"]),)
                k._bwd_atomic_kernel[grid](
                    *common, dummy if dh is None else dh, dummy if acc is None else acc,
                    dummy if gb is None else gb, *sizes,
                    NEED_H=dh is not None, NEED_W=acc is not None, NEED_B=gb is not None, GROUP_M=GROUP_M,
                    **flags, **t,
                )  # fmt: skip
            elif acc is not None or gb is not None:
                k._bwd_vocab_kernel[(math.ceil((v1 - v0) / t["BV"]),)](
                    *common, dummy if acc is None else acc, dummy if gb is None else gb, *sizes,
                    NEED_W=acc is not None, NEED_B=gb is not None, **flags, **t,
                )  # fmt: skip
            if dw is not None and acc is not None and acc.dtype != dw.dtype:
                dw[v0:v1].copy_(acc)
            del acc
    return (None if dh is None else dh.to(dtypes[0])), dw, db

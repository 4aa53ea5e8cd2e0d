r"""Triton kernels for softmax, log-softmax, log-sum-exp and cross-entropy on the GPU.

They work on ``(rows, classes)`` tensors whose class axis is the last and contiguous (rows may be strided);
:mod:`softmaxkit.torch.functional` hands them CUDA tensors of float32, float16 or bfloat16 and keeps its torch
code for everything else. Formulas and special values are those of :mod:`softmaxkit.torch._core`, the oracle these
kernels are tested against (``tests/test_kernels_gpu_interpret.py`` runs them on the CPU with
``TRITON_INTERPRET=1``). Arithmetic is float32 whatever the storage dtype. This module imports :mod:`triton`; the
rest of the package imports it only when a kernel is about to run.

One pass over the row: the online softmax
-----------------------------------------
Softmax and cross-entropy do a few flops per byte, so their speed is the speed at which the logits are read and
the results written. The textbook algorithm reads a row three times (maximum, sum of exponentials, output). The
*online* normaliser of Milakov & Gimelshein (*Online normalizer calculation for softmax*, 2018) fuses the first
two: a program walks the row by blocks of ``BLOCK`` entries and keeps, per row, the running maximum :math:`m` and
the running sum :math:`\sum_j e^{x_j - m}`. When a block raises the maximum to :math:`m'`, the sum so far is
rescaled by :math:`e^{m - m'}`; then the block's own terms :math:`e^{x_j - m'}` are added, one exponential per
entry. The output needs a second walk (it depends on the final :math:`m` and sum), so a row is read twice and
written once. A row that fits in one block (``SINGLE``) is loaded into registers once and read once; narrow rows
are packed ``ROWS`` to a program, so that a program always works on a tile of a few thousand entries.

The sum is kept as the pair (``rest``, ``ties``): ``ties`` counts the entries equal to the running maximum and
``rest`` adds :math:`e^{x_j - m}` over the others, so that the normaliser is :math:`1 + s` with
:math:`s = \text{rest} + \text{ties} - 1` and :math:`\log(1 + s)` is evaluated as ``log1p(s)``: for a confident
row, :math:`s` is tiny and *is* the loss, and :math:`1 + s` rounded would lose it (Blanchard, Higham & Higham,
*Accurately computing the log-sum-exp and softmax functions*, 2021).

Special values in the online loop: a block entirely ``-inf`` (masked positions, or the padding past the end of
the row, which is loaded as ``-inf``) leaves the state as it was, and a row that is ``-inf`` so far keeps
``rest = ties = 0``; the rescale factor is 1 when the maximum does not move and :math:`e^{m - m'}` only when it
does, so no :math:`(-\infty) - (-\infty)` is ever formed (FlashAttention issue #1930 and Liger-Kernel's
``m - m_new`` produced ``nan`` there). A ``nan`` is recorded in a flag and replaced by ``-inf`` for the
arithmetic; the flag (or a ``+inf`` maximum) turns the row's results into ``nan`` at the end, as the reference
does. ``softcap`` keeps ``-inf`` as ``-inf`` (and so the padding stays without probability mass; Unsloth had
fixed that bug in its kernel).

What is kept for backward: two floats per row
---------------------------------------------
The forward stores, per row, :math:`m` and :math:`\text{log\_norm} = \operatorname{log1p}(s)`
(:class:`softmaxkit.torch._core.RowLse`), not their sum: for logits near :math:`10^7` in float32 the
log-sum-exp is known only to the nearest integer, whereas :math:`(x - m) - \text{log\_norm}` keeps every digit of
:math:`\log p`. The backward recomputes :math:`p = e^{(x - m) - \text{log\_norm}}` from the logits in one read
and one write.

The gradient in the forward
---------------------------
For ``reduction="mean"`` or ``"sum"`` the upstream gradient is one scalar, almost always 1, and the gradient of
the loss is known in the forward once the row's normaliser is: the cross-entropy kernel writes it in its second
walk over the row (``WANT_GRAD``), while the row is still in registers (``SINGLE``) or in L2. Forward and
backward together then read the logits twice at most and write the gradient once. Its scale is
:math:`1/\sum_n w_{y_n}` (``mean``, the sum over rows not ignored) and :math:`1/N_{\text{valid}}` for the z-loss
part: both are computed on the device by torch before the launch and read by the kernel from a small tensor, so
no device-to-host transfer is needed. For ``reduction="none"`` the upstream gradient is one number per row, known
only in backward: there a separate launch (``HAVE_LSE``) reads the saved pair and writes the gradient.

Accuracy at the target column
-----------------------------
The gradient at the true class is :math:`(1-\varepsilon) w_y (p_y - 1)`. With :math:`p_y = 0.999` rounded first
and then reduced by one, every digit of :math:`p_y - 1` would be lost in bfloat16 (Liger-Kernel PR #1329
measured 100% error). The kernel computes it as :math:`\operatorname{expm1}(\log p_y)`, with
:math:`\log p_y = (x_y - m) - \text{log\_norm}` exact to float32 rounding. ``expm1``, ``log1p`` and ``tanh``
(for ``softcap``) are written in :mod:`._device` from ``tl.exp`` and ``tl.log`` with a short series near 0, where
:math:`e^x - 1` and :math:`\log(1 + s)` would cancel (``libdevice`` has them, but Triton's interpreter, on
which the tests run, does not). ``tl.exp`` compiles to the hardware ``ex2.approx`` (a few ulps), ``tl.log`` to
libdevice's ``logf``.

Out-of-range labels
-------------------
The caller checks class indices on the host before a launch (one device-to-host transfer). If it chose not to
(``check_target=False``), the kernel never reads outside the row: a label outside ``[0, C)`` that is not
``ignore_index`` gives a ``nan`` loss and a ``nan`` gradient for its row.

Block sizes
-----------
:func:`config` picks them: rows of up to :data:`SINGLE_MAX` classes are held in registers whole (one program per
row, or ``ROWS`` narrow rows per program); longer rows are walked by blocks of :data:`BLOCK_WIDE` entries, whose
second walk finds the row in L2 while several programs share a streaming multiprocessor. The values are a first
guess for an H100, not yet measured there (compiled for ``sm_90`` with Triton 3.9: 63 registers per thread for
the walk at 8 warps, 128 and a small spill for a 32768-class row held whole at 16 warps, hence the modest
:data:`SINGLE_MAX`); ``benchmarks/bench_gpu.py --sweep`` times the alternatives. The ``block`` argument of every
launcher forces the block width (the tests use small blocks to exercise the walk on small rows).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import torch
import triton  # type: ignore[import-untyped, unused-ignore]
import triton.language as tl  # type: ignore[import-untyped, unused-ignore]

from ._device import expm1, log1p, tanh_cap

__all__ = [
    "BLOCK_MAX",
    "BLOCK_WIDE",
    "NUM_WARPS",
    "SINGLE_MAX",
    "TILE",
    "Config",
    "CrossEntropyRows",
    "config",
    "cross_entropy",
    "label_totals",
    "logsumexp",
    "logsumexp_backward",
    "softmax",
    "softmax_backward",
]

Tensor = torch.Tensor

_jit = cast(Callable[[Callable[..., Any]], Any], triton.jit)

SINGLE_MAX = 8192
"""Rows of at most this many classes are loaded into registers whole and read once."""

BLOCK_WIDE = 4096
"""The block of the walk over longer rows (the second walk finds the row in L2)."""

BLOCK_MAX = 32768
"""The widest block a kernel accepts."""

TILE = 4096
"""Entries per program for narrow rows (``ROWS`` rows of ``BLOCK`` classes)."""

NUM_WARPS: int | None = None
"""Force the warps per program (None: 4 up to 2048 entries per tile, 8 up to 8192, 16 beyond)."""


class Config(NamedTuple):
    """The launch configuration of a kernel for rows of a given width."""

    rows: int  # rows per program
    block: int  # classes per block (a power of two)
    single: bool  # the whole row in one block
    num_warps: int


def config(n_cols: int, block: int | None = None) -> Config:
    """Block sizes for rows of ``n_cols`` classes; ``block`` (a power of two) forces the block width.

    A block holds at most :data:`BLOCK_MAX` classes (the kernels count a block's ties in 16 bits).
    """
    if block is None:
        block = triton.next_power_of_2(max(n_cols, 1)) if n_cols <= min(SINGLE_MAX, BLOCK_MAX) else BLOCK_WIDE
    if not (0 < block <= BLOCK_MAX and block & (block - 1) == 0):
        raise ValueError(f"block must be a power of two in [1, {BLOCK_MAX}]; got {block}")
    single = n_cols <= block
    rows = max(1, TILE // block) if single else 1
    tile = rows * block
    num_warps = NUM_WARPS or (4 if tile <= 2048 else 8 if tile <= 8192 else 16)
    return Config(rows, block, single, num_warps)


@_jit
def _online(
    m: tl.tensor, rest: tl.tensor, ties: tl.tensor, nan: tl.tensor, x: tl.tensor, isnan: tl.tensor
) -> tuple[tl.tensor, tl.tensor, tl.tensor, tl.tensor, tl.tensor]:
    """One block of the online normaliser: the new ``(m, rest, ties, nan)`` per row and the shifted block
    ``x - m``.

    ``x`` is ``(ROWS, BLOCK)`` with ``nan`` replaced by ``-inf`` (``isnan`` marks them; ``nan > 0`` flags a row
    that had one); the shift is 0 for rows whose maximum is not finite (as the reference's), so that a ``-inf``
    entry stays ``-inf`` and never meets another infinity. The ties and the ``nan`` of a block are counted by one
    integer sum (ties in the low 16 bits: a block has at most 32768 entries), three reductions per block in all.
    """
    m_new = tl.maximum(m, tl.max(x, axis=1))
    finite = (m_new > float("-inf")) & (m_new < float("inf"))
    d = x - tl.where(finite, m_new, 0.0)[:, None]
    top = (x == m_new[:, None]) & (x > float("-inf"))
    e = tl.where(top, 0.0, tl.exp(d))
    counts = tl.sum(top.to(tl.int32) + (isnan.to(tl.int32) << 16), axis=1)
    same = m == m_new
    c = tl.where(same, 1.0, tl.exp(m - m_new))  # m = -inf: 0, and rest = ties = 0 then
    rest = rest * c + tl.where(same, 0.0, ties * c) + tl.sum(e, axis=1)
    ties = tl.where(same, ties, 0.0) + (counts & 0xFFFF).to(tl.float32)
    return m_new, rest, ties, tl.maximum(nan, counts >> 16), d


@_jit
def _online_linear(
    lin: tl.tensor, wsum: tl.tensor, m: tl.tensor, m_new: tl.tensor, x: tl.tensor, d: tl.tensor, a: tl.tensor
) -> tuple[tl.tensor, tl.tensor]:
    r"""The linear sum :math:`\sum_j a_j (x_j - m)` of label smoothing / probability targets, rescaled with
    the maximum like the exponentials: every term is :math:`\le 0`, so nothing cancels. ``wsum`` adds the
    :math:`a_j` of finite entries (the factor of a later shift); a ``-inf`` entry with :math:`a_j > 0` makes the
    sum ``-inf`` (an infinite loss), with :math:`a_j = 0` it adds nothing."""
    lin = tl.where(wsum > 0.0, lin - wsum * (m_new - m), lin) + tl.sum(tl.where(a == 0.0, 0.0, a * d), axis=1)
    finite = (x > float("-inf")) & (x < float("inf"))
    return lin, wsum + tl.sum(tl.where(finite, a, 0.0), axis=1)


@_jit
def _load_logits(
    z_rows: tl.tensor, cols: tl.tensor, mask: tl.tensor, cap: tl.tensor, SOFTCAP: tl.constexpr
) -> tuple[tl.tensor, tl.tensor, tl.tensor]:
    """A block of logits in float32, soft-capped, ``nan`` replaced by ``-inf``; the ``nan`` mask; the cap's
    derivative (1 without a cap). Padding is ``-inf``."""
    raw = tl.load(z_rows[:, None] + cols[None, :], mask=mask, other=float("-inf")).to(tl.float32)
    isnan = raw != raw
    if SOFTCAP:
        x, dcap = tanh_cap(raw, cap)
    else:
        x = raw
        dcap = tl.full(raw.shape, 1.0, tl.float32)
    return tl.where(isnan, float("-inf"), x), isnan, dcap


@_jit
def _finish(m: tl.tensor, rest: tl.tensor, ties: tl.tensor) -> tl.tensor:
    """``log_norm = log1p(rest + ties - 1)``: 0 for a row without a finite maximum."""
    return log1p(rest + tl.maximum(ties - 1.0, 0.0))


# ================================================================================ softmax and log-softmax
@_jit
def _softmax_kernel(
    x_ptr: tl.tensor,
    x_stride: tl.tensor,
    o_ptr: tl.tensor,
    o_stride: tl.tensor,
    s_ptr: tl.tensor,
    n_rows: tl.tensor,
    n_cols: tl.tensor,
    MODE: tl.constexpr,  # 0 softmax, 1 log-softmax, 2 log-sum-exp only (into s_ptr)
    HAS_SCALE: tl.constexpr,  # softmax times a per-row factor read from s_ptr (the backward of logsumexp)
    ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
    SINGLE: tl.constexpr,
) -> None:
    pid = tl.program_id(0).to(tl.int64)
    rows = pid * ROWS + tl.arange(0, ROWS).to(tl.int64)
    row_ok = rows < n_rows
    x_rows = x_ptr + rows * x_stride
    cols0 = tl.arange(0, BLOCK)
    m = tl.full((ROWS,), float("-inf"), tl.float32)
    rest = tl.zeros((ROWS,), tl.float32)
    ties = tl.zeros((ROWS,), tl.float32)
    nan = tl.zeros((ROWS,), tl.int32)
    if SINGLE:
        mask = row_ok[:, None] & (cols0[None, :] < n_cols)
        x, isnan, _ = _load_logits(x_rows, cols0, mask, 1.0, False)
        m, rest, ties, nan, d = _online(m, rest, ties, nan, x, isnan)
    else:
        for start in range(0, n_cols, BLOCK):
            cols = start + cols0
            mask = row_ok[:, None] & (cols[None, :] < n_cols)
            x, isnan, _ = _load_logits(x_rows, cols, mask, 1.0, False)
            m_new, rest, ties, nan, _ = _online(m, rest, ties, nan, x, isnan)
            m = m_new
    log_norm = _finish(m, rest, ties)
    bad = (nan > 0) | (m == float("inf"))
    if MODE == 2:
        value = tl.where(nan > 0, float("nan"), m + log_norm)
        tl.store(s_ptr + rows, value, mask=row_ok)
    else:
        shift = tl.where((m > float("-inf")) & (m < float("inf")), m, 0.0)
        scale = tl.full((ROWS,), 1.0, tl.float32)
        if HAS_SCALE:
            scale = tl.load(s_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
        o_rows = o_ptr + rows * o_stride
        if SINGLE:
            out = tl.exp(d - log_norm[:, None]) * scale[:, None] if MODE == 0 else d - log_norm[:, None]
            out = tl.where(bad[:, None], float("nan"), out)
            tl.store(o_rows[:, None] + cols0[None, :], out.to(o_ptr.dtype.element_ty), mask=mask)
        else:
            for start in range(0, n_cols, BLOCK):
                cols = start + cols0
                mask = row_ok[:, None] & (cols[None, :] < n_cols)
                x, _, _ = _load_logits(x_rows, cols, mask, 1.0, False)
                d = x - shift[:, None]
                out = tl.exp(d - log_norm[:, None]) * scale[:, None] if MODE == 0 else d - log_norm[:, None]
                out = tl.where(bad[:, None], float("nan"), out)
                tl.store(o_rows[:, None] + cols[None, :], out.to(o_ptr.dtype.element_ty), mask=mask)


@_jit
def _softmax_backward_kernel(
    y_ptr: tl.tensor,
    y_stride: tl.tensor,
    g_ptr: tl.tensor,
    g_stride: tl.tensor,
    dx_ptr: tl.tensor,
    dx_stride: tl.tensor,
    n_rows: tl.tensor,
    n_cols: tl.tensor,
    LOG: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
    SINGLE: tl.constexpr,
) -> None:
    r"""Softmax: :math:`p \odot (g - \langle g, p\rangle)`; log-softmax: :math:`g - e^{y} \sum g`, over the
    entries whose output is not ``-inf`` (the others are constants: gradient 0, their cotangent unread)."""
    pid = tl.program_id(0).to(tl.int64)
    rows = pid * ROWS + tl.arange(0, ROWS).to(tl.int64)
    row_ok = rows < n_rows
    y_rows = y_ptr + rows * y_stride
    g_rows = g_ptr + rows * g_stride
    dx_rows = dx_ptr + rows * dx_stride
    cols0 = tl.arange(0, BLOCK)
    total = tl.zeros((ROWS,), tl.float32)
    for start in range(0, n_cols, BLOCK):
        cols = start + cols0
        mask = row_ok[:, None] & (cols[None, :] < n_cols)
        y = tl.load(y_rows[:, None] + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        g = tl.load(g_rows[:, None] + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        if LOG:
            g = tl.where(y == float("-inf"), 0.0, g)
            total += tl.sum(g, axis=1)
        else:
            total += tl.sum(g * y, axis=1)
        if SINGLE:
            dx = tl.where(y == float("-inf"), 0.0, g - tl.exp(y) * total[:, None]) if LOG else y * (g - total[:, None])
            tl.store(dx_rows[:, None] + cols[None, :], dx.to(dx_ptr.dtype.element_ty), mask=mask)
    if not SINGLE:
        for start in range(0, n_cols, BLOCK):
            cols = start + cols0
            mask = row_ok[:, None] & (cols[None, :] < n_cols)
            y = tl.load(y_rows[:, None] + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            g = tl.load(g_rows[:, None] + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            dx = tl.where(y == float("-inf"), 0.0, g - tl.exp(y) * total[:, None]) if LOG else y * (g - total[:, None])
            tl.store(dx_rows[:, None] + cols[None, :], dx.to(dx_ptr.dtype.element_ty), mask=mask)


# ============================================================================================ cross-entropy
@_jit
def _ce_block(
    z_rows: tl.tensor,
    t_rows: tl.tensor,
    w_ptr: tl.tensor,
    cols: tl.tensor,
    mask: tl.tensor,
    n_cols: tl.tensor,
    cap: tl.tensor,
    keep: tl.tensor,
    smooth_c: tl.tensor,
    PROBS: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    SMOOTH: tl.constexpr,
    SOFTCAP: tl.constexpr,
) -> tuple[tl.tensor, tl.tensor, tl.tensor, tl.tensor]:
    """A block of capped logits, its ``nan`` mask, the cap's derivative and the linear-sum weights ``a``:
    :math:`q_c w_c` for probability targets, :math:`w_c` for label smoothing (0 on padding)."""
    x, isnan, dcap = _load_logits(z_rows, cols, mask, cap, SOFTCAP)
    col_ok = cols < n_cols
    if HAS_WEIGHT:
        w = tl.load(w_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    else:
        w = tl.where(col_ok, 1.0, 0.0)[None, :]
    if PROBS:
        t = tl.load(t_rows[:, None] + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        if SMOOTH:
            t = t * keep + smooth_c
        a = tl.where(mask, t * w, 0.0)
    elif SMOOTH:
        a = tl.where(mask, w, 0.0)
    else:
        a = tl.zeros(x.shape, tl.float32)
    return x, isnan, dcap, a


@_jit
def _ce_grad_block(
    g_rows: tl.tensor,
    cols: tl.tensor,
    mask: tl.tensor,
    x: tl.tensor,
    dcap: tl.tensor,
    a: tl.tensor,
    shift: tl.tensor,
    log_norm: tl.tensor,
    total: tl.tensor,
    s_ce: tl.tensor,
    smooth_s: tl.tensor,
    y: tl.tensor,
    g_y: tl.tensor,
    poison: tl.tensor,
    zero: tl.tensor,
    PROBS: tl.constexpr,
    SMOOTH: tl.constexpr,
    SOFTCAP: tl.constexpr,
) -> None:
    r"""Store one block of the gradient :math:`(p \sum_c a_c - a) s + 2\lambda\,\operatorname{lse}\,p\,s_z`
    (probabilities) or :math:`p\,\text{total} - s\,\varepsilon w/C` with the target column replaced by ``g_y``
    (class indices), times the cap's derivative."""
    p = tl.exp((x - shift[:, None]) - log_norm[:, None])
    g = p * total[:, None]
    if PROBS:
        g = g - a * s_ce[:, None]
    else:
        if SMOOTH:
            g = g - a * smooth_s[:, None]
        g = tl.where(cols[None, :] == y[:, None], g_y[:, None], g)
    if SOFTCAP:
        g = g * dcap
    g = tl.where(poison[:, None], float("nan"), g)
    g = tl.where(zero[:, None], 0.0, g)
    tl.store(g_rows[:, None] + cols[None, :], g.to(g_rows.dtype.element_ty), mask=mask)


@_jit
def _ce_kernel(
    z_ptr: tl.tensor,
    z_stride: tl.tensor,
    y_ptr: tl.tensor,
    t_ptr: tl.tensor,
    t_stride: tl.tensor,
    w_ptr: tl.tensor,
    wsum_ptr: tl.tensor,
    scale_ptr: tl.tensor,
    scale_stride: tl.tensor,
    scale_zoff: tl.tensor,
    m_ptr: tl.tensor,
    ln_ptr: tl.tensor,
    qsum_ptr: tl.tensor,
    loss_ptr: tl.tensor,
    zrow_ptr: tl.tensor,
    g_ptr: tl.tensor,
    g_stride: tl.tensor,
    n_rows: tl.tensor,
    n_cols: tl.tensor,
    ignore_index: tl.tensor,
    keep: tl.tensor,  # 1 - label_smoothing
    smooth_c: tl.tensor,  # label_smoothing / C
    z_loss: tl.tensor,
    cap: tl.tensor,
    PROBS: tl.constexpr,
    HAS_IGNORE: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    SMOOTH: tl.constexpr,
    ZLOSS: tl.constexpr,
    SOFTCAP: tl.constexpr,
    HAVE_LSE: tl.constexpr,  # read (m, log_norm, qsum) instead of computing them (the separate backward)
    WANT_LOSS: tl.constexpr,
    WANT_GRAD: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
    SINGLE: tl.constexpr,
) -> None:
    pid = tl.program_id(0).to(tl.int64)
    rows = pid * ROWS + tl.arange(0, ROWS).to(tl.int64)
    row_ok = rows < n_rows
    z_rows = z_ptr + rows * z_stride
    t_rows = t_ptr + rows * t_stride
    cols0 = tl.arange(0, BLOCK)
    if PROBS:
        valid = row_ok
        read = row_ok
        outside = rows < 0
        y = tl.zeros((ROWS,), tl.int64)
    else:
        label = tl.load(y_ptr + rows, mask=row_ok, other=0)
        valid = row_ok
        if HAS_IGNORE:
            valid = valid & (label != ignore_index)
        inside = (label >= 0) & (label < n_cols)
        read = valid & inside  # rows whose logits are read: ignored rows and bad labels never are
        outside = valid & ~inside
        y = tl.where(read, label, 0)

    # ---- the row statistics: read back, or one walk with the online normaliser
    if HAVE_LSE:
        m = tl.load(m_ptr + rows, mask=read, other=0.0)
        log_norm = tl.load(ln_ptr + rows, mask=read, other=0.0)
        nan = m != m
        qsum = tl.zeros((ROWS,), tl.float32)
        if PROBS:
            qsum = tl.load(qsum_ptr + rows, mask=read, other=0.0)
        if SINGLE:
            mask = read[:, None] & (cols0[None, :] < n_cols)
            x, _, dcap, a = _ce_block(
                z_rows, t_rows, w_ptr, cols0, mask, n_cols, cap, keep, smooth_c, PROBS, HAS_WEIGHT, SMOOTH, SOFTCAP
            )
    else:
        m = tl.full((ROWS,), float("-inf"), tl.float32)
        rest = tl.zeros((ROWS,), tl.float32)
        ties = tl.zeros((ROWS,), tl.float32)
        lin = tl.zeros((ROWS,), tl.float32)
        wfin = tl.zeros((ROWS,), tl.float32)
        qsum = tl.zeros((ROWS,), tl.float32)
        nan_i = tl.zeros((ROWS,), tl.int32)
        if SINGLE:
            mask = read[:, None] & (cols0[None, :] < n_cols)
            x, isnan, dcap, a = _ce_block(
                z_rows, t_rows, w_ptr, cols0, mask, n_cols, cap, keep, smooth_c, PROBS, HAS_WEIGHT, SMOOTH, SOFTCAP
            )
            m_new, rest, ties, nan_i, d = _online(m, rest, ties, nan_i, x, isnan)
            if PROBS or SMOOTH:
                lin, wfin = _online_linear(lin, wfin, m, m_new, x, d, a)
                qsum = tl.sum(a, axis=1)
            m = m_new
        else:
            for start in range(0, n_cols, BLOCK):
                cols = start + cols0
                mask = read[:, None] & (cols[None, :] < n_cols)
                xb, isnan, _, ab = _ce_block(
                    z_rows, t_rows, w_ptr, cols, mask, n_cols, cap, keep, smooth_c, PROBS, HAS_WEIGHT, SMOOTH, SOFTCAP
                )
                m_new, rest, ties, nan_i, d = _online(m, rest, ties, nan_i, xb, isnan)
                if PROBS or SMOOTH:
                    lin, wfin = _online_linear(lin, wfin, m, m_new, xb, d, ab)
                    qsum += tl.sum(ab, axis=1)
                m = m_new
        nan = nan_i > 0
        log_norm = _finish(m, rest, ties)
        m = tl.where(nan, float("nan"), m)
        tl.store(m_ptr + rows, m, mask=row_ok)
        tl.store(ln_ptr + rows, log_norm, mask=row_ok)
        if PROBS:
            tl.store(qsum_ptr + rows, qsum, mask=row_ok)

    bad = (nan | (m == float("inf"))) & valid
    finite = (m > float("-inf")) & (m < float("inf"))
    shift = tl.where(finite, m, 0.0)
    value = m + log_norm  # the log-sum-exp: nan, +inf and -inf rows as the reference's

    # ---- the target column and the weights of the row
    if PROBS:
        coef = tl.zeros((ROWS,), tl.float32)
        log_p_y = tl.zeros((ROWS,), tl.float32)
        w_y = tl.zeros((ROWS,), tl.float32)
        w_sum = tl.zeros((ROWS,), tl.float32)
    else:
        z_y = tl.load(z_rows + y, mask=read, other=0.0).to(tl.float32)
        if SOFTCAP:
            z_y, _ = tanh_cap(z_y, cap)
        log_p_y = (z_y - shift) - log_norm
        if HAS_WEIGHT:
            w_y = tl.load(w_ptr + y, mask=read, other=0.0).to(tl.float32)
            w_sum = tl.load(wsum_ptr + rows * 0).to(tl.float32)
        else:
            w_y = tl.where(read, 1.0, 0.0)
            w_sum = tl.zeros((ROWS,), tl.float32) + n_cols
        coef = keep * w_y

    if WANT_LOSS:
        if PROBS:
            ce = qsum * log_norm - lin
        else:
            ce = tl.where(coef == 0.0, 0.0, coef * -log_p_y)
            if SMOOTH:
                ce += tl.where(valid, smooth_c * (w_sum * log_norm - lin), 0.0)
            ce = tl.where(valid, ce, 0.0)
        ce = tl.where(bad | outside, float("nan"), ce)
        tl.store(loss_ptr + rows, ce, mask=row_ok)
        if ZLOSS:
            zr = tl.where(valid, z_loss * value * value, 0.0)
            zr = tl.where(outside, float("nan"), zr)
            tl.store(zrow_ptr + rows, zr, mask=row_ok)

    if WANT_GRAD:
        s_ce = tl.load(scale_ptr + rows * scale_stride, mask=row_ok, other=0.0).to(tl.float32)
        s_z = tl.load(scale_ptr + rows * scale_stride + scale_zoff, mask=row_ok, other=0.0).to(tl.float32)
        zterm = tl.zeros((ROWS,), tl.float32)
        if ZLOSS:
            zterm = tl.where(valid & (value == value) & (tl.abs(value) < float("inf")), 2.0 * z_loss * value, 0.0)
            zterm = zterm * s_z
        if PROBS:
            smooth_s = tl.zeros((ROWS,), tl.float32)
            total = qsum * s_ce + zterm
            g_y = tl.zeros((ROWS,), tl.float32)
        else:
            coef_s = coef * s_ce
            smooth_s = tl.where(valid, smooth_c * s_ce, 0.0)
            total = coef_s + smooth_s * w_sum + zterm
            p_y = tl.exp(log_p_y)
            g_y = coef_s * expm1(log_p_y) + zterm * p_y
            if SMOOTH:
                g_y += smooth_s * (w_sum * p_y - w_y)
        poison = bad | outside
        zero = ~valid
        g_rows = g_ptr + rows * g_stride
        if SINGLE:
            gmask = row_ok[:, None] & (cols0[None, :] < n_cols)
            _ce_grad_block(
                g_rows, cols0, gmask, x, dcap, a, shift, log_norm, total, s_ce, smooth_s, y, g_y, poison, zero,
                PROBS, SMOOTH, SOFTCAP,
            )  # fmt: skip
        else:
            for start in range(0, n_cols, BLOCK):
                cols = start + cols0
                mask = read[:, None] & (cols[None, :] < n_cols)
                xb, _, dcapb, ab = _ce_block(
                    z_rows, t_rows, w_ptr, cols, mask, n_cols, cap, keep, smooth_c, PROBS, HAS_WEIGHT, SMOOTH, SOFTCAP
                )
                gmask = row_ok[:, None] & (cols[None, :] < n_cols)
                _ce_grad_block(
                    g_rows, cols, gmask, xb, dcapb, ab, shift, log_norm, total, s_ce, smooth_s, y, g_y, poison, zero,
                    PROBS, SMOOTH, SOFTCAP,
                )  # fmt: skip


# ============================================================================================ host side
def _grid(n_rows: int, cfg: Config) -> tuple[int]:
    return (triton.cdiv(n_rows, cfg.rows),)


def _check_rows(x: Tensor, name: str) -> None:
    if x.ndim != 2 or (x.shape[1] > 1 and x.stride(1) != 1):
        raise ValueError(f"{name} must be a (rows, classes) tensor with contiguous rows; got shape {tuple(x.shape)}")


def softmax(x: Tensor, *, log: bool = False, block: int | None = None) -> Tensor:
    """Softmax (or log-softmax) of the rows of ``x`` (``(R, C)``, class axis contiguous), in ``x``'s dtype."""
    _check_rows(x, "x")
    n, k = x.shape
    out = torch.empty((n, k), dtype=x.dtype, device=x.device)
    if n == 0 or k == 0:
        return out
    cfg = config(k, block)
    _softmax_kernel[_grid(n, cfg)](
        x, x.stride(0), out, out.stride(0), out, n, k,
        MODE=1 if log else 0, HAS_SCALE=False, ROWS=cfg.rows, BLOCK=cfg.block, SINGLE=cfg.single,
        num_warps=cfg.num_warps,
    )  # fmt: skip
    return out


def logsumexp(x: Tensor, *, block: int | None = None) -> Tensor:
    """Log-sum-exp of the rows of ``x`` as a float32 ``(R,)`` tensor (``-inf`` for ``C = 0``)."""
    _check_rows(x, "x")
    n, k = x.shape
    if k == 0:
        return torch.full((n,), -math.inf, dtype=torch.float32, device=x.device)
    out = torch.empty(n, dtype=torch.float32, device=x.device)
    if n == 0:
        return out
    cfg = config(k, block)
    _softmax_kernel[_grid(n, cfg)](
        x, x.stride(0), x, x.stride(0), out, n, k,
        MODE=2, HAS_SCALE=False, ROWS=cfg.rows, BLOCK=cfg.block, SINGLE=cfg.single, num_warps=cfg.num_warps,
    )  # fmt: skip
    return out


def logsumexp_backward(x: Tensor, grad: Tensor, *, block: int | None = None) -> Tensor:
    """``grad[r] * softmax(x[r])`` (zeros for a row of all ``-inf``), in ``x``'s dtype: the gradient of
    :func:`logsumexp`, recomputed from ``x``. ``grad`` is ``(R,)``."""
    _check_rows(x, "x")
    n, k = x.shape
    out = torch.empty((n, k), dtype=x.dtype, device=x.device)
    if n == 0 or k == 0:
        return out
    g = grad.reshape(n).to(torch.float32).contiguous()
    cfg = config(k, block)
    _softmax_kernel[_grid(n, cfg)](
        x, x.stride(0), out, out.stride(0), g, n, k,
        MODE=0, HAS_SCALE=True, ROWS=cfg.rows, BLOCK=cfg.block, SINGLE=cfg.single, num_warps=cfg.num_warps,
    )  # fmt: skip
    return out


def softmax_backward(out: Tensor, grad: Tensor, *, log: bool = False, block: int | None = None) -> Tensor:
    """Gradient of :func:`softmax` (or log-softmax) from its output ``out`` and the upstream ``grad``."""
    _check_rows(out, "out")
    _check_rows(grad, "grad")
    n, k = out.shape
    dx = torch.empty((n, k), dtype=out.dtype, device=out.device)
    if n == 0 or k == 0:
        return dx
    cfg = config(k, block)
    _softmax_backward_kernel[_grid(n, cfg)](
        out, out.stride(0), grad, grad.stride(0), dx, dx.stride(0), n, k,
        LOG=log, ROWS=cfg.rows, BLOCK=cfg.block, SINGLE=cfg.single, num_warps=cfg.num_warps,
    )  # fmt: skip
    return dx


def label_totals(target: Tensor, weight: Tensor | None, ignore_index: int, n_cols: int) -> tuple[Tensor, Tensor]:
    """``(denom, n_valid)`` of class-index targets, float64 on the device, without a host transfer:
    :math:`\\sum w_{y_n}` and the count over rows not ignored. A label out of range counts with the weight of the
    nearest class (its row's loss is ``nan`` anyway)."""
    valid = target != ignore_index
    n_valid = valid.sum(dtype=torch.float64)
    if weight is None:
        return n_valid, n_valid
    y = torch.where(valid, target, 0).clamp(0, max(n_cols - 1, 0))
    w_y = torch.where(valid, weight.to(torch.float32)[y], 0.0)
    return w_y.sum(dtype=torch.float64), n_valid


class CrossEntropyRows(NamedTuple):
    """What :func:`cross_entropy` computes: per-row float32 tensors and the gradient."""

    loss: Tensor | None  # the cross-entropy part per row (0 at ignored rows)
    z_rows: Tensor | None  # the z-loss part per row, when z_loss > 0
    m: Tensor  # the row maximum of the (capped) logits: nan for rows holding nan
    log_norm: Tensor  # log1p(s): the log-sum-exp is m + log_norm
    qsum: Tensor | None  # probability targets: sum_c q_c w_c per row (needed again by the backward)
    grad: Tensor | None  # the gradient of the loss, in the logits' dtype


def cross_entropy(
    z: Tensor,
    target: Tensor,
    weight: Tensor | None,
    *,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    scales: Tensor | None = None,
    scale_stride: int = 0,
    scale_zoff: int = 1,
    saved: tuple[Tensor, Tensor, Tensor | None] | None = None,
    want_loss: bool = True,
    block: int | None = None,
) -> CrossEntropyRows:
    """Run the cross-entropy kernel on logits ``z`` ``(N, C)`` (class axis contiguous).

    ``target``: ``(N,)`` integer class indices or ``(N, C)`` floating probabilities; ``weight``: ``(C,)`` or None.
    Options are assumed valid (the caller checked them). With ``scales`` the gradient is written too: the
    factor of the cross-entropy part of row ``n`` is ``scales[n * scale_stride]`` and that of the z-loss part
    ``scales[n * scale_stride + scale_zoff]`` (``mean``: ``[1/denom, 1/n_valid]`` with stride 0; ``none``: the
    upstream gradient with stride 1 and offset 0). ``saved`` is ``(m, log_norm, qsum)`` of an earlier call: the
    statistics are read instead of computed (the backward). Nothing is synchronised with the host.
    """
    _check_rows(z, "z")
    n, k = z.shape
    dev = z.device
    probs = target.is_floating_point()
    if probs:
        _check_rows(target, "target")
        t, t_stride, y = target, target.stride(0), z
    else:
        y = target.reshape(n).to(torch.int64).contiguous()
        t, t_stride = z, 0

    def rows_f32() -> Tensor:
        return torch.empty(n, dtype=torch.float32, device=dev)

    if saved is None:
        m, log_norm = rows_f32(), rows_f32()
        qsum = rows_f32() if probs else None
    else:
        m, log_norm, qsum = saved
    loss = rows_f32() if want_loss else None
    z_rows = rows_f32() if want_loss and z_loss > 0 else None
    grad = torch.empty((n, k), dtype=z.dtype, device=dev) if scales is not None else None
    w = None if weight is None else weight.to(torch.float32).contiguous()
    wsum = None if w is None else w.sum().reshape(1)
    if n == 0 or k == 0:
        return CrossEntropyRows(loss, z_rows, m, log_norm, qsum, grad)
    has_ignore = -(2**63) <= ignore_index < 2**63  # else no int64 label equals it: nothing is ignored
    cfg = config(k, block)
    any_ = m  # a float32 tensor standing for the pointers a configuration does not read
    _ce_kernel[_grid(n, cfg)](
        z, z.stride(0), y, t, t_stride, any_ if w is None else w, any_ if wsum is None else wsum,
        any_ if scales is None else scales, scale_stride, scale_zoff,
        m, log_norm, any_ if qsum is None else qsum, any_ if loss is None else loss,
        any_ if z_rows is None else z_rows, z if grad is None else grad, k if grad is None else grad.stride(0),
        n, k, ignore_index if has_ignore else 0, 1.0 - label_smoothing, label_smoothing / k, z_loss,
        1.0 if softcap is None else softcap,
        PROBS=probs, HAS_IGNORE=has_ignore, HAS_WEIGHT=w is not None, SMOOTH=label_smoothing > 0, ZLOSS=z_loss > 0,
        SOFTCAP=softcap is not None, HAVE_LSE=saved is not None, WANT_LOSS=want_loss, WANT_GRAD=grad is not None,
        ROWS=cfg.rows, BLOCK=cfg.block, SINGLE=cfg.single, num_warps=cfg.num_warps,
    )  # fmt: skip
    return CrossEntropyRows(loss, z_rows, m, log_norm, qsum, grad)

r"""Triton kernels for sparsemax, 1.5-entmax and α-entmax (bisection), forward and backward.

They work on ``(rows, classes)`` tensors whose class axis is the last and contiguous (rows may be strided), of
float32, float16 or bfloat16; arithmetic is float32 whatever the storage dtype, results are stored in the input's
dtype. Formulas and special values are those of :mod:`softmaxkit.family` (module notes of
:mod:`softmaxkit.family.sparsemax`), the oracle these kernels are tested against
(``tests/test_kernels_family_triton.py`` runs them on the CPU with ``TRITON_INTERPRET=1``). This module imports
:mod:`triton`; the rest of the package imports it only when a kernel is about to run.

The threshold without a sort
----------------------------
Every member of the family is :math:`p_i = [w_i - \tau]_+^{1/(\alpha-1)}` with :math:`w = (\alpha - 1)(z - m)`
(:math:`m` the row maximum, so :math:`\max_i w_i = 0`) and :math:`\tau \in [-1, 0)` the number that makes the
row sum to one. The generic code sorts the row; a GPU program has no cheap sort of a long row, so the kernels
find :math:`\tau` by bisection on :math:`[-1, 0]`, keeping the mass :math:`f(\text{lo}) \ge 1` at the lower end
(each step is one pass over the row, in registers when the row fits in one block).

- **sparsemax** (:math:`\alpha = 2`) and **1.5-entmax** take :data:`BISECT_STEPS` steps (a bracket of
  :math:`2^{-24}`, float32's resolution near :math:`\tau = -1`), then :data:`REFINE_STEPS` exact steps in closed
  form on the support :math:`S = \{i : w_i > \tau\}` of the current :math:`\tau`, with :math:`d_i = w_i - \tau`,
  :math:`k = |S|`, :math:`A = \sum_S d_i`, :math:`B = \sum_S d_i^2`: the new threshold is :math:`\tau + t` with
  :math:`t = (A - 1)/k` (sparsemax: :math:`\sum_S (d_i - t) = 1`) or the smaller root of
  :math:`\sum_S (d_i - t)^2 = 1`, :math:`t = (B - 1)/(A + \sqrt{A^2 - k(B - 1)})` (1.5-entmax; this form does
  not cancel: :math:`B \approx 1` and :math:`t \approx 0` near the root). Once :math:`S` is the true support
  the step is exact (the threshold of the sort-based algorithm, up to the rounding of the sums), and shifting by
  the current :math:`\tau` keeps every :math:`d_i` small. Starting from the bisection's lower end, :math:`S`
  holds the true support plus, at most, entries within the bracket of :math:`\tau` (ties at the threshold); for
  sparsemax a step from such a superset lands between the lower end and the true :math:`\tau` (Michelot 1986),
  for 1.5-entmax it overshoots by the square of the bracket at most; the second step then works on the true
  support. The probabilities are :math:`[w - \tau]_+` and :math:`[w - \tau]_+^2`, not renormalised (as the
  sort-based code).
- **α-entmax** takes ``n_iter`` steps (default 64, as :func:`softmaxkit.entmax_bisect`; float32's bracket stops
  shrinking after about 50), then computes :math:`[w - \text{lo}]_+^{1/(\alpha-1)}` at the lower end and divides
  by its sum, as the generic code. :math:`\alpha` may differ per row (a tensor :math:`\alpha`, as the ``entmax``
  package's ``EntmaxBisect`` allows); a row with :math:`\alpha = 1` is softmax, computed as such, and a row with
  :math:`\alpha < 1` or not finite is ``nan`` (the front validates a float :math:`\alpha` before a launch; a
  tensor's values are not read on the host, which would synchronise).

The backward
------------
From the forward's output :math:`p` (not the logits): on the support, :math:`s = p^{2-\alpha}`, and
:math:`g^\top J = s \odot (g - \langle s, g\rangle / \sum_j s_j)` (Peters et al. 2019, Prop. 2), one pass for the
two sums and one for the result (one read when the row fits in a block). In float16/bfloat16 the support is
that of the *rounded* output: an entry of sparsemax whose probability rounds to 0 counts as off the support (the
Jacobian of sparsemax jumps there; the kernels take the side of the output the caller holds).

The gradient with respect to :math:`\alpha`, for a learnable :math:`\alpha`: differentiating
:math:`p_i^{\alpha-1} = (\alpha - 1) z_i - \tau(\alpha)` and using :math:`\sum_i \partial p_i/\partial\alpha = 0`,

.. math:: \frac{\partial p_i}{\partial \alpha} = \frac{p_i - s_i/S}{(\alpha-1)^2}
          - \frac{p_i \log p_i - (s_i/S) \sum_j p_j \log p_j}{\alpha - 1}, \qquad S = \sum_j s_j ,

so :math:`\langle g, \partial p/\partial\alpha\rangle` needs three more sums over the row
(:math:`\sum g p`, :math:`\sum p \log p`, :math:`\sum g p \log p`) in the same pass. Its two terms cancel as
:math:`\alpha \to 1` (the relative error grows like float32's :math:`\epsilon/(\alpha - 1)^2`); at
:math:`\alpha = 1` exactly the kernel uses the limit, :math:`\partial p_i/\partial\alpha =
-\tfrac12 p_i\bigl((\log p_i)^2 - \sum_j p_j (\log p_j)^2\bigr)` (expand :math:`\tau = -1 + (\alpha-1)\,c + \dots`
in :math:`(\alpha - 1)`).

Special values (as the generic code): a ``-inf`` entry (masked) gets probability 0 and gradient 0; a row of
all ``-inf`` gives zeros (and zero gradients); a ``nan`` or ``+inf`` anywhere in a row makes the whole row (and
its gradients) ``nan``. In the backward a ``nan`` in ``p`` makes its row ``nan``; a cotangent off the support is
never used.

Block sizes are those of :func:`softmaxkit.kernels.triton.ops.config` (a row of up to ``SINGLE_MAX`` classes in
registers, longer rows walked by blocks: each bisection or refinement step then reads the row again, from L2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
import triton  # type: ignore[import-untyped, unused-ignore]
import triton.language as tl  # type: ignore[import-untyped, unused-ignore]

from .ops import config

__all__ = [
    "BISECT_STEPS",
    "REFINE_STEPS",
    "entmax15",
    "entmax15_backward",
    "entmax_bisect",
    "entmax_bisect_backward",
    "sparsemax",
    "sparsemax_backward",
]

Tensor = torch.Tensor

_jit = cast(Callable[[Callable[..., Any]], Any], triton.jit)

BISECT_STEPS = 24
"""Bisection steps before the closed-form refinement of sparsemax and 1.5-entmax (a bracket of 2**-24)."""

REFINE_STEPS = 2
"""Closed-form steps on the support found (module notes): the second one starts from the true support."""

_SPARSEMAX, _ENTMAX15, _BISECT = 0, 1, 2  # the KIND of a launch
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


# ============================================================================================ device helpers
@_jit
def _alpha_rows(
    a_ptr: tl.tensor,
    a_stride: tl.tensor,
    alpha_val: tl.tensor,
    rows: tl.tensor,
    row_ok: tl.tensor,
    KIND: tl.constexpr,
    ALPHA_T: tl.constexpr,
) -> tl.tensor:
    """α of each row: 2 (sparsemax), 1.5 (1.5-entmax), or the scalar / the per-row tensor of α-entmax."""
    zero = row_ok.to(tl.float32) * 0.0
    if KIND == 0:
        alpha = zero + 2.0
    elif KIND == 1:
        alpha = zero + 1.5
    elif ALPHA_T:
        alpha = tl.load(a_ptr + rows * a_stride, mask=row_ok, other=2.0).to(tl.float32)
    else:
        alpha = zero + alpha_val
    return alpha


@_jit
def _load(v_rows: tl.tensor, cols: tl.tensor, mask: tl.tensor, other: tl.constexpr) -> tuple[tl.tensor, tl.tensor]:
    """A block in float32 with ``nan`` replaced by ``other``, and the ``nan`` mask; padding is ``other``."""
    raw = tl.load(v_rows[:, None] + cols[None, :], mask=mask, other=other).to(tl.float32)
    isnan = raw != raw
    return tl.where(isnan, other, raw), isnan


@_jit
def _scaled(x: tl.tensor, shift: tl.tensor, am1: tl.tensor, dead: tl.tensor) -> tl.tensor:
    """:math:`w = (\\alpha - 1)(x - m)`, ``-inf`` at masked entries and across dead rows (no ``inf - inf``)."""
    live = (x > float("-inf")) & ~dead[:, None]
    return tl.where(live, (x - shift[:, None]) * am1[:, None], float("-inf"))


@_jit
def _pos_pow(t: tl.tensor, beta: tl.tensor, KIND: tl.constexpr) -> tl.tensor:
    """:math:`[t]_+^\\beta`: ``beta`` is 1 (sparsemax), 2 (1.5-entmax) or the per-row :math:`1/(\\alpha - 1)`."""
    pos = t > 0.0
    if KIND == 0:
        out = tl.where(pos, t, 0.0)
    elif KIND == 1:
        tp = tl.where(pos, t, 0.0)
        out = tp * tp
    else:
        out = tl.where(pos, tl.exp2(beta[:, None] * tl.log2(tl.where(pos, t, 1.0))), 0.0)
    return out


@_jit
def _support_sums(w: tl.tensor, tau: tl.tensor) -> tuple[tl.tensor, tl.tensor, tl.tensor]:
    """:math:`k = |S|`, :math:`\\sum_S d` and :math:`\\sum_S d^2`, with :math:`d = w - \\tau` and
    :math:`S = \\{d > 0\\}`."""
    d = w - tau[:, None]
    on = d > 0.0
    dp = tl.where(on, d, 0.0)
    return tl.sum(on.to(tl.float32), axis=1), tl.sum(dp, axis=1), tl.sum(dp * dp, axis=1)


@_jit
def _closed_form(tau: tl.tensor, k: tl.tensor, a: tl.tensor, b: tl.tensor, KIND: tl.constexpr) -> tl.tensor:
    """One exact step on the support (module notes); a row without support keeps its :math:`\\tau`."""
    if KIND == 0:
        t = tl.where(k > 0.0, (a - 1.0) / tl.maximum(k, 1.0), 0.0)
    else:
        den = a + tl.sqrt(tl.maximum(a * a - k * (b - 1.0), 0.0))
        t = tl.where(den > 0.0, (b - 1.0) / tl.where(den > 0.0, den, 1.0), 0.0)
    return tau + t


@_jit
def _probs(w: tl.tensor, tau: tl.tensor, beta: tl.tensor, soft: tl.tensor, KIND: tl.constexpr) -> tl.tensor:
    """Unnormalised :math:`[w - \\tau]_+^\\beta`; :math:`e^{w}` on the rows where α is 1 (softmax)."""
    q = _pos_pow(w - tau[:, None], beta, KIND)
    if KIND == 2:
        q = tl.where(soft[:, None], tl.exp(w), q)
    return q


# ================================================================================================ forward
@_jit
def _forward_kernel(
    x_ptr: tl.tensor,
    x_stride: tl.tensor,
    o_ptr: tl.tensor,
    o_stride: tl.tensor,
    a_ptr: tl.tensor,
    a_stride: tl.tensor,
    alpha_val: tl.tensor,
    n_rows: tl.tensor,
    n_cols: tl.tensor,
    n_bisect: tl.tensor,
    n_refine: tl.tensor,
    KIND: tl.constexpr,  # 0 sparsemax, 1 1.5-entmax, 2 α-entmax
    ALPHA_T: tl.constexpr,  # α read per row from a_ptr (else alpha_val)
    ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
    SINGLE: tl.constexpr,
) -> None:
    pid = tl.program_id(0).to(tl.int64)
    rows = pid * ROWS + tl.arange(0, ROWS).to(tl.int64)
    row_ok = rows < n_rows
    x_rows = x_ptr + rows * x_stride
    o_rows = o_ptr + rows * o_stride
    cols0 = tl.arange(0, BLOCK)

    alpha = _alpha_rows(a_ptr, a_stride, alpha_val, rows, row_ok, KIND, ALPHA_T)
    bad_alpha = ~(alpha >= 1.0) | (alpha == float("inf"))  # nan or < 1 or inf: a nan row
    soft = alpha == 1.0
    am1 = tl.where(soft | bad_alpha, 1.0, alpha - 1.0)  # the scale of w (1 for softmax rows: w = x - m)
    beta = 1.0 / am1

    # ---- the row maximum and the nan flag
    m = tl.full((ROWS,), float("-inf"), tl.float32)
    nan_i = tl.zeros((ROWS,), tl.int32)
    if SINGLE:
        mask = row_ok[:, None] & (cols0[None, :] < n_cols)
        x, isnan = _load(x_rows, cols0, mask, float("-inf"))
        m = tl.max(x, axis=1)
        nan_i = tl.max(isnan.to(tl.int32), axis=1)
    else:
        for start in range(0, n_cols, BLOCK):
            cols = start + cols0
            mask = row_ok[:, None] & (cols[None, :] < n_cols)
            xb, isnan = _load(x_rows, cols, mask, float("-inf"))
            m = tl.maximum(m, tl.max(xb, axis=1))
            nan_i = tl.maximum(nan_i, tl.max(isnan.to(tl.int32), axis=1))
    bad = (nan_i > 0) | (m == float("inf")) | bad_alpha
    shift = tl.where((m > float("-inf")) & (m < float("inf")), m, 0.0)

    # ---- tau: bisection on [-1, 0] keeping mass(lo) >= 1, then (sparsemax, 1.5-entmax) the closed form
    lo = tl.full((ROWS,), -1.0, tl.float32)
    hi = tl.zeros((ROWS,), tl.float32)
    if SINGLE:
        w = _scaled(x, shift, am1, bad)
        for _ in range(n_bisect):
            mid = (lo + hi) * 0.5
            right = tl.sum(_pos_pow(w - mid[:, None], beta, KIND), axis=1) >= 1.0
            lo = tl.where(right, mid, lo)
            hi = tl.where(right, hi, mid)
        tau = lo
        if KIND != 2:
            for _ in range(n_refine):
                k, a, b = _support_sums(w, tau)
                tau = _closed_form(tau, k, a, b, KIND)
        q = _probs(w, tau, beta, soft, KIND)
        if KIND == 2:
            total = tl.sum(q, axis=1)  # >= 1, 0 for a row without a finite entry
            q = q / tl.where(total > 0.0, total, 1.0)[:, None]
        q = tl.where(bad[:, None], float("nan"), q)
        tl.store(o_rows[:, None] + cols0[None, :], q.to(o_ptr.dtype.element_ty), mask=mask)
    else:
        for _ in range(n_bisect):
            mid = (lo + hi) * 0.5
            mass = tl.zeros((ROWS,), tl.float32)
            for start in range(0, n_cols, BLOCK):
                cols = start + cols0
                mask = row_ok[:, None] & (cols[None, :] < n_cols)
                xb = _load(x_rows, cols, mask, float("-inf"))[0]
                mass += tl.sum(_pos_pow(_scaled(xb, shift, am1, bad) - mid[:, None], beta, KIND), axis=1)
            right = mass >= 1.0
            lo = tl.where(right, mid, lo)
            hi = tl.where(right, hi, mid)
        tau = lo
        if KIND != 2:
            for _ in range(n_refine):
                k = tl.zeros((ROWS,), tl.float32)
                a = tl.zeros((ROWS,), tl.float32)
                b = tl.zeros((ROWS,), tl.float32)
                for start in range(0, n_cols, BLOCK):
                    cols = start + cols0
                    mask = row_ok[:, None] & (cols[None, :] < n_cols)
                    xb = _load(x_rows, cols, mask, float("-inf"))[0]
                    kb, ab, bb = _support_sums(_scaled(xb, shift, am1, bad), tau)
                    k += kb
                    a += ab
                    b += bb
                tau = _closed_form(tau, k, a, b, KIND)
        scale = tl.full((ROWS,), 1.0, tl.float32)
        if KIND == 2:
            total = tl.zeros((ROWS,), tl.float32)
            for start in range(0, n_cols, BLOCK):
                cols = start + cols0
                mask = row_ok[:, None] & (cols[None, :] < n_cols)
                xb = _load(x_rows, cols, mask, float("-inf"))[0]
                total += tl.sum(_probs(_scaled(xb, shift, am1, bad), tau, beta, soft, KIND), axis=1)
            scale = 1.0 / tl.where(total > 0.0, total, 1.0)
        for start in range(0, n_cols, BLOCK):
            cols = start + cols0
            mask = row_ok[:, None] & (cols[None, :] < n_cols)
            xb = _load(x_rows, cols, mask, float("-inf"))[0]
            q = _probs(_scaled(xb, shift, am1, bad), tau, beta, soft, KIND) * scale[:, None]
            q = tl.where(bad[:, None], float("nan"), q)
            tl.store(o_rows[:, None] + cols[None, :], q.to(o_ptr.dtype.element_ty), mask=mask)


# =============================================================================================== backward
@_jit
def _grad_block(
    p_rows: tl.tensor,
    g_rows: tl.tensor,
    cols: tl.tensor,
    mask: tl.tensor,
    alpha: tl.tensor,
    KIND: tl.constexpr,
) -> tuple[tl.tensor, tl.tensor, tl.tensor, tl.tensor, tl.tensor]:
    """A block of ``p`` (0 for ``nan``), the cotangent (0 off the support), :math:`s = p^{2-\\alpha}` (0 off the
    support), :math:`\\log p` (0 off it) and the ``nan`` mask of ``p``."""
    p, isnan = _load(p_rows, cols, mask, 0.0)
    live = p > 0.0
    g = tl.where(live, tl.load(g_rows[:, None] + cols[None, :], mask=mask, other=0.0).to(tl.float32), 0.0)
    log_p = tl.log(tl.where(live, p, 1.0))
    if KIND == 0:
        s = live.to(tl.float32)
    elif KIND == 1:
        s = tl.sqrt(p)
    else:
        s = tl.where(live, tl.exp((2.0 - alpha[:, None]) * log_p), 0.0)
    return p, g, s, log_p, isnan


@_jit
def _backward_kernel(
    p_ptr: tl.tensor,
    p_stride: tl.tensor,
    g_ptr: tl.tensor,
    g_stride: tl.tensor,
    dx_ptr: tl.tensor,
    dx_stride: tl.tensor,
    a_ptr: tl.tensor,
    a_stride: tl.tensor,
    alpha_val: tl.tensor,
    da_ptr: tl.tensor,
    n_rows: tl.tensor,
    n_cols: tl.tensor,
    KIND: tl.constexpr,
    ALPHA_T: tl.constexpr,
    WANT_DALPHA: tl.constexpr,  # write <g, dp/dalpha> per row to da_ptr
    ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
    SINGLE: tl.constexpr,
) -> None:
    pid = tl.program_id(0).to(tl.int64)
    rows = pid * ROWS + tl.arange(0, ROWS).to(tl.int64)
    row_ok = rows < n_rows
    p_rows = p_ptr + rows * p_stride
    g_rows = g_ptr + rows * g_stride
    dx_rows = dx_ptr + rows * dx_stride
    cols0 = tl.arange(0, BLOCK)
    alpha = _alpha_rows(a_ptr, a_stride, alpha_val, rows, row_ok, KIND, ALPHA_T)

    s_sum = tl.zeros((ROWS,), tl.float32)
    sg_sum = tl.zeros((ROWS,), tl.float32)
    gp_sum = tl.zeros((ROWS,), tl.float32)  # sum g p
    h_sum = tl.zeros((ROWS,), tl.float32)  # sum p log p
    gh_sum = tl.zeros((ROWS,), tl.float32)  # sum g p log p
    h2_sum = tl.zeros((ROWS,), tl.float32)  # sum p log^2 p (alpha = 1)
    gh2_sum = tl.zeros((ROWS,), tl.float32)  # sum g p log^2 p (alpha = 1)
    nan_i = tl.zeros((ROWS,), tl.int32)
    for start in range(0, n_cols, BLOCK):
        cols = start + cols0
        mask = row_ok[:, None] & (cols[None, :] < n_cols)
        p, g, s, log_p, isnan = _grad_block(p_rows, g_rows, cols, mask, alpha, KIND)
        s_sum += tl.sum(s, axis=1)
        sg_sum += tl.sum(s * g, axis=1)
        nan_i = tl.maximum(nan_i, tl.max(isnan.to(tl.int32), axis=1))
        if WANT_DALPHA:
            h = p * log_p
            gp_sum += tl.sum(g * p, axis=1)
            h_sum += tl.sum(h, axis=1)
            gh_sum += tl.sum(g * h, axis=1)
            h2_sum += tl.sum(h * log_p, axis=1)
            gh2_sum += tl.sum(g * h * log_p, axis=1)
        if SINGLE:  # one block: the sums are complete and the block is still in registers
            bad = (nan_i > 0) | ~(alpha >= 1.0) | (alpha == float("inf"))
            r = sg_sum / tl.where(s_sum > 0.0, s_sum, 1.0)
            dx = tl.where(bad[:, None], float("nan"), s * (g - r[:, None]))
            tl.store(dx_rows[:, None] + cols[None, :], dx.to(dx_ptr.dtype.element_ty), mask=mask)
    bad = (nan_i > 0) | ~(alpha >= 1.0) | (alpha == float("inf"))
    r = sg_sum / tl.where(s_sum > 0.0, s_sum, 1.0)
    if not SINGLE:
        for start in range(0, n_cols, BLOCK):
            cols = start + cols0
            mask = row_ok[:, None] & (cols[None, :] < n_cols)
            _, g, s, _, _ = _grad_block(p_rows, g_rows, cols, mask, alpha, KIND)
            dx = tl.where(bad[:, None], float("nan"), s * (g - r[:, None]))
            tl.store(dx_rows[:, None] + cols[None, :], dx.to(dx_ptr.dtype.element_ty), mask=mask)

    if WANT_DALPHA:
        soft = alpha == 1.0
        e = tl.where(soft | bad, 1.0, alpha - 1.0)
        general = (gp_sum - r) / (e * e) - (gh_sum - r * h_sum) / e
        limit = -0.5 * (gh2_sum - gp_sum * h2_sum)
        da = tl.where(bad, float("nan"), tl.where(soft, limit, general))
        tl.store(da_ptr + rows, da, mask=row_ok)


# ============================================================================================ host side
def _check_rows(x: Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
    if x.dtype not in _DTYPES:
        raise TypeError(f"{name} must be float32, float16 or bfloat16; got {x.dtype}")
    if x.ndim != 2 or (x.shape[1] > 1 and x.stride(1) != 1):
        raise ValueError(f"{name} must be a (rows, classes) tensor with contiguous rows; got shape {tuple(x.shape)}")


def _alpha_arg(alpha: float | Tensor, x: Tensor) -> tuple[Tensor | None, int, float]:
    """``(tensor, stride, value)`` for the kernels: a float α is passed by value, a tensor one per row."""
    if isinstance(alpha, torch.Tensor):
        n = x.shape[0]
        if alpha.numel() not in (1, n):
            raise ValueError(f"alpha must hold one value or one per row ({n}); got shape {tuple(alpha.shape)}")
        if alpha.device != x.device:
            raise ValueError(f"alpha must be on {x.device}; got {alpha.device}")
        a = alpha.detach().reshape(-1).to(torch.float32).contiguous()
        return a, (0 if a.numel() == 1 else 1), 0.0
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"alpha must be a float or a tensor; got {type(alpha).__name__}")
    if not 1.0 <= float(alpha) < float("inf"):
        raise ValueError(f"alpha must be a finite number >= 1; got {alpha!r}")
    return None, 0, float(alpha)


def _forward(x: Tensor, kind: int, alpha: float | Tensor, n_bisect: int, n_refine: int, block: int | None) -> Tensor:
    _check_rows(x, "x")
    a, a_stride, alpha_val = _alpha_arg(alpha, x)
    n, k = x.shape
    out = torch.empty((n, k), dtype=x.dtype, device=x.device)
    if n == 0 or k == 0:
        return out
    cfg = config(k, block)
    _forward_kernel[(triton.cdiv(n, cfg.rows),)](
        x, x.stride(0), out, out.stride(0), x if a is None else a, a_stride, alpha_val, n, k, n_bisect, n_refine,
        KIND=kind, ALPHA_T=a is not None, ROWS=cfg.rows, BLOCK=cfg.block, SINGLE=cfg.single,
        num_warps=cfg.num_warps,
    )  # fmt: skip
    return out


def _backward(
    p: Tensor, grad: Tensor, kind: int, alpha: float | Tensor, want_dalpha: bool, block: int | None
) -> tuple[Tensor, Tensor | None]:
    _check_rows(p, "p")
    _check_rows(grad, "grad")
    if grad.shape != p.shape or grad.device != p.device:
        raise ValueError(f"grad must match p's shape {tuple(p.shape)} and device; got {tuple(grad.shape)}")
    a, a_stride, alpha_val = _alpha_arg(alpha, p)
    n, k = p.shape
    dx = torch.empty((n, k), dtype=p.dtype, device=p.device)
    da = torch.zeros(n, dtype=torch.float32, device=p.device) if want_dalpha else None
    if n == 0 or k == 0:
        return dx, da
    cfg = config(k, block)
    _backward_kernel[(triton.cdiv(n, cfg.rows),)](
        p, p.stride(0), grad, grad.stride(0), dx, dx.stride(0), p if a is None else a, a_stride, alpha_val,
        dx if da is None else da, n, k,
        KIND=kind, ALPHA_T=a is not None, WANT_DALPHA=want_dalpha, ROWS=cfg.rows, BLOCK=cfg.block,
        SINGLE=cfg.single, num_warps=cfg.num_warps,
    )  # fmt: skip
    return dx, da


def sparsemax(x: Tensor, *, block: int | None = None) -> Tensor:
    """Sparsemax of the rows of ``x`` (``(R, C)``, class axis contiguous), in ``x``'s dtype (module notes).

    ``block`` (a power of two) forces the block width, as in :func:`softmaxkit.kernels.triton.ops.config`."""
    return _forward(x, _SPARSEMAX, 2.0, BISECT_STEPS, REFINE_STEPS, block)


def entmax15(x: Tensor, *, block: int | None = None) -> Tensor:
    """1.5-entmax of the rows of ``x`` (``(R, C)``, class axis contiguous), in ``x``'s dtype (module notes)."""
    return _forward(x, _ENTMAX15, 1.5, BISECT_STEPS, REFINE_STEPS, block)


def entmax_bisect(x: Tensor, alpha: float | Tensor = 1.5, *, n_iter: int = 64, block: int | None = None) -> Tensor:
    """α-entmax of the rows of ``x`` by ``n_iter`` bisection steps, in ``x``'s dtype (module notes).

    ``alpha``: a float :math:`\\ge 1`, or a tensor on ``x``'s device with one value or one per row (its values
    are not checked on the host: a row whose α is below 1 or not finite is ``nan``)."""
    if isinstance(n_iter, bool) or not isinstance(n_iter, int):
        raise TypeError(f"n_iter must be an int; got {n_iter!r}")
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1; got {n_iter!r}")
    return _forward(x, _BISECT, alpha, n_iter, 0, block)


def sparsemax_backward(p: Tensor, grad: Tensor, *, block: int | None = None) -> Tensor:
    """The vector-Jacobian product of :func:`sparsemax` from its output ``p`` and the cotangent ``grad``
    (``(R, C)`` each, rows contiguous), in ``p``'s dtype."""
    return _backward(p, grad, _SPARSEMAX, 2.0, False, block)[0]


def entmax15_backward(p: Tensor, grad: Tensor, *, block: int | None = None) -> Tensor:
    """The vector-Jacobian product of :func:`entmax15` from its output ``p`` and the cotangent ``grad``."""
    return _backward(p, grad, _ENTMAX15, 1.5, False, block)[0]


def entmax_bisect_backward(
    p: Tensor, grad: Tensor, alpha: float | Tensor = 1.5, *, want_alpha_grad: bool = False, block: int | None = None
) -> tuple[Tensor, Tensor | None]:
    """The vector-Jacobian product of :func:`entmax_bisect` from its output ``p``, and, with
    ``want_alpha_grad``, :math:`\\langle g, \\partial p / \\partial\\alpha\\rangle` per row as a float32 ``(R,)``
    tensor (the caller sums it to α's shape)."""
    return _backward(p, grad, _BISECT, alpha, want_alpha_grad, block)

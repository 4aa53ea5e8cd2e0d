"""The Triton path of :mod:`.linear` and :mod:`.distributed`: when it runs, and the glue between
:mod:`softmaxkit.torch._blocks`' row statistics and :mod:`softmaxkit.kernels.triton.linear` (imported lazily, only
when a CUDA tensor arrives)."""

from __future__ import annotations

import torch

from .. import _backend
from . import _blocks as blk

__all__ = ["grads", "row_stats", "use_triton"]

Tensor = torch.Tensor


def use_triton(hidden: Tensor, lw: Tensor) -> bool:
    """Whether the dispatcher (:func:`softmaxkit._backend.choose`) gives this call to the Triton kernels: CUDA
    tensors of float16/bfloat16/float32 with Triton installed under ``auto``, or ``softmaxkit.backend("triton")``
    (which also runs them on CPU tensors under ``TRITON_INTERPRET=1``)."""
    same_device = hidden.device == lw.device
    keyword = "auto" if torch.compiler.is_compiling() else None  # (Dynamo cannot read the context: functional.py)
    return _backend.choose("linear_cross_entropy", hidden, keyword, front="torch", rows=same_device) == "triton"


def row_stats(hidden: Tensor, lw: Tensor, bias: Tensor | None, tg: blk.Targets) -> blk.RowStats:
    """Row statistics of the valid rows over ``lw``'s vocabulary (maybe one rank's slice), by the kernels."""
    from ..kernels.triton import linear as gpu_linear

    o = tg.opts
    m, log_s, d_y, wd = gpu_linear.row_stats(
        hidden, lw, bias, tg.cw, tg.idx, tg.y, softcap=o.softcap, smooth=o.label_smoothing > 0
    )
    return blk.RowStats(m, log_s, d_y, wd)


def grads(
    hidden: Tensor,
    lw: Tensor,
    bias: Tensor | None,
    tg: blk.Targets,
    st: blk.RowStats,
    scale: blk.Scale,
    need: tuple[bool, bool, bool],
    deterministic: bool,
    threshold: float,
    dh_dtype: torch.dtype | None = None,
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    r"""Gradients by the kernels, from the final row statistics and the upstream factors: ``hidden``'s in
    ``dh_dtype`` (default its own), ``lw``'s in its own dtype, the bias' in float32.

    The per-row coefficients are those of :func:`softmaxkit.torch._blocks.block_grad_`:
    :math:`c_1 = (1-\varepsilon) w_y s`, :math:`c_2 = \varepsilon s / V` and the coefficient of :math:`p`,
    :math:`a = c_1 + c_2 \sum w + 2 \lambda \operatorname{lse} s_z`.
    """
    from ..kernels.triton import linear as gpu_linear

    o = tg.opts
    eps = o.label_smoothing
    ones = torch.ones(tg.n_valid, dtype=torch.float32, device=st.m.device)
    s_ce, s_z = scale.ce.to(torch.float32) * ones, scale.z.to(torch.float32) * ones
    c1 = (1.0 - eps) * tg.w_y * s_ce
    c2 = (eps / tg.size) * s_ce
    a = c1 + c2 * tg.w_sum
    if o.z_loss > 0:
        lse = st.m + st.log_s
        a = a + (2.0 * o.z_loss) * torch.where(torch.isfinite(lse), lse, 0.0) * s_z
    unit = torch.maximum(s_ce.abs(), s_z.abs())
    coef = torch.stack([blk.finite_or_zero(st.m), st.log_s, a, c1, c2, unit]).to(torch.float32)
    return gpu_linear.grads(
        hidden,
        lw,
        bias,
        tg.cw,
        tg.idx,
        tg.y,
        coef,
        n_total=int(hidden.shape[0]),
        need=need,
        softcap=o.softcap,
        deterministic=deterministic,
        threshold=threshold,
        dtypes=(hidden.dtype if dh_dtype is None else dh_dtype, lw.dtype),
    )

r"""Linear cross-entropy: the loss of an LLM's output layer without the :math:`N \times V` logits.

For hidden states :math:`H \in \mathbb{R}^{N \times D}`, an output projection :math:`W \in \mathbb{R}^{V \times D}`
(one row per vocabulary entry) and a bias :math:`b`, the loss is ``cross_entropy(H @ W.T + b, y)``. With
:math:`N = 8192` tokens and :math:`V = 65536` the logits alone take 2 GiB in float32, their gradient another
2 GiB, and torch's own softmax keeps a third copy; yet the loss needs only :math:`O(N)` numbers per row and the
gradients are the size of :math:`H` and :math:`W`.

Chunks and the online log-sum-exp
---------------------------------
The tokens are cut into chunks of ``n`` rows and the vocabulary into chunks of ``v`` columns; only an
``n x v`` block of logits :math:`Z = H_c W_j^\top + b_j` ever exists. Each block reports, per row, its maximum
:math:`m_j` and :math:`s_j = \sum_{c \in j} e^{z_c - m_j}`, and two partial results combine exactly
(Milakov & Gimelshein 2018, *Online normalizer calculation for softmax*):

.. math:: M = \max(M', m_j), \qquad S = S' e^{M' - M} + s_j e^{m_j - M}, \qquad
          \operatorname{lse} = M + \log S .

Every exponent is :math:`\le 0`, so nothing overflows whatever the order of the chunks. The target logit
:math:`z_y` is read in the one block that holds it and :math:`\sum_c w_c z_c` (for label smoothing) is added up
across blocks. That is one pass over the vocabulary for the loss.

The gradient, block by block
----------------------------
With :math:`G = \partial \ell / \partial Z` (per row :math:`(p - q)` times the options' factors, see
:func:`softmaxkit.torch._core.ce_backward`), the chain rule through the projection is

.. math:: \nabla_H = G W, \qquad \nabla_W = G^\top H, \qquad \nabla_b = \textstyle\sum_n G_{n\cdot},

and each block of :math:`G` needs only its own logits and the row's final :math:`\operatorname{lse}`. So the
gradient is also formed block by block, :math:`G_{cj} = e^{Z_{cj} - \operatorname{lse}} \cdot a - \ldots`,
added into :math:`\nabla_H` (rows of chunk ``c``) and :math:`\nabla_W` (rows of chunk ``j``), and dropped.

When the whole vocabulary fits one block (``v = V``, the default), the forward computes the gradients right
away for ``reduction="mean"``/``"sum"``: the block's lse is final as soon as the block is, so the logits are
multiplied once (3 matrix products in all: logits, :math:`G W`, :math:`G^\top H`, as the naive path). The
gradients, the size of the inputs, are kept until backward, which only multiplies them by the upstream
gradient. With vocabulary chunks (``v < V``), or with ``reduction="none"`` (the upstream gradient weighs each
row differently, so :math:`\nabla_W = \sum_n g_n G_n^\top h_n` cannot be formed before it is known;
Liger-Kernel #678 / #968 scaled precomputed gradients and got this wrong), the forward keeps only
:math:`(M, \log S)` per row and the backward recomputes each block: one product more.

The Functions are written in the ``setup_context`` style, so that :mod:`torch.func` composes with them: the
forward returns the loss with, as outputs that are not differentiable, either the gradients it computed or the
row statistics; the backward that recomputes is a Function of its own, whose ``vmap`` rule (as the forward's)
takes a batch one sample at a time, since the blocks size their work from the data.

Rows whose target is ``ignore_index`` are dropped before any product: a batch whose prompt tokens are ignored
costs only its answer tokens, and an ignored row is never read (a ``nan`` in it changes nothing).

Memory: the inputs, the gradients (:math:`\nabla_W` is as large as :math:`W`), one block (``n x v``; two with
``softcap``) and :math:`O(N)` per-row numbers. At :math:`N = 8192`, :math:`D = 1024`, :math:`V = 65536` in
float32 that is 352 MiB above the inputs against 6144 MiB for ``F.cross_entropy(hidden @ W.T, y)`` and its
backward (``benchmarks/bench_linear_ce.py``). float16/bfloat16 inputs are computed and accumulated in
float32 (an upcast copy of :math:`W` and a float32 :math:`\nabla_W`), and the gradients are rounded once at
the end.

On the GPU: Triton tiles
------------------------
CUDA inputs of float16, bfloat16 or float32 (with Triton installed) go to the Triton kernels of
:mod:`softmaxkit.kernels.triton.linear` instead (Wijmans et al. 2024, *Cut Your Losses in Large-Vocabulary Language
Models*, arXiv:2411.09009): there even the block lives only in on-chip memory. The forward multiplies
:math:`H W^\top` tile by tile with float32 accumulation and merges each tile into the row's statistics, so that
what it stores is two floats per row, :math:`(M, \log S)`; the backward recomputes the tiles, forms
:math:`G` on chip and accumulates :math:`\nabla_H`, :math:`\nabla_W` and :math:`\nabla_b` in float32.
The row statistics and the loss formula are this module's, so every option behaves the same way; the extra
memory is the float32 accumulator of :math:`\nabla_H` (:math:`N D` floats), that of one vocabulary chunk of
:math:`\nabla_W` (at most :math:`2^{25}` floats; the chunk is rounded into the gradient before the next) and
:math:`O(N)` floats. ``chunk_size`` is not used there (the tiles are the kernels'). Two options
exist for this path only:

* ``deterministic``: the fast backward adds the tiles' shares with float32 atomics, whose order changes from
  run to run (the last bits of the gradients with it); the deterministic backward gives each program its own
  rows of :math:`\nabla_H` or of :math:`\nabla_W` and recomputes every tile twice (about a third more work).
  ``None`` follows ``torch.are_deterministic_algorithms_enabled()``.
* ``grad_threshold``: skip a tile of the backward when every per-token gradient entry in it,
  :math:`|\partial \ell_n / \partial z_{nc}|`, is below the threshold (Cut Cross-Entropy's gradient filtering,
  whose default is :math:`2^{-12}` for bfloat16). The default 0 is exact.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from .. import _validate
from . import _blocks as blk
from . import _core, _triton
from ._core import Options
from .functional import cross_entropy, logsumexp

__all__ = ["LinearCrossEntropyLoss", "linear_cross_entropy"]

Tensor = torch.Tensor


def _outputs(grads: tuple[Tensor | None, ...], dtypes: tuple[torch.dtype | None, ...]) -> list[Tensor | None]:
    return [None if t is None or d is None else t.to(d) for t, d in zip(grads, dtypes, strict=True)]


def _dtypes(hidden: Tensor, lw: Tensor, bias: Tensor | None) -> tuple[torch.dtype | None, ...]:
    return hidden.dtype, lw.dtype, None if bias is None else bias.dtype


def _in_transform(*xs: Tensor | None) -> bool:
    """Whether any of ``xs`` is a tensor of a :mod:`torch.func` transform (grad, vmap, jacrev)."""
    return any(x is not None and bool(torch._C._functorch.is_functorch_wrapped_tensor(x)) for x in xs)


def loop_vmap(
    function: Any, info: Any, in_dims: tuple[Any, ...], *args: Any
) -> tuple[tuple[Tensor, ...], tuple[int, ...]]:
    """A ``vmap`` rule that applies ``function`` to one sample at a time and stacks the outputs (dimension 0).

    The blocks' code sizes its work from the data (ignored rows, chunks), which a batched tensor cannot do; each
    sample is a plain tensor at the level below, where ``function.apply`` runs as in eager mode (and composes with
    the transforms below it)."""
    outs = []
    for i in range(int(info.batch_size)):
        # (a non-tensor argument's in_dims may be a tuple: NamedTuples are pytrees)
        pairs = zip(args, in_dims, strict=True)
        sample = [a.select(d, i) if isinstance(a, Tensor) and isinstance(d, int) else a for a, d in pairs]
        outs.append(blk.apply_all(function, *sample))
    stacked = tuple(torch.stack(col) for col in zip(*outs, strict=True))
    return stacked, (0,) * len(stacked)


class _TritonLinearCrossEntropy(torch.autograd.Function):
    """Outputs ``(loss, m, log_s)``; the row statistics are not differentiable."""

    @staticmethod
    def forward(
        hidden: Tensor,
        lw: Tensor,
        bias: Tensor | None,
        target: Tensor,
        weight: Tensor | None,
        opts: Options,
        deterministic: bool,
        threshold: float,
    ) -> tuple[Tensor, Tensor, Tensor]:
        tg = blk.targets(target, weight, int(lw.shape[0]), opts, torch.float32, 0)
        st = _triton.row_stats(hidden, lw, bias, tg)
        return blk.total_loss(tg, st, int(hidden.shape[0])).to(hidden.dtype), st.m, st.log_s

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor, Tensor]) -> None:
        hidden, lw, bias, target, weight, opts, deterministic, threshold = inputs
        ctx.mark_non_differentiable(output[1], output[2])
        ctx.opts, ctx.deterministic, ctx.threshold = opts, deterministic, threshold
        ctx.need = tuple(bool(n) for n in ctx.needs_input_grad[:3])
        if any(ctx.need):
            ctx.save_for_backward(hidden, lw, bias, target, weight, output[1], output[2])

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
        hidden, lw, bias, target, weight, m, log_s = ctx.saved_tensors
        tg = blk.targets(target, weight, int(lw.shape[0]), ctx.opts, torch.float32, 0)
        st = blk.RowStats(m, log_s, m, None)
        scale = blk.upstream_scale(tg, grad, torch.float32)
        grads = _triton.grads(hidden, lw, bias, tg, st, scale, ctx.need, ctx.deterministic, ctx.threshold)
        outs = _outputs(grads, _dtypes(hidden, lw, bias))
        return outs[0], outs[1], outs[2], None, None, None, None, None


class _LinearCrossEntropy(torch.autograd.Function):
    """Outputs ``(loss, grad_h, grad_w, grad_b, m, log_s)``; all but the loss are not differentiable.

    ``fuse`` (gradients required, ``mean``/``sum``, one vocabulary block, no transform): the forward also computes the
    gradients for a unit upstream gradient (compute dtype; empty where not asked for) and the backward hands
    them over, multiplied in place by the upstream gradient. Otherwise the forward returns the row statistics
    ``(m, log_s)`` of the rows not ignored and the backward recomputes the blocks (:class:`_LinearGrads`).
    Under ``vmap`` the samples run one at a time (:func:`loop_vmap`), after the checks of the values that the
    call could not make on the batched tensors.
    """

    @staticmethod
    def forward(
        hidden: Tensor,
        lw: Tensor,
        bias: Tensor | None,
        target: Tensor,
        weight: Tensor | None,
        opts: Options,
        plan: blk.Plan,
        need: tuple[bool, bool, bool],
        fuse: bool,
    ) -> tuple[Tensor, ...]:
        prob = blk.local_problem(hidden, lw, bias, weight, target, opts, plan)
        empty = [hidden.new_empty(0, dtype=prob.h.dtype) for _ in range(5)]  # distinct tensors, one per output
        if fuse:
            loss, grads = blk.fused(prob, hidden.shape[0], need)
            gs = [e if g is None else g for g, e in zip((grads.h, grads.w, grads.b), empty, strict=False)]
            return loss.to(hidden.dtype), gs[0], gs[1], gs[2], empty[3], empty[4]
        st = blk.local_stats(prob)
        loss = blk.total_loss(prob.tg, st, hidden.shape[0]).to(hidden.dtype)
        # one entry per row (0 where ignored), so that the samples of a vmap stack
        m, log_s = (blk.all_rows(prob.tg, x, hidden.shape[0]) for x in (st.m, st.log_s))
        return loss, empty[0], empty[1], empty[2], m, log_s

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        hidden, lw, bias, target, weight, opts, plan, need, fuse = inputs
        ctx.mark_non_differentiable(*output[1:])
        ctx.opts, ctx.plan, ctx.need = opts, plan, need
        ctx.dtypes = _dtypes(hidden, lw, bias)
        ctx.fused, ctx.grads = fuse, None
        if fuse:
            ctx.grads = output[1:4]  # held on ctx (not saved): handed over to the first backward
        else:
            ctx.save_for_backward(hidden, lw, bias, target, weight, output[4], output[5])

    @staticmethod
    def vmap(info: Any, in_dims: tuple[Any, ...], *args: Any) -> tuple[tuple[Tensor, ...], tuple[int, ...]]:
        _check_values(args[3], args[4], int(args[1].shape[-2]), args[5])
        return loop_vmap(_LinearCrossEntropy, info, in_dims, *args)

    @staticmethod
    def backward(ctx: Any, grad: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
        none = (None,) * 6
        if not ctx.fused:
            hidden, lw, bias, target, weight, m, log_s = ctx.saved_tensors
            args = (grad, hidden, lw, bias, target, weight, m, log_s, ctx.opts, ctx.plan, ctx.need)
            gs = blk.apply_all(_LinearGrads, *args)
            outs = [g.to(d) if n and d is not None else None for g, d, n in zip(gs, ctx.dtypes, ctx.need, strict=True)]
            return (*outs, *none)
        return (*_handover(ctx, grad), *none)


@once_differentiable
def _handover(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
    """The gradients the forward computed, scaled by the upstream gradient in place (the buffers become
    autograd's without a copy); a second backward through the same graph raises."""
    grads = ctx.grads
    if grads is None:
        raise RuntimeError(
            "linear_cross_entropy computed its gradients in the forward and handed them to the first "
            "backward; a second backward through the same graph (retain_graph=True) is not supported: "
            "call linear_cross_entropy again"
        )
    ctx.grads = None
    unit = bool(grad == 1)  # one host read of a 0-d tensor
    outs: list[Tensor | None] = []
    for g, d, need in zip(grads, ctx.dtypes, ctx.need, strict=True):
        if not need or d is None:
            outs.append(None)
            continue
        outs.append((g if unit else g.mul_(grad.to(g.dtype))).to(d))
    return tuple(outs)


class _LinearGrads(torch.autograd.Function):
    """The gradients ``(grad_h, grad_w, grad_b)`` (compute dtype; empty where not asked for) for the upstream
    gradient ``grad``, every block recomputed against the saved row statistics. A Function of its own so that a
    transform's batched upstream gradient (``jacrev``, ``vmap`` of ``grad``) is taken one sample at a time
    (:func:`loop_vmap`); it cannot be differentiated (``linear_cross_entropy`` is differentiable once)."""

    @staticmethod
    def forward(
        grad: Tensor,
        hidden: Tensor,
        lw: Tensor,
        bias: Tensor | None,
        target: Tensor,
        weight: Tensor | None,
        m: Tensor,
        log_s: Tensor,
        opts: Options,
        plan: blk.Plan,
        need: tuple[bool, bool, bool],
    ) -> tuple[Tensor, Tensor, Tensor]:
        prob = blk.local_problem(hidden, lw, bias, weight, target, opts, plan)
        m, log_s = (blk.valid_rows(prob.tg, x) for x in (m, log_s))
        st = blk.RowStats(m, log_s, m, None)
        grads = blk.recompute(prob, st, blk.upstream_scale(prob.tg, grad, prob.h.dtype), hidden.shape[0], need)
        gs = (grads.h, grads.w, grads.b)
        return tuple(hidden.new_empty(0, dtype=prob.h.dtype) if g is None else g for g in gs)  # type: ignore[return-value]

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        pass

    @staticmethod
    def vmap(info: Any, in_dims: tuple[Any, ...], *args: Any) -> tuple[tuple[Tensor, ...], tuple[int, ...]]:
        return loop_vmap(_LinearGrads, info, in_dims, *args)

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> tuple[None, ...]:
        raise RuntimeError(
            "linear_cross_entropy is differentiable once: its backward cannot be differentiated again (no double "
            "backward, hessian or grad of grad); differentiate cross_entropy(hidden @ linear_weight.T, target) instead"
        )


def _chunk(
    h: Tensor, lw: Tensor, bias: Tensor | None, y: Tensor, weight: Tensor | None, opts: Options
) -> tuple[Tensor, Tensor | None]:
    """One token chunk of the traced path: per-row CE (no z-loss) and, with a z-loss, per-row lse^2 (0 where
    ignored), from the chunk's logits ``h @ lw.T + bias``."""
    z = h @ lw.T if bias is None else torch.addmm(bias, h, lw.T)
    ce = cross_entropy(
        z, y, weight, ignore_index=opts.ignore_index, reduction="none", label_smoothing=opts.label_smoothing,
        softcap=opts.softcap, check_target=False,
    )  # fmt: skip
    if opts.z_loss == 0:
        return ce, None
    value = logsumexp(_core.cap(z, opts.softcap)[0], 1)
    return ce, torch.where(y != opts.ignore_index, value * value, 0.0)


def _traced_loss(
    h2: Tensor, lw: Tensor, bias: Tensor | None, t1: Tensor, weight: Tensor | None, opts: Options, rows: int
) -> Tensor:
    """The path ``torch.compile`` traces (the eager one drops ignored rows and sizes its work from the data,
    which a graph cannot): chunks of ``rows`` tokens, each chunk's logits formed by one product and passed to
    :func:`softmaxkit.torch.cross_entropy` under activation checkpointing, so that backward holds one chunk of
    logits at a time (recomputed) instead of the :math:`N \times V` logits. Same values and options; ignored
    rows are multiplied (and a ``nan`` in one stays out of the loss, not out of the product's cost)."""
    work = _core.compute_dtype(h2.dtype, "hidden")
    h, w = h2.to(work), lw.to(work)
    b = None if bias is None else bias.to(work)
    parts = [
        checkpoint(_chunk, h[c0 : c0 + rows], w, b, t1[c0 : c0 + rows], weight, opts, use_reentrant=False)
        for c0 in range(0, h.shape[0], rows)
    ]
    row = torch.cat([p[0] for p in parts]) if parts else h.new_zeros(0)
    z_row = (
        None if opts.z_loss == 0 or not parts else opts.z_loss * torch.cat([p[1] for p in parts if p[1] is not None])
    )
    valid = (t1 != opts.ignore_index).to(work)
    in_range = valid * ((t1 >= 0) & (t1 < lw.shape[0])).to(work)  # w[y] below reads only indices in [0, V)
    w_y = valid if weight is None else in_range * weight.to(work)[t1.clamp(0, max(lw.shape[0] - 1, 0))]
    acc = _core.accumulator(row)
    loss = _core.reduce_rows(row, z_row, w_y.sum(dtype=acc), valid.sum(dtype=acc), opts.reduction)
    return loss.to(h2.dtype)


def _check(hidden: Any, lw: Any, target: Any, bias: Any, weight: Any, opts: Options) -> tuple[Tensor, Tensor]:
    for name, value in (("hidden", hidden), ("linear_weight", lw), ("target", target)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor; got {type(value).__name__}")
        if value.layout != torch.strided:
            raise TypeError(f"{name} is a sparse tensor ({value.layout}); pass {name}.to_dense()")
    if lw.ndim != 2:
        raise ValueError(f"linear_weight must be 2-d (V, D); got shape {tuple(lw.shape)}")
    if hidden.ndim < 1 or hidden.shape[-1] != lw.shape[1]:
        raise ValueError(
            f"hidden must have shape (..., D) with D = linear_weight.shape[1] = {lw.shape[1]}; got shape "
            f"{tuple(hidden.shape)}"
        )
    if not hidden.is_floating_point() or hidden.dtype != lw.dtype:
        raise TypeError(f"hidden and linear_weight must share one floating dtype; got {hidden.dtype} and {lw.dtype}")
    if target.is_floating_point() or target.dtype == torch.bool or target.dtype.is_complex:
        raise TypeError(f"target must hold integer class indices; got dtype {target.dtype}")
    if tuple(target.shape) != tuple(hidden.shape[:-1]):
        raise ValueError(
            f"target must have hidden's shape without its last dimension, {tuple(hidden.shape[:-1])}; got shape "
            f"{tuple(target.shape)}"
        )
    vocab = lw.shape[0]
    if bias is not None and (not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (vocab,)):
        raise ValueError(f"bias must be a tensor of shape ({vocab},); got {getattr(bias, 'shape', bias)!r}")
    if weight is not None:
        if not isinstance(weight, torch.Tensor):
            raise TypeError(f"weight must be a torch.Tensor; got {type(weight).__name__}")
        _core.check_weight(weight, vocab, values=False)
    if not torch.compiler.is_compiling():  # traced: an out-of-range label is a nan row (a host sync breaks graphs)
        _check_values(target, weight, vocab, opts)
    return hidden.reshape(-1, hidden.shape[-1]), target.reshape(-1)


def _check_values(target: Tensor, weight: Tensor | None, vocab: int, opts: Options) -> None:
    """The checks that read values on the host (class indices in range, finite non-negative class weights); a
    tensor batched by ``vmap`` is checked by the Function's ``vmap`` rule instead, where its values are plain."""
    if weight is not None and not _in_transform(weight):
        _core.check_weight(weight, vocab)
    if not _in_transform(target):
        _core.check_labels(target, vocab, opts.ignore_index, "the vocabulary (linear_weight.shape[0])")


def _gpu_options(deterministic: Any, grad_threshold: Any) -> tuple[bool, float]:
    """Validate the options of the Triton path; ``deterministic=None`` reads torch's global setting."""
    if deterministic is None:
        det = torch.are_deterministic_algorithms_enabled()
    elif isinstance(deterministic, bool):
        det = deterministic
    else:
        raise TypeError(f"deterministic must be True, False or None; got {deterministic!r}")
    return det, _validate.non_negative(grad_threshold, "grad_threshold")


def linear_cross_entropy(
    hidden: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    /,
    *,
    bias: Tensor | None = None,
    linear_bias: Tensor | None = None,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_size: int | tuple[int, int] | None = None,
    deterministic: bool | None = None,
    grad_threshold: float = 0.0,
) -> Tensor:
    r"""``cross_entropy(hidden @ linear_weight.T + bias, target)`` in chunks, without the :math:`N \times V` logits.

    The value and the gradients (for ``hidden``, ``linear_weight`` and ``bias``) are those of
    :func:`softmaxkit.torch.cross_entropy` on the full logits, with every option; only the memory differs. See
    the module notes for the online log-sum-exp and the block-by-block gradient.

    Parameters
    ----------
    hidden : Tensor
        ``(..., D)`` hidden states (float32/float64; float16/bfloat16 are computed in float32).
    linear_weight : Tensor
        ``(V, D)`` output projection, ``hidden``'s dtype.
    target : Tensor
        Integer class indices, ``hidden``'s shape without ``D``; ``ignore_index`` marks rows to skip.
    bias : Tensor, optional
        ``(V,)``. A ``-inf`` entry masks that vocabulary entry (padding).
    linear_bias : Tensor, optional
        The same as ``bias``, under ``torch.nn.functional.linear_cross_entropy``'s name (torch 2.13); give one
        of the two.
    weight, ignore_index, label_smoothing, reduction, z_loss, softcap
        As :func:`softmaxkit.torch.cross_entropy` (``weight`` holds the class weights, ``(V,)``).
    chunk_size : int or (int, int), optional
        Tokens per chunk, or (tokens, vocabulary entries) per block. By default the whole vocabulary and as
        many tokens as keep the step's extra memory (block and gradients) 18 times below the naive path's,
        at most :math:`2^{24}` logits and at least 64 tokens per block (see ``_blocks.default_rows``). A
        vocabulary chunk smaller than ``V`` bounds the memory further at the cost of one more matrix product
        (the blocks are recomputed for the gradient). Not used by the Triton kernels (CUDA inputs).
    deterministic : bool, optional
        CUDA inputs only: ``True`` runs the backward without atomics, so that the gradients are bit-identical
        from run to run (the logits are recomputed twice); ``False`` adds the tiles' shares with float32
        atomics (faster, last bits vary). Default: ``torch.are_deterministic_algorithms_enabled()``. The CPU
        path is always deterministic.
    grad_threshold : float, default 0
        CUDA inputs only: skip a ``(rows x vocabulary)`` tile of the backward when every per-token gradient
        entry :math:`|\partial \ell_n / \partial z_{nc}|` in it is below this value (Cut Cross-Entropy's
        gradient filtering, Wijmans et al. 2024; their default is ``torch.finfo(dtype).eps / 32``, i.e.
        :math:`2^{-12}` in bfloat16). 0, the default, is exact. The CPU path is always exact.

    Returns
    -------
    Tensor
        0-d for ``mean``/``sum``; ``target``'s shape for ``none``. ``hidden``'s dtype.

    Raises
    ------
    TypeError
        Non-tensor inputs; ``hidden`` and ``linear_weight`` of different dtypes; a floating ``target``; both
        ``bias`` and ``linear_bias``.
    ValueError
        Shapes that do not match (both named); a class index outside ``[0, V)`` (value and position named);
        bad options (as :func:`softmaxkit.torch.cross_entropy`); a non-positive ``chunk_size``; a negative or
        non-finite ``grad_threshold``.

    Notes
    -----
    With ``reduction="mean"``/``"sum"`` and gradients required, the gradients are computed during the forward
    and consumed by the first backward (so ``retain_graph=True`` and a second backward raise), and backward
    through it cannot be differentiated again (no double backward). Without gradients (``torch.no_grad``, or
    no input requiring them) only the loss is computed. ``reduction="none"`` recomputes the blocks in backward,
    weighting each row by its own upstream gradient.

    Under :mod:`torch.func` (``grad``, ``vmap``, ``jacrev``, per-sample gradients as ``vmap(grad(...))``) the
    values and gradients are those of autodiff through ``hidden @ linear_weight.T + bias`` and
    ``F.cross_entropy``; the forward never computes the gradients there (the backward recomputes the blocks),
    ``vmap`` runs the samples one after the other, and the label check reads the batch's plain values (an
    out-of-range class index still raises). Forward-mode AD (``jacfwd``, ``torch.autograd.forward_ad``) is not
    supported, nor is a second derivative (it raises).

    Under ``torch.compile`` (``fullgraph=True`` works) the traced path runs instead: token chunks of the same
    size, each chunk's logits passed to :func:`softmaxkit.torch.cross_entropy` under activation checkpointing
    (the same values and gradients; ignored rows are multiplied too, ``chunk_size``'s vocabulary part and the
    Triton kernels are not used), and the checks that read values on the host are skipped: a class index
    out of range gives ``nan`` for its row.

    Special values
    --------------
    ======================================  ==============================================
    case                                    loss (gradients)
    ======================================  ==============================================
    every label ignored, ``mean``           0 (zeros); torch: nan
    zero total weight, ``mean``             0 (zeros); torch: nan
    ignored rows                            never multiplied: 0 (zeros), even holding nan
    ``nan`` in a hidden row                 ``nan`` for that row (and in the weight gradient)
    ``-inf`` bias entry                     that entry has probability 0 (gradient 0)
    label out of range, ``torch.compile``   ``nan`` for that row (eager: ``ValueError``)
    float16 / bfloat16                      computed and accumulated in float32
    ======================================  ==============================================

    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import cross_entropy, linear_cross_entropy
    >>> g = torch.Generator().manual_seed(0)
    >>> h = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    >>> w = torch.randn(10, 4, generator=g, dtype=torch.float64, requires_grad=True)
    >>> y = torch.tensor([1, 2, -100, 9, 0, 3])
    >>> loss = linear_cross_entropy(h, w, y, label_smoothing=0.1, chunk_size=(4, 3))
    >>> bool(torch.isclose(loss, cross_entropy(h @ w.T, y, label_smoothing=0.1)))
    True
    >>> loss.backward(); w.grad.shape
    torch.Size([10, 4])
    """
    if linear_bias is not None:
        if bias is not None:
            raise TypeError("give bias or linear_bias (torch's name for it), not both")
        bias = linear_bias
    opts = _core.options(ignore_index, label_smoothing, reduction, z_loss, softcap)
    det, threshold = _gpu_options(deterministic, grad_threshold)
    h2, t1 = _check(hidden, linear_weight, target, bias, weight, opts)
    buffers = 1 if opts.softcap is None else 2  # the softcap keeps its derivative in a second block
    plan = blk.make_plan(chunk_size, h2.shape[0], linear_weight.shape[0], h2.shape[1], buffers)
    if torch.compiler.is_compiling():  # (before the transform test below, which Dynamo cannot trace)
        return _reshaped(_traced_loss(h2, linear_weight, bias, t1, weight, opts, plan.rows), target, opts)
    transform = _in_transform(h2, linear_weight, bias, t1, weight)
    if _triton.use_triton(h2, linear_weight) and not transform:
        loss = blk.apply_all(_TritonLinearCrossEntropy, h2, linear_weight, bias, t1, weight, opts, det, threshold)[0]
    else:
        grad_on = torch.is_grad_enabled()
        need = (grad_on and h2.requires_grad, grad_on and linear_weight.requires_grad,
                grad_on and bias is not None and bias.requires_grad)  # fmt: skip
        # a transform's backward may run more than once (vjp) or batched (jacrev): no gradients from the forward
        fuse = any(need) and opts.reduction != "none" and plan.cols >= linear_weight.shape[0] and not transform
        loss = blk.apply_all(_LinearCrossEntropy, h2, linear_weight, bias, t1, weight, opts, plan, need, fuse)[0]
    return _reshaped(loss, target, opts)


def _reshaped(loss: Tensor, target: Tensor, opts: Options) -> Tensor:
    return loss.reshape(target.shape) if opts.reduction == "none" else loss


# torch.nn.LinearCrossEntropyLoss appeared in torch 2.13; before it, the module builds the same attributes itself
_TorchLinearCrossEntropyLoss: Any = getattr(torch.nn, "LinearCrossEntropyLoss", torch.nn.Module)


class LinearCrossEntropyLoss(_TorchLinearCrossEntropyLoss):  # type: ignore[misc]
    r"""``torch.nn.LinearCrossEntropyLoss`` (owns the output projection) computed by :func:`linear_cross_entropy`.

    Same constructor as torch's, plus ``z_loss``, ``softcap``, ``chunk_size``, ``deterministic`` and
    ``grad_threshold`` (see :func:`linear_cross_entropy`); ``self.linear`` holds the
    projection, so checkpoints load unchanged. ``options`` (torch's chunking configuration) is accepted and not
    used: this module always works in chunks. K-dimensional heads (``out_features != ()``) are not supported.
    With torch older than 2.13 (no ``torch.nn.LinearCrossEntropyLoss``) it is a plain ``torch.nn.Module`` with
    the same attributes.

    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import LinearCrossEntropyLoss
    >>> head = LinearCrossEntropyLoss(4, 10, bias=True, label_smoothing=0.1)
    >>> loss = head(torch.randn(6, 4), torch.tensor([1, 2, -100, 9, 0, 3]))
    >>> loss.backward(); head.linear.weight.grad.shape
    torch.Size([10, 4])
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        out_features: tuple[int, ...] = (),
        bias: bool = False,
        device: Any = None,
        dtype: Any = None,
        reduction: str = "mean",
        weight: Tensor | None = None,
        ignore_index: int | None = None,
        label_smoothing: float = 0.0,
        options: Any = None,
        z_loss: float = 0.0,
        softcap: float | None = None,
        chunk_size: int | tuple[int, int] | None = None,
        deterministic: bool | None = None,
        grad_threshold: float = 0.0,
    ) -> None:
        if tuple(out_features) != ():
            raise ValueError(f"out_features={out_features!r}: K-dimensional heads are not supported; use ()")
        _core.options(-100 if ignore_index is None else ignore_index, label_smoothing, reduction, z_loss, softcap)
        blk.make_plan(chunk_size, 1, num_classes)
        _gpu_options(deterministic, grad_threshold)
        if _TorchLinearCrossEntropyLoss is torch.nn.Module:
            super().__init__()
            self.register_buffer("weight", weight)
            self.reduction, self.ignore_index, self.label_smoothing = reduction, ignore_index, label_smoothing
            self.num_classes, self.out_features, self.options = num_classes, (), options
            self.linear = torch.nn.Linear(in_features, num_classes, bias=bias, device=device, dtype=dtype)
        else:
            super().__init__(
                in_features,
                num_classes,
                bias=bias,
                device=device,
                dtype=dtype,
                reduction=reduction,
                weight=weight,
                ignore_index=ignore_index,
                label_smoothing=label_smoothing,
                options=options,
            )
        self.z_loss, self.softcap, self.chunk_size = z_loss, softcap, chunk_size
        self.deterministic, self.grad_threshold = deterministic, grad_threshold

    def extra_repr(self) -> str:
        # ours, not torch's: ignore_index as used (-100 for None), our options, no chunking ``options``
        parts = [
            f"in_features={self.linear.in_features}",
            f"num_classes={self.num_classes}",
            f"bias={self.linear.bias is not None}",
            f"reduction={self.reduction!r}",
            f"ignore_index={-100 if self.ignore_index is None else self.ignore_index}",
            f"label_smoothing={self.label_smoothing}",
            f"z_loss={self.z_loss}",
            f"softcap={self.softcap}",
            f"chunk_size={self.chunk_size}",
        ]
        if self.deterministic is not None:
            parts.append(f"deterministic={self.deterministic}")
        if self.grad_threshold:
            parts.append(f"grad_threshold={self.grad_threshold}")
        return ", ".join(parts)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return linear_cross_entropy(
            input,
            self.linear.weight,
            target,
            bias=self.linear.bias,
            weight=self.weight,
            ignore_index=-100 if self.ignore_index is None else self.ignore_index,
            label_smoothing=self.label_smoothing,
            reduction=self.reduction,
            z_loss=self.z_loss,
            softcap=self.softcap,
            chunk_size=self.chunk_size,
            deterministic=self.deterministic,
            grad_threshold=self.grad_threshold,
        )

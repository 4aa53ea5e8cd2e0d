"""``softmaxkit.jax.linear_cross_entropy``: cross-entropy of ``hidden @ W.T + b`` without the logits."""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from .. import _validate
from .._array import Array, accumulator, compute_dtype, result_dtype
from . import _online as on

_INF = float("inf")

BLOCK_ELEMENTS = 2**23
"""Logits per block when ``chunk_size`` is None (32 MiB in float32), as in :mod:`softmaxkit.torch`."""


class _Options(NamedTuple):
    ignore: int
    eps: float
    red: str
    lam: float
    cap: float | None
    rows: int  # rows per block (<= N)
    cols: int  # classes per block (<= V)
    dtype: Any  # compute dtype of the logits and of every gradient accumulator


def _tile(i: Array, block: int, size: int) -> tuple[Array, Array]:
    """Start of block ``i`` and which of its positions it owns.

    Blocks have a fixed size (``lax.scan`` needs static shapes). When ``block`` does not divide ``size`` the last
    block starts at ``size - block`` instead of running past the end; it overlaps its predecessor, and the
    positions it shares are not its own: masked out of the loss, zero in the gradient. Nothing is padded, so
    the weight matrix is never copied.
    """
    start = jnp.minimum(i * block, size - block)
    return start, start + jnp.arange(block) >= i * block


def _untile(x: Array, size: int) -> Array:
    """Stacked per-block rows ``(blocks, block, ...)`` back to ``(size, ...)``, each row from its owner."""
    n, block = x.shape[:2]
    keep = size - (n - 1) * block
    return jnp.concatenate([x[:-1].reshape(-1, *x.shape[2:]), x[-1, block - keep :]])


def _slice(x: Array | None, start: Array, size: int) -> Array | None:
    return None if x is None else lax.dynamic_slice_in_dim(x, start, size)


def _logits(h: Array, w: Array, b: Array | None, dtype: Any) -> Array:
    """One block of ``h @ w.T + b``, accumulated in ``dtype`` (float32 for half-precision inputs)."""
    z = jnp.matmul(h, w.T, preferred_element_type=dtype)
    return z if b is None else z + b.astype(dtype)


class _Block(NamedTuple):
    """One block of classes, seen from one block of rows."""

    start: Array
    owned: Array  # (cols,) classes this block owns
    z: Array  # (rows, cols) logits, -inf outside ``owned``
    onehot: Array  # (rows, cols) each row's target class, when owned and the row is not ignored
    u: Array | None  # (1, cols) class weights of the smoothing sum (0 outside ``owned``); None without smoothing
    w: Array  # (cols, H) the block of the weight matrix


def _block(
    opt: _Options, j: Array, hb: Array, yb: Array, vb: Array, mat: Array, b: Array | None, cw: Array | None
) -> _Block:
    vocab = mat.shape[0]
    c0, owned = _tile(j, opt.cols, vocab)
    wb = lax.dynamic_slice_in_dim(mat, c0, opt.cols)
    z = jnp.where(owned, _logits(hb, wb, _slice(b, c0, opt.cols), opt.dtype), -_INF)
    onehot = (c0 + jnp.arange(opt.cols) == yb[:, None]) & owned & vb[:, None]
    u = None
    if opt.eps > 0:
        cwb = _slice(cw, c0, opt.cols)
        u = jnp.where(owned, 1.0 if cwb is None else cwb, 0.0).astype(opt.dtype)[None, :]
    return _Block(c0, owned, z, onehot, u, wb)


def _targets(opt: _Options, y: Array, cw: Array | None, vocab: int) -> on.Targets:
    return on.index_targets(y, cw, opt.ignore, opt.eps, vocab, opt.dtype)


def _forward(
    opt: _Options, h: Array, mat: Array, b: Array | None, y: Array, cw: Array | None
) -> tuple[Array, tuple[Any, ...]]:
    n, vocab = h.shape[0], mat.shape[0]
    tg = _targets(opt, y, cw, vocab)

    def row_block(i: Array) -> on.RowStats:
        r0, _ = _tile(i, opt.rows, n)
        hb, yb, vb = (lax.dynamic_slice_in_dim(x, r0, opt.rows) for x in (h, y, tg.valid))

        def step(st: on.RowStats, j: Array) -> tuple[on.RowStats, None]:
            blk = _block(opt, j, hb, yb, vb, mat, b, cw)
            d, m, _ = on.shifted(blk.z, opt.cap)
            return on.merge(st, on.block_stats(d, m, blk.u, blk.onehot)), None

        st, _ = lax.scan(step, on.empty_stats(opt.rows, opt.dtype), jnp.arange(-(-vocab // opt.cols)))
        return st

    stacked = lax.map(row_block, jnp.arange(-(-n // opt.rows)))
    st = on.RowStats(*(_untile(x, n) for x in stacked))
    acc = accumulator(jnp, opt.dtype, h)
    bad = on.index_bad(st.m, st.hy, tg.valid)
    denom, count = jnp.sum(tg.w_y.astype(acc)), jnp.sum(tg.valid.astype(acc))
    loss, log_norm, ce_mean = on.finish(opt.red, opt.lam, st, tg.coef, tg.smooth, tg.valid, bad, denom, count, acc)
    return loss, (h, mat, b, y, cw, st.m, log_norm, st.dy, bad, denom, count, ce_mean)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _linear_ce(opt: _Options, h: Array, mat: Array, b: Array | None, y: Array, cw: Array | None) -> Array:
    return _forward(opt, h, mat, b, y, cw)[0]


def _backward(opt: _Options, res: tuple[Any, ...], ct: Array) -> tuple[Array | None, ...]:
    h, mat, b, y, cw, m, log_norm, dy, bad, denom, count, ce_mean = res
    n, vocab = h.shape[0], mat.shape[0]
    dt = opt.dtype
    tg = _targets(opt, y, cw, vocab)
    g_ce, alpha, beta, gamma = on.coefficients(opt.red, opt.lam, ct, m, log_norm, denom, count, tg.coef, tg.smooth)
    gamma = jnp.where(tg.valid, gamma, 0.0)
    mass = jnp.full((n,), float(vocab), dt) if cw is None else jnp.broadcast_to(jnp.sum(cw), (n,))
    s = on.shift(m)
    w_bar0 = jnp.zeros(mat.shape, dt)
    b_bar0 = None if b is None else jnp.zeros((vocab,), dt)
    cw_bar0 = None if cw is None else jnp.zeros((vocab,), dt)

    def row_block(carry: tuple[Any, ...], i: Array) -> tuple[tuple[Any, ...], Array]:
        r0, mine = _tile(i, opt.rows, n)
        hb, yb, vb, lb, sb = (lax.dynamic_slice_in_dim(x, r0, opt.rows) for x in (h, y, tg.valid, log_norm, s))
        # rows this block does not own get no gradient, else the overlap would count twice in W's gradient
        ab, bb, gb, mb = (
            jnp.where(mine, lax.dynamic_slice_in_dim(x, r0, opt.rows), 0.0) for x in (alpha, beta, gamma, mass)
        )
        live = vb & mine
        h_live = jnp.where(live[:, None], hb, 0.0)  # an ignored row is never multiplied, even holding nan
        badb = lax.dynamic_slice_in_dim(bad, r0, opt.rows) & mine

        def step(inner: tuple[Any, ...], j: Array) -> tuple[tuple[Any, ...], None]:
            h_bar, w_bar, b_bar, cw_bar = inner
            blk = _block(opt, j, hb, yb, vb, mat, b, cw)
            d, dcap = on.shifted_by(blk.z, sb, opt.cap)
            g = on.block_grad(d, lb, ab, bb, gb, mb, blk.u, blk.onehot)
            if dcap is not None:
                g = g * dcap
            g = jnp.where(live[:, None] & blk.owned, g, 0.0)
            g = jnp.where(badb[:, None] & blk.owned, jnp.nan, g)
            h_bar = h_bar + jnp.matmul(g, blk.w, preferred_element_type=dt)
            w_rows = lax.dynamic_slice_in_dim(w_bar, blk.start, opt.cols)
            w_rows = w_rows + jnp.matmul(g.T, h_live, preferred_element_type=dt)
            w_bar = lax.dynamic_update_slice_in_dim(w_bar, w_rows, blk.start, 0)
            if b_bar is not None:
                b_rows = lax.dynamic_slice_in_dim(b_bar, blk.start, opt.cols) + jnp.sum(g, axis=0)
                b_bar = lax.dynamic_update_slice_in_dim(b_bar, b_rows, blk.start, 0)
            if cw_bar is not None and opt.eps > 0:
                gaps = jnp.where(blk.owned, on.weighted_gaps(bb[:, None], lb, d), 0.0)
                cw_rows = lax.dynamic_slice_in_dim(cw_bar, blk.start, opt.cols) + jnp.sum(gaps, axis=0)
                cw_bar = lax.dynamic_update_slice_in_dim(cw_bar, cw_rows, blk.start, 0)
            return (h_bar, w_bar, b_bar, cw_bar), None

        h0 = jnp.zeros((opt.rows, h.shape[1]), dt)
        (h_bar, *rest), _ = lax.scan(step, (h0, *carry), jnp.arange(-(-vocab // opt.cols)))
        return tuple(rest), h_bar

    (w_bar, b_bar, cw_bar), h_bars = lax.scan(row_block, (w_bar0, b_bar0, cw_bar0), jnp.arange(-(-n // opt.rows)))
    if cw_bar is not None:
        cw_bar = cw_bar + on.weight_scatter(opt.red, opt.eps, g_ce, tg.y, tg.valid, log_norm - dy, ce_mean, vocab)
    return (
        _untile(h_bars, n).astype(h.dtype),
        w_bar.astype(mat.dtype),
        None if b is None or b_bar is None else b_bar.astype(b.dtype),
        None,
        None if cw is None or cw_bar is None else cw_bar.astype(cw.dtype),
    )


_linear_ce.defvjp(_forward, _backward)
# compiled once per options and shapes, so that an eager call does not trace and compile its loops again
_linear_ce_jit = jax.jit(_linear_ce, static_argnums=0)


def _chunks(chunk_size: Any, n: int, vocab: int) -> tuple[int, int]:
    """Rows and classes per block, the rule of :func:`softmaxkit.torch.linear_cross_entropy`."""
    if chunk_size is None:
        return max(1, min(max(32, BLOCK_ELEMENTS // vocab) // 8 * 8, n)), vocab
    if isinstance(chunk_size, tuple):
        if len(chunk_size) != 2:
            raise ValueError(f"chunk_size must be an int or a pair (tokens, vocabulary); got {chunk_size!r}")
        rows, cols = (_validate.integer(c, "chunk_size") for c in chunk_size)
    else:
        rows, cols = _validate.integer(chunk_size, "chunk_size"), vocab
    if rows < 1 or cols < 1:
        raise ValueError(f"chunk_size must hold positive sizes; got {chunk_size!r}")
    return min(rows, n), min(cols, vocab)


def linear_cross_entropy(
    hidden: Array,
    linear_weight: Array,
    target: Array,
    /,
    *,
    bias: Array | None = None,
    weight: Array | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_size: int | tuple[int, int] | None = None,
) -> Array:
    r"""Cross-entropy of the logits ``hidden @ linear_weight.T + bias``, never forming them.

    Equal (to rounding) to ``softmaxkit.cross_entropy(hidden @ linear_weight.T + bias, target, ...)``,
    but the :math:`N \times V` logits and their gradient exist one block of ``chunk_size`` at a time; see
    :mod:`softmaxkit.jax` for the online log-sum-exp that joins the blocks and why the backward pass needs only
    per-row statistics. As in ``torch.nn.functional.linear_cross_entropy`` (and
    :func:`softmaxkit.torch.linear_cross_entropy`, whose signature this mirrors), ``weight`` is the per-class
    weight of the loss and ``linear_weight`` the projection.

    Parameters
    ----------
    hidden : array_like, shape (..., H)
        The last hidden states. Any float dtype; float16/bfloat16 are multiplied with float32 accumulation
        and every gradient is accumulated in float32.
    linear_weight : array_like, shape (V, H)
        The output projection (``V`` classes).
    target : array_like of int, shape (...)
        Class indices in ``[0, V)`` or ``ignore_index``.
    bias : array_like, shape (V,), optional
        Added to the logits; a ``-inf`` entry masks that class.
    weight : array_like, shape (V,), optional
        Per-class weights, ``>= 0``.
    ignore_index, label_smoothing, reduction, z_loss, softcap
        As for :func:`softmaxkit.cross_entropy`.
    chunk_size : int or (int, int), optional
        Tokens per block with the whole vocabulary, or ``(tokens, classes)`` per block. By default the whole
        vocabulary and as many tokens as keep a block at :math:`2^{23}` logits (at least 32). Sizes that do not
        divide ``N`` or ``V`` are fine (the last block overlaps its neighbour and owns only its new part).
        Beyond the inputs, memory holds a few blocks of logits, per-row statistics, and under ``jax.grad``
        the ``(V, H)`` gradient accumulator.

    Returns
    -------
    jax.Array
        0-d for ``mean``/``sum``, else one loss per row (``target``'s shape); dtype of
        ``hidden @ linear_weight.T``.

    Raises
    ------
    TypeError
        A non-integer ``target``; non-real inputs.
    ValueError
        Mismatched shapes; a label outside ``[0, V)`` or a negative ``weight`` (on concrete arrays only: under
        ``jax.jit`` such a row gives ``nan`` instead); bad options, as :func:`softmaxkit.cross_entropy`.

    Special values
    --------------
    ===================================  ===========================================
    case                                 loss (gradients)
    ===================================  ===========================================
    all ignored / zero weight, ``mean``  0 (zeros)
    ignored row holding ``nan``          0 (zeros)
    ``nan`` or ``inf`` in a used row     ``nan`` for that row; ``nan`` gradients
    empty batch                          0 for mean/sum, empty for none (zeros)
    ``softcap``                          :math:`c\tanh(z/c)` applied per block
    ===================================  ===========================================

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from softmaxkit.jax import linear_cross_entropy
    >>> h = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> w = jnp.array([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    >>> y = jnp.array([0, 1, 2])
    >>> loss = linear_cross_entropy(h, w, y, chunk_size=(2, 2))  # blocks of 2 rows x 2 classes
    >>> print(round(float(loss), 4))
    0.6379
    >>> g_h, g_w = jax.grad(linear_cross_entropy, argnums=(0, 1))(h, w, y, chunk_size=(2, 2))
    >>> print(g_w.shape)
    (3, 2)
    """
    o = _validate.cross_entropy_options(ignore_index, label_smoothing, reduction, z_loss, softcap)
    ignore, eps, red, lam, cap = o.ignore_index, o.label_smoothing, o.reduction, o.z_loss, o.softcap
    h, mat = jnp.asarray(hidden), jnp.asarray(linear_weight)
    b = None if bias is None else jnp.asarray(bias)
    if h.ndim < 1 or mat.ndim != 2 or mat.shape[1] != h.shape[-1]:
        raise ValueError(
            f"hidden must have shape (..., H) and linear_weight (V, H) with the same H; got {h.shape} and {mat.shape}"
        )
    vocab = mat.shape[0]
    if b is not None and b.shape != (vocab,):
        raise ValueError(f"bias must have shape ({vocab},); got {b.shape}")
    joint = jnp.result_type(*(x.dtype for x in (h, mat, b) if x is not None))
    work, out = compute_dtype(jnp, joint, "hidden"), result_dtype(jnp, joint, "hidden")
    for name, x in (("hidden", h), ("linear_weight", mat), ("bias", b)):
        if x is not None and not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"{name} must be floating; got dtype {x.dtype}")
    y = jnp.asarray(target)
    batch = h.shape[:-1]
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise TypeError(
            f"target must hold integer class indices; got dtype {y.dtype} (for probability targets use "
            "softmaxkit.jax.cross_entropy on the logits)"
        )
    if y.shape != batch:
        raise ValueError(f"target must have hidden's shape without its last axis, {batch}; got shape {y.shape}")
    _validate.labels(jnp, y, vocab, ignore, "linear_weight's rows")
    cw = None if weight is None else _validate.class_weight(jnp, h, jnp.asarray(weight), vocab, work)
    n = math.prod(batch)
    if n == 0 or vocab == 0:  # nothing to average (every row was ignored, checked above)
        return jnp.zeros(batch if red == "none" else (), out)
    rows, cols = _chunks(chunk_size, n, vocab)
    opt = _Options(ignore, eps, red, lam, cap, rows, cols, work)
    loss = _linear_ce_jit(opt, h.reshape(n, h.shape[-1]), mat, b, y.reshape(n), cw)
    return (loss.reshape(batch) if red == "none" else loss).astype(out)

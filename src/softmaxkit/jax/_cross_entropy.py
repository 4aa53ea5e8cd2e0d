"""``softmaxkit.jax.cross_entropy``: the reference cross-entropy as a ``jax.custom_vjp``."""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .. import _validate
from .._array import Array, accumulator, compute_dtype, result_dtype
from . import _online as on

_INF = float("inf")


class _Options(NamedTuple):
    """Everything static about one call (hashable: it is a ``nondiff_argnums`` argument)."""

    by_index: bool
    ignore: int
    eps: float
    red: str
    lam: float
    cap: float | None


def _smoothed(opt: _Options, t: Array) -> Array:
    r"""Probability targets after label smoothing: :math:`(1 - \varepsilon) t + \varepsilon / C`."""
    return t * (1.0 - opt.eps) + opt.eps / t.shape[-1] if opt.eps > 0 else t


def _prepare(
    opt: _Options, z: Array, t: Array, w: Array | None
) -> tuple[on.Targets | None, Array | None, Array | None]:
    r"""Per-row coefficients (class indices), the one-hot mask and the weights ``u`` of the smoothing or
    probability sum :math:`\sum_c u_c (\operatorname{lse} - z_c)`."""
    n_classes = z.shape[-1]
    if opt.by_index:
        tg = on.index_targets(t, w, opt.ignore, opt.eps, n_classes, z.dtype)
        onehot = jnp.logical_and(jnp.arange(n_classes) == t[:, None], tg.valid[:, None])
        u = None if opt.eps == 0 else (jnp.ones((1, n_classes), z.dtype) if w is None else w[None, :])
        return tg, onehot, u
    q = _smoothed(opt, t)
    return None, None, q if w is None else q * w


def _forward(opt: _Options, z: Array, t: Array, w: Array | None) -> tuple[Array, tuple[Array, ...]]:
    acc = accumulator(jnp, z.dtype, z)
    d, m, _ = on.shifted(z, opt.cap)
    tg, onehot, u = _prepare(opt, z, t, w)
    st = on.block_stats(d, m, u, onehot)
    if tg is None:  # probability targets: row = sum_c w_c q_c (lse - z_c), mean over all rows
        coef, smooth, valid, bad = jnp.zeros_like(m), jnp.ones_like(m), jnp.ones(m.shape, bool), on.bad_rows(m)
        denom = count = jnp.asarray(float(z.shape[0]), dtype=acc)
    else:
        coef, smooth, valid, bad = tg.coef, tg.smooth, tg.valid, on.index_bad(m, st.hy, tg.valid)
        denom, count = jnp.sum(tg.w_y.astype(acc)), jnp.sum(valid.astype(acc))
    loss, log_norm, ce_mean = on.finish(opt.red, opt.lam, st, coef, smooth, valid, bad, denom, count, acc)
    return loss, (z, t, w, m, log_norm, st.dy, bad, denom, count, ce_mean)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _ce(opt: _Options, z: Array, t: Array, w: Array | None) -> Array:
    return _forward(opt, z, t, w)[0]


def _backward(opt: _Options, res: tuple[Array, ...], ct: Array) -> tuple[Array | None, ...]:
    z, t, w, m, log_norm, dy, bad, denom, count, ce_mean = res
    n_classes = z.shape[-1]
    d, _, dcap = on.shifted(z, opt.cap)  # the forward's d, recomputed rather than saved
    tg, onehot, u = _prepare(opt, z, t, w)
    if tg is None:
        coef, smooth, live = jnp.zeros_like(m), jnp.ones_like(m), jnp.ones(m.shape, bool)
    else:
        coef, smooth, live = tg.coef, tg.smooth, tg.valid
    g_ce, alpha, beta, gamma = on.coefficients(opt.red, opt.lam, ct, m, log_norm, denom, count, coef, smooth)
    mass = jnp.zeros_like(m) if u is None else jnp.sum(jnp.broadcast_to(u, z.shape), axis=-1)
    g = on.block_grad(d, log_norm, alpha, beta, gamma, mass, u, onehot)
    if dcap is not None:
        g = g * dcap
    g = jnp.where(live[:, None], g, 0.0)  # ignored rows are never read, even when they hold nan
    g = jnp.where(bad[:, None], jnp.nan, g)

    t_bar = w_bar = None
    if tg is None:  # d row / d t = (1 - eps) w (L - d),  d row / d w = q (L - d)
        w_row = jnp.ones((1, n_classes), z.dtype) if w is None else w[None, :]
        t_bar = on.weighted_gaps(g_ce[:, None] * (1.0 - opt.eps) * w_row, log_norm, d)
        if w is not None:
            w_bar = jnp.sum(on.weighted_gaps(g_ce[:, None] * _smoothed(opt, t), log_norm, d), axis=0)
    elif w is not None:  # d row / d w_c = (1 - eps) [y = c] nll + eps/C (L - d_c), and the mean's denominator
        w_bar = jnp.sum(on.weighted_gaps(beta[:, None], log_norm, d), axis=0)
        w_bar = w_bar + on.weight_scatter(opt.red, opt.eps, g_ce, tg.y, tg.valid, log_norm - dy, ce_mean, n_classes)
    return g, t_bar, w_bar


_ce.defvjp(_forward, _backward)


def cross_entropy(
    logits: Array,
    target: Array,
    /,
    *,
    axis: int = -1,
    weight: Array | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    z_loss: float = 0.0,
    softcap: float | None = None,
) -> Array:
    r""":func:`softmaxkit.cross_entropy` for JAX, with a ``jax.custom_vjp`` that saves per-row statistics only.

    Same value, options and special values as the reference (to rounding). Under ``jax.grad`` the forward pass
    keeps, per row, the log-sum-exp (as its maximum :math:`m` and :math:`L = \log(1 + r)`) and the target's
    shifted logit; the backward pass recomputes :math:`p = e^{z - m - L}` and forms
    :math:`\partial\ell/\partial z = p \sum_c w_c q_c - w \odot q + 2\lambda_z \operatorname{lse}\,p` directly,
    instead of storing the intermediates of an autodiff trace. Gradients also flow to probability targets
    and to ``weight`` (including the ``mean`` denominator's dependence on it).

    Parameters
    ----------
    logits : array_like
        Real logits; ``axis`` holds the ``C`` classes. float16/bfloat16 are computed in float32 and the loss
        and gradients come back in their own dtype.
    target : array_like
        Integer class indices (the logits' shape without ``axis``) or floating probabilities (the logits'
        shape).
    axis, weight, ignore_index, label_smoothing, reduction, z_loss, softcap
        As for :func:`softmaxkit.cross_entropy`.

    Returns
    -------
    jax.Array
        0-d for ``mean``/``sum``, else one loss per row; the logits' (floating) dtype.

    Raises
    ------
    TypeError, ValueError
        As :func:`softmaxkit.cross_entropy`. Checks on values (labels in range, weights and probabilities
        non-negative) run only on concrete arrays; under ``jax.jit`` they are skipped, and a class index
        outside ``[0, C)`` then makes its row's loss ``nan`` instead.

    Notes
    -----
    Reverse mode only (``jax.grad``, ``jax.vjp``); ``jax.jvp`` of a ``custom_vjp`` is not defined.

    Special values
    --------------
    =====================================  ==============================================
    case                                   loss (gradient)
    =====================================  ==============================================
    target's logit is ``-inf``             ``inf`` (gradient still :math:`p - q`)
    all ignored / zero weight, ``mean``    0 (zeros)
    row with ``nan`` or ``+inf``           ``nan`` for that row (its gradient row nan)
    ignored row holding ``nan``            0 (zeros)
    ``softcap``                            :math:`c\tanh(z/c)`, ``-inf`` stays ``-inf``
    class index out of range under jit     ``nan`` for that row
    =====================================  ==============================================

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from softmaxkit.jax import cross_entropy
    >>> z = jnp.array([[5.0, 2.0, -1.0, 3.0]])
    >>> print(round(float(cross_entropy(z, jnp.array([0]))), 4))
    0.1719
    >>> g = jax.grad(cross_entropy)(z, jnp.array([0]))  # p - onehot
    >>> print([round(float(v), 3) for v in g[0]])
    [-0.158, 0.042, 0.002, 0.114]
    """
    o = _validate.cross_entropy_options(ignore_index, label_smoothing, reduction, z_loss, softcap)
    ignore, eps, red, lam, cap = o.ignore_index, o.label_smoothing, o.reduction, o.z_loss, o.softcap
    x = jnp.asarray(logits)
    ax = _validate.axis(axis, x.ndim)
    work, out = compute_dtype(jnp, x.dtype, "logits"), result_dtype(jnp, x.dtype, "logits")
    z = jnp.moveaxis(x.astype(work), ax, -1)
    batch, n_classes = z.shape[:-1], z.shape[-1]
    t = jnp.asarray(target)
    by_index = bool(jnp.issubdtype(t.dtype, jnp.integer))
    if not (by_index or jnp.issubdtype(t.dtype, jnp.floating)):
        raise TypeError(f"target must hold integer class indices or floating probabilities; got dtype {t.dtype}")
    if by_index:
        _validate.index_target(
            jnp, t, batch, f"the logits' shape without axis {ax}, {batch}", f"logits shape {tuple(x.shape)}"
        )
        _validate.labels(jnp, t, n_classes, ignore, f"axis {ax}")
        t = t.reshape(-1)
    else:
        if t.shape != x.shape:
            raise ValueError(f"target (probabilities) must have the logits' shape {x.shape}; got shape {t.shape}")
        if ignore != -100:
            raise ValueError(
                f"ignore_index={ignore} has no meaning for probability targets (as in torch); leave it at -100"
            )
        t = jnp.moveaxis(t.astype(work), ax, -1)
        _validate.probabilities(jnp, t, " (class axis last)")
        t = t.reshape(-1, n_classes)
    w = None if weight is None else _validate.class_weight(jnp, z, jnp.asarray(weight), n_classes, work)
    n_rows = math.prod(batch)
    if n_rows == 0 or n_classes == 0:  # nothing to average (every row was ignored, checked above)
        return jnp.zeros(batch if red == "none" else (), out)
    loss = _ce(_Options(by_index, ignore, eps, red, lam, cap), z.reshape(n_rows, n_classes), t, w)
    return (loss.reshape(batch) if red == "none" else loss).astype(out)

r"""The arithmetic both JAX fronts share: per-row statistics of a block of logits, their online merge, the
per-row losses and reduction, and the gradient of one block.

Everything works on 2-d blocks ``(rows, classes)`` with the class axis last, in the compute dtype. A *shift*
is the row maximum where it is finite and 0 otherwise (the convention of :func:`softmaxkit.softmax`), so that
``-inf`` logits stay ``-inf`` after shifting and no ``inf - inf`` appears.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from .. import _engine, _validate
from .._array import Array, DType

_INF = float("inf")
_NAN = float("nan")


class RowStats(NamedTuple):
    """What a pass over some of a row's classes leaves behind: enough to finish the loss and, with the target's
    coefficients, its gradient. ``s`` below is the shift of ``m``."""

    m: Array  # maximum of the (capped) logits seen: -inf if none or all masked; nan or +inf: a bad row
    log_norm: Array  # log1p(sum of exp(z - m) over the classes seen except one maximum): the engine's Lse
    dy: Array  # target's logit minus s; 0 until the target's class has been seen
    hy: Array  # 1 once the target's class has been seen, else 0 (the "mass" that dy carries)
    su: Array  # sum over classes seen with u != 0 of u * (z - s)   (u: class weights or weighted targets)
    mass: Array  # sum of u over the classes seen


def shift(m: Array) -> Array:
    """The row maximum where it is finite, 0 elsewhere."""
    return jnp.where(jnp.isfinite(m), m, 0.0)


def shifted(z: Array, cap: float | None) -> tuple[Array, Array, Array | None]:
    r"""``(d, m, dcap)``: the (capped) logits minus their row shift, the row maximum, and the derivative of the cap.

    Under a softcap the differences :math:`c\tanh(z_j/c) - c\tanh(m/c)` come from the reference's
    cancellation-free formula, so one block spanning every class reproduces :func:`softmaxkit.cross_entropy`.
    """
    if cap is None:
        m = jnp.max(z, axis=-1)
        return z - shift(m)[:, None], m, None
    d, top, dcap = _engine.softcap_shifted(jnp, z, cap)
    return d, top[:, 0], dcap


def shifted_by(z: Array, s: Array, cap: float | None) -> tuple[Array, Array | None]:
    """``(d, dcap)`` as :func:`shifted`, but relative to a given row shift ``s`` (the whole row's, in a backward
    pass over one block of it)."""
    if cap is None:
        return z - s[:, None], None
    d, top, dcap = _engine.softcap_shifted(jnp, z, cap)
    return d + (shift(top) - s[:, None]), dcap


def block_stats(d: Array, m: Array, u: Array | None, onehot: Array | None) -> RowStats:
    """:class:`RowStats` of one block, from its shifted logits ``d`` and row maximum ``m``.

    ``u`` (broadcastable to ``d``, 0 where a class must not count) weighs the smoothing / probability sum; None
    skips it. ``onehot`` marks each row's target class; None for probability targets.
    """
    log_norm = _engine.lse_of_shifted(jnp, d, m).log_norm
    zero = jnp.zeros_like(m)
    if onehot is None:
        dy = hy = zero
    else:
        dy = jnp.sum(jnp.where(onehot, d, 0.0), axis=-1)
        hy = jnp.any(onehot, axis=-1).astype(d.dtype)
    if u is None:
        su = mass = zero
    else:
        su = jnp.sum(jnp.where(u == 0, 0.0, u * d), axis=-1)
        mass = jnp.sum(jnp.broadcast_to(u, d.shape), axis=-1)
    return RowStats(m, log_norm, dy, hy, su, mass)


def empty_stats(rows: int, dtype: DType) -> RowStats:
    """The state before any class has been seen (the identity of :func:`merge`)."""
    zero = jnp.zeros((rows,), dtype=dtype)
    return RowStats(jnp.full((rows,), -_INF, dtype=dtype), zero, zero, zero, zero, zero)


def merge(a: RowStats, b: RowStats) -> RowStats:
    r"""Combine the statistics of two disjoint sets of classes (the online log-sum-exp).

    ``(m, log_norm)`` merge as the engine's :class:`~softmaxkit._engine.Lse` (:func:`softmaxkit._engine.merge`).
    Shifted sums move to the new shift: :math:`\sum u (z - s) = \sum u (z - s_a) + (\sum u)(s_a - s)`.
    """
    m, log_norm = _engine.merge(jnp, _engine.Lse(a.m, a.log_norm), _engine.Lse(b.m, b.log_norm))
    s = shift(m)

    def moved(v: Array, weight: Array, m_old: Array) -> Array:
        return v + jnp.where(weight == 0, 0.0, weight * (shift(m_old) - s))

    return RowStats(
        m,
        log_norm,
        moved(a.dy, a.hy, a.m) + moved(b.dy, b.hy, b.m),
        jnp.maximum(a.hy, b.hy),
        moved(a.su, a.mass, a.m) + moved(b.su, b.mass, b.m),
        a.mass + b.mass,
    )


class Targets(NamedTuple):
    """Per-row coefficients of a class-index target: ``row = coef * nll + smooth * (mass * L - su)``."""

    valid: Array  # bool: not ignore_index
    y: Array  # class index, 0 where ignored (safe to gather with)
    w_y: Array  # weight of the target class, 0 where ignored
    coef: Array  # (1 - eps) * w_y
    smooth: Array  # eps / C on rows not ignored


def index_targets(
    target: Array, weight: Array | None, ignore: int, eps: float, n_classes: int, dtype: DType
) -> Targets:
    """Split class-index targets into the per-row coefficients of the loss."""
    valid = _validate.kept(jnp, target, ignore)
    valid_f = valid.astype(dtype)
    y = jnp.where(valid, target, 0)
    w_y = valid_f if weight is None else jnp.where(valid, jnp.take(weight, y, mode="clip"), 0.0)
    return Targets(valid, y, w_y, (1.0 - eps) * w_y, (eps / n_classes) * valid_f)


def row_losses(st: RowStats, coef: Array, smooth: Array) -> tuple[Array, Array, Array]:
    r"""``(row, L, lse)``: each row's cross-entropy (without z-loss), :math:`L = \log(1 + r)` and the lse.

    :math:`\operatorname{lse} - z_y = L - d_y` and :math:`\sum_c u_c(\operatorname{lse} - z_c) =
    (\sum_c u_c) L - \sum_c u_c d_c` (for a finite maximum; for an all ``-inf`` row :math:`d = -\infty` gives
    ``inf``, as the reference).
    """
    log_norm = st.log_norm
    row = jnp.where(coef == 0, 0.0, coef * (log_norm - st.dy))
    row = row + jnp.where(smooth == 0, 0.0, smooth * (st.mass * log_norm - st.su))
    return row, log_norm, st.m + log_norm


def bad_rows(m: Array) -> Array:
    """Rows whose loss is nan: a nan, or a ``+inf`` logit (``inf / inf`` has no value)."""
    return jnp.logical_or(jnp.isnan(m), m == _INF)


def reduce(red: str, row: Array, z_row: Array, denom: Array, count: Array, acc: DType) -> Array:
    """The loss: per row (``none``), summed, or ``sum(row) / denom + sum(z_row) / count`` (0 over a zero)."""
    if red == "none":
        return row + z_row
    ce, z = jnp.sum(row.astype(acc)), jnp.sum(z_row.astype(acc))
    if red == "sum":
        return (ce + z).astype(row.dtype)
    return (_safe_div(ce, denom) + _safe_div(z, count)).astype(row.dtype)


def _safe_div(num: Array, den: Array) -> Array:
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def row_cotangents(red: str, ct: Array, denom: Array, count: Array, rows: int) -> tuple[Array, Array]:
    """Cotangent of each row's cross-entropy term and of its z-loss term, given the loss's cotangent."""
    if red == "mean":
        g_ce, g_z = _safe_div(ct.astype(denom.dtype), denom), _safe_div(ct.astype(count.dtype), count)
        g_ce, g_z = g_ce.astype(ct.dtype), g_z.astype(ct.dtype)
    else:
        g_ce = g_z = ct
    return jnp.broadcast_to(g_ce, (rows,)), jnp.broadcast_to(g_z, (rows,))


def index_bad(m: Array, hy: Array, valid: Array) -> Array:
    """Bad rows of class-index targets: a nan or ``+inf``, or a label never met (out of ``[0, C)``, which only
    an unchecked traced call can pass), on rows not ignored."""
    return jnp.logical_and(valid, jnp.logical_or(bad_rows(m), hy == 0))


def finish(
    red: str,
    lam: float,
    st: RowStats,
    coef: Array,
    smooth: Array,
    valid: Array,
    bad: Array,
    denom: Array,
    count: Array,
    acc: DType,
) -> tuple[Array, Array, Array]:
    """``(loss, L, ce_mean)``: the reduced loss, the per-row :math:`L` to save, and the mean of the cross-entropy
    terms alone (which the gradient with respect to class weights needs under ``mean``)."""
    row, log_norm, lse = row_losses(st, coef, smooth)
    row = jnp.where(bad, _NAN, row)
    z_row = jnp.where(valid, lam * lse * lse, 0.0) if lam > 0 else jnp.zeros_like(row)
    loss = reduce(red, row, z_row, denom, count, acc)
    return loss, log_norm, reduce("mean", row, jnp.zeros_like(row), denom, count, acc)


def coefficients(
    red: str, lam: float, ct: Array, m: Array, log_norm: Array, denom: Array, count: Array, coef: Array, smooth: Array
) -> tuple[Array, Array, Array, Array]:
    r"""``(g_ce, alpha, beta, gamma)`` per row for :func:`block_grad`: the cotangent of the row's cross-entropy
    term, times its target and smoothing coefficients, and :math:`2\lambda_z \operatorname{lse}` times the
    cotangent of its z-loss (0 for an infinite lse, as the reference)."""
    g_ce, g_z = row_cotangents(red, ct, denom, count, m.shape[0])
    lse = m + log_norm
    gamma = g_z * (2.0 * lam) * jnp.where(jnp.isfinite(lse), lse, 0.0) if lam > 0 else jnp.zeros_like(g_z)
    return g_ce, g_ce * coef, g_ce * smooth, gamma


def weight_scatter(
    red: str, eps: float, g_ce: Array, y: Array, valid: Array, nll: Array, ce_mean: Array, n: int
) -> Array:
    r"""The part of :math:`\partial \text{loss} / \partial w_c` that only the rows labelled :math:`c` carry:
    :math:`(1-\varepsilon)\,\bar g_n \mathrm{nll}_n`, and under ``mean`` minus :math:`\bar g_n` times the
    mean loss (the denominator :math:`\sum_n w_{y_n}` grows with :math:`w_c`)."""
    keep = 1.0 - eps
    per_row = jnp.where(g_ce * keep == 0, 0.0, g_ce * keep * nll)
    if red == "mean":
        per_row = per_row - g_ce * ce_mean
    return jnp.zeros((n,), nll.dtype).at[y].add(jnp.where(valid, per_row, 0.0))


def block_grad(
    d: Array, log_norm: Array, alpha: Array, beta: Array, gz: Array, mass: Array, u: Array | None, onehot: Array | None
) -> Array:
    r"""Gradient of :math:`\sum_n \bigl(\alpha_n \mathrm{nll}_n + \beta_n \sum_c u_c(\operatorname{lse}_n - z_{nc})
    + \gamma_n \operatorname{lse}_n\bigr)` with respect to one block of (capped) logits.

    :math:`p = e^{d - L}` is recomputed from the saved :math:`L` (``d`` shifted by the row's final shift):
    :math:`g = p\,(\alpha + \beta \sum u + \gamma) - \alpha\,[c = y] - \beta u`.
    """
    p = jnp.exp(d - log_norm[:, None])
    g = p * (alpha + beta * mass + gz)[:, None]
    if u is not None:
        g = g - beta[:, None] * u
    if onehot is not None:
        g = g - jnp.where(onehot, alpha[:, None], 0.0)
    return g


def weighted_gaps(coef: Array, log_norm: Array, d: Array) -> Array:
    r""":math:`c_n (L_n - d_{nc})`, with 0 wherever :math:`c_n = 0` (an ignored row's ``nan`` or ``inf`` stays
    out). Summed over rows it is the derivative of a smoothing or probability term with respect to class
    weights, and per row the derivative with respect to target probabilities."""
    return jnp.where(coef == 0, 0.0, coef * (log_norm[:, None] - d))

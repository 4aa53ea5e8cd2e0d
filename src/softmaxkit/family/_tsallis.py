r"""The machinery shared by the α-entmax family (softmax, sparsemax, 1.5-entmax, α-entmax by bisection).

One row at a time, class axis last: the shift by the row maximum, the support Jacobian
:math:`J = \operatorname{diag}(s) - s s^\top/\sum_j s_j` with :math:`s = p^{2-\alpha}` on the support, the
Fenchel–Young loss :math:`H_\alpha(p^\star) + \langle p^\star - e_y, z\rangle` with gradient
:math:`p^\star - e_y`, and the special-value tables of the docstrings. The mathematics, its references and the
special-value policy are written out in :mod:`softmaxkit.family.sparsemax`; a member of the family only brings
its solver (logits to probabilities).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

from .. import _backend, _doc, _engine
from .._array import Array, Namespace, cast, from_last
from .._loss import Targets, finish, prepare

__all__ = [
    "JACOBIAN_SPECIAL_VALUES",
    "LOSS_SPECIAL_VALUES",
    "MAPPING_SPECIAL_VALUES",
    "PRODUCT_SPECIAL_VALUES",
    "Solver",
    "Tsallis",
    "check_n_iter",
    "engine",
    "fenchel_young",
    "fill_docs",
    "jacobian",
    "mapping",
    "probabilities",
    "product",
    "shifted",
    "sorted_rows",
]

_NAN = float("nan")
_INF = float("inf")

Solver = Callable[[Namespace, Array], Array]
"""Maps max-shifted logits (row maximum 0, masked entries ``-inf``, class axis last) to probabilities."""


@dataclass(frozen=True)
class Tsallis:
    """One member of the α-entmax family: its α (for the derivative and the entropy) and how to find p."""

    alpha: float
    solve: Solver
    op: str | None = None
    """The dispatcher's name for this mapping when the numba kernels compute it (``_backend.FAMILY``)."""
    n_iter: int = 0
    """The bisection steps (``entmax_bisect`` only)."""

    def weights(self, xp: Namespace, p: Array) -> Array:
        """:math:`s = p^{2-\\alpha}` on the support, 0 off it.

        The power is taken of 1 off the support: its derivative at 0 is infinite for α > 1, and autodiff
        through these weights (a Hessian of the mapping: ``jax.hessian``, ``torch.func.hessian``) would read
        ``0 * inf = nan`` there.
        """
        if self.alpha == 2.0:
            return cast(xp, p > 0, p.dtype)
        if self.alpha == 1.0:
            return p
        live = p > 0
        safe = xp.where(live, p, 1.0)
        s = xp.sqrt(safe) if self.alpha == 1.5 else safe ** (2.0 - self.alpha)
        return xp.where(live, s, 0.0)

    def entropy_terms(self, xp: Namespace, p: Array) -> Array:
        """The terms :math:`p_i(1 - p_i^{\\alpha-1})/(\\alpha(\\alpha-1))` of :math:`H_\\alpha`, each >= 0."""
        a = self.alpha
        if a == 2.0:
            return p * (1.0 - p) / 2.0
        if a == 1.5:
            return p * (1.0 - xp.sqrt(p)) / 0.75
        return p * (1.0 - p ** (a - 1.0)) / (a * (a - 1.0))


def shifted(xp: Namespace, z: Array) -> tuple[Array, Array]:
    """Rows minus their maximum, and the rows that hold ``nan`` or ``+inf``.

    Masked entries stay ``-inf``; a fully masked row and a bad row become all ``-inf`` (the solvers give zeros,
    which the callers turn into ``nan`` for the bad rows).
    """
    m = xp.max(z, axis=-1, keepdims=True)
    ok = xp.isfinite(m)
    bad = xp.logical_not(xp.logical_or(ok, m == -_INF))
    return xp.where(ok, z - xp.where(ok, m, 0.0), -_INF), bad


def sorted_rows(xp: Namespace, w: Array) -> tuple[Array, Array, Array]:
    """Each row sorted in decreasing order with masked entries (last) set to 0, their mask, and ``k = 1..K``."""
    u = xp.sort(w, axis=-1, descending=True)
    live = u > -_INF
    k = xp.arange(1, w.shape[-1] + 1, dtype=w.dtype, device=array_api_compat.device(w))
    return xp.where(live, u, 0.0), live, k


def engine(z: Array, fam: Tsallis) -> str:
    """The engine of this call (:func:`softmaxkit._backend.choose`): ``numba`` for NumPy float32/float64 logits
    (prepared: class axis last, masked entries ``-inf``) at or above its size threshold, or where
    ``softmaxkit.backend("numba")`` names it; ``reference`` (this module's code) for everything else."""
    if fam.op is None or type(z) is not np.ndarray or z.shape[-1] == 0:
        return "reference"
    return _backend.choose(fam.op, z)


def probabilities(xp: Namespace, z: Array, fam: Tsallis) -> tuple[Array, Array]:
    """p (zeros on bad rows) and the bad rows, for logits with the class axis last and at least one class."""
    if engine(z, fam) == "numba":  # the kernels give nan on the bad rows, and only there
        p = _backend.run_family("numba", fam.op or "", z, fam.alpha, fam.n_iter)
        return p, xp.isnan(p[..., :1])
    d, bad = shifted(xp, z)
    p = _engine.stats(xp, d).p if fam.alpha == 1.0 else fam.solve(xp, d)
    return p, bad


def mapping(x: Any, axis: Any, where: Any, fam: Tsallis) -> Array:
    rows = _engine.rows(x, axis, where)
    xp, z = rows.xp, rows.z
    if z.shape[-1] == 0:
        return _engine.finish(xp, z, rows.axis, rows.out_dtype)
    p, bad = probabilities(xp, z, fam)
    return _engine.finish(xp, xp.where(bad, _NAN, p), rows.axis, rows.out_dtype)


def product(x: Any, v: Any, name: str, axis: Any, where: Any, fam: Tsallis) -> Array:
    """``J v`` (= ``J^T v``): :math:`s \\odot v - s \\langle s, v\\rangle / \\sum s`, without forming J."""
    rows = _engine.rows(x, axis, where, v)
    xp, z = rows.xp, rows.z
    vz = _engine.tangent(rows, v, name, x)
    if z.shape[-1] == 0:
        return _engine.finish(xp, z, rows.axis, rows.out_dtype)
    if engine(z, fam) == "numba":  # the kernels' VJP from their own output
        p = _backend.run_family("numba", fam.op or "", z, fam.alpha, fam.n_iter)
        return _engine.finish(xp, _backend.run_family_vjp("numba", fam.op or "", p, vz, fam.alpha), rows.axis,
                              rows.out_dtype)  # fmt: skip
    p, bad = probabilities(xp, z, fam)
    s = fam.weights(xp, p)
    live = s > 0
    sv = xp.where(live, s * vz, 0.0)  # a tangent at a masked entry is never read
    total = xp.sum(s, axis=-1, keepdims=True)
    mean = xp.sum(sv, axis=-1, keepdims=True) / xp.where(total > 0, total, 1.0)
    out = xp.where(live, sv - s * mean, 0.0)
    return _engine.finish(xp, _engine.nan_rows(xp, bad, out), rows.axis, rows.out_dtype)


def jacobian(x: Any, axis: Any, where: Any, fam: Tsallis) -> Array:
    """:math:`\\operatorname{diag}(s) - s s^\\top / \\sum s` per row, shape ``batch + (K, K)``."""
    xp, z, _, out_dtype = _engine.rows(x, axis, where)
    n = z.shape[-1]
    dev = array_api_compat.device(z)
    if n == 0:
        return cast(xp, xp.zeros((*z.shape, 0), dtype=z.dtype, device=dev), out_dtype)
    p, bad = probabilities(xp, z, fam)
    s = fam.weights(xp, p)
    total = xp.sum(s, axis=-1, keepdims=True)
    col = xp.expand_dims(s, axis=-1)
    row = xp.expand_dims(s / xp.where(total > 0, total, 1.0), axis=-2)
    jac = col * xp.eye(n, dtype=z.dtype, device=dev) - col * row
    return cast(xp, xp.where(xp.expand_dims(bad, axis=-1), _NAN, jac), out_dtype)


def fenchel_young(
    logits: Any,
    target: Any,
    *,
    axis: Any,
    weight: Any,
    ignore_index: Any,
    reduction: Any,
    fam: Tsallis,
    want_grad: bool,
) -> tuple[Array, Array | None]:
    """:math:`H_\\alpha(p^\\star) + \\langle p^\\star - e_y, z\\rangle` per row and its gradient
    :math:`p^\\star - e_y`, reduced by :func:`softmaxkit._loss.finish`."""
    t = prepare(logits, target, axis=axis, weight=weight, ignore_index=ignore_index, reduction=reduction)
    xp, z = t.xp, t.z
    if z.shape[-1] == 0:  # no classes: every row is ignored (prepare checked the labels)
        row = xp.zeros(tuple(z.shape[:-1]), dtype=z.dtype, device=array_api_compat.device(z))
        return finish(t, row, xp.zeros_like(z) if want_grad else None)
    if fam.alpha != 1.0 and engine(z, fam) == "numba" and not bool(xp.any(t.unknown)):
        return _kernel_loss(t, fam, want_grad)
    d, bad = shifted(xp, z)
    d_y = xp.sum(xp.where(t.onehot, d, 0.0), axis=-1)  # -inf when the target is masked: the loss is inf
    if fam.alpha == 1.0:  # cross-entropy, as log1p(s) - d_y (see softmaxkit.softmax)
        st = _engine.stats(xp, d)
        p = st.p
        row = xp.squeeze(st.log_norm, axis=-1) - d_y
    else:
        p = fam.solve(xp, d)
        # p * d only where p > 0: off the support d may be -inf (a masked entry, or a shift past the float's
        # range), and 0 * -inf would be a nan, discarded but formed (jax.debug_nans)
        terms = fam.entropy_terms(xp, p) + p * xp.where(p > 0, d, 0.0)
        row = cast(xp, xp.sum(cast(xp, terms, t.acc), axis=-1), z.dtype) - d_y
    row = xp.where(row < 0, 0.0, row)  # >= 0 in exact arithmetic; a few ulp below 0 can only be rounding
    row = xp.where(xp.squeeze(bad, axis=-1), _NAN, row)
    if not want_grad:
        return finish(t, row, None)
    grad = xp.where(bad, _NAN, p - cast(xp, t.onehot, z.dtype))
    return finish(t, row, grad)


def _kernel_loss(t: Targets, fam: Tsallis, want_grad: bool) -> tuple[Array, Array | None]:
    """:func:`fenchel_young` on the numba kernels: each row's loss and its gradient, scaled as
    :func:`softmaxkit._loss.finish` scales it, in one pass; ``finish`` weights and reduces the rows."""
    xp, z = t.xp, t.z
    scale = t.w_y
    if t.reduction == "mean":  # (finish's factor: the weights over their sum, divided, not a reciprocal)
        denom = xp.sum(cast(xp, t.w_y, t.acc))
        scale = t.w_y / cast(xp, xp.where(denom > 0, denom, 1.0), z.dtype)
    rows, grad = _backend.run_family_loss("numba", fam.op or "", z, t.y, t.w_y, scale, fam.alpha, fam.n_iter,
                                          want_grad)  # fmt: skip
    loss, _ = finish(t, cast(xp, rows, z.dtype), None)
    return loss, None if grad is None else cast(xp, from_last(xp, grad, t.axis), t.out_dtype)


def check_n_iter(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"n_iter must be an int; got {value!r}")
    if value < 1:
        raise ValueError(f"n_iter must be >= 1; got {value!r}")
    return value


# ------------------------------------------------------------------------------------------- documentation
MAPPING_SPECIAL_VALUES = """
    ==============================  ====================================
    row                             result
    ==============================  ====================================
    ``-inf`` or masked entry        exactly 0 at that entry
    all ``-inf`` / all masked       all zeros (no distribution)
    contains ``nan``                ``nan`` for that row only
    contains ``+inf``               ``nan`` for that row (inf - inf)
    empty axis                      empty result
    float16 / bfloat16              computed in float32, returned as is
    ==============================  ====================================
"""

PRODUCT_SPECIAL_VALUES = """
    ==============================  ====================================
    row                             result
    ==============================  ====================================
    masked / ``-inf`` / p = 0       exactly 0 at that entry
    all masked                      zeros
    contains ``nan`` or ``+inf``    ``nan`` for that row only
    empty axis                      empty result
    ==============================  ====================================
"""

JACOBIAN_SPECIAL_VALUES = """
    ==============================  ====================================
    row                             result
    ==============================  ====================================
    masked / ``-inf`` / p = 0       zero row and column
    all masked                      zero matrix
    contains ``nan`` or ``+inf``    ``nan`` matrix for that row
    empty axis                      shape ``batch + (0, 0)``
    ==============================  ====================================
"""

LOSS_SPECIAL_VALUES = """
    ======================================  ==============================================
    case                                    loss (gradient)
    ======================================  ==============================================
    target's logit is ``-inf`` / all -inf   ``inf`` (gradient still :math:`p^\\star - e_y`)
    other ``-inf`` logits                   masked: probability 0, loss finite
    confident correct prediction            exactly 0 (zeros) once :math:`p^\\star = e_y`
    all ignored / zero weight, ``mean``     0 (zeros)
    row with ``nan`` / ``+inf`` (kept)      ``nan`` for that row (its gradient row nan)
    ignored row holding ``nan``             0 (zeros): ignored rows are never read
    float16 / bfloat16 logits               computed in float32, returned as is
    ======================================  ==============================================
"""


def fill_docs(*pairs: tuple[Callable[..., Any], str]) -> None:
    """Put each shared special-value table where its function's docstring says ``{special_values}``."""
    for func, table in pairs:
        _doc.special_values(table)(func)

r"""The family of ``softmaxkit.family`` for JAX: every mapping and loss as a ``jax.custom_jvp``.

Each function here is its ``softmaxkit.family`` namesake (same arguments, values and special values), with
its derivative taken from the analytic formulas that module already has (``*_jvp`` and
``*_loss_value_and_grad``) instead of from JAX's trace of the forward code. That trace is wrong where the forward
code is an algorithm rather than a formula: the bisection of :func:`entmax_bisect` converges to :math:`\tau` but its
autodiff does not converge to :math:`\partial\tau/\partial z` (0.27 off for ``x = [0.5, 1.0, -0.2, 0.9]``,
:math:`\alpha = 1.5`), and :func:`entmax_bisect_loss`'s autodiff formed :math:`0 \cdot \infty` (nan) at the exact
zeros of :math:`p`. It is also wrong where a ``where`` chooses between two formulas at a kink, as
``log_sigmoid`` at 0 (1 instead of 1/2).

Why ``custom_jvp``
------------------
Every derivative of the family is an :math:`O(K)` product per row: :math:`J v = s \odot v - s \langle s,
v\rangle/\sum s` for the α-entmax members (:math:`J` symmetric), :math:`q \odot v - p \langle q, v\rangle` for the
ratio mappings, and :math:`\langle \nabla \ell, v\rangle` for a loss whose gradient :math:`\nabla\ell` comes in
closed form. A forward-mode rule that cheap is all JAX needs: ``jax.jvp`` and ``jax.jacfwd`` use it as it is, and
``jax.grad``, ``jax.vjp`` and ``jax.jacrev`` transpose it (it is linear in the tangent), so one rule serves
every transform, under ``jax.jit`` and ``jax.vmap`` too.

Learnable :math:`\alpha`
------------------------
:func:`entmax_bisect` and :func:`entmax_bisect_loss` also take a JAX array ``alpha`` (0-d, or broadcastable to
the rows), and then differentiate with respect to it, as the ``entmax`` package's ``EntmaxBisect`` allows
(Peters, Niculae & Martins 2019 learn α per attention head). With :math:`p_i = [(\alpha - 1) z_i -
\tau]_+^{1/(\alpha - 1)}`, :math:`s = p^{2-\alpha}` on the support and :math:`\hat s = s / \sum_j s_j`,
differentiating :math:`p_i^{\alpha-1} = (\alpha-1) z_i - \tau` and using :math:`\sum_i \partial p_i/\partial\alpha
= 0` gives

.. math:: \frac{\partial p}{\partial \alpha} = \frac{p - \hat s}{(\alpha - 1)^2}
          - \frac{p \log p - \hat s \sum_j p_j \log p_j}{\alpha - 1},

and for the Fenchel–Young loss, whose :math:`p^\star` is a maximiser (Danskin's theorem), only the entropy's
own dependence on α counts:

.. math:: \frac{\partial \ell}{\partial \alpha} = \frac{\partial H_\alpha(p^\star)}{\partial \alpha}
          = -\frac{\sum_i p_i^\alpha \log p_i}{\alpha(\alpha - 1)}
          - \frac{(2\alpha - 1)\bigl(1 - \sum_i p_i^\alpha\bigr)}{\alpha^2(\alpha - 1)^2} .

An array ``alpha`` must be :math:`> 1` (checked when it is concrete; under ``jax.jit`` it cannot be, and α ≤ 1
gives nan); α = 1 is softmax, use :func:`softmaxkit.softmax` for it.

Precision
---------
float16 / bfloat16 inputs are computed in float32 and returned, with their derivatives, in their own dtype, as
everywhere in softmaxkit; integers promote to JAX's default floating dtype.

Examples
--------
>>> import jax, jax.numpy as jnp
>>> from softmaxkit.jax import entmax_bisect
>>> x = jnp.array([0.5, 1.0, -0.2, 0.9])
>>> g = jax.grad(lambda z: entmax_bisect(z, alpha=1.5)[1])(x)
>>> print([round(float(v), 4) for v in g])
[-0.157, 0.4145, -0.0249, -0.2325]
"""

from __future__ import annotations

import functools
import importlib
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import jax
import jax.numpy as jnp

from .. import _array, _backend, _loss, _validate
from ..family import _tsallis as tsallis
from ..family.entmax_bisect import bisect_solve

__all__ = [
    "entmax15",
    "entmax15_loss",
    "entmax_bisect",
    "entmax_bisect_loss",
    "log_sigmoid",
    "log_softplus_normalize",
    "log_spherical_softmax",
    "log_taylor_softmax",
    "multiclass_hinge_loss",
    "normalize",
    "sigmoid",
    "sigmoid_cross_entropy",
    "softplus_normalize",
    "softplus_normalize_cross_entropy",
    "sparsemax",
    "sparsemax_loss",
    "spherical_cross_entropy",
    "spherical_softmax",
    "taylor_cross_entropy",
    "taylor_softmax",
]

Array = _array.Array
Options = tuple[tuple[str, Any], ...]
"""A call's keyword options as a hashable tuple of pairs (a ``nondiff_argnums`` argument)."""


def _generic(module: str, name: str) -> Callable[..., Any]:
    """The generic array-API function ``softmaxkit.family.<module>.<name>`` (the forward code and the analytic
    derivatives here), run under :func:`softmaxkit._backend.generic`: not routed back to this module."""
    func = getattr(importlib.import_module(f"softmaxkit.family.{module}"), name)

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        with _backend.generic():
            return func(*args, **kwargs)

    return call


F = TypeVar("F", bound=Callable[..., Any])

_HEAD = "Special values\n    --------------\n"


def _document(func: F) -> F:
    """Complete a function's docstring from its generic namesake's: where its arguments are described, and its
    special-value table (the values are the generic code's; the derivatives follow them)."""
    generic = getattr(importlib.import_module("softmaxkit"), func.__name__)
    doc = generic.__doc__ or ""
    start = doc.find(_HEAD)
    table = "" if start < 0 else doc[start + len(_HEAD) :].split("\n\n", 1)[0]
    func.__doc__ = (func.__doc__ or "").rstrip() + (
        f"\n\n    Arguments, result and errors are those of :func:`softmaxkit.{func.__name__}`, whose code computes"
        "\n    the values; the derivatives are 0 at masked entries and ``nan`` on the rows (entries, for the"
        "\n    elementwise sigmoid) whose value is ``nan``.\n"
    )
    if table:
        func.__doc__ += "\n    " + _HEAD + table + "\n"
    return func


# ---------------------------------------------------------------------------------------------- mappings
class _Map(NamedTuple):
    """A mapping and its Jacobian-vector product, both generic."""

    forward: Callable[..., Any]
    jvp: Callable[..., Any]


def _map(module: str, name: str, jvp: str | None = None) -> _Map:
    return _Map(_generic(module, name), _generic(module, jvp or f"{name}_jvp"))


_MAPS: dict[str, _Map] = {
    "sparsemax": _map("sparsemax", "sparsemax"),
    "entmax15": _map("entmax", "entmax15"),
    "entmax_bisect": _map("entmax_bisect", "entmax_bisect"),
    "taylor_softmax": _map("taylor", "taylor_softmax"),
    "log_taylor_softmax": _map("taylor", "log_taylor_softmax"),
    "spherical_softmax": _map("spherical", "spherical_softmax"),
    "log_spherical_softmax": _map("spherical", "log_spherical_softmax"),
    "sigmoid": _map("sigmoid", "sigmoid"),
    "log_sigmoid": _map("sigmoid", "log_sigmoid"),
    "softplus_normalize": _map("softplus_normalize", "softplus_normalize"),
    "log_softplus_normalize": _map("softplus_normalize", "log_softplus_normalize"),
    "normalize": _map("normalize", "normalize"),
}


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _mapped(name: str, options: Options, x: Array, where: Array | None) -> Array:
    return _MAPS[name].forward(x, where=where, **dict(options))


@_mapped.defjvp
def _mapped_jvp(name: str, options: Options, primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> Any:
    x, where = primals
    m, kw = _MAPS[name], dict(options, where=where)
    y = m.forward(x, **kw)
    axis = None if name in _ELEMENTWISE else _validate.axis(dict(options)["axis"], y.ndim)
    poison, factor = _nan_parts(y, axis)
    return y, m.jvp(x, tangents[0] * factor, **kw) + poison


_ELEMENTWISE = frozenset({"sigmoid", "log_sigmoid"})


def _nan_parts(y: Array, axis: int | None) -> tuple[Array, Array]:
    """``where(bad, nan, 0)`` and ``where(bad, nan, 1)`` for the rows (``axis``; entries for None) where ``y`` is
    nan: added to the tangent (forward mode) and multiplied into the input's tangent (its transpose, reverse
    mode), so that a nan row's derivatives are nan both ways, while no nan constant is kept for a finite input
    (``jax.debug_nans`` checks what ``jax.grad`` keeps)."""
    bad = jnp.isnan(y) if axis is None else jnp.any(jnp.isnan(y), axis=axis, keepdims=True)
    return jnp.where(bad, jnp.nan, 0.0).astype(y.dtype), jnp.where(bad, jnp.nan, 1.0).astype(y.dtype)


def _floating(x: Any, name: str = "x") -> Array:
    """``x`` as a JAX array of a floating dtype (integers promote as in softmaxkit: they have no tangent)."""
    a = jnp.asarray(x)
    if jnp.issubdtype(a.dtype, jnp.integer):
        a = a.astype(_array.compute_dtype(jnp, a.dtype, name))
    return a


def _mapping(name: str, x: Any, where: Any, **options: Any) -> Array:
    return _mapped(name, tuple(options.items()), _floating(x), None if where is None else jnp.asarray(where))


@_document
def sparsemax(x: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    """:func:`softmaxkit.sparsemax` with the analytic derivative (module notes)."""
    return _mapping("sparsemax", x, where, axis=axis)


@_document
def entmax15(x: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    """:func:`softmaxkit.entmax15` with the analytic derivative (module notes)."""
    return _mapping("entmax15", x, where, axis=axis)


@_document
def taylor_softmax(x: Array, /, *, axis: int = -1, order: int = 2, where: Array | None = None) -> Array:
    """:func:`softmaxkit.taylor_softmax` with the analytic derivative (module notes)."""
    return _mapping("taylor_softmax", x, where, axis=axis, order=order)


@_document
def log_taylor_softmax(x: Array, /, *, axis: int = -1, order: int = 2, where: Array | None = None) -> Array:
    """:func:`softmaxkit.log_taylor_softmax` with the analytic derivative (module notes)."""
    return _mapping("log_taylor_softmax", x, where, axis=axis, order=order)


@_document
def spherical_softmax(x: Array, /, *, axis: int = -1, eps: float = 1e-4, where: Array | None = None) -> Array:
    """:func:`softmaxkit.spherical_softmax` with the analytic derivative (module notes)."""
    return _mapping("spherical_softmax", x, where, axis=axis, eps=eps)


@_document
def log_spherical_softmax(x: Array, /, *, axis: int = -1, eps: float = 1e-4, where: Array | None = None) -> Array:
    """:func:`softmaxkit.log_spherical_softmax` with the analytic derivative (module notes)."""
    return _mapping("log_spherical_softmax", x, where, axis=axis, eps=eps)


@_document
def sigmoid(x: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    """:func:`softmaxkit.sigmoid` with the analytic derivative (module notes)."""
    return _mapping("sigmoid", x, where, axis=axis)


@_document
def log_sigmoid(x: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    """:func:`softmaxkit.log_sigmoid` with the analytic derivative :math:`\\sigma(-x)` (module notes)."""
    return _mapping("log_sigmoid", x, where, axis=axis)


@_document
def softplus_normalize(x: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    """:func:`softmaxkit.softplus_normalize` with the analytic derivative (module notes)."""
    return _mapping("softplus_normalize", x, where, axis=axis)


@_document
def log_softplus_normalize(x: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    """:func:`softmaxkit.log_softplus_normalize` with the analytic derivative (module notes)."""
    return _mapping("log_softplus_normalize", x, where, axis=axis)


@_document
def normalize(x: Array, /, *, axis: int = -1, where: Array | None = None) -> Array:
    """:func:`softmaxkit.normalize` with the analytic derivative (module notes). Its value checks
    (non-negative scores, no all-zero row) run on concrete arrays only."""
    return _mapping("normalize", x, where, axis=axis)


# ------------------------------------------------------------------------------------------------ losses
class _Loss(NamedTuple):
    """A loss and its value-and-gradient, both generic."""

    value: Callable[..., Any]
    value_and_grad: Callable[..., Any]


def _loss_of(module: str, name: str) -> _Loss:
    return _Loss(_generic(module, name), _generic(module, f"{name}_value_and_grad"))


_LOSSES: dict[str, _Loss] = {
    "sparsemax_loss": _loss_of("sparsemax", "sparsemax_loss"),
    "entmax15_loss": _loss_of("entmax", "entmax15_loss"),
    "entmax_bisect_loss": _loss_of("entmax_bisect", "entmax_bisect_loss"),
    "taylor_cross_entropy": _loss_of("taylor", "taylor_cross_entropy"),
    "spherical_cross_entropy": _loss_of("spherical", "spherical_cross_entropy"),
    "sigmoid_cross_entropy": _loss_of("sigmoid", "sigmoid_cross_entropy"),
    "softplus_normalize_cross_entropy": _loss_of("softplus_normalize", "softplus_normalize_cross_entropy"),
    "multiclass_hinge_loss": _loss_of("hinge", "multiclass_hinge_loss"),
}


def _is_zero(tangent: Any) -> bool:
    return tangent is None or isinstance(tangent, jax.custom_derivatives.SymbolicZero)


def _contract(grad: Array, dz: Array, axis: int, reduction: str, out: Any) -> Array:
    """:math:`\\langle \\nabla\\ell, \\dot z\\rangle`: per row for ``reduction="none"``, else over everything."""
    acc = _array.accumulator(jnp, grad.dtype, grad)
    prod = grad.astype(acc) * dz.astype(acc)
    return (jnp.sum(prod, axis=axis) if reduction == "none" else jnp.sum(prod)).astype(out)


def _weight_tangent(
    unweighted: Callable[..., Array], options: dict[str, Any], z: Array, t: Array, w: Array, dw: Array, value: Array
) -> Array:
    r"""The loss's derivative along a change ``dw`` of the class weights.

    A kept row counts :math:`w_{y_n} \ell_n`; ``mean`` divides by :math:`D = \sum_n w_{y_n}`, so
    :math:`\dot L = (\sum_n \dot w_{y_n} \ell_n - L \sum_n \dot w_{y_n}) / D` (0 where :math:`D = 0`, as the loss).
    """
    red = options["reduction"]
    rows = unweighted(z, t, None, reduction="none")  # l_n, 0 when ignored
    acc = _array.accumulator(jnp, rows.dtype, rows)
    kept = t != options["ignore_index"]
    y = jnp.where(kept, t, 0)
    dw_y = jnp.where(kept, jnp.take(dw.astype(acc), y), 0.0)
    terms = dw_y * rows.astype(acc)
    if red == "none":
        return terms.astype(value.dtype)
    if red == "sum":
        return jnp.sum(terms).astype(value.dtype)
    denom = jnp.sum(jnp.where(kept, jnp.take(w.astype(acc), y), 0.0))
    live = denom > 0
    moved = (jnp.sum(terms) - value.astype(acc) * jnp.sum(dw_y)) / jnp.where(live, denom, 1.0)
    return jnp.where(live, moved, 0.0).astype(value.dtype)


def _unweighted(value: Callable[..., Array], kw: dict[str, Any], z: Array, t: Array, w: None, **changed: Any) -> Array:
    return value(z, t, weight=w, **dict(kw, **changed))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _lossed(name: str, options: Options, z: Array, t: Array, w: Array | None) -> Array:
    return _LOSSES[name].value(z, t, weight=w, **dict(options))


def _lossed_jvp(name: str, options: Options, primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> Any:
    z, t, w = primals
    dz, _, dw = tangents
    kw = dict(options)
    value, grad = _LOSSES[name].value_and_grad(z, t, weight=w, **kw)
    if name in _FENCHEL_YOUNG:  # the same gradient, differentiable again by this module's mapping
        opts = {k: kw[k] for k in ("alpha", "n_iter") if k in kw}
        grad = _fenchel_young_grad(kw, z, t, w, lambda r: _mapping(_FENCHEL_YOUNG[name], r, None, axis=-1, **opts))
    red = kw["reduction"]
    axis = _validate.axis(kw["axis"], z.ndim)
    tan = jnp.zeros_like(value) if _is_zero(dz) else _contract(grad, dz, axis, red, value.dtype)
    if w is not None and not _is_zero(dw):
        unweighted = functools.partial(_unweighted, _LOSSES[name].value, kw)
        tan = tan + _weight_tangent(unweighted, kw, z, t, w, dw, value)
    return value, tan


_lossed.defjvp(_lossed_jvp, symbolic_zeros=True)

_FENCHEL_YOUNG = {"sparsemax_loss": "sparsemax", "entmax15_loss": "entmax15", "entmax_bisect_loss": "entmax_bisect"}
"""The Fenchel–Young losses and their mappings: the gradient is :math:`p - e_y`, weighted and reduced."""


def _fenchel_young_grad(
    kw: dict[str, Any], z: Array, t: Array, w: Array | None, mapping: Callable[[Array], Array]
) -> Array:
    r""":math:`\nabla\ell = p - e_y` (weighted and reduced as the loss) with :math:`p` from ``mapping`` (rows,
    class axis last, compute dtype): this module's, so that ``jax.hessian`` differentiates the gradient by the
    mapping's analytic derivative, not through the generic solver (a bisection)."""
    prep = _loss.prepare(z, t, axis=kw["axis"], weight=w, ignore_index=kw["ignore_index"], reduction=kw["reduction"])
    p = mapping(prep.z)
    _, grad = _loss.finish(prep, jnp.zeros(prep.z.shape[:-1], prep.z.dtype), p - prep.onehot.astype(p.dtype))
    assert grad is not None
    return grad


def _loss_call(name: str, logits: Any, target: Any, weight: Any, **options: Any) -> Array:
    z = _floating(logits, "logits")
    w = None if weight is None else _floating(weight, "weight")
    return _lossed(name, tuple(options.items()), z, jnp.asarray(target), w)


@_document
def sparsemax_loss(
    logits: Array,
    target: Array,
    /,
    *,
    axis: int = -1,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Array:
    """:func:`softmaxkit.sparsemax_loss` with the closed-form gradient (module notes)."""
    return _loss_call(
        "sparsemax_loss", logits, target, weight, axis=axis, ignore_index=ignore_index, reduction=reduction
    )


@_document
def entmax15_loss(
    logits: Array,
    target: Array,
    /,
    *,
    axis: int = -1,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Array:
    """:func:`softmaxkit.entmax15_loss` with the closed-form gradient (module notes)."""
    return _loss_call(
        "entmax15_loss", logits, target, weight, axis=axis, ignore_index=ignore_index, reduction=reduction
    )


@_document
def taylor_cross_entropy(
    logits: Array,
    target: Array,
    /,
    *,
    axis: int = -1,
    order: int = 2,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Array:
    """:func:`softmaxkit.taylor_cross_entropy` with the closed-form gradient (module notes)."""
    return _loss_call(
        "taylor_cross_entropy",
        logits,
        target,
        weight,
        axis=axis,
        order=order,
        ignore_index=ignore_index,
        reduction=reduction,
    )


@_document
def spherical_cross_entropy(
    logits: Array,
    target: Array,
    /,
    *,
    axis: int = -1,
    eps: float = 1e-4,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Array:
    """:func:`softmaxkit.spherical_cross_entropy` with the closed-form gradient (module notes)."""
    return _loss_call(
        "spherical_cross_entropy",
        logits,
        target,
        weight,
        axis=axis,
        eps=eps,
        ignore_index=ignore_index,
        reduction=reduction,
    )


@_document
def sigmoid_cross_entropy(
    logits: Array,
    target: Array,
    /,
    *,
    axis: int = -1,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Array:
    """:func:`softmaxkit.sigmoid_cross_entropy` with the closed-form gradient (module notes)."""
    return _loss_call(
        "sigmoid_cross_entropy", logits, target, weight, axis=axis, ignore_index=ignore_index, reduction=reduction
    )


@_document
def softplus_normalize_cross_entropy(
    logits: Array,
    target: Array,
    /,
    *,
    axis: int = -1,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Array:
    """:func:`softmaxkit.softplus_normalize_cross_entropy` with the closed-form gradient (module notes)."""
    return _loss_call(
        "softplus_normalize_cross_entropy",
        logits,
        target,
        weight,
        axis=axis,
        ignore_index=ignore_index,
        reduction=reduction,
    )


@_document
def multiclass_hinge_loss(
    logits: Array,
    target: Array,
    /,
    *,
    axis: int = -1,
    kind: str = "crammer_singer",
    margin: float = 1.0,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Array:
    """:func:`softmaxkit.multiclass_hinge_loss` with its closed-form (sub)gradient (module notes)."""
    return _loss_call(
        "multiclass_hinge_loss",
        logits,
        target,
        weight,
        axis=axis,
        kind=kind,
        margin=margin,
        ignore_index=ignore_index,
        reduction=reduction,
    )


# ------------------------------------------------------------------------------------- α-entmax, any α
def _concrete_alpha(alpha: Any) -> bool:
    """A number (the family's float path, checked there); anything else is taken as an array of α."""
    return isinstance(alpha, numbers.Real) or not hasattr(alpha, "shape")


def _array_alpha(alpha: Array, dtype: Any, rows: tuple[int, ...] | None) -> Array:
    """A JAX ``alpha`` in ``dtype``, checked: 0-d, or (``rows``: the shape it must broadcast to) per row."""
    if not jnp.issubdtype(alpha.dtype, jnp.floating):
        raise TypeError(f"alpha must be a float or a floating JAX array; got dtype {alpha.dtype}")
    if rows is None and alpha.ndim:
        raise ValueError(f"alpha must be a float or a 0-d JAX array here; got shape {alpha.shape}")
    if rows is not None:
        try:
            fits = jnp.broadcast_shapes(alpha.shape, rows) == rows
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(
                f"alpha must broadcast to the rows' shape {rows} (x's shape with 1 along axis); got {alpha.shape}"
            )
    if not _array.is_traced(alpha) and not bool(jnp.all(jnp.isfinite(alpha) & (alpha > 1.0))):
        raise ValueError(
            f"an array alpha must be finite and > 1 (alpha = 1 is softmax: use softmaxkit.softmax); got {alpha}"
        )
    return alpha.astype(dtype)


def _alpha_family(alpha: Array, n_iter: int) -> tsallis.Tsallis:
    """The α-entmax member of an array ``alpha`` laid out for the rows (class axis last, length 1).

    Its ``alpha`` field is nan, never read on these paths (it only picks the special cases 1, 1.5 and 2);
    the entropy terms use the array.
    """
    return _ArrayTsallis(float("nan"), functools.partial(bisect_solve, alpha=alpha, n_iter=n_iter), values=alpha)


@dataclass(frozen=True)
class _ArrayTsallis(tsallis.Tsallis):
    """A member of the family whose α is an array (:attr:`values`)."""

    values: Any = None

    def entropy_terms(self, xp: Any, p: Array) -> Array:
        a = self.values
        return p * (1.0 - p ** (a - 1.0)) / (a * (a - 1.0))


def _alpha_tangent(p: Array, a: Array, axis: int) -> Array:
    r""":math:`\partial p / \partial\alpha` (module notes), 0 off the support."""
    live = p > 0
    safe = jnp.where(live, p, 1.0)
    s = jnp.where(live, safe ** (2.0 - a), 0.0)
    total = jnp.sum(s, axis=axis, keepdims=True)
    share = s / jnp.where(total > 0, total, 1.0)
    plogp = jnp.where(live, p * jnp.log(safe), 0.0)
    entropy = jnp.sum(plogp, axis=axis, keepdims=True)
    return (p - share) / ((a - 1.0) * (a - 1.0)) - (plogp - share * entropy) / (a - 1.0)


def _support_product(p: Array, a: Array, v: Array, axis: int) -> Array:
    """:math:`s \\odot v - s \\langle s, v\\rangle / \\sum s`, :math:`s = p^{2-\\alpha}` on the support."""
    live = p > 0
    s = jnp.where(live, jnp.where(live, p, 1.0) ** (2.0 - a), 0.0)
    sv = jnp.where(live, s * v, 0.0)
    total = jnp.sum(s, axis=axis, keepdims=True)
    return jnp.where(live, sv - s * jnp.sum(sv, axis=axis, keepdims=True) / jnp.where(total > 0, total, 1.0), 0.0)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _bisect_mapped(axis: int, n_iter: int, x: Array, alpha: Array, where: Array | None) -> Array:
    laid = alpha if alpha.ndim == 0 else jnp.moveaxis(alpha, axis, -1)
    return tsallis.mapping(x, axis, where, _alpha_family(laid, n_iter))


@_bisect_mapped.defjvp
def _bisect_mapped_jvp(axis: int, n_iter: int, primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> Any:
    x, alpha, where = primals
    dx, dalpha, _ = tangents
    p = _bisect_mapped(axis, n_iter, x, alpha, where)
    a = alpha  # 0-d, or broadcast to the rows by entmax_bisect
    poison, factor = _nan_parts(p, axis)
    tan = _support_product(p, a, dx * factor, axis) + _alpha_tangent(p, a, axis) * dalpha
    return p, tan + poison


@_document
def entmax_bisect(
    x: Array, /, *, alpha: Any = 1.5, axis: int = -1, n_iter: int = 64, where: Array | None = None
) -> Array:
    """:func:`softmaxkit.entmax_bisect` with the analytic derivative; ``alpha`` may be a JAX array (0-d,
    or broadcastable to ``x``'s shape with length 1 along ``axis``), which then gets its gradient too (module
    notes)."""
    if _concrete_alpha(alpha):
        return _mapping("entmax_bisect", x, where, alpha=alpha, axis=axis, n_iter=n_iter)
    z = _floating(x)
    ax = _validate.axis(axis, z.ndim)
    n = tsallis.check_n_iter(n_iter)
    work = _array.compute_dtype(jnp, z.dtype, "x")
    rows = (*z.shape[:ax], 1, *z.shape[ax + 1 :])
    a = _array_alpha(jnp.asarray(alpha), work, rows)
    if a.ndim:
        a = jnp.broadcast_to(a, rows)
    p = _bisect_mapped(ax, n, z.astype(work), a, None if where is None else jnp.asarray(where))
    return p.astype(z.dtype)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _bisect_lossed(options: Options, z: Array, t: Array, w: Array | None, alpha: Array) -> Array:
    return _bisect_loss(options, z, t, w, alpha, want_grad=False)[0]


def _bisect_loss(
    options: Options, z: Array, t: Array, w: Array | None, alpha: Array, *, want_grad: bool
) -> tuple[Array, Array | None]:
    kw = dict(options)
    n_iter = kw.pop("n_iter")
    return tsallis.fenchel_young(z, t, weight=w, fam=_alpha_family(alpha, n_iter), want_grad=want_grad, **kw)


def _bisect_lossed_jvp(options: Options, primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> Any:
    z, t, w, alpha = primals
    dz, _, dw, dalpha = tangents
    kw = dict(options)
    value, _ = _bisect_loss(options, z, t, w, alpha, want_grad=False)
    grad = _fenchel_young_grad(kw, z, t, w, lambda r: _bisect_mapped(r.ndim - 1, kw["n_iter"], r, alpha, None))
    axis = _validate.axis(kw["axis"], z.ndim)
    tan = jnp.zeros_like(value) if _is_zero(dz) else _contract(grad, dz, axis, kw["reduction"], value.dtype)
    if w is not None and not _is_zero(dw):

        def unweighted(z: Array, t: Array, w: None, reduction: str) -> Array:
            return _bisect_loss(tuple(dict(kw, reduction=reduction).items()), z, t, w, alpha, want_grad=False)[0]

        tan = tan + _weight_tangent(unweighted, kw, z, t, w, dw, value)
    if not _is_zero(dalpha):
        tan = tan + _entropy_slope(kw, z, t, w, alpha) * dalpha.astype(value.dtype)
    return value, tan


def _entropy_slope(kw: dict[str, Any], z: Array, t: Array, w: Array | None, a: Array) -> Array:
    r""":math:`\partial\ell/\partial\alpha`, reduced as the loss: only :math:`H_\alpha`'s own dependence on α
    (module notes)."""
    prep = _loss.prepare(z, t, axis=kw["axis"], weight=w, ignore_index=kw["ignore_index"], reduction=kw["reduction"])
    p = _bisect_mapped(prep.z.ndim - 1, kw["n_iter"], prep.z, a, None)  # differentiable again (module notes)
    bad = jnp.isnan(p[..., :1])
    live = p > 0
    safe = jnp.where(live, p, 1.0)
    p_a = jnp.where(live, safe**a, 0.0)
    log_term = jnp.sum(jnp.where(live, p_a * jnp.log(safe), 0.0), axis=-1)
    rest = 1.0 - jnp.sum(p_a, axis=-1)
    row = -log_term / (a * (a - 1.0)) - (2.0 * a - 1.0) * rest / ((a * (a - 1.0)) ** 2)
    slope, _ = _loss.finish(prep, jnp.where(jnp.squeeze(bad, axis=-1), jnp.nan, row), None)
    return slope


_bisect_lossed.defjvp(_bisect_lossed_jvp, symbolic_zeros=True)


@_document
def entmax_bisect_loss(
    logits: Array,
    target: Array,
    /,
    *,
    alpha: Any = 1.5,
    axis: int = -1,
    n_iter: int = 64,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Array:
    """:func:`softmaxkit.entmax_bisect_loss` with the closed-form gradient; ``alpha`` may be a 0-d JAX
    array, which then gets its gradient too (module notes)."""
    options = {"axis": axis, "n_iter": n_iter, "ignore_index": ignore_index, "reduction": reduction}
    if _concrete_alpha(alpha):
        return _loss_call("entmax_bisect_loss", logits, target, weight, alpha=alpha, **options)
    z = _floating(logits, "logits")
    tsallis.check_n_iter(n_iter)
    a = _array_alpha(jnp.asarray(alpha), _array.compute_dtype(jnp, z.dtype, "logits"), None)
    w = None if weight is None else _floating(weight, "weight")
    return _bisect_lossed(tuple(options.items()), z, jnp.asarray(target), w, a)


# --------------------------------------------------------------------------------------------- dispatch
def route(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``softmaxkit.family.<name>(*args, **kwargs)`` for a JAX array or tracer, by this module's functions;
    ``NotImplemented`` for a name they do not cover (the generic code then runs).

    Called by :func:`softmaxkit._backend.route`. A ``*_loss_value_and_grad`` gives this module's loss and its
    gradient by ``jax.vjp`` (the custom rule's transpose: the closed form, and differentiable again).
    """
    base = name.removesuffix("_value_and_grad")
    func = globals().get(base) if base in __all__ else None
    if func is None:
        return NotImplemented
    if base == name:
        return func(*args, **kwargs)
    if not args:
        return NotImplemented  # the generic code names the missing argument
    logits, *rest = args
    value, pullback = jax.vjp(lambda z: func(z, *rest, **kwargs), _floating(logits, "logits"))
    (grad,) = pullback(jnp.ones_like(value))
    return value, grad

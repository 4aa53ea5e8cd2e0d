"""Analytic gradients agree with autodiff (torch, JAX) and with finite differences, in float64.

The derivatives of :mod:`softmaxkit.softmax` (``softmax_jvp``, ``softmax_vjp``, ``softmax_jacobian``,
``log_softmax_jvp``, ``log_softmax_vjp``) and the closed-form gradient of
:func:`softmaxkit.cross_entropy_value_and_grad` are checked against

* torch autodiff (``torch.func``, ``torch.autograd``) of ``torch.softmax`` / ``F.cross_entropy``,
* JAX autodiff (``jax.jvp``, ``jax.vjp``, ``jax.jacrev``, ``jax.grad``) of ``jax.nn`` / a direct JAX formula,
* central finite differences of our own ``softmax`` / ``log_softmax`` / ``cross_entropy``,

plus the special values the library promises where torch and JAX give ``nan`` (masked and fully masked rows,
every label ignored, ignored rows holding ``nan``), and the float16/bfloat16 gradient policy.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import FD_STEP, LIBRARIES, ArrayLibrary, assert_nothing_to_average, fd_atol, seeded_rng, to_numpy, tol
from softmaxkit import cross_entropy, cross_entropy_value_and_grad, log_softmax, softmax
from softmaxkit.softmax import log_softmax_jvp, log_softmax_vjp, softmax_jacobian, softmax_jvp, softmax_vjp

Shape = tuple[int, ...]
F64 = tol("float64")

# Central differences (f(x + h) - f(x - h)) / 2h in float64: rounding error ~ EPS * |f| / h, truncation error
# ~ h^2 |f'''| / 6 (|f'''| is O(1) for these smooth maps at T >= 0.7 and softcap >= 2). With h = 1e-6 the
# rounding term dominates (2e-10 per unit of |f|); the factor 16 covers the rounding of f itself (a few ulp).



# The bfloat16 true-class gradient at p = 0.999 is ~ -1e-3; rounding p to bfloat16 before subtracting 1 would
# give 0 or -3.9e-3. Computed in float32 and rounded once, its relative error is at most 2**-8.
LOW_PRECISION_GRAD_RTOL = 0.1


# ------------------------------------------------------------------------------------------------- helpers

def _shape_id(shape: Shape) -> str:
    return "x".join(map(str, shape))


def to_last(a: np.ndarray, axis: int) -> np.ndarray:
    return np.moveaxis(a, axis, -1)


def from_last(a: np.ndarray, axis: int) -> np.ndarray:
    return np.moveaxis(a, -1, axis)


def batch_blocks(full: np.ndarray, shape: Shape, axis: int) -> np.ndarray:
    """The Jacobian of a row-wise map, ``shape + shape``, as ``batch + (K, K)`` with ``J[..., i, j]``."""
    nd = len(shape)
    ax = axis % nd
    k = shape[ax]
    n = math.prod(shape) // k
    full = np.moveaxis(np.asarray(full), [ax, nd + ax], [nd - 1, 2 * nd - 1]).reshape(n, k, n, k)
    rows = np.arange(n)
    batch = tuple(s for i, s in enumerate(shape) if i != ax)
    return full[rows, :, rows, :].reshape(*batch, k, k)


def fd_jacobian(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, axis: int) -> np.ndarray:
    """Central-difference Jacobian of a row-wise map, ``batch + (K, K)``: every row is perturbed at once."""
    xl = to_last(x, axis)
    cols = []
    for j in range(xl.shape[-1]):
        e = np.zeros_like(xl)
        e[..., j] = FD_STEP
        up, down = f(from_last(xl + e, axis)), f(from_last(xl - e, axis))
        cols.append(to_last((up - down) / (2 * FD_STEP), axis))
    return np.stack(cols, axis=-1)


def fd_gradient(f: Callable[[np.ndarray], float], x: np.ndarray) -> np.ndarray:
    """Central-difference gradient of a scalar function, entry by entry."""
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = FD_STEP
        g[idx] = (f(x + e) - f(x - e)) / (2 * FD_STEP)
    return g


# ------------------------------------------------------------------------ softmax / log_softmax derivatives
@dataclass(frozen=True)
class Op:
    """One derivative of ours and what it is the derivative of."""

    name: str
    ours: Callable[..., Any]
    mapping: str  # "softmax" or "log_softmax"
    mode: str  # "jvp", "vjp" or "jacobian"


OPS = {
    op.name: op
    for op in [
        Op("softmax_jvp", softmax_jvp, "softmax", "jvp"),
        Op("softmax_vjp", softmax_vjp, "softmax", "vjp"),
        Op("softmax_jacobian", softmax_jacobian, "softmax", "jacobian"),
        Op("log_softmax_jvp", log_softmax_jvp, "log_softmax", "jvp"),
        Op("log_softmax_vjp", log_softmax_vjp, "log_softmax", "vjp"),
    ]
}
OP_PARAMS = [pytest.param(op, id=op.name) for op in OPS.values()]
SHAPE_AXES = [
    pytest.param(shape, axis, id=f"{_shape_id(shape)}-axis{axis}")
    for shape in [(7,), (3, 5), (2, 3, 4)]
    for axis in (-1, 0, 1)
    if -len(shape) <= axis < len(shape)
]
TEMPERATURES = [pytest.param(1.0, id="T1"), pytest.param(0.7, id="T0.7")]


def call_ours(op: Op, xp: ArrayLibrary, x: np.ndarray, v: np.ndarray, **kw: Any) -> np.ndarray:
    args = (xp(x),) if op.mode == "jacobian" else (xp(x), xp(v))
    return to_numpy(op.ours(*args, **kw))


def torch_autodiff(op: Op, x: np.ndarray, v: np.ndarray, axis: int, temperature: float) -> np.ndarray:
    """``op`` by torch autodiff of ``torch.softmax`` / ``torch.log_softmax`` of x / T (a Jacobian comes back
    whole, ``x.shape + x.shape``)."""
    fn = torch.softmax if op.mapping == "softmax" else torch.log_softmax

    def f(t: torch.Tensor) -> torch.Tensor:
        return fn(t / temperature, dim=axis)

    xt, vt = torch.asarray(x.copy()), torch.asarray(v.copy())  # (our cached inputs are read-only)
    if op.mode == "jvp":
        # torch.autograd.functional.jvp (double-backward trick): torch.func.jvp's forward mode loads its
        # decompositions through the deprecated torch.jit.script, a DeprecationWarning (an error here)
        out = torch.autograd.functional.jvp(f, xt, vt)[1]
    elif op.mode == "vjp":
        out = torch.func.vjp(f, xt)[1](vt)[0]
    else:
        out = torch.func.jacrev(f)(xt)
    return out.numpy()


@functools.partial(jax.jit, static_argnums=0)
def _jax_derivatives(mapping: str, x: jax.Array, v: jax.Array, t: jax.Array) -> tuple[jax.Array, ...]:
    """JVP, VJP and Jacobian of each row of ``x`` (n, K), in one compiled function per mapping and shape."""
    fn = jax.nn.softmax if mapping == "softmax" else jax.nn.log_softmax

    def f(row: jax.Array) -> jax.Array:
        return fn(row / t)

    jvp = jax.vmap(lambda r, w: jax.jvp(f, (r,), (w,))[1])(x, v)
    vjp = jax.vmap(lambda r, w: jax.vjp(f, r)[1](w)[0])(x, v)
    return jvp, vjp, jax.vmap(jax.jacrev(f))(x)


def jax_autodiff(op: Op, x: np.ndarray, v: np.ndarray, axis: int, temperature: float) -> np.ndarray:
    """``op`` by ``jax.jvp`` / ``jax.vjp`` / ``jax.jacrev`` of ``jax.nn.softmax`` / ``log_softmax`` of x / T,
    row by row (``jax.vmap``) with the class axis last; a Jacobian comes back as ``batch + (K, K)``."""
    xl, vl = to_last(x, axis), to_last(v, axis)
    k = xl.shape[-1]
    t = jnp.asarray(temperature, dtype=jnp.float64)
    outs = _jax_derivatives(op.mapping, jnp.asarray(xl.reshape(-1, k)), jnp.asarray(vl.reshape(-1, k)), t)
    jvp, vjp, jac = (np.asarray(o) for o in outs)
    if op.mode == "jacobian":
        return jac.reshape(*xl.shape, k)
    return from_last((jvp if op.mode == "jvp" else vjp).reshape(xl.shape), axis)


def autodiff(op: Op, lib: str, x: np.ndarray, v: np.ndarray, axis: int, temperature: float) -> np.ndarray:
    """``op`` by ``lib``'s autodiff; a Jacobian comes back in our layout ``batch + (K, K)``."""
    if lib == "jax":
        return jax_autodiff(op, x, v, axis, temperature)
    res = torch_autodiff(op, x, v, axis, temperature)
    return batch_blocks(res, x.shape, axis) if op.mode == "jacobian" else res


def _frozen(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    for a in arrays:
        a.flags.writeable = False
    return arrays


@functools.cache
def smooth_problem(shape: Shape, axis: int, temperature: float) -> tuple[np.ndarray, ...]:
    """Logits x and a tangent / cotangent v."""
    rng = seeded_rng("smooth", shape, axis, temperature)
    return _frozen(2.0 * rng.standard_normal(shape), rng.standard_normal(shape))


@functools.cache
def smooth_reference(op: Op, lib: str, shape: Shape, axis: int, temperature: float) -> np.ndarray:
    """Computed once, compared with ours on every backend."""
    x, v = smooth_problem(shape, axis, temperature)
    return autodiff(op, lib, x, v, axis, temperature)


def _jacobian_shape(shape: Shape, axis: int) -> Shape:
    ax = axis % len(shape)
    return (*(s for i, s in enumerate(shape) if i != ax), shape[ax], shape[ax])


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize(("shape", "axis"), SHAPE_AXES)
@pytest.mark.parametrize("op", OP_PARAMS)
def test_derivative_matches_torch_and_jax_autodiff(
    xp: ArrayLibrary, op: Op, shape: Shape, axis: int, temperature: float
) -> None:
    x, v = smooth_problem(shape, axis, temperature)
    ours = call_ours(op, xp, x, v, axis=axis, temperature=temperature)
    assert ours.shape == (_jacobian_shape(shape, axis) if op.mode == "jacobian" else shape)
    for lib in ("torch", "jax"):
        ref = smooth_reference(op, lib, shape, axis, temperature)
        np.testing.assert_allclose(ours, ref, **F64, err_msg=f"vs {lib} autodiff")


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize(("shape", "axis"), SHAPE_AXES)
@pytest.mark.parametrize("op", OP_PARAMS)
def test_derivative_matches_finite_differences(op: Op, shape: Shape, axis: int, temperature: float) -> None:
    x, v = smooth_problem(shape, axis, temperature)
    mapping = softmax if op.mapping == "softmax" else log_softmax

    def f(a: np.ndarray) -> np.ndarray:
        return np.asarray(mapping(a, axis=axis, temperature=temperature))

    jac = fd_jacobian(f, x, axis)  # batch + (K, K), J[..., i, j] = d f_i / d x_j
    ours = call_ours(op, LIBRARIES["numpy"], x, v, axis=axis, temperature=temperature)
    atol = fd_atol(float(np.max(np.abs(f(x)))))
    if op.mode == "jacobian":
        expected = jac
    else:  # a product sums K entries of the Jacobian times v
        subscripts = "...ij,...j->...i" if op.mode == "jvp" else "...ij,...i->...j"
        expected = from_last(np.einsum(subscripts, jac, to_last(v, axis)), axis)
        atol *= shape[axis] * float(np.max(np.abs(v)))
    np.testing.assert_allclose(ours, expected, rtol=0, atol=atol)


# ------------------------------------------------------------------------------------------------ masking
MASK_KINDS = [pytest.param("neg_inf", id="neg_inf"), pytest.param("where", id="where_false")]
MASK_AXES = [pytest.param(-1, id="axis-1"), pytest.param(0, id="axis0")]

# class axis last, 3 x 5 like the (3, 5) case above (JAX compiles once per shape).
# partial: one entry masked, three masked, a single entry left (p = 1 exactly); full: the middle row is empty.
KEEP = {
    "partial": np.array([[1, 1, 0, 1, 1], [0, 1, 1, 0, 0], [0, 0, 0, 1, 0]], dtype=bool),
    "full": np.array([[1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [1, 1, 1, 0, 1]], dtype=bool),
}


@functools.cache
def masked_problem(pattern: str, kind: str, axis: int) -> tuple[np.ndarray, ...]:
    """Logits, tangent and keep-mask in the caller's layout.

    Masked logits are ``-inf`` for ``neg_inf``; for ``where`` they hold a large finite value that would
    dominate the row if the mask were not honoured.
    """
    rng = seeded_rng("mask", pattern, kind, axis)
    keep = from_last(KEEP[pattern], axis)
    x = 2.0 * rng.standard_normal(keep.shape)
    v = rng.standard_normal(keep.shape)
    return _frozen(np.where(keep, x, -np.inf if kind == "neg_inf" else 50.0), v, np.ascontiguousarray(keep))


@functools.cache
def masked_reference(op: Op, lib: str, pattern: str, kind: str, axis: int) -> np.ndarray:
    """Autodiff at the -inf-masked logits. torch/JAX pass a cotangent at a -inf input straight through
    log-softmax (d log p_j / d x_j = 1 there); ours ignores it (that output is the constant -inf), so the
    reference gets a zero cotangent at masked entries."""
    x, v, keep = masked_problem(pattern, kind, axis)
    if op.mapping == "log_softmax" and op.mode == "vjp":
        v = np.where(keep, v, 0.0)
    return autodiff(op, lib, np.where(keep, x, -np.inf), v, axis, 1.0)


def call_masked(op: Op, xp: ArrayLibrary, pattern: str, kind: str, axis: int) -> np.ndarray:
    x, v, keep = masked_problem(pattern, kind, axis)
    where = {"where": xp(keep)} if kind == "where" else {}
    return call_ours(op, xp, x, v, axis=axis, **where)


def assert_zero_where_masked(op: Op, ours: np.ndarray, keep: np.ndarray, axis: int) -> np.ndarray:
    """Masked entries (rows and columns of the Jacobian) are exactly 0; return the entries left to compare."""
    if op.mode == "jacobian":
        k = to_last(keep, axis)
        masked_ij = np.logical_not(k[..., :, None] & k[..., None, :])
        assert np.all(ours[masked_ij] == 0), ours[masked_ij]
        return np.broadcast_to(~masked_ij, ours.shape)
    assert np.all(ours[~keep] == 0), ours[~keep]
    return keep


@pytest.mark.parametrize("axis", MASK_AXES)
@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("op", OP_PARAMS)
def test_masked_entries_get_exactly_zero_derivative(xp: ArrayLibrary, op: Op, kind: str, axis: int) -> None:
    ours = call_masked(op, xp, "partial", kind, axis)
    compare = assert_zero_where_masked(op, ours, masked_problem("partial", kind, axis)[2], axis)
    for lib in ("torch", "jax"):
        ref = masked_reference(op, lib, "partial", kind, axis)
        np.testing.assert_allclose(ours[compare], ref[compare], **F64, err_msg=f"vs {lib} autodiff")


@pytest.mark.parametrize("axis", MASK_AXES)
@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("op", OP_PARAMS)
def test_all_masked_row_gets_exactly_zero_derivative(xp: ArrayLibrary, op: Op, kind: str, axis: int) -> None:
    ours = call_masked(op, xp, "full", kind, axis)
    compare = assert_zero_where_masked(op, ours, masked_problem("full", kind, axis)[2], axis)
    if op.mode != "jacobian":  # batch first, as the Jacobian is
        ours, compare = to_last(ours, axis), to_last(compare, axis)
    assert np.all(ours[1] == 0), ours[1]
    # torch (and JAX) give nan for the fully masked row (0/0), so the torch reference is compared on the
    # other rows only; rows are independent, so its nan does not reach them.
    ref = masked_reference(op, "torch", "full", kind, axis)
    if op.mode != "jacobian":
        ref = to_last(ref, axis)
    others = [0, 2]
    np.testing.assert_allclose(ours[others][compare[others]], ref[others][compare[others]], **F64)


# ----------------------------------------------------------------------------------------- cross-entropy
N_CLASSES = 5
IGNORE = 1  # a valid class index: rows with target 1 are skipped, class 1 still counts in the smoothing term

# layout -> (logits shape, class axis); torch always gets the class axis at 1 (0 for 1-d logits)
LAYOUTS: dict[str, tuple[Shape, int]] = {
    "C": ((N_CLASSES,), -1),
    "NC": ((6, N_CLASSES), -1),
    "CN": ((N_CLASSES, 6), 0),
    "NCd1d2": ((2, N_CLASSES, 3, 2), 1),
}


@dataclass(frozen=True)
class CECase:
    layout: str
    target: str  # "index" or "prob"
    weighted: bool
    ignore: bool  # ignore_index=IGNORE and some targets hit it
    smoothing: float
    reduction: str
    z_loss: float = 0.0
    softcap: float | None = None

    @property
    def id(self) -> str:
        parts = [self.layout, self.target, "weight" if self.weighted else "noweight"]
        if self.target == "index":
            parts.append("ignorehit" if self.ignore else "noignore")
        parts += [f"ls{self.smoothing:g}", self.reduction]
        if self.z_loss:
            parts.append(f"z{self.z_loss:g}")
        if self.softcap is not None:
            parts.append(f"cap{self.softcap:g}")
        return "-".join(parts)

    @property
    def axis(self) -> int:
        return LAYOUTS[self.layout][1]

    def kwargs(self, weight: Any) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "axis": self.axis,
            "label_smoothing": self.smoothing,
            "reduction": self.reduction,
            "weight": weight if self.weighted else None,
        }
        if self.ignore:
            kw["ignore_index"] = IGNORE
        if self.z_loss:
            kw["z_loss"] = self.z_loss
        if self.softcap is not None:
            kw["softcap"] = self.softcap
        return kw


def _ce_cases(
    layouts: list[str],
    extras: list[tuple[float, float | None]],
    weighted: tuple[bool, ...] = (False, True),
    ignore: tuple[bool, ...] = (False, True),
    smoothing: tuple[float, ...] = (0.0, 0.1),
) -> list[Any]:
    cases: dict[str, Any] = {}
    for layout, target, w, ig, ls, reduction, (z_loss, softcap) in itertools.product(
        layouts, ["index", "prob"], weighted, ignore, smoothing, ["mean", "sum", "none"], extras
    ):
        # no ignore_index for probabilities; a 1-d "hit" ignores every label (test_all_labels_ignored_...)
        ig = ig and target == "index" and layout != "C"
        case = CECase(layout, target, w, ig, ls, reduction, z_loss, softcap)
        cases.setdefault(case.id, pytest.param(case, id=case.id))
    return list(cases.values())


ZCAP = [(0.1, None), (0.0, 2.0), (0.1, 2.0)]
# every option of torch's F.cross_entropy, every layout, then z_loss / softcap (which torch has not: compared
# with torch autograd of our own torch expression) on the K-dimensional layout
CE_CASES = _ce_cases(list(LAYOUTS), [(0.0, None)]) + _ce_cases(["NCd1d2"], ZCAP)
# every backend: each layout and reduction with every option on
BACKEND_CE_CASES = _ce_cases(list(LAYOUTS), [(0.0, None)], (True,), (True,), (0.1,)) + _ce_cases(
    ["NCd1d2"], [(0.1, 2.0)], (True,), (True,), (0.1,)
)


@dataclass(frozen=True)
class CEData:
    logits: np.ndarray
    target: np.ndarray
    weight: np.ndarray


@functools.cache
def ce_data(layout: str, target_kind: str, ignore: bool) -> CEData:
    shape, axis = LAYOUTS[layout]
    rng = seeded_rng("ce", layout, target_kind, ignore)
    logits = 2.0 * rng.standard_normal(shape)
    weight = rng.uniform(0.5, 2.0, N_CLASSES)
    weight[3] = 0.0  # a class with zero weight
    batch = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
    if target_kind == "index":
        target = np.asarray(rng.integers(0, N_CLASSES, batch))
        if ignore:
            target.flat[::3] = IGNORE
            target.flat[1] = (IGNORE + 1) % N_CLASSES
    else:
        target = from_last(rng.dirichlet(np.ones(N_CLASSES), batch), axis)
    return CEData(*_frozen(logits, target, weight))


def data_of(case: CECase) -> CEData:
    return ce_data(case.layout, case.target, case.ignore)


@functools.cache
def torch_ce(case: CECase) -> tuple[np.ndarray, np.ndarray]:
    """Loss and gradient by torch autograd of ``F.cross_entropy`` (class axis at 1) and, for z_loss and
    softcap, of our torch expression of the module docstring: the cap applies to the logits first, and the
    z-loss ``z_loss * lse**2`` is summed over the rows not ignored, its mean taken over their count, with no
    class weight. For ``reduction='none'`` the gradient is that of the summed losses."""
    data = data_of(case)
    z = torch.asarray(data.logits.copy()).requires_grad_(True)
    class_dim = 0 if z.ndim == 1 else 1
    zt = torch.movedim(z, case.axis, class_dim)
    t = torch.asarray(data.target.copy())
    if case.target == "prob":
        t = torch.movedim(t, case.axis, class_dim)
    if case.softcap is not None:
        zt = case.softcap * torch.tanh(zt / case.softcap)
    loss = F.cross_entropy(
        zt,
        t,
        weight=torch.asarray(data.weight.copy()) if case.weighted else None,
        ignore_index=IGNORE if case.ignore else -100,
        label_smoothing=case.smoothing,
        reduction=case.reduction,
    )
    if case.z_loss:
        lse = torch.logsumexp(zt, dim=class_dim)
        valid = (t != IGNORE) if case.ignore else torch.ones_like(lse, dtype=torch.bool)
        zl = case.z_loss * torch.where(valid, lse**2, 0.0)
        if case.reduction == "mean":
            zl = zl.sum() / valid.sum()
        elif case.reduction == "sum":
            zl = zl.sum()
        loss = loss + zl
    loss.sum().backward()
    assert z.grad is not None
    return _frozen(loss.detach().numpy(), z.grad.numpy())


def _jax_ce_total(
    z: jax.Array,
    t: jax.Array,
    w: jax.Array,
    eps: jax.Array,
    lam: jax.Array,
    cap: jax.Array,
    ignore: jax.Array,
    mean: jax.Array,
    by_index: bool,
) -> jax.Array:
    """The loss written directly in JAX (class axis last), summed for ``reduction='none'``; ``cap = 0`` is no
    softcap. Options are traced values, so that it compiles once per shape and target kind."""
    c = z.shape[-1]
    z = jnp.where(cap > 0, cap * jnp.tanh(z / jnp.where(cap > 0, cap, 1.0)), z)
    logp = jax.nn.log_softmax(z, axis=-1)
    lse = jax.nn.logsumexp(z, axis=-1)
    if by_index:
        valid = t != ignore
        y = jnp.where(valid, t, 0)
        q = (1 - eps) * jax.nn.one_hot(y, c, dtype=z.dtype) + eps / c
        row = -jnp.sum(w * q * logp, axis=-1) * valid
        denom = jnp.sum(w[y] * valid)
        n_rows = jnp.sum(valid)
    else:
        valid = jnp.ones(lse.shape, dtype=bool)
        q = (1 - eps) * t + eps / c
        row = -jnp.sum(w * q * logp, axis=-1)
        denom = n_rows = jnp.asarray(float(lse.size))
    z_row = lam * lse**2 * valid
    return jnp.where(mean, jnp.sum(row) / denom + jnp.sum(z_row) / n_rows, jnp.sum(row + z_row))


_jax_ce_grad = jax.jit(jax.grad(_jax_ce_total), static_argnums=8)


def jax_ce_grad(case: CECase) -> np.ndarray:
    data = data_of(case)
    t = to_last(data.target, case.axis) if case.target == "prob" else data.target
    w = data.weight if case.weighted else np.ones(N_CLASSES)
    scalars = [case.smoothing, case.z_loss, case.softcap or 0.0]
    g = _jax_ce_grad(
        jnp.asarray(to_last(data.logits, case.axis)),
        jnp.asarray(t),
        jnp.asarray(w),
        *(jnp.asarray(s, dtype=jnp.float64) for s in scalars),
        jnp.asarray(IGNORE if case.ignore else -100),
        jnp.asarray(case.reduction == "mean"),
        case.target == "index",
    )
    return from_last(np.asarray(g), case.axis)


def ours_ce(xp: ArrayLibrary, case: CECase) -> tuple[Any, Any, dict[str, Any]]:
    data = data_of(case)
    kw = case.kwargs(xp(data.weight))
    loss, grad = cross_entropy_value_and_grad(xp(data.logits), xp(data.target), **kw)
    return loss, grad, kw


def check_against_torch(xp: ArrayLibrary, case: CECase) -> None:
    data = data_of(case)
    loss, grad, kw = ours_ce(xp, case)
    ref_loss, ref_grad = torch_ce(case)
    assert tuple(grad.shape) == data.logits.shape
    np.testing.assert_allclose(to_numpy(grad), ref_grad, **F64)
    np.testing.assert_allclose(to_numpy(loss), ref_loss, **F64)
    # the value comes from the same code path as cross_entropy: bit for bit equal
    again = cross_entropy(xp(data.logits), xp(data.target), **kw)
    np.testing.assert_array_equal(to_numpy(loss), to_numpy(again))


@pytest.mark.parametrize("case", CE_CASES)
def test_ce_gradient_matches_torch_autograd(case: CECase) -> None:
    check_against_torch(LIBRARIES["numpy"], case)


@pytest.mark.parametrize("case", BACKEND_CE_CASES)
def test_ce_gradient_matches_torch_autograd_on_every_backend(xp: ArrayLibrary, case: CECase) -> None:
    check_against_torch(xp, case)


@pytest.mark.parametrize("case", CE_CASES)
def test_ce_gradient_matches_jax_grad(case: CECase) -> None:
    _, grad, _ = ours_ce(LIBRARIES["numpy"], case)
    np.testing.assert_allclose(grad, jax_ce_grad(case), **F64)


@pytest.mark.parametrize("case", CE_CASES)
def test_ce_gradient_matches_finite_differences(case: CECase) -> None:
    data = data_of(case)
    loss, grad, kw = ours_ce(LIBRARIES["numpy"], case)

    def total(z: np.ndarray) -> float:
        return float(np.sum(cross_entropy(z, data.target, **kw)))

    expected = fd_gradient(total, data.logits)
    np.testing.assert_allclose(grad, expected, rtol=0, atol=fd_atol(float(np.sum(np.abs(loss)))))


# -------------------------------------------------------------------------------------- special values
OPTION_SETS = [
    pytest.param({}, id="plain"),
    pytest.param({"label_smoothing": 0.1, "weight": [1.0, 2.0, 0.5, 1.0]}, id="smooth-weight"),
    pytest.param({"z_loss": 0.1}, id="zloss"),
    pytest.param({"softcap": 2.0}, id="softcap"),
]


def _options(xp: ArrayLibrary, options: dict[str, Any]) -> dict[str, Any]:
    return {k: xp(np.asarray(v)) if k == "weight" else v for k, v in options.items()}


@pytest.mark.parametrize("options", OPTION_SETS)
def test_all_labels_ignored_mean_is_zero(xp: ArrayLibrary, options: dict[str, Any]) -> None:
    logits = seeded_rng("all-ignored").standard_normal((4, 4))
    loss, grad = cross_entropy_value_and_grad(
        xp(logits), xp(np.full(4, -100)), reduction="mean", **_options(xp, options)
    )
    assert_nothing_to_average(loss, grad)  # torch: nan (0 / 0)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", OPTION_SETS)
def test_ignored_rows_with_nan_logits_get_zero_gradient(
    xp: ArrayLibrary, options: dict[str, Any], reduction: str
) -> None:
    logits = seeded_rng("nan-ignored").standard_normal((4, 4))
    logits[1] = np.nan
    logits[3, 2] = np.nan
    target = np.array([0, -100, 2, -100])
    loss, grad = cross_entropy_value_and_grad(
        xp(logits), xp(target), reduction=reduction, **_options(xp, options)
    )
    g = to_numpy(grad)
    assert np.all(np.isfinite(to_numpy(loss))), to_numpy(loss)
    assert np.all(g[[1, 3]] == 0), g[[1, 3]]
    # the other rows are those of the problem without the ignored rows (same mean denominators)
    _, clean = cross_entropy_value_and_grad(
        logits[[0, 2]], target[[0, 2]], reduction=reduction, **_options(LIBRARIES["numpy"], options)
    )
    np.testing.assert_allclose(g[[0, 2]], clean, **F64)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_target_at_neg_inf_logit_gives_inf_loss_and_finite_gradient(xp: ArrayLibrary, reduction: str) -> None:
    inf = np.inf
    logits = np.array(
        [
            [0.0, -inf, 1.0, 2.0],
            [0.5, 1.0, 2.0, 3.0],
            [1.0, 0.0, -1.0, -2.0],
            [-inf, 0.0, 0.0, 1.0],
        ]
    )
    target = np.array([1, 2, 0, 0])  # rows 0 and 3 put their target on a -inf logit
    loss, grad = cross_entropy_value_and_grad(xp(logits), xp(target), reduction=reduction)
    lv = to_numpy(loss)
    if reduction == "none":
        np.testing.assert_array_equal(np.isinf(lv), [True, False, False, True])
        assert np.all(lv[[0, 3]] > 0)
    else:
        assert lv == inf
    g = to_numpy(grad)
    assert np.all(np.isfinite(g)), g
    p_minus_y = to_numpy(softmax(xp(logits))) - np.eye(4)[target]
    np.testing.assert_allclose(g, p_minus_y / (4 if reduction == "mean" else 1), **F64)


# ------------------------------------------------------------------------------------- float16 / bfloat16
LOW_PRECISION = [
    pytest.param("torch", "float16", id="torch-float16"),
    pytest.param("torch", "bfloat16", id="torch-bfloat16"),
    pytest.param("jax", "bfloat16", id="jax-bfloat16"),
]
LOW_OPTION_SETS = [
    *OPTION_SETS,
    pytest.param({"ignore_index": 2, "label_smoothing": 0.1}, id="ignore-smooth"),
]


def _low(backend_name: str, dtype: str, a: np.ndarray) -> tuple[Any, np.ndarray]:
    """``a`` in the low-precision dtype, and the same (rounded) values in float64 NumPy."""
    arr = LIBRARIES[backend_name](a, dtype)
    return arr, to_numpy(arr).astype(np.float64)


@pytest.mark.parametrize("options", LOW_OPTION_SETS)
@pytest.mark.parametrize(("backend_name", "dtype"), LOW_PRECISION)
def test_low_precision_gradient_in_input_dtype_and_close_to_float64(
    backend_name: str, dtype: str, options: dict[str, Any]
) -> None:
    b = LIBRARIES[backend_name]
    logits, logits64 = _low(backend_name, dtype, 2.0 * seeded_rng("low").standard_normal((4, 4)))
    target = np.array([0, 1, 2, 3])
    loss, grad = cross_entropy_value_and_grad(logits, b(target), **_options(b, options))
    assert grad.dtype == b.dtypes[dtype]
    assert loss.dtype == b.dtypes[dtype]
    loss64, grad64 = cross_entropy_value_and_grad(logits64, target, **_options(LIBRARIES["numpy"], options))
    np.testing.assert_allclose(to_numpy(grad), grad64, **tol(dtype))
    np.testing.assert_allclose(to_numpy(loss), loss64, **tol(dtype))


@pytest.mark.parametrize("shift", [0.0, 5.0], ids=["k0", "k5"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(("backend_name", "dtype"), LOW_PRECISION)
def test_low_precision_true_class_gradient_at_p_0999(
    backend_name: str, dtype: str, reduction: str, shift: float
) -> None:
    c = 4
    row = np.array([math.log(0.999)] + [math.log(0.001 / (c - 1))] * (c - 1)) + shift
    target = np.arange(c)  # row i holds p = 0.999 at class i
    logits, logits64 = _low(backend_name, dtype, np.stack([np.roll(row, i) for i in target]))
    b = LIBRARIES[backend_name]
    _, grad = cross_entropy_value_and_grad(logits, b(target), reduction=reduction)
    assert grad.dtype == b.dtypes[dtype]
    _, grad64 = cross_entropy_value_and_grad(logits64, target, reduction=reduction)
    true_class = to_numpy(grad)[target, target].astype(np.float64)
    expected = grad64[target, target]
    assert np.all(expected < 0)
    rel = np.abs(true_class - expected) / np.abs(expected)
    assert np.all(rel <= LOW_PRECISION_GRAD_RTOL), (true_class, expected, rel)

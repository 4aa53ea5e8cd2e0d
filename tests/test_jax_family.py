"""softmaxkit.jax.family: the family's mappings and losses as ``jax.custom_jvp`` (issue 17).

Oracles: the analytic ``*_jacobian`` / ``*_jvp`` / ``*_loss_value_and_grad`` of :mod:`softmaxkit.family` (run on
NumPy arrays, so that no JAX trace is involved), float64 central differences of the generic functions (for the
log mappings, the class weights and α, which have no closed form in the family), and the issue's numbers.

Time: JAX compiles each operation once per shape and dtype, so the tests share the shape (N, C) = (3, 5).
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import numpy as np
import pytest

from conftest import FD_STEP, fd_atol, seeded_rng, tol

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

import softmaxkit.family as fam  # noqa: E402
from softmaxkit.jax import family as jf  # noqa: E402

N, C = 3, 5

# name -> (options, the family module that holds its derivatives)
MAPPINGS: dict[str, tuple[dict[str, Any], str]] = {
    "sparsemax": ({}, "sparsemax"),
    "entmax15": ({}, "entmax"),
    "entmax_bisect": ({"alpha": 1.3}, "entmax_bisect"),
    "taylor_softmax": ({"order": 4}, "taylor"),
    "log_taylor_softmax": ({}, "taylor"),
    "spherical_softmax": ({}, "spherical"),
    "log_spherical_softmax": ({"eps": 0.5}, "spherical"),
    "sigmoid": ({}, "sigmoid"),
    "log_sigmoid": ({}, "sigmoid"),
    "softplus_normalize": ({}, "softplus_normalize"),
    "log_softplus_normalize": ({}, "softplus_normalize"),
    "normalize": ({}, "normalize"),
}
LOSSES: dict[str, dict[str, Any]] = {
    "sparsemax_loss": {},
    "entmax15_loss": {},
    "entmax_bisect_loss": {"alpha": 1.7},
    "taylor_cross_entropy": {},
    "spherical_cross_entropy": {},
    "sigmoid_cross_entropy": {},
    "softplus_normalize_cross_entropy": {},
    "multiclass_hinge_loss": {"kind": "weston_watkins"},
}


def _logits(*key: object, positive: bool = False) -> np.ndarray:
    z = seeded_rng("jax-family", *key).normal(size=(N, C)) * 2.0
    return np.abs(z) + 0.1 if positive else z


def _analytic_jacobian(name: str, x: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """``J[n, i, j] = d y[n, i] / d x[n, j]`` from the family's own (NumPy) derivatives, column by column."""
    options, module = MAPPINGS[name]
    jvp = getattr(importlib.import_module(f"softmaxkit.family.{module}"), f"{name}_jvp")
    cols = [jvp(x, np.broadcast_to(np.eye(C)[j], x.shape).copy(), where=where, **options) for j in range(C)]
    return np.stack(cols, axis=-1)


def _rowwise(jac: Any) -> np.ndarray:
    """The per-row blocks ``[n, :, n, :]`` of a Jacobian of a (N, C) -> (N, C) function."""
    j = np.asarray(jac)
    return np.stack([j[n, :, n, :] for n in range(j.shape[0])])


def _fd_jacobian(f: Any, x: np.ndarray) -> np.ndarray:
    """Per-row central differences of ``f`` (NumPy in, NumPy out), in float64."""
    out = np.zeros((N, C, C))
    for j in range(C):
        e = np.zeros_like(x)
        e[:, j] = FD_STEP
        out[:, :, j] = (np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * FD_STEP)
    return out


# ------------------------------------------------------------------------------------------------ mappings
@pytest.mark.parametrize("name", MAPPINGS)
def test_jacrev_and_jacfwd_equal_the_analytic_jacobian(name: str) -> None:
    options, _ = MAPPINGS[name]
    x = _logits(name, positive=name == "normalize")
    f = getattr(jf, name)
    want = _analytic_jacobian(name, x)
    for transform in (jax.jacrev, jax.jacfwd):
        got = _rowwise(transform(lambda z: f(z, **options))(jnp.asarray(x)))
        np.testing.assert_allclose(got, want, **tol("float64"), err_msg=transform.__name__)
    generic = getattr(fam, name)
    np.testing.assert_allclose(want, _fd_jacobian(lambda z: generic(z, **options), x), rtol=0, atol=fd_atol(10.0))


@pytest.mark.parametrize("name", MAPPINGS)
def test_values_equal_the_generic_functions(name: str) -> None:
    options, _ = MAPPINGS[name]
    x = _logits(name, "value", positive=name == "normalize")
    got = getattr(jf, name)(jnp.asarray(x), **options)
    np.testing.assert_allclose(np.asarray(got), getattr(fam, name)(x, **options), **tol("float64"))


@pytest.mark.parametrize("name", MAPPINGS)
def test_grad_under_jit_and_vmap(name: str) -> None:
    options, _ = MAPPINGS[name]
    x = _logits(name, "jit", positive=name == "normalize")
    g = seeded_rng("cotangent", name).normal(size=(N, C))
    f = getattr(jf, name)
    got = jax.jit(jax.grad(lambda z: jnp.sum(f(z, **options) * g)))(jnp.asarray(x))
    want = np.einsum("ni,nij->nj", g, _analytic_jacobian(name, x))
    np.testing.assert_allclose(np.asarray(got), want, **tol("float64"))
    mapped = jax.vmap(lambda z: f(z, **options))(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(mapped), np.asarray(f(jnp.asarray(x), **options)), **tol("float64"))
    per_row = jax.vmap(jax.grad(lambda z, c: jnp.sum(f(z, **options) * c)))(jnp.asarray(x), jnp.asarray(g))
    np.testing.assert_allclose(np.asarray(per_row), want, **tol("float64"))


@pytest.mark.parametrize("name", MAPPINGS)
def test_axis_and_where(name: str) -> None:
    options, _ = MAPPINGS[name]
    x = _logits(name, "where", positive=name == "normalize")
    keep = np.ones((N, C), dtype=bool)
    keep[0, 1] = keep[2, 4] = False
    f = getattr(jf, name)
    got = jax.jacrev(lambda z: f(z.T, axis=0, where=jnp.asarray(keep.T), **options).T)(jnp.asarray(x))
    np.testing.assert_allclose(_rowwise(got), _analytic_jacobian(name, x, keep), **tol("float64"))
    assert not np.any(_rowwise(got)[0, :, 1])
    assert not np.any(_rowwise(got)[0, 1, :])


# ------------------------------------------------------------------------------------------------ losses
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", LOSSES)
def test_loss_grad_equals_value_and_grad(name: str, reduction: str) -> None:
    options = dict(LOSSES[name], reduction=reduction, ignore_index=-1)
    x = _logits(name, reduction)
    y = np.array([1, -1, 4])  # one ignored row
    w = np.array([1.0, 2.0, 0.5, 3.0, 0.25])
    f = getattr(jf, name)
    value, grad = getattr(fam, f"{name}_value_and_grad")(x, y, weight=w, **options)
    got_value = f(jnp.asarray(x), jnp.asarray(y), weight=jnp.asarray(w), **options)
    np.testing.assert_allclose(np.asarray(got_value), value, **tol("float64"))
    summed = jax.jit(jax.grad(lambda z: jnp.sum(f(z, jnp.asarray(y), weight=jnp.asarray(w), **options))))
    np.testing.assert_allclose(np.asarray(summed(jnp.asarray(x))), grad, **tol("float64"))
    if reduction == "none":  # forward mode: one row's loss depends on its own logits only
        jac = jax.jacfwd(lambda z: f(z, jnp.asarray(y), weight=jnp.asarray(w), **options))(jnp.asarray(x))
        np.testing.assert_allclose(np.asarray(jac).sum(axis=0), grad, **tol("float64"))


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("name", LOSSES)
def test_loss_weight_gradient_against_finite_differences(name: str, reduction: str) -> None:
    options = dict(LOSSES[name], reduction=reduction)
    x = _logits(name, "weight")
    y = np.array([1, 0, 1])
    w = np.array([1.0, 2.0, 0.5, 3.0, 0.25])
    f = getattr(jf, name)
    got = jax.grad(lambda v: jnp.sum(f(jnp.asarray(x), jnp.asarray(y), weight=v, **options)))(jnp.asarray(w))
    generic = getattr(fam, name)
    fd = [
        (np.sum(generic(x, y, weight=w + e, **options)) - np.sum(generic(x, y, weight=w - e, **options)))
        / (2 * FD_STEP)
        for e in np.eye(C) * FD_STEP
    ]
    np.testing.assert_allclose(np.asarray(got), fd, rtol=0, atol=fd_atol(10.0))
    assert got[2] == 0.0
    assert got[3] == 0.0
    assert got[4] == 0.0


# ------------------------------------------------------------------------------------ half precision
HALF_INPUTS = [
    [3.0, -2.0, 0.5, 1e4, -1e4],
    [-300.0, -301.0, -299.0, -305.0, -310.0],
    [0.0, 0.0, 0.0, 0.0, 0.0],
]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("name", [*MAPPINGS, *LOSSES])
def test_half_precision_computed_in_float32_without_nan(name: str, dtype: str) -> None:
    loss = name in LOSSES
    options = LOSSES[name] if loss else MAPPINGS[name][0]
    rows = np.abs(np.array(HALF_INPUTS)) + 0.5 if name == "normalize" else np.array(HALF_INPUTS)
    x = jnp.asarray(rows, dtype=getattr(jnp, dtype))
    y = jnp.asarray([0, 2, 4])
    f = getattr(jf, name)

    def call(z: Any) -> Any:
        return f(z, y, **options) if loss else f(z, **options)

    out = call(x)
    grad = jax.grad(lambda z: jnp.sum(call(z).astype(jnp.float32)))(x)
    assert out.dtype == x.dtype
    assert grad.dtype == x.dtype
    assert not np.any(np.isnan(np.asarray(out, dtype=np.float32)))
    assert not np.any(np.isnan(np.asarray(grad, dtype=np.float32)))
    want = call(x.astype(jnp.float32))  # what the float32 computation gives, rounded once
    np.testing.assert_allclose(
        np.asarray(out, dtype=np.float32), np.asarray(want.astype(x.dtype), dtype=np.float32), rtol=0, atol=0
    )


# -------------------------------------------------------------------------------------- learnable alpha
@pytest.mark.parametrize("alpha", [1.25, 1.5, 2.0, 2.6])
def test_entmax_bisect_array_alpha_gradients(alpha: float) -> None:
    x = _logits("alpha", alpha)
    g = seeded_rng("alpha cotangent", alpha).normal(size=(N, C))
    a = jnp.asarray(alpha)
    p = jf.entmax_bisect(jnp.asarray(x), alpha=a)
    np.testing.assert_allclose(np.asarray(p), fam.entmax_bisect(x, alpha=alpha), **tol("float64"))
    np.testing.assert_allclose(
        _rowwise(jax.jacrev(lambda z: jf.entmax_bisect(z, alpha=a))(jnp.asarray(x))),
        fam.entmax_bisect_jacobian(x, alpha=alpha),
        **tol("float64"),
    )
    h = FD_STEP
    fd = np.sum(g * (fam.entmax_bisect(x, alpha=alpha + h) - fam.entmax_bisect(x, alpha=alpha - h))) / (2 * h)
    for transform in (jax.grad, lambda f: lambda v: jax.jvp(f, (v,), (jnp.ones_like(v),))[1]):
        got = transform(lambda v: jnp.sum(jf.entmax_bisect(jnp.asarray(x), alpha=v) * g))(a)
        assert abs(float(got) - fd) <= fd_atol(10.0)


def test_entmax_bisect_alpha_per_row_under_jit() -> None:
    x = _logits("alpha rows")
    alphas = np.array([[1.2], [1.5], [3.0]])
    g = seeded_rng("alpha rows cotangent").normal(size=(N, C))
    got = jax.jit(jax.grad(lambda v: jnp.sum(jf.entmax_bisect(jnp.asarray(x), alpha=v) * g)))(jnp.asarray(alphas))
    assert got.shape == (N, 1)
    for n, a in enumerate(alphas[:, 0]):
        up, down = fam.entmax_bisect(x[n], alpha=a + FD_STEP), fam.entmax_bisect(x[n], alpha=a - FD_STEP)
        assert abs(float(got[n, 0]) - np.sum(g[n] * (up - down)) / (2 * FD_STEP)) <= fd_atol(10.0)
    # the class axis elsewhere: alpha has length 1 along it
    moved = jf.entmax_bisect(jnp.asarray(x.T), alpha=jnp.asarray(alphas.T), axis=0)
    np.testing.assert_allclose(np.asarray(moved).T, np.asarray(jf.entmax_bisect(jnp.asarray(x), alpha=alphas)))


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_entmax_bisect_loss_array_alpha_gradient(reduction: str) -> None:
    x = _logits("loss alpha", reduction)
    y = np.array([1, 0, 3])
    w = np.array([1.0, 2.0, 0.5, 3.0, 0.25])
    alpha = 1.6

    def loss(z: Any, v: Any, ww: Any) -> Any:
        return jnp.sum(jf.entmax_bisect_loss(z, jnp.asarray(y), alpha=v, weight=ww, reduction=reduction))

    value = loss(jnp.asarray(x), jnp.asarray(alpha), jnp.asarray(w))
    want = np.sum(fam.entmax_bisect_loss(x, y, alpha=alpha, weight=w, reduction=reduction))
    np.testing.assert_allclose(float(value), want, **tol("float64"))
    gz, ga, gw = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(jnp.asarray(x), jnp.asarray(alpha), jnp.asarray(w))
    _, grad = fam.entmax_bisect_loss_value_and_grad(x, y, alpha=alpha, weight=w, reduction=reduction)
    np.testing.assert_allclose(np.asarray(gz), grad, **tol("float64"))
    up = np.sum(fam.entmax_bisect_loss(x, y, alpha=alpha + FD_STEP, weight=w, reduction=reduction))
    down = np.sum(fam.entmax_bisect_loss(x, y, alpha=alpha - FD_STEP, weight=w, reduction=reduction))
    assert abs(float(ga) - (up - down) / (2 * FD_STEP)) <= fd_atol(10.0)
    gw_float = jax.grad(lambda ww: loss(jnp.asarray(x), alpha, ww))(jnp.asarray(w))  # the float-alpha path
    np.testing.assert_allclose(np.asarray(gw), np.asarray(gw_float), **tol("float64"))


def test_entmax_bisect_array_alpha_is_checked() -> None:
    x = jnp.asarray(_logits("alpha errors"))
    with pytest.raises(ValueError, match="alpha"):
        jf.entmax_bisect(x, alpha=jnp.asarray(1.0))
    with pytest.raises(ValueError, match="alpha"):
        jf.entmax_bisect(x, alpha=jnp.asarray([1.5, 1.5]))  # not one per row
    with pytest.raises(ValueError, match="alpha"):
        jf.entmax_bisect_loss(x, jnp.asarray([0, 1, 2]), alpha=jnp.asarray([1.5, 1.5, 1.5]))
    with pytest.raises(TypeError, match="alpha"):
        jf.entmax_bisect(x, alpha=jnp.asarray(2))
    with pytest.raises(ValueError, match="alpha"):
        fam.entmax_bisect(np.asarray(x), alpha=0.5)  # the float path: the family's own check


# ---------------------------------------------------------------------------------- the bugs
def test_entmax_bisect_jax_grad_was_027_off() -> None:
    """Issue 17: jax.grad of entmax_bisect(x, alpha=1.5)[1] at x = [0.5, 1.0, -0.2, 0.9] differed from the
    analytic VJP (and from finite differences) by up to 0.27: autodiff through the bisection."""
    x = np.array([0.5, 1.0, -0.2, 0.9])
    got = jax.grad(lambda z: jf.entmax_bisect(z, alpha=1.5)[1])(jnp.asarray(x))
    want = fam.entmax_bisect_vjp(x, np.array([0.0, 1.0, 0.0, 0.0]), alpha=1.5)
    np.testing.assert_allclose(np.asarray(got), want, **tol("float64"))
    fd = [
        (fam.entmax_bisect(x + e, alpha=1.5)[1] - fam.entmax_bisect(x - e, alpha=1.5)[1]) / (2 * FD_STEP)
        for e in np.eye(4) * FD_STEP
    ]
    np.testing.assert_allclose(want, fd, rtol=0, atol=fd_atol(1.0))


@pytest.mark.parametrize("alpha", [1.2, 1.5])
def test_entmax_bisect_loss_autodiff_gradient_was_nan(alpha: float) -> None:
    """Issue 17: jax.grad of entmax_bisect_loss was nan once a class had p = 0 (0 * inf in the entropy's trace)."""
    x = np.array([[0.5, 1.0, -5.2, 0.9]])
    got = jax.grad(lambda z: jf.entmax_bisect_loss(z, jnp.asarray([1]), alpha=alpha))(jnp.asarray(x))
    _, want = fam.entmax_bisect_loss_value_and_grad(x, np.array([1]), alpha=alpha)
    assert want[0, 2] == 0.0
    np.testing.assert_allclose(np.asarray(got), want, **tol("float64"))


def test_log_sigmoid_grad_at_zero_is_one_half() -> None:
    # autodiff of max(t, 0) + log1p(exp(-|t|)) at t = 0 gave 1
    got = jax.grad(lambda z: jnp.sum(jf.log_sigmoid(z)))(jnp.asarray([0.0, -800.0, 800.0]))
    np.testing.assert_allclose(np.asarray(got), [0.5, 1.0, 0.0], rtol=0, atol=1e-300)


def test_log_softplus_normalize_jacobian_at_a_zero_logit() -> None:
    # autodiff of the generic code chose a branch at z = 0 and lost the column of the zero logit
    x = np.array([[100.0, -100.0, 0.0, 3.0, 1.0]])
    got = _rowwise(jax.jacrev(jf.log_softplus_normalize)(jnp.asarray(x)))
    want = fam.softplus_normalize_jacobian(x) / fam.softplus_normalize(x)[..., None]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)
    assert got[0, 0, 2] < 0


NEAR_MAX = np.array([[3e38, -3e38, 0.0, 1.0, -1.0]], dtype=np.float32)


@pytest.mark.parametrize("name", [*(m for m in MAPPINGS if m != "normalize"), *LOSSES])  # scores >= 0
def test_float32_near_its_max_under_debug_nans(name: str) -> None:
    """Issue 16 leftovers: entmax15 (inf - inf in the candidates' spread), log_softplus_normalize and
    softplus_normalize (1/m flushed to 0 by XLA: the row was 0/0, nan without debug_nans too), the Fenchel-Young
    losses (0 * -inf) formed a nan near ±3e38; derivatives kept a nan constant as a residual of jax.grad."""
    loss = name in LOSSES
    options = LOSSES[name] if loss else MAPPINGS[name][0]
    f = getattr(jf, name)

    def call(z: Any) -> Any:
        return f(z, jnp.asarray([3]), **options) if loss else f(z, **options)

    with jax.debug_nans(True):
        out = jax.block_until_ready(call(jnp.asarray(NEAR_MAX)))
        grad = jax.block_until_ready(jax.grad(lambda z: jnp.sum(call(z)))(jnp.asarray(NEAR_MAX)))
    assert not np.any(np.isnan(np.asarray(out)))
    assert not np.any(np.isnan(np.asarray(grad)))


def test_softplus_normalize_near_float32_max_was_nan() -> None:
    got = fam.softplus_normalize(jnp.asarray(NEAR_MAX))
    np.testing.assert_allclose(np.asarray(got), [[1.0, 0.0, 0.0, 0.0, 0.0]], rtol=0, atol=1e-37)
    lp = fam.log_softplus_normalize(jnp.asarray(NEAR_MAX))
    assert float(lp[0, 0]) == 0.0
    assert math.isfinite(float(lp[0, 2]))


@pytest.mark.parametrize("name", ["sparsemax", "entmax15", "taylor_softmax", "softplus_normalize"])
def test_bad_rows_keep_nan_derivatives(name: str) -> None:
    x = _logits("bad", name)
    x[1, 2] = np.nan
    options, _ = MAPPINGS[name]
    got = jax.grad(lambda z: jnp.sum(getattr(jf, name)(z, **options) * jnp.arange(C)))(jnp.asarray(x))
    assert np.all(np.isnan(np.asarray(got)[1]))
    assert not np.any(np.isnan(np.asarray(got)[[0, 2]]))


def test_integer_input_promotes() -> None:
    got = jf.sparsemax(jnp.asarray([[2, 1, 0]]))
    assert jnp.issubdtype(got.dtype, jnp.floating)
    np.testing.assert_allclose(np.asarray(got), [[1.0, 0.0, 0.0]])


@pytest.mark.parametrize(
    ("name", "mapping"), [("sparsemax_loss", "sparsemax"), ("entmax_bisect_loss", "entmax_bisect")]
)
def test_fenchel_young_hessian_is_the_mappings_jacobian(name: str, mapping: str) -> None:
    """The gradient p - e_y differentiated again by the mapping's analytic derivative (not through the bisection):
    jax.hessian of the summed loss is each row's weight times the mapping's Jacobian."""
    x = _logits("hessian", name)
    y = np.array([1, 0, 3])
    w = np.array([1.0, 2.0, 0.5, 3.0, 0.25])
    hess = jax.hessian(lambda z: getattr(jf, name)(z, jnp.asarray(y), weight=jnp.asarray(w), reduction="sum"))
    got = _rowwise(hess(jnp.asarray(x)))
    want = w[y][:, None, None] * getattr(fam, f"{mapping}_jacobian")(x)
    np.testing.assert_allclose(got, want, **tol("float64"))
    if mapping == "entmax_bisect":  # and d/d alpha of the gradient, against central differences of the closed form

        def grad_at(a: Any) -> Any:
            return jax.grad(lambda z: jf.entmax_bisect_loss(z, jnp.asarray(y), alpha=a, reduction="sum"))(
                jnp.asarray(x)
            )

        mixed = jax.jacfwd(grad_at)(jnp.asarray(1.5))
        up = fam.entmax_bisect_loss_value_and_grad(x, y, alpha=1.5 + FD_STEP, reduction="sum")[1]
        down = fam.entmax_bisect_loss_value_and_grad(x, y, alpha=1.5 - FD_STEP, reduction="sum")[1]
        np.testing.assert_allclose(np.asarray(mixed), (up - down) / (2 * FD_STEP), rtol=0, atol=fd_atol(10.0))

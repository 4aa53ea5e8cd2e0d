"""sparsemax, entmax15 and entmax_bisect: values, derivatives, Fenchel–Young losses, special values, properties.

Oracles:

* the ``entmax`` package (PyTorch only): its mappings and their autograd (``torch.autograd.functional``, since
  its old-style autograd Functions do not run under ``torch.func``), and its losses ``SparsemaxLoss``,
  ``Entmax15Loss``, ``EntmaxBisectLoss``. Its losses use the same constant as ours (the Tsallis entropy
  :math:`H_\\alpha(p^\\star) \\ge 0`, so the loss is ``>= 0``), its mean divides by the number of rows not
  ignored, its ``ignore_index`` only acts when it is ``>= 0``, and it has no class weights (those are checked
  against NumPy);
* an independent JAX implementation differentiated by ``jax.jacrev`` / ``jax.grad``: τ by a 200-step bisection,
  then one Newton step on the fixed support, whose derivative is exactly the implicit-function derivative;
* central finite differences of our own functions, in float64, at points away from a change of support;
* Michelot's (1986) projection onto the simplex and the projection's variational inequality, for sparsemax.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import entmax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import softmaxkit as sk
from conftest import EPS, FD_STEP, ArrayLibrary, assert_nothing_to_average, fd_atol, seeded_rng, to_numpy, tol
from softmaxkit.family.entmax import (
    entmax15,
    entmax15_jacobian,
    entmax15_jvp,
    entmax15_loss,
    entmax15_loss_value_and_grad,
    entmax15_vjp,
)
from softmaxkit.family.entmax_bisect import (
    entmax_bisect,
    entmax_bisect_jacobian,
    entmax_bisect_jvp,
    entmax_bisect_loss,
    entmax_bisect_loss_value_and_grad,
    entmax_bisect_vjp,
)
from softmaxkit.family.sparsemax import (
    sparsemax,
    sparsemax_jacobian,
    sparsemax_jvp,
    sparsemax_loss,
    sparsemax_loss_value_and_grad,
    sparsemax_vjp,
)
from softmaxkit.softmax import softmax_jacobian, softmax_vjp

INF, NAN = math.inf, math.nan
DTYPES = ["float64", "float32"]

# The bar for agreeing with the entmax package: |ours - theirs| <= TOL * (1 + |theirs|).
PACKAGE_TOL = {"float64": 1e-12, "float32": 1e-6}




def assert_package_close(ours: Any, theirs: Any, dtype: str) -> None:
    t = PACKAGE_TOL[dtype]
    np.testing.assert_allclose(np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64), rtol=t, atol=t)


# --------------------------------------------------------------------------------------------- the members
@dataclass(frozen=True)
class Member:
    """One mapping of the family with everything that goes with it."""

    name: str
    alpha: float
    mapping: Callable[..., Any]
    jvp: Callable[..., Any]
    vjp: Callable[..., Any]
    jacobian: Callable[..., Any]
    loss: Callable[..., Any]
    loss_vg: Callable[..., Any]
    kw: dict[str, Any] = field(default_factory=dict)  # alpha for entmax_bisect

    def package(self, t: torch.Tensor, dim: int) -> torch.Tensor:
        if self.mapping is sparsemax:
            return entmax.sparsemax(t, dim=dim)
        if self.mapping is entmax15:
            return entmax.entmax15(t, dim=dim)
        return entmax.entmax_bisect(t, alpha=self.alpha, dim=dim)

    def package_loss(self, **kw: Any) -> torch.nn.Module:
        if self.mapping is sparsemax:
            return entmax.SparsemaxLoss(**kw)
        if self.mapping is entmax15:
            return entmax.Entmax15Loss(**kw)
        return entmax.EntmaxBisectLoss(alpha=self.alpha, **kw)

    def __repr__(self) -> str:
        return self.name


def _bisect_member(alpha: float) -> Member:
    return Member(
        f"entmax_bisect{alpha:g}",
        alpha,
        entmax_bisect,
        entmax_bisect_jvp,
        entmax_bisect_vjp,
        entmax_bisect_jacobian,
        entmax_bisect_loss,
        entmax_bisect_loss_value_and_grad,
        {"alpha": alpha},
    )


MEMBERS = {
    m.name: m
    for m in [
        Member(
            "sparsemax",
            2.0,
            sparsemax,
            sparsemax_jvp,
            sparsemax_vjp,
            sparsemax_jacobian,
            sparsemax_loss,
            sparsemax_loss_value_and_grad,
        ),
        Member(
            "entmax15",
            1.5,
            entmax15,
            entmax15_jvp,
            entmax15_vjp,
            entmax15_jacobian,
            entmax15_loss,
            entmax15_loss_value_and_grad,
        ),
        _bisect_member(1.25),
        _bisect_member(2.0),
    ]
}
MEMBER_PARAMS = [pytest.param(m, id=m.name) for m in MEMBERS.values()]
SHAPE_AXES = [pytest.param((6, 7), -1, id="6x7-axis-1"), pytest.param((3, 5, 4), 1, id="3x5x4-axis1")]


def to_rows(a: np.ndarray, axis: int) -> np.ndarray:
    """Class axis last, batch flattened: (n, K)."""
    a = np.moveaxis(a, axis, -1)
    return a.reshape(-1, a.shape[-1])


@functools.cache
def problem(shape: tuple[int, ...], axis: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Logits with a sparse answer (spread 3 per unit) and a tangent."""
    rng = seeded_rng("problem", shape, axis)
    x, v = (3.0 * rng.standard_normal(shape)).astype(dtype), rng.standard_normal(shape).astype(dtype)
    x.flags.writeable = v.flags.writeable = False
    return x, v


@functools.cache
def package_jacobians(name: str, shape: tuple[int, ...], axis: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """The package's p and per-row Jacobians (n, K, K) by torch autograd through its custom backward."""
    member = MEMBERS[name]
    rows = to_rows(problem(shape, axis, dtype)[0], axis)
    p = member.package(torch.asarray(rows.copy()), -1).numpy()
    jac = [
        torch.autograd.functional.jacobian(lambda t: member.package(t[None], -1)[0], torch.asarray(r.copy())).numpy()
        for r in rows
    ]
    return p, np.stack(jac)


# ------------------------------------------------------------------------------- values and derivatives
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("shape", "axis"), SHAPE_AXES)
@pytest.mark.parametrize("member", MEMBER_PARAMS)
def test_values_and_derivatives_match_the_entmax_package(member, shape, axis, dtype):
    x, v = problem(shape, axis, dtype)
    p_ref, jac_ref = package_jacobians(member.name, shape, axis, dtype)
    p = member.mapping(x, axis=axis, **member.kw)
    assert p.dtype == x.dtype
    assert_package_close(to_rows(p, axis), p_ref, dtype)
    v_rows = to_rows(v, axis).astype(np.float64)
    jvp, vjp = member.jvp(x, v, axis=axis, **member.kw), member.vjp(x, v, axis=axis, **member.kw)
    assert_package_close(to_rows(jvp, axis), np.einsum("nij,nj->ni", jac_ref, v_rows), dtype)
    assert_package_close(to_rows(vjp, axis), np.einsum("nij,ni->nj", jac_ref, v_rows), dtype)
    jac = member.jacobian(x, axis=axis, **member.kw)
    assert jac.shape == (*(s for i, s in enumerate(shape) if i != axis % len(shape)), shape[axis], shape[axis])
    assert_package_close(jac.reshape(jac_ref.shape), jac_ref, dtype)


def test_sparsemax_gives_exact_zeros_and_rows_summing_to_one():
    x, _ = problem((6, 7), -1, "float64")
    p = sparsemax(x)
    assert np.all(np.sum(p == 0, axis=-1) >= 1)  # spread 3: every row leaves some class out, exactly
    np.testing.assert_array_equal(p == 0, entmax.sparsemax(torch.asarray(x.copy()), dim=-1).numpy() == 0)
    np.testing.assert_allclose(np.sum(p, axis=-1), 1.0, rtol=0, atol=8 * EPS["float64"])


def test_bisection_agrees_with_the_exact_sorts():
    x, _ = problem((6, 7), -1, "float64")
    np.testing.assert_allclose(entmax_bisect(x, alpha=2.0), sparsemax(x), rtol=0, atol=1e-15)
    np.testing.assert_allclose(entmax_bisect(x, alpha=1.5), entmax15(x), rtol=0, atol=1e-15)


@functools.partial(jax.jit, static_argnums=0)
def _jax_oracle(alpha: float, rows: jax.Array) -> tuple[jax.Array, jax.Array]:
    """p and its Jacobian for each row, by jax.jacrev of an independent α-entmax (see the module notes)."""
    beta = 1.0 / (alpha - 1.0)

    def tau_by_bisection(w: jax.Array) -> jax.Array:
        def step(_: int, bracket: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            lo, hi = bracket
            mid = (lo + hi) / 2
            right = jnp.sum(jnp.maximum(w - mid, 0.0) ** beta) >= 1.0
            return jnp.where(right, mid, lo), jnp.where(right, hi, mid)

        return jax.lax.fori_loop(0, 200, step, (jnp.asarray(-1.0), jnp.asarray(0.0)))[0]

    def p_of(z: jax.Array) -> jax.Array:
        w = (alpha - 1.0) * (z - jax.lax.stop_gradient(jnp.max(z)))
        t0 = jax.lax.stop_gradient(tau_by_bisection(w))
        on = w > t0
        gap = jnp.where(on, w - t0, 1.0)
        f = jnp.sum(jnp.where(on, gap**beta, 0.0)) - 1.0
        df = -beta * jnp.sum(jnp.where(on, gap ** (beta - 1.0), 0.0))
        tau = t0 - f / df  # one Newton step from the root: d tau / dz is the implicit derivative
        return jnp.where(on, jnp.where(on, w - tau, 1.0) ** beta, 0.0)

    return jax.vmap(p_of)(rows), jax.vmap(jax.jacrev(p_of))(rows)


def fd_jacobian(f: Callable[[np.ndarray], np.ndarray], rows: np.ndarray) -> np.ndarray:
    cols = []
    for j in range(rows.shape[-1]):
        e = np.zeros_like(rows)
        e[:, j] = FD_STEP
        up, down = f(rows + e), f(rows - e)
        assert np.array_equal(up > 0, down > 0), "the step crosses a change of support"
        cols.append((up - down) / (2 * FD_STEP))
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("member", MEMBER_PARAMS)
def test_jacobian_matches_jax_jacrev_and_finite_differences(member):
    x, v = problem((6, 7), -1, "float64")
    p_ref, jac_ref = (np.asarray(a) for a in _jax_oracle(member.alpha, jnp.asarray(x)))
    np.testing.assert_allclose(member.mapping(x, **member.kw), p_ref, rtol=0, atol=1e-13)
    jac = member.jacobian(x, **member.kw)
    np.testing.assert_allclose(jac, jac_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(member.vjp(x, v, **member.kw), np.einsum("nij,ni->nj", jac_ref, v), rtol=0, atol=1e-12)
    fd = fd_jacobian(lambda a: member.mapping(a, **member.kw), x)
    np.testing.assert_allclose(jac, fd, rtol=0, atol=fd_atol(1.0))
    product_atol = fd_atol(1.0) * x.shape[-1] * float(np.max(np.abs(v)))  # K entries of J times v
    np.testing.assert_allclose(member.jvp(x, v, **member.kw), np.einsum("nij,nj->ni", fd, v), rtol=0, atol=product_atol)


def test_alpha_one_is_softmax_and_cross_entropy():
    x, v = problem((6, 7), -1, "float64")
    y = np.arange(6) % 7
    np.testing.assert_allclose(entmax_bisect(x, alpha=1.0), sk.softmax(x), **tol("float64"))
    np.testing.assert_allclose(entmax_bisect_jacobian(x, alpha=1.0), softmax_jacobian(x), **tol("float64"))
    np.testing.assert_allclose(entmax_bisect_vjp(x, v, alpha=1.0), softmax_vjp(x, v), **tol("float64"))
    loss, grad = entmax_bisect_loss_value_and_grad(x, y, alpha=1.0)
    ce, ce_grad = sk.cross_entropy_value_and_grad(x, y)
    np.testing.assert_allclose(loss, ce, **tol("float64"))
    np.testing.assert_allclose(grad, ce_grad, **tol("float64"))
    # and the family is continuous in alpha at 1
    np.testing.assert_allclose(entmax_bisect(x, alpha=1.0 + 1e-6), sk.softmax(x), rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------------- losses
N, C, IGNORE = 8, 7, 2  # rows with target IGNORE (a valid class) are skipped


@functools.cache
def loss_problem(dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = seeded_rng("loss", dtype)
    z = (2.0 * rng.standard_normal((N, C))).astype(dtype)
    y = np.array([0, 1, 2, 3, 4, 2, 1, 0])
    z[7] = [9.0, 0.0, 0.0, -1.0, 0.0, 1.0, 5.0]  # leads by 4 >= 1/(alpha - 1): loss exactly 0
    w = np.array([1.0, 0.5, 3.0, 0.0, 2.0, 1.0, 1.0], dtype=dtype)
    for a in (z, y, w):
        a.flags.writeable = False
    return z, y, w


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("member", MEMBER_PARAMS)
def test_loss_and_gradient_match_the_entmax_package(member, dtype, reduction):
    z, y, _ = loss_problem(dtype)
    theirs = member.package_loss(
        ignore_index=IGNORE, reduction="elementwise_mean" if reduction == "mean" else reduction
    )
    t = torch.asarray(z.copy(), requires_grad=True)
    ref = theirs(t, torch.asarray(y.copy()))
    ref.sum().backward()
    assert t.grad is not None
    kw = {**member.kw, "ignore_index": IGNORE, "reduction": reduction}
    loss, grad = member.loss_vg(z, y, **kw)
    assert loss.dtype == grad.dtype == z.dtype
    assert_package_close(loss, ref.detach().numpy(), dtype)
    assert_package_close(grad, t.grad.numpy(), dtype)
    np.testing.assert_array_equal(member.loss(z, y, **kw), loss)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("member", MEMBER_PARAMS)
def test_weight_ignore_index_and_reduction_follow_cross_entropy(member, reduction):
    """Against NumPy: w_y * row loss, 0 for ignored rows, mean divided by the total weight of kept rows."""
    z, y, w = loss_problem("float64")
    rows = member.loss(z, y, reduction="none", **member.kw)  # unweighted, nothing ignored
    p = member.mapping(z, **member.kw)
    kept = y != IGNORE
    w_y = np.where(kept, w[y], 0.0)
    denom = w_y.sum() if reduction == "mean" else 1.0
    expected = {"none": w_y * rows, "sum": np.sum(w_y * rows), "mean": np.sum(w_y * rows) / w_y.sum()}[reduction]
    expected_grad = w_y[:, None] * (p - np.eye(C)[y]) / denom
    loss, grad = member.loss_vg(z, y, weight=w, ignore_index=IGNORE, reduction=reduction, **member.kw)
    np.testing.assert_allclose(loss, expected, **tol("float64"))
    np.testing.assert_allclose(grad, expected_grad, **tol("float64"))
    assert rows[7] == 0  # the confident correct row


@pytest.mark.parametrize("member", MEMBER_PARAMS)
def test_loss_gradient_matches_jax_grad_and_finite_differences(member):
    z, y, w = loss_problem("float64")
    z, y = z[:6], y[:6]  # away from the kink of the row whose loss is exactly 0; the shape of problem()
    onehot = np.eye(C)[y]

    def jax_loss(a: jax.Array) -> jax.Array:  # the Fenchel–Young loss of the independent JAX mapping
        p = _jax_oracle(member.alpha, a)[0]
        ent = jnp.sum(p - p**member.alpha) / (member.alpha * (member.alpha - 1.0))
        return ent + jnp.sum((p - onehot) * a)

    _, grad = member.loss_vg(z, y, reduction="sum", **member.kw)
    np.testing.assert_allclose(member.loss(z, y, reduction="sum", **member.kw), jax_loss(jnp.asarray(z)), rtol=1e-12)
    np.testing.assert_allclose(grad, jax.grad(jax_loss)(jnp.asarray(z)), rtol=0, atol=1e-12)

    def loss_of(a: np.ndarray) -> float:
        return float(member.loss(a, y, weight=w, reduction="mean", **member.kw))

    fd = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        e = np.zeros_like(z)
        e[idx] = FD_STEP
        fd[idx] = (loss_of(z + e) - loss_of(z - e)) / (2 * FD_STEP)
    _, grad = member.loss_vg(z, y, weight=w, reduction="mean", **member.kw)
    np.testing.assert_allclose(grad, fd, rtol=0, atol=fd_atol(10.0))


def test_sparsemax_loss_constants():
    """0 at a confident correct prediction, 1/4 for two tied classes, and never below 0."""
    y = np.array([0])
    assert float(sparsemax_loss(np.array([[1.0, 0.0]]), y)) == 0.0
    assert float(sparsemax_loss(np.array([[0.0, 0.0]]), y)) == 0.25
    assert float(entmax15_loss(np.array([[2.0, 0.0]]), y)) == 0.0
    assert float(entmax_bisect_loss(np.array([[4.0, 0.0]]), y, alpha=1.25)) == 0.0
    _, grad = sparsemax_loss_value_and_grad(np.array([[1.0, 0.0]]), y)
    np.testing.assert_array_equal(grad, [[0.0, 0.0]])


# ------------------------------------------------------------------------------------------------ backends
@pytest.mark.parametrize("member", MEMBER_PARAMS)
def test_every_backend_gives_numpys_values(xp: ArrayLibrary, member):
    x, v = problem((3, 5, 4), 1, "float64")
    kw = {"axis": 1, **member.kw}
    xb, vb = xp(x), xp(v)
    for f, args in [(member.mapping, (xb,)), (member.jvp, (xb, vb)), (member.vjp, (xb, vb)), (member.jacobian, (xb,))]:
        out = f(*args, **kw)
        assert type(out) is type(xb)
        np.testing.assert_allclose(to_numpy(out), f(*((x,) if len(args) == 1 else (x, v)), **kw), **tol("float64"))
    z, y, w = loss_problem("float64")
    loss, grad = member.loss_vg(xp(z), xp(y), weight=xp(w), ignore_index=IGNORE, **member.kw)
    ref_loss, ref_grad = member.loss_vg(z, y, weight=w, ignore_index=IGNORE, **member.kw)
    np.testing.assert_allclose(to_numpy(loss), ref_loss, **tol("float64"))
    np.testing.assert_allclose(to_numpy(grad), ref_grad, **tol("float64"))
    keep = np.array([True, False, True, True])
    masked = to_numpy(member.mapping(xp(x[0]), where=xp(keep), **member.kw))
    np.testing.assert_allclose(masked, member.mapping(np.where(keep, x[0], -INF), **member.kw), **tol("float64"))


@pytest.mark.parametrize("name", ["sparsemax", "entmax15"])
def test_jax_jit(name):
    member = MEMBERS[name]
    x, _ = problem((6, 7), -1, "float64")
    z, y, _ = loss_problem("float64")
    jitted = jax.jit(lambda a: member.mapping(a, **member.kw))(jnp.asarray(x))
    np.testing.assert_allclose(jitted, member.mapping(x, **member.kw), **tol("float64"))
    _, grad = jax.jit(lambda a, b: member.loss_vg(a, b, **member.kw))(jnp.asarray(z), jnp.asarray(y))
    np.testing.assert_allclose(grad, member.loss_vg(z, y, **member.kw)[1], **tol("float64"))


def test_jax_jit_bisection():
    """The bisection is a Python loop of array operations: it traces (unrolled) under jax.jit."""
    x, _ = problem((6, 7), -1, "float64")
    jitted = jax.jit(lambda a: entmax_bisect(a, alpha=1.25, n_iter=40))(jnp.asarray(x))
    np.testing.assert_allclose(jitted, entmax_bisect(x, alpha=1.25, n_iter=40), **tol("float64"))


# ------------------------------------------------------------------------------------------ special values
@pytest.mark.parametrize("member", MEMBER_PARAMS)
def test_special_value_table(xp: ArrayLibrary, member):
    x = xp(
        [
            [1.0, -INF, 0.5, -1.0],  # masked entry
            [-INF, -INF, -INF, -INF],  # fully masked
            [1.0, NAN, 0.0, 0.0],  # nan
            [1.0, INF, 0.0, 0.0],  # +inf
            [0.0, 0.0, 0.0, 0.0],  # uniform
        ]
    )
    p = to_numpy(member.mapping(x, **member.kw))
    assert p[0, 1] == 0.0
    np.testing.assert_allclose(
        p[0], member.mapping(np.array([1.0, 0.5, -1.0]), **member.kw)[[0, 0, 1, 2]] * [1, 0, 1, 1]
    )
    np.testing.assert_array_equal(p[1], 0.0)
    assert np.all(np.isnan(p[2]))
    assert np.all(np.isnan(p[3]))
    np.testing.assert_allclose(p[4], 0.25, **tol("float64"))
    for out in (
        to_numpy(member.vjp(x, xp(np.ones((5, 4))), **member.kw)),
        to_numpy(member.jacobian(x, **member.kw)),
    ):
        assert np.all(out[0][..., 1] == 0)
        assert np.all(out[1] == 0)
        assert np.all(np.isnan(out[2]))
        assert np.all(np.isnan(out[3]))
    empty = member.mapping(xp(np.zeros((3, 0))), **member.kw)
    assert tuple(empty.shape) == (3, 0)
    assert tuple(member.jacobian(xp(np.zeros((3, 0))), **member.kw).shape) == (3, 0, 0)


@pytest.mark.parametrize("member", MEMBER_PARAMS)
def test_loss_special_values(member):
    z = np.array([[0.0, -INF, 1.0], [NAN, 0.0, 0.0], [-INF, -INF, -INF], [NAN, 1.0, 2.0]])
    y = np.array([1, 0, 2, -100])
    loss, grad = member.loss_vg(z, y, reduction="none", **member.kw)
    p0 = member.mapping(z[0], **member.kw)
    assert loss[0] == INF  # the target's logit is -inf
    np.testing.assert_array_equal(grad[0], p0 - [0.0, 1.0, 0.0])
    assert np.isnan(loss[1])
    assert np.all(np.isnan(grad[1]))
    assert loss[2] == INF  # nothing left to predict: the target is masked too
    np.testing.assert_array_equal(grad[2], [0.0, 0.0, -1.0])
    assert loss[3] == 0
    assert np.all(grad[3] == 0)


@pytest.mark.parametrize("member", MEMBER_PARAMS)
def test_all_labels_ignored_mean_is_zero(member):
    z, _, _ = loss_problem("float64")
    assert_nothing_to_average(*member.loss_vg(z, np.full(N, -100), **member.kw))
    loss, grad = member.loss_vg(np.zeros((2, 0)), np.array([-100, -100]), **member.kw)
    assert_nothing_to_average(loss)
    assert grad.shape == (2, 0)


@pytest.mark.parametrize("member", MEMBER_PARAMS)
def test_dtypes_and_inputs_untouched(member):
    x, _ = problem((6, 7), -1, "float32")
    half = member.mapping(x.astype(np.float16), **member.kw)
    assert half.dtype == np.float16
    np.testing.assert_array_equal(
        half, member.mapping(x.astype(np.float16).astype(np.float32), **member.kw).astype(np.float16)
    )
    bf = member.mapping(torch.asarray(x.copy()).to(torch.bfloat16), **member.kw)
    assert bf.dtype == torch.bfloat16
    assert member.mapping(np.array([3, 1, 0]), **member.kw).dtype == np.float64
    with pytest.raises(TypeError, match="real numbers"):
        member.mapping(np.array([True, False]), **member.kw)
    with pytest.raises(TypeError, match="real numbers"):
        member.mapping(np.array([1j, 0]), **member.kw)
    with pytest.raises(ValueError, match="axis=2"):
        member.mapping(x, axis=2, **member.kw)
    with pytest.raises(ValueError, match="reduction"):
        member.loss(x, np.zeros(6, dtype=int), reduction="avg", **member.kw)
    a = np.array([[1.0, -INF, 0.5]])
    g = np.array([[1.0, 2.0, 3.0]])
    member.vjp(a, g, **member.kw)
    member.loss_vg(a, np.array([0]), **member.kw)
    np.testing.assert_array_equal(a, [[1.0, -INF, 0.5]])
    np.testing.assert_array_equal(g, [[1.0, 2.0, 3.0]])


@pytest.mark.parametrize("func", [entmax_bisect, entmax_bisect_jacobian])
def test_bad_alpha_and_n_iter_are_named(func):
    x = np.zeros(3)
    for alpha in (0.5, -1.0, INF, NAN):
        with pytest.raises(ValueError, match=rf"alpha must be a finite number >= 1 .*; got {alpha!r}"):
            func(x, alpha=alpha)
    with pytest.raises(TypeError, match="alpha must be a real number"):
        func(x, alpha="1.5")
    with pytest.raises(ValueError, match="n_iter must be >= 1; got 0"):
        func(x, n_iter=0)
    with pytest.raises(TypeError, match=r"n_iter must be an int; got 1\.5"):
        func(x, n_iter=1.5)


def test_fewer_bisection_steps_cost_accuracy():
    x, _ = problem((6, 7), -1, "float64")
    rough = entmax_bisect(x, n_iter=10)
    np.testing.assert_allclose(np.sum(rough, axis=-1), 1.0, rtol=0, atol=1e-15)  # renormalised
    err = np.max(np.abs(rough - entmax15(x)))
    assert 1e-8 < err < 2**-10 / (1.5 - 1)


# -------------------------------------------------------------------------------------------- properties
MEMBER_NAMES = st.sampled_from(list(MEMBERS))


def logits(dtype: str, bound: float = 50.0) -> st.SearchStrategy[np.ndarray]:
    shape = st.tuples(st.integers(1, 4), st.integers(1, 12))
    el = st.floats(-bound, bound, allow_nan=False, allow_infinity=False, width=np.finfo(dtype).bits)
    return hnp.arrays(np.dtype(dtype), shape, elements=el)


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_probabilities_lie_in_the_simplex_and_permute_with_the_logits(data):
    member = MEMBERS[data.draw(MEMBER_NAMES)]
    dtype = data.draw(st.sampled_from(DTYPES))
    x = data.draw(logits(dtype) | logits(dtype, 2.0**60))
    p = member.mapping(x, **member.kw)
    assert p.dtype == x.dtype
    assert np.all(np.isfinite(p))
    assert np.all((p >= 0) & (p <= 1))
    k = x.shape[-1]
    np.testing.assert_allclose(np.sum(p.astype(np.float64), axis=-1), 1.0, rtol=0, atol=4 * k * EPS[dtype])
    assert np.any(p > 0, axis=-1).all()
    perm = data.draw(st.permutations(range(k)))
    q = member.mapping(x[:, perm], **member.kw)
    np.testing.assert_allclose(q, p[:, perm], rtol=0, atol=4 * k * EPS[dtype])
    for f in (member.vjp, member.jvp):
        assert np.all(np.isfinite(f(x, np.ones_like(x), **member.kw)))
    assert np.all(np.isfinite(member.jacobian(x, **member.kw)))


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_masked_entries_are_exactly_zero(data):
    member = MEMBERS[data.draw(MEMBER_NAMES)]
    x = data.draw(logits("float64"))
    keep = data.draw(hnp.arrays(np.bool_, x.shape))
    p = member.mapping(x, where=keep, **member.kw)
    assert np.all(p[~keep] == 0)
    np.testing.assert_array_equal(p, member.mapping(np.where(keep, x, -INF), **member.kw))
    live = keep.any(axis=-1)
    np.testing.assert_allclose(p[live].sum(axis=-1), 1.0, rtol=0, atol=64 * EPS["float64"])
    assert np.all(p[~live] == 0)
    jac = member.jacobian(x, where=keep, **member.kw)
    assert np.all(jac[~keep] == 0)
    assert np.all(np.swapaxes(jac, -1, -2)[~keep] == 0)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_shift_invariance_and_loss_bounds(data):
    member = MEMBERS[data.draw(MEMBER_NAMES)]
    x = data.draw(logits("float64"))
    c = data.draw(st.integers(-1000, 1000))
    np.testing.assert_allclose(member.mapping(x + c, **member.kw), member.mapping(x, **member.kw), rtol=0, atol=1e-11)
    y = data.draw(hnp.arrays(np.int64, x.shape[:-1], elements=st.integers(0, x.shape[-1] - 1)))
    loss = member.loss(x, y, reduction="none", **member.kw)
    assert np.all(loss >= 0)
    # a lead of 1/(alpha - 1) over every other class makes the prediction one-hot on the target: loss 0
    lead = np.where(np.arange(x.shape[-1]) == y[:, None], x.max(axis=-1, keepdims=True) + 1 / (member.alpha - 1), x)
    confident = member.loss(lead, y, reduction="none", **member.kw)
    assert np.all(confident <= 1e-12), confident


def michelot(z: np.ndarray) -> np.ndarray:
    """Projection onto the simplex by Michelot's (1986) fixed-point iteration, independent of sorting."""
    active = np.ones(z.shape, dtype=bool)
    while True:
        tau = (math.fsum(z[active]) - 1.0) / active.sum()
        now = active & (z > tau)
        if np.array_equal(now, active):
            return np.maximum(z - tau, 0.0)
        active = now


@settings(max_examples=100, deadline=None)
@given(x=logits("float64", 10.0))
def test_sparsemax_is_the_euclidean_projection_onto_the_simplex(x):
    p = sparsemax(x)
    for row, pr in zip(x, p, strict=True):
        np.testing.assert_allclose(pr, michelot(row), rtol=0, atol=64 * EPS["float64"] * (1 + np.abs(row).max()))
        # variational inequality: <z - p, q - p> <= 0 for every q in the simplex (enough: its vertices)
        r = row - pr
        assert np.max(r) <= float(np.dot(r, pr)) + 64 * EPS["float64"] * (1 + np.abs(row).max())

"""Taylor and spherical softmax: values, derivatives, losses, special values and properties.

* values and log-values against a 50-digit mpmath oracle on every backend, including logits far beyond the
  overflow of the textbook formula;
* JVP, VJP and Jacobian against ``torch.func.jacrev`` and ``jax.jacrev`` of a direct formula, and against
  central differences of our own mapping, in float64, with and without ``where`` masks;
* the loss gradients against torch and JAX autodiff of a direct formula and against central differences,
  and every ``weight`` / ``ignore_index`` / ``reduction`` combination against a direct NumPy computation;
* the special-value policy and argument errors; hypothesis properties.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conftest import (
    EPS,
    FD_STEP,
    LIBRARIES,
    ArrayLibrary,
    assert_nothing_to_average,
    fd_atol,
    seeded_rng,
    to_numpy,
    tol,
)
from softmaxkit.family import taylor
from softmaxkit.family.spherical import (
    DEFAULT_EPS,
    log_spherical_softmax,
    spherical_cross_entropy,
    spherical_cross_entropy_value_and_grad,
    spherical_softmax,
    spherical_softmax_jacobian,
    spherical_softmax_jvp,
    spherical_softmax_vjp,
)
from softmaxkit.family.taylor import (
    log_taylor_softmax,
    taylor_cross_entropy,
    taylor_cross_entropy_value_and_grad,
    taylor_softmax,
    taylor_softmax_jacobian,
    taylor_softmax_jvp,
    taylor_softmax_vjp,
)

INF, NAN = math.inf, math.nan
F64 = tol("float64")




# ------------------------------------------------------------------------------------------ the families
@dataclass(frozen=True, eq=False)  # hashed by identity: one instance per family
class Family:
    """One mapping with its option, its functions and a direct formula for its numerator f."""

    name: str
    kind: str  # "taylor" or "spherical"
    option: dict[str, Any]
    fns: dict[str, Callable[..., Any]] = field(repr=False)

    def f(self, o: Any) -> Any:
        """f(o) by its definition, for NumPy / torch / JAX arrays and mpmath numbers alike."""
        if self.kind == "spherical":
            return o * o + self.option["eps"]
        term = total = o * 0 + 1
        for k in range(1, self.option["order"] + 1):
            term = term * o / k
            total = total + term
        return total

    def __call__(self, fn: str, *args: Any, **kw: Any) -> Any:
        return self.fns[fn](*args, **self.option, **kw)


def _taylor(order: int) -> Family:
    fns = {
        "p": taylor_softmax,
        "logp": log_taylor_softmax,
        "jvp": taylor_softmax_jvp,
        "vjp": taylor_softmax_vjp,
        "jac": taylor_softmax_jacobian,
        "loss": taylor_cross_entropy,
        "vg": taylor_cross_entropy_value_and_grad,
    }
    return Family(f"taylor{order}", "taylor", {"order": order}, fns)


def _spherical(eps: float) -> Family:
    fns = {
        "p": spherical_softmax,
        "logp": log_spherical_softmax,
        "jvp": spherical_softmax_jvp,
        "vjp": spherical_softmax_vjp,
        "jac": spherical_softmax_jacobian,
        "loss": spherical_cross_entropy,
        "vg": spherical_cross_entropy_value_and_grad,
    }
    return Family(f"spherical{eps:g}", "spherical", {"eps": eps}, fns)


FAMILIES = [_taylor(2), _taylor(4), _spherical(DEFAULT_EPS), _spherical(0.5)]
FAMILY_PARAMS = [pytest.param(f, id=f.name) for f in FAMILIES]
TAYLOR2, SPHERICAL = FAMILIES[0], FAMILIES[2]
# masks and special values are handled once, in softmaxkit.family._ratio: one family of each kind checks them
SHARED_PATH_PARAMS = [pytest.param(f, id=f.name) for f in (TAYLOR2, SPHERICAL)]


# ------------------------------------------------------------------------------------------ mpmath oracle
def oracle(fam: Family, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """p and log p of each row (class axis last) from the exact values of the entries, at 50 digits."""
    rows = np.asarray(x, dtype=np.float64).reshape(-1, x.shape[-1])
    p, logp = [], []
    with mpmath.workdps(50):
        for row in rows:
            f = [fam.f(mpmath.mpf(float(v))) for v in row]
            total = mpmath.fsum(f)
            p += [float(v / total) for v in f]
            logp += [float(mpmath.log(v) - mpmath.log(total)) for v in f]
    return np.array(p).reshape(x.shape), np.array(logp).reshape(x.shape)


def problem(dtype: str) -> np.ndarray:
    """Ordinary rows, a row spanning many scales, and a row with entries near f's minimum."""
    rng = seeded_rng("values", dtype)
    x = np.concatenate(
        [2.0 * rng.standard_normal((4, 6)), [[30.0, -0.5, 1e-3, -7.0, 3.0, 0.0], [-1.0, -1.0, 0.0, 1.0, -2.0, 4.0]]]
    )
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("fam", FAMILY_PARAMS)
def test_values_match_mpmath(xp: ArrayLibrary, fam: Family, dtype: str) -> None:
    x = problem(dtype)
    p_ref, logp_ref = oracle(fam, x)
    p = fam("p", xp(x, dtype))
    logp = fam("logp", xp(x, dtype))
    assert p.dtype == xp(x, dtype).dtype
    # order 4's alternating terms cost a few ulps more than order 2 for negative logits: still within TOL
    np.testing.assert_allclose(to_numpy(p), p_ref, **tol(dtype))
    np.testing.assert_allclose(to_numpy(logp), logp_ref, **tol(dtype))


BIG = {
    "float64": [[1.7e308, -3e299, 5.0, -1.0], [1e200, 1e-200, -1e100, 0.5], [-1e154, 1e154, 2.0, 1e153]],
    "float32": [[3e38, -3e37, 5.0, -1.0], [1e30, 1e-30, -1e15, 0.5], [-1e19, 1e19, 2.0, 1e18]],
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("fam", FAMILY_PARAMS)
def test_huge_logits_stay_finite_and_accurate(fam: Family, dtype: str) -> None:
    """f overflows for |o| ~ 1e154 (float64) / 1e19 (float32); the power-of-two scales keep every digit,
    and the log form stays finite (and exact) where the probability underflows."""
    x = np.array(BIG[dtype], dtype=dtype)
    p_ref, logp_ref = oracle(fam, x)
    for b in (LIBRARIES["numpy"], LIBRARIES["jax"]):  # JAX flushes subnormals to zero: its own code path
        p, logp = to_numpy(fam("p", b(x, dtype))), to_numpy(fam("logp", b(x, dtype)))
        normal = p_ref >= np.finfo(dtype).tiny
        np.testing.assert_allclose(p[normal], p_ref[normal], rtol=tol(dtype)["rtol"], atol=0)
        assert np.all(p[~normal] <= np.finfo(dtype).tiny)
        assert np.all(np.isfinite(logp))
        np.testing.assert_allclose(logp, logp_ref, rtol=tol(dtype)["rtol"], atol=tol(dtype)["atol"])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_log_of_probability_near_one_keeps_its_digits(dtype: str) -> None:
    """log p for p ≈ 1 - 1e-10 is ≈ -1e-10: log1p of the rest, not a difference of two logs near 0."""
    x = np.array([[1e5, 1.0, 0.0]], dtype=dtype)
    for fam in (TAYLOR2, SPHERICAL):
        _, logp_ref = oracle(fam, x)
        got = fam("logp", x)
        np.testing.assert_allclose(got[0, 0], logp_ref[0, 0], rtol=8 * EPS[dtype])
        loss_ref = -logp_ref[0, 0]
        np.testing.assert_allclose(fam("loss", x, np.array([0])), loss_ref, rtol=8 * EPS[dtype])


def test_seed_examples() -> None:
    """Hand-computed: f_2 = (1, 2.5, 0.5) at (0, 1, -1); squares + eps at eps = 1."""
    np.testing.assert_allclose(taylor_softmax(np.array([0.0, 1.0, -1.0])), [0.25, 0.625, 0.125], **F64)
    np.testing.assert_allclose(spherical_softmax(np.array([1.0, -2.0, 0.0]), eps=1.0), [0.25, 0.625, 0.125], **F64)
    np.testing.assert_allclose(spherical_softmax(np.zeros((2, 4))), np.full((2, 4), 0.25), **F64)


def test_spherical_is_even_and_nearly_scale_invariant() -> None:
    x = np.array([0.5, -2.0, 3.0, 1.0])
    np.testing.assert_array_equal(spherical_softmax(x), spherical_softmax(-x))
    np.testing.assert_allclose(spherical_softmax(1e3 * x), x**2 / np.sum(x**2), rtol=1e-9)


def test_high_order_taylor_approaches_softmax() -> None:
    x = np.array([0.3, -0.5, 1.0, 0.0])
    soft = np.exp(x) / np.sum(np.exp(x))
    assert np.max(np.abs(taylor_softmax(x, order=20) - soft)) < 1e-15
    assert np.max(np.abs(taylor_softmax(x, order=2) - soft)) > 1e-2


# -------------------------------------------------------------------------------------------- derivatives
SHAPE_AXES = [((3, 5), -1), ((5, 3), 0), ((2, 4, 3), 1)]


def to_rows(a: np.ndarray, axis: int) -> np.ndarray:
    moved = np.moveaxis(a, axis, -1)
    return moved.reshape(-1, moved.shape[-1])


@functools.cache
def deriv_problem(shape: tuple[int, ...], axis: int, masked: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits, a tangent and a keep-mask (entries under the mask hold 40: they would dominate if read)."""
    rng = seeded_rng("deriv", shape, axis, masked)
    x, v = 1.5 * rng.standard_normal(shape), rng.standard_normal(shape)
    keep = rng.random(shape) > 0.3 if masked else np.ones(shape, dtype=bool)
    rows = to_rows(keep, axis)
    assert np.all(rows.any(axis=-1))
    x = np.where(keep, x, 40.0)
    for a in (x, v, keep):
        a.flags.writeable = False
    return x, v, keep


def _direct(fam: Family, row: Any, keep: Any) -> Any:
    f = fam.f(row) * keep
    return f / f.sum(-1)


@functools.cache
def reference_jacobian(fam: Family, lib: str, shape: tuple[int, ...], axis: int, masked: bool) -> np.ndarray:
    """Per-row Jacobian (n, K, K) of the direct formula by ``lib``'s jacrev."""
    x, _, keep = deriv_problem(shape, axis, masked)
    xr, kr = to_rows(x, axis), to_rows(keep, axis).astype(np.float64)
    if lib == "torch":
        fn = torch.func.vmap(torch.func.jacrev(functools.partial(_direct, fam)))
        return fn(torch.asarray(xr.copy()), torch.asarray(kr)).numpy()
    fj = jax.jit(jax.vmap(jax.jacrev(functools.partial(_direct, fam))))
    return np.asarray(fj(jnp.asarray(xr), jnp.asarray(kr)))


def ours_as_rows(out: np.ndarray, mode: str, axis: int) -> np.ndarray:
    if mode == "jac":
        return out.reshape(-1, *out.shape[-2:])
    return to_rows(out, axis)


def expected(jac: np.ndarray, mode: str, v: np.ndarray, axis: int) -> np.ndarray:
    if mode == "jac":
        return jac
    vr = to_rows(v, axis)
    return np.einsum("nij,nj->ni" if mode == "jvp" else "nij,ni->nj", jac, vr)


def call(fam: Family, mode: str, b: ArrayLibrary, x: np.ndarray, v: np.ndarray, keep: np.ndarray, **kw: Any) -> Any:
    args = (b(x),) if mode == "jac" else (b(x), b(v))
    return to_numpy(fam(mode, *args, where=b(keep), **kw))


@pytest.mark.parametrize("masked", [False, True], ids=["plain", "where"])
@pytest.mark.parametrize(("shape", "axis"), SHAPE_AXES, ids=["3x5-1", "5x3-0", "2x4x3-1"])
@pytest.mark.parametrize("fam", FAMILY_PARAMS)
def test_derivatives_match_torch_and_jax_jacrev(fam: Family, shape: tuple, axis: int, masked: bool) -> None:
    x, v, keep = deriv_problem(shape, axis, masked)
    for mode in ("jvp", "vjp", "jac"):
        for b in LIBRARIES.values():
            ours = call(fam, mode, b, x, v, keep, axis=axis)
            if mode != "jac":
                assert ours.shape == shape
                assert np.all(ours[~keep] == 0)
            for lib in ("torch", "jax"):
                ref = expected(reference_jacobian(fam, lib, shape, axis, masked), mode, v, axis)
                np.testing.assert_allclose(ours_as_rows(ours, mode, axis), ref, **F64, err_msg=f"{mode} {b} {lib}")


@pytest.mark.parametrize(("shape", "axis"), SHAPE_AXES, ids=["3x5-1", "5x3-0", "2x4x3-1"])
@pytest.mark.parametrize("fam", FAMILY_PARAMS)
def test_jacobian_matches_finite_differences(fam: Family, shape: tuple, axis: int) -> None:
    x, _, keep = deriv_problem(shape, axis, True)
    xl, keepl = np.moveaxis(x, axis, -1), np.moveaxis(keep, axis, -1)
    cols = []
    for j in range(xl.shape[-1]):
        e = np.zeros_like(xl)
        e[..., j] = FD_STEP
        up = fam("p", np.moveaxis(xl + e, -1, axis), axis=axis, where=keep)
        down = fam("p", np.moveaxis(xl - e, -1, axis), axis=axis, where=keep)
        cols.append(np.moveaxis((up - down) / (2 * FD_STEP), axis, -1))
    fd = np.stack(cols, axis=-1)
    ours = fam("jac", x, axis=axis, where=keep)
    np.testing.assert_allclose(ours, fd, rtol=0, atol=fd_atol(1.0))
    masked_ij = ~(keepl[..., :, None] & keepl[..., None, :])
    assert np.all(ours[masked_ij] == 0)


def test_nonsymmetric_jacobian_jvp_differs_from_vjp() -> None:
    x, v = np.array([-1.0, 0.5, 2.0]), np.array([1.0, -2.0, 0.5])
    assert not np.allclose(taylor_softmax_jvp(x, v), taylor_softmax_vjp(x, v))
    jac = taylor_softmax_jacobian(x)
    np.testing.assert_allclose(np.sum(jac, axis=0), 0.0, atol=1e-16)  # probability moves, it is not made


# --------------------------------------------------------------------------------------------------- loss
LOSS_LAYOUTS = {"NC": ((6, 5), -1), "CN": ((5, 6), 0), "NCd": ((2, 5, 3), 1)}
IGNORE = 2


@dataclass(frozen=True)
class LossCase:
    layout: str
    weighted: bool
    ignore: bool
    reduction: str

    @property
    def id(self) -> str:
        return "-".join(
            [self.layout, "w" if self.weighted else "now", "ign" if self.ignore else "noign", self.reduction]
        )


LOSS_CASES = [
    pytest.param(LossCase(*c), id=LossCase(*c).id)
    for c in itertools.product(LOSS_LAYOUTS, [False, True], [False, True], ["mean", "sum", "none"])
]
# weight and ignore_index only scale and drop rows: the gradient is checked with both off and both on
GRAD_CASES = [
    pytest.param(LossCase(layout, on, on, red), id=LossCase(layout, on, on, red).id)
    for layout, on, red in itertools.product(LOSS_LAYOUTS, [False, True], ["mean", "sum", "none"])
]


@functools.cache
def loss_problem(case: LossCase) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    shape, axis = LOSS_LAYOUTS[case.layout]
    rng = seeded_rng("loss", case)
    x = 1.5 * rng.standard_normal(shape)
    batch = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
    y = rng.integers(0, shape[axis], size=batch)
    y.flat[0] = IGNORE if case.ignore else 0
    y.flat[-1] = 0
    w = rng.uniform(0.2, 2.0, size=shape[axis])
    kw: dict[str, Any] = {"axis": axis, "reduction": case.reduction}
    if case.ignore:
        kw["ignore_index"] = IGNORE
    return x, y, w, kw


def direct_loss(fam: Family, log: Callable[[Any], Any], z: Any, onehot: Any, wy: Any, reduction: str) -> Any:
    """The reduced loss by its definition, rows (N, C); works on NumPy, torch and JAX arrays."""
    f = fam.f(z)
    row = (log(f.sum(-1)) - log((f * onehot).sum(-1))) * wy
    if reduction == "none":
        return row
    return row.sum() / wy.sum() if reduction == "mean" else row.sum()


def loss_rows(case: LossCase, weighted: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y, w, kw = loss_problem(case)
    z, yr = to_rows(x, kw["axis"]), y.reshape(-1)  # the batch axes keep their order in both
    valid = yr != (IGNORE if case.ignore else -100)
    wy = (w[yr] if weighted else np.ones_like(yr, dtype=np.float64)) * valid
    onehot = (np.arange(z.shape[-1]) == yr[:, None]).astype(np.float64)
    return z, onehot, wy


def grad_to_layout(g_rows: np.ndarray, x: np.ndarray, axis: int) -> np.ndarray:
    moved = np.moveaxis(x, axis, -1)
    return np.moveaxis(g_rows.reshape(moved.shape), -1, axis)


@pytest.mark.parametrize("case", LOSS_CASES)
@pytest.mark.parametrize("fam", FAMILY_PARAMS)
def test_loss_options_match_numpy(fam: Family, case: LossCase) -> None:
    check_loss_against_numpy(LIBRARIES["numpy"], fam, case)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("fam", FAMILY_PARAMS)
def test_loss_every_backend_agrees(xp: ArrayLibrary, fam: Family, reduction: str) -> None:
    check_loss_against_numpy(xp, fam, LossCase("NCd", True, True, reduction))


def check_loss_against_numpy(xp: ArrayLibrary, fam: Family, case: LossCase) -> None:
    x, y, w, kw = loss_problem(case)
    z, onehot, wy = loss_rows(case, case.weighted)
    ref = direct_loss(fam, np.log, z, onehot, wy, case.reduction)
    weight = {"weight": xp(w)} if case.weighted else {}
    loss = to_numpy(fam("loss", xp(x), xp(y), **weight, **kw))
    value, grad = fam("vg", xp(x), xp(y), **weight, **kw)
    np.testing.assert_array_equal(to_numpy(value), loss)
    assert to_numpy(grad).shape == x.shape
    if case.reduction == "none":
        assert loss.shape == y.shape
    np.testing.assert_allclose(loss.reshape(-1), ref, **F64)


def _autodiff_grad(fam: Family, lib: str, case: LossCase) -> np.ndarray:
    x, _, _, kw = loss_problem(case)
    z, onehot, wy = loss_rows(case, case.weighted)
    if lib == "torch":
        zt = torch.asarray(z.copy(), requires_grad=True)
        out = direct_loss(fam, torch.log, zt, torch.asarray(onehot), torch.asarray(wy), case.reduction)
        (g,) = torch.autograd.grad(out.sum(), zt)
        g_rows = g.numpy()
    else:

        def total(zj: jax.Array) -> jax.Array:
            return direct_loss(fam, jnp.log, zj, jnp.asarray(onehot), jnp.asarray(wy), case.reduction).sum()

        g_rows = np.asarray(jax.grad(total)(jnp.asarray(z)))
    return grad_to_layout(g_rows, x, kw["axis"])


@pytest.mark.parametrize("case", GRAD_CASES)
@pytest.mark.parametrize("fam", FAMILY_PARAMS)
def test_loss_gradient_matches_autodiff_and_finite_differences(fam: Family, case: LossCase) -> None:
    x, y, w, kw = loss_problem(case)
    weight = {"weight": w} if case.weighted else {}
    _, grad = fam("vg", x, y, **weight, **kw)
    for lib in ("torch", "jax"):
        np.testing.assert_allclose(grad, _autodiff_grad(fam, lib, case), **F64, err_msg=lib)

    def summed(a: np.ndarray) -> float:
        return float(np.sum(fam("loss", a, y, **weight, **kw)))

    fd = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = FD_STEP
        fd[idx] = (summed(x + e) - summed(x - e)) / (2 * FD_STEP)
    # rtol: the truncation error h² f'''/6 grows where spherical's log(o_c² + eps) is steep (o_c ~ sqrt(eps))
    np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=fd_atol(abs(summed(x))))


def test_loss_is_minus_log_of_the_mapping() -> None:
    x = np.array([[0.3, -1.2, 2.0], [1e3, 0.0, -5.0]])
    y = np.array([2, 1])
    for fam in FAMILIES:
        per_row = fam("loss", x, y, reduction="none")
        np.testing.assert_allclose(per_row, -fam("logp", x)[[0, 1], y], **F64)


def test_spherical_loss_depends_only_on_target_logit_and_sum_of_squares() -> None:
    """The spherical family (de Brébisson & Vincent 2016): same o_c and Σo² -> same loss."""
    a = np.array([[3.0, 4.0, 0.0, 1.0]])
    b = np.array([[3.0, 0.0, -4.0, -1.0]])  # Σo² = 26 for both, o_0 = 3
    np.testing.assert_allclose(spherical_cross_entropy(a, np.array([0])), spherical_cross_entropy(b, np.array([0])))
    # Taylor of order 2: same Σo, Σo², o_c -> same loss
    c = np.array([[3.0, 1.0, -1.0, 0.0]])
    d = np.array([[3.0, -1.0, 0.0, 1.0]])
    np.testing.assert_allclose(taylor_cross_entropy(c, np.array([0])), taylor_cross_entropy(d, np.array([0])))


def test_spherical_loss_is_finite_at_a_zero_target_logit() -> None:
    x = np.array([[0.0, 3.0, 4.0]])
    loss, grad = spherical_cross_entropy_value_and_grad(x, np.array([0]))
    np.testing.assert_allclose(loss, math.log((25 + 3 * DEFAULT_EPS) / DEFAULT_EPS), rtol=1e-14)
    assert grad[0, 0] == 0.0  # f'(0) = 0: the loss is flat in o_c at 0


def test_all_labels_ignored_mean_is_zero(xp: ArrayLibrary) -> None:
    for fam in (TAYLOR2, SPHERICAL):
        assert_nothing_to_average(*fam("vg", xp([[1.0, 2.0], [NAN, 0.0]]), xp([-100, -100])))


def test_ignored_row_holding_nan_is_never_read_and_nan_row_poisons_only_itself() -> None:
    x = np.array([[NAN, 1.0, 2.0], [0.5, 1.0, 2.0], [INF, 0.0, 0.0], [1.0, -INF, 0.0]])
    for fam in (TAYLOR2, SPHERICAL):
        loss, grad = fam("vg", x, np.array([-100, 1, 0, 2]), reduction="none")
        assert loss[0] == 0
        assert np.all(grad[0] == 0)
        assert np.isfinite(loss[1])
        assert np.all(np.isfinite(grad[1]))
        assert np.isnan(loss[2])
        assert np.all(np.isnan(grad[2]))
        assert np.isnan(loss[3])
        assert np.all(np.isnan(grad[3]))
        assert np.isnan(fam("loss", x, np.array([-100, 1, 0, 2])))


def test_empty_batch_and_no_classes() -> None:
    for fam in (TAYLOR2, SPHERICAL):
        loss, grad = fam("vg", np.zeros((0, 3)), np.zeros((0,), dtype=np.int64))
        assert float(loss) == 0.0
        assert grad.shape == (0, 3)
        loss, grad = fam("vg", np.zeros((2, 0)), np.array([-100, -100]), reduction="none")
        np.testing.assert_array_equal(loss, [0.0, 0.0])
        assert grad.shape == (2, 0)


@pytest.mark.parametrize(("name", "dtype"), [("numpy", "float16"), ("torch", "bfloat16")])
def test_loss_half_precision(name: str, dtype: str) -> None:
    b = LIBRARIES[name]
    x = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, -0.25]])
    y = np.array([2, 0])
    for fam in (TAYLOR2, SPHERICAL):
        xl = to_numpy(b(x, dtype)).astype(np.float64)  # the values the function actually sees
        loss, grad = fam("vg", b(x, dtype), b(y))
        assert loss.dtype == grad.dtype == b(x, dtype).dtype
        ref_loss, ref_grad = fam("vg", xl, y)
        np.testing.assert_allclose(float(to_numpy(loss)), ref_loss, **tol(dtype))
        np.testing.assert_allclose(to_numpy(grad), ref_grad, **tol(dtype))


# ----------------------------------------------------------------------------------------- special values
@pytest.mark.parametrize("fam", SHARED_PATH_PARAMS)
def test_special_value_rows(xp: ArrayLibrary, fam: Family) -> None:
    x = np.array(
        [[1.0, 2.0, 3.0], [1.0, NAN, 3.0], [1.0, INF, 3.0], [-INF, 0.0, 0.0], [7.0, 8.0, 9.0], [0.5, 0.0, NAN]]
    )
    keep = np.array([[1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1], [0, 0, 0], [1, 1, 0]], dtype=bool)
    v = np.ones_like(x)
    out = {k: to_numpy(fam(k, xp(x), where=xp(keep))) for k in ("p", "logp", "jac")}
    out |= {k: to_numpy(fam(k, xp(x), xp(v), where=xp(keep))) for k in ("jvp", "vjp")}
    for k, a in out.items():
        assert np.all(np.isfinite(a[0])), k
        assert np.all(np.isfinite(a[5, :2])), k
        assert np.all(np.isnan(a[1:4])), k  # nan, +inf and -inf rows (-inf is not a mask here)
    np.testing.assert_array_equal(out["p"][4], 0.0)  # all masked
    np.testing.assert_array_equal(out["logp"][4], -INF)
    for k in ("jvp", "vjp", "jac"):
        np.testing.assert_array_equal(out[k][4], 0.0)
    assert out["p"][5, 2] == 0  # a masked nan is never read
    assert out["logp"][5, 2] == -INF
    np.testing.assert_allclose(out["p"][5, :2], to_numpy(fam("p", xp(x[5, :2]))), **F64)


@pytest.mark.parametrize("fam", SHARED_PATH_PARAMS)
def test_empty_axis(xp: ArrayLibrary, fam: Family) -> None:
    x = xp(np.zeros((3, 0)))
    for k in ("p", "logp"):
        assert tuple(fam(k, x).shape) == (3, 0)
    assert tuple(fam("jvp", x, x).shape) == (3, 0)
    assert tuple(fam("vjp", x, x).shape) == (3, 0)
    assert tuple(fam("jac", x).shape) == (3, 0, 0)


@pytest.mark.parametrize(
    ("name", "dtype"), [("numpy", "float16"), ("torch", "float16"), ("torch", "bfloat16"), ("jax", "bfloat16")]
)
def test_half_precision_computed_in_float32(name: str, dtype: str) -> None:
    b = LIBRARIES[name]
    x = b(np.array([[0.5, -1.0, 2.0, 100.0], [3.0, 0.0, -0.25, 1.0]]), dtype)
    exact = to_numpy(x).astype(np.float64)
    for fam in FAMILIES:
        for k in ("p", "logp"):
            out = fam(k, x)
            assert out.dtype == x.dtype
            np.testing.assert_allclose(to_numpy(out), fam(k, exact), **tol(dtype))


def test_integer_input_promotes(xp: ArrayLibrary) -> None:
    for fam in (TAYLOR2, SPHERICAL):
        out = fam("p", xp(np.array([1, 2, 3])))
        assert to_numpy(out).dtype.kind == "f"
        np.testing.assert_allclose(to_numpy(out), fam("p", np.array([1.0, 2.0, 3.0])), rtol=2e-6)


def test_inputs_are_never_modified() -> None:
    x, v, y = np.array([[1.0, -2.0, 3e200]]), np.array([[1.0, 2.0, 3.0]]), np.array([1])
    for fam in (TAYLOR2, SPHERICAL):
        for k in ("p", "logp", "jac"):
            fam(k, x)
        fam("jvp", x, v)
        fam("vjp", x, v)
        fam("vg", x, y)
    np.testing.assert_array_equal(x, [[1.0, -2.0, 3e200]])
    np.testing.assert_array_equal(v, [[1.0, 2.0, 3.0]])


def test_works_under_jax_jit() -> None:
    x = jnp.asarray([[0.3, -1.0, 2.0]])
    got = jax.jit(lambda a: taylor_softmax(a, order=4))(x)
    np.testing.assert_allclose(np.asarray(got), taylor_softmax(np.asarray(x), order=4), **F64)


@pytest.mark.parametrize(
    ("fn", "kwargs", "error", "message"),
    [
        (taylor_softmax, {"order": 3}, ValueError, r"order must be an even int in \[2, 20\].*got 3"),
        (taylor_softmax, {"order": 0}, ValueError, "got 0"),
        (taylor_softmax, {"order": 22}, ValueError, "got 22"),
        (taylor_softmax, {"order": 2.0}, TypeError, "order must be an int; got 2.0"),
        (taylor_softmax, {"order": True}, TypeError, "order must be an int; got True"),
        (taylor_cross_entropy_value_and_grad, {"order": 5}, ValueError, "got 5"),
        (spherical_softmax, {"eps": 0.0}, ValueError, "eps must be a finite number > 0; got 0.0"),
        (spherical_softmax, {"eps": -1.0}, ValueError, "got -1.0"),
        (spherical_softmax, {"eps": INF}, ValueError, "got inf"),
        (spherical_softmax, {"eps": NAN}, ValueError, "got nan"),
        (spherical_softmax, {"eps": "1e-4"}, TypeError, "eps must be a real number"),
        (spherical_cross_entropy, {"eps": 0}, ValueError, "got 0"),
        (taylor_softmax, {"axis": 2}, ValueError, "axis=2 is out of range"),
        (spherical_softmax, {"where": np.ones(5, dtype=bool)}, ValueError, "does not broadcast"),
        (taylor_softmax, {"where": np.ones(3)}, TypeError, "where must be a boolean array"),
    ],
)
def test_option_errors(fn: Callable[..., Any], kwargs: dict[str, Any], error: type, message: str) -> None:
    x = np.zeros((2, 3))
    args = (x, np.array([0, 1])) if "cross_entropy" in fn.__name__ else (x,)
    with pytest.raises(error, match=message):
        fn(*args, **kwargs)


def test_data_errors() -> None:
    with pytest.raises(TypeError, match="x must hold real numbers"):
        taylor_softmax(np.array([True, False]))
    with pytest.raises(TypeError, match="x must hold real numbers"):
        spherical_softmax(np.array([1j]))
    with pytest.raises(ValueError, match=r"v must have the shape of x, \(2, 3\); got shape \(3,\)"):
        taylor_softmax_jvp(np.zeros((2, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="g must have the shape of x"):
        spherical_softmax_vjp(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="target holds class index 3"):
        taylor_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(TypeError, match="target must hold integer class indices"):
        spherical_cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0]))


# ------------------------------------------------------------------------------------------- properties
DTYPES = ["float64", "float32"]
SHAPES = st.tuples(st.integers(1, 4), st.integers(1, 12))


def finite(dtype: str, bound: float | None = None) -> st.SearchStrategy[float]:
    lo, hi = (-bound, bound) if bound is not None else (None, None)
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, width=np.finfo(dtype).bits)


@st.composite
def logits(draw: st.DrawFn, dtype: str, bound: float | None = 1e3) -> np.ndarray:
    return draw(hnp.arrays(np.dtype(dtype), SHAPES, elements=finite(dtype, bound)))


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_probabilities_lie_in_unit_interval_and_sum_to_one(dtype: str, data: st.DataObject) -> None:
    x = data.draw(logits(dtype, bound=None))  # the whole finite range: far past f's overflow
    for fam in FAMILIES:
        p = fam("p", x)
        assert p.dtype == x.dtype
        assert np.all((p >= 0) & (p <= 1)), fam.name
        sums = np.sum(p.astype(np.float64), axis=-1)
        assert np.all(np.abs(sums - 1.0) <= x.shape[-1] * EPS[dtype]), (fam.name, sums)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_finite_in_finite_out(dtype: str, data: st.DataObject) -> None:
    x = data.draw(logits(dtype, bound=None))
    v = np.ones_like(x)
    y = data.draw(hnp.arrays(np.int64, x.shape[:-1], elements=st.integers(0, x.shape[-1] - 1)))
    for fam in FAMILIES:
        for k in ("p", "logp", "jac"):
            assert np.all(np.isfinite(fam(k, x))), (fam.name, k)
        for k in ("jvp", "vjp"):
            assert np.all(np.isfinite(fam(k, x, v))), (fam.name, k)
        loss, grad = fam("vg", x, y)
        assert np.isfinite(loss), fam.name
        assert np.all(np.isfinite(grad)), fam.name


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_taylor_order_two_numerator_is_at_least_one_half(dtype: str, data: st.DataObject) -> None:
    """f_2(o) = ((o + 1)² + 1)/2 >= 1/2 holds in floating point too (a sum of squares), at any scale."""
    u = data.draw(finite(dtype))
    o = np.array([u], dtype=dtype)
    if abs(u) <= 1:  # unscaled (c = 1): the numerator itself
        assert taylor._polynomial(2).value(o, np.ones_like(o))[0] >= 0.5
    # through the public mapping: p_i * sum_j f(o_j) >= 1/2, with f summed independently in float64
    x = np.array([u, -1.0, 0.25], dtype=dtype)
    with np.errstate(over="ignore"):
        ref_total = float(np.sum(((x.astype(np.float64) + 1) ** 2 + 1) / 2))
    p = taylor_softmax(x).astype(np.float64)
    normal = p >= np.finfo(dtype).tiny  # a subnormal probability has lost its relative accuracy
    if math.isfinite(ref_total):
        assert np.all(p[normal] * ref_total >= 0.5 * (1 - 8 * EPS[dtype]))


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_permutation_equivariance(dtype: str, data: st.DataObject) -> None:
    x = data.draw(logits(dtype))
    perm = np.asarray(data.draw(st.permutations(range(x.shape[-1]))))
    for fam in FAMILIES:
        p, pp = fam("p", x), fam("p", x[:, perm])
        k = x.shape[-1]
        np.testing.assert_allclose(pp, p[:, perm], rtol=4 * k * EPS[dtype], atol=0, err_msg=fam.name)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_masked_entries_are_exactly_zero(dtype: str, data: st.DataObject) -> None:
    x = data.draw(logits(dtype))
    keep = data.draw(hnp.arrays(np.bool_, x.shape))
    v = np.ones_like(x)
    for fam in FAMILIES:
        assert np.all(fam("p", x, where=keep)[~keep] == 0)
        assert np.all(fam("logp", x, where=keep)[~keep] == -INF)
        assert np.all(fam("jvp", x, v, where=keep)[~keep] == 0)
        assert np.all(fam("vjp", x, v, where=keep)[~keep] == 0)
        jac = fam("jac", x, where=keep)
        assert np.all(jac[~(keep[..., :, None] & keep[..., None, :])] == 0)
        p = fam("p", x, where=keep)
        rows = keep.any(axis=-1)
        np.testing.assert_allclose(np.sum(p[rows], axis=-1), 1.0, rtol=x.shape[-1] * EPS[dtype])
        assert np.all(p[~rows] == 0)

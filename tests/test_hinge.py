"""Multiclass hinge losses (Crammer–Singer, Weston–Watkins): values, subgradients, options, special values.

Values against a direct NumPy computation and against ``torch.nn.functional.multi_margin_loss`` (Weston–Watkins
divided by the number of classes); subgradients against torch and JAX autodiff of direct formulas and against
central differences, on data away from the kinks; the subgradient chosen at the kinks; hypothesis properties.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conftest import EPS, FD_STEP, LIBRARIES, ArrayLibrary, seeded_rng, to_numpy, tol
from softmaxkit.family.hinge import KINDS, multiclass_hinge_loss, multiclass_hinge_loss_value_and_grad

INF, NAN = math.inf, math.nan
F64 = tol("float64")
N_CLASSES = 5
IGNORE = 1
Shape = tuple[int, ...]
LAYOUTS: dict[str, tuple[Shape, int]] = {
    "C": ((N_CLASSES,), -1),
    "NC": ((8, N_CLASSES), -1),
    "CN": ((N_CLASSES, 8), 0),
    "NCd1d2": ((2, N_CLASSES, 3, 2), 1),
}



def violations(z: np.ndarray, y: np.ndarray, margin: float) -> np.ndarray:
    """``margin + o_j - o_y`` for every class (class axis last); the target's own entry is -inf."""
    z_y = np.take_along_axis(z, y[..., None], axis=-1)
    return np.where(np.arange(z.shape[-1]) == y[..., None], -INF, margin + z - z_y)


def numpy_rows(z: np.ndarray, y: np.ndarray, kind: str, margin: float) -> np.ndarray:
    """The textbook losses, class axis last, float64."""
    v = violations(z, y, margin)
    if kind == "crammer_singer":
        return np.maximum(0.0, np.max(v, axis=-1))
    return np.sum(np.maximum(0.0, v), axis=-1)


@functools.cache
def data(layout: str, ignore: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits away from every kink (no violation within 1e-3 of 0, no tied competitors), targets, weights."""
    shape, axis = LAYOUTS[layout]
    rng = seeded_rng("hinge", layout, ignore)
    batch = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
    y = np.asarray(rng.integers(0, N_CLASSES, batch))
    while True:
        z = rng.standard_normal(shape)
        zl = np.moveaxis(z, axis, -1)
        v = np.stack([violations(zl, y, m) for m in (0.0, 0.5, 1.0)])
        if np.min(np.abs(v[np.isfinite(v)])) > 1e-3:
            break
    w = rng.uniform(0.5, 2.0, N_CLASSES)
    w[3] = 0.0
    if ignore:
        y.flat[::3] = IGNORE
        if y.size > 1:
            y.flat[1] = IGNORE + 1
    for a in (z, y, w):
        a.flags.writeable = False
    return z, y, w


def kwargs(layout: str, kind: str, weighted: bool, ignore: bool, reduction: str, w: Any, margin: float = 1.0) -> Any:
    kw: dict[str, Any] = {
        "axis": LAYOUTS[layout][1],
        "kind": kind,
        "margin": margin,
        "reduction": reduction,
        "weight": w if weighted else None,
    }
    if ignore:
        kw["ignore_index"] = IGNORE
    return kw


CASES = [
    pytest.param(
        layout,
        kind,
        weighted,
        ignore,
        reduction,
        id=f"{layout}-{kind}-{'w' if weighted else 'now'}-{'ign' if ignore else 'noign'}-{reduction}",
    )
    for layout, kind, weighted, ignore, reduction in itertools.product(
        LAYOUTS, KINDS, [False, True], [False, True], ["mean", "sum", "none"]
    )
    if not (ignore and layout == "C")
]


def numpy_reference(layout: str, kind: str, weighted: bool, ignore: bool, reduction: str, margin: float = 1.0) -> Any:
    z, y, w = data(layout, ignore)
    valid = (y != IGNORE) if ignore else np.ones(y.shape, dtype=bool)
    ysafe = np.where(valid, y, 0)
    rows = numpy_rows(np.moveaxis(z, LAYOUTS[layout][1], -1), ysafe, kind, margin)
    w_y = np.where(valid, w[ysafe] if weighted else 1.0, 0.0)
    per_row = w_y * rows
    return {"none": per_row, "sum": np.sum(per_row), "mean": np.sum(per_row) / np.sum(w_y)}[reduction]


def torch_reference(layout: str, kind: str, weighted: bool, ignore: bool, reduction: str) -> tuple[Any, Any]:
    """Value and gradient (of the sum, for ``none``) by torch autograd of the direct formulas."""
    z, y, w = data(layout, ignore)
    zt = torch.asarray(z.copy(), requires_grad=True)
    zl = torch.movedim(zt, LAYOUTS[layout][1], -1)
    yt = torch.asarray(y.copy())
    valid = yt != IGNORE if ignore else torch.ones_like(yt, dtype=torch.bool)
    ysafe = torch.where(valid, yt, 0)
    onehot = F.one_hot(ysafe, N_CLASSES).bool()
    z_y = (zl * onehot).sum(-1, keepdim=True)
    v = (1.0 + zl - z_y).masked_fill(onehot, -INF)
    rows = v.max(-1).values.clamp(min=0.0) if kind == "crammer_singer" else v.clamp(min=0.0).sum(-1)
    w_y = (torch.asarray(w.copy())[ysafe] if weighted else torch.ones(y.shape, dtype=zl.dtype)) * valid
    rows = w_y * rows
    value = {"none": rows, "sum": rows.sum(), "mean": rows.sum() / w_y.sum()}[reduction]
    value.sum().backward()
    assert zt.grad is not None
    return value.detach().numpy(), zt.grad.numpy()


# ------------------------------------------------------------------------------------------- values, grads
@pytest.mark.parametrize(("layout", "kind", "weighted", "ignore", "reduction"), CASES)
def test_matches_numpy_and_torch_autograd(layout: str, kind: str, weighted: bool, ignore: bool, reduction: str) -> None:
    z, y, w = data(layout, ignore)
    kw = kwargs(layout, kind, weighted, ignore, reduction, w)
    value, grad = multiclass_hinge_loss_value_and_grad(z, y, **kw)
    np.testing.assert_allclose(value, numpy_reference(layout, kind, weighted, ignore, reduction), **F64)
    ref_value, ref_grad = torch_reference(layout, kind, weighted, ignore, reduction)
    np.testing.assert_allclose(value, ref_value, **F64)
    np.testing.assert_allclose(grad, ref_grad, **F64)
    np.testing.assert_array_equal(multiclass_hinge_loss(z, y, **kw), value)  # one code path, bit for bit


@pytest.mark.parametrize("kind", KINDS)
def test_every_backend_in_float32(xp: ArrayLibrary, kind: str) -> None:
    """float32 here; float64 runs on every backend in test_special_values, and with every option on NumPy."""
    dtype = "float32"
    z, y, w = data("NCd1d2", True)
    z32 = np.asarray(z, dtype=dtype)
    kw = kwargs("NCd1d2", kind, True, True, "none", xp(w, dtype))
    value, grad = multiclass_hinge_loss_value_and_grad(xp(z32, dtype), xp(y), **kw)
    assert type(value) is type(grad) is type(xp(z32, dtype))
    assert value.dtype == grad.dtype == xp(z32, dtype).dtype
    # the float32 logits' exact values, in float64: the data stays away from kinks by far more than float32 ulps
    ref_kw = kwargs("NCd1d2", kind, True, True, "none", w.astype(dtype).astype(np.float64))
    ref_value, ref_grad = multiclass_hinge_loss_value_and_grad(z32.astype(np.float64), y, **ref_kw)
    np.testing.assert_allclose(to_numpy(value), ref_value, **tol(dtype))
    np.testing.assert_allclose(to_numpy(grad), ref_grad, **tol(dtype))


@pytest.mark.parametrize("margin", [1.0, 0.5, 0.0])
def test_weston_watkins_is_torch_multi_margin_loss_times_c(margin: float) -> None:
    z, y, w = data("NC", False)
    c = z.shape[-1]
    zt = torch.asarray(z.copy(), requires_grad=True)
    yt, wt = torch.asarray(y.copy()), torch.asarray(w.copy())
    for reduction in ("none", "mean"):
        ref = F.multi_margin_loss(zt, yt, margin=margin, reduction=reduction)
        ours = multiclass_hinge_loss(z, y, kind="weston_watkins", margin=margin, reduction=reduction)
        np.testing.assert_allclose(ours, c * ref.detach().numpy(), **F64)
    # torch's weight multiplies each row by weight[y] too; its mean would divide by N, so compare sums
    ref = F.multi_margin_loss(zt, yt, margin=margin, weight=wt, reduction="sum")
    ours, grad = multiclass_hinge_loss_value_and_grad(
        z, y, kind="weston_watkins", margin=margin, weight=w, reduction="sum"
    )
    np.testing.assert_allclose(ours, c * ref.detach().numpy(), **F64)
    ref.backward()
    assert zt.grad is not None
    np.testing.assert_allclose(grad, c * zt.grad.numpy(), **F64)


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_matches_jax_grad_and_finite_differences(kind: str) -> None:
    z, y, w = data("CN", True)
    kw = kwargs("CN", kind, True, True, "mean", w, margin=0.5)
    value, grad = multiclass_hinge_loss_value_and_grad(z, y, **kw)

    def total(zz: jax.Array) -> jax.Array:
        zl = jnp.moveaxis(zz, 0, -1)
        valid = jnp.asarray(y) != IGNORE
        ysafe = jnp.where(valid, jnp.asarray(y), 0)
        onehot = jax.nn.one_hot(ysafe, N_CLASSES, dtype=bool)
        z_y = jnp.sum(jnp.where(onehot, zl, 0.0), axis=-1, keepdims=True)
        v = jnp.where(onehot, -jnp.inf, 0.5 + zl - z_y)
        rows = jnp.maximum(jnp.max(v, axis=-1), 0.0) if kind == "crammer_singer" else jnp.sum(jnp.maximum(v, 0.0), -1)
        w_y = jnp.asarray(w)[ysafe] * valid
        return jnp.sum(w_y * rows) / jnp.sum(w_y)

    np.testing.assert_allclose(value, float(total(jnp.asarray(z))), **F64)
    np.testing.assert_allclose(grad, np.asarray(jax.grad(total)(jnp.asarray(z))), **F64)
    fd = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        e = np.zeros_like(z)
        e[idx] = FD_STEP
        fd[idx] = (float(multiclass_hinge_loss(z + e, y, **kw)) - float(multiclass_hinge_loss(z - e, y, **kw))) / (
            2 * FD_STEP
        )
    # piecewise linear, away from kinks: the central difference is exact up to rounding
    np.testing.assert_allclose(grad, fd, rtol=0, atol=16 * EPS["float64"] * (1 + float(value)) / FD_STEP)


# ------------------------------------------------------------------------------------------------- kinks
def test_a_violation_of_exactly_zero_is_satisfied() -> None:
    z = np.array([[2.0, 1.0, 0.0], [1.0, 1.0, -3.0]])
    for kind in KINDS:
        loss, grad = multiclass_hinge_loss_value_and_grad(z[:1], np.array([0]), kind=kind, reduction="none")
        assert loss[0] == 0.0
        assert np.all(grad == 0.0)
        # margin 0 and a tie with the target: satisfied as well
        loss, grad = multiclass_hinge_loss_value_and_grad(z[1:], np.array([0]), kind=kind, margin=0.0)
        assert float(loss) == 0.0
        assert np.all(grad == 0.0)


def test_crammer_singer_takes_the_first_of_tied_competitors() -> None:
    z = np.array([[0.0, 2.0, 1.0, 2.0], [2.0, 0.0, 2.0, 2.0]])
    loss, grad = multiclass_hinge_loss_value_and_grad(z, np.array([2, 1]), reduction="none")
    np.testing.assert_array_equal(loss, [2.0, 3.0])
    np.testing.assert_array_equal(grad, [[0.0, 1.0, -1.0, 0.0], [1.0, -1.0, 0.0, 0.0]])
    loss, grad = multiclass_hinge_loss_value_and_grad(z, np.array([2, 1]), kind="weston_watkins", reduction="none")
    np.testing.assert_array_equal(loss, [2.0 + 2.0, 3.0 * 3])
    np.testing.assert_array_equal(grad, [[0.0, 1.0, -2.0, 1.0], [1.0, -3.0, 1.0, 1.0]])


# ---------------------------------------------------------------------------------------- special values
@pytest.mark.parametrize("kind", KINDS)
def test_special_values(xp: ArrayLibrary, kind: str) -> None:
    z = np.array(
        [
            [0.0, -INF, 0.5],  # a masked competitor is never the violator
            [-INF, 0.0, 1.0],  # target at -inf
            [-INF, -INF, -INF],  # nothing can violate
            [0.0, INF, 1.0],  # competitor at +inf
            [INF, 0.0, 1.0],  # target at +inf
            [INF, INF, 0.0],  # inf - inf
            [NAN, 0.0, 1.0],  # nan row
            [NAN, NAN, NAN],  # ignored
        ]
    )
    y = np.array([0, 0, 0, 0, 0, 0, 0, -100])
    loss, grad = multiclass_hinge_loss_value_and_grad(xp(z), xp(y), kind=kind, reduction="none")
    loss, grad = to_numpy(loss), to_numpy(grad)
    np.testing.assert_array_equal(loss[[0, 1, 2, 3, 4, 7]], [1.5, INF, 0.0, INF, 0.0, 0.0])
    np.testing.assert_array_equal(grad[0], [-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(grad[[2, 4, 7]], np.zeros((3, 3)))
    assert grad[3, 1] == 1.0
    assert np.all(np.isnan(loss[[5, 6]]))
    assert np.all(np.isnan(grad[[5, 6]]))


def test_single_class_all_ignored_and_empty() -> None:
    for kind in KINDS:
        loss, grad = multiclass_hinge_loss_value_and_grad(np.array([[3.0], [-1.0]]), np.array([0, 0]), kind=kind)
        assert float(loss) == 0.0
        assert np.all(grad == 0.0)
        loss, grad = multiclass_hinge_loss_value_and_grad(np.ones((2, 3)), np.array([-100, -100]), kind=kind)
        assert float(loss) == 0.0
        assert np.all(grad == 0.0)
        loss, grad = multiclass_hinge_loss_value_and_grad(np.zeros((0, 3)), np.zeros(0, dtype=np.int64), kind=kind)
        assert float(loss) == 0.0
        assert grad.shape == (0, 3)
        loss, grad = multiclass_hinge_loss_value_and_grad(np.zeros((2, 0)), np.array([-100, -100]), reduction="none")
        assert loss.shape == (2,)
        assert grad.shape == (2, 0)


@pytest.mark.parametrize(("lib", "dtype"), [("torch", "bfloat16"), ("numpy", "float16")])
def test_half_precision(lib: str, dtype: str) -> None:
    b = LIBRARIES[lib]
    z, y, _ = data("NC", False)
    zh = b(4 * z, dtype)
    for kind in KINDS:
        loss, grad = multiclass_hinge_loss_value_and_grad(zh, b(y), kind=kind)
        assert loss.dtype == grad.dtype == zh.dtype
        ref_loss, ref_grad = multiclass_hinge_loss_value_and_grad(to_numpy(zh).astype(np.float32), y, kind=kind)
        np.testing.assert_allclose(to_numpy(loss), ref_loss, **tol(dtype))
        np.testing.assert_allclose(to_numpy(grad), ref_grad, **tol(dtype))


def test_errors_name_the_argument() -> None:
    z, y = np.zeros((2, 3)), np.array([0, 1])
    with pytest.raises(ValueError, match="kind must be one of 'crammer_singer', 'weston_watkins'; got 'ovr'"):
        multiclass_hinge_loss(z, y, kind="ovr")
    with pytest.raises(ValueError, match=r"margin must be a finite number >= 0; got -1\.0"):
        multiclass_hinge_loss(z, y, margin=-1.0)
    with pytest.raises(ValueError, match="margin must be a finite number >= 0; got nan"):
        multiclass_hinge_loss(z, y, margin=NAN)
    with pytest.raises(TypeError, match="margin must be a real number; got True"):
        multiclass_hinge_loss(z, y, margin=True)
    with pytest.raises(ValueError, match=r"class index 3 at position \(1,\)"):
        multiclass_hinge_loss(z, np.array([0, 3]))
    with pytest.raises(TypeError, match="target must hold integer class indices"):
        multiclass_hinge_loss(z, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="reduction must be one of"):
        multiclass_hinge_loss(z, y, reduction="avg")
    with pytest.raises(ValueError, match=r"weight must be a 1-d array with one entry per class \(3\)"):
        multiclass_hinge_loss(z, y, weight=np.ones(2))
    with pytest.raises(TypeError, match="logits must hold real numbers"):
        multiclass_hinge_loss(z.astype(complex), y)


def test_inputs_are_not_modified_and_integers_promote() -> None:
    z, y, w = np.array([[1, 2, 0]]), np.array([2]), np.array([1.0, 2.0, 3.0])
    copies = [a.copy() for a in (z, y, w)]
    loss, grad = multiclass_hinge_loss_value_and_grad(z, y, weight=w)
    assert loss.dtype == grad.dtype == np.float64
    assert float(loss) == 3.0
    for a, c in zip((z, y, w), copies, strict=True):
        np.testing.assert_array_equal(a, c)


# -------------------------------------------------------------------------------------------- properties
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_hinge_is_non_negative_and_zero_once_the_margin_is_met(dtype: str, data: st.DataObject) -> None:
    n, c = data.draw(st.integers(1, 5)), data.draw(st.integers(2, 8))
    elements = st.floats(-1e3, 1e3, allow_nan=False, width=np.finfo(dtype).bits)
    z = data.draw(hnp.arrays(np.dtype(dtype), (n, c), elements=elements))
    y = np.asarray(data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, c - 1))))
    margin = data.draw(st.sampled_from([0.0, 1.0]) | st.floats(0.0, 10.0))
    cs, g_cs = multiclass_hinge_loss_value_and_grad(z, y, margin=margin, reduction="none")
    ww, g_ww = multiclass_hinge_loss_value_and_grad(z, y, kind="weston_watkins", margin=margin, reduction="none")
    assert np.all(cs >= 0)
    assert np.all(cs <= ww)  # the largest term of a sum of non-negative terms
    assert np.all(ww <= (c - 1) * cs * (1 + 4 * EPS[dtype]))
    for g in (g_cs, g_ww):  # every subgradient moves score from the target to competitors: rows sum to 0
        np.testing.assert_array_equal(np.sum(g, axis=-1), 0.0)
        assert np.all(g[np.arange(n), y] <= 0)
    # raise each target above every competitor by the margin: both losses and their gradients vanish
    others = np.where(np.arange(c) == y[:, None], -np.inf, z.astype(np.float64))
    lifted = z.astype(np.float64)
    lifted[np.arange(n), y] = np.max(others, axis=-1) + margin + 1.0
    lifted = lifted.astype(dtype)
    for kind in KINDS:
        loss, grad = multiclass_hinge_loss_value_and_grad(lifted, y, kind=kind, margin=margin, reduction="none")
        assert np.all(loss == 0.0)
        assert np.all(grad == 0.0)

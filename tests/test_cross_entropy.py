"""cross_entropy and cross_entropy_value_and_grad: torch's semantics, our special values, our errors.

Gradients against autodiff and finite differences are in test_gradients.py; accuracy against mpmath in
test_accuracy.py.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import softmaxkit as sk
from conftest import (
    LIBRARIES,
    eps,
    to_numpy,
    tol,
)

INF, NAN = math.inf, math.nan
RNG = np.random.default_rng(20261122)


def _torch_ce(x: np.ndarray, t: np.ndarray, axis: int, **kw):
    """torch's loss and gradient (of the summed loss) for numpy inputs, class axis moved to 1."""
    xt = torch.tensor(np.moveaxis(x, axis, 1) if x.ndim > 1 else x, requires_grad=True)
    tt = torch.tensor(np.moveaxis(t, axis, 1) if t.dtype.kind == "f" and t.ndim > 1 else t)
    w = kw.pop("weight", None)
    loss = F.cross_entropy(xt, tt, weight=None if w is None else torch.tensor(w), **kw)
    loss.sum().backward()
    grad = xt.grad.numpy()
    return loss.detach().numpy(), (np.moveaxis(grad, 1, axis) if x.ndim > 1 else grad)


# layouts: (logits shape, class axis)
LAYOUTS = [((6, 5), -1), ((5,), -1), ((4, 5, 3), 1), ((2, 5, 3, 2), 1), ((3, 2, 5), -1)]


def _case(shape, axis, kind, ignore_hit):
    x = RNG.normal(size=shape) * 3
    n_classes = shape[axis]
    if kind == "index":
        tshape = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
        t = RNG.integers(0, n_classes, size=tshape)
        if ignore_hit and t.ndim:
            t.reshape(-1)[0] = -100
    else:
        t = RNG.dirichlet(np.ones(n_classes), size=x.size // n_classes)
        t = np.moveaxis(t.reshape(*[s for i, s in enumerate(shape) if i != axis % len(shape)], n_classes), -1, axis)
    return x, t


@pytest.mark.parametrize(("shape", "axis"), LAYOUTS, ids=lambda v: str(v))
@pytest.mark.parametrize(
    ("kind", "weighted", "smoothing", "reduction", "ignore_hit"),
    [
        c
        for c in itertools.product(
            ["index", "prob"], [False, True], [0.0, 0.15], ["mean", "sum", "none"], [False, True]
        )
        if not (c[0] == "prob" and c[4])
    ],
)
def test_matches_torch_cross_entropy(shape, axis, kind, weighted, smoothing, reduction, ignore_hit):
    x, t = _case(shape, axis, kind, ignore_hit)
    w = RNG.uniform(0.2, 2.0, size=shape[axis]) if weighted else None
    kw = {"weight": w, "label_smoothing": smoothing, "reduction": reduction}
    ref_loss, ref_grad = _torch_ce(x, t, axis, **kw)
    loss, grad = sk.cross_entropy_value_and_grad(x, t, axis=axis, **kw)
    np.testing.assert_allclose(loss, ref_loss, **tol("float64"))
    np.testing.assert_allclose(grad, ref_grad, **tol("float64"))
    np.testing.assert_array_equal(sk.cross_entropy(x, t, axis=axis, **kw), loss)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_backend_agrees(xp, dtype):
    x = RNG.normal(size=(5, 7)) * 4
    t = RNG.integers(0, 7, size=5)
    t[1] = -100
    w = RNG.uniform(0.5, 1.5, size=7)
    kw = {"label_smoothing": 0.1, "z_loss": 1e-3, "softcap": 6.0}
    ref_loss, ref_grad = sk.cross_entropy_value_and_grad(x, t, weight=w, **kw)
    loss, grad = sk.cross_entropy_value_and_grad(xp(x, dtype), xp(t), weight=xp(w, dtype), **kw)
    assert type(loss) is type(grad) is type(xp(x))
    assert grad.dtype == xp(x, dtype).dtype
    np.testing.assert_allclose(to_numpy(loss), ref_loss, **tol(dtype))
    np.testing.assert_allclose(to_numpy(grad), ref_grad, **tol(dtype))


def test_seed_example_dog():
    z = np.array([[5.0, 2.0, -1.0, 3.0]])
    loss = float(sk.cross_entropy(z, np.array([0])))
    assert loss == pytest.approx(-math.log(float(sk.softmax(z)[0, 0])), rel=1e-15)
    assert round(loss, 3) == 0.172


def test_gradient_is_p_minus_y():
    z = np.array([[5.0, 2.0, -1.0, 3.0]])
    _, grad = sk.cross_entropy_value_and_grad(z, np.array([0]), reduction="sum")
    np.testing.assert_allclose(grad, sk.softmax(z) - np.array([[1.0, 0, 0, 0]]), rtol=1e-15)


# ------------------------------------------------------------------------------------------- z-loss, softcap
def test_z_loss_adds_mean_lse_squared_over_rows_not_ignored():
    x = RNG.normal(size=(4, 6))
    t = np.array([1, -100, 3, 0])
    w = RNG.uniform(0.5, 2.0, size=6)
    base = sk.cross_entropy(x, t, weight=w)
    lse = sk.logsumexp(x)
    keep = t != -100
    assert float(sk.cross_entropy(x, t, weight=w, z_loss=0.01)) == pytest.approx(
        float(base) + 0.01 * np.mean(lse[keep] ** 2), rel=1e-14
    )
    per_row = sk.cross_entropy(x, t, weight=w, z_loss=0.01, reduction="none")
    np.testing.assert_allclose(per_row, sk.cross_entropy(x, t, weight=w, reduction="none") + 0.01 * lse**2 * keep)


def test_softcap_equals_cross_entropy_of_capped_logits():
    x = RNG.normal(size=(4, 6)) * 50
    t = RNG.integers(0, 6, size=4)
    capped = 30.0 * np.tanh(x / 30.0)
    assert float(sk.cross_entropy(x, t, softcap=30.0)) == pytest.approx(float(sk.cross_entropy(capped, t)), rel=1e-14)


def test_softcap_keeps_masked_logits_masked():
    # c * tanh(-inf / c) = -c would hand padded vocabulary entries probability mass; the mask must survive.
    x = np.array([[2.0, 1.0, -INF, -INF]])
    loss, grad = sk.cross_entropy_value_and_grad(x, np.array([0]), softcap=1.0)
    capped = np.array([[np.tanh(2.0), np.tanh(1.0)]])
    assert float(loss) == pytest.approx(float(sk.cross_entropy(capped, np.array([0]))), rel=1e-14)
    np.testing.assert_array_equal(grad[0, 2:], 0.0)


def test_softcap_turns_plus_inf_into_the_cap():
    loss = sk.cross_entropy(np.array([[INF, 0.0]]), np.array([0]), softcap=5.0)
    assert float(loss) == pytest.approx(math.log1p(math.exp(-5.0)), rel=1e-14)


# ---------------------------------------------------------------------------------------------- special values
def test_zero_total_weight_mean_is_zero():
    loss, grad = sk.cross_entropy_value_and_grad(np.zeros((2, 3)), np.array([1, 1]), weight=np.array([1.0, 0.0, 1.0]))
    assert float(loss) == 0.0
    np.testing.assert_array_equal(grad, 0.0)


def test_label_smoothing_never_counts_ignored_rows():
    # pytorch#73205: the smoothing term once included the ignored rows
    x = RNG.normal(size=(3, 5))
    t = np.array([2, -100, 4])
    full = sk.cross_entropy(x, t, label_smoothing=0.3, reduction="sum")
    kept = sk.cross_entropy(x[[0, 2]], t[[0, 2]], label_smoothing=0.3, reduction="sum")
    assert float(full) == pytest.approx(float(kept), rel=1e-15)
    np.testing.assert_array_equal(sk.cross_entropy_value_and_grad(x, t, label_smoothing=0.3)[1][1], 0.0)


def test_target_logit_minus_inf_gives_inf_loss_and_finite_gradient():
    loss, grad = sk.cross_entropy_value_and_grad(np.array([[0.0, -INF, 1.0]]), np.array([1]))
    assert float(loss) == INF
    np.testing.assert_allclose(grad, sk.softmax(np.array([[0.0, -INF, 1.0]])) - np.array([[0.0, 1.0, 0.0]]))


def test_zero_probability_at_minus_inf_logit_contributes_nothing():
    x = np.array([[0.0, -INF, 1.0]])
    t = np.array([[0.5, 0.0, 0.5]])
    loss, grad = sk.cross_entropy_value_and_grad(x, t)
    assert np.isfinite(loss)
    assert grad[0, 1] == 0.0
    assert float(loss) == pytest.approx(float(sk.cross_entropy(x[:, [0, 2]], t[:, [0, 2]])), rel=1e-15)


def test_smoothing_with_minus_inf_logit_is_infinite():
    assert float(sk.cross_entropy(np.array([[0.0, -INF]]), np.array([0]), label_smoothing=0.1)) == INF


def test_nan_row_poisons_only_itself():
    x = np.array([[NAN, 0.0], [1.0, 2.0]])
    per_row, grad = sk.cross_entropy_value_and_grad(x, np.array([0, 1]), reduction="none")
    assert np.isnan(per_row[0])
    assert np.isfinite(per_row[1])
    assert np.all(np.isnan(grad[0]))
    assert np.all(np.isfinite(grad[1]))


def test_plus_inf_row_is_nan():
    per_row = sk.cross_entropy(np.array([[INF, 0.0], [1.0, 2.0]]), np.array([1, 1]), reduction="none")
    assert np.isnan(per_row[0])
    assert np.isfinite(per_row[1])


def test_ignored_row_holding_nan_is_never_read():
    x = np.array([[NAN, NAN], [1.0, 2.0]])
    loss, grad = sk.cross_entropy_value_and_grad(x, np.array([-100, 1]), label_smoothing=0.1, z_loss=0.1)
    assert np.isfinite(loss)
    np.testing.assert_array_equal(grad[0], 0.0)


def test_fully_masked_row_not_ignored_is_infinite():
    loss = sk.cross_entropy(np.array([[-INF, -INF]]), np.array([0]))
    assert float(loss) == INF


def test_empty_batch(xp):
    x = xp(np.zeros((0, 4)))
    t = xp(np.zeros(0, dtype=np.int64))
    for red, shape in (("mean", ()), ("sum", ()), ("none", (0,))):
        loss, grad = sk.cross_entropy_value_and_grad(x, t, reduction=red)
        assert to_numpy(loss).shape == shape
        assert to_numpy(grad).shape == (0, 4)
        if shape == ():
            assert float(to_numpy(loss)) == 0.0
    p = xp(np.zeros((0, 4)))
    assert float(to_numpy(sk.cross_entropy(x, p))) == 0.0


def test_no_classes_with_every_row_ignored():
    loss, grad = sk.cross_entropy_value_and_grad(np.zeros((2, 0)), np.array([-100, -100]))
    assert float(loss) == 0.0
    assert grad.shape == (2, 0)


def test_single_row_and_scalar_target(xp):
    loss = sk.cross_entropy(xp([0.0, 0.0, 0.0, 0.0]), xp(np.array(2)))
    assert float(to_numpy(loss)) == pytest.approx(math.log(4.0), rel=1e-15)


@pytest.mark.parametrize(("name", "dtype"), [("torch", "float16"), ("torch", "bfloat16"), ("jax", "bfloat16")])
def test_half_precision_logits(name, dtype):
    b = LIBRARIES[name]
    x = RNG.normal(size=(4, 9)) * 5
    t = RNG.integers(0, 9, size=4)
    loss, grad = sk.cross_entropy_value_and_grad(b(x, dtype), b(t))
    assert loss.dtype == grad.dtype == b(x, dtype).dtype
    ref_loss, ref_grad = sk.cross_entropy_value_and_grad(to_numpy(b(x, dtype)).astype(np.float64), t)
    np.testing.assert_allclose(to_numpy(loss), ref_loss, **tol(dtype))
    np.testing.assert_allclose(to_numpy(grad), ref_grad, **tol(dtype))


def test_inputs_are_never_modified(xp):
    x, t, w = xp(RNG.normal(size=(3, 4))), xp(np.array([0, -100, 3])), xp(np.ones(4))
    before = to_numpy(x).copy()
    sk.cross_entropy_value_and_grad(x, t, weight=w, label_smoothing=0.2, z_loss=0.1, softcap=3.0)
    np.testing.assert_array_equal(to_numpy(x), before)
    np.testing.assert_array_equal(to_numpy(t), [0, -100, 3])
    np.testing.assert_array_equal(to_numpy(w), 1.0)


def test_jax_jit_skips_value_checks_but_computes():
    import jax
    import jax.numpy as jnp

    x = jnp.asarray(RNG.normal(size=(3, 4)))
    t = jnp.asarray([0, -100, 3])
    f = jax.jit(lambda a, b: sk.cross_entropy_value_and_grad(a, b, label_smoothing=0.1))
    loss, grad = f(x, t)
    ref_loss, ref_grad = sk.cross_entropy_value_and_grad(np.asarray(x), np.asarray(t), label_smoothing=0.1)
    np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-14)
    np.testing.assert_allclose(np.asarray(grad), ref_grad, rtol=1e-14)


# ------------------------------------------------------------------------------------------------------ errors
def test_label_out_of_range_names_value_and_position():
    with pytest.raises(ValueError, match=r"class index 7 at position \(1, 0\), outside \[0, 5\)"):
        sk.cross_entropy(np.zeros((2, 5, 2)), np.array([[0, 1], [7, 2]]), axis=1)
    with pytest.raises(ValueError, match=r"class index -1 at position \(0,\)"):
        sk.cross_entropy(np.zeros((2, 5)), np.array([-1, 2]))


def test_ignore_index_inside_the_class_range_is_allowed():
    x = RNG.normal(size=(3, 4))
    t = np.array([0, 2, 2])
    ref, _ = _torch_ce(x, t, -1, ignore_index=2)
    assert float(sk.cross_entropy(x, t, ignore_index=2)) == pytest.approx(float(ref), rel=1e-14)


def test_target_shape_errors_name_both_shapes():
    with pytest.raises(ValueError, match=r"without axis 1, \(2, 3\); got shape \(2,\) \(logits shape \(2, 5, 3\)\)"):
        sk.cross_entropy(np.zeros((2, 5, 3)), np.array([0, 1]), axis=1)
    with pytest.raises(
        ValueError,
        match=r"target \(probabilities\) must have the logits' shape \(2, 5\); got \(5, 2\)".replace(
            "got", "got shape"
        ),
    ):
        sk.cross_entropy(np.zeros((2, 5)), np.zeros((5, 2)))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"reduction": "avg"}, ValueError, "reduction must be one of 'mean', 'sum', 'none'; got 'avg'"),
        ({"label_smoothing": 1.5}, ValueError, r"label_smoothing must lie in \[0, 1\]; got 1.5"),
        ({"label_smoothing": -0.1}, ValueError, r"label_smoothing must lie in \[0, 1\]; got -0.1"),
        ({"z_loss": -1e-4}, ValueError, "z_loss must be a finite number >= 0; got -0.0001"),
        ({"softcap": 0.0}, ValueError, "softcap must be a finite number > 0; got 0.0"),
        ({"ignore_index": 1.5}, TypeError, "ignore_index must be an int; got 1.5"),
        ({"weight": np.array([1.0, -2.0, 1.0])}, ValueError, "weight must be finite and >= 0; got -2.0 for class 1"),
        ({"weight": np.array([1.0, NAN, 1.0])}, ValueError, "weight must be finite and >= 0; got nan for class 1"),
        ({"weight": np.ones(4)}, ValueError, r"one entry per class \(3\); got shape \(4,\)"),
        ({"axis": 2}, ValueError, "axis=2 is out of range"),
    ],
)
def test_option_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        sk.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), **kwargs)


def test_bool_target_is_a_type_error():
    with pytest.raises(TypeError, match="target must hold integer class indices or floating probabilities; got"):
        sk.cross_entropy(np.zeros((2, 3)), np.array([True, False]))


@pytest.mark.parametrize("bad", [-0.5, NAN, INF])
def test_probability_target_values_checked(bad):
    t = np.array([[0.5, 0.5, 0.0], [0.2, bad, 0.3]])
    message = rf"target probabilities must be finite and >= 0; got {bad} at position \(1, 1\)"
    with pytest.raises(ValueError, match=message):
        sk.cross_entropy(np.zeros((2, 3)), t)


def test_ignore_index_with_probability_targets_is_rejected():
    with pytest.raises(ValueError, match="ignore_index=3 has no meaning for probability targets"):
        sk.cross_entropy(np.zeros((2, 3)), np.full((2, 3), 1 / 3), ignore_index=3)


# -------------------------------------------------------------------------------------------- regressions
@pytest.mark.parametrize("x", [[91.0, 1.0], [89.0, 1.0], [-91.0, -1.0], [1e30, 3.0]])
def test_softcap_float32_large_logits_do_not_overflow(x):
    # the sinh/cosh form of the capped difference once overflowed in float32 past |z/c| ~ 89: nan or 0.6931
    got = sk.cross_entropy(np.array([x], dtype=np.float32), np.array([0]), softcap=1.0)
    ref = sk.cross_entropy(np.tanh(np.array([x], dtype=np.float64)), np.array([0]))
    assert float(got) == pytest.approx(float(ref), rel=4 * eps("float32"))


@pytest.mark.parametrize(
    ("dtype", "weight"), [("float64", [2.0**-1024, 1.0]), ("float64", [1e-310, 1.0]), ("float32", [2.0**-128, 1.0])]
)
def test_mean_with_subnormal_total_weight_is_finite(dtype, weight):
    # 1 / (subnormal total weight) overflowed to inf: loss and gradient came out inf or nan
    x = np.zeros((1, 2), dtype=dtype)
    loss, grad = sk.cross_entropy_value_and_grad(x, np.array([0]), weight=np.array(weight, dtype=dtype))
    assert float(loss) == pytest.approx(math.log(2.0), rel=1e-6)
    np.testing.assert_allclose(grad, [[-0.5, 0.5]], rtol=1e-6)


def test_zero_weight_row_with_smoothing_keeps_its_gradient_when_not_averaged():
    # the mean's "nothing to average" guard must not zero the gradient of sum / none
    _, grad = sk.cross_entropy_value_and_grad(
        np.zeros((1, 2)), np.array([0]), weight=np.array([0.0, 1.0]), label_smoothing=1.0, reduction="none"
    )
    np.testing.assert_allclose(grad, [[0.25, -0.25]], rtol=1e-15)

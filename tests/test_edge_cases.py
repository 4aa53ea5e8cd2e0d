"""Regression tests for the edge cases of issue 16, each named after the bug it pins.

A fuzz run and a new user's trial found wrong results, crashes and unclear errors on extreme or unusual input;
the property-based fuzz test that keeps finding them is tests/test_fuzz.py.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import softmaxkit as sk
import softmaxkit.family as family
from softmaxkit.softmax import log_softmax_vjp, softmax_jvp, softmax_vjp

BACKENDS = ["reference", "numba"]


# ------------------------------------------------------------------- scales outside float32's range
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("value", [1e-300, 1e-40, 1e39, 1e300])
def test_scale_outside_float32_range_is_rejected(backend, dtype, value):
    """Issue 16: temperature/softcap outside float32's range gave all-nan rows (and 1.214 vs 1.386 at 1e-40)."""
    x = np.array([[1.0, 2.0, 3.0, 0.5]], dtype=dtype)
    with sk.backend(backend):
        for call in (
            lambda: sk.softmax(x, temperature=value),
            lambda: sk.log_softmax(x, temperature=value),
            lambda: softmax_vjp(x, x, temperature=value),
        ):
            with pytest.raises(ValueError, match=rf"temperature must lie in .*got {re.escape(repr(value))}"):
                call()
        with pytest.raises(ValueError, match=rf"softcap must lie in .*got {re.escape(repr(value))}"):
            sk.cross_entropy(x, np.array([1]), softcap=value)


def test_scale_outside_float32_range_is_rejected_by_the_fronts():
    torch = pytest.importorskip("torch")
    jnp = pytest.importorskip("jax.numpy")
    from softmaxkit.jax import cross_entropy as jax_ce
    from softmaxkit.torch import cross_entropy as torch_ce

    with pytest.raises(ValueError, match="softcap must lie in"):
        torch_ce(torch.zeros(2, 3), torch.tensor([0, 1]), softcap=1e39)
    with pytest.raises(ValueError, match="softcap must lie in"):
        jax_ce(jnp.zeros((2, 3)), jnp.array([0, 1]), softcap=1e-300)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("value", [float(np.finfo(np.float32).smallest_normal), float(np.finfo(np.float32).max)])
def test_scale_at_float32_range_ends_is_finite(backend, dtype, value):
    x = np.array([[1.0, 2.0, 3.0, 0.5], [1e30, -1e30, 0.0, 1.0]], dtype=dtype)
    with sk.backend(backend):
        p = sk.softmax(x, temperature=value)
        loss, grad = sk.cross_entropy_value_and_grad(x, np.array([1, 2]), softcap=value, reduction="none")
    assert np.all(np.isfinite(p))
    assert np.allclose(p.sum(axis=-1), 1.0, rtol=1e-6)
    assert np.all(np.isfinite(loss))
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("backend", BACKENDS)
def test_kernel_softcap_with_overflowing_quotient_is_not_a_mask(backend):
    """Issue 16: the kernel took a logit whose z / c overflows to -inf for a masked one: 1e308 instead of 1.386."""
    z = np.array([[1e308, -1e308, 0.0, 1.0]])
    for cap in (1e-30, 1e-37):
        loss = sk.cross_entropy(z, np.array([1]), softcap=cap, backend=backend)
        assert float(loss) == pytest.approx(math.log(4.0), rel=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_softcap_near_the_float32_maximum_matches_the_reference(dtype):
    """2c overflowed in the kernel's cancellation-free formula for c near the maximum (now c is applied last)."""
    z = np.array([[1e38, -1e38, 0.0, 1.0], [1e7, 1e7 + 1, 1e7 - 3, 1e7 + 0.5]], dtype=dtype)
    for cap in (3e38, 1e38):
        ref = sk.cross_entropy_value_and_grad(z, np.array([1, 1]), softcap=cap, reduction="none", backend="reference")
        ker = sk.cross_entropy_value_and_grad(z, np.array([1, 1]), softcap=cap, reduction="none", backend="numba")
        tol = 4 * np.finfo(dtype).eps
        assert np.all(np.isfinite(ref[0]))
        assert np.all(np.isfinite(ref[1]))
        np.testing.assert_allclose(ker[0], ref[0], rtol=tol)
        np.testing.assert_allclose(ker[1], ref[1], rtol=tol, atol=tol)


# -------------------------------------------------------------------------- what is not an array
@pytest.mark.parametrize("value", [None, "abc", {}, {1, 2}, b"xy", object()])
def test_non_array_input_names_x_and_its_type(value):
    """Issue 16: softmax(None), ("abc"), ({}) said "needs an array with at least one dimension"."""
    with pytest.raises(TypeError, match=rf"x must be an array or a sequence of numbers; got {type(value).__name__}"):
        sk.softmax(value)
    with pytest.raises(TypeError, match="logits must be an array"):
        sk.cross_entropy(value, np.array([0]))


def test_ragged_list_gets_our_message():
    """Issue 16: a ragged list gave NumPy's "inhomogeneous shape" message."""
    with pytest.raises(ValueError, match="x is a ragged sequence"):
        sk.softmax([[1.0, 2.0], [3.0]])
    with pytest.raises(ValueError, match="target is a ragged sequence"):
        sk.cross_entropy(np.zeros((2, 3)), [[0, 1], [2]])


def test_masked_array_is_refused():
    """Issue 16: a NumPy masked array was read as its data (softmax of [1, 2, 3] with 3 masked gave 20.09).

    We refuse masked arrays (TypeError) rather than guess: ``where=~mask`` is one keyword away for the
    functions that have it, and a loss has no meaning for a masked logit.
    """
    x = np.ma.masked_array([1.0, 2.0, 3.0], mask=[False, False, True])
    with pytest.raises(TypeError, match="MaskedArray"):
        sk.softmax(x)
    with pytest.raises(TypeError, match="MaskedArray"):
        sk.cross_entropy(np.zeros((1, 3)), np.ma.masked_array([0], mask=[True]))
    with pytest.raises(TypeError, match="MaskedArray"):
        sk.softmax(np.zeros(3), where=np.ma.masked_array([True, True, False]))
    np.testing.assert_allclose(sk.softmax(x.data, where=~x.mask), [0.26894142, 0.73105858, 0.0])


# ------------------------------------------------------------------------- NumPy beside other libraries
def test_numpy_labels_beside_jax_logits_are_accepted():
    """Issue 16: cross_entropy(jnp_logits, np_labels) was refused; jax and optax accept it."""
    jnp = pytest.importorskip("jax.numpy")
    z = jnp.asarray([[0.0, 1.0, 2.0], [1.0, 0.0, -1.0]])
    want = sk.cross_entropy(z, jnp.asarray([2, 0]))
    for labels in (np.array([2, 0]), [2, 0]):
        got = sk.cross_entropy(z, labels)
        assert type(got) is type(want)
        assert float(got) == pytest.approx(float(want), rel=1e-6)
    got = sk.cross_entropy(np.asarray(z), jnp.asarray([2, 0]))  # NumPy logits beside JAX labels: JAX result
    assert type(got) is type(want)


def test_numpy_beside_torch_is_converted_to_torch():
    torch = pytest.importorskip("torch")
    z = torch.tensor([[0.0, 1.0, 2.0]])
    loss = sk.cross_entropy(z, np.array([1]), weight=np.array([1.0, 2.0, 3.0]))
    assert isinstance(loss, torch.Tensor)
    assert loss.dtype == torch.float32
    p = sk.softmax(np.array([0.0, 1.0, 2.0], dtype=np.float32), where=torch.tensor([True, True, False]))
    assert isinstance(p, torch.Tensor)
    np.testing.assert_allclose(p.numpy(), [0.26894142, 0.73105858, 0.0], rtol=1e-6)
    lse = sk.logsumexp(np.zeros(3), b=torch.ones(3, dtype=torch.float64))
    assert isinstance(lse, torch.Tensor)
    assert float(lse) == pytest.approx(math.log(3.0))


def test_two_tensor_libraries_are_still_refused():
    torch = pytest.importorskip("torch")
    jnp = pytest.importorskip("jax.numpy")
    with pytest.raises(TypeError, match="one array library"):
        sk.cross_entropy(torch.zeros(2, 3), jnp.asarray([0, 1]))
    with pytest.raises(TypeError, match="one array library"):
        sk.softmax(jnp.zeros(3), where=torch.ones(3, dtype=torch.bool))


# --------------------------------------------------------------------------------------- torch front
def test_linear_cross_entropy_accepts_torch_name_linear_bias():
    """Issue 16: torch 2.13's linear_cross_entropy calls the bias linear_bias."""
    torch = pytest.importorskip("torch")
    from softmaxkit.torch import linear_cross_entropy

    g = torch.Generator().manual_seed(0)
    h, w, b = torch.randn(5, 4, generator=g), torch.randn(7, 4, generator=g), torch.randn(7, generator=g)
    y = torch.tensor([0, 3, 6, 1, 2])
    want = linear_cross_entropy(h, w, y, bias=b)
    assert torch.equal(linear_cross_entropy(h, w, y, linear_bias=b), want)
    with pytest.raises(TypeError, match="bias or linear_bias"):
        linear_cross_entropy(h, w, y, bias=b, linear_bias=b)


def test_linear_cross_entropy_loss_repr_shows_our_options():
    """Issue 16: the repr showed torch's ignore_index=None and options=None, not z_loss/softcap/chunk_size."""
    pytest.importorskip("torch")
    from softmaxkit.torch import LinearCrossEntropyLoss

    text = repr(LinearCrossEntropyLoss(4, 10, z_loss=1e-4, softcap=30.0, chunk_size=(64, 8)))
    for piece in ("in_features=4", "num_classes=10", "z_loss=0.0001", "softcap=30.0", "chunk_size=(64, 8)"):
        assert piece in text
    assert "ignore_index=-100" in text
    assert "ignore_index=None" not in text
    assert "options=" not in text


# --------------------------------------------------------------------------- SciPy's axis=None and tuples
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("axis", [None, (0,), (1, 2), (2, 0), (0, 1, 2), (-1, -3)])
def test_axis_none_and_tuples_match_scipy(backend, axis):
    """Issue 16: SciPy users pass axis=None (the whole array) or a tuple of axes; we only took an int."""
    special = pytest.importorskip("scipy.special")
    x = np.random.default_rng(0).normal(size=(2, 3, 4)) * 3
    for ours, theirs in (
        (sk.softmax, special.softmax),
        (sk.log_softmax, special.log_softmax),
        (sk.logsumexp, special.logsumexp),
    ):
        got, want = ours(x, axis=axis, backend=backend), theirs(x, axis=axis)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14)
    got = sk.logsumexp(x, axis=axis, keepdims=True, backend=backend)
    want = special.logsumexp(x, axis=axis, keepdims=True)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-13)
    lse, sign = sk.logsumexp(x, axis=axis, b=x, return_sign=True)
    want_lse, want_sign = special.logsumexp(x, axis=axis, b=x, return_sign=True)
    np.testing.assert_allclose(lse, want_lse, rtol=1e-12)
    np.testing.assert_array_equal(sign, want_sign)


@pytest.mark.parametrize("axis", [None, (1, 2), (2, 0)])
def test_axis_tuple_derivatives_match_finite_differences(axis):
    special = pytest.importorskip("scipy.special")
    rng = np.random.default_rng(1)
    x, v = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    g = softmax_vjp(x, v, axis=axis)
    np.testing.assert_allclose(softmax_jvp(x, v, axis=axis), g, rtol=1e-14, atol=1e-15)  # J is symmetric
    eps, i = 1e-6, (1, 2, 3)
    up, down = x.copy(), x.copy()
    up[i] += eps
    down[i] -= eps
    fd = (np.sum(v * special.softmax(up, axis=axis)) - np.sum(v * special.softmax(down, axis=axis))) / (2 * eps)
    assert g[i] == pytest.approx(fd, abs=1e-8)
    gl = log_softmax_vjp(x, v, axis=axis)
    fd = (np.sum(v * special.log_softmax(up, axis=axis)) - np.sum(v * special.log_softmax(down, axis=axis))) / (2 * eps)
    assert gl[i] == pytest.approx(fd, abs=1e-7)


def test_axis_none_of_a_scalar_is_one_distribution():
    assert float(sk.softmax(np.float64(3.0), axis=None)) == 1.0
    assert float(sk.logsumexp(np.float64(3.0), axis=None)) == 3.0


@pytest.mark.parametrize(
    ("axis", "error", "match"),
    [
        ((), ValueError, "names no axis"),
        ((0, 0), ValueError, "repeats"),
        ((5,), ValueError, "out of range"),
        ((1.0,), TypeError, "tuple of ints"),
    ],
)
def test_bad_axis_tuples_are_named(axis, error, match):
    with pytest.raises(error, match=match):
        sk.softmax(np.zeros((2, 3)), axis=axis)


def test_default_axis_stays_last():
    x = np.array([[0.0, 1.0], [2.0, 0.0]])
    np.testing.assert_allclose(sk.softmax(x), sk.softmax(x, axis=-1))
    assert not np.allclose(sk.softmax(x), sk.softmax(x, axis=None))


# ------------------------------------------------------------------------------------------ JAX temperature
def test_jax_temperature_may_be_traced_under_jit():
    """Issue 16: a traced temperature under jax.jit raised TypeError (it must be a Python number)."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    x = jnp.asarray([[1.0, 2.0, 4.0]])
    for f in (sk.softmax, sk.log_softmax):
        jitted = jax.jit(lambda z, t, f=f: f(z, temperature=t))
        np.testing.assert_allclose(np.asarray(jitted(x, 2.0)), np.asarray(f(x, temperature=2.0)), rtol=1e-6)
    grad = jax.grad(lambda t: sk.softmax(x, temperature=t)[0, 2])(2.0)  # d p_top / dT < 0: flatter
    assert float(grad) < 0
    jac = jax.jit(lambda z, t: softmax_vjp(z, z, temperature=t))(x, 0.5)
    np.testing.assert_allclose(np.asarray(jac), np.asarray(softmax_vjp(x, x, temperature=0.5)), rtol=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        sk.softmax(x, temperature=jnp.asarray(-1.0))  # a concrete array is still checked


# --------------------------------------------------------------------------------------------- normalize
def test_normalize_of_scores_near_the_float_maximum_does_not_overflow():
    """Issue 16: normalize([1e308, 1e308, 0, 1]) gave nan (the sum overflows), and so did its derivatives."""
    x = np.array([1e308, 1e308, 0.0, 1.0])
    np.testing.assert_array_equal(sk.normalize(x)[:3], [0.5, 0.5, 0.0])
    assert sk.normalize(x)[3] == pytest.approx(5e-309, rel=1e-6)
    for derivative in (
        family.normalize_jvp(x, np.ones(4)),
        family.normalize_vjp(x, np.arange(4.0)),
        family.normalize_jacobian(x),
    ):
        assert np.all(np.isfinite(derivative))
    # J = (I - p 1^T) / S with S = 2e308: entries of size 1 / S
    np.testing.assert_allclose(family.normalize_jacobian(x)[2, 2], 5e-309, rtol=1e-6)
    y = np.array([1.0, 3.0], dtype=np.float32) * np.float32(1e38)
    np.testing.assert_allclose(sk.normalize(y), [0.25, 0.75], rtol=1e-7)


# ------------------------------------------------------------------------------------ huge ignore_index
def test_ignore_index_beyond_the_label_dtype_ignores_nothing():
    """Issue 16: ignore_index=2**70 (torch) and 2**63 (JAX int32 labels) raised OverflowError."""
    want = math.log(3.0)
    torch = pytest.importorskip("torch")
    import softmaxkit.torch as skt

    z, y = torch.zeros(2, 3), torch.tensor([0, 1])
    for loss in (
        skt.cross_entropy(z, y, ignore_index=2**70),
        skt.CrossEntropyLoss(ignore_index=2**70)(z, y),
        skt.linear_cross_entropy(torch.zeros(2, 4), torch.zeros(3, 4), y, ignore_index=2**70),
        sk.cross_entropy(z, y, ignore_index=2**70),
        sk.cross_entropy(z.numpy(), y.numpy(), ignore_index=2**70),
    ):
        assert float(loss) == pytest.approx(want, rel=1e-6)
    assert float(sk.sparsemax_loss(z, y, ignore_index=-(2**70))) == pytest.approx(1 / 3, rel=1e-6)
    jax = pytest.importorskip("jax")
    from softmaxkit.jax import cross_entropy as jax_ce

    zj, yj = jax.numpy.zeros((2, 3)), jax.numpy.asarray([0, 1])
    for ignore in (2**31, 2**63, -(2**70)):
        assert float(jax_ce(zj, yj, ignore_index=ignore)) == pytest.approx(want, rel=1e-6)
        assert float(sk.cross_entropy(zj, yj, ignore_index=ignore)) == pytest.approx(want, rel=1e-6)


def test_sparse_torch_tensor_is_a_type_error():
    """Issue 16: torch sparse tensors reached torch's own NotImplementedError."""
    torch = pytest.importorskip("torch")
    import softmaxkit.torch as skt

    sparse = torch.eye(3).to_sparse()
    with pytest.raises(TypeError, match=r"x is a sparse torch tensor .*to_dense"):
        sk.softmax(sparse)
    with pytest.raises(TypeError, match="logits is a sparse"):
        sk.cross_entropy(sparse, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="input is a sparse tensor"):
        skt.softmax(sparse, dim=-1)
    with pytest.raises(TypeError, match="input is a sparse tensor"):
        skt.cross_entropy(sparse, torch.tensor([0, 1, 2]))


LOSSES = [
    "cross_entropy",
    "entmax15_loss",
    "entmax_bisect_loss",
    "multiclass_hinge_loss",
    "sigmoid_cross_entropy",
    "softplus_normalize_cross_entropy",
    "sparsemax_loss",
    "spherical_cross_entropy",
    "taylor_cross_entropy",
]


@pytest.mark.parametrize("name", LOSSES)
def test_family_loss_with_tensor_requiring_grad_does_not_warn(name):
    """Issue 16: torch.asarray of a tensor that requires grad warned (UserWarning) in every family loss."""
    torch = pytest.importorskip("torch")
    z = torch.zeros(2, 3, requires_grad=True)
    loss = getattr(sk, name)(z, torch.tensor([0, 1]))  # filterwarnings=error turns a warning into a failure
    assert loss.shape == ()


# ----------------------------------------------------------------------------------------- class weights
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan, -1.0])
def test_weight_with_inf_is_rejected(bad):
    """Issue 16: a weight holding inf was accepted and gave nan, in every loss and both fronts."""
    z, y = np.zeros((2, 3)), np.array([0, 1])
    weight = np.array([1.0, bad, 1.0])
    for name in LOSSES:
        with pytest.raises(ValueError, match=r"weight must be finite and >= 0; got .* for class 1"):
            getattr(sk, name)(z, y, weight=weight)
    torch = pytest.importorskip("torch")
    import softmaxkit.torch as skt

    with pytest.raises(ValueError, match="weight must be finite and >= 0"):
        skt.cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1]), weight=torch.tensor(weight))
    with pytest.raises(ValueError, match="weight must be finite and >= 0"):
        skt.linear_cross_entropy(
            torch.zeros(2, 4), torch.zeros(3, 4), torch.tensor([0, 1]), weight=torch.tensor(weight)
        )
    jnp = pytest.importorskip("jax.numpy")
    from softmaxkit.jax import cross_entropy as jax_ce

    with pytest.raises(ValueError, match="weight must be finite and >= 0"):
        jax_ce(jnp.zeros((2, 3)), jnp.asarray([0, 1]), weight=jnp.asarray(weight))


# ------------------------------------------------------------------------------------- label smoothing
@pytest.mark.parametrize("backend", ["reference"])
def test_float32_label_smoothing_with_opposite_huge_logits_is_finite(backend):
    """Issue 16: float32 smoothing with logits of +-1e38 gave inf on the reference (z - m overflows float32).

    The smoothing term is formed in float64: 0.1/3 * (6e38 + ...) = 3e37 fits float32.
    """
    z = np.array([[3e38, -3e38, 0.0]], dtype=np.float32)
    want = 0.1 / 3 * (6e38 + 3e38)  # the target's own term is 0: it holds the maximum
    got = sk.cross_entropy(z, np.array([0]), label_smoothing=0.1, backend=backend)
    assert float(got) == pytest.approx(want, rel=1e-6)
    probs = np.array([[0.9, 0.1, 0.0]], dtype=np.float32)
    assert float(sk.cross_entropy(z, probs, backend=backend)) == pytest.approx(0.1 * 6e38, rel=1e-6)


# ------------------------------------------------------------------------------- labels under jax.jit
def test_out_of_range_label_under_jit_is_a_nan_row():
    """Issue 16: under jax.jit, softmaxkit.cross_entropy clamped an unchecked label (a plausible wrong loss)."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    z, y = jnp.zeros((3, 4)), jnp.asarray([0, 4, -1])
    rows = jax.jit(lambda z, y: sk.cross_entropy(z, y, reduction="none"))(z, y)
    assert float(rows[0]) == pytest.approx(math.log(4.0), rel=1e-6)
    assert bool(jnp.isnan(rows[1]))
    assert bool(jnp.isnan(rows[2]))
    loss, grad = jax.jit(lambda z, y: sk.cross_entropy_value_and_grad(z, y))(z, y)
    assert bool(jnp.isnan(loss))
    assert bool(jnp.all(jnp.isnan(grad[1])))
    for name in ("sparsemax_loss", "multiclass_hinge_loss", "taylor_cross_entropy"):
        f = getattr(sk, name)
        rows = jax.jit(lambda z, y, f=f: f(z, y, reduction="none"))(z, y)
        assert not bool(jnp.isnan(rows[0])), name
        assert bool(jnp.isnan(rows[1])), name
    ignored = jax.jit(lambda z, y: sk.cross_entropy(z, y, ignore_index=-1, reduction="none"))(
        z, jnp.asarray([0, 1, -1])
    )
    assert float(ignored[2]) == 0.0  # ignore_index is not out of range


# ----------------------------------------------------------------------------------------- debug_nans
DEBUG_NANS_FUNCTIONS = [
    "softmax",
    "log_softmax",
    "logsumexp",
    "softplus_normalize",
    "log_softplus_normalize",
    "softplus_normalize_jacobian",
    "sparsemax",
    "sigmoid",
    "taylor_softmax",
    "spherical_softmax",
]


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("name", DEBUG_NANS_FUNCTIONS)
def test_finite_input_under_debug_nans_raises_nothing(name, jit):
    """Issue 16: under jax.debug_nans a nan formed in a discarded branch (log1p(u) / u at u = 0) raised."""
    jax = pytest.importorskip("jax")
    x = jax.numpy.asarray([[100.0, -100.0, 0.0], [88.0, 89.0, -89.0], [1.0, 2.0, 3.0]], dtype=jax.numpy.float32)
    f = getattr(sk, name, None) or getattr(family, name)
    with jax.debug_nans(True):
        out = (jax.jit(f) if jit else f)(x)
        jax.block_until_ready(out)
    assert not bool(jax.numpy.any(jax.numpy.isnan(out)))


def test_jax_temperature_near_float32_max_keeps_masked_entries() -> None:
    # XLA divided -inf (a masked entry) by T = 3e38 as -inf * (1/T), and 1/T flushed to 0: nan for the kept entry
    jnp = pytest.importorskip("jax.numpy")
    from softmaxkit.softmax import log_softmax_jvp

    x = np.zeros((2, 4), np.float32)
    keep = np.array([[False] * 4, [False, False, False, True]])
    got = log_softmax_jvp(jnp.asarray(x), jnp.asarray(x), axis=0, temperature=3e38, where=jnp.asarray(keep))
    np.testing.assert_array_equal(np.asarray(got), np.zeros((2, 4)))
    p = sk.softmax(jnp.asarray(x), axis=0, temperature=3e38, where=jnp.asarray(keep))
    np.testing.assert_array_equal(np.asarray(p), keep.astype(np.float32))

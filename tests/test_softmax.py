"""Behaviour of softmax, log_softmax, logsumexp and their derivatives on every backend.

The special-value policy of softmaxkit.softmax, one test per row of the docstring tables; dtype policy; axis and
``where`` handling; errors. Accuracy against mpmath lives in test_accuracy.py, properties in test_properties.py.
"""

from __future__ import annotations

import math

import array_api_compat
import numpy as np
import pytest
import scipy.special

import softmaxkit as sk
from conftest import LIBRARIES, eps, to_numpy, tol
from softmaxkit.softmax import log_softmax_jvp, log_softmax_vjp, softmax_jacobian, softmax_jvp, softmax_vjp

INF, NAN = math.inf, math.nan
MAPPINGS = [sk.softmax, sk.log_softmax]
DERIVATIVES = [softmax_jvp, softmax_vjp, log_softmax_vjp, log_softmax_jvp]


def _np_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return scipy.special.softmax(x, axis=axis)


# ------------------------------------------------------------------------------------------------ values
def test_seed_example_dog_cat_baby_tiger(xp):
    p = to_numpy(sk.softmax(xp([5.0, 2.0, -1.0, 3.0])))
    np.testing.assert_array_equal(np.round(p, 3), [0.842, 0.042, 0.002, 0.114])


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2])
def test_matches_scipy_along_any_axis(xp, axis):
    x = np.random.default_rng(1).normal(size=(3, 4, 5)) * 4
    got = sk.softmax(xp(x), axis=axis)
    np.testing.assert_allclose(to_numpy(got), _np_softmax(x, axis), **tol("float64"))
    np.testing.assert_allclose(
        to_numpy(sk.log_softmax(xp(x), axis=axis)), scipy.special.log_softmax(x, axis=axis), **tol("float64")
    )
    np.testing.assert_allclose(
        to_numpy(sk.logsumexp(xp(x), axis=axis)), scipy.special.logsumexp(x, axis=axis), **tol("float64")
    )


def test_keepdims(xp):
    x = np.random.default_rng(2).normal(size=(3, 4))
    got = to_numpy(sk.logsumexp(xp(x), axis=0, keepdims=True))
    assert got.shape == (1, 4)
    np.testing.assert_allclose(got, scipy.special.logsumexp(x, axis=0, keepdims=True), **tol("float64"))


def test_same_array_type_out(xp):
    x = xp([[1.0, 2.0], [3.0, 5.0]])
    for f in (sk.softmax, sk.log_softmax, sk.logsumexp):
        assert type(f(x)) is type(x)


def test_python_sequences_become_numpy():
    out = sk.softmax([1, 2])
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [0.26894142136999510, 0.7310585786300049], rtol=1e-15)


def test_seeds_blurry_versus_crisp():
    np.testing.assert_allclose(sk.softmax(np.array([10.0, 20.0])), [4.5397868702434395e-05, 0.9999546021312976])


def test_naive_formula_overflows_but_softmax_does_not():
    x = np.array([1000.0, 1001.0])
    with np.errstate(all="ignore"):
        naive = np.exp(x) / np.sum(np.exp(x))
    assert np.all(np.isnan(naive))
    np.testing.assert_allclose(sk.softmax(x), [0.2689414213699951, 0.7310585786300049], rtol=1e-15)


def test_temperature_is_division_of_logits(xp):
    x = np.array([[5.0, 2.0, -1.0, 3.0], [0.1, 0.2, 0.3, 0.4]])
    for t in (0.25, 1.0, 3.0):
        np.testing.assert_allclose(to_numpy(sk.softmax(xp(x), temperature=t)), _np_softmax(x / t))
        np.testing.assert_allclose(
            to_numpy(sk.log_softmax(xp(x), temperature=t)), scipy.special.log_softmax(x / t, axis=-1)
        )


def test_temperature_subtracts_max_before_dividing():
    # x/T rounds x relative to |x| (1e7 here); (x - max)/T only relative to |x - max|.
    x = np.array([1e7, 1e7 + 1.0])
    expected = _np_softmax(np.array([0.0, 1.0]) / 3.0)
    np.testing.assert_allclose(sk.softmax(x, temperature=3.0), expected, rtol=4 * eps("float64"))


# -------------------------------------------------------------------------------------- special values
def test_fully_masked_row_gives_zeros_and_minus_inf(xp):
    x = xp([[-INF, -INF, -INF], [1.0, 2.0, 3.0]])
    p, lp, lse = (to_numpy(f(x)) for f in (sk.softmax, sk.log_softmax, sk.logsumexp))
    np.testing.assert_array_equal(p[0], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(lp[0], [-INF, -INF, -INF])
    assert lse[0] == -INF
    np.testing.assert_allclose(p[1], _np_softmax(np.array([1.0, 2.0, 3.0])))


def test_fully_masked_by_where(xp):
    x = xp([[1.0, 2.0], [3.0, 4.0]])
    mask = xp([[False, False], [True, False]])
    p = to_numpy(sk.softmax(x, where=mask))
    np.testing.assert_array_equal(p, [[0.0, 0.0], [1.0, 0.0]])
    np.testing.assert_array_equal(to_numpy(sk.log_softmax(x, where=mask)), [[-INF, -INF], [0.0, -INF]])
    np.testing.assert_array_equal(to_numpy(sk.logsumexp(x, where=mask)), [-INF, 3.0])


@pytest.mark.parametrize("f", [*DERIVATIVES, softmax_jacobian], ids=lambda f: f.__name__)
def test_fully_masked_row_derivatives_are_zero(xp, f):
    x = xp([[-INF, -INF, -INF], [0.5, -INF, 2.0]])
    args = (x,) if f is softmax_jacobian else (x, xp(np.ones((2, 3))))
    out = to_numpy(f(*args))
    assert not np.any(np.isnan(out))
    np.testing.assert_array_equal(out[0], 0.0)
    # the masked entry of the second row: exactly 0 (its row and column, for the Jacobian)
    if f is softmax_jacobian:
        np.testing.assert_array_equal(out[1, 1, :], 0.0)
        np.testing.assert_array_equal(out[1, :, 1], 0.0)
    else:
        assert out[1, 1] == 0.0


def test_masked_entries_get_exact_zero_probability(xp):
    x = xp([[0.0, -INF, 1e-3, 700.0]])
    p = to_numpy(sk.softmax(x))
    assert p[0, 1] == 0.0
    assert to_numpy(sk.log_softmax(x))[0, 1] == -INF


def test_nan_poisons_only_its_row(xp):
    x = xp([[1.0, NAN, 2.0], [1.0, 2.0, 3.0]])
    for f in (sk.softmax, sk.log_softmax):
        out = to_numpy(f(x))
        assert np.all(np.isnan(out[0]))
        assert not np.any(np.isnan(out[1]))
    lse = to_numpy(sk.logsumexp(x))
    assert np.isnan(lse[0])
    assert np.isfinite(lse[1])
    for f in DERIVATIVES:
        out = to_numpy(f(x, xp(np.ones((2, 3)))))
        assert np.all(np.isnan(out[0]))
        assert not np.any(np.isnan(out[1]))


def test_nan_with_minus_inf_is_still_nan(xp):
    out = to_numpy(sk.softmax(xp([[NAN, -INF, -INF]])))
    assert np.all(np.isnan(out))


def test_plus_inf_gives_nan_softmax_but_inf_logsumexp(xp):
    x = xp([[INF, 1.0, 2.0], [INF, INF, 0.0], [1.0, 2.0, 3.0]])
    assert np.all(np.isnan(to_numpy(sk.softmax(x))[:2]))
    assert np.all(np.isnan(to_numpy(sk.log_softmax(x))[:2]))
    lse, sign = (to_numpy(a) for a in sk.logsumexp(x, return_sign=True))
    np.testing.assert_array_equal(lse[:2], [INF, INF])
    np.testing.assert_array_equal(sign, [1.0, 1.0, 1.0])


def test_empty_axis(xp):
    x = xp(np.zeros((3, 0)))
    assert to_numpy(sk.softmax(x)).shape == (3, 0)
    assert to_numpy(sk.log_softmax(x)).shape == (3, 0)
    np.testing.assert_array_equal(to_numpy(sk.logsumexp(x)), [-INF, -INF, -INF])
    lse, sign = sk.logsumexp(x, keepdims=True, return_sign=True)
    assert to_numpy(lse).shape == (3, 1)
    np.testing.assert_array_equal(to_numpy(sign), 0.0)
    assert to_numpy(softmax_jacobian(x)).shape == (3, 0, 0)
    assert to_numpy(softmax_vjp(x, x)).shape == (3, 0)


def test_empty_batch(xp):
    x = xp(np.zeros((0, 4)))
    assert to_numpy(sk.softmax(x)).shape == (0, 4)
    assert to_numpy(sk.logsumexp(x)).shape == (0,)


def test_row_of_length_one_is_certain(xp):
    x = xp([[-3.0], [1e30], [-INF]])
    np.testing.assert_array_equal(to_numpy(sk.softmax(x)), [[1.0], [1.0], [0.0]])
    np.testing.assert_array_equal(to_numpy(sk.log_softmax(x)), [[0.0], [0.0], [-INF]])
    np.testing.assert_array_equal(to_numpy(sk.logsumexp(x)), [-3.0, 1e30, -INF])


def test_exact_ties_are_uniform(xp):
    x = xp([[7.0, 7.0, 7.0, 7.0]])
    np.testing.assert_array_equal(to_numpy(sk.softmax(x)), [[0.25] * 4])
    np.testing.assert_allclose(to_numpy(sk.logsumexp(x)), [7.0 + math.log(4)], rtol=1e-16)


# ------------------------------------------------------------------------------------------------ dtypes
HALF = [("numpy", "float16"), ("torch", "float16"), ("torch", "bfloat16"), ("jax", "float16"), ("jax", "bfloat16")]


@pytest.mark.parametrize(("name", "dtype"), HALF)
def test_half_precision_computed_in_float32_returned_as_is(name, dtype):
    backend = LIBRARIES[name]
    x32 = np.array([[0.0, 10.0, 20.0, 30.0, 11.0]], dtype=np.float32)
    x = backend(x32, dtype)
    for f in (sk.softmax, sk.log_softmax, sk.logsumexp):
        out = f(x)
        assert out.dtype == x.dtype, f.__name__
        ref = to_numpy(f(backend(to_numpy(x).astype(np.float64))))
        np.testing.assert_allclose(to_numpy(out).astype(np.float64), ref, **tol(dtype))
    # 30 in float16 would overflow exp(); computed in float32, lse(…) = 30.00005 is fine
    assert np.isfinite(to_numpy(sk.logsumexp(x))).all()


def test_integer_input_promotes_to_default_float(xp):
    x = xp([[1, 2, 3]], "int64")
    out = sk.softmax(x)
    ns = array_api_compat.array_namespace(x)
    assert out.dtype == ns.__array_namespace_info__().default_dtypes()["real floating"]
    np.testing.assert_allclose(to_numpy(out), _np_softmax(np.array([[1.0, 2.0, 3.0]])), **tol(out.dtype))


def test_float32_stays_float32(xp):
    x = xp([[1.0, 2.0]], "float32")
    for f in (sk.softmax, sk.log_softmax, sk.logsumexp, softmax_jacobian):
        assert f(x).dtype == x.dtype


def test_inputs_are_never_modified(xp):
    raw = np.array([[1.0, -INF, 3.0], [NAN, 1.0, 2.0]])
    x, g = xp(raw), xp(np.ones((2, 3)))
    before = to_numpy(x).copy()
    for f in (sk.softmax, sk.log_softmax, sk.logsumexp, softmax_jacobian):
        f(x)
    for f in DERIVATIVES:
        f(x, g)
    np.testing.assert_array_equal(to_numpy(x), before)
    np.testing.assert_array_equal(to_numpy(g), 1.0)


# -------------------------------------------------------------------------------------------- logsumexp b
def test_logsumexp_log1p_keeps_tiny_tail():
    # log(1 + e^-40) = 4.248354255291589e-18; m + log(sum) would round to exactly 0
    assert float(sk.logsumexp(np.array([0.0, -40.0]))) == pytest.approx(4.248354255291589e-18, rel=1e-15)


def test_jacobian_is_diag_p_minus_outer(xp):
    x = np.array([[5.0, 2.0, -1.0, 3.0]])
    p = _np_softmax(x)[0]
    jac = to_numpy(softmax_jacobian(xp(x)))
    assert jac.shape == (1, 4, 4)
    np.testing.assert_allclose(jac[0], np.diag(p) - np.outer(p, p), **tol("float64"))


def test_jacobian_layout_for_other_axis(xp):
    x = np.random.default_rng(4).normal(size=(3, 2))
    jac = to_numpy(softmax_jacobian(xp(x), axis=0))
    assert jac.shape == (2, 3, 3)
    for col in range(2):
        p = _np_softmax(x[:, col])
        np.testing.assert_allclose(jac[col], np.diag(p) - np.outer(p, p), **tol("float64"))


def test_vjp_and_jvp_equal_jacobian_products(xp):
    rng = np.random.default_rng(5)
    x, v = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    jac = to_numpy(softmax_jacobian(xp(x), temperature=0.7))
    expected = np.einsum("nij,nj->ni", jac, v)
    for f in (softmax_jvp, softmax_vjp):
        np.testing.assert_allclose(to_numpy(f(xp(x), xp(v), temperature=0.7)), expected, **tol("float64"))


def test_log_softmax_vjp_with_minus_target_is_p_minus_y():
    x = np.array([[1.0, 2.0, 3.0]])
    y = np.array([[0.0, 1.0, 0.0]])
    np.testing.assert_allclose(log_softmax_vjp(x, -y), _np_softmax(x) - y, rtol=1e-15)


def test_log_softmax_vjp_ignores_cotangent_at_masked_outputs():
    x = np.array([[1.0, -INF, 3.0]])
    g1 = log_softmax_vjp(x, np.array([[1.0, 0.0, 2.0]]))
    g2 = log_softmax_vjp(x, np.array([[1.0, 123.0, 2.0]]))
    np.testing.assert_array_equal(g1, g2)
    assert g1[0, 1] == 0.0


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("f", [*MAPPINGS, sk.logsumexp, softmax_jacobian], ids=lambda f: f.__name__)
def test_axis_errors(f):
    with pytest.raises(ValueError, match=r"axis=2 is out of range for an array with 2 dimension"):
        f(np.zeros((2, 3)), axis=2)
    with pytest.raises(TypeError, match=r"axis must be an int; got 1.0"):
        f(np.zeros((2, 3)), axis=1.0)
    with pytest.raises(ValueError, match=r"0-d array"):
        f(np.float64(1.0))


@pytest.mark.parametrize("bad", [0.0, -1.0, INF, NAN])
@pytest.mark.parametrize("f", [*MAPPINGS, softmax_jacobian], ids=lambda f: f.__name__)
def test_temperature_must_be_positive(f, bad):
    with pytest.raises(ValueError, match=rf"temperature must be a finite number > 0; got {bad}"):
        f(np.zeros(3), temperature=bad)


def test_temperature_type_error():
    with pytest.raises(TypeError, match="temperature must be a real number; got '2'"):
        sk.softmax(np.zeros(3), temperature="2")


@pytest.mark.parametrize("dtype", [np.bool_, np.complex128])
def test_bool_and_complex_logits_rejected(dtype):
    with pytest.raises(TypeError, match=r"x must hold real numbers"):
        sk.softmax(np.zeros(3, dtype=dtype))


def test_where_must_be_boolean_and_broadcast():
    with pytest.raises(TypeError, match="where must be a boolean array; got dtype int64"):
        sk.softmax(np.zeros((2, 3)), where=np.ones((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"where with shape \(2,\) does not broadcast to x's shape \(2, 3\)"):
        sk.softmax(np.zeros((2, 3)), where=np.ones(2, dtype=bool))


def test_tangent_shape_must_match():
    with pytest.raises(ValueError, match=r"g must have the shape of x, \(2, 3\); got shape \(3,\)"):
        softmax_vjp(np.zeros((2, 3)), np.zeros(3))
    with pytest.raises(ValueError, match=r"v must have the shape of x"):
        softmax_jvp(np.zeros((2, 3)), np.zeros((3, 2)))


def test_b_must_broadcast():
    with pytest.raises(ValueError, match=r"b with shape \(2,\) does not broadcast to x's shape \(2, 3\)"):
        sk.logsumexp(np.zeros((2, 3)), b=np.ones(2))


def test_mixing_two_tensor_libraries_is_a_type_error():
    import jax.numpy as jnp
    import torch

    with pytest.raises(TypeError, match="one array library"):
        sk.softmax(torch.zeros(3), where=jnp.ones(3, dtype=bool))


def test_jax_jit_compatible():
    import jax
    import jax.numpy as jnp

    x = jnp.asarray([[1.0, 2.0, -jnp.inf], [-jnp.inf, -jnp.inf, -jnp.inf]])
    jitted = jax.jit(sk.softmax)
    np.testing.assert_allclose(np.asarray(jitted(x)), to_numpy(sk.softmax(x)), rtol=1e-15)

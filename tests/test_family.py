"""normalize and sigmoid: the seeds' comparison points for softmax."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

import softmaxkit as sk
from conftest import LIBRARIES, eps, to_numpy, tol

INF, NAN = math.inf, math.nan


# --------------------------------------------------------------------------------------------- normalize
def test_normalize_is_blind_to_scale(xp):
    for row in ([1.0, 2.0], [10.0, 20.0]):
        np.testing.assert_allclose(to_numpy(sk.normalize(xp(row))), [1 / 3, 2 / 3], **tol("float64"))


def test_normalize_axis_and_type(xp):
    x = xp([[1.0, 3.0], [3.0, 1.0]])
    out = sk.normalize(x, axis=0)
    assert type(out) is type(x)
    np.testing.assert_allclose(to_numpy(out), [[0.25, 0.75], [0.75, 0.25]], **tol("float64"))


def test_normalize_rejects_negative_entries():
    with pytest.raises(ValueError, match=r"non-negative scores; x has -2.0 at position \(0, 1\)"):
        sk.normalize(np.array([[1.0, -2.0]]))


def test_normalize_rejects_all_zero_rows():
    with pytest.raises(ValueError, match=r"the row x\[1, :\] is all zeros"):
        sk.normalize(np.array([[1.0, 2.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"the row x\[:, 0\] is all zeros"):
        sk.normalize(np.array([[0.0, 2.0], [0.0, 1.0]]), axis=0)


def test_normalize_special_values():
    out = sk.normalize(np.array([[NAN, 1.0], [INF, 1.0], [0.0, 2.0]]))
    assert np.all(np.isnan(out[:2]))
    np.testing.assert_array_equal(out[2], [0.0, 1.0])
    assert sk.normalize(np.zeros((2, 0))).shape == (2, 0)


def test_normalize_dtypes():
    assert sk.normalize(np.array([1, 3])).dtype == np.float64
    half = sk.normalize(np.array([1.0, 3.0], dtype=np.float16))
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half, [0.25, 0.75])


def test_normalize_does_not_modify_input():
    x = np.array([[1.0, 3.0]])
    sk.normalize(x)
    np.testing.assert_array_equal(x, [[1.0, 3.0]])


# ----------------------------------------------------------------------------------------------- sigmoid
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sigmoid_against_mpmath(dtype):
    x = np.concatenate([np.linspace(-100, 100, 401), [-745.0, -700.0, -30.0, 30.0, 40.0]]).astype(dtype)
    if dtype == "float32":
        x = x[np.abs(x) < 100]
    got = sk.sigmoid(x)
    with mpmath.workdps(50):
        ref = np.array([float(1 / (1 + mpmath.exp(-mpmath.mpf(float(v))))) for v in x])
    normal = ref >= np.finfo(dtype).tiny
    np.testing.assert_allclose(got[normal], ref[normal], rtol=4 * eps(dtype), atol=0)


def test_sigmoid_special_values(xp):
    out = to_numpy(sk.sigmoid(xp([-INF, 0.0, INF, NAN])))
    np.testing.assert_array_equal(out[:3], [0.0, 0.5, 1.0])
    assert np.isnan(out[3])


def test_sigmoid_is_two_class_softmax(xp):
    x = np.linspace(-20, 20, 41)
    two = np.stack([x, np.zeros_like(x)], axis=-1)
    np.testing.assert_allclose(
        to_numpy(sk.sigmoid(xp(x))), to_numpy(sk.softmax(xp(two)))[:, 0], **tol("float64")
    )


@pytest.mark.parametrize(("name", "dtype"), [("torch", "bfloat16"), ("jax", "float16"), ("numpy", "float16")])
def test_sigmoid_half_precision(name, dtype):
    b = LIBRARIES[name]
    out = sk.sigmoid(b([-3.0, 0.0, 3.0], dtype))
    assert out.dtype == b([0.0], dtype).dtype
    np.testing.assert_allclose(to_numpy(out), 1 / (1 + np.exp(-np.array([-3.0, 0.0, 3.0]))), **tol(dtype))


def test_sigmoid_integer_input_and_errors():
    assert sk.sigmoid(np.array([0, 1])).dtype == np.float64
    with pytest.raises(TypeError, match="x must hold real numbers"):
        sk.sigmoid(np.array([True]))

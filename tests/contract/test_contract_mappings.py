"""The policy of softmax, log_softmax and logsumexp, written once and run on every implementation (adapters.py).

Each test is one row of the "Special values" tables in the docstrings of :func:`softmaxkit.softmax`,
:func:`softmaxkit.log_softmax` and :func:`softmaxkit.logsumexp`, or one habit of the house (values against a
float64 oracle, confident rows to full relative accuracy, inputs never modified, errors that name the argument).
An implementation runs every case that uses only what it implements (its adapter's ``lacks``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
from adapters import Impl, dtype_of, impls, numpy_of, with_ops

from conftest import tol

INF, NAN = math.inf, math.nan
MAPS = ("softmax", "log_softmax")
RNG = np.random.default_rng(20261207)

# the float64 oracle of each mapping (finite rows), from SciPy
ORACLE = {
    "softmax": scipy.special.softmax,
    "log_softmax": scipy.special.log_softmax,
    "logsumexp": scipy.special.logsumexp,
}


def _rounded(a: np.ndarray, dtype: str) -> np.ndarray:
    """``a`` rounded to ``dtype`` and back to float64: the values an implementation in ``dtype`` really sees."""
    if dtype == "bfloat16":
        import torch

        return torch.asarray(a).to(torch.bfloat16).double().numpy()
    return np.asarray(a, dtype=dtype).astype(np.float64)


# ---------------------------------------------------------------------------------------- special values
@pytest.mark.parametrize(("impl", "op"), with_ops(MAPS, "nonfinite"))
def test_special_rows(impl: Impl, op: str) -> None:
    # -inf entry: exactly 0 (-inf); all -inf: zeros (-inf), not nan; nan or +inf: nan for that row only
    x = np.array([[0.0, -INF, 1.0], [-INF, -INF, -INF], [NAN, 1.0, 2.0], [INF, 1.0, 2.0], [1.0, 2.0, 3.0]])
    got = numpy_of(impl.map(op, impl.data(x, impl.main)))
    zero = 0.0 if op == "softmax" else -INF
    assert got[0, 1] == zero
    np.testing.assert_array_equal(got[1], [zero] * 3)
    assert np.isnan(got[2]).all()
    assert np.isnan(got[3]).all()
    finite = x[[0, 4]][:, [0, 2]], x[4]
    np.testing.assert_allclose(got[0, [0, 2]], ORACLE[op](finite[0][0]), **tol(impl.main))
    np.testing.assert_allclose(got[4], ORACLE[op](finite[1]), **tol(impl.main))


@pytest.mark.parametrize("impl", impls("logsumexp", "nonfinite"))
def test_logsumexp_special_rows(impl: Impl) -> None:
    # all -inf: -inf (not nan); nan: nan for that row only; +inf: +inf, its exact value
    x = np.array([[-INF, -INF], [NAN, 1.0], [INF, 1.0], [0.0, 1.0]])
    got = numpy_of(impl.map("logsumexp", impl.data(x, impl.main)))
    assert got[0] == -INF
    assert np.isnan(got[1])
    assert got[2] == INF
    np.testing.assert_allclose(got[3], math.log1p(math.e), **tol(impl.main))


@pytest.mark.parametrize(("impl", "op"), with_ops((*MAPS, "logsumexp"), "where"))
def test_masked_entries_and_rows(impl: Impl, op: str) -> None:
    # a masked entry is left out (0 / -inf); a fully masked row is all zeros / -inf, not nan
    x = impl.data(np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]), impl.main)
    keep = impl.lib.make(np.array([[True, False, True], [False, False, False]]), "bool")
    got = numpy_of(impl.map(op, x, where=keep))
    if op == "logsumexp":
        np.testing.assert_allclose(got[0], ORACLE[op]([1.0, 3.0]), **tol(impl.main))
        assert got[1] == -INF
        return
    zero = 0.0 if op == "softmax" else -INF
    assert got[0, 1] == zero
    np.testing.assert_array_equal(got[1], [zero] * 3)
    np.testing.assert_allclose(got[0, [0, 2]], ORACLE[op](np.array([1.0, 3.0])), **tol(impl.main))


@pytest.mark.parametrize(("impl", "op"), with_ops((*MAPS, "logsumexp"), "empty"))
def test_empty_axis(impl: Impl, op: str) -> None:
    # softmax / log_softmax of an empty axis: an empty result; logsumexp: -inf (sign 0), the empty sum's log
    got = numpy_of(impl.map(op, impl.data(np.zeros((2, 0)), impl.main)))
    if op == "logsumexp":
        np.testing.assert_array_equal(got, [-INF, -INF])
    else:
        assert got.shape == (2, 0)


@pytest.mark.parametrize(("impl", "op", "dtype"), with_ops((*MAPS, "logsumexp"), dtypes=("float16", "bfloat16")))
def test_half_precision_is_computed_in_float32_and_returned_as_is(impl: Impl, op: str, dtype: str) -> None:
    x = RNG.normal(size=(3, 9)) * 4
    x[1, 2] = 30.0  # exp(30) overflows float16: the float32 computation must not
    got = impl.map(op, impl.data(x, dtype))
    assert dtype_of(got) == dtype
    np.testing.assert_allclose(numpy_of(got), ORACLE[op](_rounded(x, dtype), axis=-1), **tol(dtype))


# ----------------------------------------------------------------------------------------- values, options
@pytest.mark.parametrize(("impl", "op"), with_ops((*MAPS, "logsumexp")))
def test_values_match_the_oracle(impl: Impl, op: str) -> None:
    for dtype in ("float64", "float32"):
        if dtype not in impl.runs:
            continue
        x = RNG.normal(size=(4, 11)) * 5 + 1000.0  # large logits: the shift by the maximum must happen
        got = impl.map(op, impl.data(x, dtype))
        assert dtype_of(got) == dtype
        np.testing.assert_allclose(numpy_of(got), ORACLE[op](_rounded(x, dtype), axis=-1), **tol(dtype))


@pytest.mark.parametrize(("impl", "op"), with_ops((*MAPS, "logsumexp"), "axis"))
def test_other_axis(impl: Impl, op: str) -> None:
    x = RNG.normal(size=(3, 4, 5))
    got = numpy_of(impl.map(op, impl.data(x, impl.main), axis=1))
    np.testing.assert_allclose(got, ORACLE[op](_rounded(x, impl.main), axis=1), **tol(impl.main))


@pytest.mark.parametrize(("impl", "op"), with_ops(MAPS, "temperature"))
def test_temperature_divides_the_shifted_logits(impl: Impl, op: str) -> None:
    x = RNG.normal(size=(3, 6)) * 3
    x[1, 0] = -INF if impl.can("nonfinite") else x[1, 0]
    for t in (0.25, 7.0):
        got = numpy_of(impl.map(op, impl.data(x, impl.main), temperature=t))
        np.testing.assert_allclose(got, ORACLE[op](_rounded(x, impl.main) / t, axis=-1), **tol(impl.main))


@pytest.mark.parametrize("impl", impls("logsumexp", "b", "return_sign", "nonfinite"))
def test_logsumexp_b_rows(impl: Impl) -> None:
    # the rows of logsumexp's table that involve b
    x = np.array([[INF, 1.0, NAN], [1.0, 2.0, 0.0], [1.0, 1.0, 0.0], [INF, 1.0, 0.0], [INF, 1.0, 0.0], [INF, INF, 0.0]])
    b = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, -1.0, 0.0], [2.0, 1.0, 0.0], [-2.0, 1.0, 0.0], [1.0, -1, 0]])
    lse, sign = (numpy_of(a) for a in impl.map("logsumexp", impl.data(x, "float64"), b=impl.data(b, "float64"),
                                               return_sign=True))  # fmt: skip
    np.testing.assert_array_equal(lse[:5], [1.0, -INF, -INF, INF, INF])  # b = 0 leaves inf and nan out
    np.testing.assert_array_equal(sign[:5], [1.0, 0.0, 0.0, 1.0, -1.0])
    assert np.isnan(lse[5])
    assert np.isnan(sign[5])
    plain = numpy_of(impl.map("logsumexp", impl.data(x[3:5], "float64"), b=impl.data(-b[3:5], "float64")))
    assert np.isnan(plain[0])
    assert plain[1] == INF


@pytest.mark.parametrize("impl", impls("logsumexp", "b", "return_sign"))
def test_logsumexp_b_matches_scipy(impl: Impl) -> None:
    x = RNG.normal(size=(4, 6)) * 3
    b = RNG.uniform(-1.0, 2.0, size=(4, 6))
    lse, sign = impl.map("logsumexp", impl.data(x, "float64"), b=impl.data(b, "float64"), return_sign=True)
    want, want_sign = scipy.special.logsumexp(x, b=b, axis=-1, return_sign=True)
    np.testing.assert_allclose(numpy_of(lse), want, **tol("float64"))
    np.testing.assert_array_equal(numpy_of(sign), want_sign)
    row = impl.data(np.arange(6.0).reshape(2, 3), "float64")
    got = numpy_of(impl.map("logsumexp", row, b=impl.data(np.array([1.0, 2.0, 3.0]), "float64")))  # broadcast
    np.testing.assert_allclose(got, scipy.special.logsumexp(np.arange(6.0).reshape(2, 3), b=[1.0, 2.0, 3.0], axis=-1))
    keep = impl.lib.make(np.array([[True, True, False]]), "bool")
    three = impl.data(np.array([[1.0, 2.0, 3.0]]), "float64")
    got = numpy_of(impl.map("logsumexp", three, b=impl.data(np.array([[2.0, 0.0, 1.0]]), "float64"), where=keep))
    np.testing.assert_allclose(got, [1.0 + math.log(2.0)], rtol=1e-15)


# -------------------------------------------------------------------------------------------- accuracy
@pytest.mark.parametrize(("impl", "op"), with_ops((*MAPS, "logsumexp")))
def test_confident_rows_keep_relative_accuracy(impl: Impl, op: str) -> None:
    # log1p(rest), not log(1 + rest): log p of the dominant class is -log1p(2 e^-40) = -8.4967e-18, not 0
    tiny = 2.0 * math.exp(-40.0)
    want = {"softmax": math.exp(-40.0) / (1 + tiny), "log_softmax": -math.log1p(tiny), "logsumexp": 40 + tiny}
    row = np.array([[40.0, 0.0, 0.0]]) - (40.0 if op == "logsumexp" else 0.0)  # lse(0, -40, -40) = log1p(2e^-40)
    at = (0, 1) if op == "softmax" else (0, 0) if op == "log_softmax" else (0,)
    want["logsumexp"] = math.log1p(tiny)
    for dtype in ("float64", "float32"):
        if dtype in impl.runs:
            got = numpy_of(impl.map(op, impl.data(row, dtype)))[at]
            np.testing.assert_allclose(got, want[op], rtol=8 * float(np.finfo(dtype).eps), atol=0.0)


# ---------------------------------------------------------------------------------- inputs and arguments
@pytest.mark.parametrize(("impl", "op"), with_ops((*MAPS, "logsumexp")))
def test_inputs_are_never_modified(impl: Impl, op: str) -> None:
    raw = np.array([[0.0, -INF, 1e-3, 700.0], [1.0, 2.0, 3.0, 4.0]])
    x = impl.data(raw if impl.can("nonfinite") else np.nan_to_num(raw, neginf=-5.0), impl.main)
    before = numpy_of(x).copy()
    options = {}
    if impl.can("where"):
        options["where"] = impl.lib.make(np.array([True, True, False, True]), "bool")
    impl.map(op, x, **options)
    np.testing.assert_array_equal(numpy_of(x), before)


@pytest.mark.parametrize(("impl", "op"), with_ops((*MAPS, "logsumexp"), "errors", fast_only=True))
def test_axis_out_of_range_names_the_argument(impl: Impl, op: str) -> None:
    with pytest.raises(ValueError, match=rf"{impl.axis_name}=2 is out of range"):
        impl.map(op, impl.data(np.zeros((2, 3)), impl.main), axis=2)


@pytest.mark.parametrize(("impl", "op"), with_ops(MAPS, "temperature"))
def test_bad_temperature_names_the_argument(impl: Impl, op: str) -> None:
    x = impl.data(np.zeros((2, 3)), impl.main)
    for bad in (0.0, -1.0, INF, NAN):
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            impl.map(op, x, temperature=bad)
    with pytest.raises(TypeError, match="temperature must be a real number"):
        impl.map(op, x, temperature="hot")

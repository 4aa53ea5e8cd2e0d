"""Calibration metrics against plain-loop oracles and torchmetrics; temperature scaling against SciPy and theory."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from softmaxkit.calibration import (
    NotFittedError,
    ReliabilityCurve,
    TemperatureScaler,
    brier_score,
    expected_calibration_error,
    negative_log_likelihood,
    plot_reliability,
    reliability_curve,
)
from softmaxkit.layers import get_output_layer

LAYERS = ["softmax", "taylor", "spherical", "sparsemax", "entmax15", "sigmoid", "hinge", "softplus_normalize"]
MONOTONE = [name for name in LAYERS if get_output_layer(name).order_preserving]  # increasing in each logit


# ------------------------------------------------------------------------------------------- loop oracles
def _top(row: list[float]) -> tuple[int, float]:
    best = 0
    for c in range(1, len(row)):
        if row[c] > row[best]:
            best = c
    return best, row[best]


def loop_curve(
    probs: Any, y: Any, n_bins: int, binning: str
) -> tuple[list[float], list[int], list[float], list[float]]:
    """(edges, counts, mean confidence, accuracy) by plain loops; bins [e_k, e_k+1), the last one closed."""
    rows = [[float(v) for v in r] for r in np.asarray(probs)]
    labels = [int(v) for v in np.asarray(y)]
    tops = [_top(r) for r in rows]
    if binning == "uniform":
        edges = [k / n_bins for k in range(n_bins + 1)]
    else:
        # Equal mass by rank, ties kept together: walk the sorted confidences, open a new bin when the rank's
        # share floor(r M / N) moves on and the confidence differs from the previous one.
        ordered = sorted(c for _, c in tops)
        n = len(ordered)
        edges, last_bin = [], -1
        for r, c in enumerate(ordered):
            share = r * n_bins // n
            if share != last_bin and (r == 0 or c != ordered[r - 1]):
                edges.append(c)
                last_bin = share
        edges.append(ordered[-1])
    m = len(edges) - 1
    counts, conf_sum, hits = [0] * m, [0.0] * m, [0] * m
    for (pred, conf), label in zip(tops, labels, strict=True):
        k = 0
        while k + 1 < m and conf >= edges[k + 1]:
            k += 1
        counts[k] += 1
        conf_sum[k] += conf
        hits[k] += pred == label
    conf = [conf_sum[k] / counts[k] if counts[k] else math.nan for k in range(m)]
    acc = [hits[k] / counts[k] if counts[k] else math.nan for k in range(m)]
    return edges, counts, conf, acc


def loop_ece(probs: Any, y: Any, n_bins: int = 15, norm: str = "l1", binning: str = "uniform") -> float:
    _, counts, conf, acc = loop_curve(probs, y, n_bins, binning)
    n = sum(counts)
    total, worst = 0.0, 0.0
    for k, count in enumerate(counts):
        if count == 0:
            continue
        gap = abs(acc[k] - conf[k])
        total += count / n * (gap if norm == "l1" else gap * gap)
        worst = max(worst, gap)
    return worst if norm == "max" else (total if norm == "l1" else math.sqrt(total))


def loop_brier(probs: Any, y: Any) -> float:
    total = 0.0
    for row, label in zip(np.asarray(probs), np.asarray(y), strict=True):
        for c, v in enumerate(row):
            total += (float(v) - (1.0 if c == label else 0.0)) ** 2
    return total / len(np.asarray(y))


def loop_nll(probs: Any, y: Any, eps: float = 0.0) -> float:
    total = 0.0
    for row, label in zip(np.asarray(probs), np.asarray(y), strict=True):
        v = max(float(row[label]), eps)
        total += math.inf if v == 0.0 else -math.log(v)
    return total / len(np.asarray(y))


# ------------------------------------------------------------------------------------------------ strategies
@st.composite
def probs_and_labels(draw: st.DrawFn, normalised: bool = True) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 40))
    c = draw(st.integers(1, 6))
    # Weights quantised to 1/8 give exact ties and confidences on bin edges (1/2, 1/4, 3/4...), on purpose.
    elems = st.one_of(st.floats(0.0, 1.0), st.integers(0, 8).map(lambda k: k / 8))
    w = draw(hnp.arrays(np.float64, (n, c), elements=elems))
    if normalised:
        total = w.sum(axis=1, keepdims=True)
        w = np.where(total > 0, w / np.where(total > 0, total, 1.0), 1.0 / c)
    y = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    return w, y


FAST = settings(max_examples=60, deadline=None)


# ------------------------------------------------------------------------------------------ metric oracles
@FAST
@given(data=probs_and_labels(), n_bins=st.integers(1, 20), norm=st.sampled_from(["l1", "l2", "max"]))
def test_ece_uniform_matches_the_loop(data: tuple[np.ndarray, np.ndarray], n_bins: int, norm: str) -> None:
    p, y = data
    got = expected_calibration_error(p, y, n_bins=n_bins, norm=norm)
    assert got == pytest.approx(loop_ece(p, y, n_bins, norm), rel=1e-12, abs=1e-14)
    assert 0.0 <= got <= 1.0


@FAST
@given(data=probs_and_labels(normalised=False), n_bins=st.integers(1, 12), norm=st.sampled_from(["l1", "l2", "max"]))
def test_ece_quantile_matches_the_loop(data: tuple[np.ndarray, np.ndarray], n_bins: int, norm: str) -> None:
    p, y = data
    got = expected_calibration_error(p, y, n_bins=n_bins, norm=norm, binning="quantile")
    assert got == pytest.approx(loop_ece(p, y, n_bins, norm, "quantile"), rel=1e-12, abs=1e-14)


@FAST
@given(
    data=probs_and_labels(normalised=False), n_bins=st.integers(1, 12), binning=st.sampled_from(["uniform", "quantile"])
)
def test_reliability_curve_matches_the_loop(data: tuple[np.ndarray, np.ndarray], n_bins: int, binning: str) -> None:
    p, y = data
    curve = reliability_curve(p, y, n_bins=n_bins, binning=binning)
    edges, counts, conf, acc = loop_curve(p, y, n_bins, binning)
    np.testing.assert_array_equal(curve.bin_edges, edges)
    np.testing.assert_array_equal(curve.counts, counts)
    np.testing.assert_allclose(curve.confidence, conf, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(curve.accuracy, acc, rtol=1e-12, equal_nan=True)
    assert curve.counts.sum() == p.shape[0]


@FAST
@given(data=probs_and_labels(normalised=False))
def test_brier_and_nll_match_the_loop(data: tuple[np.ndarray, np.ndarray]) -> None:
    p, y = data
    assert brier_score(p, y) == pytest.approx(loop_brier(p, y), rel=1e-12, abs=1e-15)
    assert negative_log_likelihood(p, y) == pytest.approx(loop_nll(p, y), rel=1e-12, abs=1e-15)
    assert negative_log_likelihood(p, y, eps=1e-6) == pytest.approx(loop_nll(p, y, 1e-6), rel=1e-12, abs=1e-15)


def test_brier_and_nll_match_scikit_learn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(12)
    for c in (2, 3, 7):
        p = rng.dirichlet(np.ones(c), size=80)
        y = rng.integers(0, c, 80)
        labels = list(range(c))
        want = metrics.brier_score_loss(y, p, labels=labels, scale_by_half=False)
        assert brier_score(p, y) == pytest.approx(want, rel=1e-12)
        assert negative_log_likelihood(p, y) == pytest.approx(metrics.log_loss(y, p, labels=labels), rel=1e-12)


def test_hand_computed_example() -> None:
    # Confidences 0.9 (right), 0.8 (wrong), 0.7 (right); 5 bins: [0.6, 0.8) holds 0.7, [0.8, 1] holds 0.8, 0.9.
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
    y = np.array([0, 1, 1])
    assert expected_calibration_error(p, y, n_bins=5) == pytest.approx((0.3 + 2 * 0.35) / 3, rel=1e-14)
    assert expected_calibration_error(p, y, n_bins=5, norm="l2") == pytest.approx(
        math.sqrt((0.3**2 + 2 * 0.35**2) / 3), rel=1e-14
    )
    assert expected_calibration_error(p, y, n_bins=5, norm="max") == pytest.approx(0.35, rel=1e-14)
    # One bin: |2/3 - 0.8| = 2/15.
    assert expected_calibration_error(p, y, n_bins=1) == pytest.approx(2 / 15, rel=1e-14)
    # Brier: (0.01 + 0.01) + (0.64 + 0.64) + (0.09 + 0.09) = 1.48, over 3 rows.
    assert brier_score(p, y) == pytest.approx(1.48 / 3, rel=1e-14)
    assert negative_log_likelihood(p, y) == pytest.approx(-(math.log(0.9) + math.log(0.2) + math.log(0.7)) / 3)


def test_quantile_bins_hold_equal_mass() -> None:
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(4), size=1000)
    y = rng.integers(0, 4, 1000)
    curve = reliability_curve(p, y, n_bins=10, binning="quantile")
    assert curve.bin_edges.shape == (11,)
    np.testing.assert_array_equal(curve.counts, 100)
    odd = reliability_curve(p[:997], y[:997], n_bins=10, binning="quantile")
    assert set(odd.counts.tolist()) == {99, 100}


def test_quantile_bins_never_split_ties() -> None:
    p = np.array([[0.6, 0.4]] * 7 + [[0.9, 0.1]] * 3)
    y = np.zeros(10, dtype=np.int64)
    curve = reliability_curve(p, y, n_bins=5, binning="quantile")
    # Ranks 0-1, 2-3, 4-5 would start bins, but the run of 0.6 goes wholly to bin 0; 0.9 (rank 7) starts bin 3.
    np.testing.assert_array_equal(curve.bin_edges, [0.6, 0.9, 0.9])
    np.testing.assert_array_equal(curve.counts, [7, 3])
    same = reliability_curve(np.full((3, 2), 0.5), [0, 1, 0], n_bins=4, binning="quantile")
    np.testing.assert_array_equal(same.bin_edges, [0.5, 0.5])
    assert same.counts.tolist() == [3]


def test_edge_convention_left_closed_with_0_and_1_inside() -> None:
    # 3 bins: [0, 1/3), [1/3, 2/3), [2/3, 1]. Rows with C = 1 make the confidence the entry itself.
    p = np.array([[0.0], [1 / 3], [2 / 3], [1.0], [0.5]])
    curve = reliability_curve(p, np.zeros(5, dtype=np.int64), n_bins=3)
    assert curve.counts.tolist() == [1, 2, 2]
    np.testing.assert_allclose(curve.confidence, [0.0, (1 / 3 + 0.5) / 2, (2 / 3 + 1.0) / 2], rtol=1e-15)
    assert isinstance(curve, ReliabilityCurve)


def test_empty_bins_are_nan_with_count_zero() -> None:
    curve = reliability_curve([[0.95, 0.05]], [0], n_bins=4)
    assert curve.counts.tolist() == [0, 0, 0, 1]
    assert np.isnan(curve.confidence[:3]).all()
    assert np.isnan(curve.accuracy[:3]).all()
    # The max norm ignores empty bins instead of seeing a nan.
    assert expected_calibration_error([[0.95, 0.05]], [0], n_bins=4, norm="max") == pytest.approx(0.05)


def test_ties_go_to_the_first_class() -> None:
    assert reliability_curve([[0.5, 0.5]], [0], n_bins=2).accuracy[-1] == 1.0
    assert reliability_curve([[0.5, 0.5]], [1], n_bins=2).accuracy[-1] == 0.0


@pytest.mark.parametrize(
    ("probs", "y", "ece", "brier"),
    [
        ([[1.0, 0.0], [0.0, 1.0]], [0, 1], 0.0, 0.0),
        ([[1.0, 0.0], [0.0, 1.0]], [1, 0], 1.0, 2.0),
        ([[0.25] * 4, [0.25] * 4], [0, 3], 0.25, 0.75),
        ([[1.0], [1.0]], [0, 0], 0.0, 0.0),
    ],
)
def test_special_values(probs: Any, y: Any, ece: float, brier: float) -> None:
    assert expected_calibration_error(probs, y) == pytest.approx(ece, abs=1e-15)
    assert brier_score(probs, y) == pytest.approx(brier, abs=1e-15)


def test_nll_zero_probability_is_inf_or_floored() -> None:
    p, y = [[1.0, 0.0], [0.5, 0.5]], [1, 0]
    assert negative_log_likelihood(p, y) == math.inf
    assert negative_log_likelihood(p, y, eps=1e-12) == pytest.approx((12 * math.log(10) + math.log(2)) / 2)
    assert negative_log_likelihood([[1.0, 0.0]], [0]) == 0.0


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_matches_torchmetrics(norm: str) -> None:
    torch = pytest.importorskip("torch")
    classification = pytest.importorskip("torchmetrics.classification")
    rng = np.random.default_rng(11)
    for c, n, n_bins, scale in [(5, 500, 15, 3.0), (3, 200, 7, 1.0), (10, 1000, 20, 6.0)]:
        z = rng.normal(scale=scale, size=(n, c))
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        y = rng.integers(0, c, n)
        metric = classification.MulticlassCalibrationError(num_classes=c, n_bins=n_bins, norm=norm)
        want = float(metric(torch.from_numpy(p), torch.from_numpy(y)))
        assert expected_calibration_error(p, y, n_bins=n_bins, norm=norm) == pytest.approx(want, rel=1e-6, abs=1e-7)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: expected_calibration_error([0.5, 0.5], [0]), ValueError, "probs must be a 2-d"),
        (lambda: expected_calibration_error(np.zeros((0, 2)), []), ValueError, "probs is empty"),
        (lambda: expected_calibration_error(np.zeros((2, 0)), [0, 0]), ValueError, "no classes"),
        (lambda: expected_calibration_error([[1.2, 0.0]], [0]), ValueError, r"\[0, 1\]; got 1.2"),
        (lambda: expected_calibration_error([[np.nan, 0.0]], [0]), ValueError, "finite; got nan"),
        (lambda: expected_calibration_error([[0.5, 0.5]], [2]), ValueError, r"\[0, 2\); got 2"),
        (lambda: expected_calibration_error([[0.5, 0.5]], [0, 1]), ValueError, "length 2"),
        (lambda: expected_calibration_error([[0.5, 0.5]], [[0]]), ValueError, "y must be 1-d"),
        (lambda: expected_calibration_error([[0.5, 0.5]], [0.0]), TypeError, "integer class labels"),
        (lambda: expected_calibration_error([[True, False]], [0]), TypeError, "probs must be a real"),
        (lambda: expected_calibration_error([[0.5, 0.5]], [0], n_bins=0), ValueError, "n_bins must be >= 1"),
        (lambda: expected_calibration_error([[0.5, 0.5]], [0], n_bins=2.0), TypeError, "n_bins must be an int"),
        (lambda: expected_calibration_error([[0.5, 0.5]], [0], norm="l3"), ValueError, "norm must be one of"),
        (lambda: reliability_curve([[0.5, 0.5]], [0], binning="log"), ValueError, "binning must be one of"),
        (lambda: negative_log_likelihood([[0.5, 0.5]], [0], eps=1.0), ValueError, "eps must be"),
        (lambda: negative_log_likelihood([[0.5, 0.5]], [0], eps=-1e-3), ValueError, "eps must be"),
    ],
)
def test_metric_errors_name_the_argument(call: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()


def test_metrics_do_not_mutate_inputs() -> None:
    rng = np.random.default_rng(5)
    p = rng.dirichlet(np.ones(3), size=50)
    y = rng.integers(0, 3, 50)
    p0, y0 = p.copy(), y.copy()
    expected_calibration_error(p, y, binning="quantile")
    brier_score(p, y)
    negative_log_likelihood(p, y, eps=1e-9)
    reliability_curve(p, y)
    np.testing.assert_array_equal(p, p0)
    np.testing.assert_array_equal(y, y0)


# --------------------------------------------------------------------------------------- temperature scaling
def _sample(rng: np.random.Generator, z: np.ndarray, t: float) -> np.ndarray:
    p = np.exp((z - z.max(1, keepdims=True)) / t)
    p /= p.sum(1, keepdims=True)
    return (rng.random(z.shape[0])[:, None] > np.cumsum(p, axis=1)).sum(axis=1).clip(0, z.shape[1] - 1)


def _softmax_nll(z: np.ndarray, y: np.ndarray, t: float) -> float:
    s = z / t
    s = s - s.max(1, keepdims=True)
    return float(np.mean(np.log(np.exp(s).sum(1)) - s[np.arange(len(y)), y]))


@pytest.mark.parametrize("t_true", [1.0, 2.0, 0.5])
def test_recovers_the_temperature_that_generated_the_labels(t_true: float) -> None:
    rng = np.random.default_rng(int(t_true * 10))
    z = rng.normal(scale=3.0, size=(20000, 8))
    y = _sample(rng, z, t_true)
    scaler = TemperatureScaler().fit(z, y)
    # Statistical tolerance: the MLE of T from 20000 draws has a relative standard error of about 1%.
    assert scaler.temperature_ == pytest.approx(t_true, rel=0.05)
    assert scaler.nll_after_ <= scaler.nll_before_


def test_softmax_optimum_matches_scipy_and_the_gradient_vanishes() -> None:
    optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(7)
    z = rng.normal(scale=4.0, size=(3000, 6))
    y = _sample(rng, z, 1.7)
    scaler = TemperatureScaler().fit(z, y)
    t = scaler.temperature_
    res = optimize.minimize_scalar(
        lambda s: _softmax_nll(z, y, s), bounds=(0.01, 100.0), method="bounded", options={"xatol": 1e-10}
    )
    assert t == pytest.approx(res.x, rel=1e-7)
    # Central difference of the NLL in T at the optimum: zero up to the finite-difference error.
    h = 1e-4 * t
    slope = (_softmax_nll(z, y, t + h) - _softmax_nll(z, y, t - h)) / (2 * h)
    assert abs(slope) < 1e-8
    assert scaler.nll_after_ == pytest.approx(_softmax_nll(z, y, t), rel=1e-12)
    assert scaler.nll_before_ == pytest.approx(_softmax_nll(z, y, 1.0), rel=1e-12)
    assert 0 < scaler.n_iter_ < 30


def test_hinge_golden_search_agrees_with_softmax_newton() -> None:
    # The hinge layer is scored by softmax of its scaled scores: the same optimum, found by the other method.
    rng = np.random.default_rng(8)
    z = rng.normal(scale=2.0, size=(2000, 5))
    y = _sample(rng, z, 1.3)
    newton = TemperatureScaler().fit(z, y)
    golden = TemperatureScaler(output_layer="hinge").fit(z, y)
    assert golden.temperature_ == pytest.approx(newton.temperature_, rel=1e-6)
    assert golden.nll_after_ == pytest.approx(newton.nll_after_, rel=1e-12)


@pytest.fixture(scope="module")
def calibration_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(9)
    z = rng.normal(scale=2.5, size=(600, 6))
    return z, _sample(rng, z, 1.5)


@pytest.mark.parametrize("name", LAYERS)
def test_every_layer_fits_and_beats_a_grid(name: str, calibration_data: tuple[np.ndarray, np.ndarray]) -> None:
    z, y = calibration_data
    z0, y0 = z.copy(), y.copy()
    scaler = TemperatureScaler(output_layer=name).fit(z, y)
    assert 1e-2 <= scaler.temperature_ <= 1e2
    assert scaler.nll_after_ <= scaler.nll_before_ + 1e-15
    proba = scaler.predict_proba(z)
    assert proba.shape == z.shape
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    floored = np.maximum(proba[np.arange(len(y)), y], 1e-12)
    assert scaler.nll_after_ == pytest.approx(-np.mean(np.log(floored)), rel=1e-12)
    # The objective at the fitted T is no worse than on a fine grid over the bounds.
    q = copy.copy(scaler)
    for t in np.geomspace(1e-2, 1e2, 161):
        q.temperature_ = float(t)
        grid_nll = -np.mean(np.log(np.maximum(q.predict_proba(z)[np.arange(len(y)), y], 1e-12)))
        assert scaler.nll_after_ <= grid_nll + 1e-12
    np.testing.assert_array_equal(z, z0)
    np.testing.assert_array_equal(y, y0)


@pytest.mark.parametrize("name", MONOTONE)
def test_argmax_is_unchanged(name: str, calibration_data: tuple[np.ndarray, np.ndarray]) -> None:
    z, y = calibration_data
    scaler = TemperatureScaler(output_layer=name).fit(z, y)
    assert scaler.temperature_ != 1.0
    np.testing.assert_array_equal(scaler.predict_proba(z).argmax(axis=1), z.argmax(axis=1))
    np.testing.assert_array_equal(scaler.transform(z).argmax(axis=1), z.argmax(axis=1))


def test_spherical_keeps_its_own_argmax(calibration_data: tuple[np.ndarray, np.ndarray]) -> None:
    z, y = calibration_data
    scaler = TemperatureScaler(output_layer="spherical").fit(z, y)
    np.testing.assert_array_equal(scaler.predict_proba(z).argmax(axis=1), np.abs(z).argmax(axis=1))


def test_all_correct_with_huge_margins_clamps_to_the_lower_bound() -> None:
    z = 50.0 * np.eye(4)[np.arange(40) % 4]
    y = np.arange(40) % 4
    assert TemperatureScaler().fit(z, y).temperature_ == 1e-2
    scaler = TemperatureScaler(bounds=(0.5, 3.0)).fit(z, y)
    assert scaler.temperature_ == 0.5
    assert scaler.nll_after_ == pytest.approx(_softmax_nll(z, y, 0.5), rel=1e-12)


def test_all_wrong_clamps_to_the_upper_bound() -> None:
    z = 5.0 * np.eye(3)[np.arange(30) % 3]
    y = (np.arange(30) + 1) % 3
    assert TemperatureScaler(bounds=(0.1, 7.0)).fit(z, y).temperature_ == 7.0


@pytest.mark.parametrize("z", [np.zeros((5, 1)), np.full((4, 3), 2.0)])
def test_flat_objective_gives_temperature_one(z: np.ndarray) -> None:
    scaler = TemperatureScaler().fit(z, np.zeros(z.shape[0], dtype=np.int64))
    assert scaler.temperature_ == 1.0
    assert scaler.nll_after_ == scaler.nll_before_
    assert TemperatureScaler(bounds=(2.0, 3.0)).fit(z, np.zeros(z.shape[0], dtype=np.int64)).temperature_ == 2.0


def test_transform_keeps_dtype_and_fit_transform_matches() -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(size=(200, 4)).astype(np.float32)
    y = _sample(rng, z.astype(np.float64), 0.7)
    scaler = TemperatureScaler()
    out = scaler.fit_transform(z, y)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, z / np.float32(scaler.temperature_), rtol=1e-6)
    assert scaler.predict_proba(z).dtype == np.float32
    assert TemperatureScaler().fit(z.astype(np.int64), y).transform(np.ones((1, 4), dtype=np.int64)).dtype == np.float64


def test_unfitted_use_raises_not_fitted_error() -> None:
    scaler = TemperatureScaler()
    for method in (scaler.transform, scaler.predict_proba):
        with pytest.raises(NotFittedError, match="not fitted"):
            method(np.zeros((2, 3)))
    assert issubclass(NotFittedError, ValueError)
    assert issubclass(NotFittedError, AttributeError)


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (2.0, 1.0), (1.0, 1.0), (1.0,), (np.nan, 1.0), (1.0, np.inf), "ab"])
def test_bad_bounds(bounds: Any) -> None:
    with pytest.raises(ValueError, match="bounds"):
        TemperatureScaler(bounds=bounds)
    scaler = TemperatureScaler()
    scaler.bounds = bounds
    with pytest.raises(ValueError, match="bounds"):
        scaler.fit(np.eye(2), [0, 1])


def test_unknown_output_layer_names_the_argument_and_the_value() -> None:
    with pytest.raises(ValueError, match=r"output_layer must name a registered output layer; got 'x'.*softmax"):
        TemperatureScaler(output_layer="x")
    scaler = TemperatureScaler()
    scaler.output_layer = "x"
    with pytest.raises(ValueError, match=r"output_layer must name a registered output layer; got 'x'"):
        scaler.fit(np.eye(2), [0, 1])


def test_the_old_registry_name_normalize_is_an_alias() -> None:
    z = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0], [1.0, 1.0, 0.0]])
    old = TemperatureScaler(output_layer="normalize").fit(z, [0, 2, 1])
    new = TemperatureScaler(output_layer="softplus_normalize").fit(z, [0, 2, 1])
    assert old.temperature_ == new.temperature_


@pytest.mark.parametrize(
    ("logits", "y", "error", "match"),
    [
        (np.zeros(3), [0, 0, 0], ValueError, "logits must be a 2-d"),
        (np.zeros((2, 2, 2)), [0, 0], ValueError, "logits must be a 2-d"),
        (np.zeros((0, 3)), np.zeros(0, dtype=np.int64), ValueError, "logits is empty"),
        (np.array([[0.0, np.inf]]), [0], ValueError, r"logits must be finite; got inf at position \(0, 1\)"),
        (np.zeros((2, 3)), [0], ValueError, "y has length 1 but logits has 2 rows"),
        (np.zeros((2, 3)), [0, 3], ValueError, r"\[0, 3\); got 3"),
        (np.zeros((2, 3)), [0, -1], ValueError, r"\[0, 3\); got -1"),
        (np.zeros((2, 3)), [0.0, 1.0], TypeError, "integer class labels"),
        (np.array([["a", "b"]]), [0], TypeError, "logits must be a real"),
    ],
)
def test_fit_errors_name_the_argument(logits: Any, y: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        TemperatureScaler().fit(logits, y)


def test_transform_checks_the_number_of_classes() -> None:
    scaler = TemperatureScaler().fit(np.eye(3), [0, 1, 2])
    with pytest.raises(ValueError, match="4 columns but the scaler was fitted on 3"):
        scaler.transform(np.zeros((2, 4)))


def test_temperature_scaling_lowers_the_ece_of_an_overconfident_model() -> None:
    rng = np.random.default_rng(4)
    z = rng.normal(scale=2.0, size=(5000, 10))
    y = _sample(rng, z, 1.0)
    hot = 3.0 * z  # the same classifier, three times too confident
    p_hot = np.exp(hot - hot.max(1, keepdims=True))
    p_hot /= p_hot.sum(1, keepdims=True)
    scaler = TemperatureScaler().fit(hot, y)
    assert scaler.temperature_ == pytest.approx(3.0, rel=0.05)
    assert expected_calibration_error(scaler.predict_proba(hot), y) < expected_calibration_error(p_hot, y) / 4


# ----------------------------------------------------------------------------------------------------- plot
@pytest.fixture
def small_model() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(6)
    p = rng.dirichlet(np.ones(3) * 0.5, size=300)
    return p, rng.integers(0, 3, 300)


def test_plot_single_model_and_save(small_model: tuple[np.ndarray, np.ndarray], tmp_path: Any) -> None:
    from matplotlib.figure import Figure

    p, y = small_model
    fig = plot_reliability(p, y, n_bins=10, title="one model")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert f"model (ECE {expected_calibration_error(p, y, n_bins=10):.3f})" in texts
    path = tmp_path / "reliability.png"
    fig.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_dict_curves_and_given_axes(small_model: tuple[np.ndarray, np.ndarray], tmp_path: Any) -> None:
    from matplotlib.figure import Figure

    p, y = small_model
    sharp = p**3 / (p**3).sum(1, keepdims=True)
    fig = plot_reliability({"raw": p, "sharp": reliability_curve(sharp, y)}, y)
    assert len(fig.axes) == 2
    assert len(fig.axes[0].get_legend().get_texts()) == 3  # the diagonal and two models
    host = Figure()
    ax = host.add_subplot()
    assert plot_reliability(reliability_curve(p, y), labels="curve", ax=ax) is host
    assert len(ax.child_axes) == 1  # the histogram inset
    host.savefig(tmp_path / "inset.png")


def test_plot_errors(small_model: tuple[np.ndarray, np.ndarray]) -> None:
    p, y = small_model
    with pytest.raises(ValueError, match="y is needed"):
        plot_reliability(p)
    with pytest.raises(ValueError, match="labels must give 2"):
        plot_reliability({"a": p, "b": p}, y, labels=["only one"])
    with pytest.raises(ValueError, match="empty mapping"):
        plot_reliability({}, y)


@pytest.mark.parametrize(
    ("probs", "y", "error", "match"),
    [
        (np.ma.masked_array([[0.9, 0.1]], mask=[[False, True]]), [0], TypeError, "probs must not be a masked array"),
        ([[0.9, 0.1]], np.ma.masked_array([0], mask=[True]), TypeError, "y must not be a masked array"),
        ([[0.9, 0.1], [0.5]], [0, 1], ValueError, "probs must be a rectangular array"),
        ([[0.9, 0.1], [0.5, 0.5]], [0, [1]], ValueError, "y must be a rectangular array"),
    ],
)
def test_masked_and_ragged_input_is_refused_naming_the_argument(probs: Any, y: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        expected_calibration_error(probs, y)
    with pytest.raises(error, match=match.replace("probs", "logits")):
        TemperatureScaler().fit(probs, y)

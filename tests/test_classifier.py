"""SoftmaxClassifier: scikit-learn's estimator checks, LogisticRegression as the oracle, exact gradients, every
output layer, temperature, early stopping, partial_fit, pickling and errors."""

from __future__ import annotations

import io
import pickle
import warnings
from typing import Any

import joblib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.datasets import load_breast_cancer, load_digits, load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

from softmaxkit import log_softmax, softmax
from softmaxkit._mlp import Network, objective
from softmaxkit.calibration import TemperatureScaler
from softmaxkit.classifier import SoftmaxClassifier
from softmaxkit.layers import OUTPUT_LAYERS, get_output_layer

LAYERS = list(OUTPUT_LAYERS)  # every registered layer
SPARSE = ["sparsemax", "entmax15", "entmax_bisect"]


def _standardised(X: np.ndarray) -> np.ndarray:
    sd = X.std(axis=0)
    sd[sd == 0] = 1.0
    return (X - X.mean(axis=0)) / sd


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_iris(return_X_y=True)
    return _standardised(X), y


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return _standardised(X), y


# ----------------------------------------------------------------------------------- scikit-learn's checks
@parametrize_with_checks(
    [
        SoftmaxClassifier(alpha=1e-3, max_iter=100),
        SoftmaxClassifier(
            (8,), solver="adam", learning_rate_init=0.05, max_iter=1000, tol=1e-2, n_iter_no_change=3, random_state=0
        ),
        SoftmaxClassifier(
            (8,),
            output_layer="sparsemax",
            solver="sgd",
            learning_rate_init=0.05,
            max_iter=500,
            tol=1e-2,
            n_iter_no_change=3,
            random_state=0,
        ),
        SoftmaxClassifier((5,), activation="tanh", output_layer="entmax15", max_iter=500, tol=1e-3, random_state=0),
    ]
)
def test_sklearn_estimator_checks(estimator: SoftmaxClassifier, check: Any) -> None:
    check(estimator)


# ------------------------------------------------------------------------- LogisticRegression as the oracle
@pytest.mark.parametrize("data", ["digits", "iris"])
def test_softmax_regression_matches_logistic_regression(data: str, request: pytest.FixtureRequest) -> None:
    X, y = request.getfixturevalue(data)
    C = 0.5
    with threadpool_limits(limits=1):  # sklearn's OpenMP loss and BLAS fight over the cores of a small runner
        lr = LogisticRegression(C=C, tol=1e-6, max_iter=2000).fit(X, y)
        ours = SoftmaxClassifier(alpha=1.0 / (C * len(y)), tol=1e-6, max_iter=2000).fit(X, y)
    assert ours.n_iter_ == lr.n_iter_[0]  # the same L-BFGS run on the same objective
    ll_lr = log_loss(y, lr.predict_proba(X))
    ll_ours = log_loss(y, ours.predict_proba(X))
    assert abs(ll_ours - ll_lr) < 1e-4
    penalty = 0.5 / (C * len(y)) * np.sum(lr.coef_**2)
    np.testing.assert_allclose(ours.loss_, ll_lr + penalty, rtol=1e-7)  # same objective, same minimum
    np.testing.assert_allclose(ours.coefs_[0].T, lr.coef_, atol=2e-4)
    # the intercepts are unpenalised, so only their differences are determined (softmax is shift-invariant)
    b = ours.intercepts_[0]
    np.testing.assert_allclose(b - b.mean(), lr.intercept_ - lr.intercept_.mean(), atol=2e-4)
    assert np.array_equal(ours.predict(X), lr.predict(X))


def test_binary_alpha_is_two_over_c_n() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    X = _standardised(X)
    C = 0.1
    lr = LogisticRegression(C=C, tol=1e-8, max_iter=2000).fit(X, y)
    ours = SoftmaxClassifier(alpha=2.0 / (C * len(y)), tol=1e-8, max_iter=2000).fit(X, y)
    d = ours.coefs_[0][:, 1] - ours.coefs_[0][:, 0]
    np.testing.assert_allclose(d, lr.coef_[0], atol=1e-4)
    np.testing.assert_allclose(ours.coefs_[0][:, 1], -ours.coefs_[0][:, 0], atol=1e-5)  # minimum-norm split
    np.testing.assert_allclose(ours.decision_function(X), lr.decision_function(X), atol=1e-3)
    assert abs(log_loss(y, ours.predict_proba(X)) - log_loss(y, lr.predict_proba(X))) < 1e-6


def test_sample_weight_alpha_uses_the_weight_sum(iris: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = iris
    sw = np.random.default_rng(0).integers(1, 4, size=len(y)).astype(float)
    C = 2.0
    lr = LogisticRegression(C=C, tol=1e-8, max_iter=2000).fit(X, y, sample_weight=sw)
    ours = SoftmaxClassifier(alpha=1.0 / (C * sw.sum()), tol=1e-8, max_iter=2000).fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(ours.coefs_[0].T, lr.coef_, atol=1e-4)
    # integer weights are repeated rows
    rep = SoftmaxClassifier(alpha=1.0 / (C * sw.sum()), tol=1e-8, max_iter=2000)
    rep.fit(np.repeat(X, sw.astype(int), axis=0), np.repeat(y, sw.astype(int)))
    np.testing.assert_allclose(ours.predict_proba(X), rep.predict_proba(X), atol=1e-6)


# ------------------------------------------------------------------------------------- exact gradients
@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize(("activation", "weighted"), [("tanh", False), ("relu", True)])
def test_objective_gradient_matches_finite_differences(name: str, activation: str, weighted: bool) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(7, 4))
    y = np.array([0, 1, 2, 3, 1, 0, 2])
    sw = rng.uniform(0.5, 2.0, size=7) if weighted else None
    net = Network((4, 5, 3, 4), activation)
    theta = rng.normal(scale=0.7, size=net.n_params)  # random biases too: no dead ReLU, no tied hinge margins
    layer = get_output_layer(name)
    grad = np.empty_like(theta)
    objective(theta, net, layer, X, y, sw, 0.3, grad)
    h = 1e-6
    fd = np.empty_like(theta)
    scratch = np.empty_like(theta)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = h
        fd[i] = (
            objective(theta + e, net, layer, X, y, sw, 0.3, scratch)
            - objective(theta - e, net, layer, X, y, sw, 0.3, scratch)
        ) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7 * max(1.0, float(np.abs(fd).max())))


def test_objective_is_the_library_loss_plus_l2() -> None:
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(6, 3)), np.array([0, 1, 2, 0, 1, 2])
    net = Network((3, 4, 3), "relu")
    theta = net.init(np.random.RandomState(0))
    coefs, intercepts = net.unpack(theta)
    hidden = np.maximum(X @ coefs[0] + intercepts[0], 0.0)
    z = hidden @ coefs[1] + intercepts[1]
    expected = -np.mean(log_softmax(z)[np.arange(6), y]) + 0.05 * (np.sum(coefs[0] ** 2) + np.sum(coefs[1] ** 2))
    assert objective(theta, net, get_output_layer("softmax"), X, y, None, 0.1, np.empty_like(theta)) == pytest.approx(
        expected, rel=1e-13
    )


# ------------------------------------------------------------------------------------ every output layer
@pytest.fixture(scope="module", params=LAYERS)
def fitted(request: pytest.FixtureRequest) -> tuple[SoftmaxClassifier, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X, y = load_iris(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(_standardised(X), y, test_size=0.3, random_state=0, stratify=y)
    clf = SoftmaxClassifier((8,), output_layer=request.param, alpha=1e-3, max_iter=300, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # spherical's L-BFGS crawls; the accuracy is the point
        clf.fit(X_tr, y_tr)
    return clf, X_tr, X_te, y_tr, y_te


def test_every_layer_learns_iris(fitted: Any) -> None:
    clf, _, X_te, _, y_te = fitted
    assert clf.score(X_te, y_te) > 0.85
    assert clf.output_layer_.name == clf.output_layer
    assert clf.loss_curve_[-1] == pytest.approx(clf.loss_, rel=1e-12)
    assert len(clf.loss_curve_) == clf.n_iter_


def test_probabilities_are_distributions_and_agree_with_predict(fitted: Any) -> None:
    clf, X_tr, X_te, _, _ = fitted
    X = np.vstack([X_tr, X_te])
    p = clf.predict_proba(X)
    assert p.shape == (len(X), 3)
    assert np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(clf.classes_[np.argmax(p, axis=1)], clf.predict(X))
    logp = clf.predict_log_proba(X)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(logp, np.log(p), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(np.isneginf(logp), p == 0)
    if clf.output_layer in SPARSE:
        assert np.any(p == 0.0)  # exact zeros, log -inf
    else:
        assert np.all(p > 0)


def test_decision_function_is_the_logits(fitted: Any) -> None:
    clf, X_tr, _, _, _ = fitted
    hidden = np.maximum(X_tr @ clf.coefs_[0] + clf.intercepts_[0], 0.0)
    np.testing.assert_allclose(clf.decision_function(X_tr), hidden @ clf.coefs_[1] + clf.intercepts_[1], rtol=1e-12)


def test_predict_proba_is_the_layer_mapping_of_logits_over_t(fitted: Any) -> None:
    clf, X_tr, _, _, _ = fitted
    z = clf.decision_function(X_tr) / 1.7
    layer = get_output_layer(clf.output_layer)
    if not layer.probabilities:
        expected = softmax(z)
    else:
        expected = layer.mapping(z)
        expected = expected / expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(layer.distribution(z)[0], expected, rtol=1e-10, atol=1e-15)
    old = clf.temperature_
    try:
        clf.temperature_ = 1.7
        np.testing.assert_allclose(clf.predict_proba(X_tr), expected, rtol=1e-10, atol=1e-15)
    finally:
        clf.temperature_ = old


@pytest.mark.parametrize("name", LAYERS)
def test_pickle_and_joblib_round_trips_predict_bit_identically(name: str, iris: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = iris
    clf = SoftmaxClassifier((4,), output_layer=name, solver="adam", learning_rate_init=0.05, max_iter=5, random_state=1)
    with pytest.warns(ConvergenceWarning):
        clf.fit(X, y)
    buf = io.BytesIO()
    joblib.dump(clf, buf)
    buf.seek(0)
    for other in (pickle.loads(pickle.dumps(clf)), joblib.load(buf)):
        for method in ("predict", "predict_proba", "predict_log_proba", "decision_function"):
            assert np.array_equal(getattr(other, method)(X), getattr(clf, method)(X))
        # training goes on identically after a reload (optimiser state and random stream are saved too)
        other.partial_fit(X, y)
        twin = pickle.loads(pickle.dumps(clf)).partial_fit(X, y)
        assert np.array_equal(other.predict_proba(X), twin.predict_proba(X))


# ---------------------------------------------------------------------------------------------- binary
def test_binary_decision_function_is_the_positive_score(iris: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = iris
    yb = np.where(y == 2, "virginica", "other")
    clf = SoftmaxClassifier(alpha=1e-2).fit(X, yb)
    assert clf.classes_.tolist() == ["other", "virginica"]
    d = clf.decision_function(X)
    z = X @ clf.coefs_[0] + clf.intercepts_[0]
    np.testing.assert_allclose(d, z[:, 1] - z[:, 0], rtol=1e-12)
    np.testing.assert_array_equal(clf.predict(X), np.where(d > 0, "virginica", "other"))
    assert clf.predict_proba(X).shape == (len(X), 2)


# -------------------------------------------------------------------------------------------- temperature
def test_temperature_fit_is_positive_and_leaves_predict_unchanged(digits: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = digits
    clf = SoftmaxClassifier((16,), alpha=1e-5, temperature="fit", validation_fraction=0.25, random_state=0)
    clf.fit(X, y)
    assert np.isfinite(clf.temperature_)
    assert clf.temperature_ > 0
    assert clf.temperature_ != 1.0  # a barely regularised MLP is overconfident
    z = clf.decision_function(X)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[np.argmax(z, axis=1)])
    np.testing.assert_allclose(clf.predict_proba(X), softmax(z / clf.temperature_), rtol=1e-12)
    # the same model at T = 1 predicts the same labels
    clf_t1 = pickle.loads(pickle.dumps(clf))
    clf_t1.temperature_ = 1.0
    np.testing.assert_array_equal(clf_t1.predict(X), clf.predict(X))
    assert not np.allclose(clf_t1.predict_proba(X), clf.predict_proba(X))


def test_temperature_fit_is_the_scaler_on_the_held_out_split(iris: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = iris
    clf = SoftmaxClassifier(alpha=1e-4, temperature="fit", validation_fraction=0.3, random_state=5).fit(X, y)
    # the held-out part is every sample the model was not trained on: refit on the training part to find it
    train_only = SoftmaxClassifier(alpha=1e-4, random_state=5)
    rng = np.random.RandomState(5)
    seed = rng.randint(np.iinfo(np.int32).max)
    tr, va = train_test_split(np.arange(len(y)), test_size=0.3, random_state=seed, stratify=y)
    train_only.fit(X[tr], y[tr])
    np.testing.assert_array_equal(train_only.coefs_[0], clf.coefs_[0])
    expected = TemperatureScaler(output_layer="softmax").fit(train_only.decision_function(X[va]), y[va]).temperature_
    assert clf.temperature_ == expected


def test_float_temperature_divides_the_logits(iris: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = iris
    clf = SoftmaxClassifier(alpha=1e-3, temperature=2.5).fit(X, y)
    assert clf.temperature_ == 2.5
    np.testing.assert_allclose(clf.predict_log_proba(X), log_softmax(clf.decision_function(X) / 2.5), rtol=1e-12)
    assert SoftmaxClassifier(alpha=1e-3).fit(X, y).temperature_ == 1.0


# ---------------------------------------------------------------------------------- stochastic training
def test_early_stopping_stops_early_and_keeps_the_best_epoch(digits: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = digits
    clf = SoftmaxClassifier(
        (32,),
        solver="adam",
        learning_rate_init=0.01,
        early_stopping=True,
        n_iter_no_change=3,
        max_iter=200,
        random_state=0,
    ).fit(X, y)
    assert clf.n_iter_ < 200
    assert len(clf.validation_scores_) == clf.n_iter_ == len(clf.loss_curve_)
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.best_validation_score_ > 0.9
    assert clf.best_loss_ == min(clf.loss_curve_)


def test_loss_based_stopping_without_early_stopping(iris: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = iris
    clf = SoftmaxClassifier(solver="sgd", learning_rate_init=0.1, tol=1e-3, n_iter_no_change=2, max_iter=500)
    clf.fit(X, y)
    assert clf.n_iter_ < 500
    assert clf.validation_scores_ is None
    assert clf.score(X, y) > 0.9


@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_partial_fit_epochs_equal_fit_epochs(solver: str, shuffle: bool, iris: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = iris
    params: dict[str, Any] = dict(solver=solver, shuffle=shuffle, batch_size=32, max_iter=4, random_state=3)
    with pytest.warns(ConvergenceWarning, match="max_iter=4"):
        full = SoftmaxClassifier((6,), **params).fit(X, y)
    inc = SoftmaxClassifier((6,), **params)
    for _ in range(4):
        inc.partial_fit(X, y, classes=np.unique(y))
    for a, b in zip(full.coefs_ + full.intercepts_, inc.coefs_ + inc.intercepts_, strict=True):
        assert np.array_equal(a, b)
    assert inc.n_iter_ == full.n_iter_ == 4
    assert inc.loss_curve_ == full.loss_curve_


def test_partial_fit_learns_from_a_stream(digits: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = digits
    clf = SoftmaxClassifier(solver="adam", learning_rate_init=0.01, random_state=0)
    classes = np.unique(y)
    for _ in range(3):
        for chunk in np.array_split(np.arange(len(y)), 6):
            clf.partial_fit(X[chunk], y[chunk], classes=classes)
    assert clf.score(X, y) > 0.9
    assert clf.n_iter_ == 18


def test_same_random_state_same_model(iris: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = iris
    params: dict[str, Any] = dict(solver="adam", max_iter=30, early_stopping=True, random_state=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = SoftmaxClassifier((5, 4), **params).fit(X, y)
        b = SoftmaxClassifier((5, 4), **params).fit(X, y)
        c = SoftmaxClassifier((5, 4), **{**params, "random_state": 8}).fit(X, y)
    for u, v in zip(a.coefs_, b.coefs_, strict=True):
        assert np.array_equal(u, v)
    assert not np.array_equal(a.coefs_[0], c.coefs_[0])


def test_lbfgs_not_converged_warns(digits: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = digits
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        clf = SoftmaxClassifier(max_iter=3).fit(X, y)
    assert clf.n_iter_ == 3
    assert len(clf.loss_curve_) == 3
    assert clf.loss_curve_[0] > clf.loss_curve_[-1]


# ------------------------------------------------------------------------------------------ special values
def test_sigmoid_probabilities_survive_very_negative_logits(iris: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = iris
    clf = SoftmaxClassifier(output_layer="sigmoid", alpha=1e-3).fit(X, y)
    clf.intercepts_[0] = clf.intercepts_[0] - 2000.0  # every sigmoid underflows to 0
    p = clf.predict_proba(X)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(np.isfinite(clf.predict_log_proba(X)))
    np.testing.assert_array_equal(clf.classes_[np.argmax(p, axis=1)], clf.predict(X))


@pytest.mark.parametrize("name", ["spherical", "taylor"])
def test_non_monotone_layers_predict_by_probability(name: str) -> None:
    clf = SoftmaxClassifier(output_layer=name).fit(np.eye(3), [0, 1, 2])
    clf.coefs_[0] = np.zeros((3, 3))
    clf.intercepts_[0] = np.array([-6.0, 1.0, 0.5])  # class 0: the smallest logit, the largest probability
    assert clf.predict(np.zeros((1, 3)))[0] == 0
    assert np.argmax(clf.decision_function(np.zeros((1, 3)))) == 1


@pytest.fixture(scope="module")
def small_models() -> list[SoftmaxClassifier]:
    X, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return [SoftmaxClassifier((3,), output_layer=name, max_iter=50, tol=1e-2).fit(X, y) for name in LAYERS]


@settings(max_examples=30, deadline=None)
@given(X=hnp.arrays(np.float64, (5, 4), elements=st.floats(-1e3, 1e3)))
def test_probabilities_are_distributions_for_any_input(small_models: list[SoftmaxClassifier], X: np.ndarray) -> None:
    for clf in small_models:
        p = clf.predict_proba(X)
        assert np.all((p >= 0) & (p <= 1))
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
        assert not np.any(np.isnan(clf.predict_log_proba(X)))


# ------------------------------------------------------------------------------------------------- errors
def test_errors_name_the_argument(iris: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = iris
    with pytest.raises(ValueError, match=r"y holds one class only"):
        SoftmaxClassifier().fit(X, np.zeros(len(y), dtype=int))
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SoftmaxClassifier().fit(bad, y)
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        SoftmaxClassifier().fit(bad, y)
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, inf\); got -1.0"):
        SoftmaxClassifier(alpha=-1.0).fit(X, y)
    with pytest.raises(ValueError, match=r"solver must be one of 'lbfgs', 'adam', 'sgd'; got 'newton'"):
        SoftmaxClassifier(solver="newton").fit(X, y)
    with pytest.raises(ValueError, match=r"hidden_layer_sizes must hold positive ints; got \(4, 0\)"):
        SoftmaxClassifier((4, 0)).fit(X, y)
    with pytest.raises(ValueError, match=r"temperature must be None, 'fit' or a finite number > 0; got inf"):
        SoftmaxClassifier(temperature=float("inf")).fit(X, y)
    with pytest.raises(TypeError, match=r"max_iter must be an integer; got 2.5"):
        SoftmaxClassifier(max_iter=2.5).fit(X, y)
    with pytest.raises(TypeError, match=r"shuffle must be True or False; got 'yes'"):
        SoftmaxClassifier(shuffle="yes").fit(X, y)
    with pytest.raises(ValueError, match=r"batch_size must be 'auto' or a positive int; got 0"):
        SoftmaxClassifier(batch_size=0).fit(X, y)
    with pytest.raises(ValueError, match=r"validation_fraction must lie in \(0, 1\); got 1.0"):
        SoftmaxClassifier(validation_fraction=1.0).fit(X, y)
    with pytest.raises(ValueError, match=r"sample_weight must be finite and >= 0; got -1.0 at position 2"):
        SoftmaxClassifier().fit(X, y, sample_weight=np.r_[1.0, 1.0, -1.0, np.ones(len(y) - 3)])
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(150,\)"):
        SoftmaxClassifier().fit(X, y, sample_weight=np.ones(3))


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_unknown_output_layer_names_the_argument_and_the_value(
    iris: tuple[np.ndarray, np.ndarray], method: str
) -> None:
    X, y = iris
    clf = SoftmaxClassifier(output_layer="x", solver="adam")  # scikit-learn's rule: __init__ only stores
    with pytest.raises(ValueError, match=r"output_layer must name a registered output layer; got 'x'.*softmax"):
        getattr(clf, method)(X, y, classes=np.unique(y)) if method == "partial_fit" else clf.fit(X, y)


def test_masked_x_is_refused_not_read_as_its_data(iris: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = iris
    masked = np.ma.masked_array(X, mask=np.zeros_like(X, dtype=bool))
    masked[0, 0] = np.ma.masked
    with pytest.raises(TypeError, match="X must not be a masked array"):
        SoftmaxClassifier().fit(masked, y)
    with pytest.raises(TypeError, match="X must not be a masked array"):
        SoftmaxClassifier(solver="adam").partial_fit(masked, y, classes=np.unique(y))
    clf = SoftmaxClassifier().fit(X, y)
    with pytest.raises(TypeError, match="X must not be a masked array"):
        clf.predict(masked)


def test_the_classifier_uses_only_public_scikit_learn_api() -> None:
    import ast
    import inspect

    from softmaxkit import _mlp, _solvers, classifier

    for module in (classifier, _mlp, _solvers):
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sklearn"):
                assert not any(part.startswith("_") for part in node.module.split(".")), node.module
                assert not any(alias.name.startswith("_") for alias in node.names), node.module


def test_partial_fit_errors(iris: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = iris
    clf = SoftmaxClassifier(solver="adam")
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[y < 2], y[y < 2], classes=[0, 1])
    with pytest.raises(ValueError, match=r"y holds the label 2, not among the classes \[0, 1\]"):
        clf.partial_fit(X, y)
    with pytest.raises(ValueError, match=r"classes=\[0, 1, 2\] differs"):
        clf.partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])
    with pytest.raises(ValueError, match="X has 3 features"):
        clf.partial_fit(X[:, :3], y)
    assert not hasattr(SoftmaxClassifier(solver="lbfgs"), "partial_fit")  # full-batch only


def test_fit_does_not_mutate_inputs(iris: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = iris
    sw = np.ones(len(y))
    X0, y0, sw0 = X.copy(), y.copy(), sw.copy()
    SoftmaxClassifier((3,), temperature="fit", random_state=0).fit(X, y, sample_weight=sw)
    assert np.array_equal(X, X0)
    assert np.array_equal(y, y0)
    assert np.array_equal(sw, sw0)


def test_binary_softmax_regression_solves_logistic_regressions_problem():
    """Two classes: L-BFGS runs on d = w_1 - w_0 alone (coefs_ = [-d/2, d/2]), LogisticRegression's problem."""
    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    ref = LogisticRegression(C=1.0, tol=1e-6, max_iter=10_000).fit(X, y)
    ours = SoftmaxClassifier(alpha=2.0 / len(y), tol=1e-6, max_iter=10_000).fit(X, y)
    W, b = ours.coefs_[0], ours.intercepts_[0]
    np.testing.assert_array_equal(W[:, 0], -W[:, 1])
    assert b[0] == -b[1]
    np.testing.assert_allclose(W[:, 1] - W[:, 0], ref.coef_[0], rtol=1e-4, atol=1e-5)
    assert abs(log_loss(y, ours.predict_proba(X)) - log_loss(y, ref.predict_proba(X))) < 1e-8
    assert abs(ours.n_iter_ - int(ref.n_iter_[0])) <= 2

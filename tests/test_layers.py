"""The registry of output layers: every entry honours the common contract its flags promise."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from softmaxkit.layers import ALIASES, OUTPUT_LAYERS, OutputLayer, get_output_layer, register_output_layer

NAMES = [
    "softmax",
    "taylor",
    "spherical",
    "sparsemax",
    "entmax15",
    "entmax_bisect",
    "sigmoid",
    "hinge",
    "softplus_normalize",
]


def test_the_issue_names_are_all_registered() -> None:
    assert set(NAMES) <= set(OUTPUT_LAYERS)


@pytest.fixture(params=NAMES)
def layer(request: pytest.FixtureRequest) -> OutputLayer:
    return get_output_layer(request.param)


def _logits(seed: int = 0, shape: tuple[int, ...] = (6, 5)) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=2.0, size=shape)


def test_mapping_keeps_the_shape_and_honours_its_flags(layer: OutputLayer) -> None:
    z = _logits()
    p = np.asarray(layer.mapping(z, axis=-1))
    assert p.shape == z.shape
    assert np.all(np.isfinite(p))
    if layer.probabilities:
        assert np.all((p >= 0) & (p <= 1))
    if layer.normalized:
        np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-12)
    else:
        assert not np.allclose(p.sum(axis=-1), 1.0)
    if layer.sparse:
        assert np.any(p == 0)
    elif layer.probabilities:
        assert np.all(p > 0)


def test_mapping_along_another_axis(layer: OutputLayer) -> None:
    z = _logits(1, (3, 4, 2))
    moved = np.asarray(layer.mapping(np.moveaxis(z, 1, -1), axis=-1))
    np.testing.assert_allclose(np.asarray(layer.mapping(z, axis=1)), np.moveaxis(moved, -1, 1), rtol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_loss_equals_the_value_of_value_and_grad(layer: OutputLayer, reduction: str) -> None:
    z, y = _logits(2), np.array([0, 1, 2, 3, 4, -100])
    w = np.linspace(0.5, 2.0, 5)
    kw = {"weight": w, "ignore_index": -100, "reduction": reduction, "axis": -1}
    loss = np.asarray(layer.loss(z, y, **kw))
    value, grad = layer.loss_value_and_grad(z, y, **kw)
    np.testing.assert_allclose(loss, np.asarray(value), rtol=1e-13)
    assert np.asarray(grad).shape == z.shape
    assert np.all(np.asarray(grad)[-1] == 0)  # the ignored row
    assert np.all(loss >= 0)


def test_gradient_matches_finite_differences(layer: OutputLayer) -> None:
    z, y = _logits(3), np.array([0, 1, 2, 3, 4, 0])
    _, grad = layer.loss_value_and_grad(z, y, reduction="sum")
    h = 1e-6
    fd = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        up, down = z.copy(), z.copy()
        up[idx] += h
        down[idx] -= h
        fd[idx] = (float(layer.loss(up, y, reduction="sum")) - float(layer.loss(down, y, reduction="sum"))) / (2 * h)
    np.testing.assert_allclose(np.asarray(grad), fd, atol=1e-6)


def test_a_confident_right_prediction_costs_less_than_a_confident_wrong_one(layer: OutputLayer) -> None:
    y = np.arange(5)
    right = np.where(np.eye(5, dtype=bool), 30.0, 0.0)
    wrong = np.roll(right, 1, axis=-1)
    assert float(layer.loss(right, y)) < 0.5 * float(layer.loss(wrong, y))
    assert np.all(np.argmax(np.asarray(layer.mapping(right)), axis=-1) == y)


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"name must name a registered output layer; got 'softmin'.*sparsemax"):
        get_output_layer("softmin")
    with pytest.raises(ValueError, match=r"output_layer must name a registered output layer; got 3"):
        get_output_layer(3, argument="output_layer")  # type: ignore[arg-type]


def test_normalize_is_an_alias_of_softplus_normalize() -> None:
    assert get_output_layer("normalize") is get_output_layer("softplus_normalize")
    assert "normalize" not in OUTPUT_LAYERS  # iterating the registry gives each layer once
    assert ALIASES["normalize"] == "softplus_normalize"
    with pytest.raises(ValueError, match="another name of 'softplus_normalize'"):
        register_output_layer(dataclasses.replace(get_output_layer("softmax"), name="normalize"))


# ------------------------------------------------------------------------------- the facts the flags promise
def test_log_mapping_is_the_log_of_the_mapping(layer: OutputLayer) -> None:
    if not layer.probabilities:
        pytest.skip("scores, not probabilities: distribution() takes their softmax")
    z = _logits(4)
    p = np.asarray(layer.mapping(z, axis=-1))
    logp = np.asarray(layer.log_outputs(z))
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(logp, np.log(p), rtol=1e-12, atol=1e-14)
    far = np.array([[0.0, -800.0, 5.0]])
    if layer.log_mapping is not None and not layer.sparse and layer.name != "taylor":
        assert np.all(np.isfinite(np.asarray(layer.log_outputs(far))))  # log space: finite where q underflows


def test_order_preserving_means_the_argmax_of_the_logits(layer: OutputLayer) -> None:
    rng = np.random.default_rng(5)
    z = rng.normal(scale=3.0, size=(400, 5))
    q = np.asarray(layer.mapping(z, axis=-1))
    same = np.argmax(q, axis=-1) == np.argmax(z, axis=-1)
    if layer.order_preserving:
        assert np.all(same)
        order = np.argsort(z, axis=-1)  # a larger logit never gets a smaller output
        assert np.all(np.diff(np.take_along_axis(q, order, axis=-1), axis=-1) >= 0)
    else:  # the flag is not merely conservative: the layer does reorder
        assert not np.all(same)


def test_shift_invariant_means_a_common_shift_changes_nothing(layer: OutputLayer) -> None:
    z, y = _logits(6), np.array([0, 1, 2, 3, 4, 0])
    shifted = z + 3.7
    p, p_shifted = (np.asarray(layer.distribution(a)[0]) for a in (z, shifted))
    same_map = np.allclose(p, p_shifted, rtol=1e-10, atol=1e-12)
    same_loss = np.isclose(float(layer.loss(z, y)), float(layer.loss(shifted, y)), rtol=1e-10)
    assert (same_map and same_loss) == layer.shift_invariant


def test_derivatives_are_reachable_and_agree_with_finite_differences(layer: OutputLayer) -> None:
    assert layer.jvp is not None
    assert layer.vjp is not None
    assert layer.jacobian is not None
    rng = np.random.default_rng(7)
    z = rng.normal(scale=1.5, size=(3, 4))
    v = rng.normal(size=z.shape)
    g = rng.normal(size=z.shape)
    jac = np.asarray(layer.jacobian(z))
    assert jac.shape == (3, 4, 4)
    np.testing.assert_allclose(np.asarray(layer.jvp(z, v)), np.einsum("nij,nj->ni", jac, v), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(layer.vjp(z, g)), np.einsum("ni,nij->nj", g, jac), rtol=1e-10, atol=1e-12)
    h = 1e-6
    fd = (np.asarray(layer.mapping(z + h * v)) - np.asarray(layer.mapping(z - h * v))) / (2 * h)
    np.testing.assert_allclose(np.asarray(layer.jvp(z, v)), fd, atol=1e-6)


def test_distribution_is_a_distribution_with_its_log(layer: OutputLayer) -> None:
    z = np.vstack([_logits(8), np.full((1, 5), -800.0)])  # the last row: every sigmoid output underflows
    p, logp = (np.asarray(a) for a in layer.distribution(z))
    assert p.shape == logp.shape == z.shape
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-12)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(logp, np.log(p), rtol=1e-10, atol=1e-12)
    if layer.probabilities and layer.normalized:
        np.testing.assert_allclose(p, np.asarray(layer.mapping(z)), rtol=1e-12)


def test_registering_takes_one_entry_and_refuses_a_taken_name() -> None:
    base = get_output_layer("softmax")
    extra = dataclasses.replace(base, name="softmax_copy_for_test", summary="a copy")
    try:
        assert register_output_layer(extra) is extra
        assert get_output_layer("softmax_copy_for_test") is extra
        with pytest.raises(ValueError, match="already registered"):
            register_output_layer(extra)
        register_output_layer(extra, replace=True)
    finally:
        from softmaxkit import layers

        layers._REGISTRY.pop("softmax_copy_for_test", None)
    with pytest.raises(TypeError, match="OutputLayer"):
        register_output_layer("softmax")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"layer\.name"):
        register_output_layer(dataclasses.replace(base, name="two words"))


def test_registry_view_is_read_only() -> None:
    with pytest.raises(TypeError):
        OUTPUT_LAYERS["x"] = get_output_layer("softmax")  # type: ignore[index]


def test_a_layer_added_by_one_register_call_runs_through_classifier_scaler_and_compare() -> None:
    """Issue 13: adding a layer is one ``register_output_layer`` call, with no name list to extend anywhere."""
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_iris

    from softmaxkit import compare, layers
    from softmaxkit.calibration import TemperatureScaler
    from softmaxkit.classifier import SoftmaxClassifier
    from softmaxkit.cross_entropy import cross_entropy, cross_entropy_value_and_grad
    from softmaxkit.softmax import softmax

    def half(x: np.ndarray, /, *, axis: int = -1) -> np.ndarray:  # softmax at T = 2
        return np.asarray(softmax(x, axis=axis, temperature=2.0))

    def half_loss(x: np.ndarray, t: np.ndarray, /, **kw: object) -> np.ndarray:
        return np.asarray(cross_entropy(np.asarray(x) / 2.0, t, **kw))  # type: ignore[arg-type]

    def half_value_and_grad(x: np.ndarray, t: np.ndarray, /, **kw: object) -> tuple[np.ndarray, np.ndarray]:
        value, grad = cross_entropy_value_and_grad(np.asarray(x) / 2.0, t, **kw)  # type: ignore[arg-type]
        return value, np.asarray(grad) / 2.0

    name = "softmax_at_two_for_test"
    register_output_layer(OutputLayer(name, half, half_loss, half_value_and_grad, True, True, False, "softmax(z/2)"))
    try:
        X, y = load_iris(return_X_y=True)
        X = (X - X.mean(0)) / X.std(0)
        clf = SoftmaxClassifier(output_layer=name, alpha=1e-3).fit(X, y)
        assert clf.score(X, y) > 0.9
        np.testing.assert_allclose(clf.predict_proba(X).sum(axis=1), 1.0, rtol=1e-12)
        z = clf.logits(X)
        ours = TemperatureScaler(output_layer=name).fit(z, y).temperature_
        plain = TemperatureScaler(output_layer="softmax").fit(z, y).temperature_
        assert ours == pytest.approx(plain / 2.0, rel=1e-6)  # softmax(z / (2 T)): the same fit, T halved
        config = compare.Config(data="iris", layers=("softmax", name), hidden=(8,), epochs=2, folds=2, baseline=False)
        result, probs, _ = compare.run(config)
        assert sorted(r["name"] for r in result["leaderboard"]) == sorted(["softmax", name])
        assert set(probs) == {"softmax", name}
    finally:
        layers._REGISTRY.pop(name, None)

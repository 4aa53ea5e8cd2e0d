"""The registry of output layers: every entry honours the common contract its flags promise."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from softmaxkit.layers import OUTPUT_LAYERS, OutputLayer, get_output_layer, register_output_layer

NAMES = ["softmax", "taylor", "spherical", "sparsemax", "entmax15", "entmax_bisect", "sigmoid", "hinge", "normalize"]


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
    with pytest.raises(ValueError, match=r"unknown output layer 'softmin'.*sparsemax"):
        get_output_layer("softmin")


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

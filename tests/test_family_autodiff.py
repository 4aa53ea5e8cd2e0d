"""Every output layer of the registry, on every array library with autodiff: the library's own gradient of the
generic functions equals the analytic one (issue 17: "no path returns a wrong gradient").

The generic :mod:`softmaxkit.family` functions hand torch tensors to :mod:`softmaxkit.torch.family` and JAX arrays
(tracers included) to :mod:`softmaxkit.jax.family` (``softmaxkit._backend.route``); here they are called through
the registry (:data:`softmaxkit.layers.OUTPUT_LAYERS`), as the classifier and ``softmaxkit compare`` call them, and
differentiated by ``torch.autograd`` and ``jax.vjp``. The oracle is the layer's analytic ``vjp`` and
``loss_value_and_grad`` run on NumPy arrays (no autodiff involved); the log mappings, which have no public
derivative, are checked as :math:`\\partial \\log p = (\\partial p) / p`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from conftest import LIBRARIES, seeded_rng, to_numpy, tol
from softmaxkit.layers import OUTPUT_LAYERS

AUTODIFF = [name for name in ("torch", "jax") if name in LIBRARIES]
N, C = 4, 6
LAYERS = list(OUTPUT_LAYERS)


def _vjp(library: str, f: Any, x: np.ndarray, g: np.ndarray, dtype: str) -> np.ndarray:
    """The library's reverse-mode product ``g^T (df/dx)`` at ``x``."""
    lib = LIBRARIES[library]
    if library == "torch":
        xt = lib(x, dtype).requires_grad_(True)
        out = f(xt)
        (grad,) = lib.xp.autograd.grad(out, xt, lib(g, dtype))
        return to_numpy(grad)
    import jax

    _, pullback = jax.vjp(f, lib(x, dtype))
    return to_numpy(pullback(lib(g, dtype))[0])


def _data(*key: object) -> tuple[np.ndarray, np.ndarray]:
    rng = seeded_rng("family autodiff", *key)
    x = rng.normal(size=(N, C)) * 2.0
    x[0, :3] = [4.0, 3.5, -3.0]  # a row where the sparse mappings have exact zeros
    return x, rng.normal(size=(N, C))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("library", AUTODIFF)
@pytest.mark.parametrize("name", LAYERS)
def test_mapping_autodiff_equals_its_analytic_vjp(name: str, library: str, dtype: str) -> None:
    layer = OUTPUT_LAYERS[name]
    assert layer.vjp is not None
    x, g = _data(name, "mapping")
    got = _vjp(library, lambda z: layer.mapping(z, axis=-1), x, g, dtype)
    want = layer.vjp(x, g, axis=-1)
    np.testing.assert_allclose(got, want, **tol(dtype))


@pytest.mark.parametrize("library", AUTODIFF)
@pytest.mark.parametrize("name", [n for n in LAYERS if OUTPUT_LAYERS[n].log_mapping is not None])
def test_log_mapping_autodiff_equals_the_mappings_vjp_over_p(name: str, library: str) -> None:
    layer = OUTPUT_LAYERS[name]
    assert layer.log_mapping is not None
    assert layer.vjp is not None
    x, g = _data(name, "log")
    x[1, 2] = 0.0  # a zero logit: log_sigmoid's and log_softplus_normalize's kinks in their generic code
    got = _vjp(library, lambda z: layer.log_mapping(z, axis=-1), x, g, "float64")
    want = layer.vjp(x, g / layer.mapping(x, axis=-1), axis=-1)
    np.testing.assert_allclose(got, want, **tol("float64"))


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("library", AUTODIFF)
@pytest.mark.parametrize("name", LAYERS)
def test_loss_autodiff_equals_its_value_and_grad(name: str, library: str, reduction: str) -> None:
    layer = OUTPUT_LAYERS[name]
    x, _ = _data(name, "loss", reduction)
    y = np.array([0, 2, -100, 5])  # one ignored row
    w = seeded_rng("weights", name).uniform(0.5, 2.0, size=C)
    lib = LIBRARIES[library]
    value, want = layer.loss_value_and_grad(x, y, weight=w, reduction=reduction)
    ct = np.ones_like(np.asarray(value))

    def loss(z: Any) -> Any:
        return layer.loss(z, lib(y), weight=lib(w), reduction=reduction)

    got = _vjp(library, loss, x, ct, "float64")
    np.testing.assert_allclose(got, want, **tol("float64"))
    np.testing.assert_allclose(to_numpy(loss(lib(x))), value, **tol("float64"))


@pytest.mark.parametrize("library", AUTODIFF)
def test_entmax_bisect_autodiff_was_027_off_on_every_library(library: str) -> None:
    """Issue 17: torch autograd and jax.grad of the generic entmax_bisect were up to 0.27 off at this x."""
    import softmaxkit

    x = np.array([[0.5, 1.0, -0.2, 0.9]])
    g = np.array([[0.0, 1.0, 0.0, 0.0]])
    got = _vjp(library, lambda z: softmaxkit.entmax_bisect(z, alpha=1.5), x, g, "float64")
    want = softmaxkit.family.entmax_bisect_vjp(x, g, alpha=1.5)
    np.testing.assert_allclose(got, want, **tol("float64"))


@pytest.mark.parametrize("library", AUTODIFF)
def test_entmax_bisect_loss_autodiff_was_nan_on_every_library(library: str) -> None:
    """Issue 17: the autodiff gradient of the generic entmax_bisect_loss was nan once a class had p = 0."""
    import softmaxkit

    lib = LIBRARIES[library]
    x = np.array([[0.5, 1.0, -5.2, 0.9]])
    got = _vjp(library, lambda z: softmaxkit.entmax_bisect_loss(z, lib(np.array([1]))), x, np.array(1.0), "float64")
    _, want = softmaxkit.entmax_bisect_loss_value_and_grad(x, np.array([1]))
    np.testing.assert_allclose(got, want, **tol("float64"))

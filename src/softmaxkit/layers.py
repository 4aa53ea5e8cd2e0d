r"""The registry of output layers: one name → mapping, loss, analytic gradient and what the outputs are.

An *output layer* turns a network's last scores :math:`z \in \mathbb{R}^C` into what the model predicts, and is
trained by a loss that matches it. Softmax with cross-entropy is one choice among several; the seeds of this
project ask why it is the usual one, and the registry lets a classifier or the ``softmaxkit compare`` command
try each alternative on the same data by its name:

================  =====================================  ==========  =======  ========================================
name              mapping                                 normalised  sparse   loss
================  =====================================  ==========  =======  ========================================
``softmax``       :math:`e^{z_i}/\sum_j e^{z_j}`           yes         no       cross-entropy
``taylor``        :math:`f(z_i)/\sum_j f(z_j)`, f = 2nd    yes         no       :math:`-\log p_y`
                  order Taylor polynomial of exp
``spherical``     :math:`(z_i^2+\varepsilon)/\sum_j(z_j^2+\varepsilon)`  yes  no  :math:`-\log p_y`
``sparsemax``     Euclidean projection on the simplex     yes         yes      Fenchel–Young (sparsemax loss)
``entmax15``      1.5-entmax (exact, sort-based)          yes         yes      Fenchel–Young (1.5-entmax loss)
``entmax_bisect`` α-entmax by bisection (α = 1.5)         yes         yes      Fenchel–Young (α-entmax loss)
``sigmoid``       :math:`1/(1+e^{-z_i})`, one-vs-rest     no          no       binary cross-entropy per class
``hinge``         the scores themselves                   no          no       multiclass hinge (Crammer–Singer)
``normalize``     :math:`\mathrm{sp}(z_i)/\sum_j \mathrm{sp}(z_j)`, sp = softplus  yes  no  :math:`-\log p_y`
================  =====================================  ==========  =======  ========================================

Every loss takes ``(logits, target)`` with integer class targets and the keywords ``axis``, ``weight``,
``ignore_index`` and ``reduction`` of :func:`softmaxkit.cross_entropy`; ``loss_value_and_grad`` returns the loss
and its exact gradient with respect to the logits. Adding a layer is one call to :func:`register_output_layer`.

Examples
--------
>>> import numpy as np
>>> from softmaxkit.layers import OUTPUT_LAYERS, get_output_layer
>>> sorted(OUTPUT_LAYERS)[:3]
['entmax15', 'entmax_bisect', 'hinge']
>>> layer = get_output_layer("sparsemax")
>>> print(layer.mapping(np.array([[2.0, 1.0, -1.0]])))
[[1. 0. 0.]]
>>> loss, grad = layer.loss_value_and_grad(np.array([[2.0, 1.0, -1.0]]), np.array([1]))
>>> float(loss), grad.tolist()
(1.0, [[1.0, -1.0, 0.0]])
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .cross_entropy import cross_entropy, cross_entropy_value_and_grad
from .family.entmax import entmax15, entmax15_loss, entmax15_loss_value_and_grad
from .family.entmax_bisect import entmax_bisect, entmax_bisect_loss, entmax_bisect_loss_value_and_grad
from .family.hinge import multiclass_hinge_loss, multiclass_hinge_loss_value_and_grad
from .family.sigmoid import sigmoid, sigmoid_cross_entropy, sigmoid_cross_entropy_value_and_grad
from .family.softplus_normalize import (
    softplus_normalize,
    softplus_normalize_cross_entropy,
    softplus_normalize_cross_entropy_value_and_grad,
)
from .family.sparsemax import sparsemax, sparsemax_loss, sparsemax_loss_value_and_grad
from .family.spherical import spherical_cross_entropy, spherical_cross_entropy_value_and_grad, spherical_softmax
from .family.taylor import taylor_cross_entropy, taylor_cross_entropy_value_and_grad, taylor_softmax
from .softmax import softmax

__all__ = ["OUTPUT_LAYERS", "OutputLayer", "get_output_layer", "register_output_layer"]


@dataclass(frozen=True)
class OutputLayer:
    """One output layer: its mapping, its loss with the analytic gradient, and what its outputs are."""

    name: str
    mapping: Callable[..., Any]
    """``mapping(logits, axis=-1)``: the model's outputs (probabilities, or scores for ``hinge``)."""
    loss: Callable[..., Any]
    """``loss(logits, target, *, axis, weight, ignore_index, reduction)``."""
    loss_value_and_grad: Callable[..., tuple[Any, Any]]
    """Same arguments as ``loss``; returns ``(loss, d loss / d logits)``."""
    probabilities: bool
    """The outputs are probabilities (each in ``[0, 1]``)."""
    normalized: bool
    """The outputs of a row sum to one (a distribution over the classes)."""
    sparse: bool
    """The mapping gives exact zeros to unlikely classes."""
    summary: str
    """One line for tables and ``--help``."""


_REGISTRY: dict[str, OutputLayer] = {}
OUTPUT_LAYERS: Mapping[str, OutputLayer] = types.MappingProxyType(_REGISTRY)
"""Read-only view of the registry, name → :class:`OutputLayer`, in registration order."""


def register_output_layer(layer: OutputLayer, *, replace: bool = False) -> OutputLayer:
    """Add ``layer`` to the registry under ``layer.name``; a taken name needs ``replace=True``.

    Raises ``TypeError`` if ``layer`` is not an :class:`OutputLayer` and ``ValueError`` for a name that is not
    identifier-like or already taken.

    Examples
    --------
    >>> import dataclasses
    >>> hot = dataclasses.replace(get_output_layer("softmax"), name="softmax_t2", summary="softmax at T = 2")
    >>> register_output_layer(hot).name
    'softmax_t2'
    >>> register_output_layer(hot)
    Traceback (most recent call last):
    ...
    ValueError: an output layer named 'softmax_t2' is already registered; pass replace=True
    >>> _ = _REGISTRY.pop("softmax_t2")
    """
    if not isinstance(layer, OutputLayer):
        raise TypeError(f"layer must be an OutputLayer; got {type(layer).__name__}")
    if not isinstance(layer.name, str) or not layer.name.isidentifier():
        raise ValueError(f"layer.name must be an identifier-like string; got {layer.name!r}")
    if layer.name in _REGISTRY and not replace:
        raise ValueError(f"an output layer named {layer.name!r} is already registered; pass replace=True")
    _REGISTRY[layer.name] = layer
    return layer


def get_output_layer(name: str) -> OutputLayer:
    """The registered layer called ``name``; an unknown name raises a ``ValueError`` listing the known ones.

    Examples
    --------
    >>> layer = get_output_layer("hinge")
    >>> layer.probabilities, layer.normalized, layer.sparse
    (False, False, False)
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown output layer {name!r}; choose one of {', '.join(_REGISTRY)}") from None


def _identity(x: Any, /, *, axis: int = -1) -> Any:
    """The hinge layer outputs its scores unchanged (``axis`` accepted for a uniform signature)."""
    return x


for _layer in (
    OutputLayer(
        "softmax", softmax, cross_entropy, cross_entropy_value_and_grad, True, True, False,
        "softmax + cross-entropy: the reference",
    ),
    OutputLayer(
        "taylor", taylor_softmax, taylor_cross_entropy, taylor_cross_entropy_value_and_grad, True, True, False,
        "2nd-order Taylor softmax (de Brébisson & Vincent 2016)",
    ),
    OutputLayer(
        "spherical", spherical_softmax, spherical_cross_entropy, spherical_cross_entropy_value_and_grad,
        True, True, False, "spherical softmax (z² + ε normalised; de Brébisson & Vincent 2016)",
    ),
    OutputLayer(
        "sparsemax", sparsemax, sparsemax_loss, sparsemax_loss_value_and_grad, True, True, True,
        "sparsemax + its Fenchel–Young loss (Martins & Astudillo 2016)",
    ),
    OutputLayer(
        "entmax15", entmax15, entmax15_loss, entmax15_loss_value_and_grad, True, True, True,
        "1.5-entmax + its Fenchel–Young loss (Peters, Niculae & Martins 2019)",
    ),
    OutputLayer(
        "entmax_bisect", entmax_bisect, entmax_bisect_loss, entmax_bisect_loss_value_and_grad, True, True, True,
        "α-entmax by bisection, α = 1.5 (Peters, Niculae & Martins 2019)",
    ),
    OutputLayer(
        "sigmoid", sigmoid, sigmoid_cross_entropy, sigmoid_cross_entropy_value_and_grad,
        True, False, False, "one-vs-rest sigmoids + binary cross-entropy (classes do not compete)",
    ),
    OutputLayer(
        "hinge", _identity, multiclass_hinge_loss, multiclass_hinge_loss_value_and_grad, False, False, False,
        "multiclass hinge (Crammer–Singer): margins, not probabilities",
    ),
    OutputLayer(
        "normalize", softplus_normalize, softplus_normalize_cross_entropy,
        softplus_normalize_cross_entropy_value_and_grad, True, True, False,
        "standard normalisation of softplus(z): blind to the scale of large logits",
    ),
):
    register_output_layer(_layer)
del _layer

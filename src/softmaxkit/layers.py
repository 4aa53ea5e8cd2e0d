r"""The registry of output layers: one name → mapping, loss, analytic gradient and what the outputs are.

An *output layer* turns a network's last scores :math:`z \in \mathbb{R}^C` into what the model predicts, and is
trained by a loss that matches it. Softmax with cross-entropy is one choice among several; the seeds of this
project ask why it is the usual one, and the registry lets a classifier or the ``softmaxkit compare`` command
try each alternative on the same data by its name:

======================  ======================================  ==========  =======  =================================
name                    mapping                                 normalised  sparse   loss
======================  ======================================  ==========  =======  =================================
``softmax``             :math:`e^{z_i}/\sum_j e^{z_j}`          yes         no       cross-entropy
``taylor``              :math:`f(z_i)/\sum_j f(z_j)`, f the     yes         no       :math:`-\log p_y`
                        2nd order Taylor polynomial of exp
``spherical``           :math:`(z_i^2+ε)/\sum_j(z_j^2+ε)`       yes         no       :math:`-\log p_y`
``sparsemax``           Euclidean projection on the simplex     yes         yes      Fenchel–Young (sparsemax loss)
``entmax15``            1.5-entmax (exact, sort-based)          yes         yes      Fenchel–Young (1.5-entmax loss)
``entmax_bisect``       α-entmax by bisection (α = 1.5)         yes         yes      Fenchel–Young (α-entmax loss)
``sigmoid``             :math:`1/(1+e^{-z_i})`, one-vs-rest     no          no       binary cross-entropy per class
``hinge``               the scores themselves                   no          no       multiclass hinge (Crammer–Singer)
``softplus_normalize``  :math:`s(z_i)/\sum_j s(z_j)`,           yes         no       :math:`-\log p_y`
                        s = softplus
======================  ======================================  ==========  =======  =================================

``softplus_normalize`` is also found under its former registry name ``normalize`` (an alias, kept so that
``SoftmaxClassifier(output_layer="normalize")`` and ``softmaxkit compare --layers normalize`` keep working; it is
not :func:`softmaxkit.family.normalize`, the plain :math:`x_i / \sum_j x_j` of non-negative scores).

Every loss takes ``(logits, target)`` with integer class targets and the keywords ``axis``, ``weight``,
``ignore_index`` and ``reduction`` of :func:`softmaxkit.cross_entropy`; ``loss_value_and_grad`` returns the loss
and its exact gradient with respect to the logits. A layer also carries what the applications need to know about
it, so that none of them keeps a list of names:

=====================  ==========================================================================================
field / method         meaning, and who uses it
=====================  ==========================================================================================
``log_mapping``        the log of the mapping computed in log space (exact where the mapping underflows), or
                       ``None`` (then ``log(mapping)``, ``-inf`` at exact zeros)
``order_preserving``   a larger logit never gets a smaller output: the predicted class is the argmax of the
                       logits, for every temperature (``SoftmaxClassifier.predict``)
``shift_invariant``    adding one number to every logit of a row changes neither the class distribution nor the
                       loss (the classifier's binary L-BFGS then runs on :math:`w_1 - w_0` alone, from zeros)
``jvp``, ``vjp``,      the mapping's derivatives: ``jvp(x, v, axis=-1)``, ``vjp(x, g, axis=-1)``,
``jacobian``           ``jacobian(x, axis=-1)`` (shape ``batch + (C, C)``)
``distribution(z)``    ``(probabilities, log-probabilities)`` of the classes for scores ``z``: the one place
                       that decides how a layer's outputs become a distribution (classifier, calibration,
                       ``softmaxkit compare``)
=====================  ==========================================================================================

Adding a layer is one call to :func:`register_output_layer`: the classifier, :class:`TemperatureScaler
<softmaxkit.calibration.TemperatureScaler>` and ``softmaxkit compare`` then take it by its name.

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

import array_api_compat

from ._array import Array, namespace_of, to_last
from .cross_entropy import cross_entropy, cross_entropy_value_and_grad
from .family.entmax import (
    entmax15,
    entmax15_jacobian,
    entmax15_jvp,
    entmax15_loss,
    entmax15_loss_value_and_grad,
    entmax15_vjp,
)
from .family.entmax_bisect import (
    entmax_bisect,
    entmax_bisect_jacobian,
    entmax_bisect_jvp,
    entmax_bisect_loss,
    entmax_bisect_loss_value_and_grad,
    entmax_bisect_vjp,
)
from .family.hinge import multiclass_hinge_loss, multiclass_hinge_loss_value_and_grad
from .family.sigmoid import (
    log_sigmoid,
    sigmoid,
    sigmoid_cross_entropy,
    sigmoid_cross_entropy_value_and_grad,
    sigmoid_jacobian,
    sigmoid_jvp,
    sigmoid_vjp,
)
from .family.softplus_normalize import (
    log_softplus_normalize,
    softplus_normalize,
    softplus_normalize_cross_entropy,
    softplus_normalize_cross_entropy_value_and_grad,
    softplus_normalize_jacobian,
    softplus_normalize_jvp,
    softplus_normalize_vjp,
)
from .family.sparsemax import (
    sparsemax,
    sparsemax_jacobian,
    sparsemax_jvp,
    sparsemax_loss,
    sparsemax_loss_value_and_grad,
    sparsemax_vjp,
)
from .family.spherical import (
    log_spherical_softmax,
    spherical_cross_entropy,
    spherical_cross_entropy_value_and_grad,
    spherical_softmax,
    spherical_softmax_jacobian,
    spherical_softmax_jvp,
    spherical_softmax_vjp,
)
from .family.taylor import (
    log_taylor_softmax,
    taylor_cross_entropy,
    taylor_cross_entropy_value_and_grad,
    taylor_softmax,
    taylor_softmax_jacobian,
    taylor_softmax_jvp,
    taylor_softmax_vjp,
)
from .softmax import log_softmax, softmax, softmax_jacobian, softmax_jvp, softmax_vjp

__all__ = ["ALIASES", "OUTPUT_LAYERS", "OutputLayer", "get_output_layer", "register_output_layer"]


@dataclass(frozen=True)
class OutputLayer:
    """One output layer: its mapping, its loss with the analytic gradient, and what its outputs are.

    The first eight fields are required (and may be given by position); the facts after them default to the
    safe answer for a layer nobody has studied: no log mapping (``log(mapping)`` is used), not order-preserving
    (predictions from the mapping's argmax), not shift-invariant, no derivatives.
    """

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
    log_mapping: Callable[..., Any] | None = None
    """``log_mapping(logits, axis=-1)``: ``log(mapping(logits))`` computed in log space, or ``None``."""
    order_preserving: bool = False
    """``z_i > z_j`` implies ``mapping(z)_i >= mapping(z)_j``: the argmax of the logits is that of the outputs."""
    shift_invariant: bool = False
    """Adding the same number to every logit of a row changes neither :meth:`distribution` nor the loss."""
    jvp: Callable[..., Any] | None = None
    """``jvp(x, v, axis=-1)``: the mapping's Jacobian at ``x`` times the tangent ``v``."""
    vjp: Callable[..., Any] | None = None
    """``vjp(x, g, axis=-1)``: the cotangent ``g`` times the mapping's Jacobian at ``x``."""
    jacobian: Callable[..., Any] | None = None
    """``jacobian(x, axis=-1)``: the full Jacobian, shape ``batch + (C, C)``, ``J[..., i, j] = d q_i / d x_j``."""

    def log_outputs(self, scores: Array, /) -> Array:
        """``log(mapping(scores))`` along the last axis: :attr:`log_mapping` where the layer has one, else the log
        of the mapping with ``-inf`` at exact zeros."""
        if self.log_mapping is not None:
            return self.log_mapping(scores, axis=-1)
        xp, q = namespace_of(self.mapping(scores, axis=-1))
        positive = q > 0
        return xp.where(positive, xp.log(xp.where(positive, q, xp.ones_like(q))), xp.full_like(q, -xp.inf))

    def distribution(self, scores: Array, /) -> tuple[Array, Array]:
        """``(probabilities, log-probabilities)`` of the classes for ``scores`` (classes on the last axis).

        The one rule every application follows to turn a layer's outputs into a distribution:

        * normalised probability layers: the mapping and its log (:meth:`log_outputs`);
        * probability layers whose rows do not sum to one (``sigmoid``): renormalised in log space,
          ``softmax(log q)``, so that a row of tiny outputs is still a distribution (never 0/0);
        * score layers (``hinge``): the softmax of the scores, uncalibrated by design.

        Divide ``scores`` by a temperature first to scale them.

        Examples
        --------
        >>> import numpy as np
        >>> p, logp = get_output_layer("sigmoid").distribution(np.array([[0.0, 0.0]]))
        >>> p.tolist(), bool(np.allclose(np.exp(logp), p))
        ([[0.5, 0.5]], True)
        """
        if not self.probabilities:
            return softmax(scores), log_softmax(scores)
        if not self.normalized:
            logs = self.log_outputs(scores)
            return softmax(logs), log_softmax(logs)
        return self.mapping(scores, axis=-1), self.log_outputs(scores)


_REGISTRY: dict[str, OutputLayer] = {}
OUTPUT_LAYERS: Mapping[str, OutputLayer] = types.MappingProxyType(_REGISTRY)
"""Read-only view of the registry, name → :class:`OutputLayer`, in registration order (aliases not included)."""

ALIASES: Mapping[str, str] = types.MappingProxyType({"normalize": "softplus_normalize"})
"""Other names :func:`get_output_layer` accepts, alias → registry name (``normalize``: the name until 0.1)."""


def register_output_layer(layer: OutputLayer, *, replace: bool = False) -> OutputLayer:
    """Add ``layer`` to the registry under ``layer.name``; a taken name needs ``replace=True``.

    Raises ``TypeError`` if ``layer`` is not an :class:`OutputLayer` and ``ValueError`` for a name that is not
    identifier-like, is an alias (:data:`ALIASES`) or is already taken.

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
    if layer.name in ALIASES:
        raise ValueError(f"layer.name {layer.name!r} is another name of {ALIASES[layer.name]!r}; choose another")
    if layer.name in _REGISTRY and not replace:
        raise ValueError(f"an output layer named {layer.name!r} is already registered; pass replace=True")
    _REGISTRY[layer.name] = layer
    return layer


def get_output_layer(name: str, *, argument: str = "name") -> OutputLayer:
    """The registered layer called ``name`` (or an alias of it, see :data:`ALIASES`).

    An unknown name raises a ``ValueError`` that names ``argument`` (the caller's parameter, e.g.
    ``output_layer``), the value, and the known layers.

    Examples
    --------
    >>> layer = get_output_layer("hinge")
    >>> layer.probabilities, layer.normalized, layer.sparse, layer.order_preserving
    (False, False, False, True)
    >>> get_output_layer("normalize").name
    'softplus_normalize'
    >>> get_output_layer("x", argument="output_layer")
    Traceback (most recent call last):
    ...
    ValueError: output_layer must name a registered output layer; got 'x'. Choose one of softmax, taylor, ...
    """
    try:
        return _REGISTRY[ALIASES.get(name, name)]
    except (KeyError, TypeError):
        raise ValueError(
            f"{argument} must name a registered output layer; got {name!r}. Choose one of {', '.join(_REGISTRY)}"
            f" (or {', '.join(f'{a} = {n}' for a, n in ALIASES.items())})"
        ) from None


# ---------------------------------------------------------------------------- the hinge layer's identity mapping
def _identity(x: Array, /, *, axis: int = -1) -> Array:
    """The hinge layer outputs its scores unchanged (``axis`` accepted for a uniform signature)."""
    return namespace_of(x)[1]


def _identity_jvp(x: Array, v: Array, /, *, axis: int = -1) -> Array:
    """The identity's Jacobian-vector product: ``v`` itself."""
    return namespace_of(v)[1]


def _identity_vjp(x: Array, g: Array, /, *, axis: int = -1) -> Array:
    """The identity's vector-Jacobian product: ``g`` itself."""
    return namespace_of(g)[1]


def _identity_jacobian(x: Array, /, *, axis: int = -1) -> Array:
    """The identity's Jacobian, ``batch + (C, C)``: the identity matrix for every row."""
    xp, z = namespace_of(x)
    if z.ndim == 0:
        raise ValueError("x must have at least one dimension (the classes)")
    z = to_last(xp, z, axis % z.ndim)
    c = z.shape[-1]
    dtype = z.dtype if xp.isdtype(z.dtype, "real floating") else xp.float64
    eye = xp.eye(c, dtype=dtype, device=array_api_compat.device(z))
    return xp.broadcast_to(eye, (*z.shape[:-1], c, c))


for _layer in (
    OutputLayer(
        "softmax", softmax, cross_entropy, cross_entropy_value_and_grad, True, True, False,
        "softmax + cross-entropy: the reference",
        log_mapping=log_softmax, order_preserving=True, shift_invariant=True,
        jvp=softmax_jvp, vjp=softmax_vjp, jacobian=softmax_jacobian,
    ),
    OutputLayer(
        "taylor", taylor_softmax, taylor_cross_entropy, taylor_cross_entropy_value_and_grad, True, True, False,
        "2nd-order Taylor softmax (de Brébisson & Vincent 2016)",
        log_mapping=log_taylor_softmax,
        jvp=taylor_softmax_jvp, vjp=taylor_softmax_vjp, jacobian=taylor_softmax_jacobian,
    ),
    OutputLayer(
        "spherical", spherical_softmax, spherical_cross_entropy, spherical_cross_entropy_value_and_grad,
        True, True, False, "spherical softmax (z² + ε normalised; de Brébisson & Vincent 2016)",
        log_mapping=log_spherical_softmax,
        jvp=spherical_softmax_jvp, vjp=spherical_softmax_vjp, jacobian=spherical_softmax_jacobian,
    ),
    OutputLayer(
        "sparsemax", sparsemax, sparsemax_loss, sparsemax_loss_value_and_grad, True, True, True,
        "sparsemax + its Fenchel–Young loss (Martins & Astudillo 2016)",
        order_preserving=True, shift_invariant=True,
        jvp=sparsemax_jvp, vjp=sparsemax_vjp, jacobian=sparsemax_jacobian,
    ),
    OutputLayer(
        "entmax15", entmax15, entmax15_loss, entmax15_loss_value_and_grad, True, True, True,
        "1.5-entmax + its Fenchel–Young loss (Peters, Niculae & Martins 2019)",
        order_preserving=True, shift_invariant=True,
        jvp=entmax15_jvp, vjp=entmax15_vjp, jacobian=entmax15_jacobian,
    ),
    OutputLayer(
        "entmax_bisect", entmax_bisect, entmax_bisect_loss, entmax_bisect_loss_value_and_grad, True, True, True,
        "α-entmax by bisection, α = 1.5 (Peters, Niculae & Martins 2019)",
        order_preserving=True, shift_invariant=True,
        jvp=entmax_bisect_jvp, vjp=entmax_bisect_vjp, jacobian=entmax_bisect_jacobian,
    ),
    OutputLayer(
        "sigmoid", sigmoid, sigmoid_cross_entropy, sigmoid_cross_entropy_value_and_grad,
        True, False, False, "one-vs-rest sigmoids + binary cross-entropy (classes do not compete)",
        log_mapping=log_sigmoid, order_preserving=True,
        jvp=sigmoid_jvp, vjp=sigmoid_vjp, jacobian=sigmoid_jacobian,
    ),
    OutputLayer(
        "hinge", _identity, multiclass_hinge_loss, multiclass_hinge_loss_value_and_grad, False, False, False,
        "multiclass hinge (Crammer–Singer): margins, not probabilities",
        order_preserving=True, shift_invariant=True,
        jvp=_identity_jvp, vjp=_identity_vjp, jacobian=_identity_jacobian,
    ),
    OutputLayer(
        "softplus_normalize", softplus_normalize, softplus_normalize_cross_entropy,
        softplus_normalize_cross_entropy_value_and_grad, True, True, False,
        "standard normalisation of softplus(z): blind to the scale of large logits",
        log_mapping=log_softplus_normalize, order_preserving=True,
        jvp=softplus_normalize_jvp, vjp=softplus_normalize_vjp, jacobian=softplus_normalize_jacobian,
    ),
):  # fmt: skip
    register_output_layer(_layer)
del _layer

r"""The NumPy network behind :class:`softmaxkit.classifier.SoftmaxClassifier`: parameters and objective.

The classifier is three modules, as scikit-learn's logistic regression is (estimator, loss, optimiser): the
estimator (:mod:`softmaxkit.classifier`: parameters, checks, scikit-learn's API), this one (the network and the
objective with its gradient) and :mod:`softmaxkit._solvers` (L-BFGS, Adam, SGD and their loops).

The parameters of every layer live in one flat float64 vector :math:`\theta` (layer by layer: the weight matrix
``W_l`` of shape ``(fan_in, fan_out)`` in C order, then the bias ``b_l``), and the matrices the estimator shows as
``coefs_`` / ``intercepts_`` are views into it. L-BFGS works on :math:`\theta` directly, and Adam/SGD update it in
place with one vectorised expression, so no step loops over layers in Python.

The objective is

.. math:: J(\theta) = \frac{\sum_n s_n\, \ell(z_n, y_n)}{\sum_n s_n} + \frac{\alpha}{2} \sum_l \lVert W_l \rVert_F^2 ,

with :math:`z_n` the logits of sample :math:`n`, :math:`s_n` its weight (1 without ``sample_weight``) and
:math:`\ell` the loss of the output layer, whose value and gradient :math:`\partial \ell / \partial z` come from
the library (:attr:`softmaxkit.layers.OutputLayer.loss_value_and_grad`); only the chain rule through the hidden
layers is written here (backpropagation, Rumelhart, Hinton & Williams 1986).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .layers import OutputLayer

__all__ = ["Network", "data_loss", "objective", "with_ones"]

F64 = npt.NDArray[np.float64]
ACTIVATIONS = ("relu", "tanh")


@dataclass(frozen=True)
class Network:
    """Shapes of a fully connected network and how its parameters sit in the flat vector."""

    sizes: tuple[int, ...]
    """``(n_features, *hidden_layer_sizes, n_outputs)``."""
    activation: str

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def n_params(self) -> int:
        return sum((a + 1) * b for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=True))

    def unpack(self, theta: F64) -> tuple[list[F64], list[F64]]:
        """Views of ``theta`` as the weight matrices and bias vectors (writing to them writes ``theta``)."""
        coefs: list[F64] = []
        intercepts: list[F64] = []
        start = 0
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:], strict=True):
            stop = start + fan_in * fan_out
            coefs.append(theta[start:stop].reshape(fan_in, fan_out))
            intercepts.append(theta[stop : stop + fan_out])
            start = stop + fan_out
        return coefs, intercepts

    def pack(self, coefs: list[F64], intercepts: list[F64]) -> F64:
        """A new flat vector holding ``coefs`` and ``intercepts``."""
        parts: list[F64] = []
        for w, b in zip(coefs, intercepts, strict=True):
            parts += [np.ravel(w), np.ravel(b)]
        return np.concatenate(parts).astype(np.float64, copy=False)

    def weight_mask(self) -> F64:
        """1.0 where ``theta`` holds a weight (penalised by L2), 0.0 where it holds a bias."""
        mask = np.ones(self.n_params)
        _, intercepts = self.unpack(mask)
        for b in intercepts:
            b[...] = 0.0
        return mask

    def init(self, rng: np.random.RandomState) -> F64:
        r"""Random weights, zero biases.

        Hidden layers followed by ReLU get He's normal initialisation, :math:`\mathcal N(0, 2/\text{fan\_in})`
        (He et al. 2015), which keeps the variance of the activations constant through ReLUs; tanh layers and
        the output layer get Glorot's uniform :math:`U(\pm\sqrt{6/(\text{fan\_in}+\text{fan\_out})})` (Glorot &
        Bengio 2010). Random weights also break the symmetry between hidden units and keep every output layer
        away from :math:`z = 0`, a stationary point of the spherical loss.
        """
        theta = np.zeros(self.n_params)
        coefs, _ = self.unpack(theta)
        for i, w in enumerate(coefs):
            fan_in, fan_out = w.shape
            if i < len(coefs) - 1 and self.activation == "relu":
                w[...] = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=w.shape)
            else:
                bound = np.sqrt(6.0 / (fan_in + fan_out))
                w[...] = rng.uniform(-bound, bound, size=w.shape)
        return theta

    def first_block(self, theta: F64) -> F64:
        """The first layer's ``[W_1; b_1]`` as one ``(n_features + 1, fan_out)`` view (``b_1`` follows ``W_1``)."""
        return theta[: (self.sizes[0] + 1) * self.sizes[1]].reshape(self.sizes[0] + 1, self.sizes[1])

    def forward(self, theta: F64, X: F64) -> tuple[F64, list[F64]]:
        """Logits of ``X`` and the inputs of every layer (``X`` first), kept for the backward pass.

        ``X`` may carry a trailing column of ones (:func:`with_ones`, made once per fit): the first layer is then
        the single product ``[X, 1] @ [W_1; b_1]``, and its gradient another, with no bias pass of their own.
        """
        coefs, intercepts = self.unpack(theta)
        block = self.first_block(theta) if X.shape[1] == self.sizes[0] + 1 else None
        return self.propagate(coefs, intercepts, X, block)

    def propagate(
        self, coefs: list[F64], intercepts: list[F64], X: F64, block: F64 | None = None
    ) -> tuple[F64, list[F64]]:
        """:meth:`forward` from the weight matrices and biases (``block``: ``[W_1; b_1]`` for an ``[X, 1]``)."""
        inputs = [X]
        a = X
        for i in range(self.n_layers):
            if i == 0 and block is not None:
                a = a @ block
            else:
                a = a @ coefs[i]
                a += intercepts[i]
            if i == self.n_layers - 1:
                break
            if self.activation == "relu":
                np.maximum(a, 0.0, out=a)
            else:
                np.tanh(a, out=a)
            inputs.append(a)
        return a, inputs


def with_ones(X: F64) -> F64:
    """``[X, 1]``: ``X`` with a trailing column of ones, C-contiguous (the bias trick of :meth:`Network.forward`)."""
    out = np.empty((X.shape[0], X.shape[1] + 1))
    out[:, :-1] = X
    out[:, -1] = 1.0
    return out


def data_loss(layer: OutputLayer, z: F64, y: npt.NDArray[np.intp], sample_weight: F64 | None) -> tuple[float, F64]:
    """Weighted mean loss of the logits ``z`` and its gradient with respect to ``z``, from the layer's public
    ``loss_value_and_grad`` (on whichever engine the fit selected, see :func:`softmaxkit._solvers.fit_settings`)."""
    if sample_weight is None:
        loss, grad = layer.loss_value_and_grad(z, y, reduction="mean")
        return float(loss), np.asarray(grad, dtype=np.float64)
    total = float(np.sum(sample_weight))
    if total <= 0.0:
        return 0.0, np.zeros_like(z)
    rows, grad = layer.loss_value_and_grad(z, y, reduction="none")  # grad: each row's own gradient
    share = sample_weight / total
    return float(share @ np.asarray(rows)), np.asarray(grad, dtype=np.float64) * share[:, None]


def objective(
    theta: F64,
    net: Network,
    layer: OutputLayer,
    X: F64,
    y: npt.NDArray[np.intp],
    sample_weight: F64 | None,
    alpha: float,
    grad: F64,
) -> float:
    r"""Value of :math:`J(\theta)`; its gradient is written into ``grad`` (same layout as ``theta``).

    ``X`` is the data, optionally with a trailing column of ones (see :meth:`Network.forward`).

    Backpropagation: with :math:`G = \partial J / \partial Z` from the loss (one row per sample), the last layer
    gets :math:`\nabla W_L = A_{L-1}^\top G + \alpha W_L` and :math:`\nabla b_L = \mathbf 1^\top G`, and
    :math:`G \leftarrow (G W_L^\top) \odot f'(A_{L-1})` carries the error one layer down, where :math:`f'` is read
    off the activation's output (``relu``: :math:`[a > 0]`, ``tanh``: :math:`1 - a^2`).
    """
    z, inputs = net.forward(theta, X)
    value, g = data_loss(layer, z, y, sample_weight)
    coefs, _ = net.unpack(theta)
    gcoefs, gintercepts = net.unpack(grad)
    for i in range(net.n_layers - 1, -1, -1):
        if i == 0 and X.shape[1] == net.sizes[0] + 1:
            np.matmul(X.T, g, out=net.first_block(grad))  # weights and bias at once
        else:
            np.matmul(inputs[i].T, g, out=gcoefs[i])
            np.sum(g, axis=0, out=gintercepts[i])
        if alpha:
            gcoefs[i] += alpha * coefs[i]
            value += 0.5 * alpha * float(np.vdot(coefs[i], coefs[i]))
        if i > 0:
            g = g @ coefs[i].T
            a = inputs[i]
            if net.activation == "relu":
                g *= a > 0
            else:
                g *= 1.0 - a * a
    return value

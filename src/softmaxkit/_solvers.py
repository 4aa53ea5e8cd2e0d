r"""The optimisers of :class:`softmaxkit.classifier.SoftmaxClassifier` and the loops that drive them.

Full-batch L-BFGS-B (:func:`lbfgs`, from :func:`scipy.optimize.minimize`) and minibatch epochs (:func:`epoch`)
with :class:`Adam` or :class:`SGD`, all on the flat parameter vector of :class:`softmaxkit._mlp.Network` and
the objective :func:`softmaxkit._mlp.objective`. The estimator decides what to run and keeps the records; this
module only optimises (scikit-learn keeps its estimator, loss and optimiser apart the same way).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning

from . import _backend
from ._mlp import Network, objective
from .kernels import numba as kernels
from .layers import OutputLayer

__all__ = ["SGD", "Adam", "LbfgsResult", "epoch", "fit_settings", "lbfgs", "minibatches"]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class LbfgsResult:
    """What :func:`lbfgs` found: the parameters, the iterations run, the objective after each, its last value."""

    theta: F64
    n_iter: int
    curve: list[float]
    loss: float


def lbfgs(
    theta: F64,
    net: Network,
    layer: OutputLayer,
    X: F64,
    y: npt.NDArray[np.intp],
    sample_weight: F64 | None,
    alpha: float,
    *,
    max_iter: int,
    tol: float,
) -> LbfgsResult:
    """Full-batch L-BFGS-B (Liu & Nocedal 1989) on the flat parameters from ``theta``.

    ``X`` carries the trailing column of ones (:func:`softmaxkit._mlp.with_ones`). Stops when the largest gradient
    entry is below ``tol`` or after ``max_iter`` iterations (then a ``ConvergenceWarning``); a non-finite objective
    raises ``ValueError``.
    """
    grad = np.empty_like(theta)
    curve: list[float] = []
    # Two classes, no hidden layer, a shift-invariant loss (it sees only z_1 - z_0): at the optimum
    # W = [-v/2, v/2] (any common part of the two columns adds penalty and nothing else), so L-BFGS runs on v
    # alone, the very problem LogisticRegression solves, in the same steps. theta viewed as (d + 1, 2) is [W; b].
    halved = net.n_layers == 1 and net.sizes[-1] == 2 and layer.shift_invariant and not theta.any()

    def full(v: F64) -> F64:
        return np.stack([-0.5 * v, 0.5 * v], axis=1).ravel()

    def fun(t: F64) -> tuple[float, F64]:
        if not halved:
            return objective(t, net, layer, X, y, sample_weight, alpha, grad), grad
        value = objective(full(t), net, layer, X, y, sample_weight, alpha, grad)
        g = grad.reshape(-1, 2)
        return value, 0.5 * (g[:, 1] - g[:, 0])

    start = np.zeros(theta.size // 2) if halved else theta

    def record(intermediate_result: scipy.optimize.OptimizeResult) -> None:
        curve.append(float(intermediate_result.fun))

    res = scipy.optimize.minimize(
        fun,
        start,
        method="L-BFGS-B",
        jac=True,
        callback=record,
        options={"maxiter": int(max_iter), "gtol": float(tol), "ftol": 64 * np.finfo(float).eps, "maxls": 50},
    )
    if not np.isfinite(res.fun):
        raise ValueError(f"the objective became {res.fun} during L-BFGS; lower alpha or scale X")
    if res.status == 1:
        warnings.warn(
            f"L-BFGS stopped at max_iter={max_iter} iterations without reaching tol={tol}; "
            "increase max_iter or scale the data",
            ConvergenceWarning,
            stacklevel=3,
        )
    x = np.asarray(res.x, dtype=np.float64)
    return LbfgsResult(full(x) if halved else x, int(res.nit), curve, float(res.fun))


def epoch(
    theta: F64,
    net: Network,
    layer: OutputLayer,
    X: F64,
    y: npt.NDArray[np.intp],
    sample_weight: F64 | None,
    alpha: float,
    optimizer: Adam | SGD,
    batch_size: int,
    rng: np.random.RandomState | None,
) -> float:
    """One pass of ``optimizer`` over the minibatches of ``(X, y)`` (shuffled by ``rng`` unless ``None``),
    updating ``theta`` in place; returns the epoch's mean objective (weighted by the batches' sample weights)."""
    grad = np.empty_like(theta)
    total = 0.0
    weight = 0.0
    for idx in minibatches(X.shape[0], batch_size, rng):
        w = None if sample_weight is None else sample_weight[idx]
        value = objective(theta, net, layer, X[idx], y[idx], w, alpha, grad)
        if not math.isfinite(value):
            raise ValueError(f"the objective became {value}; lower learning_rate_init or scale X")
        share = float(len(idx)) if w is None else float(np.sum(w))
        total += value * share
        weight += share
        optimizer.step(theta, grad)
    return total / weight if weight > 0 else 0.0


class Adam:
    r"""Adam (Kingma & Ba 2015) on the flat parameter vector, updated in place.

    .. math:: m \leftarrow \beta_1 m + (1-\beta_1) g,\quad v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
              \theta \leftarrow \theta - \eta \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t} \frac{m}{\sqrt v + \epsilon}
    """

    def __init__(self, n: int, learning_rate: float, beta_1: float, beta_2: float, epsilon: float) -> None:
        self.learning_rate = learning_rate
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.t = 0
        self.m = np.zeros(n)
        self.v = np.zeros(n)

    def step(self, theta: F64, grad: F64) -> None:
        self.t += 1
        self.m *= self.beta_1
        self.m += (1.0 - self.beta_1) * grad
        self.v *= self.beta_2
        self.v += (1.0 - self.beta_2) * grad * grad
        rate = self.learning_rate * np.sqrt(1.0 - self.beta_2**self.t) / (1.0 - self.beta_1**self.t)
        theta -= rate * self.m / (np.sqrt(self.v) + self.epsilon)


class SGD:
    r"""Stochastic gradient descent with (Nesterov) momentum (Sutskever et al. 2013), in place.

    .. math:: u \leftarrow \mu u - \eta g, \qquad \theta \leftarrow \theta + u
              \quad\text{(Nesterov: } \theta \leftarrow \theta + \mu u - \eta g\text{)}
    """

    def __init__(self, n: int, learning_rate: float, momentum: float, nesterov: bool) -> None:
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.nesterov = nesterov
        self.velocity = np.zeros(n)

    def step(self, theta: F64, grad: F64) -> None:
        self.velocity *= self.momentum
        self.velocity -= self.learning_rate * grad
        if self.nesterov:
            theta += self.momentum * self.velocity - self.learning_rate * grad
        else:
            theta += self.velocity


def minibatches(n: int, batch_size: int, rng: np.random.RandomState | None) -> list[npt.NDArray[np.intp]]:
    """Index arrays covering ``range(n)`` in batches of ``batch_size`` (last one shorter), shuffled by ``rng``."""
    order = np.arange(n) if rng is None else rng.permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


_BLAS_SMALL = 2**24
"""Largest matrix product (multiply-adds) of a step run with a single BLAS thread (see :func:`fit_settings`)."""
_controller: Any = None


def fit_settings(rows: int, net: Network) -> contextlib.ExitStack:
    """The settings a fit runs under: the numba kernels at every size, and one BLAS thread for small products.

    * A fit calls the loss tens to thousands of times, so it takes the kernels even below
      :data:`softmaxkit._backend.THRESHOLD` (a 150 x 3 softmax cross-entropy with its gradient: 0.16 ms against
      0.44 ms for the generic code). The first fit of a process loads numba (~0.6 s); the very first one after
      installation also compiles the kernel (~25 s on 2 cores, then cached on disk). A backend chosen with
      ``softmaxkit.backend(...)`` or ``SOFTMAXKIT_BACKEND`` is respected (``"reference"`` skips numba).
    * The kernels run on numba's threads (TBB by default); OpenBLAS's own threads, still spinning after each small
      product, then fight them for the cores (oversubscription): on a 2-core machine a softmax-regression step
      on digits took 8.4 ms with both pools and 0.76 ms with one BLAS thread. scikit-learn's ``KMeans`` limits
      BLAS the same way around its OpenMP loops. Steps whose largest product exceeds :data:`_BLAS_SMALL`
      multiply-adds keep every BLAS thread.
    """
    global _controller
    stack = contextlib.ExitStack()
    if _backend.resolve() == "auto" and kernels.available():
        stack.enter_context(_backend.backend("numba"))
    widest = max(a * b for a, b in zip(net.sizes[:-1], net.sizes[1:], strict=False))
    if rows * widest <= _BLAS_SMALL:
        if _controller is None:
            from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped,unused-ignore]

            _controller = ThreadpoolController()
        stack.enter_context(_controller.limit(limits=1, user_api="blas"))
    return stack

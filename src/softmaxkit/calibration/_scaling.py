"""Temperature scaling (Guo et al. 2017) for every output layer (see :mod:`softmaxkit.calibration`)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from ..layers import OutputLayer, get_output_layer
from ..softmax import log_softmax, softmax
from ._metrics import PROBABILITY_FLOOR, FloatArray, IntArray, labels_of, matrix_of

# ------------------------------------------------------------------------------------------ temperature scaling


class NotFittedError(ValueError, AttributeError):
    """A :class:`TemperatureScaler` was used before ``fit`` (a ``ValueError`` and an ``AttributeError``, like
    scikit-learn's ``NotFittedError``)."""


def _bounds(value: Any) -> tuple[float, float]:
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be a pair (T_min, T_max); got {value!r}") from None
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (math.isfinite(v) and float(v) > 0):
            raise ValueError(f"bounds must hold two finite numbers > 0; got {value!r}")
    if not float(lo) < float(hi):
        raise ValueError(f"bounds must satisfy T_min < T_max; got {value!r}")
    return float(lo), float(hi)


def _fit_softmax(z: FloatArray, y: IntArray, t_min: float, t_max: float) -> tuple[float, int, float, float]:
    """Safeguarded Newton on beta = 1/T in [1/t_max, 1/t_min]: (T, n_iter, nll at T = 1, nll at T)."""
    zc = z - np.max(z, axis=1, keepdims=True)
    zy = zc[np.arange(z.shape[0]), y]

    def nll(beta: float) -> float:
        logp = np.asarray(log_softmax(beta * zc, axis=-1), dtype=np.float64)
        return 0.0 - float(np.mean(logp[np.arange(zc.shape[0]), y]))  # 0.0 - x: no -0.0

    before = nll(1.0)
    lo, hi = 1.0 / t_max, 1.0 / t_min
    if not np.any(zc != 0.0):  # every row constant (or one class): the NLL does not depend on T
        t = min(max(1.0, t_min), t_max)
        return t, 0, before, nll(1.0 / t)
    if _softmax_grad(zc, zy, lo) >= 0.0:  # increasing on the whole interval: the largest T
        return t_max, 0, before, nll(lo)
    if _softmax_grad(zc, zy, hi) <= 0.0:  # decreasing on the whole interval (separable data): the smallest T
        return t_min, 0, before, nll(hi)
    beta = 1.0 if lo < 1.0 < hi else math.sqrt(lo * hi)
    n_iter = 0
    while n_iter < 200:
        n_iter += 1
        g, h = _softmax_grad_curvature(zc, zy, beta)
        if g > 0.0:
            hi = beta
        elif g < 0.0:
            lo = beta
        else:
            break
        newton = beta - g / h if h > 0.0 else math.nan
        if abs(newton - beta) <= 1e-13 * beta:  # converged (also when the step rounds to nothing)
            break
        beta = newton if lo < newton < hi else math.sqrt(lo * hi)  # bisect log(beta) when Newton leaves the bracket
        if hi - lo <= 1e-13 * beta:
            break
    return 1.0 / beta, n_iter, before, nll(beta)


def _softmax_grad(zc: FloatArray, zy: FloatArray, beta: float) -> float:
    return _softmax_grad_curvature(zc, zy, beta)[0]


def _softmax_grad_curvature(zc: FloatArray, zy: FloatArray, beta: float) -> tuple[float, float]:
    """d/dbeta and d²/dbeta² of mean(lse(beta z) - beta z_y): mean(E_p[z] - z_y) and mean(Var_p z)."""
    p = np.asarray(softmax(beta * zc, axis=-1), dtype=np.float64)
    mean_z = np.sum(p * zc, axis=1)
    return float(np.mean(mean_z - zy)), float(np.mean(np.sum(p * (zc - mean_z[:, None]) ** 2, axis=1)))


def _layer_proba(layer: OutputLayer, z: FloatArray) -> FloatArray:
    """The layer's class probabilities of scores ``z`` (:meth:`softmaxkit.layers.OutputLayer.distribution`)."""
    return np.asarray(layer.distribution(z)[0], dtype=np.float64)


def _golden(f: Callable[[float], float], a: float, b: float, tol: float) -> tuple[float, float, int]:
    """Golden-section search for a minimum of ``f`` on ``[a, b]``: (argmin, min, iterations)."""
    r = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - r * (b - a), a + r * (b - a)
    fc, fd = f(c), f(d)
    n = 0
    while b - a > tol and n < 200:
        n += 1
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - r * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + r * (b - a)
            fd = f(d)
    return (c, fc, n) if fc <= fd else (d, fd, n)


def _fit_generic(
    layer: OutputLayer, z: FloatArray, y: IntArray, t_min: float, t_max: float
) -> tuple[float, int, float, float]:
    """Grid + golden-section search over log T for layers other than softmax (NLL with a 1e-12 floor)."""
    rows = np.arange(z.shape[0])
    a, b = math.log(t_min), math.log(t_max)

    def temperature(log_t: float) -> float:  # exp(log(t_max)) may exceed t_max by an ulp: clamp
        return t_min if log_t <= a else t_max if log_t >= b else min(max(math.exp(log_t), t_min), t_max)

    def nll(log_t: float) -> float:
        q = _layer_proba(layer, z / temperature(log_t))
        return 0.0 - float(np.mean(np.log(np.maximum(q[rows, y], PROBABILITY_FLOOR))))

    grid = np.linspace(a, b, 33)  # the objective need not be unimodal (taylor, spherical): locate the basin first
    values = [nll(float(u)) for u in grid]
    k = int(np.argmin(values))
    lo, hi = float(grid[max(k - 1, 0)]), float(grid[min(k + 1, grid.shape[0] - 1)])
    u, value, n_iter = _golden(nll, lo, hi, 1e-10)
    if values[k] <= value:
        u, value = float(grid[k]), values[k]
    return temperature(u), n_iter, nll(0.0), value


class TemperatureScaler:
    r"""Temperature scaling (Guo et al. 2017): one scalar :math:`T > 0` that divides the logits, fitted by NLL.

    .. math:: T^\star = \arg\min_{T_{\min} \le T \le T_{\max}} \; -\frac1N \sum_i \log q_{y_i}(z_i / T)

    where :math:`q` is the output layer's mapping (``softmaxkit.layers.get_output_layer(output_layer)``). Where
    the class distribution is :math:`\operatorname{softmax}(z/T)` (``"softmax"``, and score layers such as
    ``"hinge"``) the objective is the exact log-softmax NLL, convex in :math:`\beta = 1/T`, with derivatives
    :math:`\frac{d}{d\beta} = \frac1N\sum_i (\mathbb{E}_{p_i}[z_i] - z_{iy_i})` and
    :math:`\frac{d^2}{d\beta^2} = \frac1N\sum_i \operatorname{Var}_{p_i}(z_i) \ge 0`; a Newton iteration kept
    inside a shrinking bracket (bisection in :math:`\log\beta` when a step leaves it) converges to about
    :math:`10^{-13}` relative. For the other layers the NLL is taken with probabilities floored at
    :data:`PROBABILITY_FLOOR` (sparsemax and entmax give exact zeros) and minimised over :math:`\log T` by a
    33-point grid followed by golden-section search in the best grid cell (the objective need not be convex
    there). The probabilities are the layer's :meth:`~softmaxkit.layers.OutputLayer.distribution`, the rule the
    classifier follows too: layers whose outputs are not normalised (``sigmoid``) have their rows renormalised
    (in log space); layers whose outputs are scores, not probabilities (``hinge``, whose mapping is the
    identity), are scored by the softmax of the scaled scores.

    Parameters
    ----------
    output_layer : str
        A registered output layer name (see :mod:`softmaxkit.layers`).
    bounds : (float, float)
        :math:`0 < T_{\min} < T_{\max}`; the search stays inside.

    Attributes
    ----------
    temperature_ : float
        The fitted :math:`T`.
    n_iter_ : int
        Newton/bisection steps (softmax) or golden-section steps (other layers); 0 when the optimum is a bound
        found without iterating or the objective is flat.
    nll_before_, nll_after_ : float
        The objective (mean NLL) at :math:`T = 1` and at :math:`T` = ``temperature_``.
    n_classes_ : int
        Number of columns of the logits seen in ``fit``.

    Special values
    --------------
    =========================================  =================================================================
    training data                              ``temperature_``
    =========================================  =================================================================
    all correct, margins growing NLL to 0      ``bounds[0]``: the NLL decreases all the way to :math:`T \to 0`
                                               (softmax: detected from the sign of the derivative at the bound)
    all wrong / uniform-is-best                ``bounds[1]`` when the NLL decreases all the way to the bound
    one class, or every row constant           1.0 (clipped into ``bounds``): the NLL does not depend on T
    =========================================  =================================================================

    Notes
    -----
    The argmax of :meth:`predict_proba` is that of the logits for every layer whose mapping is increasing in
    each logit (softmax, sparsemax, entmax, sigmoid, normalize, hinge via softmax), and spherical softmax keeps
    its argmax of :math:`|z|`; so temperature scaling leaves their accuracy unchanged. Taylor softmax is the
    exception: :math:`f_2(z/T)` is not monotone, and its predicted class can change with :math:`T`.

    Examples
    --------
    >>> import numpy as np
    >>> z = np.array([[4.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]])
    >>> scaler = TemperatureScaler().fit(z, [0, 1, 1, 2])
    >>> round(scaler.temperature_, 4), scaler.nll_after_ < scaler.nll_before_
    (2.2324, True)
    >>> print(scaler.transform(z)[0])   # 4 / T = log 6: p = (3/4, 1/8, 1/8) on each row
    [1.79175947 0.         0.        ]
    """

    def __init__(self, *, output_layer: str = "softmax", bounds: tuple[float, float] = (1e-2, 1e2)) -> None:
        get_output_layer(output_layer, argument="output_layer")
        _bounds(bounds)
        self.output_layer = output_layer
        self.bounds = bounds

    def __repr__(self) -> str:
        return f"TemperatureScaler(output_layer={self.output_layer!r}, bounds={self.bounds!r})"

    def fit(self, logits: npt.ArrayLike, y: npt.ArrayLike) -> TemperatureScaler:
        """Fit :math:`T` on held-out ``logits`` ``(N, C)`` and integer labels ``y`` ``(N,)``; returns ``self``.

        Raises ``TypeError`` for non-real logits or non-integer labels and ``ValueError`` for bad shapes, empty
        or non-finite input, labels outside ``[0, C)``, an unknown layer or bad ``bounds``.
        """
        layer = get_output_layer(self.output_layer, argument="output_layer")
        t_min, t_max = _bounds(self.bounds)
        z = matrix_of(logits, "logits").astype(np.float64)
        labels = labels_of(y, z.shape[0], z.shape[1], "logits")
        # the class distribution is softmax(z / T) (softmax itself, and score layers such as hinge): exact Newton
        if layer.log_mapping is log_softmax or not layer.probabilities:
            t, n_iter, before, after = _fit_softmax(z, labels, t_min, t_max)
        else:
            t, n_iter, before, after = _fit_generic(layer, z, labels, t_min, t_max)
        self.temperature_ = float(t)
        self.n_iter_ = int(n_iter)
        self.nll_before_ = float(before)
        self.nll_after_ = float(after)
        self.n_classes_ = int(z.shape[1])
        return self

    def _check(self, logits: npt.ArrayLike) -> np.ndarray[Any, Any]:
        if not hasattr(self, "temperature_"):
            raise NotFittedError("this TemperatureScaler is not fitted yet; call fit(logits, y) first")
        z = matrix_of(logits, "logits")
        if z.shape[1] != self.n_classes_:
            raise ValueError(f"logits has {z.shape[1]} columns but the scaler was fitted on {self.n_classes_}")
        return z

    def transform(self, logits: npt.ArrayLike) -> np.ndarray[Any, Any]:
        """The scaled logits ``logits / temperature_``, in the logits' floating dtype (integers give float64)."""
        z = self._check(logits)
        dtype = z.dtype if z.dtype.kind == "f" else np.dtype(np.float64)
        return (z.astype(np.float64) / self.temperature_).astype(dtype)

    def fit_transform(self, logits: npt.ArrayLike, y: npt.ArrayLike) -> np.ndarray[Any, Any]:
        """``fit(logits, y).transform(logits)``."""
        return self.fit(logits, y).transform(logits)

    def predict_proba(self, logits: npt.ArrayLike) -> np.ndarray[Any, Any]:
        """The layer's probabilities of the scaled logits, rows normalised as in ``fit`` (float64 or the logits'
        float dtype)."""
        z = self._check(logits)
        dtype = z.dtype if z.dtype.kind == "f" else np.dtype(np.float64)
        layer = get_output_layer(self.output_layer, argument="output_layer")
        q = _layer_proba(layer, z.astype(np.float64) / self.temperature_)
        return q.astype(dtype)

r"""``SoftmaxClassifier``: softmax regression and small MLPs with any output layer, with scikit-learn's API.

Softmax regression is multinomial logistic regression
-----------------------------------------------------
With no hidden layer the model is linear in the features: the logits of a sample :math:`x \in \mathbb{R}^d` are
:math:`z = W^\top x + b` (:math:`W` is ``coefs_[0]``, of shape ``(d, C)``) and the predicted distribution over the
:math:`C` classes is :math:`p = \operatorname{softmax}(z)`. Training maximises the likelihood of the labels, that
is it minimises the mean cross-entropy :math:`\frac1N \sum_n -\log p_{y_n}`. This is *multinomial logistic
regression* (Bishop, *Pattern Recognition and Machine Learning*, 2006, §4.3.4): for :math:`C = 2`,
:math:`p_1 = \sigma(z_1 - z_0)`, the logistic model of the log-odds.

Why the gradient is :math:`(p - y)\,x^\top / N`
-----------------------------------------------
For one sample, :math:`-\log p_y = \operatorname{lse}(z) - z_y` and :math:`\partial/\partial z_j` of it is
:math:`p_j - [j = y]`: the predicted distribution minus the one-hot label (see :mod:`softmaxkit.cross_entropy`).
Since :math:`z_j = \sum_i W_{ij} x_i + b_j`, the chain rule gives :math:`\partial/\partial W_{ij} = x_i (p_j -
y_j)`, and averaging over the batch, :math:`\nabla_W = X^\top (P - Y) / N` and :math:`\nabla_b = \mathbf
1^\top (P - Y)/N`: two matrix products per evaluation. The same matrix :math:`G = \partial J / \partial Z`, whatever
output layer produced it, is what backpropagation sends down through the hidden layers of an MLP.

Why L2
------
On separable data the cross-entropy has no minimiser: scaling :math:`W` up always lowers it, the weights diverge
and the probabilities become 0/1. The penalty :math:`\frac{\alpha}{2}\lVert W\rVert^2` makes the objective
strictly convex in :math:`W` for softmax regression (unique weights; they sum to 0 across classes at the optimum,
which removes softmax's shift redundancy from :math:`W`; the unpenalised intercepts stay determined only up to a
common shift, which changes no probability), bounds the confidence, and is the MAP estimate under a Gaussian prior
:math:`W_{ij} \sim \mathcal N(0, 1/\alpha)` on weights (biases are not penalised, as in scikit-learn).

Objective, and ``alpha`` against scikit-learn's ``C``
-----------------------------------------------------
We minimise the *mean* (optionally ``sample_weight``-weighted) loss plus the penalty on every weight matrix:

.. math:: J = \frac{\sum_n s_n\, \ell(z_n, y_n)}{\sum_n s_n} + \frac{\alpha}{2} \sum_l \lVert W_l \rVert_F^2 .

scikit-learn 1.9's ``LogisticRegression`` (``solver="lbfgs"``) minimises :math:`C \sum_n s_n \ell_n +
\frac12 \lVert W\rVert^2`, which its code divides by :math:`C \sum_n s_n` before optimising (``l2_reg_strength =
1 / (C * sw_sum)`` in ``sklearn/linear_model/_logistic.py``). So, with :math:`S = \sum_n s_n` (the number of
samples without weights):

* multiclass (:math:`C \ge 3` classes, both models have one weight vector per class): ``alpha = 1 / (C * S)``;
* binary: scikit-learn fits one vector :math:`w` for the log-odds, we fit two (:math:`w_0, w_1`); only
  :math:`d = w_1 - w_0` matters and the penalty is smallest at :math:`w_1 = -w_0 = d/2`, where it is
  :math:`\frac{\alpha}{4}\lVert d\rVert^2`, so the same model needs ``alpha = 2 / (C * S)``. For softmax
  regression with a loss that sees only :math:`z_1 - z_0` (softmax, sparsemax, entmax, hinge), L-BFGS then runs on
  :math:`d` alone (``coefs_`` holds :math:`[-d/2, d/2]`), the very problem and steps of scikit-learn's.

Then both reach the same minimum (the tests check the log-loss to 1e-4 on digits and iris).

Output layers, probabilities, predictions
-----------------------------------------
``output_layer`` is any name of :data:`softmaxkit.layers.OUTPUT_LAYERS`; its loss (value and exact gradient) is
computed by the library. ``decision_function`` returns the raw logits (for binary problems, scikit-learn's
convention: the score of the positive class, :math:`z_1 - z_0`, shape ``(n,)``). ``predict_proba`` applies the
layer's mapping to :math:`z / T` (``T`` = ``temperature_``): ``sigmoid`` outputs, which do not sum to one, are
normalised (computed as ``softmax(log_sigmoid(z / T))``, so no row is ever 0/0); ``hinge`` has no probabilities,
so it gets the softmax of its scores, uncalibrated by design. ``predict`` is the class of the largest logit (ties
to the lowest index) for every layer whose mapping preserves the order of the logits; ``taylor`` and
``spherical`` do not (:math:`z^2` is large for a very negative logit), so for them it is the argmax of the
layer's probabilities (at :math:`T = 1`, so that a temperature never changes a prediction).

Speed
-----
An L-BFGS evaluation of softmax regression is two matrix products (``[X, 1] @ [W; b]`` and its transpose with
:math:`G`, the bias folded into a column of ones) and one fused call of the layer's ``loss_value_and_grad``
(numba kernels for softmax from 4096 logits on); on digits it runs the very iterations of ``LogisticRegression``.
While a fit's products are small, BLAS gets one thread, so that its spinning threads do not fight the kernels'
threads (numba's TBB pool by default) for the cores.

Special values
--------------
==========================================  ==============================================================
input                                       result
==========================================  ==============================================================
``y`` with a single class                   ``ValueError`` naming ``y``
``nan`` / ``inf`` in ``X``                  ``ValueError`` (scikit-learn's input checks)
``X`` a NumPy masked array                  ``TypeError`` (the mask would be dropped silently)
label unseen in ``classes`` (partial_fit)   ``ValueError`` naming the label
negative / non-finite ``sample_weight``     ``ValueError`` naming ``sample_weight``
sparse layer, class far from the argmax     probability exactly 0, log-probability ``-inf``
``sigmoid`` with every logit very negative  still a proper distribution (normalised in log space)
L-BFGS / epochs stop at ``max_iter``        ``sklearn.exceptions.ConvergenceWarning``
==========================================  ==============================================================

Examples
--------
>>> import numpy as np
>>> from sklearn.datasets import load_iris
>>> from softmaxkit.classifier import SoftmaxClassifier
>>> X, y = load_iris(return_X_y=True)
>>> X = (X - X.mean(0)) / X.std(0)
>>> clf = SoftmaxClassifier(alpha=1e-3).fit(X, y)
>>> round(clf.score(X, y), 2)
0.98
>>> clf.predict_proba(X[:1]).sum().round(12)
np.float64(1.0)
>>> sparse = SoftmaxClassifier(output_layer="sparsemax", alpha=1e-3).fit(X, y)
>>> sparse.predict_proba(X[:1])
array([[1., 0., 0.]])
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _solvers
from ._mlp import Network, with_ones
from .layers import OutputLayer, get_output_layer

__all__ = ["SoftmaxClassifier"]

F64 = npt.NDArray[np.float64]

_OPTIONS = {"activation": ("relu", "tanh"), "solver": ("lbfgs", "adam", "sgd")}
# name -> (integer?, lower bound, lower bound allowed?, upper bound, upper bound allowed?)
_NUMBERS: dict[str, tuple[bool, float, bool, float, bool]] = {
    "alpha": (False, 0.0, True, math.inf, False),
    "max_iter": (True, 1, True, math.inf, False),
    "tol": (False, 0.0, True, math.inf, False),
    "learning_rate_init": (False, 0.0, False, math.inf, False),
    "momentum": (False, 0.0, True, 1.0, True),
    "beta_1": (False, 0.0, True, 1.0, False),
    "beta_2": (False, 0.0, True, 1.0, False),
    "epsilon": (False, 0.0, False, math.inf, False),
    "validation_fraction": (False, 0.0, False, 1.0, False),
    "n_iter_no_change": (True, 1, True, math.inf, False),
}
_FLAGS = ("nesterovs_momentum", "shuffle", "early_stopping")


def _check_number(name: str, value: Any) -> None:
    """``ValueError``/``TypeError`` naming ``name`` and ``value`` unless it is a number within its bounds."""
    integer, low, low_in, high, high_in = _NUMBERS[name]
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, kind):
        raise TypeError(f"{name} must be {'an integer' if integer else 'a real number'}; got {value!r}")
    v = float(value)
    if not (math.isfinite(v) or (v == math.inf and high == math.inf and not integer)):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    below = v < low or (v == low and not low_in)
    above = v > high or (v == high and not high_in)
    if below or above:
        left, right = "[" if low_in else "(", "]" if high_in else ")"
        raise ValueError(f"{name} must lie in {left}{low:g}, {high:g}{right}; got {value!r}")


def _stochastic(est: SoftmaxClassifier) -> bool:
    return est.solver in ("adam", "sgd")


class SoftmaxClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    r"""Softmax regression, or an MLP, trained with any output layer of :mod:`softmaxkit.layers`.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=()
        Widths of the hidden layers. ``()`` is softmax regression (multinomial logistic regression with the
        ``softmax`` layer); ``(64,)`` a one-hidden-layer perceptron.
    output_layer : str, default="softmax"
        A registered output layer: ``softmax``, ``taylor``, ``spherical``, ``sparsemax``, ``entmax15``,
        ``entmax_bisect``, ``sigmoid``, ``hinge``, ``softplus_normalize`` (alias ``normalize``), or one added by
        :func:`softmaxkit.layers.register_output_layer`.
    activation : {"relu", "tanh"}, default="relu"
        Hidden-layer nonlinearity.
    alpha : float, default=1e-4
        L2 strength: the objective is the mean loss plus ``alpha / 2`` times the squared norm of every weight
        matrix (not the biases). ``alpha = 1 / (C * n_samples)`` matches ``LogisticRegression(C=C)`` on a
        multiclass problem, ``2 / (C * n_samples)`` on a binary one (see the module notes).
    solver : {"lbfgs", "adam", "sgd"}, default="lbfgs"
        ``lbfgs``: full-batch L-BFGS-B from :func:`scipy.optimize.minimize` (best for small data and for
        softmax regression); ``adam`` / ``sgd``: minibatch epochs, and :meth:`partial_fit`.
    max_iter : int, default=200
        L-BFGS iterations, or epochs for ``adam`` / ``sgd``.
    tol : float, default=1e-4
        L-BFGS stops when the largest gradient entry is below ``tol``; ``adam`` / ``sgd`` stop when the epoch
        loss (or, with ``early_stopping``, the validation accuracy) has not improved by ``tol`` for
        ``n_iter_no_change`` epochs.
    batch_size : int or "auto", default="auto"
        Minibatch size for ``adam`` / ``sgd``; ``"auto"`` is ``min(200, n_samples)``.
    learning_rate_init : float, default=1e-3
        Step size of ``adam`` / ``sgd``.
    momentum : float, default=0.9
        ``sgd`` momentum.
    nesterovs_momentum : bool, default=True
        Use Nesterov's momentum with ``sgd``.
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's moment decay rates and denominator offset (Kingma & Ba 2015).
    shuffle : bool, default=True
        Shuffle the samples every epoch (``adam`` / ``sgd``).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data, stop when its accuracy stalls and keep the best epoch's
        parameters (``adam`` / ``sgd`` only; ignored by ``lbfgs``, as in ``MLPClassifier``).
    validation_fraction : float, default=0.1
        Size of the held-out split used by ``early_stopping`` and ``temperature="fit"`` (stratified when every
        class has two samples or more; one split serves both).
    n_iter_no_change : int, default=10
        Epochs without improvement before ``adam`` / ``sgd`` stop.
    temperature : None, "fit" or float, default=None
        Temperature :math:`T` applied to the logits by :meth:`predict_proba` (Guo et al. 2017): ``None`` is
        :math:`T = 1`; a float sets it; ``"fit"`` trains on all but the held-out split and fits
        :class:`softmaxkit.calibration.TemperatureScaler` on the held-out logits. ``predict`` never changes.
    random_state : int, RandomState or None, default=None
        Seeds the initial weights, the shuffling and the held-out split: same seed, same model.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coefs_, intercepts_ : list of ndarray
        Weight matrix ``(fan_in, fan_out)`` and bias of each layer; the last has ``n_classes`` outputs (two for a
        binary problem).
    n_iter_ : int
        L-BFGS iterations or epochs run.
    loss_ : float
        Final value of the objective (mean loss + penalty) on the training data.
    loss_curve_ : list of float
        Objective after each L-BFGS iteration, or mean over each epoch's minibatches.
    best_loss_ : float
        Lowest value of ``loss_curve_`` (``adam`` / ``sgd``).
    validation_scores_ : list of float
        Held-out accuracy after each epoch, with ``early_stopping`` (else ``None``).
    best_validation_score_ : float or None
    temperature_ : float
    output_layer_ : OutputLayer
        The registry record of ``output_layer``.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` had string column names.
    fit_time_ : float
        Seconds spent in the last :meth:`fit`.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> X, y = load_iris(return_X_y=True)
    >>> mlp = SoftmaxClassifier((16,), output_layer="entmax15", solver="adam", learning_rate_init=0.01,
    ...                         max_iter=300, random_state=0).fit(X, y)
    >>> mlp.score(X, y) > 0.9
    True
    """

    def __init__(
        self,
        hidden_layer_sizes: tuple[int, ...] | list[int] | int = (),
        *,
        output_layer: str = "softmax",
        activation: str = "relu",
        alpha: float = 1e-4,
        solver: str = "lbfgs",
        max_iter: int = 200,
        tol: float = 1e-4,
        batch_size: int | str = "auto",
        learning_rate_init: float = 1e-3,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        shuffle: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        temperature: float | str | None = None,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.output_layer = output_layer
        self.activation = activation
        self.alpha = alpha
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.shuffle = shuffle
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.temperature = temperature
        self.random_state = random_state

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        tags.input_tags.sparse = False
        tags.non_deterministic = False
        return tags

    # ------------------------------------------------------------------------------------------ checks
    def _check_options(self) -> tuple[OutputLayer, tuple[int, ...]]:
        """Validate the parameters (in ``fit``, as scikit-learn asks: ``__init__`` only stores them); returns the
        layer and the hidden sizes. Each error names the parameter and its value."""
        layer = get_output_layer(self.output_layer, argument="output_layer")
        sizes = self.hidden_layer_sizes
        try:
            raw: list[Any] = [sizes] if isinstance(sizes, numbers.Integral) else list(sizes)  # type: ignore[arg-type]
        except TypeError:
            raw = [sizes]
        if any(isinstance(h, (bool, np.bool_)) or not isinstance(h, numbers.Integral) or h < 1 for h in raw):
            raise ValueError(f"hidden_layer_sizes must hold positive ints; got {sizes!r}")
        for name, options in _OPTIONS.items():
            value = getattr(self, name)
            if not isinstance(value, str) or value not in options:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
        for name in _NUMBERS:
            _check_number(name, getattr(self, name))
        for name in _FLAGS:
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False; got {getattr(self, name)!r}")
        b = self.batch_size
        if b != "auto" and (isinstance(b, (bool, np.bool_)) or not isinstance(b, numbers.Integral) or b < 1):
            raise ValueError(f"batch_size must be 'auto' or a positive int; got {b!r}")
        t = self.temperature
        if not (t is None or (isinstance(t, str) and t == "fit") or _is_temperature(t)):
            raise ValueError(f"temperature must be None, 'fit' or a finite number > 0; got {t!r}")
        if self.random_state is not None and not isinstance(
            self.random_state, (numbers.Integral, np.random.RandomState)
        ):
            raise TypeError(f"random_state must be None, an int or a numpy RandomState; got {self.random_state!r}")
        return layer, tuple(int(h) for h in raw)

    def _check_sample_weight(self, sample_weight: Any, n: int) -> F64 | None:
        if sample_weight is None:
            return None
        sw = np.asarray(sample_weight, dtype=np.float64)
        if sw.ndim == 0:
            sw = np.full(n, float(sw))
        if sw.shape != (n,):
            raise ValueError(f"sample_weight must have shape ({n},), one weight per sample; got shape {sw.shape}")
        if not np.all(np.isfinite(sw)) or np.any(sw < 0):
            bad = int(np.flatnonzero(~(np.isfinite(sw) & (sw >= 0)))[0])
            raise ValueError(f"sample_weight must be finite and >= 0; got {sw[bad]} at position {bad}")
        if n and not np.any(sw > 0):
            raise ValueError("sample_weight is zero for every sample; at least one must be positive")
        return sw

    def _encode(self, y: Any) -> npt.NDArray[np.intp]:
        """Class indices of the labels ``y`` in ``classes_``; an unseen label raises ``ValueError``."""
        idx = np.searchsorted(self.classes_, y)
        idx = np.minimum(idx, len(self.classes_) - 1)
        unseen = self.classes_[idx] != y
        if np.any(unseen):
            label = np.asarray(y)[np.argmax(unseen)].tolist()
            raise ValueError(
                f"y holds the label {label!r}, not among the classes {self.classes_.tolist()} given to the first "
                "partial_fit"
            )
        return np.asarray(idx, dtype=np.intp)

    # --------------------------------------------------------------------------------------------- fit
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> SoftmaxClassifier:
        """Train from scratch on ``X`` (n_samples, n_features) and labels ``y``; returns ``self``.

        ``sample_weight`` (n_samples,) weighs each sample's loss (the objective is the weighted mean).
        Raises ``ValueError`` for a single class in ``y``, ``nan``/``inf`` in ``X``, or invalid parameters.
        """
        start = time.perf_counter()
        layer, hidden = self._check_options()
        X, y = validate_data(self, _unmasked(X), y, dtype=np.float64, reset=True)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(
                f"y holds one class only ({self.classes_[0].tolist()!r}); a classifier needs 2 classes or more"
            )
        yi = self._encode(y)
        sw = self._check_sample_weight(sample_weight, X.shape[0])
        rng = self._rng = check_random_state(self.random_state)
        self.output_layer_ = layer
        self._net = Network((X.shape[1], *hidden, len(self.classes_)), self.activation)
        stochastic = _stochastic(self)
        split = self.temperature == "fit" or (self.early_stopping and stochastic)
        X_val = y_val = None
        if split:
            X, yi, sw, X_val, y_val = self._split(X, yi, sw, rng)
        self.validation_scores_: list[float] | None = None
        self.best_validation_score_: float | None = None
        with _solvers.fit_settings(X.shape[0] if not stochastic else self._batch(X.shape[0]), self._net):
            theta = self._initial_theta(rng)
            if stochastic:
                self._start_epochs(theta.size)
                if self.early_stopping:
                    self.validation_scores_ = []
                    theta = self._run_epochs(theta, X, yi, sw, rng, X_val, y_val)
                else:
                    theta = self._run_epochs(theta, X, yi, sw, rng, None, None)
            else:
                theta = self._run_lbfgs(theta, X, yi, sw)
        self._set_params(theta)

        self.temperature_ = self._fit_temperature(X_val, y_val)
        self.fit_time_ = time.perf_counter() - start
        return self

    def _initial_theta(self, rng: np.random.RandomState) -> F64:
        """Zeros for softmax regression, as ``LogisticRegression`` (the problem is convex for most layers, and
        the fit then does not depend on ``random_state``), unless the loss is flat at zero logits for every label
        (``spherical``: :math:`z^2` is flat at 0); random weights (:meth:`Network.init`) for an MLP, to break the
        symmetry between hidden units."""
        net = self._net
        if net.n_layers == 1 and self.output_layer_.shift_invariant:  # gradient p - y etc. at 0: not flat
            return np.zeros(net.n_params)
        if net.n_layers == 1:
            n_classes = net.sizes[-1]
            _, g = self.output_layer_.loss_value_and_grad(
                np.zeros((n_classes, n_classes)), np.arange(n_classes), reduction="none"
            )
            if np.any(np.asarray(g) != 0.0):
                return np.zeros(net.n_params)
        return net.init(rng)

    def _batch(self, n: int) -> int:
        return min(200, n) if self.batch_size == "auto" else min(int(self.batch_size), n)

    def _split(
        self, X: F64, yi: npt.NDArray[np.intp], sw: F64 | None, rng: np.random.RandomState
    ) -> tuple[F64, npt.NDArray[np.intp], F64 | None, F64, npt.NDArray[np.intp]]:
        """Hold out ``validation_fraction`` of the samples (stratified when every class has 2 or more)."""
        counts = np.bincount(yi, minlength=len(self.classes_))
        stratify = yi if counts.min() >= 2 else None
        seed = rng.randint(np.iinfo(np.int32).max)
        idx = np.arange(X.shape[0])
        try:
            tr, va = train_test_split(idx, test_size=self.validation_fraction, random_state=seed, stratify=stratify)
        except ValueError as exc:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} cannot split {X.shape[0]} samples of "
                f"{len(self.classes_)} classes into a training and a held-out part: {exc}"
            ) from exc
        return X[tr], yi[tr], None if sw is None else sw[tr], X[va], yi[va]

    def _start_epochs(self, n_params: int) -> None:
        """Fresh optimiser state and epoch records for ``adam`` / ``sgd``."""
        if self.solver == "adam":
            lr, b1, b2, eps = (float(v) for v in (self.learning_rate_init, self.beta_1, self.beta_2, self.epsilon))
            self._optimizer: _solvers.Adam | _solvers.SGD = _solvers.Adam(n_params, lr, b1, b2, eps)
        else:
            self._optimizer = _solvers.SGD(
                n_params, float(self.learning_rate_init), float(self.momentum), bool(self.nesterovs_momentum)
            )
        self.loss_curve_: list[float] = []
        self.best_loss_ = math.inf
        self.t_ = 0
        self.n_iter_ = 0

    def _run_lbfgs(self, theta: F64, X: F64, yi: npt.NDArray[np.intp], sw: F64 | None) -> F64:
        """Full-batch L-BFGS-B (:func:`softmaxkit._solvers.lbfgs`); sets ``n_iter_``, ``loss_curve_``, ``loss_``."""
        res = _solvers.lbfgs(
            theta,
            self._net,
            self.output_layer_,
            with_ones(X),  # one product per layer-1 pass, bias included
            yi,
            sw,
            float(self.alpha),
            max_iter=int(self.max_iter),
            tol=float(self.tol),
        )
        self.n_iter_ = res.n_iter
        self.loss_curve_ = res.curve
        self.loss_ = res.loss
        return res.theta

    def _epoch(self, theta: F64, X: F64, yi: npt.NDArray[np.intp], sw: F64 | None, rng: np.random.RandomState) -> None:
        """One pass of ``self._optimizer`` over the minibatches of ``(X, yi)`` (:func:`softmaxkit._solvers.epoch`),
        updating ``theta`` in place and the epoch records (``n_iter_``, ``t_``, ``loss_curve_``, ``loss_``,
        ``best_loss_``)."""
        n = X.shape[0]
        self.loss_ = _solvers.epoch(
            theta,
            self._net,
            self.output_layer_,
            with_ones(X),
            yi,
            sw,
            float(self.alpha),
            self._optimizer,
            self._batch(n),
            rng if self.shuffle else None,
        )
        self.n_iter_ += 1
        self.t_ += n
        self.loss_curve_.append(self.loss_)
        self.best_loss_ = min(self.best_loss_, self.loss_)

    def _run_epochs(
        self,
        theta: F64,
        X: F64,
        yi: npt.NDArray[np.intp],
        sw: F64 | None,
        rng: np.random.RandomState,
        X_val: F64 | None,
        y_val: npt.NDArray[np.intp] | None,
    ) -> F64:
        """Up to ``max_iter`` epochs; stop once the epoch loss (with held-out data: the held-out accuracy) has not
        improved by ``tol`` for ``n_iter_no_change`` epochs. With held-out data, return the best epoch's theta."""
        best_theta = theta
        stall = 0
        for _ in range(int(self.max_iter)):
            best_before = self.best_loss_
            self._epoch(theta, X, yi, sw, rng)
            improved = self.loss_ < best_before - self.tol
            if X_val is not None and y_val is not None and self.validation_scores_ is not None:
                z, _ = self._net.forward(theta, X_val)
                score = float(np.mean(self._argmax(z) == y_val))
                self.validation_scores_.append(score)
                best_score = -math.inf if self.best_validation_score_ is None else self.best_validation_score_
                improved = score > best_score + self.tol
                if score > best_score:
                    self.best_validation_score_ = score
                    best_theta = theta.copy()
            stall = 0 if improved else stall + 1
            if stall > self.n_iter_no_change:
                break
        else:
            warnings.warn(
                f"{self.solver} ran max_iter={self.max_iter} epochs without converging (tol={self.tol}, "
                f"n_iter_no_change={self.n_iter_no_change}); increase max_iter or learning_rate_init",
                ConvergenceWarning,
                stacklevel=3,
            )
        return best_theta if self.validation_scores_ is not None else theta

    def _fit_temperature(self, X_val: F64 | None, y_val: npt.NDArray[np.intp] | None) -> float:
        if self.temperature is None:
            return 1.0
        if self.temperature != "fit":
            return float(self.temperature)
        if X_val is None:  # partial_fit: no held-out split of a stream; keep what we had
            return float(getattr(self, "temperature_", 1.0))
        from .calibration import TemperatureScaler

        # the scaler scores hinge by the softmax of its scores and renormalises sigmoid, as predict_proba does
        z, _ = self._net.propagate(self.coefs_, self.intercepts_, X_val)
        scaler = TemperatureScaler(output_layer=self.output_layer_.name).fit(z, np.asarray(y_val))
        return float(scaler.temperature_)

    # ------------------------------------------------------------------------------------ partial_fit
    @available_if(_stochastic)  # type: ignore[untyped-decorator]
    def partial_fit(self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None) -> SoftmaxClassifier:
        """One epoch of ``adam`` / ``sgd`` over the minibatches of ``(X, y)``; returns ``self``.

        The first call needs ``classes`` (every label the stream will hold); later calls may repeat it and must
        only hold those labels. ``early_stopping`` does not apply, and ``temperature="fit"`` keeps
        ``temperature_`` at its current value (1 at first): fit a
        :class:`softmaxkit.calibration.TemperatureScaler` on held-out logits yourself.
        """
        first = not hasattr(self, "classes_")
        if first:
            layer, hidden = self._check_options()
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
            check_classification_targets(np.asarray(classes))
            self.classes_ = np.unique(np.asarray(classes))
            if len(self.classes_) < 2:
                raise ValueError(f"classes must hold at least 2 labels; got {self.classes_.tolist()}")
        elif classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
            raise ValueError(
                f"classes={np.asarray(classes).tolist()} differs from the classes of the first partial_fit, "
                f"{self.classes_.tolist()}"
            )
        X, y = validate_data(self, _unmasked(X), y, dtype=np.float64, reset=first)
        check_classification_targets(y)
        yi = self._encode(y)
        sw = self._check_sample_weight(sample_weight, X.shape[0])
        if first:
            self._rng = check_random_state(self.random_state)
            self.output_layer_ = layer
            self._net = Network((X.shape[1], *hidden, len(self.classes_)), self.activation)
        with _solvers.fit_settings(self._batch(X.shape[0]), self._net):
            if first:
                theta = self._initial_theta(self._rng)
                self._start_epochs(theta.size)
                self.validation_scores_ = None
                self.best_validation_score_ = None
                self.temperature_ = self._fit_temperature(None, None)
            else:
                theta = self._theta()
                if not hasattr(self, "_optimizer"):  # fitted by lbfgs, then switched to adam / sgd
                    self._start_epochs(theta.size)
            self._epoch(theta, X, yi, sw, self._rng)
        self._set_params(theta)
        return self

    # ------------------------------------------------------------------------------------- parameters
    def _theta(self) -> F64:
        return self._net.pack(self.coefs_, self.intercepts_)

    def _set_params(self, theta: F64) -> None:
        coefs, intercepts = self._net.unpack(theta.copy())
        self.coefs_ = coefs
        self.intercepts_ = intercepts

    def logits(self, X: Any) -> F64:
        """The network's raw scores, ``(n_samples, n_classes)``, one column per class also for two classes.

        What the output layer maps to probabilities (before the temperature); :meth:`decision_function` is the
        same in scikit-learn's binary convention. Fit a :class:`softmaxkit.calibration.TemperatureScaler` on these.
        """
        check_is_fitted(self)
        X = validate_data(self, _unmasked(X), dtype=np.float64, reset=False)
        z, _ = self._net.propagate(self.coefs_, self.intercepts_, X)
        return z

    def _argmax(self, z: F64) -> npt.NDArray[np.intp]:
        """Predicted class indices of logits ``z`` (ties to the lowest index)."""
        if self.output_layer_.order_preserving:
            return np.asarray(np.argmax(z, axis=1), dtype=np.intp)
        return np.asarray(np.argmax(np.asarray(self.output_layer_.mapping(z, axis=-1)), axis=1), dtype=np.intp)

    # ------------------------------------------------------------------------------------- prediction
    def decision_function(self, X: Any) -> F64:
        """Raw logits, shape ``(n_samples, n_classes)``; for two classes the positive score ``z_1 - z_0``, ``(n,)``.

        For ``taylor`` and ``spherical``, whose probabilities do not follow the order of the logits, prefer
        :meth:`predict_proba` to rank the classes.
        """
        z = self.logits(X)
        if len(self.classes_) == 2:
            return z[:, 1] - z[:, 0]
        return z

    def predict(self, X: Any) -> npt.NDArray[Any]:
        """Labels from ``classes_``: the argmax of the logits (of the probabilities for taylor / spherical)."""
        index = self._argmax(self.logits(X))
        labels: npt.NDArray[Any] = self.classes_[index]
        return labels

    def _log_proba(self, z: F64) -> tuple[F64, F64]:
        """``(probabilities, log-probabilities)`` of the logits ``z`` at the fitted temperature
        (:meth:`softmaxkit.layers.OutputLayer.distribution`)."""
        s = z / self.temperature_ if self.temperature_ != 1.0 else z
        p, logp = self.output_layer_.distribution(s)
        return np.asarray(p, dtype=np.float64), np.asarray(logp, dtype=np.float64)

    def predict_proba(self, X: Any) -> F64:
        """Class probabilities, ``(n_samples, n_classes)``: the output layer's mapping of ``logits / T``."""
        return self._log_proba(self.logits(X))[0]

    def predict_log_proba(self, X: Any) -> F64:
        """Log of :meth:`predict_proba`, computed in log space where the layer allows (``-inf`` for exact 0)."""
        return self._log_proba(self.logits(X))[1]


def _unmasked(X: Any) -> Any:
    """``X`` itself; a NumPy masked array raises ``TypeError`` (its mask would be silently dropped)."""
    if isinstance(X, np.ma.MaskedArray):
        raise TypeError("X must not be a masked array (its mask would be ignored); drop or impute the masked entries")
    return X


def _is_temperature(t: Any) -> bool:
    return not isinstance(t, (bool, np.bool_)) and isinstance(t, numbers.Real) and math.isfinite(t) and float(t) > 0

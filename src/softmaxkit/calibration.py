r"""Calibration: do a model's probabilities mean what they say? Metrics, reliability curves, temperature scaling.

A classifier is *calibrated* when, among the inputs to which it gives confidence :math:`c` for its top class,
a fraction :math:`c` is classified correctly: :math:`P(\hat y = y \mid \hat p = c) = c` for every :math:`c`.
Accuracy says how often the model is right; calibration says whether its probabilities can be trusted as
probabilities (for abstaining, for ranking, for combining with other models or costs).

Why softmax + cross-entropy models are often over-confident
-----------------------------------------------------------
Cross-entropy keeps rewarding a correctly classified example for pushing :math:`p_y` closer to 1, which it
does by growing the logits' scale: the loss of a training example goes to zero only as its margin goes to
infinity. A large modern network can fit its training set, and once it does, it keeps lowering the training
loss by inflating the logits, which sharpens every softmax output, also on test inputs it gets wrong. Guo,
Pleiss, Sun & Weinberger (*On Calibration of Modern Neural Networks*, ICML 2017) found deep networks (ResNets,
DenseNets) much more over-confident than the LeNets of the 1990s, with depth, width, batch normalisation and
less weight decay all making it worse, while test NLL overfits even as test error keeps falling.

What the expected calibration error measures
--------------------------------------------
Split the :math:`N` examples into bins :math:`B_1, \dots, B_M` by their top-label confidence
:math:`\hat p_i = \max_c p_{ic}`; in each non-empty bin compare the accuracy
:math:`\mathrm{acc}(B_m) = |B_m|^{-1} \sum_{i \in B_m} [\arg\max_c p_{ic} = y_i]` with the mean confidence
:math:`\mathrm{conf}(B_m)` (Naeini, Cooper & Hauskrecht, AAAI 2015; Guo et al. 2017):

.. math:: \mathrm{ECE} = \sum_m \frac{|B_m|}{N} \bigl|\mathrm{acc}(B_m) - \mathrm{conf}(B_m)\bigr| , \qquad
          \mathrm{MCE} = \max_m \bigl|\mathrm{acc}(B_m) - \mathrm{conf}(B_m)\bigr| .

The ECE is an estimate, and a biased one: with few examples per bin the sampling noise of
:math:`\mathrm{acc}(B_m)` is counted as miscalibration (a perfectly calibrated model has an ECE of order
:math:`\sqrt{M / N}`), while wide bins let errors of opposite sign cancel inside a bin. The value depends on
the number of bins and the binning scheme (uniform or equal-mass), so compare ECEs only at the same settings
(Kumar, Liang & Ma 2019, *Verified Uncertainty Calibration*; Nixon et al. 2019, *Measuring Calibration in Deep
Learning*). The Brier score and the negative log-likelihood are proper scoring rules without bins, and are
reported next to it.

Temperature scaling keeps the accuracy
--------------------------------------
Temperature scaling (Guo et al. 2017) divides the logits by one scalar :math:`T > 0`, fitted on held-out data
by minimising the NLL. For softmax, :math:`\operatorname{softmax}(z/T)` is a strictly increasing function of
each :math:`z_i` with the same order for every :math:`T`, so the predicted class, and with it the accuracy,
cannot change; only the confidence does (:math:`T > 1` softens over-confident outputs). With one parameter it
cannot overfit a validation set of reasonable size. As a function of :math:`\beta = 1/T` the softmax NLL
:math:`\frac1N \sum_i \operatorname{lse}(\beta z_i) - \beta z_{i y_i}` is convex (its second derivative is
the mean variance of the logits under :math:`p`), so :class:`TemperatureScaler` finds the optimum by a
safeguarded Newton method, iterating until the step is below :math:`10^{-13}` relative.

Conventions
-----------
=====================================  ==================================================================
input                                  convention
=====================================  ==================================================================
``probs``                              2-d ``(N, C)``, finite, every entry in ``[0, 1]``; rows need not
                                       sum to one (the top-label ECE uses only the row maximum)
``y``                                  1-d integer labels, ``0 <= y < C``, length ``N``
predicted class                        ``argmax`` of the row; ties go to the first (lowest) class
uniform bins                           ``[k/M, (k+1)/M)``, the last one closed ``[(M-1)/M, 1]``: a
                                       confidence of exactly 0 is in the first bin, exactly 1 in the last
=====================================  ==================================================================

Examples
--------
>>> import numpy as np
>>> from softmaxkit import softmax
>>> from softmaxkit.calibration import TemperatureScaler, expected_calibration_error
>>> rng = np.random.default_rng(1)
>>> z = rng.normal(scale=6.0, size=(4000, 5))            # a model three times too confident:
>>> y = np.array([rng.choice(5, p=row) for row in softmax(z / 3)])   # labels drawn at T = 3
>>> scaler = TemperatureScaler().fit(z, y)
>>> round(scaler.temperature_, 1)
3.0
>>> before = expected_calibration_error(softmax(z), y)
>>> after = expected_calibration_error(scaler.predict_proba(z), y)
>>> round(before, 3), round(after, 3)                   # ECE (15 uniform bins) before and after
(0.211, 0.014)
>>> bool((scaler.predict_proba(z).argmax(1) == z.argmax(1)).all())   # same predictions, same accuracy
True
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from .layers import OutputLayer, get_output_layer
from .softmax import log_softmax, softmax

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "NotFittedError",
    "ReliabilityCurve",
    "TemperatureScaler",
    "brier_score",
    "expected_calibration_error",
    "negative_log_likelihood",
    "plot_reliability",
    "reliability_curve",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

NORMS = ("l1", "l2", "max")
BINNINGS = ("uniform", "quantile")
PROBABILITY_FLOOR = 1e-12
"""Probabilities are floored here in the NLL that :class:`TemperatureScaler` minimises for layers other than
softmax (sparse layers give exact zeros)."""


# --------------------------------------------------------------------------------------------------- validation


def _numeric(value: Any, name: str) -> np.ndarray[Any, Any]:
    arr = np.asarray(value)
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real numeric array; got dtype {arr.dtype}")
    return arr


def _finite(arr: np.ndarray[Any, Any], name: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} must be finite; got {arr[pos].item()!r} at position {pos}")


def _matrix(value: Any, name: str) -> np.ndarray[Any, Any]:
    """A finite 2-d real array ``(N, C)`` with ``N >= 1`` and ``C >= 1`` (not copied, not converted)."""
    arr = _numeric(value, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-d array (n_samples, n_classes); got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: got shape {arr.shape}; need at least one sample")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has no classes: got shape {arr.shape}; need at least one column")
    _finite(arr, name)
    return arr


def _probs(value: Any) -> FloatArray:
    p = _matrix(value, "probs").astype(np.float64)
    bad = (p < 0.0) | (p > 1.0)
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"probs must lie in [0, 1]; got {float(p[pos])!r} at position {pos}")
    return p


def _labels(value: Any, n: int, n_classes: int, ref: str) -> IntArray:
    arr = np.asarray(value)
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iu":
        raise TypeError(f"y must be an array of integer class labels; got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"y must be 1-d; got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"y has length {arr.shape[0]} but {ref} has {n} rows")
    bad = (arr < 0) | (arr >= n_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"y must hold labels in [0, {n_classes}); got {int(arr[i])} at position {i}")
    return arr.astype(np.int64)


def _probs_labels(probs: Any, y: Any) -> tuple[FloatArray, IntArray]:
    p = _probs(probs)
    return p, _labels(y, p.shape[0], p.shape[1], "probs")


def _n_bins(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"n_bins must be an int; got {value!r}")
    if value < 1:
        raise ValueError(f"n_bins must be >= 1; got {value!r}")
    return int(value)


def _choice(value: Any, name: str, options: tuple[str, ...]) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
    return str(value)


# ------------------------------------------------------------------------------------------------------ metrics


class ReliabilityCurve(NamedTuple):
    """Per-bin statistics of the top-label confidence, as returned by :func:`reliability_curve`.

    An empty bin has ``count`` 0 and ``nan`` ``confidence`` and ``accuracy``.
    """

    bin_edges: FloatArray
    """``(M + 1,)`` increasing edges; bin ``k`` is ``[bin_edges[k], bin_edges[k + 1])``, the last one closed."""
    confidence: FloatArray
    """``(M,)`` mean top-label confidence of the examples in each bin."""
    accuracy: FloatArray
    """``(M,)`` fraction of the examples in each bin whose top label is right."""
    counts: IntArray
    """``(M,)`` number of examples in each bin."""


def _bin_edges(conf: FloatArray, n_bins: int, binning: str) -> FloatArray:
    if binning == "uniform":
        return np.arange(n_bins + 1) / n_bins  # k / M correctly rounded (np.linspace is not, e.g. 3/5)
    # Equal mass: the examples sorted by confidence are cut into runs, rank r going to bin floor(r M / N). A run
    # of tied confidences is never split: it goes wholly to the bin of its first member. The edges are each
    # non-empty bin's smallest confidence, then the largest confidence (empty bins are dropped).
    s = np.sort(conf)
    n = s.shape[0]
    bins = (np.arange(n) * n_bins) // n
    first = np.concatenate(([True], s[1:] != s[:-1]))  # first member of each run of equal confidences
    bins = bins[np.flatnonzero(first)[np.cumsum(first) - 1]]
    starts = np.concatenate(([True], bins[1:] != bins[:-1]))
    return np.concatenate((s[starts], s[-1:]))


def _curve(p: FloatArray, y: IntArray, n_bins: int, binning: str) -> ReliabilityCurve:
    pred = np.argmax(p, axis=1)
    conf = p[np.arange(p.shape[0]), pred]
    correct = (pred == y).astype(np.float64)
    edges = _bin_edges(conf, n_bins, binning)
    m = edges.shape[0] - 1
    # Left-closed bins [e_k, e_{k+1}); the right edge of the last bin belongs to it (clip).
    index = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, m - 1)
    counts = np.bincount(index, minlength=m)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(index, weights=conf, minlength=m) / counts
        accuracy = np.bincount(index, weights=correct, minlength=m) / counts
    return ReliabilityCurve(edges, confidence, accuracy, counts.astype(np.int64))


def _ece_from_curve(curve: ReliabilityCurve, norm: str) -> float:
    filled = curve.counts > 0
    gap = np.abs(curve.accuracy[filled] - curve.confidence[filled])
    weight = curve.counts[filled] / curve.counts.sum()
    if norm == "l1":
        return float(np.sum(weight * gap))
    if norm == "l2":
        return float(np.sqrt(np.sum(weight * gap**2)))
    return float(np.max(gap))


def reliability_curve(
    probs: npt.ArrayLike, y: npt.ArrayLike, /, *, n_bins: int = 15, binning: str = "uniform"
) -> ReliabilityCurve:
    r"""Accuracy against confidence, bin by bin: the data of a reliability diagram.

    Each example goes to a bin by its top-label confidence :math:`\hat p_i = \max_c p_{ic}`; the bin reports
    the mean confidence, the accuracy (fraction with :math:`\arg\max_c p_{ic} = y_i`) and the count. A
    calibrated model has accuracy equal to confidence in every bin (DeGroot & Fienberg 1983; Niculescu-Mizil &
    Caruana 2005; Guo et al. 2017).

    Parameters
    ----------
    probs : array_like, shape (N, C)
        Predicted probabilities: finite, in ``[0, 1]``; rows need not sum to one.
    y : array_like of int, shape (N,)
        True labels in ``[0, C)``.
    n_bins : int
        Number of bins :math:`M \ge 1`.
    binning : {"uniform", "quantile"}
        ``"uniform"``: edges :math:`k/M` (each correctly rounded, so a confidence of exactly :math:`k/M` is in
        bin :math:`k`). ``"quantile"``: equal-mass bins: the examples sorted by confidence are cut into runs,
        the one of rank :math:`r` (from 0) going to bin :math:`\lfloor rM/N \rfloor`, so bins hold
        :math:`\lfloor N/M \rfloor` or :math:`\lceil N/M \rceil` examples; a run of tied confidences is never
        split (it joins the bin of its first member) and bins left empty are dropped, so with ties there may be
        fewer than ``n_bins`` bins. The edges are each bin's smallest confidence, then the largest one.

    Returns
    -------
    ReliabilityCurve
        ``(bin_edges, confidence, accuracy, counts)``; bin ``k`` is ``[bin_edges[k], bin_edges[k + 1])`` and the
        last bin also holds its right edge.

    Raises
    ------
    TypeError
        ``probs`` not real, ``y`` not integer, ``n_bins`` not an int.
    ValueError
        Bad shapes, empty input, non-finite or out-of-range probabilities or labels, unknown ``binning``.

    Special values
    --------------
    =================================  ============================================
    case                               result
    =================================  ============================================
    empty bin                          ``count`` 0, ``confidence`` and ``accuracy`` nan
    confidence exactly 0 / exactly 1   first / last uniform bin
    confidence on an inner edge        the bin to its right (left-closed bins)
    tied top probabilities             the first class is the prediction
    all confidences equal (quantile)   one bin with edges ``[c, c]``
    =================================  ============================================

    Examples
    --------
    >>> curve = reliability_curve([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]], [0, 1, 1], n_bins=5)
    >>> curve.counts.tolist()
    [0, 0, 0, 1, 2]
    >>> print(curve.accuracy, curve.confidence)
    [nan nan nan 1.  0.5] [ nan  nan  nan 0.7  0.85]
    """
    p, labels = _probs_labels(probs, y)
    return _curve(p, labels, _n_bins(n_bins), _choice(binning, "binning", BINNINGS))


def expected_calibration_error(
    probs: npt.ArrayLike,
    y: npt.ArrayLike,
    /,
    *,
    n_bins: int = 15,
    norm: str = "l1",
    binning: str = "uniform",
) -> float:
    r"""Top-label expected calibration error (Naeini et al. 2015; Guo et al. 2017).

    .. math:: \mathrm{ECE}_{\ell_1} = \sum_m \frac{|B_m|}{N}\,|\mathrm{acc}_m - \mathrm{conf}_m|, \quad
              \mathrm{ECE}_{\ell_2} = \Bigl(\sum_m \frac{|B_m|}{N}\,(\mathrm{acc}_m - \mathrm{conf}_m)^2
              \Bigr)^{1/2}, \quad
              \mathrm{MCE} = \max_{m:\,|B_m| > 0} |\mathrm{acc}_m - \mathrm{conf}_m|

    over the bins of :func:`reliability_curve`. Only the top label counts: the confidence is the row maximum,
    so the rows need not sum to one. The estimate is biased upward for few examples per bin (see the module
    notes); report ``n_bins`` and ``binning`` with it.

    Parameters
    ----------
    probs : array_like, shape (N, C)
        Predicted probabilities: finite, in ``[0, 1]``.
    y : array_like of int, shape (N,)
        True labels in ``[0, C)``.
    n_bins : int
        Number of bins (15 as in Guo et al. 2017).
    norm : {"l1", "l2", "max"}
        ``"l1"``: the ECE; ``"l2"``: the root of the weighted squared gaps; ``"max"``: the maximum calibration
        error over non-empty bins.
    binning : {"uniform", "quantile"}
        As in :func:`reliability_curve`.

    Returns
    -------
    float
        In ``[0, 1]``.

    Raises
    ------
    TypeError, ValueError
        As :func:`reliability_curve`; unknown ``norm``.

    Notes
    -----
    With uniform bins and confidences below 1 this equals torchmetrics' ``MulticlassCalibrationError`` (which
    uses the same left-closed bins). A confidence of exactly 1 goes to the last bin here; torchmetrics gives it
    a bin of its own.

    Special values
    --------------
    ================================  ==============
    case                              result
    ================================  ==============
    one-hot, always right             0.0
    one-hot, always wrong             1.0
    one class (C = 1)                 0.0 if probs are 1
    ================================  ==============

    Examples
    --------
    >>> probs = [[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]]
    >>> expected_calibration_error(probs, [0, 1, 1], n_bins=5)   # (|1 - 0.7| + 2 |0.5 - 0.85|) / 3
    0.3333333333333333
    >>> expected_calibration_error(probs, [0, 1, 1], n_bins=5, norm="max")
    0.35
    """
    p, labels = _probs_labels(probs, y)
    norm = _choice(norm, "norm", NORMS)
    curve = _curve(p, labels, _n_bins(n_bins), _choice(binning, "binning", BINNINGS))
    return _ece_from_curve(curve, norm)


def brier_score(probs: npt.ArrayLike, y: npt.ArrayLike, /) -> float:
    r"""Multi-class Brier score: the mean squared distance between the probabilities and the one-hot label.

    .. math:: \mathrm{BS} = \frac1N \sum_{i=1}^N \sum_{c=1}^C \bigl(p_{ic} - [y_i = c]\bigr)^2

    the original definition of Brier (1950), a strictly proper scoring rule. It lies in ``[0, 2]`` for rows on
    the simplex: 0 for a confident right answer, 2 for a confident wrong one. scikit-learn's
    ``brier_score_loss`` gives the same value for three classes or more; for two classes it scores only the
    positive class by default (``scale_by_half="auto"``), half of this value.

    Parameters
    ----------
    probs : array_like, shape (N, C)
        Predicted probabilities, finite, in ``[0, 1]``; rows that do not sum to one are scored as given.
    y : array_like of int, shape (N,)
        True labels in ``[0, C)``.

    Returns
    -------
    float

    Raises
    ------
    TypeError, ValueError
        As :func:`reliability_curve`.

    Special values
    --------------
    ===========================  ===============
    case                         result
    ===========================  ===============
    one-hot on the true class    0.0
    one-hot on a wrong class     2.0
    uniform over C classes       :math:`1 - 1/C`
    ===========================  ===============

    Examples
    --------
    >>> brier_score([[0.9, 0.1], [0.5, 0.5]], [0, 1])   # ((0.01 + 0.01) + (0.25 + 0.25)) / 2
    0.26
    """
    p, labels = _probs_labels(probs, y)
    d = p.copy()
    d[np.arange(p.shape[0]), labels] -= 1.0
    return float(np.mean(np.sum(d * d, axis=1)))


def negative_log_likelihood(probs: npt.ArrayLike, y: npt.ArrayLike, /, *, eps: float = 0.0) -> float:
    r"""Mean negative log-probability of the true class, :math:`-\frac1N \sum_i \log \max(p_{i y_i}, \varepsilon)`.

    The log-loss (Good 1952): the cross-entropy of the probabilities, a strictly proper scoring rule that
    punishes confident mistakes without bound. Sparse output layers (sparsemax, entmax) give exact zeros;
    ``eps > 0`` floors the probabilities so that such a model gets a finite, comparable score.

    Parameters
    ----------
    probs : array_like, shape (N, C)
        Predicted probabilities, finite, in ``[0, 1]``.
    y : array_like of int, shape (N,)
        True labels in ``[0, C)``.
    eps : float
        Floor in ``[0, 1)``; 0 (the default) is no floor.

    Returns
    -------
    float
        ``>= 0``; ``inf`` when some ``p_{i y_i} = 0`` and ``eps = 0``.

    Raises
    ------
    TypeError, ValueError
        As :func:`reliability_curve`; ``eps`` not a number in ``[0, 1)``.

    Special values
    --------------
    ================================  =====================
    case                              result
    ================================  =====================
    :math:`p_y = 0`, ``eps = 0``      ``inf`` (no warning)
    :math:`p_y = 0`, ``eps > 0``      :math:`-\log \varepsilon` for that row
    :math:`p_y = 1` for every row     0.0
    ================================  =====================

    Examples
    --------
    >>> negative_log_likelihood([[0.5, 0.5], [1.0, 0.0]], [0, 1])
    inf
    >>> round(negative_log_likelihood([[0.5, 0.5], [1.0, 0.0]], [0, 1], eps=1e-12), 4)   # (log 2 + 12 log 10) / 2
    14.1621
    """
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0.0 <= float(eps) < 1.0:
        raise ValueError(f"eps must be a number in [0, 1); got {eps!r}")
    p, labels = _probs_labels(probs, y)
    py = np.maximum(p[np.arange(p.shape[0]), labels], float(eps))
    with np.errstate(divide="ignore"):
        return 0.0 - float(np.mean(np.log(py)))  # 0.0 - x: never -0.0


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
    """The layer's probabilities of scores ``z``: normalised rows for sigmoid, softmax for score layers."""
    if not layer.probabilities:  # hinge and other score layers: softmax of the (scaled) scores
        return np.asarray(softmax(z, axis=-1), dtype=np.float64)
    q = np.asarray(layer.mapping(z, axis=-1), dtype=np.float64)
    if layer.normalized:
        return q
    total = np.sum(q, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(total > 0.0, q / total, 1.0 / q.shape[1]), dtype=np.float64)


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

    where :math:`q` is the output layer's mapping (``softmaxkit.layers.get_output_layer(output_layer)``). For
    ``"softmax"`` the objective is the exact log-softmax NLL, convex in :math:`\beta = 1/T`, with derivatives
    :math:`\frac{d}{d\beta} = \frac1N\sum_i (\mathbb{E}_{p_i}[z_i] - z_{iy_i})` and
    :math:`\frac{d^2}{d\beta^2} = \frac1N\sum_i \operatorname{Var}_{p_i}(z_i) \ge 0`; a Newton iteration kept
    inside a shrinking bracket (bisection in :math:`\log\beta` when a step leaves it) converges to about
    :math:`10^{-13}` relative. For the other layers the NLL is taken with probabilities floored at
    :data:`PROBABILITY_FLOOR` (sparsemax and entmax give exact zeros) and minimised over :math:`\log T` by a
    33-point grid followed by golden-section search in the best grid cell (the objective need not be convex
    there). Layers whose outputs are not normalised (``sigmoid``) have their rows divided by their sum; layers
    whose outputs are scores, not probabilities (``hinge``, whose mapping is the identity), are scored by the
    softmax of the scaled scores.

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
        get_output_layer(output_layer)
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
        layer = get_output_layer(self.output_layer)
        t_min, t_max = _bounds(self.bounds)
        z = _matrix(logits, "logits").astype(np.float64)
        labels = _labels(y, z.shape[0], z.shape[1], "logits")
        if layer.name == "softmax":
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
        z = _matrix(logits, "logits")
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
        q = _layer_proba(get_output_layer(self.output_layer), z.astype(np.float64) / self.temperature_)
        return q.astype(dtype)


# --------------------------------------------------------------------------------------------------- plotting


def _as_curve(item: Any, y: Any, n_bins: int, name: str) -> ReliabilityCurve:
    if isinstance(item, ReliabilityCurve):
        return item
    if y is None:
        raise ValueError(f"y is needed to plot the probabilities of {name!r}; got y=None")
    p, labels = _probs_labels(item, y)
    return _curve(p, labels, n_bins, "uniform")


def plot_reliability(
    probs_or_curves: Any,
    y: npt.ArrayLike | None = None,
    /,
    *,
    n_bins: int = 15,
    labels: str | Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Reliability diagram: accuracy per confidence bin against the diagonal, with a histogram of confidences.

    Parameters
    ----------
    probs_or_curves : array_like, ReliabilityCurve, or mapping of name to either
        One model's probabilities ``(N, C)`` (needs ``y``), a :class:`ReliabilityCurve`, or a dict
        ``{label: probs or curve}`` to compare models on one diagram.
    y : array_like of int, optional
        True labels, needed for probabilities.
    n_bins : int
        Uniform bins for probabilities (curves keep their own bins).
    labels : str or sequence of str, optional
        Legend names: one for a single model, one per key for a mapping (default: the keys, or ``"model"``).
    ax : matplotlib Axes, optional
        Draw the diagram there, with the histogram as an inset; by default a new ``Figure`` with two panels
        (diagram above, histogram below) is made without pyplot, so no global state or backend changes.
    title : str, optional
        Title of the diagram.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on (``ax.figure`` when ``ax`` is given). The legend shows each model's ECE (l1).

    Raises
    ------
    ImportError
        matplotlib is missing (``pip install 'softmaxkit[compare]'``).
    TypeError, ValueError
        As :func:`reliability_curve`; ``labels`` of the wrong length.

    Examples
    --------
    >>> fig = plot_reliability([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]], [0, 1, 1], n_bins=5)
    >>> len(fig.axes)
    2
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - matplotlib is a dev dependency
        raise ImportError("plot_reliability needs matplotlib: pip install 'softmaxkit[compare]'") from exc
    n = _n_bins(n_bins)
    items: list[tuple[str, Any]]
    if isinstance(probs_or_curves, Mapping):
        items = [(str(k), v) for k, v in probs_or_curves.items()]
        if not items:
            raise ValueError("probs_or_curves is an empty mapping; give at least one model")
    else:
        items = [("model", probs_or_curves)]
    if labels is not None:
        names = [labels] if isinstance(labels, str) else [str(s) for s in labels]
        if len(names) != len(items):
            raise ValueError(f"labels must give {len(items)} name(s); got {labels!r}")
        items = [(nm, v) for nm, (_, v) in zip(names, items, strict=True)]
    curves = [(nm, _as_curve(v, y, n, nm)) for nm, v in items]

    if ax is None:
        fig = Figure(figsize=(5.0, 6.0), layout="constrained")
        main, hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    else:
        root = ax.get_figure(root=True)
        if root is None:
            raise ValueError("ax must belong to a matplotlib Figure")
        fig = root
        main = ax
        hist = ax.inset_axes((0.1, 0.6, 0.32, 0.3))
    main.plot([0.0, 1.0], [0.0, 1.0], linestyle="--", color="0.5", linewidth=1.0, label="perfect calibration")
    for k, (nm, curve) in enumerate(curves):
        edges = curve.bin_edges
        filled = curve.counts > 0
        ece = _ece_from_curve(curve, "l1") if curve.counts.sum() > 0 else math.nan
        label = f"{nm} (ECE {ece:.3f})"
        color = f"C{k}"
        if len(curves) == 1:
            widths = np.diff(edges)
            main.bar(
                edges[:-1][filled],
                curve.accuracy[filled],
                width=widths[filled],
                align="edge",
                color=color,
                alpha=0.7,
                edgecolor="black",
                linewidth=0.5,
                label=label,
            )
        else:
            main.plot(curve.confidence[filled], curve.accuracy[filled], marker="o", color=color, label=label)
        hist.stairs(
            curve.counts / max(int(curve.counts.sum()), 1),
            edges,
            color=color,
            fill=len(curves) == 1,
            alpha=0.7 if len(curves) == 1 else 1.0,
        )
    main.set_xlim(0.0, 1.0)
    main.set_ylim(0.0, 1.0)
    main.set_ylabel("accuracy")
    main.legend(loc="upper left" if ax is None else "lower right", fontsize="small")
    if title is not None:
        main.set_title(title)
    if ax is None:
        hist.set_ylabel("fraction")
        hist.set_xlabel("confidence")
    else:
        main.set_xlabel("confidence")
        hist.set_title("fraction per bin", fontsize="x-small")
        hist.tick_params(labelsize="xx-small")
    return fig

"""Calibration metrics: ECE, Brier score, NLL and the reliability curve (see :mod:`softmaxkit.calibration`)."""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

NORMS = ("l1", "l2", "max")
BINNINGS = ("uniform", "quantile")
PROBABILITY_FLOOR = 1e-12
"""Probabilities are floored here in the NLL that :class:`TemperatureScaler` minimises for layers other than
softmax (sparse layers give exact zeros)."""


# --------------------------------------------------------------------------------------------------- validation


def _array(value: Any, name: str) -> np.ndarray[Any, Any]:
    """``value`` as a NumPy array; a masked array (whose mask ``np.asarray`` would drop) or a ragged sequence
    raises an error naming ``name``."""
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(f"{name} must not be a masked array (its mask would be ignored); pass value[~mask] rows")
    try:
        return np.asarray(value)
    except ValueError as exc:  # ragged nested sequences
        raise ValueError(f"{name} must be a rectangular array; got {type(value).__name__} ({exc})") from None


def _numeric(value: Any, name: str) -> np.ndarray[Any, Any]:
    arr = _array(value, name)
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real numeric array; got dtype {arr.dtype}")
    return arr


def _finite(arr: np.ndarray[Any, Any], name: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} must be finite; got {arr[pos].item()!r} at position {pos}")


def matrix_of(value: Any, name: str) -> np.ndarray[Any, Any]:
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
    p = matrix_of(value, "probs").astype(np.float64)
    bad = (p < 0.0) | (p > 1.0)
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"probs must lie in [0, 1]; got {float(p[pos])!r} at position {pos}")
    return p


def labels_of(value: Any, n: int, n_classes: int, ref: str) -> IntArray:
    arr = _array(value, "y")
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


def probs_and_labels(probs: Any, y: Any) -> tuple[FloatArray, IntArray]:
    p = _probs(probs)
    return p, labels_of(y, p.shape[0], p.shape[1], "probs")


def check_n_bins(value: Any) -> int:
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


def curve_of(p: FloatArray, y: IntArray, n_bins: int, binning: str) -> ReliabilityCurve:
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


def ece_from_curve(curve: ReliabilityCurve, norm: str) -> float:
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
    p, labels = probs_and_labels(probs, y)
    return curve_of(p, labels, check_n_bins(n_bins), _choice(binning, "binning", BINNINGS))


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
    p, labels = probs_and_labels(probs, y)
    norm = _choice(norm, "norm", NORMS)
    curve = curve_of(p, labels, check_n_bins(n_bins), _choice(binning, "binning", BINNINGS))
    return ece_from_curve(curve, norm)


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
    p, labels = probs_and_labels(probs, y)
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
    p, labels = probs_and_labels(probs, y)
    py = np.maximum(p[np.arange(p.shape[0]), labels], float(eps))
    with np.errstate(divide="ignore"):
        return 0.0 - float(np.mean(np.log(py)))  # 0.0 - x: never -0.0

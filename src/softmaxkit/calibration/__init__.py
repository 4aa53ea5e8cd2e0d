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

from ._metrics import (
    BINNINGS,
    NORMS,
    PROBABILITY_FLOOR,
    ReliabilityCurve,
    brier_score,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_curve,
)
from ._plot import plot_reliability
from ._scaling import NotFittedError, TemperatureScaler

__all__ = [
    "BINNINGS",
    "NORMS",
    "PROBABILITY_FLOOR",
    "NotFittedError",
    "ReliabilityCurve",
    "TemperatureScaler",
    "brier_score",
    "expected_calibration_error",
    "negative_log_likelihood",
    "plot_reliability",
    "reliability_curve",
]

r"""``softmaxkit compare``: every output layer, trained the same way on the same data, measured side by side.

The seeds of this project argue that softmax with cross-entropy beats standard normalisation, sigmoid and the
hinge loss, mention spherical and Taylor softmax, and claim that softmax models give well-calibrated
probabilities. This command turns those claims into numbers on a dataset of your choice:

1. the data is split once, stratified by class, into *train* (75 %) and *test* (25 %), and standardised with the
   training rows' mean and spread;
2. for each output layer of :data:`softmaxkit.layers.OUTPUT_LAYERS` asked for, the same
   :class:`~softmaxkit.classifier.SoftmaxClassifier` (same hidden layers, same initial weights, same minibatches,
   Adam) is trained for the same number of epochs, only the output layer and its loss changing;
3. its temperature (Guo et al. 2017) is fitted by ``--folds``-fold cross-validation on the training part: a model
   trained on the other folds scores each fold, and a :class:`~softmaxkit.calibration.TemperatureScaler` is fitted
   on these out-of-fold logits of every training row, then applied to the model trained on the whole training
   part (as scikit-learn's ``CalibratedClassifierCV(ensemble=False)``); everything is measured on the test rows,
   which neither the weights nor the temperature have seen;
4. scikit-learn's ``LogisticRegression`` (softmax regression with the same L2 penalty, fitted to convergence by
   L-BFGS) is measured on the same split, with its temperature fitted the same way, as a baseline.

The package follows those ideas: :mod:`._data` (loading, checks, the split and the folds), :mod:`._experiment`
(training, temperatures, metrics), :mod:`._report` (tables and files) and :mod:`._command` (the command line).

The leaderboard, one row per layer, sorted by test NLL:

==============  ===============================================================================================
column          meaning
==============  ===============================================================================================
accuracy        share of test rows whose most probable class is the true one
NLL             mean :math:`-\log p_y` on the test rows; probabilities are floored at :math:`10^{-12}`, so that
                a sparse layer that gives the true class exactly 0 costs 27.6 instead of :math:`\infty`
NLL (T)         the same after temperature scaling
ECE / ECE (T)   expected calibration error (15 equal-width bins of the top probability, L1), before and after
T               the fitted temperature: above 1 the layer was over-confident, below 1 under-confident
T s.e.          the jackknife standard error of T over the cross-validation folds: how reliable T is
Brier           mean squared distance between the probability vector and the one-hot truth, in [0, 2]
fit s           seconds spent training (wall clock, this machine)
zeros           share of exact zeros among the predicted probabilities (sparsemax and entmax produce them)
==============  ===============================================================================================

Layers whose outputs are not a distribution are made into one before they are scored: sigmoid's per-class
probabilities are divided by their sum, and the hinge layer's scores go through a softmax (the hinge loss
itself gives no probabilities at all, so its calibration before scaling is not meaningful).

With ``--out DIR`` (default ``compare-results``) the command writes ``results.json`` (every number of the table
and the learning curves), one reliability diagram per layer (``reliability_<layer>.png``) and
``learning_curves.png``. Files are first written to a temporary folder beside ``DIR`` and moved in only when
all of them exist, so a failed run leaves nothing half-written.

Errors in the input (a file that cannot be read or a damaged archive, a label column that is missing, a
non-numeric feature, a single class, a class too small to split, a seed outside ``[0, 2**32 - 1]``, an ``--out``
that cannot be written: a file, a read-only or virtual place such as ``/proc``, or a folder holding a
directory named like one of the output files) stop the command before any training with exit status 2 and a
message naming the problem; a missing optional dependency gives exit status 1.
"""

from __future__ import annotations

from ._command import add_arguments, command
from ._data import BUILTIN, DataError, Dataset, check_dataset, folds, load_data, need, split
from ._experiment import (
    BASELINE,
    DEFAULT_LAYERS,
    N_BINS,
    NLL_FLOOR,
    Config,
    LayerResult,
    run,
    train_baseline,
    train_layer,
)
from ._report import HEADER, check_out, markdown_table, output_names, print_table, table_rows, write_outputs

__all__ = [
    "BASELINE",
    "BUILTIN",
    "DEFAULT_LAYERS",
    "HEADER",
    "NLL_FLOOR",
    "N_BINS",
    "Config",
    "DataError",
    "Dataset",
    "LayerResult",
    "add_arguments",
    "check_dataset",
    "check_out",
    "command",
    "folds",
    "load_data",
    "markdown_table",
    "need",
    "output_names",
    "print_table",
    "run",
    "split",
    "table_rows",
    "train_baseline",
    "train_layer",
    "write_outputs",
]

"""The experiment of ``softmaxkit compare``: train every layer the same way, fit its temperature, measure it.

The temperature is fitted by cross-validation, not on a small validation part: on iris a 15 % validation part
is 22 rows, too few to pin down one scalar, and the temperature fitted there made the test NLL worse (softmax:
0.166 before scaling, 0.283 after). Here, as in scikit-learn's ``CalibratedClassifierCV(ensemble=False)``,
each of ``folds`` models is trained on the other folds of the training part and scores its held-out fold;
:math:`T` is fitted on these out-of-fold logits of *every* training row, and applied to the model trained on
the whole training part. How reliable that :math:`T` is shows in the ``T s.e.`` column: its delete-one-fold
jackknife standard error (:math:`T` refitted without each fold's rows in turn; the JSON keeps those refits as
``temperature_without_fold``). Fitting :math:`T` on one fold alone, the size of a validation part, is what the
cross-validation avoids: on iris, a fold of 22 rows that the model classifies perfectly drives its :math:`T` to
the lower bound, 0.01.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import __version__
from .._backend import backend
from ..layers import get_output_layer
from ._data import DataError, check_dataset, folds, load_data, need, split

DEFAULT_LAYERS = ("softmax", "taylor", "spherical", "sparsemax", "entmax15", "sigmoid", "hinge", "softplus_normalize")
NLL_FLOOR = 1e-12
N_BINS = 15
BASELINE = "sklearn-logreg"
MAX_SEED = 2**32 - 1
"""Largest ``--seed``: scikit-learn's and NumPy's seeds are 32-bit."""


@dataclass
class Config:
    """What ``softmaxkit compare`` runs; the defaults are the command's."""

    data: str = "digits"
    label: str | None = None
    layers: tuple[str, ...] = DEFAULT_LAYERS
    hidden: tuple[int, ...] = (64,)
    epochs: int = 40
    seed: int = 0
    alpha: float = 1e-4
    learning_rate: float = 1e-2
    batch_size: int = 64
    folds: int = 5
    baseline: bool = True


@dataclass
class LayerResult:
    """One row of the leaderboard, and the curves behind the learning-curve plot."""

    name: str
    accuracy: float
    nll: float
    nll_scaled: float
    ece: float
    ece_scaled: float
    temperature: float
    brier: float
    fit_seconds: float
    zeros: float
    epochs: int
    temperature_se: float = math.nan
    temperature_without_fold: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    val_nll: list[float] = field(default_factory=list)


def resolve_layers(names: tuple[str, ...]) -> tuple[str, ...]:
    """The registry names of ``names`` (aliases such as ``normalize`` resolved, repeats dropped); an unknown name
    raises :class:`DataError` naming ``--layers``."""
    if not names:
        raise DataError("--layers: give at least one output layer")
    try:
        return tuple(dict.fromkeys(get_output_layer(n, argument="--layers").name for n in names))
    except ValueError as exc:
        raise DataError(str(exc)) from None


def check_config(config: Config) -> Config:
    """A copy of ``config`` with its layers resolved; :class:`DataError` for a seed or fold count out of range."""
    if isinstance(config.seed, bool) or not isinstance(config.seed, int) or not 0 <= config.seed <= MAX_SEED:
        raise DataError(f"--seed must be an integer in [0, {MAX_SEED}]; got {config.seed!r}")
    if isinstance(config.folds, bool) or not isinstance(config.folds, int) or config.folds < 2:
        raise DataError(f"--folds must be an integer >= 2; got {config.folds!r}")
    return dataclasses.replace(config, layers=resolve_layers(tuple(config.layers)))


# ------------------------------------------------------------------------------------------------ measuring
def _metrics(probs: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    from ..calibration import brier_score, expected_calibration_error, negative_log_likelihood

    return (
        negative_log_likelihood(probs, y, eps=NLL_FLOOR),
        expected_calibration_error(probs, y, n_bins=N_BINS),
        brier_score(probs, y),
    )


@dataclass
class _Fitted:
    """What one trained model gives the experiment: scores of the test rows, their probabilities, its fit."""

    scores_test: np.ndarray
    probs_test: np.ndarray
    seconds: float
    epochs: int


def _finish(
    name: str,
    output_layer: str,
    final: _Fitted,
    out_of_fold: np.ndarray,
    fold_of: np.ndarray,
    y_fit: np.ndarray,
    y_test: np.ndarray,
) -> tuple[LayerResult, np.ndarray]:
    """The leaderboard row: test metrics of ``final`` before and after the temperature fitted on the
    out-of-fold scores of every training row, and that temperature's jackknife standard error."""
    from ..calibration import TemperatureScaler

    scaler = TemperatureScaler(output_layer=output_layer).fit(out_of_fold, y_fit)
    # How reliable T is: the delete-one-fold jackknife (Efron & Tibshirani 1993, ch. 11), T refitted without
    # each fold's rows in turn; its standard error is sqrt((K - 1) / K * sum_k (T_-k - mean)^2).
    n_folds = int(fold_of.max()) + 1
    without = []
    for k in range(n_folds):
        rest = fold_of != k
        without.append(
            float(TemperatureScaler(output_layer=output_layer).fit(out_of_fold[rest], y_fit[rest]).temperature_)
        )
    spread = np.asarray(without)
    se = float(np.sqrt((n_folds - 1) / n_folds * np.sum((spread - spread.mean()) ** 2)))
    scaled = scaler.predict_proba(final.scores_test)
    nll, ece, brier = _metrics(final.probs_test, y_test)
    nll_t, ece_t, _ = _metrics(scaled, y_test)
    # the argmax of the probabilities, not of the logits: taylor and spherical do not keep the logits' order
    accuracy = float(np.mean(np.argmax(final.probs_test, axis=1) == y_test))
    row = LayerResult(
        name,
        accuracy,
        nll,
        nll_t,
        ece,
        ece_t,
        float(scaler.temperature_),
        brier,
        final.seconds,
        float(np.mean(final.probs_test == 0.0)),
        final.epochs,
        temperature_se=se,
        temperature_without_fold=without,
    )
    return row, scaled


Parts = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""``(X_fit, y_fit, X_test, y_test)``: the training part and the test part."""
Folds = list[tuple[np.ndarray, np.ndarray]]


def _out_of_fold(
    fit: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool], np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    cv: Folds,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of every row of ``X`` from the model trained without its fold, and each row's fold number.

    ``fit(X_tr, y_tr, X_held_out, y_held_out, first)`` trains a fresh model and returns its held-out scores.
    """
    scores = np.empty((len(y), n_classes))
    fold_of = np.empty(len(y), dtype=np.intp)
    for k, (tr, ho) in enumerate(cv):
        scores[ho] = fit(X[tr], y[tr], X[ho], y[ho], k == 0)
        fold_of[ho] = k
    return scores, fold_of


def train_layer(
    name: str,
    parts: Parts,
    cv: Folds,
    n_classes: int,
    config: Config,
    on_epoch: Callable[[], None] = lambda: None,
) -> tuple[LayerResult, np.ndarray, np.ndarray]:
    """Train :class:`SoftmaxClassifier` with output layer ``name`` on each fold and on the whole training part;
    its row and its test probabilities before and after temperature scaling.

    The learning curves (training loss, held-out accuracy and NLL per epoch) are those of the first fold's model,
    scored on its held-out fold.
    """
    from ..calibration import negative_log_likelihood
    from ..classifier import SoftmaxClassifier

    X_fit, y_fit, X_test, y_test = parts
    classes = np.arange(n_classes)
    curves: dict[str, list[float]] = {"train_loss": [], "val_accuracy": [], "val_nll": []}

    def train(X: np.ndarray, y: np.ndarray, watch: tuple[np.ndarray, np.ndarray] | None) -> tuple[Any, float]:
        model = SoftmaxClassifier(
            output_layer=name,
            hidden_layer_sizes=config.hidden,
            alpha=config.alpha,
            solver="adam",
            learning_rate_init=config.learning_rate,
            batch_size=config.batch_size,
            random_state=config.seed,
        )
        spent = 0.0
        for _ in range(config.epochs):
            start = time.perf_counter()
            model.partial_fit(X, y, classes=classes)
            spent += time.perf_counter() - start
            if watch is not None:
                X_w, y_w = watch
                curves["train_loss"].append(float(model.loss_))
                curves["val_accuracy"].append(float(np.mean(model.predict(X_w) == y_w)))
                curves["val_nll"].append(negative_log_likelihood(model.predict_proba(X_w), y_w, eps=NLL_FLOOR))
            on_epoch()
        return model, spent

    def fold(X_tr: np.ndarray, y_tr: np.ndarray, X_ho: np.ndarray, y_ho: np.ndarray, first: bool) -> np.ndarray:
        model, _ = train(X_tr, y_tr, (X_ho, y_ho) if first else None)
        scores: np.ndarray = model.logits(X_ho)
        return scores

    out_of_fold, fold_of = _out_of_fold(fold, X_fit, y_fit, n_classes, cv)
    model, spent = train(X_fit, y_fit, None)
    final = _Fitted(model.logits(X_test), model.predict_proba(X_test), spent, config.epochs)
    row, scaled = _finish(name, name, final, out_of_fold, fold_of, y_fit, y_test)
    row.train_loss, row.val_accuracy, row.val_nll = curves["train_loss"], curves["val_accuracy"], curves["val_nll"]
    return row, final.probs_test, scaled


def train_baseline(
    parts: Parts, cv: Folds, n_classes: int, config: Config
) -> tuple[LayerResult, np.ndarray, np.ndarray]:
    """scikit-learn's ``LogisticRegression`` with the same L2 penalty, as ``alpha / 2 * ||W||^2`` per row, and
    its temperature fitted by the same cross-validation."""
    linear_model = need("sklearn.linear_model")
    X_fit, y_fit, X_test, y_test = parts

    def make(n_rows: int) -> Any:
        # LogisticRegression minimises  C * sum_i loss_i + ||W||^2 / 2;  ours is  mean_i loss_i + alpha/2 ||W||^2.
        # With two classes it fits one weight vector w where we fit two, w1 = -w0 = w/2 at the optimum: twice alpha.
        per_row = config.alpha * n_rows * (0.5 if n_classes == 2 else 1.0)
        return linear_model.LogisticRegression(C=1.0 / per_row, max_iter=10_000)

    def scores(model: Any, X: np.ndarray) -> np.ndarray:
        d = model.decision_function(X)
        return np.stack([np.zeros_like(d), d], axis=1) if d.ndim == 1 else np.asarray(d)

    def fold(X_tr: np.ndarray, y_tr: np.ndarray, X_ho: np.ndarray, y_ho: np.ndarray, first: bool) -> np.ndarray:
        return scores(make(len(y_tr)).fit(X_tr, y_tr), X_ho)

    out_of_fold, fold_of = _out_of_fold(fold, X_fit, y_fit, n_classes, cv)
    model = make(len(y_fit))
    start = time.perf_counter()
    model.fit(X_fit, y_fit)
    spent = time.perf_counter() - start
    probs = np.asarray(model.predict_proba(X_test), dtype=np.float64)
    final = _Fitted(scores(model, X_test), probs, spent, int(np.max(model.n_iter_)))
    row, scaled = _finish(BASELINE, "softmax", final, out_of_fold, fold_of, y_fit, y_test)
    return row, probs, scaled


# ---------------------------------------------------------------------------------------------------- run
def _nothing() -> None:
    pass


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    progress = need("rich.progress")
    console = need("rich.console").Console(stderr=True)
    columns = (
        progress.TextColumn("{task.description:<12}"),
        progress.BarColumn(),
        progress.MofNCompleteColumn(),
        progress.TimeElapsedColumn(),
    )
    with progress.Progress(*columns, console=console, transient=True) as bar:
        yield bar


Probs = dict[str, tuple[np.ndarray, np.ndarray]]


def run(config: Config, *, show_progress: bool = False) -> tuple[dict[str, Any], Probs, np.ndarray]:
    """Load, split, train every layer and the baseline; the results (JSON-ready), each row's test
    probabilities before and after temperature scaling, and the test labels."""
    config = check_config(config)
    ds = load_data(config.data, label=config.label)
    check_dataset(ds)
    train, test = split(ds, config.seed)
    mean = ds.X[train].mean(axis=0)
    scale = ds.X[train].std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    X = (ds.X - mean) / scale
    parts = (X[train], ds.y[train], X[test], ds.y[test])
    cv = folds(ds.y[train], config.folds, config.seed)
    n_classes = len(ds.classes)
    rows: list[LayerResult] = []
    probs: Probs = {}
    # Every array here holds a few thousand numbers: the generic code, for every layer alike. The numba kernels
    # would save ~0.3 ms a step for softmax, but compile for ~40 s in the first process after installation.
    with _progress(show_progress) as bar, backend("reference"):
        for name in config.layers:
            total = (len(cv) + 1) * config.epochs
            on_epoch = functools.partial(bar.advance, bar.add_task(name, total=total)) if bar else _nothing
            row, p, scaled = train_layer(name, parts, cv, n_classes, config, on_epoch=on_epoch)
            rows.append(row)
            probs[name] = (p, scaled)
        if config.baseline:
            row, p, scaled = train_baseline(parts, cv, n_classes, config)
            rows.append(row)
            probs[BASELINE] = (p, scaled)
    result = {
        "softmaxkit": __version__,
        "python": platform.python_version(),
        "data": {
            "name": ds.name,
            "samples": len(ds.y),
            "features": int(ds.X.shape[1]),
            "classes": list(ds.classes),
            "train": len(train),
            "test": len(test),
            "folds": len(cv),
        },
        "config": {
            "layers": list(config.layers),
            "hidden": list(config.hidden),
            "epochs": config.epochs,
            "seed": config.seed,
            "alpha": config.alpha,
            "learning_rate": config.learning_rate,
            "batch_size": config.batch_size,
            "folds": config.folds,
            "solver": "adam",
            "ece_bins": N_BINS,
            "nll_floor": NLL_FLOOR,
            "temperature": "fitted on the out-of-fold logits of every training row (cross-validation)",
        },
        "leaderboard": [_jsonable(r) for r in sorted(rows, key=lambda r: (r.nll, r.name))],
    }
    return result, probs, ds.y[test]


def _jsonable(row: LayerResult) -> dict[str, Any]:
    out = dict(row.__dict__)
    for key, value in out.items():
        if isinstance(value, float) and not np.isfinite(value):
            out[key] = str(value)  # JSON has no inf/nan
    return out

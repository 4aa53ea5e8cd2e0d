r"""``softmaxkit compare``: every output layer, trained the same way on the same data, measured side by side.

The seeds of this project argue that softmax with cross-entropy beats standard normalisation, sigmoid and the
hinge loss, mention spherical and Taylor softmax, and claim that softmax models give well-calibrated
probabilities. This command turns those claims into numbers on a dataset of your choice:

1. the data is split once, stratified by class, into *train* (60 %), *validation* (15 %) and *test* (25 %), and
   standardised with the training rows' mean and spread;
2. for each output layer of :data:`softmaxkit.layers.OUTPUT_LAYERS` asked for, the same
   :class:`~softmaxkit.classifier.SoftmaxClassifier` (same hidden layers, same initial weights, same minibatches,
   Adam) is trained for the same number of epochs, only the output layer and its loss changing;
3. a :class:`~softmaxkit.calibration.TemperatureScaler` is fitted on the validation rows (Guo et al. 2017), and
   everything is measured on the test rows, which neither the weights nor the temperature have seen;
4. scikit-learn's ``LogisticRegression`` (softmax regression with the same L2 penalty, fitted to convergence by
   L-BFGS) is measured on the same split as a baseline.

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

Errors in the input (a file that cannot be read, a label column that is missing, a non-numeric feature, a
single class, a class too small to split) stop the command before any training with exit status 2 and a
message naming the problem; a missing optional dependency gives exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from ._backend import backend
from .layers import get_output_layer

BUILTIN = ("digits", "iris", "wine", "breast_cancer")
DEFAULT_LAYERS = ("softmax", "taylor", "spherical", "sparsemax", "entmax15", "sigmoid", "hinge", "softplus_normalize")
LABEL_NAMES = ("label", "labels", "target", "class", "y")
NLL_FLOOR = 1e-12
N_BINS = 15
BASELINE = "sklearn-logreg"
EXTRA_HINT = "pip install 'softmaxkit[compare]'"


class DataError(ValueError):
    """The data given to ``softmaxkit compare`` cannot be used; the message says why."""


@dataclass(frozen=True)
class Dataset:
    """Features ``X`` (float64, ``(N, F)``), labels ``y`` coded ``0..C-1`` and the class names they stand for."""

    name: str
    X: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    feature_names: tuple[str, ...]


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
    train_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    val_nll: list[float] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------- data
def _need(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        name = {"sklearn": "scikit-learn"}.get(top, top)
        raise ImportError(f"needs {name}, which is not installed: {EXTRA_HINT}") from exc


def _encode(labels: Sequence[Any], source: str) -> tuple[np.ndarray, tuple[str, ...]]:
    raw = np.asarray(labels)
    if raw.ndim != 1:
        raise DataError(f"{source}: the labels must be one column; got shape {raw.shape}")
    if raw.dtype.kind == "f":
        if not np.all(np.isfinite(raw)):
            raise DataError(f"{source}: the labels hold nan or inf")
        if np.all(raw == np.round(raw)):
            raw = raw.astype(np.int64)
    names, codes = np.unique(raw, return_inverse=True)
    return codes.astype(np.int64), tuple(str(n) for n in names)


def _features(X: Any, source: str) -> np.ndarray:
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{source}: the features must be numbers ({exc})") from exc
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise DataError(f"{source}: the features must form a table (rows x columns); got shape {arr.shape}")
    bad = np.argwhere(~np.isfinite(arr))
    if bad.size:
        r, c = (int(v) for v in bad[0])
        raise DataError(f"{source}: feature column {c} of row {r} is {arr[r, c]} (nan/inf); clean the data first")
    return arr


def _read_csv(path: Path, label: str | None) -> Dataset:
    try:
        with path.open(newline="") as fh:
            rows = [row for row in csv.reader(fh) if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if len(rows) < 2:
        raise DataError(f"{path}: expected a header line and at least one row of data; got {len(rows)} line(s)")
    header = [h.strip() for h in rows[0]]
    if label is None:
        found = [i for i, h in enumerate(header) if h.lower() in LABEL_NAMES]
        if not found:
            raise DataError(
                f"{path}: no label column: none of the columns {header} is named one of {list(LABEL_NAMES)}; "
                "name it with --label COLUMN"
            )
        col = found[0]
    elif label in header:
        col = header.index(label)
    else:
        raise DataError(f"{path}: the label column {label!r} is not among the columns {header}")
    width = len(header)
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != width:
            raise DataError(f"{path}, line {n}: {len(row)} fields where the header has {width}")
    feature_cols = [i for i in range(width) if i != col]
    if not feature_cols:
        raise DataError(f"{path}: only the label column {header[col]!r}; there are no features")
    X = np.empty((len(rows) - 1, len(feature_cols)))
    for n, row in enumerate(rows[1:], start=2):
        for j, i in enumerate(feature_cols):
            try:
                X[n - 2, j] = float(row[i])
            except ValueError:
                raise DataError(f"{path}, line {n}: column {header[i]!r} holds {row[i]!r}, not a number") from None
    y, classes = _encode([row[col].strip() for row in rows[1:]], str(path))
    return Dataset(path.stem, _features(X, str(path)), y, classes, tuple(header[i] for i in feature_cols))


def _read_npz(path: Path, label: str | None) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    x_key = next((k for k in ("X", "x", "data", "features") if k in arrays), None)
    y_key = label if label is not None else next((k for k in ("y", "target", "label", "labels") if k in arrays), None)
    if x_key is None:
        raise DataError(f"{path}: no features: expected an array named X (or data); found {sorted(arrays)}")
    if y_key is None or y_key not in arrays:
        what = f"{label!r}" if label is not None else "y (or target, label)"
        raise DataError(f"{path}: no label array {what}; found {sorted(arrays)}")
    X = _features(arrays[x_key], str(path))
    y, classes = _encode(list(arrays[y_key]), str(path))
    if len(y) != len(X):
        raise DataError(f"{path}: {len(X)} rows of features but {len(y)} labels")
    return Dataset(path.stem, X, y, classes, tuple(f"x{i}" for i in range(X.shape[1])))


def load_data(spec: str, *, label: str | None = None) -> Dataset:
    """The dataset named by ``spec``: one of scikit-learn's bundled sets, or a ``.csv`` / ``.npz`` file.

    A CSV file needs a header line; its label column is ``label`` (or one of ``labels``, ``target``, ``class``,
    ``y``, any case) unless ``label`` names it; every other column must hold numbers. An NPZ file holds the
    features as ``X`` (or ``data``) and the labels as ``y`` (or ``target``, ``label``), or as ``label`` names.
    Labels may be numbers or strings. Raises :class:`DataError` naming what is wrong.
    """
    if spec in BUILTIN:
        datasets = _need("sklearn.datasets")
        bunch = getattr(datasets, f"load_{spec}")()
        names = tuple(str(n) for n in bunch.target_names)
        return Dataset(
            spec,
            bunch.data.astype(np.float64),
            bunch.target.astype(np.int64),
            names,
            tuple(str(f) for f in bunch.feature_names),
        )
    path = Path(spec)
    if path.suffix.lower() not in (".csv", ".npz"):
        raise DataError(f"--data must be one of {', '.join(BUILTIN)} or a path ending in .csv or .npz; got {spec!r}")
    if not path.is_file():
        raise DataError(f"cannot read {spec}: no such file")
    return _read_csv(path, label) if path.suffix.lower() == ".csv" else _read_npz(path, label)


def check_dataset(ds: Dataset) -> None:
    """Refuse data that cannot be split and learned from: one class, or a class with fewer than 4 rows."""
    counts = np.bincount(ds.y, minlength=len(ds.classes))
    if len(ds.classes) < 2:
        only = ds.classes[0] if ds.classes else "none"
        raise DataError(f"{ds.name}: a single class ({only!r}, {len(ds.y)} rows): nothing to classify")
    small = int(np.argmin(counts))
    if counts[small] < 4:
        raise DataError(
            f"{ds.name}: class {ds.classes[small]!r} has {int(counts[small])} row(s); each class needs at least "
            "4 to appear in the train, validation and test parts"
        )


def split(ds: Dataset, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the stratified train / validation / test parts (60 / 15 / 25 %)."""
    model_selection = _need("sklearn.model_selection")
    idx = np.arange(len(ds.y))
    n_classes = len(ds.classes)
    n_test = max(n_classes, round(0.25 * len(idx)))
    rest, test = model_selection.train_test_split(idx, test_size=n_test, stratify=ds.y, random_state=seed)
    n_val = max(n_classes, round(0.2 * len(rest)))
    train, val = model_selection.train_test_split(rest, test_size=n_val, stratify=ds.y[rest], random_state=seed)
    return np.sort(train), np.sort(val), np.sort(test)


# ------------------------------------------------------------------------------------------------ training
def _metrics(probs: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    from .calibration import brier_score, expected_calibration_error, negative_log_likelihood

    return (
        negative_log_likelihood(probs, y, eps=NLL_FLOOR),
        expected_calibration_error(probs, y, n_bins=N_BINS),
        brier_score(probs, y),
    )


def _finish(
    name: str,
    logits_val: np.ndarray,
    logits_test: np.ndarray,
    probs_test: np.ndarray,
    y_val: np.ndarray,
    y_test: np.ndarray,
    output_layer: str,
    fit_seconds: float,
    epochs: int,
) -> tuple[LayerResult, np.ndarray]:
    from .calibration import TemperatureScaler

    scaler = TemperatureScaler(output_layer=output_layer).fit(logits_val, y_val)
    scaled = scaler.predict_proba(logits_test)
    nll, ece, brier = _metrics(probs_test, y_test)
    nll_t, ece_t, _ = _metrics(scaled, y_test)
    # the argmax of the probabilities, not of the logits: taylor and spherical do not keep the logits' order
    accuracy = float(np.mean(np.argmax(probs_test, axis=1) == y_test))
    row = LayerResult(
        name,
        accuracy,
        nll,
        nll_t,
        ece,
        ece_t,
        float(scaler.temperature_),
        brier,
        fit_seconds,
        float(np.mean(probs_test == 0.0)),
        epochs,
    )
    return row, scaled


def _logits(model: Any, X: np.ndarray) -> np.ndarray:
    """The model's scores, one column per class (also for two classes, where ``decision_function`` gives one)."""
    out: np.ndarray = model.logits(X)
    return out


def train_layer(
    name: str,
    parts: tuple[np.ndarray, ...],
    n_classes: int,
    config: Config,
    on_epoch: Callable[[], None] = lambda: None,
) -> tuple[LayerResult, np.ndarray, np.ndarray]:
    """Train one :class:`SoftmaxClassifier` with output layer ``name`` epoch by epoch; its row and test
    probabilities before and after temperature scaling."""
    from .calibration import negative_log_likelihood
    from .classifier import SoftmaxClassifier

    X_train, y_train, X_val, y_val, X_test, y_test = parts
    model = SoftmaxClassifier(
        output_layer=name,
        hidden_layer_sizes=config.hidden,
        alpha=config.alpha,
        solver="adam",
        learning_rate_init=config.learning_rate,
        batch_size=config.batch_size,
        random_state=config.seed,
    )
    classes = np.arange(n_classes)
    train_loss: list[float] = []
    val_acc: list[float] = []
    val_nll: list[float] = []
    spent = 0.0
    for _ in range(config.epochs):
        start = time.perf_counter()
        model.partial_fit(X_train, y_train, classes=classes)
        spent += time.perf_counter() - start
        train_loss.append(float(model.loss_))
        val_acc.append(float(np.mean(model.predict(X_val) == y_val)))
        val_nll.append(negative_log_likelihood(model.predict_proba(X_val), y_val, eps=NLL_FLOOR))
        on_epoch()
    probs = model.predict_proba(X_test)
    row, scaled = _finish(
        name, _logits(model, X_val), _logits(model, X_test), probs, y_val, y_test, name, spent, config.epochs
    )
    row.train_loss, row.val_accuracy, row.val_nll = train_loss, val_acc, val_nll
    return row, probs, scaled


def train_baseline(
    parts: tuple[np.ndarray, ...], n_classes: int, config: Config
) -> tuple[LayerResult, np.ndarray, np.ndarray]:
    """scikit-learn's ``LogisticRegression`` with the same L2 penalty, as ``alpha / 2 * ||W||^2`` per row."""
    linear_model = _need("sklearn.linear_model")
    X_train, y_train, X_val, y_val, X_test, y_test = parts
    # LogisticRegression minimises  C * sum_i loss_i + ||W||^2 / 2;  ours is  mean_i loss_i + alpha/2 ||W||^2.
    # With two classes it fits one weight vector w where we fit two, w1 = -w0 = w/2 at the optimum: twice alpha.
    per_row = config.alpha * len(y_train) * (0.5 if n_classes == 2 else 1.0)
    model = linear_model.LogisticRegression(C=1.0 / per_row, max_iter=10_000)
    start = time.perf_counter()
    model.fit(X_train, y_train)
    spent = time.perf_counter() - start

    def scores(X: np.ndarray) -> np.ndarray:
        d = model.decision_function(X)
        return np.stack([np.zeros_like(d), d], axis=1) if d.ndim == 1 else np.asarray(d)

    probs = np.asarray(model.predict_proba(X_test), dtype=np.float64)
    row, scaled = _finish(
        BASELINE, scores(X_val), scores(X_test), probs, y_val, y_test, "softmax", spent, int(np.max(model.n_iter_))
    )
    return row, probs, scaled


def _nothing() -> None:
    pass


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    progress = _need("rich.progress")
    console = _need("rich.console").Console(stderr=True)
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
    try:  # aliases (normalize) become the registry's names
        config.layers = tuple(dict.fromkeys(get_output_layer(n, argument="--layers").name for n in config.layers))
    except ValueError as exc:
        raise DataError(str(exc)) from None
    ds = load_data(config.data, label=config.label)
    check_dataset(ds)
    train, val, test = split(ds, config.seed)
    mean = ds.X[train].mean(axis=0)
    scale = ds.X[train].std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    X = (ds.X - mean) / scale
    parts = (X[train], ds.y[train], X[val], ds.y[val], X[test], ds.y[test])
    n_classes = len(ds.classes)
    rows: list[LayerResult] = []
    probs: Probs = {}
    # Every array here holds a few thousand numbers: the generic code, for every layer alike. The numba kernels
    # would save ~0.3 ms a step for softmax, but compile for ~40 s in the first process after installation.
    with _progress(show_progress) as bar, backend("reference"):
        for name in config.layers:
            on_epoch = functools.partial(bar.advance, bar.add_task(name, total=config.epochs)) if bar else _nothing
            row, p, scaled = train_layer(name, parts, n_classes, config, on_epoch=on_epoch)
            rows.append(row)
            probs[name] = (p, scaled)
        if config.baseline:
            row, p, scaled = train_baseline(parts, n_classes, config)
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
            "validation": len(val),
            "test": len(test),
        },
        "config": {
            "layers": list(config.layers),
            "hidden": list(config.hidden),
            "epochs": config.epochs,
            "seed": config.seed,
            "alpha": config.alpha,
            "learning_rate": config.learning_rate,
            "batch_size": config.batch_size,
            "solver": "adam",
            "ece_bins": N_BINS,
            "nll_floor": NLL_FLOOR,
        },
        "leaderboard": [_jsonable(r) for r in sorted(rows, key=lambda r: (r.nll, r.name))],
    }
    return result, probs, ds.y[test]


def _jsonable(row: LayerResult) -> dict[str, Any]:
    out = dict(row.__dict__)
    for key, value in out.items():
        if isinstance(value, float) and not math.isfinite(value):
            out[key] = str(value)  # JSON has no inf/nan
    return out


# -------------------------------------------------------------------------------------------------- output
HEADER = ("layer", "accuracy", "NLL", "NLL (T)", "ECE", "ECE (T)", "T", "Brier", "fit s", "zeros")


def table_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """The leaderboard as strings, one tuple per row, in :data:`HEADER`'s order."""
    out: list[tuple[str, ...]] = []
    for r in result["leaderboard"]:
        out.append(
            (
                r["name"],
                f"{r['accuracy']:.3f}",
                f"{float(r['nll']):.3f}",
                f"{float(r['nll_scaled']):.3f}",
                f"{r['ece']:.3f}",
                f"{r['ece_scaled']:.3f}",
                f"{r['temperature']:.2f}",
                f"{r['brier']:.3f}",
                f"{r['fit_seconds']:.2f}",
                f"{100 * r['zeros']:.0f}%",
            )
        )
    return out


def markdown_table(result: dict[str, Any]) -> str:
    """The leaderboard as a Markdown table (the README shows one)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(result)]
    return "\n".join(lines)


def _title(result: dict[str, Any]) -> str:
    d, c = result["data"], result["config"]
    hidden = "x".join(str(h) for h in c["hidden"]) or "none (softmax regression)"
    return (
        f"{d['name']}: {d['samples']} rows, {d['features']} features, {len(d['classes'])} classes; "
        f"train/val/test {d['train']}/{d['validation']}/{d['test']}; hidden {hidden}; {c['epochs']} epochs of Adam; "
        f"seed {c['seed']}"
    )


def print_table(result: dict[str, Any], out: Callable[[str], None] = print) -> None:
    """Print the leaderboard as plain aligned text (rich renders it when stdout is a terminal)."""
    rows = table_rows(result)
    try:
        from rich.console import Console
        from rich.table import Table

        # rich squeezes a table wider than the terminal by cutting its numbers short: plain text then
        fancy = out is print and sys.stdout.isatty() and Console().width >= 110
    except ImportError:  # pragma: no cover - rich is in the compare extra
        fancy = False
    if fancy:
        from rich import box

        table = Table(title=_title(result), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for i, h in enumerate(HEADER):
            table.add_column(h, justify="left" if i == 0 else "right", no_wrap=True)
        for row in rows:
            table.add_row(*row)
        Console().print(table)
    else:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADER)]
        out(_title(result))
        out(
            "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(HEADER, widths, strict=True)))
        )
        for row in rows:
            out(
                "  ".join(
                    v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths, strict=True))
                )
            )
    out(
        f"NLL floors probabilities at {NLL_FLOOR:g}; ECE: {N_BINS} equal-width bins; (T): after temperature "
        "scaling fitted on the validation part; all measured on the test part."
    )


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name).strip("_")


def write_outputs(result: dict[str, Any], probs: Probs, y_test: np.ndarray, out_dir: Path) -> list[Path]:
    """Write ``results.json``, the reliability diagrams and the learning curves into ``out_dir``, all or none."""
    _need("matplotlib")
    from matplotlib.figure import Figure

    from .calibration import plot_reliability

    out_dir = out_dir.resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".softmaxkit-compare-", dir=out_dir.parent))
    try:
        names = ["results.json"]
        (tmp / "results.json").write_text(json.dumps(result, indent=1) + "\n")
        temperature = {r["name"]: r["temperature"] for r in result["leaderboard"]}
        for name, (p, scaled) in probs.items():
            title = f"{name} on {result['data']['name']} (test part)"
            curves = {name: p, f"after scaling, T = {temperature[name]:.2f}": scaled}
            fig = plot_reliability(curves, y_test, n_bins=N_BINS, title=title)
            fname = f"reliability_{_slug(name)}.png"
            fig.savefig(tmp / fname, dpi=90)
            names.append(fname)
        fig = Figure(figsize=(11, 4.2), layout="constrained")
        ax_loss, ax_acc = fig.subplots(1, 2)
        for r in result["leaderboard"]:
            if not r["val_accuracy"]:
                continue
            epochs = np.arange(1, len(r["val_accuracy"]) + 1)
            ax_loss.plot(epochs, r["val_nll"], label=r["name"])
            ax_acc.plot(epochs, r["val_accuracy"], label=r["name"])
        ax_loss.set(xlabel="epoch", ylabel="validation NLL", yscale="log", title="validation NLL (p floored 1e-12)")
        ax_acc.set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy")
        ax_acc.legend(fontsize="small")
        fig.savefig(tmp / "learning_curves.png", dpi=90)
        names.append("learning_curves.png")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for fname in names:
            os.replace(tmp / fname, out_dir / fname)
            written.append(out_dir / fname)
        return written
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------- CLI
def _int_list(text: str) -> tuple[int, ...]:
    text = text.strip()
    if text in ("", "0", "none"):
        return ()
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer widths such as 64,64; got {text!r}") from None
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"layer widths must be positive; got {text!r}")
    return values


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = Config()
    parser.add_argument(
        "--data",
        default=d.data,
        help=f"{'|'.join(BUILTIN)} (bundled with scikit-learn) or PATH.csv / PATH.npz (default: digits)",
    )
    parser.add_argument("--label", default=None, help="the label column of a CSV (or array of an NPZ) file")
    parser.add_argument(
        "--layers", default=",".join(d.layers), help=f"comma-separated output layers (default: {','.join(d.layers)})"
    )
    parser.add_argument(
        "--hidden",
        type=_int_list,
        default=d.hidden,
        help="hidden layer widths, e.g. 64,64; 0 or '' for softmax regression (default: 64)",
    )
    parser.add_argument("--epochs", type=_positive, default=d.epochs, help=f"epochs of Adam (default: {d.epochs})")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed of the split and the weights (default: 0)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("compare-results"),
        help="folder for results.json and the PNGs (default: compare-results)",
    )
    parser.add_argument("--no-out", action="store_true", help="write no files")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")


def command(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    layers = tuple(s.strip() for s in args.layers.split(",") if s.strip())
    config = Config(
        data=args.data, label=args.label, layers=layers, hidden=args.hidden, epochs=args.epochs, seed=args.seed
    )
    try:
        if not layers:
            raise DataError("--layers: give at least one output layer")
        result, probs, y_test = run(config, show_progress=not args.json and sys.stderr.isatty())
        written = [] if args.no_out else write_outputs(result, probs, y_test, args.out)
    except DataError as exc:
        print(f"softmaxkit compare: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"softmaxkit compare: {exc}", file=sys.stderr)
        return 1
    if args.json:
        out(json.dumps(result, indent=1))
    else:
        print_table(result, out)
        if written:
            out(f"wrote {len(written)} files to {args.out}/ (results.json, reliability_*.png, learning_curves.png)")
    return 0

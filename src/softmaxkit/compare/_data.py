"""Data for ``softmaxkit compare``: scikit-learn's bundled sets or a CSV / NPZ file, checked, then split."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BUILTIN = ("digits", "iris", "wine", "breast_cancer")
LABEL_NAMES = ("label", "labels", "target", "class", "y")
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


def need(module: str) -> Any:
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
        # opened here, not by np.load: on a damaged archive np.load raises without closing the file it opened
        with path.open("rb") as fh, np.load(fh, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except Exception as exc:  # a damaged archive raises zipfile, zlib, format or OS errors, whichever it hits first
        raise DataError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
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
        if label is not None:
            raise DataError(f"--label names a column of a CSV or NPZ file; {spec} has its labels (got {label!r})")
        datasets = need("sklearn.datasets")
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
            "4, to appear in the test part and in two cross-validation folds"
        )


def split(ds: Dataset, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the stratified training and test parts (75 / 25 %)."""
    model_selection = need("sklearn.model_selection")
    idx = np.arange(len(ds.y))
    n_test = max(len(ds.classes), round(0.25 * len(idx)))
    train, test = model_selection.train_test_split(idx, test_size=n_test, stratify=ds.y, random_state=seed)
    return np.sort(train), np.sort(test)


def folds(y: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified ``(fit, held-out)`` index pairs of ``n_folds``-fold cross-validation over labels ``y``.

    With a class of fewer than ``n_folds`` rows, as many folds as that class has rows (at least 2; see
    :func:`check_dataset`), so that every fold holds every class.
    """
    model_selection = need("sklearn.model_selection")
    k = max(2, min(n_folds, int(np.bincount(y).min())))
    cv = model_selection.StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(np.asarray(a), np.asarray(b)) for a, b in cv.split(np.zeros((len(y), 1)), y)]

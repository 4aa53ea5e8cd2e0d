"""The command line of ``softmaxkit compare``: its options, and the checks made before any work."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from ._data import BUILTIN, DataError
from ._experiment import MAX_SEED, Config, check_config, run
from ._report import check_out, output_names, print_table, write_outputs


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


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, {MAX_SEED}]; got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, {MAX_SEED}]; got {text!r}")
    return value


def _folds(text: str) -> int:
    value = _positive(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2; got {text!r}")
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
    parser.add_argument(
        "--seed", type=_seed, default=d.seed, help=f"seed of the split and the weights, 0 to {MAX_SEED} (default: 0)"
    )
    parser.add_argument(
        "--folds",
        type=_folds,
        default=d.folds,
        help=f"cross-validation folds on the training part, to fit each temperature (default: {d.folds})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("compare-results"),
        help="folder for results.json and the PNGs (default: compare-results)",
    )
    parser.add_argument("--no-out", action="store_true", help="write no files")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")


def command(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    """Run ``softmaxkit compare``: 0 on success, 2 for bad input (checked before any work), 1 for a missing
    optional dependency."""
    layers = tuple(s.strip() for s in args.layers.split(",") if s.strip())
    config = Config(
        data=args.data,
        label=args.label,
        layers=layers,
        hidden=args.hidden,
        epochs=args.epochs,
        seed=args.seed,
        folds=args.folds,
    )
    try:
        config = check_config(config)
        if not args.no_out:
            check_out(args.out, output_names(config.layers, config.baseline))
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

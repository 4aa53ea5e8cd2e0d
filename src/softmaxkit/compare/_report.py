"""The report of ``softmaxkit compare``: the leaderboard as text or Markdown, and the files it writes."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ._data import DataError, need
from ._experiment import BASELINE, N_BINS, NLL_FLOOR, Probs

HEADER = ("layer", "accuracy", "NLL", "NLL (T)", "ECE", "ECE (T)", "T", "T s.e.", "Brier", "fit s", "zeros")


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
                _se(r.get("temperature_se")),
                f"{r['brier']:.3f}",
                f"{r['fit_seconds']:.2f}",
                f"{100 * r['zeros']:.0f}%",
            )
        )
    return out


def _se(value: Any) -> str:
    """A standard error, or ``-`` where there is none."""
    try:
        return f"{float(value):.2f}" if np.isfinite(float(value)) else "-"
    except (TypeError, ValueError):
        return "-"


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
        f"train/test {d['train']}/{d['test']}, T by {d['folds']}-fold cross-validation on train; hidden {hidden}; "
        f"{c['epochs']} epochs of Adam; seed {c['seed']}"
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
        f"NLL floors probabilities at {NLL_FLOOR:g}; ECE: {N_BINS} equal-width bins; (T): after temperature scaling, "
        f"T fitted on the out-of-fold logits of all {result['data']['train']} training rows; T s.e.: its "
        "jackknife standard error over the folds (how reliable T is); all measured on the test part."
    )


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name).strip("_")


def output_names(layers: tuple[str, ...], baseline: bool) -> list[str]:
    """The files :func:`write_outputs` writes for these layers (and the baseline)."""
    rows = [*layers, BASELINE] if baseline else list(layers)
    return ["results.json", *(f"reliability_{_slug(name)}.png" for name in rows), "learning_curves.png"]


def _staging(out_dir: Path) -> Path:
    """Where :func:`write_outputs` stages its files: in ``out_dir`` when it exists, else beside it (the same file
    system either way, so that the final moves are renames)."""
    return out_dir if out_dir.is_dir() else out_dir.parent


def check_out(out_dir: Path, names: list[str]) -> None:
    """Refuse, before any work, an ``--out`` that :func:`write_outputs` could not fill: a file where the folder
    should be, a folder where one of ``names`` should go, or a place where no folder can be made (a read-only or
    missing parent, ``/proc``). Raises :class:`DataError`; leaves nothing behind."""
    out_dir = out_dir.resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"--out {out_dir} is a file, not a folder")
    for name in names:
        if (out_dir / name).exists() and not (out_dir / name).is_file():
            raise DataError(f"--out {out_dir} holds {name} that is not a file (a folder?); remove it or choose another")
    anchor = _staging(out_dir)
    while not anchor.exists():
        anchor = anchor.parent
    if not anchor.is_dir():
        raise DataError(f"--out {out_dir}: {anchor} is a file, not a folder")
    try:  # what write_outputs does first: make its staging folder there; as root, permissions alone lie
        probe = Path(tempfile.mkdtemp(prefix=".softmaxkit-compare-", dir=anchor))
    except OSError as exc:
        raise DataError(f"--out {out_dir}: cannot write in {anchor} ({exc.strerror or exc})") from None
    probe.rmdir()


def write_outputs(result: dict[str, Any], probs: Probs, y_test: np.ndarray, out_dir: Path) -> list[Path]:
    """Write ``results.json``, the reliability diagrams and the learning curves into ``out_dir``, all or none."""
    need("matplotlib")
    from matplotlib.figure import Figure

    from ..calibration import plot_reliability

    out_dir = out_dir.resolve()
    names = output_names(tuple(n for n in probs if n != BASELINE), BASELINE in probs)
    check_out(out_dir, names)
    staging = _staging(out_dir)
    staging.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".softmaxkit-compare-", dir=staging))
    try:
        written_names = ["results.json"]
        (tmp / "results.json").write_text(json.dumps(result, indent=1) + "\n")
        temperature = {r["name"]: r["temperature"] for r in result["leaderboard"]}
        for name, (p, scaled) in probs.items():
            title = f"{name} on {result['data']['name']} (test part)"
            curves = {name: p, f"after scaling, T = {temperature[name]:.2f}": scaled}
            fig = plot_reliability(curves, y_test, n_bins=N_BINS, title=title)
            fname = f"reliability_{_slug(name)}.png"
            fig.savefig(tmp / fname, dpi=90)
            written_names.append(fname)
        fig = Figure(figsize=(11, 4.2), layout="constrained")
        ax_loss, ax_acc = fig.subplots(1, 2)
        for r in result["leaderboard"]:
            if not r["val_accuracy"]:
                continue
            epochs = np.arange(1, len(r["val_accuracy"]) + 1)
            ax_loss.plot(epochs, r["val_nll"], label=r["name"])
            ax_acc.plot(epochs, r["val_accuracy"], label=r["name"])
        ax_loss.set(xlabel="epoch", ylabel="held-out NLL", yscale="log", title="first fold's held-out NLL (p ≥ 1e-12)")
        ax_acc.set(xlabel="epoch", ylabel="held-out accuracy", title="first fold's held-out accuracy")
        ax_acc.legend(fontsize="small")
        fig.savefig(tmp / "learning_curves.png", dpi=90)
        written_names.append("learning_curves.png")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for fname in written_names:
            os.replace(tmp / fname, out_dir / fname)
            written.append(out_dir / fname)
        return written
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

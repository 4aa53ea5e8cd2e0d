"""The reliability diagram (see :mod:`softmaxkit.calibration`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

from ._metrics import ReliabilityCurve, check_n_bins, curve_of, ece_from_curve, probs_and_labels

# --------------------------------------------------------------------------------------------------- plotting


def _as_curve(item: Any, y: Any, n_bins: int, name: str) -> ReliabilityCurve:
    if isinstance(item, ReliabilityCurve):
        return item
    if y is None:
        raise ValueError(f"y is needed to plot the probabilities of {name!r}; got y=None")
    p, labels = probs_and_labels(item, y)
    return curve_of(p, labels, n_bins, "uniform")


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
    n = check_n_bins(n_bins)
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
        ece = ece_from_curve(curve, "l1") if curve.counts.sum() > 0 else math.nan
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

"""Softmax regression: ``SoftmaxClassifier(solver="lbfgs")`` against scikit-learn's ``LogisticRegression``.

Both are fitted on the same standardised data with matched penalties (``alpha = 1 / (C * n)``, twice that for two
classes; see :mod:`softmaxkit.classifier`) and the same tolerance. The script reports each one's training
log-loss, L-BFGS iterations and fit time (the best and the median of several fits, after a warm-up), and writes
``bench_classifier.json`` (``--out DIR``).

    python benchmarks/bench_classifier.py [--repeat 15] [--threads N] [--out benchmarks/results]

``--threads N`` limits BLAS, OpenMP and numba to N threads for both (threadpoolctl); by default each library
uses what it would (on a small machine scikit-learn's BLAS threads can then cost it more than they give).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn import datasets
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

import softmaxkit
from softmaxkit.classifier import SoftmaxClassifier


def _times(fit: Any, repeat: int) -> tuple[float, float]:
    fit()
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fit()
        runs.append(time.perf_counter() - start)
    return min(runs), statistics.median(runs)


def case(name: str, C: float, tol: float, repeat: int) -> dict[str, Any]:
    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    X = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1.0)
    n, k = len(y), len(np.unique(y))
    alpha = (2.0 if k == 2 else 1.0) / (C * n)
    ref = LogisticRegression(C=C, tol=tol, max_iter=10_000)
    ours = SoftmaxClassifier(alpha=alpha, tol=tol, max_iter=10_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_ref = _times(lambda: ref.fit(X, y), repeat)
        t_ours = _times(lambda: ours.fit(X, y), repeat)
    loss_ref = float(log_loss(y, ref.predict_proba(X)))
    loss_ours = float(log_loss(y, ours.predict_proba(X)))
    return {
        "data": name,
        "samples": n,
        "features": X.shape[1],
        "classes": k,
        "C": C,
        "alpha": alpha,
        "tol": tol,
        "log_loss": {"sklearn": loss_ref, "softmaxkit": loss_ours, "difference": loss_ours - loss_ref},
        "iterations": {"sklearn": int(np.max(ref.n_iter_)), "softmaxkit": int(ours.n_iter_)},
        "seconds_best": {"sklearn": t_ref[0], "softmaxkit": t_ours[0]},
        "seconds_median": {"sklearn": t_ref[1], "softmaxkit": t_ours[1]},
        "speedup_median": t_ref[1] / t_ours[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    if args.threads is not None:
        import numba
        from threadpoolctl import threadpool_limits

        numba.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    cases = [
        case("digits", 1.0, 1e-4, args.repeat),
        case("digits", 1.0, 1e-6, args.repeat),
        case("iris", 1.0, 1e-4, args.repeat),
        case("wine", 1.0, 1e-4, args.repeat),
        case("breast_cancer", 1.0, 1e-4, args.repeat),
    ]
    result = {
        "softmaxkit": softmaxkit.__version__,
        "sklearn": sklearn.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": args.threads,
        "cases": cases,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = "bench_classifier.json" if args.threads is None else f"bench_classifier_{args.threads}thread.json"
    (args.out / name).write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"{'data':<14}{'tol':>7}{'log-loss sklearn':>18}{'ours - sklearn':>16}{'iters':>9}"
        f"{'ms sklearn':>12}{'ms ours':>10}{'speed-up':>10}"
    )
    for c in cases:
        print(
            f"{c['data']:<14}{c['tol']:>7.0e}{c['log_loss']['sklearn']:>18.10f}{c['log_loss']['difference']:>16.2e}"
            f"{c['iterations']['sklearn']:>5}/{c['iterations']['softmaxkit']:<3}"
            f"{1e3 * c['seconds_median']['sklearn']:>12.2f}{1e3 * c['seconds_median']['softmaxkit']:>10.2f}"
            f"{c['speedup_median']:>9.2f}x"
        )
    print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()

"""Softmax regression: ``SoftmaxClassifier(solver="lbfgs")`` against scikit-learn's ``LogisticRegression``.

Both are fitted on the same standardised data with matched penalties (``alpha = 1 / (C * n)``, twice that for two
classes; see :mod:`softmaxkit.classifier`) and the same tolerance. The script reports each one's training
log-loss, L-BFGS iterations and fit time (the median and the best of several fits, after a warm-up; the
timer, machine description and JSON are ``benchmarks/_harness.py``'s), and writes ``bench_classifier.json``
(``bench_classifier_<N>thread.json`` with ``--threads N``) into ``--out`` (default ``benchmarks/results``).

    python benchmarks/bench_classifier.py [--repeat 15] [--threads N] [--out DIR]

``--threads N`` limits BLAS, OpenMP and numba to N threads for both (threadpoolctl); by default each library
uses what it would (on a small machine scikit-learn's BLAS threads can then cost it more than they give).
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any

import numpy as np
from sklearn import datasets
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from _harness import add_arguments, describe, machine_info, set_threads, time_call, write_results
from softmaxkit.classifier import SoftmaxClassifier


def case(name: str, C: float, tol: float, repeat: int) -> dict[str, Any]:
    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    X = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1.0)
    n, k = len(y), len(np.unique(y))
    alpha = (2.0 if k == 2 else 1.0) / (C * n)
    ref = LogisticRegression(C=C, tol=tol, max_iter=10_000)
    ours = SoftmaxClassifier(alpha=alpha, tol=tol, max_iter=10_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_ref = time_call(lambda: ref.fit(X, y), repeat=repeat)
        t_ours = time_call(lambda: ours.fit(X, y), repeat=repeat)
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
        "seconds": {"sklearn": t_ref.as_dict(), "softmaxkit": t_ours.as_dict()},
        "speedup_median": t_ref.median / t_ours.median,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_arguments(parser, repeat=15)
    args = parser.parse_args()
    threads = set_threads(args.threads)
    print(describe(machine_info(threads)))
    cases = [
        case("digits", 1.0, 1e-4, args.repeat),
        case("digits", 1.0, 1e-6, args.repeat),
        case("iris", 1.0, 1e-4, args.repeat),
        case("wine", 1.0, 1e-4, args.repeat),
        case("breast_cancer", 1.0, 1e-4, args.repeat),
    ]
    name = "bench_classifier" if args.threads is None else f"bench_classifier_{args.threads}thread"
    path = write_results(name, {"threads_set": args.threads, "cases": cases}, args.out, threads=threads)
    print(
        f"{'data':<14}{'tol':>7}{'log-loss sklearn':>18}{'ours - sklearn':>16}{'iters':>9}"
        f"{'ms sklearn':>12}{'ms ours':>10}{'speed-up':>10}"
    )
    for c in cases:
        print(
            f"{c['data']:<14}{c['tol']:>7.0e}{c['log_loss']['sklearn']:>18.10f}{c['log_loss']['difference']:>16.2e}"
            f"{c['iterations']['sklearn']:>5}/{c['iterations']['softmaxkit']:<3}"
            f"{1e3 * c['seconds']['sklearn']['median_s']:>12.2f}{1e3 * c['seconds']['softmaxkit']['median_s']:>10.2f}"
            f"{c['speedup_median']:>9.2f}x"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""The ``softmaxkit`` command.

``softmaxkit demo`` walks through the questions the project grew from — why softmax, why log-sum-exp, why the
gradient is ``p - y`` — computing every number it prints with the library itself. ``softmaxkit bench`` times
the CPU kernels against torch, SciPy, JAX and NumPy (:mod:`softmaxkit.bench`). ``softmaxkit compare`` trains
the same classifier with every output layer on one dataset and prints a leaderboard of accuracy, likelihood and
calibration (:mod:`softmaxkit.compare`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

import numpy as np

from . import __version__
from .cross_entropy import cross_entropy, cross_entropy_value_and_grad
from .family import normalize
from .softmax import log_softmax, logsumexp, softmax, softmax_jacobian

ANIMALS = ("dog", "cat", "baby", "tiger")
LOGITS = (5.0, 2.0, -1.0, 3.0)


def _vec(values: np.ndarray, fmt: str = ".3f") -> str:
    return "[" + "  ".join(f"{float(v):{fmt}}" for v in values) + "]"


def _section(out: Callable[[str], None], title: str) -> None:
    out("")
    out(title)
    out("-" * len(title))


def demo(out: Callable[[str], None] = print) -> None:
    """Print the worked examples (each number computed by softmaxkit)."""
    z = np.array(LOGITS)
    p = softmax(z)

    _section(out, "1. Softmax turns scores into probabilities")
    out("classes:     " + "  ".join(f"{a:>5}" for a in ANIMALS))
    out(f"logits z   = {_vec(z, '5.1f')}")
    out(f"softmax(z) = {_vec(p, '5.3f')}   (sum = {float(np.sum(p)):.3f})")
    out("p_i = exp(z_i) / sum_j exp(z_j): positive, sums to one, keeps the order of the scores.")
    loss = float(cross_entropy(z[None, :], np.array([0])))
    out(f"cross-entropy if the image is a dog: -log p_dog = {loss:.4f}")
    out(f"cross-entropy if it is a baby:       -log p_baby = {float(cross_entropy(z[None, :], np.array([2]))):.4f}")

    _section(out, "2. Softmax versus standard normalisation x / sum(x)")
    for name, row in (("blurry", np.array([1.0, 2.0])), ("crisp", np.array([10.0, 20.0]))):
        out(
            f"{name:>6} {_vec(row, '4.0f')}:  softmax {_vec(softmax(row), '.6g')}"
            f"   normalise {_vec(normalize(row), '.6g')}"
        )
    out("Normalisation only sees proportions; softmax grows confident as the evidence grows, and accepts")
    out("negative scores, which a network's last layer produces freely.")

    _section(out, "3. Why log-sum-exp: subtract the maximum first")
    big = np.array([1000.0, 1001.0])
    with np.errstate(all="ignore"):
        naive = np.exp(big) / np.sum(np.exp(big))
    out(f"x = {_vec(big, '.0f')}")
    out(f"naive exp(x) / sum(exp(x))   = {_vec(naive, '.6f')}   (exp(1000) overflows to inf: inf/inf)")
    out(f"softmax(x), max subtracted   = {_vec(softmax(big), '.6f')}")
    out(f"logsumexp(x) = max + log(sum(exp(x - max))) = {float(logsumexp(big)):.6f}")
    out(f"log_softmax(x) = (x - max) - log1p(rest)      = {_vec(log_softmax(big), '.6f')}")
    masked = np.array([-np.inf, -np.inf, -np.inf])
    out(
        f"fully masked row {_vec(masked, '.0f')}: softmax {_vec(softmax(masked), '.0f')}, logsumexp "
        f"{float(logsumexp(masked))} (torch and SciPy: softmax nan, logsumexp -inf as here)"
    )

    _section(out, "4. The gradient of cross-entropy is p - y")
    y = np.array([1.0, 0.0, 0.0, 0.0])
    _, grad = cross_entropy_value_and_grad(z[None, :], np.array([0]))
    out(f"p - y for 'dog'            = {_vec(p - y, '+.3f')}")
    out(f"cross_entropy gradient     = {_vec(grad[0], '+.3f')}")
    wrong = np.array([-10.0, 10.0])
    pw = softmax(wrong)
    _, gw = cross_entropy_value_and_grad(wrong[None, :], np.array([0]))
    mse_grad = softmax_jacobian(wrong) @ (2.0 * (pw - np.array([1.0, 0.0])))
    out(f"confidently wrong z = {_vec(wrong, '.0f')}, true class 0, p = {_vec(pw, '.2e')}")
    out(f"  cross-entropy gradient            = {_vec(gw[0], '+.3e')}   (full-size correction)")
    out(f"  squared error on p, its gradient  = {_vec(mse_grad, '+.3e')}   (vanishes when saturated)")

    _section(out, "5. The derivative of softmax is a matrix, not p(1 - p)")
    jac = softmax_jacobian(z)
    out("d p_i / d z_j = p_i (delta_ij - p_j):  diag(p) - p p^T")
    for a, row in zip(ANIMALS, jac, strict=True):
        out(f"  {a:>5} {_vec(row, '+.4f')}")
    out(f"p(1 - p) is only the diagonal: {_vec(p * (1 - p), '.4f')}; each row sums to 0.")

    _section(out, "6. Temperature: softmax(z / T)")
    for t in (0.5, 1.0, 2.0, 5.0, 100.0):
        out(f"T = {t:5.1f}: {_vec(softmax(z, temperature=t), '.3f')}")
    out("T -> 0 tends to the argmax (one-hot); T -> infinity to the uniform distribution.")


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``softmaxkit`` command and its subcommands (the documentation renders it)."""
    return _parsers()[0]


def _parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The command's parser, and its ``bench`` subparser (which reports ``--threads`` errors)."""
    parser = argparse.ArgumentParser(
        prog="softmaxkit",
        description="The softmax output layer and its losses: exact, documented, array-API generic.",
    )
    parser.add_argument("--version", action="version", version=f"softmaxkit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("demo", help="walk through why softmax, why log-sum-exp and why p - y, with real numbers")
    from . import bench, compare

    compare.add_arguments(
        commands.add_parser(
            "compare",
            help="train one classifier per output layer on the same data; leaderboard of accuracy, NLL, calibration",
        )
    )
    bench_parser = commands.add_parser(
        "bench", help="time the CPU kernels against torch, SciPy, JAX and NumPy; JSON + PNG"
    )
    bench.add_arguments(bench_parser)
    return parser, bench_parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``softmaxkit`` command with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    from . import bench, compare

    parser, bench_parser = _parsers()
    args = parser.parse_args(argv)
    threads = getattr(args, "threads", None) if args.command == "bench" else None
    if threads is not None:  # checked before any work: numba would raise deep inside the run
        most = _max_threads()
        if not 1 <= threads <= most:
            bench_parser.error(f"argument --threads: expected a positive integer of at most {most}; got {threads}")
    try:
        if args.command == "demo":
            demo()
            return 0
        if args.command == "compare":
            return compare.command(args)
        if args.command == "bench":
            return bench.command(args)
    except BrokenPipeError:
        # the reader went away (``softmaxkit demo | head``): stop quietly, as a Unix filter does, and keep
        # Python from complaining again when it flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a filter cut short
    parser.print_help(sys.stderr)
    return 2


def _max_threads() -> int:
    """The most threads ``softmaxkit bench`` can use: numba's ``NUMBA_NUM_THREADS`` (the logical CPUs unless set)."""
    try:
        import numba
    except ImportError:
        return os.cpu_count() or 1
    return int(getattr(numba.config, "NUMBA_NUM_THREADS", os.cpu_count() or 1))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

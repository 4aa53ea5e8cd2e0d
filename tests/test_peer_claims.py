"""Every claim the package makes about what torch, SciPy or JAX give, checked against the installed peer.

Each claim of the docs (docstrings, README, the demo) is one entry of ``CLAIMS``: the text it is made in, and a
check that runs the peer. ``test_every_peer_claim_is_registered`` scans ``src/`` and ``README.md`` for sentences
that name a peer's result, so that a new claim without a check fails the suite (issue 16: the demo and the README
said torch and SciPy give nan for the logsumexp of a fully masked row; they give -inf).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
NEG_INF_ROW = [-np.inf, -np.inf, -np.inf]


def _torch():
    return pytest.importorskip("torch")


def _all_nan(a) -> bool:
    return bool(np.all(np.isnan(np.asarray(a))))


# --------------------------------------------------------------------------------------------- the checks
def softmax_of_masked_row_is_nan() -> None:
    torch, scipy_special = _torch(), pytest.importorskip("scipy.special")
    jax = pytest.importorskip("jax")
    assert _all_nan(torch.softmax(torch.tensor(NEG_INF_ROW), -1))
    assert _all_nan(scipy_special.softmax(np.array(NEG_INF_ROW)))
    assert _all_nan(jax.nn.softmax(jax.numpy.array(NEG_INF_ROW)))


def log_softmax_of_masked_row_is_nan() -> None:
    torch, scipy_special = _torch(), pytest.importorskip("scipy.special")
    jax = pytest.importorskip("jax")
    assert _all_nan(torch.log_softmax(torch.tensor(NEG_INF_ROW), -1))
    assert _all_nan(scipy_special.log_softmax(np.array(NEG_INF_ROW)))
    assert _all_nan(jax.nn.log_softmax(jax.numpy.array(NEG_INF_ROW)))


def logsumexp_of_masked_row_is_minus_inf() -> None:
    torch, scipy_special = _torch(), pytest.importorskip("scipy.special")
    jax = pytest.importorskip("jax")
    assert float(torch.logsumexp(torch.tensor(NEG_INF_ROW), -1)) == -np.inf
    assert float(scipy_special.logsumexp(np.array(NEG_INF_ROW))) == -np.inf
    assert float(jax.nn.logsumexp(jax.numpy.array(NEG_INF_ROW))) == -np.inf


def gradients_at_masked_row_are_nan() -> None:
    """softmax, log_softmax and logsumexp: torch's and JAX's gradients at a fully masked row are nan."""
    torch = _torch()
    jax = pytest.importorskip("jax")
    g = [1.0, 2.0, 3.0]
    for f_torch, f_jax in (
        (lambda t: torch.softmax(t, -1), jax.nn.softmax),
        (lambda t: torch.log_softmax(t, -1), jax.nn.log_softmax),
        (lambda t: torch.logsumexp(t, -1, keepdim=True), lambda a: jax.nn.logsumexp(a, keepdims=True)),
    ):
        t = torch.tensor(NEG_INF_ROW, requires_grad=True)
        out = f_torch(t)
        out.backward(torch.tensor(g[: out.numel()]))
        assert _all_nan(t.grad)
        a = jax.numpy.array(NEG_INF_ROW)
        out_j, vjp = jax.vjp(f_jax, a)
        assert _all_nan(vjp(jax.numpy.array(g[: out_j.size]))[0])


def cross_entropy_mean_over_nothing_is_nan() -> None:
    """torch's mean cross-entropy over no labels (all ignored, or zero total weight) is nan."""
    torch = _torch()
    f = torch.nn.functional.cross_entropy
    assert _all_nan(f(torch.zeros(2, 3), torch.tensor([-100, -100])).detach())
    assert _all_nan(f(torch.zeros(2, 3), torch.tensor([0, 0]), weight=torch.tensor([0.0, 1.0, 1.0])).detach())
    assert _all_nan(torch.nn.CrossEntropyLoss()(torch.zeros(2, 3), torch.tensor([-100, -100])).detach())


def cross_entropy_probabilities_with_ignore_index_raise() -> None:
    torch = _torch()
    with pytest.raises(RuntimeError, match="ignore_index"):
        torch.nn.functional.cross_entropy(torch.zeros(2, 3), torch.full((2, 3), 1 / 3), ignore_index=1)


def cross_entropy_accepts_negative_weight_and_bad_labels_raise_index_error() -> None:
    torch = _torch()
    f = torch.nn.functional.cross_entropy
    value = f(torch.zeros(2, 3), torch.tensor([0, 1]), weight=torch.tensor([-1.0, 1.0, 1.0]))
    assert value.shape == ()
    with pytest.raises(IndexError):
        f(torch.zeros(2, 3), torch.tensor([0, 5]))


def torch_shares_nan_and_inf_rows() -> None:
    """torch: a nan row gives nan; +inf gives nan for softmax/log_softmax/cross-entropy and +inf for logsumexp."""
    torch = _torch()
    for bad in (np.nan, np.inf):
        row = torch.tensor([[0.0, bad, 1.0]])
        assert _all_nan(torch.softmax(row, -1))
        assert _all_nan(torch.log_softmax(row, -1))
        assert _all_nan(torch.nn.functional.cross_entropy(row, torch.tensor([0])))
    assert float(torch.logsumexp(torch.tensor([0.0, np.inf]), -1)) == np.inf
    assert _all_nan(torch.logsumexp(torch.tensor([0.0, np.nan]), -1))


def scipy_logsumexp_of_negative_sum_is_nan() -> None:
    scipy_special = pytest.importorskip("scipy.special")
    assert _all_nan(scipy_special.logsumexp(np.array([1.0, 2.0]), b=np.array([1.0, -1.0])))


def torch_softmax_of_masked_row_is_nan() -> None:
    torch = _torch()
    assert _all_nan(torch.softmax(torch.tensor(NEG_INF_ROW), -1))
    assert _all_nan(torch.log_softmax(torch.tensor(NEG_INF_ROW), -1))


# (file relative to the repository, a piece of the line that makes the claim) -> the check
CLAIMS: dict[tuple[str, str], Callable[[], None]] = {
    ("README.md", "# torch, scipy and JAX say nan"): softmax_of_masked_row_is_nan,
    ("README.md", "softmax 0 and log_softmax `-inf` (torch, SciPy, JAX: `nan`)"): log_softmax_of_masked_row_is_nan,
    ("README.md", "logsumexp `-inf` (as torch, SciPy, JAX)"): logsumexp_of_masked_row_is_minus_inf,
    ("README.md", "every derivative 0 (torch, JAX: `nan`)"): gradients_at_masked_row_are_nan,
    ("README.md", "log_softmax `-inf` and zero gradients (torch: `nan`)"): gradients_at_masked_row_are_nan,
    ("README.md", "a mean over no labels is 0 (torch: `nan`)"): cross_entropy_mean_over_nothing_is_nan,
    ("README.md", "torch.tensor([-100, -100]))   # torch: nan"): cross_entropy_mean_over_nothing_is_nan,
    ("README.md", "loss 0 and gradient 0 (torch: `nan`, pytorch#70348)"): cross_entropy_mean_over_nothing_is_nan,
    ("src/softmaxkit/cli.py", "(torch and SciPy: softmax nan, logsumexp -inf as here)"): (
        logsumexp_of_masked_row_is_minus_inf
    ),
    ("src/softmaxkit/softmax.py", "rather than the ``nan`` of torch, SciPy and JAX"): log_softmax_of_masked_row_is_nan,
    ("src/softmaxkit/softmax.py", "rather than the ``nan`` of torch and JAX"): gradients_at_masked_row_are_nan,
    ("src/softmaxkit/softmax.py", "as in torch, SciPy and"): logsumexp_of_masked_row_is_minus_inf,
    ("src/softmaxkit/softmax.py", "all zeros (torch, SciPy, JAX: nan)"): softmax_of_masked_row_is_nan,
    ("src/softmaxkit/softmax.py", "all ``-inf`` (torch, SciPy, JAX: nan)"): log_softmax_of_masked_row_is_nan,
    ("src/softmaxkit/softmax.py", "``-inf`` (0), as torch, SciPy, JAX"): logsumexp_of_masked_row_is_minus_inf,
    ("src/softmaxkit/softmax.py", "``nan``, as SciPy; ask for the sign"): scipy_logsumexp_of_negative_sum_is_nan,
    ("src/softmaxkit/softmax.py", "zeros (torch and JAX: nan)"): gradients_at_masked_row_are_nan,
    ("src/softmaxkit/cross_entropy.py", "0 (zeros); torch gives nan"): cross_entropy_mean_over_nothing_is_nan,
    ("src/softmaxkit/cross_entropy.py", "(torch raises likewise)"): cross_entropy_probabilities_with_ignore_index_raise,
    ("src/softmaxkit/cross_entropy.py", "has no meaning for probability targets (as in torch)"): (
        cross_entropy_probabilities_with_ignore_index_raise
    ),
    ("src/softmaxkit/jax/_cross_entropy.py", "has no meaning for probability targets (as in torch)"): (
        cross_entropy_probabilities_with_ignore_index_raise
    ),
    ("src/softmaxkit/_loss.py", "(our policy, where torch gives nan)"): cross_entropy_mean_over_nothing_is_nan,
    ("src/softmaxkit/family/hinge.py", "0 (zeros); torch gives nan"): cross_entropy_mean_over_nothing_is_nan,
    ("src/softmaxkit/family/sigmoid.py", "0 (zeros); torch gives nan"): cross_entropy_mean_over_nothing_is_nan,
    ("src/softmaxkit/family/softplus_normalize.py", "0 (zeros); torch gives nan"): (
        cross_entropy_mean_over_nothing_is_nan
    ),
    ("src/softmaxkit/torch/functional.py", "zeros (zeros); torch: nan"): torch_softmax_of_masked_row_is_nan,
    ("src/softmaxkit/torch/functional.py", "``-inf`` (zeros); torch: nan"): torch_softmax_of_masked_row_is_nan,
    ("src/softmaxkit/torch/functional.py", "it is 0 (torch: nan)"): gradients_at_masked_row_are_nan,
    ("src/softmaxkit/torch/functional.py", "0 (zeros); torch: nan"): cross_entropy_mean_over_nothing_is_nan,
    ("src/softmaxkit/torch/functional.py", "Shared with torch: a ``nan`` in a row"): torch_shares_nan_and_inf_rows,
    ("src/softmaxkit/torch/functional.py", "``-inf``, gradient 0                ``-inf``, gradient nan"): (
        gradients_at_masked_row_are_nan
    ),
    ("src/softmaxkit/torch/functional.py", "``ValueError`` naming the value     ``IndexError``"): (
        cross_entropy_accepts_negative_weight_and_bad_labels_raise_index_error
    ),
    ("src/softmaxkit/torch/functional.py", "``ValueError`` unless -100          ``RuntimeError``"): (
        cross_entropy_probabilities_with_ignore_index_raise
    ),
    ("src/softmaxkit/torch/modules.py", "torch.tensor([-100, -100]))  # torch: nan"): (
        cross_entropy_mean_over_nothing_is_nan
    ),
    ("src/softmaxkit/torch/linear.py", "0 (zeros); torch: nan"): cross_entropy_mean_over_nothing_is_nan,
    (
        "src/softmaxkit/torch/_cpu.py",
        "(torch: ``nan``); a result holding a ``nan``",
    ): torch_softmax_of_masked_row_is_nan,
}

# A sentence that states a peer's result: "torch gives", "(torch: nan)", "torch and JAX: nan", "as SciPy", ...
_PEER = r"(?:torch|SciPy|scipy|JAX)"
CLAIM_PATTERN = re.compile(
    rf"{_PEER}(?:(?:,| and) {_PEER})*(?::| give| gives| say| says| agree| raises)\W|\bas (?:in )?{_PEER}\b"
)

RESULT_PATTERN = re.compile(r"\b(?:nan|inf|raises?|[A-Z][a-z]+Error)\b|meaning")


def _claim_lines() -> list[tuple[str, str]]:
    files = [ROOT / "README.md", *sorted((ROOT / "src" / "softmaxkit").rglob("*.py"))]
    found = []
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            if CLAIM_PATTERN.search(line) and RESULT_PATTERN.search(line) and not line.startswith("#"):
                found.append((str(path.relative_to(ROOT)), line.strip()))
    return found


def test_every_peer_claim_is_registered():
    """Each line of src/ and README.md that states what torch, SciPy or JAX give has a check in CLAIMS."""
    missing = [
        (name, line) for name, line in _claim_lines() if not any(name == f and piece in line for (f, piece) in CLAIMS)
    ]
    assert not missing, "claims about peers without a check in tests/test_peer_claims.py:\n" + "\n".join(
        f"{name}: {line}" for name, line in missing
    )


@pytest.mark.parametrize(("where", "piece"), sorted(CLAIMS), ids=[f"{f}:{p[:30]}" for f, p in sorted(CLAIMS)])
def test_peer_claim_holds(where, piece):
    """The claim is still in the file (no stale entry) and the installed peer does what it says."""
    text = (ROOT / where).read_text(encoding="utf-8")
    assert piece in text, f"{where} no longer says {piece!r}: remove or update the entry"
    with np.errstate(all="ignore"):  # the peers' own RuntimeWarnings on the special rows
        CLAIMS[where, piece]()


def test_demo_says_logsumexp_of_masked_row_is_minus_inf(capsys):
    """Issue 16: the demo said torch and SciPy give nan for the logsumexp of a fully masked row."""
    from softmaxkit.cli import main

    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    line = next(s for s in out.splitlines() if "fully masked row" in s)
    assert "logsumexp -inf" in line
    assert "logsumexp nan" not in line.replace("softmax nan", "")

"""The dispatcher (softmaxkit._backend): names, where a name comes from, what ``auto`` picks, what a name refuses.

The engines' results are the contract suite's business (tests/contract/); here only the choice is tested, through
the public ``backend=`` / ``softmaxkit.backend`` / ``SOFTMAXKIT_BACKEND`` and :func:`softmaxkit._backend.choose`.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator

import numpy as np
import pytest
import torch

import softmaxkit as sk
import softmaxkit.torch as skt
from softmaxkit import _backend

NAMES = "'auto', 'reference', 'numpy', 'numba', 'triton', 'torch'"


@contextlib.contextmanager
def no_context() -> Iterator[None]:
    """As if no ``with softmaxkit.backend(...)`` were active (a test runner's fixture may have one)."""
    token = _backend._CHOICE.set(None)
    try:
        yield
    finally:
        _backend._CHOICE.reset(token)


def test_backend_names_are_checked_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.zeros((2, 3))
    message = f"backend must be one of {NAMES}; got 'fast'"
    for call in (
        lambda: sk.softmax(x, backend="fast"),
        lambda: sk.log_softmax(x, backend="fast"),
        lambda: sk.logsumexp(x, b=np.ones(3), backend="fast"),
        lambda: sk.cross_entropy(x, np.array([0, 1]), backend="fast"),
        lambda: sk.cross_entropy_value_and_grad(x, np.array([0, 1]), backend="fast"),
        lambda: sk.backend("fast").__enter__(),
    ):
        with pytest.raises(ValueError, match=message):
            call()
    monkeypatch.setenv("SOFTMAXKIT_BACKEND", "gpu")
    with sk.backend("auto"):
        assert _backend.resolve() == "auto"  # the context manager comes first
    with no_context(), pytest.raises(ValueError, match="environment variable SOFTMAXKIT_BACKEND must be"):
        sk.softmax(x)
    with no_context(), pytest.raises(ValueError, match="environment variable SOFTMAXKIT_BACKEND must be"):
        skt.softmax(torch.zeros(2, 3), dim=1)


def test_precedence_keyword_context_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOFTMAXKIT_BACKEND", "reference")
    with no_context():
        assert _backend.resolve() == "reference"
        with sk.backend("auto"):
            assert _backend.resolve() == "auto"
            assert _backend.resolve("numba") == "numba"
            with sk.backend("triton"):
                assert _backend.resolve() == "triton"
            assert _backend.resolve() == "auto"
        assert _backend.resolve() == "reference"
        monkeypatch.delenv("SOFTMAXKIT_BACKEND")
        assert _backend.resolve() == "auto"


@pytest.mark.parametrize("lookup", ["os.environ's dict", "os.environ.get"])
def test_the_environment_is_read_on_every_call(monkeypatch: pytest.MonkeyPatch, lookup: str) -> None:
    """resolve reads os.environ's own dict (one lookup), or os.environ.get where there is none; either sees a
    change made after the import, through os.environ, and a value that is not ASCII is decoded and named."""
    if lookup == "os.environ.get":
        monkeypatch.setattr(_backend, "_ENV_DATA", None)
    monkeypatch.delenv("SOFTMAXKIT_BACKEND", raising=False)
    with no_context():
        assert _backend.resolve() == "auto"
        os.environ["SOFTMAXKIT_BACKEND"] = "numpy"
        try:
            assert _backend.resolve() == "numpy"
            os.environ["SOFTMAXKIT_BACKEND"] = "numbä"
            with pytest.raises(ValueError, match=r"environment variable SOFTMAXKIT_BACKEND must be .*numbä"):
                _backend.resolve()
        finally:
            del os.environ["SOFTMAXKIT_BACKEND"]
        assert _backend.resolve() == "auto"


def test_environment_variable_names_an_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOFTMAXKIT_BACKEND", "numpy")
    with no_context():
        assert _backend.choose("softmax", np.zeros((2, 3))) == "numpy"
        with pytest.raises(ValueError, match=r"backend='numpy' cannot run softmaxkit\.softmax on this input"):
            sk.softmax(torch.zeros(2, 3))


def _auto(op: str, data: object, **kw: object) -> str:
    with no_context():
        return _backend.choose(op, data, "auto", **kw)  # type: ignore[arg-type]


def test_auto_picks_by_type_dtype_and_size() -> None:
    small = np.zeros((2, 3), dtype=np.float32)
    large = np.zeros((64, _backend.THRESHOLD // 64))
    for op in ("softmax", "log_softmax", "logsumexp", "cross_entropy"):
        assert _auto(op, small) == "numpy"
        assert _auto(op, large) == "numba"
        assert _auto(op, torch.zeros(64, 64)) == "reference"  # a CPU tensor on the array front
        assert _auto(op, np.zeros((2, 3), dtype=np.int64)) == "reference"  # (the fronts pass the compute dtype)
    for op in ("softmax", "log_softmax", "logsumexp", "cross_entropy"):  # CPU float tensors: numba at every size
        assert _auto(op, torch.zeros(2, 3), front="torch") == "numba"
        assert _auto(op, torch.zeros(64, 64, dtype=torch.float64), front="torch") == "numba"
    assert _auto("softmax", torch.zeros(2, 3, dtype=torch.float16), front="torch") == "torch"
    assert _auto("softmax", torch.zeros(64, 64), front="torch", last=False) == "torch"
    # options an engine lacks send the call elsewhere
    assert _auto("logsumexp", large, options=("b",)) == "reference"
    assert _auto("logsumexp", small, options=("b",)) == "reference"
    assert _auto("cross_entropy", small, options=("weight",)) == "reference"
    assert _auto("cross_entropy", large, options=("weight", "probabilities")) == "numba"
    assert _auto("softmax", small, options=("temperature",)) == "numpy"


def test_without_numba_auto_falls_back_and_numba_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_backend, "installed", lambda package: package != "numba")  # as if numba were missing
    x = np.ones((64, _backend.THRESHOLD // 64))
    assert _auto("softmax", x) == "numpy"
    with no_context():
        np.testing.assert_allclose(sk.softmax(x), 1.0 / x.shape[1])
    with pytest.raises(ImportError, match="backend='numba' needs numba"):
        sk.softmax(x, backend="numba")


REFUSALS = [
    (lambda: sk.logsumexp(np.ones(3), b=np.ones(3), backend="numba"), "it does not implement logsumexp's b"),
    (
        lambda: sk.cross_entropy(np.ones((2, 3)), np.array([0, 1]), weight=np.ones(3), backend="numpy"),
        "cross_entropy's weight",
    ),
    (lambda: sk.softmax(torch.zeros(2, 3), backend="numba"), "float32/float64 numpy.ndarrays, not torch.Tensor"),
    (lambda: sk.softmax(np.zeros(3), backend="triton"), "it takes torch tensors, not numpy.ndarray of float64"),
    (
        lambda: sk.softmax(torch.zeros(3, dtype=torch.float64), backend="triton"),
        "float32/float16/bfloat16 tensors; got torch.float64",
    ),
    (lambda: sk.softmax(torch.zeros(3), temperature=2.0, backend="triton"), "softmax's temperature"),
    (
        lambda: sk.cross_entropy(torch.zeros(2, 3, dtype=torch.float64), torch.tensor([0, 1]), backend="triton"),
        "float32/float16/bfloat16 tensors; got torch.float64",
    ),
    (lambda: sk.softmax(np.zeros(3), backend="torch"), "it runs softmaxkit.torch's functions"),
]


@pytest.mark.parametrize(("call", "reason"), REFUSALS)
def test_a_named_engine_that_cannot_run_the_call_says_why(call: object, reason: str) -> None:
    with pytest.raises(
        ValueError, match=r"backend='\w+' cannot run softmaxkit\.\w+ on this input: .*" + re.escape(reason)
    ):
        call()  # type: ignore[operator]


def test_the_torch_front_refuses_what_its_engines_cannot_run() -> None:
    x = torch.zeros(4, 5, 3)
    with sk.backend("triton"), pytest.raises(ValueError, match="needs the class axis last"):
        skt.softmax(x, dim=1)
    with sk.backend("triton"), pytest.raises(ValueError, match=r"got torch\.float64"):
        skt.log_softmax(x.double(), dim=2)
    with sk.backend("numba"), pytest.raises(ValueError, match="it needs the class dimension last"):
        skt.softmax(x, dim=1)
    with sk.backend("numba"), pytest.raises(ValueError, match=r"got one of torch\.float16 on cpu"):
        skt.softmax(x.half(), dim=2)
    with sk.backend("numpy"), pytest.raises(ValueError, match="runs softmaxkit's array functions only"):
        skt.logsumexp(x, 1)
    with sk.backend("reference"):  # the torch front's reference is its torch code
        torch.testing.assert_close(skt.softmax(x, dim=1), torch.softmax(x, 1))
    with sk.backend("torch"):
        torch.testing.assert_close(skt.softmax(x, dim=2), torch.softmax(x, 2))


@pytest.mark.parametrize("engine", ["numpy", "numba", "reference"])
def test_ties_beside_a_fully_masked_row_keep_their_count(engine: str) -> None:
    # The numpy engine counted ties over the whole array: a fully masked row (no maximum) beside a row with two
    # tied maxima made the total look like one maximum per row, and logsumexp of [0, 0] came out 0, not log 2.
    x = np.zeros((2, 3))
    keep = np.array([[False, False, False], [True, True, False]])
    lse = sk.logsumexp(x, where=keep, backend=engine)
    np.testing.assert_array_equal(lse, [-np.inf, np.log(2.0)])
    np.testing.assert_allclose(sk.softmax(x, where=keep, backend=engine)[1], [0.5, 0.5, 0.0], rtol=1e-15)
    np.testing.assert_allclose(sk.log_softmax(x, where=keep, backend=engine)[1, :2], -np.log(2.0), rtol=1e-15)
    z = np.array([[-np.inf] * 3, [0.0, 0.0, -np.inf]])
    loss = sk.cross_entropy(z, np.array([0, 0]), reduction="none", backend=engine)
    np.testing.assert_allclose(loss, [np.inf, np.log(2.0)], rtol=1e-15)

"""linear_cross_entropy under torch.func (issue 15, item 2): ``grad``, ``vmap`` (per-sample gradients) and
``jacrev`` equal autodiff through the naive ``hidden @ W.T + b`` and torch's ``F.cross_entropy``, float64, with
the options that change the path (the gradients fused into the forward for ``mean``/``sum``, recomputed for
``none`` and vocabulary chunks). Forward-mode AD (``jacfwd``) is not supported: the Function has no ``jvp``.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, jacfwd, jacrev, vmap

import softmaxkit.torch as skt
from conftest import tol

F64 = tol("float64")

# torch 2.13's own warning: the first forward-mode AD loads its jvp decompositions through torch.jit.script
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, **F64)


def _problem(n: int = 7, d: int = 4, v: int = 9, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(v, d, generator=g, dtype=torch.float64)
    b = torch.randn(v, generator=g, dtype=torch.float64)
    y = torch.randint(0, v, (n,), generator=g)
    y[2] = -100
    cw = torch.rand(v, generator=g, dtype=torch.float64) + 0.5
    return h, w, b, y, cw


def _ours(h, w, b, y, cw=None, **kw):
    return skt.linear_cross_entropy(h, w, y, bias=b, weight=cw, **kw)


def _naive(h, w, b, y, cw=None, chunk_size=None, **kw):
    return F.cross_entropy(h @ w.T + b, y, weight=cw, **kw)


OPTIONS = [
    pytest.param({}, id="mean"),
    pytest.param({"reduction": "sum", "label_smoothing": 0.1}, id="sum-smooth"),
    pytest.param({"reduction": "none"}, id="none"),
    pytest.param({"chunk_size": (3, 4)}, id="vocab-chunks"),
    pytest.param({"weighted": True, "label_smoothing": 0.2}, id="weighted"),
]


def _split(kw: dict) -> tuple[dict, bool]:
    kw = dict(kw)
    return kw, bool(kw.pop("weighted", False))


@pytest.mark.parametrize("kw", OPTIONS)
def test_grad_equals_naive_autodiff(kw):
    kw, weighted = _split(kw)
    h, w, b, y, cw = _problem()
    cw = cw if weighted else None

    def total(f, *a):
        return f(*a, y, cw, **kw).sum()

    got = grad(functools.partial(total, _ours), argnums=(0, 1, 2))(h, w, b)
    want = grad(functools.partial(total, _naive), argnums=(0, 1, 2))(h, w, b)
    for a, c in zip(got, want, strict=True):
        _close(a, c)


@pytest.mark.parametrize("kw", OPTIONS)
def test_jacrev_equals_naive_autodiff(kw):
    kw, weighted = _split(kw)
    h, w, b, y, cw = _problem()
    cw = cw if weighted else None
    got = jacrev(functools.partial(_ours, y=y, cw=cw, **kw), argnums=(0, 1, 2))(h, w, b)
    want = jacrev(functools.partial(_naive, y=y, cw=cw, **kw), argnums=(0, 1, 2))(h, w, b)
    for a, c in zip(got, want, strict=True):
        _close(a, c)


@pytest.mark.parametrize("kw", OPTIONS)
def test_per_sample_gradients_equal_naive_autodiff(kw):
    """vmap(grad): each sample is a sequence of tokens; the projection's gradient per sample."""
    kw, weighted = _split(kw)
    _, w, b, _, cw = _problem()
    g = torch.Generator().manual_seed(1)
    hs = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    ys = torch.randint(0, 9, (3, 5), generator=g)
    ys[1, 0] = -100
    cw = cw if weighted else None

    def total(f, h, w, b, y):
        return f(h, w, b, y, cw, **kw).sum()

    dims = (0, None, None, 0)
    got = vmap(grad(functools.partial(total, _ours), argnums=(1, 2)), in_dims=dims)(hs, w, b, ys)
    want = vmap(grad(functools.partial(total, _naive), argnums=(1, 2)), in_dims=dims)(hs, w, b, ys)
    for a, c in zip(got, want, strict=True):
        _close(a, c)
    _close(vmap(functools.partial(_ours, **kw), in_dims=(0, None, None, 0))(hs, w, b, ys),
           vmap(functools.partial(_naive, **kw), in_dims=(0, None, None, 0))(hs, w, b, ys))  # fmt: skip


def test_out_of_range_label_under_vmap_raises_naming_it():
    """The label check reads values on the host: under vmap it runs in the vmap rule, on the plain batch."""
    _, w, b, _, _ = _problem()
    hs = torch.randn(2, 3, 4, dtype=torch.float64)
    ys = torch.tensor([[0, 1, 2], [3, 40, 5]])
    with pytest.raises(ValueError, match="class index 40 at position"):
        vmap(_ours, in_dims=(0, None, None, 0))(hs, w, b, ys)


def test_second_derivative_raises():
    h, w, b, y, _ = _problem()
    with pytest.raises(RuntimeError, match="differentiable once"):
        grad(lambda a: grad(lambda c: _ours(c, w, b, y, reduction="none").sum())(a).sum())(h)


def test_forward_mode_is_not_supported():
    h, w, b, y, _ = _problem()
    with pytest.raises(RuntimeError, match="jvp"):
        jacfwd(lambda a: _ours(a, w, b, y))(h)

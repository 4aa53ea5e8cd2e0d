"""softmaxkit.torch's CPU path (issue 15): the numba kernels behind combined-style Functions, at every size.

Each case is held against the torch code of the same front (``backend("torch")``, the oracle of the torch
front), special rows included, for the forward, the backward kernels (an upstream gradient with strides of 0
included), the double backward, forward-mode AD, and the small-softmax path on ``torch.softmax``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

import softmaxkit as sk
import softmaxkit.torch as skt
from conftest import tol

INF, NAN = math.inf, math.nan
MAPS = ("softmax", "log_softmax", "logsumexp")


def _call(op: str, x: torch.Tensor) -> torch.Tensor:
    return skt.logsumexp(x, -1) if op == "logsumexp" else getattr(skt, op)(x, dim=-1)


def _special(shape: tuple[int, int], dtype: torch.dtype, seed: int) -> torch.Tensor:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 3
    x[0, 1] = -INF  # a masked entry
    x[1] = -INF  # a fully masked row
    x[2, 3] = NAN
    x[3, 0] = INF
    return x


def _forward_backward(op: str, x: torch.Tensor, grad: torch.Tensor | None, engine: str) -> tuple[torch.Tensor, ...]:
    a = x.clone().requires_grad_(True)
    with sk.backend(engine):
        out = _call(op, a)
    (out.sum() if grad is None else (out * grad).sum()).backward()  # None: an upstream gradient of stride 0
    assert a.grad is not None
    return out.detach(), a.grad


# 700 x 100: a small call on torch's threads (kernels.numba._team.GRAIN); 520 x 2048: the general entry's
@pytest.mark.parametrize("shape", [(6, 5), (8, 40), (700, 100), (520, 2048)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("op", MAPS)
@pytest.mark.parametrize("upstream", ["dense", "stride0"])
def test_cpu_path_equals_the_torch_code_on_special_rows(op, dtype, shape, upstream):
    x = _special(shape, dtype, 1)
    grad = None
    if upstream == "dense":
        g_shape = shape[:-1] if op == "logsumexp" else shape
        grad = torch.randn(g_shape, generator=torch.Generator().manual_seed(2), dtype=dtype)
    kw = tol(str(dtype).removeprefix("torch."))
    for engine in ("auto", "numba"):
        got = _forward_backward(op, x, grad, engine)
        want = _forward_backward(op, x, grad, "torch")
        torch.testing.assert_close(got[0], want[0], equal_nan=True, **kw)
        # the gradient's row sum (of C terms) is rounded in the dtype by the torch code, in float64 by the kernels
        atol = kw["atol"] * math.sqrt(shape[-1])
        torch.testing.assert_close(got[1], want[1], equal_nan=True, rtol=kw["rtol"], atol=atol)
        g = got[1]
        assert (g[1] == 0).all()  # the fully masked row: gradient 0, not nan
        if op != "softmax" or x.numel() >= sk._backend.TORCH_SOFTMAX:
            assert g[0, 1] == 0  # the masked entry
        assert torch.isnan(g[2]).all()
        assert torch.isnan(g[3]).all()


def test_small_softmax_is_torchs_own_where_its_values_are_ours():
    x = torch.randn(4, 6, requires_grad=True)
    assert type(skt.softmax(x, dim=1).grad_fn).__name__ == type(torch.softmax(x, 1).grad_fn).__name__
    masked = torch.tensor([[0.0, 1.0], [-INF, -INF]], requires_grad=True)
    p = skt.softmax(masked, dim=1)  # torch's nan row is computed again by the torch code: zeros
    torch.testing.assert_close(p.detach(), torch.tensor([[1 / (1 + math.e), math.e / (1 + math.e)], [0.0, 0.0]]))
    (p * torch.tensor([[1.0, 2.0], [3.0, 4.0]])).sum().backward()
    assert masked.grad is not None
    assert (masked.grad[1] == 0).all()


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # torch's, first make_dual
@pytest.mark.parametrize("shape", [(300, 100), (2, 3, 1000)], ids=str)
def test_softmax_below_torch_softmax_is_torchs_own_and_a_nan_row_anywhere_is_recomputed(shape):
    """Below TORCH_SOFTMAX elements softmax is torch's (its grad_fn); a fully masked row anywhere, whose torch
    output is nan throughout, is found by the first-column check and computed again (zeros, gradient 0), while
    a row with +inf or nan stays nan; inside a forward-mode AD level the kernel path runs instead."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    assert x.numel() < sk._backend.TORCH_SOFTMAX
    a = x.clone().requires_grad_(True)
    assert type(skt.softmax(a, dim=-1).grad_fn).__name__ == type(torch.softmax(a, -1).grad_fn).__name__
    rows = x.view(-1, shape[-1])
    rows[-2] = -INF  # fully masked, far from the first row
    rows[1, 7] = INF
    rows[3, -1] = float("nan")
    b = x.clone().requires_grad_(True)
    p = skt.softmax(b, dim=-1)
    assert type(p.grad_fn).__name__ != type(torch.softmax(b, -1).grad_fn).__name__  # computed again
    p_rows = p.detach().view(-1, shape[-1])
    assert (p_rows[-2] == 0).all()
    assert p_rows[1].isnan().all()
    assert p_rows[3].isnan().all()
    want = torch.softmax(x, -1).view(-1, shape[-1])
    keep = [i for i in range(rows.shape[0]) if i not in (1, 3, rows.shape[0] - 2)]
    torch.testing.assert_close(p_rows[keep], want[keep], **tol("float32"))
    p.sum().backward()
    assert b.grad is not None
    assert (b.grad.view(-1, shape[-1])[-2] == 0).all()
    with fwAD.dual_level():
        dual = skt.softmax(fwAD.make_dual(a, torch.ones_like(a)), dim=-1)
        assert type(dual.grad_fn).__name__ != type(torch.softmax(a, -1).grad_fn).__name__


def test_cpu_path_reads_and_returns_the_tensors_memory(monkeypatch):
    from softmaxkit.kernels import numba as kernels

    seen: list[tuple[str, np.ndarray]] = []
    made: list[np.ndarray] = []
    for name in ("softmax", "small_softmax"):  # the general entry, and the one of small calls
        real = getattr(kernels, name)

        def spy(z: np.ndarray, *args: object, real: Any = real, name: str = name) -> np.ndarray:
            seen.append((name, z))
            made.append(real(z, *args))
            return made[-1]

        monkeypatch.setattr(kernels, name, spy)
    for shape, entry in [((64, 100), "small_softmax"), ((600, 1000), "softmax")]:  # under kernels.SMALL, over
        x = torch.randn(shape)
        out = skt.log_softmax(x, dim=1)
        assert [name for name, _ in seen] == [entry]
        assert np.shares_memory(seen.pop()[1], x.numpy())
        assert np.shares_memory(made.pop(), out.numpy())


@pytest.mark.parametrize("op", [*MAPS, "cross_entropy"])
def test_cpu_path_gradcheck_and_gradgradcheck(op):
    x = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 6, -100, 2, 3])
    with sk.backend("numba"):
        f = (
            (lambda a: skt.cross_entropy(a, t, label_smoothing=0.1))
            if op == "cross_entropy"
            else (lambda a: _call(op, a))
        )
        # the first backward of CE gets the kernel's gradient, a second one the torch code's: equal to rounding
        assert gradcheck(f, (x,), nondet_tol=1e-14)
        assert gradgradcheck(f, (x,))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_handed_gradient_times_the_upstream_one(reduction):
    x = torch.randn(6, 50, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([1, 49, -100, 0, 7, 7])
    w = torch.linspace(0.5, 2.0, 50)
    results = []
    for engine in ("auto", "torch"):
        a = x.clone().requires_grad_(True)
        with sk.backend(engine):
            loss = skt.cross_entropy(a, t, weight=w, reduction=reduction)
        up = torch.linspace(0.5, 3.0, 6) if reduction == "none" else torch.tensor(2.5)
        (first,) = torch.autograd.grad(loss, a, up, retain_graph=True)
        (second,) = torch.autograd.grad(loss, a, up)  # the handed gradient is gone: recomputed, equal
        results.append((loss.detach(), first, second))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, **tol("float32"))
    torch.testing.assert_close(results[0][0], F.cross_entropy(x, t, weight=w, reduction=reduction), **tol("float32"))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # torch's, first make_dual
@pytest.mark.parametrize("op", [*MAPS, "cross_entropy"])
def test_forward_mode_ad_on_the_cpu_path(op):
    x = torch.randn(4, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    v = torch.randn(4, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    t = torch.tensor([0, 8, 3, 3])
    theirs = {
        "softmax": lambda a: torch.softmax(a, -1),
        "log_softmax": lambda a: torch.log_softmax(a, -1),
        "logsumexp": lambda a: torch.logsumexp(a, -1),
        "cross_entropy": lambda a: F.cross_entropy(a, t),
    }[op]
    ours = (lambda a: skt.cross_entropy(a, t)) if op == "cross_entropy" else (lambda a: _call(op, a))
    with fwAD.dual_level():
        got = fwAD.unpack_dual(ours(fwAD.make_dual(x, v))).tangent
    jac = torch.autograd.functional.jacobian(theirs, x)
    want = (jac * v).sum(dim=tuple(range(jac.ndim - v.ndim, jac.ndim)))
    torch.testing.assert_close(got, want, **tol("float64"))


def test_label_check_names_the_value_on_the_cpu_path():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"class index 4 at position \(2,\), outside \[0, 4\)"):
        skt.cross_entropy(x, torch.tensor([0, -100, 4]))
    with pytest.raises(ValueError, match=r"class index -100 at position \(1,\)"):
        skt.cross_entropy(x, torch.tensor([0, -100, 3]), ignore_index=-1)
    skt.cross_entropy(x, torch.tensor([0, -1, 3]), ignore_index=-1)  # ignored: accepted


def test_backward_kernels_cache_stamp_follows_the_sources():
    """numba caches a kernel by its own file: _backward.py's stamp of _rows.py and _vmath.py (which it compiles
    in) must follow theirs, as _kernels.py's does (tests/test_kernels_cpu.py checks that one)."""
    from softmaxkit.kernels.numba import _runtime

    assert _runtime.load_extra("_backward").SOURCES_SHA == _runtime.load().SOURCES_SHA


# ------------------------------------------------------------------------- small cross-entropy (one kernel call)
def _labelled(shape: tuple[int, int], dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits with special rows where the shape has room, and labels with ignored rows and a masked target."""
    n, k = shape
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=dtype) * 4
    t = torch.randint(0, k, (n,), generator=gen)
    if n >= 6 and k >= 4:
        x[0, 1] = -INF
        t[0] = 1  # the target's logit is -inf: an infinite loss, a finite gradient
        x[1] = -INF
        t[1] = -100  # a fully masked row, ignored
        x[2, 3] = NAN  # a nan row: nan
        x[3, 0] = INF  # a +inf row: nan
        x[4] = x[4] + 1e6  # a large shift
        t[5] = -100
    return x, t


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_small_cross_entropy_is_the_general_path_bit_for_bit(dtype, reduction, monkeypatch):
    """The default call of a small CE takes the one-kernel path (kernels.numba.small_cross_entropy), and gives the
    general path's loss and gradient exactly (that path taken with all-one class weights, the same arithmetic),
    and torch's code's within the dtype's tolerance; narrow rows (<= 32 classes), longer ones with a last
    window (100, 2148), a row of one class, and calls large enough for torch's threads (700 x 100, 70 x 1000)."""
    from softmaxkit.kernels import numba as kernels

    calls = []
    real = kernels.small_cross_entropy
    monkeypatch.setattr(kernels, "small_cross_entropy", lambda *a: calls.append(1) or real(*a))
    team = kernels.torch_team()
    for shape in [(1, 1), (6, 5), (128, 10), (40, 32), (7, 33), (40, 100), (9, 2148), (700, 100), (70, 1000)]:
        if shape[0] * shape[1] > 2**16 and team is not None:  # the last two: on torch's threads, where there are two
            assert team.pieces(shape[0] * shape[1]) == min(2, torch.get_num_threads())
        x, t = _labelled(shape, dtype, seed=shape[0] + shape[1])
        got = []
        for how in ("small", "general", "torch"):
            a = x.clone().requires_grad_(True)
            with sk.backend("torch" if how == "torch" else "auto"):
                w = torch.ones(shape[1], dtype=dtype) if how == "general" else None
                before = len(calls)
                loss = skt.cross_entropy(a, t, weight=w, reduction=reduction)
                assert len(calls) - before == (1 if how == "small" else 0), (shape, how)
            loss.backward()
            got.append((loss.detach(), a.grad))
        what = f"{shape} {reduction} {dtype}"
        for mine, general in zip(got[0], got[1], strict=True):
            assert mine.dtype == general.dtype == dtype, what
            np.testing.assert_array_equal(mine.numpy(), general.numpy(), err_msg=what)
        for mine, oracle in zip(got[0], got[2], strict=True):
            torch.testing.assert_close(mine, oracle, equal_nan=True, **tol(str(dtype).split(".")[1]), msg=what)


def test_small_cross_entropy_special_calls():
    """Every label ignored: a mean of 0 and zero gradients; a label out of range is named (the small path finds
    it and leaves the call to the general path's check); no gradient wanted: the loss alone."""
    x = torch.randn(4, 7, requires_grad=True)
    loss = skt.cross_entropy(x, torch.full((4,), -100))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(x.grad, torch.zeros(4, 7))
    with pytest.raises(ValueError, match=r"class index 7 at position \(3,\), outside \[0, 7\)"):
        skt.cross_entropy(x, torch.tensor([0, 1, -100, 7]))
    with pytest.raises(ValueError, match=r"class index -3 at position \(0,\)"):
        skt.cross_entropy(x.detach(), torch.tensor([-3, 1, 2, 7]))
    t = torch.tensor([0, 6, -100, 2])
    with torch.no_grad():
        plain = skt.cross_entropy(x, t, reduction="sum")
    torch.testing.assert_close(plain, F.cross_entropy(x, t, reduction="sum"), **tol("float32"))
    assert plain.grad_fn is None


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # torch's, first make_dual
def test_small_cross_entropy_gradcheck_gradgradcheck_and_forward_mode(monkeypatch):
    """The small path's Function (the general one, its result computed before the call) differentiates twice
    and in forward mode as the general path does."""
    from softmaxkit.kernels import numba as kernels

    calls = []
    real = kernels.small_cross_entropy
    monkeypatch.setattr(kernels, "small_cross_entropy", lambda *a: calls.append(1) or real(*a))
    x = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 6, -100, 2, 3])
    for reduction in ("mean", "sum"):
        f = lambda a, r=reduction: skt.cross_entropy(a, t, reduction=r)  # noqa: E731
        assert gradcheck(f, (x,), nondet_tol=1e-14)
        assert gradgradcheck(f, (x,))
    assert calls
    v = torch.randn(5, 7, dtype=torch.float64)
    with fwAD.dual_level():
        got = fwAD.unpack_dual(skt.cross_entropy(fwAD.make_dual(x.detach(), v), t)).tangent
    want = torch.func.jvp(lambda a: F.cross_entropy(a, t), (x.detach(),), (v,))[1]
    torch.testing.assert_close(got, want, **tol("float64"))

"""linear_cross_entropy and LinearCrossEntropyLoss: the loss of ``hidden @ W.T + b`` without the N x V logits.

Values and gradients (hidden, weight, bias) against :func:`softmaxkit.torch.cross_entropy` of the full logits,
with every option and chunkings that straddle the block edges; ``reduction="none"`` with a non-uniform upstream
gradient (Liger-Kernel #678 / #968); all-ignored batches; float16/bfloat16 accumulated in float32 (the p = 0.999
case of Liger-Kernel PR #1329); and a dispatch-level check that no tensor of N x V elements is ever created.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import softmaxkit.torch as skt
from conftest import CONFIDENT_LOGITS, assert_true_class_gradient, tol
from softmaxkit.torch import _blocks

INF, NAN = math.inf, math.nan
F64 = tol("float64")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _problem(n: int = 37, d: int = 8, v: int = 23, seed: int = 0, dtype: torch.dtype = torch.float64):
    g = _gen(seed)
    h = torch.randn(n, d, generator=g, dtype=dtype)
    w = torch.randn(v, d, generator=g, dtype=dtype)
    b = torch.randn(v, generator=g, dtype=dtype)
    y = torch.randint(0, v, (n,), generator=g)
    y[3 % n] = y[10 % n] = -100
    cw = torch.rand(v, generator=g, dtype=dtype) + 0.1
    return h, w, b, y, cw


def _both(h, w, b, y, upstream=None, **kw):
    """(loss, grad h, grad w, grad b) of ours and of cross_entropy on the full logits."""
    chunk = kw.pop("chunk_size", None)
    out = []
    for fn in ("reference", "ours"):
        hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
        bb = None if b is None else b.clone().requires_grad_()
        if fn == "ours":
            loss = skt.linear_cross_entropy(hh, ww, y, bias=bb, chunk_size=chunk, **kw)
        else:
            loss = skt.cross_entropy(hh @ ww.T + (0 if bb is None else bb), y, **kw)
        g = torch.ones_like(loss) if upstream is None else upstream
        inputs = (hh, ww) if bb is None else (hh, ww, bb)
        out.append((loss, *torch.autograd.grad((loss * g).sum(), inputs)))
    return out


OPTIONS = [
    pytest.param({}, id="plain"),
    pytest.param({"label_smoothing": 0.2}, id="smooth"),
    pytest.param({"weight": "cw", "label_smoothing": 0.1}, id="weight-smooth"),
    pytest.param({"z_loss": 1e-2, "softcap": 2.0}, id="z-cap"),
    pytest.param({"weight": "cw", "label_smoothing": 0.1, "z_loss": 1e-2, "softcap": 3.0}, id="all"),
]
# default (whole vocabulary, one token chunk), token chunks only, and token x vocabulary blocks whose edges
# fall inside the data (37 tokens, 23 entries), down to single entries
CHUNKS = [None, 5, (5, 7), (64, 4), (1, 1), (37, 23)]


@pytest.mark.parametrize("chunk", CHUNKS, ids=str)
@pytest.mark.parametrize("opts", OPTIONS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_cross_entropy_of_the_full_logits(reduction, opts, chunk):
    h, w, b, y, cw = _problem()
    kw = {k: (cw if v == "cw" else v) for k, v in opts.items()}
    upstream = torch.randn(37, generator=_gen(1), dtype=torch.float64) if reduction == "none" else None
    ref, ours = _both(h, w, b, y, upstream, reduction=reduction, chunk_size=chunk, **kw)
    for r, o in zip(ref, ours, strict=True):
        torch.testing.assert_close(o, r, **F64)


def test_reduction_none_backward_weights_each_row():
    # Liger-Kernel #678 / #968: gradients precomputed in the forward were scaled by a single upstream value,
    # which is wrong when every row has its own; here rows get weights of both signs, zeros among them
    h, w, b, y, _ = _problem(seed=3)
    upstream = torch.linspace(-2.0, 3.0, 37, dtype=torch.float64)
    upstream[::5] = 0.0
    ref, ours = _both(h, w, b, y, upstream, reduction="none", label_smoothing=0.1)
    for r, o in zip(ref, ours, strict=True):
        torch.testing.assert_close(o, r, **F64)


def test_matches_torch_linear_cross_entropy():
    h, w, b, y, cw = _problem(seed=4)
    for options in (None, torch.nn.LinearCrossEntropyOptions()):
        hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
        theirs = F.linear_cross_entropy(hh, ww, y, linear_bias=b, weight=cw, options=options)
        theirs.backward()
        h2, w2 = h.clone().requires_grad_(), w.clone().requires_grad_()
        ours = skt.linear_cross_entropy(h2, w2, y, bias=b, weight=cw)
        ours.backward()
        torch.testing.assert_close(ours, theirs, **F64)
        torch.testing.assert_close(h2.grad, hh.grad, **F64)
        torch.testing.assert_close(w2.grad, ww.grad, **F64)


def test_module_is_torchs_module():
    torch.manual_seed(0)
    ours = skt.LinearCrossEntropyLoss(8, 23, bias=True, dtype=torch.float64, label_smoothing=0.1)
    theirs = torch.nn.LinearCrossEntropyLoss(8, 23, bias=True, dtype=torch.float64, label_smoothing=0.1)
    assert isinstance(ours, torch.nn.LinearCrossEntropyLoss)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    theirs.load_state_dict(ours.state_dict())
    h, _, _, y, _ = _problem(seed=5)
    lo, lt = ours(h, y), theirs(h, y)
    lo.backward()
    lt.backward()
    torch.testing.assert_close(lo, lt, **F64)
    torch.testing.assert_close(ours.linear.weight.grad, theirs.linear.weight.grad, **F64)
    torch.testing.assert_close(ours.linear.bias.grad, theirs.linear.bias.grad, **F64)
    with pytest.raises(ValueError, match=r"out_features=\(2,\): K-dimensional heads are not supported"):
        skt.LinearCrossEntropyLoss(8, 23, out_features=(2,))


def test_leading_dimensions_are_flattened():
    h, w, b, y, _ = _problem(n=12, seed=6)
    hb, yb = h.reshape(3, 4, 8), y.reshape(3, 4)
    per_row = skt.linear_cross_entropy(hb, w, yb, bias=b, reduction="none")
    assert per_row.shape == (3, 4)
    torch.testing.assert_close(per_row, skt.cross_entropy(h @ w.T + b, y, reduction="none").reshape(3, 4), **F64)


def test_non_contiguous_inputs():
    h, w, b, y, _ = _problem(seed=17)
    ht, wt = h.t().contiguous().t(), w.t().contiguous().t()  # the same values, column-major
    assert not ht.clone().is_contiguous()  # (clone keeps the strides)
    assert not wt.clone().is_contiguous()
    for chunk in (None, (6, 5)):
        ref, strided = _both(ht, wt, b, y, chunk_size=chunk)
        for r, o in zip(ref, strided, strict=True):
            torch.testing.assert_close(o, r, **F64)


# ----------------------------------------------------------------------------------------- special values
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_all_labels_ignored(reduction):
    h, w, b, _, _ = _problem(n=6, seed=7)
    y = torch.full((6,), -100)
    _, ours = _both(h, w, b, y, reduction=reduction, label_smoothing=0.1, z_loss=0.1)
    assert torch.equal(ours[0], torch.zeros_like(ours[0]))  # torch: nan for mean
    for g in ours[1:]:
        assert torch.equal(g, torch.zeros_like(g))


def test_ignored_rows_are_never_read():
    h, w, b, y, _ = _problem(seed=8)
    h[3] = NAN  # y[3] is ignored
    _, ours = _both(h, w, b, y, label_smoothing=0.1)
    for t in ours:
        assert torch.isfinite(t).all()


def test_nan_row_poisons_its_loss():
    h, w, b, y, _ = _problem(seed=9)
    h[4] = NAN
    per_row = skt.linear_cross_entropy(h, w, y, bias=b, reduction="none")
    assert math.isnan(per_row[4].item())
    assert torch.isfinite(torch.cat([per_row[:4], per_row[5:]])).all()


def test_minus_inf_bias_masks_a_vocabulary_entry():
    # padded vocabulary: bias -inf gives probability 0, gradient 0, and the loss of the remaining entries
    h, w, b, y, _ = _problem(seed=10)
    y[y == 22] = 0
    b[22] = -INF
    for chunk in (None, (7, 5)):
        ref, ours = _both(h, w, b, y, chunk_size=chunk)
        for r, o in zip(ref, ours, strict=True):
            torch.testing.assert_close(o, r, **F64)
        assert torch.equal(ours[2][22], torch.zeros(8, dtype=torch.float64))


# ------------------------------------------------------------------------------------------ memory, autograd
class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor any aten operation creates."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("chunk", [None, (16, 32)])
def test_logits_never_exist_in_full(chunk, reduction, monkeypatch):
    n, d, v = 192, 4, 160  # N x V = 30720 logits; inputs and their gradients hold at most N x D = 768
    monkeypatch.setattr(_blocks, "BLOCK_ELEMENTS", 4096)  # the default plan, scaled down with the problem
    h, w, b, y, _ = _problem(n, d, v, seed=11, dtype=torch.float32)
    h, w = h.requires_grad_(), w.requires_grad_()
    with _LargestTensor() as probe:
        loss = skt.linear_cross_entropy(h, w, y, bias=b, label_smoothing=0.1, softcap=5.0, chunk_size=chunk)
        loss.sum().backward()
    plan = _blocks.make_plan(chunk, n, v)
    block = plan.rows * plan.cols
    assert probe.largest <= max(block, n * d, v * d)
    assert probe.largest < n * v


SHAPES_FROM_THE_GOAL_UP = [
    (n, d, v)
    for n in (4096, 8192, 65536)
    for v in (32768, 65536, 262144, 2**20)
    for d in (512, 1024, 2048)
    if d <= 512 * n // 4096  # a wider model against few tokens: the gradients alone exceed naive / 16
]


@pytest.mark.parametrize("softcap", [None, 5.0])
@pytest.mark.parametrize(("n", "d", "v"), SHAPES_FROM_THE_GOAL_UP)
def test_default_block_keeps_the_step_16x_below_naive_memory(n, d, v, softcap):
    # issue 13: a fixed 2^24-logit block left N=4096, D=512, V=32768 at 15.6x (measured). Naive holds the
    # logits, their log-softmax and their gradient (3 N V floats); both hold the gradients of H and W.
    buffers = 1 if softcap is None else 2
    plan = _blocks.make_plan(None, n, v, d, buffers)
    assert plan.cols == v
    grads = (n + v) * d
    naive = 3 * n * v + grads
    ours = buffers * plan.rows * plan.cols + grads + 8 * n  # + a few floats per row
    assert naive / ours >= 16


def test_second_backward_through_precomputed_gradients_raises():
    h, w, _, y, _ = _problem(seed=12)
    h = h.requires_grad_()
    loss = skt.linear_cross_entropy(h, w, y)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="a second backward through the same graph"):
        loss.backward()
    per_row = skt.linear_cross_entropy(h, w, y, reduction="none")  # recomputes: a retained graph is fine
    per_row.sum().backward(retain_graph=True)
    per_row.sum().backward()


def test_no_grad_computes_the_loss_only():
    h, w, b, y, cw = _problem(seed=13)
    with torch.no_grad():
        for chunk in (None, (4, 6)):
            loss = skt.linear_cross_entropy(h, w, y, bias=b, weight=cw, label_smoothing=0.1, chunk_size=chunk)
            ref = skt.cross_entropy(h @ w.T + b, y, weight=cw, label_smoothing=0.1)
            torch.testing.assert_close(loss, ref, **F64)


def test_only_the_gradients_asked_for():
    h, w, b, y, _ = _problem(seed=14)
    w = w.requires_grad_()
    skt.linear_cross_entropy(h, w, y, bias=b).backward()
    assert w.grad is not None
    ref = w.detach().clone().requires_grad_()
    skt.cross_entropy(h @ ref.T + b, y).backward()
    torch.testing.assert_close(w.grad, ref.grad, **F64)


# ----------------------------------------------------------------------------------------- half precision
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_accumulates_in_float32(dtype):
    h, w, b, y, _ = _problem(n=40, d=16, v=50, seed=15, dtype=torch.float32)
    h, w, b = (t.to(dtype) for t in (h, w, b))
    hh, ww, bb = (t.clone().requires_grad_() for t in (h, w, b))
    loss = skt.linear_cross_entropy(hh, ww, y, bias=bb, label_smoothing=0.1, chunk_size=(8, 16))
    loss.backward()
    assert loss.dtype == hh.grad.dtype == ww.grad.dtype == bb.grad.dtype == dtype
    ref, _ = _both(*(t.double() for t in (h, w, b)), y, label_smoothing=0.1)
    rtol, atol = tol(str(dtype).split(".")[-1]).values()
    torch.testing.assert_close(loss.double(), ref[0], rtol=rtol, atol=atol)
    for got, exact in zip((hh.grad, ww.grad, bb.grad), ref[1:], strict=True):
        # one rounding of an accurate float32 result: relative to the largest entry
        assert (got.double() - exact).abs().max() <= 2 * rtol * exact.abs().max()


def test_bfloat16_true_class_gradient_at_p_0999():
    # Liger-Kernel PR #1329: p - 1 with p rounded to bf16 first lost the whole gradient (100% error at 0.999)
    h = torch.tensor([[1.0]], dtype=torch.bfloat16, requires_grad=True)
    w = torch.tensor([[z] for z in CONFIDENT_LOGITS], dtype=torch.bfloat16, requires_grad=True)
    skt.linear_cross_entropy(h, w, torch.tensor([0])).backward()
    assert_true_class_gradient(w.grad[0, 0], w)


# -------------------------------------------------------------------------------------------------- errors
def test_errors_name_argument_and_value():
    h, w, b, y, _ = _problem(n=4, seed=16)
    with pytest.raises(ValueError, match=r"class index 23 at position \(2,\), outside \[0, 23\)"):
        skt.linear_cross_entropy(h, w, torch.tensor([0, 1, 23, 2]))
    with pytest.raises(TypeError, match="hidden and linear_weight must share one floating dtype"):
        skt.linear_cross_entropy(h.float(), w, y)
    with pytest.raises(ValueError, match=r"hidden must have shape \(\.\.\., D\) with D = linear_weight.shape\[1\] = 8"):
        skt.linear_cross_entropy(h[:, :3], w, y)
    with pytest.raises(ValueError, match=r"target must have hidden's shape without its last dimension, \(4,\)"):
        skt.linear_cross_entropy(h, w, y[:3])
    with pytest.raises(ValueError, match=r"bias must be a tensor of shape \(23,\)"):
        skt.linear_cross_entropy(h, w, y, bias=b[:3])
    with pytest.raises(ValueError, match=r"chunk_size must hold positive sizes; got \(0, 4\)"):
        skt.linear_cross_entropy(h, w, y, chunk_size=(0, 4))
    with pytest.raises(ValueError, match="label_smoothing must lie in"):
        skt.linear_cross_entropy(h, w, y, label_smoothing=2.0)

"""The Triton linear cross-entropy kernels compiled for a CUDA device (collected only where CUDA is available).

Values and gradients against float64 autograd of ``F.linear`` + :func:`softmaxkit.torch.cross_entropy`, every
option, both backward modes, float32 / float16 / bfloat16, shapes that are not multiples of the tiles; the
deterministic mode bit for bit; gradient filtering; and the memory: the step's peak above the inputs stays far
below one ``N x V`` float32 buffer.
"""

from __future__ import annotations

import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA device", allow_module_level=True)
pytest.importorskip("triton")

import torch.nn.functional as F

import softmaxkit.torch as skt
from conftest import tol
from softmaxkit.torch import _triton

CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def _ieee_float32():
    """float32 products in IEEE float32 (the kernels follow ``torch.backends.cuda.matmul.allow_tf32``)."""
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = old


def _problem(n, d, v, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g)
    w = torch.randn(v, d, generator=g) * 2 / d**0.5
    b = torch.randn(v, generator=g)
    y = torch.randint(0, v, (n,), generator=g)
    if n > 2:
        y[:: max(n // 5, 2)] = -100
    cw = torch.rand(v, generator=g) + 0.1
    return *(t.to(CUDA, dtype) for t in (h, w, b)), y.to(CUDA), cw.to(CUDA)


def _run(fn, h, w, b, y, upstream=None, **kw):
    hh, ww, bb = (t.clone().requires_grad_() for t in (h, w, b))
    loss = fn(hh, ww, y, bb, **kw)
    g = torch.ones_like(loss) if upstream is None else upstream.to(loss.dtype)
    return (loss.detach(), *torch.autograd.grad((loss * g).sum(), (hh, ww, bb)))


def _ours(h, w, y, b, **kw):
    assert _triton.use_triton(h, w)
    return skt.linear_cross_entropy(h, w, y, bias=b, **kw)


def _oracle(h, w, y, b, **kw):
    kw = {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    kw.pop("deterministic", None)
    kw.pop("grad_threshold", None)
    return skt.cross_entropy(F.linear(h, w, b), y, **kw)


def _compare(h, w, b, y, upstream=None, **kw):
    ours = _run(_ours, h, w, b, y, upstream, **kw)
    ref = _run(_oracle, h.double(), w.double(), b.double(), y, upstream, **kw)
    t = tol(h.dtype)
    for o, r in zip(ours, ref, strict=True):
        assert o.dtype == h.dtype
        scale = r.abs().max().clamp_min(1e-30)  # gradients: relative to their largest entry
        torch.testing.assert_close(o.double() / scale, r / scale, **t)
    return ours


OPTIONS = [
    pytest.param({}, id="plain"),
    pytest.param({"weight": "cw", "label_smoothing": 0.1}, id="weight-smooth"),
    pytest.param({"z_loss": 1e-3, "softcap": 10.0}, id="z-cap"),
    pytest.param({"weight": "cw", "label_smoothing": 0.1, "z_loss": 1e-3, "softcap": 10.0}, id="all"),
]


@pytest.mark.parametrize("deterministic", [False, True], ids=["atomic", "deterministic"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opts", OPTIONS)
def test_float32_matches_float64_autograd(opts, reduction, deterministic):
    h, w, b, y, cw = _problem(301, 200, 1003)
    kw = {k: (cw if v == "cw" else v) for k, v in opts.items()}
    up = torch.randn(301, device=CUDA) if reduction == "none" else None
    _compare(h, w, b, y, up, reduction=reduction, deterministic=deterministic, **kw)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("deterministic", [False, True], ids=["atomic", "deterministic"])
def test_half_precision(dtype, deterministic):
    h, w, b, y, cw = _problem(517, 136, 3001, seed=1, dtype=dtype)
    _compare(h, w, b, y, deterministic=deterministic, weight=cw, label_smoothing=0.1, softcap=20.0)


@pytest.mark.parametrize(("n", "d", "v"), [(1, 16, 1), (7, 24, 130), (129, 64, 257)], ids=str)
def test_small_and_odd_shapes(n, d, v):
    h, w, b, y, cw = _problem(n, d, v, seed=n)
    _compare(h, w, b, y, z_loss=1e-3, weight=cw, label_smoothing=0.05)


def test_deterministic_mode_repeats_bit_for_bit():
    h, w, b, y, _ = _problem(1000, 256, 5000, seed=2, dtype=torch.bfloat16)
    first = _run(_ours, h, w, b, y, deterministic=True)
    for _ in range(3):
        again = _run(_ours, h, w, b, y, deterministic=True)
        assert all(torch.equal(a, c) for a, c in zip(first, again, strict=True))


def test_grad_threshold_drops_only_negligible_tiles():
    h, w, b, y, _ = _problem(256, 64, 1024, seed=3, dtype=torch.bfloat16)
    b[256:] = -60.0  # p ~ e^-60 beyond column 256: every tile there is below any sensible threshold
    y = torch.where(y >= 256, 0, y)
    exact = _run(_ours, h, w, b, y)
    filtered = _run(_ours, h, w, b, y, grad_threshold=2.0**-12)
    assert torch.equal(filtered[0], exact[0])
    assert torch.equal(filtered[2][256:], torch.zeros_like(filtered[2][256:]))
    torch.testing.assert_close(filtered[1], exact[1], **tol(torch.bfloat16))
    torch.testing.assert_close(filtered[2][:256], exact[2][:256], **tol(torch.bfloat16))


def test_peak_memory_is_far_below_the_logits():
    n, d, v = 8192, 256, 65536
    h, w, _, y, _ = _problem(n, d, v, seed=4, dtype=torch.bfloat16)
    h.requires_grad_()
    w.requires_grad_()
    for deterministic in (False, True):
        h.grad = w.grad = None
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        skt.linear_cross_entropy(h, w, y, deterministic=deterministic).backward()
        torch.cuda.synchronize()
        extra = torch.cuda.max_memory_allocated() - base
        # the gradients themselves ((N + V) D bfloat16), the float32 accumulators of grad h (N D floats) and of
        # one vocabulary chunk of grad W (<= 2^25 floats), O(N) row statistics; the float32 logits: 2 GiB
        assert extra < 1.1 * ((n + v) * d * 2 + n * d * 4 + 2**25 * 4) + 2**20, extra
        assert extra < n * v * 4 / 10


def test_no_grad_forward_saves_nothing_and_matches():
    h, w, b, y, _ = _problem(300, 64, 2000, seed=5)
    with torch.no_grad():
        loss = skt.linear_cross_entropy(h, w, y, bias=b)
    ref = _oracle(h.double(), w.double(), y, b.double())
    torch.testing.assert_close(loss.double(), ref, **tol(torch.float32))


@pytest.mark.parametrize("poison", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_a_bad_row_poisons_only_its_loss(poison):
    h, w, b, y, _ = _problem(300, 64, 2000, seed=6)
    y[4] = 7
    h[4, 3] = poison
    per_row = skt.linear_cross_entropy(h, w, y, bias=b, reduction="none", label_smoothing=0.1)
    assert torch.isnan(per_row[4]).item()
    ref = _oracle(h.double(), w.double(), y, b.double(), reduction="none", label_smoothing=0.1)
    keep = torch.arange(300, device=CUDA) != 4
    torch.testing.assert_close(per_row[keep].double(), ref[keep], **tol(torch.float32))

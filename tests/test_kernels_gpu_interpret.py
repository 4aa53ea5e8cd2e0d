"""The Triton kernels (softmaxkit.kernels.triton.ops) on the CPU, under Triton's interpreter, against the reference.

The reference is softmaxkit.torch's torch code (``_core``) in float64 and, for a few cases, the NumPy core.
Widths straddle the block sizes (1, 7, 127, 128, 129, 1000, 4097 classes) and the walk over long rows is forced
with a small ``block``. The interpreter runs a program as NumPy operations: a few rows per case keep this module
within its budget.

``TRITON_INTERPRET`` must be set before :mod:`triton` is imported: ``triton.jit`` reads it when it decorates a
function (Triton 3.x: ``knobs.runtime.interpret``), both Triton's own ``triton.language.standard`` functions, at
``import triton``, and our kernels, when ``softmaxkit/kernels/triton/ops.py`` is executed. This module sets it before
importing either and keeps it set. Where CUDA is available it is skipped (the kernels are tested compiled, in
``test_kernels_gpu_cuda.py``, and one process cannot hold both modes); so it is if Triton was already imported
without the variable (the doctests of ``src/`` collected first): run it on its own then.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

if torch.cuda.is_available():
    pytest.skip("CUDA present: the kernels are tested compiled, in test_kernels_gpu_cuda.py", allow_module_level=True)
if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("triton was imported before TRITON_INTERPRET=1 was set: run this module alone", allow_module_level=True)
os.environ["TRITON_INTERPRET"] = "1"
triton = pytest.importorskip("triton")

import softmaxkit  # noqa: E402
import softmaxkit.torch as skt  # noqa: E402
from conftest import tol  # noqa: E402
from softmaxkit.kernels.triton import ops as gpu  # noqa: E402
from softmaxkit.torch import _core  # noqa: E402

pytestmark = [
    # the interpreter evaluates both sides of every tl.where with NumPy, which warns on inf - inf and the like
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning"),
]

INF = math.inf
WIDTHS = (1, 7, 127, 128, 129, 1000, 4097)


LAUNCHERS = ("softmax", "softmax_backward", "logsumexp", "logsumexp_backward", "label_totals", "cross_entropy")


@pytest.fixture
def on_kernels(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Send softmaxkit.torch's calls to the interpreted kernels through the dispatcher
    (``softmaxkit.backend("triton")``); the list records the launchers called (to tell the kernel path from the
    torch path). References computed inside run under ``softmaxkit.backend("torch")``."""
    calls: list[str] = []
    for name in LAUNCHERS:
        real = getattr(gpu, name)

        def spy(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(gpu, name, spy)
    with softmaxkit.backend("triton"):
        yield calls


def torch_code() -> Any:
    """Run the enclosed softmaxkit.torch calls on its torch code (the references of the tests below)."""
    return softmaxkit.backend("torch")


def test_the_kernels_are_interpreted():
    assert isinstance(gpu._ce_kernel, triton.runtime.interpreter.InterpretedFunction)


def _logits(n: int, k: int, seed: int, dtype: torch.dtype = torch.float32, special: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, k, generator=g, dtype=torch.float64) * 3
    if special and n >= 4:
        x[1] = -INF  # fully masked
        x[2, k // 2] = math.nan
        x[3, (k - 1) // 3] = INF
    if special and n >= 5 and k > 1:
        x[4, : k // 2] = -INF  # a masked head: whole -inf blocks before the finite ones
    return x.to(dtype)


def _close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, scale: float = 1.0) -> None:
    t = tol(str(dtype).split(".")[-1])
    torch.testing.assert_close(got.double(), want.double(), rtol=t["rtol"], atol=t["atol"] * scale, equal_nan=True)


# ------------------------------------------------------------------------------- softmax, log-softmax, lse
def _reference_mappings(x: torch.Tensor) -> dict[str, torch.Tensor]:
    z = x.double()
    lse, d = _core.row_lse(z, 1)
    bad = _core.bad_rows(lse.m)
    p = torch.where(lse.m == -INF, 0.0, torch.softmax(z, 1))
    return {
        "softmax": p,
        "log_softmax": torch.where(bad, math.nan, d - lse.log_norm),
        "logsumexp": _core.lse_value(lse).squeeze(1),
    }


# a small block forces the walk over the row (1024 for the widest, to keep the interpreter's time down)
CASES = [(k, torch.float32, block) for k in WIDTHS for block in (None, 128 if k <= 1000 else 1024)]
CASES += [(k, dt, None) for k in (7, 129, 4097) for dt in (torch.float16, torch.bfloat16)]
CASES += [(1000, torch.bfloat16, 256)]


@pytest.mark.parametrize(("k", "dtype", "block"), CASES)
def test_mappings_match_the_reference(k, dtype, block):
    x = _logits(6, k, seed=k, dtype=dtype)
    want = _reference_mappings(x)
    _close(gpu.softmax(x, block=block), want["softmax"], dtype)
    _close(gpu.softmax(x, log=True, block=block), want["log_softmax"], dtype, scale=10.0)
    _close(gpu.logsumexp(x, block=block), want["logsumexp"], torch.float32)
    g = torch.randn(6, k, dtype=torch.float64)
    p, logp = want["softmax"], want["log_softmax"]
    dp = p * (g - (g * p).sum(1, keepdim=True))
    active = logp != -INF
    gl = torch.where(active, g, 0.0)
    dl = torch.where(active, gl - torch.exp(logp) * gl.sum(1, keepdim=True), 0.0)
    _close(gpu.softmax_backward(p.to(dtype), g.to(dtype), block=block), dp, dtype)
    _close(gpu.softmax_backward(logp.to(dtype), g.to(dtype), log=True, block=block), dl, dtype, scale=10.0)
    r = torch.randn(6, dtype=torch.float64)
    lse_grad = torch.where(want["logsumexp"][:, None] == -INF, 0.0, r[:, None] * torch.softmax(x.double(), 1))
    _close(gpu.logsumexp_backward(x, r.float(), block=block), lse_grad, dtype)


def test_log_softmax_keeps_the_tail_of_a_dominant_class():
    x = torch.tensor([[0.0, -40.0, -45.0]]) + 1e7  # z - m exact; lse itself only to the nearest integer
    out = gpu.softmax(x, log=True)
    assert float(out[0, 0]) == pytest.approx(-(math.exp(-40) + math.exp(-45)), rel=1e-6)
    assert out[0, 1] == -40.0


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_all_minus_inf_block_is_not_nan(name):
    # FlashAttention #1930, Liger's m - m_new: a block of -inf before, between and after finite blocks
    x = torch.full((3, 384), -INF)
    x[0, 200:210] = torch.arange(10.0)
    x[1, :5] = 1.0
    x[2, 300:] = 2.0
    out = gpu.softmax(x, log=name == "log_softmax", block=128)
    want = _reference_mappings(x)[name]
    assert not out.isnan().any()
    _close(out, want, torch.float32)


# ------------------------------------------------------------------------------------------- cross-entropy
OPTION_SETS = [
    {},
    {"label_smoothing": 0.1},
    {"z_loss": 1e-3},
    {"softcap": 5.0},
    {"label_smoothing": 0.2, "z_loss": 1e-2, "softcap": 3.0},
]


def _targets(kind: str, n: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "probs":
        t = torch.softmax(torch.randn(n, k, generator=g, dtype=torch.float64), 1)
        t[0, 0] = 0.0
        return t
    y = torch.randint(0, k, (n,), generator=g)
    y[n - 1] = -100
    return y


def _reference_ce(z, target, weight, opts, reduction="none", grad=None):
    o = _core.options(reduction=reduction, **opts)
    t = target.double() if target.is_floating_point() else target
    w = None if weight is None else weight.double()
    loss, lse, denom, n_rows = _core.ce_forward(z.double(), t, w, 1, o)
    g = torch.ones_like(loss) if grad is None else grad.double()
    dz, _ = _core.ce_backward(z.double(), t, w, 1, o, lse, denom, n_rows, g)
    return loss, dz


def _kernel_ce(z, target, weight, opts, block, upstream):
    out = gpu.cross_entropy(
        z, target, weight, scales=upstream.float(), scale_stride=1, scale_zoff=0, block=block, **opts
    )
    loss = out.loss if out.z_rows is None else out.loss + out.z_rows
    return loss, out.grad


# every combination of target kind, weight and the option sets, on a single-block and a walked row
COMBOS = [
    (kind, weighted, i, k, block)
    for kind in ("index", "probs")
    for weighted in (False, True)
    for i in range(len(OPTION_SETS))
    for k, block in ((129, 128), (61, None))
]


@pytest.mark.parametrize(("kind", "weighted", "opt", "k", "block"), COMBOS)
def test_cross_entropy_every_option(kind, weighted, opt, k, block):
    opts = OPTION_SETS[opt]
    z = _logits(7, k, seed=opt + 10 * k)
    z[5, 3] = -INF  # a masked entry in an ordinary row
    target = _targets(kind, 7, k, seed=opt)
    weight = torch.rand(k, generator=torch.Generator().manual_seed(1), dtype=torch.float64) if weighted else None
    if weight is not None:
        weight[2] = 0.0
    upstream = torch.randn(7, dtype=torch.float64)
    want_loss, want_grad = _reference_ce(z, target, weight, opts, grad=upstream)
    loss, grad = _kernel_ce(z, target, weight, opts, block, upstream)
    _close(loss, want_loss, torch.float32, scale=10.0)
    _close(grad, want_grad, torch.float32)


@pytest.mark.parametrize("k", WIDTHS)
@pytest.mark.parametrize("walk", [False, True])
def test_cross_entropy_widths(k, walk):
    block = (128 if k <= 1000 else 1024) if walk else None
    opts = {"label_smoothing": 0.1, "z_loss": 1e-3}
    z = _logits(5, k, seed=k)
    target = _targets("index", 5, k, seed=k)
    upstream = torch.ones(5, dtype=torch.float64)
    want_loss, want_grad = _reference_ce(z, target, None, opts)
    loss, grad = _kernel_ce(z, target, None, opts, block, upstream)
    _close(loss, want_loss, torch.float32, scale=10.0)
    _close(grad, want_grad, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", ["index", "probs"])
def test_cross_entropy_half_precision(dtype, kind):
    opts = {"label_smoothing": 0.1, "softcap": 10.0}
    z = _logits(5, 1000, seed=3, dtype=dtype)
    target = _targets(kind, 5, 1000, seed=3)
    upstream = torch.ones(5, dtype=torch.float64)
    want_loss, want_grad = _reference_ce(z, target, None, opts)  # from the rounded logits, in float64
    loss, grad = _kernel_ce(z, target, None, opts, 256, upstream)
    assert grad.dtype == dtype
    _close(loss, want_loss, torch.float32, scale=10.0)
    _close(grad, want_grad, dtype)


def test_softcap_gives_padding_no_mass():
    # unsloth's fix: padded lanes loaded as 0 (or -inf capped to -c) would take probability mass
    z = torch.randn(3, 100) * 4
    for block in (128, 64):
        loss, grad = _kernel_ce(z, torch.tensor([1, 2, 3]), None, {"softcap": 2.0}, block, torch.ones(3))
        want_loss, want_grad = _reference_ce(z, torch.tensor([1, 2, 3]), None, {"softcap": 2.0})
        _close(loss, want_loss, torch.float32)
        _close(grad, want_grad, torch.float32)
    lse = gpu.cross_entropy(z, torch.tensor([1, 2, 3]), None, softcap=2.0, block=128)
    capped = 2.0 * torch.tanh(z.double() / 2.0)
    torch.testing.assert_close((lse.m + lse.log_norm).double(), torch.logsumexp(capped, 1))


def test_all_minus_inf_block_cross_entropy_is_finite():
    z = torch.full((2, 300), -INF)
    z[0, 250:] = torch.linspace(-1, 1, 50)
    z[1, :3] = 1.0
    target = torch.tensor([260, 1])
    for opts in ({}, {"label_smoothing": 0.1, "z_loss": 1e-3}):
        loss, grad = _kernel_ce(z, target, None, opts, 128, torch.ones(2))
        want_loss, want_grad = _reference_ce(z, target, None, opts)
        assert not grad.isnan().any()
        _close(loss, want_loss, torch.float32)
        _close(grad, want_grad, torch.float32)


def test_out_of_range_label_unchecked_gives_nan_row():
    z = torch.randn(3, 10)
    out = gpu.cross_entropy(z, torch.tensor([1, 10, -3]), None, scales=torch.ones(3), scale_stride=1, scale_zoff=0)
    assert out.loss is not None
    assert out.grad is not None
    assert math.isfinite(float(out.loss[0]))
    assert out.loss[1:].isnan().all()
    assert out.grad[1:].isnan().all()
    assert not out.grad[0].isnan().any()


# ------------------------------------------------------------------------------- through softmaxkit.torch
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind", ["index", "probs"])
def test_public_cross_entropy_on_the_kernels(on_kernels, reduction, kind):
    z64 = _logits(6, 129, seed=5, dtype=torch.float64, special=False)
    z64[2, 7] = -INF
    target = _targets(kind, 6, 129, seed=5)
    weight = torch.rand(129, dtype=torch.float64) + 0.5
    opts = {"label_smoothing": 0.1, "z_loss": 1e-3, "softcap": 8.0}
    z = z64.float().requires_grad_(True)
    tk = target.float() if kind == "probs" else target
    loss = skt.cross_entropy(z, tk, weight.float(), reduction=reduction, **opts)
    assert on_kernels
    ref_x = z64.clone().requires_grad_(True)
    with torch_code():
        ref = skt.cross_entropy(ref_x, target, weight, reduction=reduction, **opts)
    _close(loss.detach(), ref.detach(), torch.float32, scale=10.0)
    upstream = torch.randn_like(ref) if reduction == "none" else torch.tensor(2.5, dtype=torch.float64)
    (loss * upstream.float()).sum().backward()
    (ref * upstream).sum().backward()
    _close(z.grad, ref_x.grad, torch.float32)


def test_public_api_matches_the_numpy_core(on_kernels):
    z = _logits(5, 300, seed=8, special=False)
    y = torch.tensor([0, 5, -100, 299, 7])
    w = torch.rand(300, dtype=torch.float64)
    kw = {"label_smoothing": 0.05, "z_loss": 1e-4, "softcap": 20.0}
    got = skt.cross_entropy(z.float(), y, w.float(), **kw)
    with softmaxkit.backend("reference"):
        want = softmaxkit.cross_entropy(z.numpy(), y.numpy(), weight=w.numpy(), **kw)
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    got_p = skt.softmax(z.float(), dim=1)
    with softmaxkit.backend("reference"):
        want_p = softmaxkit.softmax(z.numpy(), axis=1)
    np.testing.assert_allclose(got_p.numpy(), want_p, rtol=1e-5, atol=1e-7)


def test_public_mappings_and_gradients_on_the_kernels(on_kernels):
    x64 = _logits(4, 1000, seed=9, dtype=torch.float64, special=False)
    x64[1, :500] = -INF
    for name in ("softmax", "log_softmax"):
        x = x64.float().requires_grad_(True)
        ref_x = x64.clone().requires_grad_(True)
        out = getattr(skt, name)(x, dim=1)
        with torch_code():
            ref = getattr(skt, name)(ref_x, dim=1)
        _close(out.detach(), ref.detach(), torch.float32)
        g = torch.randn_like(ref)
        out.backward(g.float())
        ref.backward(g)
        _close(x.grad, ref_x.grad, torch.float32)
    x = x64.float().requires_grad_(True)
    ref_x = x64.clone().requires_grad_(True)
    out = skt.logsumexp(x, 1)
    with torch_code():
        ref = skt.logsumexp(ref_x, 1)
    _close(out.detach(), ref.detach(), torch.float32)
    g = torch.randn(4, dtype=torch.float64)
    out.backward(g.float())
    ref.backward(g)
    _close(x.grad, ref_x.grad, torch.float32)
    assert on_kernels == [
        "softmax", "softmax_backward", "softmax", "softmax_backward", "logsumexp", "logsumexp_backward"
    ]  # fmt: skip


def test_ignored_row_holding_nan_is_never_read(on_kernels):
    x = torch.randn(3, 4)
    x[1] = math.nan
    x.requires_grad_(True)
    loss = skt.cross_entropy(x, torch.tensor([0, -100, 2]), reduction="sum")
    loss.backward()
    assert math.isfinite(float(loss.detach()))
    assert torch.equal(x.grad[1], torch.zeros(4))


def test_target_logit_minus_inf_gives_inf_loss_and_finite_gradient(on_kernels):
    x = torch.tensor([[-INF, 0.0, 1.0]], requires_grad=True)
    loss = skt.cross_entropy(x, torch.tensor([0]))
    loss.backward()
    assert float(loss.detach()) == INF
    p = torch.softmax(x.detach(), 1)
    torch.testing.assert_close(x.grad, p - torch.tensor([[1.0, 0.0, 0.0]]))


def test_nan_row_poisons_only_itself_and_plus_inf_lse_is_inf(on_kernels):
    x = torch.randn(3, 5)
    x[0, 1] = math.nan
    x[1, 2] = INF
    loss = skt.cross_entropy(x, torch.tensor([0, 1, 2]), reduction="none")
    assert loss[:2].isnan().all()
    assert math.isfinite(float(loss[2]))
    lse = skt.logsumexp(x, 1)
    assert math.isnan(float(lse[0]))
    assert float(lse[1]) == INF


def test_label_out_of_range_raises_or_gives_nan(on_kernels):
    with pytest.raises(ValueError, match=r"class index 9 at position \(1,\)"):
        skt.cross_entropy(torch.zeros(2, 5), torch.tensor([0, 9]))
    loss = skt.cross_entropy(torch.zeros(2, 5), torch.tensor([0, 9]), reduction="none", check_target=False)
    assert float(loss[0]) == pytest.approx(math.log(5))
    assert math.isnan(float(loss[1]))


def test_layouts_the_kernels_do_not_take_are_refused(on_kernels):
    x = torch.randn(4, 5, 3)
    with pytest.raises(ValueError, match="needs the class axis last"):
        skt.cross_entropy(x, torch.randint(0, 5, (4, 3)))  # class dimension 1 of 3
    with pytest.raises(ValueError, match="needs the class axis last"):
        skt.softmax(torch.randn(4, 20)[:, ::2], dim=1)  # strided classes
    with pytest.raises(ValueError, match=r"got torch\.float64"):
        skt.softmax(torch.randn(3, 4, dtype=torch.float64), dim=1)
    assert not on_kernels
    rows = torch.randn(4, 20)[:, :7]  # rows strided, classes contiguous: the kernels, without a copy
    _close(skt.softmax(rows, dim=1), torch.softmax(rows.double(), 1), torch.float32)
    assert on_kernels == ["softmax"]
    with softmaxkit.backend("auto"):  # on a CPU tensor, auto takes the torch code
        skt.softmax(rows, dim=1)
    assert on_kernels == ["softmax"]


def test_double_backward_uses_the_torch_code(on_kernels):
    x64 = torch.randn(3, 6, dtype=torch.float64)
    y = torch.tensor([1, 0, 5])
    v = torch.randn(3, 6, dtype=torch.float64)

    def hvp(x: torch.Tensor) -> torch.Tensor:
        x = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(skt.cross_entropy(x, y, label_smoothing=0.1), x, create_graph=True)
        (h,) = torch.autograd.grad((g * v.to(g.dtype)).sum(), x)
        return h

    with torch_code():
        want = hvp(x64)
    _close(hvp(x64.float()), want, torch.float32)


def test_fused_gradient_with_upstream_not_one(on_kernels):
    x64 = torch.randn(4, 50, dtype=torch.float64)
    y = torch.tensor([3, 1, 4, 1])
    x = x64.float().requires_grad_(True)
    (skt.cross_entropy(x, y) * 3.0).backward()
    ref_x = x64.clone().requires_grad_(True)
    with torch_code():
        (skt.cross_entropy(ref_x, y) * 3.0).backward()
    _close(x.grad, ref_x.grad, torch.float32)


def test_importing_softmaxkit_does_not_import_triton():
    code = (
        "import sys, torch, softmaxkit, softmaxkit.torch as skt;"
        "skt.cross_entropy(torch.randn(2, 3, requires_grad=True), torch.tensor([0, 1])).backward();"
        "skt.softmax(torch.randn(2, 3), dim=1); print('triton' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_config_packs_narrow_rows_and_walks_wide_ones():
    assert gpu.config(7) == gpu.Config(rows=512, block=8, single=True, num_warps=8)
    wide = gpu.config(gpu.SINGLE_MAX + 1)
    assert (wide.rows, wide.block, wide.single) == (1, gpu.BLOCK_WIDE, False)
    with pytest.raises(ValueError, match=r"block must be a power of two in \[1, 32768\]; got 100"):
        gpu.config(10, block=100)

"""The Triton kernels (softmaxkit.kernels.triton.ops) on a CUDA device, against the reference torch code in float64.

Collected only where CUDA is available (and Triton is installed, and not in interpreter mode: the CPU copy of
these cases is tests/test_kernels_gpu_interpret.py). Beyond the interpreter's cases: bfloat16 everywhere,
production shapes (4096 x 32000) through softmaxkit.torch, and row offsets past 2**31 elements.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)
if os.environ.get("TRITON_INTERPRET") == "1":
    pytest.skip("TRITON_INTERPRET=1: the kernels would not be compiled", allow_module_level=True)
triton = pytest.importorskip("triton")

import torch.nn.functional as F  # noqa: E402

import softmaxkit.torch as skt  # noqa: E402
from conftest import tol  # noqa: E402
from softmaxkit import _backend  # noqa: E402
from softmaxkit.kernels.triton import ops as gpu  # noqa: E402
from softmaxkit.torch import _core  # noqa: E402

DEV = torch.device("cuda")
INF = math.inf
WIDTHS = (1, 7, 127, 128, 129, 1000, 4097, 32000, 50000)
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, scale: float = 1.0) -> None:
    t = tol(str(dtype).split(".")[-1])
    torch.testing.assert_close(
        got.double().cpu(), want.double().cpu(), rtol=t["rtol"], atol=t["atol"] * scale, equal_nan=True
    )


def _logits(n: int, k: int, seed: int, dtype: torch.dtype, special: bool = True) -> torch.Tensor:
    g = torch.Generator(device=DEV).manual_seed(seed)
    x = torch.randn(n, k, generator=g, dtype=torch.float64, device=DEV) * 3
    if special and n >= 5:
        x[1] = -INF
        x[2, k // 2] = math.nan
        x[3, (k - 1) // 3] = INF
        if k > 1:
            x[4, : k // 2] = -INF
    return x.to(dtype)


def test_dispatch_sends_cuda_tensors_to_the_kernels():
    for front in ("torch", "array"):
        assert _backend.choose("softmax", torch.zeros(2, 3, device=DEV), "auto", front=front) == "triton"
    assert (
        _backend.choose("softmax", torch.zeros(2, 3, device=DEV, dtype=torch.float64), "auto", front="torch") == "torch"
    )
    assert _backend.choose("softmax", torch.zeros(2, 3), "auto", front="torch") == "torch"
    assert _backend.choose("softmax", torch.zeros(2, 3, device=DEV), "auto", front="torch", rows=False) == "torch"


@pytest.mark.parametrize("k", WIDTHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("walk", [False, True])
def test_mappings_match_the_reference(k, dtype, walk):
    x = _logits(8, k, seed=k, dtype=dtype)
    block = 1024 if walk else None
    z = x.double()
    lse, d = _core.row_lse(z, 1)
    bad = _core.bad_rows(lse.m)
    p = torch.where(lse.m == -INF, 0.0, torch.softmax(z, 1))
    _close(gpu.softmax(x, block=block), p, dtype)
    _close(gpu.softmax(x, log=True, block=block), torch.where(bad, math.nan, d - lse.log_norm), dtype, scale=10.0)
    _close(gpu.logsumexp(x, block=block), _core.lse_value(lse).squeeze(1), torch.float32)
    g = torch.randn(8, k, dtype=torch.float64, device=DEV)
    _close(gpu.softmax_backward(p.to(dtype), g.to(dtype), block=block), p * (g - (g * p).sum(1, keepdim=True)), dtype)


OPTION_SETS = [
    {},
    {"label_smoothing": 0.1},
    {"z_loss": 1e-3},
    {"softcap": 5.0},
    {"label_smoothing": 0.2, "z_loss": 1e-2, "softcap": 3.0},
]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind", ["index", "probs"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("opt", range(len(OPTION_SETS)))
@pytest.mark.parametrize("k", [129, 4097, 50000])
@pytest.mark.parametrize("dtype", DTYPES)
def test_public_cross_entropy_every_option(reduction, kind, weighted, opt, k, dtype):
    if (k == 50000 and dtype != torch.bfloat16) or (k == 129 and dtype == torch.float16):
        pytest.skip("sampled: not every width in every dtype")
    opts = OPTION_SETS[opt]
    n = 16
    x = _logits(n, k, seed=opt, dtype=dtype, special=False)
    x[5, 3] = -INF
    g = torch.Generator(device=DEV).manual_seed(opt)
    if kind == "probs":
        target = torch.softmax(torch.randn(n, k, generator=g, device=DEV, dtype=torch.float64), 1)
    else:
        target = torch.randint(0, k, (n,), generator=g, device=DEV)
        target[-1] = -100
    weight = torch.rand(k, generator=g, device=DEV, dtype=torch.float64) + 0.1 if weighted else None
    xk = x.clone().requires_grad_(True)
    tk = target.float() if kind == "probs" else target
    loss = skt.cross_entropy(xk, tk, None if weight is None else weight.float(), reduction=reduction, **opts)
    xr = x.double().requires_grad_(True)
    ref = skt.cross_entropy(
        xr.cpu(), target.cpu(), None if weight is None else weight.cpu(), reduction=reduction, **opts
    )
    _close(loss.detach().float(), ref.detach(), torch.float32 if dtype == torch.float32 else dtype, scale=10.0)
    up = torch.randn(ref.shape, dtype=torch.float64) if reduction == "none" else torch.tensor(1.0, dtype=torch.float64)
    (loss * up.to(DEV, loss.dtype)).sum().backward()
    (ref * up).sum().backward()
    assert xk.grad is not None
    assert xk.grad.dtype == dtype
    _close(xk.grad, xr.grad, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_production_shape_matches_torch(dtype):
    n, v = 4096, 32000
    x = (torch.randn(n, v, device=DEV) * 2).to(dtype).requires_grad_(True)
    y = torch.randint(0, v, (n,), device=DEV)
    y[::7] = -100
    loss = skt.cross_entropy(x, y)
    loss.backward()
    xr = x.detach().double().requires_grad_(True)
    ref = F.cross_entropy(xr, y)
    ref.backward()
    assert float(loss) == pytest.approx(float(ref), rel=1e-5)
    _close(x.grad, xr.grad, dtype)


def test_bfloat16_true_class_gradient_at_p_0999():
    x = torch.tensor([[math.log(0.999), math.log(0.001)]], dtype=torch.bfloat16, device=DEV, requires_grad=True)
    skt.cross_entropy(x, torch.tensor([0], device=DEV)).backward()
    exact = float(torch.softmax(x.detach().double(), 1)[0, 0]) - 1.0
    assert x.grad is not None
    assert abs(float(x.grad[0, 0]) - exact) <= 2**-8 * abs(exact)


def test_all_minus_inf_block_is_not_nan():
    x = torch.full((3, 40000), -INF, device=DEV)
    x[0, 20000:20010] = torch.arange(10.0, device=DEV)
    x[1, :5] = 1.0
    x[2, 39990:] = 2.0
    for log in (False, True):
        assert not gpu.softmax(x, log=log, block=8192).isnan().any()
    xg = x.clone().requires_grad_(True)
    skt.cross_entropy(xg, torch.tensor([20005, 1, 39995], device=DEV), label_smoothing=0.1).backward()
    assert xg.grad is not None
    assert not xg.grad.isnan().any()


def test_softcap_gives_padding_no_mass():
    z = torch.randn(4, 1000, device=DEV) * 4
    out = gpu.cross_entropy(z, torch.tensor([1, 2, 3, 4], device=DEV), None, softcap=2.0)
    capped = 2.0 * torch.tanh(z.double() / 2.0)
    _close(out.m + out.log_norm, torch.logsumexp(capped, 1), torch.float32)


def test_all_labels_ignored_mean_is_zero():
    x = torch.randn(3, 4, device=DEV, requires_grad=True)
    loss = skt.cross_entropy(x, torch.full((3,), -100, device=DEV), z_loss=1e-3)
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert x.grad is not None
    assert not x.grad.any()


def test_out_of_range_label_unchecked_gives_nan_row():
    loss = skt.cross_entropy(
        torch.zeros(2, 5, device=DEV), torch.tensor([0, 9], device=DEV), reduction="none", check_target=False
    )
    assert float(loss[0]) == pytest.approx(math.log(5))
    assert math.isnan(float(loss[1]))


def test_row_offsets_past_2_31_elements():
    n, k = 2**16 + 2, 2**15  # 2**31 + 2**16 elements
    need = n * k * 2 * 2  # bfloat16 logits and softmax output
    free, _ = torch.cuda.mem_get_info()
    if free < need + 2**30:
        pytest.skip(f"needs {need / 2**30:.1f} GiB of free device memory")
    x = torch.empty(n, k, dtype=torch.bfloat16, device=DEV)
    x[-3:].normal_()
    x[:-3].zero_()
    y = torch.zeros(n, dtype=torch.int64, device=DEV)
    y[-1] = k - 1
    out = gpu.cross_entropy(x, y, None)
    assert out.loss is not None
    ref = F.cross_entropy(x[-3:].double(), y[-3:], reduction="none")
    _close(out.loss[-3:], ref, torch.float32)
    p = gpu.softmax(x)
    _close(p[-3:], torch.softmax(x[-3:].double(), 1), torch.bfloat16)
    _close(p[0, :4], torch.full((4,), 1.0 / k, dtype=torch.float64), torch.bfloat16)

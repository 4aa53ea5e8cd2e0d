"""The family's Triton kernels (softmaxkit.kernels.triton.family) compiled on a CUDA device, against the generic
code of softmaxkit.family in float64 on the CPU.

Collected only where CUDA is available (and Triton is installed, and not in interpreter mode: the CPU copy of
these cases is tests/test_kernels_family_triton.py). Beyond the interpreter's cases: the default blocks at
widths past ``SINGLE_MAX`` and the default ``n_iter``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)
if os.environ.get("TRITON_INTERPRET") == "1":
    pytest.skip("TRITON_INTERPRET=1: the kernels would not be compiled", allow_module_level=True)
triton = pytest.importorskip("triton")

import numpy as np  # noqa: E402

import softmaxkit  # noqa: E402
import softmaxkit.family as fam  # noqa: E402
from conftest import tol  # noqa: E402
from softmaxkit.kernels.triton import family as fk  # noqa: E402

DEV = torch.device("cuda")
INF = math.inf


def _close(got: torch.Tensor, want: object, dtype: torch.dtype, scale: float = 1.0) -> None:
    t = tol(str(dtype).split(".")[-1])
    want_t = torch.as_tensor(np.asarray(want), dtype=torch.float64)
    torch.testing.assert_close(got.double().cpu(), want_t, rtol=t["rtol"], atol=t["atol"] * scale, equal_nan=True)


@pytest.fixture(autouse=True)
def _generic_references() -> Iterator[None]:
    """The references (softmaxkit.family on NumPy arrays) run the generic code, not the numba kernels that the
    dispatcher would pick for large arrays."""
    with softmaxkit.backend("reference"):
        yield


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("k", [7, 1000, 8200, 40000])
@pytest.mark.parametrize("name", ["sparsemax", "entmax15", "entmax_bisect"])
def test_compiled_kernels_match_the_generic_code(name, k, dtype):
    g = torch.Generator().manual_seed(k)
    x = (torch.randn(6, k, generator=g, dtype=torch.float64) * 2).to(dtype)
    x[1] = -INF
    x[2, k // 2] = math.nan
    x[3, : k // 2] = -INF
    cot = torch.randn(6, k, generator=g, dtype=torch.float64).to(dtype)
    xd, gd = x.double().numpy(), cot.double().numpy()
    xc, gc = x.to(DEV), cot.to(DEV)
    if name == "sparsemax":
        p = fk.sparsemax(xc)
        dx = fk.sparsemax_backward(p, gc)
        want, want_dx = fam.sparsemax(xd), fam.sparsemax_vjp(xd, gd)
    elif name == "entmax15":
        p = fk.entmax15(xc)
        dx = fk.entmax15_backward(p, gc)
        want, want_dx = fam.entmax15(xd), fam.entmax15_vjp(xd, gd)
    else:
        p = fk.entmax_bisect(xc, 1.3)
        dx, _ = fk.entmax_bisect_backward(p, gc, 1.3)
        want, want_dx = fam.entmax_bisect(xd, alpha=1.3), fam.entmax_bisect_vjp(xd, gd, alpha=1.3)
    assert p.dtype == dtype
    _close(p, want, dtype)
    _close(dx, want_dx, dtype, scale=4.0)


def test_compiled_alpha_gradient_per_row():
    x = torch.tensor([[0.5, 1.0, -0.2, 0.9], [2.0, -INF, 1.5, 1.4]], device=DEV)
    cot = torch.tensor([[1.0, -2.0, 0.5, 3.0]] * 2, device=DEV)
    alpha = torch.tensor([1.0, 1.5], device=DEV)
    p = fk.entmax_bisect(x, alpha)
    _, da = fk.entmax_bisect_backward(p, cot, alpha, want_alpha_grad=True)
    assert da is not None
    for i, a in enumerate((1.0, 1.5)):
        h = 1e-5
        xd, gd = x[i : i + 1].double().cpu().numpy(), cot[i : i + 1].double().cpu().numpy()

        def inner(b: float, xd: np.ndarray = xd, gd: np.ndarray = gd) -> float:
            return float((np.asarray(fam.entmax_bisect(xd, alpha=b)) * gd).sum())

        fd = (-3 * inner(a) + 4 * inner(a + h) - inner(a + 2 * h)) / (2 * h)
        assert float(da[i]) == pytest.approx(fd, rel=2e-4, abs=2e-5)

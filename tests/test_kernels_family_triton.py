"""The Triton kernels of the α-entmax family (softmaxkit.kernels.triton.family) on the CPU, under Triton's
interpreter, against the generic code of softmaxkit.family in float64.

Widths straddle the blocks and a small ``block`` forces the walk over the row (one case walks the real
``BLOCK_WIDE`` blocks of a row longer than ``SINGLE_MAX``). The interpreter runs a program as NumPy operations:
a few rows per case keep this module within its budget. See tests/test_kernels_gpu_interpret.py for why
``TRITON_INTERPRET`` is set before triton is imported and why the module is skipped where CUDA is present.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch

if torch.cuda.is_available():
    pytest.skip("CUDA present: the interpreter cannot run in this process", allow_module_level=True)
if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("triton was imported before TRITON_INTERPRET=1 was set: run this module alone", allow_module_level=True)
os.environ["TRITON_INTERPRET"] = "1"
triton = pytest.importorskip("triton")

import softmaxkit  # noqa: E402
import softmaxkit.family as fam  # noqa: E402
import softmaxkit.torch as skt  # noqa: E402
from conftest import tol  # noqa: E402
from softmaxkit.kernels.triton import family as fk  # noqa: E402
from softmaxkit.kernels.triton import ops  # noqa: E402

INF = math.inf
DTYPES = (torch.float32, torch.float16, torch.bfloat16)

# name -> (kernel forward, kernel backward, generic mapping, generic vjp); alpha 2.5 has s = p^-0.5
Forward = Callable[..., torch.Tensor]


def _bisect(alpha: float, n_iter: int = 32) -> tuple[Forward, Forward, Any, Any]:
    # 32 steps on both sides (not the default 64): the interpreter's time grows with them, and float32's
    # bracket has about reached its resolution there
    return (
        lambda x, block=None: fk.entmax_bisect(x, alpha, n_iter=n_iter, block=block),
        lambda p, g, block=None: fk.entmax_bisect_backward(p, g, alpha, block=block)[0],
        lambda z: fam.entmax_bisect(z, alpha=alpha, n_iter=n_iter),
        lambda z, g: fam.entmax_bisect_vjp(z, g, alpha=alpha, n_iter=n_iter),
    )


OPS: dict[str, tuple[Forward, Forward, Any, Any]] = {
    "sparsemax": (fk.sparsemax, fk.sparsemax_backward, fam.sparsemax, fam.sparsemax_vjp),
    "entmax15": (fk.entmax15, fk.entmax15_backward, fam.entmax15, fam.entmax15_vjp),
    "bisect1.3": _bisect(1.3),
    "bisect1": _bisect(1.0),
    "bisect2.5": _bisect(2.5),
    "bisect1.5-default": _bisect(1.5, 64),
}


def _logits(n: int, k: int, seed: int, dtype: torch.dtype = torch.float32, special: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, k, generator=g, dtype=torch.float64) * 2
    if special and n >= 5 and k > 2:
        x[1] = -INF  # fully masked
        x[2, k // 2] = math.nan
        x[3, (k - 1) // 3] = INF
        x[4, : k // 2] = -INF  # a masked head: whole -inf blocks before the finite ones
    if special and n >= 6 and k > 3:
        x[5, :3] = 4.0  # a three-way tie at the top
    return x.to(dtype)


def _np(x: torch.Tensor) -> np.ndarray[Any, Any]:
    return x.double().numpy()


def _close(got: torch.Tensor, want: Any, dtype: torch.dtype, scale: float = 1.0) -> None:
    t = tol(str(dtype).split(".")[-1])
    want_t = torch.as_tensor(np.asarray(want), dtype=torch.float64)
    torch.testing.assert_close(got.double(), want_t, rtol=t["rtol"], atol=t["atol"] * scale, equal_nan=True)


@pytest.fixture(autouse=True)
def _generic_references() -> Iterator[None]:
    """The references (softmaxkit.family on NumPy arrays) run the generic code, not the numba kernels that the
    dispatcher would pick for large arrays."""
    with softmaxkit.backend("reference"):
        yield


def test_the_kernels_are_interpreted():
    assert isinstance(fk._forward_kernel, triton.runtime.interpreter.InterpretedFunction)


# (the walk over a row costs the interpreter a pass per block and step: three blocks, a few cases)
CASES = [(name, 7, torch.float32, None) for name in OPS]
CASES += [(name, 37, torch.float32, 16) for name in OPS if name != "bisect1.5-default"]
CASES += [(name, 130, torch.float32, 64) for name in ("sparsemax", "entmax15")]
CASES += [(name, 37, dt, None) for name in OPS for dt in (torch.float16, torch.bfloat16)]
CASES += [("sparsemax", 37, torch.float16, 16), ("bisect1.3", 37, torch.bfloat16, 16)]


@pytest.mark.parametrize(("name", "k", "dtype", "block"), CASES)
def test_values_and_vjp_match_the_generic_code(name, k, dtype, block):
    fwd, bwd, ref, ref_vjp = OPS[name]
    x = _logits(6, k, seed=k, dtype=dtype)
    p = fwd(x, block=block)
    assert p.dtype == dtype
    _close(p, ref(_np(x)), dtype)
    g = torch.randn(6, k, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype)
    dx = bwd(p, g, block=block)
    assert dx.dtype == dtype
    _close(dx, ref_vjp(_np(x), _np(g)), dtype, scale=4.0)


@pytest.mark.parametrize("name", list(OPS))
def test_special_values_are_exact(name):
    fwd, bwd, _, _ = OPS[name]
    x = torch.tensor(
        [[1.0, -INF, 0.5, -1.0], [-INF, -INF, -INF, -INF], [0.0, math.nan, 1.0, 2.0], [INF, 0.0, 1.0, -INF]]
    )
    for block in (None, 2):
        p = fwd(x, block=block)
        assert p[0, 1] == 0.0
        assert torch.equal(p[1], torch.zeros(4))
        assert p[2:].isnan().all()
        assert not p[:2].isnan().any()
        g = torch.tensor([[1.0, 5.0, -2.0, 3.0]] * 4)
        dx = bwd(p, g, block=block)
        assert dx[0, 1] == 0.0  # a cotangent at a masked entry is never used
        assert torch.equal(dx[1], torch.zeros(4))
        assert dx[2:].isnan().all()
        assert not dx[:2].isnan().any()


def test_a_nan_cotangent_off_the_support_is_not_read():
    p = fk.sparsemax(torch.tensor([[3.0, 0.0, -5.0]]))  # [1, 0, 0]
    dx = fk.sparsemax_backward(p, torch.tensor([[1.0, math.nan, math.nan]]))
    assert torch.equal(dx, torch.zeros(1, 3))


@pytest.mark.parametrize("name", ["sparsemax", "entmax15"])
def test_ties_at_the_top_and_at_the_threshold(name):
    fwd, _, ref, _ = OPS[name]
    # sparsemax [0, 0, 0, -1/3]: the threshold is -1/3, the fourth entry sits on it (probability exactly 0);
    # 1.5-entmax's threshold for three tied zeros is -1/sqrt(3)
    third = np.float32(1 / 3)
    x = torch.tensor([[0.0, 0.0, 0.0, -float(third)], [2.0, 2.0, 2.0, 2.0], [5.0, 5.0, -1.0, -1.0]])
    for block in (None, 2):
        p = fwd(x, block=block)
        _close(p, ref(_np(x)), torch.float32)
        assert torch.equal(p[1], torch.full((4,), 0.25))
        assert torch.equal(p[2, 2:], torch.zeros(2))
        assert p[2, 0] == p[2, 1]


@pytest.mark.parametrize("name", ["sparsemax", "entmax15"])
def test_exact_threshold_on_a_long_float32_row(name):
    # many entries near the threshold: the bisection alone would leave an error of its bracket (2**-24)
    fwd, _, ref, _ = OPS[name]
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 1000, generator=g) * 0.05
    p = fwd(x)
    want = torch.as_tensor(np.asarray(ref(_np(x))))
    torch.testing.assert_close(p.double(), want, rtol=0, atol=2e-7)
    assert torch.equal(p > 0, want > 0)  # the same support
    assert abs(float(p.double().sum(1).sub(1).abs().max())) < 1e-5


@pytest.mark.parametrize("name", ["sparsemax", "entmax15", "bisect1.3"])
def test_a_row_longer_than_single_max_walks_the_wide_blocks(name):
    fwd, bwd, ref, ref_vjp = OPS[name]
    k = ops.SINGLE_MAX + 5
    assert not ops.config(k).single
    x = _logits(1, k, seed=3, special=False)
    x[0, 100] = -INF
    p = fwd(x)
    _close(p, ref(_np(x)), torch.float32)
    g = torch.randn(1, k, generator=torch.Generator().manual_seed(2))
    _close(bwd(p, g), ref_vjp(_np(x), _np(g)), torch.float32, scale=4.0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", list(OPS))
def test_half_precision_rows_sum_to_one_and_are_never_nan(name, dtype):
    fwd = OPS[name][0]
    x = torch.tensor([[1000.0, 999.0, 998.5, -1000.0], [60000.0, 60000.0, 0.0, -60000.0], [0.0, 0.0, 0.0, 0.0]])
    p = fwd(x.to(dtype))
    assert p.dtype == dtype
    assert not p.isnan().any()
    assert float((p.double().sum(1) - 1).abs().max()) <= 4 * float(torch.finfo(dtype).eps)


# ------------------------------------------------------------------------------------------------------- alpha
def _alpha_fd(x: torch.Tensor, g: torch.Tensor, alpha: float, h: float = 1e-5) -> np.ndarray[Any, Any]:
    """<g, dp/dalpha> per row by a one-sided second-order difference of the generic float64 code."""

    def inner(a: float) -> np.ndarray[Any, Any]:
        return (np.asarray(fam.entmax_bisect(_np(x), alpha=a)) * _np(g)).sum(-1)

    return (-3 * inner(alpha) + 4 * inner(alpha + h) - inner(alpha + 2 * h)) / (2 * h)


@pytest.mark.parametrize(
    ("alpha", "block"), [(1.0, None), (1.25, None), (1.5, None), (2.0, None), (3.0, None), (1.0, 4), (1.5, 4)]
)
def test_alpha_gradient_matches_finite_differences(alpha, block):
    x = torch.tensor([[0.5, 1.0, -0.2, 0.9, 0.1], [2.0, -INF, 1.5, 1.4, -3.0], [-INF] * 5, [0.0, 0.1, 0.2, 0.3, 0.4]])
    g = torch.tensor([[1.0, -2.0, 0.5, 3.0, 1.0]] * 4)
    p = fk.entmax_bisect(x, alpha, block=block)
    _, da = fk.entmax_bisect_backward(p, g, alpha, want_alpha_grad=True, block=block)
    assert da is not None
    torch.testing.assert_close(da.double(), torch.as_tensor(_alpha_fd(x, g, alpha)), rtol=2e-4, atol=2e-5)
    assert da[2] == 0.0  # a fully masked row has no distribution


def test_alpha_per_row_equals_one_launch_per_alpha():
    x = _logits(4, 9, seed=5, special=False)
    g = torch.randn(4, 9, generator=torch.Generator().manual_seed(4))
    alphas = [1.0, 1.2, 1.5, 2.7]
    a = torch.tensor(alphas).reshape(4, 1)
    p = fk.entmax_bisect(x, a)
    dx, da = fk.entmax_bisect_backward(p, g, a, want_alpha_grad=True)
    assert da is not None
    for i, alpha in enumerate(alphas):
        p_i = fk.entmax_bisect(x[i : i + 1], alpha)
        dx_i, da_i = fk.entmax_bisect_backward(p_i, g[i : i + 1], alpha, want_alpha_grad=True)
        assert torch.equal(p[i], p_i[0])
        assert torch.equal(dx[i], dx_i[0])
        assert da_i is not None
        assert torch.equal(da[i], da_i[0])


def test_a_tensor_alpha_below_one_gives_a_nan_row():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    p = fk.entmax_bisect(x, torch.tensor([1.5, 0.5, math.nan]))
    assert not p[0].isnan().any()
    assert p[1:].isnan().all()


# ------------------------------------------------------------------------------------------------------ errors
def test_bad_arguments_are_refused():
    x = torch.zeros(2, 3)
    with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
        fk.sparsemax(x.double())
    with pytest.raises(ValueError, match="contiguous rows"):
        fk.entmax15(torch.zeros(3, 2).t())
    with pytest.raises(ValueError, match="alpha must be a finite number >= 1"):
        fk.entmax_bisect(x, 0.5)
    with pytest.raises(ValueError, match="one value or one per row"):
        fk.entmax_bisect(x, torch.ones(3))
    with pytest.raises(ValueError, match="n_iter must be >= 1"):
        fk.entmax_bisect(x, 1.5, n_iter=0)
    with pytest.raises(TypeError, match="n_iter must be an int"):
        fk.entmax_bisect(x, 1.5, n_iter=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="grad must match"):
        fk.sparsemax_backward(x, torch.zeros(2, 4))


def test_empty_inputs():
    assert fk.sparsemax(torch.zeros(0, 3)).shape == (0, 3)
    assert fk.entmax15(torch.zeros(2, 0)).shape == (2, 0)
    dx, da = fk.entmax_bisect_backward(torch.zeros(0, 3), torch.zeros(0, 3), want_alpha_grad=True)
    assert dx.shape == (0, 3)
    assert da is not None
    assert da.shape == (0,)


def test_inputs_are_not_mutated():
    x = _logits(6, 11, seed=11)
    before = x.clone()
    p = fk.entmax15(x)
    g = torch.ones_like(p)
    p_before = p.clone()
    fk.entmax15_backward(p, g)
    assert torch.equal(x.nan_to_num(), before.nan_to_num())
    assert torch.equal(x.isnan(), before.isnan())
    assert torch.equal(p.nan_to_num(), p_before.nan_to_num())


# ------------------------------------------------------------------- through softmaxkit.torch and the dispatcher
LAUNCHERS = ("sparsemax", "entmax15", "entmax_bisect", "sparsemax_backward", "entmax15_backward")
LAUNCHERS += ("entmax_bisect_backward",)


@pytest.fixture
def on_kernels(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Send softmaxkit.torch's calls to the interpreted kernels through the dispatcher
    (``softmaxkit.backend("triton")``); the list records the launchers called. References computed inside run
    under ``softmaxkit.backend("torch")``."""
    calls: list[str] = []
    for name in LAUNCHERS:
        real = getattr(fk, name)

        def spy(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(fk, name, spy)
    with softmaxkit.backend("triton"):
        yield calls


def _value_and_grads(f: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = f(*leaves)
    cot = torch.linspace(-1.0, 2.0, out.numel()).reshape(out.shape).to(out.dtype)
    grads = torch.autograd.grad(out, leaves, cot)
    return (out.detach(), *grads)


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("sparsemax", lambda x: skt.sparsemax(x, dim=0)),
        ("entmax15", lambda x: skt.entmax15(x, dim=1, where=torch.arange(5) != 2)),
        ("entmax_bisect", lambda x: skt.entmax_bisect(x, 1.3, dim=-1, n_iter=30)),
    ],
)
def test_softmaxkit_torch_runs_the_kernels_under_backend_triton(on_kernels, name, call):
    x = _logits(4, 5, seed=9, special=False).reshape(4, 5)
    x[1, 1] = -INF
    got = _value_and_grads(call, x)
    assert on_kernels == [name, LAUNCHERS[LAUNCHERS.index(name) + 3]]
    with softmaxkit.backend("torch"):
        want = _value_and_grads(call, x)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, **tol("float32"))


def test_a_learnable_alpha_gets_its_gradient_from_the_kernels(on_kernels):
    x = _logits(3, 6, seed=12, special=False)
    alpha = torch.tensor([[1.2], [1.5], [2.5]])
    got = _value_and_grads(lambda z, a: skt.entmax_bisect(z, a, n_iter=40), x, alpha)
    assert on_kernels == ["entmax_bisect", "entmax_bisect_backward"]
    with softmaxkit.backend("torch"):
        want = _value_and_grads(lambda z, a: skt.entmax_bisect(z, a, n_iter=40), x, alpha)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def test_the_generic_function_on_a_tensor_takes_the_kernels_too(on_kernels):
    x = torch.tensor([[1.0, 0.5, -1.0]], dtype=torch.bfloat16)
    p = softmaxkit.sparsemax(x)
    assert on_kernels == ["sparsemax"]
    assert p.dtype == torch.bfloat16
    assert torch.equal(p, torch.tensor([[0.75, 0.25, 0.0]], dtype=torch.bfloat16))


def test_a_double_backward_takes_the_torch_operations(on_kernels):
    x = _logits(2, 4, seed=13, special=False).requires_grad_(True)
    p = skt.entmax15(x)
    (g,) = torch.autograd.grad((p * p).sum(), x, create_graph=True)
    assert on_kernels == ["entmax15"]  # a backward that autograd records: torch operations
    (h,) = torch.autograd.grad(g.sum(), x)
    assert on_kernels == ["entmax15", "entmax15_backward"]  # (p's own backward in the second one: the kernel)
    with softmaxkit.backend("torch"):
        x2 = x.detach().clone().requires_grad_(True)
        (g2,) = torch.autograd.grad((skt.entmax15(x2) ** 2).sum(), x2, create_graph=True)
        (h2,) = torch.autograd.grad(g2.sum(), x2)
    torch.testing.assert_close(h, h2, **tol("float32"))


def test_backend_triton_refuses_what_has_no_kernel(on_kernels):
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"backend='triton' cannot run softmaxkit\.torch\.sparsemax_loss"):
        skt.sparsemax_loss(x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"backend='triton' cannot run softmaxkit\.torch\.taylor_softmax"):
        skt.taylor_softmax(x)
    with pytest.raises(ValueError, match="float32/float16/bfloat16"):
        skt.sparsemax(x.double())
    assert on_kernels == []


# ------------------------------------------------------------------------------------- compiled, no device
_COMPILE = """
import sys
import triton
try:
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
except ImportError:
    print("SKIP"); sys.exit(0)
from softmaxkit.kernels.triton import family as f, ops

for kind in (0, 1, 2):
    for dtype, width in (("bf16", 1000), ("fp16", ops.SINGLE_MAX), ("fp32", 40000)):
        cfg = ops.config(width)
        for fn in (f._forward_kernel, f._backward_kernel):
            consts = {"KIND": kind, "ALPHA_T": kind == 2, "WANT_DALPHA": kind == 2, "ROWS": cfg.rows,
                      "BLOCK": cfg.block, "SINGLE": cfg.single}
            sig, cons = {}, {}
            for p in fn.params:
                if p.is_constexpr:
                    sig[p.name], cons[p.name] = "constexpr", consts[p.name]
                elif p.name.endswith("_ptr"):
                    sig[p.name] = "*fp32" if p.name in ("a_ptr", "da_ptr") else "*" + dtype
                else:
                    sig[p.name] = "fp32" if p.name == "alpha_val" else "i32"
            triton.compile(ASTSource(fn, sig, cons), target=GPUTarget("cuda", 90, 32),
                           options={"num_warps": cfg.num_warps})
            print(kind, dtype, width)
"""


def test_kernels_compile_for_an_h100_without_one():
    # the interpreter runs the kernels as Python and misses what only the compiler rejects (it caught a loop
    # variable reassigned with another type); Triton compiles for a named target (sm_90), no device needed
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", _COMPILE], env=env, capture_output=True, text=True, check=False)
    if out.stdout.startswith("SKIP"):
        pytest.skip("this Triton has no ASTSource / GPUTarget")
    assert out.returncode == 0, out.stderr[-4000:]
    assert len(out.stdout.splitlines()) == 18

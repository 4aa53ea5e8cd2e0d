"""The numba kernels of the α-entmax family (softmaxkit.kernels.numba._family) against the generic code.

The oracle is :mod:`softmaxkit.family` run on float64 input; float32 kernels are held to the float32 row of
conftest's tolerance table. The peer claims of issue 17 (values and gradients equal the ``entmax`` package's to
1e-6 in float32 and 1e-12 in float64) are checked against the installed package.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import softmaxkit as sk
from conftest import tol
from softmaxkit import _backend
from softmaxkit import family as fam
from softmaxkit.kernels import numba as kernels
from softmaxkit.kernels.numba import _runtime

pytest.importorskip("numba")
family = _runtime.load_extra("_family")

DTYPES = ["float32", "float64"]
OPS = ["sparsemax", "entmax15", "entmax_bisect"]
ALPHA = {"sparsemax": 2.0, "entmax15": 1.5}


def kernel(op: str, x: np.ndarray, alpha: float = 1.5, n_iter: int = 64) -> np.ndarray:
    out: np.ndarray = _backend.run_family("numba", op, x, alpha, n_iter)
    return out


def generic(op: str, x: np.ndarray, alpha: float = 1.5, n_iter: int = 64) -> np.ndarray:
    """The generic code's mapping (the engine ``reference``)."""
    with sk.backend("reference"):
        if op == "sparsemax":
            return np.asarray(fam.sparsemax(x))
        if op == "entmax15":
            return np.asarray(fam.entmax15(x))
        return np.asarray(fam.entmax_bisect(x, alpha=alpha, n_iter=n_iter))


def generic_vjp(op: str, x: np.ndarray, g: np.ndarray, alpha: float = 1.5) -> np.ndarray:
    """The generic code's VJP (from the logits ``x``)."""
    with sk.backend("reference"):
        if op == "sparsemax":
            return np.asarray(fam.sparsemax_vjp(x, g))
        if op == "entmax15":
            return np.asarray(fam.entmax15_vjp(x, g))
        return np.asarray(fam.entmax_bisect_vjp(x, g, alpha=alpha))


def kernel_vjp(op: str, x: np.ndarray, g: np.ndarray, alpha: float = 1.5) -> np.ndarray:
    p = kernel(op, x, alpha)
    out: np.ndarray = _backend.run_family_vjp("numba", op, p, g, alpha)
    return out


def test_cache_stamp_matches_the_sources() -> None:
    """numba's cache does not see edits to _vmath.py: _family.SOURCES_SHA must follow them."""
    digest = hashlib.sha256((Path(kernels.__file__).parent / "_vmath.py").read_bytes()).hexdigest()[:16]
    assert digest == family.SOURCES_SHA, f"set SOURCES_SHA in softmaxkit/kernels/numba/_family.py to {digest!r}"


# --------------------------------------------------------------------------------- against the generic code
# (rows, classes): single classes and rows; short rows; rows around the candidates' usual count; long rows.
SHAPES = [(1, 1), (3, 2), (7, 5), (64, 33), (40, 1000), (3, 32768), (2, 40000)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("op", OPS)
def test_mapping_and_vjp_equal_the_generic_code(op: str, shape: tuple[int, int], dtype: str) -> None:
    rng = np.random.default_rng(sum(shape))
    x64 = rng.standard_normal(shape) * 3.0
    g64 = rng.standard_normal(shape)
    x, g = x64.astype(dtype), g64.astype(dtype)
    x64, g64 = x.astype(np.float64), g.astype(np.float64)  # the oracle sees the same numbers
    p = kernel(op, x)
    assert p.dtype == x.dtype
    np.testing.assert_allclose(p, generic(op, x64), **tol(dtype))
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, **tol(dtype))
    vjp = kernel_vjp(op, x, g)
    assert vjp.dtype == x.dtype
    np.testing.assert_allclose(vjp, generic_vjp(op, x64, g64), **tol(dtype))


@pytest.mark.parametrize("alpha", [1.0, 1.05, 1.3, 2.0, 2.5, 4.0])
@pytest.mark.parametrize("n_iter", [1, 7, 64])
def test_bisect_any_alpha_and_n_iter_equals_the_generic_code(alpha: float, n_iter: int) -> None:
    rng = np.random.default_rng(int(alpha * 100) + n_iter)
    x = rng.standard_normal((50, 300))
    g = rng.standard_normal((50, 300))
    p = kernel("entmax_bisect", x, alpha, n_iter)
    np.testing.assert_allclose(p, generic("entmax_bisect", x, alpha, n_iter), rtol=1e-11, atol=1e-12)
    if n_iter == 64:  # the VJP from the converged output
        got = _backend.run_family_vjp("numba", "entmax_bisect", p, g, alpha)
        np.testing.assert_allclose(got, generic_vjp("entmax_bisect", x, g, alpha), rtol=1e-9, atol=1e-11)


def test_other_layouts_are_read_as_they_are() -> None:
    """A strided view, a transposed copy and a read-only array give the contiguous array's result."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal((20, 64))
    want = kernel("entmax15", np.ascontiguousarray(base[:, ::2]))
    np.testing.assert_array_equal(kernel("entmax15", base[:, ::2]), want)
    frozen = np.ascontiguousarray(base[:, ::2])
    frozen.flags.writeable = False
    np.testing.assert_array_equal(kernel("entmax15", frozen), want)
    np.testing.assert_array_equal(kernel("entmax15", base[:, ::2].reshape(4, 5, 32)).reshape(20, 32), want)


@pytest.mark.parametrize("op", OPS)
def test_threads_give_the_serial_result(op: str) -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((96, 8192)).astype(np.float32)  # 2**19.6 entries: cut into pieces
    g = rng.standard_normal(x.shape).astype(np.float32)
    code = {"sparsemax": family.SPARSEMAX, "entmax15": family.ENTMAX15, "entmax_bisect": family.BISECT}[op]
    serial, parallel = np.empty_like(x), np.empty_like(x)
    family.mapping_rows(x, serial, code, 1.5, 64)
    family.mapping_rows_parallel(x, parallel, code, 1.5, 64, 2)
    np.testing.assert_array_equal(parallel, serial)
    np.testing.assert_array_equal(kernel(op, x), serial)
    v1, v2 = np.empty_like(x), np.empty_like(x)
    family.vjp_rows(serial, g, v1, ALPHA.get(op, 1.5))
    family.vjp_rows_parallel(serial, g, v2, ALPHA.get(op, 1.5), 3)
    np.testing.assert_array_equal(v2, v1)


# ------------------------------------------------------------------------------------------ special values
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS)
def test_special_rows(op: str, dtype: str) -> None:
    inf, nan = np.inf, np.nan
    x = np.array(
        [
            [1.0, -inf, 0.5, -inf],  # masked entries: exactly 0
            [-inf, -inf, -inf, -inf],  # all masked: zeros
            [1.0, nan, 0.0, 2.0],  # nan: nan row
            [1.0, inf, 0.0, 2.0],  # +inf: nan row
            [0.0, 0.0, 0.0, 0.0],  # ties: uniform
            [5.0, -inf, -inf, -inf],  # one live entry: one-hot
        ],
        dtype=dtype,
    )
    p = kernel(op, x)
    want = generic(op, x.astype(np.float64))
    np.testing.assert_allclose(p, want, **tol(dtype))
    assert p[0, 1] == p[0, 3] == 0.0
    assert np.all(p[1] == 0.0)
    assert np.all(np.isnan(p[2:4]))
    np.testing.assert_array_equal(p[4], 0.25)
    np.testing.assert_array_equal(p[5], [1.0, 0.0, 0.0, 0.0])
    g = np.array([[1.0, nan, 2.0, inf]] * 6, dtype=dtype)  # g is never read where p = 0
    vjp = _backend.run_family_vjp("numba", op, p, g, 1.5)
    np.testing.assert_allclose(vjp, generic_vjp(op, x.astype(np.float64), g.astype(np.float64)), **tol(dtype))
    assert np.all(vjp[0, [1, 3]] == 0.0)
    assert np.all(vjp[1] == 0.0)
    assert np.all(vjp[5] == 0.0)
    assert np.all(np.isnan(vjp[2:4]))


finite = st.floats(-30.0, 30.0, allow_subnormal=False, width=32)
entries = st.one_of(finite, st.sampled_from([0.0, 1.0, -1.0, 2.0, 0.5, -np.inf, -np.inf, np.nan, np.inf]))


@settings(max_examples=150, deadline=None)
@given(
    x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24), elements=entries),
    op=st.sampled_from(OPS),
    dtype=st.sampled_from(DTYPES),
    data=st.data(),
)
def test_fuzz_against_the_generic_code(x: np.ndarray, op: str, dtype: str, data: Any) -> None:
    """Ties, -inf, all-masked rows, nan and +inf rows: the same values, and nan exactly where the generic's."""
    xd = x.astype(dtype)
    x64 = xd.astype(np.float64)
    p = kernel(op, xd)
    want = generic(op, x64)
    np.testing.assert_array_equal(np.isnan(p), np.isnan(want))
    if dtype == "float64" and op != "entmax_bisect":  # the same support (bisection's may differ in the last bits)
        np.testing.assert_array_equal(p == 0.0, want == 0.0)
    np.testing.assert_allclose(p, want, **tol(dtype))
    g = data.draw(hnp.arrays(np.float64, x.shape, elements=st.floats(-10.0, 10.0))).astype(dtype)
    vjp = _backend.run_family_vjp("numba", op, p, g, 1.5)
    if dtype == "float64":
        np.testing.assert_allclose(vjp, generic_vjp(op, x64, g), **tol(dtype))
    else:  # (rounding in float32 can move an entry near the threshold in or out of the support: J jumps there)
        np.testing.assert_allclose(vjp, support_vjp(p.astype(np.float64), g.astype(np.float64), ALPHA.get(op, 1.5)),
                                   **tol(dtype))  # fmt: skip


def support_vjp(p: np.ndarray, g: np.ndarray, alpha: float) -> np.ndarray:
    """:math:`s \\odot g - s \\langle s, g\\rangle / \\sum s`, :math:`s = p^{2 - \\alpha}` on the support of ``p``."""
    live = p > 0
    s = np.where(live, np.where(live, p, 1.0) ** (2.0 - alpha), 0.0)
    sg = np.where(live, s * g, 0.0)
    total = s.sum(-1, keepdims=True)
    out = np.where(live, sg - s * sg.sum(-1, keepdims=True) / np.where(total > 0, total, 1.0), 0.0)
    return np.where(np.isnan(p).any(-1, keepdims=True), np.nan, out)


@settings(max_examples=25, deadline=None)
@given(
    top=st.integers(1, 3000),
    spread=st.sampled_from([0.001, 0.1, 1.0, 4.0]),
    op=st.sampled_from(OPS),
    seed=st.integers(0, 2**32 - 1),
)
def test_fuzz_long_rows(top: int, spread: float, op: str, seed: int) -> None:
    """Rows of 32768 and more whose ``top`` largest entries lie within ``spread`` of each other (many candidates,
    many ties when the spread is small): the candidate pass, Michelot's and Newton's rounds, the sort."""
    rng = np.random.default_rng(seed)
    k = 32768 + int(rng.integers(0, 3))
    x = rng.standard_normal((2, k)) * 5.0 - 20.0
    x[:, :top] = np.round(rng.uniform(-spread, 0.0, (2, top)), 3)
    x[1, rng.integers(0, k, 50)] = -np.inf
    p = kernel(op, x)
    np.testing.assert_allclose(p, generic(op, x), rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("kind", ["sparsemax", "entmax15"])
@pytest.mark.parametrize("rounds", [0, 1, 2])
def test_sorted_fallback_gives_the_same_threshold(monkeypatch: pytest.MonkeyPatch, kind: str, rounds: int) -> None:
    """With too few rounds of Michelot's / Newton's iteration the entries left are sorted: the same threshold."""
    rng = np.random.default_rng(rounds)
    scale = 1.0 if kind == "sparsemax" else 0.5
    x = rng.standard_normal(5000) * 2.0
    buf = np.empty(x.size)
    n = family._gather(x, x.max(), scale, buf)
    solve = family._sparsemax_threshold if kind == "sparsemax" else family._entmax15_threshold
    want = solve(buf.copy(), n)
    monkeypatch.setattr(family, "ROUNDS", rounds)
    assert solve.py_func(buf.copy(), n) == pytest.approx(want, rel=1e-14, abs=1e-15)
    assert family._sorted_threshold(buf.copy(), n, family.SPARSEMAX if kind == "sparsemax" else family.ENTMAX15) == (
        pytest.approx(want, rel=1e-14, abs=1e-15)
    )


# ---------------------------------------------------------------------------------------- the entmax package
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS)
def test_values_and_gradients_equal_the_entmax_package(op: str, dtype: str) -> None:
    """Issue 17: values and gradients equal the entmax package's to 1e-6 (float32) and 1e-12 (float64)."""
    torch = pytest.importorskip("torch")
    peer = pytest.importorskip("entmax")
    rng = np.random.default_rng(17)
    atol = 1e-6 if dtype == "float32" else 1e-12
    for shape in [(64, 1000), (8, 100), (4, 32768)]:
        x = (rng.standard_normal(shape) * 2.0).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        xt = torch.from_numpy(x.copy()).requires_grad_()
        if op == "sparsemax":
            yt = peer.sparsemax(xt, dim=-1)
        elif op == "entmax15":
            yt = peer.entmax15(xt, dim=-1)
        else:
            yt = peer.entmax_bisect(xt, alpha=1.5, dim=-1, n_iter=64)
        yt.backward(torch.from_numpy(g))
        assert xt.grad is not None
        p = kernel(op, x)
        np.testing.assert_allclose(p, yt.detach().numpy(), rtol=0, atol=atol)
        vjp = _backend.run_family_vjp("numba", op, p, g, 1.5)
        np.testing.assert_allclose(vjp, xt.grad.numpy(), rtol=0, atol=atol)


# ---------------------------------------------------------------------------------------------- dispatcher
@pytest.mark.parametrize("op", OPS)
def test_the_dispatcher_sends_the_family_to_numba(op: str) -> None:
    x = np.zeros((2, 3))
    with sk.backend("numba"):
        assert _backend.choose(op, x) == "numba"
        assert _backend.choose(op, x.astype(np.float32)) == "numba"
        with pytest.raises(ValueError, match="float32/float64"):
            _backend.choose(op, x.astype(np.float16))
    assert _backend.choose(op, np.zeros((100, 100))) == "numba"  # auto: above the threshold
    torch = pytest.importorskip("torch")
    with sk.backend("numba"):
        assert _backend.choose(op, torch.zeros(2, 3), front="torch") == "numba"


# -------------------------------------------------------------------------- the array and torch fronts
@pytest.fixture
def kernel_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the kernel calls made (``run_family``, ``run_family_vjp``, ``run_family_loss``), recorded."""
    calls: list[str] = []
    for name in ("run_family", "run_family_vjp", "run_family_loss"):
        original = getattr(_backend, name)

        def record(*args: Any, _original: Any = original, _name: str = name) -> Any:
            calls.append(_name)
            return _original(*args)

        monkeypatch.setattr(_backend, name, record)
    return calls


@pytest.mark.parametrize("op", OPS)
def test_public_functions_run_the_kernels_on_numpy(op: str, kernel_calls: list[str]) -> None:
    """softmaxkit.<op> and its VJP and loss on NumPy arrays: the kernels above the threshold (and where
    ``backend("numba")`` names them, ``where`` and float16 included), with the generic code's values."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((80, 70))
    g = rng.standard_normal(x.shape)
    y = rng.integers(0, 70, 80)
    mapping, vjp, loss = getattr(sk, op), getattr(fam, f"{op}_vjp"), getattr(fam, f"{op}_loss_value_and_grad")
    np.testing.assert_allclose(mapping(x), generic(op, x), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(vjp(x, g), generic_vjp(op, x, g), rtol=1e-12, atol=1e-14)
    got = loss(x, y)
    with sk.backend("reference"):
        want = loss(x, y)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12, atol=1e-15)
    assert kernel_calls == ["run_family", "run_family", "run_family_vjp", "run_family_loss"]
    kernel_calls.clear()
    small, mask = x[:2, :5].astype(np.float16), np.array([True, False, True, True, False])
    with sk.backend("numba"):
        out = mapping(small, axis=0, where=mask[None, :])
    assert kernel_calls == ["run_family"]
    assert out.dtype == np.float16
    with sk.backend("reference"):
        want = mapping(small, axis=0, where=mask[None, :])
    np.testing.assert_allclose(out.astype(np.float64), want.astype(np.float64), **tol("float16"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS)
def test_torch_front_runs_the_kernels(op: str, dtype: str, kernel_calls: list[str]) -> None:
    """softmaxkit.torch's Functions on CPU float32/float64 tensors: forward and backward on the kernels
    (through NumPy views), the values and gradients of the torch code; a double backward takes the torch code."""
    torch = pytest.importorskip("torch")
    skt = pytest.importorskip("softmaxkit.torch")
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.standard_normal((80, 70)).astype(dtype))
    g = torch.from_numpy(rng.standard_normal((80, 70)).astype(dtype))
    y = torch.from_numpy(rng.integers(0, 70, 80))
    mapping, loss = getattr(skt, op), getattr(skt, f"{op}_loss")

    def run() -> tuple[Any, Any, Any, Any]:
        xr = x.clone().requires_grad_()
        p = mapping(xr, dim=-1)
        (dx,) = torch.autograd.grad(p, xr, g)
        xl = x.clone().requires_grad_()
        value = loss(xl, y)
        (dl,) = torch.autograd.grad(value, xl)
        return p.detach(), dx, value.detach(), dl

    got = run()
    assert kernel_calls == ["run_family", "run_family_vjp", "run_family_loss"]
    with sk.backend("reference"):
        want = run()
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), **tol(dtype))
    kernel_calls.clear()
    xr = x.clone().requires_grad_()
    (dx,) = torch.autograd.grad(mapping(xr, dim=-1), xr, g, create_graph=True)
    assert kernel_calls == ["run_family"]  # the backward took the torch code
    if op != "sparsemax":  # (sparsemax's Jacobian is constant on the support: no second derivative to take)
        (ddx,) = torch.autograd.grad((dx * g).sum(), xr)
        assert bool(torch.isfinite(ddx).all())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("op", OPS)
def test_losses_equal_the_generic_code(op: str, reduction: str, dtype: str, kernel_calls: list[str]) -> None:
    """The Fenchel–Young losses on the kernels: weights, ignored rows (holding nan: never read), a masked target
    (inf), a fully masked row (inf), a nan row (nan), each reduction; the generic code's values and gradients."""
    rng = np.random.default_rng(4)
    n, k = 40, 130
    x = (rng.standard_normal((n, k)) * 2.0).astype(dtype)
    y = rng.integers(0, k, n)
    y[3] = -100
    x[3, 5] = np.nan  # ignored: never read
    x[7, y[7]] = -np.inf  # the target masked: inf
    x[8] = -np.inf  # all masked: inf
    x[9, 0] = np.nan  # a kept nan row: nan
    weight = rng.uniform(0.0, 2.0, k).astype(dtype)
    weight[y[11]] = 0.0  # weightless: not read either
    x[11, 2] = np.inf
    keep = np.r_[0:7, 10:n]  # the rows whose loss is finite
    for w in (None, weight):
        value_and_grad = getattr(fam, f"{op}_loss_value_and_grad")
        kw: dict[str, Any] = {"weight": w, "reduction": reduction} | ({"alpha": 1.3} if op == "entmax_bisect" else {})
        with sk.backend("numba"):
            loss, grad = value_and_grad(x, y, **kw)
            finite_loss, finite_grad = value_and_grad(x[keep], y[keep], **kw)
        with sk.backend("reference"):
            want_loss, want_grad = value_and_grad(x, y, **kw)
            want_finite, want_finite_grad = value_and_grad(x[keep], y[keep], **kw)
        assert loss.dtype == grad.dtype == x.dtype
        np.testing.assert_allclose(loss, want_loss, **tol(dtype))
        np.testing.assert_allclose(grad, want_grad, **tol(dtype))
        np.testing.assert_allclose(finite_loss, want_finite, **tol(dtype))
        np.testing.assert_allclose(finite_grad, want_finite_grad, **tol(dtype))
    assert kernel_calls == ["run_family_loss"] * 4

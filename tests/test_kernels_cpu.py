"""The numba kernels (softmaxkit.kernels) against mpmath and against the reference code they must equal.

* ``vexp``, ``vexpm1`` and ``vlog1p`` against a 40-digit mpmath oracle over their whole domain: near overflow,
  through the subnormals to underflow, at 0, and at the special values.
* Every public function on the kernel path against the reference path, on shapes that straddle the vector
  widths (16 float32 lanes), the narrow/transposed tiles (32 classes), the blocks of the online pass (2048),
  the rows whose exponentials are kept (256 KiB) and the pieces cut for the threads; special rows in each.
* Cross-entropy with every combination of its options, non-contiguous inputs and other axes, inputs never
  modified, the loss alone never allocating an ``N x C`` array.
* Finally the reference's own behavioural and accuracy suites (their NumPy tests), collected here a second time
  and run with the kernels forced (the tests taking the ``xp`` fixture already run on ``numpy-numba``).
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import math
import tracemalloc
from pathlib import Path
from typing import Any

import mpmath
import numpy as np
import pytest

import softmaxkit as sk
import test_accuracy
import test_cross_entropy
import test_gradients
import test_properties
import test_softmax
from conftest import TOL, tol
from softmaxkit import _backend
from softmaxkit.kernels import numba as kernels
from softmaxkit.kernels.numba import _runtime

numba = pytest.importorskip("numba")
cpu = _runtime.load()
from softmaxkit.kernels.numba import _vmath  # noqa: E402  (after load(), which configures numba's cache)

DTYPES = ["float32", "float64"]


@pytest.fixture(autouse=True)
def _kernels_forced(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Every NumPy float32/float64 input of any size goes to the kernels (``auto`` without its size threshold);
    other arrays go where ``auto`` sends them, so that the suites collected again below run unchanged. Explicit
    ``backend=`` keywords still win."""
    monkeypatch.setattr(_backend, "THRESHOLD", 0)
    with sk.backend("auto"):
        yield


# ------------------------------------------------------------------------------- exp, expm1, log1p vs mpmath
mpmath.mp.dps = 40


def ulp_errors(x: np.ndarray, got: np.ndarray, exact: Any) -> np.ndarray:
    """``|got - exact(x)|`` in units of the last place of the exact value in ``got``'s dtype.

    Below the smallest normal number the unit is the subnormal spacing. An exact value beyond the dtype's range
    must come out as the infinity of its sign (error 0, else inf); an exact 0 must be 0.
    """
    info = np.finfo(got.dtype)
    errors = []
    for xi, gi in zip(x.tolist(), got.tolist(), strict=True):
        if math.isnan(xi):
            errors.append(0.0 if math.isnan(gi) else math.inf)
            continue
        v = exact(mpmath.mpf(xi))
        if mpmath.isinf(v) or abs(v) > info.max:
            errors.append(0.0 if gi == math.copysign(math.inf, v) else math.inf)
        elif v == 0:
            errors.append(0.0 if gi == 0 else math.inf)
        elif math.isnan(gi) or math.isinf(gi):
            errors.append(math.inf)
        else:
            exponent = max(int(mpmath.floor(mpmath.log(abs(v), 2))), int(info.minexp))
            unit = mpmath.mpf(2) ** (exponent - int(info.nmant))
            errors.append(float(abs(mpmath.mpf(gi) - v) / unit))
    return np.array(errors)


def _domain(dtype: str, lo: float, hi: float, n: int = 1500) -> np.ndarray:
    """Random points over ``[lo, hi]``, dense near 0 and near both ends, plus the special values."""
    rng = np.random.default_rng(len(dtype) + int(hi))
    info = np.finfo(dtype)
    parts = [
        rng.uniform(lo, hi, n),
        rng.uniform(-1.0, 1.0, n // 4),
        rng.uniform(hi - 1.0, hi + 1.0, n // 8),
        rng.uniform(lo - 1.0, lo + 30.0, n // 4),
        np.logspace(-30, 0, n // 8) * rng.choice([-1.0, 1.0], n // 8),
        [0.0, -0.0, np.inf, -np.inf, np.nan, float(info.max), -float(info.max), float(info.tiny)],
    ]
    return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]).astype(dtype)


EXP_RANGE = {"float32": (-104.5, 89.0), "float64": (-746.0, 710.0)}


@pytest.mark.parametrize("impl", ["exp_array", "exp_portable_array"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_is_within_one_ulp_over_its_whole_domain(dtype: str, impl: str) -> None:
    """Both scalings (AVX-512's ``vscalef`` and the portable two products) are within 1 ulp, subnormals too."""
    x = _domain(dtype, *EXP_RANGE[dtype])
    got = np.empty_like(x)
    getattr(_vmath, impl)(x, got)
    err = ulp_errors(x, got, mpmath.exp)
    assert np.max(err) <= 1.0, f"{np.max(err)} ulp at x = {x[np.argmax(err)]!r}: {got[np.argmax(err)]!r}"
    specials = np.array([-np.inf, np.inf, np.nan, 0.0], dtype=dtype)
    out = np.empty_like(specials)
    getattr(_vmath, impl)(specials, out)
    np.testing.assert_array_equal(out, [0.0, np.inf, np.nan, 1.0])


@pytest.mark.parametrize("impl", ["exp_nonpos_array", "exp_nonpos_portable_array"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_of_nonpositive_numbers_is_exp_bit_for_bit(dtype: str, impl: str) -> None:
    """``vexp_nonpos`` (the kernels' ``exp(x - m)``; without AVX-512 scaled in four operations instead of eight)
    equals ``vexp`` on ``x <= 0``, subnormal results, ``-inf`` and nan included."""
    x = _domain(dtype, EXP_RANGE[dtype][0], 0.0)
    x = np.concatenate([x[~(x > 0)], np.array([-np.inf, np.nan, -0.0], dtype=dtype)])
    want, got = np.empty_like(x), np.empty_like(x)
    _vmath.exp_array(x, want)
    getattr(_vmath, impl)(x, got)
    np.testing.assert_array_equal(got, want)
    assert np.max(ulp_errors(x[np.isfinite(x)], got[np.isfinite(x)], mpmath.exp)) <= 1.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_rounds_correctly_at_the_edges_of_its_range(dtype: str) -> None:
    """The largest finite result, the first overflow, the smallest subnormal and the first underflow to 0."""
    info = np.finfo(dtype)
    ln_max = float(mpmath.log(mpmath.mpf(float(info.max))))
    ln_sub = float(mpmath.log(mpmath.mpf(float(info.smallest_subnormal))))
    x = np.array([ln_max, ln_sub, ln_sub - 0.69, ln_sub - 0.70], dtype=dtype)
    x = np.concatenate([x, np.nextafter(x, np.inf), np.nextafter(x, -np.inf)])
    got = np.empty_like(x)
    _vmath.exp_array(x, got)
    assert np.max(ulp_errors(x, got, mpmath.exp)) <= 1.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_expm1_is_within_two_ulp(dtype: str) -> None:
    """``vexpm1`` (the softcap's tanh and differences) keeps its relative accuracy near 0; -0.0 stays -0.0."""
    x = _domain(dtype, *EXP_RANGE[dtype])
    got = np.empty_like(x)
    _vmath.expm1_array(x, got)
    err = ulp_errors(x, got, mpmath.expm1)
    assert np.max(err) <= 2.0, f"{np.max(err)} ulp at x = {x[np.argmax(err)]!r}"
    zero = np.array([-0.0], dtype=dtype)
    _vmath.expm1_array(zero, got[:1])
    assert got[0] == 0
    assert np.signbit(got[0])


def test_log1p_is_within_one_and_a_half_ulp() -> None:
    """``vlog1p`` of the (float64) rest of the normaliser: [0, inf], subnormal to huge, and nan."""
    rng = np.random.default_rng(7)
    tiny = np.finfo(np.float64).smallest_subnormal
    x = np.concatenate(
        [
            rng.uniform(0.0, 1.0, 1500),
            rng.uniform(0.0, 4.0e6, 500),
            np.logspace(-320, 300, 500),
            [0.0, tiny, 2.0**-53, 2.0**-52, 1.0, math.sqrt(2.0) - 1.0, 2.0**52, 2.0**53, np.inf, np.nan],
        ]
    )
    got = np.empty_like(x)
    _vmath.log1p_array(x, got)
    err = ulp_errors(x, got, mpmath.log1p)
    assert np.max(err) <= 1.5, f"{np.max(err)} ulp at x = {x[np.argmax(err)]!r}"


def test_cache_stamp_matches_the_sources() -> None:
    """numba's cache does not see edits to _rows.py or _vmath.py: cpu.SOURCES_SHA must be updated with them."""
    folder = Path(kernels.__file__).parent
    digest = hashlib.sha256()
    for name in ("_rows.py", "_vmath.py"):
        digest.update((folder / name).read_bytes())
    want = digest.hexdigest()[:16]
    assert want == cpu.SOURCES_SHA, f"set SOURCES_SHA in softmaxkit/kernels/numba/_kernels.py to {want!r}"
    assert want == cpu.plain.SOURCES_SHA, f"set SOURCES_SHA in softmaxkit/kernels/numba/_plain.py to {want!r}"
    from softmaxkit.kernels.numba import _rows

    copied = (kernels.NARROW, kernels.BLOCK, kernels.STORE)  # where numba is not imported
    assert copied == (_rows.NARROW, _rows.BLOCK, _rows.STORE)


# ------------------------------------------------------------------------------- the row maximum, codegen
@pytest.mark.parametrize("dtype", DTYPES)
def test_row_max_of_sort_keys_is_maxnum(dtype: str) -> None:
    """The row maximum reduces integer sort keys; it must equal IEEE maxNum's reduction (nan ignored) on every
    special row, signed zeros included, and fall back where a nan sorts above +inf."""
    from softmaxkit.kernels.numba import _rows

    nan, inf = np.nan, np.inf
    neg_nan = -np.abs(np.array(nan, dtype=dtype))  # sign bit set: sorts below -inf
    assert np.signbit(neg_nan)
    rows = [
        [1.0, 2.0, 3.0],
        [-3.0, -2.0, -1.5],
        [0.0, -0.0],
        [-0.0, -0.0],
        [-0.0, 0.0, -1.0],
        [nan, 1.0, -2.0],
        [1.0, nan, 5.0],
        [nan, nan],
        [neg_nan, neg_nan, -inf],
        [neg_nan, 2.0],
        [-inf, -inf],
        [-inf, nan],
        [inf, nan, 1.0],
        [-inf, 1e-45 if dtype == "float32" else 5e-324, -1e-45 if dtype == "float32" else -5e-324],
        [np.finfo(dtype).max, -np.finfo(dtype).max, inf],
        [],
    ]
    rng = np.random.default_rng(7)
    rows += [list(rng.standard_normal(k) * 10**rng.integers(-30, 30)) for k in (1, 15, 16, 17, 63, 1000, 4097)]
    for row in rows:
        x = np.array(row, dtype=dtype)
        want = x[~np.isnan(x)].max() if np.any(~np.isnan(x)) else -np.inf
        got = _rows._row_max(x)
        assert got == want, row
        if want == 0:  # maxNum may give either zero of [0.0, -0.0]; of [-0.0, -0.0], -0.0
            assert np.signbit(got) == (not np.any((x == 0) & ~np.signbit(x))), row
        assert got == _rows._row_maxnum(x), row


def _compiled(chunk: Any, asm: bool = False) -> str:
    """The LLVM IR (or assembly) of a kernel's row loop (not cached: numba cannot show a cached kernel's)."""
    x = np.ones((4, 40), np.float32)
    chunk(x, np.empty_like(x), np.empty(1, np.float32), 0, 4)
    return "\n".join((chunk.inspect_asm() if asm else chunk.inspect_llvm()).values())


def test_the_common_kernels_count_no_references() -> None:
    """Compiled without numba's runtime: a reference count on every slice of a row cost a quarter of softmax's
    time on one thread (an atomic operation on a count all threads share)."""
    for chunk in (cpu.plain.softmax_chunk, cpu.plain.log_softmax_chunk):
        llvm = _compiled(chunk)
        assert "define" in llvm, chunk
        assert "NRT_incref" not in llvm, chunk
        assert "NRT_decref" not in llvm, chunk
    for kernel in (cpu.plain.softmax_rows, cpu.plain.cross_entropy_rows):
        assert kernel.targetoptions["_nrt"] is False, kernel
    # the parallel kernels allocate each piece's own scratch (once per piece), their chunks count no references


def test_the_exponential_loops_use_the_widest_vectors() -> None:
    """Where the CPU has AVX-512, the kernels' loops use 512-bit vectors, although LLVM tunes its Intel server
    targets for 256 bits (_vmath.wide)."""
    import llvmlite.binding as ll

    features = ll.get_host_cpu_features()
    if not features.get("avx512f") or numba.config.CPU_FEATURES is not None or numba.config.CPU_NAME is not None:
        pytest.skip("the host CPU has no AVX-512 (or numba is told to compile for another)")
    assert "zmm" in _compiled(cpu.plain.softmax_chunk, asm=True)


# --------------------------------------------------------------------- kernels against the reference
# (rows, classes): single rows; widths around the 16 float32 lanes, the 32-class narrow tiles, the 2048-entry
# blocks, the 64-entry last window of the plain passes (_rows.PAD; 65, 100, 1023, 2148: a window overlapping
# 63, 28, 1, 28 entries already summed, the last in a second block); enough rows to be cut into pieces for the
# threads (rows x classes >= 32768) and to span several tiles.
SHAPES = [
    (1, 1),
    (3, 7),
    (5003, 7),
    (2, 15),
    (4, 16),
    (3000, 16),
    (9, 17),
    (1100, 31),
    (4, 32),
    (5, 33),
    (1000, 33),
    (7, 65),
    (40, 100),
    (400, 100),
    (3, 1023),
    (40, 1023),
    (2, 2048),
    (17, 2049),
    (9, 2148),
    (3, 4097),
    (9, 4097),
]
# rows whose exponentials are kept in the output (<= 2 MiB, _rows.STORE) or recomputed: both sides of the limit
LONG_SHAPES = {"float32": [(2, 524288), (2, 524289)], "float64": [(2, 262144), (2, 262145)]}


def logits(shape: tuple[int, int], dtype: str, seed: int = 0) -> np.ndarray:
    """Random rows of every scale, with the special rows of the reference's tables mixed in."""
    rng = np.random.default_rng(seed + shape[0] * 7919 + shape[1])
    n, k = shape
    x = rng.standard_normal(shape) * 10.0 ** rng.uniform(-2, 2, (n, 1)) + rng.uniform(-50, 50, (n, 1))
    specials = [
        lambda r: np.full(k, -np.inf),  # fully masked
        lambda r: np.where(rng.random(k) < 0.5, -np.inf, r),  # partly masked
        lambda r: np.where(np.arange(k) == k // 2, np.nan, r),  # a nan
        lambda r: np.where(np.arange(k) == k - 1, np.inf, r),  # a +inf
        lambda r: np.full(k, 3.5),  # all tied
        lambda r: r + 1e7,  # a large shift
        lambda r: np.where(np.arange(k) < k // 2, -np.inf, r),  # masked prefix (leading blocks of -inf)
    ]
    for i, make in enumerate(specials):
        row = (i * 37) % n if n > len(specials) else i
        if row < n:
            x[row] = make(x[row])
    return x.astype(dtype)


def assert_same(got: Any, want: Any, dtype: str, what: str) -> None:
    assert np.asarray(got).dtype == np.asarray(want).dtype, what
    np.testing.assert_allclose(got, want, equal_nan=True, err_msg=what, **tol(dtype))


def _shapes(dtype: str) -> list[tuple[int, int]]:
    return SHAPES + LONG_SHAPES[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_family_equals_the_reference(dtype: str) -> None:
    for shape in _shapes(dtype):
        x = logits(shape, dtype)
        for temperature in (1.0, 0.7):
            for f in (sk.softmax, sk.log_softmax):
                what = f"{f.__name__} {shape} T={temperature}"
                got = f(x, temperature=temperature, backend="numba")
                assert_same(got, f(x, temperature=temperature, backend="reference"), dtype, what)
        got = sk.logsumexp(x, keepdims=True, backend="numba")
        assert_same(got, sk.logsumexp(x, keepdims=True, backend="reference"), dtype, f"logsumexp {shape}")
        _, sign = sk.logsumexp(x, return_sign=True, backend="numba")
        _, ref_sign = sk.logsumexp(x, return_sign=True, backend="reference")
        np.testing.assert_array_equal(sign, ref_sign)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_common_call_kernels_equal_the_general_ones(dtype: str) -> None:
    """The kernels with the options fixed (_plain.py, compiled alone for a first call) equal the general kernels.

    Up to the last bits: LLVM may contract the exponential or reassociate a block's sum differently in another
    kernel (the lse of a long float32 row differed by 2e-10).

    Softmax and the gradient keep the first pass's exponentials: they take rows of up to _rows.STORE bytes only.
    """
    for shape in [(5, 33), (40, 100), (40, 1023), (17, 2049), (9, 2148), *LONG_SHAPES[dtype]]:
        x = logits(shape, dtype)
        stored = shape[1] * x.itemsize <= kernels.STORE
        scratch = np.empty((1, -(-shape[1] // kernels.BLOCK)), dtype=dtype)
        for log in (True, False) if stored else (True,):
            got, want = np.empty_like(x), np.empty_like(x)
            (cpu.plain.log_softmax_rows if log else cpu.plain.softmax_rows)(x, got, scratch)
            cpu.softmax_rows(x, want, x.dtype.type(1.0), log)
            assert_same(got, want, dtype, f"{shape} log={log}")
        got_lse, want_lse = np.empty(shape[0]), np.empty(shape[0])
        cpu.plain.logsumexp_rows(x, got_lse, scratch)
        cpu.logsumexp_rows(x, want_lse)
        assert_same(got_lse, want_lse, "float64" if dtype == "float64" else "float32", f"lse {shape}")
        data = ce_inputs(shape, dtype)
        y, w = data["y"].astype(np.int64), data["w"]
        for want_grad in (True, False) if stored else (False,):
            grads = [np.empty((shape[0] if want_grad else 0, shape[1]), dtype=dtype) for _ in range(2)]
            rows = [np.empty(0 if want_grad else shape[0]) for _ in range(2)]
            sums = [np.zeros((1, 4)) for _ in range(2)]
            if want_grad:
                cpu.plain.cross_entropy_rows(x, y, -100, w, 0.5, grads[0], rows[0], scratch, sums[0])
            else:
                cpu.plain.cross_entropy_loss_rows(x, y, -100, w, rows[0], scratch, sums[0])
            cpu.cross_entropy_rows(x, y, -100, np.zeros((1, 1), dtype), w, 0, 0.0, 0.0, x.dtype.type(1.0), False,
                                   0.5, 0.25, grads[1], rows[1], sums[1])  # fmt: skip
            for a, b in ((grads[0], grads[1]), (rows[0], rows[1]), (sums[0], sums[1])):
                assert_same(a, b, dtype, f"cross-entropy {shape} grad={want_grad}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_kernel_without_softcap_code_equals_the_general_one(dtype: str) -> None:
    """cross_entropy_nocap_rows (compiled without the softcap's code, for a first call's sake) gives the general
    kernel's results for every target kind, label smoothing and z-loss, on short, long and multi-block rows."""
    for shape in [(40, 7), (5, 33), (17, 2049), (3, 5000)]:
        data = ce_inputs(shape, dtype)
        x, y, w = data["x"], data["y"].astype(np.int64), data["w"]
        q = np.ascontiguousarray(data["q"], dtype=dtype)
        for kind, eps, lam in [(0, 0.0, 1e-3), (1, 0.1, 0.0), (1, 0.3, 1e-4), (2, 0.0, 0.0), (2, 0.2, 1e-3)]:
            results = []
            for run in (cpu.cross_entropy_nocap_rows, cpu.cross_entropy_rows):
                grad, rows, sums = np.empty(shape, dtype=dtype), np.empty(shape[0]), np.zeros((1, 4))
                run(x, y if kind < 2 else y[:1] * 0, -100, q if kind == 2 else q[:1, :1], w, kind, eps, lam,
                    x.dtype.type(1.0), False, 0.5, 0.25, grad, rows, sums)  # fmt: skip
                results.append((grad, rows, sums))
            for a, b in zip(*results, strict=True):
                assert_same(a, b, dtype, f"{shape} kind={kind} eps={eps} lam={lam}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_special_rows_are_exact(dtype: str) -> None:
    """The special-value table, exactly: zeros, -inf, nan rows, +inf lse, and a masked entry's exact 0."""
    for k in (5, 40, 3000):
        x = np.tile(np.linspace(-1.0, 1.0, k), (5, 1)).astype(dtype)
        x[0] = -np.inf
        x[1, 1] = np.nan
        x[2, 2] = np.inf
        x[3, 0] = -np.inf
        x[4, 3] = np.inf
        x[4, 4] = np.nan
        p, lp, lse = sk.softmax(x), sk.log_softmax(x), sk.logsumexp(x)
        np.testing.assert_array_equal(p[0], 0.0)
        np.testing.assert_array_equal(lp[0], -np.inf)
        assert lse[0] == -np.inf
        for row in (1, 2, 4):
            assert np.all(np.isnan(p[row])), (k, row)
            assert np.all(np.isnan(lp[row])), (k, row)
        np.testing.assert_array_equal(lse[[1, 2, 4]], [np.nan, np.inf, np.nan])
        assert p[3, 0] == 0.0
        assert lp[3, 0] == -np.inf
        np.testing.assert_allclose(np.sum(p[3]), 1.0, rtol=4 * TOL[dtype][0])


# ----------------------------------------------------------------------------------------- cross-entropy
def ce_inputs(shape: tuple[int, int], dtype: str) -> dict[str, np.ndarray]:
    x = logits(shape, dtype, seed=1)
    n, k = shape
    rng = np.random.default_rng(n + 31 * k)
    y = rng.integers(0, k, n)
    y[rng.random(n) < 0.2] = -100  # ignored rows, one of them holding a nan
    nan_rows = np.flatnonzero(np.isnan(x).any(axis=1))
    if nan_rows.size and n > 1:
        y[nan_rows[0]] = -100
    masked = np.flatnonzero(np.isneginf(x[: min(n, 8)]).any(axis=1))
    for r in masked:  # a target on a -inf logit: inf loss, finite gradient
        y[r] = int(np.argmax(np.isneginf(x[r])))
    q = rng.exponential(1.0, shape) * (rng.random(shape) < 0.7)
    q = (q / np.maximum(q.sum(axis=1, keepdims=True), 1e-3)).astype(dtype)
    w = rng.uniform(0.0, 2.0, k).astype(dtype)
    w[rng.random(k) < 0.2] = 0.0
    return {"x": x, "y": y, "q": q, "w": w}


OPTIONS = list(
    itertools.product(
        ["index", "probs"],  # target
        [False, True],  # weight
        [0.0, 0.1],  # label_smoothing
        ["mean", "sum", "none"],
        [0.0, 1e-3],  # z_loss
        [None, 3.0],  # softcap
    )
)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_equals_the_reference_for_every_option(dtype: str) -> None:
    """Loss and gradient of all 96 option combinations on every width, special rows included; the loss alone
    equals the value of value_and_grad exactly. The shapes with thousands of rows (cut into pieces for the
    threads) take every 7th combination, a different seventh each, so that together they take all of them."""
    for i, shape in enumerate(_shapes(dtype)):
        data = ce_inputs(shape, dtype)
        combos = OPTIONS if shape[0] * shape[1] <= 20_000 else OPTIONS[i % 7 :: 7]
        for target, weighted, eps, reduction, lam, cap in combos:
            t = data["y"] if target == "index" else data["q"]
            kw = {
                "weight": data["w"] if weighted else None,
                "label_smoothing": eps,
                "reduction": reduction,
                "z_loss": lam,
                "softcap": cap,
            }
            what = f"{shape} target={target} {kw | {'weight': weighted}}"
            loss, grad = sk.cross_entropy_value_and_grad(data["x"], t, backend="numba", **kw)
            ref_loss, ref_grad = sk.cross_entropy_value_and_grad(data["x"], t, backend="reference", **kw)
            assert_same(loss, ref_loss, dtype, what)
            assert_same(grad, ref_grad, dtype, what)
            np.testing.assert_array_equal(sk.cross_entropy(data["x"], t, backend="numba", **kw), loss, err_msg=what)


@pytest.mark.parametrize("k", [10, 40, 3000])
def test_all_ignored_and_zero_weight_means_are_zero_on_the_kernel_path(k: int) -> None:
    x = np.random.default_rng(0).standard_normal((50, k)).astype(np.float32)
    x[3] = np.nan  # ignored rows are never read
    y = np.full(50, -100)
    for kw in ({}, {"label_smoothing": 0.1, "z_loss": 1e-3}):
        loss, grad = sk.cross_entropy_value_and_grad(x, y, backend="numba", **kw)
        assert float(loss) == 0.0
        np.testing.assert_array_equal(grad, 0.0)
    loss, grad = sk.cross_entropy_value_and_grad(
        x[4:], np.zeros(46, dtype=np.int64), weight=np.zeros(k, dtype=np.float32), backend="numba"
    )
    assert float(loss) == 0.0
    np.testing.assert_array_equal(grad, 0.0)


def test_subnormal_mean_denominator_in_float64_is_left_to_the_reference() -> None:
    x = np.zeros((1, 2))
    loss, grad = sk.cross_entropy_value_and_grad(x, np.array([0]), weight=np.array([1e-310, 1.0]), backend="numba")
    assert float(loss) == pytest.approx(math.log(2.0))
    np.testing.assert_allclose(grad, [[-0.5, 0.5]])


# ------------------------------------------------------------------------------ layouts, axes, inputs
def _layouts(dtype: str) -> list[tuple[np.ndarray, int]]:
    rng = np.random.default_rng(5)
    base = (rng.standard_normal((6, 40, 5)) * 3).astype(dtype)
    wide = (rng.standard_normal((30, 2100)) * 3).astype(dtype)
    return [
        (base, 1),  # class axis in the middle
        (base, 0),
        (np.asfortranarray(base[:, :, 0]), 1),  # Fortran order
        (wide[:, ::2], 1),  # strided rows
        (wide[::-1, 100:1300], 1),  # negative row stride, row offset
        (base[:, :, 1:4].transpose(2, 0, 1), 2),
    ]


@pytest.mark.parametrize("dtype", DTYPES)
def test_any_layout_and_axis_equals_the_reference(dtype: str) -> None:
    for x, axis in _layouts(dtype):
        for f in (sk.softmax, sk.log_softmax, sk.logsumexp):
            got = f(x, axis=axis, backend="numba")
            assert_same(got, f(x, axis=axis, backend="reference"), dtype, f"{f.__name__} axis={axis}")
        k = x.shape[axis]
        y = np.random.default_rng(1).integers(0, k, np.delete(x.shape, axis))
        for kw in ({}, {"label_smoothing": 0.1, "softcap": 2.0, "z_loss": 1e-3}):
            loss, grad = sk.cross_entropy_value_and_grad(x, y, axis=axis, backend="numba", **kw)
            ref_loss, ref_grad = sk.cross_entropy_value_and_grad(x, y, axis=axis, backend="reference", **kw)
            assert_same(loss, ref_loss, dtype, f"ce axis={axis} {kw}")
            assert_same(grad, ref_grad, dtype, f"ce grad axis={axis} {kw}")


def test_where_mask_equals_the_reference() -> None:
    x = logits((300, 50), "float64")
    mask = np.random.default_rng(2).random((1, 50)) < 0.7
    for f in (sk.softmax, sk.log_softmax, sk.logsumexp):
        assert_same(f(x, where=mask, backend="numba"), f(x, where=mask, backend="reference"), "float64", f.__name__)


def test_inputs_are_never_modified() -> None:
    data = ce_inputs((60, 70), "float32")
    x, y, q, w = data["x"], data["y"], data["q"], data["w"]
    before = [a.copy() for a in (x, y, q, w)]
    mask = x > 0
    sk.softmax(x, where=mask)
    sk.log_softmax(x, temperature=2.0)
    sk.logsumexp(x)
    for kind in (y, q):
        sk.cross_entropy_value_and_grad(x, kind, weight=w, label_smoothing=0.2, z_loss=0.1, softcap=3.0)
        sk.cross_entropy(x, kind, reduction="none")
    for a, b in zip((x, y, q, w), before, strict=True):
        np.testing.assert_array_equal(a, b)


def _peak_bytes(call: Any) -> int:
    """Peak of NumPy's allocations during ``call()`` (NumPy reports them to tracemalloc; numba's are a few KiB)."""
    call()  # compile and load outside the measurement
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("target", ["index", "probs"])
def test_the_loss_alone_never_allocates_an_n_by_c_array(target: str) -> None:
    x = np.random.default_rng(3).standard_normal((4096, 512)).astype(np.float32)
    y = np.random.default_rng(4).integers(0, 512, 4096)
    t = y if target == "index" else sk.softmax(x[::-1].copy())
    peak = _peak_bytes(lambda: kernels.cross_entropy(x, t, None, -100, 0.1, "mean", 1e-3, 3.0, want_grad=False))
    assert peak < x.nbytes / 16, f"kernel: peak {peak} bytes for logits of {x.nbytes}"
    if target == "index":  # the public function's checks of probabilities build boolean masks of the logits' shape
        peak = _peak_bytes(lambda: sk.cross_entropy(x, t, label_smoothing=0.1))
        assert peak < x.nbytes / 16, f"cross_entropy: peak {peak} bytes for logits of {x.nbytes}"


# ---------------------------------------------------------------------------------------------- benchmark
def test_bench_writes_a_table_json_and_a_plot(tmp_path: Path) -> None:
    import json

    from softmaxkit import bench, cli

    lines: list[str] = []
    result = bench.run(quick=True, out=lines.append, total=2**12, only=("softmaxkit", "numpy-naive"))
    assert {r["impl"] for r in result["results"]} == {"softmaxkit", "numpy-naive"}
    assert {(r["op"], r["classes"]) for r in result["results"]} == {
        (op, c) for op in bench.OPS for c in (*bench.CLASSES, bench.LATENCY[1])
    }
    assert all(r["gbps"] > 0 and r["vs_torch"] is None for r in result["results"])
    assert "cross_entropy" in lines[-1]
    assert bench.plot(result, tmp_path / "plot.png") == (tmp_path / "plot.png").exists()
    json.dumps(result)
    with pytest.raises(SystemExit):
        cli.main(["bench", "--help"])


# -------------------------------------------------- the reference's suites again, with the kernels forced
# Their NumPy tests are collected a second time here, where the autouse fixture above forces the kernels for
# every NumPy float32/float64 input of any size. Tests taking the ``xp`` fixture are left out: they run on
# the ``numpy-numba`` backend already.
# Tests of other array libraries and of float16/bfloat16 (computed by the reference in float32, never sent to a
# kernel) are left out as well: they would only run the same code again.
NOT_NUMPY = ("jax", "bfloat16", "half_precision", "low_precision", "every_backend")


def _numpy_tests(module: Any) -> dict[str, Any]:
    """``module``'s NumPy tests, renamed ``test_<module>__<test>`` (names are unique across the modules)."""
    short = module.__name__.removeprefix("test_")
    return {
        f"test_{short}__{name.removeprefix('test_')}": func
        for name, func in vars(module).items()
        if name.startswith("test_")
        and inspect.isfunction(func)
        and func.__module__ == module.__name__
        and "xp" not in inspect.signature(func).parameters
        and not any(word in name for word in NOT_NUMPY)
    }


for _module in (test_softmax, test_cross_entropy, test_accuracy, test_properties, test_gradients):
    globals().update(_numpy_tests(_module))

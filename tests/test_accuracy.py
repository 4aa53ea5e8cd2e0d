"""Accuracy of softmax, log_softmax, logsumexp and cross_entropy against a 60-digit mpmath oracle.

The bounds are the project's (softmaxkit.softmax's module notes), with ``eps = EPS[dtype]`` of the *input*
dtype (float16/bfloat16 are computed in float32 and rounded back, so their own eps is the one that counts):

* a softmax entry whose true value is >= the dtype's smallest normal: relative error
  <= 4 eps (2 + |x_i - max|), because the rounding of ``x_i - max`` is an absolute error that ``exp`` turns
  into a relative one;
* logsumexp, log_softmax and cross-entropy: absolute error <= 4 eps (1 + |value|);
* over the adversarial suite our worst error, normalised by those bounds, is no larger than torch's.

Every comparison reads the exact values of the already-rounded input (tests/oracle.py), and errors are
reported as ``error / bound``: at most 1 passes. The suite: random rows, magnitudes up to 1e30, exact ties,
subnormals, partial ``-inf`` masks, fully masked rows, rows spanning the underflow range, rows of length 1 and
10^6, logits shifted by 1e7, and logits of tens to ~100 (where a softcap of 30 saturates).
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import oracle
from conftest import EPS, LIBRARIES, to_numpy
from softmaxkit import cross_entropy, cross_entropy_value_and_grad, log_softmax, logsumexp, softmax

# ------------------------------------------------------------------------------------------- dtype facts
_TORCH_DTYPE = {name: getattr(torch, name) for name in EPS}
TINY = {name: torch.finfo(dt).tiny for name, dt in _TORCH_DTYPE.items()}  # smallest normal
HUGE = {name: torch.finfo(dt).max for name, dt in _TORCH_DTYPE.items()}
# The largest magnitude in the suite: 1e30 (the issue's), or a quarter of the dtype's range so that
# differences and log-probabilities of such logits (up to -2 * BIG) stay representable (float16).
BIG = {name: min(1e30, HUGE[name] / 4) for name in EPS}
# Shift for the "shift" rows: 1e7 (the issue's) where 1e7 + small integers is exact (float32: up to 2^24);
# float16 and bfloat16 cannot hold 1e7 + k, so the largest power of ten for which they can.
SHIFT = {"float64": 1e7, "float32": 1e7, "float16": 1e3, "bfloat16": 1e2}

# (backend, dtype) pairs of the accuracy runs: NumPy for the IEEE types, torch for bfloat16.
ACCURACY = [("numpy", "float64"), ("numpy", "float32"), ("numpy", "float16"), ("torch", "bfloat16")]
ACCURACY_IDS = [f"{lib}-{dtype}" for lib, dtype in ACCURACY]


def rounded(a: Any, dtype: str) -> np.ndarray:
    """``a`` rounded to ``dtype``, returned as the float64 array of those exact values."""
    t = torch.asarray(np.asarray(a, dtype=np.float64)).to(_TORCH_DTYPE[dtype])
    return t.to(torch.float64).numpy()


def _rng(*key: str) -> np.random.Generator:
    # keyed by the joined path, not conftest.seeded_rng's repr: the comparison with torch's worst error is
    # data-dependent, and this suite's data is the one its bounds were set on
    return np.random.default_rng(zlib.crc32("/".join(key).encode()))


# ---------------------------------------------------------------------------------------- the input suite
CASES = [
    "random",
    "huge",
    "ties",
    "subnormal",
    "masked",
    "fully-masked",
    "spread",
    "length-1",
    "length-1e6",
    "shift",
    "saturating",
]
CE_CASES = [c for c in CASES if c not in ("fully-masked", "length-1e6")]  # every row has a class to target
LONG = 10**6
# The comparison with torch runs on the adversarial cases. On random rows both implementations sit at the
# rounding floor (the final rounding alone is half an ulp) and which one is worst by a fraction of an ulp is
# a coin toss that depends on the seed; the bounds above still hold there for every row.
ADVERSARIAL = [c for c in CASES if c != "random"]


def _pooled_row(dtype: str) -> np.ndarray:
    """A row of 10^6 entries drawn from ~50 distinct values, so the oracle sums count * exp(v) exactly."""
    rng = _rng("pool", dtype)
    pool = np.unique(rounded(rng.normal(0.0, 4.0, 50), dtype))
    row = np.repeat(pool, rng.multinomial(LONG - pool.size, np.full(pool.size, 1 / pool.size)) + 1)
    return rng.permutation(row)[None, :]


@functools.cache
def suite(dtype: str) -> dict[str, np.ndarray]:
    """The adversarial inputs for ``dtype``: name -> 2-d float64 array of exact ``dtype`` values."""
    rng = _rng("suite", dtype)
    big, tiny, inf = BIG[dtype], TINY[dtype], np.inf
    sub = tiny * EPS[dtype]  # smallest subnormal
    k = 9
    huge = rng.uniform(-1.0, 1.0, (14, k)) * big
    huge[0] = big  # all tied at the top of the range
    huge[1] = [big, -big] * 4 + [big]
    huge[2] = [-big] * (k - 1) + [-big / 2]
    huge[3] = big * (1 - np.arange(k) * EPS[dtype])  # neighbours of big, gaps of ~big*eps: one-hot
    huge[4] = [big, 0.0, 1.0, -1.0, 0.5, 0.0, -big, 2.0, -3.0]
    ties = np.array(
        [
            [0.0] * 8,
            [3.5] * 8,
            [2.0, 2.0, 1.0, 1.0, 0.0, 0.0, -1.0, -1.0],
            [-7.0, 4.0, -7.0, 4.0, 4.0, -7.0, 0.0, 4.0],
            [1.0, 1.0 + EPS[dtype], 1.0, 1.0 + EPS[dtype], 1.0, 1.0, 1.0, 1.0],
        ]
    )
    subnormal = np.array(
        [
            np.arange(-4, 4) * sub,
            [sub, 0.0, -sub, tiny, -tiny, 0.0, 3 * sub, -tiny / 2],
            [0.0] * 7 + [sub],
            [-sub] * 8,
        ]
    )
    masked = rng.normal(0.0, 3.0, (16, 20))
    masked[rng.random(masked.shape) < 0.4] = -inf
    masked[np.arange(16), rng.integers(0, 20, 16)] = rng.normal(0.0, 3.0, 16)  # >= 1 finite entry per row
    masked[0] = -inf
    masked[0, 7] = 2.5  # a single entry left
    masked[1, :10] = -inf  # a masked prefix before the maximum
    fully = np.full((3, 5), -inf)
    fully[1, 2] = 0.0  # a live row between two fully masked ones
    depth = 1.25 * abs(np.log(sub))  # through the normal range, the subnormals and underflow to 0
    spread = np.stack([np.linspace(0.0, -depth, 64)] * 3)
    spread[1] = rng.permutation(spread[1])
    spread[2] = spread[2] + 7.0
    one = np.array([[0.0], [5.5], [-big], [big]])
    shift = rng.integers(-20, 21, (8, 16)) + SHIFT[dtype]
    # logits of tens to ~100, spread from 0.1 to 30: where a softcap of 30 (Gemma 2's) saturates
    saturating = rng.uniform(0.0, 100.0, (48, 1)) + 10.0 ** rng.uniform(-1, 1.5, (48, 1)) * rng.normal(
        size=(48, 8)
    )
    cases = {
        "random": rng.standard_normal((48, 37)) * 10.0 ** rng.uniform(-3, 2, (48, 1)),
        "huge": huge,
        "ties": ties,
        "subnormal": subnormal,
        "masked": masked,
        "fully-masked": fully,
        "spread": spread,
        "length-1": one,
        "length-1e6": _pooled_row(dtype),
        "shift": shift,
        "saturating": saturating,
    }
    return {name: rounded(a, dtype) for name, a in cases.items()}


@functools.cache
def family(dtype: str, case: str) -> oracle.Family:
    return oracle.softmax_family(suite(dtype)[case])


# ------------------------------------------------------------------------------------- bounds and errors
def softmax_bound(x: np.ndarray, p: oracle.Exact, dtype: str) -> np.ndarray:
    """``4 eps (2 + |x_i - max|) p_i`` where ``p_i`` >= the smallest normal ``tiny``; 0 (exact) if masked.

    Below ``tiny`` the issue promises no relative accuracy, and rightly: a backend may flush subnormal results
    to zero (XLA on CPU does). Such an entry is only held to an absolute error of ``tiny``: it must stay a
    subnormal, a zero, or round up to ``tiny`` itself.
    """
    masked = np.isneginf(x)
    with np.errstate(invalid="ignore"):  # -inf - -inf in fully masked rows
        spread = np.where(masked, 0.0, 2.0 + np.abs(x - np.max(x, axis=-1, keepdims=True)))
    bound = np.where(p.hi >= TINY[dtype], 4 * EPS[dtype] * spread * p.hi, TINY[dtype])
    return np.where(masked, 0.0, bound)


def log_bound(value: oracle.Exact, dtype: str, scale: Any = 1.0) -> np.ndarray:
    """``4 eps scale (1 + |value|)``; 0 (exact) where the value is infinite."""
    finite = np.isfinite(value.hi)
    return np.where(finite, 4 * EPS[dtype] * scale * (1.0 + np.abs(np.where(finite, value.hi, 0.0))), 0.0)


def normalised(ours: Any, exact: oracle.Exact, bound: np.ndarray, dtype: str) -> np.ndarray:
    """``|ours - exact| / bound`` (0 where equal, inf where the bound is 0 and they differ or ours is nan).

    A finite exact value beyond the dtype's range rounds to +-inf, so that is then the exact answer.
    """
    ours = np.asarray(ours, dtype=np.float64)
    err = exact.error(ours)
    overflow = np.isfinite(exact.hi) & (np.abs(exact.hi) > HUGE[dtype])
    err = np.where(overflow & (ours == np.copysign(np.inf, exact.hi)), 0.0, err)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(err == 0, 0.0, err / bound)


def describe(r: np.ndarray, x: np.ndarray, ours: Any, exact: oracle.Exact) -> str:
    """Where the worst normalised error is, with the input row, our value and the exact one."""
    at = np.unravel_index(int(np.argmax(r)), r.shape)
    row = x[at[0]] if x.ndim == 2 else x
    shown = np.array2string(row[:12], precision=17, separator=", ")
    ours = np.asarray(ours, dtype=np.float64)
    return (
        f"worst error/bound {r[at]:.4g} at {tuple(int(i) for i in at)}: ours {ours[at]!r}, exact "
        f"{exact.hi[at]!r} (+{exact.lo[at]!r}); row[:12] (exact input values, len {row.size}) = {shown}"
    )


def assert_within(r: np.ndarray, x: np.ndarray, ours: Any, exact: oracle.Exact) -> None:
    assert r.size == 0 or np.max(r) <= 1.0, describe(r, x, ours, exact)


# -------------------------------------------------------------------------- softmax, log_softmax, lse
FAMILY: dict[str, Callable[..., Any]] = {
    "softmax": softmax,
    "log_softmax": log_softmax,
    "logsumexp": logsumexp,
}


def family_error(func: str, x: np.ndarray, ours: Any, exact: oracle.Family, dtype: str) -> np.ndarray:
    value = getattr(exact, "lse" if func == "logsumexp" else func)
    bound = softmax_bound(x, value, dtype) if func == "softmax" else log_bound(value, dtype)
    return normalised(ours, value, bound, dtype)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(("lib", "dtype"), ACCURACY, ids=ACCURACY_IDS)
@pytest.mark.parametrize("func", list(FAMILY))
def test_softmax_family_within_bound(func: str, lib: str, dtype: str, case: str) -> None:
    x = suite(dtype)[case]
    ours = to_numpy(FAMILY[func](LIBRARIES[lib](x, dtype)))
    assert ours.shape == (x.shape[:-1] if func == "logsumexp" else x.shape)
    exact = family(dtype, case)
    r = family_error(func, x, ours, exact, dtype)
    assert_within(r, x, ours, getattr(exact, "lse" if func == "logsumexp" else func))


def test_long_row_is_really_pooled() -> None:
    """The 10^6 row holds ~50 distinct values, each many times: the oracle's shortcut is the exact sum."""
    row = suite("float32")["length-1e6"][0]
    values, counts = np.unique(row, return_counts=True)
    assert row.size == LONG
    assert 40 <= values.size <= 50
    assert counts.min() > 1000


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_log_softmax_shift_by_1e7(dtype: str) -> None:
    """``log_softmax(x) == log_softmax(x + 1e7)`` to the bound, where ``x + 1e7`` is exact; the naive
    ``x - logsumexp(x)`` is off by up to half a unit of 1e7's last place, so it must fail the same check."""
    x = np.arange(-20.0, 21.0, 3.0)[None, :] + np.array([[0.0], [1.0], [-7.0]])
    shifted = x + 1e7
    assert np.array_equal(rounded(shifted, dtype), shifted)  # the shift itself is exact
    exact = oracle.softmax_family(x).log_softmax  # log_softmax is shift invariant: the same exact value
    bound = log_bound(exact, dtype)
    a = to_numpy(log_softmax(np.asarray(x, dtype=dtype)))
    b = to_numpy(log_softmax(np.asarray(shifted, dtype=dtype)))
    assert_within(normalised(a, exact, bound, dtype), x, a, exact)
    assert_within(normalised(b, exact, bound, dtype), shifted, b, exact)
    np.testing.assert_array_less(np.abs(a.astype(np.float64) - b), bound)
    xs = np.asarray(shifted, dtype=dtype)
    naive = xs - to_numpy(logsumexp(xs, keepdims=True))
    r_naive = normalised(naive, exact, bound, dtype)
    if dtype == "float32":
        assert np.max(r_naive) > 100, f"the naive formula should fail; worst error/bound {np.max(r_naive)}"
    else:  # float64 holds 1e7 + lse to ~2e-9: still far beyond a bound of ~1e-15 * (1 + |value|)
        assert np.max(r_naive) > 1, f"the naive formula should fail; worst error/bound {np.max(r_naive)}"


# ------------------------------------------------------------------------------------ logsumexp with b=
def _scaled_inputs(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    rng = _rng("scaled", dtype)
    x = rng.normal(0.0, 5.0, (24, 12))
    b = rng.integers(-2, 3, x.shape).astype(np.float64)
    b[0] = np.abs(b[0]) + 1  # all positive
    b[1] = -np.abs(b[1]) - 1  # all negative
    b[2] = 0.0  # every entry left out
    x[3], b[3] = 1.5, [1.0, -1.0] * 6  # exact cancellation: log 0
    x[4, :6], b[4] = -np.inf, 0.5  # masked entries with b != 0
    x[5], b[5] = rng.uniform(-1, 1, 12) * BIG[dtype], rng.choice([-0.5, 0.25, 3.0], 12)
    b[6] = rng.uniform(-1.0, 1.0, 12) * 10.0 ** rng.uniform(-3, 3, 12)  # fractional, mixed signs
    return rounded(x, dtype), rounded(b, dtype)


@pytest.mark.parametrize(("lib", "dtype"), ACCURACY, ids=ACCURACY_IDS)
def test_logsumexp_with_b_and_sign(lib: str, dtype: str) -> None:
    """``log|sum b e^x|`` and its sign against the oracle.

    A signed sum can cancel: its relative error is that of the terms times the condition number
    ``kappa = sum |b e^x| / |sum b e^x|``, so the lse bound is multiplied by ``kappa`` (1 when the b's share a
    sign, which is the plain bound). The sign is only determined where ``4 eps kappa < 1``.
    """
    x, b = _scaled_inputs(dtype)
    be = LIBRARIES[lib]
    lse, sign = logsumexp(be(x, dtype), b=be(b, dtype), return_sign=True)
    lse, sign = to_numpy(lse), to_numpy(sign)
    exact = oracle.logsumexp_scaled(x, b)
    r = normalised(lse, exact.lse, log_bound(exact.lse, dtype, exact.kappa), dtype)
    assert_within(r, x, lse, exact.lse)
    determined = 4 * EPS[dtype] * exact.kappa < 1
    np.testing.assert_array_equal(sign[determined], exact.sign[determined])
    assert list(exact.sign[1:4]) == [-1, 0, 0]  # the rows mean what they say
    plain = to_numpy(logsumexp(be(x, dtype), b=be(b, dtype)))
    np.testing.assert_array_equal(plain, np.where(sign < 0, np.nan, lse))  # negative sum: nan, as SciPy


# ----------------------------------------------------------------------------------------- cross-entropy
CE_OPTIONS: dict[str, dict[str, Any]] = {
    "index": {},
    "index-smoothing": {"label_smoothing": 0.1},
    "probs": {},
    "probs-smoothing": {"label_smoothing": 0.2},
    "z_loss": {"z_loss": 1e-4},
    "softcap": {"softcap": 30.0},
    "smoothing-z_loss-softcap": {"label_smoothing": 0.1, "z_loss": 1e-4, "softcap": 30.0},
}
TORCH_CE_OPTIONS = ["index", "index-smoothing", "probs", "probs-smoothing"]  # what F.cross_entropy has


def _targets(x: np.ndarray, probs: bool, dtype: str, rng: np.random.Generator) -> np.ndarray:
    """Class indices (a third at the row's smallest logit, far from the max; a third at the max; a third at
    random; -100, ignored, for a fully masked row), or probabilities (0 where the logit is masked, rows
    summing to ~1, rounded to ``dtype``)."""
    live = np.isfinite(x)
    if probs:
        t = np.where(live, rng.exponential(1.0, x.shape), 0.0)
        t[::4] = np.where(live[::4], rng.random(live[::4].shape) < 0.2, 0.0)  # sparse rows, some all-zero
        t = t / np.maximum(t.sum(axis=-1, keepdims=True), 1.0)
        return rounded(t, dtype)
    far = np.argmin(np.where(live, x, np.inf), axis=-1)
    near = np.argmax(x, axis=-1)
    pick = np.array([rng.choice(np.flatnonzero(row)) if row.any() else 0 for row in live])
    index = np.choose(np.arange(len(x)) % 3, [far, near, pick])
    return np.where(live.any(axis=-1), index, -100).astype(np.int64)


@functools.cache
def targets(dtype: str, case: str, probs: bool) -> np.ndarray:
    return _targets(suite(dtype)[case], probs, dtype, _rng("targets", dtype, case))


def _ce_target(dtype: str, case: str, option: str) -> np.ndarray:
    return targets(dtype, case, option.startswith("probs"))


@functools.cache
def ce_oracle(dtype: str, case: str, option: str) -> oracle.CrossEntropy:
    return oracle.cross_entropy(suite(dtype)[case], _ce_target(dtype, case, option), **CE_OPTIONS[option])


def _ce_args(lib: str, dtype: str, case: str, option: str) -> tuple[Any, Any]:
    be = LIBRARIES[lib]
    t = _ce_target(dtype, case, option)
    return be(suite(dtype)[case], dtype), be(t, None if t.dtype.kind == "i" else dtype)


def gradient_bound(ex: oracle.CrossEntropy, dtype: str, z_loss: float) -> np.ndarray:
    """Absolute bound on each gradient entry, from the softmax bound carried through ``g = p S - q``.

    ``g_j = p_j S - q_j`` with ``S = sum q + 2 z_loss lse``. What is provable in working precision:

    * ``p_j`` is within the softmax bound, ``4 eps (2 + |d_j|) max(p_j, tiny)``, and is multiplied by ``S``;
      the lse inside ``S`` is within ``4 eps (1 + |lse|)``, so ``S`` is taken as
      ``sum q + 2 z_loss (1 + |lse|)``;
    * the products, ``q`` itself (``eps / C`` is rounded) and the final subtraction add a rounding of the
      result's size: ``4 eps |g_j|``. This is what makes ``p_y - 1`` fine to ``eps`` in absolute terms when
      ``p_y`` is tiny, and it does not promise a relative accuracy where ``p_j S`` and ``q_j`` cancel.
    * Under a softcap ``c`` the capped logits ``c tanh(x / c)`` are rounded before the softmax sees them, an
      absolute error up to ~``eps |c tanh|`` each that reaches ``d_j`` through two logits:
      ``2 max_k |c tanh|`` joins ``|d_j|``. The factor ``1 - tanh^2`` is evaluated from the rounded ``tanh``
      (as every implementation does, torch's ``tanh_backward`` included), an absolute error of a few eps, so
      the last term is taken on the gradient before that factor, ``|g_j / (1 - tanh^2)|``.
    """
    spread = np.where(np.isneginf(ex.shifted), 0.0, 2.0 + np.abs(ex.shifted) + 2.0 * ex.cap_scale[..., None])
    mass = ex.target_mass + 2.0 * z_loss * (1.0 + np.abs(ex.lse))
    scale = spread * np.maximum(ex.p, TINY[dtype]) * mass[..., None] + np.abs(ex.grad_uncapped)
    return 4 * EPS[dtype] * scale


@pytest.mark.parametrize("case", CE_CASES)
@pytest.mark.parametrize("option", list(CE_OPTIONS))
@pytest.mark.parametrize(("lib", "dtype"), ACCURACY, ids=ACCURACY_IDS)
def test_cross_entropy_within_bound(lib: str, dtype: str, option: str, case: str) -> None:
    """Per-row losses (reduction="none") and their mean within ``4 eps (1 + |value|)``."""
    x = suite(dtype)[case]
    ex = ce_oracle(dtype, case, option)
    logits, target = _ce_args(lib, dtype, case, option)
    rows = to_numpy(cross_entropy(logits, target, reduction="none", **CE_OPTIONS[option]))
    assert_within(normalised(rows, ex.loss, log_bound(ex.loss, dtype), dtype), x, rows, ex.loss)
    mean = to_numpy(cross_entropy(logits, target, **CE_OPTIONS[option]))
    assert_within(normalised(mean, ex.mean, log_bound(ex.mean, dtype), dtype)[None], x, mean[None], ex.mean)


@pytest.mark.parametrize("case", CE_CASES)
@pytest.mark.parametrize("option", list(CE_OPTIONS))
@pytest.mark.parametrize(("lib", "dtype"), ACCURACY, ids=ACCURACY_IDS)
def test_cross_entropy_gradient_within_bound(lib: str, dtype: str, option: str, case: str) -> None:
    """``cross_entropy_value_and_grad``'s closed-form gradient against the mpmath gradient (see
    :func:`gradient_bound`), for reduction="none" (each row's own gradient) and "mean" (divided by N)."""
    x = suite(dtype)[case]
    ex = ce_oracle(dtype, case, option)
    bound = gradient_bound(ex, dtype, CE_OPTIONS[option].get("z_loss", 0.0))
    logits, target = _ce_args(lib, dtype, case, option)
    for reduction, exact, scale in (("none", ex.grad, 1.0), ("mean", ex.mean_grad, 1.0 / len(x))):
        loss, grad = cross_entropy_value_and_grad(logits, target, reduction=reduction, **CE_OPTIONS[option])
        grad = to_numpy(grad)
        assert_within(normalised(grad, exact, bound * scale, dtype), x, grad, exact)
        ref = to_numpy(cross_entropy(logits, target, reduction=reduction, **CE_OPTIONS[option]))
        np.testing.assert_array_equal(to_numpy(loss), ref)  # the value is exactly cross_entropy's


# ------------------------------------------------------------------------------------- against torch
def _torch_family(func: str, x: np.ndarray, dtype: str) -> np.ndarray:
    t = torch.from_numpy(x.astype(dtype))
    if func == "softmax":
        return torch.softmax(t, dim=-1).numpy()
    if func == "log_softmax":
        return torch.log_softmax(t, dim=-1).numpy()
    return torch.logsumexp(t, dim=-1).numpy()


def _worst(r: np.ndarray, where: str, best: tuple[float, str]) -> tuple[float, str]:
    if r.size and np.max(r) > best[0]:
        return float(np.max(r)), where
    return best


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("func", [*FAMILY, "cross_entropy"])
def test_not_less_accurate_than_torch(func: str, dtype: str, record_property: Any) -> None:
    """Worst ``error / bound`` over the adversarial suite, ours and torch's on the same inputs: ours is no larger.

    Rows where torch's special values differ from ours by policy are left out: fully masked rows (torch:
    nan) and, for probability targets, rows with a masked logit (torch: ``0 * -inf = nan``).
    """
    ours_worst, torch_worst = (0.0, ""), (0.0, "")
    if func in FAMILY:
        for case in ADVERSARIAL:
            rows = np.isfinite(suite(dtype)[case]).any(axis=-1)  # not fully masked
            x = suite(dtype)[case][rows]
            exact = getattr(family(dtype, case), "lse" if func == "logsumexp" else func)[rows]
            bound = softmax_bound(x, exact, dtype) if func == "softmax" else log_bound(exact, dtype)
            ours = to_numpy(FAMILY[func](np.asarray(x, dtype=dtype)))
            theirs = _torch_family(func, x, dtype)
            ours_worst = _worst(normalised(ours, exact, bound, dtype), case, ours_worst)
            torch_worst = _worst(normalised(theirs, exact, bound, dtype), case, torch_worst)
    else:
        for case in (c for c in CE_CASES if c in ADVERSARIAL):
            for option in TORCH_CE_OPTIONS:
                x = suite(dtype)[case]
                rows = np.isfinite(x).all(axis=-1) if option.startswith("probs") else np.ones(len(x), bool)
                exact = ce_oracle(dtype, case, option).loss[rows]
                bound = log_bound(exact, dtype)
                logits, target = _ce_args("numpy", dtype, case, option)
                kw = CE_OPTIONS[option]
                ours = to_numpy(cross_entropy(logits, target, reduction="none", **kw))[rows]
                tl, tt = torch.from_numpy(logits), torch.from_numpy(target)
                theirs = F.cross_entropy(tl, tt, reduction="none", **kw).numpy()[rows]
                where = f"{case}/{option}"
                ours_worst = _worst(normalised(ours, exact, bound, dtype), where, ours_worst)
                torch_worst = _worst(normalised(theirs, exact, bound, dtype), where, torch_worst)
    line = (
        f"{func} {dtype}: worst error/bound ours {ours_worst[0]:.4g} ({ours_worst[1]}), "
        f"torch {torch_worst[0]:.4g} ({torch_worst[1]})"
    )
    print(line)
    record_property(f"{func}-{dtype}", line)
    assert ours_worst[0] <= torch_worst[0], line


# --------------------------------------------------------------------------------------- every backend
def _fit(row: np.ndarray, width: int) -> np.ndarray:
    """A row cut (evenly spaced entries, so a spread keeps its span) or repeated to ``width`` entries."""
    if row.size >= width:
        return row[np.linspace(0, row.size - 1, width).astype(int)]
    return np.resize(row, width)


@functools.cache
def moderate(dtype: str) -> np.ndarray:
    """One batch of up to 8 rows of every case but the 10^6 one, all 16 wide: one shape per dtype, so that
    JAX compiles each operation once."""
    cases = [c for c in CASES if c != "length-1e6"]
    return np.stack([_fit(row, 16) for case in cases for row in suite(dtype)[case][:8]])


def test_every_backend_within_bound(xp: Any, float_dtype: str) -> None:
    """The same bounds on every array library, float64 and float32, on a moderate adversarial batch."""
    x = moderate(float_dtype)
    arr = xp(x, float_dtype)
    exact = oracle.softmax_family(x)
    for func in FAMILY:
        ours = to_numpy(FAMILY[func](arr))
        r = family_error(func, x, ours, exact, float_dtype)
        value = getattr(exact, "lse" if func == "logsumexp" else func)
        assert np.max(r) <= 1.0, f"{xp}/{func}: " + describe(r, x, ours, value)
    # cross-entropy with class indices and smoothing; fully masked rows are ignored and must give exactly 0
    target = _targets(x, False, float_dtype, _rng("moderate", float_dtype))
    kept = target != -100
    assert 0 < kept.sum() < len(x)
    rows = to_numpy(cross_entropy(arr, xp(target), reduction="none", label_smoothing=0.1))
    np.testing.assert_array_equal(rows[~kept], 0.0)
    ex = oracle.cross_entropy(x[kept], target[kept], label_smoothing=0.1).loss
    r = normalised(rows[kept], ex, log_bound(ex, float_dtype), float_dtype)
    assert np.max(r) <= 1.0, f"{xp}/cross_entropy: " + describe(r, x[kept], rows[kept], ex)

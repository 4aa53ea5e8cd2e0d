"""Hypothesis properties of softmax, log_softmax, logsumexp, their derivatives and cross-entropy.

Every bound is TOL (two implementations of one quantity) or a multiple of EPS, both from conftest. Where the two
sides of a comparison see differently rounded inputs (``x + c``, ``x / T``, a finite-difference step) or sum
many terms, the extra error is derived in the test from the notes of :mod:`softmaxkit.softmax`: an entry of
softmax is accurate to a relative ``K·ε·(2 + |x_i − m|)``, a log-domain value to an absolute
``K·ε·(1 + |value|)``, and a sum of ``n`` terms to ``n·ε`` times the sum of their magnitudes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import softmaxkit as sk
from conftest import EPS, LIBRARIES, TOL, to_numpy
from softmaxkit.softmax import log_softmax_jvp, log_softmax_vjp, softmax_jacobian, softmax_jvp, softmax_vjp

DTYPES = ["float64", "float32"]
K = 4  # the constant of the module notes' accuracy bounds, K·ε·(...)
BOUND = 2.0**10  # |logit| <= 1024: far past exp's overflow (709.8 in float64, 88.7 in float32), still sensible
# Wide enough to overflow any unshifted exp, narrow enough that lse², a weighted sum of 40 classes and a
# difference of two logits stay finite: 2**508 in float64, 2**60 in float32.
WIDE = {d: 2.0 ** (np.finfo(d).maxexp // 2 - 4) for d in DTYPES}
SHAPES = st.tuples(st.integers(1, 6), st.integers(1, 40))
OTHER_BACKENDS = [name for name in LIBRARIES if name != "numpy"]


# ------------------------------------------------------------------------------------------------ helpers
def floats(dtype: str, lo: float = -BOUND, hi: float = BOUND) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, width=np.finfo(dtype).bits)


def arrays(dtype: str, shape: Any = SHAPES, bound: float = BOUND) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.dtype(dtype), shape, elements=floats(dtype, -bound, bound))


def assert_close(actual: Any, desired: Any, dtype: str, *, scale: Any = 1.0, err: Any = 0.0) -> None:
    """``|actual − desired| <= rtol·|desired| + atol·scale + err`` entrywise; infinities must match exactly.

    (rtol, atol) is ``TOL[dtype]``; ``scale`` is the magnitude of the terms behind the compared values (atol
    is never scaled below 1) and ``err`` the rounding their inputs carry, both derived by the calling test.
    """
    rtol, atol = TOL[dtype]
    a = np.asarray(actual, dtype=np.float64)
    d = np.asarray(desired, dtype=np.float64)
    assert a.shape == d.shape, (a.shape, d.shape)
    allowed = rtol * np.abs(d) + atol * np.maximum(scale, 1.0) + np.asarray(err)
    with np.errstate(invalid="ignore"):
        ok = (a == d) | (np.abs(a - d) <= allowed)
    if not np.all(ok):
        i = tuple(np.argwhere(~ok)[0])
        allowed_i = np.broadcast_to(allowed, a.shape)[i]
        raise AssertionError(
            f"{int(np.sum(~ok))} of {a.size} entries differ; first at {i}: {a[i]!r} vs {d[i]!r}, "
            f"|diff| {abs(a[i] - d[i]):.3g} > allowed {allowed_i:.3g}"
        )


def log_err(v: Any, dtype: str) -> np.ndarray:
    """Absolute accuracy of a computed log-domain value ``v`` (module notes)."""
    return K * EPS[dtype] * (1.0 + np.abs(np.asarray(v, dtype=np.float64)))


def prob_rel_err(x: np.ndarray, dtype: str) -> np.ndarray:
    """Relative accuracy of each computed softmax entry of the logits ``x`` (module notes)."""
    x64 = x.astype(np.float64)
    finite_max = np.max(np.where(np.isfinite(x64), x64, -np.inf), axis=-1, keepdims=True)
    spread = np.where(np.isfinite(x64), finite_max - x64, 0.0)
    return K * EPS[dtype] * (2.0 + spread)


def ce_grad_scale(x: np.ndarray, y: np.ndarray, opts: dict[str, Any], reduction: str) -> float:
    """Size of the terms of the cross-entropy gradient, (p·Σ_c w_c q_c + w ⊙ q)/D + 2λ·|lse|·p.

    D is the ``mean`` denominator of class-index targets, Σ w_y (1 for the other reductions).
    """
    n = x.shape[-1]
    w = np.ones(n) if opts["weight"] is None else opts["weight"].astype(np.float64)
    d = float(np.sum(w[y])) if reduction == "mean" else 1.0
    lse = float(np.max(np.abs(x))) + math.log(n)
    return (2 * float(np.max(w)) / d if d > 0 else 1.0) + 2 * opts["z_loss"] * lse


def one_hot(y: np.ndarray, n: int, dtype: str) -> np.ndarray:
    return (np.arange(n) == y[:, None]).astype(dtype)


@st.composite
def ce_options(draw: st.DrawFn, dtype: str, n: int, *, weight: bool = True) -> dict[str, Any]:
    """Every cross-entropy option except reduction and ignore_index, each either off or drawn."""
    weights = st.just(0.0) | st.floats(1 / 16, 8.0, width=np.finfo(dtype).bits)  # 0, or within 2**7 of 1
    w = hnp.arrays(np.dtype(dtype), n, elements=weights)
    return {
        "weight": draw(st.none() | w) if weight else None,
        "label_smoothing": draw(st.sampled_from([0.0, 1.0]) | st.floats(0.0, 1.0)),
        "z_loss": draw(st.just(0.0) | st.floats(0.0, 1.0)),
        "softcap": draw(st.none() | st.floats(1 / 8, 64.0)),
    }


# -------------------------------------------------------------------------------------- simplex and bounds
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_softmax_sums_to_one_within_n_eps_and_lies_in_unit_interval(dtype, data):
    x = data.draw(arrays(dtype))
    temperature = data.draw(st.just(1.0) | st.floats(1 / 16, 16.0))
    p = sk.softmax(x, temperature=temperature)
    assert p.dtype == x.dtype
    assert np.all((p >= 0) & (p <= 1))
    n = x.shape[-1]
    for row in p:
        assert abs(math.fsum(row.tolist()) - 1.0) <= n * EPS[dtype], row


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_lse_lies_between_max_and_max_plus_log_n(dtype, data):
    x = data.draw(arrays(dtype))
    lse = sk.logsumexp(x)
    m = np.max(x, axis=-1)
    assert lse.dtype == x.dtype
    assert np.all(m <= lse)  # exact: lse = m + log1p(s) with s >= 0
    log_n = math.log(x.shape[-1])
    # m + log n is only known to the rounding of that sum (an all-equal row reaches it).
    upper = m.astype(np.float64) + log_n + EPS[dtype] * (np.abs(m) + log_n)
    assert np.all(lse <= upper), (lse, upper)


# ---------------------------------------------------------------------------------------- shift invariance
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_exact_shift_changes_nothing(dtype, data):
    """Integer logits and shift: x + c is exact, so is x_i − m, and every result must be bit-identical."""
    integral = st.integers(-int(BOUND), int(BOUND)).map(float)
    x = data.draw(hnp.arrays(np.dtype(dtype), SHAPES, elements=integral))
    c = x.dtype.type(data.draw(st.integers(-(2**20), 2**20)))
    y = x + c
    np.testing.assert_array_equal(y - c, x)  # the shift is exact (|y| < 2**24)
    np.testing.assert_array_equal(sk.softmax(y), sk.softmax(x))
    np.testing.assert_array_equal(sk.log_softmax(y), sk.log_softmax(x))
    lse_x, lse_y = sk.logsumexp(x).astype(np.float64), sk.logsumexp(y).astype(np.float64)
    # lse(y) = m + c + log1p(s) and lse(x) + c differ by the rounding of the two additions.
    assert_close(lse_y, lse_x + float(c), dtype, err=EPS[dtype] * (np.abs(lse_x) + np.abs(lse_y)))


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_shift_invariance_up_to_the_rounding_of_the_shift(dtype, data):
    x = data.draw(arrays(dtype))
    c = data.draw(floats(dtype))
    y = x + x.dtype.type(c)
    # y_i = x_i + c + δ_i with |δ_i| <= ε/2·|y_i|; log p moves by δ_i − Σ p_j δ_j, at most 2·max|δ|.
    shift = EPS[dtype] * np.max(np.abs(y.astype(np.float64)), axis=-1, keepdims=True)
    ls_x, ls_y = sk.log_softmax(x), sk.log_softmax(y)
    assert_close(ls_y, ls_x, dtype, err=shift + log_err(ls_x, dtype) + log_err(ls_y, dtype))
    p_x, p_y = sk.softmax(x), sk.softmax(y)
    rel = np.expm1(shift) + prob_rel_err(x, dtype) + prob_rel_err(y, dtype)
    assert_close(p_y, p_x, dtype, err=rel * p_x)


# ------------------------------------------------------------------------------------------ log identities
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_log_softmax_is_x_minus_lse_and_its_exp_is_softmax(dtype, data):
    x = data.draw(arrays(dtype))
    ls = sk.log_softmax(x)
    lse = sk.logsumexp(x, keepdims=True)
    p = sk.softmax(x)
    assert ls.dtype == lse.dtype == p.dtype == x.dtype
    x_minus_lse = x.astype(np.float64) - lse.astype(np.float64)
    assert_close(ls, x_minus_lse, dtype, err=log_err(ls, dtype) + log_err(lse, dtype))
    exp_ls = np.exp(ls.astype(np.float64))
    assert_close(exp_ls, p, dtype, err=(log_err(ls, dtype) + prob_rel_err(x, dtype)) * exp_ls)


# ------------------------------------------------------------------------------------ gradient of lse = p
@settings(max_examples=100, deadline=None)
@given(x=arrays("float64"))
def test_softmax_is_the_gradient_of_lse_by_torch_autodiff(x):
    p = sk.softmax(x)

    def total_lse(t: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(t, dim=-1).sum()

    by_func = torch.func.grad(total_lse)(torch.asarray(x)).numpy()
    t = torch.asarray(x.copy(), requires_grad=True)
    total_lse(t).backward()
    assert t.grad is not None
    by_autograd = t.grad.numpy()
    # torch's gradient is exp(x − lse): the rounding of lse and of that difference is relative on the result.
    lse = np.abs(sk.logsumexp(x, keepdims=True))
    err = (prob_rel_err(x, "float64") + K * EPS["float64"] * (np.abs(x) + 2 * lse)) * p
    assert_close(p, by_func, "float64", err=err)
    assert_close(p, by_autograd, "float64", err=err)


@settings(max_examples=100, deadline=None)
@given(x=arrays("float64"))
def test_softmax_is_the_central_difference_of_lse(x):
    dtype = "float64"
    n = x.shape[-1]
    h = EPS[dtype] ** (1 / 3)  # balances truncation (∝ h²) against the rounding of lse (∝ ε/h)
    plus = x[:, None, :] + h * np.eye(n)  # (rows, n perturbed copies, n)
    minus = x[:, None, :] - h * np.eye(n)
    step = np.diagonal(plus - minus, axis1=-2, axis2=-1)  # the step actually taken, after rounding x ± h
    fd = (sk.logsumexp(plus) - sk.logsumexp(minus)) / step
    lse = sk.logsumexp(x, keepdims=True)
    # truncation step²/24·max|lse'''| (<= 1), plus both lse values' rounding divided by the step
    err = step**2 / 24 + 2 * log_err(np.abs(lse) + 1, dtype) / step
    assert_close(sk.softmax(x), fd, dtype, err=err)


# ----------------------------------------------------------------------------------------- cross-entropy
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_integer_labels_equal_one_hot_probabilities(dtype, reduction, data):
    """Values and gradients. Under "mean" only without weight: torch's denominators differ there."""
    x = data.draw(arrays(dtype))
    rows, n = x.shape
    y = data.draw(hnp.arrays(np.int64, rows, elements=st.integers(0, n - 1)))
    opts = data.draw(ce_options(dtype, n, weight=reduction != "mean"))
    loss_i, grad_i = sk.cross_entropy_value_and_grad(x, y, reduction=reduction, **opts)
    loss_p, grad_p = sk.cross_entropy_value_and_grad(x, one_hot(y, n, dtype), reduction=reduction, **opts)
    assert loss_i.shape == loss_p.shape == ((rows,) if reduction == "none" else ())
    assert grad_i.dtype == grad_p.dtype == x.dtype
    # Every term of the loss is >= 0, so TOL is relative to the loss itself; the gradient's terms may cancel.
    assert_close(loss_i, loss_p, dtype)
    assert_close(grad_i, grad_p, dtype, scale=ce_grad_scale(x, y, opts, reduction))


@pytest.mark.parametrize("capped", [False, True], ids=["plain", "softcap"])
@pytest.mark.parametrize("target_kind", ["labels", "probabilities"])
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_cross_entropy_is_non_negative(dtype, target_kind, capped, data):
    x = data.draw(arrays(dtype))
    rows, n = x.shape
    if target_kind == "labels":
        target = data.draw(hnp.arrays(np.int64, rows, elements=st.integers(0, n - 1)))
    else:  # any non-negative target, not necessarily normalised (torch allows it)
        target = data.draw(hnp.arrays(np.dtype(dtype), x.shape, elements=floats(dtype, 0.0, 1.0)))
    opts = data.draw(ce_options(dtype, n))
    opts["softcap"] = data.draw(st.floats(1 / 8, 64.0)) if capped else None
    for reduction in ("none", "sum", "mean"):
        loss, _ = sk.cross_entropy_value_and_grad(x, target, reduction=reduction, **opts)
        assert np.all(loss >= 0), (reduction, loss)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("target_kind", ["labels", "probabilities"])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_cross_entropy_value_and_grad_match_torch_autograd(target_kind, reduction, data):
    """Every option at once against torch.nn.functional.cross_entropy (softcap and z_loss spelled out)."""
    dtype = "float64"
    x = data.draw(arrays(dtype))
    rows, n = x.shape
    if target_kind == "labels":
        target = data.draw(hnp.arrays(np.int64, rows, elements=st.integers(0, n - 1)))
    else:
        target = data.draw(hnp.arrays(np.dtype(dtype), x.shape, elements=floats(dtype, 0.0, 1.0)))
    opts = data.draw(ce_options(dtype, n))
    loss, grad = sk.cross_entropy_value_and_grad(x, target, reduction=reduction, **opts)

    z = torch.asarray(x.copy(), requires_grad=True)
    capped = z if opts["softcap"] is None else opts["softcap"] * torch.tanh(z / opts["softcap"])
    weight = None if opts["weight"] is None else torch.asarray(opts["weight"])
    ce = torch.nn.functional.cross_entropy(
        capped, torch.asarray(target), weight=weight, label_smoothing=opts["label_smoothing"], reduction=reduction
    )
    w_np = np.ones(n) if opts["weight"] is None else opts["weight"]
    if target_kind == "labels" and reduction == "mean" and np.sum(w_np[target]) == 0:
        ce = torch.zeros((), dtype=torch.float64)  # zero total weight: our documented 0 where torch has nan
    z_row = opts["z_loss"] * torch.logsumexp(capped, dim=-1) ** 2
    want = ce + {"none": z_row, "sum": z_row.sum(), "mean": z_row.mean()}[reduction]
    want.sum().backward()
    assert z.grad is not None
    # All terms of the loss are >= 0; the gradient's terms may cancel, and each carries p's relative error.
    # torch rounds each capped logit to an absolute ε/2·c, which moves a row's loss by at most twice that
    # times the size of its gradient terms (we form the capped differences without that rounding).
    labels = target if target_kind == "labels" else np.zeros(rows, dtype=np.int64)
    g_scale = ce_grad_scale(x, labels, opts, reduction if target_kind == "labels" else "none")
    cap_err = 0.0 if opts["softcap"] is None else EPS[dtype] * opts["softcap"] * g_scale
    p_err = 2 * np.max(prob_rel_err(x, dtype)) * g_scale
    assert_close(loss, want.detach().numpy(), dtype, err=rows * cap_err)
    assert_close(grad, z.grad.numpy(), dtype, scale=g_scale, err=p_err + cap_err)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_weighted_mean_is_the_weighted_average_of_row_losses(dtype, data):
    """``mean`` over class indices divides by Σ w_y of the rows not ignored, whatever the scale of the weights.

    The weights are a sensible draw times 2**k, k down to the smallest subnormal. A product w_y·ℓ that falls
    below the normal range keeps only the absolute accuracy of the smallest subnormal, which the average
    divides by Σ w_y: that, and TOL, is all the slack.
    """
    x = data.draw(arrays(dtype))
    rows, n = x.shape
    finfo = np.finfo(dtype)
    y = data.draw(hnp.arrays(np.int64, rows, elements=st.integers(0, n - 1) | st.just(-100)))
    base = data.draw(ce_options(dtype, n))["weight"]
    if base is None:
        base = np.ones(n, dtype=dtype)
    w = np.ldexp(base, data.draw(st.integers(finfo.minexp - finfo.nmant, 0)))
    assert w.dtype == x.dtype
    loss, grad = sk.cross_entropy_value_and_grad(x, y, weight=w)
    row_loss, row_grad = sk.cross_entropy_value_and_grad(x, y, reduction="none")  # unweighted, 0 if ignored
    valid = y != -100
    w_y = np.where(valid, w[np.where(valid, y, 0)], 0).astype(np.float64)
    total = math.fsum(w_y.tolist())
    assert np.isfinite(loss), (loss, w_y)
    assert np.all(np.isfinite(grad)), (grad, w_y)
    if total == 0:  # every row ignored or weighted 0: the documented 0, not nan
        assert loss == 0
        assert np.all(grad == 0)
        return
    share = w_y / total  # exact enough even for subnormal weights: a ratio of two numbers of the same scale
    want = math.fsum((share * row_loss.astype(np.float64)).tolist())
    want_grad = share[:, None] * row_grad.astype(np.float64)
    tiny = K * rows * float(finfo.smallest_subnormal) / total
    assert_close(loss, want, dtype, err=tiny)
    assert_close(grad, want_grad, dtype, err=tiny)


# --------------------------------------------------------------------------------- permutation of classes
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_permuting_classes_permutes_outputs(dtype, data):
    x = data.draw(arrays(dtype))
    rows, n = x.shape
    perm = np.array(data.draw(st.permutations(range(n))), dtype=np.int64)
    inv = np.argsort(perm)
    xp = x[:, perm]
    assert_close(sk.softmax(xp), sk.softmax(x)[:, perm], dtype)
    assert_close(sk.log_softmax(xp), sk.log_softmax(x)[:, perm], dtype)
    assert_close(sk.logsumexp(xp), sk.logsumexp(x), dtype)

    y = data.draw(hnp.arrays(np.int64, rows, elements=st.integers(0, n - 1)))
    opts = data.draw(ce_options(dtype, n))
    loss, grad = sk.cross_entropy_value_and_grad(x, y, reduction="none", **opts)
    opts_p = {**opts, "weight": None if opts["weight"] is None else opts["weight"][perm]}
    loss_p, grad_p = sk.cross_entropy_value_and_grad(xp, inv[y], reduction="none", **opts_p)
    assert_close(loss_p, loss, dtype)
    assert_close(grad_p, grad[:, perm], dtype, scale=ce_grad_scale(x, y, opts, "none"))


# ----------------------------------------------------------------------------- finite in -> finite out
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_finite_inputs_give_finite_outputs(dtype, data):
    x = data.draw(arrays(dtype, bound=WIDE[dtype]))
    rows, n = x.shape
    v = data.draw(arrays(dtype, x.shape, bound=WIDE[dtype]))
    temperature = data.draw(st.just(1.0) | st.floats(1.0, 64.0))  # T >= 1 cannot push (x − m)/T past the range
    outputs = {
        "softmax": sk.softmax(x, temperature=temperature),
        "log_softmax": sk.log_softmax(x, temperature=temperature),
        "logsumexp": sk.logsumexp(x),
        "softmax_vjp": softmax_vjp(x, v, temperature=temperature),
        "softmax_jvp": softmax_jvp(x, v, temperature=temperature),
        "log_softmax_vjp": log_softmax_vjp(x, v, temperature=temperature),
        "log_softmax_jvp": log_softmax_jvp(x, v, temperature=temperature),
        "softmax_jacobian": softmax_jacobian(x, temperature=temperature),
    }
    y = data.draw(hnp.arrays(np.int64, rows, elements=st.integers(0, n - 1)))
    q = data.draw(hnp.arrays(np.dtype(dtype), x.shape, elements=floats(dtype, 0.0, 1.0)))
    opts = data.draw(ce_options(dtype, n))
    for reduction in ("none", "sum", "mean"):
        for kind, target in (("labels", y), ("probabilities", q)):
            loss, grad = sk.cross_entropy_value_and_grad(x, target, reduction=reduction, **opts)
            outputs[f"ce {kind} {reduction}"] = loss
            outputs[f"ce grad {kind} {reduction}"] = grad
    for name, out in outputs.items():
        assert out.dtype == x.dtype, name
        assert np.all(np.isfinite(out)), (name, out)


# ----------------------------------------------------------------------------------------- where / masks
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_where_equals_slicing_the_row(dtype, data):
    x = data.draw(arrays(dtype))
    mask = data.draw(hnp.arrays(np.bool_, x.shape))
    p = sk.softmax(x, where=mask)
    ls = sk.log_softmax(x, where=mask)
    lse = sk.logsumexp(x, where=mask)
    for r in range(x.shape[0]):
        kept = x[r][mask[r]]
        assert np.all(p[r][~mask[r]] == 0)
        assert np.all(ls[r][~mask[r]] == -np.inf)
        assert_close(lse[r], sk.logsumexp(kept), dtype)  # an empty row: -inf on both sides
        if kept.size:
            assert_close(p[r][mask[r]], sk.softmax(kept), dtype)
            assert_close(ls[r][mask[r]], sk.log_softmax(kept), dtype)


@pytest.mark.parametrize("how", ["-inf", "where"])
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_masked_entries_have_probability_and_derivatives_exactly_zero(dtype, how, data):
    x = data.draw(arrays(dtype))
    keep = data.draw(hnp.arrays(np.bool_, x.shape))
    v = data.draw(arrays(dtype, x.shape))
    g = data.draw(arrays(dtype, x.shape))
    temperature = data.draw(st.just(1.0) | st.floats(1 / 16, 16.0))
    if how == "-inf":
        x = np.where(keep, x, -np.inf).astype(dtype)
        kw: dict[str, Any] = {"temperature": temperature}
    else:
        kw = {"temperature": temperature, "where": keep}
    masked = ~keep
    assert np.all(sk.softmax(x, **kw)[masked] == 0)
    assert np.all(sk.log_softmax(x, **kw)[masked] == -np.inf)
    for f, t in ((softmax_vjp, g), (softmax_jvp, v), (log_softmax_vjp, g), (log_softmax_jvp, v)):
        out = f(x, t, **kw)
        assert np.all(out[masked] == 0), (f.__name__, out)
        assert np.all(np.isfinite(out)), (f.__name__, out)
    jac = softmax_jacobian(x, **kw)
    for r, i in np.argwhere(masked):
        assert np.all(jac[r, i, :] == 0), (r, i, jac[r])
        assert np.all(jac[r, :, i] == 0), (r, i, jac[r])


# ------------------------------------------------------------------------------------------- temperature
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_temperature_divides_the_logits(dtype, data):
    x = data.draw(arrays(dtype))
    t = data.draw(st.floats(1 / 16, 16.0))
    scaled = x / x.dtype.type(t)
    # Both sides divide by the same T (a Python float becomes x's dtype), but x/T is rounded entrywise: each
    # scaled logit moves by at most ε/2·|x_i|/T, and log p by at most twice the largest such move.
    move = EPS[dtype] * np.max(np.abs(x.astype(np.float64)), axis=-1, keepdims=True) / t
    ls, ls_ref = sk.log_softmax(x, temperature=t), sk.log_softmax(scaled)
    assert_close(ls, ls_ref, dtype, err=move + log_err(ls, dtype) + log_err(ls_ref, dtype))
    p, p_ref = sk.softmax(x, temperature=t), sk.softmax(scaled)
    rel = np.expm1(move) + prob_rel_err(x / t, dtype) + prob_rel_err(scaled, dtype)
    assert_close(p, p_ref, dtype, err=rel * p_ref)


# ------------------------------------------------------------------------------------ JVP / VJP / Jacobian
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_jvp_vjp_and_jacobian_agree(dtype, data):
    x = data.draw(arrays(dtype))
    v = data.draw(arrays(dtype, x.shape))
    g = data.draw(arrays(dtype, x.shape))
    n = x.shape[-1]
    nk_eps = K * n * EPS[dtype]
    p = sk.softmax(x).astype(np.float64)
    v64, g64 = v.astype(np.float64), g.astype(np.float64)
    jac = softmax_jacobian(x)
    assert jac.shape == (*x.shape, n)
    np.testing.assert_array_equal(jac, np.swapaxes(jac, -1, -2))  # p_i p_j == p_j p_i exactly
    jac64 = jac.astype(np.float64)

    # |J_ij| summed over j is at most 2 p_i: rows and columns sum to zero up to n·ε of that.
    assert_close(np.sum(jac64, axis=-1), np.zeros_like(p), dtype, err=nk_eps * p)
    assert_close(np.sum(jac64, axis=-2), np.zeros_like(p), dtype, err=nk_eps * p)

    # Σ_j |J_ij v_j| <= p_i (|v_i| + <p, |v|>): the size of the terms of (J v)_i.
    def size(a: np.ndarray) -> np.ndarray:
        return p * (np.abs(a) + np.sum(p * np.abs(a), axis=-1, keepdims=True))

    jvp, vjp = softmax_jvp(x, v).astype(np.float64), softmax_vjp(x, g).astype(np.float64)
    assert_close(jvp, np.einsum("rij,rj->ri", jac64, v64), dtype, err=nk_eps * size(v64))
    assert_close(vjp, np.einsum("ri,rij->rj", g64, jac64), dtype, err=nk_eps * size(g64))
    assert_close(np.sum(jvp, axis=-1), np.zeros(x.shape[0]), dtype, err=nk_eps * np.sum(size(v64), axis=-1))
    inner = nk_eps * (np.sum(np.abs(g64) * size(v64), axis=-1) + np.sum(np.abs(v64) * size(g64), axis=-1))
    assert_close(np.sum(g64 * jvp, axis=-1), np.sum(vjp * v64, axis=-1), dtype, err=inner)

    # log-softmax: J = I − 1 pᵀ, terms of size |v_i| + <p, |v|>.
    ljvp, lvjp = log_softmax_jvp(x, v).astype(np.float64), log_softmax_vjp(x, g).astype(np.float64)
    lsize_v = np.abs(v64) + np.sum(p * np.abs(v64), axis=-1, keepdims=True)
    lsize_g = np.abs(g64) + p * np.sum(np.abs(g64), axis=-1, keepdims=True)
    linner = nk_eps * (np.sum(np.abs(g64) * lsize_v, axis=-1) + np.sum(np.abs(v64) * lsize_g, axis=-1))
    assert_close(np.sum(g64 * ljvp, axis=-1), np.sum(lvjp * v64, axis=-1), dtype, err=linner)


# torch.func.jvp's first use imports decompositions that still call torch.jit.script (torch 2.13).
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_derivatives_match_torch_autodiff(data):
    """softmax_jacobian, the JVPs and VJPs, with temperature, against torch.func on softmax(x / T)."""
    dtype = "float64"
    x = data.draw(arrays(dtype))
    v = data.draw(arrays(dtype, x.shape))
    g = data.draw(arrays(dtype, x.shape))
    t = data.draw(st.just(1.0) | st.floats(1 / 16, 16.0))

    def sm(u: torch.Tensor) -> torch.Tensor:
        return torch.softmax(u / t, dim=-1)

    def lsm(u: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(u / t, dim=-1)

    xt, vt, gt = (torch.asarray(a) for a in (x, v, g))
    got = {
        "softmax_jvp": (softmax_jvp(x, v, temperature=t), torch.func.jvp(sm, (xt,), (vt,))[1]),
        "softmax_vjp": (softmax_vjp(x, g, temperature=t), torch.func.vjp(sm, xt)[1](gt)[0]),
        "log_softmax_jvp": (log_softmax_jvp(x, v, temperature=t), torch.func.jvp(lsm, (xt,), (vt,))[1]),
        "log_softmax_vjp": (log_softmax_vjp(x, g, temperature=t), torch.func.vjp(lsm, xt)[1](gt)[0]),
        "softmax_jacobian": (softmax_jacobian(x, temperature=t), torch.func.vmap(torch.func.jacrev(sm))(xt)),
    }
    # torch rounds x / T, we round (x − m) / T: p differs by the relative error of the temperature test,
    # and each derivative by that much of its p-weighted terms.
    p = sk.softmax(x, temperature=t)
    move = EPS[dtype] * np.max(np.abs(x), axis=-1, keepdims=True) / t
    rel = np.expm1(move) + 2 * np.max(prob_rel_err(x / t, dtype), axis=-1, keepdims=True)
    p_abs = {a_name: np.sum(p * np.abs(a), axis=-1, keepdims=True) for a_name, a in (("v", v), ("g", g))}
    terms = {
        "softmax_jvp": p * (np.abs(v) + p_abs["v"]) / t,
        "softmax_vjp": p * (np.abs(g) + p_abs["g"]) / t,
        "log_softmax_jvp": (np.abs(v) + p_abs["v"]) / t,
        "log_softmax_vjp": (np.abs(g) + p * np.sum(np.abs(g), axis=-1, keepdims=True)) / t,
        "softmax_jacobian": p[:, :, None] * (np.eye(x.shape[-1]) + p[:, None, :]) / t,
    }
    for what, (ours, theirs) in got.items():
        rel_w = rel[:, :, None] if what == "softmax_jacobian" else rel
        try:
            assert_close(ours, theirs.numpy(), dtype, scale=terms[what], err=rel_w * terms[what])
        except AssertionError as exc:
            raise AssertionError(f"{what}: {exc}") from None


# ---------------------------------------------------------------------------------------------- backends
# JAX compiles every operation afresh for each new shape (seconds per shape), so the backends see a few shapes.
BACKEND_SHAPES = st.sampled_from([(1, 1), (2, 3), (6, 40)])


@pytest.mark.parametrize("name", OTHER_BACKENDS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_backend_gives_numpys_values(name, data):
    be = LIBRARIES[name]
    x = data.draw(arrays("float64", BACKEND_SHAPES))
    rows, n = x.shape
    v = data.draw(arrays("float64", x.shape))
    keep = data.draw(hnp.arrays(np.bool_, x.shape))
    y = data.draw(hnp.arrays(np.int64, rows, elements=st.integers(0, n - 1)))
    opts = data.draw(ce_options("float64", n))
    t = data.draw(st.just(1.0) | st.floats(1 / 16, 16.0))

    def both(f: Any, *args: Any, **kw: Any) -> tuple[Any, Any]:
        """f on the NumPy inputs, and on the same inputs as the backend's arrays."""
        conv = {k: be(a) if isinstance(a, np.ndarray) else a for k, a in kw.items()}
        return f(*args, **kw), f(*(be(a) for a in args), **conv)

    # The derivatives' terms are of the size of Σ|v|/T: cancellations there are absolute, not relative.
    d_scale = (1.0 + np.sum(np.abs(v), axis=-1, keepdims=True)) / t
    checks = [
        ("softmax", *both(sk.softmax, x, temperature=t), 1.0),
        ("log_softmax", *both(sk.log_softmax, x, temperature=t), 1.0),
        ("logsumexp", *both(sk.logsumexp, x), 1.0),
        ("softmax where", *both(sk.softmax, x, where=keep), 1.0),
        ("log_softmax where", *both(sk.log_softmax, x, where=keep), 1.0),
        ("logsumexp where", *both(sk.logsumexp, x, where=keep), 1.0),
        ("softmax_vjp", *both(softmax_vjp, x, v, temperature=t), d_scale),
        ("softmax_jvp", *both(softmax_jvp, x, v, temperature=t), d_scale),
        ("log_softmax_vjp", *both(log_softmax_vjp, x, v, temperature=t), d_scale),
        ("log_softmax_jvp", *both(log_softmax_jvp, x, v, temperature=t), d_scale),
        ("softmax_jacobian", *both(softmax_jacobian, x, temperature=t), 1 / t),
    ]
    for reduction in ("none", "mean"):
        (loss, grad), (loss_b, grad_b) = both(sk.cross_entropy_value_and_grad, x, y, reduction=reduction, **opts)
        checks.append((f"ce {reduction}", loss, loss_b, 1.0))
        checks.append((f"ce grad {reduction}", grad, grad_b, ce_grad_scale(x, y, opts, reduction)))
    for what, want, got, scale in checks:
        got_np = to_numpy(got)
        assert got_np.dtype == np.float64, (what, got_np.dtype)
        try:
            assert_close(got_np, want, "float64", scale=scale)
        except AssertionError as exc:
            raise AssertionError(f"{what} on {name}: {exc}") from None

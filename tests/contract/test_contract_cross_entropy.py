"""The policy of cross-entropy, written once and run on every implementation (adapters.py).

Each special-value test is one row of the table in :func:`softmaxkit.cross_entropy`'s docstring; every option is
checked against an independent float64 oracle (plain torch operations and autograd, below), in value and
gradient, for each reduction; then the regressions every implementation must keep (all labels ignored,
bfloat16 at p = 0.999, confident rows), inputs never modified, and errors that name the argument and value.
An implementation runs every case that uses only what it implements (its adapter's ``lacks``).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
import torch
from adapters import IMPLS, Impl, dtype_of, impls, numpy_of

from conftest import tol

INF, NAN = math.inf, math.nan
RNG = np.random.default_rng(7)
REDUCTIONS = ("mean", "sum", "none")


def oracle(
    z: np.ndarray,
    target: np.ndarray,
    *,
    weight: np.ndarray | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    z_loss: float = 0.0,
    softcap: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Loss and gradient in float64 from the formulas of softmaxkit.cross_entropy's notes (finite logits)."""
    x = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    zc = x if softcap is None else softcap * torch.tanh(x / softcap)
    k = z.shape[-1]
    w = torch.ones(k, dtype=torch.float64) if weight is None else torch.tensor(weight, dtype=torch.float64)
    lse = torch.logsumexp(zc, -1)
    logp = zc - lse[..., None]
    if np.asarray(target).dtype.kind in "iu":
        t = torch.tensor(target)
        valid = (t != ignore_index).double()
        y = torch.where(t != ignore_index, t, 0)
        nll = -logp.gather(-1, y[..., None])[..., 0]
        w_y = w[y] * valid
        row = (1 - label_smoothing) * w_y * nll - label_smoothing / k * (w * logp).sum(-1) * valid
        denom, n_rows = w_y.sum(), valid.sum()
    else:
        q = (1 - label_smoothing) * torch.tensor(target, dtype=torch.float64) + label_smoothing / k
        row = -(w * q * logp).sum(-1)
        valid = torch.ones_like(row)
        denom = n_rows = torch.tensor(float(row.numel()), dtype=torch.float64)
    zl = z_loss * lse**2 * valid
    if reduction == "none":
        loss = row + zl
    elif reduction == "sum":
        loss = row.sum() + zl.sum()
    else:
        loss = row.sum() / denom + zl.sum() / n_rows
    loss.sum().backward()
    assert x.grad is not None
    return loss.detach().numpy(), x.grad.numpy()


def _check(impl: Impl, z: np.ndarray, t: np.ndarray, dtype: str, options: dict[str, Any], scale: float = 1.0) -> None:
    """The implementation's loss and gradient in ``dtype`` against the oracle on the same (rounded) logits."""
    zz = impl.data(z, dtype)
    zr = numpy_of(zz).astype(np.float64)
    kw = dict(options)
    if "weight" in kw:
        kw["weight"] = impl.data(kw["weight"], dtype)
    target = impl.labels(t) if t.dtype.kind in "iu" else impl.data(t, dtype)
    loss, grad = impl.cross_entropy(zz, target, grad=True, **kw)
    assert dtype_of(loss) == dtype
    assert dtype_of(grad) == dtype
    want_loss, want_grad = oracle(zr, t if t.dtype.kind in "iu" else numpy_of(target).astype(np.float64), **options)
    rtol, atol = tol(dtype).values()
    np.testing.assert_allclose(numpy_of(loss), want_loss, rtol=rtol * scale, atol=atol * scale)
    np.testing.assert_allclose(numpy_of(grad), want_grad, rtol=rtol * scale, atol=atol * scale)


# ---------------------------------------------------------------------------------------------- options
N, C = 6, 5
LOGITS = RNG.normal(size=(N, C)) * 3
LABELS = np.array([0, 4, -100, 2, 1, 2])
PROBS = RNG.dirichlet(np.ones(C), size=N)
CLASS_WEIGHT = RNG.uniform(0.2, 2.0, size=C)

OPTIONS: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("plain", {}, ()),
    ("weight", {"weight": CLASS_WEIGHT}, ("weight",)),
    ("ignore_index=3", {"ignore_index": 3}, ()),
    ("label_smoothing", {"label_smoothing": 0.2}, ("label_smoothing",)),
    ("z_loss", {"z_loss": 1e-2}, ("z_loss",)),
    ("softcap", {"softcap": 2.5}, ("softcap",)),
    ("all", {"weight": CLASS_WEIGHT, "label_smoothing": 0.1, "z_loss": 1e-3, "softcap": 4.0},
     ("weight", "label_smoothing", "z_loss", "softcap")),
]  # fmt: skip
FEW = {"plain", "all"}  # what the slow implementations run


def _option_cases(probabilities: bool) -> list[Any]:
    out = []
    for name, options, needs in OPTIONS:
        if probabilities and "ignore_index" in options:
            continue
        for reduction in REDUCTIONS:
            for p in impls("cross_entropy", *needs, *(("probabilities",) if probabilities else ())):
                (impl,) = p.values
                if impl.slow and (name not in FEW or reduction == "sum"):
                    continue
                out.append(pytest.param(impl, options, reduction, id=f"{impl}-{name}-{reduction}", marks=p.marks))
    return out


@pytest.mark.parametrize(("impl", "options", "reduction"), _option_cases(probabilities=False))
def test_class_index_options_match_the_oracle(impl: Impl, options: dict[str, Any], reduction: str) -> None:
    labels = np.where(LABELS == -100, options.get("ignore_index", -100), LABELS)
    for dtype in ("float64", "float32"):
        if dtype in impl.runs:
            _check(impl, LOGITS, labels, dtype, {**options, "reduction": reduction})


@pytest.mark.parametrize(("impl", "options", "reduction"), _option_cases(probabilities=True))
def test_probability_target_options_match_the_oracle(impl: Impl, options: dict[str, Any], reduction: str) -> None:
    for dtype in ("float64", "float32"):
        if dtype in impl.runs:
            _check(impl, LOGITS, PROBS, dtype, {**options, "reduction": reduction})


@pytest.mark.parametrize("impl", impls("cross_entropy", "probabilities"))
def test_probability_targets_need_not_sum_to_one(impl: Impl) -> None:
    _check(impl, LOGITS, PROBS * 3.0, impl.main, {"reduction": "none"})


@pytest.mark.parametrize("impl", impls("cross_entropy"))
def test_one_unbatched_row(impl: Impl) -> None:
    z = impl.data(LOGITS[0], impl.main)
    loss, grad = impl.cross_entropy(z, impl.labels(np.array(3)), grad=True)
    want_loss, want_grad = oracle(LOGITS[:1], np.array([3]))
    np.testing.assert_allclose(numpy_of(loss), want_loss, **tol(impl.main))
    np.testing.assert_allclose(numpy_of(grad), want_grad[0], **tol(impl.main))


# ---------------------------------------------------------------------------------------- special values
@pytest.mark.parametrize("impl", impls("cross_entropy", "nonfinite"))
def test_target_logit_minus_inf_gives_inf_loss_and_finite_gradient(impl: Impl) -> None:
    z = np.array([[-INF, 0.0, 1.0]])
    loss, grad = impl.cross_entropy(impl.data(z, impl.main), impl.labels(np.array([0])), grad=True)
    assert float(numpy_of(loss)) == INF
    p = np.exp(z - np.logaddexp(0.0, 1.0))
    np.testing.assert_allclose(numpy_of(grad), p - [[1.0, 0.0, 0.0]], **tol(impl.main))


@pytest.mark.parametrize("impl", impls("cross_entropy"))
def test_all_labels_ignored_mean_is_zero(impl: Impl) -> None:
    # torch gives nan (pytorch#70348, checked below); nothing to average is 0, with a zero gradient
    options = {name: v for name, v in {"label_smoothing": 0.1, "z_loss": 0.1}.items() if impl.can(name)}
    z, t = impl.data(LOGITS[:3], impl.main), impl.labels(np.full(3, -100))
    loss, grad = impl.cross_entropy(z, t, True, **options)
    assert float(numpy_of(loss)) == 0.0
    np.testing.assert_array_equal(numpy_of(grad), np.zeros((3, C)))
    assert float(numpy_of(impl.cross_entropy(z, t, reduction="sum", **options)[0])) == 0.0
    np.testing.assert_array_equal(numpy_of(impl.cross_entropy(z, t, reduction="none", **options)[0]), np.zeros(3))


def test_torch_gives_nan_when_every_label_is_ignored() -> None:
    # the peer's value, from which the policy above deviates (documented in every implementation)
    assert math.isnan(float(torch.nn.functional.cross_entropy(torch.zeros(3, 4), torch.full((3,), -100))))


@pytest.mark.parametrize("impl", impls("cross_entropy", "weight"))
def test_zero_total_weight_mean_is_zero(impl: Impl) -> None:
    w = np.ones(C)
    w[[0, 1]] = 0.0
    loss, grad = impl.cross_entropy(
        impl.data(LOGITS[:3], impl.main), impl.labels(np.array([0, 1, 0])), True, weight=impl.data(w, impl.main)
    )
    assert float(numpy_of(loss)) == 0.0
    np.testing.assert_array_equal(numpy_of(grad), np.zeros((3, C)))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("impl", impls("cross_entropy", "empty", fast_only=True))
def test_empty_batch(impl: Impl, reduction: str) -> None:
    loss, grad = impl.cross_entropy(
        impl.data(np.zeros((0, 4)), impl.main), impl.labels(np.zeros(0, dtype=np.int64)), True, reduction=reduction
    )
    if reduction == "none":
        assert numpy_of(loss).shape == (0,)
    else:
        assert float(numpy_of(loss)) == 0.0
    assert numpy_of(grad).shape == (0, 4)


@pytest.mark.parametrize("impl", impls("cross_entropy", "nonfinite"))
def test_nan_or_plus_inf_row_poisons_only_itself(impl: Impl) -> None:
    z = LOGITS[:3].copy()
    z[0, 1], z[1, 2] = NAN, INF
    loss, grad = impl.cross_entropy(impl.data(z, impl.main), impl.labels(np.array([0, 1, 2])), True, reduction="none")
    loss, grad = numpy_of(loss), numpy_of(grad)
    assert np.isnan(loss[:2]).all()
    assert np.isnan(grad[:2]).all()
    want_loss, want_grad = oracle(z[2:], np.array([2]), reduction="none")
    np.testing.assert_allclose(loss[2:], want_loss, **tol(impl.main))
    np.testing.assert_allclose(grad[2:], want_grad, **tol(impl.main))


@pytest.mark.parametrize("impl", impls("cross_entropy", "nonfinite", "softcap"))
def test_softcap_turns_plus_inf_into_the_cap(impl: Impl) -> None:
    z = np.array([[INF, 0.0, 1.0]])
    loss = impl.cross_entropy(impl.data(z, impl.main), impl.labels(np.array([1])), softcap=3.0)[0]
    want = oracle(np.array([[1e300, 0.0, 1.0]]), np.array([1]), softcap=3.0)[0]  # tanh(inf) = 1: the cap
    np.testing.assert_allclose(numpy_of(loss), want, **tol(impl.main))


@pytest.mark.parametrize("impl", impls("cross_entropy"))
def test_ignored_row_holding_nan_is_never_read(impl: Impl) -> None:
    z = LOGITS[:3].copy()
    z[1] = NAN
    loss, grad = impl.cross_entropy(impl.data(z, impl.main), impl.labels(np.array([0, -100, 2])), True, reduction="sum")
    want_loss, want_grad = oracle(z[[0, 2]], np.array([0, 2]), reduction="sum")
    np.testing.assert_allclose(numpy_of(loss), want_loss, **tol(impl.main))
    np.testing.assert_array_equal(numpy_of(grad)[1], np.zeros(C))
    np.testing.assert_allclose(numpy_of(grad)[[0, 2]], want_grad, **tol(impl.main))


@pytest.mark.parametrize("impl", impls("cross_entropy", "nonfinite", "probabilities"))
def test_zero_probability_at_minus_inf_logit_contributes_zero(impl: Impl) -> None:
    z, q = np.array([[-INF, 0.0, 1.0]]), np.array([[0.0, 0.5, 0.5]])
    loss, grad = impl.cross_entropy(impl.data(z, impl.main), impl.data(q, impl.main), True)
    want = 0.5 * (np.logaddexp(0.0, 1.0) - 0.0) + 0.5 * (np.logaddexp(0.0, 1.0) - 1.0)
    np.testing.assert_allclose(numpy_of(loss), want, **tol(impl.main))
    assert np.isfinite(numpy_of(grad)).all()


@pytest.mark.parametrize("impl", impls("cross_entropy", "nonfinite", "label_smoothing"))
def test_smoothing_with_minus_inf_logit_is_inf(impl: Impl) -> None:
    z = np.array([[-INF, 0.0, 1.0]])
    loss = impl.cross_entropy(impl.data(z, impl.main), impl.labels(np.array([2])), label_smoothing=0.1)[0]
    assert float(numpy_of(loss)) == INF


def _running(dtypes: tuple[str, ...]) -> list[Any]:
    return [p for p in impls("cross_entropy") if set(dtypes) & set(p.values[0].runs)]


@pytest.mark.parametrize("impl", _running(("float16", "bfloat16")))
def test_half_precision_is_computed_in_float32_and_returned_as_is(impl: Impl) -> None:
    for dtype in ("float16", "bfloat16"):
        if dtype in impl.runs:
            z = LOGITS * 4
            _check(impl, z, LABELS, dtype, {"reduction": "none"})


@pytest.mark.parametrize("impl", _running(("bfloat16",)))
def test_bfloat16_true_class_gradient_at_p_0999(impl: Impl) -> None:
    # Liger-Kernel PR #1329: p - 1 with p rounded to bfloat16 first lost the whole gradient at p = 0.999
    z = impl.data(np.array([[math.log(0.999), math.log(0.001)]]), "bfloat16")
    _, grad = impl.cross_entropy(z, impl.labels(np.array([0])), grad=True)
    zr = numpy_of(z).astype(np.float64)
    exact = math.exp(zr[0, 0] - np.logaddexp(zr[0, 0], zr[0, 1])) - 1.0
    assert abs(float(numpy_of(grad)[0, 0]) - exact) <= 2**-8 * abs(exact)


@pytest.mark.parametrize("impl", impls("cross_entropy"))
def test_confident_row_keeps_relative_accuracy(impl: Impl) -> None:
    # lse - z_y as log1p(rest) - (z_y - m): log1p(2 e^-40) = 8.4967e-18, where log(sum) - z_y gives 0
    want = math.log1p(2.0 * math.exp(-40.0))
    for dtype in ("float64", "float32"):
        if dtype in impl.runs:
            loss = impl.cross_entropy(impl.data(np.array([[40.0, 0.0, 0.0]]), dtype), impl.labels(np.array([0])))[0]
            np.testing.assert_allclose(float(numpy_of(loss)), want, rtol=8 * float(np.finfo(dtype).eps), atol=0.0)


# ---------------------------------------------------------------------------------- inputs and arguments
@pytest.mark.parametrize("impl", impls("cross_entropy", fast_only=True))
def test_inputs_are_never_modified(impl: Impl) -> None:
    options: dict[str, Any] = {
        name: value for name, value in {"label_smoothing": 0.2, "z_loss": 0.1, "softcap": 3.0}.items() if impl.can(name)
    }
    z, t = impl.data(LOGITS, impl.main), impl.labels(LABELS)
    if impl.can("weight"):
        options["weight"] = w = impl.data(CLASS_WEIGHT, impl.main)
    before = numpy_of(z).copy()
    impl.cross_entropy(z, t, grad=True, **options)
    np.testing.assert_array_equal(numpy_of(z), before)
    np.testing.assert_array_equal(numpy_of(t), LABELS)
    if impl.can("weight"):
        np.testing.assert_array_equal(numpy_of(w), numpy_of(impl.data(CLASS_WEIGHT, impl.main)))


BAD = [
    ({"reduction": "avg"}, ValueError, "reduction must be one of"),
    ({"label_smoothing": 1.5}, ValueError, "label_smoothing must lie in"),
    ({"z_loss": -1.0}, ValueError, "z_loss must be a finite number >= 0"),
    ({"softcap": 0.0}, ValueError, "softcap must be a finite number > 0"),
    ({"ignore_index": 1.5}, TypeError, "ignore_index must be an int"),
]


@pytest.mark.parametrize(("options", "error", "message"), BAD, ids=[next(iter(b[0])) for b in BAD])
@pytest.mark.parametrize("impl", impls("cross_entropy", "errors", fast_only=True))
def test_bad_options_name_the_argument(impl: Impl, options: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        impl.cross_entropy(impl.data(LOGITS, impl.main), impl.labels(np.zeros(N, dtype=np.int64)), **options)


@pytest.mark.parametrize("impl", impls("cross_entropy", "errors", "value_checks", fast_only=True))
def test_label_out_of_range_names_value_and_position(impl: Impl) -> None:
    with pytest.raises(ValueError, match=r"class index 7 at position \(1,\)"):
        impl.cross_entropy(impl.data(LOGITS[:2], impl.main), impl.labels(np.array([0, 7])))


@pytest.mark.parametrize("impl", impls("cross_entropy", "weight", "errors", "value_checks", fast_only=True))
def test_negative_or_nan_weight_names_the_argument(impl: Impl) -> None:
    for bad in (-1.0, NAN):
        w = np.ones(C)
        w[2] = bad
        with pytest.raises(ValueError, match=r"weight must be finite and >= 0; got .* for class 2"):
            impl.cross_entropy(impl.data(LOGITS, impl.main), impl.labels(LABELS), weight=impl.data(w, impl.main))


@pytest.mark.parametrize(("options", "error", "message"), BAD, ids=[next(iter(b[0])) for b in BAD])
def test_compiled_errors_keep_their_message(options: dict[str, Any], error: type, message: str) -> None:
    """The policy point ``torch-compiled`` lacks (``errors``): under torch.compile(fullgraph=True) the check still
    runs while Dynamo traces, and Dynamo re-raises its error as ``Unsupported``, whose cause names the original
    exception with its message."""
    impl = next(i for i in IMPLS if i.name == "torch-compiled")
    with pytest.raises(torch._dynamo.exc.Unsupported) as info:
        impl.cross_entropy(impl.data(LOGITS, impl.main), impl.labels(np.zeros(N, dtype=np.int64)), **options)
    cause = repr(info.value.__cause__)
    assert error.__name__ in cause
    assert re.search(message, cause)

"""softmaxkit.torch: autograd Functions and drop-in modules against torch's semantics, our special values.

* every combination of weight / ignore_index / label_smoothing / reduction / class-index vs probability
  targets / K-dimensional inputs against ``torch.nn.CrossEntropyLoss``, values and gradients;
* ``gradcheck`` and ``gradgradcheck`` in float64 for softmax, log_softmax, logsumexp and cross-entropy with
  every option;
* the special values where we deviate from torch (fully masked rows, a mean over nothing), each pinned;
* float16/bfloat16 computed in float32 (Liger-Kernel PR #1329: the true-class gradient at p = 0.999);
* the z-loss and softcap options against the array-API reference :func:`softmaxkit.cross_entropy`.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
import zlib
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

import softmaxkit as sk
import softmaxkit.torch as skt
from conftest import tol

INF, NAN = math.inf, math.nan
F64 = tol("float64")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _close(a: torch.Tensor, b: torch.Tensor, **kw: float) -> None:
    torch.testing.assert_close(a, b, **(kw or F64))


# ------------------------------------------------------------------------------------ torch's semantics
SHAPES = [(6, 5), (5,), (4, 5, 3), (2, 5, 3, 2)]  # (C,), (N, C) and K-dimensional (N, C, d1, ...)
CASES = [
    c
    for c in itertools.product(SHAPES, ["index", "prob"], [False, True], ["none", "hit", "in_range"], [0.0, 0.15])
    if not (c[1] == "prob" and c[3] != "none")
]


def _inputs(shape: tuple[int, ...], kind: str, ignore: str, seed: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    g = _gen(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    cdim = 1 if len(shape) > 1 else 0
    n_classes = shape[cdim]
    if kind == "prob":
        t = torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), cdim)
        return x, t, -100
    tshape = tuple(s for i, s in enumerate(shape) if i != cdim)
    t = torch.randint(0, n_classes, tshape, generator=g)
    ignore_index = -100
    if ignore == "hit" and t.ndim:
        t.view(-1)[0] = -100
    elif ignore == "in_range":  # an ignore_index that is also a class: torch skips that class's rows
        ignore_index = 2
        if t.numel() == 1:
            t.fill_(1)  # keep one label (a mean over nothing is our documented deviation, tested on its own)
    return x, t, ignore_index


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    ("shape", "kind", "weighted", "ignore", "smoothing"),
    CASES,
    ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v),
)
def test_matches_torch_cross_entropy_loss(shape, kind, weighted, ignore, smoothing, reduction):
    x, t, ignore_index = _inputs(shape, kind, ignore, seed=zlib.crc32(repr((shape, kind, ignore)).encode()))
    cdim = 1 if len(shape) > 1 else 0
    w = torch.rand(shape[cdim], generator=_gen(3), dtype=torch.float64) + 0.2 if weighted else None
    kw = {"weight": w, "ignore_index": ignore_index, "reduction": reduction, "label_smoothing": smoothing}
    theirs_fn, ours_fn = torch.nn.CrossEntropyLoss(**kw), skt.CrossEntropyLoss(**kw)
    grads = []
    for fn in (theirs_fn, ours_fn):
        xx = x.clone().requires_grad_()
        tt = t.clone().requires_grad_() if kind == "prob" else t
        loss = fn(xx, tt)
        upstream = torch.randn(loss.shape, generator=_gen(11), dtype=torch.float64)
        inputs = (xx, tt) if kind == "prob" else (xx,)
        grads.append((loss, *torch.autograd.grad((loss * upstream).sum(), inputs)))
    for theirs, ours in zip(*grads, strict=True):
        _close(ours, theirs)


def test_functional_signature_is_torchs():
    x, t = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 2, 1, 1])
    w = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    # positionally, in torch's order: input, target, weight, size_average, ignore_index, reduce, reduction, eps
    _close(skt.cross_entropy(x, t, w, None, 1, None, "sum", 0.1), F.cross_entropy(x, t, w, None, 1, None, "sum", 0.1))
    _close(skt.softmax(x, 1, 3, torch.float32), F.softmax(x, 1, 3, torch.float32), **tol("float32"))
    _close(skt.log_softmax(x, 0), F.log_softmax(x, 0))


def test_legacy_size_average_and_reduce_as_torch():
    x, t = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 2, 1, 1])
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        ours = skt.CrossEntropyLoss(size_average=False)(x, t)
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        theirs = torch.nn.CrossEntropyLoss(size_average=False)(x, t)
    _close(ours, theirs)
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        _close(skt.cross_entropy(x, t, reduce=False), F.cross_entropy(x, t, reduction="none"))


def test_modules_are_torchs_modules():
    w = torch.tensor([1.0, 2.0, 3.0])
    ours, theirs = skt.CrossEntropyLoss(weight=w, label_smoothing=0.1), torch.nn.CrossEntropyLoss(weight=w)
    assert isinstance(ours, torch.nn.CrossEntropyLoss)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    assert isinstance(skt.Softmax(dim=1), torch.nn.Softmax)
    assert isinstance(skt.LogSoftmax(dim=1), torch.nn.LogSoftmax)
    assert repr(skt.CrossEntropyLoss(softcap=30.0)) == "CrossEntropyLoss(softcap=30.0)"


@pytest.mark.parametrize(("name", "dim"), [("softmax", None), ("softmax", 0), ("log_softmax", 1), ("log_softmax", -1)])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4)])
def test_softmax_and_log_softmax_match_torch(name, dim, shape):
    x = torch.randn(shape, generator=_gen(5), dtype=torch.float64) * 4
    if dim is not None and dim >= len(shape):
        return
    ours_fn, theirs_fn = getattr(skt, name), getattr(F, name)
    if dim is None:  # torch's legacy implicit dim, with torch's deprecation warning
        with pytest.warns(UserWarning, match="Implicit dimension choice"):
            theirs = theirs_fn(x)
        with pytest.warns(UserWarning, match="Implicit dimension choice"):
            ours = ours_fn(x)
        _close(ours, theirs)
        return
    xs = [x.clone().requires_grad_() for _ in range(2)]
    outs = [ours_fn(xs[0], dim), theirs_fn(xs[1], dim)]
    v = torch.randn(shape, generator=_gen(6), dtype=torch.float64)
    grads = [torch.autograd.grad((o * v).sum(), xx)[0] for o, xx in zip(outs, xs, strict=True)]
    _close(outs[0], outs[1])
    _close(grads[0], grads[1])


@pytest.mark.parametrize(("dim", "keepdim"), [(1, False), (-1, True), ((0, 2), False), ((2, 0), True), (0, False)])
def test_logsumexp_matches_torch(dim, keepdim):
    x = torch.randn(3, 4, 5, generator=_gen(9), dtype=torch.float64) * 5
    xs = [x.clone().requires_grad_() for _ in range(2)]
    outs = [skt.logsumexp(xs[0], dim, keepdim), torch.logsumexp(xs[1], dim, keepdim)]
    assert outs[0].shape == outs[1].shape
    grads = [torch.autograd.grad(o.sum() * 1.5, xx)[0] for o, xx in zip(outs, xs, strict=True)]
    _close(outs[0], outs[1])
    _close(grads[0], grads[1])


def test_non_contiguous_inputs():
    base = torch.randn(5, 6, generator=_gen(23), dtype=torch.float64)
    t = torch.tensor([0, 4, -100, 2, 1, 3])
    outs = []
    for fn in (skt.cross_entropy, F.cross_entropy):
        x = base.clone().requires_grad_()
        xt = x.t()  # (6, 5), not contiguous
        loss = fn(xt, t, label_smoothing=0.1, reduction="none")
        outs.append((loss, *torch.autograd.grad(loss.sum(), x)))
    for ours, theirs in zip(*outs, strict=True):
        _close(ours, theirs)
    _close(skt.log_softmax(base.t(), 1), F.log_softmax(base.t(), 1))


def test_options_match_the_array_api_reference():
    # z_loss and softcap have no torch counterpart: the reference is softmaxkit.cross_entropy_value_and_grad
    x = torch.randn(6, 7, generator=_gen(21), dtype=torch.float64) * 20
    t = torch.tensor([0, -100, 6, 3, 3, 1])
    w = torch.rand(7, generator=_gen(22), dtype=torch.float64) + 0.5
    for red in ("mean", "sum", "none"):
        kw = {"label_smoothing": 0.1, "z_loss": 1e-3, "softcap": 15.0, "reduction": red}
        ref_loss, ref_grad = sk.cross_entropy_value_and_grad(x.numpy(), t.numpy(), weight=w.numpy(), **kw)
        xx = x.clone().requires_grad_()
        loss = skt.cross_entropy(xx, t, weight=w, **kw)
        loss.sum().backward()
        np.testing.assert_allclose(loss.detach().numpy(), ref_loss, **F64)
        np.testing.assert_allclose(xx.grad.numpy(), ref_grad, **F64)


def test_log_softmax_keeps_the_tail_of_a_dominant_class():
    # log1p(e^-40) = 4.25e-18: x - lse would give exactly 0
    out = skt.log_softmax(torch.tensor([0.0, -40.0], dtype=torch.float64), dim=0)
    assert float(out[0]) == pytest.approx(-math.exp(-40.0), rel=1e-15)
    loss = skt.cross_entropy(torch.tensor([[0.0, -40.0]], dtype=torch.float64), torch.tensor([0]))
    assert loss.item() == pytest.approx(math.exp(-40.0), rel=1e-15)


# ------------------------------------------------------------------------------- gradcheck / gradgradcheck
OPTION_SETS = [
    pytest.param({}, id="plain"),
    pytest.param({"label_smoothing": 0.2, "reduction": "sum"}, id="smooth-sum"),
    pytest.param({"weight": "w", "z_loss": 0.05, "softcap": 2.5, "reduction": "none"}, id="weight-z-cap-none"),
    pytest.param({"weight": "w", "label_smoothing": 0.1, "z_loss": 0.01, "softcap": 3.0}, id="all-mean"),
]


@pytest.mark.parametrize("opts", OPTION_SETS)
@pytest.mark.parametrize("kind", ["index", "prob"])
def test_cross_entropy_gradcheck_and_gradgradcheck(opts, kind):
    g = _gen(31)
    x = (torch.randn(3, 4, 2, generator=g, dtype=torch.float64) * 2).requires_grad_()
    w = torch.rand(4, generator=g, dtype=torch.float64) + 0.3
    kw = {k: (w if v == "w" else v) for k, v in opts.items()}
    if kind == "index":
        t = torch.tensor([[0, 3], [-100, 1], [2, 2]])
        args, fn = (x,), (lambda a: skt.cross_entropy(a, t, **kw))
    else:
        t = torch.softmax(torch.randn(3, 4, 2, generator=g, dtype=torch.float64), 1).requires_grad_()
        args, fn = (x, t), (lambda a, b: skt.cross_entropy(a, b, **kw))
    assert gradcheck(fn, args)
    assert gradgradcheck(fn, args)


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
def test_mapping_gradcheck_and_gradgradcheck(name):
    x = torch.randn(3, 5, generator=_gen(41), dtype=torch.float64)
    x[1, 2] = -INF  # a masked entry: exactly 0 / -inf, derivative 0, in both orders
    x = x.requires_grad_()
    fn = getattr(skt, name)
    for dim in (1, 0):
        if name == "logsumexp":

            def f(a, dim=dim):
                return fn(a, dim)

        else:

            def f(a, dim=dim):
                return torch.where(torch.isinf(a), 0.0, fn(a, dim))  # gradcheck cannot perturb -inf outputs

        assert gradcheck(f, (x,))
        assert gradgradcheck(f, (x,))


def test_double_backward_matches_torch_hessian_vector_product():
    x = torch.randn(4, 6, generator=_gen(51), dtype=torch.float64)
    t = torch.tensor([1, 5, -100, 0])
    w = torch.rand(6, generator=_gen(52), dtype=torch.float64) + 0.5
    v = torch.randn(4, 6, generator=_gen(53), dtype=torch.float64)
    hvps = []
    for fn in (skt.cross_entropy, F.cross_entropy):
        xx = x.clone().requires_grad_()
        (gx,) = torch.autograd.grad(fn(xx, t, weight=w, label_smoothing=0.1), xx, create_graph=True)
        hvps.append(torch.autograd.grad((gx * v).sum(), xx)[0])
    _close(hvps[0], hvps[1])


def test_cross_entropy_saves_only_row_statistics():
    # nothing of size N x C is kept for backward but the logits themselves (which the caller holds anyway)
    x = torch.randn(64, 50, dtype=torch.float32, requires_grad=True)
    saved: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = skt.cross_entropy(x, torch.randint(0, 50, (64,)), label_smoothing=0.1, z_loss=1e-4)
    big = [t for t in saved if t.numel() >= x.numel()]
    assert len(big) == 1
    assert big[0].data_ptr() == x.data_ptr()
    assert sum(t.numel() for t in saved if t.numel() < x.numel()) <= 4 * 64 + 4
    loss.backward()


# ------------------------------------------------------------------------------ special values (deviations)
def test_zero_total_weight_mean_is_zero():
    x = torch.zeros(2, 3, requires_grad=True)
    loss = skt.cross_entropy(x, torch.tensor([1, 1]), weight=torch.tensor([1.0, 0.0, 1.0]))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(x.grad, torch.zeros(2, 3))


def test_empty_batch_mean_is_zero():
    x = torch.zeros(0, 4, requires_grad=True)
    loss = skt.cross_entropy(x, torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0
    assert x.grad.shape == (0, 4)
    assert skt.cross_entropy(x, torch.zeros(0, dtype=torch.long), reduction="none").shape == (0,)


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
def test_fully_masked_row_is_finite_with_zero_gradient(name):
    x = torch.tensor([[-INF, -INF, -INF], [0.0, 1.0, -INF]], requires_grad=True)
    fn = getattr(skt, name)
    out = fn(x, 1)
    expected = {"softmax": 0.0, "log_softmax": -INF, "logsumexp": -INF}[name]
    assert torch.all(out[0] == expected)
    torch.where(torch.isinf(out), 0.0, out).sum().backward()
    assert torch.equal(x.grad[0], torch.zeros(3))
    assert float(x.grad[1, 2]) == 0.0
    # torch's values, the deviation we document: softmax and log_softmax nan; logsumexp -inf with a nan gradient
    xt = x.detach().clone().requires_grad_()
    theirs = getattr(torch, name)(xt, 1)
    if name == "logsumexp":
        theirs.sum().backward()
        assert torch.isnan(xt.grad[0]).all()
    else:
        assert torch.isnan(theirs[0]).all()


def test_nan_row_poisons_only_itself():
    x = torch.tensor([[NAN, 0.0], [1.0, 2.0]], requires_grad=True)
    per_row = skt.cross_entropy(x, torch.tensor([0, 1]), reduction="none")
    per_row.sum().backward()
    assert math.isnan(per_row[0].item())
    assert math.isfinite(per_row[1].item())
    assert torch.isnan(x.grad[0]).all()
    assert torch.isfinite(x.grad[1]).all()
    assert torch.isnan(skt.softmax(x.detach(), 1)[0]).all()
    assert torch.isfinite(skt.softmax(x.detach(), 1)[1]).all()


def test_plus_inf_row_is_nan_but_its_lse_is_inf():
    x = torch.tensor([[INF, 0.0], [1.0, 2.0]])
    assert math.isnan(float(skt.cross_entropy(x, torch.tensor([1, 1]), reduction="none")[0]))
    assert torch.isnan(skt.softmax(x, 1)[0]).all()
    assert torch.isnan(skt.log_softmax(x, 1)[0]).all()
    assert float(skt.logsumexp(x, 1)[0]) == INF


def test_target_logit_minus_inf_gives_inf_loss_and_finite_gradient():
    x = torch.tensor([[0.0, -INF, 1.0]], dtype=torch.float64, requires_grad=True)
    loss = skt.cross_entropy(x, torch.tensor([1]))
    loss.backward()
    assert loss.item() == INF
    p = torch.softmax(x.detach(), 1)
    _close(x.grad, p - torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64))


def test_ignored_row_holding_nan_is_never_read():
    x = torch.tensor([[NAN, NAN], [1.0, 2.0]], requires_grad=True)
    loss = skt.cross_entropy(x, torch.tensor([-100, 1]), label_smoothing=0.1, z_loss=0.1, softcap=4.0)
    loss.backward()
    assert math.isfinite(loss.item())
    assert torch.equal(x.grad[0], torch.zeros(2))


def test_softcap_keeps_masked_logits_masked():
    x = torch.tensor([[2.0, 1.0, -INF, -INF]], dtype=torch.float64, requires_grad=True)
    loss = skt.cross_entropy(x, torch.tensor([0]), softcap=1.0)
    loss.backward()
    capped = torch.tanh(torch.tensor([[2.0, 1.0]], dtype=torch.float64))
    assert loss.item() == pytest.approx(float(F.cross_entropy(capped, torch.tensor([0]))), rel=1e-14)
    assert torch.equal(x.grad[0, 2:], torch.zeros(2, dtype=torch.float64))


# ------------------------------------------------------------------------------------------ half precision
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype):
    x = (torch.randn(5, 9, generator=_gen(61)) * 5).to(dtype).requires_grad_()
    t = torch.tensor([0, 8, -100, 3, 3])
    loss = skt.cross_entropy(x, t, label_smoothing=0.1)
    loss.backward()
    assert loss.dtype == x.grad.dtype == dtype
    x64 = x.detach().double().requires_grad_()
    ref = F.cross_entropy(x64, t, label_smoothing=0.1)
    ref.backward()
    _close(loss.double(), ref, **tol(str(dtype).split(".")[-1]))
    _close(x.grad.double(), x64.grad, **tol(str(dtype).split(".")[-1]))
    for name in ("softmax", "log_softmax"):
        out = getattr(skt, name)(x.detach(), 1)
        assert out.dtype == dtype
        _close(out.double(), getattr(F, name)(x64.detach(), 1), **tol(str(dtype).split(".")[-1]))


# -------------------------------------------------------------------------------------------------- errors
def test_label_out_of_range_names_value_and_position():
    with pytest.raises(ValueError, match=r"class index 7 at position \(1, 0\), outside \[0, 5\)"):
        skt.cross_entropy(torch.zeros(2, 5, 2), torch.tensor([[0, 1], [7, 2]]))
    with pytest.raises(ValueError, match=r"class index -1 at position \(0,\)"):
        skt.CrossEntropyLoss()(torch.zeros(2, 5), torch.tensor([-1, 2]))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"reduction": "avg"}, ValueError, "reduction must be one of 'mean', 'sum', 'none'; got 'avg'"),
        ({"label_smoothing": 1.5}, ValueError, r"label_smoothing must lie in \[0, 1\]; got 1.5"),
        ({"z_loss": -1e-4}, ValueError, "z_loss must be a finite number >= 0; got -0.0001"),
        ({"softcap": 0.0}, ValueError, "softcap must be a finite number > 0; got 0.0"),
        ({"ignore_index": 1.5}, TypeError, "ignore_index must be an int; got 1.5"),
        (
            {"weight": torch.tensor([1.0, -2.0, 1.0])},
            ValueError,
            "weight must be finite and >= 0; got -2.0 for class 1",
        ),
        ({"weight": torch.ones(4)}, ValueError, r"one entry per class \(3\); got shape \(4,\)"),
    ],
)
def test_option_errors_name_argument_and_value(kwargs, error, message):
    with pytest.raises(error, match=message):
        skt.cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1]), **kwargs)


def test_shape_and_type_errors():
    with pytest.raises(ValueError, match=r"without dimension 1, \(2, 3\); got shape \(2,\)"):
        skt.cross_entropy(torch.zeros(2, 5, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"target \(probabilities\) must have the input's shape \(2, 5\)"):
        skt.cross_entropy(torch.zeros(2, 5), torch.zeros(5, 2))
    with pytest.raises(TypeError, match="target must hold integer class indices or floating probabilities"):
        skt.cross_entropy(torch.zeros(2, 3), torch.tensor([True, False]))
    with pytest.raises(ValueError, match="ignore_index=3 has no meaning for probability targets"):
        skt.cross_entropy(torch.zeros(2, 3), torch.full((2, 3), 1 / 3), ignore_index=3)
    with pytest.raises(
        ValueError, match=r"target probabilities must be finite and >= 0; got -0.5 at position \(1, 1\)"
    ):
        skt.cross_entropy(torch.zeros(2, 3), torch.tensor([[0.5, 0.5, 0.0], [0.2, -0.5, 0.3]]))
    with pytest.raises(TypeError, match=r"input must be a torch\.Tensor; got list"):
        skt.softmax([1.0, 2.0], 0)
    with pytest.raises(ValueError, match="dim=2 is out of range"):
        skt.softmax(torch.zeros(2, 2), 2)
    with pytest.raises(ValueError, match="softcap must be a finite number > 0; got -1"):
        skt.CrossEntropyLoss(softcap=-1)


def test_import_softmaxkit_does_not_import_the_torch_front():
    code = "import sys, softmaxkit; print('softmaxkit.torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_cross_entropy_loss_module_passes_check_target():
    """The module forwards ``check_target``; it shows in the repr when off and must be a bool."""
    loss_fn = skt.CrossEntropyLoss(check_target=False)
    assert "check_target=False" in repr(loss_fn)
    x = torch.tensor([[2.0, 0.0, -1.0]])
    assert torch.allclose(loss_fn(x, torch.tensor([0])), skt.cross_entropy(x, torch.tensor([0])))
    with pytest.raises(ValueError, match="class index 5"):
        skt.CrossEntropyLoss()(x, torch.tensor([5]))
    with pytest.raises(TypeError, match="check_target must be True or False; got 'no'"):
        skt.CrossEntropyLoss(check_target="no")


# ----------------------------------------------------------------------------- the CPU kernels (issue 15)
CPU_CASES = [
    ({}, "index"),
    ({"reduction": "sum", "label_smoothing": 0.1}, "index"),
    ({"reduction": "none", "weight": True, "z_loss": 1e-3}, "index"),
    ({"ignore_index": 2, "softcap": 4.0}, "index"),
    ({}, "prob"),
    ({"reduction": "none", "label_smoothing": 0.2}, "prob"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("kw", "kind"), CPU_CASES, ids=repr)
def test_cpu_kernels_equal_the_torch_code(kw, kind, dtype):
    """backend("numba") sends CPU float32/float64 tensors to the kernels: the values and gradients of the torch
    code (backend("reference")), upstream gradient not 1 included."""
    g = _gen(11)
    x = torch.randn(7, 6, generator=g, dtype=dtype) * 3
    t = torch.randint(0, 6, (7,), generator=g) if kind == "index" else torch.softmax(torch.randn(7, 6, generator=g), 1)
    o = {**kw, "weight": torch.linspace(0.5, 2.0, 6, dtype=dtype)} if kw.get("weight") else kw
    results = []
    for engine in ("numba", "reference"):
        a = x.clone().requires_grad_(True)
        with sk.backend(engine):
            loss = skt.cross_entropy(a, t, **o)
            p, lp = skt.softmax(a, dim=1), skt.log_softmax(a, dim=-1)
        ((loss * 1.5).sum() + (p * x).sum() + lp[:, 0].sum()).backward()
        results.append((loss.detach(), p.detach(), lp.detach(), a.grad))
    for ours, ref in zip(*results, strict=True):
        torch.testing.assert_close(ours, ref, **tol(str(dtype).removeprefix("torch.")))


def test_cpu_kernels_read_the_tensors_memory(monkeypatch):
    """No copy on the way in: the kernels get a NumPy view of the logits' memory."""
    from softmaxkit.kernels import numba as kernels

    seen: dict[str, list[Any]] = {"cross_entropy": [], "small_cross_entropy": []}
    for name, got in seen.items():
        real = getattr(kernels, name)
        monkeypatch.setattr(kernels, name, lambda z, *a, real=real, got=got: got.append(z) or real(z, *a))
    t = torch.tensor([0, 1, 2, 3, 0])
    for entry, kw in (("small_cross_entropy", {}), ("cross_entropy", {"label_smoothing": 0.1})):
        x = torch.randn(5, 4, requires_grad=True)
        with sk.backend("numba"):
            skt.cross_entropy(x, t, **kw).backward()
        assert len(seen[entry]) == 1, entry
        assert np.shares_memory(seen[entry].pop(), x.detach().numpy())
        assert x.grad is not None
        _close(x.grad, torch.autograd.grad(F.cross_entropy(x, t, **kw), x)[0], **tol("float32"))


def test_cpu_kernels_double_backward_and_second_backward():
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 4, -100, 2])
    with sk.backend("numba"):
        assert gradgradcheck(lambda a: skt.cross_entropy(a, t, label_smoothing=0.1), (x,))
        loss = skt.cross_entropy(x, t)
    (first,) = torch.autograd.grad(loss, x, retain_graph=True)
    (second,) = torch.autograd.grad(loss, x)  # the kernels' gradient was handed over: recomputed, equal
    _close(first, second)
    _close(first, torch.autograd.grad(F.cross_entropy(x, t), x)[0])


def test_cpu_kernels_never_see_unchecked_labels():
    """check_target=False keeps the torch code (the kernels would index the row with the label): a nan row."""
    x = torch.randn(3, 4, dtype=torch.float64)
    with sk.backend("numba"):
        loss = skt.cross_entropy(x, torch.tensor([0, 9, 1]), reduction="none", check_target=False)
    assert torch.isnan(loss[1])
    assert torch.isfinite(loss[[0, 2]]).all()

"""softmaxkit.torch under torch's transforms (issue 15, items 2-4), each against torch's own function:

* ``torch.func.grad``, ``vmap`` (per-sample gradients), ``jacrev``, ``jacfwd``, ``hessian`` and
  ``torch.autograd.forward_ad``, float64, tight tolerance;
* ``torch.compile(fullgraph=True)`` (``aot_eager``: the graph and its autograd, without inductor's slow
  compile), default options, values and gradients equal to eager; an unchecked out-of-range label is ``nan`` for
  its row only;
* ``torch.autocast``: cross-entropy returns float32 as torch's does.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch.func import grad, hessian, jacfwd, jacrev, vmap

import softmaxkit.torch as skt
from conftest import tol

F64 = tol("float64")

# torch 2.13's own warnings: the first forward-mode AD loads its jvp decompositions through torch.jit.script, and
# Dynamo instantiates every autograd.Function it traces (any Function, not only ours)
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*should not be instantiated:DeprecationWarning"),
]


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, **F64)


def _data(shape: tuple[int, ...] = (4, 5), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    return x, y


# (ours, torch's) for each mapping, along dim 1 and dim 0
MAPPINGS = {
    "softmax": (skt.softmax, torch.softmax),
    "log_softmax": (skt.log_softmax, torch.log_softmax),
    "logsumexp": (skt.logsumexp, torch.logsumexp),
}


@pytest.mark.parametrize("name", list(MAPPINGS))
@pytest.mark.parametrize("dim", [1, 0])
@pytest.mark.parametrize("transform", [jacrev, jacfwd, hessian], ids=lambda t: t.__name__)
def test_mapping_jacobians_equal_torch(name, dim, transform):
    ours, theirs = MAPPINGS[name]
    x, _ = _data()
    _close(transform(lambda a: ours(a, dim=dim))(x), transform(lambda a: theirs(a, dim))(x))


@pytest.mark.parametrize("name", list(MAPPINGS))
def test_mapping_per_sample_jacobians_and_grad_equal_torch(name):
    ours, theirs = MAPPINGS[name]
    x, _ = _data((3, 4, 5))
    _close(vmap(jacrev(lambda a: ours(a, dim=-1)))(x), vmap(jacrev(lambda a: theirs(a, -1)))(x))
    _close(vmap(jacfwd(lambda a: ours(a, dim=0)), in_dims=1)(x), vmap(jacfwd(lambda a: theirs(a, 0)), in_dims=1)(x))
    _close(grad(lambda a: ours(a, dim=-1).pow(2).sum())(x), grad(lambda a: theirs(a, -1).pow(2).sum())(x))


@pytest.mark.parametrize("name", list(MAPPINGS))
def test_mapping_forward_ad_equals_torch(name):
    ours, theirs = MAPPINGS[name]
    x, _ = _data()
    t = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    tangents = []
    for f in (lambda a: ours(a, dim=1), lambda a: theirs(a, 1)):
        with fwAD.dual_level():
            out = fwAD.unpack_dual(f(fwAD.make_dual(x, t)))
            tangents.append((out.primal, out.tangent))
    _close(*[p for p, _ in tangents])
    _close(*[d for _, d in tangents])


def test_logsumexp_keepdim_and_several_dims_under_jacfwd():
    x, _ = _data((3, 4, 5))
    for kw in ({"dim": 1, "keepdim": True}, {"dim": (0, 2)}, {"dim": (0, 2), "keepdim": True}):
        _close(jacfwd(lambda a, kw=kw: skt.logsumexp(a, **kw))(x), jacfwd(lambda a, kw=kw: torch.logsumexp(a, **kw))(x))


def test_masked_rows_keep_zero_derivatives_under_jacfwd():
    """Our special values survive forward mode: a fully masked row has zero tangents (torch: nan)."""
    x = torch.tensor([[0.0, 1.0, -math.inf], [-math.inf, -math.inf, -math.inf]], dtype=torch.float64)
    for f in (skt.softmax, skt.log_softmax, skt.logsumexp):
        jac = jacfwd(lambda a, f=f: f(a, dim=1))(x)
        assert torch.isfinite(jac).all()
        assert (jac[1] == 0).all()


# ------------------------------------------------------------------------------------------ cross-entropy
CE_OPTIONS = [
    {},
    {"reduction": "sum"},
    {"reduction": "none"},
    {"label_smoothing": 0.2},
    {"weight": "w"},
    {"weight": "w", "label_smoothing": 0.1, "reduction": "none"},
    {"ignore_index": 1},
]


def _opts(kw: dict[str, object]) -> dict[str, object]:
    if kw.get("weight") == "w":
        return {**kw, "weight": torch.linspace(0.5, 2.0, 5, dtype=torch.float64)}
    return kw


@pytest.mark.parametrize("kw", CE_OPTIONS, ids=repr)
@pytest.mark.parametrize("transform", [jacrev, jacfwd, hessian], ids=lambda t: t.__name__)
def test_cross_entropy_jacobians_equal_torch(kw, transform):
    x, y = _data()
    y[0] = 1  # ignore_index=1 hits a row
    o = _opts(kw)
    _close(transform(lambda a: skt.cross_entropy(a, y, **o))(x), transform(lambda a: F.cross_entropy(a, y, **o))(x))


@pytest.mark.parametrize("kw", CE_OPTIONS, ids=repr)
def test_cross_entropy_per_sample_gradients_equal_torch(kw):
    """vmap(grad(...)) over samples with batched targets: the label check cannot run, the values are torch's."""
    x, y = _data((6, 5))
    o = _opts(kw)

    def ours(a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return skt.cross_entropy(a[None], t[None], **o).sum()

    def theirs(a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(a[None], t[None], **o).sum()

    _close(vmap(grad(ours))(x, y), vmap(grad(theirs))(x, y))


def test_cross_entropy_per_sample_gradients_of_a_linear_model():
    """The usual per-sample-gradient recipe: functional_call over a module's parameters."""
    model = torch.nn.Linear(3, 5).double()
    params = {k: v.detach() for k, v in model.named_parameters()}
    g = torch.Generator().manual_seed(2)
    x = torch.randn(8, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (8,), generator=g)

    def loss(ce, p, a, t):
        return ce(torch.func.functional_call(model, p, (a[None],)), t[None])

    ours = vmap(grad(lambda p, a, t: loss(skt.cross_entropy, p, a, t)), in_dims=(None, 0, 0))(params, x, y)
    theirs = vmap(grad(lambda p, a, t: loss(F.cross_entropy, p, a, t)), in_dims=(None, 0, 0))(params, x, y)
    for k in params:
        _close(ours[k], theirs[k])


def test_cross_entropy_probability_targets_under_jacrev_and_jacfwd():
    x, _ = _data()
    q = torch.softmax(torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64), 1)
    for transform in (jacrev, jacfwd):
        for argnums in (0, 1):
            ours = transform(lambda a, b: skt.cross_entropy(a, b, label_smoothing=0.1), argnums=argnums)(x, q)
            theirs = transform(lambda a, b: F.cross_entropy(a, b, label_smoothing=0.1), argnums=argnums)(x, q)
            _close(ours, theirs)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_cross_entropy_forward_ad_equals_torch(reduction):
    x, y = _data((4, 5, 3))
    t = torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    got = []
    for ce in (skt.cross_entropy, F.cross_entropy):
        with fwAD.dual_level():
            out = fwAD.unpack_dual(ce(fwAD.make_dual(x, t), y, reduction=reduction))
            got.append((out.primal, out.tangent))
    _close(got[0][0], got[1][0])
    _close(got[0][1], got[1][1])


def test_out_of_range_label_under_vmap_is_nan_for_its_row_only():
    x, y = _data((4, 5))
    y[2] = 9
    per_row = vmap(lambda a, t: skt.cross_entropy(a, t))(x, y)
    assert torch.isnan(per_row[2])
    _close(per_row[[0, 1, 3]], F.cross_entropy(x[[0, 1, 3]], y[[0, 1, 3]], reduction="none"))
    g = vmap(grad(lambda a, t: skt.cross_entropy(a, t)))(x, y)
    assert torch.isnan(g[2]).all()
    assert torch.isfinite(g[[0, 1, 3]]).all()


def test_unchecked_out_of_range_label_is_nan_for_its_row():
    """check_target=False in eager mode: the same nan row (it was torch's IndexError), no read outside it."""
    x, y = _data((4, 5))
    x.requires_grad_(True)
    y[1], y[3] = -3, 5
    loss = skt.cross_entropy(x, y, reduction="none", check_target=False)
    assert torch.isnan(loss[[1, 3]]).all()
    _close(loss[[0, 2]], F.cross_entropy(x[[0, 2]], y[[0, 2]], reduction="none"))
    loss.sum().backward()
    assert x.grad is not None
    assert torch.isnan(x.grad[[1, 3]]).all()
    assert torch.isfinite(x.grad[[0, 2]]).all()
    assert torch.isnan(skt.cross_entropy(x, y, check_target=False))


# -------------------------------------------------------------------------------------------- compile
def _compiled(f):
    torch._dynamo.reset()
    return torch.compile(f, fullgraph=True, backend="aot_eager")


COMPILED_CALLS = {
    "softmax": lambda a, t: (skt.softmax(a, dim=1) * torch.arange(5.0, dtype=a.dtype)).sum(),
    "log_softmax": lambda a, t: (skt.log_softmax(a, dim=1) * torch.arange(5.0, dtype=a.dtype)).sum(),
    "logsumexp": lambda a, t: skt.logsumexp(a, dim=1).sum(),
    "cross_entropy": lambda a, t: skt.cross_entropy(a, t, label_smoothing=0.1),
    "cross_entropy_weighted_none": lambda a, t: skt.cross_entropy(
        a, t, torch.linspace(0.5, 2.0, 5, dtype=a.dtype), reduction="none"
    ).sum(),
}


@pytest.mark.parametrize("name", list(COMPILED_CALLS))
def test_compiles_with_fullgraph_and_equals_eager(name):
    f = COMPILED_CALLS[name]
    x, y = _data()
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    eager = f(a, y)
    eager.backward()
    got = _compiled(f)(b, y)
    got.backward()
    _close(got.detach(), eager.detach())
    assert a.grad is not None
    assert b.grad is not None
    _close(b.grad, a.grad)


@pytest.mark.parametrize("name", list(COMPILED_CALLS))
def test_compiles_with_dynamic_shapes_and_equals_eager(name):
    """``torch.compile(dynamic=True)``: the option checks are comparisons dynamo can trace (``math.isfinite`` on a
    symbolic float was a graph break), one graph serves every batch size, each equal to eager."""
    f = COMPILED_CALLS[name]
    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, dynamic=True, backend="aot_eager")
    g = torch.Generator().manual_seed(11)
    for n in (3, 6, 9):
        x = torch.randn(n, 5, generator=g, dtype=torch.float64)
        y = torch.randint(0, 5, (n,), generator=g)
        a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        eager = f(a, y)
        eager.backward()
        got = compiled(b, y)
        got.backward()
        _close(got.detach(), eager.detach())
        assert a.grad is not None
        assert b.grad is not None
        _close(b.grad, a.grad)


def test_compiled_out_of_range_label_is_nan_for_its_row():
    """Under torch.compile the label check (a host sync) is skipped with the default check_target=True: an
    out-of-range label gives nan for its row, the other rows are exact."""
    x, y = _data((5, 5))
    y[3] = 40
    x.requires_grad_(True)
    loss = _compiled(lambda a, t: skt.cross_entropy(a, t, reduction="none"))(x, y)
    assert torch.isnan(loss[3])
    keep = [0, 1, 2, 4]
    _close(loss[keep].detach(), F.cross_entropy(x[keep], y[keep], reduction="none").detach())
    loss.sum().backward()
    assert x.grad is not None
    assert torch.isnan(x.grad[3]).all()
    assert torch.isfinite(x.grad[keep]).all()


def test_eager_label_check_still_raises_after_compiling():
    x, y = _data()
    _compiled(lambda a, t: skt.cross_entropy(a, t))(x, y)
    y[0] = 7
    with pytest.raises(ValueError, match="class index 7 at position"):
        skt.cross_entropy(x, y)


# -------------------------------------------------------------------------------------------- autocast
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_autocast_cross_entropy_returns_float32_as_torch(reduction):
    g = torch.Generator().manual_seed(5)
    layer = torch.nn.Linear(8, 5)
    h = torch.randn(6, 8, generator=g)
    y = torch.randint(0, 5, (6,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = layer(h)
        assert logits.dtype == torch.bfloat16
        ours = skt.cross_entropy(logits, y, reduction=reduction)
        theirs = F.cross_entropy(logits, y, reduction=reduction)
    assert ours.dtype == theirs.dtype == torch.float32
    torch.testing.assert_close(ours, theirs, **tol("float32"))
    (g_ours,) = torch.autograd.grad(ours.sum(), layer.weight, retain_graph=True)
    (g_theirs,) = torch.autograd.grad(theirs.sum(), layer.weight)
    assert g_ours.dtype == g_theirs.dtype == torch.float32
    torch.testing.assert_close(g_ours, g_theirs, **tol("bfloat16"))


def test_autocast_module_returns_float32_as_torch():
    logits = torch.randn(4, 5).to(torch.bfloat16)
    y = torch.tensor([0, 1, 2, 3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert skt.CrossEntropyLoss()(logits, y).dtype == torch.nn.CrossEntropyLoss()(logits, y).dtype == torch.float32
    assert skt.CrossEntropyLoss()(logits, y).dtype == torch.bfloat16  # outside autocast: the input's dtype


LINEAR_OPTIONS = [
    {},
    {"bias": "b"},
    {"weight": "w", "label_smoothing": 0.1},
    {"z_loss": 1e-2, "softcap": 3.0},
    {"reduction": "none", "z_loss": 0.1, "bias": "b"},
    {"reduction": "sum", "chunk_size": 3},
]


@pytest.mark.parametrize("kw", LINEAR_OPTIONS, ids=repr)
def test_linear_cross_entropy_compiles_with_fullgraph_and_equals_eager(kw):
    """The traced path (token chunks under activation checkpointing) gives the eager path's loss and gradients."""
    g = torch.Generator().manual_seed(6)
    h = torch.randn(10, 6, generator=g, dtype=torch.float64)
    lw = torch.randn(7, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 7, (10,), generator=g)
    y[2] = -100
    extra = {
        "b": torch.randn(7, generator=g, dtype=torch.float64),
        "w": torch.linspace(0.5, 2.0, 7, dtype=torch.float64),
    }
    o = {k: extra[v] if k in ("bias", "weight") else v for k, v in kw.items()}

    def f(a: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return skt.linear_cross_entropy(a, w, t, **o)

    results = []
    for fn in (f, _compiled(f)):
        a, w = h.clone().requires_grad_(True), lw.clone().requires_grad_(True)
        loss = fn(a, w, y)
        loss.sum().backward()
        results.append((loss.detach(), a.grad, w.grad))
    for got, want in zip(*results, strict=True):
        _close(got, want)


def test_linear_cross_entropy_compiles_with_dynamic_shapes_and_equals_eager():
    """``torch.compile(dynamic=True)`` of linear CE (z-loss on, so its option check is traced): every token
    count through one compiled function, loss and both gradients equal to eager."""
    torch._dynamo.reset()

    def f(a: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return skt.linear_cross_entropy(a, w, t, z_loss=1e-3)

    compiled = torch.compile(f, fullgraph=True, dynamic=True, backend="aot_eager")
    g = torch.Generator().manual_seed(12)
    for n in (4, 7, 9):
        h = torch.randn(n, 6, generator=g, dtype=torch.float64)
        lw = torch.randn(7, 6, generator=g, dtype=torch.float64)
        y = torch.randint(0, 7, (n,), generator=g)
        results = []
        for fn in (f, compiled):
            a, w = h.clone().requires_grad_(True), lw.clone().requires_grad_(True)
            loss = fn(a, w, y)
            loss.backward()
            results.append((loss.detach(), a.grad, w.grad))
        for got, want in zip(*results, strict=True):
            _close(got, want)


def test_linear_cross_entropy_compiled_out_of_range_label_is_nan_for_its_row():
    g = torch.Generator().manual_seed(7)
    h = torch.randn(6, 4, generator=g, dtype=torch.float64)
    lw = torch.randn(5, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 9, 3, -100, 4])
    loss = _compiled(lambda a, w, t: skt.linear_cross_entropy(a, w, t, reduction="none"))(h, lw, y)
    assert torch.isnan(loss[2])
    keep = [0, 1, 3, 4, 5]
    _close(loss[keep], skt.linear_cross_entropy(h[keep], lw, y[keep], reduction="none"))
    with pytest.raises(ValueError, match="class index 9"):  # eager still checks
        skt.linear_cross_entropy(h, lw, y)


def test_compiled_module_step_has_no_graph_break():
    """A small MLP train step with our CrossEntropyLoss compiles as one graph (fullgraph) and equals eager."""
    torch.manual_seed(8)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 5)).double()
    loss_fn = skt.CrossEntropyLoss(label_smoothing=0.05)
    x = torch.randn(12, 6, dtype=torch.float64)
    y = torch.randint(0, 5, (12,))

    def step(a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return loss_fn(model(a), t)

    explanation = torch._dynamo.explain(step)(x, y)
    assert explanation.graph_break_count == 0
    assert explanation.graph_count == 1
    want = step(x, y)
    (g_want,) = torch.autograd.grad(want, model[0].weight)
    got = _compiled(step)(x, y)
    (g_got,) = torch.autograd.grad(got, model[0].weight)
    _close(got, want)
    _close(g_got, g_want)

"""softmaxkit.torch's family Functions (issue 17): values and gradients against the ``entmax`` package, autograd
against the analytic derivatives of :mod:`softmaxkit.family`, the torch.func transforms, the generic functions
routed through the dispatcher's hook, bf16/fp16, gradcheck, bad input, no mutation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
entmax = pytest.importorskip("entmax")

import softmaxkit as sk  # noqa: E402
import softmaxkit.torch as skt  # noqa: E402
from softmaxkit import family  # noqa: E402

# torch 2.13's own warning: the first forward-mode AD loads its jvp decompositions through torch.jit.script
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

TOL = {torch.float32: 1e-6, torch.float64: 1e-12}

# name -> (torch function, generic mapping, its vjp, its jacobian, keywords)
Fn = Callable[..., Any]
MAPPINGS: dict[str, tuple[Fn, Fn, Fn, Fn, dict[str, Any]]] = {
    "sparsemax": (skt.sparsemax, family.sparsemax, family.sparsemax_vjp, family.sparsemax_jacobian, {}),
    "entmax15": (skt.entmax15, family.entmax15, family.entmax15_vjp, family.entmax15_jacobian, {}),
    "entmax_bisect": (
        skt.entmax_bisect, family.entmax_bisect, family.entmax_bisect_vjp, family.entmax_bisect_jacobian,
        {"alpha": 1.3},
    ),
    "taylor_softmax": (
        skt.taylor_softmax, family.taylor_softmax, family.taylor_softmax_vjp, family.taylor_softmax_jacobian,
        {"order": 4},
    ),
    "spherical_softmax": (
        skt.spherical_softmax, family.spherical_softmax, family.spherical_softmax_vjp,
        family.spherical_softmax_jacobian, {"eps": 0.5},
    ),
    "sigmoid": (skt.sigmoid, family.sigmoid, family.sigmoid_vjp, family.sigmoid_jacobian, {}),
    "softplus_normalize": (
        skt.softplus_normalize, family.softplus_normalize, family.softplus_normalize_vjp,
        family.softplus_normalize_jacobian, {},
    ),
}  # fmt: skip

# name -> (torch loss, generic value_and_grad, keywords)
LOSSES: dict[str, tuple[Callable[..., Any], Callable[..., Any], dict[str, Any]]] = {
    "sparsemax_loss": (skt.sparsemax_loss, family.sparsemax_loss_value_and_grad, {}),
    "entmax15_loss": (skt.entmax15_loss, family.entmax15_loss_value_and_grad, {}),
    "entmax_bisect_loss": (skt.entmax_bisect_loss, family.entmax_bisect_loss_value_and_grad, {"alpha": 1.7}),
    "taylor_cross_entropy": (skt.taylor_cross_entropy, family.taylor_cross_entropy_value_and_grad, {"order": 2}),
    "spherical_cross_entropy": (
        skt.spherical_cross_entropy, family.spherical_cross_entropy_value_and_grad, {"eps": 0.1},
    ),
    "sigmoid_cross_entropy": (skt.sigmoid_cross_entropy, family.sigmoid_cross_entropy_value_and_grad, {}),
    "softplus_normalize_cross_entropy": (
        skt.softplus_normalize_cross_entropy, family.softplus_normalize_cross_entropy_value_and_grad, {},
    ),
}  # fmt: skip


def _logits(shape: tuple[int, ...], dtype: Any = torch.float64, seed: int = 0) -> Any:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype) * 2


def _close(a: Any, b: Any, tol: float) -> None:
    np.testing.assert_allclose(
        np.asarray(torch.as_tensor(a).detach().double()), np.asarray(torch.as_tensor(b).detach().double()),
        rtol=tol, atol=tol,
    )  # fmt: skip


# ------------------------------------------------------------------------------------ against the entmax package
PEERS = {
    "sparsemax": (lambda x: skt.sparsemax(x, dim=-1), lambda x: entmax.sparsemax(x, dim=-1)),
    "entmax15": (lambda x: skt.entmax15(x, dim=-1), lambda x: entmax.entmax15(x, dim=-1)),
    "entmax_bisect": (
        lambda x: skt.entmax_bisect(x, alpha=1.5, dim=-1),
        lambda x: entmax.entmax_bisect(x, alpha=1.5, dim=-1, n_iter=100),
    ),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", PEERS)
def test_values_and_gradients_equal_the_entmax_package(name: str, dtype: Any) -> None:
    ours, theirs = PEERS[name]
    x = _logits((16, 9), dtype)
    g = _logits((16, 9), dtype, seed=1)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    pa, pb = ours(xa), theirs(xb)
    assert pa.dtype == dtype
    _close(pa, pb, TOL[dtype])
    (ga,), (gb,) = torch.autograd.grad(pa, xa, g), torch.autograd.grad(pb, xb, g)
    _close(ga, gb, TOL[dtype] * 10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tensor_alpha_gets_the_entmax_packages_gradient(dtype: Any) -> None:
    x = _logits((6, 5), dtype)
    g = _logits((6, 5), dtype, seed=2)
    alpha0 = torch.linspace(1.2, 2.5, 6, dtype=dtype).unsqueeze(-1)
    xa, aa = x.clone().requires_grad_(), alpha0.clone().requires_grad_()
    xb, ab = x.clone().requires_grad_(), alpha0.clone().requires_grad_()
    pa = skt.entmax_bisect(xa, aa, dim=-1)
    pb = entmax.entmax_bisect(xb, ab, dim=-1, n_iter=100)
    _close(pa, pb, TOL[dtype] * 10)
    dxa, daa = torch.autograd.grad(pa, (xa, aa), g)
    dxb, dab = torch.autograd.grad(pb, (xb, ab), g)
    _close(dxa, dxb, TOL[dtype] * 100)
    _close(daa, dab, TOL[dtype] * 100)
    assert daa.shape == alpha0.shape


def test_scalar_tensor_alpha_gradient_matches_finite_differences() -> None:
    x = _logits((3, 4))
    g = _logits((3, 4), seed=3)
    alpha = torch.tensor(1.6, dtype=torch.float64, requires_grad=True)
    (da,) = torch.autograd.grad((skt.entmax_bisect(x, alpha) * g).sum(), alpha)
    h = 1e-6
    up = (family.entmax_bisect(x, alpha=1.6 + h) * g).sum()
    down = (family.entmax_bisect(x, alpha=1.6 - h) * g).sum()
    assert da.shape == ()
    _close(da, (up - down) / (2 * h), 1e-7)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (skt.SparsemaxLoss, entmax.SparsemaxLoss),
        (skt.Entmax15Loss, entmax.Entmax15Loss),
        (lambda **kw: skt.EntmaxBisectLoss(alpha=1.5, **kw), lambda **kw: entmax.EntmaxBisectLoss(1.5, 100, **kw)),
    ],
)
def test_loss_modules_equal_the_entmax_package(ours: Any, theirs: Any, reduction: str) -> None:
    x = _logits((12, 7))
    y = torch.randint(0, 7, (12,), generator=torch.Generator().manual_seed(0))
    peer_reduction = "elementwise_mean" if reduction == "mean" else reduction
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    la, lb = ours(reduction=peer_reduction)(xa, y), theirs(reduction=peer_reduction)(xb, y)
    _close(la, lb, 1e-12)
    w = torch.ones_like(la) if reduction == "none" else torch.tensor(1.0, dtype=torch.float64)
    _close(torch.autograd.grad(la, xa, w)[0], torch.autograd.grad(lb, xb, w)[0], 1e-12)


def test_mapping_modules_equal_the_entmax_package() -> None:
    x = _logits((4, 3, 5))
    for ours, theirs in [
        (skt.Sparsemax(dim=1), entmax.Sparsemax(dim=1)),
        (skt.Entmax15(dim=1, k=None), entmax.Entmax15(dim=1)),
        (skt.EntmaxBisect(alpha=1.5, dim=1, n_iter=100), entmax.EntmaxBisect(alpha=1.5, dim=1, n_iter=100)),
    ]:
        _close(ours(x), theirs(x), 1e-12)


def test_entmax_bisect_module_learns_alpha() -> None:
    alpha = torch.nn.Parameter(torch.tensor(1.5, dtype=torch.float64))
    layer = skt.EntmaxBisect(alpha=alpha)
    assert any(p is alpha for p in layer.parameters())
    layer(_logits((3, 4))).pow(2).sum().backward()
    assert alpha.grad is not None
    assert torch.isfinite(alpha.grad)


# ------------------------------------------------------------------------------------ the two examples
def test_entmax_bisect_gradient_was_0_27_off() -> None:
    """Issue 17: autograd through the bisection was up to 0.27 off at x = [0.5, 1.0, -0.2, 0.9], alpha = 1.5."""
    x0 = torch.tensor([0.5, 1.0, -0.2, 0.9], dtype=torch.float64)
    for f in (lambda x: skt.entmax_bisect(x, alpha=1.5), lambda x: sk.entmax_bisect(x, alpha=1.5)):
        jac = torch.autograd.functional.jacobian(f, x0)
        _close(jac, family.entmax_bisect_jacobian(x0.numpy(), alpha=1.5), 1e-12)


def test_entmax_bisect_loss_gradient_was_nan() -> None:
    """Issue 17: entmax_bisect_loss's autodiff gradient was nan."""
    y = torch.tensor([1, 3])
    x0 = torch.tensor([[0.5, 1.0, -0.2, 0.9], [0.0, 0.0, 0.0, 9.0]], dtype=torch.float64)
    _, want = family.entmax_bisect_loss_value_and_grad(x0.numpy(), y.numpy())
    for f in (skt.entmax_bisect_loss, sk.entmax_bisect_loss):
        x = x0.clone().requires_grad_()
        (grad,) = torch.autograd.grad(f(x, y), x)
        assert torch.isfinite(grad).all()
        _close(grad, want, 1e-12)


# ---------------------------------------------------------------------------------- autograd vs the analytic
@pytest.mark.parametrize("name", MAPPINGS)
def test_mapping_gradient_is_the_analytic_vjp(name: str) -> None:
    ours, mapping, vjp, _, kw = MAPPINGS[name]
    x = _logits((5, 7)).requires_grad_()
    g = _logits((5, 7), seed=4)
    p = ours(x, **kw)
    _close(p, mapping(x.detach().numpy(), **kw), 1e-12)
    _close(torch.autograd.grad(p, x, g)[0], vjp(x.detach().numpy(), g.numpy(), **kw), 1e-12)


@pytest.mark.parametrize("name", MAPPINGS)
def test_generic_mapping_on_a_tensor_routes_through_the_hook(name: str) -> None:
    ours, mapping, vjp, _, kw = MAPPINGS[name]
    x = _logits((4, 6)).requires_grad_()
    g = _logits((4, 6), seed=5)
    p = mapping(x, **kw)
    assert type(p.grad_fn).__name__ == type(ours(x, **kw).grad_fn).__name__
    _close(torch.autograd.grad(p, x, g)[0], vjp(x.detach().numpy(), g.numpy(), **kw), 1e-12)


@pytest.mark.parametrize("name", MAPPINGS)
def test_jacrev_and_jacfwd_equal_the_analytic_jacobian(name: str) -> None:
    ours, _, _, jacobian, kw = MAPPINGS[name]
    x = _logits((7,), seed=6)
    want = jacobian(x.numpy(), **kw)
    _close(torch.func.jacrev(lambda t: ours(t, **kw))(x), want, 1e-12)
    _close(torch.func.jacfwd(lambda t: ours(t, **kw))(x), want, 1e-12)


@pytest.mark.parametrize("name", MAPPINGS)
def test_vmap_of_grad_gives_per_sample_gradients(name: str) -> None:
    ours, _, vjp, _, kw = MAPPINGS[name]
    x = _logits((5, 6), seed=7)
    g = _logits((6,), seed=8)
    per_sample = torch.func.vmap(torch.func.grad(lambda r: (ours(r, **kw) * g).sum()))(x)
    _close(per_sample, vjp(x.numpy(), np.broadcast_to(g.numpy(), (5, 6)), **kw), 1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", LOSSES)
def test_loss_gradient_is_the_analytic_value_and_grad(name: str, reduction: str) -> None:
    ours, value_and_grad, kw = LOSSES[name]
    x = _logits((6, 5)).requires_grad_()
    y = torch.tensor([0, 4, -100, 2, 1, 1])
    weight = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0], dtype=torch.float64)
    loss = ours(x, y, weight=weight, reduction=reduction, **kw)
    want_loss, want_grad = value_and_grad(
        x.detach().numpy(), y.numpy(), weight=weight.numpy(), reduction=reduction, **kw
    )
    _close(loss, want_loss, 1e-12)
    (grad,) = torch.autograd.grad(loss.sum(), x)
    _close(grad, want_grad, 1e-12)
    generic = getattr(sk.family, name)(x, y, weight=weight, reduction=reduction, **kw)
    _close(torch.autograd.grad(generic.sum(), x)[0], want_grad, 1e-12)
    value, routed_grad = value_and_grad(x, y, weight=weight, reduction=reduction, **kw)
    _close(value, want_loss, 1e-12)
    _close(routed_grad, want_grad, 1e-12)


@pytest.mark.parametrize("name", LOSSES)
def test_loss_jacfwd_and_func_grad(name: str) -> None:
    ours, value_and_grad, kw = LOSSES[name]
    x = _logits((4, 5), seed=9)
    y = torch.tensor([0, 4, 2, 1])
    _, want = value_and_grad(x.numpy(), y.numpy(), reduction="sum", **kw)
    _close(torch.func.jacfwd(lambda t: ours(t, y, reduction="sum", **kw))(x), want, 1e-12)
    _close(torch.func.grad(lambda t: ours(t, y, reduction="sum", **kw))(x), want, 1e-12)


@pytest.mark.parametrize("name", ["sparsemax", "entmax15", "entmax_bisect", "taylor_softmax", "softplus_normalize"])
def test_gradcheck_float64(name: str) -> None:
    ours, _, _, _, kw = MAPPINGS[name]
    x = _logits((3, 5), seed=10).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: ours(t, **kw), (x,), atol=1e-6)
    assert torch.autograd.gradgradcheck(lambda t: ours(t, **kw), (x,), atol=1e-6) if name != "entmax_bisect" else True


def test_gradcheck_tensor_alpha() -> None:
    x = _logits((3, 5), seed=11).requires_grad_()
    alpha = torch.tensor([[1.3], [1.8], [2.4]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, a: skt.entmax_bisect(t, a), (x, alpha), atol=1e-6)


def test_gradcheck_losses() -> None:
    y = torch.tensor([0, 2, 1])
    for name, (ours, _, kw) in LOSSES.items():
        x = _logits((3, 4), seed=12).requires_grad_()
        assert torch.autograd.gradcheck(lambda t, f=ours, o=kw: f(t, y, reduction="none", **o), (x,), atol=1e-6), name


# --------------------------------------------------------------------------------------------- dims, where
def test_dim_and_where() -> None:
    x = _logits((3, 4, 5))
    where = torch.rand(3, 4, 5, generator=torch.Generator().manual_seed(0)) > 0.3
    where[..., 0, :] = True
    for _name, (ours, mapping, _, _, kw) in MAPPINGS.items():
        _close(ours(x, dim=1, where=where, **kw), mapping(x.numpy(), axis=1, where=where.numpy(), **kw), 1e-12)


def test_tensor_alpha_with_where_and_dim() -> None:
    x = _logits((3, 4, 5))
    where = torch.ones(3, 4, 5, dtype=torch.bool)
    where[:, 1] = False
    p = skt.entmax_bisect(x, torch.tensor(1.5, dtype=torch.float64), dim=1, where=where)
    _close(p, family.entmax_bisect(x.numpy(), alpha=1.5, axis=1, where=where.numpy()), 1e-12)


# ------------------------------------------------------------------------------------------ bf16 / fp16
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    "name", ["sparsemax", "entmax15", "entmax_bisect", "taylor_softmax", "spherical_softmax", "softplus_normalize"]
)
def test_half_rows_sum_to_one_without_nan(name: str, dtype: Any) -> None:
    ours, _, _, _, kw = MAPPINGS[name]
    x = (_logits((64, 50), seed=13) * 20).to(dtype).requires_grad_()
    p = ours(x, **kw)
    assert p.dtype == dtype
    assert torch.isfinite(p).all()
    eps = torch.finfo(dtype).eps
    np.testing.assert_allclose(p.detach().float().sum(-1).numpy(), 1.0, atol=50 * eps)
    (grad,) = torch.autograd.grad(p, x, torch.randn(p.shape, generator=torch.Generator().manual_seed(1)).to(dtype))
    assert grad.dtype == dtype
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_losses_finite(dtype: Any) -> None:
    x = (_logits((16, 9), seed=14) * 30).to(dtype).requires_grad_()
    y = torch.arange(16) % 9
    for name, (ours, _, kw) in LOSSES.items():
        loss = ours(x, y, **kw)
        assert loss.dtype == dtype, name
        assert torch.isfinite(loss), name
        assert torch.isfinite(torch.autograd.grad(loss, x)[0]).all(), name


# ------------------------------------------------------------------------------------------- special values
def test_masked_rows_and_nan_rows_gradients() -> None:
    x = torch.tensor([[0.0, -torch.inf, 1.0], [-torch.inf] * 3, [0.0, torch.nan, 1.0]], dtype=torch.float64)
    for name in ("sparsemax", "entmax15", "entmax_bisect"):
        ours, _, _, _, kw = MAPPINGS[name]
        xx = x.clone().requires_grad_()
        p = ours(xx, **kw)
        assert p[0, 1] == 0
        assert (p[1] == 0).all()
        assert torch.isnan(p[2]).all()
        (grad,) = torch.autograd.grad(p, xx, torch.ones_like(p).cumsum(-1))
        assert grad[0, 1] == 0
        assert (grad[1] == 0).all()
        assert torch.isnan(grad[2]).all()


# ------------------------------------------------------------------------------------------------ bad input
def test_bad_input_raises_naming_the_argument() -> None:
    x = _logits((2, 3))
    with pytest.raises(ValueError, match="dim=2 is out of range"):
        skt.sparsemax(x, dim=2)
    with pytest.raises(ValueError, match="axis=2 is out of range"):
        sk.sparsemax(x, axis=2)
    with pytest.raises(TypeError, match=r"input must be a torch\.Tensor"):
        skt.entmax15([1.0, 2.0])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alpha must be a finite number >= 1"):
        skt.entmax_bisect(x, alpha=0.5)
    with pytest.raises(ValueError, match="alpha must be finite and > 1"):
        skt.entmax_bisect(x, alpha=torch.tensor(1.0))
    with pytest.raises(ValueError, match="alpha with shape"):
        skt.entmax_bisect(x, alpha=torch.ones(3, 3) * 1.5)
    with pytest.raises(TypeError, match="alpha must be a floating tensor"):
        skt.entmax_bisect(x, alpha=torch.tensor(2))
    with pytest.raises(ValueError, match="n_iter must be >= 1"):
        skt.entmax_bisect(x, alpha=torch.tensor(1.5), n_iter=0)
    with pytest.raises(ValueError, match="k must be a positive int"):
        skt.entmax15(x, k=0)
    with pytest.raises(ValueError, match="class index 5"):
        skt.sparsemax_loss(x, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="reduction"):
        skt.SparsemaxLoss(reduction="average")
    with (
        pytest.raises(ValueError, match=r"backend='numba' cannot run softmaxkit\.torch\.taylor_softmax"),
        sk.backend("numba"),
    ):
        skt.taylor_softmax(x)  # (sparsemax, entmax15, entmax_bisect have numba kernels)


def test_reference_backend_keeps_the_analytic_gradient() -> None:
    x = torch.tensor([0.5, 1.0, -0.2, 0.9], dtype=torch.float64, requires_grad=True)
    with sk.backend("reference"):
        p = sk.entmax_bisect(x, alpha=1.5)
    (grad,) = torch.autograd.grad(p[1], x)
    _close(grad, family.entmax_bisect_jacobian(x.detach().numpy(), alpha=1.5)[1], 1e-12)


def test_no_input_mutation() -> None:
    x = _logits((4, 5))
    y = torch.tensor([0, 1, 2, 3])
    x0, y0 = x.clone(), y.clone()
    alpha = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    for name, (ours, _, _, _, kw) in MAPPINGS.items():
        xx = x.clone().requires_grad_()
        torch.autograd.grad(ours(xx, **kw).sum(), xx)
        assert torch.equal(xx.detach(), x0), name
    skt.entmax_bisect(x, alpha).sum().backward()
    for ours, _, kw in LOSSES.values():
        ours(x, y, **kw)
    assert torch.equal(x, x0)
    assert torch.equal(y, y0)
    assert alpha.detach() == 1.5


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", LOSSES)
def test_vmap_of_grad_gives_per_sample_loss_gradients(name: str, reduction: str) -> None:
    ours, value_and_grad, kw = LOSSES[name]
    x = _logits((5, 3, 4), seed=15)
    y = torch.tensor([[0, 3, -100], [1, 1, 2], [-100, -100, -100], [3, 2, 0], [0, 0, 1]])
    weight = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)

    def per_sample(r: Any, t: Any) -> Any:
        return ours(r, t, weight=weight, reduction=reduction, **kw).sum()

    got = torch.func.vmap(torch.func.grad_and_value(per_sample))(x, y)
    for i in range(5):
        loss, grad = value_and_grad(x[i].numpy(), y[i].numpy(), weight=weight.numpy(), reduction=reduction, **kw)
        _close(got[0][i], grad, 1e-12)
        _close(got[1][i], np.sum(loss), 1e-12)


LOG_MAPPINGS = {
    "log_taylor_softmax": (family.log_taylor_softmax, family.taylor_softmax, family.taylor_softmax_vjp, {"order": 2}),
    "log_spherical_softmax": (
        family.log_spherical_softmax, family.spherical_softmax, family.spherical_softmax_vjp, {"eps": 0.1},
    ),
    "log_sigmoid": (family.log_sigmoid, family.sigmoid, family.sigmoid_vjp, {}),
    "log_softplus_normalize": (
        family.log_softplus_normalize, family.softplus_normalize, family.softplus_normalize_vjp, {},
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", LOG_MAPPINGS)
def test_log_mappings_route_with_the_derivative_of_the_log(name: str) -> None:
    """The gradient of log p is the vjp of p with g / p; masked entries get 0 (autograd gave nan for
    log_softplus_normalize)."""
    log, mapping, vjp, kw = LOG_MAPPINGS[name]
    x0 = _logits((4, 5), seed=16)
    where = torch.ones(4, 5, dtype=torch.bool)
    where[1, 2] = False
    g = _logits((4, 5), seed=17)
    x = x0.clone().requires_grad_()
    y = log(x, where=where, **kw)
    assert type(y.grad_fn).__name__ == name.title().replace("_", "") + "Backward"
    (grad,) = torch.autograd.grad(y, x, g)
    p = mapping(x0, where=where, **kw)
    want = vjp(x0, torch.where(p > 0, g / torch.where(p > 0, p, 1.0), 0.0), where=where, **kw)
    _close(grad, want, 1e-12)
    assert grad[1, 2] == 0
    jac_fwd = torch.func.jacfwd(lambda t: log(t, **kw))(x0[0])
    jac_rev = torch.func.jacrev(lambda t: log(t, **kw))(x0[0])
    _close(jac_fwd, jac_rev, 1e-12)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("name", LOSSES)
def test_loss_double_backward_is_the_mappings_derivative(name: str, reduction: str) -> None:
    """gradgradcheck: the backward of a loss is differentiable (through the mapping's analytic derivative),
    not a constant whose Hessian would be a silent 0."""
    ours, _, kw = LOSSES[name]
    x = _logits((3, 4), seed=18).requires_grad_()
    y = torch.tensor([0, -100, 3])
    weight = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)
    assert torch.autograd.gradgradcheck(lambda t: ours(t, y, weight=weight, reduction=reduction, **kw), (x,), atol=1e-6)


def test_sparsemax_loss_hessian_is_the_jacobian_of_sparsemax() -> None:
    x = torch.tensor([0.5, 1.0, -0.2, 0.9], dtype=torch.float64)
    hess = torch.func.hessian(lambda t: skt.sparsemax_loss(t[None], torch.tensor([1])))(x)
    _close(hess, family.sparsemax_jacobian(x.numpy()), 1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_extreme_finite_logits_give_finite_values_and_gradients(dtype: Any) -> None:
    """bf16/fp16 (and float32/64) at the ends of their range: no nan, values and gradients (autograd through the
    generic log_softplus_normalize gave nan where softplus underflows)."""
    big = torch.finfo(dtype).max / 2
    x = torch.tensor([[big, -big, 0.0, big / 4], [1.0, 2.0, 3.0, 4.0]], dtype=torch.float64).to(dtype)
    x.requires_grad_()
    g = torch.arange(4.0).to(dtype).expand(2, 4)
    for name, (ours, _, _, _, kw) in MAPPINGS.items():
        p = ours(x, **kw)
        assert torch.isfinite(p).all(), name
        assert torch.isfinite(torch.autograd.grad(p, x, g)[0]).all(), name
    for name, (log, _, _, kw) in LOG_MAPPINGS.items():
        logp = log(x, **kw)
        assert not torch.isnan(logp).any(), name
        assert torch.isfinite(torch.autograd.grad(logp, x, g)[0]).all(), name
    y = torch.tensor([0, 1])
    for name, (ours, _, kw) in LOSSES.items():
        assert torch.isfinite(torch.autograd.grad(ours(x, y, **kw), x)[0]).all(), name


def test_log_softplus_normalize_gradient_where_softplus_underflows() -> None:
    x0 = torch.tensor([-800.0, -50.0, 0.0, 3.0], dtype=torch.float64)
    g = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    x = x0.clone().requires_grad_()
    (grad,) = torch.autograd.grad(skt.log_softplus_normalize(x), x, g)
    # r = sigmoid/softplus -> 1 for very negative x; J^T g = r * (g - p * sum(g))
    p = family.softplus_normalize(x0)
    r = torch.where(x0 < -30, 1.0, torch.sigmoid(x0) / torch.nn.functional.softplus(x0))
    _close(grad, r * (g - p * g.sum()), 1e-12)
    assert grad[0] == pytest.approx(1.0)


# ------------------------------------------------------------------------------ entmax_bisect_loss, tensor alpha
ALPHAS = [1.2, 1.5, 2.0, 3.0]


def _bisect_data() -> tuple[Any, Any]:
    g = torch.Generator().manual_seed(21)
    return torch.randn(4, 6, generator=g, dtype=torch.float64) * 2, torch.tensor([0, 2, 5, 1])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("extra", [{}, {"weight": "w"}, {"ignore_index": 2}], ids=["plain", "weight", "ignored"])
def test_bisect_loss_tensor_alpha_equals_the_float_path(reduction: str, extra: dict[str, Any]) -> None:
    """A 0-d tensor alpha gives the float alpha's loss and logits gradient; a per-row one gives each row's loss
    with its own float alpha (the ``entmax`` package's per-row loss broadcasts the rows against each other and
    returns an N x N matrix, so the reference is row by row)."""
    x, y = _bisect_data()
    kw = {k: (torch.linspace(0.5, 2.0, 6, dtype=torch.float64) if v == "w" else v) for k, v in extra.items()}
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    got = skt.entmax_bisect_loss(a, y, alpha=torch.tensor(1.5, dtype=torch.float64), reduction=reduction, **kw)
    want = skt.entmax_bisect_loss(b, y, alpha=1.5, reduction=reduction, **kw)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)
    got.sum().backward()
    want.sum().backward()
    torch.testing.assert_close(a.grad, b.grad, atol=1e-12, rtol=1e-12)
    per_row = torch.tensor(ALPHAS, dtype=torch.float64).reshape(4, 1)
    rows = skt.entmax_bisect_loss(x, y, alpha=per_row, reduction="none", **kw)
    for i, al in enumerate(ALPHAS):
        one = skt.entmax_bisect_loss(x[i : i + 1], y[i : i + 1], alpha=al, reduction="none", **kw)
        if "weight" not in kw and "ignore_index" not in kw:
            theirs = entmax.entmax_bisect_loss(x[i : i + 1], y[i : i + 1], al, 100)
            torch.testing.assert_close(one, theirs, atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(rows[i : i + 1], one, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("shape", [(), (4, 1)], ids=["scalar", "per-row"])
def test_bisect_loss_alpha_gradient_matches_finite_differences(shape: tuple[int, ...]) -> None:
    """The alpha gradient (the envelope theorem's :math:`\\partial_\\alpha H_\\alpha(p)`) against central
    differences of the loss, and the logits gradient is :math:`c_n (p - e_y)`."""
    x, y = _bisect_data()
    alpha = torch.tensor(ALPHAS, dtype=torch.float64).reshape(4, 1) if shape else torch.tensor(1.7, dtype=torch.float64)
    a = alpha.clone().requires_grad_(True)
    z = x.clone().requires_grad_(True)
    loss = skt.entmax_bisect_loss(z, y, alpha=a, reduction="sum")
    loss.backward()
    p = skt.entmax_bisect(x, alpha, dim=-1)
    torch.testing.assert_close(z.grad, p - torch.nn.functional.one_hot(y, 6).to(p.dtype), atol=1e-12, rtol=0)
    h = 1e-6
    fd = torch.zeros_like(alpha)
    for idx in np.ndindex(*alpha.shape):
        e = torch.zeros_like(alpha)
        e[idx] = h
        up = skt.entmax_bisect_loss(x, y, alpha=alpha + e, reduction="sum")
        down = skt.entmax_bisect_loss(x, y, alpha=alpha - e, reduction="sum")
        fd[idx] = (up - down) / (2 * h)
    assert a.grad is not None
    torch.testing.assert_close(a.grad, fd, atol=1e-7, rtol=1e-7)


def test_bisect_loss_tensor_alpha_gradcheck_and_special_rows() -> None:
    """gradcheck and gradgradcheck in (logits, alpha); an ignored row holding nan is never read (loss and
    gradients finite, its gradient 0); bad alpha, labels and reductions raise naming the argument; bf16 is
    computed in float32 and returned as bf16."""
    x, y = _bisect_data()
    alpha = torch.tensor(ALPHAS, dtype=torch.float64).reshape(4, 1)
    z, a = x.clone().requires_grad_(True), alpha.clone().requires_grad_(True)

    def f(zz: Any, aa: Any) -> Any:
        return skt.entmax_bisect_loss(zz, y, alpha=aa, reduction="none")

    assert torch.autograd.gradcheck(f, (z, a))
    assert torch.autograd.gradgradcheck(f, (z, a))
    bad = x.clone()
    bad[1] = float("nan")
    zb, ab = bad.requires_grad_(True), alpha.clone().requires_grad_(True)
    loss = skt.entmax_bisect_loss(zb, torch.tensor([0, -100, 5, 1]), alpha=ab)
    loss.backward()
    assert torch.isfinite(loss)
    assert zb.grad is not None
    assert ab.grad is not None
    assert bool((zb.grad[1] == 0).all())
    assert bool(torch.isfinite(zb.grad).all())
    assert float(ab.grad[1, 0]) == 0.0
    with pytest.raises(ValueError, match="alpha"):
        skt.entmax_bisect_loss(x, y, alpha=torch.tensor(1.0, dtype=torch.float64))
    with pytest.raises(TypeError, match="alpha"):
        skt.entmax_bisect_loss(x, y, alpha=torch.tensor(2))
    with pytest.raises(ValueError, match="alpha"):
        skt.entmax_bisect_loss(x, y, alpha=torch.ones(3, 1, dtype=torch.float64) * 1.5)
    with pytest.raises(ValueError, match="7"):
        skt.entmax_bisect_loss(x, torch.tensor([0, 7, 1, 1]), alpha=alpha)
    with pytest.raises(ValueError, match="reduction"):
        skt.entmax_bisect_loss(x, y, alpha=alpha, reduction="avg")
    half = skt.entmax_bisect_loss(x.to(torch.bfloat16), y, alpha=alpha.float(), reduction="none")
    assert half.dtype == torch.bfloat16
    assert bool(torch.isfinite(half).all())


def test_entmax_bisect_loss_module_takes_a_tensor_alpha_as_entmax_does() -> None:
    """``EntmaxBisectLoss(alpha=tensor)``: the ``entmax`` package's module accepts a 0-d tensor; so does ours,
    with the same loss; the generic ``softmaxkit.entmax_bisect_loss`` routes a tensor alpha here too."""
    x, y = _bisect_data()
    a = torch.tensor(1.5, dtype=torch.float64)
    ours = skt.EntmaxBisectLoss(alpha=a, n_iter=100)(x, y)
    theirs = entmax.EntmaxBisectLoss(alpha=a, n_iter=100)(x, y)
    torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=1e-12)
    per_row = torch.tensor(ALPHAS, dtype=torch.float64).reshape(4, 1)
    torch.testing.assert_close(
        sk.entmax_bisect_loss(x, y, alpha=per_row, axis=1, reduction="none"),
        skt.entmax_bisect_loss(x, y, alpha=per_row, dim=1, reduction="none"),
        atol=0,
        rtol=0,
    )

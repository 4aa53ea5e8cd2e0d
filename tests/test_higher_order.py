"""Second and third derivatives through the analytic derivatives, in every order of forward and reverse mode.

A Function's ``jvp`` rule is run by torch with forward-mode AD off, so a forward level over it (``jacfwd(jacfwd(f))``)
saw every higher derivative as 0 (pytorch/pytorch#197867); a rule that read a saved non-differentiable statistic
(cross-entropy's lse, the family losses' gradient) gave reverse-over-forward Hessians 0.2 to 9 off; the α-entmax
weights :math:`p^{2-\\alpha}` had an infinite derivative off the support, so ``torch.func.hessian`` and
``jax.hessian`` of entmax15 and entmax_bisect were ``nan``. All silently. Here each mapping and loss has one Hessian
from every composition of ``jacfwd`` and ``jacrev``, equal to each other (float64, tight) and, where torch has the
function, to torch's; third derivatives as well; and the eager CPU-kernel path under ``torch.autograd.forward_ad``
composed with a backward.
"""

from __future__ import annotations

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch.func import jacfwd, jacrev

import softmaxkit.torch as skt
from conftest import tol

F64 = tol("float64")

pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")]

X = [[0.3, -1.0, 2.0, 0.9], [0.1, 0.2, 0.35, -0.4], [1.5, -0.5, 1.4, -3.0]]  # sparse rows for the entmaxes
Y = [1, 2, 0]
W = [1.0, 2.0, 3.0, 4.0]


def _x() -> torch.Tensor:
    return torch.tensor(X, dtype=torch.float64)


def _w() -> torch.Tensor:
    return torch.tensor(W, dtype=torch.float64)


def _y() -> torch.Tensor:
    return torch.tensor(Y)


def _mapped(name: str):
    return lambda v: (getattr(skt, name)(v, dim=-1) * _w()).sum()


def _loss(name: str, **kw):
    return lambda v: getattr(skt, name)(v, _y(), **kw)


MAPPING_NAMES = [
    "softmax",
    "log_softmax",
    "sparsemax",
    "entmax15",
    "entmax_bisect",
    "sigmoid",
    "log_sigmoid",
    "softplus_normalize",
    "log_softplus_normalize",
    "taylor_softmax",
    "log_taylor_softmax",
    "spherical_softmax",
    "log_spherical_softmax",
]
LOSS_NAMES = [
    "sparsemax_loss",
    "entmax15_loss",
    "entmax_bisect_loss",
    "sigmoid_cross_entropy",
    "softplus_normalize_cross_entropy",
    "spherical_cross_entropy",
    "taylor_cross_entropy",
]
CE_OPTIONS = [
    {},
    {"label_smoothing": 0.1},
    {"z_loss": 0.1},
    {"softcap": 2.0},
    {"reduction": "sum", "weight": "w"},
    {"reduction": "none"},
]

SCALAR_FUNCTIONS = {
    **{name: _mapped(name) for name in MAPPING_NAMES},
    "logsumexp": lambda v: (skt.logsumexp(v, dim=-1) * torch.arange(1.0, 4.0, dtype=v.dtype)).sum(),
    **{name: _loss(name) for name in LOSS_NAMES},
    "entmax_bisect alpha=1.3": lambda v: (skt.entmax_bisect(v, alpha=1.3, dim=-1) * _w()).sum(),
    "entmax_bisect tensor alpha": lambda v: (skt.entmax_bisect(v, alpha=torch.tensor(1.7), dim=-1) * _w()).sum(),
}
for _kw in CE_OPTIONS:
    SCALAR_FUNCTIONS[f"cross_entropy {_kw}"] = (
        lambda kw: lambda v: skt.cross_entropy(v, _y(), **{k: (_w() if a == "w" else a) for k, a in kw.items()}).sum()
    )(_kw)

ORDERS = {
    "jacrev(jacfwd)": lambda f: jacrev(jacfwd(f)),
    "jacfwd(jacrev)": lambda f: jacfwd(jacrev(f)),
    "jacfwd(jacfwd)": lambda f: jacfwd(jacfwd(f)),
}


@pytest.mark.parametrize("order", list(ORDERS))
@pytest.mark.parametrize("name", list(SCALAR_FUNCTIONS))
def test_hessian_is_the_same_in_every_order_of_modes(name, order):
    """Each composition equals reverse-over-reverse (whose Hessians other suites check against the analytic and
    finite-difference ones), and no entry is nan."""
    f = SCALAR_FUNCTIONS[name]
    want = jacrev(jacrev(f))(_x())
    got = ORDERS[order](f)(_x())
    assert not torch.isnan(got).any()
    torch.testing.assert_close(got, want, **F64)


TORCH_HAS = {
    "softmax": (lambda v: (skt.softmax(v, dim=-1) * _w()).sum(), lambda v: (torch.softmax(v, -1) * _w()).sum()),
    "log_softmax": (
        lambda v: (skt.log_softmax(v, dim=-1) * _w()).sum(),
        lambda v: (torch.log_softmax(v, -1) * _w()).sum(),
    ),
    "logsumexp": (lambda v: skt.logsumexp(v, dim=-1).sum(), lambda v: torch.logsumexp(v, -1).sum()),
    "cross_entropy": (
        lambda v: skt.cross_entropy(v, _y(), label_smoothing=0.1),
        lambda v: F.cross_entropy(v, _y(), label_smoothing=0.1),
    ),
}


@pytest.mark.parametrize("name", list(TORCH_HAS))
def test_second_and_third_forward_derivatives_equal_torch(name):
    """``jacfwd(jacfwd)`` and ``jacfwd(jacfwd(jacfwd))`` equal torch's own function's (they were 0 through the
    custom rule: the 0.1-2.3 errors of pytorch/pytorch#197867)."""
    ours, theirs = TORCH_HAS[name]
    x = _x()
    torch.testing.assert_close(jacfwd(jacfwd(ours))(x), jacfwd(jacfwd(theirs))(x), **F64)
    torch.testing.assert_close(jacfwd(jacfwd(jacfwd(ours)))(x), jacfwd(jacfwd(jacfwd(theirs)))(x), **F64)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_eager_forward_ad_on_the_cpu_kernels_composes_with_backward(op):
    """``torch.autograd.forward_ad`` on a float32 CPU tensor (the numba path): the tangent, and the reverse-mode
    derivative of that tangent (a Hessian-vector product), equal torch.func's for torch's function (torch's own
    softmax raises on this eager composition, its backward finding its saved output modified; ours, which is
    torch's below softmaxkit._backend.TORCH_SOFTMAX elements, is not inside a forward-mode level)."""
    g = torch.Generator().manual_seed(3)
    shape = (64, 100)
    x, t, c = (torch.randn(shape, generator=g) for _ in range(3))
    a = x.clone().requires_grad_(True)
    with fwAD.dual_level():
        tangent = fwAD.unpack_dual(getattr(skt, op)(fwAD.make_dual(a, t), dim=-1)).tangent
        (hvp,) = torch.autograd.grad((tangent * c).sum(), a)

    def theirs(b: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.func.jvp(lambda u: getattr(torch, op)(u, -1), (b,), (t,))[1]
        return out

    want_tangent, pullback = torch.func.vjp(theirs, x)
    torch.testing.assert_close(tangent, want_tangent, **tol("float32"))
    torch.testing.assert_close(hvp, pullback(c)[0], **tol("float32"))


def test_entmax_hessians_are_finite_where_the_support_is_partial():
    """``torch.func.hessian`` of entmax15 and entmax_bisect at rows with entries off the support: finite, and
    equal to each other at α = 1.5 (it was nan: the derivative of :math:`\\sqrt{p}` at 0)."""
    x = _x()
    assert (skt.entmax15(x, dim=-1) == 0).any()
    h15 = torch.func.hessian(_mapped("entmax15"))(x)
    hb = torch.func.hessian(_mapped("entmax_bisect"))(x)
    assert torch.isfinite(h15).all()
    torch.testing.assert_close(hb, h15, atol=1e-9, rtol=1e-9)


def test_jax_entmax_hessians_are_finite_and_the_same_in_every_order():
    """``jax.hessian`` (forward over reverse) of entmax15 and entmax_bisect was nan off the support (bisect's
    reverse-over-reverse too); every composition now agrees."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    import softmaxkit.jax as skj

    assert jax.config.jax_enable_x64  # (conftest turns it on)
    x = jnp.asarray(X, dtype=jnp.float64)
    w = jnp.asarray(W, dtype=jnp.float64)
    for name in ("entmax15", "entmax_bisect"):
        f = (lambda n: lambda v: jnp.sum(getattr(skj, n)(v, axis=-1) * w))(name)
        want = jax.jacrev(jax.jacrev(f))(x)
        assert bool(jnp.all(jnp.isfinite(want)))
        for order in (jax.hessian, lambda g: jax.jacfwd(jax.jacfwd(g)), lambda g: jax.jacrev(jax.jacfwd(g))):
            got = order(f)(x)
            assert bool(jnp.all(jnp.isfinite(got))), name
            assert float(jnp.max(jnp.abs(got - want))) < 1e-12, name

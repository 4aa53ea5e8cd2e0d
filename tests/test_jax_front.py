"""softmaxkit.jax: the custom_vjp cross-entropy and the chunked linear cross-entropy.

Oracles: the reference ``softmaxkit.cross_entropy_value_and_grad`` (on JAX arrays; on NumPy arrays for the
float32 sweep, the same code without compiling every operation again for a second dtype), and ``jax.vjp`` /
``jax.grad`` of the loss written out in ``jax.numpy`` (``_plain_ce``) or of the reference on materialised logits
(``_naive_linear``). float64 is held to the conftest table's 1e-12.

Time: JAX compiles each operation once per shape and dtype, and each chunked-loss configuration once, so the
tests share one shape, (N, C) = (7, 5), and the linear cases are chosen rather than multiplied out.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import softmaxkit as sk
from conftest import assert_nothing_to_average, tol
from softmaxkit.jax import cross_entropy, linear_cross_entropy

INF, NAN = math.inf, math.nan
RNG = np.random.default_rng(20260501)
N, C = 7, 5


def _plain_ce(z: Any, t: Any, w: Any, *, eps: float, red: str, lam: float, cap: float | None) -> Any:
    """The loss written out in jax.numpy (class axis last, ignore_index -100) for autodiff to differentiate."""
    c = z.shape[-1]
    if cap is not None:
        z = cap * jnp.tanh(z / cap)
    lse = jax.nn.logsumexp(z, axis=-1)
    logp = z - lse[:, None]
    wv = jnp.ones(c, z.dtype) if w is None else w
    if jnp.issubdtype(t.dtype, jnp.integer):
        valid = t != -100
        y = jnp.where(valid, t, 0)
        q = (1 - eps) * jax.nn.one_hot(y, c, dtype=z.dtype) + eps / c
        denom = jnp.sum(wv[y] * valid)
    else:
        valid = jnp.ones(t.shape[:1], bool)
        q = (1 - eps) * t + eps / c
        denom = t.shape[0]
    row = -jnp.sum(wv * q * logp, axis=-1) * valid
    z_row = lam * lse**2 * valid
    if red == "none":
        return row + z_row
    if red == "sum":
        return jnp.sum(row) + jnp.sum(z_row)
    return jnp.sum(row) / denom + jnp.sum(z_row) / jnp.sum(valid)


def _ce_data(dtype: str, kind: str) -> tuple[Any, Any, Any]:
    z = RNG.normal(size=(N, C)) * 3
    if kind == "index":
        t = RNG.integers(0, C, size=N)
        t[2] = -100
    else:
        e = np.exp(RNG.normal(size=(N, C)))
        t = (e / e.sum(axis=1, keepdims=True)).astype(dtype)
    w = RNG.uniform(0.2, 2.0, size=C)
    w[1] = 0.0
    return jnp.asarray(z, dtype), jnp.asarray(t), jnp.asarray(w, dtype)


def _close(actual: Any, desired: Any, dtype: Any, what: str) -> None:
    np.testing.assert_allclose(np.asarray(actual), np.asarray(desired), **tol(dtype), err_msg=what)


# ------------------------------------------------------------------------------------------ cross_entropy
OPTIONS = list(itertools.product([False, True], [0.0, 0.3], ["mean", "sum", "none"], [0.0, 0.1], [None, 2.0]))


def _vjp(f: Any, args: tuple[Any, ...], diff: tuple[int, ...]) -> tuple[Any, Any]:
    """``jax.vjp`` of ``f(*args)`` with respect to the arguments at positions ``diff``, the others held fixed."""

    def partial(*moving: Any) -> Any:
        full = list(args)
        for i, value in zip(diff, moving, strict=True):
            full[i] = value
        return f(*full)

    return jax.vjp(partial, *(args[i] for i in diff))


def _close_tree(mine: Any, theirs: Any, dtype: Any, what: str) -> None:
    for a, b in zip(mine, theirs, strict=True):
        assert (a is None) == (b is None), what
        if a is not None:
            _close(a, b, dtype, what)


@pytest.mark.parametrize("kind", ["index", "probabilities"])
def test_cross_entropy_matches_reference_and_autodiff(kind: str) -> None:
    """float64, every combination of weight, smoothing, reduction, z-loss and softcap: the value and the logits'
    gradient against the reference on JAX arrays, and every cotangent (logits, probability targets, class
    weights) against jax.vjp of the jnp formula, under a random cotangent (reduction="none": each row its own)."""
    z, t, w = _ce_data("float64", kind)
    diff = (0, 2) if kind == "index" else (0, 1, 2)
    for use_w, eps, red, lam, cap in OPTIONS:
        opts = {"label_smoothing": eps, "reduction": red, "z_loss": lam, "softcap": cap}
        what = f"weight={use_w} {opts}"
        args = (z, t, w if use_w else None)
        loss, vjp = _vjp(lambda z, t, w, o=opts: cross_entropy(z, t, weight=w, **o), args, diff)
        ct = jnp.asarray(RNG.normal(size=loss.shape))
        cots = vjp(ct)

        ref_loss, ref_grad = sk.cross_entropy_value_and_grad(*args[:2], weight=args[2], **opts)
        _close(loss, ref_loss, "float64", what)
        _close(cots[0], (ct[:, None] if red == "none" else ct) * ref_grad, "float64", what)

        plain = {"eps": eps, "red": red, "lam": lam, "cap": cap}
        plain_loss, plain_vjp = _vjp(lambda z, t, w, o=plain: _plain_ce(z, t, w, **o), args, diff)
        _close(loss, plain_loss, "float64", what)
        _close_tree(cots, plain_vjp(ct), "float64", what)


@pytest.mark.parametrize("kind", ["index", "probabilities"])
def test_cross_entropy_float32_matches_reference(kind: str) -> None:
    """float32, every combination of options, computed in float32, against the reference (on NumPy float32
    arrays: the same code as on JAX arrays, without compiling it again for a second dtype)."""
    z, t, w = _ce_data("float32", kind)
    for use_w, eps, red, lam, cap in OPTIONS:
        opts = {"label_smoothing": eps, "reduction": red, "z_loss": lam, "softcap": cap, "weight": w if use_w else None}
        loss, g = jax.value_and_grad(lambda z, o=opts: jnp.sum(cross_entropy(z, t, **o)))(z)
        assert g.dtype == jnp.float32
        assert cross_entropy(z, t, **opts).dtype == jnp.float32
        numpy_opts = {**opts, "weight": None if opts["weight"] is None else np.asarray(w)}
        ref_loss, ref_grad = sk.cross_entropy_value_and_grad(np.asarray(z), np.asarray(t), **numpy_opts)
        _close(loss, np.sum(ref_loss), "float32", str(opts))
        _close(g, ref_grad, "float32", str(opts))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_cross_entropy_half_precision_is_computed_in_float32(dtype: str) -> None:
    z, t, w = _ce_data("float32", "index")
    zh = z.astype(dtype)
    opts = {"label_smoothing": 0.3, "z_loss": 0.1, "softcap": 2.0}
    loss, (g, gw) = jax.value_and_grad(lambda z, w: cross_entropy(z, t, weight=w, **opts), argnums=(0, 1))(zh, w)
    assert loss.dtype == g.dtype == jnp.dtype(dtype)
    assert gw.dtype == jnp.float32
    up = np.asarray(zh.astype(jnp.float32))
    ref_loss, ref_grad = sk.cross_entropy_value_and_grad(up, np.asarray(t), weight=np.asarray(w), **opts)
    _close(loss.astype(jnp.float32), ref_loss, dtype, "loss")
    _close(g.astype(jnp.float32), ref_grad, dtype, "grad")


def test_cross_entropy_class_axis_and_batch_dims() -> None:
    """torch's (N, C, d) layout with axis=1 is the 2-d loss of the moved axis, probability targets included."""
    z, y, w = _ce_data("float64", "index")
    p = jax.nn.softmax(z, axis=-1)
    for t, t3 in ((y, y[:, None]), (p, p[:, :, None])):
        for red in ("mean", "none"):
            flat = jax.value_and_grad(lambda z, t=t, r=red: jnp.sum(cross_entropy(z, t, weight=w, reduction=r)))(z)

            def layered(z3: Any, t3: Any = t3, r: str = red) -> Any:
                return jnp.sum(cross_entropy(z3, t3, axis=1, weight=w, reduction=r))

            loss, g3 = jax.value_and_grad(layered)(z[:, :, None])
            assert cross_entropy(z[:, :, None], t3, axis=1, reduction=red).shape == (() if red == "mean" else (N, 1))
            _close(loss, flat[0], "float64", red)
            _close(g3[:, :, 0], flat[1], "float64", red)


# -------------------------------------------------------------------------------- special values (policy)
def _special_logits() -> tuple[Any, Any]:
    z = RNG.normal(size=(N, C)) * 2
    z[1, 2] = NAN  # nan row
    z[2, 3] = INF  # +inf row
    z[3, 0] = NAN  # ... but ignored
    z[4, 1] = -INF  # the target's logit is -inf
    z[5, 0] = -INF  # a masked class
    return jnp.asarray(z), jnp.asarray([1, 0, 2, -100, 1, 3, 4])


@pytest.mark.parametrize("softcap", [None, 3.0])
def test_special_values_follow_the_reference(softcap: float | None) -> None:
    z, y = _special_logits()
    opts = {"reduction": "none", "softcap": softcap, "z_loss": 0.1}
    rows, vjp = jax.vjp(lambda z: cross_entropy(z, y, **opts), z)
    (g,) = vjp(jnp.ones(N))
    ref_rows, ref_grad = sk.cross_entropy_value_and_grad(z, y, **opts)
    _close(rows, ref_rows, "float64", "loss")  # nan where the reference has nan (assert_allclose's equal_nan)
    _close(g, ref_grad, "float64", "grad")
    assert np.isnan(rows[1])
    assert np.isnan(rows[2]) == (softcap is None)  # +inf -> nan, but a softcap caps it at c
    assert rows[3] == 0
    assert np.all(g[3] == 0)  # ignored rows are never read, nan or not
    assert rows[4] == INF
    assert np.all(np.isfinite(g[4]))  # p - q stays finite
    assert g[5, 0] == 0  # a -inf logit gets nothing


def test_all_labels_ignored_mean_is_zero() -> None:
    z, _, w = _ce_data("float64", "index")
    y = jnp.full((N,), -100, dtype=jnp.int64)  # not weakly typed: the same compiled code as the sweep
    f = jax.value_and_grad(lambda z, w: cross_entropy(z, y, weight=w, z_loss=0.1, label_smoothing=0.2), (0, 1))
    loss, (gz, gw) = f(z, w)
    assert_nothing_to_average(loss, gz)
    assert np.all(gw == 0)


def test_zero_total_weight_mean_is_zero() -> None:
    z, y, _ = _ce_data("float64", "index")
    f = jax.value_and_grad(lambda z, w: cross_entropy(z, y, weight=w, label_smoothing=0.1), argnums=(0, 1))
    loss, (gz, gw) = f(z, jnp.zeros(C))
    assert float(loss) == 0.0
    assert np.all(gz == 0)
    assert np.all(gw == 0)


def test_z_loss_is_unweighted_and_averaged_over_rows_not_ignored() -> None:
    z, y, w = _ce_data("float64", "index")  # y[2] is ignored
    with_z = cross_entropy(z, y, weight=w, z_loss=0.25)
    lse = jax.nn.logsumexp(z, axis=-1)
    kept = np.arange(N) != 2
    expected = cross_entropy(z, y, weight=w) + 0.25 * jnp.sum(jnp.where(kept, lse**2, 0.0)) / (N - 1)
    _close(with_z, expected, "float64", "z-loss")


# ------------------------------------------------------------------------------------------------- checks
def test_value_checks_on_concrete_arrays_and_nan_under_jit() -> None:
    z, y, w = _ce_data("float64", "index")
    bad = y.at[1].set(C + 2)
    with pytest.raises(ValueError, match=rf"class index {C + 2} at position \(1,\)"):
        cross_entropy(z, bad)
    with pytest.raises(ValueError, match=r"weight must be finite and >= 0; got -1.0"):
        cross_entropy(z, y, weight=w.at[3].set(-1.0))
    with pytest.raises(ValueError, match="probabilities must be finite"):
        cross_entropy(z, -jax.nn.softmax(z))
    with pytest.raises(TypeError, match="target must hold"):
        cross_entropy(z, y > 0)
    rows = jax.jit(lambda z, y: cross_entropy(z, y, reduction="none"))(z, bad)  # unchecked: nan, not garbage
    assert np.isnan(rows[1])
    assert np.all(np.isfinite(np.delete(np.asarray(rows), 1)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"reduction": "avg"}, "reduction must be one of"),
        ({"label_smoothing": 1.5}, "label_smoothing must lie in"),
        ({"z_loss": -1.0}, "z_loss must be"),
        ({"softcap": 0.0}, "softcap must be"),
    ],
)
def test_option_checks_also_run_under_jit(kwargs: dict[str, Any], match: str) -> None:
    z, y, _ = _ce_data("float64", "index")
    with pytest.raises(ValueError, match=match):
        jax.jit(lambda z, y: cross_entropy(z, y, **kwargs))(z, y)
    with pytest.raises(ValueError, match=match):
        jax.jit(lambda z, y: linear_cross_entropy(z, z, y, **kwargs))(z, y)


def test_empty_batch() -> None:
    z = jnp.zeros((0, C))
    y = jnp.zeros((0,), int)
    loss, g = jax.value_and_grad(lambda z: cross_entropy(z, y))(z)
    assert float(loss) == 0.0
    assert g.shape == (0, C)
    assert cross_entropy(z, y, reduction="none").shape == (0,)
    assert float(linear_cross_entropy(jnp.zeros((0, 3)), jnp.ones((C, 3)), y)) == 0.0


def test_importing_softmaxkit_does_not_import_jax() -> None:
    code = "import sys, softmaxkit; assert 'jax' not in sys.modules, 'jax was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------ linear_cross_entropy
NL, HL, VL = N, 3, C  # the logits have the cross_entropy tests' shape, so the naive reference reuses their work


def _linear_data(dtype: str = "float64") -> tuple[Any, ...]:
    h = jnp.asarray(RNG.normal(size=(NL, HL)), dtype)
    mat = jnp.asarray(RNG.normal(size=(VL, HL)), dtype)
    b = jnp.asarray(RNG.normal(size=VL), dtype)
    cw = jnp.asarray(RNG.uniform(0.2, 2.0, size=VL), dtype)
    y = RNG.integers(0, VL, size=NL)
    y[4] = -100
    return h, mat, b, cw, jnp.asarray(y)


def _naive_linear(h: Any, mat: Any, b: Any, cw: Any, y: Any, **opts: Any) -> Any:
    """The reference on the materialised logits."""
    return sk.cross_entropy(h @ mat.T + (0.0 if b is None else b), y, weight=cw, **opts)


ALL_MEAN = {"label_smoothing": 0.2, "z_loss": 0.1, "softcap": 2.0}
NONE = {"reduction": "none", "label_smoothing": 0.1, "z_loss": 0.05, "softcap": 1.5}
# Each case compiles its loops once (about a second), so the cases are chosen, not multiplied out (the reductions
# and options themselves are the shared code the cross_entropy sweep covers): every option appears; an int is
# tokens per block with the whole vocabulary (2 does not divide N = 7), and (3, 2) and (4, 3) divide neither
# N = 7 nor V = 5, so the last block of each loop overlaps its neighbour.
LINEAR_CASES = [
    pytest.param({}, True, False, 2, id="plain-2xV"),
    pytest.param(ALL_MEAN, True, True, None, id="all-one-block"),
    pytest.param(ALL_MEAN, True, True, (4, 3), id="all-4x3"),
    pytest.param(NONE, False, True, (3, 2), id="none-3x2"),
]


@pytest.mark.parametrize(("opts", "biased", "weighted", "chunk_size"), LINEAR_CASES)
def test_linear_cross_entropy_matches_autodiff_of_the_naive_loss(
    opts: dict[str, Any], biased: bool, weighted: bool, chunk_size: Any
) -> None:
    """Value and cotangents of hidden, weight matrix, bias and class weights against jax.vjp of the reference
    on the full logits, under a random cotangent (each row its own under reduction="none"). The call is
    differentiated from outside the library's own jax.jit, so this is also grad of a jitted function."""
    h, mat, b, cw, y = _linear_data()
    args = (h, mat, b if biased else None, cw if weighted else None)

    def ours(h: Any, mat: Any, b: Any, cw: Any) -> Any:
        return linear_cross_entropy(h, mat, y, bias=b, weight=cw, chunk_size=chunk_size, **opts)

    loss, vjp = jax.vjp(ours, *args)
    ref_loss, ref_vjp = jax.vjp(lambda h, mat, b, cw: _naive_linear(h, mat, b, cw, y, **opts), *args)
    ct = jnp.asarray(RNG.normal(size=loss.shape))
    _close(loss, ref_loss, "float64", "loss")
    _close_tree(vjp(ct), ref_vjp(ct), "float64", "cotangents")


def test_linear_cross_entropy_special_values() -> None:
    """A -inf bias entry masks its class (a row labelled with it: loss inf, finite gradient p - q); a nan in an
    ignored row touches nothing, not even the weight gradient (it is never multiplied); a nan in a used row
    makes the loss nan. Expected gradients: the reference's closed form chained through the matrix product,
    rather than autodiff of the reference, whose where-masks leak nan into ignored rows. (The configuration of
    the "plain-2xV" case above, so nothing is compiled again.)"""
    h, mat, _, _, y = _linear_data()  # y[4] is ignored
    h = h.at[4, 0].set(NAN)
    b = jnp.zeros(VL).at[1].set(-INF)
    y = jnp.where(y == 1, 0, y).at[0].set(1)  # only row 0 is labelled with the masked class
    loss, vjp = jax.vjp(lambda h, mat, b, cw: linear_cross_entropy(h, mat, y, bias=b, chunk_size=2), h, mat, b, None)
    h_bar, w_bar, b_bar, _ = vjp(jnp.ones(()))
    ref_loss, g = sk.cross_entropy_value_and_grad(h @ mat.T + b, y)
    assert loss == ref_loss == INF
    _close(h_bar, g @ mat, "float64", "hidden")
    _close(w_bar, g.T @ jnp.where(y[:, None] != -100, h, 0.0), "float64", "weight")
    _close(b_bar, jnp.sum(g, axis=0), "float64", "bias")
    assert np.all(h_bar[4] == 0)
    assert np.all(np.isfinite(w_bar))
    assert np.isnan(linear_cross_entropy(h.at[2, 1].set(NAN), mat, y, bias=b, chunk_size=2))


def test_linear_cross_entropy_all_ignored_batch() -> None:
    h, mat, b, cw, _ = _linear_data()
    y = jnp.full((NL,), -100, dtype=jnp.int64)  # not weakly typed: the same compiled code as the sweep
    f = jax.value_and_grad(
        lambda h, mat, b, cw: linear_cross_entropy(h, mat, y, bias=b, weight=cw, chunk_size=(4, 3), **ALL_MEAN),
        argnums=(0, 1, 2, 3),
    )
    loss, grads = f(h, mat, b, cw)
    assert float(loss) == 0.0
    assert all(np.all(g == 0) for g in grads)


def test_linear_cross_entropy_batch_dims() -> None:
    h, mat, b, cw, y = _linear_data()
    flat = linear_cross_entropy(h, mat, y, bias=b, weight=cw, chunk_size=(3, 2), **NONE)
    batched = linear_cross_entropy(h[None], mat, y[None], bias=b, weight=cw, chunk_size=(3, 2), **NONE)
    assert batched.shape == (1, NL)
    _close(batched[0], flat, "float64", "per row")


def test_linear_cross_entropy_bfloat16_accumulates_in_float32() -> None:
    h, mat, b, cw, y = _linear_data()
    half = [x.astype(jnp.bfloat16) for x in (h, mat, b)]

    def ours(h: Any, mat: Any, b: Any) -> Any:
        return linear_cross_entropy(h, mat, y, bias=b, weight=cw, chunk_size=(3, 2), **ALL_MEAN)

    loss, grads = jax.value_and_grad(ours, argnums=(0, 1, 2))(*half)
    assert loss.dtype == jnp.bfloat16
    assert all(g.dtype == jnp.bfloat16 for g in grads)
    exact = [x.astype(jnp.float64) for x in half]  # the oracle sees the same (rounded) inputs, exactly
    ref_loss, ref_grads = jax.value_and_grad(
        lambda h, mat, b: _naive_linear(h, mat, b, cw, y, **ALL_MEAN), argnums=(0, 1, 2)
    )(*exact)
    _close(loss.astype(jnp.float64), ref_loss, "bfloat16", "loss")
    _close_tree([g.astype(jnp.float64) for g in grads], ref_grads, "bfloat16", "grads")


def test_linear_cross_entropy_under_jit() -> None:
    """jax.jit of value_and_grad agrees with the eager call; a label out of range, which jit cannot check,
    gives that row a nan loss."""
    h, mat, b, cw, y = _linear_data()

    def total(h: Any, mat: Any, y: Any) -> tuple[Any, Any]:
        rows = linear_cross_entropy(h, mat, y, bias=b, weight=cw, chunk_size=(3, 2), **NONE)
        return jnp.sum(rows), rows

    value_and_grad = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)
    jitted = jax.jit(value_and_grad)
    (_, rows), grads = jitted(h, mat, y)
    (_, eager_rows), eager_grads = value_and_grad(h, mat, y)
    _close(rows, eager_rows, "float64", "jit(value_and_grad)")
    _close_tree(grads, eager_grads, "float64", "jit(value_and_grad)")
    (_, rows), _ = jitted(h, mat, y.at[0].set(VL))  # same shapes: no new compilation
    assert np.isnan(rows[0])
    assert np.all(np.isfinite(rows[1:]))


def _shapes(jaxpr: Any) -> set[tuple[int, ...]]:
    """Shapes of every value a jaxpr computes, sub-jaxprs (scan, map, custom_vjp, pjit bodies) included."""
    out: set[tuple[int, ...]] = set()
    for eqn in jaxpr.eqns:
        out.update(tuple(getattr(v.aval, "shape", ())) for v in eqn.outvars)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                if hasattr(sub, "eqns"):
                    out |= _shapes(sub)
                elif hasattr(getattr(sub, "jaxpr", None), "eqns"):
                    out |= _shapes(sub.jaxpr)
    return out


def test_chunked_linear_cross_entropy_never_forms_the_logits() -> None:
    """No value in the jaxpr of the loss and its gradients has N * V elements (the logits or their gradient);
    the same detector finds the (N, V) logits in the naive version, so the test can fail."""
    n, hid, vocab = 64, 8, 96
    h = jnp.asarray(RNG.normal(size=(n, hid)))
    mat = jnp.asarray(RNG.normal(size=(vocab, hid)))
    b = jnp.zeros(vocab)
    y = jnp.asarray(RNG.integers(0, vocab, size=n))

    def fused(h: Any, mat: Any, b: Any) -> Any:
        return linear_cross_entropy(h, mat, y, bias=b, weight=b + 1.0, chunk_size=(16, 40), **ALL_MEAN)

    def naive(h: Any, mat: Any, b: Any) -> Any:
        return _naive_linear(h, mat, b, b + 1.0, y, **ALL_MEAN)

    def largest(f: Any) -> int:
        shapes = _shapes(jax.make_jaxpr(jax.value_and_grad(f, argnums=(0, 1, 2)))(h, mat, b).jaxpr)
        return max(math.prod(s) for s in shapes)

    assert largest(naive) >= n * vocab
    assert largest(fused) < n * vocab  # the biggest are W and its gradient accumulator, V * H


def test_linear_cross_entropy_checks() -> None:
    h, mat, b, cw, y = _linear_data()
    with pytest.raises(ValueError, match=f"class index {VL} at position"):
        linear_cross_entropy(h, mat, y.at[0].set(VL))
    with pytest.raises(ValueError, match="same H"):
        linear_cross_entropy(h, mat.T, y)
    with pytest.raises(ValueError, match="bias must have shape"):
        linear_cross_entropy(h, mat, y, bias=b[:2])
    with pytest.raises(ValueError, match="weight must be finite and >= 0"):
        linear_cross_entropy(h, mat, y, weight=-cw)
    with pytest.raises(TypeError, match="integer class indices"):
        linear_cross_entropy(h, mat, jax.nn.softmax(h @ mat.T))
    with pytest.raises(ValueError, match="chunk_size"):
        linear_cross_entropy(h, mat, y, chunk_size=(2, 0))
    with pytest.raises(TypeError, match="chunk_size"):
        linear_cross_entropy(h, mat, y, chunk_size=1.5)

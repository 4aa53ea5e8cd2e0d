"""sigmoid (one-vs-rest), standard normalisation and softplus normalisation: values, derivatives, losses.

* values against a 50-digit mpmath oracle on every backend, in float64 and float32;
* jvp / vjp / Jacobian against ``torch.func.jacrev`` and ``jax.jacrev`` of direct formulas, and against central
  differences, in float64;
* the two losses (one-vs-rest sigmoid cross-entropy, softplus-normalised cross-entropy) against torch autograd
  of direct formulas (``F.binary_cross_entropy_with_logits`` for the sigmoid), ``jax.grad`` and central
  differences, and their weight / ignore_index / reduction against a direct NumPy computation;
* special values, error messages, and hypothesis properties.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conftest import (
    EPS,
    FD_STEP,
    LIBRARIES,
    ArrayLibrary,
    assert_nothing_to_average,
    fd_atol,
    seeded_rng,
    to_numpy,
    tol,
)
from softmaxkit.family.normalize import (
    normalize,
    normalize_jacobian,
    normalize_jvp,
    normalize_vjp,
)
from softmaxkit.family.sigmoid import (
    log_sigmoid,
    sigmoid,
    sigmoid_cross_entropy,
    sigmoid_cross_entropy_value_and_grad,
    sigmoid_jacobian,
    sigmoid_jvp,
    sigmoid_vjp,
)
from softmaxkit.family.softplus_normalize import (
    log_softplus_normalize,
    softplus_normalize,
    softplus_normalize_cross_entropy,
    softplus_normalize_cross_entropy_value_and_grad,
    softplus_normalize_jacobian,
    softplus_normalize_jvp,
    softplus_normalize_vjp,
)
from softmaxkit.softmax import softmax

INF, NAN = math.inf, math.nan
F64 = tol("float64")
Shape = tuple[int, ...]




# ------------------------------------------------------------------------------------------------- oracle
def _mp_softplus(v: float) -> mpmath.mpf:
    return mpmath.log1p(mpmath.exp(mpmath.mpf(v)))


@functools.cache
def oracle(name: str, dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``ORACLE_ROWS[name]`` rounded to ``dtype``, and the mapping and its log at those exact values (50 digits)."""
    x = ORACLE_ROWS[name].astype(dtype)
    if dtype == "float32" and name == "sigmoid":
        x = np.clip(x, -80, 80).astype(dtype)  # keep sigma in float32's normal range
    out, logs = np.empty(x.shape), np.empty(x.shape)
    with mpmath.workdps(50):
        for idx in np.ndindex(x.shape[:-1]):
            row = [float(v) for v in x[idx]]
            if name == "sigmoid":
                vals = [1 / (1 + mpmath.exp(-mpmath.mpf(v))) for v in row]
            else:
                f = [_mp_softplus(v) for v in row]
                vals = [fi / mpmath.fsum(f) for fi in f]
            out[idx] = [float(v) for v in vals]
            logs[idx] = [float(mpmath.log(v)) for v in vals]
    return x, out, logs


ORACLE_ROWS = {
    "sigmoid": np.array(
        [[-745.0, -700.0, -100.0, -30.0, -1.0], [0.0, 0.5, 30.0, 40.0, 100.0], [-17.0, 17.0, 3.0, -3.0, 1e-8]]
    ),
    "softplus_normalize": np.array(
        [
            [10.0, 20.0, 1.0, -2.0, 0.5],  # large logits: softplus(o) ~ o, scale-blind
            [-1000.0, -1001.0, -1003.0, -1000.5, -1010.0],  # every e^o underflows: the row maximum factored out
            [0.0, -800.0, 5.0, -40.0, 3.0],
            [-3.0, -0.5, -1.0, -2.0, -0.25],
        ]
    ),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(ORACLE_ROWS))
def test_values_match_mpmath(xp: ArrayLibrary, name: str, dtype: str) -> None:
    x, ref, ref_log = oracle(name, dtype)
    fn, log_fn = (sigmoid, log_sigmoid) if name == "sigmoid" else (softplus_normalize, log_softplus_normalize)
    got, got_log = to_numpy(fn(xp(x, dtype))), to_numpy(log_fn(xp(x, dtype)))
    assert got.dtype == got_log.dtype == np.dtype(dtype)
    e = EPS[dtype]
    # each probability: a few roundings of its own and K of the sum; each log: relative to 1 + |value|
    tiny = np.finfo(dtype).smallest_normal
    np.testing.assert_allclose(got, ref, rtol=16 * e, atol=tiny)
    np.testing.assert_allclose(got_log, ref_log, rtol=0, atol=16 * e * (1 + np.max(np.abs(ref_log))))
    assert np.all(np.abs(got_log - ref_log) <= 16 * e * (1 + np.abs(ref_log)))


def test_softplus_normalize_is_scale_blind_where_softmax_is_not() -> None:
    """The seeds' ferret/cat example: softmax([10, 20]) is confident, standard normalisation is not."""
    p = softplus_normalize(np.array([10.0, 20.0]))
    np.testing.assert_allclose(p, [1 / 3, 2 / 3], rtol=1e-4)
    assert softmax(np.array([10.0, 20.0]))[1] > 0.9999
    np.testing.assert_allclose(softplus_normalize(np.array([100.0, 200.0])), [1 / 3, 2 / 3], **F64)


def test_sigmoid_does_not_make_classes_compete() -> None:
    x = np.array([5.0, 5.0, -1.0])
    p = sigmoid(x)
    assert np.sum(p) > 1.9  # not a distribution
    bumped = sigmoid(np.array([5.0, 9.0, -1.0]))
    assert bumped[0] == p[0]
    assert bumped[2] == p[2]  # raising one class leaves the others unchanged
    assert np.count_nonzero(sigmoid_jacobian(x) - np.diag(np.diag(sigmoid_jacobian(x)))) == 0


# ----------------------------------------------------------------------------------------- derivatives
@dataclass(frozen=True)
class Mapping:
    name: str
    value: Callable[..., Any]
    jvp: Callable[..., Any]
    vjp: Callable[..., Any]
    jacobian: Callable[..., Any]
    row_torch: Callable[[torch.Tensor], torch.Tensor]
    row_jax: Callable[[jax.Array], jax.Array]
    positive: bool  # domain: non-negative scores


MAPPINGS = {
    m.name: m
    for m in [
        Mapping("sigmoid", sigmoid, sigmoid_jvp, sigmoid_vjp, sigmoid_jacobian, torch.sigmoid, jax.nn.sigmoid, False),
        Mapping(
            "normalize",
            normalize,
            normalize_jvp,
            normalize_vjp,
            normalize_jacobian,
            lambda r: r / r.sum(),
            lambda r: r / jnp.sum(r),
            True,
        ),
        Mapping(
            "softplus_normalize",
            softplus_normalize,
            softplus_normalize_jvp,
            softplus_normalize_vjp,
            softplus_normalize_jacobian,
            lambda r: F.softplus(r, threshold=1000.0) / F.softplus(r, threshold=1000.0).sum(),
            lambda r: jax.nn.softplus(r) / jnp.sum(jax.nn.softplus(r)),
            False,
        ),
    ]
}
SHAPE_AXES = [((7,), -1), ((3, 5), -1), ((3, 5), 0), ((2, 3, 4), 1)]
SHAPE_IDS = ["7", "3x5-axis-1", "3x5-axis0", "2x3x4-axis1"]
# autodiff references: two layouts on NumPy, the 3-d one on every other backend (finite differences take all);
# torch.func.jacrev on both layouts, jax.jacrev on the 3-d one
AUTODIFF_CASES = [pytest.param(lib, (3, 5), 0, id=f"{lib}-3x5-axis0") for lib in ["numpy"]] + [
    pytest.param(lib, (2, 3, 4), 1, id=f"{lib}-2x3x4-axis1") for lib in LIBRARIES
]


@functools.cache
def problem(name: str, shape: Shape, axis: int) -> tuple[np.ndarray, np.ndarray]:
    rng = seeded_rng("deriv", name, shape, axis)
    x = rng.uniform(0.2, 3.0, shape) if MAPPINGS[name].positive else 2.0 * rng.standard_normal(shape)
    x[..., 0] = -6.0 if not MAPPINGS[name].positive else x[..., 0]  # a tail entry, where the scaling matters
    v = rng.standard_normal(shape)
    x.flags.writeable = v.flags.writeable = False
    return x, v


@functools.cache
def reference_jacobian(name: str, shape: Shape, axis: int, lib: str) -> np.ndarray:
    """``batch + (K, K)`` by reverse-mode autodiff of the direct formula, row by row."""
    m = MAPPINGS[name]
    x, _ = problem(name, shape, axis)
    rows = np.moveaxis(x, axis, -1)
    flat = rows.reshape(-1, rows.shape[-1])
    if lib == "torch":
        jac = torch.func.vmap(torch.func.jacrev(m.row_torch))(torch.asarray(flat.copy())).numpy()
    else:
        jac = np.asarray(jax.vmap(jax.jacrev(m.row_jax))(jnp.asarray(flat)))
    return jac.reshape(*rows.shape, rows.shape[-1])


def fd_jacobian(name: str, shape: Shape, axis: int) -> np.ndarray:
    m = MAPPINGS[name]
    x, _ = problem(name, shape, axis)
    xl = np.moveaxis(x, axis, -1)
    cols = []
    for j in range(xl.shape[-1]):
        e = np.zeros_like(xl)
        e[..., j] = FD_STEP
        up = np.moveaxis(m.value(np.moveaxis(xl + e, -1, axis), axis=axis), axis, -1)
        down = np.moveaxis(m.value(np.moveaxis(xl - e, -1, axis), axis=axis), axis, -1)
        cols.append((up - down) / (2 * FD_STEP))
    return np.stack(cols, axis=-1)


def products(jac: np.ndarray, v: np.ndarray, axis: int) -> dict[str, np.ndarray]:
    vl = np.moveaxis(v, axis, -1)
    return {
        "jacobian": jac,
        "jvp": np.moveaxis(np.einsum("...ij,...j->...i", jac, vl), -1, axis),
        "vjp": np.moveaxis(np.einsum("...ij,...i->...j", jac, vl), -1, axis),
    }


def ours(m: Mapping, op: str, xp: ArrayLibrary, x: np.ndarray, v: np.ndarray, **kw: Any) -> np.ndarray:
    if op == "jacobian":
        return to_numpy(m.jacobian(xp(x), **kw))
    return to_numpy(getattr(m, op)(xp(x), xp(v), **kw))


@pytest.mark.parametrize(("lib", "shape", "axis"), AUTODIFF_CASES)
@pytest.mark.parametrize("name", list(MAPPINGS))
def test_derivatives_match_jacrev(name: str, lib: str, shape: Shape, axis: int) -> None:
    x, v = problem(name, shape, axis)
    for op in ("jvp", "vjp", "jacobian"):
        got = ours(MAPPINGS[name], op, LIBRARIES[lib], x, v, axis=axis)
        for ref_lib in ("torch", "jax") if shape == (2, 3, 4) else ("torch",):
            want = products(reference_jacobian(name, shape, axis, ref_lib), v, axis)[op]
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, **F64, err_msg=f"{op} vs {ref_lib}.jacrev")


@pytest.mark.parametrize(("shape", "axis"), SHAPE_AXES, ids=SHAPE_IDS)
@pytest.mark.parametrize("name", list(MAPPINGS))
def test_derivatives_match_finite_differences(name: str, shape: Shape, axis: int) -> None:
    x, v = problem(name, shape, axis)
    want = products(fd_jacobian(name, shape, axis), v, axis)
    k = shape[axis]
    for op in ("jvp", "vjp", "jacobian"):
        atol = fd_atol(1.0) * (1 if op == "jacobian" else k * float(np.max(np.abs(v))))
        got = ours(MAPPINGS[name], op, LIBRARIES["numpy"], x, v, axis=axis)
        np.testing.assert_allclose(got, want[op], rtol=0, atol=atol, err_msg=op)


def test_softplus_normalize_of_huge_logits_is_finite() -> None:
    """Regression: softplus(1.7e308) twice overflowed the sum (inf / inf = nan) before the maximum was divided out."""
    x = np.array([[1.7e308, 1.7e308, -1.7e308, 1.0]])
    np.testing.assert_allclose(softplus_normalize(x), [[0.5, 0.5, 0.0, 0.0]], rtol=1e-15, atol=1e-300)
    np.testing.assert_allclose(log_softplus_normalize(x)[0, [0, 1, 3]], [-math.log(2)] * 2 + [-710.147470], rtol=1e-9)
    loss, grad = softplus_normalize_cross_entropy_value_and_grad(x, np.array([0]))
    np.testing.assert_allclose(loss, math.log(2), **F64)
    assert np.all(np.isfinite(grad))
    assert np.all(np.isfinite(softplus_normalize_jacobian(x)))


def test_softplus_normalize_derivatives_where_every_logit_is_tiny() -> None:
    """Rows below -745: every softplus underflows; the derivatives are those of the limit, softmax."""
    x = np.array([[-1000.0, -1001.0, -1002.5]])
    ref = np.asarray(jax.jacrev(jax.nn.softmax)(jnp.asarray(x[0])))
    np.testing.assert_allclose(softplus_normalize_jacobian(x)[0], ref, **F64)
    np.testing.assert_allclose(softplus_normalize(x), softmax(x), **F64)
    np.testing.assert_allclose(log_softplus_normalize(x)[0, 1] - log_softplus_normalize(x)[0, 0], -1.0, **F64)


# ------------------------------------------------------------------------------------ masks, special values
OPS = ["value", "log", "jvp", "vjp", "jacobian"]
LOG_OF = {"sigmoid": log_sigmoid, "softplus_normalize": log_softplus_normalize}


def call(name: str, op: str, x: Any, v: Any, **kw: Any) -> Any:
    m = MAPPINGS[name]
    if op == "value":
        return m.value(x, **kw)
    if op == "log":
        return LOG_OF[name](x, **kw)
    if op == "jacobian":
        return m.jacobian(x, **kw)
    return getattr(m, op)(x, v, **kw)


OPS_OF = {name: [op for op in OPS if op != "log" or name in LOG_OF] for name in MAPPINGS}
NAME_OPS = [(name, op) for name in MAPPINGS for op in OPS_OF[name]]


MASK_CASES = [
    pytest.param(name, op, kind, id=f"{name}-{op}-{kind}")
    for name, op in NAME_OPS
    for kind in ["where", "neg_inf"]
    if not (kind == "neg_inf" and name == "normalize")  # non-negative scores: -inf is not a mask there
]


@pytest.mark.parametrize(("name", "op", "kind"), MASK_CASES)
def test_masked_entries_are_exactly_zero_and_the_rest_is_the_shorter_row(
    xp: ArrayLibrary, name: str, op: str, kind: str
) -> None:
    keep = np.array([[1, 0, 1, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)
    rng = seeded_rng("mask", name)
    x = rng.uniform(0.5, 2.0, keep.shape) if MAPPINGS[name].positive else rng.standard_normal(keep.shape)
    v = rng.standard_normal(keep.shape)
    v[~keep] = NAN  # a masked tangent is never read
    kw: dict[str, Any] = {}
    if kind == "where":
        xm = np.where(keep, x, 50.0)  # would dominate the row if the mask were not honoured
        kw["where"] = xp(keep)
    else:
        xm = np.where(keep, x, -INF)
    got = to_numpy(call(name, op, xp(xm), xp(v), **kw))
    masked_value = -INF if op == "log" else 0.0
    for r in range(3):  # the shorter rows by NumPy: one compiled shape less per row for JAX
        k = keep[r]
        if op == "jacobian":
            outside = ~(k[:, None] & k[None, :])
            assert np.all(got[r][outside] == 0.0)
            inner = got[r][np.ix_(k, k)]
            want = call(name, op, x[r][k], None) if k.any() else inner
        else:
            assert np.all(got[r][~k] == masked_value)
            inner = got[r][k]
            want = call(name, op, x[r][k], v[r][k]) if k.any() else inner
        np.testing.assert_allclose(inner, want, **F64)


@pytest.mark.parametrize(("name", "op"), NAME_OPS)
def test_nan_row_and_inf_row(xp: ArrayLibrary, name: str, op: str) -> None:
    x = np.array([[1.0, NAN, 2.0], [1.0, INF, 2.0], [1.0, 0.5, 2.0]])
    v = np.ones_like(x)
    got = to_numpy(call(name, op, xp(x), xp(v)))
    if name == "sigmoid":  # elementwise: only the entry, and +inf has a value
        diag = np.diagonal(got, axis1=-2, axis2=-1) if op == "jacobian" else got
        assert np.isnan(diag[0, 1])
        assert np.all(np.isfinite(np.delete(diag[0], 1)))
        assert diag[1, 1] == {"value": 1.0, "log": 0.0}.get(op, 0.0)
    else:  # a ratio has no value: the whole row is nan, the others unaffected
        assert np.all(np.isnan(got[:2]))
        assert np.all(np.isfinite(got[2]))


@pytest.mark.parametrize(("name", "op"), NAME_OPS)
def test_empty_axis(xp: ArrayLibrary, name: str, op: str) -> None:
    x = xp(np.zeros((2, 0)))
    got = call(name, op, x, x)
    assert tuple(got.shape) == ((2, 0, 0) if op == "jacobian" else (2, 0))


@pytest.mark.parametrize(("lib", "dtype"), [("torch", "bfloat16"), ("numpy", "float16")])
@pytest.mark.parametrize(("name", "op"), NAME_OPS)
def test_half_precision_is_computed_in_float32(lib: str, dtype: str, name: str, op: str) -> None:
    b = LIBRARIES[lib]
    x = np.array([[0.5, 1.5, 3.0], [0.25, 2.0, 1.0]])
    v = np.array([[1.0, -1.0, 0.5], [0.0, 2.0, 1.0]])
    x16 = to_numpy(b(x, dtype)).astype(np.float64)  # the values the function sees
    got = call(name, op, b(x, dtype), b(v, dtype))
    assert got.dtype == b(x, dtype).dtype
    want = to_numpy(call(name, op, b(x16, "float32"), b(to_numpy(b(v, dtype)), "float32")))
    np.testing.assert_allclose(to_numpy(got), want, **tol(dtype))


@pytest.mark.parametrize(("name", "op"), NAME_OPS)
def test_integers_promote_and_bool_complex_are_rejected(name: str, op: str) -> None:
    got = call(name, op, np.array([[1, 2, 3]]), np.array([[1, 0, 0]]))
    assert got.dtype == np.float64
    with pytest.raises(TypeError, match="x must hold real numbers"):
        call(name, op, np.array([[True, False]]), np.array([[1.0, 0.0]]))
    with pytest.raises(TypeError, match="x must hold real numbers"):
        call(name, op, np.array([[1 + 1j, 2.0]]), np.array([[1.0, 0.0]]))


@pytest.mark.parametrize(("name", "op"), NAME_OPS)
def test_bad_arguments_name_themselves(name: str, op: str) -> None:
    x = np.array([[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="axis=2 is out of range"):
        call(name, op, x, x, axis=2)
    with pytest.raises(ValueError, match=r"where with shape \(2,\) does not broadcast"):
        call(name, op, x, x, where=np.array([True, False]))
    with pytest.raises(TypeError, match="where must be a boolean array"):
        call(name, op, x, x, where=np.array([1, 0, 1]))
    if op in ("jvp", "vjp"):
        name_v = "v" if op == "jvp" else "g"
        with pytest.raises(ValueError, match=rf"{name_v} must have the shape of x, \(1, 3\); got shape \(3,\)"):
            call(name, op, x, x[0])


@pytest.mark.parametrize(("name", "op"), NAME_OPS)
def test_inputs_are_not_modified(name: str, op: str) -> None:
    x = np.array([[1.0, -2.0 if name != "normalize" else 2.0, 3.0]])
    v = np.array([[1.0, 0.5, -1.0]])
    x0, v0 = x.copy(), v.copy()
    call(name, op, x, v, where=np.array([True, False, True]))
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(v, v0)


def test_normalize_derivatives_share_its_checks() -> None:
    for fn in (normalize_jacobian, lambda a: normalize_jvp(a, a), lambda a: normalize_vjp(a, a)):
        with pytest.raises(ValueError, match=r"non-negative scores; x has -1.0 at position \(0, 0\)"):
            fn(np.array([[-1.0, 2.0]]))
        with pytest.raises(ValueError, match=r"the row x\[0, :\] is all zeros"):
            fn(np.array([[0.0, 0.0]]))


def test_normalize_with_a_mask() -> None:
    x = np.array([[1.0, -5.0, 3.0], [-1.0, NAN, -2.0], [0.0, 2.0, 0.0]])
    keep = np.array([[True, False, True], [False, False, False], [True, False, True]])
    with pytest.raises(ValueError, match=r"the row x\[2, :\] is all zeros where it is not masked"):
        normalize(x, where=keep)
    out = normalize(x[:2], where=keep[:2])  # masked negatives and nan are never read
    np.testing.assert_array_equal(out, [[0.25, 0.0, 0.75], [0.0, 0.0, 0.0]])


def test_sigmoid_works_on_scalars_and_checks_axis_only_with_dimensions() -> None:
    assert float(sigmoid(np.array(0.0), axis=5)) == 0.5
    assert float(sigmoid_jvp(np.array(0.0), np.array(2.0))) == 0.5
    with pytest.raises(ValueError, match="needs an array with at least one dimension"):
        sigmoid_jacobian(np.array(0.0))


# ------------------------------------------------------------------------------------------------- losses
@dataclass(frozen=True)
class Loss:
    name: str
    value: Callable[..., Any]
    value_and_grad: Callable[..., Any]

    def torch_rows(self, z: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """Per-row loss by a direct torch formula (class axis last)."""
        if self.name == "sigmoid":
            return F.binary_cross_entropy_with_logits(z, onehot, reduction="none").sum(-1)
        sp = F.softplus(z, threshold=1000.0)
        return -torch.log((sp * onehot).sum(-1) / sp.sum(-1))

    def jax_rows(self, z: jax.Array, onehot: jax.Array) -> jax.Array:
        if self.name == "sigmoid":
            return jnp.sum(jax.nn.softplus(z) - z * onehot, axis=-1)
        sp = jax.nn.softplus(z)
        return -jnp.log(jnp.sum(sp * onehot, axis=-1) / jnp.sum(sp, axis=-1))

    def numpy_rows(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per-row loss by the textbook formula, class axis last, float64."""
        sp = np.log1p(np.exp(z))
        onehot = np.arange(z.shape[-1]) == y[..., None]
        if self.name == "sigmoid":
            return np.sum(np.where(onehot, -np.log(1 / (1 + np.exp(-z))), -np.log(1 - 1 / (1 + np.exp(-z)))), -1)
        return -np.log(np.sum(np.where(onehot, sp, 0.0), -1) / np.sum(sp, -1))


LOSSES = {
    "sigmoid": Loss("sigmoid", sigmoid_cross_entropy, sigmoid_cross_entropy_value_and_grad),
    "softplus_normalize": Loss(
        "softplus_normalize", softplus_normalize_cross_entropy, softplus_normalize_cross_entropy_value_and_grad
    ),
}
N_CLASSES = 5
IGNORE = 1
LAYOUTS: dict[str, tuple[Shape, int]] = {
    "C": ((N_CLASSES,), -1),
    "NC": ((6, N_CLASSES), -1),
    "CN": ((N_CLASSES, 6), 0),
    "NCd1d2": ((2, N_CLASSES, 3, 2), 1),
}


@functools.cache
def loss_data(layout: str, ignore: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    shape, axis = LAYOUTS[layout]
    rng = seeded_rng("loss", layout, ignore)
    z = 2.0 * rng.standard_normal(shape)
    w = rng.uniform(0.5, 2.0, N_CLASSES)
    w[3] = 0.0
    batch = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
    y = np.asarray(rng.integers(0, N_CLASSES, batch))
    if ignore:
        y.flat[::3] = IGNORE
        if y.size > 1:
            y.flat[1] = IGNORE + 1
    for a in (z, w, y):
        a.flags.writeable = False
    return z, y, w


CASES = [
    pytest.param(
        layout,
        weighted,
        ignore,
        reduction,
        id=f"{layout}-{'w' if weighted else 'now'}-{'ign' if ignore else 'noign'}-{reduction}",
    )
    for layout, weighted, ignore, reduction in itertools.product(
        LAYOUTS, [False, True], [False, True], ["mean", "sum", "none"]
    )
    if not (ignore and layout == "C")
]


def loss_kwargs(layout: str, weighted: bool, ignore: bool, reduction: str, w: Any) -> dict[str, Any]:
    kw: dict[str, Any] = {"axis": LAYOUTS[layout][1], "reduction": reduction, "weight": w if weighted else None}
    if ignore:
        kw["ignore_index"] = IGNORE
    return kw


def torch_reference(loss: Loss, layout: str, weighted: bool, ignore: bool, reduction: str) -> tuple[Any, Any]:
    """Value and gradient (of the sum, for ``none``) by torch autograd of the direct formula, reduced as
    ``cross_entropy`` reduces: rows weigh ``w[y]``, ignored rows 0, ``mean`` divides by the total weight."""
    z, y, w = loss_data(layout, ignore)
    axis = LAYOUTS[layout][1]
    zt = torch.asarray(z.copy(), requires_grad=True)
    zl = torch.movedim(zt, axis, -1)
    yt = torch.asarray(y.copy())
    valid = yt != IGNORE if ignore else torch.ones_like(yt, dtype=torch.bool)
    ysafe = torch.where(valid, yt, 0)
    onehot = F.one_hot(ysafe, N_CLASSES).to(zl.dtype)
    w_y = (torch.asarray(w.copy())[ysafe] if weighted else torch.ones(y.shape, dtype=zl.dtype)) * valid
    rows = torch.where(w_y > 0, w_y * loss.torch_rows(zl, onehot), 0.0)
    value = {"none": rows, "sum": rows.sum(), "mean": rows.sum() / w_y.sum()}[reduction]
    value.sum().backward()
    assert zt.grad is not None
    return value.detach().numpy(), zt.grad.numpy()


@pytest.mark.parametrize(("layout", "weighted", "ignore", "reduction"), CASES)
@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_matches_torch_autograd(name: str, layout: str, weighted: bool, ignore: bool, reduction: str) -> None:
    z, y, w = loss_data(layout, ignore)
    kw = loss_kwargs(layout, weighted, ignore, reduction, w)
    value, grad = LOSSES[name].value_and_grad(z, y, **kw)
    ref_value, ref_grad = torch_reference(LOSSES[name], layout, weighted, ignore, reduction)
    np.testing.assert_allclose(value, ref_value, **F64)
    np.testing.assert_allclose(grad, ref_grad, **F64)
    np.testing.assert_array_equal(LOSSES[name].value(z, y, **kw), value)  # same code path, bit for bit


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_matches_torch_autograd_on_every_backend(xp: ArrayLibrary, name: str) -> None:
    reduction = "mean"
    z, y, w = loss_data("NCd1d2", True)
    kw = loss_kwargs("NCd1d2", True, True, reduction, xp(w))
    value, grad = LOSSES[name].value_and_grad(xp(z), xp(y), **kw)
    assert type(value) is type(grad) is type(xp(z))
    ref_value, ref_grad = torch_reference(LOSSES[name], "NCd1d2", True, True, reduction)
    np.testing.assert_allclose(to_numpy(value), ref_value, **F64)
    np.testing.assert_allclose(to_numpy(grad), ref_grad, **F64)


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_gradient_matches_jax_grad_and_finite_differences(name: str) -> None:
    layout = "CN"
    z, y, w = loss_data(layout, True)
    axis = LAYOUTS[layout][1]
    kw = loss_kwargs(layout, True, True, "mean", w)
    value, grad = LOSSES[name].value_and_grad(z, y, **kw)

    def total(zz: jax.Array) -> jax.Array:
        zl = jnp.moveaxis(zz, axis, -1)
        valid = jnp.asarray(y) != IGNORE
        ysafe = jnp.where(valid, jnp.asarray(y), 0)
        w_y = jnp.asarray(w)[ysafe] * valid
        rows = LOSSES[name].jax_rows(zl, jax.nn.one_hot(ysafe, N_CLASSES, dtype=zl.dtype))
        return jnp.sum(w_y * rows) / jnp.sum(w_y)

    np.testing.assert_allclose(grad, np.asarray(jax.grad(total)(jnp.asarray(z))), **F64)
    fd = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        e = np.zeros_like(z)
        e[idx] = FD_STEP
        fd[idx] = (float(LOSSES[name].value(z + e, y, **kw)) - float(LOSSES[name].value(z - e, y, **kw))) / (
            2 * FD_STEP
        )
    np.testing.assert_allclose(grad, fd, rtol=0, atol=fd_atol(float(value)))


def test_sigmoid_cross_entropy_is_torch_bce_with_logits_on_one_hot_targets() -> None:
    z, y, w = loss_data("NC", False)
    onehot = F.one_hot(torch.asarray(y.copy()), N_CLASSES).double()
    ref = F.binary_cross_entropy_with_logits(torch.asarray(z.copy()), onehot, reduction="none").sum(-1)
    np.testing.assert_allclose(sigmoid_cross_entropy(z, y, reduction="none"), ref.numpy(), **F64)
    # torch's weight multiplies every class term; ours weighs the row by its target's class, as cross_entropy
    row_w = torch.asarray(w[y].copy())[:, None].expand(-1, N_CLASSES)
    ref_w = F.binary_cross_entropy_with_logits(torch.asarray(z.copy()), onehot, weight=row_w, reduction="sum")
    np.testing.assert_allclose(sigmoid_cross_entropy(z, y, weight=w, reduction="sum"), ref_w.numpy(), **F64)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("layout", "weighted", "ignore", "reduction"), CASES)
@pytest.mark.parametrize("name", list(LOSSES))
def test_weight_ignore_index_and_reduction_match_numpy(
    name: str, layout: str, weighted: bool, ignore: bool, reduction: str, dtype: str
) -> None:
    z, y, w = loss_data(layout, ignore)
    axis = LAYOUTS[layout][1]
    z = z.astype(dtype)
    valid = (y != IGNORE) if ignore else np.ones(y.shape, dtype=bool)
    rows = LOSSES[name].numpy_rows(np.moveaxis(z.astype(np.float64), axis, -1), np.where(valid, y, 0))
    w_y = np.where(valid, w[np.where(valid, y, 0)] if weighted else 1.0, 0.0)
    per_row = w_y * rows
    want = {"none": per_row, "sum": np.sum(per_row), "mean": np.sum(per_row) / np.sum(w_y)}[reduction]
    got = LOSSES[name].value(z, y, **loss_kwargs(layout, weighted, ignore, reduction, w.astype(dtype)))
    assert got.dtype == np.dtype(dtype)
    assert got.shape == np.shape(want)
    np.testing.assert_allclose(got, want, **tol(dtype))


# ------------------------------------------------------------------------------- losses: special values
@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_special_values(xp: ArrayLibrary, name: str) -> None:
    z = np.array(
        [
            [0.5, -1.0, 2.0],
            [NAN, 0.0, 1.0],  # nan row
            [-INF, 0.0, 1.0],  # target at -inf
            [1.0, -INF, 0.0],  # another class at -inf: a mask
            [NAN, NAN, NAN],  # ignored below
        ]
    )
    y = np.array([0, 0, 0, 0, -100])
    loss, grad = LOSSES[name].value_and_grad(xp(z), xp(y), reduction="none")
    loss, grad = to_numpy(loss), to_numpy(grad)
    assert np.all(np.isfinite(loss[[0, 3]]))
    assert np.all(np.isnan(loss[1]))
    assert np.all(np.isnan(grad[1]))
    assert loss[2] == INF
    assert grad[2, 0] == -1.0
    assert grad[3, 1] == 0.0
    assert loss[4] == 0.0
    assert np.all(grad[4] == 0.0)
    # a -inf class changes nothing for the others: it is a mask
    short, short_grad = LOSSES[name].value_and_grad(z[3:4, [0, 2]], y[3:4], reduction="none")
    np.testing.assert_allclose(loss[3:4], short, **F64)
    np.testing.assert_allclose(grad[3:4, [0, 2]], short_grad, **F64)


def test_sigmoid_cross_entropy_at_infinite_logits() -> None:
    z = np.array([[INF, 0.0], [0.0, INF], [-INF, 0.0]])
    loss, grad = sigmoid_cross_entropy_value_and_grad(z, np.array([0, 0, 1]), reduction="none")
    np.testing.assert_allclose(loss, [math.log(2.0), INF, math.log(2.0)], **F64)
    np.testing.assert_allclose(grad, [[0.0, 0.5], [-0.5, 1.0], [0.0, -0.5]], **F64)


def test_softplus_normalize_cross_entropy_inf_row_is_nan_and_tiny_rows_are_finite() -> None:
    z = np.array([[INF, 0.0], [-1000.0, -1001.0], [-INF, -INF]])
    loss, grad = softplus_normalize_cross_entropy_value_and_grad(z, np.array([1, 1, 0]), reduction="none")
    assert np.all(np.isnan(loss[0]))
    assert np.all(np.isnan(grad[0]))
    ce = -np.log(softmax(z[1]))[1]  # the limit of e^o / sum e^o
    np.testing.assert_allclose(loss[1], ce, rtol=1e-12)
    np.testing.assert_allclose(grad[1], softmax(z[1]) - [0.0, 1.0], **F64)
    assert loss[2] == INF
    np.testing.assert_array_equal(grad[2], [-1.0, 0.0])


@pytest.mark.parametrize("name", list(LOSSES))
def test_all_labels_ignored_mean_is_zero(name: str) -> None:
    assert_nothing_to_average(*LOSSES[name].value_and_grad(np.ones((2, 3)), np.array([-100, -100])))
    loss, grad = LOSSES[name].value_and_grad(np.zeros((0, 3)), np.zeros((0,), dtype=np.int64))
    assert_nothing_to_average(loss)
    assert grad.shape == (0, 3)
    loss, grad = LOSSES[name].value_and_grad(np.zeros((2, 0)), np.array([-100, -100]), reduction="none")
    assert loss.shape == (2,)
    assert grad.shape == (2, 0)


@pytest.mark.parametrize(("lib", "dtype"), [("torch", "bfloat16"), ("numpy", "float16")])
@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_half_precision(name: str, lib: str, dtype: str) -> None:
    b = LIBRARIES[lib]
    z, y, _ = loss_data("NC", False)
    zh = b(z, dtype)
    loss, grad = LOSSES[name].value_and_grad(zh, b(y))
    assert loss.dtype == grad.dtype == zh.dtype
    ref_loss, ref_grad = LOSSES[name].value_and_grad(to_numpy(zh).astype(np.float32), y)
    np.testing.assert_allclose(to_numpy(loss), ref_loss, **tol(dtype))
    np.testing.assert_allclose(to_numpy(grad), ref_grad, **tol(dtype))


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_errors_name_the_argument(name: str) -> None:
    z = np.zeros((2, 3))
    fn = LOSSES[name].value
    with pytest.raises(ValueError, match=r"class index 3 at position \(1,\)"):
        fn(z, np.array([0, 3]))
    with pytest.raises(TypeError, match="target must hold integer class indices"):
        fn(z, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="reduction must be one of"):
        fn(z, np.array([0, 1]), reduction="avg")
    with pytest.raises(ValueError, match="weight must be finite and >= 0"):
        fn(z, np.array([0, 1]), weight=np.array([1.0, -1.0, 1.0]))
    with pytest.raises(TypeError, match="logits must hold real numbers"):
        fn(z.astype(bool), np.array([0, 1]))


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_does_not_modify_inputs(name: str) -> None:
    z, y, w = (np.array([[1.0, -2.0, 0.5]]), np.array([2]), np.array([1.0, 2.0, 3.0]))
    copies = [a.copy() for a in (z, y, w)]
    LOSSES[name].value_and_grad(z, y, weight=w)
    for a, c in zip((z, y, w), copies, strict=True):
        np.testing.assert_array_equal(a, c)


# ------------------------------------------------------------------------------------------ properties
DTYPES = ["float64", "float32"]
SHAPES = st.tuples(st.integers(1, 5), st.integers(1, 12))


def arrays(dtype: str, *, wide: bool = True) -> st.SearchStrategy[np.ndarray]:
    """Finite arrays in [-1e3, 1e3], and with ``wide`` anywhere in the finite range of ``dtype`` too."""
    width = np.finfo(dtype).bits
    elements = st.floats(-1e3, 1e3, width=width)
    if wide:
        elements = elements | st.floats(allow_nan=False, allow_infinity=False, width=width)
    return hnp.arrays(np.dtype(dtype), SHAPES, elements=elements)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_softplus_normalize_is_a_permutation_equivariant_distribution(dtype: str, data: st.DataObject) -> None:
    x = data.draw(arrays(dtype))
    p = softplus_normalize(x)
    assert p.dtype == x.dtype
    assert np.all(np.isfinite(p))
    assert np.all((p >= 0) & (p <= 1))
    n = x.shape[-1]
    assert np.all(np.abs(np.sum(p.astype(np.float64), axis=-1) - 1.0) <= 2 * n * EPS[dtype])
    assert np.all(np.isfinite(log_softplus_normalize(x)))
    perm = data.draw(st.permutations(range(n)))
    rtol, atol = tol(dtype).values()
    np.testing.assert_allclose(softplus_normalize(x[:, perm]), p[:, perm], rtol=rtol, atol=atol)
    v = np.ones_like(x)
    for op in (softplus_normalize_jvp, softplus_normalize_vjp):
        assert np.all(np.isfinite(op(x, v)))
    loss, grad = softplus_normalize_cross_entropy_value_and_grad(x, np.zeros(x.shape[0], dtype=np.int64))
    assert np.isfinite(loss)
    assert loss >= 0
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_masked_entries_are_exactly_zero(dtype: str, data: st.DataObject) -> None:
    x = data.draw(arrays(dtype))
    keep = data.draw(hnp.arrays(np.bool_, x.shape))
    v = np.ones_like(x)
    for fn in (softplus_normalize, sigmoid):
        assert np.all(fn(x, where=keep)[~keep] == 0.0)
    for fn in (softplus_normalize_jvp, softplus_normalize_vjp, sigmoid_jvp, sigmoid_vjp):
        assert np.all(fn(x, v, where=keep)[~keep] == 0.0)
    p = softplus_normalize(x, where=keep)
    kept_rows = np.any(keep, axis=-1)
    np.testing.assert_allclose(np.sum(p[kept_rows], axis=-1), 1.0, rtol=0, atol=2 * x.shape[-1] * EPS[dtype])
    assert np.all(p[~kept_rows] == 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_sigmoid_lies_in_unit_interval_and_each_class_stands_alone(dtype: str, data: st.DataObject) -> None:
    x = data.draw(arrays(dtype, wide=False))  # (a loss summing C softplus of ~1e308 overflows, rightly)
    p = sigmoid(x)
    assert p.dtype == x.dtype
    assert np.all((p >= 0) & (p <= 1))
    assert np.all(log_sigmoid(x) <= 0)
    perm = data.draw(st.permutations(range(x.shape[-1])))
    np.testing.assert_array_equal(sigmoid(x[:, perm]), p[:, perm])  # elementwise: bit for bit
    for j in range(x.shape[-1]):  # not normalised: an entry depends on its own logit only
        np.testing.assert_array_equal(sigmoid(x[:, j : j + 1])[:, 0], p[:, j])
    loss, grad = sigmoid_cross_entropy_value_and_grad(x, np.zeros(x.shape[0], dtype=np.int64))
    assert np.isfinite(loss)
    assert loss >= 0
    assert np.all(np.abs(grad) <= 1)

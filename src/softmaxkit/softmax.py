r"""Softmax, log-softmax and log-sum-exp, with their exact derivatives.

Why softmax
-----------
A network's last layer produces real scores :math:`z \in \mathbb{R}^K` (logits). To read them as a probability
distribution we need a map to the simplex that is positive, sums to one, keeps the order of the scores and is
smooth. Softmax is

.. math:: p_i = \operatorname{softmax}(z)_i = \frac{e^{z_i}}{\sum_{j=1}^K e^{z_j}} .

It is not an arbitrary choice. If the log-probability of class :math:`i` is :math:`z_i` up to a constant (the
logits are unnormalised log-probabilities; the multinomial as an exponential family gives exactly this), then
normalising gives softmax. Dividing by the sum instead (:func:`softmaxkit.normalize`, :math:`z_i/\sum z_j`)
is blind to scale: ``[1, 2]`` and ``[10, 20]`` give the same ``[1/3, 2/3]``, whereas softmax becomes confident
on the larger, "crisper" scores (``[0.27, 0.73]`` vs ``[4.5e-5, 0.99995]``). Softmax is invariant to shifts,
:math:`\operatorname{softmax}(z + c) = \operatorname{softmax}(z)`, and a ``temperature`` :math:`T` rescales
confidence: :math:`\operatorname{softmax}(z/T)` tends to the uniform distribution as :math:`T \to \infty` and
to the argmax as :math:`T \to 0`.

Why log-sum-exp
---------------
:math:`e^{z}` overflows for :math:`z > 709.78` in float64 and :math:`z > 88.72` in float32, and underflows to 0
for very negative :math:`z`, so the textbook formula returns ``nan`` for ``[1000, 1001]``. With
:math:`m = \max_j z_j`,

.. math:: \operatorname{lse}(z) = \log \sum_j e^{z_j} = m + \log \sum_j e^{z_j - m},

every term of the sum lies in :math:`(0, 1]` and one of them is exactly 1, so the sum lies in :math:`[1, K]`:
it can neither overflow nor vanish. We go one step further (Blanchard, Higham & Higham, *Accurately computing
the log-sum-exp and softmax functions*, IMA J. Numer. Anal. 2021): writing the sum as :math:`1 + s` where
:math:`s` adds the terms other than the maximum, we evaluate :math:`\log(1+s)` as ``log1p(s)``, which keeps its
relative accuracy when :math:`s` is tiny. Then

.. math:: \log p_i = (z_i - m) - \operatorname{log1p}(s), \qquad p_i = \frac{e^{z_i - m}}{1 + s}.

Never compute :math:`\log p_i` as :math:`z_i - \operatorname{lse}(z)`: for logits near :math:`10^7` in float32,
:math:`\operatorname{lse}` itself is only known to the nearest integer, whereas :math:`z_i - m` is exact. Our
``log_softmax(x + 1e7)`` equals ``log_softmax(x)`` in float32.

How accurate can it be
----------------------
The subtraction :math:`z_i - m` is rounded to a relative error :math:`u` (the unit roundoff), that is an
absolute error :math:`u\,|z_i - m|`, and the exponential turns that absolute error into a relative error of
:math:`p_i`. No method that rounds :math:`z_i - m` can beat :math:`\approx u\,|z_i - m|` relative error on
:math:`p_i`; our tests hold every entry to :math:`4\varepsilon(2 + |z_i - m|)` and every log-domain value to an
absolute error of :math:`4\varepsilon(1 + |\text{value}|)` against a 50-digit mpmath oracle.

Derivatives
-----------
.. math:: \frac{\partial p_i}{\partial z_j} = p_i(\delta_{ij} - p_j), \qquad
          J = \operatorname{diag}(p) - p p^\top .

The often-quoted :math:`p_i(1 - p_i)` is only the diagonal: raising one logit lowers every other probability
(:math:`-p_i p_j`), because they must still sum to one. :math:`J` is symmetric, so the JVP and the VJP are the
same product :math:`p \odot (v - \langle p, v\rangle)`, computed in :math:`O(K)` without forming :math:`J`. For
log-softmax, :math:`\partial \log p_i / \partial z_j = \delta_{ij} - p_j`, and the gradient of
:math:`\operatorname{lse}` is :math:`p` itself.

Special values (shared by every function of this module)
--------------------------------------------------------
A *masked* entry is one that is ``-inf`` or where ``where`` is False. Masked entries get probability exactly 0,
log-probability ``-inf`` and derivative exactly 0. A row with every entry masked has no distribution; we return
zeros (softmax) and ``-inf`` (log-softmax) rather than the ``nan`` of torch, SciPy and JAX, and zero derivatives
rather than the ``nan`` of torch and JAX; its lse is ``-inf``, the log of an empty sum, as in torch, SciPy and
JAX. A ``nan`` anywhere in a row makes that row ``nan``; a ``+inf`` makes softmax and log-softmax ``nan`` (the
ratio :math:`\infty/\infty` has no value) while lse is ``+inf``, its exact value.
"""

from __future__ import annotations

from typing import Any, Literal, overload

import array_api_compat
import numpy as np

from . import _backend, _engine, _validate
from ._array import Array, Namespace, cast, like, namespace_of, quiet, to_compute

__all__ = [
    "log_softmax",
    "log_softmax_jvp",
    "log_softmax_vjp",
    "logsumexp",
    "softmax",
    "softmax_jacobian",
    "softmax_jvp",
    "softmax_vjp",
]

Axes = int | tuple[int, ...] | None
"""An axis, a tuple of axes (reduced together) or None (every axis), as in :func:`scipy.special.softmax`."""

_NAN = float("nan")
_INF = float("inf")


def softmax(
    x: Array,
    /,
    *,
    axis: Axes = -1,
    temperature: float = 1.0,
    where: Array | None = None,
    backend: str | None = None,
) -> Array:
    r"""Softmax along ``axis``: a probability distribution from logits, without overflow.

    .. math:: \operatorname{softmax}(x/T)_i = \frac{e^{(x_i - m)/T}}{\sum_j e^{(x_j - m)/T}},
              \qquad m = \max_j x_j

    The maximum is subtracted before dividing by ``temperature``, so the rounding error stays relative to
    :math:`|x_i - m|` whatever the size of :math:`x` (see the module notes).

    Parameters
    ----------
    x : array_like
        Real logits (any array-API array, or a sequence). float16/bfloat16 are computed in float32 and
        returned in their own dtype; integers promote to the default floating dtype.
    axis : int, tuple of ints or None
        The axis that holds the classes; a tuple of axes holds them together (its entries are one
        distribution), and ``None`` means the whole array, as in :func:`scipy.special.softmax`. The default
        stays ``-1`` (SciPy's is ``None``), the convention of torch, JAX and this package's losses.
    temperature : float
        :math:`T > 0`, within float32's normal range (about 1.2e-38 to 3.4e38, the same for every dtype);
        under ``jax.jit`` it may be a traced JAX scalar (its value is then not checked). Large :math:`T`
        flattens the distribution, small :math:`T` sharpens it.
    where : array of bool, optional
        Broadcastable to ``x``. Entries where it is False are left out: probability exactly 0.
    backend : {"auto", "reference", "numpy", "numba", "triton"}, optional
        The engine for this call (see :func:`softmaxkit.backend`); the default follows
        ``with softmaxkit.backend(...)`` and ``SOFTMAXKIT_BACKEND``, else ``auto``. A named engine that cannot
        run the call raises ``ValueError`` saying why.

    Returns
    -------
    array
        Same shape, array type and (floating) dtype as ``x``; each row sums to one.

    Raises
    ------
    TypeError
        ``x`` is boolean or complex; ``where`` is not boolean; ``axis`` is not an int.
    ValueError
        ``axis`` out of range; ``temperature`` not a number in float32's normal range; ``where`` does not
        broadcast; unknown ``backend``, or one that cannot run the call.

    Special values
    --------------
    ==============================  ====================================
    row                             result
    ==============================  ====================================
    ``-inf`` or masked entry        exactly 0 at that entry
    all ``-inf`` / all masked       all zeros (torch, SciPy, JAX: nan)
    contains ``nan``                ``nan`` for that row only
    contains ``+inf``               ``nan`` for that row (inf/inf)
    empty axis                      empty result
    float16 / bfloat16              computed in float32, returned as is
    ==============================  ====================================

    Examples
    --------
    >>> import numpy as np
    >>> print(np.round(softmax(np.array([5.0, 2.0, -1.0, 3.0])), 3))
    [0.842 0.042 0.002 0.114]
    >>> print(softmax(np.array([1000.0, 1001.0])))
    [0.26894142 0.73105858]
    >>> print(softmax(np.array([-np.inf, -np.inf])))
    [0. 0.]
    >>> print(softmax(np.zeros((2, 2)), axis=None))  # one distribution over the whole array, as SciPy's default
    [[0.25 0.25]
     [0.25 0.25]]
    """
    if where is None and type(x) is np.ndarray:  # plain NumPy: only the checks it needs (_backend.short_map)
        short = _backend.short_map("softmax", x, axis, temperature, backend)
        if short is not None:
            return short
    return _softmax(x, axis, temperature, where, backend)


@quiet
def _softmax(x: Any, axis: Any, temperature: Any, where: Any, backend: Any) -> Array:
    t = _validate.temperature(temperature)
    xp, z, ax, out_dtype = _engine.rows(x, axis, where, several=True)
    engine = _backend.choose("softmax", z, backend, options=() if _engine.is_one(t) else ("temperature",))
    if z.shape[-1] == 0:
        return _engine.finish(xp, z, ax, out_dtype)
    if engine != "reference":
        return _engine.finish(xp, _backend.run_softmax(engine, z, t, log=False), ax, out_dtype)
    st = _engine.stats(xp, z, t)
    return _engine.finish(xp, xp.where(st.bad, _NAN, st.p), ax, out_dtype)


def log_softmax(
    x: Array,
    /,
    *,
    axis: Axes = -1,
    temperature: float = 1.0,
    where: Array | None = None,
    backend: str | None = None,
) -> Array:
    r"""Logarithm of :func:`softmax`, computed directly so that it is accurate where softmax underflows.

    .. math:: \log \operatorname{softmax}(x/T)_i = \frac{x_i - m}{T} - \operatorname{log1p}(s),
              \qquad s = \sum_{j \ne j^*} e^{(x_j - m)/T}

    where :math:`j^*` is the position of the maximum :math:`m` (Blanchard, Higham & Higham 2021). It is *not*
    :math:`x_i - \operatorname{lse}(x)`, which loses every digit of :math:`x_i - m` that the magnitude of
    :math:`\operatorname{lse}` cannot hold.

    Parameters
    ----------
    x : array_like
        Real logits. float16/bfloat16 are computed in float32; integers promote to the default float.
    axis : int, tuple of ints or None
        The axis (or axes, together; ``None``: all) that holds the classes, as in :func:`softmax`.
    temperature : float
        :math:`T > 0`, as in :func:`softmax`.
    where : array of bool, optional
        Broadcastable to ``x``; entries where it is False get ``-inf``.
    backend : {"auto", "reference", "numpy", "numba", "triton"}, optional
        As for :func:`softmax`.

    Returns
    -------
    array
        Same shape, array type and (floating) dtype as ``x``; every entry is ``<= 0``.

    Raises
    ------
    TypeError, ValueError
        As :func:`softmax`.

    Special values
    --------------
    ==============================  ====================================
    row                             result
    ==============================  ====================================
    ``-inf`` or masked entry        ``-inf`` at that entry
    all ``-inf`` / all masked       all ``-inf`` (torch, SciPy, JAX: nan)
    contains ``nan``                ``nan`` for that row only
    contains ``+inf``               ``nan`` for that row
    empty axis                      empty result
    float16 / bfloat16              computed in float32, returned as is
    ==============================  ====================================

    Examples
    --------
    >>> import numpy as np
    >>> print(log_softmax(np.array([0.0, -800.0])))
    [   0. -800.]
    >>> x = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    >>> bool(np.all(log_softmax(x + np.float32(1e7)) == log_softmax(x)))
    True
    """
    if where is None and type(x) is np.ndarray:  # plain NumPy: only the checks it needs (_backend.short_map)
        short = _backend.short_map("log_softmax", x, axis, temperature, backend)
        if short is not None:
            return short
    return _log_softmax(x, axis, temperature, where, backend)


@quiet
def _log_softmax(x: Any, axis: Any, temperature: Any, where: Any, backend: Any) -> Array:
    t = _validate.temperature(temperature)
    xp, z, ax, out_dtype = _engine.rows(x, axis, where, several=True)
    engine = _backend.choose("log_softmax", z, backend, options=() if _engine.is_one(t) else ("temperature",))
    if z.shape[-1] == 0:
        return _engine.finish(xp, z, ax, out_dtype)
    if engine != "reference":
        return _engine.finish(xp, _backend.run_softmax(engine, z, t, log=True), ax, out_dtype)
    st = _engine.stats(xp, z, t)
    return _engine.finish(xp, xp.where(st.bad, _NAN, st.d - st.log_norm), ax, out_dtype)


@overload
def logsumexp(
    x: Array,
    /,
    *,
    axis: Axes = -1,
    keepdims: bool = False,
    b: Array | None = None,
    where: Array | None = None,
    return_sign: Literal[False] = False,
    backend: str | None = None,
) -> Array: ...


@overload
def logsumexp(
    x: Array,
    /,
    *,
    axis: Axes = -1,
    keepdims: bool = False,
    b: Array | None = None,
    where: Array | None = None,
    return_sign: Literal[True],
    backend: str | None = None,
) -> tuple[Array, Array]: ...


def logsumexp(
    x: Array,
    /,
    *,
    axis: Axes = -1,
    keepdims: bool = False,
    b: Array | None = None,
    where: Array | None = None,
    return_sign: bool = False,
    backend: str | None = None,
) -> Array | tuple[Array, Array]:
    r"""Log of the sum of exponentials along ``axis``, without overflow.

    .. math:: \operatorname{lse}(x) = \log \sum_i b_i e^{x_i} = m + \log \sum_i b_i e^{x_i - m},
              \qquad m = \max_{i:\, b_i \ne 0} x_i

    Without ``b`` the sum is :math:`1 + s` with :math:`s` the terms other than the maximum, and
    :math:`\log(1 + s)` is evaluated as ``log1p(s)`` (Blanchard, Higham & Higham 2021), which keeps full
    relative accuracy when the maximum dominates. The gradient of lse is :func:`softmax`.

    Parameters
    ----------
    x : array_like
        Real values. float16/bfloat16 are computed in float32; integers promote to the default float.
    axis : int, tuple of ints or None
        The axis to reduce, or several (a tuple), or every one (``None``, SciPy's default; ours stays ``-1``).
    keepdims : bool
        Keep the reduced axes with length 1.
    b : array_like, optional
        Scale factors broadcastable to ``x``, as in :func:`scipy.special.logsumexp`: the result is
        :math:`\log|\sum_i b_i e^{x_i}|`. Entries with :math:`b_i = 0` are left out even if :math:`x_i` is
        ``inf`` or ``nan``.
    where : array of bool, optional
        Broadcastable to ``x``; entries where it is False are left out.
    return_sign : bool
        Also return the sign of the sum (1, -1, or 0 for an empty sum), so that a negative sum has a
        logarithm: ``(log|sum|, sign)``.
    backend : {"auto", "reference", "numpy", "numba", "triton"}, optional
        As for :func:`softmax`; only ``reference`` implements ``b``.

    Returns
    -------
    array or (array, array)
        ``x``'s shape without ``axis`` (or with length 1 there if ``keepdims``); with ``return_sign``, the sign
        too, in the same dtype.

    Raises
    ------
    TypeError
        ``x`` or ``b`` boolean or complex; ``where`` not boolean.
    ValueError
        ``axis`` out of range; ``b`` or ``where`` do not broadcast to ``x``; unknown ``backend``.

    Special values
    --------------
    ====================================  =============================================
    row                                   result (sign)
    ====================================  =============================================
    all ``-inf`` / all masked / all b=0   ``-inf`` (0), as torch, SciPy, JAX
    empty axis                            ``-inf`` (0)
    contains ``nan`` (with b != 0)        ``nan`` for that row only
    contains ``+inf`` (with b > 0)        ``+inf`` (1), its exact value
    ``+inf`` with b of both signs         ``nan`` (inf - inf)
    negative sum, ``return_sign=False``   ``nan``, as SciPy; ask for the sign instead
    float16 / bfloat16                    computed in float32, returned as is
    ====================================  =============================================

    Examples
    --------
    >>> import numpy as np
    >>> float(logsumexp(np.array([1000.0, 1000.0])))
    1000.6931471805599
    >>> float(logsumexp(np.array([0.0, -40.0])))  # log1p keeps the tail: log(1 + e^-40)
    4.248354255291589e-18
    >>> lse, sign = logsumexp(np.array([1.0, 2.0]), b=np.array([1.0, -1.0]), return_sign=True)
    >>> print(round(float(lse), 6), float(sign))
    1.541325 -1.0
    """
    if b is None and where is None and not return_sign and type(x) is np.ndarray:  # (see softmax)
        short = _backend.short_map("logsumexp", x, axis, 1.0, backend)
        if short is not None:
            return short if keepdims else short[..., 0]
    return _logsumexp(x, axis, keepdims, b, where, return_sign, backend)


@quiet
def _logsumexp(x: Any, axis: Any, keepdims: Any, b: Any, where: Any, return_sign: bool, backend: Any) -> Any:
    xp, x = namespace_of(x, b, where)
    if b is None:
        xp, z, ax, out_dtype = _engine.rows(x, axis, where, several=True)
    else:
        bb = like(xp, x, b)
        work_b, _ = to_compute(xp, bb, "b")
        try:
            work_b = xp.broadcast_to(work_b, tuple(x.shape))
        except (ValueError, RuntimeError, TypeError) as exc:
            raise ValueError(
                f"b with shape {tuple(bb.shape)} does not broadcast to x's shape {tuple(x.shape)}"
            ) from exc
        keep = work_b != 0
        if where is not None:
            keep = xp.logical_and(keep, _validate.mask(xp, x, where))
        xp, z, ax, out_dtype = _engine.rows(x, axis, keep, several=True)
        work_b = _engine.lay(xp, work_b, ax)
        if work_b.dtype != z.dtype:
            common = xp.result_type(work_b.dtype, z.dtype)
            z, work_b, out_dtype = xp.astype(z, common), xp.astype(work_b, common), xp.result_type(out_dtype, common)
    engine = _backend.choose("logsumexp", z, backend, options=() if b is None else ("b",))
    if z.shape[-1] == 0:
        lse = xp.full((*z.shape[:-1], 1), -_INF, dtype=z.dtype, device=array_api_compat.device(z))
        sign = xp.zeros_like(lse)
    elif engine != "reference":
        lse = _backend.run_logsumexp(engine, z)  # m + log1p(rest), so lse == -inf exactly where m == -inf
        sign = xp.where(lse == -_INF, 0.0, xp.where(xp.isnan(lse), _NAN, xp.ones_like(lse)))
    elif b is None:
        st = _engine.stats(xp, z)
        lse = st.m + st.log_norm
        one = xp.ones_like(lse)
        sign = xp.where(st.m == -_INF, 0.0, xp.where(xp.isnan(lse), _NAN, one))
    else:
        lse, sign = _scaled_lse(xp, z, work_b)
        if not return_sign:
            lse = xp.where(sign < 0, _NAN, lse)
    if not keepdims:
        lse, sign = xp.squeeze(lse, axis=-1), xp.squeeze(sign, axis=-1)
    else:
        lse, sign = _engine.unlay(xp, lse, ax, reduced=True), _engine.unlay(xp, sign, ax, reduced=True)
    lse, sign = cast(xp, lse, out_dtype), cast(xp, sign, out_dtype)
    return (lse, sign) if return_sign else lse


def _scaled_lse(xp: Namespace, z: Array, b: Array) -> tuple[Array, Array]:
    """``log|sum b e^z|`` and its sign along the last axis; entries with b == 0 are already -inf in z."""
    m = xp.max(z, axis=-1, keepdims=True)
    finite = xp.isfinite(m)
    e = xp.exp(z - xp.where(finite, m, 0.0))
    s = xp.sum(xp.where(z == -_INF, 0.0, b * e), axis=-1, keepdims=True)
    lse = xp.where(finite, m + xp.log(xp.abs(s)), m)
    sign = xp.sign(s)
    # Rows holding +inf: the sum is +inf times the sign of the b's at the infinite entries, nan if mixed.
    at_inf = z == _INF
    pos = xp.any(xp.logical_and(at_inf, b > 0), axis=-1, keepdims=True)
    neg = xp.any(xp.logical_and(at_inf, b < 0), axis=-1, keepdims=True)
    mixed = xp.logical_and(pos, neg)
    one = xp.ones_like(m)
    inf_sign = xp.where(mixed, _NAN, xp.where(pos, one, -one))
    sign = xp.where(m == _INF, inf_sign, xp.where(m == -_INF, 0.0, sign))
    lse = xp.where(xp.logical_and(m == _INF, mixed), _NAN, lse)
    sign = xp.where(xp.isnan(m), _NAN, sign)
    return lse, sign


# --------------------------------------------------------------------------------------------- derivatives


def _softmax_product(x: Any, v: Any, name: str, axis: Axes, temperature: float, where: Any) -> Array:
    """``J v`` (= ``J^T v``, J is symmetric) for the softmax Jacobian, without forming J."""
    t = _validate.temperature(temperature)
    rows = _engine.rows(x, axis, where, v, several=True)
    xp, z = rows.xp, rows.z
    vz = _engine.tangent(rows, v, name, x)
    if z.shape[-1] == 0:
        return _engine.finish(xp, z, rows.axis, rows.out_dtype)
    st = _engine.stats(xp, z, t)
    zero = st.p == 0
    pv = xp.where(zero, 0.0, st.p * vz)
    out = xp.where(zero, 0.0, pv - st.p * xp.sum(pv, axis=-1, keepdims=True))
    if not _engine.is_one(t):
        out = out / t
    return _engine.finish(xp, xp.where(st.bad, _NAN, out), rows.axis, rows.out_dtype)


@quiet
def softmax_jvp(
    x: Array, v: Array, /, *, axis: Axes = -1, temperature: float = 1.0, where: Array | None = None
) -> Array:
    r"""Jacobian-vector product of :func:`softmax`: the change of :math:`p` along a change ``v`` of ``x``.

    .. math:: J v = \frac{1}{T}\, p \odot \bigl(v - \langle p, v \rangle\bigr)

    computed in :math:`O(K)` per row without forming :math:`J`.

    Parameters
    ----------
    x : array_like
        Logits, as for :func:`softmax`.
    v : array_like
        Tangent, same shape as ``x``.
    axis, temperature, where
        As for :func:`softmax`.

    Returns
    -------
    array
        Same shape as ``x``; each row sums to zero (probability moves, it is not created).

    Raises
    ------
    ValueError
        ``v``'s shape differs from ``x``'s; and as :func:`softmax`.

    Special values
    --------------
    ==============================  ====================================
    row                             result
    ==============================  ====================================
    masked / ``-inf`` entry         exactly 0 at that entry
    all masked                      zeros
    contains ``nan`` or ``+inf``    ``nan`` for that row only
    empty axis                      empty result
    ==============================  ====================================

    Examples
    --------
    >>> import numpy as np
    >>> print(softmax_jvp(np.array([0.0, 0.0]), np.array([1.0, 0.0])))
    [ 0.25 -0.25]
    """
    return _softmax_product(x, v, "v", axis, temperature, where)


@quiet
def softmax_vjp(
    x: Array, g: Array, /, *, axis: Axes = -1, temperature: float = 1.0, where: Array | None = None
) -> Array:
    r"""Vector-Jacobian product of :func:`softmax`: the gradient of :math:`\langle g, p\rangle` w.r.t. ``x``.

    .. math:: g^\top J = \frac{1}{T}\, p \odot \bigl(g - \langle p, g \rangle\bigr)

    (:math:`J` is symmetric, so this is the same product as :func:`softmax_jvp`.)

    Parameters
    ----------
    x : array_like
        Logits, as for :func:`softmax`.
    g : array_like
        Cotangent (upstream gradient), same shape as ``x``.
    axis, temperature, where
        As for :func:`softmax`.

    Returns
    -------
    array
        Same shape as ``x``.

    Raises
    ------
    ValueError
        ``g``'s shape differs from ``x``'s; and as :func:`softmax`.

    Special values
    --------------
    ==============================  ====================================
    row                             result
    ==============================  ====================================
    masked / ``-inf`` entry         exactly 0 at that entry
    all masked                      zeros (torch and JAX: nan)
    contains ``nan`` or ``+inf``    ``nan`` for that row only
    empty axis                      empty result
    ==============================  ====================================

    Examples
    --------
    >>> import numpy as np
    >>> print(softmax_vjp(np.array([0.0, -np.inf]), np.array([1.0, 5.0])))
    [0. 0.]
    """
    return _softmax_product(x, g, "g", axis, temperature, where)


@quiet
def softmax_jacobian(x: Array, /, *, axis: Axes = -1, temperature: float = 1.0, where: Array | None = None) -> Array:
    r"""The full Jacobian of :func:`softmax`, :math:`J = (\operatorname{diag}(p) - p p^\top)/T`, per row.

    :math:`J_{ij} = p_i(\delta_{ij} - p_j)/T`: the diagonal :math:`p_i(1 - p_i)` is positive, every off-diagonal
    entry :math:`-p_i p_j` is negative, and each row and column sums to zero. Prefer :func:`softmax_vjp` or
    :func:`softmax_jvp` in code: they cost :math:`O(K)`, this costs :math:`O(K^2)` memory.

    Parameters
    ----------
    x : array_like
        Logits, as for :func:`softmax`.
    axis, temperature, where
        As for :func:`softmax`.

    Returns
    -------
    array
        Shape ``batch + (K, K)`` where ``batch`` is ``x``'s shape without ``axis`` and ``K = x.shape[axis]``;
        ``J[..., i, j]`` is :math:`\partial p_i / \partial x_j`.

    Raises
    ------
    TypeError, ValueError
        As :func:`softmax`.

    Special values
    --------------
    ==============================  ====================================
    row                             result
    ==============================  ====================================
    masked / ``-inf`` entry         zero row and column
    all masked                      zero matrix
    contains ``nan`` or ``+inf``    ``nan`` matrix for that row
    empty axis                      shape ``batch + (0, 0)``
    ==============================  ====================================

    Examples
    --------
    >>> import numpy as np
    >>> print(softmax_jacobian(np.array([0.0, 0.0])))
    [[ 0.25 -0.25]
     [-0.25  0.25]]
    """
    t = _validate.temperature(temperature)
    xp, z, _, out_dtype = _engine.rows(x, axis, where, several=True)
    n = z.shape[-1]
    if n == 0:
        return cast(xp, xp.zeros((*z.shape, 0), dtype=z.dtype, device=array_api_compat.device(z)), out_dtype)
    st = _engine.stats(xp, z, t)
    p = xp.where(st.bad, _NAN, st.p)
    col = xp.expand_dims(p, axis=-1)
    eye = xp.eye(n, dtype=z.dtype, device=array_api_compat.device(z))
    jac = col * eye - col * xp.expand_dims(p, axis=-2)
    if not _engine.is_one(t):
        jac = jac / t
    return cast(xp, jac, out_dtype)


def _log_softmax_product(x: Any, v: Any, name: str, axis: Axes, temperature: float, where: Any, vjp: bool) -> Array:
    t = _validate.temperature(temperature)
    rows = _engine.rows(x, axis, where, v, several=True)
    xp, z = rows.xp, rows.z
    vz = _engine.tangent(rows, v, name, x)
    if z.shape[-1] == 0:
        return _engine.finish(xp, z, rows.axis, rows.out_dtype)
    st = _engine.stats(xp, z, t)
    active = z != -_INF
    va = xp.where(active, vz, 0.0)
    if vjp:  # g - p * sum(g): the sum runs over outputs that depend on x (masked outputs are constant)
        out = va - st.p * xp.sum(va, axis=-1, keepdims=True)
    else:  # v - <p, v>
        out = va - xp.sum(xp.where(st.p == 0, 0.0, st.p * va), axis=-1, keepdims=True)
    out = xp.where(active, out, 0.0)
    if not _engine.is_one(t):
        out = out / t
    return _engine.finish(xp, xp.where(st.bad, _NAN, out), rows.axis, rows.out_dtype)


@quiet
def log_softmax_vjp(
    x: Array, g: Array, /, *, axis: Axes = -1, temperature: float = 1.0, where: Array | None = None
) -> Array:
    r"""Vector-Jacobian product of :func:`log_softmax`: the gradient of :math:`\langle g, \log p\rangle`.

    .. math:: \frac{\partial}{\partial x_j} \sum_i g_i \log p_i = \frac{1}{T}\Bigl(g_j - p_j \sum_i g_i\Bigr)

    With :math:`g = -y` for a one-hot (or any probability) target :math:`y` this is :math:`p - y`: the
    gradient of cross-entropy.

    Parameters
    ----------
    x : array_like
        Logits, as for :func:`log_softmax`.
    g : array_like
        Cotangent, same shape as ``x``. Its entries at masked positions are ignored: those outputs are the
        constant ``-inf`` and depend on nothing.
    axis, temperature, where
        As for :func:`log_softmax`.

    Returns
    -------
    array
        Same shape as ``x``.

    Raises
    ------
    ValueError
        ``g``'s shape differs from ``x``'s; and as :func:`softmax`.

    Special values
    --------------
    ==============================  ====================================
    row                             result
    ==============================  ====================================
    masked / ``-inf`` entry         exactly 0 at that entry
    all masked                      zeros (torch and JAX: nan)
    contains ``nan`` or ``+inf``    ``nan`` for that row only
    empty axis                      empty result
    ==============================  ====================================

    Examples
    --------
    >>> import numpy as np
    >>> x = np.log(np.array([0.5, 0.25, 0.25]))
    >>> print(log_softmax_vjp(x, -np.array([1.0, 0.0, 0.0])))  # p - y
    [-0.5   0.25  0.25]
    """
    return _log_softmax_product(x, g, "g", axis, temperature, where, vjp=True)


@quiet
def log_softmax_jvp(
    x: Array, v: Array, /, *, axis: Axes = -1, temperature: float = 1.0, where: Array | None = None
) -> Array:
    r"""Jacobian-vector product of :func:`log_softmax`: :math:`(v - \langle p, v\rangle)/T` on unmasked entries.

    Parameters
    ----------
    x : array_like
        Logits, as for :func:`log_softmax`.
    v : array_like
        Tangent, same shape as ``x``.
    axis, temperature, where
        As for :func:`log_softmax`.

    Returns
    -------
    array
        Same shape as ``x``.

    Raises
    ------
    ValueError
        ``v``'s shape differs from ``x``'s; and as :func:`softmax`.

    Special values
    --------------
    ==============================  ====================================
    row                             result
    ==============================  ====================================
    masked / ``-inf`` entry         exactly 0 at that entry
    all masked                      zeros
    contains ``nan`` or ``+inf``    ``nan`` for that row only
    empty axis                      empty result
    ==============================  ====================================

    Examples
    --------
    >>> import numpy as np
    >>> print(log_softmax_jvp(np.array([0.0, 0.0]), np.array([1.0, 1.0])))  # shifts change nothing
    [0. 0.]
    """
    return _log_softmax_product(x, v, "v", axis, temperature, where, vjp=False)

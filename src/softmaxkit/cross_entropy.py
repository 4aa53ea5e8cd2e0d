r"""Cross-entropy from logits, and its gradient in closed form.

Why cross-entropy, and why from logits
--------------------------------------
Training a classifier by maximum likelihood means maximising :math:`\prod_n p_{y_n}`, or, in logs and with a
minus sign, minimising the negative log-likelihood :math:`\sum_n -\log p_{y_n}`: the cross-entropy between the
one-hot target and the predicted distribution. With :math:`p = \operatorname{softmax}(z)`,

.. math:: -\log p_y = \operatorname{lse}(z) - z_y ,

so the loss is computed straight from the logits: the ``exp`` of softmax and the ``log`` of the loss cancel,
and nothing ever overflows or takes ``log(0)``. That cancellation is also why the pair trains well: the
gradient is

.. math:: \frac{\partial}{\partial z_j}\bigl(\operatorname{lse}(z) - z_y\bigr) = p_j - y_j ,

bounded, and close to :math:`-1` at the true class when the model is confidently wrong, so a saturated wrong
prediction still gets a full-size correction. (Squared error on :math:`p` multiplies by the softmax Jacobian
:math:`p_i(\delta_{ij} - p_j)`, which vanishes exactly when the model is saturated, right or wrong.)

Options, with PyTorch's semantics
---------------------------------
For a row with logits :math:`z \in \mathbb{R}^C` and class index :math:`y` (``weight`` :math:`w`, default 1;
``label_smoothing`` :math:`\varepsilon`):

.. math:: \ell = (1-\varepsilon)\, w_y\,(\operatorname{lse} - z_y)
              + \frac{\varepsilon}{C} \sum_{c} w_c\,(\operatorname{lse} - z_c)
              + \lambda_z \operatorname{lse}^2

and for a probability target :math:`t` (smoothed to :math:`q = (1-\varepsilon)t + \varepsilon/C`):
:math:`\ell = \sum_c w_c q_c (\operatorname{lse} - z_c) + \lambda_z \operatorname{lse}^2`.

* ``reduction="mean"`` with class indices divides by :math:`\sum_n w_{y_n}` over the rows that are not ignored
  (the row count when there are no weights); with probability targets it divides by the number of rows.
  These are ``torch.nn.functional.cross_entropy``'s denominators.
* ``ignore_index`` rows contribute nothing to the loss, the denominator, the smoothing term or the gradient
  (pytorch#73205 once counted them in the smoothing term).
* ``z_loss`` (:math:`\lambda_z`, PaLM, Chowdhery et al. 2022) keeps :math:`\operatorname{lse}` near 0. It is not
  multiplied by class weights and its mean is over the rows not ignored, as in Liger-Kernel.
* ``softcap`` (:math:`c`, Gemma 2) replaces each logit by :math:`c \tanh(z/c)` first; a ``-inf`` logit stays
  ``-inf`` so that a mask survives the cap. Rounding each capped logit would cost an absolute error of
  :math:`\varepsilon c` (large against a small loss), so the differences :math:`c\tanh(z_j/c) - c\tanh(m/c)`
  are formed directly, as :math:`c\sinh((z_j - m)/c) / (\cosh(z_j/c)\cosh(m/c))` when the two share a sign.

The gradient is computed, not differentiated: :math:`\partial \ell / \partial z = p\,\sum_c w_c q_c - w \odot q
+ 2\lambda_z \operatorname{lse}\, p`, times :math:`1 - \tanh^2(z/c)` under a softcap, divided by the
``mean`` denominator.

Deviations from PyTorch (our special-value policy)
--------------------------------------------------
* Every label ignored (or zero total weight) with ``reduction="mean"``: loss 0 and gradient 0, not ``nan``
  (pytorch#70348). An empty batch likewise.
* A target probability of 0 at a ``-inf`` logit contributes 0, not ``0 * inf = nan``.
* The accuracy is that of :func:`softmaxkit.log_softmax`: :math:`\operatorname{lse} - z_y` is evaluated as
  :math:`\operatorname{log1p}(s) - (z_y - m)`, exact for logits shifted by :math:`10^7` in float32.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat

from . import _backend, _doc, _engine, _validate
from ._array import Array, accumulator, as_array, cast, from_last, like, namespace_of, quiet, to_compute, to_last

__all__ = ["cross_entropy", "cross_entropy_value_and_grad"]

_NAN = float("nan")
_INF = float("inf")

_SPECIAL_VALUES = """
    ======================================  ==============================================
    case                                    loss (gradient)
    ======================================  ==============================================
    target's logit is ``-inf``              ``inf`` (gradient still :math:`p - q`)
    all ignored / zero weight, ``mean``     0 (zeros); torch gives nan
    empty batch                             0 for mean/sum, empty for none
    row with ``nan`` (not ignored)          ``nan`` for that row (its gradient row nan)
    row with ``+inf`` (not ignored)         ``nan`` for that row; with ``softcap`` +inf -> c
    ignored row holding ``nan``             0 (zeros): ignored rows are never read
    probability 0 at a ``-inf`` logit       contributes 0, not nan
    smoothing with a ``-inf`` logit         ``inf``: the smoothed target puts mass there
    float16 / bfloat16 logits               computed in float32, returned as is
    ======================================  ==============================================
"""


def _cross_entropy(
    logits: Any,
    target: Any,
    *,
    axis: Any,
    weight: Any,
    ignore_index: Any,
    label_smoothing: Any,
    reduction: Any,
    z_loss: Any,
    softcap: Any,
    want_grad: bool,
    backend: Any,
) -> tuple[Array, Array | None]:
    plain = weight is None and softcap is None and type(label_smoothing) is type(z_loss) is float
    if plain and label_smoothing == 0 and z_loss == 0:  # plain NumPy: only the checks it needs (_backend)
        short = _backend.short_cross_entropy(logits, target, axis, ignore_index, reduction, backend, want_grad)
        if short is not None:
            return short
    return _general(
        logits, target, axis=axis, weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing,
        reduction=reduction, z_loss=z_loss, softcap=softcap, want_grad=want_grad, backend=backend,
    )  # fmt: skip


@quiet
def _general(
    logits: Any,
    target: Any,
    *,
    axis: Any,
    weight: Any,
    ignore_index: Any,
    label_smoothing: Any,
    reduction: Any,
    z_loss: Any,
    softcap: Any,
    want_grad: bool,
    backend: Any,
) -> tuple[Array, Array | None]:
    o = _validate.cross_entropy_options(ignore_index, label_smoothing, reduction, z_loss, softcap)
    ignore, eps, red, lam, cap = o.ignore_index, o.label_smoothing, o.reduction, o.z_loss, o.softcap
    xp, x = namespace_of(logits, target, weight, name="logits")
    ax = _validate.axis(axis, x.ndim)
    z, out_dtype = to_compute(xp, x, "logits")
    z = to_last(xp, z, ax)
    n_classes = z.shape[-1]
    dev = array_api_compat.device(z)
    batch = tuple(z.shape[:-1])
    acc = accumulator(xp, z.dtype, z)  # row and batch sums are added up in float64 for float32 logits

    tgt = like(xp, x, target, "target")
    if tgt.dtype == xp.bool or not (xp.isdtype(tgt.dtype, "integral") or xp.isdtype(tgt.dtype, "real floating")):
        raise TypeError(f"target must hold integer class indices or floating probabilities; got dtype {tgt.dtype}")
    by_index = xp.isdtype(tgt.dtype, "integral")
    if by_index:
        _validate.index_target(
            xp, tgt, batch, f"the logits' shape without axis {ax}, {batch}", f"logits shape {tuple(x.shape)}"
        )
        valid = _validate.kept(xp, tgt, ignore)
        bad_label = xp.logical_and(valid, xp.logical_or(tgt < 0, tgt >= n_classes))
    elif tuple(tgt.shape) != tuple(x.shape):
        raise ValueError(
            f"target (probabilities) must have the logits' shape {tuple(x.shape)}; got shape {tuple(tgt.shape)}"
        )
    w = None if weight is None else _validate.class_weight(xp, x, weight, n_classes, z.dtype)
    if by_index:
        _validate.labels(xp, tgt, n_classes, ignore, f"axis {ax}")
    else:
        if ignore != -100:
            raise ValueError(
                f"ignore_index={ignore} has no meaning for probability targets (as in torch); leave it at -100"
            )
        t = to_last(xp, cast(xp, to_compute(xp, tgt, "target")[0], z.dtype), ax)
        _validate.probabilities(xp, t, " (in the target's own layout, class axis last)")

    used = (("weight",) if w is not None else ()) + (("label_smoothing",) if eps > 0 else ())
    used += (("z_loss",) if lam > 0 else ()) + (("softcap",) if cap is not None else ())
    engine = _backend.choose("cross_entropy", z, backend, options=used if by_index else (*used, "probabilities"))
    if n_classes > 0 and engine != "reference":  # everything is validated: the engine's turn
        done = _backend.run_cross_entropy(engine, z, tgt if by_index else t, w, ignore, eps, red, lam, cap, want_grad)
        if done is not None:
            k_loss, k_grad = done
            k_grad = None if k_grad is None else cast(xp, from_last(xp, k_grad, ax), out_dtype)
            return as_array(xp, cast(xp, k_loss, out_dtype)), k_grad

    st = top = None
    if n_classes > 0:
        if cap is not None:
            z, top, dcap = _engine.softcap_shifted(xp, z, cap)
        st = _engine.stats(xp, z)
        top = st.m if top is None else top
    zero = xp.zeros(batch, dtype=z.dtype, device=dev)

    if by_index:
        valid_f = cast(xp, valid, z.dtype)
        if st is None:  # no classes: every row must be ignored (checked above)
            return _reduce_empty(xp, x, zero, red, out_dtype, want_grad)
        y = xp.where(valid, tgt, xp.zeros_like(tgt))
        onehot = xp.arange(n_classes, device=dev) == xp.expand_dims(y, axis=-1)
        log_norm = xp.squeeze(st.log_norm, axis=-1)
        d_y = xp.sum(xp.where(onehot, st.d, 0.0), axis=-1)
        w_y = valid_f if w is None else xp.where(valid, xp.sum(xp.where(onehot, w, 0.0), axis=-1), zero)
        coef_y = (1.0 - eps) * w_y
        row = xp.where(coef_y == 0, zero, coef_y * (log_norm - d_y))
        w_all = xp.ones((n_classes,), dtype=z.dtype, device=dev) if w is None else w
        if eps > 0:
            per_class = xp.where(w_all == 0, 0.0, cast(xp, w_all, acc) * _gap(xp, z, st, acc))
            smooth = cast(xp, (eps / n_classes) * xp.sum(per_class, axis=-1), z.dtype)  # scaled before the cast
            row = row + xp.where(valid, smooth, zero)
        denom = xp.sum(cast(xp, w_y, acc))
        n_rows = xp.sum(cast(xp, valid_f, acc))
    else:
        valid = None
        if st is None:
            return _reduce_empty(xp, x, zero, red, out_dtype, want_grad)
        q = t * (1.0 - eps) + eps / n_classes if eps > 0 else t
        qw = q if w is None else q * w
        terms = xp.where(qw == 0, 0.0, cast(xp, qw, acc) * _gap(xp, z, st, acc))
        row = cast(xp, xp.sum(cast(xp, terms, acc), axis=-1), z.dtype)
        n_rows = xp.asarray(float(math.prod(batch)), dtype=acc, device=dev)
        denom = n_rows

    bad = xp.squeeze(st.bad, axis=-1)
    if valid is not None:
        # a label outside [0, C) that could not be checked (a JAX tracer under jit) makes its row nan: never the
        # plausible loss of another class
        bad = xp.logical_or(xp.logical_and(bad, valid), bad_label)
    row = xp.where(bad, _NAN, row)
    lse = xp.squeeze(top + st.log_norm, axis=-1)
    z_row = zero
    if lam > 0:
        z_row = lam * lse * lse
        if valid is not None:
            z_row = xp.where(valid, z_row, zero)

    if red == "mean":
        # divide (never multiply by a reciprocal, which overflows for a subnormal total weight); a zero
        # denominator means nothing to average: 0, by our policy
        ce_div = xp.where(denom > 0, denom, 1.0)
        z_div = xp.where(n_rows > 0, n_rows, 1.0)
        loss = xp.where(denom > 0, xp.sum(cast(xp, row, acc)) / ce_div, 0.0) + xp.where(
            n_rows > 0, xp.sum(cast(xp, z_row, acc)) / z_div, 0.0
        )
        ce_div, z_div = cast(xp, ce_div, z.dtype), cast(xp, z_div, z.dtype)
        ce_live, z_live = denom > 0, n_rows > 0
    else:
        ce_div = z_div = xp.asarray(1.0, dtype=z.dtype, device=dev)
        ce_live = z_live = xp.asarray(True, device=dev)
        loss = xp.sum(cast(xp, row, acc)) + xp.sum(cast(xp, z_row, acc)) if red == "sum" else row + z_row
    loss = as_array(xp, cast(xp, loss, out_dtype))
    if not want_grad:
        return loss, None

    p = st.p
    if by_index:
        smooth = (eps / n_classes) * xp.expand_dims(valid_f, axis=-1)
        a = xp.expand_dims(coef_y, axis=-1) + smooth * xp.sum(w_all)
        g = p * a - xp.where(onehot, xp.expand_dims(coef_y, axis=-1), 0.0) - smooth * w_all
    else:
        g = p * xp.sum(qw, axis=-1, keepdims=True) - qw
    g = xp.where(ce_live, g / ce_div, 0.0)
    if lam > 0:
        lse_safe = xp.where(xp.isfinite(lse), lse, zero)
        g = g + xp.where(z_live, ((2.0 * lam) * xp.expand_dims(lse_safe, axis=-1) * p) / z_div, 0.0)
    if cap is not None:
        g = g * dcap
    if valid is not None:  # ignored rows are never read, even when they hold nan
        g = xp.where(xp.expand_dims(valid, axis=-1), g, 0.0)
    g = xp.where(xp.expand_dims(bad, axis=-1), _NAN, g)
    return loss, cast(xp, from_last(xp, g, ax), out_dtype)


def _gap(xp: Any, z: Array, st: Any, acc: Any) -> Array:
    """``lse - z_c`` relative to the row maximum, ``log_norm - (z_c - m)``, in the accumulator dtype.

    In float32, ``z_c - m`` overflows for logits of opposite signs near 1e38 where the (smoothing or probability)
    loss they enter is finite: formed in float64 it keeps its value.
    """
    m = xp.where(xp.isfinite(st.m), st.m, 0.0)
    return cast(xp, st.log_norm, acc) - (cast(xp, z, acc) - cast(xp, m, acc))


def _reduce_empty(
    xp: Any, x: Array, zero: Array, red: str, out_dtype: Any, want_grad: bool
) -> tuple[Array, Array | None]:
    """Loss of logits with zero classes (every row was ignored, or there are no rows)."""
    loss = zero if red == "none" else xp.sum(zero)
    grad = xp.zeros(tuple(x.shape), dtype=out_dtype, device=array_api_compat.device(x)) if want_grad else None
    return as_array(xp, cast(xp, loss, out_dtype)), grad


def cross_entropy(
    logits: Array,
    target: Array,
    /,
    *,
    axis: int = -1,
    weight: Array | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    z_loss: float = 0.0,
    softcap: float | None = None,
    backend: str | None = None,
) -> Array:
    r"""Cross-entropy between a target and the softmax of ``logits``, computed from the logits.

    .. math:: \ell = -\sum_c q_c \log \operatorname{softmax}(z)_c = \operatorname{lse}(z) - z_y
              \quad\text{(one-hot } q\text{)}

    See the module notes for every option's formula and denominators; they follow
    ``torch.nn.functional.cross_entropy`` except for the special values below.

    Parameters
    ----------
    logits : array_like
        Real logits; ``axis`` holds the ``C`` classes. float16/bfloat16 are computed in float32.
    target : array_like
        Either integer class indices with the logits' shape without ``axis`` (values in ``[0, C)`` or
        ``ignore_index``), or floating class probabilities with the logits' shape (finite, ``>= 0``; rows
        need not sum to one, as in torch).
    axis : int
        The class axis (torch's layout ``(N, C, d1, ...)`` is ``axis=1``).
    weight : array_like, optional
        Per-class weights, shape ``(C,)``, finite and ``>= 0``.
    ignore_index : int
        Class-index targets equal to it are skipped entirely. With probability targets it must stay at its
        default (torch raises likewise).
    label_smoothing : float
        :math:`\varepsilon \in [0, 1]`: the target becomes :math:`(1-\varepsilon)\,y + \varepsilon/C`.
    reduction : {"mean", "sum", "none"}
        ``none`` returns one loss per row (shape of the logits without ``axis``).
    z_loss : float
        :math:`\lambda_z \ge 0`: adds :math:`\lambda_z \operatorname{lse}(z)^2` per row not ignored.
    softcap : float, optional
        :math:`c > 0`, within float32's normal range (about 1.2e-38 to 3.4e38): the logits become
        :math:`c \tanh(z/c)` first.
    backend : {"auto", "reference", "numpy", "numba", "triton"}, optional
        The engine for this call (see :func:`softmaxkit.backend`); the default follows
        ``with softmaxkit.backend(...)`` and ``SOFTMAXKIT_BACKEND``, else ``auto``. The numba and Triton kernels
        implement every option; ``numpy`` (small arrays) only class indices without weight, smoothing, z-loss
        or softcap. A named engine that cannot run the call raises ``ValueError`` saying why.

    Returns
    -------
    array
        0-d for ``mean``/``sum``, else the per-row losses; the logits' array type and (floating) dtype.

    Raises
    ------
    TypeError
        ``target`` boolean; ``logits`` boolean or complex; a non-numeric option.
    ValueError
        A class index outside ``[0, C)`` (the first one and its position are named); shapes that do not
        match (both are named); an unknown ``reduction``; ``label_smoothing`` outside ``[0, 1]``; negative,
        nan or infinite ``weight``; negative or non-finite target probabilities; ``z_loss < 0``; ``softcap``
        not a number in float32's normal range; an unknown ``backend``. Under ``jax.jit`` the values of
        ``target`` and ``weight`` are unknown and not checked: an out-of-range label gives that row ``nan``
        (never another class's loss), an infinite weight an infinite or nan loss.
    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> z = np.array([[5.0, 2.0, -1.0, 3.0]])   # dog, cat, baby, tiger
    >>> print(round(float(cross_entropy(z, np.array([0]))), 4))  # -log 0.842
    0.1719
    >>> print(float(cross_entropy(z, np.array([-100]))))  # every label ignored: 0, not nan
    0.0
    """
    loss, _ = _cross_entropy(
        logits,
        target,
        axis=axis,
        weight=weight,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        reduction=reduction,
        z_loss=z_loss,
        softcap=softcap,
        want_grad=False,
        backend=backend,
    )
    return loss


def cross_entropy_value_and_grad(
    logits: Array,
    target: Array,
    /,
    *,
    axis: int = -1,
    weight: Array | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    z_loss: float = 0.0,
    softcap: float | None = None,
    backend: str | None = None,
) -> tuple[Array, Array]:
    r""":func:`cross_entropy` and its gradient with respect to ``logits``, in closed form (no autodiff).

    .. math:: \frac{\partial \ell}{\partial z} = \bigl(p \textstyle\sum_c w_c q_c - w \odot q
              + 2 \lambda_z \operatorname{lse}(z)\, p\bigr) \odot \bigl(1 - \tanh^2(z/c)\bigr) / D

    with :math:`p = \operatorname{softmax}(z)`, :math:`q` the (smoothed) target, the softcap factor only when
    ``softcap`` is set, and :math:`D` the ``mean`` denominator (1 otherwise). For a one-hot target and no
    options this is the famous :math:`p - y`.

    Parameters
    ----------
    logits, target, axis, weight, ignore_index, label_smoothing, reduction, z_loss, softcap, backend
        As for :func:`cross_entropy`.

    Returns
    -------
    loss : array
        Exactly :func:`cross_entropy`'s value.
    grad : array
        :math:`\partial\, \text{loss} / \partial\, \text{logits}`, the logits' shape and dtype. With
        ``reduction="none"`` it is the gradient of the summed losses, that is each row's own gradient.

    Raises
    ------
    TypeError, ValueError
        As :func:`cross_entropy`.
    {special_values}
    Examples
    --------
    >>> import numpy as np
    >>> loss, grad = cross_entropy_value_and_grad(np.array([[0.0, 0.0]]), np.array([1]))
    >>> print(round(float(loss), 6), grad)  # log 2, and p - y
    0.693147 [[ 0.5 -0.5]]
    """
    loss, grad = _cross_entropy(
        logits,
        target,
        axis=axis,
        weight=weight,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        reduction=reduction,
        z_loss=z_loss,
        softcap=softcap,
        want_grad=True,
        backend=backend,
    )
    return loss, grad


for _f in (cross_entropy, cross_entropy_value_and_grad):
    _doc.special_values(_SPECIAL_VALUES)(_f)

"""The ``numpy`` engine: the reference's formulas in a few direct NumPy calls, for float32/float64 ndarrays.

The generic code pays for its generality on every call (array-API namespace look-ups, ``where`` masks built for
every row, argmax one-hots); for a 1 x 10 softmax that is nearly all of its time. These functions take what the
public functions have prepared (compute dtype float32/float64, class axis last, masked entries already ``-inf``,
a non-empty class axis) and do only the arithmetic, with the same special values:

* the row maximum ``m`` is subtracted first; when every row's maximum is finite (the usual case) nothing else is
  checked; otherwise the rows whose maximum is ``-inf`` (every entry masked) get ``rest = 0`` (softmax 0,
  log-softmax and lse ``-inf``) and rows holding ``nan`` or ``+inf`` get ``nan`` (lse: ``+inf``, exact);
* ``rest``, the sum of the exponentials other than one maximum's own term (exactly 1), is summed without that
  term (ties at the maximum add 1 each), so that ``log1p(rest)`` keeps its relative accuracy for a dominant
  class (Blanchard, Higham & Higham 2021): ``log_softmax([40, 0, 0])[0] = -8.4967e-18``, not 0.

Class-index cross-entropy without class weights, smoothing, z-loss or softcap is here too (its other options
take the reference or the kernels: :data:`softmaxkit._backend._LACKS` says so to the dispatcher).
"""

from __future__ import annotations

import numpy as np

_INF = float("inf")


def _shift(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(z - m, m, finite)`` with ``m`` the row maximum and ``finite`` whether every row's maximum is finite.

    When one is not, the shift uses 0 for those rows (their results are patched by the callers) and NumPy's
    warnings must be silenced by the caller.
    """
    m = z.max(axis=-1, keepdims=True)
    finite = np.isfinite(m)
    if np.count_nonzero(finite) == finite.size:  # (count_nonzero: cheaper than .all() on a few elements)
        return z - m, m, True
    return z - np.where(finite, m, 0.0), m, False


def _rest(d: np.ndarray, e: np.ndarray, finite: bool = True) -> np.ndarray:
    """The sum of ``e = exp(d)`` over the entries of a row but one maximum (``d == 0``), keepdims.

    ``finite`` says every row's maximum is finite, so that every row holds at least one ``d == 0``; then one
    count over the whole array tells whether some row has ties. Otherwise a fully masked row (no ``d == 0``) can
    hide a tie in another row from that count, so the ties are counted row by row.
    """
    below = d < 0
    rest: np.ndarray = np.add.reduce(e, axis=-1, keepdims=True, where=below)
    if not finite or below.size - np.count_nonzero(below) != rest.size:  # ties at the maximum add 1 each
        rest += np.add.reduce(~below, axis=-1, keepdims=True, dtype=e.dtype) - 1
    return rest


def softmax(z: np.ndarray, temperature: float, log: bool) -> np.ndarray:
    """Softmax (or log-softmax) of ``z`` along its last axis."""
    d, m, finite = _shift(z)
    if finite and temperature == 1.0:  # the usual case: nothing can overflow or be invalid
        e: np.ndarray = np.exp(d)
        if log:
            d -= np.log1p(_rest(d, e))
            return d
        e /= e.sum(axis=-1, keepdims=True)
        return e
    with np.errstate(all="ignore"):  # (z - m) / T may overflow to -inf for a tiny T: its exp is 0, as it must be
        if temperature != 1.0:
            d /= temperature
        e = np.exp(d)
        rest = _rest(d, e) if finite else np.where(m == -_INF, 0.0, _rest(d, e, False))
        out: np.ndarray = d - np.log1p(rest) if log else e / (1.0 + rest)
        return out if finite else np.where(np.isnan(m) | (m == _INF), np.nan, out)


def logsumexp(z: np.ndarray) -> np.ndarray:
    """Log-sum-exp of ``z`` along its last axis, the axis kept (length 1)."""
    d, m, finite = _shift(z)
    if finite:
        m += np.log1p(_rest(d, np.exp(d)))
        return m
    with np.errstate(all="ignore"):
        rest = np.where(m == -_INF, 0.0, _rest(d, np.exp(d), False))
        out: np.ndarray = np.where(np.isfinite(m), m + np.log1p(rest), m)  # -inf, +inf and nan: their own lse
        return out


def cross_entropy(
    z: np.ndarray, target: np.ndarray, valid: np.ndarray | None, reduction: str, want_grad: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Class-index cross-entropy (and its gradient) of ``z`` (class axis last) against ``target`` (its batch
    shape, labels already checked); ``valid`` marks the rows not ignored (None: all of them).

    Ignored rows are never read: their loss and gradient are 0 even when they hold ``nan``.
    """
    k = z.shape[-1]
    x = z.reshape(-1, k)
    y = target.reshape(-1)
    keep = None if valid is None else valid.reshape(-1)
    if keep is not None:
        x = np.where(keep[:, None], x, 0.0)  # an ignored row holding nan must not reach a sum
        y = np.where(keep, y, 0)
    d, m, finite = _shift(x)
    if finite:
        return _cross_entropy(d, y, keep, None, target.shape, reduction, want_grad)
    with np.errstate(all="ignore"):  # rows holding inf or nan: inf - inf and inf / inf, made nan on purpose
        return _cross_entropy(d, y, keep, m, target.shape, reduction, want_grad)


def _cross_entropy(
    d: np.ndarray,
    y: np.ndarray,
    keep: np.ndarray | None,
    m: np.ndarray | None,
    batch: tuple[int, ...],
    reduction: str,
    want_grad: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    n, k = d.shape
    rows = np.arange(n)
    e = np.exp(d)
    if m is None:
        rest = _rest(d, e)
        bad = None
    else:
        rest = np.where(m == -_INF, 0.0, _rest(d, e, False))
        bad = (np.isnan(m) | (m == _INF))[:, 0]
    loss = np.log1p(rest)[:, 0] - d[rows, y]
    if bad is not None:
        loss[bad] = np.nan
    if keep is not None:
        loss[~keep] = 0.0
    n_valid = n if keep is None else int(np.count_nonzero(keep))
    if reduction == "none":
        value = loss.reshape(batch)
    else:  # row losses are added up in float64
        total = loss.sum(dtype=np.float64)
        if reduction == "mean":
            total = total / n_valid if n_valid else 0.0
        value = np.asarray(total, dtype=d.dtype)
    if not want_grad:
        return value, None
    e /= 1.0 + rest  # p
    if bad is not None:
        e[bad] = np.nan
    g = e
    g[rows, y] -= 1.0
    if keep is not None:
        g[~keep] = 0.0
    if reduction == "mean":
        if n_valid:
            g /= n_valid
        else:
            g[...] = 0.0
    return value, g.reshape(*batch, k)

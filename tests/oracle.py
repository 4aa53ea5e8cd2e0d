"""An mpmath oracle for softmax, log-softmax, log-sum-exp and cross-entropy, at 60 significant digits.

The inputs are float arrays whose values are already rounded to the dtype under test; the oracle reads each
entry's *exact* value (``float(v)`` is exact for float16/bfloat16/float32/float64 values) and computes from
those in mpmath, so the only error left in a comparison is the error of the code under test. Rows run along
the last axis and follow softmaxkit's special-value policy for ``-inf`` (masked) entries: probability 0,
log-probability ``-inf``, a fully masked row has lse ``-inf``; under a softcap a ``-inf`` logit stays
``-inf``.

A row is evaluated on its *distinct* values with their multiplicities (``np.unique``), so that
``lse = M + log(sum_k count_k * exp(v_k - M))`` is exact and cheap even for a row of 10^6 entries built from a
small pool of values.

Results come back as :class:`Exact`: the value rounded to float64 (``hi``) plus the float64 rounding of the
remainder (``lo``), about 106 bits, which is all a float64 comparison needs. :meth:`Exact.error` measures
``|approx - value|`` from that pair without rounding the oracle first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mpmath
import numpy as np

DPS = 60  # decimal digits of every oracle computation (>= 50 asked for; 60 leaves room for cancellation)

_NEG_INF = mpmath.mpf("-inf")


def _mp(v: float) -> mpmath.mpf:
    """The exact value of one float entry (any binary float dtype fits in a float64 exactly)."""
    return mpmath.mpf(float(v))


def _split(values: Sequence[mpmath.mpf]) -> tuple[np.ndarray, np.ndarray]:
    hi = np.array([float(v) for v in values], dtype=np.float64)
    lo = [0.0 if mpmath.isinf(v) else float(v - mpmath.mpf(h)) for v, h in zip(values, hi, strict=True)]
    return hi, np.array(lo, dtype=np.float64)


@dataclass(frozen=True)
class Exact:
    """Oracle values as a float64 pair: value = hi + lo to ~106 bits (``lo`` = 0 where ``hi`` is infinite)."""

    hi: np.ndarray
    lo: np.ndarray

    @classmethod
    def of(cls, values: Sequence[mpmath.mpf], shape: tuple[int, ...]) -> Exact:
        hi, lo = _split(values)
        return cls(hi.reshape(shape), lo.reshape(shape))

    def __getitem__(self, index: object) -> Exact:
        return Exact(self.hi[index], self.lo[index])

    def error(self, approx: np.ndarray) -> np.ndarray:
        """``|approx - value|`` in float64; 0 where both are the same infinity, inf where ``approx`` is nan.

        ``approx - hi`` is exact when ``approx`` is within a factor 2 of ``hi`` (Sterbenz), so the error
        itself is known to about float64 precision.
        """
        a = np.asarray(approx, dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            err = np.abs((a - self.hi) - self.lo)
        err = np.where(np.isinf(self.hi), np.where(a == self.hi, 0.0, np.inf), err)
        return np.where(np.isnan(err), np.inf, err)


def _rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(-1, x.shape[-1])


def _lse(vals: Sequence[mpmath.mpf], counts: Sequence[int]) -> mpmath.mpf:
    """``log sum_k count_k e^{v_k}``; ``-inf`` when every value is ``-inf``."""
    top = max(vals)
    if top == _NEG_INF:
        return _NEG_INF
    return top + mpmath.log(mpmath.fsum(c * mpmath.exp(v - top) for v, c in zip(vals, counts, strict=True)))


# ------------------------------------------------------------------------------- softmax, log-softmax, lse
@dataclass(frozen=True)
class Family:
    """lse (one per row), softmax and log-softmax (one per entry) of the same input."""

    lse: Exact
    softmax: Exact
    log_softmax: Exact


def softmax_family(x: np.ndarray) -> Family:
    """Exact lse, softmax and log-softmax of ``x`` along its last axis."""
    rows = _rows(x)
    lse_hi, lse_lo = np.empty(len(rows)), np.empty(len(rows))
    sm_hi, sm_lo = np.empty(rows.shape), np.empty(rows.shape)
    ls_hi, ls_lo = np.empty(rows.shape), np.empty(rows.shape)
    with mpmath.workdps(DPS):
        for r, row in enumerate(rows):
            distinct, where, counts = np.unique(row, return_inverse=True, return_counts=True)
            vals = [_mp(v) for v in distinct]
            lse = _lse(vals, [int(c) for c in counts])
            (lse_hi[r],), (lse_lo[r],) = _split([lse])
            # A fully masked row: softmax 0, log-softmax -inf (softmaxkit's policy).
            logp = [_NEG_INF] * len(vals) if lse == _NEG_INF else [v - lse for v in vals]
            hi, lo = _split([mpmath.exp(lp) for lp in logp])
            sm_hi[r], sm_lo[r] = hi[where], lo[where]
            hi, lo = _split(logp)
            ls_hi[r], ls_lo[r] = hi[where], lo[where]
    shape = np.shape(x)
    return Family(
        Exact(lse_hi.reshape(shape[:-1]), lse_lo.reshape(shape[:-1])),
        Exact(sm_hi.reshape(shape), sm_lo.reshape(shape)),
        Exact(ls_hi.reshape(shape), ls_lo.reshape(shape)),
    )


@dataclass(frozen=True)
class ScaledLse:
    """``log|sum_i b_i e^{x_i}|`` per row, the sum's sign, and its condition number.

    ``kappa = sum_i |b_i| e^{x_i} / |sum_i b_i e^{x_i}|`` (1 when the b's share a sign): how much a relative
    error in the terms is magnified in the sum.
    """

    lse: Exact
    sign: np.ndarray
    kappa: np.ndarray


def logsumexp_scaled(x: np.ndarray, b: np.ndarray) -> ScaledLse:
    """Exact ``log|sum b e^x|`` and its sign along the last axis; entries with ``b == 0`` are left out."""
    rows, brows = _rows(x), _rows(np.broadcast_to(b, np.shape(x)))
    values, sign, kappa = [], np.zeros(len(rows)), np.ones(len(rows))
    with mpmath.workdps(DPS):
        for r, (row, brow) in enumerate(zip(rows, brows, strict=True)):
            keep = [(_mp(v), _mp(w)) for v, w in zip(row, brow, strict=True) if w != 0 and v != -np.inf]
            if not keep:
                values.append(_NEG_INF)
                continue
            top = max(v for v, _ in keep)
            terms = [w * mpmath.exp(v - top) for v, w in keep]
            total = mpmath.fsum(terms)
            if total == 0:
                values.append(_NEG_INF)
                continue
            values.append(top + mpmath.log(abs(total)))
            sign[r] = mpmath.sign(total)
            kappa[r] = float(mpmath.fsum(abs(t) for t in terms) / abs(total))
        lse = Exact.of(values, np.shape(x)[:-1])
    return ScaledLse(lse, sign.reshape(np.shape(x)[:-1]), kappa.reshape(np.shape(x)[:-1]))


# ------------------------------------------------------------------------------------------- cross-entropy
@dataclass(frozen=True)
class CrossEntropy:
    """Per-row loss and gradient (reduction="none"), their mean, and what the accuracy bounds are made of.

    ``p``, ``shifted`` (logit minus the row maximum), ``lse`` are those of the logits the softmax sees, that
    is after the softcap; ``cap_scale`` is ``max_k |c tanh(x_k / c)|`` per row (0 without a softcap);
    ``target_mass`` is ``sum_c q_c`` of the (smoothed) target; ``grad_uncapped`` is the gradient with respect
    to the capped logits (equal to ``grad`` without a softcap).
    """

    loss: Exact
    mean: Exact
    grad: Exact
    mean_grad: Exact
    p: np.ndarray
    shifted: np.ndarray
    lse: np.ndarray
    cap_scale: np.ndarray
    target_mass: np.ndarray
    grad_uncapped: np.ndarray


def cross_entropy(
    x: np.ndarray,
    target: np.ndarray,
    *,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
) -> CrossEntropy:
    """Exact cross-entropy of logits ``x`` (classes on the last axis, no class weights, nothing ignored).

    ``target`` holds either integer class indices (``x``'s shape without the last axis) or floating
    probabilities (``x``'s shape). With ``q`` the smoothed target ``(1 - eps) t + eps / C`` (``t`` one-hot for
    indices), ``loss = sum_c q_c (lse - z_c) + z_loss * lse^2`` and ``d loss / d z = p sum(q) - q +
    2 z_loss lse p``, times ``1 - tanh^2(x / c)`` under a softcap ``c`` (``z = c tanh(x / c)``). A term with
    ``q_c = 0`` contributes 0 even where ``z_c = -inf``.
    """
    rows = _rows(x)
    n, k = rows.shape
    target = np.asarray(target)
    by_index = target.dtype.kind in "iu"
    trows = target.reshape(-1) if by_index else _rows(target)
    losses, grads, grads_u = [], [], []
    p_all, shifted, lse_all = np.empty((n, k)), np.empty((n, k)), np.empty(n)
    cap_scale, mass = np.zeros(n), np.empty(n)
    with mpmath.workdps(DPS):
        eps, lam = _mp(label_smoothing), _mp(z_loss)
        for r, row in enumerate(rows):
            z = [_mp(v) for v in row]
            if softcap is not None:
                c = _mp(softcap)
                cap = [v if v == _NEG_INF else c * mpmath.tanh(v / c) for v in z]
                dcap = [mpmath.mpf(0) if v == _NEG_INF else mpmath.sech(v / c) ** 2 for v in z]
                z = cap
                cap_scale[r] = float(max(abs(v) for v in z if v != _NEG_INF))
            else:
                dcap = [mpmath.mpf(1)] * k
            t = [mpmath.mpf(int(i == trows[r])) for i in range(k)] if by_index else [_mp(v) for v in trows[r]]
            q = [(1 - eps) * tc + eps / k for tc in t]
            top = max(z)
            lse = _lse(z, [1] * k)
            logp = [v - lse for v in z]
            p = [mpmath.exp(lp) for lp in logp]
            ce = mpmath.fsum(-qc * lp for qc, lp in zip(q, logp, strict=True) if qc != 0)
            losses.append(ce + lam * lse**2)
            total_q = mpmath.fsum(q)
            g_u = [pc * total_q - qc + 2 * lam * lse * pc for pc, qc in zip(p, q, strict=True)]
            grads_u.extend(g_u)
            grads.extend(g * dc for g, dc in zip(g_u, dcap, strict=True))
            p_all[r] = [float(v) for v in p]
            shifted[r] = [float(v - top) for v in z]
            lse_all[r] = float(lse)
            mass[r] = float(total_q)
        mean = mpmath.fsum(losses) / n
        shape = np.shape(x)
        grad = Exact.of(grads, shape)
        mean_grad = Exact.of([g / n for g in grads], shape)
        loss = Exact.of(losses, shape[:-1])
        return CrossEntropy(
            loss=loss,
            mean=Exact.of([mean], ()),
            grad=grad,
            mean_grad=mean_grad,
            p=p_all.reshape(shape),
            shifted=shifted.reshape(shape),
            lse=lse_all.reshape(shape[:-1]),
            cap_scale=cap_scale.reshape(shape[:-1]),
            target_mass=mass.reshape(shape[:-1]),
            grad_uncapped=np.array([float(g) for g in grads_u]).reshape(shape),
        )

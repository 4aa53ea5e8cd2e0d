"""CPU kernels for NumPy float32/float64 arrays, with numba; numba is imported by the first kernel call.

The entry points the dispatcher calls, one per operation: :func:`softmax` (and log-softmax), :func:`logsumexp`,
:func:`cross_entropy`; for the α-entmax family (:mod:`._family`, loaded on its first call) :func:`sparsemax`,
:func:`entmax15`, :func:`entmax_bisect`, :func:`entmax_vjp` and :func:`entmax_loss`; :func:`available` says
whether they can run. The generic code in :mod:`softmaxkit.softmax`, :mod:`softmaxkit.cross_entropy` and
:mod:`softmaxkit.family` is the oracle: these functions compute exactly its formulas and special values, faster.
They take arrays that the public functions have already validated and prepared (compute dtype, class axis last)
and never import the public API.

Layout: the jitted kernels (:mod:`._kernels`) need C-contiguous ``(rows, classes)`` arrays. An input whose class
axis is the last and contiguous is used as it is (a view); any other layout (class axis not last, strided rows) is
copied once into that form, and results are given back in the caller's layout. Read-only inputs are read in place.

The common calls (softmax, log-softmax and lse without a temperature; class-index cross-entropy without label
smoothing, z-loss or softcap; rows of more than NARROW classes) run kernels with those options fixed
(:mod:`._plain`): the same results (up to the last bits) and a first call compiled in about a quarter of the time.
Rows of at most NARROW classes run the general kernels' short-row path on its own (``*_narrow_rows``), without the
softcap's code unless a softcap is asked for.

Runtime (:mod:`._runtime`): the threading layer (TBB, else workqueue made thread-safe; fork-safe either way), the
number of threads a call uses (from its work; small work runs on the calling thread), and the private on-disk
cache. Results do not depend on the number of threads, except the last bits of a ``mean`` or ``sum`` of
cross-entropy, whose per-piece sums are added at the end. :mod:`softmaxkit.torch` passes :func:`torch_team`
as ``team``: the common calls then run their pieces on torch's OpenMP threads (:mod:`._team`), with the same
results bit for bit.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
from typing import Any

import numpy as np

from . import _runtime

NARROW, BLOCK, STORE = 32, 2048, 1 << 21
""":mod:`._rows`'s constants (imported with numba): rows of at most NARROW classes, and rows of more than STORE
bytes when the first pass would keep their exponentials, run the general kernels; BLOCK: the online pass's."""

SMALL = 2 * _runtime.WORK_PER_THREAD
"""Calls of fewer logits run on the calling thread (:func:`._runtime.pieces`)."""

_TINY64 = float(np.finfo(np.float64).tiny)

__all__ = [
    "SMALL",
    "available",
    "cache_dir",
    "cross_entropy",
    "entmax15",
    "entmax_bisect",
    "entmax_loss",
    "entmax_vjp",
    "first_bad_label",
    "logsumexp",
    "small_cross_entropy",
    "small_softmax",
    "small_softmax_backward",
    "softmax",
    "softmax_backward",
    "sparsemax",
    "start",
    "torch_team",
]


@functools.cache
def available() -> bool:
    """True when numba can be imported (found without importing it)."""
    return importlib.util.find_spec("numba") is not None


def start() -> str:
    """Import numba and the kernels now, choosing the threading layer and the cache; return the layer's name.

    The first kernel call does this itself. Call it first where other code would start numba's threads before
    (``numba.get_num_threads()`` does): numba chooses its threading layer once, when its threads start.
    """
    _runtime.load()
    return _runtime.threading_layer()


def torch_team() -> Any:
    """torch's OpenMP threads, on which :mod:`softmaxkit.torch` runs the common kernels (the ``team`` argument of
    :func:`softmax`, :func:`logsumexp`, :func:`softmax_backward`, :func:`cross_entropy`), or None where they may
    not (:mod:`._team`: no torch, another threading backend, a forked child)."""
    _runtime.load()
    _runtime.load_extra("_backward")  # (imported by _team: loaded first, as load_extra loads)
    return _runtime.load_extra("_team").torch_team()


def cache_dir() -> str | None:
    """The directory the kernels are cached in, None when they are compiled in memory (after :func:`start`)."""
    folder = _runtime.cache_dir()
    return None if folder is None else str(folder)


def _readable(a: np.ndarray) -> np.ndarray:
    """A C-contiguous ``a`` as numba's ordinary (writeable) array type, without a copy; only ever read.

    numba compiles a separate specialisation for read-only arrays (JAX's NumPy views, broadcasts, memory maps),
    each costing the full compile time of a kernel; the kernels never write to their inputs, so a read-only
    input is handed over as a writeable alias of the same memory (kept alive by the caller's reference).
    """
    if a.flags.writeable or a.size == 0:
        return a
    memory = memoryview((ctypes.c_char * a.nbytes).from_address(a.ctypes.data)).cast("B")
    return np.frombuffer(memory, dtype=a.dtype).reshape(a.shape)


def _as_rows(z: np.ndarray) -> np.ndarray:
    """``z`` (class axis last) as C-contiguous ``(rows, classes)``: a view when it already is, else one copy."""
    return _readable(np.ascontiguousarray(z).reshape(-1, z.shape[-1]))


def _scratch(x: np.ndarray, pieces: int) -> np.ndarray:
    """The per-piece scratch of the kernels of :mod:`._plain`: one row of block maxima per piece of rows."""
    return np.empty((pieces, -(-x.shape[1] // BLOCK)), dtype=x.dtype)


def _common(x: np.ndarray, t: Any, log: bool) -> bool:
    """Whether softmax (``log``: log-softmax) of the rows ``x`` at temperature ``t`` is a common call (._plain)."""
    k = x.shape[1]
    return bool(t == 1 and k > NARROW and (log or k * x.itemsize <= STORE))


def _softmax_serial(kernels: Any, x: np.ndarray, out: np.ndarray, t: Any, log: bool) -> None:
    """:func:`softmax` of the rows ``x`` into ``out`` on the calling thread."""
    if _common(x, t, log):
        (kernels.plain.log_softmax_rows if log else kernels.plain.softmax_rows)(x, out, _scratch(x, 1))
    elif x.shape[1] <= NARROW:  # short rows: only their path is compiled
        kernels.softmax_narrow_rows(x, out, t, log)
    else:
        kernels.softmax_rows(x, out, t, log)


def softmax(z: np.ndarray, temperature: float, log: bool, team: Any = None) -> np.ndarray:
    """Softmax (or log-softmax) of ``z`` along its last axis; ``z`` is float32/float64, non-empty last axis.

    ``team``: :func:`torch_team`'s, to run the common call's pieces on torch's threads."""
    kernels = _runtime.load()
    x = _as_rows(z)
    out = np.empty(x.shape, dtype=x.dtype)
    t = x.dtype.type(temperature)
    common = _common(x, t, log)
    pieces = 1 if team is None else team.pieces(x.size)
    if pieces > 1 and common:
        team.run("log_softmax" if log else "softmax", x, pieces, out=out, mb=_scratch(x, pieces))
        return out.reshape(z.shape)
    with _runtime.threads(x.size) as pieces:
        if pieces == 1:
            _softmax_serial(kernels, x, out, t, log)
        elif common:
            plain = kernels.plain
            (plain.log_softmax_rows_parallel if log else plain.softmax_rows_parallel)(x, out, _scratch(x, pieces))
        elif x.shape[1] <= NARROW:
            kernels.softmax_narrow_rows_parallel(x, out, t, log, pieces)
        else:
            kernels.softmax_rows_parallel(x, out, t, log, pieces)
    return out.reshape(z.shape)


def small_softmax(z: np.ndarray, log: bool, team: Any = None) -> np.ndarray:
    """:func:`softmax` without a temperature of a C-contiguous ``z`` of fewer than :data:`SMALL` entries, on the
    calling thread (on ``team``'s threads where it gives the call more than one), with no other check or choice
    (the torch front's small calls)."""
    if team is not None and team.pieces(z.size) > 1:
        return softmax(z, 1.0, log, team)
    x = z.reshape(-1, z.shape[-1])
    out = np.empty(x.shape, dtype=x.dtype)
    _softmax_serial(_runtime.load(), x, out, x.dtype.type(1.0), log)
    return out.reshape(z.shape)


def logsumexp(z: np.ndarray, team: Any = None) -> np.ndarray:
    """``lse`` of ``z`` along its last axis, with that axis kept (length 1), in ``z``'s dtype (``team``: as for
    :func:`softmax`)."""
    kernels = _runtime.load()
    x = _as_rows(z)
    out = np.empty(x.shape[0], dtype=np.float64)
    pieces = 1 if team is None else team.pieces(x.size)
    if pieces > 1 and x.shape[1] > NARROW:
        team.run("logsumexp", x, pieces, out=out, mb=_scratch(x, pieces))
        return out.astype(z.dtype, copy=False).reshape(*z.shape[:-1], 1)
    with _runtime.threads(x.size) as pieces:
        if x.shape[1] > NARROW:  # the common call (._plain)
            run = kernels.plain.logsumexp_rows_parallel if pieces > 1 else kernels.plain.logsumexp_rows
            run(x, out, _scratch(x, pieces))
        elif pieces > 1:
            kernels.logsumexp_narrow_rows_parallel(x, out, pieces)
        else:
            kernels.logsumexp_narrow_rows(x, out)
    return out.astype(z.dtype, copy=False).reshape(*z.shape[:-1], 1)


def cross_entropy(
    z: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None,
    ignore_index: int,
    label_smoothing: float,
    reduction: str,
    z_loss: float,
    softcap: float | None,
    want_grad: bool,
    team: Any = None,
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Loss (and gradient) of :func:`softmaxkit.cross_entropy` for validated NumPy inputs, class axis last.

    ``target`` holds integer class indices (the batch shape) or probabilities (``z``'s shape and dtype);
    ``weight`` is in ``z``'s dtype. Returns ``(loss, grad)`` in ``z``'s dtype and layout, or None for the one
    case left to the reference: float64 logits whose ``mean`` denominator (the total weight) is subnormal, so
    that its reciprocal, which the kernel multiplies by, would overflow.
    """
    kernels = _runtime.load()
    x = _as_rows(z)
    pieces = 1 if team is None else team.pieces(x.size)
    plain = target.dtype.kind in "iu" and label_smoothing == 0 and z_loss == 0 and softcap is None
    if pieces > 1 and plain and _team_takes_ce(x, want_grad):  # the common call, on the team
        return _cross_entropy(kernels, x, z.shape, target, weight, ignore_index, label_smoothing, reduction,
                                  z_loss, softcap, want_grad, pieces, team)  # fmt: skip
    with _runtime.threads(x.size) as pieces:
        return _cross_entropy(kernels, x, z.shape, target, weight, ignore_index, label_smoothing, reduction, z_loss,
                              softcap, want_grad, pieces)  # fmt: skip


def small_cross_entropy(z: np.ndarray, target: np.ndarray, mean: bool, want_grad: bool, team: Any = None) -> Any:
    """:func:`cross_entropy` of 2-D C-contiguous logits and int64 class indices with ``ignore_index`` -100 and
    every other option at its default but the reduction (``mean``, else ``sum``), on the calling thread, the
    labels checked on the way: ``(loss, grad)``, or None when a label is out of range (for the caller's check
    to name). For small calls: one kernel call (:func:`._plain.small_cross_entropy`); where ``team`` gives the
    call more than one thread, the labels are checked first and the team's task computes (:func:`_ce_on_team`)."""
    kernels = _runtime.load()
    k = z.shape[1]
    grad = np.empty((z.shape[0] if want_grad else 0, k), dtype=z.dtype)
    pieces = 1 if team is None else team.pieces(z.size)
    if pieces > 1 and _team_takes_ce(z, want_grad):  # the common call, on the team
        y = _readable(target)
        bad, kept, inv = _runtime.load_extra("_backward").label_scale(y, k, -100, mean)
        if bad >= 0:
            return None
        sums = np.zeros((pieces, 4))
        _ce_on_team(team, z, pieces, y, np.ones(k, dtype=z.dtype), -100, inv, want_grad, grad, sums[:0, 0], sums)
        ce = float(np.sum(sums[:, :2]))  # (as _cross_entropy adds them: the same loss)
        loss = (ce / kept if kept > 0 else 0.0) if mean else ce
        return np.asarray(loss, dtype=z.dtype), (grad if want_grad else None)
    run = kernels.small_cross_entropy_narrow if k <= NARROW else kernels.plain.small_cross_entropy
    loss, bad = run(_readable(z), _readable(target), -100, grad, mean)
    if bad >= 0:
        return None
    return np.asarray(loss, dtype=z.dtype), (grad if want_grad else None)


def _cross_entropy(
    kernels: Any,
    x: np.ndarray,
    shape: tuple[int, ...],
    target: np.ndarray,
    weight: np.ndarray | None,
    ignore_index: int,
    label_smoothing: float,
    reduction: str,
    z_loss: float,
    softcap: float | None,
    want_grad: bool,
    pieces: int,
    team: Any = None,
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """:func:`cross_entropy` on ``x`` (rows of the logits, whose shape is ``shape``), with ``pieces`` threads
    (``team``'s, for the common call only, else numba's)."""
    n, k = x.shape
    dt = x.dtype
    w = np.ones(k, dtype=dt) if weight is None else _readable(np.ascontiguousarray(weight, dtype=dt))
    by_index = target.dtype.kind in "iu"
    if by_index:
        y = _readable(np.ascontiguousarray(target.reshape(-1), dtype=np.int64))
        if not -(2**63) <= ignore_index < 2**63:  # no int64 label equals it: nothing is ignored
            ignore_index = -1
        q = np.zeros((1, 1), dtype=dt)
        kind = 1 if label_smoothing > 0 else 0
        totals = np.zeros((pieces, 3))
        if team is not None:  # the same pieces on this thread (microseconds): no numba thread is woken
            for ch in range(pieces):
                r0, r1 = ch * y.size // pieces, (ch + 1) * y.size // pieces
                kernels.label_totals(y[r0:r1], w, ignore_index, totals[ch : ch + 1])
        elif pieces > 1:
            kernels.label_totals_parallel(y, w, ignore_index, totals)
        else:
            kernels.label_totals(y, w, ignore_index, totals)
        if pieces == 1:  # (np.sum's call costs more than a small kernel: the same two additions in Python)
            t0, t1, t2 = totals[0].tolist()
            denom, n_rows = t0 + t1, t2
        else:
            denom, n_rows = float(np.sum(totals[:, :2])), float(np.sum(totals[:, 2]))
    else:
        y = np.zeros(1, dtype=np.int64)
        q = _as_rows(target)
        kind = 2
        denom = n_rows = float(n)
    if reduction == "mean":
        if dt == np.float64 and 0.0 < denom < _TINY64:
            return None
        inv_ce = 1.0 / denom if denom > 0 else 0.0
        inv_z = 1.0 / n_rows if n_rows > 0 else 0.0
    else:
        inv_ce = inv_z = 1.0
    grad = np.empty((n if want_grad else 0, k), dtype=dt)
    rows = np.empty(n if reduction == "none" else 0, dtype=np.float64)
    sums = np.zeros((pieces, 4))
    plain = kind == 0 and softcap is None and z_loss == 0 and k > NARROW  # the common call (._plain)
    if team is not None:
        _ce_on_team(team, x, pieces, y, w, ignore_index, inv_ce, want_grad, grad, rows, sums)
    elif plain and want_grad and k * x.itemsize <= STORE:
        run = kernels.plain.cross_entropy_rows_parallel if pieces > 1 else kernels.plain.cross_entropy_rows
        run(x, y, ignore_index, w, inv_ce, grad, rows, _scratch(x, pieces), sums)
    elif plain and not want_grad:
        run = kernels.plain.cross_entropy_loss_rows_parallel if pieces > 1 else kernels.plain.cross_entropy_loss_rows
        run(x, y, ignore_index, w, rows, _scratch(x, pieces), sums)
    else:
        cap = dt.type(1.0 if softcap is None else softcap)
        if k <= NARROW and softcap is None:  # short rows without a softcap: only their path is compiled
            run = kernels.cross_entropy_narrow_rows_parallel if pieces > 1 else kernels.cross_entropy_narrow_rows
        elif softcap is None:  # no softcap code compiled
            run = kernels.cross_entropy_nocap_rows_parallel if pieces > 1 else kernels.cross_entropy_nocap_rows
        else:
            run = kernels.cross_entropy_rows_parallel if pieces > 1 else kernels.cross_entropy_rows
        run(x, y, ignore_index, q, w, kind, label_smoothing, z_loss, cap, softcap is not None, inv_ce, inv_z, grad,
            rows, sums)  # fmt: skip
    if reduction == "none":
        loss = rows.astype(dt).reshape(shape[:-1])
    else:
        if pieces == 1:
            s0, s1, s2, s3 = sums[0].tolist()
            ce, zl = s0 + s1, s2 + s3
        else:
            ce, zl = float(np.sum(sums[:, :2])), float(np.sum(sums[:, 2:]))
        if reduction == "mean":
            ce = ce / denom if denom > 0 else 0.0
            zl = zl / n_rows if n_rows > 0 else 0.0
        loss = np.asarray(ce + zl, dtype=dt)
    return loss, (grad.reshape(shape) if want_grad else None)


def _team_takes_ce(x: np.ndarray, want_grad: bool) -> bool:
    """Whether the team's class-index CE task runs the rows ``x``: longer than :data:`NARROW`, and with the
    gradient wanted, at most :data:`STORE` bytes (its first pass keeps the exponentials in the gradient)."""
    k = x.shape[1]
    return bool(k > NARROW and (not want_grad or k * x.itemsize <= STORE))


def _ce_on_team(
    team: Any,
    x: np.ndarray,
    pieces: int,
    y: np.ndarray,
    w: np.ndarray,
    ignore: int,
    inv: float,
    want_grad: bool,
    grad: np.ndarray,
    rows: np.ndarray,
    sums: np.ndarray,
) -> None:
    """The common class-index CE of the rows ``x`` on ``team`` in ``pieces``: the gradient into ``grad`` when
    ``want_grad``, the row losses into ``rows`` when it has ``x``'s rows, the sums of each piece into ``sums``
    (zeros, ``(pieces, 4)``)."""
    team.run("cross_entropy" if want_grad else "cross_entropy_loss", x, pieces, out=grad, mb=_scratch(x, pieces),
             y=y, w=w, rows=rows, sums=sums, ignore=ignore, inv=float(inv))  # fmt: skip


# ------------------------------------------------------------------------------------------------ the family
def _family_code(family: Any, kind: str) -> int:
    code: int = {"sparsemax": family.SPARSEMAX, "entmax15": family.ENTMAX15, "bisect": family.BISECT}[kind]
    return code


def _family_mapping(z: np.ndarray, kind: str, alpha: float, n_iter: int) -> np.ndarray:
    family = _runtime.load_extra("_family")
    x = _as_rows(z)
    out = np.empty(x.shape, dtype=x.dtype)
    code = _family_code(family, kind)
    with _runtime.threads(x.size) as pieces:
        if pieces > 1:
            family.mapping_rows_parallel(x, out, code, alpha, n_iter, pieces)
        else:
            family.mapping_rows(x, out, code, alpha, n_iter)
    return out.reshape(z.shape)


def sparsemax(z: np.ndarray) -> np.ndarray:
    """Sparsemax of ``z`` along its last axis; ``z`` is float32/float64 with a non-empty last axis."""
    return _family_mapping(z, "sparsemax", 2.0, 0)


def entmax15(z: np.ndarray) -> np.ndarray:
    """1.5-entmax of ``z`` along its last axis (exact threshold), as :func:`sparsemax`."""
    return _family_mapping(z, "entmax15", 1.5, 0)


def entmax_bisect(z: np.ndarray, alpha: float, n_iter: int) -> np.ndarray:
    """α-entmax of ``z`` along its last axis by ``n_iter`` bisection steps (``alpha >= 1``, checked by the
    caller); ``alpha == 1`` is softmax, computed as such (as the generic code does)."""
    if alpha == 1.0:
        return softmax(z, 1.0, log=False)
    return _family_mapping(z, "bisect", float(alpha), int(n_iter))


def entmax_vjp(p: np.ndarray, g: np.ndarray, alpha: float) -> np.ndarray:
    """``g^T J`` along the last axis, :math:`J` the Jacobian of α-entmax (``alpha`` 2: sparsemax, 1.5: entmax15,
    1: softmax) at its output ``p``; ``p`` and ``g`` have one shape and one dtype (float32/float64)."""
    family = _runtime.load_extra("_family")
    rows_p, rows_g = _as_rows(p), _as_rows(g)
    out = np.empty(rows_p.shape, dtype=rows_p.dtype)
    with _runtime.threads(rows_p.size) as pieces:
        if pieces > 1:
            family.vjp_rows_parallel(rows_p, rows_g, out, float(alpha), pieces)
        else:
            family.vjp_rows(rows_p, rows_g, out, float(alpha))
    return out.reshape(p.shape)


def entmax_loss(
    z: np.ndarray, y: np.ndarray, wy: np.ndarray, scale: np.ndarray, kind: str, alpha: float, n_iter: int,
    want_grad: bool,
) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
    """The Fenchel–Young loss of α-entmax (``kind``: ``"sparsemax"``, ``"entmax15"``, ``"bisect"`` with
    ``alpha > 1``) of each row of ``z`` (class axis last) for the class indices ``y`` (valid wherever ``wy > 0``):
    the unweighted per-row losses in float64 (0 where ``wy`` is 0, which are not read) and, with ``want_grad``,
    ``scale[:, None] * (p - onehot(y))`` in ``z``'s dtype and shape (zeros where ``wy`` is 0)."""
    family = _runtime.load_extra("_family")
    x = _as_rows(z)
    n = x.shape[0]
    labels = _readable(np.ascontiguousarray(y.reshape(-1), dtype=np.int64))
    w = _readable(np.ascontiguousarray(wy.reshape(-1), dtype=x.dtype))
    s = _readable(np.ascontiguousarray(scale.reshape(-1), dtype=x.dtype))
    grad = np.empty((n if want_grad else 0, x.shape[1]), dtype=x.dtype)
    rows = np.empty(n)
    args = (x, labels, w, s, _family_code(family, kind), float(alpha), int(n_iter), grad, rows)
    with _runtime.threads(x.size) as pieces:
        if pieces > 1:
            family.loss_rows_parallel(*args, pieces)
        else:
            family.loss_rows(*args)
    return rows.reshape(z.shape[:-1]), (grad.reshape(z.shape) if want_grad else None)


# ------------------------------------------------------------------------------- softmaxkit.torch's backward
def softmax_backward(out: np.ndarray, grad: np.ndarray, log: bool, team: Any = None) -> np.ndarray:
    """The gradient of softmax (``log``: log-softmax) along the last axis from its output ``out`` (float32/float64)
    and the upstream gradient ``grad`` (``out``'s shape; any strides, cast to ``out``'s dtype), in ``out``'s shape.

    Masked entries (``out`` 0, resp. ``-inf``) get 0, rows holding ``nan`` get ``nan`` (:mod:`._backward`).
    ``team``: as for :func:`softmax`."""
    kernels = _runtime.load_extra("_backward")
    y = _as_rows(out)
    g = _as_rows(np.asarray(grad, dtype=y.dtype))
    dz = np.empty(y.shape, dtype=y.dtype)
    pieces = 1 if team is None else team.pieces(y.size)
    if pieces > 1:
        team.run("log_softmax_backward" if log else "softmax_backward", y, pieces, out=dz, g=g)
        return dz.reshape(out.shape)
    with _runtime.threads(y.size) as pieces:
        if log:
            run = kernels.log_softmax_backward_rows_parallel if pieces > 1 else kernels.log_softmax_backward_rows
        else:
            run = kernels.softmax_backward_rows_parallel if pieces > 1 else kernels.softmax_backward_rows
        if pieces > 1:
            run(y, g, dz, pieces)
        else:
            run(y, g, dz)
    return dz.reshape(out.shape)


def small_softmax_backward(out: np.ndarray, grad: np.ndarray, log: bool, team: Any = None) -> np.ndarray:
    """:func:`softmax_backward` of C-contiguous ``out`` and ``grad`` of one shape and dtype, fewer than
    :data:`SMALL` entries, on the calling thread (on ``team``'s threads where it gives the call more than one),
    with no other check or choice (the torch front's small calls)."""
    if team is not None and team.pieces(out.size) > 1:
        return softmax_backward(out, grad, log, team)
    kernels = _runtime.load_extra("_backward")
    k = out.shape[-1]
    dz = np.empty(out.shape, dtype=out.dtype)
    run = kernels.log_softmax_backward_rows if log else kernels.softmax_backward_rows
    run(out.reshape(-1, k), grad.reshape(-1, k), dz.reshape(-1, k))
    return dz


def first_bad_label(target: np.ndarray, n_classes: int, ignore_index: int) -> int:
    """The flat position of the first class index of ``target`` (integers) outside ``[0, n_classes)`` that is not
    ``ignore_index``, or -1 when there is none: one pass, no temporary (the caller names the value)."""
    y = _readable(np.ascontiguousarray(target.reshape(-1), dtype=np.int64))
    if not -(2**63) <= ignore_index < 2**63:  # no int64 label equals it: -1 is out of range anyway
        ignore_index = -1
    found: int = _runtime.load_extra("_backward").first_bad_label(y, n_classes, ignore_index)
    return found

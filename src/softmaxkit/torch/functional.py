r"""``torch.autograd.Function``\ s for softmax, log_softmax, logsumexp and cross-entropy, with torch's signatures.

Drop-in replacements for ``torch.nn.functional.softmax`` / ``log_softmax`` / ``cross_entropy`` and
``torch.logsumexp``: the same arguments, the same values and gradients, except for the special values of the
foundation's policy (below), and two extra keywords of :func:`cross_entropy`, ``z_loss`` and ``softcap``.

What is saved for backward
--------------------------
* softmax and log_softmax save their output (as torch does): :math:`\partial p/\partial z` needs only
  :math:`p`, and :math:`\partial \log p / \partial z` only :math:`e^{\log p}`.
* logsumexp saves its input and output, and recomputes the softmax in backward.
* cross-entropy saves **only the per-row log-sum-exp** (two floats per row, see
  :class:`softmaxkit.torch._core.RowLse`), never the :math:`N \times C` probabilities: the backward recomputes
  :math:`p = e^{(z - m) - \text{log\_norm}}` from the logits it already references. The memory of a training
  step is then the logits plus :math:`O(N)`, instead of twice the logits.

Every backward is written in differentiable torch operations on the saved tensors, so autograd can
differentiate it again: double backward (``create_graph=True``, ``torch.autograd.gradgradcheck``, Hessian-vector
products) works for all four. When it is asked for, cross-entropy's backward recomputes the log-sum-exp by
differentiable operations instead of reading the saved one.

Special values (the deviations from torch)
------------------------------------------
==========================================  ==================================  ==========================
case                                        softmaxkit.torch                    torch
==========================================  ==================================  ==========================
softmax of a row of all ``-inf``            zeros, gradient 0                   nan
log_softmax of a row of all ``-inf``        ``-inf``, gradient 0                nan
logsumexp of a row of all ``-inf``          ``-inf``, gradient 0                ``-inf``, gradient nan
cross-entropy, ``mean``, all ignored        0, gradient 0                       nan
cross-entropy, ``mean``, zero total weight  0, gradient 0                       nan
negative / nan class ``weight``             ``ValueError``                      accepted
class index out of range                    ``ValueError`` naming the value     ``IndexError`` / assert
... unchecked (compile, vmap, no check)     ``nan`` for its row                 ``IndexError`` / assert
``ignore_index`` with probability targets   ``ValueError`` unless -100          ``RuntimeError``
==========================================  ==================================  ==========================

Shared with torch: a ``nan`` in a row makes that row ``nan``; a ``+inf`` makes softmax, log_softmax and
cross-entropy ``nan`` for the row, logsumexp ``+inf``; a target logit of ``-inf`` gives an infinite loss with the
finite gradient :math:`p - q`; ignored rows get a zero gradient (also when they hold ``nan``: they are never
read). float16 and bfloat16 are computed in float32 and returned in their own dtype.

Transforms
----------
The Functions are written in the ``setup_context`` style with ``generate_vmap_rule = True`` and a ``jvp``, so
``torch.func.grad``, ``vmap`` (per-sample gradients), ``jacrev``, ``jacfwd``, ``hessian`` and
``torch.autograd.forward_ad`` work and give torch's own values, to every order and in every composition
(``jacfwd(jacfwd(f))``, ``jacrev(jacfwd(f))``, third derivatives): each ``jvp`` rule runs with forward-mode AD on
(``softmaxkit.torch._core.jvp_rule``; torch switches it off around a custom rule, and a forward level over one then sees
zero higher derivatives, pytorch/pytorch#197867). ``torch.compile(fullgraph=True)`` traces all
four without a graph break; inside a compiled graph the checks that read values on the host are skipped (see
:func:`cross_entropy`'s ``check_target``), and forward-mode AD is not available there (Dynamo traces no custom
``jvp``).

numba kernels on CPU
--------------------
CPU tensors of float32 or float64 whose class dimension is the last go to :mod:`softmaxkit.kernels.numba`, at
every size (``softmaxkit.backend``: ``auto`` and ``numba``; ``reference`` and ``torch`` never), through the
combined-style Functions of :mod:`softmaxkit.torch._cpu` (no per-call argument binding): the kernels read the
tensor's memory through a NumPy view and their results become tensors without a copy. softmax and log_softmax
run forward and backward there (the backward reads the output and the upstream gradient once per row),
logsumexp its forward (its backward is the softmax kernel times the upstream gradient). Cross-entropy computes
the loss and, when the logits require it, the gradient in one pass; that gradient (``N x C``) is held from the
forward to the backward in place of the two floats per row, and handed over to the first backward (a second one,
or a double backward, recomputes it with the torch code; the two agree to rounding). Class indices are checked
by one kernel pass. A softmax below ``softmaxkit._backend.TORCH_SOFTMAX`` elements (``auto``, outside forward-mode
AD) is ``torch.softmax`` itself, whose values are ours except on a fully masked row: a result holding a ``nan`` is
computed again by the torch code. Class indices that were not checked (``check_target=False``, traced calls),
probability targets that require a gradient, and calls inside ``torch.compile`` or a ``torch.func`` transform
take the torch code, and so do a double backward and forward-mode AD (``jvp``).

Triton kernels on CUDA
----------------------
A CUDA tensor of float32, float16 or bfloat16 whose class dimension is the last, with contiguous rows (any
``(..., C)`` tensor that views as ``(rows, C)`` without a copy; cross-entropy's ``(N, C)`` and ``(C,)``), goes
through :mod:`softmaxkit.kernels.triton.ops` when :mod:`triton` can be imported: the same values, special values and
gradients, in one or two passes over memory. Other layouts (the class dimension elsewhere, as in
``(N, C, d1, ...)``), float64 and other devices take the torch code. The double backward always does.

Cross-entropy with ``reduction="mean"`` or ``"sum"`` writes the gradient in its forward when the logits require
it (the loss and the gradient from the same reads of the logits); the backward then hands it over, after one
device-to-host transfer that checks whether the upstream gradient is exactly 1 (else it is multiplied in). With
``reduction="none"`` the backward is a separate launch that reads the saved row statistics. That gradient (``N x C``,
the logits' dtype) is held from the forward to the backward, where the torch code keeps two floats per row.
Checking class indices (``check_target=True``, the default) costs one more device-to-host transfer per call.
"""

from __future__ import annotations

import warnings
from typing import Any

import array_api_compat.torch as _xp
import torch

from .. import _validate
from . import _core, _cpu
from ._core import Options
from ._cross_entropy import CROSS_ENTROPY
from ._dispatch import apply, checked_tensor, pick, traced
from ._mappings import LOG_SOFTMAX, LOGSUMEXP, SOFTMAX

__all__ = ["cross_entropy", "log_softmax", "logsumexp", "softmax"]

Tensor = torch.Tensor


def _implicit_dim(name: str, ndim: int, stacklevel: int) -> int:
    """torch's legacy rule for ``dim=None`` (with its deprecation warning)."""
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated. Change the call to include dim=X as an argument.",
        UserWarning,
        stacklevel=stacklevel,
    )
    return 0 if ndim in (0, 1, 3) else 1


def _dim(x: Tensor, dim: Any, name: str, stacklevel: int) -> int:
    if dim is None:
        return _implicit_dim(name, x.ndim, stacklevel + 1)
    return _validate.axis(dim, max(x.ndim, 1), "dim")


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: torch.dtype | None = None) -> Tensor:
    r"""Softmax along ``dim``, as ``torch.nn.functional.softmax``, with our special values.

    .. math:: \operatorname{softmax}(x)_i = \frac{e^{x_i - m}}{\sum_j e^{x_j - m}}, \qquad m = \max_j x_j

    Parameters
    ----------
    input : Tensor
        Real logits; float16/bfloat16 are computed in float32 and returned in their own dtype.
    dim : int, optional
        The class dimension. ``None`` picks torch's legacy default with torch's deprecation warning.
    _stacklevel : int
        As torch's (where the implicit-``dim`` warning points).
    dtype : torch.dtype, optional
        Cast ``input`` to it first, as torch does.

    Returns
    -------
    Tensor
        ``input``'s shape and (floating) dtype; rows sum to one. Differentiable twice.

    Raises
    ------
    TypeError
        ``input`` is not a tensor, or is boolean or complex.
    ValueError
        ``dim`` out of range.

    Special values
    --------------
    ==============================  =====================================
    row                             result (gradient)
    ==============================  =====================================
    ``-inf`` entry                  exactly 0 there (0)
    all ``-inf``                    zeros (zeros); torch: nan
    contains ``nan`` or ``+inf``    ``nan`` for that row only
    float16 / bfloat16              computed in float32, returned as is
    ==============================  =====================================

    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import softmax
    >>> softmax(torch.tensor([[0.0, 0.0], [-float("inf"), -float("inf")]]), dim=1)
    tensor([[0.5000, 0.5000],
            [0.0000, 0.0000]])
    """
    x = checked_tensor(input, "input")
    d = _dim(x, dim, "softmax", _stacklevel)
    if dtype is not None:
        x = x.to(dtype)
    if x.ndim == 0:
        return apply(SOFTMAX, x.unsqueeze(0), 0).squeeze(0)
    fast = _cpu.mapping(x, d, False)
    return fast if fast is not None else apply(SOFTMAX, x, d)


def log_softmax(
    input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: torch.dtype | None = None
) -> Tensor:
    r"""Log-softmax along ``dim``, as ``torch.nn.functional.log_softmax``, accurate where softmax underflows.

    .. math:: \log \operatorname{softmax}(x)_i = (x_i - m) - \operatorname{log1p}(s),
              \qquad s = \sum_{j \ne j^*} e^{x_j - m}

    with :math:`j^*` a position of the maximum :math:`m` (Blanchard, Higham & Higham 2021): the log-probability
    of a dominant class keeps its relative accuracy (``log1p``), and nothing is ever formed as
    :math:`x_i - \operatorname{lse}(x)`.

    Parameters
    ----------
    input : Tensor
        Real logits.
    dim, _stacklevel, dtype
        As for :func:`softmax`.

    Returns
    -------
    Tensor
        ``input``'s shape and (floating) dtype, every entry ``<= 0``. Differentiable twice.

    Raises
    ------
    TypeError, ValueError
        As :func:`softmax`.

    Special values
    --------------
    ==============================  =====================================
    row                             result (gradient)
    ==============================  =====================================
    ``-inf`` entry                  ``-inf`` there (0)
    all ``-inf``                    ``-inf`` (zeros); torch: nan
    contains ``nan`` or ``+inf``    ``nan`` for that row only
    float16 / bfloat16              computed in float32, returned as is
    ==============================  =====================================

    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import log_softmax
    >>> log_softmax(torch.tensor([0.0, -40.0], dtype=torch.float64), dim=0)  # log1p keeps 4.2e-18
    tensor([-4.2484e-18, -4.0000e+01], dtype=torch.float64)
    """
    x = checked_tensor(input, "input")
    d = _dim(x, dim, "log_softmax", _stacklevel)
    if dtype is not None:
        x = x.to(dtype)
    if x.ndim == 0:
        return apply(LOG_SOFTMAX, x.unsqueeze(0), 0).squeeze(0)
    fast = _cpu.mapping(x, d, True)
    return fast if fast is not None else apply(LOG_SOFTMAX, x, d)


def logsumexp(input: Tensor, dim: int | tuple[int, ...] | list[int], keepdim: bool = False) -> Tensor:
    r"""Log of the sum of exponentials over ``dim``, as ``torch.logsumexp``.

    .. math:: \operatorname{lse}(x) = m + \operatorname{log1p}\Bigl(\sum_{j \ne j^*} e^{x_j - m}\Bigr)

    The gradient is the softmax, recomputed in backward; for a row of all ``-inf`` it is 0 (torch: nan).

    Parameters
    ----------
    input : Tensor
        Real values.
    dim : int or tuple of ints
        The dimension(s) to reduce.
    keepdim : bool
        Keep the reduced dimensions with length 1.

    Returns
    -------
    Tensor
        ``input``'s shape without ``dim``; differentiable twice.

    Raises
    ------
    TypeError, ValueError
        As :func:`softmax`; a repeated dimension.

    Special values
    --------------
    ==============================  =====================================
    row                             result (gradient)
    ==============================  =====================================
    all ``-inf`` / empty            ``-inf`` (zeros); torch's gradient: nan
    contains ``nan``                ``nan``
    contains ``+inf``               ``+inf``, its exact value
    float16 / bfloat16              computed in float32, returned as is
    ==============================  =====================================

    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import logsumexp
    >>> logsumexp(torch.tensor([1000.0, 1000.0], dtype=torch.float64), dim=0)
    tensor(1000.6931, dtype=torch.float64)
    """
    x = checked_tensor(input, "input")
    dims = [dim] if not isinstance(dim, (tuple, list)) else list(dim)
    norm = [_validate.axis(d, max(x.ndim, 1), "dim") for d in dims]
    if len(set(norm)) != len(norm):
        raise ValueError(f"dim holds a repeated dimension: {dim!r}")
    if x.ndim == 0:
        out = apply(LOGSUMEXP, x.unsqueeze(0), 0, False)
        return out.reshape(())
    if len(norm) == 1:
        fast = _cpu.logsumexp(x, norm[0], keepdim)
        return fast if fast is not None else apply(LOGSUMEXP, x, norm[0], keepdim)
    rest = [i for i in range(x.ndim) if i not in norm]
    flat = x.permute(*rest, *norm).reshape(*[x.shape[i] for i in rest], -1)
    out = apply(LOGSUMEXP, flat, flat.ndim - 1, False)
    if keepdim:
        out = out.reshape([1 if i in norm else x.shape[i] for i in range(x.ndim)])
    return out


def _check_target(x: Tensor, target: Any, dim: int, opts: Options, check_values: bool = True) -> Tensor:
    t = checked_tensor(target, "target")
    if t.dtype == torch.bool or t.dtype.is_complex:
        raise TypeError(f"target must hold integer class indices or floating probabilities; got dtype {t.dtype}")
    batch = tuple(s for i, s in enumerate(x.shape) if i != dim)
    if t.is_floating_point():
        if tuple(t.shape) != tuple(x.shape):
            raise ValueError(
                f"target (probabilities) must have the input's shape {tuple(x.shape)}; got shape {tuple(t.shape)}"
            )
        if opts.ignore_index != -100:
            raise ValueError(
                f"ignore_index={opts.ignore_index} has no meaning for probability targets; leave it at -100"
            )
        if check_values:
            _validate.probabilities(_xp, t)
        return t
    _validate.index_target(
        _xp, t, batch, f"the input's shape without dimension {dim}, {batch}", f"input shape {tuple(x.shape)}"
    )
    if check_values and not _cpu.labels_in_range(t, x.shape[dim], opts.ignore_index):
        _core.check_labels(t, x.shape[dim], opts.ignore_index, f"dimension {dim}")
    return t


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: float | None = None,
    check_target: bool = True,
) -> Tensor:
    r"""Cross-entropy from logits, as ``torch.nn.functional.cross_entropy``, plus ``z_loss`` and ``softcap``.

    For logits :math:`z` (class dimension 1, or 0 for an unbatched ``(C,)`` input) and class index :math:`y`:

    .. math:: \ell = (1-\varepsilon)\, w_y\,(\operatorname{lse}(z) - z_y)
                   + \frac{\varepsilon}{C}\sum_c w_c\,(\operatorname{lse}(z) - z_c)
                   + \lambda \operatorname{lse}(z)^2

    (probability targets :math:`t`: :math:`\sum_c w_c q_c (\operatorname{lse} - z_c)` with
    :math:`q = (1-\varepsilon)t + \varepsilon/C`), with ``softcap`` :math:`c` replacing :math:`z` by
    :math:`c\tanh(z/c)` first. ``mean`` divides by :math:`\sum_n w_{y_n}` over the rows not ignored (by the row
    count for probability targets), and the z-loss by the number of rows not ignored, as
    :func:`softmaxkit.cross_entropy` (whose module notes hold the derivations).

    Only the per-row log-sum-exp is kept for backward; the backward recomputes the softmax. See the module
    notes.

    Parameters
    ----------
    input : Tensor
        Logits, ``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)``. float16/bfloat16 are computed in float32.
    target : Tensor
        Class indices (integer, the input's shape without ``C``) or class probabilities (floating, the input's
        shape, finite and ``>= 0``; differentiable).
    weight : Tensor, optional
        Per-class weights ``(C,)``, ``>= 0``.
    size_average, reduce
        torch's deprecated arguments, honoured as torch does (with its warning).
    ignore_index : int
        Class-index targets equal to it contribute nothing (loss, denominator, smoothing, gradient).
    reduction : {"mean", "sum", "none"}
    label_smoothing : float
        :math:`\varepsilon \in [0, 1]`.
    z_loss : float
        :math:`\lambda \ge 0` (PaLM, Chowdhery et al. 2022): adds :math:`\lambda \operatorname{lse}^2` per row not
        ignored, not weighted, averaged over the rows not ignored under ``mean``.
    softcap : float, optional
        :math:`c > 0` (Gemma 2): logits become :math:`c \tanh(z/c)`; ``-inf`` stays ``-inf``.
    check_target : bool
        Check the values of ``target`` before computing (class indices in ``[0, C)`` or ``ignore_index``;
        probabilities finite and ``>= 0``; class weights ``>= 0``), raising ``ValueError`` naming the first bad
        one. The check costs one device-to-host transfer (a synchronisation on CUDA) per call. ``False`` skips
        it for trusted targets. The check is also skipped, whatever this says, where it would break a graph or
        a transform: inside ``torch.compile`` and for a target batched by ``torch.func.vmap``. Unchecked, a
        class index out of range gives a ``nan`` loss and gradient for its row (so a ``nan`` ``mean``/``sum``),
        on every path, and nothing is ever read outside the row.

    Returns
    -------
    Tensor
        0-d for ``mean``/``sum``, the target's batch shape for ``none``; the input's (floating) dtype.

    Raises
    ------
    TypeError
        ``input`` or ``target`` not a tensor; boolean target; a non-numeric option.
    ValueError
        A class index outside ``[0, C)`` (value and position named); shapes that do not match; negative or nan
        ``weight``; bad probabilities; an unknown ``reduction``; ``label_smoothing`` outside ``[0, 1]``;
        ``z_loss < 0``; ``softcap`` not a number in float32's normal range (about 1.2e-38 to 3.4e38).

    Special values
    --------------
    ======================================  ==============================================
    case                                    loss (gradient)
    ======================================  ==============================================
    every label ignored, ``mean``           0 (zeros); torch: nan
    zero total weight, ``mean``             0 (zeros); torch: nan
    target's logit is ``-inf``              ``inf`` (finite: :math:`p - q`)
    row with ``nan`` / ``+inf``             ``nan`` for that row
    ignored row holding ``nan``             0 (zeros): ignored rows are never read
    float16 / bfloat16                      computed in float32, returned as is
    under ``torch.autocast``                float16 / bfloat16 logits cast to float32 first,
                                            float32 returned, as torch does
    unchecked class index out of range      ``nan`` for that row (see ``check_target``)
    ======================================  ==============================================

    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import cross_entropy
    >>> z = torch.tensor([[5.0, 2.0, -1.0, 3.0]], requires_grad=True)
    >>> loss = cross_entropy(z, torch.tensor([0]))
    >>> loss
    tensor(0.1719, grad_fn=<_CrossEntropyBackward>)
    >>> loss.backward(); z.grad  # p - y
    tensor([[-0.1580,  0.0419,  0.0021,  0.1140]])
    >>> cross_entropy(z, torch.tensor([-100]))  # every label ignored: 0, not nan
    tensor(0., grad_fn=<_CrossEntropyBackward>)
    """
    if (
        weight is None
        and type(ignore_index) is int
        and ignore_index == -100
        and (reduction == "mean" or reduction == "sum")
        and type(label_smoothing) in (float, int)
        and label_smoothing == 0
        and type(z_loss) in (float, int)
        and z_loss == 0
        and softcap is None
        and check_target is True
        and size_average is None
        and reduce is None
    ):  # the common call: small ones take a path with no other checks (_cpu.small_cross_entropy)
        small = _cpu.small_cross_entropy(input, target, reduction)
        if small is not None:
            return small
    x = checked_tensor(input, "input")
    if size_average is not None or reduce is not None:
        reduction = torch.nn._reduction.legacy_get_string(size_average, reduce)
    opts = _core.options(ignore_index, label_smoothing, reduction, z_loss, softcap)
    if x.ndim == 0:
        raise ValueError("input must have the class dimension: shape (C,), (N, C) or (N, C, d1, ...); got a 0-d tensor")
    _core.compute_dtype(x.dtype, "input")
    if x.dtype in (torch.float16, torch.bfloat16) and torch.is_autocast_enabled(x.device.type):
        x = x.float()  # torch's autocast runs cross-entropy in float32 and returns float32: so do we
    dim = 1 if x.ndim >= 2 else 0
    t = _check_target(x, target, dim, opts, bool(check_target) and not traced(checked_tensor(target, "target")))
    if weight is not None:
        w = checked_tensor(weight, "weight")
        _core.check_weight(w, x.shape[dim], values=not traced(w))
    if x.shape[dim] == 0:  # no classes: every label was ignored (checked above)
        zero = x.sum(dim) * 0.0
        return zero if opts.reduction == "none" else zero.sum()
    target_grad = t.is_floating_point() and t.requires_grad
    fuse = torch.is_grad_enabled() and x.requires_grad and not target_grad
    # the CPU kernels index the row with the label unchecked: only labels checked here may go there
    checked = t.is_floating_point() or (bool(check_target) and not traced(t))
    fast = _cpu.cross_entropy(x, t, weight, dim, opts) if checked and not target_grad else None
    if fast is not None:
        return fast
    loss: Tensor = pick(CROSS_ENTROPY).apply(x, t, weight, dim, opts, fuse)[0]
    return loss

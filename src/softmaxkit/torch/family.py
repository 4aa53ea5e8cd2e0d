r"""``torch.autograd.Function``\ s for the alternatives to softmax (``softmaxkit.family``), analytic backward.

Why
---
Autograd through the generic code of :mod:`softmaxkit.family` differentiates the *algorithm*: a bisection's
last step, a sort. For :func:`softmaxkit.entmax_bisect` that gradient is wrong (0.27 off at
``x = [0.5, 1.0, -0.2, 0.9]``, :math:`\alpha = 1.5`), and for its loss it is ``nan`` (issue 17). Here each
mapping and loss is one Function whose backward is the family's analytic derivative:

* the α-entmax members (sparsemax, 1.5-entmax, α-entmax by bisection) save their output :math:`p` and compute
  :math:`J^\top g = s \odot g - s \langle s, g\rangle / \sum_j s_j` with :math:`s = p^{2-\alpha}` on the
  support (Peters, Niculae & Martins 2019), :math:`O(K)` per row, in differentiable torch operations (so a
  double backward sees through it); a tensor :math:`\alpha` gets its gradient too (as the ``entmax`` package's
  ``EntmaxBisect``);
* Taylor and spherical softmax, the sigmoids and softplus-normalize save their input and call the family's
  ``*_vjp`` / ``*_jvp``;
* every loss saves the gradient its forward computed with the family's ``*_value_and_grad`` (:math:`p^\star -
  e_y` for the Fenchel–Young losses) and scales it by the upstream gradient.

Each Function has a ``jvp`` (``torch.func.jacfwd``, ``torch.autograd.forward_ad``; differentiable again, so
Hessians come out the same from every composition of ``jacfwd`` and ``jacrev``) and ``generate_vmap_rule``
(``torch.func.vmap``, per-sample gradients with ``torch.func.grad``), as :mod:`softmaxkit.torch.functional`.

The generic functions of :mod:`softmaxkit.family` hand torch tensors to this module (:func:`route`, called by
:func:`softmaxkit._backend.route`), so ``softmaxkit.entmax_bisect(tensor)`` gets these gradients too.

The forward
-----------
One small function per kind of operation (:func:`forward_mapping`, :func:`forward_loss`) computes the forward
on detached tensors. Today it runs the generic code (on every engine: ``softmaxkit.backend("reference")``
asks for exactly that); the backward stays the analytic one whatever computed the forward. float16 and
bfloat16 are computed in float32 and returned in their own dtype.

Special values
--------------
Those of :mod:`softmaxkit.family` (a masked or ``-inf`` entry has probability 0 and gradient 0; a fully masked
row is zeros; a row with ``nan`` or ``+inf`` is ``nan``; ignored rows of a loss are never read), with gradients
that follow them: 0 off the support, ``nan`` on a bad row.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import _doc
from .. import family as generic
from ..family.entmax_bisect import N_ITER
from ..family.spherical import DEFAULT_EPS
from ._family import apply_bisect, apply_loss, apply_mapping, bisect_loss_tensor_alpha, check_k, options
from ._family import route as route  # the dispatcher's entry (softmaxkit._backend.route), not API

__all__ = [
    "entmax15",
    "entmax15_loss",
    "entmax_bisect",
    "entmax_bisect_loss",
    "log_sigmoid",
    "log_softplus_normalize",
    "log_spherical_softmax",
    "log_taylor_softmax",
    "sigmoid",
    "sigmoid_cross_entropy",
    "softplus_normalize",
    "softplus_normalize_cross_entropy",
    "sparsemax",
    "sparsemax_loss",
    "spherical_cross_entropy",
    "spherical_softmax",
    "taylor_cross_entropy",
    "taylor_softmax",
]

Tensor = torch.Tensor


# ---------------------------------------------------------------------------------------- public functions
def _generic_table(name: str) -> str:
    """The special-value table of ``softmaxkit.family.<name>``: the values here are its values (the forward is
    its code); the gradients follow them (0 at masked entries, ``nan`` rows where the value is ``nan``)."""
    doc = getattr(generic, name).__doc__ or ""
    head = "Special values\n    --------------\n"
    start = doc.find(head)
    return "" if start < 0 else doc[start + len(head) :].split("\n\n", 1)[0] + "\n"


def sparsemax(input: Tensor, dim: int = -1, *, where: Tensor | None = None) -> Tensor:
    r"""Sparsemax along ``dim`` (:func:`softmaxkit.sparsemax`) with its analytic backward.

    .. math:: \operatorname{sparsemax}(x) = \operatorname*{arg\,min}_{p \in \Delta} \|p - x\|^2 = [x - \tau]_+

    (Martins & Astudillo 2016). The ``entmax`` package's ``sparsemax(X, dim)``, with its gradients.

    Parameters
    ----------
    input : Tensor
        Real logits; float16/bfloat16 are computed in float32 and returned in their own dtype.
    dim : int
        The class dimension.
    where : Tensor of bool, optional
        Broadcastable to ``input``; entries where it is False get probability exactly 0.

    Returns
    -------
    Tensor
        ``input``'s shape and dtype; rows sum to one.

    Raises
    ------
    TypeError
        ``input`` is not a tensor, or is boolean or complex; ``dim`` is not an int.
    ValueError
        ``dim`` out of range; ``where`` does not broadcast.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import sparsemax
    >>> x = torch.tensor([1.0, 0.5, -1.0], requires_grad=True)
    >>> p = sparsemax(x)
    >>> p
    tensor([0.7500, 0.2500, 0.0000], grad_fn=<SparsemaxBackward>)
    >>> p[0].backward(); x.grad
    tensor([ 0.5000, -0.5000,  0.0000])
    """
    return apply_mapping("sparsemax", input, where, dim, options())


def entmax15(input: Tensor, dim: int = -1, k: int | None = None, *, where: Tensor | None = None) -> Tensor:
    r"""1.5-entmax along ``dim`` (:func:`softmaxkit.entmax15`, exact, sort-based) with its analytic backward.

    .. math:: \operatorname{entmax}_{1.5}(x)_i = \bigl[x_i/2 - \tau\bigr]_+^2, \qquad \textstyle\sum_i p_i = 1

    (Peters, Niculae & Martins 2019). The ``entmax`` package's ``entmax15(X, dim, k)``, with its gradients.

    Parameters
    ----------
    input : Tensor
        Real logits; float16/bfloat16 are computed in float32 and returned in their own dtype.
    dim : int
        The class dimension.
    k : int, optional
        Accepted for the ``entmax`` package's signature (its partial-sort size); the result is exact
        whatever it is. A positive int or None.
    where : Tensor of bool, optional
        As for :func:`sparsemax`.

    Returns
    -------
    Tensor
        ``input``'s shape and dtype; rows sum to one.

    Raises
    ------
    TypeError, ValueError
        As :func:`sparsemax`; ``k`` not a positive int.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import entmax15
    >>> entmax15(torch.tensor([2.0, 1.0, -2.0]))
    tensor([0.8307, 0.1693, 0.0000])
    """
    check_k(k)
    return apply_mapping("entmax15", input, where, dim, options())


def entmax_bisect(
    input: Tensor,
    alpha: float | Tensor = 1.5,
    dim: int = -1,
    n_iter: int = N_ITER,
    *,
    where: Tensor | None = None,
) -> Tensor:
    r"""α-entmax along ``dim`` by bisection (:func:`softmaxkit.entmax_bisect`), with its analytic backward; a
    tensor ``alpha`` gets its gradient.

    .. math:: \alpha\text{-entmax}(x)_i = \bigl[(\alpha - 1) x_i - \tau\bigr]_+^{1/(\alpha - 1)}, \qquad
              \textstyle\sum_i p_i = 1

    (Peters, Niculae & Martins 2019). The ``entmax`` package's ``entmax_bisect(X, alpha, dim, n_iter)``: the
    same values, and the gradient of the solution (autograd through a bisection gives a wrong one).

    Parameters
    ----------
    input : Tensor
        Real logits; float16/bfloat16 are computed in float32 and returned in their own dtype.
    alpha : float or Tensor
        A float :math:`\ge 1` (1 is softmax). A tensor (floating, every value finite and :math:`> 1`) holds
        one :math:`\alpha` per row: its shape broadcasts to ``input``'s with ``dim`` of length 1; it gets the
        gradient :math:`\sum_i g_i\, \partial p_i/\partial\alpha` (a learnable ``torch.nn.Parameter``).
    dim : int
        The class dimension.
    n_iter : int
        Bisection steps, ``>= 1`` (default 64: float64's resolution; the ``entmax`` package's default is 50).
    where : Tensor of bool, optional
        As for :func:`sparsemax`.

    Returns
    -------
    Tensor
        ``input``'s shape and dtype; rows sum to one.

    Raises
    ------
    TypeError
        As :func:`sparsemax`; ``alpha`` neither a real number nor a floating tensor; ``n_iter`` not an int.
    ValueError
        As :func:`sparsemax`; ``alpha`` < 1 (a tensor: <= 1) or not finite, or not broadcastable;
        ``n_iter`` < 1.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import entmax_bisect
    >>> x = torch.tensor([0.5, 1.0, -0.2, 0.9], dtype=torch.float64, requires_grad=True)
    >>> alpha = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    >>> p = entmax_bisect(x, alpha)
    >>> p.detach().round(decimals=4)
    tensor([0.1730, 0.4434, 0.0043, 0.3793], dtype=torch.float64)
    >>> p[1].backward(); x.grad.round(decimals=4), alpha.grad.round(decimals=4)
    (tensor([-0.1570,  0.4145, -0.0249, -0.2325], dtype=torch.float64), tensor(0.1874, dtype=torch.float64))
    """
    return apply_bisect(input, alpha, dim, n_iter, where, "dim")


def taylor_softmax(input: Tensor, dim: int = -1, *, order: int = 2, where: Tensor | None = None) -> Tensor:
    r"""Taylor softmax along ``dim`` (:func:`softmaxkit.taylor_softmax`) with its analytic backward.

    .. math:: p_i = \frac{f(x_i)}{\sum_j f(x_j)}, \qquad f(t) = \sum_{k=0}^{n} \frac{t^k}{k!}
              \ (n \text{ even})

    (de Brébisson & Vincent 2016).

    Parameters
    ----------
    input, dim
        As for :func:`sparsemax`.
    order : int
        The even order :math:`n \ge 2` of the expansion.
    where : Tensor of bool, optional
        As for :func:`sparsemax`.

    Returns
    -------
    Tensor
        ``input``'s shape and dtype; rows sum to one.

    Raises
    ------
    TypeError, ValueError
        As :func:`sparsemax`; a bad ``order``.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import taylor_softmax
    >>> taylor_softmax(torch.tensor([0.0, 0.0, 2.0]))
    tensor([0.1429, 0.1429, 0.7143])
    """
    return apply_mapping("taylor_softmax", input, where, dim, options(order=order))


def spherical_softmax(input: Tensor, dim: int = -1, *, eps: float = DEFAULT_EPS, where: Tensor | None = None) -> Tensor:
    r"""Spherical softmax along ``dim`` (:func:`softmaxkit.spherical_softmax`) with its analytic backward.

    .. math:: p_i = \frac{x_i^2 + \varepsilon}{\sum_j (x_j^2 + \varepsilon)}

    (de Brébisson & Vincent 2016).

    Parameters
    ----------
    input, dim
        As for :func:`sparsemax`.
    eps : float
        :math:`\varepsilon > 0`.
    where : Tensor of bool, optional
        As for :func:`sparsemax`.

    Returns
    -------
    Tensor
        ``input``'s shape and dtype; rows sum to one.

    Raises
    ------
    TypeError, ValueError
        As :func:`sparsemax`; a bad ``eps``.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import spherical_softmax
    >>> spherical_softmax(torch.tensor([1.0, -1.0, 2.0]), eps=1e-30)
    tensor([0.1667, 0.1667, 0.6667])
    """
    return apply_mapping("spherical_softmax", input, where, dim, options(eps=eps))


def sigmoid(input: Tensor, dim: int = -1, *, where: Tensor | None = None) -> Tensor:
    r"""One-vs-rest sigmoids (:func:`softmaxkit.sigmoid`) with the family's special values and backward.

    .. math:: p_i = \frac{1}{1 + e^{-x_i}}

    Parameters
    ----------
    input, dim
        As for :func:`sparsemax` (``dim`` names the class dimension, for ``where`` and the checks).
    where : Tensor of bool, optional
        Entries where it is False get exactly 0.

    Returns
    -------
    Tensor
        ``input``'s shape and dtype.

    Raises
    ------
    TypeError, ValueError
        As :func:`sparsemax`.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import sigmoid
    >>> sigmoid(torch.tensor([0.0, 2.0]))
    tensor([0.5000, 0.8808])
    """
    return apply_mapping("sigmoid", input, where, dim, options())


def softplus_normalize(input: Tensor, dim: int = -1, *, where: Tensor | None = None) -> Tensor:
    r"""Softplus-normalize along ``dim`` (:func:`softmaxkit.softplus_normalize`) with its analytic backward.

    .. math:: p_i = \frac{\log(1 + e^{x_i})}{\sum_j \log(1 + e^{x_j})}

    Parameters
    ----------
    input, dim, where
        As for :func:`sparsemax`.

    Returns
    -------
    Tensor
        ``input``'s shape and dtype; rows sum to one.

    Raises
    ------
    TypeError, ValueError
        As :func:`sparsemax`.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import softplus_normalize
    >>> softplus_normalize(torch.tensor([0.0, 0.0]))
    tensor([0.5000, 0.5000])
    """
    return apply_mapping("softplus_normalize", input, where, dim, options())


def log_taylor_softmax(input: Tensor, dim: int = -1, *, order: int = 2, where: Tensor | None = None) -> Tensor:
    r"""Log of :func:`taylor_softmax` (:func:`softmaxkit.log_taylor_softmax`), accurate where it underflows.

    Parameters
    ----------
    input, dim, order, where
        As for :func:`taylor_softmax`.

    Returns
    -------
    Tensor
        ``input``'s shape and dtype, every entry ``<= 0``.

    Raises
    ------
    TypeError, ValueError
        As :func:`taylor_softmax`.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import log_taylor_softmax
    >>> log_taylor_softmax(torch.zeros(4)).exp()
    tensor([0.2500, 0.2500, 0.2500, 0.2500])
    """
    return apply_mapping("log_taylor_softmax", input, where, dim, options(order=order))


def log_spherical_softmax(
    input: Tensor, dim: int = -1, *, eps: float = DEFAULT_EPS, where: Tensor | None = None
) -> Tensor:
    r"""Log of :func:`spherical_softmax` (:func:`softmaxkit.log_spherical_softmax`).

    Parameters
    ----------
    input, dim, eps, where
        As for :func:`spherical_softmax`.

    Returns
    -------
    Tensor
        ``input``'s shape and dtype, every entry ``<= 0``.

    Raises
    ------
    TypeError, ValueError
        As :func:`spherical_softmax`.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import log_spherical_softmax
    >>> log_spherical_softmax(torch.ones(4)).exp()
    tensor([0.2500, 0.2500, 0.2500, 0.2500])
    """
    return apply_mapping("log_spherical_softmax", input, where, dim, options(eps=eps))


def log_sigmoid(input: Tensor, dim: int = -1, *, where: Tensor | None = None) -> Tensor:
    r"""Log of :func:`sigmoid` (:func:`softmaxkit.log_sigmoid`), :math:`-\operatorname{softplus}(-x)`.

    Parameters
    ----------
    input, dim, where
        As for :func:`sigmoid`.

    Returns
    -------
    Tensor
        ``input``'s shape and dtype, every entry ``<= 0``.

    Raises
    ------
    TypeError, ValueError
        As :func:`sigmoid`.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import log_sigmoid
    >>> log_sigmoid(torch.tensor([0.0, -100.0]))
    tensor([  -0.6931, -100.0000])
    """
    return apply_mapping("log_sigmoid", input, where, dim, options())


def log_softplus_normalize(input: Tensor, dim: int = -1, *, where: Tensor | None = None) -> Tensor:
    r"""Log of :func:`softplus_normalize` (:func:`softmaxkit.log_softplus_normalize`).

    Parameters
    ----------
    input, dim, where
        As for :func:`softplus_normalize`.

    Returns
    -------
    Tensor
        ``input``'s shape and dtype, every entry ``<= 0``.

    Raises
    ------
    TypeError, ValueError
        As :func:`softplus_normalize`.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import log_softplus_normalize
    >>> log_softplus_normalize(torch.zeros(2)).exp()
    tensor([0.5000, 0.5000])
    """
    return apply_mapping("log_softplus_normalize", input, where, dim, options())


# ----------------------------------------------------------------------------------------------- losses
_LOSS_PARAMETERS = """
    input : Tensor
        Real logits; ``dim`` holds the ``C`` classes. float16/bfloat16 are computed in float32.
    target : Tensor
        Integer class indices with ``input``'s shape without ``dim``: values in ``[0, C)`` or
        ``ignore_index``.
    dim : int
        The class dimension (default the last).
    weight : Tensor, optional
        Per-class weights, shape ``(C,)``, finite and ``>= 0`` (no gradient).
    ignore_index : int
        Rows whose target equals it contribute nothing (not even to the ``mean`` denominator).
    reduction : {"mean", "sum", "none"}
        As :func:`softmaxkit.cross_entropy`."""


def _loss_doc(func: Callable[..., Tensor]) -> Callable[..., Tensor]:
    assert func.__doc__ is not None  # (our own docstrings)
    func.__doc__ = func.__doc__.replace("    {parameters}\n", _LOSS_PARAMETERS.lstrip("\n") + "\n")
    return func


@_loss_doc
def sparsemax_loss(
    input: Tensor,
    target: Tensor,
    *,
    dim: int = -1,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""The sparsemax loss (:func:`softmaxkit.sparsemax_loss`); its gradient :math:`p^\star - e_y` is computed
    in the forward, in closed form.

    .. math:: \ell = \tfrac12\bigl(1 - \|p^\star\|^2\bigr) + \langle p^\star - e_y,\, z\rangle

    (Martins & Astudillo 2016). The ``entmax`` package's ``sparsemax_loss`` returns the per-row losses: pass
    ``reduction="none"`` for that (or use :class:`SparsemaxLoss`).

    Parameters
    ----------
    {parameters}

    Returns
    -------
    Tensor
        0-d for ``mean``/``sum``, else the per-row losses.

    Raises
    ------
    TypeError, ValueError
        As :func:`softmaxkit.sparsemax_loss` (a class index out of range, a bad ``weight`` or ``reduction``).

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import sparsemax_loss
    >>> z = torch.tensor([[1.0, 0.5, -1.0], [3.0, 0.0, 0.0]], requires_grad=True)
    >>> sparsemax_loss(z, torch.tensor([1, 0]), reduction="none")
    tensor([0.5625, 0.0000], grad_fn=<SparsemaxLossBackward>)
    """
    return apply_loss("sparsemax_loss", input, target, dim, weight, ignore_index, reduction, options())[0]


@_loss_doc
def entmax15_loss(
    input: Tensor,
    target: Tensor,
    *,
    dim: int = -1,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""The 1.5-entmax loss (:func:`softmaxkit.entmax15_loss`), gradient :math:`p^\star - e_y` in closed form.

    Parameters
    ----------
    {parameters}

    Returns
    -------
    Tensor
        0-d for ``mean``/``sum``, else the per-row losses.

    Raises
    ------
    TypeError, ValueError
        As :func:`softmaxkit.entmax15_loss`.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import entmax15_loss
    >>> entmax15_loss(torch.tensor([[3.0, 0.0, 0.0]]), torch.tensor([0]))
    tensor(0.)
    """
    return apply_loss("entmax15_loss", input, target, dim, weight, ignore_index, reduction, options())[0]


@_loss_doc
def entmax_bisect_loss(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float | Tensor = 1.5,
    dim: int = -1,
    n_iter: int = N_ITER,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""The α-entmax loss (:func:`softmaxkit.entmax_bisect_loss`), gradient :math:`p^\star - e_y` in closed form
    (autograd through the bisection gives ``nan``).

    Parameters
    ----------
    {parameters}
    alpha : float or Tensor
        :math:`\alpha \ge 1` (1 is cross-entropy). A floating tensor (0-d, or shaped to broadcast with the
        input with ``dim`` of length 1: one α per row, as the ``entmax`` package takes it), each value > 1, gets its
        gradient :math:`\sum_n c_n \partial_\alpha H_\alpha(p_n)` (the envelope theorem: :math:`p` is optimal).
    n_iter : int
        Bisection steps, ``>= 1``.

    Returns
    -------
    Tensor
        0-d for ``mean``/``sum``, else the per-row losses.

    Raises
    ------
    TypeError, ValueError
        As :func:`softmaxkit.entmax_bisect_loss`.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import entmax_bisect_loss
    >>> z = torch.tensor([[0.5, 1.0, -0.2, 0.9]], dtype=torch.float64, requires_grad=True)
    >>> entmax_bisect_loss(z, torch.tensor([1])).backward()
    >>> z.grad.round(decimals=4)
    tensor([[ 0.1730, -0.5566,  0.0043,  0.3793]], dtype=torch.float64)
    """
    if isinstance(alpha, torch.Tensor):
        return bisect_loss_tensor_alpha(input, target, alpha, dim, n_iter, weight, ignore_index, reduction)
    chosen = options(alpha=alpha, n_iter=n_iter)
    return apply_loss("entmax_bisect_loss", input, target, dim, weight, ignore_index, reduction, chosen)[0]


@_loss_doc
def taylor_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    dim: int = -1,
    order: int = 2,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Cross-entropy of the Taylor softmax (:func:`softmaxkit.taylor_cross_entropy`), analytic gradient.

    Parameters
    ----------
    {parameters}
    order : int
        As for :func:`taylor_softmax`.

    Returns
    -------
    Tensor
        0-d for ``mean``/``sum``, else the per-row losses.

    Raises
    ------
    TypeError, ValueError
        As :func:`softmaxkit.taylor_cross_entropy`.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import taylor_cross_entropy
    >>> taylor_cross_entropy(torch.zeros(1, 4), torch.tensor([2]))  # log 4
    tensor(1.3863)
    """
    return apply_loss(
        "taylor_cross_entropy", input, target, dim, weight, ignore_index, reduction, options(order=order)
    )[0]


@_loss_doc
def spherical_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    dim: int = -1,
    eps: float = DEFAULT_EPS,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Cross-entropy of the spherical softmax (:func:`softmaxkit.spherical_cross_entropy`), analytic gradient.

    Parameters
    ----------
    {parameters}
    eps : float
        As for :func:`spherical_softmax`.

    Returns
    -------
    Tensor
        0-d for ``mean``/``sum``, else the per-row losses.

    Raises
    ------
    TypeError, ValueError
        As :func:`softmaxkit.spherical_cross_entropy`.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import spherical_cross_entropy
    >>> spherical_cross_entropy(torch.ones(1, 4), torch.tensor([2]))  # log 4
    tensor(1.3863)
    """
    return apply_loss("spherical_cross_entropy", input, target, dim, weight, ignore_index, reduction, options(eps=eps))[
        0
    ]


@_loss_doc
def sigmoid_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    dim: int = -1,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""One-vs-rest binary cross-entropy of class indices (:func:`softmaxkit.sigmoid_cross_entropy`), analytic
    gradient :math:`\sigma(z) - e_y`.

    Parameters
    ----------
    {parameters}

    Returns
    -------
    Tensor
        0-d for ``mean``/``sum``, else the per-row losses.

    Raises
    ------
    TypeError, ValueError
        As :func:`softmaxkit.sigmoid_cross_entropy`.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import sigmoid_cross_entropy
    >>> sigmoid_cross_entropy(torch.zeros(1, 2), torch.tensor([0]))  # 2 log 2
    tensor(1.3863)
    """
    return apply_loss("sigmoid_cross_entropy", input, target, dim, weight, ignore_index, reduction, options())[0]


@_loss_doc
def softplus_normalize_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    dim: int = -1,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Cross-entropy of softplus-normalize (:func:`softmaxkit.softplus_normalize_cross_entropy`), analytic
    gradient.

    Parameters
    ----------
    {parameters}

    Returns
    -------
    Tensor
        0-d for ``mean``/``sum``, else the per-row losses.

    Raises
    ------
    TypeError, ValueError
        As :func:`softmaxkit.softplus_normalize_cross_entropy`.

    {special_values}
    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import softplus_normalize_cross_entropy
    >>> softplus_normalize_cross_entropy(torch.zeros(1, 4), torch.tensor([2]))  # log 4
    tensor(1.3863)
    """
    return apply_loss(
        "softplus_normalize_cross_entropy", input, target, dim, weight, ignore_index, reduction, options()
    )[0]


for _func in (
    sparsemax, entmax15, entmax_bisect, taylor_softmax, log_taylor_softmax, spherical_softmax, log_spherical_softmax,
    sigmoid, log_sigmoid, softplus_normalize, log_softplus_normalize, sparsemax_loss, entmax15_loss,
    entmax_bisect_loss, taylor_cross_entropy, spherical_cross_entropy, sigmoid_cross_entropy,
    softplus_normalize_cross_entropy,
):  # fmt: skip
    _doc.special_values(_generic_table(_func.__name__))(_func)
del _func

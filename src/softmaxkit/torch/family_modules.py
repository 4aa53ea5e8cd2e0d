"""Modules with the ``entmax`` package's names and signatures: swap ``from entmax import ...`` for
``from softmaxkit.torch import ...``.

``Sparsemax(dim, k)``, ``Entmax15(dim, k)``, ``EntmaxBisect(alpha, dim, n_iter)`` and the losses
``SparsemaxLoss(k, ignore_index, reduction)``, ``Entmax15Loss(k, ignore_index, reduction)``,
``EntmaxBisectLoss(alpha, n_iter, ignore_index, reduction)`` take the same arguments in the same order, and
compute with :mod:`softmaxkit.torch.family` (analytic backward; float16/bfloat16 in float32, never ``nan`` from
finite input, where the package gives ``nan``: its issue #30). The differences:

* ``k`` (the package's partial-sort size) is accepted and checked, but the result is exact whatever it is;
* ``EntmaxBisect``'s and ``EntmaxBisectLoss``'s default ``n_iter`` is 64 (float64's resolution), not 50;
* the losses ignore the rows whose target is ``ignore_index`` whatever its sign (the package only when
  ``ignore_index >= 0``), and ``reduction="mean"`` is accepted as well as the package's ``"elementwise_mean"``;
  a mean over no rows is 0;
* bad options raise ``ValueError`` at construction (the package asserts).
"""

from __future__ import annotations

from typing import Any

import torch

from .. import _validate
from ..family.entmax_bisect import N_ITER
from . import family
from ._family import check_k

__all__ = ["Entmax15", "Entmax15Loss", "EntmaxBisect", "EntmaxBisectLoss", "Sparsemax", "SparsemaxLoss"]

Tensor = torch.Tensor


def _reduction(value: Any) -> str:
    """The package's ``"elementwise_mean"`` is our ``"mean"``."""
    return "mean" if value == "elementwise_mean" else _validate.reduction(value)


class Sparsemax(torch.nn.Module):
    """:func:`softmaxkit.torch.sparsemax` along ``dim``, as ``entmax.Sparsemax(dim=-1, k=None)``.

    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import Sparsemax
    >>> Sparsemax(dim=1)(torch.tensor([[1.0, 0.5, -1.0]]))
    tensor([[0.7500, 0.2500, 0.0000]])
    """

    def __init__(self, dim: int = -1, k: int | None = None) -> None:
        check_k(k)
        super().__init__()
        self.dim, self.k = dim, k

    def forward(self, X: Tensor) -> Tensor:
        """The probabilities of the logits ``X`` along ``dim``."""
        return family.sparsemax(X, dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Entmax15(torch.nn.Module):
    """:func:`softmaxkit.torch.entmax15` along ``dim``, as ``entmax.Entmax15(dim=-1, k=None)``.

    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import Entmax15
    >>> Entmax15()(torch.tensor([2.0, 1.0, -2.0]))
    tensor([0.8307, 0.1693, 0.0000])
    """

    def __init__(self, dim: int = -1, k: int | None = None) -> None:
        check_k(k)
        super().__init__()
        self.dim, self.k = dim, k

    def forward(self, X: Tensor) -> Tensor:
        """The probabilities of the logits ``X`` along ``dim``."""
        return family.entmax15(X, dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class EntmaxBisect(torch.nn.Module):
    """:func:`softmaxkit.torch.entmax_bisect` along ``dim``, as ``entmax.EntmaxBisect(alpha=1.5, dim=-1,
    n_iter)``. A ``torch.nn.Parameter`` ``alpha`` is registered and learned (it gets its gradient).

    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import EntmaxBisect
    >>> layer = EntmaxBisect(alpha=torch.nn.Parameter(torch.tensor(1.5)))
    >>> [name for name, _ in layer.named_parameters()]
    ['alpha']
    """

    def __init__(self, alpha: float | Tensor = 1.5, dim: int = -1, n_iter: int = N_ITER) -> None:
        super().__init__()
        self.alpha, self.dim, self.n_iter = alpha, dim, n_iter

    def forward(self, X: Tensor) -> Tensor:
        """The probabilities of the logits ``X`` along ``dim``."""
        return family.entmax_bisect(X, alpha=self.alpha, dim=self.dim, n_iter=self.n_iter)

    def extra_repr(self) -> str:
        alpha = "tensor" if isinstance(self.alpha, torch.Tensor) else repr(self.alpha)
        return f"alpha={alpha}, dim={self.dim}, n_iter={self.n_iter}"


def _loss_options(ignore_index: Any, reduction: Any) -> tuple[int, str]:
    """The options every loss module has, checked at construction (the package asserts at the call)."""
    return _validate.integer(ignore_index, "ignore_index"), _reduction(reduction)


class SparsemaxLoss(torch.nn.Module):
    """:func:`softmaxkit.torch.sparsemax_loss` of ``(N, C)`` logits and class indices, as
    ``entmax.SparsemaxLoss(k=None, ignore_index=-100, reduction="elementwise_mean")``.

    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import SparsemaxLoss
    >>> SparsemaxLoss(reduction="none")(torch.tensor([[1.0, 0.5, -1.0]]), torch.tensor([1]))
    tensor([0.5625])
    """

    def __init__(self, k: int | None = None, ignore_index: int = -100, reduction: str = "elementwise_mean") -> None:
        check_k(k)
        super().__init__()
        self.ignore_index, self.reduction = _loss_options(ignore_index, reduction)
        self.k = k

    def forward(self, X: Tensor, target: Tensor) -> Tensor:
        """The loss of the ``(N, C)`` logits ``X`` for the class indices ``target``."""
        return family.sparsemax_loss(X, target, ignore_index=self.ignore_index, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}, reduction={self.reduction!r}"


class Entmax15Loss(torch.nn.Module):
    """:func:`softmaxkit.torch.entmax15_loss`, as ``entmax.Entmax15Loss(k=None, ignore_index=-100,
    reduction="elementwise_mean")``.

    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import Entmax15Loss
    >>> Entmax15Loss()(torch.tensor([[3.0, 0.0, 0.0]]), torch.tensor([0]))
    tensor(0.)
    """

    def __init__(self, k: int | None = None, ignore_index: int = -100, reduction: str = "elementwise_mean") -> None:
        check_k(k)
        super().__init__()
        self.ignore_index, self.reduction = _loss_options(ignore_index, reduction)
        self.k = k

    def forward(self, X: Tensor, target: Tensor) -> Tensor:
        """The loss of the ``(N, C)`` logits ``X`` for the class indices ``target``."""
        return family.entmax15_loss(X, target, ignore_index=self.ignore_index, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}, reduction={self.reduction!r}"


class EntmaxBisectLoss(torch.nn.Module):
    """:func:`softmaxkit.torch.entmax_bisect_loss`, as ``entmax.EntmaxBisectLoss(alpha=1.5, n_iter,
    ignore_index=-100, reduction="elementwise_mean")``; ``alpha`` a float or a tensor (0-d, or one per row), whose
    gradient it gets.

    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import EntmaxBisectLoss
    >>> EntmaxBisectLoss(alpha=2.0, reduction="sum")(torch.tensor([[1.0, 0.5, -1.0]]), torch.tensor([1]))
    tensor(0.5625)
    """

    def __init__(
        self,
        alpha: float | Tensor = 1.5,
        n_iter: int = N_ITER,
        ignore_index: int = -100,
        reduction: str = "elementwise_mean",
    ) -> None:
        super().__init__()
        self.ignore_index, self.reduction = _loss_options(ignore_index, reduction)
        self.alpha, self.n_iter = alpha, n_iter

    def forward(self, X: Tensor, target: Tensor) -> Tensor:
        """The loss of the ``(N, C)`` logits ``X`` for the class indices ``target``."""
        return family.entmax_bisect_loss(
            X, target, alpha=self.alpha, n_iter=self.n_iter, ignore_index=self.ignore_index, reduction=self.reduction
        )

    def extra_repr(self) -> str:
        options = f"ignore_index={self.ignore_index}, reduction={self.reduction!r}"
        return f"alpha={self.alpha!r}, n_iter={self.n_iter}, {options}"

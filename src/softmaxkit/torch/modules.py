"""Drop-in modules: ``CrossEntropyLoss``, ``Softmax``, ``LogSoftmax``.

Each subclasses its torch namesake, so the constructor, the attributes, ``state_dict`` keys, ``isinstance``
checks and pickles are torch's; only ``forward`` runs :mod:`softmaxkit.torch.functional`. Swap the import and
nothing else changes, except the special values listed in that module (fully masked rows are finite; a mean
over no labels is 0) and the extra keywords of :class:`CrossEntropyLoss`, ``z_loss``, ``softcap`` and ``check_target``.
"""

from __future__ import annotations

import torch

from . import _core, functional

__all__ = ["CrossEntropyLoss", "LogSoftmax", "Softmax"]

Tensor = torch.Tensor


class CrossEntropyLoss(torch.nn.CrossEntropyLoss):
    r"""``torch.nn.CrossEntropyLoss`` computed by :func:`softmaxkit.torch.cross_entropy`.

    Parameters
    ----------
    weight, size_average, ignore_index, reduce, reduction, label_smoothing
        As torch's, same order and defaults.
    z_loss : float
        :math:`\lambda \ge 0`: adds :math:`\lambda \operatorname{lse}(z)^2` per row not ignored (PaLM).
    softcap : float, optional
        :math:`c > 0`: logits become :math:`c \tanh(z/c)` first (Gemma 2).
    check_target : bool
        Check class indices before computing (the default): on a GPU one device-to-host transfer per call.
        ``False`` trusts them (see :func:`softmaxkit.torch.cross_entropy`).

    Raises
    ------
    TypeError, ValueError
        Bad options, at construction (torch waits for the first call).

    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import CrossEntropyLoss
    >>> loss_fn = CrossEntropyLoss(label_smoothing=0.1, z_loss=1e-4)
    >>> loss_fn
    CrossEntropyLoss(label_smoothing=0.1, z_loss=0.0001)
    >>> loss_fn(torch.zeros(2, 3), torch.tensor([0, -100]))
    tensor(1.0987)
    >>> CrossEntropyLoss()(torch.zeros(2, 3), torch.tensor([-100, -100]))  # torch: nan
    tensor(0.)
    """

    def __init__(
        self,
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
    ) -> None:
        super().__init__(weight, size_average, ignore_index, reduce, reduction, label_smoothing)
        opts = _core.options(self.ignore_index, self.label_smoothing, self.reduction, z_loss, softcap)
        self.z_loss = opts.z_loss
        self.softcap = opts.softcap
        if not isinstance(check_target, bool):
            raise TypeError(f"check_target must be True or False; got {check_target!r}")
        self.check_target = check_target

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return functional.cross_entropy(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            z_loss=getattr(self, "z_loss", 0.0),
            softcap=getattr(self, "softcap", None),
            check_target=getattr(self, "check_target", True),
        )

    def extra_repr(self) -> str:
        parts = []
        if self.ignore_index != -100:
            parts.append(f"ignore_index={self.ignore_index}")
        if self.reduction != "mean":
            parts.append(f"reduction={self.reduction!r}")
        if self.label_smoothing:
            parts.append(f"label_smoothing={self.label_smoothing}")
        if getattr(self, "z_loss", 0.0):
            parts.append(f"z_loss={self.z_loss}")
        if getattr(self, "softcap", None) is not None:
            parts.append(f"softcap={self.softcap}")
        if not getattr(self, "check_target", True):
            parts.append("check_target=False")
        return ", ".join(parts)


class Softmax(torch.nn.Softmax):
    """``torch.nn.Softmax`` computed by :func:`softmaxkit.torch.softmax` (a fully masked row gives zeros).

    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import Softmax
    >>> Softmax(dim=-1)(torch.full((1, 2), -float("inf")))
    tensor([[0., 0.]])
    """

    def forward(self, input: Tensor) -> Tensor:
        return functional.softmax(input, self.dim, _stacklevel=5)


class LogSoftmax(torch.nn.LogSoftmax):
    """``torch.nn.LogSoftmax`` computed by :func:`softmaxkit.torch.log_softmax` (a fully masked row gives
    ``-inf`` with gradient 0).

    Examples
    --------
    >>> import torch
    >>> from softmaxkit.torch import LogSoftmax
    >>> LogSoftmax(dim=-1)(torch.full((1, 2), -float("inf")))
    tensor([[-inf, -inf]])
    """

    def forward(self, input: Tensor) -> Tensor:
        return functional.log_softmax(input, self.dim, _stacklevel=5)

"""PyTorch front: autograd Functions, drop-in modules, linear cross-entropy and vocab-parallel cross-entropy.

Import it explicitly (``import softmaxkit.torch``); ``import softmaxkit`` does not import torch.

* :func:`softmax`, :func:`log_softmax`, :func:`logsumexp`, :func:`cross_entropy`: torch's signatures, our special
  values, double backward; cross-entropy keeps only the per-row log-sum-exp for backward.
* :class:`CrossEntropyLoss`, :class:`Softmax`, :class:`LogSoftmax`: subclasses of torch's modules.
* :func:`linear_cross_entropy`, :class:`LinearCrossEntropyLoss`: the loss of ``hidden @ weight.T + bias`` without
  ever forming the ``N x V`` logits.
* :func:`vocab_parallel_cross_entropy`, :func:`vocab_parallel_linear_cross_entropy`: the vocabulary sharded over
  the ranks of a ``torch.distributed`` group, two collectives in the forward.
"""

from .distributed import vocab_parallel_cross_entropy, vocab_parallel_linear_cross_entropy
from .functional import cross_entropy, log_softmax, logsumexp, softmax
from .linear import LinearCrossEntropyLoss, linear_cross_entropy
from .modules import CrossEntropyLoss, LogSoftmax, Softmax

__all__ = [
    "CrossEntropyLoss",
    "LinearCrossEntropyLoss",
    "LogSoftmax",
    "Softmax",
    "cross_entropy",
    "linear_cross_entropy",
    "log_softmax",
    "logsumexp",
    "softmax",
    "vocab_parallel_cross_entropy",
    "vocab_parallel_linear_cross_entropy",
]

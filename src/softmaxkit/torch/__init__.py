"""PyTorch front: autograd Functions, drop-in modules, linear cross-entropy and vocab-parallel cross-entropy.

Import it explicitly (``import softmaxkit.torch``); ``import softmaxkit`` does not import torch.

* :func:`softmax`, :func:`log_softmax`, :func:`logsumexp`, :func:`cross_entropy`: torch's signatures, our special
  values, double backward; cross-entropy keeps only the per-row log-sum-exp for backward.
* :class:`CrossEntropyLoss`, :class:`Softmax`, :class:`LogSoftmax`: subclasses of torch's modules.
* :func:`sparsemax`, :func:`entmax15`, :func:`entmax_bisect` (a learnable tensor ``alpha``),
  :func:`taylor_softmax`, :func:`spherical_softmax`, :func:`sigmoid`, :func:`softplus_normalize`, their logs and
  their losses: the alternatives of ``softmaxkit.family`` with their analytic derivatives
  (``softmaxkit.torch.family``);
  :class:`Sparsemax`, :class:`Entmax15`, :class:`EntmaxBisect` and their losses with the ``entmax`` package's
  signatures.
* :func:`linear_cross_entropy`, :class:`LinearCrossEntropyLoss`: the loss of ``hidden @ weight.T + bias`` without
  ever forming the ``N x V`` logits.
* :func:`vocab_parallel_cross_entropy`, :func:`vocab_parallel_linear_cross_entropy`: the vocabulary sharded over
  the ranks of a ``torch.distributed`` group, two collectives in the forward.
"""

from .distributed import vocab_parallel_cross_entropy, vocab_parallel_linear_cross_entropy
from .family import (
    entmax15,
    entmax15_loss,
    entmax_bisect,
    entmax_bisect_loss,
    log_sigmoid,
    log_softplus_normalize,
    log_spherical_softmax,
    log_taylor_softmax,
    sigmoid,
    sigmoid_cross_entropy,
    softplus_normalize,
    softplus_normalize_cross_entropy,
    sparsemax,
    sparsemax_loss,
    spherical_cross_entropy,
    spherical_softmax,
    taylor_cross_entropy,
    taylor_softmax,
)
from .family_modules import Entmax15, Entmax15Loss, EntmaxBisect, EntmaxBisectLoss, Sparsemax, SparsemaxLoss
from .functional import cross_entropy, log_softmax, logsumexp, softmax
from .linear import LinearCrossEntropyLoss, linear_cross_entropy
from .modules import CrossEntropyLoss, LogSoftmax, Softmax

__all__ = [
    "CrossEntropyLoss",
    "Entmax15",
    "Entmax15Loss",
    "EntmaxBisect",
    "EntmaxBisectLoss",
    "LinearCrossEntropyLoss",
    "LogSoftmax",
    "Softmax",
    "Sparsemax",
    "SparsemaxLoss",
    "cross_entropy",
    "entmax15",
    "entmax15_loss",
    "entmax_bisect",
    "entmax_bisect_loss",
    "linear_cross_entropy",
    "log_sigmoid",
    "log_softmax",
    "log_softplus_normalize",
    "log_spherical_softmax",
    "log_taylor_softmax",
    "logsumexp",
    "sigmoid",
    "sigmoid_cross_entropy",
    "softmax",
    "softplus_normalize",
    "softplus_normalize_cross_entropy",
    "sparsemax",
    "sparsemax_loss",
    "spherical_cross_entropy",
    "spherical_softmax",
    "taylor_cross_entropy",
    "taylor_softmax",
    "vocab_parallel_cross_entropy",
    "vocab_parallel_linear_cross_entropy",
]

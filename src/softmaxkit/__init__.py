"""softmaxkit: the softmax output layer and its losses, exact and documented, for any array-API array."""

from .cross_entropy import cross_entropy, cross_entropy_value_and_grad
from .family import normalize, sigmoid
from .softmax import (
    log_softmax,
    log_softmax_jvp,
    log_softmax_vjp,
    logsumexp,
    softmax,
    softmax_jacobian,
    softmax_jvp,
    softmax_vjp,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "cross_entropy",
    "cross_entropy_value_and_grad",
    "log_softmax",
    "log_softmax_jvp",
    "log_softmax_vjp",
    "logsumexp",
    "normalize",
    "sigmoid",
    "softmax",
    "softmax_jacobian",
    "softmax_jvp",
    "softmax_vjp",
]

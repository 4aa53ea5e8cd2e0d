"""The alternatives to softmax, one module each: mapping, derivatives and loss together.

============================  ==========================================================================
module                        what it holds
============================  ==========================================================================
``normalize``                 standard normalisation of non-negative scores, :math:`x_i / \\sum_j x_j`
``softplus_normalize``        the same on softplus of the logits: the registry's "normalize" layer
``sigmoid``                   one-vs-rest sigmoids and their binary cross-entropy
``taylor``, ``spherical``     Taylor and spherical softmax (de Brébisson & Vincent 2016)
``sparsemax``, ``entmax``,    sparse mappings and their Fenchel–Young losses (Martins & Astudillo 2016;
``entmax_bisect``             Peters, Niculae & Martins 2019)
``hinge``                     multiclass hinge losses (Crammer–Singer, Weston–Watkins)
============================  ==========================================================================
"""

from .entmax import entmax15, entmax15_jacobian, entmax15_jvp, entmax15_loss, entmax15_loss_value_and_grad, entmax15_vjp
from .entmax_bisect import (
    entmax_bisect,
    entmax_bisect_jacobian,
    entmax_bisect_jvp,
    entmax_bisect_loss,
    entmax_bisect_loss_value_and_grad,
    entmax_bisect_vjp,
)
from .hinge import multiclass_hinge_loss, multiclass_hinge_loss_value_and_grad
from .normalize import normalize, normalize_jacobian, normalize_jvp, normalize_vjp
from .sigmoid import (
    log_sigmoid,
    sigmoid,
    sigmoid_cross_entropy,
    sigmoid_cross_entropy_value_and_grad,
    sigmoid_jacobian,
    sigmoid_jvp,
    sigmoid_vjp,
)
from .softplus_normalize import (
    log_softplus_normalize,
    softplus_normalize,
    softplus_normalize_cross_entropy,
    softplus_normalize_cross_entropy_value_and_grad,
    softplus_normalize_jacobian,
    softplus_normalize_jvp,
    softplus_normalize_vjp,
)
from .sparsemax import (
    sparsemax,
    sparsemax_jacobian,
    sparsemax_jvp,
    sparsemax_loss,
    sparsemax_loss_value_and_grad,
    sparsemax_vjp,
)
from .spherical import (
    log_spherical_softmax,
    spherical_cross_entropy,
    spherical_cross_entropy_value_and_grad,
    spherical_softmax,
    spherical_softmax_jacobian,
    spherical_softmax_jvp,
    spherical_softmax_vjp,
)
from .taylor import (
    log_taylor_softmax,
    taylor_cross_entropy,
    taylor_cross_entropy_value_and_grad,
    taylor_softmax,
    taylor_softmax_jacobian,
    taylor_softmax_jvp,
    taylor_softmax_vjp,
)

__all__ = [
    "entmax15",
    "entmax15_jacobian",
    "entmax15_jvp",
    "entmax15_loss",
    "entmax15_loss_value_and_grad",
    "entmax15_vjp",
    "entmax_bisect",
    "entmax_bisect_jacobian",
    "entmax_bisect_jvp",
    "entmax_bisect_loss",
    "entmax_bisect_loss_value_and_grad",
    "entmax_bisect_vjp",
    "log_sigmoid",
    "log_softplus_normalize",
    "log_spherical_softmax",
    "log_taylor_softmax",
    "multiclass_hinge_loss",
    "multiclass_hinge_loss_value_and_grad",
    "normalize",
    "normalize_jacobian",
    "normalize_jvp",
    "normalize_vjp",
    "sigmoid",
    "sigmoid_cross_entropy",
    "sigmoid_cross_entropy_value_and_grad",
    "sigmoid_jacobian",
    "sigmoid_jvp",
    "sigmoid_vjp",
    "softplus_normalize",
    "softplus_normalize_cross_entropy",
    "softplus_normalize_cross_entropy_value_and_grad",
    "softplus_normalize_jacobian",
    "softplus_normalize_jvp",
    "softplus_normalize_vjp",
    "sparsemax",
    "sparsemax_jacobian",
    "sparsemax_jvp",
    "sparsemax_loss",
    "sparsemax_loss_value_and_grad",
    "sparsemax_vjp",
    "spherical_cross_entropy",
    "spherical_cross_entropy_value_and_grad",
    "spherical_softmax",
    "spherical_softmax_jacobian",
    "spherical_softmax_jvp",
    "spherical_softmax_vjp",
    "taylor_cross_entropy",
    "taylor_cross_entropy_value_and_grad",
    "taylor_softmax",
    "taylor_softmax_jacobian",
    "taylor_softmax_jvp",
    "taylor_softmax_vjp",
]

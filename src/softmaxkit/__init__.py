"""softmaxkit: the softmax output layer and its losses, exact and documented, for any array-API array.

The top level holds the mappings, their losses (with ``*_value_and_grad``), the backend switch, the registry of
output layers, the classifier and calibration. The derivatives of each mapping (``*_jvp``, ``*_vjp``,
``*_jacobian``) live in its module (:mod:`softmaxkit.softmax`, :mod:`softmaxkit.family.sparsemax`, ...) and on
its :class:`OutputLayer`.
"""

import typing

from . import calibration
from ._backend import backend
from .cross_entropy import cross_entropy, cross_entropy_value_and_grad
from .family.entmax import entmax15, entmax15_loss, entmax15_loss_value_and_grad
from .family.entmax_bisect import entmax_bisect, entmax_bisect_loss, entmax_bisect_loss_value_and_grad
from .family.hinge import multiclass_hinge_loss, multiclass_hinge_loss_value_and_grad
from .family.normalize import normalize
from .family.sigmoid import log_sigmoid, sigmoid, sigmoid_cross_entropy, sigmoid_cross_entropy_value_and_grad
from .family.softplus_normalize import (
    log_softplus_normalize,
    softplus_normalize,
    softplus_normalize_cross_entropy,
    softplus_normalize_cross_entropy_value_and_grad,
)
from .family.sparsemax import sparsemax, sparsemax_loss, sparsemax_loss_value_and_grad
from .family.spherical import (
    log_spherical_softmax,
    spherical_cross_entropy,
    spherical_cross_entropy_value_and_grad,
    spherical_softmax,
)
from .family.taylor import log_taylor_softmax, taylor_cross_entropy, taylor_cross_entropy_value_and_grad, taylor_softmax
from .layers import OUTPUT_LAYERS, OutputLayer, get_output_layer, register_output_layer
from .softmax import log_softmax, logsumexp, softmax

__version__ = "0.1.0"

# The one list of public names (tests/test_public_api.py checks it against what is imported above and against
# the README's tables).
__all__ = [
    "OUTPUT_LAYERS",
    "OutputLayer",
    "SoftmaxClassifier",
    "__version__",
    "backend",
    "calibration",
    "cross_entropy",
    "cross_entropy_value_and_grad",
    "entmax15",
    "entmax15_loss",
    "entmax15_loss_value_and_grad",
    "entmax_bisect",
    "entmax_bisect_loss",
    "entmax_bisect_loss_value_and_grad",
    "get_output_layer",
    "log_sigmoid",
    "log_softmax",
    "log_softplus_normalize",
    "log_spherical_softmax",
    "log_taylor_softmax",
    "logsumexp",
    "multiclass_hinge_loss",
    "multiclass_hinge_loss_value_and_grad",
    "normalize",
    "register_output_layer",
    "sigmoid",
    "sigmoid_cross_entropy",
    "sigmoid_cross_entropy_value_and_grad",
    "softmax",
    "softplus_normalize",
    "softplus_normalize_cross_entropy",
    "softplus_normalize_cross_entropy_value_and_grad",
    "sparsemax",
    "sparsemax_loss",
    "sparsemax_loss_value_and_grad",
    "spherical_cross_entropy",
    "spherical_cross_entropy_value_and_grad",
    "spherical_softmax",
    "taylor_cross_entropy",
    "taylor_cross_entropy_value_and_grad",
    "taylor_softmax",
]


def __getattr__(name: str) -> typing.Any:
    """``SoftmaxClassifier`` on first use: it needs scikit-learn and SciPy (``pip install 'softmaxkit[compare]'``),
    which ``import softmaxkit`` does not."""
    if name == "SoftmaxClassifier":
        from .classifier import SoftmaxClassifier

        return SoftmaxClassifier
    raise AttributeError(f"module 'softmaxkit' has no attribute {name!r}")

"""The alternatives to softmax, one module each: mapping, derivatives and loss together."""

from .normalize import normalize
from .sigmoid import sigmoid

__all__ = ["normalize", "sigmoid"]

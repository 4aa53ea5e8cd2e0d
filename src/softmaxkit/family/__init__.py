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

from . import entmax as _entmax
from . import entmax_bisect as _entmax_bisect
from . import hinge as _hinge
from . import normalize as _normalize
from . import sigmoid as _sigmoid
from . import softplus_normalize as _softplus_normalize
from . import sparsemax as _sparsemax
from . import spherical as _spherical
from . import taylor as _taylor
from .entmax import *  # noqa: F403
from .entmax_bisect import *  # noqa: F403
from .hinge import *  # noqa: F403
from .normalize import *  # noqa: F403
from .sigmoid import *  # noqa: F403
from .softplus_normalize import *  # noqa: F403
from .sparsemax import *  # noqa: F403
from .spherical import *  # noqa: F403
from .taylor import *  # noqa: F403

# every public name of every module, each list written once, in its module
__all__ = [
    *_entmax.__all__,
    *_entmax_bisect.__all__,
    *_hinge.__all__,
    *_normalize.__all__,
    *_sigmoid.__all__,
    *_softplus_normalize.__all__,
    *_sparsemax.__all__,
    *_spherical.__all__,
    *_taylor.__all__,
]

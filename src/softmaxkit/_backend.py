"""Which implementation runs: the generic (reference) code or the numba kernels.

``auto`` (the default) sends NumPy float32/float64 arrays of at least :data:`THRESHOLD` elements to the
kernels when numba is installed, and everything else to the generic code; ``reference`` always takes the
generic code; ``numba`` takes the kernels for every NumPy float32/float64 array whatever its size (the tests
use it), and raises if numba is missing. Options the kernels do not implement (``logsumexp``'s ``b``) always
take the generic code. The choice comes from, in order: the ``backend=`` keyword of a call, the innermost
``with softmaxkit.backend(...)`` block, the ``SOFTMAXKIT_BACKEND`` environment variable, ``auto``.

Both paths compute the same formulas with the same special values; validation happens before the choice, so
errors are identical.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

BACKENDS = ("auto", "reference", "numba")

THRESHOLD = 4096
"""Smallest input (in elements) that ``auto`` sends to the kernels.

The kernels are faster at every size (``softmaxkit bench``: a row of 1000 float32 takes about 20 us against the
reference's 50 us, the Python around the call being most of both), but the first call in a process loads numba
and the compiled kernels from the on-disk cache, about half a second: a program that only ever calls softmax on
a few small vectors should not pay that. From a few thousand elements on, or for repeated calls, it is paid back.
"""

_CHOICE: contextvars.ContextVar[str | None] = contextvars.ContextVar("softmaxkit_backend", default=None)


def _checked(value: Any, name: str) -> str:
    if value not in BACKENDS:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, BACKENDS))}; got {value!r}")
    return str(value)


@contextmanager
def backend(name: str) -> Iterator[None]:
    """Run the enclosed calls on one backend: ``"auto"``, ``"reference"`` or ``"numba"``.

    The setting is local to the thread (and asyncio task) and is undone on exit; a ``backend=`` keyword on a
    call still wins.

    Parameters
    ----------
    name : {"auto", "reference", "numba"}
        ``reference`` forces the generic array-API code; ``numba`` forces the CPU kernels for every NumPy
        float32/float64 input; ``auto`` lets the size decide.

    Raises
    ------
    ValueError
        ``name`` is not one of the three.

    Examples
    --------
    >>> import numpy as np, softmaxkit as sk
    >>> with sk.backend("reference"):
    ...     p = sk.softmax(np.zeros((2, 3)))
    >>> print(p[0])
    [0.33333333 0.33333333 0.33333333]
    """
    token = _CHOICE.set(_checked(name, "backend"))
    try:
        yield
    finally:
        _CHOICE.reset(token)


def resolve(keyword: Any = None) -> str:
    """The backend in force for a call whose ``backend=`` keyword is ``keyword`` (None: not given).

    Raises
    ------
    ValueError
        An unknown name (keyword, context or environment variable), naming where it came from.
    """
    if keyword is not None:
        return _checked(keyword, "backend")
    chosen = _CHOICE.get()
    if chosen is not None:
        return chosen
    env = os.environ.get("SOFTMAXKIT_BACKEND")
    if env:
        return _checked(env, "the environment variable SOFTMAXKIT_BACKEND")
    return "auto"


def use_kernel(source: Any, mode: str) -> bool:
    """Whether a call on ``source`` (the caller's data argument, as given) goes to the numba kernels.

    Only NumPy float32/float64 arrays qualify (float16 and integers, which the reference computes in float32 or
    float64, stay there too, as do Python sequences and every other array library). ``mode`` is what
    :func:`resolve` returned for the call (resolved first, with the other argument checks).

    Raises
    ------
    ImportError
        ``numba`` was asked for and numba is not installed.
    """
    if mode == "reference":
        return False
    if type(source) is not np.ndarray or source.dtype not in (np.float32, np.float64):
        return False
    from .kernels import numba as kernels

    if mode == "numba":
        if not kernels.available():
            raise ImportError("backend='numba' needs numba, which is not installed (pip install numba)")
        return True
    return source.size >= THRESHOLD and kernels.available()

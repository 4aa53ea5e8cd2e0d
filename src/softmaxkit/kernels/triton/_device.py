r"""Device functions the Triton kernels share: ``expm1``, ``log1p`` and the softcap with its derivative.

``tl`` has no ``expm1``, ``log1p`` or ``tanh`` in every Triton version we support, and ``libdevice``'s are
missing from Triton's interpreter (on which the tests run), so they are written here from ``tl.exp`` and
``tl.log``, with a short series near 0 where :math:`e^x - 1` and :math:`\log(1 + s)` would cancel. Used by
:mod:`.ops` (the row kernels) and :mod:`.linear` (linear cross-entropy). Importing this module imports Triton.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import triton  # type: ignore[import-untyped, unused-ignore]
import triton.language as tl  # type: ignore[import-untyped, unused-ignore]

__all__ = ["expm1", "log1p", "tanh_cap"]

_jit = cast(Callable[[Callable[..., Any]], Any], triton.jit)


@_jit
def expm1(x: tl.tensor) -> tl.tensor:
    """:math:`e^x - 1` to float32 accuracy: Taylor series (degree 10) for :math:`|x| < 1/2`, else ``exp - 1``."""
    small = tl.abs(x) < 0.5
    s = tl.where(small, x, 0.0)
    p = 1.0 / 3628800.0
    p = p * s + 1.0 / 362880.0
    p = p * s + 1.0 / 40320.0
    p = p * s + 1.0 / 5040.0
    p = p * s + 1.0 / 720.0
    p = p * s + 1.0 / 120.0
    p = p * s + 1.0 / 24.0
    p = p * s + 1.0 / 6.0
    p = p * s + 0.5
    p = p * s + 1.0
    return tl.where(small, p * s, tl.exp(x) - 1.0)


@_jit
def log1p(s: tl.tensor) -> tl.tensor:
    r""":math:`\log(1 + s)` for :math:`s \ge 0`: :math:`2\operatorname{atanh}(s/(2+s))` by its series for
    :math:`s < 1/2`, else ``log(1 + s)``."""
    small = s < 0.5
    r = tl.where(small, s, 0.0) / (2.0 + tl.where(small, s, 0.0))
    r2 = r * r
    p = 1.0 / 13.0
    p = p * r2 + 1.0 / 11.0
    p = p * r2 + 1.0 / 9.0
    p = p * r2 + 1.0 / 7.0
    p = p * r2 + 1.0 / 5.0
    p = p * r2 + 1.0 / 3.0
    p = p * r2 + 1.0
    return tl.where(small, 2.0 * r * p, tl.log(1.0 + s))


@_jit
def tanh_cap(z: tl.tensor, cap: tl.tensor) -> tuple[tl.tensor, tl.tensor]:
    r""":math:`c\tanh(z/c)` (``-inf`` stays ``-inf``) and its derivative :math:`1 - \tanh^2(z/c)`.

    With :math:`e = \operatorname{expm1}(2|a|)`, :math:`\tanh|a| = e/(e + 2)` and
    :math:`1 - \tanh^2 = \frac{2}{e+2}(1 + \tanh|a|)`, neither of which cancels.
    """
    a = z / cap
    b = tl.minimum(tl.abs(a), 20.0)  # tanh(20) is 1 in float32
    e = expm1(2.0 * b)
    t = e / (e + 2.0)
    capped = tl.where(z == float("-inf"), float("-inf"), cap * tl.where(a < 0.0, -t, t))
    dcap = tl.where(z == float("-inf"), 0.0, (2.0 / (e + 2.0)) * (1.0 + t))
    return capped, dcap

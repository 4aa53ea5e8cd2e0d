r"""Vectorisable math for the numba kernels: ``exp``, ``expm1``, ``log1p`` and the LLVM helpers they use.

libm's ``exp`` is a scalar call, about 1 GB/s of float32 on one core: it would be the bottleneck of every
kernel. :func:`vexp` is written so that LLVM vectorises it (16 float32 or 8 float64 lanes with AVX-512): no
branch, no table, no call.

Range reduction. With :math:`k = \operatorname{round}(x / \ln 2)` and :math:`r = x - k \ln 2`,
:math:`|r| \le \ln 2 / 2` and :math:`e^x = 2^k e^r`. The rounding of :math:`x \log_2 e` to an integer is the
"magic number" trick: adding :math:`M = 1.5 \cdot 2^{23}` (float32) or :math:`1.5 \cdot 2^{52}` (float64) leaves
:math:`k` in the low mantissa bits of :math:`t = x \log_2 e + M`, rounded to nearest, and :math:`t - M` is
:math:`k` as a float, exactly. :math:`k \ln 2` is subtracted in two parts (Cody & Waite 1980): :math:`\ln
2_{hi}` has so few significant bits (16 for float32, 42 for float64) that :math:`k \ln 2_{hi}` is exact for
every :math:`k` the clamped range produces, and :math:`\ln 2_{lo}` carries the rest, so :math:`r` is accurate
far below an ulp.

Polynomial. :math:`e^r = 1 + r + r^2 P(r)`, with :math:`P` of degree 5 (float32) or 10 (float64): the
Chebyshev interpolant of :math:`(e^r - 1 - r)/r^2` on :math:`[-\ln 2/2, \ln 2/2]`, computed in 50-digit mpmath
and rounded to the dtype. Its own relative error is below :math:`7 \cdot 10^{-10}` (float32) and :math:`4 \cdot
10^{-19}` (float64), so what is left is rounding: the last addition of 1, half an ulp, plus a small part of
one from :math:`r + r^2 P`. Horner's scheme with fused multiply-adds (``fastmath={"contract"}``, nothing
reassociated).

Scaling. :math:`p \cdot 2^k` must round once, so that results that underflow into the subnormals are rounded
correctly and results beyond the range overflow to ``inf``. With AVX-512 it is ``llvm.ldexp``, which becomes the
single instruction ``vscalef`` (the whole ``exp`` is then about twice as fast); elsewhere :math:`2^k` is built
from bits (exponent field :math:`k + \text{bias}`) in two halves, :math:`2^{\lfloor k/2 \rfloor} \cdot 2^{k -
\lfloor k/2 \rfloor}`, both normal numbers: the first product is exact and the second rounds once. (numba
compiles for the host CPU, and its cache is keyed on the CPU's features, so each machine gets its own.) The
kernels' exponentials are of :math:`x - m \le 0`, where :func:`vexp_nonpos` needs only a lower clamp and scales
by :math:`(p\, 2^{k + c})\, 2^{-c}`, a constant second factor: the same results with four operations instead of
eight where AVX-512 is missing.

Special values. Inputs are clamped first to where the result is already 0 or ``inf`` (float32:
:math:`[-104, 89]`, float64: :math:`[-746, 710]`), so ``-inf`` gives 0, ``+inf`` gives ``inf``, and ``nan``,
which no comparison moves, stays ``nan``.

Measured against mpmath on the whole domain (tests/test_kernels_cpu.py): :func:`vexp` within 1 ulp and
:func:`vexpm1` within 2 ulp, float32 and float64, subnormal results included; :func:`vlog1p` (float64, for the
normaliser's row sums) within 1.5 ulp.

numba's on-disk cache keys each kernel on the source of its own file only: a kernel in :mod:`.cpu` cached
before an edit here would be reused unchanged. ``cpu.SOURCES_SHA`` holds the hash of this file and of
``_rows.py``, and a test fails until it is updated, which changes :mod:`.cpu` and so invalidates its cache.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from ._runtime import caching

__all__ = [
    "exp_array",
    "exp_nonpos_array",
    "exp_nonpos_portable_array",
    "exp_portable_array",
    "expm1_array",
    "from_sortkey",
    "jit",
    "log1p_array",
    "maxnum",
    "sortkey",
    "vector_span",
    "vexp",
    "vexp_nonpos",
    "vexpm1",
    "vlog1p",
    "wide",
]

F = TypeVar("F", bound=Callable[..., Any])


def jit(cache: bool = False, variant: str | None = None, nrt: bool = False, **options: Any) -> Callable[[F], F]:
    """``numba.njit`` with our defaults: no GIL, NumPy's float error model (no checks), no reference counting.

    ``nrt=False`` compiles without numba's runtime (numba's ``_nrt`` option): no array may be allocated or
    returned, and a slice such as ``x[i]`` costs no reference count. With it, every slice of an array passed in
    from Python increments and decrements one shared count, an atomic operation and a call each: a quarter of the
    time of softmax at 128 x 1000 on one thread, more with threads contending for that count's cache line. The
    kernels that allocate scratch of their own (``_kernels.py``, ``_family.py``) pass ``nrt=True``. The option
    is set on every function either way: numba gives a callee that leaves it unset its first caller's setting.

    ``cache=True`` only for the functions called from Python (the kernels): numba keys a cached function on
    its own file, so a helper cached on its own could outlive an edit of a file it calls into, whereas a helper
    without a cache is compiled afresh into whichever kernel is compiled.

    ``variant`` is required of every closure that a factory makes more than one of (one per value of a
    constant): it is appended to the function's name. numba names the machine code of a function after its
    qualified name and a counter private to the process, so two closures of one factory, compiled into cached
    kernels by two processes, could carry the same symbol; a third process that loaded both kernels from the
    cache then ran one body for both (log_softmax read softmax's pass: errors of 5.6).
    """
    private: dict[str, Any] = {"_nrt": nrt}  # numba's own option, not in its type stubs
    njit = numba.njit(cache=cache and caching(), nogil=True, error_model="numpy", **private, **options)

    def decorate(func: F) -> F:
        if variant is not None:
            func.__name__ = f"{func.__name__}_{variant}"
            func.__qualname__ = f"{func.__qualname__}_{variant}"
        return cast(F, njit(func))

    return decorate


def _intrinsic(func: Callable[..., Any]) -> Callable[..., Any]:
    return cast(Callable[..., Any], intrinsic(func))


# ----------------------------------------------------------------------------------------- LLVM helpers
_BITS = {
    types.float32: (ir.IntType(32), 127, 23, int(np.float32(1.5 * 2**23).view(np.int32))),
    types.float64: (ir.IntType(64), 1023, 52, int(np.float64(1.5 * 2**52).view(np.int64))),
}


_LOW = {32: 64, 64: 512}
"""Per width, the exponent offset ``c`` of :func:`_scale2k_low`: ``k + c`` stays normal for every ``k <= 0``."""


def _scale_codegen(mode: str) -> Callable[..., Any]:
    """``p * 2**k``: ``"native"`` (``vscalef`` with AVX-512, else as ``"portable"``), ``"portable"`` (two
    products by halves of ``k``), ``"low"`` (``vscalef``, else as ``"low-portable"``) or ``"low-portable"``
    (``k <= 0`` only: two products, one of them by a constant)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        pv, tv = args
        ity, bias, shift, magic = _BITS[signature.args[0]]
        if mode in ("native", "low") and "+avx512f" in context.codegen().magic_tuple()[2]:
            # llvm.ldexp vectorises to AVX-512's vscalef: one instruction, correctly rounded like the two below
            k = builder.sub(builder.bitcast(tv, ity), ir.Constant(ity, magic))
            i32 = ir.IntType(32)
            k32 = builder.trunc(k, i32) if ity.width > 32 else k
            fnty = ir.FunctionType(pv.type, [pv.type, i32])
            fn = builder.module.declare_intrinsic("llvm.ldexp", [pv.type, i32], fnty)
            return builder.call(fn, [pv, k32])
        if mode.startswith("low"):
            # p 2^(k + c) is normal and exact (k + c in [-86, 64] for float32, [-563, 512] for float64), and the
            # product by the constant 2^-c rounds once: the one rounding of p 2^k, subnormal results included
            c = _LOW[ity.width]
            up = builder.shl(builder.add(builder.bitcast(tv, ity), ir.Constant(ity, bias + c - magic)),
                             ir.Constant(ity, shift))  # fmt: skip
            return builder.fmul(builder.fmul(pv, builder.bitcast(up, pv.type)), ir.Constant(pv.type, 2.0**-c))
        k = builder.sub(builder.bitcast(tv, ity), ir.Constant(ity, magic))
        k1 = builder.ashr(k, ir.Constant(ity, 1))
        k2 = builder.sub(k, k1)
        pow1 = builder.bitcast(builder.shl(builder.add(k1, ir.Constant(ity, bias)), ir.Constant(ity, shift)), pv.type)
        pow2 = builder.bitcast(builder.shl(builder.add(k2, ir.Constant(ity, bias)), ir.Constant(ity, shift)), pv.type)
        return builder.fmul(builder.fmul(pv, pow1), pow2)

    return codegen


@_intrinsic
def _scale2k(typingctx: Any, p: Any, t: Any) -> Any:
    """``p * 2**k``, ``t = MAGIC + k`` holding ``k`` in its low bits, rounded once (subnormals, overflow).

    With AVX-512 this is ``llvm.ldexp`` (``vscalef``); elsewhere :func:`_scale2k_portable`'s two products.
    """
    if p != t or p not in _BITS:
        return None
    return p(p, t), _scale_codegen("native")


@_intrinsic
def _scale2k_portable(typingctx: Any, p: Any, t: Any) -> Any:
    """``p * 2**k`` as two products by powers of two built from bits, :math:`2^{\\lfloor k/2 \\rfloor}` and
    :math:`2^{k - \\lfloor k/2 \\rfloor}`: both normal, so the first is exact and the second rounds once."""
    if p != t or p not in _BITS:
        return None
    return p(p, t), _scale_codegen("portable")


@_intrinsic
def _scale2k_low(typingctx: Any, p: Any, t: Any) -> Any:
    """``p * 2**k`` for ``k <= 0``: ``vscalef`` with AVX-512, else :math:`(p\\, 2^{k + c})\\, 2^{-c}`, the first
    product exact and the second rounding once (``c``: :data:`_LOW`); four operations instead of eight."""
    if p != t or p not in _BITS:
        return None
    return p(p, t), _scale_codegen("low")


@_intrinsic
def _scale2k_low_portable(typingctx: Any, p: Any, t: Any) -> Any:
    """:func:`_scale2k_low` as it is where AVX-512 is missing (for tests)."""
    if p != t or p not in _BITS:
        return None
    return p(p, t), _scale_codegen("low-portable")


@_intrinsic
def maxnum(typingctx: Any, a: Any, b: Any) -> Any:
    """IEEE ``maxNum``: the larger of two numbers, ignoring a ``nan`` (LLVM vectorises its reductions)."""
    if a != b or a not in _BITS:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        fty = args[0].type
        fn = builder.module.declare_intrinsic("llvm.maxnum", [fty], ir.FunctionType(fty, [fty, fty]))
        return builder.call(fn, args)

    return a(a, b), codegen


@_intrinsic
def wide(typingctx: Any) -> Any:
    """Let LLVM vectorise the calling function's loops at 512 bits where the CPU has AVX-512.

    LLVM tunes its Intel server targets (Skylake-X to Emerald Rapids) to prefer 256-bit vectors, for the clock
    throttling of early AVX-512 parts; our exponential loops then run at half the lanes the CPU has and about
    1.3 times slower than at 512 bits (benchmarks/bench_targets.py). This sets the function attribute
    ``"prefer-vector-width"="512"`` on the function being compiled, and only there: other numba code in the
    process keeps LLVM's choice. numba vectorises a function's loops when it compiles that function, before it
    is inlined into a caller, so the call goes in the function that holds the loop. On a CPU without AVX-512
    the widest legal vector is narrower and the attribute changes nothing.
    """

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        # llvmlite checks attribute names against a list of keywords; a string attribute is added as a string
        set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        return context.get_dummy_value()

    return types.none(), codegen


@_intrinsic
def vector_span(typingctx: Any, x: Any) -> Any:
    """The entries of ``x``'s dtype that one step of LLVM's vector loop over an exponential takes: four vectors
    of the widest registers (float32: 16 x 4 lanes with AVX-512, 8 x 4 with AVX2; float64 half as many), a
    constant of the compiled code. LLVM runs the rest of such a loop in scalar code (:data:`._rows.PAD`)."""
    if x not in (types.float32, types.float64):
        return None
    item = 4 if x == types.float32 else 8

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        register = 64 if "+avx512f" in context.codegen().magic_tuple()[2] else 32
        return ir.Constant(ir.IntType(64), 4 * register // item)

    return types.int64(x), codegen


@_intrinsic
def sortkey(typingctx: Any, x: Any) -> Any:
    """An integer of ``x``'s width whose signed order is the float order of ``x`` (``-0.0`` just below ``+0.0``).

    The bits of a non-negative float already sort as a signed integer; a negative one's magnitude bits are
    flipped, so that a larger magnitude sorts lower. A nan sorts above ``+inf`` (sign bit clear) or below
    ``-inf`` (set). LLVM vectorises an integer maximum with several accumulators, where a ``maxnum`` reduction
    gets one and waits on its latency: :func:`._rows._row_max` reduces keys, three times as fast.
    """
    ity: Any = {types.float32: types.int32, types.float64: types.int64}.get(x)
    if ity is None:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        it = ir.IntType(ity.bitwidth)
        bits = builder.bitcast(args[0], it)
        sign = builder.ashr(bits, ir.Constant(it, ity.bitwidth - 1))  # all ones for a negative float
        return builder.xor(bits, builder.and_(sign, ir.Constant(it, (1 << (ity.bitwidth - 1)) - 1)))

    return ity(x), codegen


@_intrinsic
def from_sortkey(typingctx: Any, key: Any, like: Any) -> Any:
    """The float of ``like``'s type whose :func:`sortkey` is ``key`` (the map is its own inverse)."""
    if like not in _BITS or key.bitwidth != like.bitwidth:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        it = args[0].type
        sign = builder.ashr(args[0], ir.Constant(it, it.width - 1))
        bits = builder.xor(args[0], builder.and_(sign, ir.Constant(it, (1 << (it.width - 1)) - 1)))
        return builder.bitcast(bits, args[1].type)

    return like(key, like), codegen


@_intrinsic
def _mantissa(typingctx: Any, u: Any) -> Any:
    """The significand of a positive normal float64 as a float64 in ``[1, 2)`` (its exponent field set to 0)."""
    if u != types.float64:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        i64 = ir.IntType(64)
        bits = builder.bitcast(args[0], i64)
        frac = builder.and_(bits, ir.Constant(i64, (1 << 52) - 1))
        return builder.bitcast(builder.or_(frac, ir.Constant(i64, 1023 << 52)), args[0].type)

    return u(u), codegen


@_intrinsic
def _exponent(typingctx: Any, u: Any) -> Any:
    """The unbiased binary exponent of a positive normal float64, as a float64."""
    if u != types.float64:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        i64 = ir.IntType(64)
        field = builder.and_(builder.lshr(builder.bitcast(args[0], i64), ir.Constant(i64, 52)), ir.Constant(i64, 2047))
        return builder.sitofp(builder.sub(field, ir.Constant(i64, 1023)), args[0].type)

    return u(u), codegen


# ------------------------------------------------------------------------------------------ exp, expm1
# Cody-Waite split of ln 2: the high part has 16 (float32) / 42 (float64) significant bits, so k * LN2_HI is
# exact for every k the clamped range produces (|k| <= 150 / 1076).
# Per dtype: (log2 e, MAGIC, ln2_hi, ln2_lo, lower clamp, upper clamp). Below the lower clamp e^x rounds to 0
# (float32: e^-104 < 2^-150, float64: e^-746 < 2^-1075); above the upper one it overflows.
_K32 = tuple(np.float32(v) for v in (1.4426950408889634, 1.5 * 2**23, 0.693145751953125, 1.428606765330187e-06,
                                     -104.0, 89.0))  # fmt: skip
_K64 = tuple(np.float64(v) for v in (1.4426950408889634, 1.5 * 2**52, 0.6931471805598903, 5.497923018708371e-14,
                                     -746.0, 710.0))  # fmt: skip
_ONE32, _ONE64 = np.float32(1.0), np.float64(1.0)
_BIG32, _BIG64 = np.float32(25 * math.log(2)), np.float64(54 * math.log(2))  # e^x - 1 rounds to e^x above
# Chebyshev interpolants of (e^r - 1 - r) / r^2 on [-ln2/2, ln2/2] (mpmath, 50 digits), lowest degree first.
_P32 = tuple(
    np.float32(c)
    for c in (0.5, 0.1666666716337204, 0.04166646674275398, 0.00833331048488617, 0.0013933641603216529,
              0.00019890980911441147)
)  # fmt: skip
_P64 = tuple(
    np.float64(c)
    for c in (0.5, 0.1666666666666667, 0.04166666666666667, 0.008333333333326141, 0.0013888888888883752,
              0.00019841269874800493, 2.4801587325533363e-05, 2.7557255425746435e-06, 2.7557273661348637e-07,
              2.510520637395701e-08, 2.0914679376583935e-09)
)  # fmt: skip


@jit(fastmath={"contract"})
def _core32(xx: Any) -> Any:
    """``(t, q)`` with ``t = MAGIC + k`` and ``q = e^r - 1``, ``xx = k ln 2 + r``, for a clamped float32 ``xx``."""
    log2e, magic, ln2_hi, ln2_lo, _, _ = _K32
    t = xx * log2e + magic  # k + MAGIC, k = round(x / ln 2)
    kf = t - magic
    r = (xx - kf * ln2_hi) - kf * ln2_lo
    c0, c1, c2, c3, c4, c5 = _P32
    return t, r + (r * r) * (c0 + r * (c1 + r * (c2 + r * (c3 + r * (c4 + r * c5)))))


@jit(fastmath={"contract"})
def _core64(xx: Any) -> Any:
    """As :func:`_core32`, for float64."""
    log2e, magic, ln2_hi, ln2_lo, _, _ = _K64
    t = xx * log2e + magic
    kf = t - magic
    r = (xx - kf * ln2_hi) - kf * ln2_lo
    c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10 = _P64
    r2 = r * r
    high = c6 + r * (c7 + r * (c8 + r * (c9 + r * c10)))
    return t, r + r2 * (c0 + r * (c1 + r * (c2 + r * (c3 + r * (c4 + r * (c5 + r * high))))))


@jit(fastmath={"contract"})
def _reduce32(x: Any) -> Any:
    """``(t, q)`` with ``t = MAGIC + k`` and ``q = e^r - 1``, ``x = k ln 2 + r`` (float32)."""
    lo, hi = _K32[4], _K32[5]
    xx = lo if x < lo else x  # nan passes both clamps untouched
    xx = hi if xx > hi else xx
    return _core32(xx)


@jit(fastmath={"contract"})
def _reduce64(x: Any) -> Any:
    """As :func:`_reduce32`, for float64."""
    lo, hi = _K64[4], _K64[5]
    xx = lo if x < lo else x
    xx = hi if xx > hi else xx
    return _core64(xx)


_EXP_OPTIONS: Any = {"fastmath": {"contract"}}  # fused multiply-adds where the CPU has them, nothing reassociated


def _reduce(x: Any) -> Any:
    """``(t, q)`` of :func:`_reduce32` / :func:`_reduce64`, by dtype. Only callable from jitted code."""
    raise NotImplementedError("_reduce is only callable inside numba-compiled functions")


@overload(_reduce, jit_options=_EXP_OPTIONS)
def _ov_reduce(x: Any) -> Any:
    impl = {types.float32: _reduce32, types.float64: _reduce64}.get(x)
    if impl is None:
        return None

    def reduce(x: Any) -> Any:
        return impl(x)

    return reduce


def _core(x: Any) -> Any:
    """``(t, q)`` of :func:`_core32` / :func:`_core64`, by dtype. Only callable from jitted code."""
    raise NotImplementedError("_core is only callable inside numba-compiled functions")


@overload(_core, jit_options=_EXP_OPTIONS)
def _ov_core(x: Any) -> Any:
    impl = {types.float32: _core32, types.float64: _core64}.get(x)
    if impl is None:
        return None

    def core(x: Any) -> Any:
        return impl(x)

    return core


def vexp(x: Any) -> Any:
    """:math:`e^x` for a float32 or float64 scalar, vectorisable (module notes). Only callable from jitted code."""
    raise NotImplementedError("vexp is only callable inside numba-compiled functions")


def vexpm1(x: Any) -> Any:
    r""":math:`e^x - 1` for a float32 or float64 scalar, vectorisable. Only callable from jitted code.

    With :math:`e^x = 2^k (1 + q)`, :math:`q = e^r - 1` from the same polynomial as :func:`vexp`,
    :math:`e^x - 1 = 2^k q + (2^k - 1)`, one fused multiply-add. For :math:`k = 0` it is :math:`q` itself, which
    keeps its relative accuracy as :math:`x \to 0`; otherwise the two terms do not cancel (:math:`|2^k q| \le
    0.41 \cdot 2^k` against :math:`|2^k - 1| \ge 1/2`).
    """
    raise NotImplementedError("vexpm1 is only callable inside numba-compiled functions")


@overload(vexp, jit_options=_EXP_OPTIONS)
def _ov_vexp(x: Any) -> Any:
    if x == types.float32:
        one = _ONE32

        def exp32(x: Any) -> Any:
            t, q = _reduce32(x)
            return _scale2k(one + q, t)

        return exp32
    if x == types.float64:
        one64 = _ONE64

        def exp64(x: Any) -> Any:
            t, q = _reduce64(x)
            return _scale2k(one64 + q, t)

        return exp64
    return None


def vexp_nonpos(x: Any) -> Any:
    r""":func:`vexp` of ``x <= 0`` (or ``-inf``, nan): the same results, with less work where AVX-512 is missing.

    The kernels' exponentials are of :math:`x_j - m \le 0`: no upper clamp is needed (the lower one is a single
    ``max``) and :math:`2^k \le 1`, so that :func:`_scale2k_low` scales in four operations instead of eight.
    Only callable from jitted code.
    """
    raise NotImplementedError("vexp_nonpos is only callable inside numba-compiled functions")


@overload(vexp_nonpos, jit_options=_EXP_OPTIONS)
def _ov_vexp_nonpos(x: Any) -> Any:
    if x == types.float32:
        one, lo = _ONE32, _K32[4]

        def exp32(x: Any) -> Any:
            t, q = _core32(lo if x < lo else x)  # nan passes the clamp untouched
            return _scale2k_low(one + q, t)

        return exp32
    if x == types.float64:
        one64, lo64 = _ONE64, _K64[4]

        def exp64(x: Any) -> Any:
            t, q = _core64(lo64 if x < lo64 else x)
            return _scale2k_low(one64 + q, t)

        return exp64
    return None


@overload(vexpm1, jit_options=_EXP_OPTIONS)
def _ov_vexpm1(x: Any) -> Any:
    if x == types.float32:
        one = _ONE32

        def expm1_32(x: Any) -> Any:
            t, q = _reduce32(x)
            s = _scale2k(one, t)
            r = _scale2k(one + q, t) if x > _BIG32 else s * q + (s - one)  # e^x - 1 = e^x beyond 2^25
            return x if x == 0 else r  # keeps the sign of -0.0

        return expm1_32
    if x == types.float64:
        one64 = _ONE64

        def expm1_64(x: Any) -> Any:
            t, q = _reduce64(x)
            s = _scale2k(one64, t)
            r = _scale2k(one64 + q, t) if x > _BIG64 else s * q + (s - one64)  # beyond 2^54
            return x if x == 0 else r

        return expm1_64
    return None


@jit(cache=True)
def exp_array(x: Any, out: Any) -> None:
    """``out[i] = vexp(x[i])`` for 1-d arrays (for tests and benchmarks)."""
    for i in range(x.size):
        out[i] = vexp(x[i])


@jit(cache=True)
def exp_portable_array(x: Any, out: Any) -> None:
    """As :func:`exp_array` with the scaling used where AVX-512 is missing (for tests)."""
    one = x.dtype.type(1.0)
    for i in range(x.size):
        t, q = _reduce(x[i])
        out[i] = _scale2k_portable(one + q, t)


@jit(cache=True)
def exp_nonpos_array(x: Any, out: Any) -> None:
    """``out[i] = vexp_nonpos(x[i])`` for 1-d arrays of ``x <= 0`` (for tests)."""
    for i in range(x.size):
        out[i] = vexp_nonpos(x[i])


@jit(cache=True)
def exp_nonpos_portable_array(x: Any, out: Any) -> None:
    """As :func:`exp_nonpos_array` with the scaling used where AVX-512 is missing (for tests)."""
    one, lo = x.dtype.type(1.0), x.dtype.type(_K32[4] if x.itemsize == 4 else _K64[4])
    for i in range(x.size):
        t, q = _core(max(x[i], lo) if x[i] == x[i] else x[i])
        out[i] = _scale2k_low_portable(one + q, t)


@jit(cache=True)
def expm1_array(x: Any, out: Any) -> None:
    """``out[i] = vexpm1(x[i])`` for 1-d arrays (for tests)."""
    for i in range(x.size):
        out[i] = vexpm1(x[i])


# ---------------------------------------------------------------------------------------------- log1p
# Chebyshev interpolant of P(w) = (2 atanh(sqrt w) / sqrt w - 2) / w on [0, ((sqrt2 - 1)/(sqrt2 + 1))^2]
# (mpmath, 50 digits), lowest degree first: log f = 2z + z w P(w), z = (f - 1)/(f + 1), w = z^2.
_PL = tuple(
    np.float64(c)
    for c in (0.6666666666666666, 0.4000000000000088, 0.28571428570803614, 0.22222222391713917,
              0.18181795640132906, 0.15386239702814658, 0.13268773138656886, 0.13086626147840102)
)  # fmt: skip
_SQRT2 = np.float64(math.sqrt(2.0))
_LN2_HI, _LN2_LO = _K64[2], _K64[3]


@jit(fastmath={"contract"})
def vlog1p(s: float) -> float:
    r"""``log1p(s)`` of a float64 ``s >= 0`` (or nan, ``inf``), vectorisable; within 1 ulp (tests).

    :math:`u = 1 + s` rounded, and its rounding error :math:`c = s - (u - 1)` by Knuth's TwoSum, exact.
    :math:`u = 2^k f` with :math:`f \in [\sqrt{1/2}, \sqrt 2)` from the bits, :math:`\log f = 2
    \operatorname{atanh} z = 2z + z w P(w)`, :math:`z = (f-1)/(f+1)`, :math:`w = z^2 \le 0.0295`, :math:`P`
    the degree-7 Chebyshev interpolant (relative error below :math:`10^{-18}`); :math:`\log u = k \ln 2 +
    \log f` with the Cody-Waite split of :math:`\ln 2`, and :math:`\operatorname{log1p}(s) = \log u + c/u`.
    The row sums of the kernels are float64 for every dtype, so only float64 is needed.
    """
    one = np.float64(1.0)
    u = one + s
    back = u - s
    c = (one - back) + (s - (u - back))  # TwoSum: 1 + s = u + c exactly
    f = _mantissa(u)
    k = _exponent(u)
    big = f > _SQRT2
    f = f * 0.5 if big else f
    k = k + one if big else k
    g = f - one  # exact
    z = g / (g + one + one)
    w = z * z
    p0, p1, p2, p3, p4, p5, p6, p7 = _PL
    hfsq = 0.5 * g * g
    lf = g - (hfsq - z * (hfsq + w * (p0 + w * (p1 + w * (p2 + w * (p3 + w * (p4 + w * (p5 + w * (p6 + w * p7)))))))))
    r = k * _LN2_HI + (lf + (k * _LN2_LO + c / u))
    return s if (u == np.inf or s != s) else r


@jit(cache=True)
def log1p_array(x: Any, out: Any) -> None:
    """``out[i] = vlog1p(x[i])`` for float64 1-d arrays (for tests)."""
    for i in range(x.size):
        out[i] = vlog1p(x[i])

"""The private engine (``softmaxkit._engine``): the online log-sum-exp state and its merge, and the confident
row that every path must keep (issue 13: ``torch.linear_cross_entropy`` once gave 0.0 for it)."""

from __future__ import annotations

import math
import socket
from collections.abc import Callable

import numpy as np
import pytest

from softmaxkit import _engine, cross_entropy

# logits [40, 0, 0], target 0: the loss is log(1 + 2 e^-40), which log(sum) rounds to 0
CONFIDENT = math.log1p(2.0 * math.exp(-40.0))


def _reference(dtype: str) -> float:
    z = np.array([[40.0, 0.0, 0.0]], dtype=dtype)
    return float(cross_entropy(z, np.array([0]), backend="reference"))


def _numba(dtype: str) -> float:
    pytest.importorskip("numba")
    z = np.array([[40.0, 0.0, 0.0]], dtype=dtype)
    return float(cross_entropy(z, np.array([0]), backend="numba"))


def _torch_ce(dtype: str) -> float:
    torch = pytest.importorskip("torch")
    from softmaxkit.torch import cross_entropy as torch_ce

    z = torch.tensor([[40.0, 0.0, 0.0]], dtype=getattr(torch, dtype))
    return float(torch_ce(z, torch.tensor([0])))


def _torch_linear(dtype: str, chunk: tuple[int, int] | None = None) -> float:
    torch = pytest.importorskip("torch")
    from softmaxkit.torch import linear_cross_entropy

    dt = getattr(torch, dtype)
    h = torch.tensor([[40.0, 0.0, 0.0]], dtype=dt)
    return float(linear_cross_entropy(h, torch.eye(3, dtype=dt), torch.tensor([0]), chunk_size=chunk))


def _jax(dtype: str, linear: bool, chunk: tuple[int, int] | None = None) -> float:
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from softmaxkit import jax as skj

    if dtype == "float64" and not jax.config.jax_enable_x64:
        pytest.skip("float64 needs jax_enable_x64")
    z = jnp.array([[40.0, 0.0, 0.0]], dtype=dtype)
    if linear:
        return float(skj.linear_cross_entropy(z, jnp.eye(3, dtype=dtype), jnp.array([0]), chunk_size=chunk))
    return float(skj.cross_entropy(z, jnp.array([0])))


def _vocab_parallel(dtype: str, linear: bool) -> float:
    torch = pytest.importorskip("torch")
    import torch.distributed as dist

    from softmaxkit.torch import vocab_parallel_cross_entropy, vocab_parallel_linear_cross_entropy

    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        dt = getattr(torch, dtype)
        z = torch.tensor([[40.0, 0.0, 0.0]], dtype=dt)
        if linear:
            return float(vocab_parallel_linear_cross_entropy(z, torch.eye(3, dtype=dt), torch.tensor([0])))
        return float(vocab_parallel_cross_entropy(z, torch.tensor([0])))
    finally:
        dist.destroy_process_group()


PATHS: dict[str, Callable[[str], float]] = {
    "reference": _reference,
    "numba": _numba,
    "torch.cross_entropy": _torch_ce,
    "torch.linear_cross_entropy": _torch_linear,
    "torch.linear_cross_entropy, one column per block": lambda dt: _torch_linear(dt, (1, 1)),
    "jax.cross_entropy": lambda dt: _jax(dt, linear=False),
    "jax.linear_cross_entropy": lambda dt: _jax(dt, linear=True),
    "jax.linear_cross_entropy, one column per block": lambda dt: _jax(dt, linear=True, chunk=(1, 1)),
    "torch.vocab_parallel_cross_entropy, 1 rank": lambda dt: _vocab_parallel(dt, linear=False),
    "torch.vocab_parallel_linear_cross_entropy, 1 rank": lambda dt: _vocab_parallel(dt, linear=True),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("path", list(PATHS))
def test_confident_row_loss_is_not_rounded_to_zero(path: str, dtype: str) -> None:
    # log(1 + s) as log1p(s) keeps s = 2e^-40 (Blanchard, Higham & Higham 2021); log of the whole sum gives 0
    rel = 1e-6 if dtype == "float32" else 1e-14
    assert PATHS[path](dtype) == pytest.approx(CONFIDENT, rel=rel)


# ------------------------------------------------------------------------------------------ merge
def _one_pass(z: np.ndarray) -> _engine.Lse:
    st = _engine.stats(np, z)
    return _engine.Lse(st.m[..., 0], st.log_norm[..., 0])


def _split(z: np.ndarray, cut: int) -> _engine.Lse:
    parts = []
    for block in (z[:, :cut], z[:, cut:]):
        m = np.max(block, axis=-1) if block.shape[-1] else np.full(block.shape[0], -np.inf)
        d = block - np.where(np.isfinite(m), m, 0.0)[:, None]
        parts.append(_engine.lse_of_shifted(np, d, m) if block.shape[-1] else _engine.Lse(m, np.zeros_like(m)))
    return _engine.merge(np, parts[0], parts[1])


@pytest.mark.parametrize("cut", [0, 1, 2, 3, 5])
def test_merge_of_two_blocks_equals_one_pass(cut: int) -> None:
    rng = np.random.default_rng(cut)
    z = np.concatenate(
        [
            rng.normal(size=(4, 5)) * 30,
            np.array([[40.0, 0.0, 0.0, -1e3, 0.0], [0.0, 0.0, 40.0, 40.0, 0.0]]),  # confident row, tied maxima
            np.array([[-np.inf] * 5, [-np.inf, 1.0, -np.inf, -np.inf, 2.0]]),  # all masked, partly masked
        ]
    )
    with np.errstate(all="ignore"):
        whole, merged = _one_pass(z), _split(z, cut)
        gaps = np.where(np.isfinite(z), np.abs(z - np.max(z, axis=-1, keepdims=True)), 0.0)
    np.testing.assert_array_equal(merged.m, whole.m)
    # a term e^(z - m) carries the rounding of z - m, a relative error up to eps |z - m|; -1e3 adds nothing
    tol = 4 * np.finfo(float).eps * (2 + np.max(np.where(gaps < 700, gaps, 0.0), axis=-1))
    assert np.all(np.abs(merged.log_norm - whole.log_norm) <= tol * whole.log_norm)


def test_merge_keeps_a_confident_rest_and_all_masked_rows() -> None:
    a = _engine.Lse(np.array([40.0, -np.inf]), np.array([0.0, 0.0]))
    b = _engine.Lse(np.array([0.0, -np.inf]), np.array([math.log(2.0), 0.0]))  # two entries at 0
    m, log_norm = _engine.merge(np, a, b)
    np.testing.assert_array_equal(m, [40.0, -np.inf])
    assert log_norm[0] == pytest.approx(CONFIDENT, rel=1e-15)
    assert log_norm[1] == 0.0


def test_pooled_shares_count_tied_maxima_once_each() -> None:
    # three parts, two holding the maximum 1.0: the sum is e^0 + e^0 + e^-1 (+ the parts' own rests)
    parts = [_engine.Lse(np.array([1.0]), np.array([0.0])) for _ in range(2)]
    parts.append(_engine.Lse(np.array([0.0]), np.array([0.0])))
    m = np.array([1.0])
    rest, tops = (sum(col) for col in zip(*(_engine.share(np, p, m) for p in parts), strict=True))
    pooled = _engine.pool(np, m, rest, tops)
    assert pooled.log_norm[0] == pytest.approx(math.log(2.0 + math.exp(-1.0)), rel=1e-15)

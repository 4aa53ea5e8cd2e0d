"""Vocab-parallel cross-entropy on torch.distributed: 2 and 4 gloo ranks on 127.0.0.1 against one process.

Each world is spawned once and runs every case in its ranks (spawning costs far more than the cases): the loss
and the gradients of the plain and the linear variant equal the single-process ones for every option, the
forward makes exactly 2 collectives (the backward none, or one for the hidden states of the linear variant),
label smoothing uses the global vocabulary (Megatron-LM #737), and a bad label raises on every rank alike.
The worker imports nothing from conftest, so that a rank starts with torch only.
"""

from __future__ import annotations

import datetime
import socket
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import softmaxkit.torch as skt

N, D, V = 13, 6, 14
# (reduction, options): every option, with class weights given as "w". The smoothing cases are the regression
# test of Megatron-LM #737 (epsilon spread over the local vocabulary): with 2 or 4 slices the loss would differ.
CASES: list[tuple[str, dict[str, Any]]] = [
    ("mean", {}),
    ("mean", {"label_smoothing": 0.2}),
    ("sum", {"weight": "w", "label_smoothing": 0.1}),
    ("none", {"z_loss": 1e-2, "softcap": 2.5}),
    ("mean", {"weight": "w", "label_smoothing": 0.1, "z_loss": 1e-2, "softcap": 3.0}),
    ("none", {"weight": "w", "label_smoothing": 0.3}),
]
F64 = {"rtol": 1e-10, "atol": 1e-12}
F32 = {"rtol": 1e-6, "atol": 1e-6}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Counter:
    """Counts the collectives of torch.distributed made through ``dist.all_reduce`` (the only one we use)
    and any other collective entry point, by wrapping them."""

    NAMES = ("all_reduce", "all_gather", "all_gather_into_tensor", "reduce_scatter", "broadcast", "all_to_all")

    def __init__(self) -> None:
        self.calls = 0
        for name in self.NAMES:
            setattr(dist, name, self._wrap(getattr(dist, name)))

    def _wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return fn(*args, **kwargs)

        return counted

    def take(self) -> int:
        calls, self.calls = self.calls, 0
        return calls


def _data(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    y = torch.randint(0, V, (N,), generator=g)
    y[[2, 7]] = -100
    y[0], y[1] = 0, V - 1  # the first and the last class: the edge slices hold a target
    return {
        "z": (torch.randn(N, V, generator=g) * 3).to(dtype),
        "h": torch.randn(N, D, generator=g).to(dtype),
        "w": torch.randn(V, D, generator=g).to(dtype),
        "b": torch.randn(V, generator=g).to(dtype),
        "cw": (torch.rand(V, generator=g) + 0.2).to(dtype),
        "y": y,
        "up": torch.randn(N, generator=g).to(dtype),
    }


def _options(opts: dict[str, Any], cw: torch.Tensor) -> dict[str, Any]:
    return {k: (cw if v == "w" else v) for k, v in opts.items()}


def _grads(loss: torch.Tensor, upstream: torch.Tensor, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    g = upstream if loss.ndim else upstream[0]
    return list(torch.autograd.grad((loss * g).sum(), inputs))


def _check_plain(
    data: dict[str, torch.Tensor],
    sl: slice,
    count: _Counter,
    reduction: str,
    opts: dict[str, Any],
    tol: dict[str, float],
) -> None:
    y, up = data["y"], data["up"]
    z = data["z"].clone().requires_grad_()
    ref = skt.cross_entropy(z, y, reduction=reduction, **_options(opts, data["cw"]))
    (ref_grad,) = _grads(ref, up, [z])
    local = data["z"][:, sl].clone().requires_grad_()
    count.take()
    loss = skt.vocab_parallel_cross_entropy(
        local, y, vocab_start=sl.start, reduction=reduction, **_options(opts, data["cw"][sl])
    )
    assert count.take() == 2, "the forward must make exactly 2 collectives"
    (grad,) = _grads(loss, up, [local])
    assert count.take() == 0, "the backward of the local logits needs no collective"
    torch.testing.assert_close(loss, ref, **tol)
    torch.testing.assert_close(grad, ref_grad[:, sl], **tol)


def _check_linear(
    data: dict[str, torch.Tensor],
    sl: slice,
    count: _Counter,
    reduction: str,
    opts: dict[str, Any],
    tol: dict[str, float],
) -> None:
    y, up = data["y"], data["up"]
    full = [data[k].clone().requires_grad_() for k in ("h", "w", "b")]
    ref = skt.linear_cross_entropy(*full[:2], y, bias=full[2], reduction=reduction, **_options(opts, data["cw"]))
    ref_grads = _grads(ref, up, full)
    local = [data["h"].clone(), data["w"][sl].clone(), data["b"][sl].clone()]
    local = [t.requires_grad_() for t in local]
    count.take()
    loss = skt.vocab_parallel_linear_cross_entropy(
        local[0],
        local[1],
        y,
        bias=local[2],
        vocab_start=sl.start,
        reduction=reduction,
        chunk_size=(5, 2),
        **_options(opts, data["cw"][sl]),
    )
    assert count.take() == 2, "the forward must make exactly 2 collectives"
    grads = _grads(loss, up, local)
    assert count.take() == 1, "the backward all-reduces the hidden states' gradient, once"
    torch.testing.assert_close(loss, ref, **tol)
    torch.testing.assert_close(grads[0], ref_grads[0], **tol)
    torch.testing.assert_close(grads[1], ref_grads[1][sl], **tol)
    torch.testing.assert_close(grads[2], ref_grads[2][sl], **tol)


def _worker(rank: int, world: int, port: int, sizes: tuple[int, ...]) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        count = _Counter()
        start = sum(sizes[:rank])
        sl = slice(start, start + sizes[rank])
        equal = len(set(sizes)) == 1
        for dtype, tol in ((torch.float64, F64), (torch.float32, F32)):
            data = _data(dtype)
            for reduction, opts in CASES if dtype == torch.float64 else CASES[-2:]:
                _check_plain(data, sl, count, reduction, opts, tol)
                _check_linear(data, sl, count, reduction, opts, tol)
        if equal:  # vocab_start defaults to rank * V_r
            data = _data(torch.float64)
            loss = skt.vocab_parallel_cross_entropy(data["z"][:, sl], data["y"], label_smoothing=0.1)
            torch.testing.assert_close(loss, skt.cross_entropy(data["z"], data["y"], label_smoothing=0.1), **F64)
        # every label ignored: 0 and zero gradients, on every rank
        data = _data(torch.float64)
        local = data["z"][:, sl].clone().requires_grad_()
        loss = skt.vocab_parallel_cross_entropy(local, torch.full((N,), -100), vocab_start=start, z_loss=0.1)
        loss.backward()
        assert loss.item() == 0.0
        assert torch.equal(local.grad, torch.zeros_like(local))
        # a nan in one rank's slice of a row makes that row nan on every rank, and only that row
        poisoned = data["z"].clone()
        poisoned[4, 0] = float("nan")
        per_row = skt.vocab_parallel_cross_entropy(poisoned[:, sl], data["y"], vocab_start=start, reduction="none")
        assert torch.isnan(per_row[4]).item()
        assert torch.isfinite(torch.cat([per_row[:4], per_row[5:]])).all().item()
        # a label outside the global vocabulary raises on every rank (no rank is left waiting)
        bad = data["y"].clone()
        bad[5] = V
        with pytest.raises(ValueError, match=rf"class index {V} at position \(5,\), outside \[0, {V}\)"):
            skt.vocab_parallel_cross_entropy(data["z"][:, sl], bad, vocab_start=start)
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(
    ("world", "sizes"), [pytest.param(2, (7, 7), id="2-ranks"), pytest.param(4, (5, 3, 3, 3), id="4-ranks-unequal")]
)
def test_vocab_parallel_equals_single_process(world, sizes):
    assert sum(sizes) == V
    mp.spawn(_worker, args=(world, _free_port(), sizes), nprocs=world, join=True)


def test_needs_an_initialised_process_group():
    with pytest.raises(RuntimeError, match=r"call torch\.distributed\.init_process_group first"):
        skt.vocab_parallel_cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1]))

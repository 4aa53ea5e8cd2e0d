"""A compiled MLP train step with softmaxkit.torch's cross-entropy against the same step with torch's (issue 15).

The step is ``loss_fn(model(x), y)`` compiled with ``torch.compile(fullgraph=True)`` (default backend, inductor),
then ``loss.backward()`` and an SGD update in eager mode; ``loss_fn`` is ``softmaxkit.torch.CrossEntropyLoss`` or
``torch.nn.CrossEntropyLoss`` (same options), each with its own copy of the same model and data. Before timing,
``torch._dynamo.explain`` counts the graphs and graph breaks of our step (the target is one graph, no break).

The two steps are timed in interleaved rounds (ours, torch's, ours, ...) so that a change in the machine's load
hits both alike; each round's time is the median of ``--steps`` steps, and the figures quoted are the medians
over the rounds, with their ratio (target: ours / torch's <= 1.2).

Usage::

    python benchmarks/bench_compiled_step.py [--batch 256] [--features 128] [--hidden 512] [--classes 1000]
        [--rounds 7] [--steps 20] [--threads N] [--out DIR]

writes ``DIR/bench_compiled_step.json`` with the harness's machine description (CPU model, AVX2/AVX-512,
threads). The timings are wall-clock: on a shared machine state its load next to the numbers.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

import softmaxkit.torch as skt
from _harness import add_arguments, describe, machine_info, positive_int, ratio, set_threads, time_call, write_results


def _step(model: torch.nn.Module, loss_fn: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    forward = torch.compile(lambda a, t: loss_fn(model(a), t), fullgraph=True)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def call() -> None:
        opt.zero_grad(set_to_none=True)
        forward(x, y).backward()
        opt.step()

    return call


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--batch", type=positive_int, default=256)
    parser.add_argument("--features", type=positive_int, default=128)
    parser.add_argument("--hidden", type=positive_int, default=512)
    parser.add_argument("--classes", type=positive_int, default=1000)
    parser.add_argument("--rounds", type=positive_int, default=7)
    parser.add_argument("--steps", type=positive_int, default=20)
    add_arguments(parser, repeat=1)
    args = parser.parse_args()
    threads = set_threads(args.threads)
    print(describe(machine_info(threads)))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, args.features, generator=g)
    y = torch.randint(0, args.classes, (args.batch,), generator=g)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(args.features, args.hidden), torch.nn.ReLU(), torch.nn.Linear(args.hidden, args.classes)
    )
    ours_fn = skt.CrossEntropyLoss(label_smoothing=0.1)
    torch_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    with warnings.catch_warnings():  # torch 2.13: Dynamo instantiates every autograd.Function it traces
        warnings.filterwarnings("ignore", ".*should not be instantiated", DeprecationWarning)
        explained = torch._dynamo.explain(lambda a, t: ours_fn(model(a), t))(x, y)
        torch._dynamo.reset()
        steps = {
            "ours": _step(copy.deepcopy(model), ours_fn, x, y),
            "torch": _step(copy.deepcopy(model), torch_fn, x, y),
        }
        compile_s = {}
        for name, call in steps.items():  # the first calls compile
            start = time.perf_counter()
            call()
            call()
            compile_s[name] = time.perf_counter() - start
        rounds: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(args.rounds):
            for name, call in steps.items():
                rounds[name].append(time_call(call, repeat=args.steps, warmup=1).median)
    median = {name: statistics.median(t) for name, t in rounds.items()}
    result: dict[str, Any] = {
        "size": {"batch": args.batch, "features": args.features, "hidden": args.hidden, "classes": args.classes},
        "graphs": explained.graph_count,
        "graph_breaks": explained.graph_break_count,
        "compile_and_first_steps_s": compile_s,
        "step_s": median,
        "rounds_s": rounds,
        "ratio_ours_over_torch": ratio(median["ours"], median["torch"]),
        "target": "graph_breaks == 0 and ratio_ours_over_torch <= 1.2",
    }
    print(f"graphs {explained.graph_count}, graph breaks {explained.graph_break_count}")
    print(f"step: ours {median['ours'] * 1e3:.3f} ms, torch {median['torch'] * 1e3:.3f} ms, "
          f"ours/torch {result['ratio_ours_over_torch']:.3f}")  # fmt: skip
    print(f"wrote {write_results('bench_compiled_step', result, args.out, threads=threads)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""benchmarks/_harness.py: the one timer, machine description and JSON writer of every benchmark script."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_harness", BENCHMARKS / "_harness.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["_harness"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_script_is_named_bench_and_uses_the_harness() -> None:
    scripts = sorted(p for p in BENCHMARKS.glob("*.py") if p.name != "_harness.py")
    assert scripts, "no benchmark scripts found"
    for script in scripts:
        assert script.name.startswith("bench_"), f"{script.name}: benchmark scripts are named bench_*.py"
        text = script.read_text()
        assert "from _harness import" in text, f"{script.name} does not use benchmarks/_harness.py"
        assert "write_results(" in text, f"{script.name} writes its JSON itself"


def test_time_call_runs_warmup_then_repeat_with_before_and_after_untimed(harness: ModuleType) -> None:
    log: list[str] = []
    t = harness.time_call(
        lambda: log.append("call"), repeat=3, warmup=2, before=lambda: log.append("b"), after=lambda: log.append("a")
    )
    assert log == ["b", "call", "a"] * 5
    assert len(t.times) == 3
    assert t.best <= t.median
    assert set(t.as_dict()) == {"median_s", "best_s", "times_s"}


def test_time_call_budget_stops_early_but_times_at_least_once(harness: ModuleType) -> None:
    t = harness.time_call(lambda: sum(range(1000)), repeat=50, warmup=0, budget=0.0)
    assert len(t.times) == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_time_call_rejects_a_bad_repeat(harness: ModuleType, bad: object) -> None:
    with pytest.raises(ValueError, match="repeat"):
        harness.time_call(lambda: None, repeat=bad)


@pytest.mark.parametrize("text", ["0", "-3", "two", "1.5"])
def test_threads_zero_is_a_usage_error(harness: ModuleType, text: str) -> None:
    parser = argparse.ArgumentParser()
    harness.add_arguments(parser)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--threads", text])
    assert exc.value.code == 2


def test_add_arguments_defaults_to_the_results_folder(harness: ModuleType) -> None:
    parser = argparse.ArgumentParser()
    harness.add_arguments(parser, repeat=4)
    args = parser.parse_args([])
    assert args.out == BENCHMARKS / "results"
    assert (args.threads, args.repeat) == (None, 4)


def test_machine_info_names_the_cpu_its_vector_flags_and_threads(harness: ModuleType) -> None:
    info = harness.machine_info(threads=1)
    assert isinstance(info["cpu"], str)
    assert info["cpu"]
    assert set(info["cpu_flags"]) == {"avx2", "avx512f"}
    assert info["threads"] == 1
    assert info["versions"]["numpy"] is not None
    if Path("/proc/cpuinfo").exists():
        flags = Path("/proc/cpuinfo").read_text()
        assert info["cpu_flags"]["avx2"] == (" avx2" in flags)
        assert info["cpu_flags"]["avx512f"] == (" avx512f" in flags)


def test_write_results_writes_valid_json_with_nonfinite_as_null(harness: ModuleType, tmp_path: Path) -> None:
    path = harness.write_results("bench_x", {"a": math.nan, "b": [math.inf, 1.0], "c": (1, 2)}, tmp_path / "r")
    assert path == tmp_path / "r" / "bench_x.json"
    data = json.loads(path.read_text())  # NaN / Infinity would be accepted by json.loads but are not JSON
    assert "NaN" not in path.read_text()
    assert "Infinity" not in path.read_text()
    assert (data["a"], data["b"], data["c"]) == (None, [None, 1.0], [1, 2])
    assert data["benchmark"] == "bench_x"
    assert "cpu_flags" in data["machine"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["bench_x.json"]  # no temporary file left


def test_ratio_of_an_unmeasurably_small_denominator_is_none(harness: ModuleType) -> None:
    assert harness.ratio(1.0, 0.0) is None
    assert harness.ratio(1.0, 4.0) == 0.25

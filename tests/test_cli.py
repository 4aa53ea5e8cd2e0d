"""The ``softmaxkit`` command: --help, --version and the demo's numbers."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

import softmaxkit
from softmaxkit.cli import main


def _demo(capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["demo"]) == 0
    return capsys.readouterr().out


def test_demo_four_class_example(capsys):
    out = _demo(capsys)
    assert "softmax(z) = [0.842  0.042  0.002  0.114]   (sum = 1.000)" in out
    assert "-log p_dog = 0.1719" in out


def test_demo_blurry_versus_crisp(capsys):
    out = _demo(capsys)
    assert "blurry [   1     2]:  softmax [0.268941  0.731059]   normalise [0.333333  0.666667]" in out
    assert "crisp [  10    20]:  softmax [4.53979e-05  0.999955]   normalise [0.333333  0.666667]" in out


def test_demo_overflow_versus_stable(capsys):
    out = _demo(capsys)
    assert "naive exp(x) / sum(exp(x))   = [nan  nan]" in out
    assert "softmax(x), max subtracted   = [0.268941  0.731059]" in out
    assert "= 1001.313262" in out


def test_demo_gradient_p_minus_y(capsys):
    out = _demo(capsys)
    assert out.count("[-0.158  +0.042  +0.002  +0.114]") == 2  # p - y, and the library's gradient
    assert "cross-entropy gradient            = [-1.000e+00  +1.000e+00]" in out
    mse = re.search(r"squared error on p, its gradient  = \[(\S+)", out)
    assert mse is not None
    assert abs(float(mse.group(1))) < 1e-7


def test_demo_temperature_sweep(capsys):
    out = _demo(capsys)
    assert "T =   1.0: [0.842  0.042  0.002  0.114]" in out
    assert "T =   0.5: [0.980  0.002  0.000  0.018]" in out
    assert "T = 100.0: [0.257  0.249  0.242  0.252]" in out


def test_demo_jacobian_rows(capsys):
    out = _demo(capsys)
    assert "dog [+0.1330  -0.0353  -0.0018  -0.0960]" in out
    assert "p(1 - p) is only the diagonal: [0.1330  0.0402  0.0021  0.1010]" in out


def test_version_and_help_from_a_subprocess():
    version = subprocess.run([sys.executable, "-m", "softmaxkit", "--version"], capture_output=True, text=True)
    assert version.returncode == 0
    assert version.stdout.strip() == f"softmaxkit {softmaxkit.__version__}"
    helped = subprocess.run([sys.executable, "-m", "softmaxkit", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0
    assert "demo" in helped.stdout


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage: softmaxkit" in capsys.readouterr().err


def test_unknown_command_is_an_error():
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_demo_into_a_closed_pipe_stops_quietly():
    # ``softmaxkit demo | head -3``: the reader has gone before the demo writes; no traceback, the exit status
    # of a filter cut short
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write into the pipe now fails with EPIPE
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "softmaxkit", "demo"], stdout=write_end, stderr=subprocess.PIPE, timeout=120
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 141
    assert b"Traceback" not in proc.stderr, proc.stderr.decode()


def test_bench_threads_zero_exits_2_before_any_work(capsys, monkeypatch):
    from softmaxkit import bench

    def ran(*args, **kwargs):
        raise AssertionError("softmaxkit bench ran before refusing --threads 0")

    monkeypatch.setattr(bench, "command", ran)
    for bad in ("0", "-2", "100000"):
        with pytest.raises(SystemExit) as info:
            main(["bench", "--threads", bad])
        assert info.value.code == 2
        assert "argument --threads: expected a positive integer of at most" in capsys.readouterr().err

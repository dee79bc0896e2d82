"""benchmarks/speed/gpu_check.sh and benchmarks/speed/torch_gpu.py: their CPU parts, tested here so that
the GPU run cannot break unseen."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cases import require

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "speed" / "gpu_check.sh"


def bench_module():
    return importlib.import_module("benchmarks.speed.torch_gpu")


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_dry_run_runs_the_benchmark_logic_on_the_cpu_and_prints_the_table():
    require("torch")
    out = run_script("--dry-run")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("| model | method | median s | vs bare |") for line in lines)
    rows = [line for line in lines if line.startswith("| mlp |")]
    methods = [row.split("|")[2].strip() for row in rows]
    assert methods == ["bare", "bare_noread", "lrfinder", "lrfinder_sync1"]
    assert all(len(row.split("|")) == 13 for row in rows)  # 11 cells, as the header
    assert "all checks passed" in out.stdout


def test_bad_options_and_a_missing_gpu_are_clear_errors():
    torch = require("torch")
    out = run_script("--fast")
    assert out.returncode == 2 and out.stderr.startswith("Error: unknown option '--fast'")
    if not torch.cuda.is_available():
        out = run_script()
        assert out.returncode == 2 and "sees no CUDA device" in out.stderr and "Traceback" not in out.stderr


def profiles(**changes: dict[str, float]) -> dict[str, dict[str, float]]:
    """Made-up CUDA profiles of the four methods over 200 steps that meet every promise."""
    clean = {
        "bare": {"peak_added": 100e6, "syncs": 200, "step_syncs": 200},
        "bare_noread": {"peak_added": 100e6, "syncs": 1, "step_syncs": 1},
        "lrfinder": {
            "peak_added": 100e6 + 4096,
            "syncs": 60,
            "step_syncs": 25,
            "take_added": 0,
            "take_syncs": 20,
            "restore_syncs": 15,
        },
        "lrfinder_sync1": {
            "peak_added": 100e6,
            "syncs": 235,
            "step_syncs": 200,
            "take_added": 0,
            "take_syncs": 20,
            "restore_syncs": 15,
        },
    }
    for method, values in changes.items():
        clean[method] = {**clean[method], **values}
    return clean


@pytest.mark.parametrize(
    "changes, message",
    [
        ({}, None),
        ({"lrfinder": {"take_added": 512}}, "the snapshot took 512 B"),
        ({"lrfinder": {"peak_added": 100e6 + 2**21}}, "+2.00 MiB over the bare loop"),
        (
            {"lrfinder": {"step_syncs": 27}},
            "27 host syncs in its steps, more than the floor's 1 plus one read per 8 steps (26)",
        ),
        ({"lrfinder_sync1": {"step_syncs": 202}}, "lrfinder_sync1: 202 host syncs"),
    ],
)
def test_the_benchmarks_checks_fail_exactly_when_a_promise_is_broken(changes, message):
    failures = bench_module().profile_failures("mlp", profiles(**changes), 200, 8)
    if message is None:
        assert failures == []
    else:
        assert len(failures) == 1 and message in failures[0], failures

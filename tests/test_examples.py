"""Every script in examples/ runs both ways: `lrfinder find examples/X.py` and `python examples/X.py`."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from lrfinder import LRFinderResult
from lrfinder.confirm import ProbeRound
from tests.cases import require

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
#: Framework -> (the backend name a result records, lrfinder's trainer module), most specific first:
#: a Lightning or Hugging Face example imports torch too, and its result names the former.
FRAMEWORKS = {
    "lightning": ("lightning", "lightning_trainer"),
    "transformers": ("transformers", "hf_trainer"),
    "keras": ("keras", "keras_trainer"),
    "torch": ("torch", "torch_trainer"),
}
#: What step-function examples import; needed to run them, no trainer of lrfinder's involved.
OTHERS = {"sklearn", "jax", "optax"}


def frameworks_used(path: Path) -> list[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    return sorted(roots & {*FRAMEWORKS, *OTHERS})


def require_for(path: Path) -> list[str]:
    """Skip (fail under LRFINDER_REQUIRE_BACKENDS=1) unless the example's frameworks and trainers exist.

    Returns the frameworks with a trainer that the example uses, most specific first.
    """
    used = frameworks_used(path)
    for name in used:
        require(name)
        if name in FRAMEWORKS:
            require(f"lrfinder.trainers.{FRAMEWORKS[name][1]}")
    return [name for name in FRAMEWORKS if name in used]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_there_are_examples_for_each_framework_and_a_notebook():
    names = {path.stem for path in EXAMPLES}
    assert {
        "torch_digits",
        "keras_digits",
        "notebook",
        "step_function",
        "lightning_digits",
        "hf_text",
        "sklearn_partial_fit",
        "jax_optax",
    } <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_lrfinder_find_on_the_example(path, tmp_path):
    used = require_for(path)
    proc = run(["-m", "lrfinder", "find", str(path), "--plot", "lr.png", "--json", "lr.json"], tmp_path)
    result = LRFinderResult.from_json(tmp_path / "lr.json")
    assert result.backend == (FRAMEWORKS[used[0]][0] if used else "callable")
    assert result.suggestion is not None, result.suggestion_reason
    assert f"suggested lr:  {result.suggestion:.3g}" in proc.stdout
    assert (tmp_path / "lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # lrfinder_setup() only sets up: nothing trained, nothing else written.
    assert "validation accuracy" not in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.json", "lr.png"]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_python_runs_the_example_and_trains_at_the_suggestion(path, tmp_path):
    require_for(path)
    proc = run([str(path)], tmp_path)
    assert "suggested lr:" in proc.stdout
    accuracy = re.search(r"validation accuracy after .* at lr=([\d.e+-]+): ([\d.]+)", proc.stdout)
    assert accuracy, proc.stdout
    assert float(accuracy[2]) > 0.85  # the suggested LR trains: far above chance (0.1-0.2)
    assert any(p.suffix == ".png" for p in tmp_path.iterdir())


def test_the_quick_starts_confirm_run():
    """README's second quick-start command: the digits script defines the confirm_data it scores on."""
    require("torch")
    require("sklearn")
    path = ROOT / "examples" / "torch_digits.py"
    with tempfile.TemporaryDirectory() as folder:
        proc = run(
            [
                "-m",
                "lrfinder",
                "find",
                str(path),
                "--schedule",
                "onecycle",
                "--train-steps",
                "500",
                "--confirm",
                "--json",
                "lr.json",
            ],
            Path(folder),
        )
        result = LRFinderResult.from_json(Path(folder) / "lr.json")
    assert result.confirmation.probes and result.suggestion == result.confirmation.lr
    # the default plan for 500 steps: a budget of 1000, the range test kept (100 <= 0.3 * 1000),
    # 3 candidates and 2 adaptive probes of 900 // 5 steps
    plan = result.confirmation.plan
    assert plan.range_steps == 100 and plan.rounds == (ProbeRound(5, 180),) and plan.batches <= 1000
    shown = "(best of 5 probes, 180 steps each; the best, "
    assert f"confirmed:     {result.suggestion:.3g} {shown}" in proc.stdout
    # README's quick start shows this run's output
    readme = (ROOT / "README.md").read_text()
    assert "--schedule onecycle --train-steps 500 --confirm" in readme
    assert re.search(r"\nconfirmed: +[\d.e+-]+ " + re.escape(shown), readme)

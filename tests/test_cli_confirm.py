"""``lrfinder find --schedule --train-steps --confirm --confirm-budget`` through click's runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lrfinder import LRFinderResult
from lrfinder.confirm import ProbeRound
from tests.cases import require
from tests.test_cli import QUADRATIC, run, write

#: The quadratic step function of test_cli with its held-out loss, for --confirm.
COUNTED = (
    QUADRATIC
    + """
def confirm_data():
    return 0.5 * h * float(w @ w)
"""
)

RANGE = ["--start-lr", "1e-4", "--end-lr", "100"]


def test_schedule_and_train_steps_reach_the_result_and_the_summary(tmp_path):
    write(tmp_path, "quad.py", QUADRATIC)
    code, out, err = run(
        [
            "find",
            "quad.py",
            *RANGE,
            "--schedule",
            "cosine",
            "--train-steps",
            "500",
            "--no-plot",
            "--json",
            "r.json",
        ],
        tmp_path,
    )
    assert code == 0, err
    assert "suggested lr:" in out and "(raw_minimum for cosine over 500 steps)" in out
    assert "confirmed:" not in out
    result = LRFinderResult.from_json(tmp_path / "r.json")
    assert result.plan.schedule == "cosine" and result.plan.train_steps == 500
    assert result.confirmation is None


def test_confirm_prints_the_confirmed_lr_and_stays_in_budget(tmp_path):
    write(tmp_path, "quad.py", COUNTED)
    code, out, err = run(
        [
            "find",
            "quad.py",
            *RANGE,
            "--schedule",
            "onecycle",
            "--train-steps",
            "150",
            "--confirm",
            "--no-plot",
            "--json",
            "r.json",
        ],
        tmp_path,
    )
    assert code == 0, err
    result = LRFinderResult.from_json(tmp_path / "r.json")
    confirmation = result.confirmation
    assert f"confirmed:     {confirmation.detail()}" in out.splitlines()
    # the default plan for a budget of 300: the range test shortened to 90 (0.3 of it), 3 + 2 probes
    assert confirmation.plan.range_steps == 90 and confirmation.plan.rounds == (ProbeRound(5, 42),)
    assert "(best of 5 probes, 42 steps each; the best, " in confirmation.detail()
    steps = result.num_steps + confirmation.probe_steps
    assert (
        f"trained:       {steps} steps (range test {result.num_steps}, probes "
        f"{confirmation.probe_steps}; budget 300)" in out
    )
    assert steps <= 300
    assert result.suggestion == confirmation.lr
    same = ["--schedule", "onecycle", "--train-steps", "150", "--confirm"]
    code, quiet, _ = run(["find", "quad.py", *RANGE, *same, "-q", "--no-plot"], tmp_path)
    assert code == 0 and quiet.strip() == f"{confirmation.lr:.6g}"  # the same run, only the LR


def test_confirm_budget_implies_confirm_and_shortens_a_default_range_test(tmp_path):
    write(tmp_path, "quad.py", COUNTED)
    code, _out, err = run(
        [
            "find",
            "quad.py",
            *RANGE,
            "--train-steps",
            "60",
            "--confirm-budget",
            "80",
            "--no-plot",
            "--json",
            "r.json",
        ],
        tmp_path,
    )
    assert code == 0, err
    data = json.loads((tmp_path / "r.json").read_text())
    # the default 100 steps give way to max(min_range_steps, floor(0.3 * 80)) = 30
    assert data["settings"]["num_iter"] == 30 and data["confirmation"]["plan"]["budget"] == 80


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--confirm"], "Error: confirm mode needs --train-steps N"),
        (["--train-steps", "0"], "Error: --train-steps must be at least 1"),
        (["--train-steps", "100", "--confirm-budget", "0"], "Error: --confirm-budget must be at least 1"),
        (["--train-steps", "100", "--confirm-budget", "-3"], "Error: --confirm-budget must be at least 1"),
        (["--train-steps", str(10**20), "--confirm"], "Error: --train-steps must be at most"),
        (["--train-steps", "20", "--confirm", "--num-iter", "60"], "cannot hold --num-iter (you set it"),
        (["--schedule", "linear"], "Invalid value for '--schedule'"),
    ],
)
def test_bad_plan_options_are_usage_errors_before_the_script_runs(tmp_path, args, message):
    write(tmp_path, "quad.py", "raise SystemExit('the script must not run')")
    code, _out, err = run(["find", "quad.py", *args, "--no-plot"], tmp_path)
    assert code == 2 and message in err and "Traceback" not in err


def test_confirm_without_held_out_data_is_an_error_naming_what_to_define(tmp_path):
    write(tmp_path, "quad.py", QUADRATIC)
    code, _out, err = run(
        ["find", "quad.py", *RANGE, "--train-steps", "150", "--confirm", "--no-plot"], tmp_path
    )
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("Error: --confirm scores its probes on held-out data")
    assert "defines no confirm_data and no val_loader" in err


def test_confirm_with_a_torch_script_uses_its_val_loader(tmp_path):
    require("torch")
    write(
        tmp_path,
        "net.py",
        """
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        torch.manual_seed(0)
        x = torch.randn(256, 6)
        y = (x[:, :3]).argmax(dim=1)
        model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
        loader = DataLoader(TensorDataset(x[:192], y[:192]), batch_size=16, shuffle=True)
        val_loader = DataLoader(TensorDataset(x[192:], y[192:]), batch_size=32)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    """,
    )
    code, out, err = run(
        ["find", "net.py", "--train-steps", "100", "--confirm", "--no-plot", "--json", "r.json"], tmp_path
    )
    assert code == 0, err
    result = LRFinderResult.from_json(tmp_path / "r.json")
    assert result.info["loss"] == "validation"  # the range test's steps record the validation loss
    assert len(result.confirmation.probes) == 5 and result.suggestion == result.confirmation.lr
    assert result.num_steps + result.confirmation.probe_steps <= 200
    assert "confirmed:" in out


def test_the_plot_of_a_confirmed_run_is_written(tmp_path):
    write(tmp_path, "quad.py", COUNTED)
    code, _out, err = run(
        ["find", "quad.py", *RANGE, "--train-steps", "150", "--confirm", "--plot", "p.png"], tmp_path
    )
    assert code == 0, err
    assert Path(tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


HF_SCRIPT = """
import tempfile
import torch
import transformers

torch.manual_seed(0)
x, y = torch.randn(96, 6), torch.randint(0, 3, (96,))


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(6, 3)

    def forward(self, x, labels):
        return {"loss": torch.nn.functional.cross_entropy(self.body(x), labels)}


rows = [{"x": x[i], "labels": y[i]} for i in range(96)]
args = transformers.TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=8,
                                      per_device_eval_batch_size=16, report_to="none", use_cpu=True)
model = transformers.Trainer(model=Net(), args=args, train_dataset=rows[:64], eval_dataset=rows[64:])
"""


def test_confirm_on_a_hugging_face_trainer_scores_its_eval_dataset(tmp_path):
    require("transformers")
    write(tmp_path, "hf.py", HF_SCRIPT)
    args = ["find", "hf.py", "--train-steps", "60", "--confirm", "--no-plot", "--json", "r.json"]
    code, out, err = run(args, tmp_path)
    assert code == 0, err
    result = LRFinderResult.from_json(tmp_path / "r.json")
    assert result.confirmation.probes and "confirmed:" in out

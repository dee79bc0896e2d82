"""The ``lrfinder`` command line, through click's test runner and through real subprocesses."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lrfinder import LRFinderResult, __version__
from lrfinder.cli import main
from lrfinder.suggest import DEFAULT_RULE, RULES
from tests.cases import require

ROOT = Path(__file__).resolve().parent.parent
#: click < 8.2 mixes stderr into stdout unless told not to; later versions keep them apart always.
RUNNER = {"mix_stderr": False} if "mix_stderr" in inspect.signature(CliRunner).parameters else {}

#: Gradient descent on h/2 * |w|^2 with multiplicative noise: diverges for lr > 2/h = 0.5.
QUADRATIC = """
import numpy as np

h = 4.0
w = np.array([3.0, -2.0])
noise = np.random.default_rng(0)

def step(lr):
    loss = 0.5 * h * float(w @ w) * (1 + 0.01 * noise.standard_normal())
    w[:] -= lr * h * w
    return loss

def snapshot():
    return w.copy(), noise.bit_generator.state

def restore(state):
    w[:] = state[0]
    noise.bit_generator.state = state[1]
"""

FAST = ["--start-lr", "1e-4", "--end-lr", "100", "--num-iter", "60"]


def write(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


def run(args: list[str], folder: Path) -> tuple[int, str, str]:
    """Invoke the CLI in-process from ``folder``; returns (exit code, stdout, stderr)."""
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        result = CliRunner(**RUNNER).invoke(main, args)
    finally:
        os.chdir(cwd)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    env.pop("LRFINDER_DEBUG", None)
    return env


def run_subprocess(args: list[str], folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lrfinder", *args],
        cwd=folder,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_png(path: Path) -> None:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)  # decodes it whole
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


# -- find: the happy path -----------------------------------------------------------------------


def test_find_prints_summary_and_writes_png_and_json(tmp_path):
    write(tmp_path, "quad.py", QUADRATIC)
    code, out, err = run(["find", "quad.py", *FAST, "--plot", "lr.png", "--json", "lr.json"], tmp_path)
    assert code == 0, err
    assert_png(tmp_path / "lr.png")
    result = LRFinderResult.from_json(tmp_path / "lr.json")
    assert result.backend == "callable"
    assert result.stop_reason == "diverged" and 5 < result.num_steps < 60
    assert result.settings["num_iter"] == 60 and result.settings["start_lr"] == 1e-4
    lines = out.splitlines()
    assert lines[0].startswith(
        f"lrfinder {__version__}: range test of quad.py (callable), {result.num_steps} steps in "
    )
    assert f"suggested lr:  {result.suggestion:.3g} ({DEFAULT_RULE})" in lines
    others = ", ".join(f"{name} {s.lr:.3g}" for name, s in result.suggestions.items() if name != DEFAULT_RULE)
    assert f"other rules:   {others}" in lines
    low, high = result.lr_range
    assert f"useful range:  {low:.3g} to {high:.3g}" in lines
    rungs = ", ".join(f"{lr:.3g}" for lr in result.candidates())
    assert f"to compare:    {rungs} (short runs; keep the best)" in lines
    assert (
        f"stopped:       the loss diverged at lr={result.lrs[-1]:.3g} (step {result.num_steps} of 60)"
        in lines
    )
    assert "wrote plot:    lr.png" in lines and "wrote json:    lr.json" in lines
    assert 2 / 4.0 / 100 < result.suggestion < 2 / 4.0  # below the divergence point lr = 2/h
    assert err == ""


def test_default_plot_path_and_no_plot(tmp_path):
    write(tmp_path, "quad.py", QUADRATIC)
    assert run(["find", "quad.py", *FAST], tmp_path)[0] == 0
    assert_png(tmp_path / "lr_finder.png")
    (tmp_path / "lr_finder.png").unlink()
    code, out, _ = run(["find", "quad.py", *FAST, "--no-plot"], tmp_path)
    assert code == 0 and "wrote" not in out
    assert not (tmp_path / "lr_finder.png").exists()


def test_options_reach_the_sweep(tmp_path):
    write(tmp_path, "quad.py", QUADRATIC)
    args = [
        "find",
        "quad.py",
        "--start-lr",
        "1e-4",
        "--end-lr",
        "0.3",
        "--num-iter",
        "40",
        "--mode",
        "linear",
        "--smooth",
        "0.5",
        "--diverge-threshold",
        "none",
        "--suggest",
        "steepest",
        "--no-plot",
        "--json",
        "r.json",
    ]
    code, out, _ = run(args, tmp_path)
    assert code == 0
    result = LRFinderResult.from_json(tmp_path / "r.json")
    assert result.settings == {
        "start_lr": 1e-4,
        "end_lr": 0.3,
        "num_iter": 40,
        "mode": "linear",
        "smooth": 0.5,
        "diverge_threshold": None,
        "diverge_warmup": 5,
    }
    assert result.rule == "steepest" and result.stop_reason == "finished" and result.num_steps == 40
    np.testing.assert_allclose(np.diff(result.lrs), (0.3 - 1e-4) / 39)
    assert "(steepest)" in out and "ran all 40 steps" in out


def test_quiet_prints_only_the_suggestion(tmp_path):
    write(tmp_path, "quad.py", QUADRATIC)
    code, out, err = run(["find", "quad.py", *FAST, "-q", "--no-plot", "--json", "r.json"], tmp_path)
    assert code == 0 and err == ""
    assert float(out) == pytest.approx(LRFinderResult.from_json(tmp_path / "r.json").suggestion, rel=1e-5)


def test_diagnostics_become_warning_lines(tmp_path):
    # Falls all the way to end_lr: the "still falling" diagnostic must be reported.
    write(tmp_path, "slow.py", "def step(lr):\n    return 1.0 / (1.0 + lr)\n")
    code, out, err = run(["find", "slow.py", "--end-lr", "1", "--no-plot", "--json", "r.json"], tmp_path)
    assert code == 0
    result = LRFinderResult.from_json(tmp_path / "r.json")
    assert result.diagnostics
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: {d.message}" for d in result.diagnostics]
    assert "lrfinder:" not in err  # the library's own warnings are not printed twice
    code, out, err = run(["find", "slow.py", "--end-lr", "1", "--no-plot", "-q"], tmp_path)
    assert out.count("\n") == 1 and err.count("warning:") == len(result.diagnostics)


def test_a_curve_that_never_falls_prints_none_for_the_suggestion_range_and_candidates(tmp_path):
    write(tmp_path, "rising.py", "def step(lr):\n    return 1.0 + lr\n")
    code, out, _ = run(["find", "rising.py", "--end-lr", "1", "--no-plot"], tmp_path)
    assert code == 0
    lines = out.splitlines()
    assert any(line.startswith("suggested lr:  none (") for line in lines)
    assert "useful range:  none (the loss never falls)" in lines
    assert "to compare:    none (no suggestion)" in lines


@pytest.mark.parametrize("quiet", [False, True])
def test_ctrl_c_during_the_sweep_exits_130_and_writes_nothing(tmp_path, quiet):
    write(
        tmp_path,
        "stop.py",
        "def step(lr):\n    if lr > 1e-3:\n        raise KeyboardInterrupt\n    return 1.0 / (1 + lr)\n",
    )
    (tmp_path / "r.json").write_text("kept")
    code, out, err = run(
        [
            "find",
            "stop.py",
            "--start-lr",
            "1e-5",
            "--end-lr",
            "1",
            "--num-iter",
            "50",
            "--json",
            "r.json",
            *(["-q"] if quiet else []),
        ],
        tmp_path,
    )
    assert code == 130 and out == ""
    lines = err.splitlines()
    assert [line for line in lines if line.startswith("Error:")] == [
        "Error: interrupted after 20 of 50 steps; the model's state was restored; no file was written"
    ]
    if quiet:
        assert len(lines) == 1
    else:
        assert lines[0] == "partial result (interrupted; nothing written):"
        assert "stopped:       interrupted at step 20 of 50" in lines
    assert (tmp_path / "r.json").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "stop.py"]


def test_ctrl_c_while_the_script_loads_writes_nothing(tmp_path):
    write(tmp_path, "slow.py", "raise KeyboardInterrupt\n")
    code, out, err = run(["find", "slow.py"], tmp_path)
    assert code == 130 and err.strip() == "Error: interrupted" and out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slow.py"]


def test_setup_function_form_runs_neither_main_block_nor_training(tmp_path):
    write(
        tmp_path,
        "setup.py",
        """
        import numpy as np
        calls = []

        def lrfinder_setup():
            calls.append("setup")
            w = np.array([2.0])

            def step(lr):
                loss = float(w[0] ** 2)
                w[0] -= 2 * lr * w[0]
                return loss

            return {"step": step, "snapshot": lambda: w.copy(), "restore": lambda s: w.__setitem__(0, s[0]),
                    "w": w, "epochs": 3}  # keys lrfinder does not read are the script's own

        if __name__ == "__main__":
            raise SystemExit("the __main__ block must not run")
    """,
    )
    code, _out, err = run(["find", "setup.py", *FAST, "--no-plot", "--json", "r.json"], tmp_path)
    assert code == 0, err
    assert LRFinderResult.from_json(tmp_path / "r.json").stop_reason == "diverged"
    assert sys.modules["__lrfinder_script__"].calls == ["setup"]


def test_seed_makes_runs_repeatable(tmp_path):
    write(
        tmp_path,
        "noisy.py",
        """
        import random
        import numpy as np
        start = np.random.rand() + random.random()  # drawn at import, before any setup

        def step(lr):
            return start + np.random.rand()
    """,
    )

    def losses(seed: str) -> np.ndarray:
        args = ["find", "noisy.py", "--num-iter", "10", "--no-plot", "--json", f"{seed}.json"]
        assert run([*args, "--seed", seed], tmp_path)[0] == 0
        return LRFinderResult.from_json(tmp_path / f"{seed}.json").losses

    first = losses("3")
    (tmp_path / "3.json").unlink()
    np.testing.assert_array_equal(first, losses("3"))
    assert not np.array_equal(first, losses("4"))


def test_seed_seeds_torch_before_the_script_runs(tmp_path):
    require("torch")
    write(
        tmp_path,
        "t.py",
        """
        import torch
        start = float(torch.rand(()))

        def step(lr):
            return start
    """,
    )
    for name in ("a", "b"):
        args = ["find", "t.py", "--num-iter", "5", "--no-plot", "--json", f"{name}.json", "--seed", "7"]
        assert run(args, tmp_path)[0] == 0
    import torch

    torch.manual_seed(7)
    expected = float(torch.rand(()))
    for name in ("a", "b"):
        assert LRFinderResult.from_json(tmp_path / f"{name}.json").losses[0] == expected


def test_a_torch_script_top_level_form(tmp_path):
    require("torch")
    require("lrfinder.trainers.torch_trainer")
    write(
        tmp_path,
        "net.py",
        """
        import torch
        from torch import nn
        from torch.utils.data import DataLoader, TensorDataset

        torch.manual_seed(0)
        x = torch.randn(256, 4)
        y = (x.sum(dim=1) > 0).long()
        model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
        train_loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        criterion = nn.CrossEntropyLoss()
        loss = criterion(model(x), y)  # a value named like the contract's loss: not a loss function
        initial = [p.detach().clone() for p in model.parameters()]
    """,
    )
    code, _out, err = run(["find", "net.py", *FAST, "--plot", "p.png", "--json", "r.json"], tmp_path)
    assert code == 0, err
    assert LRFinderResult.from_json(tmp_path / "r.json").backend == "torch"
    assert_png(tmp_path / "p.png")
    script = sys.modules["__lrfinder_script__"]
    import torch

    assert all(torch.equal(a, b) for a, b in zip(script.initial, script.model.parameters(), strict=True))


def test_a_saved_keras_model_with_npz_data(tmp_path):
    keras = require("keras")
    require("lrfinder.trainers.keras_trainer")
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)]
    )
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.save(tmp_path / "m.keras")
    x = np.random.default_rng(0).normal(size=(256, 4)).astype("float32")
    np.savez(tmp_path / "xy.npz", x=x, y=(x.sum(axis=1) > 0).astype("int64"))
    args = ["find", "m.keras", "--data", "xy.npz", "--batch-size", "32", *FAST, "--json", "r.json"]
    code, _out, err = run(args, tmp_path)
    assert code == 0, err
    result = LRFinderResult.from_json(tmp_path / "r.json")
    assert result.backend == "keras" and result.num_steps > 5
    assert_png(tmp_path / "lr_finder.png")
    np.savez(tmp_path / "bad.npz", inputs=x)
    code, _, err = run(["find", "m.keras", "--data", "bad.npz"], tmp_path)
    assert code == 2 and err.startswith("Error: --data 'bad.npz' holds arrays ['inputs'] but no x or y")


def test_an_uncompiled_keras_model_takes_optimizer_and_loss_options_or_says_to_give_them(tmp_path):
    keras = require("keras")
    require("lrfinder.trainers.keras_trainer")
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)]
    )
    model.save(tmp_path / "raw.keras")  # never compiled
    saved = (tmp_path / "raw.keras").read_bytes()
    x = np.random.default_rng(0).normal(size=(256, 4)).astype("float32")
    np.savez(tmp_path / "xy.npz", x=x, y=(x.sum(axis=1) > 0).astype("int64"))
    base = ["find", "raw.keras", "--data", "xy.npz", "--no-plot"]

    code, _, err = run(base, tmp_path)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(
        "Error: raw.keras holds a Keras model that was saved uncompiled: give "
        "--optimizer NAME and --loss NAME"
    )
    code, _, err = run([*base, "--optimizer", "adam"], tmp_path)
    assert code == 2 and "give --loss NAME (Keras names" in err and "--optimizer NAME" not in err
    code, _, err = run([*base, "--optimizer", "adamm", "--loss", "mse"], tmp_path)
    assert code == 2 and err.startswith(
        "Error: --optimizer 'adamm' is not a name Keras knows; give one such as adam"
    )
    code, _, err = run([*base, "--optimizer", "adam", "--loss", "nonsense"], tmp_path)
    assert code == 2 and err.startswith("Error: --loss 'nonsense' is not a name Keras knows")

    code, _, err = run(
        [
            *base,
            "--optimizer",
            "adam",
            "--loss",
            "sparse_categorical_crossentropy",
            *FAST,
            "--json",
            "r.json",
        ],
        tmp_path,
    )
    assert code == 0, err
    result = LRFinderResult.from_json(tmp_path / "r.json")
    assert result.info["optimizer"] == "Adam" and result.info["loss"] == "sparse_categorical_crossentropy"
    assert result.num_steps > 5
    assert (tmp_path / "raw.keras").read_bytes() == saved  # the file is only read


def test_optimizer_and_loss_options_are_for_saved_keras_models_only(tmp_path):
    (tmp_path / "quad.py").write_text("def step(lr):\n    return 1.0\n")
    code, _, err = run(["find", "quad.py", "--optimizer", "adam"], tmp_path)
    assert code == 2 and err == (
        "Error: --optimizer is for a saved .keras model; a script defines its own "
        "optimizer and criterion (or loss)\n"
    )
    code, _, err = run(["find", "quad.py", "--optimizer", "adam", "--loss", "mse"], tmp_path)
    assert code == 2 and err.startswith("Error: --optimizer and --loss are for a saved .keras model")


# -- find: every error is one line, with its exit code, and writes nothing ---------------------

ERROR_SCRIPTS = {
    "raises.py": "import math\n\ndef helper():\n    return 1 / 0\n\nvalue = helper()\n",
    "no_model.py": "class Net:\n    pass\n\nnet = Net()\nstep_size = 0.1\n",
    "no_loader.py": "model = object()\ntrain_dl = [1, 2, 3]\n",
    "step_fails.py": "def step(lr):\n    if lr > 1e-2:\n        raise MemoryError('pretend: out of memory')\n"
    "    return 1.0 / (1 + lr)\n",
    "exits.py": "raise SystemExit(3)\n",
    "setup_raises.py": "def lrfinder_setup():\n    raise KeyError('no such dataset')\n",
    "setup_typo.py": "def lrfinder_setup():\n    return {'modle': object(), 'loader': []}\n",
    "setup_returns_list.py": "def lrfinder_setup():\n    return [1, 2]\n",
    "syntax.py": "def broken(:\n    pass\n",
    "both_losses.py": "model = object()\nloader = []\ncriterion = len\nloss = len\n",
    "quad.py": QUADRATIC,
}

ERRORS = [
    # (arguments, exit code, what the line must say)
    (["missing.py"], 2, "script 'missing.py' not found"),
    (["notes.txt"], 2, "'notes.txt' is not a Python script (.py) or a saved Keras model"),
    (["raises.py"], 1, "raises.py raised ZeroDivisionError: division by zero (raises.py, line 4)"),
    (
        ["no_model.py"],
        1,
        "no_model.py defines no model: define `model` at top level, or a step(lr) -> "
        "loss function; it defines net (Net), which looks close",
    ),
    (
        ["no_loader.py"],
        1,
        "no_loader.py defines a model but no training data: name the training data "
        "`loader` or `train_loader` or `data` at top level; it defines train_dl (list)",
    ),
    (
        ["step_fails.py"],
        1,
        "the range test failed: MemoryError: pretend: out of memory (step_fails.py, line 3)",
    ),
    (["exits.py"], 1, "exits.py called sys.exit(3) while being imported"),
    (
        ["setup_raises.py"],
        1,
        "lrfinder_setup() in setup_raises.py raised KeyError: 'no such dataset' (setup_raises.py, line 2)",
    ),
    (["setup_typo.py"], 1, "returned the key 'modle': did you mean 'model'?"),
    (["setup_returns_list.py"], 1, "returned a list; return a dict such as"),
    (["syntax.py"], 1, "syntax.py is not valid Python: SyntaxError: invalid syntax (syntax.py, line 1)"),
    (["both_losses.py"], 1, "both_losses.py defines both criterion and loss; keep one"),
    (
        ["quad.py", "--suggest", "best"],
        2,
        "Invalid value for '--suggest': 'best' is not one of "
        + ", ".join(f"'{name}'" for name in sorted(RULES)),
    ),
    (["quad.py", "--start-lr", "-1e-3"], 2, "--start-lr must be a positive finite number, got -0.001"),
    (
        ["quad.py", "--start-lr", "1", "--end-lr", "0.1"],
        2,
        "--start-lr must be smaller than --end-lr, got --start-lr=1.0 >= --end-lr=0.1; swap them",
    ),
    (["quad.py", "--num-iter", "1"], 2, "--num-iter must be at least 2 (a ladder needs two ends), got 1"),
    (["quad.py", "--smooth", "1.5"], 2, "--smooth must be in [0, 1)"),
    (
        ["quad.py", "--diverge-threshold", "0.5"],
        2,
        "--diverge-threshold must be a number > 1 (how many times the best smoothed loss counts as "
        "divergence) or 'none' to never stop on a rising loss, got 0.5",
    ),
    (["quad.py", "--num-iter", "ten"], 2, "Invalid value for '--num-iter': 'ten' is not a valid integer"),
    (
        ["quad.py", "--plot", "no_such_folder/lr.png"],
        2,
        "--plot 'no_such_folder/lr.png': folder 'no_such_folder' does not exist",
    ),
    (
        ["quad.py", "--json", "quad.py/lr.json"],
        2,
        "--json 'quad.py/lr.json': 'quad.py' is a file, not a folder",
    ),
    (["quad.py", "--plot", "lr.svg"], 2, "--plot writes a PNG: give a path ending in .png"),
    (["quad.py", "--plot", "same.png", "--json", "same.png"], 2, "--plot and --json name the same file"),
    (["quad.py", "--device", "cpu"], 2, "--device does not apply to a step function"),
    (["quad.py", "--data", "xy.npz"], 2, "--data is for a saved .keras model"),
    (["model.keras"], 2, "model.keras is a saved Keras model: give its training data with --data"),
    (["quad.py", "--no-such-option"], 2, "No such option '--no-such-option'"),
    ([], 2, "Missing argument 'SCRIPT'"),
]


@pytest.fixture
def error_folder(tmp_path):
    for name, source in ERROR_SCRIPTS.items():
        write(tmp_path, name, source)
    (tmp_path / "notes.txt").write_text("not python")
    (tmp_path / "model.keras").write_bytes(b"")
    (tmp_path / "lr.json").write_text("kept")  # an existing output a failed run must not touch
    return tmp_path


@pytest.mark.parametrize(("args", "code", "message"), ERRORS, ids=[" ".join(e[0]) or "none" for e in ERRORS])
def test_errors_are_one_line_with_exit_code_and_write_nothing(error_folder, args, code, message):
    before = sorted(p.name for p in error_folder.iterdir())
    got, out, err = run(
        ["find", *args, "--json", "lr.json"] if "--json" not in args else ["find", *args], error_folder
    )
    assert got == code, err
    assert err.count("\n") == 1 and err.startswith("Error: "), err
    assert message in err
    assert "Traceback" not in err and out == ""
    assert sorted(p.name for p in error_folder.iterdir()) == before  # no PNG, no temporary file
    assert (error_folder / "lr.json").read_text() == "kept"


def test_unknown_rule_lists_the_known_rules(error_folder):
    _, _, err = run(["find", "quad.py", "--suggest", "nope"], error_folder)
    assert all(name in err for name in RULES)


def test_output_paths_are_checked_before_the_sweep(tmp_path):
    write(
        tmp_path,
        "marked.py",
        QUADRATIC + "\nimport pathlib\n"
        "def lrfinder_setup():\n    pathlib.Path('setup-ran').touch()\n"
        "    return {'step': step}\n",
    )
    code, _, err = run(["find", "marked.py", "--json", "missing/r.json"], tmp_path)
    assert code == 2 and "missing" in err
    assert not (tmp_path / "setup-ran").exists()


def test_an_output_folder_without_write_access(tmp_path):
    folder = Path("/sys")  # sysfs takes no new files, even from root
    if not folder.is_dir():
        pytest.skip("no /sys here")
    write(tmp_path, "quad.py", QUADRATIC)
    code, _, err = run(["find", "quad.py", "--plot", "/sys/lr.png"], tmp_path)
    assert code == 2
    assert err.startswith("Error: --plot '/sys/lr.png': cannot write in folder '/sys' (")
    assert err.count("\n") == 1 and not (tmp_path / "lr_finder.png").exists()


def test_debug_shows_the_traceback(error_folder):
    code, _, err = run(["find", "raises.py", "--debug"], error_folder)
    assert code == 1
    assert "Traceback" in err and "ZeroDivisionError" in err
    assert err.splitlines()[-1].startswith("Error: raises.py raised ZeroDivisionError")


def test_debug_holds_for_its_own_run_only(error_folder):
    assert "Traceback" in run(["find", "raises.py", "--debug"], error_folder)[2]
    code, _, err = run(["find", "raises.py"], error_folder)  # --debug lives in the run's context
    assert code == 1 and "Traceback" not in err and err.count("\n") == 1


def test_plot_takes_debug_and_still_reports_in_one_line(tmp_path):
    (tmp_path / "broken.json").write_text("{}")
    code, _, err = run(["plot", "broken.json", "--debug"], tmp_path)
    assert code == 2 and err.startswith("Error: broken.json is not an lrfinder result")


def test_missing_name_hint_lists_objects_when_none_look_close(tmp_path):
    write(tmp_path, "odd.py", "import math\nweights = [1.0]\ndef helper():\n    pass\n")
    code, _, err = run(["find", "odd.py"], tmp_path)
    assert code == 1
    assert "the objects it defines are weights (list)" in err and "helper" not in err and "math" not in err


# -- plot ---------------------------------------------------------------------------------------


def test_plot_overlays_two_results(tmp_path):
    write(tmp_path, "quad.py", QUADRATIC)
    for name, end in (("narrow", "1"), ("wide", "100")):
        args = ["find", "quad.py", "--end-lr", end, "--no-plot", "--json", f"{name}.json"]
        assert run(args, tmp_path)[0] == 0
    code, out, err = run(["plot", "narrow.json", "wide.json", "-o", "both.png"], tmp_path)
    assert code == 0, err
    assert out == "wrote plot: both.png (2 results)\n"
    assert_png(tmp_path / "both.png")
    # The labels are the file stems, as the legend shows them.
    from lrfinder.cli import _labels

    assert _labels([Path("narrow.json"), Path("wide.json")]) == ["narrow", "wide"]
    assert _labels([Path("a/run.json"), Path("b/run.json")]) == ["a/run", "b/run"]


def test_plot_of_several_files_labels_each_curve_with_its_suggestion(tmp_path, monkeypatch):
    import lrfinder.plot
    from lrfinder import LRFinderResult

    write(tmp_path, "quad.py", QUADRATIC)
    for name, end in (("narrow", "1"), ("wide", "100")):
        args = ["find", "quad.py", "--end-lr", end, "--no-plot", "--json", f"{name}.json"]
        assert run(args, tmp_path)[0] == 0
    legends: list[list[str]] = []
    draw = lrfinder.plot.plot_results

    def spy(*args, **kwargs):
        ax = draw(*args, **kwargs)
        legends.append([text.get_text() for text in ax.get_legend().get_texts()])
        return ax

    monkeypatch.setattr(lrfinder.plot, "plot_results", spy)
    code, _, err = run(["plot", "narrow.json", "wide.json", "-o", "both.png"], tmp_path)
    assert code == 0, err
    expected = []
    for name in ("narrow", "wide"):
        result = LRFinderResult.from_json(tmp_path / f"{name}.json")
        value = "no suggestion" if result.suggestion is None else f"{result.suggestion:.2e}"
        expected.append(f"{name} — {result.rule}: {value}")
    assert legends == [expected]


def test_plot_errors(tmp_path):
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    (tmp_path / "broken.json").write_text("{not json")
    cases = [
        (["plot", "missing.json"], "result file 'missing.json' not found"),
        (["plot", "other.json"], "other.json is not an lrfinder result"),
        (["plot", "broken.json"], "broken.json is not an lrfinder result"),
        (["plot", "other.json", "-o", "nowhere/x.png"], "folder 'nowhere' does not exist"),
        (["plot"], "Missing argument"),
    ]
    for args, message in cases:
        code, out, err = run(args, tmp_path)
        assert code == 2 and err.count("\n") == 1 and message in err and "Traceback" not in err, err
        assert out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.json", "other.json"]


# -- the command as a user runs it --------------------------------------------------------------


def test_version_and_help():
    result = CliRunner(**RUNNER).invoke(main, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"lrfinder {__version__}\n"
    result = CliRunner(**RUNNER).invoke(main, ["find", "--help"])
    assert result.exit_code == 0
    for option in (
        "--start-lr",
        "--end-lr",
        "--num-iter",
        "--mode",
        "--smooth",
        "--diverge-threshold",
        "--suggest",
        "--seed",
        "--device",
        "--plot",
        "--json",
        "--quiet",
        "lrfinder_setup()",
    ):
        assert option in result.stdout


def test_subprocess_find_writes_files_and_prints_summary(tmp_path):
    write(tmp_path, "quad.py", QUADRATIC)
    proc = run_subprocess(["find", "quad.py", *FAST, "--plot", "lr.png", "--json", "lr.json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = LRFinderResult.from_json(tmp_path / "lr.json")
    assert f"suggested lr:  {result.suggestion:.3g} ({DEFAULT_RULE})" in proc.stdout
    assert "wrote plot:    lr.png" in proc.stdout
    assert_png(tmp_path / "lr.png")


def test_subprocess_errors_are_one_line_without_traceback(error_folder):
    for args, code in (
        (["find", "raises.py"], 1),
        (["find", "quad.py", "--start-lr", "-1"], 2),
        (["find", "missing.py"], 2),
    ):
        proc = run_subprocess(args, error_folder)
        assert proc.returncode == code
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("Error: ")
        assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not (error_folder / "lr_finder.png").exists()


def test_subprocess_plot_on_two_json_files(tmp_path):
    write(tmp_path, "quad.py", QUADRATIC)
    for name in ("a", "b"):
        args = ["find", "quad.py", *FAST, "--no-plot", "--json", f"{name}.json", "--smooth", "0.5"]
        assert run_subprocess(args, tmp_path).returncode == 0
    proc = run_subprocess(["plot", "a.json", "b.json", "-o", "ab.png"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_png(tmp_path / "ab.png")


HEAVY = ("torch", "tensorflow", "keras", "matplotlib", "jax")


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["find", "--help"], ["plot", "--help"]])
def test_help_and_version_import_no_framework(args):
    probe = textwrap.dedent(f"""
        import sys
        from lrfinder.cli import main
        try:
            main({args!r}, prog_name="lrfinder")
        except SystemExit as stop:
            assert stop.code == 0, stop.code
        print(" ".join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", probe], env=subprocess_env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ""
    assert "lrfinder" in proc.stdout


def test_python_dash_m_lrfinder_help(tmp_path):
    proc = run_subprocess(["--help"], tmp_path)
    assert proc.returncode == 0 and "Usage: lrfinder" in proc.stdout


def test_a_librarys_deprecation_warnings_stay_hidden_as_python_hides_them(tmp_path):
    # Keras on JAX or torch warns about numpy's __array__ copy keyword inside its own code at every
    # run; Python shows a DeprecationWarning only where the running program itself triggers it.
    write(
        tmp_path,
        "oldlib.py",
        """
        import warnings

        def helper():
            warnings.warn("oldlib.helper is deprecated inside the library", DeprecationWarning, stacklevel=1)
    """,
    )
    source = QUADRATIC.replace("def step(lr):\n", "def step(lr):\n    oldlib.helper()\n    mine()\n")
    write(
        tmp_path,
        "quad.py",
        source
        + """
import oldlib
import warnings

def mine():
    warnings.warn("the script uses something deprecated", DeprecationWarning, stacklevel=1)
""",
    )
    proc = run_subprocess(["find", "quad.py", *FAST, "--no-plot"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "inside the library" not in proc.stderr
    assert "the script uses something deprecated" in proc.stderr


@pytest.mark.filterwarnings("ignore:lrfinder:RuntimeWarning")  # this curve gives no suggestion
def test_a_failed_write_names_the_output_not_its_temporary_file(tmp_path):
    import re

    import click

    from lrfinder import cli, find_lr

    result = find_lr(lambda lr: (lr - 0.01) ** 2 + 1.0, num_iter=20, progress=False)
    target = tmp_path / "gone" / "r.json"  # the folder vanished after the check before the sweep
    with pytest.raises(click.ClickException, match="^" + re.escape(f"cannot write {target}: ")) as caught:
        cli._write(result, {"json": target})
    assert ".tmp" not in caught.value.format_message()

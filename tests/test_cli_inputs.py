"""Every bad input reported in issue #12 is one ``Error:`` line with its exit code, and leaves the
user's files as they were; Ctrl-C in a real subprocess exits 130 and writes nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lrfinder import LRFinderResult
from tests.cases import require
from tests.test_cli import QUADRATIC, run, run_subprocess, subprocess_env, write
from tests.test_result import MALFORMED, MALFORMED_IDS, changed, saved_with_everything

SCRIPTS = {
    "quad.py": QUADRATIC,
    "base_exception.py": "class Stop(BaseException):\n    pass\n\nraise Stop('stopped on purpose')\n",
    "setup_exit0.py": "import sys\n\ndef lrfinder_setup():\n    sys.exit(0)\n",
    "setup_exit_msg.py": "import sys\n\ndef lrfinder_setup():\n    sys.exit('no data today')\n",
    "setup_base_exception.py": "def lrfinder_setup():\n    raise GeneratorExit('odd')\n",
    "step_exits.py": "import sys\n\ndef step(lr):\n    sys.exit(2)\n",
    "torch_model.py": "import torch\nmodel = torch.nn.Linear(3, 2)\n"
    "loader = [(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))]\n",
}


def result_json(**changes: object) -> str:
    lrs = np.geomspace(1e-4, 1.0, 20)
    losses = 2 - np.tanh(np.log10(lrs) + 2)
    data = LRFinderResult(lrs, losses, losses, "finished", settings={"num_iter": 20}).to_dict()
    data.update(changes)
    return json.dumps(data)


JSON_FILES = {
    "deep.json": "[" * 100_000 + "]" * 100_000,
    "huge_lr.json": result_json()
    .replace('"lrs": [', '"lrs": [1e400, ', 1)
    .replace('"losses": [', '"losses": [2.0, ', 1)
    .replace('"smoothed": [', '"smoothed": [2.0, ', 1),
    "nan_lrs.json": result_json(lrs=[None] * 20),
    "negative_lrs.json": result_json(lrs=[-1.0 * (i + 1) for i in range(20)][::-1]),
    "nan_losses.json": result_json(losses=[None] * 20, smoothed=[None] * 20),
    "empty.json": result_json(lrs=[], losses=[], smoothed=[]),
    "bad_stop.json": result_json(stop_reason=7),
    "settings_string.json": result_json(settings="fast"),
    "unreadable.json": result_json(),
}

CASES = [
    # (command line, exit code, what the one line must say)
    (["find", "quad.py", "--seed", "-1"], 2, "Invalid value for '--seed'"),
    (["find", "quad.py", "--seed", "1099511627776"], 2, "Invalid value for '--seed'"),
    (["find", "quad.py", "--num-iter", "10000000"], 2, "--num-iter must be at most 100000"),
    (["find", "base_exception.py"], 1, "base_exception.py raised Stop: stopped on purpose"),
    (["find", "setup_exit0.py"], 1, "lrfinder_setup() in setup_exit0.py called sys.exit(0)"),
    (["find", "setup_exit_msg.py"], 1, "called sys.exit('no data today') instead of returning"),
    (["find", "setup_base_exception.py"], 1, "raised GeneratorExit: odd"),
    (["find", "step_exits.py"], 1, "the range test failed: the script's code called sys.exit(2)"),
    (["find", "torch_model.py", "--device", "banana"], 2, "--device 'banana' is not a device PyTorch knows"),
    (["plot", "deep.json"], 2, "deep.json is not an lrfinder result: "),
    (["plot", "huge_lr.json"], 2, "lrs must be finite positive learning rates"),
    (["plot", "nan_lrs.json"], 2, "lrs must be finite positive learning rates"),
    (["plot", "negative_lrs.json"], 2, "lrs must be finite positive learning rates"),
    (["plot", "nan_losses.json"], 2, "losses holds no finite value"),
    (["plot", "empty.json"], 2, "empty.json holds no steps"),
    (["plot", "bad_stop.json"], 2, "stop_reason must be one of 'finished', 'diverged', 'non_finite', 'inter"),
    (["plot", "settings_string.json"], 2, "settings must be a JSON object, got a string ('fast')"),
    (["plot", "unreadable.json"], 2, "cannot read unreadable.json: Permission denied"),
]


@pytest.fixture
def folder(tmp_path):
    for name, source in SCRIPTS.items():
        write(tmp_path, name, source)
    for name, text in JSON_FILES.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "unreadable.json").chmod(0)
    (tmp_path / "lr_finder.png").write_bytes(b"the user's own plot")  # existing outputs
    (tmp_path / "out.json").write_text("the user's own json")
    yield tmp_path
    (tmp_path / "unreadable.json").chmod(0o600)


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.name: (p.read_bytes() if os.access(p, os.R_OK) else b"", p.stat().st_mode)
        for p in sorted(folder.iterdir())
    }


def assert_one_error_line(code: int, out: str, err: str, expected_code: int, message: str) -> None:
    assert code == expected_code, err
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("Error: "), err
    assert message in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize(("args", "code", "message"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_is_one_error_line_and_changes_no_file(folder, args, code, message, monkeypatch):
    if args[1] == "torch_model.py":
        require("torch")
    if args[1] == "unreadable.json" and os.access(folder / "unreadable.json", os.R_OK):
        # running as root, where a file without permissions is still readable: refuse it as the
        # kernel would for anyone else
        read_text = Path.read_text

        def refuse(self, *a, **k):
            if self.name == "unreadable.json":
                raise PermissionError(13, "Permission denied", str(self))
            return read_text(self, *a, **k)

        monkeypatch.setattr(Path, "read_text", refuse)
    before = snapshot(folder)
    extra = ["--json", "out.json"] if args[0] == "find" else ["-o", "lr_finder.png"]
    got, out, err = run([*args, *extra], folder)
    assert_one_error_line(got, out, err, code, message)
    assert snapshot(folder) == before


@pytest.mark.parametrize(("path", "value", "message"), MALFORMED, ids=MALFORMED_IDS)
def test_plot_of_a_malformed_file_is_one_error_line_naming_it_and_the_field(tmp_path, path, value, message):
    (tmp_path / "good.json").write_text(json.dumps(saved_with_everything()))
    (tmp_path / "bad.json").write_text(json.dumps(changed(saved_with_everything(), path, value)))
    got, out, err = run(["plot", "good.json", "bad.json", "-o", "plot.png"], tmp_path)
    assert_one_error_line(got, out, err, 2, message)
    assert err.startswith("Error: bad.json is not an lrfinder result")
    assert not (tmp_path / "plot.png").exists()


def test_plot_of_a_malformed_file_in_a_real_process_prints_no_traceback(tmp_path):
    path, value, message = next(case for case in MALFORMED if case[0] == ("plan", "schedule"))
    (tmp_path / "bad.json").write_text(json.dumps(changed(saved_with_everything(), path, value)))
    done = run_subprocess(["plot", "bad.json"], tmp_path)
    assert_one_error_line(done.returncode, done.stdout, done.stderr, 2, message)
    assert not (tmp_path / "lr_finder.png").exists()


def test_keras_errors_print_no_tensorflow_log_lines(folder):
    require("keras")
    (folder / "corrupt.keras").write_bytes(b"not a zip file")
    np.savez(folder / "xy.npz", x=np.zeros((8, 3)), y=np.zeros(8))
    np.savez(folder / "no_x.npz", inputs=np.zeros((8, 3)), y=np.zeros(8))
    before = snapshot(folder)
    for args, code, message in (
        (["find", "corrupt.keras", "--data", "xy.npz"], 1, "cannot load the Keras model corrupt.keras"),
        (["find", "corrupt.keras", "--data", "no_x.npz"], 2, "holds arrays ['inputs', 'y'] but no x"),
    ):
        proc = run_subprocess([*args, "--json", "out.json"], folder)
        assert_one_error_line(proc.returncode, proc.stdout, proc.stderr, code, message)
    assert snapshot(folder) == before


SLOW = """
import pathlib, time

def step(lr):
    time.sleep(0.02)
    marker = pathlib.Path("steps")
    marker.write_text(str(int(marker.read_text() or 0) + 1) if marker.exists() else "1")
    return 1.0 / (1.0 + lr)
"""


@pytest.mark.parametrize("quiet", [True, False])
def test_sigint_mid_sweep_exits_130_and_leaves_the_files_alone(tmp_path, quiet):
    write(tmp_path, "slow.py", SLOW)
    (tmp_path / "lr_finder.png").write_bytes(b"the user's own plot")
    (tmp_path / "r.json").write_text("the user's own json")
    (tmp_path / "steps").write_text("0")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != "steps"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lrfinder",
            "find",
            "slow.py",
            "--num-iter",
            "2000",
            "--json",
            "r.json",
            *(["-q"] if quiet else []),
        ],
        cwd=tmp_path,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while int((tmp_path / "steps").read_text() or 0) < 10:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert out == ""
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith("Error: interrupted after ")
    assert "no file was written" in errors[0] and "state was restored" in errors[0]
    if quiet:
        assert err.count("\n") == 1
    else:
        assert err.startswith("partial result (interrupted; nothing written):")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != "steps"} == before


def test_a_rank_other_than_the_first_writes_no_file_and_claims_none(tmp_path, monkeypatch):
    import lrfinder._script as script

    write(tmp_path, "quad.py", QUADRATIC)
    real_run_job = script.run_job

    def as_rank_one(*args, **kwargs):
        result, notes = real_run_job(*args, **kwargs)
        result.is_main_process = False  # what a torchrun rank > 0 gets back
        return result, notes

    monkeypatch.setattr(script, "run_job", as_rank_one)
    code, out, err = run(
        ["find", "quad.py", "--json", "r.json", "--num-iter", "60", "--end-lr", "100"], tmp_path
    )
    assert code == 0, err
    assert "wrote" not in out and "suggested lr:" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quad.py"]

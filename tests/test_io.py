"""Files are written whole, keep their mode, follow links, and never touch the umask."""

from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from lrfinder import _io
from lrfinder._io import atomic_write_bytes

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX modes and links")


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(autouse=True)
def umask_is_never_touched(monkeypatch):
    def refuse(mask):
        raise AssertionError("atomic_write_bytes changed the process umask")

    monkeypatch.setattr(os, "umask", refuse)


def test_a_new_file_gets_the_mode_open_would_give_it(tmp_path):
    code = (
        "import os, stat, sys; os.umask(0o027); from lrfinder._io import atomic_write_bytes; "
        "p = atomic_write_bytes(sys.argv[1], b'x'); print(oct(stat.S_IMODE(os.stat(p).st_mode)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "a.json")],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert out.stdout.strip() == "0o640"


def test_an_existing_file_keeps_its_mode_and_gets_the_new_bytes(tmp_path):
    target = tmp_path / "r.json"
    target.write_bytes(b"old")
    target.chmod(0o600)
    assert atomic_write_bytes(target, b"new") == target
    assert target.read_bytes() == b"new" and mode(target) == 0o600
    target.chmod(0o644)
    atomic_write_bytes(target, b"newer")
    assert mode(target) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_a_symlink_is_followed_and_stays_a_link(tmp_path):
    real = tmp_path / "real" / "plot.png"
    real.parent.mkdir()
    real.write_bytes(b"old")
    real.chmod(0o640)
    link = tmp_path / "plot.png"
    link.symlink_to(real)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and real.read_bytes() == b"new" and mode(real) == 0o640
    assert sorted(p.name for p in real.parent.iterdir()) == ["plot.png"]


def test_data_is_flushed_to_disk_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(_io.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    atomic_write_bytes(tmp_path / "a.bin", b"data")
    assert events[:2] == ["fsync", "replace"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    target.write_bytes(b"old")

    def fail(a, b):
        raise OSError("no space left on device")

    monkeypatch.setattr(_io.os, "replace", fail)
    with pytest.raises(OSError, match="no space"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    with pytest.raises(FileNotFoundError):
        atomic_write_bytes(tmp_path / "missing" / "r.json", b"x")


# -- non-finite numbers in saved results (one decoder for the curves, settings and probes) -------


@pytest.mark.parametrize(
    ("number", "written"), [(math.nan, None), (math.inf, "inf"), (-math.inf, "-inf"), (0.1, 0.1), (3, 3)]
)
def test_a_number_comes_back_as_it_was_written(number, written):
    assert _io.encode(number) == written and _io.encode(np.float64(number)) == written
    back = _io.decode_number(json.loads(json.dumps(_io.encode(number))))
    assert type(back) is float and (back == number or (math.isnan(back) and math.isnan(number)))


def test_free_form_data_gets_its_infinities_back_and_keeps_null_and_strings():
    data = {"end_lr": math.inf, "low": -math.inf, "missing": None, "names": ["adam", [math.inf, 1]]}
    assert _io.decode(json.loads(json.dumps(_io.encode(data)))) == data


@pytest.mark.parametrize("bad", ["nan", "Infinity", "1.5", True, [1.0], {"lr": 1.0}])
def test_anything_else_is_not_a_number_and_the_error_names_the_field(bad):
    expected = r'probes\[0\]\.score must be a number \(null for NaN, "inf" or "-inf"\)'
    with pytest.raises(ValueError, match=expected):
        _io.decode_number(bad, "probes[0].score")

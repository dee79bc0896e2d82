"""Seeded fault injection over every trainer: each fault ends the sweep the right way, and the
state the user owns comes back bit for bit.

Faults: an exception, a KeyboardInterrupt, a NaN or an Inf in the data at a random step; an
exception or a KeyboardInterrupt from the callback at a random step; for PyTorch, each with the
snapshot in memory and in ``snapshot_dir``. Every backend of the contract suite takes part (numpy,
PyTorch, Keras, Lightning, Hugging Face). A double Ctrl-C (the second landing during the
restore) is sent for real to a subprocess, per backend. The README's reliability section quotes
the counts of this file.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from lrfinder import RangeTestInterrupted, find_lr
from tests.cases import CASES, Boom
from tests.cases import assert_same as assert_same_state

NUM_ITER = 16
SWEEP = {"num_iter": NUM_ITER, "start_lr": 1e-4, "end_lr": 1e-1, "progress": False}
FAULTS = (
    "data_exception",
    "data_interrupt",
    "data_nan",
    "data_inf",
    "callback_exception",
    "callback_interrupt",
)
SEEDS = range(3)
N_BATCHES = 8  # the cases' default


def trials():
    for backend in sorted(CASES):
        for fault in FAULTS:
            for seed in SEEDS:
                for on_disk in (False, True) if backend == "torch" else (False,):
                    yield pytest.param(
                        backend,
                        fault,
                        seed,
                        on_disk,
                        id=f"{backend}-{fault}-{seed}{'-disk' if on_disk else ''}",
                    )


@pytest.mark.parametrize(("backend", "fault", "seed", "on_disk"), list(trials()))
def test_a_fault_at_a_random_step_ends_the_sweep_rightly_and_restores_exactly(
    backend, fault, seed, on_disk, tmp_path
):
    at = int(np.random.default_rng([seed, FAULTS.index(fault)]).integers(0, NUM_ITER))
    source, kind = fault.split("_")
    fail_with = {"exception": Boom, "interrupt": KeyboardInterrupt, "nan": math.nan, "inf": math.inf}[kind]
    setup = CASES[backend](fail_at=at if source == "data" else None, fail_with=fail_with)
    kwargs = dict(setup.kwargs, **SWEEP)
    if on_disk:
        kwargs["snapshot_dir"] = tmp_path
    if source == "callback":

        def callback(step, lr, loss, smoothed):
            if step == at:
                raise fail_with("callback failed on purpose")

        kwargs["callback"] = callback
    before = setup.state()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "exception":
            with pytest.raises(Boom):
                find_lr(setup.model, setup.data, **kwargs)
        elif kind == "interrupt":
            with pytest.raises(RangeTestInterrupted) as info:
                find_lr(setup.model, setup.data, **kwargs)
            result = info.value.result
            assert result.stop_reason == "interrupted" and info.value.restored
            # a loader that reads ahead meets the failing batch that many steps early, except at
            # the first batch of a pass (the cases' data hold N_BATCHES batches)
            ahead = setup.lookahead if at % N_BATCHES else 0
            assert result.num_steps == (at - ahead if source == "data" else at + 1)
            assert np.all(np.diff(result.lrs) > 0)  # no step recorded twice
        else:
            result = find_lr(setup.model, setup.data, **kwargs)
            assert result.stop_reason == "non_finite" and result.num_steps == at + 1
            assert not np.isfinite(result.losses[-1])
    assert_same_state(before, setup.state())
    assert list(tmp_path.iterdir()) == []  # no snapshot file left behind


# -- a double Ctrl-C, for real, in a subprocess -----------------------------------------------------

CHILD = textwrap.dedent("""
    import json, os, signal, sys, threading, time, warnings
    import numpy as np
    sys.path.insert(0, os.getcwd())
    from tests.cases import CASES
    import lrfinder.api
    from lrfinder import RangeTestInterrupted, find_lr

    backend, at = sys.argv[1], int(sys.argv[2])
    setup = CASES[backend]()
    make = lrfinder.api.make_trainer
    restores = []

    def make_trainer(*args, **kwargs):
        trainer = make(*args, **kwargs)
        restore = trainer.restore

        def second_ctrl_c_then_restore():
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # the user presses Ctrl-C again
            time.sleep(0.05)  # the signal arrives while the restore runs
            restore()
            restores.append("done")

        trainer.restore = second_ctrl_c_then_restore
        return trainer

    lrfinder.api.make_trainer = make_trainer

    def callback(step, lr, loss, smoothed):
        if step == at:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # the first Ctrl-C

    before = setup.state()
    outcome = "returned"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            find_lr(setup.model, setup.data, callback=callback, **setup.kwargs, num_iter=16,
                    start_lr=1e-4, end_lr=1e-1, progress=False)
    except RangeTestInterrupted as stop:
        outcome = f"interrupted:{stop.result.num_steps}"
    after = setup.state()
    exact = before.keys() == after.keys() and all(
        np.asarray(before[k]).tobytes() == np.asarray(after[k]).tobytes() for k in before)
    print(json.dumps({"outcome": outcome, "exact": exact, "restores": restores}))
""")


@pytest.mark.parametrize("backend", sorted(CASES))
@pytest.mark.parametrize("at", [3, 11])
def test_a_second_ctrl_c_during_the_restore_cannot_cut_it_short(backend, at, tmp_path):
    if backend != "numpy":  # the child imports the framework; skip (or fail in CI) without it
        from tests.cases import require

        require(backend)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, str(script), backend, str(at)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=os.getcwd(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"outcome": f"interrupted:{at + 1}", "exact": True, "restores": ["done"]}
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

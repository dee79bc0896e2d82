"""Where the CPU time of a Keras range test on TensorFlow goes, part by part, against the bare loop.

The same runs as ``keras_cpu`` (100 steps of batch 32 on digits, a fresh model each run, one CPU
thread), timed in this process's CPU time (``time.process_time``, steadier than wall time on a busy
machine) and split into parts:

* ``find_lr``: building the trainer (``init``), ``snapshot`` (building the optimizer copy, copying
  the state to host memory), tracing the training block (``trace``), the first block's call
  (``first block``: TensorFlow optimises the graph with Grappler and instantiates it, then runs 16
  steps), the other blocks, ``restore``, and what is left (``engine``: the sweep's own Python);
* ``find_lr_grappler``: the same with TensorFlow's default Grappler options for lrfinder's
  functions instead of its lighter ones;
* ``loop``: the hand-written ``tf.function`` loop of ``keras_cpu``: building the optimizer,
  tracing the step, its first call (one step, graph optimised), the other 99 steps.

Medians of ``--repeats`` interleaved rounds; the parts' medians need not add up to the total's.
Run by hand (not part of the tests)::

    python -m benchmarks.speed.keras_tf_parts --repeats 9
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np

from benchmarks.speed.keras_cpu import build, data, run_find_lr, set_threads, tf_train_step
from lrfinder.trainers import _keras_tf, keras_trainer

clock = time.process_time


class Parts:
    """CPU time spent in wrapped functions, summed per label over one run."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: Any, name: str, label: str) -> None:
        self._time(owner, name, lambda: label)

    def first(self, owner: Any, name: str, first: str, rest: str) -> None:
        """Time the first call of ``name`` as ``first`` and the others as ``rest``."""
        self._time(owner, name, lambda: first if self.calls.get(first, 0) == 0 else rest)

    def _time(self, owner: Any, name: str, label_of: Callable[[], str]) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            label = label_of()
            started = clock()
            try:
                return original(*args, **kwargs)
            finally:
                self.times[label] = self.times.get(label, 0.0) + clock() - started
                self.calls[label] = self.calls.get(label, 0) + 1

        setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, original))

    def undo(self) -> None:
        for undo in reversed(self._undo):
            undo()


def find_lr_parts(kind: str, x: np.ndarray, y: np.ndarray, grappler: bool) -> dict[str, float]:
    parts = Parts()
    parts.wrap(keras_trainer.KerasTrainer, "__init__", "init")
    parts.wrap(keras_trainer.KerasTrainer, "snapshot", "snapshot")
    parts.wrap(keras_trainer.KerasTrainer, "restore", "restore")
    parts.wrap(_keras_tf.TFSteps, "_relax", "trace")
    parts.first(_keras_tf.TFSteps, "_run", "first block", "other blocks")
    lean = _keras_tf._lean_call_options
    if grappler:
        _keras_tf._lean_call_options = lambda: None
    model = build(kind)
    try:
        started = clock()
        run_find_lr(model, x, y, 100, 32)
        total = clock() - started
    finally:
        _keras_tf._lean_call_options = lean
        parts.undo()
    times = dict(parts.times)
    times["first block"] -= times["trace"]  # _run traces before its first call
    times["engine"] = total - sum(times.values())
    times["total"] = total
    return times


def loop_parts(kind: str, x: np.ndarray, y: np.ndarray) -> dict[str, float]:

    model = build(kind)
    times: dict[str, float] = {}
    started = clock()
    optimizer, variables = model.optimizer, model.trainable_variables
    optimizer.build(variables)
    times["optimizer build"] = clock() - started

    train_step = tf_train_step(model)
    mark = clock()
    train_step.get_concrete_function(x[:32], y[:32])
    times["trace"] = clock() - mark
    mark = clock()
    float(train_step(x[:32], y[:32]))
    times["first step"] = clock() - mark
    mark = clock()
    for step in range(1, 100):
        loss = train_step(x[step * 32 : (step + 1) * 32], y[step * 32 : (step + 1) * 32])
    float(loss)
    times["other steps"] = clock() - mark
    times["total"] = clock() - started
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    args = parser.parse_args()
    if keras.backend.backend() != "tensorflow":
        raise SystemExit("this script times the TensorFlow backend")
    set_threads(1)
    print(f"keras {keras.__version__}, CPU seconds, medians of {args.repeats} interleaved rounds\n")
    for kind in args.models:
        x, y = data(kind, 100, 32)
        runs: dict[str, list[dict[str, float]]] = {"find_lr": [], "find_lr_grappler": [], "loop": []}
        for _ in range(args.repeats):
            runs["find_lr"].append(find_lr_parts(kind, x, y, grappler=False))
            runs["find_lr_grappler"].append(find_lr_parts(kind, x, y, grappler=True))
            runs["loop"].append(loop_parts(kind, x, y))
        for method, rows in runs.items():
            medians = {part: statistics.median(row[part] for row in rows) for part in rows[0]}
            print(f"{kind} {method}: " + ", ".join(f"{part} {value:.4f}" for part, value in medians.items()))
        print()


if __name__ == "__main__":
    main()

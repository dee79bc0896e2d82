"""Wall time of lrfinder's Keras range test against bare training loops of the same steps.

For a small MLP and a small CNN on scikit-learn's digits (8x8 images, 10 classes), three ways of
running ``--steps`` training steps of batch ``--batch-size`` are timed, each from a freshly built
and compiled model (so each pays its own tracing, as a range test run once does):

* ``find_lr``: ``lrfinder.find_lr`` over the whole ladder (snapshot, LR per step, losses read
  back once per block of steps, restore), with divergence stopping turned off so it runs every
  step, and ``shuffle=False`` so that it reads the batches the others read;
* ``loop``: a hand-written loop of the same train step at a constant LR, reading nothing back until
  the end: a ``tf.function`` (GradientTape, optimizer.apply) on TensorFlow, eager steps written as
  Keras's own torch ``train_step`` on torch, a ``jax.jit`` stateless step (``stateless_call``,
  ``optimizer.stateless_apply``, the state written back to the variables at the end) on JAX;
* ``fit``: ``model.fit`` on the arrays for one epoch, no shuffling;
* ``find_lr_grappler`` (TensorFlow only, on request): ``find_lr`` with TensorFlow's default options
  for its graph optimiser (Grappler), as before lrfinder ran a lighter Grappler on the CPU.

All three get the same arrays, digits repeated to exactly ``--steps`` full batches.

Three times are taken per run: the whole call (cold: tracing, snapshot and restore included) in wall
time and in this process's CPU time (``time.process_time``: all its threads, and much less affected
than wall time by other processes on a busy machine), and the steady state per step, from the end of
step ``WARMUP`` (its loss read back) to the end of the run, in wall time.
``WARMUP`` is one block of find_lr's steps, so that its clock starts where a block's losses have
just been read back.
The methods run interleaved (one of each per round), so that load on the machine hits them alike;
the tables give the medians of ``--repeats`` rounds and the ratios of the medians.

Run by hand (not part of the tests)::

    python -m benchmarks.speed.keras_cpu --steps 100 --repeats 7
    KERAS_BACKEND=torch python -m benchmarks.speed.keras_cpu --steps 100 --repeats 7
    KERAS_BACKEND=jax python -m benchmarks.speed.keras_cpu --steps 100 --repeats 7

``--methods find_lr loop`` leaves ``fit`` out (more rounds in the same time on a busy machine);
``--methods loop find_lr_grappler`` compares with TensorFlow's full Grappler (TensorFlow only).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# JAX's CPU threads can only be set before it is imported: one, as --threads defaults to.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import keras
import numpy as np
from sklearn.datasets import load_digits

import lrfinder
from lrfinder.trainers.keras_trainer import BLOCK_STEPS


def build(kind: str) -> keras.Model:
    keras.utils.set_random_seed(0)
    if kind == "mlp":
        layers = [
            keras.Input((64,)),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ]
    else:
        layers = [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    model = keras.Sequential(layers)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def data(kind: str, steps: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Digits repeated to exactly ``steps`` full batches, so that every method sees the same ones."""
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    if kind == "cnn":
        x = x.reshape(-1, 8, 8, 1)
    repeat = np.arange(steps * batch_size) % len(x)
    return x[repeat], digits.target.astype("int64")[repeat]


#: Steps run before the steady-state clock starts (tracing happens in the first): one block.
WARMUP = BLOCK_STEPS


def run_find_lr(model: keras.Model, x: np.ndarray, y: np.ndarray, steps: int, batch_size: int) -> float:
    mark = []

    def after(step: int, *_: float) -> None:
        if step == WARMUP - 1:
            mark.append(time.perf_counter())

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lrfinder.find_lr(
            model,
            (x, y),
            batch_size=batch_size,
            shuffle=False,
            num_iter=steps,
            start_lr=1e-5,
            end_lr=1.0,
            diverge_threshold=None,
            progress=False,
            callback=after,
        )
    return mark[0]


def run_find_lr_grappler(
    model: keras.Model, x: np.ndarray, y: np.ndarray, steps: int, batch_size: int
) -> float:
    if keras.backend.backend() != "tensorflow":
        raise SystemExit("find_lr_grappler is for the TensorFlow backend")
    from lrfinder.trainers import _keras_tf

    lean = _keras_tf._lean_call_options
    _keras_tf._lean_call_options = lambda: None  # TensorFlow's own call options: its full Grappler
    try:
        return run_find_lr(model, x, y, steps, batch_size)
    finally:
        _keras_tf._lean_call_options = lean


def tf_train_step(model: keras.Model) -> Any:
    """The least a user writes for one TensorFlow training step: a ``tf.function`` with a
    GradientTape and ``optimizer.apply`` (the optimizer built beforehand)."""
    import tensorflow as tf

    optimizer, variables = model.optimizer, model.trainable_variables

    @tf.function
    def train_step(xb: tf.Tensor, yb: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = model.compute_loss(xb, yb, model(xb, training=True), training=True)
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    return train_step


def run_loop(model: keras.Model, x: np.ndarray, y: np.ndarray, steps: int, batch_size: int) -> float:
    if keras.backend.backend() == "torch":
        return run_torch_loop(model, x, y, steps, batch_size)
    if keras.backend.backend() == "jax":
        return run_jax_loop(model, x, y, steps, batch_size)
    optimizer, variables = model.optimizer, model.trainable_variables
    optimizer.build(variables)  # eagerly, so that the step is traced once (as fit and find_lr do)
    train_step = tf_train_step(model)
    batches = -(-len(x) // batch_size)
    for step in range(steps):
        start = (step % batches) * batch_size
        loss = train_step(x[start : start + batch_size], y[start : start + batch_size])
        if step == WARMUP - 1:
            float(loss)
            mark = time.perf_counter()
    float(loss)  # wait for the last step
    return mark


def run_torch_loop(model: keras.Model, x: np.ndarray, y: np.ndarray, steps: int, batch_size: int) -> float:
    import torch

    optimizer, variables = model.optimizer, model.trainable_variables
    batches = -(-len(x) // batch_size)
    for step in range(steps):
        start = (step % batches) * batch_size
        xb = keras.ops.convert_to_tensor(x[start : start + batch_size])
        yb = keras.ops.convert_to_tensor(y[start : start + batch_size])
        y_pred = model(xb, training=True)
        model.zero_grad()
        loss = model.compute_loss(xb, yb, y_pred, training=True)
        loss.backward()
        with torch.no_grad():
            optimizer.apply([v.value.grad for v in variables], variables)
        if step == WARMUP - 1:
            float(loss.detach())
            mark = time.perf_counter()
    float(loss.detach())
    return mark


def run_jax_loop(model: keras.Model, x: np.ndarray, y: np.ndarray, steps: int, batch_size: int) -> float:
    import jax

    optimizer, loss_fn = model.optimizer, model.loss
    optimizer.build(model.trainable_variables)

    def compute_loss(trainable: list, non_trainable: list, xb: jax.Array, yb: jax.Array) -> tuple:
        y_pred, non_trainable = model.stateless_call(trainable, non_trainable, xb, training=True)
        return loss_fn(yb, y_pred), non_trainable

    gradient = jax.value_and_grad(compute_loss, has_aux=True)

    @jax.jit
    def train_step(state: tuple, xb: jax.Array, yb: jax.Array) -> tuple:
        trainable, non_trainable, optimizer_variables = state
        (loss, non_trainable), grads = gradient(trainable, non_trainable, xb, yb)
        trainable, optimizer_variables = optimizer.stateless_apply(optimizer_variables, grads, trainable)
        return loss, (trainable, non_trainable, optimizer_variables)

    variables = (model.trainable_variables, model.non_trainable_variables, optimizer.variables)
    state = tuple([v.value for v in group] for group in variables)
    batches = -(-len(x) // batch_size)
    for step in range(steps):
        start = (step % batches) * batch_size
        loss, state = train_step(state, x[start : start + batch_size], y[start : start + batch_size])
        if step == WARMUP - 1:
            float(loss)
            mark = time.perf_counter()
    float(loss)
    for group, values in zip(variables, state, strict=True):
        for variable, value in zip(group, values, strict=True):
            variable.assign(value)
    return mark


def run_fit(model: keras.Model, x: np.ndarray, y: np.ndarray, steps: int, batch_size: int) -> float:
    mark = []

    class Mark(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if batch == WARMUP - 1:  # logs hold the loss read back: the step has finished
                mark.append(time.perf_counter())

    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False, callbacks=[Mark()])
    return mark[0]


def set_threads(threads: int) -> None:
    if keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(threads)
    elif keras.backend.backend() == "jax":
        pass  # XLA's CPU threads are set by the environment (see main)
    else:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for the framework (1: steadier timings on a shared machine)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["find_lr", "loop", "fit"],
        choices=["find_lr", "loop", "fit", "find_lr_grappler"],
        help="find_lr and the baselines to time",
    )
    args = parser.parse_args()
    set_threads(args.threads)

    every: dict[str, Callable[..., float]] = {
        "find_lr": run_find_lr,
        "loop": run_loop,
        "fit": run_fit,
        "find_lr_grappler": run_find_lr_grappler,
    }
    methods = {name: every[name] for name in dict.fromkeys(["find_lr", *args.methods])}
    others = [name for name in methods if name != "find_lr"]
    print(
        f"keras {keras.__version__} on {keras.backend.backend()}, {args.steps} steps of batch "
        f"{args.batch_size}, {args.threads} CPU thread(s), medians of {args.repeats} interleaved "
        "rounds\n"
    )
    header = (
        "| model | time | find_lr | "
        + " | ".join(others)
        + " | "
        + " | ".join(f"find_lr / {name}" for name in others)
        + " |"
    )
    print(header)
    print("|---" * header.count(" | ") + "|---|")
    for kind in args.models:
        x, y = data(kind, args.steps, args.batch_size)
        whole: dict[str, list[float]] = {name: [] for name in methods}
        cpu: dict[str, list[float]] = {name: [] for name in methods}
        steady: dict[str, list[float]] = {name: [] for name in methods}
        for _ in range(args.repeats):
            for name, method in methods.items():
                model = build(kind)
                started, cpu_started = time.perf_counter(), time.process_time()
                warm = method(model, x, y, args.steps, args.batch_size)
                ended, cpu_ended = time.perf_counter(), time.process_time()
                whole[name].append(ended - started)
                cpu[name].append(cpu_ended - cpu_started)
                steady[name].append((ended - warm) / (args.steps - WARMUP) * 1e3)
        rows = (
            ("whole call (s)", whole, "{:.3f}"),
            ("whole call CPU (s)", cpu, "{:.3f}"),
            ("per step (ms)", steady, "{:.3f}"),
        )
        for label, times, unit in rows:
            median = {name: statistics.median(values) for name, values in times.items()}
            print(
                f"| {kind} | {label} | {unit.format(median['find_lr'])} | "
                + " | ".join(unit.format(median[name]) for name in others)
                + " | "
                + " | ".join(f"{median['find_lr'] / median[name]:.2f}" for name in others)
                + " |"
            )


if __name__ == "__main__":
    main()

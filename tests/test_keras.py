"""The Keras 3 trainer (issue 5): per-batch losses, exact restoration, schedules, data forms,
uncompiled models, validation mode, MirroredStrategy and the torch backend.

In-process tests run Keras on TensorFlow; the torch backend and MirroredStrategy run in subprocesses
(Keras's backend and TensorFlow's devices are fixed when they are first imported).
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from lrfinder import RangeTestInterrupted, SweepSettings, find_lr, run_sweep
from tests.cases import Boom, assert_same, changed_keys, require

keras = require("keras")
tf = require("tensorflow")
if keras.backend.backend() != "tensorflow":  # the torch backend has its own subprocess test below
    pytest.skip("in-process Keras tests run on the TensorFlow backend", allow_module_level=True)

from lrfinder.trainers import keras_trainer  # noqa: E402
from tests.cases_keras import batch_loss, case, make_batches, make_model, state_of  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Short sweeps in these tests often end before the loss falls: the engine then warns, rightly.
pytestmark = pytest.mark.filterwarnings("ignore:lrfinder. no suggestion:RuntimeWarning")
QUIET = {"progress": False}


def current_lr(optimizer) -> float:
    value = optimizer.learning_rate
    return float(value.numpy() if hasattr(value, "numpy") else value)


class Batches(keras.utils.PyDataset):
    def __init__(self, batches: list, fail_at: int | None = None) -> None:
        super().__init__()
        self.batches, self.fail_at, self.reads = batches, fail_at, 0

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int):
        if self.reads == self.fail_at:
            raise Boom("failed on purpose")
        self.reads += 1
        return self.batches[index]


def run_in_subprocess(script: str, env: dict[str, str] | None = None) -> dict:
    """Run ``script`` with this worktree importable; it prints one JSON line last."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- restoration -----------------------------------------------------------------------------------


@pytest.mark.parametrize("ending", ["success", "exception", "interrupt"])
def test_every_kind_of_state_changes_during_the_sweep_and_comes_back_bit_for_bit(ending):
    fail_with = {"success": Boom, "exception": Boom, "interrupt": KeyboardInterrupt}[ending]
    setup = case(fail_at=None if ending == "success" else 7, fail_with=fail_with, dropout=0.3)
    before = setup.state()
    during: dict[str, np.ndarray] = {}

    def look(step, lr, loss, smoothed):
        if step == 5:
            during.update(setup.state())

    # Blocks of 3 steps: two blocks have run (and been recorded) when the data fails at step 7.
    trainer = keras_trainer.KerasTrainer(setup.model, setup.data, block_steps=3)
    settings = SweepSettings(num_iter=12, start_lr=1e-3, end_lr=1e-1)
    if ending == "exception":
        with pytest.raises(Boom):
            run_sweep(trainer, settings, callback=look, **QUIET)
    elif ending == "interrupt":
        with pytest.raises(RangeTestInterrupted) as info:
            run_sweep(trainer, settings, callback=look, **QUIET)
        assert len(info.value.outcome.losses) == 7
    else:
        assert len(run_sweep(trainer, settings, callback=look, **QUIET).losses) == 12
    # The test can fail: each kind of state really moved during the sweep...
    changed = set(changed_keys(before, during))
    for part in (
        "kernel",
        "moving_mean",
        "moving_variance",
        "seed_generator_state",
        "iteration",
        "kernel_momentum",
        "kernel_velocity",
    ):
        assert any(key.endswith(part) for key in changed), f"no {part} changed during the sweep"
    # ...and all of it is back.
    assert_same(before, setup.state())


def test_the_model_metric_variables_are_restored_too():
    setup = case()
    model = setup.model
    before = [np.array(v.numpy()) for v in model.metrics_variables]
    assert before, "the compiled model has a loss tracker"
    find_lr(model, setup.data, num_iter=6, **QUIET)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.metrics_variables, strict=True))


# -- the recorded loss -----------------------------------------------------------------------------


def regression_setup(n_batches: int = 6, size: int = 16, scales=(1.0, 25.0)):
    """An MLP without BN or dropout (training and inference losses agree) and batches whose losses
    differ by orders of magnitude, so that a running mean could not pass for the batch losses."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    rng = np.random.default_rng(4)
    w = rng.normal(size=(4, 1))
    batches = []
    for k in range(n_batches):
        x = rng.normal(size=(size, 4)).astype("float32")
        batches.append((x, (x @ w * scales[k % len(scales)]).astype("float32")))
    return model, batches


def test_each_recorded_loss_is_its_own_batch_loss_before_the_update_not_a_running_mean():
    model, batches = regression_setup()
    reference = keras.models.clone_model(model)
    reference.set_weights(model.get_weights())
    reference.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    result = find_lr(
        model,
        Batches(batches),
        start_lr=1e-4,
        end_lr=1e-2,
        num_iter=len(batches),
        smooth=0.0,
        diverge_threshold=None,
        **QUIET,
    )
    expected = []
    for (x, y), lr in zip(batches, result.lrs, strict=True):
        expected.append(float(reference.test_on_batch(x, y)))  # evaluate-style, before the update
        reference.optimizer.learning_rate.assign(lr)
        reference.train_on_batch(x, y)
    np.testing.assert_allclose(result.losses, expected, rtol=1e-4)
    # The batches tell a batch loss from a running mean (what fit's logs["loss"] reports) apart.
    running_mean = np.cumsum(expected) / np.arange(1, len(expected) + 1)
    assert np.max(np.abs(running_mean / np.asarray(expected) - 1)) > 1.0
    assert result.losses[1] / result.losses[0] > 100


def test_the_lr_is_set_on_the_optimizer_for_every_batch():
    setup = case()
    seen = []
    trainer = keras_trainer.KerasTrainer(setup.model, setup.data, block_steps=1)  # read after each step
    run_sweep(
        trainer,
        SweepSettings(num_iter=8, start_lr=1e-4, end_lr=1e-2),
        callback=lambda step, lr, loss, smoothed: seen.append((lr, current_lr(setup.model.optimizer))),
        **QUIET,
    )
    lrs, on_optimizer = zip(*seen, strict=True)
    np.testing.assert_allclose(on_optimizer, lrs, rtol=1e-6)
    assert setup.model.optimizer.learning_rate.numpy() == np.float32(1e-3)  # restored


def blocks_against_steps(make_data, block_steps: int, **settings):
    """The same sweep in blocks and one step per call, from the same state: (blocked, stepped)."""
    setup = case(dropout=0.3)
    outcomes = []
    for steps in (block_steps, 1):
        trainer = keras_trainer.KerasTrainer(setup.model, make_data(), block_steps=steps)
        outcomes.append(run_sweep(trainer, SweepSettings(**settings), progress=False))
    return outcomes


@pytest.mark.parametrize(("form", "block_steps"), [("arrays", 16), ("arrays", 5), ("PyDataset", 7)])
def test_blocks_of_steps_record_what_single_steps_record_and_stop_at_the_same_step(form, block_steps):
    # 50 samples in batches of 16: every pass ends in a batch of 2, which runs apart from the block.
    x, y = arrays_of(make_batches(4))
    make_data = {"arrays": lambda: (x[:50], y[:50]), "PyDataset": lambda: Batches(make_batches(5, size=12))}[
        form
    ]
    blocked, stepped = blocks_against_steps(make_data, block_steps, start_lr=1e-3, end_lr=1e4, num_iter=120)
    assert stepped.stop_reason in ("diverged", "non_finite") and len(stepped.losses) < 120
    assert blocked.stop_reason == stepped.stop_reason
    assert len(blocked.losses) == len(stepped.losses)  # steps run past the stop are not recorded
    np.testing.assert_allclose(blocked.lrs, stepped.lrs, rtol=0)
    # Each step's LR and batch as in single steps; the losses agree to float32 rounding (they grow
    # by orders of magnitude near the stop, where rounding differences grow with them).
    np.testing.assert_allclose(blocked.losses, stepped.losses, rtol=1e-4)


def test_ctrl_c_inside_a_block_restores_and_keeps_the_blocks_read_before_it():
    setup = case(dropout=0.3)
    before = setup.state()
    trainer = keras_trainer.KerasTrainer(setup.model, setup.data, block_steps=4)
    snapshot, blocks = trainer.snapshot, []

    def snapshot_then_interrupt_the_second_block():
        snapshot()
        queue = trainer._steps._queue
        run = queue._run

        def run_or_interrupt(batches, lrs):
            if blocks:
                raise KeyboardInterrupt
            blocks.append(len(batches))
            return run(batches, lrs)

        queue._run = run_or_interrupt

    trainer.snapshot = snapshot_then_interrupt_the_second_block
    with pytest.raises(RangeTestInterrupted) as info:
        run_sweep(trainer, SweepSettings(num_iter=12, start_lr=1e-3, end_lr=1e-1), progress=False)
    outcome = info.value.outcome
    assert outcome.stop_reason == "interrupted" and blocks == [4]
    assert len(outcome.losses) == 4 and np.all(np.isfinite(outcome.losses))
    assert_same(before, setup.state())


def test_the_engine_reads_losses_back_once_per_block():
    setup = case()
    trainer = keras_trainer.make(setup.model, setup.data)
    reads = []
    fetch = trainer.fetch_losses
    trainer.fetch_losses = lambda losses: reads.append(len(losses)) or fetch(losses)
    traces = []
    run_sweep(
        trainer,
        SweepSettings(num_iter=40, diverge_threshold=None),
        progress=False,
        callback=lambda *_: traces.append(trainer.traces),
    )
    assert trainer.sync_every == keras_trainer.BLOCK_STEPS == 16
    assert reads == [16, 16, 8]
    assert traces == [1] * 40  # the short last block ran in the same trace


def test_the_training_step_is_traced_once_for_all_learning_rates_and_batch_sizes():
    setup = case()
    x, y = arrays_of(make_batches(4))
    trainer = keras_trainer.make(setup.model, (x[:50], y[:50]), batch_size=16)  # the 4th batch has 2
    traces = []
    run_sweep(
        trainer, SweepSettings(num_iter=15, end_lr=1e-2), callback=lambda *_: traces.append(trainer.traces)
    )
    assert traces == [1] * 15


def call_config() -> bytes:
    """The serialized ConfigProto that this thread's tf.function calls pass to the runtime."""
    from tensorflow.python.eager import context

    return context.context().function_call_options.config_proto_serialized


def graph_options_of(serialized: bytes):
    from tensorflow.core.protobuf import config_pb2

    return config_pb2.ConfigProto.FromString(serialized).graph_options


def sweep_seeing_call_configs(setup, make_data, **settings):
    """A sweep from ``setup``; also the call config each training block ran with."""
    trainer = keras_trainer.KerasTrainer(setup.model, make_data())
    snapshot, seen = trainer.snapshot, []

    class Spy:  # the training block, noting the options of each call
        def __init__(self, function):
            self.function = function

        def __call__(self, *args):
            seen.append(call_config())
            return self.function(*args)

        def __getattr__(self, name):
            return getattr(self.function, name)

    def snapshot_then_spy():
        snapshot()
        trainer._steps._train_block = Spy(trainer._steps._train_block)

    trainer.snapshot = snapshot_then_spy
    return run_sweep(trainer, SweepSettings(**settings), progress=False), seen


def is_lean(serialized: bytes) -> bool:
    """Whether a call config is lrfinder's lighter Grappler (one round, no memory or TFG passes)."""
    rewrite = graph_options_of(serialized).rewrite_options
    return (
        rewrite.meta_optimizer_iterations == rewrite.ONE
        and rewrite.memory_optimization == rewrite.NO_MEM_OPT
        and rewrite.disable_tfg_optimizer
        and not rewrite.disable_meta_optimizer
    )


def test_a_lighter_grappler_for_our_blocks_only_and_the_users_call_options_come_back():
    before, global_options = call_config(), tf.config.optimizer.get_experimental_options()
    outcome, seen = sweep_seeing_call_configs(case(), lambda: make_batches(8), num_iter=20, end_lr=1e-2)
    assert len(outcome.losses) == 20 and len(seen) == 2
    assert all(is_lean(serialized) for serialized in seen)
    assert call_config() == before  # this thread's options, as they were
    assert tf.config.optimizer.get_experimental_options() == global_options
    assert not is_lean(before)


def test_the_lighter_grappler_records_the_same_losses_and_stops_at_the_same_step(monkeypatch):
    x, y = arrays_of(make_batches(4))
    settings = {"start_lr": 1e-3, "end_lr": 1e4, "num_iter": 120}
    lean, seen = sweep_seeing_call_configs(case(dropout=0.3), lambda: (x[:50], y[:50]), **settings)
    assert is_lean(seen[0])
    from lrfinder.trainers import _keras_tf

    monkeypatch.setattr(_keras_tf, "_lean_call_options", lambda: None)  # TensorFlow's defaults
    full, seen = sweep_seeing_call_configs(case(dropout=0.3), lambda: (x[:50], y[:50]), **settings)
    assert not is_lean(seen[0])
    assert lean.stop_reason == full.stop_reason and lean.stop_reason in ("diverged", "non_finite")
    assert len(lean.losses) == len(full.losses) < 120
    # The passes that rewrite the arithmetic still run: the same losses (bit for bit here).
    np.testing.assert_allclose(lean.losses, full.losses, rtol=1e-6)


def test_graph_options_of_the_users_own_are_kept():
    from tensorflow.python.eager import context

    from lrfinder.trainers import _keras_tf

    assert _keras_tf._lean_call_options() is not None
    ctx = context.context()
    saved = ctx.function_call_options
    config = tf.compat.v1.ConfigProto()
    config.CopyFrom(tf.compat.v1.ConfigProto.FromString(saved.config_proto_serialized))
    config.graph_options.rewrite_options.remapping = config.graph_options.rewrite_options.OFF
    theirs = copy.copy(saved)
    theirs.config_proto_serialized = config
    ctx.function_call_options = theirs
    try:
        assert _keras_tf._lean_call_options() is None
        with _keras_tf._calling_with(None):
            assert ctx.function_call_options is theirs
    finally:
        ctx.function_call_options = saved


# -- learning-rate schedules -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["schedule", "callable"])
def test_a_schedule_is_set_aside_and_the_same_object_put_back(kind):
    schedule = (
        keras.optimizers.schedules.ExponentialDecay(1e-3, decay_steps=10, decay_rate=0.5)
        if kind == "schedule"
        else (lambda: 1e-3)
    )
    model = make_model(keras)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    batches = make_batches(4)
    model.train_on_batch(*batches[0])  # built: its own state is swept and restored
    optimizer = model.optimizer
    config = schedule.get_config() if kind == "schedule" else None
    lr_before = current_lr(optimizer)
    before = state_of(model)
    seen = []
    trainer = keras_trainer.KerasTrainer(model, Batches(batches), block_steps=1)
    stepped = run_sweep(
        trainer,
        SweepSettings(num_iter=6, start_lr=1e-5, end_lr=1e-2),
        callback=lambda step, lr, *_: seen.append((lr, current_lr(optimizer))),
        **QUIET,
    )
    np.testing.assert_allclose([s[1] for s in seen], [s[0] for s in seen], rtol=1e-6)  # the ramp ruled
    assert optimizer._learning_rate is schedule
    result = find_lr(model, Batches(batches), num_iter=6, start_lr=1e-5, end_lr=1e-2, **QUIET)
    np.testing.assert_allclose(result.losses, stepped.losses, rtol=1e-5)  # in one block, the same ramp
    assert optimizer._learning_rate is schedule
    if kind == "schedule":
        assert schedule.get_config() == config
        assert result.info["schedule"] == "ExponentialDecay"
    assert current_lr(optimizer) == lr_before
    assert result.info["schedule_set_aside"] is True
    assert_same(before, state_of(model))


def test_an_unbuilt_optimizer_is_left_unbuilt_and_swept_as_a_copy():
    schedule = keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=100)
    model = make_model(keras)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    weights = [np.array(v.numpy()) for v in model.variables]
    result = find_lr(model, Batches(make_batches(4)), num_iter=6, **QUIET)
    assert not model.optimizer.built and len(model.optimizer.variables) == 1  # its iteration count
    assert model.optimizer._learning_rate is schedule
    assert result.info["optimizer_state"] == "fresh copy"
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(weights, model.variables, strict=True))


# -- data forms ------------------------------------------------------------------------------------


def arrays_of(batches):
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


@pytest.mark.parametrize("form", ["arrays", "tf.data", "PyDataset", "list"])
def test_every_data_form_is_read_in_order_and_cycled(form):
    setup = case()
    model = setup.model
    batches = make_batches(3, size=10)
    batches[-1] = (batches[-1][0][:5], batches[-1][1][:5])  # a short last batch, as arrays give
    x, y = arrays_of(batches)
    data, kwargs = {
        "arrays": ((x, y), {"batch_size": 10, "shuffle": False}),
        "tf.data": (tf.data.Dataset.from_tensor_slices((x, y)).batch(10), {}),
        "PyDataset": (Batches(batches), {}),
        "list": (batches, {}),
    }[form]
    expected = [batch_loss(keras, model, *batches[k % 3]) for k in range(7)]
    before = setup.state()
    # An LR so small that the weights barely move: each step's loss is that of batch k % 3.
    result = find_lr(model, data, start_lr=1e-10, end_lr=1e-9, num_iter=7, **kwargs, **QUIET)
    np.testing.assert_allclose(result.losses, expected, rtol=1e-5)
    assert result.info["data"] == {"tf.data": "tf.data.Dataset"}.get(form, form)
    assert_same(before, setup.state())


def test_arrays_are_shuffled_each_pass_as_fit_does_from_numpys_seed_which_is_left_as_it_was():
    setup = case()
    model = setup.model
    x, y = arrays_of(make_batches(3, size=10))
    np.random.seed(11)
    state = np.random.get_state()
    copy = np.random.RandomState()
    copy.set_state(state)
    orders = [copy.permutation(30), copy.permutation(30)]
    expected = [
        batch_loss(keras, model, x[order[k * 10 : (k + 1) * 10]], y[order[k * 10 : (k + 1) * 10]])
        for order in orders
        for k in range(3)
    ]
    in_order = [
        batch_loss(keras, model, x[k * 10 : (k + 1) * 10], y[k * 10 : (k + 1) * 10]) for k in range(3)
    ]
    result = find_lr(model, (x, y), batch_size=10, start_lr=1e-10, end_lr=1e-9, num_iter=6, **QUIET)
    np.testing.assert_allclose(result.losses, expected, rtol=1e-5)
    assert not np.array_equal(orders[0], orders[1])  # a new order each pass
    assert not np.allclose(result.losses[:3], in_order, rtol=1e-3)
    after = np.random.get_state()
    assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]
    assert result.info["shuffle"] is True
    again = find_lr(model, (x, y), batch_size=10, start_lr=1e-10, end_lr=1e-9, num_iter=6, **QUIET)
    np.testing.assert_array_equal(again.losses, result.losses)  # the same seed, the same order
    unshuffled = find_lr(
        model, (x, y), batch_size=10, shuffle=False, start_lr=1e-10, end_lr=1e-9, num_iter=3, **QUIET
    )
    np.testing.assert_allclose(unshuffled.losses, in_order, rtol=1e-5)
    assert unshuffled.info["shuffle"] is False


def test_shuffle_is_for_arrays_only():
    setup = case()
    with pytest.raises(TypeError, match="shuffle= applies to"):
        find_lr(setup.model, setup.data, shuffle=False, **QUIET)
    with pytest.raises(TypeError, match="shuffle must be True or False"):
        find_lr(setup.model, arrays_of(make_batches(2)), shuffle="yes", **QUIET)


def test_sample_weights_in_arrays_weight_the_loss():
    setup = case()
    ((x, y),) = make_batches(1, size=8)
    weights = np.arange(8, dtype="float32")
    result = find_lr(setup.model, (x, y, weights), batch_size=8, num_iter=2, **QUIET)
    logits, _ = setup.model.stateless_call(
        [v.value for v in setup.model.trainable_variables],
        [v.value for v in setup.model.non_trainable_variables],
        x,
        training=True,
    )
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits, sample_weight=weights)
    assert result.losses[0] == pytest.approx(float(expected), rel=1e-5)


BAD_DATA = {
    "empty arrays": (lambda: (np.zeros((0, 6), "float32"), np.zeros(0)), {}, ValueError, "empty"),
    "unequal arrays": (
        lambda: (np.zeros((4, 6), "float32"), np.zeros(5)),
        {},
        ValueError,
        "same number of samples",
    ),
    "empty tf.data": (
        lambda: tf.data.Dataset.from_tensor_slices((np.zeros((0, 6)), np.zeros(0))).batch(4),
        {},
        ValueError,
        "empty",
    ),
    "empty PyDataset": (lambda: Batches([]), {}, ValueError, "empty"),
    "batch_size for tf.data": (
        lambda: tf.data.Dataset.from_tensor_slices((np.zeros((8, 6)), np.zeros(8))),
        {"batch_size": 8},
        TypeError,
        "batch_size",
    ),
    "x alone": (lambda: np.zeros((4, 6), "float32"), {}, TypeError, r"tuple \(x, y\)"),
    "no data": (lambda: None, {}, TypeError, "data is missing"),
    "a number": (lambda: 42, {}, TypeError, "cannot read batches"),
}


@pytest.mark.parametrize("name", sorted(BAD_DATA))
def test_bad_data_is_a_clear_error_before_anything_changes(name):
    make_data, kwargs, error, match = BAD_DATA[name]
    setup = case()
    data = make_data()
    before = setup.state()
    with pytest.raises(error, match=match):
        find_lr(setup.model, data, **kwargs, **QUIET)
    assert_same(before, setup.state())


# -- uncompiled models and options -----------------------------------------------------------------


def uncompiled_model():
    keras.utils.set_random_seed(5)
    return keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)]
    )


def test_an_uncompiled_model_without_optimizer_and_loss_is_a_clear_error():
    model = uncompiled_model()
    with pytest.raises(TypeError, match=r"not compiled.*model\.compile\(optimizer=\.\.\., loss=\.\.\.\)"):
        find_lr(model, arrays_of(make_batches(2)), **QUIET)
    with pytest.raises(TypeError, match="no loss="):
        find_lr(model, arrays_of(make_batches(2)), optimizer="adam", **QUIET)


def test_an_uncompiled_model_with_optimizer_and_loss_is_swept_and_left_uncompiled():
    model = uncompiled_model()
    optimizer = keras.optimizers.Adam(1e-3)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    batches = make_batches(3)
    weights = [np.array(v.numpy()) for v in model.variables]
    attributes = {
        "compiled": model.compiled,
        "optimizer": getattr(model, "optimizer", None),
        "loss": model.loss,
    }
    names = set(vars(model))
    expected = float(loss(batches[0][1], model(batches[0][0])))
    result = find_lr(model, Batches(batches), optimizer=optimizer, loss=loss, num_iter=8, **QUIET)
    assert result.losses[0] == pytest.approx(expected, rel=1e-5)
    assert (
        {"compiled": model.compiled, "optimizer": getattr(model, "optimizer", None), "loss": model.loss}
        == attributes
        == {"compiled": False, "optimizer": None, "loss": None}
    )
    assert set(vars(model)) == names  # nothing was attached to the model
    assert not optimizer.built  # the user's optimizer object is not touched either
    assert result.info["loss"] == "sparse_categorical_crossentropy"
    assert result.info["optimizer"] == "Adam"
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(weights, model.variables, strict=True))


def test_an_unbuilt_model_is_built_on_the_first_batch_as_fit_would():
    keras.utils.set_random_seed(6)
    model = keras.Sequential([keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert not model.built
    result = find_lr(model, arrays_of(make_batches(2)), batch_size=16, num_iter=5, **QUIET)
    assert model.built and result.num_steps == 5


def test_loss_given_for_a_compiled_model_replaces_the_compiled_loss_for_the_sweep_only():
    setup = case()
    model = setup.model
    expected = setup.first_loss() + 1.0

    def shifted(y_true, y_pred):
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True) + 1.0

    result = find_lr(model, setup.data, loss=shifted, num_iter=3, **QUIET)
    assert result.info["loss"] == "shifted"
    assert result.losses[0] == pytest.approx(expected, rel=1e-5)
    assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)


def test_a_model_with_its_own_train_step_gets_a_warning():
    class Custom(keras.Sequential):
        def train_step(self, data):  # pragma: no cover - never run by find_lr
            return super().train_step(data)

    model = Custom([keras.Input((6,)), keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.warns(UserWarning, match="overrides train_step"):
        find_lr(model, Batches(make_batches(2)), num_iter=3, **QUIET)


def test_the_result_records_what_was_swept():
    setup = case()
    info = find_lr(setup.model, setup.data, num_iter=3, **QUIET).info
    assert info["keras_backend"] == "tensorflow"
    assert info["optimizer"] == "Adam" and info["optimizer_state"] == "restored"
    assert info["loss"] == "sparse_categorical_crossentropy"
    assert info["strategy"] == "none" and info["schedule_set_aside"] is False


# -- validation mode -------------------------------------------------------------------------------


def test_validation_errors_are_clear():
    setup = case()
    val = (np.zeros((20, 6), "float32"), np.zeros(20))
    with pytest.raises(TypeError, match="val_batches= needs val_loader="):
        find_lr(setup.model, setup.data, val_batches=2, **QUIET)
    with pytest.raises(ValueError, match="only 1 batches"):
        find_lr(setup.model, setup.data, val_loader=val, val_batches=2, **QUIET)
    endless = tf.data.Dataset.from_tensor_slices(val).batch(4).repeat()
    with pytest.raises(ValueError, match="pass val_batches="):
        find_lr(setup.model, setup.data, val_loader=endless, **QUIET)


# -- MirroredStrategy and the torch backend (subprocesses) ----------------------------------------

MIRRORED = """
import json
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from lrfinder import find_lr
from tests.cases_keras import batch_loss, make_batches, make_model, state_of

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    model = make_model(keras)
batches = make_batches(4, size=32)
x = np.concatenate([b[0] for b in batches]); y = np.concatenate([b[1] for b in batches])
model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
before = state_of(model)
# Each replica normalises its own half of the batch: the batch loss is the mean over the halves.
x0, y0 = batches[0]
expected = np.mean([batch_loss(keras, model, x0[:16], y0[:16]), batch_loss(keras, model, x0[16:], y0[16:])])
result = find_lr(model, (x, y), batch_size=32, shuffle=False, num_iter=12, start_lr=1e-4, end_lr=1e-1,
                 progress=False)
after = state_of(model)
val = find_lr(model, (x, y), batch_size=32, val_loader=(x[:64], y[:64]), num_iter=4, progress=False)
print(json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "strategy": result.info["strategy"],
    "num_steps": result.num_steps,
    "first": float(result.losses[0]), "expected": float(expected),
    "finite": bool(np.all(np.isfinite(result.losses))),
    "changed": [k for k in before if before[k].tobytes() != after[k].tobytes()],
    "val_finite": bool(np.all(np.isfinite(val.losses))),
    "changed_after_val": [k for k in before if before[k].tobytes() != state_of(model)[k].tobytes()],
}))
"""


def test_mirrored_strategy_on_two_cpu_devices_gives_one_answer_and_restores():
    out = run_in_subprocess(MIRRORED)
    assert out["replicas"] == 2 and out["strategy"] == "MirroredStrategy"
    assert out["num_steps"] == 12 and out["finite"] and out["val_finite"]
    assert out["first"] == pytest.approx(out["expected"], rel=1e-5)
    assert out["changed"] == [] and out["changed_after_val"] == []


TORCH = """
import json, sys
import numpy as np
import keras
from lrfinder import find_lr

# First, before anything else can load TensorFlow (keras.utils.set_random_seed does): a sweep.
plain = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
plain.compile(optimizer="adam", loss="mse")
find_lr(plain, (np.ones((32, 6), "float32"), np.ones((32, 3), "float32")), num_iter=5, progress=False)
tensorflow_loaded = "tensorflow" in sys.modules

from tests.cases import Boom
from tests.cases_keras import batch_loss, case, make_batches, state_of

setup = case(n_batches=4)
before = setup.state()
expected = setup.first_loss()
result = find_lr(setup.model, setup.data, num_iter=10, start_lr=1e-4, end_lr=1e-1, progress=False)
after_success = setup.state()

failing = case(fail_at=5)
failing_before = failing.state()
try:
    find_lr(failing.model, failing.data, num_iter=10, progress=False)
    raised = False
except Boom:
    raised = True

schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.5)
model = setup.model
model.compile(optimizer=keras.optimizers.Adam(schedule),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
batches = make_batches(3, size=10)
model.train_on_batch(*batches[0])
x = np.concatenate([b[0] for b in batches]); y = np.concatenate([b[1] for b in batches])
evaluated = []
def look(step, lr, loss, smoothed):
    if step < 2:
        evaluated.append((loss, float(model.evaluate(x, y, batch_size=10, verbose=0))))
schedule_before = state_of(model)
val = find_lr(model, (x, y), batch_size=10, val_loader=(x, y), num_iter=4, callback=look, progress=False)
print(json.dumps({
    "backend": result.info["keras_backend"],
    "tensorflow_loaded": tensorflow_loaded,
    "first": float(result.losses[0]), "expected": expected,
    "restored": [k for k in before if before[k].tobytes() != after_success[k].tobytes()],
    "raised": raised,
    "restored_after_error": [k for k in failing_before
                             if failing_before[k].tobytes() != failing.state()[k].tobytes()],
    "schedule_back": model.optimizer._learning_rate is schedule,
    "schedule_state": [k for k in schedule_before
                       if schedule_before[k].tobytes() != state_of(model)[k].tobytes()],
    "evaluated": evaluated,
}))
"""


def test_keras_on_the_torch_backend_sweeps_and_restores():
    require("torch")
    out = run_in_subprocess(TORCH, env={"KERAS_BACKEND": "torch"})
    assert out["backend"] == "torch"
    assert not out["tensorflow_loaded"], "the Keras trainer must not import TensorFlow on torch"
    assert out["first"] == pytest.approx(out["expected"], rel=1e-5)
    assert out["restored"] == [] and out["raised"] and out["restored_after_error"] == []
    assert out["schedule_back"] and out["schedule_state"] == []
    for recorded, evaluated in out["evaluated"]:
        assert recorded == pytest.approx(evaluated, rel=1e-5)
    assert math.isfinite(out["first"])


JAX = """
import json, sys
import numpy as np
import keras
from lrfinder import SweepSettings, find_lr, run_sweep
from lrfinder.trainers import keras_trainer

# First, before anything else can load TensorFlow (keras.utils.set_random_seed does): a sweep.
plain = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
plain.compile(optimizer="adam", loss="mse")
find_lr(plain, (np.ones((32, 6), "float32"), np.ones((32, 3), "float32")), num_iter=5, progress=False)
tensorflow_loaded = "tensorflow" in sys.modules

from tests.cases_keras import case, make_batches, state_of

setup = case(n_batches=4)
expected = setup.first_loss()
before = setup.state()
result = find_lr(setup.model, setup.data, num_iter=20, start_lr=1e-4, end_lr=1e-1, progress=False)
after_success = setup.state()
x = np.concatenate([b[0] for b in make_batches(4)]); y = np.concatenate([b[1] for b in make_batches(4)])
dropout = case(dropout=0.3)  # its seed state moves too
dropout_before = dropout.state()
outcomes = []
for block_steps in (16, 1):  # 50 samples in batches of 32: each pass ends in a batch of 18
    trainer = keras_trainer.KerasTrainer(dropout.model, (x[:50], y[:50]), block_steps=block_steps)
    outcomes.append(run_sweep(trainer, SweepSettings(start_lr=1e-3, end_lr=1e4, num_iter=120),
                              progress=False))
after_blocks = dropout.state()

model = setup.model
schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.5)
model.compile(optimizer=keras.optimizers.Adam(schedule),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.train_on_batch(x[:16], y[:16])
schedule_before = state_of(model)
seen = []
trainer = keras_trainer.KerasTrainer(model, (x, y), block_steps=1)
stepped = run_sweep(trainer, SweepSettings(num_iter=6, start_lr=1e-5, end_lr=1e-1), progress=False,
                    callback=lambda step, lr, *_: seen.append((lr, float(model.optimizer.learning_rate))))
blocked = find_lr(model, (x, y), num_iter=6, start_lr=1e-5, end_lr=1e-1, progress=False)
evaluated = []
def look(step, lr, loss, smoothed):
    if step < 2:
        evaluated.append((loss, float(model.evaluate(x[:30], y[:30], batch_size=10, verbose=0))))
val = find_lr(model, (x, y), batch_size=10, val_loader=(x[:30], y[:30]), num_iter=4, callback=look,
              progress=False)

eager = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
eager_weights = [np.array(v.numpy()) for v in eager.variables]
uncompiled = find_lr(eager, (x, y), optimizer="sgd",
                     loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), num_iter=8,
                     progress=False)
left_uncompiled = not eager.compiled
eager.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              jit_compile=False)
eager_result = find_lr(eager, (x, y), shuffle=False, num_iter=8, progress=False)
jitted = keras_trainer.KerasTrainer(eager, (x, y), shuffle=False)
jitted.jit_compile = True
jitted_result = run_sweep(jitted, SweepSettings(num_iter=8), progress=False)
print(json.dumps({
    "backend": result.info["keras_backend"],
    "tensorflow_loaded": tensorflow_loaded,
    "first": float(result.losses[0]), "expected": expected,
    "restored": [k for k in before if before[k].tobytes() != after_success[k].tobytes()],
    "blocks": [[o.stop_reason, len(o.losses)] for o in outcomes],
    "blocks_error": float(np.max(np.abs(outcomes[0].losses / outcomes[1].losses - 1))),
    "restored_after_blocks": [k for k in dropout_before
                              if dropout_before[k].tobytes() != after_blocks[k].tobytes()],
    "schedule_back": model.optimizer._learning_rate is schedule,
    "schedule_state": [k for k in schedule_before
                       if schedule_before[k].tobytes() != state_of(model)[k].tobytes()],
    "seen": seen, "stepped": stepped.losses.tolist(), "blocked": blocked.losses.tolist(),
    "evaluated": evaluated,
    "uncompiled": [left_uncompiled, uncompiled.info["optimizer"], uncompiled.num_steps],
    "eager": [eager_result.info["jit_compile"], eager_result.losses.tolist(), jitted_result.losses.tolist()],
    "eager_weights_back": all(np.array_equal(a, v.numpy()) for a, v in zip(eager_weights, eager.variables)),
}))
"""


def test_keras_on_the_jax_backend_sweeps_in_jitted_blocks_and_restores():
    require("jax")
    out = run_in_subprocess(JAX, env={"KERAS_BACKEND": "jax"})
    assert out["backend"] == "jax"
    assert not out["tensorflow_loaded"], "the Keras trainer must not import TensorFlow on JAX"
    assert out["first"] == pytest.approx(out["expected"], rel=1e-5)
    assert out["restored"] == [] and out["restored_after_blocks"] == []
    (blocked_reason, blocked_steps), (stepped_reason, stepped_steps) = out["blocks"]
    assert blocked_reason == stepped_reason != "finished" and blocked_steps == stepped_steps < 120
    assert out["blocks_error"] < 1e-4
    assert out["schedule_back"] and out["schedule_state"] == []
    lrs, on_optimizer = zip(*out["seen"], strict=True)
    np.testing.assert_allclose(on_optimizer, lrs, rtol=1e-6)  # the ramp, not the schedule, ruled
    np.testing.assert_allclose(out["blocked"], out["stepped"], rtol=1e-5)
    for recorded, evaluated in out["evaluated"]:
        assert recorded == pytest.approx(evaluated, rel=1e-5)
    assert out["uncompiled"] == [True, "SGD", 8]
    jit_compile, eager, jitted = out["eager"]
    assert jit_compile is False
    np.testing.assert_allclose(eager, jitted, rtol=1e-5)  # the eager steps compute what jit does
    assert out["eager_weights_back"]


CONTRACT = [
    sys.executable,
    "-m",
    "pytest",
    "tests/test_contract.py",
    "-q",
    "-p",
    "no:cacheprovider",
    "-k",
    "keras",
]


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_the_contract_suite_holds_for_keras_on_another_backend(backend):
    require(backend)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "KERAS_BACKEND": backend,
        "LRFINDER_REQUIRE_BACKENDS": "1",
    }
    done = subprocess.run(CONTRACT, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-2000:]

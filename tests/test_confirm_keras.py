"""Confirm mode with Keras beyond the contract suite: validation mode, the score, (x, y) arrays."""

from __future__ import annotations

import numpy as np
import pytest

from lrfinder import find_lr
from lrfinder.confirm import ConfirmSettings
from tests.cases import require

keras = require("keras")
require("tensorflow")
if keras.backend.backend() != "tensorflow":
    pytest.skip("in-process Keras tests run on the TensorFlow backend", allow_module_level=True)

from tests.cases_keras import batch_loss, make_batches, make_model, state_of  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
KNOBS = ConfirmSettings(up=1, down=1, extra=0, min_probe_steps=2)  # three probes, no adaptive ones


def test_with_val_loader_the_probes_train_and_are_scored_on_it():
    model = make_model(keras)
    batches = make_batches(8)
    held_out = make_batches(2, seed=5)
    before = state_of(model)
    first = batch_loss(keras, model, *batches[0])
    result = find_lr(
        model,
        batches,
        val_loader=held_out,
        start_lr=1e-4,
        end_lr=1.0,
        num_iter=20,
        train_steps=20,
        confirm=True,
        confirm_settings=KNOBS,
        progress=False,
    )
    assert result.info["val_batches"] == 2  # the range test recorded the validation loss
    probes = result.confirmation.probes
    assert [len(p.losses) for p in probes] == [6, 6, 6]
    for probe in probes:  # training losses: the first batch's, before the first update
        assert probe.losses[0] == pytest.approx(first, rel=1e-5)
    # the kept LR is the best probe's, scaled for the run's length (ConfirmSettings.horizon)
    assert result.confirmation.best is not None
    assert result.confirmation.best.lr in [p.lr for p in probes]
    after = state_of(model)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_the_score_is_the_held_out_loss_weighted_by_batch_size():
    model = make_model(keras)
    x = np.concatenate([b[0] for b in make_batches(4, seed=3)])
    y = np.concatenate([b[1] for b in make_batches(4, seed=3)])
    held_x, held_y = x[:40], y[:40]  # batches of 16, 16 and 8: weighted, not a mean of means
    result = find_lr(
        model,
        (x, y),
        batch_size=16,
        shuffle=False,  # in order, as the replay below reads them
        start_lr=1e-4,
        end_lr=1.0,
        num_iter=20,
        train_steps=20,
        confirm=True,
        confirm_data=(held_x, held_y),
        confirm_settings=ConfirmSettings(up=1, down=0, min_probe_steps=2),
        progress=False,
    )
    probe = result.confirmation.probes[0]
    # replay the probe with Keras's own fit and evaluate, from the same state, on the same batches
    twin = make_model(keras)  # the same seed: the same weights and a fresh Adam, as the probe's copy
    twin.optimizer.learning_rate = probe.lr
    for step in range(probe.steps):
        index = step % 4
        twin.train_on_batch(x[16 * index : 16 * (index + 1)], y[16 * index : 16 * (index + 1)])
    expected = twin.evaluate(held_x, held_y, batch_size=16, verbose=0)
    assert probe.score == pytest.approx(expected, rel=1e-4)


def test_probes_at_the_same_lr_train_alike_even_with_a_fresh_copy_of_the_optimizer():
    model = make_model(keras)  # Adam not built yet: the sweep trains a copy of it
    twins = ConfirmSettings(up=1, down=0, spacing=1e-12, extra=0, min_probe_steps=2)
    result = find_lr(
        model,
        make_batches(8),
        start_lr=1e-4,
        end_lr=1.0,
        num_iter=20,
        train_steps=20,
        confirm=True,
        confirm_data=make_batches(2, seed=5),
        confirm_settings=twins,
        progress=False,
    )
    first, second = result.confirmation.probes
    assert first.losses == pytest.approx(second.losses, rel=1e-6)
    assert first.score == pytest.approx(second.score, rel=1e-6)

"""What every trainer promises, checked the same way for each backend (see tests/cases.py).

The first tests hold for any Trainer (the NumPy one included); those after them, for every
framework backend: its data (cycled, empty, one-shot), its validation mode and the options it
refuses. What only one framework has lives in tests/test_torch.py and tests/test_keras.py.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest

from lrfinder import RangeTestInterrupted, SweepSettings, find_lr
from lrfinder.confirm import ConfirmSettings
from lrfinder.trainers import BACKENDS, TrainerBackend, load_backend
from tests.cases import CASES, FRAMEWORK_CASES, Boom, assert_same, require

FAST = {"num_iter": 20, "start_lr": 1e-4, "end_lr": 1e-1, "progress": False}


#: The options find_lr hands to a trainer, each with a value a backend that takes it would accept.
TRAINER_OPTIONS = {
    "optimizer": None,
    "val_loader": None,
    "val_batches": 1,  # set per case
    "criterion": lambda predictions, targets: predictions.sum(),  # refused where the loss is the model's
    "accumulation_steps": 2,
    "amp": "bf16",
    "grad_clip": 1.0,
    "device": "cpu",
    "batch_fn": lambda batch: batch,
    "batch_size": 4,
    "shuffle": False,
    "snapshot_dir": ".",
    "snapshot": lambda: None,
    "restore": lambda state: None,
}


@pytest.fixture(params=sorted(CASES))
def build(request):
    return CASES[request.param]


@pytest.fixture(params=FRAMEWORK_CASES)
def build_framework(request):
    return CASES[request.param]


def test_state_restored_after_success(build):
    setup = build()
    before = setup.state()
    result = find_lr(setup.model, setup.data, **setup.kwargs, **FAST)
    assert result.num_steps == FAST["num_iter"]
    assert_same(before, setup.state())


@pytest.mark.parametrize("fail_at", [0, 7])
def test_state_restored_after_exception_mid_sweep(build, fail_at):
    setup = build(fail_at=fail_at)
    before = setup.state()
    with pytest.raises(Boom):
        find_lr(setup.model, setup.data, **setup.kwargs, **FAST)
    assert_same(before, setup.state())


def test_state_restored_after_keyboard_interrupt(build):
    setup = build(fail_at=7, fail_with=KeyboardInterrupt)
    before = setup.state()
    with pytest.raises(RangeTestInterrupted) as info:
        find_lr(setup.model, setup.data, **setup.kwargs, **FAST)
    result = info.value.result
    assert result.stop_reason == "interrupted"
    assert result.num_steps == 7 - setup.lookahead
    assert_same(before, setup.state())


def test_first_recorded_loss_is_the_first_batch_loss(build):
    setup = build()
    expected = setup.first_loss()
    result = find_lr(setup.model, setup.data, **setup.kwargs, **FAST)
    assert result.losses[0] == pytest.approx(expected, rel=1e-5)


def test_a_diverging_run_stops_early(build):
    setup = build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = find_lr(
            setup.model, setup.data, **setup.kwargs, start_lr=1e-3, end_lr=1e4, num_iter=200, progress=False
        )
    assert result.stop_reason in ("diverged", "non_finite")
    assert result.num_steps < 200


def test_short_data_is_cycled(build):
    setup = build(n_batches=3)
    result = find_lr(setup.model, setup.data, **setup.kwargs, **FAST)
    assert result.num_steps == FAST["num_iter"]
    assert np.all(np.isfinite(result.losses))
    # one batch a step, passes over the 3 started afresh
    assert setup.drawn() == FAST["num_iter"] + setup.lookahead


# -- framework backends: data, validation, options --------------------------------------------


def test_empty_data_is_a_clear_error_and_changes_nothing(build_framework):
    setup = build_framework()
    before = setup.state()
    with pytest.raises(ValueError, match="data is empty"):
        find_lr(setup.model, setup.empty(), **setup.kwargs, **FAST)
    assert_same(before, setup.state())


def test_data_that_yields_nothing_fails_at_the_first_step_and_changes_nothing(build_framework):
    setup = build_framework()
    before = setup.state()
    with pytest.raises(ValueError, match=r"yield(ed|s) no batches"):
        find_lr(setup.model, setup.no_batches(), **setup.kwargs, **FAST)
    assert_same(before, setup.state())


def test_one_shot_data_that_runs_out_says_so_and_changes_nothing(build_framework):
    setup = build_framework(n_batches=3)
    before = setup.state()
    with pytest.raises(ValueError, match=r"data ran out .*(cannot be iterated again|one-shot)"):
        find_lr(setup.model, setup.one_shot(), **setup.kwargs, **FAST)
    assert_same(before, setup.state())


@pytest.mark.parametrize("val_batches", [None, 1])
def test_validation_mode_records_the_validation_loss_after_each_update(build_framework, val_batches):
    setup = build_framework()
    assert setup.val_loss is not None
    seen: list[tuple[float, float]] = []

    def check(step: int, lr: float, loss: float, smoothed: float) -> None:
        # called once the step's loss is read: the model holds that step's update
        seen.append((loss, setup.val_loss(val_batches)))

    before = setup.state()
    extra = {} if val_batches is None else {"val_batches": val_batches}
    result = find_lr(
        setup.model,
        setup.data,
        **setup.kwargs,
        val_loader=setup.val_data,
        **extra,
        callback=check,
        start_lr=1e-3,
        end_lr=1e-1,
        num_iter=4,
        progress=False,
    )
    recorded, expected = zip(*seen, strict=True)
    assert len(recorded) == 4
    np.testing.assert_allclose(recorded, expected, rtol=1e-5)
    assert result.info["val_batches"] in ((1,) if val_batches == 1 else ("all", len(setup.val_data)))
    assert_same(before, setup.state())


def test_options_the_backend_does_not_take_are_refused_by_name(build_framework):
    setup = build_framework()
    accepted = load_backend(setup.backend).OPTIONS
    refused = sorted(set(TRAINER_OPTIONS) - accepted)
    assert refused  # every backend refuses some of them, or this test checks nothing
    before = setup.state()
    for option in refused:
        with pytest.raises(TypeError, match=rf"do not apply to .*\b{option}: "):
            find_lr(setup.model, setup.data, **setup.kwargs, **{option: TRAINER_OPTIONS[option]}, **FAST)
    assert_same(before, setup.state())


def test_the_options_find_lr_hands_on_are_those_the_contract_knows():
    keywords = set(inspect.signature(find_lr).parameters) - {"model", "data"}
    sweep = set(SweepSettings.__dataclass_fields__) | {"rule", "progress", "callback"}
    plan = {"schedule", "train_steps", "confirm", "confirm_data", "confirm_settings"}  # not the trainer's
    # loss is criterion's other name; set_lr acts on the result, after the trainer is done
    assert keywords - sweep - plan - {"loss", "set_lr"} == set(TRAINER_OPTIONS)


# -- confirm mode: three probes of 6 steps after a 20-step range test, within 2 * 20 batches -------

CONFIRM = {
    **FAST,
    "train_steps": 20,
    "confirm": True,
    "confirm_settings": ConfirmSettings(up=1, down=1, extra=0, min_probe_steps=2),  # no adaptive probes
}
PROBE_STEPS = 6  # 5 where the loader reads one batch ahead: (40 - 20 - 1) // 3 - 1
FAIL_IN_SECOND_PROBE = FAST["num_iter"] + PROBE_STEPS + 2


def test_confirm_restores_state_and_every_probe_starts_from_it(build):
    setup = build()
    before = setup.state()
    expected_first = setup.first_loss()
    result = find_lr(setup.model, setup.data, **setup.kwargs, confirm_data=setup.val_data, **CONFIRM)
    assert_same(before, setup.state())
    probes = result.confirmation.probes
    steps = PROBE_STEPS if setup.lookahead == 0 else (40 - 20 - setup.lookahead) // 3 - setup.lookahead
    assert [p.steps for p in probes] == [steps] * 3
    assert [len(p.losses) for p in probes] == [steps] * 3
    assert all(np.isfinite(p.score) for p in probes)
    # the loss of a probe's first batch is taken before its first update: the same starting state
    # and the same first batch give the same value whatever the probe's LR
    for probe in probes:
        assert probe.losses[0] == pytest.approx(expected_first, rel=1e-5)
    assert result.suggestion == result.confirmation.lr
    # the kept LR is the best probe's, scaled for the run's length (ConfirmSettings.horizon)
    assert result.confirmation.best is not None
    assert result.confirmation.best.lr in [p.lr for p in probes]
    assert result.range_suggestion == pytest.approx(probes[1].lr)
    drawn = FAST["num_iter"] + 3 * steps + setup.lookahead * (1 + 3)
    assert setup.drawn() == drawn <= 2 * CONFIRM["train_steps"]


# one-cycle probes also set the momentum (beta1) of every step where the trainer can (PyTorch)
@pytest.mark.parametrize("schedule", ["constant", "onecycle"])
def test_confirm_restores_state_after_an_exception_in_a_probe(build, schedule):
    setup = build(fail_at=FAIL_IN_SECOND_PROBE)
    before = setup.state()
    with pytest.raises(Boom):
        find_lr(
            setup.model, setup.data, **setup.kwargs, confirm_data=setup.val_data, **CONFIRM, schedule=schedule
        )
    assert_same(before, setup.state())


@pytest.mark.parametrize("schedule", ["constant", "onecycle"])
def test_confirm_restores_state_and_reraises_keyboard_interrupt_in_a_probe(build, schedule):
    setup = build(fail_at=FAIL_IN_SECOND_PROBE, fail_with=KeyboardInterrupt)
    before = setup.state()
    with pytest.raises(KeyboardInterrupt):
        find_lr(
            setup.model, setup.data, **setup.kwargs, confirm_data=setup.val_data, **CONFIRM, schedule=schedule
        )
    assert_same(before, setup.state())


def test_one_cycle_confirm_restores_state_bit_for_bit(build):
    setup = build()
    before = setup.state()
    result = find_lr(
        setup.model, setup.data, **setup.kwargs, confirm_data=setup.val_data, **CONFIRM, schedule="onecycle"
    )
    assert_same(before, setup.state())
    assert result.confirmation.lr is not None and result.plan.schedule == "onecycle"


@pytest.mark.parametrize(("framework", "module_name"), BACKENDS)
def test_every_backend_module_follows_the_backend_protocol(framework, module_name):
    require(framework)
    backend = load_backend(module_name)
    assert isinstance(backend, TrainerBackend)
    keywords = {name for name, p in inspect.signature(find_lr).parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert backend.OPTIONS and backend.OPTIONS.issubset(keywords | {"optimizer", "criterion"})
    assert backend.accepts(object()) is False


def test_a_module_that_is_no_backend_is_refused_by_name():
    with pytest.raises(
        TypeError,
        match=r"lrfinder.trainers.step_fn is not a trainer backend: it lacks "
        r"OPTIONS, accepts, make",
    ):
        load_backend("lrfinder.trainers.step_fn")

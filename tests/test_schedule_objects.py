"""From a result to a schedule object: torch schedulers and Keras schedules follow the plan's curves."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lrfinder import LRFinderResult, plan
from lrfinder import schedule_objects as so
from tests.cases import require
from tests.test_result import synthetic

TOTALS = (1, 2, 3, 7, 100, 101, 333)
PLAN_SCHEDULES = plan.SCHEDULES


def no_suggestion() -> LRFinderResult:
    return LRFinderResult(lrs=[1e-3, 1e-2], losses=[1.0, 2.0], smoothed=[1.0, 2.0], stop_reason="diverged")


def torch_lrs(scheduler, optimizer, total: int) -> np.ndarray:
    """The LR of every group at each of ``total`` steps, stepping the optimizer as in training."""
    seen = []
    for _ in range(total):
        seen.append([float(group["lr"]) for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return np.array(seen)


def sgd(torch, lrs=(0.5,), momentum=0.9):
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in lrs]
    return torch.optim.SGD(
        [{"params": [p], "lr": lr} for p, lr in zip(params, lrs, strict=True)], momentum=momentum
    )


# -- without a framework -----------------------------------------------------------------------


def test_the_schedule_and_steps_come_from_the_plan_when_not_given():
    result = synthetic()
    assert so.choose(result, 10, None) == ("constant", 10)
    with pytest.raises(ValueError, match="'onecycle' schedule needs total_steps=N"):
        so.choose(result, None, "onecycle")
    result = dataclasses.replace(result, plan=plan.Plan("cosine", 40))  # a range test told a plan
    assert so.choose(result, None, None) == ("cosine", 40)
    assert so.choose(result, 8, "cyclical") == ("cyclical", 8)
    with pytest.raises(ValueError, match="'onecycle', 'cosine', 'cyclical'"):
        so.choose(result, 8, "linear")
    for bad in (8.0, 0, True):
        with pytest.raises(ValueError, match="total_steps must be a positive integer"):
            so.choose(result, bad, None)


def test_the_expected_curve_is_the_plans_at_the_suggestion_and_a_triangle_for_cyclical():
    result = synthetic()
    for schedule in PLAN_SCHEDULES:
        np.testing.assert_array_equal(
            so.expected_curve(result, 50, schedule), plan.lr_curve(schedule, result.suggestion, 50)
        )
    low, high = result.lr_range
    curve = so.expected_curve(result, 16, "cyclical", cycles=2)  # half cycles of 4 steps
    np.testing.assert_allclose(
        curve[[0, 2, 4, 6, 8, 12, 15]],
        [low, (low + high) / 2, high, (low + high) / 2, low, high, low + (high - low) / 4],
        rtol=1e-12,
    )
    with pytest.raises(ValueError, match="cycles must be a positive integer"):
        so.expected_curve(result, 16, "cyclical", cycles=0)


def test_no_suggestion_is_a_clear_error_that_says_why():
    result = no_suggestion()
    with pytest.raises(ValueError, match=r"no suggested LR \(.*too few.*\).*diagnostics"):
        so.expected_curve(result, 10, "onecycle")
    with pytest.raises(ValueError, match="no lr_range"):
        so.expected_curve(result, 10, "cyclical")


# -- torch -------------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", [*PLAN_SCHEDULES, "cyclical"])
def test_torch_schedulers_follow_the_curve_step_by_step(schedule):
    torch = require("torch")
    result = synthetic()
    for total in TOTALS:
        optimizer = sgd(torch)
        scheduler = result.scheduler(optimizer, total_steps=total, schedule=schedule)
        expected = (
            plan.lr_curve(schedule, result.suggestion, total)
            if schedule != "cyclical"
            else so.expected_curve(result, total, schedule)
        )
        np.testing.assert_allclose(
            torch_lrs(scheduler, optimizer, total)[:, 0],
            expected,
            rtol=1e-12,
            atol=0,
            err_msg=f"{schedule}, {total} steps",
        )


def test_torch_onecycle_is_torchs_own_object_and_cycles_momentum_as_its_defaults_do():
    torch = require("torch")
    result = synthetic()
    optimizer = sgd(torch)
    scheduler = result.scheduler(optimizer, 20, "onecycle")
    assert isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR)
    assert optimizer.param_groups[0]["momentum"] == pytest.approx(0.95)  # OneCycleLR's default
    # an SGD without momentum gets it switched on, as OneCycleLR's defaults do: the plan the
    # suggestion and confirm mode's probes are made for
    plain = sgd(torch, momentum=0.0)
    torch_lrs(result.scheduler(plain, 20, "onecycle"), plain, 20)
    assert plain.param_groups[0]["momentum"] > 0.9  # switched on, and near 0.95 again at the end
    kept = sgd(torch, momentum=0.0)
    torch_lrs(result.scheduler(kept, 20, "onecycle", cycle_momentum=False), kept, 20)
    assert kept.param_groups[0]["momentum"] == 0.0
    adam = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(result.scheduler(adam, 20, "onecycle"), torch.optim.lr_scheduler.OneCycleLR)
    assert adam.param_groups[0]["betas"][0] == pytest.approx(0.95)
    # an optimizer without momentum or betas: OneCycleLR would refuse to cycle, so it does not
    adagrad = torch.optim.Adagrad([torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(result.scheduler(adagrad, 20, "onecycle"), torch.optim.lr_scheduler.OneCycleLR)


@pytest.mark.parametrize("schedule", [*PLAN_SCHEDULES, "cyclical"])
def test_torch_param_groups_keep_their_ratios(schedule):
    torch = require("torch")
    result = synthetic()
    optimizer = sgd(torch, lrs=(1e-3, 1e-4, 5e-3))
    lrs = torch_lrs(result.scheduler(optimizer, 30, schedule), optimizer, 30)
    np.testing.assert_allclose(lrs[:, 0], so.expected_curve(result, 30, schedule), rtol=1e-12)
    np.testing.assert_allclose(lrs[:, 1], lrs[:, 0] * 0.1, rtol=1e-12)
    np.testing.assert_allclose(lrs[:, 2], lrs[:, 0] * 5, rtol=1e-12)


@pytest.mark.parametrize("schedule", [*PLAN_SCHEDULES, "cyclical"])
def test_torch_a_second_scheduler_on_the_same_optimizer_starts_from_its_own_numbers(schedule):
    torch = require("torch")
    result = synthetic()
    optimizer = sgd(torch)
    torch_lrs(result.scheduler(optimizer, 10, "cosine"), optimizer, 10)  # leaves initial_lr behind
    optimizer.param_groups[0]["lr"] = 0.5
    lrs = torch_lrs(result.scheduler(optimizer, 10, schedule), optimizer, 10)
    np.testing.assert_allclose(lrs[:, 0], so.expected_curve(result, 10, schedule), rtol=1e-12)


def test_torch_scheduler_state_dict_round_trips():
    torch = require("torch")
    result = synthetic()
    optimizer = sgd(torch)
    scheduler = result.scheduler(optimizer, 40, "cosine")
    torch_lrs(scheduler, optimizer, 12)
    state = scheduler.state_dict()
    other = sgd(torch)
    resumed = result.scheduler(other, 40, "cosine")
    resumed.load_state_dict(state)
    assert resumed.get_last_lr() == scheduler.get_last_lr()


def test_torch_errors_are_clear():
    torch = require("torch")
    optimizer = sgd(torch)
    with pytest.raises(ValueError, match="no suggested LR"):
        no_suggestion().scheduler(optimizer, 10, "onecycle")
    with pytest.raises(ValueError, match="needs total_steps=N"):
        synthetic().scheduler(optimizer)
    with pytest.raises(TypeError, match=r"torch\.optim\.Optimizer, got list"):
        synthetic().scheduler([], 10)


# -- keras -------------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", [*PLAN_SCHEDULES, "cyclical"])
def test_keras_schedules_follow_the_curve_step_by_step(schedule):
    keras = require("keras")
    result = synthetic()
    for total in TOTALS:
        lr_schedule = result.keras_schedule(total_steps=total, schedule=schedule)
        assert isinstance(lr_schedule, keras.optimizers.schedules.LearningRateSchedule)
        expected = so.expected_curve(result, total, schedule)
        got = np.array([float(lr_schedule(step)) for step in range(total)])
        # float32 arithmetic: relative error ~1e-7, absolute near the zeros of the curves
        np.testing.assert_allclose(
            got, expected, rtol=2e-6, atol=1e-6 * expected.max(), err_msg=f"{schedule}, {total} steps"
        )


def test_keras_schedules_hold_after_the_last_step_and_serialize():
    keras = require("keras")
    result = synthetic()
    for schedule in [*PLAN_SCHEDULES, "cyclical"]:
        lr_schedule = result.keras_schedule(50, schedule)
        if schedule != "cyclical":  # past the run: the last LR, or 0 where the cosine ends
            after = plan.lr_at(schedule, result.suggestion, 50 if schedule == "cosine" else 49, 50)
            assert float(lr_schedule(60)) == pytest.approx(after, rel=1e-5, abs=1e-9)
        config = keras.optimizers.schedules.serialize(lr_schedule)
        again = keras.optimizers.schedules.deserialize(config)
        assert type(again) is type(lr_schedule)
        assert [float(again(s)) for s in range(50)] == [float(lr_schedule(s)) for s in range(50)]


def test_keras_schedule_drives_a_real_optimizer():
    keras = require("keras")
    result = synthetic()
    lr_schedule = result.keras_schedule(20, "onecycle")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr_schedule), loss="mse")
    x, y = np.ones((12, 3), "float32"), np.zeros((12, 1), "float32")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # 3 steps
    assert int(model.optimizer.iterations) == 3
    assert float(model.optimizer.learning_rate) == pytest.approx(
        plan.lr_at("onecycle", result.suggestion, 3, 20), rel=1e-6
    )


def test_keras_errors_are_clear():
    require("keras")
    with pytest.raises(ValueError, match="no suggested LR"):
        no_suggestion().keras_schedule(10, "cosine")
    with pytest.raises(ValueError, match="no lr_range"):
        no_suggestion().keras_schedule(10, "cyclical")


def test_a_result_told_a_plan_builds_that_plans_schedule_at_its_suggestion():
    torch = require("torch")
    result = dataclasses.replace(synthetic(), plan=plan.Plan("onecycle", 30))
    assert result.suggestion is not None  # the suggestion for this plan (its peak)
    optimizer = sgd(torch)
    scheduler = result.scheduler(optimizer)
    assert isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR)
    np.testing.assert_allclose(
        torch_lrs(scheduler, optimizer, 30)[:, 0],
        plan.lr_curve("onecycle", result.suggestion, 30),
        rtol=1e-12,
    )

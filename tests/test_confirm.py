"""The plan (schedule, train_steps), the plan's suggestion and confirm mode, with NumPy only."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrfinder import LRFinderResult, find_lr, suggest
from lrfinder._io import encode
from lrfinder.confirm import (
    Confirmation,
    ConfirmSettings,
    Probe,
    ProbePlan,
    ProbeRound,
    blind_centre,
    default_budget,
    generalisation_gap,
    horizon_for,
    next_offset,
    plan_probes,
    run_plan,
    vertex_lr,
)
from lrfinder.plan import Plan
from tests.test_result import synthetic
from tests.test_sweep import NoisyQuadratic

A = 3.0  # the quadratic's curvature: SGD on it diverges past lr = 2 / A

#: The former default search, for the tests of a mechanism (the fixed grid, ties, halving, budgets):
#: five candidates half a decade apart, no adaptive probes, the range test at most half the budget.
GRID5 = ConfirmSettings(up=2, down=2, extra=0, range_share=0.5, horizon=0.45)
#: GRID5 with successive halving: the best share of the candidates probed again, for longer.
HALVING = dataclasses.replace(GRID5, rounds=2)


def quadratic(seed: int = 0) -> tuple[NoisyQuadratic, dict]:
    """A noisy quadratic with find_lr's step-function arguments and its held-out loss."""
    problem = NoisyQuadratic(A, seed=seed)
    kwargs = {
        "snapshot": problem.snapshot,
        "restore": problem.restore,
        "confirm_data": lambda: 0.5 * problem.a * float(problem.w @ problem.w),
        "progress": False,
    }
    return problem, kwargs


class CountingStep:
    """Wraps a step function and counts the training steps (batches) it is asked for."""

    def __init__(
        self,
        problem: NoisyQuadratic,
        fail_at: int | None = None,
        fail_with: type[BaseException] = RuntimeError,
    ) -> None:
        self.problem, self.fail_at, self.fail_with = problem, fail_at, fail_with
        self.calls = 0

    def __call__(self, lr: float) -> float:
        if self.fail_at is not None and self.calls == self.fail_at:
            raise self.fail_with("failed on purpose")
        self.calls += 1
        return self.problem.step(lr)


def state(problem: NoisyQuadratic) -> tuple[bytes, str]:
    return problem.w.tobytes(), repr(problem.rng.bit_generator.state)


# -- the plan -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"schedule": "linear"}, ValueError, "schedule must be one of 'constant', 'onecycle', 'cosine'"),
        ({"train_steps": 0}, ValueError, "train_steps must be at least 1"),
        ({"train_steps": 2.5}, TypeError, "train_steps must be an integer"),
        ({"confirm": True}, ValueError, "confirm mode needs train_steps=N"),
        ({"confirm": 0, "train_steps": 10}, ValueError, "confirm must be True, False or a budget"),
        ({"confirm": "yes", "train_steps": 10}, ValueError, "confirm must be True, False or a budget"),
        ({"confirm_data": lambda: 1.0}, TypeError, "only apply with confirm=True"),
        ({"confirm_settings": ConfirmSettings()}, TypeError, "only apply with confirm=True"),
    ],
)
def test_bad_plans_are_refused_before_any_training(kwargs, error, match):
    calls = []
    with pytest.raises(error, match=match):
        find_lr(lambda lr: calls.append(lr) or 1.0, progress=False, **kwargs)
    assert calls == []


def test_confirm_without_held_out_data_or_restore_is_refused_before_any_training():
    problem, kwargs = quadratic()
    step = CountingStep(problem)
    with pytest.raises(TypeError, match="pass confirm_data="):
        find_lr(
            step,
            snapshot=problem.snapshot,
            restore=problem.restore,
            train_steps=200,
            confirm=True,
            progress=False,
        )
    with pytest.raises(TypeError, match="needs snapshot= and restore="):
        find_lr(step, train_steps=200, confirm=True, confirm_data=kwargs["confirm_data"], progress=False)
    assert step.calls == 0


def test_a_trainer_without_evaluate_cannot_confirm():
    from tests.cases import numpy_case

    trainer = numpy_case().model
    trainer.evaluate = None  # what a Trainer written before confirm mode looks like
    with pytest.raises(TypeError, match=r"add evaluate\(data\) -> float"):
        find_lr(trainer, train_steps=100, confirm=True, confirm_data=[], progress=False)


def test_a_step_function_confirm_data_must_be_a_callable_returning_a_number():
    problem, kwargs = quadratic()
    kwargs["confirm_data"] = [1.0, 2.0]
    with pytest.raises(TypeError, match=r"callable evaluate\(\) -> loss"):
        find_lr(problem.step, train_steps=150, confirm=True, **kwargs)


def test_without_a_plan_the_result_is_unchanged():
    problem, _ = quadratic()
    plain = find_lr(problem.step, snapshot=problem.snapshot, restore=problem.restore, progress=False)
    assert plain.plan is None and plain.confirmation is None
    assert plain.suggestion == plain.suggestions[plain.rule].lr == plain.range_suggestion
    data = plain.to_dict()
    assert data["plan"] is None and data["confirmation"] is None
    assert data["suggestion"] == data["range_suggestion"] == plain.suggestions[plain.rule].lr


@pytest.mark.parametrize("schedule", ["constant", "onecycle", "cosine"])
def test_a_plan_is_recorded_and_kept_by_the_json(schedule):
    problem, _ = quadratic()
    result = find_lr(
        problem.step,
        snapshot=problem.snapshot,
        restore=problem.restore,
        schedule=schedule,
        train_steps=500,
        progress=False,
    )
    assert result.plan == Plan(schedule, 500)
    back = LRFinderResult.from_json(result.to_json())
    assert back.plan == result.plan and back.suggestion == result.suggestion
    assert "plan=" in repr(result)


def test_train_steps_alone_plans_a_constant_lr():
    problem, _ = quadratic()
    result = find_lr(problem.step, train_steps=300, progress=False)
    assert result.plan == Plan("constant", 300)


# -- for_plan -------------------------------------------------------------------------------------


def raw_edge(curve) -> float:
    """The landmark the plan's offsets start from: raw_minimum's bottom edge on the raw losses."""
    return suggest.raw_minimum(curve.lrs, curve.losses, factor=1.0).lr


def test_for_plan_without_a_plan_or_with_another_rule_is_the_plain_rule():
    curve = synthetic()
    assert (
        suggest.for_plan(curve.lrs, curve.smoothed, curve.losses, None)
        == curve.suggestions[suggest.DEFAULT_RULE]
    )
    for plan in (None, Plan("onecycle", 100)):
        s = suggest.for_plan(curve.lrs, curve.smoothed, curve.losses, plan, rule="steepest")
        assert s == curve.suggestions["steepest"]


def test_for_plan_reads_the_raw_edge_and_the_schedules_offset():
    curve = synthetic()
    for schedule in ("constant", "onecycle", "cosine"):
        s = suggest.for_plan(curve.lrs, curve.smoothed, curve.losses, Plan(schedule, 1000))
        assert s.rule == suggest.PLAN_RULE
        assert s.lr == pytest.approx(raw_edge(curve) * 10 ** suggest.PLAN_OFFSETS[schedule])
    # without the raw losses the smoothed curve stands in for them
    s = suggest.for_plan(curve.lrs, curve.smoothed, None, Plan("constant", 1000))
    edge = suggest.raw_minimum(curve.lrs, curve.smoothed, factor=1.0).lr
    assert s.lr == pytest.approx(edge * 10 ** suggest.PLAN_OFFSETS["constant"])


def test_for_plan_moves_the_edge_by_the_schedules_offset_and_train_steps(monkeypatch):
    curve = synthetic()
    base = raw_edge(curve)
    monkeypatch.setitem(suggest.PLAN_OFFSETS, "onecycle", 0.5)
    monkeypatch.setitem(suggest.PLAN_OFFSETS, "constant", 0.0)
    monkeypatch.setitem(suggest.PLAN_STEPS_SLOPES, "onecycle", -0.25)
    monkeypatch.setattr(suggest, "PLAN_REFERENCE_STEPS", 1000)
    at_reference = suggest.for_plan(curve.lrs, curve.smoothed, curve.losses, Plan("onecycle", 1000))
    assert at_reference.lr == pytest.approx(base * 10**0.5)
    assert curve.lrs[at_reference.index] <= at_reference.lr < curve.lrs[at_reference.index + 1]
    longer = suggest.for_plan(curve.lrs, curve.smoothed, curve.losses, Plan("onecycle", 100_000))
    assert longer.lr == pytest.approx(base * 10 ** (0.5 - 0.25 * 2))
    no_steps = suggest.for_plan(curve.lrs, curve.smoothed, curve.losses, Plan("onecycle"))
    assert no_steps.lr == pytest.approx(base * 10**0.5)
    constant = suggest.for_plan(curve.lrs, curve.smoothed, curve.losses, Plan("constant", 1000))
    assert constant.lr == pytest.approx(base)
    # and the result follows it, while suggestions keeps every plain rule
    planned = LRFinderResult(curve.lrs, curve.losses, curve.smoothed, "diverged", plan=Plan("onecycle", 1000))
    assert planned.suggestion == pytest.approx(base * 10**0.5)
    assert planned.suggestions[suggest.DEFAULT_RULE] == curve.suggestions[suggest.DEFAULT_RULE]


def test_for_plan_without_a_suggestion_keeps_the_reason(monkeypatch):
    monkeypatch.setitem(suggest.PLAN_OFFSETS, "cosine", -1.0)
    lrs = np.geomspace(1e-4, 1.0, 40)
    flat = np.ones(40)
    s = suggest.for_plan(lrs, flat, flat, Plan("cosine", 100))
    assert s.lr is None and "raise end_lr" in s.reason  # a flat curve: lrfinder.suggest.flat_reason


def test_for_plan_below_the_curve_sits_at_index_zero(monkeypatch):
    curve = synthetic()
    monkeypatch.setitem(suggest.PLAN_OFFSETS, "cosine", -8.0)
    s = suggest.for_plan(curve.lrs, curve.smoothed, curve.losses, Plan("cosine", 100))
    assert s.index == 0 and s.lr < curve.lrs[0]


# -- the probe plan -------------------------------------------------------------------------------


def test_a_trainer_that_reads_ahead_gets_shorter_probes_within_the_same_budget():
    plan = plan_probes(300, 100, GRID5, lookahead=1)
    assert plan.rounds == (ProbeRound(5, 38),) and plan.batches == 100 + 1 + 5 * 39 <= 300
    assert ProbePlan.from_dict(plan.to_dict()) == plan
    # the default search: the range test shortened to 0.3 of the budget, 3 + 2 probes
    plan = plan_probes(300, 100, lookahead=1)
    assert plan.rounds == (ProbeRound(5, 40),) and plan.batches == 90 + 1 + 5 * 41 <= 300


def test_probe_plan_examples():
    assert default_budget(150) == 300
    plan = plan_probes(300, 100, GRID5)
    assert plan.range_steps == 100 and plan.rounds == (ProbeRound(5, 40),)
    assert plan.offsets == (-1.0, -0.5, 0.0, 0.5, 1.0) and plan.total_steps == 300
    short = plan_probes(100, 100, GRID5)  # the default range test gives way to half the budget
    assert short.range_steps == 50 and short.rounds == (ProbeRound(5, 10),)
    tiny = plan_probes(56, 100, GRID5)  # but never below min_range_steps
    assert tiny.range_steps == 30 and tiny.rounds == (ProbeRound(5, 5),)
    capped = plan_probes(10_000, 100, GRID5, train_steps=50)  # a probe is never longer than the run
    assert capped.rounds == (ProbeRound(5, 50),)
    halving = plan_probes(800, 100, dataclasses.replace(GRID5, rounds=3), train_steps=400)
    assert halving.rounds == (ProbeRound(5, 46), ProbeRound(3, 77), ProbeRound(2, 116))


def test_the_default_probe_plan():
    # 3 candidates half a decade apart and 2 adaptive probes, in one round of equal probes
    assert ConfirmSettings().candidates == 5
    plan = plan_probes(300, 100)
    assert plan.range_steps == 90 and plan.rounds == (ProbeRound(5, 42),)  # 100 > 0.3 * 300
    assert plan.offsets == (-0.5, 0.0, 0.5) and plan.total_steps == 300
    short = plan_probes(100, 100)  # the default range test gives way to 0.3 of the budget
    assert short.range_steps == 30 and short.rounds == (ProbeRound(5, 14),)
    tiny = plan_probes(56, 100)  # but never below min_range_steps
    assert tiny.range_steps == 30 and tiny.rounds == (ProbeRound(5, 5),)
    kept = plan_probes(1000, 100, train_steps=500)  # 100 <= 0.3 * 1000: the range test is kept
    assert kept.range_steps == 100 and kept.rounds == (ProbeRound(5, 180),)
    capped = plan_probes(10_000, 100, train_steps=50)  # a probe is never longer than the run
    assert capped.range_steps == 100 and capped.rounds == (ProbeRound(5, 50),)
    halving = plan_probes(800, 100, ConfirmSettings(extra=0, rounds=2), train_steps=400)
    assert halving.offsets == (-0.5, 0.0, 0.5)
    assert halving.rounds == (ProbeRound(3, 116), ProbeRound(2, 175))


def test_probe_plan_refuses_a_budget_too_small_and_says_what_to_change():
    with pytest.raises(ValueError, match=r"needs 55\).*larger budget"):
        plan_probes(54, 100)  # 30 range steps + 5 probes of 5
    with pytest.raises(ValueError, match="num_iter \\(you set it"):
        plan_probes(120, 100, shorten_range=False)
    with pytest.raises(ValueError, match="whole number of training steps"):
        plan_probes(0, 100)


def test_halving_drops_rounds_whose_probes_would_be_too_short():
    plan = plan_probes(80, 40, dataclasses.replace(GRID5, rounds=3, min_probe_steps=5))
    # 40 probe steps: three rounds would give 13 // 5 = 2 steps; two give 20 // 5 = 4; one gives 8
    assert plan.rounds == (ProbeRound(5, 8),)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"up": 0, "down": 0}, "at least two candidates"),
        ({"up": -1}, "integer >= 0"),
        ({"rounds": 0}, "rounds must be >= 1"),
        ({"keep": 1.0}, "keep must lie strictly between"),
        ({"spacing": 0}, "spacing must be a finite number > 0"),
        ({"shift": math.nan}, "shift must be a finite number"),
        ({"min_range_steps": 3}, "min_range_steps must be >= 5"),
    ],
)
def test_confirm_settings_are_checked(changes, match):
    with pytest.raises(ValueError, match=match):
        ConfirmSettings(**changes)


@settings(max_examples=300, deadline=None)
@given(
    budget=st.integers(1, 50_000),
    range_steps=st.integers(2, 1_000),
    up=st.integers(0, 4),
    down=st.integers(0, 4),
    rounds=st.integers(1, 4),
    extra=st.integers(0, 4),
    keep=st.floats(0.1, 0.9),
    range_share=st.floats(0.05, 0.95),
    min_probe_steps=st.integers(1, 50),
    train_steps=st.one_of(st.none(), st.integers(1, 20_000)),
    shorten=st.booleans(),
    lookahead=st.sampled_from([0, 0, 1, 2]),
    best_log10=st.floats(-6.0, 2.0),
)
def test_a_probe_plan_never_exceeds_its_budget(
    budget,
    range_steps,
    up,
    down,
    rounds,
    extra,
    keep,
    range_share,
    min_probe_steps,
    train_steps,
    shorten,
    lookahead,
    best_log10,
):
    if up + down == 0:
        up = 1
    if rounds > 1:
        extra = 0  # adaptive probes only without halving (ConfirmSettings refuses both)
    knobs = ConfirmSettings(
        up=up,
        down=down,
        rounds=rounds,
        extra=extra,
        keep=keep,
        range_share=range_share,
        min_probe_steps=min_probe_steps,
    )
    try:
        plan = plan_probes(
            budget, range_steps, knobs, train_steps=train_steps, shorten_range=shorten, lookahead=lookahead
        )
    except ValueError as error:
        assert "cannot hold" in str(error)
        needed = knobs.candidates * (min_probe_steps + lookahead)
        shortest = max(knobs.min_range_steps, math.floor(range_share * budget)) if shorten else range_steps
        assert budget - min(range_steps, shortest) - lookahead < needed
        return
    assert plan.total_steps <= plan.batches <= budget
    drawn = plan.range_steps + lookahead + sum(r.size * (r.steps + lookahead) for r in plan.rounds)
    assert plan.batches == drawn
    assert plan.range_steps <= range_steps
    if not shorten:
        assert plan.range_steps == range_steps
    counts = [r.size for r in plan.rounds]
    assert counts[0] == knobs.candidates == up + down + 1 + extra and len(counts) <= rounds
    assert len(plan.offsets) == up + down + 1
    if extra > 0:
        assert len(counts) == 1  # the adaptive probes share the one round with the candidates
    assert all(b < a for a, b in itertools.pairwise(counts)) and min(counts) >= 2
    assert plan.rounds[0].steps >= min_probe_steps or train_steps is not None
    if train_steps is not None:
        assert all(r.steps <= max(1, train_steps) for r in plan.rounds)
    assert all(r.steps >= min_probe_steps for r in plan.rounds[1:])
    # carried out, the search trains no more probes and steps than planned (adaptive ones included)
    probe, calls = score_table(best_log10)
    run_plan(plan, 0.01, probe, settings=knobs, train_steps=train_steps)
    assert len(calls) <= sum(counts) and sum(steps for _, steps in calls) <= plan.probe_steps
    assert plan.range_steps + sum(steps + lookahead for _, steps in calls) + lookahead <= budget


# -- run_plan: the search alone, on a recorded score table ----------------------------------------


def score_table(best_log10: float):
    """A probe function whose score is (log10 lr - best)^2, longer probes a little lower."""
    calls = []

    def probe(lr: float, steps: int):
        calls.append((lr, steps))
        return [1.0] * steps, (math.log10(lr) - best_log10) ** 2 + 1.0 / steps

    return probe, calls


def test_run_plan_keeps_the_best_probe():
    plan = plan_probes(300, 100, GRID5)
    probe, calls = score_table(best_log10=-1.4)
    confirmation = run_plan(plan, 0.01, probe, schedule="cosine", settings=GRID5)
    assert [steps for _, steps in calls] == [40] * 5
    # the scores are a parabola in log LR: its vertex between the best probe's neighbours is exact
    assert confirmation.lr == pytest.approx(10**-1.4)
    assert confirmation.best.lr == pytest.approx(10**-1.5) and confirmation.schedule == "cosine"
    assert confirmation.summary() == (
        "confirmed: 0.0398 (best of 5 probes, 40 steps each; the best, 0.0316, interpolated)"
    )
    assert confirmation.steps_used == 300
    plain = run_plan(plan, 0.01, probe, settings=dataclasses.replace(GRID5, interpolate=False))
    assert plain.lr == plain.best.lr == pytest.approx(10**-1.5)
    assert plain.summary() == "confirmed: 0.0316 (best of 5 probes, 40 steps each)"


def test_run_plan_halving_probes_the_best_again_for_longer():
    plan = plan_probes(800, 100, HALVING, train_steps=400)
    probe, calls = score_table(best_log10=-2.2)
    confirmation = run_plan(plan, 0.01, probe, settings=HALVING)
    first = [lr for lr, steps in calls if steps == 70]
    second = [lr for lr, steps in calls if steps == 116]
    assert len(first) == 5 and second == pytest.approx([10**-2.5, 10**-2.0, 10**-1.5])
    assert confirmation.best.lr == pytest.approx(10**-2.0)
    assert confirmation.lr == pytest.approx(10**-2.2)  # the last round's vertex
    assert [p.round for p in confirmation.probes] == [0] * 5 + [1] * 3
    assert confirmation.summary() == (
        "confirmed: 0.00631 (best of 5 probes, 2 rounds, up to 116 steps; the best, 0.01, interpolated)"
    )


def test_run_plan_ties_go_to_the_lower_lr_and_blown_up_probes_lose():
    plan = plan_probes(300, 100, GRID5)
    scores = {-3.0: math.inf, -2.5: 1.0, -2.0: 1.0, -1.5: math.nan, -1.0: 5.0}
    confirmation = run_plan(
        plan, 0.01, lambda lr, steps: ([], scores[round(math.log10(lr), 2)]), settings=GRID5
    )
    assert confirmation.lr == pytest.approx(10**-2.5)
    everything_blew_up = run_plan(plan, 0.01, lambda lr, steps: ([math.nan], math.inf), settings=GRID5)
    assert everything_blew_up.lr is None and "blew up" in everything_blew_up.reason
    assert everything_blew_up.best is None
    assert everything_blew_up.summary().startswith("confirmed: none (")


def test_adaptive_probes_follow_the_best_past_the_edge_then_halve_towards_it():
    knobs = ConfirmSettings(up=1, down=1, extra=3, range_share=0.5)  # the range test keeps 100
    plan = plan_probes(300, 100, knobs)
    assert plan.rounds == (ProbeRound(size=6, steps=33),) and plan.offsets == (-0.5, 0.0, 0.5)
    probe, calls = score_table(best_log10=-3.2)  # 1.2 decades below the centre, 0.01
    confirmation = run_plan(plan, 0.01, probe, settings=knobs)
    offsets = [round(math.log10(lr) + 2.0, 6) for lr, _ in calls]
    # past the lower edge twice, then halfway between the best (-1.0) and its better neighbour
    assert offsets == [-0.5, 0.0, 0.5, -1.0, -1.5, -1.25]
    assert confirmation.best.lr == pytest.approx(10**-3.25)
    assert confirmation.lr == pytest.approx(10**-3.2)  # the vertex, between -3.5 and -3.0


def test_adaptive_probes_stay_within_reach_and_stop_when_the_gaps_are_fine():
    knobs = ConfirmSettings(up=1, down=1, extra=6, reach=1.0, finest=0.25)
    probe, calls = score_table(best_log10=-5.0)  # far below anything within reach
    run_plan(plan_probes(1000, 100, knobs), 0.01, probe, settings=knobs)
    offsets = [round(math.log10(lr) + 2.0, 6) for lr, _ in calls]
    assert offsets == [-0.5, 0.0, 0.5, -1.0, -0.75]  # -1.5 is out of reach; 0.25 gaps are not halved
    assert min(offsets) >= -1.0


def test_adaptive_probes_go_lower_when_everything_blows_up():
    knobs = ConfirmSettings(up=1, down=1, extra=2)
    seen = []

    def probe(lr, steps):
        seen.append(lr)
        return [1.0], (1.0 + abs(math.log10(lr) + 3.0) if lr < 2e-3 else math.inf)

    confirmation = run_plan(plan_probes(300, 100, knobs), 0.01, probe, settings=knobs)
    assert seen[3:] == pytest.approx([1e-3, 10**-3.5])  # below the lowest, then below the best again
    assert confirmation.lr == pytest.approx(1e-3)


def test_adaptive_probes_go_up_while_no_probe_has_trained():
    knobs = ConfirmSettings(up=1, down=1, extra=2)
    seen = []

    def probe(lr, steps):  # nothing trains below 0.1: every score is the untouched state's, 2.3
        seen.append(lr)
        return [2.3], (2.3 if lr < 0.1 else 2.3 - math.log10(lr / 0.05))

    plan = plan_probes(300, 100, knobs)
    confirmation = run_plan(plan, 0.01, probe, settings=knobs, start_score=2.3)
    assert seen[3:] == pytest.approx([10**-1.0, 10**-0.5])  # above the highest, twice
    assert confirmation.lr == pytest.approx(10**-0.5)
    # without the starting score, ties go to the lower LR and the search walks down
    seen.clear()
    run_plan(plan, 0.01, probe, settings=knobs)
    assert seen[3:] == pytest.approx([10**-3.0, 10**-3.5])


def test_while_no_probe_has_trained_the_adaptive_probes_climb_towards_the_ceiling():
    knobs = ConfirmSettings(up=1, down=1, extra=2, centre_reach=10.0)  # the centre stays put
    seen = []

    def probe(lr, steps):  # nothing trains below 0.1; the range test's loss blew up at 100
        seen.append(lr)
        return [2.3], (2.3 if lr < 0.1 else 2.3 - math.log10(lr / 0.05) if lr < 30 else math.inf)

    plan = plan_probes(300, 100, knobs)
    found = run_plan(plan, 1e-6, probe, settings=knobs, start_score=2.3, ceiling=100.0)
    # from 10**-5.5 halfway to 10**2 (10**-1.75: still untouched), then halfway again (10**0.125)
    assert seen[3:] == pytest.approx([10**-1.75, 10**0.125])
    assert found.best.lr == pytest.approx(10**0.125)
    # the ceiling is only a target while nothing trained: a search that trains ignores it
    seen.clear()
    run_plan(plan, 0.3, probe, settings=knobs, start_score=2.3, ceiling=100.0)
    assert max(seen) < 30
    # a ceiling within one spacing of the highest probe: the usual step up
    seen.clear()
    run_plan(plan, 1e-6, probe, settings=knobs, start_score=2.3, ceiling=10**-5.2)
    assert seen[3:] == pytest.approx([10**-5.0, 10**-4.5])


def test_the_centre_lies_at_most_centre_reach_decades_below_the_ceiling():
    knobs = ConfirmSettings(up=1, down=1, extra=0, centre_reach=3.0)
    seen = []

    def probe(lr, steps):
        seen.append(lr)
        return [1.0], 1.0

    plan = plan_probes(300, 100, knobs)
    found = run_plan(plan, 1e-6, probe, settings=knobs, start_score=2.0, ceiling=100.0)
    assert found.center == pytest.approx(0.1)
    assert seen == pytest.approx([10**-1.5, 0.1, 10**-0.5])
    # a centre within reach, an unknown or a non-finite ceiling: left where the range test put it
    for center, ceiling in ((0.5, 100.0), (1e-6, None), (1e-6, math.inf), (1e-6, math.nan)):
        seen.clear()
        assert run_plan(plan, center, probe, settings=knobs, ceiling=ceiling).center == center
        assert seen[1] == pytest.approx(center)
    with pytest.raises(ValueError, match="centre_reach"):
        ConfirmSettings(centre_reach=0)


def test_a_probe_that_trained_a_little_counts_as_progress():
    knobs = ConfirmSettings(up=1, down=1, extra=1, progress=0.01)
    scores = {-0.5: 2.30, 0.0: 2.25, 0.5: 2.30}  # 2.2% below the start: progress, search inside
    assert next_offset(scores, knobs, start_score=2.30) == -0.25  # ties go to the lower side
    assert next_offset(scores, dataclasses.replace(knobs, progress=0.05), start_score=2.30) == 1.0


def test_adaptive_probes_and_halving_do_not_mix():
    with pytest.raises(ValueError, match="set extra=0 for halving"):
        ConfirmSettings(extra=2, rounds=2)


# -- confirm mode with a step function --------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["constant", "onecycle", "cosine"])
def test_confirm_on_the_quadratic_stays_in_budget_restores_and_picks_a_stable_lr(schedule):
    problem, kwargs = quadratic()
    step = CountingStep(problem)
    before = state(problem)
    result = find_lr(step, schedule=schedule, train_steps=150, confirm=True, **kwargs)
    assert state(problem) == before
    confirmation = result.confirmation
    assert step.calls <= 2 * 150
    assert step.calls == result.num_steps + sum(len(p.losses) for p in confirmation.probes)
    assert result.suggestion == confirmation.lr and 0 < result.suggestion < 2 / A
    assert result.range_suggestion == pytest.approx(confirmation.center)
    assert result.suggestion != result.range_suggestion or confirmation.best.lr == result.range_suggestion
    # the default plan: 300 steps, the range test shortened to 90 (0.3 of them), 3 + 2 probes of 42
    assert confirmation.plan == plan_probes(300, 100, train_steps=150)
    assert confirmation.plan.range_steps == 90 and confirmation.plan.rounds == (ProbeRound(5, 42),)
    assert len(confirmation.probes) == 5
    for probe in confirmation.probes:  # each under the schedule, from the same state and batches
        assert probe.steps == 42 and np.isfinite(probe.score)
        assert probe.losses[0] == confirmation.probes[0].losses[0]


def test_without_a_suggestion_the_probes_centre_below_where_the_range_test_stopped():
    problem, kwargs = quadratic()
    step = CountingStep(problem)
    first: list[float] = []

    def range_test_never_below_its_start(lr: float) -> float:
        loss = step(lr)
        if not first:
            first.append(loss)
        # the range test's 90 steps never fall below the first loss (as after a lucky first
        # batch); the probes that follow see the loss as it is
        return max(loss, first[0]) if step.calls <= 90 else loss

    before = state(problem)
    with pytest.warns(RuntimeWarning, match="centred its probes on .* 1.6 decades below"):
        result = find_lr(range_test_never_below_its_start, train_steps=150, confirm=True, **kwargs)
    assert state(problem) == before
    assert result.range_suggestion is None and result.num_steps > 30
    assert result.stop_reason == "diverged" and result.lrs[-1] > 2 / A  # blew up past 2/A
    confirmation = result.confirmation
    assert confirmation.center == pytest.approx(result.lrs[-1] * 10**-1.6)
    assert len(confirmation.probes) == 5 and result.suggestion == confirmation.lr
    assert 1e-3 < result.suggestion < 2 / A and step.calls <= 2 * 150
    assert not any(d.code == "probes_alike" for d in result.diagnostics)  # the probes trained
    # a range test that recorded no LR has no centre: nothing trains, and the result says why
    assert blind_centre(None, ConfirmSettings()) is None
    assert blind_centre(math.nan, ConfirmSettings()) is None


def test_confirm_with_an_integer_budget_and_a_short_run_shortens_the_range_test():
    problem, kwargs = quadratic()
    step = CountingStep(problem)
    result = find_lr(step, train_steps=40, confirm=80, **kwargs)
    # the default range test of 100 steps gives way to max(min_range_steps, floor(0.3 * 80)) = 30
    assert result.settings["num_iter"] == 30 == result.confirmation.plan.range_steps
    assert step.calls <= 80


def test_confirm_with_a_user_num_iter_that_does_not_fit_is_an_error_before_training():
    problem, kwargs = quadratic()
    step = CountingStep(problem)
    with pytest.raises(ValueError, match="cannot hold num_iter"):
        find_lr(step, train_steps=40, confirm=True, num_iter=100, **kwargs)
    assert step.calls == 0


@pytest.mark.parametrize("fail_with", [RuntimeError, KeyboardInterrupt])
def test_a_failure_in_a_probe_restores_the_state_and_propagates(fail_with):
    problem, kwargs = quadratic()
    step = CountingStep(problem, fail_at=100 + 40 + 7, fail_with=fail_with)
    before = state(problem)
    with pytest.raises(fail_with, match="failed on purpose"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        find_lr(
            step, train_steps=150, confirm=True, num_iter=100, end_lr=1.0, diverge_threshold=None, **kwargs
        )
    assert state(problem) == before


def test_a_probe_that_blows_up_stops_at_once_and_scores_inf():
    problem, kwargs = quadratic()
    step = CountingStep(problem)
    knobs = ConfirmSettings(up=2, down=0, spacing=4.0)  # up to 1e8 times the suggestion
    result = find_lr(step, train_steps=150, confirm=True, confirm_settings=knobs, **kwargs)
    blown = [p for p in result.confirmation.probes if not np.isfinite(p.score)]
    assert blown and all(len(p.losses) < p.steps for p in blown)
    assert result.suggestion == result.confirmation.lr < 2 / A


def test_the_progress_bar_covers_the_probes(capsys):
    problem, kwargs = quadratic()
    kwargs["progress"] = True
    find_lr(problem.step, train_steps=150, confirm=True, **kwargs)
    assert "Confirm probes" in capsys.readouterr().err


# -- the result, JSON and plot ------------------------------------------------------------------------


def test_json_round_trip_keeps_plan_and_confirmation_bit_for_bit(tmp_path):
    problem, kwargs = quadratic()
    knobs = ConfirmSettings(up=2, down=0, spacing=4.0)  # some probes blow up: inf scores, NaN losses
    result = find_lr(
        problem.step, schedule="onecycle", train_steps=150, confirm=True, confirm_settings=knobs, **kwargs
    )
    path = tmp_path / "result.json"
    result.to_json(path)
    data = json.loads(path.read_text())
    assert data["version"] == 2 and data["plan"] == {"schedule": "onecycle", "train_steps": 150}
    assert data["suggestion"] == result.suggestion and data["range_suggestion"] == result.range_suggestion
    back = LRFinderResult.from_json(path)
    assert back.plan == result.plan
    a, b = back.confirmation, result.confirmation
    fields = ("lr", "center", "plan", "schedule", "settings", "reason")
    assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
    for p, q in zip(a.probes, b.probes, strict=True):
        assert (p.lr, p.steps, p.round) == (q.lr, q.steps, q.round)
        assert np.array_equal(p.losses, q.losses, equal_nan=True)
        assert p.score == q.score or (math.isnan(p.score) and math.isnan(q.score))
    assert back.suggestion == result.suggestion and back.range_suggestion == result.range_suggestion


def test_version_1_files_still_load():
    data = synthetic().to_dict()
    for key in ("plan", "confirmation", "range_suggestion"):
        del data[key]
    data["version"] = 1
    back = LRFinderResult.from_dict(data)
    assert back.plan is None and back.confirmation is None
    assert back.suggestion == synthetic().suggestion


def test_confirmation_from_dict_reads_what_to_dict_wrote():
    c = Confirmation(
        lr=0.1,
        center=0.05,
        probes=(Probe(0.1, 3, 0, (1.0, math.nan, 0.5), 0.25),),
        plan=ProbePlan(10, 4, (0.0,), (ProbeRound(1, 3),)),
    )
    text = json.dumps(encode(c.to_dict()), allow_nan=False)
    back = Confirmation.from_dict(json.loads(text))
    assert back.probes[0].losses[0] == 1.0 and math.isnan(back.probes[0].losses[1])
    assert back == Confirmation(**{**c.__dict__, "probes": back.probes}) and back.plan == c.plan


def test_the_plot_shows_the_plan_and_the_probes():
    from matplotlib.figure import Figure

    problem, kwargs = quadratic()
    result = find_lr(problem.step, schedule="cosine", train_steps=150, confirm=True, **kwargs)
    ax = Figure().add_subplot()
    result.plot(ax=ax)
    assert "plan: cosine, 150 steps" in ax.get_title()
    assert f"suggested lr: {result.suggestion:.3g} (confirmed by training probes)" in ax.get_title()
    assert f"{len(result.confirmation.probes)} probes" in ax.get_title()
    twin = [other for other in ax.figure.axes if other is not ax]
    assert len(twin) == 1
    labels = [line.get_label() for line in twin[0].get_lines()]
    assert labels[0] == "probes, round 1 (42 steps)" and labels[-1].startswith("best probe: ")
    xs = np.concatenate([line.get_xdata() for line in twin[0].get_lines()[:1]])
    assert sorted(xs) == pytest.approx(sorted(p.lr for p in result.confirmation.probes))
    # the LR to use is drawn on the main axes, apart from the best probe's (scaled for the run)
    marked = [line for line in ax.get_lines() if line.get_label().startswith("confirmed: ")]
    assert len(marked) == 1 and marked[0].get_xdata()[0] == pytest.approx(result.suggestion)


def test_the_plot_title_names_the_plan_rule_without_confirmation():
    from matplotlib.figure import Figure

    problem, kwargs = quadratic()
    del kwargs["confirm_data"]
    result = find_lr(problem.step, schedule="onecycle", train_steps=300, **kwargs)
    ax = Figure().add_subplot()
    result.plot(ax=ax)
    assert f"suggested lr: {result.suggestion:.3g} ({result.best.rule} for the plan)" in ax.get_title()
    labels = [line.get_label() for line in ax.get_lines()]
    assert f"suggested for the plan: {result.suggestion:.2e}" in labels


def test_halving_drops_blown_up_candidates_and_stops_when_one_is_left():
    plan = plan_probes(800, 100, HALVING, train_steps=400)  # 5 probes, then 3

    def runs_below(limit: float):
        calls = []

        def probe(lr: float, steps: int):
            calls.append((round(math.log10(lr), 2), steps))
            return [], (1.0 + lr if lr < limit else math.inf)  # higher LRs blow up

        return probe, calls

    probe, calls = runs_below(0.005)  # 0.001 and 0.00316 train
    assert run_plan(plan, 0.01, probe, settings=HALVING).lr == pytest.approx(10**-3.0)
    assert calls[5:] == [(-3.0, 116), (-2.5, 116)]
    probe, calls = runs_below(0.002)  # only 0.001 trains: nothing left to compare
    assert run_plan(plan, 0.01, probe, settings=HALVING).lr == pytest.approx(10**-3.0)
    assert [steps for _, steps in calls] == [70] * 5


def test_a_probes_lrs_are_computed_step_by_step_not_held_in_memory():
    # --train-steps 10**20 once filled the memory with a probe's schedule before training began
    from lrfinder.plan import MAX_TRAIN_STEPS, ScheduleLRs, lr_at, lr_curve

    huge = ScheduleLRs("onecycle", 0.1, 2 * MAX_TRAIN_STEPS)
    assert len(huge) == 2 * MAX_TRAIN_STEPS and huge[-1] == lr_at("onecycle", 0.1, len(huge) - 1, len(huge))
    with pytest.raises(ValueError, match="train_steps must be at most"):
        find_lr(lambda lr: 1.0, train_steps=MAX_TRAIN_STEPS + 1, progress=False)
    small = ScheduleLRs("cosine", 0.3, 17)
    assert list(small) == list(lr_curve("cosine", 0.3, 17)) and small[-1] == lr_curve("cosine", 0.3, 17)[-1]
    with pytest.raises(IndexError):
        small[17]


@pytest.mark.parametrize("schedule", ["constant", "onecycle", "cosine"])
@pytest.mark.parametrize("total", [1, 2, 3, 4, 17, 100, 1001])
def test_a_probes_lrs_are_the_plans_lr_curve_step_for_step(schedule, total):
    from lrfinder.plan import ScheduleLRs, lr_curve

    lazy, curve = ScheduleLRs(schedule, 0.3, total), lr_curve(schedule, 0.3, total)
    assert len(lazy) == curve.shape[0] == total
    assert np.array_equal(np.asarray(list(lazy)), curve)  # bit for bit, iterated
    assert [lazy[i] for i in range(total)] == curve.tolist()  # and indexed
    assert lazy[-1] == curve[-1] and lazy[::2] == curve[::2].tolist()


def test_a_schedule_needs_a_known_name_and_a_length_of_at_least_zero():
    from lrfinder.plan import ScheduleLRs, lr_curve

    assert lr_curve("cosine", 0.3, 0).shape == (0,) and len(ScheduleLRs("cosine", 0.3, 0)) == 0
    with pytest.raises(ValueError, match="number of steps >= 0, got -1"):
        ScheduleLRs("cosine", 0.3, -1)
    with pytest.raises(ValueError, match="schedule must be one of 'constant', 'onecycle', 'cosine'"):
        ScheduleLRs("linear", 0.3, 10)


# -- the horizon correction (the benchmark's evidence: a short probe favours a higher LR) ----------


def test_run_plan_scales_the_kept_lr_for_the_run_length():
    plan = plan_probes(300, 100, ConfirmSettings())
    scores = {}

    def probe(lr: float, steps: int) -> tuple[list[float], float]:
        scores[lr] = abs(math.log10(lr) - math.log10(0.03))  # best near 0.03
        return [1.0] * steps, scores[lr]

    kept = run_plan(plan, 0.01, probe, train_steps=400)
    best = min(scores, key=scores.get)
    steps = plan.rounds[-1].steps
    vertex = vertex_lr(kept.probes)
    assert kept.best is not None and kept.best.lr == best and vertex != best
    # no starting score: the gap is unknown and the overfitting exponent applies
    assert kept.gap is None
    assert kept.lr == pytest.approx(vertex * (steps / 400) ** ConfirmSettings().horizon)
    assert "interpolated and scaled for the full run" in kept.summary()
    assert kept.train_steps == 400
    plain = run_plan(plan, 0.01, probe)  # no run length: the vertex, not scaled
    assert plain.lr == vertex and "scaled" not in plain.summary() and plain.train_steps is None
    exact = ConfirmSettings(horizon=0.0, interpolate=False)
    off = run_plan(plan, 0.01, probe, settings=exact, train_steps=400)
    assert off.lr == best and off.summary().endswith("steps each)")


def probe_with_gap(gap: float, start: float = 2.0):
    """Probes scoring best at 0.01 whose last fifth of training losses lies ``gap * start`` below
    the score (the first four fifths are far above it, so only the tail counts)."""

    def probe(lr: float, steps: int) -> tuple[list[float], float]:
        score = 1.0 + (math.log10(lr) + 2.0) ** 2
        tail = steps // 5
        return [9.0] * (steps - tail) + [score - gap * start] * tail, score

    return probe


@pytest.mark.parametrize(
    ("gap", "exponent"),
    [(0.0, 0.3), (-0.2, 0.3), (0.049, 0.3), (0.051, 0.75), (0.3, 0.75)],
)
def test_the_length_correction_is_stronger_when_the_best_probe_overfits(gap, exponent):
    knobs = ConfirmSettings(interpolate=False)
    plan = plan_probes(300, 100, knobs)
    kept = run_plan(plan, 0.01, probe_with_gap(gap), settings=knobs, train_steps=400, start_score=2.0)
    steps = plan.rounds[0].steps
    assert kept.best is not None and kept.best.lr == pytest.approx(0.01)
    assert kept.gap == pytest.approx(gap) and kept.start_score == 2.0
    assert horizon_for(kept.gap, knobs) == exponent
    assert kept.lr == pytest.approx(0.01 * (steps / 400) ** exponent)
    # the rule off: one exponent whatever the gap
    same = dataclasses.replace(knobs, low_gap_horizon=0.75)
    assert run_plan(
        plan, 0.01, probe_with_gap(gap), settings=same, train_steps=400, start_score=2.0
    ).lr == pytest.approx(0.01 * (steps / 400) ** 0.75)


def test_generalisation_gap_reads_the_last_fifth_of_the_training_losses():
    probe = Probe(lr=0.1, steps=10, round=0, losses=(5.0,) * 8 + (1.0, 3.0), score=2.5)
    assert generalisation_gap(probe, 2.0) == pytest.approx((2.5 - 2.0) / 2.0)
    assert generalisation_gap(probe, -4.0) == pytest.approx((2.5 - 2.0) / 4.0)  # |start|
    short = Probe(lr=0.1, steps=3, round=0, losses=(5.0, 4.0, 1.5), score=2.5)  # a fifth of 3: 1
    assert generalisation_gap(short, 1.0) == pytest.approx(1.0)
    for start in (None, 0.0, math.inf, math.nan):
        assert generalisation_gap(probe, start) is None
    assert generalisation_gap(dataclasses.replace(probe, losses=()), 2.0) is None
    assert generalisation_gap(dataclasses.replace(probe, score=math.inf), 2.0) is None


def test_vertex_lr_stays_between_the_best_probes_neighbours():
    def at(log10_lr: float, score: float) -> Probe:
        return Probe(lr=10.0**log10_lr, steps=5, round=0, losses=(), score=score)

    # a parabola's own vertex, wherever the probes lie around it
    for best in (-2.3, -2.1, -1.9):
        probes = [at(x, (x - best) ** 2) for x in (-3.0, -2.0, -1.0, -2.5)]
        assert math.log10(vertex_lr(probes)) == pytest.approx(best)
    # a vertex beyond halfway to a neighbour is held at halfway
    lopsided = [at(-3.0, 10.0), at(-2.0, 1.0), at(-1.0, 1.0 + 1e-9)]
    assert math.log10(vertex_lr(lopsided)) == pytest.approx(-1.5)
    # probes that blew up are left out; the best on an edge keeps its LR; none left: None
    assert vertex_lr([at(-3.0, 2.0), at(-2.0, 1.0), at(-1.0, math.inf)]) == pytest.approx(0.01)
    assert vertex_lr([at(-3.0, 2.0), at(-2.0, 1.0), at(-1.0, math.nan)]) == pytest.approx(0.01)
    assert vertex_lr([at(-2.0, math.inf)]) is None and vertex_lr([]) is None
    # equal scores: the lower LR, as ties go everywhere else
    assert vertex_lr([at(-3.0, 1.0), at(-2.0, 1.0), at(-1.0, 1.0)]) == pytest.approx(1e-3)


@pytest.mark.parametrize("name", ["horizon", "low_gap_horizon", "overfit_gap"])
@pytest.mark.parametrize("bad", [-0.1, math.inf, math.nan, True, "0.4"])
def test_horizons_and_the_gap_must_be_finite_numbers_at_least_zero(name, bad):
    with pytest.raises(ValueError, match=rf"ConfirmSettings\.{name} must be a finite number >= 0"):
        ConfirmSettings(**{name: bad})


@pytest.mark.parametrize("bad", [1, 0, "yes", None])
def test_interpolate_must_be_a_boolean(bad):
    with pytest.raises(ValueError, match=r"ConfirmSettings\.interpolate must be True or False"):
        ConfirmSettings(interpolate=bad)


# -- the probes_alike diagnostic -------------------------------------------------------------------


def confirmed_result(scores: list[float], start_score: float | None) -> LRFinderResult:
    probes = tuple(
        Probe(lr=10.0 ** (-3 + i / 2), steps=10, round=0, losses=(1.0,) * 10, score=s)
        for i, s in enumerate(scores)
    )
    result = synthetic()
    result.confirmation = Confirmation(
        lr=probes[0].lr,
        center=probes[1].lr,
        probes=probes,
        plan=ProbePlan(100, 50, (-0.5, 0.0, 0.5), (ProbeRound(len(probes), 10),)),
        start_score=start_score,
    )
    return result


def test_probes_that_cannot_tell_the_lrs_apart_are_a_diagnostic():
    from lrfinder.diagnose import PROBES_ALIKE

    alike = confirmed_result([0.162, 0.163, 0.165, math.inf], start_score=1.68)
    codes = [d.code for d in alike.diagnostics]
    assert codes[-1] == "probes_alike" and not alike.trusted
    message = alike.diagnostics[-1].message
    assert "3 probes scored alike (0.162 to 0.165" in message and "confirm=N" in message
    # the range test's own diagnostics come first, and a saved result gives the same list back
    assert codes[:-1] == [d.code for d in synthetic().diagnostics]
    again = LRFinderResult.from_json(alike.to_json())
    assert [d.message for d in again.diagnostics] == [d.message for d in alike.diagnostics]
    # a spread above PROBES_ALIKE of the starting score, too few probes, no starting score or no
    # LR kept: nothing to say
    spread = 1.68 * PROBES_ALIKE * 1.01
    assert "probes_alike" not in [
        d.code for d in confirmed_result([0.16, 0.16 + spread, 0.16], 1.68).diagnostics
    ]
    assert "probes_alike" not in [d.code for d in confirmed_result([0.162, 0.163], 1.68).diagnostics]
    assert "probes_alike" not in [d.code for d in confirmed_result([0.162, 0.163, 0.164], None).diagnostics]
    none_kept = confirmed_result([0.162, 0.163, 0.165], 1.68)
    none_kept.confirmation = dataclasses.replace(none_kept.confirmation, lr=None)
    assert "probes_alike" not in [d.code for d in none_kept.diagnostics]

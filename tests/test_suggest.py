"""Suggestion rules on generated curves: right answers where there is one, clear refusals where not."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrfinder import suggest
from lrfinder.suggest import RULES, longest_falling_run, steepest

RULE_NAMES = sorted(RULES)


def descend_then_explode(n: int, drop_at: float, blow_at: float, noise: float, seed: int):
    """A range-test curve: flat, a sigmoid descent centred at ``drop_at``, a blow-up at ``blow_at``.

    Positions are fractions of the ladder; the descent ends well before the blow-up starts.
    """
    rng = np.random.default_rng(seed)
    lrs = np.geomspace(1e-6, 10.0, n)
    t = np.linspace(0.0, 1.0, n)
    losses = 1.0 + 2.0 / (1.0 + np.exp((t - drop_at) * 40.0))
    losses += np.where(t > blow_at, np.expm1((t - blow_at) * 60.0), 0.0)
    losses *= 1.0 + noise * rng.standard_normal(n)
    return lrs, losses, t


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(60, 300),
    drop_at=st.floats(0.2, 0.6),
    gap=st.floats(0.15, 0.3),
    noise=st.floats(0.0, 0.01),
    seed=st.integers(0, 2**16),
    rule=st.sampled_from(RULE_NAMES),
)
def test_descending_then_exploding_curves_get_an_lr_in_the_descent(n, drop_at, gap, noise, seed, rule):
    lrs, losses, t = descend_then_explode(n, drop_at, drop_at + gap, noise, seed)
    result = RULES[rule](lrs, losses)
    assert result.ok, result.reason
    # inside the descending part: after the loss starts falling, before it bottoms out
    start = lrs[np.argmax(t > drop_at - 0.12)]
    bottom = lrs[int(np.argmin(losses))]
    assert start <= result.lr <= bottom
    assert 0 <= result.index < n and result.reason is None


curves_without_a_suggestion = st.one_of(
    st.builds(lambda n, c: np.full(n, c), st.integers(0, 200), st.floats(-1e6, 1e6)),
    st.builds(lambda n: np.full(n, np.nan), st.integers(0, 200)),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=4).map(np.array),
    st.builds(lambda n, s: np.linspace(1, 2, n) * s, st.integers(5, 200), st.floats(1e-3, 1e3)),
    st.builds(lambda n: np.r_[np.inf, np.ones(n)], st.integers(0, 50)),
)


@settings(max_examples=200, deadline=None)
@given(losses=curves_without_a_suggestion, rule=st.sampled_from(RULE_NAMES))
def test_flat_rising_nan_and_tiny_curves_give_a_clear_no_suggestion(losses, rule):
    lrs = np.geomspace(1e-5, 1.0, max(len(losses), 2))[: len(losses)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy RuntimeWarning either
        result = RULES[rule](lrs, losses)
    assert result.lr is None and result.index is None
    assert isinstance(result.reason, str) and result.reason


@settings(max_examples=200, deadline=None)
@given(
    losses=st.lists(st.one_of(st.floats(-1e9, 1e9), st.sampled_from([math.nan, math.inf])), max_size=80),
    rule=st.sampled_from(RULE_NAMES),
)
def test_no_curve_makes_a_rule_raise(losses, rule):
    lrs = np.geomspace(1e-5, 1.0, max(len(losses), 2))[: len(losses)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = RULES[rule](lrs, np.array(losses, dtype=np.float64))
    assert (result.lr is None) == (result.reason is not None)
    if result.lr is not None:
        assert math.isfinite(result.lr) and result.lr > 0


def test_steepest_with_zero_skips_reads_the_whole_curve():
    lrs = np.geomspace(1e-4, 1.0, 9)
    losses = np.array([5.0, 4.9, 4.8, 4.0, 3.0, 2.9, 2.8, 2.7, 2.6])
    result = steepest(lrs, losses, skip_start=0, skip_end=0)
    assert result.index == 3 or result.index == 4
    # skip_end=0 must not empty the window (x[a:-0] is empty)
    assert steepest(lrs, losses, skip_start=2, skip_end=0).ok


def test_steepest_at_the_first_points_is_a_none_with_its_reason_and_just_after_them_a_suggestion():
    lrs = np.geomspace(1e-4, 1.0, 8)
    losses = np.array([5.0, 1.0, 0.9, 0.85, 0.8, 0.79, 0.78, 0.77])
    result = steepest(lrs, losses, skip_start=0, skip_end=0)
    assert result.lr is None and result.index is None and "start of the ladder" in result.reason
    losses = np.array([5.0, 4.9, 4.8, 1.0, 0.9, 0.85, 0.8, 0.79])  # steepest at index 2 (0-based)
    result = steepest(lrs, losses, skip_start=0, skip_end=0)
    assert result.index == 2 and result.lr == lrs[2]


def test_steepest_reads_slopes_against_log_lr_on_a_linear_ladder():
    lrs = np.linspace(0.01, 1.0, 100)
    losses = 2.0 - np.tanh((np.log(lrs) - np.log(0.1)) * 2)  # steepest at lr = 0.1 in log space
    result = steepest(lrs, losses, skip_start=0, skip_end=0)
    assert result.lr == pytest.approx(0.1, rel=0.05)


def test_minimum_divides_the_lr_of_the_lowest_loss():
    lrs = np.geomspace(1e-4, 1.0, 5)
    losses = np.array([3.0, 2.0, 1.0, 0.5, 4.0])
    result = suggest.minimum(lrs, losses, factor=10)
    assert result.lr == pytest.approx(lrs[3] / 10) and lrs[result.index] <= result.lr


def test_points_after_the_first_nan_are_ignored():
    lrs = np.geomspace(1e-4, 1.0, 10)
    losses = np.array([5.0, 4.0, 3.0, 2.0, 1.5, 1.2, np.nan, 0.1, 0.01, 0.001])
    assert suggest.minimum(lrs, losses).index < 6


def test_longest_falling_run():
    assert longest_falling_run(np.array([1.0])) == (0, 1)
    assert longest_falling_run(np.array([3.0, 1.0, 2.0, 0.5])) == (3, 3)


def test_unknown_rule_lists_the_known_ones():
    known = "centered_minimum, minimum, raw_minimum, steepest, valley"
    with pytest.raises(ValueError, match=f"choose one of {known}"):
        suggest.suggest(np.ones(5), np.ones(5), rule="magic")


def test_centered_minimum_divides_the_lr_of_the_lowest_centered_average():
    lrs = np.geomspace(1e-4, 1.0, 11)
    # one low outlier at index 2 must not win: the 5-point average is lowest at index 7
    losses = np.array([3.0, 3.0, 0.5, 3.0, 2.5, 1.5, 1.0, 0.9, 1.0, 1.4, 4.0])
    result = suggest.centered_minimum(lrs, losses, half_width=2, tolerance=0.0, factor=10.0)
    average = suggest.centered_average(losses, 2)
    assert int(np.argmin(average)) == 7
    assert result.lr == pytest.approx(lrs[7] / 10) and lrs[result.index] <= result.lr < lrs[result.index + 1]
    # with no averaging it is the plain minimum of the curve
    assert suggest.centered_minimum(lrs, losses, half_width=0, tolerance=0.0, factor=1.0).lr == lrs[2]


def test_centered_minimum_takes_the_left_edge_of_a_flat_bottom():
    lrs = np.geomspace(1e-4, 1.0, 10)
    # drop of 4.0; points 4..8 lie within 2% of it (0.08) above the lowest, which is point 8
    losses = np.array([5.0, 4.0, 3.0, 2.0, 1.05, 1.04, 1.06, 1.03, 1.0, 6.0])
    result = suggest.centered_minimum(lrs, losses, half_width=0, tolerance=0.02, factor=1.0)
    assert result.lr == lrs[4]
    assert suggest.centered_minimum(lrs, losses, half_width=0, tolerance=0.0, factor=1.0).lr == lrs[8]


def test_centered_minimum_does_not_lag_behind_a_symmetric_dip():
    lrs = np.geomspace(1e-6, 1.0, 101)
    losses = 2.0 + (np.log10(lrs) + 3.0) ** 2  # lowest at lr = 1e-3
    result = suggest.centered_minimum(lrs, losses, half_width=4, tolerance=0.0, factor=1.0)
    assert result.lr == pytest.approx(1e-3)


def test_centered_minimum_rejects_bad_options():
    lrs, losses = np.geomspace(1e-4, 1.0, 8), np.linspace(3.0, 1.0, 8)
    with pytest.raises(ValueError, match="half_width"):
        suggest.centered_minimum(lrs, losses, half_width=-1)
    with pytest.raises(ValueError, match="factor"):
        suggest.centered_minimum(lrs, losses, factor=0.5)
    with pytest.raises(ValueError, match="tolerance"):
        suggest.centered_minimum(lrs, losses, tolerance=1.5)


def test_raw_minimum_does_not_depend_on_the_number_of_points():
    # the same noisy curve read at 100 and at 400 points: the average's width is in decades, not points
    def curve(n: int, seed: int):
        rng = np.random.default_rng(seed)
        lrs = np.geomspace(1e-7, 10.0, n)
        x = np.log10(lrs)
        clean = 1.0 + 2.0 / (1.0 + np.exp((x + 3.0) * 3.0)) + np.where(x > -1.0, (x + 1.0) ** 2 * 20, 0.0)
        return lrs, clean * (1.0 + 0.05 * rng.standard_normal(n))

    answers = [suggest.raw_minimum(*curve(n, seed)).lr for n in (100, 400) for seed in range(4)]
    assert all(a is not None for a in answers)
    assert np.ptp(np.log10(answers)) < 0.3
    # the clean curve comes within 2% of its drop of its bottom at log10 lr = -3 + ln(49) / 3 = -1.7;
    # the rule divides that by 3
    assert 0.003 < float(np.exp(np.mean(np.log(answers)))) < 0.015


def test_raw_minimum_does_not_lag_and_ignores_an_explosion_at_the_end():
    lrs = np.geomspace(1e-6, 1.0, 121)
    losses = 2.0 + (np.log10(lrs) + 3.0) ** 2  # lowest at lr = 1e-3
    losses[-5:] = 1e12
    result = suggest.raw_minimum(lrs, losses, width=0.2, tolerance=0.0, factor=1.0)
    assert result.lr == pytest.approx(1e-3, rel=0.2)
    # a causal moving average of the same curve puts the bottom later; the raw rule is not moved
    assert suggest.raw_minimum(lrs, losses, factor=3.0).lr < 1e-3


def test_suggest_all_gives_the_raw_losses_to_raw_rules_only():
    lrs = np.geomspace(1e-4, 1.0, 60)
    smoothed = np.linspace(3.0, 1.0, 60)  # lowest at the end
    raw = 2.0 + (np.log10(lrs) + 3.0) ** 2  # lowest at 1e-3
    out = suggest.suggest_all(lrs, smoothed, raw)
    assert out["raw_minimum"].lr == suggest.raw_minimum(lrs, raw).lr
    assert out["minimum"].lr == suggest.minimum(lrs, smoothed).lr
    # without raw losses every rule reads the curve it is given
    assert suggest.suggest_all(lrs, smoothed)["raw_minimum"].lr == suggest.raw_minimum(lrs, smoothed).lr


def test_raw_minimum_rejects_bad_options():
    lrs, losses = np.geomspace(1e-4, 1.0, 8), np.linspace(3.0, 1.0, 8)
    for option in ({"width": 0.0}, {"width": math.nan}, {"factor": 0.5}, {"tolerance": 1.0}):
        with pytest.raises(ValueError, match=next(iter(option))):
            suggest.raw_minimum(lrs, losses, **option)


def test_ladder_steps_evenly_in_log_lr_around_the_lr_itself():
    rungs = suggest.ladder(3e-3)
    assert rungs.shape == (6,) and rungs[3] == 3e-3  # the suggestion itself, exactly
    np.testing.assert_allclose(np.diff(np.log10(rungs)), 0.5)
    np.testing.assert_allclose(suggest.ladder(1.0, up=0, down=2, step=1.0), [0.01, 0.1, 1.0])
    assert suggest.ladder(0.5, up=0, down=0).tolist() == [0.5]


def test_ladder_rejects_bad_options():
    for lr, options, word in (
        (0.0, {}, "lr"),
        (math.inf, {}, "lr"),
        (1.0, {"step": 0.0}, "step"),
        (1.0, {"up": -1}, "up"),
        (1.0, {"down": 1.5}, "down"),
        (1.0, {"up": True}, "up"),
    ):
        with pytest.raises(ValueError, match=word):
            suggest.ladder(lr, **options)

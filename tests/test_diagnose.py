"""Each trust check fires on the curve it describes and stays quiet on a clean one."""

from __future__ import annotations

import numpy as np
import pytest

from lrfinder import LRFinderResult
from lrfinder.diagnose import lr_range, noise_ratio


def curve(n=100, drop_at=0.5, blow_at=0.8, noise=0.01, seed=0, stop="diverged", keep=None):
    rng = np.random.default_rng(seed)
    lrs = np.geomspace(1e-6, 10.0, n)
    t = np.linspace(0.0, 1.0, n)
    losses = 1.0 + 2.0 / (1.0 + np.exp((t - drop_at) * 30.0))
    losses += np.where(t > blow_at, np.expm1((t - blow_at) * 40.0), 0.0)
    losses = losses * (1.0 + noise * rng.standard_normal(n))
    smoothed = np.empty(n)
    average = 0.0
    for i, x in enumerate(losses):
        average = 0.8 * average + 0.2 * x
        smoothed[i] = average / (1 - 0.8 ** (i + 1))
    keep = n if keep is None else keep
    return LRFinderResult(
        lrs=lrs[:keep],
        losses=losses[:keep],
        smoothed=smoothed[:keep],
        stop_reason=stop,
        settings={"start_lr": 1e-6, "end_lr": 10.0, "num_iter": n, "mode": "exp"},
    )


def codes(result):
    return [d.code for d in result.diagnostics]


def test_a_clean_curve_is_trusted():
    result = curve()
    assert codes(result) == [] and result.trusted


def test_noisy_curve():
    result = curve(noise=0.6)
    assert "noisy" in codes(result) and not result.trusted


def test_no_divergence_when_the_loss_still_falls_at_the_end():
    result = curve(drop_at=0.93, blow_at=2.0, stop="finished")
    assert "no_divergence" in codes(result)
    assert "raise end_lr" in result.diagnostics[codes(result).index("no_divergence")].message


def test_diverged_early_when_the_loss_rises_from_the_start():
    result = curve(drop_at=-0.5, blow_at=0.05, keep=12)
    assert codes(result)[0] == "diverged_early"
    assert "lower it" in result.diagnostics[0].message


def test_no_clear_descent_on_a_shallow_curve():
    rng = np.random.default_rng(0)
    lrs = np.geomspace(1e-5, 1.0, 80)
    smoothed = 1.0 - 0.02 * np.linspace(0, 1, 80) + 0.0005 * rng.standard_normal(80)
    result = LRFinderResult(
        lrs=lrs, losses=smoothed, smoothed=smoothed, stop_reason="finished", settings={"num_iter": 80}
    )
    assert "no_clear_descent" in codes(result) or "no_suggestion" in codes(result)


def test_interrupted_and_no_suggestion():
    result = LRFinderResult(
        lrs=[1e-4, 1e-3],
        losses=[1.0, 0.9],
        smoothed=[1.0, 0.9],
        stop_reason="interrupted",
        settings={"num_iter": 100},
    )
    assert codes(result)[:1] == ["interrupted"] and "no_suggestion" in codes(result)
    assert "2 of 100 steps" in result.diagnostics[0].message


def test_lr_range_brackets_the_descent():
    result = curve()
    low, high = result.lr_range
    lrs = result.lrs
    assert lrs[30] < low < high < lrs[int(np.argmin(result.smoothed))] * 1.0001
    assert low <= result.suggestion <= high  # the default suggestion lies inside the range
    assert lr_range(lrs, np.ones(lrs.shape[0])) is None


def test_noise_ratio_grows_with_noise():
    quiet, loud = curve(noise=0.01), curve(noise=0.2)
    assert noise_ratio(quiet.losses, quiet.smoothed) < noise_ratio(loud.losses, loud.smoothed)


def test_find_lr_warns_with_the_diagnostic_message():
    import lrfinder

    with pytest.warns(RuntimeWarning, match="still falling at end_lr"):
        result = lrfinder.find_lr(
            lambda lr: 1.0 / (1.0 + lr), start_lr=1e-3, end_lr=10.0, num_iter=50, progress=False
        )
    assert codes(result) == ["no_divergence"]

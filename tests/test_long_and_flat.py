"""Flat curves, the start of the ladder, long curves: answers that mean something, in n log n."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from lrfinder import LRFinderResult, SweepSettings, find_lr, suggest
from lrfinder.plot import thin_indices
from lrfinder.schedules import MAX_NUM_ITER
from lrfinder.suggest import RULES, start_points
from tests.cases import require


def flat_result(seed: int, noise: float, end_lr: float = 1e-4) -> LRFinderResult:
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return find_lr(lambda lr: 2.3 * (1 + noise * rng.standard_normal()), end_lr=end_lr, progress=False)


@pytest.mark.parametrize("seed", range(30))
def test_a_flat_curve_gives_no_suggestion_and_says_to_raise_end_lr(seed):
    result = flat_result(seed, noise=[0.0, 0.01, 0.05, 0.1, 0.3][seed % 5])
    assert result.suggestion is None and all(s.lr is None for s in result.suggestions.values())
    codes = [d.code for d in result.diagnostics]
    assert codes == ["flat"], codes
    assert "raise end_lr" in result.diagnostics[0].message
    assert result.suggest("steepest", skip_start=0).lr is None


def test_a_real_descent_is_not_flat():
    lrs = np.geomspace(1e-7, 10, 100)
    rng = np.random.default_rng(0)
    # falls by 3 batch-noise sigmas only, then rises: noisy, but not flat
    trend = 2.3 - 0.3 * (np.log10(lrs) > -3) + 2.0 * (np.log10(lrs) > 0.5)
    raw = trend + 0.1 * rng.standard_normal(100)
    assert suggest.flat_reason(lrs, raw) is None


def test_a_torch_sgd_sweep_that_stays_below_useful_lrs_is_flat():
    torch = require("torch")
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    torch.set_num_threads(1)
    x = torch.randn(512, 20)
    y = (x[:, :5].sum(1) > 0).long()
    model = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = find_lr(
            model,
            DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True),
            optimizer,
            end_lr=1e-4,
            progress=False,
        )
    assert result.suggestion is None
    assert [d.code for d in result.diagnostics] == ["flat"]


@pytest.mark.parametrize("seed", range(40))
def test_no_rule_suggests_at_the_first_points_of_the_ladder(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 300))
    lrs = np.geomspace(1e-7, 10, n)
    bottom = rng.uniform(0, 0.6)  # where the loss bottoms out, as a fraction of the ladder
    t = np.linspace(0, 1, n)
    losses = 1 + (t - bottom) ** 2 * rng.uniform(1, 10) + rng.uniform(0, 0.3) * rng.standard_normal(n)
    losses[t > bottom + 0.3] += 50 * (t[t > bottom + 0.3] - bottom - 0.3)
    for name, rule in RULES.items():
        for options in ({}, {"skip_start": 0, "skip_end": 0} if name == "steepest" else {}):
            s = rule(lrs, losses, **options)
            if s.lr is not None:
                assert s.lr > lrs[start_points(n) - 1], (name, s)
            else:
                assert s.reason


def _longest_falling_run_reference(losses, min_drop=0.0):
    lengths = np.ones(len(losses), dtype=int)
    for i in range(1, len(losses)):
        higher = losses[:i] > losses[i] + min_drop
        if higher.any():
            lengths[i] = 1 + lengths[:i][higher].max()
    end = int(np.argmax(lengths)) if len(losses) else 0
    return end, int(lengths[end]) if len(losses) else 0


@pytest.mark.parametrize("seed", range(60))
def test_longest_falling_run_matches_the_quadratic_definition(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 200))
    losses = np.round(rng.normal(size=n).cumsum(), int(rng.integers(0, 3)))  # ties included
    min_drop = float(rng.choice([0.0, 0.05, 0.5]))
    assert suggest.longest_falling_run(losses, min_drop) == _longest_falling_run_reference(losses, min_drop)


def _gaussian_reference(lrs, values, width):
    x = np.log10(lrs)
    out = np.empty_like(values)
    for i in range(len(x)):
        z = (x[i] - x) / width
        near = np.abs(z) <= 4
        w = np.exp(-0.5 * z[near] ** 2)
        out[i] = w @ values[near] / w.sum()
    return out


@pytest.mark.parametrize("mode", ["exp", "linear"])
def test_the_fft_gaussian_average_matches_the_direct_sum(mode, monkeypatch):
    n = 3000
    lrs = SweepSettings(mode=mode, num_iter=n).ladder()
    values = 2 + np.sin(np.log(lrs)) + 0.1 * np.random.default_rng(0).standard_normal(n)
    expected = _gaussian_reference(lrs, values, 0.3)
    monkeypatch.setattr(suggest, "DIRECT_PAIRS", 0)
    got = suggest.log_gaussian_average(lrs, values, 0.3)
    np.testing.assert_allclose(got, expected, rtol=1e-9 if mode == "exp" else 2e-3)


def test_num_iter_is_bounded_with_a_clear_error():
    SweepSettings(num_iter=MAX_NUM_ITER)
    with pytest.raises(ValueError, match=f"num_iter must be at most {MAX_NUM_ITER}.*lower it"):
        SweepSettings(num_iter=MAX_NUM_ITER + 1)


def test_a_long_curve_is_analysed_and_its_plot_thinned():
    n = MAX_NUM_ITER
    lrs = np.geomspace(1e-7, 10, n)
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, n)
    losses = 1 + 4 * (t - 0.7) ** 2 + 0.05 * rng.standard_normal(n)
    result = LRFinderResult(lrs, losses, losses, "finished", settings={"num_iter": n})
    assert result.suggestion is not None and result.lr_range is not None
    result.diagnostics  # noqa: B018 - computed in n log n; quadratic took 25 s
    kept = thin_indices(losses, 2000)
    assert len(kept) <= 2001 and kept[-1] == n - 1
    assert losses[kept].min() == losses.min() and losses[kept].max() == losses.max()
    require("matplotlib")
    ax = result.plot()
    assert all(len(line.get_xdata()) <= 2001 for line in ax.get_lines())

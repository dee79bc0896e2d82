"""The result object: suggestions, JSON round trip, plots."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest

from lrfinder import LRFinderResult, suggest
from lrfinder.suggest import DEFAULT_RULE, RULES


def synthetic(stop_reason: str = "diverged", n: int = 120, seed: int = 0) -> LRFinderResult:
    rng = np.random.default_rng(seed)
    lrs = np.geomspace(1e-6, 10.0, n)
    t = np.linspace(0.0, 1.0, n)
    losses = (1.0 + 2.0 / (1.0 + np.exp((t - 0.5) * 30))) * (1 + 0.05 * rng.standard_normal(n))
    losses[-10:] *= np.geomspace(1.5, 40, 10)
    smoothed = np.convolve(losses, np.ones(5) / 5, mode="same")
    smoothed[:2] = losses[:2]
    return LRFinderResult(
        lrs=lrs,
        losses=losses,
        smoothed=smoothed,
        stop_reason=stop_reason,
        settings={"mode": "exp", "start_lr": 1e-6, "end_lr": 10.0},
        backend="synthetic",
        elapsed=1.25,
        info={"optimizer": "SGD", "strategy": None, "groups": [0.1, None]},
    )


def test_suggestion_comes_from_the_default_rule_and_others_are_kept():
    result = synthetic()
    assert set(result.suggestions) == set(RULES)
    assert result.suggestion == result.suggestions[result.rule].lr
    assert result.suggestion_reason is None
    assert result.suggest("steepest", skip_start=0).rule == "steepest"
    assert "suggestion=" in repr(result)


def test_no_suggestion_has_a_reason():
    result = LRFinderResult(lrs=[1e-3, 1e-2], losses=[1.0, 2.0], smoothed=[1.0, 2.0], stop_reason="diverged")
    assert result.suggestion is None and "too few" in result.suggestion_reason


def test_candidates_are_a_ladder_around_the_suggestion_and_reach_the_json():
    result = synthetic()
    rungs = result.candidates()
    assert len(rungs) == 6 and rungs[3] == result.suggestion
    assert rungs == sorted(rungs) and rungs[0] < result.suggestion / 30 and rungs[-1] > result.suggestion * 9
    lr = result.suggestion
    assert result.candidates(up=0, down=1, step=1.0) == pytest.approx([lr / 10, lr])
    assert json.loads(result.to_json())["candidates"] == rungs
    flat = LRFinderResult(lrs=[1e-3, 1e-2], losses=[1.0, 2.0], smoothed=[1.0, 2.0], stop_reason="diverged")
    assert flat.candidates() == []


def test_mismatched_arrays_are_refused():
    with pytest.raises(ValueError, match="one length"):
        LRFinderResult(lrs=[1.0, 2.0], losses=[1.0], smoothed=[1.0], stop_reason="finished")


def test_json_round_trip_is_exact_including_non_finite_values(tmp_path):
    result = synthetic()
    result.losses[-1] = math.inf
    result.losses[-2] = -math.inf
    result.smoothed[-1] = math.nan
    path = tmp_path / "run.json"
    text = result.to_json(path)
    json.loads(text)  # strict JSON: no NaN/Infinity tokens
    assert "NaN" not in text and "Infinity" not in text
    back = LRFinderResult.from_json(path)
    for name in ("lrs", "losses", "smoothed"):
        a, b = getattr(result, name), getattr(back, name)
        assert a.tobytes() == b.tobytes(), name
    for name in ("stop_reason", "settings", "backend", "elapsed", "rule", "info"):
        assert getattr(back, name) == getattr(result, name), name
    assert back.suggestions == result.suggestions
    assert LRFinderResult.from_json(text).lrs.tobytes() == result.lrs.tobytes()


def test_from_json_refuses_other_files(tmp_path):
    other = tmp_path / "other.json"
    other.write_text('{"a": 1}')
    with pytest.raises(ValueError, match="not an lrfinder result"):
        LRFinderResult.from_json(other)
    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    with pytest.raises(ValueError, match="not valid JSON"):
        LRFinderResult.from_json(broken)


def png_pixels(data: bytes) -> np.ndarray:
    from matplotlib.image import imread

    return imread(io.BytesIO(data), format="png")


def test_saved_png_is_a_real_image_with_the_curve_drawn(tmp_path):
    result = synthetic()
    path = result.save_plot(tmp_path / "plot.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = png_pixels(data)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 500
    rgb = pixels[..., :3]
    coloured = np.abs(rgb - rgb.mean(axis=-1, keepdims=True)).max(axis=-1) > 0.15
    assert coloured.mean() > 0.002, "no coloured curve on the plot"
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_save_plot_to_a_missing_folder_raises_and_leaves_nothing(tmp_path):
    with pytest.raises(OSError):
        synthetic().save_plot(tmp_path / "missing" / "plot.png")
    assert list(tmp_path.iterdir()) == []


def test_repr_png_is_a_png():
    assert synthetic()._repr_png_()[:4] == b"\x89PNG"


@pytest.mark.parametrize("stop_reason", ["finished", "diverged", "non_finite", "interrupted"])
def test_plot_returns_axes_with_marks_and_a_readable_ylim(stop_reason):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = synthetic(stop_reason)
    ax = result.plot()
    try:
        assert ax.get_xscale() == "log"
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert any(label.startswith(f"{DEFAULT_RULE} (default): ") for label in labels)
        assert any(label.startswith("steepest: ") for label in labels)
        assert (stop_reason == "finished") != any("at " in label for label in labels)
        low, high = ax.get_ylim()
        assert high < 10 < result.losses.max()  # the blow-up does not squash the descent
        assert low < result.smoothed.min()
        assert "synthetic" in ax.get_title() and DEFAULT_RULE in ax.get_title()
    finally:
        plt.close("all")


def test_plot_draws_on_a_given_axes_and_overlays():
    from matplotlib.figure import Figure

    from lrfinder.plot import plot_results

    ax = Figure().add_subplot()
    assert synthetic().plot(ax=ax) is ax
    ax2 = Figure().add_subplot()
    results = [synthetic(seed=1), synthetic(seed=2)]
    plot_results(results, ["a", "b"], ax=ax2)
    labels = [t.get_text() for t in ax2.get_legend().get_texts()]
    # each curve's legend entry carries its own suggestion
    expected = [f"{name} — {r.rule}: {r.suggestion:.2e}" for name, r in zip("ab", results, strict=True)]
    assert labels[:2] == expected
    flat = LRFinderResult(lrs=[1e-3, 1e-2], losses=[1.0, 2.0], smoothed=[1.0, 2.0], stop_reason="diverged")
    ax3 = Figure().add_subplot()
    plot_results([results[0], flat], ["a", "flat"], ax=ax3)
    assert f"flat — {flat.rule}: no suggestion" in [t.get_text() for t in ax3.get_legend().get_texts()]


def test_non_main_process_writes_nothing(tmp_path):
    result = synthetic()
    result.is_main_process = False
    result.save_plot(tmp_path / "p.png")
    result.to_json(tmp_path / "r.json")
    assert list(tmp_path.iterdir()) == []


def test_raw_rules_read_the_raw_losses_and_others_the_smoothed_curve():
    result = synthetic()
    assert result.suggestions["raw_minimum"] == suggest.raw_minimum(result.lrs, result.losses)
    assert result.suggest("raw_minimum", factor=1.0) == suggest.raw_minimum(
        result.lrs, result.losses, factor=1.0
    )
    assert result.suggest("minimum") == suggest.minimum(result.lrs, result.smoothed)

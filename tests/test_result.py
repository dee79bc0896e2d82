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


# -- malformed files: every field's error is a ValueError naming it and what a valid one is -------


class _Delete:
    """A table value: the field is left out (its repr names the test, the same in every worker)."""

    def __repr__(self) -> str:
        return "DELETE"


DELETE = _Delete()


def saved_with_everything() -> dict:
    """A saved result with a plan and a confirmation whose probes hold NaN and infinities."""
    from lrfinder import ConfirmSettings, Plan
    from lrfinder.confirm import Confirmation, Probe, ProbePlan, ProbeRound

    probes = (
        Probe(0.01, 4, 0, (1.0, math.nan, 0.5, math.inf), 0.25),
        Probe(0.03, 4, 0, (1.0, 0.9, 0.8, 0.7), math.inf),
    )
    confirmation = Confirmation(
        lr=0.01,
        center=0.02,
        probes=probes,
        plan=ProbePlan(20, 10, (-0.25, 0.25), (ProbeRound(2, 4),)),
        schedule="cosine",
        settings=ConfirmSettings().to_dict(),
        start_score=2.3,
        train_steps=300,
    )
    base = synthetic()
    base.settings["num_iter"] = base.num_steps
    base.plan, base.confirmation = Plan("cosine", 300), confirmation
    return json.loads(base.to_json())


def changed(data: dict, path: tuple, value: object) -> dict:
    """``data`` with the field at ``path`` (keys and indices) set to ``value``, or left out."""
    data = json.loads(json.dumps(data))
    *parents, last = path
    holder = data
    for key in parents:
        holder = holder[key]
    if value is DELETE:
        del holder[last]
    else:
        holder[last] = value
    return data


C, P, PP = ("confirmation",), ("confirmation", "probes"), ("confirmation", "plan")
NUMBER = '(null for NaN, "inf" or "-inf")'
PLAN_SHAPE = '{"schedule": "constant" | "onecycle" | "cosine", "train_steps": an integer >= 1 or null}'
SCHEDULE = "one of 'constant', 'onecycle', 'cosine'"
MALFORMED = [
    # (the field, its new value or DELETE, what the error must say)
    (("format",), DELETE, "not an lrfinder result (the 'format' field is missing or not 'lrfinder.result')"),
    (("format",), "lrfinder.results", "the 'format' field is missing or not 'lrfinder.result'"),
    (("version",), DELETE, "lrfinder result format version None is not supported (this lrfinder reads"),
    (("version",), "2", "lrfinder result format version '2' is not supported"),
    (("version",), True, "lrfinder result format version True is not supported"),
    (("lrs",), DELETE, "the field(s) lrs are missing"),
    (("stop_reason",), DELETE, "the field(s) stop_reason are missing"),
    (("lrs",), "fast", f"lrs must be an array of numbers {NUMBER[:-1].replace(' or', ',')}), got a string"),
    (("losses",), {"0": 1.0}, "losses must be an array of numbers (null for NaN, "),
    (("smoothed",), 3, "smoothed must be an array of numbers (null for NaN, "),
    (("lrs", 0), "0.001", f"lrs[0] must be a number {NUMBER}, got a string ('0.001')"),
    (("losses", 2), [1.0], f"losses[2] must be a number {NUMBER}, got an array ([1.0])"),
    (("smoothed", 1), True, f"smoothed[1] must be a number {NUMBER}, got a boolean (True)"),
    (("stop_reason",), 7, "stop_reason must be one of 'finished', 'diverged', 'non_finite', 'interrupted'"),
    (("stop_reason",), "stopped", "stop_reason must be one of 'finished', "),
    (("settings",), "fast", "settings must be a JSON object, got a string ('fast')"),
    (("settings", "num_iter"), "120", "settings.num_iter must be an integer >= 1, got a string ('120')"),
    (("settings", "num_iter"), 2.5, "settings.num_iter must be an integer >= 1, got a number (2.5)"),
    (("settings", "start_lr"), "small", "settings.start_lr must be a finite number > 0, got a string"),
    (("settings", "end_lr"), -1.0, "settings.end_lr must be a finite number > 0, got a number (-1.0)"),
    (("settings", "mode"), "log", "settings.mode must be one of 'exp', 'linear', got a string ('log')"),
    (("info",), [1], "info must be a JSON object, got an array ([1])"),
    (("backend",), 3, "backend must be a string, got a number (3)"),
    (("rule",), "fastest", f"rule must be one of {', '.join(map(repr, sorted(RULES)))}, got a string"),
    (("rule",), None, "rule must be one of "),
    (("elapsed",), "1s", "elapsed must be a finite number, got a string ('1s')"),
    (("plan",), "cosine", f"plan must be a JSON object {PLAN_SHAPE}, got a string ('cosine')"),
    (("plan",), [], f"plan must be a JSON object {PLAN_SHAPE}, got an array ([])"),
    (("plan",), {"budget": 20}, f"plan.schedule is missing; plan must be a JSON object {PLAN_SHAPE}"),
    (("plan", "schedule"), DELETE, "plan.schedule is missing; plan must be a JSON object {"),
    (("plan", "schedule"), 3, f"plan.schedule must be {SCHEDULE}, got a number (3)"),
    (("plan", "schedule"), "linear", f"plan.schedule must be {SCHEDULE}, got a string ('linear')"),
    (("plan", "train_steps"), "300", "plan.train_steps must be an integer >= 1, got a string ('300')"),
    (("plan", "train_steps"), 300.0, "plan.train_steps must be an integer >= 1, got a number (300.0)"),
    (("plan", "train_steps"), 0, "plan.train_steps must be an integer >= 1, got a number (0)"),
    (("plan", "train_steps"), True, "plan.train_steps must be an integer >= 1, got a boolean (True)"),
    (
        ("plan", "train_steps"),
        10**13,
        "plan.train_steps must be at most 1e+12 (decades of training at a millisecond a step), "
        "got 10000000000000",
    ),
    (C, "yes", 'confirmation must be a JSON object {"lr": number or null, '),
    ((*C, "plan"), DELETE, "confirmation.plan is missing; confirmation must be a JSON object {"),
    ((*C, "lr"), "0.01", "confirmation.lr must be a finite number > 0 or null, got a string ('0.01')"),
    ((*C, "lr"), -0.01, "confirmation.lr must be a finite number > 0 or null, got a number (-0.01)"),
    ((*C, "center"), [0.02], "confirmation.center must be a finite number > 0 or null, got an array"),
    ((*C, "schedule"), "linear", f"confirmation.schedule must be {SCHEDULE}, got a string ('linear')"),
    ((*C, "reason"), 3, "confirmation.reason must be a string or null, got a number (3)"),
    ((*C, "settings"), "x", "confirmation.settings must be a JSON object, got a string ('x')"),
    ((*C, "start_score"), "2.3", "confirmation.start_score must be a finite number or null, got a string"),
    ((*C, "start_score"), "inf", "confirmation.start_score must be a finite number or null, got a string"),
    ((*C, "train_steps"), 0, "confirmation.train_steps must be an integer >= 1, got a number (0)"),
    ((*C, "train_steps"), 300.0, "confirmation.train_steps must be an integer >= 1, got a number (300.0)"),
    (P, {"0": {}}, "confirmation.probes must be an array of probe objects, got an object"),
    (P, [], "confirmation.lr is 0.01 but confirmation.probes is empty: a chosen LR needs its probes"),
    ((*P, 0), "probe", 'confirmation.probes[0] must be a JSON object {"lr": number > 0, "steps": '),
    ((*P, 1, "lr"), DELETE, "confirmation.probes[1].lr is missing; confirmation.probes[1] must be a JSON"),
    ((*P, 0, "lr"), "0.01", "confirmation.probes[0].lr must be a finite number > 0, got a string ('0.01')"),
    ((*P, 0, "lr"), 0, "confirmation.probes[0].lr must be a finite number > 0, got a number (0)"),
    ((*P, 0, "steps"), "4", "confirmation.probes[0].steps must be an integer >= 1, got a string ('4')"),
    ((*P, 0, "steps"), 4.0, "confirmation.probes[0].steps must be an integer >= 1, got a number (4.0)"),
    ((*P, 1, "round"), -1, "confirmation.probes[1].round must be an integer >= 0, got a number (-1)"),
    (
        (*P, 0, "losses"),
        "x",
        'confirmation.probes[0].losses must be an array of numbers (null for NaN, "inf"',
    ),
    (
        (*P, 0, "losses", 1),
        "nan",
        f"confirmation.probes[0].losses[1] must be a number {NUMBER}, got a string",
    ),
    ((*P, 0, "score"), DELETE, "confirmation.probes[0].score is missing; confirmation.probes[0] must be a"),
    ((*P, 1, "score"), {"v": 1}, f"confirmation.probes[1].score must be a number {NUMBER}, got an object"),
    (PP, [20], 'confirmation.plan must be a JSON object {"budget": steps, "range_steps": steps, "offsets": '),
    (
        PP,
        {"schedule": "cosine", "train_steps": 300},
        "confirmation.plan.budget is missing; confirmation.plan",
    ),
    ((*PP, "budget"), "20", "confirmation.plan.budget must be an integer >= 1, got a string ('20')"),
    ((*PP, "budget"), 0, "confirmation.plan.budget must be an integer >= 1, got a number (0)"),
    (
        (*PP, "range_steps"),
        10.5,
        "confirmation.plan.range_steps must be an integer >= 1, got a number (10.5)",
    ),
    (
        (*PP, "offsets"),
        DELETE,
        "confirmation.plan.offsets is missing; confirmation.plan must be a JSON object",
    ),
    ((*PP, "offsets"), "x", "confirmation.plan.offsets must be an array of numbers, got a string ('x')"),
    ((*PP, "offsets", 0), "a", "confirmation.plan.offsets[0] must be a finite number, got a string ('a')"),
    (
        (*PP, "rounds"),
        {},
        "confirmation.plan.rounds must be an array of [probes, steps] pairs, got an object",
    ),
    ((*PP, "rounds"), [2, 4], "confirmation.plan.rounds[0] must be a pair [probes, steps] of integers >= 1"),
    ((*PP, "rounds", 0), [2], "confirmation.plan.rounds[0] must be a pair [probes, steps] of integers >= 1"),
    (
        (*PP, "rounds", 0, 1),
        "4",
        "confirmation.plan.rounds[0][1] must be an integer >= 1, got a string ('4')",
    ),
    ((*PP, "lookahead"), -1, "confirmation.plan.lookahead must be an integer >= 0, got a number (-1)"),
]
MALFORMED_IDS = [f"{'.'.join(map(str, path))}={value!r}"[:60] for path, value, _ in MALFORMED]


def test_the_file_the_malformed_ones_start_from_loads_whole():
    back = LRFinderResult.from_dict(saved_with_everything())
    assert back.plan is not None and back.plan.train_steps == 300 and back.confirmation is not None
    losses = back.confirmation.probes[0].losses
    assert losses[3] == math.inf and math.isnan(losses[1])
    assert back.confirmation.probes[1].score == math.inf and back.confirmation.plan.offsets == (-0.25, 0.25)


@pytest.mark.parametrize(("path", "value", "message"), MALFORMED, ids=MALFORMED_IDS)
def test_a_malformed_field_is_a_value_error_naming_the_file_and_the_field(tmp_path, path, value, message):
    data = changed(saved_with_everything(), path, value)
    with pytest.raises(ValueError) as raised:
        LRFinderResult.from_dict(data)
    assert message in str(raised.value)
    with pytest.raises(ValueError) as raised:  # JSON text: there is no file to name
        LRFinderResult.from_json(json.dumps(data))
    assert message in str(raised.value) and " is not an lrfinder result: " not in str(raised.value)
    path_ = tmp_path / "run.json"
    path_.write_text(json.dumps(data))
    with pytest.raises(ValueError) as raised:
        LRFinderResult.from_json(path_)
    assert str(raised.value).startswith(f"{path_} is not an lrfinder result") and message in str(raised.value)


def test_a_file_that_is_not_utf8_text_says_so(tmp_path):
    path = tmp_path / "run.json"
    path.write_bytes(b'{"format": "\xff"}')
    with pytest.raises(
        ValueError, match=r"run\.json is not an lrfinder result: not UTF-8 text \(invalid start"
    ):
        LRFinderResult.from_json(path)

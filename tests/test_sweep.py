"""The engine on an exactly solvable problem, and its stop and restore rules."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from lrfinder import RangeTestInterrupted, SweepSettings, find_lr, run_range_test, run_sweep
from lrfinder.sweep import LossSmoother
from lrfinder.trainers import StepFunctionTrainer


class NoisyQuadratic:
    """SGD on f(w) = a/2 * ||w - xi||^2 with a fresh target xi ~ N(0, sigma^2) per batch.

    The iteration w <- w - lr * a * (w - xi) is stable exactly for lr < 2/a and blows up past it;
    the per-batch targets keep the loss from collapsing to zero as real mini-batch noise does.
    ``loss_noise`` multiplies each recorded loss by (1 + loss_noise * N(0, 1)).
    """

    def __init__(
        self, a: float, dim: int = 10, sigma: float = 0.1, loss_noise: float = 0.0, seed: int = 0
    ) -> None:
        self.a, self.sigma, self.loss_noise = a, sigma, loss_noise
        self.rng = np.random.default_rng(seed)
        self.w = np.ones(dim)

    def step(self, lr: float) -> float:
        xi = self.sigma * self.rng.standard_normal(self.w.shape)
        loss = 0.5 * self.a * float((self.w - xi) @ (self.w - xi))
        self.w = self.w - lr * self.a * (self.w - xi)
        return loss * (1.0 + self.loss_noise * self.rng.standard_normal())

    def snapshot(self):
        return self.w.copy(), self.rng.bit_generator.state

    def restore(self, state) -> None:
        self.w, self.rng.bit_generator.state = state[0].copy(), state[1]


@pytest.mark.parametrize("a", [0.5, 4.0, 300.0])
@pytest.mark.parametrize("loss_noise", [0.0, 0.2])
@pytest.mark.parametrize("seed", [0, 1])
def test_quadratic_stops_soon_after_two_over_a_and_suggests_below_it(a, loss_noise, seed):
    problem = NoisyQuadratic(a, loss_noise=loss_noise, seed=seed)
    w0 = problem.w.copy()
    result = find_lr(
        problem.step,
        snapshot=problem.snapshot,
        restore=problem.restore,
        start_lr=1e-4 / a,
        end_lr=1e3 / a,
        num_iter=300,
        progress=False,
    )
    assert result.stop_reason == "diverged"
    assert 2 / a < result.lrs[-1] < 4 / a
    assert 0.01 / a < result.suggestion < 2 / a
    np.testing.assert_array_equal(problem.w, w0)


def test_quadratic_with_default_range_and_steps_suggests_inside_the_stable_range():
    a = 3.0
    problem = NoisyQuadratic(a, loss_noise=0.1)
    result = find_lr(problem.step, progress=False)
    assert result.stop_reason == "diverged"
    assert 2 / a < result.lrs[-1] < 10 / a
    assert 0.01 / a < result.suggestion < 2 / a


def test_losses_are_recorded_raw_and_smoothed_with_bias_correction():
    losses = iter([4.0, 2.0, 3.0, 1.0])
    result = find_lr(
        lambda lr: next(losses), start_lr=0.1, end_lr=1.0, num_iter=4, smooth=0.5, progress=False
    )
    np.testing.assert_array_equal(result.losses, [4.0, 2.0, 3.0, 1.0])
    average, expected = 0.0, []
    for i, x in enumerate([4.0, 2.0, 3.0, 1.0], start=1):
        average = 0.5 * average + 0.5 * x
        expected.append(average / (1 - 0.5**i))
    np.testing.assert_allclose(result.smoothed, expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(result.lrs, np.geomspace(0.1, 1.0, 4), rtol=1e-12)


def test_smooth_zero_turns_smoothing_off():
    values = [5.0, 3.0, 4.0, 2.0, 1.0]
    it = iter(values)
    result = find_lr(lambda lr: next(it), start_lr=0.1, end_lr=1.0, num_iter=5, smooth=0.0, progress=False)
    np.testing.assert_array_equal(result.smoothed, values)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_loss_stops_at_once(bad):
    calls = []

    def step(lr):
        calls.append(lr)
        return bad if len(calls) == 6 else 1.0 / len(calls)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = find_lr(step, start_lr=1e-3, end_lr=1.0, num_iter=50, diverge_threshold=None, progress=False)
    assert result.stop_reason == "non_finite"
    assert len(calls) == 6 and result.num_steps == 6
    assert not np.isfinite(result.losses[-1]) and np.isnan(result.smoothed[-1])


def test_rising_loss_stops_only_after_warmup_and_can_be_switched_off():
    def rising(lr):
        return lr  # loss grows with the LR from the first step

    settings = dict(start_lr=1.0, end_lr=1e6, num_iter=60, progress=False)
    result = find_lr(rising, diverge_warmup=10, **settings)
    assert result.stop_reason == "diverged"
    assert result.num_steps == 11  # step index 10 is the first allowed to stop
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = find_lr(rising, diverge_threshold=None, **settings)
    assert result.stop_reason == "finished" and result.num_steps == 60


def test_one_raw_spike_does_not_stop_but_three_do():
    smoother = LossSmoother(smooth=0.9)
    for x in [1.0] * 20:
        smoother.update(x)
    spikes = [10.0, 1.0, 10.0, 10.0]
    verdicts = [smoother.has_diverged(x, smoother.update(x), 4.0) for x in spikes]
    assert verdicts == [False, False, False, False]
    assert smoother.has_diverged(10.0, smoother.update(10.0), 4.0)


def test_negative_losses_use_the_distance_from_the_best():
    smoother = LossSmoother(smooth=0.0)
    smoother.update(-10.0)
    assert not smoother.has_diverged(19.0, smoother.update(19.0), 4.0)  # line is -10 + 3 * 10
    assert smoother.has_diverged(31.0, smoother.update(31.0), 4.0)


def test_exception_in_step_restores_and_reraises_with_a_note():
    state = {"w": 1.0}
    restored = []

    def step(lr):
        state["w"] += 1.0
        if state["w"] > 5:
            raise ZeroDivisionError("bad batch")
        return 1.0

    with pytest.raises(ZeroDivisionError) as info:
        find_lr(
            step,
            snapshot=lambda: dict(state),
            restore=lambda s: (state.update(s), restored.append(True)),
            num_iter=20,
            progress=False,
        )
    assert state == {"w": 1.0} and restored == [True]
    if hasattr(info.value, "__notes__"):
        assert info.value.__notes__[0].startswith("lrfinder: raised by the step at lr=")
        assert info.value.__notes__[-1] == "lrfinder: the model's state was restored"


def test_keyboard_interrupt_restores_then_raises_with_the_partial_result():
    state = {"steps": 0}
    seen_at_restore = []

    def step(lr):
        if state["steps"] == 4:
            raise KeyboardInterrupt
        state["steps"] += 1
        return 1.0

    def restore(saved):
        seen_at_restore.append(dict(state))
        state.update(saved)

    with pytest.raises(RangeTestInterrupted, match="interrupted after 4 of 20") as info:
        find_lr(step, snapshot=lambda: dict(state), restore=restore, num_iter=20, progress=False)
    assert isinstance(info.value, KeyboardInterrupt) and info.value.restored
    result = info.value.result
    assert result.stop_reason == "interrupted" and result.num_steps == 4
    assert [d.code for d in result.diagnostics][:1] == ["interrupted"]
    assert seen_at_restore == [{"steps": 4}] and state == {"steps": 0}


class LazyTrainer(StepFunctionTrainer):
    """Reads losses back in blocks, as an accelerator trainer does."""

    sync_every = 4

    def __init__(self, step):
        super().__init__(step)
        self.fetches: list[int] = []

    def fetch_losses(self, losses):
        self.fetches.append(len(losses))
        return super().fetch_losses(losses)


def test_block_reads_record_every_step_and_cut_at_divergence():
    values = [3.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 50.0, 60.0, 70.0, 80.0, 90.0]
    it = iter(values)
    trainer = LazyTrainer(lambda lr: next(it))
    settings = SweepSettings(start_lr=1e-3, end_lr=1.0, num_iter=10, smooth=0.0)
    outcome = run_sweep(trainer, settings, progress=False)
    assert trainer.fetches == [4, 4]
    assert outcome.stop_reason == "diverged"
    np.testing.assert_array_equal(outcome.losses, values[:8])  # the step that diverged is last
    np.testing.assert_array_equal(outcome.lrs, settings.ladder()[:8])


def test_block_reads_flush_the_tail():
    trainer = LazyTrainer(lambda lr: 1.0)
    outcome = run_sweep(trainer, SweepSettings(num_iter=10), progress=False)
    assert trainer.fetches == [4, 4, 2] and outcome.stop_reason == "finished"


def test_callback_sees_every_step():
    seen = []
    find_lr(
        lambda lr: 2.0,
        num_iter=5,
        start_lr=0.1,
        end_lr=1.0,
        progress=False,
        callback=lambda *args: seen.append(args),
    )
    assert [s[0] for s in seen] == [0, 1, 2, 3, 4]
    assert seen[0][1] == 0.1 and seen[-1][1] == 1.0 and seen[0][2] == 2.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"smooth": 1.0}, "smooth must be in"),
        ({"smooth": -0.1}, "smooth must be in"),
        ({"diverge_threshold": 1.0}, "diverge_threshold must be"),
        ({"mode": "log"}, "mode must be one of"),
        ({"num_iter": 1}, "at least 2"),
        ({"start_lr": 1.0, "end_lr": 0.1}, "smaller than end_lr"),
        ({"rule": "nope"}, "unknown suggestion rule 'nope'"),
    ],
)
def test_bad_settings_are_refused_before_any_step(kwargs, match):
    def step(lr):
        raise AssertionError("no step may run")

    with pytest.raises(ValueError, match=match):
        find_lr(step, **kwargs)


def test_unsupported_objects_and_options_get_clear_type_errors():
    with pytest.raises(TypeError, match=r"cannot train a builtins\.int"):
        find_lr(3)
    with pytest.raises(TypeError, match="amp"):
        find_lr(lambda lr: 1.0, amp="bf16")
    with pytest.raises(TypeError, match="takes no data"):
        find_lr(lambda lr: 1.0, [1, 2])
    with pytest.raises(TypeError, match="both snapshot= and restore="):
        find_lr(lambda lr: 1.0, snapshot=lambda: 1)
    with pytest.raises(TypeError, match="must return the batch loss as a number"):
        find_lr(lambda lr: "x", progress=False)


class RecordingBar:
    """Wraps tqdm's terminal bar and records, at close, what ``tqdm.notebook`` reads there."""

    @classmethod
    def install(cls, monkeypatch) -> list[tuple[int, int, str]]:
        import io

        import tqdm.std

        closed: list[tuple[int, int, str]] = []

        class Bar(tqdm.std.tqdm):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, file=io.StringIO(), **kwargs)

            def close(self):
                # tqdm.notebook paints the bar red when it is closed with n < total
                closed.append((self.n, self.total, str(self)))
                super().close()

        monkeypatch.setattr(tqdm.std, "tqdm", Bar)
        return closed


@pytest.mark.filterwarnings("ignore:lrfinder:RuntimeWarning")
def test_progress_bar_ends_full_on_a_divergence_stop_and_short_only_on_an_error(monkeypatch):
    closed = RecordingBar.install(monkeypatch)
    settings = dict(start_lr=1e-3, end_lr=10.0, num_iter=100, progress=True)
    result = find_lr(NoisyQuadratic(a=10.0).step, **settings)
    assert result.stop_reason == "diverged" and result.num_steps < 100
    steps, total, text = closed[-1]
    assert steps == total == result.num_steps and "100%" in text

    result = find_lr(lambda lr: math.nan if lr > 0.1 else 1.0, **settings)  # non-finite: a normal end
    assert result.stop_reason == "non_finite"
    assert closed[-1][0] == closed[-1][1] == result.num_steps

    result = find_lr(NoisyQuadratic(a=1e-3).step, **settings)
    assert result.stop_reason == "finished" and closed[-1][:2] == (100, 100)

    def failing(lr: float) -> float:
        if lr > 0.01:
            raise RuntimeError("boom")
        return 1.0

    with pytest.raises(RuntimeError, match="boom"):
        find_lr(failing, **settings)
    steps, total, _ = closed[-1]
    assert steps < total == 100  # an error keeps the short (red in a notebook) bar


def test_a_bar_shows_only_where_asked_or_on_a_terminal_and_only_on_the_main_process(monkeypatch):
    from types import SimpleNamespace

    from lrfinder._progress import close_bar, progress_bar

    closed = RecordingBar.install(monkeypatch)
    main, other = SimpleNamespace(), SimpleNamespace(is_main_process=False)
    assert progress_bar(True, other, 10) is None and progress_bar(False, main, 10) is None
    monkeypatch.setattr("sys.stderr", SimpleNamespace(isatty=lambda: False))
    assert progress_bar(None, main, 10) is None
    monkeypatch.setattr("sys.stderr", SimpleNamespace(isatty=lambda: True))
    bar = progress_bar(None, main, 10, desc="Confirm probes")
    assert bar is not None and bar.total == 10 and bar.desc.startswith("Confirm probes")
    bar.update(4)
    close_bar(bar, complete=True)
    assert closed[-1][:2] == (4, 4)


def test_a_note_names_the_step_that_raised_where_python_has_notes():
    from lrfinder.errors import add_note

    error = ValueError("boom")
    add_note(error, "lrfinder: raised by step 3")
    assert getattr(error, "__notes__", ["lrfinder: raised by step 3"]) == ["lrfinder: raised by step 3"]


def test_run_range_test_with_a_ready_trainer_is_find_lr():
    settings = SweepSettings(start_lr=1e-3, end_lr=10.0, num_iter=60)
    problems = NoisyQuadratic(4.0, seed=3), NoisyQuadratic(4.0, seed=3)
    by_find_lr = find_lr(
        problems[0].step,
        snapshot=problems[0].snapshot,
        restore=problems[0].restore,
        start_lr=1e-3,
        end_lr=10.0,
        num_iter=60,
        rule="valley",
        progress=False,
    )
    trainer = StepFunctionTrainer(problems[1].step, problems[1].snapshot, problems[1].restore)
    by_runner = run_range_test(trainer, settings, rule="valley", progress=False)
    np.testing.assert_array_equal(by_runner.lrs, by_find_lr.lrs)
    np.testing.assert_array_equal(by_runner.losses, by_find_lr.losses)
    assert by_runner.settings == by_find_lr.settings and by_runner.rule == "valley"
    assert by_runner.suggestion == by_find_lr.suggestion and by_runner.backend == "callable"


def test_run_range_test_warns_at_its_caller_and_refuses_bad_arguments():
    trainer = StepFunctionTrainer(lambda lr: 1.0)  # a flat loss: a diagnostic warning
    with pytest.warns(RuntimeWarning, match="^lrfinder: ") as caught:
        run_range_test(trainer, SweepSettings(num_iter=10), progress=False)
    assert {Path(w.filename).name for w in caught} == {Path(__file__).name}
    with pytest.raises(TypeError, match="settings must be a SweepSettings"):
        run_range_test(trainer, {"num_iter": 10})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown suggestion rule 'nope'"):
        run_range_test(trainer, SweepSettings(), rule="nope")


def _counting_problem():
    state = {"w": 0.0}

    def step(lr):
        state["w"] += 1.0
        return 1.0 / state["w"]

    return state, step


def test_interrupt_from_the_callback_records_each_step_once():
    state, step = _counting_problem()

    def callback(i, lr, loss, smoothed):
        if i == 6:
            raise KeyboardInterrupt

    with pytest.raises(RangeTestInterrupted) as info:
        find_lr(
            step,
            snapshot=lambda: dict(state),
            restore=state.update,
            num_iter=20,
            callback=callback,
            progress=False,
        )
    result = info.value.result
    assert result.num_steps == 7 and np.all(np.diff(result.lrs) > 0)
    assert state == {"w": 0.0}


def test_a_restore_that_raises_is_reported_as_not_restored():
    state, step = _counting_problem()

    def bad_step(lr):
        if state["w"] >= 3:
            raise ValueError("bad batch")
        return step(lr)

    def restore(saved):
        raise OSError("disk gone")

    with pytest.raises(ValueError, match="bad batch") as info:
        find_lr(bad_step, snapshot=lambda: dict(state), restore=restore, num_iter=20, progress=False)
    if hasattr(info.value, "__notes__"):
        assert "NOT restored" in info.value.__notes__[-1] and "disk gone" in info.value.__notes__[-1]
        assert not any(note.endswith("state was restored") for note in info.value.__notes__)
    with pytest.raises(OSError, match="disk gone") as info:
        find_lr(step, snapshot=lambda: dict(state), restore=restore, num_iter=5, progress=False)
    if hasattr(info.value, "__notes__"):
        assert "NOT as it was" in info.value.__notes__[-1]


def test_ctrl_c_during_the_restore_is_held_until_it_has_finished():
    import signal
    import threading

    state, step = _counting_problem()
    finished = []

    def restore(saved):
        # a second Ctrl-C lands in the middle of the restore (sent to the main thread, where Python
        # handles signals, so that it arrives now and not a moment later)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        for _ in range(1000):  # the handler would run between these bytecodes
            pass
        state.update(saved)
        finished.append(True)

    def interrupted_step(lr):
        if state["w"] >= 4:
            raise KeyboardInterrupt
        return step(lr)

    with pytest.raises(RangeTestInterrupted) as info:
        find_lr(interrupted_step, snapshot=lambda: dict(state), restore=restore, num_iter=20, progress=False)
    assert finished == [True] and state == {"w": 0.0} and info.value.result.num_steps == 4
    # after a normal end too: the restore finishes, then the held Ctrl-C is raised
    finished.clear()
    with pytest.raises(RangeTestInterrupted) as info:
        find_lr(step, snapshot=lambda: dict(state), restore=restore, num_iter=5, progress=False)
    assert finished == [True] and state == {"w": 0.0} and info.value.result.num_steps == 5
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

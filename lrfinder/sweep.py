"""The range-test loop: ramp the LR, record losses, smooth them, stop on divergence.

This module knows nothing of any framework, of plotting or of files. It drives a
:class:`~lrfinder.trainers.base.Trainer` and returns plain NumPy arrays.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np

from lrfinder import schedules
from lrfinder._progress import close_bar, progress_bar
from lrfinder._signals import SigintFlag
from lrfinder._signals import defer_sigint as _defer_sigint
from lrfinder.errors import RangeTestInterrupted, add_note
from lrfinder.trainers.base import Trainer

FINISHED = "finished"
DIVERGED = "diverged"
NON_FINITE = "non_finite"
INTERRUPTED = "interrupted"
STOP_REASONS = (FINISHED, DIVERGED, NON_FINITE, INTERRUPTED)

#: Consecutive raw losses past the divergence line that stop the sweep (see LossSmoother).
RAW_PATIENCE = 3

#: ``callback(step, lr, loss, smoothed)``, called once per recorded step.
StepCallback = Callable[[int, float, float, float], None]


@dataclass(frozen=True)
class SweepSettings:
    """How the range test ramps the LR and when it gives up.

    Attributes:
        start_lr: First learning rate of the ladder (> 0).
        end_lr: Last learning rate of the ladder (> start_lr).
        num_iter: Number of steps (one mini-batch each) from start_lr to end_lr (>= 2).
        mode: ``"exp"`` (geometric ladder, the default) or ``"linear"``.
        smooth: Weight of the past in the exponential moving average of the loss, in [0, 1);
            0 turns smoothing off. The average is bias-corrected, so early values are not pulled
            towards zero. It lags the raw loss by about ``1 / (1 - smooth)`` steps, which is why
            the default is 0.9 rather than the 0.98 other finders use over 100 steps.
        diverge_threshold: Stop once the smoothed loss, or three raw losses in a row, exceed
            ``best + (threshold - 1) * |best|`` (that is ``threshold * best`` for a positive
            best), ``best`` being the lowest smoothed loss so far. None never stops on a rising
            loss (a non-finite loss still stops).
        diverge_warmup: Steps run before the rising-loss rule may fire, so that the noisy first
            averages cannot end the sweep.
    """

    start_lr: float = 1e-7
    end_lr: float = 10.0
    num_iter: int = 100
    mode: str = "exp"
    smooth: float = 0.9
    diverge_threshold: float | None = 4.0
    diverge_warmup: int = 5

    def __post_init__(self) -> None:
        schedules.check_range(self.start_lr, self.end_lr, self.num_iter)
        if self.mode not in schedules.MODES:
            raise ValueError(f"mode must be one of {schedules.MODES}, got {self.mode!r}")
        if not (isinstance(self.smooth, (int, float)) and 0.0 <= self.smooth < 1.0):
            raise ValueError(
                f"smooth must be in [0, 1) (0 turns smoothing off; 0.9 is the default), got {self.smooth!r}"
            )
        threshold = self.diverge_threshold
        if threshold is not None and not (
            isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold > 1
        ):
            raise ValueError(
                "diverge_threshold must be a number > 1 (how many times the best smoothed loss "
                f"counts as divergence) or None to never stop on a rising loss, got {threshold!r}"
            )
        if isinstance(self.diverge_warmup, bool) or not isinstance(self.diverge_warmup, int):
            raise TypeError(f"diverge_warmup must be an integer, got {self.diverge_warmup!r}")
        if self.diverge_warmup < 0:
            raise ValueError(f"diverge_warmup must be >= 0, got {self.diverge_warmup}")

    def ladder(self) -> np.ndarray:
        """The learning rates of every step, shape ``(num_iter,)``."""
        return schedules.ladder(self.mode, self.start_lr, self.end_lr, self.num_iter)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SweepOutcome(NamedTuple):
    """What one sweep recorded; all arrays have the length of the steps recorded."""

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    stop_reason: str
    elapsed: float


class LossSmoother:
    """Bias-corrected exponential moving average with a divergence test.

    >>> s = LossSmoother(smooth=0.5)
    >>> [s.update(x) for x in (4.0, 2.0)]
    [4.0, 2.6666666666666665]
    """

    def __init__(self, smooth: float) -> None:
        self.smooth = smooth
        self.count = 0
        self._average = 0.0
        self.best = math.inf
        self._raw_above = 0  # consecutive raw losses above the divergence line

    def update(self, loss: float) -> float:
        self.count += 1
        self._average = self.smooth * self._average + (1.0 - self.smooth) * loss
        smoothed = self._average / (1.0 - self.smooth**self.count)
        self.best = min(self.best, smoothed)
        return smoothed

    def has_diverged(self, loss: float, smoothed: float, threshold: float) -> bool:
        """Whether the curve rose past ``threshold`` times its best (see SweepSettings).

        The smoothed loss lags the raw one by about ``1 / (1 - smooth)`` steps, so a run of
        :data:`RAW_PATIENCE` raw losses past the line also counts: a blow-up is caught within a
        few steps, while one unlucky batch is not enough.
        """
        line = self.best + (threshold - 1.0) * abs(self.best)
        self._raw_above = self._raw_above + 1 if loss > line else 0
        return smoothed > line or self._raw_above >= RAW_PATIENCE


def run_sweep(
    trainer: Trainer,
    settings: SweepSettings,
    *,
    progress: bool | None = None,
    callback: StepCallback | None = None,
) -> SweepOutcome:
    """Run the range test with ``trainer`` and return what it recorded.

    The trainer's state is snapshotted first and restored at the end in every case, and the
    restore itself runs with Ctrl-C held back (main thread only), so that it always finishes:

    * a normal end or an early stop: the outcome is returned;
    * an exception (from a step, the data, the callback or the progress bar): it is re-raised
      after the restore, with a note saying whether the state was restored;
    * ``KeyboardInterrupt`` (Ctrl-C, or raised by the callback): after the restore,
      :class:`~lrfinder.errors.RangeTestInterrupted` (a ``KeyboardInterrupt``) is raised with the
      partial outcome in its ``outcome`` attribute. A Ctrl-C held during a restore after a normal
      end raises it too, with the whole outcome.

    Args:
        trainer: Anything that follows the :class:`~lrfinder.trainers.base.Trainer` protocol.
            A distributed trainer (``world_size > 1``) may also define ``finish()``, called
            after the last step, ``abort(interrupted: bool)``, called before the restore when
            this process stops on an error or an interrupt, to tell the other processes, and an
            ``interrupt_flag`` attribute: the engine sets it to a flag that Ctrl-C raises, for
            the trainer to read where all processes can stop together.
        settings: The ladder, smoothing and divergence rules.
        progress: Show a progress bar (None: only when stderr is a terminal or in a notebook, and
            only on the main process).
        callback: Called as ``callback(step, lr, loss, smoothed)`` for every recorded step.

    Returns:
        A :class:`SweepOutcome` with arrays of the recorded steps only. A step found to diverge is
        recorded and is the last one; steps a trainer ran ahead (``sync_every > 1``) past it are not.

    Raises:
        RangeTestInterrupted: The sweep was interrupted (the state was restored first).
    """
    ladder = settings.ladder()
    smoother = LossSmoother(settings.smooth)
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    stop_reason = FINISHED
    sync_every = max(1, int(getattr(trainer, "sync_every", 1)))
    bar = progress_bar(progress, trainer, len(ladder))

    def record(pending: list[tuple[float, Any]]) -> str | None:
        """Read back pending losses, record them, and say why to stop (None: go on).

        ``pending`` is emptied before anything is recorded, so that an interrupt raised by the
        callback or the progress bar can never record a step twice.
        """
        taken = list(pending)
        values = trainer.fetch_losses([loss for _, loss in taken])
        pending.clear()
        for (lr, _), loss in zip(taken, values, strict=True):
            step = len(losses)
            value = smoother.update(loss) if math.isfinite(loss) else math.nan
            lrs.append(lr)
            losses.append(loss)
            smoothed.append(value)
            if callback is not None:
                callback(step, lr, loss, value)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(lr=f"{lr:.2e}", loss=f"{loss:.4g}", refresh=False)
            if not math.isfinite(loss):
                return NON_FINITE
            if (
                settings.diverge_threshold is not None
                and step >= settings.diverge_warmup
                and smoother.has_diverged(loss, value, settings.diverge_threshold)
            ):
                return DIVERGED
        return None

    started = time.perf_counter()
    trainer.snapshot()
    pending: list[tuple[float, Any]] = []
    failure: BaseException | None = None
    step_lr: float | None = None  # the LR of the step running; named in the note of a failure
    finishing = False
    where = ""
    # Ranks of a distributed run must stop at the same step: Ctrl-C becomes a flag that the
    # trainer reads at its next status exchange (a second Ctrl-C raises at once).
    flag = SigintFlag() if _is_distributed(trainer) else None
    if flag is not None:
        flag.install()
        trainer.interrupt_flag = flag  # type: ignore[attr-defined]
    try:
        for lr in ladder:
            step_lr = lr = float(lr)
            pending.append((lr, trainer.step(lr)))
            step_lr = None
            if len(pending) >= sync_every:
                reason = record(pending)
                if reason is not None:
                    stop_reason = reason
                    break
        else:
            if pending:
                stop_reason = record(pending) or FINISHED
        finish = getattr(trainer, "finish", None)
        if callable(finish):
            finishing = True
            finish()
            finishing = False
    except BaseException as error:  # everything is re-raised below, after the restore
        failure = error
        # Built here, not before every step: the per-step loop stays free of string formatting.
        if step_lr is not None:
            where = f"the step at lr={step_lr:.3e} (step {len(losses) + len(pending) + 1} of {len(ladder)})"
        else:
            where = "the final check with the other processes" if finishing else ""
        if isinstance(error, KeyboardInterrupt):
            stop_reason = INTERRUPTED
            if pending:  # those steps ran; only their losses were not read yet
                with contextlib.suppress(Exception):
                    record(pending)
        abort = getattr(trainer, "abort", None)
        if callable(abort):
            try:
                abort(isinstance(error, KeyboardInterrupt))
            except Exception as abort_error:  # the first failure is the one to report
                add_note(error, f"lrfinder: telling the other processes failed too: {abort_error!r}")
    finally:
        if flag is not None:
            flag.uninstall()
            trainer.interrupt_flag = None  # type: ignore[attr-defined]

    restore_error: BaseException | None = None
    with _defer_sigint() as held:
        try:
            trainer.restore()
        except BaseException as error:  # reported below with the sweep's own failure
            restore_error = error
        finally:
            if bar is not None:
                with contextlib.suppress(Exception):
                    close_bar(bar, complete=stop_reason in (DIVERGED, NON_FINITE))
    outcome = SweepOutcome(
        lrs=np.asarray(lrs, dtype=np.float64),
        losses=np.asarray(losses, dtype=np.float64),
        smoothed=np.asarray(smoothed, dtype=np.float64),
        stop_reason=stop_reason,
        elapsed=time.perf_counter() - started,
    )
    restored = restore_error is None
    state = "the model's state was restored" if restored else "the model's state was NOT restored"
    state_note = f"lrfinder: {state}" + ("" if restored else f": restoring it raised {restore_error!r}")
    if isinstance(failure, KeyboardInterrupt) or (held and failure is None):
        done = f"{len(losses)} of {len(ladder)} steps"
        interrupt = RangeTestInterrupted(
            f"lrfinder: range test interrupted after {done}; {state} "
            "(the partial result is in this exception's .result)",
            outcome=outcome,
            restored=restored,
        )
        if not restored:
            add_note(interrupt, state_note)
        raise interrupt from (restore_error if restore_error is not None else failure)
    if failure is not None:
        if where:
            add_note(failure, f"lrfinder: raised by {where}")
        add_note(failure, state_note)
        if held:  # Ctrl-C pressed during the restore: it wins, as the user asked to stop
            raise KeyboardInterrupt from failure
        raise failure
    if restore_error is not None:
        add_note(
            restore_error,
            "lrfinder: the sweep ran to its end, but putting the model's state "
            "back failed; the model is NOT as it was",
        )
        raise restore_error
    return outcome


def _is_distributed(trainer: Trainer) -> bool:
    world_size = getattr(trainer, "world_size", 1)
    return isinstance(world_size, int) and world_size > 1 and hasattr(trainer, "interrupt_flag")

"""From a range test's result to the LR schedule object a training run uses, numbers filled in.

``torch_scheduler`` builds a ``torch.optim.lr_scheduler`` object for an optimizer and
``keras_schedule`` a ``keras.optimizers.schedules.LearningRateSchedule``; both follow the same
curves, step for step:

* ``"constant"``: the suggestion at every step.
* ``"onecycle"``: peak at the suggestion, as in :mod:`lrfinder.plan` (torch's ``OneCycleLR`` with
  its defaults).
* ``"cosine"``: linear warm-up from 0 to the suggestion, then cosine decay to 0, as in
  :mod:`lrfinder.plan`.
* ``"cyclical"``: triangular cycles between the bounds of ``result.lr_range`` (torch's
  ``CyclicLR`` in ``"triangular"`` mode), ``cycles`` full cycles over the run.

The first three are the plan's schedules, so :func:`expected_curve` is ``plan.lr_curve`` for them.
torch and keras are imported only inside the builders.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from lrfinder import plan

if TYPE_CHECKING:
    import keras
    import torch

    from lrfinder.result import LRFinderResult

__all__ = [
    "CYCLICAL",
    "DEFAULT_CYCLES",
    "SCHEDULES",
    "bounds",
    "choose",
    "cyclical_lr_at",
    "cyclical_step_size",
    "expected_curve",
    "keras_schedule",
    "peak_lr",
    "torch_scheduler",
]

CYCLICAL = "cyclical"
SCHEDULES: tuple[str, ...] = (*plan.SCHEDULES, CYCLICAL)

#: Full triangular cycles over the run for ``"cyclical"``: each half cycle is then ``total_steps / 8``,
#: Smith's advice of 2-10 epochs per half cycle for runs of 16 to 80 epochs.
DEFAULT_CYCLES = 4


def choose(result: LRFinderResult, total_steps: int | None, schedule: str | None) -> tuple[str, int]:
    """``(schedule, total_steps)``: the ones given, else the plan the range test was told.

    Without a plan, the schedule is ``"constant"`` and ``total_steps`` must be given.

    Raises:
        ValueError: An unknown schedule, no number of steps from either source, or one that is not
            a positive integer.
    """
    told = result.plan
    if schedule is None:
        schedule = told.schedule if told is not None else plan.CONSTANT
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(map(repr, SCHEDULES))}, got {schedule!r}")
    if total_steps is None and told is not None:
        total_steps = told.train_steps
    if total_steps is None:
        raise ValueError(
            f"a {schedule!r} schedule needs total_steps=N, the number of optimizer steps of your "
            "training run (for example len(loader) * epochs), unless the range test was told a plan"
        )
    if isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer)) or total_steps < 1:
        raise ValueError(f"total_steps must be a positive integer (optimizer steps), got {total_steps!r}")
    return schedule, int(total_steps)


def peak_lr(result: LRFinderResult) -> float:
    """The suggestion, which a schedule peaks at; a ValueError that says why when there is none."""
    lr = result.suggestion
    if lr is None:
        raise ValueError(
            f"cannot build a schedule: this range test has no suggested LR ({result.suggestion_reason}); "
            "look at result.diagnostics and run it again as they say, or pick an LR yourself and "
            "build the schedule with it"
        )
    return float(lr)


def bounds(result: LRFinderResult) -> tuple[float, float]:
    """``result.lr_range`` for ``"cyclical"``; a ValueError that says why when there is none."""
    found = result.lr_range
    if found is None:
        raise ValueError(
            "cannot build a 'cyclical' schedule: this range test has no lr_range (its loss never "
            "fell clearly); look at result.diagnostics and run it again as they say, or choose "
            "another schedule"
        )
    low, high = found
    return float(low), float(high)


def cyclical_step_size(total_steps: int, cycles: int = DEFAULT_CYCLES) -> int:
    """Steps of each half cycle (up, then down) for ``cycles`` cycles in ``total_steps``; at least 1.

    >>> cyclical_step_size(800), cyclical_step_size(10), cyclical_step_size(3, cycles=2)
    (100, 1, 1)
    """
    if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 1:
        raise ValueError(f"cycles must be a positive integer (full cycles over the run), got {cycles!r}")
    return max(1, round(total_steps / (2 * cycles)))


def cyclical_lr_at(low: float, high: float, step: int, step_size: int) -> float:
    """The triangular cyclical LR at ``step`` (0-based): ``low`` at 0, ``high`` at ``step_size``.

    The formula of torch's ``CyclicLR(mode="triangular")`` with equal up and down halves.

    >>> [cyclical_lr_at(1.0, 3.0, s, 2) for s in range(6)]
    [1.0, 2.0, 3.0, 2.0, 1.0, 2.0]
    """
    cycle_length = 2 * step_size
    cycle = math.floor(1 + step / cycle_length)
    x = 1.0 + step / cycle_length - cycle
    scale = x / 0.5 if x <= 0.5 else (x - 1) / (0.5 - 1)
    return low + (high - low) * scale


def expected_curve(
    result: LRFinderResult,
    total_steps: int | None = None,
    schedule: str | None = None,
    *,
    cycles: int = DEFAULT_CYCLES,
) -> np.ndarray:
    """The LR of every step that the schedule objects built from ``result`` give, shape ``(total,)``.

    For the plan's schedules it is :func:`lrfinder.plan.lr_curve` at the suggestion.
    """
    schedule, total = choose(result, total_steps, schedule)
    if schedule == CYCLICAL:
        low, high = bounds(result)
        size = cyclical_step_size(total, cycles)
        return np.array([cyclical_lr_at(low, high, s, size) for s in range(total)], dtype=np.float64)
    return plan.lr_curve(schedule, peak_lr(result), total)


def _factor(schedule: str, total: int, step: int) -> float:
    """The plan's LR at ``step`` for a peak of 1 (module level, so LambdaLR's state pickles)."""
    return plan.lr_at(schedule, 1.0, step, total)


def torch_scheduler(
    result: LRFinderResult,
    optimizer: torch.optim.Optimizer,
    total_steps: int | None = None,
    schedule: str | None = None,
    *,
    cycles: int = DEFAULT_CYCLES,
    cycle_momentum: bool | None = None,
) -> torch.optim.lr_scheduler.LRScheduler:
    """A torch LR scheduler for ``optimizer`` that follows :func:`expected_curve`.

    Call its ``step()`` after every ``optimizer.step()``, as for any per-batch scheduler. Building
    it sets the optimizer's LRs to those of step 0. With several param groups, each keeps its
    current ratio to the first group with an LR above 0 (as in the range test), so the curve is
    that group's.

    * ``"onecycle"``: ``OneCycleLR(max_lr=suggestion, total_steps=N)`` with torch's defaults,
      momentum cycling included whenever the optimizer has a ``momentum`` or ``betas`` setting,
      as torch does: an SGD or RMSprop with momentum 0 gets it switched on, which is the plan
      the suggestion and confirm mode's probes are made for. ``cycle_momentum=False`` turns it
      off (then build the plan's probes with ``ConfirmSettings(cycle_momentum=False)`` too).
    * ``"cyclical"``: ``CyclicLR(base_lr=low, max_lr=high, step_size_up=cyclical_step_size(N),
      mode="triangular", cycle_momentum=False)``.
    * ``"constant"`` and ``"cosine"``: ``LambdaLR`` over the plan's curve for a peak of 1, from
      the suggestion.

    Raises:
        ValueError: No suggestion (or no ``lr_range`` for ``"cyclical"``), an unknown schedule, or
            no ``total_steps`` (given or planned).
        TypeError: ``optimizer`` is not a torch optimizer.
    """
    import torch

    from lrfinder.trainers._torch_options import lr_ratios, onecycle_momentum_kind

    schedule, total = choose(result, total_steps, schedule)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__qualname__}")
    ratios, _ = lr_ratios(optimizer)
    schedulers = torch.optim.lr_scheduler
    groups = optimizer.param_groups
    if schedule == CYCLICAL:
        low, high = bounds(result)
        _start_at(groups, [low * r for r in ratios])
        return schedulers.CyclicLR(
            optimizer,
            base_lr=[low * r for r in ratios],
            max_lr=[high * r for r in ratios],
            step_size_up=cyclical_step_size(total, cycles),
            mode="triangular",
            cycle_momentum=False,
        )
    peak = peak_lr(result)
    if schedule == plan.ONECYCLE:
        # OneCycleLR's default, where it can: it refuses an optimizer without momentum or betas
        can_cycle = onecycle_momentum_kind(optimizer) != plan.MOMENTUM_NONE
        cycle_momentum = can_cycle if cycle_momentum is None else bool(cycle_momentum and can_cycle)
        return schedulers.OneCycleLR(
            optimizer, max_lr=[peak * r for r in ratios], total_steps=total, cycle_momentum=cycle_momentum
        )
    _start_at(groups, [peak * r for r in ratios])
    return schedulers.LambdaLR(optimizer, functools.partial(_factor, schedule, total))


def _start_at(groups: list[dict[str, Any]], lrs: list[float]) -> None:
    """Set each group's ``lr`` and ``initial_lr``, from which a new scheduler takes its base LRs.

    Both: a scheduler built earlier on the optimizer leaves its ``initial_lr`` behind, and torch's
    schedulers keep one they find (even CyclicLR, for its first step).
    """
    for group, lr in zip(groups, lrs, strict=True):
        group["initial_lr"] = lr
        if hasattr(group["lr"], "fill_"):  # a tensor LR is updated in place, as schedulers do
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def keras_schedule(
    result: LRFinderResult,
    total_steps: int | None = None,
    schedule: str | None = None,
    *,
    cycles: int = DEFAULT_CYCLES,
) -> keras.optimizers.schedules.LearningRateSchedule:
    """A Keras ``LearningRateSchedule`` that follows :func:`expected_curve` (in float32).

    Pass it as an optimizer's ``learning_rate``; Keras calls it with the optimizer's step count.
    ``"cosine"`` is Keras's own ``CosineDecay`` with warm-up; the others are small serializable
    schedules of this package (:mod:`lrfinder._keras_schedules`), so a saved model loads back
    once ``lrfinder`` is imported.

    Raises:
        ValueError: No suggestion (or no ``lr_range`` for ``"cyclical"``), an unknown schedule, or
            no ``total_steps`` (given or planned).
    """
    from lrfinder import _keras_schedules as objects

    schedule, total = choose(result, total_steps, schedule)
    if schedule == CYCLICAL:
        low, high = bounds(result)
        return objects.Triangular(low, high, cyclical_step_size(total, cycles))
    peak = peak_lr(result)
    if schedule == plan.CONSTANT:
        return objects.Constant(peak)
    if schedule == plan.ONECYCLE:
        return objects.OneCycle(peak, total)
    import keras

    warmup = plan.cosine_warmup_steps(total)
    return keras.optimizers.schedules.CosineDecay(
        0.0,
        decay_steps=max(1, total - warmup),
        warmup_target=peak,
        warmup_steps=warmup,
    )

"""The user's training plan: how the LR will move over the training run, in closed form.

A plan is a schedule name and a number of optimizer steps. The suggestion is the LR to use under
that plan (for ``"onecycle"`` and ``"cosine"``, the peak LR), and the confirm mode trains its
probes under the same schedule. Every schedule here is a pure function of ``(peak, step, total)``
and matches the framework objects it names exactly:

* ``"constant"``: ``peak`` at every step.
* ``"onecycle"``: ``torch.optim.lr_scheduler.OneCycleLR(max_lr=peak, total_steps=total)`` with its
  defaults (``pct_start=0.3``, cosine annealing, ``div_factor=25``, ``final_div_factor=1e4``,
  two phases), momentum cycling included: the momentum (beta1 for Adam-like optimizers) runs from
  0.95 down to 0.85 while the LR rises and back while it falls (:func:`onecycle_momentum`), and
  OneCycleLR switches it on for an SGD or RMSprop that had none.
* ``"cosine"``: linear warm-up from 0 to ``peak`` over the first ``ceil(0.05 * total)`` steps,
  then cosine decay to 0 at the last step (Hugging Face's ``get_cosine_schedule_with_warmup``
  with ``warmup_ratio=0.05``; Keras's ``CosineDecay(0, total - warmup, warmup_target=peak,
  warmup_steps=warmup)``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lrfinder._io import read_field, read_int, read_object, read_str

CONSTANT = "constant"
ONECYCLE = "onecycle"
COSINE = "cosine"
SCHEDULES: tuple[str, ...] = (CONSTANT, ONECYCLE, COSINE)

#: OneCycleLR's defaults, which the ``"onecycle"`` plan follows.
ONECYCLE_PCT_START = 0.3
ONECYCLE_DIV_FACTOR = 25.0
ONECYCLE_FINAL_DIV_FACTOR = 1e4
ONECYCLE_BASE_MOMENTUM = 0.85
ONECYCLE_MAX_MOMENTUM = 0.95
#: What a one-cycle plan does to an optimizer's momentum, as a trainer records it in its
#: ``info["onecycle_momentum"]``: cycles it, switches it on (it was 0), or leaves it (it has none).
MOMENTUM_CYCLED, MOMENTUM_SWITCHED_ON, MOMENTUM_NONE = "cycled", "switched on", "none"

#: Share of the steps spent on the linear warm-up of the ``"cosine"`` plan.
COSINE_WARMUP = 0.05


def check_schedule(schedule: str) -> str:
    """Return ``schedule`` if it names a plan's schedule, else raise ``ValueError``."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(repr(s) for s in SCHEDULES)}, got {schedule!r}")
    return schedule


#: Most optimizer steps a plan may have: more is a typo, and confirm mode would train for ever.
MAX_TRAIN_STEPS = 10**12


def check_train_steps(train_steps: int | None, *, required: bool = False, what: str = "") -> int | None:
    """Return ``train_steps`` if it is None (and not ``required``) or a positive integer.

    Raises:
        TypeError: Not an integer.
        ValueError: Below 1, or None where ``required`` (``what`` says what needs it).
    """
    if train_steps is None:
        if required:
            raise ValueError(
                f"{what or 'this'} needs train_steps=N, the number of optimizer steps you will "
                "train for (for example train_steps=len(loader) * epochs)"
            )
        return None
    if isinstance(train_steps, bool) or not isinstance(train_steps, (int, np.integer)):
        raise TypeError(f"train_steps must be an integer number of optimizer steps, got {train_steps!r}")
    if train_steps < 1:
        raise ValueError(f"train_steps must be at least 1, got {train_steps}")
    if train_steps > MAX_TRAIN_STEPS:
        raise ValueError(
            f"train_steps must be at most {MAX_TRAIN_STEPS:.0e} (decades of training at a "
            f"millisecond a step), got {train_steps}"
        )
    return int(train_steps)


def make_plan(schedule: str | None, train_steps: int | None) -> Plan | None:
    """The plan ``find_lr`` gets: None when neither is given, else a :class:`Plan` (constant when
    only ``train_steps`` is given).

    >>> make_plan(None, None) is None, make_plan(None, 300)
    (True, Plan(schedule='constant', train_steps=300))
    """
    if schedule is None and train_steps is None:
        return None
    return Plan(CONSTANT if schedule is None else schedule, train_steps)


def cosine_warmup_steps(total: int) -> int:
    """Warm-up steps of the ``"cosine"`` plan: ``ceil(0.05 * total)``.

    >>> cosine_warmup_steps(100), cosine_warmup_steps(101), cosine_warmup_steps(1)
    (5, 6, 1)
    """
    return math.ceil(COSINE_WARMUP * total)


def _cos_anneal(start: float, end: float, fraction: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * fraction) + 1.0)


def lr_at(schedule: str, peak: float, step: int, total: int) -> float:
    """The LR of optimizer step ``step`` (0-based) of ``total`` under ``schedule`` peaking at ``peak``.

    >>> lr_at("constant", 0.1, 7, 10)
    0.1
    >>> round(lr_at("onecycle", 1.0, 0, 100), 12)  # max_lr / div_factor
    0.04
    >>> round(lr_at("onecycle", 1.0, 29, 100), 12)  # the peak, at pct_start * total - 1
    1.0
    >>> round(lr_at("onecycle", 1.0, 99, 100), 12)  # initial_lr / final_div_factor
    4e-06
    >>> [lr_at("cosine", 1.0, s, 100) for s in (0, 1, 5)]  # warm-up from 0, then the peak
    [0.0, 0.2, 1.0]
    >>> lr_at("cosine", 1.0, 100, 100)
    0.0
    """
    check_schedule(schedule)
    if schedule == CONSTANT:
        return float(peak)
    if schedule == ONECYCLE:
        initial = peak / ONECYCLE_DIV_FACTOR
        final = initial / ONECYCLE_FINAL_DIV_FACTOR
        rising, fraction = _onecycle_phase(step, total)
        return _cos_anneal(initial, peak, fraction) if rising else _cos_anneal(peak, final, fraction)
    warmup = cosine_warmup_steps(total)
    if step < warmup:
        return peak * step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _onecycle_phase(step: int, total: int) -> tuple[bool, float]:
    """OneCycleLR's phase of ``step`` (True: rising) and how far into it, from 0 to 1."""
    # OneCycleLR's phase ends: the peak at step pct_start * total - 1, the floor at total - 1.
    peak_step = float(ONECYCLE_PCT_START * total) - 1.0
    if step <= peak_step:
        return True, step / peak_step if peak_step > 0 else 1.0
    span = float(total - 1) - peak_step
    return False, (step - peak_step) / span if span > 0 else 1.0


def onecycle_momentum(step: int, total: int) -> float:
    """The momentum (or beta1) of step ``step`` (0-based) of ``total`` under ``"onecycle"``, as
    ``OneCycleLR``'s defaults set it: from 0.95 down to 0.85 while the LR rises, back up while it
    falls, cosine-annealed in the same phases as the LR.

    >>> [round(onecycle_momentum(s, 100), 12) for s in (0, 29, 99)]
    [0.95, 0.85, 0.95]
    """
    rising, fraction = _onecycle_phase(step, total)
    if rising:
        return _cos_anneal(ONECYCLE_MAX_MOMENTUM, ONECYCLE_BASE_MOMENTUM, fraction)
    return _cos_anneal(ONECYCLE_BASE_MOMENTUM, ONECYCLE_MAX_MOMENTUM, fraction)


class ScheduleLRs(Sequence[float]):
    """The LR of every step of a ``total``-step run under ``schedule`` peaking at ``peak``, each
    computed by :func:`lr_at` when read: a run of any length costs no memory for its schedule.

    >>> lrs = ScheduleLRs("cosine", 2.0, 4)
    >>> len(lrs), [round(lr, 12) for lr in lrs], lrs[1:3], lrs[-1] == lrs[3]
    (4, [0.0, 2.0, 1.5, 0.5], [2.0, 1.5], True)
    """

    def __init__(self, schedule: str, peak: float, total: int) -> None:
        if int(total) < 0:
            raise ValueError(f"a schedule needs a number of steps >= 0, got {total}")
        self.schedule, self.peak, self.total = check_schedule(schedule), float(peak), int(total)

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.total))]
        step = int(index) + (self.total if int(index) < 0 else 0)
        if not 0 <= step < self.total:
            raise IndexError(f"step {index} of a {self.total}-step schedule")
        return lr_at(self.schedule, self.peak, step, self.total)

    def __iter__(self) -> Iterator[float]:
        return (lr_at(self.schedule, self.peak, step, self.total) for step in range(self.total))


def lr_curve(schedule: str, peak: float, total: int) -> np.ndarray:
    """The LR of every step of a ``total``-step run under ``schedule``, shape ``(total,)``: the
    values of :class:`ScheduleLRs`, held in an array.

    >>> lr_curve("cosine", 2.0, 4)
    array([0. , 2. , 1.5, 0.5])
    """
    return np.fromiter(ScheduleLRs(schedule, peak, total), dtype=np.float64, count=total)


@dataclass(frozen=True)
class Plan:
    """How the user will train: a schedule and the number of optimizer steps.

    Attributes:
        schedule: ``"constant"``, ``"onecycle"`` or ``"cosine"`` (see the module's docstring).
        train_steps: Optimizer steps of the training run, or None when not told.
    """

    schedule: str = CONSTANT
    train_steps: int | None = None

    def __post_init__(self) -> None:
        check_schedule(self.schedule)
        check_train_steps(self.train_steps)

    def lr_curve(self, peak: float) -> np.ndarray:
        """The LR of every step of the planned run peaking at ``peak`` (needs ``train_steps``)."""
        total = check_train_steps(self.train_steps, required=True, what="an LR curve of the plan")
        assert total is not None
        return lr_curve(self.schedule, peak, total)

    def to_dict(self) -> dict[str, object]:
        return {"schedule": self.schedule, "train_steps": self.train_steps}

    @classmethod
    def from_dict(cls, data: Any, where: str = "plan") -> Plan:
        """Read back :meth:`to_dict` (from a saved result, where it is the field ``where``).

        Raises:
            ValueError: Not an object, or a field missing or of the wrong kind; the message names
                the field and says what a valid plan looks like.
        """
        names = " | ".join(f'"{name}"' for name in SCHEDULES)
        shape = f'{{"schedule": {names}, "train_steps": an integer >= 1 or null}}'
        fields = read_object(data, where, shape)
        schedule = read_field(fields, "schedule", where, shape=shape)
        schedule = read_str(schedule, f"{where}.schedule", SCHEDULES)
        train_steps = read_field(fields, "train_steps", where, None)
        if train_steps is not None:
            read_int(train_steps, f"{where}.train_steps", 1)
            try:
                check_train_steps(train_steps)  # the bound a plan is built with
            except ValueError as error:
                raise ValueError(f"{where}.{error}") from None
        return cls(schedule, train_steps)

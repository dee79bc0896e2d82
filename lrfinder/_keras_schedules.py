"""Keras ``LearningRateSchedule`` classes for :func:`lrfinder.schedule_objects.keras_schedule`.

This module imports keras at its top: it is itself imported only when a Keras schedule is asked
for. The classes are registered as ``lrfinder>Name``, so a model saved with one loads back in a
process that has imported this module. Every schedule computes in float32 with ``keras.ops`` (so it
runs inside compiled train steps on every backend) and holds its LR after the last planned step.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from lrfinder import plan

__all__ = ["Constant", "OneCycle", "Triangular"]

_FLOAT = "float32"


def _anneal(start: float, end: float, fraction: Any) -> Any:
    """Cosine from ``start`` (fraction 0) to ``end`` (fraction 1), as OneCycleLR anneals."""
    return end + (start - end) / 2.0 * (ops.cos(math.pi * fraction) + 1.0)


@keras.saving.register_keras_serializable(package="lrfinder")
class Constant(keras.optimizers.schedules.LearningRateSchedule):
    """``learning_rate`` at every step.

    Args:
        learning_rate: The LR.
    """

    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = float(learning_rate)

    def __call__(self, step: Any) -> Any:
        del step  # the same at every step
        return ops.convert_to_tensor(self.learning_rate, dtype=_FLOAT)

    def get_config(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate}


@keras.saving.register_keras_serializable(package="lrfinder")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """The LR of torch's ``OneCycleLR(max_lr=peak, total_steps=total_steps)`` with its defaults.

    A cosine rise from ``peak / 25`` to ``peak`` at step ``0.3 * total_steps - 1``, then a cosine
    fall to ``peak / 25 / 1e4`` at step ``total_steps - 1``, held after it (see
    :func:`lrfinder.plan.lr_at`). Only the LR: Keras schedules cannot cycle the momentum.

    Args:
        peak: The highest LR.
        total_steps: Optimizer steps of the run.
    """

    def __init__(self, peak: float, total_steps: int) -> None:
        self.peak = float(peak)
        self.total_steps = int(total_steps)

    def __call__(self, step: Any) -> Any:
        peak = self.peak
        initial = peak / plan.ONECYCLE_DIV_FACTOR
        final = initial / plan.ONECYCLE_FINAL_DIV_FACTOR
        peak_step = plan.ONECYCLE_PCT_START * self.total_steps - 1.0
        last_step = float(self.total_steps - 1)
        step = ops.minimum(ops.cast(step, _FLOAT), last_step)
        rising = _anneal(initial, peak, step / peak_step if peak_step > 0 else 1.0)
        span = last_step - peak_step
        falling = _anneal(peak, final, (step - peak_step) / span if span > 0 else 1.0)
        return ops.cast(ops.where(step <= peak_step, rising, falling), _FLOAT)

    def get_config(self) -> dict[str, Any]:
        return {"peak": self.peak, "total_steps": self.total_steps}


@keras.saving.register_keras_serializable(package="lrfinder")
class Triangular(keras.optimizers.schedules.LearningRateSchedule):
    """Triangular cycles between ``low`` and ``high`` (torch's ``CyclicLR(mode="triangular")``).

    ``low`` at step 0, ``high`` at ``step_size``, ``low`` again at ``2 * step_size``, and so on
    (see :func:`lrfinder.schedule_objects.cyclical_lr_at`).

    Args:
        low: The lowest LR.
        high: The highest LR.
        step_size: Steps of each half cycle.
    """

    def __init__(self, low: float, high: float, step_size: int) -> None:
        self.low = float(low)
        self.high = float(high)
        self.step_size = int(step_size)

    def __call__(self, step: Any) -> Any:
        position = ops.cast(step, _FLOAT) / float(2 * self.step_size)
        x = position + 1.0 - ops.floor(position + 1.0)
        scale = ops.where(x <= 0.5, x / 0.5, (x - 1.0) / -0.5)
        return ops.cast(self.low + (self.high - self.low) * scale, _FLOAT)

    def get_config(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "step_size": self.step_size}

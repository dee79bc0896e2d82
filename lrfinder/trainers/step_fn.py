"""The generic trainer: a plain ``step(lr) -> loss`` callable, for any framework."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from lrfinder.trainers.base import TrainerBase

_NOTHING = object()


class StepFunctionTrainer(TrainerBase):
    """Drives ``step(lr)``, one training step at ``lr`` that returns that batch's loss.

    Args:
        step: ``step(lr: float) -> float``; runs one optimisation step at ``lr`` and returns the
            loss of the batch it trained on (anything ``float()`` accepts).
        snapshot: Optional ``snapshot() -> state``, called once before the sweep.
        restore: Optional ``restore(state)``, called once after it, in every case. Give both or
            neither; without them the caller's own objects are left as the sweep left them.
    """

    backend = "callable"

    def __init__(
        self,
        step: Callable[[float], Any],
        snapshot: Callable[[], Any] | None = None,
        restore: Callable[[Any], None] | None = None,
    ) -> None:
        super().__init__()
        if not callable(step):
            raise TypeError(f"step must be callable as step(lr) -> loss, got {type(step).__name__}")
        if (snapshot is None) != (restore is None):
            raise TypeError(
                "pass both snapshot= and restore= (snapshot() -> state, restore(state)) or neither"
            )
        for name, fn in (("snapshot", snapshot), ("restore", restore)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name}= must be callable, got {type(fn).__name__}")
        self._step = step
        self._snapshot = snapshot
        self._restore = restore
        self._state: Any = _NOTHING
        self.info["step"] = getattr(step, "__qualname__", type(step).__name__)
        self.info["restores_state"] = snapshot is not None

    def snapshot(self) -> None:
        if self._snapshot is not None:
            self._state = self._snapshot()

    def step(self, lr: float) -> Any:
        return self._step(lr)

    def fetch_losses(self, losses: Sequence[Any]) -> list[float]:
        values = []
        for loss in losses:
            try:
                values.append(float(loss))
            except (TypeError, ValueError):
                raise TypeError(
                    "the step function must return the batch loss as a number, got "
                    f"{type(loss).__name__}: {loss!r}"
                ) from None
        return values

    def evaluate(self, data: Any) -> float:
        """Call ``data()``, the user's ``evaluate() -> loss`` (confirm mode's ``confirm_data``)."""
        if not callable(data):
            raise TypeError(
                "with a step function, confirm_data must be a callable evaluate() -> loss that returns "
                f"the mean loss on held-out data at the current state, got {type(data).__name__}"
            )
        value = data()
        try:
            return float(value)
        except (TypeError, ValueError):
            raise TypeError(
                f"confirm_data() must return the loss as a number, got {type(value).__name__}: {value!r}"
            ) from None

    def restore(self) -> None:
        if self._restore is not None and self._state is not _NOTHING:
            state, self._state = self._state, _NOTHING
            self._restore(state)

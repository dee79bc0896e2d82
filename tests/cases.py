"""Backend cases for the contract suite (tests/test_contract.py).

Each case builds a small model with its data and knows how to read, independently of lrfinder,
everything the sweep must restore and the loss of the first batch. A case for a framework that is
not installed is skipped, unless LRFINDER_REQUIRE_BACKENDS=1 (CI), where the skip becomes a
failure so that no backend goes untested silently.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from lrfinder.trainers.base import TrainerBase


def require(module: str) -> Any:
    """Import ``module``, or skip the test (fail under LRFINDER_REQUIRE_BACKENDS=1)."""
    if os.environ.get("LRFINDER_REQUIRE_BACKENDS") == "1":
        return importlib.import_module(module)
    return pytest.importorskip(module)


def changed_keys(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Keys of two states (same keys) whose values differ in dtype, shape or any bit (NaN-safe)."""
    assert before.keys() == after.keys()
    changed = []
    for key in before:
        a, b = np.asarray(before[key]), np.asarray(after[key])
        if a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
            changed.append(key)
    return changed


def assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    """Assert that two states hold the same keys and the same values, bit for bit."""
    assert before.keys() == after.keys()
    for key in before:
        a, b = np.asarray(before[key]), np.asarray(after[key])
        assert a.dtype == b.dtype and a.shape == b.shape, key
        assert a.tobytes() == b.tobytes(), f"{key} changed"  # bit for bit, NaN-safe


@dataclass
class Setup:
    """One model ready for ``find_lr(model, data, **kwargs)``.

    A framework case (one that an lrfinder backend trains) also gives what the data and validation
    contracts need; a ready-made Trainer (the NumPy case) takes no data or options, so leaves them
    None.
    """

    model: Any
    data: Any
    state: Callable[[], dict[str, np.ndarray]]  # every piece of state the sweep must restore
    first_loss: Callable[[], float]  # loss of the first batch at the current state, computed apart
    drawn: Callable[[], int]  # batches drawn from ``data`` so far (not undone by the restore)
    kwargs: dict[str, Any] = field(default_factory=dict)
    # batches the data source reads ahead of the one a step uses (accelerate's loaders read one to
    # know the end): a failing batch surfaces that many steps early, and that many more are drawn
    lookahead: int = 0
    backend: str | None = None  # the lrfinder backend module that trains it
    val_data: Any = None  # a few validation batches, a form the backend takes as val_loader
    # val_loss(n): mean loss over the first n (None: all) validation batches at the current state,
    # in inference mode, computed apart from lrfinder
    val_loss: Callable[[int | None], float] | None = None
    one_shot: Callable[[], Any] | None = None  # the case's batches as a one-shot iterator
    empty: Callable[[], Any] | None = None  # data of the backend's usual kind, with no batches
    no_batches: Callable[[], Any] | None = None  # data without a length that yields nothing


class Boom(RuntimeError):
    """Raised by a case's data on purpose."""


# -- numpy: least squares on a linear model, with momentum -------------------------------------


class LinearRegressionTrainer(TrainerBase):
    """SGD with momentum on mean squared error of ``x @ w`` — a Trainer written in NumPy alone."""

    backend = "numpy"

    def __init__(
        self,
        batches: list[tuple[np.ndarray, np.ndarray]],
        fail_at: int | None,
        fail_with: type[BaseException] | float,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.batches = batches
        self.fail_at, self.fail_with = fail_at, fail_with
        self.w = np.random.default_rng(seed).normal(size=batches[0][0].shape[1])
        self.velocity = np.zeros_like(self.w)
        self.steps_taken = 0
        self.draws = 0  # batches drawn: the data source's count, which no restore undoes
        self._saved: tuple[np.ndarray, np.ndarray, int] | None = None

    @staticmethod
    def batch_loss(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean((x @ w - y) ** 2))

    def snapshot(self) -> None:
        self._saved = (self.w.copy(), self.velocity.copy(), self.steps_taken)

    def step(self, lr: float) -> float:
        x, y = self.batches[self.steps_taken % len(self.batches)]  # cycles short data
        if self.fail_at is not None and self.draws == self.fail_at:  # in any sweep or confirm probe
            if not isinstance(self.fail_with, float):
                raise self.fail_with("data source failed on purpose")
            x = x * self.fail_with  # a poisoned batch: NaN or Inf in the inputs
        self.draws += 1
        loss = self.batch_loss(self.w, x, y)
        grad = 2 * x.T @ (x @ self.w - y) / len(y)
        self.velocity = 0.9 * self.velocity + grad
        self.w = self.w - lr * self.velocity
        self.steps_taken += 1
        return loss

    def evaluate(self, data: list[tuple[np.ndarray, np.ndarray]]) -> float:
        return float(np.mean([self.batch_loss(self.w, x, y) for x, y in data]))

    def restore(self) -> None:
        assert self._saved is not None
        self.w, self.velocity, self.steps_taken = self._saved
        self._saved = None


def numpy_case(
    n_batches: int = 8, fail_at: int | None = None, fail_with: type[BaseException] | float = Boom
) -> Setup:
    rng = np.random.default_rng(1)
    true_w = rng.normal(size=5)
    batches = []
    for _ in range(n_batches + 2):
        x = rng.normal(size=(16, 5))
        batches.append((x, x @ true_w + 0.1 * rng.normal(size=16)))
    batches, held_out = batches[:n_batches], batches[n_batches:]
    trainer = LinearRegressionTrainer(batches, fail_at, fail_with)
    return Setup(
        model=trainer,
        data=None,
        state=lambda: {
            "w": trainer.w.copy(),
            "velocity": trainer.velocity.copy(),
            "steps": np.array(trainer.steps_taken),
        },
        first_loss=lambda: trainer.batch_loss(trainer.w, *batches[0]),
        drawn=lambda: trainer.draws,
        val_data=held_out,  # what trainer.evaluate scores a confirm probe on
    )


#: name -> builder(n_batches, fail_at, fail_with); torch and keras cases register here too.
CASES: dict[str, Callable[..., Setup]] = {"numpy": numpy_case}
#: The cases an lrfinder backend trains (they fill in Setup's data and validation fields).
FRAMEWORK_CASES = ("keras", "lightning", "torch")


def _framework_case(framework: str, module: str) -> Callable[..., Setup]:
    """A builder that skips (or fails under LRFINDER_REQUIRE_BACKENDS=1) without ``framework``."""

    def build(*args: Any, **kwargs: Any) -> Setup:
        require(framework)
        return importlib.import_module(module).case(*args, **kwargs)

    return build


CASES["torch"] = _framework_case("torch", "tests.cases_torch")
CASES["keras"] = _framework_case("keras", "tests.cases_keras")
CASES["lightning"] = _framework_case("lightning.pytorch", "tests.cases_lightning")
CASES["transformers"] = _framework_case("transformers", "tests.cases_hf")

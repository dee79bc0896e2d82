"""Blocks of Keras training steps (lrfinder.trainers._keras_blocks), with a stand-in for the backend."""

from __future__ import annotations

import numpy as np
import pytest

from tests.cases import require

require("keras")

from lrfinder.trainers._keras_blocks import BlockQueue, runs_of_equal_batches, stack_batches  # noqa: E402


def batch(size: int, value: float = 0.0) -> tuple[np.ndarray, np.ndarray, None]:
    return np.full((size, 3), value, "float32"), np.full(size, value, "float32"), None


class Backend:
    """Runs a block by recording it; each step's loss is its LR times its batch's first value."""

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.calls: list[tuple[list[int], list[float]]] = []
        self.interrupt_at = interrupt_at

    def run(self, batches: list, lrs: list[float]) -> np.ndarray:
        if self.interrupt_at is not None and len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt
        self.calls.append(([len(b[0]) for b in batches], list(lrs)))
        return np.array([lr * b[0][0, 0] for b, lr in zip(batches, lrs, strict=True)] + [0.0])


def test_a_block_runs_when_full_and_its_losses_are_read_back_once():
    backend = Backend()
    reads = []
    queue = BlockQueue(3, backend.run, lambda losses: reads.append(1) or losses)
    handles = [queue.add(batch(4, k + 1), lr) for k, lr in enumerate([0.1, 0.2, 0.3, 0.4])]
    assert backend.calls == [([4, 4, 4], [0.1, 0.2, 0.3])]  # the fourth waits in the queue
    assert queue.read(handles[:3]) == pytest.approx([0.1, 0.4, 0.9]) and reads == [1]
    assert queue.read(handles[3:]) == pytest.approx([1.6])  # runs what is queued first
    assert backend.calls[-1] == ([4], [0.4])


def test_batches_of_another_shape_run_apart_in_the_same_block():
    assert runs_of_equal_batches([batch(4), batch(4), batch(2), batch(4)]) == [(0, 2), (2, 3), (3, 4)]
    backend = Backend()
    queue = BlockQueue(4, backend.run, np.asarray)
    handles = [queue.add(b, 1.0) for b in (batch(4, 1), batch(4, 2), batch(2, 3), batch(4, 4))]
    assert [sizes for sizes, _ in backend.calls] == [[4, 4], [2], [4]]
    assert queue.read(handles) == pytest.approx([1, 2, 3, 4])


def test_stacked_batches_are_padded_with_the_last_one():
    x, y, weights = stack_batches([batch(2, 1), batch(2, 2)], 4, np.stack)
    assert x.shape == (4, 2, 3) and y.shape == (4, 2) and weights is None
    assert [float(x[k, 0, 0]) for k in range(4)] == [1, 2, 2, 2]
    nested = ({"a": np.zeros((2, 1)), "b": np.ones((2, 5))}, np.zeros(2), np.ones(2))
    x, y, weights = stack_batches([nested, nested, nested], 3, np.stack)
    assert x["a"].shape == (3, 2, 1) and x["b"].shape == (3, 2, 5) and weights.shape == (3, 2)


def test_an_interrupted_block_is_not_run_again_and_says_so_when_read():
    backend = Backend(interrupt_at=1)
    queue = BlockQueue(2, backend.run, np.asarray)
    first = [queue.add(batch(2, 1), 0.5), queue.add(batch(2, 1), 0.5)]
    lost = queue.add(batch(2, 1), 0.5)
    with pytest.raises(KeyboardInterrupt):
        queue.add(batch(2, 1), 0.5)
    assert queue.read(first) == pytest.approx([0.5, 0.5])
    with pytest.raises(RuntimeError, match="interrupted"):
        queue.read([lost])
    assert len(backend.calls) == 1


def test_block_steps_must_be_positive():
    with pytest.raises(ValueError, match="block_steps must be >= 1"):
        BlockQueue(0, Backend().run, np.asarray)

"""Blocks of training steps for the Keras trainer on TensorFlow (JAX dispatches each step ahead).

A block is up to ``block_steps`` consecutive steps run in one compiled call: their batches stacked
along a new first axis, their learning rates in one vector, their losses returned in one vector and
read back once. The range test then pays the host-side cost of a call (dispatch, argument
conversion, reading the loss back) once per block instead of once per step.

This module knows no framework: the backend gives :class:`BlockQueue` a function that runs a block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from lrfinder.trainers._keras_data import Batch

#: ``run(batches, lrs) -> losses``: runs consecutive steps whose batches have the same shapes and
#: returns their losses as one lazy vector (at least ``len(batches)`` long).
RunBlock = Callable[[list[Batch], list[float]], Any]


class Handle:
    """One queued step: where its loss will be, once its block has run."""

    __slots__ = ("index", "losses")

    def __init__(self) -> None:
        self.losses: Any = None  # the lazy loss vector of the block this step ran in
        self.index = 0


def signature(batch: Batch) -> tuple[Any, ...]:
    """What must agree between batches stacked into one block: structure, shapes and dtypes."""
    parts: list[Any] = []
    for part in batch:
        if part is None:
            parts.append(None)
            continue
        leaves = keras.tree.flatten(part)
        parts.append(
            (
                len(leaves),
                tuple(
                    (tuple(getattr(leaf, "shape", ())), str(getattr(leaf, "dtype", type(leaf))))
                    for leaf in leaves
                ),
            )
        )
    return tuple(parts)


def runs_of_equal_batches(batches: Sequence[Batch]) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of consecutive batches with the same :func:`signature`.

    A pass over arrays whose length is not a multiple of the batch size ends in a shorter batch,
    which cannot be stacked with full ones: it runs apart.
    """
    runs: list[tuple[int, int]] = []
    start = 0
    first = signature(batches[0]) if batches else None
    for index in range(1, len(batches)):
        current = signature(batches[index])
        if current != first:
            runs.append((start, index))
            start, first = index, current
    if batches:
        runs.append((start, len(batches)))
    return runs


def stack_padded(leaves: Sequence[Any], size: int, stack: Callable[[list[Any]], Any]) -> Any:
    """``stack(leaves)`` along a new first axis, padded to ``size`` by repeating the last leaf.

    Blocks always have ``size`` entries, so that a short last block does not compile again; the
    steps past the real ones are never run (the block is told how many are real).
    """
    items = list(leaves)
    items.extend([items[-1]] * (size - len(items)))
    return stack(items)


def stack_batches(batches: Sequence[Batch], size: int, stack: Callable[[list[Any]], Any]) -> Batch:
    """The parts of ``batches`` (of one :func:`signature`) stacked leaf by leaf, padded to ``size``."""
    stacked: list[Any] = []
    for position, part in enumerate(batches[0]):
        if part is None:
            stacked.append(None)
            continue
        columns = [keras.tree.flatten(batch[position]) for batch in batches]
        leaves = [
            stack_padded([column[leaf] for column in columns], size, stack) for leaf in range(len(columns[0]))
        ]
        stacked.append(keras.tree.pack_sequence_as(part, leaves))
    return stacked[0], stacked[1], stacked[2]


class BlockQueue:
    """Queues steps, runs them in blocks, and reads their losses back once per block.

    Args:
        block_steps: Steps per block; a block runs as soon as it is full.
        run: Runs one run of equal batches (see :data:`RunBlock`).
        to_numpy: Reads a lazy loss vector back to host memory.
    """

    def __init__(self, block_steps: int, run: RunBlock, to_numpy: Callable[[Any], np.ndarray]) -> None:
        if block_steps < 1:
            raise ValueError(f"block_steps must be >= 1, got {block_steps}")
        self.block_steps = block_steps
        self._run = run
        self._to_numpy = to_numpy
        self._queue: list[tuple[Batch, float, Handle]] = []

    def add(self, batch: Batch, lr: float) -> Handle:
        """Queue a step; run the block when it is full."""
        handle = Handle()
        self._queue.append((batch, lr, handle))
        if len(self._queue) >= self.block_steps:
            self.flush()
        return handle

    def flush(self) -> None:
        """Run every queued step, in runs of equal batches."""
        queue, self._queue = self._queue, []  # taken first: an interrupted block is not run twice
        batches = [batch for batch, _, _ in queue]
        for start, stop in runs_of_equal_batches(batches):
            losses = self._run(batches[start:stop], [lr for _, lr, _ in queue[start:stop]])
            for index, (_, _, handle) in enumerate(queue[start:stop]):
                handle.losses, handle.index = losses, index

    def read(self, handles: Sequence[Handle]) -> list[float]:
        """The losses of ``handles``, running the queued steps first when some have not run.

        Raises:
            RuntimeError: A handle's step was taken from the queue but never finished (its block
                was interrupted).
        """
        queued = {id(handle) for _, _, handle in self._queue}
        if any(handle.losses is None and id(handle) in queued for handle in handles):
            self.flush()
        values: list[float] = []
        read: dict[int, np.ndarray] = {}
        for handle in handles:
            if handle.losses is None:
                raise RuntimeError("this step's block did not finish (it was interrupted)")
            key = id(handle.losses)
            if key not in read:
                read[key] = np.asarray(self._to_numpy(handle.losses), dtype=np.float64)
            values.append(float(read[key][handle.index]))
        return values

    def clear(self) -> None:
        """Drop queued steps that never ran (the sweep ended without reading them)."""
        self._queue = []

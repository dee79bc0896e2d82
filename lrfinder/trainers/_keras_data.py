"""Batches for the Keras trainer: ``(x, y)`` arrays, a ``keras.utils.PyDataset``, a ``tf.data.Dataset``
or any other re-iterable of batches.

Every source hands out batches as ``(x, y, sample_weight)`` (``y`` and ``sample_weight`` may be None):
arrays are sliced in a new random order each pass, as ``fit`` does (or in order when not shuffled),
a PyDataset is indexed 0, 1, 2..., an iterable is iterated. Training cycles: a source that runs out
starts again from its first batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np

#: ``compute_loss(x, y, y_pred, sample_weight, training)``: the model's own loss, as the steps call it.
LossFn = Callable[[Any, Any, Any, Any, bool], Any]

#: Keras's own default when ``fit`` gets arrays without a batch size.
DEFAULT_BATCH_SIZE = 32

Batch = tuple[Any, Any, Any]


def _has_shape(value: Any) -> bool:
    shape = getattr(value, "shape", None)
    try:
        return shape is not None and len(shape) >= 1
    except TypeError:  # an unknown rank
        return False


def _first_dim(value: Any) -> int:
    return int(value.shape[0])


def batch_length(x: Any) -> int:
    """Samples in a batch's inputs ``x`` (one array or a structure of them): its first leaf's first dim."""
    return _first_dim(next(leaf for leaf in keras.tree.flatten(x) if leaf is not None))


def _describe(data: Any) -> str:
    return f"{type(data).__module__}.{type(data).__qualname__}"


class BatchSource:
    """Batches from one kind of data.

    Attributes:
        kind: What the data is, for messages and ``trainer.info``.
        length: Batches in one pass over the data; None when unknown or infinite.
    """

    kind: str = "batches"
    length: int | None = None

    def __init__(self) -> None:
        self._position = 0

    def start(self) -> None:
        """Begin the sweep's reading at the first batch of a pass."""
        self._position = 0

    def batch(self, index: int) -> Batch:
        """Batch ``index`` of a pass (sources that can index)."""
        raise NotImplementedError

    def next_batch(self) -> Batch:
        """The next training batch, starting again from the first one when the data runs out."""
        assert self.length is not None
        index = self._position % self.length
        self._position += 1
        return self.batch(index)

    def first_batches(self, count: int) -> Iterator[Batch]:
        """The first ``count`` batches of a pass (validation: the same batches every time)."""
        for index in range(count):
            yield self.batch(index)

    def peek(self) -> Batch:
        """The first batch, without moving the training position."""
        return self.batch(0)


class ArrayBatches(BatchSource):
    """Batches of ``(x, y)`` or ``(x, y, sample_weight)`` arrays, shuffled each pass or in order.

    ``x`` may be one array or a list/dict of arrays (several inputs), as for ``Model.fit``; the last
    batch of a pass is smaller when the number of samples is not a multiple of ``batch_size``.

    Shuffled, each pass draws a permutation of the samples, as ``fit(shuffle=True)`` does, from a
    copy of NumPy's global random state taken by :meth:`start`: the order follows the user's seed
    (``keras.utils.set_random_seed``, ``np.random.seed``) and the global state is left untouched.
    Training batches only; :meth:`batch` (validation, peeking) always reads in order.
    """

    kind = "arrays"

    def __init__(
        self, arrays: tuple[Any, ...], batch_size: int, name: str = "data", shuffle: bool = False
    ) -> None:
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        leaves = [leaf for leaf in keras.tree.flatten(arrays) if leaf is not None]
        sizes = {_first_dim(leaf) for leaf in leaves}
        if len(sizes) != 1:
            shapes = [tuple(leaf.shape) for leaf in leaves]
            raise ValueError(
                f"{name}: all arrays of (x, y[, sample_weight]) must have the same number of samples "
                f"(first dimension), got shapes {shapes}"
            )
        self.samples = sizes.pop()
        if self.samples == 0:
            raise ValueError(f"{name} is empty: the arrays hold 0 samples")
        self.arrays = arrays
        self.batch_size = batch_size
        self.length = math.ceil(self.samples / batch_size)
        self.shuffle = shuffle
        self._flat = all(a is None or hasattr(a, "shape") for a in arrays)
        self._random: np.random.RandomState | None = None
        self._order: np.ndarray | None = None

    def start(self) -> None:
        super().start()
        if self.shuffle:
            self._random = np.random.RandomState()
            self._random.set_state(np.random.get_state())  # a copy: the global state does not move

    def _take(self, rows: Any) -> Batch:
        if self._flat:  # plain arrays: skip the tree walk, a sizeable part of a small model's step
            parts = tuple(None if a is None else a[rows] for a in self.arrays)
            return parts + (None,) * (3 - len(parts))  # type: ignore[return-value]
        parts = keras.tree.map_structure(lambda a: None if a is None else a[rows], self.arrays)
        return keras.utils.unpack_x_y_sample_weight(parts)

    def batch(self, index: int) -> Batch:
        start = index * self.batch_size
        return self._take(slice(start, min(start + self.batch_size, self.samples)))

    def next_batch(self) -> Batch:
        if not self.shuffle:
            return super().next_batch()
        assert self.length is not None
        index = self._position % self.length
        if index == 0 or self._order is None:
            if self._random is None:
                self.start()
            assert self._random is not None
            self._order = self._random.permutation(self.samples)
        self._position += 1
        start = index * self.batch_size
        return self._take(self._order[start : start + self.batch_size])


class PyDatasetBatches(BatchSource):
    """``dataset[0]``, ``dataset[1]``... of a ``keras.utils.PyDataset``, read in this process.

    Its workers/multiprocessing settings are not used, and ``on_epoch_end`` is not called between
    passes, so that the sweep changes nothing in the dataset object.
    """

    kind = "PyDataset"

    def __init__(self, dataset: Any, name: str = "data") -> None:
        super().__init__()
        self.dataset = dataset
        length = dataset.num_batches
        if length is not None and int(length) == 0:
            raise ValueError(f"{name} is empty: the PyDataset has 0 batches")
        self.length = None if length is None else int(length)

    def batch(self, index: int) -> Batch:
        return keras.utils.unpack_x_y_sample_weight(self.dataset[index])

    def next_batch(self) -> Batch:
        if self.length is not None:
            return super().next_batch()
        self._position += 1  # an infinite PyDataset: never wraps
        return self.batch(self._position - 1)


class IterableBatches(BatchSource):
    """A ``tf.data.Dataset`` or any iterable of batches, iterated again when it runs out.

    A one-shot iterator (a generator) cannot start again: it serves as many steps as it has batches,
    and validation, which reads the same batches at every step, needs a re-iterable.
    """

    def __init__(self, data: Any, name: str = "data") -> None:
        super().__init__()
        self.data = data
        self.name = name
        module = type(data).__module__
        self.kind = "tf.data.Dataset" if module.startswith("tensorflow") else type(data).__name__
        self.one_shot = iter(data) is data
        try:
            self.length = len(data)
        except TypeError:  # an infinite or unknown-length dataset, a generator
            self.length = None
        if self.length == 0:
            raise ValueError(f"{name} is empty: the {self.kind} yields no batches")
        self._iterator: Iterator[Any] | None = None

    def _fresh(self) -> Iterator[Any]:
        return iter(self.data)

    def start(self) -> None:
        super().start()
        if not self.one_shot:  # a fresh pass: each confirm probe sees the same batches
            self._iterator = None

    def next_batch(self) -> Batch:
        if self._iterator is None:
            self._iterator = self._fresh()
        try:
            item = next(self._iterator)
        except StopIteration:
            if self.one_shot:
                raise ValueError(
                    f"{self.name} ran out after {self._position} batches and, being a one-shot "
                    "iterator, cannot start again: pass a re-iterable (a tf.data.Dataset, a "
                    "keras.utils.PyDataset, a list of batches) or lower num_iter"
                ) from None
            if self._position == 0:
                raise ValueError(f"{self.name} is empty: the {self.kind} yields no batches") from None
            self._iterator = self._fresh()
            try:
                item = next(self._iterator)
            except StopIteration:
                raise ValueError(
                    f"{self.name} yielded nothing when iterated again after {self._position} batches"
                ) from None
        self._position += 1
        return keras.utils.unpack_x_y_sample_weight(item)

    def first_batches(self, count: int) -> Iterator[Batch]:
        iterator = self._fresh()
        for _ in range(count):
            try:
                item = next(iterator)
            except StopIteration:
                return
            yield keras.utils.unpack_x_y_sample_weight(item)

    def peek(self) -> Batch:
        if self.one_shot:
            raise ValueError("cannot look ahead in a one-shot iterator")
        for batch in self.first_batches(1):
            return batch
        raise ValueError(f"{self.name} is empty: the {self.kind} yields no batches")


def is_arrays(data: Any) -> bool:
    """Whether ``data`` is ``(x, y)`` or ``(x, y, sample_weight)`` arrays, as ``Model.fit`` takes."""
    if not isinstance(data, tuple) or not 1 <= len(data) <= 3:
        return False
    leaves = keras.tree.flatten(data[0])
    return bool(leaves) and all(_has_shape(leaf) for leaf in leaves)


def make_source(data: Any, batch_size: int | None, name: str = "data", shuffle: bool = False) -> BatchSource:
    """The :class:`BatchSource` for ``data``; ``shuffle`` applies to arrays only.

    Raises:
        TypeError: ``data`` is of no supported kind, or ``batch_size`` is given for data that is
            already batched.
        ValueError: ``data`` is empty or its arrays disagree in length.
    """
    if data is None:
        raise TypeError(
            f"{name} is missing: pass a tf.data.Dataset, (x, y) arrays with batch_size=, or a "
            "keras.utils.PyDataset"
        )
    if is_arrays(data):
        return ArrayBatches(data, DEFAULT_BATCH_SIZE if batch_size is None else batch_size, name, shuffle)
    if batch_size is not None:
        raise TypeError(
            f"batch_size= applies to (x, y) arrays only; {name} is a {_describe(data)}, which "
            "already yields batches"
        )
    if isinstance(data, keras.utils.PyDataset):
        return PyDatasetBatches(data, name)
    if _has_shape(data) or (isinstance(data, list) and data and all(_has_shape(item) for item in data)):
        raise TypeError(
            f"{name} is a single array or a list of arrays; pass a tuple (x, y) or "
            "(x, y, sample_weight) with batch_size=, or a tf.data.Dataset of (x, y) batches"
        )
    if isinstance(data, (str, bytes, dict)) or not hasattr(data, "__iter__"):
        raise TypeError(
            f"cannot read batches from {name} of type {_describe(data)}: pass a tf.data.Dataset, "
            "(x, y) arrays with batch_size=, a keras.utils.PyDataset, or an iterable of (x, y) batches"
        )
    return IterableBatches(data, name)

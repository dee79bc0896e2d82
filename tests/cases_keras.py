"""The Keras case of the contract suite (see tests/cases.py): a small classifier with
BatchNormalization, Adam already part-way through training, and a PyDataset of batches."""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.cases import Boom, Setup, require


def make_model(keras: Any, seed: int = 0, inputs: int = 6, classes: int = 3, dropout: float = 0.0) -> Any:
    """Dense -> BatchNormalization -> ReLU [-> Dropout] -> Dense logits, compiled with Adam."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((inputs,)),
            keras.layers.Dense(16),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            *([keras.layers.Dropout(dropout)] if dropout else []),
            keras.layers.Dense(classes),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def make_batches(
    n_batches: int, size: int = 16, inputs: int = 6, classes: int = 3, seed: int = 1
) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        (rng.normal(size=(size, inputs)).astype("float32"), rng.integers(0, classes, size))
        for _ in range(n_batches)
    ]


def state_of(model: Any) -> dict[str, np.ndarray]:
    """Every model variable (weights, BN moving statistics, seed states) and optimizer variable."""
    state = {f"model/{i}/{v.path}": np.array(v.numpy(), copy=True) for i, v in enumerate(model.variables)}
    for i, v in enumerate(model.optimizer.variables):
        state[f"optimizer/{i}/{v.path}"] = np.array(v.numpy(), copy=True)
    return state


def batch_loss(keras: Any, model: Any, x: np.ndarray, y: np.ndarray, training: bool = True) -> float:
    """The loss of one batch at the model's current state, without changing any state."""
    y_pred, _ = model.stateless_call(
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        x,
        training=training,
    )
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, y_pred)
    return float(keras.ops.convert_to_numpy(loss))


def case(
    n_batches: int = 8,
    fail_at: int | None = None,
    fail_with: type[BaseException] | float = Boom,
    dropout: float = 0.0,
) -> Setup:
    """The contract case; ``dropout`` adds a Dropout layer (then ``first_loss`` does not apply)."""
    keras = require("keras")

    class Batches(keras.utils.PyDataset):
        """The batches in order; the ``fail_at``-th read (0-based) raises ``fail_with``."""

        def __init__(self, batches: list[tuple[np.ndarray, np.ndarray]]) -> None:
            super().__init__()
            self.batches = batches
            self.reads = 0

        def __len__(self) -> int:
            return len(self.batches)

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            if fail_at is not None and self.reads == fail_at:
                if isinstance(fail_with, float):  # a poisoned batch: NaN or Inf in the inputs
                    self.reads += 1
                    x, y = self.batches[index]
                    return x * fail_with, y
                raise fail_with("data source failed on purpose")
            self.reads += 1
            return self.batches[index]

    model = make_model(keras, dropout=dropout)
    batches = make_batches(n_batches)
    val_batches = make_batches(2, seed=7)
    # One real step first, so that Adam's moments, its iteration count and the BN statistics hold
    # values that a sloppy restore would get wrong.
    model.train_on_batch(*make_batches(1, seed=99)[0])
    data = Batches(batches)

    def val_loss(count: int | None) -> float:
        losses = [batch_loss(keras, model, x, y, training=False) for x, y in val_batches[:count]]
        return sum(losses) / len(losses)

    def no_batches() -> Any:
        tf = require("tensorflow")
        return tf.data.Dataset.range(10).filter(lambda i: i > 99)

    return Setup(
        model=model,
        data=data,
        state=lambda: state_of(model),
        first_loss=lambda: batch_loss(keras, model, *batches[0]),
        drawn=lambda: data.reads,
        backend="lrfinder.trainers.keras_trainer",
        val_data=val_batches,
        val_loss=val_loss,
        one_shot=lambda: (b for b in batches),
        empty=lambda: Batches([]),
        no_batches=no_batches,
    )

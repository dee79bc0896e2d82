"""Keras 3: find a learning rate for a small MLP on scikit-learn's handwritten digits.

    lrfinder find examples/keras_digits.py      # range test only: summary and lr_finder.png
    python examples/keras_digits.py             # range test, then trains at the suggestion

``lrfinder find`` imports this file and calls ``lrfinder_setup()``, which builds and compiles the
model and returns it with its training arrays, without training anything; the ``__main__`` block
below does the training. The range test uses the optimizer and loss the model was compiled with.
The digits (1,797 8x8 images) ship with scikit-learn: nothing is downloaded.
"""

from __future__ import annotations

import sys

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import lrfinder

SEED = 0
BATCH_SIZE = 64


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``x_train, x_val, y_train, y_val``: pixels scaled to [0, 1], a fixed stratified 75/25 split."""
    x, y = load_digits(return_X_y=True)
    return train_test_split(
        (x / 16.0).astype(np.float32), y.astype(np.int64), test_size=0.25, random_state=SEED, stratify=y
    )


def lrfinder_setup() -> dict:
    """What ``lrfinder find`` sweeps: a compiled model and its training arrays."""
    keras.utils.set_random_seed(SEED)
    x_train, _, y_train, _ = load_data()
    model = keras.Sequential(
        [
            keras.Input(shape=(64,)),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    # The range test sets the learning rate itself; the value given here is restored after.
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return {"model": model, "data": (x_train, y_train), "batch_size": BATCH_SIZE}


def main(plot: str = "lr_finder_keras_digits.png", epochs: int = 8) -> float:
    setup = lrfinder_setup()
    model, data = setup["model"], setup["data"]
    result = lrfinder.find_lr(model, data, batch_size=BATCH_SIZE, start_lr=1e-5, end_lr=10.0)
    result.save_plot(plot)
    lr = result.suggestion
    if lr is None:
        sys.exit(f"no suggestion: {result.suggestion_reason}")
    print(f"suggested lr: {lr:.3g} ({result.rule}); useful range: {result.lr_range}; plot: {plot}")
    for diagnostic in result.diagnostics:
        print(f"warning: {diagnostic.message}")

    # The model's weights and optimizer are as they were before the range test: train at the
    # suggestion.
    model.optimizer.learning_rate = lr
    model.fit(*data, batch_size=BATCH_SIZE, epochs=epochs, shuffle=True, verbose=0)
    _, x_val, _, y_val = load_data()
    _, score = model.evaluate(x_val, y_val, verbose=0)
    print(f"validation accuracy after {epochs} epochs at lr={lr:.3g}: {score:.3f}")
    return float(score)


if __name__ == "__main__":
    main(*sys.argv[1:2])

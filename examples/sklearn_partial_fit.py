"""scikit-learn: find the step size of an ``SGDClassifier`` trained with ``partial_fit``.

    lrfinder find examples/sklearn_partial_fit.py    # range test only: summary and lr_finder.png
    python examples/sklearn_partial_fit.py           # range test, then trains at the suggestion

Any estimator with ``partial_fit`` fits the step-function shape: ``step(lr)`` sets the step size
(``eta0`` with ``learning_rate="constant"``), records the loss of one mini-batch *before* training
on it, then trains on it; ``snapshot``/``restore`` copy the estimator's fitted state, so the range
test hands it back unchanged. Data: scikit-learn's digits, standardised.
"""

from __future__ import annotations

import copy
import sys

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import lrfinder

SEED = 0
BATCH_SIZE = 64


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardised pixels, a fixed stratified 75/25 split."""
    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, random_state=SEED, stratify=y)
    scaler = StandardScaler().fit(x_train)
    return scaler.transform(x_train), scaler.transform(x_val), y_train, y_val


def lrfinder_setup() -> dict:
    """``step(lr) -> loss`` over mini-batches of the training set, with ``snapshot``/``restore``."""
    x, _, y, _ = load_data()
    classes = np.unique(y)
    rng = np.random.default_rng(SEED)
    model = SGDClassifier(
        loss="log_loss", learning_rate="constant", eta0=1e-12, alpha=1e-4, random_state=SEED
    )
    # partial_fit needs to see the classes once; at eta0=1e-12 the weights stay (almost) zero.
    model.partial_fit(x[:BATCH_SIZE], y[:BATCH_SIZE], classes=classes)

    def step(lr: float) -> float:
        idx = rng.integers(len(x), size=BATCH_SIZE)
        xb, yb = x[idx], y[idx]
        loss = log_loss(yb, model.predict_proba(xb), labels=classes)  # before this batch's update
        model.set_params(eta0=lr)
        model.partial_fit(xb, yb)
        return float(loss)

    def snapshot() -> tuple[dict, dict]:
        return copy.deepcopy(model.__dict__), copy.deepcopy(rng.bit_generator.state)

    def restore(state: tuple[dict, dict]) -> None:
        model.__dict__.clear()
        model.__dict__.update(copy.deepcopy(state[0]))
        rng.bit_generator.state = state[1]

    return {"step": step, "snapshot": snapshot, "restore": restore, "estimator": model}


def main(plot: str = "lr_finder_sklearn.png", epochs: int = 5) -> float:
    setup = lrfinder_setup()
    model = setup["estimator"]
    result = lrfinder.find_lr(
        setup["step"], snapshot=setup["snapshot"], restore=setup["restore"], start_lr=1e-6, end_lr=100.0
    )
    result.save_plot(plot)
    lr = result.suggestion
    if lr is None:
        sys.exit(f"no suggestion: {result.suggestion_reason}")
    print(f"suggested lr: {lr:.3g} ({result.rule}); stopped: {result.stop_reason}; plot: {plot}")

    # The estimator is as it was: train on whole passes at the suggested step size.
    x_train, x_val, y_train, y_val = load_data()
    model.set_params(eta0=lr)
    order = np.random.default_rng(SEED)
    for _ in range(epochs):
        idx = order.permutation(len(x_train))
        for start in range(0, len(idx), BATCH_SIZE):
            batch = idx[start : start + BATCH_SIZE]
            model.partial_fit(x_train[batch], y_train[batch])
    score = float(model.score(x_val, y_val))
    print(f"validation accuracy after {epochs} epochs at lr={lr:.3g}: {score:.3f}")
    return score


if __name__ == "__main__":
    main(*sys.argv[1:2])

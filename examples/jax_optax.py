"""JAX and optax: find a learning rate through a step function.

    lrfinder find examples/jax_optax.py     # range test only: summary and lr_finder.png
    python examples/jax_optax.py            # range test, then trains at the suggestion

The optimizer is wrapped in ``optax.inject_hyperparams`` so that its learning rate lives in the
optimizer state, where ``step(lr)`` sets it before each jitted update (no recompilation: it is an
array, not a constant). JAX arrays are immutable, so the snapshot is just the references to the
parameters, the optimizer state and the batch RNG; ``restore`` puts them back. Data:
scikit-learn's digits.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import lrfinder

SEED = 0
BATCH_SIZE = 64


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixels scaled to [0, 1], a fixed stratified 75/25 split."""
    x, y = load_digits(return_X_y=True)
    return train_test_split((x / 16.0).astype(np.float32), y, test_size=0.25, random_state=SEED, stratify=y)


def init_mlp(key: jax.Array, sizes: tuple[int, ...] = (64, 128, 10)) -> list[dict[str, jax.Array]]:
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"w": jax.random.normal(k, (m, n)) * jnp.sqrt(2.0 / m), "b": jnp.zeros(n)}
        for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def logits_of(params: list[dict[str, jax.Array]], x: jax.Array) -> jax.Array:
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def loss_of(params: list[dict[str, jax.Array]], x: jax.Array, y: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits_of(params, x), y).mean()


def lrfinder_setup() -> dict:
    """``step(lr) -> loss`` with ``snapshot``/``restore`` over the MLP, its optimizer and the batch RNG."""
    x_train, _, y_train, _ = load_data()
    x_train, y_train = jnp.asarray(x_train), jnp.asarray(y_train)
    optimizer = optax.inject_hyperparams(optax.sgd)(learning_rate=0.01, momentum=0.9)
    params = init_mlp(jax.random.key(SEED))
    state = {"params": params, "opt": optimizer.init(params), "key": jax.random.key(SEED + 1)}

    @jax.jit
    def update(params, opt_state, key, lr):
        idx = jax.random.randint(key, (BATCH_SIZE,), 0, len(x_train))
        loss, grads = jax.value_and_grad(loss_of)(params, x_train[idx], y_train[idx])
        opt_state.hyperparams["learning_rate"] = lr
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    def step(lr: float) -> float:
        state["key"], key = jax.random.split(state["key"])
        state["params"], state["opt"], loss = update(state["params"], state["opt"], key, lr)
        return float(loss)  # the loss of this batch, before its update

    def snapshot() -> dict:
        return dict(state)  # immutable arrays: references are a complete copy

    def restore(saved: dict) -> None:
        state.update(saved)

    return {"step": step, "snapshot": snapshot, "restore": restore, "state": state}


def main(plot: str = "lr_finder_jax.png", steps: int = 300) -> float:
    setup = lrfinder_setup()
    step, state = setup["step"], setup["state"]
    result = lrfinder.find_lr(
        step, snapshot=setup["snapshot"], restore=setup["restore"], start_lr=1e-5, end_lr=10.0
    )
    result.save_plot(plot)
    lr = result.suggestion
    if lr is None:
        sys.exit(f"no suggestion: {result.suggestion_reason}")
    print(f"suggested lr: {lr:.3g} ({result.rule}); stopped: {result.stop_reason}; plot: {plot}")

    for _ in range(steps):  # restore() put everything back: train from the start at the suggestion
        step(lr)
    _, x_val, _, y_val = load_data()
    score = float(jnp.mean(logits_of(state["params"], jnp.asarray(x_val)).argmax(axis=1) == y_val))
    print(f"validation accuracy after {steps} steps at lr={lr:.3g}: {score:.3f}")
    return score


if __name__ == "__main__":
    main(*sys.argv[1:2])

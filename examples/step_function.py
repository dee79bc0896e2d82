"""A range test through a plain step function: softmax regression in NumPy on generated data.

Any framework fits this shape (JAX, scikit-learn's partial_fit, hand-written loops): write
``step(lr) -> loss`` that trains on one mini-batch at ``lr``, plus ``snapshot``/``restore`` so the
model is handed back unchanged.

    lrfinder find examples/step_function.py     # range test only: summary and lr_finder.png
    python examples/step_function.py            # range test, then trains at the suggestion
"""

from __future__ import annotations

import sys

import numpy as np

import lrfinder

BATCH_SIZE = 64


def make_problem(seed: int = 0, classes: int = 5, features: int = 20, samples: int = 2000):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(classes, features))
    y = rng.integers(classes, size=samples)
    x = centres[y] + rng.normal(size=(samples, features))
    return x, y


def softmax_loss_and_grad(params: dict, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of ``x @ w + b`` and its gradient with respect to the logits."""
    logits = x @ params["w"] + params["b"]
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(probs[np.arange(len(y)), y] + 1e-12))
    probs[np.arange(len(y)), y] -= 1.0
    return float(loss), probs / len(y)


def lrfinder_setup() -> dict:
    """What ``lrfinder find`` sweeps: ``step(lr) -> loss`` with ``snapshot`` and ``restore``."""
    x, y = make_problem()
    x_train, y_train = x[:1500], y[:1500]
    rng = np.random.default_rng(1)
    classes = int(y.max()) + 1
    params = {"w": np.zeros((x.shape[1], classes)), "b": np.zeros(classes)}

    def step(lr: float) -> float:
        idx = rng.integers(len(x_train), size=BATCH_SIZE)
        xb, yb = x_train[idx], y_train[idx]
        loss, grad = softmax_loss_and_grad(params, xb, yb)
        params["w"] -= lr * xb.T @ grad
        params["b"] -= lr * grad.sum(axis=0)
        return loss

    def snapshot() -> tuple[dict, dict]:
        return {k: v.copy() for k, v in params.items()}, rng.bit_generator.state

    def restore(state: tuple[dict, dict]) -> None:
        params.update(state[0])
        rng.bit_generator.state = state[1]

    return {"step": step, "snapshot": snapshot, "restore": restore, "params": params}


def main(out: str = "lr_finder_step_function.png", steps: int = 300) -> lrfinder.LRFinderResult:
    setup = lrfinder_setup()
    step, params = setup["step"], setup["params"]
    result = lrfinder.find_lr(
        step, snapshot=setup["snapshot"], restore=setup["restore"], start_lr=1e-5, end_lr=1e4
    )
    result.save_plot(out)
    lr = result.suggestion
    if lr is None:
        sys.exit(f"no suggestion: {result.suggestion_reason}")
    print(f"suggested lr: {lr:.3g} ({result.rule}); stopped: {result.stop_reason}; plot: {out}")

    # restore() put the weights back: train from scratch at the suggestion.
    for _ in range(steps):
        step(lr)
    x, y = make_problem()
    logits = x[1500:] @ params["w"] + params["b"]
    score = float(np.mean(logits.argmax(axis=1) == y[1500:]))
    print(f"validation accuracy after {steps} steps at lr={lr:.3g}: {score:.3f}")
    return result


if __name__ == "__main__":
    main(*sys.argv[1:2])

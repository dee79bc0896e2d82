"""A range test through a plain step function: softmax regression in NumPy on generated data.

Any framework fits this shape (JAX, scikit-learn's partial_fit, hand-written loops): write
``step(lr) -> loss`` that trains on one mini-batch at ``lr``, plus ``snapshot``/``restore`` so the
model is handed back unchanged.

    python examples/step_function.py            # writes lr_finder_step_function.png
"""

from __future__ import annotations

import sys

import numpy as np

import lrfinder


def make_problem(seed: int = 0, classes: int = 5, features: int = 20, samples: int = 2000):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(classes, features))
    y = rng.integers(classes, size=samples)
    x = centres[y] + rng.normal(size=(samples, features))
    return x, y


def main(out: str = "lr_finder_step_function.png") -> lrfinder.LRFinderResult:
    x, y = make_problem()
    rng = np.random.default_rng(1)
    params = {"w": np.zeros((x.shape[1], int(y.max()) + 1)), "b": np.zeros(int(y.max()) + 1)}

    def step(lr: float) -> float:
        idx = rng.integers(len(x), size=64)
        xb, yb = x[idx], y[idx]
        logits = xb @ params["w"] + params["b"]
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        loss = -np.mean(np.log(probs[np.arange(len(yb)), yb] + 1e-12))
        probs[np.arange(len(yb)), yb] -= 1.0
        params["w"] -= lr * xb.T @ probs / len(yb)
        params["b"] -= lr * probs.mean(axis=0)
        return float(loss)

    result = lrfinder.find_lr(
        step,
        snapshot=lambda: ({k: v.copy() for k, v in params.items()}, rng.bit_generator.state),
        restore=lambda s: (params.update(s[0]), setattr(rng.bit_generator, "state", s[1])),
        start_lr=1e-5,
        end_lr=1e4,
    )
    result.save_plot(out)
    print(f"suggested lr: {result.suggestion:.3g} ({result.rule}); stopped: {result.stop_reason}; "
          f"plot: {out}")
    return result


if __name__ == "__main__":
    main(*sys.argv[1:])

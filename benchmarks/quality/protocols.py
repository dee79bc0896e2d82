"""Range-test protocols of the suggestion-quality benchmark: lrfinder's engine and three baselines.

* ``lrfinder``: the library's own sweep engine (:func:`lrfinder.find_lr` with a step function). The
  curve is recorded once per seed with no rising-loss stop (a non-finite loss still stops it); every
  smoothing and divergence setting is then replayed on the raw losses with the engine's own
  :class:`~lrfinder.sweep.LossSmoother`, which gives exactly what a sweep with those settings records,
  since the training before the stop does not depend on where the stop falls.
* ``torch_lr_finder``: the installed package, as its README runs it (optimizer at 1e-7,
  ``range_test(end_lr=100, num_iter=100)``), suggestion from ``plot(suggest_lr=True)`` on an Agg canvas.
* ``lightning`` and ``fastai``: rebuilt from their documented protocols (ladder, smoothing, stop rule,
  trimming and suggestion rule); see each function's docstring. No code of theirs is used.
"""

from __future__ import annotations

import contextlib
import io
import math
from typing import Any

import numpy as np
import torch

import lrfinder
from benchmarks.quality.tasks import Task, batches, build, step_function
from lrfinder.sweep import LossSmoother

Curve = dict[str, Any]


def record_lrfinder(task: Task, seed: int, start_lr: float, end_lr: float, num_iter: int) -> Curve:
    """The raw curve of one lrfinder sweep (exp ladder), run through :func:`lrfinder.find_lr`."""
    result = lrfinder.find_lr(
        step_function(task, seed),
        start_lr=start_lr,
        end_lr=end_lr,
        num_iter=num_iter,
        smooth=0.0,
        diverge_threshold=None,
        progress=False,
    )
    return {"lrs": result.lrs.tolist(), "losses": result.losses.tolist()}


def replay(
    curve: Curve, smooth: float, diverge_threshold: float | None, diverge_warmup: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(lrs, losses, smoothed)`` that a sweep with these settings records on this raw curve.

    Mirrors the loop of :func:`lrfinder.sweep.run_sweep`: the step that trips a stop is recorded.
    """
    smoother = LossSmoother(smooth)
    smoothed: list[float] = []
    lrs, raw = curve["lrs"], curve["losses"]
    for step, loss in enumerate(raw):
        value = smoother.update(loss) if math.isfinite(loss) else math.nan
        smoothed.append(value)
        if not math.isfinite(loss):
            break
        if (
            diverge_threshold is not None
            and step >= diverge_warmup
            and smoother.has_diverged(loss, value, diverge_threshold)
        ):
            break
    n = len(smoothed)
    return np.asarray(lrs[:n]), np.asarray(raw[:n]), np.asarray(smoothed)


def _run_ladder(task: Task, seed: int, ladder: np.ndarray, should_stop) -> list[float]:
    """Train one batch per LR of ``ladder``; ``should_stop(i, loss)`` ends it after that step."""
    step = step_function(task, seed)
    losses: list[float] = []
    for i, lr in enumerate(ladder):
        loss = step(float(lr))
        losses.append(loss)
        if not math.isfinite(loss) or should_stop(i, loss):
            break
    return losses


def fastai_curve(task: Task, seed: int) -> Curve:
    """fastai ``Learner.lr_find()`` defaults, rebuilt.

    Ladder ``1e-7 * (10 / 1e-7) ** (i / 100)`` for i = 0..99; recorded loss is the bias-corrected
    moving average with beta 0.98; best updated first, then stop once the average passes 4x the best
    (that step is recorded). A NaN loss ends the usable curve (fastai cuts at the first NaN).
    """
    ladder = 1e-7 * (10.0 / 1e-7) ** (np.arange(100) / 100)
    state = {"avg": 0.0, "best": math.inf, "smoothed": []}

    def stop(i: int, loss: float) -> bool:
        state["avg"] = 0.98 * state["avg"] + 0.02 * loss
        value = state["avg"] / (1 - 0.98 ** (i + 1))
        state["smoothed"].append(value)
        state["best"] = min(state["best"], value)
        return value > 4 * state["best"]

    raw = _run_ladder(task, seed, ladder, stop)
    smoothed = state["smoothed"] + [math.nan] * (len(raw) - len(state["smoothed"]))
    return {"lrs": ladder[: len(raw)].tolist(), "losses": raw, "smoothed": smoothed}


def fastai_valley(curve: Curve) -> float | None:
    """fastai's default suggestion: trim ``[10:-5]``, cut at the first NaN, then its valley rule.

    Valley: longest strictly decreasing subsequence (O(n^2)), ending at ``max_end`` and starting
    ``length`` points before it; the suggestion sits at ``start + int(s) + int(s / 2)`` with
    ``s = (end - start) / 3`` (about halfway, i.e. "2/3 down the valley" in their words).
    """
    lrs = np.asarray(curve["lrs"])[10:-5]
    losses = np.asarray(curve["smoothed"])[10:-5]
    bad = ~np.isfinite(losses)
    if bad.any():
        cut = int(np.argmax(bad))
        lrs, losses = lrs[:cut], losses[:cut]
    n = len(losses)
    if n == 0:
        return None
    longest = [1] * n
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
            if longest[max_end] < longest[i]:
                max_end = i
                max_start = max_end - longest[max_end]
    sections = (max_end - max_start) / 3
    return float(lrs[max_start + int(sections) + int(sections / 2)])


def lightning_curve(task: Task, seed: int) -> Curve:
    """Lightning ``Tuner.lr_find()`` defaults, rebuilt (1e-8 to 1, 100 steps, early_stop_threshold 4).

    Ladder of its exponential scheduler: ``1e-8`` at step 0, then ``1e-8 * 1e8 ** ((k + 1) / 100)``.
    Recorded loss: moving average with beta 0.98, bias-corrected with ``1 - beta ** (global_step + 1)``
    where ``global_step`` is already k + 1 at step k; stop (after recording) when step > 1 and the
    average passes 4x the best; best updated afterwards (and set at step 1 unconditionally).
    """
    ks = np.arange(100)
    ladder = np.where(ks == 0, 1e-8, 1e-8 * (1.0 / 1e-8) ** ((ks + 1) / 100))
    state = {"avg": 0.0, "best": 0.0, "smoothed": []}

    def stop(i: int, loss: float) -> bool:
        current = i + 1
        state["avg"] = 0.98 * state["avg"] + 0.02 * loss
        value = state["avg"] / (1 - 0.98 ** (current + 1))
        state["smoothed"].append(value)
        diverged = current > 1 and value > 4 * state["best"]
        if value < state["best"] or current == 1:
            state["best"] = value
        return diverged

    raw = _run_ladder(task, seed, ladder, stop)
    smoothed = state["smoothed"] + [math.nan] * (len(raw) - len(state["smoothed"]))
    return {"lrs": ladder[: len(raw)].tolist(), "losses": raw, "smoothed": smoothed}


def lightning_suggestion(curve: Curve) -> float | None:
    """Lightning's ``suggestion(skip_begin=10, skip_end=1)``: steepest ``np.gradient`` by index."""
    losses = np.asarray(curve["smoothed"])[10:-1]
    losses = losses[np.isfinite(losses)]
    if len(losses) < 2:
        return None
    index = int(np.argmin(np.gradient(losses))) + 10
    return float(curve["lrs"][index])


def torch_lr_finder_run(task: Task, seed: int) -> Curve:
    """torch-lr-finder as installed, run as its README shows; suggestion from its own ``plot``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torch_lr_finder import LRFinder

    model = build(task, seed)
    optimizer = task.optimizer(model.parameters(), 1e-7)
    stream = batches(task, seed)
    # the same batches in the same order as our sweeps; batch_size=None hands each one over as is
    loader = torch.utils.data.DataLoader([next(stream) for _ in range(100)], batch_size=None)
    finder = LRFinder(model, optimizer, task.loss, device="cpu")
    sink = io.StringIO()
    lr = None
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        finder.range_test(loader, end_lr=100, num_iter=100)
        fig, ax = plt.subplots()
        try:
            _, lr = finder.plot(suggest_lr=True, ax=ax)
        except Exception as error:  # its own "not enough points" error counts as no suggestion
            sink.write(f"no suggestion: {error}")
        plt.close(fig)
        finder.reset()
    lr = None if lr is None or not math.isfinite(lr) else float(lr)
    return {
        "lrs": list(map(float, finder.history["lr"])),
        "losses": list(map(float, finder.history["loss"])),
        "suggestion": lr,
    }

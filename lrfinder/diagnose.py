"""When not to trust a suggestion: checks of a range-test curve, each with what to change.

Pure NumPy. :func:`diagnose` returns a list of :class:`Diagnostic`; an empty list means nothing
looked wrong. Each check is one small function so it can be tested and tuned on its own.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from lrfinder.suggest import Suggestion, bottom_edge, centered_average, flat_reason, usable_curve

#: A smoothed drop below this fraction of the starting loss is "no clear descent".
MIN_DROP = 0.05
#: Batch-to-batch noise above this fraction of the drop makes the curve "too noisy to read".
#: On the suggestion benchmark's curves the ratio was 0.010-0.097 on six tasks and 0.19-0.57 on
#: the one task whose suggestions trained badly for every seed (benchmarks/quality/suggestion_quality.md).
MAX_NOISE = 0.15
#: The loss bottoming out, or the sweep stopping, within this fraction of the ladder is "at once".
EARLY = 0.15
#: A finished sweep whose minimum lies in this last fraction of the ladder never turned upwards.
LATE = 0.1


class Diagnostic(NamedTuple):
    """A reason to doubt the suggestion.

    Attributes:
        code: ``"interrupted"``, ``"diverged_early"``, ``"flat"``, ``"no_suggestion"``,
            ``"no_clear_descent"``, ``"noisy"``, ``"no_divergence"``, or, for confirm mode,
            ``"probes_alike"`` (:func:`probes_alike`).
        message: What was seen and what to change, in one sentence.
    """

    code: str
    message: str


#: Confirm mode's probes are alike when every score lies within this share of the untouched
#: model's score of every other. On the benchmark's 270 confirm runs (30 tasks) the 7 runs whose
#: probes spread less than 1% are 5 of the 32 that missed 0.05 regret and 2 at 0.012-0.013
#: (``benchmarks/quality/results/confirm_search_all30.md``).
PROBES_ALIKE = 0.01


def probes_alike(scores: list[float], start_score: float | None) -> Diagnostic | None:
    """A diagnostic when confirm mode's probes could not tell their LRs apart, else None.

    ``scores`` are the probes' scores (those that blew up left out); the check needs three or more
    and the untouched model's score, and fires when they spread over at most
    :data:`PROBES_ALIKE` of it: the LR kept then rests on noise, as on a plateau that only some LRs
    leave later in the run.

    >>> probes_alike([0.162, 0.163, 0.165], 1.68).code
    'probes_alike'
    >>> probes_alike([0.16, 0.25, 0.4], 1.68) is None
    True
    """
    finite = [s for s in scores if math.isfinite(s)]
    if len(finite) < 3 or start_score is None or not math.isfinite(start_score) or start_score == 0:
        return None
    spread = max(finite) - min(finite)
    if spread > PROBES_ALIKE * abs(start_score):
        return None
    return Diagnostic(
        "probes_alike",
        f"confirm mode's {len(finite)} probes scored alike ({min(finite):.4g} to {max(finite):.4g}, "
        f"within {PROBES_ALIKE:.0%} of the untouched model's {start_score:.4g}): they could not tell "
        "the LRs apart, so the LR kept rests on noise; give the probes more steps (confirm=N) or "
        "compare result.candidates() by full training runs",
    )


def diagnose(
    lrs: np.ndarray,
    losses: np.ndarray,
    smoothed: np.ndarray,
    stop_reason: str,
    settings: dict[str, Any],
    best: Suggestion,
) -> list[Diagnostic]:
    """Every check that fires on this curve, most serious first. Linear in time (n log n at most).

    A flat curve (:func:`~lrfinder.suggest.flat_reason`) is diagnosed as such, with the fix
    (raise ``end_lr``), instead of the checks that would misread its noise: where its noise
    happens to bottom out says nothing about ``start_lr``.
    """
    flat = flat_reason(lrs, losses)
    found: list[Diagnostic | None] = [
        _interrupted(lrs, stop_reason, settings),
        _diverged_early(lrs, smoothed, stop_reason, settings, flat=flat is not None),
    ]
    if flat is not None:
        found.append(Diagnostic("flat", flat))
    else:
        found += [
            _no_suggestion(best),
            _no_clear_descent(smoothed, best),
            _noisy(losses, smoothed),
            _no_divergence(lrs, smoothed, stop_reason, settings),
        ]
    return [d for d in found if d is not None]


def _planned(lrs: np.ndarray, settings: dict[str, Any]) -> int:
    return int(settings.get("num_iter", lrs.shape[0]) or lrs.shape[0])


def _interrupted(lrs: np.ndarray, stop_reason: str, settings: dict[str, Any]) -> Diagnostic | None:
    if stop_reason != "interrupted":
        return None
    return Diagnostic(
        "interrupted",
        f"the sweep was interrupted after {lrs.shape[0]} of "
        f"{_planned(lrs, settings)} steps, so the suggestion reads a partial curve; "
        "run it again",
    )


def _diverged_early(
    lrs: np.ndarray, smoothed: np.ndarray, stop_reason: str, settings: dict[str, Any], *, flat: bool = False
) -> Diagnostic | None:
    planned = _planned(lrs, settings)
    finite = smoothed[np.isfinite(smoothed)]
    stopped_early = stop_reason in ("diverged", "non_finite") and lrs.shape[0] <= EARLY * planned
    rose_at_once = not flat and finite.size >= 5 and int(np.argmin(finite)) <= EARLY * planned
    if not (stopped_early or (rose_at_once and stop_reason != "interrupted")):
        return None
    start = settings.get("start_lr", lrs[0] if lrs.size else None)
    return Diagnostic(
        "diverged_early",
        f"the loss rose almost from the first step (start_lr={start:.3g}); start_lr is probably too "
        "high: lower it 100-fold",
    )


def _no_suggestion(best: Suggestion) -> Diagnostic | None:
    if best.lr is not None:
        return None
    return Diagnostic("no_suggestion", f"the {best.rule} rule gives no suggestion: {best.reason}")


def _no_clear_descent(smoothed: np.ndarray, best: Suggestion) -> Diagnostic | None:
    finite = smoothed[np.isfinite(smoothed)]
    if best.lr is None or finite.size < 2:
        return None
    start, low = float(finite[0]), float(np.min(finite))
    drop = (start - low) / max(abs(start), 1e-12)
    if drop >= MIN_DROP:
        return None
    return Diagnostic(
        "no_clear_descent",
        f"the smoothed loss falls by only {100 * drop:.1f}% over the whole range; widen the range or "
        "raise num_iter, and check that the model trains at all",
    )


def noise_ratio(losses: np.ndarray, smoothed: np.ndarray) -> float:
    """Batch-to-batch noise of the raw loss over the descent, as a fraction of the descent's depth.

    Noise is the median distance of the raw loss from its own centred 5-point average, up to the
    lowest point of the (centred 5-point average of the) smoothed curve; the depth is how far that
    average falls from its first point. NaN when the curve has no descent.

    >>> t = np.linspace(0, 1, 50); clean = 2 - t
    >>> round(noise_ratio(clean, clean), 6)
    0.0
    """
    _, raw = usable_curve(np.arange(1, losses.shape[0] + 1), losses)
    _, curve = usable_curve(np.arange(1, smoothed.shape[0] + 1), smoothed)
    n = min(raw.shape[0], curve.shape[0])
    if n < 7:
        return float("nan")
    average = centered_average(curve[:n], 2)
    lowest = int(np.argmin(average))
    drop = float(average[0] - average[lowest])
    if lowest < 6 or drop <= 0:
        return float("nan")
    segment = raw[: lowest + 1]
    return float(np.median(np.abs(segment - centered_average(segment, 2))) / drop)


def _noisy(losses: np.ndarray, smoothed: np.ndarray) -> Diagnostic | None:
    ratio = noise_ratio(losses, smoothed)
    if not ratio > MAX_NOISE:  # NaN: nothing to judge
        return None
    return Diagnostic(
        "noisy",
        f"batch-to-batch noise is {100 * ratio:.0f}% of the loss's descent, too noisy to read "
        "reliably; use larger batches, more steps (num_iter) or stronger smoothing",
    )


def _no_divergence(
    lrs: np.ndarray, smoothed: np.ndarray, stop_reason: str, settings: dict[str, Any]
) -> Diagnostic | None:
    if stop_reason != "finished":
        return None
    finite = smoothed[np.isfinite(smoothed)]
    if finite.size < 5 or int(np.argmin(finite)) < (1 - LATE) * finite.size:
        return None
    end = settings.get("end_lr", lrs[-1])
    return Diagnostic(
        "no_divergence",
        f"the loss was still falling at end_lr={end:.3g}, so the range may be too narrow and the "
        "suggestion too low; raise end_lr",
    )


def lr_range(
    lrs: np.ndarray, smoothed: np.ndarray, start: float = 0.1, bottom: float = 0.02
) -> tuple[float, float] | None:
    """``(lower, upper)``: the LRs over which the loss falls.

    Read on a centred 5-point average of the curve (which adds no lag of its own): ``upper`` is the
    left edge of its bottom (:func:`~lrfinder.suggest.bottom_edge` with tolerance ``bottom``, the
    point the default rule divides by 6), ``lower`` the point after which the average stays past
    ``start`` of its fall from its first point, so that noise on a flat start cannot pull it down.
    Below ``lower`` training barely moves; above ``upper`` it stops improving. A bracket for
    cyclical schedules, and a cap for a one-cycle peak. None without a descent.

    >>> lrs = np.geomspace(1e-4, 1e2, 7)
    >>> lr_range(lrs, np.array([5.0, 5.0, 4.0, 2.0, 1.0, 1.0, 9.0]))
    (0.001, 0.1)
    """
    lrs, curve = usable_curve(lrs, smoothed)
    if curve.shape[0] < 3:
        return None
    average = centered_average(curve, 2) if curve.shape[0] >= 7 else curve
    drop = float(average[0] - np.min(average))
    if drop <= 0:
        return None
    last = bottom_edge(average, bottom)
    short = np.flatnonzero(average[:last] > average[0] - start * drop)
    first = int(short[-1]) + 1 if short.size else 0
    return float(lrs[first]), float(lrs[last])

"""Suggestion rules: pure NumPy functions from a range-test curve to one learning rate.

Every rule takes ``lrs`` and ``losses`` (1-D, same length, ``lrs`` increasing; ``losses`` is the
smoothed curve, or the raw per-batch losses for the rules in :data:`RAW_RULES`) and returns a
:class:`Suggestion`. A rule never raises on a bad curve: when the
curve gives no usable suggestion (too short, flat, all NaN, no descent) it returns a suggestion
whose ``lr`` is None and whose ``reason`` says why.

Slopes are taken against ``log(lr)``, so a rule reads an exponential and a linear ladder alike.
Points from the first non-finite loss on are ignored.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lrfinder.plan import ONECYCLE, ONECYCLE_BASE_MOMENTUM, SCHEDULES, Plan

#: Fewest finite points a rule will read.
MIN_POINTS = 5
#: A curve whose best drop is below this fraction of its starting loss is called flat.
FLAT_TOLERANCE = 1e-3
#: A curve is flat when its trend (a centred average over a tenth of the points) moves by no more
#: than this many standard errors of that average: its ups and downs are the batches' noise.
#: (Pure noise reaches 7.8 at the 99.9th percentile for 100 points, 6.9 for 1000.)
FLAT_SIGMAS = 8.0
#: Fewest finite points on which a curve is judged flat: on shorter curves the test has too little
#: power to tell a flat curve from a noisy one (the default ladder has 100).
FLAT_MIN_POINTS = 30
#: No rule suggests an LR within this first fraction of the ladder (and never at its first two
#: points): a curve whose landmark sits there shows no descent before it to read.
START_FRACTION = 0.05


@dataclass(frozen=True)
class Suggestion:
    """One rule's answer.

    A frozen dataclass rather than a NamedTuple: a tuple's own ``index`` method would clash with
    the field of that name.

    Attributes:
        rule: Name of the rule that produced it.
        lr: The suggested learning rate, or None when the curve gives no usable suggestion.
        index: Index of the curve point the suggestion sits at (or nearest to, for rules such as
            ``minimum`` whose LR lies between points); None with ``lr``.
        reason: Why there is no suggestion (None when there is one).
    """

    rule: str
    lr: float | None
    index: int | None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the rule suggests an LR."""
        return self.lr is not None


Rule = Callable[..., Suggestion]


def _none(rule: str, reason: str) -> Suggestion:
    return Suggestion(rule=rule, lr=None, index=None, reason=reason)


def usable_curve(lrs: np.ndarray, losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The prefix of the curve before the first non-finite LR or loss, as float64 arrays."""
    lrs = np.asarray(lrs, dtype=np.float64).ravel()
    losses = np.asarray(losses, dtype=np.float64).ravel()
    if lrs.shape != losses.shape:
        raise ValueError(f"lrs and losses differ in length: {lrs.shape[0]} != {losses.shape[0]}")
    bad = ~(np.isfinite(lrs) & np.isfinite(losses) & (lrs > 0))
    end = int(np.argmax(bad)) if bad.any() else lrs.shape[0]
    return lrs[:end], losses[:end]


def start_points(n: int) -> int:
    """How many points at the start of an ``n``-point ladder no suggestion may sit at or below.

    >>> start_points(100), start_points(10)
    (5, 2)
    """
    return max(2, math.ceil(START_FRACTION * n))


def _at_start(rule: str, lrs: np.ndarray, lr: float, index: int) -> Suggestion:
    """The suggestion, or a no-suggestion when ``lr`` lies among the ladder's first points."""
    k = min(start_points(lrs.shape[0]), lrs.shape[0]) - 1
    if lr <= lrs[k]:
        return _none(
            rule,
            f"the suggestion ({lr:.3g}) would sit at the start of the ladder (at or below its point "
            f"{k + 1}, lr={lrs[k]:.3g}), where the curve shows no descent before it; lower start_lr",
        )
    return Suggestion(rule, lr, index)


def flat_reason(lrs: np.ndarray, losses: np.ndarray) -> str | None:
    """Why the curve is flat (its trend moves no more than its noise), or None when it is not.

    ``losses`` should be the raw per-batch losses: their noise is what the trend is compared with.
    The trend is a centred average over about a tenth of the points; the curve is flat when the
    trend's whole range (falls and rises alike) is within :data:`FLAT_SIGMAS` standard errors of
    that average, or within :data:`FLAT_TOLERANCE` of the loss's level. A flat curve means the LRs
    swept were too low to move the loss: the fix is a higher ``end_lr``. Curves of fewer than
    :data:`FLAT_MIN_POINTS` finite points are not judged (None). Linear in time.

    >>> lrs = np.geomspace(1e-7, 1e-4, 100)
    >>> flat_reason(lrs, 2.3 + 0.05 * np.random.default_rng(0).standard_normal(100)) is not None
    True
    >>> flat_reason(lrs, np.linspace(2.3, 0.5, 100)) is None
    True
    """
    lrs, losses = usable_curve(lrs, losses)
    n = losses.shape[0]
    if n < FLAT_MIN_POINTS:
        return None
    half = max(2, n // 20)
    trend = centered_average(losses, half)
    inner = trend[half : n - half] if n > 2 * half + 1 else trend
    residual = losses - centered_average(losses, 2)
    # median absolute deviation as a standard deviation; a 5-point average keeps 4/5 of the variance
    sigma = 1.4826 * float(np.median(np.abs(residual))) * math.sqrt(5 / 4)
    error = sigma / math.sqrt(2 * half + 1)
    moved = float(np.max(inner) - np.min(inner))
    level = float(np.median(np.abs(losses)))
    if moved > max(FLAT_SIGMAS * error, FLAT_TOLERANCE * max(level, 1e-12)):
        return None
    return (
        f"the loss is flat from lr={lrs[0]:.3g} to lr={lrs[-1]:.3g} (its trend moves by "
        f"{moved:.3g}, within its batch-to-batch noise): the LRs swept are too low to train; "
        "raise end_lr"
    )


def _check(rule: str, lrs: np.ndarray, losses: np.ndarray) -> Suggestion | None:
    """A no-suggestion for curves no rule can read, else None."""
    n = lrs.shape[0]
    if n < MIN_POINTS:
        return _none(rule, f"too few finite points ({n}; at least {MIN_POINTS} are needed)")
    if np.any(np.diff(lrs) <= 0):
        return _none(rule, "learning rates are not strictly increasing")
    drop = losses[0] - losses.min()
    if drop <= FLAT_TOLERANCE * max(abs(losses[0]), 1e-12):
        return _none(rule, "the loss never falls below its starting value: no descent to read")
    return None


def log_slope(lrs: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """d(loss)/d(log lr) at every point (second-order central differences, one-sided at the ends).

    >>> log_slope(np.array([1.0, np.e, np.e**2]), np.array([3.0, 2.0, 1.0]))
    array([-1., -1., -1.])
    """
    slope: np.ndarray = np.gradient(losses, np.log(lrs))
    return slope


def steepest(lrs: np.ndarray, losses: np.ndarray, *, skip_start: int = 10, skip_end: int = 5) -> Suggestion:
    """The LR where the loss falls fastest against log(lr), before the loss's minimum.

    The first ``skip_start`` and last ``skip_end`` finite points are not considered (either may be 0).
    """
    rule = "steepest"
    lrs, losses = usable_curve(lrs, losses)
    if skip_start < 0 or skip_end < 0:
        raise ValueError(f"skips must be >= 0, got skip_start={skip_start}, skip_end={skip_end}")
    failed = _check(rule, lrs, losses)
    if failed:
        return failed
    n = lrs.shape[0]
    stop = min(n - skip_end, int(np.argmin(losses)) + 1)
    if stop - skip_start < 2:
        return _none(
            rule,
            f"too few points left to read a slope ({n} finite points, skip_start={skip_start}, "
            f"skip_end={skip_end}, minimum at point {int(np.argmin(losses))})",
        )
    slope = log_slope(lrs, losses)[skip_start:stop]
    best = int(np.argmin(slope))
    if slope[best] >= 0:
        return _none(rule, "the loss does not fall anywhere in the range read")
    index = skip_start + best
    return _at_start(rule, lrs, float(lrs[index]), index)


def valley(lrs: np.ndarray, losses: np.ndarray, *, position: float = 0.5) -> Suggestion:
    """The LR ``position`` of the way through the longest valley of the curve.

    The valley ends at the last point of the longest run of falling losses (a longest strictly
    decreasing subsequence) and spans as many points as that run holds, counted back from its end.
    Counting back (rather than starting where the run's first point lies) keeps a few falling
    points scattered through a long flat start from stretching the valley over the flat part;
    a point counts as falling only when it lies lower by more than :data:`FLAT_TOLERANCE` of the
    curve's whole drop, so that a smooth, barely sloping start is not read as a valley either.
    """
    rule = "valley"
    lrs, losses = usable_curve(lrs, losses)
    if not 0.0 <= position <= 1.0:
        raise ValueError(f"position must be in [0, 1], got {position}")
    failed = _check(rule, lrs, losses)
    if failed:
        return failed
    min_drop = FLAT_TOLERANCE * float(losses[0] - losses.min())
    end, length = longest_falling_run(losses, min_drop)
    start = end - length + 1
    if length < 3:
        return _none(rule, "no valley of three or more falling points")
    index = start + int(position * (end - start))
    return _at_start(rule, lrs, float(lrs[index]), index)


def longest_falling_run(losses: np.ndarray, min_drop: float = 0.0) -> tuple[int, int]:
    """``(end, length)`` of the longest subsequence of ``losses`` in which each value lies more
    than ``min_drop`` below the one before; among runs of equal length the one ending first wins.

    O(n log n) in time and O(n) in memory (patience sorting): ``tails[k]`` is the highest value a
    run of ``k + 1`` points can end on so far; it falls strictly with ``k``, so the longest run a
    new value can extend is found by bisection.

    >>> longest_falling_run(np.array([5.0, 4.0, 6.0, 3.0, 2.0, 7.0]))
    (4, 4)
    """
    values = np.asarray(losses, dtype=np.float64).tolist()
    if not values:
        return 0, 0
    negated_tails: list[float] = []  # -tails[k], increasing in k
    best_end, best_length = 0, 0
    for i, value in enumerate(values):
        length = bisect.bisect_left(negated_tails, -(value + min_drop)) + 1
        if length > len(negated_tails):
            negated_tails.append(-value)
        elif -value < negated_tails[length - 1]:
            negated_tails[length - 1] = -value
        if length > best_length:
            best_end, best_length = i, length
    return best_end, best_length


def minimum(lrs: np.ndarray, losses: np.ndarray, *, factor: float = 10.0) -> Suggestion:
    """The LR of the lowest loss divided by ``factor``; ``index`` is the point nearest below it."""
    rule = "minimum"
    lrs, losses = usable_curve(lrs, losses)
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    failed = _check(rule, lrs, losses)
    if failed:
        return failed
    lr = float(lrs[int(np.argmin(losses))] / factor)
    index = max(0, int(np.searchsorted(lrs, lr, side="right")) - 1)
    return _at_start(rule, lrs, lr, index)


def centered_minimum(
    lrs: np.ndarray,
    losses: np.ndarray,
    *,
    half_width: int = 2,
    tolerance: float = 0.02,
    factor: float = 6.0,
) -> Suggestion:
    """The LR where a centered average of the curve first reaches its bottom, divided by ``factor``.

    The average spans ``2 * half_width + 1`` points (fewer at the ends). Being centered, it removes
    noise without moving the minimum towards higher LRs as a causal average does (the sweep's own
    average has already moved it by about ``1 / (1 - smooth)`` steps). The bottom starts at the
    first point within ``tolerance`` of the curve's whole drop of the lowest average: on a flat,
    noisy bottom the lowest point falls anywhere, its left edge does not. ``index`` is the point
    nearest below the suggested LR. Chosen by ``benchmarks/quality/suggestion_quality.py`` for a constant LR
    and a one-cycle peak at once.
    """
    rule = "centered_minimum"
    lrs, losses = usable_curve(lrs, losses)
    _check_count("half_width", half_width)
    _check_edge_options(tolerance, factor)
    failed = _check(rule, lrs, losses)
    if failed:
        return failed
    return _below_bottom_edge(rule, lrs, centered_average(losses, half_width), tolerance, factor)


def bottom_edge(average: np.ndarray, tolerance: float) -> int:
    """Index of the first point within ``tolerance`` of the whole drop of ``average``'s minimum.

    The drop is measured from the first point. On a flat, noisy bottom the lowest point falls
    anywhere; its left edge does not.

    >>> bottom_edge(np.array([5.0, 3.0, 1.05, 1.0, 1.02, 4.0]), 0.02)
    2
    """
    lowest = int(np.argmin(average))
    line = average[lowest] + tolerance * max(float(average[0] - average[lowest]), 0.0)
    return int(np.argmax(average[: lowest + 1] <= line))


def _check_edge_options(tolerance: float, factor: float) -> None:
    if not 0.0 <= tolerance < 1.0:
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance}")
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")


def _below_bottom_edge(
    rule: str, lrs: np.ndarray, average: np.ndarray, tolerance: float, factor: float
) -> Suggestion:
    """The LR of ``average``'s bottom edge divided by ``factor``, at the point nearest below it."""
    lr = float(lrs[bottom_edge(average, tolerance)] / factor)
    index = max(0, int(np.searchsorted(lrs, lr, side="right")) - 1)
    return _at_start(rule, lrs, lr, index)


def centered_average(values: np.ndarray, half_width: int) -> np.ndarray:
    """Mean of each point and its ``half_width`` neighbours on either side (fewer at the ends).

    >>> centered_average(np.array([0.0, 3.0, 0.0, 3.0]), 1)
    array([1.5, 1. , 2. , 1.5])
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    sums = np.concatenate(([0.0], np.cumsum(values)))
    lo = np.clip(np.arange(n) - half_width, 0, n)
    hi = np.clip(np.arange(n) + half_width + 1, 0, n)
    averages: np.ndarray = (sums[hi] - sums[lo]) / (hi - lo)
    return averages


def raw_minimum(
    lrs: np.ndarray,
    losses: np.ndarray,
    *,
    width: float = 0.3,
    tolerance: float = 0.02,
    factor: float = 3.0,
) -> Suggestion:
    """Where a zero-lag average of the RAW losses first reaches its bottom, divided by ``factor``.

    ``losses`` are the per-batch losses, not the sweep's moving average: the average here is a
    Gaussian in log10(lr) with a standard deviation of ``width`` decades, so the answer depends on
    neither the sweep's ``smooth`` nor (beyond noise) its ``num_iter``, and it does not lag behind
    the curve as a causal average does. Losses above the starting level are capped at it first, so
    an explosion at the end of the sweep cannot spill into the bottom. The bottom starts at the
    first point within ``tolerance`` of the whole drop of the lowest average, as in
    :func:`centered_minimum`. ``index`` is the point nearest below the suggested LR.
    """
    rule = "raw_minimum"
    lrs, losses = usable_curve(lrs, losses)
    if not (math.isfinite(width) and width > 0):
        raise ValueError(f"width must be a number of decades > 0, got {width}")
    _check_edge_options(tolerance, factor)
    failed = _check(rule, lrs, losses)
    if failed:
        return failed
    start = float(np.median(losses[:MIN_POINTS]))
    average = log_gaussian_average(lrs, np.minimum(losses, start), width)
    failed = _check(rule, lrs, average)
    if failed:
        return failed
    return _below_bottom_edge(rule, lrs, average, tolerance, factor)


def log_gaussian_average(lrs: np.ndarray, values: np.ndarray, width: float) -> np.ndarray:
    """Gaussian-weighted mean of ``values`` around each point, in log10(lr), sd ``width`` decades.

    Weights beyond 4 sd are dropped. Short curves (the usual few hundred points) are summed
    directly, in blocks so memory stays O(n) per block; beyond :data:`DIRECT_PAIRS` weighted pairs,
    an evenly spaced ``x`` (an exponential ladder) is convolved by FFT, which gives the same
    values to rounding, and an uneven one (a linear ladder) is first spread onto an even grid of
    ``width / 20`` (errors of order 1e-3 of the local spread). O(n log n) in time either way.

    >>> log_gaussian_average(np.array([1.0, 10.0, 100.0]), np.array([0.0, 3.0, 0.0]), 1e-3)
    array([0., 3., 0.])
    """
    x = np.log10(np.asarray(lrs, dtype=np.float64))
    values = np.asarray(values, dtype=np.float64)
    reach = np.searchsorted(x, x + 4 * width, side="right") - np.searchsorted(x, x - 4 * width)
    if x.shape[0] > 2 and int(reach.sum()) > DIRECT_PAIRS:
        return _gaussian_on_grid(x, values, width)
    out = np.empty_like(values)
    block = 256
    for lo in range(0, x.shape[0], block):
        hi = min(lo + block, x.shape[0])
        first = int(np.searchsorted(x, x[lo] - 4 * width, side="left"))
        last = int(np.searchsorted(x, x[hi - 1] + 4 * width, side="right"))
        z = (x[lo:hi, None] - x[None, first:last]) / width
        weights = np.exp(-0.5 * z * z)
        out[lo:hi] = weights @ values[first:last] / weights.sum(axis=1)
    return out


#: Weighted pairs :func:`log_gaussian_average` sums directly before it switches to an FFT.
DIRECT_PAIRS = 4_000_000


def _gaussian_on_grid(x: np.ndarray, values: np.ndarray, width: float) -> np.ndarray:
    """:func:`log_gaussian_average` by FFT convolution on an even grid in ``x``."""
    steps = np.diff(x)
    even = bool(np.all(np.abs(steps - steps.mean()) <= 1e-9 * max(abs(steps.mean()), 1e-300)))
    spacing = float(steps.mean()) if even else width / 20
    position = (x - x[0]) / spacing
    size = math.floor(position[-1]) + 2
    if even:
        grid_values, grid_weights = np.zeros(size), np.zeros(size)
        index = np.rint(position).astype(np.int64)
        grid_values[index], grid_weights[index] = values, 1.0
    else:  # spread each point over its two grid neighbours (linear weights)
        low = np.floor(position).astype(np.int64)
        frac = position - low
        grid_values = np.bincount(low, values * (1 - frac), size) + np.bincount(low + 1, values * frac, size)
        grid_weights = np.bincount(low, 1 - frac, size) + np.bincount(low + 1, frac, size)
    half = math.floor(4 * width / spacing)
    offsets = np.arange(-half, half + 1) * spacing / width
    kernel = np.exp(-0.5 * offsets * offsets)
    length = 1 << math.ceil(math.log2(size + kernel.shape[0]))
    spectrum = np.fft.rfft(kernel, length)

    def smooth(signal: np.ndarray) -> np.ndarray:
        full = np.fft.irfft(np.fft.rfft(signal, length) * spectrum, length)
        return full[half : half + size]

    numerator, denominator = smooth(grid_values), smooth(grid_weights)
    if even:
        return np.asarray(numerator[index] / denominator[index], dtype=np.float64)
    grid = np.arange(size)
    averaged = np.interp(position, grid, numerator) / np.interp(position, grid, denominator)
    return np.asarray(averaged, dtype=np.float64)


def ladder(lr: float, *, up: int = 2, down: int = 3, step: float = 0.5) -> np.ndarray:
    """Learning rates to compare by short training runs: ``lr`` times ``10 ** (k * step)`` for
    ``k = -down .. up``, increasing, shape ``(up + down + 1,)``.

    One range test cannot see how long the user will train nor how soon the model overfits, and
    those move the best LR by up to two and a half decades around any single suggestion
    (``benchmarks/quality/suggestion_quality.md``); training briefly at each rung and keeping the lowest
    validation loss can find it, where that loss tells the rungs apart.

    >>> ladder(0.01, up=1, down=2, step=1.0).tolist()
    [0.0001, 0.001, 0.01, 0.1]
    """
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"step must be a number of decades > 0, got {step}")
    _check_count("up", up)
    _check_count("down", down)
    return lr * 10.0 ** (np.arange(-down, up + 1, dtype=np.float64) * step)


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")


RULES: dict[str, Rule] = {
    "steepest": steepest,
    "valley": valley,
    "minimum": minimum,
    "centered_minimum": centered_minimum,
    "raw_minimum": raw_minimum,
}
#: Rules that read the raw per-batch losses rather than the smoothed curve.
RAW_RULES: frozenset[str] = frozenset({"raw_minimum"})
DEFAULT_RULE = "centered_minimum"


def get_rule(name: str) -> Rule:
    """The rule called ``name``; ``ValueError`` listing the known rules otherwise."""
    try:
        return RULES[name]
    except KeyError:
        raise ValueError(
            f"unknown suggestion rule {name!r}; choose one of {', '.join(sorted(RULES))}"
        ) from None


def suggest(
    lrs: np.ndarray,
    losses: np.ndarray,
    rule: str = DEFAULT_RULE,
    raw: np.ndarray | None = None,
    **options: Any,
) -> Suggestion:
    """Apply the rule called ``rule`` (default :data:`DEFAULT_RULE`) to the curve, with the rule's
    own ``options`` (e.g. ``skip_start=5``).

    ``losses`` is the smoothed curve; a rule in :data:`RAW_RULES` reads ``raw`` (the per-batch
    losses) instead when it is given, and ``losses`` otherwise. A flat curve (see
    :func:`flat_reason`, judged on ``raw`` when given) gives no suggestion, whatever the options.
    """
    rule_fn = get_rule(rule)
    flat = flat_reason(lrs, raw if raw is not None else losses)
    if flat is not None:
        return _none(rule, flat)
    return rule_fn(lrs, _rule_curve(rule, losses, raw), **options)


def suggest_all(
    lrs: np.ndarray, smoothed: np.ndarray, raw: np.ndarray | None = None
) -> dict[str, Suggestion]:
    """Every rule's suggestion, by rule name; rules in :data:`RAW_RULES` read ``raw`` when given."""
    flat = flat_reason(lrs, raw if raw is not None else smoothed)  # judged once for every rule
    if flat is not None:
        return {name: _none(name, flat) for name in RULES}
    return {name: fn(lrs, _rule_curve(name, smoothed, raw)) for name, fn in RULES.items()}


def _rule_curve(rule: str, smoothed: np.ndarray, raw: np.ndarray | None) -> np.ndarray:
    """The curve ``rule`` reads: ``raw`` for a rule in :data:`RAW_RULES` when given, else ``smoothed``."""
    return raw if raw is not None and rule in RAW_RULES else smoothed


#: Decades between the raw curve's bottom edge (``raw_minimum`` with ``factor=1``) and the LR to
#: use under each schedule (for ``"onecycle"`` and ``"cosine"``, the peak LR). Fitted on the
#: suggestion-quality benchmark's seven tuning tasks, six range-test seeds each: of every rule
#: "landmark + offset", the one with the most runs within 0.05 regret of a grid search that is at
#: least as good as torch-lr-finder, Lightning's and fastai's protocols and Prodigy on median,
#: mean, worst case and that share (``benchmarks/quality/suggestion_quality.md``, "Plan-aware suggestion").
PLAN_OFFSETS: dict[str, float] = {"constant": -0.55, "onecycle": -0.55, "cosine": -0.40}
#: Change of the offset (decades) per decade of ``train_steps`` above :data:`PLAN_REFERENCE_STEPS`.
#: Left at 0: on the benchmark the best LR fell by about 0.2 decades per doubling of the run
#: between 0.5x and 2x each task's length (four tasks), but that was measured on runs of 60 to 600
#: steps only, too short a range to extrapolate to long runs; confirm mode corrects for length.
PLAN_STEPS_SLOPES: dict[str, float] = {schedule: 0.0 for schedule in SCHEDULES}
#: The training length at which :data:`PLAN_OFFSETS` apply as they are.
PLAN_REFERENCE_STEPS = 1000
#: The rule whose bottom edge :data:`PLAN_OFFSETS` start from when ``find_lr``'s rule is the default.
PLAN_RULE = "raw_minimum"
#: Factor on the one-cycle suggestion when ``OneCycleLR`` switches on the momentum of an optimizer
#: that had none (plain SGD, RMSprop), as its defaults do: heavy-ball momentum ``m`` multiplies the
#: step by ``1 / (1 - m)``, and at the peak LR ``m`` is the base momentum, 0.85, so the peak that
#: steps like the range test's LR is 0.15 times it (-0.82 decades). On four of the benchmark's five
#: such tasks the grid's best one-cycle LR moved by -0.67 to -1.33 decades (median -1.0) when the
#: momentum was switched on; on the fifth the grid without momentum has an isolated best, 3.7
#: decades higher. The four such tasks added since moved by -1.0, -1.0, 0.0 and -0.67 decades
#: (``python -m benchmarks.quality.momentum_shift``).
SWITCHED_ON_MOMENTUM_FACTOR = 1.0 - ONECYCLE_BASE_MOMENTUM


def plan_offset(plan: Plan) -> float:
    """Decades between the plain rule's LR and the LR for ``plan``.

    ``PLAN_OFFSETS[schedule] + PLAN_STEPS_SLOPES[schedule] * log10(train_steps / PLAN_REFERENCE_STEPS)``;
    without ``train_steps`` the second term is 0.

    >>> plan_offset(Plan("onecycle", 1000))
    -0.55
    """
    offset = PLAN_OFFSETS[plan.schedule]
    if plan.train_steps is not None:
        offset += PLAN_STEPS_SLOPES[plan.schedule] * math.log10(plan.train_steps / PLAN_REFERENCE_STEPS)
    return float(offset)


def for_plan(
    lrs: np.ndarray,
    smoothed: np.ndarray,
    raw: np.ndarray | None,
    plan: Plan | None,
    *,
    rule: str = DEFAULT_RULE,
    momentum_switched_on: bool = False,
) -> Suggestion:
    """The LR to use under ``plan`` (for ``"onecycle"`` and ``"cosine"``, the peak LR).

    With the default rule, the plan's LR is the bottom edge of the raw losses (``raw_minimum``
    with ``factor=1``, read on ``raw``, or on ``smoothed`` when ``raw`` is None) times
    ``10 ** plan_offset(plan)``: on the benchmark that landmark, shifted per schedule, beat every
    other landmark and factor. With ``momentum_switched_on`` (the range test's optimizer has no
    momentum, and a one-cycle plan switches it on), a one-cycle LR is also multiplied by
    :data:`SWITCHED_ON_MOMENTUM_FACTOR`. Without a plan (None), or with a rule other than the
    default (whose offsets were not measured), the rule's own suggestion comes back unchanged.
    ``index`` is the curve point nearest below the result (0 when it lies below the whole curve);
    a curve with no bottom edge gives no suggestion, with the reason.

    >>> lrs = np.geomspace(1e-4, 1.0, 50)
    >>> curve = 1.0 + (np.log10(lrs) + 1.0) ** 2  # lowest at 0.1
    >>> for_plan(lrs, curve, None, None).lr == suggest(lrs, curve).lr
    True
    >>> edge = raw_minimum(lrs, curve, factor=1.0).lr
    >>> bool(np.isclose(for_plan(lrs, curve, curve, Plan("constant", 1000)).lr, edge * 10**-0.55))
    True
    """
    if plan is None or rule != DEFAULT_RULE:
        return suggest(lrs, smoothed, rule, raw)
    flat = flat_reason(lrs, raw if raw is not None else smoothed)
    if flat is not None:
        return Suggestion(PLAN_RULE, None, None, flat)
    base = raw_minimum(lrs, smoothed if raw is None else raw, factor=1.0)
    if base.lr is None:
        return Suggestion(PLAN_RULE, None, None, base.reason)
    lr = float(base.lr * 10.0 ** plan_offset(plan))
    if momentum_switched_on and plan.schedule == ONECYCLE:
        lr *= SWITCHED_ON_MOMENTUM_FACTOR
    curve_lrs = np.asarray(lrs, dtype=np.float64)
    index = max(0, int(np.searchsorted(curve_lrs, lr, side="right")) - 1)
    return Suggestion(PLAN_RULE, lr, index)

"""Analysis of long range-test curves: every rule, the diagnostics, the range and the plot's points.

Run by hand from the repository root (never part of the test suite)::

    python -m benchmarks.speed.analysis --rounds 7

For each curve length, a synthetic curve (a noisy descent, a bottom and a blow-up, on the
default exponential ladder, and the same on a linear ladder) is analysed from scratch: a new
``LRFinderResult`` computes ``suggestions`` (all five rules), ``diagnostics``, ``lr_range``,
``candidates()`` and the points ``plot()`` draws (``thin_indices``). Timings are medians of
``--rounds`` rounds, the lengths interleaved within each round. With ``--reference``, the
quadratic algorithms that lrfinder used before (the valley rule's longest falling run by
comparing every pair, and the raw_minimum average summed directly) are timed beside the
current ones at the lengths where they finish within a minute.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from lrfinder import LRFinderResult, suggest
from lrfinder.plot import MAX_DRAWN_POINTS, thin_indices
from lrfinder.sweep import LossSmoother


def curve(n: int, mode: str, seed: int = 0) -> LRFinderResult:
    """A realistic curve: flat start, descent, bottom, blow-up; noise 5% of the level."""
    lrs = np.geomspace(1e-7, 10, n) if mode == "exp" else np.linspace(1e-7, 10, n)
    x = (np.log10(lrs) + 7) / 8
    rng = np.random.default_rng(seed)
    trend = 2.3 - 2.0 / (1 + np.exp(-(x - 0.55) * 20)) + 30 * np.maximum(x - 0.85, 0) ** 2
    losses = trend * (1 + 0.05 * rng.standard_normal(n))
    smoother = LossSmoother(0.9)
    smoothed = np.array([smoother.update(v) for v in losses])
    return LRFinderResult(lrs, losses, smoothed, "finished", settings={"num_iter": n, "mode": mode})


def analyse(result: LRFinderResult) -> None:
    fresh = LRFinderResult(
        result.lrs, result.losses, result.smoothed, result.stop_reason, settings=result.settings
    )
    fresh.suggestions  # noqa: B018
    fresh.diagnostics  # noqa: B018
    fresh.lr_range  # noqa: B018
    fresh.candidates()
    thin_indices(fresh.smoothed, MAX_DRAWN_POINTS)
    thin_indices(fresh.losses, MAX_DRAWN_POINTS)


def old_longest_falling_run(losses: np.ndarray, min_drop: float = 0.0) -> tuple[int, int]:
    """The O(n^2) version lrfinder used before (kept here only to time it)."""
    lengths = np.ones(losses.shape[0], dtype=np.int64)
    for i in range(1, losses.shape[0]):
        higher = losses[:i] > losses[i] + min_drop
        if higher.any():
            lengths[i] = 1 + lengths[:i][higher].max()
    end = int(np.argmax(lengths))
    return end, int(lengths[end])


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--lengths", type=int, nargs="+", default=[300, 10_000, 100_000])
    parser.add_argument("--reference", action="store_true", help="also time the old quadratic code")
    args = parser.parse_args()
    curves = {(n, mode): curve(n, mode) for n in args.lengths for mode in ("exp", "linear")}
    times: dict[tuple[int, str], list[float]] = {key: [] for key in curves}
    for _ in range(args.rounds):
        for key, result in curves.items():
            times[key].append(timed(lambda r=result: analyse(r)))
    print("| points | ladder | whole analysis, median (s) | min | max |")
    print("| --- | --- | --- | --- | --- |")
    for (n, mode), values in times.items():
        print(f"| {n} | {mode} | {statistics.median(values):.4f} | {min(values):.4f} | {max(values):.4f} |")
    if not args.reference:
        return
    print()
    print("| points | part | now, median (s) | before (quadratic), median (s) | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for n in [n for n in args.lengths if n <= 30_000]:
        result = curves[(n, "exp")]
        raw_lrs, raw = suggest.usable_curve(result.lrs, result.losses)
        smoothed = result.smoothed
        parts: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
            "valley's longest falling run": (
                lambda s=smoothed: suggest.longest_falling_run(s),
                lambda s=smoothed: old_longest_falling_run(s),
            ),
            "raw_minimum's Gaussian average": (
                lambda x=raw_lrs, v=raw: suggest.log_gaussian_average(x, v, 0.3),
                lambda x=raw_lrs, v=raw: _direct_gaussian(x, v),
            ),
        }
        for name, (now, before) in parts.items():
            a, b = [], []
            for _ in range(max(1, args.rounds // 2)):
                a.append(timed(now))
                b.append(timed(before))
            ratio = statistics.median(b) / statistics.median(a)
            now_s, before_s = statistics.median(a), statistics.median(b)
            print(f"| {n} | {name} | {now_s:.4f} | {before_s:.4f} | {ratio:.0f}x |")


def _direct_gaussian(lrs: np.ndarray, values: np.ndarray) -> np.ndarray:
    saved = suggest.DIRECT_PAIRS
    suggest.DIRECT_PAIRS = 1 << 62
    try:
        return suggest.log_gaussian_average(lrs, values, 0.3)
    finally:
        suggest.DIRECT_PAIRS = saved


if __name__ == "__main__":
    main()

"""Rule design aid: score candidate rules on the recorded curves with the grid's interpolated regret.

Training at every candidate's LR is what the benchmark proper does; this screen is only for choosing
which candidates deserve it. It reads the cache and the report written by ``suggestion_quality.py``,
interpolates each task's grid (mean validation loss against log10 LR; a diverged grid point counts as
the untrained loss) and prints the regret summary of each candidate on the design tasks (held-out
tasks are left out unless ``--holdout``).

    python -m benchmarks.quality.explore            # the rules, and minimum/k, at smooth 0.6 and 0.9
    python -m benchmarks.quality.explore --sweep    # + centered_minimum over smooth, threshold, ladder
    python -m benchmarks.quality.explore --invariance   # how each rule's answer moves with smooth, num_iter
    python -m benchmarks.quality.explore --ceiling      # the best any landmark-times-factor rule could do
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from benchmarks.quality import protocols
from lrfinder import diagnose
from lrfinder import suggest as rules
from lrfinder.sweep import SweepSettings

HERE = Path(__file__).resolve().parent

DEFAULTS = SweepSettings()


def ladder_key(num_iter: int = DEFAULTS.num_iter) -> str:
    """The cache's protocol key of a sweep over the default range (``suggestion_quality.ladder_key``)."""
    return f"lrf:{DEFAULTS.start_lr!r}:{DEFAULTS.end_lr!r}:{num_iter}"


DEFAULT_LADDER = ladder_key()


def curve_key(task: str, protocol: str, seed: int) -> str:
    """The cache key of one recorded range-test curve (``suggestion_quality.Cache.key``)."""
    return "|".join(repr(p) for p in ("curve", task, protocol, seed))


def interpolated_regret(entry: dict, sched: str, lr: float | None) -> float:
    if lr is None or not math.isfinite(lr):
        return 1.0
    grid = entry["grid"][sched]
    xs = np.array([math.log10(float(k)) for k in grid])
    untrained = entry["v_untrained"]
    vs = np.array([untrained if v is None or v > untrained else v for v in grid.values()])
    x = math.log10(lr)
    if x < xs[0] or x > xs[-1]:
        return 1.0
    v = float(np.interp(x, xs, vs))
    best = entry["v_best"][sched]
    return min(1.0, (v - best) / (untrained - best))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--report", default=str(HERE / "results" / "suggestion_quality.json"))
    parser.add_argument("--holdout", action="store_true", help="also score the held-out task")
    parser.add_argument("--sweep", action="store_true", help="also screen sweep settings and ladders")
    parser.add_argument(
        "--invariance",
        action="store_true",
        help="only print how each rule's answer moves with the sweep's smooth and num_iter",
    )
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="only print the best regret that a landmark times a fixed factor could reach",
    )
    args = parser.parse_args()
    report = json.loads(Path(args.report).read_text())
    cache = json.loads((HERE / "results" / "cache" / "suggestion_quality_cache.json").read_text())
    seeds = report["config"]["range_seeds"]
    tasks = {t: e for t, e in report["tasks"].items() if args.holdout or not e["holdout"]}

    def curve(t: str, protocol: str, s: int) -> dict:
        return cache[curve_key(t, protocol, s)]

    if args.invariance:
        invariance(cache, report["tasks"], seeds)
        return
    if args.ceiling:
        ceiling(cache, report["tasks"], seeds)
        return
    candidates: dict[str, tuple[str, Callable[[dict], float | None]]] = {}

    def on_ladder(ladder: str, smooth: float, threshold: float | None, rule: Callable) -> Callable:
        def apply(c: dict) -> float | None:
            lrs, raw, sm = protocols.replay(c, smooth, threshold)
            return rule(lrs, raw, sm)

        return apply

    base = DEFAULT_LADDER
    for smooth in (0.6, 0.9):
        for name in rules.RULES:
            fn = on_ladder(base, smooth, 4.0, lambda lrs, raw, sm, n=name: rules.suggest(lrs, sm, n, raw).lr)
            candidates[f"{name} s{smooth}"] = (base, fn)
        for k in (3.0, 5.0, 10.0, 20.0):
            fn = on_ladder(base, smooth, 4.0, lambda lrs, raw, sm, k=k: rules.minimum(lrs, sm, factor=k).lr)
            candidates[f"minimum/{k:g} s{smooth}"] = (base, fn)
    if args.sweep:  # the default rule's options against the sweep settings and ladders recorded
        ladders = sorted(
            {k.split("|")[2].strip("'") for k in cache if k.startswith("'curve'") and "lrf:" in k}
        )
        for ladder in ladders:
            for smooth in (0.3, 0.5, 0.6, 0.9):
                for threshold in (2.0, 3.0, 4.0, 6.0, None):
                    for factor in (4.0, 6.0, 8.0, 10.0):
                        for tolerance in (0.0, 0.02):

                            def rule(lrs, raw, sm, f=factor, tol=tolerance):
                                return rules.centered_minimum(lrs, sm, factor=f, tolerance=tol).lr

                            name = (
                                f"centered_minimum f{factor:g} tol{tolerance:g} {ladder} "
                                f"s{smooth} t{threshold}"
                            )
                            candidates[name] = (ladder, on_ladder(ladder, smooth, threshold, rule))

    print(f"{'candidate':40s} {'sched':9s} median  mean  worst  ok%  spread")
    for name, (ladder, fn) in candidates.items():
        for sched in ("constant", "onecycle", "both"):
            regrets, logs = [], []
            for t, entry in tasks.items():
                per_seed = []
                for s in seeds:
                    key = curve_key(t, ladder, s)
                    if key not in cache:
                        continue
                    lr = fn(curve(t, ladder, s))
                    per_seed.append(math.log10(lr) if lr else math.nan)
                    for sc in ("constant", "onecycle") if sched == "both" else (sched,):
                        regrets.append(interpolated_regret(entry, sc, lr))
                logs.append(np.nanstd(per_seed) if per_seed else math.nan)
            r = np.array(regrets)
            print(
                f"{name:40s} {sched:9s} {np.median(r):.3f} {r.mean():.3f} {r.max():.3f} "
                f"{100 * np.mean(r <= 0.05):4.0f} {np.nanmean(logs):.2f}"
            )


def invariance(cache: dict, tasks: dict, seeds: list[int]) -> None:
    """log10(suggestion / default-sweep suggestion) per rule, over every task and recorded seed.

    smooth 0.6 and 0.98 replay the default sweep's own raw losses, so only the average differs; the
    200-step sweep is a separate recording (same range), so its shift includes the noise of a new run.
    """
    base_ladder, long_ladder = DEFAULT_LADDER, ladder_key(200)
    settings = {
        "smooth 0.6": (base_ladder, 0.6),
        "smooth 0.98": (base_ladder, 0.98),
        "200 steps": (long_ladder, 0.9),
    }
    print(f"{'rule':18s} " + "  ".join(f"{k:>11s} mean |mean|" for k in settings) + "  (log10 shift, curves)")
    for name in rules.RULES:
        cells = []
        for ladder, smooth in settings.values():
            shifts = []
            for t in tasks:
                for s in seeds:
                    base = cache.get(curve_key(t, base_ladder, s))
                    other = cache.get(curve_key(t, ladder, s))
                    if base is None or other is None:
                        continue
                    lrs, raw, smoothed = protocols.replay(base, DEFAULTS.smooth, DEFAULTS.diverge_threshold)
                    a = rules.suggest(lrs, smoothed, name, raw).lr
                    lrs, raw, smoothed = protocols.replay(other, smooth, 4.0)
                    b = rules.suggest(lrs, smoothed, name, raw).lr
                    if a and b:
                        shifts.append(math.log10(b / a))
            cells.append(f"{np.mean(shifts):+.2f} {np.mean(np.abs(shifts)):.2f} ({len(shifts)})")
        print(f"{name:18s} " + "  ".join(f"{c:>22s}" for c in cells))


Array = NDArray[np.float64]
#: Offsets (decades) tried for every landmark by :func:`ceiling`.
OFFSETS = np.round(np.arange(-3.0, 1.0001, 0.05), 2)
#: Ladders of offsets below the bottom edge whose best member :func:`ceiling` scores.
EDGE_LADDERS = ([-0.3, -0.8], [-0.3, -0.8, -1.5], [-0.3, -0.8, -1.5, -2.5])


def landmarks(curve: dict) -> dict[str, float]:
    """log10 of the curve's landmarks at the sweep defaults (smooth, divergence threshold)."""
    lrs, raw, smoothed = protocols.replay(curve, DEFAULTS.smooth, DEFAULTS.diverge_threshold)
    span = diagnose.lr_range(lrs, smoothed)
    found = {
        "edge": span[1] if span else None,  # what centered_minimum divides by its factor
        "raw_edge": rules.raw_minimum(lrs, raw, factor=1.0).lr,
        "minimum": rules.minimum(lrs, smoothed, factor=1.0).lr,
        "steepest": rules.steepest(lrs, smoothed).lr,
        "lower": span[0] if span else None,
    }
    return {name: (math.log10(lr) if lr else math.nan) for name, lr in found.items()}


def ceiling(cache: dict, tasks: dict, seeds: list[int]) -> None:
    """The best that a rule "landmark + fixed offset (in decades)" could reach, fitted on these curves.

    First, per task: where the bottom edge lies, how much it moves across seeds, and how far the
    grid's best LR lies from it, in decades. Then, for each schedule and landmark, every offset in
    :data:`OFFSETS` is scored with the grid's interpolated regret over all tasks (held-out
    included) and seeds; the offset with the highest share <= 0.05 (ties: the lower worst case) is
    printed with its mean and worst, and so is the lowest worst case any offset reaches; a blend of
    two landmarks (``a`` edge + ``1 - a`` steepest, ``a`` in tenths) is searched the same way.
    Fitted on the very runs it scores, this is an upper bound for the family, not an estimate. Two
    contrasts follow: an oracle that may pick one offset per task (it knows the task, not the
    seed), which shows how much of the regret is the landmark's noise across seeds, and the best
    member of a short ladder below the edge, as a user who trains at each and keeps the best
    validation loss would get.
    """
    marks = {(t, s): landmarks(cache[curve_key(t, DEFAULT_LADDER, s)]) for t in tasks for s in seeds}
    names = list(tasks)

    def regrets(task_names: list[str], scheds: tuple[str, ...], log_lr: Callable[[dict], float]) -> Array:
        return np.array(
            [
                interpolated_regret(tasks[t], sc, 10 ** log_lr(marks[t, s]))
                for t in task_names
                for s in seeds
                for sc in scheds
            ]
        )

    def best_and_lowest(scored: list[tuple[str, Array]]) -> tuple[str, Array, str]:
        name, r = max(scored, key=lambda item: (np.mean(item[1] <= 0.05), -item[1].max()))
        low_name, low_r = min(scored, key=lambda item: item[1].max())
        return name, r, f"{low_r.max():.3f} ({low_name})"

    def row(label: str, rule: str, offset: str, r: Array, lowest: str = "") -> None:
        print(
            f"| {label} | {rule} | {offset} | {np.mean(r <= 0.05):.0%} | {r.mean():.3f} | {r.max():.3f} "
            f"| {lowest} |"
        )

    print(
        "| task | bottom edge, log10 (sd over seeds) | best constant LR minus edge "
        "| best one-cycle peak minus edge |"
    )
    print("|---|---|---|---|")
    for t in names:
        edges = np.array([marks[t, s]["edge"] for s in seeds])
        best = {sc: math.log10(tasks[t]["lr_best"][sc]) - edges.mean() for sc in ("constant", "onecycle")}
        print(
            f"| {t} | {edges.mean():+.2f} ({edges.std():.2f}) | {best['constant']:+.2f} "
            f"| {best['onecycle']:+.2f} |"
        )
    print()
    print("| schedule | rule | fitted offset (dec) | share <= 0.05 | mean | worst | lowest worst (offset) |")
    print("|---|---|---|---|---|---|---|")
    for label, scheds in (
        ("constant", ("constant",)),
        ("one-cycle", ("onecycle",)),
        ("both", ("constant", "onecycle")),
    ):
        for mark in ("edge", "raw_edge", "minimum", "steepest", "lower"):
            row(
                label,
                f"{mark} + offset",
                *best_and_lowest(
                    [(f"{c:+.2f}", regrets(names, scheds, lambda m, c=c, k=mark: m[k] + c)) for c in OFFSETS]
                ),
            )
        blends = [
            (
                f"a={a:g}, {c:+.2f}",
                regrets(names, scheds, lambda m, a=a, c=c: a * m["edge"] + (1 - a) * m["steepest"] + c),
            )
            for a in np.round(np.arange(0.0, 1.0001, 0.1), 1)
            for c in OFFSETS
        ]
        row(label, "a edge + (1 - a) steepest + offset", *best_and_lowest(blends))
        per_task = [
            min(
                (regrets([t], scheds, lambda m, c=c: m["edge"] + c) for c in OFFSETS),
                key=lambda r: (r.max(), r.mean()),
            )
            for t in names
        ]
        row(label, "edge + one offset per task (oracle)", "per task", np.concatenate(per_task))
        for ladder in EDGE_LADDERS:
            r = np.minimum.reduce([regrets(names, scheds, lambda m, c=c: m["edge"] + c) for c in ladder])
            row(label, f"edge + best of {ladder}", "-", r)


if __name__ == "__main__":
    main()

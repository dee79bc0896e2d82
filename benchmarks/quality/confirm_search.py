"""Confirm-mode search designs on the suggestion-quality tasks, replayed with the library's own search.

For each task, range-test seed and schedule it runs the range test the probe plan asks for (shortened
to fit the budget when it would take more than ``range_share`` of it), places the candidates around
find_lr's plan-aware suggestion (``lrfinder.suggest.for_plan`` on the replayed range test), and
carries the search out with ``lrfinder.confirm.plan_probes`` and ``run_plan`` (adaptive probes
included): every probe is a real training run from the range-test
seed's initial weights on its own batch stream, under the schedule compressed to the probe's
length, scored on the validation loss. The kept LR is scored on the task's 1x grid by interpolated
regret (``plan_confirm.Grid``). Probes are cached (``results/cache/confirm_search_cache.json``), so
designs that probe the same LRs share them; cells run in parallel, each one's probes in order.

    python -m benchmarks.quality.confirm_search --designs grid5,bracket3+2 --workers 2
    python -m benchmarks.quality.confirm_search --tasks digits_lnres_adamw,... --designs bracket3+2
    python -m benchmarks.quality.confirm_search --designs "bracket3+2 r.3@1x,bracket3+2 r.3@+0.25x"

A design is a name of ``DESIGNS``, or one with some settings replaced, as in
``"default{overfit_gap=0.03;low_gap_horizon=0.15}"`` (how the pick's defaults were chosen). A design
name may end in ``+lr-only`` (one-cycle probes that set the LR alone, without the
momentum cycling the library's probes do since issue 11's third pass), in ``+no-ceiling``
(adaptive probes that, while nothing has trained, do not climb towards the range test's last LR)
and in ``@LABEL``, a
budget of ``plan_confirm.BUDGET_SETTINGS`` (default 2x): "1x" is train_steps in all, "+0.5x"
gives the probes 0.5 x train_steps on top of a full range test.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from benchmarks.quality import plan_confirm as pc
from benchmarks.quality import protocols
from benchmarks.quality import suggestion_quality as sq
from benchmarks.quality import tasks as sq_tasks
from lrfinder import suggest as rules
from lrfinder.confirm import ConfirmSettings, blind_centre, plan_probes, run_plan
from lrfinder.diagnose import probes_alike
from lrfinder.plan import ONECYCLE, SCHEDULES, Plan

CACHE = pc.HERE / "results" / "cache" / "confirm_search_cache.json"
RUNS = pc.HERE / "results" / "cache" / "confirm_search_runs.json"
TUNING = [*sq_tasks.SUITE, *sq_tasks.HOLDOUT2, *sq_tasks.HOLDOUT3]

#: The settings every design starts from: the library's default up to issue 11's second pass (5
#: candidates half a decade apart, range test at most half the budget, the best probe's own LR and
#: one length exponent). Designs name what they change.
BEFORE = ConfirmSettings(
    up=2, down=2, extra=0, range_share=0.5, horizon=0.45, low_gap_horizon=0.45, interpolate=False
)
#: Designs by name. "grid5" is the library's default up to issue 11's second pass, "bracket3+2 r.3"
#: its second pass's search, "default" the library's default now (that search with the vertex pick and
#: the gap-dependent length exponent).
DESIGNS: dict[str, ConfirmSettings] = {
    "default": ConfirmSettings(),
    "grid5": BEFORE,
    "grid5 r.3": replace(BEFORE, range_share=0.3),
    "grid3 r.3": replace(BEFORE, up=1, down=1, range_share=0.3),
    "bracket3+1 r.3": replace(BEFORE, up=1, down=1, extra=1, range_share=0.3),
    "bracket3+2": replace(BEFORE, up=1, down=1, extra=2),
    "bracket3+2 r.3": replace(BEFORE, up=1, down=1, extra=2, range_share=0.3),
    "bracket3+3": replace(BEFORE, up=1, down=1, extra=3),
    "bracket3+3 r.3": replace(BEFORE, up=1, down=1, extra=3, range_share=0.3),
    "bracket3+1 r.2": replace(BEFORE, up=1, down=1, extra=1, range_share=0.2),
    "bracket3+2 r.2": replace(BEFORE, up=1, down=1, extra=2, range_share=0.2),
}
HORIZONS = (0.0, 0.3, 0.45, 0.6, 0.75)
#: The design and horizon chosen on TUNING and made the library's default in the second pass,
#: frozen before any result of HOLDOUT4 was looked at. The third pass kept its probes and changed
#: the pick ("default"), frozen on TUNING and HOLDOUT4 before any result of HOLDOUT5.
FROZEN = ("bracket3+2 r.3", 0.75)

Cell = tuple[str, str, str, int]  # design, task, schedule, range-test seed


def simulate(cell: Cell, known: dict[str, Any]) -> tuple[Cell, dict[str, Any], dict[str, Any]]:
    """Run one cell's search; returns what it found and the cache entries it trained."""
    torch.set_num_threads(1)
    design, task, schedule, seed = cell
    name, _, label = design.partition("@")
    name, label_lr_only = name.removesuffix("+lr-only"), name.endswith("+lr-only")
    name, no_ceiling = name.removesuffix("+no-ceiling"), name.endswith("+no-ceiling")
    settings = design_settings(name)
    n = sq_tasks.TASKS[task].steps
    budget, shorten = pc.cell_budget(label or "2x", task)
    plan = plan_probes(budget, sq.DEFAULTS.num_iter, settings, train_steps=n, shorten_range=shorten)
    new: dict[str, Any] = {}
    curve_key = sq.Cache.key(("curve", task, pc.range_ladder(plan.range_steps), seed))
    curve = known.get(curve_key)
    if curve is None:
        _, curve = sq._curve_job((task, pc.range_ladder(plan.range_steps), seed))
        new[curve_key] = curve
    suggested, ceiling = plan_suggestion(task, schedule, curve)
    # no suggestion: the probes centre below where the range test stopped, as find_lr's do
    center = suggested if suggested is not None else blind_centre(ceiling, settings)
    if center is None:  # a range test that recorded nothing: no centre, no probe
        out = {"center": None, "best": None, "probe_steps": plan.rounds[0].steps, "probes": []}
        return cell, {**out, "range_steps": plan.range_steps, "cost": plan.range_steps / n}, new

    # one-cycle probes cycle the momentum as OneCycleLR does over the probe's length (the task's
    # cycle_momentum), as the library's do; "+lr-only": they set the LR alone, as before the third pass
    lr_only = label_lr_only and schedule == "onecycle"

    def probe(lr: float, steps: int) -> tuple[list[float], float]:
        job = (task, schedule, seed, lr, steps, "task", pc.PROBE_DATA_OFFSET + seed, lr_only)
        key = sq.Cache.key(("losses", *pc.run_key(*job)))  # [score, training losses]
        value = known.get(key, new.get(key))
        if value is None:
            losses: list[float] = []
            score = sq_tasks.train(
                sq_tasks.TASKS[task], lr, schedule, seed, steps, "task", job[6], lr_only, losses
            )
            value = new[key] = [score, losses]
        score = value[0]
        return value[1], score if math.isfinite(score) else math.inf

    # the untouched model's validation loss: what confirm mode scores before its probes
    start = sq_tasks.val_loss(sq_tasks.TASKS[task], sq_tasks.build(sq_tasks.TASKS[task], seed))
    found = run_plan(
        plan,
        center,
        probe,
        schedule=schedule,
        settings=settings,
        train_steps=n,
        start_score=start,
        ceiling=None if no_ceiling else ceiling,  # where the sweep stopped, as find_lr passes
    )
    chosen = found.best
    out = {
        "center": center,
        "best": None if chosen is None else chosen.lr,  # the best probe's own LR, for HORIZONS
        "kept": found.lr,  # what the library keeps with the design's settings
        "gap": found.gap,
        # find_lr's probes_alike diagnostic on this search
        "alike": probes_alike([p.score for p in found.probes], start) is not None,
        "probe_steps": plan.rounds[0].steps,
        "probes": [(p.lr, p.score) for p in found.probes],
        "range_steps": plan.range_steps,
        "cost": plan.total_steps / n,
    }
    return cell, out, new


def plan_suggestion(task: str, schedule: str, curve: Any) -> tuple[float | None, float]:
    """find_lr's plan-aware suggestion (None: none) on the range test a default sweep records on a
    cached ``curve``, and that range test's last LR (where its loss blew up: the ceiling)."""
    lrs, raw, smoothed = protocols.replay(curve, sq.DEFAULTS.smooth, sq.DEFAULTS.diverge_threshold)
    switched_on = schedule == ONECYCLE and sq_tasks.switches_on_momentum(sq_tasks.TASKS[task])
    plan = Plan(schedule, sq_tasks.TASKS[task].steps)
    return rules.for_plan(lrs, smoothed, raw, plan, momentum_switched_on=switched_on).lr, float(lrs[-1])


def design_settings(name: str) -> ConfirmSettings:
    """A design's settings: ``DESIGNS[name]``, or ``BASE{field=value;...}`` for a design's settings
    with some fields replaced (numbers, or true/false), e.g. ``default{overfit_gap=0.03}``.

    >>> design_settings("default{low_gap_horizon=0.15;interpolate=false}").low_gap_horizon
    0.15
    """
    base, _, overrides = name.partition("{")
    settings = DESIGNS[base]
    changes: dict[str, Any] = {}
    for item in filter(None, overrides.rstrip("}").split(";")):
        key, _, value = item.partition("=")
        changes[key] = {"true": True, "false": False}.get(value.lower())
        if changes[key] is None:
            changes[key] = int(value) if value.isdigit() else float(value)
    return replace(settings, **changes)


def _simulate(args: tuple[Cell, dict[str, Any]]) -> tuple[Cell, dict[str, Any], dict[str, Any]]:
    return simulate(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default=",".join(TUNING))
    parser.add_argument("--designs", default="grid5,bracket3+2")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--schedules", default=",".join(SCHEDULES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--per-task", action="store_true", help="also print every cell")
    parser.add_argument(
        "--kept-only", action="store_true", help="only the library's kept LR, not the HORIZONS study"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    tasks = args.tasks.split(",")
    designs = args.designs.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    schedules = args.schedules.split(",")
    cache = pc.LayeredCache(CACHE, pc.CACHE)
    cells = [(d, t, sc, s) for d in designs for t in tasks for sc in schedules for s in seeds]
    start = time.time()
    results: dict[Cell, dict[str, Any]] = {}
    todo = []
    for cell in cells:
        todo.append((cell, _known(cache, cell)))
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        for done, (cell, out, new) in enumerate(pool.imap_unordered(_simulate, todo), start=1):
            results[cell] = out
            for key, value in new.items():
                cache.data[key] = value
            if done % 20 == 0:
                cache.save()
                print(f"{done}/{len(cells)} cells, {time.time() - start:.0f} s", file=sys.stderr)
    cache.save()
    RUNS.write_text(json.dumps({"|".join(map(str, k)): v for k, v in results.items()}))
    report(results, cache, tasks, designs, schedules, seeds, args.per_task, args.kept_only)


def _known(cache: pc.LayeredCache, cell: Cell) -> dict[str, Any]:
    """The cache entries a cell may read (its task's curves and probes), to ship to a worker."""
    _, task, schedule, _ = cell
    prefix_curve = sq.Cache.key(("curve", task))[:-1]
    out = {}
    for key, value in cache.data.items():
        if key.startswith(prefix_curve) or (task in key and schedule in key):
            out[key] = value
    return out


def report(
    results: dict[Cell, dict[str, Any]],
    cache: Any,
    tasks: Sequence[str],
    designs: Sequence[str],
    schedules: Sequence[str],
    seeds: Sequence[int],
    per_task: bool,
    kept_only: bool = False,
) -> None:
    untrained = {t: sq_tasks.untrained_loss(sq_tasks.TASKS[t], sq.TRAIN_SEEDS) for t in tasks}
    grids = {(t, sc): pc.load_grid(t, sc, 1.0, cache, untrained[t]) for t in tasks for sc in SCHEDULES}
    print("| design | horizon | schedule " + pc.SUMMARY_HEAD + " cost |")
    print("|---|---|---|---|---|---|---|---|---|")
    # "kept": the LR the library keeps with the design's settings; a number: the best probe's own
    # LR times (probe steps / train_steps) ** that exponent
    for d in designs:
        for h in ["kept", *HORIZONS] if not kept_only else ["kept"]:
            for sc in [*schedules, "all"]:
                regrets, costs = [], []
                for t in tasks:
                    for s in seeds:
                        for sc2 in schedules if sc == "all" else [sc]:
                            out = results[d, t, sc2, s]
                            regrets.append(grids[t, sc2].regret(_kept(out, t, h)))
                            costs.append(out["cost"])
                print(f"| {d} | {h} | {sc} " + pc.summary(regrets) + f" {np.mean(costs):.2f} |")
    if not kept_only:  # how far a better length correction alone could go
        for d in designs:
            cells = [(t, sc, s) for t in tasks for sc in schedules for s in seeds]
            oracle = [
                min(grids[c[0], c[1]].regret(_kept(results[(d, *c)], c[0], h)) for h in ["kept", *HORIZONS])
                for c in cells
            ]
            print(
                f"\n{d}: keeping, in each run, the best of the kept LR and the best probe's LR scaled by "
                f"each exponent of HORIZONS (an oracle) puts {np.mean(np.array(oracle) <= 0.05):.0%} "
                f"of {len(cells)} runs within 0.05"
            )
    for d in designs:
        cells = [(t, sc, s) for t in tasks for sc in schedules for s in seeds]
        missed = {c for c in cells if grids[c[0], c[1]].regret(_kept(results[(d, *c)], c[0], "kept")) > 0.05}
        alike = {c for c in cells if results[(d, *c)].get("alike")}
        print(
            f"\n{d}: the probes_alike diagnostic fires on {len(alike)} of {len(cells)} runs, "
            f"{len(alike & missed)} of them above 0.05 regret ({len(missed)} runs are above 0.05 in all)"
        )
    if per_task:
        for d in designs:
            for t in tasks:
                for sc in schedules:
                    for s in seeds:
                        out = results[d, t, sc, s]
                        r = [grids[t, sc].regret(_kept(out, t, h)) for h in ["kept", *HORIZONS]]
                        probes = " ".join(f"{lr:.2g}:{v:.3g}" for lr, v in out["probes"])
                        gap = math.nan if out.get("gap") is None else out["gap"]
                        print(
                            f"{d:>16} {t:>24} {sc:>8} {s} centre {out['center'] or math.nan:.2g} "
                            f"gap {gap:+.3f} regret kept {r[0]:.3f} @h {' '.join(f'{x:.3f}' for x in r[1:])} "
                            f"| {probes}"
                        )


def _kept(out: dict[str, Any], task: str, h: str | float) -> float | None:
    """The LR a cell keeps: the library's ("kept") or the best probe's scaled by exponent ``h``."""
    if h == "kept":
        return out.get("kept")
    lr = out["best"]
    return None if lr is None else lr * (out["probe_steps"] / sq_tasks.TASKS[task].steps) ** float(h)


if __name__ == "__main__":
    main()

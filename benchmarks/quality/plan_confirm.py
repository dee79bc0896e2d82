"""Evidence for the plan-aware suggestion and the confirm mode (issue 11), on the suggestion-quality tasks.

It reads the cache of ``suggestion_quality.py`` (run that first for the tasks: it trains the 1x grid
of every schedule and the other rows) and keeps what it trains in a cache file of its own:

* ``--budgets``: train each task's grid at 0.5x and 2x its budget of steps, on a window of
  +-3 grid points (+-1 decade) around the 1x grid's best LR, for every schedule;
* ``--fit``: score every rule "landmark + offset" per schedule on the interpolated grid regret
  over tasks and range-test seeds, beside the outside protocols, and (with the budget grids) the
  slope per doubling of train_steps;
* ``--confirm``: replay confirm mode exactly as the library plans it (``lrfinder.confirm``'s
  ``plan_probes`` and ``run_plan``): candidates around the plan-aware suggestion, each probe
  trained from the range-test seed's initial weights under the schedule compressed to the probe's
  length and scored on the validation loss; the kept LR, and other readings of the same probes,
  are scored on the 1x grid;
* ``--frozen``: the frozen rule and design (``PLAN_RULE``, ``FROZEN_DESIGN``, ``FROZEN_PICK``) on
  other tasks, beside the trained rows of a ``suggestion_quality`` report;
* ``--final``: run ``lrfinder.find_lr`` itself with ``schedule=`` and ``train_steps=`` (and
  ``confirm=True``), train at each answer on the training seeds and report regret and cost beside
  the other rows.

    python -m benchmarks.quality.plan_confirm --budgets --tasks digits_mlp,breast_logreg --check "" \
        --workers 2
    python -m benchmarks.quality.plan_confirm --fit --no-slopes --check ""
    python -m benchmarks.quality.plan_confirm --confirm --designs 0,1,3 --workers 2
    python -m benchmarks.quality.plan_confirm --frozen --tasks wine_mlp_rmsprop,moons_deep_sgd \
        --report benchmarks/quality/results/sq_plan_holdouts.json
    python -m benchmarks.quality.plan_confirm --final --workers 2 [--tasks ... --report ...]
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.quality import explore as sq_explore
from benchmarks.quality import protocols
from benchmarks.quality import suggestion_quality as sq
from benchmarks.quality import tasks as sq_tasks
from lrfinder.plan import SCHEDULES
from lrfinder.suggest import RULES

HERE = Path(__file__).resolve().parent

CACHE = HERE / "results" / "cache" / "suggestion_quality_cache.json"
#: What this script trains goes to its own file, so it can run beside suggestion_quality.py.
OWN_CACHE = HERE / "results" / "cache" / "sq_plan_cache.json"


class LayeredCache(sq.Cache):
    """Reads ``suggestion_quality``'s cache and its own; writes only its own."""

    def __init__(self, own: Path, base: Path) -> None:
        super().__init__(own)
        self.base = sq.Cache(base)

    def get(self, parts: Iterable[Any]) -> Any:
        parts = tuple(parts)
        found = super().get(parts)
        return self.base.get(parts) if found is None else found


DEFAULT_LADDER = sq.ladder_key(sq.DEFAULTS.start_lr, sq.DEFAULTS.end_lr, sq.DEFAULTS.num_iter)
BUDGETS = (0.5, 1.0, 2.0)
WINDOW = 3  # grid points either side of the 1x best trained at the other budgets (+-1 decade)
FIT_SEEDS = (0, 1, 2, 3, 4, 5)  # range-test seeds whose landmarks the fit reads (no training needed)
PROBE_DATA_OFFSET = 1000  # probes draw batches from stream 1000 + seed: the range test drew the first ones
#: The reference length for the slope of the offset: log2(train_steps / REFERENCE_STEPS).
REFERENCE_STEPS = 200


# -- cache keys and jobs --------------------------------------------------------------------------


def run_key(
    task: str,
    schedule: str,
    seed: int,
    lr: float,
    steps: int,
    optimizer: str = "task",
    data_seed: int | None = None,
    lr_only: bool = False,
) -> tuple[Any, ...]:
    """Cache key of a training run; the task's own budget keeps ``suggestion_quality``'s key."""
    key = sq.train_key(task, schedule, seed, lr, optimizer)
    if steps != sq_tasks.TASKS[task].steps:
        key = (*key, ("steps", steps))
    if data_seed is not None:
        key = (*key, ("data", data_seed))
    if lr_only:
        key = (*key, "lr_only")
    return key


Job = tuple[str, str, int, float, int, str, "int | None", bool]


def _job(job: Job) -> tuple[Job, float]:
    task, schedule, seed, lr, steps, optimizer, data_seed, lr_only = job
    return job, sq_tasks.train(sq_tasks.TASKS[task], lr, schedule, seed, steps, optimizer, data_seed, lr_only)


def train_all(jobs: Iterable[Job], cache: sq.Cache, workers: int, label: str) -> None:
    """Train every job not yet in the cache (longest first), saving as it goes."""
    todo = sorted(
        {j for j in jobs if cache.get(run_key(*j)) is None},
        key=lambda j: (
            -j[4]
            * (
                3
                if j[0]
                in (
                    "adding_gru",
                    "digits_cnn",
                    "grammar_transformer",
                    "digits_resnet_nesterov",
                    "sums_lstm_nadam",
                )
                else 1
            )
        ),
    )
    for done, (job, value) in enumerate(sq._run(todo, _job, workers, label), start=1):
        cache.put(run_key(*job), value)
        if done % 100 == 0:
            cache.save()
    cache.save()


def ensure_curves(cache: sq.Cache, tasks: Sequence[str], seeds: Sequence[int], workers: int) -> None:
    jobs = [
        (t, DEFAULT_LADDER, s)
        for t in tasks
        for s in seeds
        if cache.get(("curve", t, DEFAULT_LADDER, s)) is None
    ]
    for job, curve in sq._run(jobs, sq._curve_job, workers, "range tests"):
        cache.put(("curve", *job), curve)
    cache.save()


# -- grids ---------------------------------------------------------------------------------------


def steps_at(task: str, budget: float) -> int:
    return max(1, round(sq_tasks.TASKS[task].steps * budget))


def window(task: str, schedule: str, cache: sq.Cache) -> list[float]:
    """Grid LRs within WINDOW points of the 1x grid's best (mean over training seeds)."""
    lrs = sq.grid_lrs(cache, task, schedule)
    grid = grid_values(task, schedule, 1.0, cache, lrs)
    finite = {lr: v for lr, v in grid.items() if math.isfinite(v)}
    best = sq.GRID.index(min(finite, key=finite.get))
    return sq.GRID[max(0, best - WINDOW) : best + WINDOW + 1]


def grid_values(
    task: str, schedule: str, budget: float, cache: sq.Cache, lrs: Sequence[float]
) -> dict[float, float]:
    """lr -> mean final validation loss over the training seeds (NaN: diverged or not trained)."""
    if budget == 1.0:
        return {lr: sq.mean_loss(cache, task, schedule, lr) for lr in lrs}
    out = {}
    for lr in lrs:
        values = [
            cache.get(run_key(task, schedule, seed, lr, steps_at(task, budget))) for seed in sq.TRAIN_SEEDS
        ]
        out[lr] = (
            math.nan if any(v is None or not math.isfinite(v) for v in values) else float(np.mean(values))
        )
    return out


@dataclass
class Grid:
    """One task's grid at one schedule and budget, for interpolated regret."""

    log_lrs: np.ndarray
    values: np.ndarray  # diverged or worse than untrained -> untrained
    best: float
    untrained: float

    def regret(self, lr: float | None) -> float:
        if lr is None or not math.isfinite(lr) or lr <= 0:
            return 1.0
        x = math.log10(lr)
        if x < self.log_lrs[0] - 1e-9 or x > self.log_lrs[-1] + 1e-9:
            # outside the trained window: the window's edge is already far from the best
            return float(
                min(
                    1.0,
                    (self.values[0 if x < self.log_lrs[0] else -1] - self.best)
                    / (self.untrained - self.best),
                )
            )
        v = float(np.interp(x, self.log_lrs, self.values))
        return min(1.0, (v - self.best) / (self.untrained - self.best))


def load_grid(task: str, schedule: str, budget: float, cache: sq.Cache, untrained: float) -> Grid | None:
    """The grid for interpolated regret, or None while any of its runs is missing."""
    try:
        lrs = sq.grid_lrs(cache, task, schedule) if budget == 1.0 else window(task, schedule, cache)
    except (LookupError, ValueError):
        return None
    if budget == 1.0:
        if not all(sq.known(cache, task, schedule, lr) for lr in lrs):
            return None
    elif any(
        cache.get(run_key(task, schedule, s, lr, steps_at(task, budget))) is None
        for lr in lrs
        for s in sq.TRAIN_SEEDS
    ):
        return None
    values = grid_values(task, schedule, budget, cache, lrs)
    v = np.array([untrained if not math.isfinite(x) or x > untrained else x for x in values.values()])
    return Grid(np.log10(np.array(lrs)), v, float(v.min()), untrained)


def budget_jobs(tasks: Sequence[str], cache: sq.Cache) -> list[Job]:
    return [
        (t, sc, seed, lr, steps_at(t, b), "task", None, False)
        for t in tasks
        for sc in SCHEDULES
        for b in BUDGETS
        if b != 1.0
        for lr in window(t, sc, cache)
        for seed in sq.TRAIN_SEEDS
    ]


# -- landmarks and rules -------------------------------------------------------------------------


def curve_landmarks(cache: sq.Cache, task: str, seed: int) -> dict[str, float]:
    """log10 of the default sweep's landmarks (see ``sq_explore.landmarks``), plus the batches it drew."""
    curve = cache.get(("curve", task, DEFAULT_LADDER, seed))
    marks = sq_explore.landmarks(curve)
    marks["drawn"] = len(protocols.replay(curve, sq.DEFAULTS.smooth, sq.DEFAULTS.diverge_threshold)[0])
    return marks


def outside_lr(cache: sq.Cache, name: str, task: str, seed: int) -> float | None:
    """What a row of ``suggestion_quality`` suggests on this task and range-test seed."""
    protocol, fn = sq.suggesters(False, (name,) if name in RULES else ())[name]
    lr = fn(None if protocol == sq.NO_CURVE else cache.get(("curve", task, protocol, seed)))
    return None if lr is None or not math.isfinite(lr) else float(lr)


def summary(regrets: Sequence[float]) -> str:
    r = np.asarray(regrets)
    return f"| {len(r)} | {np.median(r):.3f} | {r.mean():.3f} | {r.max():.3f} | {np.mean(r <= 0.05):.0%} |"


SUMMARY_HEAD = "| runs | median | mean | worst | share <= 0.05 |"


def beats(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``a`` is at least as good as ``b`` on every measure (median, mean, worst, share)."""
    return (
        np.median(a) <= np.median(b)
        and a.mean() <= b.mean()
        and a.max() <= b.max()
        and np.mean(a <= 0.05) >= np.mean(b <= 0.05)
    )


def fit(
    cache: sq.Cache,
    tasks: Sequence[str],
    check: Sequence[str],
    with_slopes: bool = True,
    report_path: Path | None = None,
) -> None:
    """Print, per schedule, the landmark + offset rules fitted on ``tasks`` at 1x, then their slope.

    A rule is "dominant" when, on the 1x budget, it is at least as good as every outside protocol
    (torch-lr-finder, Lightning, fastai) and Prodigy on each of median, mean, worst and share <= 0.05.
    Rules are ranked dominant first, then by share <= 0.05, worst case and mean. Then the slope per
    doubling of train_steps is fitted for the best rule over every budget with trained grids.
    """
    import json

    everything = [*tasks, *check]
    untrained = {t: sq_tasks.untrained_loss(sq_tasks.TASKS[t], sq.TRAIN_SEEDS) for t in everything}
    grids = {
        (t, sc, b): load_grid(t, sc, b, cache, untrained[t])
        for t in everything
        for sc in SCHEDULES
        for b in BUDGETS
    }
    seeds = [s for s in FIT_SEEDS if all(cache.get(("curve", t, DEFAULT_LADDER, s)) for t in everything)]
    marks = {(t, s): curve_landmarks(cache, t, s) for t in everything for s in seeds}
    for m in marks.values():
        for a in (0.25, 0.5, 0.75):
            m[f"{a:g} edge + {1 - a:g} raw_edge"] = a * m["edge"] + (1 - a) * m["raw_edge"]
    names = [k for k in marks[next(iter(marks))] if k not in ("drawn", "lower")]
    offsets = np.round(np.arange(-3.0, 1.0001, 0.05), 2)
    prodigy: dict[str, list[float]] = {}
    if report_path is not None and report_path.exists():
        for r in json.loads(report_path.read_text())["runs"]:
            if r["suggester"].startswith("prodigy") and r["task"] in tasks and r["seed"] in seeds:
                prodigy.setdefault(r["schedule"], []).append(r["regret"])

    def regrets(
        task_set: Sequence[str],
        sc: str,
        mark: str,
        a: float,
        b: float = 0.0,
        budgets: Sequence[float] = (1.0,),
    ) -> np.ndarray:
        out = []
        for t in task_set:
            for bud in budgets:
                g = grids[t, sc, bud]
                if g is None:
                    continue
                x = math.log2(steps_at(t, bud) / REFERENCE_STEPS)
                for s in seeds:
                    m = marks[t, s][mark]
                    out.append(g.regret(10 ** (m + a + b * x)) if math.isfinite(m) else 1.0)
        return np.array(out)

    def outside(name: str, task_set: Sequence[str], sc: str, budgets: Sequence[float] = (1.0,)) -> np.ndarray:
        return np.array(
            [
                grids[t, sc, bud].regret(outside_lr(cache, name, t, s))
                for t in task_set
                for bud in budgets
                if grids[t, sc, bud] is not None
                for s in seeds
            ]
        )

    print(f"fit on {list(tasks)}, range-test seeds {seeds}; check on {list(check)}")
    for sc in SCHEDULES:
        if any(grids[t, sc, 1.0] is None for t in tasks):
            print(f"\n### {sc}: grid not complete yet")
            continue
        print(f"\n### {sc} (1x budget, interpolated regret)\n")
        print(f"| rule | offset | set {SUMMARY_HEAD[1:]} dominant |")
        print("|---|---|---|---|---|---|---|---|---|")
        rivals = {name: outside(name, tasks, sc) for name in sq.BASELINES}
        if sc in prodigy:
            rivals["prodigy (trained, exact)"] = np.array(prodigy[sc])
        scored = []
        for mark in names:
            for a in offsets:
                r = regrets(tasks, sc, mark, a)
                dominant = all(beats(r, rival) for rival in rivals.values())
                scored.append(((dominant, np.mean(r <= 0.05), -r.max(), -r.mean()), mark, a, r))
        scored.sort(key=lambda item: item[0], reverse=True)
        shown = scored[:5] + [next(item for item in scored if item[1] == mark) for mark in names]
        for key, mark, a, r in shown:
            print(f"| {mark} | {a:+.2f} | fit " + summary(r) + f" {'yes' if key[0] else 'no'} |")
            if check:
                print(f"| {mark} | {a:+.2f} | check " + summary(regrets(check, sc, mark, a)) + " |")
        for name, r in rivals.items():
            print(f"| {name} | - | fit " + summary(r) + " |")
        for name in ("centered_minimum", "lr=1e-3 (no search)"):
            print(f"| {name} | - | fit " + summary(outside(name, tasks, sc)) + " |")
        if check:
            for name in [*sq.BASELINES, "centered_minimum"]:
                print(f"| {name} | - | check " + summary(outside(name, check, sc)) + " |")
        if with_slopes:
            _, mark, a, _ = scored[0]
            usable = [t for t in tasks if all(grids[t, sc, b] is not None for b in BUDGETS)]
            if not usable:
                continue
            print(f"\nslope for {mark} on {usable} over budgets {BUDGETS} (offset refitted with it):\n")
            print(f"| offset | slope per doubling | {SUMMARY_HEAD[1:]}")
            print("|---|---|---|---|---|---|---|")
            rows = []
            for b in np.round(np.arange(-0.4, 0.4001, 0.05), 2):
                for off in np.round(np.arange(a - 0.5, a + 0.5001, 0.05), 2):
                    r = regrets(usable, sc, mark, off, b, BUDGETS)
                    rows.append(((np.mean(r <= 0.05), -r.mean(), -r.max()), off, b, r))
            rows.sort(key=lambda item: item[0], reverse=True)
            flat = max((row for row in rows if row[2] == 0), key=lambda item: item[0])
            for _, off, b, r in [*rows[:3], flat]:
                print(f"| {off:+.2f} | {b:+.2f} " + summary(r))
            for name in sq.BASELINES:
                print(f"| {name} | - " + summary(outside(name, usable, sc, BUDGETS)))


# -- confirm mode ---------------------------------------------------------------------------------

from lrfinder.confirm import ConfirmSettings, plan_probes, run_plan  # noqa: E402


class Missing(Exception):
    """A probe or range test the cache does not have yet."""


def probe_job(task: str, schedule: str, seed: int, lr: float, steps: int) -> Job:
    """A probe: the range-test seed's initial weights, its own batch stream, the LR set per step."""
    return (task, schedule, seed, lr, steps, "task", PROBE_DATA_OFFSET + seed, True)


def range_ladder(steps: int) -> str:
    return sq.ladder_key(sq.DEFAULTS.start_lr, sq.DEFAULTS.end_lr, steps)


def replay_confirm(
    settings: Any,
    task: str,
    schedule: str,
    seed: int,
    budget: int,
    shorten: bool,
    cache: sq.Cache,
    rule: Callable[[dict[str, float], str, int], float],
) -> Any:
    """Carry out the library's probe plan with probes read from the cache (``Missing`` if absent)."""
    n = sq_tasks.TASKS[task].steps
    plan = plan_probes(budget, sq.DEFAULTS.num_iter, settings, train_steps=n, shorten_range=shorten)
    curve = cache.get(("curve", task, range_ladder(plan.range_steps), seed))
    if curve is None:
        raise Missing(("curve", task, range_ladder(plan.range_steps), seed))
    center = rule(sq_explore.landmarks(curve), schedule, n)
    # the round of each call, so that the missing probes of one round are collected together
    round_of = [i for i, r in enumerate(plan.rounds) for _ in range(r.size)]
    calls: list[int] = []
    missing: list[Job] = []

    def probe(lr: float, steps: int) -> tuple[list[float], float]:
        index = round_of[len(calls)]
        calls.append(index)
        value = cache.get(run_key(*probe_job(task, schedule, seed, lr, steps)))
        if value is None:
            if missing and index > missing_round[0]:
                raise Missing(*missing)  # a later round depends on the missing scores
            missing_round[:] = [index] if not missing else missing_round
            missing.append(probe_job(task, schedule, seed, lr, steps))
            return [], math.inf
        return [], value if math.isfinite(value) else math.inf

    missing_round: list[int] = []
    found = run_plan(plan, center, probe, schedule=schedule, settings=settings)
    if missing:
        raise Missing(*missing)
    return found


#: Budgets of the confirm study: label -> (total budget as a multiple of train_steps, whether the
#: range test may be shortened to fit). "+f" labels give the probes f x train_steps on top of a full
#: 100-step range test: what a user with a long run gets, where the range test is a small share.
BUDGET_SETTINGS = {
    "4x": (4.0, True),
    "3x": (3.0, True),
    "2x": (2.0, True),
    "1x": (1.0, True),
    "0.5x": (0.5, True),
    "+0.5x": (0.5, False),
    "+0.25x": (0.25, False),
}


def cell_budget(label: str, task: str) -> tuple[int, bool]:
    factor, shorten = BUDGET_SETTINGS[label]
    n = sq_tasks.TASKS[task].steps
    return (math.floor(factor * n), True) if shorten else (sq.DEFAULTS.num_iter + round(factor * n), False)


def confirm_study(
    cache: sq.Cache,
    tasks: Sequence[str],
    designs: Sequence[Any],
    budgets: Sequence[str],
    rule: Callable[[dict[str, float], str, int], float],
    workers: int,
    seeds: Sequence[int],
    schedules: Sequence[str] = SCHEDULES,
) -> dict[tuple[Any, str, str, str], tuple[np.ndarray, np.ndarray]]:
    """Regret (on the 1x grid) of the LR each design keeps, and its cost, per (design, budget, schedule)."""
    untrained = {t: sq_tasks.untrained_loss(sq_tasks.TASKS[t], sq.TRAIN_SEEDS) for t in tasks}
    grids = {(t, sc): load_grid(t, sc, 1.0, cache, untrained[t]) for t in tasks for sc in SCHEDULES}
    cells = [
        (d, b, t, sc, s) for d in designs for b in budgets for t in tasks for sc in schedules for s in seeds
    ]
    for attempt in range(6):  # each round of successive halving needs the scores of the one before
        curves, jobs = set(), set()
        for d, b, t, sc, s in cells:
            try:
                replay_confirm(d, t, sc, s, *cell_budget(b, t), cache, rule)
            except Missing as missing:
                for item in missing.args:
                    (curves if item[0] == "curve" else jobs).add(item)
        if curves:
            for job, curve in sq._run(sorted(c[1:] for c in curves), sq._curve_job, workers, "range tests"):
                cache.put(("curve", *job), curve)
            cache.save()
        if not curves and not jobs:
            break
        train_all(jobs, cache, workers, f"probes, pass {attempt + 1}")
    out: dict[tuple[Any, str, str, str], tuple[list[float], list[float]]] = {}
    for d, b, t, sc, s in cells:
        if grids[t, sc] is None:
            print(f"no complete 1x grid for {t} {sc}: left out", file=sys.stderr)
            continue
        found = replay_confirm(d, t, sc, s, *cell_budget(b, t), cache, rule)
        cost = found.plan.total_steps / sq_tasks.TASKS[t].steps
        for variant, lr in pick_variants(found, sq_tasks.TASKS[t].steps).items():
            regret, costs = out.setdefault((d, b, sc, variant), ([], []))
            regret.append(grids[t, sc].regret(lr))
            costs.append(cost)
    return {k: (np.array(r), np.array(c)) for k, (r, c) in out.items()}


#: Other readings of the same probes (no training): the kept LR moved by a fixed number of decades.
PICK_SHIFTS = (-0.3, -0.15, 0.15)


#: Horizon corrections tried: the kept LR times ``(probe steps / train_steps) ** k`` (a probe shorter
#: than the run favours a higher LR than the run wants).
PICK_HORIZONS = (0.3, 0.45, 0.6, 0.75)


def pick_variants(found: Any, train_steps: int) -> dict[str, float | None]:
    """The kept LR ("best probe") and other readings of the same probes, for comparison.

    ``shift d``: the kept LR times ``10 ** d``; ``parabola``: the vertex of a parabola through the
    last round's scores against log10 LR (when it has three or more finite ones and opens upward),
    kept within the probed LRs.
    """
    kept = found.lr if found.lr is not None else found.center
    out: dict[str, float | None] = {"best probe": kept}
    for d in PICK_SHIFTS:
        out[f"shift {d:+g}"] = None if kept is None else kept * 10**d
    last = [p for p in found.probes if p.round == found.probes[-1].round] if found.probes else []
    finite = [(math.log10(p.lr), p.score) for p in last if math.isfinite(p.score)]
    vertex = kept
    if len(finite) >= 3:
        x, y = np.array(finite).T
        c2, c1, _ = np.polyfit(x, y, 2)
        if c2 > 0:
            vertex = float(10 ** np.clip(-c1 / (2 * c2), x.min(), x.max()))
    out["parabola"] = vertex
    if found.plan.rounds:
        ratio = found.plan.rounds[-1].steps / train_steps
        for k in PICK_HORIZONS:
            out[f"horizon {k:g}"] = None if kept is None else kept * ratio**k
    return out


def design_label(d: Any) -> str:
    return f"{d.down}+1+{d.up} x {d.spacing:.2g} dec, shift {d.shift:+g}, {d.rounds} round(s)" + (
        f", keep {d.keep:g}" if d.rounds > 1 else ""
    )


# -- the rule under study ------------------------------------------------------------------------

#: Per schedule: (landmark, offset in decades, slope per doubling of train_steps) -- filled in from --fit.
PLAN_RULE: dict[str, tuple[str, float, float]] = {
    "constant": ("raw_edge", -0.55, 0.0),
    "onecycle": ("raw_edge", -0.55, 0.0),
    "cosine": ("raw_edge", -0.40, 0.0),
}


def plan_rule(marks: dict[str, float], schedule: str, train_steps: int) -> float:
    mark, offset, slope = PLAN_RULE[schedule]
    return float(10 ** (marks[mark] + offset + slope * math.log2(train_steps / REFERENCE_STEPS)))


#: Confirm designs screened by ``--confirm`` (``--designs`` picks by index).
DESIGNS = [
    # the library's default up to issue 11's second pass: 5 candidates half a decade apart, one round
    ConfirmSettings(up=2, down=2, extra=0, range_share=0.5, horizon=0.45),
    ConfirmSettings(up=1, down=1, spacing=0.5, extra=0, range_share=0.5, horizon=0.45),
    ConfirmSettings(up=2, down=2, spacing=1 / 3, extra=0, range_share=0.5, horizon=0.45),
    ConfirmSettings(up=2, down=2, spacing=0.5, rounds=2, extra=0, range_share=0.5, horizon=0.45),
    ConfirmSettings(up=3, down=3, spacing=1 / 3, rounds=2, extra=0, range_share=0.5, horizon=0.45),
    ConfirmSettings(up=2, down=3, spacing=0.5, rounds=2, extra=0, range_share=0.5, horizon=0.45),
    ConfirmSettings(up=3, down=4, spacing=0.25, rounds=3, extra=0, range_share=0.5, horizon=0.45),
]


# -- the final benchmark through find_lr ------------------------------------------------------------


class CountingSampler(torch.utils.data.Sampler):
    """Shuffled batches of indices (a seeded generator, whole batches only) that count what was drawn."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.drawn = n, batch_size, 0
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.n // self.batch_size

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator).tolist()
        for i in range(len(self)):
            self.drawn += 1
            yield order[i * self.batch_size : (i + 1) * self.batch_size]


def library_signature() -> str:
    """A hash of the library files whose code decides the answers (a changed rule invalidates the cache)."""
    import hashlib

    root = HERE.parents[1] / "lrfinder"
    digest = hashlib.sha256()
    for name in ("suggest.py", "confirm.py", "api.py", "plan.py"):
        path = root / name
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


FinalJob = tuple[str, int, str, bool]


def _final_job(job: FinalJob) -> tuple[FinalJob, dict[str, Any]]:
    """One real ``find_lr`` call with the plan (and confirm mode): its answer and batches drawn."""
    import warnings

    import lrfinder

    name, seed, schedule, confirm = job
    task = sq_tasks.TASKS[name]
    data = task.data()
    model = sq_tasks.build(task, seed)
    optimizer = task.optimizer(model.parameters(), 1e-3)
    sampler = CountingSampler(len(data.x_train), task.batch_size, 10_000 + seed)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(data.x_train, data.y_train), batch_sampler=sampler
    )
    options: dict[str, Any] = {}
    if confirm:
        val = torch.utils.data.TensorDataset(data.x_val, data.y_val)
        options = {"confirm": True, "confirm_data": torch.utils.data.DataLoader(val, batch_size=256)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = lrfinder.find_lr(
            model,
            loader,
            optimizer=optimizer,
            criterion=task.loss,
            schedule=schedule,
            train_steps=task.steps,
            progress=False,
            **options,
        )
    lr = result.suggestion
    return job, {"lr": None if lr is None else float(lr), "drawn": sampler.drawn}


def final(
    cache: sq.Cache, tasks: Sequence[str], seeds: Sequence[int], workers: int, report_path: Path
) -> list[dict[str, Any]]:
    """Regret and cost of find_lr's plan-aware suggestion and confirm mode, trained as every other row."""
    import json

    sig = library_signature()
    jobs = [(t, s, sc, c) for t in tasks for s in seeds for sc in SCHEDULES for c in (False, True)]
    todo = [j for j in jobs if cache.get(("final", sig, *j)) is None]
    for job, value in sq._run(todo, _final_job, workers, f"find_lr calls (library {sig})"):
        cache.put(("final", sig, *job), value)
    cache.save()
    answers = {j: cache.get(("final", sig, *j)) for j in jobs}
    train_all(
        [
            (t, sc, seed, a["lr"], sq_tasks.TASKS[t].steps, "task", None, False)
            for (t, s, sc, c), a in answers.items()
            if a["lr"]
            for seed in sq.TRAIN_SEEDS
        ],
        cache,
        workers,
        "training at find_lr's answers",
    )
    report = json.loads(report_path.read_text())
    runs = []
    for (t, s, sc, c), a in answers.items():
        entry = report["tasks"][t]
        values = [cache.get(sq.train_key(t, sc, seed, a["lr"])) for seed in sq.TRAIN_SEEDS] if a["lr"] else []
        v = (
            float(np.mean(values))
            if values and all(x is not None and math.isfinite(x) for x in values)
            else math.nan
        )
        untrained, best = entry["v_untrained"], entry["v_best"][sc]
        failed = sq.is_failure(v, untrained)
        runs.append(
            {
                "task": t,
                "suggester": "find_lr confirm=True" if c else "find_lr plan-aware",
                "seed": s,
                "schedule": sc,
                "lr": a["lr"],
                "v": None if failed else v,
                "regret": sq.exact_regret(v, best, untrained),
                "failure": failed,
                "cost": a["drawn"] / sq_tasks.TASKS[t].steps,
            }
        )
    return runs


#: The design and reading chosen on SUITE in issue 11's first pass (frozen before any hold-out result
#: was looked at); ``--frozen`` replays it. The second pass's design, the library's default since, is
#: ``confirm_search.FROZEN``, and ``confirm_search`` is where search designs are now studied.
FROZEN_DESIGN = 0
FROZEN_PICK = "horizon 0.45"


def frozen_check(
    cache: sq.Cache, tasks: Sequence[str], workers: int, seeds: Sequence[int], report_path: Path
) -> None:
    """The frozen rule and confirm design on ``tasks`` (interpolated regret), beside the other rows."""
    import json

    report = json.loads(report_path.read_text())
    untrained = {t: sq_tasks.untrained_loss(sq_tasks.TASKS[t], sq.TRAIN_SEEDS) for t in tasks}
    grids = {(t, sc): load_grid(t, sc, 1.0, cache, untrained[t]) for t in tasks for sc in SCHEDULES}
    confirm = confirm_study(cache, tasks, [DESIGNS[FROZEN_DESIGN]], ["2x"], plan_rule, workers, seeds)
    print(f"tasks {list(tasks)}, range-test seeds {list(seeds)}; interpolated regret except 'trained' rows")
    print(f"| schedule | row {SUMMARY_HEAD[1:]}")
    print("|---|---|---|---|---|---|---|")
    for sc in SCHEDULES:
        n = {t: sq_tasks.TASKS[t].steps for t in tasks}
        single = [
            grids[t, sc].regret(plan_rule(curve_landmarks(cache, t, s), sc, n[t]))
            for t in tasks
            for s in seeds
        ]
        print(f"| {sc} | plan-aware single suggestion " + summary(single))
        for variant in ("best probe", FROZEN_PICK):
            print(
                f"| {sc} | confirm 2x, {variant} "
                + summary(confirm[DESIGNS[FROZEN_DESIGN], "2x", sc, variant][0])
            )
        for name in [*sq.BASELINES, "centered_minimum", *sq.NO_SEARCH]:
            rows = [
                r["regret"]
                for r in report["runs"]
                if r["suggester"] == name
                and r["schedule"] == sc
                and r["task"] in tasks
                and r["seed"] in seeds
            ]
            if rows:
                print(f"| {sc} | {name} (trained) " + summary(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", action="store_true", help="train the 0.5x and 2x grids")
    parser.add_argument("--fit", action="store_true", help="fit the plan-aware rule")
    parser.add_argument("--no-slopes", action="store_true", help="fit offsets only (no train_steps term)")
    parser.add_argument("--confirm", action="store_true", help="simulate confirm-mode designs")
    parser.add_argument(
        "--budget-labels",
        default="2x",
        help=f"confirm budgets, comma-separated, of {', '.join(BUDGET_SETTINGS)} (default: 2x)",
    )
    parser.add_argument("--designs", default="", help="indices into DESIGNS (default: all)")
    parser.add_argument("--tasks", default=",".join(sq_tasks.SUITE))
    parser.add_argument("--check", default=",".join(sq_tasks.HOLDOUT2))
    parser.add_argument("--seeds", default="0,1,2", help="range-test seeds of the confirm study")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--schedules", default=",".join(SCHEDULES), help="schedules of the confirm study")
    parser.add_argument("--final", action="store_true", help="run find_lr itself and train its answers")
    parser.add_argument("--frozen", action="store_true", help="the frozen rule and confirm design on --tasks")
    parser.add_argument(
        "--report",
        default=str(HERE / "results" / "sq_plan_suite.json"),
        help="suggestion_quality's report for the same tasks (grid and other rows)",
    )
    parser.add_argument("--name", default="sq_plan_final", help="base name of the --final result files")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cache = LayeredCache(OWN_CACHE, CACHE)
    tasks = args.tasks.split(",")
    check = [t for t in args.check.split(",") if t]
    workers = max(1, min(2, args.workers))
    if args.budgets:
        ensure_curves(cache, [*tasks, *check], FIT_SEEDS, workers)
        train_all(budget_jobs([*tasks, *check], cache), cache, workers, "budget grids")
    if args.fit:
        fit(cache, tasks, check, not args.no_slopes, Path(args.report))
    if args.confirm:
        seeds = [int(x) for x in args.seeds.split(",")]
        designs = [DESIGNS[int(i)] for i in args.designs.split(",")] if args.designs else DESIGNS
        budgets = args.budget_labels.split(",")
        schedules = args.schedules.split(",")
        result = confirm_study(cache, tasks, designs, budgets, plan_rule, workers, seeds, schedules)
        variants = list(dict.fromkeys(k[3] for k in result))
        print(f"| design | budget | pick | schedule {SUMMARY_HEAD[1:]} cost |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for d, b, v in itertools.product(designs, budgets, variants):
            for sc in [*SCHEDULES, "all"]:
                if sc != "all" and (d, b, sc, v) not in result:
                    continue
                r, c = (
                    result[d, b, sc, v]
                    if sc != "all"
                    else tuple(
                        np.concatenate([result[d, b, x, v][i] for x in SCHEDULES if (d, b, x, v) in result])
                        for i in (0, 1)
                    )
                )
                print(f"| {design_label(d)} | {b} | {v} | {sc} " + summary(r) + f" {c.mean():.2f} |")
    if args.frozen:
        frozen_check(cache, tasks, workers, [int(x) for x in args.seeds.split(",")], Path(args.report))
    if args.final:
        import json

        seeds = [int(s) for s in args.seeds.split(",")]
        report = json.loads(Path(args.report).read_text())
        runs = final(cache, tasks, seeds, workers, Path(args.report))
        others = [r for r in report["runs"] if r["task"] in tasks and r["seed"] in seeds]
        every = runs + others
        names = list(dict.fromkeys(r["suggester"] for r in every))
        out = [f"Command: `python -m benchmarks.quality.plan_confirm {' '.join(sys.argv[1:])}`", ""]
        for sc in SCHEDULES:
            out += [f"### {sc}", "", sq.table(every, names, sc), ""]
        out += ["### All schedules", "", sq.table(every, names, None), ""]
        text = "\n".join(out)
        (HERE / "results" / f"{args.name}.md").write_text(text + "\n")
        (HERE / "results" / f"{args.name}.json").write_text(json.dumps(runs, indent=1))
        print(text)


if __name__ == "__main__":
    main()

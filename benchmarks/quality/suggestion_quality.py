"""Suggestion-quality benchmark: train at each suggested LR and measure the regret against a grid search.

For every task (see ``tasks.py``):

1. grid: train at each LR of a log grid (3 points per decade, 1e-5 to 10) with a constant LR and with
   one-cycle (peak = the LR), each on two training seeds; ``v_best`` is the lowest mean validation loss;
2. range tests: one curve per protocol and range-test seed (lrfinder's engine, torch-lr-finder as
   installed, Lightning's and fastai's protocols rebuilt); every rule reads the same curve;
3. train at every suggested LR under both schedules (same seeds and budget as the grid) and report the
   regret ``(v - v_best) / (v_untrained - v_best)``.

A failure (no suggestion, a non-finite loss in training, or a final validation loss above the untrained
model's) counts as regret 1. Everything is deterministic for given seeds (one torch thread per process).

    python -m benchmarks.quality.suggestion_quality              # the full suite (about 20 min on 1 core)
    python -m benchmarks.quality.suggestion_quality --seeds 0,1,2,3,4,5 --variants --workers 2   # the .md's
    python -m benchmarks.quality.suggestion_quality --quick      # 2 tasks, 2 range-test seeds (2-3 min)
    python -m benchmarks.quality.suggestion_quality --tasks digits_mlp,adding_gru --workers 2
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.quality import protocols
from benchmarks.quality import tasks as sq_tasks
from lrfinder import suggest as rules
from lrfinder.sweep import SweepSettings

HERE = Path(__file__).resolve().parent

GRID = [float(10.0 ** (k / 3)) for k in range(-15, 4)]  # 1e-5 .. 10, 3 per decade
TRAIN_SEEDS = (0, 1)
RANGE_SEEDS = (0, 1, 2)
SCHEDULES = ("constant", "onecycle", "cosine")
DEFAULTS = SweepSettings()
BASELINES = ("torch_lr_finder", "lightning", "fastai")
#: Rows that train at every rung of ``lrfinder.suggest.ladder`` around a rule's suggestion and keep
#: the rung with the lowest validation loss, as a user comparing runs would: name -> rule. The rung is
#: picked on the first training seed alone (one run per rung) and scored like any suggestion, on the
#: mean over both seeds, so the pick does not see all of the noise it is scored on.
LADDERS = {"best of candidates() (6 runs)": rules.DEFAULT_RULE}
#: What a user might do instead of a range test: name -> (LR, optimizer). Prodigy replaces the task's
#: optimizer (``prodigyopt.Prodigy`` with its defaults, lr=1, so the schedule's peak is 1); the other
#: keeps the task's optimizer at the framework's usual default LR. Neither reads a curve.
NO_SEARCH: dict[str, tuple[float, str]] = {
    "prodigy (lr=1, no search)": (1.0, "prodigy"),
    "lr=1e-3 (no search)": (1e-3, "task"),
}
NO_CURVE = "none"
#: Schedules whose grid is a window around another schedule's best: schedule -> (other, points either
#: side). The cosine schedule's best peak lies near one-cycle's (both warm up and anneal), and CPU is short.
GRID_WINDOWS: dict[str, tuple[str, int]] = {"cosine": ("onecycle", 6)}

#: Sweep variants tried with every rule (``--variants``): (label, start_lr, end_lr, num_iter, smooth,
#: threshold). A light average (0.6) was tried as the default and not kept (see the .md).
VARIANTS: list[tuple[str, float, float, int, float, float | None]] = [
    ("s0.6", 1e-7, 10.0, 100, 0.6, 4.0),
]


# -- jobs -----------------------------------------------------------------------------------------


def _init_worker() -> None:
    torch.set_num_threads(1)


def _curve_job(job: tuple[str, str, int]) -> tuple[tuple[str, str, int], dict[str, Any]]:
    task_name, protocol, seed = job
    task = sq_tasks.TASKS[task_name]
    if protocol.startswith("lrf:"):
        _, start, end, n = protocol.split(":")
        curve = protocols.record_lrfinder(task, seed, float(start), float(end), int(n))
    elif protocol == "fastai":
        curve = protocols.fastai_curve(task, seed)
    elif protocol == "lightning":
        curve = protocols.lightning_curve(task, seed)
    elif protocol == "torch_lr_finder":
        curve = protocols.torch_lr_finder_run(task, seed)
    else:
        raise ValueError(protocol)
    return job, curve


TrainJob = tuple[str, str, int, float, str]


def train_key(task: str, schedule: str, seed: int, lr: float, optimizer: str = "task") -> tuple[Any, ...]:
    """The cache key of one training run (the task's optimizer keeps the key it always had)."""
    base = ("train", task, schedule, seed, lr)
    return base if optimizer == "task" else (*base, optimizer)


def _train_job(job: TrainJob) -> tuple[TrainJob, float]:
    task_name, schedule, seed, lr, optimizer = job
    return job, sq_tasks.train(sq_tasks.TASKS[task_name], lr, schedule, seed, optimizer=optimizer)


def is_failure(v: float, untrained: float) -> bool:
    """A run that failed: no finite validation loss, or one above the untrained model's."""
    return not math.isfinite(v) or v > untrained


def exact_regret(v: float, best: float, untrained: float) -> float:
    """``(v - best) / (untrained - best)`` of a mean validation loss ``v``; 1 for a failed run
    (:func:`is_failure`; NaN stands for no suggestion)."""
    return 1.0 if is_failure(v, untrained) else (v - best) / (untrained - best)


def _run(jobs: list[Any], fn: Callable[[Any], Any], workers: int, label: str) -> Iterable[Any]:
    if not jobs:
        return []
    started = time.perf_counter()
    print(f"{label}: {len(jobs)} jobs on {workers} worker(s)", file=sys.stderr, flush=True)
    if workers <= 1:
        _init_worker()
        out = [fn(job) for job in jobs]
    else:
        with multiprocessing.get_context("fork").Pool(workers, initializer=_init_worker) as pool:
            out = list(pool.imap_unordered(fn, jobs, chunksize=1))
    print(f"{label}: done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return out


class Cache:
    """Results already computed, kept in a JSON file so that runs can be resumed and extended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}

    @staticmethod
    def key(parts: Iterable[Any]) -> str:
        return "|".join(repr(p) for p in parts)

    def get(self, parts: Iterable[Any]) -> Any:
        return self.data.get(self.key(parts))

    def put(self, parts: Iterable[Any], value: Any) -> None:
        self.data[self.key(parts)] = value

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data))
        os.replace(tmp, self.path)


def import_means(cache: Cache, path: Path) -> int:
    """Put a committed report's mean validation losses (grid and trained suggestions) into the cache.

    They are what this script computes for the same (task, schedule, LR) with the task's optimizer
    and budget (training is deterministic and the code that trains is unchanged), so a run can
    reuse them instead of training again; ``("train_mean", ...)`` keys mark them. Returns how many.
    """
    report = json.loads(path.read_text())
    count = 0
    for t, entry in report["tasks"].items():
        for sched, grid in entry["grid"].items():
            for lr, v in grid.items():
                cache.put(("train_mean", t, sched, float(lr)), math.nan if v is None else v)
                count += 1
    for r in report["runs"]:
        if r["lr"] and r["suggester"] not in LADDERS:
            value = math.nan if r["v"] is None else r["v"]
            cache.put(("train_mean", r["task"], r["schedule"], r["lr"]), value)
            count += 1
    return count


def known(cache: Cache, t: str, sched: str, lr: float, optimizer: str = "task") -> bool:
    """Whether the mean validation loss of this run is in the cache (trained or imported)."""
    if optimizer == "task" and cache.get(("train_mean", t, sched, lr)) is not None:
        return True
    return all(cache.get(train_key(t, sched, seed, lr, optimizer)) is not None for seed in TRAIN_SEEDS)


def mean_loss(cache: Cache, t: str, sched: str, lr: float, optimizer: str = "task") -> float:
    """Mean final validation loss over the training seeds; NaN when a run diverged or is missing."""
    imported = cache.get(("train_mean", t, sched, lr)) if optimizer == "task" else None
    if imported is not None:
        return float(imported)
    values = [cache.get(train_key(t, sched, seed, lr, optimizer)) for seed in TRAIN_SEEDS]
    return math.nan if any(v is None or not math.isfinite(v) for v in values) else float(np.mean(values))


def grid_lrs(cache: Cache, t: str, sched: str) -> list[float]:
    """The grid of ``sched`` for task ``t``: GRID, or its window (GRID_WINDOWS) once the base is known.

    A window whose best (among the points already known) lies on its edge grows by two points on
    that side, so the best is always inside it once everything asked for is trained.
    """
    if sched not in GRID_WINDOWS:
        return list(GRID)
    base, width = GRID_WINDOWS[sched]
    values = {lr: mean_loss(cache, t, base, lr) for lr in GRID}
    finite = {lr: v for lr, v in values.items() if math.isfinite(v)}
    if len(finite) < len(GRID) and any(not known(cache, t, base, lr) for lr in GRID):
        raise LookupError(f"the {base} grid of {t} is needed first")
    best = GRID.index(min(finite, key=finite.get))
    low, high = max(0, best - width), min(len(GRID), best + width + 1)
    while True:
        if not all(known(cache, t, sched, GRID[i]) for i in range(low, high)):
            return GRID[low:high]
        mine = {i: mean_loss(cache, t, sched, GRID[i]) for i in range(low, high)}
        mine = {i: v for i, v in mine.items() if math.isfinite(v)}
        if not mine:
            return GRID[low:high]
        top = min(mine, key=mine.get)
        if top == low and low > 0:
            low = max(0, low - 2)
        elif top == high - 1 and high < len(GRID):
            high = min(len(GRID), high + 2)
        else:
            return GRID[low:high]


# -- suggesters -----------------------------------------------------------------------------------


def ladder_key(start: float, end: float, n: int) -> str:
    return f"lrf:{start!r}:{end!r}:{n}"


def suggesters(
    variants: bool, chosen_rules: tuple[str, ...] = tuple(rules.RULES)
) -> dict[str, tuple[str, Callable[[dict[str, Any]], float | None]]]:
    """name -> (curve protocol it reads, function of that curve giving an LR or None)."""
    out: dict[str, tuple[str, Callable[[dict[str, Any]], float | None]]] = {}
    default_ladder = ladder_key(DEFAULTS.start_lr, DEFAULTS.end_lr, DEFAULTS.num_iter)

    def lrfinder_rule(rule: str, smooth: float, threshold: float | None) -> Callable[..., float | None]:
        def apply(curve: dict[str, Any]) -> float | None:
            lrs, raw, smoothed = protocols.replay(curve, smooth, threshold)
            return rules.suggest(lrs, smoothed, rule, raw).lr

        return apply

    for rule in chosen_rules:
        out[rule] = (default_ladder, lrfinder_rule(rule, DEFAULTS.smooth, DEFAULTS.diverge_threshold))
    out["torch_lr_finder"] = ("torch_lr_finder", lambda c: c["suggestion"])
    out["lightning"] = ("lightning", protocols.lightning_suggestion)
    out["fastai"] = ("fastai", protocols.fastai_valley)
    for name, (lr, _) in NO_SEARCH.items():
        out[name] = (NO_CURVE, lambda c, lr=lr: lr)
    if variants:
        for label, start, end, n, smooth, threshold in VARIANTS:
            for rule in rules.RULES:
                out[f"{rule} [{label}]"] = (ladder_key(start, end, n), lrfinder_rule(rule, smooth, threshold))
    return out


# -- the benchmark ----------------------------------------------------------------------------------


def check_replay(task_name: str, seed: int, cache: Cache) -> None:
    """Fail loudly unless replaying the recorded curve gives exactly what a default sweep records."""
    import lrfinder

    torch.set_num_threads(1)
    result = lrfinder.find_lr(sq_tasks.step_function(sq_tasks.TASKS[task_name], seed), progress=False)
    curve = cache.get(
        ("curve", task_name, ladder_key(DEFAULTS.start_lr, DEFAULTS.end_lr, DEFAULTS.num_iter), seed)
    )
    lrs, losses, smoothed = protocols.replay(curve, DEFAULTS.smooth, DEFAULTS.diverge_threshold)
    for name, ours, engine in (
        ("lrs", lrs, result.lrs),
        ("losses", losses, result.losses),
        ("smoothed", smoothed, result.smoothed),
    ):
        if not np.array_equal(ours, engine, equal_nan=True):
            raise AssertionError(f"replayed {name} differ from a default find_lr sweep on {task_name}")


def curve_cost(curve: dict[str, Any] | None, name: str) -> int:
    """Batches a protocol's range test draws: its recorded curve up to where its own stop falls."""
    if curve is None:
        return 0
    if name in rules.RULES or " [" in name:  # lrfinder rules: the default sweep stops where replay stops
        return len(protocols.replay(curve, DEFAULTS.smooth, DEFAULTS.diverge_threshold)[0])
    return len(curve["lrs"])


def run(
    task_names: list[str],
    range_seeds: tuple[int, ...],
    workers: int,
    variants: bool,
    cache: Cache,
    extra_ladders: tuple[str, ...] = (),
    chosen_rules: tuple[str, ...] = tuple(rules.RULES),
    candidates_row: bool = True,
) -> dict[str, Any]:
    tasks = {name: sq_tasks.TASKS[name] for name in task_names}
    chosen = suggesters(variants, chosen_rules)
    ladders = LADDERS if candidates_row else {}
    protocols_needed = sorted(
        ({protocol for protocol, _ in chosen.values()} | set(extra_ladders)) - {NO_CURVE}
    )

    # 1. range-test curves
    jobs = [
        (t, p, s)
        for t in tasks
        for p in protocols_needed
        for s in range_seeds
        if cache.get(("curve", t, p, s)) is None
    ]
    for job, curve in _run(jobs, _curve_job, workers, "range tests"):
        cache.put(("curve", *job), curve)
    cache.save()

    check_replay(next(iter(tasks)), range_seeds[0], cache)

    # 2. suggestions
    suggested: dict[tuple[str, str, int], float | None] = {}
    for t in tasks:
        for name, (protocol, fn) in chosen.items():
            for s in range_seeds:
                try:
                    lr = fn(None if protocol == NO_CURVE else cache.get(("curve", t, protocol, s)))
                except Exception as error:  # a baseline that crashes gives no suggestion
                    print(f"{name} on {t} seed {s}: {error!r}", file=sys.stderr)
                    lr = None
                suggested[(t, name, s)] = None if lr is None or not math.isfinite(lr) else float(lr)

    rungs = {
        (t, row, s): [] if lr is None else [float(x) for x in rules.ladder(lr)]
        for (t, name, s), lr in suggested.items()
        for row, rule in ladders.items()
        if name == rule
    }
    optimizer_of = {name: opt for name, (_, opt) in NO_SEARCH.items()}

    # 3. training: the grid and every suggested LR, every schedule, every training seed
    def train_missing(runs: set[tuple[str, str, float, str]], label: str) -> None:
        jobs = [
            (t, sched, seed, lr, opt)
            for t, sched, lr, opt in sorted(runs)
            if not known(cache, t, sched, lr, opt)
            for seed in TRAIN_SEEDS
            if cache.get(train_key(t, sched, seed, lr, opt)) is None
        ]
        # longest first, so that two workers finish together
        heavy = (
            "adding_gru",
            "digits_cnn",
            "grammar_transformer",
            "digits_resnet_nesterov",
            "sums_lstm_nadam",
        )
        jobs.sort(key=lambda j: -sq_tasks.TASKS[j[0]].steps * (3 if j[0] in heavy else 1))
        for done, (job, value) in enumerate(_run(jobs, _train_job, workers, label), start=1):
            cache.put(train_key(*job), value)
            if done % 20 == 0:
                cache.save()
        cache.save()

    train_missing(
        {
            (t, sched, lr, "task")
            for t in tasks
            for sched in SCHEDULES
            if sched not in GRID_WINDOWS
            for lr in GRID
        },
        "training runs (grids)",
    )
    while True:  # windows grow while their best lies on an edge
        grids = {(t, sched): grid_lrs(cache, t, sched) for t in tasks for sched in SCHEDULES}
        todo = {
            (t, sched, lr, "task")
            for (t, sched), lrs in grids.items()
            for lr in lrs
            if not known(cache, t, sched, lr)
        }
        if not todo:
            break
        train_missing(todo, "training runs (grid windows)")
    train_missing(
        {(t, sched, lr, "task") for (t, sched), lrs in grids.items() for lr in lrs}
        | {
            (t, sched, lr, optimizer_of.get(name, "task"))
            for (t, name, _), lr in suggested.items()
            if lr
            for sched in SCHEDULES
        }
        | {(t, sched, lr, "task") for (t, _, _), lrs in rungs.items() for lr in lrs for sched in SCHEDULES},
        "training runs",
    )

    def mean_v(t: str, sched: str, lr: float, optimizer: str = "task") -> float:
        return mean_loss(cache, t, sched, lr, optimizer)

    def best_rung(t: str, sched: str, ladder: list[float]) -> float | None:
        """The rung whose first training seed ended lowest (one run per rung, as a user would)."""
        tried = {lr: cache.get(("train", t, sched, TRAIN_SEEDS[0], lr)) for lr in ladder}
        finite = {lr: v for lr, v in tried.items() if v is not None and math.isfinite(v)}
        return min(finite, key=finite.get) if finite else None

    report: dict[str, Any] = {"tasks": {}, "runs": []}
    for t, task in tasks.items():
        untrained = sq_tasks.untrained_loss(task, TRAIN_SEEDS)
        entry: dict[str, Any] = {
            "description": task.description,
            "holdout": task.holdout,
            "v_untrained": untrained,
            "grid": {},
            "v_best": {},
            "lr_best": {},
        }
        for sched in SCHEDULES:
            grid = {lr: mean_v(t, sched, lr) for lr in grids[t, sched]}
            finite = {lr: v for lr, v in grid.items() if math.isfinite(v)}
            best_lr = min(finite, key=finite.get)
            entry["grid"][sched] = {repr(lr): (v if math.isfinite(v) else None) for lr, v in grid.items()}
            entry["v_best"][sched], entry["lr_best"][sched] = finite[best_lr], best_lr
        report["tasks"][t] = entry
        for (tt, name, s), given in [*suggested.items(), *rungs.items()]:
            if tt != t:
                continue
            protocol = chosen[name][0] if name in chosen else chosen[ladders[name]][0]
            drawn = curve_cost(
                None if protocol == NO_CURVE else cache.get(("curve", t, protocol, s)),
                name if name in chosen else ladders[name],
            )
            cost = drawn / task.steps + (len(given) - 1 if isinstance(given, list) else 0)
            for sched in SCHEDULES:
                lr = best_rung(t, sched, given) if isinstance(given, list) else given
                v = mean_v(t, sched, lr, optimizer_of.get(name, "task")) if lr else math.nan
                best = entry["v_best"][sched]
                failed, regret = is_failure(v, untrained), exact_regret(v, best, untrained)
                report["runs"].append(
                    {
                        "task": t,
                        "suggester": name,
                        "seed": s,
                        "schedule": sched,
                        "lr": lr,
                        "v": None if not math.isfinite(v) else v,
                        "regret": regret,
                        "failure": failed,
                        "cost": cost,
                    }
                )
    return report


# -- tables ---------------------------------------------------------------------------------------


def summarize(runs: list[dict[str, Any]]) -> dict[str, float]:
    regrets = np.array([r["regret"] for r in runs])
    spreads, ranges = [], []
    by_task: dict[str, dict[int, float]] = {}
    for r in runs:  # one suggestion per (task, seed), whatever the schedule it was trained with
        if r["lr"]:
            by_task.setdefault(r["task"], {})[r["seed"]] = math.log10(r["lr"])
    for per_seed in by_task.values():
        values = list(per_seed.values())
        if len(values) > 1:
            spreads.append(float(np.std(values)))
            ranges.append(float(np.ptp(values)))
    return {
        "n": len(runs),
        "median": float(np.median(regrets)),
        "mean": float(np.mean(regrets)),
        "worst": float(np.max(regrets)),
        "share_ok": float(np.mean(regrets <= 0.05)),
        "failures": int(sum(r["failure"] for r in runs)),
        "cost": float(np.mean([r.get("cost", math.nan) for r in runs])),
        "spread_sd": float(np.mean(spreads)) if spreads else math.nan,
        "spread_range_worst": float(np.max(ranges)) if ranges else math.nan,
    }


def table(runs: list[dict[str, Any]], names: list[str], schedule: str | None) -> str:
    head = (
        "| rule | runs | median | mean | worst | share <= 0.05 | failures | seed spread sd (dec) "
        "| worst seed range (dec) | cost (batches / train_steps) |\n" + "|---" * 10 + "|"
    )
    lines = [head]
    for name in names:
        chosen = [
            r for r in runs if r["suggester"] == name and (schedule is None or r["schedule"] == schedule)
        ]
        if not chosen:
            continue
        s = summarize(chosen)
        lines.append(
            f"| {name} | {s['n']} | {s['median']:.3f} | {s['mean']:.3f} | {s['worst']:.3f} | "
            f"{100 * s['share_ok']:.0f}% | {s['failures']} | {s['spread_sd']:.2f} | "
            f"{s['spread_range_worst']:.2f} | {s['cost']:.2f} |"
        )
    return "\n".join(lines)


def markdown(report: dict[str, Any], command: str) -> str:
    runs = report["runs"]
    names = list(dict.fromkeys(r["suggester"] for r in runs))
    design = [r for r in runs if not report["tasks"][r["task"]]["holdout"]]
    holdout = [r for r in runs if report["tasks"][r["task"]]["holdout"]]
    out = [f"Command: `{command}`", ""]
    out += [
        "### Tasks",
        "",
        "| task | v_untrained | " + " | ".join(f"best LR {sc} (v_best)" for sc in SCHEDULES) + " |",
        "|---|---|" + "---|" * len(SCHEDULES),
    ]
    for t, e in report["tasks"].items():
        held = " (held out)" if e["holdout"] else ""
        out.append(
            f"| {t}{held}: {e['description']} | {e['v_untrained']:.3f} | "
            + " | ".join(f"{e['lr_best'][sc]:.2g} ({e['v_best'][sc]:.4f})" for sc in SCHEDULES)
            + " |"
        )
    parts = (("all tasks", runs), ("design tasks only", design), ("held-out task only", holdout))
    for label, chosen in parts:
        if not chosen:
            continue
        out += ["", f"### All schedules, {label}", "", table(chosen, names, None)]
        for sched in SCHEDULES:
            out += ["", f"### {sched}, {label}", "", table(chosen, names, sched)]
    out += ["", "### Appendix: per task (regret median / worst per schedule; suggested LRs per seed)", ""]
    for t in report["tasks"]:
        out += [
            f"#### {t}",
            "",
            "| rule | " + " | ".join(f"{sc} median | {sc} worst" for sc in SCHEDULES) + " | suggestions |",
            "|---|" + "---|---|" * len(SCHEDULES) + "---|",
        ]
        for name in names:
            rs = [r for r in runs if r["task"] == t and r["suggester"] == name]
            cells = []
            for sc in SCHEDULES:
                reg = [r["regret"] for r in rs if r["schedule"] == sc]
                cells.append(f"{np.median(reg):.3f} | {max(reg):.3f}")
            lrs = ", ".join(
                "none" if r["lr"] is None else f"{r['lr']:.2g}" for r in rs if r["schedule"] == "constant"
            )
            out.append(f"| {name} | " + " | ".join(cells) + f" | {lrs} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 tasks and 2 range-test seeds (2-3 min)")
    parser.add_argument("--tasks", help="comma-separated task names (default: all)")
    parser.add_argument("--seeds", default=None, help="range-test seeds, comma-separated (default 0,1,2)")
    parser.add_argument("--workers", type=int, default=1, help="processes (at most 2)")
    parser.add_argument("--variants", action="store_true", help="also try the sweep-setting variants")
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for the results")
    parser.add_argument("--name", default=None, help="base name of the result files")
    parser.add_argument(
        "--ladders",
        default="",
        help="extra lrfinder sweeps to record for explore.py (no training), "
        "comma-separated START:END:STEPS, e.g. 1e-7:10:200",
    )
    parser.add_argument(
        "--rules",
        default=",".join(rules.RULES),
        help="lrfinder rules to train, comma-separated (default: all)",
    )
    parser.add_argument(
        "--import-means",
        default="",
        help="committed reports (comma-separated) whose mean losses to reuse, not retrain",
    )
    parser.add_argument(
        "--no-candidates",
        action="store_true",
        help="leave out the 'best of candidates()' row (it trains six runs per suggestion)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    names = list(sq_tasks.SUITE)
    seeds = RANGE_SEEDS
    if args.quick:
        names, seeds = ["breast_logreg", "synth_mlp_nesterov"], (0, 1)
    if args.tasks:
        names = args.tasks.split(",")
        unknown = set(names) - set(sq_tasks.TASKS)
        if unknown:
            parser.error(f"unknown tasks {sorted(unknown)}; known: {', '.join(sq_tasks.TASKS)}")
    if args.seeds:
        seeds = tuple(int(s) for s in args.seeds.split(","))
    out = Path(args.out)
    cache = Cache(out / "cache" / "suggestion_quality_cache.json")
    try:
        extra = tuple(
            ladder_key(float(a), float(b), int(n))
            for a, b, n in (item.split(":") for item in args.ladders.split(",") if item)
        )
    except ValueError:
        parser.error(f"--ladders takes START:END:STEPS items, e.g. 1e-7:10:200; got {args.ladders!r}")
    for path in filter(None, args.import_means.split(",")):
        print(f"imported {import_means(cache, Path(path))} mean losses from {path}", file=sys.stderr)
    chosen_rules = tuple(args.rules.split(",")) if args.rules else ()
    if set(chosen_rules) - set(rules.RULES):
        parser.error(
            f"unknown rules {sorted(set(chosen_rules) - set(rules.RULES))}; known: {', '.join(rules.RULES)}"
        )
    report = run(
        names,
        seeds,
        max(1, min(2, args.workers)),
        args.variants,
        cache,
        extra,
        chosen_rules,
        not args.no_candidates,
    )
    report["config"] = {
        "grid": GRID,
        "train_seeds": TRAIN_SEEDS,
        "range_seeds": seeds,
        "schedules": SCHEDULES,
        "default_rule": rules.DEFAULT_RULE,
        "sweep_defaults": DEFAULTS.to_dict(),
        "rules": list(rules.RULES),
    }
    base = args.name or ("suggestion_quality_quick" if args.quick else "suggestion_quality")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{base}.json").write_text(json.dumps(report, indent=1))
    with open(out / f"{base}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(report["runs"][0]))
        writer.writeheader()
        writer.writerows(report["runs"])
    given = argv if argv is not None else sys.argv[1:]
    command = "python -m benchmarks.quality.suggestion_quality " + " ".join(given)
    text = markdown(report, command.strip())
    (out / f"{base}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

"""Would longer probes for the two best LRs pick better? An estimate, over budget on purpose.

Reads the default search's runs that ``confirm_search`` last wrote (``results/cache/
confirm_search_runs.json``; run ``confirm_search --designs default`` on the same tasks first), trains
each run's two best-scoring probes again for ``share x train_steps`` steps (from the same initial
weights and batch stream, so under a constant LR this is exactly continuing them), keeps the better,
and scales its LR for the run's length as confirm mode does (``horizon_for`` of its generalisation
gap). Prints the interpolated regret per schedule beside the default's, and the cost of the second
rung: continuing two probes (constant) or training them again from the start (one-cycle, cosine,
whose schedule is compressed to the probe's length and cannot be continued). It measures how much a
second, longer rung could gain before anyone builds one (probes that resume from kept states).

    python -m benchmarks.quality.longer_finalists --tasks digits_mlp,adding_gru --shares 0.5,0.7
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import numpy as np

from benchmarks.quality import confirm_search as cs
from benchmarks.quality import plan_confirm as pc
from benchmarks.quality import suggestion_quality as sq
from benchmarks.quality import tasks as sq_tasks
from lrfinder.confirm import ConfirmSettings, Probe, generalisation_gap, horizon_for

Job = tuple[str, str, int, float, int]  # task, schedule, seed, lr, steps


def _train(job: Job) -> tuple[Job, tuple[float, list[float]]]:
    task, schedule, seed, lr, steps = job
    losses: list[float] = []
    score = sq_tasks.train(
        sq_tasks.TASKS[task], lr, schedule, seed, steps, "task", pc.PROBE_DATA_OFFSET + seed, False, losses
    )
    return job, (score if math.isfinite(score) else math.inf, losses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", required=True)
    parser.add_argument("--shares", default="0.5,0.7")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    tasks = args.tasks.split(",")
    shares = [float(x) for x in args.shares.split(",")]
    runs: dict[str, Any] = json.loads(cs.RUNS.read_text())
    cells = [(t, sc, s) for t in tasks for sc in sq.SCHEDULES for s in sq.RANGE_SEEDS]
    missing = [c for c in cells if f"default|{c[0]}|{c[1]}|{c[2]}" not in runs]
    if missing:
        raise SystemExit(f"no default search for {missing[:3]}: run confirm_search --designs default first")
    jobs: set[Job] = set()
    finalists: dict[tuple[str, str, int], list[float]] = {}
    for t, sc, s in cells:
        probes = [(lr, v) for lr, v in runs[f"default|{t}|{sc}|{s}"]["probes"] if math.isfinite(v)]
        finalists[t, sc, s] = [lr for lr, _ in sorted(probes, key=lambda p: (p[1], p[0]))[:2]]
        for share in shares:
            steps = round(share * sq_tasks.TASKS[t].steps)
            jobs |= {(t, sc, s, lr, steps) for lr in finalists[t, sc, s]}
    done = dict(sq._run(sorted(jobs), _train, args.workers, "finalists"))
    settings = ConfirmSettings()
    cache = pc.LayeredCache(cs.CACHE, pc.CACHE)
    untrained = {t: sq_tasks.untrained_loss(sq_tasks.TASKS[t], sq.TRAIN_SEEDS) for t in tasks}
    grids = {(t, sc): pc.load_grid(t, sc, 1.0, cache, untrained[t]) for t in tasks for sc in sq.SCHEDULES}
    command = f"python -m benchmarks.quality.longer_finalists --tasks {args.tasks} --shares {args.shares}"
    print(f"Command: `{command}`\n")
    print("| pick | schedule " + pc.SUMMARY_HEAD + " second rung's cost / train_steps |")
    print("|---|---|---|---|---|---|---|---|")
    for label in ["default", *shares]:
        for sc in [*sq.SCHEDULES, "all"]:
            regrets, costs = [], []
            for t, sc2, s in cells:
                if sc not in (sc2, "all"):
                    continue
                out = runs[f"default|{t}|{sc2}|{s}"]
                n = sq_tasks.TASKS[t].steps
                if label == "default":
                    kept, cost = out["kept"], 0.0
                else:
                    steps = round(float(label) * n)
                    kept, cost = None, 0.0
                    scored = [(done[t, sc2, s, lr, steps], lr) for lr in finalists[t, sc2, s]]
                    # constant: continue the two probes; else train them again from the start
                    cost = len(scored) * (steps - (out["probe_steps"] if sc2 == "constant" else 0)) / n
                    finite = [(v, lr, losses) for (v, losses), lr in scored if math.isfinite(v)]
                    if finite:
                        score, lr, losses = min(finite, key=lambda x: (x[0], x[1]))
                        start = sq_tasks.val_loss(sq_tasks.TASKS[t], sq_tasks.build(sq_tasks.TASKS[t], s))
                        probe = Probe(lr=lr, steps=steps, round=1, losses=tuple(losses), score=score)
                        exponent = horizon_for(generalisation_gap(probe, start), settings)
                        kept = lr * (steps / n) ** exponent if steps < n else lr
                regrets.append(grids[t, sc2].regret(kept))
                costs.append(cost)
            name = "default search" if label == "default" else f"best of 2 at {label} x train_steps"
            print(f"| {name} | {sc} " + pc.summary(regrets) + f" {np.mean(costs):.2f} |")


if __name__ == "__main__":
    main()

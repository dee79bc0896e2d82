"""How far below the range test's blow-up do the suggestion and the grid's best LR lie?

For every task, schedule and range-test seed this replays the range test confirm mode runs at a 2x
budget (as ``confirm_search`` does), takes find_lr's plan-aware suggestion (the candidates' centre)
and the range test's last LR (where its loss blew up: the ceiling), and prints the percentiles of
log10(ceiling / centre) and log10(ceiling / grid's best LR), then every run whose centre lies more
than ``--beyond`` decades below the ceiling. It is the evidence behind ``ConfirmSettings.centre_reach``.

    python -m benchmarks.quality.centre_distance --tasks digits_mlp,adding_gru --beyond 3
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from benchmarks.quality import confirm_search as cs
from benchmarks.quality import plan_confirm as pc
from benchmarks.quality import suggestion_quality as sq
from benchmarks.quality import tasks as sq_tasks
from lrfinder.confirm import plan_probes

PERCENTILES = (0, 5, 25, 50, 75, 95, 99, 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default=",".join(cs.TUNING))
    parser.add_argument("--beyond", type=float, default=3.0)
    args = parser.parse_args()
    cache = pc.LayeredCache(cs.CACHE, pc.CACHE)
    rows = []
    for t in args.tasks.split(","):
        task = sq_tasks.TASKS[t]
        n = task.steps
        untrained = sq_tasks.untrained_loss(task, sq.TRAIN_SEEDS)
        plan = plan_probes(
            2 * n, sq.DEFAULTS.num_iter, cs.DESIGNS["default"], train_steps=n, shorten_range=True
        )
        for schedule in sq.SCHEDULES:
            grid = pc.load_grid(t, schedule, 1.0, cache, untrained)
            if grid is None:
                raise SystemExit(f"{t} {schedule}: no grid in the cache; run suggestion_quality first")
            best = 10 ** float(grid.log_lrs[int(np.argmin(grid.values))])
            for seed in sq.RANGE_SEEDS:
                key = sq.Cache.key(("curve", t, pc.range_ladder(plan.range_steps), seed))
                curve = cache.data.get(key) or cache.base.data.get(key)
                if curve is None:
                    raise SystemExit(f"{t} seed {seed}: no range test in the cache; run confirm_search first")
                centre, ceiling = cs.plan_suggestion(t, schedule, curve)
                rows.append((t, schedule, seed, centre, ceiling, best))
    below = [math.log10(r[4] / r[3]) for r in rows if r[3]]
    best_below = [math.log10(r[4] / r[5]) for r in rows]
    command = f"python -m benchmarks.quality.centre_distance --tasks {args.tasks} --beyond {args.beyond}"
    print(f"Command: `{command}`\n")
    missing = len(rows) - len(below)
    print(f"{len(rows)} runs; {missing} without a suggestion. Percentiles {PERCENTILES}, decades:")
    print("* ceiling / centre:", " ".join(f"{x:.2f}" for x in np.percentile(below, PERCENTILES)))
    print("* ceiling / grid's best LR:", " ".join(f"{x:.2f}" for x in np.percentile(best_below, PERCENTILES)))
    print(f"\nRuns whose centre lies more than {args.beyond} decades below the ceiling:")
    for t, schedule, seed, centre, ceiling, best in rows:
        if centre and math.log10(ceiling / centre) > args.beyond:
            where = f"centre {centre:.2g}, ceiling {ceiling:.2g}, grid's best {best:.2g}"
            print(f"* {t} {schedule} seed {seed}: {where}")


if __name__ == "__main__":
    main()

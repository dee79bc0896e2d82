"""How rough is each task's grid? The regret of the LRs half a grid step either side of the best.

Regret is measured on the grid's own two training seeds, so an answer next to the grid's best LR
can still score far from 0 where the validation loss jumps between neighbouring LRs (a jagged grid:
the best point was partly luck of those seeds). For every task and schedule this trains at
``lr_best * 10 ** (+-1/6)`` (half the grid's third-of-a-decade step) on ``TRAIN_SEEDS`` and reports
the exact regret of each, against the grid's ``v_best`` and ``v_untrained`` from a report of
``suggestion_quality``. A cell where even the better neighbour is above 0.05 is one that no method
reaches within 0.05 unless it lands on the grid's own point; where the worse one is, a method within
a sixth of a decade of the best may still miss.

    python -m benchmarks.quality.noise_floor --reports sq_plan_suite,sq_plan_holdouts --workers 2
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from benchmarks.quality import suggestion_quality as sq

STEP = 1 / 6  # decades: half the grid's spacing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", required=True, help="report names under results/, comma-separated")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    entries: dict[str, Any] = {}
    for name in args.reports.split(","):
        entries.update(json.loads((sq.HERE / "results" / f"{name}.json").read_text())["tasks"])
    jobs: list[sq.TrainJob] = [
        (t, sc, seed, e["lr_best"][sc] * 10.0**sign, "task")
        for t, e in entries.items()
        for sc in sq.SCHEDULES
        for sign in (-STEP, STEP)
        for seed in sq.TRAIN_SEEDS
    ]
    done = dict(sq._run(jobs, sq._train_job, args.workers, "training runs (grid neighbours)"))
    print(f"Command: `python -m benchmarks.quality.noise_floor --reports {args.reports}`\n")
    print("| task | schedule | best LR | regret at best / 10^(1/6) | at best * 10^(1/6) |")
    print("|---|---|---|---|---|")
    better, worse = [], []
    for t, e in entries.items():
        for sc in sq.SCHEDULES:
            pair = []
            for sign in (-STEP, STEP):
                lr = e["lr_best"][sc] * 10.0**sign
                v = float(np.mean([done[t, sc, s, lr, "task"] for s in sq.TRAIN_SEEDS]))
                pair.append(sq.exact_regret(v, e["v_best"][sc], e["v_untrained"]))
            better.append(min(pair))
            worse.append(max(pair))
            print(f"| {t} | {sc} | {e['lr_best'][sc]:.3g} | {pair[0]:.3f} | {pair[1]:.3f} |")
    cells = len(better)
    print(
        f"\n{cells} cells: the better neighbour is above 0.05 in {sum(r > 0.05 for r in better)}, "
        f"the worse one in {sum(r > 0.05 for r in worse)}; "
        f"median regret of the better {np.median(better):.3f}, of the worse {np.median(worse):.3f}"
    )


if __name__ == "__main__":
    main()

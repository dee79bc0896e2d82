"""How far the best one-cycle LR moves when OneCycleLR switches on a momentum the optimizer lacked.

``OneCycleLR``'s defaults cycle the momentum from 0.95 to 0.85 and back, and for an SGD or RMSprop
with momentum 0 that switches it on. Heavy-ball momentum ``m`` multiplies the step by ``1 / (1 - m)``,
so the peak LR that trains best should fall by about ``log10(1 - 0.85) = -0.82`` decades
(``lrfinder.suggest.SWITCHED_ON_MOMENTUM_FACTOR``). For every benchmark task whose optimizer has a
momentum of 0, this trains the one-cycle grid twice, with and without the momentum cycling, and
prints where each grid's best LR lies (mean validation loss over the training seeds).

    python -m benchmarks.quality.momentum_shift --workers 2
"""

from __future__ import annotations

import argparse
import dataclasses
import math

import numpy as np

from benchmarks.quality import suggestion_quality as sq
from benchmarks.quality import tasks as sq_tasks

Job = tuple[str, bool, float, int]  # task, cycle momentum, LR, training seed


def _train(job: Job) -> tuple[Job, float]:
    name, cycle, lr, seed = job
    task = dataclasses.replace(sq_tasks.TASKS[name], cycle_momentum=cycle)
    return job, sq_tasks.train(task, lr, "onecycle", seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    names = [name for name, task in sq_tasks.TASKS.items() if sq_tasks.switches_on_momentum(task)]
    jobs = [(n, c, lr, s) for n in names for c in (False, True) for lr in sq.GRID for s in sq.TRAIN_SEEDS]
    losses = dict(sq._run(jobs, _train, args.workers, "training runs"))

    def best(name: str, cycle: bool) -> float:
        means = [np.mean([losses[name, cycle, lr, s] for s in sq.TRAIN_SEEDS]) for lr in sq.GRID]
        finite = [m if math.isfinite(m) else math.inf for m in means]
        return math.log10(sq.GRID[int(np.argmin(finite))])

    print("| task | best log10 LR, momentum 0 | best log10 LR, OneCycleLR's momentum | shift (decades) |")
    print("|---|---|---|---|")
    for name in names:
        off, on = best(name, False), best(name, True)
        print(f"| {name} | {off:+.2f} | {on:+.2f} | {on - off:+.2f} |")
    print(f"\nexpected from 1 / (1 - 0.85): {math.log10(1 - 0.85):+.2f} decades")


if __name__ == "__main__":
    main()

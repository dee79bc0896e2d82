"""How long must a probe be to rank the LRs as the full run does?

Trains one task at a few LRs for several shares of its ``train_steps`` (each run from the same
seeded initial weights and the probes' batch stream, as confirm mode's probes start), and prints the
validation loss of each: the LR that scores best at a share is the one a probe of that length would
keep. Where the ranking settles only near the full length, no probe within confirm mode's budget
(five probes of about 0.3 x ``train_steps`` at 2x) can see it.

    python -m benchmarks.quality.probe_length --task adding_gru_rmsprop --lrs 0.0017,0.005,0.01,0.02,0.05
"""

from __future__ import annotations

import argparse

from benchmarks.quality import plan_confirm as pc
from benchmarks.quality import suggestion_quality as sq
from benchmarks.quality import tasks as sq_tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--lrs", required=True, help="comma-separated LRs")
    parser.add_argument("--schedule", default="constant")
    parser.add_argument("--shares", default="0.28,0.5,0.7,1.0", help="probe lengths / train_steps")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    n = sq_tasks.TASKS[args.task].steps
    lrs = [float(x) for x in args.lrs.split(",")]
    lengths = [max(1, round(float(share) * n)) for share in args.shares.split(",")]
    data_seed = pc.PROBE_DATA_OFFSET + args.seed  # the batch stream confirm mode's probes draw

    def job(lr: float, k: int) -> pc.Job:
        return (args.task, args.schedule, args.seed, lr, k, "task", data_seed, False)

    done = dict(sq._run([job(lr, k) for k in lengths for lr in lrs], pc._job, args.workers, "probes"))
    print(f"{args.task}, {args.schedule}, seed {args.seed}, train_steps {n}: validation loss after k steps")
    print("| k (share) | " + " | ".join(f"{lr:g}" for lr in lrs) + " | best |")
    print("|---|" + "---|" * (len(lrs) + 1))
    for k in lengths:
        values = [done[job(lr, k)] for lr in lrs]
        best = lrs[min(range(len(lrs)), key=lambda i: values[i])]
        print(f"| {k} ({k / n:.2f}) | " + " | ".join(f"{v:.3f}" for v in values) + f" | {best:g} |")


if __name__ == "__main__":
    main()

"""PyTorch range test on CPU: lrfinder against a bare training loop and torch-lr-finder.

Run by hand from the repository root (never part of the test suite)::

    python -m benchmarks.speed.torch_cpu --rounds 15 --memory-runs 3

Each run times the same 100 optimizer steps on the same data (sklearn's digits), on a fresh
model, with one thread and an LR ladder kept below divergence so that every method runs all of
them. Time: per model, one warm process runs every method back to back for a number of rounds
(the order rotating from round to round, the first round discarded as warm-up), so a machine
that slows down or speeds up affects all methods alike; each ratio is the median of the
per-round ratios. Memory: the growth of peak RSS (``ru_maxrss``) during the timed part, in a
fresh process per run (a high-water mark cannot be reset within a process). Methods:

* ``bare``: the training loop a user writes (set LR, zero_grad, forward, loss, backward, step,
  ``loss.item()``), with the DataLoader cycled the same way;
* ``lrfinder``: ``find_lr`` with the model's optimizer and the default ``sync_every=1`` on CPU,
  snapshot and restore included;
* ``lrfinder_sync8``: the same with losses read back in blocks of 8 steps, the accelerator
  setting, to measure what per-step host syncs cost on a CPU;
* ``torch_lr_finder``: ``LRFinder(...)``, ``range_test(...)`` and ``reset()`` of
  torch-lr-finder (``pip install torch-lr-finder``), skipped when it is not installed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("bare", "lrfinder", "lrfinder_sync8", "torch_lr_finder")
MODELS = ("mlp", "cnn")
STEPS, BATCH, START_LR, END_LR = 100, 64, 1e-5, 1e-1


def _peak_mib() -> float:
    scale = 1024 if sys.platform != "darwin" else 1024 * 1024  # Linux reports KiB, macOS bytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def build(model_name: str) -> tuple[Any, Any, Any, Any, Any]:
    """A fresh (model, loader, optimizer, criterion, ladder), the same every time."""
    import numpy as np
    import torch
    from sklearn.datasets import load_digits
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.long)
    if model_name == "mlp":
        model = torch.nn.Sequential(
            torch.nn.Linear(64, 512),
            torch.nn.ReLU(),
            torch.nn.Linear(512, 512),
            torch.nn.ReLU(),
            torch.nn.Linear(512, 10),
        )
    else:
        x = x.view(-1, 1, 8, 8)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(1, 32, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(32, 64, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Flatten(),
            torch.nn.Linear(64 * 4 * 4, 10),
        )
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=START_LR, momentum=0.9)
    ladder = START_LR * (END_LR / START_LR) ** (np.arange(STEPS) / (STEPS - 1))
    return model, loader, optimizer, torch.nn.CrossEntropyLoss(), ladder


def timed(model_name: str, method: str) -> dict[str, float]:
    """Build a fresh model, then time one range test (or bare loop) of STEPS steps."""
    model, loader, optimizer, criterion, ladder = build(model_name)
    if method.startswith("lrfinder"):
        from lrfinder import find_lr
        from lrfinder.trainers import make_trainer
    elif method == "torch_lr_finder":
        from torch_lr_finder import LRFinder

    peak_before = _peak_mib()  # after every import: only the timed part counts
    started = time.perf_counter()
    if method == "bare":
        losses = []
        batches = iter(loader)
        model.train()
        for lr in ladder:
            try:
                inputs, targets = next(batches)
            except StopIteration:
                batches = iter(loader)
                inputs, targets = next(batches)
            for group in optimizer.param_groups:
                group["lr"] = float(lr)
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        steps = len(losses)
    elif method.startswith("lrfinder"):
        trainer = make_trainer(model, loader, optimizer=optimizer, criterion=criterion)
        if method == "lrfinder_sync8":
            trainer.sync_every = 8
        result = find_lr(
            trainer, start_lr=START_LR, end_lr=END_LR, num_iter=STEPS, diverge_threshold=None, progress=False
        )
        steps = result.num_steps
    elif method == "torch_lr_finder":
        finder = LRFinder(model, optimizer, criterion, device="cpu")
        with contextlib.redirect_stdout(io.StringIO()):  # it prints; keep our JSON line clean
            finder.range_test(
                loader, start_lr=START_LR, end_lr=END_LR, num_iter=STEPS, diverge_th=float("inf")
            )
        finder.reset()
        steps = len(finder.history["lr"])
    else:
        raise ValueError(method)
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "peak_growth_mib": _peak_mib() - peak_before, "steps": steps}


def time_worker(model_name: str, rounds: int, methods: list[str]) -> list[dict[str, dict[str, float]]]:
    """Rounds of every method back to back in one warm process; the first round is a warm-up."""
    import torch

    torch.set_num_threads(1)
    records = []
    for index in range(rounds + 1):
        order = methods[index % len(methods) :] + methods[: index % len(methods)]
        record = {method: timed(model_name, method) for method in order}
        if index:
            records.append(record)
    return records


def _subprocess(*args: str) -> Any:
    # -m from the repository root, so that the worker imports this checkout's lrfinder
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.speed.torch_cpu", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=1800,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds of every method")
    parser.add_argument("--memory-runs", type=int, default=3, help="fresh processes per method")
    parser.add_argument("--time-worker", nargs=2, metavar=("MODEL", "ROUNDS"), help=argparse.SUPPRESS)
    parser.add_argument("--memory-worker", nargs=2, metavar=("MODEL", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument("--methods", default=",".join(METHODS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time_worker:
        model_name, rounds = args.time_worker
        print(json.dumps(time_worker(model_name, int(rounds), args.methods.split(","))))
        return
    if args.memory_worker:
        import torch

        torch.set_num_threads(1)
        print(json.dumps(timed(*args.memory_worker)))
        return

    methods = list(METHODS)
    if importlib.util.find_spec("torch_lr_finder") is None:
        methods.remove("torch_lr_finder")
        print("torch-lr-finder is not installed: its column is left out", file=sys.stderr)
    import torch

    print(
        f"torch {torch.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"1 thread; {STEPS} steps of batch {BATCH}; time: medians of {args.rounds} interleaved "
        f"rounds in one process (ratios: median of the per-round ratios); memory: median of "
        f"{args.memory_runs} fresh processes\n"
    )
    print(
        "| model | method | steps | median s | vs bare | vs torch-lr-finder | peak RSS growth MiB "
        "| over bare MiB |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for model_name in MODELS:
        rounds = _subprocess("--time-worker", model_name, str(args.rounds), "--methods", ",".join(methods))
        memory = {
            method: statistics.median(
                _subprocess("--memory-worker", model_name, method)["peak_growth_mib"]
                for _ in range(args.memory_runs)
            )
            for method in methods
        }
        for method in methods:
            seconds = statistics.median(r[method]["seconds"] for r in rounds)
            steps = sorted({int(r[method]["steps"]) for r in rounds})
            to_bare = statistics.median(r[method]["seconds"] / r["bare"]["seconds"] for r in rounds)
            if "torch_lr_finder" in methods:
                versus = statistics.median(
                    r[method]["seconds"] / r["torch_lr_finder"]["seconds"] for r in rounds
                )
                to_other = f"{versus:.2f}"
            else:
                to_other = "n/a"
            print(
                f"| {model_name} | {method} | {'/'.join(map(str, steps))} | {seconds:.3f} | "
                f"{to_bare:.2f} | {to_other} | {memory[method]:.1f} | "
                f"{memory[method] - memory['bare']:+.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

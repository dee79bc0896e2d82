"""Snapshot and restore against one training step, for PyTorch models of 1M to 300M parameters.

Run by hand from the repository root (never part of the test suite)::

    python benchmarks/bench_torch_scale.py --rounds 5

Each size runs in a fresh process (one torch thread): an MLP of four square ``Linear`` layers
(width chosen for the size) trained by Adam on batches of 16, after one warm-up step so that
Adam's two moment buffers exist. The snapshot is the range test's own
(:class:`lrfinder.trainers._torch_state.TorchSnapshot`, in CPU memory, with the optimizer), taken
with the gradients cleared as ``find_lr`` leaves them at its first step, so the state it copies is
the parameters plus Adam's ``exp_avg`` and ``exp_avg_sq``: three floats per parameter.

Per round: one bare training step (zero_grad, forward, loss, backward, ``optimizer.step()``),
``take()``, then ``restore()``; times are medians over rounds. Memory is read from
``/proc/self/status`` (Linux): the high-water mark ``VmHWM`` is reset through
``/proc/self/clear_refs`` just before ``take()`` and again just before ``restore()``, so each peak
is that call's own, over the resident size just before it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's lrfinder, not an installed one
SIZES_M = (1, 3, 10, 30, 100, 300)
LAYERS, BATCH = 4, 16
MIB = 2**20


def _status_kib(field: str) -> int:
    """A ``Vm*`` field of ``/proc/self/status``, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} (Linux only)")


def _reset_peak() -> None:
    """Set ``VmHWM`` to the current resident size (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def _peak_over_rss(action: Any) -> tuple[float, float]:
    """Run ``action()``; return (seconds, MiB its peak resident size rose above the size before)."""
    before = _status_kib("VmRSS")
    _reset_peak()
    started = time.perf_counter()
    action()
    seconds = time.perf_counter() - started
    return seconds, (_status_kib("VmHWM") - before) / 1024


def width_for(millions: float) -> int:
    """Width of the square layers that gives about ``millions`` M parameters in LAYERS layers."""
    return round(math.sqrt(millions * 1e6 / LAYERS))


def measure(millions: float, rounds: int) -> dict[str, Any]:
    """One size, in this process: step, take and restore times, and the memory take/restore add."""
    import torch

    from lrfinder.trainers._torch_state import TorchSnapshot

    torch.set_num_threads(1)
    torch.manual_seed(0)
    width = width_for(millions)
    model = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(LAYERS)])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, y = torch.randn(BATCH, width), torch.randn(BATCH, width)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()

    step()  # warm-up: Adam's moment buffers exist from here on
    params = sum(p.numel() for p in model.parameters())
    state_bytes = sum(p.numel() * p.element_size() for p in model.parameters()) + sum(
        v.numel() * v.element_size()
        for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)
    )
    snapshot = TorchSnapshot([model], optimizer)
    steps, takes, restores, take_mib, restore_mib, retained_mib = [], [], [], [], [], []
    for _ in range(rounds):
        steps.append(_peak_over_rss(step)[0])
        optimizer.zero_grad(set_to_none=True)  # find_lr clears them only after the snapshot
        first = next(model.parameters())
        reference = first.detach().clone()  # to check that restore really puts it back
        rss_before = _status_kib("VmRSS")
        seconds, added = _peak_over_rss(snapshot.take)
        takes.append(seconds)
        take_mib.append(added)
        step()  # the sweep changes the state before it is put back
        optimizer.zero_grad(set_to_none=True)
        seconds, added = _peak_over_rss(snapshot.restore)
        restores.append(seconds)
        restore_mib.append(added)
        retained_mib.append((_status_kib("VmRSS") - rss_before) / 1024)
        if not torch.equal(first, reference):
            raise AssertionError("restore did not put the first parameter back")
    return {
        "millions": millions, "width": width, "params": params, "state_mib": state_bytes / MIB,
        "step_s": statistics.median(steps), "take_s": statistics.median(takes),
        "restore_s": statistics.median(restores), "take_mib": statistics.median(take_mib),
        "restore_mib": statistics.median(restore_mib), "retained_mib": statistics.median(retained_mib),
    }


def _worker(millions: float, rounds: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, __file__, "--worker", str(millions), "--rounds", str(rounds)],
        capture_output=True, text=True, env=env, check=False, timeout=3600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"size {millions}M failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log(ys) against log(xs): 1 means proportional growth."""
    lx, ly = [math.log(v) for v in xs], [math.log(v) for v in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of step/take/restore per size")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES_M)),
                        help="model sizes in millions of parameters, comma-separated")
    parser.add_argument("--worker", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(measure(args.worker, args.rounds)))
        return

    import torch

    sizes = [float(s) for s in args.sizes.split(",")]
    print(f"torch {torch.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, 1 thread; "
          f"{LAYERS} square Linear layers, Adam, batch {BATCH}; medians of {args.rounds} rounds, "
          "one process per size\n")
    print("| params | state MiB | step s | take s | restore s | take / step | restore / step "
          "| take GB/s | peak added by take MiB | by restore MiB | kept after MiB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    for millions in sizes:
        row = _worker(millions, args.rounds)
        rows.append(row)
        print(f"| {row['params'] / 1e6:.1f} M | {row['state_mib']:.0f} | {row['step_s']:.4f} | "
              f"{row['take_s']:.4f} | {row['restore_s']:.4f} | {row['take_s'] / row['step_s']:.2f} | "
              f"{row['restore_s'] / row['step_s']:.2f} | "
              f"{row['state_mib'] * MIB / row['take_s'] / 1e9:.2f} | {row['take_mib']:.0f} | "
              f"{row['restore_mib']:.0f} | {row['retained_mib']:+.0f} |", flush=True)
    if len(rows) > 1:
        state = [r["state_mib"] for r in rows]
        print(f"\nlog-log slope against the state's size: take {slope(state, [r['take_s'] for r in rows]):.2f}, "
              f"restore {slope(state, [r['restore_s'] for r in rows]):.2f}, "
              f"step {slope(state, [r['step_s'] for r in rows]):.2f}, "
              f"peak added by take {slope(state, [max(r['take_mib'], 1e-3) for r in rows]):.2f} "
              "(1 = proportional)")


if __name__ == "__main__":
    main()

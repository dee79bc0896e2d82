"""Snapshot and restore against one training step, for PyTorch models of 1M to 300M parameters.

Run by hand from the repository root (never part of the test suite)::

    python -m benchmarks.speed.torch_scale --rounds 5

Each size runs in a fresh process (one torch thread): an MLP of four square ``Linear`` layers
(width chosen for the size) trained by Adam on batches of 16, after one warm-up step so that
Adam's two moment buffers exist. The snapshot is the range test's own
(:class:`lrfinder.trainers._torch_state.TorchSnapshot`, in CPU memory, with the optimizer), taken
with the gradients cleared as ``find_lr`` leaves them at its first step, so the state it copies is
the parameters plus Adam's ``exp_avg`` and ``exp_avg_sq``: three floats per parameter.

Time, per round in one process: one bare training step (zero_grad, forward, loss, backward,
``optimizer.step()``), a bare copy of the same state (one ``clone()`` per tensor: the floor of any
in-memory snapshot), ``take()``, another step, then ``restore()``; medians over rounds. Memory, in
a second fresh process per size with ``MALLOC_MMAP_THRESHOLD_=65536`` (so freed tensors go back to
the system and the resident size follows the live ones): read from ``/proc/self/status`` (Linux),
the high-water mark ``VmHWM`` reset through ``/proc/self/clear_refs`` just before ``take()`` and
again just before ``restore()``, so each peak is that call's own, over the resident size just
before it; "kept after" is the resident size after ``restore()`` minus that before ``take()``.
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

ROOT = Path(__file__).resolve().parents[2]
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


def build(millions: float) -> tuple[Any, Any, Any]:
    """(model, Adam optimizer, one training step) after a warm-up step: Adam's buffers exist."""
    import torch

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
        optimizer.zero_grad(set_to_none=True)  # as find_lr finds them: cleared after a step

    step()
    return model, optimizer, step


def state_tensors(model: Any, optimizer: Any) -> list[Any]:
    """What the snapshot copies: the parameters and every tensor of the optimizer's state."""
    import torch

    return list(model.parameters()) + [
        v for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)
    ]


def measure_time(millions: float, rounds: int) -> dict[str, Any]:
    """Median seconds of a training step, a bare copy of the state, ``take()`` and ``restore()``."""
    import torch

    from lrfinder.trainers._torch_state import TorchSnapshot

    model, optimizer, step = build(millions)
    snapshot = TorchSnapshot([model], optimizer)
    times: dict[str, list[float]] = {"step": [], "copy": [], "take": [], "restore": []}
    first = next(model.parameters())
    for _ in range(rounds):
        started = time.perf_counter()
        step()
        times["step"].append(time.perf_counter() - started)
        started = time.perf_counter()  # the floor of any snapshot in memory: one clone per tensor
        copies = [t.detach().clone() for t in state_tensors(model, optimizer)]
        times["copy"].append(time.perf_counter() - started)
        del copies
        reference = first.detach().clone()
        started = time.perf_counter()
        snapshot.take()
        times["take"].append(time.perf_counter() - started)
        step()  # the sweep changes the state before it is put back
        started = time.perf_counter()
        snapshot.restore()
        times["restore"].append(time.perf_counter() - started)
        if not torch.equal(first, reference):
            raise AssertionError("restore did not put the first parameter back")
    params = sum(p.numel() for p in model.parameters())
    state_bytes = sum(t.numel() * t.element_size() for t in state_tensors(model, optimizer))
    ratios = {  # medians of per-round ratios: a round's calls share the machine's state
        "take_step": [t / s for t, s in zip(times["take"], times["step"], strict=True)],
        "restore_step": [r / s for r, s in zip(times["restore"], times["step"], strict=True)],
        "take_copy": [t / c for t, c in zip(times["take"], times["copy"], strict=True)],
    }
    return {
        "params": params,
        "state_mib": state_bytes / MIB,
        **{f"{key}_s": statistics.median(values) for key, values in times.items()},
        **{key: statistics.median(values) for key, values in ratios.items()},
    }


def measure_memory(millions: float) -> dict[str, Any]:
    """MiB that ``take()`` and ``restore()`` raise the peak resident size by, and what stays after."""
    from lrfinder.trainers._torch_state import TorchSnapshot

    model, optimizer, step = build(millions)
    snapshot = TorchSnapshot([model], optimizer)
    rss_before = _status_kib("VmRSS")
    take_mib = _peak_over_rss(snapshot.take)[1]
    step()
    restore_mib = _peak_over_rss(snapshot.restore)[1]
    return {
        "take_mib": take_mib,
        "restore_mib": restore_mib,
        "retained_mib": (_status_kib("VmRSS") - rss_before) / 1024,
    }


def _worker(kind: str, millions: float, rounds: int) -> dict[str, Any]:
    # -m from the repository root, so that the worker imports this checkout's lrfinder
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if kind == "memory":
        # every allocation over 64 KiB gets its own mapping, returned to the system when freed, so
        # the resident size follows the live tensors instead of the allocator's free lists
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.speed.torch_scale",
            f"--{kind}-worker",
            str(millions),
            "--rounds",
            str(rounds),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
        timeout=3600,
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
    parser.add_argument(
        "--sizes",
        default=",".join(map(str, SIZES_M)),
        help="model sizes in millions of parameters, comma-separated",
    )
    parser.add_argument("--time-worker", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--memory-worker", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time_worker is not None:
        print(json.dumps(measure_time(args.time_worker, args.rounds)))
        return
    if args.memory_worker is not None:
        print(json.dumps(measure_memory(args.memory_worker)))
        return

    import torch

    sizes = [float(s) for s in args.sizes.split(",")]
    print(
        f"torch {torch.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, 1 thread; "
        f"{LAYERS} square Linear layers, Adam, batch {BATCH}; medians of {args.rounds} rounds "
        "(ratios: medians of per-round ratios), one process per size\n"
    )
    print(
        "| params | state MiB | step s | bare copy s | take s | restore s | take / step "
        "| restore / step | take / bare copy | peak added by take MiB | by restore MiB "
        "| kept after MiB |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    for millions in sizes:
        row = {**_worker("time", millions, args.rounds), **_worker("memory", millions, 1)}
        rows.append(row)
        print(
            f"| {row['params'] / 1e6:.1f} M | {row['state_mib']:.0f} | {row['step_s']:.4f} | "
            f"{row['copy_s']:.4f} | {row['take_s']:.4f} | {row['restore_s']:.4f} | "
            f"{row['take_step']:.2f} | {row['restore_step']:.2f} | "
            f"{row['take_copy']:.2f} | {row['take_mib']:.0f} | "
            f"{row['restore_mib']:.0f} | {row['retained_mib']:+.0f} |",
            flush=True,
        )
    if len(rows) > 1:
        state = [r["state_mib"] for r in rows]
        print(
            "\nlog-log slope against the state's size: "
            f"take {slope(state, [r['take_s'] for r in rows]):.2f}, "
            f"restore {slope(state, [r['restore_s'] for r in rows]):.2f}, "
            f"bare copy {slope(state, [r['copy_s'] for r in rows]):.2f}, "
            f"step {slope(state, [r['step_s'] for r in rows]):.2f}, "
            f"peak added by take {slope(state, [max(r['take_mib'], 1e-3) for r in rows]):.2f} "
            "(1 = proportional)"
        )


if __name__ == "__main__":
    main()

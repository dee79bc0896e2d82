"""PyTorch range test on a GPU: wall time, peak accelerator memory and host syncs against a bare loop.

Run by hand from the repository root, normally through ``bash benchmarks/speed/gpu_check.sh``::

    python -m benchmarks.speed.torch_gpu                            # on CUDA
    python -m benchmarks.speed.torch_gpu --device cpu --tiny        # the same logic on the CPU (CI)

Per model, every method runs the same ``--steps`` optimizer steps (Adam, LR ladder kept below
divergence so that all of them run) over the same batches, already on the device (so the loader
costs nothing and any overhead of lrfinder shows), on a fresh copy of one model whose Adam state
exists (one warm-up step; gradients cleared). Methods:

* ``bare``: the loop a user writes, reading each loss with ``loss.item()``;
* ``bare_noread``: the same keeping the losses on the device, read once at the end: the floor;
* ``lrfinder``: ``find_lr`` with its accelerator default (losses read in blocks of
  ``ACCELERATOR_SYNC_EVERY`` steps), snapshot to CPU memory and restore included;
* ``lrfinder_sync1``: the same, reading every loss at once (``sync_every=1``).

Time: rounds of every method back to back in one process (the order rotating, the first round a
warm-up), ``torch.cuda.synchronize()`` before and after each; medians of per-round ratios. Peak
memory: ``torch.cuda.max_memory_allocated()`` over a whole run, less what was allocated before it,
in its own run. Host syncs: ``torch.cuda.set_sync_debug_mode("warn")`` makes every synchronising
CUDA call warn; the warnings are counted over the whole run and, for lrfinder, within its steps
(the snapshot and restore apart). Checks (exit status 1 when one fails, after the table): every
method ran every step; lrfinder put the model back bit for bit; on CUDA, ``take()`` adds 0 bytes of
accelerator memory, the whole range test peaks no higher than the bare loop (1 MiB of slack), and
its steps sync no more than the floor's plus one read per block.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

METHODS = ("bare", "bare_noread", "lrfinder", "lrfinder_sync1")
MIB = 2**20
SLACK_BYTES = MIB  # allowed over the bare loop's peak: a few loss scalars, never a copy of the model
SYNC_MESSAGE = "synchronizing CUDA operation"


class Sizes:
    """Model and run sizes: ``full`` for a GPU, ``tiny`` for a quick CPU run of the same logic."""

    def __init__(self, tiny: bool) -> None:
        self.steps = 16 if tiny else 200
        self.rounds = 1 if tiny else 7
        self.mlp_width, self.mlp_batch = (64, 16) if tiny else (2048, 512)
        self.cnn_channels, self.cnn_batch = (4, 4) if tiny else (64, 256)
        self.n_batches = 4 if tiny else 16


def build(name: str, sizes: Sizes, device: Any) -> tuple[Any, Any, list[tuple[Any, Any]]]:
    """A seeded (model, Adam with state, batches on ``device``): the same every time."""
    import torch

    torch.manual_seed(0)
    nn = torch.nn
    if name == "mlp":
        width = sizes.mlp_width
        model = nn.Sequential(
            nn.Linear(256, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, 10),
        )
        shape, batch = (256,), sizes.mlp_batch
    else:
        c = sizes.cnn_channels
        model = nn.Sequential(
            nn.Conv2d(3, c, 3, padding=1),
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1),
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c, 2 * c, 3, padding=1),
            nn.BatchNorm2d(2 * c),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * c, 2 * c, 3, padding=1),
            nn.BatchNorm2d(2 * c),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(2 * c, 10),
        )
        shape, batch = (3, 32, 32), sizes.cnn_batch
    model = model.to(device)
    generator = torch.Generator().manual_seed(1)
    batches = [
        (
            torch.randn(batch, *shape, generator=generator).to(device),
            torch.randint(0, 10, (batch,), generator=generator).to(device),
        )
        for _ in range(sizes.n_batches)
    ]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    x, y = batches[0]
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()  # Adam's moment buffers exist, as in a model mid-training
    optimizer.zero_grad(set_to_none=True)
    return model, optimizer, batches


def ladder(steps: int) -> list[float]:
    """From 1e-6 to 1e-3: low enough that no method diverges, so all run every step."""
    return [1e-6 * 1000 ** (i / (steps - 1)) for i in range(steps)]


def run(
    method: str,
    model: Any,
    optimizer: Any,
    batches: list[Any],
    steps: int,
    hooks: dict[str, Callable[[Callable[[], None]], None]] | None = None,
) -> int:
    """Run ``method`` for ``steps`` steps; the number of steps recorded."""
    import torch

    if method.startswith("bare"):
        criterion = torch.nn.functional.cross_entropy
        losses: list[Any] = []
        model.train()
        for step, lr in enumerate(ladder(steps)):
            x, y = batches[step % len(batches)]
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.item() if method == "bare" else loss.detach())
        if method == "bare_noread":
            losses = torch.stack(losses).tolist()
        return len(losses)
    from lrfinder import find_lr
    from lrfinder.trainers import make_trainer

    trainer = make_trainer(model, batches, optimizer=optimizer, criterion=torch.nn.functional.cross_entropy)
    if method == "lrfinder_sync1":
        trainer.sync_every = 1
    for name, hook in (hooks or {}).items():  # measure the snapshot and the restore apart
        original = getattr(trainer, name)
        setattr(trainer, name, lambda original=original, hook=hook: hook(original))
    with warnings.catch_warnings():  # a ladder kept below divergence gives no suggestion: say nothing
        warnings.filterwarnings("ignore", message="lrfinder", category=RuntimeWarning)
        result = find_lr(
            trainer, start_lr=1e-6, end_lr=1e-3, num_iter=steps, diverge_threshold=None, progress=False
        )
    return result.num_steps


class SyncCounter:
    """Counts host synchronisations (CUDA's sync debug warnings) while active."""

    def __init__(self) -> None:
        self._caught: list[warnings.WarningMessage] = []

    @property
    def count(self) -> int:
        return sum(SYNC_MESSAGE in str(w.message) for w in self._caught)

    @contextlib.contextmanager
    def active(self) -> Iterator[SyncCounter]:
        import torch

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self._caught = caught
            torch.cuda.set_sync_debug_mode("warn")
            try:
                yield self
            finally:
                torch.cuda.set_sync_debug_mode("default")


def timing(name: str, sizes: Sizes, device: Any, methods: list[str]) -> list[dict[str, float]]:
    """Rounds of every method back to back; per round, seconds by method (warm-up round dropped)."""
    model, optimizer, batches = build(name, sizes, device)
    records = []
    for index in range(sizes.rounds + 1):
        order = methods[index % len(methods) :] + methods[: index % len(methods)]
        record = {}
        for method in order:
            twin, twin_optimizer = _twin(model, optimizer)
            _synchronize(device)
            started = time.perf_counter()
            steps = run(method, twin, twin_optimizer, batches, sizes.steps)
            _synchronize(device)
            record[method] = time.perf_counter() - started
            if steps != sizes.steps:
                raise CheckFailed(f"{name}/{method} recorded {steps} of {sizes.steps} steps")
        if index:
            records.append(record)
    return records


def cuda_profile(name: str, sizes: Sizes, device: Any, method: str) -> dict[str, float]:
    """Peak memory over the run's start and host syncs (whole run, and in lrfinder's steps)."""
    import torch

    model, optimizer, batches = build(name, sizes, device)
    twin, twin_optimizer = _twin(model, optimizer)
    del model, optimizer
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    run(method, twin, twin_optimizer, batches, sizes.steps)
    torch.cuda.synchronize()
    profile = {"peak_added": float(torch.cuda.max_memory_allocated() - before)}

    counter = SyncCounter()
    outside: dict[str, float] = {}

    def apart(what: str) -> Callable[[Callable[[], None]], None]:
        def hook(call: Callable[[], None]) -> None:
            torch.cuda.synchronize()
            syncs = counter.count  # after our own synchronize, which must not count
            start = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            call()
            outside[f"{what}_syncs"] = float(counter.count - syncs)
            outside[f"{what}_added"] = float(torch.cuda.max_memory_allocated() - start)

        return hook

    hooks = {"snapshot": apart("take"), "restore": apart("restore")} if method.startswith("lrfinder") else {}
    with counter.active():
        run(method, twin, twin_optimizer, batches, sizes.steps, hooks)
        total = counter.count
    profile["syncs"] = float(total)
    profile["step_syncs"] = total - outside.get("take_syncs", 0.0) - outside.get("restore_syncs", 0.0)
    return {**profile, **outside}


def restore_is_exact(name: str, sizes: Sizes, device: Any) -> bool:
    """Whether lrfinder leaves the parameters and Adam's state bit for bit as they were."""
    import torch

    model, optimizer, batches = build(name, sizes, device)
    before = [t.detach().clone() for t in _tensors(model, optimizer)]
    run("lrfinder", model, optimizer, batches, sizes.steps)
    return all(torch.equal(a, b) for a, b in zip(before, _tensors(model, optimizer), strict=True))


class CheckFailed(Exception):
    """A check of the GPU run failed."""


def _tensors(model: Any, optimizer: Any) -> list[Any]:
    import torch

    return [
        *model.parameters(),
        *model.buffers(),
        *(v for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)),
    ]


def _twin(model: Any, optimizer: Any) -> tuple[Any, Any]:
    """A copy of the model with an Adam whose state is a copy of ``optimizer``'s."""
    import torch

    twin = copy.deepcopy(model)
    twin_optimizer = torch.optim.Adam(twin.parameters(), lr=1e-5)
    # deep-copied: load_state_dict would otherwise share the tensors of the original's state
    twin_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    return twin, twin_optimizer


def _synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (a dry run of the logic)")
    parser.add_argument("--tiny", action="store_true", help="tiny models and few steps (a quick check)")
    parser.add_argument("--models", default="mlp,cnn", help="comma-separated: mlp, cnn")
    args = parser.parse_args()

    import torch

    from lrfinder.trainers.torch_trainer import ACCELERATOR_SYNC_EVERY

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            f"Error: --device {args.device} but torch {torch.__version__} sees no CUDA device; run on "
            "a machine with an NVIDIA GPU and a CUDA build of torch, or use --device cpu --tiny",
            file=sys.stderr,
        )
        return 2
    if device.type not in ("cuda", "cpu"):
        print(f"Error: --device must be cuda or cpu, got {args.device!r}", file=sys.stderr)
        return 2
    cuda = device.type == "cuda"
    sizes = Sizes(args.tiny)
    torch.backends.cudnn.benchmark = False
    if not cuda:
        torch.set_num_threads(1)
    where = torch.cuda.get_device_name(device) if cuda else "CPU (dry run: no memory or sync columns)"
    print(
        f"{where}; torch {torch.__version__}, Python {sys.version.split()[0]}; Adam, "
        f"{sizes.steps} steps, batches on the device; time: medians of {sizes.rounds} interleaved "
        f"rounds (ratios: median of per-round ratios); lrfinder reads losses every "
        f"{ACCELERATOR_SYNC_EVERY} steps on an accelerator\n"
    )
    print(
        "| model | method | median s | vs bare | vs bare_noread | peak added MiB | over bare MiB "
        "| host syncs per step (in steps) | take adds B | restore adds MiB | take + restore syncs |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    failures: list[str] = []
    methods = list(METHODS)
    for name in args.models.split(","):
        try:
            rounds = timing(name, sizes, device, methods)
        except CheckFailed as error:
            failures.append(str(error))
            continue
        profiles = {m: cuda_profile(name, sizes, device, m) for m in methods} if cuda else {}
        for method in methods:
            seconds = statistics.median(r[method] for r in rounds)
            to_bare = statistics.median(r[method] / r["bare"] for r in rounds)
            to_floor = statistics.median(r[method] / r["bare_noread"] for r in rounds)
            cells = ["n/a"] * 6
            if cuda:
                p, bare = profiles[method], profiles["bare"]
                cells = [
                    f"{p['peak_added'] / MIB:.1f}",
                    f"{(p['peak_added'] - bare['peak_added']) / MIB:+.2f}",
                    f"{p['syncs'] / sizes.steps:.3f} ({p['step_syncs'] / sizes.steps:.3f})",
                    f"{p['take_added']:.0f}" if "take_added" in p else "",
                    f"{p['restore_added'] / MIB:.1f}" if "restore_added" in p else "",
                    f"{p['take_syncs'] + p['restore_syncs']:.0f}" if "take_syncs" in p else "",
                ]
            print(
                f"| {name} | {method} | {seconds:.4f} | {to_bare:.3f} | {to_floor:.3f} | "
                + " | ".join(cells)
                + " |",
                flush=True,
            )
        if not restore_is_exact(name, sizes, device):
            failures.append(f"{name}: lrfinder did not restore the parameters and Adam state bit for bit")
        if cuda:
            failures += profile_failures(name, profiles, sizes.steps, ACCELERATOR_SYNC_EVERY)
    print()
    for failure in failures:
        print(f"FAILED: {failure}")
    print("all checks passed" if not failures else f"{len(failures)} check(s) failed")
    return 1 if failures else 0


def profile_failures(name: str, profiles: dict[str, dict[str, float]], steps: int, block: int) -> list[str]:
    """What the CUDA profile of ``name`` breaks of the design's promises (empty: nothing)."""
    failures = []
    floor = profiles["bare_noread"]["syncs"]
    for method, every in (("lrfinder", block), ("lrfinder_sync1", 1)):
        p = profiles[method]
        if p["take_added"] != 0:
            failures.append(
                f"{name}/{method}: the snapshot took {p['take_added']:.0f} B of accelerator "
                "memory (it must copy to CPU memory only)"
            )
        if p["peak_added"] > profiles["bare"]["peak_added"] + SLACK_BYTES:
            failures.append(
                f"{name}/{method}: peak accelerator memory "
                f"{(p['peak_added'] - profiles['bare']['peak_added']) / MIB:+.2f} MiB over the "
                "bare loop"
            )
        allowed = floor + math.ceil(steps / every)
        if p["step_syncs"] > allowed:
            failures.append(
                f"{name}/{method}: {p['step_syncs']:.0f} host syncs in its steps, more than "
                f"the floor's {floor:.0f} plus one read per {every} steps ({allowed:.0f})"
            )
    return failures


if __name__ == "__main__":
    sys.exit(main())

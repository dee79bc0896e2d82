"""PyTorch on CUDA: fp16 with GradScaler, bf16, device moves, block reads, device memory and syncs.

Skipped without a CUDA device, unless LRFINDER_REQUIRE_CUDA=1 (``benchmarks/speed/gpu_check.sh`` sets it on
the GPU machine), where a missing device fails instead of skipping.
"""

from __future__ import annotations

import contextlib
import copy
import os
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.cases import require

torch = require("torch")

from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from lrfinder import find_lr  # noqa: E402
from lrfinder.trainers import make_trainer  # noqa: E402
from lrfinder.trainers.torch_trainer import ACCELERATOR_SYNC_EVERY  # noqa: E402
from tests.cases_torch import BATCH, CLASSES, FEATURES, classification_data, mlp  # noqa: E402

REQUIRED = os.environ.get("LRFINDER_REQUIRE_CUDA") == "1"
pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available() and not REQUIRED, reason="needs a CUDA device"),
    pytest.mark.filterwarnings("ignore:lrfinder:RuntimeWarning"),  # short sweeps: weak suggestions
]
DIVERGING = {"start_lr": 1e-3, "end_lr": 1e4, "num_iter": 100, "progress": False}
QUICK = {"start_lr": 1e-4, "end_lr": 1.0, "num_iter": 24, "progress": False}
SAFE = {"start_lr": 1e-5, "end_lr": 1e-2, "num_iter": 24, "progress": False}  # never diverges
SYNC_MESSAGE = "synchronizing CUDA operation"


def test_cuda_is_there():
    assert torch.cuda.is_available(), (
        f"torch {torch.__version__} sees no CUDA device (LRFINDER_REQUIRE_CUDA=1 asks for one)"
    )


def cuda_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None, scaler: Any = None
) -> dict[str, Any]:
    """Everything a sweep may change, as host copies, with each tensor's device and dtype."""
    state: dict[str, Any] = {}

    def put(key: str, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            state[key] = (str(value.device), str(value.dtype), value.detach().cpu().numpy().copy())
        else:
            state[key] = repr(value)

    for name, param in model.named_parameters():
        put(f"param:{name}", param)
        put(f"grad:{name}", param.grad)
        put(f"requires_grad:{name}", param.requires_grad)
    for name, buffer in model.named_buffers():
        put(f"buffer:{name}", buffer)
    for name, module in model.named_modules():
        put(f"training:{name}", module.training)
    if optimizer is not None:
        saved = optimizer.state_dict()
        for index, per_param in saved["state"].items():
            for key, value in per_param.items():
                put(f"opt:{index}:{key}", value)
        for index, group in enumerate(saved["param_groups"]):
            put(f"group:{index}", {k: v for k, v in group.items() if k != "params"})
    if scaler is not None:
        for key, value in scaler.state_dict().items():
            put(f"scaler:{key}", value)
    for index, rng in enumerate(torch.cuda.get_rng_state_all()):
        put(f"rng:cuda{index}", rng)
    put("rng:cpu", torch.get_rng_state())
    return state


def assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before.keys() == after.keys()
    for key, old in before.items():
        new = after[key]
        if isinstance(old, tuple):
            assert old[:2] == new[:2], f"{key}: moved from {old[:2]} to {new[:2]}"
            assert old[2].tobytes() == new[2].tobytes(), f"{key} changed"
        else:
            assert old == new, f"{key}: {old} became {new}"


def gpu_setup(optimizer_kind: str = "sgd", n_batches: int = 6, seed: int = 0, dropout: float = 0.1):
    """An MLP with BatchNorm (and dropout) on the GPU, its warmed-up optimizer, a CPU DataLoader."""
    x, y = classification_data(n_batches * BATCH, seed=seed + 1)
    model = mlp(seed=seed, dropout=dropout).cuda()
    if optimizer_kind == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    F = torch.nn.functional
    optimizer.zero_grad()
    F.cross_entropy(model(x[:BATCH].cuda()), y[:BATCH].cuda()).backward()
    optimizer.step()
    F.cross_entropy(model(x[:BATCH].cuda()), y[:BATCH].cuda()).backward()  # gradients exist too
    loader = DataLoader(
        TensorDataset(x, y), batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    return model, optimizer, loader, (x, y)


def first_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, dtype: Any) -> float:
    """The loss of the first batch at the current state, computed apart under autocast."""
    twin = copy.deepcopy(model).train()
    devices = torch.cuda.device_count()
    with (
        torch.no_grad(),
        torch.random.fork_rng(devices=list(range(devices))),
        torch.autocast("cuda", dtype=dtype),
    ):
        return float(torch.nn.functional.cross_entropy(twin(x.cuda()), y.cuda()).float())


# -- mixed precision ---------------------------------------------------------------------------


def test_fp16_with_a_fresh_grad_scaler_runs_and_restores_everything():
    model, optimizer, loader, _ = gpu_setup("sgd")
    torch.cuda.manual_seed_all(5)
    before = cuda_state(model, optimizer)
    result = find_lr(model, loader, optimizer, amp="fp16", **DIVERGING)
    assert result.info["amp"] == "float16 with GradScaler" and result.info["device"].startswith("cuda")
    assert result.stop_reason in ("diverged", "non_finite") and result.num_steps < 100
    assert np.all(np.isfinite(result.losses[:-1]))
    assert_same(before, cuda_state(model, optimizer))


def test_fp16_with_the_users_grad_scaler_puts_its_state_back():
    model, optimizer, loader, _ = gpu_setup("adam")
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**10, growth_interval=1)
    before = cuda_state(model, optimizer, scaler)
    result = find_lr(model, loader, optimizer, amp=scaler, **SAFE)
    assert result.info["amp"] == "float16 with GradScaler"
    assert np.all(np.isfinite(result.losses))
    assert_same(before, cuda_state(model, optimizer, scaler))


@pytest.mark.parametrize("amp, dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_first_loss_is_the_batchs_own_under_autocast(amp, dtype):
    x, y = classification_data(4 * BATCH, seed=3)
    model = mlp(seed=3).cuda()  # no dropout: the loss is a function of the weights and batch alone
    expected = first_loss(model, x[:BATCH], y[:BATCH], dtype)
    batches = [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, len(x), BATCH)]
    result = find_lr(model, batches, torch.optim.SGD(model.parameters(), lr=0.01), amp=amp, **QUICK)
    assert result.losses[0] == pytest.approx(expected, rel=1e-6)


def test_bf16_runs_on_the_default_optimizer_and_restores_everything():
    model, optimizer, loader, _ = gpu_setup("adam")
    before = cuda_state(model, optimizer)
    result = find_lr(model, loader, amp="bf16", **DIVERGING)  # AdamW built by lrfinder
    assert result.info["amp"] == "bfloat16" and result.info["optimizer"].startswith("AdamW")
    assert result.num_steps >= 10 and np.all(np.isfinite(result.losses[:-1]))
    assert_same(before, cuda_state(model, optimizer))


# -- device moves ------------------------------------------------------------------------------


def test_a_cpu_model_with_adam_state_swept_on_cuda_comes_back_to_the_cpu_unchanged():
    x, y = classification_data(6 * BATCH)
    model = mlp(dropout=0.1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    torch.nn.functional.cross_entropy(model(x[:BATCH]), y[:BATCH]).backward()
    optimizer.step()
    params = list(model.parameters())
    before = cuda_state(model, optimizer)
    seen: list[str] = []
    result = find_lr(
        model,
        DataLoader(TensorDataset(x, y), batch_size=BATCH),
        optimizer,
        device="cuda",
        callback=lambda *_: seen.append(next(model.parameters()).device.type),
        **QUICK,
    )
    assert result.info["device"].startswith("cuda") and set(seen) == {"cuda"}
    assert all(a is b for a, b in zip(params, model.parameters(), strict=True))  # the same Parameters
    assert all(
        v.device.type == "cpu"
        for s in optimizer.state.values()
        for v in s.values()
        if isinstance(v, torch.Tensor)
    )
    assert_same(before, cuda_state(model, optimizer))


def test_a_cuda_model_swept_on_the_cpu_goes_back_to_the_gpu_unchanged():
    model, optimizer, loader, _ = gpu_setup("sgd")
    before = cuda_state(model, optimizer)
    result = find_lr(model, loader, optimizer, device="cpu", **SAFE)
    assert result.info["device"] == "cpu" and result.num_steps == SAFE["num_iter"]
    assert_same(before, cuda_state(model, optimizer))


# -- block reads of the losses, host syncs, device memory --------------------------------------


def test_losses_are_read_in_blocks_and_the_record_ends_at_the_divergence():
    outcomes = []
    for sync_every in (1, ACCELERATOR_SYNC_EVERY):
        model, optimizer, _, (x, y) = gpu_setup("sgd", seed=4, dropout=0.0)  # the same losses in both
        batches = [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, len(x), BATCH)]
        trainer = make_trainer(model, batches, optimizer=optimizer)
        assert trainer.sync_every == ACCELERATOR_SYNC_EVERY > 1  # the accelerator default
        trainer.sync_every = sync_every
        before = cuda_state(model, optimizer)
        outcomes.append(find_lr(trainer, **DIVERGING))
        assert_same(before, cuda_state(model, optimizer))
    one, block = outcomes
    assert one.stop_reason in ("diverged", "non_finite") and one.num_steps < 90
    assert (block.stop_reason, block.num_steps) == (one.stop_reason, one.num_steps)
    np.testing.assert_allclose(block.losses, one.losses, rtol=1e-5)


@contextlib.contextmanager
def counting_syncs() -> Iterator[list[int]]:
    """Yields a list that holds, after the block, how many synchronising CUDA calls it made."""
    counted: list[int] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield counted
        finally:
            torch.cuda.set_sync_debug_mode("default")
    counted.append(sum(SYNC_MESSAGE in str(w.message) for w in caught))


def test_steps_add_no_host_sync_and_a_block_is_read_with_one():
    x, y = classification_data(8 * BATCH, seed=6)
    batches = [(x[i : i + BATCH].cuda(), y[i : i + BATCH].cuda()) for i in range(0, len(x), BATCH)]
    model = mlp(seed=6).cuda()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def bare_step(index: int) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(batches[index][0]), batches[index][1])
        loss.backward()
        optimizer.step()
        return loss.detach()

    for index in range(2):  # first calls (lazy state, cuBLAS handles) are not what is measured
        bare_step(index)
    with counting_syncs() as bare:
        for index in range(16):
            bare_step(index % len(batches))
    trainer = make_trainer(model, batches, optimizer=optimizer, criterion=torch.nn.functional.cross_entropy)
    trainer.snapshot()
    try:
        trainer.step(1e-4)
        losses = []
        with counting_syncs() as stepping:
            for _ in range(16):
                losses.append(trainer.step(1e-4))
        with counting_syncs() as reading:
            values = trainer.fetch_losses(losses[:ACCELERATOR_SYNC_EVERY])
    finally:
        trainer.restore()
    assert stepping[0] <= bare[0], f"{stepping[0]} host syncs in 16 steps, the bare loop made {bare[0]}"
    assert reading[0] == 1 and len(values) == ACCELERATOR_SYNC_EVERY
    assert all(np.isfinite(values))


def _adam_model(width: int = 1024) -> tuple[torch.nn.Module, torch.optim.Optimizer, list[Any]]:
    torch.manual_seed(7)
    model = torch.nn.Sequential(
        torch.nn.Linear(FEATURES, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, CLASSES),
    ).cuda()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, y = classification_data(4 * BATCH, seed=7)
    batches = [(x[i : i + BATCH].cuda(), y[i : i + BATCH].cuda()) for i in range(0, len(x), BATCH)]
    torch.nn.functional.cross_entropy(model(batches[0][0]), batches[0][1]).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return model, optimizer, batches


def test_the_snapshot_takes_no_accelerator_memory_and_the_run_peaks_as_a_bare_loop():
    steps = 20
    model, optimizer, batches = _adam_model()
    torch.cuda.synchronize()
    start = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    for index in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(batches[index % 4][0]), batches[index % 4][1])
        loss.backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    bare_peak = torch.cuda.max_memory_allocated() - start
    del model, optimizer, batches, loss

    model, optimizer, batches = _adam_model()
    state_bytes = sum(p.numel() * 4 * 3 for p in model.parameters())  # parameters and Adam's moments
    trainer = make_trainer(model, batches, optimizer=optimizer, criterion=torch.nn.functional.cross_entropy)
    torch.cuda.synchronize()
    start = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    trainer.snapshot()
    assert torch.cuda.max_memory_allocated() == start, "the snapshot took accelerator memory"
    trainer.restore()
    torch.cuda.reset_peak_memory_stats()
    find_lr(trainer, start_lr=1e-6, end_lr=1e-4, num_iter=steps, diverge_threshold=None, progress=False)
    torch.cuda.synchronize()
    lrfinder_peak = torch.cuda.max_memory_allocated() - start
    assert state_bytes > 10 * 2**20  # a copy on the device would show
    assert lrfinder_peak <= bare_peak + 2**20, (
        f"the range test peaked {(lrfinder_peak - bare_peak) / 2**20:.2f} MiB over the bare loop"
    )

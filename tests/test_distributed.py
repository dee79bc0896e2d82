"""Larger than one process: FSDP2 (``fully_shard``) and a model prepared by ``accelerate``, on two CPU ranks.

Each test spawns two gloo processes; every rank writes what it saw to a JSON report that the test
compares: the same losses (so the same stop and suggestion) and a bit-exact restore on each rank.
"""

from __future__ import annotations

import json
import os
import socket
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.cases import require

torch = require("torch")

from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from lrfinder import find_lr  # noqa: E402

F = torch.nn.functional
SWEEP = {"start_lr": 1e-4, "end_lr": 100.0, "num_iter": 40, "progress": False}


def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


def rank_data(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(64, 6, generator=torch.Generator().manual_seed(10 + rank))
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()


def local_values(tensors: Any) -> list[bytes]:
    """Each rank's own bytes of each tensor (a DTensor's local shard)."""
    return [(t.to_local() if hasattr(t, "to_local") else t).detach().numpy().tobytes() for t in tensors]


def optimizer_bytes(optimizer: Any) -> list[bytes]:
    state = optimizer.state_dict()["state"]
    return [local_values([v])[0] for s in state.values() for v in s.values() if isinstance(v, torch.Tensor)]


def sweep(model: Any, loader: Any, optimizer: Any, **kwargs: Any) -> tuple[Any, bool]:
    """find_lr on this rank, and whether parameters and optimizer state came back bit for bit."""
    before = local_values(model.parameters()), optimizer_bytes(optimizer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = find_lr(model, loader, optimizer, **SWEEP, **kwargs)
    return result, before == (local_values(model.parameters()), optimizer_bytes(optimizer))


def report(folder: str, rank: int, result: Any, restored: bool, **extra: Any) -> None:
    values = {
        "losses": result.losses.tolist(),
        "suggestion": result.suggestion,
        "restored": restored,
        "stop_reason": result.stop_reason,
        "world_size": result.info["world_size"],
        "main": result.is_main_process,
        **extra,
    }
    (Path(folder) / f"report{rank}.json").write_text(json.dumps(values))


def reports(folder: Path) -> list[dict[str, Any]]:
    return [json.loads((folder / f"report{rank}.json").read_text()) for rank in (0, 1)]


def assert_ranks_agree(first: dict[str, Any], second: dict[str, Any]) -> None:
    assert first["losses"] == second["losses"] and len(first["losses"]) > 10
    assert first["suggestion"] == second["suggestion"] is not None
    assert first["stop_reason"] == second["stop_reason"]
    assert first["restored"] and second["restored"]
    assert first["world_size"] == second["world_size"] == 2
    assert [first["main"], second["main"]] == [True, False]


def distributed_available() -> None:
    require("torch.distributed")
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this build")


# -- FSDP2 ------------------------------------------------------------------------------------


def _fsdp_worker(rank: int, folder: str, snapshot_dir: bool) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{folder}/store", rank=rank, world_size=2, timeout=timedelta(seconds=120)
    )
    try:
        from torch.distributed.fsdp import fully_shard

        model = net()
        x, y = rank_data(rank)
        with torch.no_grad():
            local_first = F.cross_entropy(model(x[:16]), y[:16]).item()
        fully_shard(model[0])
        fully_shard(model)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        result, restored = sweep(
            model,
            DataLoader(TensorDataset(x, y), batch_size=16),
            optimizer,
            **({"snapshot_dir": folder} if snapshot_dir else {}),
        )
        sharded = type(next(model.parameters())).__name__
        report(folder, rank, result, restored, local_first=local_first, sharded=sharded)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("snapshot_dir", [False, True], ids=["memory", "snapshot_dir"])
def test_two_fsdp2_ranks_agree_and_restore_their_shards(tmp_path, snapshot_dir):
    distributed_available()
    if not hasattr(require("torch.distributed.fsdp"), "fully_shard"):
        pytest.skip("this torch has no torch.distributed.fsdp.fully_shard (FSDP2)")
    torch.multiprocessing.spawn(_fsdp_worker, args=(str(tmp_path), snapshot_dir), nprocs=2, join=True)
    first, second = reports(tmp_path)
    assert_ranks_agree(first, second)
    assert first["sharded"] == "DTensor"  # the sweep ran on the sharded parameters
    assert first["local_first"] != second["local_first"]  # each rank its own batches...
    mean = (first["local_first"] + second["local_first"]) / 2  # ...and their mean recorded
    assert first["losses"][0] == pytest.approx(mean, rel=1e-5)
    assert not list(tmp_path.glob(".lrfinder-snapshot-*"))


# -- accelerate -------------------------------------------------------------------------------


def _accelerate_worker(rank: int, folder: str, port: int) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE="2",
    )
    torch.set_num_threads(1)
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    try:
        model = net()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        x, y = rank_data(0)  # accelerate shards the one dataset between the ranks
        loader = DataLoader(
            TensorDataset(x, y), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(1)
        )
        model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
        result, restored = sweep(model, loader, optimizer)
        report(
            folder,
            rank,
            result,
            restored,
            kind=str(accelerator.distributed_type),
            wrapped=type(model).__name__,
            optimizer=type(optimizer).__name__,
        )
    finally:
        accelerator.end_training()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_accelerate_ranks_agree_and_restore(tmp_path):
    distributed_available()
    require("accelerate")
    torch.multiprocessing.spawn(_accelerate_worker, args=(str(tmp_path), free_port()), nprocs=2, join=True)
    first, second = reports(tmp_path)
    assert_ranks_agree(first, second)
    assert first["kind"] == "DistributedType.MULTI_CPU"
    assert first["wrapped"] == "DistributedDataParallel" and first["optimizer"] == "AcceleratedOptimizer"

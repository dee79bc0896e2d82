"""The PyTorch restore gives back the very objects the user holds, and names snapshot_dir faults."""

from __future__ import annotations

import errno

import pytest

from tests.cases import require

torch = require("torch")

from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from lrfinder import find_lr  # noqa: E402
from lrfinder.trainers import _torch_state  # noqa: E402
from tests.cases_torch import BATCH, classification_data, mlp, warm_up  # noqa: E402

QUICK = {"start_lr": 1e-4, "end_lr": 1.0, "num_iter": 8, "progress": False}
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@pytest.mark.parametrize("tensor_lr", [False, True])
@pytest.mark.parametrize("warm", [False, True])
def test_param_groups_state_and_a_tensor_lr_are_the_same_objects_after_the_sweep(tensor_lr, warm):
    torch.manual_seed(0)
    x, y = classification_data(4 * BATCH)
    model = mlp()
    lr = torch.tensor(1e-3) if tensor_lr else 1e-3
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    if warm:
        warm_up(model, optimizer, x[:BATCH], y[:BATCH])
    groups_list, group = optimizer.param_groups, optimizer.param_groups[0]
    params_list, lr_object, state = group["params"], group["lr"], optimizer.state
    moments = {p: optimizer.state[p]["exp_avg"] for p in group["params"]} if warm else {}
    before = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in group.items()
              if k != "params"}
    find_lr(model, DataLoader(TensorDataset(x, y), batch_size=BATCH), optimizer, **QUICK)
    assert optimizer.param_groups is groups_list and optimizer.param_groups[0] is group
    assert group["params"] is params_list and group["lr"] is lr_object
    assert optimizer.state is state
    for key, value in before.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(group[key], value), key
        else:
            assert group[key] == value, key
    for param, moment in moments.items():
        assert optimizer.state[param]["exp_avg"] is moment
    if not warm:
        assert len(optimizer.state) == 0
    # the group the user holds still controls the optimizer
    if tensor_lr:
        group["lr"].fill_(0.0)
    else:
        group["lr"] = 0.0
    weights = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model(x[:BATCH]), y[:BATCH])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert all(torch.equal(a, p) for a, p in zip(weights, model.parameters(), strict=True))


def test_a_full_snapshot_dir_names_the_option_and_the_fix(tmp_path, monkeypatch):
    x, y = classification_data(2 * BATCH)
    model = mlp()
    weights = [p.detach().clone() for p in model.parameters()]

    def full_disk(obj, handle):
        handle.write(b"x" * 10)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_torch_state.torch, "save", full_disk)
    with pytest.raises(OSError, match=r"snapshot_dir=.*the disk is full.*free some space") as info:
        find_lr(model, DataLoader(TensorDataset(x, y), batch_size=BATCH), snapshot_dir=tmp_path, **QUICK)
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []  # no partial snapshot file left
    assert all(torch.equal(a, p) for a, p in zip(weights, model.parameters(), strict=True))

"""The PyTorch trainer beyond the contract suite: exact restoration, losses, options, DDP."""

from __future__ import annotations

import copy
import json
import random
import types
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.cases import Boom, assert_same, require

torch = require("torch")

from torch.utils.data import DataLoader, Dataset, TensorDataset  # noqa: E402

from lrfinder import RangeTestInterrupted, find_lr  # noqa: E402
from lrfinder.trainers import make_trainer  # noqa: E402
from tests.cases_torch import (  # noqa: E402
    BATCH,
    CLASSES,
    FEATURES,
    CountingDataset,
    classification_data,
    mlp,
    torch_state,
    warm_up,
)

F = torch.nn.functional
QUICK = {"start_lr": 1e-4, "end_lr": 1.0, "num_iter": 12, "progress": False}
# short sweeps often give no suggestion, which is beside the point of these tests
pytestmark = pytest.mark.filterwarnings("ignore:lrfinder. no suggestion:RuntimeWarning")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def batches_of(x: torch.Tensor, y: torch.Tensor, size: int = BATCH) -> list[tuple[torch.Tensor, ...]]:
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


# -- exact restoration of everything, with every source of randomness in play -----------------


class AugmentingDataset(CountingDataset):
    """Adds NumPy and Python-random noise to each sample, as data augmentation does."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = super().__getitem__(index)
        return x + 0.01 * float(np.random.normal()) + 0.01 * random.random(), y


def every_state(model, optimizer, generator) -> dict[str, Any]:
    state = torch_state(model, optimizer, generators=(generator,))
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state.update(
        {
            "numpy:keys": keys.copy(),
            "numpy:pos": np.array(pos),
            "numpy:gauss": np.array([has_gauss, cached]),
            "python": np.array(random.getstate()[1]),
        }
    )
    return state


@pytest.mark.parametrize("outcome", ["success", "exception", "interrupt"])
def test_everything_is_restored_bit_for_bit(outcome):
    x, y = classification_data(6 * BATCH)
    model = mlp(dropout=0.3)
    model[0].bias.requires_grad_(False)  # a frozen parameter stays frozen and unchanged
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    warm_up(model, optimizer, x[:BATCH], y[:BATCH])  # Adam moments and step counts exist
    model.eval()
    model[1].train()  # mixed train/eval flags come back as they were
    generator = torch.Generator().manual_seed(3)
    fail_at = None if outcome == "success" else 5
    fail_with = KeyboardInterrupt if outcome == "interrupt" else Boom
    data = DataLoader(
        AugmentingDataset(x, y, fail_at=fail_at, fail_with=fail_with),
        batch_size=BATCH,
        shuffle=True,
        generator=generator,
    )
    np.random.seed(4)
    random.seed(5)
    params = list(model.parameters())
    groups, group_dicts, opt_state = optimizer.param_groups, list(optimizer.param_groups), optimizer.state
    before = every_state(model, optimizer, generator)

    if outcome == "exception":
        with pytest.raises(Boom):
            find_lr(model, data, optimizer, **QUICK)
    elif outcome == "interrupt":
        with pytest.raises(RangeTestInterrupted) as info:
            find_lr(model, data, optimizer, **QUICK)
        result = info.value.result
        assert result.stop_reason == "interrupted" and result.num_steps == 5
    else:
        result = find_lr(model, data, optimizer, **QUICK)
        assert result.num_steps == QUICK["num_iter"]
    assert data.dataset.draws > 0

    assert_same(before, every_state(model, optimizer, generator))
    # the same Parameter objects, still the ones the optimizer holds
    assert all(a is b for a, b in zip(params, model.parameters(), strict=True))
    trained = [params[0], *params[2:]]
    assert all(a is b for a, b in zip(optimizer.param_groups[0]["params"], trained, strict=True))
    # the same param_groups list, group dicts and state mapping: a wrapper that shares them
    # (Lightning's LightningOptimizer) or a reference the user kept sees the restored values
    assert optimizer.param_groups is groups and optimizer.state is opt_state
    assert all(a is b for a, b in zip(optimizer.param_groups, group_dicts, strict=True))


def test_the_snapshot_is_a_cpu_copy_that_aliases_nothing():
    setup_x, setup_y = classification_data(4 * BATCH)
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    warm_up(model, optimizer, setup_x[:BATCH], setup_y[:BATCH])
    trainer = make_trainer(
        model, DataLoader(TensorDataset(setup_x, setup_y), batch_size=BATCH), optimizer=optimizer
    )
    trainer.snapshot()
    saved = trainer._snapshot._saved
    live = [p.data_ptr() for p in model.parameters()] + [b.data_ptr() for b in model.buffers()]
    live += [
        v.data_ptr() for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)
    ]
    copies = [t for t in saved["params"] + saved["grads"] + saved["buffers"] if t is not None]
    copies += [
        v for s in saved["optimizer"]["state"].values() for v in s.values() if isinstance(v, torch.Tensor)
    ]
    assert all(t.device.type == "cpu" for t in copies)
    assert not {t.data_ptr() for t in copies} & set(live)
    trainer.restore()
    assert trainer._snapshot._saved is None  # freed


def test_rng_is_restored_so_later_dropout_masks_are_unchanged():
    x, y = classification_data(4 * BATCH)
    model = mlp(dropout=0.5)
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True)
    torch.manual_seed(11)
    expected = model.train()(x).detach()  # dropout draws from the global torch RNG
    torch.manual_seed(11)
    find_lr(model, loader, **QUICK)  # draws shuffles and dropout masks, then puts the RNG back
    assert torch.equal(model.train()(x).detach(), expected)


# -- the recorded loss ------------------------------------------------------------------------


@pytest.mark.parametrize("grad_clip", [None, 0.05])
def test_recorded_losses_are_those_of_a_bare_training_loop(grad_clip):
    x, y = classification_data(5 * BATCH)
    model = mlp()
    twin = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    options = {} if grad_clip is None else {"grad_clip": grad_clip}
    result = find_lr(
        model,
        DataLoader(TensorDataset(x, y), batch_size=BATCH),
        optimizer,
        diverge_threshold=None,
        **options,
        **QUICK,
    )
    assert result.num_steps == QUICK["num_iter"]

    twin_optimizer = torch.optim.SGD(twin.parameters(), lr=0.01, momentum=0.9)
    twin.train()
    batches = batches_of(x, y)
    expected = []
    for step, lr in enumerate(result.lrs):
        for group in twin_optimizer.param_groups:
            group["lr"] = float(lr)
        twin_optimizer.zero_grad()
        loss = F.cross_entropy(twin(batches[step % len(batches)][0]), batches[step % len(batches)][1])
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(twin.parameters(), grad_clip)
        twin_optimizer.step()
        expected.append(loss.item())
    np.testing.assert_allclose(result.losses, expected, rtol=1e-6)
    assert result.info["optimizer"] == "SGD"
    assert ("grad_clip" in result.info) == (grad_clip is not None)


def test_a_sweep_started_under_no_grad_still_trains():
    x, y = classification_data(3 * BATCH)
    model = mlp()
    with torch.no_grad():
        result = find_lr(model, DataLoader(TensorDataset(x, y), batch_size=BATCH), **QUICK)
    assert result.num_steps == QUICK["num_iter"] and len(set(result.losses.tolist())) > 1


def test_gradient_accumulation_gives_the_losses_of_the_larger_batch():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(FEATURES, 16), torch.nn.Tanh(), torch.nn.Linear(16, CLASSES)
    )  # no BatchNorm: micro-batches add up
    x, y = classification_data(6 * BATCH)
    losses = []
    for batch_size, steps in ((2 * BATCH, 1), (BATCH, 2)):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        result = find_lr(
            model,
            DataLoader(TensorDataset(x, y), batch_size=batch_size),
            optimizer,
            accumulation_steps=steps,
            diverge_threshold=None,
            **QUICK,
        )
        assert result.info["accumulation_steps"] == steps
        losses.append(result.losses)
    assert len(losses[0]) == QUICK["num_iter"]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    assert not np.allclose(losses[0][:1], losses[0][-1:])  # the model did train


def test_validation_mode_records_the_eval_loss_after_each_step():
    x, y = classification_data(4 * BATCH)
    xv, yv = classification_data(3 * BATCH, seed=5)
    model = mlp()
    twin = copy.deepcopy(model)
    seen: list[tuple[bool, bool, int]] = []
    model.register_forward_hook(
        lambda module, args, out: seen.append((module.training, torch.is_grad_enabled(), len(args[0])))
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    val = DataLoader(TensorDataset(xv, yv), batch_size=BATCH)
    result = find_lr(
        model,
        DataLoader(TensorDataset(x, y), batch_size=BATCH),
        optimizer,
        val_loader=val,
        val_batches=2,
        start_lr=0.5,
        end_lr=1.0,
        num_iter=3,
        progress=False,
    )
    assert result.info["loss"] == "validation" and result.info["val_batches"] == 2
    # per step: one training forward, then two validation forwards in eval mode without grad
    assert seen == [(True, True, BATCH), (False, False, BATCH), (False, False, BATCH)] * 3

    def val_loss(net: torch.nn.Module) -> float:
        net.eval()
        with torch.no_grad():
            return float(
                sum(F.cross_entropy(net(xv[i : i + BATCH]), yv[i : i + BATCH]) for i in (0, BATCH)) / 2
            )

    before_step = val_loss(twin)
    twin.train()
    twin_optimizer = torch.optim.SGD(twin.parameters(), lr=0.5)
    F.cross_entropy(twin(x[:BATCH]), y[:BATCH]).backward()
    twin_optimizer.step()
    assert result.losses[0] == pytest.approx(val_loss(twin), rel=1e-6)
    assert result.losses[0] != pytest.approx(before_step, rel=1e-3)


def test_val_loader_settings_are_checked():
    x, y = classification_data(2 * BATCH)
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH)
    with pytest.raises(TypeError, match="val_batches only applies with val_loader"):
        find_lr(mlp(), loader, val_batches=2, **QUICK)
    with pytest.raises(ValueError, match="give val_batches"):
        find_lr(mlp(), loader, val_loader=iter(batches_of(x, y)), **QUICK)


# -- optimizers and learning rates ------------------------------------------------------------


def test_param_groups_keep_their_lr_ratios_and_get_their_lrs_back():
    model = mlp()
    optimizer = torch.optim.Adam(
        [
            {"params": model[0].parameters(), "lr": 1e-2},
            {"params": list(model[1].parameters()) + list(model[3].parameters()), "lr": 1e-3},
        ]
    )
    used: list[tuple[float, float]] = []
    optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: used.append(tuple(g["lr"] for g in opt.param_groups))
    )
    x, y = classification_data(3 * BATCH)
    result = find_lr(model, DataLoader(TensorDataset(x, y), batch_size=BATCH), optimizer, **QUICK)
    first, second = np.array(used).T
    np.testing.assert_allclose(first, result.lrs, rtol=1e-12)  # the LR axis is group 0's
    np.testing.assert_allclose(second, 0.1 * result.lrs, rtol=1e-12)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-2, 1e-3]
    assert result.info["lr_ratios"] == pytest.approx([1.0, 0.1])
    assert "group 0" in result.info["base_lr"]


def test_without_an_optimizer_adamw_is_built_over_trainable_parameters():
    model = mlp()
    model[0].weight.requires_grad_(False)
    frozen = model[0].weight.detach().clone()
    x, y = classification_data(3 * BATCH)
    seen: list[Any] = []

    def spy(step: int, lr: float, loss: float, smoothed: float) -> None:
        seen.append(model[0].weight.detach().clone())

    result = find_lr(model, DataLoader(TensorDataset(x, y), batch_size=BATCH), callback=spy, **QUICK)
    assert result.info["optimizer"].startswith("AdamW")
    assert "lrfinder" in result.info["optimizer_built"]
    assert all(torch.equal(w, frozen) for w in seen)  # never trained, even during the sweep
    assert not model[0].weight.requires_grad


def test_an_optimizer_class_or_unknown_options_are_clear_errors():
    x, y = classification_data(2 * BATCH)
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH)
    with pytest.raises(TypeError, match=r"SGD\(model.parameters\(\)"):
        find_lr(mlp(), loader, torch.optim.SGD, **QUICK)
    with pytest.raises(TypeError, match="batch_size: the DataLoader sets the batch size"):
        find_lr(mlp(), loader, batch_size=4, **QUICK)
    with pytest.raises(ValueError, match="accumulation_steps must be >= 1"):
        find_lr(mlp(), loader, accumulation_steps=0, **QUICK)
    with pytest.raises(ValueError, match="amp must be"):
        find_lr(mlp(), loader, amp="fp8", **QUICK)
    with pytest.raises(ValueError, match="grad_clip must be a positive"):
        find_lr(mlp(), loader, grad_clip=-1.0, **QUICK)


# -- data -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ((torch.zeros(4, FEATURES), torch.zeros(4)), "tuple of tensors"),
        (TensorDataset(torch.zeros(4, FEATURES), torch.zeros(4)), "is a Dataset"),
        (None, "needs data"),
    ],
)
def test_data_of_the_wrong_kind_is_a_clear_error(data, message):
    with pytest.raises(TypeError, match=message):
        find_lr(mlp(), data, **QUICK)


def test_batch_fn_reads_other_batch_shapes():
    x, y = classification_data(3 * BATCH)
    triples = [(xb, "meta", yb) for xb, yb in batches_of(x, y)]
    with pytest.raises(TypeError, match="batch_fn"):
        find_lr(mlp(), triples, **QUICK)
    result = find_lr(mlp(), triples, batch_fn=lambda b: (b[0], b[2]), **QUICK)
    assert result.num_steps == QUICK["num_iter"]


# -- criterion inference ----------------------------------------------------------------------


def first_loss_of(model: torch.nn.Module, loss_fn, *batch) -> float:
    twin = copy.deepcopy(model).train()
    with torch.no_grad():
        return float(loss_fn(twin, *batch))


def test_class_labels_mean_cross_entropy():
    x, y = classification_data(3 * BATCH)
    model = mlp()
    expected = first_loss_of(model, lambda m, a, b: F.cross_entropy(m(a), b), x[:BATCH], y[:BATCH])
    result = find_lr(model, DataLoader(TensorDataset(x, y), batch_size=BATCH), **QUICK)
    assert result.info["criterion"].startswith("CrossEntropyLoss")
    assert result.losses[0] == pytest.approx(expected, rel=1e-6)


def test_float_targets_mean_mean_squared_error_with_equal_shapes():
    x, _ = classification_data(3 * BATCH)
    y = x[:, :2].sum(dim=1, keepdim=True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(FEATURES, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    expected = first_loss_of(model, lambda m, a, b: F.mse_loss(m(a), b), x[:BATCH], y[:BATCH])
    result = find_lr(model, DataLoader(TensorDataset(x, y), batch_size=BATCH), **QUICK)
    assert result.info["criterion"].startswith("MSELoss")
    assert result.losses[0] == pytest.approx(expected, rel=1e-6)

    before = torch_state(model)
    with pytest.raises(ValueError, match=r"shape \(8,\), output of shape \(8, 1\)"):
        find_lr(model, DataLoader(TensorDataset(x, y[:, 0]), batch_size=BATCH), **QUICK)
    assert_same(before, torch_state(model))


class OwnLossModel(torch.nn.Module):
    """Returns its loss in its output: as an attribute, a dict key, or HF style from ``labels``."""

    def __init__(self, style: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Linear(FEATURES, CLASSES)
        self.style = style

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> Any:
        logits = self.net(features)
        loss = None if labels is None else F.cross_entropy(logits, labels) + 1.0
        if self.style == "attribute":
            return types.SimpleNamespace(loss=loss, logits=logits)
        return {"loss": loss, "logits": logits}


class DictDataset(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"features": self.x[index], "labels": self.y[index]}


@pytest.mark.parametrize("style", ["attribute", "dict"])
def test_a_model_that_returns_its_own_loss_is_trained_on_it(style):
    x, y = classification_data(3 * BATCH)
    model = OwnLossModel(style)
    expected = first_loss_of(model, lambda m, a, b: _own(m(a, b)), x[:BATCH], y[:BATCH])
    # the model computes its loss from the targets, passed as the tuple's second input
    data = DataLoader(TensorDataset(x, y), batch_size=BATCH)
    result = find_lr(model, data, batch_fn=lambda b: ((b[0], b[1]), None), **QUICK)
    assert result.info["criterion"].startswith("the model's own loss")
    assert result.losses[0] == pytest.approx(expected, rel=1e-6)


def _own(output: Any) -> torch.Tensor:
    return output["loss"] if isinstance(output, dict) else output.loss


def test_hugging_face_style_dict_batches_with_labels():
    x, y = classification_data(3 * BATCH)
    model = OwnLossModel("dict")
    data = DataLoader(DictDataset(x, y), batch_size=BATCH)
    own = first_loss_of(model, lambda m, a, b: m(a, b)["loss"], x[:BATCH], y[:BATCH])
    result = find_lr(model, data, **QUICK)
    assert result.info["criterion"].startswith("the model's own loss")
    assert result.losses[0] == pytest.approx(own, rel=1e-6)
    # with a criterion, the labels go to it (not to the model) and it gets the logits
    plain = first_loss_of(model, lambda m, a, b: F.cross_entropy(m(a)["logits"], b), x[:BATCH], y[:BATCH])
    result = find_lr(model, data, criterion=torch.nn.CrossEntropyLoss(), **QUICK)
    assert result.losses[0] == pytest.approx(plain, rel=1e-6)
    assert result.info["criterion"] == "CrossEntropyLoss"


def test_a_loss_that_cannot_be_inferred_asks_for_criterion():
    x, _ = classification_data(2 * BATCH)
    with pytest.raises(TypeError, match="pass criterion="):
        find_lr(mlp(), [x[:BATCH], x[BATCH:]], **QUICK)  # inputs only, plain logits out
    flags = [(x[:BATCH], torch.ones(BATCH, dtype=torch.bool))]
    with pytest.raises(TypeError, match="pass criterion="):
        find_lr(mlp(), flags, **QUICK)


# -- mixed precision --------------------------------------------------------------------------


def test_bf16_autocast_runs_on_cpu():
    x, y = classification_data(3 * BATCH)
    model = mlp()
    dtypes: list[torch.dtype] = []
    model[0].register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    warm_up(model, optimizer, x[:BATCH], y[:BATCH])
    dtypes.clear()
    before = torch_state(model, optimizer)
    result = find_lr(model, DataLoader(TensorDataset(x, y), batch_size=BATCH), optimizer, amp="bf16", **QUICK)
    assert result.info["amp"] == "bfloat16"
    assert dtypes == [torch.bfloat16] * QUICK["num_iter"]
    assert np.all(np.isfinite(result.losses))
    assert_same(before, torch_state(model, optimizer))  # parameters stay float32 and exact
    assert model[0].weight.dtype == torch.float32


def test_a_user_grad_scaler_is_used_and_its_state_restored():
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8, growth_interval=1)
    x, y = classification_data(3 * BATCH)
    model = mlp()
    before = scaler.state_dict()
    scales: list[float] = []
    result = find_lr(
        model,
        DataLoader(TensorDataset(x, y), batch_size=BATCH),
        amp=scaler,
        callback=lambda *_: scales.append(scaler.get_scale()),
        **QUICK,
    )
    assert result.info["amp"] == "float16 with GradScaler"
    assert scales[-1] > 2.0**8  # the sweep used it (it grows after every finite step)
    assert scaler.state_dict() == before


# -- on-disk snapshot -------------------------------------------------------------------------


@pytest.mark.parametrize("fail_at", [None, 4])
def test_an_on_disk_snapshot_loads_with_weights_only_and_leaves_no_file(tmp_path, fail_at):
    x, y = classification_data(6 * BATCH)
    model = mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    warm_up(model, optimizer, x[:BATCH], y[:BATCH])
    before = torch_state(model, optimizer)
    files: list[list[str]] = []

    def look(step: int, *_: float) -> None:
        if step == 0:
            found = sorted(tmp_path.iterdir())
            files.append([p.name for p in found])
            saved = torch.load(found[0], weights_only=True)
            assert set(saved) == {"params", "grads", "buffers", "optimizer"}
            assert torch.equal(saved["params"][0], before_weight)

    before_weight = model[0].weight.detach().clone()
    data = DataLoader(CountingDataset(x, y, fail_at=fail_at), batch_size=BATCH)
    if fail_at is None:
        result = find_lr(model, data, optimizer, snapshot_dir=tmp_path, callback=look, **QUICK)
        assert result.info["snapshot"] == f"file in {tmp_path}"
    else:
        with pytest.raises(Boom):
            find_lr(model, data, optimizer, snapshot_dir=tmp_path, callback=look, **QUICK)
    assert len(files) == 1 and len(files[0]) == 1 and files[0][0].startswith(".lrfinder-snapshot-")
    assert list(tmp_path.iterdir()) == []
    assert_same(before, torch_state(model, optimizer))


def test_an_unreadable_snapshot_file_still_restores_the_rest_and_is_deleted(tmp_path):
    x, y = classification_data(3 * BATCH)
    model = mlp().eval()
    rng = torch.get_rng_state()

    def spoil(step: int, *_: float) -> None:
        if step == 0:
            next(tmp_path.iterdir()).write_bytes(b"not a checkpoint")

    with pytest.raises(RuntimeError, match=r"could not be read back.*NOT restored"):
        find_lr(model, batches_of(x, y), snapshot_dir=tmp_path, callback=spoil, **QUICK)
    assert list(tmp_path.iterdir()) == []
    assert not model.training and torch.equal(torch.get_rng_state(), rng)


def test_a_missing_snapshot_dir_is_a_clear_error(tmp_path):
    x, y = classification_data(2 * BATCH)
    with pytest.raises(ValueError, match="not an existing folder"):
        find_lr(mlp(), batches_of(x, y), snapshot_dir=tmp_path / "nope", **QUICK)


# -- devices ----------------------------------------------------------------------------------


def test_sync_every_is_one_on_the_cpu():
    x, y = classification_data(2 * BATCH)
    trainer = make_trainer(mlp(), batches_of(x, y))
    assert trainer.sync_every == 1 and trainer.info["device"] == "cpu" and trainer.is_main_process


def test_losses_read_in_blocks_as_on_an_accelerator_are_the_same_and_stop_at_the_same_step():
    x, y = classification_data(4 * BATCH)
    outcomes = []
    for sync_every in (1, 8):
        model = mlp()
        trainer = make_trainer(
            model,
            DataLoader(TensorDataset(x, y), batch_size=BATCH),
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
        )
        trainer.sync_every = sync_every  # the engine then keeps 8 steps' losses before reading them
        outcomes.append(find_lr(trainer, start_lr=1e-3, end_lr=1e4, num_iter=100, progress=False))
    assert outcomes[0].stop_reason in ("diverged", "non_finite")
    assert outcomes[0].num_steps < 90
    np.testing.assert_array_equal(outcomes[1].losses, outcomes[0].losses)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cpu_model_swept_on_cuda_comes_back_to_the_cpu_unchanged():
    x, y = classification_data(4 * BATCH)
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    warm_up(model, optimizer, x[:BATCH], y[:BATCH])
    before = torch_state(model, optimizer)
    result = find_lr(
        model,
        DataLoader(TensorDataset(x, y), batch_size=BATCH),
        optimizer,
        device="cuda",
        amp="fp16",
        **QUICK,
    )
    assert result.info["device"] == "cuda:0" and np.all(np.isfinite(result.losses))
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert_same(before, torch_state(model, optimizer))


# -- distributed ------------------------------------------------------------------------------


def _ddp_worker(rank: int, world_size: int, folder: str) -> None:
    """One rank of the DDP test: sweep, then report what it saw to ``report{rank}.json``."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{folder}/store",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=120),
    )
    try:
        model = mlp(seed=0)
        x, y = classification_data(4 * BATCH, seed=10 + rank)  # every rank has its own data
        local_first = first_loss_of(model, lambda m, a, b: F.cross_entropy(m(a), b), x[:BATCH], y[:BATCH])
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
        before = torch_state(model, optimizer)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = find_lr(
                ddp,
                DataLoader(TensorDataset(x, y), batch_size=BATCH),
                optimizer,
                start_lr=1e-3,
                end_lr=1e4,
                num_iter=80,
                progress=False,
            )
        after = torch_state(model, optimizer)
        result.to_json(Path(folder) / f"result{rank}.json")
        result.save_plot(Path(folder) / f"plot{rank}.png")
        report = {
            "losses": result.losses.tolist(),
            "stop_reason": result.stop_reason,
            "suggestion": result.suggestion,
            "is_main_process": result.is_main_process,
            "world_size": result.info["world_size"],
            "local_first": local_first,
            "restored": all(before[k].tobytes() == after[k].tobytes() for k in before),
        }
        (Path(folder) / f"report{rank}.json").write_text(json.dumps(report))
    finally:
        dist.destroy_process_group()


def test_two_ddp_processes_agree_on_every_loss_and_the_suggestion(tmp_path):
    require("torch.distributed")
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this build")
    torch.multiprocessing.spawn(_ddp_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    reports = [json.loads((tmp_path / f"report{rank}.json").read_text()) for rank in (0, 1)]
    first, second = reports
    assert first["losses"] == second["losses"]  # the same floats, so the same stop and suggestion
    assert first["stop_reason"] == second["stop_reason"] == "diverged"
    assert len(first["losses"]) < 80
    assert first["suggestion"] == second["suggestion"] is not None
    assert first["local_first"] != second["local_first"]  # the ranks saw different batches...
    mean = (first["local_first"] + second["local_first"]) / 2  # ...and recorded their mean
    assert first["losses"][0] == pytest.approx(mean, rel=1e-6)
    assert [r["is_main_process"] for r in reports] == [True, False]
    assert first["world_size"] == 2 and first["restored"] and second["restored"]
    assert (tmp_path / "result0.json").exists() and (tmp_path / "plot0.png").exists()
    assert not (tmp_path / "result1.json").exists() and not (tmp_path / "plot1.png").exists()

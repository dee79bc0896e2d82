"""Lightning: find_lr on a LightningModule (training_step, configure_optimizers) and the callback."""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.cases import require

torch = require("torch")
pl = require("lightning.pytorch")

from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from lrfinder import find_lr  # noqa: E402
from lrfinder.lightning import LRFinderCallback, scale_lr  # noqa: E402
from lrfinder.trainers import make_trainer  # noqa: E402
from lrfinder.trainers.lightning_trainer import LightningTrainer, parse_optimizers  # noqa: E402

F = nn.functional
QUICK = {"start_lr": 1e-4, "end_lr": 10.0, "num_iter": 15, "progress": False}
pytestmark = [
    pytest.mark.filterwarnings("ignore:lrfinder. :RuntimeWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning:lightning.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def data(n: int = 128, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()


def loader(n: int = 128, shuffle: bool = False) -> DataLoader:
    return DataLoader(
        TensorDataset(*data(n)),
        batch_size=16,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(3) if shuffle else None,
    )


class Net(pl.LightningModule):
    """No forward(): the loss exists only in training_step (label-smoothed, with dropout)."""

    def __init__(self, lr: float = 0.05, returns: str = "tensor", skip_every: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3)
        )

    def loss_of(self, batch: Any) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.body(x), y, label_smoothing=0.2)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        if self.hparams.skip_every and batch_idx % self.hparams.skip_every == 1:
            return None
        loss = self.loss_of(batch)
        self.log("train_loss", loss)  # no Trainer: must be ignored, not warned about or raised
        return {"loss": loss, "extra": 1} if self.hparams.returns == "dict" else loss

    def validation_step(self, batch: Any, batch_idx: int) -> Any:
        return self.loss_of(batch)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)


def state(module: Any, optimizer: Any = None, schedulers: tuple = ()) -> dict[str, bytes]:
    out = {f"p.{k}": v.detach().numpy().tobytes() for k, v in module.state_dict().items()}
    out.update(
        {
            f"g.{n}": (None if p.grad is None else p.grad.numpy().tobytes())
            for n, p in module.named_parameters()
        }
    )
    out["training"] = str([m.training for m in module.modules()]).encode()
    out["rng"] = torch.get_rng_state().numpy().tobytes() + str(random.getstate()).encode()
    out["np"] = str(np.random.get_state()).encode()
    if optimizer is not None:
        out["opt"] = repr(optimizer.state_dict()).encode()
    for i, scheduler in enumerate(schedulers):
        out[f"s{i}"] = repr(scheduler.state_dict()).encode()
    return out


def warmed(module: Net, optimizer: Any, steps: int = 3) -> None:
    """Some training so that momentum, running statistics and gradients are non-trivial."""
    for x, y in list(loader())[:steps]:
        optimizer.zero_grad()
        module.loss_of((x, y)).backward()
        optimizer.step()


def test_a_lightning_module_is_never_treated_as_a_plain_module():
    module = Net()
    with pytest.raises(NotImplementedError):  # no forward(): only training_step knows the loss
        module(torch.zeros(2, 6))
    trainer = make_trainer(module, loader())
    assert isinstance(trainer, LightningTrainer) and trainer.backend == "lightning"


def test_the_loss_is_training_steps_and_the_optimizer_configure_optimizers():
    module = Net()
    batches = list(loader())
    torch.manual_seed(5)
    expected = module.loss_of(batches[0]).item()  # dropout draws from the seeded RNG
    module.zero_grad()
    torch.manual_seed(5)
    result = find_lr(module, batches, **QUICK)
    assert result.backend == "lightning" and result.info["optimizer"] == "SGD"
    assert result.info["criterion"] == "Net.training_step"
    assert result.losses[0] == pytest.approx(expected, rel=1e-6)
    # a plain cross-entropy on forward() would not match the label-smoothed loss
    with torch.no_grad():
        plain = F.cross_entropy(module.body.eval()(batches[0][0]), batches[0][1]).item()
    module.train()
    assert abs(result.losses[0] - plain) > 1e-3


def test_everything_is_restored_bit_for_bit_with_a_scheduler_set_aside():
    module = Net()

    class WithScheduler(Net):
        def configure_optimizers(self) -> Any:
            return {"optimizer": self.opt, "lr_scheduler": {"scheduler": self.sched, "interval": "step"}}

    module = WithScheduler()
    module.opt = torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9)
    module.sched = torch.optim.lr_scheduler.StepLR(module.opt, step_size=2, gamma=0.5)
    warmed(module, module.opt)
    module.sched.step()
    before = state(module, module.opt, (module.sched,))
    result = find_lr(module, loader(shuffle=True), **QUICK)
    assert "StepLR" in result.info["schedulers"] and len(result.losses) > 3
    assert state(module, module.opt, (module.sched,)) == before
    assert "log" not in vars(module)  # the muted self.log is gone again


OPT_FORMS = {
    "optimizer": lambda o, s: o,
    "list": lambda o, s: [o],
    "tuple of lists": lambda o, s: ([o], [s]),
    "lists, one scheduler": lambda o, s: ([o], s),
    "dict": lambda o, s: {"optimizer": o},
    "dict with scheduler": lambda o, s: {"optimizer": o, "lr_scheduler": s},
    "dict with scheduler dict": lambda o, s: {
        "optimizer": o,
        "lr_scheduler": {"scheduler": s, "interval": "step"},
    },
    "list of dicts": lambda o, s: [{"optimizer": o, "lr_scheduler": s}],
}


@pytest.mark.parametrize("form", OPT_FORMS, ids=list(OPT_FORMS))
def test_every_form_configure_optimizers_returns(form):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.LinearLR(opt)
    optimizers, schedulers = parse_optimizers(OPT_FORMS[form](opt, sched))
    assert optimizers == [opt]
    assert schedulers == ([] if form in ("optimizer", "list", "dict") else [sched])

    class Form(Net):
        def configure_optimizers(self) -> Any:
            o = torch.optim.Adam(self.parameters(), lr=1e-3)
            return OPT_FORMS[form](o, torch.optim.lr_scheduler.LinearLR(o))

    result = find_lr(Form(), loader(), **QUICK)
    assert result.info["optimizer"] == "Adam" and np.all(np.isfinite(result.losses[:3]))


@pytest.mark.parametrize(
    "returned, message",
    [
        (None, "not an optimizer"),
        ("two", "returned 2 optimizers"),
        ("trainer", "needs a Lightning Trainer"),
        ({"lr_scheduler": None}, "without 'optimizer'"),
    ],
)
def test_configure_optimizers_that_cannot_be_swept_say_what_to_do(returned, message):
    class Bad(Net):
        def configure_optimizers(self) -> Any:
            if returned == "two":
                return [torch.optim.SGD(self.parameters(), lr=0.1), torch.optim.Adam(self.parameters())]
            if returned == "trainer":
                return torch.optim.SGD(self.parameters(), lr=0.1 * self.trainer.max_epochs)
            return returned

    with pytest.raises(TypeError, match=message):
        find_lr(Bad(), loader(), **QUICK)


def test_an_explicit_optimizer_wins_and_is_restored():
    module = Net()
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    warmed(module, optimizer)
    before = state(module, optimizer)
    result = find_lr(module, loader(), optimizer, **QUICK)
    assert result.info["optimizer"] == "Adam"
    assert state(module, optimizer) == before


def test_a_dict_with_loss_and_skipped_batches_work():
    result = find_lr(Net(returns="dict", skip_every=2), loader(), **QUICK)
    assert len(result.losses) > 3


def test_a_training_step_that_always_skips_is_an_error():
    class Skips(Net):
        def training_step(self, batch: Any, batch_idx: int) -> None:
            return None

    with pytest.raises(ValueError, match="returned None"):
        find_lr(Skips(), loader(), **QUICK)


def test_a_training_step_returning_something_else_is_an_error():
    class Odd(Net):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return {"total": self.loss_of(batch)}

    with pytest.raises(TypeError, match="a dict with 'loss'"):
        find_lr(Odd(), loader(), **QUICK)


class WarnsOfSelfLog(Net):
    """Warns as Lightning does of a ``self.log`` it cannot record, and with a warning of its own."""

    def __init__(self, fail_at: int = -1) -> None:
        super().__init__()
        self.fail_at = fail_at

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        message = "You are trying to `self.log()` but it is not managed by the `Trainer`"
        warnings.warn(message, UserWarning, stacklevel=1)
        warnings.warn("the user's own warning", UserWarning, stacklevel=1)
        if batch_idx == self.fail_at:
            raise RuntimeError("step failed")
        return super().training_step(batch, batch_idx)


@pytest.fixture
def entered(monkeypatch) -> list[int]:
    """Counts the warning contexts the Lightning trainer enters."""
    import lrfinder.trainers.lightning_trainer as module

    count: list[int] = []

    class Counting(warnings.catch_warnings):
        def __enter__(self) -> Any:
            count.append(1)
            return super().__enter__()

    fake = type("Warnings", (), {"catch_warnings": Counting, "filterwarnings": warnings.filterwarnings})
    monkeypatch.setattr(module, "warnings", fake)
    return count


@pytest.mark.parametrize("fail_at", [-1, 3])
def test_self_log_warnings_are_muted_once_for_the_sweep_and_the_users_filters_come_back(entered, fail_at):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", message="unrelated")  # a filter of the user's own
        before = list(warnings.filters)
        if fail_at < 0:
            result = find_lr(WarnsOfSelfLog(), loader(), **QUICK)
            assert result.num_steps == QUICK["num_iter"]
        else:
            with pytest.raises(RuntimeError, match="step failed"):
                find_lr(WarnsOfSelfLog(fail_at), loader(), **QUICK)
        assert warnings.filters == before
        warnings.warn("a self.log warning after the sweep", UserWarning, stacklevel=1)
    messages = [str(w.message) for w in seen]
    assert len(entered) == 1  # once for the sweep, not once a batch
    assert messages.count("the user's own warning") == (QUICK["num_iter"] if fail_at < 0 else fail_at + 1)
    assert [m for m in messages if "self.log" in m] == ["a self.log warning after the sweep"]


def test_a_datamodule_or_the_modules_own_loader():
    class Data(pl.LightningDataModule):
        def train_dataloader(self) -> DataLoader:
            return loader()

    class Own(Net):
        def train_dataloader(self) -> DataLoader:
            return loader()

    assert len(find_lr(Net(), Data(), **QUICK).losses) > 3
    assert len(find_lr(Own(), **QUICK).losses) > 3
    with pytest.raises(TypeError, match="train_dataloader"):
        find_lr(Net(), **QUICK)


def test_val_loader_reads_validation_step():
    result = find_lr(Net(), loader(), val_loader=loader(32), **QUICK)
    assert result.info["loss"] == "validation"

    class Silent(Net):
        def validation_step(self, batch: Any, batch_idx: int) -> None:
            return None

    with pytest.raises(ValueError, match="validation_step returned None"):
        find_lr(Silent(), loader(), val_loader=loader(32), **QUICK)


def test_manual_optimization_and_criterion_are_refused():
    class Manual(Net):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False

    with pytest.raises(TypeError, match="manual optimization"):
        find_lr(Manual(), loader(), **QUICK)
    with pytest.raises(TypeError, match="training_step computes the loss"):
        find_lr(Net(), loader(), criterion=nn.CrossEntropyLoss(), **QUICK)


# -- the callback ------------------------------------------------------------------------------


class OneCycle(Net):
    def configure_optimizers(self) -> Any:
        opt = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=self.hparams.lr, total_steps=self.trainer.estimated_stepping_batches
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class Watch(pl.Callback):
    """Records the weights as fit starts (before the finder) and as training starts (after it)."""

    def on_fit_start(self, trainer: Any, module: Any) -> None:
        schedulers = [c.scheduler for c in trainer.lr_scheduler_configs]
        self.at_fit_start = state(module, trainer.optimizers[0], schedulers)

    def on_train_start(self, trainer: Any, module: Any) -> None:
        self.at_train_start = state(module)


def fit(module: Any, callbacks: list[Any], data: Any = None, **kwargs: Any) -> Any:
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        **kwargs,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, loader(256, shuffle=True) if data is None else data)
    return trainer


def test_the_callback_sweeps_at_fit_start_restores_and_trains_on_at_the_suggestion():
    module = OneCycle()
    watch = Watch()
    finder = LRFinderCallback(start_lr=1e-4, end_lr=100, num_iter=30, progress=False)
    trainer = fit(module, [watch, finder])
    result = finder.result
    assert result is not None and result.backend == "lightning" and result.suggestion is not None
    assert result.info["optimizer"] == "SGD" and "OneCycleLR" in result.info["schedulers"]
    assert module.hparams.lr == result.suggestion
    group = trainer.optimizers[0].param_groups[0]
    assert group["max_lr"] == pytest.approx(result.suggestion)  # the schedule peaks at the suggestion
    assert trainer.global_step == 16  # and the fit went on
    for key, value in watch.at_fit_start.items():
        if key.startswith(("p.", "g.")):
            assert watch.at_train_start[key] == value, key  # restored before training began


def test_the_callback_takes_the_trainers_accumulation_and_clipping():
    finder = LRFinderCallback(num_iter=10, progress=False, update_attr=False)
    module = Net()
    fit(module, [finder], accumulate_grad_batches=2, gradient_clip_val=0.5)
    assert finder.result.info["accumulation_steps"] == 2 and finder.result.info["grad_clip"] == 0.5
    assert module.hparams.lr == 0.05  # update_attr=False leaves it


def test_the_callback_refuses_what_it_takes_from_the_trainer():
    with pytest.raises(TypeError, match="from the Lightning Trainer"):
        LRFinderCallback(optimizer=None)
    with pytest.raises(TypeError, match="not an option of find_lr"):
        LRFinderCallback(numiter=10)


def test_scale_lr_moves_every_lr_and_the_schedulers_together():
    p, q = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p], "lr": 0.1}, {"params": [q], "lr": 0.01}])
    sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.5, total_iters=4)
    assert scale_lr(opt, [sched], 1.0) == pytest.approx(10.0)
    assert [g["initial_lr"] for g in opt.param_groups] == pytest.approx([1.0, 0.1])
    assert sched.base_lrs == pytest.approx([1.0, 0.1])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)  # still half-way through the warm-up


class Report(pl.Callback):
    """Writes what each rank's finder saw, once training starts, to ``rank{N}.json``."""

    def __init__(self, finder: LRFinderCallback, folder: str) -> None:
        self.finder, self.folder = finder, folder

    def on_train_start(self, trainer: Any, module: Any) -> None:
        result = self.finder.result
        report = {
            "losses": result.losses.tolist(),
            "suggestion": result.suggestion,
            "lr": module.hparams.lr,
            "world_size": result.info["world_size"],
            "main": result.is_main_process,
        }
        (Path(self.folder) / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))


def test_the_callback_under_ddp_gives_every_rank_the_same_curve_and_lr(tmp_path):
    require("torch.distributed")
    finder = LRFinderCallback(start_lr=1e-4, end_lr=100, num_iter=30, progress=False)
    # a loader without a torch.Generator: sending one to the spawned ranks failed (shared-memory error)
    fit(Net(), [finder, Report(finder, str(tmp_path))], loader(256), devices=2, strategy="ddp_spawn")
    first, second = (json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1))
    assert first["losses"] == second["losses"] and len(first["losses"]) > 5
    assert first["suggestion"] == second["suggestion"] == first["lr"] == second["lr"] is not None
    assert first["world_size"] == 2 and [first["main"], second["main"]] == [True, False]


class Logging(Net):
    """The usual validation_step: it logs the loss and returns nothing."""

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_loss", self.loss_of(batch))


def test_confirm_scores_on_training_steps_loss_when_validation_step_returns_nothing():
    module = Logging()
    before = state(module)
    result = find_lr(
        module,
        loader(),
        schedule="onecycle",
        train_steps=60,
        confirm=True,
        confirm_data=loader(32),
        progress=False,
    )
    assert result.confirmation.probes and all(np.isfinite(p.score) for p in result.confirmation.probes)
    assert state(module) == before
    # the score is training_step's loss on the held-out batches, in eval mode without gradients
    module.eval()
    with torch.no_grad():
        expected = float(np.mean([float(module.loss_of(b)) for b in loader(32)]))
    module.train()
    trainer = make_trainer(module, loader())
    before = state(module)
    trainer.snapshot()
    try:
        assert trainer.evaluate(loader(32)) == pytest.approx(expected, rel=1e-6)
    finally:
        trainer.restore()
    after = state(module)
    assert [k for k in before if before[k] != after[k]] == []


def test_the_callback_plans_for_the_fits_length_and_confirms_on_its_validation_data():
    finder = LRFinderCallback(schedule="onecycle", confirm=True, progress=False)
    with pytest.raises(TypeError, match="held-out data"):  # no validation data in this fit
        fit(Logging(), [finder], data=loader(1024, shuffle=True))
    finder = LRFinderCallback(schedule="onecycle", confirm=True, progress=False)
    trainer = pl.Trainer(
        max_epochs=4,
        callbacks=[finder],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        num_sanity_val_steps=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Logging(), loader(256, shuffle=True), loader(32))
    result = finder.result
    assert result.plan.train_steps == trainer.estimated_stepping_batches == 64
    assert result.confirmation.probes and result.suggestion == result.confirmation.lr
    # the callback's val_loader= is confirm's default data too, as with find_lr
    finder = LRFinderCallback(train_steps=50, confirm=True, val_loader=loader(32), progress=False)
    fit(Net(), [finder])
    assert finder.result.confirmation.probes and finder.result.plan.train_steps == 50

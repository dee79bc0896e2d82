"""The plan and confirm mode with PyTorch: the acceptance call, validation mode, batches drawn."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.cases import require

torch = require("torch")

from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from lrfinder import LRFinderResult, find_lr  # noqa: E402
from lrfinder.confirm import ConfirmSettings, plan_probes  # noqa: E402
from lrfinder.plan import lr_curve  # noqa: E402
from tests.cases_torch import classification_data, mlp, torch_state  # noqa: E402

F = torch.nn.functional
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


class CountingLoader:
    """A DataLoader seen from outside: counts every batch taken from it, over every pass."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader
        self.drawn = 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            self.drawn += 1
            yield batch


def problem(
    seed: int = 0, momentum: float = 0.9
) -> tuple[torch.nn.Module, CountingLoader, DataLoader, torch.optim.Optimizer]:
    torch.set_num_threads(1)
    x, y = classification_data(512, seed=1)
    vx, vy = classification_data(128, seed=2)
    model = mlp(seed)  # seeds torch's global generator, which the loader then shuffles from
    loader = CountingLoader(DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True))
    val_loader = DataLoader(TensorDataset(vx, vy), batch_size=64)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=momentum)
    return model, loader, val_loader, optimizer


def train(
    model: torch.nn.Module,
    loader: CountingLoader,
    optimizer: torch.optim.Optimizer,
    lr: float,
    schedule: str,
    steps: int,
) -> float:
    """The acceptance check's training run: ``steps`` steps under ``schedule`` peaking at ``lr``
    (one-cycle: torch's ``OneCycleLR`` with its defaults, momentum cycling included)."""
    lrs = lr_curve(schedule, lr, steps)
    onecycle = None
    if schedule == "onecycle":
        onecycle = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    batches = iter(())
    loss = math.nan
    for step in range(steps):
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(loader)
            x, y = next(batches)
        if onecycle is None:
            for group in optimizer.param_groups:
                group["lr"] = float(lrs[step])
        else:  # the plan's LR curve is OneCycleLR's, step for step
            assert optimizer.param_groups[0]["lr"] == pytest.approx(lrs[step], rel=1e-12)
        optimizer.zero_grad()
        output = F.cross_entropy(model(x), y)
        output.backward()
        optimizer.step()
        if onecycle is not None and step < steps - 1:
            onecycle.step()
        loss = float(output.detach())
    return loss


@pytest.mark.parametrize("schedule", ["constant", "onecycle", "cosine"])
def test_the_acceptance_call_with_and_without_confirm(schedule):
    n = 120
    model, loader, val_loader, opt = problem()
    before = torch_state(model, opt)
    call = {
        "optimizer": opt,
        "criterion": F.cross_entropy,
        "schedule": schedule,
        "train_steps": n,
        "progress": False,
    }
    result = find_lr(model, loader, **call)
    assert result.plan.schedule == schedule and loader.drawn == result.num_steps <= 100
    # confirm=True shortens the default range test of 100 steps to 0.3 of its budget of 2 * n:
    # its suggestion is the plain one of a range test that long
    range_steps = plan_probes(2 * n, 100, train_steps=n).range_steps
    assert range_steps == 72
    loader.drawn = 0
    shortened = find_lr(model, loader, **call, num_iter=range_steps)
    assert loader.drawn == shortened.num_steps <= range_steps
    plain_lr = float(shortened.suggestion)

    loader.drawn = 0
    result = find_lr(model, loader, **call, confirm=True, confirm_data=val_loader)
    assert result.settings["num_iter"] == range_steps == result.confirmation.plan.range_steps
    assert loader.drawn <= 2 * n
    assert loader.drawn == result.num_steps + sum(len(p.losses) for p in result.confirmation.probes)
    confirmed = float(result.suggestion)
    assert confirmed == result.confirmation.lr
    assert result.range_suggestion == pytest.approx(plain_lr, rel=1e-12)
    after = torch_state(model, opt)
    for key in before:
        assert before[key].tobytes() == after[key].tobytes(), key

    loader.drawn = 0
    final = train(model, loader, opt, confirmed, schedule, n)
    assert loader.drawn == n and math.isfinite(final)


def test_with_val_loader_the_range_test_validates_but_the_probes_train_and_score_on_it():
    model, loader, val_loader, opt = problem()
    knobs = ConfirmSettings(up=1, down=1)
    kwargs = {
        "optimizer": opt,
        "criterion": F.cross_entropy,
        "train_steps": 60,
        "confirm": True,
        "confirm_settings": knobs,
        "progress": False,
    }
    with_val = find_lr(model, loader, val_loader=val_loader, **kwargs)
    assert with_val.info["loss"] == "validation"
    explicit = find_lr(model, loader, val_loader=val_loader, confirm_data=val_loader, **kwargs)
    assert with_val.confirmation == explicit.confirmation  # confirm_data defaults to val_loader
    # the probes' losses are training-batch losses: the first one is the loss of the first training
    # batch before any update, whatever the LR
    first = {p.losses[0] for p in with_val.confirmation.probes}
    assert len(first) == 1
    twin, twin_loader, _, _ = problem()
    x, y = next(iter(twin_loader))
    twin.train()
    with torch.no_grad():
        assert first.pop() == pytest.approx(float(F.cross_entropy(twin(x), y)), rel=1e-6)


def test_the_score_is_the_mean_validation_loss_after_the_probe():
    model, loader, val_loader, opt = problem()
    knobs = ConfirmSettings(up=1, down=0, spacing=0.5)
    result = find_lr(
        model,
        loader,
        optimizer=opt,
        criterion=F.cross_entropy,
        train_steps=50,
        confirm=True,
        confirm_data=val_loader,
        confirm_settings=knobs,
        progress=False,
    )
    probe = result.confirmation.probes[0]
    # replay the probe by hand from the same starting state and batches
    twin, twin_loader, twin_val, twin_opt = problem()
    train(twin, twin_loader, twin_opt, probe.lr, "constant", probe.steps)
    twin.eval()
    with torch.no_grad():
        expected = np.mean([float(F.cross_entropy(twin(x), y)) for x, y in twin_val])
    assert probe.score == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_one_cycle_probes_cycle_the_momentum_as_one_cycle_lr_does(momentum):
    model, loader, val_loader, opt = problem(momentum=momentum)
    before = torch_state(model, opt)
    kwargs = {"optimizer": opt, "criterion": F.cross_entropy, "schedule": "onecycle", "train_steps": 50}
    knobs = ConfirmSettings(up=1, down=0, spacing=0.5, extra=0)
    result = find_lr(
        model, loader, **kwargs, confirm=True, confirm_data=val_loader, confirm_settings=knobs, progress=False
    )
    assert result.info["onecycle_momentum"] == ("switched on" if momentum == 0.0 else "cycled")
    after = torch_state(model, opt)
    assert all(before[k].tobytes() == after[k].tobytes() for k in before)
    assert opt.param_groups[0]["momentum"] == momentum and "max_momentum" not in opt.param_groups[0]
    # each probe is OneCycleLR's run over the probe's length, momentum included: replay it by hand
    for probe in result.confirmation.probes:
        twin, twin_loader, twin_val, twin_opt = problem(momentum=momentum)
        train(twin, twin_loader, twin_opt, probe.lr, "onecycle", probe.steps)
        twin.eval()
        with torch.no_grad():
            expected = np.mean([float(F.cross_entropy(twin(x), y)) for x, y in twin_val])
        assert probe.score == pytest.approx(expected, rel=1e-5)
    # without the momentum cycling the probes train otherwise (the LR alone moves)
    model, loader, val_loader, opt = problem(momentum=momentum)
    lr_only = find_lr(
        model,
        loader,
        **{**kwargs, "optimizer": opt},
        confirm=True,
        confirm_data=val_loader,
        confirm_settings=ConfirmSettings(up=1, down=0, spacing=0.5, extra=0, cycle_momentum=False),
        progress=False,
    )
    assert [p.lr for p in lr_only.confirmation.probes] == [p.lr for p in result.confirmation.probes]
    assert lr_only.confirmation.probes[0].losses[1:] != result.confirmation.probes[0].losses[1:]


def test_a_one_cycle_plan_that_switches_the_momentum_on_suggests_a_lower_peak():
    from lrfinder import suggest

    model, loader, _, opt = problem(momentum=0.0)
    result = find_lr(
        model,
        loader,
        optimizer=opt,
        criterion=F.cross_entropy,
        progress=False,
        schedule="onecycle",
        train_steps=200,
    )
    plain = suggest.for_plan(result.lrs, result.smoothed, result.losses, result.plan)
    assert result.info["onecycle_momentum"] == "switched on"
    assert result.suggestion == pytest.approx(plain.lr * 0.15, rel=1e-12)
    # the constant and cosine plans keep the momentum at 0: no change there
    for schedule in ("constant", "cosine"):
        result.plan = dataclasses.replace(result.plan, schedule=schedule)
        del result.__dict__["best"]  # a cached property
        again = suggest.for_plan(result.lrs, result.smoothed, result.losses, result.plan)
        assert result.suggestion == again.lr


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda p: torch.optim.SGD(p, lr=0.1), "switched on"),
        (lambda p: torch.optim.RMSprop(p, lr=0.01), "switched on"),
        (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True), "cycled"),
        (lambda p: torch.optim.Adam(p, lr=0.01), "cycled"),
        (lambda p: torch.optim.Adagrad(p, lr=0.01), "none"),
    ],
)
def test_the_trainer_records_what_a_one_cycle_plan_does_to_the_momentum(make, kind):
    model, loader, _, _ = problem()
    result = find_lr(
        model,
        loader,
        optimizer=make(model.parameters()),
        criterion=F.cross_entropy,
        num_iter=10,
        progress=False,
    )
    assert result.info["onecycle_momentum"] == kind
    assert LRFinderResult.from_json(result.to_json()).info["onecycle_momentum"] == kind


def test_the_probes_know_where_the_range_test_blew_up(monkeypatch):
    from lrfinder import confirm as confirming

    seen = {}
    real = confirming.run_plan

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(confirming, "run_plan", spy)
    model, loader, val_loader, opt = problem()
    call = {"optimizer": opt, "criterion": F.cross_entropy, "train_steps": 60, "progress": False}
    result = find_lr(model, loader, **call, confirm=True, confirm_data=val_loader)
    assert seen["ceiling"] == float(result.lrs[-1]) and seen["start_score"] is not None
    assert result.confirmation.start_score == seen["start_score"]
    assert result.confirmation.train_steps == 60


def test_confirm_needs_held_out_data_and_says_so_before_training():
    model, loader, _, opt = problem()
    with pytest.raises(TypeError, match="pass confirm_data="):
        find_lr(model, loader, optimizer=opt, train_steps=100, confirm=True, progress=False)
    assert loader.drawn == 0


def test_confirm_data_without_a_length_is_a_clear_error():
    model, loader, val_loader, opt = problem()
    one_shot = (batch for batch in val_loader)  # iter(val_loader) runs here, drawing a seed
    before = torch_state(model, opt)
    with pytest.raises(TypeError, match=r"confirm_data.*length"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        find_lr(
            model, loader, optimizer=opt, train_steps=100, confirm=True, confirm_data=one_shot, progress=False
        )
    after = torch_state(model, opt)
    assert all(before[k].tobytes() == after[k].tobytes() for k in before)


def test_with_accumulation_the_budget_counts_optimizer_steps():
    model, loader, val_loader, opt = problem()
    result = find_lr(
        model,
        loader,
        optimizer=opt,
        train_steps=60,
        confirm=True,
        confirm_data=val_loader,
        accumulation_steps=2,
        progress=False,
    )
    steps = result.num_steps + sum(len(p.losses) for p in result.confirmation.probes)
    assert steps <= 120 and loader.drawn == 2 * steps


def test_probes_at_the_same_lr_train_alike_even_with_the_optimizer_lrfinder_builds():
    model, loader, val_loader, _ = problem()  # no optimizer given: lrfinder builds AdamW
    twins = ConfirmSettings(up=1, down=0, spacing=1e-12, extra=0)  # two probes, no adaptive ones
    result = find_lr(
        model,
        loader,
        train_steps=60,
        confirm=True,
        confirm_data=val_loader,
        confirm_settings=twins,
        progress=False,
    )
    first, second = result.confirmation.probes
    assert first.losses == pytest.approx(second.losses, rel=1e-6)
    assert first.score == pytest.approx(second.score, rel=1e-6)


class CountingBatchSampler:
    """Batches of indices for a DataLoader, counting each one its workers fetch (read ahead too)."""

    def __init__(self, size: int, batch_size: int) -> None:
        self.sampler = torch.utils.data.BatchSampler(range(size), batch_size, drop_last=False)
        self.drawn = 0

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[list[int]]:
        for indices in self.sampler:
            self.drawn += 1
            yield indices


def test_batches_that_loader_workers_read_ahead_count_against_the_budget():
    model, _, val_loader, opt = problem()
    x, y = classification_data(512, seed=1)
    sampler = CountingBatchSampler(len(x), 32)
    loader = DataLoader(TensorDataset(x, y), batch_sampler=sampler, num_workers=2, prefetch_factor=2)
    n = 100
    result = find_lr(
        model,
        loader,
        optimizer=opt,
        criterion=F.cross_entropy,
        schedule="onecycle",
        train_steps=n,
        confirm=True,
        confirm_data=val_loader,
        progress=False,
    )
    assert result.confirmation.probes and sampler.drawn <= 2 * n


def test_the_default_search_follows_a_best_lr_far_below_the_candidates():
    # Held-out labels that disagree with the training labels: every step of training makes the
    # held-out loss worse, so the best LR lies far below any the range test suggests, and the
    # adaptive probes (ConfirmSettings.extra) must go below the lowest of the first candidates.
    model, loader, _, opt = problem()
    vx, vy = classification_data(128, seed=2)
    contrary = DataLoader(TensorDataset(vx, (vy + 1) % int(vy.max() + 1)), batch_size=64)
    n = 120
    result = find_lr(
        model,
        loader,
        optimizer=opt,
        criterion=F.cross_entropy,
        train_steps=n,
        confirm=True,
        confirm_data=contrary,
        progress=False,
    )
    confirmation = result.confirmation
    assert confirmation.settings == ConfirmSettings().to_dict()
    lrs = [p.lr for p in confirmation.probes]
    center = confirmation.center
    assert len(lrs) == 5 and lrs[:3] == pytest.approx([center * 10**-0.5, center, center * 10**0.5])
    # the best is on the lower edge each time: the next probe goes half a decade below it
    assert lrs[3:] == pytest.approx([center * 10**-1.0, center * 10**-1.5])
    assert max(lrs[3:]) < min(lrs[:3])
    best = confirmation.best
    assert best is not None and best.lr == min(lrs)
    steps = confirmation.plan.rounds[0].steps
    assert confirmation.lr == pytest.approx(best.lr * (steps / n) ** ConfirmSettings().horizon)
    assert result.suggestion == confirmation.lr
    # the range test and the five probes together stay within twice the run
    assert loader.drawn == result.num_steps + confirmation.probe_steps <= 2 * n

"""The PyTorch case of the contract suite, and the small models the torch tests share."""

from __future__ import annotations

import copy

import numpy as np

from tests.cases import Boom, Setup, require

torch = require("torch")  # pytest's doctest collection imports this module too

from torch.utils.data import DataLoader, Dataset, TensorDataset  # noqa: E402

FEATURES, CLASSES, BATCH = 6, 3, 8


class CountingDataset(Dataset):
    """Samples ``(x[i], y[i])``; raises ``fail_with`` when the ``fail_at``-th batch is drawn
    (or, when ``fail_with`` is a float such as NaN, multiplies that batch's first sample by it).

    ``draws`` counts the samples drawn over every pass, so a failure can fall in any pass.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int = BATCH,
        fail_at: int | None = None,
        fail_with: type[BaseException] | float = Boom,
    ) -> None:
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.fail_at, self.fail_with = fail_at, fail_with
        self.draws = 0

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.fail_at is not None and self.draws == self.fail_at * self.batch_size:
            if isinstance(self.fail_with, float):  # a poisoned sample: NaN or Inf in the batch
                self.draws += 1
                return self.x[index] * self.fail_with, self.y[index]
            raise self.fail_with(f"batch {self.fail_at} failed on purpose")
        self.draws += 1
        return self.x[index], self.y[index]


def mlp(seed: int = 0, dropout: float = 0.0) -> torch.nn.Module:
    """A small MLP with BatchNorm (buffers to restore) and optional dropout (RNG to restore)."""
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = [torch.nn.Linear(FEATURES, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU()]
    if dropout:
        layers.append(torch.nn.Dropout(dropout))
    layers.append(torch.nn.Linear(16, CLASSES))
    return torch.nn.Sequential(*layers)


def classification_data(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, FEATURES, generator=generator)
    y = (x[:, :CLASSES] + 0.3 * torch.randn(n, CLASSES, generator=generator)).argmax(dim=1)
    return x, y


def warm_up(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> None:
    """One optimizer step, then one more backward: optimizer state and gradients both exist."""
    for do_step in (True, False):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        if do_step:
            optimizer.step()


def torch_state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    generators: tuple[torch.Generator, ...] = (),
) -> dict[str, np.ndarray]:
    """Every piece of state a sweep touches, read with torch's own API, as NumPy copies."""
    state: dict[str, np.ndarray] = {}
    for name, param in model.named_parameters():
        state[f"param:{name}"] = param.detach().numpy().copy()
        state[f"grad:{name}"] = np.array(None) if param.grad is None else param.grad.detach().numpy().copy()
        state[f"requires_grad:{name}"] = np.array(param.requires_grad)
    for name, buffer in model.named_buffers():
        state[f"buffer:{name}"] = buffer.detach().numpy().copy()
    for name, module in model.named_modules():
        state[f"training:{name}"] = np.array(module.training)
    if optimizer is not None:
        saved = optimizer.state_dict()
        for index, per_param in saved["state"].items():
            for key, value in per_param.items():
                state[f"opt:{index}:{key}"] = (
                    value.detach().numpy().copy() if isinstance(value, torch.Tensor) else np.array(value)
                )
        for index, group in enumerate(saved["param_groups"]):
            for key, value in group.items():
                state[f"group:{index}:{key}"] = np.array(str(value))
    state["rng:torch"] = torch.get_rng_state().numpy().copy()
    for index, generator in enumerate(generators):
        state[f"rng:generator{index}"] = generator.get_state().numpy().copy()
    return state


def case(
    n_batches: int = 8, fail_at: int | None = None, fail_with: type[BaseException] | float = Boom
) -> Setup:
    """An MLP with BatchNorm, SGD with momentum (warmed up), class labels (cross-entropy inferred)."""
    torch.set_num_threads(1)
    x, y = classification_data(n_batches * BATCH)
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    warm_up(model, optimizer, x[:BATCH], y[:BATCH])
    loader = DataLoader(CountingDataset(x, y, fail_at=fail_at, fail_with=fail_with), batch_size=BATCH)

    xv, yv = classification_data(2 * BATCH, seed=5)
    val_batches = [(xv[i : i + BATCH], yv[i : i + BATCH]) for i in range(0, len(xv), BATCH)]

    def first_loss() -> float:
        twin = copy.deepcopy(model).train()  # train mode as in the sweep, on a copy: no side effect
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(twin(x[:BATCH]), y[:BATCH]))

    def val_loss(count: int | None) -> float:
        twin = copy.deepcopy(model).eval()
        with torch.no_grad():
            losses = [
                float(torch.nn.functional.cross_entropy(twin(xb), yb)) for xb, yb in val_batches[:count]
            ]
        return sum(losses) / len(losses)

    class NoBatches:  # no length: found out at the first step
        def __iter__(self):
            return iter(())

    return Setup(
        model=model,
        data=loader,
        state=lambda: torch_state(model, optimizer),
        first_loss=first_loss,
        drawn=lambda: loader.dataset.draws // BATCH,
        kwargs={"optimizer": optimizer},
        backend="lrfinder.trainers.torch_trainer",
        val_data=val_batches,
        val_loss=val_loss,
        one_shot=lambda: iter([(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, len(x), BATCH)]),
        empty=lambda: DataLoader(
            TensorDataset(torch.zeros(0, FEATURES), torch.zeros(0, dtype=torch.long)), batch_size=BATCH
        ),
        no_batches=NoBatches,
    )

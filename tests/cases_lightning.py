"""The Lightning case of the contract suite: the torch case's MLP and data, as a LightningModule."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from tests.cases import Boom, Setup, require

torch = require("torch")
pl = require("lightning.pytorch")

from tests import cases_torch  # noqa: E402

F = torch.nn.functional


class Classifier(pl.LightningModule):
    """The torch case's MLP; its loss only in training_step, its optimizer and schedule its own."""

    def __init__(self) -> None:
        super().__init__()
        self.net = cases_torch.mlp()
        self.optimizer = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
        self.schedule = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=1, gamma=0.5)

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        x, y = batch
        return {"loss": F.cross_entropy(self.net(x), y)}

    def validation_step(self, batch: Any, batch_idx: int) -> Any:
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> Any:
        return [self.optimizer], [self.schedule]


def case(n_batches: int = 8, fail_at: int | None = None, fail_with: type[BaseException] = Boom) -> Setup:
    """The torch case's setup swept through training_step, with a StepLR that was stepped once."""
    setup = cases_torch.case(n_batches, fail_at, fail_with)
    module = Classifier()
    x, y = setup.data.dataset.x, setup.data.dataset.y
    cases_torch.warm_up(module.net, module.optimizer, x[: cases_torch.BATCH], y[: cases_torch.BATCH])
    module.schedule.step()

    def state() -> dict[str, np.ndarray]:
        out = cases_torch.torch_state(module, module.optimizer)
        out["schedule"] = np.array(repr(module.schedule.state_dict()))
        return out

    def first_loss() -> float:
        twin = copy.deepcopy(module.net).train()
        with torch.no_grad():
            return float(F.cross_entropy(twin(x[: cases_torch.BATCH]), y[: cases_torch.BATCH]))

    def val_loss(count: int | None) -> float:
        twin = copy.deepcopy(module.net).eval()
        with torch.no_grad():
            losses = [float(F.cross_entropy(twin(xb), yb)) for xb, yb in setup.val_data[:count]]
        return sum(losses) / len(losses)

    setup.model, setup.kwargs, setup.state = module, {}, state
    setup.first_loss, setup.val_loss = first_loss, val_loss
    setup.backend = "lrfinder.trainers.lightning_trainer"
    return setup

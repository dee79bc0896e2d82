"""The Hugging Face case of the contract suite: the torch case's MLP trained by a transformers.Trainer.

The Trainer brings its own data (``find_lr(trainer)`` takes none), so this case runs the general
contracts (restore, first loss, divergence, cycling) but not the data and validation ones.
"""

from __future__ import annotations

import copy
import tempfile
from typing import Any

from tests.cases import Boom, Setup, require

torch = require("torch")
transformers = require("transformers")

from tests import cases_torch  # noqa: E402

F = torch.nn.functional
#: The Trainer creates its output folder (nothing is written in it): one for all cases, deleted at exit.
_OUTPUT = tempfile.TemporaryDirectory(prefix="lrfinder-test-hf-")


class Rows(cases_torch.CountingDataset):
    """The torch case's samples as the dict rows a Trainer's collator expects."""

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        x, y = super().__getitem__(index)
        return {"x": x, "labels": y}


class WithLoss(torch.nn.Module):
    """The MLP, returning its cross-entropy as Hugging Face models do."""

    def __init__(self) -> None:
        super().__init__()
        self.net = cases_torch.mlp()

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": F.cross_entropy(self.net(x), labels)}


def case(n_batches: int = 8, fail_at: int | None = None, fail_with: type[BaseException] = Boom) -> Setup:
    """SGD with momentum (warmed up) given to the Trainer; batches in order, no clipping."""
    torch.set_num_threads(1)
    x, y = cases_torch.classification_data(n_batches * cases_torch.BATCH)
    model = WithLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    cases_torch.warm_up(model.net, optimizer, x[: cases_torch.BATCH], y[: cases_torch.BATCH])
    rows = Rows(x, y, fail_at=fail_at, fail_with=fail_with)
    xv, yv = cases_torch.classification_data(2 * cases_torch.BATCH, seed=5)
    args = transformers.TrainingArguments(
        output_dir=_OUTPUT.name,
        per_device_train_batch_size=cases_torch.BATCH,
        report_to="none",
        use_cpu=True,
        train_sampling_strategy="sequential",
        max_grad_norm=0.0,
        dataloader_num_workers=0,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=rows, optimizers=(optimizer, None))

    def first_loss() -> float:
        twin = copy.deepcopy(model.net).train()
        with torch.no_grad():
            return float(F.cross_entropy(twin(x[: cases_torch.BATCH]), y[: cases_torch.BATCH]))

    return Setup(
        model=trainer,
        data=None,
        state=lambda: cases_torch.torch_state(model, optimizer),
        first_loss=first_loss,
        drawn=lambda: rows.draws // cases_torch.BATCH,
        lookahead=1,  # the Trainer's loader is accelerate's DataLoaderShard, which reads one batch ahead
        backend="lrfinder.trainers.hf_trainer",
        # collated held-out batches, as a confirm probe's score reads them
        val_data=[
            {"x": xv[i : i + cases_torch.BATCH], "labels": yv[i : i + cases_torch.BATCH]}
            for i in range(0, len(xv), cases_torch.BATCH)
        ],
    )

"""Lightning: find a learning rate for a LightningModule, then fit with the suggestion.

    lrfinder find examples/lightning_digits.py     # range test only: summary and lr_finder.png
    python examples/lightning_digits.py            # range test in fit (the callback), then training

The module has no ``forward``: the range test runs its ``training_step`` (label-smoothed
cross-entropy) with the SGD optimizer and one-cycle schedule of its ``configure_optimizers``,
exactly what ``Trainer.fit`` trains. ``lrfinder.find_lr(module, loader)`` needs no Trainer; in a fit,
``LRFinderCallback`` runs the test at ``on_fit_start``, restores everything and sets the LR
(``module.hparams.lr``, the optimizer, the schedule's peak). Data: scikit-learn's digits.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrfinder.lightning import LRFinderCallback

SEED = 0
BATCH_SIZE = 64


def load_data() -> tuple[TensorDataset, TensorDataset]:
    """Train and validation sets: pixels scaled to [0, 1], a fixed stratified 75/25 split."""
    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        (x / 16.0).astype(np.float32), y.astype(np.int64), test_size=0.25, random_state=SEED, stratify=y
    )
    return (
        TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train)),
        TensorDataset(torch.from_numpy(x_val), torch.from_numpy(y_val)),
    )


class DigitsClassifier(LightningModule):
    """An MLP whose loss lives in training_step; the LR in hparams, as Lightning's tuner expects."""

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y, label_smoothing=0.1)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)
        try:
            steps = self.trainer.estimated_stepping_batches
        except RuntimeError:  # a bare module (find_lr without a Trainer): no schedule to size
            return {"optimizer": optimizer}
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=self.hparams.lr, total_steps=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def train_loader(train: TensorDataset) -> DataLoader:
    return DataLoader(
        train, batch_size=BATCH_SIZE, shuffle=True, generator=torch.Generator().manual_seed(SEED)
    )


def lrfinder_setup() -> dict:
    """What ``lrfinder find`` sweeps: the LightningModule and its training loader."""
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    train, _ = load_data()
    return {"model": DigitsClassifier(), "train_loader": train_loader(train)}


def accuracy(module: DigitsClassifier, data: TensorDataset) -> float:
    module.eval()
    with torch.no_grad():
        x, y = data.tensors
        return float((module.net(x).argmax(dim=1) == y).float().mean())


def main(plot: str = "lr_finder_lightning_digits.png", epochs: int = 8) -> float:
    setup = lrfinder_setup()
    module, loader = setup["model"], setup["train_loader"]
    finder = LRFinderCallback(start_lr=1e-5, end_lr=10.0)
    trainer = Trainer(
        max_epochs=epochs,
        callbacks=[finder],
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="lightning")
        trainer.fit(module, loader)
    result = finder.result
    assert result is not None
    result.save_plot(plot)
    if result.suggestion is None:
        sys.exit(f"no suggestion: {result.suggestion_reason}")
    lr = result.suggestion
    print(f"suggested lr: {lr:.3g} ({result.rule}); useful range: {result.lr_range}; plot: {plot}")
    _, val = load_data()
    score = accuracy(module, val)
    print(f"validation accuracy after {epochs} epochs at lr={lr:.3g}: {score:.3f}")
    return score


if __name__ == "__main__":
    main(*sys.argv[1:2])

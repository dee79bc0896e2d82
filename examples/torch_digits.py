"""PyTorch: find a learning rate for a small MLP on scikit-learn's handwritten digits.

    lrfinder find examples/torch_digits.py      # range test only: summary and lr_finder.png
    python examples/torch_digits.py             # range test, then trains at the suggestion

``lrfinder find`` imports this file and calls ``lrfinder_setup()``, which builds the model, data,
optimizer and loss without training anything; the ``__main__`` block below does the training.
The digits (1,797 8x8 images) ship with scikit-learn: nothing is downloaded.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lrfinder

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


def lrfinder_setup() -> dict:
    """What ``lrfinder find`` sweeps: model, training loader, optimizer and loss function, and the
    validation batches that ``--confirm`` scores its probes on."""
    torch.set_num_threads(1)  # a tiny model: more threads cost more than they bring
    torch.manual_seed(SEED)
    train, val = load_data()
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    return {
        "model": model,
        "train_loader": DataLoader(
            train, batch_size=BATCH_SIZE, shuffle=True, generator=torch.Generator().manual_seed(SEED)
        ),
        # The range test sets the learning rate itself; the value given here is restored after.
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
        "criterion": nn.CrossEntropyLoss(),
        # held-out batches for --confirm to score its probes on (the range test never reads them)
        "confirm_data": DataLoader(val, batch_size=256),
    }


def accuracy(model: nn.Module, data: TensorDataset) -> float:
    model.eval()
    with torch.no_grad():
        x, y = data.tensors
        return float((model(x).argmax(dim=1) == y).float().mean())


def main(plot: str = "lr_finder_torch_digits.png", epochs: int = 8) -> float:
    setup = lrfinder_setup()
    model, loader, optimizer, criterion = (
        setup[k] for k in ("model", "train_loader", "optimizer", "criterion")
    )
    result = lrfinder.find_lr(model, loader, optimizer, criterion, start_lr=1e-5, end_lr=10.0)
    result.save_plot(plot)
    lr = result.suggestion
    if lr is None:
        sys.exit(f"no suggestion: {result.suggestion_reason}")
    print(f"suggested lr: {lr:.3g} ({result.rule}); useful range: {result.lr_range}; plot: {plot}")
    for diagnostic in result.diagnostics:
        print(f"warning: {diagnostic.message}")

    # The model and optimizer are as they were before the range test: train at the suggestion.
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            criterion(model(x), y).backward()
            optimizer.step()
    _, val = load_data()
    score = accuracy(model, val)
    print(f"validation accuracy after {epochs} epochs at lr={lr:.3g}: {score:.3f}")
    return score


if __name__ == "__main__":
    main(*sys.argv[1:2])

"""Plain PyTorch models fed Hugging Face style: a "label" column, tuple outputs with the loss first."""

from __future__ import annotations

from typing import Any

import pytest

from tests.cases import require

torch = require("torch")

from lrfinder import find_lr  # noqa: E402
from lrfinder.trainers._torch_batches import own_loss, split_batch  # noqa: E402

QUICK = {"start_lr": 1e-4, "end_lr": 1.0, "num_iter": 8, "progress": False}
pytestmark = pytest.mark.filterwarnings("ignore:lrfinder. :RuntimeWarning")
F = torch.nn.functional


class TupleModel(torch.nn.Module):
    """Returns ``(loss, logits)`` when given labels and ``(logits,)`` without, as return_dict=False does."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[Any, ...]:
        logits = self.linear(x)
        if labels is None:
            return (logits,)
        return F.cross_entropy(logits, labels, label_smoothing=0.3), logits


def rows(n: int = 4, key: str = "label") -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [
        {"x": torch.randn(8, 4, generator=g), key: torch.randint(0, 3, (8,), generator=g)} for _ in range(n)
    ]


def test_a_label_column_is_read_as_labels():
    batch = rows(1)[0]
    assert split_batch(batch, None, has_criterion=False)[1] is batch["label"]
    inputs, targets = split_batch(batch, None, has_criterion=True)
    assert set(inputs) == {"x"} and targets is batch["label"]
    both = {**batch, "labels": batch["label"] + 1}  # "labels" wins when both are there
    assert split_batch(both, None, has_criterion=True)[0].keys() == {"x", "label"}


def test_a_tuple_with_the_loss_first_is_the_models_own_loss():
    model = TupleModel()
    data = rows()
    result = find_lr(model, data, **QUICK)
    assert "own loss" in result.info["criterion"]
    expected = F.cross_entropy(model.linear(data[0]["x"]), data[0]["label"], label_smoothing=0.3)
    assert result.losses[0] == pytest.approx(expected.item(), rel=1e-6)


def test_a_tuple_of_predictions_is_no_loss():
    logits = torch.zeros(1, 3)
    assert own_loss((logits,)) is None and own_loss((torch.tensor([2.0]), logits)) is None
    assert own_loss((torch.tensor(2.0), logits)) is not None
    assert own_loss((torch.tensor(2),)) is None  # an integer is no loss

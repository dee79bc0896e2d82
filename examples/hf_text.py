"""Hugging Face: find the learning rate of a ``transformers.Trainer``, then train with it.

    lrfinder find examples/hf_text.py      # range test only: summary and lr_finder.png
    python examples/hf_text.py             # range test, set_lr=True, then trainer.train()

``find_lr(trainer)`` sweeps what ``trainer.train()`` would train: the Trainer's model, training
DataLoader and collator, the optimizer ``create_optimizer()`` builds (AdamW, weight decay groups),
``compute_loss``, and the ``TrainingArguments``' accumulation, precision and gradient clipping.
``set_lr=True`` writes the suggestion to ``trainer.args.learning_rate``. The model is a tiny BERT
built from a config (random weights, nothing downloaded); the task is made up: are most tokens of
a sequence from the lower or the upper half of the vocabulary? Rows carry their target as
``"label"``, as the ``datasets`` library names it.
"""

from __future__ import annotations

import sys
import tempfile

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

import lrfinder

SEED = 0
VOCAB, LENGTH = 64, 16


def make_rows(n: int, seed: int) -> list[dict]:
    """Sequences of tokens from one half of the vocabulary (the label), a quarter of them noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    ids = torch.randint(0, VOCAB // 2, (n, LENGTH), generator=g) + labels[:, None] * (VOCAB // 2)
    noise = torch.rand(n, LENGTH, generator=g) < 0.25
    ids = torch.where(noise, torch.randint(0, VOCAB, (n, LENGTH), generator=g), ids)
    return [
        {"input_ids": row, "attention_mask": torch.ones(LENGTH, dtype=torch.long), "label": int(label)}
        for row, label in zip(ids, labels, strict=True)
    ]


def lrfinder_setup(epochs: int = 3) -> dict:
    """What ``lrfinder find`` sweeps: a Trainer (it brings its own data, optimizer and loss).

    The Trainer creates its output folder: a temporary one, deleted with the ``workdir`` object.
    """
    workdir = tempfile.TemporaryDirectory(prefix="lrfinder-hf-text-")
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=LENGTH,
        num_labels=2,
    )
    args = TrainingArguments(
        output_dir=workdir.name,
        per_device_train_batch_size=32,
        num_train_epochs=epochs,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        seed=SEED,
    )
    trainer = Trainer(
        model=BertForSequenceClassification(config), args=args, train_dataset=make_rows(2048, SEED)
    )
    return {"model": trainer, "workdir": workdir}


def accuracy(trainer: Trainer, rows: list[dict]) -> float:
    model = trainer.model.eval()
    with torch.no_grad():
        ids = torch.stack([row["input_ids"] for row in rows])
        labels = torch.tensor([row["label"] for row in rows])
        return float((model(input_ids=ids).logits.argmax(dim=1) == labels).float().mean())


def main(plot: str = "lr_finder_hf_text.png", epochs: int = 3) -> float:
    setup = lrfinder_setup(epochs)
    trainer = setup["model"]
    result = lrfinder.find_lr(trainer, start_lr=1e-6, end_lr=1.0, set_lr=True)
    result.save_plot(plot)
    if result.suggestion is None:
        sys.exit(f"no suggestion: {result.suggestion_reason}")
    lr = trainer.args.learning_rate
    print(f"suggested lr: {lr:.3g} ({result.rule}); useful range: {result.lr_range}; plot: {plot}")
    trainer.train()  # with the Trainer's own optimizer and schedule (linear decay), peaking at lr
    score = accuracy(trainer, make_rows(512, SEED + 1))
    setup["workdir"].cleanup()
    print(f"validation accuracy after {epochs} epochs at lr={lr:.3g}: {score:.3f}")
    return score


if __name__ == "__main__":
    main(*sys.argv[1:2])

"""The Hugging Face trainer: a range test on a ``transformers.Trainer``, set up as it would train.

The model, the training DataLoader (``get_train_dataloader()``), the optimizer
(``create_optimizer()``, unless the Trainer already holds one), the loss (``compute_loss``: label
smoothing, ``compute_loss_func`` and subclass overrides included), gradient accumulation, bf16/fp16
and gradient clipping all come from the Trainer and its ``TrainingArguments``; the PyTorch trainer
does the rest (the sweep's steps and the bit-exact snapshot).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from lrfinder.trainers._torch_batches import scalar
from lrfinder.trainers.base import check_options
from lrfinder.trainers.hf_trainer import OPTIONS
from lrfinder.trainers.torch_trainer import TorchTrainer

__all__ = ["HFTrainer", "make", "settings_of"]

_NOT_HERE = {
    "criterion": "the Trainer's compute_loss computes the loss (override it, or give the Trainer "
    "compute_loss_func=)",
    "batch_fn": "the Trainer's data collator shapes the batches",
    "batch_size": "TrainingArguments.per_device_train_batch_size sets it",
    "device": "TrainingArguments (use_cpu=...) and the Trainer place the model",
    "snapshot": "it is for step functions; the model's state is saved automatically",
    "restore": "it is for step functions; the model's state is restored automatically",
}


def make(trainer: Any, data: Any, **options: Any) -> HFTrainer:
    """An :class:`HFTrainer` for ``trainer``; see :func:`lrfinder.find_lr`.

    Raises:
        TypeError: ``data`` was given, or an option does not apply.
        ValueError: The Trainer has no ``train_dataset``.
    """
    if data is not None:
        raise TypeError(
            "find_lr(trainer) on a Hugging Face Trainer takes no data: it reads the Trainer's "
            "get_train_dataloader(); give the Trainer train_dataset= (or sweep the bare model with "
            "find_lr(trainer.model, loader))"
        )
    check_options("a Hugging Face Trainer", options, OPTIONS, _NOT_HERE)
    return HFTrainer(trainer, **options)


def settings_of(args: Any) -> dict[str, Any]:
    """The sweep options a ``TrainingArguments`` implies: accumulation, precision, clipping."""
    steps = int(getattr(args, "gradient_accumulation_steps", 1) or 1)
    settings: dict[str, Any] = {"accumulation_steps": steps}
    if getattr(args, "bf16", False):
        settings["amp"] = "bf16"
    elif getattr(args, "fp16", False):
        settings["amp"] = "fp16"
    max_norm = getattr(args, "max_grad_norm", None)
    if max_norm is not None and max_norm > 0:  # the Trainer clips at 1.0 unless told otherwise
        settings["grad_clip"] = float(max_norm)
    return settings


class HFTrainer(TorchTrainer):
    """Sweeps the LR of a ``transformers.Trainer`` as its own training loop would train.

    An optimizer the Trainer did not hold yet is created for the sweep with ``create_optimizer()``
    and kept out of the Trainer (``trainer.optimizer`` stays None, so ``train()`` builds its own
    at the LR it is then given); one it held is restored bit for bit. Its LR scheduler is never stepped.
    ``find_lr(trainer, set_lr=True)`` calls :meth:`apply_lr` with the suggestion.

    Args:
        trainer: The ``transformers.Trainer``.
        **options: Override the TrainingArguments (``accumulation_steps``, ``amp``, ``grad_clip``)
            or add what :class:`TorchTrainer` takes (``val_loader``, ``val_batches``,
            ``snapshot_dir``, ``optimizer``).
    """

    backend = "transformers"
    lookahead = 1  # accelerate's DataLoaderShard reads one batch ahead to know when a pass ends

    def __init__(self, trainer: Any, **options: Any) -> None:
        self.hf = trainer
        settings = {**settings_of(trainer.args), **options}
        self._built_optimizer = False
        if settings.get("optimizer") is None:
            self._built_optimizer = trainer.optimizer is None
            settings["optimizer"] = trainer.create_optimizer()
            if self._built_optimizer:  # ours for the sweep; the Trainer goes on without one
                trainer.optimizer = None
        super().__init__(trainer.model, trainer.get_train_dataloader(), **settings)
        self.info["criterion"] = f"{type(trainer).__qualname__}.compute_loss"
        self.info["optimizer"] = type(self.optimizer).__qualname__ + (
            " (Trainer.create_optimizer())" if self._built_optimizer else " (the Trainer's)"
        )
        self.info.pop("optimizer_built", None)

    def apply_lr(self, lr: float) -> None:
        """Write ``lr`` to ``trainer.args.learning_rate`` (what ``train()`` builds its optimizer with)."""
        self.hf.args.learning_rate = float(lr)
        if self.hf.optimizer is not None:
            warnings.warn(
                "lrfinder: set trainer.args.learning_rate, but the Trainer holds an optimizer of its own, "
                "built with its own LR; set its LR yourself, or let the Trainer build one",
                RuntimeWarning,
                stacklevel=3,
            )

    def _batch_loss(self, batch: Any) -> torch.Tensor:
        inputs = self.hf._prepare_inputs(batch)  # to the device, as training_step does
        return scalar(self.hf.compute_loss(self.model, inputs))

"""Finding the trainer for a Hugging Face ``transformers.Trainer``.

Considered only when ``transformers`` is already imported. :func:`accepts` looks at the class
names alone, so that a user who imported ``transformers`` for its tokenizers and passes a step
function never pays for importing torch here; the trainer itself lives in
:mod:`lrfinder.trainers._hf_torch`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OPTIONS", "accepts", "make"]

#: Options make() takes; each one given explicitly wins over the TrainingArguments.
OPTIONS: frozenset[str] = frozenset(
    {
        "optimizer",
        "val_loader",
        "val_batches",
        "accumulation_steps",
        "amp",
        "grad_clip",
        "snapshot_dir",
    }
)


def accepts(model: Any) -> bool:
    """Whether ``model`` is a ``transformers.Trainer`` (a subclass included)."""
    return any(
        cls.__name__ == "Trainer" and cls.__module__.startswith("transformers.")
        for cls in type(model).__mro__
    )


def make(model: Any, data: Any, **options: Any) -> Any:
    """A :class:`~lrfinder.trainers._hf_torch.HFTrainer` for the Trainer ``model``.

    Raises:
        TypeError: ``data`` was given (the Trainer has its own), or an option does not apply.
    """
    from lrfinder.trainers._hf_torch import make as make_hf

    return make_hf(model, data, **options)

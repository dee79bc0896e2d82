"""Trainers feed the sweep engine; one small module per framework.

A framework's trainer is considered only when that framework is already imported (it is in
``sys.modules``): a user's torch model means torch is loaded, so asking costs nothing, and a
user without TensorFlow never pays for importing it.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

from lrfinder.trainers.base import Trainer, TrainerBackend, TrainerBase, check_options
from lrfinder.trainers.step_fn import StepFunctionTrainer

__all__ = ["StepFunctionTrainer", "Trainer", "TrainerBackend", "TrainerBase", "load_backend", "make_trainer"]

#: (framework module that must already be imported, lrfinder module that is its
#: :class:`~lrfinder.trainers.base.TrainerBackend`). Keras comes first: on Keras's torch backend a
#: keras.Model is also a torch.nn.Module; so are a LightningModule (swept through its training_step)
#: and a Hugging Face Trainer's model, whose rows come before torch's too.
BACKENDS: tuple[tuple[str, str], ...] = (
    ("keras", "lrfinder.trainers.keras_trainer"),
    ("lightning", "lrfinder.trainers.lightning_trainer"),
    ("pytorch_lightning", "lrfinder.trainers.lightning_trainer"),
    ("transformers", "lrfinder.trainers.hf_trainer"),
    ("torch", "lrfinder.trainers.torch_trainer"),
)

if TYPE_CHECKING:  # mypy checks that every backend module follows the protocol
    from lrfinder.trainers import hf_trainer, keras_trainer, lightning_trainer, torch_trainer

    _CHECKED: tuple[TrainerBackend, ...] = (keras_trainer, lightning_trainer, hf_trainer, torch_trainer)


def load_backend(module_name: str) -> TrainerBackend:
    """Import the backend module ``module_name``; TypeError if it does not follow the protocol."""
    module = importlib.import_module(module_name)
    if not isinstance(module, TrainerBackend):
        missing = [name for name in ("OPTIONS", "accepts", "make") if not hasattr(module, name)]
        raise TypeError(
            f"{module_name} is not a trainer backend: it lacks {', '.join(missing)} "
            "(see lrfinder.trainers.base.TrainerBackend)"
        )
    return module


def is_trainer(obj: Any) -> bool:
    """Whether ``obj`` already follows the Trainer protocol (and is not a framework model)."""
    return all(callable(getattr(obj, name, None)) for name in ("snapshot", "step", "fetch_losses", "restore"))


def make_trainer(model: Any, data: Any = None, **options: Any) -> Trainer:
    """A trainer for ``model``, chosen from its type.

    Raises:
        TypeError: ``model`` is of no supported kind, or ``options`` holds an option that the
            chosen trainer does not take.
    """
    if is_trainer(model):
        if data is not None or options:
            raise TypeError("a ready-made Trainer takes no data or options: give them to it instead")
        return model
    for framework, module_name in BACKENDS:
        if framework not in sys.modules:
            continue
        backend = load_backend(module_name)
        if backend.accepts(model):
            return backend.make(model, data, **options)
    if callable(model):
        if data is not None:
            raise TypeError(
                "a step function takes no data: call find_lr(step) with a step(lr) -> loss that "
                "draws its own batches"
            )
        check_options(
            "a step function",
            options,
            {"snapshot", "restore"},
            {name: "the step function does its own training" for name in options},
        )
        return StepFunctionTrainer(model, **options)
    raise TypeError(
        f"find_lr cannot train a {type(model).__module__}.{type(model).__qualname__}; it takes a "
        "torch.nn.Module, a LightningModule, a transformers.Trainer, a Keras 3 model, a step(lr) -> loss "
        "callable, or an lrfinder Trainer"
    )

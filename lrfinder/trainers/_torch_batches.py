"""What the PyTorch trainer reads from a batch, and where its loss comes from.

A batch is split into the model's inputs and the targets; the loss is the model's own (Hugging
Face style), the user's criterion, or one inferred once from the first batch's targets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

#: Key of the targets in a dict batch, as Hugging Face models and collators name it.
LABELS = "labels"
#: The ``datasets`` library's name for the same column; read as :data:`LABELS` when that is absent,
#: as Hugging Face's default data collator does.
LABEL = "label"

#: Where the loss comes from: the model's output, the user's criterion, or an inferred one.
OUTPUT, CRITERION, CROSS_ENTROPY, MSE = "output", "criterion", "cross_entropy", "mse"

_INTEGER_TYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def split_batch(batch: Any, batch_fn: Callable[[Any], Any] | None, has_criterion: bool) -> tuple[Any, Any]:
    """``(model inputs, targets)`` of a batch; targets None when it has none.

    Args:
        batch: One batch as the data yields it.
        batch_fn: The user's ``batch_fn(batch) -> (inputs, targets)``, or None.
        has_criterion: Whether the user gave a criterion (a dict batch's labels then go to it,
            not to the model).

    Raises:
        TypeError: The batch (or what ``batch_fn`` returned) has a shape this cannot read.
    """
    if batch_fn is not None:
        parts = batch_fn(batch)
        if not (isinstance(parts, (tuple, list)) and len(parts) == 2):
            raise TypeError(f"batch_fn must return (inputs, targets), got {describe(parts)}")
        return parts[0], parts[1]
    if isinstance(batch, Mapping):
        if LABELS not in batch and LABEL in batch:
            batch = {LABELS if key == LABEL else key: value for key, value in batch.items()}
        if has_criterion:
            if LABELS not in batch:
                raise TypeError(
                    f"a dict batch needs its targets under {LABELS!r} for criterion=; it has "
                    f"keys {sorted(map(str, batch))}; use batch_fn= to say what to use"
                )
            inputs = {key: value for key, value in batch.items() if key != LABELS}
            return inputs, batch[LABELS]
        # Hugging Face style: the model takes the labels (if any) and computes its own loss
        return dict(batch), batch.get(LABELS)
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)):
        if len(batch) == 2:
            return batch[0], batch[1]
        if len(batch) == 1:
            return batch[0], None
    raise TypeError(
        f"cannot read a batch of {describe(batch)}: batches must be (inputs, targets), "
        f"(inputs,), a tensor or a dict; pass batch_fn=lambda batch: (inputs, targets) "
        "for any other shape"
    )


def choose_loss(output: Any, targets: Any, has_criterion: bool) -> tuple[str, str | None]:
    """Where the loss comes from, decided from the first batch, and how ``info`` names it.

    Returns:
        ``(kind, name)``: kind is :data:`CRITERION`, :data:`OUTPUT`, :data:`CROSS_ENTROPY` or
        :data:`MSE`; name is what ``info["criterion"]`` says of an inferred loss (None for the
        user's criterion, which is named already).

    Raises:
        TypeError: No loss can be inferred; pass ``criterion=``.
        ValueError: The targets' and the predictions' shapes do not fit the inferred loss.
    """
    if has_criterion:
        return CRITERION, None
    if own_loss(output) is not None:
        return OUTPUT, "the model's own loss (output.loss / output['loss'] / output[0])"
    if targets is None:
        raise TypeError(
            "cannot infer the loss: the model's output carries none (no .loss or ['loss']) "
            "and the batches have no targets; pass criterion="
        )
    predictions = model_predictions(output)
    if not isinstance(targets, torch.Tensor) or not isinstance(predictions, torch.Tensor):
        raise TypeError(
            f"cannot infer the loss from output {describe(output)} and targets "
            f"{describe(targets)}; pass criterion="
        )
    shapes = f"targets of shape {tuple(targets.shape)}, output of shape {tuple(predictions.shape)}"
    if targets.dtype in _INTEGER_TYPES:
        if predictions.ndim != targets.ndim + 1 or predictions.shape[:1] != targets.shape[:1]:
            raise ValueError(
                f"integer targets read as class labels need (N, C) logits for cross-entropy, "
                f"but got {shapes}; pass criterion="
            )
        return CROSS_ENTROPY, "CrossEntropyLoss (inferred: integer class labels)"
    if targets.is_floating_point():
        if predictions.shape != targets.shape:
            # MSE would broadcast (N, 1) against (N,) to (N, N) without a word
            raise ValueError(
                f"floating targets mean mean squared error, which needs equal shapes, but got "
                f"{shapes}; reshape one of them (e.g. targets.view(-1, 1)) or pass criterion="
            )
        return MSE, "MSELoss (inferred: floating-point targets)"
    raise TypeError(f"cannot infer a loss for targets of dtype {targets.dtype}; pass criterion=")


def compute_loss(kind: str, output: Any, targets: Any, criterion: Callable[..., Any] | None) -> torch.Tensor:
    """The batch's scalar loss, the way :func:`choose_loss` decided.

    Raises:
        ValueError: This batch lacks what the first one had (its own loss, or targets).
        TypeError: The loss is not a tensor.
    """
    if kind == OUTPUT:
        loss = own_loss(output)
        if loss is None:
            raise ValueError(
                "the model's output carried a loss on the first batch but not on "
                "this one; pass criterion= to compute it the same way every time"
            )
        return scalar(loss)
    if targets is None:
        raise ValueError(
            "this batch has no targets for the loss; every batch must be (inputs, targets) (or use batch_fn=)"
        )
    predictions = model_predictions(output)
    if kind == CRITERION:
        assert criterion is not None
        return scalar(criterion(predictions, targets))
    if kind == CROSS_ENTROPY:
        return scalar(torch.nn.functional.cross_entropy(predictions, targets))
    return scalar(torch.nn.functional.mse_loss(predictions, targets))


def to_device(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor in it (nested in dicts, lists, tuples) moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, Mapping):
        return {key: to_device(item, device) for key, item in value.items()}
    if isinstance(value, (tuple, list)) and not hasattr(value, "_fields"):
        return type(value)(to_device(item, device) for item in value)
    return value


def call_model(model: torch.nn.Module, inputs: Any) -> Any:
    """``model(**inputs)`` for a dict, ``model(*inputs)`` for a tuple or list, else ``model(inputs)``."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def own_loss(output: Any) -> torch.Tensor | None:
    """The loss a model put in its output (Hugging Face style), or None.

    That is ``output.loss`` or ``output["loss"]``; or, in a tuple (a Hugging Face model called with
    ``return_dict=False`` and labels), a first element that is a 0-d floating-point tensor:
    predictions have a batch dimension.
    """
    if isinstance(output, tuple) and not hasattr(output, "_fields") and output:
        first = output[0]
        if isinstance(first, torch.Tensor) and first.is_floating_point() and first.ndim == 0:
            return first
        return None
    loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
    return loss if isinstance(loss, torch.Tensor) else None


def model_predictions(output: Any) -> Any:
    """The output itself when it is a tensor, else its ``logits`` when it has them, else the output."""
    if isinstance(output, torch.Tensor):
        return output
    logits = output.get("logits") if isinstance(output, Mapping) else getattr(output, "logits", None)
    return logits if isinstance(logits, torch.Tensor) else output


def scalar(loss: Any) -> torch.Tensor:
    """``loss`` as a 0-d tensor; TypeError if it is no tensor, ValueError if it has several values."""
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"the loss must be a tensor, got {describe(loss)}")
    if loss.ndim != 0:
        if loss.numel() != 1:
            raise ValueError(
                f"the loss must be a scalar, got shape {tuple(loss.shape)}; use a "
                "criterion with reduction='mean'"
            )
        loss = loss.reshape(())
    return loss


def describe(value: Any) -> str:
    """A value in words for an error message: a tensor's shape and dtype, a sequence's length."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__qualname__}"

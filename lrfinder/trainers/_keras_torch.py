"""The Keras trainer's steps on the torch backend, written as Keras's own torch ``train_step`` is.

Imported only when Keras runs on torch. Steps run eagerly, as ``fit`` does on this backend unless
the model was compiled with ``jit_compile=True``, each as soon as it is given; the losses stay
device tensors until the engine reads them back, all the losses of a block at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import keras
import torch

from lrfinder.trainers._keras_data import Batch, LossFn, batch_length

#: Steps always run eagerly: torch.compile costs more than a range test's few hundred steps save.
HONOURS_JIT_COMPILE = False


def _tensor(value: Any) -> Any:
    if value is None or isinstance(value, torch.Tensor):
        return value
    if type(value).__module__.startswith("tensorflow"):  # a tf.data batch
        value = value.numpy()
    return keras.ops.convert_to_tensor(value)


def _to_tensors(batch: Batch) -> Batch:
    x, y, sample_weight = batch
    if all(part is None or hasattr(part, "shape") for part in batch):  # no nesting: skip the tree walk
        return _tensor(x), _tensor(y), _tensor(sample_weight)
    return keras.tree.map_structure(_tensor, batch)


def uses_accelerator(model: Any) -> bool:
    """Whether the model's variables live on a GPU (or another non-CPU device)."""
    variables = model.variables
    return bool(variables) and variables[0].value.device.type != "cpu"


def is_distributed(model: Any) -> bool:
    """Keras on torch has no distribution strategy of its own."""
    del model
    return False


class TorchSteps:
    """Training and evaluation steps for a Keras model on torch (see :class:`_keras_tf.TFSteps`).

    ``block_steps`` only sets how many losses the engine reads back at once: each step runs when
    it is given, so an error surfaces in the step that raised it.
    """

    def __init__(
        self,
        model: Any,
        compute_loss: LossFn,
        optimizer: Any,
        lr_variable: Any,
        jit_compile: bool,
        block_steps: int = 1,
    ) -> None:
        del jit_compile  # see HONOURS_JIT_COMPILE
        self.block_steps = int(block_steps)
        self.model = model
        self.compute_loss = compute_loss
        self.optimizer = optimizer
        self.lr_variable = lr_variable
        self.trainable = list(model.trainable_variables)
        self.traces = 0

    def train(self, batch: Batch, lr: float) -> Any:
        """One optimisation step at ``lr``; returns this batch's loss (a device tensor)."""
        with torch.no_grad():  # the LR variable's tensor, set in place (Variable.assign costs more)
            self.lr_variable.value.fill_(lr)
        x, y, sample_weight = _to_tensors(batch)
        y_pred = self.model(x, training=True)
        self.model.zero_grad()
        loss = self.compute_loss(x, y, y_pred, sample_weight, True)
        self.optimizer.scale_loss(loss).backward()
        gradients = [variable.value.grad for variable in self.trainable]
        with torch.no_grad():
            self.optimizer.apply(gradients, self.trainable)
        return loss.detach()

    def losses(self, handles: Any) -> list[float]:
        """The losses returned by :meth:`train`, read back in one transfer."""
        if not handles:
            return []
        return [float(value) for value in torch.stack([loss.float() for loss in handles]).tolist()]

    def evaluate(self, batches: Iterable[Batch]) -> Any:
        """Mean loss over ``batches`` in inference mode, weighted by batch size (as ``evaluate``)."""
        loss_sum: Any = None
        count = 0
        with torch.no_grad():
            for batch in batches:
                x, y, sample_weight = _to_tensors(batch)
                y_pred = self.model(x, training=False)
                size = batch_length(x)
                part = self.compute_loss(x, y, y_pred, sample_weight, False).float() * size
                loss_sum = part if loss_sum is None else loss_sum + part
                count += size
        if loss_sum is None:
            raise ValueError("val_loader yielded no batches")
        return loss_sum / count

    def release(self) -> None:
        """Free the gradients the last step left on the weights."""
        self.model.zero_grad(set_to_none=True)


def build_model(model: Any, x: Any) -> None:
    """Create the weights of a model that was never called (inference mode: no state changes)."""
    with torch.no_grad():
        model(_to_tensors((x, None, None))[0], training=False)


def scope(model: Any) -> Any:
    """No distribution scope on torch."""
    del model
    return contextlib.nullcontext()


def make_steps(
    model: Any, compute_loss: LossFn, optimizer: Any, lr_variable: Any, jit_compile: bool, block_steps: int
) -> TorchSteps:
    """The steps for one sweep (see :class:`~lrfinder.trainers.base.KerasStepModule`)."""
    return TorchSteps(model, compute_loss, optimizer, lr_variable, jit_compile, block_steps)

"""The Keras trainer's steps on the JAX backend: a jitted stateless step, dispatched ahead.

Imported only when Keras runs on JAX. JAX has no mutable variables, so a step is a pure function
of the state's values, as Keras's own JAX ``train_step`` is: the forward pass and
``compute_loss`` run in a ``keras.StatelessScope`` that maps every model variable to a traced value
(BatchNormalization statistics and dropout seed states come out of the scope updated), the
gradient is ``jax.value_and_grad`` of it, and ``optimizer.apply`` runs in a second scope that maps
the optimizer's variables and the learning rate (a device scalar argument, so a new LR never
recompiles), as ``optimizer.stateless_apply`` does.

Each step is one jitted call, dispatched without waiting (JAX runs ahead of the host), the state
carried from call to call as device arrays; the losses of a block are read back in one transfer,
and only then are the new values written back to the Keras variables, so the trainer's snapshot
and restore work as on the other backends. The steps are not looped inside one compiled call as
on TensorFlow: on XLA's CPU backend a convolution inside a ``fori_loop`` ran about 3x slower than
the same step jitted alone (see benchmarks/speed/keras.md), and dispatch ahead already hides the host.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import keras
import numpy as np

from lrfinder.trainers._keras_data import Batch, LossFn, batch_length

#: The steps follow the model's ``jit_compile`` (``jax.jit``; eager steps when it is False).
HONOURS_JIT_COMPILE = True


def _host(value: Any) -> Any:
    """A batch leaf as an array JAX takes (a tf.data batch is read to host memory first)."""
    if value is None:
        return None
    if type(value).__module__.startswith("tensorflow"):
        return value.numpy()
    return value


def _to_arrays(batch: Batch) -> Batch:
    return keras.tree.map_structure(_host, batch)


def _updated(scope: Any, variables: list[Any], values: list[Any]) -> list[Any]:
    """The values ``variables`` hold at the end of a stateless ``scope``."""
    new = []
    for variable, value in zip(variables, values, strict=True):
        current = scope.get_current_value(variable)
        new.append(value if current is None else current)
    return new


def uses_accelerator(model: Any) -> bool:
    """Whether the model's variables live on a GPU or TPU."""
    variables = model.variables
    if not variables:
        return jax.default_backend() != "cpu"
    return any(device.platform != "cpu" for device in variables[0].value.devices())


def is_distributed(model: Any) -> bool:
    """Whether a ``keras.distribution`` layout is set (the JAX steps do not shard batches)."""
    del model
    return keras.distribution.distribution() is not None


class JaxSteps:
    """Training and evaluation steps for a Keras model on JAX (see :class:`_keras_tf.TFSteps`).

    Args:
        model: The Keras model; its variables are given their new values when losses are read.
        compute_loss: ``compute_loss(x, y, y_pred, sample_weight, training)``, the model's own loss.
        optimizer: A built Keras optimizer whose learning rate reads ``lr_variable``.
        lr_variable: The variable the optimizer reads its learning rate from; one of the
            optimizer's own variables, or the variable a schedule set aside was replaced by.
        jit_compile: ``jax.jit`` the step (as ``fit`` does unless ``jit_compile=False``).
        block_steps: Steps whose losses the engine reads back at once.
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
        if is_distributed(model):
            raise TypeError(
                "lrfinder's Keras trainer on JAX does not shard batches under keras.distribution: "
                "run the range test without the distribution set, or call find_lr(step) with a "
                "step(lr) -> loss function of your own"
            )
        self.model = model
        self.compute_loss = compute_loss
        self.optimizer = optimizer
        self.block_steps = int(block_steps)
        self.trainable = list(model.trainable_variables)
        self.others = list(model.non_trainable_variables)  # BN statistics, seed states
        self.optimizer_variables = list(optimizer.variables)
        self.lr_variable = lr_variable
        slots = [i for i, v in enumerate(self.optimizer_variables) if v is lr_variable]
        self.lr_slot = slots[0] if slots else None
        self.lr_dtype = np.dtype(lr_variable.dtype)
        self.traces = 0
        self.jit_compile = bool(jit_compile)
        step, evaluate = self._step, self._evaluate_batch
        self._train = jax.jit(step) if self.jit_compile else step
        self._evaluate = jax.jit(evaluate) if self.jit_compile else evaluate
        self._state: tuple[list[Any], list[Any], list[Any]] | None = None  # values not yet written back
        self._last_lr: Any = None

    # -- pure functions of the state's values ---------------------------------------------------

    def _step(
        self,
        trainable: list[Any],
        others: list[Any],
        slots: list[Any],
        x: Any,
        y: Any,
        sample_weight: Any,
        lr: Any,
    ) -> tuple[list[Any], list[Any], list[Any], Any]:
        """One optimisation step on the values of the variables; their new values and the loss."""
        self.traces += 1  # runs once per trace when jitted (once per step when not)
        model, optimizer = self.model, self.optimizer

        def forward(trainable: list[Any]) -> Any:
            mapping = [
                *zip(self.trainable, trainable, strict=True),
                *zip(self.others, others, strict=True),
                *zip(self.optimizer_variables, slots, strict=True),
            ]  # a loss scale is read
            with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
                y_pred = model(x, training=True)
                loss = self.compute_loss(x, y, y_pred, sample_weight, True)
                scaled = optimizer.scale_loss(loss)
            return scaled, (loss, _updated(scope, self.others, others))

        (_, (loss, others)), gradients = jax.value_and_grad(forward, has_aux=True)(trainable)
        lr = lr.astype(self.lr_dtype)
        slots = list(slots)
        mapping = [*zip(self.trainable, trainable, strict=True)]
        if self.lr_slot is None:
            mapping.append((self.lr_variable, lr))
        else:
            slots[self.lr_slot] = lr
        mapping.extend(zip(self.optimizer_variables, slots, strict=True))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            optimizer.apply(gradients, self.trainable)
        return (
            _updated(scope, self.trainable, trainable),
            others,
            _updated(scope, self.optimizer_variables, slots),
            loss.astype(jnp.float32),
        )

    def _evaluate_batch(
        self, trainable: list[Any], others: list[Any], x: Any, y: Any, sample_weight: Any
    ) -> Any:
        mapping = [*zip(self.trainable, trainable, strict=True), *zip(self.others, others, strict=True)]
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True):
            y_pred = self.model(x, training=False)
            loss = self.compute_loss(x, y, y_pred, sample_weight, False)
        return loss.astype(jnp.float32)

    # -- the KerasSteps protocol -----------------------------------------------------------------

    def _write_back(self) -> None:
        """Give the Keras variables the values the steps have computed so far."""
        if self._state is None:
            return
        for variables, values in zip(
            (self.trainable, self.others, self.optimizer_variables), self._state, strict=True
        ):
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value)
        if self.lr_slot is None and self._last_lr is not None:
            self.lr_variable.assign(self._last_lr)
        self._state = None

    def train(self, batch: Batch, lr: float) -> Any:
        """One optimisation step at ``lr``, dispatched without waiting; its loss (a device array)."""
        if self._state is None:
            self._state = (
                [v.value for v in self.trainable],
                [v.value for v in self.others],
                [v.value for v in self.optimizer_variables],
            )
        x, y, sample_weight = _to_arrays(batch)
        rate = np.asarray(lr, dtype=self.lr_dtype)
        trainable, others, slots, loss = self._train(*self._state, x, y, sample_weight, rate)
        self._state = (trainable, others, slots)
        self._last_lr = rate
        return loss

    def losses(self, handles: Any) -> list[float]:
        """The losses returned by :meth:`train`, read back in one transfer; the variables updated."""
        self._write_back()
        if not handles:
            return []
        # device_get, not jnp.stack: stacking compiles an XLA computation for each block length, some
        # 20 ms apiece on a CPU, paid by every process's first range test.
        return [float(value) for value in jax.device_get(list(handles))]

    def evaluate(self, batches: Iterable[Batch]) -> Any:
        """Mean loss over ``batches`` in inference mode, weighted by batch size (as ``evaluate``)."""
        self._write_back()
        trainable = [v.value for v in self.trainable]
        others = [v.value for v in self.others]
        loss_sum: Any = None
        count = 0
        for batch in batches:
            x, y, sample_weight = _to_arrays(batch)
            size = batch_length(x)
            part = self._evaluate(trainable, others, x, y, sample_weight) * size
            loss_sum = part if loss_sum is None else loss_sum + part
            count += size
        if loss_sum is None:
            raise ValueError("val_loader yielded no batches")
        return loss_sum / count

    def release(self) -> None:
        """Drop the values not written back (the trainer restores the variables anyway)."""
        self._state = None


def build_model(model: Any, x: Any) -> None:
    """Create the weights of a model that was never called (inference mode: no state changes)."""
    model(_to_arrays((x, None, None))[0], training=False)


def scope(model: Any) -> Any:
    """No distribution scope on JAX."""
    del model
    return contextlib.nullcontext()


def make_steps(
    model: Any, compute_loss: LossFn, optimizer: Any, lr_variable: Any, jit_compile: bool, block_steps: int
) -> JaxSteps:
    """The steps for one sweep (see :class:`~lrfinder.trainers.base.KerasStepModule`)."""
    return JaxSteps(model, compute_loss, optimizer, lr_variable, jit_compile, block_steps)

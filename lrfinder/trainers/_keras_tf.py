"""The Keras trainer's steps on the TensorFlow backend: one ``tf.function`` per kind of step.

Imported only when Keras runs on TensorFlow. The training step is traced once (the learning rate is
a tensor argument assigned to a variable inside it, so a new LR never retraces), XLA-compiled when
the model's ``jit_compile`` says so, and run with ``strategy.run`` inside a ``tf.distribute``
strategy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from lrfinder.trainers._keras_data import Batch

LossFn = Callable[[Any, Any, Any, Any, bool], Any]


def _batch_length(x: Any) -> Any:
    first = next(leaf for leaf in keras.tree.flatten(x) if leaf is not None)
    return tf.cast(tf.shape(first)[0], tf.float32)


def _host_length(x: Any) -> int:
    first = next(leaf for leaf in keras.tree.flatten(x) if leaf is not None)
    return int(first.shape[0])


def uses_accelerator() -> bool:
    """Whether TensorFlow sees a GPU or another non-CPU device."""
    return any(device.device_type != "CPU" for device in tf.config.list_logical_devices())


def is_distributed(model: Any) -> bool:
    """Whether ``model`` belongs to a ``tf.distribute`` strategy other than the default one."""
    with model.distribute_strategy.scope():
        return tf.distribute.has_strategy()


class TFSteps:
    """Training and evaluation steps for a Keras model on TensorFlow.

    Args:
        model: The Keras model (its variables are trained in place).
        compute_loss: ``compute_loss(x, y, y_pred, sample_weight, training)``, the model's own loss.
        optimizer: A built Keras optimizer whose learning rate reads ``lr_variable``.
        lr_variable: The variable the learning rate of each step is assigned to.
        jit_compile: XLA-compile the steps (ignored inside a distribution strategy, as Keras does).
    """

    def __init__(self, model: Any, compute_loss: LossFn, optimizer: Any, lr_variable: Any,
                 jit_compile: bool) -> None:
        self.strategy = model.distribute_strategy
        self.distributed = is_distributed(model)
        self.replicas = int(self.strategy.num_replicas_in_sync)
        jit_compile = bool(jit_compile) and not self.distributed
        trainable = list(model.trainable_variables)
        lr_dtype = lr_variable.dtype
        replicas = float(self.replicas)

        def per_sample(loss: Any) -> Any:
            # Keras's losses divide by the replica count under a strategy so that the summed
            # gradients are the mean; undo it to read this replica's own mean loss.
            loss = tf.cast(loss, tf.float32)
            return loss * replicas if self.distributed else loss

        def train_replica(x: Any, y: Any, sample_weight: Any) -> Any:
            with tf.GradientTape() as tape:
                y_pred = model(x, training=True)
                loss = compute_loss(x, y, y_pred, sample_weight, True)
                scaled = optimizer.scale_loss(loss)
            gradients = tape.gradient(scaled, trainable)
            optimizer.apply(gradients, trainable)
            if not self.distributed:
                return per_sample(loss)
            count = _batch_length(x)
            return per_sample(loss) * count, count

        def eval_replica(x: Any, y: Any, sample_weight: Any) -> Any:
            y_pred = model(x, training=False)
            loss = compute_loss(x, y, y_pred, sample_weight, False)
            count = _batch_length(x)
            return per_sample(loss) * count, count

        def total(per_replica: Any) -> Any:
            return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

        @tf.function(jit_compile=jit_compile, reduce_retracing=True)
        def train(batch: Batch, lr: Any) -> Any:
            lr_variable.assign(tf.cast(lr, lr_dtype))
            if not self.distributed:
                return train_replica(*batch)
            # Weighted by each replica's share of the batch, so that the result is the loss of the
            # whole batch even when it does not split evenly (a MEAN of the replicas' means would not).
            loss_sum, count = self.strategy.run(train_replica, args=batch)
            return total(loss_sum) / total(count)

        @tf.function(jit_compile=jit_compile, reduce_retracing=True)
        def evaluate(batch: Batch) -> Any:
            if not self.distributed:
                return eval_replica(*batch)
            loss_sum, count = self.strategy.run(eval_replica, args=batch)
            return total(loss_sum), total(count)

        self._train = train
        self._evaluate = evaluate
        self._lr_dtype = np.dtype(lr_dtype)

    @property
    def traces(self) -> int:
        """How many times the training step was traced (1 after any number of steps)."""
        return int(self._train.experimental_get_tracing_count())

    def _place(self, batch: Batch) -> Any:
        """The batch as it enters the step: split across replicas under a strategy."""
        if not self.distributed:
            return batch
        size = _host_length(batch[0])
        if size < self.replicas:
            raise ValueError(
                f"a batch of {size} samples cannot be split across {self.replicas} replicas; "
                "use batches at least as large as the number of replicas"
            )
        present = [part is not None for part in batch]
        parts = tuple(part for part in batch if part is not None)

        def replica_slice(context: Any) -> Any:
            index = context.replica_id_in_sync_group
            start, stop = index * size // self.replicas, (index + 1) * size // self.replicas
            return keras.tree.map_structure(lambda a: tf.convert_to_tensor(a[start:stop]), parts)

        values = iter(self.strategy.experimental_distribute_values_from_function(replica_slice))
        return tuple(next(values) if here else None for here in present)

    def train(self, batch: Batch, lr: float) -> Any:
        """One optimisation step at ``lr``; returns this batch's loss (a lazy tensor)."""
        return self._train(self._place(batch), np.asarray(lr, dtype=self._lr_dtype))

    def evaluate(self, batches: Iterable[Batch]) -> Any:
        """Mean loss over ``batches`` in inference mode, weighted by batch size (as ``evaluate``)."""
        loss_sum = count = None
        for batch in batches:
            part_sum, part_count = self._evaluate(self._place(batch))
            loss_sum = part_sum if loss_sum is None else loss_sum + part_sum
            count = part_count if count is None else count + part_count
        if loss_sum is None:
            raise ValueError("val_loader yielded no batches")
        return loss_sum / count

    def release(self) -> None:
        """Nothing to free: TensorFlow keeps no gradients on the variables."""


def build_model(model: Any, x: Any) -> None:
    """Create the weights of a model that was never called (inference mode: no state changes)."""
    with model.distribute_strategy.scope():
        model(x, training=False)


def scope(model: Any) -> Any:
    """The model's distribution scope, where optimizer copies and variables must be created."""
    return model.distribute_strategy.scope()


#: The steps class keras_trainer uses on this backend.
Steps = TFSteps

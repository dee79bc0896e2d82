"""The Keras trainer's steps on the TensorFlow backend: one ``tf.function`` per kind of step.

Imported only when Keras runs on TensorFlow. Training runs in blocks (see
:mod:`lrfinder.trainers._keras_blocks`): one ``tf.function`` runs up to ``block_steps`` steps in a
``tf.while_loop``, each step assigning its own learning rate (read from the block's vector of LRs)
to the optimizer's LR variable on the device, and returns the block's losses as one vector. It is
traced once for any LRs, batch sizes and block lengths, and XLA-compiled when the model's
``jit_compile`` says so. Inside a ``tf.distribute`` strategy each step runs on its own with
``strategy.run``. On the CPU these functions are called with a lighter Grappler, for this thread
only (see :func:`_lean_call_options`).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable, Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from lrfinder.trainers._keras_blocks import BlockQueue, stack_batches
from lrfinder.trainers._keras_data import Batch, LossFn, batch_length

#: The steps follow the model's ``jit_compile`` (XLA).
HONOURS_JIT_COMPILE = True


def _length_tensor(x: Any) -> Any:
    """:func:`~lrfinder.trainers._keras_data.batch_length` inside a traced function (a float32 tensor)."""
    first = next(leaf for leaf in keras.tree.flatten(x) if leaf is not None)
    return tf.cast(tf.shape(first)[0], tf.float32)


def _relaxed_specs(batch: Batch, kept: int = 0) -> tuple[Any, ...] | None:
    """TensorSpecs of ``batch`` with the batch dimension left open (None when a leaf has no shape).

    ``kept`` leading dimensions (the block axis of stacked batches) keep their size; the one after
    them is the batch dimension.
    """
    leaves = [leaf for part in batch if part is not None for leaf in keras.tree.flatten(part)]
    if not all(
        hasattr(leaf, "shape") and hasattr(leaf, "dtype") and len(leaf.shape) > kept for leaf in leaves
    ):
        return None
    return tuple(
        None
        if part is None
        else keras.tree.map_structure(
            lambda a: tf.TensorSpec((*a.shape[:kept], None, *a.shape[kept + 1 :]), tf.as_dtype(a.dtype)), part
        )
        for part in batch
    )


def _stack(leaves: list[Any]) -> Any:
    """Leaves of equal shape stacked on a new first axis: NumPy for host arrays, else TensorFlow."""
    if all(isinstance(leaf, np.ndarray) for leaf in leaves):
        return np.stack(leaves)
    return tf.stack(leaves)


def _lean_call_options() -> Any:
    """Function-call options with a lighter Grappler, for lrfinder's own functions on the CPU (or None).

    Grappler, TensorFlow's graph optimiser, runs when a function is first called; for the training
    block (a ``tf.while_loop`` around the step) it took longer than the whole first block. These
    options are the caller's own with one round of Grappler's passes instead of two, and without
    its memory optimiser and its MLIR (TFG) passes, which cut most of that time (see
    benchmarks/speed/keras.md). The passes that rewrite the arithmetic (fusions, arithmetic and
    constant folding, ...) still run, so the steps compute what they compute with TensorFlow's
    defaults, bit for bit in the tests, and as Keras's own ``fit`` does; turning Grappler off
    altogether saved a little more but moved the losses by float rounding. The options are set
    for this thread only around our calls (:func:`_calling_with`), so the user's configuration is
    never changed, and they are not used at all (None) when the user has set graph options of
    their own (Grappler passes, XLA auto-clustering) or when TensorFlow's private API for them is
    missing.
    """
    try:
        from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
        from tensorflow.python.eager import context

        current = context.context().function_call_options
        config = config_pb2.ConfigProto.FromString(current.config_proto_serialized)
        if config.HasField("graph_options") and config.graph_options != config_pb2.GraphOptions():
            return None  # the user's choices apply
        rewrite = config.graph_options.rewrite_options
        rewrite.meta_optimizer_iterations = rewriter_config_pb2.RewriterConfig.ONE
        rewrite.memory_optimization = rewriter_config_pb2.RewriterConfig.NO_MEM_OPT
        rewrite.disable_tfg_optimizer = True
        lean = copy.copy(current)
        lean.config_proto_serialized = config
    except Exception:  # another TensorFlow: run with its defaults
        return None
    return lean


@contextlib.contextmanager
def _calling_with(options: Any) -> Iterator[None]:
    """Call functions with ``options`` (this thread only) inside the block; None changes nothing."""
    if options is None:
        yield
        return
    from tensorflow.python.eager import context

    ctx = context.context()
    saved = ctx.function_call_options
    ctx.function_call_options = options
    try:
        yield
    finally:
        ctx.function_call_options = saved


def uses_accelerator(model: Any) -> bool:
    """Whether TensorFlow sees a GPU or another non-CPU device (where it places ``model``)."""
    del model
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
        block_steps: Steps per compiled call (1 inside a distribution strategy, whatever is asked).
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
        self.strategy = model.distribute_strategy
        self.distributed = is_distributed(model)
        self.replicas = int(self.strategy.num_replicas_in_sync)
        self.block_steps = 1 if self.distributed else int(block_steps)
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
            count = _length_tensor(x)
            return per_sample(loss) * count, count

        def eval_replica(x: Any, y: Any, sample_weight: Any) -> Any:
            y_pred = model(x, training=False)
            loss = compute_loss(x, y, y_pred, sample_weight, False)
            count = _length_tensor(x)
            return per_sample(loss) * count, count

        def total(per_replica: Any) -> Any:
            return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

        def entry(part: Any, index: Any) -> Any:
            return None if part is None else tf.nest.map_structure(lambda a: a[index], part)

        # Stacked batches, the block's LRs and how many of its steps are real, as flat arguments
        # (cheaper to dispatch than one nested tuple). The losses of steps not run stay 0. No
        # autograph, as in fit's own train function: the loop is written out, and converting the
        # model's code costs tracing time.
        @tf.function(jit_compile=jit_compile, reduce_retracing=True, autograph=False)
        def train_block(xs: Any, ys: Any, sample_weights: Any, lrs: Any, count: Any) -> Any:
            def body(index: Any, losses: Any) -> Any:
                lr_variable.assign(tf.cast(lrs[index], lr_dtype))
                loss = train_replica(entry(xs, index), entry(ys, index), entry(sample_weights, index))
                return index + 1, tf.tensor_scatter_nd_update(losses, [[index]], [loss])

            _, losses = tf.while_loop(
                lambda index, _: index < count, body, (tf.constant(0), tf.zeros(tf.shape(lrs), tf.float32))
            )
            return losses

        # One step under a strategy: the per-replica results cannot be carried through a loop.
        @tf.function(reduce_retracing=True)
        def train_distributed(x: Any, y: Any, sample_weight: Any, lr: Any) -> Any:
            lr_variable.assign(tf.cast(lr, lr_dtype))
            # Weighted by each replica's share of the batch, so that the result is the loss of the
            # whole batch even when it does not split evenly (a MEAN of the replicas' means would not).
            loss_sum, count = self.strategy.run(train_replica, args=(x, y, sample_weight))
            return tf.reshape(total(loss_sum) / total(count), [1])

        @tf.function(jit_compile=jit_compile, reduce_retracing=True)
        def evaluate(x: Any, y: Any, sample_weight: Any) -> Any:
            if not self.distributed:
                return eval_replica(x, y, sample_weight)
            loss_sum, count = self.strategy.run(eval_replica, args=(x, y, sample_weight))
            return total(loss_sum), total(count)

        self._train_block = train_block
        self._train_distributed = train_distributed
        self._evaluate = evaluate
        self._lr_dtype = np.dtype(lr_dtype)
        self._relaxed: set[str] = set()
        # Grappler keeps TensorFlow's defaults under a strategy and on accelerators, where its memory
        # optimiser and second round may pay for themselves (not measured: no GPU was at hand).
        self._call_options = None if self.distributed or uses_accelerator(model) else _lean_call_options()
        self._queue = BlockQueue(self.block_steps, self._run, lambda losses: losses.numpy())

    def _relax(self, kind: str, batch: Batch, kept: int = 0) -> None:
        """Trace ``kind``'s function once for any batch size, before its first call.

        Without it the short last batch of a pass costs a second trace (a few hundred ms, several
        times the step itself on a small model).
        """
        if kind in self._relaxed:
            return
        self._relaxed.add(kind)
        specs = None if self.distributed else _relaxed_specs(batch, kept)
        if specs is None:  # per-replica values, or leaves without a shape: trace on the first call
            return
        if kind == "train":
            self._train_block.get_concrete_function(
                *specs, tf.TensorSpec((self.block_steps,), self._lr_dtype), tf.TensorSpec((), tf.int32)
            )
        else:
            self._evaluate.get_concrete_function(*specs)

    @property
    def traces(self) -> int:
        """How many times the training function was traced (1 after any number of steps)."""
        function = self._train_distributed if self.distributed else self._train_block
        return int(function.experimental_get_tracing_count())

    def _place(self, batch: Batch) -> Any:
        """The batch as it enters the step: split across replicas under a strategy."""
        if not self.distributed:
            return batch
        size = batch_length(batch[0])
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

    def _run(self, batches: list[Batch], lrs: list[float]) -> Any:
        """Run consecutive steps on batches of one shape; their losses as one lazy vector."""
        if self.distributed:
            (batch,), (lr,) = batches, lrs
            return self._train_distributed(*self._place(batch), np.asarray(lr, dtype=self._lr_dtype))
        size = self.block_steps
        stacked = stack_batches(batches, size, _stack)
        self._relax("train", stacked, kept=1)
        rates = np.zeros(size, dtype=self._lr_dtype)
        rates[: len(lrs)] = lrs
        with _calling_with(self._call_options):
            return self._train_block(*stacked, rates, np.int32(len(lrs)))

    def train(self, batch: Batch, lr: float) -> Any:
        """Queue one optimisation step at ``lr`` (see :class:`~lrfinder.trainers.base.KerasSteps`)."""
        return self._queue.add(batch, lr)

    def losses(self, handles: Any) -> list[float]:
        """The batch losses of ``handles``, running what is still queued."""
        return self._queue.read(handles)

    def evaluate(self, batches: Iterable[Batch]) -> Any:
        """Mean loss over ``batches`` in inference mode, weighted by batch size (as ``evaluate``)."""
        loss_sum = count = None
        for batch in batches:
            self._relax("evaluate", batch)
            with _calling_with(self._call_options):
                part_sum, part_count = self._evaluate(*self._place(batch))
            loss_sum = part_sum if loss_sum is None else loss_sum + part_sum
            count = part_count if count is None else count + part_count
        if loss_sum is None:
            raise ValueError("val_loader yielded no batches")
        return loss_sum / count

    def release(self) -> None:
        """Drop steps never run; TensorFlow keeps no gradients on the variables."""
        self._queue.clear()


def build_model(model: Any, x: Any) -> None:
    """Create the weights of a model that was never called (inference mode: no state changes)."""
    with model.distribute_strategy.scope():
        model(x, training=False)


def scope(model: Any) -> Any:
    """The model's distribution scope, where optimizer copies and variables must be created."""
    return model.distribute_strategy.scope()


def make_steps(
    model: Any, compute_loss: LossFn, optimizer: Any, lr_variable: Any, jit_compile: bool, block_steps: int
) -> TFSteps:
    """The steps for one sweep (see :class:`~lrfinder.trainers.base.KerasStepModule`)."""
    return TFSteps(model, compute_loss, optimizer, lr_variable, jit_compile, block_steps)

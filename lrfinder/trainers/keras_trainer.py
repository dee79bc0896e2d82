"""The Keras 3 trainer: ``find_lr(model, data)`` for a Keras model, on TensorFlow, torch or JAX.

Each step runs a training step of lrfinder's own, written as Keras's ``train_step`` is (forward pass
in training mode, ``model.compute_loss``, gradients, ``optimizer.apply``) and compiled as ``fit``
would compile it, and returns that batch's own loss. Keras's ``logs["loss"]`` is not used: during
``fit`` it is the running mean over the epoch, and finders that record it suggest LRs that are too
high. The engine reads the losses back once per block of :data:`BLOCK_STEPS` steps; on TensorFlow a
block runs inside one compiled call (see :mod:`lrfinder.trainers._keras_blocks`), on JAX and torch
each step is dispatched on its own without waiting.

This module is imported only when ``keras`` is already imported; it imports the backend's step
module only (``_keras_tf``, ``_keras_torch`` or ``_keras_jax``, each a
:class:`~lrfinder.trainers.base.KerasStepModule`), so TensorFlow is never loaded on torch or JAX.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from lrfinder.trainers._keras_data import BatchSource, is_arrays, make_source
from lrfinder.trainers.base import KerasStepModule, KerasSteps, TrainerBase, check_options

__all__ = ["OPTIONS", "KerasTrainer", "accepts", "make"]

#: Keras backends this trainer has steps for, and the lrfinder module holding them.
STEP_MODULES = {
    "tensorflow": "lrfinder.trainers._keras_tf",
    "torch": "lrfinder.trainers._keras_torch",
    "jax": "lrfinder.trainers._keras_jax",
}

if TYPE_CHECKING:  # mypy checks that every Keras step module follows the protocol
    from lrfinder.trainers import _keras_jax, _keras_tf, _keras_torch

    _CHECKED: tuple[KerasStepModule, ...] = (_keras_tf, _keras_torch, _keras_jax)

#: Training steps whose losses are read back at once (run in one compiled call on TensorFlow).
#: The sweep may then stop up to a block after the step that diverged; the steps past it are
#: not recorded and the state is restored anyway.
BLOCK_STEPS = 16

#: Steps run ahead of the host on an accelerator before validation losses are read back (1 on CPU).
ACCELERATOR_SYNC_EVERY = 8

#: Options make() takes; everything else find_lr passes is rejected with a TypeError.
OPTIONS = frozenset({"optimizer", "criterion", "val_loader", "val_batches", "batch_size", "shuffle"})

#: find_lr options that have no meaning for a Keras model, with what to do instead.
NOT_FOR_KERAS = {
    "accumulation_steps": "give the Keras optimizer gradient_accumulation_steps= instead",
    "amp": "set a mixed-precision dtype policy (keras.mixed_precision.set_dtype_policy) before "
    "building the model instead",
    "grad_clip": "give the Keras optimizer clipnorm= or global_clipnorm= instead",
    "device": "Keras places the model itself; use a tf.distribute strategy or keras.device",
    "batch_fn": "make the data yield (x, y) or (x, y, sample_weight) batches instead",
    "snapshot_dir": "the Keras trainer keeps its snapshot in host memory",
    "snapshot": "for step functions only",
    "restore": "for step functions only",
}

_NOTHING = object()


def accepts(model: Any) -> bool:
    """Whether ``model`` is a Keras 3 model."""
    return isinstance(model, keras.Model)


def make(model: Any, data: Any = None, **options: Any) -> KerasTrainer:
    """A :class:`KerasTrainer` for ``model``; ``options`` are find_lr's non-None options.

    Raises:
        TypeError: An option that does not apply to Keras (its message names it and the Keras way).
    """
    check_options("a Keras model", options, OPTIONS, NOT_FOR_KERAS)
    return KerasTrainer(model, data, **options)


class _LossHolder(keras.Model):
    """Compiled in place of an uncompiled user model, to give it a loss for the sweep.

    It wraps the user's model (sharing its variables) so that ``compute_loss`` resolves the loss
    exactly as ``compile`` would, while the user's model itself is never compiled.
    """

    def __init__(self, model: keras.Model) -> None:
        super().__init__(name="lrfinder_loss")
        self.inner = model

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        return self.inner(inputs, training=training)


def _loss_name(loss: Any) -> Any:
    if isinstance(loss, str):
        return loss
    if isinstance(loss, dict):
        return {str(key): _loss_name(value) for key, value in loss.items()}
    if isinstance(loss, (list, tuple)):
        return [_loss_name(value) for value in loss]
    if isinstance(loss, keras.losses.Loss):
        return loss.name
    return getattr(loss, "__name__", type(loss).__name__)


def _loss_function(loss_model: keras.Model) -> Callable[[Any, Any, Any, Any, bool], Any]:
    """``loss(x, y, y_pred, sample_weight, training)`` via the model's own ``compute_loss``."""
    compute = loss_model.compute_loss
    takes_training = "training" in inspect.signature(compute).parameters  # added in Keras 3.3

    def loss(x: Any, y: Any, y_pred: Any, sample_weight: Any, training: bool) -> Any:
        if takes_training:
            return compute(x, y, y_pred, sample_weight, training=training)
        return compute(x, y, y_pred, sample_weight)

    return loss


def _copy_optimizer(optimizer: Any) -> Any:
    try:
        return type(optimizer).from_config(optimizer.get_config())
    except Exception as error:
        raise TypeError(
            f"cannot copy the unbuilt optimizer {type(optimizer).__name__} from its config ({error}); "
            "build it first (optimizer.build(model.trainable_variables)) so that find_lr sweeps it "
            "and restores its state"
        ) from error


def _unique(variables: Sequence[Any]) -> list[Any]:
    seen: set[int] = set()
    kept = []
    for variable in variables:
        if id(variable) not in seen:
            seen.add(id(variable))
            kept.append(variable)
    return kept


class KerasTrainer(TrainerBase):
    """Runs the range test on a Keras 3 model and leaves it exactly as it was.

    Args:
        model: A Keras 3 model; compiled, or uncompiled with ``optimizer`` and ``criterion`` given.
        data: Training batches: a ``tf.data.Dataset``, ``(x, y)`` or ``(x, y, sample_weight)``
            arrays (with ``batch_size``; shuffled each pass as ``fit`` does, see ``shuffle``), a
            ``keras.utils.PyDataset``, or any re-iterable of such batches, read in the order they
            come. Cycled when it runs out.
        optimizer: Sweep this optimizer (a Keras optimizer or its name) instead of the compiled one.
        criterion: Sweep with this loss (what ``compile(loss=...)`` takes) instead of the compiled
            one. An uncompiled model is never compiled: the loss is compiled on a wrapper that shares
            the model's variables.
        val_loader: Validation data (same forms as ``data``). Each step then records the loss over
            the first ``val_batches`` of its batches, in inference mode, after the update: the same
            batches at every step, so the curve reflects the LR and not the draw of the batches.
        val_batches: Validation batches per step; default: the whole validation data, when its
            length is known.
        batch_size: Batch size for arrays (default 32, as ``fit``).
        shuffle: For arrays: draw the samples of each pass in a new random order (True, the
            default, as ``fit``) or read them in order (False). The order comes from a copy of
            NumPy's global random state (so ``keras.utils.set_random_seed`` fixes it), and that
            state is left as it was.
        block_steps: Training steps run per compiled call and read back together (default
            :data:`BLOCK_STEPS`; 1 runs and reads back every step on its own). Validation and
            ``tf.distribute`` strategies always run one step per call.

    State: every model variable (weights, BatchNormalization moving statistics, dropout seed
    states), the model's metric variables, and, when the swept optimizer is already built, all its
    variables (moments, iteration count, LR) are copied to host memory before the sweep and assigned
    back after it. An optimizer that is not built yet stays unbuilt: the sweep uses a copy made from
    its config. An LR schedule (or callable) is set aside for the sweep and the same object is put
    back afterwards.
    """

    backend = "keras"

    def __init__(
        self,
        model: keras.Model,
        data: Any,
        *,
        optimizer: Any = None,
        criterion: Any = None,
        val_loader: Any = None,
        val_batches: int | None = None,
        batch_size: int | None = None,
        shuffle: bool | None = None,
        block_steps: int = BLOCK_STEPS,
    ) -> None:
        super().__init__()
        backend_name = keras.backend.backend()
        if backend_name not in STEP_MODULES:
            raise TypeError(
                f"lrfinder's Keras trainer runs on the TensorFlow, torch and JAX backends, and this "
                f"Keras runs on {backend_name!r}: set KERAS_BACKEND=tensorflow, torch or jax, or call "
                "find_lr(step) with a step(lr) -> loss function of your own"
            )
        self._ops: KerasStepModule = importlib.import_module(STEP_MODULES[backend_name])
        if not model.compiled and (optimizer is None or criterion is None):
            missing = " and ".join(
                name for name, value in (("optimizer=", optimizer), ("loss=", criterion)) if value is None
            )
            raise TypeError(
                f"the Keras model {model.name!r} is not compiled and find_lr got no {missing}: call "
                "model.compile(optimizer=..., loss=...) first, or pass both optimizer= and loss= to "
                "find_lr (the model is then used for the sweep and left uncompiled)"
            )
        self.model = model

        if batch_size is not None and not (is_arrays(data) or is_arrays(val_loader)):
            raise TypeError(
                "batch_size= applies to (x, y) arrays only; a tf.data.Dataset or PyDataset already "
                "yields batches"
            )
        if shuffle is not None and not isinstance(shuffle, bool):
            raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
        if shuffle is not None and not is_arrays(data):
            raise TypeError(
                "shuffle= applies to (x, y) arrays only, as in fit: a tf.data.Dataset, PyDataset or "
                "list of batches is read in the order it yields batches (shuffle it in the pipeline)"
            )
        if isinstance(block_steps, bool) or not isinstance(block_steps, int) or block_steps < 1:
            raise ValueError(f"block_steps must be a positive integer, got {block_steps!r}")
        self.source: BatchSource = make_source(
            data, batch_size if is_arrays(data) else None, "data", shuffle=shuffle is not False
        )
        self.val_source: BatchSource | None = None
        self.val_batches: int | None = None
        self._set_up_validation(val_loader, val_batches, batch_size)
        self._batch_size = batch_size
        self._eval_source: tuple[int, BatchSource] | None = None

        with self._ops.scope(model):
            self.optimizer, self.restores_optimizer = self._sweep_optimizer(optimizer)
            self.loss_model = model if criterion is None else self._loss_holder(criterion)
        self._compute_loss = _loss_function(self.loss_model)

        if getattr(type(model), "train_step", None) is not getattr(keras.Model, "train_step", None):
            warnings.warn(
                f"{type(model).__name__} overrides train_step, which find_lr does not run: each step "
                "is a standard one (forward pass, compute_loss, gradients, optimizer.apply). For a "
                "custom training step, call find_lr(step) with a step(lr) -> loss function",
                UserWarning,
                stacklevel=5,  # the find_lr call (through make_trainer and make)
            )

        # XLA (jax.jit on JAX) as fit would use it: the user's choice for a compiled model, Keras's
        # "auto" rule (on a GPU, off under tf.distribute) for an uncompiled one, resolved on the
        # wrapper so that reading it leaves the user's model untouched.
        self.jit_compile = bool((model if model.compiled else self.loss_model).jit_compile)
        distributed = self._ops.is_distributed(model)
        if self.val_source is not None or distributed:
            # Validation reads the model after every step; a strategy runs steps one by one.
            self.block_steps = 1
            self.sync_every = ACCELERATOR_SYNC_EVERY if self._ops.uses_accelerator(model) else 1
        else:
            self.block_steps = self.sync_every = block_steps

        self._steps: KerasSteps | None = None
        self._variables: list[Any] = []
        self._saved: list[np.ndarray] = []
        self._set_aside: Any = _NOTHING
        loss = criterion if criterion is not None else model.loss
        if loss is None:  # a model whose compute_loss or add_loss gives the loss
            loss = f"{type(model).__name__}.compute_loss"
        self.info.update(
            {
                "keras_backend": backend_name,
                "optimizer": type(self.optimizer).__name__,
                "optimizer_state": "restored" if self.restores_optimizer else "fresh copy",
                "loss": _loss_name(loss),
                "strategy": type(model.distribute_strategy).__name__ if distributed else "none",
                "schedule_set_aside": False,
                "jit_compile": self.jit_compile and self._ops.HONOURS_JIT_COMPILE and not distributed,
                "data": self.source.kind,
                "block_steps": self.block_steps,
            }
        )
        if is_arrays(data):
            self.info["batch_size"] = self.source.batch_size  # type: ignore[attr-defined]
            self.info["shuffle"] = shuffle is not False
        if self.val_source is not None:
            self.info["val_batches"] = self.val_batches

    # -- set-up ---------------------------------------------------------------------------------

    def _set_up_validation(self, val_loader: Any, val_batches: int | None, batch_size: int | None) -> None:
        if val_loader is None:
            if val_batches is not None:
                raise TypeError("val_batches= needs val_loader= (the validation data)")
            return
        source = make_source(val_loader, batch_size if is_arrays(val_loader) else None, "val_loader")
        if getattr(source, "one_shot", False):
            raise TypeError(
                "val_loader is a one-shot iterator, but validation reads the same batches at every "
                "step: pass a tf.data.Dataset, (x, y) arrays, a PyDataset or a list of batches"
            )
        if val_batches is None:
            if source.length is None:
                raise ValueError(
                    f"the length of val_loader ({source.kind}) is unknown or infinite: pass "
                    "val_batches= (validation batches per step)"
                )
            val_batches = source.length
        if isinstance(val_batches, bool) or not isinstance(val_batches, int) or val_batches < 1:
            raise ValueError(f"val_batches must be a positive integer, got {val_batches!r}")
        if source.length is not None and val_batches > source.length:
            raise ValueError(f"val_batches={val_batches} but val_loader has only {source.length} batches")
        self.val_source, self.val_batches = source, val_batches

    def _sweep_optimizer(self, optimizer: Any) -> tuple[Any, bool]:
        """The optimizer to sweep, and whether it is the user's own (its state is then restored)."""
        if optimizer is None:
            optimizer = self.model.optimizer
        elif isinstance(optimizer, (str, dict)):
            return keras.optimizers.get(optimizer), False
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise TypeError(
                f"optimizer must be a Keras optimizer or its name (e.g. 'adam'), got "
                f"{type(optimizer).__module__}.{type(optimizer).__qualname__}"
            )
        if optimizer.built:
            return optimizer, True
        return _copy_optimizer(optimizer), False

    def _loss_holder(self, criterion: Any) -> keras.Model:
        if isinstance(criterion, str):
            keras.losses.get(criterion)  # an unknown name fails here, not in the first step
        holder = _LossHolder(self.model)
        if hasattr(self.model, "output_names"):  # lets a dict of losses name the model's outputs
            holder.output_names = list(self.model.output_names)
        holder.compile(optimizer=self.optimizer, loss=criterion, jit_compile="auto", auto_scale_loss=False)
        return holder

    # -- the Trainer protocol -------------------------------------------------------------------

    def snapshot(self) -> None:
        """Build what is missing, copy all state to host memory, set an LR schedule aside."""
        model = self.model
        with self._ops.scope(model):
            if not model.built or not model.variables:
                if getattr(self.source, "one_shot", False):
                    raise ValueError(
                        f"the model {model.name!r} has no weights yet and data is a one-shot iterator: "
                        "build the model first (give it an Input, or call it on a batch)"
                    )
                self._ops.build_model(model, self.source.peek()[0])
            trainable = model.trainable_variables
            if not trainable:
                raise ValueError(f"the model {model.name!r} has no trainable weights: nothing to sweep")
            if not self.optimizer.built:  # a fresh copy: not the user's object
                self.optimizer.build(trainable)
            # a fresh copy is restored too: every confirm probe must start from the same moments
            optimizer_variables = list(self.optimizer.variables)
            self._variables = _unique([*model.variables, *model.metrics_variables, *optimizer_variables])
            self._saved = [np.array(v.numpy(), copy=True) for v in self._variables]

            inner = getattr(self.optimizer, "inner_optimizer", self.optimizer)  # a LossScaleOptimizer
            current = inner._learning_rate  # Keras keeps a schedule here; there is no public getter
            if isinstance(current, keras.Variable):
                lr_variable = current
            else:
                lr_variable = keras.Variable(
                    0.0, dtype=keras.backend.floatx(), trainable=False, name="lrfinder_learning_rate"
                )
            self.source.start()  # a fresh pass (and, for shuffled arrays, a fresh order)
            self._steps = self._ops.make_steps(
                model, self._compute_loss, self.optimizer, lr_variable, self.jit_compile, self.block_steps
            )
            if lr_variable is not current:
                # Last, so that a failure above leaves nothing to undo. The public setter takes a
                # callable; the same schedule object goes back in restore().
                self.optimizer.learning_rate = lambda: lr_variable
                self._set_aside = current
                self.info["schedule_set_aside"] = True
                self.info["schedule"] = type(current).__name__

    def step(self, lr: float) -> Any:
        """Queue (or run) one training step at ``lr``; in validation mode, run it and evaluate."""
        if self._steps is None:
            raise RuntimeError("KerasTrainer.step() before snapshot()")
        handle = self._steps.train(self.source.next_batch(), lr)
        if self.val_source is not None:  # block_steps is 1: the update has run
            return self.validation_loss()
        return handle

    def validation_loss(self) -> Any:
        """The loss over the validation batches at the model's current state (a lazy scalar)."""
        if self._steps is None or self.val_source is None or self.val_batches is None:
            raise RuntimeError("KerasTrainer.validation_loss() needs val_loader= and snapshot()")
        return self._steps.evaluate(self.val_source.first_batches(self.val_batches))

    def fetch_losses(self, losses: Sequence[Any]) -> list[float]:
        """Read back the values :meth:`step` returned: batch losses, once per block."""
        if self.val_source is not None:
            return [float(keras.ops.convert_to_numpy(loss)) for loss in losses]
        if self._steps is None:
            raise RuntimeError("KerasTrainer.fetch_losses() after restore()")
        return self._steps.losses(losses)

    def evaluate(self, data: Any) -> float:
        """Mean loss over every batch of ``data`` (same forms as ``val_loader``), in inference mode,
        weighted by batch size as ``Model.evaluate`` does. Between snapshot() and restore() only."""
        if self._steps is None:
            raise RuntimeError("KerasTrainer.evaluate() before snapshot()")
        key = id(data)
        if self._eval_source is None or self._eval_source[0] != key:
            source = make_source(data, self._batch_size if is_arrays(data) else None, "confirm_data")
            if getattr(source, "one_shot", False) or source.length is None:
                raise TypeError(
                    "confirm_data scores every probe on the same batches, so it must be re-iterable with "
                    "a known length: a finite tf.data.Dataset, (x, y) arrays, a PyDataset or a list of "
                    "batches"
                )
            self._eval_source = (key, source)
        source = self._eval_source[1]
        assert source.length is not None
        return float(keras.ops.convert_to_numpy(self._steps.evaluate(source.first_batches(source.length))))

    def restore(self) -> None:
        """Put the schedule and every saved value back, and drop the compiled steps."""
        try:
            if self._set_aside is not _NOTHING:
                self.optimizer.learning_rate = self._set_aside
                self._set_aside = _NOTHING
        finally:
            with self._ops.scope(self.model):
                for variable, value in zip(self._variables, self._saved, strict=True):
                    variable.assign(value)
            if self._steps is not None:
                self._steps.release()
            self._variables, self._saved, self._steps = [], [], None

    @property
    def traces(self) -> int:
        """Times the training function was traced so far (TensorFlow, JAX; 0 on torch, which runs eagerly)."""
        return 0 if self._steps is None else self._steps.traces

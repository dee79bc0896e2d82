"""The protocols between the sweep engine, the trainers and the framework backends.

A trainer owns everything framework-specific: the model, the optimizer, the data, devices, mixed
precision, distributed reduction. The engine only asks it to save state, run one step at a given
learning rate, read losses back as floats, and put the state back (:class:`Trainer`). Confirm mode
also asks it to score the state on held-out data (:meth:`Trainer.evaluate`).

A backend is the module that makes trainers for one framework's models (:class:`TrainerBackend`):
:func:`lrfinder.trainers.make_trainer` asks each backend whose framework is imported whether it
accepts the model, and the first that does makes the trainer.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

__all__ = ["Trainer", "TrainerBackend", "TrainerBase", "check_options"]


@runtime_checkable
class Trainer(Protocol):
    """What :func:`lrfinder.sweep.run_sweep` drives.

    Attributes:
        backend: Short name shown in the result and the plot title (``"torch"``, ``"keras"``...).
        sync_every: How many steps the engine may run before it reads losses back with
            :meth:`fetch_losses`. 1 for host-side losses; larger on accelerators, where reading a
            loss forces the host to wait for the device.
        is_main_process: False on every rank but the first of a distributed run, so that only one
            process shows progress and writes files.
        info: Facts worth keeping in the result (optimizer chosen, loss inferred, ...).

    A distributed trainer (one process per rank) may add ``world_size``, ``interrupt_flag``,
    ``finish()`` and ``abort(interrupted)`` so that every rank stops at the same step when one
    fails or is interrupted; see :func:`lrfinder.sweep.run_sweep` and
    ``lrfinder.trainers.torch_trainer``.

    Optional: ``lookahead`` (int, default 0), the batches a trainer draws from its data ahead of
    the steps it runs in each pass, which confirm mode counts against its budget; and
    ``cycles_momentum`` (bool, default False) with ``set_momentum(momentum)``, which confirm mode's
    one-cycle probes call before each step to cycle the momentum as ``OneCycleLR`` does.
    """

    backend: str
    sync_every: int
    is_main_process: bool
    info: dict[str, Any]

    def snapshot(self) -> None:
        """Save every piece of state that :meth:`step` may change."""

    def step(self, lr: float) -> Any:
        """Run one optimisation step at ``lr`` and return that step's loss.

        The loss may stay lazy (a device tensor); :meth:`fetch_losses` turns it into a float.
        """

    def fetch_losses(self, losses: Sequence[Any]) -> list[float]:
        """Convert the losses returned by :meth:`step` to Python floats, in order."""

    def restore(self) -> None:
        """Put back the state saved by :meth:`snapshot` and free what the snapshot held."""

    def evaluate(self, data: Any) -> float:
        """The mean loss on ``data`` at the current state, without training (eval mode, no grad).

        Used by confirm mode only (:mod:`lrfinder.confirm`), between :meth:`snapshot` and
        :meth:`restore`, to score a probe; a trainer without it cannot confirm. What ``data``
        is belongs to the trainer (validation batches for PyTorch and Keras, an
        ``evaluate() -> loss`` callable for a step function).
        """


@runtime_checkable
class TrainerBackend(Protocol):
    """A trainer module for one framework, such as :mod:`lrfinder.trainers.torch_trainer`.

    The module is imported only once its framework is in ``sys.modules``, so it may import the
    framework at top level. Adding a framework means writing one such module, listing it in
    :data:`lrfinder.trainers.BACKENDS`, and adding its cases to the shared contract tests.

    Attributes:
        OPTIONS: The ``find_lr`` options :func:`make` takes (each a ``find_lr`` keyword); any
            other option is a ``TypeError`` (see :func:`check_options`).
    """

    OPTIONS: frozenset[str]

    def accepts(self, model: Any) -> bool:
        """Whether ``model`` is one of this framework's models (cheap: no side effect)."""

    def make(self, model: Any, data: Any, **options: Any) -> Trainer:
        """A trainer for ``model`` fed by ``data``; ``options`` are find_lr's non-None options.

        Raises:
            TypeError: An option outside :attr:`OPTIONS`, or data of a kind it cannot read.
            ValueError: An option's value is out of range.
        """


class TrainerBase:
    """Convenient defaults for a :class:`Trainer`: host-side losses, single process."""

    backend: str = "custom"
    sync_every: int = 1
    is_main_process: bool = True
    #: Batches drawn from the data ahead of the steps run, per pass (confirm mode budgets for them).
    lookahead: int = 0

    def __init__(self) -> None:
        self.info: dict[str, Any] = {}

    def fetch_losses(self, losses: Sequence[Any]) -> list[float]:
        return [float(loss) for loss in losses]


def check_options(
    kind: str, options: Mapping[str, Any], accepted: Collection[str], hints: Mapping[str, str]
) -> None:
    """Raise ``TypeError`` naming every option in ``options`` that a ``kind`` trainer does not take.

    Args:
        kind: What the options were given for, as the message says it ("a PyTorch model").
        options: The options find_lr passed on.
        accepted: The option names this trainer takes.
        hints: Why an option does not apply here, or what to do instead, by option name.
    """
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        reasons = "; ".join(f"{name}: {hints.get(name, 'not a find_lr option')}" for name in unknown)
        raise TypeError(
            f"option(s) {', '.join(unknown)} do not apply to {kind} ({reasons}); "
            f"it takes {', '.join(sorted(accepted)) or 'none'}"
        )


@runtime_checkable
class KerasSteps(Protocol):
    """The training and evaluation steps a Keras step module builds for one sweep.

    Steps may run ahead of the host in blocks: :meth:`train` queues a step and returns a handle,
    a full block (``block_steps`` queued steps) runs in one compiled call, and :meth:`losses` runs
    what is still queued and reads the losses back, once per block.

    Attributes:
        block_steps: Steps given before the losses are read back together; a backend that
            compiles may run them as one call (1: each step runs and is read on its own).
    """

    block_steps: int

    @property
    def traces(self) -> int:
        """Times the compiled training function was traced so far."""

    def train(self, batch: Any, lr: float) -> Any:
        """Queue one optimisation step on ``batch`` at ``lr``; a handle for :meth:`losses`.

        The step, and the steps queued before it, run when the block is full or when
        :meth:`losses` asks for them.
        """

    def losses(self, handles: Sequence[Any]) -> list[float]:
        """Each handle's batch loss (before its update), as floats, in order."""

    def evaluate(self, batches: Any) -> Any:
        """Mean loss over ``batches`` in inference mode, weighted by batch size; read with float()."""

    def release(self) -> None:
        """Free what the steps hold (gradients, compiled functions) after the sweep."""


@runtime_checkable
class KerasStepModule(Protocol):
    """What a Keras backend module (``lrfinder.trainers._keras_<backend>``) provides.

    The Keras trainer imports the module named for ``keras.backend.backend()`` and uses only
    these names, so adding a backend means writing one module that satisfies this protocol.

    Attributes:
        HONOURS_JIT_COMPILE: Whether the steps follow the model's ``jit_compile`` (XLA on
            TensorFlow, ``jax.jit`` on JAX); False where steps always run eagerly (torch).
    """

    HONOURS_JIT_COMPILE: bool

    def uses_accelerator(self, model: Any) -> bool:
        """Whether the model runs on a GPU or another non-CPU device."""

    def is_distributed(self, model: Any) -> bool:
        """Whether the model runs under a distribution strategy other than the default one."""

    def scope(self, model: Any) -> AbstractContextManager[Any]:
        """The context in which optimizer copies and new variables for ``model`` are created."""

    def build_model(self, model: Any, x: Any) -> None:
        """Create the weights of a model never called, from inputs ``x`` (no state changes)."""

    def make_steps(
        self,
        model: Any,
        compute_loss: Any,
        optimizer: Any,
        lr_variable: Any,
        jit_compile: bool,
        block_steps: int,
    ) -> KerasSteps:
        """The steps for one sweep.

        Args:
            model: The Keras model; its variables are trained in place.
            compute_loss: ``compute_loss(x, y, y_pred, sample_weight, training)``, the loss.
            optimizer: A built Keras optimizer whose learning rate reads ``lr_variable``.
            lr_variable: The Keras variable the optimizer reads its learning rate from.
            jit_compile: Compile the steps (where the module honours it).
            block_steps: Steps to run in one call (1: one step per call).
        """

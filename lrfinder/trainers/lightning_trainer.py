"""The Lightning trainer: a ``LightningModule`` trained through its own ``training_step``.

A LightningModule is a ``torch.nn.Module``, but its loss comes from ``training_step`` and its
optimizer from ``configure_optimizers``, not from ``forward``: sweeping it as a plain module would
measure another loss with another optimizer. This trainer runs the module's own step with no
Lightning ``Trainer`` and reuses the PyTorch trainer for everything else (accumulation, mixed
precision, clipping, distributed averaging, the bit-exact snapshot).

Considered only when ``lightning`` (or the older ``pytorch_lightning``) is already imported.
"""

from __future__ import annotations

import inspect
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from lrfinder.trainers._torch_batches import scalar
from lrfinder.trainers.base import check_options
from lrfinder.trainers.torch_trainer import OPTIONS as TORCH_OPTIONS
from lrfinder.trainers.torch_trainer import TorchTrainer

__all__ = ["OPTIONS", "LightningTrainer", "accepts", "make", "parse_optimizers"]

#: Packages that define LightningModule, newest first.
PACKAGES = ("lightning.pytorch", "pytorch_lightning")

#: Options make() takes: the torch trainer's, less the two that training_step replaces.
OPTIONS: frozenset[str] = frozenset(TORCH_OPTIONS - {"criterion", "batch_fn"})

_NOT_HERE = {
    "criterion": "the module's training_step computes the loss",
    "batch_fn": "the module's training_step reads the batch as it comes",
    "batch_size": "the DataLoader sets the batch size",
    "snapshot": "it is for step functions; the module's state is saved automatically",
    "restore": "it is for step functions; the module's state is restored automatically",
}

#: How many batches in a row training_step may skip (return None) before the sweep gives up.
MAX_SKIPPED = 100


def _lightning(kind: str) -> tuple[type, ...]:
    """The class ``kind`` of every Lightning package already imported."""
    return tuple(getattr(sys.modules[name], kind) for name in PACKAGES if name in sys.modules)


def accepts(model: Any) -> bool:
    """Whether ``model`` is a ``LightningModule``."""
    return isinstance(model, _lightning("LightningModule"))


def make(model: Any, data: Any, **options: Any) -> LightningTrainer:
    """A :class:`LightningTrainer` for ``model``; ``data`` a DataLoader, a datamodule or None.

    Raises:
        TypeError: An option that does not apply, manual optimization, or an optimizer
            configuration lrfinder cannot sweep.
    """
    check_options("a LightningModule", options, OPTIONS, _NOT_HERE)
    if not getattr(model, "automatic_optimization", True):
        raise TypeError(
            f"{type(model).__qualname__} uses manual optimization (automatic_optimization=False): its "
            "training_step steps its optimizers itself, so lrfinder cannot set the LR of each step; "
            "write a step(lr) -> loss function that runs one training step at lr and pass that instead"
        )
    data = train_loader(model, data)
    if options.get("optimizer") is None:
        options["optimizer"], options["schedulers"] = configured_optimizer(model)
    return LightningTrainer(model, data, **options)


def train_loader(module: Any, data: Any) -> Any:
    """The training batches: ``data`` itself, a datamodule's train loader, or the module's own.

    Raises:
        TypeError: There is no data and the module defines no ``train_dataloader``.
    """
    if isinstance(data, _lightning("LightningDataModule")):
        datamodule: Any = data
        datamodule.prepare_data()
        datamodule.setup("fit")
        return datamodule.train_dataloader()
    if data is not None:
        return data
    try:
        return module.train_dataloader()
    except Exception as error:  # Lightning's default raises MisconfigurationException
        raise TypeError(
            f"find_lr(module, data): give the training batches, a DataLoader or a LightningDataModule; "
            f"{type(module).__qualname__}.train_dataloader() gave none ({error})"
        ) from error


def configured_optimizer(module: Any) -> tuple[torch.optim.Optimizer, list[Any]]:
    """The optimizer and LR schedulers that ``module.configure_optimizers()`` returns.

    Raises:
        TypeError: It raised (often because it reads ``self.trainer``, which a bare module lacks),
            returned nothing, or returned more than one optimizer.
    """
    name = type(module).__qualname__
    try:
        returned = module.configure_optimizers()
    except Exception as error:
        raise TypeError(
            f"{name}.configure_optimizers() raised {type(error).__name__}: {error}. If it needs a "
            "Lightning Trainer (self.trainer...), use lrfinder.lightning.LRFinderCallback in "
            "Trainer(callbacks=[...]), or pass optimizer= to find_lr"
        ) from error
    optimizers, schedulers = parse_optimizers(returned, name)
    if len(optimizers) != 1:
        raise TypeError(
            f"{name}.configure_optimizers() returned {len(optimizers)} optimizers; Lightning's automatic "
            "optimization trains with one, and so does the range test: pass optimizer= to choose it"
        )
    return optimizers[0], schedulers


def parse_optimizers(returned: Any, name: str = "the module") -> tuple[list[Any], list[Any]]:
    """``(optimizers, schedulers)`` from any form ``configure_optimizers`` may return.

    The forms are: an optimizer; a list or tuple of optimizers; ``([optimizers], [schedulers])``
    (the second may be one scheduler); a dict with ``"optimizer"`` and an optional
    ``"lr_scheduler"``, itself a scheduler or a dict with ``"scheduler"``; a list of such dicts.

    Raises:
        TypeError: ``returned`` is None or of none of those forms.
    """

    def scheduler_of(entry: Any) -> Any:
        return entry["scheduler"] if isinstance(entry, Mapping) else entry

    def from_dict(conf: Mapping[str, Any]) -> tuple[Any, list[Any]]:
        if "optimizer" not in conf:
            raise TypeError(
                f"{name}.configure_optimizers() returned a dict without 'optimizer' "
                f"(keys {sorted(map(str, conf))})"
            )
        scheduler = conf.get("lr_scheduler")
        return conf["optimizer"], [] if scheduler is None else [scheduler_of(scheduler)]

    if _is_optimizer(returned):
        return [returned], []
    if isinstance(returned, Mapping):
        optimizer, schedulers = from_dict(returned)
        return [optimizer], schedulers
    if isinstance(returned, (list, tuple)) and returned:
        if (
            len(returned) == 2
            and isinstance(returned[0], (list, tuple))
            and all(_is_optimizer(o) for o in returned[0])
        ):
            second = returned[1]
            entries = list(second) if isinstance(second, (list, tuple)) else [second]
            return list(returned[0]), [scheduler_of(s) for s in entries]
        if all(_is_optimizer(o) for o in returned):
            return list(returned), []
        if all(isinstance(d, Mapping) for d in returned):
            pairs = [from_dict(d) for d in returned]
            return [o for o, _ in pairs], [s for _, ss in pairs for s in ss]
    raise TypeError(
        f"{name}.configure_optimizers() returned {type(returned).__qualname__} "
        f"{'(nothing)' if returned is None else ''}, not an optimizer, a list of them, "
        "([optimizers], [schedulers]) or a dict with 'optimizer'; return one, or pass optimizer= to find_lr"
    )


def _is_optimizer(value: Any) -> bool:
    return all(hasattr(value, name) for name in ("param_groups", "step", "zero_grad", "state_dict"))


class LightningTrainer(TorchTrainer):
    """Trains a ``LightningModule`` through its ``training_step`` at each LR of the ladder.

    Each batch goes through the module's batch hooks (``on_before_batch_transfer``,
    ``transfer_batch_to_device``, ``on_after_batch_transfer``) and then ``training_step(batch,
    batch_idx)``, whose loss is taken in every form Lightning accepts: a tensor, a dict with
    ``"loss"``, or None, which skips the batch (the next one is drawn). With ``val_loader``,
    ``validation_step`` must return the loss the same way. ``self.log`` calls are ignored during
    the sweep. The optimizer (``configure_optimizers()``'s unless ``optimizer`` is given) is
    swept as the PyTorch trainer sweeps one; LR schedulers are never stepped and their state is put
    back with everything else.

    Args:
        module: The LightningModule.
        data: Training batches (a DataLoader or any re-iterable).
        schedulers: The LR schedulers ``configure_optimizers`` returned, restored after.
        training_step: Called as ``training_step(batch, batch_idx)`` instead of the module's own
            (the callback passes the Lightning strategy's, which runs it under the Trainer's
            precision and through a distributed wrapper).
        **options: As for :class:`~lrfinder.trainers.torch_trainer.TorchTrainer`.
    """

    backend = "lightning"

    def __init__(
        self,
        module: Any,
        data: Any,
        *,
        schedulers: Iterable[Any] = (),
        training_step: Callable[..., Any] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(module, data, **options)
        self.module = module
        self.schedulers = [s for s in schedulers if hasattr(s, "state_dict")]
        self._training_step = training_step if training_step is not None else module.training_step
        self._takes_index = _takes_batch_idx(module.training_step)
        self._scoring = False  # True while evaluate() scores a confirm probe
        self._batch_idx = 0
        self._saved_schedulers: list[dict[str, Any]] = []
        self._muted: warnings.catch_warnings[Any] | None = None
        self.info["criterion"] = f"{type(module).__qualname__}.training_step"
        if self.schedulers:
            self.info["schedulers"] = "set aside, restored after: " + ", ".join(
                type(s).__qualname__ for s in self.schedulers
            )

    def snapshot(self) -> None:
        super().snapshot()
        self._saved_schedulers = [s.state_dict() for s in self.schedulers]
        self._batch_idx = 0
        # self.log needs a Trainer's loop (or warns without one): mute it for the sweep
        for name in ("log", "log_dict"):
            setattr(self.module, name, _ignore)
        # and its warnings, once for the whole sweep: restore() puts the user's filters back
        self._unmute()
        self._muted = warnings.catch_warnings()
        self._muted.__enter__()
        warnings.filterwarnings("ignore", message=".*self.log.*")

    def restore(self) -> None:
        try:
            super().restore()
        finally:
            self._unmute()
            for name in ("log", "log_dict"):
                self.module.__dict__.pop(name, None)
            for scheduler, state in zip(self.schedulers, self._saved_schedulers, strict=False):
                scheduler.load_state_dict(state)
            self._saved_schedulers = []

    def _unmute(self) -> None:
        """Put back the warning filters that :meth:`snapshot` found."""
        muted, self._muted = self._muted, None
        if muted is not None:
            muted.__exit__(None, None, None)

    def _batch_loss(self, batch: Any) -> torch.Tensor:
        validating = not self.module.training
        for _ in range(MAX_SKIPPED):
            batch = self._transfer(batch)
            if validating:
                output = self.module.validation_step(batch, 0)
            else:
                output = self._call_training_step(batch, self._batch_idx)
            self._batch_idx += 1
            loss = _step_loss(output, "validation_step" if validating else "training_step")
            if loss is None and validating and self._scoring:
                # the usual validation_step logs and returns nothing: score a confirm probe on
                # training_step's loss over the held-out batch (still eval mode, no gradients)
                loss = _step_loss(self._call_training_step(batch, 0), "training_step")
            if loss is not None:
                return scalar(loss)
            if validating:
                raise ValueError(
                    "validation_step returned None: with val_loader=, lrfinder reads the loss that "
                    "validation_step returns; return it (a tensor or {'loss': ...}), or leave val_loader out"
                )
            batch = self._next_batch()
        raise ValueError(
            f"training_step returned None (skip the batch) for {MAX_SKIPPED} batches in a "
            "row: the range test has no loss to record"
        )

    def _call_training_step(self, batch: Any, batch_idx: int) -> Any:
        """``training_step(batch, batch_idx)``, or ``training_step(batch)`` where it takes no index."""
        return self._training_step(batch, batch_idx) if self._takes_index else self._training_step(batch)

    def evaluate(self, data: Any) -> float:
        """Mean loss over ``data`` (confirm mode's probe score): ``validation_step``'s loss, or
        ``training_step``'s in eval mode without gradients where ``validation_step`` returns None."""
        self._scoring = True
        try:
            return super().evaluate(data)
        finally:
            self._scoring = False

    def _transfer(self, batch: Any) -> Any:
        module = self.module
        batch = module.on_before_batch_transfer(batch, 0)
        batch = module.transfer_batch_to_device(batch, self.device, 0)
        return module.on_after_batch_transfer(batch, 0)


def _step_loss(output: Any, hook: str) -> torch.Tensor | None:
    """The loss in what a Lightning step returned: a tensor, ``{"loss": tensor}`` or None."""
    if output is None or isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping) and isinstance(output.get("loss"), torch.Tensor):
        return output["loss"]
    raise TypeError(
        f"{hook} returned {type(output).__qualname__}"
        f"{' with keys ' + str(sorted(map(str, output))) if isinstance(output, Mapping) else ''}; "
        "Lightning (and lrfinder) take a loss tensor, a dict with 'loss', or None to skip the batch"
    )


def _takes_batch_idx(step: Callable[..., Any]) -> bool:
    """Whether ``step`` accepts a second positional argument (``batch_idx``)."""
    try:
        parameters = list(inspect.signature(step).parameters.values())
    except (TypeError, ValueError):
        return True
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return True
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2


def _ignore(*args: Any, **kwargs: Any) -> None:
    """Stands in for ``LightningModule.log`` during the sweep."""

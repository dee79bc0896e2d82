"""A Lightning ``Callback`` that runs lrfinder's range test at the start of ``fit`` and sets the LR.

It plays the role of Lightning's own ``LearningRateFinder`` callback with lrfinder's engine,
suggestion rules, diagnostics and bit-exact restore::

    from lrfinder.lightning import LRFinderCallback

    finder = LRFinderCallback(num_iter=100)
    trainer = lightning.pytorch.Trainer(callbacks=[finder], max_epochs=5)
    trainer.fit(module, datamodule)
    finder.result.suggestion     # the LR the fit went on with; finder.result.plot() ...

Importing this module imports Lightning (``lightning``, else ``pytorch_lightning``); ``import
lrfinder`` does not import it.
"""

from __future__ import annotations

import inspect
import warnings
from typing import TYPE_CHECKING, Any

try:
    from lightning.pytorch import Callback
    from lightning.pytorch.utilities.parsing import lightning_hasattr, lightning_setattr
except ImportError:  # the older package name
    from pytorch_lightning import Callback  # type: ignore[assignment]
    from pytorch_lightning.utilities.parsing import (  # type: ignore[assignment]
        lightning_hasattr,
        lightning_setattr,
    )

from lrfinder.api import find_lr
from lrfinder.result import LRFinderResult
from lrfinder.trainers.lightning_trainer import LightningTrainer

if TYPE_CHECKING:
    import torch

__all__ = ["LRFinderCallback", "scale_lr"]

#: find_lr options that describe the data and model; the callback takes these from the Trainer.
_FROM_TRAINER = (
    "model",
    "data",
    "optimizer",
    "criterion",
    "loss",
    "device",
    "batch_fn",
    "batch_size",
    "snapshot",
    "restore",
    "set_lr",
    "accumulation_steps",
    "amp",
    "grad_clip",
)
#: find_lr options that go to the trainer rather than to the sweep.
_TRAINER_OPTIONS = ("val_loader", "val_batches", "snapshot_dir")
#: Names Lightning's own LR finder looks for on the module (and its hparams) to store the LR.
_LR_ATTRIBUTES = ("lr", "learning_rate")


class LRFinderCallback(Callback):
    """Runs :func:`lrfinder.find_lr` on the module at ``on_fit_start`` and trains on at its suggestion.

    The range test uses what the fit will use: the optimizer and schedulers that the Trainer built
    from ``configure_optimizers``, the training DataLoader of the fit (its datamodule's, the one
    given to ``fit``, or the module's ``train_dataloader()``), ``training_step`` run through the
    Trainer's strategy (its precision, its distributed wrapper), ``accumulate_grad_batches`` and
    norm gradient clipping. Afterwards everything is restored bit for bit, and when there is a
    suggestion it becomes the LR: the module's ``lr`` or ``learning_rate`` (or ``attr_name``),
    also in ``hparams``, when it has one, and the optimizer's param groups and the schedulers'
    base LRs, scaled together (see :func:`scale_lr`). Without a suggestion the LR is left as it
    was and a warning says why.

    Args:
        update_attr: Set the LR; False only records :attr:`result`.
        attr_name: The module attribute holding the LR, when not ``lr`` or ``learning_rate``.
        **find_lr_options: Any option of :func:`lrfinder.find_lr` that is not about the model or
            the data: ``start_lr``, ``end_lr``, ``num_iter``, ``rule``, ``val_loader``,
            ``schedule``, ``train_steps``, ``confirm``, ... With ``schedule`` or ``confirm`` and no
            ``train_steps``, the plan is as long as the fit (``trainer.estimated_stepping_batches``);
            with ``confirm`` and no ``confirm_data``, the probes are scored on ``val_loader``, else
            on the fit's validation DataLoader.

    Attributes:
        result: The :class:`~lrfinder.result.LRFinderResult` of the last range test, or None.
    """

    def __init__(self, *, update_attr: bool = True, attr_name: str = "", **find_lr_options: Any) -> None:
        known = set(inspect.signature(find_lr).parameters)
        taken = sorted(set(find_lr_options) & set(_FROM_TRAINER))
        if taken:
            raise TypeError(
                f"LRFinderCallback takes {', '.join(taken)} from the Lightning Trainer and the module "
                "(configure_optimizers, training_step, the fit's data, precision, accumulate_grad_batches, "
                "gradient_clip_val); leave them out"
            )
        unknown = sorted(set(find_lr_options) - known)
        if unknown:
            raise TypeError(
                f"LRFinderCallback: {', '.join(unknown)} is not an option of find_lr; it "
                f"takes {', '.join(sorted(known - set(_FROM_TRAINER)))}"
            )
        self.update_attr = update_attr
        self.attr_name = attr_name
        self.options = dict(find_lr_options)
        self.result: LRFinderResult | None = None

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self.lr_find(trainer, pl_module)

    def lr_find(self, trainer: Any, pl_module: Any) -> LRFinderResult | None:
        """Run the range test with ``trainer``'s set-up and apply the suggestion; see the class."""
        if getattr(trainer, "fast_dev_run", False):
            warnings.warn("lrfinder: no range test under fast_dev_run", RuntimeWarning, stacklevel=2)
            return None
        if not pl_module.automatic_optimization:
            raise TypeError(
                f"LRFinderCallback: {type(pl_module).__qualname__} uses manual optimization, whose "
                "training_step steps the optimizers itself; lrfinder cannot set the LR of each step"
            )
        optimizers = list(trainer.optimizers)
        if len(optimizers) != 1:
            raise TypeError(
                f"LRFinderCallback: the range test sweeps one optimizer; the Trainer has {len(optimizers)}"
            )
        attr = self._lr_attribute(pl_module) if self.update_attr else None
        trainer_options = {k: self.options[k] for k in _TRAINER_OPTIONS if k in self.options}
        sweep_options = _fit_plan(trainer, pl_module, self.options)
        sweep_options = {k: v for k, v in sweep_options.items() if k not in _TRAINER_OPTIONS}
        schedulers = [config.scheduler for config in trainer.lr_scheduler_configs]
        runner = LightningTrainer(
            pl_module,
            _fit_loader(trainer, pl_module),
            optimizer=optimizers[0],
            schedulers=schedulers,
            training_step=trainer.strategy.training_step,
            **_precision_options(trainer),
            **trainer_options,
        )
        runner.is_main_process = bool(trainer.is_global_zero)
        self.result = result = find_lr(runner, **sweep_options)
        if self.update_attr and result.suggestion is not None:
            if attr is not None:
                lightning_setattr(pl_module, attr, result.suggestion)
            scale_lr(optimizers[0], schedulers, result.suggestion)
        elif self.update_attr:
            warnings.warn(
                f"lrfinder: no suggestion ({result.suggestion_reason}); the LR was left unchanged",
                RuntimeWarning,
                stacklevel=2,
            )
        return result

    def _lr_attribute(self, pl_module: Any) -> str | None:
        if self.attr_name:
            if not lightning_hasattr(pl_module, self.attr_name):
                raise AttributeError(
                    f"LRFinderCallback(attr_name={self.attr_name!r}): the module has no "
                    "such attribute, nor its hparams"
                )
            return self.attr_name
        return next((name for name in _LR_ATTRIBUTES if lightning_hasattr(pl_module, name)), None)


def scale_lr(optimizer: torch.optim.Optimizer, schedulers: list[Any], lr: float) -> float:
    """Make ``lr`` the optimizer's LR, keeping every ratio; return the factor applied.

    The reference LR is param group 0's peak where a cyclic scheduler keeps one (``max_lr``:
    ``OneCycleLR``, ``CyclicLR``), else its base LR before any scheduler (``initial_lr``), else its
    ``lr``. Every group's ``lr``, ``initial_lr``, ``max_lr`` and ``min_lr`` and every scheduler's
    ``base_lrs`` are multiplied by ``lr / reference``, so schedulers go on from the new LR.

    Raises:
        ValueError: The reference LR is not positive, so no factor maps it to ``lr``.
    """
    first = optimizer.param_groups[0]
    reference = next(float(first[key]) for key in ("max_lr", "initial_lr", "lr") if key in first)
    if not reference > 0:
        raise ValueError(f"cannot scale the optimizer's LR to {lr:g}: its reference LR is {reference:g}")
    factor = lr / reference
    for group in optimizer.param_groups:
        for key in ("lr", "initial_lr", "max_lr", "min_lr"):
            value = group.get(key)
            if isinstance(value, (int, float)):
                group[key] = value * factor
            elif value is not None and hasattr(value, "mul_"):  # a tensor LR stays the same tensor
                value.mul_(factor)
    for scheduler in schedulers:
        base = getattr(scheduler, "base_lrs", None)
        if isinstance(base, list):
            scheduler.base_lrs = [value * factor for value in base]
    return factor


def _fit_plan(trainer: Any, module: Any, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with what the fit tells about the plan filled in where the user left it out.

    With ``schedule`` or ``confirm`` and no ``train_steps``: the fit's optimizer steps
    (``trainer.estimated_stepping_batches``, when finite). With ``confirm`` and no
    ``confirm_data``: the callback's ``val_loader``, else the fit's validation DataLoader (when it
    has exactly one).
    """
    options = dict(options)
    confirm = options.get("confirm", False) is not False
    if (confirm or options.get("schedule") is not None) and options.get("train_steps") is None:
        steps = trainer.estimated_stepping_batches
        finite = isinstance(steps, int) or (isinstance(steps, float) and steps.is_integer())
        if finite and steps > 0:  # inf when the fit has neither max_steps nor max_epochs
            options["train_steps"] = int(steps)
    if confirm and options.get("confirm_data") is None:
        held_out = options.get("val_loader")
        if held_out is None:
            held_out = _fit_val_loader(trainer, module)
        if held_out is not None:
            options["confirm_data"] = held_out
    return options


def _fit_val_loader(trainer: Any, module: Any) -> Any:
    """The validation DataLoader of the fit that is starting, or None (none, or several)."""
    datamodule = getattr(trainer, "datamodule", None)
    val_loop = getattr(getattr(trainer.fit_loop, "epoch_loop", None), "val_loop", None)
    source = getattr(val_loop, "_data_source", None)  # what fit() was given
    if datamodule is not None:
        loaders = datamodule.val_dataloader() if _overrides(datamodule, "val_dataloader") else None
    elif source is not None and source.instance is not None and source.is_defined():
        loaders = source.dataloader()
    else:
        loaders = module.val_dataloader() if _overrides(module, "val_dataloader") else None
    if isinstance(loaders, (list, tuple)):
        loaders = loaders[0] if len(loaders) == 1 else None
    return loaders


def _overrides(owner: Any, name: str) -> bool:
    """Whether ``owner``'s class defines ``name`` itself rather than inheriting Lightning's stub."""
    try:
        from lightning.pytorch.utilities.model_helpers import is_overridden
    except ImportError:  # the older package name
        from pytorch_lightning.utilities.model_helpers import is_overridden  # type: ignore[no-redef,unused-ignore]
    return bool(is_overridden(name, owner))


def _fit_loader(trainer: Any, module: Any) -> Any:
    """The training DataLoader of the fit that is starting (Lightning sets its own up only later)."""
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is not None:
        return datamodule.train_dataloader()
    source = getattr(trainer.fit_loop, "_data_source", None)  # what fit() was given
    if source is not None and source.is_defined():
        return source.dataloader()
    return module.train_dataloader()


def _precision_options(trainer: Any) -> dict[str, Any]:
    """Accumulation, fp16 loss scaling and norm clipping as the Trainer is set up for them."""
    options: dict[str, Any] = {"accumulation_steps": int(trainer.accumulate_grad_batches)}
    if str(trainer.precision) in ("16-mixed", "16"):
        options["amp"] = "fp16"  # the strategy autocasts; the gradients need a scaler as in fit
    clip = trainer.gradient_clip_val
    if clip:
        if str(trainer.gradient_clip_algorithm or "norm") == "norm":
            options["grad_clip"] = float(clip)
        else:
            warnings.warn(
                "lrfinder: the range test clips gradients by norm only; it ran without the "
                f"Trainer's gradient_clip_algorithm={trainer.gradient_clip_algorithm!r}",
                RuntimeWarning,
                stacklevel=3,
            )
    return options

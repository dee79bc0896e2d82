"""The library's entry points: ``find_lr`` picks a trainer; ``run_range_test`` runs one and wraps
the outcome in a result."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

from lrfinder.errors import RangeTestInterrupted
from lrfinder.result import LRFinderResult
from lrfinder.suggest import DEFAULT_RULE, get_rule
from lrfinder.sweep import StepCallback, SweepOutcome, SweepSettings, run_sweep
from lrfinder.trainers import Trainer, make_trainer

_DEFAULTS = SweepSettings  # find_lr's sweep defaults are SweepSettings' own


def find_lr(
    model: Any,
    data: Any = None,
    optimizer: Any = None,
    criterion: Any = None,
    *,
    start_lr: float = _DEFAULTS.start_lr,
    end_lr: float = _DEFAULTS.end_lr,
    num_iter: int = _DEFAULTS.num_iter,
    mode: str = _DEFAULTS.mode,
    smooth: float = _DEFAULTS.smooth,
    diverge_threshold: float | None = _DEFAULTS.diverge_threshold,
    diverge_warmup: int = _DEFAULTS.diverge_warmup,
    rule: str = DEFAULT_RULE,
    progress: bool | None = None,
    callback: StepCallback | None = None,
    loss: Any = None,
    val_loader: Any = None,
    val_batches: int | None = None,
    accumulation_steps: int | None = None,
    amp: Any = None,
    grad_clip: float | None = None,
    device: Any = None,
    batch_fn: Callable[[Any], Any] | None = None,
    batch_size: int | None = None,
    shuffle: bool | None = None,
    snapshot_dir: str | os.PathLike[str] | None = None,
    snapshot: Callable[[], Any] | None = None,
    restore: Callable[[Any], None] | None = None,
    set_lr: bool = False,
) -> LRFinderResult:
    """Run the learning-rate range test and return its result.

    Train for ``num_iter`` mini-batches while the LR climbs from ``start_lr`` to ``end_lr``,
    record each batch's loss, stop early when the loss diverges, then put the model, optimizer and
    random states back exactly as they were.

    ``model`` picks the trainer:

    * a ``torch.nn.Module`` with ``data`` a DataLoader (or any iterable of batches);
    * a Lightning ``LightningModule``, trained through its ``training_step`` with the optimizer of
      its ``configure_optimizers``, with ``data`` a DataLoader, a ``LightningDataModule`` or None
      (the module's ``train_dataloader()``);
    * a Hugging Face ``transformers.Trainer`` (no ``data``), with its model, training
      DataLoader, optimizer, ``compute_loss``, accumulation, precision and clipping;
    * a compiled Keras 3 model (TensorFlow, torch or JAX backend) with ``data`` a
      ``tf.data.Dataset``, ``(x, y)`` arrays with ``batch_size``, or a ``keras.utils.PyDataset``;
    * a callable ``step(lr) -> loss`` that runs one training step at ``lr`` and returns the
      batch's loss (any framework), with optional ``snapshot() -> state`` and ``restore(state)``;
    * an object following :class:`lrfinder.trainers.Trainer`.

    Args:
        model: What to train (see above).
        data: Training batches (not for a step function); cycled when it runs out.
        optimizer: Optimizer to sweep (framework trainers); a default is built when None.
        criterion: Loss function (framework trainers); inferred when None where possible.
        start_lr: First LR of the ladder.
        end_lr: Last LR of the ladder.
        num_iter: Steps from ``start_lr`` to ``end_lr``.
        mode: ``"exp"`` (geometric ladder) or ``"linear"``.
        smooth: Weight of the past in the bias-corrected moving average, in [0, 1); 0 turns it off.
        diverge_threshold: Stop when the smoothed loss passes this many times its best; None
            never stops on a rising loss (a non-finite loss always stops the sweep).
        diverge_warmup: Steps before the rising-loss rule may fire.
        rule: Suggestion rule behind ``result.suggestion`` (see :mod:`lrfinder.suggest`).
        progress: Progress bar; None shows one only on a terminal or in a notebook.
        callback: ``callback(step, lr, loss, smoothed)`` after every recorded step.
        loss: Keras spelling of ``criterion`` (give one or the other).
        val_loader: Validation batches; when given, each step records the validation loss.
        val_batches: How many validation batches make one step's validation loss.
        accumulation_steps: Batches accumulated per optimizer step (PyTorch).
        amp: Mixed precision: ``"bf16"``, ``"fp16"`` or a torch dtype (PyTorch).
        grad_clip: Clip the gradient norm to this value before each step (PyTorch).
        device: Device to run on; default: where the model's parameters are (PyTorch).
        batch_fn: ``batch_fn(batch) -> (inputs, targets)`` for batches of another shape (PyTorch).
        batch_size: Batch size when ``data`` is ``(x, y)`` arrays (Keras).
        shuffle: Whether ``(x, y)`` arrays are read in a new random order each pass, as ``fit``
            does (Keras; default True, drawn from a copy of NumPy's global random state, which is
            left as it was); False reads them in order.
        snapshot_dir: Keep the state snapshot in a temporary file in this folder instead of in
            memory, for models larger than RAM (PyTorch).
        snapshot: ``snapshot() -> state`` for a step function.
        restore: ``restore(state)`` for a step function.
        set_lr: Write the suggestion back where training reads its LR: ``trainer.args.learning_rate``
            of a Hugging Face Trainer (left unchanged when there is no suggestion).

    Returns:
        An :class:`~lrfinder.result.LRFinderResult`; ``result.suggestion`` is the suggested LR.

    Raises:
        RangeTestInterrupted: Ctrl-C (or a ``KeyboardInterrupt`` raised by ``callback``) stopped
            the sweep. The state was restored first; the partial result is in the exception's
            ``result`` attribute. It is a ``KeyboardInterrupt``: uncaught, it stops the program.
        OtherRankFailed: In a distributed run, another process failed; every process stops at
            the same step and restores its state.
        TypeError: ``model`` is of no supported kind, or an option does not apply to it.
        ValueError: A setting is out of range (each message says which and why).
    """
    settings = SweepSettings(
        start_lr=start_lr,
        end_lr=end_lr,
        num_iter=num_iter,
        mode=mode,
        smooth=smooth,
        diverge_threshold=diverge_threshold,
        diverge_warmup=diverge_warmup,
    )
    get_rule(rule)
    if loss is not None and criterion is not None:
        raise TypeError("give the loss function once: criterion= or loss=, not both")
    options = {
        "optimizer": optimizer,
        "criterion": criterion if criterion is not None else loss,
        "val_loader": val_loader,
        "val_batches": val_batches,
        "accumulation_steps": accumulation_steps,
        "amp": amp,
        "grad_clip": grad_clip,
        "device": device,
        "batch_fn": batch_fn,
        "batch_size": batch_size,
        "shuffle": shuffle,
        "snapshot_dir": snapshot_dir,
        "snapshot": snapshot,
        "restore": restore,
    }
    trainer = make_trainer(model, data, **{k: v for k, v in options.items() if v is not None})
    if set_lr and not callable(getattr(trainer, "apply_lr", None)):
        raise TypeError(
            f"set_lr=True applies to a Hugging Face Trainer (it sets trainer.args.learning_rate); a "
            f"{trainer.backend} model has no such setting: read result.suggestion and give it to your "
            "optimizer"
        )
    result = _run(trainer, settings, rule, progress, callback, stacklevel=3)
    if set_lr:
        _apply(trainer, result)
    return result


def run_range_test(
    trainer: Trainer,
    settings: SweepSettings,
    *,
    rule: str = DEFAULT_RULE,
    progress: bool | None = None,
    callback: StepCallback | None = None,
) -> LRFinderResult:
    """Run the range test with a ready trainer and return its result.

    What :func:`find_lr` does once it has chosen the trainer: sweep (the trainer's state is
    restored after), wrap the outcome in a result, and warn (``RuntimeWarning``, from the main
    process only) about each of its diagnostics.

    Args:
        trainer: Any :class:`~lrfinder.trainers.Trainer` (see :func:`lrfinder.trainers.make_trainer`).
        settings: The LR ladder and when to stop.
        rule: Suggestion rule behind ``result.suggestion`` (see :mod:`lrfinder.suggest`).
        progress: Progress bar; None shows one only on a terminal or in a notebook.
        callback: ``callback(step, lr, loss, smoothed)`` after every recorded step.

    Returns:
        An :class:`~lrfinder.result.LRFinderResult`.

    Raises:
        RangeTestInterrupted: The sweep was interrupted; the state was restored first, and the
            partial result is in the exception's ``result`` attribute.
        TypeError: ``settings`` is not a :class:`~lrfinder.sweep.SweepSettings`.
        ValueError: ``rule`` names no rule.
    """
    if not isinstance(settings, SweepSettings):
        raise TypeError(f"settings must be a SweepSettings (lrfinder.SweepSettings(start_lr=..., ...)), "
                        f"got {type(settings).__qualname__}")
    get_rule(rule)
    return _run(trainer, settings, rule, progress, callback, stacklevel=3)


def _run(trainer: Trainer, settings: SweepSettings, rule: str, progress: bool | None,
         callback: StepCallback | None, *, stacklevel: int) -> LRFinderResult:
    """Sweep, build the result, warn about its diagnostics at ``stacklevel`` (the user's call)."""
    try:
        outcome = run_sweep(trainer, settings, progress=progress, callback=callback)
    except RangeTestInterrupted as stop:
        if stop.outcome is not None:
            stop.result = _result(stop.outcome, settings, trainer, rule)
        raise
    result = _result(outcome, settings, trainer, rule)
    if trainer.is_main_process:
        for diagnostic in result.diagnostics:
            warnings.warn(f"lrfinder: {diagnostic.message}", RuntimeWarning, stacklevel=stacklevel)
    return result


def _result(outcome: SweepOutcome, settings: SweepSettings, trainer: Trainer, rule: str) -> LRFinderResult:
    return LRFinderResult(
        lrs=outcome.lrs,
        losses=outcome.losses,
        smoothed=outcome.smoothed,
        stop_reason=outcome.stop_reason,
        settings=settings.to_dict(),
        backend=trainer.backend,
        elapsed=outcome.elapsed,
        rule=rule,
        info=dict(trainer.info),
        is_main_process=trainer.is_main_process,
    )


def _apply(trainer: Any, result: LRFinderResult) -> None:
    """Hand the suggestion to a trainer that asked for it (``set_lr=True``)."""
    if result.suggestion is None:
        warnings.warn(f"lrfinder: set_lr=True, but there is no suggestion ({result.suggestion_reason}); "
                      "the learning rate was left unchanged", RuntimeWarning, stacklevel=3)
        return
    trainer.apply_lr(result.suggestion)

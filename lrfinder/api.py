"""The library's entry points: ``find_lr`` picks a trainer; ``run_range_test`` runs one and wraps
the outcome in a result."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable
from typing import Any

from lrfinder import confirm as confirming
from lrfinder.confirm import ConfirmRun, ConfirmSettings
from lrfinder.errors import RangeTestInterrupted
from lrfinder.plan import Plan, make_plan
from lrfinder.result import LRFinderResult
from lrfinder.suggest import DEFAULT_RULE, get_rule
from lrfinder.sweep import INTERRUPTED, StepCallback, SweepOutcome, SweepSettings, run_sweep
from lrfinder.trainers import Trainer, is_trainer, make_trainer

_DEFAULTS = SweepSettings  # find_lr's sweep defaults are SweepSettings' own


def find_lr(
    model: Any,
    data: Any = None,
    optimizer: Any = None,
    criterion: Any = None,
    *,
    start_lr: float = _DEFAULTS.start_lr,
    end_lr: float = _DEFAULTS.end_lr,
    num_iter: int | None = None,
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
    schedule: str | None = None,
    train_steps: int | None = None,
    confirm: bool | int = False,
    confirm_data: Any = None,
    confirm_settings: ConfirmSettings | None = None,
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
        num_iter: Steps from ``start_lr`` to ``end_lr`` (default 100; in confirm mode a default
            range test is shortened when it would take more than ``range_share`` of the budget).
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
        schedule: How you will train: ``"constant"``, ``"onecycle"`` or ``"cosine"`` (see
            :mod:`lrfinder.plan`); the suggestion is then the LR for that plan (the peak LR for
            one-cycle and cosine). None (the default) with no ``train_steps``: no plan, the plain
            rule's suggestion as before. ``"constant"`` when only ``train_steps`` is given.
        train_steps: Optimizer steps you will train for (needed by confirm mode).
        confirm: Check the suggestion by training short probes at a few LRs around it, under the
            plan's schedule, from the untouched starting state, and keep the LR whose probe scores
            lowest on ``confirm_data`` (see :mod:`lrfinder.confirm`). True: a budget of
            ``2 * train_steps`` training steps for the range test and the probes together; an
            integer: that budget. Needs ``train_steps``.
        confirm_data: What the probes are scored on: for PyTorch and Keras, validation batches
            (same forms as ``val_loader``; default ``val_loader``, else a Hugging Face Trainer's
            ``eval_dataset``); for a step function, a callable
            ``evaluate() -> loss`` giving the mean held-out loss at the current state (the step
            function then needs ``snapshot=`` and ``restore=``). Never training batches: a probe
            scored on what it trained on rewards the LR that overfits fastest.
        confirm_settings: The confirm mode's knobs (:class:`~lrfinder.confirm.ConfirmSettings`).
        set_lr: Write the suggestion back where training reads its LR: ``trainer.args.learning_rate``
            of a Hugging Face Trainer (left unchanged when there is no suggestion).

    Returns:
        An :class:`~lrfinder.result.LRFinderResult`; ``result.suggestion`` is the suggested LR
        (the confirmed one in confirm mode, with the range test's in ``result.range_suggestion``
        and every probe in ``result.confirmation``).

    Raises:
        RangeTestInterrupted: Ctrl-C (or a ``KeyboardInterrupt`` raised by ``callback``) stopped
            the sweep. The state was restored first; the partial result is in the exception's
            ``result`` attribute. It is a ``KeyboardInterrupt``: uncaught, it stops the program.
        OtherRankFailed: In a distributed run, another process failed; every process stops at
            the same step and restores its state.
        TypeError: ``model`` is of no supported kind, or an option does not apply to it.
        ValueError: A setting is out of range (each message says which and why).
    """
    confirming.check_confirm(confirm)
    plan = make_plan(schedule, train_steps)
    probes = None
    if confirm is not False:
        probes = confirming.probe_plan_for(plan, confirm, num_iter, confirm_settings)
        num_iter = probes.range_steps
        if not _holds_data(model):
            confirm_data = confirming.default_confirm_data(confirm_data, val_loader)
    elif confirm_data is not None or confirm_settings is not None:
        raise TypeError("confirm_data= and confirm_settings= only apply with confirm=True (or confirm=N)")
    settings = SweepSettings(
        start_lr=start_lr,
        end_lr=end_lr,
        num_iter=_DEFAULTS.num_iter if num_iter is None else num_iter,
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
    given = {k: v for k, v in options.items() if v is not None}
    trainer = make_trainer(model, data, **given)
    if set_lr and not callable(getattr(trainer, "apply_lr", None)):
        raise TypeError(
            f"set_lr=True applies to a Hugging Face Trainer (it sets trainer.args.learning_rate); a "
            f"{trainer.backend} model has no such setting: read result.suggestion and give it to your "
            "optimizer"
        )
    run = None
    if probes is not None:
        confirm_data = confirming.default_confirm_data(confirm_data, val_loader, trainer)
        probe_trainer = None
        if val_loader is not None and not is_trainer(model):
            probe_trainer = make_trainer(model, data, **confirming.probe_options(given))
        run = ConfirmRun(probes, confirm_data, confirm_settings or ConfirmSettings(), probe_trainer)
    result = _run(trainer, settings, rule, progress, callback, plan, run, stacklevel=3)
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
    plan: Plan | None = None,
    confirm: ConfirmRun | None = None,
) -> LRFinderResult:
    """Run the range test with a ready trainer and return its result.

    What :func:`find_lr` does once it has chosen the trainer: sweep (the trainer's state is
    restored after), confirm the suggestion by probes when ``confirm`` is given, wrap the outcome
    in a result, and warn (``RuntimeWarning``, from the main process only) about each of its
    diagnostics.

    Args:
        trainer: Any :class:`~lrfinder.trainers.Trainer` (see :func:`lrfinder.trainers.make_trainer`).
        settings: The LR ladder and when to stop.
        rule: Suggestion rule behind ``result.suggestion`` (see :mod:`lrfinder.suggest`).
        progress: Progress bar; None shows one only on a terminal or in a notebook.
        callback: ``callback(step, lr, loss, smoothed)`` after every recorded step.
        plan: The user's training plan (see :func:`lrfinder.plan.make_plan`), or None.
        confirm: What confirm mode needs (see :class:`lrfinder.confirm.ConfirmRun`); its
            probe plan's ``range_steps`` must equal ``settings.num_iter``. Needs ``plan``.

    Returns:
        An :class:`~lrfinder.result.LRFinderResult`.

    Raises:
        RangeTestInterrupted: The sweep was interrupted; the state was restored first, and the
            partial result is in the exception's ``result`` attribute.
        TypeError: ``settings`` is not a :class:`~lrfinder.sweep.SweepSettings`, or the trainer
            cannot confirm.
        ValueError: ``rule`` names no rule, or ``confirm`` does not fit ``plan`` and ``settings``.
    """
    if not isinstance(settings, SweepSettings):
        raise TypeError(
            f"settings must be a SweepSettings (lrfinder.SweepSettings(start_lr=..., ...)), "
            f"got {type(settings).__qualname__}"
        )
    get_rule(rule)
    return _run(trainer, settings, rule, progress, callback, plan, confirm, stacklevel=3)


def _run(
    trainer: Trainer,
    settings: SweepSettings,
    rule: str,
    progress: bool | None,
    callback: StepCallback | None,
    plan: Plan | None,
    confirm: ConfirmRun | None,
    *,
    stacklevel: int,
) -> LRFinderResult:
    """Sweep, confirm, build the result, warn about its diagnostics at ``stacklevel`` (the user's call)."""
    if confirm is not None:
        confirming.check_run(confirm, plan, settings.num_iter)
        confirming.check_evaluates(confirm.trainer or trainer)
        assert plan is not None and plan.train_steps is not None
        # a trainer that reads batches ahead (Hugging Face's loader reads one) draws more than it steps
        ahead = max(int(getattr(t, "lookahead", 0)) for t in (trainer, confirm.trainer or trainer))
        probes = confirming.fit_lookahead(confirm.probes, ahead, confirm.settings, plan.train_steps)
        confirm = dataclasses.replace(confirm, probes=probes)
    try:
        outcome = run_sweep(trainer, settings, progress=progress, callback=callback)
    except RangeTestInterrupted as stop:  # Ctrl-C means stop, not go on to the probes
        if stop.outcome is not None:
            stop.result = _result(stop.outcome, settings, trainer, rule, plan)
        raise
    result = _result(outcome, settings, trainer, rule, plan)
    if confirm is not None:
        assert plan is not None
        if outcome.stop_reason == INTERRUPTED:  # (a trainer's own outcome may still say so)
            result.confirmation = confirming.no_confirmation(
                confirm.probes,
                "the range test was interrupted",
                schedule=plan.schedule,
                settings=confirm.settings,
            )
        else:  # the probes centre on the result's own suggestion for the plan, computed once
            result.confirmation = confirming.confirm(
                confirm.trainer or trainer,
                confirm.probes,
                result.range_suggestion,
                plan,
                confirm.data,
                settings=confirm.settings,
                progress=progress,
                ceiling=float(result.lrs[-1]) if result.lrs.size else None,
            )
    if trainer.is_main_process:
        for diagnostic in result.diagnostics:
            warnings.warn(f"lrfinder: {diagnostic.message}", RuntimeWarning, stacklevel=stacklevel)
    return result


def _result(
    outcome: SweepOutcome,
    settings: SweepSettings,
    trainer: Trainer,
    rule: str,
    plan: Plan | None,
) -> LRFinderResult:
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
        plan=plan,
    )


def _holds_data(model: Any) -> bool:
    """Whether ``model`` may bring its own held-out data (a Hugging Face Trainer's ``eval_dataset``):
    then the default ``confirm_data`` is looked for once its trainer is built."""
    return any(
        c.__module__.startswith("transformers.") and c.__name__ == "Trainer" for c in type(model).__mro__
    )


def _apply(trainer: Any, result: LRFinderResult) -> None:
    """Hand the suggestion to a trainer that asked for it (``set_lr=True``)."""
    if result.suggestion is None:
        warnings.warn(
            f"lrfinder: set_lr=True, but there is no suggestion ({result.suggestion_reason}); "
            "the learning rate was left unchanged",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    trainer.apply_lr(result.suggestion)

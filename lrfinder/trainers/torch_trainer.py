"""The PyTorch trainer: a ``torch.nn.Module`` trained on a DataLoader (or any iterable of batches).

Imported only when torch is already in ``sys.modules`` (see :mod:`lrfinder.trainers`), so a
module-level ``import torch`` costs nothing extra.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from typing import Any, TypeVar

import torch

from lrfinder.plan import MOMENTUM_NONE
from lrfinder.trainers._torch_batches import call_model, choose_loss, compute_loss, split_batch, to_device
from lrfinder.trainers._torch_dist import RankAgreement, rank_mean
from lrfinder.trainers._torch_options import (
    NOT_HERE,
    OPTIONS,
    amp_name,
    amp_settings,
    check_callable,
    check_dir,
    check_grad_clip,
    check_loader,
    check_optimizer,
    check_validation,
    default_optimizer,
    distributed_rank,
    length,
    lr_ratios,
    name_of,
    onecycle_momentum_kind,
    positive_int,
    read_ahead,
    resolve_device,
    set_momentum,
)
from lrfinder.trainers._torch_state import TorchSnapshot, loader_generators
from lrfinder.trainers.base import TrainerBase, check_options

__all__ = ["ACCELERATOR_SYNC_EVERY", "OPTIONS", "TorchTrainer", "accepts", "make"]

#: Steps run between two reads of the losses on an accelerator (see TorchTrainer.sync_every).
ACCELERATOR_SYNC_EVERY = 8

_T = TypeVar("_T")

# reused at every micro-batch that needs no DDP no_sync() (a nullcontext holds no state)
_NO_CONTEXT = contextlib.nullcontext()


def accepts(model: Any) -> bool:
    """Whether ``model`` is a ``torch.nn.Module`` (a DDP- or compile-wrapped one included)."""
    return isinstance(model, torch.nn.Module)


def make(model: torch.nn.Module, data: Any, **options: Any) -> TorchTrainer:
    """A :class:`TorchTrainer` for ``model`` and ``data``; ``options`` as in ``find_lr``.

    Raises:
        TypeError: An option that does not apply to a PyTorch model, or data of the wrong kind.
    """
    check_options("a PyTorch model", options, OPTIONS, NOT_HERE)
    return TorchTrainer(model, data, **options)


class TorchTrainer(TrainerBase):
    """Trains a PyTorch model one optimizer step per LR of the ladder, and undoes it all after.

    Each step draws ``accumulation_steps`` batches (a fresh pass over ``data`` starts when it
    runs out), runs forward and backward under autocast when ``amp`` is set, clips the gradient
    norm when ``grad_clip`` is set, steps the optimizer, and returns the step's loss: the mean
    of its micro-batch losses, or with ``val_loader`` the mean loss of ``val_batches``
    validation batches in eval mode without gradients. Under ``torch.distributed`` the loss is
    averaged over the ranks, so every rank records the same curve and stops at the same step.

    Everything the sweep changes is restored bit for bit in :meth:`restore`: parameters and
    their gradients, buffers (BatchNorm statistics), train/eval flags, the optimizer's state
    and learning rates, a user GradScaler's state, and the torch (CPU, CUDA, MPS), NumPy,
    Python and DataLoader random generators.

    Args:
        model: The model; it stays where it is unless ``device`` says otherwise.
        data: Training batches: a DataLoader or any re-iterable (a list of batches); each batch
            ``(inputs, targets)``, ``(inputs,)``, a tensor of inputs, a dict of keyword inputs
            (Hugging Face style, targets under ``"labels"``), or anything ``batch_fn`` reads.
            ``inputs`` may be a tensor, a tuple (``model(*inputs)``) or a dict
            (``model(**inputs)``).
        optimizer: A ``torch.optim.Optimizer`` over the model's parameters. Its param groups
            keep their LR ratios to the first group (discriminative LRs): at ladder LR ``lr``,
            group ``g`` runs at ``lr * lr_g / lr_0``, and the curve's LR axis is group 0's.
            When None, ``AdamW`` with torch's defaults (betas 0.9/0.999, weight decay 0.01) is
            built over the trainable parameters: it is what most current PyTorch recipes (and
            Hugging Face's Trainer) train with, and a suggestion only transfers to the optimizer
            it was measured with. Pass yours if you train with something else (SGD's good LRs
            are often 10-100 times larger).
        criterion: ``criterion(predictions, targets) -> scalar loss``. When None: the model's
            own loss if its output has one (``output.loss`` or ``output["loss"]``); otherwise
            cross-entropy for integer targets and mean squared error for floating targets
            (shapes must then match exactly). Predictions are the output itself, or its
            ``logits`` when it has them. With a dict batch and a criterion, ``"labels"`` is
            taken out of the model's inputs and given to the criterion.
        val_loader: Validation batches; when given, each step records the validation loss.
        val_batches: Validation batches per step (the first ones of a fresh pass); default the
            whole ``val_loader``, which is evaluated at every step, so keep it small. Required
            when ``val_loader`` has no length.
        accumulation_steps: Batches whose gradients are summed into one optimizer step.
        amp: Mixed precision: ``"bf16"``, ``"fp16"``, a torch dtype, True (bf16 on CPU, fp16
            elsewhere), or your ``torch.amp.GradScaler`` (fp16 with that scaler, whose state is
            restored after). fp16 gets a fresh GradScaler when you give none.
        grad_clip: Clip the gradients' total norm to this value before each optimizer step.
        device: Where batches go and the model runs; default: the device of its first
            parameter. A model elsewhere is moved there for the sweep and moved back after.
        batch_fn: ``batch_fn(batch) -> (inputs, targets)`` for batches of another shape
            (``targets`` None for a model that returns its own loss).
        snapshot_dir: Keep the snapshot of tensors in a temporary file in this folder instead of
            CPU memory (for models larger than RAM); the file is deleted in every case.

    Attributes:
        sync_every: 1 on the CPU, :data:`ACCELERATOR_SYNC_EVERY` on an accelerator (see the
            comment where it is set).
        info: What was chosen: optimizer, criterion, LR groups, amp, device, world size...
    """

    backend = "torch"

    def __init__(
        self,
        model: torch.nn.Module,
        data: Any,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        criterion: Callable[..., torch.Tensor] | None = None,
        val_loader: Any = None,
        val_batches: int | None = None,
        accumulation_steps: int = 1,
        amp: Any = None,
        grad_clip: float | None = None,
        device: str | torch.device | None = None,
        batch_fn: Callable[[Any], Any] | None = None,
        snapshot_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__qualname__}")
        self.model = model
        params = list(model.parameters())
        if not params:
            raise ValueError(f"the model ({type(model).__qualname__}) has no parameters to train")
        self.data = check_loader(data, "data")
        # worker prefetch counts against confirm's budget, beside what a subclass reads ahead itself
        self.lookahead = type(self).lookahead + read_ahead(self.data)
        self.device = resolve_device(device) if device is not None else params[0].device
        # a model elsewhere (all of it, or part of it) is moved for the sweep, then moved back
        self._move = device is not None and any(p.device != self.device for p in params)
        self.accumulation_steps = positive_int(accumulation_steps, "accumulation_steps")
        self.grad_clip = check_grad_clip(grad_clip)
        self.criterion = check_callable(criterion, "criterion", "criterion(predictions, targets)")
        self.batch_fn = check_callable(batch_fn, "batch_fn", "batch_fn(batch) -> (inputs, targets)")
        self.val_loader, self.val_batches = check_validation(val_loader, val_batches)
        self.amp_dtype, self.scaler, user_scaler = amp_settings(amp, self.device)
        self._user_optimizer = optimizer is not None
        self.optimizer = self._set_up_optimizer(optimizer, params)

        # Distributed: the loss is averaged over ranks (SUM / world size: gloo has no AVG), so
        # every rank sees the same curve and takes the same stop decision.
        self.world_size, self.rank = distributed_rank()
        self.is_main_process = self.rank == 0
        # every rank learns at the same step that another failed or was interrupted
        self._agreement = RankAgreement(self.world_size, self.rank) if self.world_size > 1 else None
        # Reading a loss back (float(loss)) makes the host wait until the device has finished
        # every queued kernel. On the CPU there is no queue: the step has already run when it
        # returns, so reading each loss costs nothing and lets the sweep stop on the very step
        # that diverged (benchmarks/speed/torch_cpu.py measures sync_every 1 against 8 on CPU). On
        # an accelerator a read per step drains the queue, and the device idles while Python
        # prepares the next step; reading a block of losses at once keeps it busy, at the price
        # of at most ACCELERATOR_SYNC_EVERY - 1 steps run past a divergence (discarded; the
        # state is restored anyway). fp16 with a GradScaler syncs in scaler.step() regardless.
        self.sync_every = 1 if self.device.type == "cpu" else ACCELERATOR_SYNC_EVERY

        self._snapshot = TorchSnapshot(
            [model] + ([criterion] if isinstance(criterion, torch.nn.Module) else []),
            self.optimizer,  # also one lrfinder built: every confirm probe starts from its state
            extra_params=self._clip_params,
            scaler=self.scaler if user_scaler else None,
            generators=loader_generators(self.data, self.val_loader),
            cuda=torch.cuda.is_available() and (torch.cuda.is_initialized() or self.device.type == "cuda"),
            mps=self.device.type == "mps",
            snapshot_dir=check_dir(snapshot_dir),
            loaders=[self.data, self.val_loader],
        )
        self._iterator: Iterator[Any] | None = None
        self._passes = 0
        self._started = False
        self._loss_kind: str | None = None  # see _torch_batches.choose_loss
        self._no_sync = getattr(model, "no_sync", None) if self.world_size > 1 else None
        self._record_settings(snapshot_dir)

    def _set_up_optimizer(self, optimizer: Any, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        """The user's optimizer checked, or AdamW built; its LR ratios and the params to clip."""
        if optimizer is None:
            optimizer, built = default_optimizer(params)
            self.info.update(built)
        else:
            check_optimizer(optimizer)
            self.info["optimizer"] = type(optimizer).__qualname__
        self._ratios, reference = lr_ratios(optimizer)
        self._tensor_lrs = any(isinstance(g["lr"], torch.Tensor) for g in optimizer.param_groups)
        if len(self._ratios) > 1:
            self.info["param_groups"] = len(self._ratios)
            self.info["lr_ratios"] = list(self._ratios)
            self.info["base_lr"] = (
                f"the LR axis is param group {reference}'s; the other groups keep "
                "their initial ratios to it (lr_ratios)"
            )
        self._clip_params = [p for g in optimizer.param_groups for p in g["params"]]
        # what a one-cycle plan (OneCycleLR's defaults) does to the momentum: confirm mode's
        # probes do the same, and the suggestion allows for a momentum switched on
        self.info["onecycle_momentum"] = onecycle_momentum_kind(optimizer)
        return optimizer

    @property
    def cycles_momentum(self) -> bool:
        """Whether a one-cycle plan cycles this optimizer's momentum (see :meth:`set_momentum`)."""
        return onecycle_momentum_kind(self.optimizer) != MOMENTUM_NONE

    def set_momentum(self, momentum: float) -> None:
        """Set the momentum (beta1 for an optimizer with betas) of every param group, as
        ``OneCycleLR`` does before each step; the snapshot puts the user's back."""
        set_momentum(self.optimizer, momentum)

    def _record_settings(self, snapshot_dir: str | os.PathLike[str] | None) -> None:
        """Put what was chosen or given in ``info`` (kept in the result)."""
        info = self.info
        criterion = self.criterion
        info["criterion"] = name_of(criterion) if criterion is not None else "inferred at the first batch"
        info["amp"] = amp_name(self.amp_dtype, self.scaler)
        info["device"] = str(self.device)
        info["world_size"] = self.world_size
        info["accumulation_steps"] = self.accumulation_steps
        if self.grad_clip is not None:
            info["grad_clip"] = self.grad_clip
        info["loss"] = "validation" if self.val_loader is not None else "training batch"
        if self.val_loader is not None:
            info["val_batches"] = self.val_batches if self.val_batches is not None else "all"
        info["snapshot"] = "CPU memory" if snapshot_dir is None else f"file in {snapshot_dir}"

    # -- the Trainer protocol ----------------------------------------------------------------

    def snapshot(self) -> None:
        self._snapshot.take()
        if self._agreement is not None:
            self._agreement.reported = False

    def step(self, lr: float) -> torch.Tensor:
        # a notebook cell under torch.no_grad() must not make backward() fail
        with torch.enable_grad():
            return self._step(lr)

    # -- distributed: the engine's hooks (see lrfinder.sweep.run_sweep) -----------------------

    @property
    def interrupt_flag(self) -> Any:
        """Under DDP, the engine's Ctrl-C flag, read at each status exchange (None otherwise)."""
        return None if self._agreement is None else self._agreement.interrupt_flag

    @interrupt_flag.setter
    def interrupt_flag(self, flag: Any) -> None:
        if self._agreement is not None:
            self._agreement.interrupt_flag = flag

    def finish(self) -> None:
        """Under DDP, the last status exchange: a rank that failed after its last step says so."""
        if self._agreement is not None:
            self._agreement.check()

    def abort(self, interrupted: bool) -> None:
        """Under DDP, tell the other ranks that this one stopped (if no exchange has told them)."""
        if self._agreement is not None:
            self._agreement.report(interrupted)

    def _agreed(self, action: Callable[..., _T], *args: Any) -> _T:
        """``action(*args)``; under DDP, then a status exchange that its failure takes part in."""
        if self._agreement is None:
            return action(*args)
        try:
            value = action(*args)
        except BaseException as failure:
            self._agreement.check(failure)  # tells the others, then re-raises
            raise
        self._agreement.check()
        return value

    # -- one step ----------------------------------------------------------------------------

    def _step(self, lr: float) -> torch.Tensor:
        scaler, k = self.scaler, self.accumulation_steps
        total: torch.Tensor | None = None
        for i in range(k):
            # under DDP each exchange comes before a collective: the forward pass (buffers may be
            # broadcast) and the backward pass (gradients are all-reduced)
            batch = self._agreed(self._first_batch, lr) if i == 0 else self._agreed(self._next_batch)
            # under DDP, gradients need averaging over ranks only once per optimizer step
            sync = _NO_CONTEXT if self._no_sync is None or i == k - 1 else self._no_sync()
            with sync:
                loss = self._agreed(self._forward, batch)
                scaled = loss / k if k > 1 else loss
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
            loss = loss.detach()
            total = loss if total is None else total + loss
        assert total is not None
        if k > 1:
            total = total / k
        total = self._agreed(self._update, total)
        if self.world_size > 1:
            total = rank_mean(total, self.world_size)
        return total

    def _first_batch(self, lr: float) -> Any:
        """Start the step: set up the sweep at its first step, set ``lr``, clear the gradients, and
        return the step's first batch."""
        if not self._started:
            self._begin()
        self._set_lr(lr)
        self.optimizer.zero_grad(set_to_none=True)
        return self._next_batch()

    def _forward(self, batch: Any) -> torch.Tensor:
        with self._autocast():
            return self._batch_loss(batch)

    def _update(self, total: torch.Tensor) -> torch.Tensor:
        """Clip, step the optimizer, and return the loss to record (the validation loss if asked)."""
        optimizer, scaler = self.optimizer, self.scaler
        if self.grad_clip is not None:
            if scaler is not None:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(self._clip_params, self.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if self.val_loader is not None:
            return self._validation_loss(self.val_loader, self.val_batches)
        return total

    def fetch_losses(self, losses: Sequence[Any]) -> list[float]:
        if not losses:
            return []
        if all(loss.device.type == "cpu" for loss in losses):
            return [float(loss) for loss in losses]
        # one device-to-host copy (one sync) for the whole block
        return torch.stack([loss.reshape(()).float() for loss in losses]).cpu().tolist()

    def evaluate(self, data: Any) -> float:
        """Mean loss over every batch of ``data`` in eval mode without gradients, averaged over the
        ranks (confirm mode's probe score; same batch forms as ``val_loader``)."""
        loader = check_loader(data, "confirm_data")
        if length(loader) is None or hasattr(loader, "__next__"):  # iter() would start workers
            raise TypeError(
                "confirm_data scores every probe on the same batches, so it must be re-iterable with a "
                "length: a DataLoader or a list of batches, not an iterator or generator"
            )
        if not self._started:
            self._begin()
        total = self._validation_loss(loader, None)
        if self.world_size > 1:
            total = rank_mean(total, self.world_size)
        return float(total)

    def restore(self) -> None:
        self._iterator = None  # ends DataLoader workers before the RNG is put back
        self._started = False
        self._snapshot.restore()

    # -- one step's parts --------------------------------------------------------------------

    def _begin(self) -> None:
        """Set up the sweep (after the snapshot, so that all of it is undone)."""
        self._started = True
        self.optimizer.zero_grad(set_to_none=True)
        self.model.zero_grad(set_to_none=True)
        if self._move:
            _move_module(self.model, self.device)
            for param, state in self.optimizer.state.items():  # as Optimizer.load_state_dict does
                for key, value in state.items():
                    if isinstance(value, torch.Tensor) and key != "step":
                        state[key] = value.to(param.device)
        self.model.train()

    def _set_lr(self, lr: float) -> None:
        for group, ratio in zip(self.optimizer.param_groups, self._ratios, strict=True):
            if self._tensor_lrs and isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr * ratio)
            else:
                group["lr"] = lr * ratio

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _next_batch(self) -> Any:
        """The next training batch, starting a fresh pass over the data when it runs out."""
        if self._iterator is not None:
            try:
                return next(self._iterator)
            except StopIteration:
                pass
        self._iterator = iter(self.data)
        self._passes += 1
        try:
            return next(self._iterator)
        except StopIteration:
            if self._passes == 1:
                raise ValueError(
                    "data yielded no batches: give a DataLoader (or iterable) with at least one batch"
                ) from None
            raise ValueError(
                "data ran out and cannot be iterated again (it is an iterator or generator, "
                "which gives its batches only once); pass a DataLoader or a list of batches, "
                "which lrfinder cycles, or a smaller num_iter"
            ) from None

    def _validation_loss(self, loader: Any, batches: int | None) -> torch.Tensor:
        """Mean of the per-batch losses of the first ``batches`` of ``loader`` (all when None), in
        eval mode without gradients; the model is left in train mode."""
        self.model.eval()
        total: torch.Tensor | None = None
        count = 0
        with torch.no_grad():
            for batch in islice(iter(loader), batches):
                with self._autocast():
                    loss = self._batch_loss(batch).float()
                total = loss if total is None else total + loss
                count += 1
        self.model.train()
        if total is None:
            raise ValueError("the validation data yielded no batches: give it at least one")
        return total / count

    def _batch_loss(self, batch: Any) -> torch.Tensor:
        inputs, targets = split_batch(batch, self.batch_fn, self.criterion is not None)
        inputs = to_device(inputs, self.device)
        targets = to_device(targets, self.device)
        output = call_model(self.model, inputs)
        if self._loss_kind is None:  # decided once, from the first batch
            self._loss_kind, name = choose_loss(output, targets, self.criterion is not None)
            if name is not None:
                self.info["criterion"] = name
        return compute_loss(self._loss_kind, output, targets, self.criterion)


# -- helpers -----------------------------------------------------------------------------------


def _move_module(model: torch.nn.Module, device: torch.device) -> None:
    """``model.to(device)`` that always keeps the Parameter objects (the optimizer holds them)."""
    with torch.no_grad():
        for module in model.modules():
            for param in module.parameters(recurse=False):
                param.data = param.data.to(device)
            for name, buffer in module.named_buffers(recurse=False):
                setattr(module, name, buffer.to(device))

"""The PyTorch trainer: a ``torch.nn.Module`` trained on a DataLoader (or any iterable of batches).

Imported only when torch is already in ``sys.modules`` (see :mod:`lrfinder.trainers`), so a
module-level ``import torch`` costs nothing extra.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import torch

from lrfinder.trainers._torch_state import TorchSnapshot, loader_generators
from lrfinder.trainers.base import TrainerBase, check_options

__all__ = ["ACCELERATOR_SYNC_EVERY", "TorchTrainer", "accepts", "make"]

#: Steps run between two reads of the losses on an accelerator (see TorchTrainer.sync_every).
ACCELERATOR_SYNC_EVERY = 8

#: Options make() takes; everything else find_lr passes is rejected with a TypeError.
OPTIONS = frozenset({
    "optimizer", "criterion", "val_loader", "val_batches", "accumulation_steps", "amp",
    "grad_clip", "device", "batch_fn", "snapshot_dir",
})

#: Why an option find_lr knows does not apply here (for the error message).
_NOT_HERE = {
    "batch_size": "the DataLoader sets the batch size",
    "snapshot": "it is for step functions; the model's state is saved automatically",
    "restore": "it is for step functions; the model's state is restored automatically",
}

_AMP_NAMES = {
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
}

#: Key of the targets in a dict batch, as Hugging Face models and collators name it.
LABELS = "labels"


def accepts(model: Any) -> bool:
    """Whether ``model`` is a ``torch.nn.Module`` (a DDP- or compile-wrapped one included)."""
    return isinstance(model, torch.nn.Module)


def make(model: torch.nn.Module, data: Any, **options: Any) -> TorchTrainer:
    """A :class:`TorchTrainer` for ``model`` and ``data``; ``options`` as in ``find_lr``.

    Raises:
        TypeError: An option that does not apply to a PyTorch model, or data of the wrong kind.
    """
    check_options("a PyTorch model", options, OPTIONS, _NOT_HERE)
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
        self.data = _check_loader(data, "data")
        self.device = _resolve_device(device) if device is not None else params[0].device
        # a model elsewhere (all of it, or part of it) is moved for the sweep, then moved back
        self._move = device is not None and any(p.device != self.device for p in params)

        self.accumulation_steps = _positive_int(accumulation_steps, "accumulation_steps")
        if grad_clip is not None and not (isinstance(grad_clip, (int, float)) and grad_clip > 0):
            raise ValueError(f"grad_clip must be a positive number (the max gradient norm), got "
                             f"{grad_clip!r}")
        self.grad_clip = None if grad_clip is None else float(grad_clip)
        if criterion is not None and not callable(criterion):
            raise TypeError(f"criterion must be callable as criterion(predictions, targets), got "
                            f"{type(criterion).__qualname__}")
        if batch_fn is not None and not callable(batch_fn):
            raise TypeError(f"batch_fn must be callable as batch_fn(batch) -> (inputs, targets), got "
                            f"{type(batch_fn).__qualname__}")
        self.criterion = criterion
        self.batch_fn = batch_fn

        self.val_loader = None if val_loader is None else _check_loader(val_loader, "val_loader")
        if val_batches is not None:
            if val_loader is None:
                raise TypeError("val_batches only applies with val_loader=")
            val_batches = _positive_int(val_batches, "val_batches")
        elif val_loader is not None and _length(val_loader) is None:
            raise ValueError("val_loader has no length, so it may never end: give val_batches= "
                             "(how many of its batches make one step's validation loss)")
        self.val_batches = val_batches

        self.amp_dtype, self.scaler, user_scaler = _amp_settings(amp, self.device)

        if optimizer is None:
            trainable = [p for p in params if p.requires_grad]
            if not trainable:
                raise ValueError("no parameter of the model requires grad, so there is nothing to "
                                 "train; unfreeze some, or pass optimizer=")
            self.optimizer: torch.optim.Optimizer = torch.optim.AdamW(trainable)
            self._user_optimizer = False
            defaults = {k: self.optimizer.defaults[k] for k in ("betas", "eps", "weight_decay")}
            self.info["optimizer"] = "AdamW " + ", ".join(f"{k}={v}" for k, v in defaults.items())
            self.info["optimizer_built"] = ("by lrfinder (no optimizer= given); pass yours if you "
                                            "train with another optimizer")
        else:
            _check_optimizer(optimizer)
            self.optimizer = optimizer
            self._user_optimizer = True
            self.info["optimizer"] = type(optimizer).__qualname__
        self._ratios, reference = _lr_ratios(self.optimizer)
        self._tensor_lrs = any(isinstance(g["lr"], torch.Tensor) for g in self.optimizer.param_groups)
        if len(self._ratios) > 1:
            self.info["param_groups"] = len(self._ratios)
            self.info["lr_ratios"] = list(self._ratios)
            self.info["base_lr"] = (f"the LR axis is param group {reference}'s; the other groups keep "
                                    "their initial ratios to it (lr_ratios)")
        self._clip_params = [p for g in self.optimizer.param_groups for p in g["params"]]

        # Distributed: the loss is averaged over ranks (SUM / world size: gloo has no AVG), so
        # every rank sees the same curve and takes the same stop decision.
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.world_size = torch.distributed.get_world_size() if distributed else 1
        self.rank = torch.distributed.get_rank() if distributed else 0
        self.is_main_process = self.rank == 0

        # Reading a loss back (float(loss)) makes the host wait until the device has finished
        # every queued kernel. On the CPU there is no queue: the step has already run when it
        # returns, so reading each loss costs nothing and lets the sweep stop on the very step
        # that diverged (benchmarks/bench_torch.py measures sync_every 1 against 8 on CPU). On
        # an accelerator a read per step drains the queue, and the device idles while Python
        # prepares the next step; reading a block of losses at once keeps it busy, at the price
        # of at most ACCELERATOR_SYNC_EVERY - 1 steps run past a divergence (discarded; the
        # state is restored anyway). fp16 with a GradScaler syncs in scaler.step() regardless.
        self.sync_every = 1 if self.device.type == "cpu" else ACCELERATOR_SYNC_EVERY

        self._snapshot = TorchSnapshot(
            [model] + ([criterion] if isinstance(criterion, torch.nn.Module) else []),
            self.optimizer if self._user_optimizer else None,
            extra_params=self._clip_params,
            scaler=self.scaler if user_scaler else None,
            generators=loader_generators(self.data, self.val_loader),
            cuda=torch.cuda.is_available()
            and (torch.cuda.is_initialized() or self.device.type == "cuda"),
            mps=self.device.type == "mps",
            snapshot_dir=_check_dir(snapshot_dir),
        )
        self._iterator: Iterator[Any] | None = None
        self._passes = 0
        self._started = False
        self._loss_kind: str | None = None  # "output", "cross_entropy", "mse" or "criterion"
        self._no_sync = getattr(model, "no_sync", None) if self.world_size > 1 else None

        self.info["criterion"] = _name(criterion) if criterion is not None else "inferred at the first batch"
        self.info["amp"] = ("off" if self.amp_dtype is None else str(self.amp_dtype).replace("torch.", "")
                            + (" with GradScaler" if self.scaler is not None else ""))
        self.info["device"] = str(self.device)
        self.info["world_size"] = self.world_size
        self.info["accumulation_steps"] = self.accumulation_steps
        if self.grad_clip is not None:
            self.info["grad_clip"] = self.grad_clip
        self.info["loss"] = "validation" if self.val_loader is not None else "training batch"
        if self.val_loader is not None:
            self.info["val_batches"] = self.val_batches if self.val_batches is not None else "all"
        self.info["snapshot"] = "CPU memory" if snapshot_dir is None else f"file in {snapshot_dir}"

    # -- the Trainer protocol ----------------------------------------------------------------

    def snapshot(self) -> None:
        self._snapshot.take()

    def step(self, lr: float) -> torch.Tensor:
        # a notebook cell under torch.no_grad() must not make backward() fail
        with torch.enable_grad():
            return self._step(lr)

    def _step(self, lr: float) -> torch.Tensor:
        if not self._started:
            self._begin()
        self._set_lr(lr)
        optimizer, scaler, k = self.optimizer, self.scaler, self.accumulation_steps
        optimizer.zero_grad(set_to_none=True)
        total: torch.Tensor | None = None
        for i in range(k):
            batch = self._next_batch()
            # under DDP, gradients need averaging over ranks only once per optimizer step
            sync = contextlib.nullcontext() if self._no_sync is None or i == k - 1 else self._no_sync()
            with sync:
                with self._autocast():
                    loss = self._batch_loss(batch)
                scaled = loss / k if k > 1 else loss
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
            loss = loss.detach()
            total = loss if total is None else total + loss
        assert total is not None
        if k > 1:
            total = total / k
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
            total = self._validation_loss()
        if self.world_size > 1:
            total = total.detach().float().clone()
            torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM)
            total = total / self.world_size
        return total

    def fetch_losses(self, losses: Sequence[Any]) -> list[float]:
        if not losses:
            return []
        if all(loss.device.type == "cpu" for loss in losses):
            return [float(loss) for loss in losses]
        # one device-to-host copy (one sync) for the whole block
        return torch.stack([loss.reshape(()).float() for loss in losses]).cpu().tolist()

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
                raise ValueError("data yielded no batches: give a DataLoader (or iterable) with at "
                                 "least one batch") from None
            raise ValueError(
                "data ran out and cannot be iterated again (it is an iterator or generator, "
                "which gives its batches only once); pass a DataLoader or a list of batches, "
                "which lrfinder cycles, or a smaller num_iter"
            ) from None

    def _validation_loss(self) -> torch.Tensor:
        self.model.eval()
        total: torch.Tensor | None = None
        count = 0
        with torch.no_grad():
            for batch in islice(iter(self.val_loader), self.val_batches):
                with self._autocast():
                    loss = self._batch_loss(batch).float()
                total = loss if total is None else total + loss
                count += 1
        self.model.train()
        if total is None:
            raise ValueError("val_loader yielded no batches: give it at least one")
        return total / count

    def _batch_loss(self, batch: Any) -> torch.Tensor:
        inputs, targets, labels_in_inputs = self._split(batch)
        inputs = _to_device(inputs, self.device)
        targets = _to_device(targets, self.device)
        output = _call(self.model, inputs)
        if self._loss_kind is None:
            self._loss_kind = self._choose_loss(output, targets, labels_in_inputs)
        kind = self._loss_kind
        if kind == "output":
            loss = _own_loss(output)
            if loss is None:
                raise ValueError("the model's output carried a loss on the first batch but not on "
                                 "this one; pass criterion= to compute it the same way every time")
        else:
            if targets is None:
                raise ValueError("this batch has no targets for the loss; every batch must be "
                                 "(inputs, targets) (or use batch_fn=)")
            predictions = _predictions(output)
            if kind == "criterion":
                assert self.criterion is not None
                loss = self.criterion(predictions, targets)
            elif kind == "cross_entropy":
                loss = torch.nn.functional.cross_entropy(predictions, targets)
            else:
                loss = torch.nn.functional.mse_loss(predictions, targets)
        return _scalar(loss)

    def _split(self, batch: Any) -> tuple[Any, Any, bool]:
        """``(model inputs, targets, whether the targets are among the inputs)`` of a batch."""
        if self.batch_fn is not None:
            parts = self.batch_fn(batch)
            if not (isinstance(parts, (tuple, list)) and len(parts) == 2):
                raise TypeError(f"batch_fn must return (inputs, targets), got "
                                f"{_describe(parts)}")
            return parts[0], parts[1], False
        if isinstance(batch, Mapping):
            if self.criterion is not None:
                if LABELS not in batch:
                    raise TypeError(
                        f"a dict batch needs its targets under {LABELS!r} for criterion=; it has "
                        f"keys {sorted(map(str, batch))}; use batch_fn= to say what to use"
                    )
                inputs = {key: value for key, value in batch.items() if key != LABELS}
                return inputs, batch[LABELS], False
            # Hugging Face style: the model takes the labels and computes its own loss
            return dict(batch), batch.get(LABELS), True
        if isinstance(batch, torch.Tensor):
            return batch, None, False
        if isinstance(batch, (tuple, list)):
            if len(batch) == 2:
                return batch[0], batch[1], False
            if len(batch) == 1:
                return batch[0], None, False
        raise TypeError(
            f"cannot read a batch of {_describe(batch)}: batches must be (inputs, targets), "
            f"(inputs,), a tensor or a dict; pass batch_fn=lambda batch: (inputs, targets) "
            "for any other shape"
        )

    def _choose_loss(self, output: Any, targets: Any, labels_in_inputs: bool) -> str:
        """Decide, once, where the loss comes from, and record it in ``info``."""
        if self.criterion is not None:
            return "criterion"
        own = _own_loss(output)
        if own is not None:
            self.info["criterion"] = "the model's own loss (output.loss / output['loss'])"
            return "output"
        if targets is None:
            raise TypeError(
                "cannot infer the loss: the model's output carries none (no .loss or ['loss']) "
                "and the batches have no targets; pass criterion="
            )
        predictions = _predictions(output)
        if not isinstance(targets, torch.Tensor) or not isinstance(predictions, torch.Tensor):
            raise TypeError(
                f"cannot infer the loss from output {_describe(output)} and targets "
                f"{_describe(targets)}; pass criterion="
            )
        shapes = f"targets of shape {tuple(targets.shape)}, output of shape {tuple(predictions.shape)}"
        if targets.dtype in _INTEGER_TYPES:
            if predictions.ndim != targets.ndim + 1 or predictions.shape[:1] != targets.shape[:1]:
                raise ValueError(
                    f"integer targets read as class labels need (N, C) logits for cross-entropy, "
                    f"but got {shapes}; pass criterion="
                )
            self.info["criterion"] = "CrossEntropyLoss (inferred: integer class labels)"
            return "cross_entropy"
        if targets.is_floating_point():
            if predictions.shape != targets.shape:
                # MSE would broadcast (N, 1) against (N,) to (N, N) without a word
                raise ValueError(
                    f"floating targets mean mean squared error, which needs equal shapes, but got "
                    f"{shapes}; reshape one of them (e.g. targets.view(-1, 1)) or pass criterion="
                )
            self.info["criterion"] = "MSELoss (inferred: floating-point targets)"
            return "mse"
        raise TypeError(f"cannot infer a loss for targets of dtype {targets.dtype}; pass criterion=")


# -- helpers -----------------------------------------------------------------------------------

_INTEGER_TYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def _check_loader(data: Any, name: str) -> Any:
    if data is None:
        raise TypeError(f"find_lr(model, data): a PyTorch model needs {name}, a DataLoader "
                        "(or any re-iterable of batches)")
    if isinstance(data, tuple) and data and all(isinstance(x, torch.Tensor) for x in data):
        raise TypeError(
            f"{name} is a tuple of tensors, which would be read as one batch per tensor; wrap them: "
            "DataLoader(TensorDataset(inputs, targets), batch_size=..., shuffle=True)"
        )
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(
        data, (torch.utils.data.IterableDataset, torch.utils.data.DataLoader)
    ):
        raise TypeError(f"{name} is a Dataset, which yields single samples; wrap it: "
                        "DataLoader(dataset, batch_size=..., shuffle=True)")
    if not hasattr(data, "__iter__"):
        raise TypeError(f"{name} must be a DataLoader or an iterable of batches, got "
                        f"{type(data).__qualname__}")
    if _length(data) == 0:
        raise ValueError(f"{name} is empty (no batches); give it at least one batch (with "
                         "drop_last=True, a dataset smaller than batch_size gives none)")
    return data


def _length(data: Any) -> int | None:
    """``len(data)``, or None for iterables without one (generators, IterableDataset loaders)."""
    try:
        return len(data)
    except (TypeError, NotImplementedError):
        return None


def _resolve_device(device: str | torch.device) -> torch.device:
    """``device`` with its index filled in ("cuda" is "cuda:0" when that is the current one)."""
    resolved = torch.device(device)
    if resolved.type == "cuda" and resolved.index is None and torch.cuda.is_available():
        resolved = torch.device("cuda", torch.cuda.current_device())
    return resolved


def _check_dir(folder: str | os.PathLike[str] | None) -> Path | None:
    if folder is None:
        return None
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"snapshot_dir={str(folder)!r} is not an existing folder; create it, or "
                         "leave snapshot_dir out to keep the snapshot in memory")
    return path


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _check_optimizer(optimizer: Any) -> None:
    if isinstance(optimizer, type):
        raise TypeError(
            f"optimizer must be an optimizer object, got the class {optimizer.__qualname__}; "
            f"pass {optimizer.__qualname__}(model.parameters(), lr=...)"
        )
    needed = ("param_groups", "step", "zero_grad", "state_dict", "load_state_dict")
    missing = [name for name in needed if not hasattr(optimizer, name)]
    if missing:
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__qualname__} "
                        f"(no {', '.join(missing)})")


def _lr_ratios(optimizer: torch.optim.Optimizer) -> tuple[list[float], int]:
    """Each group's LR over the reference group's, and the reference: the first with an LR > 0."""
    lrs = [float(group["lr"]) for group in optimizer.param_groups]
    reference = next((index for index, lr in enumerate(lrs) if lr > 0), None)
    if reference is None:  # all zero: no ratio to keep, ramp every group alike
        return [1.0] * len(lrs), 0
    return [lr / lrs[reference] for lr in lrs], reference


def _amp_settings(amp: Any, device: torch.device) -> tuple[torch.dtype | None, Any, bool]:
    """(autocast dtype or None, GradScaler or None, whether the scaler is the user's)."""
    if amp is None or amp is False:
        return None, None, False
    if _is_scaler(amp):
        return torch.float16, amp, True
    if amp is True:
        dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
    elif isinstance(amp, str) and amp.lower() in _AMP_NAMES:
        dtype = _AMP_NAMES[amp.lower()]
    elif amp in (torch.bfloat16, torch.float16):
        dtype = amp
    else:
        raise ValueError(
            f"amp must be 'bf16', 'fp16', torch.bfloat16, torch.float16, True, False/None or a "
            f"torch.amp.GradScaler, got {amp!r}"
        )
    if dtype == torch.float16:  # fp16 gradients underflow without loss scaling
        return dtype, _new_scaler(device), False
    return dtype, None, False


def _is_scaler(value: Any) -> bool:
    return all(callable(getattr(value, name, None))
               for name in ("scale", "unscale_", "step", "update", "state_dict", "load_state_dict"))


def _new_scaler(device: torch.device) -> Any:
    amp_scaler = getattr(getattr(torch, "amp", None), "GradScaler", None)
    if amp_scaler is not None:  # torch >= 2.3
        return amp_scaler(device.type)
    return torch.cuda.amp.GradScaler()


def _move_module(model: torch.nn.Module, device: torch.device) -> None:
    """``model.to(device)`` that always keeps the Parameter objects (the optimizer holds them)."""
    with torch.no_grad():
        for module in model.modules():
            for param in module.parameters(recurse=False):
                param.data = param.data.to(device)
            for name, buffer in module.named_buffers(recurse=False):
                setattr(module, name, buffer.to(device))


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, Mapping):
        return {key: _to_device(item, device) for key, item in value.items()}
    if isinstance(value, (tuple, list)) and not hasattr(value, "_fields"):
        return type(value)(_to_device(item, device) for item in value)
    return value


def _call(model: torch.nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def _own_loss(output: Any) -> torch.Tensor | None:
    """The loss a model put in its output (Hugging Face style), or None."""
    loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
    return loss if isinstance(loss, torch.Tensor) else None


def _predictions(output: Any) -> Any:
    if isinstance(output, torch.Tensor):
        return output
    logits = output.get("logits") if isinstance(output, Mapping) else getattr(output, "logits", None)
    return logits if isinstance(logits, torch.Tensor) else output


def _scalar(loss: Any) -> torch.Tensor:
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"the loss must be a tensor, got {_describe(loss)}")
    if loss.ndim != 0:
        if loss.numel() != 1:
            raise ValueError(f"the loss must be a scalar, got shape {tuple(loss.shape)}; use a "
                             "criterion with reduction='mean'")
        loss = loss.reshape(())
    return loss


def _name(obj: Any) -> str:
    return getattr(obj, "__qualname__", None) or type(obj).__qualname__


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__qualname__}"

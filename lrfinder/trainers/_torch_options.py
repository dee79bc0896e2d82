"""The PyTorch trainer's options: checked, and resolved into what it runs with.

Each check raises as soon as something is wrong, with a message that names the option and says
what it takes; resolution fills in the defaults (the device, the mixed-precision scaler, AdamW).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from lrfinder.plan import MOMENTUM_CYCLED, MOMENTUM_NONE, MOMENTUM_SWITCHED_ON

#: Options ``make()`` takes; everything else find_lr passes is rejected with a TypeError.
OPTIONS = frozenset(
    {
        "optimizer",
        "criterion",
        "val_loader",
        "val_batches",
        "accumulation_steps",
        "amp",
        "grad_clip",
        "device",
        "batch_fn",
        "snapshot_dir",
    }
)

#: Why an option find_lr knows does not apply here (for the error message).
NOT_HERE = {
    "batch_size": "the DataLoader sets the batch size",
    "shuffle": "give the DataLoader shuffle=True instead",
    "snapshot": "it is for step functions; the model's state is saved automatically",
    "restore": "it is for step functions; the model's state is restored automatically",
}

_AMP_NAMES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
}


def check_loader(data: Any, name: str) -> Any:
    """``data`` if it is a re-iterable of batches with at least one; TypeError/ValueError if not."""
    if data is None:
        raise TypeError(
            f"find_lr(model, data): a PyTorch model needs {name}, a DataLoader "
            "(or any re-iterable of batches)"
        )
    if isinstance(data, tuple) and data and all(isinstance(x, torch.Tensor) for x in data):
        raise TypeError(
            f"{name} is a tuple of tensors, which would be read as one batch per tensor; wrap them: "
            "DataLoader(TensorDataset(inputs, targets), batch_size=..., shuffle=True)"
        )
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(
        data, (torch.utils.data.IterableDataset, torch.utils.data.DataLoader)
    ):
        raise TypeError(
            f"{name} is a Dataset, which yields single samples; wrap it: "
            "DataLoader(dataset, batch_size=..., shuffle=True)"
        )
    if not hasattr(data, "__iter__"):
        raise TypeError(
            f"{name} must be a DataLoader or an iterable of batches, got {type(data).__qualname__}"
        )
    if length(data) == 0:
        raise ValueError(
            f"{name} is empty (no batches); give it at least one batch (with "
            "drop_last=True, a dataset smaller than batch_size gives none)"
        )
    return data


def read_ahead(data: Any) -> int:
    """Batches a DataLoader's worker processes fetch ahead of the one being used in each pass:
    ``num_workers * prefetch_factor`` (0 without workers, or for another iterable)."""
    if not isinstance(data, torch.utils.data.DataLoader) or data.num_workers <= 0:
        return 0
    return int(data.num_workers) * int(data.prefetch_factor or 2)


def check_validation(val_loader: Any, val_batches: Any) -> tuple[Any, int | None]:
    """``(val_loader, val_batches)`` checked: a loader, and a batch count it can give.

    Raises:
        TypeError: ``val_batches`` without ``val_loader``, or not an integer.
        ValueError: ``val_batches`` < 1, or a loader without a length and no ``val_batches``.
    """
    loader = None if val_loader is None else check_loader(val_loader, "val_loader")
    if val_batches is not None:
        if val_loader is None:
            raise TypeError("val_batches only applies with val_loader=")
        return loader, positive_int(val_batches, "val_batches")
    if val_loader is not None and length(val_loader) is None:
        raise ValueError(
            "val_loader has no length, so it may never end: give val_batches= "
            "(how many of its batches make one step's validation loss)"
        )
    return loader, None


def length(data: Any) -> int | None:
    """``len(data)``, or None for iterables without one (generators, IterableDataset loaders)."""
    try:
        return len(data)
    except (TypeError, NotImplementedError):
        return None


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` with its index filled in ("cuda" is "cuda:0" when that is the current one)."""
    resolved = torch.device(device)
    if resolved.type == "cuda" and resolved.index is None and torch.cuda.is_available():
        resolved = torch.device("cuda", torch.cuda.current_device())
    return resolved


def check_dir(folder: str | os.PathLike[str] | None) -> Path | None:
    """``snapshot_dir`` as a Path (None stays None); ValueError unless it is an existing folder."""
    if folder is None:
        return None
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(
            f"snapshot_dir={str(folder)!r} is not an existing folder; create it, or "
            "leave snapshot_dir out to keep the snapshot in memory"
        )
    return path


def positive_int(value: Any, name: str) -> int:
    """``value`` if it is an integer >= 1 (not a bool); TypeError or ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def check_grad_clip(grad_clip: Any) -> float | None:
    """``grad_clip`` as a float (None stays None); ValueError unless it is a positive number."""
    if grad_clip is not None and not (isinstance(grad_clip, (int, float)) and grad_clip > 0):
        raise ValueError(f"grad_clip must be a positive number (the max gradient norm), got {grad_clip!r}")
    return None if grad_clip is None else float(grad_clip)


def check_callable(value: Any, name: str, usage: str) -> Any:
    """``value`` if it is None or callable; TypeError saying it must be callable as ``usage``."""
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable as {usage}, got {type(value).__qualname__}")
    return value


def check_optimizer(optimizer: Any) -> None:
    """TypeError unless ``optimizer`` is an optimizer object (not its class)."""
    if isinstance(optimizer, type):
        raise TypeError(
            f"optimizer must be an optimizer object, got the class {optimizer.__qualname__}; "
            f"pass {optimizer.__qualname__}(model.parameters(), lr=...)"
        )
    needed = ("param_groups", "step", "zero_grad", "state_dict", "load_state_dict")
    missing = [name for name in needed if not hasattr(optimizer, name)]
    if missing:
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__qualname__} "
            f"(no {', '.join(missing)})"
        )


def default_optimizer(params: list[torch.nn.Parameter]) -> tuple[torch.optim.Optimizer, dict[str, str]]:
    """AdamW with torch's defaults over the trainable ``params``, and what ``info`` says of it.

    Raises:
        ValueError: No parameter requires grad.
    """
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise ValueError(
            "no parameter of the model requires grad, so there is nothing to "
            "train; unfreeze some, or pass optimizer="
        )
    optimizer = torch.optim.AdamW(trainable)
    defaults = {k: optimizer.defaults[k] for k in ("betas", "eps", "weight_decay")}
    info = {
        "optimizer": "AdamW " + ", ".join(f"{k}={v}" for k, v in defaults.items()),
        "optimizer_built": "by lrfinder (no optimizer= given); pass yours if you train with another "
        "optimizer",
    }
    return optimizer, info


def lr_ratios(optimizer: torch.optim.Optimizer) -> tuple[list[float], int]:
    """Each group's LR over the reference group's, and the reference: the first with an LR > 0."""
    lrs = [float(group["lr"]) for group in optimizer.param_groups]
    reference = next((index for index, lr in enumerate(lrs) if lr > 0), None)
    if reference is None:  # all zero: no ratio to keep, ramp every group alike
        return [1.0] * len(lrs), 0
    return [lr / lrs[reference] for lr in lrs], reference


def onecycle_momentum_kind(optimizer: torch.optim.Optimizer) -> str:
    """How ``OneCycleLR``'s defaults treat ``optimizer``'s momentum.

    ``"cycled"``: it has betas (beta1 is cycled) or a momentum above 0; ``"switched on"``: its
    momentum is 0 in every param group (plain SGD, RMSprop), and OneCycleLR cycles it from 0.95
    all the same; ``"none"``: it has neither (Adagrad), and OneCycleLR refuses to cycle.
    """
    if "betas" in optimizer.defaults:
        return MOMENTUM_CYCLED
    if "momentum" in optimizer.defaults:
        off = all(not group.get("momentum") for group in optimizer.param_groups)
        return MOMENTUM_SWITCHED_ON if off else MOMENTUM_CYCLED
    return MOMENTUM_NONE


def set_momentum(optimizer: torch.optim.Optimizer, momentum: float) -> None:
    """Set every param group's momentum, or beta1 for an optimizer with betas, as OneCycleLR does."""
    beta1 = "betas" in optimizer.defaults
    for group in optimizer.param_groups:
        if beta1:
            group["betas"] = (momentum, *group["betas"][1:])
        else:
            group["momentum"] = momentum


def amp_settings(amp: Any, device: torch.device) -> tuple[torch.dtype | None, Any, bool]:
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


def amp_name(dtype: torch.dtype | None, scaler: Any) -> str:
    """How ``info["amp"]`` says the mixed precision: ``off``, ``bfloat16``, ``float16 with GradScaler``."""
    if dtype is None:
        return "off"
    return str(dtype).replace("torch.", "") + (" with GradScaler" if scaler is not None else "")


def distributed_rank() -> tuple[int, int]:
    """``(world size, rank)`` of the ``torch.distributed`` run, ``(1, 0)`` outside one."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if not distributed:
        return 1, 0
    return torch.distributed.get_world_size(), torch.distributed.get_rank()


def name_of(obj: Any) -> str:
    """A function's or class's qualified name, or the qualified name of an object's type."""
    return getattr(obj, "__qualname__", None) or type(obj).__qualname__


def _is_scaler(value: Any) -> bool:
    return all(
        callable(getattr(value, name, None))
        for name in ("scale", "unscale_", "step", "update", "state_dict", "load_state_dict")
    )


def _new_scaler(device: torch.device) -> Any:
    amp_scaler = getattr(getattr(torch, "amp", None), "GradScaler", None)
    if amp_scaler is not None:  # torch >= 2.3
        return amp_scaler(device.type)
    return torch.cuda.amp.GradScaler()

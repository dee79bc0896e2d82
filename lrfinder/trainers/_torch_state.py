"""Saving, and putting back bit for bit, everything a PyTorch range test changes.

The snapshot lives in CPU memory (a model on a GPU must not need twice its size there) or, with
``snapshot_dir``, in a uniquely named temporary file holding only tensors and plain containers,
so that ``torch.load(weights_only=True)`` reads it and two runs never share a file. Restoring
copies values back into the very same Parameter and buffer objects, so optimizers, hooks and
user references keep pointing at live tensors.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["TorchSnapshot", "loader_generators"]


def _to_cpu(value: Any) -> Any:
    """A deep copy of ``value`` whose tensors are detached CPU clones (never aliases)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_to_cpu(item) for item in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_to_cpu(item) for item in value)
    return value  # numbers, strings, None, booleans: immutable


def loader_generators(*loaders: Any) -> list[torch.Generator]:
    """The ``torch.Generator`` objects a DataLoader draws its shuffling and seeds from."""
    found: list[torch.Generator] = []
    for loader in loaders:
        if loader is None:
            continue
        batch_sampler = getattr(loader, "batch_sampler", None)
        for owner in (loader, getattr(loader, "sampler", None), getattr(batch_sampler, "sampler", None)):
            generator = getattr(owner, "generator", None)
            if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
                found.append(generator)
    return found


class TorchSnapshot:
    """The state of a model, its optimizer, a GradScaler and every random generator involved.

    Args:
        modules: The model first, then any other module whose parameters may be trained (a
            criterion with weights); their parameters, gradients, buffers and train/eval flags
            are saved.
        optimizer: The user's optimizer, whose ``state_dict`` is saved (None when lrfinder built
            the optimizer itself: there is nothing of the user's to put back).
        extra_params: Parameters the optimizer trains that no module above holds.
        scaler: The user's GradScaler, or None.
        generators: ``torch.Generator`` objects owned by the data loaders.
        cuda: Also save the CUDA generators of every device.
        mps: Also save the MPS generator.
        snapshot_dir: Folder for an on-disk snapshot of tensors; None keeps them in CPU memory.
        loaders: The DataLoaders the sweep reads. One with ``persistent_workers=True`` whose
            workers the sweep started is shut down again on restore, so that its next pass starts
            fresh workers exactly as it would have without the range test. Workers already running
            before the sweep cannot be put back (a ``RuntimeWarning`` says so at the snapshot).
    """

    def __init__(
        self,
        modules: Sequence[torch.nn.Module],
        optimizer: torch.optim.Optimizer | None,
        extra_params: Iterable[torch.nn.Parameter] = (),
        scaler: Any = None,
        generators: Sequence[torch.Generator] = (),
        cuda: bool = False,
        mps: bool = False,
        snapshot_dir: str | os.PathLike[str] | None = None,
        loaders: Sequence[Any] = (),
    ) -> None:
        self._loaders = [loader for loader in loaders if _has_persistent_workers(loader)]
        self._running: list[bool] = []
        self._params: list[torch.nn.Parameter] = []
        seen: set[int] = set()
        for param in [p for m in modules for p in m.parameters()] + list(extra_params):
            if id(param) not in seen:  # tied weights are saved once
                seen.add(id(param))
                self._params.append(param)
        # (owner module, attribute name): buffers are put back by name, in case a module
        # replaced one during the sweep instead of updating it in place.
        self._buffer_slots: list[tuple[torch.nn.Module, str]] = [
            (owner, name)
            for module in modules
            for owner in module.modules()
            for name, _ in owner.named_buffers(recurse=False)
        ]
        self._flags: list[tuple[torch.nn.Module, bool]] = [
            (owner, owner.training) for module in modules for owner in module.modules()
        ]
        self._optimizer = optimizer
        self._scaler = scaler
        self._generators = list(generators)
        self._cuda = cuda
        self._mps = mps
        self._dir = None if snapshot_dir is None else Path(snapshot_dir)
        self._saved: dict[str, Any] | None = None
        self._file: Path | None = None
        self._optimizer_objects: _OptimizerObjects | None = None

    # -- taking ------------------------------------------------------------------------------

    def take(self) -> None:
        """Save everything; changes nothing. On failure, no file is left behind."""
        self._running = [loader._iterator is not None for loader in self._loaders]
        if any(self._running):
            warnings.warn(
                "lrfinder: a DataLoader with persistent_workers=True already has its worker processes "
                "running; the range test restores its sampling order (the generator), but not the "
                "state inside those processes (the random state of augmentations done in workers, "
                "the position of an IterableDataset), so its next pass may differ from the one it "
                "would have given; run the range test before iterating that loader to avoid this",
                RuntimeWarning,
                stacklevel=4,
            )
        params = [p.detach() for p in self._params]
        grads = [None if p.grad is None else p.grad.detach() for p in self._params]
        buffers = [getattr(owner, name) for owner, name in self._buffer_slots]
        buffers = [None if b is None else b.detach() for b in buffers]
        optimizer_state = None if self._optimizer is None else self._optimizer.state_dict()
        self._optimizer_objects = None if self._optimizer is None else _OptimizerObjects(self._optimizer)
        saved: dict[str, Any] = {
            # where each tensor lived, so that a sweep that moved the model is undone exactly
            "param_places": [(p.device, p.dtype) for p in params],
            "buffer_places": [None if b is None else (b.device, b.dtype) for b in buffers],
            "flags": [flag for _, flag in self._flags],
            "requires_grad": [p.requires_grad for p in self._params],
            "scaler": None if self._scaler is None else _to_cpu(self._scaler.state_dict()),
            "rng": self._rng_states(),
        }
        tensors = {"params": params, "grads": grads, "buffers": buffers, "optimizer": optimizer_state}
        if self._dir is None:
            saved.update(_to_cpu(tensors))
        else:
            self._file = self._write(tensors)
        self._saved = saved

    def _write(self, tensors: dict[str, Any]) -> Path:
        assert self._dir is not None
        try:
            fd, name = tempfile.mkstemp(prefix=".lrfinder-snapshot-", suffix=".pt", dir=self._dir)
        except OSError as error:
            raise OSError(
                f"snapshot_dir={str(self._dir)!r}: cannot create the snapshot file there ({error}); "
                "give a writable folder, or leave snapshot_dir out to keep the snapshot in memory"
            ) from error
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as handle:
                # torch.save copies one storage at a time to the host, never the whole model
                torch.save(tensors, handle)
        except BaseException as error:
            with contextlib.suppress(OSError):
                path.unlink()
            cause = _os_error(error)
            if cause is not None:
                full = cause.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
                raise OSError(
                    cause.errno,
                    f"snapshot_dir={str(self._dir)!r}: writing the snapshot of the model's state "
                    f"failed ({'the disk is full' if full else cause.strerror or cause}); "
                    + (
                        "free some space there, give a folder on a disk with room for the model "
                        "and optimizer state, "
                        if full
                        else "give another folder, "
                    )
                    + "or leave snapshot_dir out to keep the snapshot in memory; nothing was changed",
                ) from error
            raise
        return path

    def _rng_states(self) -> dict[str, Any]:
        states: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),
            "python": random.getstate(),
            "generators": [g.get_state() for g in self._generators],
        }
        if self._cuda:
            states["cuda"] = torch.cuda.get_rng_state_all()
        if self._mps:
            states["mps"] = torch.mps.get_rng_state()
        return states

    # -- restoring ---------------------------------------------------------------------------

    def restore(self) -> None:
        """Put everything back and free the snapshot (and delete its file), in every case.

        Each part is restored even when another fails; the first failure is raised at the end.
        """
        saved, self._saved = self._saved, None
        if saved is None:
            return
        path, self._file = self._file, None
        objects, self._optimizer_objects = self._optimizer_objects, None
        errors: list[BaseException] = []

        def attempt(action: Callable[[], None]) -> None:
            try:
                action()
            except Exception as error:  # keep restoring the rest, report the first at the end
                errors.append(error)

        def load() -> None:
            assert path is not None
            try:
                loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception as error:
                raise RuntimeError(
                    f"lrfinder: the snapshot file {path} could not be read back ({error}); the "
                    "parameters, buffers and optimizer state were NOT restored (the random "
                    "generators and train/eval flags were)"
                ) from error
            # the mapping must not outlive the file: copy what is kept beyond this call
            loaded["optimizer"] = _to_cpu(loaded["optimizer"])
            saved.update(loaded)

        try:
            if path is not None:
                attempt(load)
            if "params" in saved:  # not when the file could not be read
                attempt(lambda: self._restore_tensors(saved))
                optimizer = self._optimizer
                if optimizer is not None:
                    attempt(lambda: _load_in_place(optimizer, saved["optimizer"], objects))
            if self._scaler is not None:
                attempt(lambda: self._scaler.load_state_dict(saved["scaler"]))
            attempt(lambda: self._restore_flags(saved))
            attempt(lambda: self._restore_rng(saved["rng"]))
            attempt(self._stop_new_workers)
        finally:
            saved.clear()
            if path is not None:
                try:
                    path.unlink()
                except OSError as error:
                    warnings.warn(
                        f"lrfinder: could not delete the snapshot file {path}: {error}",
                        RuntimeWarning,
                        stacklevel=2,
                    )
        if errors:
            raise errors[0]

    def _restore_tensors(self, saved: dict[str, Any]) -> None:
        with torch.no_grad():
            for param, value, grad, (device, dtype), flag in zip(
                self._params,
                saved["params"],
                saved["grads"],
                saved["param_places"],
                saved["requires_grad"],
                strict=True,
            ):
                param.grad = None
                if param.device == device and param.dtype == dtype:
                    param.copy_(value)
                else:  # the sweep moved it: put it back where it was (the Parameter stays the same)
                    param.data = value.to(device=device, dtype=dtype, copy=True)
                if grad is not None:
                    param.grad = grad.to(device=device, copy=True)
                param.requires_grad_(flag)
            for (owner, name), value, place in zip(
                self._buffer_slots, saved["buffers"], saved["buffer_places"], strict=True
            ):
                current = getattr(owner, name)
                if value is None:
                    setattr(owner, name, None)
                elif (
                    isinstance(current, torch.Tensor)
                    and (current.device, current.dtype) == place
                    and current.shape == value.shape
                ):
                    current.copy_(value)
                else:
                    setattr(owner, name, value.to(device=place[0], dtype=place[1], copy=True))

    def _stop_new_workers(self) -> None:
        """Shut down persistent workers that the sweep started, so that the loader's next pass
        starts them afresh (drawing its seeds from the restored generator) as it would have."""
        for loader, running in zip(self._loaders, self._running, strict=True):
            started, loader._iterator = loader._iterator, (loader._iterator if running else None)
            if not running and started is not None:
                with contextlib.suppress(Exception):
                    started._shutdown_workers()

    def _restore_flags(self, saved: dict[str, Any]) -> None:
        for (module, _), flag in zip(self._flags, saved["flags"], strict=True):
            module.training = flag  # the attribute, not train(): an overridden train() may do more

    def _restore_rng(self, states: dict[str, Any]) -> None:
        torch.set_rng_state(states["torch"])
        np.random.set_state(states["numpy"])
        random.setstate(states["python"])
        for generator, state in zip(self._generators, states["generators"], strict=True):
            generator.set_state(state)
        if "cuda" in states:
            torch.cuda.set_rng_state_all(states["cuda"])
        if "mps" in states:
            torch.mps.set_rng_state(states["mps"])

    @property
    def file(self) -> Path | None:
        """The on-disk snapshot while one exists."""
        return self._file


def _has_persistent_workers(loader: Any) -> bool:
    return (
        isinstance(loader, torch.utils.data.DataLoader)
        and bool(getattr(loader, "persistent_workers", False))
        and getattr(loader, "num_workers", 0) > 0
        and hasattr(loader, "_iterator")
    )


def _os_error(error: BaseException) -> OSError | None:
    """The ``OSError`` behind ``error`` (torch.save wraps some of them in a RuntimeError)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    text = str(error)
    if "No space left on device" in text or "file write failed" in text:
        return OSError(errno.ENOSPC, text)
    return None


class _OptimizerObjects:
    """The objects a user may hold into an optimizer: its ``param_groups`` list and dicts, tensor
    hyper-parameters (a tensor LR), its ``state`` mapping, each parameter's state dict and tensors.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.groups_list = optimizer.param_groups
        self.groups = list(optimizer.param_groups)
        self.group_values = [dict(group) for group in optimizer.param_groups]
        self.state = optimizer.state
        self.per_param = {param: (values, dict(values)) for param, values in optimizer.state.items()}


def _load_in_place(
    optimizer: torch.optim.Optimizer, state_dict: dict[str, Any], objects: _OptimizerObjects | None
) -> None:
    """``optimizer.load_state_dict(state_dict)``, then the values moved back into the objects
    that existed at the snapshot, so that a ``param_groups[0]`` (or a tensor LR) the user holds
    still controls the optimizer.

    ``load_state_dict`` does the casting (each state tensor to its parameter's device and dtype);
    tensors that kept their shape, dtype and device are then copied into the old tensor objects.
    """
    optimizer.load_state_dict(state_dict)
    if objects is None:
        return
    if len(objects.groups) != len(optimizer.param_groups):
        return  # the user added a param group during the sweep: torch's own objects stand
    for group, old_values, loaded in zip(
        objects.groups, objects.group_values, optimizer.param_groups, strict=True
    ):
        fresh = {key: _reuse(old_values.get(key), value) for key, value in loaded.items()}
        group.clear()
        group.update(fresh)
    objects.groups_list[:] = objects.groups
    optimizer.param_groups = objects.groups_list
    loaded_state = optimizer.state
    objects.state.clear()
    for param, values in loaded_state.items():
        holder, old_values = objects.per_param.get(param, ({}, {}))
        fresh = {key: _reuse(old_values.get(key), value) for key, value in values.items()}
        holder.clear()
        holder.update(fresh)
        objects.state[param] = holder
    optimizer.state = objects.state


def _reuse(old: Any, new: Any) -> Any:
    """``old`` holding ``new``'s value when both are tensors (or lists) of one layout, else ``new``."""
    if (
        isinstance(old, torch.Tensor)
        and isinstance(new, torch.Tensor)
        and old.shape == new.shape
        and old.dtype == new.dtype
        and old.device == new.device
        and not old.requires_grad
    ):
        with torch.no_grad():
            old.copy_(new)
        return old
    if isinstance(old, list) and isinstance(new, list) and old is not new:
        old[:] = new
        return old
    return new

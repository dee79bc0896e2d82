"""Writing files whole or not at all, and the JSON form of numbers in saved results.

JSON has no NaN or infinity: :func:`encode` writes NaN as ``null`` and infinities as ``"inf"`` and
``"-inf"``; :func:`decode` and :func:`decode_number` read them back.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import stat
from pathlib import Path
from typing import Any

import numpy as np

#: Tries at a fresh temporary name before giving up (names are 64 random bits).
_NAME_TRIES = 16


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    A reader never sees a half-written file, and an existing file is only replaced once the new
    one is complete and flushed to disk (``fsync`` before the rename). The process umask is never
    changed (other threads may be creating files): a new file gets the mode ``open()`` would give
    it (0666 less the umask), and an existing file keeps its mode. A symbolic link is followed:
    the file it points to is replaced and the link itself stays. Raises ``OSError`` (with the path
    in its message) when the folder is missing or not writable.

    Returns:
        ``path`` as given, as a :class:`~pathlib.Path`.
    """
    given = Path(path)
    target = Path(os.path.realpath(given))
    try:
        mode: int | None = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = None
    fd, tmp = _create_temporary(target)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if mode is not None:
                os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(target.parent)
    return given


def check_writable(path: str | os.PathLike[str]) -> None:
    """Raise ``OSError`` unless :func:`atomic_write_bytes` could create its temporary file for ``path``.

    The same test the write will face (same folder, links followed, same flags), without writing.
    """
    fd, tmp = _create_temporary(Path(os.path.realpath(path)))
    os.close(fd)
    os.unlink(tmp)


def _create_temporary(target: Path) -> tuple[int, str]:
    """A new file beside ``target``, opened for writing, created with mode 0666 less the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(_NAME_TRIES):
        name = str(target.parent / f".{target.name}.{secrets.token_hex(8)}.tmp")
        try:
            return os.open(name, flags, 0o666), name
        except FileExistsError:
            continue
    raise FileExistsError(f"could not find a free temporary name beside {target}")


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable where the platform allows it (not on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


# -- non-finite numbers in JSON ------------------------------------------------------------------

NON_FINITE = {"inf": math.inf, "-inf": -math.inf}


def encode(value: Any) -> Any:
    """``value`` made JSON-ready: NaN becomes ``null``, infinities ``"inf"``/``"-inf"``, NumPy
    scalars Python numbers, tuples lists, keys strings, and anything else its ``str``."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, (np.floating, np.integer)):
        return encode(value.item())
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def decode(value: Any) -> Any:
    """Undo :func:`encode` in free-form data (settings, info): ``"inf"``/``"-inf"`` become
    infinities; ``null`` stays None, since there it need not have been a number."""
    if isinstance(value, str) and value in NON_FINITE:
        return NON_FINITE[value]
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        return {k: decode(v) for k, v in value.items()}
    return value


def decode_number(value: Any, where: str = "the value") -> float:
    """A number written by :func:`encode`: ``null`` is NaN, ``"inf"``/``"-inf"`` are infinities.

    Raises:
        ValueError: Anything else that is not a number (``where`` names the field).
    """
    if value is None:
        return math.nan
    if isinstance(value, str) and value in NON_FINITE:
        return NON_FINITE[value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f'{where} must be a number (null for NaN, "inf" or "-inf"), got {value!r}')
    return float(value)

"""Writing files whole or not at all, and the JSON form of numbers in saved results.

JSON has no NaN or infinity: :func:`encode` writes NaN as ``null`` and infinities as ``"inf"`` and
``"-inf"``; :func:`decode` and :func:`decode_number` read them back. The ``read_*`` helpers check
one field of a loaded file each and raise ``ValueError`` naming the field (``plan.train_steps``,
``confirmation.probes[2].score``), what it holds and what a valid one is.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import stat
from collections.abc import Collection
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
        raise ValueError(f'{where} must be a number (null for NaN, "inf" or "-inf"), got {describe(value)}')
    return float(value)


# -- checking the fields of a loaded file ----------------------------------------------------------

#: Stands for "no default": the field must be there.
REQUIRED: Any = object()


def describe(value: Any) -> str:
    """``value`` as a message shows it: its JSON type, and the value itself when short."""
    kinds = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    kind = next((name for cls, name in kinds.items() if isinstance(value, cls)), type(value).__name__)
    text = repr(value)
    return f"{kind} ({text})" if len(text) <= 40 else kind


def read_object(value: Any, where: str, shape: str = "") -> dict[str, Any]:
    """``value`` if it is a JSON object, else ``ValueError`` (``shape``: what a valid one holds)."""
    if not isinstance(value, dict):
        raise ValueError(
            f"{where} must be a JSON object{' ' + shape if shape else ''}, got {describe(value)}"
        )
    return value


def read_list(value: Any, where: str, shape: str = "") -> list[Any]:
    """``value`` if it is a JSON array, else ``ValueError``."""
    if not isinstance(value, list):
        raise ValueError(f"{where} must be an array{' ' + shape if shape else ''}, got {describe(value)}")
    return value


def read_field(data: dict[str, Any], key: str, where: str, default: Any = REQUIRED, shape: str = "") -> Any:
    """``data[key]``, or ``default``; ``ValueError`` naming ``where.key`` when it is required (and
    saying what ``where`` holds, when ``shape`` does)."""
    if key in data:
        return data[key]
    if default is REQUIRED:
        missing = f"{where}.{key} is missing" if where else f"the field {key!r} is missing"
        raise ValueError(f"{missing}; {where} must be a JSON object {shape}" if shape and where else missing)
    return default


def read_int(value: Any, where: str, minimum: int = 0) -> int:
    """``value`` if it is an integer ``>= minimum`` (not a boolean, not ``2.0``), else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{where} must be an integer >= {minimum}, got {describe(value)}")
    return value


def read_optional_int(value: Any, where: str, minimum: int = 0) -> int | None:
    """None for ``null``, else :func:`read_int`."""
    return None if value is None else read_int(value, where, minimum)


def read_float(value: Any, where: str, *, positive: bool = False, or_null: bool = False) -> float:
    """``value`` as a float if it is a finite number (> 0 when ``positive``), else ``ValueError``
    (saying null would do too when ``or_null``: see :func:`read_optional_float`)."""
    number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    if not math.isfinite(number) or (positive and number <= 0):
        wanted = "a finite number" + (" > 0" if positive else "") + (" or null" if or_null else "")
        raise ValueError(f"{where} must be {wanted}, got {describe(value)}")
    return number


def read_optional_float(value: Any, where: str, *, positive: bool = False) -> float | None:
    """None for ``null``, else :func:`read_float`."""
    return None if value is None else read_float(value, where, positive=positive, or_null=True)


def read_str(value: Any, where: str, choices: Collection[str] = (), *, or_null: bool = False) -> str:
    """``value`` if it is a string (one of ``choices`` when given), else ``ValueError`` listing the
    choices (saying null would do too when ``or_null``: see :func:`read_optional_str`)."""
    if not isinstance(value, str) or (choices and value not in choices):
        wanted = f"one of {', '.join(map(repr, choices))}" if choices else "a string"
        raise ValueError(f"{where} must be {wanted}{' or null' if or_null else ''}, got {describe(value)}")
    return value


def read_optional_str(value: Any, where: str, choices: Collection[str] = ()) -> str | None:
    """None for ``null``, else :func:`read_str`."""
    return None if value is None else read_str(value, where, choices, or_null=True)

"""Holding Ctrl-C back while lrfinder puts the user's state back.

Python delivers SIGINT as a ``KeyboardInterrupt`` between any two bytecodes, so a second Ctrl-C
pressed while a restore runs would leave a model half-restored. Signal handlers can only be set
from the main thread of the main interpreter; elsewhere these helpers do nothing, and Python's
usual behaviour applies.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["SigintFlag", "defer_sigint"]


def _can_handle_signals() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def defer_sigint() -> Iterator[list[int]]:
    """Hold SIGINT while the block runs; yield a list that gets one entry per SIGINT held.

    The previous handler is put back on exit; the caller decides what a held Ctrl-C means
    (usually: raise ``KeyboardInterrupt`` once the block has finished). Outside the main thread
    the block runs unprotected and the list stays empty.
    """
    held: list[int] = []
    if not _can_handle_signals():
        yield held
        return

    def hold(signum: int, frame: Any) -> None:
        held.append(signum)

    try:
        previous = signal.signal(signal.SIGINT, hold)
    except ValueError:  # not the main interpreter
        yield held
        return
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, previous)


class SigintFlag:
    """Turn the first Ctrl-C into a flag that a loop reads at a point of its choosing.

    Used by distributed trainers, whose ranks must all stop at the same step: a
    ``KeyboardInterrupt`` raised in the middle of one rank's collective would leave the others
    waiting. A second Ctrl-C raises ``KeyboardInterrupt`` at once, as an escape hatch. Outside the
    main thread :meth:`install` does nothing and Ctrl-C keeps its usual behaviour.
    """

    def __init__(self) -> None:
        self.raised = False
        self._previous: Any = None
        self._installed = False

    def install(self) -> None:
        """Start catching SIGINT into :attr:`raised` (the main thread only)."""
        if self._installed or not _can_handle_signals():
            return
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:
            return
        self._installed = True
        self.raised = False

    def uninstall(self) -> None:
        """Put the previous SIGINT handler back."""
        if self._installed:
            self._installed = False
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True

"""Exceptions that lrfinder raises for the caller to catch, and :func:`add_note` for the context it
attaches to the others."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lrfinder.result import LRFinderResult

__all__ = ["OtherRankFailed", "RangeTestInterrupted", "add_note"]


class RangeTestInterrupted(KeyboardInterrupt):
    """Ctrl-C (or a ``KeyboardInterrupt`` from a callback) ended a range test.

    Raised after the model's state was put back, following Python's convention that an
    interrupt stops the program rather than letting its next line run with a half-read curve. It
    is a ``KeyboardInterrupt``, so code that does not catch it stops as before. In a notebook,
    catch it to look at what was recorded:

    >>> try:                                                   # doctest: +SKIP
    ...     result = lrfinder.find_lr(model, loader)
    ... except lrfinder.RangeTestInterrupted as stop:
    ...     stop.result.plot()

    Attributes:
        result: The partial :class:`~lrfinder.result.LRFinderResult` (``stop_reason`` is
            ``"interrupted"``), set by :func:`lrfinder.find_lr`; None when raised by
            :func:`lrfinder.run_sweep`, which sets :attr:`outcome` instead.
        outcome: The partial :class:`~lrfinder.sweep.SweepOutcome`.
        restored: Whether the state was put back (False only when the restore itself failed;
            then a note on the exception says how).
    """

    def __init__(self, message: str, outcome: Any = None, restored: bool = True) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.result: LRFinderResult | None = None
        self.restored = restored


class OtherRankFailed(RuntimeError):
    """Another process of a distributed range test failed, so this one stopped at the same step.

    Every rank learns of a failure at the step where it happened, restores its state and raises:
    the failing rank its own exception, the others this one, naming the rank and its error.

    Attributes:
        rank: The rank that failed (the lowest one when several did).
    """

    def __init__(self, message: str, rank: int) -> None:
        super().__init__(message)
        self.rank = rank


def add_note(error: BaseException, note: str) -> None:
    """Attach ``note`` to ``error`` (shown under its traceback), e.g. which step raised it and
    whether the model's state was restored. A no-op before Python 3.11, which has no notes."""
    if hasattr(error, "add_note"):
        error.add_note(note)

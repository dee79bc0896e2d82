"""Learning-rate ladders for the range test, in closed form.

Each function returns the whole ladder as a float64 array of shape ``(num_iter,)`` whose first and
last entries are exactly ``start_lr`` and ``end_lr``. A closed form (rather than a scheduler stepped
once per batch) keeps every step of the ladder even, the first one included.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

Mode = Literal["exp", "linear"]
MODES: tuple[str, ...] = ("exp", "linear")
#: Most steps a range test may take. A few hundred are enough; the bound keeps a typo such as
#: ``num_iter=10_000_000`` from running for hours at growing memory.
MAX_NUM_ITER = 100_000


def check_range(start_lr: float, end_lr: float, num_iter: int) -> None:
    """Raise ``ValueError`` unless ``0 < start_lr < end_lr`` (both finite) and
    ``2 <= num_iter <=`` :data:`MAX_NUM_ITER`."""
    if isinstance(num_iter, bool) or not isinstance(num_iter, (int, np.integer)):
        raise TypeError(f"num_iter must be an integer, got {num_iter!r}")
    if num_iter < 2:
        raise ValueError(f"num_iter must be at least 2 (a ladder needs two ends), got {num_iter}")
    if num_iter > MAX_NUM_ITER:
        raise ValueError(
            f"num_iter must be at most {MAX_NUM_ITER} (a range test needs a few hundred steps), "
            f"got {num_iter}; lower it"
        )
    for name, value in (("start_lr", start_lr), ("end_lr", end_lr)):
        if not isinstance(value, (int, float, np.floating, np.integer)) or isinstance(value, bool):
            raise TypeError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    if start_lr >= end_lr:
        raise ValueError(
            f"start_lr must be smaller than end_lr, got start_lr={start_lr!r} >= end_lr={end_lr!r}; "
            "swap them or widen the range"
        )


def exponential(start_lr: float, end_lr: float, num_iter: int) -> np.ndarray:
    """Geometric ladder: ``lr[i] = start_lr * (end_lr / start_lr) ** (i / (num_iter - 1))``.

    Every step multiplies the LR by the same factor, so the ladder spends as many steps on each
    decade.

    >>> exponential(1e-3, 1.0, 4)
    array([0.001, 0.01 , 0.1  , 1.   ])
    """
    check_range(start_lr, end_lr, num_iter)
    fractions = np.arange(num_iter, dtype=np.float64) / (num_iter - 1)
    lrs = np.exp(math.log(start_lr) + fractions * (math.log(end_lr) - math.log(start_lr)))
    lrs[0], lrs[-1] = start_lr, end_lr
    return lrs


def linear(start_lr: float, end_lr: float, num_iter: int) -> np.ndarray:
    """Arithmetic ladder: ``lr[i] = start_lr + (end_lr - start_lr) * i / (num_iter - 1)``.

    >>> linear(0.1, 0.4, 4)
    array([0.1, 0.2, 0.3, 0.4])
    """
    check_range(start_lr, end_lr, num_iter)
    lrs = np.linspace(start_lr, end_lr, num_iter, dtype=np.float64)
    lrs[0], lrs[-1] = start_lr, end_lr
    return lrs


def ladder(mode: str, start_lr: float, end_lr: float, num_iter: int) -> np.ndarray:
    """The ladder for ``mode`` (``"exp"`` or ``"linear"``); see :func:`exponential` and :func:`linear`."""
    if mode == "exp":
        return exponential(start_lr, end_lr, num_iter)
    if mode == "linear":
        return linear(start_lr, end_lr, num_iter)
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")

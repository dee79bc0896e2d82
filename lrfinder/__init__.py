"""lrfinder: the learning-rate range test for PyTorch, Keras 3 and any step function.

>>> import lrfinder
>>> result = lrfinder.find_lr(step)  # doctest: +SKIP
>>> result.suggestion  # doctest: +SKIP

Importing this package loads NumPy only: framework trainers load when a model of theirs is
given, and matplotlib when a plot is asked for.
"""

from lrfinder._version import __version__
from lrfinder.api import find_lr, run_range_test
from lrfinder.confirm import Confirmation, ConfirmSettings
from lrfinder.errors import OtherRankFailed, RangeTestInterrupted
from lrfinder.plan import Plan
from lrfinder.result import LRFinderResult
from lrfinder.suggest import RULES, Suggestion
from lrfinder.sweep import SweepSettings, run_sweep

__all__ = [
    "RULES",
    "ConfirmSettings",
    "Confirmation",
    "LRFinderResult",
    "OtherRankFailed",
    "Plan",
    "RangeTestInterrupted",
    "Suggestion",
    "SweepSettings",
    "__version__",
    "find_lr",
    "run_range_test",
    "run_sweep",
]

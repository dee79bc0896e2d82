"""The result of a range test: the recorded curve, its suggestions, plotting and JSON.

The result is separate from the loop that produced it, so it can be built from synthetic data or
read back from JSON. Suggestions are computed from the curve on demand; they are never stored
state that could disagree with it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrfinder import diagnose as checks
from lrfinder import schedules
from lrfinder import suggest as rules
from lrfinder._io import (
    atomic_write_bytes,
    decode,
    decode_number,
    encode,
    read_float,
    read_int,
    read_list,
    read_object,
    read_str,
)
from lrfinder.confirm import Confirmation
from lrfinder.plan import MOMENTUM_SWITCHED_ON, Plan
from lrfinder.suggest import Suggestion
from lrfinder.sweep import STOP_REASONS

if TYPE_CHECKING:
    from matplotlib.axes import Axes

FORMAT = "lrfinder.result"
#: Version 2 adds ``plan``, ``confirmation`` and ``range_suggestion``; version 1 files still load.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


@dataclass(eq=False)
class LRFinderResult:
    """What a range test recorded, and what it suggests.

    Attributes:
        lrs: Learning rate of every recorded step, shape ``(n,)``.
        losses: The raw loss of every step (the batch's own loss), shape ``(n,)``.
        smoothed: Bias-corrected exponential moving average of ``losses``, shape ``(n,)``; NaN
            where the raw loss was not finite.
        stop_reason: ``"finished"``, ``"diverged"``, ``"non_finite"`` or ``"interrupted"``.
        settings: The sweep's settings (start_lr, end_lr, num_iter, mode, smooth, ...).
        backend: Which trainer ran it (``"torch"``, ``"keras"``, ``"callable"``...).
        elapsed: Wall time of the sweep in seconds.
        rule: Name of the rule behind :attr:`suggestion`.
        info: Facts the trainer recorded (optimizer used, loss inferred, ...).
        is_main_process: False on all but the first rank of a distributed run: there,
            :meth:`save_plot` and :meth:`to_json` write nothing, so ranks never race on a file.
        plan: The user's training plan (schedule and ``train_steps``), or None: then the
            suggestion is the plain rule's, as without a plan.
        confirmation: What confirm mode trained and chose, or None when it did not run.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    stop_reason: str
    settings: dict[str, Any] = field(default_factory=dict)
    backend: str = "unknown"
    elapsed: float = 0.0
    rule: str = rules.DEFAULT_RULE
    info: dict[str, Any] = field(default_factory=dict)
    is_main_process: bool = True
    plan: Plan | None = None
    confirmation: Confirmation | None = None

    def __post_init__(self) -> None:
        self.lrs = np.asarray(self.lrs, dtype=np.float64)
        self.losses = np.asarray(self.losses, dtype=np.float64)
        self.smoothed = np.asarray(self.smoothed, dtype=np.float64)
        if not (self.lrs.shape == self.losses.shape == self.smoothed.shape and self.lrs.ndim == 1):
            raise ValueError(
                "lrs, losses and smoothed must be 1-D arrays of one length, got shapes "
                f"{self.lrs.shape}, {self.losses.shape}, {self.smoothed.shape}"
            )
        rules.get_rule(self.rule)

    # -- suggestions ---------------------------------------------------------------------------

    @cached_property
    def suggestions(self) -> dict[str, Suggestion]:
        """Every rule's suggestion, by rule name: on the smoothed curve, or on the raw losses for the
        rules in :data:`lrfinder.suggest.RAW_RULES`."""
        return rules.suggest_all(self.lrs, self.smoothed, self.losses)

    @cached_property
    def best(self) -> Suggestion:
        """The range test's suggestion for :attr:`plan` (rule :attr:`rule`, see
        :func:`lrfinder.suggest.for_plan`), with its index and, when there is none, its reason.
        Without a plan it is ``suggestions[rule]``."""
        if self.plan is None:
            return self.suggestions[self.rule]
        return rules.for_plan(
            self.lrs,
            self.smoothed,
            self.losses,
            self.plan,
            rule=self.rule,
            momentum_switched_on=self.info.get("onecycle_momentum") == MOMENTUM_SWITCHED_ON,
        )

    @property
    def range_suggestion(self) -> float | None:
        """The range test's suggested LR for :attr:`plan`, before any confirmation."""
        return self.best.lr

    @property
    def suggestion(self) -> float | None:
        """The LR to use: the one confirm mode chose when it chose one, else the range test's for
        :attr:`plan` (:attr:`range_suggestion`); None when there is neither (see
        :attr:`suggestion_reason`). For a one-cycle or cosine plan it is the peak LR."""
        if self.confirmation is not None and self.confirmation.lr is not None:
            return self.confirmation.lr
        return self.best.lr

    @property
    def suggestion_reason(self) -> str | None:
        """Why there is no suggestion, or None when there is one."""
        return None if self.suggestion is not None else self.best.reason

    def suggest(self, rule: str | None = None, **options: Any) -> Suggestion:
        """Apply a rule (default :attr:`rule`) with its own options, e.g. ``skip_start=5``.

        Rules in :data:`lrfinder.suggest.RAW_RULES` read the raw losses, the others the smoothed curve.
        A flat curve gives no suggestion, whatever the options (see :func:`lrfinder.suggest.flat_reason`).
        """
        return rules.suggest(self.lrs, self.smoothed, rule or self.rule, self.losses, **options)

    @cached_property
    def _range_diagnostics(self) -> list[checks.Diagnostic]:
        return checks.diagnose(
            self.lrs, self.losses, self.smoothed, self.stop_reason, self.settings, self.best
        )

    @property
    def diagnostics(self) -> list[checks.Diagnostic]:
        """Reasons to doubt :attr:`suggestion` (each with what to change); empty when none: the
        range test's, then confirm mode's (:func:`lrfinder.diagnose.probes_alike`)."""
        found = list(self._range_diagnostics)
        confirmation = self.confirmation
        if confirmation is not None and confirmation.lr is not None:
            alike = checks.probes_alike([p.score for p in confirmation.probes], confirmation.start_score)
            if alike is not None:
                found.append(alike)
        return found

    @property
    def trusted(self) -> bool:
        """True when there is a suggestion and no diagnostic casts doubt on it."""
        return self.suggestion is not None and not self.diagnostics

    @cached_property
    def lr_range(self) -> tuple[float, float] | None:
        """``(lower, upper)``: the LRs over which the loss falls, or None without a descent.

        From where the loss has done 10% of its fall to where it reaches its bottom; a bracket
        for cyclical schedules and a cap for a one-cycle peak. See :func:`lrfinder.diagnose.lr_range`.
        """
        return checks.lr_range(self.lrs, self.smoothed)

    def candidates(self, *, up: int = 2, down: int = 3, step: float = 0.5) -> list[float]:
        """LRs around :attr:`suggestion` to compare by short training runs (half a decade apart by
        default, two rungs above it and three below); empty without a suggestion.

        The range test cannot see the training budget or overfitting, which can move the best LR
        far from any single suggestion. ``benchmarks/quality/suggestion_quality.md`` measures when the best
        of these beats the suggestion alone (it needs a validation loss that tells the rungs apart).
        See :func:`lrfinder.suggest.ladder`.
        """
        lr = self.suggestion
        return [] if lr is None else [float(x) for x in rules.ladder(lr, up=up, down=down, step=step)]

    # -- schedules ------------------------------------------------------------------------------

    def scheduler(
        self, optimizer: Any, total_steps: int | None = None, schedule: str | None = None, **options: Any
    ) -> Any:
        """A torch LR scheduler for ``optimizer`` over ``total_steps`` steps, peaking at the suggestion.

        ``schedule``: ``"constant"``, ``"onecycle"``, ``"cosine"`` (warm-up, then cosine decay) or
        ``"cyclical"`` (between the bounds of :attr:`lr_range`); default the plan the range test was
        told, else ``"constant"``. Call its ``step()`` after each ``optimizer.step()``. See
        :func:`lrfinder.schedule_objects.torch_scheduler` (``options``: ``cycles``, and
        ``cycle_momentum`` for one-cycle: by default OneCycleLR's own, which switches on the momentum
        of an SGD or RMSprop that had none).

        Raises:
            ValueError: No suggestion (the message says why), or no ``total_steps``.
        """
        from lrfinder.schedule_objects import torch_scheduler

        return torch_scheduler(self, optimizer, total_steps, schedule, **options)

    def keras_schedule(
        self, total_steps: int | None = None, schedule: str | None = None, **options: Any
    ) -> Any:
        """A Keras ``LearningRateSchedule`` over ``total_steps`` steps, as :meth:`scheduler` builds for
        torch; pass it as the optimizer's ``learning_rate``. See
        :func:`lrfinder.schedule_objects.keras_schedule`.

        Raises:
            ValueError: No suggestion (the message says why), or no ``total_steps``.
        """
        from lrfinder.schedule_objects import keras_schedule

        return keras_schedule(self, total_steps, schedule, **options)

    @property
    def num_steps(self) -> int:
        return int(self.lrs.shape[0])

    # -- plotting -----------------------------------------------------------------------------

    def plot(self, ax: Axes | None = None, **options: Any) -> Axes:
        """Draw loss against LR on ``ax`` (a new figure when None) and return the Axes.

        Never calls ``show()``. Options are those of :func:`lrfinder.plot.plot_result`.
        """
        from lrfinder.plot import plot_result

        return plot_result(self, ax=ax, **options)

    def save_plot(self, path: str | os.PathLike[str], *, dpi: int = 120, **options: Any) -> Path:
        """Write the plot as a PNG to ``path`` (whole or not at all) and return the path."""
        from lrfinder.plot import render_png

        if not self.is_main_process:
            return Path(path)
        return atomic_write_bytes(path, render_png([self], dpi=dpi, **options))

    def _repr_png_(self) -> bytes:
        from lrfinder.plot import render_png

        return render_png([self], dpi=90)

    def __repr__(self) -> str:
        lr = "none" if self.suggestion is None else f"{self.suggestion:.3g}"
        how = "confirmed" if self.confirmation is not None and self.confirmation.lr is not None else self.rule
        plan = "" if self.plan is None else f", plan={self.plan.schedule}/{self.plan.train_steps}"
        return (
            f"LRFinderResult(backend={self.backend!r}, steps={self.num_steps}, "
            f"stop_reason={self.stop_reason!r}, suggestion={lr} ({how}){plan})"
        )

    # -- JSON ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict. Non-finite numbers become ``null`` (NaN) or ``"inf"``/``"-inf"``."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "backend": self.backend,
            "stop_reason": self.stop_reason,
            "elapsed": self.elapsed,
            "rule": self.rule,
            "suggestion": self.suggestion,
            "range_suggestion": self.range_suggestion,
            "plan": None if self.plan is None else self.plan.to_dict(),
            "confirmation": None if self.confirmation is None else encode(self.confirmation.to_dict()),
            "suggestions": {
                name: {"lr": s.lr, "index": s.index, "reason": s.reason}
                for name, s in self.suggestions.items()
            },
            "lr_range": list(self.lr_range) if self.lr_range else None,
            "candidates": self.candidates(),
            "diagnostics": [d._asdict() for d in self.diagnostics],
            "settings": encode(self.settings),
            "info": encode(self.info),
            "lrs": encode(self.lrs.tolist()),
            "losses": encode(self.losses.tolist()),
            "smoothed": encode(self.smoothed.tolist()),
        }

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """The result as JSON text; also written to ``path`` (whole or not at all) when given.

        Floats are written with their shortest exact repr, so :meth:`from_json` gives back the
        same arrays bit for bit. No pickle is involved.
        """
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False)
        if path is not None and self.is_main_process:
            atomic_write_bytes(path, text.encode("utf-8"))
        return text

    @classmethod
    def from_dict(cls, data: Any) -> LRFinderResult:
        """A result from :meth:`to_dict`'s output, checked as the sweep would have produced it.

        The fields derived from the curve (``suggestion``, ``suggestions``, ``lr_range``,
        ``candidates``, ``diagnostics``...) are computed again, not read.

        Raises:
            ValueError: Not an lrfinder result, another format version, or a field that no sweep
                produces; the message names the field (``plan.train_steps``,
                ``confirmation.probes[0].score``) and says what a valid one is: a field missing or of
                the wrong kind; learning rates that are not finite, positive and strictly
                increasing; losses none of which is finite; an unknown stop reason or rule.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not an lrfinder result (the 'format' field is missing or not {FORMAT!r})")
        version = data.get("version")
        if isinstance(version, bool) or version not in READABLE_VERSIONS:
            raise ValueError(
                f"lrfinder result format version {version!r} is not supported "
                f"(this lrfinder reads versions {', '.join(map(str, READABLE_VERSIONS))})"
            )
        missing = [key for key in ("lrs", "losses", "smoothed", "stop_reason") if key not in data]
        if missing:
            raise ValueError(
                f"the field(s) {', '.join(missing)} are missing; a result holds lrs, losses and smoothed "
                "(arrays of numbers of one length) and stop_reason"
            )
        curves = {key: _decode_curve(data[key], key) for key in ("lrs", "losses", "smoothed")}
        stop_reason = read_str(data["stop_reason"], "stop_reason", STOP_REASONS)
        settings = read_object(decode(data.get("settings", {})), "settings")
        _check_settings(settings)
        info = read_object(decode(data.get("info", {})), "info")
        backend = read_str(data.get("backend", "unknown"), "backend")
        rule = read_str(data.get("rule", rules.DEFAULT_RULE), "rule", sorted(rules.RULES))
        elapsed = read_float(data.get("elapsed", 0.0), "elapsed")
        _check_curve(curves["lrs"], curves["losses"], curves["smoothed"])
        plan, confirmation = data.get("plan"), data.get("confirmation")
        return cls(
            lrs=curves["lrs"],
            losses=curves["losses"],
            smoothed=curves["smoothed"],
            stop_reason=stop_reason,
            settings=settings,
            backend=backend,
            elapsed=elapsed,
            rule=rule,
            info=info,
            plan=None if plan is None else Plan.from_dict(plan),
            confirmation=None if confirmation is None else Confirmation.from_dict(confirmation),
        )

    @classmethod
    def from_json(cls, source: str | os.PathLike[str]) -> LRFinderResult:
        """Read a result written by :meth:`to_json`: a path, or the JSON text itself.

        Raises:
            ValueError: The file is not an lrfinder result (see :meth:`from_dict`); the message
                starts ``<path> is not an lrfinder result`` when ``source`` is a path.
            OSError: The file cannot be read.
        """
        path = None if isinstance(source, str) and source.lstrip().startswith("{") else Path(source)
        try:
            text = str(source) if path is None else path.read_text(encoding="utf-8")
            try:
                data = json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(f"not valid JSON ({error})") from None
            except RecursionError:
                raise ValueError("JSON nested too deeply to be an lrfinder result") from None
            return cls.from_dict(data)
        except UnicodeDecodeError as error:  # a ValueError too, but it names no field
            raise ValueError(f"{source} is not an lrfinder result: not UTF-8 text ({error.reason})") from None
        except ValueError as error:
            if path is None:
                raise
            said = str(error)
            if said.startswith("not an lrfinder result"):  # the 'format' field: say it once
                raise ValueError(f"{source} is {said}") from None
            raise ValueError(f"{source} is not an lrfinder result: {said}") from None


def _decode_curve(values: Any, name: str) -> np.ndarray:
    """A curve written by :func:`~lrfinder._io.encode`: ``null`` is NaN, ``"inf"``/``"-inf"`` are
    infinities."""
    read_list(values, name, 'of numbers (null for NaN, "inf", "-inf")')
    return np.asarray([decode_number(v, f"{name}[{i}]") for i, v in enumerate(values)], dtype=np.float64)


def _check_settings(settings: dict[str, Any]) -> None:
    """Raise ``ValueError`` unless the settings that lrfinder reads back (the plot's axis, the
    diagnostics) are of the kind :class:`~lrfinder.sweep.SweepSettings` writes."""
    if settings.get("num_iter") is not None:
        read_int(settings["num_iter"], "settings.num_iter", 1)
    for key in ("start_lr", "end_lr"):
        if key in settings:
            read_float(settings[key], f"settings.{key}", positive=True)
    if "mode" in settings:
        read_str(settings["mode"], "settings.mode", schedules.MODES)


def _check_curve(lrs: np.ndarray, losses: np.ndarray, smoothed: np.ndarray) -> None:
    """Raise ``ValueError`` unless the curve is one a sweep can record (see ``from_dict``)."""
    if not lrs.shape == losses.shape == smoothed.shape:
        raise ValueError(
            f"lrs, losses and smoothed differ in length ({lrs.shape[0]}, {losses.shape[0]}, "
            f"{smoothed.shape[0]})"
        )
    if not np.all(np.isfinite(lrs) & (lrs > 0)):
        raise ValueError("lrs must be finite positive learning rates")
    if np.any(np.diff(lrs) <= 0):
        raise ValueError("lrs must be strictly increasing")
    if losses.size and not np.any(np.isfinite(losses)):
        raise ValueError("losses holds no finite value: there is no curve")

"""Confirm mode: train short probes at a few LRs around the suggestion and keep the best.

The range test reads one curve over about a hundred steps; it cannot see how the LR it suggests
behaves over the user's whole run. Confirm mode checks: from the untouched starting state, it trains
a probe at each of a few candidate LRs around the suggestion under the user's schedule compressed to
the probe's length, scores each probe on held-out batches (the mean loss, eval mode, no gradients),
puts the state back bit for bit, and keeps the LR whose probe scored lowest. By default it probes
three candidates half a decade apart, then two more placed by their scores (past an edge the best
score lies on, else between the best and its better neighbour), and scales the best probe's LR for
the run's length. With ``ConfirmSettings(extra=0, rounds=2)`` it runs successive halving instead:
the best share of the candidates is probed again, from the start, for longer.

Everything the search does is fixed in advance by a :class:`ProbePlan`, computed by the pure
:func:`plan_probes` from the budget (training steps for the range test and the probes together),
the range test's length and a :class:`ConfirmSettings`. :func:`run_plan` carries a plan out with
any ``probe(lr, steps)`` function, so a benchmark can replay the search exactly from recorded
training runs, without a trainer; :func:`confirm` carries it out with a
:class:`~lrfinder.trainers.base.Trainer`. This module uses NumPy only.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np

from lrfinder._io import (
    decode,
    decode_number,
    describe,
    read_field,
    read_float,
    read_int,
    read_list,
    read_object,
    read_optional_float,
    read_optional_int,
    read_optional_str,
    read_str,
)
from lrfinder._progress import close_bar, progress_bar
from lrfinder._signals import defer_sigint
from lrfinder.errors import add_note
from lrfinder.plan import (
    CONSTANT,
    ONECYCLE,
    SCHEDULES,
    Plan,
    ScheduleLRs,
    check_train_steps,
    onecycle_momentum,
)
from lrfinder.trainers.base import Trainer

#: The range test's length when the user does not set ``num_iter`` (``SweepSettings.num_iter``).
DEFAULT_RANGE_STEPS = 100


@dataclass(frozen=True)
class ConfirmSettings:
    """Every knob of confirm mode, with its default.

    Candidates: the LRs ``center * 10 ** (shift + k * spacing)`` for ``k = -down .. up``, where
    ``center`` is the range test's suggestion for the plan. With ``extra > 0`` the search then
    places ``extra`` more probes one at a time where the scores so far point (:func:`next_offset`):
    past the lowest or highest candidate while the best score lies on that edge (no further than
    ``reach`` decades from the centre), else halfway between the best candidate and its better
    neighbour; while no probe has trained at all, halfway up towards the LR where the range
    test's loss blew up. The LR kept is read off the last round (``interpolate``) and scaled for
    the run's length (``horizon``, ``low_gap_horizon``, ``overfit_gap``).

    Attributes:
        up: Candidates above the centre (>= 0).
        down: Candidates below the centre (>= 0); ``up + down + 1`` must be at least 2.
        spacing: Decades between neighbouring candidates (> 0).
        shift: Decades by which the candidates' centre lies above the suggestion (negative: below).
        rounds: Rounds of successive halving; 1 probes every candidate once. Later rounds keep the
            best ``keep`` share of the previous round's candidates (rounded up) and probe them from
            the start again, longer. Fewer rounds run when a round would compare fewer than two
            candidates or its probes would be shorter than ``min_probe_steps``.
        keep: Share of a round's candidates that go on to the next round, in (0, 1).
        budget_factor: Default budget, in training steps for the range test and the probes
            together, as a multiple of ``train_steps``.
        range_share: Most of the budget the range test may take when its length was not set by
            the user: a longer default range test is shortened to this share, in (0, 1).
        min_range_steps: Shortest range test a shortening may produce (>= 5).
        min_probe_steps: Shortest probe worth running (>= 1); a budget that cannot give every
            candidate this many steps is an error.
        max_probe_fraction: Longest probe, as a share of ``train_steps`` (> 0): a probe longer
            than the run it stands for would measure another run.
        horizon: The kept LR is the best probe's times ``(probe steps / train_steps) ** horizon``
            (>= 0; 0 keeps the best probe's LR) when that probe overfits (see ``overfit_gap``): a
            probe shorter than the run favours a higher LR than the whole run wants, most of all
            where a longer run overfits more.
        low_gap_horizon: The exponent used instead of ``horizon`` when the best probe does not
            overfit (>= 0): where the held-out loss follows the training loss, the best LR moves
            little with the run's length. Equal to ``horizon``, the rule is off.
        overfit_gap: The best probe overfits when its score exceeds the mean training loss of
            its last fifth of steps by at least this share of the untouched state's score
            (:func:`generalisation_gap`). This compares the score with the training loss, so it
            assumes both measure the same loss; when the starting score is not known,
            ``horizon`` applies. Chosen on the benchmark's seventeen tasks seen by then; on the
            21 seen by issue 11's third pass, 89% of runs come within 0.05 regret, against 84%
            with one exponent of 0.75, and thresholds of 0.03 to 0.08 or a low exponent of 0.15
            to 0.45 score within a point of it (``benchmarks/quality/results/confirm_search_pick.md``).
        interpolate: Keep the vertex of the parabola through the best probe and its two
            neighbours (in log LR, last round, probes that blew up left out) instead of the best
            probe's LR, no further than halfway to either neighbour (:func:`vertex_lr`): it
            smooths the probes' noise between candidates.
        cycle_momentum: Under a one-cycle plan, each probe also cycles the optimizer's momentum
            (beta1 for Adam-like optimizers) as ``OneCycleLR``'s defaults do
            (:func:`lrfinder.plan.onecycle_momentum`), switching it on for an SGD or RMSprop that
            had none, so that the probe trains like the planned run; set False when your
            ``OneCycleLR`` has ``cycle_momentum=False``. PyTorch trainers only (a Keras schedule
            cannot cycle the momentum; a step function sets what it likes).
        extra: Probes placed adaptively after the first candidates (>= 0; needs ``rounds=1``);
            on the benchmark, 3 candidates and 2 adaptive probes beat 5 fixed ones, 3+1 and 3+3.
        reach: How far from the centre, in decades, an adaptive probe may go (> 0), except
            towards the range test's blow-up while no probe has trained (:func:`next_offset`).
        finest: The smallest gap, in decades, that an adaptive probe halves (> 0): closer
            candidates differ by less than the probes' noise.
        progress: A probe whose score lies within this share of the starting state's score of
            it changed nothing (>= 0). While no probe has changed anything, the adaptive probes
            go up, not down: an LR too low to train scores like the untouched model at every LR.
        centre_reach: The candidates' centre lies at most this many decades below the LR where
            the range test's loss blew up, when that is known (> 0): a suggestion further down
            read its landmark off a curve that was noise until it blew up. On the benchmark's 30
            seen tasks the suggestion lies 0.5-2.75 decades below it in 95% of runs and the best
            LR 3.9 at most; only one task's suggestions (1e-6 to 3e-4, on a curve that was noise
            up to 3.3) lay further, and 3 moved them there
            (``benchmarks/quality/results/confirm_search_centre_reach.md``).
        blind_centre: When the range test gave no suggestion (its loss never fell below its
            first value, say), the probes centre this many decades below the LR where its loss
            blew up (> 0): on the benchmark's 30 seen tasks the best LR lies a median of 1.58
            decades below it (quartiles 1.04 and 2.10; ``benchmarks/quality/centre_distance.py``).
    """

    up: int = 1
    down: int = 1
    spacing: float = 0.5
    shift: float = 0.0
    rounds: int = 1
    keep: float = 0.5
    budget_factor: float = 2.0
    range_share: float = 0.3
    min_range_steps: int = 30
    min_probe_steps: int = 5
    max_probe_fraction: float = 1.0
    horizon: float = 0.75
    low_gap_horizon: float = 0.3
    overfit_gap: float = 0.05
    interpolate: bool = True
    cycle_momentum: bool = True
    extra: int = 2
    reach: float = 2.0
    finest: float = 0.2
    progress: float = 0.01
    centre_reach: float = 3.0
    blind_centre: float = 1.6

    def __post_init__(self) -> None:
        for name in ("up", "down", "rounds", "min_range_steps", "min_probe_steps", "extra"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"ConfirmSettings.{name} must be an integer >= 0, got {value!r}")
        if self.up + self.down < 1:
            raise ValueError("ConfirmSettings needs at least two candidates (up + down >= 1)")
        if self.rounds < 1:
            raise ValueError(f"ConfirmSettings.rounds must be >= 1, got {self.rounds}")
        if self.min_probe_steps < 1:
            raise ValueError(f"ConfirmSettings.min_probe_steps must be >= 1, got {self.min_probe_steps}")
        if self.min_range_steps < 5:
            raise ValueError(f"ConfirmSettings.min_range_steps must be >= 5, got {self.min_range_steps}")
        for name, low, high in (("keep", 0.0, 1.0), ("range_share", 0.0, 1.0)):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and low < value < high):
                raise ValueError(
                    f"ConfirmSettings.{name} must lie strictly between {low} and {high}, got {value!r}"
                )
        if self.extra > 0 and self.rounds > 1:
            raise ValueError(
                "ConfirmSettings: adaptive probes (extra > 0) and successive halving (rounds > 1) do "
                "not mix; set extra=0 for halving, or rounds=1"
            )
        for name in (
            "spacing",
            "budget_factor",
            "max_probe_fraction",
            "reach",
            "finest",
            "centre_reach",
            "blind_centre",
        ):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"ConfirmSettings.{name} must be a finite number > 0, got {value!r}")
        for name in ("horizon", "low_gap_horizon", "overfit_gap", "progress"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (
                isinstance(value, (int, float)) and math.isfinite(value) and value >= 0
            ):
                raise ValueError(f"ConfirmSettings.{name} must be a finite number >= 0, got {value!r}")
        for name in ("interpolate", "cycle_momentum"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ConfirmSettings.{name} must be True or False, got {getattr(self, name)!r}")
        if not (isinstance(self.shift, (int, float)) and math.isfinite(self.shift)):
            raise ValueError(f"ConfirmSettings.shift must be a finite number of decades, got {self.shift!r}")

    @property
    def candidates(self) -> int:
        """How many probes the first round trains: ``up + down + 1`` candidates and ``extra``
        adaptive probes."""
        return self.up + self.down + 1 + self.extra

    def offsets(self) -> tuple[float, ...]:
        """The candidates' offsets from the suggestion, in decades, increasing.

        >>> ConfirmSettings(up=1, down=2, spacing=0.5, shift=0.25).offsets()
        (-0.75, -0.25, 0.25, 0.75)
        """
        return tuple(float(self.shift + k * self.spacing) for k in range(-self.down, self.up + 1))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ProbeRound(NamedTuple):
    """One round of the search: ``size`` probes of ``steps`` training steps each."""

    size: int
    steps: int


@dataclass(frozen=True)
class ProbePlan:
    """What confirm mode will train, fixed before it starts.

    Attributes:
        budget: Training steps allowed for the range test and the probes together.
        range_steps: Length of the range test (``num_iter``), possibly shortened to fit.
        offsets: The first round's candidates, in decades from the suggestion.
        rounds: The rounds, in order; the first one probes every candidate.
        lookahead: Batches the trainer draws ahead of its steps in each pass over the data (the
            range test's and every probe's), counted against the budget.
    """

    budget: int
    range_steps: int
    offsets: tuple[float, ...]
    rounds: tuple[ProbeRound, ...]
    lookahead: int = 0

    @property
    def adaptive(self) -> int:
        """How many of the first round's probes are placed by the scores (:func:`next_offset`)
        rather than at :attr:`offsets`."""
        return self.rounds[0].size - len(self.offsets) if self.rounds else 0

    @property
    def probe_steps(self) -> int:
        """Training steps of every probe together."""
        return sum(r.size * r.steps for r in self.rounds)

    @property
    def total_steps(self) -> int:
        """Training steps of the range test and the probes."""
        return self.range_steps + self.probe_steps

    @property
    def batches(self) -> int:
        """Training batches drawn at most: :attr:`total_steps` plus :attr:`lookahead` per pass over
        the data; never more than :attr:`budget`."""
        return self.total_steps + self.lookahead * (1 + sum(r.size for r in self.rounds))

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "range_steps": self.range_steps,
            "offsets": list(self.offsets),
            "rounds": [list(r) for r in self.rounds],
            "lookahead": self.lookahead,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "confirmation.plan") -> ProbePlan:
        """Read back :meth:`to_dict` (from a saved result, where it is the field ``where``).

        Raises:
            ValueError: A field missing or of the wrong kind; the message names it and says what a
                valid one is.
        """
        shape = (
            '{"budget": steps, "range_steps": steps, "offsets": [decades, ...], '
            '"rounds": [[probes, steps], ...], "lookahead": batches}'
        )
        fields = read_object(data, where, shape)

        def steps(key: str) -> int:
            return read_int(read_field(fields, key, where, shape=shape), f"{where}.{key}", 1)

        budget, range_steps = steps("budget"), steps("range_steps")
        offsets = read_list(
            read_field(fields, "offsets", where, shape=shape), f"{where}.offsets", "of numbers"
        )
        rounds = read_list(
            read_field(fields, "rounds", where, shape=shape), f"{where}.rounds", "of [probes, steps] pairs"
        )
        for i, round_ in enumerate(rounds):
            if not (isinstance(round_, list) and len(round_) == 2):
                raise ValueError(
                    f"{where}.rounds[{i}] must be a pair [probes, steps] of integers >= 1, "
                    f"got {describe(round_)}"
                )
        return cls(
            budget=budget,
            range_steps=range_steps,
            offsets=tuple(read_float(x, f"{where}.offsets[{i}]") for i, x in enumerate(offsets)),
            rounds=tuple(
                ProbeRound(
                    read_int(size, f"{where}.rounds[{i}][0]", 1), read_int(n, f"{where}.rounds[{i}][1]", 1)
                )
                for i, (size, n) in enumerate(rounds)
            ),
            lookahead=read_int(read_field(fields, "lookahead", where, 0), f"{where}.lookahead", 0),
        )


def default_budget(train_steps: int, settings: ConfirmSettings | None = None) -> int:
    """The budget when ``confirm=True``: ``floor(budget_factor * train_steps)`` training steps.

    >>> default_budget(150)
    300
    """
    settings = settings or ConfirmSettings()
    return math.floor(settings.budget_factor * train_steps)


def plan_probes(
    budget: int,
    range_steps: int,
    settings: ConfirmSettings | None = None,
    *,
    train_steps: int | None = None,
    shorten_range: bool = True,
    lookahead: int = 0,
) -> ProbePlan:
    """Turn a budget into the rounds of probes confirm mode will train (a pure function).

    1. The range test keeps ``range_steps`` when that is at most ``range_share * budget`` or when
       ``shorten_range`` is False (the user set ``num_iter``); otherwise it is shortened to
       ``max(min_range_steps, floor(range_share * budget))`` (never lengthened).
    2. The rest of the budget goes to the probes, less ``lookahead`` for the range test's pass over
       the data (each probe's pass costs its steps plus ``lookahead`` too). Round 1 probes every
       candidate; each later round probes ``ceil(keep * count)`` of the previous round's ``count``
       candidates, for as long as that leaves at least two and at most ``rounds`` rounds.
    3. Every round gets an equal share of the probe budget, ``floor(probe budget / rounds)``, split
       evenly among its probes (rounded down, less ``lookahead`` each), and no probe is longer than
       ``floor(max_probe_fraction * train_steps)`` when ``train_steps`` is given. Rounds whose
       probes would be shorter than ``min_probe_steps`` are dropped from the end.

    So ``range_steps + sum(size * steps) + lookahead * (1 + sum(size)) <= budget`` always holds.

    Args:
        budget: Training steps for the range test and the probes together (>= 1).
        range_steps: The range test's length as asked (``num_iter``; >= 2).
        settings: The knobs (default :class:`ConfirmSettings`'s).
        train_steps: The planned training run's length, which caps each probe.
        shorten_range: Whether the range test may be shortened to fit.
        lookahead: Batches the trainer draws ahead of its steps in each pass over the data (a
            trainer's ``lookahead`` attribute; 0 for most).

    Returns:
        The :class:`ProbePlan`.

    Raises:
        ValueError: The budget cannot hold the range test and ``min_probe_steps`` for every
            candidate (the message gives the numbers and what to change).

    By default: 3 candidates and 2 adaptive probes, the range test at most 0.3 of the budget.

    >>> plan = plan_probes(300, 100)
    >>> plan.range_steps, plan.offsets, plan.rounds
    (90, (-0.5, 0.0, 0.5), (ProbeRound(size=5, steps=42),))
    >>> plan_probes(100, 100).range_steps  # shortened to 0.3 of the budget
    30
    >>> plan_probes(800, 100, ConfirmSettings(extra=0, rounds=2), train_steps=400).rounds
    (ProbeRound(size=3, steps=116), ProbeRound(size=2, steps=175))
    """
    settings = settings or ConfirmSettings()
    budget = _positive(budget, "the confirm budget")
    range_steps = _positive(range_steps, "the range test's num_iter")
    train_steps = check_train_steps(train_steps)
    if isinstance(lookahead, bool) or not isinstance(lookahead, int) or lookahead < 0:
        raise ValueError(f"lookahead must be an integer >= 0, got {lookahead!r}")
    n = settings.candidates
    if shorten_range and range_steps > settings.range_share * budget:
        shortest = max(settings.min_range_steps, math.floor(settings.range_share * budget))
        range_steps = min(range_steps, shortest)
    probe_budget = budget - range_steps - lookahead
    if probe_budget < n * (settings.min_probe_steps + lookahead):
        what = (
            "num_iter (you set it; leave it out to let confirm mode shorten the range test)"
            if not shorten_range
            else f"the range test's {range_steps} steps"
        )
        needed = range_steps + lookahead + n * (settings.min_probe_steps + lookahead)
        raise ValueError(
            f"a confirm budget of {budget} training steps cannot hold {what} and {n} probes of at "
            f"least {settings.min_probe_steps} steps each (needs {needed}); "
            "give a larger budget (confirm=N steps, or a larger train_steps), fewer candidates "
            "(ConfirmSettings up/down) or a shorter range test (num_iter)"
        )
    counts = [n]
    while len(counts) < settings.rounds:
        following = math.ceil(settings.keep * counts[-1])
        if following < 2 or following >= counts[-1]:
            break
        counts.append(following)
    cap = None if train_steps is None else max(1, math.floor(settings.max_probe_fraction * train_steps))
    while True:
        share = probe_budget // len(counts)
        rounds = []
        for count in counts:
            steps = share // count - lookahead
            rounds.append(ProbeRound(count, steps if cap is None else min(cap, steps)))
        if len(counts) == 1 or all(r.steps >= settings.min_probe_steps for r in rounds):
            break
        counts.pop()
    return ProbePlan(
        budget=budget,
        range_steps=range_steps,
        offsets=settings.offsets(),
        rounds=tuple(rounds),
        lookahead=lookahead,
    )


@dataclass(frozen=True)
class Probe:
    """One short training run of confirm mode.

    Attributes:
        lr: The schedule's peak LR (the LR throughout for a constant plan).
        steps: Training steps planned; fewer ran (``len(losses)``) when the loss became non-finite.
        round: Which round of the search it belongs to (0 for the first).
        losses: The training loss of every step that ran.
        score: Mean loss on the confirm data after the last step; ``inf`` when training blew up.
    """

    lr: float
    steps: int
    round: int
    losses: tuple[float, ...]
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "steps": self.steps,
            "round": self.round,
            "losses": list(self.losses),
            "score": self.score,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "probe") -> Probe:
        """Read back :meth:`to_dict` (from a saved result, where it is the field ``where``): ``null``
        losses and score are NaN, as JSON writes it, and ``"inf"``/``"-inf"`` infinities.

        Raises:
            ValueError: A field missing or of the wrong kind; the message names it.
        """
        shape = (
            '{"lr": number > 0, "steps": integer >= 1, "round": integer >= 0, "losses": [numbers], '
            '"score": number}'
        )
        fields = read_object(data, where, shape)

        def field(key: str) -> Any:
            return read_field(fields, key, where, shape=shape)

        losses = read_list(field("losses"), f"{where}.losses", 'of numbers (null for NaN, "inf", "-inf")')
        return cls(
            lr=read_float(field("lr"), f"{where}.lr", positive=True),
            steps=read_int(field("steps"), f"{where}.steps", 1),
            round=read_int(field("round"), f"{where}.round", 0),
            losses=tuple(decode_number(x, f"{where}.losses[{i}]") for i, x in enumerate(losses)),
            score=decode_number(field("score"), f"{where}.score"),
        )


#: ``probe(lr, steps) -> (training losses, score)``: one probe, from the starting state.
ProbeFunction = Callable[[float, int], tuple[Sequence[float], float]]


@dataclass(frozen=True)
class Confirmation:
    """What confirm mode trained and what it chose.

    Attributes:
        lr: The chosen LR (the best-scoring probe of the last round), or None (see ``reason``).
        center: The range test's suggestion the candidates were placed around.
        probes: Every probe, in the order they ran.
        plan: The :class:`ProbePlan` that was carried out.
        schedule: The plan's schedule the probes trained under.
        reason: Why no LR was chosen (None when one was).
        settings: The :class:`ConfirmSettings` used, as a dict.
        start_score: The untouched state's score on the confirm data, when it was taken.
        train_steps: The planned run's length the kept LR was scaled for (None: not scaled).
    """

    lr: float | None
    center: float | None
    probes: tuple[Probe, ...]
    plan: ProbePlan
    schedule: str = "constant"
    reason: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    start_score: float | None = None
    train_steps: int | None = None

    @property
    def gap(self) -> float | None:
        """The chosen probe's :func:`generalisation_gap` (None when it is not known)."""
        best = self.best
        return None if best is None else generalisation_gap(best, self.start_score)

    @property
    def best(self) -> Probe | None:
        """The chosen probe, or None."""
        last = [p for p in self.probes if p.round == self.probes[-1].round] if self.probes else []
        return _best(last) if self.lr is not None else None

    @property
    def rounds_run(self) -> int:
        """Rounds of probes that ran (fewer than planned when halving ran out of candidates); 0
        without probes."""
        return self.probes[-1].round + 1 if self.probes else 0

    @property
    def probe_steps(self) -> int:
        """Training steps every probe ran, together."""
        return sum(len(p.losses) for p in self.probes)

    @property
    def steps_used(self) -> int:
        """Training steps of the range test (as planned: ``num_iter``) and of every probe."""
        return self.plan.range_steps + self.probe_steps

    def summary(self) -> str:
        """One line: ``confirmed: 0.031 (best of 4 probes, 150 steps each)``.

        With several rounds it names them and the longest probe: ``(best of 5 probes, 2 rounds,
        up to 120 steps)``.
        """
        return f"confirmed: {self.detail()}"

    def detail(self) -> str:
        """:meth:`summary` without its ``confirmed:`` label."""
        if self.lr is None:
            return f"none ({self.reason})"
        firsts = [p for p in self.probes if p.round == 0]
        rounds = self.rounds_run
        if rounds == 1:
            detail = f"{len(firsts)} probes, {firsts[0].steps} steps each"
        else:
            detail = f"{len(firsts)} probes, {rounds} rounds, up to {max(p.steps for p in self.probes)} steps"
        best = self.best
        if best is not None and best.lr != self.lr:
            last = [p for p in self.probes if p.round == best.round]
            moves = []
            if self.settings.get("interpolate") and vertex_lr(last) != best.lr:
                moves.append("interpolated")
            if self.train_steps is not None and best.steps < self.train_steps:
                moves.append("scaled for the full run")
            detail += f"; the best, {best.lr:.3g}, {' and '.join(moves) or 'moved'}"
        return f"{self.lr:.3g} (best of {detail})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "center": self.center,
            "schedule": self.schedule,
            "reason": self.reason,
            "plan": self.plan.to_dict(),
            "settings": dict(self.settings),
            "start_score": self.start_score,
            "train_steps": self.train_steps,
            "probes": [p.to_dict() for p in self.probes],
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "confirmation") -> Confirmation:
        """Read back :meth:`to_dict` (from a saved result, where it is the field ``where``): ``null``
        scores or losses, as JSON writes NaN, become NaN.

        Raises:
            ValueError: A field missing or of the wrong kind, at any depth; the message names it
                (``confirmation.probes[2].score``) and says what a valid one is.
        """
        shape = (
            '{"lr": number or null, "center": number or null, "schedule": name, "reason": text or null, '
            '"plan": {...}, "settings": {...}, "probes": [{...}, ...]}'
        )
        fields = read_object(data, where, shape)
        probes = read_list(read_field(fields, "probes", where, []), f"{where}.probes", "of probe objects")
        lr = read_optional_float(read_field(fields, "lr", where, None), f"{where}.lr", positive=True)
        if lr is not None and not probes:
            raise ValueError(f"{where}.lr is {lr} but {where}.probes is empty: a chosen LR needs its probes")
        settings = decode(read_field(fields, "settings", where, {}))
        return cls(
            lr=lr,
            center=read_optional_float(
                read_field(fields, "center", where, None), f"{where}.center", positive=True
            ),
            probes=tuple(Probe.from_dict(p, f"{where}.probes[{i}]") for i, p in enumerate(probes)),
            plan=ProbePlan.from_dict(read_field(fields, "plan", where, shape=shape), f"{where}.plan"),
            schedule=read_str(
                read_field(fields, "schedule", where, CONSTANT), f"{where}.schedule", SCHEDULES
            ),
            reason=read_optional_str(read_field(fields, "reason", where, None), f"{where}.reason"),
            settings=read_object(settings, f"{where}.settings"),
            start_score=read_optional_float(
                read_field(fields, "start_score", where, None), f"{where}.start_score"
            ),
            train_steps=read_optional_int(
                read_field(fields, "train_steps", where, None), f"{where}.train_steps", 1
            ),
        )


def run_plan(
    plan: ProbePlan,
    center: float,
    probe: ProbeFunction,
    *,
    schedule: str = "constant",
    settings: ConfirmSettings | None = None,
    train_steps: int | None = None,
    start_score: float | None = None,
    ceiling: float | None = None,
) -> Confirmation:
    """Carry out ``plan`` around ``center`` with ``probe(lr, steps) -> (losses, score)``.

    Round 1 probes ``center * 10 ** offset`` for every offset of the plan (``center`` raised to
    ``settings.centre_reach`` decades below ``ceiling`` when it lies further down); each later
    round probes the best-scoring ``size`` candidates of the round before (lowest score first; a
    NaN score counts as ``inf``; ties go to the lower LR, the safer side), leaving out any that
    blew up; when fewer than two are left, the rounds end there. The chosen LR is the best of the
    last round run; when every probe of it scored ``inf`` no LR is chosen.

    Args:
        plan: From :func:`plan_probes`.
        center: The range test's suggestion (> 0).
        probe: Trains one probe from the starting state and returns its per-step training losses
            and its score (lower is better).
        schedule: The plan's schedule, recorded in the result.
        settings: The settings behind ``plan``, recorded in the result; with ``interpolate`` the
            chosen LR is :func:`vertex_lr` of the last round, and their exponents scale it for
            the run's length when ``train_steps`` is given.
        train_steps: The planned run's length. When the chosen probe was shorter, the kept LR is
            the chosen LR times ``(probe steps / train_steps) ** exponent``, the exponent from
            :func:`horizon_for` and the best probe's :func:`generalisation_gap`.
        start_score: The untouched state's score, which tells the adaptive probes whether any
            probe trained at all (:func:`next_offset`) and scales the generalisation gap; None:
            not known (the gap is then unknown and ``settings.horizon`` applies).
        ceiling: The LR at which the range test's loss blew up (its last LR), if known: it bounds
            the centre from below (``settings.centre_reach``), and while no probe has trained the
            adaptive probes climb halfway towards it (:func:`next_offset`).

    Returns:
        The :class:`Confirmation`.
    """
    if not (math.isfinite(center) and center > 0):
        raise ValueError(f"center must be a finite LR > 0, got {center}")
    settings = settings or ConfirmSettings()
    if ceiling is not None and math.isfinite(ceiling) and ceiling > 0:
        center = max(center, float(ceiling * 10.0**-settings.centre_reach))
    candidates = [float(center * 10.0**offset) for offset in plan.offsets]
    probes: list[Probe] = []
    last: list[Probe] = []

    def run(lr: float, steps: int, index: int) -> Probe:
        losses, score = probe(lr, steps)
        record = Probe(
            lr=lr, steps=steps, round=index, losses=tuple(float(x) for x in losses), score=float(score)
        )
        probes.append(record)
        last.append(record)
        return record

    for index, round_ in enumerate(plan.rounds):
        if index > 0:
            ranked = [p for p in sorted(last, key=_rank)[: round_.size] if _rank(p)[0] < math.inf]
            if len(ranked) < 2:  # nothing left to compare: the round before decides
                break
            candidates = sorted(p.lr for p in ranked)
        last = []
        for lr in candidates:
            run(lr, round_.steps, index)
        if index == 0 and plan.adaptive > 0:
            # the adaptive probes: each placed by the scores so far, offsets from the centre
            scores = {offset: _rank(p)[0] for offset, p in zip(plan.offsets, last, strict=True)}
            top = None if ceiling is None or not ceiling > 0 else math.log10(ceiling / center)
            for _ in range(plan.adaptive):
                offset = next_offset(scores, settings, start_score, top)
                if offset is None:
                    break
                scores[offset] = _rank(run(float(center * 10.0**offset), round_.steps, index))[0]
    chosen = _best(last)
    kept = None
    if chosen is not None:
        kept = vertex_lr(last) if settings.interpolate else chosen.lr
        if train_steps is not None and chosen.steps < train_steps:
            exponent = horizon_for(generalisation_gap(chosen, start_score), settings)
            kept = float(kept * (chosen.steps / train_steps) ** exponent)
    return Confirmation(
        lr=kept,
        center=center,
        probes=tuple(probes),
        plan=plan,
        schedule=schedule,
        reason="every probe of the last round blew up (non-finite loss)" if chosen is None else None,
        settings=settings.to_dict(),
        start_score=start_score,
        train_steps=train_steps,
    )


def vertex_lr(probes: Sequence[Probe]) -> float | None:
    """The LR at the lowest point of the parabola through the best probe and its two neighbours.

    The parabola passes through the three probes' (log10 LR, score) points; its vertex is kept no
    further than halfway from the best probe to either neighbour. Probes that blew up are left
    out. When the best probe (lowest score, the lower LR on a tie) is the lowest or highest LR
    left, its own LR is returned; None when every probe blew up.

    >>> def at(lr, score):
    ...     return Probe(lr=lr, steps=10, round=0, losses=(), score=score)
    >>> round(vertex_lr([at(0.001, 2.0), at(0.01, 1.0), at(0.1, 1.5)]), 5)  # leans to the better side
    0.01468
    >>> vertex_lr([at(0.001, 1.0), at(0.01, 2.0), at(0.1, 1.5)])  # best on an edge: its own LR
    0.001
    """
    ranked = sorted((p for p in probes if _rank(p)[0] < math.inf), key=lambda p: p.lr)
    if not ranked:
        return None
    best = min(ranked, key=_rank)
    i = ranked.index(best)
    if i == 0 or i == len(ranked) - 1:
        return best.lr
    (x0, y0), (x1, y1), (x2, y2) = ((math.log10(p.lr), p.score) for p in ranked[i - 1 : i + 2])
    if not (x0 < x1 < x2):
        return best.lr
    slope_low, slope_high = (y1 - y0) / (x1 - x0), (y2 - y1) / (x2 - x1)
    curvature = (slope_high - slope_low) / (x2 - x0)
    if curvature <= 0:  # three equal scores: no lowest point
        return best.lr
    vertex = (x0 + x1) / 2 - slope_low / (2 * curvature)
    return float(10.0 ** min(max(vertex, (x0 + x1) / 2), (x1 + x2) / 2))


def generalisation_gap(probe: Probe, start_score: float | None) -> float | None:
    """How far a probe's score lies above its training loss, as a share of the starting score.

    ``(score - mean of the last fifth of its training losses) / |start_score|``: near zero or below
    when the held-out loss follows the training loss, large when the probe overfits. None when
    ``start_score`` is unknown or zero or a value is not finite.

    >>> probe = Probe(lr=0.01, steps=10, round=0, losses=(2.0,) * 8 + (0.5, 0.3), score=0.6)
    >>> round(generalisation_gap(probe, 2.0), 6)  # (0.6 - mean(0.5, 0.3)) / 2.0
    0.1
    """
    if start_score is None or not math.isfinite(start_score) or start_score == 0 or not probe.losses:
        return None
    tail = probe.losses[-max(1, len(probe.losses) // 5) :]
    gap = (probe.score - math.fsum(tail) / len(tail)) / abs(start_score)
    return gap if math.isfinite(gap) else None


def horizon_for(gap: float | None, settings: ConfirmSettings) -> float:
    """The length-correction exponent for a best probe with generalisation gap ``gap``:
    ``settings.low_gap_horizon`` below ``settings.overfit_gap``, else (and when ``gap`` is None)
    ``settings.horizon``.

    >>> settings = ConfirmSettings()
    >>> horizon_for(0.01, settings), horizon_for(0.2, settings), horizon_for(None, settings)
    (0.3, 0.75, 0.75)
    """
    return settings.low_gap_horizon if gap is not None and gap < settings.overfit_gap else settings.horizon


def next_offset(
    scores: dict[float, float],
    settings: ConfirmSettings,
    start_score: float | None = None,
    ceiling: float | None = None,
) -> float | None:
    """Where the adaptive search probes next, in decades from the centre, or None to stop.

    ``scores`` maps each offset probed so far to its score (``inf`` for a probe that blew up);
    ``start_score`` is the untouched state's score on the same data, when known. While every probe
    that did not blow up scores within ``settings.progress`` of ``start_score`` of it, nothing has
    trained: the next probe lies halfway to the lowest offset that blew up, or, when none did,
    halfway to ``ceiling`` (the offset where the range test's loss blew up, when known and more than
    ``spacing`` above), else ``spacing`` above the highest offset (probes that all score worse than
    the start did train, and the rules below walk down from them). Otherwise the best is the
    lowest score, the lower offset on a tie. When it is the lowest offset, the next probe lies
    ``spacing`` below it; when it is the highest, ``spacing`` above; either only within ``reach``
    decades of ``settings.shift``. Otherwise the next probe halves the gap between the best and its
    better-scoring neighbour, or, when that gap is at most ``finest``, the gap to the other
    neighbour; when both are that fine, the search stops.

    >>> s = ConfirmSettings(up=1, down=1, spacing=0.5, extra=2)
    >>> next_offset({-0.5: 2.0, 0.0: 1.5, 0.5: 1.0}, s)  # best on the upper edge: go higher
    1.0
    >>> next_offset({-0.5: 2.0, 0.0: 1.0, 0.5: 1.5}, s)  # inside: halve towards the better side
    0.25
    >>> next_offset({-0.5: 1.0, 0.0: 2.0, 0.5: math.inf}, s)  # a blow-up counts as the worst
    -1.0
    >>> next_offset({-0.5: 2.30, 0.0: 2.30, 0.5: 2.30}, s, start_score=2.30)  # nothing trained
    1.0
    >>> next_offset({-0.5: 2.30, 0.0: 2.30, 0.5: math.inf}, s, start_score=2.30)
    0.25
    >>> next_offset({-0.5: 2.30, 0.0: 2.30, 0.5: 2.30}, s, start_score=2.30, ceiling=4.5)  # towards it
    2.5
    """
    order = sorted(scores)
    low, high = settings.shift - settings.reach - 1e-9, settings.shift + settings.reach + 1e-9
    finite = [x for x in order if math.isfinite(scores[x])]
    if start_score is not None and math.isfinite(start_score) and finite:
        tolerance = settings.progress * abs(start_score)
        if all(abs(scores[x] - start_score) <= tolerance for x in finite):
            top = max(finite)
            blown = [x for x in order if x > top]
            if not blown and ceiling is not None and ceiling - top > settings.spacing:
                return round((top + ceiling) / 2, 10)
            if not blown and top + settings.spacing <= high:
                return round(top + settings.spacing, 10)
            if blown and blown[0] - top > settings.finest + 1e-9:
                return round((top + blown[0]) / 2, 10)
    best = min(order, key=lambda x: (scores[x], x))
    position = order.index(best)
    if position == 0 and best - settings.spacing >= low:
        return round(best - settings.spacing, 10)
    if position == len(order) - 1 and best + settings.spacing <= high:
        return round(best + settings.spacing, 10)
    neighbours = [order[i] for i in (position - 1, position + 1) if 0 <= i < len(order)]
    for neighbour in sorted(neighbours, key=lambda x: (scores[x], x)):
        if abs(neighbour - best) > settings.finest + 1e-9:
            return round((neighbour + best) / 2, 10)
    return None


def blind_centre(ceiling: float | None, settings: ConfirmSettings) -> float | None:
    """Where the probes centre when the range test gave no suggestion: ``settings.blind_centre``
    decades below ``ceiling`` (the range test's last LR), or None when that is not a finite LR > 0.

    >>> blind_centre(10.0, ConfirmSettings(blind_centre=2.0))
    0.1
    >>> blind_centre(None, ConfirmSettings()) is None
    True
    """
    if ceiling is None or not (math.isfinite(ceiling) and ceiling > 0):
        return None
    return float(ceiling * 10.0**-settings.blind_centre)


def no_confirmation(
    plan: ProbePlan, reason: str, *, schedule: str = "constant", settings: ConfirmSettings | None = None
) -> Confirmation:
    """A confirmation that trained no probe, saying why (e.g. the range test suggested nothing)."""
    return Confirmation(
        lr=None,
        center=None,
        probes=(),
        plan=plan,
        schedule=schedule,
        reason=reason,
        settings=(settings or ConfirmSettings()).to_dict(),
    )


def _rank(probe: Probe) -> tuple[float, float]:
    score = probe.score if math.isfinite(probe.score) or probe.score == -math.inf else math.inf
    return (score, probe.lr)


def _best(probes: Sequence[Probe]) -> Probe | None:
    if not probes:
        return None
    best = min(probes, key=_rank)
    return best if _rank(best)[0] < math.inf else None


def _positive(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a whole number of training steps >= 1, got {value!r}")
    return int(value)


# -- with a trainer ------------------------------------------------------------------------------

#: Options of a trainer that make its step record a validation loss; the probes' trainer is
#: built without them (a probe trains on the training loss and is scored once, at its end).
VALIDATION_OPTIONS = ("val_loader", "val_batches")


@dataclass(frozen=True)
class ConfirmRun:
    """What :func:`lrfinder.api.run_range_test` needs to confirm its suggestion.

    Attributes:
        probes: The probe plan (:func:`probe_plan_for`).
        data: What ``trainer.evaluate`` scores each probe on (``confirm_data``).
        settings: The settings behind ``probes``, recorded in the result.
        trainer: The trainer the probes train with; None: the range test's own. A trainer whose
            step records a validation loss (``val_loader``) needs a twin built without it
            (:func:`probe_options`).
    """

    probes: ProbePlan
    data: Any
    settings: ConfirmSettings = field(default_factory=ConfirmSettings)
    trainer: Trainer | None = None


def check_confirm(confirm: Any) -> None:
    """Raise ``ValueError`` unless ``confirm`` is True, False or a budget (an integer >= 1)."""
    if isinstance(confirm, bool):
        return
    if not isinstance(confirm, (int, np.integer)) or confirm < 1:
        raise ValueError(f"confirm must be True, False or a budget in training steps >= 1, got {confirm!r}")


def probe_plan_for(
    plan: Plan | None, confirm: bool | int, num_iter: int | None, settings: ConfirmSettings | None = None
) -> ProbePlan:
    """The probe plan of ``find_lr(..., confirm=confirm, num_iter=num_iter)`` under ``plan``.

    ``confirm=True`` gives the budget :func:`default_budget`, an integer is the budget itself;
    ``num_iter=None`` lets :func:`plan_probes` shorten the default range test.

    Raises:
        ValueError: No ``train_steps`` in the plan, or the budget is too small.
        TypeError: ``settings`` is not a :class:`ConfirmSettings`.
    """
    check_confirm(confirm)
    if confirm is False:
        raise ValueError("confirm is False: there is no probe plan")
    train_steps = check_train_steps(
        None if plan is None else plan.train_steps, required=True, what="confirm mode"
    )
    assert train_steps is not None
    settings = ConfirmSettings() if settings is None else settings
    if not isinstance(settings, ConfirmSettings):
        raise TypeError(
            f"confirm_settings must be a lrfinder.ConfirmSettings, got {type(settings).__qualname__}"
        )
    budget = default_budget(train_steps, settings) if confirm is True else int(confirm)
    return plan_probes(
        budget,
        DEFAULT_RANGE_STEPS if num_iter is None else num_iter,
        settings,
        train_steps=train_steps,
        shorten_range=num_iter is None,
    )


def default_confirm_data(confirm_data: Any, val_loader: Any, trainer: Any = None) -> Any:
    """``confirm_data``, else ``val_loader``, else the held-out data ``trainer`` knows of
    (``trainer.held_out()``: a Hugging Face Trainer's ``eval_dataset``); ``TypeError`` when there
    is none.

    Never training batches: a probe scored on the batches it trained on rewards the LR that
    overfits fastest, and holding some out would change the data the user trains on.
    """
    if confirm_data is not None:
        return confirm_data
    if val_loader is not None:
        return val_loader
    held_out = getattr(trainer, "held_out", None)
    found = held_out() if callable(held_out) else None
    if found is not None:
        return found
    hint = getattr(trainer, "held_out_hint", "")
    raise TypeError(
        "confirm mode scores its probes on held-out data: pass confirm_data= (validation batches; "
        f"for a step function, a callable evaluate() -> loss) or val_loader={hint}"
    )


def probe_options(options: dict[str, Any]) -> dict[str, Any]:
    """The trainer options for the probes' trainer: ``options`` without :data:`VALIDATION_OPTIONS`."""
    return {key: value for key, value in options.items() if key not in VALIDATION_OPTIONS}


def fit_lookahead(
    probes: ProbePlan, lookahead: int, settings: ConfirmSettings, train_steps: int
) -> ProbePlan:
    """``probes`` planned again for a trainer that draws ``lookahead`` batches ahead in each pass
    over the data (the range test's length unchanged), so that the batches drawn stay in budget."""
    if lookahead == probes.lookahead:
        return probes
    return plan_probes(
        probes.budget,
        probes.range_steps,
        settings,
        train_steps=train_steps,
        shorten_range=False,
        lookahead=lookahead,
    )


def check_run(run: ConfirmRun, plan: Plan | None, num_iter: int) -> None:
    """Raise ``ValueError`` unless ``run`` fits the plan and the range test's length."""
    if plan is None or plan.train_steps is None:
        raise ValueError("confirm mode needs a plan with train_steps (lrfinder.Plan(schedule, train_steps))")
    if run.probes.range_steps != num_iter:
        raise ValueError(
            f"the probe plan counts a range test of {run.probes.range_steps} steps but the settings "
            f"have num_iter={num_iter}; build the settings with num_iter=probes.range_steps"
        )


def check_evaluates(trainer: Any) -> None:
    """Raise ``TypeError`` unless ``trainer`` can score a probe (``evaluate(data) -> float``) and
    put its state back (a step function needs ``snapshot=`` and ``restore=``)."""
    if not callable(getattr(trainer, "evaluate", None)):
        raise TypeError(
            f"confirm mode scores each probe with trainer.evaluate(confirm_data), which "
            f"{type(trainer).__qualname__} does not have; add evaluate(data) -> float (the mean loss "
            "on data, without training) to it"
        )
    if getattr(trainer, "info", {}).get("restores_state") is False:
        raise TypeError(
            "confirm mode trains every probe from the same starting state, so the step function "
            "needs snapshot= and restore= (snapshot() -> state, restore(state))"
        )


def train_probe(
    trainer: Trainer,
    lrs: Sequence[float],
    confirm_data: Any,
    *,
    on_step: Callable[[], None] | None = None,
    before_step: Callable[[int], None] | None = None,
) -> tuple[list[float], float]:
    """Train one probe with ``trainer`` at the per-step ``lrs``, score it, and restore the state.

    ``before_step(step)`` runs before each step, after the snapshot (confirm mode sets the one-cycle
    plan's momentum there).

    The state is snapshotted first and restored in ``finally``: after the score, after an
    exception raised by a step or by the scoring (re-raised), and after ``KeyboardInterrupt``
    (re-raised too). A non-finite training loss ends the probe at once with score ``inf``.

    Returns:
        The training loss of every step that ran, and the mean loss on ``confirm_data``.
    """
    sync_every = max(1, int(getattr(trainer, "sync_every", 1)))
    losses: list[float] = []
    trainer.snapshot()
    try:
        pending: list[Any] = []
        blew_up = False
        for step, lr in enumerate(lrs):
            try:
                if before_step is not None:
                    before_step(step)
                pending.append(trainer.step(float(lr)))
            except BaseException as error:
                add_note(
                    error,
                    f"lrfinder: raised by step {step} of a confirm probe at "
                    f"lr={float(lr):.3e}; the model's state was restored",
                )
                raise
            if on_step is not None:
                on_step()
            if len(pending) >= sync_every or step == len(lrs) - 1:
                values = trainer.fetch_losses(pending)
                pending = []
                for value in values:
                    losses.append(float(value))
                    if not math.isfinite(value):
                        blew_up = True
                        break
                if blew_up:
                    break
        score = math.inf if blew_up else float(trainer.evaluate(confirm_data))
        if math.isnan(score):
            score = math.inf
    finally:
        # A Ctrl-C pressed during the restore waits until the state is whole again.
        with defer_sigint() as held:
            trainer.restore()
        if held:
            raise KeyboardInterrupt
    return losses, score


def _momentum_cycler(set_momentum: Callable[[float], None], steps: int) -> Callable[[int], None]:
    """``before_step`` of a ``steps``-step one-cycle probe: OneCycleLR's momentum of each step."""

    def cycle(step: int) -> None:
        set_momentum(onecycle_momentum(step, steps))

    return cycle


def confirm(
    trainer: Trainer,
    plan: ProbePlan,
    center: float | None,
    user_plan: Plan,
    confirm_data: Any,
    *,
    settings: ConfirmSettings | None = None,
    progress: bool | None = None,
    ceiling: float | None = None,
) -> Confirmation:
    """Carry out ``plan`` with ``trainer``: each probe trains under ``user_plan``'s schedule
    compressed to the probe's length (:class:`~lrfinder.plan.ScheduleLRs`, each LR computed when
    read, so a probe of any length costs no memory for its schedule) and is scored with
    ``trainer.evaluate(confirm_data)``. The trainer's state is back as found after every probe.

    Args:
        trainer: A :class:`~lrfinder.trainers.base.Trainer` with ``evaluate(data) -> float``.
        plan: From :func:`plan_probes`.
        center: The range test's suggestion; when None, the probes centre on
            :func:`blind_centre` below ``ceiling`` (with a warning), and without a ceiling
            nothing trains and the result says why.
        user_plan: The user's schedule.
        confirm_data: What ``trainer.evaluate`` scores a probe on.
        settings: Recorded in the result.
        progress: Progress bar over the probes' steps (None: only on a terminal or in a notebook).
        ceiling: The range test's last LR, where its loss blew up (see :func:`run_plan`).
    """
    knobs = settings or ConfirmSettings()
    if center is None:
        center = blind_centre(ceiling, knobs)
        if center is None:
            warnings.warn(
                "lrfinder: the range test gave no suggestion, so confirm mode trained no probe",
                RuntimeWarning,
                stacklevel=2,
            )
            return no_confirmation(
                plan,
                "the range test gave no suggestion to confirm",
                schedule=user_plan.schedule,
                settings=settings,
            )
        warnings.warn(
            f"lrfinder: the range test gave no suggestion, so confirm mode centred its probes on "
            f"{center:.3g}, {knobs.blind_centre:g} decades below the LR where the range test "
            f"stopped ({ceiling:.3g})",
            RuntimeWarning,
            stacklevel=2,
        )
    bar = progress_bar(progress, trainer, plan.probe_steps, desc="Confirm probes")
    on_step = None if bar is None else (lambda: bar.update(1))

    # the one-cycle plan cycles the momentum too, where the trainer can set it (PyTorch)
    cycles = user_plan.schedule == ONECYCLE and knobs.cycle_momentum
    set_momentum: Callable[[float], None] | None = getattr(trainer, "set_momentum", None)
    if not (cycles and getattr(trainer, "cycles_momentum", False)):
        set_momentum = None

    def probe(lr: float, steps: int) -> tuple[list[float], float]:
        losses, score = train_probe(
            trainer,
            ScheduleLRs(user_plan.schedule, lr, steps),
            confirm_data,
            on_step=on_step,
            before_step=None if set_momentum is None else _momentum_cycler(set_momentum, steps),
        )
        if bar is not None:
            bar.update(steps - len(losses))  # the steps a blown-up probe did not run
            bar.set_postfix(lr=f"{lr:.2e}", score=f"{score:.4g}", refresh=False)
        return losses, score

    try:
        # the untouched state's score (no training), for the adaptive probes to tell "nothing
        # trained" from "trained" and to scale the generalisation gap; snapshot and restore as
        # for any probe
        needs_start = plan.adaptive > 0 or knobs.low_gap_horizon != knobs.horizon
        start_score = train_probe(trainer, (), confirm_data)[1] if needs_start else None
        result = run_plan(
            plan,
            center,
            probe,
            schedule=user_plan.schedule,
            settings=settings,
            train_steps=user_plan.train_steps,
            start_score=start_score,
            ceiling=ceiling,
        )
    except BaseException:
        if bar is not None:
            bar.close()
        raise
    if bar is not None:
        # Halving may skip probes: end the bar full, so a notebook does not paint it red.
        close_bar(bar, complete=True)
    return result

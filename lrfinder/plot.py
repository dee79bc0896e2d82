"""Drawing range-test results with matplotlib (imported only when a plot is asked for)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from lrfinder.result import LRFinderResult

_MARKERS = {"steepest": "v", "valley": "o", "minimum": "s", "centered_minimum": "D", "raw_minimum": "P"}
#: Most points drawn per curve; longer curves are thinned to each stretch's lowest and highest
#: point (spikes stay visible), so a curve of millions of points draws as fast as a short one.
MAX_DRAWN_POINTS = 2000

_STOP_LABELS = {
    "diverged": "diverged",
    "non_finite": "non-finite loss",
    "interrupted": "interrupted",
}


def plot_result(
    result: LRFinderResult,
    ax: Axes | None = None,
    *,
    label: str | None = None,
    color: str | None = None,
    show_raw: bool = True,
    show_suggestions: bool | Sequence[str] = True,
    show_range: bool = True,
    show_probes: bool = True,
    title: str | None = None,
) -> Axes:
    """Draw ``result`` on ``ax`` and return the Axes.

    The LR axis is logarithmic for an exponential ladder. The raw loss is drawn faint, the smoothed
    loss bold; each suggestion is marked and labelled with its value (the default rule's marker is
    larger); an early stop is marked with a dotted vertical line. The y-limits keep the descent
    readable whatever the final blow-up reached.

    Args:
        result: The result to draw.
        ax: Axes to draw on; None makes a new figure through pyplot.
        label: Legend label of the smoothed curve, followed by the result's suggestion (for
            overlays, where the suggestions are not listed apart); default "smoothed loss".
        color: Colour of the curves (default: the Axes' next colour).
        show_raw: Draw the raw per-batch losses.
        show_suggestions: True for every rule, False for none, or the rule names to mark.
        show_range: Shade the result's ``lr_range`` (skipped when overlaying several results).
        show_probes: Draw confirm mode's probes, when there are any: each probe's score at its LR
            on a second y-axis (later rounds larger), the chosen one as a star.
        title: Axes title; None writes one naming the backend, the rule and the plan.
    """
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    lrs, smoothed = result.lrs, result.smoothed
    line_label = "smoothed loss" if not label else f"{label} — {_suggestion_text(result)}"
    drawn = thin_indices(smoothed, MAX_DRAWN_POINTS)
    (line,) = ax.plot(lrs[drawn], smoothed[drawn], color=color, linewidth=2.0, label=line_label)
    shade = line.get_color()  # the Axes' pick when color is None
    if show_raw:
        drawn = thin_indices(result.losses, MAX_DRAWN_POINTS)
        ax.plot(
            lrs[drawn],
            result.losses[drawn],
            color=shade,
            alpha=0.3,
            linewidth=1.0,
            label=None if label else "raw loss",
        )
    if result.settings.get("mode", "exp") == "exp":
        ax.set_xscale("log")

    if show_range and not label and result.lr_range is not None:
        low, high = result.lr_range
        ax.axvspan(low, high, color=shade, alpha=0.08, label=f"useful range: {low:.1e} – {high:.1e}")

    names = _chosen_rules(result, show_suggestions)
    for name in names:
        s = result.suggestions[name]
        if s.lr is None:
            continue
        y = _loss_at(lrs, smoothed, s.lr)
        is_default = name == result.rule
        ax.plot(
            [s.lr],
            [y],
            linestyle="none",
            marker=_MARKERS.get(name, "D"),
            markersize=10 if is_default else 7,
            markerfacecolor="none" if not is_default else shade,
            markeredgecolor=shade,
            markeredgewidth=1.5,
            label=f"{name}{' (default)' if is_default else ''}: {s.lr:.2e}" if not label else None,
            zorder=3,
        )

    if result.stop_reason in _STOP_LABELS and result.num_steps:
        ax.axvline(
            lrs[-1],
            color=shade,
            linestyle=":",
            linewidth=1.2,
            label=f"{_STOP_LABELS[result.stop_reason]} at {lrs[-1]:.2e}" if not label else None,
        )

    _set_ylim(ax, result)
    ax.set_xlabel("learning rate" + (" (log scale)" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel("loss")
    if not label and result.suggestion is not None and (result.plan is not None or result.confirmation):
        # The LR to use differs from every plain rule's marker: draw it where it is.
        confirmed = result.confirmation is not None and result.confirmation.lr is not None
        ax.axvline(
            result.suggestion,
            color="tab:red",
            linestyle="--",
            linewidth=1.2,
            label=f"{'confirmed' if confirmed else 'suggested for the plan'}: {result.suggestion:.2e}",
        )
    if show_probes and not label and result.confirmation is not None and result.confirmation.probes:
        _draw_probes(ax, result)
    if title is None:
        title = _title(result)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return ax


def _title(result: LRFinderResult) -> str:
    """Two short lines: the LR to use and where it comes from; the plan and the probes."""
    lr = result.suggestion
    verdict = f"{lr:.3g}" if lr is not None else "none"
    if result.confirmation is not None and result.confirmation.lr is not None:
        source = "confirmed by training probes"
    elif result.plan is not None:
        source = f"{result.best.rule} for the plan"
    else:
        source = f"rule {result.rule}"
    title = f"LR range test ({result.backend}) — suggested lr: {verdict} ({source})"
    details = []
    if result.plan is not None:
        steps = "" if result.plan.train_steps is None else f", {result.plan.train_steps} steps"
        details.append(f"plan: {result.plan.schedule}{steps}")
    confirmation = result.confirmation
    if confirmation is not None and confirmation.probes:
        rounds = confirmation.rounds_run
        details.append(f"{len(confirmation.probes)} probes" + (f" in {rounds} rounds" if rounds > 1 else ""))
    elif confirmation is not None:
        details.append(f"not confirmed: {confirmation.reason}")
    return title + ("\n" + "; ".join(details) if details else "")


def _draw_probes(ax: Axes, result: LRFinderResult) -> None:
    """Each probe's score at its LR on a twin y-axis; the chosen probe as a star."""
    confirmation = result.confirmation
    assert confirmation is not None
    twin = ax.twinx()
    twin.set_ylabel("probe score (held-out loss)")
    rounds = confirmation.rounds_run
    for index in range(rounds):
        probes = [p for p in confirmation.probes if p.round == index and np.isfinite(p.score)]
        if probes:
            twin.plot(
                [p.lr for p in probes],
                [p.score for p in probes],
                linestyle="none",
                marker="o",
                markersize=5 + 2 * index,
                color="tab:purple",
                alpha=0.5 + 0.5 * (index + 1) / rounds,
                label=f"probes, round {index + 1} ({probes[0].steps} steps)",
            )
    best = confirmation.best
    if best is not None:
        twin.plot(
            [best.lr],
            [best.score],
            linestyle="none",
            marker="*",
            markersize=16,
            color="tab:red",
            label=f"best probe: {best.lr:.2e}",
            zorder=4,
        )
    twin.legend(fontsize=8, loc="upper center")


def plot_results(
    results: Sequence[LRFinderResult],
    labels: Sequence[str] | None = None,
    ax: Axes | None = None,
    **options: Any,
) -> Axes:
    """Overlay several results on one Axes, each labelled (default labels: backend and index)."""
    if labels is None:
        labels = [f"{r.backend} #{i + 1}" for i, r in enumerate(results)]
    if len(labels) != len(results):
        raise ValueError(f"{len(results)} results but {len(labels)} labels")
    if len(results) == 1:
        return plot_result(results[0], ax=ax, **options)
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for result, label in zip(results, labels, strict=True):
        plot_result(result, ax=ax, label=label, title="", **options)
    ax.set_title("LR range tests compared", fontsize=10)
    _set_ylim(ax, *results)
    return ax


def render_png(
    results: Sequence[LRFinderResult],
    labels: Sequence[str] | None = None,
    *,
    dpi: int = 120,
    **options: Any,
) -> bytes:
    """The plot of ``results`` as PNG bytes, drawn off-screen (Agg) without touching pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    plot_results(results, labels, ax=figure.add_subplot(), **options)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def thin_indices(values: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of at most about ``max_points`` points of ``values`` that draw like all of them.

    The curve is cut into stretches of equal length; each keeps its lowest and highest finite
    point (in their order), and the last point is always kept. A curve of ``max_points`` points
    or fewer is kept whole. Linear in time.

    >>> thin_indices(np.array([3.0, 1.0, 2.0, 5.0, 4.0, 0.0]), 4).tolist()
    [0, 1, 3, 5]
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    if n <= max_points:
        return np.arange(n)
    size = -(-n // max(1, max_points // 2))
    rows = -(-n // size)
    padded = np.full(rows * size, np.nan)
    padded[:n] = values
    blocks = padded.reshape(rows, size)
    finite = np.isfinite(blocks)
    low = np.argmin(np.where(finite, blocks, np.inf), axis=1)
    high = np.argmax(np.where(finite, blocks, -np.inf), axis=1)
    starts = np.arange(rows) * size
    keep = np.concatenate((starts + low, starts + high, [n - 1]))
    return np.unique(keep[keep < n])


def _suggestion_text(result: LRFinderResult) -> str:
    """``"valley: 3.16e-03"``: the result's rule and suggested LR, or that it has none."""
    lr = result.suggestion
    return f"{result.rule}: {lr:.2e}" if lr is not None else f"{result.rule}: no suggestion"


def _chosen_rules(result: LRFinderResult, show: bool | Sequence[str]) -> list[str]:
    if show is True:
        return list(result.suggestions)
    if show is False:
        return []
    return [name for name in show if name in result.suggestions]


def _loss_at(lrs: np.ndarray, losses: np.ndarray, lr: float) -> float:
    """The curve's value at ``lr``, interpolated in log(lr) over its finite points."""
    finite = np.isfinite(losses)
    return float(np.interp(np.log(lr), np.log(lrs[finite]), losses[finite]))


def _set_ylim(ax: Axes, *results: LRFinderResult) -> None:
    """From just below the lowest smoothed loss to a little above where the curves start."""
    lows, highs = [], []
    for result in results:
        smoothed = result.smoothed[np.isfinite(result.smoothed)]
        if smoothed.size == 0:
            continue
        lowest = int(np.argmin(smoothed))
        lows.append(smoothed[lowest])
        highs.append(np.max(smoothed[: lowest + 1]))
        raw = result.losses[: lowest + 1]
        raw = raw[np.isfinite(raw)]
        if raw.size:  # room for the raw noise around the descent, not for the blow-up
            lows.append(np.percentile(raw, 2))
    if not lows:
        return
    low, high = float(min(lows)), float(max(highs))
    span = high - low if high > low else max(abs(high), 1.0) * 0.1
    ax.set_ylim(low - 0.08 * span, high + 0.35 * span)

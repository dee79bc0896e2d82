"""What ``lrfinder find`` prints once the range test has run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from lrfinder._version import __version__

if TYPE_CHECKING:
    from lrfinder.result import LRFinderResult

#: How the run stopped, by stop reason, in words.
STOPS = {
    "finished": "ran all {planned} steps",
    "diverged": "the loss diverged at lr={lr:.3g} (step {steps} of {planned})",
    "non_finite": "the loss became NaN or infinite at lr={lr:.3g} (step {steps} of {planned})",
    "interrupted": "interrupted at step {steps} of {planned}",
}


def warning_lines(result: LRFinderResult, notes: list[str]) -> list[str]:
    """One ``warning: ...`` line per diagnostic of ``result``, then one per note."""
    return [f"warning: {d.message}" for d in result.diagnostics] + [f"warning: {note}" for note in notes]


def summary_lines(result: LRFinderResult, path: Path, written: list[tuple[str, Path]]) -> list[str]:
    """The summary: suggestion, other rules, useful range, LRs to compare, stop, files written.

    Args:
        result: The range test's result.
        path: The script (or saved model) it ran on.
        written: ``(kind, path)`` of each file written.
    """
    best = result.best
    planned = int(result.settings.get("num_iter", result.num_steps))
    last = float(result.lrs[-1]) if result.num_steps else float("nan")
    stop = STOPS.get(result.stop_reason, result.stop_reason).format(
        lr=last, steps=result.num_steps, planned=planned
    )
    others = [f"{name} {format_lr(s.lr)}" for name, s in result.suggestions.items() if name != result.rule]
    span = result.lr_range
    rungs = result.candidates()
    plan = result.plan
    for_plan = (
        ""
        if plan is None
        else f" for {plan.schedule}" + ("" if plan.train_steps is None else f" over {plan.train_steps} steps")
    )
    lines = [
        f"lrfinder {__version__}: range test of {path} ({result.backend}), "
        f"{result.num_steps} steps in {result.elapsed:.2f} s",
        f"suggested lr:  {format_lr(best.lr)} ({best.rule}{for_plan})"
        + (f": {best.reason}" if best.lr is None else ""),
    ]
    if result.confirmation is not None:
        lines.append(f"{'confirmed:':<15}{result.confirmation.detail()}")
    lines += [
        f"other rules:   {', '.join(others)}",
        f"useful range:  {format_lr(span[0])} to {format_lr(span[1])}"
        if span
        else "useful range:  none (the loss never falls)",
        f"to compare:    {', '.join(map(format_lr, rungs))} (short runs; keep the best)"
        if rungs
        else "to compare:    none (no suggestion)",
        f"stopped:       {stop}",
    ]
    if result.confirmation is not None:
        probes = result.confirmation.probe_steps
        lines.append(
            f"{'trained:':<15}{result.num_steps + probes} steps (range test {result.num_steps}, "
            f"probes {probes}; budget {result.confirmation.plan.budget})"
        )
    lines += [f"{'wrote ' + kind + ':':<15}{target}" for kind, target in written]
    return lines


def print_summary(
    result: LRFinderResult, path: Path, notes: list[str], written: list[tuple[str, Path]], quiet: bool
) -> None:
    """Print the summary and the warnings; with ``quiet``, only the LR on stdout, warnings on stderr."""
    warnings = warning_lines(result, notes)
    if quiet:
        click.echo("none" if result.suggestion is None else f"{result.suggestion:.6g}")
        for line in warnings:
            click.echo(line, err=True)
        return
    click.echo("\n".join(summary_lines(result, path, written) + warnings))


def format_lr(value: float | None) -> str:
    """An LR to three significant digits, or ``none``.

    >>> format_lr(0.0012345), format_lr(None)
    ('0.00123', 'none')
    """
    return "none" if value is None else f"{value:.3g}"

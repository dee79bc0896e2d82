"""The ``lrfinder`` command: run a range test on a user's script, redraw saved results.

A thin layer over the library: :mod:`lrfinder._script` loads the script and runs the range test
(:func:`lrfinder.api.run_range_test`), :mod:`lrfinder._summary` prints what it found, and
:class:`lrfinder.LRFinderResult` writes the files. This module checks the options and the output
paths before the sweep and turns every error into one line. Frameworks and matplotlib are imported
inside the commands only, so ``lrfinder --help`` stays fast.

Errors are one line on stderr starting ``Error:`` (the full traceback only with ``--debug``);
the exit code is 2 when the command line is wrong and 1 when the run fails.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from lrfinder._version import __version__
from lrfinder.plan import SCHEDULES
from lrfinder.suggest import DEFAULT_RULE, RULES
from lrfinder.sweep import SweepSettings

if TYPE_CHECKING:
    from lrfinder.confirm import ProbePlan
    from lrfinder.plan import Plan
    from lrfinder.result import LRFinderResult

_DEFAULTS = SweepSettings()
_OPTION_NAMES = {
    "start_lr": "--start-lr",
    "end_lr": "--end-lr",
    "num_iter": "--num-iter",
    "mode": "--mode",
    "smooth": "--smooth",
    "diverge_threshold": "--diverge-threshold",
}
#: Key in ``click.Context.meta`` (shared by the group's and the command's contexts) of ``--debug``.
DEBUG_KEY = "lrfinder.debug"


class CommandLineError(click.UsageError):
    """A wrong command line (exit code 2) whose message already says how to fix it."""


class Interrupted(click.ClickException):
    """Ctrl-C stopped the run (exit code 130); no output file was written or replaced."""

    exit_code = 130


class RunError(click.ClickException):
    """The run failed (exit code 1): the script, the model or the sweep."""

    exit_code = 1

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


#: Raised for a bare ``lrfinder`` by click >= 8.2 (older versions print the help and exit 0).
_NO_ARGS_IS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())


class _Group(click.Group):
    """A click group whose errors are one line on stderr: ``Error: <what> ...``."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NO_ARGS_IS_HELP as error:  # bare `lrfinder`: show the help
            error.show()
            sys.exit(error.exit_code)
        except click.ClickException as error:
            _report(error)
            sys.exit(error.exit_code)
        except click.Abort:
            click.echo("Error: interrupted", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as error:
            # the contexts are closed by the time main() reports: note --debug on the error
            error.debug = bool(ctx.meta.get(DEBUG_KEY))  # type: ignore[attr-defined]
            raise


def _report(error: click.ClickException) -> None:
    """Print ``error`` as one line, after its cause's traceback when ``--debug`` was given."""
    cause = getattr(error, "cause", None)
    if cause is not None and getattr(error, "debug", False):
        traceback.print_exception(type(cause), cause, cause.__traceback__, file=sys.stderr)
    message = " ".join(error.format_message().split())
    ctx = getattr(error, "ctx", None)
    if isinstance(error, click.UsageError) and not isinstance(error, CommandLineError) and ctx:
        message = f"{message} (see '{ctx.command_path} --help')"
    click.echo(f"Error: {message}", err=True)


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    ctx.meta[DEBUG_KEY] = value


#: ``--debug``, read before the other options and kept in the context, not passed to the command.
_debug_option = click.option(
    "--debug",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=_set_debug,
    help="Show full tracebacks.",
)


@contextmanager
def _script_errors() -> Iterator[None]:
    """Turn the script loader's errors into the command's: a run error, or a usage error."""
    from lrfinder._script import ScriptError, ScriptUsageError

    try:
        yield
    except ScriptError as error:
        raise RunError(error.message, error.cause) from error
    except ScriptUsageError as error:
        raise CommandLineError(str(error)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="lrfinder", message="%(prog)s %(version)s")
def main() -> None:
    """Learning-rate range test (LR finder) for PyTorch, Keras 3 and step functions.

    \b
      lrfinder find train.py                 run it on the model train.py defines
      lrfinder find model.keras --data xy.npz
      lrfinder plot a.json b.json -o ab.png  overlay saved results

    Run 'lrfinder COMMAND --help' for a command's options.
    """


# -- lrfinder find -----------------------------------------------------------------------------


class _Threshold(click.ParamType):
    """A number, or ``none`` to never stop on a rising loss."""

    name = "number or none"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or isinstance(value, float):
            return value
        if str(value).strip().lower() in ("none", "off"):
            return None
        try:
            return float(value)
        except ValueError:
            self.fail(f"{value!r} is not a number or 'none'", param, ctx)


@main.command()
@click.argument("script", metavar="SCRIPT")
@click.option(
    "--data", "data_path", metavar="ARRAYS.npz", help="Training arrays x and y for a saved .keras model."
)
@click.option(
    "--start-lr", type=float, default=_DEFAULTS.start_lr, show_default=True, help="First learning rate."
)
@click.option("--end-lr", type=float, default=_DEFAULTS.end_lr, show_default=True, help="Last learning rate.")
@click.option(
    "--num-iter",
    type=int,
    default=None,
    help="Steps (mini-batches) from --start-lr to --end-lr; with --confirm, shortened to "
    f"0.3 of the budget when it does not fit, unless given.  [default: {_DEFAULTS.num_iter}]",
)
@click.option(
    "--mode",
    type=click.Choice(["exp", "linear"]),
    default=_DEFAULTS.mode,
    show_default=True,
    help="Shape of the LR ladder.",
)
@click.option(
    "--smooth",
    type=float,
    default=_DEFAULTS.smooth,
    show_default=True,
    help="Weight of the past in the loss's moving average, in [0, 1); 0 turns it off.",
)
@click.option(
    "--diverge-threshold",
    type=_Threshold(),
    metavar="NUMBER|none",
    default=_DEFAULTS.diverge_threshold,
    show_default=True,
    help="Stop once the loss passes this many times its best; 'none' never.",
)
@click.option(
    "--suggest",
    "rule",
    type=click.Choice(sorted(RULES)),
    default=DEFAULT_RULE,
    show_default=True,
    help="Rule behind the suggested LR (all rules are printed).",
)
@click.option(
    "--schedule",
    type=click.Choice(SCHEDULES),
    default=None,
    help="How you will train: the suggestion is then the LR (the peak LR) for it.  "
    "[default: constant with --train-steps]",
)
@click.option(
    "--train-steps", type=int, metavar="N", help="Optimizer steps you will train for (needed by --confirm)."
)
@click.option(
    "--confirm",
    is_flag=True,
    help="Check the suggestion by short training probes around it, scored on the script's "
    "confirm_data or val_loader; range test and probes train on at most 2 x --train-steps "
    "batches.",
)
@click.option(
    "--confirm-budget",
    type=int,
    metavar="N",
    help="Training batches (optimizer steps) for the range test and the probes together; "
    "implies --confirm.  [default: 2 x --train-steps]",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**32 - 1),
    help="Seed Python, NumPy, and PyTorch/Keras when the script uses them, before the script "
    "runs (0 to 2**32 - 1).",
)
@click.option("--device", help="Device to run on, e.g. cpu or cuda:0 (PyTorch).")
@click.option("--batch-size", type=int, help="Batch size when the data are (x, y) arrays (Keras).")
@click.option(
    "--optimizer",
    metavar="NAME",
    help="Keras optimizer to sweep for a saved .keras model "
    "(e.g. adam); needed when it was saved uncompiled.",
)
@click.option(
    "--loss",
    metavar="NAME",
    help="Keras loss for a saved .keras model (e.g. "
    "sparse_categorical_crossentropy); needed when it was saved uncompiled.",
)
@click.option(
    "--plot",
    "plot_path",
    metavar="PATH",
    default="lr_finder.png",
    show_default=True,
    help="Where to write the PNG plot.",
)
@click.option("--no-plot", is_flag=True, help="Write no plot.")
@click.option("--json", "json_path", metavar="PATH", help="Also write the whole result as JSON.")
@click.option(
    "-q", "--quiet", is_flag=True, help="Print only the suggested LR (or 'none') on stdout; no progress bar."
)
@_debug_option
def find(
    script: str,
    data_path: str | None,
    start_lr: float,
    end_lr: float,
    num_iter: int | None,
    mode: str,
    smooth: float,
    diverge_threshold: float | None,
    rule: str,
    schedule: str | None,
    train_steps: int | None,
    confirm: bool,
    confirm_budget: int | None,
    seed: int | None,
    device: str | None,
    batch_size: int | None,
    optimizer: str | None,
    loss: str | None,
    plot_path: str,
    no_plot: bool,
    json_path: str | None,
    quiet: bool,
) -> None:
    """Run the LR range test on the model that SCRIPT defines.

    \b
    SCRIPT is a Python file that defines, at top level or in the dict that a
    function lrfinder_setup() returns (for scripts that must not train when
    imported):
      model                          a torch.nn.Module, a LightningModule, a
                                     compiled Keras model or a transformers.Trainer
      loader | train_loader | data   its training batches (not for a Trainer)
      optimizer, criterion | loss, val_loader, batch_size   (optional)
      confirm_data                   held-out batches for --confirm (default val_loader)
    or a step function instead of a model:
      step(lr) -> loss, and optionally snapshot() -> state and restore(state)
      (and confirm_data, a function evaluate() -> held-out loss, for --confirm).
    SCRIPT may also be a saved Keras model (.keras) with --data ARRAYS.npz, and
    --optimizer NAME --loss NAME when it was saved uncompiled.

    Prints the suggested learning rate and writes a PNG plot (and JSON with --json).
    """
    from lrfinder._script import load_job, run_job
    from lrfinder._summary import print_summary, summary_lines
    from lrfinder.errors import RangeTestInterrupted

    # fewer TensorFlow C++ log lines around the summary (the user's own setting wins); the ones
    # absl writes regardless while a .keras model loads are filtered by the script loader
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    plan, probes = _check_plan(schedule, train_steps, confirm, confirm_budget, num_iter)
    if probes is not None:
        num_iter = probes.range_steps
    settings = _check_settings(
        start_lr,
        end_lr,
        _DEFAULTS.num_iter if num_iter is None else num_iter,
        mode,
        smooth,
        diverge_threshold,
    )
    path = _check_script(script, data_path)
    outputs = _check_outputs(None if no_plot else plot_path, json_path)
    if batch_size is not None and batch_size < 1:
        raise CommandLineError(f"--batch-size must be a positive integer, got {batch_size}")

    if path.suffix != ".keras" and (optimizer is not None or loss is not None):
        given_names = " and ".join(
            name for name, value in (("--optimizer", optimizer), ("--loss", loss)) if value is not None
        )
        verb = "are" if optimizer is not None and loss is not None else "is"
        raise CommandLineError(
            f"{given_names} {verb} for a saved .keras model; a script defines its "
            "own optimizer and criterion (or loss)"
        )
    with _script_errors():
        job = load_job(path, data_path, seed, optimizer, loss)
    given = [name for name, value in (("--device", device), ("--batch-size", batch_size)) if value]
    if job.step is not None and given:
        one = len(given) == 1
        raise CommandLineError(
            f"{' and '.join(given)} {'does' if one else 'do'} not apply to a step "
            f"function ({job.source} defines step(lr)); leave "
            f"{'it' if one else 'them'} out"
        )
    if batch_size is not None:
        job.batch_size = batch_size
    if device is not None:
        _check_device(device)

    try:
        with _script_errors():
            result, notes = run_job(
                job,
                settings,
                rule=rule,
                device=device,
                progress=False if quiet else None,
                plan=plan,
                probes=probes,
            )
    except RangeTestInterrupted as stop:
        partial = stop.result
        if partial is not None and not quiet and partial.is_main_process:
            lines = summary_lines(partial, path, [])
            click.echo("\n".join(["partial result (interrupted; nothing written):", *lines]), err=True)
        steps = f" after {partial.num_steps} of {settings.num_iter} steps" if partial is not None else ""
        state = "the model's state was restored" if stop.restored else "the model's state was NOT restored"
        raise Interrupted(f"interrupted{steps}; {state}; no file was written") from None
    written = _write(result, outputs)
    print_summary(result, path, notes, written, quiet)


def _check_device(device: str) -> None:
    """A ``--device`` that PyTorch cannot parse is a usage error (the model is PyTorch's here)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return  # not a PyTorch model: the trainer says that --device does not apply
    try:
        torch.device(device)
    except (RuntimeError, ValueError, TypeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CommandLineError(
            f"--device {device!r} is not a device PyTorch knows ({first}); give e.g. cpu, cuda, cuda:0 or mps"
        ) from None


def _write(result: LRFinderResult, outputs: dict[str, Path]) -> list[tuple[str, Path]]:
    """Write the outputs through the result (each whole or not at all); only the main process
    of a distributed run writes, and only it says so."""
    from lrfinder._io import atomic_write_bytes

    if not result.is_main_process:
        return []
    text = result.to_json()  # serialised first (and once): a result that cannot be saved leaves no file
    written = []
    if "plot" in outputs:
        with _writing(outputs["plot"]):
            written.append(("plot", result.save_plot(outputs["plot"])))
    if "json" in outputs:
        with _writing(outputs["json"]):
            written.append(("json", atomic_write_bytes(outputs["json"], text.encode("utf-8"))))
    return written


@contextmanager
def _writing(target: Path) -> Iterator[None]:
    """An ``OSError`` in the block is a run error naming ``target`` (not the temporary file)."""
    try:
        yield
    except OSError as error:
        raise RunError(f"cannot write {target}: {error.strerror or error}", error) from error


def _check_plan(
    schedule: str | None, train_steps: int | None, confirm: bool, budget: int | None, num_iter: int | None
) -> tuple[Plan | None, ProbePlan | None]:
    """The plan and confirm mode's probe plan, or the library's message with option names."""
    from lrfinder.confirm import probe_plan_for
    from lrfinder.plan import make_plan

    names = {
        "train_steps=N": "--train-steps N",
        "train_steps": "--train-steps",
        "num_iter": "--num-iter",
        "confirm=N steps": "--confirm-budget N",
        "confirm budget": "--confirm-budget",
    }
    if budget is not None and budget < 1:
        raise CommandLineError(f"--confirm-budget must be at least 1 (training steps), got {budget}")
    try:
        plan = make_plan(schedule, train_steps)
        if not confirm and budget is None:
            return plan, None
        return plan, probe_plan_for(plan, True if budget is None else budget, num_iter)
    except (TypeError, ValueError) as error:
        message = re.sub("|".join(map(re.escape, names)), lambda m: names[m[0]], str(error))
        raise CommandLineError(message) from None


def _check_settings(
    start_lr: float, end_lr: float, num_iter: int, mode: str, smooth: float, diverge_threshold: float | None
) -> SweepSettings:
    """The sweep settings, or the library's own message with option names, as a usage error."""
    try:
        return SweepSettings(
            start_lr=start_lr,
            end_lr=end_lr,
            num_iter=num_iter,
            mode=mode,
            smooth=smooth,
            diverge_threshold=diverge_threshold,
        )
    except (TypeError, ValueError) as error:
        names = "|".join(_OPTION_NAMES)
        message = re.sub(rf"\b({names})\b", lambda m: _OPTION_NAMES[m[1]], str(error))
        message = message.replace("or None to", "or 'none' to")  # the option's spelling of None
        raise CommandLineError(message) from None


def _check_script(script: str, data_path: str | None) -> Path:
    path = Path(script)
    kind = "saved Keras model" if path.suffix == ".keras" else "script"
    if not path.exists():
        raise CommandLineError(
            f"{kind} {script!r} not found; give the path of a Python script "
            "(or of a saved .keras model with --data ARRAYS.npz)"
        )
    if path.suffix == ".keras":
        if data_path is None:
            raise CommandLineError(
                f"{script} is a saved Keras model: give its training data with "
                "--data ARRAYS.npz (NumPy arrays named x and y)"
            )
        if not Path(data_path).is_file():
            raise CommandLineError(
                f"--data {data_path!r} not found; give an .npz file with arrays "
                "x and y (numpy.savez('data.npz', x=x, y=y))"
            )
        return path
    if data_path is not None:
        raise CommandLineError("--data is for a saved .keras model; a script defines its own data")
    if path.is_dir() or path.suffix != ".py":
        raise CommandLineError(f"{script!r} is not a Python script (.py) or a saved Keras model (.keras)")
    return path


def _check_outputs(plot_path: str | None, json_path: str | None) -> dict[str, Path]:
    """Check, before the sweep, that every output path can be written (a sweep can be long)."""
    from lrfinder._io import check_writable

    outputs: dict[str, Path] = {}
    for name, value in (("plot", plot_path), ("json", json_path)):
        if value is None:
            continue
        if not value:
            raise CommandLineError(
                f"--{name} needs a file path" + (" (or give --no-plot)" if name == "plot" else "")
            )
        target = Path(value)
        if name == "plot" and target.suffix.lower() != ".png":
            raise CommandLineError(f"--plot writes a PNG: give a path ending in .png, got {value!r}")
        if target.is_dir():
            raise CommandLineError(f"--{name} {value!r} is a folder; give a file path inside it")
        folder = target.parent
        if folder.exists() and not folder.is_dir():
            raise CommandLineError(
                f"--{name} {value!r}: {str(folder)!r} is a file, not a folder; choose another path"
            )
        if not folder.is_dir():
            raise CommandLineError(
                f"--{name} {value!r}: folder {str(folder)!r} does not exist; create it or choose another path"
            )
        try:
            check_writable(target)
        except OSError as error:
            raise CommandLineError(
                f"--{name} {value!r}: cannot write in folder {str(folder)!r} "
                f"({error.strerror or error}); choose another path"
            ) from None
        outputs[name] = target
    if len(outputs) == 2 and outputs["plot"].resolve() == outputs["json"].resolve():
        raise CommandLineError("--plot and --json name the same file; give two paths")
    return outputs


# -- lrfinder plot -----------------------------------------------------------------------------


@main.command()
@click.argument("results", nargs=-1, required=True, metavar="RESULT.json...")
@click.option(
    "-o",
    "--output",
    default="lr_finder.png",
    show_default=True,
    metavar="PATH",
    help="Where to write the PNG.",
)
@_debug_option
def plot(results: tuple[str, ...], output: str) -> None:
    """Redraw results saved with 'lrfinder find --json', overlaid and labelled by file name."""
    from lrfinder.result import LRFinderResult

    target = _check_outputs(output, None)["plot"]
    loaded = []
    for name in results:
        if not Path(name).is_file():
            raise CommandLineError(
                f"result file {name!r} not found; give JSON files written by "
                "'lrfinder find --json' or result.to_json()"
            )
        try:
            loaded.append(LRFinderResult.from_json(Path(name)))
        except OSError as error:
            raise CommandLineError(f"cannot read {name}: {error.strerror or error}") from None
        except ValueError as error:  # names the file and the field, and what a valid one is
            raise CommandLineError(str(error)) from None
        except Exception as error:  # whatever else the file holds, one line
            raise CommandLineError(f"{name} is not an lrfinder result: {error}") from None
        if loaded[-1].num_steps == 0:
            raise CommandLineError(f"{name} holds no steps: there is no curve to draw")
    from lrfinder.plot import render_png

    labels = _labels([Path(name) for name in results])
    try:
        png = render_png(loaded, labels if len(loaded) > 1 else None)
    except Exception as error:
        raise RunError(f"drawing the plot failed: {type(error).__name__}: {error}", error) from error
    from lrfinder._io import atomic_write_bytes

    with _writing(target):
        atomic_write_bytes(target, png)
    click.echo(f"wrote plot: {target} ({len(loaded)} result{'s' if len(loaded) > 1 else ''})")


def _labels(paths: list[Path]) -> list[str]:
    """File stems; when two stems clash, enough of the parent folders to tell them apart."""
    labels = [p.stem for p in paths]
    depth = 1
    while len(set(labels)) < len(labels) and depth < 8:
        labels = [str(Path(*p.resolve().parts[-1 - depth : -1], p.stem)) for p in paths]
        depth += 1
    return labels

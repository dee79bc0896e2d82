"""The ``lrfinder`` command: run a range test on a user's script, redraw saved results.

A thin layer over :func:`lrfinder.find_lr` and :class:`lrfinder.LRFinderResult`: it loads the
script, checks the options and the output paths before the sweep, prints a summary and writes
files through the result. Frameworks and matplotlib are imported inside the commands only, so
``lrfinder --help`` stays fast.

Errors are one line on stderr starting ``Error:`` (the full traceback only with ``--debug``);
the exit code is 2 when the command line is wrong and 1 when the run fails.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import inspect
import os
import random
import re
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any

import click

from lrfinder._version import __version__
from lrfinder.suggest import DEFAULT_RULE, RULES
from lrfinder.sweep import SweepSettings

if TYPE_CHECKING:
    from lrfinder.result import LRFinderResult

#: The function a script may define instead of top-level objects; it returns a dict of them.
SETUP_FUNCTION = "lrfinder_setup"
#: Names of the training data, in the order they are looked up.
LOADER_NAMES = ("loader", "train_loader", "data")
#: Every name (top-level) or key (``lrfinder_setup()``'s dict) the command reads.
CONTRACT_NAMES = ("model", *LOADER_NAMES, "optimizer", "criterion", "loss", "val_loader",
                  "batch_size", "step", "snapshot", "restore")
#: Frameworks that ``--seed`` seeds when the script imports them.
SEEDED_FRAMEWORKS = ("torch", "keras", "tensorflow")

_DEFAULTS = SweepSettings()
_OPTION_NAMES = {"start_lr": "--start-lr", "end_lr": "--end-lr", "num_iter": "--num-iter",
                 "mode": "--mode", "smooth": "--smooth", "diverge_threshold": "--diverge-threshold"}
_STOPS = {
    "finished": "ran all {planned} steps",
    "diverged": "the loss diverged at lr={lr:.3g} (step {steps} of {planned})",
    "non_finite": "the loss became NaN or infinite at lr={lr:.3g} (step {steps} of {planned})",
    "interrupted": "interrupted at step {steps} of {planned}",
}


class CommandLineError(click.UsageError):
    """A wrong command line (exit code 2) whose message already says how to fix it."""


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

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        _debug[0] = False
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


def _report(error: click.ClickException) -> None:
    """Print ``error`` as one line, after its cause's traceback when ``--debug`` was given."""
    cause = getattr(error, "cause", None)
    if cause is not None and _debug[0]:
        traceback.print_exception(type(cause), cause, cause.__traceback__, file=sys.stderr)
    message = " ".join(error.format_message().split())
    ctx = getattr(error, "ctx", None)
    if isinstance(error, click.UsageError) and not isinstance(error, CommandLineError) and ctx:
        message = f"{message} (see '{ctx.command_path} --help')"
    click.echo(f"Error: {message}", err=True)


#: Whether the running command got --debug (its context is closed by the time main() reports).
_debug = [False]


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
@click.option("--data", "data_path", metavar="ARRAYS.npz",
              help="Training arrays x and y for a saved .keras model.")
@click.option("--start-lr", type=float, default=_DEFAULTS.start_lr, show_default=True,
              help="First learning rate.")
@click.option("--end-lr", type=float, default=_DEFAULTS.end_lr, show_default=True,
              help="Last learning rate.")
@click.option("--num-iter", type=int, default=_DEFAULTS.num_iter, show_default=True,
              help="Steps (mini-batches) from --start-lr to --end-lr.")
@click.option("--mode", type=click.Choice(["exp", "linear"]), default=_DEFAULTS.mode, show_default=True,
              help="Shape of the LR ladder.")
@click.option("--smooth", type=float, default=_DEFAULTS.smooth, show_default=True,
              help="Weight of the past in the loss's moving average, in [0, 1); 0 turns it off.")
@click.option("--diverge-threshold", type=_Threshold(), metavar="NUMBER|none",
              default=_DEFAULTS.diverge_threshold, show_default=True,
              help="Stop once the loss passes this many times its best; 'none' never.")
@click.option("--suggest", "rule", type=click.Choice(sorted(RULES)), default=DEFAULT_RULE,
              show_default=True, help="Rule behind the suggested LR (all rules are printed).")
@click.option("--seed", type=int, help="Seed Python, NumPy, and PyTorch/Keras when the script uses them, "
              "before the script runs.")
@click.option("--device", help="Device to run on, e.g. cpu or cuda:0 (PyTorch).")
@click.option("--batch-size", type=int, help="Batch size when the data are (x, y) arrays (Keras).")
@click.option("--plot", "plot_path", metavar="PATH", default="lr_finder.png", show_default=True,
              help="Where to write the PNG plot.")
@click.option("--no-plot", is_flag=True, help="Write no plot.")
@click.option("--json", "json_path", metavar="PATH", help="Also write the whole result as JSON.")
@click.option("-q", "--quiet", is_flag=True,
              help="Print only the suggested LR (or 'none') on stdout; no progress bar.")
@click.option("--debug", is_flag=True, help="Show full tracebacks.")
def find(script: str, data_path: str | None, start_lr: float, end_lr: float, num_iter: int,
         mode: str, smooth: float, diverge_threshold: float | None, rule: str, seed: int | None,
         device: str | None, batch_size: int | None, plot_path: str, no_plot: bool,
         json_path: str | None, quiet: bool, debug: bool) -> None:
    """Run the LR range test on the model that SCRIPT defines.

    \b
    SCRIPT is a Python file that defines, at top level or in the dict that a
    function lrfinder_setup() returns (for scripts that must not train when
    imported):
      model                          a torch.nn.Module, a LightningModule, a
                                     compiled Keras model or a transformers.Trainer
      loader | train_loader | data   its training batches (not for a Trainer)
      optimizer, criterion | loss, val_loader, batch_size   (optional)
    or a step function instead of a model:
      step(lr) -> loss, and optionally snapshot() -> state and restore(state).
    SCRIPT may also be a saved Keras model (.keras) with --data ARRAYS.npz.

    Prints the suggested learning rate and writes a PNG plot (and JSON with --json).
    """
    _debug[0] = debug
    settings = _check_settings(start_lr, end_lr, num_iter, mode, smooth, diverge_threshold)
    path = _check_script(script, data_path)
    outputs = _check_outputs(None if no_plot else plot_path, json_path)
    if batch_size is not None and batch_size < 1:
        raise CommandLineError(f"--batch-size must be a positive integer, got {batch_size}")

    job = _load_job(path, data_path, seed)
    given = [name for name, value in (("--device", device), ("--batch-size", batch_size)) if value]
    if job.step is not None and given:
        one = len(given) == 1
        raise CommandLineError(f"{' and '.join(given)} {'does' if one else 'do'} not apply to a step "
                               f"function ({job.source} defines step(lr)); leave "
                               f"{'it' if one else 'them'} out")
    if batch_size is not None:
        job.batch_size = batch_size

    result, notes = _run(job, settings, rule=rule, device=device, progress=False if quiet else None)
    written = _write(result, outputs)
    _print_summary(result, path, notes, written, quiet)


def _write(result: LRFinderResult, outputs: dict[str, Path]) -> list[tuple[str, Path]]:
    """Write the outputs through the result (each whole or not at all)."""
    result.to_json()  # serialise first: a result that cannot be saved must leave no file behind
    written = []
    try:
        if "plot" in outputs:
            written.append(("plot", result.save_plot(outputs["plot"])))
        if "json" in outputs:
            result.to_json(outputs["json"])
            written.append(("json", outputs["json"]))
    except OSError as error:
        raise RunError(f"cannot write {error.filename or 'the output'}: {error.strerror or error}",
                       error) from error
    return written


def _check_settings(start_lr: float, end_lr: float, num_iter: int, mode: str, smooth: float,
                    diverge_threshold: float | None) -> SweepSettings:
    """The sweep settings, or the library's own message with option names, as a usage error."""
    try:
        return SweepSettings(start_lr=start_lr, end_lr=end_lr, num_iter=num_iter, mode=mode,
                             smooth=smooth, diverge_threshold=diverge_threshold)
    except (TypeError, ValueError) as error:
        names = "|".join(_OPTION_NAMES)
        message = re.sub(rf"\b({names})\b", lambda m: _OPTION_NAMES[m[1]], str(error))
        message = message.replace("or None to", "or 'none' to")  # the option's spelling of None
        raise CommandLineError(message) from None


def _check_script(script: str, data_path: str | None) -> Path:
    path = Path(script)
    kind = "saved Keras model" if path.suffix == ".keras" else "script"
    if not path.exists():
        raise CommandLineError(f"{kind} {script!r} not found; give the path of a Python script "
                               "(or of a saved .keras model with --data ARRAYS.npz)")
    if path.suffix == ".keras":
        if data_path is None:
            raise CommandLineError(f"{script} is a saved Keras model: give its training data with "
                                   "--data ARRAYS.npz (NumPy arrays named x and y)")
        if not Path(data_path).is_file():
            raise CommandLineError(f"--data {data_path!r} not found; give an .npz file with arrays "
                                   "x and y (numpy.savez('data.npz', x=x, y=y))")
        return path
    if data_path is not None:
        raise CommandLineError("--data is for a saved .keras model; a script defines its own data")
    if path.is_dir() or path.suffix != ".py":
        raise CommandLineError(f"{script!r} is not a Python script (.py) or a saved Keras model "
                               "(.keras)")
    return path


def _check_outputs(plot_path: str | None, json_path: str | None) -> dict[str, Path]:
    """Check, before the sweep, that every output path can be written (a sweep can be long)."""
    outputs: dict[str, Path] = {}
    for name, value in (("plot", plot_path), ("json", json_path)):
        if value is None:
            continue
        if not value:
            raise CommandLineError(f"--{name} needs a file path" +
                                   (" (or give --no-plot)" if name == "plot" else ""))
        target = Path(value)
        if name == "plot" and target.suffix.lower() != ".png":
            raise CommandLineError(f"--plot writes a PNG: give a path ending in .png, got {value!r}")
        if target.is_dir():
            raise CommandLineError(f"--{name} {value!r} is a folder; give a file path inside it")
        folder = target.parent
        if folder.exists() and not folder.is_dir():
            raise CommandLineError(f"--{name} {value!r}: {str(folder)!r} is a file, not a folder; "
                                   "choose another path")
        if not folder.is_dir():
            raise CommandLineError(f"--{name} {value!r}: folder {str(folder)!r} does not exist; "
                                   "create it or choose another path")
        try:  # the same test the atomic write will face: a temporary file in that folder
            fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as error:
            raise CommandLineError(f"--{name} {value!r}: cannot write in folder {str(folder)!r} "
                                   f"({error.strerror or error}); choose another path") from None
        outputs[name] = target
    if len(outputs) == 2 and outputs["plot"].resolve() == outputs["json"].resolve():
        raise CommandLineError("--plot and --json name the same file; give two paths")
    return outputs


# -- loading what the script defines -----------------------------------------------------------


@dataclass
class _Job:
    """What to sweep, as found in the script."""

    source: str  # where it was found, for messages: "x.py" or "lrfinder_setup() in x.py"
    script: Path
    model: Any = None
    data: Any = None
    optimizer: Any = None
    criterion: Any = None
    val_loader: Any = None
    batch_size: int | None = None
    step: Any = None
    snapshot: Any = None
    restore: Any = None


def _load_job(path: Path, data_path: str | None, seed: int | None) -> _Job:
    if path.suffix == ".keras":
        return _load_keras(path, Path(data_path or ""), seed)
    if seed is not None:
        _seed(seed, _frameworks_imported_by(path))
    module = _import_script(path)
    setup = getattr(module, SETUP_FUNCTION, None)
    if setup is None:
        return _job_from(vars(module), str(path), path, top_level=True)
    if not callable(setup):
        raise RunError(f"{SETUP_FUNCTION} in {path} is a {type(setup).__name__}; make it a function "
                       "that returns a dict such as {'model': ..., 'loader': ...}")
    if seed is not None:  # again: the frameworks the script imported are now loaded
        _seed(seed, [name for name in SEEDED_FRAMEWORKS if name in sys.modules])
    source = f"{SETUP_FUNCTION}() in {path}"
    try:
        found = setup()
    except Exception as error:
        raise RunError(f"{source} raised {_describe(error, path)}", error) from error
    if not isinstance(found, Mapping):
        raise RunError(f"{source} returned a {type(found).__name__}; return a dict such as "
                       "{'model': model, 'loader': loader, 'optimizer': optimizer}")
    # Other keys are the script's own business, but a near miss is a typo that would go unnoticed.
    for key in sorted(map(str, set(found) - set(CONTRACT_NAMES))):
        near = [name for name in CONTRACT_NAMES if _is_typo(key, name)]
        if near:
            raise RunError(f"{source} returned the key {key!r}: did you mean {near[0]!r}? (the keys read "
                           f"are {', '.join(CONTRACT_NAMES)})")
    return _job_from(dict(found), source, path, top_level=False)


def _is_typo(key: str, name: str) -> bool:
    """Whether ``key`` is ``name`` misspelt (at most two edits), not ``name`` plus a suffix.

    >>> [_is_typo(k, "optimizer") for k in ("optimiser", "optimizers", "params")]
    [True, False, False]
    """
    if key.startswith(name) or abs(len(key) - len(name)) > 2:
        return False
    # Edit distance with adjacent transpositions (optimal string alignment).
    d = [[i + j if i * j == 0 else 0 for j in range(len(name) + 1)] for i in range(len(key) + 1)]
    for i in range(1, len(key) + 1):
        for j in range(1, len(name) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (key[i - 1] != name[j - 1]))
            if i > 1 and j > 1 and key[i - 1] == name[j - 2] and key[i - 2] == name[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1] <= min(2, len(name) // 3)


def _job_from(names: dict[str, Any], source: str, script: Path, *, top_level: bool) -> _Job:
    job = _Job(source=source, script=script)
    model, step = names.get("model"), names.get("step")
    if model is None and callable(step):
        job.step, job.snapshot, job.restore = step, names.get("snapshot"), names.get("restore")
        return job
    if model is None:
        raise RunError(f"{source} defines no model: {_missing_hint(names, 'model', top_level)}")
    loader_name = next((n for n in LOADER_NAMES if names.get(n) is not None), None)
    if loader_name is None and _brings_its_own_data(model):
        job.model = model
        return job
    if loader_name is None:
        raise RunError(f"{source} defines a model but no training data: "
                       f"{_missing_hint(names, 'loader', top_level)}")
    losses = {n: names[n] for n in ("criterion", "loss") if names.get(n) is not None}
    if top_level:  # a training loop's top-level `loss = criterion(out, y)` is a value, not a loss function
        losses = {n: v for n, v in losses.items() if callable(v) or isinstance(v, str)}
    if len(losses) == 2:
        raise RunError(f"{source} defines both criterion and loss; keep one (they are the same "
                       "thing: the loss function)")
    job.model, job.data = model, names[loader_name]
    job.optimizer = names.get("optimizer")
    job.criterion = next(iter(losses.values()), None)
    job.val_loader = names.get("val_loader")
    size = names.get("batch_size")
    if isinstance(size, int) and not isinstance(size, bool) and isinstance(job.data, (tuple, list)):
        job.batch_size = size  # (x, y) arrays need one; a loader already has its own
    return job


def _brings_its_own_data(model: Any) -> bool:
    """Whether ``model`` is a Hugging Face Trainer, which takes its batches from its own dataset."""
    from lrfinder.trainers import hf_trainer  # names only: imports no framework

    return hf_trainer.accepts(model)


def _missing_hint(names: dict[str, Any], wanted: str, top_level: bool) -> str:
    """Say what to define, and list what the script defined that looks close."""
    where = "at top level" if top_level else "in the dict it returns"
    if wanted == "model":
        fix = f"define `model` {where}, or a step(lr) -> loss function"
    else:
        fix = f"name the training data {' or '.join(f'`{n}`' for n in LOADER_NAMES)} {where}"
    # Objects only: what the script imported or defined as a function or class is not a candidate.
    objects = {n: v for n, v in names.items() if not n.startswith("_") and n not in CONTRACT_NAMES
               and not isinstance(v, (ModuleType, type)) and not inspect.isroutine(v)}
    close = [n for n, v in objects.items() if _looks_like(v, wanted)
             or (_sounds_like(n, wanted) and not isinstance(v, (int, float, str, bytes)))]
    if close:
        return f"{fix}; it defines {_listing(objects, close)}, which look{'s' * (len(close) == 1)} close"
    if objects:
        return f"{fix}; the objects it defines are {_listing(objects, list(objects))}"
    return fix + (f" (or return them from {SETUP_FUNCTION}())" if top_level else "")


def _listing(objects: dict[str, Any], chosen: list[str], most: int = 6) -> str:
    shown = [f"{name} ({type(objects[name]).__name__})" for name in chosen[:most]]
    return ", ".join(shown) + (f" and {len(chosen) - most} more" if len(chosen) > most else "")


def _sounds_like(name: str, wanted: str) -> bool:
    """Whether the name suggests a model (``net``, ``my_model``) or data (``train_dl``, ``dataset``)."""
    lowered = name.lower()
    if wanted == "model":
        return any(hint in lowered for hint in ("model", "net", "step"))
    suffix = lowered.split("_")[-1]
    return any(hint in lowered for hint in ("load", "data", "train")) or suffix in {"dl", "ds"}


def _looks_like(value: Any, wanted: str) -> bool:
    bases = {cls.__name__ for cls in type(value).__mro__}
    if wanted == "model":
        return bool(bases & {"Module", "Model", "Sequential", "Functional", "Layer"})
    return bool(bases & {"DataLoader", "Dataset", "IterableDataset", "DatasetV2", "PyDataset"})


def _frameworks_imported_by(path: Path) -> list[str]:
    """Frameworks among :data:`SEEDED_FRAMEWORKS` that the script imports (read, not run)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError):
        return []  # running the script reports it properly
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return [name for name in SEEDED_FRAMEWORKS
            if name in roots and importlib.util.find_spec(name) is not None]


def _seed(seed: int, frameworks: Sequence[str]) -> None:
    """Seed Python and NumPy, and each named framework (imported here if it is not yet)."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    if "torch" in frameworks:
        importlib.import_module("torch").manual_seed(seed)
    if "keras" in frameworks:  # seeds the backend (TensorFlow, JAX or torch) too
        importlib.import_module("keras").utils.set_random_seed(seed)
    elif "tensorflow" in frameworks:
        importlib.import_module("tensorflow").random.set_seed(seed)


@contextlib.contextmanager
def _as_script(path: Path) -> Iterator[None]:
    """``sys.argv`` and ``sys.path`` as ``python SCRIPT`` would set them, put back afterwards."""
    argv, sys_path = sys.argv[:], sys.path[:]
    sys.argv = [str(path)]
    sys.path.insert(0, str(path.resolve().parent))
    try:
        yield
    finally:
        sys.argv[:] = argv
        sys.path[:] = sys_path


def _import_script(path: Path) -> ModuleType:
    """Run the script as ``python SCRIPT`` would, but as a module named ``__lrfinder_script__``.

    Its ``if __name__ == "__main__":`` block therefore does not run. Compiled here rather than
    imported, so that no bytecode cache is written next to the user's script.
    """
    name = "__lrfinder_script__"
    module = ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module  # classes defined in the script can then be pickled
    with _as_script(path):
        try:
            exec(compile(path.read_bytes(), str(path), "exec"), module.__dict__)
        except SystemExit as error:
            raise RunError(f"{path} called sys.exit({error.code!r}) while being imported; move its "
                           f"command-line handling under `if __name__ == '__main__':` or into "
                           f"{SETUP_FUNCTION}()", error) from error
        except SyntaxError as error:
            raise RunError(f"{path} is not valid Python: {_describe(error, path)}", error) from error
        except Exception as error:
            raise RunError(f"{path} raised {_describe(error, path)}", error) from error
    return module


def _describe(error: BaseException, path: Path) -> str:
    """``Type: message (file.py, line N)``, N being the script's deepest line in the traceback."""
    text = " ".join(str(error).split()) or "(no message)"
    if isinstance(error, SyntaxError):
        return f"{type(error).__name__}: {error.msg} ({path}, line {error.lineno})"
    line = None
    script = str(path.resolve())
    tb: TracebackType | None = error.__traceback__
    while tb is not None:
        with contextlib.suppress(OSError):
            if os.path.realpath(tb.tb_frame.f_code.co_filename) == script:
                line = tb.tb_lineno
        tb = tb.tb_next
    where = f" ({path}, line {line})" if line is not None else ""
    return f"{type(error).__name__}: {text}{where}"


def _load_keras(path: Path, data_path: Path, seed: int | None) -> _Job:
    import numpy as np

    try:
        keras = importlib.import_module("keras")
    except ImportError as error:
        raise RunError(f"{path} is a Keras model but Keras is not installed: "
                       "pip install 'lrfinder[keras]'", error) from error
    if seed is not None:
        _seed(seed, ["keras"])
    try:
        with np.load(data_path) as arrays:
            missing = [key for key in ("x", "y") if key not in arrays.files]
            if missing:
                raise CommandLineError(f"--data {str(data_path)!r} holds arrays {arrays.files} but no "
                                       f"{' or '.join(missing)}; save it with numpy.savez(path, x=x, y=y)")
            x, y = arrays["x"], arrays["y"]
    except CommandLineError:
        raise
    except Exception as error:
        raise CommandLineError(f"--data {str(data_path)!r} is not a readable .npz file "
                               f"({type(error).__name__}: {error})") from None
    try:
        model = keras.saving.load_model(path)
    except Exception as error:
        raise RunError(f"cannot load the Keras model {path}: {_describe(error, path)}", error) from error
    return _Job(source=str(path), script=path, model=model, data=(x, y))


# -- running and reporting ---------------------------------------------------------------------


def _run(job: _Job, settings: SweepSettings, *, rule: str, device: str | None,
         progress: bool | None) -> tuple[LRFinderResult, list[str]]:
    """Build the trainer, run the sweep; returns the result and the library's other warnings."""
    from lrfinder.api import find_lr
    from lrfinder.trainers import make_trainer

    sweep = {"start_lr": settings.start_lr, "end_lr": settings.end_lr, "num_iter": settings.num_iter,
             "mode": settings.mode, "smooth": settings.smooth,
             "diverge_threshold": settings.diverge_threshold, "rule": rule, "progress": progress}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        if job.step is not None:
            options = {"snapshot": job.snapshot, "restore": job.restore}
            model = job.step
        else:
            options = {"optimizer": job.optimizer, "criterion": job.criterion,
                       "val_loader": job.val_loader, "device": device, "batch_size": job.batch_size}
            model = job.model
        try:
            trainer = make_trainer(model, None if job.step is not None else job.data,
                                   **{k: v for k, v in options.items() if v is not None})
        except Exception as error:
            raise RunError(f"cannot run a range test on what {job.source} defines: "
                           f"{_describe(error, job.script)}", error) from error
        try:
            result = find_lr(trainer, **sweep)
        except Exception as error:
            raise RunError(f"the range test failed: {_describe(error, job.script)}", error) from error
    diagnosed = {d.message for d in result.diagnostics}
    package = str(Path(__file__).resolve().parent)
    notes = []
    for warning in caught:
        text = str(warning.message)
        if text.startswith("lrfinder: ") or str(Path(warning.filename).resolve()).startswith(package):
            text = text.removeprefix("lrfinder: ")
            if text not in diagnosed and not text.startswith("interrupted after"):
                notes.append(" ".join(text.split()))
        else:  # the script's or a framework's own warning: show it as Python would
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    return result, notes


def _print_summary(result: LRFinderResult, path: Path, notes: list[str],
                   written: list[tuple[str, Path]], quiet: bool) -> None:
    warning_lines = [f"warning: {d.message}" for d in result.diagnostics] + \
                    [f"warning: {note}" for note in notes]
    if quiet:
        click.echo("none" if result.suggestion is None else f"{result.suggestion:.6g}")
        for line in warning_lines:
            click.echo(line, err=True)
        return
    best = result.best
    planned = int(result.settings.get("num_iter", result.num_steps))
    last = float(result.lrs[-1]) if result.num_steps else float("nan")
    stop = _STOPS.get(result.stop_reason, result.stop_reason).format(
        lr=last, steps=result.num_steps, planned=planned)
    others = [f"{name} {_lr(s.lr)}" for name, s in result.suggestions.items() if name != result.rule]
    span = result.lr_range
    rungs = result.candidates()
    lines = [
        f"lrfinder {__version__}: range test of {path} ({result.backend}), "
        f"{result.num_steps} steps in {result.elapsed:.2f} s",
        f"suggested lr:  {_lr(best.lr)} ({best.rule})" + (f": {best.reason}" if best.lr is None else ""),
        f"other rules:   {', '.join(others)}",
        f"useful range:  {_lr(span[0])} to {_lr(span[1])}" if span else
        "useful range:  none (the loss never falls)",
        f"to compare:    {', '.join(map(_lr, rungs))} (short runs; keep the best)" if rungs else
        "to compare:    none (no suggestion)",
        f"stopped:       {stop}",
    ]
    lines += [f"{'wrote ' + kind + ':':<15}{target}" for kind, target in written]
    lines.extend(warning_lines)
    click.echo("\n".join(lines))


def _lr(value: float | None) -> str:
    return "none" if value is None else f"{value:.3g}"


# -- lrfinder plot -----------------------------------------------------------------------------


@main.command()
@click.argument("results", nargs=-1, required=True, metavar="RESULT.json...")
@click.option("-o", "--output", default="lr_finder.png", show_default=True, metavar="PATH",
              help="Where to write the PNG.")
@click.option("--debug", is_flag=True, help="Show full tracebacks.")
def plot(results: tuple[str, ...], output: str, debug: bool) -> None:
    """Redraw results saved with 'lrfinder find --json', overlaid and labelled by file name."""
    from lrfinder.result import LRFinderResult

    _debug[0] = debug
    target = _check_outputs(output, None)["plot"]
    loaded = []
    for name in results:
        if not Path(name).is_file():
            raise CommandLineError(f"result file {name!r} not found; give JSON files written by "
                                   "'lrfinder find --json' or result.to_json()")
        try:
            loaded.append(LRFinderResult.from_json(Path(name)))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
            raise CommandLineError(f"{name} is not an lrfinder result: {error}") from None
    from lrfinder.plot import render_png

    labels = _labels([Path(name) for name in results])
    try:
        png = render_png(loaded, labels if len(loaded) > 1 else None)
    except Exception as error:
        raise RunError(f"drawing the plot failed: {type(error).__name__}: {error}", error) from error
    from lrfinder._io import atomic_write_bytes

    try:
        atomic_write_bytes(target, png)
    except OSError as error:
        raise RunError(f"cannot write {target}: {error.strerror or error}", error) from error
    click.echo(f"wrote plot: {target} ({len(loaded)} result{'s' if len(loaded) > 1 else ''})")


def _labels(paths: list[Path]) -> list[str]:
    """File stems; when two stems clash, enough of the parent folders to tell them apart."""
    labels = [p.stem for p in paths]
    depth = 1
    while len(set(labels)) < len(labels) and depth < 8:
        labels = [str(Path(*p.resolve().parts[-1 - depth:-1], p.stem)) for p in paths]
        depth += 1
    return labels



"""The user's script for ``lrfinder find``: load what it defines, then run the range test on it.

Knows nothing of click: problems are raised as :class:`ScriptError` (the run failed: exit 1) or
:class:`ScriptUsageError` (the command line named something unusable: exit 2), each with a
message that says how to fix it; the command turns them into its own errors.
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
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any

from lrfinder.sweep import SweepSettings

if TYPE_CHECKING:
    from lrfinder.confirm import ProbePlan
    from lrfinder.plan import Plan
    from lrfinder.result import LRFinderResult

#: The function a script may define instead of top-level objects; it returns a dict of them.
SETUP_FUNCTION = "lrfinder_setup"
#: Names of the training data, in the order they are looked up.
LOADER_NAMES = ("loader", "train_loader", "data")
#: Every name (top-level) or key (``lrfinder_setup()``'s dict) the command reads.
CONTRACT_NAMES = (
    "model",
    *LOADER_NAMES,
    "optimizer",
    "criterion",
    "loss",
    "val_loader",
    "batch_size",
    "step",
    "snapshot",
    "restore",
    "confirm_data",
)
#: Frameworks that ``--seed`` seeds when the script imports them.
SEEDED_FRAMEWORKS = ("torch", "keras", "tensorflow")


class ScriptError(Exception):
    """The script, the model or the sweep failed; the message says what and how to fix it.

    Attributes:
        cause: The exception behind it (its traceback is shown with ``--debug``), or None.
    """

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.cause = cause


class ScriptUsageError(Exception):
    """A path given on the command line cannot be used (``--data`` unreadable, say)."""


@dataclass
class Job:
    """What to sweep, as found in the script: a model and its data, or a step function."""

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
    confirm_data: Any = None  # held-out data for --confirm (default val_loader)


def load_job(
    path: Path, data_path: str | None, seed: int | None, optimizer: str | None = None, loss: str | None = None
) -> Job:
    """Run the script (or load the saved Keras model) and find what to sweep.

    Args:
        path: A checked ``.py`` script, or a ``.keras`` model.
        data_path: The ``.npz`` arrays of a ``.keras`` model; None for a script.
        seed: Seed Python, NumPy and the frameworks the script uses before it runs; None: don't.
        optimizer: ``--optimizer``, a Keras optimizer name for a ``.keras`` model; None: its own.
        loss: ``--loss``, a Keras loss name for a ``.keras`` model; None: its own.

    Raises:
        ScriptError: The script failed, or does not define what the command reads.
        ScriptUsageError: ``data_path`` holds no ``x`` and ``y`` arrays, an uncompiled ``.keras``
            model lacks ``--optimizer``/``--loss``, or one of them names nothing Keras knows.
    """
    if path.suffix == ".keras":
        return _load_keras(path, Path(data_path or ""), seed, optimizer, loss)
    if seed is not None:
        _seed(seed, _frameworks_imported_by(path))
    module = _import_script(path)
    setup = getattr(module, SETUP_FUNCTION, None)
    if setup is None:
        return _job_from(vars(module), str(path), path, top_level=True)
    if not callable(setup):
        raise ScriptError(
            f"{SETUP_FUNCTION} in {path} is a {type(setup).__name__}; make it a function "
            "that returns a dict such as {'model': ..., 'loader': ...}"
        )
    if seed is not None:  # again: the frameworks the script imported are now loaded
        _seed(seed, [name for name in SEEDED_FRAMEWORKS if name in sys.modules])
    source = f"{SETUP_FUNCTION}() in {path}"
    try:
        found = setup()
    except KeyboardInterrupt:
        raise
    except SystemExit as error:
        raise ScriptError(
            f"{source} called sys.exit({error.code!r}) instead of returning; return the "
            "dict such as {'model': ..., 'loader': ...}, and keep sys.exit for the "
            "script's `if __name__ == '__main__':` block",
            error,
        ) from error
    except BaseException as error:  # any other BaseException subclass the script raises
        raise ScriptError(f"{source} raised {describe(error, path)}", error) from error
    if not isinstance(found, Mapping):
        raise ScriptError(
            f"{source} returned a {type(found).__name__}; return a dict such as "
            "{'model': model, 'loader': loader, 'optimizer': optimizer}"
        )
    # Other keys are the script's own business, but a near miss is a typo that would go unnoticed.
    for key in sorted(map(str, set(found) - set(CONTRACT_NAMES))):
        near = [name for name in CONTRACT_NAMES if _is_typo(key, name)]
        if near:
            raise ScriptError(
                f"{source} returned the key {key!r}: did you mean {near[0]!r}? (the keys read "
                f"are {', '.join(CONTRACT_NAMES)})"
            )
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


def _job_from(names: dict[str, Any], source: str, script: Path, *, top_level: bool) -> Job:
    job = Job(source=source, script=script)
    model, step = names.get("model"), names.get("step")
    if model is None and callable(step):
        job.step, job.snapshot, job.restore = step, names.get("snapshot"), names.get("restore")
        job.confirm_data = names.get("confirm_data")
        return job
    if model is None:
        raise ScriptError(f"{source} defines no model: {_missing_hint(names, 'model', top_level)}")
    loader_name = next((n for n in LOADER_NAMES if names.get(n) is not None), None)
    if loader_name is None and _brings_its_own_data(model):
        job.model = model
        return job
    if loader_name is None:
        raise ScriptError(
            f"{source} defines a model but no training data: {_missing_hint(names, 'loader', top_level)}"
        )
    losses = {n: names[n] for n in ("criterion", "loss") if names.get(n) is not None}
    if top_level:  # a training loop's top-level `loss = criterion(out, y)` is a value, not a loss function
        losses = {n: v for n, v in losses.items() if callable(v) or isinstance(v, str)}
    if len(losses) == 2:
        raise ScriptError(
            f"{source} defines both criterion and loss; keep one (they are the same thing: the loss function)"
        )
    job.model, job.data = model, names[loader_name]
    job.optimizer = names.get("optimizer")
    job.criterion = next(iter(losses.values()), None)
    job.val_loader = names.get("val_loader")
    job.confirm_data = names.get("confirm_data")
    size = names.get("batch_size")
    if isinstance(size, int) and not isinstance(size, bool) and isinstance(job.data, (tuple, list)):
        job.batch_size = size  # (x, y) arrays need one; a loader already has its own
    return job


def _brings_its_own_data(model: Any) -> bool:
    """Whether ``model`` is a Hugging Face Trainer, which takes its batches from its own dataset."""
    from lrfinder.trainers import hf_trainer  # reads class names only: imports no framework

    return hf_trainer.accepts(model)


def _missing_hint(names: dict[str, Any], wanted: str, top_level: bool) -> str:
    """Say what to define, and list what the script defined that looks close."""
    where = "at top level" if top_level else "in the dict it returns"
    if wanted == "model":
        fix = f"define `model` {where}, or a step(lr) -> loss function"
    else:
        fix = f"name the training data {' or '.join(f'`{n}`' for n in LOADER_NAMES)} {where}"
    # Objects only: what the script imported or defined as a function or class is not a candidate.
    objects = {
        n: v
        for n, v in names.items()
        if not n.startswith("_")
        and n not in CONTRACT_NAMES
        and not isinstance(v, (ModuleType, type))
        and not inspect.isroutine(v)
    }
    close = [
        n
        for n, v in objects.items()
        if _looks_like(v, wanted) or (_sounds_like(n, wanted) and not isinstance(v, (int, float, str, bytes)))
    ]
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
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return [
        name for name in SEEDED_FRAMEWORKS if name in roots and importlib.util.find_spec(name) is not None
    ]


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
            raise ScriptError(
                f"{path} called sys.exit({error.code!r}) while being imported; move its "
                f"command-line handling under `if __name__ == '__main__':` or into "
                f"{SETUP_FUNCTION}()",
                error,
            ) from error
        except SyntaxError as error:
            raise ScriptError(f"{path} is not valid Python: {describe(error, path)}", error) from error
        except KeyboardInterrupt:
            raise
        except BaseException as error:  # GeneratorExit or a script's own BaseException subclass too
            raise ScriptError(f"{path} raised {describe(error, path)}", error) from error
    return module


def describe(error: BaseException, path: Path) -> str:
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


def _what_failed(error: BaseException, script: Path) -> str:
    """:func:`describe`, saying so when the script's code called ``sys.exit``."""
    if isinstance(error, SystemExit):
        return f"the script's code called sys.exit({error.code!r}); raise an exception instead"
    return describe(error, script)


def _load_keras(
    path: Path, data_path: Path, seed: int | None, optimizer: str | None, loss: str | None
) -> Job:
    import numpy as np

    # the arrays first: a wrong --data is reported before Keras (and its start-up logs) loads
    try:
        with np.load(data_path) as arrays:
            missing = [key for key in ("x", "y") if key not in arrays.files]
            if missing:
                raise ScriptUsageError(
                    f"--data {str(data_path)!r} holds arrays {arrays.files} but no "
                    f"{' or '.join(missing)}; save it with numpy.savez(path, x=x, y=y)"
                )
            x, y = arrays["x"], arrays["y"]
    except ScriptUsageError:
        raise
    except Exception as error:
        raise ScriptUsageError(
            f"--data {str(data_path)!r} is not a readable .npz file ({type(error).__name__}: {error})"
        ) from None
    with without_framework_logs():
        try:
            keras = importlib.import_module("keras")
        except ImportError as error:
            raise ScriptError(
                f"{path} is a Keras model but Keras is not installed: pip install 'lrfinder[keras]'", error
            ) from error
        if seed is not None:
            _seed(seed, ["keras"])
        for option, name, lookup, examples in (
            ("--optimizer", optimizer, keras.optimizers.get, "adam, adamw, sgd, rmsprop"),
            (
                "--loss",
                loss,
                keras.losses.get,
                "sparse_categorical_crossentropy, categorical_crossentropy, mse",
            ),
        ):
            if name is not None:
                try:
                    lookup(name)
                except (ValueError, TypeError):
                    raise ScriptUsageError(
                        f"{option} {name!r} is not a name Keras knows; give one such as {examples}"
                    ) from None
        try:
            model = keras.saving.load_model(path)
        except Exception as error:
            raise ScriptError(
                f"cannot load the Keras model {path}: {describe(error, path)}", error
            ) from error
    if not model.compiled and (optimizer is None or loss is None):
        needed = " and ".join(
            flag for flag, value in (("--optimizer NAME", optimizer), ("--loss NAME", loss)) if value is None
        )
        raise ScriptUsageError(
            f"{path} holds a Keras model that was saved uncompiled: give {needed} "
            "(Keras names, e.g. --optimizer adam --loss "
            "sparse_categorical_crossentropy), or compile it before model.save()"
        )
    return Job(source=str(path), script=path, model=model, data=(x, y), optimizer=optimizer, criterion=loss)


#: Lines TensorFlow's C++ runtime writes to file descriptor 2 while it loads, whatever
#: TF_CPP_MIN_LOG_LEVEL says (absl logs them before its own set-up): glog-style prefixes such as
#: ``I0000 00:00:...``, absl's notice, and the CPU-features advice that follows one of them.
_FRAMEWORK_LOG_LINE = re.compile(
    r"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.]+:\d+\]|WARNING: All log messages before "
    r"absl::InitializeLog\(\) is called|To enable the following instructions: .* rebuild TensorFlow)"
)


@contextlib.contextmanager
def without_framework_logs() -> Iterator[None]:
    """Hold back what is written to file descriptor 2 while the block runs, then write it out
    less TensorFlow's C++ start-up log lines, so that an error stays the one line on stderr.

    Python's own output to ``sys.stderr`` (warnings included) is kept, in order. Where fd 2
    cannot be redirected, the block runs as it is.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            text = held.read().decode("utf-8", "replace")
            kept = [line for line in text.splitlines(keepends=True) if not _FRAMEWORK_LOG_LINE.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def run_job(
    job: Job,
    settings: SweepSettings,
    *,
    rule: str,
    device: str | None,
    progress: bool | None,
    plan: Plan | None = None,
    probes: ProbePlan | None = None,
) -> tuple[LRFinderResult, list[str]]:
    """Build the trainer and run the range test on what the script defines.

    Args:
        job: What :func:`load_job` found.
        settings: The sweep settings, already checked.
        rule: The suggestion rule's name.
        device: ``--device`` (PyTorch), or None.
        progress: As :func:`lrfinder.api.run_range_test` takes it.
        plan: The training plan (``--schedule``, ``--train-steps``), or None.
        probes: The confirm mode's probe plan (``--confirm``), or None; its held-out data is the
            script's ``confirm_data``, else its ``val_loader``.

    Returns:
        The result, and the library's warnings that its diagnostics do not already say (the
        script's and the frameworks' own warnings are shown as Python shows them).

    Raises:
        ScriptError: No trainer fits what the script defines, confirm mode has no held-out data,
            or the sweep failed.
    """
    from lrfinder.api import run_range_test
    from lrfinder.confirm import ConfirmRun, default_confirm_data, probe_options
    from lrfinder.trainers import make_trainer

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        if job.step is not None:
            options = {"snapshot": job.snapshot, "restore": job.restore}
            model = job.step
        else:
            options = {
                "optimizer": job.optimizer,
                "criterion": job.criterion,
                "val_loader": job.val_loader,
                "device": device,
                "batch_size": job.batch_size,
            }
            model = job.model
        given = {k: v for k, v in options.items() if v is not None}
        data = None if job.step is not None else job.data
        confirm = None
        try:
            trainer = make_trainer(model, data, **given)
            if probes is not None:
                try:
                    held_out = default_confirm_data(job.confirm_data, job.val_loader, trainer)
                except TypeError:
                    hf = "; or give the Trainer eval_dataset=" if trainer.backend == "transformers" else ""
                    raise ScriptError(
                        f"--confirm scores its probes on held-out data, and {job.source} defines no "
                        "confirm_data and no val_loader: define one (validation batches; for a step "
                        f"function, confirm_data = a function evaluate() -> loss{hf})"
                    ) from None
                twin = (
                    make_trainer(model, data, **probe_options(given))
                    if job.val_loader is not None and job.step is None
                    else None
                )
                confirm = ConfirmRun(probes, held_out, trainer=twin)
        except (ScriptError, KeyboardInterrupt):
            raise
        except BaseException as error:
            raise ScriptError(
                f"cannot run a range test on what {job.source} defines: {_what_failed(error, job.script)}",
                error,
            ) from error
        try:
            result = run_range_test(
                trainer, settings, rule=rule, progress=progress, plan=plan, confirm=confirm
            )
        except KeyboardInterrupt:  # RangeTestInterrupted: the command reports it (exit 130)
            raise
        except BaseException as error:
            raise ScriptError(f"the range test failed: {_what_failed(error, job.script)}", error) from error
    diagnosed = {d.message for d in result.diagnostics}
    package = Path(__file__).resolve().parent
    notes = []
    for warning in caught:
        text = str(warning.message)
        if text.startswith("lrfinder: ") or Path(warning.filename).resolve().is_relative_to(package):
            text = text.removeprefix("lrfinder: ")
            if text not in diagnosed and not text.startswith("interrupted after"):
                notes.append(" ".join(text.split()))
        elif _shown(warning, job.script):  # the script's or a framework's own: show it as Python would
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    return result, notes


def _shown(warning: warnings.WarningMessage, script: Path) -> bool:
    """Whether Python would show ``warning`` if the script ran as ``__main__``: a deprecation
    warning only where the script itself triggers it (never from inside a framework), others always."""
    if not issubclass(warning.category, (DeprecationWarning, PendingDeprecationWarning)):
        return True
    try:
        return Path(warning.filename).resolve() == script.resolve()
    except (OSError, ValueError):
        return True

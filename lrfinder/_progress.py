"""Progress bars for the range test and confirm mode's probes.

Standard library only, so import-light: tqdm is imported only when a bar is shown.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (IPython already imported and its kernel app running)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ipython = getattr(shell, "get_ipython", lambda: None)()
    return ipython is not None and "IPKernelApp" in getattr(ipython, "config", {})


def progress_bar(progress: bool | None, trainer: Any, total: int, desc: str = "LR range test") -> Any:
    """A tqdm bar of ``total`` steps, or None when none should show.

    Args:
        progress: True or False; None shows a bar only on a terminal (stderr) or in a notebook.
        trainer: Only its ``is_main_process`` attribute is read: other ranks of a distributed run
            show no bar.
        total: Steps the bar counts.
        desc: The bar's label.

    In a notebook with ipywidgets the bar is ``tqdm.notebook``'s, elsewhere the terminal one.
    """
    if not getattr(trainer, "is_main_process", True):
        return None
    if progress is None:
        progress = in_notebook() or (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())
    if not progress:
        return None
    if in_notebook() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm
    else:  # tqdm.auto would warn in a notebook without widgets
        from tqdm.std import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False)


def close_bar(bar: Any, *, complete: bool) -> None:
    """Close a progress bar; one whose run ended normally but short of its total ends full.

    ``tqdm.notebook`` paints a bar closed short of its total red, as for an error, and its text reads
    the share of the total run; a divergence stop (or probes left out by halving) is a normal end,
    so the total becomes the steps run (``reset`` also resizes the notebook's widget).
    """
    if complete and bar.total and bar.n < bar.total:
        steps = bar.n
        bar.reset(total=steps)
        bar.update(steps)
    bar.close()

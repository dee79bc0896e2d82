"""`import lrfinder` loads no framework and no plotting library."""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "torch",
    "tensorflow",
    "keras",
    "matplotlib",
    "jax",
    "lightning",
    "pytorch_lightning",
    "transformers",
    "accelerate",
    "optax",
)


def loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return out.stdout.split()


def test_import_lrfinder_loads_no_framework():
    assert loaded_after("import lrfinder") == []


def test_a_step_function_sweep_loads_no_framework():
    code = "import lrfinder\nlrfinder.find_lr(lambda lr: 1.0 / (1 + lr), num_iter=5, progress=False)"
    assert loaded_after(code) == []

# %% [markdown]
# # lrfinder from Python, step by step
#
# A walk-through of `lrfinder.find_lr` and the result it returns, on a small PyTorch MLP and
# scikit-learn's digits. The `# %%` markers make each part a cell in VS Code, PyCharm or
# Jupyter (through jupytext); `python examples/notebook.py` runs it all.
#
# The walk-through sits under `if __name__ == "__main__":` so that
# `lrfinder find examples/notebook.py` can import this file for `lrfinder_setup()` alone; in a
# notebook, paste each part into a cell without that line's indentation.

# %%
from __future__ import annotations

import json

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lrfinder


def digits(part: str) -> TensorDataset:
    """The training (75%) or validation (25%) part of the digits, pixels scaled to [0, 1]."""
    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x / 16.0, y, test_size=0.25, random_state=0)
    x, y = (x_train, y_train) if part == "train" else (x_val, y_val)
    return TensorDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(y))


def lrfinder_setup() -> dict:
    """A fresh MLP, its training loader, an optimizer and a loss (also what `lrfinder find` uses)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    return {
        "model": model,
        "loader": DataLoader(digits("train"), batch_size=64, shuffle=True),
        "optimizer": torch.optim.AdamW(model.parameters()),
        "criterion": nn.CrossEntropyLoss(),
    }


if __name__ == "__main__":
    # %% [markdown]
    # ## Run the range test
    # The LR climbs from `start_lr` to `end_lr` over `num_iter` batches; the sweep stops early
    # once the loss diverges, and the model and optimizer are put back as they were.

    # %%
    setup = lrfinder_setup()
    model, loader, optimizer = setup["model"], setup["loader"], setup["optimizer"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = lrfinder.find_lr(
        model, loader, optimizer, setup["criterion"], start_lr=1e-6, end_lr=10.0, num_iter=100, progress=False
    )
    print(result)
    print("weights unchanged:", all(torch.equal(before[k], v) for k, v in model.state_dict().items()))

    # %% [markdown]
    # ## What was recorded
    # One entry per batch: the LR, the batch's own loss, and its bias-corrected moving average.

    # %%
    print(f"{result.num_steps} steps in {result.elapsed:.2f} s, stopped: {result.stop_reason}")
    print("first LRs:", result.lrs[:3], "first losses:", result.losses[:3].round(3))

    # %% [markdown]
    # ## Suggestions
    # `result.suggestion` is the default rule's answer (`valley`); every rule is in
    # `result.suggestions`, and `result.lr_range` brackets the useful LRs (for one-cycle, say).

    # %%
    print(f"suggested lr: {result.suggestion:.3g} ({result.rule})")
    for name, s in result.suggestions.items():
        print(f"  {name:9}", "none:" if s.lr is None else f"{s.lr:.3g}", s.reason or "")
    print("useful range:", result.lr_range)
    print("steepest without skipping the first points:", result.suggest("steepest", skip_start=0).lr)

    # %% [markdown]
    # ## Can the suggestion be trusted?
    # `result.diagnostics` lists what looked wrong with the curve, each with what to change;
    # `result.trusted` is True when there is a suggestion and nothing to report.

    # %%
    print("trusted:", result.trusted)
    for diagnostic in result.diagnostics:
        print(f"  {diagnostic.code}: {diagnostic.message}")

    # %% [markdown]
    # ## Plot and save
    # `result.plot()` returns a matplotlib Axes (in a notebook, `result` alone shows the plot);
    # `save_plot` and `to_json` write whole files or nothing.

    # %%
    ax = result.plot()  # draw on your own Axes with result.plot(ax=...)
    result.save_plot("lr_finder_notebook.png")
    result.to_json("lr_finder_notebook.json")
    again = lrfinder.LRFinderResult.from_json("lr_finder_notebook.json")
    print("JSON round trip exact:", again.losses.tobytes() == result.losses.tobytes())
    print("JSON keys:", ", ".join(json.loads(result.to_json())))

    # %% [markdown]
    # ## Train at the suggested learning rate

    # %%
    for group in optimizer.param_groups:
        group["lr"] = result.suggestion
    for _ in range(5):
        for x, y in loader:
            optimizer.zero_grad()
            setup["criterion"](model(x), y).backward()
            optimizer.step()
    x_val, y_val = digits("val").tensors
    with torch.no_grad():
        accuracy = float((model(x_val).argmax(1) == y_val).float().mean())
    print(f"validation accuracy after 5 epochs at lr={result.suggestion:.3g}: {accuracy:.3f}")

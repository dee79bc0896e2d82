"""Hugging Face: find_lr on a transformers.Trainer, tiny models built from configs (nothing downloaded)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from tests.cases import require

torch = require("torch")
transformers = require("transformers")

from lrfinder import find_lr  # noqa: E402
from lrfinder.trainers import make_trainer  # noqa: E402

QUICK = {"start_lr": 1e-5, "end_lr": 10.0, "num_iter": 12, "progress": False}
pytestmark = [
    pytest.mark.filterwarnings("ignore:lrfinder. :RuntimeWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]
TINY = {"vocab_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def tokens(n: int = 48, length: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, TINY["vocab_size"], (n, length), generator=torch.Generator().manual_seed(seed))


def bert(**config: Any) -> Any:
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        hidden_size=32, intermediate_size=37, max_position_embeddings=32, num_labels=3, **TINY, **config
    )
    return transformers.BertForSequenceClassification(cfg)


def gpt2(**config: Any) -> Any:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        n_embd=32,
        n_positions=32,
        n_layer=TINY["num_hidden_layers"],
        n_head=TINY["num_attention_heads"],
        vocab_size=TINY["vocab_size"],
        bos_token_id=0,
        eos_token_id=0,
        **config,
    )
    return transformers.GPT2LMHeadModel(cfg)


def classification_rows() -> list[dict[str, Any]]:
    """Rows as the `datasets` library gives them: the target under "label"."""
    ids = tokens()
    return [
        {"input_ids": row, "attention_mask": torch.ones_like(row), "label": int(row[0] % 3)} for row in ids
    ]


def hf_trainer(
    model: Any, rows: list[dict[str, Any]], tmp_path: Any, optimizers: Any = (None, None), **args: Any
) -> Any:
    arguments = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        report_to="none",
        use_cpu=True,
        learning_rate=5e-5,
        **args,
    )
    return transformers.Trainer(model=model, args=arguments, train_dataset=rows, optimizers=optimizers)


def state(model: Any, optimizer: Any = None) -> dict[str, bytes]:
    out = {k: v.detach().float().numpy().tobytes() for k, v in model.state_dict().items()}
    out["training"] = str([m.training for m in model.modules()]).encode()
    out["rng"] = torch.get_rng_state().numpy().tobytes() + str(random.getstate()).encode()
    out["np"] = str(np.random.get_state()).encode()
    if optimizer is not None:
        out["opt"] = repr(optimizer.state_dict()).encode()
    return out


def test_find_lr_on_a_trainer_uses_its_model_data_optimizer_loss_and_arguments(tmp_path):
    trainer = hf_trainer(
        bert(), classification_rows(), tmp_path, gradient_accumulation_steps=2, max_grad_norm=0.5
    )
    before = state(trainer.model)
    result = find_lr(trainer, **QUICK)
    assert result.backend == "transformers"
    assert result.info["optimizer"] == "AdamW (Trainer.create_optimizer())"
    assert result.info["param_groups"] == 2  # with and without weight decay, as the Trainer groups them
    assert result.info["criterion"] == "Trainer.compute_loss"
    assert result.info["accumulation_steps"] == 2 and result.info["grad_clip"] == 0.5
    assert len(result.losses) > 3 and np.all(np.isfinite(result.losses[:3]))
    assert result.losses[0] == pytest.approx(np.log(3), rel=0.15)  # an untrained 3-class model
    assert state(trainer.model) == before
    # the optimizer built for the sweep is dropped: train() builds its own at the LR it is given
    assert trainer.optimizer is None and trainer.args.learning_rate == 5e-5


def test_set_lr_writes_the_suggestion_to_the_training_arguments(tmp_path):
    trainer = hf_trainer(bert(), classification_rows(), tmp_path)
    result = find_lr(trainer, set_lr=True, **{**QUICK, "num_iter": 40})
    assert result.suggestion is not None
    assert trainer.args.learning_rate == result.suggestion
    assert trainer.optimizer is None


def test_set_lr_without_a_suggestion_leaves_the_lr_and_warns(tmp_path):
    trainer = hf_trainer(bert(), classification_rows(), tmp_path)
    with pytest.warns(RuntimeWarning, match="left unchanged"):
        result = find_lr(trainer, set_lr=True, start_lr=1e-9, end_lr=1e-8, num_iter=4, progress=False)
    assert result.suggestion is None and trainer.args.learning_rate == 5e-5


def test_set_lr_is_refused_where_there_is_no_setting_to_write():
    model = torch.nn.Linear(3, 2)
    with pytest.raises(TypeError, match="set_lr=True applies to a Hugging Face Trainer"):
        find_lr(model, [(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))], set_lr=True, **QUICK)


def test_the_trainers_own_optimizer_is_swept_and_restored(tmp_path):
    model = bert()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer)
    rows = classification_rows()
    trainer = hf_trainer(model, rows, tmp_path, optimizers=(optimizer, scheduler))
    batch = trainer.data_collator(rows[:8])
    for _ in range(2):  # momentum and moved weights
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    before = state(model, optimizer)
    scheduler_before = scheduler.state_dict()
    result = find_lr(trainer, **QUICK)
    assert result.info["optimizer"] == "SGD (the Trainer's)"
    assert trainer.optimizer is optimizer
    assert state(model, optimizer) == before and scheduler.state_dict() == scheduler_before


def test_a_causal_lm_with_bf16_arguments(tmp_path):
    ids = tokens(32, 16, seed=1)
    rows = [{"input_ids": row, "labels": row} for row in ids]
    model = gpt2()
    trainer = hf_trainer(model, rows, tmp_path, bf16=True)
    before = state(model)
    result = find_lr(trainer, **QUICK)
    assert result.info["amp"] == "bfloat16"
    assert result.losses[0] == pytest.approx(np.log(TINY["vocab_size"]), rel=0.1)
    assert state(model) == before


def test_tuple_outputs_whose_first_element_is_the_loss(tmp_path):
    model = bert(return_dict=False)
    rows = classification_rows()
    assert isinstance(model(input_ids=rows[0]["input_ids"][None], labels=torch.tensor([0])), tuple)
    result = find_lr(hf_trainer(model, rows, tmp_path), **QUICK)
    assert result.losses[0] == pytest.approx(np.log(3), rel=0.15)


def test_options_that_the_trainer_decides_are_refused(tmp_path):
    trainer = hf_trainer(bert(), classification_rows(), tmp_path)
    with pytest.raises(TypeError, match="takes no data"):
        find_lr(trainer, [1, 2], **QUICK)
    with pytest.raises(TypeError, match="compute_loss computes the loss"):
        find_lr(trainer, criterion=torch.nn.CrossEntropyLoss(), **QUICK)
    assert make_trainer(trainer).backend == "transformers"
    assert trainer.optimizer is None  # make_trainer built one for the sweep... and none is left in it


@pytest.mark.parametrize("return_dict", [True, False], ids=["model_output", "tuple"])
def test_the_bare_model_with_a_label_column_as_the_datasets_library_names_it(return_dict):
    rows = classification_rows()
    batches = [
        {
            key: torch.stack([r[key] for r in rows[i : i + 8]])
            if key != "label"
            else torch.tensor([r[key] for r in rows[i : i + 8]])
            for key in rows[0]
        }
        for i in range(0, len(rows), 8)
    ]
    model = bert(return_dict=return_dict)
    before = state(model)
    result = find_lr(model, batches, **QUICK)
    assert "own loss" in result.info["criterion"]
    assert result.losses[0] == pytest.approx(np.log(3), rel=0.15)
    assert state(model) == before

"""One contract for every task x method: real rows -> encode -> train -> predict -> score ->
save -> reload in plain transformers/peft with the same predictions (PEFT's TEST_CASES idea).

Each task starts from its smallest from-scratch preset sized to a tokenizer trained here, so
the matrix runs in seconds per case; a new task or method joins the matrix automatically and
fails until it has a data entry (or an expected-error entry) below.
"""

import pytest
import torch
from helpers import trained_tokenizer

from lmforge.core.errors import LmforgeError
from lmforge.data.builtin import load_builtin
from lmforge.finetune.config import FinetuneConfig
from lmforge.finetune.methods import METHODS, training_methods
from lmforge.finetune.stage import train_and_test
from lmforge.tasks import TASKS

# task -> (built-in dataset, rows, tokenizer kind or None for images)
TASK_DATA = {
    "classification": ("bbc-news", 30, "wordpiece"),
    "token-classification": ("peoples-daily-ner", 30, "wordpiece"),
    "extractive-qa": ("wiki-qa", 14, "wordpiece"),  # long contexts: many windows each
    "instruction": ("chit-chat-en", 30, "bpe"),
    "translation": ("hk-parallel", 30, "bpe"),
    "image-classification": ("digits", 60, None),
}
# (task, method) -> why it cannot work; the stage must say so with an LmforgeError
UNSUPPORTED = {
    ("image-classification", "prefix"): "peft has no prompt learning for ViT",
    ("image-classification", "prompt"): "peft has no prompt learning for ViT",
}
TEST_ROWS = 6


def test_every_task_has_contract_data():
    assert sorted(TASK_DATA) == sorted(TASKS.names())


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Per task: splits, info and a tokenizer directory, built once."""
    cache = {}

    def get(task_name):
        if task_name not in cache:
            name, rows, kind = TASK_DATA[task_name]
            docs = load_builtin(name, limit=rows)
            splits = {"train": docs[:-TEST_ROWS], "val": [], "test": docs[-TEST_ROWS:]}
            tok_dir = None
            if kind is not None:
                tok_dir = tmp_path_factory.mktemp(task_name)
                texts = [d.text for d in docs] + [
                    d.label for d in docs if isinstance(d.label, str) and d.question is None
                ]
                if docs[0].question is not None:
                    texts += [d.question for d in docs]
                trained_tokenizer(texts, kind, 400, 64).save_pretrained(tok_dir)
            cache[task_name] = (splits, TASKS.get(task_name).prepare(splits), tok_dir)
        return cache[task_name]

    return get


def predictions_of(task, model, processor, splits, info, cfg):
    enc = task.encode(processor, splits["test"], info, cfg, "test")
    return task.predict(model, enc, processor, info, cfg)


@pytest.mark.parametrize("method", training_methods())
@pytest.mark.parametrize("task_name", sorted(TASK_DATA))
def test_task_method_contract(task_name, method, prepared, tmp_path):
    task = TASKS.get(task_name)
    splits, info, tok_dir = prepared(task_name)
    preset = task.presets[0]
    cfg = FinetuneConfig(
        task=task_name,
        method=method,
        model={"preset": preset},
        method_config={"r": 4, "alpha": 8, "num_virtual_tokens": 4},
        epochs=1,
        batch_size=8,
        max_length=48,
        lr=1e-3,
        generation_max_tokens=6,
    )
    torch.manual_seed(0)
    model, processor = task.build_from_preset(preset, info, tok_dir)
    model.save_pretrained(tmp_path / "base")
    if (task_name, method) in UNSUPPORTED:
        with pytest.raises(LmforgeError, match="cannot|not support|no "):
            train_and_test(task, cfg, splits, info, model, processor, seed=0)
        return
    run = train_and_test(task, cfg, splits, info, model, processor, seed=0)
    assert len(run.predictions) == TEST_ROWS
    assert task.main_metric in run.scores
    assert 0 < run.trainable <= run.total
    if method != "full":
        assert run.trainable < run.total
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in run.history)

    # the artefact a user ships reloads without lmforge and predicts the same
    run.model.save_pretrained(tmp_path / "out")
    if METHODS.get(method).uses_peft:
        from peft import PeftModel

        reloaded = PeftModel.from_pretrained(
            task.load_model(tmp_path / "base", info), tmp_path / "out"
        )
    else:
        reloaded = task.load_model(tmp_path / "out", info)
    again = predictions_of(task, reloaded.eval(), processor, splits, info, cfg)
    assert again == run.predictions

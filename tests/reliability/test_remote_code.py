"""A model directory never runs its own Python unless the user passes trust_remote_code.

The attack (issue #13): a directory with an (even empty) ``modeling_bottleneck_adapter.py``, an
``evil.py`` and an ``auto_map`` naming ``evil.EvilModel`` in config.json. ``evil.py`` writes a
marker file when imported, so the marker's absence proves it never ran.
"""

import json

import pytest
import yaml
from helpers import tiny_bert, trained_tokenizer, write_csv
from transformers import dynamic_module_utils

from lmforge.cli import main
from lmforge.core.errors import LmforgeError
from lmforge.data.builtin import load_builtin
from lmforge.tasks import TASKS
from lmforge.tasks.heads import label_config

EVIL = """
import pathlib
from transformers import BertForSequenceClassification, GPT2LMHeadModel

pathlib.Path({marker!r}).write_text("evil.py ran")


class EvilModel(BertForSequenceClassification):
    pass


class EvilDecoder(GPT2LMHeadModel):
    pass
"""


@pytest.fixture
def docs():
    return load_builtin("bbc-news", limit=40)


@pytest.fixture(autouse=True)
def modules_cache(tmp_path, monkeypatch):
    """transformers copies trusted code into a modules cache: keep it inside the test."""
    monkeypatch.setattr(dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))


def plant(directory, auto_map, marker):
    """Turn a saved model directory into the attack's: the trigger file, evil.py, auto_map."""
    (directory / "modeling_bottleneck_adapter.py").write_text("")
    (directory / "evil.py").write_text(EVIL.format(marker=str(marker)))
    config = json.loads((directory / "config.json").read_text())
    config["auto_map"] = auto_map
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.fixture
def evil_classifier(tmp_path, docs):
    """A working 5-topic classifier (weights, labels, tokenizer) with the attack planted."""
    directory = tmp_path / "evil-model"
    labels = sorted({d.label for d in docs})
    trained_tokenizer([d.text for d in docs], vocab_size=500).save_pretrained(directory)
    model = tiny_bert(vocab_size=500, num_hidden_layers=1, **label_config(labels))
    model.save_pretrained(directory)
    auto_map = {"AutoModelForSequenceClassification": "evil.EvilModel"}
    return plant(directory, auto_map, tmp_path / "MARKER")


def test_lmforge_evaluate_does_not_run_the_directory_code(evil_classifier, docs, tmp_path):
    data = write_csv(tmp_path / "test.csv", docs[:20], ("text", "label"))
    args = ["evaluate", str(evil_classifier), "--task", "classification", "--data", str(data)]
    assert main([*args, "--max-length", "32", "--out", str(tmp_path / "ev"), "--no-profile"]) == 0
    assert not (tmp_path / "MARKER").exists()
    assert not (tmp_path / "modules").exists()  # nothing was even copied to be imported


def test_finetune_from_the_directory_does_not_run_its_code(evil_classifier, docs, tmp_path):
    recipe = {
        "name": "evil",
        "finetune": {
            "method": "linear-probe",
            "model": {"path": str(evil_classifier)},
            "data": {
                "train": str(write_csv(tmp_path / "train.csv", docs[:30], ("text", "label"))),
                "test": str(write_csv(tmp_path / "test.csv", docs[30:], ("text", "label"))),
            },
            "epochs": 1,
            "max_length": 32,
        },
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run")]) == 0
    assert not (tmp_path / "MARKER").exists()


def test_trust_remote_code_is_the_users_explicit_choice(evil_classifier, docs, tmp_path):
    from types import SimpleNamespace

    from lmforge.finetune.config import FinetuneConfig
    from lmforge.finetune.stage import starting_model

    task = TASKS.get("classification")
    info = task.prepare({"train": docs, "val": [], "test": []})
    ctx = SimpleNamespace(root=tmp_path)
    cfg = FinetuneConfig(model={"path": str(evil_classifier)})
    assert cfg.model.trust_remote_code is False  # the default
    model, _ = starting_model(task, cfg, ctx, info)
    assert type(model).__name__ == "BertForSequenceClassification"
    assert not (tmp_path / "MARKER").exists()

    cfg = FinetuneConfig(model={"path": str(evil_classifier), "trust_remote_code": True})
    model, _ = starting_model(task, cfg, ctx, info)  # the flag reaches transformers
    assert type(model).__name__ == "EvilModel" and (tmp_path / "MARKER").exists()


def test_instruction_loading_ignores_the_directory_code(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    directory = tmp_path / "evil-decoder"
    config = GPT2Config(vocab_size=100, n_embd=32, n_layer=1, n_head=2, n_positions=64)
    GPT2LMHeadModel(config).save_pretrained(directory)
    plant(directory, {"AutoModelForCausalLM": "evil.EvilDecoder"}, tmp_path / "MARKER")
    model = TASKS.get("instruction").load_model(directory, None)
    assert type(model).__name__ == "GPT2LMHeadModel"
    assert not (tmp_path / "MARKER").exists()


def test_a_directory_that_only_works_with_its_code_is_refused_by_name(tmp_path):
    directory = tmp_path / "custom"
    directory.mkdir()
    auto_map = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilDecoder"}
    (directory / "config.json").write_text(json.dumps({"model_type": "evil", "auto_map": auto_map}))
    (directory / "evil.py").write_text(EVIL.format(marker=str(tmp_path / "MARKER")))
    with pytest.raises(LmforgeError, match=r"auto_map.*trust_remote_code: true"):
        TASKS.get("instruction").load_model(directory, None)
    with pytest.raises(LmforgeError, match=r"never runs.*--trust-remote-code"):
        TASKS.get("translation").load_model(directory, None)
    assert not (tmp_path / "MARKER").exists()


def test_no_source_file_turns_remote_code_on():
    import re
    from pathlib import Path

    import lmforge

    pattern = re.compile(r"trust_remote_code\s*=\s*True")
    offenders = [
        str(path)
        for path in Path(lmforge.__file__).parent.rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []

"""Evaluation refuses a model whose task head the checkpoint lacks; fine-tuning starts one.

transformers fills weights a checkpoint lacks with random ones (its load report lists them as
MISSING): a masked-LM directory evaluated as a classifier used to score at chance, silently.
"""

import pytest
from helpers import tiny_bert, trained_tokenizer, write_csv
from transformers import AutoModelForSequenceClassification, BertForMaskedLM

from lmforge.cli import main
from lmforge.core.errors import LmforgeError
from lmforge.data.builtin import load_builtin
from lmforge.tasks import TASKS
from lmforge.tasks.heads import label_config, load_head


@pytest.fixture
def docs():
    return load_builtin("bbc-news", limit=30)


@pytest.fixture
def masked_lm(tmp_path, docs):
    """A pretrained encoder as lmforge's pretrain stage saves one: MLM head, no classifier."""
    directory = tmp_path / "mlm"
    trained_tokenizer([d.text for d in docs], vocab_size=500).save_pretrained(directory)
    tiny_bert(BertForMaskedLM, vocab_size=500, num_hidden_layers=1).save_pretrained(directory)
    return directory


def test_evaluate_refuses_a_masked_lm_as_a_classifier(masked_lm, docs, tmp_path, capsys):
    data = write_csv(tmp_path / "test.csv", docs, ("text", "label"))
    args = ["evaluate", str(masked_lm), "--task", "classification", "--data", str(data)]
    assert main([*args, "--max-length", "32", "--out", str(tmp_path / "ev"), "--no-profile"]) == 1
    err = capsys.readouterr().err
    assert "no trained head for the 'classification' task" in err
    assert "classifier.weight" in err  # what the load report found missing
    assert not (tmp_path / "ev" / "summary.json").exists()  # no chance-level scores written


def test_fine_tuning_the_same_directory_starts_a_fresh_head(masked_lm, docs):
    task = TASKS.get("classification")
    info = task.prepare({"train": docs, "val": [], "test": []})
    model = task.load_model(masked_lm, info)  # for training: the new head is the point
    assert model.classifier.out_features == len(info.labels)
    with pytest.raises(LmforgeError, match="classifier.bias"):
        task.load_model(masked_lm, info, for_inference=True)


def test_a_head_of_another_size_is_refused_for_inference(tmp_path):
    tiny_bert(**label_config(["a", "b", "c"])).save_pretrained(tmp_path)
    kwargs = label_config(["a", "b", "c", "d", "e"])
    with pytest.raises(LmforgeError, match=r"other shapes for classifier\.\w+ \(saved \(3"):
        load_head(
            AutoModelForSequenceClassification,
            tmp_path,
            "classification",
            for_inference=True,
            **kwargs,
        )
    # the complete model loads for inference
    load_head(AutoModelForSequenceClassification, tmp_path, "classification", for_inference=True)

"""finetune.augment: adversarial data augmentation adds perturbed copies of training texts."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import classify_section, local_encoder, write_csv

from lmforge.cli import main
from lmforge.core.errors import RecipeError
from lmforge.data.builtin import load_builtin
from lmforge.recipe import parse_recipe


def test_augmented_copies_join_the_training_set(tmp_path):
    docs = load_builtin("bbc-news", limit=60)
    train = write_csv(tmp_path / "train.csv", docs[:40], chars=300)
    test = write_csv(tmp_path / "test.csv", docs[40:], chars=300)
    base = local_encoder(tmp_path / "base", [d.text for d in docs])
    section = classify_section(
        base, train, test, method="full", epochs=1, max_length=32, augment="char", augment_share=0.5
    )
    recipe = {"name": "aug", "finetune": section}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run")]) == 0
    m = json.loads((tmp_path / "run" / "summary.json").read_text())["stages"]["finetune"]["metrics"]
    assert 10 <= m["augmented_examples"] <= 30  # about half of 40, seeded
    assert m["train_examples"] == 40 + m["augmented_examples"]


@pytest.mark.parametrize(
    ("finetune", "message"),
    [
        ({"augment": "word"}, "finetune.augment"),  # needs a model to rank words: explain only
        ({"task": "extractive-qa", "augment": "char"}, "augment: adversarial augmentation"),
        ({"augment": "char", "augment_share": 0}, "finetune.augment_share"),
    ],
)
def test_bad_augmentation_settings_are_refused(finetune, message):
    raw = {"name": "t", "data": {"sources": [{"builtin": "bbc-news"}]}, "finetune": finetune}
    with pytest.raises(RecipeError, match=message):
        parse_recipe(raw)

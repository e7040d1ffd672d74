"""A classic baseline that fails costs the baseline, never the fine-tuned model."""

from __future__ import annotations

import json

import yaml
from helpers import classify_section, local_encoder

from lmforge.cli import main


def test_a_failing_baseline_keeps_the_trained_model(tmp_path, capsys):
    """GBK text read as UTF-8: the model trains on the replacement characters, but TF-IDF
    finds no word twice ("After pruning, no terms remain"); the model must not be lost."""
    topics = {"体育": "sport", "政治": "politics", "经济": "economy"}
    rows = [
        (f"第{i}条新闻，内容关于{zh}。".encode("gbk").decode("utf-8", "replace"), topics[zh])
        for i, zh in enumerate(list(topics) * 10)
    ]
    for name, part in (("train.csv", rows), ("test.csv", rows[:6])):
        with (tmp_path / name).open("w", encoding="utf-8") as f:
            f.write("body,topic\n" + "".join(f'"{text}",{label}\n' for text, label in part))
    base = local_encoder(tmp_path / "base", [text for text, _ in rows], vocab_size=200)
    section = classify_section(
        base, tmp_path / "train.csv", tmp_path / "test.csv", epochs=1, max_length=32
    )
    recipe = {"name": "gbk", "finetune": section}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    run = tmp_path / "run"
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(run)]) == 0
    entry = json.loads((run / "summary.json").read_text())["stages"]["finetune"]
    assert entry["status"] == "done"
    assert "no terms remain" in entry["metrics"]["baseline"]["error"]
    assert "accuracy" in entry["metrics"] and "accuracy_vs_baseline" not in entry["metrics"]
    assert "the classification baseline failed" in capsys.readouterr().err
    assert (run / "finetune" / "model" / "adapter_model.safetensors").is_file()

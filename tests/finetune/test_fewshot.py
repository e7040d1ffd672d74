"""Zero-shot and few-shot classification on real BBC News articles: k-shot sampling, MiniLM
embeddings, label likelihoods under a tiny Llama (with and without the demonstrations' cache),
and the stage end to end with its curve."""

import json

import pytest
import torch
import yaml
from helpers import (
    local_encoder,  # a tiny BERT classifier + its tokenizer
    tiny_llama_dir,
    write_csv,
)
from pydantic import ValidationError

from lmforge.cli import main
from lmforge.core.errors import DataError, LmforgeError
from lmforge.data.builtin import load_builtin
from lmforge.finetune.config import FinetuneConfig
from lmforge.finetune.fewshot import k_shot, load_scoring_model, scorer_kind_of
from lmforge.finetune.fewshot_config import FewShotConfig
from lmforge.finetune.scorers import (
    Prompts,
    _packs,
    build_prompts,
    continuation_logprobs,
    descriptions,
    embed,
    label_scores,
    prototypes,
)
from lmforge.models import resolve_model_path

LABELS = ["business", "entertainment", "politics", "sports", "tech"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from a second thread, and on a busy machine lose a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def bbc():
    docs = load_builtin("bbc-news", limit=150)  # round-robin: 30 per topic
    return docs[:100], docs[100:]  # train 20 per topic, test 10 per topic


@pytest.fixture(scope="module")
def llama(tmp_path_factory, bbc):
    path = tiny_llama_dir(tmp_path_factory.mktemp("llama"), [d.text for d in bbc[0]])
    return path, *load_scoring_model(path, "likelihood")


def brute_force(model, prompts):
    """Every whole (prefix + text + label) sequence in one right-padded batch: no cache, no
    position ids, all logits. The reference scores."""
    seqs = [prompts.prefix + q + c for q in prompts.queries for c in prompts.continuations]
    ids = torch.zeros(len(seqs), max(map(len, seqs)), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, seq in enumerate(seqs):
        ids[r, : len(seq)], mask[r, : len(seq)] = torch.tensor(seq), 1
    with torch.no_grad():
        logp = model(input_ids=ids, attention_mask=mask).logits.log_softmax(-1)
    out = torch.zeros(len(prompts.queries), len(prompts.continuations))
    r = 0
    for i, q in enumerate(prompts.queries):
        for j, c in enumerate(prompts.continuations):
            start = len(prompts.prefix) + len(q)
            out[i, j] = sum(logp[r, start - 1 + t, tok] for t, tok in enumerate(c))
            r += 1
    return out


# ---------------------------------------------------------------- sampling


def test_k_shot_is_stratified_deterministic_nested_and_checks_counts(bbc):
    train = bbc[0]
    four = k_shot(train, 4, seed=0)
    assert len(four) == 20
    assert {lab: sum(d.label == lab for d in four) for lab in LABELS} == dict.fromkeys(LABELS, 4)
    assert [d.meta["id"] for d in k_shot(train, 4, seed=0)] == [d.meta["id"] for d in four]
    assert {d.meta["id"] for d in k_shot(train, 4, seed=1)} != {d.meta["id"] for d in four}
    # the k=4 sample is part of the k=16 sample, so curve points differ only by added data
    assert {d.meta["id"] for d in four} <= {d.meta["id"] for d in k_shot(train, 16, seed=0)}
    assert len({d.label for d in four[:5]}) > 1  # shuffled, not grouped by class
    counts = {lab: sum(d.label == lab for d in train) for lab in LABELS}
    smallest = min(counts, key=counts.get)
    k = counts[smallest] + 1
    with pytest.raises(DataError, match=rf"k={k} needs {k} .*'{smallest}' has {k - 1}"):
        k_shot(train, k, seed=0)


# ---------------------------------------------------------------- embedding


def test_minilm_embeddings_classify_bbc_zero_and_few_shot(bbc):
    train, test = bbc
    model, tok = load_scoring_model(resolve_model_path("minilm-l6"), "embedding")
    y = torch.tensor([LABELS.index(d.label) for d in test])
    emb = embed(model, tok, [d.text for d in test], max_length=64)
    assert emb.shape == (50, 384) and torch.allclose(emb.norm(dim=-1), torch.ones(50))
    few = FewShotConfig(description_template="a news article about {label}")
    described = embed(model, tok, descriptions(LABELS, few), max_length=64)
    zero = (emb @ described.T).argmax(-1)
    assert (zero == y).float().mean() > 0.6  # chance is 0.2
    shots = k_shot(train, 4, seed=0)
    shot_emb = embed(model, tok, [d.text for d in shots], max_length=64)
    protos = prototypes(described, shot_emb, [LABELS.index(d.label) for d in shots], 1.0)
    assert ((emb @ protos.T).argmax(-1) == y).float().mean() > 0.7


# ---------------------------------------------------------------- likelihood


def single_token_verbalizers(tok):
    """One whole-word token per label (" the", " said", ...): a forced token decides alone."""
    words = [t[1:] for t in tok.get_vocab() if t.startswith("Ġ") and t[1:].isalpha()]
    words = sorted(w for w in words if len(w) >= 3)[:5]
    verbalizers = dict(zip(LABELS, words, strict=True))
    first = {
        lab: tok(" " + w, add_special_tokens=False)["input_ids"] for lab, w in verbalizers.items()
    }
    assert all(len(ids) == 1 for ids in first.values())
    return verbalizers, first["sports"][0]


def test_likelihood_picks_the_verbalizer_the_model_prefers(tmp_path, bbc, llama):
    verbalizers, sports = single_token_verbalizers(llama[2])
    path = tiny_llama_dir(tmp_path / "forced", [d.text for d in bbc[0]], force_token=sports)
    model, tok = load_scoring_model(path, "likelihood")
    few = FewShotConfig(verbalizers=verbalizers)
    prompts = build_prompts(tok, few, LABELS, [], [d.text for d in bbc[1][:8]], 48, 512)
    scores = label_scores(model, tok, prompts, few)
    assert scores.shape == (8, 5)
    assert scores.argmax(-1).tolist() == [LABELS.index("sports")] * 8
    assert torch.allclose(scores, brute_force(model, prompts), atol=1e-3)
    # without forcing, the untrained model's preference varies
    _, plain, _ = llama
    assert not torch.equal(label_scores(plain, tok, prompts, few).argmax(-1), scores.argmax(-1))


def test_prefix_cache_gives_the_same_scores_as_re_encoding(llama, bbc):
    _, model, tok = llama
    train, test = bbc
    few = FewShotConfig(verbalizers={"tech": "science and technology"})  # multi-token
    # test texts of different lengths, packed side by side
    texts = [d.text[: 20 + 15 * i] for i, d in enumerate(test[:7])]
    prompts = build_prompts(tok, few, LABELS, k_shot(train, 2, 0), texts, 40, 512)
    assert len(prompts.continuations[-1]) > 2 and len(prompts.prefix) > 100
    assert len({len(q) for q in prompts.queries}) > 3
    cached = continuation_logprobs(model, prompts, reuse_prefix=True)
    three = Prompts(prompts.prefix, prompts.queries[:3], prompts.continuations)
    again = continuation_logprobs(model, three, reuse_prefix=False)  # one prompt at a time
    assert torch.allclose(cached[:3], again, atol=1e-4)
    assert torch.allclose(cached, brute_force(model, prompts), atol=1e-3)
    # mean and calibrated scores are derived from the same sums
    mean = label_scores(model, tok, prompts, few)
    lengths = torch.tensor([len(c) for c in prompts.continuations])
    assert torch.allclose(mean, cached / lengths, atol=1e-4)
    calibrated = label_scores(model, tok, prompts, few.model_copy(update={"calibrate": True}))
    assert calibrated.shape == (7, 5)
    # every label shifts by its own content-free score, so the differences between labels change
    shift = calibrated - mean
    assert torch.allclose(shift, shift[:1].expand_as(shift), atol=1e-4)
    assert not torch.allclose(shift[0], shift[0, :1].expand(5), atol=1e-3)


def test_demonstrations_shrink_to_fit_the_context(llama, bbc):
    _, _, tok = llama
    train, test = bbc
    texts = [d.text for d in test[:3]]
    demos = k_shot(train, 4, 0)
    few = FewShotConfig(demo_tokens=40)
    roomy = build_prompts(tok, few, LABELS, demos, texts, 32, 8192)
    assert roomy.demo_tokens == 40
    tight = build_prompts(tok, few, LABELS, demos, texts, 32, 512)
    assert tight.demo_tokens < 40
    longest = max(map(len, tight.queries)) + max(map(len, tight.continuations))
    assert len(tight.prefix) + longest <= 512
    with pytest.raises(LmforgeError, match="do not fit the model's context of 150"):
        build_prompts(tok, few, LABELS, demos, texts, 32, 150)


def test_packs_cover_every_text_once_within_budget():
    lengths = [5, 300, 7, 40, 41, 2000, 3]
    packs = _packs(lengths, p_len=8000)
    assert [i for pack in packs for i in pack] == list(range(7))
    assert all(
        len(pack) == 1 or sum(lengths[i] for i in pack) * (8000 + 2000) <= 2**23 for pack in packs
    )
    assert _packs(lengths, p_len=0) == [[0, 1, 2, 3, 4], [5], [6]]  # 512 tokens a pack


# ---------------------------------------------------------------- model kinds


def test_wrong_model_kind_is_a_clear_error(llama):
    path = str(llama[0])
    with pytest.raises(
        ValidationError, match=r"needs a decoder .* finetune.model.path \('minilm-l6'\)"
    ):
        FinetuneConfig(method="zero-shot", fewshot={"zero_shot": "likelihood"})
    with pytest.raises(ValidationError, match="needs an encoder .* is a decoder"):
        FinetuneConfig(method="zero-shot", model={"path": path}, fewshot={"zero_shot": "embedding"})
    with pytest.raises(ValidationError, match="fewshot.curve_methods model"):
        FinetuneConfig(
            method="zero-shot",
            fewshot={
                "zero_shot": "likelihood",
                "curve": [0, 1],
                "curve_methods": [{"method": "in-context", "model": "minilm-l6"}],
            },
        )
    with pytest.raises(LmforgeError, match="fewshot.zero_shot='embedding' needs an encoder"):
        scorer_kind_of(llama[0], "embedding", "finetune.model.path")
    assert scorer_kind_of(llama[0], "auto", "x") == "likelihood"
    with pytest.raises(ValidationError, match="for fewshot.shots > 0 use in-context"):
        FinetuneConfig(method="zero-shot", fewshot={"shots": 4})
    with pytest.raises(ValidationError, match="curve_methods needs curve"):
        FewShotConfig(curve_methods=["lora"])
    with pytest.raises(ValidationError, match="zero-shot is the in-context method at k=0"):
        FewShotConfig(curve=[0], curve_methods=["zero-shot"])
    with pytest.raises(ValidationError, match="template must contain"):
        FewShotConfig(template="{label}: {text}")
    with pytest.raises(ValidationError, match="not 'token-classification'"):
        FinetuneConfig(task="token-classification", method="in-context")


# ---------------------------------------------------------------- the stage


def run_recipe(tmp_path, bbc, model, **finetune):
    """The finetune stage with ``model`` on the ``bbc`` split (CSV files), max_length 32."""
    section = {
        "model": {"path": str(model)},
        "data": data_section(tmp_path, bbc),
        "max_length": 32,
        **finetune,
    }
    recipe = {"name": "fs", "finetune": section}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(out)]) == 0
    entry = json.loads((out / "summary.json").read_text())["stages"]["finetune"]
    assert entry["status"] == "done"
    assert all((out / p).exists() for p in entry["artifacts"].values())
    return out / "finetune", entry["metrics"]


def data_section(tmp_path, bbc):
    return {
        "train": str(write_csv(tmp_path / "train.csv", bbc[0])),
        "test": str(write_csv(tmp_path / "test.csv", bbc[1])),
        "text_column": "body",
        "label_column": "topic",
    }


def test_zero_shot_stage_writes_metrics_predictions_and_confusion(tmp_path, bbc, llama):
    verbalizers, sports = single_token_verbalizers(llama[2])
    forced = tiny_llama_dir(tmp_path / "forced", [d.text for d in bbc[0]], force_token=sports)
    stage, m = run_recipe(
        tmp_path,
        bbc,
        forced,
        method="zero-shot",
        fewshot={"max_test": 30, "verbalizers": verbalizers},
    )
    assert m["scorer"] == "likelihood" and m["test_examples"] == 30 and m["test_available"] == 50
    rows = [json.loads(x) for x in (stage / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 30 and all(r["prediction"] == "sports" for r in rows)
    assert m["accuracy"] == pytest.approx(sum(r["reference"] == "sports" for r in rows) / 30)
    assert set(rows[0]["scores"]) == set(LABELS)
    assert m["per_class"]["sports"]["recall"] == 1.0 and m["truncated_test"] == 30
    assert m["baseline"]["method"] == "tfidf+logreg" and "accuracy_vs_baseline" in m
    assert (stage / "confusion.png").stat().st_size > 0


def test_curve_runs_every_method_at_every_k_and_plots(tmp_path, bbc, llama):
    bert = local_encoder(tmp_path / "bert", [d.text for d in bbc[0]])
    stage, m = run_recipe(
        tmp_path,
        bbc,
        bert,
        method="in-context",
        epochs=1,
        batch_size=8,
        method_config={"target_modules": ["query", "value"]},
        fewshot={
            "curve": [2, 0, 1],
            "curve_methods": [
                {"method": "in-context", "model": str(llama[0])},
                "in-context",
                "lora",
            ],
            "demo_tokens": 16,
            "min_steps": 2,
            "max_test": 20,
        },
    )
    llama_name, bert_name = f"in-context:{llama[0].name}", "in-context:bert"
    assert set(m["curve"]) == {llama_name, bert_name, "lora:bert"}
    assert list(m["curve"][llama_name]) == ["0", "1", "2"]  # sorted
    assert list(m["curve"]["lora:bert"]) == ["1", "2"] and "lora:bert" in m["curve_skipped"]
    assert all(0 <= a <= 1 for line in m["curve"].values() for a in line.values())
    detail = m["curve_detail"]
    assert detail[llama_name]["2"]["scorer"] == "likelihood"
    assert (
        detail[llama_name]["2"]["prompt_prefix_tokens"]
        > detail[llama_name]["0"]["prompt_prefix_tokens"]
    )
    assert detail[bert_name]["1"]["scorer"] == "embedding"
    assert sum(detail[bert_name]["1"]["predicted"].values()) == 20
    assert (
        detail["lora:bert"]["1"]["train_examples"] == 5 and detail["lora:bert"]["1"]["epochs"] == 2
    )
    assert m["test_examples"] == 20 and 0 <= m["baseline"]["accuracy"] <= 1
    rows = (stage / "curve.jsonl").read_text().splitlines()
    assert len(rows) == 8
    assert (stage / "fewshot.png").stat().st_size > 10_000


def test_k_shot_fine_tuning_trains_on_k_examples_per_class(tmp_path, bbc):
    bert = local_encoder(tmp_path / "bert", [d.text for d in bbc[0]])
    _, m = run_recipe(tmp_path, bbc, bert, method="full", epochs=1, fewshot={"shots": 3})
    assert m["train_examples"] == 15 and m["test_examples"] == 50

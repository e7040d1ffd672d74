"""Translation: the built-in HK pairs, a tokenizer over both sides, seq2seq encoding, the T5
and bert2gpt presets that reload in plain transformers, and tiny models that learn a handful
of pairs."""

import re

import pytest
import torch
from helpers import trained_tokenizer

from lmforge.core.errors import DataError, LmforgeError
from lmforge.data.builtin import DATASETS, load_builtin
from lmforge.data.builtin_parallel import hk_pairs
from lmforge.data.document import Document
from lmforge.data.shards import write_shards
from lmforge.finetune.config import FinetuneConfig
from lmforge.finetune.methods import MethodConfig, apply_method
from lmforge.finetune.train import fit
from lmforge.tasks import TASKS
from lmforge.tasks.translation import PairInfo, translation_memory
from lmforge.tokenizer.config import TokenizerConfig
from lmforge.tokenizer.stage import training_texts

TASK = TASKS.get("translation")
CJK = re.compile(r"[\u4e00-\u9fff]")


def cfg(**kw):
    return FinetuneConfig(task="translation", method="full", model={"preset": "t5-tiny"}, **kw)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pairs():
    return load_builtin("hk-parallel", limit=300)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory, pairs):
    """A small byte-level BPE over both sides of the pairs, as the tokenizer stage builds it."""
    data = tmp_path_factory.mktemp("data")
    write_shards(pairs[:250], data, "train", "jsonl", 1000)
    write_shards(pairs[250:], data, "val", "jsonl", 1000)
    tcfg = TokenizerConfig(kind="bpe", vocab_size=800, model_max_length=64)
    train, _ = training_texts(tcfg, data)
    out = tmp_path_factory.mktemp("tok")
    trained_tokenizer(train, "bpe", 800, 64).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    from lmforge.tasks.base import load_tokenizer

    return load_tokenizer(tokenizer_dir)


def test_hk_parallel_pairs_are_aligned_deduplicated_and_licensed(pairs):
    zh_en, en_zh = pairs[:50], load_builtin("hk-parallel-en-zh", limit=50)
    for a, b in zip(zh_en, en_zh, strict=True):  # the same pairs, the other way round
        assert CJK.search(a.text) and re.search("[A-Za-z]", a.label)
        assert (a.text, a.label) == (b.label, b.text) and a.meta["id"] == b.meta["id"]
        assert (a.meta["source_lang"], a.meta["target_lang"]) == ("zh", "en")
    assert {d.meta["id"].split(":")[0] for d in pairs[:5]} == {
        "press",
        "court",
        "legislation",
        "offering",
        "sfc-speeches",
    }  # files interleaved, so a small limit spans every domain
    first = pairs[0]  # line 1 of the press releases file
    assert first.text == "失业率全年平均在百分之三点二的低位，维持全民就业。"
    assert first.label.startswith("Unemployment averaged 3.2 per cent")
    everything = hk_pairs()
    assert len({(en, zh) for en, zh, _, _ in everything}) == len(everything) == 64_984
    assert not any("\\n" in en or "\\n" in zh for en, zh, _, _ in everything)
    for name in ("hk-parallel", "hk-parallel-en-zh"):
        row = DATASETS.get(name)
        assert row.task == "translation" and "Educational" in row.licence
        assert "NOT an open licence" in row.licence


def test_tokenizer_stage_trains_on_both_sides_of_pairs_only(tmp_path, pairs):
    docs = [*pairs[:3], Document("一条很好的评论", label="pos", meta={"source": "reviews"})]
    write_shards(docs, tmp_path, "train", "jsonl", 100)
    write_shards(docs[:1], tmp_path, "val", "jsonl", 100)
    train, val = training_texts(TokenizerConfig(), tmp_path)
    sides = [t for d in pairs[:3] for t in (d.text, d.label)]
    assert train == [*sides, "一条很好的评论"]  # the review's class label is not text to learn
    assert val == [pairs[0].text, pairs[0].label]


def test_encode_pads_labels_with_minus_100_and_counts_truncation(tokenizer):
    docs = [
        Document("香港", label="Hong Kong"),
        Document("法院" * 60, label="court " * 60),  # both sides far over 32 tokens
        Document("基金", label="fund " * 60),  # only the target is long
    ]
    info = PairInfo.from_documents(docs)
    assert info.target_language == "en"
    enc = TASK.encode(tokenizer, docs, info, cfg(max_length=32), "train")
    assert enc.truncated == 2 and enc.warnings == {"truncated_sources": 1, "truncated_targets": 2}
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    for f in enc.features:  # every sequence ends in EOS, even when cut
        assert f["input_ids"][-1] == eos and f["labels"][-1] == eos
        assert len(f["input_ids"]) <= 32 and len(f["labels"]) <= 32
    b = enc.batch([0, 1])
    n_src, n_tgt = len(enc.features[0]["input_ids"]), len(enc.features[0]["labels"])
    assert b["labels"].shape == b["input_ids"].shape == (2, 32)
    assert (b["labels"][0, n_tgt:] == -100).all() and (b["labels"][0, :n_tgt] >= 0).all()
    assert (b["input_ids"][0, n_src:] == pad).all() and b["attention_mask"][0].sum() == n_src
    assert tokenizer.decode(enc.features[0]["labels"], skip_special_tokens=True) == "Hong Kong"
    assert enc.references == ["Hong Kong", "court " * 60, "fund " * 60]


def test_rows_without_a_source_or_target_are_named():
    splits = {
        "train": [Document("你好", label="hello"), Document("再见", label="")],
        "test": [Document("你好", label="hello")],
    }
    with pytest.raises(DataError, match=r"1 'train' rows have no target text, e.g. rows \[1\]"):
        TASK.prepare(splits)
    splits["train"][1] = Document(" ", label="bye")
    with pytest.raises(DataError, match=r"no source text .* rows \[1\]"):
        TASK.prepare(splits)
    splits["train"][1] = Document("再见", label="bye")
    assert TASK.prepare(splits).target_language == "en"
    assert PairInfo.from_documents([Document("bye", label="再见")]).target_language == "zh"


def test_preset_is_sized_to_the_tokenizer_and_reloads_in_plain_transformers(
    tmp_path, tokenizer_dir, tokenizer
):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    torch.manual_seed(0)
    model, tok = TASK.from_preset("t5-tiny", PairInfo("en"), tokenizer_dir)
    assert model.config.vocab_size == len(tok) == len(tokenizer)
    assert model.config.decoder_start_token_id == tok.pad_token_id
    assert model.config.eos_token_id == tok.eos_token_id
    assert model.config.d_model == 128 and model.config.num_decoder_layers == 2
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()  # no lmforge involved
    enc = AutoTokenizer.from_pretrained(tmp_path)(["香港法院"], return_tensors="pt")
    start = torch.tensor([[again.config.decoder_start_token_id]])
    with torch.no_grad():
        a = model.eval()(**enc, decoder_input_ids=start).logits
        b = again(**enc, decoder_input_ids=start).logits
    assert torch.allclose(a, b)
    with pytest.raises(LmforgeError, match="needs this run's tokenizer"):
        TASK.from_preset("t5-tiny", PairInfo("en"), None)


def test_bert2gpt_preset_is_one_encoder_decoder_that_reloads_in_plain_transformers(
    tmp_path, tokenizer_dir, tokenizer
):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    torch.manual_seed(0)
    model, tok = TASK.from_preset("bert2gpt-mini", PairInfo("en"), tokenizer_dir)
    assert type(model).__name__ == "EncoderDecoderModel" and model.config.is_encoder_decoder
    assert model.config.encoder.model_type == "modernbert"
    assert model.config.decoder.model_type == "gpt2" and model.config.decoder.add_cross_attention
    assert model.config.encoder.vocab_size == model.config.decoder.vocab_size == len(tokenizer)
    assert model.config.decoder_start_token_id == tok.bos_token_id  # GPT-2 text starts at BOS
    assert model.config.pad_token_id == tok.pad_token_id != tok.eos_token_id
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()  # no lmforge involved
    assert type(again).__name__ == "EncoderDecoderModel"
    plain = AutoTokenizer.from_pretrained(tmp_path)
    # the saved tokenizer ends sources with EOS itself, as the model saw them in training
    ids = plain("香港法院")["input_ids"]
    assert ids[-1] == tok.eos_token_id and ids.count(tok.eos_token_id) == 1
    fc = cfg(max_length=32)
    doc = Document("香港法院", label="court")
    assert TASK.encode(tok, [doc], PairInfo("en"), fc, "test").features[0]["input_ids"] == ids
    enc = plain(["香港法院"], return_tensors="pt")
    start = torch.tensor([[again.config.decoder_start_token_id]])
    with torch.no_grad():
        a = model.eval()(**enc, decoder_input_ids=start).logits
        b = again(**enc, decoder_input_ids=start).logits
    assert torch.allclose(a, b)


def test_bert2gpt_greedy_decode_matches_transformers_generate(tokenizer_dir, pairs):
    """lmforge's batched loop (right-padded sources, KV cache) gives ``generate()``'s tokens."""
    from lmforge.tasks.generation import greedy_generate

    torch.manual_seed(0)
    model, tok = TASK.from_preset("bert2gpt-mini", PairInfo("en"), tokenizer_dir)
    fc = cfg(max_length=32, generation_max_tokens=6)
    enc = TASK.encode(tok, pairs[:4], TASK.prepare({"train": pairs[:4]}), fc, "test")
    sources = [f["input_ids"] for f in enc.features]
    ours = greedy_generate(
        model, sources, pad_id=tok.pad_token_id, stop_ids=[tok.eos_token_id], max_new_tokens=6
    )
    for ids, got in zip(sources, ours.ids, strict=True):
        x = torch.tensor([ids])
        ref = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=6,
                             do_sample=False, num_beams=1)[0, 1:].tolist()  # fmt: skip
        if tok.eos_token_id in ref:
            ref = ref[: ref.index(tok.eos_token_id)]
        assert got == ref


def test_decoder_position_table_caps_new_tokens(tokenizer_dir, pairs):
    """A bert2gpt decoder with 8 positions writes at most 7 tokens after its start token,
    instead of failing with an IndexError past GPT-2's position table."""
    from lmforge.tasks.generation import greedy_generate

    torch.manual_seed(0)
    model, tok = TASK.from_preset("bert2gpt-mini", PairInfo("en"), tokenizer_dir)
    model.decoder.transformer.wpe.weight.data = model.decoder.transformer.wpe.weight.data[:8]
    model.config.decoder.n_positions = 8
    out = greedy_generate(model, [[5, 6, 7, tok.eos_token_id]], pad_id=tok.pad_token_id,
                          stop_ids=[-1], max_new_tokens=20)  # fmt: skip
    assert len(out.ids[0]) == 7 and out.stopped == [False]


def test_decoder_only_model_is_rejected(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100)).save_pretrained(
        tmp_path
    )
    with pytest.raises(LmforgeError, match=r"GPT2Config has no Seq2SeqLM head.*'translation'"):
        TASK.load_model(tmp_path, PairInfo("en"))


def test_tiny_t5_learns_a_handful_of_pairs(tokenizer_dir, pairs):
    """Eight real pairs, trained on until memorised: BLEU goes from ~0 to about 80."""
    docs = [d for d in pairs if len(d.text) < 25][:8]
    fc = cfg(max_length=48, batch_size=8, generation_max_tokens=40)
    torch.manual_seed(0)
    model, tok = TASK.from_preset("t5-tiny", PairInfo("en"), tokenizer_dir)
    info = TASK.prepare({"train": docs, "test": docs})
    enc = TASK.encode(tok, docs, info, fc, "train")
    before = TASK.metrics(enc.references, TASK.predict(model, enc, tok, info, fc), info)
    fit(model, enc, None, epochs=60, lr=5e-3, batch_size=8, warmup_ratio=0.05)
    preds = TASK.predict(model, enc, tok, info, fc)
    after = TASK.metrics(enc.references, preds, info)
    assert before["bleu"] < 5 and after["bleu"] > 60, (before, after, preds)
    assert after["tokenize"] == "13a" and after["chrf"] > 85


def test_tiny_bert2gpt_learns_a_handful_of_pairs(tokenizer_dir, pairs):
    """The recipe's architecture on eight real pairs, length-grouped batches in bf16: the
    decoder learns to read the source (BLEU from ~0 to over 60)."""
    docs = [d for d in pairs if len(d.text) < 25][:8]
    fc = cfg(max_length=48, batch_size=4, generation_max_tokens=40)
    torch.manual_seed(0)
    model, tok = TASK.from_preset("bert2gpt-mini", PairInfo("en"), tokenizer_dir)
    info = TASK.prepare({"train": docs, "test": docs})
    enc = TASK.encode(tok, docs, info, fc, "train")
    before = TASK.metrics(enc.references, TASK.predict(model, enc, tok, info, fc), info)
    fit(model, enc, None, epochs=30, lr=1e-3, batch_size=4, warmup_ratio=0.1,
        precision="bf16", group_by_length=True)  # fmt: skip
    after = TASK.metrics(enc.references, TASK.predict(model, enc, tok, info, fc), info)
    assert before["bleu"] < 5 and after["bleu"] > 60, (before, after)


@pytest.mark.parametrize("preset", ["t5-tiny", "bert2gpt-mini"])
def test_lora_wraps_a_seq2seq_model_and_generates(tokenizer_dir, pairs, preset):
    torch.manual_seed(0)
    model, tok = TASK.from_preset(preset, PairInfo("en"), tokenizer_dir)
    lora = apply_method("lora", model, MethodConfig(r=4), "SEQ_2_SEQ_LM", 10)
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    if preset == "bert2gpt-mini":  # encoder, decoder self- and cross-attention all adapted
        for part in ("Wqkv", "attn.c_attn", "crossattention.q_attn"):
            assert any(part in n for n in trainable), part
    docs = pairs[:3]
    fc = cfg(max_length=32, generation_max_tokens=5)
    info = TASK.prepare({"train": docs})
    preds = TASK.predict(lora, TASK.encode(tok, docs, info, fc, "test"), tok, info, fc)
    assert len(preds) == 3 and all(isinstance(p, str) for p in preds)


def test_translation_memory_returns_the_nearest_training_target(pairs):
    train = pairs[:200]
    queries = [train[7].text, train[42].text[:-1]]  # an exact and a near match
    assert translation_memory([d.text for d in train], [d.label for d in train], queries) == [
        train[7].label,
        train[42].label,
    ]
    base = TASK.baseline({"train": train, "test": train[:20]}, PairInfo("en"))
    assert base["method"] == "translation-memory" and base["bleu"] > 99  # all in memory

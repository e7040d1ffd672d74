"""Every tokenizer kind, on English and Chinese, saved in a form plain transformers loads."""

import subprocess
import sys
import unicodedata

import pytest
from pydantic import ValidationError

from lmforge.core.errors import DataError
from lmforge.core.metrics import MetricsLogger
from lmforge.tokenizer.config import TokenizerConfig
from lmforge.tokenizer.stage import build_tokenizer
from lmforge.tokenizer.train import (
    drop_rare_characters,
    measure,
    save_tokenizer,
    to_transformers,
    train_tokenizer,
)

KINDS = ["bpe", "wordpiece", "unigram"]


@pytest.fixture(scope="module")
def corpora(en_texts, zh_texts):
    return {"en": en_texts, "zh": zh_texts}


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_trains_without_unknown_floods(corpora, kind, lang):
    texts = corpora[lang]
    train, val = texts[: -len(texts) // 10], texts[-len(texts) // 10 :]
    cfg = TokenizerConfig(kind=kind, vocab_size=3000 if lang == "zh" else 2000)
    tok = train_tokenizer(cfg, train)
    m = measure(tok, val, cfg.resolved_specials().get("unk"))
    assert m["unk_rate"] < 0.005, m  # held-out Chinese must not turn into [UNK]
    assert m["chars_per_token"] > (1.0 if lang == "zh" else 2.5), m
    assert 0 < m["tokens_per_word"] < 3


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_byte_level_bpe_round_trips_exactly(corpora, lang):
    texts = corpora[lang]
    tok = train_tokenizer(TokenizerConfig(kind="bpe", vocab_size=1000), texts[:200])
    for text in [
        *texts[200:220],
        "  tabs\tand\nnewlines ",
        "emoji 🙂 and 大模型的技术发展",
        "ünïcödé",
    ]:
        assert tok.decode(tok.encode(text).ids) == text


@pytest.mark.parametrize("kind", KINDS)
def test_saved_dir_loads_in_plain_transformers_without_lmforge(tmp_path, zh_texts, kind):
    cfg = TokenizerConfig(kind=kind, vocab_size=3000, model_max_length=256)
    save_tokenizer(to_transformers(train_tokenizer(cfg, zh_texts), cfg), tmp_path)
    text = "这个手机很好用，电池也耐用。"
    code = (
        "import sys\n"
        "from transformers import AutoTokenizer\n"
        f"tok = AutoTokenizer.from_pretrained({str(tmp_path)!r})\n"
        f"ids = tok({text!r})['input_ids']\n"
        "assert tok.unk_token_id not in ids, ids\n"
        "assert tok.model_max_length == 256\n"
        "assert not any(m.startswith('lmforge') for m in sys.modules)\n"
        f"print(tok.decode(ids, skip_special_tokens=True).replace(' ', ''))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    decoded = out.stdout.strip()
    # unigram normalises with NFKC by default (full-width comma -> ASCII comma)
    assert decoded == (text if kind != "unigram" else unicodedata.normalize("NFKC", text))


def test_wordpiece_adds_cls_and_sep(en_texts):
    cfg = TokenizerConfig(kind="wordpiece", vocab_size=2000)
    hf = to_transformers(train_tokenizer(cfg, en_texts), cfg)
    ids = hf("Shares rose")["input_ids"]
    assert ids[0] == hf.cls_token_id and ids[-1] == hf.sep_token_id


def test_vocab_below_special_and_byte_floor_is_rejected():
    with pytest.raises(ValidationError, match="vocab_size .* must exceed"):
        TokenizerConfig(kind="bpe", vocab_size=200)


def test_unigram_fits_a_chinese_alphabet_larger_than_its_vocabulary(zh_texts):
    alphabet = len(set("".join(zh_texts)))
    cfg = TokenizerConfig(kind="unigram", vocab_size=1000)
    assert alphabet > 3 * cfg.vocab_size
    tok = train_tokenizer(cfg, zh_texts)
    assert tok.get_vocab_size() <= cfg.vocab_size
    # the rare characters dropped by character coverage are a small share of the text
    assert measure(tok, zh_texts[:200], "<unk>")["unk_rate"] < 0.1


def test_drop_rare_characters_respects_coverage_and_cap():
    texts = ["aaaaaaaabbc"]
    assert drop_rare_characters(texts, 0.7, 10) == ["aaaaaaaa"]
    assert drop_rare_characters(texts, 1.0, 10) == texts
    assert drop_rare_characters(texts, 0.99, 2) == ["aaaaaaaabb"]


def test_empty_corpus_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    cfg = TokenizerConfig(files=[empty])
    with pytest.raises(DataError, match="empty"):
        build_tokenizer(cfg, None, tmp_path / "out", MetricsLogger(tmp_path / "m.jsonl"))


def test_stage_trains_on_files_and_reports_metrics(tmp_path, en_texts):
    src = tmp_path / "corpus.txt"
    src.write_text("\n".join(en_texts[:100]), encoding="utf-8")
    out = tmp_path / "tok"
    result = build_tokenizer(
        TokenizerConfig(files=[src], vocab_size=1000),
        None,
        out,
        MetricsLogger(tmp_path / "m.jsonl"),
    )
    assert (out / "tokenizer.json").exists() and (out / "tokenizer_config.json").exists()
    assert result.metrics["vocab_size"] == 1000
    assert {"chars_per_token", "tokens_per_word", "unk_rate", "train_seconds"} <= set(
        result.metrics
    )

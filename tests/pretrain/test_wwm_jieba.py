"""Chinese whole-word masking with rjieba: masks cover jieba's words on real People's Daily
text, and text of every script (traditional, full-width, emoji, empty) segments without error."""

from __future__ import annotations

import re

import pytest
import rjieba
from helpers import trained_tokenizer

from lmforge.data.builtin import load_builtin
from lmforge.pretrain.mlm import chinese_word_starts, word_start_mask
from lmforge.pretrain.objectives import PretrainData
from lmforge.pretrain.wwm import DEFAULT_SEGMENTER, segment

pytestmark = pytest.mark.usefixtures("one_thread")
HAN = re.compile(r"[\u4e00-\u9fa5]")


@pytest.fixture(scope="module")
def daily_texts() -> list[str]:
    return [d.text for d in load_builtin("peoples-daily-ner", limit=120)]


@pytest.fixture(scope="module")
def wordpiece(daily_texts):
    return trained_tokenizer(daily_texts, vocab_size=3000, max_length=64)


def jieba_words(tokens: list[str]) -> list[list[int]]:
    """Token index groups of rjieba's words over each run of Chinese tokens of a block."""
    groups, run = [], []
    for j, t in enumerate([*tokens, "[SEP]"]):
        if HAN.fullmatch(t):
            run.append(j)
            continue
        if run:
            k = 0
            for word in rjieba.cut("".join(tokens[i] for i in run)):
                groups.append(run[k : k + len(word)])
                k += len(word)
            run = []
    return groups


def test_masks_cover_whole_jieba_words(wordpiece, daily_texts):
    assert DEFAULT_SEGMENTER == "rjieba"
    data = PretrainData.from_texts(
        wordpiece, daily_texts, objective="mlm", block_size=64, whole_word_mask=True
    )
    ids = data.train.input_ids
    blocks = [wordpiece.convert_ids_to_tokens(row) for row in ids.tolist()]
    words = [jieba_words(tokens) for tokens in blocks]
    long_words = sum(len(w) > 1 for row in words for w in row)
    assert long_words > 200  # 国务院, 江泽民, ...: real multi-character words
    starts = data.train.word_starts
    for row, groups in enumerate(words):  # word starts are exactly jieba's boundaries
        for g in groups:
            assert starts[row, g[0]] and not starts[row, g[1:]].any()
    split_words = masked_words = 0
    for seed in range(3):
        masked = data.batch(range(len(ids)), seed=seed)["labels"] != -100
        for row, groups in enumerate(words):
            for g in groups:
                hit = masked[row, g]
                split_words += bool(hit.any()) and not bool(hit.all())
                masked_words += len(g) > 1 and bool(hit.all())
    assert split_words == 0  # a word is masked whole or not at all
    assert masked_words > 50


def test_chinese_word_starts_follow_jieba_by_default():
    text = "我正在写这本书的心得"  # snownlp: 我 正 在 写 这 本 书 的 心得
    assert segment(text) == ["我", "正在", "写", "这", "本书", "的", "心得"]
    starts = chinese_word_starts(list(text))
    assert starts == [True, True, False, True, True, True, False, True, True, False]


@pytest.mark.parametrize(
    "text",
    [
        "國務院總理李鵬會見外賓",  # traditional characters
        "ＡＢＣ公司，成立於２０２４年！",  # full-width letters, digits, punctuation
        "我爱北京😀天安门🎉",  # emoji between Chinese
        "GPT-4和BERT模型 are both 大模型",  # mixed scripts and spaces
        "",  # empty
        "   ",  # only spaces
    ],
)
def test_any_script_segments_and_masks_without_error(wordpiece, text):
    ids = wordpiece([text], return_tensors="pt", padding="max_length", max_length=32)["input_ids"]
    starts = word_start_mask(wordpiece, ids)
    assert starts.shape == ids.shape and bool(starts[0, 0])
    assert "".join(segment(text)) == text
    han = [c for c in text if HAN.fullmatch(c)]
    assert len(chinese_word_starts(han)) == len(han)

"""Pretraining data: packing, BERT masking, whole words, NSP pairs, reproducible batches."""

from __future__ import annotations

import math

import pytest
import torch

from lmforge.core.errors import DataError
from lmforge.pretrain.objectives import (
    PretrainData,
    build_nsp_pairs,
    chinese_word_starts,
    cls_sep_ids,
    mask_tokens,
    pack_clm,
    pack_mlm,
    split_sentences,
    tokenize_texts,
    word_start_mask,
)
from lmforge.tokenizer.config import TokenizerConfig
from lmforge.tokenizer.train import to_transformers, train_tokenizer


def _tokenizer(kind: str, vocab_size: int, texts: list[str]):
    cfg = TokenizerConfig(kind=kind, vocab_size=vocab_size, model_max_length=64)
    return to_transformers(train_tokenizer(cfg, texts), cfg)


@pytest.fixture(scope="module")
def bpe(en_texts):
    return _tokenizer("bpe", 1000, en_texts)


@pytest.fixture(scope="module")
def wordpiece(en_texts, zh_texts):
    return _tokenizer("wordpiece", 3000, en_texts + zh_texts[:300])


@pytest.fixture(scope="module")
def mlm_blocks(wordpiece, en_texts):
    cls_id, sep_id = cls_sep_ids(wordpiece)
    return pack_mlm(tokenize_texts(wordpiece, en_texts), 128, cls_id, sep_id)


def _specials(tok) -> set[int]:
    return set(tok.all_special_ids)


def _mask(tok, input_ids, seed, probability=0.15, word_starts=None):
    return mask_tokens(
        input_ids,
        mask_id=tok.mask_token_id,
        vocab_size=len(tok),
        special_ids=_specials(tok),
        probability=probability,
        generator=torch.Generator().manual_seed(seed),
        word_starts=word_starts,
    )


def _words(starts: list[bool]) -> list[list[int]]:
    """Positions of each word, from a row of word-start flags."""
    words: list[list[int]] = []
    for j, s in enumerate(starts):
        if s or not words:
            words.append([])
        words[-1].append(j)
    return words


def test_tokenize_texts_matches_tokenizer_without_warning(bpe, en_texts, capfd):
    ids = tokenize_texts(bpe, en_texts[:50], batch=16)
    assert "longer than the specified maximum" not in capfd.readouterr().err
    assert ids == bpe(en_texts[:50], add_special_tokens=False, verbose=False)["input_ids"]
    assert max(map(len, ids)) > bpe.model_max_length  # long documents are not truncated


def test_pack_clm_joins_documents_with_eos_without_padding(bpe, en_texts):
    docs = tokenize_texts(bpe, en_texts)
    eos = bpe.eos_token_id
    blocks = pack_clm(docs, 64, eos)
    stream = [t for d in docs for t in (*d, eos)]
    assert blocks.shape == (len(stream) // 64, 64)
    assert blocks.dtype == torch.long
    assert blocks.flatten().tolist() == stream[: blocks.numel()]
    assert bpe.pad_token_id not in blocks.flatten().tolist()
    assert (blocks == eos).sum() == sum(1 for t in stream[: blocks.numel()] if t == eos)


def test_pack_clm_too_few_tokens_says_how_many():
    with pytest.raises(DataError, match=r"only 4 tokens.*block_size=128"):
        pack_clm([[5, 6, 7]], 128, eos_id=0)


def test_pack_mlm_wraps_blocks_in_cls_sep(wordpiece, en_texts, mlm_blocks):
    docs = tokenize_texts(wordpiece, en_texts)
    cls_id, sep_id = wordpiece.cls_token_id, wordpiece.sep_token_id
    stream = [t for d in docs for t in (*d, sep_id)]
    assert mlm_blocks.shape == (len(stream) // 126, 128)
    assert (mlm_blocks[:, 0] == cls_id).all() and (mlm_blocks[:, -1] == sep_id).all()
    assert mlm_blocks[:, 1:-1].flatten().tolist() == stream[: len(mlm_blocks) * 126]
    with pytest.raises(DataError, match="only 3 tokens"):
        pack_mlm([[5, 6]], 16, cls_id, sep_id)


def test_byte_level_bpe_uses_bos_eos_for_cls_sep(bpe):
    eos = bpe.eos_token_id
    assert cls_sep_ids(bpe) == (bpe.bos_token_id, eos)
    with pytest.raises(DataError, match="mask token"):
        PretrainData.from_texts(bpe, ["some text"] * 50, objective="mlm", block_size=8)


def test_mask_tokens_bert_rates(wordpiece, mlm_blocks):
    ids = mlm_blocks
    inputs, labels = _mask(wordpiece, ids, seed=0)
    special = torch.isin(ids, torch.tensor(sorted(_specials(wordpiece))))
    masked = labels != -100
    assert masked.float()[~special].mean().item() == pytest.approx(0.15, abs=0.02)
    assert not masked[special].any()
    assert (inputs[special] == ids[special]).all()
    assert (labels[masked] == ids[masked]).all()
    assert (inputs[~masked] == ids[~masked]).all()
    n = masked.sum().item()
    to_mask = (inputs[masked] == wordpiece.mask_token_id).sum().item() / n
    kept = (inputs[masked] == ids[masked]).sum().item() / n
    assert to_mask == pytest.approx(0.8, abs=0.03)
    assert kept == pytest.approx(0.1, abs=0.03)
    assert 1 - to_mask - kept == pytest.approx(0.1, abs=0.03)


def test_mask_tokens_same_seed_same_mask(wordpiece, mlm_blocks):
    ids = mlm_blocks[:32]
    a, b, c = (_mask(wordpiece, ids, seed) for seed in (1, 1, 2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_word_starts_follow_wordpiece_pieces(wordpiece, mlm_blocks):
    starts = word_start_mask(wordpiece, mlm_blocks[:8])
    tokens = [wordpiece.convert_ids_to_tokens(row) for row in mlm_blocks[:8].tolist()]
    for row_tokens, row_starts in zip(tokens, starts.tolist(), strict=True):
        for j, (tok, start) in enumerate(zip(row_tokens, row_starts, strict=True)):
            after_special = j == 0 or row_tokens[j - 1] in ("[CLS]", "[SEP]")
            assert start == (not tok.startswith("##") or after_special), (j, tok)


def test_whole_word_masking_masks_every_piece(wordpiece, mlm_blocks):
    ids = mlm_blocks[:200]
    starts = word_start_mask(wordpiece, ids)
    _, labels = _mask(wordpiece, ids, seed=3, word_starts=starts)
    masked = labels != -100
    assert masked.float().mean().item() == pytest.approx(0.15, abs=0.03)
    multi_piece_masked = 0
    for row_starts, row_masked in zip(starts.tolist(), masked.tolist(), strict=True):
        for word in _words(row_starts):
            flags = {row_masked[j] for j in word}
            assert len(flags) == 1, word  # all pieces or none (specials are one-token words)
            multi_piece_masked += len(word) > 1 and row_masked[word[0]]
    assert multi_piece_masked > 50


def test_byte_level_bpe_word_starts(bpe):
    ids = torch.tensor(
        [[bpe.eos_token_id, *bpe.encode("Hello worldwide\nfriends", add_special_tokens=False)]]
    )
    tokens = bpe.convert_ids_to_tokens(ids[0].tolist())
    starts = word_start_mask(bpe, ids)[0].tolist()
    assert starts[0] and starts[1]  # the special token and what follows it
    words = ["".join(tokens[j] for j in w) for w in _words(starts)]
    assert words == ["<|endoftext|>", "Hello", "Ġworldwide", "Ċ", "friends"]


def test_chinese_word_starts_group_segmented_words():
    tokens = list("我正在写这本书的心得")
    from snownlp import seg

    words = seg.single_seg("".join(tokens))
    assert any(len(w) > 1 for w in words)
    starts = chinese_word_starts(tokens, "snownlp")
    assert ["".join(tokens[j] for j in w) for w in _words(starts)] == words
    assert chinese_word_starts(["##心", "得"]) == [True, False]


def test_chinese_whole_word_masking(wordpiece, zh_texts):
    data = PretrainData.from_texts(
        wordpiece, zh_texts[:40], objective="mlm", block_size=64, whole_word_mask=True
    )
    ids, starts = data.train.input_ids, data.train.word_starts
    tokens = [wordpiece.convert_ids_to_tokens(row) for row in ids.tolist()]
    multi_char = [w for row, s in zip(tokens, starts.tolist(), strict=True) for w in _words(s)]
    multi_char = [w for w in multi_char if len(w) > 1]
    assert multi_char  # characters were grouped into words
    labels = data.batch(range(len(ids)), seed=11)["labels"]
    masked = labels != -100
    hit = 0
    for row_starts, row_masked in zip(starts.tolist(), masked.tolist(), strict=True):
        for word in _words(row_starts):
            assert len({row_masked[j] for j in word}) == 1
            hit += len(word) > 1 and row_masked[word[0]]
    assert hit > 0


def test_split_sentences_english_and_chinese():
    assert split_sentences("It rose 5%. Why? Nobody knows!\nNew line here") == [
        "It rose 5%.",
        "Why?",
        "Nobody knows!",
        "New line here",
    ]
    assert split_sentences('He said "stop." Then 3.5 left.') == [
        'He said "stop."',
        "Then 3.5 left.",
    ]
    assert split_sentences("今天天气很好。我们去公园吧！好吗？走；\n明天……再说") == [
        "今天天气很好。",
        "我们去公园吧！",
        "好吗？",
        "走；",
        "明天……",
        "再说",
    ]


def _synthetic_docs(n_docs: int = 60) -> list[list[list[int]]]:
    """Token id = 1000 * (doc + 1) + position: where each token came from is readable."""
    docs = []
    for d in range(n_docs):
        sentences, pos = [], 0
        for s in range(12 + d % 5):
            length = 3 + (d + s) % 9
            sentences.append([1000 * (d + 1) + pos + k for k in range(length)])
            pos += length
        docs.append(sentences)
    return docs


def test_nsp_pairs_follow_bert():
    cls_id, sep_id, pad_id, block = 1, 2, 0, 40
    out = build_nsp_pairs(_synthetic_docs(), block, cls_id, sep_id, 0.5, seed=0, pad_id=pad_id)
    n = len(out["next_sentence_label"])
    assert out["input_ids"].shape == out["token_type_ids"].shape == (n, block)
    assert out["next_sentence_label"].float().mean().item() == pytest.approx(0.5, abs=0.08)
    for ids, types, mask, label in zip(
        out["input_ids"].tolist(),
        out["token_type_ids"].tolist(),
        out["attention_mask"].tolist(),
        out["next_sentence_label"].tolist(),
        strict=True,
    ):
        length = sum(mask)
        assert mask == [1] * length + [0] * (block - length)
        assert ids[length:] == [pad_id] * (block - length)
        first_sep = ids.index(sep_id)
        assert ids[0] == cls_id and ids[length - 1] == sep_id
        a, b = ids[1:first_sep], ids[first_sep + 1 : length - 1]
        assert a and b and sep_id not in b
        assert types[: first_sep + 1] == [0] * (first_sep + 1)
        assert types[first_sep + 1 : length] == [1] * (length - first_sep - 1)
        assert types[length:] == [0] * (block - length)
        doc_a, doc_b = {t // 1000 for t in a}, {t // 1000 for t in b}
        assert len(doc_a) == 1 and len(doc_b) == 1
        assert a == list(range(a[0], a[0] + len(a)))  # consecutive sentences
        if label == 0:  # B is the real continuation: same document, right after A
            assert doc_a == doc_b and b[0] > a[-1]
            assert b == list(range(b[0], b[0] + len(b)))
        else:
            assert doc_a != doc_b
    again = build_nsp_pairs(_synthetic_docs(), block, cls_id, sep_id, 0.5, seed=0, pad_id=pad_id)
    assert all(torch.equal(out[k], again[k]) for k in out)


def test_nsp_needs_two_documents():
    with pytest.raises(DataError, match="at least 2"):
        build_nsp_pairs([[[5, 6], [7]]], 32, 1, 2, 0.5, seed=0)


@pytest.mark.parametrize("objective", ["clm", "mlm", "mlm+nsp"])
def test_batch_is_a_function_of_indices_and_seed(objective, bpe, wordpiece, en_texts):
    tok = bpe if objective == "clm" else wordpiece
    data = PretrainData.from_texts(
        tok,
        en_texts[:200],
        en_texts[200:],
        objective=objective,
        block_size=64,
        whole_word_mask=True,
    )
    a = data.batch([5, 2, 9], seed=hash((0, 10, 1, 0)))
    b = data.batch(torch.tensor([5, 2, 9]), seed=hash((0, 10, 1, 0)))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    expected = {"input_ids", "labels"}  # packed blocks: no padding, so no attention mask
    if objective == "mlm+nsp":  # sentence pairs are padded
        expected |= {"attention_mask", "token_type_ids", "next_sentence_label"}
        assert (
            a["next_sentence_label"].tolist() == data.train.next_sentence_label[[5, 2, 9]].tolist()
        )
    assert set(a) == expected
    assert a["input_ids"].shape == (3, 64)
    if objective == "clm":
        assert torch.equal(a["labels"], a["input_ids"])
    else:
        c = data.batch([5, 2, 9], seed=hash((0, 11, 1, 0)))
        assert not torch.equal(a["labels"], c["labels"])
    assert data.batch([0, 1], seed=0, split="val")["input_ids"].shape == (2, 64)


def test_small_val_split_names_the_split(bpe, en_texts):
    with pytest.raises(DataError, match="'val' split: only"):
        PretrainData.from_texts(bpe, en_texts[:20], ["tiny"], objective="clm", block_size=64)


def test_unigram_reference_loss_by_hand():
    from lmforge.pretrain.evaluate import unigram_loss
    from lmforge.pretrain.objectives import Blocks, PretrainData

    train, val = Blocks(torch.tensor([[0, 1, 1, 2]])), Blocks(torch.tensor([[0, 2, 2], [1, 1, 1]]))
    clm = PretrainData("clm", train, val, vocab_size=3)
    # counts + 1 = [2, 3, 2] of 7; targets of the first val block: 2, 2 (position 0 is not one)
    assert unigram_loss(clm, n_blocks=1) == pytest.approx(-math.log(2 / 7))
    mlm = PretrainData("mlm", train, val, vocab_size=3, special_ids=frozenset({0}))
    # specials are never masked: counts + 1 = [1, 3, 2] of 6; val tokens 2, 2, 1, 1, 1
    expected = -(2 * math.log(2 / 6) + 3 * math.log(3 / 6)) / 5
    assert unigram_loss(mlm, n_blocks=2) == pytest.approx(expected)
    assert unigram_loss(PretrainData("clm", train, None, vocab_size=3), 1) is None

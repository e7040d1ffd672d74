"""Very long documents (a 50 MB single line) go through the data stage in memory proportional
to their size, with the results the one-piece code gives: near-dedup MinHash, whitespace
tidying and exact-dedup hashing work piece by piece, the filters count without lists."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lmforge.data import clean, dedup
from lmforge.data.config import GopherConfig
from lmforge.data.quality import detect_language, gopher_reason

HAN = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]


def english(n_words: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = ["alpha", "Beta", "gamma", "ﬁne", "café", "x_1", "the", "and", "of", "naïve"]
    seps = [" ", " ", " ", "  ", "\t", "\n", " \n\n\n ", "\r\n", "\u3000"]
    return "".join(rng.choice(words) + rng.choice(seps) for _ in range(n_words))


def chinese(n_chars: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(HAN) if rng.random() > 0.1 else "，" for _ in range(n_chars))


TEXTS = {
    "english": english(3000),
    "chinese": chinese(5000),
    "mixed": english(40) + chinese(200),  # character shingles: mostly Chinese
}


@pytest.mark.parametrize("kind", TEXTS)
@pytest.mark.parametrize("ngram", [1, 5])
def test_a_long_document_minhash_in_pieces_equals_the_one_piece_signature(kind, ngram, monkeypatch):
    text = TEXTS[kind]
    a, b = dedup._permutations(128, 0)
    units = dedup._UnitHasher()
    whole = dedup._signatures(*dedup._batch_shingles([text], "auto", ngram, units), a, b)[0]
    for piece in (3, 100, 1000):
        monkeypatch.setattr(dedup, "LONG_DOC_UNITS", piece)
        got = dedup._long_signature(text, "auto", ngram, dedup._UnitHasher(), a, b)
        assert np.array_equal(got, whole)


def test_near_dedup_finds_a_long_near_copy_through_the_piecewise_path(monkeypatch):
    long_doc = chinese(20_000)
    near_copy = long_doc[:19_000] + chinese(1000, seed=1)  # 95% shared
    texts = ["short one", long_doc, "another short text here", near_copy, english(5000)]
    before = dedup.near_dedup(texts, threshold=0.8)
    monkeypatch.setattr(dedup, "LONG_DOC_CHARS", 1000)
    monkeypatch.setattr(dedup, "LONG_DOC_UNITS", 512)
    after = dedup.near_dedup(texts, threshold=0.8)
    assert after.keep == before.keep == [0, 1, 2, 4]
    assert after.clusters == [[1, 3]]


def test_whitespace_tidying_and_exact_dedup_keys_are_the_same_piece_by_piece(monkeypatch):
    texts = [english(2000, seed=s) for s in range(5)] + [" \t " + chinese(3000) + " \n "]
    whole_tidy = [clean.normalize_whitespace(t) for t in texts]
    whole_key = [dedup.normalize_for_hash(t) for t in texts]
    monkeypatch.setattr(clean, "LONG_TEXT_CHARS", 7)
    monkeypatch.setattr(dedup, "LONG_TEXT_CHARS", 7)
    assert [clean.normalize_whitespace(t) for t in texts] == whole_tidy
    assert [dedup.normalize_for_hash(t) for t in texts] == whole_key


def test_filters_judge_long_documents_as_before():
    cfg = GopherConfig(enabled=True, max_words=1000)
    assert gopher_reason(english(5000), cfg) == "too_many_words (5000 > 1000)"
    assert gopher_reason(chinese(5000), cfg).startswith("too_many_words (")
    assert detect_language(chinese(50_000)) == "zh"
    assert detect_language(english(50_000)) == "en"


PROBE = textwrap.dedent(
    """
    import json, os, random, resource, sys, tempfile
    from pathlib import Path

    os.environ["LMFORGE_NO_PROGRESS"] = "1"
    from lmforge.core.metrics import MetricsLogger
    from lmforge.data.config import DataConfig
    from lmforge.data.stage import build_corpus

    def stage(path, out):
        cfg = DataConfig(
            sources=[{"path": str(path), "txt_unit": "line"}], split={"val": 0, "test": 0}
        )
        build_corpus(cfg, out, 0, MetricsLogger(out / "m.jsonl"))

    tmp = Path(sys.argv[1])
    rng = random.Random(0)
    han = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(2, 8))) for _ in range(5000)]
    zh = "".join(rng.choice(han) for _ in range(2_000_000))  # one 6 MB line
    en = " ".join(rng.choice(words) for _ in range(1_000_000))  # and one of ~6 MB
    (tmp / "small.txt").write_text(zh[:2000] + "\\n" + en[:2000] + "\\n", encoding="utf-8")
    (tmp / "long.txt").write_text(zh + "\\n" + en + "\\n", encoding="utf-8")
    del zh, en
    stage(tmp / "small.txt", tmp / "a")  # imports and compiled patterns: the fixed cost
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stage(tmp / "long.txt", tmp / "b")
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    size = (tmp / "long.txt").stat().st_size
    print(json.dumps({"bytes": size, "growth": (after - before) * 1024}))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux")
def test_peak_memory_of_the_data_stage_is_bounded_for_12_mb_of_single_lines(tmp_path):
    """~11 bytes per input byte (50 MB lines: 0.6-0.7 GB); before: 51 here, 88 on a 50 MB
    Chinese line (4.4 GB), mostly near-dedup's Python ints and (perms x shingles) block."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    assert measured["growth"] < 20 * measured["bytes"], measured

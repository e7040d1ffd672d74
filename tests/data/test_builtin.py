from collections import Counter

import pytest

from lmforge.core.errors import LmforgeError
from lmforge.data.builtin import DATASETS, load_builtin, peoples_daily_bio, strip_wikitext


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_loads_and_is_documented(name):
    info = DATASETS.get(name)
    assert info.licence and info.source and info.size and info.description
    docs = load_builtin(name, limit=5)
    assert len(docs) == 5
    assert load_builtin(name, limit=5) == docs  # deterministic order
    if info.task == "image-classification":
        assert all(d.image is not None and d.label is not None for d in docs)
    else:
        assert all(d.text for d in docs)


def test_bbc_news_is_deduplicated_with_five_real_labels():
    docs = load_builtin("bbc-news")
    assert len(docs) == 2127
    assert len({d.text for d in docs}) == 2127
    assert set(Counter(d.label for d in docs)) == {
        "business",
        "entertainment",
        "politics",
        "sports",
        "tech",
    }
    assert not any("\ufffd" in d.text for d in docs)  # the Latin-1 file decodes cleanly
    assert {d.label for d in load_builtin("bbc-news", limit=5)} == {
        "business",
        "entertainment",
        "politics",
        "sports",
        "tech",
    }


def test_zh_sentiment_is_balanced_under_a_limit_and_conflict_free():
    first = load_builtin("zh-sentiment", limit=10)
    assert Counter(d.label for d in first) == {"pos": 5, "neg": 5}
    docs = load_builtin("zh-sentiment")
    assert len(docs) == 17363
    by_text: dict[str, set] = {}
    for d in docs:
        by_text.setdefault(d.text, set()).add(d.label)
    assert all(len(labels) == 1 for labels in by_text.values())


def test_peoples_daily_bio_merges_split_person_names():
    chars, tags = peoples_daily_bio("江/nr  泽民/nr  在/p  北京/ns  会见/v  新华社/nt  记者/n")
    assert "".join(chars) == "江泽民在北京会见新华社记者"
    assert tags[:3] == ["B-PER", "I-PER", "I-PER"]
    assert tags[4:6] == ["B-LOC", "I-LOC"]
    assert tags[8:11] == ["B-ORG", "I-ORG", "I-ORG"]


def test_peoples_daily_documents_are_aligned_valid_bio():
    docs = load_builtin("peoples-daily-ner", limit=300)
    seen = Counter()
    for d in docs:
        assert "".join(d.tokens) == d.text and len(d.tokens) == len(d.tags)
        for prev, tag in zip(["O", *d.tags], d.tags, strict=False):
            if tag.startswith("I-"):
                assert prev[2:] == tag[2:], (prev, tag)
            seen[tag[2:]] += tag.startswith("B-")
    assert seen["PER"] and seen["LOC"] and seen["ORG"]


def test_wiki_markup_is_stripped():
    docs = load_builtin("wiki-en")
    assert len(docs) == 106
    assert not any("[[" in d.text or "{{" in d.text for d in docs)
    assert (
        strip_wikitext("== History ==\n'''Bold''' () [[Paris|the city]]<ref>x</ref>{{cite}}")
        == "History\nBold  the city"
    )


def test_unknown_dataset_suggests_the_closest():
    with pytest.raises(LmforgeError, match="did you mean 'wiki-en'"):
        load_builtin("wiki_en")

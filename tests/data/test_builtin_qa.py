"""wiki-qa: extractive QA derived from the Wikipedia excerpt by rule-based cloze translation."""

import pytest

from lmforge.core.text import sentence_spans
from lmforge.data.builtin import DATASETS, load_builtin
from lmforge.data.builtin_qa import (
    MAX_CONTEXT_CHARS,
    WH_WORDS,
    contexts_of,
    questions_in,
)
from lmforge.data.config import DataConfig
from lmforge.data.document import Document
from lmforge.data.pipeline import PipelineStats, dedup_docs, dedup_key, rewrite_texts
from lmforge.data.split import assign_split


@pytest.fixture(scope="module")
def sample():
    return load_builtin("wiki-qa", limit=300)


def test_answers_are_real_spans_at_answer_start_and_questions_ask(sample):
    assert len(sample) == 300
    for d in sample:
        assert d.text[d.answer_start : d.answer_start + len(d.label)] == d.label
        q = d.question.lower()
        assert d.question.endswith("?") and any(w in q for w in WH_WORDS), d.question
        assert d.label.lower() not in q  # the question never gives the answer away
        assert d.meta["source"] == "wiki-qa" and d.meta["title"]
        assert len(d.text) <= MAX_CONTEXT_CHARS or len(sentence_spans(d.text)) == 1
    assert len({d.meta["id"] for d in sample}) == len(sample)
    assert len({d.text for d in sample}) < len(sample)  # several questions share a context
    kinds = {w for d in sample for w in ("when", "how many", "who", "what") if w in d.question}
    assert kinds == {"when", "how many", "who", "what"}


def test_derivation_is_deterministic_and_a_limit_is_a_prefix(sample):
    assert load_builtin("wiki-qa", limit=50) == sample[:50]


def test_full_dataset_matches_its_documented_size():
    docs = load_builtin("wiki-qa")
    size = DATASETS.get("wiki-qa").size
    assert f"{len(docs):,} questions" in size and f"{len({d.text for d in docs}):,}" in size


@pytest.mark.parametrize(
    ("sentence", "question", "answer"),
    [
        (
            "The first known use of this word was in 1539.",
            "The first known use of this word was when?",
            "1539",
        ),
        (
            "Globally, autism is estimated to affect 21.7 million people as of today.",
            "Globally, autism is estimated to affect how many people as of today?",
            "21.7 million",
        ),
        (
            "The term was introduced into optics by Johann Heinrich Lambert in his work.",
            "The term was introduced into optics by who in his work?",
            "Johann Heinrich Lambert",
        ),
        (
            "The average overall albedo of Earth is 30 to 35% because of cloud cover.",
            "The average overall albedo of Earth is 30 to what percentage because of cloud cover?",
            "35%",
        ),
        (
            "Its economy grew after the war, when the Bank of the United States opened.",
            "Its economy grew after the war, when the what opened?",
            "Bank of the United States",
        ),
    ],
)
def test_cloze_to_question_rules(sentence, question, answer):
    found = {q: sentence[c.start : c.end] for c, q in questions_in(sentence)}
    assert found.get(question) == answer, found


def test_names_at_the_sentence_start_or_after_a_number_are_not_answers():
    assert questions_in("Henry David Thoreau was an important early influence on them.") == []
    found = [sentence for _, sentence in questions_in("It was sold on 20th Century Fox DVDs.")]
    assert found == []


def test_sentences_do_not_end_at_initials_or_abbreviations():
    text = "J. R. R. Tolkien wrote it, e.g. in 1937. Mr. Smith came later. It ended."
    assert [text[s:e] for s, e in sentence_spans(text)] == [
        "J. R. R. Tolkien wrote it, e.g. in 1937.",
        "Mr. Smith came later.",
        "It ended.",
    ]


def test_contexts_are_prose_paragraphs_cut_at_sentence_ends():
    sentence = "This sentence about the history of the city is real enough to count. "
    article = "History\n\n* a list item\n\n" + sentence * 40 + "\n\nShort tail."
    contexts = contexts_of(article)
    assert len(contexts) == 3 and all(len(c) <= MAX_CONTEXT_CHARS for c in contexts)
    assert all(c.startswith("This sentence") and c.endswith("count.") for c in contexts)


def test_pipeline_keeps_every_question_of_a_context_together(sample):
    by_context: dict[str, list[Document]] = {}
    for d in sample:
        by_context.setdefault(d.text, []).append(d)
    shared = next(docs for docs in by_context.values() if len(docs) >= 2)
    copy = Document(
        shared[0].text,
        label=shared[0].label,
        question=shared[0].question,
        answer_start=shared[0].answer_start,
    )
    cfg = DataConfig(sources=[{"builtin": "wiki-qa"}])
    kept = dedup_docs([*sample, copy], cfg, PipelineStats(), seed=0)
    # exact and near dedup drop the repeated pair, never a sibling question of one context
    assert len(kept) == len(sample)
    assert {(d.text, d.question) for d in kept} == {(d.text, d.question) for d in sample}
    # near-identical contexts: the second one goes with all its questions
    near = [
        Document(d.text + " Extra.", label=d.label, question=d.question, answer_start=0)
        for d in shared
    ]
    kept = dedup_docs([*shared, *near], cfg, PipelineStats(), seed=0)
    assert [d.text for d in kept] == [d.text for d in shared]
    # the split hashes the context alone: one context never straddles two splits
    assert len({assign_split(dedup_key(d), 0.1, 0.1) for d in shared}) == 1


def test_cleaning_leaves_qa_documents_untouched():
    text = "Caf\u00e9\u00a0Society  opened in\u00a01938 in New\u00a0York."
    doc = Document(text, label="1938", question="Caf\u00e9 opened when?", answer_start=24)
    assert text[24:28] == "1938"
    rewrite_texts([doc], DataConfig(sources=[{"builtin": "wiki-qa"}]), PipelineStats())
    assert doc.text == text

"""Classic Chinese baselines trained on our own split: snownlp's naive Bayes for sentiment."""

import pytest

from lmforge.data.builtin import load_builtin
from lmforge.data.document import Document
from lmforge.evaluate.metrics import classification_metrics
from lmforge.tasks import TASKS
from lmforge.tasks.baselines import snownlp_bayes
from lmforge.tasks.classification import LabelInfo


@pytest.fixture(scope="module")
def reviews():
    """800 reviews (pos/neg alternate), each cut to its first 50 characters: snownlp's
    pure-Python segmenter reads about 10k characters/s, so this keeps the test in seconds."""
    return [Document(d.text[:50], label=d.label) for d in load_builtin("zh-sentiment", limit=800)]


@pytest.mark.slow
def test_snownlp_bayes_retrained_on_our_split_beats_chance(reviews):
    train, test = reviews[:600], reviews[600:]
    preds = snownlp_bayes([d.text for d in train], [d.label for d in train], [d.text for d in test])
    assert set(preds) <= {"pos", "neg"}
    accuracy = classification_metrics([d.label for d in test], preds)["accuracy"]
    # measured 0.62; chance 0.5 (cut to 60 characters: 0.53 from 200 training reviews, 0.68
    # from 800: naive Bayes needs data). snownlp's shipped model would score far higher: it
    # was trained on these very reviews.
    assert accuracy > 0.58, accuracy


def test_classification_baseline_adds_snownlp_for_chinese_only(reviews):
    task = TASKS.get("classification")
    splits = {"train": reviews[:60], "test": reviews[60:80]}
    base = task.baseline(splits, LabelInfo.from_documents(splits["train"]))
    assert base["method"] == "tfidf+logreg" and 0 <= base["accuracy"] <= 1
    assert base["snownlp"]["method"].startswith("snownlp")
    assert 0 <= base["snownlp"]["accuracy"] <= 1 and 0 <= base["snownlp"]["macro_f1"] <= 1
    en = load_builtin("bbc-news", limit=60)
    base = task.baseline({"train": en[:50], "test": en[50:]}, LabelInfo.from_documents(en[:50]))
    assert "snownlp" not in base

"""Classic baselines trained on the same split as the fine-tune, so a gain is a ratio, not a
claim: TF-IDF + logistic regression for text classification (word 1-2-grams for spaced
text, character 1-2-grams for Chinese, which has no spaces)."""

from __future__ import annotations

import re

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")


def mostly_cjk(texts: list[str]) -> bool:
    sample = "".join(texts[:200])
    letters = sum(c.isalpha() for c in sample)
    return letters > 0 and len(_CJK.findall(sample)) / letters > 0.5


def tfidf_logreg(
    train_texts: list[str], train_labels: list[str], test_texts: list[str]
) -> list[str]:
    """Predictions of a TF-IDF + logistic-regression classifier (scikit-learn)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    if mostly_cjk(train_texts):
        vectorizer = TfidfVectorizer(
            analyzer="char", ngram_range=(1, 2), sublinear_tf=True, min_df=2
        )
    else:
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    model = make_pipeline(vectorizer, LogisticRegression(max_iter=2000, C=10.0))
    model.fit(train_texts, train_labels)
    return [str(p) for p in model.predict(test_texts)]

"""Classic baselines trained on the same split as the fine-tune, so a gain is a ratio, not a
claim: TF-IDF + logistic regression for text classification (word 1-2-grams for spaced
text, character 1-2-grams for Chinese, which has no spaces)."""

from __future__ import annotations

from lmforge.core.text import mostly_cjk


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


def snownlp_bayes(
    train_texts: list[str], train_labels: list[str], test_texts: list[str]
) -> list[str]:
    """Predictions of snownlp's own sentiment classifier, retrained on ``train_texts`` only.

    snownlp ships a trained model, but it was trained on the very reviews of the built-in
    ``zh-sentiment`` set (its ``sentiment/{pos,neg}.txt``), test split included: using it as
    is would leak test data. So a fresh ``Sentiment`` is trained here. ``Sentiment.train(neg,
    pos)`` is naive Bayes over ``Sentiment.handle`` (snownlp's word segmenter, stop words
    dropped); calling the two directly admits any label set, not just pos/neg. The segmenter
    is pure Python, about 10k characters/s on one core: ~2 min for the zh-sentiment train split.
    """
    from snownlp.sentiment import Sentiment  # importing it loads the shipped model (~2 s)

    model = Sentiment()
    model.classifier.train(
        [(model.handle(t), str(y)) for t, y in zip(train_texts, train_labels, strict=True)]
    )
    return [str(model.classifier.classify(model.handle(t))[0]) for t in test_texts]

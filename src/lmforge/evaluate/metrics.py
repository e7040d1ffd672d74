"""Task metrics computed offline, with Chinese handled as a first-class language.

Every function takes plain Python lists and returns plain floats (no numpy scalars), so
results can go straight into `metrics.json`. scikit-learn, seqeval, sacrebleu and
matplotlib are imported inside the functions that need them, keeping import cheap.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Literal

from lmforge.core.text import CJK_CHAR, has_cjk, mostly_cjk

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ASCII_PUNCT = frozenset(string.punctuation)


def _check_same_length(a: list, b: list, names: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{names} must have the same length, got {len(a)} and {len(b)}")
    if not a:
        raise ValueError(f"{names} are empty: nothing to score")


def classification_metrics(
    y_true: list[str], y_pred: list[str], labels: list[str] | None = None
) -> dict:
    """Accuracy, macro/micro/weighted F1, per-class scores and the confusion matrix.

    Args:
        labels: class order for `per_class` and the confusion matrix (rows = true,
            columns = predicted). Defaults to the sorted union of the labels seen; pass it
            to keep classes absent from this split in the report.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    _check_same_length(y_true, y_pred, "y_true and y_pred")
    labels = list(labels) if labels is not None else sorted(set(y_true) | set(y_pred))
    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    averaged = {
        f"{avg}_f1": float(
            precision_recall_fscore_support(
                y_true, y_pred, labels=labels, average=avg, zero_division=0
            )[2]
        )
        for avg in ("macro", "micro", "weighted")
    }
    per_class = {
        label: {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
        }
        for i, label in enumerate(labels)
    }
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        **averaged,
        "per_class": per_class,
        "labels": labels,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def multilabel_metrics(
    y_true: list[list[str]], y_pred: list[list[str]], labels: list[str] | None = None
) -> dict:
    """Micro/macro F1, subset accuracy (exact set match) and Hamming loss.

    Raises:
        ValueError: if a label outside `labels` appears (it would silently be dropped).
    """
    from sklearn.metrics import accuracy_score, f1_score, hamming_loss
    from sklearn.preprocessing import MultiLabelBinarizer

    _check_same_length(y_true, y_pred, "y_true and y_pred")
    seen = {label for row in (*y_true, *y_pred) for label in row}
    labels = list(labels) if labels is not None else sorted(seen)
    unknown = seen - set(labels)
    if unknown:
        raise ValueError(f"labels {sorted(unknown)} are not in `labels`; add them or drop them")
    binarizer = MultiLabelBinarizer(classes=labels)
    t = binarizer.fit_transform(y_true)  # (N, L) 0/1 indicator matrix
    p = binarizer.transform(y_pred)
    return {
        "micro_f1": float(f1_score(t, p, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(t, p, average="macro", zero_division=0)),
        "subset_accuracy": float(accuracy_score(t, p)),
        "hamming_loss": float(hamming_loss(t, p)),
    }


def entity_metrics(
    true_tags: list[list[str]],
    pred_tags: list[list[str]],
    mode: Literal["default", "strict"] = "default",
    scheme: Literal["IOB1", "IOB2", "IOE1", "IOE2", "IOBES", "BILOU"] = "IOB2",
) -> dict:
    """Entity-level precision/recall/F1 (micro and per type) plus token accuracy.

    An entity counts only if type and both boundaries match, so a boundary error is one
    false positive *and* one false negative. `mode="default"` is the lenient conlleval
    behaviour (an `I-X` after `O` opens an entity); `mode="strict"` decodes with `scheme`
    and drops spans the scheme forbids.
    """
    import seqeval.scheme
    from seqeval.metrics import accuracy_score, classification_report

    _check_same_length(true_tags, pred_tags, "true_tags and pred_tags")
    for i, (t, p) in enumerate(zip(true_tags, pred_tags, strict=True)):
        if len(t) != len(p):
            raise ValueError(f"sentence {i}: {len(t)} true tags but {len(p)} predicted tags")
    kwargs = (
        {"mode": "strict", "scheme": getattr(seqeval.scheme, scheme)} if mode == "strict" else {}
    )
    report = classification_report(
        true_tags, pred_tags, output_dict=True, zero_division=0, **kwargs
    )
    micro = report.pop("micro avg")
    for key in ("macro avg", "weighted avg"):
        report.pop(key, None)
    return {
        "precision": float(micro["precision"]),
        "recall": float(micro["recall"]),
        "f1": float(micro["f1-score"]),
        "token_accuracy": float(accuracy_score(true_tags, pred_tags)),
        "per_type": {
            name: {
                "precision": float(v["precision"]),
                "recall": float(v["recall"]),
                "f1": float(v["f1-score"]),
                "support": int(v["support"]),
            }
            for name, v in report.items()
        },
    }


def _normalize_answer(text: str, cjk: bool) -> str:
    """SQuAD v1.1 `normalize_answer`; in CJK mode also strips Unicode punctuation (，。、)."""
    text = text.lower()
    if cjk:
        text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    else:
        text = "".join(ch for ch in text if ch not in _ASCII_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _answer_tokens(normalized: str, cjk: bool) -> list[str]:
    """Whitespace words; in CJK mode every Han/kana character is its own token."""
    if not cjk:
        return normalized.split()
    # CMRC 2018 "mixed segmentation": CJK chars split apart, Latin words/numbers kept whole.
    return CJK_CHAR.sub(lambda m: f" {m.group()} ", normalized).split()


def _f1(prediction: list[str], reference: list[str]) -> float:
    common = sum((Counter(prediction) & Counter(reference)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(prediction), common / len(reference)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(predictions: list[str], references: list[list[str]]) -> dict:
    """Exact match and token F1 in percent, each the max over a question's references.

    Normalisation follows the official SQuAD v1.1 script: lowercase, drop ASCII
    punctuation, drop the articles a/an/the, collapse whitespace. If the prediction or a
    reference contains CJK characters, the pair is scored as the CMRC 2018 script does:
    Unicode punctuation (，。《》…) is also dropped and each CJK character is one token, so
    "北京大学" vs "北京" scores F1 = 2/3 rather than 0. (CMRC's own F1 uses the longest
    common substring; the bag-of-characters overlap here agrees for contiguous spans.)
    """
    _check_same_length(predictions, references, "predictions and references")
    exact, f1 = 0.0, 0.0
    for i, (prediction, refs) in enumerate(zip(predictions, references, strict=True)):
        if not refs:
            raise ValueError(f"question {i} has no reference answers")
        best_em, best_f1 = 0.0, 0.0
        for ref in refs:
            cjk = has_cjk(prediction) or has_cjk(ref)
            pred_norm, ref_norm = _normalize_answer(prediction, cjk), _normalize_answer(ref, cjk)
            best_em = max(best_em, float(pred_norm == ref_norm))
            best_f1 = max(
                best_f1, _f1(_answer_tokens(pred_norm, cjk), _answer_tokens(ref_norm, cjk))
            )
        exact, f1 = exact + best_em, f1 + best_f1
    n = len(predictions)
    return {"exact_match": 100.0 * exact / n, "f1": 100.0 * f1 / n}


def generation_metrics(
    predictions: list[str],
    references: list[str] | list[list[str]],
    language: Literal["en", "zh"] | None = None,
) -> dict:
    """Corpus BLEU and chrF (0-100) with sacrebleu.

    Args:
        references: one reference per prediction, or a list of references per prediction
            (counts may differ between predictions).
        language: "zh" selects sacrebleu's `tokenize="zh"` (each Chinese character a
            token), "en" the standard "13a"; None picks "zh" when CJK characters make up
            at least half of the references' letters.
    """
    import sacrebleu

    _check_same_length(predictions, references, "predictions and references")
    per_prediction = [[r] if isinstance(r, str) else list(r) for r in references]
    if language is None:
        language = "zh" if mostly_cjk([r for refs in per_prediction for r in refs]) else "en"
    # sacrebleu wants reference *streams* (one list per reference slot); pad with None.
    width = max(len(refs) for refs in per_prediction)
    streams = [
        [refs[k] if k < len(refs) else None for refs in per_prediction] for k in range(width)
    ]
    tokenize = "zh" if language == "zh" else "13a"
    bleu = sacrebleu.corpus_bleu(predictions, streams, tokenize=tokenize)
    chrf = sacrebleu.corpus_chrf(predictions, streams)
    return {"bleu": float(bleu.score), "chrf": float(chrf.score), "tokenize": tokenize}


def perplexity(mean_nll: float) -> float:
    """exp(mean negative log-likelihood in nats); `inf` instead of OverflowError."""
    try:
        return math.exp(mean_nll)
    except OverflowError:
        return math.inf


def plot_confusion_matrix(
    matrix: list[list[int]],
    labels: list[str],
    path: str | Path,
    title: str = "",
    normalize: bool = True,
) -> Path:
    """Save an annotated confusion-matrix heatmap (rows = true, columns = predicted) as PNG.

    With `normalize`, colours and annotations are row fractions (recall per class) and the
    raw count follows in brackets. CJK labels render with a CJK font when one is installed
    (``lmforge.core.plots``).
    """
    import numpy as np

    from lmforge.core.plots import figure

    counts = np.asarray(matrix, dtype=float)  # (L, L)
    if counts.shape != (len(labels), len(labels)):
        raise ValueError(f"matrix shape {counts.shape} does not match {len(labels)} labels")
    row_sums = counts.sum(axis=1, keepdims=True)
    values = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)
    if not normalize:
        values = counts
    size = max(4.0, 0.6 * len(labels) + 2.0)
    path = Path(path)
    with figure(path, (size, size)) as (fig, ax):
        image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
        fig.colorbar(image, ax=ax, shrink=0.8)
        ticks = range(len(labels))
        ax.set_xticks(ticks, labels, rotation=45, ha="right")
        ax.set_yticks(ticks, labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        threshold = values.max() / 2 if values.size else 0.0
        for i in ticks:
            for j in ticks:
                text = (
                    f"{values[i, j]:.2f}\n({int(counts[i, j])})"
                    if normalize
                    else f"{int(counts[i, j])}"
                )
                colour = "white" if values[i, j] > threshold else "black"
                ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=8)
    return path

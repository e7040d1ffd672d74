"""Text classification, single-label (softmax) or multi-label (sigmoid, a list of labels per
text): sentiment, topic, intent. Head: ``AutoModelForSequenceClassification``.

Data: ``text_column`` holds the text, ``label_column`` the label (a list for multi-label).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.core.errors import DataError, LmforgeError
from lmforge.data.document import Document
from lmforge.tasks.base import TASKS, Encoded, Splits, Task, TaskOptions, pad_sequences
from lmforge.tasks.heads import head_loader, label_config

ENCODER_PRESETS = ("bert-tiny", "bert-small", "modernbert-tiny", "modernbert-small")


@dataclass(frozen=True)
class LabelInfo:
    labels: list[str]  # sorted; index = class id
    multi_label: bool = False

    @classmethod
    def from_documents(cls, docs: list[Document]) -> LabelInfo:
        if not docs or any(d.label is None for d in docs):
            missing = [i for i, d in enumerate(docs) if d.label is None][:5]
            raise DataError(
                f"classification needs a label on every training row; rows {missing} have none"
            )
        multi = isinstance(docs[0].label, list)
        names = {x for d in docs for x in (d.label if multi else [d.label])}
        if len(names) < 2:
            raise DataError(
                f"classification needs at least 2 labels in the training data, found {sorted(names)}"
            )
        return cls(sorted(names), multi)

    def check(self, docs: list[Document], split: str) -> None:
        """Raise naming the rows of ``docs`` whose labels training never saw."""
        known = set(self.labels)
        unseen = [
            (i, d.label)
            for i, d in enumerate(docs)
            if d.label is None
            or any(x not in known for x in (d.label if self.multi_label else [d.label]))
        ]
        if unseen:
            raise DataError(
                f"{len(unseen)} '{split}' rows have labels never seen in training, e.g. rows "
                f"{[i for i, _ in unseen[:5]]} with {[lab for _, lab in unseen[:5]]}; "
                f"known labels: {self.labels}"
            )

    def targets(self, docs: list[Document]) -> list[Any]:
        """Each document's training target: its class id, or a multi-hot vector of floats
        (BCE's targets) for multi-label data."""
        index = {name: i for i, name in enumerate(self.labels)}
        if not self.multi_label:
            return [index[d.label] for d in docs]  # type: ignore[index]
        out = []
        for d in docs:
            y = [0.0] * len(self.labels)
            for name in d.label:  # type: ignore[union-attr]
                y[index[name]] = 1.0
            out.append(y)
        return out


def prepare(splits: Splits) -> LabelInfo:
    info = LabelInfo.from_documents(splits["train"])
    for split in ("val", "test"):
        info.check(splits.get(split) or [], split)
    return info


def tokenize_counting_truncation(
    tokenizer: Any, texts: list[str], max_length: int, **kwargs: Any
) -> tuple[list[list[int]], int]:
    """Token ids truncated to ``max_length``, and how many texts were cut."""
    enc = tokenizer(texts, truncation=True, max_length=max_length, **kwargs)
    ids = enc["input_ids"]
    if enc.encodings is not None:  # fast tokenizers keep what truncation cut off
        truncated = sum(bool(e.overflowing) for e in enc.encodings)
    else:  # slow tokenizers: a second, untruncated pass
        truncated = sum(len(x) > max_length for x in tokenizer(texts, **kwargs)["input_ids"])
    return ids, truncated


def text_collate(pad_id: int) -> Any:
    """Batches of ``{"input_ids": [...], "labels": ...}`` features: padded, with a mask."""
    import torch

    def collate(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = pad_sequences([f["input_ids"] for f in features], pad_id)
        mask = pad_sequences([[1] * len(f["input_ids"]) for f in features], 0)
        labels = features[0]["labels"]
        if isinstance(labels, list):  # multi-hot
            y = torch.tensor([f["labels"] for f in features], dtype=torch.float)
        else:
            y = torch.tensor([f["labels"] for f in features], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": mask, "labels": y}

    return collate


def encode(
    tokenizer: Any, docs: list[Document], info: LabelInfo, options: Any, split: str
) -> Encoded:
    """Tokenize with truncation (counted) and map labels to ids."""
    opts = TaskOptions.of(options)
    info.check(docs, split)
    if opts.text_length <= tokenizer.num_special_tokens_to_add(pair=False):
        raise LmforgeError(
            f"finetune.max_length={opts.max_length} leaves no room for text"
            + (f" after {opts.virtual_tokens} virtual tokens" if opts.virtual_tokens else "")
        )
    ids, truncated = tokenize_counting_truncation(
        tokenizer, [d.text for d in docs], opts.text_length
    )
    targets = info.targets(docs)
    features = [{"input_ids": row, "labels": y} for row, y in zip(ids, targets, strict=True)]
    return Encoded(
        features, [d.label for d in docs], text_collate(tokenizer.pad_token_id), truncated
    )


load_model = head_loader(
    "AutoModelForSequenceClassification",
    "classification",
    lambda info: label_config(info.labels, info.multi_label),
)


def logits_in_batches(model: Any, data: Encoded, batch_size: int = 32) -> Any:
    """Eval-mode logits over ``data`` in order, as one float CPU tensor per batch."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    for start in range(0, len(data), batch_size):
        b = data.batch(list(range(start, min(start + batch_size, len(data)))))
        b.pop("labels")
        with torch.no_grad():
            yield model(**{k: v.to(device) for k, v in b.items()}).logits.float().cpu()


def predict(model: Any, data: Encoded, processor: Any, info: LabelInfo, options: Any) -> list[Any]:
    opts = TaskOptions.of(options)
    import torch

    out: list[Any] = []
    for logits in logits_in_batches(model, data, opts.batch_size * 2):
        if info.multi_label:
            out.extend(
                [info.labels[j] for j in torch.nonzero(row > 0).flatten().tolist()]
                for row in logits
            )
        else:
            out.extend(info.labels[j] for j in logits.argmax(-1).tolist())
    return out


def metrics(references: list[Any], predictions: list[Any], info: LabelInfo) -> dict[str, Any]:
    from lmforge.evaluate.metrics import classification_metrics, multilabel_metrics

    if info.multi_label:
        return multilabel_metrics(references, predictions, info.labels)
    return classification_metrics(references, predictions, info.labels)


def baseline(splits: Splits, info: LabelInfo) -> dict[str, Any] | None:
    """TF-IDF + logistic regression on the same train/test split (single-label only); for
    mostly-Chinese text also snownlp's naive Bayes, under ``baseline["snownlp"]``."""
    from lmforge.core.text import mostly_cjk
    from lmforge.tasks.baselines import snownlp_bayes, tfidf_logreg

    if info.multi_label:
        return None
    train, test = splits["train"], splits["test"]
    args = ([d.text for d in train], [d.label for d in train], [d.text for d in test])
    scores = metrics([d.label for d in test], tfidf_logreg(*args), info)
    out: dict[str, Any] = {
        "method": "tfidf+logreg",
        "accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"],
    }
    if mostly_cjk(args[0]):
        snow = metrics([d.label for d in test], snownlp_bayes(*args), info)
        out["snownlp"] = {
            "method": "snownlp naive Bayes (retrained on this train split)",
            "accuracy": snow["accuracy"],
            "macro_f1": snow["macro_f1"],
        }
    return out


def report(scores: dict[str, Any], info: LabelInfo, out: Path, title: str) -> dict[str, str]:
    from lmforge.evaluate.metrics import plot_confusion_matrix

    if "confusion_matrix" not in scores:
        return {}
    plot_confusion_matrix(scores["confusion_matrix"], info.labels, out / "confusion.png", title)
    return {"confusion_matrix": "confusion.png"}


TASKS.add(
    "classification",
    Task(
        "classification",
        "single- or multi-label text classification (sentiment, topic, intent)",
        "SEQ_CLS",
        prepare,
        load_model,
        encode,
        predict,
        metrics,
        presets=ENCODER_PRESETS,
        baseline=baseline,
        report=report,
    ),
)

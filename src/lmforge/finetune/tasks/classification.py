"""Text classification, single-label (softmax) or multi-label (sigmoid, a list of labels per
text): sentiment, topic, intent. Head: ``AutoModelForSequenceClassification``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lmforge.core.errors import DataError
from lmforge.data.document import Document
from lmforge.finetune.tasks.base import TASKS, Task

if TYPE_CHECKING:
    import torch


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


@dataclass
class Encoded:
    input_ids: list[list[int]]
    labels: torch.Tensor  # (N,) class ids, or (N, C) multi-hot
    references: list[Any]
    truncated: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.input_ids)

    def batch(self, idx: list[int], pad_id: int) -> dict[str, torch.Tensor]:
        import torch

        rows = [self.input_ids[i] for i in idx]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": self.labels[idx]}


def encode(
    tokenizer: Any, docs: list[Document], info: LabelInfo, max_length: int, split: str = "train"
) -> Encoded:
    """Tokenize with truncation (counted) and map labels to ids; unseen labels name their rows."""
    import torch

    index = {name: i for i, name in enumerate(info.labels)}
    unseen = [
        (i, d.label)
        for i, d in enumerate(docs)
        if any(x not in index for x in (d.label if info.multi_label else [d.label]))
    ]
    if unseen:
        raise DataError(
            f"{len(unseen)} '{split}' rows have labels never seen in training, e.g. rows "
            f"{[i for i, _ in unseen[:5]]} with {[lab for _, lab in unseen[:5]]}; "
            f"known labels: {info.labels}"
        )
    texts = [d.text for d in docs]
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    ids = enc["input_ids"]
    if enc.encodings is not None:  # fast tokenizers keep what truncation cut off
        truncated = sum(bool(e.overflowing) for e in enc.encodings)
    else:  # slow tokenizers: a second, untruncated pass
        truncated = sum(len(x) > max_length for x in tokenizer(texts)["input_ids"])
    if info.multi_label:
        labels = torch.zeros(len(docs), len(info.labels))
        for i, d in enumerate(docs):
            labels[i, [index[x] for x in d.label]] = 1.0
    else:
        labels = torch.tensor([index[d.label] for d in docs], dtype=torch.long)
    return Encoded(ids, labels, [d.label for d in docs], truncated)


def load_model(path: str, info: LabelInfo) -> Any:
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=len(info.labels),
        id2label=dict(enumerate(info.labels)),
        label2id={n: i for i, n in enumerate(info.labels)},
        problem_type="multi_label_classification"
        if info.multi_label
        else "single_label_classification",
        # a checkpoint fine-tuned for other labels has a head of another size: start it afresh
        ignore_mismatched_sizes=True,
    )


def predict(
    model: Any,
    data: Encoded,
    info: LabelInfo,
    pad_id: int,
    batch_size: int = 32,
    device: torch.device | None = None,
) -> list[Any]:
    import torch

    model.eval()
    out: list[Any] = []
    for start in range(0, len(data), batch_size):
        b = data.batch(list(range(start, min(start + batch_size, len(data)))), pad_id)
        b.pop("labels")
        with torch.no_grad():
            logits = model(**{k: v.to(device or "cpu") for k, v in b.items()}).logits.float().cpu()
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


TASKS.add(
    "classification",
    Task(
        "classification",
        "single- or multi-label text classification (sentiment, topic, intent)",
        "SEQ_CLS",
        load_model,
        encode,
        predict,
        metrics,
    ),
)

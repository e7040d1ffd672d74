"""A text classifier as the explain tools see it: texts in, class probabilities out.

Attacks, attributions, TCAV and attention maps all query the model the same way (tokenised
as the finetune stage did, at the manifest's ``max_length``), so one wrapper counts the
queries an attack spends and refuses a model that is not a single-label text classifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lmforge.core.errors import LmforgeError


@dataclass
class Classifier:
    """A single-label text classifier in eval mode with its tokenizer and label names."""

    model: Any
    tokenizer: Any
    labels: list[str]
    max_length: int = 128
    batch_size: int = 32
    queries: int = field(default=0)  # texts scored so far (an attack's cost)
    cache: dict[str, Any] = field(default_factory=dict, repr=False)  # per-model lookups

    @classmethod
    def from_artifact(cls, art: Any, batch_size: int = 32) -> Classifier:
        """Wrap ``load_artifact``'s result; only single-label text classification qualifies.

        Raises:
            LmforgeError: another task, or a multi-label classifier.
        """
        if art.task is None or art.task.name != "classification":
            name = art.task.name if art.task is not None else "no task"
            raise LmforgeError(
                f"explain needs a text classification model; {art.path} is for {name!r} "
                "(its lmforge.json)"
            )
        if getattr(art.info, "multi_label", False):
            raise LmforgeError(
                f"explain needs a single-label classifier; {art.path} is multi-label"
            )
        max_length = (art.manifest.max_length if art.manifest is not None else None) or 128
        return cls(art.model, art.processor, list(art.info.labels), max_length, batch_size)

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def encode(self, texts: list[str]) -> dict[str, Any]:
        """Padded tensors on the model's device, truncated as in training."""
        enc = self.tokenizer(
            texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
        )
        return {k: v.to(self.device) for k, v in enc.items() if k != "token_type_ids"}

    def visible_chars(self, text: str) -> int:
        """How many leading characters of ``text`` survive truncation to ``max_length``
        (what lies beyond cannot change a prediction, so attacks leave it alone)."""
        if not getattr(self.tokenizer, "is_fast", False):
            return len(text)
        enc = self.tokenizer(
            text, truncation=True, max_length=self.max_length, return_offsets_mapping=True
        )
        ends = [end for _, end in enc["offset_mapping"] if end]
        cut = enc.encodings is not None and bool(enc.encodings[0].overflowing)
        return max(ends) if cut and ends else len(text)

    def probs(self, texts: list[str]) -> Any:
        """Softmax probabilities, shape (N, C) numpy; each text counts as one query."""
        import numpy as np
        import torch

        self.queries += len(texts)
        out = []
        for start in range(0, len(texts), self.batch_size):
            with torch.no_grad():
                logits = self.model(**self.encode(texts[start : start + self.batch_size])).logits
            out.append(torch.softmax(logits.float(), -1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)))

    def probs_of_ids(self, rows: list[list[int]]) -> Any:
        """Softmax probabilities (N, C) of already tokenised inputs (specials included)."""
        import numpy as np
        import torch

        from lmforge.tasks.base import pad_sequences

        self.queries += len(rows)
        pad = self.tokenizer.pad_token_id or 0
        out = []
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            ids = pad_sequences(chunk, pad).to(self.device)
            mask = pad_sequences([[1] * len(r) for r in chunk], 0).to(self.device)
            with torch.no_grad():
                logits = self.model(input_ids=ids, attention_mask=mask).logits
            out.append(torch.softmax(logits.float(), -1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)))

    def predict(self, texts: list[str]) -> list[int]:
        """Predicted class ids."""
        return [int(i) for i in self.probs(texts).argmax(-1)]

"""The record every data step passes along."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Document:
    """One example. ``text`` is always set (empty for images) so text filters apply uniformly.

    Attributes:
        text: the document text.
        label: class label for classification data (a list for multi-label), else None.
        tokens: for token-level annotation (NER), the tokens whose concatenation (with
            ``""`` for Chinese characters, ``" "`` otherwise) is ``text``.
        tags: one BIO tag per token, aligned with ``tokens``.
        image: for image data, rows of pixel values (grey) or of ``[r, g, b]`` triples.
        question: for extractive QA, the question; ``text`` is the context and ``label`` the
            answer, found at character ``answer_start`` of the context.
        meta: provenance such as ``source``, ``title`` or ``id``.
    """

    text: str
    label: str | list[str] | None = None
    tokens: list[str] | None = None
    tags: list[str] | None = None
    image: list[list[int]] | list[list[list[int]]] | None = None
    question: str | None = None
    answer_start: int | None = None
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def aligned(self) -> bool:
        """True when the text carries per-token annotation, so text rewriting must not run."""
        return (
            self.tokens is not None
            or self.image is not None
            or self.answer_start is not None
            or self.question is not None
        )

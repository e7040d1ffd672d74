"""Typed schema of the recipe's ``tokenizer`` section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from lmforge.core.schema import ExistingPath, PositiveInt, StrictModel

Kind = Literal["bpe", "wordpiece", "unigram"]
Normalization = Literal["none", "nfc", "nfkc", "lowercase", "nfkc_lowercase"]
Role = Literal["pad", "unk", "bos", "eos", "mask", "cls", "sep"]

# Per-kind defaults follow the models that made each kind popular (GPT-2, BERT, T5/ALBERT).
DEFAULT_SPECIALS: dict[str, dict[str, str]] = {
    "bpe": {"bos": "<|endoftext|>", "eos": "<|endoftext|>", "pad": "<|pad|>"},
    "wordpiece": {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"},
    "unigram": {"pad": "<pad>", "unk": "<unk>", "bos": "<s>", "eos": "</s>", "mask": "<mask>"},
}
DEFAULT_NORMALIZATION: dict[str, Normalization] = {
    "bpe": "none",
    "wordpiece": "nfc",
    "unigram": "nfkc",
}
BYTE_ALPHABET = 256
# The largest vocabularies in use hold about 256k entries (Gemma); the trainers reserve
# memory in proportion to vocab_size, and ask for more than exists at 5e9 (the Rust
# allocator then aborts the process, which no exception handler can catch).
MAX_VOCAB_SIZE = 1_000_000


class TokenizerConfig(StrictModel):
    """Train a subword tokenizer on the data stage's train split (or on text files)."""

    kind: Kind = Field(
        "bpe",
        description="bpe (byte-level, GPT-2 style), wordpiece (BERT) or unigram (SentencePiece).",
    )
    vocab_size: PositiveInt = Field(
        8000,
        description=f"Target vocabulary size, special tokens included (at most {MAX_VOCAB_SIZE:,}).",
    )
    min_frequency: PositiveInt = Field(
        2, description="Minimum count for a merge/word piece to enter the vocabulary."
    )
    normalization: Normalization | None = Field(
        None,
        description="Text normalisation; default: none for bpe (exact round trip), nfc for wordpiece, nfkc for unigram.",
    )
    special_tokens: dict[Role, str] = Field(
        default_factory=dict,
        description="Override or add special tokens by role (pad, unk, bos, eos, mask, cls, sep).",
    )
    extra_special_tokens: list[str] = Field(
        default_factory=list, description="More special tokens to reserve."
    )
    character_coverage: float = Field(
        0.9995,
        gt=0,
        le=1,
        description="unigram: share of character occurrences the alphabet must cover; rarer characters "
        "become <unk> (SentencePiece's default), so large Chinese alphabets fit the vocabulary.",
    )
    model_max_length: PositiveInt = Field(
        2048, description="Maximum sequence length written to the tokenizer config."
    )
    max_docs: PositiveInt | None = Field(None, description="Train on at most this many documents.")
    files: list[ExistingPath] | None = Field(
        None, description="Train on these text files instead of the data stage's output."
    )

    @field_validator("vocab_size")
    @classmethod
    def _vocab_bounded(cls, v: int) -> int:
        if v > MAX_VOCAB_SIZE:
            raise ValueError(
                f"must be at most {MAX_VOCAB_SIZE:,} (the largest vocabularies in use hold about "
                "256,000 entries; the trainer reserves memory in proportion)"
            )
        return v

    @model_validator(mode="after")
    def _vocab_fits(self) -> TokenizerConfig:
        specials = len(set(self.resolved_specials().values()) | set(self.extra_special_tokens))
        floor = specials + (BYTE_ALPHABET if self.kind == "bpe" else 1)
        if self.vocab_size <= floor:
            raise ValueError(
                f"vocab_size ({self.vocab_size}) must exceed {floor} for {self.kind} "
                f"({specials} special tokens"
                + (" + 256 byte symbols)" if self.kind == "bpe" else ")")
            )
        return self

    def resolved_specials(self) -> dict[str, str]:
        return {**DEFAULT_SPECIALS[self.kind], **self.special_tokens}

    def resolved_normalization(self) -> Normalization:
        return self.normalization or DEFAULT_NORMALIZATION[self.kind]

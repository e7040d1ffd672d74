"""Typed schema of the recipe's ``data`` section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lmforge.core.schema import (
    Encoding,
    ExistingPath,
    Fraction,
    FractionCO,
    FractionOC,
    PositiveInt,
    StrictModel,
)

PII_TYPES = ("email", "phone", "ipv4", "credit_card", "cn_id")
PiiType = Literal["email", "phone", "ipv4", "credit_card", "cn_id"]


class SourceConfig(StrictModel):
    """One input: a built-in dataset by name, or a local file/directory."""

    builtin: str | None = Field(
        None, description="Name of a built-in dataset (see `lmforge datasets`)."
    )
    path: ExistingPath | None = Field(
        None, description="Local .txt/.jsonl/.csv/.parquet file or a directory of them."
    )
    format: Literal["auto", "txt", "jsonl", "csv", "parquet"] = Field(
        "auto", description="File format; 'auto' decides by file extension."
    )
    text_column: str = Field(
        "text", description="Column/field holding the text (jsonl, csv, parquet)."
    )
    label_column: str | None = Field(
        None,
        description="Column/field holding the label, if any: a class (or list of classes), "
        "BIO tags when the text column holds a token list, an answer (QA) or a target text.",
    )
    question_column: str | None = Field(
        None,
        description="Extractive QA: column with the question; the text column is the context, "
        "the label column the answer (text, or SQuAD's {text, answer_start}).",
    )
    txt_unit: Literal["file", "line", "paragraph"] = Field(
        "file",
        description="For .txt input: one document per file, per line, or per blank-line-separated paragraph.",
    )
    encoding: Encoding = Field(
        "utf-8",
        description="Text encoding (utf-8, gbk, big5, latin-1, ...); undecodable bytes are "
        "replaced with U+FFFD and counted, and a label holding one stops the run.",
    )
    limit: PositiveInt | None = Field(
        None, description="Keep at most this many documents from this source."
    )

    @model_validator(mode="after")
    def _one_of(self) -> SourceConfig:
        if (self.builtin is None) == (self.path is None):
            raise ValueError("give exactly one of 'builtin' or 'path'")
        if self.builtin is not None:
            from lmforge.data.builtin import DATASETS

            if self.builtin not in DATASETS:
                raise ValueError(DATASETS.unknown_message(self.builtin))
        return self


class GopherConfig(StrictModel):
    """Quality heuristics from Rae et al. 2021 (Gopher, MassiveText), applied per document."""

    enabled: bool = Field(False, description="Apply the quality heuristics.")
    min_words: int = Field(
        50, ge=0, description="Drop documents with fewer words (Chinese: characters/2)."
    )
    max_words: int = Field(100_000, ge=1, description="Drop documents with more words.")
    min_mean_word_length: float = Field(
        3.0, ge=0, description="Minimum mean word length (space-separated text)."
    )
    max_mean_word_length: float = Field(
        10.0, gt=0, description="Maximum mean word length (space-separated text)."
    )
    max_symbol_ratio: Fraction = Field(0.1, description="Maximum ratio of '#' and '...' to words.")
    max_bullet_lines: Fraction = Field(
        0.9, description="Maximum fraction of lines starting with a bullet."
    )
    max_ellipsis_lines: Fraction = Field(
        0.3, description="Maximum fraction of lines ending with an ellipsis."
    )
    min_alpha_words: Fraction = Field(
        0.8, description="Minimum fraction of words with an alphabetic character."
    )
    max_duplicate_lines: Fraction = Field(
        0.3, description="Maximum fraction of lines that repeat another line."
    )
    max_top_ngram: Fraction = Field(
        0.2, description="Maximum character fraction covered by the most common 2-gram."
    )
    max_duplicate_ngrams: Fraction = Field(
        0.15, description="Maximum character fraction in repeated 5-grams."
    )


class CleanConfig(StrictModel):
    normalize: bool = Field(True, description="Unicode NFKC normalisation.")
    strip_control: bool = Field(
        True, description="Remove control characters (keeps newlines and tabs)."
    )
    whitespace: bool = Field(
        True, description="Collapse runs of spaces, trim lines, at most one blank line."
    )
    strip_html: bool = Field(
        False, description="Remove HTML tags, scripts and styles; unescape entities."
    )
    min_chars: int = Field(1, ge=0, description="Drop documents shorter than this many characters.")
    max_chars: PositiveInt | None = Field(
        None, description="Drop documents longer than this many characters."
    )
    quality: GopherConfig = Field(
        default_factory=GopherConfig, description="Gopher-style quality filter."
    )
    languages: list[Literal["en", "zh"]] | None = Field(
        None, description="Keep only documents detected as one of these languages."
    )

    @model_validator(mode="after")
    def _bounds(self) -> CleanConfig:
        if self.max_chars is not None and self.max_chars < self.min_chars:
            raise ValueError(
                f"max_chars ({self.max_chars}) must be >= min_chars ({self.min_chars})"
            )
        return self


class PiiConfig(StrictModel):
    enabled: bool = Field(
        True, description="Replace personal data with typed placeholders such as <EMAIL>."
    )
    types: list[PiiType] = Field(
        list(PII_TYPES), description="Which kinds of personal data to scrub."
    )


class DedupConfig(StrictModel):
    exact: bool = Field(
        True, description="Remove exact duplicates (after normalising case and whitespace)."
    )
    near: bool = Field(True, description="Remove near duplicates with MinHash + LSH.")
    threshold: FractionOC = Field(
        0.8, description="Jaccard similarity above which documents are near duplicates."
    )
    num_perm: int = Field(
        128, ge=8, le=1024, description="MinHash permutations (signature length)."
    )
    bands: PositiveInt | None = Field(
        None,
        description="LSH bands; default picks bands x rows = num_perm minimising errors at the threshold.",
    )
    shingle: Literal["auto", "word", "char"] = Field(
        "auto",
        description="Shingle unit: words, characters, or per document (characters for Chinese).",
    )
    ngram: PositiveInt = Field(5, description="Shingle length in units.")

    @model_validator(mode="after")
    def _bands_divide(self) -> DedupConfig:
        if self.bands is not None and self.num_perm % self.bands:
            raise ValueError(f"bands ({self.bands}) must divide num_perm ({self.num_perm})")
        return self


class SplitConfig(StrictModel):
    val: FractionCO = Field(0.05, description="Fraction of documents in the validation split.")
    test: FractionCO = Field(0.05, description="Fraction of documents in the test split.")

    @model_validator(mode="after")
    def _sum(self) -> SplitConfig:
        if self.val + self.test >= 1:
            raise ValueError(f"val + test must be < 1 (got {self.val + self.test:g})")
        return self


class DataConfig(StrictModel):
    """Load, clean, scrub, deduplicate and split a corpus."""

    sources: list[SourceConfig] = Field(min_length=1, description="Inputs, concatenated in order.")
    clean: CleanConfig = Field(
        default_factory=CleanConfig, description="Normalisation and filters."
    )
    pii: PiiConfig = Field(default_factory=PiiConfig, description="Personal-data scrubbing.")
    dedup: DedupConfig = Field(
        default_factory=DedupConfig, description="Exact and near deduplication."
    )
    split: SplitConfig = Field(
        default_factory=SplitConfig, description="Train/val/test split by content hash."
    )
    output_format: Literal["parquet", "jsonl"] = Field(
        "parquet", description="Format of the output shards."
    )
    shard_docs: PositiveInt = Field(50_000, description="Documents per output shard.")
    examples_per_filter: int = Field(
        3, ge=0, le=100, description="Removed examples kept per filter in stats.json."
    )

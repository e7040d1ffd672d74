"""The tokenizer stage: compression and coverage on held-out text, the vocabulary's token
lengths, its longest entries, and a sample text cut into tokens."""

from __future__ import annotations

from typing import Any

from lmforge.report.blocks import Block, Figure, KeyValues, Row, Table, Tokens
from lmforge.report.plots import svg
from lmforge.report.run import StageView
from lmforge.report.sections import register, scalar_metrics

SAMPLE_CHARS = 240


@register("tokenizer", "Tokenizer")
def render(view: StageView) -> list[Block]:
    blocks: list[Block] = []
    rows = scalar_metrics(view.metrics)
    if rows:
        blocks.append(KeyValues(rows, "Measured on the validation text"))
    tokenizer = _load(view)
    if tokenizer is None:
        return blocks
    vocab = tokenizer.get_vocab()
    pieces = {i: tokenizer.decode([i]) for i in vocab.values()}
    lengths = [len(p) for p in pieces.values() if p]
    side: list[Block] = []
    if lengths:
        side.append(_length_histogram(lengths))
    longest = sorted(pieces.items(), key=lambda kv: -len(kv[1]))[:20]
    side.append(
        Table(["id", "token (decoded)"], [[str(i), repr(p)] for i, p in longest], "Longest tokens")
    )
    blocks.append(Row(side))
    sample = _sample_text(view)
    if sample:
        pieces = _pieces(tokenizer, sample)
        blocks.append(
            Tokens(
                f"A validation text in {len(pieces)} tokens "
                f"({len(sample) / max(len(pieces), 1):.2f} characters per token)",
                pieces,
            )
        )
    return blocks


def _pieces(tokenizer: Any, text: str) -> list[str]:
    """The text each token covers (from its offsets, so byte-level pieces of one character
    show as that character once, then "…"), line breaks shown as ↵."""
    out, previous = [], None
    for start, end in tokenizer.encode(text, add_special_tokens=False).offsets:
        piece = "…" if (start, end) == previous else text[start:end]
        out.append(piece.replace("\n", "↵"))
        previous = (start, end)
    return out


def _load(view: StageView) -> Any:
    path = view.path("tokenizer.json")
    if path is None:
        return None
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


def _length_histogram(lengths: list[int]) -> Figure:
    def draw(fig: Any, ax: Any) -> None:
        top = min(max(lengths), 24)
        ax.hist([min(n, top) for n in lengths], bins=range(1, top + 2), align="left", rwidth=0.85)
        ax.set_xlabel(f"characters per vocabulary entry ({top} = {top} or more)")
        ax.set_ylabel("entries")
        ax.grid(alpha=0.3, axis="y")

    return Figure(
        caption=f"Token lengths over the vocabulary ({len(lengths):,} entries)",
        svg=svg(draw, (5.2, 2.8)),
    )


def _sample_text(view: StageView) -> str:
    """The start of the first validation (else train) document of the data stage."""
    data = view.run.root / "data"
    for split in ("val", "train"):
        for path in sorted(data.glob(f"{split}*.parquet"))[:1]:
            try:
                import pyarrow.parquet as pq

                table = pq.read_table(path, columns=["text"])
                texts = [t for t in table.column("text").to_pylist()[:20] if t]
            except Exception:
                continue
            if texts:
                return texts[0][:SAMPLE_CHARS]
    return ""

"""Next-sentence-prediction pairs, following BERT's ``create_pretraining_data.py``.

Segment A is a run of consecutive sentences; segment B is either what really follows it
(label 0) or, with ``nsp_probability``, sentences from another random document (label 1),
the labels ``BertForPreTraining`` expects. Pairs are built once, from a seed.
"""

from __future__ import annotations

import random

import torch

from lmforge.core.errors import DataError
from lmforge.core.text import sentence_spans


# A sentence ends at . ! ? before whitespace (English; "Mr. Smith" splits too, a price we
# accept), at Chinese 。！？；… (no space follows them), or at a newline. Closing quotes and
# brackets stay with their sentence.
def split_sentences(text: str) -> list[str]:
    """Sentences of an English or Chinese text (``core.text.sentence_spans``), stripped."""
    return [text[s:e].strip() for s, e in sentence_spans(text)]


def _truncate_pair(a: list[int], b: list[int], max_tokens: int, rng: random.Random) -> None:
    """Trim the longer segment, from the front or back at random, until the pair fits."""
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def build_nsp_pairs(
    docs_token_sentences: list[list[list[int]]],
    block_size: int,
    cls_id: int,
    sep_id: int,
    nsp_probability: float,
    seed: int,
    pad_id: int = 0,
) -> dict[str, torch.Tensor]:
    """``[CLS] A [SEP] B [SEP]`` pairs padded to ``block_size``.

    Args:
        docs_token_sentences: per document, per sentence, its token ids (no specials).
        nsp_probability: share of pairs whose B comes from a random other document. As in
            BERT, a chunk of a single sentence always gets a random B, so the observed share
            is a little higher on documents of few, long sentences.

    Returns:
        ``input_ids``, ``token_type_ids`` (0 for CLS A SEP, 1 for B SEP, 0 on padding),
        ``attention_mask`` — all (N, block_size) — and ``next_sentence_label`` (N,).

    Raises:
        DataError: fewer than two non-empty documents, or block_size too small.
    """
    docs = [[s for s in doc if s] for doc in docs_token_sentences]
    docs = [d for d in docs if d]
    if len(docs) < 2:
        raise DataError(
            f"next-sentence prediction needs at least 2 non-empty documents, got {len(docs)}; "
            "add data or use pretrain.objective: mlm"
        )
    if block_size < 5:
        raise DataError(f"pretrain.block_size ({block_size}) must be at least 5 for mlm+nsp")
    rng = random.Random(seed)
    max_tokens = block_size - 3  # room for [CLS], [SEP], [SEP]
    rows: list[tuple[list[int], list[int], int]] = []
    for d, doc in enumerate(docs):
        chunk: list[list[int]] = []
        length, i = 0, 0
        while i < len(doc):
            chunk.append(doc[i])
            length += len(doc[i])
            if i == len(doc) - 1 or length >= max_tokens:
                a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                a = [t for s in chunk[:a_end] for t in s]
                if len(chunk) == 1 or rng.random() < nsp_probability:
                    label, b = 1, []
                    other = rng.randrange(len(docs) - 1)
                    other_doc = docs[other + (other >= d)]  # any document but this one
                    for s in other_doc[rng.randrange(len(other_doc)) :]:
                        b.extend(s)
                        if len(b) >= max_tokens - len(a):
                            break
                    i -= len(chunk) - a_end  # the unused sentences start the next chunk
                else:
                    label, b = 0, [t for s in chunk[a_end:] for t in s]
                _truncate_pair(a, b, max_tokens, rng)
                rows.append((a, b, label))
                chunk, length = [], 0
            i += 1
    n = len(rows)
    input_ids = torch.full((n, block_size), pad_id, dtype=torch.long)
    token_type_ids = torch.zeros((n, block_size), dtype=torch.long)
    attention_mask = torch.zeros((n, block_size), dtype=torch.long)
    for r, (a, b, _) in enumerate(rows):
        ids = [cls_id, *a, sep_id, *b, sep_id]
        input_ids[r, : len(ids)] = torch.tensor(ids)
        token_type_ids[r, len(a) + 2 : len(ids)] = 1
        attention_mask[r, : len(ids)] = 1
    labels = torch.tensor([label for *_, label in rows], dtype=torch.long)
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": attention_mask,
        "next_sentence_label": labels,
    }

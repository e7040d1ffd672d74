"""WordPiece training that gives the same vocabulary on every run.

``tokenizers`` (0.23) trains WordPiece as BPE with a ``##`` continuing-subword prefix. It
numbers the ``##`` alphabet (``##a``, ``##中``, ...) while iterating over the word counts, a
Rust ``HashMap`` with a per-process random seed, and breaks ties between equally frequent
merges by those ids (``Merge::cmp``; huggingface/tokenizers#1794, open pull request #2066).
So two trainings on the same text differed in their ids *and*, at full size, in their
tokens: 45-49 of the ~8,010 entries of the Chinese recipes' vocabulary, and 8,008 / 8,013 /
8,011 entries in three trainings, every later number of a run (pretraining loss, fine-tuned
F1) moving with them. One thread (``RAYON_NUM_THREADS=1``) does not help: it is hash order.

The trainer numbers special tokens first, in the order given, and never renumbers a token
it already holds. So a first pass with no room for merges lists the alphabet and the ``##``
alphabet, and the real training receives both after the special tokens, each sorted by code
point as the trainer sorts its alphabet: the order the trainer means to use, with every id,
and so every tie, fixed by the text alone. They then leave the added-token list (they are
ordinary vocabulary: ``##a`` in the input text must not be matched as a special token).
The first pass repeats the word counting (about 1 s per 3 million characters).

BPE needs none of this (no prefix, and the trainer sorts its alphabet). Unigram is not
fixed: its scores differ in their last digits between trainings, and the order of its pieces
with them, even on one thread.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer

PREFIX = "##"


def train_wordpiece(
    tok: Tokenizer, trainer: object, batches: Callable[[], Iterable[list[str]]], length: int
) -> Tokenizer:
    """``tok`` trained by the WordPiece ``trainer`` on ``batches()``, reproducibly."""
    from tokenizers import Tokenizer

    specials = [t.content for t in trainer.special_tokens]
    probe, vocab_size = Tokenizer.from_str(tok.to_str()), trainer.vocab_size
    trainer.vocab_size = 1  # the alphabet and the ## alphabet, no merges
    probe.train_from_iterator(batches(), trainer=trainer, length=length)
    chars = [t for t in probe.get_vocab() if t not in specials]
    alphabet = sorted(t for t in chars if len(t) == 1)  # as the trainer orders it
    pieces = sorted(t for t in chars if t.startswith(PREFIX) and len(t) == len(PREFIX) + 1)
    trainer.vocab_size = vocab_size
    trainer.special_tokens = [*specials, *alphabet, *pieces]
    try:
        tok.train_from_iterator(batches(), trainer=trainer, length=length)
    finally:
        trainer.special_tokens = specials
    raw = json.loads(tok.to_str())
    drop = {*alphabet, *pieces}
    raw["added_tokens"] = [t for t in raw["added_tokens"] if t["content"] not in drop]
    return Tokenizer.from_str(json.dumps(raw, ensure_ascii=False))

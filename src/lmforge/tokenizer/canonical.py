"""One WordPiece vocabulary per corpus: the ``tokenizers`` trainer's run-to-run ids removed.

Trained twice on the same text in two processes, ``tokenizers`` 0.23's WordPiece gives the
same vocabulary but not the same ids: it numbers the ``##`` alphabet it appends after the
merges in Rust ``HashMap`` order (a per-process random seed). One thread
(``RAYON_NUM_THREADS=1``) does not help: it is hash order, not threads. Token ids index a
model's embedding rows, so every later number of a run (pretraining loss, fine-tuned
accuracy) moved with them. ``canonical_vocabulary`` renumbers the vocabulary in an order that
depends only on its content; the ids never change how WordPiece splits text (greedy longest
match over the strings), so any fixed numbering is as good.

BPE was reproducible as it is. Unigram is not, and not fixed here: its trainer gives the
characters it must keep consecutive filler scores (-11.5470, -11.5471, ...) in hash order,
so which character scores what varies between runs, which can change a segmentation.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer


def canonical_vocabulary(tok: Tokenizer) -> Tokenizer:
    """``tok`` with its vocabulary in a content-determined order (WordPiece; others as they
    are)."""
    from tokenizers import Tokenizer

    raw = json.loads(tok.to_str())
    model = raw["model"]
    if model["type"] == "WordPiece":
        added = {t["content"] for t in raw.get("added_tokens") or []}  # special: ids stay
        prefix = model.get("continuing_subword_prefix", "##")
        model["vocab"] = _wordpiece(model["vocab"], prefix, added)
    else:
        return tok
    return Tokenizer.from_str(json.dumps(raw, ensure_ascii=False))


def _wordpiece(vocab: dict[str, int], prefix: str, keep: set[str]) -> dict[str, int]:
    """The single characters (with or without ``prefix``) take the ids single characters
    had, in string order; every other token, and those in ``keep``, keeps its id."""

    def single(token: str) -> bool:
        return len(token.removeprefix(prefix)) == 1 and token not in keep

    chars = sorted(t for t in vocab if single(t))
    ids = sorted(vocab[t] for t in chars)
    out = {t: i for t, i in vocab.items() if not single(t)}
    out.update(zip(chars, ids, strict=True))
    return dict(sorted(out.items(), key=lambda kv: kv[1]))

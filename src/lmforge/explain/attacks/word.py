"""Word-level attack, TextFooler-style (Jin et al. 2020): replace the most important words
with their nearest neighbours in an embedding space. TextFooler uses counter-fitted GloVe
vectors; nothing is downloaded here, so the neighbours come from the victim model's own input
embeddings (cosine similarity between whole-word tokens), and stop words are never replaced.
"""

from __future__ import annotations

import random
from typing import Any

from lmforge.core.errors import LmforgeError
from lmforge.explain.attacks.base import ATTACKS, Attack, word_spans
from lmforge.explain.classifier import Classifier

STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "he",
        "she",
        "they",
        "we",
        "you",
        "i",
        "me",
        "him",
        "her",
        "them",
        "us",
        "my",
        "your",
        "his",
        "their",
        "our",
        "not",
        "no",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "will",
        "would",
        "can",
        "could",
        "should",
        "may",
        "might",
        "must",
        "shall",
    ]
)
_MARKERS = ("Ġ", "▁")  # byte-level BPE and SentencePiece word-start markers


def _whole_words(tokenizer: Any) -> dict[int, str]:
    """Token id -> word, for tokens that are a whole alphabetic word (no sub-word pieces)."""
    specials = set(tokenizer.all_special_ids)
    vocab = tokenizer.get_vocab()
    marked = any(t.startswith(_MARKERS) for t in list(vocab)[:2000])
    out = {}
    for token, i in vocab.items():
        if i in specials:
            continue
        if marked:  # BPE/SentencePiece: a word is a token that starts one
            if not token.startswith(_MARKERS):
                continue
            token = token[1:]
        elif token.startswith("##"):
            continue
        if len(token) >= 2 and token.isalpha() and token.isascii():
            out[i] = token
    return out


def neighbour_table(clf: Classifier) -> tuple[dict[str, int], list[str], Any]:
    """(word -> row, row -> word, unit-norm embedding rows) of the victim's whole words."""
    if "word_neighbours" not in clf.cache:
        import torch

        words = _whole_words(clf.tokenizer)
        if not words:
            raise LmforgeError("word attack: the tokenizer has no whole-word tokens to swap in")
        ids = sorted(words)
        emb = clf.model.get_input_embeddings().weight.detach().float()[ids]
        emb = torch.nn.functional.normalize(emb, dim=-1)
        names = [words[i] for i in ids]
        index = {w.lower(): r for r, w in enumerate(names)}
        clf.cache["word_neighbours"] = (index, names, emb)
    return clf.cache["word_neighbours"]


def embedding_neighbours(clf: Classifier, word: str, n: int) -> list[str]:
    """The ``n`` whole words nearest to ``word`` (cosine), in ``word``'s capitalisation."""
    if word.lower() in STOP_WORDS:
        return []
    index, names, emb = neighbour_table(clf)
    row = index.get(word.lower())
    if row is None:
        return []
    sims = emb @ emb[row]
    out = []
    for r in sims.argsort(descending=True).tolist():
        cand = names[r]
        if cand.lower() == word.lower() or cand.lower() in STOP_WORDS:
            continue
        out.append(cand.capitalize() if word[0].isupper() else cand.lower())
        if len(out) == n:
            break
    return out


def _candidates(word: str, rng: random.Random, n: int, clf: Classifier | None) -> list[str]:
    if clf is None:
        raise LmforgeError("word attack: needs the victim model (its embeddings)")
    return embedding_neighbours(clf, word, n)


ATTACKS.add(
    "word",
    Attack(
        "word",
        "TextFooler-style synonym swap: embedding neighbours of the most important words",
        word_spans,
        _candidates,
    ),
)

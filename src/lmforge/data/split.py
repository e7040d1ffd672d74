"""Deterministic train/val/test assignment by content hash.

A document's split depends only on its own text, so adding documents never moves an existing
one to another split (no leakage between a model's old training data and new test data).
"""

from __future__ import annotations

import hashlib
from typing import Literal

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")


def hash_fraction(text: str, salt: str = "lmforge-split") -> float:
    """Map text to a uniform number in [0, 1) (first 8 bytes of BLAKE2b)."""
    digest = hashlib.blake2b(
        text.encode("utf-8"), digest_size=8, person=salt.encode()[:16]
    ).digest()
    return int.from_bytes(digest, "big") / 2**64


def assign_split(text: str, val: float, test: float) -> Split:
    u = hash_fraction(text)
    if u < test:
        return "test"
    if u < test + val:
        return "val"
    return "train"

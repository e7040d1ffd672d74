"""Chinese word segmentation for whole-word masking (Chinese BERT-wwm, Cui et al. 2019).

WordPiece gives one token per Chinese character, so "whole words" must come from a segmenter.
``rjieba`` (Rust jieba-rs, jieba's dictionary and HMM for unknown words) is the default:
measured side by side on People's Daily text it segments ~900k characters/s where snownlp's
pure-Python segmenter does 1.4-8k (``benchmarks/wwm_segmenters.py``), and it needs no model
load. snownlp stays selectable to reproduce older runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

Segmenter = Literal["rjieba", "snownlp"]
DEFAULT_SEGMENTER: Segmenter = "rjieba"


def _rjieba(text: str) -> list[str]:
    import rjieba  # Rust extension: a dictionary in the binary, loads in microseconds

    return rjieba.cut(text)


def _snownlp(text: str) -> list[str]:
    from snownlp import seg  # lazy: loads a model at import (about 2 s)

    return seg.single_seg(text)


SEGMENTERS: dict[str, Callable[[str], list[str]]] = {"rjieba": _rjieba, "snownlp": _snownlp}


def segment(text: str, segmenter: Segmenter = DEFAULT_SEGMENTER) -> list[str]:
    """``text`` cut into words whose concatenation is ``text`` (empty text: no words)."""
    return SEGMENTERS[segmenter](text) if text else []

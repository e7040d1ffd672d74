"""Masked-LM data (BERT): packed ``[CLS] ... [SEP]`` blocks, 80/10/10 masking, whole words.

Masks are drawn per batch from a caller-seeded generator (dynamic masking, as RoBERTa), so
each epoch sees new masks yet a batch is reproducible from its seed. Which tokens start a
word is worked out once at pack time (:func:`word_start_mask`), so whole-word masking costs
a ``cummax`` per batch.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import torch

from lmforge.core.errors import DataError
from lmforge.pretrain.clm import concat_with, too_few_tokens
from lmforge.pretrain.wwm import DEFAULT_SEGMENTER, Segmenter, segment

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# The CJK range of runs handed to the segmenter (snownlp's own ``re_zh``).
_HAN = re.compile(r"^[\u4e00-\u9fa5]+$")


def cls_sep_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, int]:
    """The ids that open and close a block: ``[CLS]``/``[SEP]``, else BOS/EOS.

    Byte-level BPE tokenizers (GPT-2 style) have no CLS/SEP; their BOS/EOS (one
    ``<|endoftext|>`` token here) plays both parts, as in RoBERTa's ``<s> ... </s>``.
    """
    cls = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if cls is None or sep is None:
        raise DataError(
            "the tokenizer has neither cls/sep nor bos/eos special tokens, which MLM blocks need; "
            "add them with tokenizer.special_tokens (e.g. {cls: '[CLS]', sep: '[SEP]'})"
        )
    return cls, sep


def pack_mlm(
    token_lists: list[list[int]], block_size: int, cls_id: int, sep_id: int
) -> torch.Tensor:
    """Blocks ``[CLS] + block_size-2 tokens + [SEP]`` cut from ``doc1 [SEP] doc2 [SEP] ...``.

    Like Hugging Face ``run_mlm`` without ``line_by_line``: documents are concatenated so no
    block is padded; the final partial block is dropped.

    Returns:
        LongTensor of shape (N, block_size).

    Raises:
        DataError: fewer tokens than one block.
    """
    if block_size < 3:
        raise DataError(f"pretrain.block_size ({block_size}) must be at least 3 for MLM")
    stream = concat_with(token_lists, sep_id)
    body = block_size - 2
    n_blocks = len(stream) // body
    if n_blocks == 0:
        raise too_few_tokens(len(stream), block_size)
    middle = stream[: n_blocks * body].view(n_blocks, body)
    cls = torch.full((n_blocks, 1), cls_id, dtype=torch.long)
    sep = torch.full((n_blocks, 1), sep_id, dtype=torch.long)
    return torch.cat([cls, middle, sep], dim=1)  # (N, T)


def mask_tokens(
    input_ids: torch.Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: set[int],
    probability: float,
    generator: torch.Generator,
    word_starts: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: choose ``probability`` of the tokens (or of the words, when
    ``word_starts`` is given, then every piece of each chosen word); of the chosen, 80%
    become ``mask_id``, 10% a random token, 10% stay. Special tokens are never chosen.

    Args:
        input_ids: (B, T) token ids; not modified.
        word_starts: (B, T) bool, True where a word begins (see :func:`word_start_mask`).

    Returns:
        ``(inputs, labels)``: labels hold the original id where chosen, -100 elsewhere.
    """
    shape, device = input_ids.shape, input_ids.device

    def draw(fn, *args) -> torch.Tensor:
        return fn(*args, shape, generator=generator, device=generator.device).to(device)

    # Every draw happens whatever the input, so the stream of random numbers (and thus the
    # batch) depends only on the generator's seed and the batch shape.
    choose, action = draw(torch.rand), draw(torch.rand)
    random_ids = draw(torch.randint, vocab_size)
    if word_starts is not None:
        # each token takes the draw of the first token of its word
        starts = word_starts.to(device).clone()
        starts[..., 0] = True
        pos = torch.arange(shape[-1], device=device).expand(shape)
        first = torch.where(starts, pos, 0).cummax(dim=-1).values  # (B, T)
        choose = choose.gather(-1, first)
    specials = torch.tensor(sorted(special_ids), dtype=input_ids.dtype, device=device)
    masked = (choose < probability) & ~torch.isin(input_ids, specials)
    labels = torch.where(masked, input_ids, -100)
    inputs = torch.where(masked & (action < 0.8), mask_id, input_ids)
    inputs = torch.where(masked & (action >= 0.8) & (action < 0.9), random_ids, inputs)
    return inputs, labels


def chinese_word_starts(tokens: list[str], segmenter: Segmenter = DEFAULT_SEGMENTER) -> list[bool]:
    """Which of these consecutive Chinese tokens begin a word, by a word segmenter.

    Chinese BERT-wwm masks whole segmented words rather than single characters. ``tokens``
    are pieces of Chinese characters (usually one each, a ``##`` or ``▁`` prefix ignored);
    a piece starts a word when its first character does. ``segmenter``: see
    :mod:`lmforge.pretrain.wwm` (rjieba, ~900k characters/s; snownlp, 1.4-8k).
    """
    pieces = [t.removeprefix("##").removeprefix("▁") for t in tokens]
    text = "".join(pieces)
    words = segment(text, segmenter)
    if sum(len(w) for w in words) != len(text):  # segmenter dropped or added characters
        return [True] * len(tokens)
    boundaries, offset = set(), 0
    for w in words:
        boundaries.add(offset)
        offset += len(w)
    starts, offset = [], 0
    for p in pieces:
        starts.append(offset in boundaries)
        offset += len(p)
    return starts


def _vocab_tables(tokenizer: PreTrainedTokenizerBase) -> tuple[np.ndarray, ...]:
    """Per vocabulary id: special?, begins a word?, ends a line?, Chinese piece?, space-marked?"""
    scheme = type(tokenizer.backend_tokenizer.model).__name__  # BPE | WordPiece | Unigram | ...
    size = len(tokenizer)
    tokens = [t or "" for t in tokenizer.convert_ids_to_tokens(list(range(size)))]
    special = np.zeros(size, dtype=bool)
    special[[i for i in tokenizer.all_special_ids if i < size]] = True
    if scheme == "WordPiece":
        prefix = getattr(tokenizer.backend_tokenizer.model, "continuing_subword_prefix", "##")
        begins = [not t.startswith(prefix) for t in tokens]
        marked = [False] * size
        newline = [False] * size
    elif scheme == "BPE":  # byte-level: Ġ is a space, Ċ a newline
        begins = marked = [t.startswith(("Ġ", "Ċ")) for t in tokens]
        newline = [t.endswith("Ċ") for t in tokens]
    elif scheme == "Unigram":
        begins = marked = [t.startswith("▁") for t in tokens]
        newline = [t.endswith("\n") for t in tokens]
    else:  # WordLevel: every token is a word
        begins, marked, newline = [True] * size, [False] * size, [False] * size
    chinese = [bool(_HAN.match(t.removeprefix("##").removeprefix("▁"))) for t in tokens]
    return special, np.array(begins), np.array(newline), np.array(chinese), np.array(marked)


def word_start_mask(
    tokenizer: PreTrainedTokenizerBase,
    input_ids: torch.Tensor,
    segment_chinese: bool = True,
    segmenter: Segmenter = DEFAULT_SEGMENTER,
) -> torch.Tensor:
    """(N, T) bool, True where a token begins a word, for whole-word masking.

    A token begins a word if it is special or follows a special token or a newline, or by
    its tokenizer's convention: WordPiece pieces not starting with ``##`` (every Chinese
    character, as BertNormalizer splits them), byte-level BPE tokens starting with ``Ġ``,
    Unigram pieces starting with ``▁``. With ``segment_chinese``, runs of Chinese tokens are
    regrouped into words by :func:`chinese_word_starts` with ``segmenter`` (run once, at
    pack time).
    Byte-level BPE splits Chinese characters into bytes, so there a run without spaces
    stays one word.
    """
    special, begins, newline, chinese, marked = _vocab_tables(tokenizer)
    ids = input_ids.clamp(0, len(special) - 1).numpy()
    starts = begins[ids] | special[ids]
    breaks = special[ids] | newline[ids]
    starts[:, 1:] |= breaks[:, :-1]
    starts[:, 0] = True
    if segment_chinese:
        tokens = tokenizer.convert_ids_to_tokens
        is_zh = chinese[ids]
        for row in np.flatnonzero(is_zh.any(axis=1)):
            runs, run = [], []
            for j in range(ids.shape[1]):
                # a run ends at a non-Chinese token or a space marker (Unigram ▁)
                if run and (not is_zh[row, j] or marked[ids[row, j]]):
                    runs.append(run)
                    run = []
                if is_zh[row, j]:
                    run.append(j)
            runs += [run] if run else []
            for run in runs:
                pieces = tokens(ids[row, run].tolist())
                starts[row, run] = chinese_word_starts(pieces, segmenter)
    return torch.from_numpy(starts)

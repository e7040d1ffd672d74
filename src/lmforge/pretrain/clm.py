"""Causal-LM data: documents joined by EOS and cut into fixed blocks (GPT-2, HF ``run_clm``),
or every window of the stream (nanoGPT's ``get_batch``).

Packing wastes no compute on padding; the model learns document boundaries from the EOS
token. Labels are the inputs themselves: Hugging Face causal-LM heads shift them by one.
"""

from __future__ import annotations

from itertools import chain

import numpy as np
import torch

from lmforge.core.errors import DataError


def concat_with(token_lists: list[list[int]], sep_id: int) -> torch.Tensor:
    """One stream ``doc1 sep doc2 sep ...`` (empty documents skipped) as a 1-D LongTensor."""
    docs = [t for t in token_lists if t]
    n = sum(len(t) for t in docs) + len(docs)
    flat = chain.from_iterable(chain(t, (sep_id,)) for t in docs)
    return torch.from_numpy(np.fromiter(flat, dtype=np.int64, count=n))


def too_few_tokens(n_tokens: int, block_size: int) -> DataError:
    return DataError(
        f"only {n_tokens} tokens after tokenizing the documents, fewer than one block of "
        f"pretrain.block_size={block_size}; lower pretrain.block_size or add more data"
    )


def pack_clm(token_lists: list[list[int]], block_size: int, eos_id: int) -> torch.Tensor:
    """Blocks of ``block_size`` tokens from ``doc1 EOS doc2 EOS ...``.

    As Hugging Face ``run_clm``'s ``group_texts``: the final partial block is dropped, so no
    padding is needed and every label is a real next token.

    Returns:
        LongTensor of shape (N, block_size).

    Raises:
        DataError: the documents hold fewer tokens than one block.
    """
    stream = concat_with(token_lists, eos_id)
    n_blocks = len(stream) // block_size
    if n_blocks == 0:
        raise too_few_tokens(len(stream), block_size)
    return stream[: n_blocks * block_size].view(n_blocks, block_size)  # (N, T)


def windows_clm(token_lists: list[list[int]], block_size: int, eos_id: int) -> torch.Tensor:
    """Every window of ``block_size`` tokens of ``doc1 EOS doc2 EOS ...``, one per start offset.

    nanoGPT's ``get_batch`` trains on windows at random offsets: each token is seen at every
    position of the context over training, where fixed blocks always cut the text at the same
    places. Drawing row indices of this (a strided view of the stream, no copy) at random is
    that sampling, and keeps batches a pure function of the indices.

    Returns:
        LongTensor view of shape (len(stream) - block_size + 1, block_size).

    Raises:
        DataError: the documents hold fewer tokens than one block.
    """
    stream = concat_with(token_lists, eos_id)
    if len(stream) < block_size:
        raise too_few_tokens(len(stream), block_size)
    return stream.unfold(0, block_size, 1)  # (N - T + 1, T), row i = stream[i : i + T]

"""Pretraining data for each objective: tokenize once, pack once, draw batches by index.

A batch is a pure function of ``(indices, seed)``: packing (and NSP pairing) happens once,
up front, and MLM masks come from a generator seeded by the caller. A training loop that
derives ``seed`` from ``(run seed, step, micro_step, rank)`` (``sampler.mix_seed``, or
``hash`` of that tuple of ints, stable across processes) replays an interrupted run exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import torch

from lmforge.core.errors import DataError
from lmforge.pretrain.clm import pack_clm, windows_clm
from lmforge.pretrain.config import Objective
from lmforge.pretrain.mlm import (
    chinese_word_starts,
    cls_sep_ids,
    mask_tokens,
    pack_mlm,
    word_start_mask,
)
from lmforge.pretrain.nsp import build_nsp_pairs, split_sentences

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "Blocks",
    "PretrainData",
    "build_nsp_pairs",
    "chinese_word_starts",
    "cls_sep_ids",
    "mask_tokens",
    "pack_clm",
    "pack_mlm",
    "split_sentences",
    "tokenize_texts",
    "word_start_mask",
]


def tokenize_texts(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], batch: int = 1000
) -> list[list[int]]:
    """Token ids of each text, without special tokens or truncation.

    Calls the Rust backend's ``encode_batch_fast`` (no offsets): on 20k Chinese reviews it
    took 1.6 s against 2.0 s for ``encode_batch`` and 2.2 s for ``tokenizer(...)``, and it
    skips the "longer than model_max_length" warning, since packing cuts long documents.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow (Python) tokenizer
        return [tokenizer.encode(t, add_special_tokens=False, verbose=False) for t in texts]
    if backend.truncation is not None or backend.padding is not None:
        from tokenizers import Tokenizer

        backend = Tokenizer.from_str(backend.to_str())  # a copy: leave the caller's alone
        backend.no_truncation()
        backend.no_padding()
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    ids: list[list[int]] = []
    for start in range(0, len(texts), batch):
        ids.extend(
            e.ids for e in encode(list(texts[start : start + batch]), add_special_tokens=False)
        )
    return ids


@dataclass(frozen=True)
class Blocks:
    """The packed sequences of one split; row i is example i."""

    input_ids: torch.Tensor  # (N, T)
    attention_mask: torch.Tensor | None = None  # (N, T); None: no padding
    token_type_ids: torch.Tensor | None = None  # (N, T), NSP segments A=0, B=1
    next_sentence_label: torch.Tensor | None = None  # (N,), 0 = is next, 1 = random
    word_starts: torch.Tensor | None = None  # (N, T) bool, for whole-word masking

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def _pack(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    objective: Objective,
    block_size: int,
    nsp_probability: float,
    seed: int,
    clm_windows: bool = False,
) -> Blocks:
    if objective == "clm":
        pack = windows_clm if clm_windows else pack_clm
        return Blocks(pack(tokenize_texts(tokenizer, texts), block_size, tokenizer.eos_token_id))
    cls_id, sep_id = cls_sep_ids(tokenizer)
    if objective in ("mlm", "electra"):  # electra: MLM masks, the generator fills them
        return Blocks(pack_mlm(tokenize_texts(tokenizer, texts), block_size, cls_id, sep_id))
    sentences = [split_sentences(t) for t in texts]
    flat = tokenize_texts(tokenizer, [s for doc in sentences for s in doc])
    docs, start = [], 0
    for doc in sentences:  # regroup the flat list of sentences by document
        docs.append(flat[start : start + len(doc)])
        start += len(doc)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else sep_id
    return Blocks(
        **build_nsp_pairs(docs, block_size, cls_id, sep_id, nsp_probability, seed, pad_id)
    )


@dataclass(frozen=True)
class PretrainData:
    """Train/val blocks for one objective, and what MLM masking needs."""

    objective: Objective
    train: Blocks
    val: Blocks | None = None
    mask_id: int | None = None
    vocab_size: int = 0
    special_ids: frozenset[int] = frozenset()
    mlm_probability: float = 0.15

    def batch(
        self,
        indices: Sequence[int] | torch.Tensor,
        seed: int,
        split: Literal["train", "val"] = "train",
    ) -> dict[str, torch.Tensor]:
        """Model inputs for rows ``indices`` of ``split`` (CPU tensors, keyword names of
        Hugging Face models). MLM masks are drawn from a generator seeded with ``seed``.
        """
        blocks = self.train if split == "train" else self.val
        if blocks is None:
            raise DataError("no validation data: the data stage wrote no 'val' split")
        idx = torch.as_tensor(indices, dtype=torch.long)
        input_ids = blocks.input_ids[idx]
        out = {"input_ids": input_ids}
        # packed blocks have no padding: passing no mask lets attention take its fast
        # (is_causal / unmasked) path, also under torch.compile
        if blocks.attention_mask is not None:
            out["attention_mask"] = blocks.attention_mask[idx]
        if self.objective == "clm":
            out["labels"] = input_ids.clone()
            return out
        generator = torch.Generator().manual_seed(seed & 0xFFFF_FFFF_FFFF_FFFF)
        out["input_ids"], out["labels"] = mask_tokens(
            input_ids,
            mask_id=self.mask_id,
            vocab_size=self.vocab_size,
            special_ids=set(self.special_ids),
            probability=self.mlm_probability,
            generator=generator,
            word_starts=blocks.word_starts[idx] if blocks.word_starts is not None else None,
        )
        if self.objective == "mlm+nsp":
            out["token_type_ids"] = blocks.token_type_ids[idx]
            out["next_sentence_label"] = blocks.next_sentence_label[idx]
        return out

    @classmethod
    def from_texts(
        cls,
        tokenizer: PreTrainedTokenizerBase,
        train_texts: Sequence[str],
        val_texts: Sequence[str] | None = None,
        *,
        objective: Objective = "clm",
        block_size: int = 128,
        mlm_probability: float = 0.15,
        whole_word_mask: bool = False,
        nsp_probability: float = 0.5,
        seed: int = 0,
        clm_windows: bool = False,
    ) -> PretrainData:
        """Tokenize and pack both splits (the fields match ``PretrainConfig``'s). With
        ``clm_windows`` the train split holds every window (``clm.windows_clm``); the val split
        keeps fixed blocks, so each held-out token is scored once.

        Raises:
            DataError: a split too small for one block, or a tokenizer lacking the special
                tokens the objective needs.
        """
        specials = set(tokenizer.all_special_ids)
        mask_id = None
        if objective != "clm":
            mask_id = tokenizer.mask_token_id
            if mask_id is None:
                raise DataError(
                    f"objective '{objective}' needs a mask token, which the tokenizer lacks; "
                    "train a wordpiece or unigram tokenizer, or add tokenizer.special_tokens.mask"
                )
        elif tokenizer.eos_token_id is None:
            raise DataError(
                "objective 'clm' needs an eos token between documents; add tokenizer.special_tokens.eos"
            )

        def pack(name: str, texts: Sequence[str], split_seed: int) -> Blocks:
            try:
                windows = clm_windows and name == "train"
                blocks = _pack(
                    tokenizer, texts, objective, block_size, nsp_probability, split_seed, windows
                )
            except DataError as e:
                raise DataError(f"'{name}' split: {e}") from None
            if whole_word_mask and objective != "clm":
                blocks = replace(blocks, word_starts=word_start_mask(tokenizer, blocks.input_ids))
            return blocks

        if objective != "clm":
            specials |= set(cls_sep_ids(tokenizer))
            if tokenizer.pad_token_id is not None:
                specials.add(tokenizer.pad_token_id)
        return cls(
            objective=objective,
            train=pack("train", train_texts, seed),
            val=pack("val", val_texts, seed + 1) if val_texts else None,
            mask_id=mask_id,
            vocab_size=len(tokenizer),
            special_ids=frozenset(specials),
            mlm_probability=mlm_probability,
        )

"""pretrain.clm_windows: nanoGPT's random-offset windows instead of fixed CLM blocks."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from lmforge.core.errors import DataError
from lmforge.pretrain.clm import pack_clm, windows_clm
from lmforge.pretrain.config import PretrainConfig
from lmforge.pretrain.stage import prepare_data


def test_windows_are_every_offset_of_the_stream_without_a_copy():
    docs = [[1, 2, 3, 4], [5, 6, 7]]
    windows = windows_clm(docs, block_size=3, eos_id=0)
    stream = [1, 2, 3, 4, 0, 5, 6, 7, 0]
    assert windows.tolist() == [stream[i : i + 3] for i in range(len(stream) - 2)]
    assert windows.untyped_storage().nbytes() == len(stream) * 8  # a view of the one stream
    assert pack_clm(docs, 3, 0).tolist() == [stream[0:3], stream[3:6], stream[6:9]]


def test_clm_windows_train_on_windows_and_score_fixed_val_blocks(run_dir):
    run = run_dir("bpe")
    tokenizer = AutoTokenizer.from_pretrained(run / "tokenizer")
    blocks = PretrainConfig(block_size=32, max_steps=4, warmup_steps=1)
    windows = blocks.model_copy(update={"clm_windows": True})
    fixed = prepare_data(blocks, tokenizer, run / "data", 0)
    sliding = prepare_data(windows, tokenizer, run / "data", 0)
    n_tokens = fixed.train.input_ids.numel()
    assert len(sliding.train) > 30 * len(fixed.train)  # one window per token offset
    assert len(sliding.train) >= n_tokens - 31
    assert torch.equal(sliding.val.input_ids, fixed.val.input_ids)  # held-out scored once
    batch = sliding.batch([0, 1], 0, "train")
    assert torch.equal(batch["input_ids"][1, :-1], batch["input_ids"][0, 1:])
    assert torch.equal(batch["labels"], batch["input_ids"])


def test_windows_need_one_block_of_text():
    with pytest.raises(DataError, match="block_size=8"):
        windows_clm([[1, 2, 3]], block_size=8, eos_id=0)

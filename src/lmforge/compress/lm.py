"""Compressing a pretrain stage's causal LM (no task head, no finetune section).

The student trains on the run's own corpus: the data stage's train split, tokenized and packed
into EOS-joined blocks exactly as the pretrain stage packs ``clm`` data
(``pretrain.objectives.PretrainData``). Every artefact is scored by perplexity on the held-out
split (the data stage's test split, else its validation split) cut the same way, so each
held-out token is predicted once, by every artefact alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.compress.artifact import Compressed, artifact_format
from lmforge.core.errors import DataError, LmforgeError

DEFAULT_BLOCK = 128  # tokens per block when the source's manifest records no block size


def is_causal_lm(art: Compressed) -> bool:
    """A model with no task whose manifest says it was pretrained with the clm objective."""
    m = art.manifest
    return m is not None and m.task is None and m.objective == "clm"


@dataclass(frozen=True)
class BlockSplit:
    """One split of packed blocks in the shape ``finetune.train.fit`` reads: ``len`` and
    ``batch(indices)`` -> model inputs with ``labels`` (the inputs; the loss shifts them)."""

    data: Any  # a PretrainData
    split: str  # "train" or "val"

    def __len__(self) -> int:
        return len(self.data.train if self.split == "train" else self.data.val)

    def batch(self, indices: Any) -> dict[str, Any]:
        return self.data.batch(indices, 0, self.split)  # clm: no masks drawn, seed unused


def _texts(data_dir: Path, split: str) -> list[str]:
    from lmforge.data.shards import read_split

    try:
        return [d.text for d in read_split(data_dir, split) if d.text]
    except DataError:  # the data stage wrote no such split
        return []


def corpus(ctx: Any, source: Compressed, max_blocks: int | None) -> tuple[BlockSplit, BlockSplit]:
    """(train, held-out) blocks of the run's corpus with the source's tokenizer and block size.

    Raises:
        DataError: no held-out split with one block of text.
    """
    from lmforge.pretrain.objectives import PretrainData
    from lmforge.tasks.base import load_tokenizer

    data_dir = ctx.stage_dir("data")
    if data_dir is None:
        raise LmforgeError("compress: distilling a pretrained LM needs the data stage's output")
    tokenizer = load_tokenizer(source.path)
    block = (source.manifest.max_length if source.manifest else None) or DEFAULT_BLOCK
    held_name = "test" if _texts(data_dir, "test") else "val"
    try:
        data = PretrainData.from_texts(
            tokenizer,
            _texts(data_dir, "train"),
            _texts(data_dir, held_name),
            objective="clm",
            block_size=block,
            seed=ctx.recipe.seed,
        )
    except DataError as e:
        raise DataError(f"compress (held-out {held_name} / train split): {e}") from None
    if data.val is None:
        raise DataError(
            "compress: the data stage wrote no test or val split to score perplexity on; set "
            "data.split.test (or val) above 0"
        )
    if max_blocks is not None and len(data.val) > max_blocks:
        import dataclasses

        from lmforge.pretrain.objectives import Blocks

        data = dataclasses.replace(data, val=Blocks(data.val.input_ids[:max_blocks]))
    return BlockSplit(data, "train"), BlockSplit(data, "val")


def load_lm(path: Path) -> Any:
    """The causal LM of an artefact: transformers weights, or a GGUF file dequantized to fp32."""
    from transformers import AutoModelForCausalLM

    from lmforge.compress.artifact import _load_gguf

    if artifact_format(path).format == "gguf":
        return _load_gguf(path)
    return AutoModelForCausalLM.from_pretrained(path).float().eval()


def _next_token_rows(model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    """(logits at t, token at t + 1) over every position of the blocks: (N, V) and (N,)."""
    logits = model(input_ids=batch["input_ids"]).logits[:, :-1].float()  # (B, T-1, V)
    return logits.reshape(-1, logits.size(-1)), batch["input_ids"][:, 1:].reshape(-1)


def perplexity(model: Any, held: BlockSplit, batch_size: int = 16) -> dict[str, float]:
    """exp(mean next-token cross-entropy) over every held-out token (summed, divided once)."""
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(held), batch_size):
            rows, targets = _next_token_rows(
                model, held.batch(list(range(start, min(start + batch_size, len(held)))))
            )
            total += F.cross_entropy(rows, targets, reduction="sum").item()
            count += targets.numel()
    loss = total / count
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": count}


def mean_kl(student: Any, teacher: Any, held: BlockSplit, batch_size: int = 16) -> float:
    """Mean per-token KL(teacher || student) of the next-token distributions (T = 1), nats."""
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(held), batch_size):
            batch = held.batch(list(range(start, min(start + batch_size, len(held)))))
            s, _ = _next_token_rows(student, batch)
            t, _ = _next_token_rows(teacher, batch)
            total += F.kl_div(
                F.log_softmax(s, -1), F.log_softmax(t, -1), reduction="sum", log_target=True
            ).item()
            count += s.shape[0]
    return total / count


def lm_quality(path: Path, held: BlockSplit) -> dict[str, Any]:
    """Held-out perplexity (the quality; lower is better), parameters and size on disk."""
    import time

    from lmforge.compress.score import count_params, footprint

    model = load_lm(path)
    t0 = time.perf_counter()
    scores = perplexity(model, held)
    seconds = time.perf_counter() - t0
    params = footprint(path)["params"] if artifact_format(path).format == "gguf" else None
    return {
        "perplexity": scores["perplexity"],
        "loss": scores["loss"],
        "quality_metric": "perplexity",
        "quality": scores["perplexity"],
        "params": params if params is not None else count_params(model, path),
        "size_mb": footprint(path)["size_mb"],
        "predict_seconds": seconds,
    }


def lm_batches(held: BlockSplit, sizes: list[int]) -> dict[int, dict[str, Any]]:
    """Held-out blocks at each batch size (cycled when fewer), the same for every artefact."""
    return {
        size: {"input_ids": held.batch([i % len(held) for i in range(size)])["input_ids"]}
        for size in sizes
    }

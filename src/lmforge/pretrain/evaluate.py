"""Validation during pretraining: token-weighted loss, perplexity, MLM and NSP accuracy.

The loss is recomputed from the logits as a sum over tokens and divided once at the end, so
the number does not depend on how the val set is cut into batches or processes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from lmforge.core.distributed import DistInfo
from lmforge.pretrain.config import PretrainConfig
from lmforge.pretrain.sampler import mix_seed

if TYPE_CHECKING:
    from lmforge.pretrain.objectives import PretrainData

EVAL_STREAM = 2**31 - 1  # keeps eval masks apart from every training step's masks


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    val_batch: Callable[[torch.Tensor, int], dict[str, torch.Tensor]],
    num_val: int,
    cfg: PretrainConfig,
    device: torch.device,
    dist: DistInfo,
    seed: int,
) -> dict[str, float]:
    per_rank = cfg.batch_size // dist.world_size
    # loss, tokens, correct, nsp ok, nsp n; electra: rtd bce, rtd ok, rtd n, replaced
    sums = torch.zeros(9, dtype=torch.float64, device=device)
    for b in range(cfg.eval_batches):
        start = b * cfg.batch_size + dist.rank * per_rank
        if start >= num_val:
            break
        idx = torch.arange(start, min(start + per_rank, num_val))
        batch = {
            k: v.to(device)
            for k, v in val_batch(idx, mix_seed(seed, EVAL_STREAM, b, dist.rank)).items()
        }
        out = model(**batch)
        labels = batch["labels"]
        if cfg.objective == "clm":
            logits, labels = out.logits[:, :-1], labels[:, 1:]  # predict the next token
        else:
            logits = out.logits if hasattr(out, "logits") else out.prediction_logits
            if logits.dim() == 2:  # sparse prediction: one row per masked position, in order
                labels = labels[labels != -100]
        logits = logits.float()
        mask = labels != -100
        sums[0] += F.cross_entropy(
            logits.reshape(-1, logits.size(-1)),
            labels.reshape(-1),
            ignore_index=-100,
            reduction="sum",
        )
        sums[1] += mask.sum()
        sums[2] += ((logits.argmax(-1) == labels) & mask).sum()
        if "next_sentence_label" in batch:
            sums[3] += (
                out.seq_relationship_logits.argmax(-1) == batch["next_sentence_label"]
            ).sum()
            sums[4] += batch["next_sentence_label"].numel()
        if getattr(out, "rtd_logits", None) is not None:  # electra's discriminator
            scored, replaced = out.rtd_mask, out.replaced
            rtd = out.rtd_logits.float()[scored]
            sums[5] += F.binary_cross_entropy_with_logits(
                rtd, replaced[scored].float(), reduction="sum"
            )
            sums[6] += ((rtd > 0) == replaced[scored]).sum()
            sums[7] += scored.sum()
            sums[8] += replaced[scored].sum()
    if dist.enabled:
        torch.distributed.all_reduce(sums)
    loss_sum, tokens, correct, nsp_ok, nsp_n, rtd_loss, rtd_ok, rtd_n, replaced = sums.tolist()
    if tokens == 0:
        return {}
    loss = loss_sum / tokens
    out_metrics = {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}
    if cfg.objective != "clm":
        out_metrics["mlm_accuracy"] = correct / tokens
    else:
        out_metrics["token_accuracy"] = correct / tokens
    if nsp_n:
        out_metrics["nsp_accuracy"] = nsp_ok / nsp_n
    if rtd_n:  # the baseline calls every token original
        out_metrics["rtd_loss"] = rtd_loss / rtd_n
        out_metrics["rtd_accuracy"] = rtd_ok / rtd_n
        out_metrics["rtd_baseline_accuracy"] = 1 - replaced / rtd_n
    return out_metrics


def unigram_loss(data: PretrainData, n_blocks: int) -> float | None:
    """Val loss (nats/token) of the train split's token frequencies (add-one smoothed).

    The score of a model that ignores context, next to ``val_loss`` in the summary: a model
    no better than this has learned token frequencies only. Over the same first ``n_blocks``
    val blocks as ``evaluate``; CLM scores every next token, MLM the tokens masking can pick
    (MLM masks a random 15% of them, so the expectation is the same).
    """
    if data.val is None:
        return None
    train, val = data.train.input_ids, data.val.input_ids[:n_blocks]
    if data.objective == "clm":
        val = val[:, 1:]  # the first token of a block is never a target
    train, val = train.flatten(), val.flatten()
    if data.objective != "clm":
        specials = torch.tensor(sorted(data.special_ids), dtype=train.dtype)
        train, val = train[~torch.isin(train, specials)], val[~torch.isin(val, specials)]
    if not len(val):
        return None
    vocab = max(data.vocab_size, int(train.max()) + 1, int(val.max()) + 1)
    counts = torch.bincount(train, minlength=vocab).double() + 1
    return float(-(counts / counts.sum()).log()[val].mean())

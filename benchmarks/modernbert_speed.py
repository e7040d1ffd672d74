"""Step time of pretrain-zh's ModernBERT: sparse vs dense MLM head, and bf16 vs fp32 fine-tuning.

Side by side in one process, on the recipe's model (``modernbert-tiny`` at 4 x 256, GeGLU 683,
the recipe's 8,013-token vocabulary):

- pretraining (16 x 128 tokens, 15% masked): the stock ``ModernBertForMaskedLM`` step (dense
  head, what transformers runs by default) against the same model with ``sparse_prediction``
  on, as the pretrain stage trains it; in bf16 autocast and in fp32;
- fine-tuning (32 x 110 tokens, as ner-zh's and sentiment-zh's batches): a token-classification
  step in fp32 against bf16 autocast (``finetune.precision``).

Each row is the median of ``--steps`` timed steps after 5 warm-up steps (forward, backward,
AdamW). Random token ids: the step time does not depend on the text.

    python benchmarks/modernbert_speed.py [--threads 2] [--steps 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

VOCAB = 8013  # pretrain-zh's WordPiece


def model_spec():  # noqa: ANN201 - lmforge's ModelSpec
    from lmforge.models.spec import ModelSpec

    return ModelSpec(
        preset="modernbert-tiny", layers=4, heads=4, hidden=256, intermediate=683, context=128
    )


def step_seconds(model: torch.nn.Module, batch: dict, precision: str, steps: int) -> float:
    from lmforge.core.precision import autocast_context

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    amp = autocast_context(precision, torch.device("cpu"))
    times = []
    for i in range(steps + 5):
        t0 = time.perf_counter()
        with amp:
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= 5:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def pretraining(steps: int) -> list[tuple[str, float]]:
    from lmforge.models import build_model

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, VOCAB, (16, 128), generator=g)
    labels = torch.where(torch.rand(ids.shape, generator=g) < 0.15, ids, -100)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    rows = []
    for precision in ("bf16", "fp32"):
        for sparse in (False, True):
            torch.manual_seed(0)
            model = build_model(model_spec(), "mlm", VOCAB, {"pad": 0, "cls": 2, "sep": 3})
            model.sparse_prediction = sparse
            name = f"pretrain MLM {precision}, {'sparse' if sparse else 'dense'} head"
            rows.append((name, step_seconds(model.train(), batch, precision, steps)))
    return rows


def finetuning(steps: int) -> list[tuple[str, float]]:
    from transformers import ModernBertForTokenClassification

    from lmforge.models.build import build_config

    config = build_config(model_spec(), "mlm", VOCAB, {"pad": 0, "cls": 2, "sep": 3})
    config.num_labels = 7  # BIO over PER/LOC/ORG
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, VOCAB, (32, 110), generator=g)
    labels = torch.randint(0, 7, ids.shape, generator=g)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    rows = []
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = ModernBertForTokenClassification(config).train()
        rows.append((f"fine-tune NER {precision}", step_seconds(model, batch, precision, steps)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pre, fine = pretraining(args.steps), finetuning(args.steps)
    print(f"| step ({args.threads} threads, median of {args.steps}) | seconds | speed-up |")
    print("|---|---:|---:|")
    for rows in (pre[:2], pre[2:], fine):  # each pair against its first row
        for name, seconds in rows:
            print(f"| {name} | {seconds:.3f} | {rows[0][1] / seconds:.2f}x |")


if __name__ == "__main__":
    main()

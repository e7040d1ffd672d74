"""Step time of pretrain-zh's ModernBERT: sparse vs dense MLM head, and bf16 vs fp32 fine-tuning.

Side by side in one process, on the recipe's model (``modernbert-tiny`` at 4 x 256, GeGLU 683,
the recipe's 8,013-token vocabulary):

- pretraining (16 x 128 tokens, 15% masked): the stock ``ModernBertForMaskedLM`` step (dense
  head, what transformers runs by default) against the same model with ``sparse_prediction``
  on, as the pretrain stage trains it; in bf16 autocast and in fp32;
- fine-tuning (32 x 110 tokens, as ner-zh's and sentiment-zh's batches): a token-classification
  step in fp32 against bf16 autocast (``finetune.precision``);
- attention in bf16 (``--attention``): PyTorch's fused SDPA kernel, what transformers runs by
  default, against transformers' eager attention, which lmforge trains with in bf16 on a CPU
  (``core.precision.cpu_bf16_attention``), for the models the recipes train: the ModernBERT
  steps above, translate's bert2gpt-mini (32 pairs of 20 -> 25 tokens), and the GPT-2 and BERT
  shapes of pretrain-gpt-shakespeare (12 x 64) and pretrain-bert-wiki (32 x 128).

Each row is the median of ``--steps`` timed steps after 5 warm-up steps (forward, backward,
AdamW). Random token ids: the step time does not depend on the text.

    python benchmarks/modernbert_speed.py [--threads 2] [--steps 20] [--attention]
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


def attention(steps: int) -> list[tuple[str, float]]:
    """bf16 step time with SDPA, then eager attention, for each model (pairs of rows)."""
    from transformers import ModernBertForTokenClassification

    from lmforge.models import build_model
    from lmforge.models.build import build_config
    from lmforge.models.spec import ModelSpec
    from lmforge.tasks.translation import _bert2gpt

    g = torch.Generator().manual_seed(0)

    def mlm_batch(b: int, t: int) -> dict:
        ids = torch.randint(5, VOCAB, (b, t), generator=g)
        labels = torch.where(torch.rand(ids.shape, generator=g) < 0.15, ids, -100)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}

    specials = {"pad": 0, "cls": 2, "sep": 3, "bos": 1, "eos": 1}

    def modernbert_mlm() -> torch.nn.Module:
        model = build_model(model_spec(), "mlm", VOCAB, specials)
        model.sparse_prediction = True
        return model

    def ner() -> torch.nn.Module:
        config = build_config(model_spec(), "mlm", VOCAB, specials)
        config.num_labels = 7
        return ModernBertForTokenClassification(config)

    class Tok:  # what bert2gpt is sized by: special ids and the vocabulary's length
        bos_token_id = eos_token_id = 0
        pad_token_id = 1

        def __len__(self) -> int:
            return 8000

    def bert2gpt() -> torch.nn.Module:
        from lmforge.models.presets import ENCODER_DECODER_PRESETS

        return _bert2gpt(ENCODER_DECODER_PRESETS["bert2gpt-mini"], Tok())

    src = torch.randint(5, 8000, (32, 20), generator=g)
    pairs = {"input_ids": src, "attention_mask": torch.ones_like(src),
             "labels": torch.randint(5, 8000, (32, 25), generator=g)}  # fmt: skip
    tags = torch.randint(5, VOCAB, (32, 110), generator=g)
    cases = [
        ("ModernBERT MLM 16 x 128 (pretrain-zh)", modernbert_mlm, mlm_batch(16, 128)),
        ("ModernBERT NER 32 x 110 (ner-zh)", ner, {"input_ids": tags,
            "attention_mask": torch.ones_like(tags),
            "labels": torch.randint(0, 7, tags.shape, generator=g)}),  # fmt: skip
        ("bert2gpt-mini 32 x 20 -> 25 (translate)", bert2gpt, pairs),
        ("GPT-2 4 x 128, 12 x 64 (pretrain-gpt-shakespeare)",
         lambda: build_model(ModelSpec(preset="gpt-tiny", layers=4, heads=4, hidden=128,
                                       context=64), "clm", 8000, specials),
         {"input_ids": (x := torch.randint(5, 8000, (12, 64), generator=g)), "labels": x}),
        ("BERT 4 x 256 MLM 32 x 128 (pretrain-bert-wiki)",
         lambda: build_model(ModelSpec(preset="bert-tiny", layers=4, heads=4, hidden=256,
                                       context=128), "mlm", VOCAB, specials),
         mlm_batch(32, 128)),
    ]  # fmt: skip
    rows = []
    for name, build, batch in cases:
        for impl in ("sdpa", "eager"):
            torch.manual_seed(0)
            model = build()
            model.set_attn_implementation(impl)
            rows.append((f"{name}, {impl}", step_seconds(model.train(), batch, "bf16", steps)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--attention", action="store_true", help="SDPA vs eager in bf16 only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.attention:
        rows = attention(args.steps)
        groups = [rows[i : i + 2] for i in range(0, len(rows), 2)]
    else:
        pre, fine = pretraining(args.steps), finetuning(args.steps)
        groups = [pre[:2], pre[2:], fine]
    print(f"| step ({args.threads} threads, median of {args.steps}) | seconds | speed-up |")
    print("|---|---:|---:|")
    for rows in groups:  # each pair against its first row
        for name, seconds in rows:
            print(f"| {name} | {seconds:.3f} | {rows[0][1] / seconds:.2f}x |")


if __name__ == "__main__":
    main()

"""Attention-head pruning side by side: which importance score keeps accuracy, and how latency
falls with the heads removed. One process, one thread, both halves printed as tables.

1. Importance (tiny, trained): a 2-layer x 4-head Llama classifier trained on a task that
   needs attention (which of two marker tokens comes first), for several seeds; half and
   three quarters of each layer's heads removed by each score (``gradient``, ``ablation``,
   ``activation``) and at random; test accuracy, no recovery fine-tuning.
2. Latency (random weights, real shapes): lmforge's ``llama-small`` preset (8 x 6 heads,
   multi-head attention) and SmolLM2-135M's shape cut to 8 layers (9 query heads over 3
   key/value heads), heads removed with ``compress.heads``; forward p50 at batch 1 and 8 x
   128 tokens, source and pruned timed alternately so machine noise hits both alike.

    python benchmarks/prune_heads.py [--seeds 5] [--repeats 10]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

# benchmarks/peft.py would shadow the peft library lmforge imports: drop this folder from the path
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import torch  # noqa: E402

from lmforge.compress import heads as H  # noqa: E402

SEQ, VOCAB = 12, 64


def order_task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random tokens with markers 2 and 3 once each; label 1 when 2 comes first."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB, (n, SEQ), generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    first = torch.randint(0, SEQ // 2, (n,), generator=g)
    second = torch.randint(SEQ // 2, SEQ, (n,), generator=g)
    ids[torch.arange(n), first] = torch.where(y == 1, 2, 3)
    ids[torch.arange(n), second] = torch.where(y == 1, 3, 2)
    return ids, y


def trained_classifier(seed: int) -> tuple[torch.nn.Module, list[dict], tuple]:
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=64,
        max_position_embeddings=SEQ,
        pad_token_id=0,
        num_labels=2,
    )
    model = LlamaForSequenceClassification(config).train()
    ids, y = order_task(2048, 100 + seed)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for step in range(120):
        i = torch.randint(0, len(ids), (32,), generator=torch.Generator().manual_seed(step))
        loss = model(input_ids=ids[i], labels=y[i]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    batches = [
        {"input_ids": ids[i : i + 32], "attention_mask": torch.ones_like(ids[i : i + 32]),
         "labels": y[i : i + 32]}
        for i in range(0, 256, 32)
    ]  # fmt: skip
    return model.eval(), batches, order_task(512, 200 + seed)


def accuracy(model: torch.nn.Module, ids: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(input_ids=ids).logits.argmax(-1) == y).float().mean().item()


def importance_table(seeds: int) -> None:
    names = [*H.SCORERS, "random"]
    rows: dict[tuple[str, float], list[float]] = {}
    sources = []
    for seed in range(seeds):
        model, batches, test = trained_classifier(seed)
        sources.append(accuracy(model, *test))
        g = torch.Generator().manual_seed(seed)
        scores = {n: H.SCORERS[n](model, batches) for n in H.SCORERS}
        scores["random"] = torch.rand(2, 4, generator=g)
        for sparsity in (0.5, 0.75):
            for name in names:
                pruned = copy.deepcopy(model)
                keep = H.heads_to_keep(scores[name], H.head_layout(pruned), sparsity)
                H.remove_heads(pruned, keep)
                rows.setdefault((name, sparsity), []).append(accuracy(pruned, *test))
    print(f"\nImportance: test accuracy after removing heads ({seeds} seeds, no recovery)")
    print(f"source: mean {statistics.mean(sources):.3f}  per seed {fmt(sources)}")
    print("| score | removed | mean accuracy | per seed |\n|---|---|---|---|")
    for (name, sparsity), accs in rows.items():
        print(f"| {name} | {sparsity:.0%} | {statistics.mean(accs):.3f} | {fmt(accs)} |")


def fmt(values: list[float]) -> str:
    return " ".join(f"{v:.3f}" for v in values)


def shapes() -> dict[str, object]:
    from transformers import LlamaConfig

    from lmforge.models.build import build_config
    from lmforge.models.spec import ModelSpec

    small = build_config(ModelSpec(preset="llama-small"), "clm", 8000, {})
    smol = LlamaConfig(  # SmolLM2-135M's shape, 8 of its 30 layers
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=8,
        num_attention_heads=9,
        num_key_value_heads=3,
        tie_word_embeddings=True,
    )
    return {"llama-small (MHA 6 heads)": small, "SmolLM2-135M shape, 8 layers (GQA 9/3)": smol}


def p50_pair(a: torch.nn.Module, b: torch.nn.Module, ids: torch.Tensor, repeats: int):
    times: dict[int, list[float]] = {0: [], 1: []}
    with torch.no_grad():
        for m in (a, b):
            m(input_ids=ids)  # warm-up
        for _ in range(repeats):
            for k, m in enumerate((a, b)):
                t0 = time.perf_counter()
                m(input_ids=ids)
                times[k].append(time.perf_counter() - t0)
    return statistics.median(times[0]) * 1000, statistics.median(times[1]) * 1000


def latency_table(repeats: int) -> None:
    from transformers import AutoModelForCausalLM

    print("\nLatency: forward p50 (ms), 128 tokens, 1 thread; source vs heads removed")
    print("| model | heads kept | attention params | all params | b1 ms | b8 ms | b1 speed-up |"
          " b8 speed-up |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
    for label, config in shapes().items():
        torch.manual_seed(0)
        source = AutoModelForCausalLM.from_config(config).eval()
        layout = H.head_layout(source)
        for sparsity in (0.34, 0.67):
            pruned = copy.deepcopy(source)
            keep = H.heads_to_keep(torch.rand(config.num_hidden_layers, layout.heads), layout,
                                   sparsity)  # fmt: skip
            H.remove_heads(pruned, keep)
            attn = [sum(p.numel() for p in H.attention_modules(m)[0].parameters())
                    for m in (source, pruned)]  # fmt: skip
            total = [sum(p.numel() for p in m.parameters()) for m in (source, pruned)]
            ms = {}
            for batch in (1, 8):
                ids = torch.randint(0, config.vocab_size, (batch, 128))
                ms[batch] = p50_pair(source, pruned, ids, repeats)
            print(
                f"| {label} | {len(keep[0])}/{layout.heads} | {attn[1] / attn[0]:.2f} | "
                f"{total[1] / total[0]:.2f} | {ms[1][0]:.1f} -> {ms[1][1]:.1f} | "
                f"{ms[8][0]:.1f} -> {ms[8][1]:.1f} | {ms[1][0] / ms[1][1]:.2f}x | "
                f"{ms[8][0] / ms[8][1]:.2f}x |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    importance_table(args.seeds)
    latency_table(args.repeats)


if __name__ == "__main__":
    main()

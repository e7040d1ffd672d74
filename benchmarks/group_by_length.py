"""Fine-tuning step time with and without ``finetune.group_by_length``, on a finished run.

The run directory's own model (its ``finetune/model``), tokenizer and training split, so the
batches have the recipe's real lengths (``translate``: zh->en pairs of 5-64 tokens; ``ner-zh``:
People's Daily paragraphs up to 128 characters). Both batch plans are epoch 1's of
``lmforge.finetune.train.epoch_batches`` with the recipe's seed and batch size: random order
(what ``fit`` does by default), and length-grouped. Each row times the first ``--steps``
batches of its plan (a random sample of the epoch's batches; forward, backward, AdamW, in the
recipe's ``finetune.precision``) after 3 warm-up steps; the epoch estimate is the mean step
time x the epoch's batch count. The padding share counts the whole epoch.

    python benchmarks/group_by_length.py runs/translate [--steps 40] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def load(run: Path) -> tuple:
    """The run's recipe, its fine-tuned model, and the encoded training split."""
    import yaml

    from lmforge.data.shards import read_split
    from lmforge.recipe import parse_recipe
    from lmforge.tasks import TASKS
    from lmforge.tasks.artifact import load_artifact

    recipe = parse_recipe(yaml.safe_load((run / "recipe.yaml").read_text()), str(run))
    cfg = recipe.finetune
    task = TASKS.get(cfg.task)
    art = load_artifact(run / "finetune" / "model", trainable=True)
    docs = read_split(run / "data", "train")
    if cfg.data.source is not None:
        docs = [d for d in docs if d.meta.get("source") == cfg.data.source]
    train = task.encode(art.processor, docs, art.info, cfg, "train")
    return recipe, art.model, train


def padding_share(batches: list[list[int]], lengths: list[int]) -> float:
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1 - sum(lengths) / padded


def time_steps(model, train, batches, precision: str, steps: int) -> float:  # noqa: ANN001
    from lmforge.core.precision import autocast_context

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    amp = autocast_context(precision, torch.device("cpu"))
    model.train()
    times = []
    for i, idx in enumerate(batches[: steps + 3]):
        t0 = time.perf_counter()
        with amp:
            loss = model(**train.batch(idx)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return sum(times) / len(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a finished run directory (lmforge run ... --out)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from lmforge.finetune.train import epoch_batches, feature_length

    recipe, model, train = load(args.run)
    cfg = recipe.finetune
    lengths = [feature_length(f) for f in train.features]
    print(
        f"{args.run}: {cfg.task}, {len(train)} training examples, batch {cfg.batch_size}, "
        f"{cfg.precision}, {args.threads} threads, mean length {sum(lengths) / len(lengths):.1f}"
    )
    rows = []
    for name, lens in (("random order (default)", None), ("group_by_length", lengths)):
        generator = torch.Generator().manual_seed(recipe.seed)
        batches = epoch_batches(len(train), cfg.batch_size, generator, lens)
        step = time_steps(model, train, batches, cfg.precision, args.steps)
        rows.append((name, padding_share(batches, lengths), step, step * len(batches)))
    print(f"{'batches':<24} {'padding':>8} {'s/step':>8} {'epoch s':>8}")
    for name, pad, step, epoch in rows:
        print(f"{name:<24} {pad:>8.1%} {step:>8.3f} {epoch:>8.0f}")
    print(f"speed-up of group_by_length: {rows[0][2] / rows[1][2]:.2f}x")


if __name__ == "__main__":
    main()

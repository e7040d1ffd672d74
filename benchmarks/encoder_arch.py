"""Post-LN BERT against pre-LN ModernBERT as pretrain-zh's encoder: masked-LM quality per step.

Both sides are ``lmforge run pretrain-zh`` (data, tokenizer, block, batch, lr, schedule,
steps and seed the recipe's own) with only ``pretrain.model`` changed: the recipe's
``modernbert-tiny`` (4 layers x 256, GeGLU 683 wide) against ``bert-tiny`` at the same width
and depth with BERT's 1,024-wide MLP (equal weights to 1%). Each side prints validation MLM
accuracy at every evaluation and its training seconds; the copy + frequency reference (what
a model that ignores context scores) is the accuracy BERT sits at on the early plateau.

The runs share ``LMFORGE_CACHE``: the ModernBERT side at the recipe's steps is the encoder
pretrain-zh / sentiment-zh / ner-zh already built there (seconds), so timings of the two sides
can come from different machine loads; read accuracy per step, and seconds per step only when
both ran in this call. One torch thread per side when ``--threads 1``.

    python benchmarks/encoder_arch.py [--steps 1500] [--out /tmp/encoder-arch]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SIDES = {
    "modernbert": [],  # the recipe as shipped
    "bert": ["pretrain.model.preset=bert-tiny", "pretrain.model.intermediate=1024"],
}


def run(side: str, args: argparse.Namespace) -> dict:
    from lmforge.core.metrics import read_metrics

    out = args.out / side
    # the recipe's warm-up (100) and eval/checkpoint interval (250), shortened for a short run;
    # at the recipe's 1,500 steps the section equals the shipped one, so the cache serves it
    every = min(250, args.steps)
    sets = [*SIDES[side], f"pretrain.max_steps={args.steps}"]
    sets += [f"pretrain.warmup_steps={min(100, max(1, args.steps // 10))}"]
    sets += [f"pretrain.eval_every={every}", f"pretrain.checkpoint_every={every}"]
    cmd = [sys.executable, "-m", "lmforge", "run", "pretrain-zh", "--out", str(out)]
    cmd += [a for kv in sets for a in ("--set", kv)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "LMFORGE_NO_PROGRESS": "1"}
    subprocess.run(cmd, check=True, env=env)
    summary = json.loads((out / "summary.json").read_text())["stages"]["pretrain"]
    curve = {
        row["step"]: round(row["value"], 4)
        for row in read_metrics(out / "metrics.jsonl")
        if row.get("stage") == "pretrain" and row.get("name") == "val_mlm_accuracy"
    }
    m = summary["metrics"]
    return {
        "side": side,
        "model_type": json.loads((out / "pretrain/model/config.json").read_text())["model_type"],
        "params": m["params"],
        "steps": m["steps"],
        "train_seconds": round(m["train_seconds"], 1),
        "val_loss": round(m["val_loss"], 3),
        "unigram_val_loss": round(m["unigram_val_loss"], 3),
        "val_mlm_accuracy_by_step": curve,
        "from_cache": "from_cache" in summary,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500, help="pretraining steps per side")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per side")
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="encoder-")))
    args = parser.parse_args()
    rows = [run(side, args) for side in SIDES]
    print(json.dumps(rows, indent=2))
    (args.out / "results.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    mb, bert = (r["val_mlm_accuracy_by_step"] for r in rows)
    print("step  modernbert  bert")
    for step in sorted(set(mb) | set(bert)):
        print(f"{step:>5}  {mb.get(step, '-'):>10}  {bert.get(step, '-'):>5}")
    last = max(mb)
    print(f"final val MLM accuracy ratio modernbert/bert: {mb[last] / bert[last]:.2f}")


if __name__ == "__main__":
    main()

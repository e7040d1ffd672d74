"""MLM against ELECTRA replaced-token detection at equal pretraining wall time, scored by a
downstream fine-tune.

Both runs share data (BBC News: labelled, so the same articles serve pretraining and the
topic classification that scores the encoder), WordPiece tokenizer, encoder shape, batch,
lr and seed; only ``pretrain.objective`` differs. Equal wall time: a short probe of each
objective measures seconds per step side by side, then each trains for ``--seconds`` worth
of its own steps; the summary prints the measured train seconds, so any drift on a shared
machine is visible. The fine-tune (full, same epochs and data) starts from ``pretrain``:
``BertForSequenceClassification`` from the MLM encoder, ``ElectraForSequenceClassification``
from the ELECTRA discriminator. One torch thread per run; the machine may be shared, so
read the ratios.

    python benchmarks/electra.py [--seconds 60] [--articles 600] [--out /tmp/electra-bench]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import yaml

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

OBJECTIVES = ("mlm", "electra")


def recipe(objective: str, steps: int, args: argparse.Namespace) -> dict:
    return {
        "name": f"bench-{objective}",
        "seed": 0,
        "data": {
            "sources": [{"builtin": "bbc-news", "limit": args.articles}],
            "split": {"val": 0.1, "test": 0.2},
        },
        "tokenizer": {"kind": "wordpiece", "vocab_size": 4000},
        "pretrain": {
            "model": {
                "preset": "bert-tiny",
                "layers": 2,
                "heads": 2,
                "hidden": 128,
                "intermediate": 512,
                "context": 128,
            },
            "objective": objective,
            "block_size": 128,
            "batch_size": 16,
            "max_steps": steps,
            "lr": args.lr,
            "warmup_steps": max(1, steps // 10),
            "weight_decay": 0.01,
            "beta2": 0.999,
            "eval_every": steps,
            "eval_batches": 4,
            "checkpoint_every": steps,
            "tensorboard": False,
        },
        "finetune": {
            "task": "classification",
            "method": "full",
            "model": {"path": "pretrain"},
            "data": {"limit": args.finetune_examples},
            "epochs": args.finetune_epochs,
            "lr": args.finetune_lr,
            "max_length": 128,
        },
    }


def run(objective: str, steps: int, args: argparse.Namespace, name: str) -> dict:
    from lmforge.cli import main

    path = args.out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe(objective, steps, args)), encoding="utf-8")
    only = ["--only", "data,tokenizer,pretrain"] if name.startswith("probe") else []
    code = main(["run", str(path), "--out", str(args.out / name), *only])
    if code != 0:
        raise SystemExit(f"{name}: lmforge run failed ({code})")
    return json.loads((args.out / name / "summary.json").read_text())["stages"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60, help="pretraining wall time each")
    parser.add_argument("--articles", type=int, default=600, help="BBC News articles")
    parser.add_argument("--probe-steps", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3, help="pretraining peak lr (both)")
    parser.add_argument("--finetune-examples", type=int, default=300)
    parser.add_argument("--finetune-epochs", type=int, default=5)
    parser.add_argument("--finetune-lr", type=float, default=5e-4)
    parser.add_argument(
        "--steps",
        help="skip the probe: steps per objective, e.g. mlm=195,electra=130 (a rerun with the "
        "same steps reuses both pretrainings from the stage cache)",
    )
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="electra-")))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    import torch

    torch.set_num_threads(1)
    per_step, fixed = {}, {}
    if args.steps:
        fixed = {k: int(v) for k, v in (kv.split("=") for kv in args.steps.split(","))}
    for objective in OBJECTIVES:  # seconds per step, measured side by side
        if objective in fixed:
            per_step[objective] = args.seconds / fixed[objective]
            continue
        m = run(objective, args.probe_steps, args, f"probe-{objective}")["pretrain"]["metrics"]
        per_step[objective] = m["train_seconds"] / m["steps"]
    rows = []
    for objective in OBJECTIVES:
        steps = fixed.get(objective) or max(
            args.probe_steps, round(args.seconds / per_step[objective])
        )
        stages = run(objective, steps, args, objective)
        pre, ft = stages["pretrain"]["metrics"], stages["finetune"]["metrics"]
        rows.append(
            {
                "objective": objective,
                "steps": pre["steps"],
                "train_seconds": round(pre["train_seconds"], 1),
                "probe_s_per_step": round(per_step[objective], 3),
                "val_mlm_accuracy": pre.get("val_mlm_accuracy"),
                "val_rtd_accuracy": pre.get("val_rtd_accuracy"),
                "val_rtd_baseline_accuracy": pre.get("val_rtd_baseline_accuracy"),
                "test_accuracy": ft.get("accuracy"),
                "test_macro_f1": ft.get("macro_f1"),
            }
        )
    print(json.dumps(rows, indent=2))
    mlm, electra = rows
    print(
        f"steps/s ratio electra/mlm: {per_step['mlm'] / per_step['electra']:.2f}; "
        f"downstream test accuracy mlm {mlm['test_accuracy']} vs electra {electra['test_accuracy']}"
    )


if __name__ == "__main__":
    main()

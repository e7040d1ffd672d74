"""MLM against ELECTRA replaced-token detection at equal pretraining wall time, scored by a
downstream fine-tune.

Both runs share data, tokenizer, encoder shape, batch and seed; only ``pretrain.objective``
(and, in recipe mode, ELECTRA's own lr and warm-up) differs. Equal wall time: a short probe
of each objective measures seconds per step side by side, then each trains for ``--seconds``
worth of its own steps; the summary prints the measured train seconds, so any drift on a
shared machine is visible. The fine-tune (full, same epochs and data) starts from
``pretrain``: ``BertForSequenceClassification`` from the MLM encoder,
``ElectraForSequenceClassification`` from the ELECTRA discriminator. One torch thread per
run; the machine may be shared, so read the ratios.

Default (BBC mode): 600 BBC News articles (labelled, so the same articles serve pretraining
and the topic classification that scores the encoder), a 2 x 128 encoder, one lr for both.

``--recipe pretrain-zh | pretrain-bert-wiki``: data, clean, split, tokenizer, model shape,
block, batch and the MLM side's optimiser settings are the built-in recipe's own (loaded with
``lmforge.recipe.load_recipe``); the ELECTRA side trains with the ELECTRA-Small settings that
apply here (Clark et al. 2020, appendix: lr 5e-4, generator 1/4 of the width, lambda 50) and a
warm-up of ``--electra-warmup`` of its steps. pretrain-bert-wiki's MLM side keeps the recipe's
``mlm+nsp``: the question is whether that recipe should switch objective, and the probe charges
NSP's cost to the MLM side's steps. Downstream scoring:

- pretrain-zh: sentiment-zh's own fine-tune section (full fine-tune on the zh-sentiment
  reviews of the same content-hash split; ``--finetune-examples`` overrides its seeded
  training sample), scored on the test reviews, with its TF-IDF baseline beside it;
- pretrain-bert-wiki: BBC News topics (classify-bbc's data section and split, written to
  files passed as ``finetune.data.train/val/test``, so the encoder keeps the wiki vocabulary),
  full fine-tune with sentiment-zh's hyper-parameters (3 epochs, lr 2e-4, batch 32, 128 tokens).

    python benchmarks/electra.py [--seconds 60] [--articles 600] [--out /tmp/electra-bench]
    python benchmarks/electra.py --recipe pretrain-zh --seconds 480 --probe-steps 30
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
RECIPES = ("pretrain-zh", "pretrain-bert-wiki")
# sentiment-zh's full fine-tune of the pretrain-zh encoder: the one fine-tune lmforge ships for
# a 4 x 256 encoder it pretrained itself; the BBC fine-tune of the wiki encoder reuses it
FINETUNE_RECIPE = "sentiment-zh"


def bbc_recipe(objective: str, steps: int, args: argparse.Namespace) -> dict:
    """BBC mode: 600 labelled articles serve both pretraining and the topic fine-tune."""
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


def builtin_recipe(objective: str, steps: int, args: argparse.Namespace) -> dict:
    """``args.recipe`` as lmforge loads it, with ``objective`` trained for ``steps`` and the
    downstream fine-tune added. Eval and checkpoint only at the end (the probe times steps)."""
    from lmforge.recipe import load_recipe

    base, tuned = load_recipe(args.recipe), load_recipe(FINETUNE_RECIPE)
    pretrain = base.pretrain.model_dump(mode="json")
    if objective == "electra":
        pretrain.update(
            objective="electra",
            lr=args.electra_lr,
            warmup_steps=round(args.electra_warmup * steps),
            electra={"generator_size": 0.25, "disc_weight": 50.0},
        )
    pretrain.update(max_steps=steps, eval_every=steps, checkpoint_every=steps, tensorboard=False)
    # a probe of a few steps cannot hold the recipe's warm-up (the lr does not change a step's time)
    pretrain["warmup_steps"] = min(pretrain["warmup_steps"], steps - 1)
    finetune = tuned.finetune.model_dump(mode="json", exclude_unset=True)
    if args.recipe == "pretrain-zh":
        # sentiment-zh's data.source filter picks the reviews out of pretrain-zh's splits
        if tuned.data != base.data or tuned.tokenizer != base.tokenizer:
            raise SystemExit(f"{FINETUNE_RECIPE} no longer shares pretrain-zh's data/tokenizer")
    else:  # BBC topics from files: the wiki run's data stage holds no labels
        files = bbc_files(args)
        finetune["data"] = {"text_column": "text", "label_column": "label", **files}
    if args.finetune_examples:
        finetune["data"]["limit"] = args.finetune_examples
    return {
        "name": f"bench-{args.recipe}-{objective}",
        "seed": base.seed,
        "data": base.data.model_dump(mode="json"),
        "tokenizer": base.tokenizer.model_dump(mode="json"),
        "pretrain": pretrain,
        "finetune": finetune,
    }


def bbc_files(args: argparse.Namespace) -> dict[str, str]:
    """classify-bbc's train/val/test splits as JSON-lines files (made once per ``--out``)."""
    from lmforge.cli import main
    from lmforge.data.shards import read_split

    out = args.out / "bbc-splits"
    files = {split: out / f"{split}.jsonl" for split in ("train", "val", "test")}
    if not all(f.exists() for f in files.values()):
        if main(["run", "classify-bbc", "--only", "data", "--out", str(out / "run")]) != 0:
            raise SystemExit("classify-bbc data stage failed")
        for split, path in files.items():
            rows = [{"text": d.text, "label": d.label} for d in read_split(out / "run/data", split)]
            path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return {split: str(path) for split, path in files.items()}


def random_init(args: argparse.Namespace) -> Path:
    """The fine-tune's floor: an encoder of the MLM run's config, randomly initialised (seed
    0), with that run's tokenizer; ``finetune.model.path`` takes it as any model directory."""
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForMaskedLM

    src, dst = args.out / "mlm" / "pretrain" / "model", args.out / "random-init-model"
    if not (dst / "config.json").exists():
        torch.manual_seed(0)
        AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(src)).save_pretrained(dst)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(src / name, dst / name)
    return dst


def run(objective: str, steps: int, args: argparse.Namespace, name: str) -> dict:
    from lmforge.cli import main

    path = args.out / f"{name}.yaml"
    make = builtin_recipe if args.recipe else bbc_recipe
    raw = make(objective, steps, args)
    if name == "random-init":  # no pretraining: the floor fine-tunes a random encoder
        del raw["pretrain"]
        raw["finetune"]["model"] = {"path": str(random_init(args))}
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    only = ["--only", "data,tokenizer,pretrain"] if name.startswith("probe") else []
    code = main(["run", str(path), "--out", str(args.out / name), *only])
    if code != 0:
        raise SystemExit(f"{name}: lmforge run failed ({code})")
    return json.loads((args.out / name / "summary.json").read_text())["stages"]


def loop_seconds(run_dir: Path, metrics: dict) -> float:
    """Seconds the training steps took, without the final evaluation and checkpoint that
    ``train_seconds`` includes: the last step's tokens/s in ``history.jsonl`` is measured
    before them (at a 30-step probe the final eval would otherwise be a third of the time)."""
    lines = (run_dir / "pretrain" / "history.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    return metrics["tokens"] / last["tokens_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=RECIPES, help="a built-in recipe (default: BBC mode)")
    parser.add_argument("--seconds", type=float, default=60, help="pretraining wall time each")
    parser.add_argument("--articles", type=int, default=600, help="BBC mode: BBC News articles")
    parser.add_argument("--probe-steps", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3, help="BBC mode: peak lr (both)")
    parser.add_argument("--electra-lr", type=float, default=5e-4, help="recipe mode: ELECTRA lr")
    parser.add_argument(
        "--electra-warmup",
        type=float,
        default=0.2,
        help="recipe mode: ELECTRA warm-up as a share of its steps",
    )
    parser.add_argument(
        "--finetune-examples",
        type=int,
        help="training rows of the fine-tune (BBC mode default 300; recipe mode: "
        f"{FINETUNE_RECIPE}'s 8000 reviews, all BBC train articles)",
    )
    parser.add_argument("--finetune-epochs", type=int, default=5, help="BBC mode")
    parser.add_argument("--finetune-lr", type=float, default=5e-4, help="BBC mode")
    parser.add_argument(
        "--steps",
        help="skip the probe: steps per objective, e.g. mlm=195,electra=130 (a rerun with the "
        "same steps reuses both pretrainings from the stage cache)",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also fine-tune a randomly initialised encoder of the same shape and tokenizer",
    )
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="electra-")))
    args = parser.parse_args()
    if not args.recipe and args.finetune_examples is None:
        args.finetune_examples = 300
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
        per_step[objective] = loop_seconds(args.out / f"probe-{objective}", m) / m["steps"]
    rows = []
    recipe_of = {}
    for objective in OBJECTIVES:
        steps = fixed.get(objective) or max(
            args.probe_steps, round(args.seconds / per_step[objective])
        )
        stages = run(objective, steps, args, objective)
        recipe_of[objective] = yaml.safe_load((args.out / f"{objective}.yaml").read_text())
        pre, ft = stages["pretrain"]["metrics"], stages["finetune"]["metrics"]
        rows.append(
            {
                "objective": recipe_of[objective]["pretrain"]["objective"],
                "steps": pre["steps"],
                "train_seconds": round(pre["train_seconds"], 1),
                "loop_seconds": round(loop_seconds(args.out / objective, pre), 1),
                "probe_s_per_step": round(per_step[objective], 3),
                "val_mlm_accuracy": pre.get("val_mlm_accuracy"),
                "val_nsp_accuracy": pre.get("val_nsp_accuracy"),
                "val_rtd_accuracy": pre.get("val_rtd_accuracy"),
                "val_rtd_baseline_accuracy": pre.get("val_rtd_baseline_accuracy"),
                "finetune_train_examples": ft.get("train_examples"),
                "finetune_test_examples": ft.get("test_examples"),
                "finetune_train_seconds": round(ft["train_seconds"], 1),
                "test_accuracy": ft.get("accuracy"),
                "test_macro_f1": ft.get("macro_f1"),
                "baseline_test_accuracy": (ft.get("baseline") or {}).get("accuracy"),
            }
        )
    if args.floor:
        ft = run("mlm", 1, args, "random-init")["finetune"]["metrics"]
        rows.append(
            {
                "objective": "none (random init)",
                "finetune_train_examples": ft.get("train_examples"),
                "finetune_test_examples": ft.get("test_examples"),
                "finetune_train_seconds": round(ft["train_seconds"], 1),
                "test_accuracy": ft.get("accuracy"),
                "test_macro_f1": ft.get("macro_f1"),
            }
        )
    print(json.dumps(rows, indent=2))
    (args.out / "results.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    mlm, electra = rows[:2]
    print(
        f"steps/s ratio electra/mlm: {per_step['mlm'] / per_step['electra']:.2f}; "
        f"downstream test accuracy mlm {mlm['test_accuracy']} vs electra {electra['test_accuracy']}"
    )


if __name__ == "__main__":
    main()

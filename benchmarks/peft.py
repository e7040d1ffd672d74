"""Fine-tuning methods side by side: BBC News topics with MiniLM-L6, one run.

Every method (full, linear-probe, LoRA, AdaLoRA, IA3, prefix, prompt, bottleneck adapters)
fine-tunes the built-in all-MiniLM-L6-v2 encoder through lmforge's own code path
(``finetune.stage.train_and_test``: the classification task, ``apply_method``, the ``fit``
loop) on the same split, with the same epochs, batch, max_length and seed; only the learning
rate differs, each at a standard value for its method (``LR``, overridable). The classic
baseline, TF-IDF + logistic regression (``lmforge.tasks.baselines``), trains on the same
train split.

Data: the built-in ``bbc-news`` (2,127 articles after exact dedup, 5 topics), near-duplicates
dropped as the quickstart's data stage does (MinHash, Jaccard >= 0.8), then split by content
hash (``lmforge.data.split.assign_split``): ``--test-fraction`` of the articles are the test
split, the rest train. No validation split: nothing is tuned on it.

Each method runs in its own subprocess, so its peak RSS (``ru_maxrss`` of that process:
loading, tokenising, training and predicting) is its own. Seconds/epoch is the ``fit`` time
divided by the epochs; trainable parameters count the task head too.

    python benchmarks/peft.py [--methods full,lora,...] [--epochs 3] [--max-length 256]
        [--batch 16] [--test-fraction 0.2] [--lr lora=1e-3,...] [--threads N] [--out r.json]

Smoke run: ``--quick`` (100 training articles, 100 test articles, 1 epoch); it also prints an
estimate of the full run's time from its own timings.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

from bench_common import call_worker, print_result, write_results

# this file is named peft.py: drop its folder from the import path, so that `import peft`
# (inside lmforge) finds the library and not this script
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

SEED = 0
METHODS = ("full", "linear-probe", "lora", "adalora", "ia3", "prefix", "prompt", "adapter")
# peak learning rates: full fine-tuning of a small BERT ~1e-4; LoRA/AdaLoRA 1e-3..2e-3 (the
# quickstart's 2e-3); adapters 1e-3 (Houlsby et al.: 1e-4..3e-3); IA3's rescaling vectors and
# prefix/prompt embeddings need larger steps (peft's examples: 3e-3..3e-2); the probe trains
# a single linear layer
LR = {
    "full": 1e-4,
    "linear-probe": 1e-2,
    "lora": 2e-3,
    "adalora": 2e-3,
    "ia3": 5e-3,
    "prefix": 1e-2,
    "prompt": 3e-2,
    "adapter": 1e-3,
}


def bbc_splits(test_fraction: float, train_limit: int | None, test_limit: int | None) -> dict:
    """train/val/test Documents: BBC News, near-deduplicated, split by content hash."""
    from lmforge.data.builtin import load_builtin
    from lmforge.data.dedup import near_dedup
    from lmforge.data.split import assign_split

    docs = [d for d in load_builtin("bbc-news") if d.text.strip()]
    docs = [docs[i] for i in near_dedup([d.text for d in docs], threshold=0.8).keep]
    splits: dict = {"train": [], "val": [], "test": []}
    for d in docs:
        splits[assign_split(d.text, val=0.0, test=test_fraction)].append(d)
    # the loader interleaves the classes, so a prefix keeps every topic
    splits["train"] = splits["train"][:train_limit]
    splits["test"] = splits["test"][:test_limit]
    return splits


# ---------------------------------------------------------------- worker (one per subprocess)


def run_worker(args: argparse.Namespace) -> None:
    """Fine-tune one method and print one ``BENCH_RESULT {json}`` line."""
    import torch

    from lmforge.finetune.config import FinetuneConfig, FinetuneModel
    from lmforge.finetune.methods import MethodConfig
    from lmforge.finetune.stage import train_and_test
    from lmforge.models import resolve_model_path
    from lmforge.tasks import TASKS

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    splits = bbc_splits(args.test_fraction, args.train_limit, args.test_limit)
    task = TASKS.get("classification")
    info = task.prepare(splits)
    cfg = FinetuneConfig(
        task="classification",
        method=args.worker,
        method_config=MethodConfig(),
        model=FinetuneModel(path="minilm-l6"),
        epochs=args.epochs,
        lr=args.method_lr,
        batch_size=args.batch,
        max_length=args.max_length,
    )
    path = resolve_model_path("minilm-l6")
    torch.manual_seed(SEED)
    model, processor = task.load_model(path, info), task.load_processor(path)
    run = train_and_test(task, cfg, splits, info, model, processor, SEED)
    result = {
        "method": args.worker,
        "lr": args.method_lr,
        "accuracy": run.scores["accuracy"],
        "macro_f1": run.scores["macro_f1"],
        "trainable_params": run.trainable,
        "total_params": run.total,
        "trainable_fraction": run.trainable / run.total,
        "train_seconds": run.train_seconds,
        "seconds_per_epoch": run.train_seconds / args.epochs,
        "worker_seconds": time.perf_counter() - t0,
        "worker_cpu_seconds": time.process_time(),  # user + sys of this process, all threads
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
        "train_examples": len(splits["train"]),
        "test_examples": len(splits["test"]),
        "truncated_train": run.encoded["train"].truncated,
        "history": run.history,
        "threads": torch.get_num_threads(),
    }
    print_result(result)


def run_method(method: str, args: argparse.Namespace, lr: float) -> dict:
    """Run one worker subprocess and return its result (or the error it died with)."""
    cmd = [sys.executable, __file__, "--worker", method, "--method-lr", str(lr)]
    cmd += ["--epochs", str(args.epochs), "--batch", str(args.batch)]
    cmd += ["--max-length", str(args.max_length), "--test-fraction", str(args.test_fraction)]
    cmd += ["--threads", str(args.threads)]
    if args.train_limit:
        cmd += ["--train-limit", str(args.train_limit)]
    if args.test_limit:
        cmd += ["--test-limit", str(args.test_limit)]
    env = {
        **os.environ,
        "LMFORGE_NO_PROGRESS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
    }
    run = call_worker(cmd, env)
    if run.result is None:
        tail = run.tail()
        print(f"  {method} failed (exit {run.returncode}):", *tail, sep="\n    ")
        return {
            "method": method,
            "lr": lr,
            "error": "\n".join(tail),
            "process_seconds": run.seconds,
        }
    return {**run.result, "process_seconds": run.seconds}


# ---------------------------------------------------------------- baseline and report (parent)


def tfidf_baseline(splits: dict) -> dict:
    from lmforge.evaluate.metrics import classification_metrics
    from lmforge.tasks.baselines import tfidf_logreg

    train, test = splits["train"], splits["test"]
    t0 = time.perf_counter()
    preds = tfidf_logreg([d.text for d in train], [d.label for d in train], [d.text for d in test])
    seconds = time.perf_counter() - t0
    labels = sorted({d.label for d in train})
    scores = classification_metrics([d.label for d in test], preds, labels)
    return {
        "method": "tfidf+logreg",
        "accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"],
        "fit_predict_seconds": seconds,
    }


def ratio(a: float | None, b: float | None, fmt: str = "{:.3f}") -> str:
    return fmt.format(a / b) if a is not None and b else "-"


def report(results: list[dict], baseline: dict, args: argparse.Namespace) -> dict:
    """Print the table (ratios vs full fine-tuning and vs the baseline) and the goals."""
    ok = {r["method"]: r for r in results if "error" not in r}
    full = ok.get("full", {})
    first = next(iter(ok.values()), {})
    n_train, n_test = first.get("train_examples", "?"), first.get("test_examples", "?")
    print(
        f"\nBBC News, MiniLM-L6: {n_train} train / {n_test} test articles, {args.epochs} "
        f"epoch(s), batch {args.batch}, max_length {args.max_length}, {args.threads} threads\n"
    )
    print(
        "| method | lr | accuracy | macro-F1 | acc vs full | acc vs TF-IDF | trainable params "
        "| trainable % | peak RSS (MiB) | RSS vs full | s/epoch |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        if "error" in r:
            print(f"| {r['method']} | {r['lr']:g} | failed | | | | | | | | |")
            continue
        print(
            f"| {r['method']} | {r['lr']:g} | {r['accuracy']:.2%} | {r['macro_f1']:.4f} "
            f"| {ratio(r['accuracy'], full.get('accuracy'))} "
            f"| {ratio(r['accuracy'], baseline['accuracy'])} "
            f"| {r['trainable_params']:,} | {r['trainable_fraction']:.3%} "
            f"| {r['peak_rss_mib']:,.0f} | {ratio(r['peak_rss_mib'], full.get('peak_rss_mib'))} "
            f"| {r['seconds_per_epoch']:.1f} |"
        )
    print(
        f"| TF-IDF + logistic regression | - | {baseline['accuracy']:.2%} "
        f"| {baseline['macro_f1']:.4f} | {ratio(baseline['accuracy'], full.get('accuracy'))} "
        f"| 1.000 | - | - | - | - | ({baseline['fit_predict_seconds']:.1f} s fit + predict) |"
    )
    goals: dict[str, bool | None] = {}
    best = max(ok.values(), key=lambda r: r["accuracy"], default=None)
    goals["best_accuracy_ge_97pct"] = best["accuracy"] >= 0.97 if best else None
    lora = ok.get("lora")
    if lora and full:
        goals["lora_ge_99pct_of_full"] = lora["accuracy"] >= 0.99 * full["accuracy"]
        goals["lora_lower_peak_rss"] = lora["peak_rss_mib"] < full["peak_rss_mib"]
    if lora:
        goals["lora_under_1pct_trainable"] = lora["trainable_fraction"] < 0.01
    print("\ngoals:")
    if best:
        print(
            f"  accuracy >= 97%: {best['method']} {best['accuracy']:.2%} -> {goals['best_accuracy_ge_97pct']}"
        )
    for key in ("lora_ge_99pct_of_full", "lora_under_1pct_trainable", "lora_lower_peak_rss"):
        if key in goals:
            print(f"  {key}: {goals[key]}")
    return goals


def estimate_full_run(results: list[dict], args: argparse.Namespace, n_train_full: int) -> None:
    """From a --quick run: training time scales with articles x epochs; the rest (loading,
    tokenising, predicting on a test split ~4x larger) is counted twice. A busy machine is
    corrected for by the share of the threads' time each worker actually got on a CPU."""
    epochs_full = 3
    as_run = idle = 0.0
    for r in results:
        if "error" in r:
            continue
        scale = n_train_full / r["train_examples"] * epochs_full / args.epochs
        seconds = r["train_seconds"] * scale + (r["process_seconds"] - r["train_seconds"]) * 2
        busy = min(1.0, r["worker_cpu_seconds"] / (r["worker_seconds"] * r["threads"]))
        as_run += seconds
        idle += seconds * busy
    print(
        f"\nestimated full run ({n_train_full} training articles, {epochs_full} epochs, "
        f"max_length {args.max_length}, these methods): ~{idle / 60:.0f} min with "
        f"{args.threads} idle threads (~{as_run / 60:.0f} min as loaded as during this run)"
    )


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods")
    p.add_argument("--epochs", type=int, default=3, help="passes over the training split")
    p.add_argument("--batch", type=int, default=16, help="examples per step")
    p.add_argument("--max-length", type=int, default=256, help="tokens per article (truncated)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="share of articles tested")
    p.add_argument("--train-limit", type=int, help="use the first N training articles")
    p.add_argument("--test-limit", type=int, help="score the first N test articles")
    p.add_argument("--lr", default="", help="overrides, e.g. lora=1e-3,full=5e-5")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    p.add_argument("--quick", action="store_true", help="smoke size: 100/100 articles, 1 epoch")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    # internal: one method in a subprocess
    p.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    p.add_argument("--method-lr", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.epochs, args.train_limit, args.test_limit = 1, 100, 100
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        run_worker(args)
        return
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        sys.exit(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    lrs = dict(LR)
    for item in filter(None, args.lr.split(",")):
        name, _, value = item.partition("=")
        lrs[name.strip()] = float(value)

    splits = bbc_splits(args.test_fraction, args.train_limit, args.test_limit)
    baseline = tfidf_baseline(splits)
    results = []
    for method in methods:
        print(f"running {method} (lr {lrs[method]:g}) ...", flush=True)
        results.append(run_method(method, args, lrs[method]))
    goals = report(results, baseline, args)
    if args.quick:
        estimate_full_run(results, args, len(bbc_splits(args.test_fraction, None, None)["train"]))
    if args.out:
        keys = ("epochs", "batch", "max_length", "test_fraction", "train_limit", "test_limit")
        keys += ("threads",)
        libraries = ("torch", "transformers", "peft")
        write_results(
            args.out, args, keys, libraries, baseline=baseline, results=results, goals=goals
        )
        print(f"\nresults: {args.out}")


if __name__ == "__main__":
    main()

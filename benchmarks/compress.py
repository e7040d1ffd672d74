"""Compression methods side by side: the compress-bbc recipe, one run, one machine.

Runs the built-in ``compress-bbc`` recipe (BBC News topics; MiniLM-L6 + LoRA, merged; then
ONNX, int8 with ONNX Runtime and with torch, bf16, MLP-neuron and magnitude pruning, a
3-layer student distilled from the 6-layer teacher, and that student in int8) through
lmforge's own stages, and prints ``compress/pareto.json`` as a table. The reference is the
source row: the fp32 merged model loaded in plain transformers. Every artefact is scored on
the same test articles and timed on the same input tensors, each in a fresh process with the
same thread count (``--threads``), so the ratios compare like with like.

Targets (issue #14): a student with >= 97% of the teacher's accuracy, <= 60% of its
parameters and >= 1.6x its speed; a quantized or exported model >= 2x faster at batch 1 and
32 with <= 1 point accuracy loss; structured pruning whose latency falls at least in
proportion to the parameters removed. The table's last column says which held.

    python benchmarks/compress.py [--out runs/bench-compress] [--threads 1] [--set k=v ...]

Smoke run: ``--quick`` (300 articles, max_length 64, 1 epoch everywhere).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# benchmarks/peft.py would shadow the peft library lmforge imports: drop this folder from the path
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

QUICK = [
    "data.sources.0.limit=300",
    "finetune.epochs=1",
    "finetune.max_length=64",
    "compress.steps.4.recovery_epochs=0",
    "compress.steps.6.epochs=1",
    "compress.latency_repeats=3",
]


def verdicts(points: dict[str, dict]) -> dict[str, str]:
    """Which of the issue's targets each artefact meets (only the rows a target is about)."""
    src = points["source"]
    out = {}
    for name, p in points.items():
        if name == "source":
            continue
        s1, s32 = p.get("speedup_b1", 0), p.get("speedup_b32", 0)
        loss = (src["accuracy"] - p["accuracy"]) * 100
        if name.startswith("student") and "int8" not in name:
            ok = p["accuracy"] >= 0.97 * src["accuracy"] and p["param_ratio"] <= 0.6
            ok = ok and min(s1, s32) >= 1.6
            out[name] = "distill target met" if ok else "distill target missed"
        elif name.startswith("neurons"):
            removed = 1 - p["param_ratio"]
            fell = 1 - 1 / max(s1, 1e-9), 1 - 1 / max(s32, 1e-9)
            out[name] = "latency fell >= params removed" if min(fell) >= removed else "missed"
        elif name.startswith("magnitude"):
            out[name] = "zeros only: dense kernels, no speed-up expected"
        elif "int8" in name or name in ("onnx", "bf16"):
            ok = min(s1, s32) >= 2 and loss <= 1
            out[name] = ">=2x with <=1 pt loss" if ok else "missed 2x/1 pt"
    return out


def table(points: dict[str, dict]) -> str:
    rows = [
        "| artefact | format | accuracy | params (M) | size MB | p50 b1 ms | p95 b1 ms "
        "| p50 b32 ms | speed-up b1 | speed-up b32 | peak RSS MB | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    marks = verdicts(points)
    for name, p in points.items():
        rows.append(
            f"| {name} | {p['format']} | {p['accuracy']:.4f} | {p['params'] / 1e6:.2f} "
            f"| {p['size_mb']:.1f} | {p.get('latency_ms_p50_b1', 0):.1f} "
            f"| {p.get('latency_ms_p95_b1', 0):.1f} | {p.get('latency_ms_p50_b32', 0):.1f} "
            f"| {p.get('speedup_b1', 0):.2f}x | {p.get('speedup_b32', 0):.2f}x "
            f"| {p.get('peak_rss_mb', 0):.0f} | {marks.get(name, 'reference')} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-compress"))
    parser.add_argument("--threads", type=int, default=1, help="torch/ORT threads per process")
    parser.add_argument("--quick", action="store_true", help="a smoke run in minutes")
    parser.add_argument("--set", action="append", default=[], help="recipe override key=value")
    parser.add_argument(
        "--rescore", action="store_true", help="rerun only the compress stage of --out"
    )
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)  # the profiling children inherit this count
    from lmforge.recipe import load_recipe
    from lmforge.runner import run_recipe

    recipe = load_recipe("compress-bbc", [*(QUICK if args.quick else []), *args.set])
    if args.rescore:
        run_recipe(recipe, out=args.out, only="compress", force=True)
    else:
        run_recipe(recipe, out=args.out)
    pareto = json.loads((args.out / "compress" / "pareto.json").read_text())
    points = {p["name"]: p for p in pareto["artefacts"]}
    print(f"{pareto['test_examples']} test articles, {args.threads} thread(s)")
    print(table(points))


if __name__ == "__main__":
    main()

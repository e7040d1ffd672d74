"""Testing with Concept Activation Vectors (TCAV; Kim et al. 2018).

For a layer ``l``: the activations (averaged over a text's tokens, as texts differ in
length) of concept examples and of random counter-examples train a linear classifier; its
normal, pointing to the concept, is the CAV, and its held-out accuracy says whether the layer
separates the concept at all. The TCAV score of a class is the share of that class's test
examples whose class logit rises along the CAV: the directional derivative of moving every
token's activation by ``eps * cav`` (which moves their mean by the same), i.e.
``sum_t grad_{h_t} logit . cav > 0``. One random set proves nothing, so ``random_runs`` CAVs are trained against different
random sets, and their scores are compared with those of random-vs-random CAVs by a
two-sided t-test: a small p-value says the concept, not chance, moves the class.
"""

from __future__ import annotations

import json
import random
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lmforge.core.errors import LmforgeError
from lmforge.explain.classifier import Classifier


def layer_names(clf: Classifier) -> list[str]:
    """The probe-able layers: ``embeddings`` and ``layer.0`` .. ``layer.{L-1}``."""
    n = clf.model.config.num_hidden_layers
    return ["embeddings", *(f"layer.{i}" for i in range(n))]


def check_layers(clf: Classifier, layers: list[str] | None) -> list[str]:
    """``layers`` (default: all) checked against ``layer_names``; unknown ones are an error."""
    valid = layer_names(clf)
    if layers is None:
        return valid
    unknown = [name for name in layers if name not in valid]
    if unknown:
        raise LmforgeError(
            f"tcav.layers: {unknown} do not exist in this model; valid layers: {', '.join(valid)}"
        )
    return layers


def activations(
    clf: Classifier, texts: list[str], layers: list[str], target: int | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Token-mean activations per layer (N, H) and, with ``target``, the gradient of that
    class's logit summed over tokens (N, H) - the derivative along a shift of every token;
    numpy arrays."""
    import numpy as np
    import torch

    index = {name: i for i, name in enumerate(layer_names(clf))}
    acts: dict[str, list[Any]] = {name: [] for name in layers}
    grads: dict[str, list[Any]] = {name: [] for name in layers}
    for start in range(0, len(texts), clf.batch_size):
        enc = clf.encode(texts[start : start + clf.batch_size])
        mask = enc["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
        with torch.set_grad_enabled(target is not None):
            out = clf.model(**enc, output_hidden_states=True)
            hidden = [out.hidden_states[index[name]] for name in layers]
            if target is not None:
                g = torch.autograd.grad(out.logits[:, target].sum(), hidden)
                for name, gi in zip(layers, g, strict=True):
                    grads[name].append((gi * mask).sum(1).float().cpu().numpy())
        for name, h in zip(layers, hidden, strict=True):
            mean = (h.detach() * mask).sum(1) / mask.sum(1)  # (B, H)
            acts[name].append(mean.float().cpu().numpy())
    clf.queries += len(texts)
    return (
        {k: np.concatenate(v) for k, v in acts.items()},
        {k: np.concatenate(v) for k, v in grads.items() if v},
    )


def train_cav(pos: Any, neg: Any, seed: int) -> tuple[Any, float]:
    """(unit CAV pointing to ``pos``, held-out accuracy) of a logistic regression."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x = np.concatenate([pos, neg])
    y = np.array([1] * len(pos) + [0] * len(neg))
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.33, random_state=seed, stratify=y)
    model = LogisticRegression(max_iter=1000).fit(xtr, ytr)
    cav = model.coef_[0] / (np.linalg.norm(model.coef_[0]) or 1.0)
    return cav, float(model.score(xte, yte))


def tcav_score(grads: Any, cav: Any) -> float:
    """Share of examples whose class logit increases along ``cav``."""
    return float(((grads @ cav) > 0).mean())


def random_snippets(texts: list[str], n: int, words: int, rng: random.Random) -> list[str]:
    """``n`` random windows of about ``words`` words (characters for Chinese) from ``texts``."""
    out = []
    for _ in range(n):
        t = rng.choice(texts)
        units = t.split() if " " in t else list(t)
        start = rng.randrange(max(1, len(units) - words + 1))
        piece = units[start : start + words]
        out.append((" " if " " in t else "").join(piece))
    return out


@dataclass(frozen=True)
class LayerResult:
    layer: str
    cav_accuracy: float  # mean held-out accuracy of the concept-vs-random CAVs
    tcav: float  # mean TCAV score over the runs
    tcav_std: float
    random_tcav: float  # mean TCAV score of random-vs-random CAVs
    p_value: float  # two-sided t-test, concept vs random scores
    significant: bool  # p < 0.05


def tcav(
    clf: Classifier,
    concept: list[str],
    target: int,
    target_texts: list[str],
    random_pool: list[str],
    *,
    layers: list[str] | None = None,
    runs: int = 10,
    random_examples: int = 40,
    seed: int = 0,
) -> list[LayerResult]:
    """TCAV of ``concept`` for class ``target`` at each layer (see the module doc)."""
    import numpy as np
    from scipy.stats import ttest_ind

    if not concept:
        raise LmforgeError("tcav: the concept has no examples")
    if not target_texts:
        raise LmforgeError(f"tcav: no test examples of class {clf.labels[target]!r} to score")
    layers = check_layers(clf, layers)
    rng = random.Random(seed)
    words = max(
        3, round(sum(len(t.split()) if " " in t else len(t) for t in concept) / len(concept))
    )
    concept_acts, _ = activations(clf, concept, layers)
    _, grads = activations(clf, target_texts, layers, target)
    randoms = [
        activations(clf, random_snippets(random_pool, random_examples, words, rng), layers)[0]
        for _ in range(runs + 1)
    ]
    results = []
    for layer in layers:
        scores, accs, null = [], [], []
        for r in range(runs):
            cav, acc = train_cav(concept_acts[layer], randoms[r][layer], seed + r)
            scores.append(tcav_score(grads[layer], cav))
            accs.append(acc)
            cav0, _ = train_cav(randoms[r + 1][layer], randoms[r][layer], seed + r)
            null.append(tcav_score(grads[layer], cav0))
        if np.std(scores) == 0 and np.std(null) == 0:
            p = 0.0 if np.mean(scores) != np.mean(null) else 1.0
        else:
            with warnings.catch_warnings():  # near-identical scores: scipy warns, p is right
                warnings.simplefilter("ignore", RuntimeWarning)
                p = float(ttest_ind(scores, null).pvalue)
        results.append(
            LayerResult(
                layer,
                float(np.mean(accs)),
                float(np.mean(scores)),
                float(np.std(scores)),
                float(np.mean(null)),
                p,
                p < 0.05,
            )
        )
    return results


def plot_tcav(results: dict[str, list[LayerResult]], path: Path) -> Path:
    """TCAV score per layer per concept (bars, std as error bars) vs the random mean (dots)."""
    from lmforge.core.plots import figure

    names = list(results)
    layers = [r.layer for r in results[names[0]]]
    width = 0.8 / len(names)
    with figure(path, (max(5.0, 1.1 * len(layers) + 2), 3.8)) as (_, ax):
        for k, name in enumerate(names):
            xs = [i + k * width for i in range(len(layers))]
            rs = results[name]
            ax.bar(xs, [r.tcav for r in rs], width, yerr=[r.tcav_std for r in rs], label=name)
            ax.scatter(xs, [r.random_tcav for r in rs], color="black", marker="_", s=200, zorder=3)
            for x, r in zip(xs, rs, strict=True):
                if r.significant:
                    ax.text(x, min(1.02, r.tcav + r.tcav_std + 0.02), "*", ha="center")
        ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(layers))], layers)
        ax.set_ylim(0, 1.1)
        ax.set_ylabel("TCAV score")
        ax.set_title("TCAV per layer (black: random CAVs; *: p < 0.05)")
        ax.legend(fontsize=8)
    return path


def run_tcav(
    clf: Classifier, texts: list[str], labels: list[int], cfg: Any, out: Path, seed: int
) -> tuple[dict[str, Any], dict[str, str]]:
    """Every concept of the recipe's ``tcav`` section; writes tcav.json and tcav.png."""
    from lmforge.explain.concepts import concept_texts

    layers = check_layers(clf, cfg.layers)  # before any work
    all_results: dict[str, list[LayerResult]] = {}
    metrics: dict[str, Any] = {}
    for c in cfg.concepts:
        if c.target not in clf.labels:
            raise LmforgeError(
                f"tcav: concept {c.name!r} targets class {c.target!r}; the model's classes: "
                f"{clf.labels}"
            )
        target = clf.labels.index(c.target)
        examples = concept_texts(c.builtin, c.examples)
        target_texts = [t for t, y in zip(texts, labels, strict=True) if y == target]
        results = tcav(
            clf,
            examples,
            target,
            target_texts[: cfg.max_targets],
            texts,
            layers=layers,
            runs=cfg.random_runs,
            random_examples=cfg.random_examples,
            seed=seed,
        )
        all_results[c.name] = results
        metrics[c.name] = {"target": c.target, "layers": {r.layer: asdict(r) for r in results}}
    (out / "tcav.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    plot_tcav(all_results, out / "tcav.png")
    return metrics, {"tcav": "tcav.json", "tcav_plot": "tcav.png"}

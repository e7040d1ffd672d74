"""Integrated Gradients on the input embeddings (Captum), token highlights, and faithfulness.

IG (Sundararajan et al. 2017) integrates the gradient of the explained class's log-probability
along the straight line from a baseline (every content token replaced by padding; [CLS]/[SEP]
kept) to the input, per embedding dimension, summed per token. Completeness says the scores
add up to log p(input) - log p(baseline); ``delta`` is how far Captum's Riemann sum is from
that. The log keeps a confident model's scores apart: its probability is flat near 1 along
most of the path, so IG of the probability itself gives every token about zero.

Faithfulness is AOPC (Samek et al. 2017, "area over the perturbation curve"): delete the k
highest-ranked content tokens for k = 1..K and average the drop of the original predicted
class's probability, ``AOPC = 1/(K+1) * sum_{k=0..K} (p_0 - p_k)``. A ranking that finds the
tokens the model relies on has a higher AOPC than a random one; the same is measured for the
attention-rollout ranking, so the numbers say whether attention "explains" anything.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.explain.classifier import Classifier


@dataclass(frozen=True)
class Attribution:
    """IG scores for one text: ``scores[i]`` belongs to ``tokens[i]`` (specials included)."""

    text: str
    tokens: list[str]
    ids: list[int]
    scores: list[float]
    target: int  # class explained (the predicted one unless given)
    prob: float  # p(target | text)
    delta: float  # completeness error of the integral approximation
    special: list[bool]  # [CLS], [SEP], ... never ranked or deleted


def _special_mask(tokenizer: Any, ids: list[int]) -> list[bool]:
    specials = set(tokenizer.all_special_ids)
    return [i in specials for i in ids]


def integrated_gradients(
    clf: Classifier, text: str, target: int | None = None, n_steps: int = 50
) -> Attribution:
    """Integrated Gradients of ``log p(target | text)`` w.r.t. the token embeddings."""
    import torch
    from captum.attr import LayerIntegratedGradients

    enc = clf.encode([text])
    ids, mask = enc["input_ids"], enc["attention_mask"]
    special = _special_mask(clf.tokenizer, ids[0].tolist())
    pad = clf.tokenizer.pad_token_id or 0
    baseline = ids.clone()
    baseline[0, [i for i, s in enumerate(special) if not s]] = pad

    def forward(input_ids: Any, attention_mask: Any) -> Any:
        logits = clf.model(input_ids=input_ids, attention_mask=attention_mask).logits
        return torch.log_softmax(logits.float(), -1)

    with torch.no_grad():
        probs = forward(ids, mask)[0].exp()
    if target is None:
        target = int(probs.argmax())
    lig = LayerIntegratedGradients(forward, clf.model.get_input_embeddings())
    with torch.enable_grad():
        attr, delta = lig.attribute(
            ids,
            baselines=baseline,
            additional_forward_args=(mask,),
            target=target,
            n_steps=n_steps,
            internal_batch_size=n_steps,
            return_convergence_delta=True,
        )
    clf.queries += n_steps + 1
    scores = attr.sum(-1)[0].detach().float().cpu().tolist()
    tokens = clf.tokenizer.convert_ids_to_tokens(ids[0].tolist())
    return Attribution(
        text, tokens, ids[0].tolist(), scores, target, float(probs[target]), float(delta), special
    )


def aopc(
    clf: Classifier, ids: list[int], special: list[bool], order: list[int], target: int, k_max: int
) -> float:
    """AOPC of deleting content positions in ``order`` (first = most important), k = 1..K.

    ``K`` is ``k_max`` or the number of content tokens, whichever is smaller; deleting means
    removing the token (the text gets shorter), so no stand-in token biases the model.
    """
    content = [i for i in order if not special[i]]
    k_max = min(k_max, len(content))
    rows = [ids]
    for k in range(1, k_max + 1):
        drop = set(content[:k])
        rows.append([t for i, t in enumerate(ids) if i not in drop])
    p = clf.probs_of_ids(rows)[:, target]
    return float((p[0] - p).sum() / (k_max + 1))


def attention_order(clf: Classifier, text: str) -> list[int]:
    """Positions ranked by attention rollout from the pooled position ([CLS], else the last)."""
    from lmforge.explain.attention import attention_maps

    maps = attention_maps(clf, text)
    pooled = 0 if clf.tokenizer.cls_token_id is not None else len(maps.tokens) - 1
    row = maps.rollout[pooled]
    return sorted(range(len(row)), key=lambda i: -row[i])


@dataclass(frozen=True)
class Faithfulness:
    """Mean AOPC over examples for each ranking; higher = the ranking finds what matters."""

    integrated_gradients: float
    attention: float | None  # None: the model has no attention weights
    random: float
    examples: int
    k: int


def faithfulness(
    clf: Classifier,
    attributions: list[Attribution],
    k: int = 10,
    random_runs: int = 5,
    seed: int = 0,
) -> Faithfulness:
    """AOPC of IG vs attention rollout vs random orders (``random_runs`` averaged) on the
    texts of ``attributions``, each explaining its own predicted class."""
    import random

    from lmforge.core.errors import LmforgeError

    rng = random.Random(seed)
    ig, att, rnd = [], [], []
    has_attention = True
    for a in attributions:
        ig_order = sorted(range(len(a.scores)), key=lambda i: -a.scores[i])
        ig.append(aopc(clf, a.ids, a.special, ig_order, a.target, k))
        if has_attention:
            try:
                att.append(aopc(clf, a.ids, a.special, attention_order(clf, a.text), a.target, k))
            except LmforgeError:
                has_attention = False
        runs = []
        for _ in range(random_runs):
            order = list(range(len(a.ids)))
            rng.shuffle(order)
            runs.append(aopc(clf, a.ids, a.special, order, a.target, k))
        rnd.append(sum(runs) / len(runs))
    n = max(len(attributions), 1)
    return Faithfulness(
        sum(ig) / n, sum(att) / n if has_attention else None, sum(rnd) / n, len(attributions), k
    )


def _token_text(token: str) -> str:
    """Word-piece/BPE markers out of a token for display."""
    return token.removeprefix("##").replace("Ġ", " ").replace("▁", " ")


def write_highlights_html(
    attributions: list[Attribution], labels: list[str], path: Path, title: str = "Attributions"
) -> Path:
    """Tokens coloured by IG score (red: for the explained class, blue: against), one line per
    text; self-contained (no scripts, no external files)."""
    rows = []
    for a in attributions:
        top = max((abs(s) for s, sp in zip(a.scores, a.special, strict=True) if not sp), default=1)
        top = top or 1.0
        spans = []
        for tok, s, sp in zip(a.tokens, a.scores, a.special, strict=True):
            if sp:
                continue
            alpha = abs(s) / top
            color = f"rgba(220,40,40,{alpha:.2f})" if s > 0 else f"rgba(40,90,220,{alpha:.2f})"
            spans.append(
                f'<span title="{s:+.4f}" style="background:{color}">'
                f"{html.escape(_token_text(tok))}</span>"
            )
        rows.append(
            f"<div class=ex><div class=head>explains <b>{html.escape(labels[a.target])}</b> "
            f"(p = {a.prob:.3f}; completeness error {a.delta:+.4f})</div>"
            f"<div class=toks>{' '.join(spans)}</div></div>"
        )
    page = (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>"
        'body{font-family:"Noto Sans CJK SC","Noto Sans SC",sans-serif;margin:1.5em}'
        ".ex{margin-bottom:1.2em}.head{color:#444;font-size:13px}.toks{line-height:1.9}"
        "span{padding:1px 2px;border-radius:3px}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>Integrated Gradients per token: red pushes towards "
        "the explained class, blue away from it; hover for the score.</p>"
        + "".join(rows)
        + "</body></html>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path

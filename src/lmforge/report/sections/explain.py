"""The explain stage: attention heatmaps (``explain/attention/*.png``), the Integrated Gradients
highlights (``attributions.html``, shown in a sandboxed frame), faithfulness (AOPC), attack
success rates with the texts an attack flipped, TCAV per concept and layer, and guard checks.

Keys read (each optional): the summary's ``examples``, ``aopc_ig``, ``aopc_random``,
``aopc_attention``, ``ig_max_completeness_error``, ``attacks`` (per attack: ``examples``,
``clean_accuracy``, ``accuracy_under_attack``, ``attack_success_rate``, ...) and ``guards``;
``attacks.jsonl`` rows (``attack``, ``status``, ``label``, ``original_pred``,
``perturbed_pred``, ``changed``, ``units``, ``original``, ``perturbed``); ``tcav.json``
(concept -> ``target``, ``layers`` -> ``cav_accuracy``, ``tcav``, ``tcav_std``,
``random_tcav``, ``p_value``, ``significant``); ``guards.json`` when a stage writes one.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from lmforge.report.blocks import (
    Block,
    Details,
    Examples,
    Frame,
    KeyValues,
    Row,
    Table,
    Text,
    fmt,
    label,
)
from lmforge.report.plots import image
from lmforge.report.run import StageView
from lmforge.report.sections import nested_tables, register, scalar_metrics

ATTENTION_DIR = "attention"
ATTENTION_WIDTH = 1240  # px: twice the width a figure is shown at, sharp on a HiDPI screen
ATTENTION_BUDGET = 3_000_000  # bytes of heatmap files inlined; the rest are listed by path
FRAME_LIMIT = 2_000_000  # an attributions page larger than this is listed, not inlined
ATTACK_EXAMPLES = 3  # flipped texts shown per attack
ATTRIBUTION = ("examples", "aopc_ig", "aopc_random", "aopc_attention", "ig_max_completeness_error")
ATTACK_COLUMNS = (
    "examples",
    "clean_accuracy",
    "accuracy_under_attack",
    "attack_success_rate",
    "mean_share_changed",
    "queries_per_example",
)


@register("explain", "Explanations")
def render(view: StageView) -> list[Block]:
    m = view.metrics
    blocks: list[Block] = [*_faithfulness(m), *_attention(view), *_attributions(view)]
    blocks += _attacks(view)
    blocks += _tcav(view)
    blocks += _guards(view)
    shown = {*ATTRIBUTION, "attacks", "tcav", "guards"}
    rest = scalar_metrics(m, shown) + nested_tables(m, shown)
    if rest:
        blocks.append(Details("Other metrics", rest))
    return blocks


def _faithfulness(m: dict[str, Any]) -> list[Block]:
    rows = [
        ("examples explained", fmt(m.get("examples"))),
        ("AOPC, Integrated Gradients", fmt(m.get("aopc_ig"))),
        ("AOPC, attention rollout", fmt(m.get("aopc_attention"))),
        ("AOPC, random order (reference)", fmt(m.get("aopc_random"))),
        ("IG completeness error (max)", fmt(m.get("ig_max_completeness_error"))),
    ]
    rows = [(k, v) for k, v in rows if v]
    if not rows:
        return []
    return [
        KeyValues(rows, "Faithfulness of the explanations"),
        Text(
            "AOPC: the mean drop of the predicted class's probability as the top-ranked tokens "
            "are deleted one by one; an explanation is faithful when it beats the random order.",
            "note",
        ),
    ]


def _attention(view: StageView) -> list[Block]:
    """The heatmaps, one row per example (its layers, then the rollout), within a budget."""
    if view.dir is None or not (view.dir / ATTENTION_DIR).is_dir():
        return []
    root = view.dir
    examples: dict[int, list[tuple[int, str, Path]]] = {}
    for path in sorted((root / ATTENTION_DIR).glob("*.png")):
        match = re.fullmatch(r"ex(\d+)_(?:layer(\d+)|(rollout))\.png", path.name)
        if match is None:  # a figure named otherwise: shown after the examples, by its name
            examples.setdefault(1_000_000, []).append((0, path.stem, path))
            continue
        ex, layer = int(match.group(1)), match.group(2)
        order = int(layer) if layer is not None else 1_000_000  # the rollout last
        what = f"layer {layer}, heads averaged" if layer is not None else "attention rollout"
        examples.setdefault(ex, []).append((order, what, path))
    blocks: list[Block] = []
    used, left = 0, []
    for ex in sorted(examples):
        figures: list[Block] = []
        for _, what, path in sorted(examples[ex]):
            caption = f"Example {ex + 1}: {what}" if ex != 1_000_000 else what
            fig = image(path, caption, ATTENTION_WIDTH) if used < ATTENTION_BUDGET else None
            if fig is None:
                left.append(f"{view.name}/{ATTENTION_DIR}/{path.name}")
                continue
            used += len(fig.src or "")
            figures.append(fig)
        if figures:
            blocks.append(Row(figures, narrow=True))
    if not blocks:
        return []
    intro = "Attention of each test example (rows: the attending token, columns: the attended)."
    if (root / "attention.html").is_file():
        intro += f" Every layer and head: {view.name}/attention.html (interactive)."
    out: list[Block] = [Text(intro)]
    if len(blocks) > 1:
        out += [blocks[0], Details(f"{len(blocks) - 1} more example(s)", blocks[1:])]
    else:
        out += blocks
    if left:
        out.append(Text(f"Not inlined (the page would be too heavy): {', '.join(left)}", "note"))
    return out


def _attributions(view: StageView) -> list[Block]:
    path = view.path("attributions.html")
    if path is None:
        return []
    if path.stat().st_size > FRAME_LIMIT:
        return [Text(f"Integrated Gradients highlights: {view.name}/attributions.html", "note")]
    page = path.read_text(encoding="utf-8", errors="replace")
    rows = max(1, page.count("class=ex"))
    return [
        Frame(
            "Integrated Gradients per token: red pushes towards the explained class, blue "
            "away from it (hover a token for its score)",
            page,
            min(600, 140 + 110 * rows),
        )
    ]


def _attacks(view: StageView) -> list[Block]:
    attacks = view.metrics.get("attacks")
    if not isinstance(attacks, dict) or not attacks:
        return []
    stats = {k: v for k, v in attacks.items() if isinstance(v, dict)}
    columns = [c for c in ATTACK_COLUMNS if any(c in v for v in stats.values())]
    columns += [
        c for v in stats.values() for c in v if c not in columns and isinstance(v[c], int | float)
    ]
    columns = list(dict.fromkeys(columns))
    rows = [[name, *(_share(c, v.get(c)) for c in columns)] for name, v in stats.items()]
    blocks: list[Block] = [
        Table(
            ["attack", *map(label, columns)],
            rows,
            "Adversarial attacks",
            "attack success rate: share of the examples the model had right whose prediction "
            "an attack flipped; accuracy under attack: accuracy with every flip counted.",
        )
    ]
    flipped = _flipped(view.read_jsonl("attacks.jsonl"))
    if flipped:
        blocks.append(Details("Texts an attack flipped", flipped))
    return blocks


def _flipped(rows: list[dict[str, Any]]) -> list[Block]:
    blocks: list[Block] = []
    by_attack: dict[str, list[tuple[str, str]]] = {}
    for r in rows:
        items = by_attack.setdefault(str(r.get("attack", "")), [])
        if r.get("status") != "success" or len(items) >= 2 * ATTACK_EXAMPLES:
            continue
        original, perturbed = str(r.get("original", "")), str(r.get("perturbed", ""))
        head = (
            f"label {r.get('label')}: predicted {r.get('original_pred')} → "
            f"{r.get('perturbed_pred')}, {fmt(r.get('changed'))} of {fmt(r.get('units'))} "
            "changed"
        )
        items.append((head, _changes(original, perturbed)))
        items.append(("perturbed text", perturbed[:1500] + ("…" if len(perturbed) > 1500 else "")))
    for attack, items in by_attack.items():
        if items:
            blocks.append(Examples(f"{attack} attack", items))
    return blocks


def _changes(original: str, perturbed: str) -> str:
    """The words (or characters, for text without spaces) the attack replaced, in order."""
    split = str.split if " " in original else list
    a, b = split(original), split(perturbed)
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op != "equal":
            sep = " " if split is str.split else ""
            out.append(f"{sep.join(a[i1:i2]) or '∅'} → {sep.join(b[j1:j2]) or '∅'}")
    return "; ".join(out) or "(no visible change)"


def _tcav(view: StageView) -> list[Block]:
    data = view.read_json("tcav.json")
    if not isinstance(data, dict):
        data = view.metrics.get("tcav")
    if not isinstance(data, dict) or not data:
        return []
    rows = []
    for concept, c in data.items():
        layers = c.get("layers") if isinstance(c, dict) else None
        if not isinstance(layers, dict):
            continue
        for layer, r in layers.items():
            if not isinstance(r, dict):
                continue
            std = r.get("tcav_std")
            rows.append(
                [
                    str(concept),
                    str(c.get("target", "")),
                    str(layer),
                    fmt(r.get("cav_accuracy")),
                    fmt(r.get("tcav")) + (f" ± {fmt(std)}" if isinstance(std, float) else ""),
                    fmt(r.get("random_tcav")),
                    fmt(r.get("p_value")),
                    "yes" if r.get("significant") else "no",
                ]
            )
    table = Table(
        ["concept", "class", "layer", "CAV accuracy", "TCAV", "random TCAV", "p", "significant"],
        rows,
        "Concept sensitivity (TCAV)",
        "TCAV: share of the class's examples whose logit rises along the concept's direction; "
        "significant: differs from random directions' scores (t-test, p < 0.05).",
    )
    plot = view.path("tcav.png")
    fig = image(plot, "TCAV score and CAV accuracy per layer") if plot else None
    return [Row([table, fig])] if fig is not None else [table]


def _guards(view: StageView) -> list[Block]:
    """Guard checks, when the stage records any (``guards`` in its metrics or guards.json)."""
    guards = view.read_json("guards.json")
    if guards is None:
        guards = view.metrics.get("guards")
    if isinstance(guards, list) and guards:
        guards = {"checks": guards}
    if not isinstance(guards, dict) or not guards:
        return []
    rows = scalar_metrics(guards)
    out: list[Block] = [KeyValues(rows, "Guard checks")] if rows else []
    return out + nested_tables(guards)


def _share(column: str, value: Any) -> str:
    if isinstance(value, float) and any(w in column for w in ("accuracy", "rate", "share")):
        return f"{100 * value:.1f}%"
    return fmt(value)

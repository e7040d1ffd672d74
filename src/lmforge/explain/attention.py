"""Attention weights per layer and head, attention rollout, and their figures.

Rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers"): average the
heads of each layer, add the identity for the residual stream, renormalise rows, and multiply
the layers' matrices from the first up; row ``i`` of the product says how much each input
token flows into position ``i`` at the top. Figures: one PNG heatmap per chosen layer/head plus
rollout, and one self-contained HTML page (data inline, no network) with a layer/head selector.
"""

from __future__ import annotations

import contextlib
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.core.errors import LmforgeError
from lmforge.explain.classifier import Classifier


@dataclass(frozen=True)
class AttentionMaps:
    """One text's attention: ``weights`` is (layers, heads, T, T), rows sum to 1."""

    text: str
    tokens: list[str]
    weights: Any  # numpy float32 (L, H, T, T)

    @property
    def rollout(self) -> Any:
        return attention_rollout(self.weights)


def use_eager_attention(model: Any) -> None:
    """Switch to the eager attention kernel: SDPA and flash kernels never form the weights
    (transformers then returns an empty tuple for ``output_attentions``)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base.config, "_attn_implementation", "eager") != "eager":
        if not hasattr(base, "set_attn_implementation"):
            return
        # an architecture without an eager kernel is caught by the caller (no weights)
        with contextlib.suppress(ValueError, NotImplementedError):
            base.set_attn_implementation("eager")


def attention_maps(clf: Classifier, text: str) -> AttentionMaps:
    """Per-layer, per-head attention of ``clf``'s model on ``text`` (truncated as trained).

    Raises:
        LmforgeError: the model returns no attention weights (an architecture without them).
    """
    import torch

    use_eager_attention(clf.model)
    enc = clf.encode([text])
    with torch.no_grad():
        out = clf.model(**enc, output_attentions=True)
    attentions = getattr(out, "attentions", None)
    if not attentions:
        kind = type(
            clf.model.get_base_model() if hasattr(clf.model, "get_base_model") else clf.model
        )
        raise LmforgeError(
            f"the model ({kind.__name__}) returns no attention weights (output_attentions), so "
            "there are no attention maps to draw; use attribution (integrated gradients) instead"
        )
    weights = torch.stack([a[0].float() for a in attentions]).cpu().numpy()  # (L, H, T, T)
    tokens = clf.tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    return AttentionMaps(text, tokens, weights)


def attention_rollout(weights: Any) -> Any:
    """Rollout of (L, H, T, T) attention: a (T, T) matrix whose rows sum to 1."""
    import numpy as np

    layers, _, t, _ = weights.shape
    rollout = np.eye(t)
    for layer in range(layers):
        a = weights[layer].mean(0) + np.eye(t)  # heads averaged, residual added
        a = a / a.sum(-1, keepdims=True)
        rollout = a @ rollout
    return rollout


def check_layer_head(maps: AttentionMaps, layer: int, head: int) -> None:
    """Raise naming the valid range when ``layer``/``head`` is out of it."""
    layers, heads = maps.weights.shape[:2]
    if not 0 <= layer < layers:
        raise LmforgeError(f"attention layer {layer} does not exist; valid: 0..{layers - 1}")
    if not 0 <= head < heads:
        raise LmforgeError(f"attention head {head} does not exist; valid: 0..{heads - 1}")


def plot_attention(matrix: Any, tokens: list[str], path: Path, title: str) -> Path:
    """A (T, T) heatmap with the tokens on both axes (CJK tokens render: core.plots)."""
    from lmforge.core.plots import figure

    size = max(4.0, min(16.0, 0.28 * len(tokens) + 2))
    with figure(path, (size, size)) as (fig, ax):
        im = ax.imshow(matrix, cmap="viridis", vmin=0)
        ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
        ax.set_yticks(range(len(tokens)), tokens, fontsize=7)
        ax.set_xlabel("attended token (key)")
        ax.set_ylabel("attending token (query)")
        ax.set_title(title)
        fig.colorbar(im, ax=ax, shrink=0.7)
    return path


def write_attention_pngs(
    maps: AttentionMaps, out: Path, stem: str, layers: list[int] | None = None
) -> list[Path]:
    """Heatmaps of the head-averaged attention of ``layers`` (default: first and last) and
    of the rollout; returns the PNG paths."""
    n = maps.weights.shape[0]
    chosen = sorted({0, n - 1}) if layers is None else layers
    paths = []
    for layer in chosen:
        check_layer_head(maps, layer, 0)
        paths.append(
            plot_attention(
                maps.weights[layer].mean(0),
                maps.tokens,
                out / f"{stem}_layer{layer}.png",
                f"layer {layer}, heads averaged",
            )
        )
    paths.append(plot_attention(maps.rollout, maps.tokens, out / f"{stem}_rollout.png", "rollout"))
    return paths


_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:"Noto Sans CJK SC","Noto Sans SC",sans-serif;margin:1.5em}}
.ex{{margin-bottom:2.5em}} select{{margin-right:1em}}
table{{border-collapse:collapse;font-size:11px}} td{{width:14px;height:14px;padding:0}}
th{{font-weight:normal;white-space:nowrap;padding:0 4px}}
th.col{{writing-mode:vertical-rl}}
</style></head><body>
<h1>{title}</h1>
<p>Pick a layer and head (or the mean of the heads, or the rollout over all layers). Row: the
attending token; column: the token it attends to; darker is more attention. Hover a cell for
its weight.</p>
<div id="root"></div>
<script>
const DATA = {data};
// each matrix is T*T bytes, base64: weight = byte / 255 (1/255 resolution is plenty to look at)
function unpack(b64, t) {{
  const raw = atob(b64), rows = [];
  for (let i = 0; i < t; i++) {{
    const row = [];
    for (let j = 0; j < t; j++) row.push(raw.charCodeAt(i * t + j) / 255);
    rows.push(row);
  }}
  return rows;
}}
const esc = s => s.replace(/&/g,"&amp;").replace(/</g,"&lt;").replace(/"/g,"&quot;");
function draw(ex, box) {{
  const layer = box.querySelector(".layer").value, head = box.querySelector(".head").value;
  let m;
  if (layer === "rollout") m = ex.rollout;
  else if (head === "mean") m = ex.mean[+layer];
  else m = ex.weights[+layer][+head];
  const t = ex.tokens;
  m = unpack(m, t.length);
  let h = "<table><tr><th></th>" + t.map(s => "<th class=col>" + esc(s) + "</th>").join("") + "</tr>";
  m.forEach((row, i) => {{
    const mx = Math.max(...row) || 1;
    h += "<tr><th>" + esc(t[i]) + "</th>" + row.map((v, j) =>
      `<td title="${{esc(t[i])}} -> ${{esc(t[j])}}: ${{v.toFixed(3)}}" style="background:rgba(30,60,200,${{(v / mx).toFixed(3)}})"></td>`).join("") + "</tr>";
  }});
  box.querySelector(".grid").innerHTML = h + "</table>";
}}
DATA.forEach((ex, k) => {{
  const box = document.createElement("div"); box.className = "ex";
  const layers = ex.weights.map((_, i) => `<option value="${{i}}">layer ${{i}}</option>`).join("");
  const heads = ex.weights[0].map((_, i) => `<option value="${{i}}">head ${{i}}</option>`).join("");
  box.innerHTML = `<h3>Example ${{k + 1}}: ${{esc(ex.label)}}</h3>` +
    `<select class="layer">${{layers}}<option value="rollout">rollout</option></select>` +
    `<select class="head"><option value="mean">mean of heads</option>${{heads}}</select>` +
    `<div class="grid"></div>`;
  document.getElementById("root").appendChild(box);
  box.querySelectorAll("select").forEach(s => s.onchange = () => draw(ex, box));
  draw(ex, box);
}});
</script></body></html>
"""


def write_attention_html(
    examples: list[tuple[AttentionMaps, str]], path: Path, title: str = "Attention"
) -> Path:
    """One self-contained page for ``(maps, caption)`` pairs: weights inline (one byte per
    weight), a layer/head selector per example, no external scripts or fonts."""

    import base64

    import numpy as np

    def r(x: Any) -> str:  # (T, T) in [0, 1] -> base64 of T*T bytes (12 layers x 12 heads x
        # 128^2 weights as JSON text ran to ~40 MB a page; as bytes ~2.5 MB of base64)
        q = np.clip(np.rint(np.asarray(x, dtype=np.float64) * 255), 0, 255).astype(np.uint8)
        return base64.b64encode(q.tobytes()).decode("ascii")

    data = [
        {
            "label": caption,
            "tokens": maps.tokens,
            "weights": [[r(h) for h in layer] for layer in maps.weights],
            "mean": [r(layer.mean(0)) for layer in maps.weights],
            "rollout": r(maps.rollout),
        }
        for maps, caption in examples
    ]
    payload = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")  # no early </script>
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_HTML.format(title=html.escape(title), data=payload), encoding="utf-8")
    return path

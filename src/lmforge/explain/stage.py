"""The explain stage and ``lmforge explain``: why a fine-tuned classifier predicts what it
does, and how easily that changes.

Outputs (in ``RUN/explain/``)::

    attention.html           every layer and head (+ rollout) per example, a selector each
    attention/ex<i>_*.png    head-averaged heatmaps of the chosen layers and the rollout
    attributions.html        Integrated Gradients token highlights
    attacks.jsonl            per attacked example: original, perturbed, predictions, status
    tcav.json, tcav.png      CAV accuracy per layer, TCAV scores, p-values

The model is loaded from disk through its manifest (``load_artifact``), as evaluate does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmforge.core.errors import DataError
from lmforge.core.log import logger
from lmforge.core.stage import StageContext, StageResult, StageSpec
from lmforge.data.document import Document
from lmforge.explain.classifier import Classifier
from lmforge.explain.config import ExplainConfig


def labelled(clf: Classifier, docs: list[Document]) -> tuple[list[str], list[int]]:
    """Texts and class ids of ``docs``; a label the model does not know is an error."""
    unknown = sorted({str(d.label) for d in docs if str(d.label) not in clf.labels})
    if unknown:
        raise DataError(f"explain: labels {unknown[:5]} are not among the model's {clf.labels}")
    return [d.text for d in docs], [clf.labels.index(str(d.label)) for d in docs]


def explain_attention(
    clf: Classifier, texts: list[str], cfg: ExplainConfig, out: Path
) -> dict[str, str]:
    from lmforge.explain.attention import (
        attention_maps,
        write_attention_html,
        write_attention_pngs,
    )

    examples = []
    for i, text in enumerate(texts):
        maps = attention_maps(clf, text)
        pred = clf.labels[clf.predict([text])[0]]
        examples.append((maps, f"predicted {pred}"))
        write_attention_pngs(maps, out / "attention", f"ex{i}", cfg.attention_layers)
    write_attention_html(examples, out / "attention.html", "Attention per layer and head")
    return {"attention_html": "attention.html", "attention_png": "attention"}


def explain_attribution(
    clf: Classifier, texts: list[str], cfg: ExplainConfig, out: Path, seed: int
) -> tuple[dict[str, Any], dict[str, str]]:
    from lmforge.explain.attribution import (
        faithfulness,
        integrated_gradients,
        write_highlights_html,
    )

    acfg = cfg.attribution
    assert acfg is not None
    attributions = [integrated_gradients(clf, t, n_steps=acfg.steps) for t in texts]
    write_highlights_html(attributions, clf.labels, out / "attributions.html")
    f = faithfulness(clf, attributions, k=acfg.aopc_k, random_runs=acfg.random_runs, seed=seed)
    metrics = {
        "aopc_ig": f.integrated_gradients,
        "aopc_random": f.random,
        "ig_max_completeness_error": max(abs(a.delta) for a in attributions),
    }
    if f.attention is not None:
        metrics["aopc_attention"] = f.attention
    return metrics, {"attributions_html": "attributions.html"}


def explain_attacks(
    clf: Classifier, texts: list[str], labels: list[int], cfg: ExplainConfig, out: Path, seed: int
) -> dict[str, Any]:
    from lmforge.explain.attacks import run_attack

    acfg = cfg.attacks
    assert acfg is not None
    texts, labels = texts[: acfg.max_examples], labels[: acfg.max_examples]
    metrics: dict[str, Any] = {}
    with (out / "attacks.jsonl").open("w", encoding="utf-8") as f:
        for name in acfg.methods:
            summary = run_attack(
                name,
                clf,
                texts,
                labels,
                max_share=acfg.max_share,
                candidates=acfg.candidates,
                seed=seed,
            )
            metrics[name] = summary.metrics()
            for r in summary.results:
                row = {
                    "attack": name,
                    "status": r.status,
                    "label": clf.labels[r.label],
                    "original_pred": clf.labels[r.original_pred],
                    "perturbed_pred": clf.labels[r.perturbed_pred],
                    "changed": r.changed,
                    "units": r.units,
                    "queries": r.queries,
                    "original": r.original,
                    "perturbed": r.perturbed,
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            logger.info(
                "explain: %s attack: accuracy %.3f -> %.3f under attack (success rate %.3f)",
                name,
                summary.clean_accuracy,
                summary.accuracy_under_attack,
                summary.attack_success_rate,
            )
    return metrics


def explain_model(
    clf: Classifier, docs: list[Document], cfg: ExplainConfig, out: Path, seed: int = 0
) -> tuple[dict[str, Any], dict[str, str]]:
    """Run every configured part of ``cfg`` on ``docs``; write figures into ``out``."""
    if not docs:
        raise DataError("explain: no test examples")
    out.mkdir(parents=True, exist_ok=True)
    texts, labels = labelled(clf, docs)
    shown = texts[: cfg.examples]
    metrics: dict[str, Any] = {"examples": len(shown)}
    artifacts: dict[str, str] = {}
    if cfg.attention:
        artifacts.update(explain_attention(clf, shown, cfg, out))
    if cfg.attribution is not None:
        m, a = explain_attribution(clf, shown, cfg, out, seed)
        metrics.update(m)
        artifacts.update(a)
    if cfg.attacks is not None:
        metrics["attacks"] = explain_attacks(clf, texts, labels, cfg, out, seed)
        artifacts["attacks"] = "attacks.jsonl"
    if cfg.tcav is not None:
        from lmforge.explain.tcav import run_tcav

        m, a = run_tcav(clf, texts, labels, cfg.tcav, out, seed)
        metrics["tcav"] = m
        artifacts.update(a)
    return metrics, artifacts


def run_explain_stage(ctx: StageContext, out: Path) -> StageResult:
    from lmforge.data.sources import LoadStats, load_source
    from lmforge.evaluate.stage import scored_split
    from lmforge.models import resolve_model_ref
    from lmforge.tasks.artifact import load_artifact
    from lmforge.tasks.data import labelled_source

    cfg, fcfg = ctx.recipe.explain, ctx.recipe.finetune
    assert cfg is not None and fcfg is not None  # _check requires both
    path = resolve_model_ref(cfg.model, ctx.root)
    clf = Classifier.from_artifact(
        load_artifact(path, trust_remote_code=fcfg.model.trust_remote_code)
    )
    if cfg.test is not None:
        docs = load_source(labelled_source(fcfg, cfg.test), LoadStats())
    else:
        docs = scored_split(fcfg, ctx)
    logger.info("explain: %s on %d test examples", path, len(docs))
    metrics, artifacts = explain_model(clf, docs, cfg, out, ctx.recipe.seed)
    ctx.metrics.log_dict(
        "explain", {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    )
    return StageResult(metrics=metrics, artifacts=artifacts)


def _inputs(recipe: Any) -> Any:
    from lmforge.core.hashing import fingerprint_path
    from lmforge.models import model_identity

    cfg = recipe.explain
    concepts = [
        fingerprint_path(c.examples) for c in (cfg.tcav.concepts if cfg.tcav else []) if c.examples
    ]
    return {
        "test": fingerprint_path(cfg.test) if cfg.test else None,
        "model": model_identity(cfg.model),
        "concepts": concepts,
    }


def _check(recipe: Any) -> None:
    if recipe.finetune is None:
        raise ValueError("explain: needs a finetune section (its task, data columns and model)")
    if recipe.finetune.task != "classification":
        raise ValueError(
            f"explain: explains text classifiers; finetune.task is {recipe.finetune.task!r}"
        )
    if recipe.explain.model == "finetune":
        from lmforge.finetune.stage import check_saved_model

        check_saved_model(recipe, "explain.model")


SPEC = StageSpec(
    name="explain",
    config=ExplainConfig,
    description="Explain the fine-tuned classifier: attention, attributions, TCAV, attacks.",
    run=run_explain_stage,
    inputs=_inputs,
    needs=("data", "finetune"),
    check=_check,
    command=False,  # `lmforge explain MODEL_DIR` explains any saved classifier
)

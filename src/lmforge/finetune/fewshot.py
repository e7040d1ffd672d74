"""Zero-shot and few-shot text classification, and the curve of accuracy against k.

Three ways to classify with k labelled examples per class (k may be 0):

* **embedding** (encoders, e.g. MiniLM): a text gets the label whose prototype is most
  similar; at k=0 the prototype is the embedding of the label's description, with k shots the
  centroid of the shots and the description (``finetune.scorers``).
* **likelihood** (causal LMs, e.g. SmolLM2): the label whose verbalizer is likeliest after
  the prompt; with k shots the prompt starts with k demonstrations per class (in-context
  learning, ``finetune.scorers``).
* **k-shot fine-tuning**: the normal training path (``finetune.stage.train_and_test``) on a
  k-per-class sample of the training split.

``run_fewshot`` is the finetune stage for ``finetune.method`` zero-shot / in-context and for
``fewshot.curve``: one method at one k, or every curve method at every k.
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.core.errors import DataError, LmforgeError
from lmforge.core.log import logger
from lmforge.core.metrics import numbers
from lmforge.core.stage import StageResult
from lmforge.data.document import Document
from lmforge.finetune.fewshot_config import (
    CurveMethod,
    FewShotConfig,
    kind_of_architectures,
    scorer_kind,
)
from lmforge.finetune.scorers import build_prompts, descriptions, embed, label_scores, prototypes

if TYPE_CHECKING:
    import torch

    from lmforge.core.stage import StageContext
    from lmforge.finetune.config import FinetuneConfig
    from lmforge.tasks.base import Task
    from lmforge.tasks.classification import LabelInfo


# ---------------------------------------------------------------- sampling


def k_shot(docs: list[Document], k: int, seed: int) -> list[Document]:
    """``k`` examples of every class, drawn without replacement, in a seeded shuffled order.

    Each class is shuffled once with ``seed`` and its first ``k`` kept, so the k=4 sample is
    part of the k=16 sample: points of a curve differ by the added examples, not by luck.

    Raises:
        DataError: a class has fewer than ``k`` examples, or labels are missing / multi-label.
    """
    by_class: dict[str, list[Document]] = defaultdict(list)
    for i, d in enumerate(docs):
        if not isinstance(d.label, str):
            raise DataError(f"k-shot sampling needs one label per row; row {i} has {d.label!r}")
        by_class[d.label].append(d)
    short = {label: len(v) for label, v in by_class.items() if len(v) < k}
    if short:
        raise DataError(
            f"k-shot sampling with k={k} needs {k} training examples of every class; "
            f"{', '.join(f'{lab!r} has {n}' for lab, n in sorted(short.items()))} "
            "(lower fewshot.shots / fewshot.curve or add data)"
        )
    rng = random.Random(seed)
    sample: list[Document] = []
    for label in sorted(by_class):
        members = list(by_class[label])
        rng.shuffle(members)
        sample.extend(members[:k])
    random.Random(seed + 1).shuffle(sample)
    return sample


# ---------------------------------------------------------------- models


def scorer_kind_of(path: Path, zero_shot: str, where: str) -> str:
    """embedding or likelihood for the model at ``path``, checked against its architecture.

    Raises:
        LmforgeError: an encoder-decoder, an unknown architecture with ``zero_shot: auto``, or
            a scorer the model cannot do (an encoder for likelihood, a decoder for embedding).
    """
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    if getattr(config, "is_encoder_decoder", False):
        raise LmforgeError(
            f"{where} is an encoder-decoder model, which zero-/few-shot scoring does not "
            "support; use an encoder (minilm-l6) or a decoder (smollm2-135m)"
        )
    kind = kind_of_architectures(config.architectures or [], getattr(config, "is_decoder", False))
    if kind is None and zero_shot == "auto":
        raise LmforgeError(
            f"{where}: config.json names no architectures, so lmforge cannot tell an encoder "
            "from a decoder; set fewshot.zero_shot to embedding or likelihood"
        )
    try:
        return scorer_kind(zero_shot, kind, where)  # type: ignore[arg-type]
    except ValueError as e:
        raise LmforgeError(str(e)) from None


def load_scoring_model(path: Path, kind: str) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer): a bare encoder for embeddings, a causal LM otherwise."""
    from transformers import AutoModel, AutoModelForCausalLM

    from lmforge.tasks.base import load_tokenizer

    auto = AutoModel if kind == "embedding" else AutoModelForCausalLM
    return auto.from_pretrained(path).eval(), load_tokenizer(path)


# ---------------------------------------------------------------- one point of the curve


@dataclass
class Problem:
    """What every point of a run shares: the config, the labelled data and the task."""

    ctx: StageContext
    cfg: FinetuneConfig
    few: FewShotConfig
    task: Task
    info: LabelInfo
    train: list[Document]
    test: list[Document]
    device: torch.device  # where training points train (finetune.device)

    @property
    def seed(self) -> int:
        return self.ctx.recipe.seed

    def model_dir(self, path: str) -> Path:
        """A built-in name, directory or 'pretrain' -> the local model directory."""
        from lmforge.finetune.stage import model_dir

        model = self.cfg.model.model_copy(update={"path": path})
        return model_dir(self.cfg.model_copy(update={"model": model}), self.ctx)


@dataclass
class Point:
    """One method at one k: test predictions and their metrics."""

    predictions: list[str]
    scores: dict[str, Any]  # the task's metrics
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)
    label_scores: torch.Tensor | None = None  # (N, L), inference methods only


class InContext:
    """A model that classifies from k examples without training: embedding or likelihood."""

    def __init__(self, problem: Problem, path: str, where: str) -> None:
        self.problem, self.few = problem, problem.few
        local = problem.model_dir(path)
        self.kind = scorer_kind_of(local, self.few.zero_shot, f"{where} ({path!r})")
        logger.info("fewshot: %s scoring with %s", self.kind, path)
        self.model, self.tokenizer = load_scoring_model(local, self.kind)
        self.texts = [d.text for d in problem.test]
        self._test_emb: torch.Tensor | None = None  # embedded once for every k

    def point(self, k: int) -> Point:
        t0 = time.perf_counter()
        labels = self.problem.info.labels
        shots = k_shot(self.problem.train, k, self.problem.seed) if k else []
        if self.kind == "embedding":
            scores, details = self._embedding(labels, shots)
        else:
            scores, details = self._likelihood(labels, shots)
        predictions = [labels[j] for j in scores.argmax(-1).tolist()]
        seconds = time.perf_counter() - t0
        refs = [d.label for d in self.problem.test]
        result = self.problem.task.metrics(refs, predictions, self.problem.info)
        return Point(predictions, result, seconds, {"scorer": self.kind, **details}, scores)

    def _likelihood(
        self, labels: list[str], shots: list[Document]
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        context = min(
            getattr(self.model.config, "max_position_embeddings", None) or 2048,
            self.tokenizer.model_max_length,
        )
        max_length = self.few.query_tokens or self.problem.cfg.max_length
        prompts = build_prompts(
            self.tokenizer, self.few, labels, shots, self.texts, max_length, context
        )
        details = {
            "prompt_prefix_tokens": len(prompts.prefix),
            "demo_tokens": prompts.demo_tokens,
            "truncated_test": prompts.truncated,
            "verbalizer_tokens": [len(c) for c in prompts.continuations],
        }
        return label_scores(self.model, self.tokenizer, prompts, self.few), details

    def _embedding(
        self, labels: list[str], shots: list[Document]
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        max_length = self.problem.cfg.max_length
        if self._test_emb is None:
            self._test_emb = embed(self.model, self.tokenizer, self.texts, max_length)
        texts = descriptions(labels, self.few)
        described = embed(self.model, self.tokenizer, texts, max_length)
        shot_emb = embed(self.model, self.tokenizer, [d.text for d in shots], max_length)
        shot_labels = [labels.index(d.label) for d in shots]  # type: ignore[arg-type]
        protos = prototypes(described, shot_emb, shot_labels, self.few.description_weight)
        return self._test_emb @ protos.T, {"descriptions": texts}


def training_point(problem: Problem, method: str, path: str, k: int) -> Point:
    """Fine-tune a fresh copy of the model on the k-shot sample with ``method``.

    Tiny samples get more epochs, so that every k trains at least ``fewshot.min_steps``.
    """
    import torch

    from lmforge.finetune.stage import train_and_test

    cfg, task = problem.cfg, problem.task
    sample = k_shot(problem.train, k, problem.seed)
    steps_per_epoch = -(-len(sample) // cfg.batch_size)
    epochs = max(cfg.epochs, -(-problem.few.min_steps // steps_per_epoch))
    run_cfg = cfg.model_copy(update={"method": method, "epochs": epochs})
    local = problem.model_dir(path)
    torch.manual_seed(problem.seed)  # the fresh head's initialisation
    processor = task.load_processor(local)
    model = task.load_model(local, problem.info, trust_remote_code=cfg.model.trust_remote_code)
    t0 = time.perf_counter()
    splits = {"train": sample, "test": problem.test}
    run = train_and_test(
        task, run_cfg, splits, problem.info, model, processor, problem.seed, problem.device
    )
    details = {"epochs": epochs, "train_examples": len(sample), "trainable_params": run.trainable}
    return Point(run.predictions, run.scores, time.perf_counter() - t0, details)


# ---------------------------------------------------------------- the stage


def run_fewshot(ctx: StageContext, out: Path) -> StageResult:
    """Zero-/few-shot classification: one method at ``fewshot.shots``, or the curve over k.

    Test texts are a seeded sample of at most ``fewshot.max_test``; the TF-IDF baseline is
    trained on the whole training split and scored on the same texts.
    """
    from lmforge.tasks import TASKS
    from lmforge.tasks.data import load_labelled

    cfg = ctx.recipe.finetune
    assert cfg is not None
    few = cfg.fewshot or FewShotConfig()
    task = TASKS.get(cfg.task)
    splits = load_labelled(cfg, ctx)
    info = task.prepare(splits)
    if info.multi_label:
        raise DataError("zero-/few-shot classification needs one label per row, not multi-label")
    test = capped_test(splits["test"], few.max_test, ctx.recipe.seed)
    if len(test) < len(splits["test"]):
        logger.info(
            "fewshot: scoring %d of %d test texts (fewshot.max_test)",
            len(test),
            len(splits["test"]),
        )
    from lmforge.core.hardware import stage_device

    device = stage_device(cfg.device, "finetune.device")  # training points; scorers use the CPU
    problem = Problem(ctx, cfg, few, task, info, splits["train"], test, device)
    base = task.baseline({"train": problem.train, "test": test}, info) if task.baseline else None
    if few.curve:
        metrics, artifacts = run_curve(problem, out, base)
    else:
        metrics, artifacts = run_single(problem, out)
        if base is not None:
            metrics["accuracy_vs_baseline"] = metrics["accuracy"] / max(base["accuracy"], 1e-9)
    metrics.update(
        labels=info.labels,
        train_examples=len(problem.train),
        test_examples=len(test),
        test_available=len(splits["test"]),
        max_test=few.max_test,
        chance_accuracy=1 / len(info.labels),
        baseline=base,
    )
    ctx.metrics.log_dict("finetune", metrics)
    return StageResult(metrics=metrics, artifacts=artifacts)


def capped_test(test: list[Document], max_test: int | None, seed: int) -> list[Document]:
    """At most ``max_test`` test documents, a seeded sample (files are often sorted by class)."""
    if not max_test or len(test) <= max_test:
        return test
    return random.Random(seed).sample(test, max_test)


def run_single(problem: Problem, out: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """finetune.method zero-shot (k=0) or in-context (k = fewshot.shots) on the test split."""
    cfg, few, task = problem.cfg, problem.few, problem.task
    k = few.shots if cfg.method == "in-context" else 0
    assert cfg.model.path is not None
    point = InContext(problem, cfg.model.path, "finetune.model.path").point(k)
    write_scored_predictions(out / "predictions.jsonl", problem.test, point, problem.info.labels)
    artifacts = {"predictions": "predictions.jsonl"}
    if task.report is not None:
        title = f"{problem.ctx.recipe.name}: {point.details['scorer']}, k={k}"
        artifacts.update(task.report(point.scores, problem.info, out, title))
    metrics = {
        **numbers(point.scores),
        "per_class": point.scores["per_class"],
        "method": cfg.method,
        "model": cfg.model.path,
        "shots": k,
        "seconds": point.seconds,
        "seconds_per_example": point.seconds / len(problem.test),
        **point.details,
    }
    if point.details["scorer"] == "likelihood":
        metrics.update(score=few.score, calibrate=few.calibrate, template=few.template)
    return metrics, artifacts


def run_curve(
    problem: Problem, out: Path, base: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Every curve method at every k; k-shot fine-tuning skips k=0 (an untrained head)."""
    curve: dict[str, dict[str, float]] = {}
    detail: dict[str, dict[str, dict[str, Any]]] = {}
    skipped: dict[str, str] = {}
    ks = problem.few.curve or []
    with (out / "curve.jsonl").open("w", encoding="utf-8") as rows:
        for entry in problem.few.methods(problem.cfg.method):
            path = entry.model or problem.cfg.model.path
            assert path is not None
            name = curve_name(entry, path)
            curve[name], detail[name] = {}, {}
            scorer = None
            if entry.method == "in-context":
                where = "fewshot.curve_methods model" if entry.model else "finetune.model.path"
                scorer = InContext(problem, path, where)
            for k in ks:
                if scorer is None and k == 0:
                    skipped[name] = "k=0 is an untrained head (chance): see the in-context lines"
                    continue
                logger.info("fewshot curve: %s at k=%d", name, k)
                if scorer is not None:
                    point = scorer.point(k)
                else:
                    point = training_point(problem, entry.method, path, k)
                curve[name][str(k)] = point.scores["accuracy"]
                record = {
                    "accuracy": point.scores["accuracy"],
                    "macro_f1": point.scores["macro_f1"],
                    "seconds": point.seconds,
                    # how often each label was predicted: shows a collapse onto one label
                    "predicted": {lab: point.predictions.count(lab) for lab in problem.info.labels},
                    **{key: v for key, v in point.details.items() if key != "descriptions"},
                }
                detail[name][str(k)] = record
                rows.write(json.dumps({"method": name, "k": k, **record}) + "\n")
                rows.flush()
                problem.ctx.metrics.log_dict(
                    "finetune", {f"curve/{name}/accuracy": record["accuracy"]}, step=k
                )
            del scorer  # free the model before the next method loads
    tfidf = tfidf_curve(problem, [k for k in ks if k > 0])
    plot_curve(
        curve,
        tfidf,
        base["accuracy"] if base else None,
        len(problem.train),
        1 / len(problem.info.labels),
        out / "fewshot.png",
        f"{problem.ctx.recipe.name}: accuracy vs k ({len(problem.test)} test texts)",
    )
    # the headline numbers: the curve's best point (picked on the test texts; says which)
    name, k = max(((n, k) for n in curve for k in curve[n]), key=lambda p: curve[p[0]][p[1]])
    metrics = {
        "accuracy": curve[name][k],
        "macro_f1": detail[name][k]["macro_f1"],
        "best_point": {"method": name, "k": int(k)},
        "curve": curve,
        "curve_detail": detail,
        "tfidf_curve": tfidf,
    }
    if skipped:
        metrics["curve_skipped"] = skipped
    return metrics, {"curve_plot": "fewshot.png", "curve": "curve.jsonl"}


def tfidf_curve(problem: Problem, ks: list[int]) -> dict[str, float]:
    """TF-IDF + logistic regression trained on the same k-shot samples (k >= 1)."""
    from lmforge.tasks.baselines import tfidf_logreg

    refs = [d.label for d in problem.test]
    out = {}
    for k in ks:
        sample = k_shot(problem.train, k, problem.seed)
        texts, labels = [d.text for d in sample], [str(d.label) for d in sample]
        try:
            preds = tfidf_logreg(texts, labels, [d.text for d in problem.test])
        except ValueError as e:  # min_df=2 can leave no vocabulary at k=1
            logger.warning("fewshot: no TF-IDF baseline at k=%d (%s)", k, e)
            continue
        out[str(k)] = problem.task.metrics(refs, preds, problem.info)["accuracy"]
    return out


def curve_name(entry: CurveMethod, path: str) -> str:
    """``method:model`` (``in-context:smollm2-135m``, ``lora:minilm-l6``)."""
    return f"{entry.method}:{Path(path).name}"


def write_scored_predictions(
    path: Path, docs: list[Document], point: Point, labels: list[str]
) -> None:
    """One JSON line per test text: the text (shortened), reference, prediction, label scores."""
    with path.open("w", encoding="utf-8") as f:
        for i, (doc, pred) in enumerate(zip(docs, point.predictions, strict=True)):
            row: dict[str, Any] = {"text": doc.text[:300]}
            if doc.meta.get("id"):
                row["id"] = doc.meta["id"]
            row.update(reference=doc.label, prediction=pred)
            if point.label_scores is not None:
                scores = point.label_scores[i].tolist()
                row["scores"] = {lab: round(s, 4) for lab, s in zip(labels, scores, strict=True)}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def plot_curve(
    curve: dict[str, dict[str, float]],
    tfidf: dict[str, float],
    full_baseline: float | None,
    n_train: int,
    chance: float,
    path: Path,
    title: str,
) -> None:
    """Accuracy vs k, one line per method, on a symlog x axis (linear below 1, so k=0 shows)."""
    from lmforge.core.plots import figure

    with figure(path, (9, 4.5), constrained=False) as (_, ax):
        ks = sorted({int(k) for line in (*curve.values(), tfidf) for k in line})
        for name, line in curve.items():
            xs = sorted(int(k) for k in line)
            ax.plot(xs, [line[str(k)] for k in xs], marker="o", label=name)
        if tfidf:
            xs = sorted(int(k) for k in tfidf)
            ys = [tfidf[str(k)] for k in xs]
            ax.plot(xs, ys, ":", color="grey", marker=".", label="tfidf+logreg, k-shot")
        if full_baseline is not None:
            label = f"tfidf+logreg, all {n_train} train"
            ax.axhline(full_baseline, ls="--", color="black", lw=1, label=label)
        ax.axhline(chance, ls=":", color="red", lw=1, label="chance")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(-0.2, max(ks) * 1.3)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("k (labelled examples per class)")
        ax.set_ylabel("test accuracy")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))

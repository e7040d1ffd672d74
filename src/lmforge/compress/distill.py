"""``distill``: train a smaller student on the teacher's softened outputs (Hinton et al. 2015).

Loss per batch, with temperature T and weight alpha::

    alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, y)
    + hidden_weight * sum over layer pairs of D(W_l . h_student, h_teacher)

(T^2 keeps the soft term's gradients on the hard term's scale.) The KL and CE terms are taken
per example (classification), per labelled token (token classification: the positions whose
label is not -100) or per predicted next token (causal LMs, the instruction task: logits at
t against the token at t + 1, on the reply tokens the task trains on). The optional hidden
term matches student layer i to teacher layer round(i * L_teacher / L_student) (TinyBERT's
uniform mapping; embeddings to embeddings) through a learned projection W_l (identity at the
start when the widths agree; discarded after training), with D = MSE (TinyBERT) or 1 - cosine
(DistilBERT) over real tokens.

The student starts either from the teacher's own weights with every other layer kept
(DistilBERT's initialisation: layers 0, 2, 4, ... plus embeddings and head; BERT, Llama and
GPT-2 layouts) or from a fresh preset of the task on the teacher's tokenizer. It trains with
the finetune stage's loop on the fine-tune train split - or, for a pretrain stage's causal LM
(no task), on the run's corpus packed into blocks as pretraining packed it (``compress.lm``),
where the KL is taken on every next-token distribution and the hard loss is the LM loss.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

from lmforge.compress.artifact import Compressed, load_compressed
from lmforge.compress.methods import METHODS, Method, StepRun

# "pretrained": a pretrain stage's causal LM, trained on the run's own corpus (compress.lm)
TASKS = ("classification", "token-classification", "instruction", "pretrained")
IGNORE = -100  # label of positions no loss is taken on (transformers' convention)


def layer_stack(model: Any) -> tuple[Any, str]:
    """(owner, attribute) of the model's list of transformer layers.

    Raises:
        ValueError: a layout this does not know.
    """
    import torch

    body = model.base_model
    for owner, name in ((getattr(body, "encoder", None), "layer"), (body, "layers"), (body, "h")):
        if isinstance(getattr(owner, name, None), torch.nn.ModuleList):
            return owner, name
    raise ValueError(
        f"every-other-layer knows BERT (encoder.layer), Llama (layers) and GPT-2 (h) layer "
        f"lists, not {type(model).__name__}'s; pick a preset student"
    )


def every_other_layer(teacher: Any) -> Any:
    """A copy of ``teacher`` keeping layers 0, 2, 4, ... (embeddings and head included)."""
    import torch

    student = copy.deepcopy(teacher)
    owner, name = layer_stack(student)
    kept = [i for i in range(len(getattr(owner, name))) if i % 2 == 0]
    setattr(owner, name, torch.nn.ModuleList(getattr(owner, name)[i] for i in kept))
    student.config.num_hidden_layers = len(kept)
    if getattr(student.config, "layer_types", None):  # per-layer attention kinds (sliding, full)
        student.config.layer_types = [student.config.layer_types[i] for i in kept]
    for i, layer in enumerate(getattr(owner, name)):  # attention caches index layers
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = i
    return student


def preset_student(preset: str, teacher: Any, processor: Any, task: Any, info: Any) -> Any:
    """A fresh ``preset`` model with the task's head, on the teacher's tokenizer (a causal LM
    also on its vocabulary size: the KL compares next-token distributions entry by entry)."""
    from lmforge.models.build import build_model, special_token_ids
    from lmforge.models.spec import ModelSpec

    causal = task.peft_task == "CAUSAL_LM"
    vocab = teacher.config.vocab_size if causal else len(processor)
    body = build_model(
        ModelSpec(preset=preset), "clm" if causal else "mlm", vocab, special_token_ids(processor)
    )
    with tempfile.TemporaryDirectory() as tmp:
        body.save_pretrained(tmp)
        return task.load_model(Path(tmp), info)


def scored_positions(
    student_logits: Any, teacher_logits: Any, labels: Any, causal: bool
) -> tuple[Any, Any, Any]:
    """(student rows, teacher rows, labels) of the predictions the loss is taken on: one row
    per example, per labelled token, or (causal) per next token with a label."""
    if causal:  # the logits at t predict the token at t + 1
        student_logits, teacher_logits = student_logits[:, :-1], teacher_logits[:, :-1]
        labels = labels[:, 1:]
    if student_logits.dim() == 3:  # (B, T, C) -> (N, C) over the labelled positions
        keep = labels != IGNORE
        return student_logits[keep], teacher_logits[keep], labels[keep]
    return student_logits, teacher_logits, labels


def distill_loss(
    student_logits: Any,
    teacher_logits: Any,
    labels: Any,
    temperature: float,
    alpha: float,
    causal: bool = False,
) -> Any:
    """alpha * T^2 * KL(teacher || student at temperature T) + (1 - alpha) * CE, averaged over
    the scored predictions (see ``scored_positions``)."""
    import torch.nn.functional as F

    s, t_logits, y = scored_positions(student_logits, teacher_logits, labels, causal)
    if len(y) == 0:  # a batch with no labelled position: no signal, but keep the graph
        return student_logits.sum() * 0.0
    t = temperature
    soft = F.kl_div(
        F.log_softmax(s / t, dim=-1),
        F.log_softmax(t_logits / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    ) * (t * t)
    hard = F.cross_entropy(s, y)
    return alpha * soft + (1 - alpha) * hard


def layer_pairs(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """(student, teacher) indices into ``hidden_states`` (0 = embeddings): student layer i
    matches teacher layer round(i * L_t / L_s), TinyBERT's uniform mapping."""
    return [(0, 0)] + [
        (i, round(i * teacher_layers / student_layers)) for i in range(1, student_layers + 1)
    ]


def projections(student_width: int, teacher_width: int, count: int) -> Any:
    """One learned Linear per layer pair, student width -> teacher width (identity at the start
    when the widths agree, so a student copied from the teacher starts matched)."""
    import torch

    layers = torch.nn.ModuleList(
        torch.nn.Linear(student_width, teacher_width, bias=False) for _ in range(count)
    )
    if student_width == teacher_width:
        for layer in layers:
            torch.nn.init.eye_(layer.weight)
    return layers


def hidden_loss(
    student_hidden: Any, teacher_hidden: Any, project: Any, mask: Any, kind: str
) -> Any:
    """Mean over layer pairs and real tokens of MSE or 1 - cosine between the projected
    student state and the teacher's. ``*_hidden``: tuples of (B, T, width), embeddings first."""
    import torch.nn.functional as F

    pairs = layer_pairs(len(student_hidden) - 1, len(teacher_hidden) - 1)
    keep = mask.bool()  # (B, T)
    total = 0.0
    for proj, (i, j) in zip(project, pairs, strict=True):
        s, t = proj(student_hidden[i][keep]), teacher_hidden[j][keep]  # (N, width_t)
        if kind == "mse":
            total = total + F.mse_loss(s, t)
        else:
            total = total + (1 - F.cosine_similarity(s, t, dim=-1)).mean()
    return total / len(pairs)


def _pair(student: Any, teacher: Any, step: Any, causal: bool) -> Any:
    """The student and a frozen, eval-mode teacher as one module whose output has ``.loss``:
    the shape ``finetune.train.fit`` trains (the hidden-state projections train with it)."""
    from types import SimpleNamespace

    import torch

    hidden = step.hidden_weight > 0

    class Pair(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.student = student
            self.teacher = [teacher]  # a list: not a submodule, so not trained nor moved
            if hidden:
                pairs = layer_pairs(
                    student.config.num_hidden_layers, teacher.config.num_hidden_layers
                )
                self.project = projections(
                    student.config.hidden_size, teacher.config.hidden_size, len(pairs)
                )

        def train(self, mode: bool = True) -> Pair:
            self.student.train(mode)
            if hidden:
                self.project.train(mode)
            return self

        def forward(self, labels: Any, **batch: Any) -> Any:
            with torch.no_grad():
                target = self.teacher[0](**batch, output_hidden_states=hidden)
            out = self.student(**batch, output_hidden_states=hidden)
            loss = distill_loss(
                out.logits, target.logits, labels, step.temperature, step.alpha, causal
            )
            if hidden:
                mask = batch.get("attention_mask")
                if mask is None:
                    mask = torch.ones_like(batch["input_ids"])
                matched = hidden_loss(
                    out.hidden_states, target.hidden_states, self.project, mask, step.hidden_loss
                )
                loss = loss + step.hidden_weight * matched
            return SimpleNamespace(loss=loss, logits=out.logits)

    return Pair()


def check_teacher(run: StepRun, teacher: Any, info: Any) -> None:
    """Refuse teachers whose outputs the loss cannot read, before any training."""
    from lmforge.tasks.crf import CrfTagger

    if getattr(info, "multi_label", False):
        raise run.fail("method", "distillation supports single-label classification only")
    if isinstance(teacher, CrfTagger):
        raise run.fail(
            "method",
            "the teacher tags with a CRF (finetune.head: crf), whose sequence scores are not "
            "per-token distributions to distil; distil a softmax-head tagger",
        )


def make_student(run: StepRun, teacher: Any, processor: Any, task: Any, info: Any) -> Any:
    """The step's student: the teacher's every other layer, or a fresh preset (of the task, or
    a decoder preset for a pretrained causal LM: ``task`` None)."""
    step = run.step
    if step.student == "every-other-layer":
        try:
            return every_other_layer(teacher)
        except ValueError as e:
            raise run.fail("student", str(e)) from None
    from lmforge.tasks.instruction import DECODER_PRESETS

    presets = task.presets if task is not None else DECODER_PRESETS
    if step.student not in presets:
        raise run.fail(
            "student",
            f"{step.student!r} is not 'every-other-layer' or a preset ({', '.join(presets)})",
        )
    if task is not None:
        return preset_student(step.student, teacher, processor, task, info)
    from lmforge.models.build import build_model, special_token_ids
    from lmforge.models.spec import ModelSpec

    # the teacher's vocabulary size: the KL compares next-token distributions entry by entry
    spec = ModelSpec(preset=step.student)
    return build_model(spec, "clm", teacher.config.vocab_size, special_token_ids(processor))


def run_distill(run: StepRun) -> tuple[Compressed, dict[str, Any]]:
    from lmforge.compress.lm import is_causal_lm
    from lmforge.finetune.train import fit

    step = run.step
    causal_lm = is_causal_lm(run.source)  # a pretrain stage's LM: trains on the run's corpus
    if causal_lm:
        from lmforge.compress.gguf import load_causal_lm

        teacher, processor = load_causal_lm(run.source.path)
        task = info = None
    else:
        teacher, processor, task, info = load_compressed(run.source.path)
        check_teacher(run, teacher, info)
    teacher = teacher.float().eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = make_student(run, teacher, processor, task, info)
    for p in student.parameters():
        p.requires_grad_(True)
    n_teacher = sum(p.numel() for p in teacher.parameters())
    n_student = sum(p.numel() for p in student.parameters())
    if n_student >= n_teacher:
        raise run.fail(
            "student",
            f"the student has {n_student:,} parameters, the teacher {n_teacher:,}: a student must "
            "be smaller (pick a smaller preset)",
        )
    train, val = run.train_data()
    causal = causal_lm or task.peft_task == "CAUSAL_LM"
    facts: dict[str, Any] = {}
    if causal_lm:
        from lmforge.compress.lm import mean_kl, perplexity

        facts["student_perplexity_before"] = perplexity(student.eval(), val)["perplexity"]
        facts["kl_to_teacher_before"] = mean_kl(student, teacher, val)
    history = fit(
        _pair(student, teacher, step, causal),
        train,
        val,
        epochs=step.epochs,
        lr=step.lr,
        batch_size=step.batch_size,
        seed=run.seed,
    )
    student.eval()
    if causal_lm:  # the held-out KL the training lowered (T = 1, nats per token)
        facts["kl_to_teacher_after"] = mean_kl(student, teacher, val)
    student.save_pretrained(run.out)
    art = run.save(
        "transformers", processor, student=step.student, hidden_weight=step.hidden_weight
    )
    facts = {
        "teacher_params": n_teacher,
        "student_params": n_student,
        "param_ratio": n_student / n_teacher,
        **facts,
        "history": history,
    }
    return art, facts


METHODS.add("distill", Method("distill", TASKS, lambda step: ("transformers",), run_distill))

"""``distill``: train a smaller student on the teacher's softened outputs (Hinton et al. 2015).

Loss per batch, with temperature T and weight alpha::

    alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, y)

(T^2 keeps the soft term's gradients on the hard term's scale.) The student starts either
from the teacher's own weights with every other layer kept (DistilBERT's initialisation:
layers 0, 2, 4, ... plus embeddings and head) or from a fresh encoder preset on the teacher's
tokenizer. It trains with the finetune stage's loop on the fine-tune train split.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

from lmforge.compress.artifact import Compressed, load_compressed, save_compressed
from lmforge.compress.methods import METHODS, Method, StepRun

TASKS = ("classification",)


def every_other_layer(teacher: Any) -> Any:
    """A copy of ``teacher`` keeping layers 0, 2, 4, ... (embeddings and head included)."""
    import torch

    student = copy.deepcopy(teacher)
    layers = student.base_model.encoder.layer
    student.base_model.encoder.layer = torch.nn.ModuleList(
        layers[i] for i in range(0, len(layers), 2)
    )
    student.config.num_hidden_layers = len(student.base_model.encoder.layer)
    for i, layer in enumerate(student.base_model.encoder.layer):  # attention caches index layers
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = i
    return student


def preset_student(preset: str, teacher: Any, processor: Any, task: Any, info: Any) -> Any:
    """A fresh ``preset`` encoder sized to the teacher's tokenizer, with the task head."""
    from lmforge.models.build import build_model, special_token_ids
    from lmforge.models.spec import ModelSpec

    body = build_model(
        ModelSpec(preset=preset), "mlm", len(processor), special_token_ids(processor)
    )
    with tempfile.TemporaryDirectory() as tmp:
        body.save_pretrained(tmp)
        return task.load_model(Path(tmp), info)


def distill_loss(
    student_logits: Any,
    teacher_logits: Any,
    labels: Any,
    temperature: float,
    alpha: float,
) -> Any:
    import torch.nn.functional as F

    t = temperature
    soft = F.kl_div(
        F.log_softmax(student_logits / t, dim=-1),
        F.log_softmax(teacher_logits / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    ) * (t * t)
    hard = F.cross_entropy(student_logits, labels)
    return alpha * soft + (1 - alpha) * hard


def _pair(student: Any, teacher: Any, temperature: float, alpha: float) -> Any:
    """The student and a frozen, eval-mode teacher as one module whose output has ``.loss``:
    the shape ``finetune.train.fit`` trains."""
    from types import SimpleNamespace

    import torch

    class Pair(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.student = student
            self.teacher = [teacher]  # a list: not a submodule, so not trained nor moved

        def train(self, mode: bool = True) -> Pair:
            self.student.train(mode)
            return self

        def forward(self, labels: Any, **batch: Any) -> Any:
            with torch.no_grad():
                target = self.teacher[0](**batch).logits
            logits = self.student(**batch).logits
            return SimpleNamespace(
                loss=distill_loss(logits, target, labels, temperature, alpha),
                logits=logits,
            )

    return Pair()


def run_distill(run: StepRun) -> tuple[Compressed, dict[str, Any]]:
    from lmforge.finetune.train import fit

    step = run.step
    teacher, processor, task, info = load_compressed(run.source.path)
    if getattr(info, "multi_label", False):
        raise run.fail("method", "distillation supports single-label classification only")
    teacher = teacher.float().eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    if step.student == "every-other-layer":
        if not hasattr(getattr(teacher.base_model, "encoder", None), "layer"):
            raise run.fail(
                "student",
                f"every-other-layer needs a BERT-style encoder, not {type(teacher).__name__}",
            )
        student = every_other_layer(teacher)
    else:
        if step.student not in task.presets:
            raise run.fail(
                "student",
                f"{step.student!r} is not 'every-other-layer' or a preset ({', '.join(task.presets)})",
            )
        student = preset_student(step.student, teacher, processor, task, info)
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
    history = fit(
        _pair(student, teacher, step.temperature, step.alpha),
        train,
        val,
        epochs=step.epochs,
        lr=step.lr,
        batch_size=step.batch_size,
        seed=run.seed,
    )
    student.eval().save_pretrained(run.out)
    processor.save_pretrained(run.out)
    art = save_compressed(
        run.out,
        run.source,
        "transformers",
        run.location,
        method="distill",
        student=step.student,
    )
    facts = {
        "teacher_params": n_teacher,
        "student_params": n_student,
        "param_ratio": n_student / n_teacher,
        "history": history,
    }
    return art, facts


METHODS.add("distill", Method("distill", TASKS, lambda step: ("transformers",), run_distill))

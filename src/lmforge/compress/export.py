"""``export``: ONNX (dynamic batch and sequence axes, run by plain onnxruntime) and GGUF for
causal LMs; every export is run once against PyTorch and refused beyond ``atol``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge.compress.artifact import ONNX_FILE, Compressed, OnnxModel
from lmforge.compress.methods import METHODS, Method, StepRun

ONNX_TASKS = ("classification", "token-classification")
# causal LMs: an instruction fine-tune, or a pretrain stage's model (no task: "pretrained")
GGUF_TASKS = ("instruction", "pretrained")
ONNX_ATOL = 1e-4  # fp32 export: the same maths, only the kernels' summation order differs


class LogitsOnly:
    """``model(input_ids, attention_mask).logits`` as a plain module: what the graph exports."""

    def __new__(cls, model: Any) -> Any:
        import torch

        class _Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

        return _Wrapped().eval()


def parity_batches(vocab_size: int, seed: int = 0) -> list[dict[str, Any]]:
    """Inputs of two shapes, one row padded: they exercise both dynamic axes and the mask."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for batch, seq in ((1, 7), (3, 23)):
        ids = torch.randint(5, vocab_size, (batch, seq), generator=g)
        mask = torch.ones_like(ids)
        if batch > 1:
            mask[1, seq // 2 :] = 0
        out.append({"input_ids": ids, "attention_mask": mask})
    return out


def onnx_max_diff(model: Any, onnx_path: Path, batches: list[dict[str, Any]]) -> float:
    """Largest |ONNX Runtime - PyTorch| logit over ``batches``."""
    import torch

    session = OnnxModel(onnx_path)
    worst = 0.0
    with torch.inference_mode():
        for batch in batches:
            ref = model(**batch).logits.float()
            got = session(**batch).logits
            worst = max(worst, (ref - got).abs().max().item())
    return worst


def export_onnx(model: Any, dest: Path, opset: int) -> Path:
    """``dest/model.onnx`` from ``model`` (torch.onnx's dynamo exporter, weights inside the
    file), with batch and sequence dynamic. Returns the file."""
    import contextlib
    import io
    import warnings

    import torch

    example = parity_batches(model.config.vocab_size)[1]
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / ONNX_FILE
    # the exporter prints its progress to stdout and warns about its own internals
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LogitsOnly(model),
            (example["input_ids"], example["attention_mask"]),
            str(path),
            dynamo=True,
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_shapes={
                "input_ids": {0: batch, 1: seq},
                "attention_mask": {0: batch, 1: seq},
            },
            opset_version=opset,
            external_data=False,
        )
    return path


def run_export(run: StepRun) -> tuple[Compressed, dict[str, Any]]:
    from lmforge.compress.artifact import load_compressed

    step = run.step
    if step.format == "gguf":
        from lmforge.compress.gguf import export_gguf, load_causal_lm

        return export_gguf(run, *load_causal_lm(run.source.path))
    model, processor, task, _ = load_compressed(run.source.path, crf=False)
    if task.name not in ONNX_TASKS:
        raise run.fail("format", f"ONNX export supports {', '.join(ONNX_TASKS)}, not {task.name!r}")
    model = model.float()
    export_onnx(model, run.out, step.opset)
    diff = onnx_max_diff(model, run.out / ONNX_FILE, parity_batches(model.config.vocab_size))
    atol = step.atol if step.atol is not None else ONNX_ATOL
    if not diff <= atol:
        raise run.fail(
            "atol",
            f"the ONNX model's logits differ from PyTorch's by {diff:.3g} > {atol:g}; "
            "the export is wrong for this model (raise atol only if that is acceptable)",
        )
    art = run.save("onnx", processor, file=ONNX_FILE, opset=step.opset)
    return art, {"max_abs_diff": diff, "opset": step.opset}


def _check(step: Any, task: str) -> None:
    if step.format == "onnx" and task not in ONNX_TASKS:
        raise ValueError(f"format: ONNX export supports {', '.join(ONNX_TASKS)}, not {task!r}")
    if step.format == "gguf" and task not in GGUF_TASKS:
        raise ValueError(
            f"format: GGUF export is for causal LMs (a pretrained or instruction model), "
            f"not a {task!r} model"
        )


METHODS.add(
    "export",
    Method(
        "export",
        ONNX_TASKS + GGUF_TASKS,
        lambda step: ("transformers",),
        run_export,
        _check,
    ),
)

"""What a compression step writes and how it is loaded back, in each of the three formats.

Every artefact is a directory with transformers' ``config.json``, the tokenizer and lmforge's
manifest (``lmforge.json``: task, label space, columns, max length), plus its weights:

- ``transformers``: ``model.safetensors`` (pruned, distilled, bf16/fp16) - plain
  ``AutoModelFor*.from_pretrained(dir)`` and ``load_artifact`` load it;
- ``onnx``: ``model.onnx`` with inputs ``input_ids``/``attention_mask`` (dynamic batch and
  sequence) and output ``logits`` - plain ``onnxruntime.InferenceSession(dir/"model.onnx")``;
- ``torch-int8``: ``model_int8.pt``, the state dict of ``torch.ao.quantization.quantize_dynamic``
  applied to the model ``config.json`` describes (see ``load_torch_int8``: four lines of plain
  torch + transformers).
- ``weight-only``: ``model_weight_only.safetensors``, Linear weights as int8 or packed int4
  with their scales, dequantized at load (see ``compress.weightonly``);
- ``gguf``: ``model.gguf`` (a causal LM; llama.cpp's format): transformers dequantizes it.

The manifest's ``settings["format"]`` says which (absent: transformers), so a server reading
``lmforge.json`` knows how to run the directory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

from lmforge.core.errors import LmforgeError
from lmforge.core.manifest import Manifest, write_manifest

Format = Literal["transformers", "onnx", "torch-int8", "weight-only", "gguf"]
ONNX_FILE = "model.onnx"
TORCH_INT8_FILE = "model_int8.pt"


@dataclass(frozen=True)
class Compressed:
    """A model directory a step reads or writes: where, in which format, what its manifest says."""

    path: Path
    format: Format
    manifest: Manifest | None


def artifact_format(path: Path) -> Compressed:
    """The format of the model directory ``path`` (from its manifest)."""
    from lmforge.core.manifest import read_manifest

    manifest = read_manifest(path)
    fmt = (manifest.settings.get("format") if manifest is not None else None) or "transformers"
    return Compressed(Path(path), fmt, manifest)


def save_compressed(
    dest: Path, source: Compressed, fmt: Format, location: str, **settings: Any
) -> Compressed:
    """Write ``dest``'s manifest: the source's task, labels and columns, this format and what
    the step did (``settings``, appended to the history under ``settings["compress"]``); copy
    the source's config.json when the step wrote none (ONNX, torch-int8)."""
    import shutil

    from lmforge.tasks.crf import copy_crf

    if not (dest / "config.json").exists():
        shutil.copy2(source.path / "config.json", dest / "config.json")
    copy_crf(source.path, dest)
    base = source.manifest or Manifest(kind="full")
    old = {k: v for k, v in base.settings.items() if k not in ("format", "compress")}
    history = [*base.settings.get("compress", []), {"format": fmt, **settings}]
    manifest = dataclasses.replace(
        base,
        kind="pretrained" if base.kind == "pretrained" else "full",  # a headless LM stays one
        location=location,
        base=None,
        settings={**old, "format": fmt, "compress": history},
    )
    write_manifest(dest, manifest)
    return Compressed(dest, fmt, manifest)


class OnnxModel:
    """An ONNX Runtime session that answers like a transformers model (``out.logits``), so the
    tasks' ``predict`` and the latency timer run it unchanged."""

    training = False

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort
        from transformers import AutoConfig

        # the labels, for a CRF on top (absent while an export checks its parity)
        config = Path(path).parent / "config.json"
        self.config = AutoConfig.from_pretrained(config.parent) if config.is_file() else None

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, **batch: Any) -> SimpleNamespace:
        import torch

        feed = {k: batch[k].cpu().numpy() for k in self.inputs}
        (logits,) = self.session.run(["logits"], feed)
        return SimpleNamespace(logits=torch.from_numpy(logits))

    def eval(self) -> OnnxModel:
        return self

    def parameters(self) -> Any:
        import torch

        yield torch.empty(0)  # logits_in_batches reads the device of the first parameter


def onnx_params(path: Path) -> int:
    """Parameters stored in an ONNX file: the elements of its initializers."""
    import math

    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return sum(math.prod(t.dims) for t in model.graph.initializer)


def load_torch_int8(path: Path, task: Any, info: Any) -> Any:
    """The dynamically quantized model saved in ``path`` (config.json + model_int8.pt)."""
    import torch
    from transformers import AutoConfig

    from lmforge.compress.quantize import quantize_torch

    config = AutoConfig.from_pretrained(path)
    head = task_head_class(task.name)
    model = quantize_torch(head.from_config(config).eval(), _int8_modules(path))
    # weights_only: tensors and torch's packed int8 params only, never arbitrary pickles
    state = torch.load(path / TORCH_INT8_FILE, weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def _int8_modules(path: Path) -> list[str]:
    from lmforge.core.manifest import read_manifest

    manifest = read_manifest(path)
    history = manifest.settings.get("compress", []) if manifest is not None else []
    return history[-1].get("modules", ["Linear"]) if history else ["Linear"]


def _load_gguf(path: Path) -> Any:
    """A GGUF causal LM dequantized to fp32 by transformers (config.json beside it: its GGUF
    config mapping for GPT-2 loses the context length and MLP width)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from lmforge.compress.gguf import GGUF_FILE

    config = AutoConfig.from_pretrained(path)
    return AutoModelForCausalLM.from_pretrained(
        path, gguf_file=GGUF_FILE, config=config, dtype=torch.float32
    ).eval()


def task_head_class(task: str) -> Any:
    """The transformers auto class of a task's head (what ``from_config`` builds)."""
    import transformers

    names = {
        "classification": "AutoModelForSequenceClassification",
        "token-classification": "AutoModelForTokenClassification",
    }
    if task not in names:
        raise LmforgeError(f"compress: the {task!r} task has no head this loader builds")
    return getattr(transformers, names[task])


def load_compressed(
    path: Path, threads: int | None = None, crf: bool = True
) -> tuple[Any, Any, Any, Any]:
    """(model or model-like, processor, task, info) for any artefact a step wrote, or the source.

    A BERT-CRF tagger comes with its CRF on top (``tasks.crf``), as prediction needs it;
    ``crf=False`` gives the emissions model alone, what a step that rewrites the weights
    stores (``save_compressed`` copies ``crf.safetensors`` beside them).

    Raises:
        LmforgeError: not a model directory lmforge can name the task of.
    """
    from lmforge.tasks.artifact import inspect_artifact, load_artifact

    art = artifact_format(path)
    if art.format == "transformers":
        loaded = load_artifact(path)
        model = loaded.model
        if loaded.base is not None:  # an adapter: fold it in (the source is not touched)
            model = model.merge_and_unload()
        if not crf:
            from lmforge.tasks.crf import emissions_model

            model = emissions_model(model)
        return model.eval(), loaded.processor, loaded.task, loaded.info
    files = inspect_artifact(path)
    if files.task is None:
        raise LmforgeError(f"{path}: its lmforge.json names no task")
    processor = files.task.load_processor(path)
    if art.format == "onnx":
        model: Any = OnnxModel(path / ONNX_FILE, threads)
    elif art.format == "weight-only":
        from lmforge.compress.weightonly import load_weight_only

        model = load_weight_only(path, task_head_class(files.task.name))
    elif art.format == "gguf":
        model = _load_gguf(path)
    else:
        model = load_torch_int8(path, files.task, files.info)
    if crf and files.task.name == "token-classification":  # a BERT-CRF decodes with them
        from lmforge.tasks.crf import with_crf

        model = with_crf(model, path)
    return model, processor, files.task, files.info

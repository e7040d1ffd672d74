"""Typed schema of the recipe's ``compress`` section: a list of steps, each one method.

Each step reads the previous step's output (or ``input: source`` / an earlier step's name), so
``[distill, prune, quantize]`` chains while ``[{quantize, engine: torch}, {quantize, input:
source}]`` compares two branches side by side. Every step's artefact is scored.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from lmforge.core.schema import FractionCO, LearningRate, PositiveInt, StrictModel

# torch.ao dynamic quantization covers these module types (nn.Linear and the recurrent ones);
# ONNX Runtime's dynamic quantizer quantizes the MatMul/Gemm a Linear exports to
QUANTIZABLE_MODULES = ("Linear", "LSTM", "GRU")


class StepBase(StrictModel):
    name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="The step's output directory (compress/<name>); default: the method name, "
        "numbered when it repeats.",
    )
    input: str = Field(
        "previous",
        description="What the step compresses: 'previous' (the last step's output; the source "
        "model for the first step), 'source', or an earlier step's name.",
    )


class DistillStep(StepBase):
    """Teacher -> smaller student: KL on temperature-softened logits + the hard-label loss."""

    method: Literal["distill"]
    student: str = Field(
        "every-other-layer",
        description="'every-other-layer' (the teacher's layers 0, 2, 4, ... as DistilBERT "
        "initialised its student; BERT, Llama, GPT-2), or a preset of the task (bert-tiny, "
        "bert-small; causal LMs: gpt-tiny, llama-tiny, ...) on the teacher's tokenizer.",
    )
    temperature: float = Field(
        2.0,
        gt=0,
        description="Softmax temperature of the KL term (Hinton et al. 2015).",
    )
    alpha: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Weight of the KL term; 1 - alpha weighs the hard loss.",
    )
    hidden_weight: float = Field(
        0.0,
        ge=0,
        description="Weight of hidden-state matching (0: off): student layer i against teacher "
        "layer round(i * L_teacher / L_student) through a learned projection (TinyBERT).",
    )
    hidden_loss: Literal["mse", "cosine"] = Field(
        "mse",
        description="Hidden-state distance: 'mse' (TinyBERT) or 'cosine' (1 - cosine "
        "similarity, DistilBERT), over real tokens.",
    )
    epochs: PositiveInt = Field(
        3,
        description="Training epochs over the fine-tune train split (a pretrained causal LM: "
        "over the data stage's train split, packed into blocks as pretraining packed it).",
    )
    lr: LearningRate = Field(1e-4, description="Peak AdamW learning rate of the student.")
    batch_size: PositiveInt = Field(16, description="Examples per step.")


class PruneStep(StepBase):
    """Remove weights: unstructured (zeros) or structured (a smaller saved model)."""

    method: Literal["prune"]
    kind: Literal["magnitude", "neurons", "heads"] = Field(
        "magnitude",
        description="'magnitude': global unstructured L1 pruning of the encoder's Linear "
        "weights, made permanent (zeros; the file stays dense); 'neurons': remove the least "
        "important MLP neurons of every layer (intermediate_size shrinks: a smaller, faster "
        "model); 'heads': remove the least important attention heads of every layer "
        "(num_attention_heads shrinks; Llama-family models, whose config has head_dim).",
    )
    sparsity: FractionCO = Field(
        description="Fraction removed: of the Linear weights (magnitude), of each layer's MLP "
        "neurons (neurons) or of each layer's attention heads (heads); in [0, 1)."
    )
    importance: Literal["gradient", "ablation", "activation"] = Field(
        "gradient",
        description="heads: how heads are ranked: 'gradient' (Michel et al. 2019, |dLoss/d "
        "head gate| on labelled train batches), 'ablation' (loss increase when the head alone "
        "is removed: most accurate, layers x heads extra passes) or 'activation' (mean norm "
        "of each head's contribution; no labels, least reliable).",
    )
    importance_examples: PositiveInt = Field(
        256, description="heads: train examples the importance scores are computed on."
    )
    recovery_epochs: int = Field(
        0,
        ge=0,
        description="Fine-tuning epochs after pruning (pruned weights stay zero).",
    )
    lr: LearningRate = Field(5e-5, description="Learning rate of the recovery fine-tuning.")
    batch_size: PositiveInt = Field(16, description="Examples per recovery step.")


class QuantizeStep(StepBase):
    """Lower-precision weights for CPU inference."""

    method: Literal["quantize"]
    scheme: Literal["int8-dynamic", "int8-weight", "int4-weight", "bf16", "fp16"] = Field(
        "int8-dynamic",
        description="'int8-dynamic': int8 weights, activations quantized per batch at run time; "
        "'int8-weight'/'int4-weight': weight-only, the Linear weights stored as int8 (a scale "
        "per output row) or packed int4 (a scale per group_size inputs) in safetensors, "
        "dequantized to fp32 at load; 'bf16'/'fp16': half-precision weights.",
    )
    group_size: PositiveInt = Field(
        32, description="int4-weight: input columns sharing one scale (divides in_features)."
    )
    engine: Literal["onnxruntime", "torch"] = Field(
        "onnxruntime",
        description="int8-dynamic only: ONNX Runtime's quantizer (an ONNX model; measured "
        "faster here, see benchmarks/RESULTS.md) or torch.ao quantize_dynamic.",
    )
    modules: list[str] = Field(
        ["Linear"],
        min_length=1,
        description=f"int8-dynamic: module types to quantize ({', '.join(QUANTIZABLE_MODULES)}).",
    )

    @model_validator(mode="after")
    def _modules(self) -> QuantizeStep:
        bad = [m for m in self.modules if m not in QUANTIZABLE_MODULES]
        if bad:
            raise ValueError(
                f"modules: {bad} cannot be dynamically quantized; supported: "
                f"{', '.join(QUANTIZABLE_MODULES)}"
            )
        if self.engine == "onnxruntime" and self.modules != ["Linear"]:
            raise ValueError("modules: the onnxruntime engine quantizes Linear layers only")
        return self


class ExportStep(StepBase):
    """Deployment formats, each checked against PyTorch's outputs."""

    method: Literal["export"]
    format: Literal["onnx", "gguf"] = Field(
        "onnx",
        description="'onnx' (dynamic batch and sequence axes; runs in plain onnxruntime) or "
        "'gguf' (causal LMs; llama.cpp / Ollama).",
    )
    gguf_type: Literal["f32", "f16", "q8_0", "q4_0"] = Field(
        "f32",
        description="gguf: type of the 2-D weights (norms, biases stay f32): 'f32', 'f16', "
        "'q8_0' (8.5 bits/weight) or 'q4_0' (4.5 bits/weight), quantized by gguf-py.",
    )
    atol: float | None = Field(
        None,
        gt=0,
        description="Largest |export - PyTorch| logit difference accepted; default 1e-4 "
        "(onnx, gguf f32), 0.05 (f16), 0.5 (q8_0), 3.0 (q4_0).",
    )
    opset: int = Field(18, ge=14, le=23, description="ONNX opset version.")

    @model_validator(mode="after")
    def _gguf_type(self) -> ExportStep:
        if self.format != "gguf" and self.gguf_type != "f32":
            raise ValueError("gguf_type: applies to format: gguf only")
        return self


Step = Annotated[DistillStep | PruneStep | QuantizeStep | ExportStep, Field(discriminator="method")]


class CompressConfig(StrictModel):
    """Compress the fine-tuned model (or the pretrained causal LM) step by step; score every
    artefact on the test split (a causal LM: held-out perplexity)."""

    model: str = Field(
        "finetune",
        description="The source model: 'finetune' (this run's merged model, else model/), "
        "'pretrain' (this run's pretrained LM: a causal LM is distilled on the run's corpus and "
        "scored by held-out perplexity, or exported to GGUF) or a model directory lmforge "
        "saved. It is never modified.",
    )
    steps: list[Step] = Field(
        min_length=1,
        description="Compression steps, in order: each {method: distill|prune|quantize|export, "
        "...its keys} (README, 'Compress and export').",
    )
    max_examples: PositiveInt | None = Field(
        None,
        description="Score each artefact on at most this many test examples (a pretrained "
        "causal LM: held-out blocks).",
    )
    latency_batch_sizes: list[PositiveInt] = Field(
        [1, 32],
        description="Batch sizes whose latency (p50/p95) and throughput are measured.",
    )
    latency_repeats: PositiveInt = Field(
        10, description="Timed forward passes per batch size (after one warm-up)."
    )
    profile: bool = Field(
        True,
        description="Measure latency and peak RSS in a fresh process; false skips it.",
    )

    @model_validator(mode="after")
    def _model(self) -> CompressConfig:
        from lmforge.models.refs import check_model_ref

        check_model_ref(self.model)  # ValueError naming a path that is no model
        return self

    @model_validator(mode="after")
    def _names(self) -> CompressConfig:
        seen: list[str] = []
        for i, step in enumerate(self.steps):
            if step.name is None:
                count = sum(s.method == step.method for s in self.steps[:i])
                step.name = step.method if count == 0 else f"{step.method}-{count + 1}"
            if step.name in seen or step.name == "source":
                raise ValueError(f"steps.{i}.name: {step.name!r} is used twice (or is 'source')")
            if step.input not in ("previous", "source", *seen):
                raise ValueError(
                    f"steps.{i}.input: {step.input!r} is not 'previous', 'source' or an earlier "
                    f"step ({', '.join(seen) or 'none'})"
                )
            seen.append(step.name)
        return self

"""Typed schema of the recipe's ``pretrain`` section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lmforge.core.schema import Device, FractionCO, LearningRate, PositiveInt, StrictModel
from lmforge.models.spec import ModelSpec

Objective = Literal["clm", "mlm", "mlm+nsp", "electra"]
Precision = Literal["fp32", "bf16", "fp16", "auto"]


class ElectraOptions(StrictModel):
    """ELECTRA replaced-token detection (objective electra; pretrain/electra.py)."""

    generator_size: float = Field(
        0.25,
        gt=0,
        le=1,
        description="Generator width, heads and MLP as a fraction of the discriminator's "
        "(the paper: 1/4 to 1/3); same depth, shared embeddings.",
    )
    disc_weight: float = Field(
        50.0, gt=0, description="Weight of the discriminator's loss (the paper's lambda = 50)."
    )


class PretrainConfig(StrictModel):
    """Self-supervised training of a Transformer: causal LM or masked LM (+NSP)."""

    model: ModelSpec = Field(default_factory=ModelSpec, description="Model preset or local model.")
    objective: Objective = Field(
        "clm",
        description="clm (GPT-style), mlm (BERT-style), mlm+nsp, or electra (replaced-token "
        "detection: a small MLM generator and the discriminator that is saved).",
    )
    block_size: PositiveInt = Field(128, description="Tokens per training sequence.")
    batch_size: PositiveInt = Field(16, description="Sequences per micro-batch (per process).")
    grad_accum: PositiveInt = Field(1, description="Micro-batches per optimizer step.")
    max_steps: PositiveInt = Field(200, description="Optimizer steps to train.")
    lr: LearningRate = Field(1e-3, description="Peak learning rate, in (0, 1].")
    min_lr_ratio: FractionCO = Field(
        0.1, description="Final learning rate as a fraction of the peak (cosine)."
    )
    warmup_steps: int = Field(20, ge=0, description="Linear warm-up steps.")
    weight_decay: float = Field(
        0.1, ge=0, description="Weight decay (not applied to biases, norms, embeddings' norms)."
    )
    beta1: float = Field(0.9, gt=0, lt=1, description="Adam/LAMB beta1.")
    beta2: float = Field(0.95, gt=0, lt=1, description="Adam/LAMB beta2.")
    optimizer: Literal["adamw", "lamb"] = Field(
        "adamw", description="AdamW (fused where available) or LAMB."
    )
    grad_clip: float = Field(
        1.0, ge=0, description="Clip the gradient norm to this value (0: off)."
    )
    precision: Precision = Field(
        "fp32",
        description="fp32, bf16 (autocast), fp16 (CUDA, with a grad scaler), or auto: fp32 or "
        "bf16, whichever a short probe at the model's shape measures faster on this machine "
        "(recorded as the stage's 'precision').",
    )
    compile: bool = Field(False, description="torch.compile the model (slow start, faster steps).")
    log_every: PositiveInt = Field(
        10,
        description="Read loss and gradient norm back from the device every N steps (history "
        "still has every step): no per-step host sync.",
    )
    eval_every: PositiveInt = Field(50, description="Evaluate on the val split every N steps.")
    eval_batches: PositiveInt = Field(20, description="Micro-batches per evaluation.")
    checkpoint_every: PositiveInt = Field(
        100, description="Save a resumable checkpoint every N steps."
    )
    keep_checkpoints: PositiveInt = Field(2, description="Keep the last K checkpoints.")
    clm_windows: bool = Field(
        False,
        description="clm: train on every block_size window of the text, drawn at random offsets "
        "as nanoGPT does, instead of fixed non-overlapping blocks (validation keeps blocks).",
    )
    mlm_probability: float = Field(
        0.15, gt=0, lt=1, description="Share of tokens masked for MLM (80/10/10)."
    )
    whole_word_mask: bool = Field(
        False,
        description="MLM: mask all pieces of a word together (Chinese words by jieba's "
        "segmenter, rjieba).",
    )
    electra: ElectraOptions = Field(
        default_factory=ElectraOptions, description="objective electra: generator and loss weight."
    )
    nsp_probability: float = Field(
        0.5, gt=0, lt=1, description="mlm+nsp: share of pairs with a random next sentence."
    )
    max_nonfinite: PositiveInt = Field(
        5, description="Stop after this many non-finite losses in a row."
    )
    distributed: Literal["auto", "ddp", "fsdp"] = Field(
        "auto",
        description="Under torchrun: ddp, fsdp (FSDP2 fully_shard; NCCL or gloo), or auto (ddp).",
    )
    device: Device = Field(
        "auto", description="Where to train: auto (a CUDA GPU if any), cpu, cuda."
    )
    tensorboard: bool = Field(True, description="Also write TensorBoard event files.")

    @model_validator(mode="after")
    def _objective_fits(self) -> PretrainConfig:
        from lmforge.models import BUILTIN_MODELS, PRESETS
        from lmforge.models.presets import family_objective_error

        wanted = "decoder" if self.objective == "clm" else "encoder"
        name, kind = self.model.preset, None
        if name is not None:
            kind = PRESETS.get(name).kind
            if (why := family_objective_error(PRESETS.get(name), self.objective)) is not None:
                raise ValueError(why)
        elif self.model.path in BUILTIN_MODELS:
            name, kind = self.model.path, BUILTIN_MODELS.get(self.model.path).kind
        if kind is not None and kind != wanted:
            article = {"decoder": "a decoder", "encoder": "an encoder"}
            raise ValueError(
                f"objective '{self.objective}' needs {article[wanted]}; '{name}' is {article[kind]}"
            )
        if self.warmup_steps >= self.max_steps:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) must be < max_steps ({self.max_steps})"
            )
        return self

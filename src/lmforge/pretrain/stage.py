"""Entry point of the pretrain stage: tokenizer + text -> blocks -> model -> train -> save.

Outputs (in the stage directory):
    model/           config + model.safetensors + tokenizer, loadable with plain transformers,
                     and lmforge.json (kind "pretrained", the objective and block size)
    checkpoints/     the last ``keep_checkpoints`` resumable checkpoints
    history.jsonl    one line per step (loss, lr, tokens/s, eval values), across resumes
    loss.png         training and validation loss curves
    tensorboard/     TensorBoard event files
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from lmforge.core.errors import DataError, LmforgeError
from lmforge.core.log import logger
from lmforge.core.manifest import Manifest, write_manifest
from lmforge.core.stage import StageContext, StageResult, StageSpec
from lmforge.pretrain.config import PretrainConfig

HOLDOUT_FRACTION = 0.05


def pretrain_tokenizer(cfg: PretrainConfig, ctx: StageContext):  # noqa: ANN201 - transformers type
    """The tokenizer the model trains with: the continued model's own, else the run's."""
    from transformers import AutoTokenizer

    if cfg.model.path is not None:  # a model brings its own tokenizer
        from lmforge.models import resolve_model_ref

        return AutoTokenizer.from_pretrained(resolve_model_ref(cfg.model.path, ctx.root))
    tok_dir = ctx.stage_dir("tokenizer")
    if tok_dir is None or not (tok_dir / "tokenizer.json").exists():
        raise LmforgeError(
            "pretrain needs the tokenizer stage's output; run the tokenizer stage first"
        )
    return AutoTokenizer.from_pretrained(tok_dir)


def _holdout(blocks: Any, n: int) -> tuple[Any, Any]:
    """Split the last ``n`` rows off a ``Blocks`` (every tensor field alike)."""
    import torch

    head, tail = {}, {}
    for f in dataclasses.fields(blocks):
        value = getattr(blocks, f.name)
        head[f.name] = value[:-n] if isinstance(value, torch.Tensor) else value
        tail[f.name] = value[-n:] if isinstance(value, torch.Tensor) else value
    return type(blocks)(**head), type(blocks)(**tail)


def prepare_data(cfg: PretrainConfig, tokenizer: Any, data_dir: Path, seed: int):  # noqa: ANN201
    from lmforge.data.shards import read_split
    from lmforge.pretrain.objectives import PretrainData

    train = [d.text for d in read_split(data_dir, "train") if d.text]
    val = [d.text for d in read_split(data_dir, "val") if d.text]
    kwargs = {
        "objective": cfg.objective,
        "block_size": cfg.block_size,
        "mlm_probability": cfg.mlm_probability,
        "whole_word_mask": cfg.whole_word_mask,
        "nsp_probability": cfg.nsp_probability,
        "seed": seed,
        "clm_windows": cfg.clm_windows,
    }
    try:
        return PretrainData.from_texts(tokenizer, train, val, **kwargs)
    except DataError as e:
        if not str(e).startswith("'val' split"):
            raise
    # the val split is too small for one block: hold out the last 5% of training blocks
    # (fixed blocks: held-out windows would overlap the training ones)
    data = PretrainData.from_texts(tokenizer, train, None, **{**kwargs, "clm_windows": False})
    n = max(1, int(len(data.train.input_ids) * HOLDOUT_FRACTION))
    if n >= len(data.train.input_ids):
        raise DataError(
            f"only {len(data.train.input_ids)} training block(s) of pretrain.block_size="
            f"{cfg.block_size}: too little text; lower the block size or add data"
        )
    logger.warning("pretrain: val split too small for one block; holding out %d training blocks", n)
    train_blocks, val_blocks = _holdout(data.train, n)
    return dataclasses.replace(data, train=train_blocks, val=val_blocks)


def check_fit(cfg: PretrainConfig, model: Any, tokenizer: Any) -> None:
    """Vocabulary and context checks that would otherwise fail deep inside an embedding."""
    vocab = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > vocab:
        raise LmforgeError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's embedding only {vocab}; "
            "use the model's own tokenizer or train from a preset (pretrain.model.preset)"
        )
    context = getattr(model.config, "n_positions", None) or getattr(
        model.config, "max_position_embeddings", None
    )
    if context is not None and cfg.block_size > context:
        raise LmforgeError(
            f"pretrain.block_size ({cfg.block_size}) exceeds the model's context ({context}); "
            f"lower it or raise pretrain.model.context"
        )


def plot_loss(history: list[dict[str, Any]], path: Path, title: str) -> None:
    from lmforge.core.plots import figure

    with figure(path, (7, 4)) as (_, ax):
        steps = [r["step"] for r in history if math.isfinite(r["loss"])]
        losses = [r["loss"] for r in history if math.isfinite(r["loss"])]
        ax.plot(steps, losses, label="train", lw=1)
        val = [(r["step"], r["val_loss"]) for r in history if "val_loss" in r]
        if val:
            ax.plot(*zip(*val, strict=True), "o-", label="val")
        ax.set(xlabel="step", ylabel="loss", title=title)
        ax.grid(alpha=0.3)
        ax.legend()


def _build(cfg: PretrainConfig, vocab_size: int, specials: dict[str, int | None]):  # noqa: ANN202
    """The model the loop trains: a stock transformers model, or ELECTRA's generator +
    discriminator pair (which saves the discriminator as the stage's model)."""
    from lmforge.models import build_model

    if cfg.objective == "electra":
        from lmforge.pretrain.electra import build_electra

        return build_electra(cfg, vocab_size, specials)
    model = build_model(cfg.model, cfg.objective, vocab_size, specials)
    if hasattr(model, "sparse_prediction"):
        # ModernBERT's MLM head on the masked positions only: the loss and gradients are the
        # same, and a pretraining step is 1.7x faster (RESULTS.md). Set on the module, not the
        # config, so the saved model returns dense logits in plain transformers
        model.sparse_prediction = cfg.objective == "mlm"
    return model


def run_pretrain_stage(ctx: StageContext, work: Path) -> StageResult:
    import torch

    from lmforge.core.hardware import matmul_peak_flops, stage_device
    from lmforge.models import count_params, flops_per_token, special_token_ids
    from lmforge.models.flops import electra_flops_per_token
    from lmforge.pretrain.evaluate import unigram_loss
    from lmforge.pretrain.loop import train
    from lmforge.pretrain.parallel import gather_state, uses_fsdp

    cfg = ctx.recipe.pretrain
    assert cfg is not None
    data_dir = ctx.stage_dir("data")
    assert data_dir is not None
    device = stage_device(cfg.device, "pretrain.device")

    # ---------------------------------------------------------------- set-up
    tokenizer = pretrain_tokenizer(cfg, ctx)
    data = prepare_data(cfg, tokenizer, data_dir, ctx.recipe.seed)
    specials = special_token_ids(tokenizer)
    torch.manual_seed(ctx.recipe.seed)  # the model's initial weights
    model = _build(cfg, len(tokenizer), specials)
    check_fit(cfg, model, tokenizer)
    params = count_params(model)
    n_train, n_val = len(data.train.input_ids), len(data.val.input_ids)
    logger.info(
        "pretrain: %s, %s params, %d train / %d val blocks of %d tokens, %d steps",
        type(model).__name__,
        f"{params['total']:,}",
        n_train,
        n_val,
        cfg.block_size,
        cfg.max_steps,
    )

    # ---------------------------------------------------------------- train
    result = train(
        model,
        cfg,
        train_batch=lambda idx, s: data.batch(idx, s, "train"),
        val_batch=lambda idx, s: data.batch(idx, s, "val"),
        num_train=n_train,
        num_val=n_val,
        tokens_per_sample=cfg.block_size,
        work=work,
        device=device,
        dist=ctx.dist,
        seed=ctx.recipe.seed,
        metrics=ctx.metrics,
        resume=ctx.resume,
        recipe_hash=ctx.input_hash,
    )

    if cfg.objective == "electra" and ctx.dist.is_main:
        from lmforge.pretrain.electra import warn_if_untrained

        warn_if_untrained(result.final_eval)

    # ---------------------------------------------------------------- save
    if cfg.objective == "electra":  # the generator trains on every token too
        flops = electra_flops_per_token(model.config, model.generator.config, cfg.block_size)
    else:
        predicted = cfg.mlm_probability if getattr(model, "sparse_prediction", False) else 1.0
        flops = flops_per_token(model.config, cfg.block_size, predicted)
    precision = result.precision.precision if result.precision else cfg.precision
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    peak = matmul_peak_flops(dtype, device)
    achieved = flops * result.tokens_per_second * ctx.dist.world_size
    metrics: dict[str, Any] = {
        "steps": result.state.step,
        "tokens": result.state.tokens,
        "params": params["total"],
        "train_blocks": n_train,
        "val_blocks": n_val,
        "final_train_loss": next(
            (r["loss"] for r in reversed(result.history) if math.isfinite(r["loss"])), None
        ),
        **{f"val_{k}": v for k, v in result.final_eval.items()},
        "unigram_val_loss": unigram_loss(data, cfg.eval_batches * cfg.batch_size),
        "tokens_per_second": result.tokens_per_second * ctx.dist.world_size,
        "train_seconds": result.train_seconds,
        "flops_per_token": flops,
        "peak_flops": peak,
        "mfu": achieved / peak,
        "skipped_steps": result.state.skipped_steps,
        "processes": ctx.dist.world_size,
        **(result.precision.metrics() if result.precision else {"precision": precision}),  # auto
    }
    if result.resumed_from is not None:
        metrics["resumed_from_step"] = result.resumed_from
    artifacts = {"model": "model", "checkpoints": "checkpoints", "history": "history.jsonl"}
    if uses_fsdp(cfg):  # sharded parameters: gather them (every rank) into a plain model
        weights, _ = gather_state(model)
        if ctx.dist.is_main:
            model = _build(cfg, len(tokenizer), specials)
            model.load_state_dict(weights, strict=False)  # tied weights come once
    if ctx.dist.is_main:
        model.save_pretrained(work / "model")  # safetensors
        tokenizer.save_pretrained(work / "model")
        write_manifest(
            work / "model",
            Manifest(
                kind="pretrained",
                location="pretrain/model",
                objective=cfg.objective,
                max_length=cfg.block_size,
            ),
        )
        plot_loss(
            result.history, work / "loss.png", f"{ctx.recipe.name}: {cfg.objective} pretraining"
        )
        artifacts["loss_curve"] = "loss.png"
        if cfg.tensorboard:
            artifacts["tensorboard"] = "tensorboard"
    return StageResult(metrics=metrics, artifacts=artifacts)


def _inputs(recipe: Any) -> Any:
    from lmforge.models import model_identity

    return model_identity(recipe.pretrain.model.path)


def _check(recipe: Any) -> None:
    if recipe.data is None:
        raise ValueError("pretrain: needs a data section to train on")
    if recipe.pretrain.model.path is None and recipe.tokenizer is None:
        raise ValueError(
            "pretrain: a model trained from a preset needs the run's tokenizer; add a tokenizer "
            "section, or continue a model that brings its own (pretrain.model.path)"
        )


SPEC = StageSpec(
    name="pretrain",
    config=PretrainConfig,
    description="Self-supervised training of a Transformer (causal or masked LM).",
    run=run_pretrain_stage,
    inputs=_inputs,
    needs=("data", "tokenizer"),
    check=_check,
    resumable=True,
)

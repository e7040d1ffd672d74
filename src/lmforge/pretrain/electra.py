"""ELECTRA replaced-token detection (Clark et al. 2020, "ELECTRA: Pre-training Text Encoders
as Discriminators Rather Than Generators").

A small generator (an MLM, ``generator_size`` of the discriminator's width and MLP, same
depth) predicts the masked tokens; its samples replace them, and the discriminator labels
every token original or replaced. The discriminator learns from all T tokens of a block, not
the 15% an MLM scores: the paper's reason for its better results at equal compute. As in the
paper the two share the token, position and segment embeddings (the generator projects them
down to its width), and the loss is ``generator MLM + disc_weight * discriminator BCE``
(``disc_weight`` = 50); the sampling step passes no gradient to the generator.

Both halves are stock transformers classes (``ElectraForMaskedLM``,
``ElectraForPreTraining``): ``save_pretrained`` writes the discriminator, the encoder that
fine-tuning starts from, and the generator in ``generator/`` beside it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from transformers.utils import ModelOutput

from lmforge.core.errors import LmforgeError
from lmforge.core.log import logger

if TYPE_CHECKING:
    from transformers import ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining

    from lmforge.pretrain.config import PretrainConfig

GENERATOR_DIR = "generator"


@dataclasses.dataclass
class ElectraOutput(ModelOutput):
    """What one step computes; ``logits`` are the generator's, so MLM evaluation scores it."""

    loss: torch.Tensor | None = None  # generator MLM + disc_weight * discriminator BCE
    logits: torch.Tensor | None = None  # (B, T, V) generator MLM logits
    generator_loss: torch.Tensor | None = None
    discriminator_loss: torch.Tensor | None = None
    rtd_logits: torch.Tensor | None = None  # (B, T) > 0: "replaced"
    replaced: torch.Tensor | None = None  # (B, T) bool: the discriminator's targets
    rtd_mask: torch.Tensor | None = None  # (B, T) bool: tokens the discriminator is scored on


def generator_config(disc: ElectraConfig, size: float) -> ElectraConfig:
    """The generator's config: ``size`` of the discriminator's width, heads and MLP (at least
    one head, heads dividing the width), same depth, and the discriminator's embedding size so
    that the embeddings can be shared."""
    hidden = max(1, round(disc.hidden_size * size))
    heads = max(1, round(disc.num_attention_heads * size))
    while hidden % heads:  # the nearest smaller head count that divides the width
        heads -= 1
    config = type(disc).from_dict(disc.to_dict())
    config.hidden_size = hidden
    config.num_attention_heads = heads
    config.intermediate_size = max(1, round(disc.intermediate_size * size))
    config.embedding_size = disc.embedding_size
    config.architectures = ["ElectraForMaskedLM"]
    return config


class ElectraRTD(torch.nn.Module):
    """Generator + discriminator trained jointly; the pretraining loop's model for ``electra``.

    Behaves as the discriminator where the pretrain stage asks (``config``,
    ``get_input_embeddings``, ``save_pretrained``), so the stage saves a model directory that
    plain transformers loads as ``ElectraForPreTraining`` / ``ElectraModel``.
    """

    def __init__(
        self,
        generator: ElectraForMaskedLM,
        discriminator: ElectraForPreTraining,
        disc_weight: float = 50.0,
    ) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator
        self.disc_weight = disc_weight
        # one embedding module for both (the paper's sharing), and the generator's output
        # layer tied to the shared token table, as ElectraForMaskedLM ties its own
        generator.electra.embeddings = discriminator.electra.embeddings
        generator.generator_lm_head.weight = discriminator.electra.embeddings.word_embeddings.weight

    @property
    def config(self) -> ElectraConfig:
        return self.discriminator.config

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.discriminator.get_input_embeddings()

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> ElectraOutput:
        """One RTD step on a masked batch (``mlm.mask_tokens``' inputs and labels).

        Args:
            input_ids: (B, T) ids with the chosen positions masked (or randomised/kept).
            labels: (B, T) the original id where chosen, -100 elsewhere.
        """
        gen = self.generator(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            labels=labels,
        )
        chosen = labels != -100  # (B, T)
        original = torch.where(chosen, labels, input_ids)
        with torch.no_grad():
            # a sample from the generator at the chosen positions (Gumbel-max: one draw per
            # position from the global RNG, which checkpoints save for exact resume)
            logits = gen.logits.float()
            gumbel = -torch.log(-torch.log(torch.rand_like(logits).clamp_(1e-9, 1.0)))
            sampled = (logits + gumbel).argmax(-1)
            corrupted = torch.where(chosen, sampled, original)
            # a sample equal to the original counts as original (the paper's labelling)
            replaced = corrupted != original
        rtd_logits = self.discriminator(
            input_ids=corrupted, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).logits  # (B, T)
        scored = attention_mask.bool() if attention_mask is not None else torch.ones_like(replaced)
        disc_loss = F.binary_cross_entropy_with_logits(
            rtd_logits[scored].float(), replaced[scored].float()
        )
        return ElectraOutput(
            loss=gen.loss + self.disc_weight * disc_loss,
            logits=gen.logits,
            generator_loss=gen.loss.detach(),
            discriminator_loss=disc_loss.detach(),
            rtd_logits=rtd_logits.detach(),
            replaced=replaced,
            rtd_mask=scored,
        )

    def save_pretrained(self, path: str | Path, **kwargs: Any) -> None:
        """The discriminator in ``path`` (what fine-tuning loads), the generator in
        ``path/generator`` (to continue pretraining; not needed downstream)."""
        self.discriminator.save_pretrained(path, **kwargs)
        self.generator.save_pretrained(Path(path) / GENERATOR_DIR, **kwargs)


def build_electra(cfg: PretrainConfig, vocab_size: int, special_ids: dict[str, int | None]):  # noqa: ANN201
    """A fresh ``ElectraRTD`` from ``cfg.model.preset`` (the discriminator's shape), or the
    pair saved by an earlier ELECTRA run at ``cfg.model.path`` (a fresh generator if it has
    none). Initialisation draws from torch's global RNG: seed before calling.

    Raises:
        LmforgeError: the model at ``path`` is not an ELECTRA discriminator.
    """
    from transformers import ElectraForMaskedLM, ElectraForPreTraining

    from lmforge.models.build import build_config, load_pretrained
    from lmforge.models.builtin import resolve_model_path

    size, weight = cfg.electra.generator_size, cfg.electra.disc_weight
    if cfg.model.path is None:
        disc_config = build_config(cfg.model, "electra", vocab_size, special_ids)
        discriminator = ElectraForPreTraining(disc_config)
        generator = ElectraForMaskedLM(generator_config(disc_config, size))
        return ElectraRTD(generator, discriminator, weight)
    discriminator = load_pretrained(cfg.model.path, "electra")
    if not isinstance(discriminator, ElectraForPreTraining):
        raise LmforgeError(
            f"pretrain.model.path: {cfg.model.path!r} is not an ELECTRA discriminator; "
            "objective electra continues an earlier electra run's pretrain/model"
        )
    gen_dir = resolve_model_path(cfg.model.path) / GENERATOR_DIR
    if (gen_dir / "config.json").exists():
        generator = ElectraForMaskedLM.from_pretrained(gen_dir)
    else:
        generator = ElectraForMaskedLM(generator_config(discriminator.config, size))
    return ElectraRTD(generator, discriminator, weight)


def warn_if_untrained(final_eval: dict[str, float]) -> bool:
    """Warn when the discriminator does no better than calling every token original.

    Early in training it sits on that prior (and with a high lr and short warm-up it can
    collapse there: measured on a 2 x 128 encoder after 130 steps at lr 1e-3, which then
    fine-tuned at chance); its encoder is then a poor start for fine-tuning.

    Returns:
        True when the warning was given.
    """
    accuracy = final_eval.get("rtd_accuracy")
    baseline = final_eval.get("rtd_baseline_accuracy")
    if accuracy is None or baseline is None or accuracy > baseline + 0.005:
        return False
    logger.warning(
        "pretrain: the ELECTRA discriminator's replaced-token accuracy (%.3f) is no better than "
        "calling every token original (%.3f): it has learned nothing yet, and fine-tuning from "
        "it may do no better than from random weights; train longer (thousands of steps) "
        "and/or lower pretrain.lr with more warmup_steps",
        accuracy,
        baseline,
    )
    return True

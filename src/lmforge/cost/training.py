"""Training compute, time, price and energy of a Transformer from its size and token count.

FLOPs follow Kaplan et al. 2020 (§2.1) and PaLM (Chowdhery et al. 2022, appendix B), the
formula ``lmforge.models.flops.flops_per_token`` uses for a run's own MFU: 6 FLOPs per
parameter per token (2 forward, 4 backward) plus the attention score and value products,
``12 · layers · hidden · seq_len`` per token. Chinchilla's compute-optimal data size is about
20 tokens per parameter (Hoffmann et al. 2022, table 3).
"""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.cost.hardware import Hardware

CHINCHILLA_TOKENS_PER_PARAM = 20
# hidden / layers of well-known models: GPT-3 175B 12288/96 = 128, Llama-2-7B 4096/32 = 128,
# Chinchilla 70B 8192/80 = 102; used to guess a shape when only the size is given
ASPECT_RATIO = 128
HEAD_DIM = 128
# Ember, Global Electricity Review 2024: world average 480 gCO2/kWh in 2023
GRID_G_PER_KWH = 480.0


@dataclass(frozen=True)
class ModelShape:
    """What the cost model needs of a Transformer: its size and the attention term's shape."""

    params: float  # N in 6·N·D (all weights used in a matmul per token)
    layers: int
    hidden: int  # heads × head size: the width of the attention products
    seq_len: int
    vocab: int | None = None
    estimated: bool = False  # layers/hidden guessed from params (ASPECT_RATIO)

    @classmethod
    def from_params(
        cls,
        params: float,
        seq_len: int = 2048,
        layers: int | None = None,
        hidden: int | None = None,
    ) -> ModelShape:
        """A shape for ``params`` parameters; missing sizes follow ``N ≈ 12·L·d²``.

        With ``d = ASPECT_RATIO · L`` this gives GPT-3 175B's 96 × 12288 and Llama-2-7B's
        32 × 4096 back; the attention term it feeds is a few percent of the total.
        """
        if layers is None and hidden is None:
            hidden_f = (ASPECT_RATIO * params / 12) ** (1 / 3)
            hidden = max(HEAD_DIM, round(hidden_f / HEAD_DIM) * HEAD_DIM)  # whole heads
            layers = max(1, round(hidden_f / ASPECT_RATIO))
            return cls(params, layers, hidden, seq_len, estimated=True)
        if hidden is None:
            hidden = round((params / (12 * layers)) ** 0.5)
        elif layers is None:
            layers = max(1, round(params / (12 * hidden**2)))
        return cls(params, layers, hidden, seq_len)

    @property
    def heads(self) -> int:
        return max(1, round(self.hidden / HEAD_DIM))

    def flops_per_token(self) -> float:
        """Training FLOPs per token: ``6·N + 12·L·d·T``."""
        return 6 * self.params + self.attention_flops_per_token()

    def attention_flops_per_token(self) -> float:
        return 12.0 * self.layers * self.hidden * self.seq_len

    def forward_flops_per_token(self) -> float:
        """Inference (forward only): a third of training's ``2 + 4`` per weight."""
        return self.flops_per_token() / 3


def model_shape_from_config(config, seq_len: int) -> ModelShape:  # noqa: ANN001
    """The shape of a transformers config, with N counted as ``matmul_params`` counts it."""
    from lmforge.models.flops import matmul_params

    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return ModelShape(
        params=float(matmul_params(config)),
        layers=config.num_hidden_layers,
        hidden=heads * head_dim,
        seq_len=seq_len,
        vocab=config.vocab_size,
    )


def chinchilla_tokens(params: float) -> float:
    """Compute-optimal training tokens for ``params`` parameters (≈ 20·N)."""
    return CHINCHILLA_TOKENS_PER_PARAM * params


@dataclass(frozen=True)
class TrainingCost:
    """Compute, time, money and energy of one training run on one kind of device."""

    flops: float
    tokens: float
    hardware: Hardware
    devices: int
    mfu: float
    device_hours: float
    wall_hours: float
    price_usd: float
    energy_kwh: float
    co2_kg: float
    pue: float
    grid_g_per_kwh: float


def training_cost(
    flops: float,
    tokens: float,
    hardware: Hardware,
    devices: int = 1,
    mfu: float | None = None,
    pue: float = 1.0,
    grid_g_per_kwh: float = GRID_G_PER_KWH,
) -> TrainingCost:
    """Device-hours = FLOPs / (peak · MFU); wall time divides them over ``devices``.

    Energy is the devices' board power for those hours times the data centre's PUE (1.0:
    devices only); CO₂ is energy times the grid's intensity.
    """
    mfu = hardware.typical_mfu if mfu is None else mfu
    device_hours = flops / (hardware.peak_flops * mfu) / 3600
    energy = device_hours * hardware.watts / 1000 * pue
    return TrainingCost(
        flops=flops,
        tokens=tokens,
        hardware=hardware,
        devices=devices,
        mfu=mfu,
        device_hours=device_hours,
        wall_hours=device_hours / devices,
        price_usd=device_hours * hardware.price,
        energy_kwh=energy,
        co2_kg=energy * grid_g_per_kwh / 1000,
        pue=pue,
        grid_g_per_kwh=grid_g_per_kwh,
    )

"""Cost planning: training FLOPs, time, price, energy, memory per device and serving cost.

``lmforge cost`` prints a plan (``plan.plan_cost``); a run's report uses the same formulas
to state what repeating the run would cost on each hardware preset.
"""

from lmforge.cost.hardware import HARDWARE, Hardware, get_hardware, preset_names
from lmforge.cost.inference import InferenceCost, inference_cost
from lmforge.cost.memory import STRATEGIES, TrainingMemory, activation_bytes, training_memory
from lmforge.cost.training import (
    ModelShape,
    TrainingCost,
    chinchilla_tokens,
    model_shape_from_config,
    training_cost,
)

__all__ = [
    "HARDWARE",
    "STRATEGIES",
    "Hardware",
    "InferenceCost",
    "ModelShape",
    "TrainingCost",
    "TrainingMemory",
    "activation_bytes",
    "chinchilla_tokens",
    "get_hardware",
    "inference_cost",
    "model_shape_from_config",
    "preset_names",
    "training_cost",
    "training_memory",
]

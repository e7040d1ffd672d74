"""The attack registry: one file per attack, each adding itself to ``ATTACKS``.

Adding an attack is adding a module here that calls ``ATTACKS.add(name, Attack(...))`` (a
unit splitter and a candidate generator) and importing it below; the search, the success
check and the measures are shared (``base.py``).
"""

from lmforge.explain.attacks import char, chinese, chinese_form, word  # noqa: F401  (registers them)
from lmforge.explain.attacks.base import (
    ATTACKS,
    Attack,
    AttackResult,
    AttackSummary,
    attack_text,
    run_attack,
    summarise,
)

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackResult",
    "AttackSummary",
    "attack_text",
    "run_attack",
    "summarise",
]

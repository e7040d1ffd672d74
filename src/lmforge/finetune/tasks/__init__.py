"""Fine-tuning tasks: one module per task, each registering itself in ``TASKS``."""

from lmforge.finetune.tasks.base import TASKS, Task

__all__ = ["TASKS", "Task"]

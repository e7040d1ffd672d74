"""Fine-tuning tasks: one module per task, each registering itself in ``TASKS``."""

from lmforge.finetune.tasks import classification  # noqa: F401 - registers the task
from lmforge.finetune.tasks.base import TASKS, Encoded, Task

__all__ = ["TASKS", "Encoded", "Task"]

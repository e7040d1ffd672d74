"""Fine-tuning tasks: one module per task, each registering itself in ``TASKS``."""

from lmforge.tasks import (
    classification,  # noqa: F401 - registers the task
    extractive_qa,  # noqa: F401 - registers the task
    image_classification,  # noqa: F401 - registers the task
    instruction,  # noqa: F401 - registers the task
    token_classification,  # noqa: F401 - registers the task
    translation,  # noqa: F401 - registers the task
)
from lmforge.tasks.base import TASKS, Encoded, Task

__all__ = ["TASKS", "Encoded", "Task"]

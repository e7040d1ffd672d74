"""Fine-tuning: tasks (one file each), parameter-efficient methods (peft), zero/few-shot."""

"""The compress stage: distill, prune, quantize and export a fine-tuned model."""

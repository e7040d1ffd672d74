"""Self-supervised pretraining: objectives (clm, mlm, nsp), the training loop, checkpoints."""

"""Training: losses, degradation, training data, the Trainer and its checkpoints, DDP helpers."""

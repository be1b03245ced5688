"""Training: a generic loop that knows nothing about a particular model (trainer.py),
checkpoints as safetensors plus JSON (checkpoint.py), and multi-process data parallel
launch through torch.distributed.run (distributed.py)."""

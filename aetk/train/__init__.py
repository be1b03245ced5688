"""Training: a generic loop that knows nothing about a particular model (trainer.py),
the file formats of checkpoints and models, safetensors plus JSON (checkpoint.py), and
multi-process data parallel launch through torch.distributed.run (distributed.py). The run
folder and its file names are aetk.artifacts.RunDir's; the trainer writes through one."""

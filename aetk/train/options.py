"""How ``aetk train`` runs a training job. What is trained (model, data, optimisation) is the
run's config (aetk/config.py: RunConfig, TOML plus dotted overrides, saved with the run);
these are the job's own options, which are not saved with it."""

from __future__ import annotations

from dataclasses import dataclass

from aetk.options import option


@dataclass(frozen=True)
class TrainOptions:
    resume: bool = option(False, "--resume", "Continue the run in --run-dir from its saved config; overrides may "
                          "change only epochs, early stopping, checkpointing, logging and the device.")
    nproc_per_node: int = option(1, "--nproc-per-node", "Data-parallel processes (torch.distributed.run).", min=1)


@dataclass(frozen=True)
class ClassifyOptions:
    """``aetk classify``: a classifier fine-tuned from a trained encoder on a few labels."""

    labelled: int = option(1000, "--labelled", "Labelled training examples to use.", short="-n", min=1)
    epochs: int = option(20, "--epochs", "Epochs for each classifier.", min=1)
    lr: float = option(1e-3, "--lr", "Learning rate.", min=0)
    freeze: bool = option(False, "--freeze", "Train the head only (linear probe).")
    seed: int = option(0, "--seed", "Seed of the labelled subset and the training.")
    batch_size: int = option(64, "--batch-size", "Examples per step.", min=1)
    compare_scratch: bool = True  # also train the same network from scratch on the same labels (no flag)


__all__ = ["ClassifyOptions", "TrainOptions"]

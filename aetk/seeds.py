"""Every random stream of a training run, in one table, so no two features draw the same
numbers. Standard library only.

The fused random ops (aetk.ops: corrupt, reparameterize, normal, random_words) draw Philox
numbers from a key and a counter (the step). Each feature keys its draws with its own
sub-stream of the run seed, ``derive_seed(seed, Stream.X)``: the variational sampling
(aetk.ops.reparameterize) keeps the run seed itself. The numbers are part of every saved
run's results (a resumed run must draw what an uninterrupted one would), so they are never
renumbered: a new feature takes a new number.

    key = derive_seed(model.seed, Stream.FLIPS)
"""

from __future__ import annotations

import enum

MAX_SEED = 2**63 - 1  # seeds and offsets travel as int64 through torch.library


@enum.unique
class Stream(enum.IntEnum):
    """Philox sub-streams of a run seed (the argument ``stream`` of :func:`derive_seed`)."""

    STACKED_FINETUNE = 0  # stacked: the corruption while fine-tuning (its layers: stacked_layer)
    CORRUPTION = 1  # denoising: the corruption q(x~ | x) of its input
    RESCONV_SIGMA = 2  # resconv: each example's training noise level
    RESCONV_NOISE = 3  # resconv: the training noise
    RESCONV_GROW = 4  # resconv: which channels a widened model copies
    FLIPS = 101  # train.flips: each example's symmetry
    SYNTH_PARAMS = 111  # noise synthesis (resunet): each example's noise parameters
    SYNTH_AWGN = 112  # noise synthesis: white Gaussian noise
    SYNTH_CAMERA = 113  # noise synthesis: signal-dependent camera noise
    SYNTH_CORRELATED = 114  # noise synthesis: spatially correlated noise
    SYNTH_SHARED = 115  # noise synthesis: noise shared by the colour channels


# Greedy pretraining of a stacked autoencoder: layer i corrupts its input with stream 1 + i.
# These numbers overlap CORRUPTION and the RESCONV_* ones, which a stacked model never uses (a
# stacked base wrapped by denoising is not pretrained); they stay below FLIPS, which any model
# may use, because a stacked model has at most STACKED_MAX_LAYERS layers.
STACKED_MAX_LAYERS = Stream.FLIPS - 1


def stacked_layer(layer: int) -> int:
    """The sub-stream of stacked layer ``layer``'s pretraining corruption."""
    if not 0 <= layer < STACKED_MAX_LAYERS:
        raise ValueError(f"stacked layer {layer} has no random stream (at most {STACKED_MAX_LAYERS} layers)")
    return 1 + layer


def derive_seed(seed: int, stream: int) -> int:
    """An independent Philox key for sub-stream ``stream`` of a run seed (splitmix64), so two
    random ops of one model at one step never draw the same numbers."""
    z = (seed + (stream + 1) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & MAX_SEED


# Seeds of the trainer's torch generators (batch order, validation split, data loader): plain
# offsets of the run seed, not Philox streams.
RANK_STRIDE = 1_000_003  # process r of a data-parallel run draws with seed + r * RANK_STRIDE
EPOCH_STRIDE = 1_000_003  # the batch order of an epoch: seed * EPOCH_STRIDE + epoch
PRETRAIN_OFFSET = 7919  # pretraining's batch order and flips: the run seed + this


def rank_seed(seed: int, rank: int) -> int:
    """The seed of process ``rank`` (rank 0 draws what a single process would)."""
    return seed + RANK_STRIDE * rank


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's batch order."""
    return seed * EPOCH_STRIDE + epoch


__all__ = ["EPOCH_STRIDE", "MAX_SEED", "PRETRAIN_OFFSET", "RANK_STRIDE", "STACKED_MAX_LAYERS", "Stream",
           "derive_seed", "epoch_seed", "rank_seed", "stacked_layer"]

"""aetk.seeds: one table of random streams, so no two features draw the same numbers."""

from __future__ import annotations

import pytest

from aetk import seeds
from aetk.seeds import Stream, derive_seed


def test_every_stream_has_its_own_number_and_key():
    numbers = [s.value for s in Stream]
    assert len(numbers) == len(set(numbers)) == len(Stream.__members__)  # no aliases
    keys = {derive_seed(1234, s) for s in Stream}
    assert len(keys) == len(Stream) and 1234 not in keys  # and none is the run seed itself


def test_the_numbers_of_saved_runs_never_change():
    # Resumed and reproduced runs depend on these: renumbering one changes every result.
    assert {s.name: int(s) for s in Stream} == {
        "STACKED_FINETUNE": 0, "CORRUPTION": 1, "RESCONV_SIGMA": 2, "RESCONV_NOISE": 3, "RESCONV_GROW": 4,
        "FLIPS": 101, "SYNTH_PARAMS": 111, "SYNTH_AWGN": 112, "SYNTH_CAMERA": 113, "SYNTH_CORRELATED": 114,
        "SYNTH_SHARED": 115}
    assert (derive_seed(0, 0), derive_seed(1234, Stream.FLIPS)) == (7070836379803831727, 8145154373966380972)
    assert seeds.rank_seed(7, 2) == 7 + 2 * 1_000_003 and seeds.epoch_seed(7, 3) == 7 * 1_000_003 + 3
    assert seeds.PRETRAIN_OFFSET == 7919


def test_stacked_layers_never_reach_the_streams_every_model_may_use():
    layers = {seeds.stacked_layer(i) for i in range(seeds.STACKED_MAX_LAYERS)}
    shared = {Stream.FLIPS, *(s for s in Stream if s.name.startswith("SYNTH_")), Stream.STACKED_FINETUNE}
    assert not layers & {int(s) for s in shared}
    with pytest.raises(ValueError, match="at most"):
        seeds.stacked_layer(seeds.STACKED_MAX_LAYERS)

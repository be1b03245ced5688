"""Datasets to latent codes and back (``aetk compress``, ``decompress``, ``neighbors``).

| module        | what                                                                   |
|---------------|------------------------------------------------------------------------|
| job.py        | compress(): checks, resume or refuse, the engine, report and manifest  |
| encode.py     | ShardEncoder: read -> encode (ONNX Runtime) -> write, overlapped       |
| ray_engine.py | the same shards on Ray Data: an actor pool, one session per actor      |
| manifest.py   | folder layout, shard plan, the job, journal, manifest (its own sha256, |
|               | every path and layout in it checked before use)                        |
| shards.py     | shard files: .npy or Parquet, zstd, sha256                             |
| quantize.py   | float32 / float16 / int8 (per-dimension scale and offset) codes        |
| model.py      | -m MODEL: export folder or run, the shape check, CODES/model/          |
| codes.py      | reading a complete folder, checksums first; verify()                   |
| decode.py     | decompress() into the sources' formats and each item's own layout;     |
|               | outputs checked first (inside -o, never the source); PSNR              |
| report.py     | bytes per item against raw data and PNG                                |
| neighbors.py  | exact nearest neighbours in code space; contact sheets                 |

The compress path runs on ``aetk.runtime`` and ``aetk.data``'s streaming readers and never
imports torch (only exporting a run folder does).
"""

from aetk.compress.codes import Codes, verify
from aetk.compress.decode import DecompressResult, decompress
from aetk.compress.errors import (CompressError, CorruptShardError, IncompleteCodesError, OutputExistsError,
                                  ShapeMismatchError, StaleCodesError, UnsafeManifestError)
from aetk.compress.job import CompressResult, compress
from aetk.compress.neighbors import NeighborResult, neighbors
from aetk.compress.options import (CompressOptions, DecompressOptions, Local, NeighborsOptions, Ray,
                                   ReaderOptions)

__all__ = ["Codes", "CompressError", "CompressOptions", "CompressResult", "CorruptShardError", "DecompressOptions",
           "DecompressResult", "IncompleteCodesError", "Local", "NeighborResult", "NeighborsOptions",
           "OutputExistsError", "Ray", "ReaderOptions", "ShapeMismatchError",
           "StaleCodesError", "UnsafeManifestError", "compress", "decompress", "neighbors", "verify"]

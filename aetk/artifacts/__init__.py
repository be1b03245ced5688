"""Every folder aetk saves, and the only place that knows the file names inside them.

| module        | what                                                                       |
|---------------|----------------------------------------------------------------------------|
| run_dir.py    | RunDir: an `aetk train` run folder (config, model, checkpoints, lock, data) |
| export_dir.py | ExportDir: an `aetk export` folder (graphs, precision variants, report,    |
|               | Triton layout); standard library only                                      |
| codes_dir.py  | CodesDir: an `aetk compress` folder (manifest, shards, model/, verify)     |
| resolve.py    | resolve(spec): a path -> the folder it is, or an ArtifactError             |
| errors.py     | ArtifactError and the codes-folder errors                                  |

Layers: ``ops, models, data, normalization`` <- ``train`` <- ``artifacts`` <- ``export,
evaluate, runtime`` <- ``denoise, compress, serve`` <- ``cli``. This package reads and writes
with the training layer's formats (``aetk.train.checkpoint``) and is used by everything above;
the trainer writes its run folder through a RunDir handed to it, so ``train`` never needs a
name. Exporting a run once and caching it needs the exporter, one layer up: it is
``aetk.export.ensure_export(run)``, which keeps the export where ``RunDir`` says.

``aetk.runtime`` must stay torch-free and takes its graph file names from ``export_dir``. So
importing this package imports nothing heavy: ``export_dir``, ``codes_dir``, ``resolve`` and
``errors`` use the standard library only, and ``RunDir`` imports the training layer (torch)
inside the methods that build or save a model, not at import time. Opening an export folder
is the runtime's: ``aetk.runtime.load_export(ExportDir(...))`` (every folder object is
path-like), so nothing here points upward to the runtime.
"""

from aetk.artifacts.codes_dir import CodesDir
from aetk.artifacts.errors import ArtifactError
from aetk.artifacts.export_dir import ExportDir, sigma_graph_beside
from aetk.artifacts.resolve import resolve
from aetk.artifacts.run_dir import LoadedRun, RunDataError, RunDir, train_run

__all__ = ["ArtifactError", "CodesDir", "ExportDir", "LoadedRun", "RunDataError", "RunDir", "resolve", "sigma_graph_beside",
           "train_run"]

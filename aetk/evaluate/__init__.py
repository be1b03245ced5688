"""Evaluation and pictures of trained runs (``aetk eval``, ``aetk sample``, ``aetk classify``).

    from aetk.evaluate import evaluate_run, sample_run

    metrics = evaluate_run("runs/deep")      # runs/deep/eval/metrics.json + PNGs
    metrics["model"]["sse_per_example"], metrics["pca"]["sse_per_example"]
    sample_run("runs/vae", n=64, seed=0)     # runs/vae/eval/samples.png

- evaluation.py  ``evaluate_run``: metrics side by side with PCA of the same code size,
                 reconstructions.png, training_curves.png, codes_2d.png, latent_grid.png
- sampling.py    ``sample_run``: samples.png
- pca.py         ``PCA`` (numpy, float64; fit / transform / inverse_transform)
- metrics.py     SSE, MSE, PSNR, BCE on flattened arrays
- plots.py       image grids (de-normalized), line plots, curves, scatter plots
- loading.py     ``load_run``: model, config and data of a run folder (aetk.artifacts.RunDir.load)
- classify.py    ``finetune_classifier`` (``aetk classify``): a classifier on a run's encoder
"""

from aetk.evaluate.evaluation import METRIC_LABELS, evaluate_run
from aetk.evaluate.loading import EvaluationError, LoadedRun, load_run
from aetk.evaluate.pca import PCA
from aetk.evaluate.sampling import sample_run

__all__ = ["METRIC_LABELS", "PCA", "EvaluationError", "LoadedRun", "evaluate_run", "load_run",
           "sample_run"]

"""Semi-supervised use of a trained autoencoder: fine-tune a classifier head (and the
encoder) on a small labelled subset, and compare with the same network trained from
scratch on the same labels (the point of unsupervised pretraining).

    result = finetune_classifier("runs/stacked", ClassifyOptions(labelled=500, epochs=30))
    result["accuracy"], result["scratch_accuracy"]
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from aetk.artifacts import RunDir
from aetk.atomic import atomic_write_text
from aetk.data import load_data
from aetk.errors import UserInputError
from aetk.models.classifier import Classifier
from aetk.models.registry import create_model
from aetk.options import check, flag
from aetk.progress import Progress, or_null
from aetk.train.options import ClassifyOptions

RESULT_FILE = "classifier.json"  # in the run's eval folder, beside what `aetk eval` writes


def _labelled_subset(labels: torch.Tensor, n: int, seed: int) -> list[int]:
    """n examples, balanced over classes as far as possible, chosen by seed."""
    g = torch.Generator().manual_seed(seed)
    classes = sorted(set(labels.tolist()))
    per = max(1, n // len(classes))
    chosen: list[int] = []
    for c in classes:
        idx = (labels == c).nonzero().flatten()
        chosen += idx[torch.randperm(len(idx), generator=g)[:per]].tolist()
    return sorted(chosen[:n])


def _fit(clf: Classifier, train_set, epochs: int, lr: float, batch_size: int, seed: int,
         tick=lambda epoch: None) -> None:
    params = [p for p in clf.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    clf.train()
    for epoch in range(epochs):
        loader = DataLoader(train_set, batch_size=batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(seed + epoch))
        for x, y in loader:
            loss = clf(x, y)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        tick(epoch + 1)


@torch.no_grad()
def _accuracy(clf: Classifier, dataset) -> float:
    clf.eval()
    right = total = 0
    for x, y in DataLoader(dataset, batch_size=512):
        right += int((clf.predict(x) == y).sum())
        total += len(y)
    return right / max(total, 1)


def finetune_classifier(run_dir: str | Path, options: ClassifyOptions = ClassifyOptions(),
                        progress: Progress | None = None) -> dict:
    """Train a classifier on ``options.labelled`` labelled training examples from the run's
    pretrained encoder; report test accuracy (and a from-scratch baseline). ``progress``
    starts a stage per classifier and advances once per epoch."""
    check(options)
    progress = or_null(progress)
    try:
        return _finetune(RunDir(run_dir), options, progress)
    finally:
        progress.finish()


def _finetune(run: RunDir, options: ClassifyOptions, progress: Progress) -> dict:
    labelled, epochs, lr, batch_size = options.labelled, options.epochs, options.lr, options.batch_size
    fine_tune, seed = not options.freeze, options.seed

    def report(stage: str):
        progress.start(stage, total=epochs, unit="epochs")
        return lambda _epoch: progress.advance(1)

    progress.start("loading the run and its data")
    model, meta = run.load_model()
    cfg = run.config()
    data = load_data(cfg.data)
    if not data.num_classes:
        raise UserInputError(f"the run's data ({data.source}) has no labels to train a classifier on")
    labels = torch.as_tensor(data.train.labels)
    if labelled < data.num_classes:
        raise UserInputError(f"{flag(options, 'labelled')} must be at least the number of classes "
                             f"({data.num_classes}), got {labelled}")
    train_set = Subset(data.train, _labelled_subset(labels, labelled, seed))
    test_set = data.test if data.test is not None else data.train

    torch.manual_seed(seed)
    clf = Classifier(copy.deepcopy(model), data.num_classes, fine_tune=fine_tune)
    _fit(clf, train_set, epochs, lr, batch_size, seed, report("pretrained encoder"))
    result = {"labelled": len(train_set), "epochs": epochs, "fine_tune": fine_tune,
              "accuracy": _accuracy(clf, test_set)}
    if options.compare_scratch:
        torch.manual_seed(seed)
        fresh = create_model(meta["kind"], tuple(meta["input_shape"]), **meta["config"])
        scratch = Classifier(fresh, data.num_classes, fine_tune=True)
        _fit(scratch, train_set, epochs, lr, batch_size, seed, report("from scratch"))
        result["scratch_accuracy"] = _accuracy(scratch, test_set)
    run.save_classifier(clf, {"num_classes": data.num_classes, **result})
    atomic_write_text(run.eval_dir / RESULT_FILE, json.dumps(result, indent=2))
    return result

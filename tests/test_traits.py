"""Model kinds declare what they are (``model.traits``, ``training_steps()``,
``pretraining_stages()``) and nothing guesses it (issue 21, item 3).

- Each kind's declared traits match its behaviour: a variational kind has ``encode_stats`` and
  exports the ``sample`` graph, a generator samples, a denoiser corrupts its input, the layout
  matches the modules and the input shape, a sigmoid output stays in [0, 1].
- No module of aetk/ or cli/ probes a model with ``hasattr``/``getattr`` (or compares a kind
  name to learn what a model can do): a source scan, with a small allow-list of non-model uses.
- The trainer runs the steps a model declares: a kind with two optimizers trains, checkpoints
  both, and resumes bit for bit.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from aetk.config import load_config
from aetk.export.exporter import model_metadata
from aetk.export.graphs import export_spec, graph_specs
from aetk.models import ModelTraits, TrainingStep, create_model, model_names
from aetk.models.mlp import ShallowAutoencoder
from aetk.models.registry import MODELS, register_model
from aetk.artifacts import train_run as train
from aetk.train.trainer import TrainingInterrupted, run_steps

ROOT = Path(__file__).resolve().parents[1]

# kind -> (input shape, options, the traits the kind must declare)
CASES = {
    "ae": ((20,), {"code_size": 6}, ModelTraits()),
    "ae_bce": ((20,), {"code_size": 6, "loss": "bce"}, ModelTraits(output_activation="sigmoid")),
    "deep": ((20,), {"widths": [12, 4]}, ModelTraits()),
    "sparse": ((20,), {"code_size": 8, "hidden": [12]}, ModelTraits()),
    "conv": ((1, 12, 12), {"channels": [4, 8], "code_size": 5},
             ModelTraits(layout="image", output_activation="sigmoid")),
    "conv_linear": ((1, 12, 12), {"channels": [4, 8], "code_size": 5, "output": "linear", "loss": "mse"},
                    ModelTraits(layout="image")),
    "denoising": ((20,), {"base": "deep", "base_params": {"widths": [12, 4]}},
                  ModelTraits(corruption=True, base_kind="deep")),
    "denoising_vae": ((20,), {"base": "vae", "base_params": {"latent_dim": 3, "hidden": [12]}},
                      ModelTraits(variational=True, generator=True, output_activation="sigmoid",
                                  corruption=True, base_kind="vae")),
    "contractive": ((20,), {"code_size": 6}, ModelTraits(contractive=True)),
    "vae": ((20,), {"latent_dim": 3, "hidden": [12]},
            ModelTraits(variational=True, generator=True, output_activation="sigmoid")),
    "vae_conv": ((1, 8, 8), {"arch": "conv", "latent_dim": 3, "hidden": [4]},
                 ModelTraits(variational=True, generator=True, layout="image", output_activation="sigmoid")),
    "stacked": ((20,), {"widths": [12, 4]}, ModelTraits(corruption=True, pretraining=True)),
    "lstm": ((7, 3), {"hidden_size": 8, "code_size": 4}, ModelTraits(layout="sequence")),
    "resconv": ((1, 8, 8), {"features": 4, "depth": 1}, ModelTraits(layout="image", corruption=True)),
    "resunet": ((3, 16, 16), {"width": 4, "blocks": 1, "scales": 2, "estimator_width": 4},
                ModelTraits(layout="image", corruption=True)),
}


def _kind(case: str) -> str:
    return case.split("_")[0]


def _model(case: str):
    shape, params, _ = CASES[case]
    torch.manual_seed(0)
    return create_model(_kind(case), shape, **params).eval()


def test_every_registered_kind_has_a_traits_case():
    assert sorted({_kind(c) for c in CASES}) == model_names(), "a model kind was added without a traits case"


@pytest.mark.parametrize("case", sorted(CASES))
def test_declared_traits_match_behaviour(case):
    model = _model(case)
    traits = model.traits
    assert traits == CASES[case][2]
    x = torch.rand(3, *model.input_shape)

    # layout: the modules and the input shape say the same
    convs = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    recurrent = any(isinstance(m, torch.nn.LSTM) for m in model.modules())
    assert convs == (traits.layout == "image") and recurrent == (traits.layout == "sequence")
    if traits.layout == "image":
        assert len(model.input_shape) in (2, 3)
    if traits.layout == "sequence":
        assert len(model.input_shape) == 2

    # variational: (mean, logvar), the mean is the code; the export adds the sample graph
    spec = export_spec(traits)
    names = [g.name for g in spec.graphs]
    if traits.variational:
        mean, logvar = model.encode_stats(x)
        torch.testing.assert_close(mean, model.encode(x))
        assert logvar.shape == mean.shape
        assert names == ["encoder", "decoder", "autoencoder", "sample"]
        assert spec.graph("encoder").outputs == ("mean", "logvar")
    else:
        with pytest.raises(NotImplementedError, match="variational"):
            model.encode_stats(x)
        assert names == ["encoder", "decoder", "autoencoder"]
        assert spec.graph("encoder").outputs == ("z",)
    # what the exported files say about the model is what it declares
    meta = model_metadata(model, None, "encoder")
    assert (meta.variational, meta.output_activation, meta.base_kind) == (
        traits.variational, traits.output_activation, traits.base_kind)
    rank = len(model.input_shape)
    want_layout = {"sequence": "NTF" if rank == 2 else "NF"}.get(traits.layout, {1: "NF", 2: "NHW", 3: "NCHW"}[rank])
    assert meta.layout == want_layout
    built = graph_specs(model, model.spatial_multiple)
    assert [g.name for g in built] == names
    assert [list(g.inputs) for g in built] == [list(g.inputs) for g in spec.graphs]

    # generator
    if traits.generator:
        assert model.sample(2, seed=1).shape == (2, *model.input_shape)
    else:
        with pytest.raises(NotImplementedError, match="generator"):
            model.sample(2)

    # corruption: the model's own, seeded by step
    if traits.corruption:
        noisy = model.corrupt_input(x, 5)
        assert noisy.shape == x.shape and not torch.equal(noisy, x)
        torch.testing.assert_close(model.corrupt_input(x, 5), noisy)
    else:
        with pytest.raises(NotImplementedError, match="corruption"):
            model.corrupt_input(x, 5)

    # contractive
    if traits.contractive:
        j = model.jacobian_norm(x)
        assert j.shape == (3,) and bool((j >= 0).all())
    else:
        with pytest.raises(NotImplementedError, match="contractive"):
            model.jacobian_norm(x)

    # pretraining: stages exactly when declared, each trained by its own declared steps
    stages = model.pretraining_stages()
    assert bool(stages) == traits.pretraining
    for stage in stages:
        assert stage.model.training_steps()[0].loss == "loss"
        assert "loss" in stage.model.train()(stage.inputs(x), step=0)

    # one training step by default: every parameter, the model's "loss"
    steps = model.training_steps()
    assert [(s.name, s.loss) for s in steps] == [("model", "loss")]
    assert [id(p) for p in steps[0].parameters()] == [id(p) for p in model.parameters()]

    # output activation: a sigmoid decoder stays in [0, 1] whatever the code; a linear one does not
    with torch.no_grad():
        z = model.encode(x)
        out = model.decode(10 * torch.randn_like(z) + z)
    in_unit = bool(((out >= 0) & (out <= 1)).all())
    assert in_unit == (traits.output_activation == "sigmoid")
    assert model.needs_unit_range == (traits.output_activation == "sigmoid")


def test_traits_are_frozen_and_check_the_layout():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ModelTraits().variational = True  # type: ignore[misc]
    with pytest.raises(ValueError, match="layout"):
        ModelTraits(layout="graph")


# -- no probes ------------------------------------------------------------------------------------
# Packages that handle models: no hasattr/getattr at all, except these, on things that are not
# models (path, first argument's source text) -> why.
MODEL_PACKAGES = ("aetk/models", "aetk/train", "aetk/export", "aetk/evaluate", "cli")
ALLOWED = {
    ("aetk/evaluate/loading.py", "run.data.train"): "the data set's source, to find its value range",
    ("aetk/evaluate/loading.py", "src"): "the data source's optional range facts (data, not a model)",
    ("cli/_errors.py", "sys.modules[_UsageError.__module__]"): "a click class that older clicks lack",
}
# Comparing a kind name to learn what a model can do; these read a saved model.json, no model.
KIND_COMPARE_ALLOWED = {("aetk/denoise/modelcheck.py", "denoising")}


def _sources():
    for top in ("aetk", "cli"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("aetk/cli/"):  # a link to cli/ in a development tree
                continue
            yield rel, ast.parse(path.read_text(), rel)


def _probes(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("hasattr", "getattr") and node.args:
            yield node.lineno, node.func.id, ast.unparse(node.args[0])


def test_no_model_is_probed_with_hasattr_or_getattr():
    found = []
    for rel, tree in _sources():
        in_model_package = rel.startswith(MODEL_PACKAGES)
        for line, fn, first in _probes(tree):
            about_a_model = "model" in first.lower() or (rel.startswith("aetk/models/") and first == "self")
            if (in_model_package or about_a_model) and (rel, first) not in ALLOWED:
                found.append(f"{rel}:{line}: {fn}({first}, ...)")
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == "__getattr__" and rel.startswith("aetk/models/"):
                found.append(f"{rel}:{node.lineno}: __getattr__ on a model")
    assert not found, "declare a trait on the model's base class instead of probing:\n" + "\n".join(found)


def test_no_kind_name_stands_for_an_ability():
    kinds = set(model_names())
    found = []
    for rel, tree in _sources():
        if rel.startswith("aetk/models/"):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            names = {s.value for s in sides if isinstance(s, ast.Constant) and isinstance(s.value, str)}
            if "kind" in ast.unparse(node.left) and names & kinds:
                for name in names & kinds:
                    if (rel, name) not in KIND_COMPARE_ALLOWED:
                        found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    assert not found, "read model.traits instead of the kind's name:\n" + "\n".join(found)


def test_the_allow_lists_name_existing_uses():
    """An allow-list entry that no longer matches anything is removed, not kept."""
    seen = {(rel, first) for rel, tree in _sources() for _, _, first in _probes(tree)}
    assert set(ALLOWED) <= seen, sorted(set(ALLOWED) - seen)


# -- the trainer runs the declared steps ----------------------------------------------------------
TWO_STEP = "test_two_step"


@pytest.fixture
def two_step_kind():
    """An `ae` that declares two optimizers: the encoder minimises the loss, the decoder the
    reconstruction term (as an adversarial kind's two players would)."""

    class TwoStep(ShallowAutoencoder):
        def training_steps(self):
            return (TrainingStep("encoder", self.net.enc.parameters, "loss"),
                    TrainingStep("decoder", lambda: [p for n, p in self.named_parameters()
                                                     if not n.startswith("net.enc.")], "recon"))

    register_model(TWO_STEP)(TwoStep)
    yield TWO_STEP
    del MODELS[TWO_STEP]


RUN = ['data.path="digits"', "data.limit=160", "model.code_size=4", "model.tied=false", "train.batch_size=32",
       "train.progress=false", "train.tensorboard=false", "train.val_fraction=0", "train.epochs=2",
       "train.schedule=\"cosine\""]


def test_run_steps_moves_each_steps_parameters_by_its_own_loss(two_step_kind):
    torch.manual_seed(0)
    model = create_model(two_step_kind, (20,), code_size=4, tied=False)
    steps = model.training_steps()
    opts = [torch.optim.SGD(list(st.parameters()), lr=0.1) for st in steps]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = model(torch.rand(8, 20))
    # What each step's optimizer should see: the gradient of its own loss alone.
    want = {}
    for st in steps:
        params = list(st.parameters())
        grads = torch.autograd.grad(out[st.loss], params, retain_graph=True)
        want.update({id(p): g for p, g in zip(params, grads)})
    run_steps(out, steps, opts, torch.amp.GradScaler("cuda", enabled=False), 0.0)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), before[n] - 0.1 * want[id(p)])


def test_a_kind_with_two_optimizers_checkpoints_both_and_resumes_exactly(two_step_kind, tmp_path):
    cfg = load_config(None, RUN + [f'model.kind="{two_step_kind}"'])
    straight = tmp_path / "straight"
    train(cfg, straight)
    a = load_file(straight / "model.safetensors")
    last = load_file(straight / "checkpoints" / "last.safetensors")
    assert any(k.startswith("optimizer.state.") for k in last)  # the first step: the usual key
    assert any(k.startswith("optimizer.decoder.state.") for k in last)

    cut = tmp_path / "cut"
    with pytest.raises(TrainingInterrupted):
        train(cfg, cut, stop_at_step=7)  # mid-epoch (5 batches per epoch)
    train(cfg, cut, resume=True)
    b = load_file(cut / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

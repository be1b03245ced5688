"""Model kinds: the forward contract for every registered kind, plus each kind's own
promises (tied weights, odd image sizes, corruption only in training, the contractive
penalty vs the true Jacobian, VAE mean/sampling, sparsity, layer-wise pretraining, the
classifier head, a short training run, config errors, export-ready encode/decode)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from aetk import ops
from aetk.models import Classifier, create_model, model_names
from aetk.seeds import derive_seed
from aetk.models.registry import config_fields, make_config

# kind -> (natural input shape, small hyperparameters)
KIND_CASES = {
    "ae": ((20,), dict(code_size=6)),
    "deep": ((20,), dict(widths=[16, 8, 4], batchnorm=True, dropout=0.1)),
    "conv": ((1, 12, 10), dict(channels=[4, 8], code_size=5)),
    "sparse": ((20,), dict(code_size=24, hidden=[12])),
    "denoising": ((20,), dict(base="ae", base_params=dict(code_size=6), corruption="masking", level=0.3)),
    "contractive": ((20,), dict(code_size=6, lam=0.5)),
    "vae": ((20,), dict(latent_dim=3, hidden=[12])),
    "stacked": ((20,), dict(widths=[12, 6], level=0.2)),
    "lstm": ((7, 3), dict(hidden_size=8, code_size=4)),
    "resconv": ((1, 8, 10), dict(features=6, depth=2)),
    "resunet": ((3, 16, 24), dict(width=4, blocks=1, scales=2, estimator_width=4)),
}
# Other variants run through the same contract.
VARIANTS = {
    "ae-bce-tied": ("ae", (2, 3, 4), dict(code_size=5, loss="bce", tied=True)),
    "ae-gaussian": ("ae", (20,), dict(code_size=5, loss="gaussian_nll", activation="tanh")),
    "deep-tied-relu": ("deep", (20,), dict(widths=[10, 3], tied=True, output="sigmoid")),
    "conv-rgb-odd-fullyconv": ("conv", (3, 9, 11),
                               dict(channels=[4, 6], code_size=0, loss="bce", refine=False)),
    "conv-gaussian-k4": ("conv", (1, 11, 13),
                         dict(channels=[4], kernel_size=4, convs_per_stage=2, loss="gaussian_nll")),
    "sparse-l1": ("sparse", (20,), dict(code_size=24, penalty="l1", activation="relu", l1=0.01)),
    "denoising-conv-gaussian": ("denoising", (1, 9, 9),
                                dict(base="conv", base_params=dict(channels=[4], code_size=3),
                                     corruption="gaussian", level=0.1)),
    "denoising-vae-saltpepper": ("denoising", (20,),
                                 dict(base="vae", base_params=dict(latent_dim=2, hidden=[8]),
                                      corruption="salt_pepper", level=0.2)),
    "vae-conv-gaussian": ("vae", (3, 10, 9), dict(arch="conv", latent_dim=3, hidden=[4, 6],
                                                  likelihood="gaussian", batchnorm=True)),
    "stacked-bce-untied": ("stacked", (20,), dict(widths=[10, 5], loss="bce", tied=False,
                                                  finetune_corruption=True)),
    "resconv-rgb-hw": ("resconv", (3, 6, 8), dict(features=5, depth=0, clip=False)),
    "resconv-2d": ("resconv", (6, 4), dict(features=4, depth=1)),
    "resconv-context": ("resconv", (1, 16, 8), dict(features=4, depth=2, context=3)),
    "resconv-refine": ("resconv", (1, 8, 10), dict(features=4, depth=1, refine=3, refine_depth=1)),
    "resconv-refine-level": ("resconv", (3, 8, 10), dict(features=4, depth=1, refine=3, refine_depth=1,
                                                         refine_level=True)),
    "resunet-mse-gray": ("resunet", (1, 16, 8), dict(width=4, blocks=2, scales=3, estimator_width=4, loss="mse")),
    "lstm-1d-gaussian": ("lstm", (9,), dict(hidden_size=6, code_size=2, num_layers=2,
                                            loss="gaussian_nll")),
}
CASES = {k: (k, *v) for k, v in KIND_CASES.items()} | VARIANTS
B = 5


def build(kind, shape, params, seed=0):
    torch.manual_seed(seed)
    return create_model(kind, shape, **params)


def test_every_registered_kind_is_in_the_table():
    missing = sorted(set(model_names()) - set(KIND_CASES))
    extra = sorted(set(KIND_CASES) - set(model_names()))
    assert not missing, f"add these kinds to KIND_CASES in tests/test_models.py: {missing}"
    assert not extra, f"KIND_CASES names unregistered kinds: {extra}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_contract(case):
    kind, shape, params = CASES[case]
    model = build(kind, shape, params)
    assert model.kind == kind
    x = torch.rand(B, *shape)
    model.train()
    out = model(x, step=3)
    for key in ("x_hat", "z", "loss", "recon"):
        assert key in out, key
    assert out["x_hat"].shape == x.shape
    assert out["z"].shape == (B, *model.code_shape)
    for k, v in out.items():
        if k not in ("x_hat", "z"):
            assert v.dim() == 0, f"term {k} is not a scalar"
            assert torch.isfinite(v), f"term {k} = {v}"
    out["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{case}: no gradient for {name}"
        assert torch.isfinite(p.grad).all(), name

    model.eval()
    with torch.no_grad():
        z = model.encode(x)
        assert z.shape == (B, *model.code_shape)
        x_dec = model.decode(z)
        assert x_dec.shape == x.shape
        if model.needs_unit_range:
            assert 0 <= x_dec.min() and x_dec.max() <= 1
        again = model(x, step=3)
        torch.testing.assert_close(again["loss"], model(x, step=3)["loss"])  # reproducible


@pytest.mark.parametrize("case", sorted(CASES))
def test_rebuilds_from_hyperparameters_and_saves_as_safetensors(case):
    from safetensors.torch import load, save

    kind, shape, params = CASES[case]
    model = build(kind, shape, params)
    hp = model.hyperparameters()
    assert set(hp) == set(config_fields(kind))
    twin = create_model(kind, shape, **hp)
    twin.load_state_dict(load(save(model.state_dict())))  # no shared tensors (tied weights)
    model.eval(), twin.eval()
    x = torch.rand(3, *shape)
    with torch.no_grad():
        torch.testing.assert_close(twin.decode(twin.encode(x)), model.decode(model.encode(x)))


class _RecordOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("case", sorted(CASES))
def test_encode_decode_use_plain_deterministic_torch_ops(case):
    """Export readiness: no aetk custom ops and no random ops in encode/decode."""
    kind, shape, params = CASES[case]
    model = build(kind, shape, params).eval()
    x = torch.rand(2, *shape)
    with torch.no_grad(), _RecordOps() as rec:
        model.decode(model.encode(x))
    assert rec.names
    bad = [n for n in rec.names if n.startswith("aetk.") or any(
        r in n for r in ("rand", "normal", "bernoulli", "dropout", "multinomial"))]
    assert not bad, bad


def test_needs_unit_range():
    assert create_model("ae", (4,), loss="bce").needs_unit_range
    assert not create_model("ae", (4,)).needs_unit_range
    assert create_model("ae", (4,), output="sigmoid").needs_unit_range
    assert create_model("vae", (4,)).needs_unit_range  # bernoulli by default
    assert not create_model("vae", (4,), likelihood="gaussian").needs_unit_range
    assert create_model("denoising", (4,), base="ae", base_params={"loss": "bce"}).needs_unit_range
    assert not create_model("denoising", (4,), base="deep", base_params={"widths": [2]}).needs_unit_range


# -- tied weights ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind,params", [("ae", dict(code_size=4)), ("deep", dict(widths=[6, 3])),
                                         ("stacked", dict(widths=[6, 3])), ("contractive", dict(code_size=4))])
def test_tied_weights_share_the_parameter(kind, params):
    tied = build(kind, (10,), dict(params, tied=True))
    untied = build(kind, (10,), dict(params, tied=False))
    net = tied.net
    assert not hasattr(net, "dec")
    widths = [10, *params.get("widths", [params.get("code_size")])]
    enc_params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    assert sum(p.numel() for p in tied.parameters()) == enc_params + sum(widths[:-1])
    assert sum(p.numel() for p in untied.parameters()) == 2 * enc_params - sum(widths[1:]) + sum(widths[:-1])
    # The decoder really is W^T: its last layer computes F.linear(h, W0^T, c0).
    tied.eval()
    x = torch.rand(3, 10)
    z = tied.encode(x)
    h = z
    for i in reversed(range(net.depth)):
        h = h @ net.enc[i].weight + net.dec_bias[i]
        if i:
            h = net.dec_act[i](h)
    torch.testing.assert_close(tied.decode(z), tied.head.data(h))
    # One parameter gets the gradient of both uses.
    tied.train()
    tied(x)["loss"].backward()
    g_both = net.enc[0].weight.grad.clone()
    tied.zero_grad()
    tied.head.loss(net.decode(z.detach()), x).backward()
    assert not torch.allclose(g_both, net.enc[0].weight.grad)
    with torch.no_grad():
        net.enc[0].weight.mul_(2)
    assert not torch.allclose(tied.decode(z.detach()), tied.head.data(h.detach()))


# -- conv -----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,code_size", [((1, 28, 28), 30), ((3, 33, 47), 8), ((28, 28), 0),
                                             ((3, 33, 47), 0), ((1, 9, 8), 2)])
@pytest.mark.parametrize("kernel,convs,refine", [(3, 1, True), (4, 2, False), (4, 1, True)])
def test_conv_handles_any_image_size(shape, code_size, kernel, convs, refine):
    model = build("conv", shape, dict(channels=[4, 8, 8], code_size=code_size, kernel_size=kernel,
                                      convs_per_stage=convs, refine=refine))
    x = torch.rand(2, *shape)
    out = model(x)
    assert out["x_hat"].shape == x.shape
    if code_size:
        assert model.code_shape == (code_size,)
    else:
        pad = (kernel - 1) // 2
        h, w = shape[-2:]
        for _ in range(3):
            h, w = (h + 2 * pad - kernel) // 2 + 1, (w + 2 * pad - kernel) // 2 + 1
        assert model.code_shape == (8, h, w)


def test_conv_too_small_input_says_so():
    with pytest.raises(ValueError, match="too small"):
        create_model("conv", (1, 2, 2), channels=[4, 4, 4], kernel_size=4)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        create_model("conv", (784,))


# -- denoising ------------------------------------------------------------------------------
def test_denoising_corrupts_in_training_only():
    kind, shape, params = CASES["denoising"]
    model = build(kind, shape, params)
    model.seed = 11
    assert model.base_model.seed == 11
    x = torch.rand(B, *shape)
    model.eval()
    ev = model(x, step=4)
    clean = model.base_model(x, step=4)
    torch.testing.assert_close(ev["loss"], clean["loss"])
    torch.testing.assert_close(ev["x_hat"], clean["x_hat"])
    model.train()
    tr = model(x, step=4)
    noisy = model.corrupt_input(x, 4)
    expect = ops.corrupt(x, "masking", 0.3, derive_seed(11, 1), 4)
    torch.testing.assert_close(noisy, expect)
    assert (noisy == 0).float().mean() > 0.1 and not torch.equal(noisy, x)
    # The training loss scores the reconstruction of the corrupted input against clean x.
    torch.testing.assert_close(tr["loss"], model.base_model(noisy, target=x, step=4)["loss"])
    torch.testing.assert_close(model.encode(x), model.base_model.encode(x))
    assert not torch.equal(model.corrupt_input(x, 5), noisy)  # a new step, new noise


def test_denoising_delegates_kind_extras():
    model = create_model("denoising", (6,), base="vae", base_params=dict(latent_dim=2, hidden=[4]))
    assert model.sample(3).shape == (3, 6)
    assert model.traits.variational and model.traits.generator and model.traits.base_kind == "vae"
    assert model.encode_stats(torch.rand(2, 6))[0].shape == (2, 2)
    # A wrapped stacked model trains whole on corrupted inputs: no greedy stages.
    wrapped = create_model("denoising", (6,), base="stacked", base_params=dict(widths=[4, 2]))
    assert wrapped.pretraining_stages() == [] and not wrapped.traits.pretraining


# -- contractive ----------------------------------------------------------------------------
def test_contractive_penalty_is_the_squared_jacobian_norm():
    model = build("contractive", (7,), dict(code_size=5, lam=0.3)).double()
    x = torch.rand(4, 7, dtype=torch.float64)
    truth = torch.stack([(torch.func.jacrev(lambda v: model.encode(v[None])[0])(xi) ** 2).sum()
                         for xi in x])
    torch.testing.assert_close(model.jacobian_norm(x), truth)
    out = model(x)
    torch.testing.assert_close(out["contractive"], truth.mean())
    torch.testing.assert_close(out["loss"], out["recon"] + 0.3 * truth.mean())


# -- vae ------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch,shape", [("mlp", (12,)), ("conv", (1, 8, 8))])
def test_vae_encode_mean_sample_and_elbo(arch, shape):
    model = build("vae", shape, dict(arch=arch, latent_dim=3, hidden=[6] if arch == "mlp" else [4, 4]))
    x = torch.rand(B, *shape)
    mu, logvar = model.encode_stats(x)
    for mode in (True, False):
        model.train(mode)
        torch.testing.assert_close(model.encode(x), mu)
        torch.testing.assert_close(model.encode(x), model.encode(x))
    z = model.encode(x, sample=True, step=2)
    assert z.shape == mu.shape and not torch.allclose(z, mu)
    s = model.sample(7, seed=1)
    assert s.shape == (7, *shape) and 0 <= s.min() and s.max() <= 1
    torch.testing.assert_close(model.sample(7, seed=1), s)
    assert not torch.allclose(model.sample(7, seed=2), s)
    out = model(x, step=1)
    torch.testing.assert_close(out["elbo"], -(out["recon"] + out["kl"]))
    _, kl = ops.reparameterize(mu.contiguous(), logvar.contiguous(), 0, 1)
    torch.testing.assert_close(out["kl"], kl.mean())
    assert out["kl"] >= 0


def test_vae_beta_weights_the_kl():
    x = torch.rand(B, 12)
    a = build("vae", (12,), dict(latent_dim=3, hidden=[6], beta=1.0))(x)
    b = build("vae", (12,), dict(latent_dim=3, hidden=[6], beta=4.0))(x)
    torch.testing.assert_close(b["loss"], a["recon"] + 4.0 * a["kl"])


# -- sparse ---------------------------------------------------------------------------------
def test_sparse_kl_penalty_is_zero_at_the_target_rate():
    model = create_model("sparse", (10,), code_size=16, rho=0.1)
    z = torch.full((8, 16), 0.1)
    assert float(model.sparsity_penalty(z)) == pytest.approx(0.0, abs=1e-6)
    z2 = torch.rand(8, 16)
    z2 = z2 / z2.mean(0) * 0.1  # per-unit mean exactly rho, varying examples
    assert float(model.sparsity_penalty(z2)) == pytest.approx(0.0, abs=1e-5)
    assert float(model.sparsity_penalty(torch.full((8, 16), 0.5))) > 1.0


def test_sparse_terms():
    model = build("sparse", (10,), dict(code_size=16, penalty="l1", activation="relu", l1=0.5))
    x = torch.rand(4, 10)
    out = model(x)
    z = model.encode(x)
    torch.testing.assert_close(out["sparsity"], z.abs().sum(1).mean())
    torch.testing.assert_close(out["mean_activation"], z.abs().mean())
    torch.testing.assert_close(out["loss"], out["recon"] + 0.5 * out["sparsity"])
    with pytest.raises(ValueError, match="sigmoid"):
        create_model("sparse", (10,), activation="relu")


# -- stacked --------------------------------------------------------------------------------
@pytest.mark.parametrize("tied", [True, False])
def test_stacked_pretraining_trains_one_layer_per_stage(tied):
    model = build("stacked", (20,), dict(widths=[12, 8, 4], tied=tied))
    model.seed = 3
    stages = model.pretraining_stages()
    assert [name for name, _, _ in stages] == ["layer1", "layer2", "layer3"]
    x = torch.rand(16, 20)
    dims = [20, 12, 8, 4]
    for i, (name, stage, input_fn) in enumerate(stages):
        own = {id(p) for p in model.net.enc[i].parameters()} | {id(p) for p in model.net.decoder_parameters(i)}
        trainable = {id(p) for p in stage.parameters() if p.requires_grad}
        assert trainable == own, name
        inp = input_fn(x)
        assert inp.shape == (16, dims[i]) and not inp.requires_grad
        torch.testing.assert_close(inp, model.net.encode(x, upto=i))
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        opt = torch.optim.SGD(stage.parameters(), lr=0.5)
        for step in range(3):
            out = stage(input_fn(x), step=step)
            assert out["z"].shape == (16, dims[i + 1]) and out["x_hat"].shape == inp.shape
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
        changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
        expected = {n for n, p in model.named_parameters() if id(p) in own}
        assert changed == expected, name
    # Stage noise: its own stream, and only in training mode.
    _, stage, input_fn = stages[1]
    h = input_fn(x)
    stage.eval()
    torch.testing.assert_close(stage(h)["x_hat"], stage.decode(stage.encode(h)))
    torch.testing.assert_close(model.corrupt_input(h, 0, 1),
                               ops.corrupt(h, "masking", 0.25, derive_seed(3, 2), 0))


def test_stacked_finetunes_end_to_end():
    model = build("stacked", (20,), dict(widths=[12, 4]))
    model(torch.rand(6, 20))["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())


# -- classifier -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data[:400], dtype=torch.float32) / 16
    y = torch.tensor(d.target[:400])
    return x, y


@pytest.mark.parametrize("fine_tune", [True, False])
def test_classifier_head_trains(digits, fine_tune):
    x, y = digits
    model = build("ae", (64,), dict(code_size=32, activation="relu"))
    clf = Classifier(model, 10, fine_tune=fine_tune)
    enc_before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.Adam([p for p in clf.parameters() if p.requires_grad], lr=5e-2)
    first = None
    for _ in range(40):
        out = clf(x, y)
        assert out["logits"].shape == (len(x), 10)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = float(out["loss"].detach()) if first is None else first
    out = clf(x, y)
    assert float(out["loss"].detach()) < 0.6 * first
    assert float(out["accuracy"]) > 0.7
    assert "loss" not in clf(x) and clf.predict(x).shape == (len(x),)
    same = all(torch.equal(a, b) for a, b in zip(enc_before, model.parameters()))
    assert same == (not fine_tune)
    assert all(p.requires_grad == fine_tune for p in model.parameters())


@pytest.mark.parametrize("case", ["stacked", "conv", "vae", "denoising"])
def test_classifier_on_any_kind(case):
    kind, shape, params = CASES[case]
    clf = Classifier(build(kind, shape, params), 3)
    out = clf(torch.rand(4, *shape), torch.tensor([0, 1, 2, 1]))
    out["loss"].backward()
    assert out["logits"].shape == (4, 3)
    assert all(p.grad is not None for p in clf.head.parameters())
    assert any(p.grad is not None for p in clf.encoder_model.parameters())


# -- a short training run -------------------------------------------------------------------
def test_deep_learns_digits(digits):
    x, _ = digits
    model = build("deep", (64,), dict(widths=[48, 24, 8], output="sigmoid"))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(60):
        out = model(x, step=step)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert losses[-1] < 0.5 * losses[0]


# -- configuration errors -------------------------------------------------------------------
def test_bad_configs_list_the_valid_choices():
    with pytest.raises(ValueError, match="valid kinds: .*ae.*conv.*vae"):
        create_model("transformer", (4,))
    with pytest.raises(ValueError, match="valid options: .*code_size"):
        create_model("ae", (4,), code_sise=3)
    with pytest.raises(ValueError, match="valid: sigmoid, relu, tanh, linear"):
        create_model("ae", (4,), activation="swish")
    with pytest.raises(ValueError, match="valid losses: mse, bce, gaussian_nll"):
        create_model("deep", (4,), loss="l2")
    with pytest.raises(ValueError, match="valid: mlp, conv"):
        make_config("vae", {"arch": "rnn"})
    with pytest.raises(ValueError, match="valid: bernoulli, gaussian"):
        make_config("vae", {"likelihood": "poisson"})
    with pytest.raises(ValueError, match="valid: gaussian, masking"):
        make_config("denoising", {"corruption": "blur"})
    with pytest.raises(ValueError, match="valid kinds"):
        make_config("denoising", {"base": "nope"})
    with pytest.raises(ValueError, match="valid options: .*widths"):
        make_config("denoising", {"base": "deep", "base_params": {"width": [3]}})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        make_config("stacked", {"level": 1.5})
    with pytest.raises(ValueError, match="positive integers"):
        make_config("deep", {"widths": [8, 0]})
    with pytest.raises(ValueError, match="valid: kl, l1"):
        make_config("sparse", {"penalty": "l2"})


def test_resconv_trains_on_blind_noise_of_per_example_levels():
    model = build("resconv", (1, 16, 16), dict(features=4, depth=1, sigma_max=0.2))
    x = torch.full((64, 1, 16, 16), 0.5)
    noisy = model.add_noise(x, step=7)
    sigmas = (noisy - x).flatten(1).std(1)
    assert 0.0 <= sigmas.min() < 0.05 and 0.15 < sigmas.max() <= 0.21  # spread over [0, 0.2]
    torch.testing.assert_close(noisy, model.add_noise(x, step=7))  # (seed, step) reproducible
    assert not torch.equal(noisy, model.add_noise(x, step=8))
    assert model.add_noise(torch.ones(4, 1, 16, 16), 1).max() <= 1.0  # clipped like a saved image
    # Zero noise estimate: the identity, so training starts from "do no harm" plus learning.
    torch.nn.init.zeros_(model.noise.weight)
    torch.nn.init.zeros_(model.noise.bias)
    y = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(model.decode(model.encode(y)), y)
    with pytest.raises(ValueError, match="multiples of 2"):
        create_model("resconv", (1, 9, 10))


def test_resconv_balance_levels_weights_light_noise_up():
    plain = build("resconv", (1, 16, 16), dict(features=4, depth=1))
    balanced = build("resconv", (1, 16, 16), dict(features=4, depth=1, balance_levels=True))
    x = torch.rand(32, 1, 16, 16)
    a, b = plain(x, step=3), balanced(x, step=3)
    torch.testing.assert_close(a["recon"], b["recon"])  # same weights, noise and error
    assert torch.equal(a["loss"], a["recon"])
    sigma = balanced.noise_levels(x, 3) * 255
    errors = ((b["x_hat"] - x) ** 2).flatten(1).sum(1)
    torch.testing.assert_close(b["loss"], (errors * 30 / (sigma + 5)).mean())
    assert not torch.allclose(b["loss"], b["recon"])
    tilted = build("resconv", (1, 16, 16), dict(features=4, depth=1, balance_levels=True, balance_power=2.0))
    torch.testing.assert_close(tilted(x, step=3)["loss"], (errors * (30 / (sigma + 5)) ** 2).mean())
    with pytest.raises(ValueError, match="balance_power"):
        create_model("resconv", (1, 16, 16), balance_levels=True, balance_power=-1.0)
    with pytest.raises(ValueError, match="balance_levels"):  # not silently ignored
        create_model("resconv", (1, 16, 16), balance_power=2.0)


@pytest.mark.parametrize("context", [5, 7])  # 7: a branch as wide as the grown trunk
def test_resconv_grows_wider_computing_the_same_function(monkeypatch, context):
    from aetk.models import resconv

    narrow = build("resconv", (1, 16, 16), dict(features=4, depth=3, context=context))
    for bn in (m for m in narrow.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        torch.nn.init.uniform_(bn.weight, 0.5, 2), torch.nn.init.normal_(bn.bias)
        bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2)
    torch.nn.init.normal_(narrow.context.up1.weight, std=0.3)  # the branch in play too
    wide = build("resconv", (1, 16, 16), dict(features=7, depth=3, context=context), seed=1)
    y = torch.rand(3, 1, 16, 24)
    monkeypatch.setattr(resconv, "GROW_JITTER", 0.0)
    wide.load_state_dict(wide.grow_state(narrow.state_dict()))
    for mode in (False, True):  # eval: running statistics; training: copies share batch statistics
        narrow.train(mode), wide.train(mode)
        torch.testing.assert_close(wide.decode(wide.encode(y)), narrow.decode(narrow.encode(y)),
                                   rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(resconv, "GROW_JITTER", 0.01)
    wide.load_state_dict(wide.grow_state(narrow.state_dict()))
    w = wide.body[2].weight  # first hidden conv: channels 4..6 are jittered copies of 0..3
    assert w.shape[:2] == (7, 7) and not any(torch.equal(w[i], w[j]) for i in range(4, 7) for j in range(7) if i != j)
    wide.eval(), narrow.eval()
    out_wide, out_narrow = wide.decode(wide.encode(y)), narrow.decode(narrow.encode(y))
    assert 0 < (out_wide - out_narrow).abs().max() < 0.05  # the same function, up to the jitter
    same = wide.state_dict()
    assert wide.grow_state(same) is same  # same width: nothing to do


def _starts_as(trained, grown, new_prefix):
    """``grown`` given ``trained``'s weights computes the same (its new part, ``new_prefix``,
    starts at zero): a trained model only gains. Returns the input it was checked on."""
    missing, unexpected = grown.load_state_dict(trained.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith(new_prefix) for k in missing)
    trained.eval(), grown.eval()
    y = torch.rand(2, 1, 16, 24)
    torch.testing.assert_close(grown.decode(grown.encode(y)), trained.decode(trained.encode(y)))
    return y


def _random_batchnorms(model):
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        torch.nn.init.uniform_(bn.weight, 0.5, 2), torch.nn.init.normal_(bn.bias)
        bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2)


def test_resconv_refiner_starts_as_the_first_stage_and_trains_alone():
    base = build("resconv", (1, 16, 16), dict(features=4, depth=2))
    _random_batchnorms(base)
    cascade = build("resconv", (1, 16, 16), dict(features=4, depth=2, refine=5, refine_depth=2, freeze_base=True),
                    seed=1)
    y = _starts_as(base, cascade, "refiner.")
    cascade.train()
    assert cascade.refiner.training and not cascade.body.training  # the frozen stage keeps its statistics
    frozen = {k: v.clone() for k, v in cascade.state_dict().items() if not k.startswith("refiner.")}
    opt = torch.optim.Adam(cascade.parameters(), lr=0.1)
    for step in range(3):
        opt.zero_grad()
        cascade(torch.rand(4, 1, 16, 16), step=step)["loss"].backward()
        opt.step()
    assert all(p.grad is None for n, p in cascade.named_parameters() if not n.startswith("refiner."))
    assert cascade.refiner.layers[-1].weight.abs().sum() > 0  # the refiner learnt
    for k, v in cascade.state_dict().items():
        if k in frozen:
            assert torch.equal(v, frozen[k]), k  # weights and running statistics alike
    cascade.eval()
    assert not torch.allclose(cascade.decode(cascade.encode(y)), base.decode(base.encode(y)))
    with pytest.raises(ValueError, match="freeze_base=true needs a refiner"):
        create_model("resconv", (1, 16, 16), freeze_base=True)


def test_resconv_refiner_sees_the_noise_level_removed_from_the_whole_image(tmp_path):
    """refine_level: one more refiner input, constant over the image, the rms of what the first
    stage removed (scaled to 1 at sigma 25); so a pixel's output depends on pixels far outside
    the convolutions' reach, and a trained first stage is where the cascade starts."""
    from aetk.models.resconv import LEVEL_SCALE, removed_level

    u, e = torch.rand(2, 4, 6, 6), torch.rand(2, 4, 6, 6)
    level = removed_level(u, e)
    assert level.shape == (2, 1, 1, 1)
    torch.testing.assert_close(level[1, 0, 0, 0], ((u[1] - e[1]) ** 2).mean().sqrt() * LEVEL_SCALE)
    assert LEVEL_SCALE * 25 / 255 == pytest.approx(1.0)

    base = build("resconv", (1, 16, 16), dict(features=4, depth=1))
    _random_batchnorms(base)
    params = dict(features=4, depth=1, refine=3, refine_depth=1, freeze_base=True)
    cascade = build("resconv", (1, 16, 16), params | dict(refine_level=True), seed=1)
    assert cascade.refiner.layers[0].in_channels == 9  # u (4), the estimate (4), the level (1)
    _starts_as(base, cascade, "refiner.")
    plain = build("resconv", (1, 16, 16), params, seed=1)
    plain.load_state_dict(base.state_dict(), strict=False)
    for model in (cascade, plain):
        torch.nn.init.normal_(model.refiner.layers[-1].weight, std=0.5)  # the refiner in play
        model.eval()  # (batch statistics would mix the whole image in too)
    y = torch.rand(1, 1, 64, 64)
    far = y.clone()
    far[..., :8, :8] = 1 - far[..., :8, :8]  # a corner, far beyond any pixel's receptive field in the other one
    with torch.no_grad():
        changed = {name: (m.decode(m.encode(far)) - m.decode(m.encode(y)))[..., 48:, 48:].abs().max()
                   for name, m in (("level", cascade), ("plain", plain))}
    assert changed["plain"] == 0 and changed["level"] > 1e-4
    # Exported, the level is computed over whatever image (tile) the graph is given.
    import onnxruntime as ort

    from aetk.export import export_model

    export_model(cascade, tmp_path)
    sess = ort.InferenceSession(str(tmp_path / "autoencoder.onnx"), providers=["CPUExecutionProvider"])
    for x in (y, far[..., :40, :24]):
        with torch.no_grad():
            want = cascade.decode(cascade.encode(x)).numpy()
        np.testing.assert_allclose(sess.run(None, {"x": x.numpy()})[0], want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="refine_level=true needs a refiner"):
        create_model("resconv", (1, 16, 16), refine_level=True)


def test_resconv_is_rebuilt_from_its_exported_graph(tmp_path, tool):
    """Export folds the batch norms away; from_onnx puts the weights back (folded norms as
    shifts), computing the graph's function, and writes a run folder init_from takes."""
    from aetk.export import export_model
    from aetk.artifacts import RunDir
    from aetk.export.from_onnx import OnnxImportError, load_onnx_weights
    from aetk.train.checkpoint import init_weights

    trained = build("resconv", (1, 16, 16), dict(features=4, depth=3, context=3))
    _random_batchnorms(trained)
    torch.nn.init.normal_(trained.context.up1.weight, std=0.3)  # the branch in play
    trained.eval()
    export_model(trained, tmp_path / "out")
    graph = tmp_path / "out" / "autoencoder.onnx"
    rebuilt = build("resconv", (1, 16, 16), dict(features=4, depth=3, context=3), seed=5)
    load_onnx_weights(rebuilt, graph)
    y = torch.rand(2, 1, 24, 32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.decode(rebuilt.encode(y)), trained.decode(trained.encode(y)),
                                   rtol=1e-5, atol=1e-5)
    with pytest.raises(OnnxImportError, match="convolutions"):
        load_onnx_weights(build("resconv", (1, 16, 16), dict(features=4, depth=2, context=3)), graph)
    with pytest.raises(OnnxImportError, match="build it with the exported config"):
        load_onnx_weights(build("resconv", (1, 16, 16), dict(features=5, depth=3, context=3)), graph)

    # a graph whose weights are stored as float16 (as the shipped denoisers are) reads the same
    import onnx

    from aetk.export.float16_storage import to_float16_storage

    half = tmp_path / "half.onnx"
    half.write_bytes(to_float16_storage(onnx.load(str(graph))).SerializeToString())
    from_half = build("resconv", (1, 16, 16), dict(features=4, depth=3, context=3), seed=6)
    load_onnx_weights(from_half, half)
    first = next(p for p in from_half.parameters())
    assert torch.equal(first, first.half().float())  # the stored float16 values, exactly
    main = tool("onnx_to_run").main
    main([str(graph), str(tmp_path / "run"), "features=4", "depth=3", "context=3"])
    model, meta = RunDir(tmp_path / "run").load_model()
    assert meta["normalization"]["kind"] == "none" and meta["from_onnx"] == str(graph)  # as exported
    with torch.no_grad():
        torch.testing.assert_close(model.decode(model.encode(y)), trained.decode(trained.encode(y)),
                                   rtol=1e-5, atol=1e-5)
    cascade = build("resconv", (1, 16, 16), dict(features=4, depth=3, context=3, refine=3, freeze_base=True))
    copied, new = init_weights(cascade, RunDir.weights_stem(tmp_path / "run"))
    assert new and all(k.startswith("refiner.") for k in new) and "body.0.weight" in copied
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing.onnx"), str(tmp_path / "run2")])


def test_resconv_with_frozen_norms_trains_from_exactly_where_it_was():
    """freeze_norms: in training the batch norms normalise with their running statistics (as in
    eval mode), which stay as they were, while every weight (the norms' scale and shift too) learns."""
    model = build("resconv", (1, 16, 16), dict(features=4, depth=2, refine=3, refine_depth=1, freeze_norms=True))
    _random_batchnorms(model)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    stats = [(bn.running_mean.clone(), bn.running_var.clone()) for bn in norms]
    scale = norms[0].weight.detach().clone()
    x = torch.rand(4, 1, 16, 16)
    model.eval()
    with torch.no_grad():
        evaluated = model(x, step=7)["x_hat"]
    model.train()
    assert not any(bn.training for bn in norms) and model.body[0].training
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    out = model(x, step=7)
    torch.testing.assert_close(out["x_hat"], evaluated)  # training starts where eval mode is
    out["loss"].backward()
    opt.step()
    for bn, (mean, var) in zip(norms, stats):
        assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
    assert not torch.equal(norms[0].weight, scale)  # the scale learnt
    plain = build("resconv", (1, 16, 16), dict(features=4, depth=2))
    plain.train()
    assert all(m.training for m in plain.modules())  # default: batch statistics


def test_rebuilt_model_calibrated_trains_on_from_where_it_was(tmp_path, tool):
    """A graph's folded batch norms, given statistics (--calibrate), compute the same function in
    eval mode and about the same in training mode, where uncalibrated ones are far off; a
    calibrated cascade takes the noise-level input (refine_level) through init_from."""
    from aetk.export import export_model
    from aetk.artifacts import RunDir
    from aetk.export.from_onnx import calibrate_batchnorms, load_onnx_weights
    from aetk.train.checkpoint import init_weights

    params = dict(features=6, depth=3, refine=5, refine_depth=2)
    trained = build("resconv", (1, 16, 16), params)
    _random_batchnorms(trained)
    torch.nn.init.normal_(trained.refiner.layers[-1].weight, std=0.3)
    trained.eval()
    export_model(trained, tmp_path / "out")
    graph = tmp_path / "out" / "autoencoder.onnx"
    images = torch.rand(256, 1, 16, 16)
    np.save(tmp_path / "images.npy", (images.numpy() * 255).astype(np.uint8))

    def train_mode_error(model, x):
        model = copy.deepcopy(model).train()  # (a training-mode pass moves the running statistics)
        with torch.no_grad():
            got, want = model(x)["x_hat"], trained(x)["x_hat"]
        return float((got - want).abs().max()), float((got - want).pow(2).mean().sqrt())

    x = images[:64]
    rebuilt = build("resconv", (1, 16, 16), params, seed=5)
    load_onnx_weights(rebuilt, graph)
    _, rms_before = train_mode_error(rebuilt, x)
    assert calibrate_batchnorms(rebuilt, images.split(64)) == 3 + 2
    with torch.no_grad():  # eval mode: still the graph
        torch.testing.assert_close(rebuilt(x)["x_hat"], trained(x)["x_hat"], rtol=1e-5, atol=1e-5)
    _, rms_after = train_mode_error(rebuilt, x)
    assert rms_after < 0.1 * rms_before and rms_after < 0.01, (rms_before, rms_after)

    main = tool("onnx_to_run").main
    main([str(graph), str(tmp_path / "run"), *(f"{k}={v}" for k, v in params.items()),
          "--calibrate", str(tmp_path / "images.npy"), "--calibrate-examples", "100"])
    model, _ = RunDir(tmp_path / "run").load_model()
    assert train_mode_error(model, x)[1] < 0.1 * rms_before
    level = build("resconv", (1, 16, 16), params | dict(refine_level=True), seed=3)
    copied, new = init_weights(level, RunDir.weights_stem(tmp_path / "run"))
    assert "refiner.layers.0.weight" in copied and not new
    assert torch.equal(level.refiner.layers[0].weight[:, 8], torch.zeros(5, 3, 3))  # the level starts unheard
    level.eval(), model.eval()
    with torch.no_grad():
        torch.testing.assert_close(level(x)["x_hat"], model(x)["x_hat"])
    with pytest.raises(SystemExit):
        main([str(graph), str(tmp_path / "run2"), *(f"{k}={v}" for k, v in params.items()),
              "--calibrate", str(tmp_path / "images.npy"), "--calibrate-examples", "0"])
    np.save(tmp_path / "wrong.npy", np.zeros((8, 1, 12, 12), np.uint8))
    with pytest.raises(SystemExit):
        main([str(graph), str(tmp_path / "run3"), *(f"{k}={v}" for k, v in params.items()),
              "--calibrate", str(tmp_path / "wrong.npy")])
    assert not (tmp_path / "run2").exists() and not (tmp_path / "run3").exists()


def test_resconv_context_branch_starts_as_the_trunk_and_then_learns():
    trunk = build("resconv", (1, 16, 16), dict(features=4, depth=3))
    ctx = build("resconv", (1, 16, 16), dict(features=4, depth=3, context=5), seed=1)
    assert ctx.spatial_multiple == 8 and trunk.spatial_multiple == 2
    y = _starts_as(trunk, ctx, "context.")
    ctx.train()
    ctx(torch.rand(4, 1, 16, 16))["loss"].backward()
    assert ctx.context.up1.weight.grad.abs().sum() > 0  # the branch gets a gradient
    torch.nn.init.normal_(ctx.context.up1.weight)
    ctx.eval()
    assert not torch.allclose(ctx.decode(ctx.encode(y)), trunk.decode(trunk.encode(y)))
    with pytest.raises(ValueError, match="multiples of 8"):
        create_model("resconv", (1, 12, 16), context=4)
    with pytest.raises(ValueError, match="model.context needs model.depth >= 2"):
        create_model("resconv", (1, 16, 16), depth=1, context=4)

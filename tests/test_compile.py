"""All three fused ops inside one torch.compile(fullgraph=True) graph: no graph breaks."""

import torch

from aetk.ops import contractive_penalty, corrupt, reparameterize


def loss_fn(x, W, b, W_mu, W_lv, step: int):
    noisy = corrupt(x, "masking", 0.25, 7, step)
    h = torch.sigmoid(noisy @ W.T + b)
    z, kl = reparameterize(h @ W_mu.T, h @ W_lv.T, 7, step)
    return z.pow(2).mean() + kl.mean() + 0.1 * contractive_penalty(h, W, reduction="mean")


def test_fullgraph_compile_matches_eager_with_gradients():
    torch.manual_seed(0)
    x = torch.rand(16, 20)
    params = [torch.randn(12, 20) * 0.1, torch.zeros(12), torch.randn(4, 12) * 0.1,
              torch.randn(4, 12) * 0.1]
    eager_params = [p.clone().requires_grad_() for p in params]
    compiled_params = [p.clone().requires_grad_() for p in params]

    torch._dynamo.reset()
    compiled = torch.compile(loss_fn, fullgraph=True)  # default backend: inductor
    want = loss_fn(x, *eager_params, 3)
    got = compiled(x, *compiled_params, 3)  # fullgraph=True raises on any graph break
    torch.testing.assert_close(got, want)
    want.backward()
    got.backward()
    for a, b in zip(compiled_params, eager_params):
        torch.testing.assert_close(a.grad, b.grad)
    explanation = torch._dynamo.explain(loss_fn)(x, *params, 3)
    assert explanation.graph_break_count == 0

"""The realistic noise synthesis (aetk.data.noise_synthesis): determinism from (seed, step),
the statistics of each component, ranges, and the fused draws against the reference."""

from __future__ import annotations

import pytest
import torch

from aetk.data.noise_synthesis import (SynthesisConfig, SynthesisError, _params, jpeg_roundtrip,
                                       linear_to_srgb, srgb_to_linear, synthesize)
from aetk.errors import UserInputError


def photo_batch(b: int = 6, size: int = 48) -> torch.Tensor:
    """Smooth colour images with some texture, in [0.1, 0.9]."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    base = torch.stack([0.5 + 0.3 * torch.sin(6 * xx), 0.5 + 0.3 * torch.cos(5 * yy), 0.3 + 0.4 * xx * yy])
    return (base[None] + 0.05 * torch.rand((b, 3, size, size), generator=g)).clamp(0.1, 0.9)


def flat(b: int, h: int, w: int, value: float) -> torch.Tensor:
    """A flat colour image near ``value`` (channels differ slightly: not a grayscale photograph)."""
    return (value + torch.tensor([0.0, 0.01, -0.01]).view(1, 3, 1, 1)).expand(b, 3, h, w).contiguous()


def only(component: str, **kw) -> SynthesisConfig:
    shares = {"awgn": 0.0, "camera": 0.0, "correlated": 0.0, component: 1.0}
    return SynthesisConfig(**shares, **kw)


def test_same_seed_and_step_give_the_same_noise_and_others_do_not():
    x = photo_batch()
    a = synthesize(x, 7, 3)
    assert torch.equal(a, synthesize(x, 7, 3))
    assert not torch.equal(a, synthesize(x, 7, 4))
    assert not torch.equal(a, synthesize(x, 8, 3))
    assert not torch.equal(a, x)


def test_an_example_draws_the_same_whatever_the_rest_of_the_batch_holds():
    x = photo_batch()
    y = x.clone()
    y[1:] = 0.5  # other content: same components and parameters (drawn from (seed, step) only)
    assert torch.equal(synthesize(x, 1, 2)[0], synthesize(y, 1, 2)[0])


def test_output_is_8_bit_and_in_range():
    x = photo_batch(8)
    x[0] = 0.0
    x[1] = 1.0
    y = synthesize(x, 0, 0, SynthesisConfig(sigma_max=55, jpeg=0.5))
    assert y.min() >= 0 and y.max() <= 1
    assert torch.allclose(y * 255, torch.round(y * 255), atol=1e-4)


def test_reference_draws_agree_with_the_fused_op():
    x = photo_batch(8)
    cfg = SynthesisConfig(quantize=False, jpeg=0.0)
    fused, ref = synthesize(x, 3, 5, cfg), synthesize(x, 3, 5, cfg, reference=True)
    assert torch.allclose(fused, ref, atol=1e-5)


def test_awgn_has_the_drawn_sigma():
    x = flat(8, 96, 96, 0.5)
    cfg = only("awgn", sigma_max=30, quantize=False)
    y = synthesize(x, 0, 1, cfg)
    sigma = _params(8, 0, 1, cfg, "cpu", False)["sigma"].float()
    measured = (y - x).flatten(1).std(dim=1)
    assert torch.allclose(measured, sigma, rtol=0.03, atol=1e-3)
    # i.i.d.: no correlation between neighbours or between channels
    n = y - x
    assert abs(float(torch.corrcoef(torch.stack([n[..., 1:].flatten(), n[..., :-1].flatten()]))[0, 1])) < 0.03
    assert abs(float(torch.corrcoef(torch.stack([n[:, 0].flatten(), n[:, 1].flatten()]))[0, 1])) < 0.03


def test_camera_noise_variance_grows_with_the_signal_in_linear_space():
    x = torch.cat([flat(4, 64, 64, 0.35), flat(4, 64, 64, 0.85)], dim=3)  # 3+ sigma from clipping
    cfg = only("camera", gain=[1e-2, 1e-2], read=[1e-3, 1e-3], ccm_max=0, demosaic_max=0, quantize=False, jpeg=0)
    d = srgb_to_linear(synthesize(x, 0, 0, cfg)) - srgb_to_linear(x)
    dark, bright = d[..., :64].var(), d[..., 64:].var()
    lin_dark, lin_bright = srgb_to_linear(x[..., :64]).mean(), srgb_to_linear(x[..., 64:]).mean()
    assert bright > 5 * dark
    # Poisson-Gaussian: var = gain * signal + read^2 (no clipping at these levels)
    assert float(dark) == pytest.approx(1e-2 * float(lin_dark) + 1e-6, rel=0.1)
    assert float(bright) == pytest.approx(1e-2 * float(lin_bright) + 1e-6, rel=0.1)


def test_camera_colour_matrix_correlates_channels_and_demosaicing_neighbours():
    x = flat(8, 64, 64, 0.5)
    plain = only("camera", gain=[1e-2, 1e-2], ccm_max=0, demosaic_max=0, quantize=False, jpeg=0)
    mixed = only("camera", gain=[1e-2, 1e-2], ccm_max=1.5, demosaic_max=0.5, quantize=False, jpeg=0)

    def correlations(cfg):
        n = synthesize(x, 0, 0, cfg) - x
        across = torch.corrcoef(torch.stack([n[:, 0].flatten(), n[:, 1].flatten()]))[0, 1]
        beside = torch.corrcoef(torch.stack([n[..., 1:].flatten(), n[..., :-1].flatten()]))[0, 1]
        return float(across), float(beside)

    across, beside = correlations(plain)
    assert abs(across) < 0.03 and abs(beside) < 0.03
    across, beside = correlations(mixed)
    assert across < -0.1  # a colour matrix amplifies channel differences: negative correlation
    assert beside > 0.1


def test_correlated_noise_is_spatially_correlated_with_the_drawn_sigma():
    x = flat(6, 96, 96, 0.5)
    cfg = only("correlated", corr_sigma_max=30, corr_radius=[1.5, 1.5], corr_rho_max=0.0, quantize=False, jpeg=0)
    n = synthesize(x, 0, 2, cfg) - x
    sigma = _params(6, 0, 2, cfg, "cpu", False)["corr_sigma"].float()
    assert torch.allclose(n.flatten(1).std(dim=1), sigma, rtol=0.15, atol=2e-3)
    beside = torch.corrcoef(torch.stack([n[..., 1:].flatten(), n[..., :-1].flatten()]))[0, 1]
    assert beside > 0.6  # a Gaussian blur of std 1.5 px: exp(-1 / (4 * 1.5^2)) = 0.89 in theory


def test_jpeg_changes_the_image_and_stays_8_bit():
    x = photo_batch(1)[0]
    x = torch.round(x * 255) / 255
    low, high = jpeg_roundtrip(x, 40), jpeg_roundtrip(x, 95)
    assert not torch.equal(low, x)
    assert (low - x).abs().mean() > (high - x).abs().mean()
    assert torch.allclose(low * 255, torch.round(low * 255), atol=1e-4)
    cfg_on, cfg_off = only("camera", jpeg=1.0, jpeg_quality=[50, 50]), only("camera", jpeg=0.0)
    assert not torch.equal(synthesize(photo_batch(), 0, 0, cfg_on), synthesize(photo_batch(), 0, 0, cfg_off))


@pytest.mark.parametrize("component", ["awgn", "camera", "correlated"])
def test_gray_examples_get_gray_noise(component):
    x = photo_batch(4)
    x[:2] = x[:2].mean(dim=1, keepdim=True)  # two grayscale photographs in a colour batch
    y = synthesize(x, 0, 0, only(component, jpeg=0.5))
    assert torch.equal(y[0, 0], y[0, 1]) and torch.equal(y[0, 1], y[0, 2])
    assert torch.equal(y[1, 0], y[1, 2])
    assert not torch.equal(y[2, 0], y[2, 1])


def test_gamma_round_trip():
    x = torch.linspace(0, 1, 101)
    assert torch.allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-6)


def test_bad_options_are_user_errors_naming_the_option():
    with pytest.raises(UserInputError, match="shares"):
        SynthesisConfig(awgn=-1)
    with pytest.raises(SynthesisError, match="jpeg_quality"):
        SynthesisConfig(jpeg_quality=[90, 120])
    with pytest.raises(SynthesisError, match="gain"):
        SynthesisConfig(gain=[0, 1])
    with pytest.raises(SynthesisError, match=r"\(B, C, H, W\)"):
        synthesize(torch.rand(3, 8, 8), 0, 0)

"""The mel VAE (AudioLDM App. C): shapes and r, the posterior's moments and samples, the three-term loss,
the PatchGAN hinge loss, the scaling calibration, and that a tiny VAE learns."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from tiny_training import LATENT_CHANNELS, smooth_mels, tiny_vae_config
from torch import nn

from pipelines.core.config import ConfigError
from training.models.discriminator import NLayerDiscriminator
from training.models.vae import VaeLoss, build_vae, calibrate_scaling, compression, encode_moments, sample_latent


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return build_vae(tiny_vae_config()).eval()


@pytest.mark.parametrize("levels, r", [(2, 2), (3, 4)])
def test_latents_are_the_mel_divided_by_r_in_time_and_frequency(levels, r):
    vae = build_vae(tiny_vae_config(levels=levels))
    assert compression(vae) == r
    assert (vae.config.in_channels, vae.config.out_channels, vae.config.latent_channels) == (1, 1, LATENT_CHANNELS)
    assert set(vae.config.down_block_types) == {"DownEncoderBlock2D"} and set(vae.config.up_block_types) == {
        "UpDecoderBlock2D"
    }
    mel = smooth_mels(2, 16)
    with torch.no_grad():
        moments = encode_moments(vae, mel)
        assert moments.shape == (2, 2 * LATENT_CHANNELS, 16 // r, 64 // r)
        assert vae.decode(sample_latent(moments, None)).sample.shape == mel.shape


def test_encoding_rejects_mels_that_r_does_not_divide(vae):
    with pytest.raises(ValueError, match="multiples of r = 2"):
        encode_moments(vae, torch.zeros(1, 1, 15, 64))


def test_init_reads_an_autoencoder_folder_or_a_pipeline_holding_vae(vae, tmp_path):
    vae.save_pretrained(tmp_path / "pipeline" / "vae")
    for init in (tmp_path / "pipeline", tmp_path / "pipeline" / "vae"):
        loaded = build_vae(tiny_vae_config(init=str(init)))
        assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), vae.state_dict().values()))
    with pytest.raises(ConfigError, match="vae.init: no AutoencoderKL at"):
        build_vae(tiny_vae_config(init=str(tmp_path / "missing")))


def test_posterior_samples_are_mean_plus_sigma_times_the_generators_noise():
    moments = torch.cat(
        [torch.full((2, 3, 4, 4), 1.5), torch.full((2, 3, 4, 4), 2 * torch.log(torch.tensor(0.5)))], dim=1
    )
    z = sample_latent(moments, torch.Generator().manual_seed(7))
    expected = 1.5 + 0.5 * torch.randn((2, 3, 4, 4), generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(z, expected)
    # Latent shards store float16 moments: the same draw, to float16's precision.
    torch.testing.assert_close(sample_latent(moments.half(), torch.Generator().manual_seed(7)), z, atol=5e-3, rtol=0)
    assert not torch.equal(sample_latent(moments, torch.Generator().manual_seed(8)), z)


def test_encoding_is_deterministic(vae):
    mel = smooth_mels(2, 16)
    with torch.no_grad():
        assert torch.equal(encode_moments(vae, mel), encode_moments(vae, mel))


def _posterior(mean: float, logvar: float, shape=(2, 4, 8, 32)) -> DiagonalGaussianDistribution:
    return DiagonalGaussianDistribution(torch.cat([torch.full(shape, mean), torch.full(shape, logvar)], dim=1))


def test_generator_loss_is_l1_plus_weighted_kl_before_the_adversarial_start():
    loss = VaeLoss(tiny_vae_config(adversarial_start=5).loss)
    mel, reconstruction = torch.zeros(2, 1, 16, 64), torch.full((2, 1, 16, 64), 0.25)
    total, logs = loss.generator_loss(mel, reconstruction, _posterior(1.0, 0.0), step=4)
    # KL per sample: ½·Σ(μ² + σ² − 1 − log σ²) = ½ · 1024 latent elements, over 1024 mel elements = 0.5.
    assert logs["rec"] == pytest.approx(0.25) and logs["kl"] == pytest.approx(0.5)
    assert logs["adv"] == 0.0 and float(total) == pytest.approx(0.25 + 1e-6 * 0.5)


def test_adversarial_term_joins_at_the_start_with_the_adaptive_weight():
    torch.manual_seed(0)
    cfg = tiny_vae_config(adversarial_start=5)
    vae, loss = build_vae(cfg), VaeLoss(cfg.loss)
    mel = smooth_mels(2, 16)
    moments = encode_moments(vae, mel)
    reconstruction = vae.decode(sample_latent(moments, torch.Generator().manual_seed(0))).sample
    last = vae.decoder.conv_out.weight
    before, _ = loss.generator_loss(mel, reconstruction, moments, step=4, last_layer=last)
    total, logs = loss.generator_loss(mel, reconstruction, moments, step=5, last_layer=last)
    assert logs["adv"] != 0.0 and logs["total"] != pytest.approx(float(before.detach()))
    # λ = ‖∇rec‖ / ‖∇adv‖ at the decoder's last layer, times adversarial_weight (0.5).
    rec = (reconstruction - mel).abs().mean()
    adv = -loss.discriminator(reconstruction).mean()
    ratio = torch.autograd.grad(rec, last, retain_graph=True)[0].norm() / (
        torch.autograd.grad(adv, last, retain_graph=True)[0].norm() + 1e-4
    )
    assert logs["adv_weight"] == pytest.approx(0.5 * float(ratio), rel=1e-4)
    assert logs["total"] == pytest.approx(float(before.detach()) + logs["adv_weight"] * logs["adv"], rel=1e-5)
    _, unweighted = loss.generator_loss(mel, reconstruction, moments, step=5)
    assert unweighted["adv_weight"] == 0.5  # no last layer: λ = 1
    total.backward()
    assert all(p.grad is None for p in loss.discriminator.parameters())  # only discriminator_loss trains D
    assert last.grad is not None


def test_discriminator_hinge_loss_on_a_hand_example():
    loss = VaeLoss(tiny_vae_config(adversarial_start=3).loss)
    loss.discriminator = nn.Identity()  # the "logits" are the inputs themselves
    real, fake = torch.tensor([0.5, 2.0]).view(1, 1, 1, 2), torch.tensor([-2.0, 0.5]).view(1, 1, 1, 2)
    value, logs = loss.discriminator_loss(real, fake, step=3)
    # ½·(mean(relu(1 − [0.5, 2])) + mean(relu(1 + [−2, 0.5]))) = ½·(0.25 + 0.75)
    assert float(value) == pytest.approx(0.5) and logs["logits_real"] == pytest.approx(1.25)
    zero, logs = loss.discriminator_loss(real, fake, step=2)
    assert float(zero) == 0.0 and not zero.requires_grad and logs["loss"] == 0.0


def test_patchgan_scores_patches_and_takes_its_width_from_the_config():
    d = NLayerDiscriminator(1, channels=8, layers=2)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 32, 1]  # widths double, one logit per patch
    assert d(torch.zeros(3, 1, 32, 64)).shape == (3, 1, 6, 14)  # 32 → 16 → 8 → 7 → 6 (4x4 kernels)


def test_scaling_factor_makes_the_latents_unit_variance(vae):
    mels = [smooth_mels(2, 16, seed=s) for s in range(3)]
    scale = calibrate_scaling(vae, iter(mels))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        z = torch.cat([sample_latent(encode_moments(vae, m), generator) for m in mels])
    assert float((z * scale).std()) == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(ValueError, match="at least one"):
        calibrate_scaling(vae, [])


def test_a_tiny_vae_learns_smooth_mels():
    torch.manual_seed(0)
    cfg = tiny_vae_config(adversarial_start=10**9)
    vae, loss = build_vae(cfg), VaeLoss(cfg.loss)
    mels, generator = smooth_mels(4, 16), torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    history = []
    for step in range(30):
        moments = encode_moments(vae, mels)
        reconstruction = vae.decode(sample_latent(moments, generator)).sample
        total, logs = loss.generator_loss(mels, reconstruction, moments, step, last_layer=vae.decoder.conv_out.weight)
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append(logs["total"])
    assert history[-1] < 0.7 * history[0]

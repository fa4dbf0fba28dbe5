"""Loss terms: identities, signs and the presets' weights."""

from __future__ import annotations

import pytest
import torch

from napari_superres.engine.nets.discriminator import PatchDiscriminator, UNetDiscriminator, build_discriminator
from napari_superres.engine.train.losses import (
    GAN_LOSSES,
    PerceptualLoss,
    discriminator_accuracy,
    discriminator_loss,
    generator_loss,
    l1_loss,
    l2_loss,
    resolve_weights,
    ssim_loss,
    weighted_sum,
)


@pytest.fixture
def images() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 1, 32, 32, generator=g)
    b = (a + 0.1 * torch.randn(2, 1, 32, 32, generator=g)).clamp(0, 1)
    return a, b


def test_pixel_losses_are_zero_for_identical_and_positive_otherwise(images):
    a, b = images
    for loss in (l1_loss, l2_loss, ssim_loss):
        assert float(loss(a, a)) == pytest.approx(0.0, abs=1e-6)
        assert float(loss(a, b)) > 1e-3
    assert float(l1_loss(a, b)) == pytest.approx(float((a - b).abs().mean()), rel=1e-6)


def test_ssim_loss_is_differentiable(images):
    a, b = images
    b = b.clone().requires_grad_(True)
    ssim_loss(b, a).backward()
    assert b.grad is not None and torch.isfinite(b.grad).all() and b.grad.abs().sum() > 0


def test_perceptual_loss_zero_for_identical_positive_otherwise(images, fake_vgg_cache):
    from napari_superres.engine import Engine

    a, b = images
    vgg = Engine(device="cpu", builtins=False).vgg(("relu1_2", "relu2_2"))
    loss = PerceptualLoss(vgg, layers=("relu1_2", "relu2_2"))
    assert float(loss(a, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(b, a)) > 0
    rgb = PerceptualLoss(vgg, layers=("relu1_2",), criterion="l2")
    assert float(rgb(a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1))) > 0
    x = b.clone().requires_grad_(True)
    loss(x, a).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in vgg.parameters())  # the VGG stays frozen
    with pytest.raises(ValueError, match="relu3_3"):  # layers the extractor does not compute
        PerceptualLoss(vgg, layers=("relu1_2", "relu3_3"))


@pytest.mark.parametrize("kind", GAN_LOSSES)
def test_gan_loss_signs(kind):
    confident_real = torch.full((4, 1, 3, 3), 5.0)
    confident_fake = torch.full((4, 1, 3, 3), -5.0)
    # a discriminator that separates real from fake has a low loss; swapped, a high one
    good = discriminator_loss(kind, confident_real, confident_fake)
    bad = discriminator_loss(kind, confident_fake, confident_real)
    assert float(good) < float(bad)
    # the generator's term is low when the discriminator calls its output real
    fooled = generator_loss(kind, confident_real, real=confident_fake)
    caught = generator_loss(kind, confident_fake, real=confident_real)
    assert float(fooled) < float(caught)
    acc_real, acc_fake = discriminator_accuracy(kind, confident_real, confident_fake)
    assert (acc_real, acc_fake) == (1.0, 1.0)


def test_ragan_generator_needs_real_outputs():
    with pytest.raises(ValueError, match="real"):
        generator_loss("ragan", torch.zeros(2, 1))


def test_presets_and_overrides():
    assert resolve_weights("psnr") == {"l1": 1.0}
    assert resolve_weights("perceptual") == {"l1": 1.0, "l2": 1.0, "ssim": 1.0, "perceptual": 1.0}
    gan = resolve_weights("gan")
    assert gan == {"l1": 1e-2, "perceptual": 1.0, "gan": 5e-3}  # ESRGAN's recipe, written out
    gan["gan"] = 1.0
    assert resolve_weights("gan")["gan"] == 5e-3  # a copy: changing it leaves the preset alone
    assert resolve_weights("perceptual", {"l2": 0, "ssim": 0.5}) == {"l1": 1.0, "ssim": 0.5, "perceptual": 1.0}
    with pytest.raises(ValueError, match="unknown loss term"):
        resolve_weights("psnr", {"vgg": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        resolve_weights("psnr", {"l1": -1.0})
    with pytest.raises(ValueError, match="all loss weights are zero"):
        resolve_weights("psnr", {"l1": 0.0})
    with pytest.raises(ValueError, match="unknown loss preset"):
        resolve_weights("sharp")
    total = weighted_sum({"l1": torch.tensor(2.0), "l2": torch.tensor(3.0)}, {"l1": 0.5, "l2": 2.0})
    assert float(total) == pytest.approx(7.0)


@pytest.mark.parametrize("kind", ["patchgan", "unet"])
def test_discriminators_give_logits_and_use_spectral_norm(kind):
    torch.manual_seed(0)
    d = build_discriminator(kind, in_channels=1, channels=8)
    out = d(torch.rand(2, 1, 32, 32))
    if isinstance(d, UNetDiscriminator):
        assert out.shape == (2, 1, 32, 32)  # per-pixel realness
    else:
        assert isinstance(d, PatchDiscriminator)
        assert out.shape[:2] == (2, 1) and out.shape[-1] < 32
    names = [name for name, _ in d.named_parameters()]
    assert any("parametrizations.weight.original" in n for n in names)
    with pytest.raises(ValueError, match="unknown discriminator"):
        build_discriminator("resnet")

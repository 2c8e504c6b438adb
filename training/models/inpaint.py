"""The inpainting UNet of Make-An-Audio §4.2: a trained LDM's UNet fine-tuned with the masked latent and
the mask as extra input channels — the standard inpainting layout, 1 + C + C input channels, in diffusers' order:

    input = concat[z_n (C), m (1), z_masked (C)]      m = 1 where the content is to be generated
                                                      z_masked = z_0 ⊙ (1 − m), the observed part

(diffusers' StableDiffusionInpaintPipeline concatenates in this order, so a folder's unet/ reads as one
of its inpainting UNets: in_channels = 2C + 1, out_channels = C). From a trained UNet: every weight
copied, the first convolution widened with the new input channels' weights set to zero, so that the
fine-tune starts from exactly the trained model's predictions (Rombach et al. 2022's inpainting recipe).
"""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from torch import Tensor, nn


def widen(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """A copy of `unet` taking 2C + 1 input channels, the new ones zero-initialised."""
    c = unet.config.in_channels
    config = dict(unet.config)
    config["in_channels"] = 2 * c + 1
    wide = UNet2DConditionModel.from_config(config)
    state = unet.state_dict()
    old = state.pop("conv_in.weight")
    weight = torch.zeros(old.shape[0], 2 * c + 1, *old.shape[2:], dtype=old.dtype)
    weight[:, :c] = old
    wide.load_state_dict({**state, "conv_in.weight": weight})
    return wide


def is_inpainting(unet, latent_channels: int) -> bool:
    return unet.config.in_channels == 2 * latent_channels + 1


def context(latent: Tensor, mask: Tensor) -> Tensor:
    """[N, 1 + C, h, w]: the mask (1 = generate) and the observed latent z_0 ⊙ (1 − m)."""
    mask = mask.to(latent).expand(latent.shape[0], 1, *latent.shape[2:])
    return torch.cat([mask, latent * (1 - mask)], dim=1)


class WithContext(nn.Module):
    """The inpainting UNet as a plain denoiser: forward(z_n, t, ...) runs it on concat[z_n, context].
    A batch twice the context's (classifier-free guidance's [null; cond]) gets the context twice."""

    def __init__(self, unet: UNet2DConditionModel, extra: Tensor):
        super().__init__()
        self.unet, self.extra = unet, extra

    @property
    def config(self):
        return self.unet.config

    @property
    def dtype(self):
        return self.unet.dtype

    def forward(self, sample: Tensor, timestep, **kwargs):
        extra = self.extra.to(sample)
        if sample.shape[0] != extra.shape[0]:
            extra = extra.repeat(sample.shape[0] // extra.shape[0], 1, 1, 1)
        return self.unet(torch.cat([sample, extra], dim=1), timestep, **kwargs)

"""The PatchGAN discriminator of the mel VAE (AudioLDM App. C: "we adopt the PatchGAN").

pix2pix's NLayerDiscriminator (Isola et al. 2017) as taming-transformers and latent-diffusion use it:
stride-2 4x4 convolutions, then two stride-1 ones, ending in one logit per patch of the mel. The input
is a one-channel mel [B, 1, T, n_mels]; the output [B, 1, T', n_mels'] scores each receptive field.
"""

from __future__ import annotations

from torch import Tensor, nn

KERNEL, PAD = 4, 1


class NLayerDiscriminator(nn.Module):
    def __init__(self, in_channels: int = 1, channels: int = 64, layers: int = 3):
        super().__init__()
        # Widths double per strided layer, capped at 8x as in pix2pix.
        widths = [channels * min(2**n, 8) for n in range(layers + 1)]
        blocks: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], KERNEL, 2, PAD), nn.LeakyReLU(0.2, True)]
        for n in range(1, layers + 1):
            stride = 2 if n < layers else 1  # the last hidden layer keeps the resolution
            blocks += [
                nn.Conv2d(widths[n - 1], widths[n], KERNEL, stride, PAD, bias=False),  # BatchNorm carries the bias
                nn.BatchNorm2d(widths[n]),
                nn.LeakyReLU(0.2, True),
            ]
        blocks.append(nn.Conv2d(widths[layers], 1, KERNEL, 1, PAD))  # one logit per patch
        self.main = nn.Sequential(*blocks)
        self.apply(_init_weights)

    def forward(self, mel: Tensor) -> Tensor:
        return self.main(mel)


def _init_weights(module: nn.Module) -> None:
    # DCGAN / pix2pix initialisation (taming-transformers `weights_init`).
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)

"""Perceptual loss: LPIPS without its learned layers (Zhang et al. 2018, `lpips=False`).

Keeps a restyled or edited render close in structure to the source render (NeRF-Art's
perceptual term; the tri-plane editing's reconstruction loss).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.perceptual import VggFeatures


class PerceptualLoss:
    """loss = sum over taps l of mean over positions of |f_l(image) - f_l(target)|^2, each f_l unit length
    along its channels; 0 for identical images, at most 4 per tap.

    features: a frozen VggFeatures (VGG16's relu1_2, relu2_2, relu3_3, relu4_3, or a tiny VGG's).
    """

    def __init__(self, features: VggFeatures) -> None:
        self.features = features

    def loss(self, image: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """image, target (B,H,W,3) in [0,1], H and W at least 8 for VGG16 -> {"perceptual": scalar}, unweighted.

        Differentiable in both; pass a detached target to hold it fixed.
        """
        b = image.shape[0]
        x = torch.cat([image, target]).permute(0, 3, 1, 2)
        mean, std = self.features.mean.to(x), self.features.std.to(x)
        x = (x - mean[None, :, None, None]) / std[None, :, None, None]
        total = x.new_zeros(())
        for f in self.features.extract(x):  # (2B,C,h,w) per tap: both images in one pass
            # LPIPS's eps 1e-10; F.normalize (unlike x / x.norm()) has a finite gradient where a ReLU
            # output is zero in every channel, which random and real VGGs both produce.
            f = F.normalize(f, dim=1, eps=1e-10)
            total = total + (f[:b] - f[b:]).square().sum(dim=1).mean()
        return {"perceptual": total}

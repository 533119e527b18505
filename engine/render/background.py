"""Backgrounds to composite renders over, including Dream Fields' random augmentations.

Dream Fields composites each render over a random background so that CLIP cannot be
satisfied by the background and the object keeps sharp edges (paper, section 4.2).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def uniform_noise(size: int, generator: torch.Generator) -> torch.Tensor:
    """(H,W,3) i.i.d. uniform noise."""
    return torch.rand(size, size, 3, generator=generator)


def checkerboard(size: int, generator: torch.Generator, squares: int = 8) -> torch.Tensor:
    """(H,W,3) checkerboard of two random colours, `squares` squares across."""
    colours = torch.rand(2, 3, generator=generator)
    cell = (torch.arange(size) * squares // size)
    parity = (cell[:, None] + cell[None, :]) % 2
    return colours[parity]


def fourier_noise(size: int, generator: torch.Generator, decay: float = 2.0) -> torch.Tensor:
    """(H,W,3) smooth random noise: random spectrum with amplitude ~ 1/f^decay, rescaled to [0,1]."""
    f = torch.fft.fftfreq(size)
    freq = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2).clamp(min=1.0 / size)
    spectrum = torch.complex(torch.randn(3, size, size, generator=generator),
                             torch.randn(3, size, size, generator=generator)) / freq**decay
    img = torch.fft.ifft2(spectrum).real
    lo, hi = img.amin(dim=(1, 2), keepdim=True), img.amax(dim=(1, 2), keepdim=True)
    return ((img - lo) / (hi - lo + 1e-8)).permute(1, 2, 0)


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """(H,W,3) separable Gaussian blur with reflected borders; sigma in pixels."""
    if sigma < 0.3:
        return img
    radius = min(int(math.ceil(3 * sigma)), img.shape[0] - 1)
    x = torch.arange(-radius, radius + 1, dtype=img.dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = (k / k.sum()).to(img.device)
    t = img.permute(2, 0, 1)[None]  # (1,3,H,W)
    t = F.conv2d(F.pad(t, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    t = F.conv2d(F.pad(t, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
    return t[0].permute(1, 2, 0)


def random_background(size: int, generator: torch.Generator, blur_max_px: float) -> torch.Tensor:
    """(H,W,3) one of noise / checkerboard / Fourier noise (1/3 each), blurred with sigma ~ U[0, blur_max_px]."""
    choice, sigma = torch.rand(2, generator=generator).tolist()
    makers = (uniform_noise, checkerboard, fourier_noise)
    bg = makers[min(int(choice * 3), 2)](size, generator)
    return gaussian_blur(bg, sigma * blur_max_px)

"""Image losses on renders too large to back-propagate at once (NeRF-Art's memory scheme).

The loss of a whole image (CLIP, perceptual) needs every pixel, but its gradient reaches the field
only through each ray's colour. So: render all rays without a graph, take dL/d(colour) from the
image loss, then render again chunk by chunk with a graph and back-propagate that cached gradient.
Peak memory is one chunk's graph plus the image loss's, whatever the image size.
"""
from __future__ import annotations

from typing import Callable

import torch

ImageLoss = Callable[[torch.Tensor], tuple[torch.Tensor, dict]]


def backprop_in_chunks(render_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], origins: torch.Tensor,
                       dirs: torch.Tensor, image_loss: ImageLoss,
                       chunk: int) -> tuple[float, dict[str, float], torch.Tensor]:
    """Accumulate into the parameters' .grad exactly what image_loss(render).backward() would, in chunks.

    render_fn: (R,3) origins, (R,3) dirs -> (R,3) final colour of each ray (composited over its
    background by the caller). origins, dirs: (...,3), e.g. (B,H,W,3); the image is the rays'
    colours in that shape. image_loss: image (...,3) -> (scalar total to back-propagate, named
    losses as floats or scalar tensors). chunk: rays rendered with a graph at a time.

    Returns (total as a float, the named losses as floats, the image (...,3) without a graph).

    Exact only when the two passes render the same colours, i.e. when
    - a ray's colour does not depend on the other rays rendered with it (true of volume rendering);
    - render_fn is deterministic between the passes: no sampling jitter from a running generator
      (render at bin centres, or re-seed the same generator state per chunk in both passes), and
      nothing it reads (e.g. an occupancy grid) changes in between.
    Anything else in the image loss's graph (e.g. a second render it compares with) gets its
    gradient in the first backward, as usual.
    """
    o, d = origins.reshape(-1, 3), dirs.reshape(-1, 3)
    starts = range(0, o.shape[0], chunk)
    with torch.no_grad():
        rgb = torch.cat([render_fn(o[i:i + chunk], d[i:i + chunk]) for i in starts])
    image = rgb.reshape(origins.shape).requires_grad_()
    total, losses = image_loss(image)
    total.backward()  # frees the image loss's graph before any ray is re-rendered
    grad = image.grad.reshape(-1, 3)
    for i in starts:
        colour = render_fn(o[i:i + chunk], d[i:i + chunk])
        if colour.requires_grad:  # a chunk of rays that all miss the field (or its occupied cells) has no graph
            colour.backward(grad[i:i + chunk])
    return total.item(), {name: _number(value) for name, value in losses.items()}, image.detach()


def _number(value: float | torch.Tensor) -> float:
    return value.item() if isinstance(value, torch.Tensor) else float(value)

"""Reconstruction: a field fitted to a capture's photos (NeRF, with instant-ngp's choices).

Photometric MSE on random batches of rays drawn from every training image (plus an opacity
entropy and mip-NeRF 360's distortion loss, for surfaces a mesh can follow), a hash-grid field
(no view dependence: the field holds albedo, what the mesh bakes), empty-space skipping with
an occupancy grid, Adam with an exponentially decaying learning rate. Images with alpha are
composited over a random colour per ray (instant-ngp's trick), which makes the field's own
opacity match the photo's coverage; images without alpha are composited over the mean colour
of their borders, so a plain studio backdrop needs no geometry (a cluttered one does: capture
with a transparent background for clean meshes).
"""
from __future__ import annotations

import logging
import math

import torch

from ...cameras import camera_rays
from ...captures import Capture, capture_rays, load_capture
from ...fields import build_field
from ...losses import distortion, opacity_entropy
from ...render import composite, render_rays
from ...render.image import PIXEL_RADIUS, render_pixels
from ...render.occupancy import EmptySpace
from ...spec import JobSpec
from ..base import Method, Phase, Scene, StepOutput, exponential_ramp

log = logging.getLogger("engine.reconstruct")


def make_scene(spec: JobSpec, representation: dict | None = None) -> Scene:
    """The hash grid job.json's options.field describes (for render and export)."""
    field = build_field(spec.options.field)
    return Scene(modules={"field": field}, field=field)


def border_colour(capture: Capture) -> torch.Tensor:
    """(3,) mean colour of the training images' outermost pixels: the backdrop of photos without alpha."""
    images = capture.images[capture.split(False)]
    border = torch.cat([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], dim=1)
    return border.reshape(-1, 3).mean(0)


def psnr(mse: float) -> float:
    """Peak signal-to-noise ratio of images in [0,1] from their mean squared error."""
    return -10 * math.log10(max(mse, 1e-10))


class Reconstruct(Method):
    def __init__(self, spec: JobSpec, device: torch.device) -> None:
        o = spec.options
        self.spec, self.device = spec, device
        self.phases = (Phase("reconstruct", spec.steps),)
        # 1. The capture, checked and placed in the object cube; its frame sends the mesh back.
        self.capture = load_capture(spec.inputs.capture, o.max_image_size, o.holdout_every)
        self.frame = self.capture.frame
        for warning in self.capture.warnings:
            log.warning("capture: %s", warning)
        self.train = self.capture.split(False)
        h, w = self.capture.size
        log.info("capture %s: %d training and %d held-out frames of %dx%d, object frame %s",
                 self.capture.source, len(self.train), int(self.capture.test.sum()), w, h, self.frame.to_dict())
        self.background = None if self.capture.alpha is not None else border_colour(self.capture).to(device)
        # 2. The field, empty-space grid and optimiser.
        self.scene = self.make_scene(spec)
        self.field = self.scene.modules["field"].to(device)
        self.empty_space = EmptySpace(o.occupancy, device)
        self.modules = {"field": self.field, **self.empty_space.modules}
        # instant-ngp's Adam: eps 1e-15 so rarely-hit hash entries still move.
        self.optimizer = torch.optim.Adam(self.field.parameters(), lr=o.lr, betas=(0.9, 0.99), eps=1e-15)

    def make_scene(self, spec: JobSpec) -> Scene:
        """The field this method trains (NeRF-Art: as its source job built it)."""
        return make_scene(spec)

    def learning_rate(self, step: int) -> float:
        o = self.spec.options
        return exponential_ramp(step, self.phases[0].steps, o.lr, o.lr * o.lr_final_fraction)

    def weights(self, step: int) -> dict[str, float]:
        o = self.spec.options
        return {"rgb": 1.0, "opacity": o.lambda_opacity, "distortion": o.lambda_distortion}

    def sample_rays(self, n: int, generator: torch.Generator):
        """n random pixels of the training images: origins, dirs (n,3), target rgb (n,3), alpha (n,) or None,
        and the mean focal length in pixels of their frames (for the cone footprint)."""
        cap, (h, w) = self.capture, self.capture.size
        frame = self.train[torch.randint(len(self.train), (n,), generator=generator)]
        py, px = torch.randint(h, (n,), generator=generator), torch.randint(w, (n,), generator=generator)
        fx, fy, cx, cy = cap.intrinsics[frame].unbind(-1)
        dirs = torch.stack([(px + 0.5 - cx) / fx, -(py + 0.5 - cy) / fy, -torch.ones(n)], dim=-1)
        c2w = cap.c2w[frame]
        dirs = torch.nn.functional.normalize((c2w[:, :3, :3] @ dirs[:, :, None])[:, :, 0], dim=-1)
        rgb = cap.images[frame, py, px]
        alpha = None if cap.alpha is None else cap.alpha[frame, py, px]
        to = self.device
        return (c2w[:, :3, 3].to(to), dirs.to(to), rgb.to(to), None if alpha is None else alpha.to(to),
                fx.mean().item())

    def photometric(self, field, n: int, generator: torch.Generator) -> tuple[dict, dict]:
        """Render n random training rays; MSE against the photos and the opacity entropy."""
        origins, dirs, target, alpha, focal = self.sample_rays(n, generator)
        out = render_rays(field, origins, dirs, self.spec.render.samples_per_ray, generator,
                          pixel_radius=PIXEL_RADIUS / focal, return_samples=True)
        if alpha is not None:
            # A random backdrop per ray: only the photo's coverage explains it, so the field's opacity learns it.
            background = torch.rand(n, 3, generator=generator).to(self.device)
            target = composite(target * alpha[:, None], alpha, background)
        else:
            background = self.background
        rgb = composite(out.rgb, out.opacity, background)
        mse = (rgb - target).square().mean()
        # t in object units: a ray crosses the cube in up to 3.5, where mip-NeRF 360 normalises to [0, 1].
        losses = {"rgb": mse, "opacity": opacity_entropy(out.opacity),
                  "distortion": distortion(out.weights, out.t, out.delta).mean()}
        return losses, {"psnr": psnr(mse.item())}

    def step(self, step: int, generator: torch.Generator) -> StepOutput:
        # 1. Refresh the empty-space grid; 2. render random training rays; 3. compare with the photos.
        field = self.empty_space.field_for_step(self.field, step, generator)
        losses, metrics = self.photometric(field, self.spec.options.rays_per_step, generator)
        return StepOutput(losses, {**metrics, **self.empty_space.metrics()})

    def frame_camera(self, index: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int], float]:
        """Rays (R,3) of capture frame `index` with its long side at render.size (NeRF-Art's style renders, the
        latent edit's reconstruction renders), its (h, w) there and its focal length (x) in pixels."""
        h, w = self.capture.size
        s = self.spec.render.size / max(h, w)
        rh, rw = max(8, round(h * s)), max(8, round(w * s))
        fx, fy, cx, cy = (self.capture.intrinsics[index] * torch.tensor([rw / w, rh / h, rw / w, rh / h])).tolist()
        origins, dirs = camera_rays(self.capture.c2w[index].to(self.device), fx, rw, rh, cx, cy, focal_y=fy)
        return origins, dirs, (rh, rw), fx

    def render_frame(self, index: int, background: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
        """Frame `index` of the capture rendered over `background` (3,): (H,W,3), without gradients."""
        h, w = self.capture.size
        origins, dirs = capture_rays(self.capture, index, self.device)
        out = render_pixels(self.field, origins, dirs, self.spec.render.samples_per_ray,
                            float(self.capture.intrinsics[index, 0]), chunk=chunk)
        return composite(out.rgb, out.opacity, background).reshape(h, w, 3)

    def evaluate(self, job_dir) -> dict:
        """PSNR on the held-out frames (over white where the photos have alpha); renders them into result/eval/."""
        from ...jobs.images import save_png

        test = self.capture.split(True)
        if not len(test):
            return {}
        white = torch.ones(3, device=self.device)
        scores = {}
        for i in test.tolist():
            target = self.capture.images[i].to(self.device)
            background = white if self.capture.alpha is not None else self.background
            if self.capture.alpha is not None:
                target = composite(target * self.capture.alpha[i, ..., None].to(self.device),
                                   self.capture.alpha[i].to(self.device), white)
            image = self.render_frame(i, background)
            scores[self.capture.names[i]] = psnr((image - target).square().mean().item())
            save_png(image, job_dir / "result" / "eval" / f"{self.capture.names[i]}.png")
        return {"test_psnr": sum(scores.values()) / len(scores), "test_views": len(scores), "psnr_per_view": scores}


def build(spec: JobSpec, device: torch.device) -> Reconstruct:
    return Reconstruct(spec, device)


"""Reconstruction: a field fitted to a capture's photos (NeRF, with instant-ngp's choices).

Photometric MSE on random batches of rays drawn from every training image (plus an opacity
entropy and mip-NeRF 360's distortion loss, for surfaces a mesh can follow), a hash-grid field
(no view dependence: the field holds albedo, what the mesh bakes), rays marched with a fixed step
through the occupied cells of an empty-space grid (instant-ngp, nerfacc), Adam with an exponentially
decaying learning rate. Images with alpha are composited over a random colour per ray (instant-ngp's
trick), which makes the field's own opacity match the photo's coverage. Images without alpha show a
room, a table, a street: a background field outside the object cube (engine/fields/background.py)
explains them, so the object's field (the only one the mesh comes from) need not fill the cube with
fog; options.background "colour" composites over the photos' mean border colour instead (a plain
studio backdrop).
"""
from __future__ import annotations

import logging
import math

import torch

from ...cameras import camera_rays
from ...captures import Capture, capture_rays, load_capture
from ...fields import build_field
from ...fields.background import BackgroundField
from ...losses import distortion, opacity_entropy
from ...render import composite
from ...render.image import PIXEL_RADIUS
from ...render.occupancy import EmptySpace, march_step
from ...render.unbounded import composite_scene, render_background
from ...render.volume import RenderOutput, march_rays
from ...spec import JobSpec
from ..base import Method, Phase, Scene, StepOutput, exponential_ramp

log = logging.getLogger("engine.reconstruct")


def uses_background_field(spec: JobSpec, has_alpha: bool) -> bool:
    """options.background: "field" always, "colour" never, "auto" for photos without alpha."""
    choice = spec.options.background
    return choice == "field" or (choice == "auto" and not has_alpha)


def make_scene(spec: JobSpec, representation: dict | None = None) -> Scene:
    """The hash grid job.json's options.field describes, with the background field when the run had one
    (representation {"background": true}), rendered by marching (for render and export)."""
    field = build_field(spec.options.field)
    modules = {"field": field}
    if (representation or {}).get("background"):
        modules["background"] = BackgroundField()
    return Scene(modules=modules, field=field, render=capture_renderer(spec, modules))


def capture_renderer(spec: JobSpec, modules: dict, grid=None):
    """Scene.render of a capture method: the object's field marched through the cube (only in `grid`'s occupied
    cells when given), and the background field in front of and behind it when `modules` has one. Renders
    (R,3) origins and unit directions with a focal length in pixels (the samples' footprint) without gradients."""
    step = march_step(spec.render.samples_per_ray)
    samples = spec.options.background_samples

    def render(origins: torch.Tensor, dirs: torch.Tensor, focal: float) -> RenderOutput:
        out = march_rays(modules["field"], origins, dirs, step, grid=grid, pixel_radius=PIXEL_RADIUS / focal)
        if "background" not in modules:
            return out
        front, back = render_background(modules["background"], origins, dirs, samples)
        return composite_scene(front, out, back)

    return render


def view_bounds(capture: Capture, frames: torch.Tensor) -> torch.Tensor | None:
    """(K,4) xmin, xmax, ymin, ymax of each frame's view in normalised undistorted camera coordinates (x right, y
    down), from the rays of its pixels, so lens distortion widens or narrows the view as it does; None when a view
    reaches 90 degrees off its axis (a wide fisheye: no frustum bounds it)."""
    bounds = []
    for i in frames.tolist():
        _, dirs = capture_rays(capture, i)
        local = dirs @ capture.c2w[i, :3, :3]  # camera space: +X right, +Y up, looking down -Z
        if bool((local[:, 2] > -1e-3).any()):
            return None
        x, y = local[:, 0] / -local[:, 2], -local[:, 1] / -local[:, 2]
        bounds.append(torch.stack([x.min(), x.max(), y.min(), y.max()]))
    return torch.stack(bounds)


def border_colour(capture: Capture) -> torch.Tensor:
    """(3,) mean colour of the training images' outermost pixels: the backdrop of photos without alpha."""
    images = capture.images[capture.split(False)]
    border = torch.cat([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], dim=1)
    return border.reshape(-1, 3).mean(0)


def psnr(mse: float) -> float:
    """Peak signal-to-noise ratio of images in [0,1] from their mean squared error."""
    return -10 * math.log10(max(mse, 1e-10))


class Reconstruct(Method):
    def divergence_hint(self, step: int) -> str:
        return f"lower options.lr (now {self.spec.options.lr:g})"

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
        # 2. The field (and the background field outside the cube, for photos of a room); marching through the
        # empty-space grid, whose cells no training camera sees are empty from the start.
        self.scene = self.make_scene(spec)
        self.field = self.scene.modules["field"].to(device)
        self.background_field = None
        if uses_background_field(spec, self.capture.alpha is not None):
            self.background_field = self.scene.modules.setdefault("background", BackgroundField()).to(device)
        self.step_size = march_step(spec.render.samples_per_ray)
        self.empty_space = EmptySpace(o.occupancy, device, self.step_size)
        if self.empty_space.grid is not None:
            self.empty_space.grid.mark_invisible(self.capture.c2w[self.train], self.capture.intrinsics[self.train],
                                                 self.capture.size, view_bounds(self.capture, self.train))
        self.scene.render = capture_renderer(spec, self.scene.modules, self.empty_space.grid)
        trained = {"field": self.field, **({"background": self.background_field} if self.background_field else {})}
        self.modules = {**trained, **self.empty_space.modules}
        # instant-ngp's Adam: eps 1e-15 so rarely-hit hash entries still move.
        parameters = [p for m in trained.values() for p in m.parameters()]
        self.optimizer = torch.optim.Adam(parameters, lr=o.lr, betas=(0.9, 0.99), eps=1e-15)

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
        from ...captures import frame_rays  # each pixel's ray through its frame's lens

        to = self.device
        origins, dirs = frame_rays(cap, frame, px + 0.5, py + 0.5, to)
        rgb = cap.images[frame, py, px]
        alpha = None if cap.alpha is None else cap.alpha[frame, py, px]
        return (origins, dirs, rgb.to(to), None if alpha is None else alpha.to(to),
                cap.intrinsics[frame, 0].mean().item())

    def representation(self) -> dict:
        return {"background": self.background_field is not None}

    def evaluation_queries(self) -> int:
        # Held-out frames: every pixel, samples_per_ray marching samples of which only those in occupied cells
        # reach the field (the grid's occupied share: all of it before training, a few percent once the object
        # has formed; measured 13 s estimated against about 1 s taken when it was left out), plus the background's.
        h, w = self.capture.size
        background = self.spec.options.background_samples if self.background_field is not None else 0
        grid = self.empty_space.grid
        share = 1.0 if grid is None else grid.fraction
        return int(int(self.capture.test.sum()) * h * w * (self.spec.render.samples_per_ray * share + background))

    def photometric(self, field, n: int, generator: torch.Generator) -> tuple[dict, dict]:
        """Render n random training rays; MSE against the photos and the opacity entropy."""
        origins, dirs, target, alpha, focal = self.sample_rays(n, generator)
        out = march_rays(field, origins, dirs, self.step_size, generator, self.empty_space.grid,
                         pixel_radius=PIXEL_RADIUS / focal, return_samples=True)
        if self.background_field is not None:
            front, back = render_background(self.background_field, origins, dirs,
                                            self.spec.options.background_samples, generator)
            scene = composite_scene(front, out, back)
            rgb = scene.rgb if alpha is None else composite(scene.rgb, scene.opacity, torch.ones_like(target))
            if alpha is not None:
                target = composite(target * alpha[:, None], alpha, torch.ones_like(target))
        else:
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
        # The frame's lens as is: its coefficients act on normalised coordinates, whatever the size.
        origins, dirs = camera_rays(self.capture.c2w[index].to(self.device), fx, rw, rh, cx, cy, focal_y=fy,
                                    distortion=self.capture.distortion[index].tolist(),
                                    fisheye=bool(self.capture.fisheye[index]))
        return origins, dirs, (rh, rw), fx

    def render_frame(self, index: int, background: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
        """Frame `index` of the capture as the scene renders it (with the background field when there is one)
        over `background` (3,): (H,W,3), without gradients."""
        h, w = self.capture.size
        origins, dirs = capture_rays(self.capture, index, self.device)
        focal = float(self.capture.intrinsics[index, 0])
        with torch.no_grad():
            pieces = [self.scene.render(origins[i:i + chunk], dirs[i:i + chunk], focal)
                      for i in range(0, len(origins), chunk)]
        rgb, opacity = torch.cat([p.rgb for p in pieces]), torch.cat([p.opacity for p in pieces])
        return composite(rgb, opacity, background).reshape(h, w, 3)

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


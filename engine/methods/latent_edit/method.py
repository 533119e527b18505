"""Latent tri-plane editing (FaceDNeRF, Zhang et al. NeurIPS 2023): edit a capture by moving tri-planes.

FaceDNeRF edits a captured face in the latent space of a frozen EG3D generator: Score
Distillation Sampling pulls renders toward the prompt while a VGG reconstruction loss at the
source camera and a face-identity loss hold the result to the source. What matters is that the
edit moves a compact latent decoded by a frozen network, so it stays on what the decoder learned.
Here, for captures of any object, the latent is EG3D-style tri-planes (engine/fields/triplane.py):

1. invert: planes and decoder fitted to the capture's photos (the reconstruction's losses), or
   loaded from a finished latent_edit / tri-plane reconstruct job (`inputs.source_job`);
2. edit: the decoder frozen, the planes optimised (FaceDNeRF's schedule: peak lr 0.01, 5% warm-up,
   cosine ramp-down over the last 25%) under
   - SDS (DreamFusion's guidance, view prompts and shading) at a capture camera turned by a random
     yaw and pitch (FaceDNeRF's side views),
   - at the capture's own cameras: the photometric MSE on random rays, and the VGG perceptual loss
     between the render and the photo,
   - identity: 1 - cos between embeddings of the edited and the source render at the same camera
     (a face recogniser when options.face, else CLIP's image embeddings),
   - Vox-E's density correlation: 1 - Pearson correlation of source and edited density at random
     points, which keeps the structure;
3. tune (optional, options.tune_steps): the planes frozen and the decoder fine-tuned at a low
   rate under the same losses (FaceDNeRF's pivotal tuning, after PTI).

The plane TV regulariser comes with the field (engine/fields/triplane.py). The source is a frozen
copy of the field taken when the edit starts, kept in checkpoints. Where we depart: free planes
fitted to one capture stand for the generator's latent (no pretrained EG3D: its licence is
non-commercial and its checkpoints are pickles; PlaneSource is where a generator would plug in);
no illumination loss (it needs a pretrained relighting network).
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from ...cameras import Views
from ...errors import EngineError
from ...guidance.identity import IdentityLoss
from ...guidance.perceptual import PerceptualLoss
from ...guidance.sds import ScoreDistillation
from ...losses import pearson_correlation
from ...models.clip import load_clip
from ...models.diffusion import load_diffusion
from ...models.perceptual import load_perceptual
from ...options import FieldOptions
from ...render import composite
from ...render.image import render_pixels
from ...render.shading import render_shaded, sample_lighting
from ...spec import JobSpec
from .. import model_name
from ..base import Phase, Scene, StepOutput
from ..dreamfusion.method import model_dtype
from ..reconstruct.method import Reconstruct
from ..source_job import field_options, frozen_source


def make_scene(spec: JobSpec, representation: dict | None = None) -> Scene:
    """The edited tri-plane field, for render and export; its settings as the checkpoint recorded them (a source
    job's may differ from this job's options.field)."""
    from ...fields import build_field

    options = FieldOptions(**representation["field"]) if representation else field_options(spec)
    field = build_field(options)
    return Scene(modules={"field": field}, field=field)


def facedenerf_ramp(t: float, warmup: float, rampdown: float) -> float:
    """FaceDNeRF's (and StyleGAN2 projector's) learning-rate factor at fraction t in [0, 1] of the run: linear from 0
    over the first `warmup`, 1, then a cosine down to 0 over the last `rampdown`."""
    ramp = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return ramp * (min(1.0, t / warmup) if warmup > 0 else 1.0)


def turn_about_centre(c2w: torch.Tensor, yaw: float, pitch: float) -> torch.Tensor:
    """(4,4) camera-to-world turned about the object's centre: by `yaw` radians about world +Z, then by `pitch`
    about the camera's own right axis (up and down). The camera keeps its distance and still looks past the
    centre as before."""
    def rotation(axis: torch.Tensor, angle: float) -> torch.Tensor:
        k = F.normalize(axis, dim=0)
        kx = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]], dtype=c2w.dtype)
        return torch.eye(3, dtype=c2w.dtype) + math.sin(angle) * kx + (1 - math.cos(angle)) * (kx @ kx)

    r = rotation(c2w[:3, 0].cpu(), pitch)
    r = rotation(torch.tensor([0.0, 0.0, 1.0]), yaw) @ r
    out = c2w.clone()
    out[:3, :4] = r.to(c2w) @ c2w[:3, :4]
    return out


def view_of(c2w: torch.Tensor, fov_deg: float) -> Views:
    """The Views (one camera) of a camera-to-world in object space, with its azimuth and elevation as the orbit
    conventions define them (engine/cameras.py: azimuth 0 = on -Y), for DreamFusion's view prompt."""
    eye = c2w[:3, 3].cpu()
    r = float(eye.norm())
    azimuth = math.degrees(math.atan2(float(eye[0]), -float(eye[1])))
    elevation = math.degrees(math.asin(max(-1.0, min(1.0, float(eye[2]) / max(r, 1e-9)))))
    one = lambda v: torch.tensor([v], dtype=torch.float32)  # noqa: E731
    return Views(c2w.cpu()[None], one(fov_deg), one(azimuth), one(elevation), one(r))


class LatentEdit(Reconstruct):
    def divergence_hint(self, step: int) -> str:
        o, phase = self.spec.options, self.phase(step).name
        if phase == "edit":  # SDS, as in DreamFusion: the guidance scale as much as the lr
            return f"lower options.guidance_scale (now {o.guidance_scale:g}) or options.edit_lr (now {o.edit_lr:g})"
        return f"lower options.tune_lr (now {o.tune_lr:g})" if phase == "tune" else super().divergence_hint(step)

    def __init__(self, spec: JobSpec, device: torch.device) -> None:
        o = spec.options
        self.field_options = field_options(spec)
        if self.field_options.backbone != "triplane":  # this job's own backbone is checked with its options
            raise EngineError("invalid_job", f"inputs.source_job: {spec.inputs.source_job} has a "
                              f"{self.field_options.backbone} field; latent editing edits tri-planes",
                              'give a latent_edit job, or a reconstruct job run with options.field.backbone '
                              '"triplane", or leave inputs.source_job out to invert the capture here')
        # 1. The capture, the tri-plane field and Adam (Reconstruct's), and the source: a frozen copy.
        super().__init__(spec, device)
        reconstruct_steps = frozen_source(self, device)
        self.phases = (Phase("invert", reconstruct_steps), Phase("edit", spec.steps))
        if o.tune_steps:
            self.phases += (Phase("tune", o.tune_steps),)
        self.edit_start = reconstruct_steps
        # 2. Guidance: SDS through Stable Diffusion; VGG for the reconstruction; identity by a face recogniser
        # or CLIP's image embeddings.
        models = load_diffusion(model_name(spec, "diffusion"), device, model_dtype("auto", device),
                                spec.allow_downloads)
        self.guidance = ScoreDistillation(models, spec.prompt, spec.negative_prompt, o.guidance_scale, o.t_range,
                                          o.overhead_deg, device)
        self.perceptual = PerceptualLoss(load_perceptual(model_name(spec, "perceptual"), device, spec.allow_downloads))
        if o.face:
            from ...models.identity import load_identity  # facenet-pytorch: imported only for faces

            embedder = load_identity(model_name(spec, "identity"), device, spec.allow_downloads)
        else:
            embedder = load_clip(model_name(spec, "clip"), device, spec.allow_downloads)
        self.identity = IdentityLoss(embedder)
        self.albedo_warmup = min(o.albedo_warmup_steps, spec.steps // 5)
        # Per capture frame: its photo at the render size and the source's render there (deterministic).
        self.targets: dict[int, torch.Tensor] = {}
        self.source_renders: dict[int, torch.Tensor] = {}

    def fit_steps(self, total: int, done: int = 0) -> None:
        # A time budget shortens the phases: the edit starts where the (shorter) inversion ends.
        super().fit_steps(total, done)
        self.edit_start = self.phases[0].steps
        self.albedo_warmup = min(self.spec.options.albedo_warmup_steps, self.phases[1].steps // 5)

    def make_scene(self, spec: JobSpec) -> Scene:
        return make_scene(spec, {"field": dataclasses.asdict(self.field_options)})

    def representation(self) -> dict:
        return {"field": dataclasses.asdict(self.field_options)}

    def learning_rate(self, step: int) -> float:
        o, name = self.spec.options, self.phase(step).name
        if name == "invert":
            return super().learning_rate(step)
        if name == "tune":
            return o.tune_lr
        t = (step - self.edit_start) / max(self.phases[1].steps, 1)
        return o.edit_lr * facedenerf_ramp(t, o.warmup_fraction, o.rampdown_fraction)

    def weights(self, step: int) -> dict[str, float]:
        o = self.spec.options
        if self.phase(step).name == "invert":
            return super().weights(step)
        keep = o.keep_original
        return {"sds": o.lambda_sds, "rgb": o.lambda_rgb * keep, "perceptual": o.lambda_perceptual * keep,
                "identity": o.lambda_identity * keep, "density_corr": o.lambda_density_corr}

    def regularizers(self) -> dict[str, tuple[torch.Tensor, float]]:
        # The planes' TV only while they train (the tuning steps move the decoder alone).
        planes_train = any(p.requires_grad for p in self.field.planes.parameters())
        return super().regularizers() if planes_train else {}

    def background_of(self) -> torch.Tensor:
        """(3,) what renders at the capture's cameras are composited over: white for photos with alpha (they are
        composited over it too), else the photos' border colour."""
        return torch.ones(3, device=self.device) if self.background is None else self.background

    def target(self, index: int, size: tuple[int, int]) -> torch.Tensor:
        """(h,w,3) photo `index` resized (area) to `size`, over background_of() where it has alpha."""
        if index not in self.targets:
            image = self.capture.images[index].permute(2, 0, 1)[None]
            if self.capture.alpha is not None:
                alpha = self.capture.alpha[index][None, None]
                image = torch.cat([image * alpha, alpha], dim=1)
            image = F.interpolate(image, size=size, mode="area")[0].permute(1, 2, 0).to(self.device)
            if self.capture.alpha is not None:
                image = composite(image[..., :3], image[..., 3], self.background_of())
            self.targets[index] = image
        return self.targets[index]

    def set_trainable(self, phase: str) -> None:
        """invert: planes and decoder; edit: the planes alone (the decoder frozen); tune: the decoder alone."""
        self.field.planes.requires_grad_(phase != "tune")
        self.field.decoder.requires_grad_(phase != "edit")

    def step(self, step: int, generator: torch.Generator) -> StepOutput:
        phase = self.phase(step).name
        self.set_trainable(phase)
        if phase == "invert":
            return super().step(step, generator)
        spec, o = self.spec, self.spec.options
        if step == self.edit_start and spec.inputs.source_job is None:
            # The inversion is done: it becomes the frozen source; Adam starts afresh for the planes.
            self.source.load_state_dict(self.field.state_dict())
            self.optimizer.state.clear()
        if phase == "tune" and step == self.edit_start + self.phases[1].steps:
            self.optimizer.state.clear()  # the decoder's Adam state is the inversion's: start the tuning afresh
        # 1. Refresh the empty-space grid; a training frame.
        field = self.empty_space.field_for_step(self.field, step, generator)
        index = int(self.train[torch.randint(len(self.train), (1,), generator=generator)])
        # 2. SDS at that camera turned about the centre, shaded as DreamFusion does.
        yaw, pitch = ((torch.rand(2, generator=generator) * 2 - 1) * math.radians(o.jitter_deg)).tolist()
        c2w = turn_about_centre(self.capture.c2w[index], yaw, pitch)
        h = self.capture.size[0]
        fov = math.degrees(2 * math.atan(h / 2 / float(self.capture.intrinsics[index, 1])))
        lighting = sample_lighting(c2w[:3, 3], step - self.edit_start < self.albedo_warmup, generator, self.device,
                                   albedo_p=o.albedo_share)
        render = render_shaded(field, c2w.to(self.device), fov, spec.render.size, spec.render.samples_per_ray,
                               lighting, generator)
        losses = self.guidance.loss(render.image, view_of(c2w, fov), generator)
        # 3. At the capture's own camera: the render against the photo (perceptual) and the source's render there
        # (identity); photometric MSE on random rays of all photos.
        origins, dirs, (rh, rw), focal = self.frame_camera(index)
        out = render_pixels(field, origins, dirs, spec.render.samples_per_ray, focal, generator)
        image = composite(out.rgb, out.opacity, self.background_of()).reshape(1, rh, rw, 3)
        if index not in self.source_renders:
            with torch.no_grad():
                src = render_pixels(self.source, origins, dirs, spec.render.samples_per_ray, focal, chunk=16384)
                self.source_renders[index] = composite(src.rgb, src.opacity, self.background_of()).reshape(rh, rw, 3)
        losses.update(self.perceptual.loss(image, self.target(index, (rh, rw))[None]))
        losses.update(self.identity.loss(image, self.source_renders[index][None]))
        photometric, metrics = self.photometric(field, o.rays_per_step, generator)
        losses["rgb"] = photometric["rgb"]
        # 4. Vox-E's density correlation at random points of the cube: the structure stays the source's.
        x = (torch.rand(o.density_points, 3, generator=generator) * 2 - 1).to(self.device)
        with torch.no_grad():
            source_density = self.source(x).density
        losses["density_corr"] = 1 - pearson_correlation(self.field(x).density, source_density)
        return StepOutput(losses, {**metrics, "edit_frame": float(index), "yaw_deg": math.degrees(yaw),
                                   "pitch_deg": math.degrees(pitch), **self.empty_space.metrics()})


def build(spec: JobSpec, device: torch.device) -> LatentEdit:
    return LatentEdit(spec, device)

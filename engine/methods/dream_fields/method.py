"""Dream Fields (Jain et al. 2022): a NeRF optimised so CLIP finds its renders similar to the prompt.

Follows the paper and google-research/dreamfields: CLIP similarity over random crops of
renders composited on random backgrounds, a transmittance loss whose target anneals from
40% to 88% (against fog), Adam with eps 1e-5 and an exponential learning-rate warm-up,
cameras all around the object. Where we depart: the default backbone is a hash grid (the
paper's MLP is `options.field.backbone = "mlp"`), which makes the NeRF a small share of each step;
the field starts nearly empty (options.field.density_bias -3, not mip-NeRF's -1), so CLIP grows the
object out of clear space instead of carving it out of a fog the transmittance loss clears slowly.
"""
from __future__ import annotations

import torch

from ...cameras import sample_orbit
from ...captures import text_object_frame
from ...fields import build_field
from ...guidance.clip_similarity import ClipSimilarity
from ...models.clip import load_clip
from ...render import composite, render_view
from ...render.background import random_background
from ...render.occupancy import EmptySpace
from ...spec import JobSpec
from .. import model_name
from ..base import Method, Phase, Scene, StepOutput, exponential_ramp


def make_scene(spec: JobSpec, representation: dict | None = None) -> Scene:
    """The field alone, as job.json's options.field describes it (for render and export)."""
    o = spec.options
    field = build_field(o.field, default_width=128 if o.field.backbone == "mlp" else 64)
    return Scene(modules={"field": field}, field=field)


class DreamFields(Method):
    def divergence_hint(self, step: int) -> str:
        o = self.spec.options
        default = "" if o.lr is not None else f", the default for the {o.field.backbone} backbone"
        return f"lower options.lr (now {self.peak_lr:g}{default})"

    def __init__(self, spec: JobSpec, device: torch.device) -> None:
        o = spec.options
        self.spec, self.device = spec, device
        self.phases = (Phase("generate", spec.steps),)
        self.frame = text_object_frame(spec.orbit.look_at)
        # 1. The field and its empty-space grid.
        self.scene = make_scene(spec)
        self.field = self.scene.modules["field"].to(device)
        self.empty_space = EmptySpace(o.occupancy, device)
        self.modules = {"field": self.field, **self.empty_space.modules}
        # 2. Guidance: CLIP similarity of random crops to the prompt.
        clip = load_clip(model_name(spec, "clip"), device, spec.allow_downloads)
        self.guidance = ClipSimilarity(clip, spec.prompt, o.n_augments, o.crop_fraction)
        # 3. Adam with the paper's eps; the learning rate depends on the backbone.
        self.peak_lr = o.lr if o.lr is not None else (1e-4 if o.field.backbone == "mlp" else 5e-3)
        self.optimizer = torch.optim.Adam(self.field.parameters(), lr=self.peak_lr, eps=1e-5)
        # The paper's schedules are for 10k-step runs; a short run spends at most a fifth of
        # its steps warming up and annealing, so it still reaches the final settings.
        self.schedule(spec.steps)

    def schedule(self, steps: int) -> None:
        """Warm-up and annealing lengths for a run of `steps` (a short run still reaches the final settings)."""
        o = self.spec.options
        self.warmup = min(o.lr_warmup_steps, steps // 5)
        self.anneal = min(o.transmittance_anneal_steps, steps // 5)

    def fit_steps(self, total: int, done: int = 0) -> None:
        super().fit_steps(total, done)  # a time budget: the schedules follow the fitted length
        self.schedule(self.phases[0].steps)

    def learning_rate(self, step: int) -> float:
        return exponential_ramp(step, self.warmup, self.peak_lr / 10, self.peak_lr)

    def transmittance_target(self, step: int) -> float:
        start, end = self.spec.options.transmittance_target
        return exponential_ramp(step, self.anneal, start, end)

    def weights(self, step: int) -> dict[str, float]:
        return {"clip": 1.0, "transmittance": 0.5}

    def step(self, step: int, generator: torch.Generator) -> StepOutput:
        spec, o = self.spec, self.spec.options
        # 1. Refresh the empty-space grid on its schedule; a random camera on the orbit.
        field = self.empty_space.field_for_step(self.field, step, generator)
        view = sample_orbit(spec.orbit, 1, generator)
        # 2. Render with gradients.
        out = render_view(field, view.c2w[0].to(self.device), float(view.fov_deg[0]), spec.render.size,
                          spec.render.samples_per_ray, generator)
        # 3. Composite over a random augmentation background.
        bg = random_background(spec.render.size, generator, o.bg_blur_max_px).to(self.device)
        image = composite(out.rgb, out.opacity, bg)
        # 4. CLIP on random crops; transmittance held up to its annealed target.
        losses = self.guidance.loss(image[None], generator)
        transmittance = (1 - out.opacity).mean()
        target = self.transmittance_target(step)
        losses["transmittance"] = -torch.clamp(transmittance, max=target)
        metrics = {"transmittance": transmittance.item(), "transmittance_target": target,
                   **self.empty_space.metrics()}
        return StepOutput(losses, metrics)


def build(spec: JobSpec, device: torch.device) -> DreamFields:
    return DreamFields(spec, device)

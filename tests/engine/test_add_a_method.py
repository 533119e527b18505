"""Adding a method is one module plus its registration line: a throwaway method, registered here, is found by
job validation and `python -m engine --help`, and runs through the unchanged run loop, checkpoint, export and
`render` although its representation is not a neural density field (an analytic sphere with its own
renderer)."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from torch import nn

from engine import cli
from engine.captures import text_object_frame
from engine.errors import invalid_job
from engine.fields.base import FieldOutput
from engine.jobs import offline
from engine.jobs.run import run_job
from engine.methods import CARDS, Method, MethodCard, Phase, Quality, Scene, StepOutput, register, unregister
from engine.options import OccupancyOptions
from engine.render.volume import RenderOutput, ray_cube_intersect
from engine.spec import parse_job


@dataclass(frozen=True)
class ToySphereOptions:
    target_radius: float = 0.6
    """Radius the sphere should reach, in object units."""
    occupancy: OccupancyOptions = field(default_factory=lambda: OccupancyOptions(resolution=0))
    """A nested section with a default_factory (unused by the sphere; parsed like any method's)."""

    def validate(self, key: str) -> None:
        if not 0 < self.target_radius < 1:
            raise invalid_job(f"{key}.target_radius", self.target_radius, "must be in (0, 1)")


CARD = MethodCard(
    name="toy_sphere", title="Toy Sphere", summary="A sphere grown to a radius (test only)", source="this test",
    input="text", takes_prompt=False, options=ToySphereOptions,
    defaults={"steps": 30, "render": {"size": 16, "samples_per_ray": 8},
              "orbit": {"radius": (4.0, 4.0), "elevation_deg": (20.0, 20.0), "azimuth_deg": (0.0, 360.0),
                        "fov_deg": (40.0, 40.0)}},
    presets={"draft": Quality(10, 16, 32), "standard": Quality(30, 16, 64), "high": Quality(60, 32, 64)},
    composition_root=__name__,
)


class Sphere(nn.Module):
    """Not a density field: a radius and a colour, rendered analytically with a soft silhouette."""

    def __init__(self) -> None:
        super().__init__()
        self.radius = nn.Parameter(torch.tensor(0.3))
        self.colour = nn.Parameter(torch.tensor([0.2, 0.4, 0.8]))

    def field(self, x: torch.Tensor, radius=None) -> FieldOutput:
        density = 200 * torch.sigmoid((self.radius - x.norm(dim=-1)) / 0.02)
        return FieldOutput(density, self.colour.clamp(0, 1).expand(len(x), 3))

    def render(self, origins: torch.Tensor, dirs: torch.Tensor, focal: float) -> RenderOutput:
        along = -(origins * dirs).sum(-1)  # distance to the point nearest the centre
        miss = (origins + along[:, None] * dirs).norm(dim=-1)
        opacity = torch.sigmoid((self.radius - miss) / 0.02)
        near, far, _ = ray_cube_intersect(origins, dirs)
        return RenderOutput(opacity[:, None] * self.colour.clamp(0, 1), opacity, torch.where(opacity > 0.5, along, far))


def make_scene(spec, representation=None) -> Scene:
    sphere = Sphere()
    return Scene(modules={"sphere": sphere}, field=sphere.field, render=sphere.render)


class ToySphere(Method):
    def __init__(self, spec, device) -> None:
        self.spec, self.phases = spec, (Phase("grow", spec.steps),)
        self.frame = text_object_frame(spec.orbit.look_at)
        self.scene = make_scene(spec)
        self.modules = self.scene.modules
        self.optimizer = torch.optim.Adam(self.modules["sphere"].parameters(), lr=0.02)

    def learning_rate(self, step: int) -> float:
        return 0.02

    def weights(self, step: int) -> dict[str, float]:
        return {"silhouette": 1.0}

    def step(self, step: int, generator: torch.Generator) -> StepOutput:
        origins = torch.tensor([[0.0, -4.0, 0.0]]).expand(64, 3)
        dirs = torch.nn.functional.normalize(torch.cat([torch.rand(64, 1, generator=generator) * 0.3,
                                                        torch.ones(64, 1), torch.zeros(64, 1)], dim=-1), dim=-1)
        out = self.scene.render(origins, dirs, 20.0)
        miss = (origins + (-(origins * dirs).sum(-1))[:, None] * dirs).norm(dim=-1)
        target = (miss < self.spec.options.target_radius).float()
        return StepOutput({"silhouette": (out.opacity - target).square().mean()},
                          {"radius": self.modules["sphere"].radius.item()})


def build(spec, device) -> ToySphere:
    return ToySphere(spec, device)


@pytest.fixture
def toy_method():
    register(CARD)
    yield CARD
    unregister(CARD.name)


def test_a_registered_method_is_validated_listed_and_run(toy_method, tmp_path):
    spec = parse_job({"spec_version": 1, "method": "toy_sphere", "options": {"target_radius": 0.5}})
    assert spec.steps == 30 and spec.render.size == 16 and spec.options == ToySphereOptions(0.5)
    nested = parse_job({"spec_version": 1, "method": "toy_sphere", "options": {"occupancy": {"every": 3}}}).options
    assert nested.occupancy == OccupancyOptions(resolution=0, every=3)  # the method's default, then the job's
    with pytest.raises(Exception, match="options.target_radius: must be in"):
        parse_job({"spec_version": 1, "method": "toy_sphere", "options": {"target_radius": 2.0}})
    assert "toy_sphere" in cli.parser().format_help() and "A sphere grown to a radius" in cli.parser().format_help()

    job = tmp_path / "job"
    job.mkdir()
    (job / "job.json").write_text(json.dumps({"spec_version": 1, "method": "toy_sphere", "steps": 60, "device": "cpu",
                                              "preview_every": 30, "export": {"resolution": 48, "formats": ["npz"], "threshold": 100},
                                              "options": {"target_radius": 0.6}}))
    assert run_job(job, False, io.StringIO()) == 0
    events = [json.loads(line) for line in (job / "events.jsonl").read_text().splitlines()]
    progress = [e for e in events if e["event"] == "progress"]
    assert progress[-1]["phase"] == "grow" and progress[-1]["metrics"]["radius"] > 0.45
    assert (job / "previews" / "step_000060.png").is_file()
    mesh = np.load(job / "result" / "mesh.npz")
    radii = np.linalg.norm(mesh["vertices"], axis=1)
    assert abs(np.median(radii) - progress[-1]["metrics"]["radius"]) < 0.05
    # The offline commands rebuild the scene from the job folder alone, with the method's own renderer.
    rendered = offline.render_command(job, tmp_path / "render", None, 2, 16, "white")
    assert rendered["images"] == 2
    assert offline.export_command(job, 32, None, None)["mesh"] == "result/mesh.npz"


def test_unknown_and_duplicate_methods():
    with pytest.raises(Exception, match="is not a known method"):
        parse_job({"spec_version": 1, "method": "toy_sphere"})
    with pytest.raises(ValueError, match="registered twice"):
        register(CARDS["dream_fields"])


def test_the_loop_and_the_offline_commands_use_only_the_method_contract():
    """No probing of a method for optional attributes, no assumption that it has a `field`."""
    from pathlib import Path

    import engine.jobs as jobs

    for name in ("run.py", "outputs.py", "offline.py"):
        source = (Path(jobs.__file__).parent / name).read_text()
        assert "getattr(" not in source and "hasattr(" not in source, name
        assert "method.field" not in source and ".make_field" not in source, name

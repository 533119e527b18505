"""DreamFusion: the SDS gradient and view prompts, shading by hand, and a few-step run with tiny models."""
import dataclasses
import io
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from engine.cameras import orbit_views
from engine.guidance.sds import ScoreDistillation, view_prompt
from engine.jobs.run import run_job
from engine.models import load_diffusion
from engine.render.shading import lambert, shade, surface_normals
from conftest import engine, read_events, write_job


@pytest.mark.parametrize("azimuth, elevation, suffix", [
    (0, 0, "front view"),
    (45, 10, "front view"),
    (-45, 0, "front view"),
    (46, 0, "side view"),
    (90, 30, "side view"),
    (-90, 0, "side view"),
    (135, 0, "side view"),
    (136, 0, "back view"),
    (180, 0, "back view"),
    (-180, 0, "back view"),
    (315, 0, "front view"),  # wraps to -45
    (405, 0, "front view"),  # wraps to 45
    (225, 0, "side view"),  # wraps to -135
    (0, 60, "front view"),
    (180, 61, "overhead view"),
    (90, 89, "overhead view"),
])
def test_view_prompt_suffix(azimuth, elevation, suffix):
    assert view_prompt("a fox", azimuth, elevation, overhead_deg=60) == f"a fox, {suffix}"


class StubUNet(torch.nn.Module):
    """eps(x, t, c) = a * x + b * mean(c): a noise prediction known in closed form."""

    def __init__(self, real, a=0.5, b=3.0):
        super().__init__()
        self.config, self.a, self.b = real.config, a, b

    @property
    def dtype(self):
        return torch.float32

    def forward(self, x, t, encoder_hidden_states):
        return SimpleNamespace(sample=self.a * x + self.b * encoder_hidden_states.mean(dim=(1, 2))[:, None, None, None])


@pytest.fixture(scope="module")
def tiny_sd(tiny_models):
    return load_diffusion(tiny_models["diffusion"], "cpu", torch.float32, allow_downloads=False)


def test_sds_gradient_on_the_latents_is_w_times_guided_eps_minus_noise(tiny_sd):
    models = dataclasses.replace(tiny_sd, unet=StubUNet(tiny_sd.unet))
    sds = ScoreDistillation(models, "a fox", negative_prompt="blurry", guidance_scale=7.0)
    images = torch.rand(2, 16, 16, 3, generator=torch.Generator().manual_seed(1), requires_grad=True)
    views = orbit_views(torch.tensor([0.0, 170.0]), 20.0, 3.0, 50.0)
    latents = sds.encode(images).detach().requires_grad_()
    assert latents.shape == (2, 4, 32, 32)  # the tiny VAE's input is 64 px: unet 32 x factor 2
    sds.encode = lambda _: latents
    sds.loss(images, views, torch.Generator().manual_seed(5))["sds"].backward()
    # The same draws by hand: t, then the noise, from the same generator state.
    g = torch.Generator().manual_seed(5)
    t = torch.randint(sds.t_min, sds.t_max + 1, (2,), generator=g)
    noise = torch.randn(latents.shape, generator=g)
    noisy = tiny_sd.scheduler.add_noise(latents.detach(), noise, t)
    mean_u = sds.embed("blurry").mean()
    mean_c = torch.stack([sds.embed("a fox, front view").mean(), sds.embed("a fox, back view").mean()])
    eps_u = 0.5 * noisy + 3.0 * mean_u
    eps_c = 0.5 * noisy + 3.0 * mean_c[:, None, None, None]
    eps_hat = eps_u + 7.0 * (eps_c - eps_u)
    w = (1 - tiny_sd.scheduler.alphas_cumprod[t])[:, None, None, None]
    # The loss is averaged over the batch of 2.
    torch.testing.assert_close(latents.grad, w * (eps_hat - noise) / 2, rtol=1e-5, atol=1e-6)
    assert set(sds._embeddings) == {"blurry", "a fox, front view", "a fox, back view"}  # cached per view prompt


def test_a_non_finite_noise_prediction_is_not_hidden(tiny_sd):
    """A NaN from the UNet must reach the loss, so the run loop stops with `diverged`."""
    models = dataclasses.replace(tiny_sd, unet=StubUNet(tiny_sd.unet, a=float("nan")))
    sds = ScoreDistillation(models, "a fox")
    loss = sds.loss(torch.rand(1, 16, 16, 3), orbit_views(0.0, 20.0, 3.0, 50.0), torch.Generator().manual_seed(0))
    assert not torch.isfinite(loss["sds"])


def test_sds_reaches_the_render_through_the_vae(tiny_sd):
    sds = ScoreDistillation(tiny_sd, "a fox")
    images = torch.rand(1, 16, 16, 3, generator=torch.Generator().manual_seed(1), requires_grad=True)
    loss = sds.loss(images, orbit_views(90.0, 70.0, 3.0, 50.0), torch.Generator().manual_seed(0))["sds"]
    loss.backward()
    assert torch.isfinite(loss) and images.grad.abs().sum() > 0
    assert "a fox, overhead view" in sds._embeddings
    t = torch.randint(sds.t_min, sds.t_max + 1, (10000,), generator=torch.Generator().manual_seed(0))
    assert (sds.t_min, sds.t_max) == (20, 980) and t.min() >= 20 and t.max() <= 980


def plane_field(albedo=(0.8, 0.4, 0.2)):
    """Opaque half-space z < 0 inside the cube, density rising linearly downwards (normal +Z)."""
    from engine.fields.base import FieldOutput

    def field(x, radius=None):
        density = (-x[:, 2] * 100).clamp(min=0)
        return FieldOutput(density, torch.tensor(albedo).expand(len(x), 3))
    return field


def test_plane_facing_the_light_is_albedo_times_ambient_plus_diffuse():
    field = plane_field()
    origins, dirs = torch.tensor([[0.0, 0.0, 3.0], [0.3, 0.0, 3.0]]), torch.tensor([[0.0, 0.0, -1.0]] * 2)
    depth, opacity = torch.tensor([3.0, 3.0]), torch.tensor([1.0, 1.0])
    points, normals = surface_normals(field, origins, dirs, depth, opacity)
    torch.testing.assert_close(normals, torch.tensor([[0.0, 0.0, 1.0]] * 2))
    rgb = torch.tensor([[0.8, 0.4, 0.2]] * 2)
    light = torch.tensor([0.0, 0.0, 5.0])
    # Straight above the first point: n.l = 1 -> albedo * (ambient + (1 - ambient)) = albedo.
    # The second point sees the light at cos = 5 / sqrt(0.09 + 25).
    cos = 5 / (0.3**2 + 25) ** 0.5
    for ambient in (0.1, 0.4):
        out = shade("lambertian", rgb, opacity, normals, points, light, ambient)
        torch.testing.assert_close(out[0], rgb[0])
        torch.testing.assert_close(out[1], rgb[1] * (ambient + (1 - ambient) * cos))
    # A light below the plane leaves only the ambient term.
    below = shade("lambertian", rgb, opacity, normals, points, torch.tensor([0.0, 0.0, -5.0]), 0.25)
    torch.testing.assert_close(below, rgb * 0.25)
    assert torch.equal(shade("albedo", rgb, opacity, normals, points, light, 0.1), rgb)


def test_textureless_ignores_albedo_and_empty_rays_get_no_normal():
    normals = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    points = torch.zeros(2, 3)
    opacity = torch.tensor([1.0, 0.5])
    light = torch.tensor([0.0, 3.0, 3.0])  # 45 degrees off the normal
    a = shade("textureless", torch.tensor([[0.8, 0.4, 0.2], [0.1, 0.1, 0.1]]), opacity, normals, points, light, 0.2)
    b = shade("textureless", torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.0, 0.0]]), opacity, normals, points, light, 0.2)
    assert torch.equal(a, b)
    expected = (0.2 + 0.8 * 2**-0.5) * opacity
    torch.testing.assert_close(a, expected[:, None].expand(2, 3))
    torch.testing.assert_close(lambert(normals, points, light, 0.2), 0.2 + 0.8 * 2**-0.5 * torch.ones(2))
    _, n = surface_normals(plane_field(), torch.tensor([[0.0, 0.0, 3.0]]), torch.tensor([[0.0, 0.0, -1.0]]),
                           torch.tensor([3.0]), torch.tensor([0.05]))
    assert torch.equal(n, torch.zeros(1, 3))


# Small enough for a 2-core CPU: ~1 s per step with the tiny SD pipeline.
TINY_DF_OPTIONS = {"field": {"hash_levels": 4, "hash_log2_size": 12, "hash_max_resolution": 64, "mlp_width": 16},
                   "occupancy": {"resolution": 16, "every": 4}, "albedo_warmup_steps": 2}


def write_df_job(job_dir, models, **overrides):
    """A dreamfusion job: write_job's base with dreamfusion's own options (write_job merges dicts)."""
    write_job(job_dir, models, method="dreamfusion", render={"size": 32, "samples_per_ray": 16}, **overrides)
    job = json.loads((job_dir / "job.json").read_text())
    job["options"] = {**TINY_DF_OPTIONS, **overrides.get("options", {})}
    (job_dir / "job.json").write_text(json.dumps(job))
    return job_dir


def test_dreamfusion_run_end_to_end(tmp_path, tiny_models):
    job = write_df_job(tmp_path / "job", tiny_models, steps=10, negative_prompt="blurry")
    out = engine("run", job)
    assert out.returncode == 0, out.stderr[-3000:]
    events = read_events(job)
    assert events[-1]["event"] == "finished" and events[-1]["status"] == "succeeded"
    progress = [e for e in events if e["event"] == "progress"]
    assert progress[-1]["step"] == 10
    assert all(set(e["losses"]) == {"sds", "orientation", "opacity"} for e in progress)
    # The blob: the field starts with an object, so the first renders are not empty.
    assert progress[0]["metrics"]["opacity"] > 0.05
    mesh = np.load(job / "result" / "mesh.npz")
    assert len(mesh["faces"]) > 0 and mesh["vertices"].dtype == np.float32
    started = events[0]["job"]
    assert started["orbit"]["radius"] == [2.5, 3.0] and started["options"]["guidance_scale"] == 100.0


def test_dreamfusion_same_seed_same_weights_and_resume(tmp_path, tiny_models, monkeypatch):
    from engine.methods.dreamfusion import method as dreamfusion
    from test_run import assert_same_final_weights

    a = write_df_job(tmp_path / "a", tiny_models, steps=6)
    b = write_df_job(tmp_path / "b", tiny_models, steps=6, checkpoint_every=3)
    assert run_job(a, False, io.StringIO()) == 0
    # b: cancelled after step 4, then resumed: the same weights bit for bit as the straight run.
    build = dreamfusion.build

    def build_cancelling_at_4(spec, device):
        method = build(spec, device)
        step = method.step

        def stepping(k, gen):
            if k == 4:
                (b / "cancel").write_text("")
            return step(k, gen)
        method.step = stepping
        return method

    monkeypatch.setattr(dreamfusion, "build", build_cancelling_at_4)
    assert run_job(b, False, io.StringIO()) == 8
    monkeypatch.undo()
    (b / "cancel").unlink()
    assert run_job(b, True, io.StringIO()) == 0
    assert_same_final_weights(a, b, 6)


@pytest.mark.parametrize("options, key", [
    ({"guidance_scale": -1}, "options.guidance_scale"),
    ({"t_range": [0.5, 0.2]}, "options.t_range"),
    ({"t_range": [0.02, 1.0]}, "options.t_range"),
    ({"precision": "fp8"}, "options.precision"),
    ({"cpu_offload": "yes"}, "options.cpu_offload"),
    ({"n_augments": 4}, "options.n_augments"),  # a Dream Fields option
    ({"overhead_deg": 120}, "options.overhead_deg"),
    ({"latent_warmup_steps": -1}, "options.latent_warmup_steps"),
])
def test_bad_dreamfusion_options_are_invalid_job_naming_the_key(tmp_path, options, key):
    from engine.errors import EngineError
    from engine.spec import parse_job

    with pytest.raises(EngineError) as e:
        parse_job({"spec_version": 1, "method": "dreamfusion", "prompt": "a fox", "options": options})
    assert e.value.kind == "invalid_job" and e.value.message.startswith(f"{key}:")


def test_rgb_to_latent_map_inverts_the_latent_rgb_factors():
    """latents = rgb @ M + b is the least-squares inverse of rgb_[-1,1] = latents @ LATENT_RGB_FACTORS.

    The factors have rank 3, so the least-squares error of RGB -> latents -> RGB is zero: colours come back
    to float32 rounding (1e-5 here). Latents -> RGB -> latents keeps the 3-dimensional span of the factors
    and drops the 4th direction (the one that decodes to mid-grey).
    """
    from engine.guidance.sds import LATENT_RGB_FACTORS, rgb_to_latent_map

    factors = torch.tensor(LATENT_RGB_FACTORS)  # (4, 3)
    matrix, bias = rgb_to_latent_map()
    assert matrix.shape == (3, 4) and bias.shape == (4,)
    rgb = torch.rand(1000, 3, generator=torch.Generator().manual_seed(0))
    back = ((rgb @ matrix + bias) @ factors + 1) / 2
    torch.testing.assert_close(back, rgb, rtol=0, atol=1e-5)
    # Mid-grey is 0 in [-1, 1], so its latents are 0: the bias is exactly the [0, 1] -> [-1, 1] shift.
    torch.testing.assert_close(torch.full((3,), 0.5) @ matrix + bias, torch.zeros(4), rtol=0, atol=1e-6)
    # On the span: latents = a @ factors^T come back; the direction orthogonal to it decodes to grey and is lost.
    on_span = torch.randn(100, 3, generator=torch.Generator().manual_seed(1)) @ factors.T
    torch.testing.assert_close(((on_span @ factors + 1) / 2) @ matrix + bias, on_span, rtol=0, atol=1e-5)
    null = torch.linalg.svd(factors.T.double()).Vh[-1].float()  # (4,), factors^T null = 0
    torch.testing.assert_close(((null @ factors + 1) / 2) @ matrix + bias, torch.zeros(4), rtol=0, atol=1e-5)
    # Latents for a VAE with another scaling factor scale with it (the factors are for SD's 0.18215).
    matrix2, bias2 = rgb_to_latent_map(0.18215 * 2)
    torch.testing.assert_close((matrix2, bias2), (2 * matrix, 2 * bias))


def test_approximate_latents_are_at_the_unet_resolution_without_the_vae(tiny_sd):
    from engine.guidance.sds import rgb_to_latent_map

    sds = ScoreDistillation(tiny_sd, "a fox")
    matrix, bias = rgb_to_latent_map(tiny_sd.vae.config.scaling_factor)
    colour = torch.tensor([0.9, 0.3, 0.1])
    latents = sds.approximate_latents(colour.expand(2, 64, 64, 3))  # the tiny UNet takes 32x32 latents
    assert latents.shape == (2, 4, 32, 32)
    torch.testing.assert_close(latents, (colour @ matrix + bias)[None, :, None, None].expand(2, 4, 32, 32))
    # Gradients reach the render through the (antialiased, 64 -> 32) resize, the same bit for bit each time.
    grads = []
    for _ in range(2):
        images = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(1), requires_grad=True)
        view = orbit_views(0.0, 20.0, 3.0, 50.0)
        sds.loss(images, view, torch.Generator().manual_seed(0), approximate=True)["sds"].backward()
        grads.append(images.grad)
    assert grads[0].abs().sum() > 0 and torch.equal(grads[0], grads[1])


def build_df(tiny_models, **options):
    """A DreamFusion method built in-process on the CPU with the tiny pipeline and 32 px renders."""
    from engine.methods.dreamfusion import method as dreamfusion
    from engine.spec import parse_job

    spec = parse_job({"spec_version": 1, "method": "dreamfusion", "prompt": "a fox", "seed": 3, "steps": 10,
                      "device": "cpu", "render": {"size": 32, "samples_per_ray": 16}, "models": tiny_models,
                      "options": {**TINY_DF_OPTIONS, **options}})
    torch.manual_seed(spec.seed)
    return dreamfusion.build(spec, torch.device("cpu"))


def test_latent_warmup_steps_skip_the_vae_encoder_and_still_reach_the_field(tiny_models):
    from engine.jobs.run import step_generator

    # 100 asked, capped at a fifth of the 10-step run: steps 0 and 1 are latent steps.
    method = build_df(tiny_models, latent_warmup_steps=100, albedo_warmup_steps=0)
    assert method.latent_warmup == 2
    vae, calls = method.guidance.models.vae, []
    encode = vae.encode
    vae.encode = lambda *a, **k: calls.append(1) or encode(*a, **k)
    for step, latent in ((0, True), (1, True), (2, False)):
        method.optimizer.zero_grad(set_to_none=True)
        out = method.step(step, step_generator(3, step))
        assert len(calls) == (0 if latent else 1), step
        assert out.metrics["latent"] == float(latent)
        if latent:
            assert out.metrics["shading"] == 0.0  # albedo only (step 1's draw would otherwise shade)
        # The SDS loss alone (the regularisers reach the field anyway) brings gradients to the hash grid and MLP.
        out.losses["sds"].backward()
        grads = [p.grad for p in method.field.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads) and all(g.abs().sum() > 0 for g in grads)


def test_dreamfusion_latent_warmup_run_same_seed_same_weights(tmp_path, tiny_models):
    from test_run import assert_same_final_weights

    # 5 steps: the cap (a fifth of the run) leaves step 0 a latent step, then ordinary steps.
    runs = [write_df_job(tmp_path / name, tiny_models, steps=5, checkpoint_every=5,
                         options={"latent_warmup_steps": 3}) for name in ("a", "b")]
    for job in runs:
        assert run_job(job, False, io.StringIO()) == 0
    progress = [e for e in read_events(runs[0]) if e["event"] == "progress"]
    assert progress[0]["step"] == 1 and progress[0]["metrics"]["latent"] == 1.0
    assert progress[-1]["step"] == 5 and progress[-1]["metrics"]["latent"] == 0.0
    assert_same_final_weights(runs[0], runs[1], 5)

"""Capture methods' parts (NeRF-Art, DietNeRF): chunked back-propagation, the distortion loss, CLIP style,
semantic and perceptual losses. Values worked out by hand where possible; tiny models on the CPU."""
import math

import pytest
import torch
import torch.nn.functional as F

from engine.cameras import camera_rays, focal_from_fov, orbit_views
from engine.fields import HashGridField
from engine.fields.base import FieldOutput
from engine.guidance.clip_consistency import SemanticConsistency
from engine.guidance.clip_style import StyleGuidance
from engine.guidance.negative_styles import NEGATIVE_STYLES, negative_styles_for
from engine.guidance.perceptual import PerceptualLoss
from engine.models import load_clip, load_perceptual
from engine.losses import distortion
from engine.render import backprop_in_chunks, composite, render_rays


@pytest.fixture(scope="module")
def tiny_clip(tiny_models):
    return load_clip(tiny_models["clip"], "cpu", allow_downloads=False)


# --- chunked back-propagation ------------------------------------------------------------------

def test_chunked_backprop_gives_the_gradients_of_full_backprop():
    torch.manual_seed(0)
    field = HashGridField(levels=4, log2_size=12, max_resolution=64, width=16, density_bias=1.0)
    for table in field.encoding.tables:  # features big enough that every level matters
        torch.nn.init.uniform_(table, -0.5, 0.5)
    size = 8
    origins, dirs = camera_rays(orbit_views(30.0, 20.0, 3.0, 40.0).c2w[0], focal_from_fov(40.0, size), size, size)
    origins, dirs = origins.reshape(1, size, size, 3), dirs.reshape(1, size, size, 3)
    background = torch.tensor([0.2, 0.4, 0.6])
    target = torch.rand(1, size, size, 3, generator=torch.Generator().manual_seed(1))

    def render_fn(o, d):  # bin centres: the same colours in both passes
        out = render_rays(field, o, d, 16)
        return composite(out.rgb, out.opacity, background)

    def image_loss(image):  # couples pixels, as CLIP does
        losses = {"mse": (image - target).square().mean(), "mean_red": image[..., 0].mean() ** 2}
        return losses["mse"] + 3 * losses["mean_red"], losses

    full_total, _ = image_loss(render_fn(origins.reshape(-1, 3), dirs.reshape(-1, 3)).reshape(origins.shape))
    full_total.backward()
    full = {name: p.grad.clone() for name, p in field.named_parameters()}
    field.zero_grad()

    total, losses, image = backprop_in_chunks(render_fn, origins, dirs, image_loss, chunk=10)  # 64 rays: 7 chunks
    assert image.shape == (1, size, size, 3) and not image.requires_grad
    assert total == pytest.approx(full_total.item(), rel=1e-6)
    assert set(losses) == {"mse", "mean_red"} and all(isinstance(v, float) for v in losses.values())
    for name, p in field.named_parameters():
        scale = full[name].abs().max().item()
        assert scale > 0, name
        torch.testing.assert_close(p.grad, full[name], rtol=1e-5, atol=1e-6 * scale, msg=name)


# --- distortion loss (mip-NeRF 360) -------------------------------------------------------------------------

def double_sum(w, t):
    return (w[:, :, None] * w[:, None, :] * (t[:, :, None] - t[:, None, :]).abs()).sum(dim=(1, 2))


def test_distortion_equals_the_double_sum():
    g = torch.Generator().manual_seed(0)
    w = torch.rand(6, 9, generator=g, dtype=torch.float64)
    t = torch.rand(6, 9, generator=g, dtype=torch.float64).cumsum(dim=1)
    delta = torch.rand(6, 1, generator=g, dtype=torch.float64)
    torch.testing.assert_close(distortion(w, t), double_sum(w, t), rtol=1e-12, atol=0)
    torch.testing.assert_close(distortion(w, t, delta), double_sum(w, t) + (w**2 * delta).sum(1) / 3,
                               rtol=1e-12, atol=0)
    # By hand: two samples of weight 1/2 at t = 1 and 3 -> 2 * (1/4) * 2 = 1.
    assert distortion(torch.tensor([[0.5, 0.5]]), torch.tensor([[1.0, 3.0]])).item() == pytest.approx(1.0)
    # All the weight in one sample: no spread.
    assert distortion(torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([[1.0, 2.0, 3.0]])).item() == 0.0


def test_render_rays_returns_its_samples_on_request():
    def field(x, radius=None):
        inside = (x.abs() <= 1).all(-1).float()
        return FieldOutput(0.7 * inside, torch.ones(x.shape[0], 3))

    # One ray along +X through the cube (near 2, far 4), one that misses it.
    o, d = torch.tensor([[-3.0, 0, 0], [0.0, -5, 3]]), torch.tensor([[1.0, 0, 0], [0.0, 1, 0]])
    plain = render_rays(field, o, d, 4)
    assert plain.weights is None and plain.t is None and plain.delta is None
    out = render_rays(field, o, d, 4, torch.Generator().manual_seed(0), return_samples=True)
    assert out.weights.shape == out.t.shape == (2, 4) and out.delta.shape == (2, 1)
    torch.testing.assert_close(out.weights.sum(dim=1), out.opacity)
    torch.testing.assert_close(out.t[0], torch.tensor([1.25, 1.75, 2.25, 2.75]) + 1)  # bin middles, not jitter
    assert out.delta[0].item() == pytest.approx(0.5)
    assert not out.weights[1].any() and not out.t[1].any() and out.delta[1].item() == 0
    spread = distortion(out.weights, out.t, out.delta)
    assert spread[0] > 0 and spread[1] == 0


# --- NeRF-Art: CLIP style losses with a stub CLIP whose embeddings are chosen by hand -------------

class StubClip:
    """Texts embed to the vector of the word they contain; an image embeds to its mean colour, normalised."""

    image_size = 4
    mean = torch.zeros(3)
    text_limit, text_encoder_label = 75, "a stub CLIP's text tower"

    def __init__(self, words: dict[str, tuple[float, float, float]]):
        self.words = words

    def count_tokens(self, text):
        return len(text.split())

    def encode_text(self, texts):
        return F.normalize(torch.tensor([next(v for w, v in self.words.items() if w in text) for text in texts]),
                           dim=-1)

    def prepare(self, images):
        return F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear")

    def encode_image(self, images):
        return F.normalize(images.mean(dim=(2, 3)), dim=-1)


WORDS = {"plain": (1.0, 0.0, 0.0), "wood": (0.0, 1.0, 0.0), "metal": (0.0, 0.0, 1.0), "glass": (0.6, 0.0, 0.8)}


def flat(colour, size=8):
    return torch.tensor(colour).expand(1, size, size, 3).clone()


def style(**kw):
    return StyleGuidance(StubClip(WORDS), "plain", "wood", ["metal", "glass"], **kw)


def test_info_nce_by_hand():
    # Anchor a = (0, 0.6, 0.8): a.t = 0.6 (wood), a.n = 0.8 (metal), 0.64 (glass).
    losses = style(n_patches=3, patch_fraction=0.5).loss(flat((0.0, 0.6, 0.8)), flat((1.0, 0.0, 0.0)),
                                                         torch.Generator().manual_seed(0))
    tau = 0.07
    pos, negs = math.exp(0.6 / tau), math.exp(0.8 / tau) + math.exp(0.64 / tau)
    assert losses["global_contrastive"].item() == pytest.approx(-math.log(pos / (pos + negs)), rel=1e-5)
    # Every patch of a flat image has the same colour.
    assert losses["local_contrastive"].item() == pytest.approx(losses["global_contrastive"].item(), rel=1e-6)


def test_directional_loss_is_0_along_the_text_direction_and_2_against_it():
    guidance, g = style(), torch.Generator().manual_seed(0)
    red, green = flat((1.0, 0.0, 0.0)), flat((0.0, 1.0, 0.0))
    # Text direction wood - plain = e2 - e1; red embeds to e1, green to e2.
    assert guidance.loss(green, red, g)["directional"].item() == pytest.approx(0.0, abs=1e-6)
    assert guidance.loss(red, green, g)["directional"].item() == pytest.approx(2.0, abs=1e-6)


def test_directional_loss_of_an_unchanged_render_is_1_with_a_finite_gradient():
    stylised = flat((0.3, 0.5, 0.2)).requires_grad_()
    loss = style().loss(stylised, flat((0.3, 0.5, 0.2)), torch.Generator().manual_seed(0))["directional"]
    # Batched and unbatched embeddings differ by rounding (~1e-8), which the 1e-3 floor turns into ~1e-5.
    assert loss.item() == pytest.approx(1.0, abs=1e-4)
    loss.backward()
    assert torch.isfinite(stylised.grad).all() and stylised.grad.abs().sum() > 0


def test_style_guidance_needs_negatives():
    with pytest.raises(ValueError, match="negative"):
        StyleGuidance(StubClip(WORDS), "plain", "wood", [])


def test_style_guidance_on_the_tiny_clip_is_differentiable_and_seeded(tiny_clip):
    guidance = StyleGuidance(tiny_clip, "a photo", "a bronze statue", list(negative_styles_for("a bronze statue")[:4]),
                             n_patches=2, patch_fraction=0.5)
    stylised = torch.rand(1, 32, 32, 3, generator=torch.Generator().manual_seed(0)).requires_grad_()
    source = torch.rand(1, 32, 32, 3, generator=torch.Generator().manual_seed(1))
    losses = guidance.loss(stylised, source, torch.Generator().manual_seed(2))
    assert set(losses) == {"directional", "global_contrastive", "local_contrastive"}
    assert all(v.shape == () and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert stylised.grad.abs().sum() > 0
    again = guidance.loss(stylised, source, torch.Generator().manual_seed(2))
    assert {k: v.item() for k, v in again.items()} == {k: v.item() for k, v in losses.items()}


def test_negative_styles_never_include_the_prompt_itself():
    assert 35 <= len(NEGATIVE_STYLES) <= 50 and len(set(NEGATIVE_STYLES)) == len(NEGATIVE_STYLES)
    for s in NEGATIVE_STYLES:
        assert s not in negative_styles_for(s)
    assert negative_styles_for("Starry Night by Van Gogh") == NEGATIVE_STYLES
    kept = negative_styles_for("a bronze statue")
    assert "a bronze statue" not in kept and {"a stone statue", "a marble sculpture"} <= set(kept)
    assert "a watercolor painting" not in negative_styles_for("a watercolour painting of a fox")
    assert "an oil painting" in negative_styles_for("a watercolour painting of a fox")
    assert "a low-poly render" not in negative_styles_for("low poly")
    # A prompt of only generic words is matched on them.
    assert not any("sculpture" in s for s in negative_styles_for("a sculpture"))


# --- DietNeRF: semantic consistency through the tiny CLIP --------------------------------------

def test_semantic_loss_is_0_for_a_render_equal_to_its_target(tiny_clip):
    targets = torch.rand(3, 24, 24, 3, generator=torch.Generator().manual_seed(0))
    consistency = SemanticConsistency(tiny_clip, targets)
    assert consistency.targets.shape == (3, 64) and not consistency.targets.requires_grad
    assert consistency.loss(targets[1:2], 1)["semantic"].item() == pytest.approx(0.0, abs=1e-6)
    render = targets[0:1].clone().requires_grad_()
    loss = consistency.loss(render, 1)["semantic"]
    assert 0 < loss.item() <= 2
    loss.backward()
    assert render.grad.abs().sum() > 0


# --- perceptual loss through the tiny VGG ------------------------------------------------------

def test_perceptual_loss_is_0_for_identical_images_and_differentiable(tiny_models):
    perceptual = PerceptualLoss(load_perceptual(tiny_models["perceptual"], "cpu", allow_downloads=False))
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 16, 16, 3, generator=g), torch.rand(2, 16, 16, 3, generator=g)
    assert perceptual.loss(a, a)["perceptual"].item() == 0.0
    image = b.clone().requires_grad_()
    loss = perceptual.loss(image, a)["perceptual"]
    assert 0 < loss.item() <= 4 * 4  # four taps, each at most |u - v|^2 = 4 for unit vectors
    loss.backward()
    assert torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0

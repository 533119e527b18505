"""The starter models (engine/models/starter/): shipped, loaded through the real open_clip loading path,
and they know their vocabulary on renders they never saw."""
from __future__ import annotations

import json
import re

import pytest
import torch

from engine.models.clip import load_clip
from engine.models.starter import STARTER_CLIP, STARTER_JUDGE
from engine.models.starter.shapes import CLASSES, COLOURS, caption, render_shape
from engine.models.starter.train import augment


def held_out_accuracy(folder, seed: int, views: int = 2) -> float:
    """Top-1 over all 64 canonical captions, on fresh renders (a seed no training used) over random
    backgrounds, through load_clip as a job would load the model."""
    clip = load_clip(str(folder), "cpu", allow_downloads=False)
    g = torch.Generator().manual_seed(seed)
    images, labels = [], []
    for k, (shape, colour) in enumerate(CLASSES):
        for _ in range(views):
            rgb, alpha = render_shape(shape, colour, 64, g)
            images.append(augment(rgb, alpha, g))
            labels.append(k)
    text = clip.encode_text([caption(s, c) for s, c in CLASSES])
    with torch.no_grad():
        feats = clip.encode_image(clip.prepare(torch.stack(images)))
    return ((feats @ text.T).argmax(-1) == torch.tensor(labels)).float().mean().item()


def card_top1(folder) -> float:
    return float(re.search(r"top-1 ([0-9.]+)", (folder / "MODEL_CARD.md").read_text()).group(1))


@pytest.mark.parametrize("folder", [STARTER_CLIP, STARTER_JUDGE], ids=["clip", "judge"])
def test_starter_models_ship_small_with_a_card_and_know_their_vocabulary(folder):
    assert (folder / "open_clip_model.safetensors").stat().st_size < 15e6
    config = json.loads((folder / "open_clip_config.json").read_text())
    assert config["model_cfg"]["vision_cfg"]["image_size"] == 64
    measured = card_top1(folder)  # what training measured on its held-out renders
    accuracy = held_out_accuracy(folder, seed=4242)
    chance = 1 / len(CLASSES)
    assert accuracy > 10 * chance and accuracy > measured - 0.15, (accuracy, measured)


def test_the_judge_is_not_the_guide():
    a = json.loads((STARTER_CLIP / "open_clip_config.json").read_text())["model_cfg"]
    b = json.loads((STARTER_JUDGE / "open_clip_config.json").read_text())["model_cfg"]
    assert a != b  # another architecture size (and seed, and training renders: engine/models/starter/train.py)
    assert len(COLOURS) >= 8

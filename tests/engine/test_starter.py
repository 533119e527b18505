"""The starter models (engine/models/starter/): shipped, loaded through the real open_clip loading path,
and they know their vocabulary on renders they never saw."""
from __future__ import annotations

import io
import json
import re

import pytest
import torch

from engine.jobs.run import run_job
from engine.models.clip import load_clip
from engine.models.starter import STARTER_CLIP, STARTER_DIFFUSION, STARTER_JUDGE, starter_job
from engine.models.starter.judge import Judge, fog, turntable_images
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
            rgb, alpha, _ = render_shape(shape, colour, 64, g)
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


def test_starter_diffusion_ships_small_and_samples_what_the_judge_names():
    """Loaded by engine.models.load_diffusion (the real models' path) into diffusers' StableDiffusionPipeline:
    one sample per shape-colour combination, named by the judge among all 64 captions."""
    from engine.models.starter.train_diffusion import evaluate

    files = list(STARTER_DIFFUSION.rglob("*.safetensors"))
    assert files and sum(f.stat().st_size for f in files) < 15e6
    measured = card_top1(STARTER_DIFFUSION)
    scores, samples = evaluate(STARTER_DIFFUSION)
    assert samples.shape == (len(CLASSES), 3, 32, 32)
    assert scores["top1"] > 10 * scores["chance"] and scores["top1"] > measured - 0.15, (scores, measured)


# Text guidance that really works: a text method guided by a starter model makes objects that the judge (trained
# apart, never used for guidance) names right among all 64 captions of the vocabulary. The prompts differ in
# shape and in colour. Settings: the benchmark's (bench/bench_text_to_3d.py), smaller and shorter.
GUIDED_PROMPTS = ("a red cube", "a blue torus", "a green cone")


def judged_objects(tmp_path, method: str, job: dict) -> tuple[float, list[float]]:
    """Run `method` on GUIDED_PROMPTS; (share of 8 turntable views the judge names right, fog of each object)."""
    judge = Judge([caption(s, c) for s, c in CLASSES])
    right, fogs = [], []
    for k, prompt in enumerate(GUIDED_PROMPTS):
        job_dir = tmp_path / f"job{k}"
        job_dir.mkdir()
        spec = {"spec_version": 1, "method": method, "prompt": prompt, "seed": 0, "device": "cpu",
                "export": {"resolution": 48, "formats": ["npz"]}, "preview_every": 0, "checkpoint_every": 0, **job}
        (job_dir / "job.json").write_text(json.dumps(spec))
        assert run_job(job_dir, False, io.StringIO()) == 0, (job_dir / "log.txt").read_text()[-2000:]
        images, opacity = turntable_images(job_dir, views=8, size=64)
        right += [judge.captions[i] == prompt for i in judge.pick(images)]
        fogs.append(fog(opacity))
    return sum(right) / len(right), fogs


def test_dream_fields_with_the_starter_clip_makes_objects_the_judge_names(tmp_path):
    # Measured (2026-11-30, 1 CPU thread, 212 s): all 24 views named right; fog 0.50, 0.56, 0.15.
    accuracy, fogs = judged_objects(tmp_path, "dream_fields",
                                    {**starter_job("dream_fields"), "steps": 150, "render": {"size": 40}})
    assert accuracy >= 0.75, (accuracy, fogs)
    # Objects, not clouds: renders of the true shapes score 0.03 (judge.fog), a cloud filling the view near 1.
    assert max(fogs) < 0.7, fogs


def test_dreamfusion_with_the_starter_diffusion_makes_objects_the_judge_names(tmp_path):
    # Measured (2026-11-30, 1 CPU thread, 91 s): 19 of 24 views named right; fog 0.10, 0.06, 0.08. The starter
    # model's own cameras, its 32 px images, the paper's guidance scale 100. On 1 thread, because the run is
    # only reproducible at a fixed thread count: on 2 threads (other float summation orders) the same test
    # measured 7 of 24, "a green cone" filling its cube (fog 0.66). On the benchmark's 16 prompts some runs
    # fill the cube, empty or diverge (docs/BENCHMARKS.md).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        accuracy, fogs = judged_objects(tmp_path, "dreamfusion",
                                        {**starter_job("dreamfusion"), "steps": 200, "render": {"size": 32}})
    finally:
        torch.set_num_threads(threads)
    assert accuracy >= 0.55, (accuracy, fogs)
    assert max(fogs) < 0.3, fogs

"""Starter models: small models trained here on renders of simple shapes in plain colours, shipped in the
repository, so that the offline demo makes its prompt's object and tests can check that text guidance works.

They know only their vocabulary (vocabulary.py: SHAPES x COLOURS, in its PHRASINGS) and nothing else. They load
through exactly the code paths of the real models (engine.models.load_clip, engine.models.load_diffusion).

- vocabulary.py: the words, the training cameras, the demo's prompt (torch-free).
- shapes.py: the shapes as signed distance functions, and their renders (the engine's own volume renderer,
  albedo as Dream Fields renders it, or lambertian-shaded).
- train.py: `python -m engine.models.starter.train clip|judge`: renders the data, trains, evaluates on
  held-out views, writes the folder (open_clip_config.json, open_clip_model.safetensors, MODEL_CARD.md).
- train_diffusion.py: `python -m engine.models.starter.train_diffusion`: the same for a small latent diffusion
  model in Stable Diffusion's architecture (a diffusers pipeline folder), for DreamFusion.
- train_decoder.py: `python -m engine.models.starter.train_decoder`: EG3D's tri-plane decoder trained over the
  shapes in random colours, the decoder latent editing starts from.
- judge.py: turntables of a finished job and the judge's verdict on them (bench/bench_text_to_3d.py, tests).
"""
from pathlib import Path

STARTER_DIR = Path(__file__).resolve().parent
STARTER_CLIP = STARTER_DIR / "clip"
"""Dream Fields' guidance: an open_clip folder."""
STARTER_JUDGE = STARTER_DIR / "judge"
"""The judge: trained apart (another seed, other renders, another size), for evaluation only."""
STARTER_DIFFUSION = STARTER_DIR / "diffusion"
"""DreamFusion's guidance: a diffusers pipeline folder (Stable Diffusion's architecture, small)."""
STARTER_DECODER = STARTER_DIR / "triplane_decoder"
"""Latent editing's tri-plane decoder, trained over many shapes and colours (train_decoder.py)."""


def starter_job(method: str) -> dict:
    """job.json keys that make a text method use the starter models: Dream Fields the starter CLIP; DreamFusion
    the starter diffusion model, with its training cameras' distances and fields of view (farther and narrower
    than DreamFusion's defaults, which are made for Stable Diffusion's framing). ValueError for another method."""
    from .vocabulary import CAMERAS

    if method == "dream_fields":
        return {"models": {"clip": str(STARTER_CLIP)}}
    if method == "dreamfusion":
        return {"models": {"diffusion": str(STARTER_DIFFUSION)},
                "orbit": {"radius": list(CAMERAS["radius"]), "fov_deg": list(CAMERAS["fov_deg"])}}
    raise ValueError(f"no starter model guides {method!r}: only dream_fields and dreamfusion")

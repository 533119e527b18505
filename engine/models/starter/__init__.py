"""Starter models: a small CLIP trained here on renders of simple shapes in plain colours, shipped in the
repository, so that the offline demo makes its prompt's object and tests can check that text guidance works.

They know only their vocabulary (SHAPES x COLOURS, in the PHRASINGS below) and nothing else. They load
through exactly the code path of real open_clip models (a local open_clip folder: engine.models.load_clip).

- shapes.py: the vocabulary, the shapes as signed distance functions, and the renders (the engine's own
  volume renderer, albedo as Dream Fields renders it, or lambertian-shaded).
- train.py: `python -m engine.models.starter.train clip|judge`: renders the data, trains, evaluates on
  held-out views, writes the folder (open_clip_config.json, open_clip_model.safetensors, MODEL_CARD.md).
"""
from pathlib import Path

STARTER_DIR = Path(__file__).resolve().parent
STARTER_CLIP = STARTER_DIR / "clip"
"""The guidance model: an open_clip folder."""
STARTER_JUDGE = STARTER_DIR / "judge"
"""The judge: trained apart (another seed, other renders, another size), for evaluation only."""

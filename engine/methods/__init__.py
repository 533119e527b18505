"""Methods: each file is the composition root of one published method.

A method module provides:
- `make_field(spec) -> Field`: the field alone (for `render` and `export` from a checkpoint).
- `build(spec, device) -> method object` with attributes `field`, `modules` (name -> module,
  what checkpoints hold), `optimizer`, and methods `learning_rate(step)`, `weights(step)`
  (loss name -> weight) and `step(step, generator) -> StepOutput` (named, unweighted
  losses plus float metrics). The run loop (engine/jobs/run.py) does the rest.
"""
from . import dietnerf, dream_fields, dreamfusion, nerf_art, reconstruct
from .base import StepOutput

METHODS = {
    "dream_fields": dream_fields,
    "dreamfusion": dreamfusion,
    "reconstruct": reconstruct,
    "dietnerf": dietnerf,
    "nerf_art": nerf_art,
}

__all__ = ["METHODS", "StepOutput"]

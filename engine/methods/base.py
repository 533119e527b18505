"""What a method's step returns to the run loop."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class StepOutput:
    losses: dict[str, torch.Tensor]
    """Named, unweighted scalar losses; engine.jobs.losses.weighted_total sums them."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Numbers worth watching that are not losses (e.g. mean transmittance)."""


def exponential_ramp(step: int, steps: int, start: float, end: float) -> float:
    """start -> end geometrically over `steps` steps, then end."""
    if steps <= 0 or step >= steps:
        return end
    return start * (end / start) ** (step / steps)

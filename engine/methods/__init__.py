"""The methods this engine runs: one package each (engine/methods/NAME/), registered here by one line.

Torch-free: job validation (engine/spec.py), `python -m engine --help` and the add-on read the
cards; the composition roots (method.py, torch) are imported only when a job runs or a checkpoint
is rendered (`composition_root`). docs/ARCHITECTURE.md, "Adding a method".
"""
from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import invalid_job
from ..models.registry import DEFAULT_MODELS
from .base import Method, MethodCard, Phase, Quality, Scene, StepOutput

REGISTERED = (
    "dream_fields",
    "dreamfusion",
    "nerf_art",
    "reconstruct",
    "dietnerf",
    "latent_edit",
)
"""The method packages of this engine (engine/methods/NAME/), in menu order: adding a method is one line here."""

CARDS: dict[str, MethodCard] = {}
"""Method name -> card, in menu order. Filled by register() only."""

# Named in the design, arriving in later engine versions: a job naming one gets a clear error.
PLANNED_METHODS: tuple[str, ...] = ()


def register(card: MethodCard) -> MethodCard:
    """Add a method; its name must be new. Returns the card."""
    card.validate()
    if card.name in CARDS:
        raise ValueError(f"method {card.name!r} is registered twice")
    CARDS[card.name] = card
    return card


def unregister(name: str) -> None:
    """Remove a method (tests that register a throwaway one)."""
    del CARDS[name]


for _package in REGISTERED:
    register(importlib.import_module(f"{__name__}.{_package}").CARD)


def get_card(name: str) -> MethodCard:
    """The card of method `name`; invalid_job naming the method when there is none."""
    if name not in CARDS:
        why = "is planned but not in this engine version" if name in PLANNED_METHODS else "is not a known method"
        raise invalid_job("method", name, why, hint=f"available methods: {sorted(CARDS)}")
    return CARDS[name]


def model_name(spec, role: str) -> str:
    """The model a job uses for `role`: job.json `models`, else the method card's default for the role, else
    the role's default (engine/models/registry.py)."""
    return spec.models.get(role) or get_card(spec.method).roles.get(role) or DEFAULT_MODELS[role]


def composition_root(card: MethodCard) -> ModuleType:
    """The module with the method's build(spec, device) and make_scene(spec, representation) (imports torch)."""
    module = card.composition_root or f"{__name__}.{card.name}.method"
    return importlib.import_module(module)


__all__ = ["CARDS", "PLANNED_METHODS", "Method", "MethodCard", "Phase", "Quality", "Scene", "StepOutput",
           "composition_root", "get_card", "model_name", "register", "unregister"]

"""Negative styles for NeRF-Art's contrastive losses: what a restyled object should not look like.

Written for Text3D: art styles, media and materials that are far apart in CLIP space, so the
InfoNCE pushes the render towards its own style and away from the generic alternatives.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

NEGATIVE_STYLES = (
    "a watercolor painting",
    "an oil painting",
    "a pencil sketch",
    "a charcoal drawing",
    "a pastel drawing",
    "a crayon drawing",
    "an ink wash painting",
    "a chalk drawing on a blackboard",
    "a comic book illustration",
    "an anime drawing",
    "a cartoon",
    "a pixel art sprite",
    "a low-poly render",
    "a voxel model",
    "a cubist painting",
    "an impressionist painting",
    "a pointillist painting",
    "a pop art print",
    "a ukiyo-e woodblock print",
    "a graffiti mural",
    "a stained glass window",
    "a mosaic of ceramic tiles",
    "a cross-stitch embroidery",
    "a neon sign",
    "a blueprint",
    "a black and white photograph",
    "a thermal camera image",
    "a bronze statue",
    "a marble sculpture",
    "a stone statue",
    "a gold statue",
    "an ice sculpture",
    "a sand sculpture",
    "a wooden carving",
    "a clay figurine",
    "a porcelain figurine",
    "a glass sculpture",
    "a chrome metal object",
    "a rusty iron object",
    "a plastic toy",
    "a knitted wool toy",
    "a paper origami model",
    "a lego brick model",
)

# Words that say nothing about which style is meant.
_STOPWORDS = frozenset("a an the of in on at with and or by from for to as like made style styled".split())
# Words naming a kind of picture or object rather than the style itself: "an oil painting" and "a
# watercolor painting" are different styles.
_FORMS = frozenset("""painting paintings drawing drawings sketch render rendering image picture photo photograph
    illustration print art artwork statue sculpture figurine figure model object toy""".split())


def negative_styles_for(prompt: str, styles: Sequence[str] = NEGATIVE_STYLES) -> tuple[str, ...]:
    """The styles that share no content word with `prompt`, in their order, so the target style is
    never its own negative.

    Content words leave out articles and the like, and the generic _FORMS, except for a prompt
    made only of those ("a sculpture"), which is matched on them against all of a style's words.
    Words match when equal up to a final "s" or when both have the same first five letters
    ("watercolour" and "watercolor", "marbled" and "marble").
    """
    wanted = _words(prompt) - _FORMS
    generic = not wanted
    if generic:
        wanted = _words(prompt)

    def clashes(style: str) -> bool:
        words = _words(style) if generic else _words(style) - _FORMS
        return any(_same_word(a, b) for a in words for b in wanted)

    return tuple(style for style in styles if not clashes(style))


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 1 and w not in _STOPWORDS}


def _same_word(a: str, b: str) -> bool:
    if a.removesuffix("s") == b.removesuffix("s"):
        return True
    return len(a) >= 5 and len(b) >= 5 and a[:5] == b[:5]

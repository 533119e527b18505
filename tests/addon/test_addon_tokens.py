"""The panel's token count: CLIP's BPE in plain Python (blender_text3d/tokens.py) against open_clip's
tokenizer in the engine's environment, the estimate without a vocabulary, and the panel's rows.
The comparison runs open_clip in the real engine Python (a subprocess), so it runs under the Blender
venv too; without an engine Python it fails, as the end-to-end tests do."""
from __future__ import annotations

import json
import subprocess

import pytest

from blender_text3d import tokens

try:  # the add-on's suite runs in Blender's Python; the count tests also run in the engine's (open_clip there)
    import bpy
except ImportError:
    bpy = None

# 78 CLIP BPE tokens (shared/cases/long_prompt/prompt.txt).
LONG = ("a highly detailed ornate antique brass pocket watch with an engraved floral pattern on its lid, a cracked "
        "glass face, roman numerals, thin blued steel hands, a short braided chain attached to the crown, resting on "
        "its side, photorealistic, studio lighting, sharp focus, intricate mechanical details visible through a "
        "small window in the dial, warm golden reflections, 8k, trending on artstation")
PROMPTS = [
    LONG,
    "a red chair",
    "A DSLR photo of a corgi's hat, 4K, trending on ArtStation!!",
    "don't   stop -- 3.14159 + 2_000 items...",
    "we'll say they've, I'm sure you'd: he's 'quoted' it's",
    "a 1920s Art-Deco lamp (brass & glass) #3; 50% off?",
    "an F-16 jet, 3D render, octane, 8K UHD, HDR, ultra-realistic",
    "a&amp;b &lt;tag&gt; under_score__x",
    "a photo of a Sphinx... with \"wings\" / horns @ night",
    "it’s a “quoted” cat",  # typographic quotes: straightened as ftfy does
    "supercalifragilisticexpialidocious pneumonoultramicroscopic",
    "   leading and trailing\tspaces\n",
    "<start_of_text> hi <end_of_text>",
]

OPEN_CLIP_COUNTS = """
import json, sys
from open_clip.tokenizer import SimpleTokenizer
tokenizer = SimpleTokenizer()
print(json.dumps([len(tokenizer.encode(text)) for text in json.load(sys.stdin)]))
"""


def test_the_count_is_open_clips_and_the_vocabulary_is_found_in_the_engine_environment(engine_python):
    out = subprocess.run([engine_python, "-c", OPEN_CLIP_COUNTS], input=json.dumps(PROMPTS), capture_output=True,
                         text=True, timeout=120, check=True)
    expected = json.loads(out.stdout)
    assert expected[0] == 78 and expected[1] == 3
    assert tokens.vocabulary_path(engine_python) is not None
    counts = [tokens.count(text, engine_python) for text in PROMPTS]
    assert all(c.exact for c in counts)
    assert [c.tokens for c in counts] == expected


def test_a_prompt_over_75_tokens_is_flagged_with_the_words_dropped(engine_python):
    count = tokens.count(LONG, engine_python)
    assert count.over and count.label == "78/75 tokens" and count.dropped == "on artstation"
    assert "77 tokens" in count.warning and "'on artstation'" in count.warning
    fits = tokens.count("a red chair", engine_python)
    assert not fits.over and fits.dropped == "" and fits.warning == "" and fits.label == "3/75 tokens"
    # 75 tokens exactly fit; one more word does not.
    start = LONG[:LONG.index(", 8k, trending")] + ", 8k, trending"
    assert tokens.count(start, engine_python).tokens == 75 and not tokens.count(start, engine_python).over
    assert tokens.count(start + " on", engine_python).over


def test_without_a_vocabulary_the_count_is_an_estimate_marked_as_such(tmp_path, engine_python):
    missing = tmp_path / "venv" / "bin" / "python"
    assert tokens.vocabulary_path(missing) is None and tokens.vocabulary_path(None) is None
    count = tokens.count(LONG, missing)
    assert not count.exact and count.label.startswith("≈") and count.over and count.dropped
    assert tokens.count("a red chair", missing).label == "≈3/75 tokens"
    # Words and punctuation are split exactly, only the merges are guessed: within 15% on English prompts.
    for text in (LONG, PROMPTS[2], PROMPTS[6]):
        guess, exact = tokens.count(text, missing).tokens, tokens.count(text, engine_python).tokens
        assert abs(guess - exact) <= 0.15 * exact, (text, guess, exact)


def test_a_vocabulary_in_a_venv_layout_is_found(tmp_path, engine_python):
    real = tokens.vocabulary_path(engine_python)
    for packages in ("lib/python3.11/site-packages", "Lib/site-packages"):
        env = tmp_path / packages.split("/")[0]
        folder = env / packages / "open_clip"
        folder.mkdir(parents=True)
        (folder / tokens.VOCABULARY).write_bytes(real.read_bytes())
        python = env / ("Scripts/python.exe" if packages.startswith("Lib") else "bin/python")
        assert tokens.vocabulary_path(python) == folder / tokens.VOCABULARY


@pytest.mark.skipif(bpy is None, reason="the panel needs Blender's bpy module")
@pytest.mark.parametrize("method", ["dreamfusion", "dream_fields"])
def test_the_panel_shows_the_count_and_warns_over_the_limit(scene, engine_python, method, tmp_path):
    from test_addon_ui import draw_panel

    from blender_text3d import props, ui

    s, prefs = scene.text3d, props.preferences()
    try:
        prefs.engine_python = engine_python
        s.method, s.prompt = method, "a red chair"
        texts = draw_panel(ui.VIEW3D_PT_text3d, bpy.context).texts
        assert "3/75 tokens" in texts and not any("77 tokens" in t for t in texts)
        s.prompt = LONG
        texts = draw_panel(ui.VIEW3D_PT_text3d, bpy.context).texts
        assert "78/75 tokens" in texts
        warning = " ".join(texts[texts.index("78/75 tokens") + 1:])
        assert warning.startswith("Longer than the text encoders' 77 tokens") and "'on artstation'" in warning
        prefs.engine_python = str(tmp_path / "no" / "bin" / "python")
        assert "≈78/75 tokens" in draw_panel(ui.VIEW3D_PT_text3d, bpy.context).texts
    finally:
        prefs.property_unset("engine_python")
        for key in ("prompt", "method"):
            s.property_unset(key)

"""Texts longer than a text encoder's 77 tokens: shortened by words from their end so that what the
method appends (DreamFusion's view suffix, NeRF-Art's templates) survives, with one warning."""
import json
import logging

import pytest
import torch

from engine.cameras import orbit_views
from engine.guidance.clip_similarity import ClipSimilarity
from engine.guidance.clip_style import StyleGuidance
from engine.guidance.sds import VIEW_SUFFIXES, ScoreDistillation, view_prompt
from engine.models import load_clip, load_diffusion
from engine.prompts import fit_text, shown
from conftest import engine, read_events, write_job
from test_dreamfusion import TINY_DF_OPTIONS

# 78 CLIP BPE tokens on its own (shared/cases/long_prompt/prompt.txt): ", front view" does not fit.
LONG = ("a highly detailed ornate antique brass pocket watch with an engraved floral pattern on its lid, a cracked "
        "glass face, roman numerals, thin blued steel hands, a short braided chain attached to the crown, resting on "
        "its side, photorealistic, studio lighting, sharp focus, intricate mechanical details visible through a "
        "small window in the dial, warm golden reflections, 8k, trending on artstation")
SUFFIX_FORMS = [lambda p, s=s: p + s for s in VIEW_SUFFIXES.values()]
VIEWS = {"front": (0.0, 10.0), "side": (90.0, 10.0), "back": (180.0, 10.0), "overhead": (0.0, 80.0)}


@pytest.fixture
def warnings():
    """The warning messages logged under engine.prompts during the test (a handler of its own: the run
    loop's setup_logging stops engine.* records from reaching pytest's caplog)."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("engine.prompts")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def words(text: str) -> int:
    return len(text.split())


def test_a_text_that_fits_is_kept_as_it_is():
    fitted = fit_text("a red chair, 4k", words, 4)
    assert (fitted.text, fitted.dropped, fitted.tokens, fitted.shortened) == ("a red chair, 4k", "", 4, False)


def test_words_are_dropped_from_the_end_until_every_form_fits():
    # Counting words: "... , overhead view" adds 2, so 8 - 2 = 6 words of the text are kept.
    text = "one two three four five six, seven eight nine ten"
    fitted = fit_text(text, words, 8, [lambda p: p + ", side view", lambda p: p + ", front view"])
    assert fitted.text == "one two three four five six"  # the comma after "six" goes too
    assert fitted.dropped == "seven eight nine ten"
    assert fitted.tokens == 12 and fitted.limit == 8 and fitted.shortened


def test_a_first_word_too_long_alone_is_cut_by_characters():
    fitted = fit_text("abcdefghij klm", len, 4)
    assert (fitted.text, fitted.dropped) == ("abcd", "efghij klm")


def test_forms_over_the_limit_on_their_own_leave_nothing():
    fitted = fit_text("a chair", words, 2, [lambda p: f"{p} in a template of many words"])
    assert (fitted.text, fitted.dropped) == ("", "a chair")


def test_clip_bpe_keeps_the_view_suffix_of_the_case_prompt():
    """With the real CLIP BPE (open_clip's bundled vocabulary): 78 tokens, 81 with a suffix; the longest start
    whose four view prompts fit in 75 ends at "reflections", and one more word would not fit."""
    from open_clip.tokenizer import SimpleTokenizer

    bpe = SimpleTokenizer()

    def count(text):
        return len(bpe.encode(text))

    assert count(LONG) == 78
    fitted = fit_text(LONG, count, 75, SUFFIX_FORMS)
    assert fitted.text.endswith("warm golden reflections") and fitted.dropped == "8k, trending on artstation"
    assert fitted.tokens == 81
    assert all(count(form(fitted.text)) <= 75 for form in SUFFIX_FORMS)
    one_more = LONG[:LONG.index(", 8k") + len(", 8k")]
    assert count(one_more + VIEW_SUFFIXES["front"]) == 76


@pytest.fixture(scope="module")
def tiny_sd(tiny_models):
    return load_diffusion(tiny_models["diffusion"], "cpu", torch.float32, allow_downloads=False)


@pytest.fixture(scope="module")
def tiny_clip(tiny_models):
    return load_clip(tiny_models["clip"], "cpu", allow_downloads=False)


def unet_conditioning(sds: ScoreDistillation) -> torch.Tensor:
    """(4, 77, C) the text conditioning the UNet receives for the front, side, back and overhead views."""
    seen = []
    hook = sds.models.unet.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["encoder_hidden_states"].detach().clone()), with_kwargs=True)
    az, el = torch.tensor([v[0] for v in VIEWS.values()]), torch.tensor([v[1] for v in VIEWS.values()])
    try:
        sds.loss(torch.full((4, 16, 16, 3), 0.5), orbit_views(az, el, 3.0, 40.0), torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    return seen[-1][4:]  # [unconditional; conditional]


def test_a_long_prompt_keeps_every_view_suffix_and_warns_once(tiny_sd, warnings):
    tok = tiny_sd.tokenizer
    # The tiny tokenizer is CLIP's byte alphabet without merges: the prompt is far over 75 tokens.
    assert tiny_sd.count_tokens(LONG) > 300 and tiny_sd.text_limit == 75
    sds = ScoreDistillation(tiny_sd, LONG)
    assert LONG.startswith(sds.prompt) and len(sds.prompt) < len(LONG)
    for name, (az, el) in VIEWS.items():
        ids = tok(view_prompt(sds.prompt, az, el), truncation=True, max_length=tok.model_max_length).input_ids
        kept = tok.decode(ids, skip_special_tokens=True)
        assert kept.replace(" ", "").endswith(VIEW_SUFFIXES[name].replace(" ", "")), (name, kept)
    cond = unet_conditioning(sds)
    assert all(not torch.equal(cond[i], cond[j]) for i in range(4) for j in range(i + 1, 4))
    assert len(warnings) == 1
    message = warnings[0]
    dropped = LONG[len(sds.prompt):].strip(" ,")
    assert message.startswith("prompt is ") and "77" in message and "tokens" in message
    assert repr(shown(dropped)) in message and "kept the view suffixes" in message
    assert "trending on artstation" in dropped


def test_a_short_prompt_is_unchanged_without_a_warning(tiny_sd, warnings):
    sds = ScoreDistillation(tiny_sd, "a fox", negative_prompt="blurry")
    assert (sds.prompt, sds.negative_prompt) == ("a fox", "blurry")
    cond = unet_conditioning(sds)
    assert torch.equal(cond[0], sds.embed("a fox, front view"))
    assert warnings == []


def test_a_long_negative_prompt_is_cut_with_a_warning_naming_it(tiny_sd, warnings):
    negative = "blurry, " + ", ".join(["low quality"] * 20) + ", watermark"
    sds = ScoreDistillation(tiny_sd, "a fox", negative_prompt=negative)
    assert sds.prompt == "a fox" and negative.startswith(sds.negative_prompt)
    assert tiny_sd.count_tokens(sds.negative_prompt) <= 75 < tiny_sd.count_tokens(negative)
    assert len(warnings) == 1 and warnings[0].startswith("negative_prompt is ")
    assert "watermark" in warnings[0] and tiny_sd.name in warnings[0]


def test_a_long_clip_prompt_is_cut_with_a_warning(tiny_clip, warnings):
    guidance = ClipSimilarity(tiny_clip, LONG, n_augments=1)
    assert tiny_clip.count_tokens(guidance.prompt) <= 75 < tiny_clip.count_tokens(LONG)
    assert guidance.prompt.endswith("warm golden reflections, 8k, trending")  # 75 of the 78 CLIP BPE tokens
    assert len(warnings) == 1 and warnings[0].startswith("prompt is 80 tokens")
    assert "dropped 'on artstation' from its end" in warnings[0] and "CLIP model" in warnings[0]
    with torch.no_grad():
        assert torch.allclose(guidance.text, tiny_clip.encode_text([guidance.prompt]))


def test_a_long_style_prompt_is_fitted_to_nerf_arts_templates_with_a_warning(tiny_clip, warnings):
    StyleGuidance(tiny_clip, "a photo", LONG, ["a watercolor painting"])
    assert len(warnings) == 1 and warnings[0].startswith("style prompt is ")
    assert "NeRF-Art's templates" in warnings[0] and "trending on artstation" in warnings[0]
    warnings.clear()
    StyleGuidance(tiny_clip, LONG, "a bronze statue", [LONG])
    assert [w.split(" is ")[0] for w in warnings] == [
        "NeRF-Art's source text (options.source_text)", f"negative style {shown(LONG, 40)!r}"]
    assert shown(LONG, 40) == "a highly detailed ornate ... artstation"  # whole words either side


def test_the_job_warns_once_in_its_log_and_events(tmp_path, tiny_models):
    job = write_job(tmp_path / "job", {"diffusion": tiny_models["diffusion"]}, method="dreamfusion", prompt=LONG,
                    steps=1, render={"size": 16, "samples_per_ray": 8}, export={"resolution": 16, "texture_size": 0})
    spec = json.loads((job / "job.json").read_text())
    (job / "job.json").write_text(json.dumps({**spec, "options": TINY_DF_OPTIONS}))
    out = engine("run", job)
    assert out.returncode == 0, out.stderr[-3000:]
    events = read_events(job)
    warned = [e["message"] for e in events if e["event"] == "log" and e["level"] == "warning"]
    assert len(warned) == 1 and "tokens" in warned[0] and "trending on artstation" in warned[0]
    assert "kept the view suffixes" in warned[0]
    assert [e["event"] for e in events].index("started") < [e.get("message") for e in events].index(warned[0])
    assert (job / "log.txt").read_text().count("kept the view suffixes") == 1

"""job.json validation: every bad input names its key; good input gets documented defaults."""
import copy
import json

import pytest

from engine.errors import EngineError
from engine.spec import load_job, parse_job

GOOD = {"spec_version": 1, "method": "dream_fields", "prompt": "a red chair"}


def with_(path: str, value):
    """GOOD with the dotted key set (or removed when value is DELETE)."""
    job = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = job
    for p in parents:
        node = node.setdefault(p, {})
    if value is DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return job


DELETE = object()

BAD = [
    # (job, error kind, key the message must name)
    (with_("spec_version", 2), "spec_version"),
    (with_("spec_version", "1"), "spec_version"),
    (with_("spec_version", DELETE), "spec_version"),
    (with_("method", DELETE), "method"),
    (with_("method", "nerf_magic"), "method"),
    ({"spec_version": 1, "method": "latent_edit", "prompt": "x"}, "inputs.capture"),  # a capture method
    ({"spec_version": 1, "method": "latent_edit", "inputs": {"capture": "/c"}}, "prompt"),
    ({"spec_version": 1, "method": "latent_edit", "prompt": "x", "inputs": {"capture": "/c"},
      "options": {"field": {"backbone": "hashgrid"}}}, "options.field.backbone"),  # it edits tri-planes
    ({"spec_version": 1, "method": "latent_edit", "prompt": "x", "inputs": {"capture": "/c"},
      "options": {"keep_original": -1}}, "options.keep_original"),
    ({"spec_version": 1, "method": "reconstruct", "inputs": {"capture": "/c"},
      "options": {"field": {"backbone": "triplane", "triplane_resolution": 2}}}, "options.field.triplane_resolution"),
    (with_("inputs.capture", "/some/capture"), "inputs"),  # a text method takes no capture
    ({"spec_version": 1, "method": "reconstruct"}, "inputs.capture"),
    ({"spec_version": 1, "method": "nerf_art", "inputs": {"capture": "/c"}}, "prompt"),
    ({"spec_version": 1, "method": "reconstruct", "inputs": {"capture": "/c", "source_job": "/j"}}, "inputs.source_job"),
    ({"spec_version": 1, "method": "reconstruct", "inputs": {"capture": ""}}, "inputs.capture"),
    ({"spec_version": 1, "method": "dietnerf", "inputs": {"capture": "/c"}, "options": {"semantic_every": 0}},
     "options.semantic_every"),
    ({"spec_version": 1, "method": "nerf_art", "prompt": "x", "inputs": {"capture": "/c"},
      "options": {"negative_styles": ["ok", " "]}}, "options.negative_styles[1]"),
    (with_("prompt", ""), "prompt"),
    (with_("prompt", "   "), "prompt"),
    (with_("prompt", 3), "prompt"),
    (with_("colour", "red"), "colour"),
    (with_("seed", -1), "seed"),
    (with_("seed", 1.5), "seed"),
    (with_("seed", True), "seed"),
    (with_("steps", 0), "steps"),
    (with_("steps", -10), "steps"),
    (with_("steps", "100"), "steps"),
    (with_("device", "gpu"), "device"),
    (with_("render.size", 90), "render.size"),
    (with_("render.size", 0), "render.size"),
    (with_("render.samples_per_ray", 2), "render.samples_per_ray"),
    (with_("render.quality", "high"), "render.quality"),
    (with_("render", [64]), "render"),
    (with_("orbit.radius", [5.0, 3.0]), "orbit.radius"),
    (with_("orbit.radius", [1.0, 3.0]), "orbit.radius"),
    (with_("orbit.radius", [3.0]), "orbit.radius"),
    (with_("orbit.elevation_deg", [10, 100]), "orbit.elevation_deg"),
    (with_("orbit.elevation_deg", [50, 10]), "orbit.elevation_deg"),
    (with_("orbit.azimuth_deg", [0, 720]), "orbit.azimuth_deg"),
    (with_("orbit.fov_deg", [40, 20]), "orbit.fov_deg"),
    (with_("orbit.fov_deg", [0, 20]), "orbit.fov_deg"),
    (with_("orbit.look_at", [0, 0]), "orbit.look_at"),
    (with_("orbit.look_at", [0, 0, "x"]), "orbit.look_at[2]"),
    (with_("orbit.radius", [3.0, float("nan")]), "orbit.radius[1]"),
    (with_("models", "ViT-B-16"), "models"),
    (with_("models.vision", "ViT-B-16/openai"), "models.vision"),
    (with_("models.clip", ""), "models.clip"),
    (with_("allow_downloads", "yes"), "allow_downloads"),
    (with_("export.resolution", 8), "export.resolution"),
    (with_("export.threshold", "high"), "export.threshold"),
    (with_("export.threshold", -1), "export.threshold"),
    (with_("export.texture_size", 10), "export.texture_size"),
    (with_("export.formats", ["obj"]), "export.formats"),
    (with_("export.formats", ["glb"]), "export.formats"),
    (with_("preview_every", -1), "preview_every"),
    (with_("checkpoint_every", 2.5), "checkpoint_every"),
    (with_("budget_s", 0), "budget_s"),
    (with_("budget_s", -30), "budget_s"),
    (with_("budget_s", "300"), "budget_s"),
    (with_("budget_s", True), "budget_s"),
    (with_("budget_s", float("inf")), "budget_s"),
    (with_("options.lr", 5.0), "options.lr"),
    (with_("options.field", "voxels"), "options.field"),
    (with_("options.n_augmentations", 8), "options.n_augmentations"),
    (with_("options.transmittance_target", [0.9, 0.4]), "options.transmittance_target"),
    (with_("inputs.images", "x"), "inputs.images"),
]


@pytest.mark.parametrize("job,key", BAD, ids=[k for _, k in BAD])
def test_bad_job_is_invalid_job_naming_the_key(job, key):
    with pytest.raises(EngineError) as err:
        parse_job(job)
    assert err.value.kind == "invalid_job"
    assert err.value.exit_code == 2
    assert err.value.message.startswith(key + ":") or err.value.message.startswith(key + " "), err.value.message
    assert err.value.hint


def test_defaults_follow_the_method():
    spec = parse_job(GOOD)
    assert spec.method == "dream_fields" and spec.steps == 10000
    assert spec.render.size == 88
    assert spec.orbit.azimuth_deg == (0.0, 360.0)  # Dream Fields: all around
    assert spec.orbit.look_at == (0.0, 0.0, 0.0)
    assert spec.export.threshold == "auto" and spec.export.formats == ("npz", "glb")
    assert spec.allow_downloads is False and spec.device == "auto"
    assert spec.options.transmittance_target == (0.4, 0.88)


def test_values_are_read_and_ints_accepted_as_floats():
    spec = parse_job({**GOOD, "orbit": {"radius": [3, 5], "look_at": [1, 2, 3]}, "export": {"threshold": 5},
                      "options": {"lr": 0.01, "field": "mlp"}, "models": {"clip": "/models/clip"}})
    assert spec.orbit.radius == (3.0, 5.0) and spec.orbit.look_at == (1.0, 2.0, 3.0)
    assert spec.export.threshold == 5.0 and spec.options.field.backbone == "mlp" and spec.options.lr == 0.01
    assert spec.models == {"clip": "/models/clip"}
    assert json.loads(json.dumps(spec.to_dict()))["orbit"]["radius"] == [3.0, 5.0]


def test_budget_is_seconds_or_null_and_in_the_resolved_job():
    assert parse_job(GOOD).budget_s is None and parse_job(GOOD).to_dict()["budget_s"] is None
    assert parse_job({**GOOD, "budget_s": None}).budget_s is None
    spec = parse_job({**GOOD, "budget_s": 300})
    assert spec.budget_s == 300.0 and isinstance(spec.budget_s, float)
    assert json.loads(json.dumps(spec.to_dict()))["budget_s"] == 300.0
    with pytest.raises(EngineError) as err:
        parse_job({**GOOD, "budget_s": 0})
    assert "budget_s: must be a number of seconds > 0, or null" in err.value.message


def test_load_job_reports_missing_file_and_bad_json(tmp_path):
    with pytest.raises(EngineError, match="no job.json"):
        load_job(tmp_path)
    (tmp_path / "job.json").write_text("{not json")
    with pytest.raises(EngineError, match="not valid JSON") as err:
        load_job(tmp_path)
    assert err.value.kind == "invalid_job"


def test_spec_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, engine.spec; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_card_has_a_composition_root_with_build_and_make_scene():
    from engine.methods import CARDS, composition_root

    assert set(CARDS) == {"dream_fields", "dreamfusion", "reconstruct", "dietnerf", "nerf_art", "latent_edit"}
    for card in CARDS.values():
        root = composition_root(card)
        assert callable(root.build) and callable(root.make_scene), card.name


def test_nested_option_sections_and_the_old_flat_keys():
    from engine.spec import parse_job

    def options(method, opts, **extra):
        return parse_job({"spec_version": 1, "method": method, "prompt": "x", "options": opts, **extra}).options

    nested = options("dream_fields", {"field": {"backbone": "mlp", "mlp_width": 32}, "occupancy": {"resolution": 0}})
    flat = options("dream_fields", {"field": "mlp", "mlp_width": 32, "occupancy_resolution": 0})
    assert nested == flat and nested.field.backbone == "mlp" and nested.occupancy.resolution == 0
    # Unset keys of a nested section keep the method's defaults (Dream Fields: 8 levels to 512).
    assert nested.field.hash_levels == 8 and nested.field.hash_max_resolution == 512
    capture = {"inputs": {"capture": "c"}}
    assert options("reconstruct", {"field": {"hash_levels": 6}}, **capture).field.hash_max_resolution == 1024
    assert options("nerf_art", {"lambda_weight_reg": 0.3}, **capture).style_lambda_distortion == 0.3
    with pytest.raises(EngineError, match=r"options.field.hash_levels: is also given under its old name "
                                          r"options.hash_levels") as e:
        options("reconstruct", {"hash_levels": 6, "field": {"hash_levels": 6}}, **capture)
    assert "give it once, as options.field.hash_levels" in e.value.hint
    with pytest.raises(EngineError, match=r"options.field.backbone: must be \"hashgrid\" or \"triplane\" for this method"):
        options("reconstruct", {"field": {"backbone": "mlp"}}, **capture)
    with pytest.raises(EngineError, match=r"options.occupancy.every: must be >= 1"):
        options("dreamfusion", {"occupancy": {"every": 0}})
    with pytest.raises(EngineError, match=r"options.field.colour: unknown key"):
        options("dreamfusion", {"field": {"colour": 1}})
    # An old key only moves where the method has its new home; elsewhere it is unknown under its own name.
    with pytest.raises(EngineError, match=r"^options.lambda_weight_reg: unknown key"):
        options("dream_fields", {"lambda_weight_reg": 0.1})


def test_job_warnings_name_what_a_valid_job_asks_for_in_vain():
    from engine.spec import job_warnings

    raw = {"spec_version": 1, "method": "reconstruct", "prompt": "a cat", "negative_prompt": "blur",
           "inputs": {"capture": "c"}, "models": {"diffusion": "x"}, "options": {"hash_levels": 4}}
    parse_job(raw)  # valid
    assert job_warnings(raw) == ["prompt is ignored: reconstruct takes no prompt",
                                 "negative_prompt is ignored: reconstruct has no diffusion guidance",
                                 "models.diffusion is not used by reconstruct (it loads: none)",
                                 "options.hash_levels is the old name of options.field.hash_levels; it still works"]
    assert job_warnings({"spec_version": 1, "method": "dreamfusion", "prompt": "a fox", "negative_prompt": "blur",
                         "models": {"diffusion": "x"}, "options": {"field": {"hash_levels": 4}}}) == []

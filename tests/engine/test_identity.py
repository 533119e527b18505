"""The identity role: facenet-pytorch's InceptionResnetV1 as a frozen face embedder, its model forms
(facenet/NAME in facenet-pytorch's cache, a .pt/.safetensors state dict, a folder), the model_missing
errors, and the identity loss over it or over CLIP.

CPU, offline: the network is poisoned as in test_models.py, and facenet/NAME is looked for in an
empty TORCH_HOME.
"""
import json
import shutil
import socket
from pathlib import Path

import pytest
import torch

import engine.models.hub
from engine.errors import EngineError
from engine.guidance.identity import IdentityLoss
from engine.models import (
    FaceEmbedder,
    ModelRef,
    download,
    load_clip,
    load_identity,
    model_status,
    parse_model,
)
from engine.models.commands import list_command
from engine.models.registry import FACENET_MODELS

VGGFACE2_URL = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Refuse every internet socket connection and poison the proxy; fail the test if one was tried."""
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    attempts = []
    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise ConnectionRefusedError(f"test: network access to {address} blocked")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    yield
    assert not attempts, f"something tried to connect to {attempts}"


@pytest.fixture
def torch_home(monkeypatch, tmp_path):
    """An empty TORCH_HOME: facenet-pytorch's cache is TORCH_HOME/checkpoints."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def faces(tiny_models):
    return load_identity(tiny_models["identity"], "cpu", allow_downloads=False)


def images(n: int, size: int = 96, seed: int = 0) -> torch.Tensor:
    """(n, size, size, 3) smooth random images in [0, 1]: low-resolution noise, enlarged."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 6, 6, generator=g)
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear").permute(0, 2, 3, 1)


def facenet_checkpoint(embedder: FaceEmbedder, path: Path) -> Path:
    """A file as facenet-pytorch publishes its weights: torch.save of InceptionResnetV1's state dict, with
    the classifier its training used (here 7 identities instead of 8631)."""
    from facenet_pytorch import InceptionResnetV1

    network = InceptionResnetV1(classify=True, num_classes=7)
    missing, unexpected = network.load_state_dict(embedder.network.state_dict(), strict=False)
    assert missing == ["logits.weight", "logits.bias"] and unexpected == []
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), path)
    return path


# --- the tiny model and the embedder -----------------------------------------------------------------

def test_make_tiny_writes_a_loadable_identity_folder(tiny_models, faces):
    folder = Path(tiny_models["identity"])
    assert sorted(p.name for p in folder.iterdir()) == ["identity_config.json", "model.safetensors"]
    assert json.loads((folder / "identity_config.json").read_text()) == {"architecture": "inception_resnet_v1",
                                                                          "image_size": 160}
    assert isinstance(faces, FaceEmbedder) and faces.image_size == 160
    assert type(faces.network).__name__ == "InceptionResnetV1" and not faces.network.classify
    assert not faces.network.training
    assert all(not p.requires_grad and p.dtype == torch.float32 for p in faces.network.parameters())


def test_embed_gives_unit_512_vectors_for_any_image_size(faces):
    for size in (48, 160, 200):  # enlarged, as is, shrunk (antialiased)
        emb = faces.embed(images(3, size))
        assert emb.shape == (3, 512) and emb.dtype == torch.float32
        torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))  # InceptionResnetV1 normalises itself
    emb = faces.embed(images(2))
    assert (emb[0] @ emb[1]).item() < 0.99  # the calibrated random network tells images apart


def test_identity_loss_is_0_for_the_same_image_and_positive_for_another(faces):
    loss = IdentityLoss(faces)
    a, b = images(2).split(1)
    assert abs(loss.loss(a, a)["identity"].item()) < 1e-5
    assert loss.loss(a, b)["identity"].item() > 0.01
    both = loss.loss(torch.cat([a, b]), torch.cat([b, b]))["identity"]  # the mean over the batch
    torch.testing.assert_close(both, (loss.loss(a, b)["identity"] + loss.loss(b, b)["identity"]) / 2)


def test_identity_loss_gradients_reach_the_image_only(faces):
    source = images(1, seed=1).requires_grad_(True)
    image = images(1, 64, seed=2).requires_grad_(True)
    loss = IdentityLoss(faces).loss(image, source)
    assert set(loss) == {"identity"} and loss["identity"].shape == ()
    loss["identity"].backward()
    assert torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0
    assert source.grad is None  # embedded without gradients


def test_identity_loss_over_the_tiny_clip(tiny_models):
    clip = load_clip(tiny_models["clip"], "cpu", allow_downloads=False)
    loss = IdentityLoss(clip)
    a, b = images(2).split(1)
    assert loss.embed(a).shape == (1, 64)
    assert abs(loss.loss(a, a)["identity"].item()) < 1e-5
    image = b.clone().requires_grad_(True)
    value = loss.loss(image, a)["identity"]
    assert value.item() > 0
    value.backward()
    assert torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0


def test_identity_loss_refuses_other_models():
    with pytest.raises(TypeError, match="FaceEmbedder or a ClipModel"):
        IdentityLoss(torch.nn.Identity())


# --- the forms of a model ---------------------------------------------------------------------------

def test_a_facenet_state_dict_file_loads_like_the_folder(faces, tmp_path):
    from safetensors.torch import save_file

    x = images(2)
    expected = faces.embed(x)
    pt = facenet_checkpoint(faces, tmp_path / "recogniser.pt")
    torch.testing.assert_close(load_identity(str(pt), "cpu", allow_downloads=False).embed(x), expected, rtol=0, atol=0)
    assert model_status(str(pt))["available"] and parse_model(str(pt)).kind == "facenet"
    st = tmp_path / "recogniser.safetensors"
    save_file(faces.network.state_dict(), st)
    torch.testing.assert_close(load_identity(str(st), "cpu", allow_downloads=False).embed(x), expected, rtol=0, atol=0)


def test_facenet_vggface2_loads_from_facenet_pytorchs_cache(faces, torch_home):
    assert model_status("facenet/vggface2") == {"name": "facenet/vggface2", "kind": "facenet", "available": False,
                                                "location": None, "size_mb": 112.0}
    # facenet-pytorch's own place, not torch's hub cache (TORCH_HOME/hub/checkpoints).
    cached = facenet_checkpoint(faces, torch_home / "checkpoints" / "20180402-114759-vggface2.pt")
    status = model_status("facenet/vggface2")
    assert status["available"] and status["location"] == str(cached)
    x = images(1)
    torch.testing.assert_close(load_identity("facenet/vggface2", "cpu", allow_downloads=False).embed(x),
                               faces.embed(x), rtol=0, atol=0)


def test_torch_home_defaults_to_xdg_cache_home_as_in_facenet_pytorch(monkeypatch, tmp_path):
    from engine.models.resolve import facenet_file

    monkeypatch.delenv("TORCH_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert facenet_file(VGGFACE2_URL) == tmp_path / "torch" / "checkpoints" / "20180402-114759-vggface2.pt"


def test_missing_facenet_weights_are_model_missing_naming_the_url_and_the_path(torch_home):
    with pytest.raises(EngineError) as err:
        load_identity("facenet/vggface2", "cpu", allow_downloads=False)
    target = torch_home / "checkpoints" / "20180402-114759-vggface2.pt"
    assert err.value.kind == "model_missing" and "models.identity" in err.value.message
    assert "20180402-114759-vggface2.pt is not in facenet-pytorch's cache" in err.value.message
    assert str(target.parent) in err.value.message
    assert "`python -m engine models download facenet/vggface2`" in err.value.hint
    assert f"The file itself: {VGGFACE2_URL}, put at {target}." in err.value.hint
    assert "identity_config.json" in err.value.hint


def test_facenet_download_goes_to_facenet_pytorchs_cache_only_when_allowed(faces, torch_home, monkeypatch):
    fetched = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        fetched.append((url, Path(dst), hash_prefix))
        facenet_checkpoint(faces, Path(dst))

    monkeypatch.setattr(engine.models.hub, "download_url_to_file", fake_download)
    with pytest.raises(EngineError, match="not in facenet-pytorch's cache"):
        load_identity("facenet/casia-webface", "cpu", allow_downloads=False)
    assert fetched == []
    x = images(1)
    loaded = load_identity("facenet/casia-webface", "cpu", allow_downloads=True)
    target = torch_home / "checkpoints" / "20180408-102900-casia-webface.pt"
    assert fetched == [(FACENET_MODELS["facenet/casia-webface"], target, None)]  # facenet's names carry no hash
    torch.testing.assert_close(loaded.embed(x), faces.embed(x), rtol=0, atol=0)
    assert download("facenet/casia-webface", progress=False) == str(target) and len(fetched) == 1


def test_list_shows_the_identity_role_and_its_alternative(torch_home, capsys):
    assert list_command(as_json=True) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["models"] if r["role"] == "identity"}
    assert rows["facenet/vggface2"]["default"] and rows["facenet/vggface2"]["size_mb"] == 112.0
    assert not rows["facenet/casia-webface"]["default"] and rows["facenet/casia-webface"]["kind"] == "facenet"


# --- what is not a recogniser -----------------------------------------------------------------------

def test_garbage_files_are_model_missing_naming_the_problem(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a pickle at all")
    with pytest.raises(EngineError, match="garbage.pt is not a readable state dict") as err:
        load_identity(str(garbage), "cpu", allow_downloads=False)
    assert err.value.kind == "model_missing" and "models.identity" in err.value.message
    assert "InceptionResnetV1" in err.value.hint and "make-tiny" in err.value.hint

    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(EngineError, match="list.pt holds a list, not a state dict"):
        load_identity(str(listed), "cpu", allow_downloads=False)

    module = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), module)  # a pickled module: weights_only refuses to build it
    with pytest.raises(EngineError, match="module.pt is not a readable state dict"):
        load_identity(str(module), "cpu", allow_downloads=False)

    other = tmp_path / "vgg.pt"
    torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3)}, other)
    with pytest.raises(EngineError, match=r"it lacks \d+ of InceptionResnetV1's \d+ weights \(first: conv2d_1a"):
        load_identity(str(other), "cpu", allow_downloads=False)

    text = tmp_path / "weights.bin"
    text.write_text("hello")
    with pytest.raises(EngineError, match=r"weights.bin is not a .pt/.pth/.safetensors weights file") as err:
        load_identity(str(text), "cpu", allow_downloads=False)
    assert err.value.kind == "model_missing"


def test_wrong_folders_are_model_missing_naming_the_problem(tiny_models, faces, tmp_path):
    folder = tmp_path / "identity"
    shutil.copytree(tiny_models["identity"], folder)
    config = folder / "identity_config.json"
    config.write_text(json.dumps({"architecture": "resnet50", "image_size": 160}))
    with pytest.raises(EngineError, match=r'"architecture" must be one of \[.inception_resnet_v1.\]') as err:
        load_identity(str(folder), "cpu", allow_downloads=False)
    assert err.value.kind == "model_missing"
    config.write_text(json.dumps({"architecture": "inception_resnet_v1", "image_size": 64}))
    with pytest.raises(EngineError, match=r'"image_size" must be an integer >= 75 \(got 64\)'):
        load_identity(str(folder), "cpu", allow_downloads=False)
    config.write_text("{not json")
    with pytest.raises(EngineError, match="identity_config.json is not readable JSON"):
        load_identity(str(folder), "cpu", allow_downloads=False)

    config.write_text(json.dumps({"architecture": "inception_resnet_v1", "image_size": 96}))
    state = faces.network.state_dict()
    state["last_linear.weight"] = torch.zeros(512, 100)
    from safetensors.torch import save_file

    save_file(state, folder / "model.safetensors")
    with pytest.raises(EngineError, match="its weights do not fit InceptionResnetV1: .*last_linear.weight"):
        load_identity(str(folder), "cpu", allow_downloads=False)
    (folder / "model.safetensors").unlink()
    with pytest.raises(EngineError, match="lacks model.safetensors") as err:
        load_identity(str(folder), "cpu", allow_downloads=False)
    assert err.value.kind == "model_missing" and "identity_config.json + model.safetensors" in err.value.hint

    with pytest.raises(EngineError, match="does not exist"):
        load_identity(str(tmp_path / "nowhere"), "cpu", allow_downloads=True)


def test_a_smaller_image_size_in_the_folder_is_used(tiny_models, tmp_path):
    folder = tmp_path / "identity"
    shutil.copytree(tiny_models["identity"], folder)
    (folder / "identity_config.json").write_text(json.dumps({"architecture": "inception_resnet_v1", "image_size": 96}))
    small = load_identity(str(folder), "cpu", allow_downloads=False)
    assert small.image_size == 96 and small.embed(images(1, 200)).shape == (1, 512)


# --- parsing -------------------------------------------------------------------------------------------

def test_parse_facenet_strings_and_files(tmp_path):
    assert parse_model("facenet/vggface2", "identity") == ModelRef("facenet/vggface2", "facenet", url=VGGFACE2_URL)
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    assert parse_model(str(weights), "identity") == ModelRef(str(weights), "facenet", path=weights)
    nowhere = tmp_path / "nowhere"
    assert parse_model(str(nowhere), "identity").kind == "facenet"


@pytest.mark.parametrize("name, role, match", [
    ("facenet/arcface", None, "knows no facenet model 'facenet/arcface'"),
    ("facenet/vggface2", "clip", "models.clip: 'facenet/vggface2' is a model of kind facenet"),
    ("ViT-B-16/openai", "identity", "models.identity: 'ViT-B-16/openai' is a model of kind open_clip"),
    ("torchvision/vgg16", "identity", "this role needs kind facenet"),
])
def test_parse_rejects(name, role, match):
    with pytest.raises(EngineError, match=match) as err:
        parse_model(name, role)
    assert err.value.kind == "invalid_job"


def test_other_kinds_of_folders_and_files_are_refused_for_their_roles(tiny_models, tmp_path):
    with pytest.raises(EngineError, match="models.identity: .* is a model of kind diffusers; this role needs kind "
                                          "facenet") as err:
        parse_model(tiny_models["diffusion"], "identity")
    assert err.value.kind == "invalid_job" and "'facenet/vggface2'" in err.value.hint
    with pytest.raises(EngineError, match="models.identity: .* is a model of kind torchvision"):
        load_identity(tiny_models["perceptual"], "cpu", allow_downloads=False)
    with pytest.raises(EngineError, match="models.clip: .* is a model of kind facenet"):
        parse_model(tiny_models["identity"], "clip")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"")
    with pytest.raises(EngineError, match="models.diffusion: .* is a file; this role needs a model folder") as err:
        parse_model(str(weights), "diffusion")
    assert err.value.kind == "invalid_job"

"""job.json `device`: what "auto" picks (CUDA, then Apple's MPS, then the CPU), the error for a device this machine
lacks, and the MPS fallback setting. The machine's devices are monkeypatched: the logic runs on any machine
(Apple's GPU itself was never available to these tests)."""
import io
import json
import subprocess
import sys

import pytest
import torch

from engine.errors import EngineError
from engine.jobs import device as device_module
from engine.jobs.device import MPS_FALLBACK, available_devices, mps_fallback, pick_device
from engine.jobs.run import run_job
from engine.spec import parse_job
from conftest import ROOT, engine_env, read_events


@pytest.fixture
def machine(monkeypatch):
    """machine(cuda=N, mps=bool, mps_built=bool): this process sees N CUDA GPUs and MPS as told."""
    def set_up(cuda: int = 0, mps: bool = False, mps_built: bool | None = None):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
        monkeypatch.setattr(torch.backends.mps, "is_built", lambda: mps if mps_built is None else mps_built)
    return set_up


@pytest.mark.parametrize("cuda, mps, picked", [(2, True, "cuda"), (1, False, "cuda"), (0, True, "mps"),
                                               (0, False, "cpu")])
def test_auto_picks_cuda_then_mps_then_cpu(machine, cuda, mps, picked):
    machine(cuda=cuda, mps=mps)
    assert pick_device("auto") == torch.device(picked)


def test_a_device_that_is_there_is_used(machine):
    machine(cuda=2, mps=True)
    assert pick_device("cuda:1") == torch.device("cuda", 1)
    assert pick_device("mps") == torch.device("mps")
    assert pick_device("cpu") == torch.device("cpu")
    assert available_devices() == ["cpu", "cuda:0", "cuda:1", "mps"]


def raised(name: str) -> EngineError:
    with pytest.raises(EngineError) as e:
        pick_device(name)
    assert e.value.kind == "invalid_job" and '"auto"' in e.value.hint
    return e.value


def test_an_absent_device_names_itself_and_what_the_machine_has(machine):
    machine(cuda=0, mps=False)
    e = raised("cuda")
    assert e.message == (f"device 'cuda' requested but this machine has no CUDA GPU (torch {torch.__version__}"
                         f"{'' if torch.version.cuda else ', built without CUDA'}); available: cpu")
    machine(cuda=2, mps=False)
    assert raised("cuda:2").message == ("device 'cuda:2' requested but this machine has 2 CUDA GPUs "
                                        "(cuda:0 to cuda:1); available: cpu, cuda:0, cuda:1")
    machine(cuda=1, mps=False)
    assert "has 1 CUDA GPU (cuda:0 to cuda:0)" in raised("cuda:1").message
    machine(cuda=0, mps=False, mps_built=False)
    assert raised("mps").message == (f"device 'mps' requested but this machine has no Apple GPU (torch "
                                     f"{torch.__version__} was built without MPS); available: cpu")
    machine(cuda=1, mps=False, mps_built=True)
    message = raised("mps").message
    assert "finds no Apple GPU" in message and "macOS 12.3" in message and message.endswith("available: cpu, cuda:0")


def test_a_run_on_an_absent_device_fails_before_building(machine, tmp_path):
    """The error event, and nothing built: the job names a model that does not exist, which is never looked at."""
    machine(cuda=0, mps=False)
    job = tmp_path / "job"
    job.mkdir()
    (job / "job.json").write_text(json.dumps({"spec_version": 1, "method": "dream_fields", "prompt": "a chair",
                                              "device": "mps", "models": {"clip": str(tmp_path / "none")}}))
    assert run_job(job, False, io.StringIO()) == 2
    events = read_events(job)
    assert [e["event"] for e in events] == ["error", "finished"]
    assert events[0]["kind"] == "invalid_job" and events[0]["message"].startswith("device 'mps' requested")


def test_job_json_accepts_mps_and_refuses_an_unknown_device():
    assert parse_job({"spec_version": 1, "method": "dream_fields", "prompt": "x", "device": "mps"}).device == "mps"
    with pytest.raises(EngineError, match="device") as e:
        parse_job({"spec_version": 1, "method": "dream_fields", "prompt": "x", "device": "metal"})
    assert e.value.kind == "invalid_job" and "mps" in e.value.message


def test_mps_fallback_is_set_on_macos_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv(MPS_FALLBACK, raising=False)
    monkeypatch.setattr(device_module.sys, "platform", "linux")
    mps_fallback()
    assert MPS_FALLBACK not in device_module.os.environ
    monkeypatch.setattr(device_module.sys, "platform", "darwin")
    mps_fallback()
    assert device_module.os.environ[MPS_FALLBACK] == "1"
    monkeypatch.setenv(MPS_FALLBACK, "0")  # the user's own choice stands
    mps_fallback()
    assert device_module.os.environ[MPS_FALLBACK] == "0"


def test_the_cli_sets_the_fallback_before_torch_is_imported():
    """torch reads PYTORCH_ENABLE_MPS_FALLBACK once, at import: main() must call mps_fallback() before any import of
    torch (here `capture`, whose reader imports it)."""
    probe = ("import sys\n"
             "import engine.jobs.device as d\n"
             "calls = []\n"
             "d.mps_fallback = lambda: calls.append('torch' in sys.modules)\n"
             "from engine.cli import main\n"
             "code = main(['capture', 'no-such-capture'])\n"
             "print(calls, code, 'torch' in sys.modules, file=sys.stderr)\n")  # stdout is the command's
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=engine_env(), cwd=ROOT,
                         timeout=300)
    assert out.stderr.splitlines()[-1] == "[False] 6 True", out.stderr[-2000:]

"""Bad command lines of every `python -m engine` subcommand: one `error (KIND): ...` line naming the problem, a
`hint:` line, the kind's exit code, no traceback, nothing half-written. Then `render --cameras` with what
`engine capture` takes, render's all-or-nothing output folder, the --threshold hint of `export`, and the
divergence hint naming the method's settings. Run in-process through engine.cli.main (fast)."""
import io
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import engine.jobs.events as events_module
from engine.cli import main
from engine.errors import EXIT_CODES, EngineError
from engine.jobs import offline
from engine.jobs.run import run_job
from engine.methods.dreamfusion.method import DreamFusion
from engine.methods.latent_edit.method import LatentEdit
from engine.methods.nerf_art.method import NerfArt
from engine.methods.reconstruct import method as reconstruct
from engine.spec import parse_job
from capture_support import render_capture
from conftest import read_events

SIZE = 16
VIEWS = 6


def reconstruct_job(job_dir: Path, capture: Path, steps: int = 2, **overrides) -> Path:
    job = {"spec_version": 1, "method": "reconstruct", "inputs": {"capture": str(capture)}, "steps": steps,
           "seed": 0, "device": "cpu", "render": {"size": SIZE, "samples_per_ray": 16},
           "export": {"resolution": 32, "threshold": "auto"}, "preview_every": 0, "checkpoint_every": 0,
           "options": {"rays_per_step": 256, "field": {"hash_levels": 4, "hash_log2_size": 12,
                                                       "hash_max_resolution": 64, "mlp_width": 16}}, **overrides}
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "job.json").write_text(json.dumps(job))
    return job_dir


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    """A capture, a finished job (checkpoint and result/), a job never run, a corrupt job.json, an empty folder,
    a file that is not JSON and a NeRF-synthetic capture (train and test files)."""
    root = tmp_path_factory.mktemp("cli")
    capture = render_capture(root / "capture", n=VIEWS, size=SIZE)
    job = reconstruct_job(root / "job", capture)
    assert run_job(job, False, io.StringIO()) == 0
    (root / "corrupt").mkdir()
    (root / "corrupt" / "job.json").write_text('{"spec_version": 1, "method": ')
    (root / "empty").mkdir()
    (root / "garbage.json").write_text("frames: [")
    synthetic = render_capture(root / "synthetic", n=4, size=SIZE, layout="synthetic", test_every=2)
    return SimpleNamespace(root=root, capture=capture, job=job, never_run=reconstruct_job(root / "never_run", capture),
                           corrupt=root / "corrupt", empty=root / "empty", garbage=root / "garbage.json",
                           synthetic=synthetic)


@pytest.fixture
def cli(capsys, monkeypatch):
    """main(argv) in this process -> (exit code, stdout, stderr). claim_stdout would point the process's file
    descriptor 1 at stderr; here the JSON goes to capsys's stdout instead."""
    monkeypatch.setattr(events_module, "claim_stdout", lambda: sys.stdout)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # `models download` of a local path must not go near the network

    def call(*argv) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err
    return call


USAGE, INVALID_JOB, CAPTURE_INVALID = EXIT_CODES["usage"], EXIT_CODES["invalid_job"], EXIT_CODES["capture_invalid"]

# (argv with {placeholders} from `paths` and {out}, a fresh path), exit code, what the error line says, the path
# that must not exist afterwards ("" = none).
BAD = [
    (["bogus"], USAGE, "invalid choice: 'bogus'", ""),
    ([], USAGE, "required: command", ""),
    (["run", "{root}/nope"], INVALID_JOB, "no job.json in", "{root}/nope"),
    (["run", "{empty}"], INVALID_JOB, "no job.json in", "{empty}/events.jsonl"),
    (["run", "{corrupt}"], INVALID_JOB, "job.json is not valid JSON", "{corrupt}/result"),
    (["run", "{never_run}", "--resume"], INVALID_JOB, "--resume: no checkpoint", "{never_run}/result"),
    (["run", "{job}", "--resum"], USAGE, "python -m engine run: unrecognized arguments: --resum", ""),
    (["models", "list", "--bogus"], USAGE, "python -m engine models list: unrecognized arguments: --bogus", ""),
    (["check", "--bogus"], USAGE, "python -m engine check: unrecognized arguments: --bogus", ""),
    (["render", "{root}/nope", "--out", "{out}"], INVALID_JOB, "no job.json in", "{out}"),
    (["render", "{corrupt}", "--out", "{out}"], INVALID_JOB, "job.json is not valid JSON", "{out}"),
    (["render", "{never_run}", "--out", "{out}", "--turntable", "2"], INVALID_JOB, "has no checkpoint yet", "{out}"),
    (["render", "{job}"], USAGE, "required: --out", ""),
    (["render", "{job}", "--out", "{out}", "--size", "0"], USAGE, "--size: must be between 1 and 8192 (got 0)", "{out}"),
    (["render", "{job}", "--out", "{out}", "--size", "-5"], USAGE, "--size: must be between 1 and 8192 (got -5)",
     "{out}"),
    (["render", "{job}", "--out", "{out}", "--size", "abc"], USAGE, "--size: not a whole number: 'abc'", "{out}"),
    (["render", "{job}", "--out", "{out}", "--size", "100000"], USAGE, "--size: must be between 1 and 8192", "{out}"),
    (["render", "{job}", "--out", "{out}", "--turntable", "0"], USAGE, "--turntable: must be between 1", "{out}"),
    (["render", "{job}", "--out", "{out}", "--turntable", "3", "--cameras", "{capture}"], USAGE, "not allowed with",
     "{out}"),
    (["render", "{job}", "--out", "{out}", "--background", "pink"], USAGE, "invalid choice: 'pink'", "{out}"),
    (["render", "{job}", "--out", "{out}", "--cameras", "{capture}/transforms_test.json"], CAPTURE_INVALID,
     "transforms_test.json does not exist", "{out}"),
    (["render", "{job}", "--out", "{out}", "--cameras", "{empty}"], CAPTURE_INVALID, "has no transforms.json",
     "{out}"),
    (["render", "{job}", "--out", "{out}", "--cameras", "{garbage}"], CAPTURE_INVALID, "not readable JSON", "{out}"),
    (["render", "{job}", "--out", "{out}", "--cameras", "{job}/job.json"], CAPTURE_INVALID, "no frames", "{out}"),
    (["render", "{job}", "--out", "{garbage}", "--turntable", "2"], USAGE, "is a file, not a folder", ""),
    (["capture", "{root}/nope"], CAPTURE_INVALID, "nope does not exist", ""),
    (["capture", "{capture}", "--max-image-size", "0"], USAGE, "--max-image-size: must be between 1", ""),
    (["export", "{root}/nope"], INVALID_JOB, "no job.json in", "{root}/nope"),
    (["export", "{never_run}"], INVALID_JOB, "has no checkpoint yet", "{never_run}/result"),
    (["export", "{job}", "--threshold", "nan"], USAGE, '--threshold: must be a finite number or "auto"', ""),
    (["export", "{job}", "--threshold", "inf"], USAGE, '--threshold: must be a finite number or "auto"', ""),
    (["export", "{job}", "--threshold", "-3"], USAGE, "--threshold: must be > 0 (got -3.0)", ""),
    (["export", "{job}", "--threshold", "lots"], USAGE, '--threshold: must be a number or "auto"', ""),
    (["export", "{job}", "--resolution", "0"], USAGE, "--resolution: must be between 16 and 1024 (got 0)", ""),
    (["export", "{job}", "--resolution", "4096"], USAGE, "--resolution: must be between 16 and 1024 (got 4096)", ""),
    (["export", "{job}", "--texture-size", "10"], USAGE, "--texture-size: must be 0 (vertex colours only) or", ""),
    (["check", "--models", "not json"], USAGE, "--models: not JSON", ""),
    (["check", "--models", "[1]"], USAGE, "--models: must be a JSON object", ""),
    (["check", "--models", '{{"colour": "x"}}'], USAGE, "--models: unknown role 'colour'", ""),
    (["models"], USAGE, "required: models_command", ""),
    (["models", "frobnicate"], USAGE, "invalid choice: 'frobnicate'", ""),
    (["models", "make-tiny", "{garbage}"], USAGE, "is a file, not a folder", ""),
    # An empty string would be the current folder: writing there, or reading its job.json, is never meant.
    (["models", "make-tiny", ""], USAGE, "argument dir: must be a non-empty path", ""),
    (["render", "", "--out", "{out}"], USAGE, "argument job_dir: must be a non-empty path", "{out}"),
    (["render", "{job}", "--out", "", "--turntable", "2"], USAGE, "argument --out: must be a non-empty path", ""),
    (["batch", "{job}", ""], USAGE, "argument JOB_DIR: must be a non-empty path", ""),
    (["batch", "{job}", "{root}/job/."], INVALID_JOB, "/job is given twice", ""),
    (["render", "{job}", "--out", "{capture}", "--turntable", "2"], USAGE, "already holds a transforms.json", ""),
    (["export", "{job}", "--device", "gpu"], USAGE, "argument --device: must be \"auto\", \"cpu\"", ""),
    (["render", "{job}", "--out", "{out}", "--device", "cuda:x"], USAGE, "argument --device: must be", "{out}"),
    (["render", "{job}", "--out", "{garbage}/sub", "--turntable", "2"], USAGE, "cannot write the render to --out",
     "{garbage}/sub"),
    (["models", "download", "{root}/no-such-model"], EXIT_CODES["model_missing"], "no-such-model does not exist", ""),
]


@pytest.mark.parametrize("argv, code, says, absent", BAD, ids=[" ".join(row[0]) or "(none)" for row in BAD])
def test_a_bad_command_line_is_one_error_line_and_its_exit_code(paths, cli, tmp_path, argv, code, says, absent):
    names = {**vars(paths), "out": tmp_path / "out"}
    fill = lambda s: s.format(**names)  # noqa: E731
    before = sorted(p.name for p in paths.root.iterdir())
    got, out, err = cli(*map(fill, argv))
    assert got == code, err
    assert "Traceback" not in err and says in err, err
    if code == USAGE:  # argparse's usage text is not printed: one line and a hint
        assert err.splitlines()[0].startswith("error (usage): ") and err.splitlines()[1].startswith("hint: ")
        assert len(err.splitlines()) == 2 and out == ""
    elif argv[0] != "models":  # `models download` keeps its "error: ..." line (the add-on reads it)
        lines = [line for line in err.splitlines() if line.startswith("error (")]
        assert lines and lines[-1].startswith(f"error ({[k for k, v in EXIT_CODES.items() if v == code][0]}): ")
        assert "hint: " in err
    assert "hint:" in err
    if absent:
        assert not Path(fill(absent)).exists()
    assert not list(tmp_path.glob(".*partial")) and not list(paths.root.glob(".*partial"))
    assert sorted(p.name for p in paths.root.iterdir()) == before  # nothing new beside the inputs


def test_run_without_a_job_folder_says_so_on_stdout_too(paths, cli):
    """The add-on reads stdout: the error and finished events come even with no folder to keep events.jsonl in."""
    code, out, err = cli("run", paths.root / "nope")
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["event"] for e in events] == ["error", "finished"] and events[0]["kind"] == "invalid_job"
    assert events[1]["status"] == "failed" and code == 2


def test_help_documents_every_exit_code_and_the_usage_code(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name, code in EXIT_CODES.items():
        assert f"{code:>2}  {name}" in out
    assert "usage" in out and "argparse's 2" in out and len(set(EXIT_CODES.values())) == len(EXIT_CODES)


# render --cameras: what `engine capture` takes.

def test_render_cameras_from_a_capture_folder_or_its_file(paths, cli, tmp_path):
    code, out, err = cli("render", paths.job, "--out", tmp_path / "folder", "--cameras", paths.capture, "--size", 8)
    assert code == 0, err
    assert json.loads(out) == {"images": VIEWS, "out": str(tmp_path / "folder")}
    code, out, err = cli("render", paths.job, "--out", tmp_path / "file", "--cameras",
                         paths.capture / "transforms.json", "--size", 8)
    assert code == 0, err
    folder = json.loads((tmp_path / "folder" / "transforms.json").read_text())
    file = json.loads((tmp_path / "file" / "transforms.json").read_text())
    assert folder == file and len(folder["frames"]) == VIEWS
    from PIL import Image

    for frame in folder["frames"]:
        a = np.asarray(Image.open(tmp_path / "folder" / frame["file_path"]))
        b = np.asarray(Image.open(tmp_path / "file" / frame["file_path"]))
        assert a.shape == (8, 8, 3) and (a == b).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]  # no staging folder left


def test_render_cameras_of_a_nerf_synthetic_folder_are_its_training_cameras(paths, cli, tmp_path):
    code, out, err = cli("render", paths.job, "--out", tmp_path / "r", "--cameras", paths.synthetic, "--size", 8)
    assert code == 0, err
    train = json.loads((paths.synthetic / "transforms_train.json").read_text())["frames"]
    assert json.loads(out)["images"] == len(train) == 2
    rendered = json.loads((tmp_path / "r" / "transforms.json").read_text())["frames"]
    assert [f["file_path"] for f in rendered] == [Path(f["file_path"]).name + ".png" for f in train]


def test_a_gpu_job_renders_and_exports_on_this_cpu_with_device(paths, cli, tmp_path):
    """A job made on a CUDA machine (a Ray cluster's), opened where there is none: job.json's device is absent
    here, the error names --device, and --device cpu renders and exports it."""
    job = tmp_path / "gpu_job"
    shutil.copytree(paths.job, job)
    spec = json.loads((job / "job.json").read_text())
    (job / "job.json").write_text(json.dumps({**spec, "device": "cuda:7"}))
    code, out, err = cli("export", job)
    assert code == INVALID_JOB and "device 'cuda:7' requested" in err and "--device" in err, err
    code, out, err = cli("render", job, "--out", tmp_path / "r", "--turntable", 2, "--size", 8, "--device", "cpu")
    assert code == 0 and json.loads(out)["images"] == 2, err
    code, out, err = cli("export", job, "--device", "cpu")
    assert code == 0 and "mesh" in json.loads(out), err


def test_render_never_replaces_a_captures_transforms_json(paths, cli, tmp_path):
    """--out given the capture folder itself (or any folder with a transforms.json): refused, the capture intact."""
    before = (paths.capture / "transforms.json").read_bytes()
    listing = sorted(p.relative_to(paths.capture) for p in paths.capture.rglob("*"))
    code, out, err = cli("render", paths.job, "--out", paths.capture, "--cameras", paths.capture, "--size", 8)
    assert code == EXIT_CODES["usage"] and "already holds a transforms.json" in err and out == "", err
    assert (paths.capture / "transforms.json").read_bytes() == before
    assert sorted(p.relative_to(paths.capture) for p in paths.capture.rglob("*")) == listing  # nothing added
    assert not list(paths.root.glob(".*partial"))


def test_render_stopped_by_sigterm_leaves_no_staging_folder_and_exits_cancelled(paths, tmp_path):
    import signal
    import subprocess
    import time

    from conftest import ROOT, engine_env

    out = tmp_path / "turntable"
    proc = subprocess.Popen([sys.executable, "-m", "engine", "render", str(paths.job), "--out", str(out),
                             "--turntable", "3000", "--size", "8"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=engine_env(), cwd=ROOT)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".turntable.*.partial/*.png")) and time.monotonic() < deadline:
        time.sleep(0.05)  # rendering: its staging folder holds images
    assert list(tmp_path.glob(".turntable.*.partial/*.png")), "the render never started writing"
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_CODES["cancelled"] and "Traceback" not in stderr, stderr[-2000:]
    assert f"cancelled: --out {out} is as it was" in stderr and stdout == ""
    assert list(tmp_path.iterdir()) == []  # neither --out nor the staging folder


def test_render_failing_midway_leaves_no_output(paths, monkeypatch, tmp_path):
    saved = []

    def save_then_fail(image, path):
        if len(saved) == 2:
            raise RuntimeError("disk full")
        saved.append(path)
        offline_save_png(image, path)
    offline_save_png = offline.save_png
    monkeypatch.setattr(offline, "save_png", save_then_fail)
    out = tmp_path / "new" / "deeper" / "render"
    with pytest.raises(RuntimeError, match="disk full"):
        offline.render_command(paths.job, out, paths.capture, None, 8, "white")
    assert len(saved) == 2 and not any(p.exists() for p in saved)
    assert list(tmp_path.iterdir()) == []  # neither the folder nor the parents made for it

    # Into an existing folder: on failure it is as it was; on success the images join what it held.
    out = tmp_path / "existing"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    saved.clear()
    with pytest.raises(RuntimeError):
        offline.render_command(paths.job, out, paths.capture, None, 8, "white")
    assert [p.name for p in tmp_path.iterdir()] == ["existing"] and [p.name for p in out.iterdir()] == ["notes.txt"]
    monkeypatch.setattr(offline, "save_png", offline_save_png)
    assert offline.render_command(paths.job, out, None, 3, 8, "white")["images"] == 3
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "transforms.json", "turntable_000.png",
                                                     "turntable_001.png", "turntable_002.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["existing"]


# export: the empty-surface hint speaks the language the threshold was given in.

def test_export_empty_surface_hint_names_the_flag_when_the_threshold_was_a_flag(paths, cli, tmp_path):
    job = tmp_path / "job"
    shutil.copytree(paths.job, job)
    mesh = (job / "result" / "mesh.npz").read_bytes()
    code, out, err = cli("export", job, "--threshold", "1e6")
    assert code == EXIT_CODES["empty_surface"] and "Traceback" not in err
    hint = err.split("hint: ")[-1]
    assert hint.startswith("try --threshold ") and "job.json" not in hint, err
    suggested = float(hint.split()[2])
    code, out, err = cli("export", job, "--threshold", suggested)  # and the value it gives works
    assert code == 0, err
    assert json.loads(out)["mesh"] == "result/mesh.npz"

    # The threshold from job.json: the hint says where to change it there.
    (job / "result" / "mesh.npz").write_bytes(mesh)
    spec = json.loads((job / "job.json").read_text())
    spec["export"]["threshold"] = 1e6
    (job / "job.json").write_text(json.dumps(spec))
    code, out, err = cli("export", job)
    assert code == EXIT_CODES["empty_surface"]
    assert '"threshold"' in err.split("hint: ")[-1] and "job.json" in err.split("hint: ")[-1]
    assert (job / "result" / "mesh.npz").read_bytes() == mesh  # a failed export leaves result/ as it was


def test_threshold_flag_hint_without_a_suggestion():
    from engine.spec import ExportConfig

    flat = EngineError("empty_surface", "m", "the density is 0 everywhere, so no threshold helps", {"density_range": (0, 0)})
    assert offline.threshold_flag_hint(flat, ExportConfig()) == flat.hint
    fine = EngineError("empty_surface", "m", "give export.threshold")  # the fine grid found nothing: no numbers
    assert offline.threshold_flag_hint(fine, ExportConfig(resolution=48)).startswith("try another --resolution (now 48)")


# diverged: the hint names the settings of the method (and phase) that diverged.

def bare(cls, spec_json: dict, **attributes):
    """An instance of a method class without its models: only what divergence_hint reads."""
    method = cls.__new__(cls)
    method.spec = parse_job({"spec_version": 1, **spec_json})
    for name, value in attributes.items():
        setattr(method, name, value)
    return method


def test_divergence_hint_names_the_settings_of_the_method_that_diverged():
    from engine.methods.base import Phase
    from engine.methods.dream_fields.method import DreamFields

    fusion = bare(DreamFusion, {"method": "dreamfusion", "prompt": "x", "options": {"guidance_scale": 50}})
    assert fusion.divergence_hint(3) == "lower options.guidance_scale (now 50) or options.lr (now 0.01)"
    fields = bare(DreamFields, {"method": "dream_fields", "prompt": "x"}, peak_lr=5e-3)
    assert fields.divergence_hint(3) == "lower options.lr (now 0.005, the default for the hashgrid backbone)"
    capture = {"inputs": {"capture": "c"}}
    art = bare(NerfArt, {"method": "nerf_art", "prompt": "x", **capture},
               phases=(Phase("reconstruct", 5), Phase("style", 5)))
    assert art.divergence_hint(2) == "lower options.lr (now 0.01)"
    assert art.divergence_hint(7) == "lower options.style_lr (now 0.001)"
    edit = bare(LatentEdit, {"method": "latent_edit", "prompt": "x", **capture},
                phases=(Phase("invert", 5), Phase("edit", 5), Phase("tune", 5)))
    assert [edit.divergence_hint(s) for s in (0, 5, 10)] == [
        "lower options.lr (now 0.01)", "lower options.guidance_scale (now 100) or options.edit_lr (now 0.01)",
        "lower options.tune_lr (now 0.0003)"]


def test_diverged_event_carries_the_methods_hint(paths, monkeypatch, tmp_path):
    build = reconstruct.build

    def diverging(spec, device):
        method = build(spec, device)
        step = method.step

        def nan_at_one(k, generator):
            out = step(k, generator)
            if k == 1:
                out.losses["rgb"] = out.losses["rgb"] * float("nan")
            return out
        method.step = nan_at_one
        return method
    monkeypatch.setattr(reconstruct, "build", diverging)
    job = reconstruct_job(tmp_path / "job", paths.capture, steps=3)
    spec = json.loads((job / "job.json").read_text())
    spec["options"]["lr"] = 0.02
    (job / "job.json").write_text(json.dumps(spec))
    assert run_job(job, False, io.StringIO()) == EXIT_CODES["diverged"]
    error = [e for e in read_events(job) if e["event"] == "error"][0]
    assert error["message"].startswith("the loss became non-finite at step 1")
    assert error["hint"] == "lower options.lr (now 0.02), or try another seed; no checkpoint was written yet"

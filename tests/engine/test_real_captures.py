"""Real captures, fast (issue 13): empty-space skipping that empties, and photos with a room behind the object."""
import json

import numpy as np
from capture_support import BOX_HALF, render_capture
from conftest import engine, read_events

from engine.captures import ObjectFrame

TINY_FIELD = {"hash_levels": 8, "hash_log2_size": 14, "hash_max_resolution": 128, "mlp_width": 32}


def run_job(job_dir, capture, steps, **options):
    job = {"spec_version": 1, "method": "reconstruct", "inputs": {"capture": str(capture)}, "steps": steps,
           "seed": 0, "device": "cpu", "render": {"size": 32, "samples_per_ray": 96}, "export": {"resolution": 64},
           "preview_every": 0, "checkpoint_every": 0,
           "options": {"rays_per_step": 1024, "field": TINY_FIELD, **options}}
    job_dir.mkdir(parents=True)
    (job_dir / "job.json").write_text(json.dumps(job))
    out = engine("run", job_dir)
    assert out.returncode == 0, out.stderr[-3000:]
    return job_dir


def occupied_by_step(job_dir) -> dict[int, float]:
    return {e["step"]: e["metrics"]["occupied"] for e in read_events(job_dir)
            if e["event"] == "progress" and "occupied" in e.get("metrics", {})}


# Measured (2-core CPU, seed 0): the box fills ~4% of the cube. The starting fog counts as occupied everywhere until
# its decaying maximum (x0.95 per update, every 16 steps) falls under the threshold: 1.0 through step 63, 0.133 at
# step 65, 0.130 at step 100. Asserted with a margin.
OCCUPIED_BY_STEP_96 = 0.2


def test_the_empty_space_grid_empties_around_a_small_object(tmp_path):
    # Without text3d_bounds the cube is sized to the views, so the box (half side 0.5 of 1.46) is small in it.
    capture = render_capture(tmp_path / "small", n=16, size=32, bounds=False)
    job = run_job(tmp_path / "job", capture, 100)
    occupied = occupied_by_step(job)
    print(sorted(occupied.items()))
    early = [v for s, v in occupied.items() if s <= 2]
    late = [v for s, v in occupied.items() if s >= 96]
    assert early and late, occupied
    assert max(early) > 0.5  # the starting fog: training has somewhere to start
    assert max(late) < OCCUPIED_BY_STEP_96, occupied


def test_photos_of_a_room_export_only_the_object(tmp_path):
    world = ObjectFrame((1.0, 2.0, 0.5), 1.5)
    capture = render_capture(tmp_path / "room", n=24, size=48, frame=world, backdrop=True)
    job = run_job(tmp_path / "job", capture, 400, holdout_every=6)
    metrics = json.loads((job / "result" / "metrics.json").read_text())
    mesh = np.load(job / "result" / "mesh.npz")
    half = BOX_HALF * world.scale
    # How far each vertex lies outside the box, in box half sides. The object cube reaches 0.25 beyond the box
    # (text3d_bounds fill 80% of it): fog explaining the room would put vertices out there. Measured (seed 0, 400
    # steps): 0.07% of the vertices beyond 0.2; held-out PSNR 22.2 dB. With options.background "colour" (the photos'
    # border colour, no background field) the mesh also stays inside (the fog it grows stays under the export's
    # threshold) but the held-out PSNR is 19.2 dB: the room is not modelled. The PSNR bound lies between.
    outside = (np.abs(mesh["vertices"] + mesh["offset"] - np.array(world.offset)) - half).max(1) / half
    print(metrics["test_psnr"], (outside > 0.2).mean(), outside.max())
    assert len(outside) > 1000
    assert (outside > 0.2).mean() < 0.02, (outside > 0.2).mean()
    assert metrics["test_psnr"] > 20.7, metrics


def test_samples_behind_the_cube_stay_finite_at_the_end_of_their_last_bin():
    # A photo capture diverged (NaN) after ~160 steps: an offset just below 1 rounded the last disparity to 0.
    import torch

    from engine.render.unbounded import disparity_samples

    far = torch.tensor([2.0, 3.5])
    offsets = torch.tensor([[0.5, 0.99999994, 0.0, 0.99999994]]).expand(2, 4)
    t, delta = disparity_samples(far, offsets)
    assert torch.isfinite(t).all() and (t[:, 1:] >= t[:, :-1]).all() and (t[:, 0] >= far).all(), t
    assert (delta > 0).all() and delta[:, -1].min() > 1e9

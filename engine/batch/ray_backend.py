"""The Ray backend of `python -m engine batch`: one Ray task per job folder (imported only for --backend ray).

Each task asks for --gpus-per-job GPUs and one CPU, so Ray runs as many jobs at once as the cluster has
GPUs, and runs process.run_attempt: the unchanged `python -m engine run JOB_DIR` under a guard that kills
the engine when the task's worker dies. Ray's own retries are off (max_retries=0): the driver decides
(engine/batch/driver.py) and retries a lost job with --resume from its checkpoint.

Every node must see the job folders at the same path (a shared job root, NFS or SMB) and run the
engine environment with this checkout at the same path: the tasks get it on PYTHONPATH.
"""
from __future__ import annotations

import logging
import os
import time

from .backend import BackendUnavailable, Ended
from .process import ENGINE_ROOT

INSTALL_HINT = "install the Ray extra: python3 install/text3d.py engine --with ray"


def run_task(job_dir: str, resume: bool) -> dict:
    """The Ray task: one attempt at one job on whichever worker Ray picked (process.run_attempt)."""
    from engine.batch.process import run_attempt

    return run_attempt(job_dir, resume)


class RayBackend:
    """Connects to the cluster at `address` (a `ray start --head` node's host:port, or "auto"), or starts a
    local one on this machine (loopback only) when address is None; submits one task per attempt."""

    name = "ray"
    slots = 10**9  # every job is submitted at once; Ray queues them until GPUs are free

    def __init__(self, address: str | None, gpus_per_job: float) -> None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports to the network
        if address is None:
            # Ray reads this at import: a cluster of this machine only listens on 127.0.0.1.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        try:
            import ray
        except ImportError:
            raise BackendUnavailable("Ray is not installed in the engine environment", INSTALL_HINT) from None
        self.ray, self.address, self.gpus_per_job = ray, address, gpus_per_job
        pythonpath = os.pathsep.join(p for p in (str(ENGINE_ROOT), os.environ.get("PYTHONPATH")) if p)
        common = dict(log_to_driver=False, logging_level=logging.WARNING,
                      runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
        t = time.monotonic()
        try:
            if address is None:
                ray.init(address="local", include_dashboard=False, **common)
            else:
                ray.init(address=address, **common)
        except (ConnectionError, RuntimeError, ValueError) as e:
            what = "start a local Ray cluster" if address is None else f"reach the Ray cluster at {address}"
            raise BackendUnavailable(f"cannot {what}: {e}",
                                     "start it with `ray start --head` on the head node, or leave out --address "
                                     "for a cluster of this machine") from None
        self.start_s = time.monotonic() - t
        self.resources = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
        if gpus_per_job > self.resources.get("GPU", 0):
            ray.shutdown()
            raise BackendUnavailable(f"each job asks for {gpus_per_job:g} GPU(s) but the cluster has "
                                     f"{self.resources.get('GPU', 0):g}",
                                     "add GPU nodes, or run on CPUs with --gpus-per-job 0")
        self.task = ray.remote(run_task).options(num_gpus=gpus_per_job, num_cpus=1, max_retries=0,
                                                 retry_exceptions=False)

    def describe(self) -> dict:
        return {"address": self.address, "local_cluster": self.address is None, "start_s": round(self.start_s, 3),
                "resources": self.resources, "gpus_per_job": self.gpus_per_job}

    def start(self, job, resume: bool):
        return self.task.remote(str(job.path), resume)

    def ended(self, refs: list, timeout: float) -> list[tuple[object, Ended]]:
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=timeout)
        done = []
        for ref in ready:
            try:
                result = self.ray.get(ref)
            except self.ray.exceptions.RayError as e:
                # The worker or its node died, or the task was cancelled (a second Ctrl-C): no exit code.
                first = (str(e).strip().splitlines() or [""])[0]
                done.append((ref, Ended(None, reason=f"{type(e).__name__}: {first}")))
                continue
            done.append((ref, Ended(result["returncode"], skipped=result["skipped"])))
        return done

    def force_stop(self, refs: list) -> None:
        for ref in refs:
            self.ray.cancel(ref, force=True)  # kills the worker; its guard kills the engine

    def close(self) -> None:
        # A local cluster stops here; from a remote one we disconnect (Ray ends this driver's tasks).
        self.ray.shutdown()

"""python -m engine.batch.guard -- ENGINE_ARGV...: run the engine and kill it when whoever started us dies.

A batch runs each engine under a guard (engine/batch/process.py, start_engine). The guard is started in its
own session, with a pipe on its stdin whose only write end the starter (the batch process, or the Ray
worker running the job's task) holds. A process that dies closes its files, so end-of-file on stdin
means the starter is gone, however it died (SIGKILL included): the guard then kills its process group,
the engine and anything the engine started. Needs no preexec_fn (unsafe with threads) and no prctl,
so it works the same on Linux and macOS.

SIGTERM and SIGINT are passed on to the engine (which stops within a step, keeping its checkpoint).
The guard exits as the engine did: with its exit code, or killed by the same signal.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python -m engine.batch.guard -- COMMAND...", file=sys.stderr)
        return 2
    if os.getpgid(0) != os.getpid():
        os.setsid()  # lead our own process group, so that killing it never reaches the starter's
    engine = subprocess.Popen(argv, stdin=subprocess.DEVNULL)  # in the guard's process group

    def watch_starter() -> None:
        # End of file: every write end is closed, the starter has exited or died. The raw descriptor, not
        # sys.stdin: a daemon thread blocked inside a buffered reader holds its lock, and Python's shutdown
        # then aborts with "Fatal Python error: _enter_buffered_busy" (seen on every job's exit).
        while os.read(0, 65536):
            pass
        if engine.poll() is None:
            os.killpg(os.getpgid(0), signal.SIGKILL)

    def pass_on(signum, frame) -> None:
        if engine.poll() is None:
            engine.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, pass_on)
    threading.Thread(target=watch_starter, daemon=True).start()
    code = engine.wait()
    if code < 0:  # die as the engine did, so the starter sees the signal
        if -code != signal.SIGKILL:
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

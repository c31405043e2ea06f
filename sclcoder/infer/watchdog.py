"""`python -m sclcoder.infer.watchdog CMD...`: runs CMD (vLLM's server) inside a process group of its own and
takes the whole group down when told to stop. `start_server` starts it with a request to Linux to send
SIGTERM when sclcoder dies, however sclcoder dies; vLLM alone does not always exit on SIGTERM while its engine
core is starting, so after a grace period every process left in the group gets SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

GRACE_S = 5.0


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m sclcoder.infer.watchdog CMD [ARGS...]", file=sys.stderr)
        return 2
    proc = subprocess.Popen(argv)  # stays in our process group, as do the processes it starts

    def stop(signum: int, frame: object) -> None:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=GRACE_S)
        os.killpg(os.getpgrp(), signal.SIGKILL)  # whatever is left of the group, this process included

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return proc.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

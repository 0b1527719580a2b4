"""End a child process when the process that started it is gone (stdlib only; run by path, not imported).

    python agent_lib/_watchdog.py PARENT_PID CHILD_PID [PID_FILE]

A native restate-server cannot watch its parent itself. `RestateServer(die_with_parent=True)`
starts this beside it, so a private server started by a notebook's kernel does not outlive that
kernel (a restarted or crashed kernel would otherwise leave it running until `make stop`).
It polls twice a second; when the parent is gone it sends SIGTERM, then SIGKILL after a grace
period, and removes the pid file. It exits by itself as soon as the child is gone.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

POLL_S = 0.5
GRACE_S = 10.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_time(pid: int) -> str | None:
    """The process's start time from /proc (Linux), so a recycled pid is never signalled; None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def main(argv: list[str]) -> int:
    parent, child = int(argv[1]), int(argv[2])
    pid_file = Path(argv[3]) if len(argv) > 3 else None
    identity = _start_time(child)

    def same_child() -> bool:
        return _alive(child) and not _zombie(child) and _start_time(child) == identity

    while same_child():
        if not _alive(parent) or _zombie(parent):
            try:
                os.kill(child, signal.SIGTERM)
                deadline = time.monotonic() + GRACE_S
                while same_child() and time.monotonic() < deadline:
                    time.sleep(0.1)
                if same_child():
                    os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if pid_file is not None:
                try:
                    if pid_file.read_text().strip() == str(child):
                        pid_file.unlink()
                except OSError:
                    pass
            return 0
        time.sleep(POLL_S)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""End a child process when the process that started it is gone (stdlib only: run by path, and imported for pid_alive).

    python -I agent_lib/_watchdog.py PARENT_PID CHILD_PID [PID_FILE]

This is the kit's one die-with-parent mechanism (`agent_lib._process.watch_over` starts it): a native
restate-server cannot watch its parent itself, and an agent process need not, so a private server or agent
started by a notebook's kernel does not outlive that kernel (a restarted or crashed kernel would otherwise
leave it running until `make stop`). It polls twice a second; when the parent is gone it sends SIGTERM, then
SIGKILL after a grace period, and removes the pid file. It exits by itself as soon as the child is gone.

It runs isolated (`python -I`: no site-packages, no PYTHONPATH), so it imports nothing of agent_lib; `pid_alive`
lives here, stdlib only, and `agent_lib._process` imports it from here: one answer to "is this pid alive".
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

POLL_S = 0.5
GRACE_S = 10.0


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command's name (Linux), or None where there is none."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    """Return True if process `pid` runs: it exists (ours or another user's) and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, and belongs to another user
    stat = _stat(pid)
    return stat is None or stat[0] != "Z"


def _start_time(pid: int) -> str | None:
    """The process's start time from /proc (Linux), so a recycled pid is never signalled; None elsewhere."""
    stat = _stat(pid)
    return stat[19] if stat is not None and len(stat) > 19 else None


def main(argv: list[str]) -> int:
    """Watch PARENT_PID; once it is gone, end CHILD_PID and remove PID_FILE (if it still names the child)."""
    parent, child = int(argv[1]), int(argv[2])
    pid_file = Path(argv[3]) if len(argv) > 3 else None
    identity = _start_time(child)

    def same_child() -> bool:
        return pid_alive(child) and _start_time(child) == identity

    while same_child():
        if not pid_alive(parent):
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

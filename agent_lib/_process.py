"""The kit's OS processes: start one with its pid file and log, watch it, stop it, and find those recorded.

Every process the kit starts in the background (a restate-server, an agent process, a Gemini stub, the trace viewer)
records its pid in `<data dir>/pids/<kind>-<port>.pid` (`pid_path`), so `python -m agent_lib down` can find and stop
it (`recorded_processes`). A `ManagedProcess` is one such process: its `Popen`, its pid file, its log, and
`stop`/`kill`. With `die_with_parent=True` a watchdog (agent_lib/_watchdog.py, the kit's one die-with-parent
mechanism) ends it when the process that started it is gone.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from ._paths import data_dir
from ._watchdog import pid_alive
from ._zygote import ZygoteError, ZygoteProcess, forkable, spawn

__all__ = [
    "KINDS",
    "ManagedProcess",
    "ProcessError",
    "RecordedProcess",
    "StartStop",
    "end_process",
    "free_port",
    "kit_process_alive",
    "listens_on",
    "pid_alive",
    "pid_path",
    "port_is_free",
    "port_open",
    "process_command",
    "recorded_processes",
    "watch_over",
]


@dataclass(frozen=True)
class _Kind:
    names: str
    """What the command line of such a process contains (a recycled pid names another program)."""
    grace: float
    """Seconds `down` gives it after SIGTERM, before SIGKILL."""


KINDS = {
    "agent": _Kind("agent_lib", 3.0),
    "gemini-stub": _Kind("agent_lib", 3.0),
    "trace-viewer": _Kind("phoenix", 10.0),
    "restate-server": _Kind("restate-server", 15.0),
}
"""The kinds of process the kit records, in the order `down` stops them (agents before their server)."""


class ProcessError(RuntimeError):
    """A process the kit started exited, or did not become ready, while starting."""


def pid_path(kind: str, port: int) -> Path:
    """Return the pid file of the kit's `kind` process on `port` (a server's admin port, an agent's port)."""
    if kind not in KINDS:
        raise ValueError(f"{kind!r} is not a kind of process the kit records: one of {sorted(KINDS)}")
    return _pids_dir() / f"{kind}-{port}.pid"


def _pids_dir() -> Path:
    return data_dir() / "pids"


def _parse_pid_path(path: Path) -> tuple[str, int] | None:
    """Return the (kind, port) a pid file was named by `pid_path`, or None if `pid_path` did not name it."""
    kind, _, port = path.stem.rpartition("-")
    return (kind, int(port)) if kind in KINDS and port.isdigit() and path.suffix == ".pid" else None


def process_command(pid: int) -> str | None:
    """Return the command line of a live process (None if there is none, or it is a zombie)."""
    if not pid_alive(pid):
        return None
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.parent.is_dir():
        try:
            return cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace").strip() or None
        except OSError:
            return None
    try:
        out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


@dataclass(frozen=True)
class RecordedProcess:
    """A pid file of the kit's, and the process it names."""

    kind: str
    port: int
    pid_file: Path
    recorded: int | None
    """The pid the file holds (None if it holds no number)."""

    def live_pid(self) -> int | None:
        """Return the recorded pid if that process runs and is the kit's, else None.

        A pid file can outlive its process (a reboot, a crash) and the pid can be taken by another program
        since: that program is not ours to stop, so its command line must name what the kind says.
        """
        command = process_command(self.recorded) if self.recorded else None
        return self.recorded if command is not None and KINDS[self.kind].names in command else None

    def stop(self) -> int | None:
        """Stop the process if it is the kit's (SIGTERM, then SIGKILL after its kind's grace); return its pid.

        The pid file goes either way.
        """
        pid = self.live_pid()
        end_process(pid, self.pid_file, grace=KINDS[self.kind].grace)
        return pid


def _read(pid_file: Path) -> RecordedProcess | None:
    named = _parse_pid_path(pid_file)
    if named is None:
        return None
    try:
        text = pid_file.read_text().strip()
    except OSError:
        return None
    return RecordedProcess(named[0], named[1], pid_file, int(text) if text.isdigit() and int(text) > 0 else None)


def recorded_processes() -> list[RecordedProcess]:
    """Return every process recorded in the data dir's pid files, in the order to stop them (agents first)."""
    order = list(KINDS)
    found = [r for p in sorted(_pids_dir().glob("*.pid")) if (r := _read(p)) is not None]
    return sorted(found, key=lambda r: (order.index(r.kind), r.port))


def kit_process_alive(pid_file: Path) -> int | None:
    """Return the pid recorded in a kit pid file if that process still runs and is the kit's, else None."""
    recorded = _read(pid_file)
    return recorded.live_pid() if recorded is not None else None


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Return True if nothing listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Return True if something accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def listens_on(pid: int, port: int) -> bool | None:
    """Return whether process `pid` holds the socket that listens on TCP `port` (None: this platform cannot tell).

    Linux: the listening sockets' inodes from /proc/net/tcp and tcp6, against the process's open files. What
    `port_open` cannot tell: that the program answering on a port is the one we started, not another that took the
    port first.
    """
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            return None
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None if not Path("/proc/self/fd").is_dir() else False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                return True
        except OSError:
            continue
    return False


def end_process(
    proc: subprocess.Popen[bytes] | ZygoteProcess | int | None, pid_file: Path | None, *, grace: float | None
) -> None:
    """End a process the kit started: SIGTERM and up to `grace` seconds, then SIGKILL (grace=None: SIGKILL at once).

    `proc` is our child's `Popen` (it is reaped) or our zygote's child, or the pid of a process another run
    started. Its pid file goes too, so `make stop` does not look for it again.
    """
    if isinstance(proc, int):
        pid = proc

        def running() -> bool:
            return pid_alive(pid)

        def send(sig: int) -> None:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    elif proc is not None:
        popen: subprocess.Popen[bytes] | ZygoteProcess = proc

        def running() -> bool:
            return popen.poll() is None

        send = popen.send_signal
    if proc is not None and running():
        if grace is not None:
            send(signal.SIGTERM)
            deadline = time.monotonic() + grace
            while running() and time.monotonic() < deadline:
                time.sleep(0.02)
        if running():
            send(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while running() and time.monotonic() < deadline:
            time.sleep(0.01)
    if pid_file is not None:
        pid_file.unlink(missing_ok=True)


def watch_over(child_pid: int, pid_file: Path | None = None, parent_pid: int | None = None) -> None:
    """Start the watchdog that ends `child_pid` once `parent_pid` (default: this process) is gone."""
    cmd = [sys.executable, "-I", str(Path(__file__).with_name("_watchdog.py")), str(parent_pid or os.getpid())]
    cmd += [str(child_pid), *([str(pid_file)] if pid_file is not None else [])]
    subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


class StartStop:
    """`with thing:` starts it and stops it: for anything with `start()` (returning itself) and `stop()`."""

    def start(self) -> Self:
        """Start it (a subclass says how)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop it (a subclass says how)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ManagedProcess(StartStop):
    """One OS process the kit starts: its `Popen`, its pid file (by kind and port), its log, and how it ends.

        with ManagedProcess("agent", port, [sys.executable, "-m", "agent_lib", "serve", ...], log_path=log):
            ...

    `RestateServer` and `AgentProcess` build on it: they say what to run (`_command`, `_environment`,
    `log_path`) and what "ready" means (`_wait_ready`). It runs in a session of its own (a Ctrl-C in the
    notebook does not reach it), and with `die_with_parent=True` it ends when the process that started it does.
    """

    stop_grace = 5.0
    """Seconds `stop()` waits after SIGTERM before SIGKILL."""
    forkable = False
    """True if a `python -m` command of this kind may be forked from the kit's zygote (agent_lib/_zygote.py)."""
    error: type[ProcessError] = ProcessError
    """What `start` raises when the process exits or is not ready in time."""

    def __init__(
        self,
        kind: str,
        port: int,
        command: Sequence[str] = (),
        *,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        die_with_parent: bool = True,
    ) -> None:
        pid_path(kind, port)  # refuse an unknown kind now, not at start
        self.kind = kind
        self.die_with_parent = die_with_parent
        self._pid_port = port
        self._argv = list(command)
        self._log = log_path
        self._extra = dict(env or {})
        self._cwd = cwd
        self._proc: subprocess.Popen[bytes] | ZygoteProcess | None = None
        self._pid_file: Path | None = None

    def _command(self) -> list[str]:
        return self._argv

    def _environment(self) -> dict[str, str]:
        return {**os.environ, **self._extra}

    def _working_dir(self) -> Path | None:
        return self._cwd

    def _wait_ready(self, timeout: float) -> None:
        """Wait until the process is ready to use (a subclass says what that means): by default, at once."""

    @property
    def log_path(self) -> Path:
        """Where the process writes its output."""
        return self._log or data_dir() / "logs" / f"{self.kind}-{self._pid_port}.log"

    @property
    def pid_file(self) -> Path:
        """Where its pid is recorded, for `python -m agent_lib down`."""
        return self._pid_file or pid_path(self.kind, self._pid_port)

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.pid is not None

    def start(self, timeout: float = 60.0) -> Self:
        """Start the process (unless it runs) and wait until it is ready."""
        if not self.running:
            self._spawn()
            self._wait_ready(timeout)
        return self

    def _spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command, cwd, env = self._command(), self._working_dir(), self._environment()
        with self.log_path.open("ab") as log:
            self._proc = None
            if self.forkable and forkable(command):
                try:
                    self._proc = spawn(command, env, cwd, log.fileno())
                except ZygoteError as err:  # slower by exec, but started: the learner's work goes on
                    warnings.warn(f"{err}; starting the {self.kind} process by exec", RuntimeWarning, stacklevel=2)
            if self._proc is None:
                self._proc = subprocess.Popen(
                    command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )  # fmt: skip
        self._pid_file = pid_path(self.kind, self._pid_port)
        self._pid_file.parent.mkdir(parents=True, exist_ok=True)
        self._pid_file.write_text(str(self._proc.pid))
        if self.die_with_parent:
            watch_over(self._proc.pid, self._pid_file)

    def _wait_until(self, ready: Callable[[], bool], timeout: float, name: str, goal: str) -> None:
        """Poll `ready` often until it holds; raise `self.error`, with the log, if the process exits or times out."""
        deadline = time.monotonic() + timeout
        pause = 0.005
        while not ready():
            if self._proc is None or self._proc.poll() is not None:
                code = self._proc.returncode if self._proc is not None else "?"
                raise self.error(
                    f"{name} exited with code {code} while starting; the end of its log ({self.log_path}):\n"
                    f"{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise self.error(
                    f"{name} did not {goal} within {timeout:.0f}s: see the end of its log ({self.log_path}), "
                    f"or give it longer (start(timeout=...)):\n{self.log_tail()}"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def log_tail(self, lines: int = 30) -> str:
        """Return the last lines of the process's output."""
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, grace: float | None = None) -> None:
        """Stop the process (SIGTERM), killing it if it is still there after `grace` seconds (default `stop_grace`)."""
        proc, self._proc = self._proc, None
        end_process(proc, self.pid_file, grace=self.stop_grace if grace is None else grace)

    def kill(self) -> None:
        """Kill the process with SIGKILL, as a crash would: no cleanup, no goodbye."""
        proc, self._proc = self._proc, None
        end_process(proc, self.pid_file, grace=None)

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "not running"
        return f"{type(self).__name__}({self.kind} on port {self._pid_port}, {state})"

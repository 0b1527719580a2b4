"""Start agent processes by forking one that has imported ADK already: a process answers in a fraction of a second.

    python agent_lib/_zygote.py FD      (what `spawn` starts once per process: FD is its end of a socket pair)

An agent process spends about 2.3 s of CPU before it can answer: 1.5 s importing ADK, google-genai and the Restate
SDK, 0.5 s in what ADK imports on a first turn (`ADK_LAZY_MODULES`). Every kill and restart of a lesson pays it
again, and so does every agent process the test suite starts (~270 of them: a third of its CPU). The zygote pays it
once. It imports those packages, and nothing of agent_lib (so the next process sees an edit to the kit), then waits
for requests. A request is a command (`python -m MODULE ...`), an environment, a working directory and a log file.
The zygote forks, and the child becomes that command as `python -m` would run it: a session of its own, stdin from
/dev/null, stdout and stderr to the log, the requested environment, working directory and sys.path, the module run
as `__main__`. The child is a real process with a pid of its own: SIGKILL kills it like any other, and its pid file,
log and watchdog are the same as those of a process started by exec (agent_lib/_process.py). Its command line is
the zygote's, `python .../agent_lib/_zygote.py FD`.

What it leaves to exec: a command that is not `python -m` of this interpreter, and any platform but Linux (Windows
has no fork; macOS forbids a fork after some system libraries are loaded, so Python itself stopped forking there).
`AGENTS_SPAWN=exec` turns it off (to compare, or to rule it out). A package that reads the environment when it is
imported (OTEL_PROPAGATORS; websockets' limits) reads the zygote's: the zygote starts with the environment of the
process that first asks it, and the kit sets none of those.

It runs by path, with the lessons' packages and the standard library only (like _watchdog.py); agent_lib imports the
side that asks from here (`spawn`, `forkable`, `ForkedProcess`, `exit_like_python`, `ADK_LAZY_MODULES`).
"""

from __future__ import annotations

import functools
import gc
import importlib
import json
import os
import runpy
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

ADK_LAZY_MODULES = (
    "google.adk.workflow._node_runner_utils",
    "google.adk.workflow._workflow",
    "google.adk.workflow._llm_agent_wrapper",
    "google.adk.apps.compaction",
    "google.adk.auth.auth_preprocessor",
    "google.adk.sessions.in_memory_session_service",
)
"""What ADK imports on an agent's first turn (agent_lib.hosting.warm_adk imports them before an agent listens)."""

PRELOAD = (
    "google.genai.types",
    "google.adk",
    "google.adk.agents",
    "google.adk.runners",
    "restate",
    "hypercorn.asyncio",
    "httpx",
    "pydantic",
    *ADK_LAZY_MODULES,
)
"""What the zygote imports before it forks: the lessons' heavy packages (never agent_lib)."""

SPAWN_ENV = "AGENTS_SPAWN"
"""Set it to "exec" to start agent processes by exec, without the zygote."""

_MAX_MESSAGE = 1 << 20


# --- the zygote (runs by path) ------------------------------------------------------------------------------------


def _preload() -> None:
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # a lesson's package that is not installed: the child imports (and fails on) it as exec would
    gc.collect()
    gc.freeze()  # what is alive now stays out of the collector's sight, in pages the children share


def exit_like_python(run: Callable[[], object]) -> NoReturn:
    """In a forked child: call `run`, then end the process as Python ends a program (never back in the parent's code).

    Exit code 0 when `run` returns; a `SystemExit`'s code (its text printed, and 1, when it is not a number); 1 with
    the traceback printed for any other exception. The output is flushed, and nothing of the parent's runs after.
    """
    code = 1
    try:
        run()
        code = 0
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001,S110 (exiting: nothing left to tell)
                pass
        os._exit(code)


def _become(request: Mapping[str, object], log_fd: int, channel: socket.socket) -> None:
    """In the forked child: become `python -m MODULE ARGS` with the request's environment, directory and log."""
    channel.close()
    os.setsid()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(null)
    os.close(log_fd)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as Python sets it (the zygote ignores it)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    cwd = str(request.get("cwd") or os.getcwd())
    os.chdir(cwd)
    env = dict(request["env"])  # type: ignore[call-overload]
    os.environ.clear()
    os.environ.update(env)
    extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [cwd, *extra, *[p for p in sys.path if p not in extra and p != cwd]]
    module, args = str(request["module"]), [str(a) for a in request["args"]]  # type: ignore[attr-defined]
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def _serve(channel: socket.socket) -> int:
    """Answer requests until the process that started the zygote closes its end."""
    children: dict[int, ForkedProcess] = {}  # every child it forked, ended ones too (with their exit code)
    buffered, fds = b"", []
    while True:
        for child in children.values():
            child.poll()  # reaps the ended: no zombie holds a pid
        ready, _, _ = select.select([channel], [], [], 0.2)
        if not ready:
            continue
        data, got, _, _ = socket.recv_fds(channel, _MAX_MESSAGE, 4)
        if not data:
            return 0
        buffered += data
        fds += got
        while b"\n" in buffered:
            line, buffered = buffered.split(b"\n", 1)
            request = json.loads(line)
            if request["op"] == "spawn":
                log_fd = fds.pop(0)
                sys.stdout.flush()
                sys.stderr.flush()  # or the child would write what is buffered here a second time
                pid = os.fork()
                if pid == 0:
                    exit_like_python(functools.partial(_become, request, log_fd, channel))
                os.close(log_fd)
                children[pid] = ForkedProcess(pid)
                answer: dict[str, object] = {"pid": pid}
            else:  # "status"
                known = children.get(int(request["pid"]))
                code = known.poll() if known is not None else None
                answer = {"running": known is not None and code is None, "code": code}
            channel.sendall(json.dumps(answer).encode() + b"\n")


def main(argv: Sequence[str]) -> int:
    channel = socket.socket(fileno=int(argv[1]))
    if sys.path and sys.path[0] == str(Path(__file__).resolve().parent):
        del sys.path[0]  # run by path, Python put agent_lib/ first: its modules are not top-level ones
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for a notebook is not for the zygote
    _preload()
    channel.sendall(b'{"ready": true}\n')
    return _serve(channel)


# --- the side that asks (agent_lib/_process.py) ---------------------------------------------------------------------


class ZygoteError(RuntimeError):
    """The zygote could not start, or stopped answering."""


class _Zygote:
    """This process's zygote: started at the first spawn, asked over a socket pair.

    It goes when this process does: the socket pair's end of file tells it (no watchdog needed). The processes it
    forked stay, each with the watchdog `ManagedProcess` gave it.
    """

    def __init__(self) -> None:
        from ._paths import data_dir  # here, not above: the zygote itself runs by path

        self.owner = os.getpid()
        self.log_path = data_dir() / "logs" / "zygote.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        ours, theirs = socket.socketpair()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__)), str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        theirs.close()
        self.channel = ours
        self.lock = threading.Lock()
        self.buffered = b""
        try:
            if self._read(timeout=120.0).get("ready") is not True:
                raise ZygoteError("the zygote did not say it was ready")
        except ZygoteError:
            self.proc.kill()
            raise

    def _read(self, timeout: float = 30.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffered:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.channel], [], [], left)[0]:
                raise ZygoteError(
                    f"the zygote (pid {self.proc.pid}) did not answer within {timeout:.0f}s: see {self.log_path}"
                )
            data = self.channel.recv(65536)
            if not data:
                try:
                    code: int | None = self.proc.wait(timeout=5)  # its end of the pair closes as it exits
                except subprocess.TimeoutExpired:
                    code = None
                raise ZygoteError(f"the zygote (pid {self.proc.pid}) is gone (exit code {code}): see {self.log_path}")
            self.buffered += data
        line, self.buffered = self.buffered.split(b"\n", 1)
        answer: dict[str, object] = json.loads(line)
        return answer

    def ask(self, request: Mapping[str, object], fd: int | None = None) -> dict[str, object]:
        message = json.dumps(request).encode() + b"\n"
        with self.lock:
            try:
                sent = 0 if fd is None else socket.send_fds(self.channel, [message], [fd])
                self.channel.sendall(message[sent:])
                return self._read()
            except (OSError, ZygoteError):
                self.proc.kill()  # a late answer would be taken for the next request's: this zygote is done
                raise

    def alive(self) -> bool:
        return self.owner == os.getpid() and self.proc.poll() is None


_zygote: _Zygote | None = None
_start_lock = threading.Lock()


def _the_zygote() -> _Zygote:
    global _zygote
    with _start_lock:
        if _zygote is None or not _zygote.alive():
            _zygote = _Zygote()
        return _zygote


class ForkedProcess:
    """A forked process, with what the kit asks of a `subprocess.Popen`: pid, poll, wait, send_signal, terminate, kill.

    Its parent (this process) reaps it: `poll` waits for it without blocking. `ZygoteProcess` asks the zygote instead.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def _status(self) -> int | None:
        """The exit code if the process has ended (and is reaped), else None."""
        try:
            done, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return -signal.SIGKILL  # reaped by someone else: ended, how is not known
        return os.waitstatus_to_exitcode(status) if done else None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._status()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired([f"pid {self.pid}"], timeout or 0.0)
            time.sleep(0.01)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ZygoteProcess(ForkedProcess):
    """A process the zygote forked: the zygote reaps it, so its state is the zygote's answer."""

    def __init__(self, pid: int, zygote: _Zygote) -> None:
        super().__init__(pid)
        self._zygote = zygote

    def _status(self) -> int | None:
        try:
            answer = self._zygote.ask({"op": "status", "pid": self.pid})
        except (OSError, ZygoteError):  # the zygote is gone, and reaps no more: then no zombie holds the pid
            from ._watchdog import pid_alive  # here, not above: the zygote itself runs by path

            return None if pid_alive(self.pid) else -signal.SIGKILL
        code = answer["code"]
        return None if answer["running"] else int(code) if isinstance(code, int) else -signal.SIGKILL


def forkable(command: Sequence[str]) -> str | None:
    """Return the module of a `python -m MODULE ...` command of this interpreter the zygote can run, else None."""
    if sys.platform != "linux" or os.environ.get(SPAWN_ENV, "").lower() == "exec":
        return None
    if len(command) < 3 or command[0] != sys.executable or command[1] != "-m":
        return None
    return command[2]


def spawn(command: Sequence[str], env: Mapping[str, str], cwd: Path | None, log_fd: int) -> ZygoteProcess:
    """Start `python -m MODULE ARGS` (see `forkable`) as a child of this process's zygote; return its handle."""
    module = forkable(command)
    if module is None:
        raise ZygoteError(f"the zygote runs `python -m MODULE` of {sys.executable} only, not {list(command)}")
    request = {"op": "spawn", "module": module, "args": list(command[3:]), "env": dict(env)}
    request["cwd"] = str(cwd) if cwd is not None else os.getcwd()
    for attempt in (1, 2):  # a zygote that died (killed by hand, say) is started again once
        try:
            zygote = _the_zygote()
            answer = zygote.ask(request, fd=log_fd)  # a zygote that fails here is killed: the next try starts one
            return ZygoteProcess(int(answer["pid"]), zygote)  # type: ignore[call-overload]
        except (OSError, ZygoteError) as err:
            if attempt == 2:
                raise ZygoteError(f"the zygote could not start `{' '.join(command[1:4])} ...`: {err}") from err
    raise AssertionError("unreachable")


if __name__ == "__main__":
    sys.exit(main(sys.argv))

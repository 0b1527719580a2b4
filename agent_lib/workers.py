"""Serve an app from a process of its own (`python -m agent_lib serve`), or from N worker processes behind one port.

What an `AgentProcess` runs. `serve_command` builds its command line and `add_serve_arguments` parses it: one
place, shared by `AgentProcess`, the supervisor and the CLI.

With `workers=N` (lesson 08, "Scale the agents") a supervisor process owns the listening socket, accepts each
connection the Restate server opens and hands it to the next worker (round robin, over a Unix socket), and
restarts a worker that dies. The server keeps a few HTTP/2 connections per deployment, one or more per
partition, and runs each invocation as one stream on one of them: handing out whole connections spreads the
invocations, and a killed worker only breaks its own connections, whose invocations the server retries on the
others.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import mmap
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._paths import data_dir
from ._process import pid_alive, watch_over
from ._zygote import ForkedProcess, exit_like_python, forkable
from .hosting import asgi_app, bind_host, hypercorn_config, load_services, public_host, tune_gc, warm_adk

__all__ = [
    "WORKERS_ENV",
    "add_serve_arguments",
    "children",
    "read_counts",
    "serve_command",
    "serve_forever",
    "serve_worker",
    "worker_count",
]

WORKERS_ENV = "AGENTS_WORKERS"
"""How many worker processes `python -m agent_lib up` serves the finished agents from (default 1)."""

_WORKER_STREAMS = 50
"""HTTP/2 streams a worker lets the server run at once on one connection (a single process allows 1000).

Restate's connection pool opens another connection to a deployment when 70 % of its streams are in use,
so a low limit makes it open several connections even for a few dozen invocations, and the supervisor
deals them out to the workers. 50 is also what the pool assumes before the server's settings arrive:
a lower limit would see streams refused during that race (measured: at 32, hundreds of "unspecific
protocol error" retries at 1000 sessions; at 50, none).
"""


def children(pid: int) -> list[int]:
    """Return the pids of a process's live children (from /proc on Linux, else `pgrep -P`)."""
    proc = Path(f"/proc/{pid}/task/{pid}/children")
    if proc.exists():
        try:
            pids = [int(p) for p in proc.read_text().split()]
        except OSError:
            return []
    else:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
        pids = [int(p) for p in out.stdout.split()]
    return [p for p in pids if pid_alive(p)]


def _stats_dir(port: int) -> Path:
    return data_dir() / "workers" / f"agent-{port}"


class _Counter:
    """Count the invocation requests this process serves, in a memory-mapped file another process can read.

    The count lives in the page cache, so it is exact up to the last request even after a SIGKILL.
    """

    def __init__(self, port: int) -> None:
        path = _stats_dir(port) / f"worker-{os.getpid()}.count"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes(8))
        with path.open("r+b") as f:
            self._map = mmap.mmap(f.fileno(), 8)
        self.invocations = 0

    def wrap(self, app: Any) -> Any:
        """Return `app`, counting each request on an invocation path (/invoke/<service>/<handler>)."""

        async def counted(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope.get("path", "").startswith("/invoke/"):
                self.invocations += 1
                struct.pack_into("<q", self._map, 0, self.invocations)
            await app(scope, receive, send)

        return counted


def read_counts(port: int) -> dict[int, int]:
    counts = {}
    for path in sorted(_stats_dir(port).glob("worker-*.count")):
        with contextlib.suppress(OSError, ValueError, struct.error):
            counts[int(path.stem.removeprefix("worker-"))] = struct.unpack("<q", path.read_bytes()[:8])[0]
    return counts


def _install_shutdown(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    from restate.server import install_shutdown_hook

    def shutdown() -> None:
        stop.set()
        # Restate holds HTTP/2 streams open; nothing here needs a graceful goodbye, so do not wait for them.
        loop.call_later(0.5, os._exit, 0)

    # The Restate SDK keeps one SIGTERM dispatcher per loop; a plain add_signal_handler would be replaced by it.
    install_shutdown_hook(loop, shutdown, signal.SIGTERM)
    install_shutdown_hook(loop, shutdown, signal.SIGINT)


def serve_forever(targets: Sequence[str], port: int, parent_pid: int | None = None, workers: int = 1) -> None:
    """Serve services until SIGTERM or SIGINT, or until `parent_pid` is gone (what an AgentProcess runs).

    `parent_pid` is watched by the kit's watchdog (agent_lib/_watchdog.py), which sends SIGTERM once it is gone.
    With `workers` > 1 this process supervises that many workers.
    """
    if parent_pid is not None:
        watch_over(os.getpid(), parent_pid=parent_pid)
    if workers > 1:
        sys.exit(_Supervisor(targets, port, workers).run())
    from hypercorn.asyncio import serve

    shutil.rmtree(_stats_dir(port), ignore_errors=True)
    counter = _Counter(port)
    app = counter.wrap(asgi_app(load_services(targets)))
    warm_adk()  # before listening: a restarted agent's first turn then imports nothing (docs/PERFORMANCE.md)
    tune_gc()
    stop = asyncio.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        _install_shutdown(loop, stop)
        await serve(app, hypercorn_config(port), shutdown_trigger=stop.wait)  # type: ignore[arg-type]

    asyncio.run(main())


def serve_worker(targets: Sequence[str], port: int, channel_fd: int) -> None:
    """Serve the connections a supervisor hands over on `channel_fd`; exit when the supervisor is gone.

    What each of an `AgentProcess(..., workers=N)`'s workers runs. The connections are served by hypercorn's
    own HTTP/2 server, as `hypercorn.asyncio.serve` serves the connections it accepts itself.
    """
    from hypercorn.asyncio.tcp_server import TCPServer
    from hypercorn.asyncio.worker_context import WorkerContext
    from hypercorn.utils import wrap_app

    counter = _Counter(port)
    config = hypercorn_config(port)
    config.h2_max_concurrent_streams = _WORKER_STREAMS
    app = wrap_app(counter.wrap(asgi_app(load_services(targets))), config.wsgi_max_body_size, "asgi")
    warm_adk()
    tune_gc()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        _install_shutdown(loop, stop)
        context, state, tasks = WorkerContext(None), {}, set()  # type: ignore[var-annotated]

        async def serve(sock: socket.socket) -> None:
            reader, writer = await asyncio.open_connection(sock=sock)
            await TCPServer(app, loop, config, context, state, reader, writer)

        channel = socket.socket(fileno=channel_fd)
        channel.setblocking(False)

        def receive() -> None:
            while True:
                try:
                    data, fds, _, _ = socket.recv_fds(channel, 64, 64)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    data, fds = b"", []
                for fd in fds:
                    task = loop.create_task(serve(socket.socket(fileno=fd)))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if not data:
                    os._exit(0)  # the supervisor is gone (killed, say): go with it, as one process would

        loop.add_reader(channel.fileno(), receive)
        channel.send(b"r")
        await stop.wait()

    asyncio.run(main())


@dataclass
class _Worker:
    """One worker slot of a supervisor: its process, the supervisor's end of its channel, its state."""

    index: int
    proc: subprocess.Popen[bytes] | ForkedProcess | None = None
    channel: socket.socket | None = None
    ready: bool = False
    started: float = 0.0
    restart_at: float | None = None
    backoff: float = 0.25


class _Supervisor:
    """Own the listening socket, start N workers, hand each new connection to the next one, restart the dead."""

    def __init__(self, targets: Sequence[str], port: int, workers: int) -> None:
        self.targets, self.port = list(targets), port
        self.slots = [_Worker(i) for i in range(workers)]
        self.selector = selectors.DefaultSelector()
        self.stopping = False
        self.turn = 0
        self.waiting: list[socket.socket] = []
        self.listener: socket.socket | None = None
        # Forked from the supervisor, which the zygote forked with ADK imported, a worker listens in a fraction of a
        # second (by exec: about 2 s, lesson 08's "two workers" cell took 10 s on a loaded machine).
        self.fork = forkable([sys.executable, "-m", "agent_lib"]) is not None

    def _log(self, message: str) -> None:
        print(f"[supervisor {os.getpid()}] {message}", file=sys.stderr, flush=True)

    def _spawn(self, slot: _Worker) -> None:
        ours, theirs = socket.socketpair()
        if self.fork:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                self._become_worker(ours, theirs)
            slot.proc = ForkedProcess(pid)
        else:
            cmd = serve_command(self.targets, self.port, worker_channel=theirs.fileno())
            slot.proc = subprocess.Popen(cmd, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        theirs.close()
        ours.setblocking(False)
        slot.channel, slot.ready, slot.started, slot.restart_at = ours, False, time.monotonic(), None
        self.selector.register(ours, selectors.EVENT_READ, slot)

    def _become_worker(self, ours: socket.socket, theirs: socket.socket) -> None:
        """In a forked worker: close what is the supervisor's, then serve; never return."""

        def serve() -> None:
            # The supervisor's ends of every channel (or a worker would hold another's open past the supervisor's
            # death, and not see it), its listener, its selector, the connections waiting for a worker.
            for sock in [ours, *(s.channel for s in self.slots if s.channel), *self.waiting, self.listener]:
                if sock is not None:
                    sock.close()
            self.selector.close()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            serve_worker(self.targets, self.port, theirs.fileno())

        exit_like_python(serve)

    def _on_channel(self, slot: _Worker) -> bool:
        """Read what a worker says; return False if it died."""
        assert slot.channel is not None and slot.proc is not None
        try:
            data = slot.channel.recv(64)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            data = b""
        if data:
            slot.ready = True
            self._hand_waiting()
            return True
        self.selector.unregister(slot.channel)
        slot.channel.close()
        code = slot.proc.wait()
        lived = time.monotonic() - slot.started
        slot.backoff = 0.1 if lived > 5 else min(slot.backoff * 2, 5.0)
        slot.channel, slot.ready, slot.restart_at = None, False, time.monotonic() + slot.backoff
        how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        self._log(f"worker {slot.index} (pid {slot.proc.pid}) {how} after {lived:.1f}s; restarting it")
        return False

    def _hand(self, conn: socket.socket) -> None:
        ready = [s for s in self.slots if s.ready]
        for i in range(len(ready)):
            slot = ready[(self.turn + i) % len(ready)]
            try:
                assert slot.channel is not None
                socket.send_fds(slot.channel, [b"c"], [conn.fileno()])
            except OSError:
                slot.ready = False  # it is dying: its channel's end-of-file comes next
                continue
            self.turn = (self.turn + i + 1) % len(ready)
            conn.close()
            return
        self.waiting.append(conn)

    def _hand_waiting(self) -> None:
        waiting, self.waiting = self.waiting, []
        for conn in waiting:
            self._hand(conn)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            self._hand(conn)

    def _stop_workers(self) -> None:
        procs = [s.proc for s in self.slots if s.proc is not None and s.proc.poll() is None]
        for proc in procs:
            proc.terminate()
        deadline = time.monotonic() + 1.5
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def _poll(self, listener: socket.socket | None, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            if key.fileobj is listener and listener is not None:
                self._accept(listener)
            else:
                self._on_channel(key.data)
        now = time.monotonic()
        for slot in self.slots:
            if slot.restart_at is not None and now >= slot.restart_at and not self.stopping:
                self._spawn(slot)

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT; return the exit code."""

        def stop(*_: object) -> None:
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        shutil.rmtree(_stats_dir(self.port), ignore_errors=True)
        listener = self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((bind_host(public_host()), self.port))
        for slot in self.slots:
            self._spawn(slot)
        try:
            while not all(s.ready for s in self.slots):  # listen only once every worker can serve
                if any(s.restart_at is not None for s in self.slots):
                    self._log("a worker died while starting: see its error above")
                    return 1
                if self.stopping:
                    return 0
                self._poll(None, 0.1)
            listener.listen(1024)
            listener.setblocking(False)
            self.selector.register(listener, selectors.EVENT_READ)
            self._log(f"{len(self.slots)} workers serve port {self.port}: {[s.proc.pid for s in self.slots if s.proc]}")
            while not self.stopping:
                self._poll(listener, 0.2)
            return 0
        finally:
            listener.close()
            self._stop_workers()


def worker_count(text: str) -> int:
    """Parse a worker count (argparse applies it to a default such as $AGENTS_WORKERS, too)."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of workers: give 1 or more, e.g. 2")
    return n


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Give `parser` the arguments of `python -m agent_lib serve`, which `serve_command` writes."""
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, help="stop serving when this process is gone")
    parser.add_argument("--workers", type=worker_count, default=1, help="serve from this many worker processes")
    parser.add_argument("--worker-channel", type=int, help=argparse.SUPPRESS)
    parser.add_argument("targets", nargs="+", help="module:attribute of each service")


def serve_command(
    targets: Sequence[str],
    port: int,
    *,
    workers: int = 1,
    parent_pid: int | None = None,
    worker_channel: int | None = None,
) -> list[str]:
    """Return the command that serves `targets` on `port` (what `add_serve_arguments` parses)."""
    cmd = [sys.executable, "-m", "agent_lib", "serve", "--port", str(port)]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    if parent_pid is not None:
        cmd += ["--parent-pid", str(parent_pid)]
    if worker_channel is not None:
        cmd += ["--worker-channel", str(worker_channel)]
    return [*cmd, "--", *targets]

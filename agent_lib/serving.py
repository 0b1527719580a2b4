"""Host a Restate app: inside this notebook's kernel, or as a separate OS process you can kill -9.

Lesson 01 serves an agent in the kernel; lesson 02 runs one as a process and kills it.
Either way the deployment is registered with the Restate server, and `start` returns
only once the server lists its services. Agents are named by where they live,
"module:attribute" (e.g. "agent_lib.agents.weather:weather_service"), so a process
can import them by itself.

Services bind to 127.0.0.1. For a server in Docker, set RESTATE_SERVICE_HOST to the
name the container uses for this machine (host.docker.internal): services then bind to
all interfaces and register under that name.

`AgentProcess(..., workers=N)` serves one app from N worker processes behind one port and
one deployment (lesson 08, "Scale the agents"). A supervisor process owns the listening
socket, accepts each connection the Restate server opens and hands it to the next worker
(round robin, over a Unix socket), and restarts a worker that dies. The server keeps a few
HTTP/2 connections per deployment, one or more per partition, and runs each invocation as
one stream on one of them: handing out whole connections spreads the invocations, and a
killed worker only breaks its own connections, whose invocations the server retries on
the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
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

import httpx

from ._paths import REPO_ROOT, data_dir
from .clients import Admin, RestateError
from .server import end_process, free_port, port_is_free

__all__ = [
    "GC_ENV",
    "WORKERS_ENV",
    "AgentProcess",
    "KernelDeployment",
    "Load",
    "ServingError",
    "drive_load",
    "load_services",
    "serve_forever",
    "serve_in_kernel",
    "serve_worker",
    "tune_gc",
]

WORKERS_ENV = "AGENTS_WORKERS"
"""How many worker processes `python -m agent_lib up` serves the finished agents from (default 1)."""

IDENTITY_KEYS_ENV = "RESTATE_IDENTITY_KEYS"
"""Public keys (`publickeyv1_...`, comma-separated) whose signed requests an agent process accepts; unset: any request.

The server signs with the matching private key (RESTATE_WORKER__INVOKER__REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE);
deploy/k8s wires both from one Secret.
"""

Targets = str | Sequence[str]


class ServingError(RuntimeError):
    """An agent could not be served or registered."""


def _as_list(targets: Targets) -> list[str]:
    return [targets] if isinstance(targets, str) else list(targets)


def load_services(targets: Targets) -> list[Any]:
    """Import "module:attribute" targets and return the Restate services they name."""
    services = []
    for target in _as_list(targets):
        module_name, sep, attr = target.partition(":")
        if not sep or not attr:
            raise ServingError(f"{target!r} is not 'module:attribute', e.g. 'agent_lib.agents.weather:weather_service'")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ServingError(f"cannot import {module_name!r} for {target!r}: {err}") from err
        if not hasattr(module, attr):
            raise ServingError(f"module {module_name!r} has no attribute {attr!r}")
        services.append(getattr(module, attr))
    return services


def _public_host() -> str:
    return os.environ.get("RESTATE_SERVICE_HOST", "127.0.0.1")


def _bind_host(public_host: str) -> str:
    return "127.0.0.1" if public_host in ("127.0.0.1", "localhost") else "0.0.0.0"


def _hypercorn_config(port: int, public_host: str | None = None) -> Any:
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{_bind_host(public_host or _public_host())}:{port}"]
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    config.graceful_timeout = 1.0
    config.h2_max_concurrent_streams = 1000  # the server runs each invocation as one HTTP/2 stream
    config.keep_alive_max_requests = 2**31  # else hypercorn closes an HTTP/2 connection after 1000 invocations
    return config


_ADK_LAZY_MODULES = (
    "google.adk.workflow._node_runner_utils",
    "google.adk.workflow._workflow",
    "google.adk.workflow._llm_agent_wrapper",
    "google.adk.apps.compaction",
    "google.adk.auth.auth_preprocessor",
    "google.adk.sessions.in_memory_session_service",
)


_WORKER_STREAMS = 50
"""HTTP/2 streams a worker lets the server run at once on one connection (a single process allows 1000).

Restate's connection pool opens another connection to a deployment when 70 % of its streams are in use,
so a low limit makes it open several connections even for a few dozen invocations, and the supervisor
deals them out to the workers. 50 is also what the pool assumes before the server's settings arrive:
a lower limit would see streams refused during that race (measured: at 32, hundreds of "unspecific
protocol error" retries at 1000 sessions; at 50, none).
"""


def _warm_adk() -> None:
    """Import what ADK imports on an agent's first turn, so a restarted agent answers at once (bench figure 4)."""
    if "google.adk" not in sys.modules:
        return
    for name in _ADK_LAZY_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


GC_ENV = "AGENTS_GC"
"""Set it to "default" to leave an agent process's garbage collector as Python sets it (to measure tune_gc)."""


def tune_gc() -> None:
    """Freeze what is alive now out of the garbage collector's sight, and collect young objects less often.

    An agent process holds ADK, pydantic and the SDK (hundreds of thousands of objects) and, under load, hundreds
    of invocations in flight; every full collection walks all of them. Measured at 1000 sessions: the agent spent
    7.5 ms of CPU per turn with the default collector, 4.9 ms with this (bench/collapse.py, variants 3 and 4).
    """
    if os.environ.get(GC_ENV) == "default":
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)


def _asgi_app(services: Sequence[Any]) -> Any:
    """Return the Restate ASGI app, answering ASGI lifespan events (hypercorn warns when nobody does)."""
    import restate

    keys = [k.strip() for k in os.environ.get(IDENTITY_KEYS_ENV, "").split(",") if k.strip()]
    app = restate.app(list(services), identity_keys=keys or None)

    async def with_lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    return with_lifespan


def _wait_listed(admin: Admin, services: Sequence[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        missing = set(services) - set(admin.services())
        if not missing:
            return
        if time.monotonic() > deadline:
            raise ServingError(f"the server does not list {sorted(missing)} after registration")
        time.sleep(0.1)


def _service_names(services: Sequence[Any]) -> list[str]:
    return [s.name for s in services]


class KernelDeployment:
    """A Restate app served by a hypercorn task in this kernel's event loop."""

    def __init__(
        self, services: Sequence[Any], port: int, task: asyncio.Task[None], stop: asyncio.Event, host: str
    ) -> None:
        self.services = _service_names(services)
        self.port = port
        self.url = f"http://{host}:{port}"
        self.deployment_id: str | None = None
        self._task = task
        self._stop = stop

    @property
    def running(self) -> bool:
        """True while the hypercorn task runs."""
        return not self._task.done()

    async def stop(self) -> None:
        """Stop serving (the registration stays; invocations wait until it is served again)."""
        self._stop.set()
        await self._task

    def __repr__(self) -> str:
        return f"KernelDeployment({self.services} at {self.url}, running={self.running})"


async def serve_in_kernel(
    targets: Targets | Sequence[Any], *, port: int | None = None, admin: Admin | None = None, host: str | None = None
) -> KernelDeployment:
    """Serve services (objects, or "module:attribute" names) in this event loop, and register them.

    `host` is the name the Restate server uses to reach this machine (default RESTATE_SERVICE_HOST, else 127.0.0.1).
    """
    from hypercorn.asyncio import serve

    items = _as_list(targets) if isinstance(targets, str) else list(targets)
    services = [load_services(t)[0] if isinstance(t, str) else t for t in items]
    port = port or free_port()
    host = host or _public_host()
    stop = asyncio.Event()
    app = _asgi_app(services)
    task = asyncio.get_running_loop().create_task(
        serve(app, _hypercorn_config(port, host), shutdown_trigger=stop.wait)  # type: ignore[arg-type]
    )
    deployment = KernelDeployment(services, port, task, stop, host)
    for _ in range(200):
        if task.done():
            task.result()
            raise ServingError(f"the in-kernel server on port {port} stopped at once")
        if _port_open(port):
            break
        await asyncio.sleep(0.025)
    admin = admin or Admin()
    answer = await admin.aregister(deployment.url)
    deployment.deployment_id = answer.get("id")
    await asyncio.to_thread(_wait_listed, admin, deployment.services)
    return deployment


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


class AgentProcess:
    """Services served by a separate Python process, which can be killed with SIGKILL and restarted.

    With `workers=N` (N > 1) that process is a supervisor of N worker processes that serve the same app
    behind the same port and deployment (see the module's docstring): `kill()` still kills it all,
    `kill_worker()` kills one worker, which the supervisor restarts.
    """

    def __init__(
        self,
        targets: Targets,
        *,
        port: int | None = None,
        env: dict[str, str] | None = None,
        admin: Admin | None = None,
        name: str | None = None,
        die_with_parent: bool = True,
        host: str | None = None,
        workers: int = 1,
    ) -> None:
        if workers < 1:
            raise ServingError(f"workers={workers}: an agent needs at least 1 worker process")
        self.workers = workers
        self.targets = _as_list(targets)
        self.die_with_parent = die_with_parent
        self.port = port or free_port()
        self.env = dict(env or {})
        self.admin = admin or Admin()
        self.name = name or self.targets[0].rpartition(":")[2]
        self.host = host or _public_host()
        self.url = f"http://{self.host}:{self.port}"
        self.deployment_id: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        """Where the process writes its output."""
        return data_dir() / "logs" / f"{self.name}-{self.port}.log"

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.pid is not None

    def _pid_file(self) -> Path:
        return data_dir() / "pids" / f"agent-{self.port}.pid"

    def start(self, timeout: float = 60.0, *, register: bool | None = None) -> AgentProcess:
        """Start the process, wait until it listens, and register it (by default, unless the server knows it)."""
        if self.running:
            return self
        if not port_is_free(self.port):
            raise ServingError(
                f"port {self.port} is already taken by another program: stop it, or let AgentProcess pick a free port"
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "agent_lib", "serve", "--port", str(self.port), *self.targets]
        if self.workers > 1:
            cmd[4:4] = ["--workers", str(self.workers)]
        if self.die_with_parent:
            cmd[4:4] = ["--parent-pid", str(os.getpid())]
        env = {**os.environ, **self.env, "RESTATE_SERVICE_HOST": self.host}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self._pid_file().parent.mkdir(parents=True, exist_ok=True)
        self._pid_file().write_text(str(self._proc.pid))
        deadline = time.monotonic() + timeout
        while not _port_open(self.port):
            if self._proc.poll() is not None:
                raise ServingError(
                    f"the agent process {self.targets} exited with code {self._proc.returncode}; "
                    f"the end of its log ({self.log_path}):\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise ServingError(f"the agent process did not listen on port {self.port} within {timeout:.0f}s")
            time.sleep(0.02)
        if register if register is not None else not self._registered():
            answer = self.admin.register(self.url)
            self.deployment_id = answer.get("id")
            _wait_listed(self.admin, [s["name"] for s in answer.get("services", [])])
        return self

    def _registered(self) -> bool:
        """Return whether the server knows this process's deployment (True if its admin API does not answer).

        A server whose data was wiped (lesson 05 stops its server and deletes it) forgets every deployment: a
        process started again on it must register again, or calls to its services find no deployment.
        """
        if self.deployment_id is None:
            return False
        probe = Admin(self.admin.url, timeout=5.0, retry_for=0.0)
        try:
            return any(d.get("id") == self.deployment_id for d in probe.deployments())
        except (ConnectionError, RestateError, httpx.HTTPError):
            return True
        finally:
            probe.close()

    def log_tail(self, lines: int = 30) -> str:
        """Return the last lines of the process's output."""
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """Kill the process with SIGKILL, as a crash would: no cleanup, no goodbye."""
        proc, self._proc = self._proc, None
        end_process(proc, self._pid_file(), grace=None)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the process (SIGTERM), killing it if it lingers: Restate needs no goodbye from it."""
        proc, self._proc = self._proc, None
        end_process(proc, self._pid_file(), grace=timeout)

    def restart(self, timeout: float = 60.0) -> AgentProcess:
        """Start the process again on the same port (after a kill, the same deployment resumes)."""
        self.stop()
        return self.start(timeout)

    @property
    def worker_pids(self) -> list[int]:
        """The pids of the processes that serve invocations: the process itself, or its workers."""
        if self.pid is None:
            return []
        if self.workers == 1:
            return [self.pid]
        return _children(self.pid)

    def wait_for_workers(self, timeout: float = 60.0) -> list[int]:
        """Wait until all the workers run (e.g. after `kill_worker`, while the supervisor restarts one)."""
        deadline = time.monotonic() + timeout
        while len(pids := self.worker_pids) < self.workers:
            if not self.running:
                raise ServingError(f"the agent process is not running: start it; its log:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise ServingError(
                    f"{len(pids)} of {self.workers} workers run after {timeout:.0f}s; the log:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        return pids

    def kill_worker(self, pid: int | None = None) -> int:
        """Kill one worker with SIGKILL (the first, or `pid`) and return its pid; the supervisor starts another."""
        if self.workers == 1:
            raise ServingError("this AgentProcess has a single process and no workers: use kill(), or workers=2")
        pids = self.worker_pids
        if not pids or (pid is not None and pid not in pids):
            raise ServingError(f"no worker {pid or ''} to kill: the workers are {pids or 'not running'}")
        victim = pid if pid is not None else pids[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while victim in self.worker_pids and time.monotonic() < deadline:
            time.sleep(0.01)
        return victim

    def invocations_by_worker(self) -> dict[int, int]:
        """How many invocation requests each worker process served since the start, by pid (dead workers too).

        Each process counts the requests the server sends it: an invocation that suspends and resumes, or
        is retried after a crash, counts again.
        """
        return _read_counts(self.port)

    def __enter__(self) -> AgentProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "not running"
        workers = f", {self.workers} workers" if self.workers > 1 else ""
        return f"AgentProcess({self.targets} at {self.url}{workers}, {state})"


@dataclass
class Load:
    """What `drive_load` measured: the turns answered, the failures, the wall time, and each turn's invocation."""

    sessions: int
    turns: int
    failed: int
    seconds: float
    answers: dict[str, list[Any]]
    """Each session's answers, in order."""
    invocation_ids: list[str]

    @property
    def turns_per_s(self) -> float:
        """Answered turns per second of wall time."""
        return self.turns / self.seconds if self.seconds > 0 else 0.0

    def __repr__(self) -> str:
        return (
            f"Load({self.sessions} sessions: {self.turns} turns answered, {self.failed} failed, "
            f"in {self.seconds:.1f}s = {self.turns_per_s:.1f} turns/s)"
        )


async def drive_load(
    ingress_url: str, service: str, message: str, *, sessions: int, turns: int, handler: str = "run"
) -> Load:
    """Send `turns` turns to each of `sessions` sessions of a virtual object at once, and time them (lesson 08).

    Each session is one user: its own connection to the ingress, one turn after another. Each turn is a call
    with an idempotency key, so the ingress answers it once even if it is sent again.
    """
    import ssl

    import httpx

    tls = ssl.create_default_context()  # one for all the sessions' clients: each costs milliseconds to build
    run = os.urandom(4).hex()
    answers: dict[str, list[Any]] = {}
    ids: list[str] = []
    failed = 0

    async def session(i: int) -> None:
        nonlocal failed
        key = f"load-{run}-{i}"
        answers[key] = []
        async with httpx.AsyncClient(base_url=ingress_url, timeout=600, verify=tls) as http:
            for turn in range(turns):
                try:
                    response = await http.post(
                        f"/{service}/{key}/{handler}", json=message, headers={"idempotency-key": f"{key}-{turn}"}
                    )
                    response.raise_for_status()
                except httpx.HTTPError:
                    failed += 1
                    continue
                answers[key].append(response.json())
                ids.append(response.headers.get("x-restate-id", ""))

    start = time.perf_counter()
    await asyncio.gather(*(session(i) for i in range(sessions)))
    seconds = time.perf_counter() - start
    return Load(sessions, sum(len(a) for a in answers.values()), failed, seconds, answers, ids)


async def _watch_parent(pid: int, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            stop.set()
            asyncio.get_running_loop().call_later(0.5, os._exit, 0)
            return
        await asyncio.sleep(1.0)


def _alive(pid: int) -> bool:
    """True if the process runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _children(pid: int) -> list[int]:
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
    return [p for p in pids if _alive(p)]


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


def _read_counts(port: int) -> dict[int, int]:
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

    Watching the parent means an agent started by a notebook's kernel stops when that kernel dies,
    instead of living on as an orphan. With `workers` > 1 this process supervises that many workers.
    """
    if workers > 1:
        sys.exit(_Supervisor(targets, port, workers, parent_pid).run())
    from hypercorn.asyncio import serve

    shutil.rmtree(_stats_dir(port), ignore_errors=True)
    counter = _Counter(port)
    app = counter.wrap(_asgi_app(load_services(targets)))
    _warm_adk()
    tune_gc()
    stop = asyncio.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        _install_shutdown(loop, stop)
        if parent_pid is not None:
            loop.create_task(_watch_parent(parent_pid, stop))
        await serve(app, _hypercorn_config(port), shutdown_trigger=stop.wait)  # type: ignore[arg-type]

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
    config = _hypercorn_config(port)
    config.h2_max_concurrent_streams = _WORKER_STREAMS
    app = wrap_app(counter.wrap(_asgi_app(load_services(targets))), config.wsgi_max_body_size, "asgi")
    _warm_adk()
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
    proc: subprocess.Popen[bytes] | None = None
    channel: socket.socket | None = None
    ready: bool = False
    started: float = 0.0
    restart_at: float | None = None
    backoff: float = 0.25


class _Supervisor:
    """Own the listening socket, start N workers, hand each new connection to the next one, restart the dead."""

    def __init__(self, targets: Sequence[str], port: int, workers: int, parent_pid: int | None) -> None:
        self.targets, self.port, self.parent_pid = list(targets), port, parent_pid
        self.slots = [_Worker(i) for i in range(workers)]
        self.selector = selectors.DefaultSelector()
        self.stopping = False
        self.turn = 0
        self.waiting: list[socket.socket] = []

    def _log(self, message: str) -> None:
        print(f"[supervisor {os.getpid()}] {message}", file=sys.stderr, flush=True)

    def _spawn(self, slot: _Worker) -> None:
        ours, theirs = socket.socketpair()
        cmd = [sys.executable, "-m", "agent_lib", "serve", "--port", str(self.port)]
        cmd += ["--worker-channel", str(theirs.fileno()), *self.targets]
        slot.proc = subprocess.Popen(cmd, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        theirs.close()
        ours.setblocking(False)
        slot.channel, slot.ready, slot.started, slot.restart_at = ours, False, time.monotonic(), None
        self.selector.register(ours, selectors.EVENT_READ, slot)

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
        if self.parent_pid is not None and not _alive(self.parent_pid):
            self.stopping = True

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT (or the parent is gone); return the exit code."""

        def stop(*_: object) -> None:
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        shutil.rmtree(_stats_dir(self.port), ignore_errors=True)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((_bind_host(_public_host()), self.port))
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

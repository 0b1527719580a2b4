"""Host a Restate app: inside this notebook's kernel, or as a separate OS process you can kill -9.

Lesson 01 serves an agent in the kernel; lesson 02 runs one as a process and kills it.
Either way the deployment is registered with the Restate server, and `start` returns
only once the server lists its services. Agents are named by where they live,
"module:attribute" (e.g. "agent_lib.agents.weather:weather_service"), so a process
can import them by itself.

Services bind to 127.0.0.1. For a server in Docker, set RESTATE_SERVICE_HOST to the
name the container uses for this machine (host.docker.internal): services then bind to
all interfaces and register under that name.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._paths import REPO_ROOT, data_dir
from .clients import Admin
from .server import end_process, free_port, port_is_free

__all__ = ["AgentProcess", "KernelDeployment", "ServingError", "load_services", "serve_forever", "serve_in_kernel"]

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


def _warm_adk() -> None:
    """Import what ADK imports on an agent's first turn, so a restarted agent answers at once (bench figure 4)."""
    if "google.adk" not in sys.modules:
        return
    for name in _ADK_LAZY_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _asgi_app(services: Sequence[Any]) -> Any:
    """Return the Restate ASGI app, answering ASGI lifespan events (hypercorn warns when nobody does)."""
    import restate

    app = restate.app(list(services))

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
    """Services served by a separate Python process, which can be killed with SIGKILL and restarted."""

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
    ) -> None:
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
        """Start the process, wait until it listens, and register it (first start only, by default)."""
        if self.running:
            return self
        if not port_is_free(self.port):
            raise ServingError(
                f"port {self.port} is already taken by another program: stop it, or let AgentProcess pick a free port"
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "agent_lib", "serve", "--port", str(self.port), *self.targets]
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
        if register if register is not None else self.deployment_id is None:
            answer = self.admin.register(self.url)
            self.deployment_id = answer.get("id")
            _wait_listed(self.admin, [s["name"] for s in answer.get("services", [])])
        return self

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

    def __enter__(self) -> AgentProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "not running"
        return f"AgentProcess({self.targets} at {self.url}, {state})"


async def _watch_parent(pid: int, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            stop.set()
            asyncio.get_running_loop().call_later(0.5, os._exit, 0)
            return
        await asyncio.sleep(1.0)


def serve_forever(targets: Sequence[str], port: int, parent_pid: int | None = None) -> None:
    """Serve services until SIGTERM or SIGINT, or until `parent_pid` is gone (what an AgentProcess runs).

    Watching the parent means an agent started by a notebook's kernel stops when that kernel dies,
    instead of living on as an orphan.
    """
    from hypercorn.asyncio import serve
    from restate.server import install_shutdown_hook

    app = _asgi_app(load_services(targets))
    _warm_adk()
    stop = asyncio.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def shutdown() -> None:
            stop.set()
            # Restate holds HTTP/2 streams open; nothing here needs a graceful goodbye, so do not wait for them.
            loop.call_later(0.5, os._exit, 0)

        # The Restate SDK keeps one SIGTERM dispatcher per loop; a plain add_signal_handler would be replaced by it.
        install_shutdown_hook(loop, shutdown, signal.SIGTERM)
        install_shutdown_hook(loop, shutdown, signal.SIGINT)
        if parent_pid is not None:
            loop.create_task(_watch_parent(parent_pid, stop))
        await serve(app, _hypercorn_config(port), shutdown_trigger=stop.wait)  # type: ignore[arg-type]

    asyncio.run(main())

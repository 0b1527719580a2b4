"""Host a Restate app inside this notebook's kernel, and register it: lesson 01 and on.

    deployment = await serve_in_kernel(["agent_lib.agents.weather:weather_service"])

`start` returns only once the server lists the services. The kit's other ways to serve an app live next door,
and their names are importable from here too: `AgentProcess` (a separate OS process you can kill -9,
agent_lib/agent_process.py), its worker processes (agent_lib/workers.py), what they share (agent_lib/hosting.py)
and load generation (`drive_load`, agent_lib/load.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ._process import free_port, port_open
from .agent_process import AgentProcess
from .clients import Admin
from .hosting import (
    GC_ENV,
    IDENTITY_KEYS_ENV,
    ServingError,
    Targets,
    as_list,
    asgi_app,
    bind_host,
    hypercorn_config,
    load_services,
    public_host,
    service_names,
    tune_gc,
    wait_listed,
)
from .load import Load, drive_load
from .workers import WORKERS_ENV, serve_forever, serve_worker

_bind_host = bind_host  # the name tests/test_deploy.py imports

__all__ = [
    "GC_ENV",
    "IDENTITY_KEYS_ENV",
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

PORT_WAIT_S = 30.0
"""How long `serve_in_kernel` waits for hypercorn to listen before it says so."""


class KernelDeployment:
    """A Restate app served by a hypercorn task in this kernel's event loop."""

    def __init__(
        self, services: Sequence[Any], port: int, task: asyncio.Task[None], stop: asyncio.Event, host: str
    ) -> None:
        self.services = service_names(services)
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

    items = as_list(targets) if isinstance(targets, str) else list(targets)
    services = [load_services(t)[0] if isinstance(t, str) else t for t in items]
    port = port or free_port()
    host = host or public_host()
    stop = asyncio.Event()
    app = asgi_app(services)
    task = asyncio.get_running_loop().create_task(
        serve(app, hypercorn_config(port, host), shutdown_trigger=stop.wait)  # type: ignore[arg-type]
    )
    deployment = KernelDeployment(services, port, task, stop, host)
    await _wait_listening(task, port)
    admin = admin or Admin()
    answer = await admin.aregister(deployment.url)
    deployment.deployment_id = answer.get("id")
    await asyncio.to_thread(wait_listed, admin, deployment.services)
    return deployment


async def _wait_listening(task: asyncio.Task[None], port: int) -> None:
    """Wait until the hypercorn task listens on `port`; raise ServingError, saying what to do, if it never does."""
    timeout = PORT_WAIT_S
    deadline = asyncio.get_running_loop().time() + timeout
    while not port_open(port):
        if task.done():
            task.result()  # its own error (e.g. the port is taken), if it has one
            raise ServingError(f"the in-kernel server on port {port} stopped at once: see the error above")
        if asyncio.get_running_loop().time() > deadline:
            task.cancel()
            raise ServingError(
                f"the in-kernel server did not listen on port {port} within {timeout:.0f}s: "
                "restart the kernel if an earlier cell still serves there, or pass another port=..."
            )
        await asyncio.sleep(0.01)

"""What every way of serving an app shares: services loaded by name, their ASGI app, hypercorn's settings.

`serving.serve_in_kernel` serves the app in the kernel's event loop, `agent_process.AgentProcess` in a process of
its own, and `workers` from several worker processes behind one port; all three build the app here.

Services bind to 127.0.0.1. For a server in Docker, set RESTATE_SERVICE_HOST to the name the container uses for
this machine (host.docker.internal): services then bind to all interfaces and register under that name.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from ._process import ProcessError
from ._zygote import ADK_LAZY_MODULES
from .clients import Admin
from .identity import IDENTITY_KEYS_ENV

__all__ = [
    "GC_ENV",
    "IDENTITY_KEYS_ENV",
    "ServingError",
    "Targets",
    "as_list",
    "asgi_app",
    "bind_host",
    "hypercorn_config",
    "load_services",
    "public_host",
    "service_names",
    "tune_gc",
    "wait_listed",
    "warm_adk",
]

Targets = str | Sequence[str]


class ServingError(ProcessError):
    """An agent could not be served or registered."""


def as_list(targets: Targets) -> list[str]:
    """Return one "module:attribute" or several as a list."""
    return [targets] if isinstance(targets, str) else list(targets)


def load_services(targets: Targets) -> list[Any]:
    """Import "module:attribute" targets and return the Restate services they name."""
    services = []
    for target in as_list(targets):
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


def public_host() -> str:
    """Return the name the Restate server uses to reach this machine (RESTATE_SERVICE_HOST, else 127.0.0.1)."""
    return os.environ.get("RESTATE_SERVICE_HOST", "127.0.0.1")


def bind_host(host: str) -> str:
    """Return where to listen for a server that reaches us as `host`: loopback, or all interfaces."""
    return "127.0.0.1" if host in ("127.0.0.1", "localhost") else "0.0.0.0"


def hypercorn_config(port: int, host: str | None = None) -> Any:
    """Return hypercorn's settings for serving on `port` to a server that reaches us as `host`."""
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{bind_host(host or public_host())}:{port}"]
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    config.graceful_timeout = 1.0
    config.h2_max_concurrent_streams = 1000  # the server runs each invocation as one HTTP/2 stream
    config.keep_alive_max_requests = 2**31  # else hypercorn closes an HTTP/2 connection after 1000 invocations
    return config


def warm_adk() -> None:
    """Import what ADK imports on an agent's first turn, so a restarted agent answers at once (bench figure 4)."""
    if "google.adk" not in sys.modules:
        return
    for name in ADK_LAZY_MODULES:
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


def asgi_app(services: Sequence[Any]) -> Any:
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


def wait_listed(admin: Admin, services: Sequence[str], timeout: float = 30.0) -> None:
    """Wait until the server lists these services (a registration has spread to its schema)."""
    deadline = time.monotonic() + timeout
    while True:
        missing = set(services) - set(admin.services())
        if not missing:
            return
        if time.monotonic() > deadline:
            raise ServingError(f"the server does not list {sorted(missing)} after registration")
        time.sleep(0.1)


def service_names(services: Sequence[Any]) -> list[str]:
    """Return the names of Restate services."""
    return [s.name for s in services]

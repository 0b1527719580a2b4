"""A trace viewer a learner runs: Arize Phoenix, from its own venv, started and stopped like the server.

Lesson 12 needs no viewer (its `TraceCollector` keeps the spans in the kernel), but a viewer is how people browse
traces. `make tracing` installs Phoenix from `requirements/tracing.txt` into `.venv-tracing/` (not into `.venv`: its
packages would change the lessons' locked set) and starts it with `python -m agent_lib viewer`:

    with PhoenixViewer(port=free_port()) as phoenix:
        collector = TraceCollector(forward_to=phoenix.endpoint)

A running viewer records its pid like every process the kit starts (kind `trace-viewer`), so `make stop` stops it,
and `running_endpoint()` finds it: a `TraceCollector` made without `forward_to` forwards to it.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from ._paths import REPO_ROOT, data_dir
from ._process import ManagedProcess, ProcessError, free_port, port_is_free, recorded_processes
from .clients import forwarded_url

__all__ = [
    "DEFAULT_PORT",
    "KIND",
    "TRACING_VENV_ENV",
    "PhoenixViewer",
    "ViewerError",
    "describe",
    "phoenix_binary",
    "running_endpoint",
    "running_viewer",
    "tracing_venv",
]

DEFAULT_PORT = 6006
"""Phoenix's own default port: its UI, its API and its OTLP/HTTP endpoint (`/v1/traces`)."""

KIND = "trace-viewer"
"""The kind of process its pid file names (`<data dir>/pids/trace-viewer-<port>.pid`)."""

TRACING_VENV_ENV = "TRACING_VENV"
"""Where the tracing extra is installed (default `<repo>/.venv-tracing`; a relative path is from the repo)."""


def _url(port: int) -> str:
    """Phoenix's address on this machine: its UI at `/`, its REST API at `/v1/...`, OTLP/HTTP at `/v1/traces`."""
    return f"http://127.0.0.1:{port}"


class ViewerError(ProcessError):
    """The trace viewer is not installed, its port is taken, or it did not start."""


def tracing_venv() -> Path:
    """Return the venv that holds the tracing extra (TRACING_VENV, else `<repo>/.venv-tracing`)."""
    path = Path(os.environ.get(TRACING_VENV_ENV) or ".venv-tracing")
    return path if path.is_absolute() else REPO_ROOT / path


def phoenix_binary(venv: Path | None = None) -> Path:
    """Return Phoenix's command in the tracing venv; raise ViewerError, saying how to install it, if it is not there."""
    venv = venv or tracing_venv()
    binary = venv / "bin" / "phoenix"
    if not os.access(binary, os.X_OK):
        raise ViewerError(
            f"the trace viewer is not installed ({binary} is missing): run `make tracing`, which installs "
            "Arize Phoenix (requirements/tracing.txt) into .venv-tracing/ and starts it"
        )
    return binary


class PhoenixViewer(ManagedProcess):
    """Arize Phoenix on 127.0.0.1:`port`: its UI at `/`, OTLP/HTTP at `/v1/traces`, its data in `working_dir`.

    It serves OTLP over gRPC too; that port is a free one unless `grpc_port` is given (Phoenix's default, 4317, is
    often another collector's).
    """

    stop_grace = 10.0
    error = ViewerError

    def __init__(
        self,
        port: int = DEFAULT_PORT,
        *,
        grpc_port: int | None = None,
        working_dir: Path | None = None,
        venv: Path | None = None,
        env: dict[str, str] | None = None,
        die_with_parent: bool = True,
    ) -> None:
        super().__init__(KIND, port, env=env, die_with_parent=die_with_parent)
        self.port = port
        self.grpc_port = grpc_port
        self.working_dir = working_dir or data_dir() / "phoenix"
        self.venv = venv or tracing_venv()

    @property
    def url(self) -> str:
        """Phoenix's own address on this machine."""
        return _url(self.port)

    @property
    def ui_url(self) -> str:
        """The address a browser opens (in a codespace, the forwarded one)."""
        return forwarded_url(self.url + "/")

    @property
    def endpoint(self) -> str:
        """Phoenix's OTLP/HTTP endpoint (protobuf), for `TraceCollector(forward_to=...)` or a tracing-endpoint."""
        return self.url + "/v1/traces"

    def healthy(self) -> bool:
        """Return True if Phoenix answers its health check."""
        try:
            return httpx.get(self.url + "/healthz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_PORT": str(self.port),
            "PHOENIX_GRPC_PORT": str(self.grpc_port or free_port()),
            "PHOENIX_WORKING_DIR": str(self.working_dir),
            "PHOENIX_TELEMETRY_ENABLED": "false",
            "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
            **self._extra,
        }

    def _wait_ready(self, timeout: float) -> None:
        self._wait_until(self.healthy, timeout, f"Phoenix on port {self.port}", "answer on /healthz")

    def start(self, timeout: float = 120.0) -> PhoenixViewer:
        """Start Phoenix and wait until it answers (it takes several seconds: it sets up its database first)."""
        if self.running:
            return self
        self._argv = [str(phoenix_binary(self.venv)), "serve"]
        if not port_is_free(self.port):
            raise ViewerError(
                f"port {self.port} is already taken by another program: stop it (`make stop` stops the kit's own "
                f"viewer), or choose another port (`make tracing VIEWER_PORT=6007`, `viewer --port 6007`)"
            )
        self.working_dir.mkdir(parents=True, exist_ok=True)
        super().start(timeout)
        return self


def running_viewer() -> tuple[int, int] | None:
    """Return (port, pid) of the running trace viewer the kit started (recorded in its data dir), or None."""
    for recorded in recorded_processes():
        if recorded.kind == KIND and (pid := recorded.live_pid()) is not None:
            return recorded.port, pid
    return None


def running_endpoint() -> str | None:
    """Return the OTLP/HTTP endpoint of the trace viewer the kit started (`make tracing`), if one runs, else None."""
    found = running_viewer()
    return _url(found[0]) + "/v1/traces" if found else None


def trace_link(port: int, trace_id: str, timeout: float = 2.0) -> str | None:
    """Return the link to one trace in the Phoenix on `port` (its page needs the project's id), or None if unknown."""
    try:
        answer = httpx.get(_url(port) + "/v1/projects", timeout=timeout)
        projects = answer.json().get("data", []) if answer.status_code == 200 else []
    except (httpx.HTTPError, ValueError):
        return None
    ids = [p.get("id") for p in projects if isinstance(p, dict) and p.get("name") == "default"]
    if not ids or not trace_id:
        return None
    return forwarded_url(f"{_url(port)}/projects/{ids[0]}/traces/{trace_id}")


def describe(forward_to: str | None, trace_id: str = "") -> str:
    """Say where a collector's spans go besides this kernel: a running Phoenix (with a link, to `trace_id`'s page
    when given and Phoenix knows its project), another viewer, or none."""
    if not forward_to:
        return (
            "No trace viewer runs: the spans stay in this kernel. `make tracing` starts Phoenix; "
            "run this notebook again, and every turn shows there too."
        )
    found = running_viewer()
    if found and forward_to == _url(found[0]) + "/v1/traces":
        page = trace_link(found[0], trace_id) if trace_id else None
        if page:
            return f"Phoenix has these traces too: this turn's is at {page}"
        link = forwarded_url(_url(found[0]) + "/")
        return f"Phoenix has these traces too: open {link} (project 'default'), newest trace first."
    return f"The collector forwards every batch of spans to {forward_to} as well."

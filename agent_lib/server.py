"""Start, stop and restart a native Restate server, or use one that already runs.

Lesson 00 introduces it. The server is the real `restate-server` binary pinned in
`package.json` (npm). Ports and the data dir are the caller's choice; the defaults are
the ones the seed example uses: ingress 8080, admin API and UI 9070, data in `.restate/`.

    with RestateServer(base_dir=tmp, ingress_port=18080, admin_port=19070, node_port=15122) as srv:
        ...  # srv.ingress_url, srv.admin_url

A cluster of several such servers is `agent_lib.cluster.RestateCluster` (lesson 08); it builds on
this module, never the other way round.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from . import _http, identity
from ._modes import ALWAYS_REPLAY_ENV, always_replay_requested
from ._paths import REPO_ROOT, data_dir
from ._process import ManagedProcess, ProcessError, StartStop, free_port, port_is_free  # the ports: importable here too

__all__ = [
    "DEFAULT_ADMIN_PORT",
    "DEFAULT_INGRESS_PORT",
    "DEFAULT_NODE_PORT",
    "ALWAYS_REPLAY_ENV",
    "ExternalServer",
    "RestateServer",
    "ServerError",
    "connect",
    "find_server_binary",
    "free_port",
    "pinned_version",
    "port_is_free",
    "server_env",
    "always_replay_requested",
]

DEFAULT_INGRESS_PORT = 8080
DEFAULT_ADMIN_PORT = 9070
DEFAULT_NODE_PORT = 5122


_REPLAY_SETTING = {"RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT": "0s"}


class ServerError(ProcessError):
    """The Restate server could not be found, started or reached."""


def pinned_version() -> str:
    """Return the restate-server version pinned in package.json."""
    pins = json.loads((REPO_ROOT / "package.json").read_text())["dependencies"]
    return str(pins["@restatedev/restate-server"])


def find_server_binary() -> Path:
    """Find `restate-server`: `RESTATE_SERVER_BIN`, then node_modules, then PATH."""
    env = os.environ.get("RESTATE_SERVER_BIN")
    if env:
        path = Path(env)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ServerError(f"RESTATE_SERVER_BIN={env} is not an executable file: fix it, or unset it")
        return path
    scoped = REPO_ROOT / "node_modules" / "@restatedev"
    for candidate in sorted(scoped.glob("restate-server-*/bin/restate-server")):
        if os.access(candidate, os.X_OK):
            return candidate
    on_path = shutil.which("restate-server")
    if on_path:
        return Path(on_path)
    raise ServerError(
        "no restate-server binary found: run `make setup` (it installs the pinned server with npm), "
        "or set RESTATE_SERVER_BIN to the binary's path"
    )


def _healthy(admin_url: str, ingress_url: str) -> bool:
    try:
        with _http.client(timeout=2.0) as http:
            return (
                http.get(f"{admin_url}/health").status_code == 200
                and http.get(f"{ingress_url}/restate/health").status_code == 200
            )
    except httpx.HTTPError:
        return False


def _partitions_ready(admin_url: str) -> bool:
    """Return True once the server's tables answer SQL (health passes a moment before its partitions do)."""
    try:
        with _http.client(timeout=5.0) as http:
            answer = http.post(f"{admin_url}/query", json={"query": "SELECT count(*) AS n FROM sys_invocation"})
            return answer.status_code == 200
    except httpx.HTTPError:
        return False


def server_env(
    *,
    base_dir: Path,
    node_name: str,
    ingress_port: int,
    admin_port: int,
    node_port: int,
    host: str = "127.0.0.1",
) -> dict[str, str]:
    """Return the environment that configures one restate-server node."""
    return {
        "RESTATE_BASE_DIR": str(base_dir),
        "RESTATE_NODE_NAME": node_name,
        "RESTATE_INGRESS__BIND_ADDRESS": f"{host}:{ingress_port}",
        "RESTATE_ADMIN__BIND_ADDRESS": f"{host}:{admin_port}",
        "RESTATE_BIND_ADDRESS": f"{host}:{node_port}",
        "RESTATE_ADVERTISED_ADDRESS": f"http://127.0.0.1:{node_port}",
        "RESTATE_DISABLE_TELEMETRY": "true",
        "RESTATE_DEFAULT_NUM_PARTITIONS": "4",
        "RESTATE_ROCKSDB_TOTAL_MEMORY_SIZE": "512MiB",
        "RESTATE_LOG_FORMAT": "compact",
        "RESTATE_LOG_DISABLE_ANSI_CODES": "true",
    }


class RestateServer(ManagedProcess):
    """One native restate-server process, with its own ports and data dir.

    By default the server dies with the process that started it (a watchdog ends it when that process
    is gone), so a notebook's private server does not outlive a restarted kernel. `connect()` and
    `python -m agent_lib up` start the course's shared server with `die_with_parent=False`.

    With `always_replay=True` (by default: when `RESTATE_ALWAYS_REPLAY=1`, see lesson 07) the server lets
    no invocation wait in memory: it suspends at every await and is replayed from its journal, as the SDK's
    own test harness does. A handler that is not deterministic then fails with a journal mismatch. A
    handler's own `inactivity_timeout` still wins over it.
    """

    stop_grace = 15.0
    error = ServerError

    def __init__(
        self,
        base_dir: str | os.PathLike[str] | None = None,
        *,
        ingress_port: int = DEFAULT_INGRESS_PORT,
        admin_port: int = DEFAULT_ADMIN_PORT,
        node_port: int = DEFAULT_NODE_PORT,
        node_name: str = "node-1",
        binary: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        die_with_parent: bool = True,
        always_replay: bool | None = None,
    ) -> None:
        super().__init__("restate-server", admin_port, env=env, die_with_parent=die_with_parent)
        self.base_dir = Path(base_dir) if base_dir is not None else data_dir()
        self.always_replay = always_replay_requested() if always_replay is None else always_replay
        """True if this server replays every invocation from its journal at every await."""
        self.ingress_port = ingress_port
        self.admin_port = admin_port
        self.node_port = node_port
        self.node_name = node_name
        self._binary = Path(binary) if binary is not None else None

    @property
    def ingress_url(self) -> str:
        """The ingress URL, where agents are called."""
        return f"http://127.0.0.1:{self.ingress_port}"

    @property
    def admin_url(self) -> str:
        """The admin API URL, which also serves the Restate UI."""
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def log_path(self) -> Path:
        """Where the server writes its log."""
        return self.base_dir / f"{self.node_name}.log"

    def healthy(self) -> bool:
        """Return True if both admin API and ingress answer their health checks."""
        return _healthy(self.admin_url, self.ingress_url)

    def start(self, timeout: float = 60.0) -> RestateServer:
        """Start the server and wait until it is healthy."""
        if self.running:
            return self
        binary = self._binary or find_server_binary()
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise ServerError(
                f"{binary} is not an executable restate-server: run `make setup`, or pass the binary's real path"
            )
        taken = [p for p in (self.ingress_port, self.admin_port, self.node_port) if not port_is_free(p)]
        if taken:
            raise ServerError(
                f"port {', '.join(map(str, taken))} is already taken by another process: stop it "
                "(`make stop` stops the kit's own server), or choose other ports"
            )
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._argv = [str(binary)]
        self._cwd = self.base_dir
        return super().start(timeout)

    def _environment(self) -> dict[str, str]:
        return {**os.environ, **self._env(), **self._extra}

    def _env(self) -> dict[str, str]:
        env = server_env(
            base_dir=self.base_dir,
            node_name=self.node_name,
            ingress_port=self.ingress_port,
            admin_port=self.admin_port,
            node_port=self.node_port,
        )
        return {**env, **(_REPLAY_SETTING if self.always_replay else {})}

    def _wait_ready(self, timeout: float) -> None:
        self._wait_until(
            lambda: self.healthy() and _partitions_ready(self.admin_url), timeout, "restate-server", "become healthy"
        )

    def restart(self, timeout: float = 60.0, *, crash: bool = False) -> RestateServer:
        """Stop (or with crash=True, SIGKILL) the server and start it again on the same data."""
        self.kill() if crash else self.stop()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(
            port_is_free(p) for p in (self.ingress_port, self.admin_port, self.node_port)
        ):
            time.sleep(0.05)
        return self.start(timeout)

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        mode = ", always replay" if self.always_replay else ""
        return f"RestateServer(ingress={self.ingress_url}, admin={self.admin_url}, {state}{mode})"


class ExternalServer(StartStop):
    """A Restate server someone else runs (`make lab`, Docker, a cluster node): used, never stopped."""

    def __init__(self, ingress_url: str, admin_url: str) -> None:
        self.ingress_url = ingress_url.rstrip("/")
        self.admin_url = admin_url.rstrip("/")

    def healthy(self) -> bool:
        """Return True if both admin API and ingress answer their health checks."""
        return _healthy(self.admin_url, self.ingress_url)

    def start(self, timeout: float = 30.0) -> ExternalServer:
        """Wait until the external server answers."""
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > deadline:
                raise ServerError(
                    f"no Restate server answers at {self.ingress_url} (ingress) and {self.admin_url} (admin): "
                    "start one with `make server`, or fix RESTATE_INGRESS_URL / RESTATE_ADMIN_URL"
                )
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        """Do nothing: an external server is not ours to stop."""

    def __repr__(self) -> str:
        return f"ExternalServer(ingress={self.ingress_url}, admin={self.admin_url})"


def connect(timeout: float = 60.0) -> RestateServer | ExternalServer:
    """Return the course's server: the one at RESTATE_INGRESS_URL/RESTATE_ADMIN_URL, else start one.

    If the variables are unset and nothing answers on 8080/9070, a native server is started
    with its data in `.restate/`; it keeps running after this process ends (`make stop` stops it). It signs its
    requests to deployments with the kit's key pair (agent_lib/identity.py, made the first time in
    `.restate/identity/`), and the kit writes that down, so the agent processes registered with it verify them.
    """
    ingress = os.environ.get("RESTATE_INGRESS_URL")
    admin = os.environ.get("RESTATE_ADMIN_URL")
    if ingress or admin:
        if not (ingress and admin):
            raise ServerError("set both RESTATE_INGRESS_URL and RESTATE_ADMIN_URL, or neither")
        return ExternalServer(ingress, admin).start(timeout=min(timeout, 10.0))
    default = ExternalServer(f"http://127.0.0.1:{DEFAULT_INGRESS_PORT}", f"http://127.0.0.1:{DEFAULT_ADMIN_PORT}")
    if default.healthy():
        return default
    pair = identity.key_pair()
    server = RestateServer(die_with_parent=False, env=identity.server_env(pair)).start(timeout)
    identity.lab_signs(server.admin_url, server.pid or 0, pair.public_key)
    return server

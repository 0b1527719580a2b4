"""A lab: a Restate server plus the finished agents, with its ports, its data dir and the environment that finds them.

    with Lab(LabConfig(data=Path("/tmp/my-lab"))) as lab:
        subprocess.run(["pytest", ...], env=lab.environ())

Modelled on the SDK's own test harness (restatedev/sdk-python, `restate/harness.py`): a configuration dataclass,
`start`/`stop` and a context manager, and `stop()` when `start()` fails half-way. Its users are
`python -m agent_lib up` (the course's shared lab, `LabConfig(shared=True)`), scripts/lesson_mode.py (a mode's
lab) and tests/worker_lab.py (each pytest-xdist worker's).

While a lab runs, this process's environment points at it (RESTATE_INGRESS_URL, RESTATE_ADMIN_URL, AGENTS_PORT,
RESTATE_KIT_DATA, plus its `env`), so everything started from here uses it; `stop()` puts the environment back.

A lab signs: the server it starts gets the kit's private key (agent_lib/identity.py, made in `<data>/identity/` the
first time), and the finished agents accept only requests signed by it, so a direct POST to their port gets 401
while the same call through the ingress answers. While it runs, RESTATE_LAB_SIGNS names its server and public key,
so an `AgentProcess` registered with that server verifies too. The shared lab signs when the kit started its
server (`connect()`); a server someone else runs (Docker, an older `make lab`) is not known to sign, and then
nothing verifies.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import identity
from ._paths import data_dir
from ._process import StartStop, free_port, kit_process_alive, pid_path, port_is_free
from .agent_process import AgentProcess
from .agents import FINISHED
from .clients import Admin
from .hosting import ServingError
from .server import ExternalServer, RestateServer, connect

__all__ = ["AGENTS_PORT_ENV", "INHERITED_PATHS", "LAB_VARIABLES", "Lab", "LabConfig"]

AGENTS_PORT_ENV = "AGENTS_PORT"
"""Where the finished agents listen (default 9080 for the shared lab)."""

LAB_VARIABLES = ("RESTATE_INGRESS_URL", "RESTATE_ADMIN_URL", AGENTS_PORT_ENV, "RESTATE_KIT_DATA")
"""The four variables that point a process (a test, a lesson's kernel, the CLI) at a lab."""

INHERITED_PATHS = ("AGENT_LEDGER", "AGENT_GATE_DIR")
"""Paths a caller's environment may set for its own lab; in another lab they follow that lab's RESTATE_KIT_DATA."""


@dataclass(frozen=True)
class LabConfig:
    """What a lab runs, where, and on which ports (0: a free one)."""

    data: Path | None = None
    """The lab's data dir (its RESTATE_KIT_DATA: pid files, logs, ledger); a private server keeps its data in
    `data/server`. Default: the kit's data dir."""
    ingress_port: int = 0
    admin_port: int = 0
    node_port: int = 0
    agents_port: int = 0
    agents: tuple[str, ...] = tuple(FINISHED)
    """The services the agent process serves ("module:attribute"); empty: a server alone."""
    workers: int = 1
    """Serve the agents from this many worker processes behind one port (agent_lib/workers.py)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Set for this process while the lab runs, and so for the server, the agents and whatever else it starts."""
    agents_env: Mapping[str, str] = field(default_factory=dict)
    """Set for the agent process only (e.g. AGENT_RETRY_POLICY)."""
    wipe: bool = True
    """Start from an empty data dir (kept afterwards, for its logs)."""
    sign: bool = True
    """The server signs its requests with the key pair in `data/identity`, and the finished agents verify them (a
    shared lab signs if the kit starts, or started, its server)."""
    shared: bool = False
    """The course's own lab (`python -m agent_lib up`): use the server that answers (or start the default one),
    reuse agents that already run, wipe nothing; what it starts outlives this process (`make stop` ends it)."""


class Lab(StartStop):
    """A Restate server plus the finished agents, started together and stopped together."""

    def __init__(self, config: LabConfig | None = None) -> None:
        self.config = config or LabConfig()
        self.data = self.config.data or data_dir()
        self.server: RestateServer | ExternalServer | None = None
        self.agents: AgentProcess | None = None
        self.started_server = False
        """True if this lab started its server (not: used one that answered)."""
        self.reused_agents: int | None = None
        """The pid of the agents' process if it already ran (shared lab only), else None."""
        self.registered = False
        """True if this start registered the agents' deployment (a reused one known to the server is not)."""
        self.public_key: str | None = None
        """The public key the lab's server signs with (None: it does not sign, or the kit cannot tell)."""
        self._old_env: dict[str, str | None] = {}
        c = self.config
        self.agents_port = c.agents_port or (int(os.environ.get(AGENTS_PORT_ENV, "9080")) if c.shared else free_port())
        self._ports = (c.ingress_port, c.admin_port, c.node_port)

    @property
    def ingress_url(self) -> str:
        """The server's ingress URL, where agents are called."""
        return self._server().ingress_url

    @property
    def admin_url(self) -> str:
        """The server's admin API URL."""
        return self._server().admin_url

    def _server(self) -> RestateServer | ExternalServer:
        if self.server is None:
            raise ServingError("the lab is not started: call start() first")
        return self.server

    def env(self) -> dict[str, str]:
        """Return the four variables that point a process at this lab (and RESTATE_LAB_SIGNS), and its own `env`."""
        signs = {identity.SIGNING_ENV: f"{self.admin_url} {self.public_key}"} if self.public_key else {}
        return {
            **self.config.env,
            "RESTATE_INGRESS_URL": self.ingress_url,
            "RESTATE_ADMIN_URL": self.admin_url,
            AGENTS_PORT_ENV: str(self.agents_port),
            "RESTATE_KIT_DATA": str(self.data),
            **signs,
        }

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Return `base` (default: this process's environment) pointed at the lab, without the caller's own paths."""
        base = os.environ if base is None else base
        return {**{k: v for k, v in base.items() if k not in INHERITED_PATHS}, **self.env()}

    def start(self, timeout: float = 60.0) -> Lab:
        """Start the server (or use the shared one) and the agents; on any failure stop what started, and raise."""
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        c = self.config
        own_paths = {} if c.shared else dict.fromkeys(INHERITED_PATHS)  # the shared lab is the caller's own
        self._export({**c.env, "RESTATE_KIT_DATA": str(self.data), **own_paths})
        pair = None
        if c.shared:
            self.server = connect(timeout)
            self.started_server = isinstance(self.server, RestateServer)
            self.public_key = identity.signing_key(self.server.admin_url) if c.sign else None
        else:
            if c.wipe:
                shutil.rmtree(self.data, ignore_errors=True)
            self.data.mkdir(parents=True, exist_ok=True)
            ingress, admin, node = (p or free_port() for p in self._ports)
            pair = identity.key_pair(self.data / "identity") if c.sign else None
            self.server = RestateServer(
                self.data / "server",
                ingress_port=ingress,
                admin_port=admin,
                node_port=node,
                env=identity.server_env(pair) if pair else None,
            )
            self.started_server = True
            self.public_key = pair.public_key if pair else None
        self._export({k: v for k, v in self.env().items() if k not in c.env})
        if isinstance(self.server, RestateServer) and not self.server.running:
            self.server.start(timeout)
            if pair is not None:
                identity.lab_signs(self.server.admin_url, self.server.pid or 0, pair.public_key)
        if c.agents:
            self._start_agents(timeout)

    def _start_agents(self, timeout: float) -> None:
        c = self.config
        self.agents = AgentProcess(
            list(c.agents),
            port=self.agents_port,
            admin=Admin(self.admin_url),
            name="finished-agents",
            die_with_parent=not c.shared,
            workers=c.workers,
            env={identity.IDENTITY_KEYS_ENV: self.public_key or "", **c.agents_env},
        )
        running = kit_process_alive(pid_path("agent", self.agents_port)) if c.shared else None
        if running:
            self.reused_agents = running
            self.registered = not self.agents.known_to_server()
            if self.registered:
                self.agents.register()
            return
        if not port_is_free(self.agents_port):
            raise ServingError(
                f"port {self.agents_port} is taken by another program: set {AGENTS_PORT_ENV} to a free port"
                if c.shared
                else f"port {self.agents_port} is taken by another program: choose another agents port, or 0"
            )
        self.agents.start(timeout)
        self.registered = True

    def stop(self) -> None:
        """Stop the agents and the server this lab owns (a shared lab owns none), and put the environment back."""
        if not self.config.shared:
            if self.agents is not None:
                self.agents.stop()
            if self.server is not None:
                self.server.stop()
        for name, value in self._old_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._old_env = {}

    def _export(self, values: Mapping[str, str | None]) -> None:
        for name, value in values.items():
            self._old_env.setdefault(name, os.environ.get(name))
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def __repr__(self) -> str:
        where = f"ingress {self.ingress_url}, admin {self.admin_url}" if self.server is not None else "not started"
        return f"Lab({where}, agents on {self.agents_port}, data {self.data})"

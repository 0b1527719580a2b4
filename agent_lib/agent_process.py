"""An agent served by a separate OS process that can be killed with SIGKILL and restarted: lesson 02 and on.

    with AgentProcess("agent_lib.agents.weather:weather_service") as proc:
        proc.kill()     # a crash
        proc.start()    # the same deployment, on the same port, picks up where it left off

Agents are named by where they live, "module:attribute", so the process can import them by itself. It runs
`python -m agent_lib serve` (agent_lib/workers.py, `serve_command`), from one process or, with `workers=N`, from a
supervisor of N workers behind the same port and deployment.

Registered with the lab's server, which signs its requests (agent_lib/identity.py), the process accepts only
requests signed by the lab's key (`trusted_key`); registered with any other server (a lesson's own, which does not
sign), it accepts every request, as that server's would otherwise be refused. `env=identity.agent_env(pair)` sets
the key by hand (lesson 12).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from ._paths import REPO_ROOT, data_dir
from ._process import ManagedProcess, free_port, listens_on, port_is_free, port_open
from .clients import Admin, RestateError
from .hosting import ServingError, Targets, as_list, public_host, wait_listed
from .identity import IDENTITY_KEYS_ENV, signing_key
from .workers import children, read_counts, serve_command

__all__ = ["AgentProcess"]


class _PortTaken(ServingError):
    """The agent process's port was taken by another program before it could listen there."""


class AgentProcess(ManagedProcess):
    """Services served by a separate Python process, which can be killed with SIGKILL and restarted.

    With `workers=N` (N > 1) that process is a supervisor of N worker processes that serve the same app
    behind the same port and deployment (see agent_lib/workers.py): `kill()` still kills it all,
    `kill_worker()` kills one worker, which the supervisor restarts.
    """

    stop_grace = 2.0  # Restate needs no goodbye from it
    forkable = True  # started from the zygote, which has imported ADK already (agent_lib/_zygote.py)
    error = ServingError

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
        self.port = port or free_port()
        self._port_chosen = port is None
        """True if the port was picked here, free at that instant: another free port will do as well."""
        super().__init__("agent", self.port, die_with_parent=die_with_parent)
        self.workers = workers
        self.targets = as_list(targets)
        self.env = dict(env or {})
        """Set for the process, over this one's environment (takes effect at the next start)."""
        self.admin = admin or Admin()
        self.name = name or self.targets[0].rpartition(":")[2]
        self.host = host or public_host()
        self.url = f"http://{self.host}:{self.port}"
        self.deployment_id: str | None = None

    @property
    def log_path(self) -> Path:
        """Where the process writes its output."""
        return data_dir() / "logs" / f"{self.name}-{self.port}.log"

    def _command(self) -> list[str]:
        return serve_command(self.targets, self.port, workers=self.workers)

    @property
    def trusted_key(self) -> str | None:
        """The public key whose signed requests alone the process accepts at its next start (None: any request).

        The one in `env` (RESTATE_IDENTITY_KEYS), else the lab's when its server (this process's `admin`) signs
        (`identity.signing_key`), else none: a server the kit does not know to sign would be refused (401).
        """
        if IDENTITY_KEYS_ENV in self.env:
            return self.env[IDENTITY_KEYS_ENV] or None
        return signing_key(self.admin.url)

    def _environment(self) -> dict[str, str]:
        env = {**os.environ, **self.env, "RESTATE_SERVICE_HOST": self.host}
        env.pop(IDENTITY_KEYS_ENV, None)
        if (key := self.trusted_key) is not None:
            env[IDENTITY_KEYS_ENV] = key
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        return env

    def _wait_ready(self, timeout: float) -> None:
        def listening() -> bool:
            if not port_open(self.port):
                return False
            if self.pid is not None and listens_on(self.pid, self.port) is False:
                raise _PortTaken(
                    f"port {self.port} was taken by another program while the agent process {self.targets} "
                    "started: stop that program, or let AgentProcess pick a free port"
                )
            return True

        self._wait_until(listening, timeout, f"the agent process {self.targets}", "listen")

    def start(self, timeout: float = 60.0, *, register: bool | None = None) -> AgentProcess:
        """Start the process, wait until it listens, and register it (by default, unless the server knows it)."""
        if self.running:
            return self
        if not port_is_free(self.port):
            raise ServingError(
                f"port {self.port} is already taken by another program: stop it, or let AgentProcess pick a free port"
            )
        try:
            super().start(timeout)
        except _PortTaken:
            self.kill()
            if not self._port_chosen or self.deployment_id is not None:
                raise
            # A port picked free a moment ago, taken since by another program (another test's server, say): the
            # first start of a process whose port nobody chose may take another.
            self.port = self._pid_port = free_port()
            self.url = f"http://{self.host}:{self.port}"
            super().start(timeout)
        if register if register is not None else not self._registered():
            self.register()
        return self

    def known_to_server(self) -> bool:
        """Return True if the server has a deployment at this process's URL (and take that deployment's id)."""
        for deployment in self.admin.deployments():
            if str(deployment.get("uri", "")).rstrip("/") == self.url:
                self.deployment_id = deployment.get("id")
                return True
        return False

    def register(self) -> None:
        """Register the process's deployment (again) with the server, and wait until it lists its services."""
        try:
            answer = self.admin.register(self.url)
        except RestateError as err:
            if "401" not in str(err) or self.trusted_key is None:
                raise
            raise ServingError(
                f"the agents refused the server's request (401): {self.name} trusts only requests signed by "
                f"{self.trusted_key[:24]}..., and the server at {self.admin.url} does not sign with that key. Start "
                "the server with that key (identity.server_env; `make stop && make lab` for the lab's), or the "
                f"agents without it (env={{'{IDENTITY_KEYS_ENV}': ''}}). The server said: {err}"
            ) from None
        self.deployment_id = answer.get("id")
        wait_listed(self.admin, [s["name"] for s in answer.get("services", [])])

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
        return children(self.pid)

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
        return read_counts(self.port)

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "not running"
        workers = f", {self.workers} workers" if self.workers > 1 else ""
        return f"AgentProcess({self.targets} at {self.url}{workers}, {state})"

"""The order agent on plain ADK, with no Restate: lesson 02's side-by-side crash.

The same agent, tools, model and hook points as `agent_lib.agents.orders`, run by ADK's
`InMemoryRunner` in a process of its own. Nothing is journaled, so a process killed halfway
through an order has nothing to resume from: run again, it starts over, calls the model again
and repeats the effects it had already caused.

    python -m agent_lib.agents.plain_orders "Order 2 lamps for alice@example.com"
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from google.adk.apps import App
from google.adk.runners import InMemoryRunner

from .._paths import REPO_ROOT, data_dir
from ..gates import GatePlugin
from ..ledger import Effect, default_ledger
from ._common import final_text, require_message, user_message
from .orders import PREFIX, make_order_agent

__all__ = ["AGENT_NAME", "PlainRun", "app", "run_order"]

AGENT_NAME = "plain_order_agent"
"""The name its model calls carry in the ledger."""

app = App(
    name="plain_orders",
    root_agent=make_order_agent(effect_keys=False, name=AGENT_NAME),
    plugins=[GatePlugin(PREFIX)],
)
"""The plain ADK app: the order agent and its hook points, and no RestatePlugin."""


async def run_order(message: str) -> str | None:
    """Run one message through the agent in a fresh in-memory session and return its answer."""
    runner = InMemoryRunner(app=app)
    session = await runner.session_service.create_session(app_name=app.name, user_id="customer")
    answer = None
    async for event in runner.run_async(
        user_id="customer", session_id=session.id, new_message=user_message(require_message(message))
    ):
        answer = final_text(event) or answer
    return answer


class PlainRun:
    """One message to the plain ADK agent, in its own OS process that can be killed and run again."""

    def __init__(self, message: str, *, env: dict[str, str] | None = None) -> None:
        self.message = require_message(message)
        self.env = dict(env or {})
        self.pids: list[int] = []
        """Every process this run started, oldest first."""
        self._since = time.time()
        self._proc: subprocess.Popen[str] | None = None

    @property
    def log_path(self) -> Path:
        """Where the processes write their logs."""
        return data_dir() / "logs" / "plain_orders.log"

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> PlainRun:
        """Start a process that runs the message from the beginning."""
        if self.running:
            raise RuntimeError("this run's process is still running: kill() it or wait() for it first")
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", __name__, self.message],
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                text=True,
            )
        self.pids.append(self._proc.pid)
        return self

    def kill(self) -> None:
        """Kill the process with SIGKILL, as a crash would."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def wait(self, timeout: float = 120.0) -> str | None:
        """Wait for the process to finish and return the agent's answer."""
        if self._proc is None:
            raise RuntimeError("start() the run first")
        out, _ = self._proc.communicate(timeout=timeout)
        if self._proc.returncode != 0:
            raise RuntimeError(f"the plain run exited with code {self._proc.returncode}; read {self.log_path}")
        answer: str | None = json.loads(out.strip().splitlines()[-1])["answer"]
        return answer

    def effects(self, kind: str) -> list[Effect]:
        """Return the ledger's effects of `kind` that this run's processes caused."""
        return [e for e in default_ledger().effects(kind) if e.pid in self.pids and e.at >= self._since]

    def __repr__(self) -> str:
        return f"PlainRun({self.message!r}, processes={self.pids}, running={self.running})"


def _main() -> None:
    answer = asyncio.run(run_order(" ".join(sys.argv[1:])))
    print(json.dumps({"answer": answer}), flush=True)


if __name__ == "__main__":
    _main()

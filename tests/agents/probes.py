"""The real weather and claims agents, with hook points at every journal boundary: the crash matrix's target.

The agents' own code is not changed and not copied. Importing this module in an agent process
wraps two SDK entry points that every journal boundary of those agents passes through:

- ``ctx.run_typed(step, ...)``, which the agents use for every durable step ("call LLM",
  "Get weather", "Pay claim", "store session"), gets four hook points per step and object key:
  ``before`` (the step has no journal entry yet), ``start`` (inside the step, before its body),
  ``done`` (inside the step: the body returned, its effect happened, its result is *not*
  journaled yet) and ``after`` (the result is journaled);
- ``restate.select(...)``, where the claims agent waits for the approval or its deadline, gets
  ``select.before`` (the request is filed, the agent waits) and ``select.after`` (decided).

Hook names carry the object key (`hook_name`), so many invocations can be stopped at once in one
process, each at its own point, and one SIGKILL crashes them all (see tests/proof/test_crash_matrix.py).
Each step body that runs is also recorded in the ledger as kind ``"proof_step"``, so a test can
count how often a step's body ran, across processes.

One setting differs from the finished agents: the handlers may retry 600 times instead of 30
(same intervals), so that a slow restart on a loaded machine never pauses an invocation.

    AgentProcess(["tests.agents.probes:weather_service", ...], env={"AGENT_GATE_DIR": ...})

Import this module only in the agent process it serves: it patches the SDK for the whole process. A test imports
the hook names from tests/agents/probe_points.py (importing this module into the test process once broke
lesson 05's in-process ConsultingAgent check: its `restate.gather` refused the probed, non-SDK futures).
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Awaitable, Callable
from typing import Any

import restate
from restate.server_context import ServerInvocationContext, current_context

from agent_lib.gates import hit
from agent_lib.ledger import default_ledger
from tests.agents.probe_points import PHASES, TARGETS, hook_name

os.environ.setdefault("CLAIMS_SERVICE_PREFIX", "Proof")
os.environ.setdefault("CLAIMS_APPROVAL_TIMEOUT", "1h")

from agent_lib.agents._common import LESSON_RETRY_POLICY  # noqa: E402
from agent_lib.agents.claims import approvals_service, claims_service  # noqa: E402
from agent_lib.agents.weather import weather_service  # noqa: E402

__all__ = ["PHASES", "TARGETS", "approvals_service", "claims_service", "hook_name", "weather_service"]


def _key(ctx: Any) -> str:
    try:
        return str(ctx.key())
    except Exception:  # noqa: BLE001 - a service without keys
        return "-"


_run_typed = ServerInvocationContext.run_typed


def _probed_run_typed(
    self: ServerInvocationContext, name: str, action: Callable[..., Any], *rest: Any, **kw: Any
) -> Awaitable[Any]:
    key, invocation_id = _key(self), self.request().id

    @functools.wraps(action)
    async def body(*args: Any, **kwargs: Any) -> Any:
        await hit(hook_name(key, name, "start"), invocation_id=invocation_id)
        default_ledger().record("proof_step", {"step": name, "key": key}, invocation_id=invocation_id)
        result = action(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        await hit(hook_name(key, name, "done"), invocation_id=invocation_id)
        return result

    async def step() -> Any:
        await hit(hook_name(key, name, "before"), invocation_id=invocation_id)
        result = await _run_typed(self, name, body, *rest, **kw)
        await hit(hook_name(key, name, "after"), invocation_id=invocation_id)
        return result

    return step()


_select = restate.select


async def _probed_select(**futures: Any) -> Any:
    ctx = current_context()
    key = _key(ctx) if ctx is not None else "-"
    await hit(hook_name(key, "select", "before"))
    result = await _select(**futures)
    await hit(hook_name(key, "select", "after"))
    return result


ServerInvocationContext.run_typed = _probed_run_typed  # type: ignore[assignment,method-assign]
restate.select = _probed_select  # type: ignore[assignment]

_PATIENT = restate.InvocationRetryPolicy(
    initial_interval=LESSON_RETRY_POLICY.initial_interval,
    exponentiation_factor=LESSON_RETRY_POLICY.exponentiation_factor,
    max_interval=LESSON_RETRY_POLICY.max_interval,
    max_attempts=600,
    on_max_attempts="pause",
)
for _service in (weather_service, claims_service):
    _service.handlers["run"].invocation_retry_policy = _PATIENT

if os.environ.get("PROOF_MUTANT") == "no-idempotency":
    # A deliberate bug, to see the crash matrix fail: effects are recorded without their idempotency key.
    from agent_lib.ledger import Ledger

    _record = Ledger.record

    def _forgetful(self: Ledger, kind: str, detail: Any = None, *, idempotency_key: Any = None, **kw: Any) -> bool:
        return _record(self, kind, detail, **kw)

    Ledger.record = _forgetful  # type: ignore[method-assign]

"""Checks for lesson 12's exercises: a trace of a kill after the last model call, and an agent that refuses strangers.

Run `check.lesson_12.begin(admin)` before the exercises: the checks then judge only the invocations and deployments
made after it, and refuse the lesson's own.
"""

from __future__ import annotations

import httpx

from ..clients import Admin, Ingress
from ..tracing import Span, TraceCollector, attempts
from . import _core
from ._core import Began, call, completed, exercise, fresh_key, remaining, require, require_new
from ._core import require_new_deployment as _require_new_deployment
from ._core import require_served as _require_served

__all__ = ["QUESTION", "begin", "exercise_1", "exercise_2"]

QUESTION = "What is the weather in Lisbon?"
"""What exercise 2's check asks your locked-down agent, through Restate."""

_MODEL = "generate_content"
_TOOL = "execute_tool"


def begin(admin: Admin) -> Began:
    """Begin lesson 12's exercises now (server time): the checks then judge only what is made after it."""
    return _core.begin(12, admin)


def _spans_of(traces: object, invocation_id: str) -> list[Span]:
    if not isinstance(traces, TraceCollector):
        raise _core.Fail(f"{type(traces).__name__} is not a TraceCollector", "pass the lesson's collector, `traces`")
    try:
        return traces.wait_for_turn(invocation_id, names=("invocation-end",), timeout=min(8.0, remaining("the trace")))
    except TimeoutError as err:
        raise _core.Fail(
            f"the collector did not receive the whole trace of {invocation_id}: {err}",
            "run the turn on the lesson's server and agents, which send their spans to `traces`",
        ) from None


@exercise(12, 1)
def exercise_1(admin: Admin, traces: TraceCollector, invocation_id: str) -> str:
    """A turn killed after its last model call: the trace shows the retry, and no model or tool span twice."""
    row = require_new(admin, invocation_id, "the turn")
    require(
        (row["target_service_name"], row["target_handler_name"]) == ("TracedWeather", "run"),
        f"{invocation_id} is a {row['target_service_name']}/{row['target_handler_name']} invocation, not "
        "TracedWeather/run",
        'pass the id that ingress.send("TracedWeather", "run", question, key=...) gave you',
    )
    completed(admin, invocation_id, success=True, stopped="start the agents' process again (agents.start())")
    spans = _spans_of(traces, invocation_id)
    tries = attempts(spans)
    failed = [a for a in tries if a.error]
    require(
        bool(failed),
        f"none of the turn's {len(tries)} attempt span(s) failed: nothing was killed, and nothing retried",
        'arm Gate("traced.store_session.before") before you send, gate.wait_reached(), then agents.kill() and '
        "agents.start()",
    )
    steps = admin.steps(invocation_id)
    models = [s for s in spans if s.name.startswith(_MODEL)]
    tools = [s for s in spans if s.name.startswith(_TOOL)]
    require(
        len(models) == steps.count("call LLM") and len(tools) == steps.count("Get weather"),
        f"the trace has {len(models)} model call span(s) and {len(tools)} tool span(s), but the journal "
        f"{steps.count('call LLM')} 'call LLM' and {steps.count('Get weather')} 'Get weather' step(s): a replayed "
        "step was traced again, or a step's span is missing",
        "serve agent_lib.agents.traced:traced_service with env=traces.agent_env(): it traces through "
        "RestateTracerProvider",
    )
    pids = {s.pid for s in models + tools}
    after = [s.name for s in models + tools if s.end_ns > failed[0].end_ns]
    require(
        bool(models) and len(pids) == 1 and not after,
        f"{len(after)} model or tool span(s) ({', '.join(after) or 'none'}) came after the first failed attempt, "
        f"made by {len(pids)} process(es): the kill came before the last model call",
        'arm Gate("traced.store_session.before"): the agent stops there after its last model call',
    )
    require(
        not tries[-1].error,
        f"the last of the turn's {len(tries)} attempts failed too",
        "start the agents' process again (agents.start()) and wait for the answer (ingress.attach(id))",
    )
    return (
        f"{len(tries)} attempts, {len(failed)} of them failed; the {len(models)} model call(s) and {len(tools)} tool "
        f"call(s) were traced once each, all in the killed process (pid {pids.pop()}); the retry replayed them from "
        "the journal and made no span for them"
    )


@exercise(12, 2)
def exercise_2(ingress: Ingress, admin: Admin, service: str = "LockedWeather") -> str:
    """Your agent process refuses an unsigned request (401), and answers the same question through Restate."""
    dep = _require_served(admin, service, "start your agent process again (locked.start())")
    _require_new_deployment(admin, service, "start your agent process now, with AgentProcess(...).start()")
    path = f"{str(dep['uri']).rstrip('/')}/invoke/{service}/run"
    try:
        status = httpx.post(
            path, content=b"\x00", headers={"content-type": "application/vnd.restate"}, timeout=5.0
        ).status_code
    except httpx.HTTPError as err:
        raise _core.Fail(f"an unsigned POST to {path} got no answer: {err}", "is your agent process running?") from None
    require(
        status == 401,
        f"your agent process accepted an unsigned POST to {path} (status {status}, not 401): anyone who can reach "
        "its port can run it",
        "start it with env=identity.agent_env(pair): it then trusts only requests the server signed",
    )
    _, answer = call(ingress, service, "run", QUESTION, key=fresh_key("locked"))
    require(
        isinstance(answer, str) and "Lisbon" in answer,
        f"through Restate, {service} answered {str(answer)[:200]!r}, not the weather in Lisbon",
        "serve the weather agent under your name (WEATHER_SERVICE_NAME) from a server that signs (identity.server_env)",
    )
    return f"an unsigned request to {path} was refused (401); through Restate it answered: {answer}"

"""Checks for lesson 01's exercises: a durable tool of your own, a session that remembers, life without the plugin.

Run `check.lesson_01.begin(admin)` before the exercises: the checks then judge only the agents you serve and the
sessions you fill after it. Await each one in the notebook:
`await check.lesson_01.exercise_1(ingress, admin, service="MyForecastAgent")`.
"""

from __future__ import annotations

import json
from typing import Any

from .._sql import sql_literal
from ..clients import Admin, Ingress
from ..sessions import stored_session
from . import _core
from ._core import Began, call, exercise, fresh_key, require, require_new, require_new_deployment, require_served

__all__ = ["begin", "exercise_1", "exercise_2", "exercise_3"]

_SERVE_HINT = "serve it in this kernel again (serve_in_kernel), then run the check again"


def begin(admin: Admin) -> Began:
    """Record that you begin lesson 01's exercises now: the checks judge only what you serve and send after it."""
    return _core.begin(1, admin)


def _events(session: dict[str, Any]) -> list[dict[str, Any]]:
    return list(session.get("events", []))


def _texts(event: dict[str, Any]) -> str:
    parts = (event.get("content") or {}).get("parts") or []
    return " ".join(p["text"] for p in parts if p.get("text"))


def _calls(events: list[dict[str, Any]], tool: str) -> list[dict[str, Any]]:
    """Return the arguments of every call the model made to `tool`, in order."""
    found = []
    for event in events:
        for part in (event.get("content") or {}).get("parts") or []:
            call_ = part.get("function_call")
            if call_ and call_.get("name") == tool:
                found.append(dict(call_.get("args") or {}))
    return found


def _cities(events: list[dict[str, Any]]) -> list[str]:
    cities = [str(args.get("city", "")) for args in _calls(events, "get_weather")]
    return list(dict.fromkeys(c for c in cities if c))


def _serving(admin: Admin, service: str) -> None:
    require_served(admin, service, _SERVE_HINT)
    require_new_deployment(
        admin,
        service,
        f"serve your agent as {service!r} after check.lesson_01.begin(admin) (serve_in_kernel registers it), "
        "then run the check again",
    )


@exercise(1, 1)
def exercise_1(
    ingress: Ingress,
    admin: Admin,
    service: str = "MyForecastAgent",
    message: str = "What is the forecast for Paris for 3 days?",
    city: str = "Paris",
    days: int = 3,
) -> str:
    """Ask your agent for a forecast: a durable `Get forecast` step between model calls, `get_forecast(city, days)`."""
    _serving(admin, service)
    key = fresh_key("forecast")
    invocation_id, reply = call(ingress, service, "run", message, key=key)
    steps = admin.steps(invocation_id)
    forecast = [s for s in steps if "forecast" in s.lower()]
    require(
        forecast,
        f"the journal's steps are {steps}: none of them is a forecast step",
        'run the forecast\'s work inside restate_object_context().run_typed("Get forecast", ...), and give your '
        "script a rule that calls get_forecast when the message mentions a forecast",
    )
    require(
        "call LLM" in steps,
        f"the journal's steps are {steps}: no model call was journaled",
        "keep RestatePlugin() in the App's plugins",
    )
    session = stored_session(admin, service, key) or {}
    calls = _calls(_events(session), "get_forecast")
    require(
        calls,
        f"the model never called a tool named get_forecast (the journal's steps are {steps})",
        "name the tool get_forecast(city, days), and let your script call it: [Call('get_forecast', {...})]",
    )
    args = calls[-1]
    require(
        "days" in args,
        f"get_forecast was called with {args}: no `days`",
        "give the tool a `days: int` parameter, and let your script pass the number of days the message asks for",
    )
    require(
        str(args.get("days")) == str(days) and city.lower() in str(args.get("city", "")).lower(),
        f"get_forecast was called with {args}, not with city {city!r} and days {days} for {message!r}",
        "read the city and the number of days from the message in your script (turn.text)",
    )
    require(
        isinstance(reply, str) and city.lower() in reply.lower(),
        f"the agent answered {reply!r}, which does not mention {city}",
        "let your script answer with the tool's result once it is there (turn.results)",
    )
    return f"the journal shows {steps}; the model called get_forecast({args}), and the agent answered: {reply}"


@exercise(1, 2)
def exercise_2(ingress: Ingress, admin: Admin, key: str, service: str = "MyForecastAgent") -> str:
    """Read your session: two weather questions, then "Which city did I ask about?" answered from memory."""
    _serving(admin, service)
    turns = admin.query(
        "SELECT id, created_at FROM sys_invocation "
        f"WHERE target_service_name = {sql_literal(service)} AND target_service_key = {sql_literal(key)} "
        "AND target_handler_name = 'run' ORDER BY created_at"
    )
    for row in turns:
        require_new(
            admin,
            row,
            f"the key {key!r}: its turn",
            'use a new key of your own for this exercise (e.g. f"remember-{uuid4().hex[:6]}"), send the three '
            "messages to it, and pass that key",
        )
    session = stored_session(admin, service, key)
    require(
        session is not None,
        f"{service} has no stored session under the key {key!r}",
        "send your messages with ingress.acall(..., key=your_key) and pass that same key",
    )
    assert session is not None
    events = _events(session)
    users = [_texts(e) for e in events if e.get("author") == "user" and _texts(e)]
    cities = _cities(events)
    require(
        len(cities) >= 2,
        f"the session asked the weather of {cities or 'no city'}: ask about two different cities first",
        'send e.g. "What is the weather in Rome?" then "What is the weather in Oslo?" to the same key',
    )
    require(
        len(users) >= 3 and "which cit" in users[-1].lower(),
        f'the last message stored under {key!r} is {users[-1] if users else None!r}, not "Which city did I ask about?"',
        'end with "Which city did I ask about?" on the same key',
    )
    others = [m for m in users[:-1] if "weather" not in m.lower() and "which cit" not in m.lower()]
    extra = repr(others[0]) if others else "a forecast question"
    require(
        not others and not _calls(events, "get_forecast"),
        f"the key {key!r} holds more than your weather questions: it also holds {extra}, so the agent answers from "
        "that history too (is it exercise 1's key?)",
        'use a new key of your own for this exercise (e.g. f"remember-{uuid4().hex[:6]}"): ask the weather in two '
        'cities on it, then "Which city did I ask about?", and pass that key',
    )
    answers = [_texts(e) for e in events if e.get("author") != "user" and _texts(e)]
    last = answers[-1] if answers else ""
    missing = [c for c in cities if c.lower() not in last.lower()]
    require(
        not missing,
        f"the agent's last answer, {last!r}, forgets {missing}",
        "the answer comes from the session: did every message go to the same key?",
    )
    return (
        f"{len(users)} messages stored under {key!r}, all sent after you began; the agent remembered "
        f"{', '.join(cities)}: {last!r}"
    )


@exercise(1, 3)
def exercise_3(
    ingress: Ingress,
    admin: Admin,
    service: str = "NoPluginWeatherAgent",
    message: str = "What is the weather in Lima?",
) -> str:
    """Call your agent built without RestatePlugin: the tool step stays in the journal, the model calls do not."""
    _serving(admin, service)
    invocation_id, reply = call(ingress, service, "run", message, key=fresh_key("no-plugin"))
    steps = admin.steps(invocation_id)
    require(
        "call LLM" not in steps,
        f"the journal still has model calls: {steps}",
        "build this agent's App with plugins=[] (no RestatePlugin()), serve it under the new name, and call that",
    )
    require(
        any("weather" in s.lower() for s in steps),
        f"the journal has no tool step: {steps}",
        'keep the tool durable: restate_object_context().run_typed("Get weather", ...)',
    )
    require(
        isinstance(reply, str) and "lima" in reply.lower(),
        f"the agent answered {json.dumps(reply)}, which does not mention Lima",
        "keep the weather tool and the script: only the plugin goes",
    )
    return (
        f"the journal shows only {steps}: no model call is journaled, so a retry after a crash would call the "
        "model again (and pay for it again)"
    )

"""Checks for lesson 01's exercises: a durable tool of your own, a session that remembers, life without the plugin.

Await each one in the notebook: `await check.lesson_01.exercise_1(ingress, admin, service="MyForecastAgent")`.
"""

from __future__ import annotations

import json
from typing import Any

from ..clients import Admin, Ingress
from ..sessions import stored_session
from ._core import call, exercise, fresh_key, require, require_service

__all__ = ["exercise_1", "exercise_2", "exercise_3"]


@exercise(1, 1)
def exercise_1(
    ingress: Ingress,
    admin: Admin,
    service: str = "MyForecastAgent",
    message: str = "What is the forecast for Paris for 3 days?",
    city: str = "Paris",
) -> str:
    """Ask your agent for a forecast; its journal must show a durable forecast step between model calls."""
    require_service(admin, service)
    invocation_id, reply = call(ingress, service, "run", message, key=fresh_key("forecast"))
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
    require(
        isinstance(reply, str) and city.lower() in reply.lower(),
        f"the agent answered {reply!r}, which does not mention {city}",
        "let your script answer with the tool's result once it is there (turn.results)",
    )
    return f"the journal shows {steps}, and the agent answered: {reply}"


def _events(session: dict[str, Any]) -> list[dict[str, Any]]:
    return list(session.get("events", []))


def _texts(event: dict[str, Any]) -> str:
    parts = (event.get("content") or {}).get("parts") or []
    return " ".join(p["text"] for p in parts if p.get("text"))


def _cities(events: list[dict[str, Any]]) -> list[str]:
    cities = []
    for event in events:
        for part in (event.get("content") or {}).get("parts") or []:
            call_ = part.get("function_call")
            if call_ and call_.get("name") == "get_weather":
                cities.append(str((call_.get("args") or {}).get("city", "")))
    return list(dict.fromkeys(c for c in cities if c))


@exercise(1, 2)
def exercise_2(ingress: Ingress, admin: Admin, key: str, service: str = "MyWeatherAgent") -> str:
    """Read your session: two weather questions, then "Which city did I ask about?" answered from memory."""
    require_service(admin, service)
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
        f"the last message stored is {users[-1] if users else None!r}",
        'end with "Which city did I ask about?" on the same key',
    )
    answers = [_texts(e) for e in events if e.get("author") != "user" and _texts(e)]
    last = answers[-1] if answers else ""
    missing = [c for c in cities if c.lower() not in last.lower()]
    require(
        not missing,
        f"the agent's last answer, {last!r}, forgets {missing}",
        "the answer comes from the session: did every message go to the same key?",
    )
    return f"{len(users)} messages stored under {key!r}; the agent remembered {', '.join(cities)}: {last!r}"


@exercise(1, 3)
def exercise_3(
    ingress: Ingress,
    admin: Admin,
    service: str = "NoPluginWeatherAgent",
    message: str = "What is the weather in Lima?",
) -> str:
    """Call your agent built without RestatePlugin: the tool step stays in the journal, the model calls do not."""
    require_service(admin, service)
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
    )
    return (
        f"the journal shows only {steps}: without the plugin, a retry after a crash would call the model again "
        "(and pay for it again)"
    )

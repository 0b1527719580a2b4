"""A travel chat agent with a durable memory, with and without compaction: lesson 03.

Two services run the same agent:

- "ChatAgent" keeps the whole conversation. `RestateSessionService` stores the session
  (every event of every turn) as one state value, `session_store::session`, after each turn.
- "CompactChatAgent" adds ADK event compaction. When the prompt passes a token threshold,
  older turns are summarized by `RestateEventSummarizer` (the call is journaled as
  "compaction LLM call"), and `CompactingSessionService` stores only what the model still
  reads: the latest summary and the turns after it.

    curl localhost:8080/ChatAgent/ada/run --json '"Hi, my name is Ada."'
"""

from __future__ import annotations

import asyncio
import os
import re
import warnings
from collections.abc import Iterable

import restate
from google.adk import Runner
from google.adk.agents.llm_agent import Agent
from google.adk.apps.app import App, EventsCompactionConfig
from google.adk.apps.llm_event_summarizer import LlmEventSummarizer
from google.adk.events.event import Event
from google.adk.models.base_llm import BaseLlm
from google.adk.sessions import Session
from restate.ext.adk import RestateEventSummarizer, RestatePlugin, RestateSessionService, restate_object_context

from ..models import SUMMARY_PREFIX, Call, Reply, Turn, default_model, uses_gemini
from ._common import LESSON_RETRY_POLICY, final_text, require_message, user_message

__all__ = [
    "COMPACTION",
    "PLAN_SECONDS_ENV",
    "SESSION_ID",
    "SUMMARY_PREFIX",
    "CompactingSessionService",
    "chat_script",
    "chat_service",
    "compact_chat_service",
    "drop_compacted_events",
    "plan_trip",
    "summarizing_chat_service",
]

SESSION_ID = "session"
"""The ADK session id each object key uses: its state key is `session_store::session`."""

PLAN_SECONDS_ENV = "CHAT_PLAN_SECONDS"
"""Environment variable: how long the trip planner takes, in seconds (default 0.5)."""


_SUMMARIZER_PROMPT = LlmEventSummarizer._DEFAULT_PROMPT_TEMPLATE.split("{")[0].strip()[:60]
_NAME = re.compile(r"\b(?:[Mm]y name is|[Cc]all me|[Tt]he user's name is)\s+([A-Z][\w'-]*)")
_CITY = re.compile(r"\b(?:visit|to|in)\s+((?:[A-Z][\w'-]*)(?: [A-Z][\w'-]*)*)")
_CITY_LIST = re.compile(r"Cities the user mentioned: ([^.]*)\.")
_TOOL_LINE = re.compile(r"called tool: (\w+)\(")


def _name(texts: Iterable[str]) -> str | None:
    names = [m.group(1) for t in texts for m in _NAME.finditer(t)]
    return names[-1] if names else None


def _cities(texts: Iterable[str]) -> list[str]:
    found: list[str] = []
    for text in texts:
        listed = _CITY_LIST.search(text)
        if listed:
            found += [c.strip() for c in listed.group(1).split(",") if c.strip()]
        else:
            found += _CITY.findall(text)
    return list(dict.fromkeys(found))


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _summary(history: str) -> str:
    """Summarize a conversation the way the offline model does: name, cities, tools used."""
    lines = history.splitlines()
    texts = [line.split(": ", 1)[1] for line in lines if ": " in line and not _TOOL_LINE.search(line)]
    parts = [f"{SUMMARY_PREFIX} English."]
    name = _name(texts)
    parts.append(f"The user's name is {name}." if name else "The user has not given a name.")
    cities = _cities(texts)
    if cities:
        parts.append(f"Cities the user mentioned: {', '.join(cities)}.")
    tools = list(dict.fromkeys(m.group(1) for line in lines for m in _TOOL_LINE.finditer(line)))
    if tools:
        parts.append(f"Tools used: {', '.join(tools)}.")
    return " ".join(parts)


def chat_script(turn: Turn) -> Reply:
    """The offline model's rules for the chat agent (and its summarizer). Change them and see."""
    if turn.text.startswith(_SUMMARIZER_PROMPT):
        return _summary(turn.text.split("\n\n", 1)[-1])
    if turn.results:
        return " ".join(r.text for r in turn.results)
    text = turn.text
    plan = re.search(r"\b(?i:plan)\b.*?\b(?:to|in|for)\s+([A-Z][\w'-]*(?: [A-Z][\w'-]*)*)", text)
    if plan:
        return [Call("plan_trip", {"city": plan.group(1)})]
    if re.search(r"what(?:'s| is) my name|who am i", text, re.IGNORECASE):
        name = _name(turn.history)
        return f"Your name is {name}." if name else "You have not told me your name yet."
    if re.search(r"which cit(?:y|ies)", text, re.IGNORECASE):
        cities = _cities(turn.history)
        return f"You mentioned {_and(cities)}." if cities else "You have not mentioned any city yet."
    name = _name([text])
    if name:
        return f"Nice to meet you, {name}! Which city would you like to visit?"
    cities = _cities([text])
    if cities:
        return f"{_and(cities)}: a fine choice. Ask me to plan a trip there whenever you like."
    return "I am a travel chat assistant: tell me your name, a city you would like to visit, or ask me to plan a trip."


def _chat_model(name: str) -> BaseLlm:
    return default_model(chat_script, name=name)


async def plan_trip(city: str) -> str:
    """Plan a one-day trip to a city (a slow planning service: it takes a fixed time).

    Args:
        city: The city to plan the trip for, e.g. "Lisbon".
    """
    seconds = float(os.environ.get(PLAN_SECONDS_ENV, "0.5"))

    async def plan() -> str:
        await asyncio.sleep(seconds)
        return f"A day in {city}: a walk through the old town, lunch at the market, a museum in the afternoon."

    return await restate_object_context().run_typed("Plan trip", plan)


_INSTRUCTION = (
    "You are a friendly travel chat assistant. Remember what the user tells you (their name, the cities "
    "they mention) and use the plan_trip tool when they ask you to plan a trip."
)


def _agent(name: str) -> Agent:
    return Agent(model=_chat_model(name), name=name, instruction=_INSTRUCTION, tools=[plan_trip])


def drop_compacted_events(session: Session) -> Session:
    """Return a copy of the session without the events a later compaction summary replaces.

    ADK's compaction appends a summary but keeps every raw event; the prompt then skips the
    raw events a summary covers, and a summary that covers another's range supersedes it.
    Dropping exactly those events leaves what the model reads unchanged.
    """
    ranges = [
        (i, e.actions.compaction.start_timestamp, e.actions.compaction.end_timestamp)
        for i, e in enumerate(session.events)
        if e.actions.compaction is not None
        and e.actions.compaction.compacted_content is not None
        and e.actions.compaction.start_timestamp is not None
        and e.actions.compaction.end_timestamp is not None
    ]
    kept_ranges = [
        (i, start, end)
        for i, start, end in ranges
        if not any(s <= start and end <= e and ((s, e) != (start, end) or j > i) for j, s, e in ranges if j != i)
    ]
    kept_summaries = {i for i, _, _ in kept_ranges}

    def covered(ts: float) -> bool:
        return any(start <= ts <= end for _, start, end in kept_ranges)

    def kept(i: int, event: Event) -> bool:
        if event.actions.compaction is not None:
            return i in kept_summaries
        return not covered(event.timestamp)

    events = [e for i, e in enumerate(session.events) if kept(i, e)]
    return session.model_copy(update={"events": events})


class CompactingSessionService(RestateSessionService):
    """A RestateSessionService that stores a compacted session without the events its summary replaces."""

    async def flush_session_state(self, session: Session) -> None:
        """Store the session, minus the events a compaction summary covers."""
        await super().flush_session_state(drop_compacted_events(session))


with warnings.catch_warnings():
    warnings.filterwarnings("ignore", r"\[EXPERIMENTAL\] EventsCompactionConfig", UserWarning)
    COMPACTION = EventsCompactionConfig(
        summarizer=RestateEventSummarizer.from_llm(_chat_model("chat_summarizer")),
        token_threshold=600 if uses_gemini() else 200,
        event_retention_size=4,
    )
"""Summarize older turns once the prompt reaches the threshold (in tokens); keep the last 4 events as they are.

ADK marks EventsCompactionConfig as experimental; its warning is silenced here, once.
"""

_chat_runner = Runner(
    app=App(name="chat", root_agent=_agent("chat_agent"), plugins=[RestatePlugin()]),
    session_service=RestateSessionService(),
)
_summarizing_runner = Runner(
    app=App(
        name="summarizing_chat",
        root_agent=_agent("summarizing_chat_agent"),
        plugins=[RestatePlugin()],
        events_compaction_config=COMPACTION,
    ),
    session_service=RestateSessionService(),
)
_compact_runner = Runner(
    app=App(
        name="compact_chat",
        root_agent=_agent("compact_chat_agent"),
        plugins=[RestatePlugin()],
        events_compaction_config=COMPACTION,
    ),
    session_service=CompactingSessionService(),
)


async def _answer(runner: Runner, ctx: restate.ObjectContext, message: str) -> str | None:
    text = require_message(message)
    reply = None
    async for event in runner.run_async(user_id=ctx.key(), session_id=SESSION_ID, new_message=user_message(text)):
        reply = final_text(event) or reply
    return reply


chat_service = restate.VirtualObject("ChatAgent")
summarizing_chat_service = restate.VirtualObject("SummarizingChatAgent")
compact_chat_service = restate.VirtualObject("CompactChatAgent")


@chat_service.handler(invocation_retry_policy=LESSON_RETRY_POLICY)
async def run(ctx: restate.ObjectContext, message: str) -> str | None:
    """Answer one message in the conversation named by this object's key."""
    return await _answer(_chat_runner, ctx, message)


@compact_chat_service.handler("run", invocation_retry_policy=LESSON_RETRY_POLICY)
async def run_compact(ctx: restate.ObjectContext, message: str) -> str | None:
    """Answer one message; older turns are summarized once the conversation grows."""
    return await _answer(_compact_runner, ctx, message)


@summarizing_chat_service.handler("run", invocation_retry_policy=LESSON_RETRY_POLICY)
async def run_summarizing(ctx: restate.ObjectContext, message: str) -> str | None:
    """Answer one message; older turns are summarized, but every event is still stored."""
    return await _answer(_summarizing_runner, ctx, message)

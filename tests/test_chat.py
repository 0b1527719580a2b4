"""The chat agents: the offline script, its summaries, pruning compacted events, and the services over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.adk.apps.llm_event_summarizer import LlmEventSummarizer
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions, EventCompaction
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.sessions import Session
from google.genai import types

from agent_lib.agents.chat import (
    PLAN_SECONDS_ENV,
    SUMMARY_PREFIX,
    chat_script,
    drop_compacted_events,
)
from agent_lib.clients import Admin, Ingress, RestateError
from agent_lib.models import Call, OfflineModel, Turn, read_turn
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess
from agent_lib.sessions import conversation, measure_growth, session_events, stored_session, user_messages

pytestmark = pytest.mark.agent  # a finished agent's tests: `make test-replay` runs them too

CHAT_TARGETS = [
    "agent_lib.agents.chat:chat_service",
    "agent_lib.agents.chat:summarizing_chat_service",
    "agent_lib.agents.chat:compact_chat_service",
]


@pytest.fixture(scope="module")
def chat_agents(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    """The three chat services, in their own process on the session server, with a quick planner."""
    proc = AgentProcess(CHAT_TARGETS, admin=Admin(restate_server.admin_url), env={PLAN_SECONDS_ENV: "0.2"})
    with proc:
        yield proc


def _turn(text: str, *history: str) -> Turn:
    return Turn(text=text, results=(), tools=("plan_trip",), history=history, past_results=())


def _text(role: str, text: str) -> types.Content:
    return types.Content(role=role, parts=[types.Part.from_text(text=text)])


def test_script_recalls_the_name_and_cities_from_history() -> None:
    history = ("Hi, my name is Ada.", "I would like to visit Lisbon.", "Plan a trip to New York.")
    assert chat_script(_turn("What is my name?", *history)) == "Your name is Ada."
    assert chat_script(_turn("Which cities have I mentioned?", *history)) == "You mentioned Lisbon and New York."
    assert chat_script(_turn("What is my name?")) == "You have not told me your name yet."


def test_script_plans_trips_with_the_tool() -> None:
    assert chat_script(_turn("Please plan a trip to Porto.")) == [Call("plan_trip", {"city": "Porto"})]
    assert chat_script(_turn("Hi, my name is Ada.")).startswith("Nice to meet you, Ada!")  # type: ignore[union-attr]


_SEEN: list[LlmRequest] = []


class _Recorder(OfflineModel):
    """The offline chat model, keeping the requests it saw."""

    async def generate_content_async(self, llm_request: LlmRequest, stream: bool = False):  # type: ignore[no-untyped-def]
        _SEEN.append(llm_request)
        async for response in super().generate_content_async(llm_request, stream=stream):
            yield response


def test_adk_summarizer_prompt_gets_a_deterministic_summary() -> None:
    events = [
        Event(author="user", invocation_id="i1", content=_text("user", "Hi, my name is Ada.")),
        Event(author="chat_agent", invocation_id="i1", content=_text("model", "Nice to meet you, Ada!")),
        Event(author="user", invocation_id="i2", content=_text("user", "I would like to visit Oslo.")),
    ]
    summarizer = LlmEventSummarizer(llm=_Recorder(script=chat_script, name="test_summarizer"))
    first = asyncio.run(summarizer.maybe_summarize_events(events=events))
    again = asyncio.run(summarizer.maybe_summarize_events(events=events))
    assert first is not None and again is not None
    summary = first.actions.compaction.compacted_content.parts[0].text  # type: ignore[union-attr]
    assert summary == f"{SUMMARY_PREFIX} English. The user's name is Ada. Cities the user mentioned: Oslo."
    assert again.actions.compaction.compacted_content.parts[0].text == summary  # type: ignore[union-attr]
    prompt = read_turn(_SEEN[-1]).text
    assert prompt.startswith("The following is a conversation history between a user and an AI agent.")


def test_the_chat_model_reads_an_earlier_summary() -> None:
    model = _Recorder(script=chat_script, name="test_chat")
    summary = f"{SUMMARY_PREFIX} English. The user's name is Ada. Cities the user mentioned: Oslo, Lima."
    request = LlmRequest(contents=[_text("model", summary), _text("user", "Which cities have I mentioned?")])

    async def ask() -> LlmResponse:
        return [r async for r in model.generate_content_async(request)][0]

    answer = asyncio.run(ask())
    assert answer.content.parts[0].text == "You mentioned Oslo and Lima."  # type: ignore[union-attr, index]
    assert request.contents[0].role == "model", "the caller's request is left as it was"


def _event(ts: float, text: str = "x") -> Event:
    return Event(author="user", invocation_id=f"i{ts}", timestamp=ts, content=_text("user", text))


def _summary(start: float, end: float, ts: float) -> Event:
    compaction = EventCompaction(start_timestamp=start, end_timestamp=end, compacted_content=_text("model", "sum"))
    return Event(author="user", invocation_id=f"c{ts}", timestamp=ts, actions=EventActions(compaction=compaction))


def test_drop_compacted_events_keeps_the_latest_summary_and_what_follows() -> None:
    first, second = _summary(1, 2, 3.5), _summary(1, 4, 5.5)
    events = [_event(1), _event(2), _event(3), first, _event(4), _event(5), second, _event(6)]
    session = Session(id="s", app_name="a", user_id="u", events=events)
    kept = drop_compacted_events(session)
    assert [e.timestamp for e in kept.events] == [5, 5.5, 6]
    assert len(session.events) == 8, "the session itself is left whole"


def test_drop_compacted_events_leaves_an_uncompacted_session_alone() -> None:
    session = Session(id="s", app_name="a", user_id="u", events=[_event(1), _event(2)])
    assert drop_compacted_events(session).events == session.events


def test_chat_agent_remembers_across_turns(ingress: Ingress, admin: Admin, chat_agents: AgentProcess, key: str) -> None:
    ingress.call("ChatAgent", "run", "Hi, my name is Ada.", key=key)
    ingress.call("ChatAgent", "run", "Please plan a trip to Porto.", key=key)
    assert ingress.call("ChatAgent", "run", "What is my name?", key=key) == "Your name is Ada."
    assert ingress.call("ChatAgent", "run", "Which cities have I mentioned?", key=key) == "You mentioned Porto."
    session = stored_session(admin, "ChatAgent", key)
    assert session is not None and user_messages(session)[0] == "Hi, my name is Ada."


def test_compact_agent_stays_bounded_and_remembers(
    ingress: Ingress, admin: Admin, chat_agents: AgentProcess, key: str
) -> None:
    plain = measure_growth(ingress, admin, "ChatAgent", key, conversation(30))
    compact = measure_growth(ingress, admin, "CompactChatAgent", key, conversation(30))
    assert compact["stored_bytes"].iloc[-1] < 0.3 * plain["stored_bytes"].iloc[-1]
    assert compact["stored_bytes"].iloc[15:].max() < 1.5 * compact["stored_bytes"].iloc[:15].max()
    assert ingress.call("CompactChatAgent", "run", "What is my name?", key=key) == "Your name is Ada."
    session = stored_session(admin, "CompactChatAgent", key)
    assert session is not None and "Hi, my name is Ada." not in user_messages(session)
    assert session_events(session)["summary"].str.startswith(SUMMARY_PREFIX).any()


def test_summarizing_agent_alone_keeps_every_event(
    ingress: Ingress, admin: Admin, chat_agents: AgentProcess, key: str
) -> None:
    measure_growth(ingress, admin, "SummarizingChatAgent", key, conversation(20))
    session = stored_session(admin, "SummarizingChatAgent", key)
    assert session is not None
    assert user_messages(session) == conversation(20)
    assert session_events(session)["summary"].str.startswith(SUMMARY_PREFIX).any()


@pytest.mark.parametrize("service", ["ChatAgent", "CompactChatAgent"])
def test_bad_input_is_a_clear_400(ingress: Ingress, chat_agents: AgentProcess, key: str, service: str) -> None:
    with pytest.raises(RestateError, match="must be a JSON string") as err:
        ingress.call(service, "run", {"text": "hi"}, key=key)
    assert err.value.status == 400

"""Reading stored sessions, timing queued messages, measuring growth: agent_lib.sessions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_lib.agents.chat import PLAN_SECONDS_ENV
from agent_lib.clients import Admin, Ingress
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess
from agent_lib.sessions import (
    CITIES,
    compare_growth,
    conversation,
    measure_growth,
    run_concurrently,
    session_events,
    session_size,
    state_key,
    stored_session,
    user_messages,
)


@pytest.fixture(scope="module")
def chat(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    """The chat services in their own process, with a planner that takes 0.5 s."""
    proc = AgentProcess(
        ["agent_lib.agents.chat:chat_service", "agent_lib.agents.chat:compact_chat_service"],
        admin=Admin(restate_server.admin_url),
        env={PLAN_SECONDS_ENV: "0.5"},
        name="test-sessions-chat",
    )
    with proc:
        yield proc


def test_conversation_starts_with_the_name_then_cities() -> None:
    assert conversation(3) == [
        "Hi, my name is Ada.",
        f"I would like to visit {CITIES[0]}.",
        f"I would like to visit {CITIES[1]}.",
    ]
    assert len(conversation(25)) == 25
    with pytest.raises(ValueError, match="at least one turn"):
        conversation(0)


def test_session_events_and_user_messages_read_a_stored_session() -> None:
    session = {
        "events": [
            {"author": "user", "content": {"parts": [{"text": "Plan a trip to Oslo."}]}, "actions": {}},
            {"author": "bot", "content": {"parts": [{"function_call": {"name": "plan_trip"}}]}, "actions": {}},
            {"author": "user", "actions": {"compaction": {"compacted_content": {"parts": [{"text": "sum"}]}}}},
        ]
    }
    events = session_events(session)
    assert events["author"].tolist() == ["user", "bot", "user"]
    assert events["tool_calls"].tolist() == [[], ["plan_trip"], []]
    assert events["summary"].tolist() == ["", "", "sum"]
    assert user_messages(session) == ["Plan a trip to Oslo."]
    assert state_key("abc") == "session_store::abc"


def test_an_unknown_key_has_no_session(admin: Admin, key: str) -> None:
    assert session_size(admin, "ChatAgent", key) == 0
    assert stored_session(admin, "ChatAgent", key) is None


def test_measure_growth_records_size_and_latency(ingress: Ingress, admin: Admin, chat: AgentProcess, key: str) -> None:
    growth = measure_growth(ingress, admin, "ChatAgent", key, conversation(5))
    assert growth["turn"].tolist() == [1, 2, 3, 4, 5]
    assert growth["stored_bytes"].is_monotonic_increasing and growth["stored_bytes"].iloc[0] > 0
    assert (growth["seconds"] > 0).all()
    assert growth["stored_bytes"].iloc[-1] == session_size(admin, "ChatAgent", key)
    assert growth["reply"].iloc[0].startswith("Nice to meet you, Ada")


def test_compare_growth_takes_turns_between_services(ingress: Ingress, admin: Admin, chat: AgentProcess) -> None:
    keys = {"ChatAgent": f"cmp-{uuid.uuid4().hex[:8]}", "CompactChatAgent": f"cmp-{uuid.uuid4().hex[:8]}"}
    growth = compare_growth(ingress, admin, keys, conversation(4))
    assert set(growth) == set(keys)
    for service, frame in growth.items():
        assert len(frame) == 4
        assert frame["stored_bytes"].iloc[-1] == session_size(admin, service, keys[service])


def test_one_key_queues_in_order_while_many_keys_run_in_parallel(
    ingress: Ingress, admin: Admin, chat: AgentProcess, key: str
) -> None:
    messages = [f"Plan a trip to {city}." for city in CITIES[:3]]
    one = run_concurrently(ingress, admin, "ChatAgent", [(key, m) for m in messages])
    many = run_concurrently(ingress, admin, "ChatAgent", [(f"{key}-{i}", m) for i, m in enumerate(messages)])
    assert one["message"].tolist() == messages
    assert (one["started"].to_numpy()[1:] >= one["finished"].to_numpy()[:-1] - 0.005).all()
    assert many["started"].max() < many["finished"].min()
    assert one["finished"].max() > 1.5 * many["finished"].max()
    assert user_messages(stored_session(admin, "ChatAgent", key) or {}) == messages


def test_run_concurrently_needs_jobs(ingress: Ingress, admin: Admin) -> None:
    with pytest.raises(ValueError, match="at least one"):
        run_concurrently(ingress, admin, "ChatAgent", [])

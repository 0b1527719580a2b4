"""Lesson 03's checks against right and wrong answers: each wrong one fails, and says what is wrong."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import restate
from google.adk import Runner
from google.adk.agents.llm_agent import Agent
from google.adk.apps import App
from restate.ext.adk import RestatePlugin, RestateSessionService

from agent_lib import check
from agent_lib.agents._common import final_text, user_message
from agent_lib.agents.chat import PLAN_SECONDS_ENV, chat_script
from agent_lib.check import _core
from agent_lib.check._core import Began
from agent_lib.clients import Admin, Ingress
from agent_lib.models import default_model
from agent_lib.server import RestateServer, free_port
from agent_lib.serving import AgentProcess
from agent_lib.sessions import conversation
from tests.helpers import begin, failed

_runner = Runner(
    app=App(
        name="my_chat",
        root_agent=Agent(model=default_model(chat_script, name="my_chat"), name="my_chat", instruction="Chat."),
        plugins=[RestatePlugin()],
    ),
    session_service=RestateSessionService(),
)


async def _chat(ctx: restate.ObjectContext, message: str) -> str | None:
    reply = None
    async for event in _runner.run_async(user_id=ctx.key(), session_id="session", new_message=user_message(message)):
        reply = final_text(event) or reply
    return reply


my_chat = restate.VirtualObject("L03MyChatAgent")
wrong_forget = restate.VirtualObject("L03WrongForgetChatAgent")
no_plugin = restate.VirtualObject("L03NoPluginChatAgent")

_runner_without_plugin = Runner(
    app=App(
        name="my_chat",
        root_agent=Agent(model=default_model(chat_script, name="my_chat"), name="my_chat", instruction="Chat."),
    ),
    session_service=RestateSessionService(),
)


@my_chat.handler()
async def run(ctx: restate.ObjectContext, message: str) -> str | None:
    """The exercise done right: a chat agent with a `forget` that clears the session."""
    return await _chat(ctx, message)


@my_chat.handler()
async def forget(ctx: restate.ObjectContext) -> None:
    ctx.clear("session_store::session")


@wrong_forget.handler("run")
async def wrong_run(ctx: restate.ObjectContext, message: str) -> str | None:
    """A likely slip: `forget` clears a state key that does not exist."""
    return await _chat(ctx, message)


@wrong_forget.handler("forget")
async def wrong_forget_handler(ctx: restate.ObjectContext) -> None:
    ctx.clear("session")


@no_plugin.handler("run")
async def no_plugin_run(ctx: restate.ObjectContext, message: str) -> str | None:
    """A likely slip: the App without RestatePlugin()."""
    reply = None
    async for event in _runner_without_plugin.run_async(
        user_id=ctx.key(), session_id="session", new_message=user_message(message)
    ):
        reply = final_text(event) or reply
    return reply


@no_plugin.handler("forget")
async def no_plugin_forget(ctx: restate.ObjectContext) -> None:
    ctx.clear("session_store::session")


@pytest.fixture(scope="module")
def chat(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    targets = [f"agent_lib.agents.chat:{s}" for s in ("chat_service", "compact_chat_service")]
    proc = AgentProcess(
        targets, admin=Admin(restate_server.admin_url), env={PLAN_SECONDS_ENV: "1"}, name="l03-check-chat"
    )
    with proc:
        yield proc


@pytest.fixture(scope="module")
def mine(restate_server: RestateServer, _kit_data: Path) -> Iterator[tuple[AgentProcess, Began]]:
    began = begin(3, Admin(restate_server.admin_url))
    proc = AgentProcess(
        [
            "tests.test_check_lesson03:my_chat",
            "tests.test_check_lesson03:wrong_forget",
            "tests.test_check_lesson03:no_plugin",
        ],
        admin=Admin(restate_server.admin_url),
        name="l03-check-mine",
    )
    with proc:
        yield proc, began


@dataclass
class Queue:
    key: str
    statuses: list[str]
    began: Began


@pytest.fixture(scope="module")
def queue(chat: AgentProcess, restate_server: RestateServer) -> Queue:
    ingress, admin = Ingress(restate_server.ingress_url), Admin(restate_server.admin_url)
    began = begin(3, admin)
    key = f"queue-{uuid.uuid4().hex[:6]}"
    sent = [ingress.send("ChatAgent", "run", f"Plan a trip to {city}.", key=key) for city in ("Lima", "Oslo", "Kyoto")]
    statuses = [str(admin.status(s.invocation_id)) for s in sent]
    for s in sent:
        ingress.attach(s.invocation_id)
    return Queue(key, statuses, began)


def test_queue_passes_with_three_sends_and_the_statuses_seen_at_once(
    queue: Queue, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(_core._began, 3, queue.began)
    result = check.lesson_03.exercise_1.sync(admin, queue.key, queue.statuses)
    assert result.ok, result
    assert "queued" in result.message


def test_queue_fails_with_statuses_read_after_the_messages_finished(
    queue: Queue, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(_core._began, 3, queue.began)
    late = [str(admin.status(i["id"])) for i in admin.invocations("ChatAgent") if i["target_service_key"] == queue.key]
    failed(check.lesson_03.exercise_1.sync(admin, queue.key, late), "already finished")


def test_queue_fails_with_the_statuses_out_of_order(
    queue: Queue, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(_core._began, 3, queue.began)
    assert queue.statuses[1:] == ["pending", "pending"], queue.statuses
    reversed_order = ["pending", "pending", "running"]
    failed(check.lesson_03.exercise_1.sync(admin, queue.key, reversed_order), "first in, first out")


def test_queue_fails_with_one_status_missing(queue: Queue, admin: Admin, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(_core._began, 3, queue.began)
    failed(check.lesson_03.exercise_1.sync(admin, queue.key, queue.statuses[:2]), "2 status(es)", "3 messages")


def test_queue_refuses_a_key_used_before_the_exercises_began(queue: Queue, admin: Admin) -> None:
    begin(3, admin)
    failed(check.lesson_03.exercise_1.sync(admin, queue.key, queue.statuses), "before the exercises began")


def test_queue_fails_with_two_messages_only(chat: AgentProcess, ingress: Ingress, admin: Admin, key: str) -> None:
    begin(3, admin)
    sent = [ingress.send("ChatAgent", "run", f"Plan a trip to {city}.", key=key) for city in ("Lima", "Oslo")]
    statuses = [str(admin.status(s.invocation_id)) for s in sent]
    for s in sent:
        ingress.attach(s.invocation_id)
    failed(check.lesson_03.exercise_1.sync(admin, key, statuses), "2 message(s)", "not 3")


def test_queue_refuses_typed_statuses_of_messages_that_never_queued(
    chat: AgentProcess, ingress: Ingress, admin: Admin, key: str
) -> None:
    """Three ingress.calls in a row never queue: the statuses typed in claim a queue the server never saw."""
    begin(3, admin)
    for city in ("Lima", "Oslo", "Kyoto"):
        ingress.call("ChatAgent", "run", f"Plan a trip to {city}.", key=key)
    result = check.lesson_03.exercise_1.sync(admin, key, ["running", "pending", "pending"])
    failed(result, "the server saw no queue", "message 2", "after message 1 had finished")
    assert "ingress.call waits for each answer" in result.hint


def test_queue_says_begin_was_run_again(
    chat: AgentProcess, ingress: Ingress, admin: Admin, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The begin() cell run again after the work: the message says so, and how to recover."""
    monkeypatch.setitem(_core._begun, 3, [])
    monkeypatch.setitem(_core._began, 3, begin(3, admin))
    sent = [ingress.send("ChatAgent", "run", f"Plan a trip to {city}.", key=key) for city in ("Lima", "Oslo", "Kyoto")]
    statuses = [str(admin.status(s.invocation_id)) for s in sent]
    for s in sent:
        ingress.attach(s.invocation_id)
    begin(3, admin)
    result = check.lesson_03.exercise_1.sync(admin, key, statuses)
    failed(result, "before the exercises began", "you ran check.lesson_03.begin(admin) again", "2 times in all")
    assert "lesson's own" not in result.message
    assert "leave the check.lesson_03.begin(admin) cell alone" in result.hint


def test_begin_says_at_once_that_the_server_does_not_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stopped server (it answered before, so the admin client would ask again for 30 s): say so within seconds."""
    stopped = Admin(f"http://127.0.0.1:{free_port()}")
    stopped._answered = True
    monkeypatch.setitem(_core._began, 3, None)
    started = time.monotonic()
    with pytest.raises(ConnectionError) as err:
        check.lesson_03.begin(stopped)
    elapsed = time.monotonic() - started
    assert "does not answer" in str(err.value) and stopped.url in str(err.value)
    assert (
        "make lab" in str(err.value)
        and "python -m agent_lib up" in str(err.value)
        and "server.start()" in str(err.value)
    )
    assert elapsed < stopped.retry_for / 3, f"{elapsed:.1f} s: the admin client's own retries were not cut short"
    assert _core._began[3] is None, "a failed begin() records nothing"


def test_queue_fails_on_the_wrong_agent(chat: AgentProcess, ingress: Ingress, admin: Admin, key: str) -> None:
    begin(3, admin)
    ingress.call("CompactChatAgent", "run", "Plan a trip to Lima.", key=key)
    result = check.lesson_03.exercise_1.sync(admin, key, ["running", "pending", "pending"])
    failed(result, "on CompactChatAgent, not on ChatAgent")


@dataclass
class Talk:
    key: str
    began: Began


@pytest.fixture(scope="module")
def grace(chat: AgentProcess, restate_server: RestateServer) -> Talk:
    ingress = Ingress(restate_server.ingress_url)
    began = begin(3, Admin(restate_server.admin_url))
    key = f"grace-{uuid.uuid4().hex[:6]}"
    for message in conversation(30, name="Grace"):
        ingress.call("CompactChatAgent", "run", message, key=key)
    return Talk(key, began)


def test_compaction_passes_on_a_long_conversation_of_your_own(
    grace: Talk, ingress: Ingress, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(_core._began, 3, grace.began)
    result = check.lesson_03.exercise_2.sync(ingress, admin, grace.key, "Grace")
    assert result.ok, result
    assert "Grace" in result.message


def test_compaction_fails_on_a_near_miss_name(
    grace: Talk, ingress: Ingress, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(_core._began, 3, grace.began)
    failed(check.lesson_03.exercise_2.sync(ingress, admin, grace.key, "Gra"), "does not name 'Gra'")


def test_compaction_refuses_the_lessons_name(grace: Talk, ingress: Ingress, admin: Admin) -> None:
    failed(check.lesson_03.exercise_2.sync(ingress, admin, grace.key, "Ada"), "the lesson's own name")


def test_compaction_refuses_a_conversation_from_before_the_exercises(
    grace: Talk, ingress: Ingress, admin: Admin
) -> None:
    begin(3, admin)
    failed(check.lesson_03.exercise_2.sync(ingress, admin, grace.key, "Grace"), "began before the exercises")


def test_compaction_fails_on_the_agent_that_keeps_everything(
    chat: AgentProcess, ingress: Ingress, admin: Admin, key: str
) -> None:
    begin(3, admin)
    for message in conversation(3, name="Grace"):
        ingress.call("ChatAgent", "run", message, key=key)
    failed(check.lesson_03.exercise_2.sync(ingress, admin, key, "Grace"), "on ChatAgent, not on CompactChatAgent")


def test_compaction_fails_on_ten_turns_where_thirty_are_asked(
    chat: AgentProcess, ingress: Ingress, admin: Admin, key: str
) -> None:
    begin(3, admin)
    for message in conversation(10, name="Grace"):
        ingress.call("CompactChatAgent", "run", message, key=key)
    result = check.lesson_03.exercise_2.sync(ingress, admin, key, "Grace")
    failed(result, "had 10 turn(s)", "not the 30 the exercise asks for", "20 missing")


def test_forget_passes_on_a_service_that_clears_its_session(
    mine: tuple[AgentProcess, Began], ingress: Ingress, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(_core._began, 3, mine[1])
    result = check.lesson_03.exercise_3.sync(ingress, admin, service="L03MyChatAgent")
    assert result.ok, result


def test_forget_fails_when_forget_clears_the_wrong_state_key(
    mine: tuple[AgentProcess, Began], ingress: Ingress, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(_core._began, 3, mine[1])
    result = check.lesson_03.exercise_3.sync(ingress, admin, service="L03WrongForgetChatAgent")
    failed(result, "after forget, the state still has ['session_store::session']")


def test_forget_names_the_missing_plugin(
    mine: tuple[AgentProcess, Began], ingress: Ingress, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(_core._began, 3, mine[1])
    result = check.lesson_03.exercise_3.sync(ingress, admin, service="L03NoPluginChatAgent")
    failed(result, "journaled no model call", "its App has no RestatePlugin()")
    assert "RestateSessionService" not in result.message


def test_forget_fails_on_the_lessons_agent_without_forget(
    chat: AgentProcess, ingress: Ingress, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    begin(3, admin)
    failed(check.lesson_03.exercise_3.sync(ingress, admin, service="ChatAgent"), "not both 'run' and 'forget'")


def test_forget_refuses_a_deployment_registered_before_the_exercises(
    mine: tuple[AgentProcess, Began], ingress: Ingress, admin: Admin
) -> None:
    begin(3, admin)
    result = check.lesson_03.exercise_3.sync(ingress, admin, service="L03MyChatAgent")
    failed(result, "registered at", "before you began the exercises")

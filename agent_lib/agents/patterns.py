"""ADK's multi-agent patterns, made durable: routing, an agent as a tool, and workflows as handlers (lesson 10).

Routing with `sub_agents`:

- `HelpDesk`, a virtual object keyed by the customer: a coordinator `LlmAgent` (`desk_agent`) that hands the
  conversation to one of two specialists with ADK's `transfer_to_agent`: `billing_agent` (its tool
  `refund_order` books a refund, once per idempotency key) or `shipping_agent` (its tool `track_parcel`).
- `ToolDesk`: the same coordinator, with the billing agent wrapped as a tool (`AgentTool`) instead.

Workflows, written as handlers, since `RestatePlugin` refuses ADK's workflow agents (`WorkflowAgents` shows it):

- `Researcher`, `Writer` and `Reviewer`: one agent each, each its own stateless Restate service;
- `ContentPipeline`: `sequential` (research, write, review, each a durable call) and `parallel`
  (research several topics at once with `restate.gather`);
- `DraftLoop`, a virtual object keyed by the job: an evaluator-optimizer loop, at most `MAX_ROUNDS` rounds of
  write then review, that keeps its rounds and its best draft in state.

Every step that touches the outside world records itself in the ledger, and the hook points (`GATES`) let a
test or a lesson stop a process at an exact place and kill it there.

    curl localhost:8080/HelpDesk/cust-1/ask --json '"I was charged twice for order AB-1001: refund it, please"'
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol

import restate
from google.adk import Runner
from google.adk.agents import LoopAgent, ParallelAgent, SequentialAgent
from google.adk.agents.base_agent import BaseAgent
from google.adk.agents.llm_agent import Agent
from google.adk.apps import App
from google.adk.sessions import InMemorySessionService
from google.adk.tools.agent_tool import AgentTool
from google.adk.tools.tool_context import ToolContext
from pydantic import BaseModel
from restate.ext.adk import RestatePlugin, RestateSessionService
from restate.extensions import current_context

from ..gates import hit
from ..ledger import default_ledger
from ..models import Call, Reply, Turn, default_model
from ._common import JSON_INPUT, LESSON_RETRY_POLICY, require_json, require_message, user_message

__all__ = [
    "GATES",
    "LOOKUP_KIND",
    "MAX_ROUNDS",
    "ORDERS",
    "PASS_SCORE",
    "REFUND_KIND",
    "RESEARCH_SECONDS",
    "Answer",
    "Brief",
    "Journals",
    "Round",
    "agent_tool_service",
    "billing_agent",
    "billing_script",
    "desk_agent",
    "desk_script",
    "desk_service",
    "improve",
    "invocation_tree",
    "look_up",
    "lookups",
    "loop_service",
    "model_call_audit",
    "model_turns",
    "parallel",
    "pipeline_service",
    "refund_order",
    "research",
    "research_script",
    "research_service",
    "review",
    "review_service",
    "reviewer_script",
    "score_of",
    "sequential",
    "shipping_agent",
    "shipping_script",
    "tool_desk_script",
    "track_parcel",
    "workflow_agent",
    "workflow_agents_service",
    "write",
    "writer_script",
    "writer_service",
]

ORDERS: dict[str, float] = {"AB-1001": 40.0, "AB-1002": 120.0, "AB-1003": 350.0}
"""The shop's orders and what each cost: what the billing agent can refund."""

REFUND_KIND = "refund"
"""The ledger kind of a refund (recorded once per idempotency key)."""
LOOKUP_KIND = "lookup"
"""The ledger kind of a researcher's look-up (with its start and end times)."""
RESEARCH_SECONDS = 0.5
"""How long one look-up takes: long enough to see look-ups overlap."""

MAX_ROUNDS = 4
"""The evaluator-optimizer loop stops after this many rounds, even if no draft passed."""
PASS_SCORE = 80
"""A draft the reviewer scores at least this high ends the loop."""

GATES = (
    "patterns.billing.refund",
    "patterns.shipping.track",
    "patterns.pipeline.write",
    "patterns.pipeline.review",
    *(f"patterns.loop.round{n}" for n in range(1, MAX_ROUNDS + 1)),
)
"""The hook points of this module: before the refund step, before the tracking step, before the pipeline's
write and review calls, and where the writer of each round of the loop starts (a name per round, so that a
replay in always-replay mode never counts as a later round)."""


def _context() -> restate.Context | None:
    try:
        return current_context()
    except LookupError:
        return None


def _invocation_id() -> str | None:
    ctx = _context()
    return ctx.request().id if ctx is not None else None


async def _run_agent(runner: Runner, *, user_id: str, session_id: str, text: str) -> tuple[str, str]:
    """Run an agent on one message; return (the author of the final answer, its text)."""
    author, answer = "", ""
    async for event in runner.run_async(user_id=user_id, session_id=session_id, new_message=user_message(text)):
        if event.is_final_response() and event.content and event.content.parts:
            text_parts = [p.text for p in event.content.parts if p.text]
            if text_parts:
                author, answer = event.author, "".join(text_parts)
    return author, answer


# --- routing: a coordinator and its specialists ------------------------------------------------

_ORDER_ID = re.compile(r"\b([A-Z]{2}-\d{4})\b")


def desk_script(turn: Turn) -> Reply:
    """The coordinator's rules: hand billing questions to billing_agent, parcels to shipping_agent."""
    text = turn.text.lower()
    if any(word in text for word in ("refund", "charged", "invoice", "payment")):
        return [Call("transfer_to_agent", {"agent_name": "billing_agent"})]
    if any(word in text for word in ("parcel", "deliver", "shipping", "where is")):
        return [Call("transfer_to_agent", {"agent_name": "shipping_agent"})]
    return "I can help with billing (refunds, charges) and shipping (where is my parcel?): which is it?"


def billing_script(turn: Turn) -> Reply:
    """The billing agent's rules: refund the order named in the message, then say so."""
    if turn.results:
        return f"Done: {turn.results[-1].text}."
    found = _ORDER_ID.search(turn.text)
    if found is None:
        return "Which order should I refund? Give its number, e.g. AB-1001."
    return [Call("refund_order", {"order_id": found.group(1)})]


def shipping_script(turn: Turn) -> Reply:
    """The shipping agent's rules: track the order named in the message, then say where it is."""
    if turn.results:
        return f"Your parcel: {turn.results[-1].text}."
    found = _ORDER_ID.search(turn.text)
    if found is None:
        return "Which order's parcel? Give its number, e.g. AB-1001."
    return [Call("track_parcel", {"order_id": found.group(1)})]


async def refund_order(order_id: str, tool_context: ToolContext) -> str:
    """Refund an order to the customer's card.

    Args:
        order_id: The order's number, e.g. "AB-1001".
    """
    invocation_id = _invocation_id()
    await hit("patterns.billing.refund", invocation_id=invocation_id, order_id=order_id)
    key = f"{invocation_id}:refund:{tool_context.function_call_id}" if invocation_id else None

    async def refund() -> str:
        if order_id not in ORDERS:
            raise restate.TerminalError(f"there is no order {order_id}: check the number", status_code=404)
        amount = ORDERS[order_id]
        detail = {"order_id": order_id, "amount": amount}
        default_ledger().record(REFUND_KIND, detail, idempotency_key=key, invocation_id=invocation_id)
        return f"${amount:.2f} refunded for order {order_id}"

    ctx = _context()
    try:
        return await (refund() if ctx is None else ctx.run_typed("refund order", refund))
    except restate.TerminalError as err:
        return f"error: {err.message}"


_PARCELS = ("in the sorting centre", "out for delivery", "delivered to your door")


async def track_parcel(order_id: str) -> str:
    """Find out where an order's parcel is.

    Args:
        order_id: The order's number, e.g. "AB-1001".
    """
    await hit("patterns.shipping.track", invocation_id=_invocation_id(), order_id=order_id)

    async def track() -> str:
        return f"order {order_id} is {_PARCELS[sum(map(ord, order_id)) % len(_PARCELS)]}"

    ctx = _context()
    return await (track() if ctx is None else ctx.run_typed("track parcel", track))


def billing_agent(name: str = "billing_agent") -> Agent:
    """Build the billing specialist: refunds an order (lesson 10)."""
    return Agent(
        model=default_model(billing_script, name=name),
        name=name,
        description="Handles billing: refunds and charges. Give it the order number.",
        instruction="You handle billing. Refund the order the customer names with refund_order, then confirm.",
        tools=[refund_order],
    )


def shipping_agent(name: str = "shipping_agent") -> Agent:
    """Build the shipping specialist: tracks a parcel (lesson 10)."""
    return Agent(
        model=default_model(shipping_script, name=name),
        name=name,
        description="Handles shipping: where a parcel is. Give it the order number.",
        instruction="You handle shipping. Track the order the customer names with track_parcel, then say where it is.",
        tools=[track_parcel],
    )


def desk_agent(name: str = "desk_agent") -> Agent:
    """Build the coordinator, with the billing and shipping specialists as its sub-agents (lesson 10)."""
    return Agent(
        model=default_model(desk_script, name=name),
        name=name,
        instruction=(
            "You are a help desk's coordinator. Do not answer questions yourself: transfer billing questions "
            "(refunds, charges) to billing_agent and shipping questions (parcels, deliveries) to shipping_agent."
        ),
        sub_agents=[billing_agent(), shipping_agent()],
    )


class Answer(BaseModel):
    """What a desk answered, and which agent answered it."""

    agent: str
    answer: str


_desk_root = desk_agent()


@functools.cache
def _desk_runner() -> Runner:
    """Build the desk's runner on first use (ADK logs a context-cache warning when a transferring app is built)."""
    return Runner(
        app=App(name="desk", root_agent=_desk_root, plugins=[RestatePlugin()]),
        session_service=RestateSessionService(),
    )


desk_service = restate.VirtualObject("HelpDesk")


@desk_service.handler(input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)
async def ask(ctx: restate.ObjectContext, message: str) -> Answer:
    """Answer one message of the customer whose session is this object's key; say which agent answered."""
    text = require_message(message)
    author, answer = await _run_agent(_desk_runner(), user_id=ctx.key(), session_id="desk", text=text)
    return Answer(agent=author, answer=answer)


def tool_desk_script(turn: Turn) -> Reply:
    """The tool desk's rules: ask the billing agent (a tool) about billing, then pass its answer on."""
    if turn.results:
        return f"Billing says: {turn.results[-1].text}"
    if any(word in turn.text.lower() for word in ("refund", "charged")):
        return [Call("tool_billing_agent", {"request": turn.text})]
    return "I only handle billing here: ask me for a refund."


_tool_desk_runner = Runner(
    app=App(
        name="tool_desk",
        root_agent=Agent(
            model=default_model(tool_desk_script, name="tool_desk_agent"),
            name="tool_desk_agent",
            instruction="You are a help desk. For billing questions, ask the tool_billing_agent tool, then answer.",
            tools=[AgentTool(agent=billing_agent("tool_billing_agent"))],
        ),
        plugins=[RestatePlugin()],
    ),
    session_service=RestateSessionService(),
)

agent_tool_service = restate.VirtualObject("ToolDesk")


@agent_tool_service.handler(name="ask", input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)
async def ask_tool_desk(ctx: restate.ObjectContext, message: str) -> Answer:
    """Answer one message with the billing agent used as a tool (`AgentTool`)."""
    text = require_message(message)
    author, answer = await _run_agent(_tool_desk_runner, user_id=ctx.key(), session_id="desk", text=text)
    return Answer(agent=author, answer=answer)


# --- the three agents of the workflows, each its own service -------------------------------------

_TOPIC = re.compile(r"Research:\s*(?P<topic>[^\n]+)")
_FEEDBACK = re.compile(r"^Feedback \d+:", re.M)
_DRAFT = re.compile(r"Draft (\d+)")
_SCORE = re.compile(r"SCORE (\d+)")

_FACTS: dict[str, str] = {
    "returns": "returns are free within 30 days",
    "shipping": "orders ship in 2 working days",
    "warranty": "every lamp has a 2-year warranty",
}


def research_script(turn: Turn) -> Reply:
    """The researcher's rules: look the topic up, then report the facts."""
    if turn.results:
        return f"Facts: {'; '.join(r.text for r in turn.results)}."
    found = _TOPIC.search(turn.text)
    topic = found.group("topic").strip() if found else turn.text.strip()
    return [Call("look_up", {"topic": topic})]


def writer_script(turn: Turn) -> Reply:
    """The writer's rules: draft N+1 after N pieces of feedback, each draft better than the last."""
    number = len(_FEEDBACK.findall(turn.text)) + 1
    task = turn.text.splitlines()[0].removeprefix("Task:").strip()
    extras = ["", " With an example.", " With an example and a clear next step."]
    return f"Draft {number}: a note on {task}.{extras[min(number, len(extras)) - 1]}"


def reviewer_script(turn: Turn) -> Reply:
    """The reviewer's rules: score draft N at 50 + 20 (N - 1), and say what to improve."""
    found = _DRAFT.search(turn.text)
    number = int(found.group(1)) if found else 1
    score = min(100, 50 + 20 * (number - 1))
    advice = "good to go" if score >= PASS_SCORE else "add a concrete example and a next step"
    return f"SCORE {score}: {advice}"


def score_of(review: str) -> int:
    """Read the score out of a reviewer's answer ("SCORE 70: ..."); 0 if it gave none."""
    found = _SCORE.search(review)
    return int(found.group(1)) if found else 0


async def look_up(topic: str) -> str:
    """Look up the facts about a topic.

    Args:
        topic: What to look up, e.g. "returns".
    """
    invocation_id = _invocation_id()

    async def work() -> str:
        started = time.time()
        await asyncio.sleep(RESEARCH_SECONDS)
        facts = _FACTS.get(topic.lower(), f"nothing is known about {topic}")
        detail = {"topic": topic, "started": started, "finished": time.time()}
        default_ledger().record(LOOKUP_KIND, detail, invocation_id=invocation_id)
        return facts

    ctx = _context()
    return await (work() if ctx is None else ctx.run_typed(f"look up {topic}", work))


def lookups(topic: str | None = None) -> list[dict[str, Any]]:
    """Return the researchers' look-ups (optionally of one topic) as {topic, started, finished, invocation_id, pid}."""
    return [
        {**e.detail, "invocation_id": e.invocation_id, "pid": e.pid}
        for e in default_ledger().effects(LOOKUP_KIND)
        if topic is None or e.detail.get("topic") == topic
    ]


def _one_agent(name: str, script: Callable[[Turn], Reply], instruction: str, tools: list[Any]) -> Agent:
    return Agent(model=default_model(script, name=name), name=name, instruction=instruction, tools=tools)


researcher = _one_agent(
    "researcher", research_script, "You research a topic: call look_up with it, then list the facts.", [look_up]
)
writer = _one_agent(
    "writer",
    writer_script,
    "You write a short customer note on the task. Start with 'Draft N:' where N is one more than the number of "
    "feedback lines, and address every piece of feedback.",
    [],
)
reviewer = _one_agent(
    "reviewer",
    reviewer_script,
    f"You review a draft. Answer 'SCORE n: advice' with n from 0 to 100; {PASS_SCORE} or more means it is ready.",
    [],
)


def _stateless_runner(agent: Agent) -> tuple[Runner, InMemorySessionService]:
    sessions = InMemorySessionService()  # type: ignore[no-untyped-call]
    app = App(name=agent.name, root_agent=agent, plugins=[RestatePlugin()])
    return Runner(app=app, session_service=sessions, auto_create_session=True), sessions


_RUNNERS = {a.name: _stateless_runner(a) for a in (researcher, writer, reviewer)}


async def _ask_once(ctx: restate.Context, agent: str, text: str) -> str:
    """Run one agent on one message, in a session that lives for this invocation only."""
    runner, sessions = _RUNNERS[agent]
    session_id = ctx.request().id
    await sessions.delete_session(app_name=agent, user_id=agent, session_id=session_id)
    try:
        _, answer = await _run_agent(runner, user_id=agent, session_id=session_id, text=text)
    finally:
        await sessions.delete_session(app_name=agent, user_id=agent, session_id=session_id)
    return answer


def _require_text(value: Any, what: str, example: str) -> str:
    require_json(value)
    if not isinstance(value, str) or not value.strip():
        raise restate.TerminalError(f"{what} must be a non-empty JSON string, e.g. {example!r}", status_code=400)
    return value


research_service = restate.Service("Researcher")


@research_service.handler(input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)
async def research(ctx: restate.Context, topic: str) -> str:
    """Research a topic: the researcher agent looks it up and lists the facts."""
    return await _ask_once(ctx, "researcher", f"Research: {_require_text(topic, 'the topic', 'returns')}")


writer_service = restate.Service("Writer")


class Brief(BaseModel):
    """What the writer is asked: the task, the facts to use, and the reviewers' feedback so far."""

    task: str
    facts: str = ""
    feedback: list[str] = []
    round: int = 0
    """The loop's round this draft is for (0 outside a loop): the writer hits hook point `patterns.loop.round<n>`."""


def _brief_text(brief: Brief) -> str:
    lines = [f"Task: {brief.task}"]
    if brief.facts:
        lines.append(f"Facts: {brief.facts}")
    lines += [f"Feedback {i}: {fb}" for i, fb in enumerate(brief.feedback, 1)]
    return "\n".join(lines)


@writer_service.handler(input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)
async def write(ctx: restate.Context, brief: dict[str, Any]) -> str:
    """Write a draft for a brief {task, facts, feedback}."""
    require_json(brief)
    try:
        b = Brief.model_validate(brief)
    except ValueError as err:
        raise restate.TerminalError(f"the brief is not valid: {err}", status_code=400) from None
    if b.round:
        await hit(f"patterns.loop.round{b.round}", invocation_id=ctx.request().id)
    return await _ask_once(ctx, "writer", _brief_text(b))


review_service = restate.Service("Reviewer")


@review_service.handler(input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)
async def review(ctx: restate.Context, draft: str) -> str:
    """Review a draft: 'SCORE n: advice'."""
    return await _ask_once(ctx, "reviewer", _require_text(draft, "the draft", "Draft 1: ..."))


# --- sequential and parallel, as a handler -------------------------------------------------------

pipeline_service = restate.Service("ContentPipeline")


@pipeline_service.handler(input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)
async def sequential(ctx: restate.Context, topic: str) -> dict[str, Any]:
    """Research a topic, write a note from the facts, review it: three durable agent calls, in order."""
    topic = _require_text(topic, "the topic", "returns")
    facts = await ctx.service_call(research, arg=topic)
    await hit("patterns.pipeline.write", invocation_id=ctx.request().id)
    draft = await ctx.service_call(write, arg={"task": f"our {topic} policy", "facts": facts})
    await hit("patterns.pipeline.review", invocation_id=ctx.request().id)
    verdict = await ctx.service_call(review, arg=draft)
    return {"facts": facts, "draft": draft, "review": verdict, "score": score_of(verdict)}


@pipeline_service.handler(input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)
async def parallel(ctx: restate.Context, topics: list[str]) -> dict[str, str]:
    """Research several topics at once: one durable call each, gathered."""
    require_json(topics)
    if not isinstance(topics, list) or not topics or not all(isinstance(t, str) and t.strip() for t in topics):
        raise restate.TerminalError('the topics must be a JSON list of strings, e.g. ["returns", "shipping"]', 400)
    calls = [ctx.service_call(research, arg=t) for t in topics]
    await restate.gather(*calls)
    return {t: await c for t, c in zip(topics, calls, strict=True)}


# --- the evaluator-optimizer loop -----------------------------------------------------------------


class Round(BaseModel):
    """One round of the loop: the draft, its review and score, and the two agent invocations."""

    round: int
    draft: str
    review: str
    score: int
    writer: str
    reviewer: str


loop_service = restate.VirtualObject("DraftLoop")


@loop_service.handler(input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)
async def improve(ctx: restate.ObjectContext, task: str) -> dict[str, Any]:
    """Write, review, rewrite with the feedback, until a draft scores PASS_SCORE or MAX_ROUNDS have run.

    Each round's draft, review and score are kept in state ("rounds"), and the best draft so far ("best").
    """
    task = _require_text(task, "the task", "our returns policy")
    rounds: list[Round] = []
    for number in range(1, MAX_ROUNDS + 1):
        writing = ctx.service_call(write, arg={"task": task, "feedback": [r.review for r in rounds], "round": number})
        draft = await writing
        reviewing = ctx.service_call(review, arg=draft)
        verdict = await reviewing
        done = Round(
            round=number,
            draft=draft,
            review=verdict,
            score=score_of(verdict),
            writer=await writing.invocation_id(),
            reviewer=await reviewing.invocation_id(),
        )
        rounds.append(done)
        ctx.set("rounds", [r.model_dump() for r in rounds])
        best = max(rounds, key=lambda r: r.score)
        ctx.set("best", best.model_dump())
        if done.score >= PASS_SCORE:
            break
    best = max(rounds, key=lambda r: r.score)
    return {"best": best.model_dump(), "rounds": len(rounds), "passed": best.score >= PASS_SCORE}


@loop_service.handler(kind="shared")
async def progress(ctx: restate.ObjectSharedContext) -> dict[str, Any]:
    """Return the rounds so far and the best draft (a shared handler: it reads while `improve` runs)."""
    return {"rounds": await ctx.get("rounds") or [], "best": await ctx.get("best")}


# --- ADK's workflow agents, under the plugin ------------------------------------------------------

WorkflowKind = Literal["sequential", "parallel", "loop"]


def workflow_agent(kind: WorkflowKind) -> BaseAgent:
    """Build ADK's own workflow agent of this kind, over fresh copies of the researcher and the writer."""
    parts: list[BaseAgent] = [
        _one_agent(f"{kind}_researcher", research_script, "Research the topic with look_up.", [look_up]),
        _one_agent(f"{kind}_writer", writer_script, "Write a short note.", []),
    ]
    if kind == "sequential":
        return SequentialAgent(name="sequential_workflow", sub_agents=parts)
    if kind == "parallel":
        return ParallelAgent(name="parallel_workflow", sub_agents=parts)
    return LoopAgent(name="loop_workflow", sub_agents=parts, max_iterations=2)


_WORKFLOW_RUNNERS = {
    kind: Runner(
        app=App(name=f"{kind}_workflow", root_agent=workflow_agent(kind), plugins=[RestatePlugin()]),
        session_service=InMemorySessionService(),  # type: ignore[no-untyped-call]
        auto_create_session=True,
    )
    for kind in ("sequential", "parallel", "loop")
}

workflow_agents_service = restate.Service("WorkflowAgents")


@workflow_agents_service.handler(name="run", input_serde=JSON_INPUT)
async def run_workflow(ctx: restate.Context, kind: str) -> str:
    """Run ADK's own SequentialAgent, ParallelAgent or LoopAgent under RestatePlugin (it refuses them)."""
    if kind not in _WORKFLOW_RUNNERS:
        raise restate.TerminalError(f"kind must be one of {sorted(_WORKFLOW_RUNNERS)}, not {kind!r}", 400)
    _, answer = await _run_agent(
        _WORKFLOW_RUNNERS[kind], user_id="workflow", session_id=ctx.request().id, text="Research: returns"
    )
    return answer


# --- reading what a pattern did ----------------------------------------------------------------------


class Journals(Protocol):
    """What the audit reads from the admin API (an `agent_lib.clients.Admin` has both)."""

    def query(self, sql: str) -> list[dict[str, Any]]:
        """Run SQL on the server's tables."""
        ...

    def steps(self, invocation_id: str) -> list[str]:
        """Return an invocation's `run` steps, in order."""
        ...

    def journal(self, invocation_id: str) -> list[dict[str, Any]]:
        """Return an invocation's journal entries, in order."""
        ...


def invocation_tree(admin: Journals, invocation_id: str) -> list[dict[str, str]]:
    """Return the invocation and every invocation it called (and they called), each as {id, service, handler}."""
    if not re.fullmatch(r"inv_\w+", invocation_id):
        raise ValueError(f"{invocation_id!r} is not an invocation id (they look like inv_1a2b...)")
    found: list[dict[str, str]] = []
    todo = [invocation_id]
    while todo:
        ids = ", ".join(f"'{i}'" for i in todo)
        rows = admin.query(
            "SELECT id, target_service_name AS service, target_handler_name AS handler, invoked_by_id, created_at "
            f"FROM sys_invocation WHERE id IN ({ids}) OR invoked_by_id IN ({ids}) ORDER BY created_at"
        )
        new = [r for r in rows if r["id"] not in {f["id"] for f in found}]
        found += [{"id": r["id"], "service": r["service"], "handler": r["handler"]} for r in new]
        todo = [r["id"] for r in new if r["id"] not in todo]
    return found


def model_call_audit(admin: Journals, invocation_id: str) -> list[dict[str, Any]]:
    """For the invocation and each one it called: its journaled model calls, the calls paid for, and by which pids.

    A model call answered from the journal is not paid for again: `paid` equals `journaled` unless a model call was
    made twice.
    """
    ledger = default_ledger()
    rows = []
    for inv in invocation_tree(admin, invocation_id):
        calls = ledger.effects("model_call", invocation_id=inv["id"])
        rows.append(
            {
                **inv,
                "journaled": admin.steps(inv["id"]).count("call LLM"),
                "paid": len(calls),
                "pids": sorted({c.pid for c in calls}),
            }
        )
    return rows


def _payload(entry_json: str | None) -> Any:
    """Decode a journaled run's result (JSON bytes, as the server lists them), or None."""
    try:
        completion = json.loads(entry_json or "{}")["Notification"]["Completion"]["Run"]
        return json.loads(bytes(completion["result"]["Success"]))
    except (KeyError, TypeError, ValueError):
        return None


def model_turns(admin: Journals, invocation_id: str) -> list[str]:
    """Return what each journaled model call answered, in order: the tool calls it asked for, or its text."""
    answers: list[str] = []
    rows = admin.journal(invocation_id)
    names = {
        json.loads(r["entry_json"])["Command"]["Run"]["completion_id"]: r["name"]
        for r in rows
        if r["entry_type"] == "Command: Run" and r["entry_json"]
    }
    for row in rows:
        if row["entry_type"] != "Notification: Run" or not row["entry_json"]:
            continue
        completion = json.loads(row["entry_json"])["Notification"]["Completion"]["Run"]["completion_id"]
        response = _payload(row["entry_json"])
        if names.get(completion) != "call LLM" or not isinstance(response, dict):
            continue
        parts = (response.get("content") or {}).get("parts") or []
        calls = [p["function_call"] for p in parts if p.get("function_call")]
        if calls:
            answers.append(", ".join(f"{c['name']}({json.dumps(c.get('args') or {})})" for c in calls))
        else:
            answers.append("".join(p.get("text") or "" for p in parts))
    return answers

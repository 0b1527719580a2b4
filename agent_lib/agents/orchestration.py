"""Orchestrators, workflows as tools, remote agents and errors, made durable (lesson 11).

The durable versions of four patterns of Restate's ADK tour, and what the plugin changes in ADK:

- `ReportOrchestrator` (service): a planner agent plans research questions, one `ReportResearcher` agent
  invocation per question runs in parallel (`restate.gather`), a writer agent merges the findings.
- `EditorAgent` (virtual object): an agent whose `publish` tool runs the `PublishReport` workflow
  (`ctx.workflow_call`) and gets its result durably.
- `ClaimCoordinator` (virtual object): an agent whose tools call the claims specialists of lesson 05,
  served in another process, by name only (`ctx.generic_call`): remote agents.
- `OrderDesk` (virtual object): model calls retried by `RestatePlugin(run_options=...)`, a tool's
  TerminalError, and the handler that catches it to answer cleanly (`ask`) or lets it through (`ask_unguarded`).
- `WatchedAgent` / `BudgetedAgent` (virtual objects): which ADK callbacks fire under the plugin, and a
  plugin that makes `RunConfig(max_llm_calls=...)` hold again.

Every effect goes to the ledger (kinds in `KINDS`) and every crash point is a gate (see agent_lib.gates),
so a lesson or a test can kill the process at an exact point and count what ran again.

    curl localhost:8080/ReportOrchestrator/write --json '{"report_id": "r-1", "topic": "heat pumps"}'
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from pathlib import Path
from typing import Any

import restate
from google.adk import Runner
from google.adk.agents.callback_context import CallbackContext
from google.adk.agents.invocation_context import InvocationContext
from google.adk.agents.llm_agent import Agent
from google.adk.agents.run_config import RunConfig
from google.adk.apps import App
from google.adk.events.event import Event
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.plugins import BasePlugin
from google.adk.sessions import InMemorySessionService
from google.adk.tools.base_tool import BaseTool
from google.adk.tools.tool_context import ToolContext
from google.genai import errors
from restate.ext.adk import RestatePlugin, RestateSessionService, restate_context
from restate.extensions import current_context

from .. import gemini
from .._paths import data_dir
from ..gates import Gate, hit
from ..ledger import Ledger, default_ledger
from ..models import Call, Reply, Turn, default_model
from ._common import JSON_INPUT, LESSON_RETRY_POLICY, final_text, require_json, require_message, user_message
from .specialists import require_claim

__all__ = [
    "BUDGET_LIMIT",
    "HOOKS",
    "KINDS",
    "MAX_TASKS",
    "MODEL_RUN_OPTIONS",
    "SORRY",
    "FlakyModel",
    "ModelCallBudget",
    "WatchPlugin",
    "callback_counts",
    "caught_gate",
    "coordinator_service",
    "editor_service",
    "order_desk_service",
    "hook_counts",
    "make_watched_agent",
    "model_attempts",
    "orchestrator_service",
    "plan_questions",
    "publish_gate",
    "publish_workflow",
    "research_gate",
    "researcher_service",
    "set_model_faults",
    "terminal_cause",
    "watched_service",
    "budgeted_service",
    "tick_gate",
    "watched_script",
]

MAX_TASKS = 4
"""The most research questions the planner may hand out for one report."""

KINDS = ("research", "render", "publish", "model_attempt", "order_lookup", "callback", "tick")
"""The ledger kinds this module records."""

MODEL_RUN_OPTIONS: restate.RunOptions[Any] = gemini.run_options(max_attempts=3)
"""How `OrderDesk` retries a failed model call: 3 attempts in all, then a TerminalError.

The delay between attempts is agent_lib.gemini's: a fault it knows (429, 5xx, timeout) carries its own delay as a
RetryableError, which overrides these intervals; any other exception waits 2 s, 4 s ... 60 s, the same backoff.
"""

SORRY = "Sorry, I cannot answer that right now"
"""How `OrderDesk.ask` starts its answer when the turn failed with a TerminalError."""

BUDGET_LIMIT = 2
"""`RunConfig(max_llm_calls=...)` of `WatchedAgent` and `BudgetedAgent`."""


def _context() -> restate.Context | None:
    try:
        return current_context()
    except LookupError:
        return None


def _invocation_id() -> str | None:
    ctx = _context()
    return ctx.request().id if ctx is not None else None


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:80]


async def _answer(
    runner: Runner,
    *,
    user_id: str,
    session_id: str,
    text: str,
    state: Mapping[str, Any] | None = None,
    run_config: RunConfig | None = None,
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Run one turn; return the final text, the last args of each tool call and the last response of each tool."""
    answer, calls, responses = "", {}, {}
    events = runner.run_async(
        user_id=user_id,
        session_id=session_id,
        new_message=user_message(text),
        state_delta=dict(state or {}),
        run_config=run_config,
    )
    async for event in events:
        for call in event.get_function_calls():
            calls[call.name or ""] = dict(call.args or {})
        for response in event.get_function_responses():
            responses[response.name or ""] = dict(response.response or {})
        answer = final_text(event) or answer
    return answer, calls, responses


async def _once(runner: Runner, sessions: InMemorySessionService, app: str, text: str, **state: Any) -> Any:
    """Run one turn of a service's agent in a session that lives for this invocation only."""
    session_id = _invocation_id() or "local"
    await sessions.delete_session(app_name=app, user_id="svc", session_id=session_id)
    try:
        return await _answer(runner, user_id="svc", session_id=session_id, text=text, state=state)
    finally:
        await sessions.delete_session(app_name=app, user_id="svc", session_id=session_id)


def _service_runner(
    name: str, agent: Agent, plugins: Sequence[BasePlugin] = ()
) -> tuple[Runner, InMemorySessionService]:
    sessions = InMemorySessionService()  # type: ignore[no-untyped-call]
    app = App(name=name, root_agent=agent, plugins=[*plugins, RestatePlugin()])
    return Runner(app=app, session_service=sessions, auto_create_session=True), sessions


# --- 1. the orchestrator: plan, research in parallel, write ------------------------------------


def plan_questions(topic: str) -> list[str]:
    """Return the four questions the offline planner asks about `topic`."""
    return [
        f"What is {topic}?",
        f"Who uses {topic} today?",
        f"What does {topic} cost?",
        f"What are the risks of {topic}?",
    ]


_TOPIC = re.compile(r"report on:?\s*(?P<topic>.+?)\s*$", re.IGNORECASE | re.DOTALL)


def planner_script(turn: Turn) -> Reply:
    """The offline planner: hand out four research questions on the topic, in one plan_research call."""
    found = _TOPIC.search(turn.text)
    if found is None:
        return "Ask me for a report, e.g. 'Write a report on heat pumps'."
    return [Call("plan_research", {"questions": plan_questions(found["topic"].rstrip("."))})]


async def plan_research(questions: list[str], tool_context: ToolContext) -> dict[str, Any]:
    """Hand out the research questions for the report, one per researcher.

    Args:
        questions: Two to four short, separate research questions on the topic.
    """
    tool_context.actions.skip_summarization = True
    return {"questions": [str(q) for q in questions][:MAX_TASKS]}


planner_agent = Agent(
    model=default_model(planner_script, name="report_planner"),
    name="report_planner",
    instruction=(
        "You plan research reports. Break the topic into two to four separate research questions and hand them "
        "out with one call of plan_research. Do not answer them yourself."
    ),
    tools=[plan_research],
)
_planner, _planner_sessions = _service_runner("report_planner", planner_agent)


def researcher_script(turn: Turn) -> Reply:
    """The offline researcher: look the question up once, then say what the notes say."""
    if turn.results:
        return turn.results[-1].text
    return [Call("look_up", {"question": turn.text})]


def research_gate(report_id: str, index: int) -> Gate:
    """Return the gate inside the look-up of question `index` (0-based) of report `report_id`."""
    return Gate(f"orchestration.research.{_safe(report_id)}.{index}")


async def look_up(question: str, tool_context: ToolContext) -> str:
    """Look a research question up in the library, and return the notes found.

    Args:
        question: The research question, as the user asked it.
    """
    task = dict(tool_context.state.get("task") or {})
    report_id, index = str(task.get("report_id", "")), int(task.get("index", 0))

    async def search() -> str:
        await hit(research_gate(report_id, index).name, invocation_id=_invocation_id())
        detail = {"report_id": report_id, "index": index, "question": question}
        default_ledger().record("research", detail, invocation_id=_invocation_id())
        return f"notes on {question!r}: {len(question.split())} key points, 2 sources"

    ctx = _context()
    return await (search() if ctx is None else ctx.run_typed("Look up", search))


researcher_agent = Agent(
    model=default_model(researcher_script, name="report_researcher"),
    name="report_researcher",
    instruction="You answer one research question. Call look_up once, then report what the notes say in one line.",
    tools=[look_up],
)
_researcher, _researcher_sessions = _service_runner("report_researcher", researcher_agent)

researcher_service = restate.Service("ReportResearcher")


@researcher_service.handler(input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)
async def research(ctx: restate.Context, task: dict[str, Any]) -> dict[str, Any]:
    """Research one question of a report: {"report_id", "index", "question"} -> the finding."""
    require_json(task)
    if not isinstance(task, dict) or not isinstance(task.get("question"), str) or not task["question"].strip():
        raise restate.TerminalError('send {"report_id": ..., "index": 0, "question": "..."}', status_code=400)
    note, _, responses = await _once(
        _researcher, _researcher_sessions, "report_researcher", task["question"], task=task
    )
    finding = str(responses.get("look_up", {}).get("result", "")) or note
    return {"index": int(task.get("index", 0)), "question": task["question"], "finding": finding}


def writer_script(turn: Turn) -> Reply:
    """The offline writer: one sentence that names the topic and counts the findings merged."""
    lines = turn.text.splitlines()
    findings = [line for line in lines if line.startswith("- ")]
    return f"{lines[0]} This report merges {len(findings)} findings."


writer_agent = Agent(
    model=default_model(writer_script, name="report_writer"),
    name="report_writer",
    instruction="You write reports. Merge the research findings you are given into one short paragraph.",
)
_writer, _writer_sessions = _service_runner("report_writer", writer_agent)

orchestrator_service = restate.Service("ReportOrchestrator")


@orchestrator_service.handler(input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)
async def write(ctx: restate.Context, request: dict[str, Any]) -> dict[str, Any]:
    """Plan a report with one agent, research its questions in parallel, merge them with another."""
    require_json(request)
    topic = request.get("topic") if isinstance(request, dict) else None
    if not isinstance(topic, str) or not topic.strip():
        raise restate.TerminalError('send {"topic": "heat pumps", "report_id": "r-1"}', status_code=400)
    report_id = str(request.get("report_id") or ctx.request().id)
    _, calls, _ = await _once(_planner, _planner_sessions, "report_planner", f"Write a report on: {topic}")
    questions = [str(q) for q in calls.get("plan_research", {}).get("questions", [])][:MAX_TASKS]
    if not questions:
        raise restate.TerminalError(f"the planner planned no research for {topic!r}: ask again", status_code=502)
    futures = [
        ctx.service_call(research, arg={"report_id": report_id, "index": i, "question": q})
        for i, q in enumerate(questions)
    ]
    await restate.gather(*futures)
    sections = [await f for f in futures]
    notes = "\n".join(f"- {s['question']} {s['finding']}" for s in sections)
    summary, _, _ = await _once(_writer, _writer_sessions, "report_writer", f"Report on {topic}.\n{notes}")
    return {"report_id": report_id, "topic": topic, "sections": sections, "summary": summary}


# --- 2. a workflow as a tool ------------------------------------------------------------------


def publish_gate(requested_by: str) -> Gate:
    """Return the gate inside the "Upload" step of a report published for editor session `requested_by`."""
    return Gate(f"orchestration.publish.{_safe(requested_by)}")


publish_workflow = restate.Workflow("PublishReport")


@publish_workflow.main()
async def publish_run(ctx: restate.WorkflowContext, draft: dict[str, Any]) -> dict[str, Any]:
    """Render a report, then upload it once (per workflow key); return where it lives."""
    title, body, by = str(draft.get("title", "")), str(draft.get("body", "")), str(draft.get("requested_by", ""))

    async def render() -> int:
        default_ledger().record("render", {"key": ctx.key(), "title": title}, invocation_id=ctx.request().id)
        return len(f"{title} {body}".split())

    async def upload() -> str:
        await hit(publish_gate(by).name, invocation_id=ctx.request().id)
        detail = {"key": ctx.key(), "title": title, "requested_by": by}
        default_ledger().record(
            "publish", detail, idempotency_key=f"publish:{ctx.key()}", invocation_id=ctx.request().id
        )
        return f"https://reports.example/{ctx.key()}"

    words = await ctx.run_typed("Render", render)
    url = await ctx.run_typed("Upload", upload)
    ctx.set("url", url)
    return {"url": url, "words": words}


_PUBLISH = re.compile(r"publish\s+'(?P<title>[^']+)'\s*:\s*(?P<body>.+)", re.IGNORECASE | re.DOTALL)


def editor_script(turn: Turn) -> Reply:
    """The offline editor: publish the report the user gives, then say where it is."""
    if turn.results:
        result = turn.results[-1].response
        return f"Published at {result.get('url')} ({result.get('words')} words)."
    found = _PUBLISH.search(turn.text)
    if found is None:
        return "Give me a report to publish, e.g. \"Publish 'Heat pumps': Heat pumps move heat...\"."
    return [Call("publish", {"title": found["title"], "body": found["body"].strip()})]


async def publish(title: str, body: str, tool_context: ToolContext) -> dict[str, Any]:
    """Publish a report: render and upload it, and return its URL and length.

    Args:
        title: The report's title.
        body: The report's text.
    """
    ctx = restate_context()
    by = ctx.key() if isinstance(ctx, restate.ObjectContext) else ""
    key = f"{_safe(by)}-{tool_context.function_call_id}"
    result: dict[str, Any] = await ctx.workflow_call(
        publish_run, key=key, arg={"title": title, "body": body, "requested_by": by}
    )
    return result


editor_agent = Agent(
    model=default_model(editor_script, name="editor_agent"),
    name="editor_agent",
    instruction="You publish reports. Call publish with the title and text the user gives, then say where it is.",
    tools=[publish],
)
_editor = Runner(
    app=App(name="editor", root_agent=editor_agent, plugins=[RestatePlugin()]),
    session_service=RestateSessionService(),
)

editor_service = restate.VirtualObject("EditorAgent")


@editor_service.handler(input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)
async def edit(ctx: restate.ObjectContext, message: str) -> str:
    """Take one message of the editor session that is this object's key."""
    text = require_message(message)
    answer, _, _ = await _answer(_editor, user_id=ctx.key(), session_id="editor", text=text)
    return answer


# --- 3. remote agents -------------------------------------------------------------------------


async def _remote(service: str, key_field: str, tool_context: ToolContext) -> dict[str, Any]:
    claim = dict(tool_context.state["claim"])
    ctx = restate_context()
    raw = await ctx.generic_call(service, "check", json.dumps(claim).encode(), key=str(claim[key_field]))
    verdict: dict[str, Any] = json.loads(raw)
    return {"verdict": verdict["verdict"], "reason": verdict["reason"]}


async def ask_eligibility_agent(tool_context: ToolContext) -> dict[str, Any]:
    """Ask the remote eligibility agent whether the claim's policy covers the claimant on that date.

    Returns:
        Its verdict ("pass", "review" or "fail") and the reason.
    """
    return await _remote("EligibilityAgent", "policy_id", tool_context)


async def ask_fraud_agent(tool_context: ToolContext) -> dict[str, Any]:
    """Ask the remote fraud agent whether anything about the claim looks like fraud.

    Returns:
        Its verdict ("pass", "review" or "fail") and the reason.
    """
    return await _remote("FraudAgent", "customer_id", tool_context)


def coordinator_script(turn: Turn) -> Reply:
    """The offline coordinator: ask both remote agents, then approve only if both pass."""
    if not turn.results:
        return [Call("ask_eligibility_agent"), Call("ask_fraud_agent")]
    verdicts = {r.name: r.response.get("verdict") for r in turn.results}
    outcome = "approve" if set(verdicts.values()) == {"pass"} else "refer to a person"
    return f"Decision: {outcome} (" + ", ".join(f"{k}: {v}" for k, v in sorted(verdicts.items())) + ")."


coordinator_agent = Agent(
    model=default_model(coordinator_script, name="claim_coordinator"),
    name="claim_coordinator",
    instruction=(
        "You decide insurance claims. Ask the eligibility agent and the fraud agent with your tools, then approve "
        "the claim only if both pass; otherwise refer it to a person."
    ),
    tools=[ask_eligibility_agent, ask_fraud_agent],
)
_coordinator = Runner(
    app=App(name="coordinator", root_agent=coordinator_agent, plugins=[RestatePlugin()]),
    session_service=RestateSessionService(),
)

coordinator_service = restate.VirtualObject("ClaimCoordinator")


@coordinator_service.handler(input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)
async def decide(ctx: restate.ObjectContext, claim: dict[str, Any]) -> dict[str, Any]:
    """Decide a claim by asking the remote specialist agents; the key is the claim id."""
    c = require_claim(claim)
    if ctx.key() != c.claim_id:
        raise restate.TerminalError(
            f"call ClaimCoordinator with the claim id as the key: /ClaimCoordinator/{c.claim_id}/decide",
            status_code=400,
        )
    answer, _, responses = await _answer(
        _coordinator,
        user_id=ctx.key(),
        session_id="coordinator",
        text=f"Decide this claim: {c.model_dump_json()}",
        state={"claim": c.model_dump(mode="json")},
    )
    verdicts = {name.removeprefix("ask_").removesuffix("_agent"): r.get("verdict") for name, r in responses.items()}
    return {"claim_id": c.claim_id, "verdicts": verdicts, "note": answer}


# --- 4. errors: model retries, a tool's TerminalError, a clean answer -------------------------


def _faults_path(key: str) -> Path:
    return data_dir() / "model-faults" / f"{_safe(key)}.json"


def set_model_faults(key: str, failures: int) -> None:
    """Make the model of session `key` fail its first `failures` attempts of every invocation (0: never)."""
    path = _faults_path(key)
    if failures <= 0:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"failures": failures}))


def _faults(key: str) -> int:
    try:
        return int(json.loads(_faults_path(key).read_text())["failures"])
    except (FileNotFoundError, ValueError, KeyError):
        return 0


def model_attempts(invocation_id: str, ledger: Ledger | None = None) -> int:
    """Count the model attempts (failed or not) of one invocation."""
    return (ledger or default_ledger()).count("model_attempt", invocation_id=invocation_id)


def _quota_error() -> errors.APIError:
    """The error google-genai raises for Gemini's 429, asking to retry in 1 s."""
    retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}
    body = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota", "details": [retry]}}
    return errors.ClientError(429, body)


class FlakyModel(BaseLlm):
    """A model that fails its first attempts the way Gemini does (429), per `set_model_faults`; then asks `inner`.

    The failure goes through agent_lib.gemini's one policy, exactly as a real 429 from Gemini would.
    """

    inner: BaseLlm

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        """Fail (retryably) while the session's faults last; otherwise answer with the inner model."""
        ctx = _context()
        key = ctx.key() if isinstance(ctx, restate.ObjectContext) else ""
        invocation = _invocation_id()
        ledger = default_ledger()
        ledger.record("model_attempt", {"key": key}, invocation_id=invocation)
        attempts = ledger.count("model_attempt", invocation_id=invocation) if invocation else 1
        if attempts <= _faults(key):
            fault = gemini.model_fault(_quota_error(), model=self.model, invocation=invocation)
            assert fault is not None
            raise fault
        llm_request.model = self.inner.model
        async for response in self.inner.generate_content_async(llm_request, stream=stream):
            yield response


ORDERS = {"A-1001": "shipped on Monday, parcel P-77", "A-1002": "being packed"}
PARCELS = {"P-77": "out for delivery"}


def order_desk_script(turn: Turn) -> Reply:
    """The offline help desk: look up the order or parcel named, then answer with what the tool said."""
    if turn.results:
        result = turn.results[-1]
        if "error" in result.response:
            return f"I could not find that: {result.response['error']}."
        return f"{result.name.replace('_', ' ')}: {result.text}."
    order = re.search(r"\b(A-\d+)\b", turn.text)
    parcel = re.search(r"\b(P-\d+)\b", turn.text)
    if order:
        return [Call("find_order", {"order_id": order[1]})]
    if parcel:
        return [Call("track_parcel", {"parcel_id": parcel[1]})]
    return "Give me an order number (A-1001) or a parcel number (P-77)."


async def _lookup(step: str, table: Mapping[str, str], ident: str, what: str) -> str:
    async def look() -> str:
        default_ledger().record("order_lookup", {"step": step, "id": ident}, invocation_id=_invocation_id())
        if ident not in table:
            raise restate.TerminalError(f"there is no {what} {ident}", status_code=404)
        return table[ident]

    ctx = _context()
    return await (look() if ctx is None else ctx.run_typed(step, look))


async def find_order(order_id: str) -> str:
    """Find an order and say where it is. An unknown order ends the turn with an error.

    Args:
        order_id: The order number, e.g. "A-1001".
    """
    return await _lookup("Find order", ORDERS, order_id, "order")


async def track_parcel(parcel_id: str) -> dict[str, str]:
    """Track a parcel. An unknown parcel is reported back to you as an error to explain.

    Args:
        parcel_id: The parcel number, e.g. "P-77".
    """
    try:
        return {"status": await _lookup("Track parcel", PARCELS, parcel_id, "parcel")}
    except restate.TerminalError as err:
        return {"error": err.message}


def caught_gate(key: str) -> Gate:
    """Return the gate `OrderDesk.ask` reaches after it caught a TerminalError, for session `key`."""
    return Gate(f"orchestration.caught.{_safe(key)}")


def terminal_cause(err: BaseException) -> restate.TerminalError | None:
    """Return the TerminalError that `err` is or was raised from (ADK wraps a plugin's errors), or None."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, restate.TerminalError):
            return current
        current = current.__cause__
    return None


def order_desk_service(
    name: str = "OrderDesk", *, run_options: restate.RunOptions[Any] | None = MODEL_RUN_OPTIONS
) -> restate.VirtualObject:
    """Build a help desk agent service: `ask` answers cleanly on a TerminalError, `ask_unguarded` lets it through.

    Its model fails as `set_model_faults` says; `run_options` goes to RestatePlugin (None: the SDK's default).
    """
    agent_name = "order_desk"
    inner = default_model(order_desk_script, name=agent_name)
    agent = Agent(
        model=FlakyModel(model=inner.model, inner=inner),
        name=agent_name,
        instruction=(
            "You answer questions about orders and parcels. Use find_order for an order number and track_parcel "
            "for a parcel number, then answer in one sentence."
        ),
        tools=[find_order, track_parcel],
    )
    plugin = RestatePlugin() if run_options is None else RestatePlugin(run_options=run_options)
    runner = Runner(
        app=App(name="order_desk", root_agent=agent, plugins=[plugin]), session_service=RestateSessionService()
    )
    service = restate.VirtualObject(name)

    async def turn(ctx: restate.ObjectContext, message: Any) -> str:
        answer, _, _ = await _answer(runner, user_id=ctx.key(), session_id="desk", text=require_message(message))
        return answer

    @service.handler(input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)
    async def ask(ctx: restate.ObjectContext, message: str) -> str:
        """Answer a question; if the turn fails with a TerminalError, say so instead of failing."""
        try:
            return await turn(ctx, message)
        except Exception as err:
            terminal = terminal_cause(err)
            if terminal is None or terminal.status_code == 400:
                raise
            await hit(caught_gate(ctx.key()).name, invocation_id=ctx.request().id)
            return f"{SORRY}: {terminal.message}."

    @service.handler(input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)
    async def ask_tour_style(ctx: restate.ObjectContext, message: str) -> str:
        """Answer a question, catching only `except TerminalError` (a model call's failure slips past it)."""
        try:
            return await turn(ctx, message)
        except restate.TerminalError as err:
            return f"{SORRY}: {err.message}."

    @service.handler(input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)
    async def ask_unguarded(ctx: restate.ObjectContext, message: str) -> str:
        """Answer a question; a TerminalError fails the invocation and reaches the caller."""
        return await turn(ctx, message)

    return service


order_desk = order_desk_service()


# --- 5. what the plugin changes: callbacks and max_llm_calls ----------------------------------


def _record_hook(hook: str, callback_context: CallbackContext) -> None:
    detail = {"hook": hook, "session": callback_context.session.id, "agent": callback_context.agent_name}
    default_ledger().record("callback", detail, invocation_id=_invocation_id())


HOOKS = (
    "agent.before_model",
    "agent.after_model",
    "agent.before_tool",
    "outer.before_model",
    "outer.after_model",
    "outer.on_event",
    "inner.before_model",
    "inner.after_model",
)
"""Every hook `WatchedAgent` records: its own callbacks, and a plugin before (outer) and after (inner) RestatePlugin."""


class WatchPlugin(BasePlugin):
    """A plugin that records, in the ledger (kind "callback"), each model callback and event it sees."""

    def __init__(self, label: str) -> None:
        super().__init__(name=f"watch_{label}")
        self.label = label

    async def before_model_callback(
        self, *, callback_context: CallbackContext, llm_request: LlmRequest
    ) -> LlmResponse | None:
        """Record `<label>.before_model`."""
        _record_hook(f"{self.label}.before_model", callback_context)
        return None

    async def after_model_callback(
        self, *, callback_context: CallbackContext, llm_response: LlmResponse
    ) -> LlmResponse | None:
        """Record `<label>.after_model`."""
        _record_hook(f"{self.label}.after_model", callback_context)
        return None

    async def on_event_callback(self, *, invocation_context: InvocationContext, event: Event) -> Event | None:
        """Record `<label>.on_event` for each event the model produced."""
        if event.author != "user" and not event.get_function_responses():
            detail = {"hook": f"{self.label}.on_event", "session": invocation_context.session.id, "agent": event.author}
            default_ledger().record("callback", detail, invocation_id=_invocation_id())
        return None


class ModelCallBudget(BasePlugin):
    """Enforce `RunConfig(max_llm_calls=...)` under RestatePlugin: put it BEFORE RestatePlugin in the plugins.

    It counts the model calls of each ADK run, journaled or not (a replay counts again from zero, so the count is the
    same), and ends the turn with a TerminalError when one more would pass the limit.
    """

    def __init__(self) -> None:
        super().__init__(name="model_call_budget")
        self._calls: dict[str, int] = {}

    async def before_model_callback(
        self, *, callback_context: CallbackContext, llm_request: LlmRequest
    ) -> LlmResponse | None:
        """Count this model call; raise a TerminalError if it passes the run's max_llm_calls."""
        run_config = callback_context.run_config
        limit = run_config.max_llm_calls if run_config is not None else 0
        n = self._calls.get(callback_context.invocation_id, 0) + 1
        self._calls[callback_context.invocation_id] = n
        if limit > 0 and n > limit:
            raise restate.TerminalError(
                f"the agent asked the model more than {limit} times in one turn (RunConfig max_llm_calls={limit})",
                status_code=429,
            )
        return None

    async def after_run_callback(self, *, invocation_context: InvocationContext) -> None:
        """Forget the run's count."""
        self._calls.pop(invocation_context.invocation_id, None)


_TICKS = re.compile(r"tick (\d+) times?", re.IGNORECASE)


def watched_script(turn: Turn) -> Reply:
    """The offline watched agent: call tick once per model call, as many times as asked, then say done."""
    found = _TICKS.search(turn.text)
    wanted = int(found[1]) if found else 1
    done = len(turn.results)
    if done < wanted:
        return [Call("tick", {"n": done + 1})]
    return f"Ticked {done} times."


def tick_gate(session: str) -> Gate:
    """Return the gate inside tick of `WatchedAgent`'s session `session` (arm it with skip=n to stop tick n+1)."""
    return Gate(f"orchestration.tick.{_safe(session)}")


async def tick(n: int, tool_context: ToolContext) -> str:
    """Count one tick.

    Args:
        n: The number of this tick, from 1.
    """

    async def count() -> str:
        await hit(tick_gate(tool_context.session.user_id).name, invocation_id=_invocation_id())
        default_ledger().record("tick", {"n": n, "session": tool_context.session.id}, invocation_id=_invocation_id())
        return f"tick {n}"

    ctx = _context()
    return await (count() if ctx is None else ctx.run_typed(f"Tick {n}", count))


def _agent_before_model(callback_context: CallbackContext, llm_request: LlmRequest) -> LlmResponse | None:
    _record_hook("agent.before_model", callback_context)
    return None


def _agent_after_model(callback_context: CallbackContext, llm_response: LlmResponse) -> LlmResponse | None:
    _record_hook("agent.after_model", callback_context)
    return None


def _agent_before_tool(tool: BaseTool, args: dict[str, Any], tool_context: ToolContext) -> dict[str, Any] | None:
    _record_hook("agent.before_tool", tool_context)
    return None


def make_watched_agent(name: str = "watched_agent") -> Agent:
    """Build the watched agent: a tick tool, and its own before/after model and before tool callbacks."""
    return Agent(
        model=default_model(watched_script, name=name),
        name=name,
        instruction="You count ticks. Call tick once per step, as many times as the user asks, then say done.",
        tools=[tick],
        before_model_callback=_agent_before_model,
        after_model_callback=_agent_after_model,
        before_tool_callback=_agent_before_tool,
    )


def _watched(name: str, agent_name: str, budget: bool) -> restate.VirtualObject:
    plugins: list[BasePlugin] = [WatchPlugin("outer")]
    if budget:
        plugins.append(ModelCallBudget())
    plugins += [RestatePlugin(), WatchPlugin("inner")]
    app = App(name="watched", root_agent=make_watched_agent(agent_name), plugins=plugins)
    runner = Runner(app=app, session_service=RestateSessionService())
    service = restate.VirtualObject(name)

    @service.handler(input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)
    async def run(ctx: restate.ObjectContext, message: str) -> str:
        """Run one turn with RunConfig(max_llm_calls=BUDGET_LIMIT); the key names the session."""
        text = require_message(message)
        config = RunConfig(max_llm_calls=BUDGET_LIMIT)
        answer, _, _ = await _answer(runner, user_id=ctx.key(), session_id=ctx.key(), text=text, run_config=config)
        return answer

    return service


watched_service = _watched("WatchedAgent", "watched_agent", budget=False)
"""RestatePlugin with a WatchPlugin before it ("outer") and after it ("inner"); max_llm_calls=2."""

budgeted_service = _watched("BudgetedAgent", "budgeted_agent", budget=True)
"""The same, with ModelCallBudget before RestatePlugin: max_llm_calls=2 holds again."""


def hook_counts(session: str, ledger: Ledger | None = None) -> dict[str, int]:
    """Count each hook recorded for ADK session `session`, e.g. {"outer.before_model": 3, ...}."""
    counts = dict.fromkeys(HOOKS, 0)
    for effect in (ledger or default_ledger()).effects("callback"):
        if effect.detail.get("session") == session:
            counts[effect.detail["hook"]] = counts.get(effect.detail["hook"], 0) + 1
    return counts


def callback_counts(invocation_id: str, ledger: Ledger | None = None) -> dict[str, int]:
    """Count each hook recorded by one invocation."""
    counts = dict.fromkeys(HOOKS, 0)
    for effect in (ledger or default_ledger()).effects("callback", invocation_id=invocation_id):
        counts[effect.detail["hook"]] = counts.get(effect.detail["hook"], 0) + 1
    return counts

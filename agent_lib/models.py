"""The model an agent runs on: Gemini when a key is set, an offline stand-in otherwise.

Lesson 00 introduces it. The stand-in, `OfflineModel`, is an ADK `BaseLlm` that never
leaves the machine. It reads the request the agent built (the user's latest message,
the tools it declared, the tool results so far, the earlier turns of the session) and
answers by a *script*: small rules written next to each agent, in plain Python, that a
learner can read and change. Same request, same answer, every time.

Every model call, offline or Gemini, is counted twice: in memory (`model.calls`) and
in the ledger as an effect of kind ``"model_call"``, so a lesson can prove that a call
journaled before a crash was not paid for again after it, even across processes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.adk.models.base_llm import BaseLlm
from google.adk.models.google_llm import Gemini
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.genai import types
from pydantic import BaseModel, Field, PrivateAttr
from restate import TerminalError

from . import gemini
from .gemini import model_fault, model_timeout_seconds
from .ledger import default_ledger

__all__ = [
    "Call",
    "CountingGemini",
    "OfflineModel",
    "Reply",
    "SUMMARY_PREFIX",
    "Script",
    "ToolResult",
    "ToolRule",
    "Turn",
    "default_model",
    "model_description",
    "read_turn",
    "script_for",
    "turn_from_contents",
    "uses_gemini",
]


@dataclass(frozen=True)
class Call:
    """A tool call the model asks for."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolResult:
    """A tool's answer, as the model sees it."""

    name: str
    response: dict[str, Any]

    @property
    def text(self) -> str:
        """Return the tool's answer as text (ADK wraps plain returns as {"result": ...})."""
        if set(self.response) == {"result"}:
            return str(self.response["result"])
        return str(self.response)


@dataclass(frozen=True)
class Turn:
    """What the model sees of the conversation when it is asked to answer."""

    text: str
    """The user's latest message."""
    results: tuple[ToolResult, ...]
    """Tool results that came back since that message (empty on the first call of a turn)."""
    tools: tuple[str, ...]
    """Names of the tools the agent declared."""
    history: tuple[str, ...]
    """The user's earlier messages in this session, oldest first."""
    past_results: tuple[ToolResult, ...]
    """Tool results from earlier turns of this session."""
    instruction: str = ""


Reply = str | Sequence[Call]
"""A final text answer, or one or more tool calls to make first."""

Script = Callable[[Turn], Reply]
"""How an offline model answers: a function from what it sees to what it says."""


@dataclass(frozen=True)
class ToolRule:
    """Call `tool` once per match of `pattern` (case-insensitive) in the user's message."""

    pattern: str
    tool: str
    args: Callable[[re.Match[str]], dict[str, Any]] = lambda m: dict(m.groupdict())

    def calls(self, text: str) -> list[Call]:
        """Return the calls this rule asks for on `text`."""
        return [Call(self.tool, self.args(m)) for m in re.finditer(self.pattern, text, re.IGNORECASE)]


def _text_of(content: types.Content) -> str:
    return "".join(p.text for p in content.parts or [] if p.text and not p.thought)


def _results_of(content: types.Content) -> list[ToolResult]:
    return [
        ToolResult(p.function_response.name or "", dict(p.function_response.response or {}))
        for p in content.parts or []
        if p.function_response is not None
    ]


def read_turn(request: LlmRequest) -> Turn:
    """Read what the model sees out of an ADK request."""
    instruction = request.config.system_instruction if request.config else ""
    return turn_from_contents(
        request.contents, sorted(request.tools_dict), instruction if isinstance(instruction, str) else ""
    )


SUMMARY_PREFIX = "Conversation Language:"
"""How a compaction summary starts: ADK's summarizer prompt asks the model to open with the language."""


def turn_from_contents(contents: Sequence[types.Content], tools: Sequence[str], instruction: str = "") -> Turn:
    """Read what the model sees out of a conversation's contents (ADK's or Gemini's wire format, parsed).

    A compaction summary (lesson 03) counts as something the user said earlier: it stands for their words.
    """
    user_texts: list[tuple[int, str]] = []
    results: list[tuple[int, ToolResult]] = []
    for i, content in enumerate(contents):
        if content.role == "user" or _text_of(content).startswith(SUMMARY_PREFIX):
            results += [(i, r) for r in _results_of(content)]
            text = _text_of(content)
            if text and not text.startswith("For context:"):
                user_texts.append((i, text))
    last_index, text = user_texts[-1] if user_texts else (-1, "")
    return Turn(
        text=text,
        results=tuple(r for i, r in results if i > last_index),
        tools=tuple(sorted(tools)),
        history=tuple(t for _, t in user_texts[:-1]),
        past_results=tuple(r for i, r in results if i < last_index),
        instruction=instruction,
    )


def _chars(parts: Sequence[types.Part]) -> int:
    total = 0
    for p in parts:
        total += len(p.text or "")
        if p.function_call is not None:
            total += len(p.function_call.name or "") + len(json.dumps(p.function_call.args or {}, default=str))
        if p.function_response is not None:
            total += len(p.function_response.name or "")
            total += len(json.dumps(p.function_response.response or {}, default=str))
    return total


def _estimated_usage(
    contents: Sequence[types.Content], reply: Sequence[types.Part]
) -> types.GenerateContentResponseUsageMetadata:
    """Estimate token counts as ADK does when a model reports none: about 4 characters a token."""
    prompt = sum(_chars(c.parts or []) for c in contents) // 4
    answer = _chars(reply) // 4
    return types.GenerateContentResponseUsageMetadata(
        prompt_token_count=prompt, candidates_token_count=answer, total_token_count=prompt + answer
    )


def _invocation_id() -> str | None:
    from restate.extensions import current_context

    try:
        ctx = current_context()
    except LookupError:
        return None
    return ctx.request().id if ctx is not None else None


class _CountsCalls(BaseModel):
    """Counts a model's calls in memory (this process) and in the ledger (per invocation, survives a SIGKILL)."""

    name: str = "agent"
    """Recorded with each call in the ledger, to tell agents apart."""
    _calls: int = PrivateAttr(default=0)

    @property
    def calls(self) -> int:
        """How many times this model instance was called in this process."""
        return self._calls

    def _count_call(self, model: str) -> None:
        self._calls += 1
        default_ledger().record("model_call", {"model": model, "agent": self.name}, invocation_id=_invocation_id())


class OfflineModel(_CountsCalls, BaseLlm):
    """A deterministic stand-in for Gemini that answers by a script and counts its calls."""

    model: str = "offline"
    script: Any = Field(default=None, exclude=True)

    def model_post_init(self, context: Any) -> None:
        """Make the script known by the agent's name (the Gemini stub answers by it)."""
        super().model_post_init(context)
        if self.script is not None:
            _SCRIPTS.setdefault(self.name, self.script)

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        """Answer by the script: tool calls first, then a final text."""
        self._count_call(self.model)
        turn = read_turn(llm_request)
        reply = self.script(turn) if self.script is not None else "I am an offline model with no script."
        if isinstance(reply, str):
            parts = [types.Part.from_text(text=reply)]
        else:
            unknown = [c.name for c in reply if c.name not in turn.tools]
            if unknown:
                raise ValueError(f"the script asked for tools the agent does not have: {unknown}")
            parts = [types.Part.from_function_call(name=c.name, args=c.args) for c in reply]
        yield LlmResponse(
            content=types.Content(role="model", parts=parts),
            turn_complete=True,
            usage_metadata=_estimated_usage(llm_request.contents, parts),
        )


class CountingGemini(_CountsCalls, Gemini):
    """Gemini, counted like the offline model, and meeting its faults by one policy (agent_lib.gemini)."""

    def model_post_init(self, context: Any) -> None:
        """Give google-genai a timeout and no retries of its own: Restate retries, durably and visibly."""
        super().model_post_init(context)
        if self.client_kwargs is None:
            timeout_ms = int(model_timeout_seconds() * 1000)
            self.client_kwargs = {"http_options": types.HttpOptions(timeout=timeout_ms)}

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        """Call Gemini and count the call; a fault becomes a retry with a reason, or a clear error."""
        problem = gemini.key_problem()
        if problem is not None:
            raise TerminalError(f"Gemini cannot be asked: {problem}", status_code=502)
        self._count_call(self.model)
        invocation = _invocation_id()
        responses = super().generate_content_async(llm_request, stream=stream)
        while True:
            try:
                response = await anext(responses)
            except StopAsyncIteration:
                return
            except Exception as err:
                fault = model_fault(err, model=self.model, invocation=invocation)
                if fault is None:
                    raise
                raise fault from None
            gemini.succeeded(invocation)
            yield _usable(response)


_DECLINED = ("SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION", "IMAGE_SAFETY")


def _usable(response: LlmResponse) -> LlmResponse:
    """Turn an answer that is not one into a clear final answer (declined) or a clear error (malformed, empty)."""
    if response.content is not None and response.content.parts:
        return response
    reason = str(response.error_code or "")
    if reason in _DECLINED or response.error_code is not None and "BLOCK" in reason:
        text = f"Gemini declined to answer this (finishReason {reason}). Ask in other words, or ask something else."
        return LlmResponse(
            content=types.Content(role="model", parts=[types.Part.from_text(text=text)]),
            turn_complete=True,
            usage_metadata=response.usage_metadata,
        )
    label = f"finishReason {reason}" if reason else "no candidates"
    raise TerminalError(
        f"Gemini returned no usable answer ({label}): ask again, perhaps in other words", status_code=502
    )


def uses_gemini() -> bool:
    """Return True when a Gemini key is set in the environment."""
    return gemini.api_key() is not None


def model_description() -> str:
    """Say which model agents run on, never showing the key."""
    found = gemini.api_key()
    if found is not None:
        where = os.environ.get("GOOGLE_GEMINI_BASE_URL")
        at = f", at {where}" if where else ""
        return f"Gemini ({gemini.gemini_model_name()}{at}), key from {found[0]}"
    return "the offline stand-in model (no GOOGLE_API_KEY or GEMINI_API_KEY set)"


_SCRIPTS: dict[str, Script] = {}


def script_for(name: str) -> Script | None:
    """The offline script of the agent named `name`, if one was built in this process (the Gemini stub uses it)."""
    return _SCRIPTS.get(name)


def default_model(script: Script, *, name: str = "agent") -> OfflineModel | CountingGemini:
    """Return Gemini (`AGENT_MODEL`, default gemini-2.5-flash) if a key is set, else the offline model."""
    _SCRIPTS[name] = script
    if uses_gemini():
        return CountingGemini(model=gemini.gemini_model_name(), name=name)
    return OfflineModel(script=script, name=name)

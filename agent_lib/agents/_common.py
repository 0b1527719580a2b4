"""What the course agents share: their retry policy and checks at the handler's edge."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import restate
from google.adk.events.event import Event
from google.genai.types import Content, Part
from restate.serde import Serde

from .._modes import RETRY_POLICY_ENV

__all__ = [
    "LESSON_RETRY_POLICY",
    "RETRY_POLICY_ENV",
    "SERVICE_RETRY_POLICY",
    "MAX_MESSAGE_CHARS",
    "JSON_INPUT",
    "Malformed",
    "final_text",
    "require_json",
    "require_message",
    "user_message",
]

MAX_MESSAGE_CHARS = 8_000

_LESSON_POLICY = restate.InvocationRetryPolicy(
    initial_interval=timedelta(milliseconds=50),
    exponentiation_factor=1.5,
    max_interval=timedelta(milliseconds=250),
    max_attempts=120,
    on_max_attempts="pause",
)

SERVICE_RETRY_POLICY = restate.InvocationRetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    exponentiation_factor=2.0,
    max_interval=timedelta(seconds=1),
    max_attempts=1200,
    on_max_attempts="pause",
)
"""The finished agents' policy when `python -m agent_lib up` serves them (`make lab`): back off to one try a second,
so a restarted process is picked up within about a second, and keep trying for about 20 minutes before pausing,
so that an outage of minutes (a crash, a restart, a redeploy) needs no human to resume what was in flight.

With the lessons' policy, 400 turns in flight through six SIGKILLs and restarts ended with 287 to 300 of them
paused (issue 23): its 120 attempts are counted across every outage of an invocation, about 30 s in all.
"""

LESSON_RETRY_POLICY = SERVICE_RETRY_POLICY if os.environ.get(RETRY_POLICY_ENV) == "service" else _LESSON_POLICY
"""The course agents' retry policy: by default the lessons', every quarter second at most, so a restarted agent
resumes at once, and paused after 120 attempts (about 30 s of failures, counted across outages) so that a lesson
can show a paused invocation and its resume; with AGENT_RETRY_POLICY=service, SERVICE_RETRY_POLICY.

The server's own default starts at 500 ms and doubles up to a minute: right for production, slow for a lesson.
"""


@dataclass(frozen=True)
class Malformed:
    """A request body that is not valid JSON, kept so the handler can refuse it with a 400."""

    error: str


class _LenientJson(Serde[Any]):
    """JSON in and out; a body that is not JSON decodes to `Malformed` instead of failing with a 500."""

    def deserialize(self, buf: bytes) -> Any:
        if not buf:
            return None
        try:
            return json.loads(buf)
        except ValueError as err:
            return Malformed(str(err))

    def serialize(self, obj: Any) -> bytes:
        return b"" if obj is None else json.dumps(obj).encode()


JSON_INPUT: Serde[Any] = _LenientJson()
"""Pass as `input_serde=` so malformed JSON reaches the handler, which answers 400 (the SDK's default is 500)."""


def require_json(body: Any) -> Any:
    """Raise a 400 TerminalError if the body was not valid JSON; else return it."""
    if isinstance(body, Malformed):
        raise restate.TerminalError(f"the request body is not valid JSON ({body.error})", status_code=400)
    return body


def require_message(message: Any) -> str:
    """Return `message` if it is a non-empty string; otherwise raise a 400 TerminalError."""
    require_json(message)
    if not isinstance(message, str):
        raise restate.TerminalError(
            f'the message must be a JSON string, e.g. "What is the weather in Paris?", not {type(message).__name__}',
            status_code=400,
        )
    if not message.strip():
        raise restate.TerminalError("the message is empty: ask the agent something", status_code=400)
    if len(message) > MAX_MESSAGE_CHARS:
        raise restate.TerminalError(
            f"the message has {len(message)} characters; the limit is {MAX_MESSAGE_CHARS}", status_code=400
        )
    return message


def user_message(text: str) -> Content:
    """Wrap text as the user's message to an ADK runner."""
    return Content(role="user", parts=[Part.from_text(text=text)])


def final_text(event: Event) -> str | None:
    """Return the text of a final response event, or None."""
    if event.is_final_response() and event.content and event.content.parts:
        return event.content.parts[0].text or None
    return None

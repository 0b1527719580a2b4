"""What the course agents share: a quick retry policy and checks at the handler's edge."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import restate
from google.adk.events.event import Event
from google.genai.types import Content, Part

__all__ = ["LESSON_RETRY_POLICY", "MAX_MESSAGE_CHARS", "final_text", "require_message", "user_message"]

MAX_MESSAGE_CHARS = 8_000

LESSON_RETRY_POLICY = restate.InvocationRetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    exponentiation_factor=2.0,
    max_interval=timedelta(seconds=1),
    max_attempts=30,
    on_max_attempts="pause",
)
"""Retry quickly, so a crashed agent is back in about a second; pause after 30 failed attempts."""


def require_message(message: Any) -> str:
    """Return `message` if it is a non-empty string; otherwise raise a 400 TerminalError."""
    if not isinstance(message, str):
        raise restate.TerminalError(
            f"the message must be a JSON string, e.g. \"What is the weather in Paris?\", not {type(message).__name__}",
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

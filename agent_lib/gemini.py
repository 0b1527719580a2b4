"""Gemini's failures, met the way a durable system should: lesson 02 and `make doctor`.

One policy for every course agent (`CountingGemini` applies it to each model call, inside the
plugin's journaled "call LLM" step):

- **Faults that heal** (429 quota, 500, 503, a timeout, no connection) become a `RetryableError`
  whose message says why the invocation waits ("Gemini quota exhausted (429): next try in 20 s").
  Restate retries the step after the delay Gemini asked for (RetryInfo, Retry-After), else after an
  exponential backoff of 2 s, 4 s, 8 s ... up to a minute. Against a provider that keeps answering
  429 the agent sends a handful of requests a minute, not hundreds.
- **Faults that will not heal** (400 invalid key, 401, 403, 404 unknown model, other 400s) end the
  turn at once with a `TerminalError` that says what to fix. The key itself never appears in it.
- **An answer that is not one** (finishReason SAFETY, MALFORMED_FUNCTION_CALL, no candidates) is a
  clear final answer or a clear error, never a retry loop: see `CountingGemini`.

`check_key()` makes one cheap call (getting the model) and says valid, rejected, quota exhausted or
unreachable, each with its fix.

How many attempts a model call gets is `RestatePlugin(run_options=...)`'s to say (lesson 11): `run_options()` builds
options that agree with this policy. A RetryableError's own delay overrides their intervals, and google-genai is
given no retries of its own (`CountingGemini`), so one attempt is one request and there is one retry loop: Restate's.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from google.genai import errors
from restate import RunOptions
from restate.exceptions import RetryableError, TerminalError

__all__ = [
    "BACKOFF_FIRST_SECONDS",
    "BACKOFF_MAX_SECONDS",
    "KeyCheck",
    "api_key",
    "check_key",
    "gemini_model_name",
    "key_problem",
    "model_fault",
    "model_timeout_seconds",
    "run_options",
    "scrub",
]

DEFAULT_GEMINI_MODEL = "gemini-2.5-flash"
KEY_VARS = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
BACKOFF_FIRST_SECONDS = 2.0
BACKOFF_MAX_SECONDS = 60.0
_TIMEOUT_ENV = "AGENT_MODEL_TIMEOUT"


def api_key() -> tuple[str, str] | None:
    """Return (variable name, key) of the Gemini key in the environment, or None."""
    for var in KEY_VARS:
        if os.environ.get(var):
            return var, os.environ[var]
    return None


def _key_var() -> str:
    found = api_key()
    return found[0] if found else "GOOGLE_API_KEY"


def key_problem() -> str | None:
    """Say what is wrong with the key's text itself (a bad paste: quotes, spaces inside, non-ASCII), or None."""
    found = api_key()
    if found is None:
        return None
    var, key = found
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", key.strip()):
        return (
            f"the key in {var} has characters an API key never has (quotes, spaces inside, or letters outside "
            "A-Z, a-z, 0-9, - and _): copy it again from https://aistudio.google.com/apikey"
        )
    return None


def gemini_model_name() -> str:
    """The Gemini model the agents use: AGENT_MODEL, else gemini-2.5-flash."""
    return os.environ.get("AGENT_MODEL") or DEFAULT_GEMINI_MODEL


def model_timeout_seconds() -> float:
    """How long one model call may take before it counts as failed: AGENT_MODEL_TIMEOUT seconds, else 60."""
    raw = os.environ.get(_TIMEOUT_ENV, "60")
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"{_TIMEOUT_ENV}={raw!r} is not a number of seconds: fix it, or unset it") from None
    if seconds <= 0:
        raise ValueError(f"{_TIMEOUT_ENV}={raw!r} must be more than 0 seconds: fix it, or unset it")
    return seconds


def scrub(text: str) -> str:
    """Replace the API key, wherever it appears in `text`, with a placeholder."""
    found = api_key()
    if found and found[1]:
        text = text.replace(found[1], "<your API key>")
    return re.sub(r"AIza[0-9A-Za-z_-]{20,}", "<an API key>", text)


def _api_error(err: BaseException) -> errors.APIError | None:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, errors.APIError):
            return current
        current = current.__cause__ or current.__context__
    return None


def _details(err: errors.APIError) -> list[dict[str, Any]]:
    body = err.details if isinstance(err.details, dict) else {}
    inner = body.get("error", body) if isinstance(body, dict) else {}
    details = inner.get("details") if isinstance(inner, dict) else None
    return [d for d in details or [] if isinstance(d, dict)]


def _reason(err: errors.APIError) -> str:
    return next((str(d.get("reason")) for d in _details(err) if d.get("reason")), "")


def _duration_seconds(value: str) -> float | None:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)s\s*", value)
    return float(m.group(1)) if m else None


def _asked_delay(err: errors.APIError) -> float | None:
    """The delay Gemini asked for: RetryInfo's retryDelay, else a Retry-After header in seconds."""
    for d in _details(err):
        if str(d.get("@type", "")).endswith("google.rpc.RetryInfo") and d.get("retryDelay"):
            seconds = _duration_seconds(str(d["retryDelay"]))
            if seconds is not None:
                return seconds
    response = getattr(err, "response", None)
    headers = getattr(response, "headers", None)
    retry_after = headers.get("retry-after") if headers is not None else None
    if retry_after and str(retry_after).strip().isdigit():
        return float(retry_after)
    return None


class _Backoff:
    """Consecutive failures per invocation, in this process: 2 s, 4 s, 8 s ... up to a minute."""

    def __init__(self, limit: int = 1000) -> None:
        self._failures: OrderedDict[str, int] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def next_delay(self, key: str) -> float:
        with self._lock:
            n = self._failures.pop(key, 0) + 1
            self._failures[key] = n
            while len(self._failures) > self._limit:
                self._failures.popitem(last=False)
        return float(min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** (n - 1)))

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


_BACKOFF = _Backoff()


def succeeded(invocation: str | None) -> None:
    """Forget an invocation's failures once a model call succeeds."""
    if invocation is not None:
        _BACKOFF.succeeded(invocation)


def _retry(message: str, status: int, invocation: str | None, asked: float | None) -> RetryableError:
    exponential = _BACKOFF.next_delay(invocation) if invocation is not None else BACKOFF_FIRST_SECONDS
    delay = max(asked, 1.0) if asked is not None else exponential
    text = f"{message}: next try in {delay:g} s"
    return RetryableError(scrub(text), status_code=status, retry_after=timedelta(seconds=delay))


def run_options(max_attempts: int | None = None) -> RunOptions[Any]:
    """Return RunOptions for the "call LLM" step that back off like this policy, 2 s doubling to a minute.

    `max_attempts` counts every attempt of one model call, the first included; None retries until the invocation's
    own retry policy gives up. A fault this policy knows carries its own delay (RetryableError), which wins.
    """
    return RunOptions(
        max_attempts=max_attempts,
        initial_retry_interval=timedelta(seconds=BACKOFF_FIRST_SECONDS),
        max_retry_interval=timedelta(seconds=BACKOFF_MAX_SECONDS),
        retry_interval_factor=2.0,
    )


def model_fault(err: BaseException, *, model: str, invocation: str | None = None) -> Exception | None:
    """Turn a failed Gemini call into a RetryableError (it heals) or a TerminalError (fix something), else None.

    The backoff grows with the consecutive failures of `invocation`; a call outside an invocation waits the first step.
    """
    if isinstance(err, (TerminalError, RetryableError)):
        return None
    api = _api_error(err)
    if api is not None:
        code, status, message = api.code or 0, api.status or "", scrub(str(api.message or ""))
        if code == 429:
            return _retry("Gemini quota exhausted (429)", 429, invocation, _asked_delay(api))
        if code >= 500:
            label = f"{code} {status}".strip()
            return _retry(f"Gemini is unavailable ({label}: {message})", 503, invocation, _asked_delay(api))
        if code in (400, 401) and (_reason(api) == "API_KEY_INVALID" or code == 401):
            return TerminalError(
                f"Gemini rejected the API key ({code} {_reason(api) or status}): check {_key_var()}, "
                "or unset it to use the offline model",
                status_code=502,
            )
        if code == 403:
            return TerminalError(
                f"Gemini refused this key (403 {status}: {message}): check that {_key_var()} is a Gemini API key "
                "of a project that may use the Generative Language API (https://aistudio.google.com/apikey)",
                status_code=502,
            )
        if code == 404:
            return TerminalError(
                f"Gemini has no model {model!r} (404): set AGENT_MODEL to a Gemini model, e.g. {DEFAULT_GEMINI_MODEL}",
                status_code=502,
            )
        return TerminalError(f"Gemini refused the request ({code} {status}: {message})", status_code=502)
    if isinstance(err, httpx.TimeoutException):
        return _retry(f"Gemini did not answer within {model_timeout_seconds():g} s", 504, invocation, None)
    if isinstance(err, (httpx.ConnectError, httpx.NetworkError, httpx.RemoteProtocolError, ConnectionError)):
        where = os.environ.get("GOOGLE_GEMINI_BASE_URL") or "generativelanguage.googleapis.com"
        return _retry(
            f"cannot reach Gemini at {where} ({type(err).__name__}: {scrub(str(err)) or 'no answer'}); "
            "check the network",
            503,
            invocation,
            None,
        )
    return None


@dataclass(frozen=True)
class KeyCheck:
    """What one cheap call to Gemini said about the key: valid, rejected, quota, unreachable or offline."""

    state: str
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        """True when the agents can use the model (or run offline)."""
        return self.state in ("valid", "offline")


def check_key(timeout: float = 10.0) -> KeyCheck:
    """Ask Gemini for the model's description with the key set: one cheap call that tells whether the key works."""
    found = api_key()
    if found is None:
        return KeyCheck("offline", "no GOOGLE_API_KEY or GEMINI_API_KEY set: agents run on the offline stand-in model")
    var, key = found
    problem = key_problem()
    if problem is not None:
        return KeyCheck("rejected", problem.split(": ")[0], problem.split(": ", 1)[1])
    model = gemini_model_name()
    from google.genai import Client, types

    client = Client(api_key=key, http_options=types.HttpOptions(timeout=int(timeout * 1000)))
    try:
        client.models.get(model=model)
    except Exception as err:  # noqa: BLE001 - every failure becomes a verdict with its fix
        fault = model_fault(err, model=model)
        message = scrub(getattr(fault, "message", "") or str(err))
        if isinstance(fault, RetryableError):
            if fault.status_code == 429:
                return KeyCheck(
                    "quota",
                    f"the key in {var} works, but its Gemini quota is exhausted",
                    "wait for the quota to return (free tier: per minute and per day), or use another key; the agents "
                    "wait and retry by themselves",
                )
            return KeyCheck(
                "unreachable",
                f"Gemini did not answer ({message.split(': next try')[0]})",
                "check the network (a proxy? offline Wi-Fi?), or unset the key to use the offline model",
            )
        if isinstance(fault, TerminalError):
            detail, _, fix = message.partition("): ")
            return KeyCheck("rejected", detail + ")", fix)
        return KeyCheck("unreachable", f"Gemini did not answer ({type(err).__name__})", "check the network")
    finally:
        client.close()
    return KeyCheck("valid", f"Gemini ({model}) accepts the key in {var}")

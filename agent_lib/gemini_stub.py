"""A local server that speaks Gemini's REST API, with Gemini's failures: lesson 02 and the Gemini-mode tests.

google-genai sends its requests wherever `GOOGLE_GEMINI_BASE_URL` points. Point it here and the
real Gemini path runs with no network: google-genai's client, ADK's `Gemini` model, the plugin's
journal, replay. The stub answers the way Gemini 2.5 does:

- `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent?alt=sse`;
  `GET /v1beta/models/{model}` (what `make doctor` asks to check a key);
- the real envelope: `candidates[].content.parts`, `finishReason`, `usageMetadata`, `modelVersion`,
  `responseId`, and a `thoughtSignature` on every function call. A function call of the current turn
  sent back *without* its signature is refused with a 400, as Gemini 3 does.

Its decisions come from the agent's own offline script, found by the agent's name in the system
instruction ("Your internal name is ..."). Its final texts are phrased its own way, so a lesson that
checks a script's exact words on Gemini fails here too.

Faults are switched on from a test or a notebook, in this process (`stub.fault("quota")`) or in
another one (`StubControl(url).fault("quota")`):

    quota        429 RESOURCE_EXHAUSTED, with RetryInfo (retryDelay, 20 s unless told; none if retry_delay=0)
    internal     500 INTERNAL
    unavailable  503 UNAVAILABLE (the model is overloaded)
    bad_key      400 INVALID_ARGUMENT, reason API_KEY_INVALID
    denied       403 PERMISSION_DENIED (its message names the key, as Gemini's does)
    no_model     404 NOT_FOUND (also for any model name that is not gemini-*)
    safety       200, finishReason SAFETY, no content
    malformed    200, finishReason MALFORMED_FUNCTION_CALL, no content
    empty        200, no candidates at all
    slow         answers after `delay` seconds (longer than the client's timeout)

A connection refused needs no mode: stop the stub, or point the client at a port nothing listens on.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from google.genai import types

from .models import Call, Script, Turn, script_for, turn_from_contents

__all__ = ["FAKE_KEY", "FAULTS", "GeminiStub", "StubControl", "StubRequest", "phrase"]

FAKE_KEY = "AIzaSy-fake-key-for-the-gemini-stub-000"
"""The key tests and Gemini mode set: it looks like a Gemini key, so a leak of it is easy to grep for."""


_IDENTITY = re.compile(r'Your internal name is "([^"]+)"')
_PATH = re.compile(r"^/v1beta/models/(?P<model>[^/:?]+)(?::(?P<method>generateContent|streamGenerateContent))?$")
_SUMMARIZER_PROMPT = "The following is a conversation history between a user and an AI agent."


def phrase(text: str) -> str:
    """Say a script's final text the stub's own way (a real model never uses the script's exact words)."""
    return f"Here is what I found. {text.strip()} Is there anything else I can help with?"


@dataclass(frozen=True)
class StubRequest:
    """One request the stub received, and how it answered."""

    at: float
    method: str
    path: str
    model: str
    agent: str
    status: int
    fault: str | None


def _error(code: int, status: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        body["details"] = details
    return {"error": body}


def _quota(model: str, key: str, retry_delay: float) -> dict[str, Any]:
    violation = {
        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
        "quotaDimensions": {"location": "global", "model": model},
        "quotaValue": "10",
    }
    details: list[dict[str, Any]] = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]}
    ]
    if retry_delay > 0:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_delay:g}s"})
    return _error(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details. For more information "
        "on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
        details,
    )


def _internal(model: str, key: str, retry_delay: float) -> dict[str, Any]:
    return _error(
        500,
        "INTERNAL",
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    )


def _unavailable(model: str, key: str, retry_delay: float) -> dict[str, Any]:
    return _error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")


def _bad_key(model: str, key: str, retry_delay: float) -> dict[str, Any]:
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }
    return _error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", [info])


def _denied(model: str, key: str, retry_delay: float) -> dict[str, Any]:
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "CONSUMER_SUSPENDED",
        "domain": "googleapis.com",
        "metadata": {"consumer": f"projects/0/apiKeys/{key}"},
    }
    return _error(403, "PERMISSION_DENIED", f"Permission denied: Consumer 'api_key:{key}' has been suspended.", [info])


def _no_model(model: str, key: str, retry_delay: float) -> dict[str, Any]:
    return _error(
        404,
        "NOT_FOUND",
        f"models/{model} is not found for API version v1beta, or is not supported for generateContent. "
        "Call ListModels to see the list of available models and their supported methods.",
    )


def _no_content(model: str, candidates: list[dict[str, Any]] | None) -> dict[str, Any]:
    """A 200 with no usable answer: Gemini's envelope around `candidates` (none at all if None)."""
    usage = {"promptTokenCount": 12, "totalTokenCount": 12}
    envelope: dict[str, Any] = {"usageMetadata": usage, "modelVersion": model, "responseId": uuid.uuid4().hex[:22]}
    if candidates is not None:
        envelope["candidates"] = candidates
    return envelope


def _safety(model: str, key: str, retry_delay: float) -> dict[str, Any]:
    rating = {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
    return _no_content(model, [{"finishReason": "SAFETY", "index": 0, "safetyRatings": [rating]}])


def _malformed(model: str, key: str, retry_delay: float) -> dict[str, Any]:
    candidate = {
        "content": {},
        "finishReason": "MALFORMED_FUNCTION_CALL",
        "finishMessage": "Malformed function call: print(default_api.get_weather(city=New York))",
        "index": 0,
    }
    return _no_content(model, [candidate])


def _empty(model: str, key: str, retry_delay: float) -> dict[str, Any]:
    return _no_content(model, None)


@dataclass(frozen=True)
class _Fault:
    """How the stub plays one of Gemini's faults: the status and body it answers with, or a normal answer, late."""

    status: int = 200
    body: Callable[[str, str, float], dict[str, Any]] | None = None
    """Build the answer from (model, key, retry_delay); None: answer normally."""
    late: bool = False
    """Answer a generation only after the fault's `delay` seconds."""


_FAULTS: dict[str, _Fault] = {
    "quota": _Fault(429, _quota),
    "internal": _Fault(500, _internal),
    "unavailable": _Fault(503, _unavailable),
    "bad_key": _Fault(400, _bad_key),
    "denied": _Fault(403, _denied),
    "no_model": _Fault(404, _no_model),
    "safety": _Fault(200, _safety),
    "malformed": _Fault(200, _malformed),
    "empty": _Fault(200, _empty),
    "slow": _Fault(late=True),
}
"""Every fault the stub plays, each defined here only (the module's docstring describes them)."""

FAULTS = tuple(_FAULTS)
"""The names of the faults, for `stub.fault(name)`."""


class GeminiStub:
    """A Gemini REST API on a free local port, answering by the agents' offline scripts."""

    def __init__(
        self,
        scripts: Mapping[str, Script] | None = None,
        *,
        port: int = 0,
        summarizer: Script | None = None,
    ) -> None:
        self._scripts = dict(scripts) if scripts is not None else None
        self._summarizer = summarizer
        self._port = port
        self._lock = threading.Lock()
        self._fault: str | None = None
        self._fault_left: int | None = None
        self._retry_delay = 20.0
        self._delay = 120.0
        self._log: list[StubRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL to set as GOOGLE_GEMINI_BASE_URL."""
        if self._server is None:
            raise RuntimeError("the stub is not started: call start() first")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def env(self) -> dict[str, str]:
        """The environment that points google-genai (and so the course's agents) at this stub."""
        return {"GOOGLE_API_KEY": FAKE_KEY, "GOOGLE_GEMINI_BASE_URL": self.url}

    def start(self) -> GeminiStub:
        """Listen on 127.0.0.1 in a background thread."""
        if self._server is None:
            self._server = ThreadingHTTPServer(("127.0.0.1", self._port), _handler(self))
            self._server.daemon_threads = True
            self._thread = threading.Thread(target=self._server.serve_forever, name="gemini-stub", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: from now on a client meets a refused connection."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> GeminiStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fault(
        self, name: str | None, *, times: int | None = None, retry_delay: float = 20.0, delay: float = 120.0
    ) -> None:
        """Answer the next `times` requests (all, if None) with fault `name`; None answers normally again."""
        if name is not None and name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}: choose one of {', '.join(FAULTS)}, or None")
        with self._lock:
            self._fault, self._fault_left = name, times
            self._retry_delay, self._delay = retry_delay, delay

    def requests(self, since: float = 0.0) -> list[StubRequest]:
        """The requests received (since a time.time() value), oldest first."""
        with self._lock:
            return [r for r in self._log if r.at >= since]

    def _take_fault(self) -> tuple[str | None, float, float]:
        with self._lock:
            fault = self._fault
            if fault is not None and self._fault_left is not None:
                self._fault_left -= 1
                if self._fault_left <= 0:
                    self._fault, self._fault_left = None, None
            return fault, self._retry_delay, self._delay

    def _record(self, method: str, path: str, model: str, agent: str, status: int, fault: str | None) -> None:
        with self._lock:
            self._log.append(StubRequest(time.time(), method, path, model, agent, status, fault))

    def _script(self, agent: str, turn: Turn) -> Script | None:
        scripts = self._scripts if self._scripts is not None else {}
        if agent:
            return scripts.get(agent) or (script_for(agent) if self._scripts is None else None)
        if turn.text.startswith(_SUMMARIZER_PROMPT):
            return self._summarizer
        return None

    def answer(self, model: str, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """Answer one generateContent body: (the response, the agent's name)."""
        contents = [types.Content.model_validate(c) for c in body.get("contents", [])]
        instruction = " ".join(p.get("text", "") for p in (body.get("systemInstruction") or {}).get("parts", []))
        tools = [d["name"] for t in body.get("tools") or [] for d in t.get("functionDeclarations") or [] if "name" in d]
        found = _IDENTITY.search(instruction)
        agent = found.group(1) if found else ""
        _check_signatures(contents)
        turn = turn_from_contents(contents, tools, instruction)
        script = self._script(agent, turn)
        if script is None:
            reply: str | list[Call] = f"I am the Gemini stub, and I have no script for agent {agent or '(unnamed)'}."
        else:
            got = script(turn)
            reply = got if isinstance(got, str) else list(got)
        response_id = uuid.uuid4().hex[:22]
        if isinstance(reply, str):
            text = reply if turn.text.startswith(_SUMMARIZER_PROMPT) else phrase(reply)
            parts: list[dict[str, Any]] = [{"text": text}]
        else:
            parts = [
                {
                    "functionCall": {"name": c.name, "args": c.args},
                    "thoughtSignature": base64.b64encode(f"stub-signature:{response_id}:{i}".encode()).decode(),
                }
                for i, c in enumerate(reply)
            ]
        prompt_tokens = max(1, len(json.dumps(body.get("contents", []))) // 4)
        answer_tokens = max(1, len(json.dumps(parts)) // 4)
        return {
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {
                "promptTokenCount": prompt_tokens,
                "candidatesTokenCount": answer_tokens,
                "totalTokenCount": prompt_tokens + answer_tokens,
            },
            "modelVersion": model,
            "responseId": response_id,
        }, agent


class _SignatureMissing(Exception):
    pass


def _check_signatures(contents: list[types.Content]) -> None:
    """Refuse, as Gemini 3 does, a function call of the current turn sent back without its thought signature."""
    start = 0
    for i, c in enumerate(contents):
        if c.role == "user" and any(p.text for p in c.parts or []):
            start = i
    for c in contents[start:]:
        if c.role == "model":
            for p in c.parts or []:
                if p.function_call is not None and not p.thought_signature:
                    raise _SignatureMissing(p.function_call.name or "")


def _handler(stub: GeminiStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: dict[str, Any], *, sse: bool = False) -> None:
            data = json.dumps(body).encode()
            if sse and status == 200:
                data = b"data: " + data + b"\r\n\r\n"
            self.send_response(status)
            self.send_header("Content-Type", "text/event-stream" if sse and status == 200 else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            return json.loads(raw) if raw else {}

        def do_GET(self) -> None:
            if self.path.startswith("/stub/requests"):
                since = float(self.path.partition("since=")[2] or 0)
                self._send(200, {"requests": [asdict(r) for r in stub.requests(since)]})
                return
            self._serve("GET")

        def do_POST(self) -> None:
            if self.path == "/stub/fault":
                body = self._body()
                try:
                    stub.fault(
                        body.get("fault"),
                        times=body.get("times"),
                        retry_delay=float(body.get("retry_delay", 20.0)),
                        delay=float(body.get("delay", 120.0)),
                    )
                except ValueError as err:
                    self._send(400, {"error": str(err)})
                    return
                self._send(200, {"fault": body.get("fault")})
                return
            self._serve("POST")

        def _serve(self, method: str) -> None:
            path = self.path.split("?", 1)[0]
            match = _PATH.match(path)
            try:
                body = self._body() if method == "POST" else {}
            except ValueError as err:
                stub._record(method, path, "", "", 400, None)
                self._send(400, _error(400, "INVALID_ARGUMENT", f"Invalid JSON payload received. {err}"))
                return
            if match is None or (method == "POST") != bool(match.group("method")):
                stub._record(method, path, "", "", 404, None)
                self._send(404, _error(404, "NOT_FOUND", f"{method} {path} is not a Gemini API method"))
                return
            model = match.group("model")
            key = self.headers.get("x-goog-api-key") or ""
            fault, retry_delay, delay = stub._take_fault()
            if fault is None and not model.startswith("gemini-"):
                fault = "no_model"
            play = _FAULTS[fault] if fault is not None else None
            agent = ""
            if not key:
                status, answer = (
                    403,
                    _error(
                        403,
                        "PERMISSION_DENIED",
                        "Method doesn't allow unregistered callers (callers without established identity). "
                        "Please use API Key or other form of API consumer identity to call this API.",
                    ),
                )
            elif play is not None and play.body is not None:
                status, answer = play.status, play.body(model, key, retry_delay)
            elif method == "GET":
                status, answer = (
                    200,
                    {
                        "name": f"models/{model}",
                        "version": "001",
                        "displayName": model,
                        "supportedGenerationMethods": ["generateContent", "countTokens"],
                    },
                )
            else:
                if play is not None and play.late:
                    time.sleep(delay)
                try:
                    answer, agent = stub.answer(model, body)
                    status = 200
                except (ValueError, TypeError, AttributeError, KeyError) as err:
                    status, answer = 400, _error(400, "INVALID_ARGUMENT", f"Invalid request: {err}")
                except _SignatureMissing as missing:
                    status, answer = (
                        400,
                        _error(
                            400,
                            "INVALID_ARGUMENT",
                            f"Function call is missing a thought_signature in functionCall parts ({missing}). This is "
                            "required for tools to work correctly.",
                        ),
                    )
            stub._record(method, path, model, agent, status, fault)
            self._send(status, answer, sse=match.group("method") == "streamGenerateContent")

    return Handler


class StubControl:
    """Switch the faults of a stub that runs in another process, and read what it received."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def fault(
        self, name: str | None, *, times: int | None = None, retry_delay: float = 20.0, delay: float = 120.0
    ) -> None:
        """Answer the next `times` requests (all, if None) with fault `name`; None answers normally again."""
        payload = {"fault": name, "times": times, "retry_delay": retry_delay, "delay": delay}
        response = httpx.post(f"{self.url}/stub/fault", json=payload, timeout=10)
        if response.status_code != 200:
            raise ValueError(response.json().get("error", response.text))

    def requests(self, since: float = 0.0) -> list[StubRequest]:
        """The requests the stub received (since a time.time() value), oldest first."""
        rows = httpx.get(f"{self.url}/stub/requests", params={"since": since}, timeout=10).json()["requests"]
        return [StubRequest(**r) for r in rows]

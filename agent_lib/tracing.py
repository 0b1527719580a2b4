"""Traces of a durable turn: collect the server's spans and an agent process's spans, with no trace viewer.

Lesson 12 introduces it. The Restate server exports its spans over OTLP (`tracing-endpoint`; the `otlp+http://`
scheme sends OTLP/HTTP in protobuf). An agent process exports its own spans (ADK's agent run, each model call,
each tool) through `RestateTracerProvider`, which parents them under the server's span of the invocation's
attempt and makes no span while the handler replays its journal. `TraceCollector` is a tiny OTLP/HTTP receiver
that runs in this process and keeps every span it receives, from both, so a notebook can assert on one turn's tree.

    with TraceCollector() as traces:
        server = RestateServer(..., env=traces.server_env())
        agents = AgentProcess([...], env=traces.agent_env())
        ...
        spans = traces.wait_for_turn(invocation_id)

With `forward_to` (or TRACES_VIEWER_URL, e.g. Jaeger's `http://127.0.0.1:4318/v1/traces`), the collector also passes
every batch it receives on to a trace viewer; with neither, to the Phoenix that `make tracing` runs, if it runs
(agent_lib/viewer.py).
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from ._otlp import Span, _decode_json, decode_otlp, encode_otlp

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from google.adk.models.base_llm import BaseLlm
    from google.adk.models.llm_request import LlmRequest
    from google.adk.models.llm_response import LlmResponse
    from matplotlib.figure import Figure
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExportResult

__all__ = [
    "TRACES_ENDPOINT_ENV",
    "TRACES_VIEWER_ENV",
    "Span",
    "TraceCollector",
    "decode_otlp",
    "encode_otlp",
    "install",
    "install_from_env",
    "attempts",
    "span_table",
    "trace_model",
    "turn_spans",
    "tree_lines",
    "waterfall",
]

TRACES_ENDPOINT_ENV = "AGENT_TRACES_ENDPOINT"
"""Where an agent process sends its spans (OTLP/HTTP, protobuf): set, the process traces; unset, it does not."""

TRACES_VIEWER_ENV = "TRACES_VIEWER_URL"
"""A trace viewer's OTLP/HTTP endpoint (e.g. Phoenix's http://127.0.0.1:6006/v1/traces) the collector forwards to."""

_SERVER_BATCH_DELAY_MS = "200"
"""How often the server sends its spans (its default is every 5 s): OTEL_BSP_SCHEDULE_DELAY, in milliseconds."""


class TraceCollector:
    """A tiny OTLP/HTTP receiver on 127.0.0.1 that keeps every span the server and the agents send it."""

    def __init__(self, *, forward_to: str | None = None) -> None:
        if forward_to is None:
            from .viewer import running_endpoint

            forward_to = os.environ.get(TRACES_VIEWER_ENV) or running_endpoint()
        self.forward_to = forward_to or None
        """Where every batch is passed on: `forward_to`, else TRACES_VIEWER_URL, else the viewer `make tracing` runs."""
        self._spans: list[Span] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self.forward_errors = 0

    @property
    def endpoint(self) -> str:
        """The OTLP/HTTP endpoint to send spans to."""
        if self._httpd is None:
            raise RuntimeError("the collector is not running: call start() first, or use it as `with TraceCollector()`")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1/traces"

    def start(self) -> TraceCollector:
        """Start listening on a free port, in a background thread."""
        if self._httpd is not None:
            return self
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server API)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                kind = self.headers.get("content-type", "application/x-protobuf")
                try:
                    collector._add(_decode_json(body) if "json" in kind else decode_otlp(body))
                    collector._forward(body, kind)
                    self.send_response(200)
                except (ValueError, KeyError, IndexError, struct.error):
                    self.send_response(400)
                self.send_header("content-type", kind)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Say nothing: a notebook's output is not the place for an access log."""

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, name="trace-collector", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening (the spans received are kept)."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()

    def _add(self, spans: list[Span]) -> None:
        with self._lock:
            self._spans += spans

    def _forward(self, body: bytes, kind: str) -> None:
        if not self.forward_to:
            return
        try:
            httpx.post(self.forward_to, content=body, headers={"content-type": kind}, timeout=2.0)
        except httpx.HTTPError:
            self.forward_errors += 1

    @property
    def spans(self) -> list[Span]:
        """Every span received so far."""
        with self._lock:
            return list(self._spans)

    def server_env(self) -> dict[str, str]:
        """Return the environment that makes a restate-server send its spans here, within a fraction of a second."""
        return {
            "RESTATE_TRACING_ENDPOINT": "otlp+" + self.endpoint,
            "RESTATE_TRACING_FILTER": "info",
            "OTEL_BSP_SCHEDULE_DELAY": _SERVER_BATCH_DELAY_MS,
        }

    def agent_env(self) -> dict[str, str]:
        """Return the environment that makes an agent process (`install_from_env`) send its spans here."""
        return {TRACES_ENDPOINT_ENV: self.endpoint}

    def wait_for_turn(
        self, invocation_id: str, *, names: Sequence[str] = (), settle: float = 0.5, timeout: float = 15.0
    ) -> list[Span]:
        """Wait until the spans of one invocation's trace have arrived, and return them.

        `names` are spans that must be there: a name, or the start of one ("invocation-end" matches
        "invocation-end TracedWeather/{key}/run").

        A span arrives when it ends, in batches: wait until `names` are there and nothing new came for `settle` s.
        """
        deadline = time.monotonic() + timeout
        seen, quiet_since = -1, time.monotonic()
        while True:
            spans = turn_spans(self.spans, invocation_id)
            have = {s.name for s in spans}
            missing = [n for n in names if not any(h == n or h.startswith(n + " ") for h in have)]
            if len(spans) != seen:
                seen, quiet_since = len(spans), time.monotonic()
            if spans and not missing and time.monotonic() - quiet_since >= settle:
                return spans
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the trace of {invocation_id} has {len(spans)} span(s) after {timeout:.0f}s"
                    + (f", and none named {missing}" if missing else "")
                    + ": is the server started with collector.server_env(), the agents with collector.agent_env()?"
                )
            time.sleep(0.05)

    def __enter__(self) -> TraceCollector:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def turn_spans(spans: Sequence[Span], invocation_id: str) -> list[Span]:
    """Return the spans of the trace that holds `invocation_id`'s spans, oldest first."""
    traces = {s.trace_id for s in spans if s.attributes.get("restate.invocation.id") == invocation_id}
    return sorted((s for s in spans if s.trace_id in traces), key=lambda s: (s.start_ns, s.end_ns))


ATTEMPT = "invocation-attempt"
"""The server's span of one attempt to run an invocation: the agent's spans of that attempt are its children."""

AGENT_RUN_SPANS = ("invoke_workflow", "invoke_agent")
"""ADK's spans of a whole agent run: an attempt that replays the journal makes none (they start during the replay)."""


def attempts(spans: Sequence[Span]) -> list[Span]:
    """Return the server's attempt spans of a turn, oldest first."""
    return sorted((s for s in spans if s.name.startswith(ATTEMPT)), key=lambda s: s.start_ns)


def span_table(spans: Sequence[Span]) -> list[dict[str, Any]]:
    """Return one row per span: its name, who made it, which attempt it belongs to, its duration and any error."""
    numbers = {a.span_id: i + 1 for i, a in enumerate(attempts(spans))}
    rows = []
    for s in sorted(spans, key=lambda s: s.start_ns):
        attempt = numbers.get(s.span_id) or numbers.get(s.parent_id)
        rows.append(
            {
                "span": s.name,
                "made by": s.service + (f" (pid {s.pid})" if s.pid else ""),
                "attempt": attempt or "",
                "ms": round(s.ms, 1),
                "error": s.error,
            }
        )
    return rows


def tree_lines(spans: Sequence[Span]) -> list[str]:
    """Return the spans as an indented tree, one line each: name, service and duration."""
    ids = {s.span_id for s in spans}
    children: dict[str, list[Span]] = {}
    for s in spans:
        children.setdefault(s.parent_id if s.parent_id in ids else "", []).append(s)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda s: s.start_ns):
            lines.append(f"{'    ' * depth}{s.name}  [{s.service}, {s.ms:.1f} ms]")
            walk(s.span_id, depth + 1)

    walk("", 0)
    return lines


def waterfall(spans: Sequence[Span], title: str = "") -> Figure:
    """Draw the spans as a waterfall: one bar per span, from its start to its end, nested spans indented."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    ids = {s.span_id: s for s in spans}

    def depth(s: Span) -> int:
        d = 0
        while s.parent_id in ids and d < 50:
            s, d = ids[s.parent_id], d + 1
        return d

    ordered = sorted(spans, key=lambda s: s.start_ns)
    t0 = min((s.start_ns for s in ordered), default=0)
    services = sorted({s.service for s in ordered})
    colors = {svc: plt.get_cmap("tab10")(i) for i, svc in enumerate(services)}
    last = max(((s.end_ns - t0) / 1e6 for s in ordered), default=0.0)
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(ordered) + 1.4))
    for row, s in enumerate(ordered):
        start = (s.start_ns - t0) / 1e6
        ax.barh(row, max(s.ms, 0.3), left=start, color=colors[s.service], height=0.7)
        label = f"{s.name}  {s.ms:.1f} ms"
        if start > 0.6 * last:  # late in the turn: the label goes left of its bar, inside the picture
            ax.text(start, row, label + "  ", va="center", ha="right", fontsize=8)
        else:
            ax.text(start, row, "  " * depth(s) + " " + label, va="center", fontsize=8)
    ax.set_yticks([])
    ax.invert_yaxis()
    ax.set_xlabel("milliseconds since the turn's first span")
    handles = [Rectangle((0, 0), 1, 1, color=colors[svc]) for svc in services]
    ax.legend(handles, services, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=len(services), fontsize=8)
    ax.set_title(title, loc="left", fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig


# --- the agent process's side ------------------------------------------------------------------------------------


def _from_sdk(span: ReadableSpan) -> Span | None:
    """Return an OpenTelemetry SDK span as a `Span` (None if it has no context)."""
    context = span.get_span_context()
    if context is None:
        return None
    failed = span.status.status_code.value == 2
    return Span(
        f"{context.trace_id:032x}",
        f"{context.span_id:016x}",
        f"{span.parent.span_id:016x}" if span.parent is not None else "",
        span.name,
        "",
        span.start_time or 0,
        span.end_time or 0,
        dict(span.attributes or {}),
        tuple(e.name for e in span.events),
        (span.status.description or "error") if failed else "",
    )


def trace_model(model: BaseLlm) -> BaseLlm:
    """Wrap an ADK model so that each real call is a span, `generate_content <model>`, with its token counts.

    ADK makes that span itself only when it calls the model; under RestatePlugin the plugin calls it, inside the
    journaled step "call LLM", so ADK's span is not made. A replayed step does not call the model: no span.
    """
    from google.adk.models.base_llm import BaseLlm as _BaseLlm

    class TracedModel(_BaseLlm):
        inner: _BaseLlm

        async def generate_content_async(
            self, llm_request: LlmRequest, stream: bool = False
        ) -> AsyncGenerator[LlmResponse, None]:
            from opentelemetry import trace

            span = trace.get_tracer("agent_lib.tracing").start_span(
                f"generate_content {self.inner.model}",
                attributes={"gen_ai.operation.name": "generate_content", "gen_ai.request.model": self.inner.model},
            )
            try:
                async for response in self.inner.generate_content_async(llm_request, stream):
                    usage = response.usage_metadata
                    if usage is not None:
                        span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_token_count or 0)
                        span.set_attribute("gen_ai.usage.output_tokens", usage.candidates_token_count or 0)
                    yield response
            finally:
                span.end()

    return TracedModel(model=model.model, inner=model)


def install(endpoint: str, service: str = "agents") -> None:
    """Trace this process: ADK's spans and the app's own, parented under Restate's invocation, sent to `endpoint`.

    Each span is sent as it ends (OTLP/HTTP, protobuf), so a SIGKILL loses only the spans still open. `endpoint` can
    be a `TraceCollector`'s, or a trace viewer's (Phoenix: http://127.0.0.1:6006/v1/traces).
    """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
    from restate.ext.tracing import RestateTracerProvider

    class OtlpExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            body = encode_otlp([s for s in map(_from_sdk, spans) if s is not None], service, os.getpid())
            try:
                httpx.post(endpoint, content=body, headers={"content-type": "application/x-protobuf"}, timeout=5.0)
            except httpx.HTTPError:
                return SpanExportResult.FAILURE
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OtlpExporter()))
    trace.set_tracer_provider(RestateTracerProvider(provider))  # type: ignore[no-untyped-call]


def install_from_env(service: str = "agents") -> bool:
    """Trace this process if AGENT_TRACES_ENDPOINT is set (see `install`); return whether it does."""
    endpoint = os.environ.get(TRACES_ENDPOINT_ENV)
    if endpoint:
        install(endpoint, service)
    return bool(endpoint)

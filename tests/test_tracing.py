"""agent_lib.tracing: OTLP decoded from the server's protobuf and the agents' JSON, a collector, a tree, a waterfall."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Status, StatusCode

from agent_lib import tracing
from agent_lib.tracing import Span, TraceCollector, decode_otlp, span_table, tree_lines, turn_spans

# --- a protobuf writer, just enough to build an ExportTraceServiceRequest as the server sends it ----------------


def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def _len(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _fixed64(number: int, value: int) -> bytes:
    return _varint(number << 3 | 1) + struct.pack("<Q", value)


def _kv(key: str, value: str | int) -> bytes:
    any_value = _len(1, value.encode()) if isinstance(value, str) else _varint(3 << 3) + _varint(value)
    return _len(1, key.encode()) + _len(2, any_value)


def _pb_span(trace: bytes, span: bytes, parent: bytes, name: str, start: int, end: int, **attrs: str | int) -> bytes:
    body = _len(1, trace) + _len(2, span) + (_len(4, parent) if parent else b"") + _len(5, name.encode())
    body += _fixed64(7, start) + _fixed64(8, end)
    body += b"".join(_len(9, _kv(k.replace("_", "."), v)) for k, v in attrs.items())
    return body


TRACE = bytes(range(16))


def _server_body(error: str = "") -> bytes:
    root = _pb_span(TRACE, b"\x01" * 8, b"", "ingress Svc/run", 1_000, 2_000, restate_invocation_id="inv_1")
    attempt = _pb_span(TRACE, b"\x02" * 8, b"\x01" * 8, "invocation-attempt Svc/run", 1_500, 9_000_000)
    attempt += _len(11, _len(2, b"restate.invocation.lifecycle.new_command"))
    if error:
        attempt += _len(15, _len(2, error.encode()) + _varint(3 << 3) + _varint(2))
    resource = _len(1, _len(1, _kv("service.name", "Restate")))
    scope = _len(2, _len(2, root) + _len(2, attempt))
    return _len(1, resource + scope)


def test_the_servers_protobuf_decodes_to_spans() -> None:
    root, attempt = decode_otlp(_server_body(error="transient failure"))
    assert (root.trace_id, root.span_id, root.parent_id) == (TRACE.hex(), "01" * 8, "")
    assert root.name == "ingress Svc/run" and root.service == "Restate"
    assert root.attributes == {"restate.invocation.id": "inv_1"}
    assert attempt.parent_id == root.span_id and attempt.ms == pytest.approx(8.9985)
    assert attempt.events == ("restate.invocation.lifecycle.new_command",)
    assert attempt.error == "transient failure" and root.error == ""


def test_a_body_that_is_not_otlp_is_refused() -> None:
    with pytest.raises(ValueError, match="ExportTraceServiceRequest"):
        decode_otlp(b"\x0f\x01")


class _Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += spans
        return SpanExportResult.SUCCESS


def _agent_spans() -> list[ReadableSpan]:
    kept = _Keep()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(kept))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("invoke_agent a", attributes={"n": 3, "ok": True, "x": 1.5}):
        with tracer.start_as_current_span("execute_tool t") as tool:
            tool.add_event("called")
            tool.set_status(Status(StatusCode.ERROR, "boom"))
    return kept.spans


def test_the_agents_spans_reach_the_collector_as_protobuf_and_come_back_the_same() -> None:
    made = _agent_spans()
    spans = [s for s in map(tracing._from_sdk, made) if s is not None]
    with TraceCollector() as collector:
        answer = httpx.post(
            collector.endpoint,
            content=tracing.encode_otlp(spans, "agents", pid=4321),
            headers={"content-type": "application/x-protobuf"},
        )
        got = {s.name: s for s in collector.spans}
    assert answer.status_code == 200
    tool, agent = got["execute_tool t"], got["invoke_agent a"]
    assert tool.parent_id == agent.span_id and tool.trace_id == agent.trace_id
    assert f"{made[0].context.trace_id:032x}" == tool.trace_id
    assert agent.attributes == {"n": 3, "ok": True, "x": 1.5} and agent.service == "agents" and agent.pid == 4321
    assert tool.events == ("called",) and tool.error == "boom"
    assert (agent.start_ns, agent.end_ns) == (made[1].start_time, made[1].end_time)


def test_otlp_json_from_other_senders_is_read_too() -> None:
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "other"}}]},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "AB" * 16,
                                "spanId": "CD" * 8,
                                "name": "work",
                                "startTimeUnixNano": "5",
                                "endTimeUnixNano": "7",
                                "attributes": [{"key": "n", "value": {"intValue": "2"}}],
                            }
                        ]
                    }
                ],
            }
        ]
    }
    with TraceCollector() as collector:
        httpx.post(collector.endpoint, json=body)
        (span,) = collector.spans
    assert (span.trace_id, span.span_id, span.service, span.attributes) == ("ab" * 16, "cd" * 8, "other", {"n": 2})


def test_the_collector_refuses_garbage_and_keeps_going() -> None:
    with TraceCollector() as collector:
        bad = httpx.post(collector.endpoint, content=b"\x0f\x01", headers={"content-type": "application/x-protobuf"})
        good = httpx.post(
            collector.endpoint, content=_server_body(), headers={"content-type": "application/x-protobuf"}
        )
    assert (bad.status_code, good.status_code) == (400, 200)
    assert len(collector.spans) == 2


def test_the_collector_forwards_to_a_viewer() -> None:
    with TraceCollector() as viewer, TraceCollector(forward_to=viewer.endpoint) as collector:
        httpx.post(collector.endpoint, content=_server_body(), headers={"content-type": "application/x-protobuf"})
        assert [s.name for s in viewer.spans] == [s.name for s in collector.spans]
    assert collector.forward_errors == 0


def test_a_collector_that_does_not_run_says_so() -> None:
    with pytest.raises(RuntimeError, match="start"):
        _ = TraceCollector().endpoint


def test_the_server_and_agent_env_point_at_the_collector() -> None:
    with TraceCollector() as collector:
        assert collector.server_env()["RESTATE_TRACING_ENDPOINT"] == "otlp+" + collector.endpoint
        assert collector.agent_env() == {tracing.TRACES_ENDPOINT_ENV: collector.endpoint}


def test_waiting_for_a_trace_that_never_comes_says_what_to_check() -> None:
    with TraceCollector() as collector, pytest.raises(TimeoutError, match=r"server_env\(\)"):
        collector.wait_for_turn("inv_none", timeout=0.3)


def _s(span: str, parent: str, name: str, start: int, end: int, trace: str = "t1", **attrs: str) -> Span:
    service = "agents" if name.startswith(("generate", "execute")) else "Restate"
    return Span(trace, span, parent, name, service, start, end, attrs)


TURN = [
    _s("a", "", "ingress S/run", 0, 1_000, **{"restate.invocation.id": "inv_1"}),
    _s("b", "a", "invocation-attempt S/run", 1_000, 9_000_000),
    _s("c", "b", "generate_content offline", 2_000_000, 3_000_000),
    _s("d", "b", "execute_tool get_weather", 4_000_000, 5_000_000),
    _s("e", "", "ingress S/run", 0, 1_000, trace="t2", **{"restate.invocation.id": "inv_2"}),
]


def test_a_turns_spans_are_its_trace_and_draw_as_a_tree() -> None:
    turn = turn_spans(TURN, "inv_1")
    assert [s.span_id for s in turn] == ["a", "b", "c", "d"]
    assert tree_lines(turn) == [
        "ingress S/run  [Restate, 0.0 ms]",
        "    invocation-attempt S/run  [Restate, 9.0 ms]",
        "        generate_content offline  [agents, 1.0 ms]",
        "        execute_tool get_weather  [agents, 1.0 ms]",
    ]
    assert [r["attempt"] for r in span_table(turn)] == ["", 1, 1, 1]
    assert [s.span_id for s in tracing.attempts(turn)] == ["b"]


def test_the_waterfall_has_a_bar_per_span() -> None:
    figure = tracing.waterfall(turn_spans(TURN, "inv_1"), "a turn")
    assert len(figure.axes[0].patches) == 4 and figure.axes[0].get_title(loc="left") == "a turn"


def test_a_process_without_the_endpoint_is_not_traced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tracing.TRACES_ENDPOINT_ENV, raising=False)
    assert tracing.install_from_env() is False

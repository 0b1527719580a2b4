"""OTLP's trace protobuf, just the fields a span tree needs: read the server's export, write an agent's.

The kit needs no OpenTelemetry protobuf package for this: `decode_otlp` reads an ExportTraceServiceRequest (what
the Restate server and an agent process send over OTLP/HTTP), `encode_otlp` writes one (what a trace viewer
accepts). `agent_lib.tracing` builds on it (lesson 12).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Span", "decode_otlp", "encode_otlp"]


@dataclass(frozen=True)
class Span:
    """One finished span, from the server or an agent process."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    service: str
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[str, ...] = ()
    """The names of the span's events (the server records a failed attempt's error as one)."""
    error: str = ""
    """The span's status message, if it ended in an error."""
    pid: int | None = None
    """The process that made the span (agent processes say; the server does not)."""

    @property
    def ms(self) -> float:
        """The span's duration, in milliseconds."""
        return (self.end_ns - self.start_ns) / 1e6


# --- a protobuf reader for OTLP's ExportTraceServiceRequest, just the fields a span tree needs -------------------


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = buf[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """Yield (field number, value) of a protobuf message: an int for varint and fixed fields, bytes for the rest."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
            yield number, value
        elif wire == 1:
            yield number, struct.unpack_from("<Q", buf, i)[0]
            i += 8
        elif wire == 5:
            yield number, struct.unpack_from("<I", buf, i)[0]
            i += 4
        elif wire == 2:
            size, i = _varint(buf, i)
            yield number, buf[i : i + size]
            i += size
        else:
            raise ValueError(f"protobuf wire type {wire} is not OTLP's: is this an ExportTraceServiceRequest?")


def _any_value(buf: bytes) -> Any:
    for number, value in _fields(buf):
        if number == 1 and isinstance(value, bytes):
            return value.decode(errors="replace")
        if number in (2, 3) and isinstance(value, int):
            return bool(value) if number == 2 else value - (1 << 64) if value >= 1 << 63 else value
        if number == 4 and isinstance(value, int):
            return struct.unpack("<d", struct.pack("<Q", value))[0]
    return None


def _attributes(items: Sequence[bytes]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in items:
        key, value = "", None
        for number, part in _fields(item):
            if number == 1 and isinstance(part, bytes):
                key = part.decode(errors="replace")
            elif number == 2 and isinstance(part, bytes):
                value = _any_value(part)
        found[key] = value
    return found


def _event_name(buf: bytes) -> str:
    return next((v.decode(errors="replace") for n, v in _fields(buf) if n == 2 and isinstance(v, bytes)), "")


def _status_error(buf: bytes) -> str:
    parts = dict(_fields(buf))
    message = parts.get(2, b"")
    return (message.decode(errors="replace") if isinstance(message, bytes) else "") or (
        "error" if parts.get(3) == 2 else ""
    )


def _span(buf: bytes, service: str, pid: int | None) -> Span:
    ids: dict[int, str] = {1: "", 2: "", 4: ""}
    name, start, end, attrs, events, error = "", 0, 0, [], [], ""
    for number, value in _fields(buf):
        if number in ids and isinstance(value, bytes):
            ids[number] = value.hex()
        elif number == 5 and isinstance(value, bytes):
            name = value.decode(errors="replace")
        elif number == 7 and isinstance(value, int):
            start = value
        elif number == 8 and isinstance(value, int):
            end = value
        elif number == 9 and isinstance(value, bytes):
            attrs.append(value)
        elif number == 11 and isinstance(value, bytes):
            events.append(_event_name(value))
        elif number == 15 and isinstance(value, bytes):
            error = _status_error(value)
    return Span(ids[1], ids[2], ids[4], name, service, start, end, _attributes(attrs), tuple(events), error, pid)


def decode_otlp(body: bytes) -> list[Span]:
    """Decode an OTLP/HTTP protobuf body (ExportTraceServiceRequest) into spans."""
    spans: list[Span] = []
    for number, resource_spans in _fields(body):
        if number != 1 or not isinstance(resource_spans, bytes):
            continue
        resource: dict[str, Any] = {}
        scopes = []
        for part, value in _fields(resource_spans):
            if part == 1 and isinstance(value, bytes):
                resource = _attributes([a for n, a in _fields(value) if n == 1 and isinstance(a, bytes)])
            elif part == 2 and isinstance(value, bytes):
                scopes.append(value)
        service, pid = str(resource.get("service.name", "")), resource.get("process.pid")
        for scope in scopes:
            spans += [
                _span(s, service, pid if isinstance(pid, int) else None)
                for n, s in _fields(scope)
                if n == 2 and isinstance(s, bytes)
            ]
    return spans


def _decode_json(body: bytes) -> list[Span]:
    """Decode an OTLP/HTTP JSON body into spans."""
    spans: list[Span] = []

    def value(v: Mapping[str, Any]) -> Any:
        for kind in ("stringValue", "boolValue", "doubleValue"):
            if kind in v:
                return v[kind]
        return int(v["intValue"]) if "intValue" in v else None

    for resource in json.loads(body).get("resourceSpans", []):
        attrs = {a["key"]: value(a["value"]) for a in resource.get("resource", {}).get("attributes", [])}
        for scope in resource.get("scopeSpans", []):
            for s in scope.get("spans", []):
                spans.append(
                    Span(
                        s["traceId"].lower(),
                        s["spanId"].lower(),
                        s.get("parentSpanId", "").lower(),
                        s["name"],
                        str(attrs.get("service.name", "")),
                        int(s["startTimeUnixNano"]),
                        int(s["endTimeUnixNano"]),
                        {a["key"]: value(a["value"]) for a in s.get("attributes", [])},
                        tuple(e.get("name", "") for e in s.get("events", [])),
                        s.get("status", {}).get("message", "")
                        or ("error" if s.get("status", {}).get("code") == 2 else ""),
                        attrs.get("process.pid"),
                    )
                )
    return spans


# --- the collector ---------------------------------------------------------------------------------------------


# --- a protobuf writer, for a trace viewer ---------------------------------------------------------------------------


def _put_varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _put(number: int, payload: bytes) -> bytes:
    return _put_varint(number << 3 | 2) + _put_varint(len(payload)) + payload


def _put_fixed64(number: int, value: int) -> bytes:
    return _put_varint(number << 3 | 1) + struct.pack("<Q", value)


def _put_attribute(key: str, value: Any) -> bytes:
    if isinstance(value, bool):
        any_value = _put_varint(2 << 3) + _put_varint(int(value))
    elif isinstance(value, int):
        any_value = _put_varint(3 << 3) + _put_varint(value)
    elif isinstance(value, float):
        any_value = _put_varint(4 << 3 | 1) + struct.pack("<d", value)
    else:
        any_value = _put(1, str(value)[:2000].encode())
    return _put(1, key.encode()) + _put(2, any_value)


def encode_otlp(spans: Sequence[Span], service: str, pid: int | None = None) -> bytes:
    """Encode spans as an OTLP/HTTP protobuf body (ExportTraceServiceRequest), what trace viewers accept."""
    resource = _put(1, _put_attribute("service.name", service)) + (
        _put(1, _put_attribute("process.pid", pid)) if pid else b""
    )
    encoded = b""
    for s in spans:
        body = _put(1, bytes.fromhex(s.trace_id)) + _put(2, bytes.fromhex(s.span_id))
        body += _put(4, bytes.fromhex(s.parent_id)) if s.parent_id else b""
        body += _put(5, s.name.encode()) + _put_fixed64(7, s.start_ns) + _put_fixed64(8, s.end_ns)
        body += b"".join(_put(9, _put_attribute(k, v)) for k, v in s.attributes.items())
        body += b"".join(_put(11, _put(2, e.encode())) for e in s.events)
        body += _put(15, _put(2, s.error.encode()) + _put_varint(3 << 3) + _put_varint(2)) if s.error else b""
        encoded += _put(2, body)
    return _put(1, _put(1, resource) + _put(2, encoded))

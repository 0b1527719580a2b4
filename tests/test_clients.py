"""The ingress and admin clients against the real server."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent_lib.clients import Admin, Ingress, RestateError, forwarded_url, ui_url
from agent_lib.serving import AgentProcess
from tests.helpers import wait_failure, wait_for, wait_status

PARTITION_MOVING = (500, {"message": "Datafusion error: External error: expecting a partition store for partition 3"})
MALFORMED_ID = (500, {"message": "Datafusion error: External error: non valid invocation id"})
ROWS = (200, {"rows": [{"n": 1}]})
HANG_UP = (0, {})
"""Close the connection without an answer, as a node going down does."""


def _parked(admin: Admin, ingress: Ingress, key: str) -> tuple[str, str]:
    sent = ingress.send("TestWaiter", "wait", "parcel", key=key)
    awakeable = wait_for("the awakeable", lambda: admin.state("TestWaiter", key).get("awakeable"))
    return sent.invocation_id, awakeable.strip('"')


def test_call_send_attach_output(ingress: Ingress, test_services: AgentProcess) -> None:
    assert ingress.call("TestEcho", "say", "hi") == "HI"
    sent = ingress.send("TestEcho", "say", "later")
    assert sent.invocation_id.startswith("inv_") and sent.status
    assert ingress.attach(sent.invocation_id) == "LATER"
    assert ingress.output(sent.invocation_id) == "LATER"


def test_idempotency_key_runs_once(ingress: Ingress, admin: Admin, test_services: AgentProcess, key: str) -> None:
    first = ingress.send("TestEcho", "say", "once", idempotency_key=key)
    second = ingress.send("TestEcho", "say", "once", idempotency_key=key)
    assert first.invocation_id == second.invocation_id
    assert ingress.call("TestEcho", "say", "once", idempotency_key=key) == "ONCE"


def test_unknown_service_error_carries_restates_message(ingress: Ingress) -> None:
    with pytest.raises(RestateError) as err:
        ingress.call("NoSuchService", "run", "x")
    assert err.value.status == 404
    assert "NoSuchService" in err.value.message


def test_bad_names_are_refused_before_sending(ingress: Ingress) -> None:
    with pytest.raises(ValueError, match="name both the service and the handler"):
        ingress.call("", "run")


def test_unreachable_server_says_how_to_start_it() -> None:
    with pytest.raises(ConnectionError, match="is the server running.*make server"):
        Ingress("http://127.0.0.1:1").call("X", "y")


def test_resolve_awakeable(admin: Admin, ingress: Ingress, test_services: AgentProcess, key: str) -> None:
    invocation, awakeable = _parked(admin, ingress, key)
    wait_status(admin, invocation, "suspended")
    ingress.resolve_awakeable(awakeable, "approved")
    assert ingress.attach(invocation) == "parcel: approved"


def test_reject_awakeable(admin: Admin, ingress: Ingress, test_services: AgentProcess, key: str) -> None:
    invocation, awakeable = _parked(admin, ingress, key)
    ingress.reject_awakeable(awakeable, "not today")
    with pytest.raises(RestateError, match="not today"):
        ingress.attach(invocation)


def test_malformed_awakeable_id_is_a_4xx(ingress: Ingress) -> None:
    with pytest.raises(RestateError) as err:
        ingress.resolve_awakeable("not-an-awakeable", "x")
    assert 400 <= err.value.status < 500


def test_journal_steps_and_state(admin: Admin, ingress: Ingress, test_services: AgentProcess) -> None:
    sent = ingress.send("TestEcho", "say", "journal")
    ingress.attach(sent.invocation_id)
    rows = admin.journal(sent.invocation_id)
    assert rows[0]["entry_type"] == "Command: Input"
    assert admin.steps(sent.invocation_id) == ["shout"]
    assert set(rows[0]) == {"index", "entry_type", "name", "appended_at", "entry_json"}
    df = admin.journal_df(sent.invocation_id)
    assert list(df["index"]) == sorted(df["index"]) and len(df) == len(rows)
    assert admin.invocation(sent.invocation_id)["status"] == "completed"


def test_kill_and_cancel(admin: Admin, ingress: Ingress, test_services: AgentProcess, key: str) -> None:
    killed, _ = _parked(admin, ingress, key)
    admin.kill(killed)
    with pytest.raises(RestateError):
        ingress.attach(killed)
    cancelled, _ = _parked(admin, ingress, key + "-c")
    admin.cancel(cancelled)
    with pytest.raises(RestateError, match="[Cc]ancel"):
        ingress.attach(cancelled)


def test_pause_and_resume_a_retrying_invocation(admin: Admin, ingress: Ingress, test_services: AgentProcess) -> None:
    sent = ingress.send("TestAlwaysFails", "attempt", "the printer")
    row = wait_failure(admin, sent.invocation_id)
    assert "the printer is broken" in str(row["last_failure"])
    assert row["retry_count"] >= 1
    admin.pause(sent.invocation_id)
    wait_status(admin, sent.invocation_id, "paused")
    admin.resume(sent.invocation_id)
    wait_for("a retry", lambda: admin.status(sent.invocation_id) in ("backing-off", "running", "ready", "scheduled"))
    admin.kill(sent.invocation_id)


def test_control_of_an_unknown_invocation_is_a_4xx(admin: Admin) -> None:
    with pytest.raises(RestateError) as err:
        admin.kill("inv_1notarealinvocationid")
    assert 400 <= err.value.status < 500


def test_query_df(admin: Admin, test_services: AgentProcess) -> None:
    df = admin.query_df("SELECT name FROM sys_service ORDER BY name")
    assert "TestEcho" in set(df["name"])


class FakeAdmin:
    """A stdlib HTTP server on a free port that answers each request with the next scripted answer."""

    def __init__(self, answers: list[tuple[int, dict[str, Any]]]) -> None:
        self.answers = answers
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                fake.requests.append(f"{self.command} {self.path}")
                status, body = fake.answers[min(len(fake.requests), len(fake.answers)) - 1]
                if status == 0:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_admin() -> Iterator[Any]:
    started: list[FakeAdmin] = []

    def start(*answers: tuple[int, dict[str, Any]]) -> FakeAdmin:
        started.append(FakeAdmin(list(answers)))
        return started[-1]

    yield start
    for fake in started:
        fake.close()


def test_admin_asks_again_while_a_clusters_partitions_move(fake_admin: Any) -> None:
    fake = fake_admin(PARTITION_MOVING, PARTITION_MOVING, ROWS)
    assert Admin(fake.url, retry_for=10).query("SELECT 1 AS n") == [{"n": 1}]
    assert fake.requests == ["POST /query"] * 3


def test_admin_gives_up_after_its_deadline_and_says_so(fake_admin: Any) -> None:
    fake = fake_admin(PARTITION_MOVING)
    started = time.monotonic()
    with pytest.raises(RestateError) as err:
        Admin(fake.url, retry_for=1.0).query("SELECT 1 AS n")
    took = time.monotonic() - started
    assert 0.5 <= took < 5, took
    assert err.value.status == 500
    assert "expecting a partition store" in err.value.message
    assert f"asked {len(fake.requests)} times over" in err.value.message and "gave up" in err.value.message
    assert len(fake.requests) >= 3


@pytest.mark.parametrize(
    "answer",
    [
        MALFORMED_ID,
        (500, {"message": "Datafusion error: Error during planning: table 'restate.public.no_table' not found"}),
        (500, {"message": "[META0003] error when calling 'http://127.0.0.1:1/'", "restate_code": "META0003"}),
        (404, {"message": "The requested service 'NoSuch' does not exist"}),
    ],
    ids=["malformed-id", "bad-sql", "restate-code", "4xx"],
)
def test_a_mistake_in_the_request_fails_at_once(fake_admin: Any, answer: tuple[int, dict[str, Any]]) -> None:
    fake = fake_admin(answer, ROWS)
    started = time.monotonic()
    with pytest.raises(RestateError) as err:
        Admin(fake.url, retry_for=30).query("SELECT * FROM sys_invocation WHERE id = 'inv_1x'")
    assert time.monotonic() - started < 2
    assert fake.requests == ["POST /query"]
    assert err.value.message == answer[1]["message"]


def test_admin_asks_again_when_a_returning_node_hangs_up(fake_admin: Any) -> None:
    fake = fake_admin(ROWS, HANG_UP, HANG_UP, ROWS)
    admin = Admin(fake.url, retry_for=10)
    assert admin.query("SELECT 1 AS n") == [{"n": 1}]
    assert admin.query("SELECT 1 AS n") == [{"n": 1}]
    assert len(fake.requests) == 4


def test_admin_waits_for_a_node_that_answered_before_to_listen_again(fake_admin: Any) -> None:
    fake = fake_admin(ROWS)
    admin = Admin(fake.url, retry_for=1.0)
    assert admin.query("SELECT 1 AS n") == [{"n": 1}]
    fake.close()
    started = time.monotonic()
    with pytest.raises(ConnectionError, match=r"stopped answering \(asked \d+ times over .* gave up"):
        admin.query("SELECT 1 AS n")
    assert time.monotonic() - started >= 0.5


def test_admin_of_a_server_that_never_answered_fails_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(ConnectionError, match="is the server running.*make server"):
        Admin("http://127.0.0.1:1", retry_for=30).query("SELECT 1")
    assert time.monotonic() - started < 2


def test_async_admin_calls_ask_again_too(fake_admin: Any) -> None:
    fake = fake_admin(PARTITION_MOVING, (200, {"id": "dp_1", "services": []}))
    answer = asyncio.run(Admin(fake.url, retry_for=10).aregister("http://127.0.0.1:1"))
    assert answer["id"] == "dp_1" and len(fake.requests) == 2


def test_ingress_and_health_probe_ask_once(fake_admin: Any) -> None:
    fake = fake_admin(PARTITION_MOVING, PARTITION_MOVING, ROWS)
    with pytest.raises(RestateError):
        Ingress(fake.url).call("X", "y")
    assert not Admin(fake.url, retry_for=10).health()
    assert len(fake.requests) == 2


@pytest.fixture
def codespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODESPACE_NAME", "fluffy-robot-x7")
    monkeypatch.setenv("GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN", "app.github.dev")


@pytest.fixture
def no_codespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CODESPACE_NAME", raising=False)
    monkeypatch.delenv("GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN", raising=False)


def test_ui_links_are_local_outside_a_codespace(no_codespace: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESTATE_ADMIN_URL", raising=False)
    assert ui_url() == "http://127.0.0.1:9070"
    assert ui_url("http://127.0.0.1:23070/", "/ui/invocations/inv_1") == "http://127.0.0.1:23070/ui/invocations/inv_1"
    assert forwarded_url("http://127.0.0.1:8888/lab?token=t") == "http://127.0.0.1:8888/lab?token=t"


def test_ui_links_lead_to_the_forwarded_address_in_a_codespace(
    codespace: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RESTATE_ADMIN_URL", raising=False)
    assert ui_url() == "https://fluffy-robot-x7-9070.app.github.dev/"
    monkeypatch.setenv("RESTATE_ADMIN_URL", "http://127.0.0.1:23070")
    assert ui_url() == "https://fluffy-robot-x7-23070.app.github.dev/"
    assert ui_url("http://localhost:9070", "ui/invocations/inv_1") == (
        "https://fluffy-robot-x7-9070.app.github.dev/ui/invocations/inv_1"
    )
    assert (
        forwarded_url("http://127.0.0.1:8888/lab?token=t") == "https://fluffy-robot-x7-8888.app.github.dev/lab?token=t"
    )


def test_invocation_links_are_forwarded_too(codespace: None) -> None:
    from agent_lib.observe import ui_url as invocation_link

    assert invocation_link(Admin("http://127.0.0.1:9070"), "inv_1") == (
        "https://fluffy-robot-x7-9070.app.github.dev/ui/invocations/inv_1"
    )


def test_a_server_elsewhere_keeps_its_own_address_in_a_codespace(codespace: None) -> None:
    assert ui_url("http://restate.internal:9070") == "http://restate.internal:9070"


def test_half_a_codespace_environment_changes_nothing(monkeypatch: pytest.MonkeyPatch, no_codespace: None) -> None:
    monkeypatch.setenv("CODESPACE_NAME", "fluffy-robot-x7")
    assert ui_url("http://127.0.0.1:9070") == "http://127.0.0.1:9070"


def test_every_printed_ui_link_goes_through_ui_url() -> None:
    """The CLI, observe (the widgets' links), `make lab` and the lessons print UI links only through clients.ui_url."""
    root = Path(__file__).resolve().parent.parent
    for path in ("agent_lib/__main__.py", "agent_lib/observe.py", "Makefile"):
        text = (root / path).read_text()
        assert "ui_url(" in text, f"{path} prints a UI link without clients.ui_url"
    for line in (root / "agent_lib/__main__.py").read_text().splitlines():
        if "UI" in line and "print(" in line:
            assert "ui_url(" in line, line
    for notebook in sorted((root / "notebooks").glob("**/*.ipynb")):
        for cell in json.loads(notebook.read_text())["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] == "code" and "Restate UI" in source:
                assert "ui_url(" in source, f"{notebook.name} prints a UI link without ui_url: {source!r}"


class ClosingAfterError:
    """A raw HTTP/1.1 server: the first request gets a 400 on a keep-alive connection, which it closes 0.3 s
    later without reading what came meanwhile; every later connection gets a 200."""

    def __init__(self) -> None:
        import socket

        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    @staticmethod
    def _read_request(conn: Any) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")), 0
        )
        while len(body) < length:
            body += conn.recv(65536)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                self._read_request(conn)
                if self.connections == 1:
                    body = b'{"code":400,"message":"the invoked service is not public"}'
                    conn.sendall(
                        b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                        b"content-length: %d\r\n\r\n%s" % (len(body), body)
                    )
                    time.sleep(0.3)  # the next request arrives meanwhile, on this connection, and is never read
                else:
                    conn.sendall(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 4\r\n\r\n"ok"')

    def close(self) -> None:
        self.listener.close()


def test_after_an_error_answer_the_ingress_does_not_reuse_the_connection() -> None:
    server = ClosingAfterError()
    try:
        ingress = Ingress(server.url, timeout=5)
        with pytest.raises(RestateError, match="not public"):
            ingress.call("ClaimApprovals", "request", {"awakeable_id": "x"}, key="k")
        assert ingress.call("ClaimApprovals", "request", {"awakeable_id": "x"}, key="k") == "ok"
        assert server.connections == 2
    finally:
        server.close()


def test_a_client_keeps_one_pool_per_event_loop_and_with_closes_it(
    ingress: Ingress, test_services: AgentProcess
) -> None:
    with Ingress(ingress.url) as client:

        async def twice() -> list[Any]:
            first = await client.acall("TestEcho", "say", "a")
            pool = client._ahttp
            second = await client.acall("TestEcho", "say", "b")
            assert pool is not None and client._ahttp is pool, "the second call reuses the first call's pool"
            return [first, second]

        assert asyncio.run(twice()) == ["A", "B"]
        assert asyncio.run(client.acall("TestEcho", "say", "c")) == "C", "a new event loop gets a pool of its own"
        assert client.call("TestEcho", "say", "d") == "D"
    assert client._http.is_closed and client._ahttp is None


def test_admin_names_a_service_and_its_deployment(admin: Admin, test_services: AgentProcess) -> None:
    service = admin.service("TestEcho")
    assert service["name"] == "TestEcho" and [h["name"] for h in service["handlers"]] == ["say"]
    deployment = admin.deployment(service["deployment_id"])
    assert "TestEcho" in str(deployment) and deployment["created_at"]
    with pytest.raises(RestateError) as err:
        admin.service("NoSuchService")
    assert err.value.status == 404


def test_an_error_answer_leaves_the_calls_in_flight_on_its_pool_alone(
    admin: Admin, ingress: Ingress, test_services: AgentProcess, key: str
) -> None:
    """An error answer retires the async pool; a call still waiting on it gets its answer, not a ReadError."""
    client = Ingress(ingress.url)

    async def scenario() -> Any:
        waiting = asyncio.create_task(client.acall("TestWaiter", "wait", "parcel", key=key))
        found = await asyncio.to_thread(
            wait_for, "the awakeable", lambda: admin.state("TestWaiter", key).get("awakeable")
        )
        with pytest.raises(RestateError):
            await client.acall("NoSuchService", "nothing")
        await asyncio.to_thread(ingress.resolve_awakeable, found.strip('"'), "approved")
        return await waiting

    assert asyncio.run(scenario()) == "parcel: approved"

"""agent_lib/viewer.py: the trace viewer as a kit process: not installed, port taken, recorded, found, stopped.

These tests run a stand-in for Phoenix (a tiny HTTP server installed as `<venv>/bin/phoenix`), so they need no
tracing extra; tests/test_browser_trace_viewer.py runs the real Phoenix (`make test-all`).
"""

from __future__ import annotations

import os
import socket
import stat
import sys
from pathlib import Path

import httpx
import pytest

from agent_lib import __main__ as cli
from agent_lib import viewer
from agent_lib._process import free_port, pid_path, recorded_processes
from agent_lib.tracing import TRACES_VIEWER_ENV, TraceCollector
from agent_lib.viewer import PhoenixViewer, ViewerError

STAND_IN = """#!{python}
import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

assert sys.argv[1:] == ["serve"], sys.argv


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/v1/projects":  # as Phoenix's REST API answers it
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{{"data": [{{"id": "UHJvamVjdDox", "name": "default"}}], "next_cursor": null}}')
            return
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(os.environ["PHOENIX_WORKING_DIR"].encode())

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.end_headers()


ThreadingHTTPServer((os.environ["PHOENIX_HOST"], int(os.environ["PHOENIX_PORT"])), Handler).serve_forever()
"""


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tracing venv whose `phoenix` is a stand-in that answers /healthz; TRACING_VENV points at it."""
    venv = tmp_path / "venv-tracing"
    (venv / "bin").mkdir(parents=True)
    binary = venv / "bin" / "phoenix"
    binary.write_text(STAND_IN.format(python=sys.executable))
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv(viewer.TRACING_VENV_ENV, str(venv))
    monkeypatch.delenv(TRACES_VIEWER_ENV, raising=False)
    monkeypatch.setenv("RESTATE_KIT_DATA", str(tmp_path / "kit"))  # `down` here stops only this test's processes
    return venv


def test_without_the_tracing_extra_the_viewer_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(viewer.TRACING_VENV_ENV, str(tmp_path / "nothing"))
    with pytest.raises(ViewerError, match=r"the trace viewer is not installed .* run `make tracing`"):
        PhoenixViewer(free_port()).start()
    assert not list(pid_path(viewer.KIND, 1).parent.glob(f"{viewer.KIND}-*.pid")), "nothing was recorded"


def test_the_cli_says_the_same_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(viewer.TRACING_VENV_ENV, str(tmp_path / "nothing"))
    assert cli.main(["viewer", "--port", str(free_port())]) == 1
    assert "run `make tracing`" in capsys.readouterr().err


def test_the_tracing_venv_is_the_repos_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(viewer.TRACING_VENV_ENV, raising=False)
    assert viewer.tracing_venv() == Path(viewer.__file__).resolve().parent.parent / ".venv-tracing"
    monkeypatch.setenv(viewer.TRACING_VENV_ENV, "elsewhere")
    assert viewer.tracing_venv().parts[-2:] == (Path(viewer.__file__).resolve().parent.parent.name, "elsewhere")


def test_a_taken_port_is_refused_with_what_to_do(stand_in: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ViewerError, match=rf"port {port} is already taken .*`make stop`.*VIEWER_PORT="):
            PhoenixViewer(port).start()


def test_the_viewer_runs_on_loopback_with_its_data_in_the_kit_dir(stand_in: Path, tmp_path: Path) -> None:
    port = free_port()
    with PhoenixViewer(port) as phoenix:
        assert phoenix.healthy() and phoenix.url == f"http://127.0.0.1:{port}"
        assert phoenix.endpoint == f"http://127.0.0.1:{port}/v1/traces"
        assert httpx.get(phoenix.url + "/healthz").text == str(phoenix.working_dir)
        assert phoenix.working_dir == Path(os.environ["RESTATE_KIT_DATA"]) / "phoenix" and phoenix.working_dir.is_dir()
        env = phoenix._environment()
        assert env["PHOENIX_HOST"] == "127.0.0.1" and env["PHOENIX_TELEMETRY_ENABLED"] == "false"
        assert int(env["PHOENIX_GRPC_PORT"]) != 4317, "not the gRPC port another collector is likely to hold"
    assert not phoenix.healthy() and not phoenix.pid_file.exists()


def test_a_running_viewer_is_found_forwarded_to_and_stopped_by_down(
    stand_in: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert viewer.running_endpoint() is None
    assert TraceCollector().forward_to is None
    assert "`make tracing` starts Phoenix" in viewer.describe(None)
    port = free_port()
    try:
        _found_forwarded_and_stopped(port, monkeypatch, capsys)
    finally:
        cli.down()


def _found_forwarded_and_stopped(
    port: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["viewer", "--port", str(port)]) == 0
    started = capsys.readouterr().out
    endpoint = f"http://127.0.0.1:{port}/v1/traces"
    assert "Started Phoenix" in started and f"http://127.0.0.1:{port}/" in started and endpoint in started
    assert viewer.running_viewer() is not None and viewer.running_endpoint() == endpoint

    collector = TraceCollector()
    assert collector.forward_to == endpoint, "a collector made without forward_to forwards to the running viewer"
    assert f"Phoenix has these traces too: open http://127.0.0.1:{port}/" in viewer.describe(collector.forward_to)
    page = f"http://127.0.0.1:{port}/projects/UHJvamVjdDox/traces/4bf92f3577b34da6a3ce929d0e0e4736"
    assert viewer.describe(collector.forward_to, "4bf92f3577b34da6a3ce929d0e0e4736").endswith(page), "the turn's page"
    assert viewer.trace_link(free_port(), "4bf92f3577b34da6a3ce929d0e0e4736") is None, "no Phoenix there: no link"
    assert TraceCollector(forward_to="").forward_to is None, "forward_to='' forwards nowhere"
    monkeypatch.setenv(TRACES_VIEWER_ENV, "http://127.0.0.1:4318/v1/traces")
    jaeger = TraceCollector().forward_to
    assert jaeger == "http://127.0.0.1:4318/v1/traces", "TRACES_VIEWER_URL wins"
    assert viewer.describe(jaeger) == f"The collector forwards every batch of spans to {jaeger} as well."

    assert cli.main(["viewer", "--port", str(port)]) == 0
    assert "Phoenix already runs" in capsys.readouterr().out
    assert [r.kind for r in recorded_processes()].count(viewer.KIND) == 1

    assert cli.down() == 0
    assert f"stopped {viewer.KIND}-{port}" in capsys.readouterr().out
    assert viewer.running_endpoint() is None and not pid_path(viewer.KIND, port).exists()

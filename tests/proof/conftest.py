"""Fixtures of the proof suite, and the `--reliability-report PATH` option that writes docs/RELIABILITY.md.

Tests append records through `evidence` before they assert; each record is tied to its test by node
id, and the test's outcome is added when it finishes. At the end of the session the report is
rendered from those records only (tests/proof/report.py).
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent_lib.server import RestateServer, free_port

from .report import render

_RECORDS = pytest.StashKey[list[dict[str, Any]]]()
_OUTCOMES = pytest.StashKey[dict[str, str]]()
_STARTED = pytest.StashKey[float]()
EXTERNAL = {
    "tests/test_cluster.py::test_killing_a_node_loses_no_invocation_and_it_rejoins": (
        "3-node cluster: one node (the one leading most partitions) SIGKILLed while 20 invocations are in flight; "
        "all 20 complete, and the node rejoins (tests/test_cluster.py, the cluster engineer's test)."
    ),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reliability-report",
        metavar="PATH",
        default=None,
        help="write the reliability report (Markdown) built from this run's proof records to PATH",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_RECORDS] = []
    config.stash[_OUTCOMES] = {}
    config.stash[_STARTED] = time.monotonic()
    config.addinivalue_line("markers", "proof_last: run after every other proof test")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    last = [i for i in items if i.get_closest_marker("proof_last")]
    items[:] = [i for i in items if i not in last] + last


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    outcomes = item.config.stash[_OUTCOMES]
    outcome = report.outcome
    if hasattr(report, "wasxfail"):
        outcome = "xfailed (known gap)" if report.skipped else "xpassed"
    if (call.when == "call" or outcome != "passed") and outcomes.get(item.nodeid) in (None, "passed"):
        outcomes[item.nodeid] = outcome
    return report


class Evidence:
    """Where proof tests append the records the report is built from."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config

    @property
    def records(self) -> list[dict[str, Any]]:
        """Every record appended so far in this session."""
        return self._config.stash[_RECORDS]

    def add(self, section: str, request: pytest.FixtureRequest, **fields: Any) -> dict[str, Any]:
        """Append one record for the requesting test; return it, so the test can fill it in as it goes."""
        nodeid = request.node.nodeid
        record = {"section": section, "case": nodeid.split("::", 1)[-1], "nodeid": nodeid, **fields}
        self.records.append(record)
        return record

    def outcomes(self) -> dict[str, str]:
        """Return the outcome of every proof test that finished so far, by node id."""
        return dict(self._config.stash[_OUTCOMES])


@pytest.fixture(scope="session")
def evidence(pytestconfig: pytest.Config) -> Evidence:
    return Evidence(pytestconfig)


@pytest.fixture(scope="module")
def proof_server(tmp_path_factory: pytest.TempPathFactory, _kit_data: Path) -> Iterator[RestateServer]:
    """A private Restate server for one proof module (restarted by the tests that restart it)."""
    base = tmp_path_factory.mktemp("proof-restate")
    with RestateServer(base, ingress_port=free_port(), admin_port=free_port(), node_port=free_port()) as srv:
        yield srv


def finished_records(config: pytest.Config) -> list[dict[str, Any]]:
    """Return the session's records, each with its test's outcome, plus the external tests the report names."""
    outcomes = config.stash[_OUTCOMES]
    records = [
        {**{k: v for k, v in r.items() if k != "nodeid"}, "outcome": outcomes.get(r["nodeid"], "not finished")}
        for r in config.stash[_RECORDS]
    ]
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    external: dict[str, str] = {}
    for reports in getattr(terminal, "stats", {}).values():
        for rep in reports:
            if isinstance(rep, pytest.TestReport) and rep.nodeid in EXTERNAL:
                if (rep.when == "call" or rep.outcome != "passed") and external.get(rep.nodeid) in (None, "passed"):
                    external[rep.nodeid] = rep.outcome
    for nodeid, detail in EXTERNAL.items():
        records.append(
            {"section": "external", "case": nodeid, "detail": detail, "outcome": external.get(nodeid, "not run")}
        )
    return records


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = session.config.getoption("--reliability-report", default=None)
    if not path:
        return
    args = sys.argv[1:]
    meta = {
        "command": "python -m pytest " + " ".join(shlex.quote(a) for a in args),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": round(time.monotonic() - session.config.stash[_STARTED], 1),
        "exit_status": int(exitstatus),
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(render(finished_records(session.config), meta))

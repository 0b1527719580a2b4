"""The ledger: effects on disk, shared by processes, once per idempotency key, surviving a SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agent_lib.ledger import Effect, Ledger, default_ledger


@pytest.fixture
def book(tmp_path: Path) -> Ledger:
    """A ledger of its own for each test."""
    return Ledger(tmp_path / "ledger.sqlite")


def test_record_and_read_back_in_order(book: Ledger) -> None:
    assert book.record("email", {"to": "a@example.com"}, invocation_id="inv_1")
    assert book.record("payment", {"amount": 80.0}, invocation_id="inv_1")
    assert book.record("email", {"to": "b@example.com"}, invocation_id="inv_2")
    effects = book.effects()
    assert [(e.kind, e.invocation_id) for e in effects] == [
        ("email", "inv_1"),
        ("payment", "inv_1"),
        ("email", "inv_2"),
    ]
    assert effects[1].detail == {"amount": 80.0} and effects[1].pid == os.getpid()
    assert [e.seq for e in effects] == sorted(e.seq for e in effects)
    assert book.count("email") == 2
    assert book.count(invocation_id="inv_1") == 2
    assert book.count("email", invocation_id="inv_2") == 1
    assert isinstance(effects[0], Effect)


def test_an_idempotency_key_keeps_an_effect_to_once(book: Ledger) -> None:
    assert book.record("payment", {"amount": 1}, idempotency_key="inv_1:book payment:call_1") is True
    assert book.record("payment", {"amount": 1}, idempotency_key="inv_1:book payment:call_1") is False
    assert book.record("payment", {"amount": 1}, idempotency_key="inv_1:book payment:call_2") is True
    assert book.record("payment", {"amount": 1}) is True
    assert book.record("payment", {"amount": 1}) is True, "without a key, every record is a new effect"
    assert book.count("payment") == 4


def test_a_kind_is_required(book: Ledger) -> None:
    with pytest.raises(ValueError, match="needs a kind"):
        book.record("")


def test_clear_forgets_everything(book: Ledger) -> None:
    book.record("email", idempotency_key="k")
    book.clear()
    assert book.effects() == []
    assert book.record("email", idempotency_key="k"), "a cleared key can be used again"


def test_default_ledger_follows_agent_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_LEDGER", str(tmp_path / "elsewhere.sqlite"))
    assert default_ledger().path == tmp_path / "elsewhere.sqlite"
    monkeypatch.delenv("AGENT_LEDGER")
    monkeypatch.setenv("RESTATE_KIT_DATA", str(tmp_path / "kit"))
    assert default_ledger().path == tmp_path / "kit" / "ledger.sqlite"


def test_threads_racing_on_one_key_record_it_once(book: Ledger) -> None:
    results: list[bool] = []
    lock = threading.Lock()

    def book_it() -> None:
        outcome = Ledger(book.path).record("payment", idempotency_key="same")
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=book_it) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == [False] * 7 + [True]
    assert book.count("payment") == 1


def test_an_effect_survives_a_sigkill_of_the_process_that_recorded_it(book: Ledger) -> None:
    code = (
        "import sys, time; from agent_lib.ledger import Ledger; "
        "Ledger(sys.argv[1]).record('email', {'to': 'x'}, idempotency_key='once'); print('recorded', flush=True); "
        "time.sleep(600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(book.path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "recorded"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert [(e.kind, e.pid) for e in book.effects()] == [("email", proc.pid)]
    assert book.record("email", idempotency_key="once") is False, "the key outlived the process"

"""agent_lib/_imports.py: ADK's optional a2a import, retried on every turn, fails at once instead (issue 21)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys

import pytest

import agent_lib
from bench.agents import plain_runner, plain_turn

MODULE = "google.adk.agents.remote_a2a_agent"
_SEEN: list[str] | None = None


def _hook(event: str, args: tuple[object, ...]) -> None:
    if _SEEN is not None and event == "open" and args and "remote_a2a_agent" in str(args[0]):
        _SEEN.append(str(args[0]))


sys.addaudithook(_hook)


def _imports_during_turns(turns: int = 3) -> int:
    global _SEEN
    runner = plain_runner()
    _SEEN = []
    try:
        for i in range(turns):
            assert asyncio.run(plain_turn(runner, f"u{i}", "What is the weather in Paris?"))
        return len(_SEEN)
    finally:
        _SEEN = None


pytestmark = pytest.mark.skipif(importlib.util.find_spec("a2a") is not None, reason="a2a is installed: ADK imports it")


def test_agent_lib_halts_the_import_that_cannot_succeed() -> None:
    assert agent_lib._imports.HALTED == [MODULE]
    assert sys.modules[MODULE] is None
    with pytest.raises(ImportError):
        importlib.import_module(MODULE)


def test_a_plain_turn_no_longer_tries_the_import_and_would_without_the_halt(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _imports_during_turns() == 0
    monkeypatch.delitem(sys.modules, MODULE)
    tries = _imports_during_turns()
    assert tries >= 3, f"ADK read the module {tries} times in 3 turns: is the retried import still there?"
    monkeypatch.setitem(sys.modules, MODULE, None)
    assert _imports_during_turns() == 0

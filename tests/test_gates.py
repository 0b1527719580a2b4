"""Gates: disarmed hook points cost nothing; an armed gate stops one hit until it is opened or killed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import agent_lib.gates as gates
from agent_lib.gates import Gate, GatePlugin, GateTimeout, gate_dir, hit, hit_sync


@pytest.fixture(autouse=True)
def _own_gate_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Give each test its own gate dir and a fresh env arming."""
    monkeypatch.setenv("AGENT_GATE_DIR", str(tmp_path / "gates"))
    monkeypatch.delenv("AGENT_GATES", raising=False)
    monkeypatch.setattr(gates, "_env_armed", None)
    return tmp_path / "gates"


def test_public_api() -> None:
    assert sorted(gates.__all__) == ["Gate", "GatePlugin", "GateTimeout", "gate_dir", "hit", "hit_sync"]


def test_gate_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert gate_dir() == tmp_path / "gates"
    monkeypatch.delenv("AGENT_GATE_DIR")
    monkeypatch.setenv("RESTATE_KIT_DATA", str(tmp_path / "kit"))
    assert gate_dir() == tmp_path / "kit" / "gates"


def test_a_disarmed_hook_point_passes_and_leaves_no_trace(_own_gate_dir: Path) -> None:
    for _ in range(100):
        hit_sync("orders.model.before")
    asyncio.run(hit("orders.model.before"))
    assert not _own_gate_dir.exists()
    Gate("other.point").arm()
    hit_sync("orders.model.before")
    assert sorted(p.name for p in _own_gate_dir.iterdir()) == ["other.point.armed"]


def test_bad_names_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="only letters, digits"):
        Gate("../escape")
    with pytest.raises(ValueError, match="0 or more"):
        Gate("fine").arm(skip=-1)


def test_an_armed_gate_stops_one_hit_until_opened() -> None:
    gate = Gate("step.inside").arm()
    assert gate.armed and gate.reached is None
    waiter = threading.Thread(target=hit_sync, args=("step.inside",), kwargs={"invocation_id": "inv_1"})
    waiter.start()
    report = gate.wait_reached(timeout=30)
    assert report["name"] == "step.inside" and report["pid"] == os.getpid() and report["invocation_id"] == "inv_1"
    assert not gate.armed, "a gate is spent by the hit it stops"
    time.sleep(0.2)
    assert waiter.is_alive(), "the hit waits while the gate is closed"
    gate.open()
    waiter.join(timeout=30)
    assert not waiter.is_alive()
    hit_sync("step.inside")  # spent: the next hit runs through


def test_async_hit_waits_without_blocking_the_loop() -> None:
    gate = Gate("async.point").arm()

    async def scenario() -> list[str]:
        order: list[str] = []

        async def agent() -> None:
            await hit("async.point")
            order.append("agent passed")

        async def controller() -> None:
            while gate.reached is None:
                await asyncio.sleep(0.01)
            order.append("controller saw it")
            gate.open()

        await asyncio.wait_for(asyncio.gather(agent(), controller()), timeout=30)
        return order

    assert asyncio.run(scenario()) == ["controller saw it", "agent passed"]


def test_skip_lets_the_first_hits_pass() -> None:
    gate = Gate("model.after").arm(skip=2)
    hit_sync("model.after")
    hit_sync("model.after")
    assert gate.armed and gate.reached is None
    waiter = threading.Thread(target=hit_sync, args=("model.after",))
    waiter.start()
    gate.wait_reached(timeout=30)
    gate.open()
    waiter.join(timeout=30)
    assert not waiter.is_alive()


def test_env_arming_stops_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_GATES", "a.point, b.point@1")
    hit_sync("b.point")  # skipped once
    waiter = threading.Thread(target=lambda: (hit_sync("a.point"), hit_sync("b.point")))
    waiter.start()
    for name in ("a.point", "b.point"):
        gate = Gate(name)
        gate.wait_reached(timeout=30)
        gate.disarm()
        gate.open()
    waiter.join(timeout=30)
    assert not waiter.is_alive()
    hit_sync("a.point")  # spent for this process


def test_wait_reached_times_out_with_advice() -> None:
    with pytest.raises(GateTimeout, match="within 0s: is the gate's hook point"):
        Gate("never.reached").arm().wait_reached(timeout=0.1)


def test_wait_reached_fails_fast_when_the_process_died() -> None:
    with pytest.raises(GateTimeout, match="died before it reached"):
        Gate("never.reached").arm().wait_reached(timeout=30, alive=lambda: False)


def test_a_process_killed_at_a_gate_leaves_it_spent(_own_gate_dir: Path) -> None:
    gate = Gate("crash.here").arm()
    code = "from agent_lib.gates import hit_sync; hit_sync('crash.here', step='charge'); print('passed')"
    proc = subprocess.Popen([sys.executable, "-c", code], env=os.environ.copy(), stdout=subprocess.PIPE, text=True)
    try:
        report = gate.wait_reached(timeout=60, alive=lambda: proc.poll() is None)
        assert report["pid"] == proc.pid and report["step"] == "charge"
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode < 0, "killed while it waited"
    rerun = subprocess.run(
        [sys.executable, "-c", code], env=os.environ.copy(), capture_output=True, text=True, timeout=60
    )
    assert rerun.stdout.strip() == "passed", rerun.stderr


def test_disarm_forgets_everything() -> None:
    gate = Gate("to.forget").arm()
    gate.open()
    gate.disarm()
    assert not gate.armed and gate.reached is None
    assert repr(gate) == "Gate('to.forget', idle)"


def test_gate_plugin_names_its_hook_points(monkeypatch: pytest.MonkeyPatch) -> None:
    hits: list[tuple[str, object]] = []

    async def record(name: str, **info: object) -> None:
        hits.append((name, info.get("invocation_id")))

    monkeypatch.setattr(gates, "hit", record)
    plugin = GatePlugin("demo", invocation_id=lambda: "inv_x")
    asyncio.run(plugin.before_model_callback(callback_context=None, llm_request=None))  # type: ignore[arg-type]
    asyncio.run(plugin.after_run_callback(invocation_context=None))  # type: ignore[arg-type]
    assert hits == [("demo.model.before", "inv_x"), ("demo.store_session.before", "inv_x")]


def test_gate_plugin_marks_model_answers_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from google.adk.events.event import Event
    from google.genai import types

    names: list[str] = []

    async def record(name: str, **info: object) -> None:
        names.append(name)

    monkeypatch.setattr(gates, "hit", record)
    plugin = GatePlugin("demo")
    answer = Event(author="agent", content=types.Content(role="model", parts=[types.Part.from_text(text="hi")]))
    tool_result = Event(
        author="agent",
        content=types.Content(role="user", parts=[types.Part.from_function_response(name="t", response={})]),
    )
    user = Event(author="user", content=types.Content(role="user", parts=[types.Part.from_text(text="hello")]))
    for event in (user, answer, tool_result):
        asyncio.run(plugin.on_event_callback(invocation_context=None, event=event))  # type: ignore[arg-type]
    assert names == ["demo.model.after"]

"""agent_lib/_process.py: one pid file per process, one "is it alive", one stop, one die-with-parent."""

from __future__ import annotations

import argparse
import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent_lib import _process, _watchdog
from agent_lib._paths import data_dir
from agent_lib._process import (
    ManagedProcess,
    ProcessError,
    end_process,
    pid_alive,
    pid_path,
    recorded_processes,
)
from agent_lib.workers import add_serve_arguments, serve_command

AGENT_LIB = Path(_process.__file__).parent
SLEEPER = [sys.executable, "-c", "import sys, time; print('up', flush=True); time.sleep(120)", "agent_lib"]
"""A process whose command line names agent_lib, as the kit's agent processes' do."""


def test_there_is_one_pid_alive_and_the_watchdog_holds_it() -> None:
    assert _process.pid_alive is _watchdog.pid_alive
    defs = [
        f"{path.name}:{node.name}"
        for path in AGENT_LIB.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and node.name in ("pid_alive", "_alive", "_pid_alive")
    ]
    assert defs == ["_watchdog.py:pid_alive"], defs


def test_the_watchdog_runs_isolated_with_nothing_but_the_standard_library() -> None:
    tree = ast.parse((AGENT_LIB / "_watchdog.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "os", "signal", "sys", "time", "pathlib"}, imported


def test_pid_alive_answers_for_the_living_the_dead_the_zombie_and_another_users(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(0) and not pid_alive(-1)
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not pid_alive(child.pid), "a zombie (dead, not yet reaped) is not alive"
    child.wait()
    assert not pid_alive(child.pid)

    def refused(pid: int, sig: int) -> None:
        raise PermissionError

    monkeypatch.setattr(os, "kill", refused)
    assert pid_alive(os.getpid()), "a process of another user exists: alive"


def test_one_pid_path_builder_and_down_reads_what_it_builds() -> None:
    path = pid_path("restate-server", 19070)
    assert path == data_dir() / "pids" / "restate-server-19070.pid"
    assert _process._parse_pid_path(path) == ("restate-server", 19070)
    assert _process._parse_pid_path(path.with_name("notes.pid")) is None
    with pytest.raises(ValueError, match="not a kind of process the kit records"):
        pid_path("postgres", 5432)


def test_a_managed_process_records_logs_stops_and_is_found_by_down(tmp_path: Path) -> None:
    log = tmp_path / "sleeper.log"
    with ManagedProcess("agent", 45001, SLEEPER, log_path=log, die_with_parent=False) as proc:
        assert proc.running and proc.pid_file.read_text() == str(proc.pid)
        deadline = time.monotonic() + 20
        while "up" not in proc.log_tail():  # exec'd: its command line now names agent_lib
            assert time.monotonic() < deadline, proc.log_tail()
            time.sleep(0.05)
        found = {r.pid_file: r for r in recorded_processes()}[proc.pid_file]
        assert (found.kind, found.port, found.live_pid()) == ("agent", 45001, proc.pid)
        pid = proc.pid
    assert not proc.running and not pid_alive(pid) and not proc.pid_file.exists()
    proc.start()
    pid = proc.pid
    proc.kill()
    assert pid is not None and not pid_alive(pid) and not proc.pid_file.exists()


def test_down_leaves_a_stranger_alone_and_stops_the_kits_own() -> None:
    stranger = subprocess.Popen(["sleep", "60"])
    ours = subprocess.Popen(SLEEPER, start_new_session=True, stdout=subprocess.PIPE, text=True)
    try:
        # until it has exec'd, the child's command line is still this worker's, which names no agent_lib
        assert ours.stdout is not None and ours.stdout.readline() == "up\n"
        pid_path("restate-server", 45002).write_text(str(stranger.pid))
        pid_path("agent", 45003).write_text(str(ours.pid))
        pid_path("agent", 45004).write_text("garbage")
        recorded = {r.port: r for r in recorded_processes() if r.port in (45002, 45003, 45004)}
        assert [r.kind for r in recorded_processes() if r.port in recorded] == ["agent", "agent", "restate-server"]
        assert recorded[45002].live_pid() is None and recorded[45004].recorded is None
        assert recorded[45002].stop() is None and stranger.poll() is None, "not the kit's: left alone"
        assert recorded[45003].stop() == ours.pid
        assert ours.wait(5) == -signal.SIGTERM
        assert not any(pid_path(k, p).exists() for k, p in (("restate-server", 45002), ("agent", 45003)))
    finally:
        for proc in (stranger, ours):
            proc.kill()
            proc.wait()
        pid_path("agent", 45004).unlink(missing_ok=True)


def test_end_process_kills_what_ignores_sigterm_after_its_grace() -> None:
    stubborn = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"]
    )
    time.sleep(0.5)
    started = time.monotonic()
    end_process(stubborn, None, grace=0.5)
    assert stubborn.returncode == -signal.SIGKILL and time.monotonic() - started < 5


def test_start_says_what_went_wrong_with_the_end_of_the_log(tmp_path: Path) -> None:
    class Failing(ManagedProcess):
        def _wait_ready(self, timeout: float) -> None:
            self._wait_until(lambda: False, timeout, "the failing process", "become ready")

    dies = Failing("agent", 45005, [sys.executable, "-c", "print('no config found'); raise SystemExit(4)"])
    with pytest.raises(ProcessError, match=r"exited with code 4 while starting(.|\n)*no config found"):
        dies.start(timeout=20)
    slow = Failing("agent", 45006, SLEEPER, log_path=tmp_path / "slow.log")
    with pytest.raises(ProcessError, match=r"the failing process did not become ready within 1s"):
        slow.start(timeout=1)
    assert not slow.running, "a process that is not ready in time is killed"


def test_the_serve_command_is_what_the_cli_parses() -> None:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    cmd = serve_command(["a.b:c", "d.e:f"], 9081, workers=3, parent_pid=77, worker_channel=5)
    assert cmd[1:4] == ["-m", "agent_lib", "serve"]
    args = parser.parse_args(cmd[4:])
    assert (args.targets, args.port, args.workers, args.parent_pid, args.worker_channel) == (
        ["a.b:c", "d.e:f"],
        9081,
        3,
        77,
        5,
    )
    plain = parser.parse_args(serve_command(["a.b:c"], 9082)[4:])
    assert (plain.workers, plain.parent_pid, plain.worker_channel) == (1, None, None)

"""The zygote (agent_lib/_zygote.py): a forked child is the command it was asked to be, and a real process to kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agent_lib import _zygote
from agent_lib._process import ManagedProcess, ProcessError, free_port
from tests.helpers import wait_for

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the zygote forks on Linux only")

PROBE = """
    import os, sys, time
    print("argv", sys.argv[1:], "x", os.environ.get("ZYGOTE_X"), "cwd", os.getcwd(), "path0", sys.path[0], flush=True)
    print("adk preloaded", "google.adk" in sys.modules, "agent_lib preloaded", "agent_lib.hosting" in sys.modules)
    import signal
    print("sid", os.getsid(0) == os.getpid(), "sigint", signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    sys.stdout.flush()
    if sys.argv[1] == "sleep":
        time.sleep(60)
    raise SystemExit(int(sys.argv[2]))
"""


@pytest.fixture
def probe(tmp_path: Path) -> Path:
    (tmp_path / "zygote_probe.py").write_text(textwrap.dedent(PROBE))
    return tmp_path


def _spawn(probe: Path, *args: str, module: str = "zygote_probe") -> tuple[_zygote.ZygoteProcess, Path]:
    """Ask this process's zygote for `python -m module args` in `probe`, its output to a log of its own."""
    log = probe / f"{module}-{time.monotonic_ns()}.log"
    env = {**os.environ, "ZYGOTE_X": "from the request"}
    with log.open("ab") as out:
        child = _zygote.spawn([sys.executable, "-m", module, *args], env, probe, out.fileno())
    return child, log


def _started(log: Path) -> None:
    """Wait until the probe has printed its last line before it sleeps."""
    wait_for(f"the probe to start (its log: {log})", lambda: "sid" in log.read_text(), 30, every=0.02)


def test_a_forked_child_is_the_command_it_was_asked_to_be(probe: Path) -> None:
    child, log = _spawn(probe, "exit", "3")
    assert child.wait(timeout=30) == 3, log.read_text()
    text = log.read_text()
    assert f"argv ['exit', '3'] x from the request cwd {probe} path0 {probe}" in text, text
    assert "adk preloaded True agent_lib preloaded False" in text, text  # the kit itself is imported fresh
    assert "sid True sigint True" in text, text  # a session of its own (start_new_session), Python's Ctrl-C


def test_sigkill_kills_it_like_any_process(probe: Path) -> None:
    child, log = _spawn(probe, "sleep", "0")
    _started(log)
    assert child.pid != os.getpid() and child.poll() is None
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=10) == -signal.SIGKILL
    with pytest.raises(ProcessLookupError):
        os.kill(child.pid, 0)  # reaped by the zygote: no zombie holds the pid


def test_an_uncaught_error_is_in_the_log_with_exit_code_1(probe: Path) -> None:
    (probe / "broken_probe.py").write_text("raise ValueError('a typo in the agent')\n")
    child, log = _spawn(probe, module="broken_probe")
    assert child.wait(timeout=30) == 1
    assert "ValueError: a typo in the agent" in log.read_text()


def test_a_managed_process_that_exits_while_starting_says_so_with_its_log(probe: Path) -> None:
    class Probe(ManagedProcess):
        forkable = True

        def _wait_ready(self, timeout: float) -> None:
            self._wait_until(lambda: False, timeout, "the probe", "become ready")

    proc = Probe("agent", free_port(), [sys.executable, "-m", "zygote_probe", "exit", "7"], cwd=probe)
    with pytest.raises(ProcessError, match=r"exited with code 7[\s\S]*argv \['exit', '7'\]"):
        proc.start(timeout=30)
    assert isinstance(proc._proc, _zygote.ZygoteProcess) or proc._proc is None


def test_a_zygote_killed_by_hand_is_started_again(probe: Path) -> None:
    first, _ = _spawn(probe, "exit", "0")
    assert first.wait(timeout=30) == 0
    zygote = _zygote._the_zygote()
    zygote.proc.kill()
    zygote.proc.wait()
    again, log = _spawn(probe, "exit", "5")
    assert again.wait(timeout=60) == 5, log.read_text()
    assert _zygote._the_zygote() is not zygote


def test_only_python_dash_m_of_this_interpreter_is_forked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _zygote.forkable([sys.executable, "-m", "agent_lib", "serve"]) == "agent_lib"
    assert _zygote.forkable(["/usr/bin/python3", "-m", "agent_lib"]) is None or sys.executable == "/usr/bin/python3"
    assert _zygote.forkable([sys.executable, "script.py"]) is None
    assert _zygote.forkable(["restate-server"]) is None
    monkeypatch.setenv(_zygote.SPAWN_ENV, "exec")
    assert _zygote.forkable([sys.executable, "-m", "agent_lib", "serve"]) is None
    with pytest.raises(_zygote.ZygoteError, match="python -m MODULE"):
        _zygote.spawn([sys.executable, "-m", "agent_lib"], {}, None, 1)


def test_with_spawn_exec_a_managed_process_is_an_ordinary_child(probe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_zygote.SPAWN_ENV, "exec")
    proc = ManagedProcess("agent", free_port(), [sys.executable, "-m", "zygote_probe", "sleep", "0"], cwd=probe)
    proc.forkable = True
    with proc:
        assert isinstance(proc._proc, subprocess.Popen)


def test_a_zygote_that_cannot_start_falls_back_to_exec_with_a_warning(
    probe: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = probe / "not_a_zygote.py"
    broken.write_text("raise SystemExit('this zygote is broken')\n")
    monkeypatch.setattr(_zygote, "__file__", str(broken))  # what _Zygote runs
    monkeypatch.setattr(_zygote, "_zygote", None)
    with pytest.raises(_zygote.ZygoteError, match=r"could not start[\s\S]*is gone \(exit code 1\): see .*zygote.log"):
        _spawn(probe, "exit", "0")
    proc = ManagedProcess("agent", free_port(), [sys.executable, "-m", "zygote_probe", "exit", "4"], cwd=probe)
    proc.forkable = True
    with pytest.warns(RuntimeWarning, match="starting the agent process by exec"):
        proc._spawn()
    assert isinstance(proc._proc, subprocess.Popen)
    assert proc._proc.wait(timeout=60) == 4
    monkeypatch.setattr(_zygote, "_zygote", None)  # the next test starts a working zygote


def test_an_edit_to_a_module_is_seen_by_the_next_process(probe: Path) -> None:
    """What a learner does: edit an agent, restart its process. The zygote never imported it, so no stale copy."""
    (probe / "edited_probe.py").write_text("raise SystemExit(11)\n")
    first, _ = _spawn(probe, module="edited_probe")
    assert first.wait(timeout=30) == 11
    (probe / "edited_probe.py").write_text("raise SystemExit(12)  # edited\n")  # another size: no stale .pyc
    second, _ = _spawn(probe, module="edited_probe")
    assert second.wait(timeout=30) == 12


def test_its_children_outlive_a_killed_zygote_and_can_still_be_killed(probe: Path) -> None:
    """A crash at another point: the zygote itself is SIGKILLed while an agent it forked runs."""
    child, log = _spawn(probe, "sleep", "0")
    _started(log)
    zygote = _zygote._the_zygote()
    zygote.proc.kill()
    zygote.proc.wait()
    assert child.poll() is None, "the agent runs on: it is a process of its own"
    os.kill(child.pid, 0)
    child.kill()
    assert child.wait(timeout=10) == -signal.SIGKILL

"""Run pytest (the lessons, some tests) in a mode: its own Restate server and agents, extra env, then stop them.

    .venv/bin/python scripts/lesson_mode.py --name replay --env RESTATE_ALWAYS_REPLAY=1 -- \\
        --nbmake notebooks/0*.ipynb tests/test_weather.py
    .venv/bin/python scripts/lesson_mode.py --name gemini --gemini-stub -- --nbmake notebooks/0*.ipynb

A mode never touches the lab's server (8080/9070) or its `.restate/`: it starts a server of its own on free
ports (or the ones given) with its data in `.restate-modes/<name>/` (wiped at the start, kept afterwards
for its logs), serves the finished agents on another port (both die with this script), and runs pytest
with RESTATE_INGRESS_URL, RESTATE_ADMIN_URL, AGENTS_PORT and RESTATE_KIT_DATA pointing at them, plus
every `--env`. With `--gemini-stub` it also runs a local Gemini stub (agent_lib.gemini_stub) and sets
GOOGLE_GEMINI_BASE_URL and a fake GOOGLE_API_KEY, so the agents and lessons take the real Gemini path.
The lab is started inside pytest, by tests/worker_lab.py: with pytest-xdist (`-- -n 3 ...`) each worker starts a
server and agents of its own, with the mode's env, in `.restate-modes/<name>/<worker>/`; without, the one pytest
process starts the mode's, on the ports given here.
Whatever happens (a failure, Ctrl-C, SIGTERM), it stops what it started. Its exit code is pytest's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent_lib._modes import always_replay_requested  # noqa: E402
from agent_lib.agents import gemini_stub  # noqa: E402
from agent_lib.lab import INHERITED_PATHS  # noqa: E402
from tests.worker_lab import MODE_LAB_ENV  # noqa: E402


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/lesson_mode.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Everything after `--` goes to pytest.",
    )
    parser.add_argument("--name", required=True, help="the mode's name: its data dir is .restate-modes/<name>/")
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="set for the server, agents and pytest"
    )
    parser.add_argument(
        "--gemini-stub",
        action="store_true",
        help="run a local Gemini stub and point the agents and the lessons at it (a fake key, the real Gemini path)",
    )
    for port in ("ingress", "admin", "node", "agents"):
        parser.add_argument(f"--{port}-port", type=int, default=0, help=f"the {port} port (default: a free one)")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help="pytest's arguments, after --")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", args.name):
        parser.error(f"--name {args.name!r}: use lower-case letters, digits and dashes, e.g. replay")
    for pair in args.env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", pair):
            parser.error(f"--env {pair!r} is not KEY=VALUE, e.g. RESTATE_ALWAYS_REPLAY=1")
    if args.pytest_args[:1] == ["--"]:
        args.pytest_args = args.pytest_args[1:]
    return args


def _stop_on_signals() -> None:
    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)


def _sweep(env: dict[str, str]) -> None:
    """Stop any process still recorded in the mode's own pid files (`python -m agent_lib down` on its data)."""
    subprocess.run([sys.executable, "-m", "agent_lib", "down"], cwd=REPO, env=env, stdout=subprocess.DEVNULL)


def run(argv: Sequence[str]) -> int:
    """Start the mode's server and agents, run pytest in the mode, stop them; return pytest's exit code."""
    args = _parse(argv)
    data = REPO / ".restate-modes" / args.name
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    extra = dict(pair.split("=", 1) for pair in args.env)
    stub = gemini_stub().start() if args.gemini_stub else None
    if stub is not None:
        os.environ.pop("GEMINI_API_KEY", None)
        extra = {**stub.env(), **extra}
    ports = {p: getattr(args, f"{p}_port") for p in ("ingress", "admin", "node", "agents")}
    env = {k: v for k, v in os.environ.items() if k not in INHERITED_PATHS} | extra | {"RESTATE_KIT_DATA": str(data)}
    env[MODE_LAB_ENV] = json.dumps(ports)
    os.environ.clear()
    os.environ.update(env)
    _stop_on_signals()
    tag = f"[mode {args.name}]"
    settings = " ".join(args.env) or "no extra env"
    if stub is not None:
        settings += f"; Gemini stub at {stub.url} (GOOGLE_GEMINI_BASE_URL, a fake GOOGLE_API_KEY)"
    print(f"{tag} {settings}")
    print(f"{tag} data and logs in {data.relative_to(REPO)}/", flush=True)
    started = time.monotonic()
    code = 1
    pytest: subprocess.Popen[bytes] | None = None
    given = ", ".join(f"{p} {n}" for p, n in ports.items() if n) or "free ports"
    print(
        f"{tag} pytest starts the mode's server and finished agents ({given}); under pytest-xdist, "
        "each worker runs a server and the finished agents of its own",
        flush=True,
    )
    try:
        if always_replay_requested():
            print(f"{tag} the server replays every invocation from its journal at every await", flush=True)
        command = [sys.executable, "-m", "pytest", "-p", "tests.worker_lab", *args.pytest_args]  # its lab, wherever
        pytest = subprocess.Popen(command, cwd=REPO, env=env)
        code = pytest.wait()
    except KeyboardInterrupt as stop:
        print(f"{tag} interrupted ({stop or 'Ctrl-C'}): stopping what it started", file=sys.stderr)
        code = 130
    finally:
        if pytest is not None and pytest.poll() is None:
            pytest.send_signal(signal.SIGINT)
            try:
                pytest.wait(30)
            except subprocess.TimeoutExpired:
                pytest.kill()
                pytest.wait()
        if stub is not None:
            stub.stop()
        _sweep(env)
        print(f"{tag} pytest exited {code} after {time.monotonic() - started:.0f}s; its server and agents are stopped")
    return code


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))

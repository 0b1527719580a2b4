"""`python -m agent_lib doctor | up | down | status | keys | progress | viewer`: start, check and stop the kit."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import server as _server
from ._modes import RETRY_POLICY_ENV
from ._paths import data_dir
from ._process import ProcessError, kit_process_alive, pid_alive, pid_path, recorded_processes
from .clients import Admin, ui_url
from .workers import WORKERS_ENV, add_serve_arguments, serve_forever, serve_worker, worker_count

if TYPE_CHECKING:
    from .lab import Lab

# Imported where they are used, not here: `up`, `down` and `status` need neither pandas (progress) nor the doctor's
# checks, and must answer in about a second when everything runs (issue 23).

AGENTS_PORT = int(os.environ.get("AGENTS_PORT", "9080"))
SEED_CALL = """curl {ingress}/WeatherAgent/session-1/run --json '"What is the weather in New York?"'"""


def doctor() -> int:
    """Print every check, and what to fix; exit 1 if anything needs fixing."""
    from .doctor import run_checks

    checks = run_checks()
    for c in checks:
        print(("  ok   " if c.ok else "  FIX  ") + f"[{c.area}] {c.detail}" + ("" if c.ok else f": {c.fix}"))
    bad = [c for c in checks if not c.ok]
    print()
    if bad:
        print(f"{len(bad)} thing(s) to fix, see FIX above.")
        return 1
    print(f"All good. The Restate UI is at {ui_url()} once the server runs.")
    return 0


def up(wait: float = 60.0, workers: int = 1) -> int:
    """Start (or reuse) the server, then serve and register the finished agents (from `workers` processes)."""
    from .lab import Lab, LabConfig

    agents_env = {RETRY_POLICY_ENV: os.environ.get(RETRY_POLICY_ENV, "service")}
    lab = Lab(LabConfig(shared=True, agents_port=AGENTS_PORT, workers=workers, agents_env=agents_env)).start(wait)
    verb = "Started" if lab.started_server else "Using"
    print(f"{verb} the Restate server: ingress {lab.ingress_url}, admin {lab.admin_url}")
    proc = lab.agents
    assert proc is not None
    if lab.reused_agents:
        known = "registered again" if lab.registered else "the server knows their deployment"
        print(f"The finished agents already run (pid {lab.reused_agents}) at {proc.url}; {known}.")
    else:
        how = f"pid {proc.pid}" if workers == 1 else f"supervisor pid {proc.pid}, workers {proc.wait_for_workers()}"
        print(f"Serving the finished agents at {proc.url} ({how}); log: {proc.log_path}")
    admin = proc.admin
    print(f"Registered: {', '.join(sorted(admin.services()))}")
    _say_signing(lab)
    _say_paused(admin)
    print(f"Restate UI: {ui_url(lab.admin_url)}")
    ingress = lab.ingress_url.replace("http://127.0.0.1:", "localhost:")
    print(f"Try the seed's call:\n  {SEED_CALL.format(ingress=ingress)}")
    return 0


def _say_signing(lab: Lab) -> None:
    """Say whether the server signs its requests and the agents refuse unsigned ones (asked of them, unsigned)."""
    import httpx

    proc = lab.agents
    assert proc is not None
    try:
        refused = httpx.get(f"{proc.url}/discover", timeout=5).status_code == 401
    except httpx.HTTPError:
        refused = False
    if lab.public_key and refused:
        print(f"Signed requests: the server signs with the kit's key ({lab.public_key}); the agents refuse any other")
        print(f"  request with 401. The private key is in {data_dir() / 'identity'}/ (`make keys`).")
    elif lab.public_key:
        print("Signed requests: the server signs, but the agents, started before it did, accept unsigned requests:")
        print("  `make stop && make lab` starts them again, verifying.")
    else:
        print(f"Signed requests: off. The kit did not start the server at {lab.admin_url} signing (Docker, or an older")
        print("  `make lab`), so the agents accept any request; `make stop && make lab` starts one that signs.")


def keys(rotate: bool = False) -> int:
    """Make the kit's key pair if it is missing (or a new one); print the public key and where the private key is."""
    from . import identity

    folder = data_dir() / "identity"
    existed = (folder / "restate-identity.pem").exists()
    try:
        pair = identity.key_pair(folder, rotate=rotate)
    except ValueError as err:
        print(f"error: {err} (`python -m agent_lib keys --rotate` replaces it)", file=sys.stderr)
        return 1
    made = "A new key pair" if rotate or not existed else "The kit's key pair"
    print(f"{made}: the server signs with it, the agents accept only what it signed.")
    print(f"  public key:  {pair.public_key}")
    print(f"  private key: {pair.private_key_file} (readable by you only; git ignores it; never printed)")
    if rotate and existed:
        print("A server started with the old key signs with it until it restarts: `make stop && make lab`.")
    return 0


def down() -> int:
    """Stop every server and agent process the kit started, by their recorded pids."""
    stopped = 0
    for recorded in recorded_processes():
        pid = recorded.stop()
        if pid is not None:
            print(f"stopped {recorded.pid_file.stem} (pid {pid})")
            stopped += 1
        elif recorded.recorded and pid_alive(recorded.recorded):
            print(
                f"{recorded.pid_file.stem}: pid {recorded.recorded} is now another program, left alone; "
                "its stale pid file removed"
            )
    if not stopped:
        print("nothing to stop")
    return 0


def status() -> int:
    """Say whether the server answers and what is registered."""
    admin = Admin()
    if not admin.health():
        print(f"no Restate server answers at {admin.url}: `make server` starts one")
        return 1
    print(f"Restate server at {admin.url}; services: {', '.join(sorted(admin.services())) or '(none)'}")
    agents = kit_process_alive(pid_path("agent", AGENTS_PORT))
    print(f"The finished agents: {f'running (pid {agents})' if agents else 'not running (`make up` starts them)'}")
    counts = admin.query("SELECT status, count(*) AS n FROM sys_invocation GROUP BY status ORDER BY status")
    print("Invocations: " + (", ".join(f"{r['n']} {r['status']}" for r in counts) or "none yet"))
    _say_waiting(admin)
    _say_paused(admin)
    return 0


def _say_waiting(admin: Admin) -> None:
    """Name the invocations that back off, with the reason they wait (their last failure)."""
    rows = admin.query(
        "SELECT id, target, last_failure FROM sys_invocation WHERE status = 'backing-off' "
        "ORDER BY modified_at DESC LIMIT 5"
    )
    if rows:
        print("Backing off (each waits for its next try; the reason is its last failure):")
        for row in rows:
            reason = str(row.get("last_failure") or "").splitlines()[0] if row.get("last_failure") else "?"
            print(f"  {row['target']}  {row['id']}: {reason}")


def gemini_stub(port: int) -> int:
    """Serve the Gemini stub, answering by every course agent's offline script, until stopped."""
    import threading

    from .agents import gemini_stub as all_scripts_stub

    stub = all_scripts_stub(port).start()
    pid_file = pid_path("gemini-stub", int(stub.url.rstrip("/").rsplit(":", 1)[1]))
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(str(os.getpid()))
    print(f"Gemini stub at {stub.url}: export GOOGLE_GEMINI_BASE_URL={stub.url} GOOGLE_API_KEY=<anything>", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stub.stop()
        pid_file.unlink(missing_ok=True)
    return 0


def viewer(port: int) -> int:
    """Start the trace viewer (Phoenix, from .venv-tracing/) unless the kit's runs there, and say where it is."""
    import time

    from .viewer import KIND, PhoenixViewer

    phoenix = PhoenixViewer(port, die_with_parent=False)
    running = kit_process_alive(pid_path(KIND, port))
    if running:
        print(f"Phoenix already runs (pid {running})")
    else:
        started = time.monotonic()
        phoenix.start()
        took = time.monotonic() - started
        print(f"Started Phoenix (pid {phoenix.pid}, ready in {took:.1f} s); log: {phoenix.log_path}")
    print(f"Phoenix, the trace viewer: {phoenix.ui_url}")
    print(f"Its OTLP endpoint: {phoenix.endpoint}: lesson 12's TraceCollector forwards its spans there while it runs")
    print(f"(from elsewhere: export TRACES_VIEWER_URL={phoenix.endpoint}). `make stop` stops it.")
    return 0


def progress(who: str | None = None, clear: bool = False) -> int:
    """Print the exercises passed, lesson by lesson; with `clear`, delete the record instead."""
    from . import progress as _progress

    if clear:
        print(f"deleted {_progress.clear()} recorded passes ({_progress.path()})")
        return 0
    who = who or _progress.learner()
    from .check import progress as passed

    table = passed(who)
    print(f"Exercises passed by {who} (recorded in {_progress.path()}):\n")
    widths = {c: max(len(c), *(len(str(v)) for v in table[c])) for c in table.columns}
    for row in [dict(zip(table.columns, table.columns, strict=True)), *table.to_dict("records")]:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in table.columns).rstrip())
    print(f"\n{table['passed'].sum()} of {table['exercises'].sum()} exercises passed.")
    return 0


def _say_paused(admin: Admin) -> None:
    """Name the paused invocations (out of retries, e.g. while the agents were down) and how to resume them."""
    total = admin.query("SELECT count(*) AS n FROM sys_invocation WHERE status = 'paused'")[0]["n"]
    if total:
        newest = "SELECT id, target FROM sys_invocation WHERE status = 'paused' ORDER BY modified_at DESC LIMIT 5"
        print(f"{total} paused (out of retries, e.g. while the agents were down); fix the cause, then resume them:")
        paused = admin.query(newest)
        for row in paused:
            print(f"  {row['target']}  npx restate invocations resume {row['id']}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI."""
    parser = argparse.ArgumentParser(prog="python -m agent_lib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="check the set-up and say what to fix")
    up_cmd = sub.add_parser("up", help="start the server (or use a running one) and register the finished agents")
    up_cmd.add_argument(
        "--workers",
        type=worker_count,
        default=os.environ.get(WORKERS_ENV, "1"),
        help=f"serve the agents from this many worker processes behind one deployment (default ${WORKERS_ENV}, else 1)",
    )
    sub.add_parser("server", help="start the server (or use a running one), without agents")
    sub.add_parser("down", help="stop the server and agent processes the kit started")
    keys_cmd = sub.add_parser("keys", help="make the key pair the server signs with (if missing); print its public key")
    keys_cmd.add_argument("--rotate", action="store_true", help="replace the key pair with a new one")
    sub.add_parser("status", help="is the server up, and what is registered")
    stub = sub.add_parser("gemini-stub", help="serve a local Gemini API (the course's stand-in, with faults) on a port")
    stub.add_argument("--port", type=int, default=0)
    prog = sub.add_parser("progress", help="the exercises you passed, lesson by lesson")
    prog.add_argument("--learner", help="whose progress (default: COURSE_LEARNER, else your login name)")
    prog.add_argument("--clear", action="store_true", help="delete the record of passed exercises")
    view = sub.add_parser("viewer", help="start the trace viewer, Arize Phoenix (`make tracing` installs it)")
    view.add_argument("--port", type=int, default=int(os.environ.get("VIEWER_PORT", "6006")))
    add_serve_arguments(sub.add_parser("serve", help="serve services (module:attribute) on a port until stopped"))
    args = parser.parse_args(argv)
    try:
        if args.command == "doctor":
            return doctor()
        if args.command == "up":
            return up(workers=args.workers)
        if args.command == "server":
            srv = _server.connect()
            print(f"Restate server: ingress {srv.ingress_url}, admin {srv.admin_url}")
            print(f"Restate UI: {ui_url(srv.admin_url)}")
            return 0
        if args.command == "down":
            return down()
        if args.command == "keys":
            return keys(args.rotate)
        if args.command == "gemini-stub":
            return gemini_stub(args.port)
        if args.command == "viewer":
            return viewer(args.port)
        if args.command == "progress":
            return progress(args.learner, args.clear)
        if args.command == "serve":
            if args.worker_channel is not None:
                serve_worker(args.targets, args.port, args.worker_channel)
            else:
                serve_forever(args.targets, args.port, args.parent_pid, args.workers)
            return 0
        return status()
    except (ProcessError, ConnectionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""Prove that one combined pass (Gemini stub + always-replay) catches what the two modes catch apart.

    .venv/bin/python scripts/prove_modes.py            # about 10 minutes on 2 cores

`make test` runs the lessons a second time in one combined mode (`make test-modes`: the Gemini stub AND a server
that replays at every await) instead of two passes (`test-gemini`, then `test-replay-lessons`). This script is the
evidence that nothing is lost. It plants one bug of each kind in this checkout, runs one lesson under each mode, and
puts the file back (in `finally`, and it refuses to start if the file has uncommitted changes):

- **Gemini kind:** `CountingGemini` forgets to count its calls. Only the real Gemini code path runs it, so the
  offline and replay passes cannot see it; the lesson's asserts on the model's calls must.
- **Replay kind:** the capstone remembers in process memory that it sent the customer's e-mail and skips the step
  the second time, a classic non-deterministic handler. A run without replays never executes the handler twice, so
  only a server that replays at every await shows the journal mismatch.

It prints a table: each bug against each mode (offline, gemini, replay, gemini+replay), "caught" or "missed", and
the clean checkout under the combined mode. It exits 1 unless each bug is caught by its own mode AND by the
combined one, and the clean checkout passes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


@dataclass(frozen=True)
class Mutation:
    """A bug planted in one file: replace `old` by `new`, then run `lesson`; `kind` names the mode that must see it."""

    name: str
    kind: str
    path: str
    old: str
    new: str
    lesson: str


MUTATIONS = (
    Mutation(
        name="Gemini path: CountingGemini does not count its calls",
        kind="gemini",
        path="agent_lib/models.py",
        old="        self._count_call(self.model)\n        invocation = _invocation_id()\n",
        new="        invocation = _invocation_id()\n",
        lesson="notebooks/01_weather_agent.ipynb",
    ),
    Mutation(
        name="Replay: the capstone skips its e-mail step when process memory says it was sent",
        kind="replay",
        path="agent_lib/agents/capstone.py",
        old='    await ctx.run_typed("Email customer", send)\n',
        new=(
            '    if key in globals().setdefault("_SENT", set()):\n'
            "        return\n"
            '    await ctx.run_typed("Email customer", send)\n'
            '    globals()["_SENT"].add(key)\n'
        ),
        lesson="notebooks/09_capstone.ipynb",
    ),
)

MODES: dict[str, list[str]] = {
    "offline": [],
    "gemini": ["--gemini-stub"],
    "replay": ["--env", "RESTATE_ALWAYS_REPLAY=1"],
    "gemini+replay": ["--gemini-stub", "--env", "RESTATE_ALWAYS_REPLAY=1"],
}


def run_lesson(mode: str, lesson: str, timeout: int) -> tuple[bool, float]:
    """Run one lesson under nbmake in `mode` (its own server, agents and stub); return (passed, seconds)."""
    name = "prove-" + mode.replace("+", "-")
    cmd = [PY, "scripts/lesson_mode.py", "--name", name, *MODES[mode], "--"]
    cmd += ["-n", "1", "-q", "-p", "no:cacheprovider", "--nbmake", f"--nbmake-timeout={timeout}", lesson]
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout + 120)
    return done.returncode == 0, time.monotonic() - started


def _clean(path: str) -> bool:
    status = subprocess.run(["git", "status", "--porcelain", "--", path], cwd=REPO, capture_output=True, text=True)
    return status.returncode == 0 and not status.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--timeout", type=int, default=300, help="give up on one lesson run after this many seconds")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}; load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    ok = True
    for lesson in sorted({m.lesson for m in MUTATIONS}):
        passed, seconds = run_lesson("gemini+replay", lesson, args.timeout)
        verdict = "passed" if passed else "FAILED"
        print(f"clean checkout, gemini+replay, {lesson}: {verdict} ({seconds:.0f} s)", flush=True)
        ok &= passed
    for mutation in MUTATIONS:
        target = REPO / mutation.path
        if not _clean(mutation.path):
            print(f"{mutation.path} has uncommitted changes: commit or stash them first", file=sys.stderr)
            return 2
        original = target.read_text()
        if original.count(mutation.old) != 1:
            print(f"{mutation.path} no longer holds the line to mutate once; update MUTATIONS", file=sys.stderr)
            return 2
        print(f"\n{mutation.name} ({mutation.path}, {mutation.lesson})", flush=True)
        try:
            target.write_text(original.replace(mutation.old, mutation.new))
            for mode in MODES:
                passed, seconds = run_lesson(mode, mutation.lesson, args.timeout)
                verdict = "missed" if passed else "caught"
                print(f"  {mode:>14}: {verdict} ({seconds:.0f} s)", flush=True)
                if mode in (mutation.kind, "gemini+replay"):
                    ok &= not passed
        finally:
            target.write_text(original)
    print(f"\nload after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("the combined mode catches both kinds" if ok else "NOT PROVEN: see the table above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""How the agents meet a failing Gemini: requests sent under a persistent 429, time to a clear error on a bad key.

    .venv/bin/python bench/provider_faults.py            # about 3 minutes

The weather agent runs in its own process on a private server, on the real Gemini code path (google-genai,
ADK's Gemini model, the plugin's journal), against the local Gemini stub (agent_lib.gemini_stub). Prints:

- requests the agent sends in the first 60 s of a 429 that never ends, with RetryInfo 20 s (Gemini's usual
  answer on the free tier) and without RetryInfo;
- seconds until the caller holds a clear error with an invalid key (5 calls);
- seconds until an answer when Gemini is overloaded (503) twice, then heals.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_lib.agents import weather  # noqa: E402
from agent_lib.clients import RestateError  # noqa: E402
from agent_lib.gemini_stub import GeminiStub  # noqa: E402
from agent_lib.serving import AgentProcess  # noqa: E402
from bench.common import private_server  # noqa: E402

QUESTION = "What is the weather in New York?"
WINDOW = 60.0


def _key() -> str:
    return f"bench-{uuid.uuid4().hex[:8]}"


def main() -> int:
    """Run the four scenarios and print their figures."""
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with GeminiStub({"weather_agent": weather.weather_script}) as stub, private_server() as bench:
        admin, ingress = bench.admin, bench.ingress
        with AgentProcess("agent_lib.agents.weather:weather_service", admin=admin, env=stub.env()) as proc:
            admin.register(proc.url)
            for label, delay in (("429 with RetryInfo 20 s", 20.0), ("429 without RetryInfo", 0.0)):
                stub.fault("quota", retry_delay=delay)
                since = time.time()
                sent = ingress.send("WeatherAgent", "run", QUESTION, key=_key())
                time.sleep(WINDOW)
                tries = [r for r in stub.requests(since) if r.path.endswith(":generateContent")]
                row = admin.invocation(sent.invocation_id) or {}
                print(f"{label}: {len(tries)} requests in the first {WINDOW:.0f} s; status {row.get('status')}")
                print(f"  last failure: {str(row.get('last_failure') or '').splitlines()[0]}")
                print(f"  seconds after the first: {[round(r.at - tries[0].at, 1) for r in tries]}")
                admin.kill(sent.invocation_id)
            stub.fault("bad_key")
            seconds = []
            for _ in range(5):
                started = time.monotonic()
                try:
                    ingress.call("WeatherAgent", "run", QUESTION, key=_key())
                except RestateError as err:
                    seconds.append(time.monotonic() - started)
                    message = f"{err.status} {err.message}"
            print(f"invalid key: a clear error after {statistics.median(seconds):.3f} s (median of 5): {message}")
            stub.fault("unavailable", times=2)
            started = time.monotonic()
            ingress.call("WeatherAgent", "run", QUESTION, key=_key())
            print(f"503 twice, then healed: answered after {time.monotonic() - started:.1f} s (backoff 2 s + 4 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

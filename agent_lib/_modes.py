"""The kit's modes, read from the environment: always-replay (`make test-replay`, lesson 07), the agents' retries."""

from __future__ import annotations

import os
from datetime import timedelta

RETRY_POLICY_ENV = "AGENT_RETRY_POLICY"
"""`service` gives the course agents the retry policy of a service (agents/_common.py); `agent_lib up` sets it."""

ALWAYS_REPLAY_ENV = "RESTATE_ALWAYS_REPLAY"
"""Set to 1 and every server the kit starts replays each invocation from its journal at every await."""


def always_replay_requested() -> bool:
    """Return True if `RESTATE_ALWAYS_REPLAY` asks for the always-replay mode (1, true, yes or on)."""
    return os.environ.get(ALWAYS_REPLAY_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def suspend_after(seconds: float) -> timedelta:
    """Return a handler's inactivity timeout: `seconds`, or 0 in the always-replay mode.

    A handler's own `inactivity_timeout` wins over the server's, so a handler that sets one would
    escape the mode: in it, the handler suspends at every await too.
    """
    return timedelta(0) if always_replay_requested() else timedelta(seconds=seconds)

"""The names of the crash matrix's hook points: what the tests import, with nothing patched (probes.py patches)."""

from __future__ import annotations

import re

__all__ = ["PHASES", "TARGETS", "hook_name"]

TARGETS = [
    "tests.agents.probes:weather_service",
    "tests.agents.probes:claims_service",
    "tests.agents.probes:approvals_service",
]
PHASES = ("before", "start", "done", "after")
_SLUG = re.compile(r"[^A-Za-z0-9_-]+")


def hook_name(key: str, step: str, phase: str) -> str:
    """Return the gate name of one hook point: `proof.<key>.<step>.<phase>` (e.g. step "call LLM")."""
    return f"proof.{_SLUG.sub('_', key)}.{_SLUG.sub('_', step)}.{phase}"

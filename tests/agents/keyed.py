"""The finished weather and claims agents, in a process whose environment holds an API key *after* import.

The model is chosen when an agent module is imported (`default_model`): these agents run on the offline
model, then `GOOGLE_API_KEY` and `GEMINI_API_KEY` are set from `PROOF_FAKE_KEY`. Anything the process
prints, logs, journals or stores from then on could leak the key; the security tests scan all of it.
"""

from __future__ import annotations

import os

from agent_lib.agents.claims import approvals_service, claims_service
from agent_lib.agents.weather import weather_service

__all__ = ["approvals_service", "claims_service", "weather_service"]

for _name in ("GOOGLE_API_KEY", "GEMINI_API_KEY"):
    os.environ[_name] = os.environ["PROOF_FAKE_KEY"]

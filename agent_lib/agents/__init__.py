"""The finished course agents: plain Restate services, with no hosting code.

`FINISHED` names them as "module:attribute"; `python -m agent_lib up` (and `make lab`)
serves and registers all of them in one process. Lessons never re-register these names
on the shared server: a lesson that builds or kills its own agent uses its own service name.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..gemini_stub import GeminiStub

__all__ = ["FINISHED", "gemini_stub"]

FINISHED = [
    "agent_lib.agents.weather:weather_service",
    "agent_lib.agents.claims:claims_service",
    "agent_lib.agents.claims:approvals_service",
    "agent_lib.agents.specialists:eligibility_service",
    "agent_lib.agents.specialists:fraud_service",
    "agent_lib.agents.specialists:policy_service",
    "agent_lib.agents.triage:triage_service",
    "agent_lib.agents.orchestration:orchestrator_service",
    "agent_lib.agents.orchestration:researcher_service",
    "agent_lib.agents.orchestration:editor_service",
    "agent_lib.agents.orchestration:publish_workflow",
    "agent_lib.agents.orchestration:coordinator_service",
    "agent_lib.agents.orchestration:order_desk",
    "agent_lib.agents.patterns:desk_service",
    "agent_lib.agents.patterns:agent_tool_service",
    "agent_lib.agents.patterns:research_service",
    "agent_lib.agents.patterns:writer_service",
    "agent_lib.agents.patterns:review_service",
    "agent_lib.agents.patterns:pipeline_service",
    "agent_lib.agents.patterns:loop_service",
    "agent_lib.agents.patterns:workflow_agents_service",
]


def gemini_stub(port: int = 0) -> GeminiStub:
    """A Gemini stub (not started) that answers by every course agent's offline script, found by the agent's name.

    Compaction's summarizer names no agent: the chat agent's script answers it (lesson 03).
    """
    from ..gemini_stub import GeminiStub

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    from .chat import chat_script

    return GeminiStub(port=port, summarizer=chat_script)

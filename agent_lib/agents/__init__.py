"""The finished course agents: plain Restate services, with no hosting code.

`FINISHED` names them as "module:attribute"; `python -m agent_lib up` (and `make lab`)
serves and registers all of them in one process. Lessons never re-register these names
on the shared server: a lesson that builds or kills its own agent uses its own service name.
"""

__all__ = ["FINISHED"]

FINISHED = [
    "agent_lib.agents.weather:weather_service",
    "agent_lib.agents.claims:claims_service",
    "agent_lib.agents.claims:approvals_service",
    "agent_lib.agents.specialists:eligibility_service",
    "agent_lib.agents.specialists:fraud_service",
    "agent_lib.agents.specialists:policy_service",
    "agent_lib.agents.triage:triage_service",
]

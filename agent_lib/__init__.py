"""agent_lib: the shared library of the Durable Agents course kit.

Three floors, no cycles. At the bottom: models, ledger, server, clients. In the middle:
agents, serving, widgets. On top: the notebooks, the bench and the CLI
(`python -m agent_lib doctor|up|down`). An agent never knows how it is hosted.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import _imports  # noqa: F401  (ADK's impossible optional imports fail fast: see _imports.py)

if TYPE_CHECKING:
    from .clients import Admin, Ingress, RestateError
    from .cluster import RestateCluster
    from .ledger import Ledger, default_ledger
    from .models import OfflineModel, default_model, model_description
    from .server import ExternalServer, RestateServer, ServerError, connect
    from .serving import AgentProcess, serve_in_kernel

_HOME = {
    "Admin": "clients",
    "Ingress": "clients",
    "RestateError": "clients",
    "RestateCluster": "cluster",
    "Ledger": "ledger",
    "default_ledger": "ledger",
    "OfflineModel": "models",
    "default_model": "models",
    "model_description": "models",
    "ExternalServer": "server",
    "RestateServer": "server",
    "ServerError": "server",
    "connect": "server",
    "AgentProcess": "serving",
    "serve_in_kernel": "serving",
}
"""Each public name and the module that defines it: imported on first use, so `python -m agent_lib up` and the
other small commands do not pay for importing google-adk (about 1.5 s) when they need none of it."""


def __getattr__(name: str) -> Any:
    """Import a public name (or a submodule) on first use."""
    if name in _HOME:
        value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


__all__ = [
    "Admin",
    "AgentProcess",
    "ExternalServer",
    "Ingress",
    "Ledger",
    "OfflineModel",
    "RestateCluster",
    "RestateError",
    "RestateServer",
    "ServerError",
    "connect",
    "default_ledger",
    "default_model",
    "model_description",
    "serve_in_kernel",
]

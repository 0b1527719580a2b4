"""agent_lib: the shared library of the Durable Agents course kit.

Three floors, no cycles. At the bottom: models, ledger, server, clients. In the middle:
agents, serving, widgets. On top: the notebooks, the bench and the CLI
(`python -m agent_lib doctor|up|down`). An agent never knows how it is hosted.
"""

from . import _imports  # noqa: F401  (ADK's impossible optional imports fail fast: see _imports.py)
from .clients import Admin, Ingress, RestateError
from .cluster import RestateCluster
from .ledger import Ledger, default_ledger
from .models import OfflineModel, default_model, model_description
from .server import ExternalServer, RestateServer, ServerError, connect
from .serving import AgentProcess, serve_in_kernel

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

"""The public surface of agent_lib, pinned: a change to it is a deliberate change to this test."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import agent_lib

PUBLIC = {
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
}


def test_top_level_exports_are_pinned() -> None:
    assert set(agent_lib.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(agent_lib, name) is not None


def _modules() -> list[str]:
    root = Path(agent_lib.__file__).parent
    return [
        f"agent_lib.{m.name}" for m in pkgutil.walk_packages([str(root)]) if not m.name.split(".")[-1].startswith("_")
    ]


def test_every_public_module_declares_all_and_it_exists() -> None:
    for name in _modules():
        module = importlib.import_module(name)
        if name.endswith("__main__"):
            continue
        assert hasattr(module, "__all__"), f"{name} has no __all__"
        for attr in module.__all__:
            assert hasattr(module, attr), f"{name}.__all__ names {attr}, which does not exist"


def test_agents_never_import_hosting_code() -> None:
    """An agent never knows how it is hosted: agents/* import no server or serving code."""
    root = Path(agent_lib.__file__).parent / "agents"
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for n in names:
                assert not any(part in ("server", "serving", "cluster") for part in n.split(".")), (
                    f"{path.name} imports {n}: agents must not know how they are hosted"
                )


def test_bottom_floor_does_not_import_upper_floors() -> None:
    root = Path(agent_lib.__file__).parent
    for module in ("models", "ledger", "server", "clients", "cluster", "gates"):
        source = (root / f"{module}.py").read_text()
        for upper in ("serving", "widgets", "agents", "__main__"):
            assert f"from .{upper}" not in source and f"agent_lib.{upper}" not in source, (
                f"{module}.py (bottom floor) imports {upper}"
            )

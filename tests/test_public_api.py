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


def _imports(path: Path) -> set[str]:
    """Return the agent_lib modules a source file imports, anywhere in it (lazy imports in functions too)."""
    package = "agent_lib." + ".".join(path.relative_to(Path(agent_lib.__file__).parent).with_suffix("").parts)
    package = package.rsplit(".", 1)[0] if path.name != "__init__.py" else package.removesuffix(".__init__")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("agent_lib"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("agent_lib"):
                if node.module or not node.level:  # `from . import sibling` imports the sibling, not the package
                    found.add(module)
                found.update(f"{module}.{a.name}" for a in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    root = Path(agent_lib.__file__).parent
    modules = {
        "agent_lib." + ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
        for p in root.rglob("*.py")
    }
    return {name: _imports(path) & set(modules) - {name} for name, path in modules.items()}


def test_import_graph_is_read_right() -> None:
    graph = _graph()
    assert "agent_lib.server" in graph["agent_lib.cluster"]
    assert "agent_lib.clients" in graph["agent_lib.check._core"]
    assert "agent_lib.ledger" in graph["agent_lib.check._core"]


def test_server_and_cluster_do_not_import_each_other() -> None:
    """cluster.py builds on server.py; server.py knows nothing of clusters (not even lazily)."""
    graph = _graph()
    assert "agent_lib.cluster" not in graph["agent_lib.server"], "server.py imports cluster.py: that is a cycle"


def test_no_module_of_the_bottom_and_middle_floors_is_in_an_import_cycle() -> None:
    graph = _graph()
    top = {"agent_lib", "agent_lib.__main__"}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph[start] - top:
            if nxt == goal or (nxt not in seen and (seen.add(nxt) or reaches(nxt, goal, seen))):
                return True
        return False

    cycles = sorted(m for m in graph if m not in top and reaches(m, m, set()))
    assert not cycles, f"these modules import themselves through others: {cycles}"

"""Make ADK's optional imports that cannot succeed fail at once, instead of compiling a module on every turn.

google-adk 2.13's workflow graph (`_workflow_graph_utils.build_node`, run on every turn) tries
`from ...agents.remote_a2a_agent import RemoteA2aAgent` and ignores the ImportError when the optional
`a2a` package is missing. Python does not cache a failed import, so each turn finds, reads and (where no
`.pyc` exists, e.g. under PYTHONDONTWRITEBYTECODE=1) compiles `remote_a2a_agent.py` and its imports again.
Measured with cProfile over 100 plain turns without bytecode: `compile` took 1.42 s of 2.9 s; per plain
turn 25.6 ms before, 7.4 ms after (issue 21; `bench/bytecode.py` measures it again).

A `None` in `sys.modules` is Python's documented way to say "this import fails": the next import raises
ImportError at once. It is set only when the dependency is really absent, so installing `a2a` restores ADK's
behaviour.
"""

from __future__ import annotations

import importlib.util
import sys

__all__ = ["HALTED", "halt_impossible_imports"]

OPTIONAL = {"google.adk.agents.remote_a2a_agent": "a2a"}
"""ADK module -> the optional package it needs; the module is halted when the package is not installed."""

HALTED: list[str] = []
"""The modules this process halted (for the bench and the tests)."""


def halt_impossible_imports() -> list[str]:
    """Mark ADK's optional modules whose dependency is missing as failed imports; return the ones marked."""
    for module, needs in OPTIONAL.items():
        if module in sys.modules or module in HALTED:
            continue
        if importlib.util.find_spec(needs) is None:
            sys.modules[module] = None  # type: ignore[assignment]  # None: "this import fails" (documented)
            HALTED.append(module)
    return list(HALTED)


halt_impossible_imports()

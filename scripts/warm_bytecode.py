"""Write the bytecode of what the course imports, once, at set-up: `scripts/python-deps install` runs it.

Python writes a module's `.pyc` when it first imports it, except where PYTHONDONTWRITEBYTECODE=1 is set (CI, many
Docker images, the machines this kit is built on). There, every process compiled google-adk and its friends from
source again: an agent process's start took 2.7x the CPU of a start with bytecode (bench/bytecode.py, issue 21).
Compiling every installed package at install (uv's --compile-bytecode) fixes it too, but adds some 140 MB to the
lessons' venv; importing what the lessons, the agent processes and the kernels import writes about 40 MB of it.

    python scripts/warm_bytecode.py          # the lessons' set
    python scripts/warm_bytecode.py --dev    # and the maintainers' tools (pytest, nbmake, ...)
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LAB = [
    "agent_lib",
    "agent_lib.agents",
    "agent_lib.agents.weather",
    "agent_lib.check",
    "agent_lib.doctor",
    "agent_lib.observe",
    "agent_lib.serving",
    "agent_lib.widgets",
    "agent_lib.__main__",
    "google.adk.agents",
    "google.adk.flows.llm_flows.base_llm_flow",
    "google.adk.models.google_llm",
    "google.adk.runners",
    "google.genai",
    "hypercorn.asyncio",
    "ipykernel.kernelapp",
    "ipywidgets",
    "matplotlib.pyplot",
    "pandas",
    "restate",
    "restate.ext.adk",
]
"""What the lessons, the agent processes and their kernels import (the rest follows from these)."""

DEV = ["pytest", "nbmake.pytest_plugin", "xdist.plugin", "nbclient", "mypy.api", "check_jsonschema", "yaml"]
"""What the maintainers' test runs import besides."""


def main() -> int:
    started = time.monotonic()
    missing = []
    for name in LAB + (DEV if "--dev" in sys.argv else []):
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - a module that does not import here only stays uncompiled
            missing.append(f"{name} ({type(err).__name__})")
    took = time.monotonic() - started
    print(f"warm_bytecode: wrote the bytecode of {len(sys.modules)} modules in {took:.1f} s", file=sys.stderr)
    if missing:
        print(f"warm_bytecode: could not import {', '.join(missing)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The code checks CI runs: ruff over everything (the notebooks' cells too), mypy (strict) over agent_lib."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "agent_lib", "tests", "scripts", "bench", "notebooks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "agent_lib", "tests", "scripts", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, "run `make format`:\n" + out.stdout + out.stderr


def test_mypy_strict_on_agent_lib() -> None:
    out = subprocess.run([sys.executable, "-m", "mypy", "agent_lib"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr

"""The code checks CI runs: ruff over everything (the notebooks' cells too), mypy (strict) over agent_lib."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUFF_PATHS = ("agent_lib", "tests", "scripts", "bench")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True)


def test_ruff() -> None:
    out = _run("ruff", "check", *RUFF_PATHS, "notebooks")
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format() -> None:
    out = _run("ruff", "format", "--check", *RUFF_PATHS)
    assert out.returncode == 0, "run `make format`:\n" + out.stdout + out.stderr


def test_mypy_strict_on_agent_lib() -> None:
    out = _run("mypy", "agent_lib")
    assert out.returncode == 0, out.stdout + out.stderr

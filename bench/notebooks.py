"""Figure 5: wall time of each notebook under nbmake, against the bench's private server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from agent_lib._paths import REPO_ROOT

__all__ = ["measure_notebooks"]


def measure_notebooks(env: dict[str, str], workdir: Path, timeout: int = 900) -> dict[str, Any]:
    """Run every notebook in notebooks/ under nbmake, one pytest each; return the wall time of each."""
    out: dict[str, Any] = {}
    for notebook in sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        junit = workdir / f"{notebook.stem}.xml"
        start = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "--nbmake",
                f"--nbmake-timeout={timeout}",
                "-q",
                "-p",
                "no:cacheprovider",
                f"--junitxml={junit}",
                str(notebook),
            ],
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=timeout + 120,
        )
        wall = time.perf_counter() - start
        executed = None
        if junit.exists():
            cases = ET.parse(junit).getroot().iter("testcase")
            executed = sum(float(c.get("time", 0)) for c in cases)
        out[notebook.name] = {
            "passed": done.returncode == 0,
            "wall_s": wall,
            "nbmake_s": executed,
            "tail": "" if done.returncode == 0 else done.stdout[-1500:],
        }
    out["total_wall_s"] = sum(v["wall_s"] for v in out.values() if isinstance(v, dict))
    return out

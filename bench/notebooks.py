"""Figure 5: the lesson notebooks under nbmake, as one suite (one pytest), against the bench's private server."""

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
    """Run every lesson notebook in one pytest under nbmake; return the suite's wall time and each notebook's."""
    notebooks = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    junit = workdir / "notebooks.xml"
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
            *map(str, notebooks),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout * len(notebooks) + 120,
    )
    wall = time.perf_counter() - start
    out: dict[str, Any] = {}
    cases = list(ET.parse(junit).getroot().iter("testcase")) if junit.exists() else []
    for notebook in notebooks:
        case = next((c for c in cases if notebook.name in (c.get("name", "") + c.get("classname", ""))), None)
        failed = case is None or any(case.find(tag) is not None for tag in ("failure", "error", "skipped"))
        out[notebook.name] = {"passed": not failed, "nbmake_s": None if case is None else float(case.get("time", 0))}
    out["total_wall_s"] = wall
    out["total_nbmake_s"] = sum(v["nbmake_s"] or 0 for v in out.values() if isinstance(v, dict))
    out["passed"] = done.returncode == 0
    out["tail"] = "" if done.returncode == 0 else done.stdout[-3000:]
    return out

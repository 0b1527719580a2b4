"""Every notebook: stripped, a kernelspec, the house opening and ending, a timeout for nbmake."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks_in_reading_order() -> None:
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    assert numbers[:2] == [0, 1]
    assert len(set(numbers)) == len(numbers), "two notebooks share a number"


def test_the_strip_check_passes_and_can_fail(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "strip_notebooks.py"
    check = [sys.executable, str(script), "--check", str(ROOT / "notebooks")]
    ok = subprocess.run(check, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout
    dirty = json.loads(NOTEBOOKS[0].read_text())
    dirty["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["leftover\n"]}]
    dirty["cells"][1]["execution_count"] = 3
    (tmp_path / "dirty.ipynb").write_text(json.dumps(dirty))
    bad = subprocess.run([sys.executable, str(script), "--check", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 1 and "not clean" in bad.stdout


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_house_style(path: Path) -> None:
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert nb["metadata"].get("execution", {}).get("timeout"), "give nbmake a per-notebook timeout"
    cells = nb["cells"]
    opening = "".join(cells[0]["source"])
    assert cells[0]["cell_type"] == "markdown"
    assert re.match(r"# \d\d · ", opening), "an H1 title 'NN · ...'"
    assert re.search(r"^> \S", opening, re.M), "a one-line > subtitle"
    assert "You will learn" in opening and len(re.findall(r"^- ", opening, re.M)) >= 3
    assert re.search(r"About \d+ minutes", opening), "a time box"
    headings = [line for c in cells if c["cell_type"] == "markdown" for line in "".join(c["source"]).splitlines()]
    h2 = [h for h in headings if h.startswith("## ")]
    assert "## Summary" in h2 and "## Exercises" in h2
    assert h2.index("## Summary") < h2.index("## Exercises") == len(h2) - 1, "end with Summary, then Exercises"
    code = [c for c in cells if c["cell_type"] == "code"]
    assert sum("assert" in "".join(c["source"]) for c in code) >= 3, "lessons assert what they show"
    for c in code:
        src = "".join(c["source"])
        assert "%pip" not in src and "getpass" not in src, "setup belongs to make lab"

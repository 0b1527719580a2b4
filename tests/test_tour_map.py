"""The README's map of Restate's ADK tour: twelve patterns, each pointing at a lesson section that exists and runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PATTERNS = [
    "chat",
    "human approval",
    "approval with a timeout",
    "multi-agent routing with `sub_agents`",
    "parallel tools",
    "sequential workflow",
    "parallel workflow",
    "orchestrator",
    "evaluator-optimizer",
    "a workflow as a sub-agent or tool",
    "remote agents",
    "error handling",
]
"""The tour's twelve patterns (google-adk/tour-of-agents/app in restatedev/ai-examples)."""

LINK = re.compile(r"\[(\d\d) · ([^\]]+)\]\((notebooks/[^)]+\.ipynb)\)")


def _map() -> str:
    readme = (REPO / "README.md").read_text()
    start = readme.index("### The tour's patterns, and where each is taught")
    return readme[start : readme.index("\n#", start + 4)]


def _headings(path: Path) -> set[str]:
    cells = json.loads(path.read_text())["cells"]
    lines = ["".join(c["source"]).splitlines() for c in cells if c["cell_type"] == "markdown"]
    return {line.lstrip("#").strip() for cell in lines for line in cell if re.match(r"#{2,3} ", line)}


def test_the_map_has_the_twelve_patterns_in_order() -> None:
    rows = [line for line in _map().splitlines() if line.startswith("| ") and not line.startswith("| the tour")]
    names = [re.sub(r"\s*\(`[^)]*\)\s*$", "", row.split("|")[1].strip()) for row in rows]
    assert names == PATTERNS


def test_every_row_teaches_in_a_lesson_section_that_exists_and_ci_runs() -> None:
    rows = [line for line in _map().splitlines() if line.startswith("| ") and not line.startswith("| the tour")]
    for row in rows:
        taught = row.split("|")[2]
        links = LINK.findall(taught)
        assert links, f"the row {row[:60]!r} points at no lesson section"
    for number, section, target in LINK.findall(_map()):
        path = REPO / target
        assert path.exists() and path.name.startswith(number + "_"), f"{target} is not lesson {number}"
        assert path.parent.name == "notebooks", "a lesson that nbmake runs, not a solution or a draft"
        assert section in _headings(path), f"{path.name} has no section {section!r}"


def test_the_check_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = _map().replace("Remote agents](", "Far away agents](")
    monkeypatch.setattr("tests.test_tour_map._map", lambda: broken)
    with pytest.raises(AssertionError, match="no section '3. Far away agents'"):
        test_every_row_teaches_in_a_lesson_section_that_exists_and_ci_runs()

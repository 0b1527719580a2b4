"""No lesson quotes a performance figure that docs/PERFORMANCE.md does not hold (issue 19: 08 once said "near 100
turns a second" where the bench measured 140). A lesson either prints what its own cells measure, or quotes the doc."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIGURE = re.compile(
    r"(\d[\d,]*(?:\.\d+)?)\s*(turns a second|turns per second|turns/s|ms (?:of CPU )?(?:per|a) turn)", re.I
)


def figures(text: str) -> list[tuple[str, str]]:
    """The performance figures a text quotes: (number, unit)."""
    return [(m.group(1).replace(",", ""), m.group(2).lower()) for m in FIGURE.finditer(text)]


def test_every_figure_a_lesson_quotes_is_in_performance_md() -> None:
    doc = {number for number, _ in figures((REPO / "docs" / "PERFORMANCE.md").read_text())}
    doc |= set(re.findall(r"\d[\d,]*(?:\.\d+)?", (REPO / "docs" / "PERFORMANCE.md").read_text()))
    quoted = []
    for path in sorted((REPO / "notebooks").rglob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "markdown":
                quoted += [(path.name, n, unit) for n, unit in figures("".join(cell["source"]))]
    stray = [q for q in quoted if q[1] not in doc]
    assert not stray, f"lessons quote figures docs/PERFORMANCE.md does not hold: {stray}"


def test_the_scan_finds_a_figure() -> None:
    assert figures("one process tops out near 100 turns a second, at 7.5 ms per turn") == [
        ("100", "turns a second"),
        ("7.5", "ms per turn"),
    ]

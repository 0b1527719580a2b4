"""Every lesson opens with a diagram of what it builds, and its diagrams quote only real journal steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.diagrams import (
    LESSONS,
    asserted_step_lists,
    cells,
    journaled_names,
    mermaid_blocks,
    notebook_diagrams,
    quoted_steps,
    source,
    unknown_steps,
)


def test_there_are_ten_lessons() -> None:
    assert len(LESSONS) >= 10, "lessons 00-09, and the ones after the capstone"
    assert [p.name[:2] for p in LESSONS] == [f"{n:02d}" for n in range(len(LESSONS))], "numbered with no gap"


@pytest.mark.parametrize("path", LESSONS, ids=[p.name for p in LESSONS])
def test_a_diagram_right_after_the_opening(path: Path) -> None:
    second = cells(path)[1]
    assert second["cell_type"] == "markdown", "cell 1 is the diagram of what the lesson builds"
    assert mermaid_blocks(source(second)), f"{path.name}: put a ```mermaid diagram in the cell after the opening"


@pytest.mark.parametrize("path", LESSONS, ids=[p.name for p in LESSONS])
def test_diagrams_quote_only_real_steps(path: Path) -> None:
    assert unknown_steps(path) == [], "a diagram quotes a step the lesson neither asserts nor agent_lib journals"


def test_lesson_01_draws_the_journal_it_asserts() -> None:
    lesson = LESSONS[1]
    (first, *_) = notebook_diagrams(lesson)
    drawn = quoted_steps(first)
    assert drawn == ["call LLM", "Get weather", "call LLM", "store session"]
    assert drawn in asserted_step_lists(lesson), "the diagram's steps, in order, are the ones the lesson asserts"


def test_the_step_names_are_read_from_the_code() -> None:
    names = journaled_names()
    assert {"Get weather", "Pay claim", "call LLM", "store session"} <= names
    assert "call GPT" not in names


def test_an_invented_step_is_caught(tmp_path: Path) -> None:
    nb = json.loads(LESSONS[1].read_text())
    nb["cells"][1]["source"] = '```mermaid\nflowchart LR\n    a["Run #quot;call GPT#quot;"] --> b\n```\n'
    doctored = tmp_path / LESSONS[1].name
    doctored.write_text(json.dumps(nb))
    assert unknown_steps(doctored) == ["call GPT"]
    assert unknown_steps(LESSONS[1], known=set()) == [], "01 asserts every step its diagram quotes"

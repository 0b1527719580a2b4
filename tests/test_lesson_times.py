"""Every lesson's advertised time holds its body, as scripts/lesson_times.py estimates it (optional sections apart)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from scripts.lesson_times import lessons, measure

LESSONS = lessons()


@pytest.mark.parametrize("lesson", LESSONS, ids=[lesson.path.stem for lesson in LESSONS])
def test_the_advertised_time_holds_the_lesson(lesson) -> None:  # noqa: ANN001 - a Lesson
    assert lesson.advertised, f"{lesson.path.name} says no 'About N minutes'"
    assert math.ceil(lesson.reading) <= lesson.advertised, (
        f"{lesson.path.name} takes about {math.ceil(lesson.reading)} minutes to read, more than the "
        f"{lesson.advertised} it advertises: say more minutes, or mark a section '(optional)' in its heading"
    )
    assert lesson.exercises, f"{lesson.path.name} has no exercises the estimate could find"


def test_an_optional_section_is_left_out_and_a_longer_lesson_is_caught(tmp_path: Path) -> None:
    source = LESSONS[1].path.read_text()
    longer = tmp_path / LESSONS[1].path.name
    padding = '{"cell_type": "markdown", "id": "pad", "metadata": {}, "source": ["## More\\n", "%s"]},' % (
        "word " * 150 * 60
    )
    longer.write_text(re.sub(r'"cells": \[', lambda _: '"cells": [' + padding, source, count=1))
    assert measure(longer).reading >= measure(LESSONS[1].path).reading + 59
    optional = tmp_path / "optional" / LESSONS[1].path.name
    optional.parent.mkdir()
    optional.write_text(longer.read_text().replace("## More", "## More (optional)"))
    assert measure(optional).reading == pytest.approx(measure(LESSONS[1].path).reading, abs=0.1)

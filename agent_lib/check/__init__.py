"""Exercise checks: one module per lesson, one awaitable check per exercise.

Each check calls your agent over the ingress and reads the journal, the state and the ledger through the admin
API, on the real server: it tests what your code does, never how it is written. Await it in a notebook::

    from agent_lib import check
    await check.lesson_04.exercise_2(ingress, admin, claim_id)

It returns a `CheckResult`: shown as a pass (green), or loudly as FAILED (red) with what is wrong and a hint.
`result.ok` is a bool, and `result.assert_ok()` raises AssertionError unless it passed (the solutions use it; add
it to stop Run All at a failed check). From a script or a test, with no agent served in that process,
`check.lesson_04.exercise_2.sync(...)` runs it without an event loop.

A check never raises and never hangs: whatever goes wrong becomes a failed result within the check's deadline,
and the invocations the check started and left unfinished are killed. Before the exercises, run
`check.lesson_NN.begin(admin)`: the checks then refuse ids, claims and deployments made before it (the lesson's own).
"""

import re

import pandas as pd

from .. import progress as _progress
from . import (
    lesson_01,
    lesson_02,
    lesson_03,
    lesson_04,
    lesson_05,
    lesson_06,
    lesson_07,
    lesson_08,
    lesson_09,
    lesson_10,
    lesson_11,
    lesson_12,
)
from ._core import Began, Check, CheckResult, Fail

__all__ = [
    "Began",
    "Check",
    "CheckResult",
    "Fail",
    "lesson_01",
    "lesson_02",
    "lesson_03",
    "lesson_04",
    "lesson_05",
    "lesson_06",
    "lesson_07",
    "lesson_08",
    "lesson_09",
    "lesson_10",
    "lesson_11",
    "lesson_12",
    "exercises",
    "progress",
]


def exercises() -> dict[int, set[int]]:
    """Return {lesson: the numbers of its exercise checks}."""
    found: dict[int, set[int]] = {}
    lessons = (lesson_01, lesson_02, lesson_03, lesson_04, lesson_05, lesson_06, lesson_07, lesson_08, lesson_09)
    for module in (*lessons, lesson_10, lesson_11, lesson_12):
        lesson = int(module.__name__.rsplit("_", 1)[1])
        names = [a for a in dir(module) if re.fullmatch(r"exercise_\d+", a)]
        found[lesson] = {int(a.split("_")[1]) for a in names if isinstance(getattr(module, a), Check)}
    return found


def progress(who: str | None = None) -> pd.DataFrame:
    """Return the exercises `who` (default: you, COURSE_LEARNER or your login) passed, lesson by lesson (lesson 00)."""
    return _progress.table(exercises(), who)

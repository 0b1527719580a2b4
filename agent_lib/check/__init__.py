"""Exercise checks: one module per lesson, one awaitable check per exercise.

Each check calls your agent over the ingress and reads the journal, the state and the ledger through the admin
API, on the real server: it tests what your code does, never how it is written. Await it in a notebook::

    from agent_lib import check
    await check.lesson_04.exercise_2(ingress, admin, claim_id)

It returns a `CheckResult`: shown as a pass, or as what is wrong and a hint. `result.ok` is a bool, and
`result.assert_ok()` raises AssertionError unless it passed (the solutions use it). From a script or a test, with
no agent served in that process, `check.lesson_04.exercise_2.sync(...)` runs it without an event loop.
"""

from . import lesson_01, lesson_02, lesson_03, lesson_04, lesson_05, lesson_06, lesson_07, lesson_08, lesson_09
from ._core import Check, CheckResult, Fail

__all__ = [
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
]

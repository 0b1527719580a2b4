"""Which exercises a learner has passed: every passing check is recorded in the kit's data dir.

A check that passes (`await check.lesson_04.exercise_2(...)`) appends one line to `<data dir>/progress.jsonl`
(`.restate/progress.jsonl` unless `RESTATE_KIT_DATA` says otherwise): the learner, the lesson, the exercise and
the time. A check that fails records nothing. `table()` (through `agent_lib.check.progress()`) lays the passes
out lesson by lesson, as lesson 00 and `python -m agent_lib progress` show them. The learner is
`COURSE_LEARNER`, or else the login name.

`make reset` keeps this file (it wipes the server's data, not your record); `make reset-progress` deletes it.
"""

from __future__ import annotations

import getpass
import json
import os
import time
import warnings
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, TypeVar

import pandas as pd

from ._paths import REPO_ROOT, data_dir

__all__ = ["Pass", "clear", "learner", "path", "read", "record", "record_result", "table"]

FILE_NAME = "progress.jsonl"


@dataclass(frozen=True)
class Pass:
    """One passed exercise: who, which lesson and exercise, and when (seconds since the epoch)."""

    learner: str
    lesson: int
    exercise: int
    at: float


class _Result(Protocol):
    @property
    def ok(self) -> bool: ...

    @property
    def lesson(self) -> int: ...

    @property
    def exercise(self) -> int: ...


R = TypeVar("R", bound=_Result)


def learner() -> str:
    """Return who is learning: `COURSE_LEARNER`, else the login name."""
    name = os.environ.get("COURSE_LEARNER", "").strip()
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "learner"


def path() -> Path:
    """Return the progress file: `progress.jsonl` in the kit's data dir."""
    return data_dir() / FILE_NAME


def record(lesson: int, exercise: int, *, who: str | None = None, at: float | None = None) -> Pass:
    """Record that `who` (default: the learner) passed `exercise` of `lesson`; return the record."""
    done = Pass(who or learner(), int(lesson), int(exercise), time.time() if at is None else at)
    with path().open("a", encoding="utf-8") as f:
        f.write(json.dumps(asdict(done)) + "\n")
    return done


def record_result(result: R) -> R:
    """Record a check's result if it passed a lesson's exercise; return it unchanged. Never fails the check itself."""
    if result.ok and result.lesson > 0 and result.exercise > 0:
        try:
            record(result.lesson, result.exercise)
        except OSError as err:
            warnings.warn(f"could not record your progress in {path()}: {err}", stacklevel=2)
    return result


def read(who: str | None = None) -> list[Pass]:
    """Return the recorded passes, oldest first (only `who`'s, if given); lines that do not parse are skipped."""
    try:
        lines = path().read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    passes = []
    for line in lines:
        try:
            row = json.loads(line)
            done = Pass(str(row["learner"]), int(row["lesson"]), int(row["exercise"]), float(row["at"]))
        except (ValueError, KeyError, TypeError):
            continue
        if who is None or done.learner == who:
            passes.append(done)
    return passes


def clear() -> int:
    """Delete the progress file; return how many passes it held."""
    held = len(read())
    path().unlink(missing_ok=True)
    return held


def _notebooks() -> dict[int, str]:
    return {int(p.name[:2]): p.stem for p in sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))}


def table(exercises: Mapping[int, Collection[int]], who: str | None = None) -> pd.DataFrame:
    """Return one row per lesson of `exercises` ({lesson: numbers}): how many, which `who` (default: you) passed, when.

    `agent_lib.check.progress()` passes the course's exercises (this module knows no checks: checks record here).
    """
    passes = read(learner() if who is None else who)
    names = _notebooks()
    rows = []
    for lesson, numbers in sorted(exercises.items()):
        mine = [p for p in passes if p.lesson == lesson and p.exercise in numbers]
        done = sorted({p.exercise for p in mine})
        last = max((p.at for p in mine), default=None)
        rows.append(
            {
                "lesson": f"{lesson:02d}",
                "notebook": names.get(lesson, ""),
                "exercises": len(numbers),
                "passed": len(done),
                "which": ", ".join(map(str, done)),
                "last pass": datetime.fromtimestamp(last).strftime("%Y-%m-%d %H:%M") if last else "",
            }
        )
    return pd.DataFrame(rows, columns=["lesson", "notebook", "exercises", "passed", "which", "last pass"])

"""Progress: a check that passes is recorded (learner, lesson, exercise, time); one that fails records nothing."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from agent_lib import check, progress
from agent_lib.__main__ import main
from agent_lib.check._core import CheckResult, Fail, exercise
from agent_lib.clients import RestateError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def own_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RESTATE_KIT_DATA", str(tmp_path))
    monkeypatch.setenv("COURSE_LEARNER", "ada")
    return tmp_path


def passing() -> str:
    return "all good"


def failing() -> str:
    raise Fail("not yet", "try again")


def refused() -> str:
    raise RestateError(404, "service 'X' not found", method="POST", url="http://127.0.0.1/X/k/run")


def stuck() -> str:
    raise TimeoutError("waited 60s for the agent")


def test_a_passing_check_is_recorded(own_data_dir: Path) -> None:
    before = time.time()
    result = exercise(4, 2)(passing).sync()
    assert result.ok
    (done,) = progress.read()
    assert (done.learner, done.lesson, done.exercise) == ("ada", 4, 2)
    assert before <= done.at <= time.time()
    assert progress.path() == own_data_dir / "progress.jsonl"
    assert json.loads((own_data_dir / "progress.jsonl").read_text())["exercise"] == 2


@pytest.mark.parametrize("body", [failing, refused, stuck], ids=["fail", "restate-error", "timeout"])
def test_a_check_that_does_not_pass_records_nothing(own_data_dir: Path, body: object) -> None:
    result = exercise(4, 2)(body).sync()  # type: ignore[arg-type]
    assert not result.ok
    assert progress.read() == []
    assert not (own_data_dir / "progress.jsonl").exists()


def test_a_pass_is_recorded_by_the_lesson_and_exercise_it_carries_not_by_its_title() -> None:
    progress.record_result(CheckResult("Lesson 03 · exercise 2", True, "a title alone", lesson=0, exercise=0))
    progress.record_result(CheckResult("whatever it is called", True, "judged", lesson=7, exercise=3))
    assert [(p.lesson, p.exercise) for p in progress.read()] == [(7, 3)]


def test_an_awaited_check_records_too() -> None:
    assert asyncio.run(exercise(1, 3)(passing)()).ok
    assert [(p.lesson, p.exercise) for p in progress.read()] == [(1, 3)]


def test_only_passes_count_in_the_table() -> None:
    for body, lesson, number in [(passing, 1, 1), (failing, 1, 2), (passing, 1, 1), (passing, 4, 3), (stuck, 9, 1)]:
        exercise(lesson, number)(body).sync()
    progress.record_result(CheckResult("Lesson 02 · exercise 1", False, "no"))
    table = check.progress().set_index("lesson")
    assert len(table) == len(check.exercises()), "one row per lesson with exercises"
    assert (table.loc[[f"{n:02d}" for n in range(1, 10)], "exercises"] >= 3).all(), "every lesson has exercises"
    assert table.loc["01", "passed"] == 1 and table.loc["01", "which"] == "1"
    assert table.loc["04", "passed"] == 1 and table.loc["04", "which"] == "3" and table.loc["04", "last pass"]
    assert table["passed"].sum() == 2, "two exercises passed (one of them twice); failures count for nothing"
    assert table.loc["01", "notebook"] == "01_weather_agent"


def test_the_table_is_per_learner_and_skips_what_it_cannot_read(own_data_dir: Path) -> None:
    progress.record(2, 1)
    progress.record(2, 2, who="sam")
    progress.record(2, 7)  # no such exercise: not counted
    with (own_data_dir / "progress.jsonl").open("a") as f:
        f.write("not json\n" + json.dumps({"learner": "ada", "lesson": 3}) + "\n")
    assert check.progress().set_index("lesson").loc["02", "which"] == "1"
    assert check.progress("sam").set_index("lesson").loc["02", "which"] == "2"
    assert len(progress.read()) == 3 and len(progress.read("ada")) == 2


def test_the_cli_prints_the_table_and_clears_it(capsys: pytest.CaptureFixture[str]) -> None:
    exercise(5, 2)(passing).sync()
    assert main(["progress"]) == 0
    out = capsys.readouterr().out
    total = sum(len(numbers) for numbers in check.exercises().values())
    assert "Exercises passed by ada" in out and f"1 of {total} exercises passed." in out
    line = next(row for row in out.splitlines() if row.startswith("05 "))
    assert line.split()[:5] == ["05", "05_multi_agent", "3", "1", "2"]
    assert main(["progress", "--clear"]) == 0
    assert "deleted 1 recorded passes" in capsys.readouterr().out
    assert progress.read() == []


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_clean_wipes_the_server_data_but_keeps_progress(tmp_path: Path) -> None:
    kit = tmp_path / "kit"
    (kit / ".restate" / "restate-data" / "db").mkdir(parents=True)
    (kit / ".restate" / "ledger.sqlite").write_text("x")
    (kit / ".restate" / "progress.jsonl").write_text('{"learner": "ada", "lesson": 1, "exercise": 1, "at": 1}\n')
    shutil.copy(ROOT / "Makefile", kit / "Makefile")  # no .venv there: `stop` has nothing to stop
    done = subprocess.run(["make", "-s", "reset"], cwd=kit, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (kit / ".restate").iterdir()) == ["progress.jsonl"]
    assert "progress is kept" in done.stdout and "make reset-progress" in done.stdout

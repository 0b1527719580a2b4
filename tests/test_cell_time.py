"""tests/cell_time.py: a lesson cell over its budget fails the lesson under nbmake; the budget stretches with load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cell_time import budget, cell_seconds

REPO = Path(__file__).resolve().parent.parent


def test_the_budget_is_30_s_on_a_quiet_machine_and_stretches_with_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CELL_BUDGET_SECONDS", raising=False)
    assert budget(load=0.5, cores=2) == 30
    assert budget(load=2.0, cores=2) == 30
    assert budget(load=6.0, cores=2) == 90
    monkeypatch.setenv("CELL_BUDGET_SECONDS", "10")
    assert budget(load=1.0, cores=2) == 10


def test_cell_seconds_reads_nbclients_timings() -> None:
    cell = {
        "cell_type": "code",
        "source": ["\n", "time.sleep(2)\n"],
        "metadata": {
            "execution": {
                "iopub.execute_input": "2026-12-02T10:00:00.000000Z",
                "shell.execute_reply": "2026-12-02T10:00:02.500000Z",
            }
        },
    }
    assert cell_seconds({"cells": [{"cell_type": "markdown", "source": "x"}, cell]}) == [(1, 2.5, "time.sleep(2)")]


def _notebook(path: Path, seconds: float) -> Path:
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "id": "a",
                "metadata": {},
                "execution_count": None,
                "outputs": [],
                "source": ["import time\n"],
            },
            {
                "cell_type": "code",
                "id": "b",
                "metadata": {},
                "execution_count": None,
                "outputs": [],
                "source": [f"time.sleep({seconds})\n"],
            },
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb))
    return path


def _nbmake(paths: list[Path], budget_seconds: float, data: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CELL_BUDGET_SECONDS": str(budget_seconds), "RESTATE_KIT_DATA": str(data)}
    env.pop("PYTEST_XDIST_WORKER", None)
    cmd = [sys.executable, "-m", "pytest", "-c", str(REPO / "pyproject.toml"), "--rootdir", str(REPO)]
    cmd += ["-p", "no:cacheprovider", "-p", "no:xdist", "--nbmake", "-q", "-rA", *map(str, paths)]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)


@pytest.mark.full  # a test of the test machinery: two lesson runs in kernels of their own (make test-all)
def test_a_lesson_cell_over_the_budget_fails_the_lesson_and_a_fast_one_passes(tmp_path: Path) -> None:
    # One slow lesson, run twice: under a budget its cell exceeds at any load, and under one it fits.
    # A notebook that is not a lesson (no NN_ prefix) has no budget.
    lesson = _notebook(tmp_path / "01_slow.ipynb", 1.0)
    other = _notebook(tmp_path / "scratch.ipynb", 1.0)
    over = _nbmake([lesson, other], 0.01, tmp_path)
    assert over.returncode == 1, over.stdout[-2000:]
    assert "FAILED" in over.stdout and "01_slow.ipynb" in over.stdout and "PASSED" in over.stdout
    assert "scratch.ipynb" in over.stdout.split("PASSED", 1)[1].splitlines()[0]
    assert "over the budget" in over.stdout and "cell 1 took" in over.stdout and "time.sleep(1.0)" in over.stdout
    fits = _nbmake([lesson], 120, tmp_path)
    assert fits.returncode == 0, fits.stdout[-2000:]
    lines = [json.loads(line) for line in (tmp_path / "cell-times.jsonl").read_text().splitlines()]
    assert [line["notebook"] for line in lines] == ["01_slow.ipynb"] * 2, "lessons only, each run recorded"
    assert lines[-1]["slowest"][0]["cell"] == 1 and lines[-1]["slowest"][0]["seconds"] >= 1.0

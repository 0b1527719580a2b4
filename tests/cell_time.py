"""A budget for every lesson cell: nbmake fails a lesson whose cell runs longer than 30 s (issue 21).

Loaded for every pytest run (`-p tests.cell_time` in pyproject.toml). It wraps nbmake's `NotebookRun.execute`
and reads the timings nbclient records in each executed cell (`record_timing`, which nbmake turns on):
`iopub.execute_input` to `shell.execute_reply`. A lesson (`notebooks/NN_*.ipynb`, not a solution) with a cell
over the budget fails with the cell's number, its first line and its time, as a failing cell would.

A loaded machine stretches every cell, so the budget stretches with the load: with a one-minute load average
L on C cores, each runnable process gets about C/L of a core, and the budget is 30 s x max(1, L/C), read when
the lesson ends. On a quiet machine that is 30 s. `make test` on 2 cores with 4 workers runs at a load of
about 4 to 6, so a cell gets 60 to 90 s there: a cell that needs more than 30 s of a quiet machine's time still
fails most runs, and a cell well inside the budget never does. CELL_BUDGET_SECONDS sets the base (0: off).

Every lesson's slowest cells are also written to `$RESTATE_KIT_DATA/cell-times.jsonl` (one line per lesson),
which `bench/suite_time.py` and CI's logs keep.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

BUDGET = 30.0
"""Seconds a lesson cell may take on a quiet machine."""

LESSON = re.compile(r"^\d\d_.*\.ipynb$")


def budget(load: float | None = None, cores: int | None = None) -> float:
    """Return the budget for one cell now: BUDGET (or CELL_BUDGET_SECONDS), stretched by the machine's load."""
    base = float(os.environ.get("CELL_BUDGET_SECONDS", BUDGET))
    load = os.getloadavg()[0] if load is None else load
    cores = (os.cpu_count() or 1) if cores is None else cores
    return base * max(1.0, load / cores)


def _stamp(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def cell_seconds(nb: Any) -> list[tuple[int, float, str]]:
    """Return (cell index, seconds, first line) for every executed code cell of a notebook nbclient ran."""
    times = []
    for index, cell in enumerate(nb["cells"]):
        timing = cell.get("metadata", {}).get("execution", {})
        start, end = _stamp(timing.get("iopub.execute_input")), _stamp(timing.get("shell.execute_reply"))
        if cell.get("cell_type") == "code" and start and end:
            source = "".join(cell.get("source", ""))
            first = next((line for line in source.splitlines() if line.strip()), "")
            times.append((index, (end - start).total_seconds(), first[:80]))
    return times


_RECORD_IN: list[str] = []
"""Where this run writes cell-times.jsonl: RESTATE_KIT_DATA as the run began (a worker's lab dir, under xdist).
Read at configure time, because tests/conftest.py points RESTATE_KIT_DATA at a temp dir while tests run."""


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    _RECORD_IN[:] = [os.environ.get("RESTATE_KIT_DATA", "")]


def _record(path: Path, times: list[tuple[int, float, str]], limit: float) -> None:
    where = _RECORD_IN[0] if _RECORD_IN else os.environ.get("RESTATE_KIT_DATA")
    if not where:
        return
    slowest = sorted(times, key=lambda t: -t[1])[:5]
    line = {"notebook": path.name, "total": round(sum(t[1] for t in times), 1), "budget": round(limit, 1)}
    line["slowest"] = [{"cell": i, "seconds": round(s, 1), "source": src} for i, s, src in slowest]
    with (Path(where) / "cell-times.jsonl").open("a") as out:
        out.write(json.dumps(line) + "\n")


def _install() -> None:
    try:
        from nbmake.nb_result import NotebookError
        from nbmake.nb_run import NotebookRun
    except ImportError:
        return
    if getattr(NotebookRun.execute, "_cell_budget", False):
        return
    plain = NotebookRun.execute

    def execute(self: NotebookRun) -> Any:
        result = plain(self)
        path = Path(self.filename)
        if not LESSON.match(path.name) or path.parent.name == "solutions" or result.error is not None:
            return result
        times = cell_seconds(result.nb)
        limit = budget()
        _record(path, times, limit)
        over = [t for t in times if t[1] > limit]
        if over and float(os.environ.get("CELL_BUDGET_SECONDS", BUDGET)) > 0:
            lines = [f"cell {i} took {s:.1f} s: {src}" for i, s, src in over]
            summary = (
                f"{path.name}: {len(over)} cell(s) over the budget of {limit:.0f} s a cell "
                f"({BUDGET:.0f} s on a quiet machine, stretched by the load {os.getloadavg()[0]:.1f}): "
                "make the cell do less, or move the work into a bench script"
            )
            result.error = NotebookError(
                summary=summary, trace="\n".join([summary, *lines]), failing_cell_index=over[0][0]
            )
        return result

    execute._cell_budget = True  # type: ignore[attr-defined]
    NotebookRun.execute = execute  # type: ignore[method-assign]


_install()

"""A learner's time for each lesson and each exercise, estimated from what the learner reads, runs and writes.

    .venv/bin/python scripts/lesson_times.py                          # the table (markdown)
    .venv/bin/python scripts/lesson_times.py --cell-times .restate-xdist/gw*/cell-times.jsonl   # with machine times

The estimate, per lesson (`notebooks/NN_*.ipynb`), leaving out sections whose heading says "optional":
- reading: the prose's words at 150 a minute (technical text), the code's non-blank lines at 15 a minute;
- running: the lesson's cells, as nbmake timed them (`tests/cell_time.py` writes `cell-times.jsonl`), if given;
- each exercise: its text at 150 words a minute, plus writing the worked solution's code
  (`notebooks/solutions/NN_*_solutions.ipynb`, the cells under `## Exercise k`) at 4 lines a minute, plus 2 minutes
  to run it and read the check's verdict.
No learner was timed: the rates are assumptions, written here so that they can be changed in one place, and
`tests/test_lesson_times.py` holds every lesson's advertised "About N minutes" to this estimate of its body.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORDS_PER_MINUTE = 150
CODE_LINES_READ_PER_MINUTE = 15
CODE_LINES_WRITTEN_PER_MINUTE = 4
MINUTES_TO_RUN_AND_CHECK = 2


@dataclass
class Lesson:
    """What one lesson asks of a learner, in words and lines."""

    path: Path
    advertised: int | None
    words: int = 0
    code_lines: int = 0
    optional: list[str] = field(default_factory=list)
    exercises: list[float] = field(default_factory=list)
    machine_seconds: float | None = None

    @property
    def reading(self) -> float:
        return self.words / WORDS_PER_MINUTE + self.code_lines / CODE_LINES_READ_PER_MINUTE

    @property
    def body(self) -> float:
        """Minutes to read and run the lesson, without its optional sections and exercises."""
        return self.reading + (self.machine_seconds or 0) / 60


def _words(markdown: str) -> int:
    return len(re.findall(r"\w+", re.sub(r"```.*?```", " ", markdown, flags=re.S)))


def _lines(code: str) -> int:
    return sum(1 for line in code.splitlines() if line.strip() and not line.strip().startswith("#"))


def _solution_lines(path: Path) -> dict[int, int]:
    """Lines of the worked solution's code under each '## Exercise k' heading."""
    solution = next((path.parent / "solutions").glob(f"{path.stem}_solutions.ipynb"), None)
    lines: dict[int, int] = {}
    if solution is None:
        return lines
    current = 0
    for cell in json.loads(solution.read_text())["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            found = re.search(r"^## Exercise (\d+)", source, re.M)
            current = int(found.group(1)) if found else (0 if re.search(r"^## ", source, re.M) else current)
        elif current:
            lines[current] = lines.get(current, 0) + _lines(source)
    return lines


def measure(path: Path) -> Lesson:
    """Count what a lesson asks of a learner."""
    cells = json.loads(path.read_text())["cells"]
    found = re.search(r"About (\d+) minutes", "".join(cells[0]["source"]))
    lesson = Lesson(path, int(found.group(1)) if found else None)
    section, optional, exercise_text = "", False, ""
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            for line in source.splitlines():
                if line.startswith(("# ", "## ")):
                    section, optional = line, line.startswith("## ") and "optional" in line.lower()
                    if optional:
                        lesson.optional.append(line[3:])
        if section.startswith("## Exercises"):
            exercise_text += source + "\n" if cell["cell_type"] == "markdown" else ""
        elif optional:
            continue
        elif cell["cell_type"] == "markdown":
            lesson.words += _words(source)
        else:
            lesson.code_lines += _lines(source)
    items = re.split(r"^\s*(?:\d+\.|### Exercise \d+|\*\*Exercise \d+)", exercise_text, flags=re.M)[1:]
    solution = _solution_lines(path)
    for k, text in enumerate(items, start=1):
        minutes = _words(text) / WORDS_PER_MINUTE + solution.get(k, 0) / CODE_LINES_WRITTEN_PER_MINUTE
        lesson.exercises.append(minutes + MINUTES_TO_RUN_AND_CHECK)
    return lesson


def machine_times(files: list[Path]) -> dict[str, float]:
    """The latest total cell time of each lesson, from cell-times.jsonl files."""
    times: dict[str, float] = {}
    for file in files:
        for line in file.read_text().splitlines():
            record = json.loads(line)
            times[record["notebook"]] = float(record["total"])
    return times


def lessons(cell_times: list[Path] | None = None) -> list[Lesson]:
    """Every lesson, measured, with its machine time where a cell-times file gives one."""
    machine = machine_times(cell_times or [])
    found = [measure(p) for p in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
    for lesson in found:
        lesson.machine_seconds = machine.get(lesson.path.name)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--cell-times", nargs="*", type=Path, default=[], help="cell-times.jsonl files")
    args = parser.parse_args()
    print("| lesson | advertised | reading + running | exercises | machine | optional sections |")
    print("|---|---|---|---|---|---|")
    for lesson in lessons(args.cell_times):
        exercises = " + ".join(f"{math.ceil(m)}" for m in lesson.exercises) or "none"
        machine = f"{lesson.machine_seconds:.0f} s" if lesson.machine_seconds is not None else "not measured"
        print(
            f"| `{lesson.path.stem}` | {lesson.advertised} min | {math.ceil(lesson.body)} min | {exercises} min "
            f"| {machine} | {'; '.join(lesson.optional) or 'none'} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

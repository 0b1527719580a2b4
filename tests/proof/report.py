"""Build docs/RELIABILITY.md from the records the proof tests append while they run; never typed by hand.

Every proof test appends one record (a dict with a "section") through the `evidence` fixture,
*before* it asserts, and the test's outcome is added when it finishes. `render` turns the
records into Markdown and embeds them at the end of the file, so `check_rendered` can prove
that a committed report is exactly what its records render to.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Any

__all__ = ["RECORDS_MARK", "case_ids", "check_rendered", "render"]

RECORDS_MARK = "<!-- reliability-records"
_CASE = re.compile(r"^\| `(?P<case>[^`]+)` \|", re.MULTILINE)


def _cell(value: Any, limit: int = 110) -> str:
    text = str(value).replace("|", "\\|").replace("\n", " ").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _yes(flag: Any) -> str:
    return "yes" if flag else "**NO**"


def _of(records: list[dict[str, Any]], section: str) -> list[dict[str, Any]]:
    return [r for r in records if r["section"] == section]


def _passed(record: dict[str, Any]) -> bool:
    return record.get("outcome") == "passed"


def _crash(records: list[dict[str, Any]]) -> list[str]:
    crash = _of(records, "crash")
    if not crash:
        return ["## Crash matrix", "", "_The crash matrix did not run in this session._", ""]
    by_point: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in crash:
        by_point[(r["agent"], r["point"])].append(r)
    lines = [
        "## Crash matrix",
        "",
        "Each run sends a fresh invocation, stops it at the kill point with a gate, SIGKILLs the agent's "
        "process, starts it again on the same port and attaches to the same invocation id. "
        "*Recovered* means it completed with the crash-free answer. *Duplicate effects* counts payments "
        "beyond one and model calls of journaled steps beyond the crash-free count. *Step re-runs* counts "
        "step bodies that ran again after the crash: only a step killed before its result was journaled may.",
        "",
        "| agent | kill point | runs | recovered | duplicate effects | repeated model calls | step re-runs "
        "| model calls per run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (agent, point), runs in by_point.items():
        recovered = sum(bool(r["recovered"]) and _passed(r) for r in runs)
        calls = sorted({r["model_calls"] for r in runs})
        lines.append(
            f"| {agent} | {_cell(point)} | {len(runs)} | {recovered}/{len(runs)} "
            f"| {sum(r['duplicate_effects'] for r in runs)} | {sum(r['repeated_model_calls'] for r in runs)} "
            f"| {sum(r['step_reruns'] for r in runs)} | {', '.join(map(str, calls))} |"
        )
    lines += [
        "",
        "<details><summary>Every run (one row per test case)</summary>",
        "",
        "| case | invocation | killed pid | answer as crash-free | model calls | payments | step bodies run | test |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in crash:
        steps = ", ".join(f"{k} ×{v}" for k, v in sorted(r["step_runs"].items()))
        lines.append(
            f"| `{r['case']}` | `{r['invocation_id']}` | {r['killed_pid']} | {_yes(r['recovered'])} "
            f"| {r['model_calls']} | {r.get('payments', '-')} | {_cell(steps)} | {r.get('outcome', '?')} |"
        )
    lines += ["", "</details>", ""]
    return lines


def _restarts(records: list[dict[str, Any]]) -> list[str]:
    rows = _of(records, "restart")
    lines = ["## Server restarts and node loss", ""]
    if rows:
        lines += ["| scenario | restarts | how | survived | detail |", "|---|---|---|---|---|"]
        for r in rows:
            survived = _passed(r) and r["survived"]
            lines.append(
                f"| {_cell(r['scenario'])} | {r['restarts']} | {r['how']} | {_yes(survived)} "
                f"| {_cell(r['detail'], 160)} |"
            )
    else:
        lines.append("_No server restart ran in this session._")
    lines.append("")
    for r in _of(records, "external"):
        lines.append(f"- `{r['case']}`: **{r.get('outcome', 'not run')}**. {r['detail']}")
    lines.append("")
    return lines


def _bad_inputs(records: list[dict[str, Any]]) -> list[str]:
    rows = _of(records, "bad_input")
    lines = ["## Bad input", ""]
    if not rows:
        return [*lines, "_No bad-input case ran in this session._", ""]
    lines += [
        "Each case is sent once; the answer is what the caller sees. *Unchanged* means the object's state and "
        "the ledger are the same before and after; *in flight* counts invocations of that key left running, "
        "backing off, paused or suspended.",
        "",
        "| case | sent to | input | answer | message | unchanged | in flight | test |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['case']}` | {_cell(r['target'])} | {_cell(r['input'], 60)} | {_cell(r['answer'])} "
            f"| {_cell(r['message'], 140)} | {_yes(r['unchanged'])} | {r['in_flight']} | {r.get('outcome', '?')} |"
        )
    return [*lines, ""]


def _security(records: list[dict[str, Any]]) -> list[str]:
    rows = _of(records, "security")
    lines = ["## Security checks", ""]
    if not rows:
        return [*lines, "_No security check ran in this session._", ""]
    lines += ["| check | holds | detail |", "|---|---|---|"]
    for r in rows:
        lines.append(f"| {_cell(r['check'])} | {_yes(r['holds'] and _passed(r))} | {_cell(r['detail'], 200)} |")
    return [*lines, "", "See [SECURITY.md](SECURITY.md) for what is and is not protected.", ""]


def _figures(records: list[dict[str, Any]], meta: dict[str, Any]) -> list[str]:
    crash = _of(records, "crash")
    points = {(r["agent"], r["point"]) for r in crash}
    restarts = _of(records, "restart")
    failed = [r for r in records if r.get("outcome") == "failed"]
    gaps = [r["case"] for r in records if str(r.get("outcome", "")).startswith("xfailed")]
    return [
        "| figure | value |",
        "|---|---|",
        f"| kill points | {len(points)} |",
        f"| crash runs (SIGKILLs of an invocation) | {len(crash)} |",
        f"| recovered with the crash-free answer | {sum(bool(r['recovered']) and _passed(r) for r in crash)} |",
        f"| duplicate effects | {sum(r['duplicate_effects'] for r in crash)} |",
        f"| repeated model calls (journaled steps) | {sum(r['repeated_model_calls'] for r in crash)} |",
        f"| server restarts survived | {sum(r['restarts'] for r in restarts if r['survived'] and _passed(r))}"
        f" of {sum(r['restarts'] for r in restarts)} |",
        f"| bad inputs answered as the table says (4xx, or a clear exception; 202/200 where noted) "
        f"| {sum(_passed(r) for r in _of(records, 'bad_input'))}"
        f" of {len(_of(records, 'bad_input'))} |",
        f"| security checks holding | {sum(bool(r['holds']) and _passed(r) for r in _of(records, 'security'))}"
        f" of {len(_of(records, 'security'))} |",
        f"| failed tests | {len(failed)} |",
        f"| known gaps (strict xfail) | {len(gaps)}{': ' + ', '.join(f'`{g}`' for g in gaps) if gaps else ''} |",
        f"| duration of the run | {meta.get('duration_s', 0):.0f} s |",
        "",
    ]


def render(records: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """Render the report from the run's records and metadata (command, date, duration)."""
    lines = [
        "# Reliability report",
        "",
        f"> Generated by `{meta.get('command', 'pytest tests/proof --reliability-report')}` on "
        f"{meta.get('date', '?')}, from {len(records)} records the tests appended while they ran. "
        "Do not edit: run `make reliability` again.",
        "",
        *_figures(records, meta),
        *_crash(records),
        *_restarts(records),
        *_bad_inputs(records),
        *_security(records),
        RECORDS_MARK,
        json.dumps({"meta": meta, "records": records}, sort_keys=True, ensure_ascii=False).replace("--", "-\\u002d"),
        "-->",
        "",
    ]
    return "\n".join(lines)


def case_ids(markdown: str) -> list[str]:
    """Return the test-case ids listed in a rendered report's tables, in order."""
    return _CASE.findall(markdown.split(RECORDS_MARK)[0])


def check_rendered(markdown: str) -> dict[str, Any]:
    """Re-render a report from the records it embeds; raise ValueError if its text differs; return the data."""
    head, mark, tail = markdown.partition(RECORDS_MARK)
    if not mark:
        raise ValueError("the report embeds no records: it was not generated by the proof suite")
    data = json.loads(tail.strip().removesuffix("-->").strip())
    if render(data["records"], data["meta"]) != markdown:
        raise ValueError("the report's text is not what its records render to: it was edited by hand")
    return dict(data)

"""The bench's verdicts: the issue's ratios next to their targets, and figures refused when the machine was busy."""

from __future__ import annotations

from typing import Any

import pytest

from bench.report import machine_line, tables
from bench.run import PLAIN, SHIPPED, TWO_WORKERS, check_load, target_ratios


def _row(sessions: int, turns_per_s: float, cpu: float) -> dict[str, Any]:
    return {
        "concurrency": sessions,
        "turns": 100,
        "errors": 0,
        "seconds": 100 / turns_per_s,
        "turns_per_s": turns_per_s,
        "latency": {"median_ms": 10.0},
        "cpu_ms_per_turn": {"client": cpu, "agent": 0.0, "server": 0.0, "total": cpu},
    }


def _results() -> dict[str, Any]:
    return {
        "throughput": {
            PLAIN: [_row(100, 140.0, 6.0), _row(1000, 138.0, 6.0)],
            SHIPPED: [_row(100, 70.0, 13.0), _row(1000, 56.0, 13.0)],
            TWO_WORKERS: [_row(100, 100.0, 14.0), _row(1000, 105.0, 16.0)],
        },
        "latency": {
            PLAIN: {"cpu_ms_per_turn": {"total": 6.0}},
            SHIPPED: {"cpu_ms_per_turn": {"total": 19.2}},
        },
    }


def test_each_ratio_is_set_against_its_target() -> None:
    found = {t["name"]: t for t in target_ratios(_results())}
    scaling = found[f"{SHIPPED}: turns/s at 1000 sessions ÷ at 100"]
    assert scaling["value"] == pytest.approx(0.8) and not scaling["met"] and scaling["op"] == ">="
    assert found[f"{TWO_WORKERS}: turns/s at 1000 sessions ÷ at 100"]["met"]
    versus_plain = found[f"{TWO_WORKERS} ÷ {PLAIN}, turns/s at 100 sessions"]
    assert versus_plain["value"] == pytest.approx(100 / 140) and versus_plain["met"] and versus_plain["target"] == 0.6
    assert not found[f"{SHIPPED} ÷ {PLAIN}, turns/s at 100 sessions"]["met"]
    cpu = found[f"CPU per turn, {SHIPPED} ÷ {PLAIN} (one turn at a time)"]
    assert cpu["value"] == pytest.approx(3.2) and not cpu["met"] and cpu["op"] == "<="


def test_the_report_shows_the_targets_table() -> None:
    results = {**_results(), "machine": _machine(0.3), "size": "full"}
    text = tables(
        {"throughput": results["throughput"], "machine": results["machine"], "targets": target_ratios(results)}
    )
    assert "### The targets (ratios, this run)" in text
    assert f"| {SHIPPED}: turns/s at 1000 sessions ÷ at 100 | 0.80 (56.0 ÷ 70.0) | >= 0.9 | **no** |" in text
    assert "not valid" not in text


def test_figures_taken_under_load_are_marked_not_valid(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    assert "above the core count: these figures are not valid" in machine_line(_machine(5.5))
    monkeypatch.setattr("os.getloadavg", lambda: (5.5, 4.0, 3.0))
    assert check_load(2) == {"load_average": [5.5, 4.0, 3.0], "load_exceeds_cores": True}
    out = capsys.readouterr().out
    assert "load average at the start: 5.50, 4.00, 3.00 on 2 cores" in out and "NOT valid" in out
    monkeypatch.setattr("os.getloadavg", lambda: (0.4, 0.5, 0.6))
    assert not check_load(2)["load_exceeds_cores"] and "WARNING" not in capsys.readouterr().out


def _machine(load: float) -> dict[str, Any]:
    packages = {"restate-sdk": "1", "google-adk": "2", "hypercorn": "3"}
    return {
        "cores": 2,
        "cpu": "x",
        "python": "3.12",
        "restate_server": "1.7",
        "packages": packages,
        "load_average": [load] * 3,
    }

"""The benchmark runs on a tiny size and writes well-formed results (no timing asserts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent_lib._paths import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.full]  # the bench runs in make test-all


def _positive(x: object) -> bool:
    return isinstance(x, int | float) and x > 0


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """Run `bench/run.py --quick` once into a temp dir; return its results and the dir."""
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--out", str(out / "latest.json"), "--doc", str(out / "PERF.md")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "latest.json").read_text()), out


def test_machine_is_described(quick: tuple[dict, Path]) -> None:
    machine = quick[0]["machine"]
    assert machine["cores"] >= 1 and machine["cpu"] and machine["python"]
    assert machine["restate_server"] and machine["packages"]["google-adk"]


def test_latency_has_every_variant_with_positive_figures(quick: tuple[dict, Path]) -> None:
    latency = quick[0]["latency"]
    assert {"plain ADK (as shipped)", "durable (as shipped)", "durable, all tunings"} <= set(latency)
    for label, stats in latency.items():
        assert stats["n"] >= 1, label
        assert all(_positive(stats[k]) for k in ("median_ms", "p95_ms", "mean_ms", "min_ms")), label
        assert stats["p95_ms"] >= stats["median_ms"] >= stats["min_ms"], label
        assert _positive(stats["cpu_ms_per_turn"]["total"]), label
    assert _positive(latency["durable (as shipped)"]["ratio_median"])


def test_throughput_has_each_level(quick: tuple[dict, Path]) -> None:
    results = quick[0]
    for rows in results["throughput"].values():
        assert [r["concurrency"] for r in rows] == results["sizes"]["levels"]
        assert all(r["errors"] == 0 and r["turns"] >= r["concurrency"] and _positive(r["turns_per_s"]) for r in rows)


def test_growth_has_each_checkpoint(quick: tuple[dict, Path]) -> None:
    results = quick[0]
    growth = results["growth"]
    if "skipped" in growth:
        pytest.skip(growth["skipped"])
    for label, g in growth.items():
        assert [c["turn"] for c in g["checkpoints"]] == results["sizes"]["checkpoints"], label
        assert all(_positive(c["latency_ms"]) and _positive(c["stored_bytes"]) for c in g["checkpoints"]), label


def test_recovery_counts_its_kills(quick: tuple[dict, Path]) -> None:
    results = quick[0]
    for mode, s in results["recovery"].items():
        assert s["kills"] == results["sizes"]["kills"], mode
        assert _positive(s["median_recovery_ms"]) and len(s["recovery_ms"]) == s["kills"], mode


def test_report_has_tables_and_plots(quick: tuple[dict, Path]) -> None:
    _, out = quick
    doc = (out / "PERF.md").read_text()
    assert "<!-- bench:begin -->" in doc and "### 1. Turn latency" in doc and " cores (" in doc
    for name in ("latency_vs_turns.png", "throughput_vs_concurrency.png", "turn_latency.png"):
        assert (out / "img" / name).stat().st_size > 1000, name


def test_a_notebooks_rerun_merges_and_says_where_it_came_from(quick: tuple[dict, Path]) -> None:
    """Figure 5 re-measured alone keeps figures 1-4 and names its own machine line (a synthetic figure 5)."""
    from bench.report import tables

    results, _ = quick
    machine = {**results["machine"], "load_average": [9.0, 9.0, 9.0]}
    notebooks = {
        "00_setup.ipynb": {"passed": True, "nbmake_s": 5.0},
        "01_weather_agent.ipynb": {"passed": False, "nbmake_s": 7.5},
        "total_wall_s": 20.0,
        "total_nbmake_s": 12.5,
        "passed": False,
        "measured_on": machine,
    }
    text = tables({**results, "notebooks": notebooks})
    assert "### 1. Turn latency" in text
    assert "Re-measured apart from figures 1-4" in text and "load average at the start 9.0, 9.0, 9.0" in text
    assert "| 00_setup.ipynb | yes | 5.0 |" in text and "| 01_weather_agent.ipynb | NO | 7.5 |" in text
    assert "The whole suite: 20.0 s wall" in text and "12.5 s executing" in text


def test_merge_is_refused_for_other_figures(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--merge", "--figures", "latency", "--out", str(tmp_path / "x.json")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "--merge re-measures the notebooks alone" in done.stderr

"""The journal timeline chart and view: the bars drawn match the timeline's data."""

from __future__ import annotations

from typing import Any

import pandas as pd

from agent_lib.observe import TIMELINE_COLUMNS
from agent_lib.widgets.timeline import JournalView, figure_png, format_duration, step_color, timeline_figure

STEPS = pd.DataFrame(
    [
        ("call LLM", 3, 0.5, 0.25, None, None, True, False, None),
        ("Call booking API", 5, 0.8, 6.0, None, None, True, True, "down"),
        ("store session", 9, 7.0, 0.01, None, None, False, False, None),
    ],
    columns=TIMELINE_COLUMNS,
)


def test_one_bar_per_step_from_its_start_as_long_as_it_took() -> None:
    ax = timeline_figure(STEPS).axes[0]
    assert len(ax.containers) == len(STEPS)
    for bar_container, (_, row) in zip(ax.containers, STEPS.iterrows(), strict=True):
        (bar,) = bar_container.patches
        assert bar.get_x() == row["start"]
        assert bar.get_width() >= row["duration"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["#3 call LLM", "#5 Call booking API", "#9 store session"]
    hatches = [c.patches[0].get_hatch() for c in ax.containers]
    assert hatches == [None, "//", None]


def test_colors_and_labels() -> None:
    assert step_color("call LLM") != step_color("Call booking API") != step_color("store session")
    assert format_duration(0.004) == "4 ms" and format_duration(6.94) == "6.9 s"
    assert figure_png(timeline_figure(STEPS)).startswith(b"\x89PNG")


class _FakeAdmin:
    """Just enough of Admin for JournalView: canned sys_invocation and sys_journal rows."""

    url = "http://admin.test"

    def invocation(self, invocation_id: str) -> dict[str, Any]:
        return {"id": invocation_id, "status": "completed", "target": "FlakyAgent/k/run", "completed_at": None}

    def query(self, sql: str) -> list[dict[str, Any]]:
        if "FROM sys_journal_events" in sql:
            return []
        return [
            {"index": 0, "entry_type": "Command: Input", "name": "", "appended_at": "2026-01-01T00:00:00.000Z",
             "entry_lite_json": '{"Command":{"Input":{}}}'},
            {"index": 1, "entry_type": "Command: Run", "name": "call LLM", "appended_at": "2026-01-01T00:00:01.000Z",
             "entry_lite_json": '{"Command":{"Run":{"completion_id":1,"name":"call LLM"}}}'},
            {"index": 2, "entry_type": "Notification: Run", "name": "", "appended_at": "2026-01-01T00:00:01.250Z",
             "entry_lite_json": '{"Notification":{"ty":{"Completion":"Run"},"id":{"CompletionId":1}}}'},
        ]  # fmt: skip


def test_journal_view_shows_the_timeline_the_entries_and_a_ui_link() -> None:
    view = JournalView(_FakeAdmin(), "inv_test")  # type: ignore[arg-type]
    assert view.frame["step"].tolist() == ["call LLM"] and view.frame["duration"].tolist() == [0.25]
    assert len(view.entries) == 3
    link = view.children[1].value
    assert 'href="http://admin.test/ui/invocations/inv_test"' in link
    tabs = view.children[2]
    assert bytes(tabs.children[0].value).startswith(b"\x89PNG") and "Command: Run" in tabs.children[1].value

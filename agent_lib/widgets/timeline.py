"""The journal of one invocation, drawn: a timeline chart and a table of entries (lesson 06).

The data comes from `agent_lib.observe` (`timeline`, `journal_entries`), read from the
server's own SQL tables; this module only draws it. `timeline_figure` returns a
matplotlib Figure (one bar per durable step), `JournalView` is a widget with the chart,
the entries and a link to the same invocation in the Restate UI.
"""

from __future__ import annotations

import html
import io
from typing import Any

import ipywidgets as widgets
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..clients import Admin
from ..observe import journal_entries, timeline, ui_url

__all__ = ["JournalView", "STEP_COLORS", "figure_png", "format_duration", "step_color", "timeline_figure", "ui_link"]

STEP_COLORS = {"model": "#4C72B0", "tool": "#DD8452", "session": "#8C8C8C", "failed": "#C44E52"}
"""Bar colors: model calls, tool steps, the session store; failed steps get a red hatched edge."""


def step_color(step: str) -> str:
    """Return the bar color of a step by its name ("call LLM", "store session", or a tool's step)."""
    if step == "call LLM":
        return STEP_COLORS["model"]
    if step == "store session":
        return STEP_COLORS["session"]
    return STEP_COLORS["tool"]


def format_duration(seconds: float) -> str:
    """Format a duration for a bar's label: "4 ms", "6.9 s"."""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def timeline_figure(frame: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Draw a timeline frame (from `observe.timeline`): one bar per step, from its start, as long as it took."""
    rows = list(frame.itertuples(index=False))
    fig = Figure(figsize=(9, 1.3 + 0.42 * max(1, len(rows))), layout="constrained")
    ax = fig.subplots()
    end = max((r.start + r.duration for r in rows), default=1.0) or 1.0
    for y, r in enumerate(rows):
        ax.barh(
            y,
            max(r.duration, end * 0.004),
            left=r.start,
            color=step_color(r.step),
            alpha=1.0 if r.done else 0.55,
            edgecolor=STEP_COLORS["failed"] if r.failed else "none",
            hatch="//" if r.failed else None,
            linewidth=1.5,
        )
        label = format_duration(r.duration) + ("" if r.done else ", not finished")
        ax.text(r.start + r.duration + end * 0.01, y, label, va="center", fontsize=9)
    ax.set_yticks(range(len(rows)), [f"#{r.index} {r.step}" for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, end * 1.25)
    ax.set_xlabel("seconds since the invocation started")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title or "Durable steps of the invocation", loc="left", fontsize=11)
    legend = [
        Patch(color=STEP_COLORS["model"], label="call LLM"),
        Patch(color=STEP_COLORS["tool"], label="tool step"),
        Patch(color=STEP_COLORS["session"], label="store session"),
        Patch(facecolor="white", edgecolor=STEP_COLORS["failed"], hatch="//", label="failed at least once"),
    ]
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return fig


def figure_png(fig: Figure) -> bytes:
    """Render a Figure to PNG bytes (no pyplot, no global state)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def ui_link(admin: Admin, invocation_id: str) -> widgets.HTML:
    """Return a link to an invocation's page in the Restate UI."""
    url = html.escape(ui_url(admin, invocation_id))
    return widgets.HTML(f'<a href="{url}" target="_blank">Open {html.escape(invocation_id)} in the Restate UI</a>')


def _entries_html(entries: pd.DataFrame) -> str:
    shown = entries[["index", "entry_type", "name", "at"]].copy()
    shown["name"] = shown["name"].fillna("")
    shown["at"] = shown["at"].map(lambda s: f"{s:.3f} s")
    return str(shown.to_html(index=False, border=0, escape=True))


class JournalView(widgets.VBox):  # type: ignore[misc]
    """A widget for one invocation: its timeline chart, its journal entries, and a link to the UI."""

    def __init__(self, admin: Admin, invocation_id: str, **kwargs: Any) -> None:
        self.admin = admin
        self.invocation_id = invocation_id
        self.frame = pd.DataFrame()
        self.entries = pd.DataFrame()
        self._chart = widgets.Image(format="png")
        self._table = widgets.HTML()
        self._status = widgets.HTML()
        button = widgets.Button(description="Refresh", icon="refresh")
        button.on_click(lambda _: self.refresh())
        tabs = widgets.Tab(children=[self._chart, self._table])
        tabs.set_title(0, "Timeline")
        tabs.set_title(1, "Journal entries")
        header = widgets.HBox([self._status, button])
        super().__init__([header, ui_link(admin, invocation_id), tabs], **kwargs)
        self.refresh()

    def refresh(self) -> pd.DataFrame:
        """Read the journal again and redraw; return the timeline frame."""
        row = self.admin.invocation(self.invocation_id) or {}
        self.entries = journal_entries(self.admin, self.invocation_id)
        self.frame = timeline(self.admin, self.invocation_id)
        status = html.escape(str(row.get("status", "unknown")))
        self._status.value = f"<b>{html.escape(self.invocation_id)}</b> · {status} · {len(self.frame)} steps"
        self._chart.value = figure_png(timeline_figure(self.frame, title=str(row.get("target", ""))))
        self._table.value = _entries_html(self.entries)
        return self.frame

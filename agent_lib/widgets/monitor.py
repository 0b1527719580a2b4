"""A live table of a service's invocations: status, retry count, failing step, last failure (lesson 06).

`InvocationMonitor(admin, "FlakyAgent")` is an ipywidgets box. `.refresh()` reads
`observe.monitor_frame` once; `.start()` keeps refreshing it from an asyncio task in the
kernel's event loop (the admin query runs in a thread), so cells keep running while it
updates. `.stop()` ends the task.
"""

from __future__ import annotations

import asyncio
import html
import time
from datetime import datetime
from typing import Any

import ipywidgets as widgets
import pandas as pd

from ..clients import Admin
from ..observe import monitor_frame, ui_url

__all__ = ["InvocationMonitor", "STATUS_COLORS", "monitor_html"]

STATUS_COLORS = {
    "running": "#4C72B0",
    "backing-off": "#C44E52",
    "paused": "#DD8452",
    "suspended": "#8172B3",
    "completed": "#55A868",
}
"""Badge colors by invocation status (others are grey)."""

_SHOWN = ["id", "key", "status", "retry_count", "failing_step", "last_failure"]


def _cell(column: str, value: Any, admin: Admin) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)):
        return "<td></td>"
    text = html.escape(str(value))
    if column == "id":
        return f'<td><a href="{html.escape(ui_url(admin, str(value)))}" target="_blank"><code>{text}</code></a></td>'
    if column == "status":
        color = STATUS_COLORS.get(str(value), "#8C8C8C")
        badge = f"background:{color};color:white;padding:1px 6px;border-radius:8px"
        return f'<td><span style="{badge}">{text}</span></td>'
    return f"<td>{text}</td>"


def monitor_html(frame: pd.DataFrame, admin: Admin) -> str:
    """Render a monitor frame as an HTML table, ids linked to the Restate UI."""
    if frame.empty:
        return "<i>no invocations yet</i>"
    head = "".join(f"<th style='text-align:left'>{c.replace('_', ' ')}</th>" for c in _SHOWN)
    body = "".join("<tr>" + "".join(_cell(c, row[c], admin) for c in _SHOWN) + "</tr>" for _, row in frame.iterrows())
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class InvocationMonitor(widgets.VBox):  # type: ignore[misc]
    """A table of a service's latest invocations that refreshes itself without blocking the kernel."""

    def __init__(
        self, admin: Admin, service: str | None = None, *, interval: float = 1.0, limit: int = 10, **kwargs: Any
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be a positive number of seconds, not {interval}")
        self.admin = admin
        self.service = service
        self.interval = interval
        self.limit = limit
        self.frame = pd.DataFrame()
        self.refreshes = 0
        self.error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._header = widgets.HTML()
        self._table = widgets.HTML()
        super().__init__([self._header, self._table], **kwargs)
        self._show()

    @property
    def running(self) -> bool:
        """True while the live refresh runs."""
        return self._task is not None and not self._task.done()

    def _show(self) -> None:
        what = html.escape(self.service or "all services")
        when = datetime.now().strftime("%H:%M:%S")
        live = "live" if self.running else "not live"
        problem = f" · <span style='color:#C44E52'>{html.escape(self.error)}</span>" if self.error else ""
        self._header.value = f"<b>Invocations of {what}</b> · updated {when} · {live}{problem}"
        self._table.value = monitor_html(self.frame, self.admin)

    def _update(self, frame: pd.DataFrame) -> pd.DataFrame:
        self.frame = frame
        self.refreshes += 1
        self.error = None
        self._show()
        return frame

    def refresh(self) -> pd.DataFrame:
        """Read the invocations once and redraw; return them."""
        return self._update(monitor_frame(self.admin, self.service, limit=self.limit))

    async def arefresh(self) -> pd.DataFrame:
        """Read the invocations in a thread (the event loop stays free) and redraw; return them."""
        frame = await asyncio.to_thread(monitor_frame, self.admin, self.service, limit=self.limit)
        return self._update(frame)

    async def _loop(self) -> None:
        while True:
            try:
                await self.arefresh()
            except (ConnectionError, RuntimeError) as err:
                self.error = f"{type(err).__name__}: {err}"
                self._show()
            await asyncio.sleep(self.interval)

    async def updated(self, times: int = 2, timeout: float = 30.0) -> pd.DataFrame:
        """Wait until the live refresh has redrawn the table `times` more times; return what it shows.

        Two by default: the second refresh started after this call, so it shows what had happened by then.
        """
        if not self.running:
            raise RuntimeError("the monitor is not live: call start() first")
        target = self.refreshes + times
        deadline = time.monotonic() + timeout
        while self.refreshes < target:
            if time.monotonic() > deadline or not self.running:
                why = self.error or ("it stopped" if not self.running else "the server answers too slowly")
                raise TimeoutError(
                    f"the monitor refreshed {times - (target - self.refreshes)} of {times} times "
                    f"in {timeout:.0f} s: {why}"
                )
            await asyncio.sleep(0.05)
        return self.frame

    def start(self) -> InvocationMonitor:
        """Refresh every `interval` seconds from a task in the running event loop (e.g. the kernel's)."""
        if self.running:
            return self
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "start() needs a running event loop: call it from a notebook cell, or from async code"
            ) from None
        self._task = loop.create_task(self._loop())
        return self

    def stop(self) -> None:
        """Stop refreshing (the table keeps its last rows)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._show()

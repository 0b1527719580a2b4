"""Drive JupyterLab in headless Chromium with Playwright (sync API).

Used by the browser tests and by ``scripts/screenshot_notebook.py``. Typical use::

    with jupyter_lab(root) as lab, chromium() as browser:
        nb = LabPage.open(browser, lab, "nb.ipynb")
        nb.run_all()
        nb.click_button("Go")
        nb.wait_for_text("done")
        assert not nb.errors()

The lab gets throw-away settings, workspace, checkpoint and runtime directories,
so the news prompt, autosave (which would write outputs into the notebook) and
virtual scrolling are off, nothing is written next to the notebooks, and no state
leaks between runs; each page gets its own workspace, showing only its notebook.
``window.jupyterapp`` is exposed, so cells are run through JupyterLab's own
commands and read from its models, not via keyboard shortcuts.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from playwright.sync_api import Browser, Page, sync_playwright

SKIP_REASON = (
    "Chromium not found (set CHROMIUM_BIN, or install Debian's chromium: "
    "`apt-get update && apt-get install -y chromium`; .ci/run installs it). "
    "Playwright's own browser download is not used."
)

CHROMIUM_ARGS: tuple[str, ...] = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

# Per-run user settings: no news/update toast, no autosave (it would write the
# executed outputs back into the .ipynb), every cell in the DOM (no windowing)
# and no blank space after the last cell, so DOM reads and full-page
# screenshots see exactly the whole notebook.
LAB_SETTINGS: dict[str, dict[str, Any]] = {
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {
        "windowingMode": "none",
        "scrollPastEnd": False,
    },
}

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class LabError(RuntimeError):
    """JupyterLab (server or page) did not do what was expected."""


def chromium_path() -> str | None:
    """Chromium binary: $CHROMIUM_BIN, /usr/bin/chromium, or `chromium` on PATH."""
    env = os.environ.get("CHROMIUM_BIN")
    if env:
        return env if os.access(env, os.X_OK) else None
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


@contextmanager
def chromium(headless: bool = True, executable: str | None = None) -> Iterator[Browser]:
    """Launch the system Chromium (Playwright makes a fresh temp profile per launch)."""
    path = executable or chromium_path()
    if path is None:
        raise LabError(SKIP_REASON)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, headless=headless, args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            browser.close()


# --------------------------------------------------------------------------- server


@dataclass(frozen=True)
class LabServer:
    """A running JupyterLab: base ``url`` (no trailing slash) and its ``token``."""

    url: str
    token: str
    root_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    checkpoint_root: Path

    def notebook_url(self, path: str, workspace: str | None = None) -> str:
        """URL opening ``path`` (relative to root_dir); a new ``workspace`` shows only it."""
        ws = f"/workspaces/{quote(workspace)}" if workspace else ""
        return f"{self.url}/lab{ws}/tree/{quote(path)}?token={self.token}"

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of the server's combined stdout/stderr."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def api(self, method: str, path: str, timeout: float = 5.0) -> Any:
        """Call the server's REST API; returns the decoded JSON (or None)."""
        req = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
            data=b"" if method in ("POST", "PUT", "PATCH") else None,
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _descendants(pid: int) -> dict[int, str]:
    """Descendants of ``pid`` as {pid: start time} (Linux /proc; empty elsewhere)."""
    procs: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = entry.read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        procs[int(entry.parent.name)] = (int(fields[1]), fields[19])
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, started) in procs.items():
            if ppid == parent:
                found[child] = started
                frontier.append(child)
    return found


def _kill_if_same(pid: int, started: str) -> None:
    """SIGKILL ``pid`` unless it exited (or its PID now names another process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return
    if stat[stat.rfind(")") + 2 :].split()[19] == started:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _write_settings(settings_dir: Path) -> None:
    for plugin, values in LAB_SETTINGS.items():
        target = settings_dir / f"{plugin}.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))


def _start(cmd: list[str], env: dict[str, str], log_path: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:  # fresh log per attempt
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )


def _wait_up(lab: LabServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if lab.process.poll() is not None:
            raise LabError(f"jupyter lab exited with {lab.process.returncode} before answering:\n{lab.log_tail()}")
        try:
            lab.api("GET", "/api/status", timeout=2.0)
            lab.api("GET", "/lab/api/settings", timeout=5.0)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise LabError(f"jupyter lab not up after {timeout:.0f}s:\n{lab.log_tail()}")
        time.sleep(0.2)


def _stop(lab: LabServer, grace: float = 10.0) -> None:
    """Shut down via the API (kernels too), then SIGTERM, then SIGKILL the group."""
    proc = lab.process
    if proc.poll() is None:
        kernels = _descendants(proc.pid)  # kernels run in their own sessions
        try:
            lab.api("POST", "/api/shutdown", timeout=grace)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
        proc.wait(timeout=grace)
        for pid, started in kernels.items():
            _kill_if_same(pid, started)


@contextmanager
def jupyter_lab(
    root_dir: str | os.PathLike[str],
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    *,
    python: str = sys.executable,
    startup_timeout: float = 120.0,
    extra_args: Sequence[str] = (),
) -> Iterator[LabServer]:
    """Run ``python -m jupyter lab`` on 127.0.0.1 for the duration of the block.

    ``env`` is layered over ``os.environ`` and is what kernels see too. With
    ``port=None`` a free port is picked (and re-picked if it got taken meanwhile).
    """
    root = Path(root_dir).resolve()
    if not root.is_dir():
        raise LabError(f"lab root {root} is not a directory")
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    with tempfile.TemporaryDirectory(prefix="jlab-harness-") as tmp_name:
        tmp = Path(tmp_name)
        full_env.setdefault("JUPYTER_RUNTIME_DIR", str(tmp / "runtime"))
        _write_settings(tmp / "settings")
        (tmp / "workspaces").mkdir()
        token = secrets.token_hex(24)
        log_path = tmp / "server.log"
        attempts = 1 if port is not None else 3
        for attempt in range(attempts):
            chosen = port if port is not None else _free_port()
            cmd = [
                python,
                "-m",
                "jupyter",
                "lab",
                "--no-browser",
                f"--IdentityProvider.token={token}",  # ServerApp.token is deprecated
                "--ServerApp.ip=127.0.0.1",
                f"--port={chosen}",
                "--ServerApp.port_retries=0",
                f"--ServerApp.root_dir={root}",
                "--ServerApp.allow_root=True",  # CI containers run as root
                "--ServerApp.terminals_enabled=False",
                "--LabApp.expose_app_in_browser=True",
                "--LabApp.news_url=None",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                f"--LabApp.user_settings_dir={tmp / 'settings'}",
                f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
                f"--FileCheckpoints.root_dir={tmp / 'checkpoints'}",  # no .ipynb_checkpoints/ in root
                *extra_args,
            ]
            lab = LabServer(
                url=f"http://127.0.0.1:{chosen}",
                token=token,
                root_dir=root,
                process=_start(cmd, full_env, log_path, root),
                log_path=log_path,
                checkpoint_root=tmp / "checkpoints",
            )
            try:
                _wait_up(lab, startup_timeout)
                break
            except LabError:
                _stop(lab)
                tail = lab.log_tail()
                in_use = "is not available" in tail or "already in use" in tail
                if not (in_use and attempt + 1 < attempts):
                    raise
        try:
            yield lab
        finally:
            _stop(lab)


# ----------------------------------------------------------------------------- page


@dataclass(frozen=True)
class CellError:
    """An ``error`` output of a code cell (traceback without ANSI colours)."""

    cell: int
    ename: str
    evalue: str
    traceback: str

    def __str__(self) -> str:
        return f"cell {self.cell}: {self.ename}: {self.evalue}\n{self.traceback}"


# Finds the NotebookPanel for `path` among the main-area widgets.
_PANEL = """
const panelFor = (path) => {
  const app = window.jupyterapp;
  if (!app) return null;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === path && w.content && w.sessionContext) return w;
  }
  return null;
};
"""

_STATE_JS = (
    "(path) => {"
    + _PANEL
    + """
  const dialog = document.querySelector('.jp-Dialog');
  const out = {app: !!window.jupyterapp, panel: false,
               dialog: dialog ? dialog.innerText : null};
  const p = panelFor(path);
  if (!p) return out;
  const kernel = p.sessionContext.session ? p.sessionContext.session.kernel : null;
  const running = p.content.widgets.filter(
    c => c.model.type === 'code' && (c.model.executionState === 'running'
         || (c.promptNode && c.promptNode.textContent.includes('*')))).length;
  return {...out, panel: true, ready: p.context.isReady && p.sessionContext.isReady,
          status: kernel ? kernel.status : null, running};
}"""
)

_RUN_JS = (
    "([path, command, cell]) => {"
    + _PANEL
    + """
  const p = panelFor(path);
  window.__harnessRun = {done: false, ok: null, error: null};
  window.jupyterapp.shell.activateById(p.id);
  if (cell !== null) p.content.activeCellIndex = cell;
  window.jupyterapp.commands.execute(command, {widgetId: p.id})
    .then(ok => { window.__harnessRun = {done: true, ok: ok !== false, error: null}; },
          err => { window.__harnessRun = {done: true, ok: false, error: String(err)}; });
}"""
)

_OUTPUTS_JS = (
    "(path) => {"
    + _PANEL
    + """
  return panelFor(path).content.widgets.map(c => ({
    type: c.model.type,
    text: c.outputArea ? Array.from(c.outputArea.node.querySelectorAll(
      '.jp-OutputArea-output'), e => e.innerText).join('\\n') : '',
    outputs: c.model.type === 'code' ? Array.from(
      {length: c.model.outputs.length}, (_, i) => c.model.outputs.get(i).toJSON()) : [],
  }));
}"""
)

_SCROLL_HEIGHT_JS = (
    "(path) => {"
    + _PANEL
    + """
  const p = panelFor(path);
  const s = p.node.querySelector('.jp-WindowedPanel-outer') || p.content.node;
  return Math.max(0, s.scrollHeight - s.clientHeight);
}"""
)


class LabPage:
    """A Playwright page showing one notebook in JupyterLab."""

    def __init__(self, page: Page, lab: LabServer, path: str) -> None:
        self.page = page
        self.lab = lab
        self.path = path
        self.page_errors: list[str] = []  # uncaught JS exceptions, for diagnostics
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))

    @classmethod
    def open(
        cls,
        browser: Browser,
        lab: LabServer,
        path: str | os.PathLike[str],
        *,
        viewport: tuple[int, int] = (1400, 900),
        ready_timeout: float = 120.0,
    ) -> LabPage:
        """Open ``path`` (absolute, or relative to the lab root) and wait for its kernel."""
        rel = Path(path)
        if rel.is_absolute():
            rel = rel.resolve().relative_to(lab.root_dir)
        # Lab makes a checkpoint on open; its dir must exist, else it goes to /tmp.
        (lab.checkpoint_root / rel.parent).mkdir(parents=True, exist_ok=True)
        page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        page.set_default_timeout(30_000)
        nb = cls(page, lab, rel.as_posix())
        # A fresh workspace per page: the default one would reopen earlier pages' tabs.
        workspace = f"harness-{secrets.token_hex(6)}"
        page.goto(lab.notebook_url(nb.path, workspace), wait_until="domcontentloaded")
        nb.wait_ready(ready_timeout)
        return nb

    def close(self) -> None:
        """Close the browser page (the kernel keeps running until the lab stops)."""
        self.page.close()

    def _state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.page.evaluate(_STATE_JS, self.path)
        return state

    def _fail(self, what: str, state: dict[str, Any]) -> LabError:
        js = "\n".join(self.page_errors[-5:]) or "none"
        return LabError(
            f"{what} ({self.path}); page state {state}\n--- page errors ---\n{js}\n"
            f"--- server log ---\n{self.lab.log_tail(20)}"
        )

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until the notebook is loaded and its kernel is idle."""
        deadline = time.monotonic() + timeout
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = self._state()
            if state["dialog"]:
                raise self._fail("a dialog blocks the notebook (kernelspec metadata?)", state)
            if state.get("ready") and state.get("status") == "idle":
                return
            time.sleep(0.2)
        if not state.get("app"):
            raise self._fail("window.jupyterapp missing (needs expose_app_in_browser)", state)
        raise self._fail(f"notebook not ready after {timeout:.0f}s", state)

    def wait_idle(self, timeout: float = 60.0, settle: float = 0.5) -> None:
        """Wait until no cell runs and the kernel stays idle for ``settle`` seconds."""
        deadline = time.monotonic() + timeout
        idle_since: float | None = None
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = self._state()
            now = time.monotonic()
            if state.get("status") == "idle" and state.get("running") == 0:
                idle_since = idle_since or now
                if now - idle_since >= settle:
                    return
            else:
                idle_since = None
            time.sleep(0.1)
        raise self._fail(f"kernel not idle after {timeout:.0f}s", state)

    def run_all(self, timeout: float = 300.0) -> bool:
        """Run > Run All Cells and wait; False if a cell raised (later cells are skipped)."""
        return self.run("notebook:run-all-cells", timeout=timeout)

    def run(self, command: str, cell: int | None = None, timeout: float = 300.0) -> bool:
        """Execute a notebook command (e.g. ``notebook:run-all-below``), with ``cell``
        made the active cell first, and wait for it and the kernel; False if a cell raised."""
        self.wait_ready()
        self.page.evaluate(_RUN_JS, [self.path, command, cell])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run: dict[str, Any] = self.page.evaluate("() => window.__harnessRun")
            state = self._state()
            if state["dialog"]:  # e.g. "Kernel Restarting" after the kernel died
                raise self._fail(f"a dialog interrupted {command}", state)
            if run["done"]:
                if run["error"]:
                    raise self._fail(f"{command} failed: {run['error']}", state)
                self.wait_idle(max(1.0, deadline - time.monotonic()))
                return bool(run["ok"])
            time.sleep(0.2)
        raise self._fail(f"{command} not finished after {timeout:.0f}s", self._state())

    def click_button(self, text: str, nth: int = 0, timeout: float = 30.0) -> None:
        """Click the ``nth`` ipywidgets button whose label is exactly ``text``."""
        label = re.compile(rf"^\s*{re.escape(text)}\s*$")
        panel_id = self.page.evaluate("(path) => {" + _PANEL + "return panelFor(path).id; }", self.path)
        buttons = self.page.locator(f'[id="{panel_id}"]').locator("button.widget-button, .jupyter-widgets button")
        button = buttons.filter(has_text=label).nth(nth)
        button.scroll_into_view_if_needed(timeout=timeout * 1000)
        button.click(timeout=timeout * 1000)

    def cell_output_texts(self) -> list[str]:
        """Rendered output text of every cell (widgets included); '' for no output."""
        return [c["text"] for c in self.page.evaluate(_OUTPUTS_JS, self.path)]

    def cell_outputs(self) -> list[list[dict[str, Any]]]:
        """nbformat output dicts of every cell, from the notebook model."""
        return [c["outputs"] for c in self.page.evaluate(_OUTPUTS_JS, self.path)]

    def errors(self) -> list[CellError]:
        """Every ``error`` output (exception) currently in the notebook."""
        found = []
        for index, outputs in enumerate(self.cell_outputs()):
            for out in outputs:
                if out.get("output_type") == "error":
                    tb = "\n".join(out.get("traceback", []))
                    found.append(CellError(index, out.get("ename", ""), out.get("evalue", ""), _ANSI.sub("", tb)))
        return found

    def wait_for_text(self, text: str, timeout: float = 30.0) -> int:
        """Wait until some cell's rendered output contains ``text``; return its index."""
        deadline = time.monotonic() + timeout
        while True:
            for index, out in enumerate(self.cell_output_texts()):
                if text in out:
                    return index
            if time.monotonic() > deadline:
                raise self._fail(f"no output contains {text!r} after {timeout:.0f}s", self._state())
            time.sleep(0.2)

    def collapse_sidebars(self) -> None:
        """Close the left and right side panels (file browser etc.)."""
        self.page.evaluate("() => { window.jupyterapp.shell.collapseLeft(); window.jupyterapp.shell.collapseRight(); }")

    def screenshot(self, path: str | os.PathLike[str], full_page: bool = True) -> Path:
        """Write a PNG; ``full_page`` grows the viewport to fit the whole notebook."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        self.page.evaluate("() => document.fonts.ready.then(() => null)")
        size = self.page.viewport_size or {"width": 1400, "height": 900}
        if full_page:
            extra = int(self.page.evaluate(_SCROLL_HEIGHT_JS, self.path))
            height = min(size["height"] + extra, 16000)
            self.page.set_viewport_size({"width": size["width"], "height": height})
            self.page.wait_for_timeout(300)  # let Lumino re-layout
        try:
            self.page.screenshot(path=str(out), animations="disabled")
        finally:
            self.page.set_viewport_size(size)
        return out

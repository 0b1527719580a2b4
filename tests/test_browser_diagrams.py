"""Every lesson's mermaid diagrams render in JupyterLab as SVG pictures, with no mermaid error.

One JupyterLab, rooted at notebooks/, serves all the lessons; each is opened in its own page and read, never run.
JupyterLab renders a ```mermaid block into `.jp-RenderedMermaid` with an SVG image, or, when mermaid cannot
parse it, adds `jp-mod-warning` and shows the source with mermaid's error.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from playwright.sync_api import Browser

from tests.diagrams import LESSONS, notebook_diagrams
from tests.jupyter_browser import LabPage, LabServer, jupyter_lab

pytestmark = pytest.mark.browser

_DIAGRAMS_JS = """(path) => {
  if (!window.jupyterapp) return null;
  const p = window.jupyterapp.shell.widgets('main').find(w => w.context && w.context.path === path && w.content);
  if (!p) return null;
  return Array.from(p.node.querySelectorAll('.jp-RenderedMermaid'), e => {
    const img = e.querySelector('img');
    const svg = e.querySelector('svg');
    return {warning: e.classList.contains('jp-mod-warning'), text: e.innerText.slice(0, 400),
            svg: img && img.src.startsWith('data:image/svg+xml') ? img.src : (svg ? svg.outerHTML : '')};
  });
}"""


_OPEN_JS = "(path) => window.jupyterapp.commands.execute('docmanager:open', {path}).then(() => null)"
_CLOSE_JS = """(path) => {
  const p = window.jupyterapp.shell.widgets('main').find(w => w.context && w.context.path === path);
  if (p) p.dispose();
}"""


@pytest.fixture(scope="module")
def lab() -> Iterator[LabServer]:
    with jupyter_lab(LESSONS[0].parent) as srv:
        yield srv


@pytest.fixture(scope="module")
def page(browser: Browser, lab: LabServer) -> Iterator[LabPage]:
    """One JupyterLab page for all the lessons: each is opened in it, read, and closed again."""
    first = LESSONS[0].name
    nb = LabPage(browser.new_page(viewport={"width": 1400, "height": 900}), lab, first)
    nb.page.set_default_timeout(30_000)
    nb.page.goto(lab.notebook_url(first, f"diagrams-{secrets.token_hex(6)}"), wait_until="domcontentloaded")
    nb.page.wait_for_function("() => window.jupyterapp", timeout=60_000)
    nb.page.evaluate("() => window.jupyterapp.restored.then(() => null)")
    yield nb
    nb.close()


def rendered(nb: LabPage, expected: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Wait until the page shows `expected` mermaid results (pictures or errors); return them."""
    deadline = time.monotonic() + timeout
    while True:
        found: list[dict[str, Any]] = nb.page.evaluate(_DIAGRAMS_JS, nb.path) or []
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


@pytest.mark.parametrize("path", LESSONS, ids=[p.name for p in LESSONS])
def test_every_diagram_renders_as_svg(page: LabPage, path: Path) -> None:
    expected = len(notebook_diagrams(path))
    assert expected >= 1
    nb = LabPage(page.page, page.lab, path.name)
    nb.page.evaluate(_OPEN_JS, path.name)
    try:
        found = rendered(nb, expected)
        errors = [d["text"] for d in found if d["warning"]]
        assert not errors, f"{path.name}: mermaid could not draw {len(errors)} diagram(s):\n" + "\n---\n".join(errors)
        assert len(found) == expected, f"{path.name}: {len(found)} of {expected} diagrams rendered"
        for diagram in found:
            svg = unquote(diagram["svg"])
            assert "<svg" in svg and "Syntax error" not in svg
        assert not [e for e in page.page_errors if "mermaid" in e.lower()]
    finally:
        nb.page.evaluate(_CLOSE_JS, path.name)

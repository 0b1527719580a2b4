"""`make html`'s builder (scripts/build_site.py) on tiny notebooks: execution, pages, index, diagrams, widgets.

The lessons themselves are never executed here: `make html` does that. The browser test checks a page's diagram in
both cases: mermaid loaded (a stand-in module served at the CDN's address) and no network.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import Browser, Route

from scripts import build_site
from scripts.build_site import Lesson, learning_path, static_widget

ROOT = Path(__file__).resolve().parent.parent
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
OPENING = "# 00 · Tiny\n\n> A tiny lesson.\n\n**You will learn**\n- a\n- b\n- c\n\n*About 5 minutes.*"
DIAGRAM = '```mermaid\nflowchart LR\n    a["one<br/>two"] --> b\n```'
README = "| notebook | what it teaches | time |\n|---|---|---|\n| `00_tiny` | a tiny `thing` | 5 min |\n"


def notebook(path: Path, *cells: str) -> Path:
    """Write a notebook whose cells starting with '#' or '```' are markdown, the others code."""
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": KERNELSPEC})
    for src in cells:
        markdown = src.startswith(("#", "```"))
        nb.cells.append(nbformat.v4.new_markdown_cell(src) if markdown else nbformat.v4.new_code_cell(src))
    nbformat.write(nb, path)
    return path


def test_the_readme_gives_every_lesson_its_time() -> None:
    table = learning_path((ROOT / "README.md").read_text())
    lessons = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(table) == lessons
    assert all(minutes.endswith("min") for _, minutes in table.values())
    for stem, (_, minutes) in table.items():
        opening = "".join(json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text())["cells"][0]["source"])
        advertised = re.search(r"About (\d+) minutes", opening)
        assert advertised and minutes == f"{advertised.group(1)} min", f"README and {stem} disagree on its time"


SITE = pytest.mark.full
"""The builder's runs execute notebooks in kernels of their own: `make test-all` (weekly), like `make html` itself."""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Lesson]]:
    """Two tiny lessons, executed for real in a kernel and exported: one runs to the end, one fails."""
    src = tmp_path_factory.mktemp("lessons")
    tiny = notebook(
        src / "00_tiny.ipynb",
        OPENING,
        DIAGRAM,
        "print('hello from the kernel', 6 * 7)",
        "import ipywidgets as w\nlabel = w.HTML('<b>before</b>')\nw.VBox([w.Button(description='Go'), label])",
        "label.value = '<b>after</b>'\ngone = w.Label('x')\ndisplay(gone)\ngone.close()",
    )
    broken = notebook(src / "01_broken.ipynb", "# 01 · Broken\n\n> It fails.", "raise ValueError('boom 123')")
    out = tmp_path_factory.mktemp("site")
    readme = README + "| `01_broken` | failing | 3 min |\n"
    return out, build_site.build([tiny, broken], out, readme, "a test model")


@SITE
def test_one_page_per_lesson_and_an_index(site: tuple[Path, list[Lesson]]) -> None:
    out, lessons = site
    assert sorted(p.name for p in out.iterdir()) == ["00_tiny.html", "01_broken.html", "index.html"]
    index = (out / "index.html").read_text()
    assert index.index('href="00_tiny.html"') < index.index('href="01_broken.html"')
    assert "a tiny <code>thing</code>" in index and "<td>5 min</td>" in index and "8 minutes in all" in index
    assert "00 · Tiny" in index and "A tiny lesson." in index and "on a test model" in index
    assert [lesson.error is None for lesson in lessons] == [True, False]


@SITE
def test_a_page_has_the_outputs_of_the_run(site: tuple[Path, list[Lesson]]) -> None:
    page = (site[0] / "00_tiny.html").read_text()
    assert "hello from the kernel 42" in page
    assert '<a href="index.html">the learning path</a>' in page and 'href="01_broken.html"' in page


@SITE
def test_a_diagram_keeps_its_source(site: tuple[Path, list[Lesson]]) -> None:
    page = (site[0] / "00_tiny.html").read_text()
    escaped = 'a["one&lt;br/&gt;two"] --&gt; b'
    assert f'<pre class="mermaid">\nflowchart LR\n    {escaped}\n</pre>' in page, "escaped evenly, for mermaid"
    details = '<details class="kit-diagram-source"><summary>diagram source (mermaid)</summary>'
    assert f"{details}<pre>flowchart LR\n    {escaped}" in page
    assert ".jp-Mermaid:not(.jp-RenderedMermaid) { display: block; }" in page, "the source shows until drawn"
    assert "cdnjs.cloudflare.com" in page and build_site.DIAGRAMS_NOTE in page


@SITE
def test_widgets_in_their_last_state(site: tuple[Path, list[Lesson]]) -> None:
    page = (site[0] / "00_tiny.html").read_text()
    assert "<button disabled>Go</button>" in page
    assert '<div class="kit-w-html"><b>after</b></div>' in page and "<b>before</b></div>" not in page
    assert page.count("closed before the run ended") == 1, "the closed widget gets a note"
    assert "application/vnd.jupyter.widget-state+json" in page, "the state is embedded for the widget renderer"


@SITE
def test_a_lesson_that_fails_is_shown_with_its_error(site: tuple[Path, list[Lesson]]) -> None:
    out, lessons = site
    assert lessons[1].error is not None and "boom 123" in lessons[1].error
    assert "This run stopped at an error" in (out / "01_broken.html").read_text()
    assert "stopped at an error" in (out / "index.html").read_text()


def test_static_copies_of_the_kits_widget_types() -> None:
    models = {
        "tab": {"model_name": "TabModel", "state": {"children": ["IPY_MODEL_img", "IPY_MODEL_txt"], "titles": ["A"]}},
        "img": {
            "model_name": "ImageModel",
            "state": {"format": "png"},
            "buffers": [{"path": ["value"], "data": "iVBORw0K", "encoding": "base64"}],
        },
        "txt": {"model_name": "TextModel", "state": {"description": "Approver", "value": 'maria "m"'}},
    }
    copy = static_widget("tab", models)
    assert '<div class="kit-w-tab-title">A</div><img alt="widget image" src="data:image/png;base64,iVBORw0K">' in copy
    assert '<input disabled value="maria &quot;m&quot;"' in copy
    assert static_widget("missing", models) == ""


FAKE_MERMAID = """export default {
  initialize() {}, registerLayoutLoaders() {}, parse: async () => true,
  render: async () => ({svg: '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"></svg>'}),
};"""

_SHOWN_JS = """() => ({
  rendered: document.querySelectorAll('.jp-RenderedMermaid figure img').length,
  sourceShown: getComputedStyle(document.querySelector('pre.mermaid')).display !== 'none'
               && document.querySelector('pre.mermaid').offsetHeight > 0,
  detailsShown: getComputedStyle(document.querySelector('details.kit-diagram-source')).display !== 'none',
})"""


@pytest.fixture
def page_file(tmp_path: Path) -> Iterator[Path]:
    nb = nbformat.read(notebook(tmp_path / "00_tiny.ipynb", OPENING, DIAGRAM), as_version=4)
    page = tmp_path / "00_tiny.html"
    page.write_text(build_site.export_page(nb, "00 · Tiny", "<div>top</div>"))
    yield page


@pytest.mark.browser
@pytest.mark.full
@pytest.mark.parametrize("online", [True, False], ids=["mermaid-loads", "offline"])
def test_a_diagram_is_drawn_when_mermaid_loads_and_shown_as_source_when_not(
    browser: Browser, page_file: Path, online: bool
) -> None:
    def serve(route: Route) -> None:
        if not online:
            route.abort()
        elif "mermaid-layout-elk" in route.request.url:
            route.fulfill(
                body="export default [];", content_type="text/javascript", headers={"access-control-allow-origin": "*"}
            )
        else:
            route.fulfill(
                body=FAKE_MERMAID, content_type="text/javascript", headers={"access-control-allow-origin": "*"}
            )

    page = browser.new_page()
    try:
        page.route("https://**/*", serve)
        page.goto(page_file.as_uri())
        page.wait_for_timeout(1500)
        shown = page.evaluate(_SHOWN_JS)
    finally:
        page.close()
    if online:
        assert shown == {"rendered": 1, "sourceShown": False, "detailsShown": True}
    else:
        assert shown == {"rendered": 0, "sourceShown": True, "detailsShown": False}

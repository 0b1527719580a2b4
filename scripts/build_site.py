"""Execute the lessons and export them, with their outputs, as a small static site: `make html`.

    python scripts/build_site.py [--out site] [--readme README.md] [notebooks/NN_*.ipynb ...]

Each lesson runs top to bottom in a fresh kernel (nbclient, as nbmake does), against the Restate server the
environment points at (`make html` starts it with `make up`), then is exported with nbconvert's `lab` template
to `<out>/<lesson>.html`. `<out>/index.html` follows the README's learning path, with its times.

What a page can show without JupyterLab:
- **outputs**: everything the run printed or displayed, tables and plots included;
- **diagrams**: each ```mermaid block keeps its source visible as a code block, and becomes a picture when the
  browser can load mermaid (from cdnjs, as nbconvert's template does); the source then stays under the picture;
- **widgets**: their last state is read from the kernel at the end of the run. The page shows a static copy
  of it (buttons do nothing), and the interactive widget when the browser can load the widget renderer
  (from unpkg, nbconvert's default). A widget closed before the end has no state left: a note says so.

Exit status: 0 when every lesson ran to its end, 1 when one stopped at an error (its page is still written,
with the error), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbclient.util import ensure_async
from nbconvert import HTMLExporter

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TIMEOUT = 900
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"
_WIDGET_STATE_CODE = (
    "import json as _j, ipywidgets as _w\nprint(_j.dumps(_w.Widget.get_manager_state(drop_defaults=True)))"
)


@dataclass
class Lesson:
    """One lesson of the site: its notebook, what the README says about it, and how its run went."""

    path: Path
    title: str
    subtitle: str
    teaches: str = ""
    minutes: str = ""
    seconds: float = 0.0
    error: str | None = None
    widgets: dict[str, Any] = field(default_factory=dict)

    @property
    def page(self) -> str:
        """Return the file name of the lesson's page."""
        return self.path.stem + ".html"


# ----------------------------------------------------------------------------- README and notebooks


def learning_path(readme: str) -> dict[str, tuple[str, str]]:
    """Return {notebook stem: (what it teaches, time)} from the README's learning-path table."""
    rows = re.findall(r"^\|\s*`(\d\d_[A-Za-z0-9_]+)`\s*\|(.+?)\|\s*([^|]*?min[^|]*?)\s*\|\s*$", readme, re.M)
    return {stem: (teaches.strip(), minutes.strip()) for stem, teaches, minutes in rows}


def opening(nb: nbformat.NotebookNode) -> tuple[str, str]:
    """Return a lesson's H1 title and its `>` subtitle, from its first cell."""
    text = nb.cells[0].source if nb.cells else ""
    title = re.search(r"^# (.+)$", text, re.M)
    subtitle = re.search(r"^> (.+)$", text, re.M)
    return (title.group(1).strip() if title else "", subtitle.group(1).strip() if subtitle else "")


def read_lesson(path: Path, readme: dict[str, tuple[str, str]]) -> Lesson:
    """Read a lesson's opening and its README row."""
    title, subtitle = opening(nbformat.read(path, as_version=4))
    teaches, minutes = readme.get(path.stem, ("", ""))
    return Lesson(path, title or path.stem, subtitle, teaches, minutes)


# ----------------------------------------------------------------------------- execution


async def _execute(client: NotebookClient, nb: nbformat.NotebookNode) -> tuple[str | None, dict[str, Any]]:
    """Run every cell (as nbclient's execute does), then read every widget's last state from the kernel."""
    error = None
    async with client.async_setup_kernel():
        assert client.kc is not None
        info = await client.async_wait_for_reply(await ensure_async(client.kc.kernel_info()))
        if info is not None:
            nb.metadata["language_info"] = info["content"]["language_info"]
        try:
            for index, cell in enumerate(nb.cells):
                await client.async_execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
        except CellExecutionError as err:
            lines = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(err)).strip().splitlines()
            error = lines[-1] if lines else type(err).__name__
        client.set_widgets_metadata()
        probe = nbformat.v4.new_code_cell(_WIDGET_STATE_CODE)
        nb.cells.append(probe)  # nbclient writes the cell back at its index
        try:
            await client.async_execute_cell(probe, len(nb.cells) - 1)
        except CellExecutionError:
            return error, {}
        finally:
            nb.cells.pop()
    printed = "".join(o.get("text", "") for o in probe.outputs if o.get("output_type") == "stream")
    try:
        state: dict[str, Any] = json.loads(printed)
    except ValueError:
        return error, {}
    return error, state


def execute(path: Path, timeout: float | None = None) -> tuple[nbformat.NotebookNode, float, str | None]:
    """Execute a notebook in a fresh kernel, in its own folder; return it, the seconds taken and the error, if any."""
    nb = nbformat.read(path, as_version=4)
    limit = timeout or nb.metadata.get("execution", {}).get("timeout") or DEFAULT_TIMEOUT
    client = NotebookClient(
        nb, timeout=limit, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    started = time.monotonic()
    error, state = asyncio.run(_execute(client, nb))
    if state.get("state"):
        nb.metadata.setdefault("widgets", {})[WIDGET_STATE_MIME] = state
    return nb, time.monotonic() - started, error


# ----------------------------------------------------------------------------- widgets, as static HTML


def _ref(value: Any) -> str:
    return value[len("IPY_MODEL_") :] if isinstance(value, str) and value.startswith("IPY_MODEL_") else ""


def static_widget(model_id: str, models: dict[str, Any], depth: int = 0) -> str:
    """Return a static HTML copy of a widget (and its children) from its saved state."""
    model = models.get(model_id)
    if model is None or depth > 20:
        return ""
    name, state = model.get("model_name", ""), model.get("state", {})
    children = [static_widget(_ref(c), models, depth + 1) for c in state.get("children", [])]
    if name in ("VBoxModel", "BoxModel", "GridBoxModel"):
        return f'<div class="kit-w-col">{"".join(children)}</div>'
    if name == "HBoxModel":
        return f'<div class="kit-w-row">{"".join(children)}</div>'
    if name in ("TabModel", "AccordionModel", "StackModel"):
        titles = list(state.get("titles", []))
        parts = [
            f'<div class="kit-w-tab"><div class="kit-w-tab-title">{html.escape(str(t or ""))}</div>{child}</div>'
            for t, child in zip(titles + [""] * (len(children) - len(titles)), children, strict=False)
        ]
        return "".join(parts)
    if name in ("HTMLModel", "HTMLMathModel"):
        return f'<div class="kit-w-html">{state.get("value", "")}</div>'
    if name == "LabelModel":
        return f"<span>{html.escape(str(state.get('value', '')))}</span>"
    if name in ("ButtonModel", "ToggleButtonModel"):
        return f"<button disabled>{html.escape(str(state.get('description', '')))}</button>"
    if name in ("TextModel", "TextareaModel", "PasswordModel"):
        label = html.escape(str(state.get("description", "")))
        value = html.escape(str(state.get("value", "")), quote=True)
        hint = html.escape(str(state.get("placeholder", "")), quote=True)
        return f'<label class="kit-w-text">{label} <input disabled value="{value}" placeholder="{hint}"></label>'
    if name == "ImageModel":
        data = next((b["data"] for b in model.get("buffers", []) if b.get("path") == ["value"]), "")
        fmt = html.escape(str(state.get("format", "png")))
        return f'<img alt="widget image" src="data:image/{fmt};base64,{data}">' if data else ""
    if name == "OutputModel":
        return "".join(_static_output(o) for o in state.get("outputs", []))
    return f'<span class="kit-w-other">[{html.escape(name or "widget")}]</span>'


def _static_output(output: dict[str, Any]) -> str:
    data = output.get("data", {})
    if "text/html" in data:
        return "".join(data["text/html"])
    text = output.get("text") or "".join(data.get("text/plain", ""))
    return f"<pre>{html.escape(str(text))}</pre>" if text else ""


LOST_WIDGET_NOTE = (
    '<div class="kit-widget-copy"><div class="kit-note">A widget that was closed before the run ended, so its '
    "state is gone: run the lesson in JupyterLab to see it.</div></div>"
)


def note_lost_widgets(nb: nbformat.NotebookNode) -> int:
    """Give each widget output whose state is gone an HTML note (nbconvert would show its bare repr); count them."""
    models = nb.metadata.get("widgets", {}).get(WIDGET_STATE_MIME, {}).get("state", {})
    lost = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get("application/vnd.jupyter.widget-view+json")
            if view and view.get("model_id") not in models:
                output["data"]["text/html"] = LOST_WIDGET_NOTE
                lost += 1
    return lost


_WIDGET_VIEW = re.compile(r'(<script type="application/vnd\.jupyter\.widget-view\+json">\s*(.*?)\s*</script>)', re.S)


def add_widget_copies(page: str, state: dict[str, Any]) -> str:
    """After each widget view (nbconvert writes one only for a widget with a saved state), add its static copy."""
    models = state.get("state", {})

    def copy(match: re.Match[str]) -> str:
        try:
            model_id = str(json.loads(match.group(2)).get("model_id", ""))
        except ValueError:
            model_id = ""
        note = "A widget, as the run left it (a static copy: its buttons do nothing here)."
        body = static_widget(model_id, models)
        return f'{match.group(1)}<div class="kit-widget-copy"><div class="kit-note">{note}</div>{body}</div>'

    return _WIDGET_VIEW.sub(copy, page)


# ----------------------------------------------------------------------------- diagrams

_MERMAID = re.compile(r'<div class="jp-Mermaid"><pre class="mermaid">\n(.*?)\n</pre></div>', re.S)


def keep_diagram_sources(page: str) -> str:
    """Escape each mermaid block's source evenly (nbconvert escapes `>` but leaves `<br/>` raw) and keep a copy
    of it under the picture."""

    def fix(match: re.Match[str]) -> str:
        source = html.escape(html.unescape(match.group(1)), quote=False)
        return (
            f'<div class="jp-Mermaid"><pre class="mermaid">\n{source}\n</pre></div>'
            f'<details class="kit-diagram-source"><summary>diagram source (mermaid)</summary><pre>{source}</pre>'
            "</details>"
        )

    return _MERMAID.sub(fix, page)


# ----------------------------------------------------------------------------- pages

STYLE = """
<style>
  .kit-banner { max-width: 1100px; margin: 12px auto; padding: 10px 14px; border: 1px solid #d0d7de;
    border-radius: 6px; background: #f6f8fa; font: 14px/1.5 system-ui, sans-serif; }
  .kit-banner nav { display: flex; gap: 18px; flex-wrap: wrap; margin-bottom: 4px; }
  .kit-banner p { margin: 4px 0; }
  .kit-error { color: #9b1c1c; font-weight: 600; }
  .jp-Mermaid:not(.jp-RenderedMermaid) { display: block; }
  .jp-Mermaid:not(.jp-RenderedMermaid) pre.mermaid { display: block; padding: 8px; margin: 6px 0;
    border: 1px solid #e0e0e0; background: #f7f7f7; font: 12px/1.4 monospace; white-space: pre; overflow: auto; }
  .jp-Mermaid:not(.jp-RenderedMermaid) + details.kit-diagram-source { display: none; }
  details.kit-diagram-source pre { font: 12px/1.4 monospace; background: #f7f7f7; padding: 8px; overflow: auto; }
  .kit-widget-copy { border: 1px dashed #bbb; padding: 6px 10px; margin: 4px 0; font: 13px/1.4 system-ui, sans-serif; }
  .jupyter-widgets:has(.widget-subarea) > .kit-widget-copy { display: none; }
  .kit-note { font-style: italic; color: #555; margin-bottom: 4px; }
  .kit-w-row { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
  .kit-w-col { display: flex; flex-direction: column; gap: 4px; align-items: flex-start; }
  .kit-w-tab-title { font-weight: 600; margin-top: 6px; }
  .kit-w-html table { border-collapse: collapse; }
  .kit-w-html td, .kit-w-html th { padding: 2px 8px; }
</style>
"""

DIAGRAMS_NOTE = (
    "Diagrams are drawn by mermaid, which this page loads from cdnjs.cloudflare.com: with no network you see "
    "each diagram's source as a code block instead, and once drawn, the source stays under the picture."
)
WIDGETS_NOTE = (
    "Widgets are shown as a static copy of their last state; when the page can load the widget renderer "
    "(from unpkg.com) it draws them as JupyterLab does, in that same state."
)


def banner(lesson: Lesson, previous: Lesson | None, following: Lesson | None, built: str, model: str) -> str:
    """Return the box at the top of a lesson page: navigation, how and when it ran, what the page can show."""
    links = ['<a href="index.html">the learning path</a>']
    if previous:
        links.append(f'<a href="{previous.page}">&larr; {html.escape(previous.title)}</a>')
    if following:
        links.append(f'<a href="{following.page}">{html.escape(following.title)} &rarr;</a>')
    if lesson.error:
        ran = f'<p class="kit-error">This run stopped at an error: {html.escape(lesson.error)}</p>'
    else:
        ran = f"<p>Executed top to bottom in {lesson.seconds:.0f} s on {built}, on {html.escape(model)}.</p>"
    notes = f"<p>{DIAGRAMS_NOTE} {WIDGETS_NOTE if lesson.widgets else ''}</p>"
    return f'<div class="kit-banner"><nav>{" · ".join(links)}</nav>{ran}{notes}</div>'


def export_page(nb: nbformat.NotebookNode, title: str, top: str) -> str:
    """Export an executed notebook with nbconvert's lab template, plus the kit's banner, notes and styles."""
    note_lost_widgets(nb)
    exporter = HTMLExporter(template_name="lab")
    page, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE_MIME, {})
    page = add_widget_copies(keep_diagram_sources(page), state)
    page = page.replace("</head>", STYLE + "</head>", 1)
    return re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + top, page, count=1)


def _inline_code(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


def build_index(lessons: list[Lesson], built: str, model: str) -> str:
    """Return index.html: the lessons in reading order, with what each teaches and its time from the README."""
    total = sum(int(m.group()) for lesson in lessons if (m := re.search(r"\d+", lesson.minutes)))
    rows = []
    for lesson in lessons:
        status = (
            '<span class="kit-error">stopped at an error</span>' if lesson.error else f"ran in {lesson.seconds:.0f} s"
        )
        rows.append(
            f'<tr><td><a href="{lesson.page}">{html.escape(lesson.title)}</a>'
            f'<div class="sub">{_inline_code(lesson.subtitle)}</div></td>'
            f"<td>{_inline_code(lesson.teaches)}</td><td>{html.escape(lesson.minutes)}</td><td>{status}</td></tr>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Durable Agents: the lessons</title>
<style>
  body {{ font: 15px/1.5 system-ui, sans-serif; max-width: 1100px; margin: 24px auto; padding: 0 16px; }}
  table {{ border-collapse: collapse; width: 100%; }}
  th, td {{ text-align: left; vertical-align: top; padding: 8px; border-bottom: 1px solid #ddd; }}
  .sub {{ color: #555; font-size: 13px; }}
  td:nth-child(n+3) {{ white-space: nowrap; }}
  .kit-error {{ color: #9b1c1c; font-weight: 600; }}
  code {{ background: #f3f3f3; padding: 0 3px; border-radius: 3px; }}
</style></head>
<body>
<h1>Durable Agents: the lessons, executed</h1>
<p>Every lesson of the course, in reading order, with the outputs of a full run
on {built}, on {html.escape(model)}. Read them here before you install anything;
run them yourself with <code>make lab</code>.
The times are for a learner reading and running the cells: {total} minutes in all.</p>
<p>{DIAGRAMS_NOTE} {WIDGETS_NOTE}</p>
<table>
<tr><th>lesson</th><th>what it teaches</th><th>time</th><th>this run</th></tr>
{chr(10).join(rows)}
</table>
</body></html>
"""


# ----------------------------------------------------------------------------- main


def build(paths: list[Path], out: Path, readme_text: str, model: str) -> list[Lesson]:
    """Execute each lesson, write its page and the index into `out`; return the lessons with their runs."""
    out.mkdir(parents=True, exist_ok=True)
    table = learning_path(readme_text)
    lessons = [read_lesson(p, table) for p in paths]
    built = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    executed = {}
    for lesson in lessons:
        print(f"executing {lesson.path.name} ...", flush=True)
        nb, lesson.seconds, lesson.error = execute(lesson.path)
        lesson.widgets = nb.metadata.get("widgets", {}).get(WIDGET_STATE_MIME, {}).get("state", {})
        executed[lesson.path] = nb
        verdict = f"stopped at an error: {lesson.error}" if lesson.error else "done"
        print(f"  {lesson.path.name}: {verdict} in {lesson.seconds:.0f} s", flush=True)
    for i, lesson in enumerate(lessons):
        previous = lessons[i - 1] if i > 0 else None
        following = lessons[i + 1] if i + 1 < len(lessons) else None
        top = banner(lesson, previous, following, built, model)
        (out / lesson.page).write_text(export_page(executed[lesson.path], lesson.title, top))
    (out / "index.html").write_text(build_index(lessons, built, model))
    return lessons


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, build the site, say where it is; return the exit status."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", type=Path, help="lessons (default: notebooks/NN_*.ipynb)")
    ap.add_argument("--out", type=Path, default=REPO / "site", help="output folder (default: site/)")
    ap.add_argument("--readme", type=Path, default=REPO / "README.md", help="README with the learning path")
    args = ap.parse_args(argv)
    paths = args.notebooks or sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    missing = [p for p in paths if not p.is_file()]
    if missing:
        print(f"no such notebook: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    from agent_lib.models import model_description

    started = time.monotonic()
    lessons = build([p.resolve() for p in paths], args.out, args.readme.read_text(), model_description())
    failed = [lesson.path.name for lesson in lessons if lesson.error]
    print(f"wrote {args.out / 'index.html'} and {len(lessons)} pages in {time.monotonic() - started:.0f} s")
    if failed:
        print(f"these lessons stopped at an error (their pages show it): {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Read the lessons' mermaid diagrams, and the journal-step names they quote, for the diagram tests.

A diagram names a durable step as `Run "name"` (in a flowchart label, `Run #quot;name#quot;`). The names it may
quote are the ones the lesson asserts, and the `run_typed("name", ...)` steps that agent_lib or the SDK's ADK
integration it uses journals.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

_FENCE = re.compile(r"^```mermaid[ \t]*\n(.*?)^```", re.M | re.S)
_RUN = re.compile(r'\bRun "([^"\n]+)"')
_RUN_TYPED = re.compile(r'run_typed\(\s*"([^"]+)"')


def cells(path: Path) -> list[dict[str, object]]:
    """Return a notebook's cells."""
    cells: list[dict[str, object]] = json.loads(path.read_text())["cells"]
    return cells


def source(cell: dict[str, object]) -> str:
    """Return a cell's source as one string."""
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)  # type: ignore[arg-type]


def mermaid_blocks(markdown: str) -> list[str]:
    """Return the body of every ```mermaid block in a markdown text."""
    return [m.group(1) for m in _FENCE.finditer(markdown)]


def notebook_diagrams(path: Path) -> list[str]:
    """Return every mermaid diagram of a notebook, in order."""
    return [d for c in cells(path) if c["cell_type"] == "markdown" for d in mermaid_blocks(source(c))]


def quoted_steps(diagram: str) -> list[str]:
    """Return the step names a diagram quotes as `Run "name"`, in order."""
    return _RUN.findall(diagram.replace("#quot;", '"'))


def _code_tree(src: str) -> ast.AST | None:
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    try:
        tree: ast.AST = compile(src, "<cell>", "exec", flags=flags)
    except SyntaxError:
        return None
    return tree


def asserted_strings(path: Path) -> set[str]:
    """Return every string literal inside the `assert` statements of a lesson's code cells."""
    found: set[str] = set()
    for cell in cells(path):
        tree = _code_tree(source(cell)) if cell["cell_type"] == "code" else None
        for node in ast.walk(tree) if tree else ():
            if isinstance(node, ast.Assert):
                found |= {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return found


def asserted_step_lists(path: Path) -> list[list[str]]:
    """Return the lists a lesson asserts `admin.steps(...)` equal to, e.g. ["call LLM", "Get weather", ...]."""
    lists = []
    for cell in cells(path):
        tree = _code_tree(source(cell)) if cell["cell_type"] == "code" else None
        for node in ast.walk(tree) if tree else ():
            if not (isinstance(node, ast.Compare) and isinstance(node.left, ast.Call)):
                continue
            func = node.left.func
            if isinstance(func, ast.Attribute) and func.attr == "steps" and isinstance(node.comparators[0], ast.List):
                items = node.comparators[0].elts
                lists.append([e.value for e in items if isinstance(e, ast.Constant) and isinstance(e.value, str)])
    return lists


def journaled_names() -> set[str]:
    """Return the names of the `run_typed` steps that agent_lib and the SDK's ADK integration journal."""
    import restate.ext.adk

    sdk = Path(restate.ext.adk.__file__).parent
    files = [*(ROOT / "agent_lib").rglob("*.py"), *sdk.glob("*.py")]
    return {name for f in files for name in _RUN_TYPED.findall(f.read_text())}


def unknown_steps(path: Path, known: set[str] | None = None) -> list[str]:
    """Return the steps a lesson's diagrams quote that neither the lesson asserts nor agent_lib journals."""
    allowed = asserted_strings(path) | (journaled_names() if known is None else known)
    return [s for d in notebook_diagrams(path) for s in quoted_steps(d) if s not in allowed]

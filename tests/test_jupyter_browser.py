"""End-to-end check of the JupyterLab browser harness on throw-away notebooks."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from tests.jupyter_browser import LabPage, LabServer, jupyter_lab

# Tests of the browser harness itself (make test-all); tests/test_browser_approval.py drives it in `make test`.
pytestmark = [pytest.mark.browser, pytest.mark.full]

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def write_notebook(path: Path, *cells: str) -> Path:
    """Write an nbformat 4 notebook; a cell starting with '# ' is markdown, others code."""

    def cell(i: int, src: str) -> dict[str, object]:
        if src.startswith("# "):
            return {"id": f"c{i}", "cell_type": "markdown", "metadata": {}, "source": src}
        code: dict[str, object] = {"outputs": [], "execution_count": None}
        return {"id": f"c{i}", "cell_type": "code", "metadata": {}, "source": src, **code}

    nb = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": KERNELSPEC},
        "cells": [cell(i, c) for i, c in enumerate(cells)],
    }
    path.write_text(json.dumps(nb, indent=1))
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """A private JupyterLab rooted in a temp dir, with a marker in the kernel's env."""
    with jupyter_lab(tmp_path_factory.mktemp("lab"), env={"JB_MARKER": "from-the-test"}) as srv:
        yield srv


def test_run_all_and_click_a_widget_button(browser: Browser, lab: LabServer) -> None:
    flag = lab.root_dir / "clicked.txt"
    write_notebook(
        lab.root_dir / "widgets.ipynb",
        "# Harness check",
        "import os, sys\n"
        "value = 6 * 7\n"
        "print('value is', value, os.environ['JB_MARKER'], sys.prefix)\n"
        "assert value == 42",
        "import ipywidgets as w, pathlib\n"
        "label = w.Label('not clicked')\n"
        "button = w.Button(description='Go')\n"
        "def on_click(_):\n"
        f"    pathlib.Path({str(flag)!r}).write_text('yes')\n"
        "    label.value = 'clicked!'\n"
        "button.on_click(on_click)\n"
        "w.VBox([button, label])",
    )
    nb = LabPage.open(browser, lab, "widgets.ipynb")
    try:
        assert nb.run_all(timeout=120), nb.errors()
        texts = nb.cell_output_texts()
        assert texts[0] == ""
        assert f"value is 42 from-the-test {sys.prefix}" in texts[1]  # env reaches kernel
        assert "not clicked" in texts[2] and not flag.exists()

        nb.click_button("Go")
        assert nb.wait_for_text("clicked!", timeout=30) == 2
        assert flag.read_text() == "yes"  # written before the label changed
        nb.wait_idle()
        assert nb.errors() == []
    finally:
        nb.close()


def test_errors_reports_the_failing_cell(browser: Browser, lab: LabServer) -> None:
    write_notebook(
        lab.root_dir / "broken.ipynb",
        "print('before')",
        "raise ValueError('boom 123')",
        "print('after')",
    )
    nb = LabPage.open(browser, lab, lab.root_dir / "broken.ipynb")
    try:
        assert nb.run_all(timeout=120) is False
        (err,) = nb.errors()
        assert (err.cell, err.ename, err.evalue) == (1, "ValueError", "boom 123")
        assert "raise ValueError('boom 123')" in err.traceback
        assert "\x1b[" not in err.traceback
        before, failed, after = nb.cell_output_texts()
        assert before.strip() == "before" and "boom 123" in failed
        assert after == ""  # run-all stops at the error

        assert nb.run("notebook:run-all-below", cell=2, timeout=120)  # resume past the error
        assert nb.cell_output_texts()[2] == "after\n"
        assert len(nb.errors()) == 1
    finally:
        nb.close()

"""Screenshot a notebook as a learner sees it in JupyterLab (headless Chromium).

    python scripts/screenshot_notebook.py notebooks/01_weather_agent.ipynb out.png [--run] [--timeout 300]

Starts a private JupyterLab (free port, random token) rooted at the repo, with the
current environment passed through to it and its kernels, opens the notebook,
optionally runs all cells, writes a full-page PNG and prints every error output.
Nothing is saved back into the notebook. Exit status: 0 fine, 1 error outputs,
3 the run did not finish (the screenshot is still written), 4 no chromium.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.jupyter_browser import SKIP_REASON, LabError, LabPage, chromium, chromium_path, jupyter_lab  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, take the screenshot, return the exit status."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebook", type=Path, help="the .ipynb, inside --root")
    ap.add_argument("output", type=Path, help="PNG to write")
    ap.add_argument("--run", action="store_true", help="run all cells first and wait for them")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds allowed for the run (default 300)")
    ap.add_argument("--root", type=Path, default=REPO, help="lab root directory (default: the repo)")
    ap.add_argument("--width", type=int, default=1400, help="viewport width (default 1400)")
    ap.add_argument("--height", type=int, default=900, help="viewport height without --viewport-only growth")
    ap.add_argument("--viewport-only", action="store_true", help="only the visible part, not the whole notebook")
    ap.add_argument("--hide-sidebar", action="store_true", help="collapse the file browser for a wider notebook")
    args = ap.parse_args(argv)

    if chromium_path() is None:
        print(SKIP_REASON, file=sys.stderr)
        return 4
    root = args.root.resolve()
    notebook = args.notebook.resolve()
    if not notebook.is_file():
        ap.error(f"no such notebook: {args.notebook}")
    if not notebook.is_relative_to(root):
        ap.error(f"{notebook} is not inside the lab root {root} (use --root)")

    status = 0
    t0 = time.monotonic()
    with jupyter_lab(root) as lab, chromium() as browser:
        t1 = time.monotonic()
        print(f"lab up in {t1 - t0:.1f}s at {lab.url}", file=sys.stderr)
        nb = LabPage.open(browser, lab, notebook, viewport=(args.width, args.height))
        t2 = time.monotonic()
        print(f"notebook open, kernel idle in {t2 - t1:.1f}s", file=sys.stderr)
        if args.hide_sidebar:
            nb.collapse_sidebars()
        if args.run:
            try:
                ok = nb.run_all(timeout=args.timeout)
                print(f"run all {'finished' if ok else 'stopped at an error'} in {time.monotonic() - t2:.1f}s",
                      file=sys.stderr)  # fmt: skip
            except LabError as exc:
                print(f"run did not finish: {exc}", file=sys.stderr)
                status = 3
        shot = nb.screenshot(args.output, full_page=not args.viewport_only)
        print(f"wrote {shot}", file=sys.stderr)
        errors = nb.errors()
        for err in errors:
            print(f"--- error in cell {err.cell}: {err.ename}: {err.evalue}\n{err.traceback}")
        if errors and status == 0:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())

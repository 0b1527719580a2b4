"""Strip outputs and execution counts from notebooks; with --check, fail if any would change.

Every notebook must also carry kernelspec metadata, or JupyterLab asks which kernel to use.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def clean(nb: dict) -> dict:
    """Return the notebook without outputs, execution counts or volatile metadata."""
    for index, cell in enumerate(nb.get("cells", [])):
        if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) >= (4, 5) and "id" not in cell:
            cell["id"] = f"cell-{index}"
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell.get("metadata", {}).pop("execution", None)
        cell.get("metadata", {}).pop("collapsed", None)
    meta = nb.setdefault("metadata", {})
    meta.setdefault("kernelspec", dict(KERNELSPEC))
    meta.pop("widgets", None)
    return nb


def dump(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook is not clean")
    parser.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args()
    files = sorted(f for p in args.paths for f in ([p] if p.is_file() else p.rglob("*.ipynb")))
    files = [f for f in files if ".ipynb_checkpoints" not in f.parts]
    dirty = []
    for path in files:
        text = path.read_text()
        new = dump(clean(json.loads(text)))
        if new != text:
            dirty.append(path)
            if not args.check:
                path.write_text(new)
    verb = "not clean (run `make strip`)" if args.check else "stripped"
    for path in dirty:
        print(f"{path}: {verb}")
    return 1 if (args.check and dirty) else 0


if __name__ == "__main__":
    sys.exit(main())

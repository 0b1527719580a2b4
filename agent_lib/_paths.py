"""Where the kit keeps its files: the repo root and the `.restate/` data dir."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Return the kit's data dir (`RESTATE_KIT_DATA`, else `<repo>/.restate`), creating it."""
    path = Path(os.environ.get("RESTATE_KIT_DATA", REPO_ROOT / ".restate"))
    path.mkdir(parents=True, exist_ok=True)
    return path

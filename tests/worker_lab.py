"""A lab of its own for every pytest-xdist worker: `make test` runs the suite in parallel and shares nothing that races.

Loaded for every pytest run (`-p tests.worker_lab` in pyproject.toml); it does nothing outside an xdist worker
(one that xdist itself started: a pytest that a test runs in a subprocess inherits PYTEST_XDIST_WORKER, but is
not a worker). In a worker (gw0, gw1, ...), before any test is collected, it starts

- a Restate server on free ports, with its data in `<RESTATE_KIT_DATA or .restate-xdist>/<worker>/`
  (wiped at the start, kept afterwards for its logs),
- the finished agents, on a free port, registered with it (what `make up` gives the lab); like the lab, the server
  signs its requests (a key pair in `<data>/identity/`) and the agents refuse unsigned ones, so the whole suite runs
  with signing on (agent_lib/lab.py),

and points the worker at them: RESTATE_INGRESS_URL, RESTATE_ADMIN_URL, AGENTS_PORT and RESTATE_KIT_DATA, so
the lessons executed by nbmake (their kernels inherit the worker's environment), the tests and every process
they start use this worker's lab. The pid files, logs, ledger, gates and progress follow RESTATE_KIT_DATA, so
they are the worker's too. A lesson and its solution, which register the same service names, never meet on one
server unless they run one after the other in the same worker.

Everything else a mode sets (RESTATE_ALWAYS_REPLAY, a Gemini stub's URL and fake key) is inherited, so
`scripts/lesson_mode.py ... -- -n 3` runs a mode in parallel too. When the worker ends, its lab stops.

A mode's plain run (scripts/lesson_mode.py without `-n`, which sets KIT_MODE_LAB) gets its lab here too: the one
pytest process starts it in RESTATE_KIT_DATA itself, on the ports KIT_MODE_LAB names. xdist's controller, which
runs no test, starts none: pytest's own options say whether this process is one (nothing re-parses `-n`).

It also orders the collection so the long items start first (every worker begins with a notebook), which
shortens the tail of a parallel run; the order inside each group is kept.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agent_lib.lab import Lab, LabConfig

REPO = Path(__file__).resolve().parent.parent

FIRST = ("notebooks/08_", "notebooks/solutions/08_", "notebooks/05_", "notebooks/02_", "notebooks/solutions/02_")
"""The longest items (lesson 08's cluster, 05's fan-out, 02's crashes): they start before everything else."""

MODE_LAB_ENV = "KIT_MODE_LAB"
"""Set by scripts/lesson_mode.py to the mode's ports (JSON: ingress, admin, node, agents; 0 for a free one)."""

_LAB = pytest.StashKey[Lab]()


def _worker(config: pytest.Config) -> str | None:
    """Return this xdist worker's id (gw0, ...), or None in the controller or a plain pytest."""
    workerinput = getattr(config, "workerinput", None)
    return str(workerinput["workerid"]) if workerinput else None


def _lab_config(config: pytest.Config) -> LabConfig | None:
    """Return the lab this pytest process needs: a worker's, a mode's plain run's, or none."""
    mode_ports = os.environ.pop(MODE_LAB_ENV, None)  # consumed: a pytest that a test starts does not inherit it
    worker = _worker(config)
    if worker is not None:
        return LabConfig(data=Path(os.environ.get("RESTATE_KIT_DATA") or REPO / ".restate-xdist") / worker)
    controller = bool(getattr(config.option, "numprocesses", None))  # xdist's: it starts workers, runs no test
    if mode_ports is None or controller:
        return None
    ports = {f"{name}_port": int(port) for name, port in json.loads(mode_ports).items()}
    return LabConfig(data=Path(os.environ["RESTATE_KIT_DATA"]), wipe=False, **ports)


def pytest_configure(config: pytest.Config) -> None:
    lab = _lab_config(config)
    if lab is not None:
        config.stash[_LAB] = Lab(lab).start()  # on a failure it stops what it started


def pytest_unconfigure(config: pytest.Config) -> None:
    lab = config.stash.get(_LAB, None)
    if lab is not None:
        lab.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, start the long items first: notebooks (lesson 08, 05, 02 before the rest), then the tests."""
    if _worker(config) is None:
        return

    def rank(item: pytest.Item) -> int:
        path = Path(str(item.path)).resolve()
        try:
            where = path.relative_to(REPO).as_posix()
        except ValueError:
            return len(FIRST) + 1
        for i, prefix in enumerate(FIRST):
            if where.startswith(prefix):
                return i
        return len(FIRST) if where.startswith("notebooks/") else len(FIRST) + 1

    items.sort(key=rank)

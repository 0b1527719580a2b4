"""What every figure shares: the machine it ran on, a private server, statistics."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from agent_lib.clients import Admin, Ingress
from agent_lib.server import RestateServer, free_port, pinned_version

__all__ = ["Bench", "machine", "private_server", "summary", "timed"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """Describe the machine and the software the figures came from."""
    versions = {}
    for pkg in ("restate-sdk", "google-adk", "hypercorn", "httpx", "uvloop"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "restate_server": pinned_version(),
        "packages": versions,
        "load_average": list(os.getloadavg()),
        "bytecode": _bytecode(),
    }


def _bytecode() -> str:
    """Say whether the packages were compiled at install, and whether Python may write what is missing."""
    from bench.bytecode import bytecode_present

    present = "compiled at install" if bytecode_present() else "NOT compiled at install (run `make sync`)"
    written = "not written" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "written"
    return f"{present}; new .pyc {written} (PYTHONDONTWRITEBYTECODE)"


def summary(seconds: Sequence[float]) -> dict[str, float]:
    """Return n, median, p95, mean and min of samples in seconds, as milliseconds."""
    if not seconds:
        raise ValueError("no samples to summarize")
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return {
        "n": len(ordered),
        "median_ms": statistics.median(ordered) * 1000,
        "p95_ms": p95 * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
        "min_ms": ordered[0] * 1000,
    }


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """Measure the wall time of a block: the list holds it (in seconds) once the block ends."""
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)


@dataclass
class Bench:
    """A private server and where its agents keep their files."""

    server: RestateServer
    data: Path

    @property
    def admin(self) -> Admin:
        """The admin client of the private server."""
        return Admin(self.server.admin_url)

    @property
    def ingress(self) -> Ingress:
        """The ingress client of the private server."""
        return Ingress(self.server.ingress_url)


@contextlib.contextmanager
def private_server(env: dict[str, str] | None = None) -> Iterator[Bench]:
    """Start a private Restate server on free ports in a temp dir; point this process's agent files there."""
    with tempfile.TemporaryDirectory(prefix="restate-bench-") as tmp:
        data = Path(tmp)
        old = {k: os.environ.get(k) for k in ("RESTATE_KIT_DATA", "AGENT_LEDGER", "AGENT_GATE_DIR")}
        os.environ["RESTATE_KIT_DATA"] = str(data / "kit")
        os.environ["AGENT_LEDGER"] = str(data / "kit" / "ledger.sqlite")
        os.environ["AGENT_GATE_DIR"] = str(data / "kit" / "gates")
        server = RestateServer(
            data / "restate", ingress_port=free_port(), admin_port=free_port(), node_port=free_port(), env=env
        )
        try:
            with server:
                yield Bench(server, data)
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

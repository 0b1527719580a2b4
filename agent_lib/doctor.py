"""Check that the course can run here, and say what to fix: lesson 00 and `python -m agent_lib doctor`."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from dataclasses import dataclass

from . import server as _server
from ._paths import REPO_ROOT
from .clients import Admin, admin_url, ingress_url
from .gemini import check_key
from .models import model_description

__all__ = ["Check", "pinned_packages", "run_checks"]


@dataclass(frozen=True)
class Check:
    """One check: what was looked at, whether it is fine, and what to do if not."""

    area: str
    ok: bool
    detail: str
    fix: str = ""


def pinned_packages() -> dict[str, str]:
    """Return {package: version} as pinned in requirements.txt."""
    pins = {}
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s#]+)", line.strip())
        if m:
            pins[m.group(1)] = m.group(3)
    return pins


def _python() -> Check:
    version = sys.version.split()[0]
    if sys.version_info >= (3, 12):  # noqa: UP036 - the point is to tell a learner on an old Python
        return Check("python", True, f"Python {version} at {sys.executable}")
    return Check("python", False, f"Python {version}", "the course needs Python 3.12 or newer: run `make setup`")


def _packages() -> list[Check]:
    checks = []
    for name, want in pinned_packages().items():
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            checks.append(Check("packages", False, f"{name} is not installed", "run `make setup`"))
            continue
        fix = "" if have == want else f"the course pins {want}: run `make setup`"
        checks.append(Check("packages", have == want, f"{name} {have}", fix))
    return checks


def _binary() -> Check:
    try:
        binary = _server.find_server_binary()
    except _server.ServerError as err:
        return Check("server binary", False, "restate-server not found", str(err))
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30).stdout.split()
    version, pinned = (out[-1] if out else "?"), _server.pinned_version()
    fix = "" if version == pinned else f"package.json pins {pinned}: run `make setup`"
    return Check("server binary", version == pinned, f"restate-server {version} at {binary}", fix)


def _port(what: str, url: str, server_up: bool) -> Check:
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    if server_up:
        return Check("ports", True, f"a Restate server answers at {url} ({what})")
    if _server.port_is_free(port):
        return Check("ports", True, f"port {port} ({what}) is free: `make lab` starts Restate there")
    return Check(
        "ports",
        False,
        f"port {port} ({what}) is taken by something that is not Restate",
        "stop it, or set RESTATE_INGRESS_URL / RESTATE_ADMIN_URL to a Restate server",
    )


def run_checks() -> list[Check]:
    """Run every check: Python, pinned packages, the server binary, the ports and the model (and its key)."""
    server_up = Admin(admin_url()).health()
    return [
        _python(),
        *_packages(),
        _binary(),
        _port("ingress", ingress_url(), server_up),
        _port("admin API and UI", admin_url(), server_up),
        _model(),
    ]


def _model() -> Check:
    """With a key, ask Gemini once whether it accepts it; without one, say the offline model is in use."""
    verdict = check_key()
    if verdict.state == "offline":
        return Check("model", True, f"agents run on {model_description()}")
    return Check("model", verdict.ok, f"{verdict.state}: {verdict.detail}", verdict.fix)

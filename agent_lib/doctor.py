"""Check that the course can run here, and say what to fix: lesson 00 and `python -m agent_lib doctor`."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import server as _server
from ._paths import REPO_ROOT
from .clients import Admin, admin_url, ingress_url
from .gemini import check_key
from .models import model_description

__all__ = [
    "Check",
    "Drift",
    "LAB_LOCK",
    "LAB_PINS",
    "installed_packages",
    "lock_drift",
    "locked_packages",
    "pinned_packages",
    "platform_check",
    "run_checks",
    "server_builds",
]

LAB_PINS = REPO_ROOT / "requirements" / "lab.in"
"""The lessons' direct pins (the maintainers' extra ones are in requirements/dev.in)."""
LAB_LOCK = REPO_ROOT / "requirements" / "lab.txt"
"""The lessons' whole package tree, locked with hashes by `make lock`; `make setup` installs exactly this."""
_INSTALLER_ONLY = {"pip"}  # the venv's own installer: in every venv, in no lock


@dataclass(frozen=True)
class Check:
    """One check: what was looked at, whether it is fine, and what to do if not."""

    area: str
    ok: bool
    detail: str
    fix: str = ""


def pinned_packages(path: Path = LAB_PINS) -> dict[str, str]:
    """Return {package: version} as pinned (==) in requirements/lab.in, the lessons' direct pins."""
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s#;]+)", line.strip())
        if m:
            pins[m.group(1)] = m.group(3)
    return pins


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_packages(lock: Path = LAB_LOCK) -> dict[str, str]:
    """Return {normalized name: version} for what a lock installs on this Python and platform (markers applied)."""
    from packaging.markers import Marker  # in every locked set (jupyterlab needs it); kept out of import time

    locked = {}
    for line in lock.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)\s*(?:;([^\\]*))?", line)
        if m and (not m.group(3) or Marker(m.group(3).strip()).evaluate()):
            locked[_normalize(m.group(1))] = m.group(2)
    return locked


def installed_packages() -> dict[str, str]:
    """Return {normalized name: version} for every distribution this Python sees, but the venv's pip."""
    found = {_normalize(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    return {name: version for name, version in found.items() if name not in _INSTALLER_ONLY}


@dataclass(frozen=True)
class Drift:
    """How an environment differs from a lock: packages missing, at another version, or not in the lock."""

    missing: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.wrong or self.extra)


def lock_drift(lock: Path = LAB_LOCK, installed: dict[str, str] | None = None) -> Drift:
    """Compare the installed packages (or `installed`) with a lock, for this Python and platform."""
    want, have = locked_packages(lock), installed_packages() if installed is None else installed
    return Drift(
        missing=[f"{n} (locked {v}) is not installed" for n, v in sorted(want.items()) if n not in have],
        wrong=[f"{n} {have[n]} (locked {v})" for n, v in sorted(want.items()) if n in have and have[n] != v],
        extra=[f"{n} {v} is not in the lock" for n, v in sorted(have.items()) if n not in want],
    )


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
            checks.append(Check("packages", False, f"{name} is not installed", "run `make sync`"))
            continue
        fix = "" if have == want else f"the course pins {want}: run `make sync`"
        checks.append(Check("packages", have == want, f"{name} {have}", fix))
    return checks


def _lock() -> Check:
    drift = lock_drift(LAB_LOCK)  # packages beyond the lock are fine here: a maintainer's tools, a learner's own
    name = LAB_LOCK.relative_to(REPO_ROOT)
    problems = drift.missing + drift.wrong
    if not problems:
        return Check(
            "packages", True, f"the {len(locked_packages(LAB_LOCK))} packages of {name}, at their locked versions"
        )
    shown = ", ".join(problems[:4]) + (f" and {len(problems) - 4} more" if len(problems) > 4 else "")
    return Check("packages", False, f"{len(problems)} package(s) differ from {name}: {shown}", "run `make sync`")


def _binary() -> Check:
    try:
        binary = _server.find_server_binary()
    except _server.ServerError as err:
        return Check("server binary", False, "restate-server not found", str(err))
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30).stdout.split()
    version, pinned = (out[-1] if out else "?"), _server.pinned_version()
    fix = "" if version == pinned else f"package.json pins {pinned}: run `make setup`"
    return Check("server binary", version == pinned, f"restate-server {version} at {binary}", fix)


_NPM_OS = {"Linux": "linux", "Darwin": "darwin", "Windows": "win32"}
_NPM_CPU = {"x86_64": "x64", "amd64": "x64", "x64": "x64", "aarch64": "arm64", "arm64": "arm64"}
_SERVER = "@restatedev/restate-server"


def server_builds(lock: Mapping[str, Any]) -> dict[str, str]:
    """Return {"<os>-<cpu>": npm package} for every native build of the server that package-lock.json pins."""
    packages = lock.get("packages", {})
    builds = {}
    for name in packages.get(f"node_modules/{_SERVER}", {}).get("optionalDependencies", {}):
        entry = packages.get(f"node_modules/{name}", {})
        for os_name in entry.get("os", []):
            for cpu in entry.get("cpu", []):
                builds[f"{os_name}-{cpu}"] = name
    return builds


def platform_check(system: str, machine: str, release: str, lock: Mapping[str, Any], external: bool = False) -> Check:
    """Say which platform this is and whether the pinned native server runs on it (`external`: a server is set)."""
    builds = server_builds(lock)
    version = lock.get("packages", {}).get(f"node_modules/{_SERVER}", {}).get("version", "?")
    wsl = "microsoft" in release.lower()
    where = f"{system} {machine}" + (" (WSL 2)" if "wsl2" in release.lower() else " (WSL 1)" if wsl else "")
    if system == "Windows":
        return Check(
            "platform",
            False,
            f"{where}: restate-server {version} has no Windows build, and the course stops processes with POSIX "
            "signals",
            "run the course inside WSL 2 (Ubuntu): the README's 'Windows' section has the steps",
        )
    if wsl and "wsl2" not in release.lower():
        return Check("platform", False, where, "the course needs WSL 2: `wsl --set-version <distro> 2` in PowerShell")
    key = f"{_NPM_OS.get(system, system.lower())}-{_NPM_CPU.get(machine.lower(), machine.lower())}"
    if key in builds:
        return Check("platform", True, f"{where}: restate-server {version} has a native build for it ({builds[key]})")
    detail = f"{where}: restate-server {version} has native builds for {', '.join(sorted(builds))} only"
    if external:
        own = "; you use a server of your own (RESTATE_ADMIN_URL), but lessons 03, 05, 08 and 09 start native ones"
        return Check("platform", True, detail + own)
    return Check(
        "platform",
        False,
        detail,
        "run the server in Docker (docs/DOCKER.md) and set RESTATE_INGRESS_URL / RESTATE_ADMIN_URL to it",
    )


def _platform() -> Check:
    try:
        lock = json.loads((REPO_ROOT / "package-lock.json").read_text())
    except (OSError, ValueError):
        lock = {}
    external = bool(os.environ.get("RESTATE_ADMIN_URL"))
    return platform_check(platform.system(), platform.machine(), platform.release(), lock, external)


def _tools() -> Check:
    found = {tool: shutil.which(tool) for tool in ("make", "npm")}
    detail = "; ".join(f"{tool} at {path}" if path else f"no {tool} on PATH" for tool, path in found.items())
    if not found["make"]:
        detail += " (fine once set up: the README's 'Without make' has the same steps as plain commands)"
    return Check("tools", True, detail)


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
    """Run every check: the platform, Python, pinned packages, the server binary, the ports and the model (and key)."""
    server_up = Admin(admin_url()).health()
    return [
        _platform(),
        _tools(),
        _python(),
        *_packages(),
        _lock(),
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

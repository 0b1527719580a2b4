"""The doctor's platform check, on faked platforms, against the package-lock.json the course pins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent_lib.doctor import platform_check, run_checks, server_builds

LOCK = json.loads((Path(__file__).resolve().parent.parent / "package-lock.json").read_text())
NATIVE = "@restatedev/restate-server-"


def test_the_pinned_server_has_the_four_builds() -> None:
    assert server_builds(LOCK) == {
        "linux-x64": NATIVE + "linux-x64",
        "linux-arm64": NATIVE + "linux-arm64",
        "darwin-x64": NATIVE + "darwin-x64",
        "darwin-arm64": NATIVE + "darwin-arm64",
    }


@pytest.mark.parametrize(
    ("system", "machine", "release", "build"),
    [
        ("Linux", "x86_64", "6.1.0-13-amd64", "linux-x64"),
        ("Linux", "aarch64", "6.5.0-raspi", "linux-arm64"),
        ("Darwin", "arm64", "23.4.0", "darwin-arm64"),
        ("Darwin", "x86_64", "22.6.0", "darwin-x64"),
        ("Linux", "x86_64", "5.15.153.1-microsoft-standard-WSL2", "linux-x64"),
    ],
)
def test_supported_platforms(system: str, machine: str, release: str, build: str) -> None:
    check = platform_check(system, machine, release, LOCK)
    assert check.ok and check.detail.endswith(f"has a native build for it ({NATIVE}{build})")
    assert check.detail.startswith(f"{system} {machine}")
    assert ("(WSL 2)" in check.detail) == ("WSL2" in release)


def test_windows_is_sent_to_wsl2() -> None:
    check = platform_check("Windows", "AMD64", "10", LOCK)
    assert not check.ok and "no Windows build" in check.detail
    assert "WSL 2" in check.fix and "README" in check.fix


def test_wsl1_is_asked_to_upgrade() -> None:
    check = platform_check("Linux", "x86_64", "4.4.0-19041-Microsoft", LOCK)
    assert not check.ok and "(WSL 1)" in check.detail and "wsl --set-version" in check.fix


def test_a_platform_without_a_build_is_sent_to_docker_unless_a_server_is_set() -> None:
    check = platform_check("Linux", "riscv64", "6.6.0", LOCK)
    assert not check.ok and "darwin-arm64, darwin-x64, linux-arm64, linux-x64 only" in check.detail
    assert "docs/DOCKER.md" in check.fix and "RESTATE_ADMIN_URL" in check.fix
    assert platform_check("Linux", "riscv64", "6.6.0", LOCK, external=True).ok


def test_an_unreadable_lock_knows_no_build() -> None:
    assert not platform_check("Linux", "x86_64", "6.1.0", {}).ok


def test_the_doctor_reports_the_platform_first() -> None:
    checks = run_checks()
    assert [c.area for c in checks[:2]] == ["platform", "tools"]
    assert checks[0].ok, checks[0].detail

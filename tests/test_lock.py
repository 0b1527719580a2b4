"""The locked package tree: the environment is the lock, the locks hold the pins, the lean set runs lesson 00."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from agent_lib.doctor import LAB_LOCK, installed_packages, lock_drift, locked_packages, pinned_packages
from agent_lib.server import RestateServer, free_port

ROOT = Path(__file__).resolve().parent.parent
REQ = ROOT / "requirements"
DEV_LOCK = REQ / "dev.txt"
TRACING_LOCK = REQ / "tracing.txt"
MAINTAINERS_ONLY = {
    "pytest",
    "nbmake",
    "playwright",
    "mypy",
    "ruff",
    "check-jsonschema",
}  # PyYAML: google-adk needs it too


def _entries(lock: Path) -> dict[str, dict[str, object]]:
    """Read every entry of a uv lock, markers not applied: {name: {version, hashes, via}}."""
    entries: dict[str, dict[str, object]] = {}
    current: dict[str, object] | None = None
    in_via = False
    for line in lock.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", line)
        if m:
            current = {"version": m.group(2), "hashes": 0, "via": set()}
            entries[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = current
            in_via = False
        elif current is not None and line.strip().startswith("--hash=sha256:"):
            current["hashes"] = int(str(current["hashes"])) + 1
        elif current is not None and (via := re.match(r"^\s+# via(?: (.+))?$", line)):
            in_via = True
            if via.group(1):
                current["via"].add(via.group(1).strip())  # type: ignore[attr-defined]
        elif current is not None and in_via and (more := re.match(r"^\s+#\s{3}(.+)$", line)):
            current["via"].add(more.group(1).strip())  # type: ignore[attr-defined]
    return entries


def test_the_environment_is_exactly_the_dev_lock() -> None:
    """The drift test: a package or version that is not in requirements/dev.txt, or a locked one missing, fails."""
    drift = lock_drift(DEV_LOCK)
    assert not drift, (
        "this environment differs from requirements/dev.txt: "
        + "; ".join(drift.missing + drift.wrong + drift.extra)
        + ". Run `make sync` (it puts .venv back to the lock); if you added a package on purpose, pin it in "
        "requirements/dev.in and run `make lock`."
    )


def test_the_drift_check_fails_on_a_lock_the_environment_does_not_match(tmp_path: Path) -> None:
    installed = installed_packages()
    assert {"httpx", "pandas"} <= installed.keys()
    lines = [f"{name}=={version}" for name, version in sorted(installed.items()) if name != "pandas"]
    lines = [("httpx==0.0.1 \\" if line.startswith("httpx==") else line) for line in lines]
    lines += [
        "    --hash=sha256:" + "0" * 64,
        "    # via -r requirements/lab.in",
        "not-a-real-package==1.0 \\",
        "    --hash=sha256:" + "1" * 64,
        "only-on-windows==2.0 ; sys_platform == 'win32' \\",
        "    --hash=sha256:" + "2" * 64,
    ]
    fake = tmp_path / "fake.txt"
    fake.write_text("\n".join(lines) + "\n")

    drift = lock_drift(fake)
    assert drift.wrong == [f"httpx {installed['httpx']} (locked 0.0.1)"]
    assert drift.missing == ["not-a-real-package (locked 1.0) is not installed"]
    assert drift.extra == [f"pandas {installed['pandas']} is not in the lock"]
    assert "only-on-windows" not in locked_packages(fake), "a marker that is false here asks for nothing"
    assert not lock_drift(fake, installed={**installed, "httpx": "0.0.1", "not-a-real-package": "1.0"}).wrong


@pytest.mark.parametrize("name", ["lab", "dev"])
def test_each_lock_holds_its_direct_pins_and_only_them(name: str) -> None:
    pins = {re.sub(r"[-_.]+", "-", k).lower(): v for k, v in pinned_packages(REQ / f"{name}.in").items()}
    if name == "dev":
        pins |= {re.sub(r"[-_.]+", "-", k).lower(): v for k, v in pinned_packages(REQ / "lab.in").items()}
    entries = _entries(REQ / f"{name}.txt")
    stale = {
        p: (v, entries.get(p, {}).get("version")) for p, v in pins.items() if entries.get(p, {}).get("version") != v
    }
    assert not stale, (
        f"requirements/{name}.in and {name}.txt disagree ({{pin: (pinned, locked)}}: {stale}): run `make lock`"
    )
    direct = {p for p, e in entries.items() if {"-r requirements/lab.in", "-r requirements/dev.in"} & e["via"]}  # type: ignore[operator]
    capped = {"cryptography", "argon2-cffi-bindings"}  # caps in lab.in, not pins: they keep every platform on wheels
    assert direct - capped == set(pins), (
        f"the lock's direct requirements are not the pins of {name}.in: run `make lock`"
    )


def test_every_locked_package_has_hashes() -> None:
    for lock in (LAB_LOCK, DEV_LOCK, REQ / "uv.txt", TRACING_LOCK):
        entries = _entries(lock)
        assert entries, f"{lock} lists no package"
        unhashed = [name for name, e in entries.items() if not e["hashes"]]
        assert not unhashed, f"{lock.name} has packages without hashes: {unhashed}: run `make lock`"


def test_the_dev_lock_is_the_lab_lock_plus_the_maintainers_tools() -> None:
    lab, dev = _entries(LAB_LOCK), _entries(DEV_LOCK)
    differ = {
        n: (e["version"], dev.get(n, {}).get("version"))
        for n, e in lab.items()
        if dev.get(n, {}).get("version") != e["version"]
    }
    assert not differ, f"a learner and a maintainer would get different versions ({{name: (lab, dev)}}: {differ})"
    assert MAINTAINERS_ONLY <= dev.keys() and not MAINTAINERS_ONLY & lab.keys(), "test tools belong to dev only"


def test_the_tracing_extra_holds_its_pins_and_changes_no_lab_version() -> None:
    """requirements/tracing.txt (the trace viewer, its own venv) is resolved with lab.txt as constraints."""
    pins = {re.sub(r"[-_.]+", "-", k).lower(): v for k, v in pinned_packages(REQ / "tracing.in").items()}
    lab, tracing = _entries(LAB_LOCK), _entries(TRACING_LOCK)
    assert "arize-phoenix" in pins
    stale = {
        p: (v, tracing.get(p, {}).get("version")) for p, v in pins.items() if tracing.get(p, {}).get("version") != v
    }
    assert not stale, (
        f"requirements/tracing.in and tracing.txt disagree ({{pin: (pinned, locked)}}: {stale}): `make lock`"
    )
    differ = {
        n: (e["version"], tracing[n]["version"]) for n, e in lab.items() if tracing.get(n, e)["version"] != e["version"]
    }
    assert not differ, f"the tracing extra would change lessons' packages ({{name: (lab, tracing)}}: {differ})"
    assert not set(pins) & lab.keys(), "the extra's pins are not the lessons' packages"


def test_agent_lib_imports_nothing_from_the_maintainers_set() -> None:
    """`make lab` and `make doctor` run in the lean set: agent_lib must not need pytest, playwright, mypy..."""
    modules = {
        "pytest",
        "nbmake",
        "playwright",
        "mypy",
        "ruff",
        "yaml",
        "check_jsonschema",
        "nbclient",
        "bench",
        "tests",
    }
    found = []
    for path in (ROOT / "agent_lib").rglob("*.py"):
        for line in path.read_text().splitlines():
            m = re.match(r"\s*(?:from|import)\s+([A-Za-z_][\w]*)", line)
            if m and m.group(1) in modules:
                found.append(f"{path.relative_to(ROOT)}: {line.strip()}")
    assert not found, found


def _wait_for_http(url: str, timeout: float, proc: subprocess.Popen[str]) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"make lab exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise AssertionError(f"nothing answered at {url} within {timeout}s")


def _wait_for_link(log: Path, timeout: float, proc: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if m := re.search(r"JupyterLab:\s+(http://\S+)", log.read_text()):
            return m.group(1)
        assert proc.poll() is None, f"make lab exited with {proc.returncode}: {log.read_text()[-3000:]}"
        time.sleep(0.5)
    raise AssertionError(f"make lab printed no JupyterLab link within {timeout}s: {log.read_text()[-3000:]}")


def _stop_group(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
@pytest.mark.full  # builds a whole venv: make test-all
def test_the_lean_set_runs_make_lab_the_doctor_and_lesson_00(tmp_path: Path) -> None:
    """Build the learners' venv from requirements/lab.txt alone, then run what a learner runs, from it."""
    lean = tmp_path / "lean-venv"
    server = RestateServer(tmp_path / "server", ingress_port=free_port(), admin_port=free_port(), node_port=free_port())
    server.start()
    env = {
        **os.environ,
        "RESTATE_INGRESS_URL": server.ingress_url,
        "RESTATE_ADMIN_URL": server.admin_url,
        "AGENTS_PORT": str(free_port()),
        "RESTATE_KIT_DATA": str(tmp_path / "kit"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
    }
    env.pop("VIRTUAL_ENV", None)
    make = ["make", "--no-print-directory", f"VENV={lean}"]
    python = str(lean / "bin" / "python")
    lab: subprocess.Popen[str] | None = None
    try:
        setup = subprocess.run([*make, "setup"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert setup.returncode == 0, setup.stdout + setup.stderr
        assert "holds exactly requirements/lab.txt" in setup.stderr
        assert "warm_bytecode: wrote the bytecode of" in setup.stderr, setup.stderr
        site = next((lean / "lib").glob("python3.*/site-packages"))
        for package in ("google/adk", "restate", "hypercorn", "ipykernel"):
            assert list((site / package).glob("__pycache__/*.pyc")), f"set-up wrote no bytecode for {package}"

        probe = (
            "import json, importlib.util; from agent_lib.doctor import lock_drift; d = lock_drift(); "
            "tools = ('pytest', 'playwright', 'mypy', 'ruff', 'nbmake', 'check_jsonschema'); "
            "print(json.dumps([d.missing, d.wrong, d.extra, [m for m in tools if importlib.util.find_spec(m)]]))"
        )
        out = subprocess.run([python, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        missing, wrong, extra, tools = json.loads(out.stdout)
        assert (missing, wrong, extra) == ([], [], []), "the lean venv is not exactly requirements/lab.txt"
        assert tools == [], f"the learners' venv holds maintainers' tools: {tools}"

        lab_port, lab_log = free_port(), tmp_path / "make-lab.log"
        with lab_log.open("w") as log:
            lab = subprocess.Popen(
                [*make, "lab", f"LAB_PORT={lab_port}"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        link = _wait_for_link(lab_log, 300, lab)
        assert _wait_for_http(link, 180, lab) == 200, lab_log.read_text()
        _stop_group(lab)
        assert "Serving the finished agents" in lab_log.read_text(), "make lab started the agents from the lean venv"

        doctor = subprocess.run([*make, "doctor"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert f"Python {sys.version_info.major}." in doctor.stdout and str(lean) in doctor.stdout
        assert "packages of requirements/lab.txt, at their locked versions" in doctor.stdout
        assert "FIX" not in doctor.stdout
        tools = re.findall(r"\[packages\] (pytest|nbmake|playwright|mypy|ruff|check-jsonschema)\b", doctor.stdout)
        assert not tools, "the doctor must not ask a learner for maintainers' tools"

        lesson = json.loads((ROOT / "notebooks" / "00_setup.ipynb").read_text())
        probe_cell = {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None}
        lesson["cells"].append({**probe_cell, "source": ["import sys\n", "print('kernel:', sys.executable)"]})
        copy, executed = tmp_path / "00_setup.ipynb", tmp_path / "00_setup.executed.ipynb"
        copy.write_text(json.dumps(lesson))
        run = subprocess.run(
            [python, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
             "--ExecutePreprocessor.timeout=600", f"--output={executed}", str(copy)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        outputs = json.dumps([c.get("outputs", []) for c in json.loads(executed.read_text())["cells"]])
        assert f"kernel: {lean}/bin/python" in outputs, "the lesson's kernel did not run on the lean venv's Python"
        assert "New York" in outputs and '"output_type": "error"' not in outputs
    finally:
        if lab is not None:
            _stop_group(lab)
        if (lean / "bin" / "python").exists():
            subprocess.run([python, "-m", "agent_lib", "down"], cwd=ROOT, env=env, capture_output=True, timeout=120)
        server.stop()

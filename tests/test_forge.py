"""The forge files: the GitHub Actions workflow, checked offline against GitHub's own schema."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"


def _schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    """Validate a workflow with check-jsonschema's vendored GitHub workflow schema (no network)."""
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    loaded = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _steps(workflow: dict[Any, Any], job: str) -> list[dict[str, Any]]:
    return list(workflow["jobs"][job]["steps"])


def _runs(workflow: dict[Any, Any], job: str) -> list[str]:
    return [str(step.get("run", "")) for step in _steps(workflow, job)]


def _uses(workflow: dict[Any, Any], job: str, action: str) -> dict[str, Any]:
    found = [s for s in _steps(workflow, job) if str(s.get("uses", "")).startswith(action + "@")]
    assert len(found) == 1, f"job {job} uses {action} {len(found)} times"
    return dict(found[0].get("with", {}))


def test_the_workflow_is_valid_for_github() -> None:
    result = _schema_check(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_can_fail(tmp_path: Path) -> None:
    broken = tmp_path / "ci.yml"
    broken.write_text("on: push\njobs:\n  test:\n    steps:\n      - run: make test\n")
    result = _schema_check(broken)
    assert result.returncode != 0 and "runs-on" in result.stdout + result.stderr


def test_triggers(workflow: dict[Any, Any]) -> None:
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(triggers) == {"push", "pull_request", "schedule", "workflow_dispatch"}
    assert triggers["schedule"][0]["cron"].split()[4] != "*", "the schedule is weekly"


def _make_commands(runs: list[str]) -> list[str]:
    return [" ".join(r.split()) for r in runs if r.split()[:1] == ["make"] and r.split()[1:2] != ["stop"]]


def test_it_runs_make_test_whose_second_pass_is_the_combined_mode(workflow: dict[Any, Any]) -> None:
    assert _make_commands(_runs(workflow, "test")) == ["make setup", "make test"]
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "test-modes" in recipe, "make test ends with the combined mode"
    modes = makefile.split("\ntest-modes:", 1)[1].split("\n\n", 1)[0]
    assert "--gemini-stub" in modes and "RESTATE_ALWAYS_REPLAY=1" in modes, "one pass: Gemini's path and replays"


def test_ci_run_and_the_workflow_run_the_same_make_commands(workflow: dict[Any, Any]) -> None:
    """What a forge runs on a push is what .ci/run runs: the same targets, with the same flags."""
    script = (REPO / ".ci" / "run").read_text()
    steps = [line.split("step ", 1)[1] for line in script.splitlines() if line.startswith("step make ")]
    assert steps == ["make test"]
    assert _make_commands(_runs(workflow, "test"))[1:] == steps


def test_the_weekly_job_runs_everything(workflow: dict[Any, Any]) -> None:
    job = workflow["jobs"]["all"]
    assert "schedule" in job["if"] and "workflow_dispatch" in job["if"]
    assert _make_commands(_runs(workflow, "all")) == ["make test-all"]
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\ntest-all:", 1)[1].split("\n\n", 1)[0]
    assert "test TEST_MARKERS=" in recipe and "test-replay" in recipe, "test-all is make test unfiltered, then replay"


def test_the_weekly_job_runs_the_trace_viewer_test_and_keeps_its_screenshot(workflow: dict[Any, Any]) -> None:
    """test-all installs the tracing extra first and says the viewer's test must run; the job uploads its screenshot."""
    from tests.test_browser_trace_viewer import SCREENSHOTS

    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\ntest-all:", 1)[1].split("\n\n", 1)[0]
    assert recipe.index("setup-tracing") < recipe.index(
        "KIT_TEST_ALL=1 $(MAKE) --no-print-directory test TEST_MARKERS="
    )
    upload = [s for s in _steps(workflow, "all") if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert len(upload) == 1 and upload[0]["if"] == "always()"
    assert f"{SCREENSHOTS.relative_to(REPO)}/" in upload[0]["with"]["path"]


def test_set_up_pins_python_node_and_caches_on_the_lockfiles(workflow: dict[Any, Any]) -> None:
    for job in workflow["jobs"]:
        python = _uses(workflow, job, "actions/setup-python")
        assert python["python-version"] == "3.12"
        assert python["cache"] == "pip" and python["cache-dependency-path"] == "requirements/*.txt"
        node = _uses(workflow, job, "actions/setup-node")
        assert str(node["node-version"]) == "20"
        assert node["cache"] == "npm" and node["cache-dependency-path"] == "package-lock.json"
        locks = sorted(p.name for p in REPO.glob(python["cache-dependency-path"]))
        assert {"lab.txt", "dev.txt"} <= set(locks), f"the pip cache is keyed on the locks, found {locks}"
        assert (REPO / node["cache-dependency-path"]).is_file()


def test_the_browser_tests_drive_the_preinstalled_chrome(workflow: dict[Any, Any]) -> None:
    assert workflow["env"]["CHROMIUM_BIN"] == "/usr/bin/google-chrome"


def test_every_job_has_a_timeout_and_superseded_runs_are_cancelled(workflow: dict[Any, Any]) -> None:
    assert workflow["concurrency"]["cancel-in-progress"] is True
    assert "github.ref" in workflow["concurrency"]["group"]
    for name, job in workflow["jobs"].items():
        assert 0 < job["timeout-minutes"] <= 90, name


def test_artifacts_are_uploaded_always(workflow: dict[Any, Any]) -> None:
    upload = [s for s in _steps(workflow, "test") if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert len(upload) == 1 and upload[0]["if"] == "always()"
    paths = upload[0]["with"]["path"]
    for wanted in ("docs/RELIABILITY.md", "docs/PERFORMANCE.md", ".restate-xdist/*/logs/", "cell-times.jsonl"):
        assert wanted in paths


def test_the_canary_on_the_newest_packages_is_allowed_to_fail_and_says_so(workflow: dict[Any, Any]) -> None:
    canary = workflow["jobs"]["newest"]
    assert canary["continue-on-error"] is True and "allowed to fail" in canary["name"]
    assert "schedule" in canary["if"]
    assert any("--upgrade google-adk" in r for r in _runs(workflow, "newest"))


def test_the_readme_has_the_badge_and_a_ci_section() -> None:
    readme = (REPO / "README.md").read_text()
    assert "actions/workflows/ci.yml/badge.svg" in readme.split("\n\n")[1], "the badge sits under the title"
    assert "\n## CI\n" in readme


def test_the_make_targets_the_workflow_runs_exist(workflow: dict[Any, Any]) -> None:
    makefile = (REPO / "Makefile").read_text()
    for run in _runs(workflow, "test") + _runs(workflow, "all"):
        if run.startswith("make "):
            target = run.split()[1]
            assert f"\n{target}:" in makefile, f"the workflow runs make {target}, which the Makefile lacks"


DEVCONTAINER = REPO / ".devcontainer" / "devcontainer.json"


@pytest.fixture(scope="module")
def devcontainer() -> dict[str, Any]:
    loaded = json.loads(DEVCONTAINER.read_text())  # plain JSON: no comments, no trailing commas
    assert isinstance(loaded, dict)
    return loaded


def test_the_devcontainer_has_python_3_12_and_node(devcontainer: dict[str, Any]) -> None:
    image = devcontainer["image"]
    match = re.search(r"python:\d+-3\.(\d+)", image)
    assert match and int(match[1]) >= 12, image
    node = devcontainer["features"]["ghcr.io/devcontainers/features/node:1"]
    assert int(node["version"]) >= 18, "the pinned Restate server comes through npm"


def test_the_devcontainer_runs_make_setup_on_create(devcontainer: dict[str, Any]) -> None:
    assert devcontainer["postCreateCommand"] == "make setup"
    assert "make lab" in devcontainer["postAttachCommand"]


def test_the_devcontainer_forwards_the_three_ports_with_labels(devcontainer: dict[str, Any]) -> None:
    assert devcontainer["forwardPorts"] == [8888, 8080, 9070]
    labels = {port: attrs["label"] for port, attrs in devcontainer["portsAttributes"].items()}
    assert labels == {"8888": "JupyterLab", "8080": "Restate ingress", "9070": "Restate UI"}


def test_the_readme_says_make_lab_first_in_a_codespace() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("### In a GitHub Codespace", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert commands and commands[0].strip() == "make lab"

"""The deployment files, checked offline: no Docker engine or Kubernetes cluster exists here.

Each file passes its validator (compose against the compose spec, the manifests against Kubernetes' own schemas,
the Dockerfile with hadolint), and each validator is shown refusing a broken copy. Then the files are checked
against the code they run: the image's command is parsed by agent_lib's own CLI and names agent_lib.agents.FINISHED,
the env the manifests set is what agent_lib and the pinned restate-server read, and the commands the containers run
(serve, the health check, deploy/register.py, the signing keys) are run here natively, on loopback.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent_lib import __main__ as cli
from agent_lib._paths import REPO_ROOT
from agent_lib.agents import FINISHED
from agent_lib.clients import Ingress
from agent_lib.server import RestateServer, find_server_binary, free_port, pinned_version
from agent_lib.serving import IDENTITY_KEYS_ENV, AgentProcess

DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPOSE = REPO_ROOT / "docker-compose.yml"
DEPLOY = REPO_ROOT / "deploy"
K8S = DEPLOY / "k8s"
MANIFESTS = sorted(K8S.glob("*.yaml"))
"""What `kubectl apply -f deploy/k8s/` applies (the folder's own files; it does not descend into secret-example/)."""
SECRET_EXAMPLE = K8S / "secret-example" / "restate-identity.yaml"
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]
IMAGE = "durable-agents:local"
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} is missing: it is in requirements/dev.txt, run `make setup-dev` (or `make sync`)"
    return found


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)


def _compose_check(path: Path) -> subprocess.CompletedProcess[str]:
    """Validate a compose file with check-jsonschema's vendored compose spec (no network)."""
    return _run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)])


def _k8s_check(paths: list[Path], version: str = KUBERNETES_VERSIONS[-1]) -> subprocess.CompletedProcess[str]:
    """Validate manifests against kubernetes-validate's vendored schemas; strict: an unknown field is an error."""
    return _run([_tool("kubernetes-validate"), "--strict", "-k", version, *map(str, paths)])


def _hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return _run([_tool("hadolint"), "--no-color", str(path)])


def _instructions(text: str) -> list[tuple[str, str]]:
    """Read a Dockerfile's instructions as (INSTRUCTION, arguments), continuation lines joined."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), " ".join(rest.split())))
    return found


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return _instructions(DOCKERFILE.read_text())


def _one(dockerfile: list[tuple[str, str]], word: str) -> str:
    found = [args for w, args in dockerfile if w == word]
    assert len(found) == 1, f"the Dockerfile has {len(found)} {word} instructions, expected 1"
    return found[0]


def _env(dockerfile: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in dockerfile:
        if word == "ENV":
            env |= dict(pair.split("=", 1) for pair in args.split())
    return env


def _image_command(dockerfile: list[tuple[str, str]]) -> list[str]:
    return list(json.loads(_one(dockerfile, "CMD")))


def _port(dockerfile: list[tuple[str, str]]) -> int:
    return int(_one(dockerfile, "EXPOSE"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


@pytest.fixture(scope="module")
def k8s() -> dict[tuple[str, str], dict[str, Any]]:
    """Every resource of deploy/k8s/*.yaml and the Secret example, by (kind, name)."""
    docs = [d for p in [*MANIFESTS, SECRET_EXAMPLE] for d in yaml.safe_load_all(p.read_text()) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def _pod(resource: dict[str, Any]) -> dict[str, Any]:
    return dict(resource["spec"]["template"]["spec"])


def _container(resource: dict[str, Any]) -> dict[str, Any]:
    containers = _pod(resource)["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def _container_env(resource: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in _container(resource).get("env", [])}


# --- the validators, and proof that each can fail ---------------------------------------------------------------


def test_the_compose_file_is_valid_for_the_compose_spec() -> None:
    result = _compose_check(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_check_can_fail(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("condition: service_healthy", "condition: healthy"))
    result = _compose_check(broken)
    assert result.returncode != 0
    assert "'healthy' is not one of ['service_started', 'service_healthy'" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "version",
    [pytest.param(v, marks=[pytest.mark.full] if v != KUBERNETES_VERSIONS[-1] else []) for v in KUBERNETES_VERSIONS],
)
def test_the_manifests_are_valid_for_kubernetes(version: str) -> None:
    assert [p.name for p in MANIFESTS] == [
        "00-namespace.yaml",
        "10-restate.yaml",
        "20-agents.yaml",
        "30-register-job.yaml",
    ]
    result = _k8s_check([*MANIFESTS, SECRET_EXAMPLE], version)
    assert result.returncode == 0, result.stdout + result.stderr
    resources = [d for p in [*MANIFESTS, SECRET_EXAMPLE] for d in yaml.safe_load_all(p.read_text()) if d]
    assert result.stdout.count(" passed for resource ") == len(resources) == 8, result.stdout


def test_the_kubernetes_check_can_fail(tmp_path: Path) -> None:
    """Strict mode refuses a misspelt field, which Kubernetes would drop without a word (here: a read-only root)."""
    broken = tmp_path / "20-agents.yaml"
    broken.write_text((K8S / "20-agents.yaml").read_text().replace("readOnlyRootFilesystem", "readOnlyRootFilesytem"))
    result = _k8s_check([broken])
    assert result.returncode != 0
    assert "('readOnlyRootFilesytem' was unexpected)" in result.stdout + result.stderr
    wrong_type = tmp_path / "10-restate.yaml"
    wrong_type.write_text((K8S / "10-restate.yaml").read_text().replace("replicas: 3", "replicas: three"))
    result = _k8s_check([wrong_type])
    assert result.returncode != 0 and "spec.replicas: 'three' is not of type 'integer'" in result.stdout


def test_the_dockerfile_passes_hadolint() -> None:
    result = _hadolint(DOCKERFILE)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_the_dockerfile_lint_can_fail(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text("FROM python:latest\nRUN pip install restate-sdk\nUSER root\n")
    out = _hadolint(broken)
    assert out.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3042", "DL3002"):  # latest, unpinned, pip's cache, runs as root
        assert rule in out.stdout, out.stdout


# --- the image: what it installs, who it runs as, what it serves -------------------------------------------------


def test_the_image_installs_the_lab_lock_with_hashes(dockerfile: list[tuple[str, str]]) -> None:
    copies = [args for word, args in dockerfile if word == "COPY"]
    assert "requirements/lab.txt /tmp/lab.txt" in copies
    installs = [args for word, args in dockerfile if word == "RUN" and "pip install" in args]
    assert len(installs) == 1
    pip = installs[0].split("pip install", 1)[1].split("&&")[0].split()
    assert {"--require-hashes", "--no-deps", "--only-binary", "--no-cache-dir"} <= set(pip), pip
    assert pip[-2:] == ["-r", "/tmp/lab.txt"], "the image installs the lab lock and nothing else"
    assert "--no-compile" not in pip, "pip writes the bytecode at build: the image's user cannot write it later"
    assert any(w == "RUN" and "compileall" in a and "agent_lib" in a for w, a in dockerfile)
    assert _env(dockerfile).get("PYTHONDONTWRITEBYTECODE") is None


def test_the_image_python_is_one_the_lock_has_wheels_for(dockerfile: list[tuple[str, str]]) -> None:
    """`make lock` checks wheels for Linux x86_64 and aarch64 on these Pythons: the image's pip never builds one."""
    base = re.fullmatch(r"python:(3\.\d+)-slim-\w+", _one(dockerfile, "FROM"))
    assert base, "the image starts from an official python:<3.x>-slim-<debian> image, by tag"
    deps = (REPO_ROOT / "scripts" / "python-deps").read_text()
    pythons = re.search(r'^PYTHONS="([^"]+)"', deps, re.M)
    assert pythons and base.group(1) in pythons.group(1).split()
    assert "x86_64-unknown-linux-gnu" in deps and "aarch64-unknown-linux-gnu" in deps


def test_the_image_runs_as_a_non_root_user(dockerfile: list[tuple[str, str]]) -> None:
    users = [args for word, args in dockerfile if word == "USER"]
    assert users and users[-1] not in ("root", "0"), users
    created = re.search(r"useradd [^&]*--uid (\d+)", " ".join(a for w, a in dockerfile if w == "RUN"))
    assert created and users[-1] == created.group(1), "USER is the numeric uid useradd made (runAsNonRoot checks it)"
    last_user = max(i for i, (w, _) in enumerate(dockerfile) if w == "USER")
    assert all(w not in ("RUN", "COPY") for w, _ in dockerfile[last_user:]), "nothing is installed after USER"


def test_the_health_check_asks_the_sdks_health_endpoint_on_the_exposed_port(dockerfile: list[tuple[str, str]]) -> None:
    check = _one(dockerfile, "HEALTHCHECK")
    assert "--start-period=" in check
    probe = json.loads(check.split("CMD", 1)[1])
    assert probe[:2] == ["python", "-c"] and f"http://127.0.0.1:{_port(dockerfile)}/health" in probe[2]


def test_the_image_serves_every_finished_agent_through_the_cli(
    dockerfile: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The image's command is parsed by agent_lib's own CLI: `serve`, its flags, the port exposed, FINISHED."""
    command = _image_command(dockerfile)
    assert command[:3] == ["python", "-m", "agent_lib"]
    served: list[tuple[Any, ...]] = []
    monkeypatch.setattr(cli, "serve_forever", lambda *args: served.append(args))
    assert cli.main(command[3:]) == 0
    targets, port, parent_pid, workers = served[0]
    assert targets == FINISHED, "the Dockerfile's CMD must list agent_lib.agents.FINISHED, in order"
    assert (port, parent_pid, workers) == (_port(dockerfile), None, 1)


def test_the_build_context_holds_what_the_image_copies_and_nothing_else(dockerfile: list[tuple[str, str]]) -> None:
    patterns = [line for line in (REPO_ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert patterns[0] == "*", ".dockerignore is an allow-list: everything is left out, then what is copied let in"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = {args.split()[0] for word, args in dockerfile if word == "COPY"}
    assert copied == allowed
    assert all((REPO_ROOT / path).exists() for path in copied)


def test_the_image_binds_every_interface(dockerfile: list[tuple[str, str]]) -> None:
    from agent_lib.serving import _bind_host

    assert _bind_host(_env(dockerfile)["RESTATE_SERVICE_HOST"]) == "0.0.0.0"


# --- compose: the profile "agents" ------------------------------------------------------------------------------


def test_the_compose_profile_runs_the_server_the_agents_and_a_registration(
    compose: dict[str, Any], dockerfile: list[tuple[str, str]]
) -> None:
    services = compose["services"]
    agents, register = services["agents"], services["register-agents"]
    assert agents["profiles"] == register["profiles"] == ["agents"]
    assert "profiles" not in services["restate"], "the single server runs with every profile"
    assert agents["build"] == register["build"] == "." and agents["image"] == register["image"] == IMAGE
    assert "ports" not in agents, "the agents are reached by the server on the compose network, not published"
    assert [str(p) for p in agents["expose"]] == [str(_port(dockerfile))]
    assert register["depends_on"]["agents"]["condition"] == "service_healthy"
    assert register["restart"] == "no"
    args = _register_args(register["command"])
    assert args["admin"] == "http://restate:9070" and args["uri"] == f"http://agents:{_port(dockerfile)}"
    assert agents["environment"]["RESTATE_SERVICE_HOST"] == "agents"


def _register_module() -> Any:
    """Import deploy/register.py (a script, not a package's module)."""
    spec = importlib.util.spec_from_file_location("deploy_register", DEPLOY / "register.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _register_args(command: list[str]) -> dict[str, Any]:
    """Parse a registration command with deploy/register.py's own parser; return what it would register."""
    assert command[:2] == ["python", "deploy/register.py"]
    module, seen = _register_module(), dict[str, Any]()
    module.register = lambda admin, uri, **kw: seen.update(admin=admin, uri=uri, **kw) or {"id": "dp_x"}
    assert module.main(command[2:]) == 0
    return seen


# --- Kubernetes: the cluster, the agents, the Job, the Secret --------------------------------------------------


def test_the_server_is_a_three_node_statefulset_of_the_pinned_image(k8s: dict[tuple[str, str], Any]) -> None:
    restate = k8s["StatefulSet", "restate"]
    assert restate["spec"]["replicas"] == 3 and restate["spec"]["serviceName"] == "restate-cluster"
    assert _container(restate)["image"] == f"docker.io/restatedev/restate:{pinned_version()}"
    headless = k8s["Service", "restate-cluster"]["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    env = _container_env(restate)
    peers = json.loads(env["RESTATE_METADATA_CLIENT__ADDRESSES"]["value"])
    assert peers == [f"http://restate-{i}.restate-cluster:5122" for i in range(3)]
    assert env["RESTATE_AUTO_PROVISION"]["value"] == "false", "only pod 0 provisions (its command says so)"
    assert 'POD_NAME##*-}" = 0 ]; then export RESTATE_AUTO_PROVISION=true' in _container(restate)["args"][0]
    claims = restate["spec"]["volumeClaimTemplates"]
    assert [m["mountPath"] for m in _container(restate)["volumeMounts"] if m["name"] == claims[0]["metadata"]["name"]]


def test_the_server_signs_requests_and_exports_traces_with_settings_the_pinned_server_reads(
    k8s: dict[tuple[str, str], Any], tmp_path: Path
) -> None:
    """Run the pinned restate-server's --dump-config with the StatefulSet's env: each setting lands where meant."""
    restate = k8s["StatefulSet", "restate"]
    env = {k: str(e["value"]) for k, e in _container_env(restate).items() if "value" in e}
    env = {k: v.replace("$(POD_NAME)", "restate-0") for k, v in env.items()}
    env["RESTATE_BASE_DIR"] = str(tmp_path)
    dump = subprocess.run(
        [str(find_server_binary()), "--dump-config"], env=env, capture_output=True, text=True, timeout=60
    )
    assert dump.returncode == 0, dump.stderr
    assert "deprecated" not in dump.stdout + dump.stderr, "use the setting's current name"
    invoker = dump.stdout.split("[worker.invoker]", 1)[1].split("\n[", 1)[0]
    key_file = env["RESTATE_WORKER__INVOKER__REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE"]
    assert f'request-identity-private-key-pem-file = "{key_file}"' in invoker
    assert f'tracing-endpoint = "{env["RESTATE_TRACING_ENDPOINT"]}"' in dump.stdout
    assert 'cluster-name = "durable-agents"' in dump.stdout and "default-replication = 2" in dump.stdout
    assert "default-num-partitions = 24" in dump.stdout, "Restate's default: the partitions spread over the agent pods"

    mounts = {m["name"]: m["mountPath"] for m in _container(restate)["volumeMounts"]}
    volumes = {v["name"]: v for v in _pod(restate)["volumes"]}
    secret = volumes["identity"]["secret"]
    assert Path(key_file) == Path(mounts["identity"]) / secret["items"][0]["path"]
    assert secret["items"][0]["key"] in k8s["Secret", secret["secretName"]]["stringData"]


def test_the_agents_run_the_image_and_read_every_setting_they_are_given(
    k8s: dict[tuple[str, str], Any], dockerfile: list[tuple[str, str]]
) -> None:
    agents = k8s["Deployment", "agents"]
    container = _container(agents)
    assert container["image"] == IMAGE
    assert "command" not in container and "args" not in container, "the image's own CMD (tested above) runs"
    assert [p["containerPort"] for p in container["ports"]] == [_port(dockerfile)]
    service = k8s["Service", "agents"]["spec"]
    assert service["ports"][0]["port"] == _port(dockerfile)
    assert service["ports"][0]["appProtocol"] == "kubernetes.io/h2c", "the server speaks HTTP/2 without TLS to them"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
    sources = "\n".join(p.read_text() for p in (REPO_ROOT / "agent_lib").rglob("*.py"))
    env = _container_env(agents)
    for name in env:
        assert name == "GOOGLE_API_KEY" or f'"{name}"' in sources, f"agent_lib reads no {name}: a setting that lies"
    assert "GOOGLE_API_KEY" in sources
    assert env[IDENTITY_KEYS_ENV]["valueFrom"]["secretKeyRef"] == {"name": "restate-identity", "key": "public-key"}
    assert env["GOOGLE_API_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True, "no key: the offline model"
    assert env["RESTATE_SERVICE_HOST"]["value"] == "agents" and k8s.get(("Service", "agents"))
    data = env["RESTATE_KIT_DATA"]["value"]
    assert data == _env(dockerfile)["RESTATE_KIT_DATA"]
    assert data in [m["mountPath"] for m in container["volumeMounts"]], "the root is read-only: data needs a volume"


def test_every_pod_runs_as_non_root_without_service_links(
    k8s: dict[tuple[str, str], Any], dockerfile: list[tuple[str, str]]
) -> None:
    """A Service named restate would otherwise inject RESTATE_SERVICE_HOST and RESTATE_PORT into every pod."""
    uid = int([a for w, a in dockerfile if w == "USER"][-1])
    for key in [("StatefulSet", "restate"), ("Deployment", "agents"), ("Job", "register-agents")]:
        pod = _pod(k8s[key])
        assert pod["enableServiceLinks"] is False and pod["automountServiceAccountToken"] is False, key
        assert pod["securityContext"]["runAsNonRoot"] is True, key
        security = _container(k8s[key])["securityContext"]
        assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False, key
        if _container(k8s[key])["image"] == IMAGE:
            assert pod["securityContext"]["runAsUser"] == uid, key


def test_the_job_registers_the_agents_service_with_the_admin_api(k8s: dict[tuple[str, str], Any]) -> None:
    job = k8s["Job", "register-agents"]
    container = _container(job)
    assert container["image"] == IMAGE
    args = _register_args(container["command"])
    admin_port = next(p["port"] for p in k8s["Service", "restate"]["spec"]["ports"] if p["name"] == "admin")
    agents_port = k8s["Service", "agents"]["spec"]["ports"][0]["port"]
    assert args["admin"] == f"http://restate:{admin_port}" and args["uri"] == f"http://agents:{agents_port}"
    assert args["force"] is False, "a cluster never replaces a deployment in place (lesson 07: a new URI per version)"


def test_the_secret_is_a_placeholder_and_no_key_is_in_the_repo(k8s: dict[tuple[str, str], Any]) -> None:
    data = k8s["Secret", "restate-identity"]["stringData"]
    assert set(data) == {"private.pem", "public-key"}
    assert all("REPLACE-ME" in v for v in data.values())
    pem_body = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----\s*\n\s*[A-Za-z0-9+/=]{40,}")
    tracked = _run(["git", "ls-files", "-co", "--exclude-standard"]).stdout.split()
    leaked = [p for p in tracked if (REPO_ROOT / p).is_file() and pem_body.search(_text(REPO_ROOT / p))]
    assert not leaked, f"a private key is in the repo: {leaked}; remove it, and make a new one (it is no longer secret)"


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="ignore") if path.stat().st_size < 2_000_000 else ""
    except OSError:
        return ""


# --- the containers' commands, run natively: serve, health, signing, registration ---------------------------------


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as err:
        return err.code


@pytest.mark.slow
def test_signed_deployment_end_to_end(tmp_path: Path, dockerfile: list[tuple[str, str]]) -> None:
    """What the manifests wire, run on loopback: a server signing with a key made by deploy/identity_key.py, the
    agents given its public key, the image's health check, and deploy/register.py as the Job runs it."""
    keys = [tmp_path / "restate-identity.pem", tmp_path / "other.pem"]
    public = [_run([sys.executable, "deploy/identity_key.py", str(k)]).stdout.strip() for k in keys]
    assert all(p.startswith("publickeyv1_") for p in public) and public[0] != public[1]
    assert keys[0].stat().st_mode & 0o077 == 0, "the private key is readable by its owner only"

    signing = {"RESTATE_WORKER__INVOKER__REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE": str(keys[0])}
    server = RestateServer(
        tmp_path / "server", ingress_port=free_port(), admin_port=free_port(), node_port=free_port(), env=signing
    )
    with server:
        assert f'kid="{public[0]}"' in server.log_path.read_text(), "deploy/identity_key.py derives the server's kid"
        trusting = AgentProcess(FINISHED[0], env={IDENTITY_KEYS_ENV: public[0]}, name="signed", die_with_parent=True)
        wrong = AgentProcess(FINISHED[0], env={IDENTITY_KEYS_ENV: public[1]}, name="wrong-key", die_with_parent=True)
        try:
            for proc in (trusting, wrong):
                proc.start(register=False)
            health = json.loads(_one(dockerfile, "HEALTHCHECK").split("CMD", 1)[1])[2]
            probe = health.replace(f":{_port(dockerfile)}/", f":{trusting.port}/")
            assert subprocess.run([sys.executable, "-c", probe], timeout=30).returncode == 0
            assert _status(f"{trusting.url}/discover") == 401, "an unsigned request is refused"

            register = [sys.executable, "deploy/register.py", "--admin", server.admin_url, "--timeout", "60"]
            refused = _run([*register, "--uri", wrong.url])
            assert refused.returncode != 0, refused.stdout
            assert "refused the server's discovery request (401)" in refused.stderr, refused.stderr
            done = _run([*register, "--uri", trusting.url])
            assert done.returncode == 0, done.stderr
            assert "registered" in done.stdout and "WeatherAgent" in done.stdout
            again = _run([*register, "--uri", trusting.url])
            assert again.returncode == 0, "registering the same deployment again is harmless (a Job retried)"
            question = "What is the weather in New York?"
            answer = Ingress(server.ingress_url).call("WeatherAgent", "run", question, key="signed-1")
            assert "New York" in str(answer)
        finally:
            trusting.stop()
            wrong.stop()


# --- docs/SIZING.md quotes the bench -----------------------------------------------------------------------------


def test_the_sizing_doc_quotes_the_recorded_bench() -> None:
    """A new `make bench` changes the figures per turn: docs/SIZING.md's arithmetic must be redone with them."""
    results = json.loads((REPO_ROOT / "bench" / "results" / "latest.json").read_text())
    one = results["latency"]["durable (as shipped)"]["cpu_ms_per_turn"]
    levels = {row["concurrency"]: row["cpu_ms_per_turn"] for row in results["throughput"]["durable (as shipped)"]}
    row = next(
        line for line in (REPO_ROOT / "docs" / "SIZING.md").read_text().splitlines() if "agent process CPU" in line
    )
    server = next(
        line for line in (REPO_ROOT / "docs" / "SIZING.md").read_text().splitlines() if "server CPU, ms" in line
    )
    expected_agent = [one["agent"], levels[100]["agent"], levels[1000]["agent"]]
    expected_server = [one["server"], levels[100]["server"], levels[1000]["server"]]
    quoted = [[float(x) for x in re.findall(r"\| ([0-9.]+) ", line + " ")] for line in (row, server)]
    assert quoted == [[round(v, 1) for v in expected_agent], [round(v, 1) for v in expected_server]], (
        "bench/results/latest.json has new figures per turn: redo docs/SIZING.md's tables and arithmetic with them"
    )
    machine = results["machine"]
    doc = (REPO_ROOT / "docs" / "SIZING.md").read_text()
    assert f"{machine['cores']} cores" in doc and f"restate-server {machine['restate_server']}" in doc

"""Signed requests: with identity keys configured, every finished agent refuses a request the server did not sign.

Restate signs each request it sends to a deployment (an Ed25519 JWT in `x-restate-jwt-v1`, scheme `v1`, its
audience the request's path) when the server has a private key; `restate.app(identity_keys=[...])` refuses any
request not signed by one of those keys with 401. The kit turns this on for an agent process with
RESTATE_IDENTITY_KEYS (agent_lib.serving); deploy/identity_key.py makes the key pair. Each refusal below is shown
next to its positive control: the same request, signed by the right key, passes the signature check.

The lab signs too (agent_lib/lab.py): the last test runs `python -m agent_lib up` on a lab's server, as `make lab` and
`make test`'s labs do, and sends its agents' port what a stranger could.
"""

from __future__ import annotations

import base64
import importlib
import json
import runpy
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent_lib._paths import REPO_ROOT
from agent_lib.agents import FINISHED
from agent_lib.clients import Admin, Ingress
from agent_lib.lab import AGENTS_PORT_ENV, Lab, LabConfig
from agent_lib.server import RestateServer, free_port
from agent_lib.serving import IDENTITY_KEYS_ENV, AgentProcess

from .conftest import Evidence

KEYS = runpy.run_path(str(REPO_ROOT / "deploy" / "identity_key.py"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(key: Ed25519PrivateKey, kid: str, audience: str, *, tamper: bool = False) -> str:
    header = _b64(json.dumps({"typ": "JWT", "alg": "EdDSA", "kid": kid}).encode())
    now = int(time.time())
    payload = _b64(json.dumps({"aud": audience, "nbf": now - 30, "exp": now + 60}).encode())
    signature = key.sign(f"{header}.{payload}".encode())
    if tamper:
        signature = bytes([signature[0] ^ 1]) + signature[1:]
    return f"{header}.{payload}.{_b64(signature)}"


def _signed(key: Ed25519PrivateKey, kid: str, path: str, *, tamper: bool = False) -> dict[str, str]:
    return {"x-restate-signature-scheme": "v1", "x-restate-jwt-v1": _jwt(key, kid, path, tamper=tamper)}


class Keys:
    """The kit's key pair and a stranger's, as files and as the objects that sign."""

    def __init__(self, folder: Path) -> None:
        self.files = [folder / "restate-identity.pem", folder / "stranger.pem"]
        self.public = [KEYS["new_private_key"](path) for path in self.files]
        self.private = [serialization.load_pem_private_key(p.read_bytes(), password=None) for p in self.files]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys(tmp_path_factory.mktemp("identity"))


@pytest.fixture(scope="module")
def signed_agents(keys: Keys, _kit_data: Path) -> Iterator[AgentProcess]:
    """Every finished agent in one process that trusts only the kit's public key."""
    proc = AgentProcess(FINISHED, env={IDENTITY_KEYS_ENV: keys.public[0]}, name="signed-agents")
    with proc.start(180, register=False):
        yield proc


def _handlers() -> list[tuple[str, str]]:
    found = []
    for target in FINISHED:
        module, _, attribute = target.partition(":")
        service: Any = getattr(importlib.import_module(module), attribute)
        found += [(service.name, handler) for handler in service.handlers]
    return found


HANDLERS = _handlers()


@pytest.mark.parametrize(("service", "handler"), HANDLERS, ids=[f"{s}.{h}" for s, h in HANDLERS])
def test_every_finished_handler_refuses_unsigned_and_wrongly_signed_requests(
    service: str,
    handler: str,
    keys: Keys,
    signed_agents: AgentProcess,
    evidence: Evidence,
    request: pytest.FixtureRequest,
) -> None:
    path = f"/invoke/{service}/{handler}"
    body, kit, stranger = b"\x00", keys.private[0], keys.private[1]
    answers = {}
    with httpx.Client(base_url=signed_agents.url, timeout=10) as http:
        for name, headers in {
            "unsigned": {},
            "signed by a stranger's key": _signed(stranger, keys.public[1], path),
            "a stranger's key under the kit's kid": _signed(stranger, keys.public[0], path),
            "the kit's key, signature altered": _signed(kit, keys.public[0], path, tamper=True),
            "the kit's key, for another path": _signed(kit, keys.public[0], "/discover"),
            "the kit's key (the control)": _signed(kit, keys.public[0], path),
        }.items():
            answers[name] = http.post(path, content=body, headers={"content-type": "application/vnd.restate"} | headers)
    refused = {name: a.status_code for name, a in answers.items() if name != "the kit's key (the control)"}
    control = answers["the kit's key (the control)"].status_code
    evidence.add(
        "security",
        request,
        check=f"{service}.{handler} refuses requests the server did not sign (401), and passes a signed one",
        holds=set(refused.values()) == {401} and control != 401,
        detail=f"{refused}; signed: {control}",
    )
    assert set(refused.values()) == {401}, refused
    assert control != 401, "the signed control request was refused: the check would refuse everything"


def test_a_signing_server_calls_the_agents_and_a_stranger_cannot_register_them(
    keys: Keys, signed_agents: AgentProcess, tmp_path: Path, evidence: Evidence, request: pytest.FixtureRequest
) -> None:
    def server(key: Path, name: str) -> RestateServer:
        env = {"RESTATE_WORKER__INVOKER__REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE": str(key)}
        ports = {"ingress_port": free_port(), "admin_port": free_port(), "node_port": free_port()}
        return RestateServer(tmp_path / name, env=env, **ports)

    with server(keys.files[1], "stranger") as stranger:
        with pytest.raises(Exception, match="401|[Uu]nauthorized") as refused:
            Admin(stranger.admin_url, retry_for=0).register(signed_agents.url)
    with server(keys.files[0], "kit") as kit:
        Admin(kit.admin_url).register(signed_agents.url)
        answer = Ingress(kit.ingress_url).call(
            "WeatherAgent", "run", "What is the weather in Paris?", key=uuid.uuid4().hex
        )
    evidence.add(
        "security",
        request,
        check="a server with another key cannot register the agents; the kit's signing server calls them",
        holds="Paris" in str(answer),
        detail=f"stranger: {str(refused.value)[:160]}; kit: {answer}",
    )
    assert "Paris" in str(answer)


def test_the_lab_that_up_starts_signs_and_its_agents_refuse_what_it_did_not_sign(
    keys: Keys, tmp_path: Path, evidence: Evidence, request: pytest.FixtureRequest
) -> None:
    """`python -m agent_lib up` on a lab's server (as `make test`'s labs and `make lab` run it): a direct POST to the
    agents' port is refused unless the lab's server signed it, and the same turn through the ingress answers."""
    with Lab(LabConfig(data=tmp_path / "kit", agents=())) as lab:
        assert lab.public_key is not None, "a lab signs by default"
        env = {**lab.environ(), AGENTS_PORT_ENV: str(free_port())}
        try:
            up = _cli("up", env)
            assert up.returncode == 0, up.stdout + up.stderr
            path = "/invoke/WeatherAgent/run"
            lab_key = serialization.load_pem_private_key(
                (lab.data / "identity" / "restate-identity.pem").read_bytes(), password=None
            )
            assert isinstance(lab_key, Ed25519PrivateKey)
            with httpx.Client(base_url=f"http://127.0.0.1:{env[AGENTS_PORT_ENV]}", timeout=10) as http:
                answers = {
                    name: http.post(
                        path, content=b"\x00", headers={"content-type": "application/vnd.restate"} | headers
                    ).status_code
                    for name, headers in {
                        "unsigned": {},
                        "signed by a stranger's key": _signed(keys.private[1], keys.public[1], path),
                        "a stranger's key under the lab's kid": _signed(keys.private[1], lab.public_key, path),
                        "the lab's key, signature altered": _signed(lab_key, lab.public_key, path, tamper=True),
                        "the lab's key (the control)": _signed(lab_key, lab.public_key, path),
                    }.items()
                }
            question = "What is the weather in Paris?"
            through = Ingress(lab.ingress_url, timeout=120).call("WeatherAgent", "run", question, key=uuid.uuid4().hex)
        finally:
            _cli("down", env)
    control = answers.pop("the lab's key (the control)")
    secret = lab_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    said = up.stdout + up.stderr
    logs = {p.name: p.read_text(errors="replace") for p in lab.data.rglob("*.log")}
    leaked = [name for name, text in logs.items() if secret.splitlines()[1] in text]
    holds = set(answers.values()) == {401} and control != 401 and "Paris" in str(through) and logs and not leaked
    evidence.add(
        "security",
        request,
        check="the lab that `up` starts signs: its agents' port refuses unsigned and wrongly-signed requests (401), "
        "and the same turn through the ingress answers",
        holds=holds and lab.public_key in said and secret.splitlines()[1] not in said,
        detail=f"{answers}; the lab's key, direct: {control}; through the ingress: {through}; "
        f"the private key found in {leaked or 'none'} of {len(logs)} logs",
    )
    assert set(answers.values()) == {401}, answers
    assert control != 401, "the lab's own signature was refused: the check would refuse everything"
    assert "Paris" in str(through)
    assert f"the server signs with the kit's key ({lab.public_key})" in said, said
    assert secret.splitlines()[1] not in said and "PRIVATE KEY" not in said, "up printed the private key"
    assert logs and not leaked, f"the private key is in {leaked}"


def _cli(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "agent_lib", command]
    return subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)

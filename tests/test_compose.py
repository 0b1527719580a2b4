"""docker-compose.yml matches what agent_lib expects (no Docker engine here, so the file is read, not run)."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent_lib._paths import REPO_ROOT
from agent_lib.cluster import (
    CLUSTER_NAME,
    DEFAULT_CLUSTER_BASE_PORT,
    DEFAULT_NODES,
    DEFAULT_REPLICATION,
    cluster_env,
    node_name,
    node_ports,
)
from agent_lib.server import DEFAULT_ADMIN_PORT, DEFAULT_INGRESS_PORT, RestateServer, pinned_version, server_env

CONTAINER_INGRESS, CONTAINER_ADMIN, CONTAINER_NODE = 8080, 9070, 5122
DATA = "/restate-data"
HOST_SPECIFIC = {
    "RESTATE_BASE_DIR",
    "RESTATE_NODE_NAME",
    "RESTATE_INGRESS__BIND_ADDRESS",
    "RESTATE_ADMIN__BIND_ADDRESS",
    "RESTATE_BIND_ADDRESS",
    "RESTATE_ADVERTISED_ADDRESS",
}
"""server_env keys that name this machine's paths and ports: a container has its own."""

CLUSTER_SERVICES = [f"restate-{i}" for i in range(1, DEFAULT_NODES + 1)]
PEERS = [f"http://{name}:{CONTAINER_NODE}" for name in CLUSTER_SERVICES]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text()))


def _ports(service: dict[str, Any]) -> dict[int, tuple[str, int]]:
    """Map container port -> (host ip, host port); "host:container" alone publishes on every interface."""
    mapped = {}
    for entry in service.get("ports", []):
        parts = str(entry).split(":")
        ip, host, container = parts if len(parts) == 3 else ["0.0.0.0", *parts]
        mapped[int(container)] = (ip, int(host))
    return mapped


def _portable_env() -> dict[str, str]:
    env = server_env(base_dir=Path("/x"), node_name="x", ingress_port=1, admin_port=2, node_port=3)
    return {k: v for k, v in env.items() if k not in HOST_SPECIFIC}


def _all_restate(compose: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, s) for name, s in compose["services"].items() if "restate" in str(s.get("image", ""))]


def test_single_server_publishes_the_kit_ports_on_loopback(compose: dict[str, Any]) -> None:
    ports = _ports(compose["services"]["restate"])
    assert ports == {
        CONTAINER_INGRESS: ("127.0.0.1", DEFAULT_INGRESS_PORT),
        CONTAINER_ADMIN: ("127.0.0.1", DEFAULT_ADMIN_PORT),
    }


def test_single_server_has_the_native_servers_node_name(compose: dict[str, Any]) -> None:
    default_name = inspect.signature(RestateServer).parameters["node_name"].default
    assert compose["services"]["restate"]["environment"]["RESTATE_NODE_NAME"] == default_name


def test_every_restate_service_runs_the_pinned_image(compose: dict[str, Any]) -> None:
    services = _all_restate(compose)
    assert len(services) == 1 + DEFAULT_NODES
    for name, service in services:
        assert service["image"] == f"docker.io/restatedev/restate:{pinned_version()}", name


def test_every_restate_service_reaches_the_host_and_keeps_its_data(compose: dict[str, Any]) -> None:
    for name, service in _all_restate(compose):
        assert "host.docker.internal:host-gateway" in service["extra_hosts"], name
        volumes = [str(v).split(":") for v in service["volumes"]]
        assert len(volumes) == 1 and volumes[0][1] == DATA, name
        assert volumes[0][0] in compose["volumes"], f"{name}: {volumes[0][0]} must be a named volume"
        assert service["environment"]["RESTATE_BASE_DIR"] == DATA, name


def test_every_published_port_is_bound_to_loopback(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for ip, _ in _ports(service).values():
            assert ip == "127.0.0.1", f"{name} publishes a port on {ip}: bind it to 127.0.0.1"


def test_environment_matches_the_native_server(compose: dict[str, Any]) -> None:
    portable = _portable_env()
    assert portable, "server_env has no portable settings left: check HOST_SPECIFIC"
    for name, service in _all_restate(compose):
        env = {k: str(v) for k, v in service["environment"].items()}
        assert {k: env.get(k) for k in portable} == portable, name
        assert all(k.startswith("RESTATE_") for k in env), name


def test_single_server_is_not_part_of_a_cluster(compose: dict[str, Any]) -> None:
    single = compose["services"]["restate"]
    assert "profiles" not in single
    cluster_only = set(cluster_env(1, PEERS)) - {"RESTATE_NODE_NAME"}
    assert not cluster_only & set(single["environment"])


@pytest.mark.parametrize("index", range(1, DEFAULT_NODES + 1))
def test_cluster_node_matches_agent_lib_cluster(compose: dict[str, Any], index: int) -> None:
    service = compose["services"][CLUSTER_SERVICES[index - 1]]
    env = {k: str(v) for k, v in service["environment"].items()}
    expected = cluster_env(index, PEERS, replication=DEFAULT_REPLICATION, cluster_name=CLUSTER_NAME)
    addresses = "RESTATE_METADATA_CLIENT__ADDRESSES"
    assert json.loads(env[addresses]) == json.loads(expected.pop(addresses)) == PEERS
    assert {k: env.get(k) for k in expected} == expected
    assert env["RESTATE_NODE_NAME"] == node_name(index)
    assert env["RESTATE_ADVERTISED_ADDRESS"] == PEERS[index - 1]
    assert service["profiles"] == ["cluster"]


@pytest.mark.parametrize("index", range(1, DEFAULT_NODES + 1))
def test_cluster_node_publishes_the_native_port_layout(compose: dict[str, Any], index: int) -> None:
    expected = node_ports(DEFAULT_CLUSTER_BASE_PORT, index)
    assert _ports(compose["services"][CLUSTER_SERVICES[index - 1]]) == {
        CONTAINER_INGRESS: ("127.0.0.1", expected.ingress),
        CONTAINER_ADMIN: ("127.0.0.1", expected.admin),
        CONTAINER_NODE: ("127.0.0.1", expected.node),
    }


def test_exactly_one_node_provisions_the_cluster(compose: dict[str, Any]) -> None:
    provisioning = [
        name
        for name in CLUSTER_SERVICES
        if compose["services"][name]["environment"]["RESTATE_AUTO_PROVISION"] == "true"
    ]
    assert provisioning == ["restate-1"]


def test_the_tracing_profile_runs_a_pinned_jaeger_with_otlp_on_loopback(compose: dict[str, Any]) -> None:
    """Jaeger, the Docker users' trace viewer: only with `--profile tracing`, pinned, OTLP/HTTP 4318 and UI 16686."""
    jaeger = compose["services"]["jaeger"]
    assert jaeger["profiles"] == ["tracing"]
    image, _, tag = jaeger["image"].rpartition(":")
    assert image == "docker.io/jaegertracing/all-in-one" and re.fullmatch(r"\d+\.\d+\.\d+", tag), jaeger["image"]
    assert jaeger["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert _ports(jaeger) == {4318: ("127.0.0.1", 4318), 16686: ("127.0.0.1", 16686)}
    not_tracing = [name for name, s in compose["services"].items() if "tracing" not in s.get("profiles", [])]
    assert "jaeger" not in not_tracing and "restate" in not_tracing, "a plain `docker compose up` starts no Jaeger"

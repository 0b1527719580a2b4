"""Start a Restate cluster of several native nodes on loopback: lesson 08.

Each node is a `RestateServer` with its own data dir and ports, so any node can be
killed with SIGKILL and started again on its own data. The nodes form one cluster:
the metadata (deployments, which node leads which partition) is a Raft group over all
of them, and every record of the log and every partition is kept on `replication` nodes.

    with RestateCluster(tmp, base_port=free_base_port()) as cluster:
        cluster.nodes[1].kill()          # a crash of node-2
        cluster.health_df()              # who is alive, who leads which partitions
        cluster.nodes[1].start()         # it rejoins on its own data

Ports follow one layout (`node_ports`): node i listens on base+100*i plus 80 (ingress),
70 (admin) and 22 (node-to-node), after the 8080/9070/5122 of a single server. With the
default base 18000, node-1 has ingress 18180 and admin 18170, as in docker-compose.yml.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from . import _http
from ._paths import data_dir
from ._process import StartStop, port_is_free
from .clients import Admin, RestateError
from .server import RestateServer, ServerError, server_env

__all__ = [
    "CLUSTER_NAME",
    "DEFAULT_CLUSTER_BASE_PORT",
    "DEFAULT_NODES",
    "DEFAULT_REPLICATION",
    "NodeHealth",
    "NodePorts",
    "RestateCluster",
    "cluster_env",
    "free_base_port",
    "node_name",
    "node_ports",
]

CLUSTER_NAME = "durable-agents"
DEFAULT_NODES = 3
DEFAULT_REPLICATION = 2
DEFAULT_CLUSTER_BASE_PORT = 18000


@dataclass(frozen=True)
class NodePorts:
    """The three ports of one node."""

    ingress: int
    admin: int
    node: int


def node_ports(base_port: int, index: int) -> NodePorts:
    """Return the ports of node `index` (1-based): base+100*index plus 80, 70 and 22."""
    if index < 1:
        raise ValueError(f"nodes are numbered from 1, not {index}")
    offset = base_port + 100 * index
    return NodePorts(ingress=offset + 80, admin=offset + 70, node=offset + 22)


def node_name(index: int) -> str:
    """Return the name of node `index` (1-based): node-1, node-2, ..."""
    return f"node-{index}"


def cluster_env(
    index: int,
    peers: Sequence[str],
    *,
    replication: int = DEFAULT_REPLICATION,
    cluster_name: str = CLUSTER_NAME,
) -> dict[str, str]:
    """Return the settings that make node `index` (1-based) one of the cluster of `peers`.

    `peers` are the node-to-node addresses of all nodes (e.g. "http://127.0.0.1:18122");
    they are where every node finds the metadata servers. Only node 1 provisions the
    cluster; the others join it.
    """
    if not 1 <= index <= len(peers):
        raise ValueError(f"node {index} is not one of the {len(peers)} peers")
    if not 1 <= replication <= len(peers):
        raise ValueError(f"replication {replication} needs at least that many nodes, not {len(peers)}")
    return {
        "RESTATE_NODE_NAME": node_name(index),
        "RESTATE_FORCE_NODE_ID": str(index),
        "RESTATE_CLUSTER_NAME": cluster_name,
        "RESTATE_AUTO_PROVISION": "true" if index == 1 else "false",
        "RESTATE_DEFAULT_REPLICATION": str(replication),
        "RESTATE_METADATA_CLIENT__ADDRESSES": json.dumps(list(peers)),
    }


_CLAIMS = Path(tempfile.gettempdir()) / "agent-lib-cluster-ports"
_CLAIM_SECONDS = 120.0
"""How long a block handed out by `free_base_port` stays claimed: long enough for its cluster to bind it."""


def _claim(base: int) -> bool:
    """Claim a block for this caller, unless another process claimed it within the last _CLAIM_SECONDS.

    A free block is free only until a cluster binds it, and processes running side by side (a parallel test
    suite, two notebooks) could both pick it in between; the claim, a file created exclusively, closes that gap.
    """
    _CLAIMS.mkdir(parents=True, exist_ok=True)
    claim = _CLAIMS / f"base-{base}"
    with contextlib.suppress(OSError):
        if time.time() - claim.stat().st_mtime > _CLAIM_SECONDS:
            claim.unlink()
    try:
        os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return False
    return True


def free_base_port(nodes: int = DEFAULT_NODES, *, attempts: int = 200) -> int:
    """Return a base port whose whole block of node ports is free right now, and claim it for a while.

    No other caller of this function, in any process, is given the same block within the next two minutes.
    """
    rng = random.Random()
    for _ in range(attempts):
        base = rng.randrange(20_250, 31_000, 500)
        ports = [p for i in range(1, nodes + 1) for p in asdict(node_ports(base, i)).values()]
        if all(port_is_free(p) for p in ports) and _claim(base):
            return base
    raise ServerError(f"found no free block of {3 * nodes} ports between 20000 and 31500: free some ports")


@dataclass(frozen=True)
class NodeHealth:
    """What one node says about itself (and None or "down" where it does not answer)."""

    node: str
    pid: int | None
    status: str
    """"Alive" when the node answers; "down" when its process is gone; "unreachable" otherwise."""
    node_id: str | None
    """The id and generation, e.g. "N2:3": the generation grows each time the node restarts."""
    ingress: bool
    worker: str | None
    log_server: str | None
    metadata_server: str | None
    partition_leaders: int | None
    """How many partitions this node leads (it runs their invocations)."""

    @property
    def alive(self) -> bool:
        """True if the node answers and says it is alive."""
        return self.status == "Alive"


_LEADERS = re.compile(r"^restate_num_active_partition_leaders\{[^}]*\}\s+([0-9.eE+-]+)\s*$", re.MULTILINE)


def _get(http: httpx.Client, url: str) -> httpx.Response | None:
    try:
        response = http.get(url)
    except httpx.HTTPError:
        return None
    return response if response.status_code == 200 else None


def _node_health(node: RestateServer, http: httpx.Client) -> NodeHealth:
    fabric = f"http://127.0.0.1:{node.node_port}"
    answer = _get(http, f"{fabric}/health") if node.running else None
    info: dict[str, Any] = answer.json() if answer is not None else {}
    leaders: int | None = None
    if answer is not None:
        metrics = _get(http, f"{fabric}/metrics")
        if metrics is not None:
            found = _LEADERS.findall(metrics.text)
            leaders = int(sum(float(v) for v in found)) if found else 0
    ingress = answer is not None and _get(http, f"{node.ingress_url}/restate/health") is not None
    return NodeHealth(
        node=node.node_name,
        pid=node.pid,
        status=str(info.get("status", "unreachable")) if node.running else "down",
        node_id=info.get("node_id"),
        ingress=ingress,
        worker=info.get("worker_status"),
        log_server=info.get("log_server_status"),
        metadata_server=info.get("metadata_server_status"),
        partition_leaders=leaders,
    )


def _brief(health: NodeHealth) -> str:
    if not health.alive:
        return health.status
    return f"{health.status}, leads {health.partition_leaders}"


class RestateCluster(StartStop):
    """Several restate-server nodes forming one cluster on loopback; `nodes[i]` is each one."""

    def __init__(
        self,
        base_dir: str | os.PathLike[str] | None = None,
        *,
        nodes: int = DEFAULT_NODES,
        replication: int = DEFAULT_REPLICATION,
        base_port: int = DEFAULT_CLUSTER_BASE_PORT,
        cluster_name: str = CLUSTER_NAME,
        binary: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.base_dir = Path(base_dir) if base_dir is not None else data_dir() / "cluster"
        self.replication = replication
        self.base_port = base_port
        self.cluster_name = cluster_name
        ports = [node_ports(base_port, i) for i in range(1, nodes + 1)]
        defaults = server_env(base_dir=self.base_dir, node_name="", ingress_port=0, admin_port=0, node_port=0)
        self.partitions = int({**defaults, **(env or {})}.get("RESTATE_DEFAULT_NUM_PARTITIONS", "24"))
        """How many partitions the cluster is provisioned with: every key of every agent lives in one."""
        self.peers = [f"http://127.0.0.1:{p.node}" for p in ports]
        """The node-to-node address of every node: where they find each other and the metadata servers."""
        self.nodes: list[RestateServer] = [
            RestateServer(
                self.base_dir / node_name(i),
                ingress_port=p.ingress,
                admin_port=p.admin,
                node_port=p.node,
                node_name=node_name(i),
                binary=binary,
                env={**cluster_env(i, self.peers, replication=replication, cluster_name=cluster_name), **(env or {})},
            )
            for i, p in enumerate(ports, start=1)
        ]

    def _running(self) -> list[RestateServer]:
        running = [n for n in self.nodes if n.running]
        if not running:
            raise ServerError("no node of the cluster is running: start it with cluster.start()")
        return running

    @property
    def ingress_url(self) -> str:
        """The ingress URL of the first node that runs (any node's ingress reaches every agent)."""
        return self._running()[0].ingress_url

    @property
    def admin_url(self) -> str:
        """The admin API URL of the first node that runs (any node's admin API sees the whole cluster)."""
        return self._running()[0].admin_url

    @property
    def ingress_urls(self) -> list[str]:
        """The ingress URL of every node, running or not."""
        return [n.ingress_url for n in self.nodes]

    @property
    def admin_urls(self) -> list[str]:
        """The admin API URL of every node, running or not."""
        return [n.admin_url for n in self.nodes]

    @property
    def running(self) -> bool:
        """True while every node's process is alive."""
        return all(n.running for n in self.nodes)

    def start(self, timeout: float = 120.0) -> RestateCluster:
        """Start every node that is not running, together, and wait until the cluster is ready."""
        waiting = [n for n in self.nodes if not n.running]
        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            futures = [pool.submit(n.start, timeout) for n in waiting]
            errors = [f.exception() for f in futures]
        failed = [(n, e) for n, e in zip(waiting, errors, strict=True) if e is not None]
        if failed:
            self.stop()
            node, err = failed[0]
            raise ServerError(f"{node.node_name} of the cluster did not start: {err}") from err
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 120.0) -> list[NodeHealth]:
        """Wait until every running node is alive and a metadata member, and every partition has a leader."""
        deadline = time.monotonic() + timeout
        while True:
            health = self.health()
            running = [h for h in health if h.pid is not None]
            if running and all(
                h.alive and h.worker == "Ready" and h.ingress and h.metadata_server == "Member" for h in running
            ):
                if sum(h.partition_leaders or 0 for h in running) >= self.partitions:
                    return health
            if time.monotonic() > deadline:
                table = "\n".join(f"  {h}" for h in health)
                raise ServerError(
                    f"the cluster was not ready within {timeout:.0f}s (a node must be alive and every partition "
                    f"needs a leader; with replication {self.replication}, at least {self.replication} nodes "
                    f"must run):\n{table}"
                )
            time.sleep(0.25)

    def health(self) -> list[NodeHealth]:
        """Ask every node how it is: alive or not, its roles' status, how many partitions it leads."""
        with _http.client(timeout=2.0) as http:
            return [_node_health(n, http) for n in self.nodes]

    def health_df(self) -> Any:
        """Return `health()` as a pandas DataFrame, one row per node."""
        import pandas as pd

        frame = pd.DataFrame([asdict(h) for h in self.health()]).set_index("node")
        return frame.astype({"pid": "Int64", "partition_leaders": "Int64"})

    def watch(self, seconds: float = 8.0, every: float = 1.0) -> Any:
        """Sample the nodes' health for a while; return a DataFrame, one row per sample, one column per node."""
        import pandas as pd

        rows: dict[float, dict[str, str]] = {}
        start = time.monotonic()
        while True:
            at = round(time.monotonic() - start, 1)
            rows[at] = {h.node: _brief(h) for h in self.health()}
            if time.monotonic() - start + every > seconds:
                break
            time.sleep(every)
        frame = pd.DataFrame.from_dict(rows, orient="index")
        frame.index.name = "seconds"
        return frame

    def query(self, sql: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Run SQL on a running node's admin API, retrying while the cluster recovers from a node loss."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return Admin(self.admin_url, retry_for=max(0.0, min(10.0, deadline - time.monotonic()))).query(sql)
            except (RestateError, ConnectionError, httpx.HTTPError) as err:
                if time.monotonic() > deadline:
                    raise ServerError(f"the cluster did not answer the query within {timeout:.0f}s: {err}") from err
                time.sleep(0.5)

    def query_df(self, sql: str, timeout: float = 60.0) -> Any:
        """Run SQL like `query`, and return a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.query(sql, timeout))

    def metadata_members(self) -> list[int]:
        """Return the ids of the nodes in the metadata Raft group, as a running node's admin API reports them."""
        with _http.client(timeout=2.0) as http:
            for node in self._running():
                answer = _get(http, f"{node.admin_url}/cluster-health")
                if answer is not None:
                    return sorted(answer.json().get("metadata_cluster_health", {}).get("members", []))
        return []

    def wait_for_services(self, names: Sequence[str], timeout: float = 60.0) -> None:
        """Wait until every running node's admin API lists these services (registration has spread)."""
        deadline = time.monotonic() + timeout
        with _http.client(timeout=2.0) as http:
            while True:
                missing: dict[str, list[str]] = {}
                for node in self._running():
                    answer = _get(http, f"{node.admin_url}/services")
                    listed = {s["name"] for s in answer.json().get("services", [])} if answer is not None else set()
                    if set(names) - listed:
                        missing[node.node_name] = sorted(set(names) - listed)
                if not missing:
                    return
                if time.monotonic() > deadline:
                    raise ServerError(f"these nodes do not list the services yet after {timeout:.0f}s: {missing}")
                time.sleep(0.2)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every node gracefully (SIGTERM), together."""
        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            list(pool.map(lambda n: n.stop(timeout), self.nodes))

    def kill(self) -> None:
        """Kill every node with SIGKILL."""
        for node in self.nodes:
            node.kill()

    def __repr__(self) -> str:
        up = f"{sum(n.running for n in self.nodes)}/{len(self.nodes)} nodes running"
        return f"RestateCluster({self.cluster_name!r}, {up}, base_port={self.base_port})"

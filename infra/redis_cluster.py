"""A local Redis Cluster of ``redis-server`` child processes (masters only, loopback ports), for
`freshet dev up --redis-cluster` and the tests.

The nodes are the same ``redis-server`` binary the local stack uses, started with cluster mode on;
the 16,384 hash slots are split evenly with ``CLUSTER ADDSLOTS`` and the nodes introduced with
``CLUSTER MEET`` (what ``redis-cli --cluster create`` does, without needing redis-cli). The
cluster's record (ports and pids) is a JSON file in its directory; it is stopped by those pids.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis

from freshet.features.errors import StackError
from freshet.infra.binaries import find_redis_binary
from freshet.infra.localstack import free_port
from freshet.infra.processes import pid_alive

SLOTS = 16_384
RECORD = "redis-cluster.json"


@dataclass(frozen=True)
class ClusterInfo:
    url: str  # redis+cluster://127.0.0.1:<first port>/0
    ports: list[int]
    pids: list[int]


def start_cluster(directory: Path, masters: int = 3, timeout_s: float = 30.0) -> ClusterInfo:
    if not 1 <= masters <= 16:
        raise StackError(f"masters {masters} is out of range: allowed 1 to 16")
    directory = Path(directory).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    binary = find_redis_binary()
    ports: list[int] = []
    while len(ports) < masters:
        port = _cluster_port()
        if port not in ports and port + 10_000 not in ports:
            ports.append(port)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            node_dir = directory / str(port)
            node_dir.mkdir(exist_ok=True)
            for stale in node_dir.glob("nodes-*.conf"):
                stale.unlink()
            with open(node_dir / "redis.log", "ab") as log:  # the child keeps its own descriptor
                procs.append(subprocess.Popen(
                    [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                     "--cluster-config-file", str(node_dir / f"nodes-{port}.conf"), "--dir", str(node_dir),
                     "--save", "", "--appendonly", "no", "--cluster-node-timeout", "5000", "--protected-mode", "no"],
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        clients = [redis.Redis(port=port, socket_timeout=5) for port in ports]
        deadline = time.monotonic() + timeout_s
        for client in clients:
            _wait(client.ping, deadline, "a cluster node to answer")
        per = SLOTS // masters
        for i, client in enumerate(clients):
            last = SLOTS - 1 if i == masters - 1 else (i + 1) * per - 1
            client.cluster("ADDSLOTS", *range(i * per, last + 1))
        for port in ports[1:]:
            clients[0].cluster("MEET", "127.0.0.1", str(port))
        for client in clients:
            _wait(functools.partial(_ready, client, masters), deadline, "the cluster to form")
        for client in clients:
            client.close()
    except BaseException:
        for proc in procs:
            proc.kill()
        raise
    info = ClusterInfo(f"redis+cluster://127.0.0.1:{ports[0]}/0", ports, [p.pid for p in procs])
    (directory / RECORD).write_text(json.dumps(asdict(info)))
    return info


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10,000) is free too (so it is at most 55,535)."""
    for _ in range(200):
        port = free_port()
        if port > 55_535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port
    raise StackError("no free port pair (port, port + 10000) for a cluster node")


def _ready(client: redis.Redis, masters: int) -> bool:
    info = client.cluster("INFO")  # parsed by redis-py into a dict
    return str(info.get("cluster_state")) == "ok" and int(info.get("cluster_known_nodes", 0)) == masters


def _wait(check: Callable[[], Any], deadline: float, what: str) -> None:
    while True:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise StackError(f"timed out waiting for {what}")
        time.sleep(0.1)


def read_cluster(directory: Path) -> ClusterInfo | None:
    path = Path(directory) / RECORD
    if not path.exists():
        return None
    info = ClusterInfo(**json.loads(path.read_text()))
    dead = [pid for pid in info.pids if not pid_alive(pid)]
    if dead:  # never fall back to another store quietly
        raise StackError(f"node(s) {', '.join(map(str, dead))} of the Redis Cluster recorded in {path} are gone: "
                         "run `freshet dev down`, then `freshet dev up --redis-cluster`")
    return info


def stop_cluster(directory: Path) -> list[int]:
    path = Path(directory) / RECORD
    if not path.exists():
        return []
    info = ClusterInfo(**json.loads(path.read_text()))
    stopped = []
    for pid in info.pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            stopped.append(pid)
    for pid in stopped:
        for _ in range(50):
            if not pid_alive(pid):
                break
            time.sleep(0.1)
    path.unlink()
    return stopped

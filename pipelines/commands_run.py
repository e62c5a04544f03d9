"""`freshet run`, `freshet get`, `freshet demo`: the stream processor's commands."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="the main job: local stack, synthetic card stream, features")
    p.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from infra.localstack import start_stack
    from pipelines.config import stack_dir

    info = start_stack(stack_dir())
    print(f"local stack running: broker {info.kafka_bootstrap}, redis {info.redis_url}")
    print("missing: the stream processor (freshet run) is not built yet")
    return 1

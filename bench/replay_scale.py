"""`python -m bench.replay_scale`: a replay of 1M+ events with 1 and 2 workers vs the live pipeline.

All three runs read the same topic end to end through the CLI (`freshet run
--until-caught-up`, `freshet replay --workers 1`, `freshet replay --workers 2`),
so each figure includes process start, consumer-group joins and the final
commit; events/s = events / wall time. Results go to stdout and, unless
--no-record, to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import say, stack
from bench.report import publish

REPO_YAML = """\
sources:
  - name: transactions
    topic: {topic}
    partitions: 4
    key: card_id
    timestamp: ts
    schema: {{card_id: str, amount: float, merchant: str, country: str, ts: int}}
views:
  - name: card_spend_5m
    source: transactions
    window: {{type: tumbling, size: 5m}}
    grace: 30s
    emit: final
    ttl: 1h
    aggregations:
      - {{function: count, name: txn_count}}
      - {{function: sum, column: amount, name: amount_sum}}
"""


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, dict[str, object]]:
    t0 = time.monotonic()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - t0
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {result.stderr[-2000:]}")
    return elapsed, json.loads(result.stdout[result.stdout.index("{"):])


def main(argv: list[str] | None = None) -> int:
    from freshet.infra.topics import provision_topics, source_topic_specs
    from freshet.synthetic import StreamSpec, produce

    parser = argparse.ArgumentParser(prog="python -m bench.replay_scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--trust-message-key", action="store_true", help="skip re-keying in all three runs")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    extra = ["--trust-message-key"] if args.trust_message_key else []
    with tempfile.TemporaryDirectory(prefix="freshet-replay-bench-") as tmp, stack(Path(tmp)) as s:
        topic = f"replay-bench-{int(time.time())}"
        repo = Path(tmp) / "repo"
        repo.mkdir()
        (repo / "views.yaml").write_text(REPO_YAML.format(topic=topic))
        kafka = {"bootstrap.servers": s.kafka_bootstrap}
        provision_topics(kafka, source_topic_specs(topic, 4))
        say(f"producing {args.events:,} events")
        produce(kafka, topic, StreamSpec(events=args.events, cards=20_000, span_ms=6 * 3_600_000, seed=3),
                progress=lambda n: say(f"  {n:,}") if n % 200_000 == 0 else None)
        base_env = {**os.environ, "FRESHET_KAFKA_BOOTSTRAP": s.kafka_bootstrap, "FRESHET_REDIS_URL": s.redis_url}
        cli = [sys.executable, "-m", "freshet"]
        rows = []
        say("live: freshet run --until-caught-up")
        env = {**base_env, "FRESHET_OFFLINE_ROOT": f"{tmp}/live", "FRESHET_STATE_DIR": f"{tmp}/live-state"}
        seconds, stats = timed([*cli, "run", "--repo", str(repo), "--until-caught-up", *extra], env)
        rows.append(("live `freshet run --until-caught-up`", seconds, stats.get("read", 0)))
        for workers in (1, 2):
            say(f"replay --workers {workers}")
            env = {**base_env, "FRESHET_OFFLINE_ROOT": f"{tmp}/replay{workers}",
                   "FRESHET_STATE_DIR": f"{tmp}/replay{workers}-state"}
            seconds, stats = timed([*cli, "replay", "--repo", str(repo), "--view", "card_spend_5m",
                                    "--workers", str(workers), *extra], env)
            rows.append((f"`freshet replay --workers {workers}`", seconds, stats.get("read", 0)))
        parity = subprocess.run([*cli, "parity", "--view", "card_spend_5m", "--a", f"{tmp}/live",
                                 "--b", f"{tmp}/replay2"], capture_output=True, text=True)
    lines = [f"## Replay at scale: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}", "",
             f"Command: `python -m bench.replay_scale {' '.join(argv or sys.argv[1:])}`; {os.cpu_count()} cores, "
             f"Python {platform.python_version()}; view card_spend_5m (tumbling 5m, count+sum), 4 partitions, "
             f"{args.events:,} events, {'message keys trusted' if extra else 're-keyed through repartitioning'}. "
             "Wall time of the whole command (start, group join, final commit included).", "",
             "| run | seconds | events read | events/s | vs live |", "| --- | --- | --- | --- | --- |"]
    live_rate = rows[0][2] / rows[0][1]
    for name, seconds, read in rows:
        rate = read / seconds
        lines.append(f"| {name} | {seconds:.1f} | {read:,} | {rate:,.0f} | {rate / live_rate:.2f}x |")
    lines += ["", f"Parity live vs replay --workers 2: `{parity.stdout.strip().splitlines()[-1]}`", ""]
    return publish(lines, no_record=args.no_record)


if __name__ == "__main__":
    sys.exit(main())

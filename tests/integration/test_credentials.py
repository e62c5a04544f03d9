"""Refused credentials fail fast, with a message that names the problem and never the secret."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import redis

from freshet.infra.binaries import find_broker_binary, find_redis_binary
from freshet.infra.localstack import free_port
from freshet.synthetic import StreamSpec
from freshet.synthetic import produce as produce_stream
from tests.integration.conftest import Servers
from tests.integration.harness import cli_env, provision
from tests.integration.test_replay import write_repo


def test_wrong_redis_password_exits_fast_without_printing_it(servers: Servers, unique: str,
                                                            tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", f"creds-{unique}")
    port = free_port()
    proc = subprocess.Popen([str(find_redis_binary()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path), "--requirepass", "right-pass"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, password="right-pass")
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        provision(servers, f"creds-{unique}", 3)
        produce_stream(servers.kafka_config(), f"creds-{unique}", StreamSpec(events=500, cards=20, seed=4))
        secret = "wr0ng-Pa55-with@and:"
        env = cli_env(servers, tmp_path, redis_url=f"redis://default:{secret}@127.0.0.1:{port}/0")
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "freshet", "run", "--repo", str(repo),
                                 "--until-caught-up"], env=env, capture_output=True, text=True, timeout=60)
        elapsed = time.monotonic() - started
        assert result.returncode != 0
        assert elapsed < 15, elapsed
        assert "refused" in result.stderr and "FRESHET_REDIS_URL" in result.stderr, result.stderr[-2000:]
        assert secret not in result.stdout + result.stderr
        assert "wr0ng" not in result.stdout + result.stderr
    finally:
        proc.terminate()
        proc.wait(10)


def test_refused_kafka_credentials_exit_fast_without_printing_them(tmp_path: Path) -> None:
    """A broker that requires authentication and knows no such user (tansu --authentication): every command
    that talks to Kafka stops within seconds, says the credentials were refused, and never prints them.
    A broker whose credentials are refused is not an outage: before, `run` waited 30 s and blamed the
    broker for not running."""
    port = free_port()
    proc = subprocess.Popen([str(find_broker_binary()), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
                             "--advertised-listener-url", f"tcp://127.0.0.1:{port}", "--storage-engine",
                             "memory://tansu/", "--authentication"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        repo = write_repo(tmp_path / "repo", "creds-kafka")
        secret = "Kafka-s3cret-pw"
        env = {**cli_env(Servers(f"127.0.0.1:{port}", "redis://127.0.0.1:9/0", "test"), tmp_path),
               "FRESHET_KAFKA_CONFIG": json.dumps({"security.protocol": "SASL_PLAINTEXT",
                                                   "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "freshet",
                                                   "sasl.password": secret})}
        for args in (["topics", "--repo", str(repo)], ["run", "--repo", str(repo), "--no-online", "--until-caught-up"],
                     ["replay", "--repo", str(repo), "--view", "spend_5m"], ["status", "--repo", str(repo)],
                     ["reset", "--repo", str(repo)]):
            started = time.monotonic()
            result = subprocess.run([sys.executable, "-m", "freshet", *args], env=env, capture_output=True, text=True,
                                    timeout=60)
            elapsed = time.monotonic() - started
            assert result.returncode == 3, (args, result.stderr[-2000:])
            assert elapsed < 15, (args, elapsed)
            assert "refused Freshet's credentials" in result.stderr and "sasl.password" in result.stderr
            assert secret not in result.stdout + result.stderr
    finally:
        proc.terminate()
        proc.wait(10)
